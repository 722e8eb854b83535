//! Builds the child's environment: the shim's own, without its credentials,
//! with the secrets written over it. Checks every secret against what
//! `execve` accepts. Pure: it never calls `set_var` or starts processes.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::config::CREDENTIAL_VARIABLES;
use crate::error::{Error, Result};

/// Names a secret may never replace, as in the Go CLI, because the shell and
/// the runtime depend on them.
const RESERVED_NAMES: &[&str] = &[
    "HOME", "PATH", "PS1", "PS2", "PWD", "EDITOR", "XAUTHORITY", "USER", "TERM", "TERMINFO", "SHELL", "MAIL",
];
const RESERVED_PREFIXES: &[&str] = &["XDG_", "LC_"];

/// Linux's limit on one `NAME=value` string passed to `execve`, terminating
/// NUL included (MAX_ARG_STRLEN, 32 pages of 4 KiB).
pub const MAX_VARIABLE_BYTES: usize = 32 * 4096;

pub fn is_reserved(key: &str) -> bool {
    RESERVED_NAMES.contains(&key) || RESERVED_PREFIXES.iter().any(|prefix| key.starts_with(prefix))
}

/// Returns true for the shim's own credential variables and their `_FILE`
/// forms.
pub fn is_credential(name: &OsStr) -> bool {
    let name = name.as_bytes();
    CREDENTIAL_VARIABLES.iter().any(|credential| {
        let credential = credential.as_bytes();
        name == credential || (name.starts_with(credential) && &name[credential.len()..] == b"_FILE")
    })
}

/// The environment for the child and the reserved keys that were dropped.
#[derive(Debug)]
pub struct ChildEnvironment {
    pub variables: Vec<(OsString, OsString)>,
    pub dropped: Vec<String>,
}

/// Checks that a secret can be passed through `execve`: a valid name, no NUL
/// byte, and within the per-string limit.
pub fn check_secret(key: &str, value: &str) -> Result<()> {
    if key.is_empty() || key.contains(['=', '\0']) {
        return Err(Error::config(format!(
            "secret name {key:?} cannot be an environment variable name because it is empty or contains '=' or a NUL byte; rename the secret"
        )));
    }
    if value.contains('\0') {
        return Err(Error::config(format!(
            "secret {key} ({} bytes) contains a NUL byte, which an environment variable cannot hold; remove it from the value",
            value.len()
        )));
    }
    let size = key.len() + 1 + value.len() + 1;
    if size > MAX_VARIABLE_BYTES {
        return Err(Error::config(format!(
            "secret {key} is {size} bytes as NAME=value, over the kernel's limit of {MAX_VARIABLE_BYTES} bytes for one \
             environment variable; store it as a file or split it"
        )));
    }
    Ok(())
}

/// Writes the secrets over `inherited`, leaving out the shim's credentials
/// and any secret with a reserved name.
pub fn child_environment(inherited: &[(OsString, OsString)], secrets: &[(String, String)]) -> Result<ChildEnvironment> {
    let mut variables: Vec<(OsString, OsString)> = Vec::with_capacity(inherited.len() + secrets.len());
    let mut index: HashMap<OsString, usize> = HashMap::with_capacity(inherited.len() + secrets.len());
    for (name, value) in inherited {
        if is_credential(name) {
            continue;
        }
        index.insert(name.clone(), variables.len());
        variables.push((name.clone(), value.clone()));
    }
    let mut dropped = Vec::new();
    for (key, value) in secrets {
        if is_reserved(key) {
            dropped.push(key.clone());
            continue;
        }
        check_secret(key, value)?;
        let name = OsString::from(key);
        match index.get(&name) {
            Some(&position) => variables[position].1 = OsString::from(value),
            None => {
                index.insert(name.clone(), variables.len());
                variables.push((name, OsString::from(value)));
            }
        }
    }
    Ok(ChildEnvironment { variables, dropped })
}

/// Checks that the arguments and environment together fit in `ARG_MAX`,
/// and names the largest secrets when they do not.
pub fn check_total_size(command: &[String], variables: &[(OsString, OsString)], arg_max: usize) -> Result<()> {
    let pointer = std::mem::size_of::<usize>();
    let arguments: usize = command.iter().map(|arg| arg.len() + 1 + pointer).sum();
    let environment: usize = variables
        .iter()
        .map(|(name, value)| name.len() + value.len() + 2 + pointer)
        .sum();
    let total = arguments + environment;
    if total <= arg_max {
        return Ok(());
    }
    let mut largest: Vec<&(OsString, OsString)> = variables.iter().collect();
    largest.sort_by_key(|(name, value)| std::cmp::Reverse(name.len() + value.len()));
    let names: Vec<String> = largest
        .iter()
        .take(3)
        .map(|(name, value)| format!("{} ({} bytes)", name.to_string_lossy(), value.len()))
        .collect();
    Err(Error::config(format!(
        "the command line and environment take {total} bytes, over the system limit of {arg_max} (ARG_MAX); \
         the largest variables are {}: store large values as files",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        items.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    fn secrets(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn credentials_removed() {
        let inherited = pairs(&[
            ("INFISICAL_TOKEN", "t"),
            ("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE", "/run/secrets/s"),
            ("INFISICAL_PROJECT_ID", "p"),
            ("KEEP", "1"),
        ]);
        let child = child_environment(&inherited, &[]).unwrap();
        assert_eq!(child.variables, pairs(&[("INFISICAL_PROJECT_ID", "p"), ("KEEP", "1")]));
    }

    #[test]
    fn secrets_override_and_reserved_dropped() {
        let inherited = pairs(&[("PATH", "/bin"), ("A", "old")]);
        let child = child_environment(&inherited, &secrets(&[("A", "new"), ("PATH", "/evil"), ("LC_ALL", "x"), ("B", "b")])).unwrap();
        assert_eq!(child.variables, pairs(&[("PATH", "/bin"), ("A", "new"), ("B", "b")]));
        assert_eq!(child.dropped, vec!["PATH".to_string(), "LC_ALL".to_string()]);
    }

    #[test]
    fn nul_byte_rejected() {
        let error = check_secret("K", "a\0b").unwrap_err();
        assert!(error.message.contains("secret K (3 bytes)"), "{}", error.message);
        assert!(!error.message.contains("a\0b"));
    }

    #[test]
    fn size_limit_is_exact() {
        let fits = "x".repeat(MAX_VARIABLE_BYTES - 3);
        assert!(check_secret("K", &fits).is_ok());
        let too_big = "x".repeat(MAX_VARIABLE_BYTES - 2);
        assert!(check_secret("K", &too_big).is_err());
    }
}
