//! Turns the parsed command line and the environment into a validated, typed
//! configuration. Reads the `_FILE` variables' files; touches no network,
//! signals or processes.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::Path;

use crate::cli;
use crate::error::{Error, Result};
use crate::log::Level;

pub const DEFAULT_DOMAIN: &str = "https://app.infisical.com";
pub const DEFAULT_ENVIRONMENT: &str = "dev";

/// Where a build step finds a BuildKit secret mount named `infisical_token`.
pub const BUILD_SECRET_MOUNT: &str = "/run/secrets/infisical_token";

/// Environment variables that hold the shim's own credentials. They and their
/// `_FILE` forms are removed from the child's environment.
pub const CREDENTIAL_VARIABLES: &[&str] = &[
    "INFISICAL_TOKEN",
    "INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN",
    "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID",
    "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET",
];

/// A credential that must never be printed: `Debug` and `Display` show a
/// placeholder, and only `expose` returns the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: String) -> Self {
        Secret(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A snapshot of the process environment, taken once so every lookup sees
/// the same values.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    pub variables: Vec<(OsString, OsString)>,
}

impl Environment {
    pub fn from_process() -> Self {
        Environment { variables: std::env::vars_os().collect() }
    }

    /// Returns the value of `name`, treating an empty value as unset, since
    /// compose files often pass `VAR=${VAR}` with nothing in it.
    pub fn get(&self, name: &str) -> Option<&str> {
        let value = self
            .variables
            .iter()
            .rev()
            .find(|(key, _)| key == OsStr::new(name))
            .map(|(_, value)| value)?;
        let text = value.to_str()?;
        if text.is_empty() {
            None
        } else {
            Some(text)
        }
    }

    /// Reads the setting `name` from the variable itself or from the file
    /// named by `name_FILE`, with the file's trailing newline removed.
    pub fn get_with_file(&self, name: &str) -> Result<Option<Setting>> {
        let file_variable = format!("{name}_FILE");
        match (self.get(name), self.get(&file_variable)) {
            (Some(_), Some(_)) => Err(Error::config(format!(
                "both {name} and {file_variable} are set; unset one of them"
            ))),
            (Some(value), None) => Ok(Some(Setting {
                value: value.to_string(),
                source: format!("environment variable {name}"),
                from_environment: true,
            })),
            (None, Some(path)) => {
                let value = read_setting_file(&file_variable, Path::new(path))?;
                Ok(Some(Setting {
                    value,
                    source: format!("file {path} (from {file_variable})"),
                    from_environment: false,
                }))
            }
            (None, None) => Ok(None),
        }
    }
}

/// A value with the place it came from, for messages.
#[derive(Debug)]
pub struct Setting {
    pub value: String,
    pub source: String,
    pub from_environment: bool,
}

/// Reads a credential file such as a Docker or Kubernetes secret mount.
pub fn read_setting_file(variable: &str, path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        Error::config(format!(
            "failed to read {variable} file {}: {error}; check that the secret is mounted there",
            path.display()
        ))
    })?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(Error::config(format!(
            "{variable} file {} is empty; write the value into it",
            path.display()
        )));
    }
    Ok(value)
}

/// How the shim proves its identity to Infisical.
#[derive(Debug)]
pub enum Credentials {
    /// A ready access token; no login is needed.
    Token { token: Secret, source: String, from_environment: bool },
    /// Universal Auth client credentials.
    UniversalAuth { client_id: String, client_secret: Secret },
}

/// Settings shared by every command that talks to the server.
#[derive(Debug)]
pub struct Connection {
    /// The API base URL, ending in `/api`.
    pub api_url: String,
    pub log_level: Level,
}

/// What to fetch and how.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub project_id: String,
    pub environment: String,
    pub paths: Vec<String>,
    pub recursive: bool,
    pub include_imports: bool,
    pub expand_references: bool,
    pub tags: Vec<String>,
}

/// How `run` starts the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Start the command as a child and act as its init.
    Supervise,
    /// Replace this process with the command.
    Exec,
    /// Run the command as a plain child in a build step.
    Build,
}

#[derive(Debug)]
pub struct RunConfig {
    pub connection: Connection,
    pub credentials: Credentials,
    pub fetch: FetchOptions,
    pub mode: RunMode,
    pub command: Vec<String>,
}

/// Removes whitespace and one pair of stray quotes, as left by
/// `ENV NAME="value"` lines copied between formats.
fn unquote(value: &str) -> &str {
    let trimmed = value.trim();
    for quote in ['"', '\''] {
        if let Some(inner) = trimmed.strip_prefix(quote).and_then(|rest| rest.strip_suffix(quote)) {
            return inner.trim();
        }
    }
    trimmed.trim_matches(['"', '\''])
}

/// Normalizes a domain into the API base URL: quotes and trailing slashes
/// removed, `/api` appended unless present.
pub fn api_url(domain: &str) -> Result<String> {
    let cleaned = unquote(domain).trim_end_matches('/');
    let lower = cleaned.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => {}
        _ => {
            return Err(Error::config(format!(
                "invalid domain '{cleaned}': expected a URL such as https://app.infisical.com \
                 or http://infisical:8080; set --domain or INFISICAL_DOMAIN"
            )))
        }
    }
    if cleaned.ends_with("/api") {
        Ok(cleaned.to_string())
    } else {
        Ok(format!("{cleaned}/api"))
    }
}

/// Normalizes a folder path: a leading slash added, a trailing one removed.
pub fn folder_path(path: &str) -> String {
    let trimmed = unquote(path).trim_end_matches('/');
    if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

fn log_level(flag: Option<&str>, silent: bool, env: &Environment) -> Result<Level> {
    if silent {
        return Ok(Level::Error);
    }
    let (name, source) = match (flag, env.get("INFISICAL_LOG_LEVEL")) {
        (Some(name), _) => (name, "--log-level"),
        (None, Some(name)) => (name, "INFISICAL_LOG_LEVEL"),
        (None, None) => return Ok(Level::Info),
    };
    Level::parse(name).ok_or_else(|| {
        Error::config(format!(
            "invalid log level '{name}' in {source}: use error, warn, info or debug"
        ))
    })
}

pub fn connection(domain: Option<&str>, log_flag: Option<&str>, silent: bool, env: &Environment) -> Result<Connection> {
    let domain = domain
        .or_else(|| env.get("INFISICAL_DOMAIN"))
        .or_else(|| env.get("INFISICAL_API_URL"))
        .unwrap_or(DEFAULT_DOMAIN);
    Ok(Connection {
        api_url: api_url(domain)?,
        log_level: log_level(log_flag, silent, env)?,
    })
}

/// Finds an access token: `INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN` first, as
/// the Go CLI reads it, then `INFISICAL_TOKEN`, each also from `_FILE`, then
/// (in a build step) the BuildKit secret mount.
pub fn token(env: &Environment, build: bool) -> Result<Option<Credentials>> {
    for name in ["INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN", "INFISICAL_TOKEN"] {
        if let Some(setting) = env.get_with_file(name)? {
            return Ok(Some(Credentials::Token {
                token: Secret::new(unquote(&setting.value).to_string()),
                source: setting.source,
                from_environment: setting.from_environment,
            }));
        }
    }
    let mount = Path::new(BUILD_SECRET_MOUNT);
    if build && mount.exists() {
        let value = read_setting_file("the build secret", mount)?;
        return Ok(Some(Credentials::Token {
            token: Secret::new(value),
            source: format!("secret mount {BUILD_SECRET_MOUNT}"),
            from_environment: false,
        }));
    }
    Ok(None)
}

/// Finds Universal Auth client credentials.
pub fn client_credentials(env: &Environment) -> Result<Option<Credentials>> {
    let id = env.get_with_file("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID")?;
    let secret = env.get_with_file("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")?;
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some(Credentials::UniversalAuth {
            client_id: unquote(&id.value).to_string(),
            client_secret: Secret::new(secret.value),
        })),
        (Some(_), None) => Err(Error::config(
            "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID is set but the client secret is missing; \
             set INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET or INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE",
        )),
        (None, Some(_)) => Err(Error::config(
            "the client secret is set but INFISICAL_UNIVERSAL_AUTH_CLIENT_ID is missing; \
             set INFISICAL_UNIVERSAL_AUTH_CLIENT_ID or INFISICAL_UNIVERSAL_AUTH_CLIENT_ID_FILE",
        )),
        (None, None) => Ok(None),
    }
}

/// Picks the credentials for a command that reads secrets: a ready token wins
/// over client credentials.
pub fn credentials(env: &Environment, build: bool) -> Result<Credentials> {
    if let Some(token) = token(env, build)? {
        return Ok(token);
    }
    if let Some(client) = client_credentials(env)? {
        return Ok(client);
    }
    let build_hint = if build {
        format!(", mount a BuildKit secret at {BUILD_SECRET_MOUNT}")
    } else {
        String::new()
    };
    Err(Error::config(format!(
        "no credentials: set INFISICAL_UNIVERSAL_AUTH_CLIENT_ID and \
         INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET (or their _FILE variables){build_hint}, \
         or pass an access token in INFISICAL_TOKEN"
    )))
}

/// The fetch options as they appear in every fetching subcommand.
pub struct FetchFlags<'a> {
    pub project_id: Option<&'a str>,
    pub env: Option<&'a str>,
    pub path: &'a [String],
    pub recursive: bool,
    pub no_imports: bool,
    pub no_expand: bool,
    pub tags: Option<&'a str>,
}

pub fn fetch_options(flags: FetchFlags<'_>, env: &Environment) -> Result<FetchOptions> {
    let project_id = flags
        .project_id
        .or_else(|| env.get("INFISICAL_PROJECT_ID"))
        .map(|id| unquote(id).to_string())
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::config("missing project ID: set --project-id or INFISICAL_PROJECT_ID"))?;
    let environment = unquote(
        flags
            .env
            .or_else(|| env.get("INFISICAL_ENVIRONMENT"))
            .unwrap_or(DEFAULT_ENVIRONMENT),
    )
    .to_string();
    if environment.is_empty() || environment.contains(['/', ' ', '?', '&', '#']) {
        return Err(Error::config(format!(
            "invalid environment slug '{environment}': use a slug such as dev, staging or prod \
             in --env or INFISICAL_ENVIRONMENT"
        )));
    }
    let paths = if flags.path.is_empty() {
        vec![folder_path(env.get("INFISICAL_SECRET_PATH").unwrap_or("/"))]
    } else {
        flags.path.iter().map(|path| folder_path(path)).collect()
    };
    let tags = flags
        .tags
        .map(|list| {
            list.split(',')
                .map(|tag| unquote(tag).to_string())
                .filter(|tag| !tag.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Ok(FetchOptions {
        project_id,
        environment,
        paths,
        recursive: flags.recursive,
        include_imports: !flags.no_imports,
        expand_references: !flags.no_expand,
        tags,
    })
}

pub fn run_config(args: &cli::RunArgs, env: &Environment) -> Result<RunConfig> {
    if args.command.is_empty() {
        return Err(Error::usage(
            "missing command: use infisical-init run [OPTIONS] -- COMMAND [ARGS...]",
        ));
    }
    if args.exec && args.build {
        return Err(Error::usage("--exec and --build cannot be combined: pick one"));
    }
    let mode = if args.exec {
        RunMode::Exec
    } else if args.build {
        RunMode::Build
    } else {
        RunMode::Supervise
    };
    let connection = connection(args.domain.as_deref(), args.log_level.as_deref(), args.silent, env)?;
    let fetch = fetch_options(
        FetchFlags {
            project_id: args.project_id.as_deref(),
            env: args.env.as_deref(),
            path: &args.path,
            recursive: args.recursive,
            no_imports: args.no_imports,
            no_expand: args.no_expand,
            tags: args.tags.as_deref(),
        },
        env,
    )?;
    Ok(RunConfig {
        connection,
        credentials: credentials(env, mode == RunMode::Build)?,
        fetch,
        mode,
        command: args.command.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> Environment {
        Environment {
            variables: pairs.iter().map(|(k, v)| (k.into(), v.into())).collect(),
        }
    }

    #[test]
    fn api_url_appends_api() {
        assert_eq!(api_url("https://app.infisical.com").unwrap(), "https://app.infisical.com/api");
        assert_eq!(api_url("http://infisical:8080/").unwrap(), "http://infisical:8080/api");
        assert_eq!(api_url("\"http://h:1/api/\"").unwrap(), "http://h:1/api");
        assert_eq!(api_url(" 'https://eu.infisical.com' ").unwrap(), "https://eu.infisical.com/api");
    }

    #[test]
    fn api_url_rejects_missing_scheme() {
        assert!(api_url("infisical.example.com").is_err());
        assert!(api_url("ftp://x").is_err());
        assert!(api_url("https://").is_err());
    }

    #[test]
    fn folder_path_normalizes() {
        assert_eq!(folder_path("/"), "/");
        assert_eq!(folder_path(""), "/");
        assert_eq!(folder_path("backend"), "/backend");
        assert_eq!(folder_path("/backend/"), "/backend");
    }

    #[test]
    fn token_prefers_universal_auth_variable() {
        let env = environment(&[("INFISICAL_TOKEN", "a"), ("INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN", "b")]);
        match credentials(&env, false).unwrap() {
            Credentials::Token { token, .. } => assert_eq!(token.expose(), "b"),
            other => panic!("expected a token, got {other:?}"),
        }
    }

    #[test]
    fn variable_and_file_conflict() {
        let env = environment(&[("INFISICAL_TOKEN", "a"), ("INFISICAL_TOKEN_FILE", "/x")]);
        let error = credentials(&env, false).unwrap_err();
        assert!(error.message.contains("INFISICAL_TOKEN_FILE"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
    }
}
