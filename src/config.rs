//! Turns the parsed command line and the environment into a validated, typed
//! configuration. Reads the `_FILE` variables' files; touches no network,
//! signals or processes.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{cli, signals};
use crate::error::{Error, Result};
use crate::log::Level;

pub const DEFAULT_DOMAIN: &str = "https://app.infisical.com";
pub const DEFAULT_ENVIRONMENT: &str = "dev";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// The path of the BuildKit secret mount named `infisical_token`, read in a
/// build step.
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

/// A snapshot of the process environment, taken once so every lookup reads
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

    /// Returns true when `name` exists with an empty value.
    pub fn is_set_but_empty(&self, name: &str) -> bool {
        self.variables
            .iter()
            .rev()
            .find(|(key, _)| key == OsStr::new(name))
            .is_some_and(|(_, value)| value.is_empty())
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

/// The largest credential file read; real ones are well under 1 KiB.
const MAX_SETTING_FILE_BYTES: u64 = 64 * 1024;

/// Reads a credential file such as a Docker or Kubernetes secret mount. Only
/// regular files (or links to them) are read, and only up to 64 KiB, so a
/// fifo cannot block the start-up and /dev/zero cannot exhaust memory.
pub fn read_setting_file(variable: &str, path: &Path) -> Result<String> {
    if let Ok(metadata) = std::fs::metadata(path) {
        if !metadata.is_file() {
            return Err(Error::config(format!(
                "{variable} names {}, which is not a regular file; point it at the file holding the value",
                path.display()
            )));
        }
        if metadata.len() > MAX_SETTING_FILE_BYTES {
            return Err(Error::config(format!(
                "{variable} file {} is {} bytes, more than a credential can be ({MAX_SETTING_FILE_BYTES} at most); check the path",
                path.display(),
                metadata.len()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|error| {
        let hint = if error.kind() == std::io::ErrorKind::PermissionDenied {
            "check the file's owner and mode against the user the container runs as"
        } else {
            "check that the secret is mounted there"
        };
        Error::config(format!("failed to read {variable} file {}: {error}; {hint}", path.display()))
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

/// The credentials the shim logs in with.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A ready access token; no login is needed.
    Token { token: Secret, source: String, from_environment: bool },
    /// Universal Auth client credentials.
    UniversalAuth { client_id: String, client_secret: Secret },
}

/// Settings shared by every command that talks to the server.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The API base URL, ending in `/api`.
    pub api_url: String,
    pub log_level: Level,
    /// How long to keep retrying before giving up; `None` retries forever.
    pub timeout: Option<Duration>,
    /// The upper bound of the random delay before the first request.
    pub splay: Duration,
    /// A PEM bundle of extra trusted CA certificates.
    pub ca_cert: Option<PathBuf>,
    /// Extra request headers from `INFISICAL_CUSTOM_HEADERS`.
    pub custom_headers: Vec<(String, String)>,
}

/// The folders to fetch and the listing options.
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

/// The start mode of `run`.
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
    pub supervision: Supervision,
    pub command: Vec<String>,
}

/// The supervisor's signal and exit-code options.
#[derive(Debug, Clone, Default)]
pub struct Supervision {
    /// Signal the child's process group instead of the child alone.
    pub kill_group: bool,
    /// With `kill_group`: how long the rest of the group gets after SIGTERM.
    pub drain: Duration,
    /// Signal rewrites applied before forwarding; a target of 0 drops it.
    pub rewrites: Vec<(i32, i32)>,
    /// Child exit codes reported as 0.
    pub remap_exit: Vec<u8>,
    /// SIGKILL the child this long after forwarding SIGTERM or SIGINT.
    pub stop_timeout: Option<Duration>,
}

impl Supervision {
    /// Returns the signal to forward in place of `signal`, or `None` to
    /// drop it.
    pub fn rewrite(&self, signal: i32) -> Option<i32> {
        match self.rewrites.iter().rev().find(|(from, _)| *from == signal) {
            Some((_, 0)) => None,
            Some((_, to)) => Some(*to),
            None => Some(signal),
        }
    }

    /// Maps the child's exit code through `--remap-exit`.
    pub fn exit_code(&self, code: u8) -> u8 {
        if self.remap_exit.contains(&code) {
            0
        } else {
            code
        }
    }
}

/// Parses a signal given as a number, a name with or without `SIG`, in any
/// case, or `RTMIN+N` / `RTMAX-N` with RTMIN numbered 34, as `kill -l` and
/// podman number it.
pub fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return (0..=signals::RTMAX).contains(&number).then_some(number);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let (rt_min, rt_max) = (signals::RTMIN, signals::RTMAX);
    if let Some(offset) = name.strip_prefix("RTMIN") {
        let offset = if offset.is_empty() { 0 } else { offset.strip_prefix('+')?.parse::<i32>().ok()? };
        return (rt_min + offset <= rt_max).then_some(rt_min + offset);
    }
    if let Some(offset) = name.strip_prefix("RTMAX") {
        let offset = if offset.is_empty() { 0 } else { offset.strip_prefix('-')?.parse::<i32>().ok()? };
        return (rt_max - offset >= rt_min).then_some(rt_max - offset);
    }
    nix::sys::signal::Signal::iterator()
        .find(|signal| signal.as_str().strip_prefix("SIG") == Some(name))
        .map(|signal| signal as i32)
}

fn supervision(args: &cli::RunArgs) -> Result<Supervision> {
    let mut rewrites = Vec::new();
    for rule in &args.rewrite {
        let parsed = rule
            .split_once(':')
            .and_then(|(from, to)| Some((parse_signal(from)?, parse_signal(to)?)))
            .filter(|(from, _)| ![0, nix::libc::SIGKILL, nix::libc::SIGSTOP, nix::libc::SIGCHLD].contains(from));
        match parsed {
            Some(pair) => rewrites.push(pair),
            None => {
                return Err(Error::usage(format!(
                    "invalid --rewrite '{rule}': use SIGNAL:SIGNAL with names or numbers, such as TERM:QUIT or 15:3, \
                     or SIG:0 to drop; KILL, STOP and CHLD cannot be rewritten because they never reach the shim's forwarding"
                )))
            }
        }
    }
    let mut remap_exit = Vec::new();
    for code in &args.remap_exit {
        match code.trim().parse::<u8>() {
            Ok(code) => remap_exit.push(code),
            Err(_) => return Err(Error::usage(format!("invalid --remap-exit '{code}': use an exit code from 0 to 255"))),
        }
    }
    let drain = match &args.drain {
        Some(value) => seconds(value, "--drain")?,
        None => DEFAULT_DRAIN,
    };
    let stop_timeout = args.stop_timeout.as_deref().map(|value| seconds(value, "--stop-timeout")).transpose()?;
    Ok(Supervision { kill_group: args.kill_group, drain, rewrites, remap_exit, stop_timeout })
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
    if let Some(after_scheme) = cleaned.split_once("://").map(|(_, rest)| rest) {
        let authority = after_scheme.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(Error::config(
                "invalid domain: it contains a user name or password (user:password@host); pass only the \
                 server's URL in --domain or INFISICAL_DOMAIN, and use INFISICAL_CUSTOM_HEADERS for proxy credentials",
            ));
        }
    }
    if cleaned.contains(['?', '#', ' ']) {
        return Err(Error::config(format!(
            "invalid domain '{cleaned}': a server URL has no query, fragment or spaces; use a URL such as https://app.infisical.com"
        )));
    }
    if cleaned.ends_with("/api") {
        Ok(cleaned.to_string())
    } else {
        Ok(format!("{cleaned}/api"))
    }
}

/// The maximum length of a folder path, in bytes: an estimate far above real
/// folder paths, so a longer value is a mistake in the setting.
const MAX_PATH_BYTES: usize = 1024;

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

pub fn connection(flags: cli::ConnectionFlags<'_>, env: &Environment) -> Result<Connection> {
    // An empty domain is more likely a script bug than a request for the
    // default, and the default is a real server on the internet.
    for name in ["INFISICAL_DOMAIN", "INFISICAL_API_URL"] {
        if env.is_set_but_empty(name) && flags.domain.is_none() {
            return Err(Error::config(format!(
                "{name} is set but empty: set it to the server's URL, or unset it to use {DEFAULT_DOMAIN}"
            )));
        }
    }
    let domain = flags
        .domain
        .or_else(|| env.get("INFISICAL_DOMAIN"))
        .or_else(|| env.get("INFISICAL_API_URL"))
        .unwrap_or(DEFAULT_DOMAIN);
    let timeout = match flags.timeout.map(|value| (value, "--timeout")).or_else(|| env.get("INFISICAL_TIMEOUT").map(|value| (value, "INFISICAL_TIMEOUT"))) {
        Some((value, source)) => {
            let seconds = seconds(value, source)?;
            (!seconds.is_zero()).then_some(seconds)
        }
        None => Some(DEFAULT_TIMEOUT),
    };
    let splay = match flags.splay {
        Some(value) => seconds(value, "--splay")?,
        None => Duration::ZERO,
    };
    let ca_cert = flags
        .ca_cert
        .or_else(|| env.get("INFISICAL_CA_CERT_FILE"))
        .map(|path| PathBuf::from(unquote(path)));
    let custom_headers = match env.get("INFISICAL_CUSTOM_HEADERS") {
        Some(text) => custom_headers(text)?,
        None => Vec::new(),
    };
    Ok(Connection {
        api_url: api_url(domain)?,
        log_level: log_level(flags.log_level, flags.silent, env)?,
        timeout,
        splay,
        ca_cert,
        custom_headers,
    })
}

/// Parses a non-negative number of seconds, fractions allowed.
pub fn seconds(value: &str, source: &str) -> Result<Duration> {
    let text = unquote(value);
    text.parse::<f64>()
        .ok()
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0 && *seconds < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            // A bad flag is a usage error (64), a bad variable a configuration
            // error (78), as for every other setting.
            let message = format!("invalid number of seconds '{text}' in {source}: use a number such as 30 or 0.5");
            if source.starts_with("--") {
                Error::usage(message)
            } else {
                Error::config(message)
            }
        })
}

/// Parses `INFISICAL_CUSTOM_HEADERS`: space-separated `Name=value` pairs,
/// where a value may be wrapped in double or single quotes to hold spaces.
pub fn custom_headers(text: &str) -> Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some((name, after)) = rest.split_once('=') else {
            return Err(invalid_headers(text, "a pair without '='"));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_".contains(&byte)) {
            return Err(invalid_headers(text, &format!("invalid header name '{name}'")));
        }
        let (value, remainder) = match after.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let inner = &after[1..];
                let Some(end) = inner.find(quote) else {
                    return Err(invalid_headers(text, &format!("unclosed quote in the value of {name}")));
                };
                (&inner[..end], &inner[end + 1..])
            }
            _ => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        if value.contains(['\r', '\n']) {
            return Err(invalid_headers(text, &format!("a line break in the value of {name}")));
        }
        if PROTOCOL_HEADERS.iter().any(|header| header.eq_ignore_ascii_case(name)) {
            return Err(invalid_headers(text, &format!("{name} is set by the HTTP client and cannot be overridden")));
        }
        headers.push((name.to_string(), value.to_string()));
        rest = remainder.trim_start();
    }
    Ok(headers)
}

/// Headers that describe the HTTP message itself; overriding them breaks
/// every request.
const PROTOCOL_HEADERS: &[&str] = &["Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "TE", "Trailer"];

/// Reports a malformed header list by its header names only, since the
/// values are often access-proxy credentials.
fn invalid_headers(text: &str, problem: &str) -> Error {
    let names: Vec<&str> = text
        .split_whitespace()
        .filter_map(|pair| pair.split_once('=').map(|(name, _)| name))
        .collect();
    Error::config(format!(
        "invalid INFISICAL_CUSTOM_HEADERS ({problem}; names seen: {}): use space-separated Name=value pairs, quoting values that contain spaces",
        names.join(", ")
    ))
}

/// Finds an access token: `INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN` first, as
/// the Go CLI reads it, then `INFISICAL_TOKEN`, each also from `_FILE`, then
/// (in a build step) the BuildKit secret mount.
pub fn token(env: &Environment, build: bool) -> Result<Option<Credentials>> {
    for name in ["INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN", "INFISICAL_TOKEN"] {
        if let Some(setting) = env.get_with_file(name)? {
            let token = unquote(&setting.value).to_string();
            check_token(&token, &setting.source)?;
            return Ok(Some(Credentials::Token {
                token: Secret::new(token),
                source: setting.source,
                from_environment: setting.from_environment,
            }));
        }
    }
    let mount = Path::new(BUILD_SECRET_MOUNT);
    if build && mount.exists() {
        let value = read_setting_file("the build secret", mount)?;
        check_token(&value, BUILD_SECRET_MOUNT)?;
        return Ok(Some(Credentials::Token {
            token: Secret::new(value),
            source: format!("secret mount {BUILD_SECRET_MOUNT}"),
            from_environment: false,
        }));
    }
    Ok(None)
}

/// Returns true when `text` can go into an HTTP header as a bearer token:
/// visible ASCII only, no spaces or control characters.
pub fn is_valid_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Checks a token from the environment or a file, naming only its source.
fn check_token(token: &str, source: &str) -> Result<()> {
    if is_valid_token(token) {
        return Ok(());
    }
    Err(Error::config(format!(
        "the access token from {source} contains a space, a line break or another character a token cannot have; \
         check that it holds exactly the token printed by infisical-init login"
    )))
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

pub fn fetch_options(flags: cli::FetchFlags<'_>, env: &Environment) -> Result<FetchOptions> {
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
    let paths: Vec<String> = if flags.path.is_empty() {
        vec![folder_path(env.get("INFISICAL_SECRET_PATH").unwrap_or("/"))]
    } else {
        flags.path.iter().map(|path| folder_path(path)).collect()
    };
    if let Some(long) = paths.iter().find(|path| path.len() > MAX_PATH_BYTES) {
        return Err(Error::config(format!(
            "invalid path: {} bytes is longer than any folder path ({MAX_PATH_BYTES} at most); check --path or INFISICAL_SECRET_PATH",
            long.len()
        )));
    }
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
    let supervision_flags = args.kill_group
        || args.drain.is_some()
        || !args.rewrite.is_empty()
        || !args.remap_exit.is_empty()
        || args.stop_timeout.is_some();
    if args.exec && supervision_flags {
        return Err(Error::usage(
            "--exec replaces infisical-init with the command, so nothing is left to apply --kill-group, --drain, \
             --rewrite, --remap-exit or --stop-timeout: drop --exec or those options",
        ));
    }
    if args.build && (args.kill_group || args.drain.is_some()) {
        return Err(Error::usage(
            "--build runs the command in the shim's own process group, so --kill-group and --drain do not apply: drop them",
        ));
    }
    let mode = if args.exec {
        RunMode::Exec
    } else if args.build {
        RunMode::Build
    } else {
        RunMode::Supervise
    };
    let mut connection = connection(args.connection_flags(), env)?;
    if args.verbose {
        connection.log_level = Level::Debug;
    }
    let supervision = supervision(args)?;
    let fetch = fetch_options(args.fetch_flags(), env)?;
    Ok(RunConfig {
        connection,
        credentials: credentials(env, mode == RunMode::Build)?,
        fetch,
        mode,
        supervision,
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
    fn api_url_rejects_credentials_and_query() {
        let error = api_url("http://user:pw@127.0.0.1:1").unwrap_err();
        assert!(!error.message.contains("pw"), "{}", error.message);
        assert!(api_url("http://h:1/?x=1").is_err());
        assert!(api_url("http://h:1/#top").is_err());
    }

    #[test]
    fn token_characters() {
        assert!(is_valid_token("eyJ.abc-_=+/"));
        assert!(!is_valid_token("a\nb"));
        assert!(!is_valid_token("a b"));
        assert!(!is_valid_token(""));
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
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("TERM"), Some(15));
        assert_eq!(parse_signal("sigusr1"), Some(10));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("0"), Some(0));
        assert_eq!(parse_signal("RTMIN"), Some(34));
        assert_eq!(parse_signal("RTMIN+3"), Some(37));
        assert_eq!(parse_signal("SIGRTMAX"), Some(64));
        assert_eq!(parse_signal("RTMAX-2"), Some(62));
        assert_eq!(parse_signal("RTMIN+31"), None);
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }

    #[test]
    fn custom_headers_parse_quotes() {
        let headers = custom_headers(r#"X-A=1 X-B="two words" X-C='x=y'"#).unwrap();
        let expected = [("X-A", "1"), ("X-B", "two words"), ("X-C", "x=y")];
        assert_eq!(headers, expected.map(|(n, v)| (n.to_string(), v.to_string())));
        assert!(custom_headers("novalue").is_err());
        assert!(custom_headers("X-A=\"open").is_err());
        assert!(custom_headers("Content-Length=5").is_err());
        assert!(custom_headers("host=x").is_err());
    }

    #[test]
    fn seconds_accept_fractions() {
        assert_eq!(seconds("0.5", "x").unwrap(), Duration::from_millis(500));
        assert!(seconds("-1", "x").is_err());
        assert!(seconds("soon", "x").is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = Secret::new("hunter2".into());
        assert_eq!(format!("{secret:?} {secret}"), "[redacted] [redacted]");
    }
}
