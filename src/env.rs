//! Builds the child's environment: the shim's own, without its credentials,
//! with the secrets written over it. Checks every secret against what
//! `execve` accepts. Pure: it never calls `set_var` or starts processes.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

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

/// The environment for the child, as the `NAME=value` strings `execve`
/// takes, and the reserved keys that were dropped.
#[derive(Debug)]
pub struct ChildEnvironment {
    pub entries: Vec<CString>,
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
/// and any secret with a reserved name. Takes both by value so each value is
/// moved, and copied only once, into its `NAME=value` string.
pub fn child_environment(inherited: Vec<(OsString, OsString)>, secrets: Vec<(String, String)>) -> Result<ChildEnvironment> {
    let mut variables: Vec<(OsString, OsString)> = Vec::with_capacity(inherited.len() + secrets.len());
    let mut index: HashMap<OsString, usize> = HashMap::with_capacity(inherited.len() + secrets.len());
    for (name, value) in inherited {
        if is_credential(&name) || index.contains_key(&name) {
            continue;
        }
        index.insert(name.clone(), variables.len());
        variables.push((name, value));
    }
    let mut dropped = Vec::new();
    for (key, value) in secrets {
        if is_reserved(&key) {
            dropped.push(key);
            continue;
        }
        check_secret(&key, &value)?;
        let name = OsString::from(key);
        match index.get(&name) {
            Some(&position) => variables[position].1 = OsString::from(value),
            None => {
                index.insert(name.clone(), variables.len());
                variables.push((name, OsString::from(value)));
            }
        }
    }
    drop(index);
    let entries = variables.into_iter().filter_map(|(name, value)| entry(name, &value)).collect();
    Ok(ChildEnvironment { entries, dropped })
}

/// Joins a name and value into `NAME=value`. Inherited variables cannot hold
/// NUL bytes and secrets were checked, so `None` never happens in practice.
fn entry(name: OsString, value: &OsStr) -> Option<CString> {
    let mut bytes = name.into_vec();
    bytes.reserve_exact(value.len() + 2);
    bytes.push(b'=');
    bytes.extend_from_slice(value.as_bytes());
    CString::new(bytes).ok()
}

/// Returns the kernel's limit on the total size of the arguments and
/// environment of `execve`: a quarter of the stack limit, at least 32 pages
/// and at most 6 MiB (Linux's fs/exec.c). `sysconf(_SC_ARG_MAX)` is no help
/// here because static musl builds return a fixed 128 KiB.
pub fn exec_size_limit() -> usize {
    const KERNEL_MINIMUM: usize = 32 * 4096;
    const KERNEL_MAXIMUM: usize = 6 * 1024 * 1024;
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK) {
        Ok((soft, _)) => usize::try_from(soft / 4).unwrap_or(KERNEL_MAXIMUM).clamp(KERNEL_MINIMUM, KERNEL_MAXIMUM),
        Err(_) => KERNEL_MINIMUM,
    }
}

/// Checks that the arguments and environment together fit in `limit`, and
/// names the largest variables when they do not.
pub fn check_total_size(command: &[String], entries: &[CString], limit: usize) -> Result<()> {
    let pointer = std::mem::size_of::<usize>();
    let arguments: usize = command.iter().map(|arg| arg.len() + 1 + pointer).sum();
    let environment: usize = entries.iter().map(|entry| entry.as_bytes().len() + 1 + pointer).sum();
    let total = arguments + environment;
    if total <= limit {
        return Ok(());
    }
    let mut largest: Vec<&CString> = entries.iter().collect();
    largest.sort_by_key(|entry| std::cmp::Reverse(entry.as_bytes().len()));
    let names: Vec<String> = largest
        .iter()
        .take(3)
        .map(|entry| {
            let bytes = entry.as_bytes();
            let name_length = bytes.iter().position(|&byte| byte == b'=').unwrap_or(bytes.len());
            format!("{} ({} bytes)", String::from_utf8_lossy(&bytes[..name_length]), bytes.len())
        })
        .collect();
    Err(Error::config(format!(
        "the command line and environment take {total} bytes, over the kernel's limit of {limit} bytes \
         (a quarter of the stack limit, see ulimit -s); the largest variables are {}: store large values \
         as files or raise the stack limit",
        names.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        items.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    fn entries(items: &[&str]) -> Vec<CString> {
        items.iter().map(|item| CString::new(*item).unwrap()).collect()
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
        let child = child_environment(inherited, Vec::new()).unwrap();
        assert_eq!(child.entries, entries(&["INFISICAL_PROJECT_ID=p", "KEEP=1"]));
    }

    #[test]
    fn secrets_override_and_reserved_dropped() {
        let inherited = pairs(&[("PATH", "/bin"), ("A", "old")]);
        let child = child_environment(inherited, secrets(&[("A", "new"), ("PATH", "/evil"), ("LC_ALL", "x"), ("B", "b")])).unwrap();
        assert_eq!(child.entries, entries(&["PATH=/bin", "A=new", "B=b"]));
        assert_eq!(child.dropped, vec!["PATH".to_string(), "LC_ALL".to_string()]);
    }

    #[test]
    fn nul_byte_rejected() {
        let error = check_secret("K", "a\0b").unwrap_err();
        assert!(error.message.contains("secret K (3 bytes)"), "{}", error.message);
        assert!(!error.message.contains("a\0b"));
    }

    #[test]
    fn exec_limit_within_kernel_bounds() {
        let limit = exec_size_limit();
        assert!((32 * 4096..=6 * 1024 * 1024).contains(&limit), "{limit}");
    }

    #[test]
    fn total_size_names_largest() {
        let big = format!("BIG={}", "x".repeat(1000));
        let error = check_total_size(&["true".into()], &entries(&[&big, "A=1"]), 500).unwrap_err();
        assert!(error.message.contains("BIG (1004 bytes)"), "{}", error.message);
        assert!(check_total_size(&["true".into()], &entries(&["A=1"]), 500).is_ok());
    }

    #[test]
    fn size_limit_is_exact() {
        let fits = "x".repeat(MAX_VARIABLE_BYTES - 3);
        assert!(check_secret("K", &fits).is_ok());
        let too_big = "x".repeat(MAX_VARIABLE_BYTES - 2);
        assert!(check_secret("K", &too_big).is_err());
    }
}
