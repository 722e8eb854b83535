//! The scripting commands `get` and `export`. Both list the secrets once,
//! with the same merging of imports and paths as `run`. `get` prints chosen
//! values raw. `export` encodes every secret for another tool (dotenv files,
//! POSIX `sh`, JSON) and writes it to standard output or, atomically, to a
//! file. The encoders are pure functions, and values never reach the log.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::cli;
use crate::commands::{fetch_abortable, write_stdout};
use crate::config::{self, Environment};
use crate::error::{Error, Kind, Result};
use crate::secrets::SecretSet;
use crate::signals::Signals;
use crate::{debug, info, log, warn};

/// Reads the connection and fetch settings shared by `get` and `export`,
/// then fetches the secrets; returns them with a description of where they
/// came from, for messages.
fn fetch_with_flags(
    connection: cli::ConnectionFlags<'_>,
    fetch: cli::FetchFlags<'_>,
    environment: &Environment,
    signals: &Signals,
) -> Result<(SecretSet, String)> {
    let connection = config::connection(connection, environment)?;
    log::set_max_level(connection.log_level);
    let fetch = config::fetch_options(fetch, environment)?;
    let credentials = config::credentials(environment, false)?;
    let location = describe_location(&fetch);
    let secrets = fetch_abortable(signals, connection, credentials, fetch)?;
    Ok((secrets, location))
}

/// Prints the value of each named secret followed by a newline, in argument
/// order. Nothing is printed unless every name is found or `--allow-missing`
/// is given, in which case a missing name prints an empty line.
pub fn get(args: &cli::GetArgs, environment: Environment, signals: &Signals) -> Result<u8> {
    if args.names.is_empty() {
        return Err(Error::usage("missing secret name: use infisical-init get [OPTIONS] NAME..."));
    }
    let (secrets, location) = fetch_with_flags(args.connection_flags(), args.fetch_flags(), &environment, signals)?;

    let missing: Vec<&str> = args
        .names
        .iter()
        .filter(|name| secrets.get(name).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() && !args.allow_missing {
        let noun = if missing.len() == 1 { "secret" } else { "secrets" };
        return Err(Error::new(
            Kind::NotFound,
            format!(
                "{noun} {} not found in {location}; check the names, --env and --path, \
                 or pass --allow-missing to print an empty line instead",
                missing.join(", ")
            ),
        ));
    }
    for name in &missing {
        warn!("secret {name} not found in {location}; printing an empty line");
    }

    let mut text = String::new();
    for name in &args.names {
        text.push_str(secrets.get(name).unwrap_or(""));
        text.push('\n');
    }
    write_stdout(text.as_bytes())?;
    debug!("printed {} values", args.names.len());
    Ok(0)
}

/// Prints or writes every secret, sorted by key, in the chosen format.
pub fn export(args: &cli::ExportArgs, environment: Environment, signals: &Signals) -> Result<u8> {
    let format = Format::parse(args.format.as_deref().unwrap_or("dotenv"))?;
    let output = match args.output.as_deref() {
        Some("") => return Err(Error::usage("--output needs a file path")),
        Some(path) => Some(PathBuf::from(path)),
        None => None,
    };
    let (secrets, location) = fetch_with_flags(args.connection_flags(), args.fetch_flags(), &environment, signals)?;

    let encoded = encode(format, secrets.entries())?;
    if !encoded.rejected.is_empty() && !args.skip_invalid {
        return Err(rejection_error(format, &encoded.rejected));
    }
    for rejected in &encoded.rejected {
        warn!(
            "secret {:?} left out of the {} output: {}",
            rejected.key,
            format.name(),
            rejected.reason.describe()
        );
    }

    match output {
        Some(path) => {
            write_atomically(&path, encoded.text.as_bytes())?;
            info!(
                "wrote {} secrets from {location} to {} as {}",
                encoded.written,
                path.display(),
                format.name()
            );
        }
        None => {
            write_stdout(encoded.text.as_bytes())?;
            debug!("printed {} secrets as {}", encoded.written, format.name());
        }
    }
    Ok(0)
}

fn describe_location(fetch: &config::FetchOptions) -> String {
    format!(
        "project {}, environment {}, path {}",
        fetch.project_id,
        fetch.environment,
        fetch.paths.join(", ")
    )
}

/// An output format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `KEY="value"` lines for python-dotenv and docker compose `env_file`.
    Dotenv,
    /// Dotenv lines with an `export ` prefix.
    DotenvExport,
    /// `export KEY='value'` lines for `eval` or `.` in POSIX `sh`.
    Shell,
    /// One JSON object mapping each key to its value.
    Json,
}

impl Format {
    fn parse(name: &str) -> Result<Format> {
        match name {
            "dotenv" => Ok(Format::Dotenv),
            "dotenv-export" => Ok(Format::DotenvExport),
            "shell" => Ok(Format::Shell),
            "json" => Ok(Format::Json),
            other => Err(Error::usage(format!(
                "invalid --format '{other}': use dotenv, dotenv-export, shell or json"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Dotenv => "dotenv",
            Format::DotenvExport => "dotenv-export",
            Format::Shell => "shell",
            Format::Json => "json",
        }
    }
}

/// The rule that keeps a format from carrying a secret. Messages name the
/// rule, never the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The key is not a POSIX shell variable name.
    ShellName,
    /// The key names a variable the shell or the system relies on.
    ReservedName,
    /// The key has a character outside `A-Z a-z 0-9 _ . -`.
    DotenvName,
    /// The value has a NUL byte, which no environment variable can contain.
    NulByte,
    /// The value has a `${...}` that python-dotenv would expand.
    Interpolation,
    /// No dotenv quoting reads back the same in both parsers.
    NoQuoting,
}

impl Reason {
    fn describe(self) -> &'static str {
        match self {
            Reason::ShellName => {
                "the key is not a shell variable name (letters, digits and _, not starting with a digit)"
            }
            Reason::ReservedName => {
                "the key names a variable the shell or system relies on (PATH, IFS, LD_PRELOAD and the like), \
                 which run never injects either"
            }
            Reason::DotenvName => "the key has characters other than letters, digits, '_', '.' and '-'",
            Reason::NulByte => "the value contains a NUL byte, which an environment variable cannot contain",
            Reason::Interpolation => {
                "the value contains ${...}, which python-dotenv expands in every value and has no escape for"
            }
            Reason::NoQuoting => {
                "the value combines characters that no dotenv quoting carries unchanged through both \
                 python-dotenv and docker compose ('$' with a carriage return, a double backslash, \
                 a backslash before a quote, or a final backslash)"
            }
        }
    }

    fn is_key_problem(self) -> bool {
        matches!(self, Reason::ShellName | Reason::DotenvName | Reason::ReservedName)
    }
}

/// A secret that the format cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub key: String,
    pub reason: Reason,
}

/// The encoded text and the secrets left out of it.
#[derive(Debug)]
pub struct Encoded {
    pub text: String,
    pub written: usize,
    pub rejected: Vec<Rejected>,
}

/// Encodes the secrets sorted by key. Secrets the format cannot carry are
/// listed in `rejected` and left out of the text.
pub fn encode(format: Format, entries: &[(String, String)]) -> Result<Encoded> {
    let sorted: BTreeMap<&str, &str> = entries.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
    if format == Format::Json {
        let mut text = serde_json::to_string_pretty(&sorted)
            .map_err(|error| Error::new(Kind::CannotWrite, format!("failed to encode the secrets as JSON: {error}")))?;
        text.push('\n');
        return Ok(Encoded { text, written: sorted.len(), rejected: Vec::new() });
    }

    let mut text = String::new();
    let mut rejected = Vec::new();
    let mut written = 0;
    for (key, value) in sorted {
        match encode_line(format, key, value) {
            Ok(line) => {
                text.push_str(&line);
                written += 1;
            }
            Err(reason) => rejected.push(Rejected { key: key.to_string(), reason }),
        }
    }
    Ok(Encoded { text, written, rejected })
}

fn encode_line(format: Format, key: &str, value: &str) -> std::result::Result<String, Reason> {
    match format {
        Format::Shell => {
            if !is_shell_name(key) {
                return Err(Reason::ShellName);
            }
            if is_shell_reserved(key) {
                return Err(Reason::ReservedName);
            }
            Ok(format!("export {key}={}\n", shell_quote(value)?))
        }
        Format::Dotenv | Format::DotenvExport => {
            if !is_dotenv_name(key) {
                return Err(Reason::DotenvName);
            }
            let prefix = if format == Format::DotenvExport { "export " } else { "" };
            Ok(format!("{prefix}{key}={}\n", dotenv_quote(value)?))
        }
        Format::Json => unreachable!("JSON is encoded as a whole by `encode`"),
    }
}

fn rejection_error(format: Format, rejected: &[Rejected]) -> Error {
    // Keys come from the server: escaped, so a line break in one cannot
    // forge a log line, and capped, so thousands of them stay one readable line.
    const SHOWN: usize = 10;
    let mut details: Vec<String> = rejected
        .iter()
        .take(SHOWN)
        .map(|item| format!("{:?} ({})", item.key, item.reason.describe()))
        .collect();
    if rejected.len() > SHOWN {
        details.push(format!("and {} more", rejected.len() - SHOWN));
    }
    let noun = if rejected.len() == 1 { "secret" } else { "secrets" };
    let only_json = format == Format::Shell || rejected.iter().any(|item| item.reason == Reason::NulByte);
    let hint = if rejected.iter().all(|item| item.reason.is_key_problem()) {
        "rename them, use --format json, or pass --skip-invalid to leave them out with a warning"
    } else if only_json {
        "use --format json, or pass --skip-invalid to leave them out with a warning"
    } else {
        "use --format json or shell, or pass --skip-invalid to leave them out with a warning"
    };
    Error::config(format!(
        "the {} format cannot carry {noun} {}; {hint}",
        format.name(),
        details.join(", ")
    ))
}

/// Names that `eval` of the shell format must not set: the names `run`
/// keeps from secrets, the variables that change how a shell parses and
/// runs commands, and the dynamic loader's.
fn is_shell_reserved(key: &str) -> bool {
    const SHELL_VARIABLES: &[&str] = &["IFS", "ENV", "BASH_ENV", "CDPATH", "PS4", "SHELLOPTS", "BASHOPTS"];
    crate::env::is_reserved(key) || SHELL_VARIABLES.contains(&key) || key.starts_with("LD_")
}

/// Returns true for a POSIX shell variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_shell_name(key: &str) -> bool {
    let mut characters = key.chars();
    match characters.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {}
        _ => return false,
    }
    characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// Returns true for a key that both python-dotenv and docker compose read:
/// ASCII letters, digits, `_`, `.` and `-`. python-dotenv takes any run of
/// characters other than `=`, `#` and whitespace, and compose-go takes
/// letters, digits and `_ . - [ ]`. This set is the plain-ASCII part of both.
pub fn is_dotenv_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-'))
}

/// Quotes a value for POSIX `sh`: inside single quotes every byte is literal
/// except `'`, which becomes `'\''` (close, escaped quote, reopen). Only a
/// NUL byte cannot be carried, because shell strings end at it.
pub fn shell_quote(value: &str) -> std::result::Result<String, Reason> {
    if value.contains('\0') {
        return Err(Reason::NulByte);
    }
    Ok(format!("'{}'", value.replace('\'', r"'\''")))
}

/// Quotes a value so that python-dotenv (1.x, `dotenv_values` with
/// interpolation on) and docker compose `env_file` (compose-go v2's dotenv
/// parser) both read it back unchanged. Checked against python-dotenv 1.2.2
/// and Docker Compose 2.40.3.
///
/// The two parsers agree on only part of the syntax, so the first of these
/// forms that fits is used:
///
/// 1. Double quotes, `"..."`, with `\` as `\\`, `"` as `\"`, newline as `\n`
///    and carriage return as `\r`. Not for a value with `$`, because compose
///    expands `$NAME` here and python-dotenv has no escape for `$`. Not for
///    a value ending in a backslash, because python-dotenv takes the `\"`
///    that closes it for an escaped quote and reads on into later lines.
/// 2. Single quotes, `'...'`, with `'` as `\'`; compose expands nothing
///    here. Both parsers keep a backslash before any other character, but
///    python-dotenv turns `\\` into `\`, so this form cannot carry a double
///    backslash, a backslash before a quote or a final backslash. Nor a
///    carriage return, which Python's text mode turns into a newline.
/// 3. Unquoted, for the rest: no `$`, `#`, tab, line break or control
///    character, no space at either end, and no quote first. This form
///    carries a final backslash.
///
/// Two kinds of value are rejected outright. One is a value containing
/// `${...}` (python-dotenv's pattern `\$\{[^}:]*(:-[^}]*)?\}`), because
/// python-dotenv expands it in every form, quoted or not, and has no escape.
/// The other is a value with a NUL byte.
pub fn dotenv_quote(value: &str) -> std::result::Result<String, Reason> {
    if value.contains('\0') {
        return Err(Reason::NulByte);
    }
    if has_python_dotenv_reference(value) {
        return Err(Reason::Interpolation);
    }
    if fits_double_quotes(value) {
        return Ok(double_quote(value));
    }
    if fits_single_quotes(value) {
        return Ok(format!("'{}'", value.replace('\'', r"\'")));
    }
    if fits_unquoted(value) {
        return Ok(value.to_string());
    }
    Err(Reason::NoQuoting)
}

fn fits_double_quotes(value: &str) -> bool {
    !value.contains('$') && !value.ends_with('\\')
}

fn double_quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for character in value.chars() {
        match character {
            '\\' => quoted.push_str(r"\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str(r"\n"),
            '\r' => quoted.push_str(r"\r"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// Returns false when a backslash is followed by a backslash, a quote or the
/// end of the value, the cases where the parsers read single quotes apart,
/// or when the value has a carriage return.
fn fits_single_quotes(value: &str) -> bool {
    if value.contains('\r') {
        return false;
    }
    let bytes = value.as_bytes();
    !bytes
        .iter()
        .enumerate()
        .any(|(index, &byte)| byte == b'\\' && matches!(bytes.get(index + 1), None | Some(b'\\' | b'\'')))
}

fn fits_unquoted(value: &str) -> bool {
    let (Some(first), Some(last)) = (value.chars().next(), value.chars().last()) else {
        return false;
    };
    let plain = |character: char| !character.is_whitespace() && !character.is_control();
    plain(first)
        && plain(last)
        && !matches!(first, '\'' | '"')
        && value
            .chars()
            .all(|character| (character == ' ' || plain(character)) && !matches!(character, '$' | '#'))
}

/// Returns true when python-dotenv's interpolation pattern
/// `\$\{[^}:]*(:-[^}]*)?\}` matches anywhere in `value`.
fn has_python_dotenv_reference(value: &str) -> bool {
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let name_end = after.find(['}', ':']);
        let matched = match name_end {
            Some(end) if after[end..].starts_with('}') => true,
            Some(end) => after[end..].starts_with(":-") && after[end + 2..].contains('}'),
            None => false,
        };
        if matched {
            return true;
        }
        rest = &rest[start + 1..];
    }
    false
}

/// Writes `bytes` to `path` so that readers see the old file or the whole
/// new one: a temporary file in the same directory, created with mode 0600,
/// is written, flushed to disk and renamed over `path`. A symbolic link is
/// followed, so the file it points to is replaced and the link kept. Only
/// regular files are replaced: renaming over a device such as /dev/null or a
/// fifo would put the secrets in its place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            resolved = std::fs::canonicalize(path).map_err(|error| {
                Error::new(
                    Kind::CannotWrite,
                    format!("failed to write {}: the symbolic link cannot be followed: {error}", path.display()),
                )
            })?;
            resolved.as_path()
        }
        _ => path,
    };
    if let Ok(metadata) = std::fs::metadata(path) {
        if !metadata.is_file() {
            return Err(Error::new(
                Kind::CannotWrite,
                format!(
                    "failed to write {}: it is not a regular file, and replacing it would put the secrets in its place; \
                     name a regular file, or leave out --output to write to standard output",
                    path.display()
                ),
            ));
        }
    }
    let cannot_write = |step: &str, error: std::io::Error| {
        Error::new(
            Kind::CannotWrite,
            format!("failed to write {}: {step}: {error}; check that the directory exists and is writable", path.display()),
        )
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::new(Kind::CannotWrite, format!("failed to write {}: the path names no file", path.display())))?;
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let temporary = directory.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), std::process::id()));

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(|error| cannot_write("creating a temporary file", error))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|error| cannot_write("writing the temporary file", error))
        .and_then(|()| {
            std::fs::rename(&temporary, path).map_err(|error| cannot_write("renaming the temporary file", error))
        });
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error);
    }

    // The rename is durable only once the directory entry is on disk too.
    if let Err(error) = File::open(directory).and_then(|handle| handle.sync_all()) {
        debug!("failed to flush directory {}: {error}", directory.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn shell_quote_escapes_single_quote() {
        assert_eq!(shell_quote("it's").unwrap(), r"'it'\''s'");
        assert_eq!(shell_quote("").unwrap(), "''");
        assert_eq!(shell_quote("$HOME `id` \\ \"x\"\nnext").unwrap(), "'$HOME `id` \\ \"x\"\nnext'");
        assert_eq!(shell_quote("a\0b"), Err(Reason::NulByte));
    }

    #[test]
    fn shell_names() {
        for good in ["A", "_", "API_KEY", "a1", "_9"] {
            assert!(is_shell_name(good), "{good}");
        }
        for bad in ["", "1A", "my-dashed-key", "dotted.key.name", "KÜ", "A B", "A=B"] {
            assert!(!is_shell_name(bad), "{bad}");
        }
    }

    #[test]
    fn dotenv_names() {
        for good in ["API_KEY", "my-dashed-key", "dotted.key.name", "1ABC"] {
            assert!(is_dotenv_name(good), "{good}");
        }
        for bad in ["", "KÜ", "A B", "A=B", "#A", "A:B", "A[0]"] {
            assert!(!is_dotenv_name(bad), "{bad}");
        }
    }

    #[test]
    fn dotenv_prefers_double_quotes() {
        assert_eq!(dotenv_quote("plain").unwrap(), r#""plain""#);
        assert_eq!(dotenv_quote("").unwrap(), r#""""#);
        assert_eq!(dotenv_quote("it's \"quoted\"").unwrap(), r#""it's \"quoted\"""#);
        assert_eq!(dotenv_quote("a\nb # c").unwrap(), r#""a\nb # c""#);
        assert_eq!(dotenv_quote("a\r\nb").unwrap(), r#""a\r\nb""#);
        assert_eq!(dotenv_quote(r"\\server\share").unwrap(), r#""\\\\server\\share""#);
        assert_eq!(dotenv_quote(r#"say \"hi\""#).unwrap(), r#""say \\\"hi\\\"""#);
        assert_eq!(dotenv_quote(r"it\'s").unwrap(), r#""it\\'s""#);
        assert_eq!(dotenv_quote("  padded\t").unwrap(), "\"  padded\t\"");
        assert_eq!(dotenv_quote("héllo ✓ 🚀").unwrap(), "\"héllo ✓ 🚀\"");
    }

    #[test]
    fn dotenv_single_quotes_dollar() {
        assert_eq!(dotenv_quote("$HOME").unwrap(), "'$HOME'");
        assert_eq!(dotenv_quote("it's $5 and $$").unwrap(), r"'it\'s $5 and $$'");
        assert_eq!(dotenv_quote("$x\nnext \"q\"").unwrap(), "'$x\nnext \"q\"'");
        assert_eq!(dotenv_quote(r"C:\$dir\file").unwrap(), r"'C:\$dir\file'");
        assert_eq!(dotenv_quote("${unclosed").unwrap(), "'${unclosed'");
    }

    #[test]
    fn dotenv_unquoted_final_backslash() {
        assert_eq!(dotenv_quote(r"C:\dir\").unwrap(), r"C:\dir\");
        assert_eq!(dotenv_quote(r"a b\").unwrap(), r"a b\");
        assert_eq!(dotenv_quote("\\").unwrap(), "\\");
        assert_eq!(dotenv_quote(r"it's\").unwrap(), r"it's\");
    }

    #[test]
    fn dotenv_rejects_uncarriable_values() {
        assert_eq!(dotenv_quote("${HOME}"), Err(Reason::Interpolation));
        assert_eq!(dotenv_quote("Bearer ${API_KEY}"), Err(Reason::Interpolation));
        assert_eq!(dotenv_quote("${X:-default}"), Err(Reason::Interpolation));
        assert_eq!(dotenv_quote("a\0b"), Err(Reason::NulByte));
        assert_eq!(dotenv_quote(r"$HOME \\ share"), Err(Reason::NoQuoting));
        assert_eq!(dotenv_quote("$HOME\r\n"), Err(Reason::NoQuoting));
        assert_eq!(dotenv_quote(r"cost $5\"), Err(Reason::NoQuoting));
        assert_eq!(dotenv_quote("line\nend\\"), Err(Reason::NoQuoting));
    }

    #[test]
    fn python_dotenv_reference_pattern() {
        for matching in ["${A}", "x${}y", "${A:-b}", "${a${b}", "${A:-}", "${A\nB}"] {
            assert!(has_python_dotenv_reference(matching), "{matching:?}");
        }
        for plain in ["$A", "${A", "${A:=b}", "${A:b}", "$ {A}", "}${", "${A:-b"] {
            assert!(!has_python_dotenv_reference(plain), "{plain:?}");
        }
    }

    #[test]
    fn encode_sorts_and_prefixes() {
        let secrets = entries(&[("B", "2"), ("A", "1")]);
        let dotenv = encode(Format::Dotenv, &secrets).unwrap();
        assert_eq!(dotenv.text, "A=\"1\"\nB=\"2\"\n");
        let exported = encode(Format::DotenvExport, &secrets).unwrap();
        assert_eq!(exported.text, "export A=\"1\"\nexport B=\"2\"\n");
        let shell = encode(Format::Shell, &secrets).unwrap();
        assert_eq!(shell.text, "export A='1'\nexport B='2'\n");
        assert_eq!(shell.written, 2);
    }

    #[test]
    fn encode_lists_rejected_keys() {
        let secrets = entries(&[("my-dashed-key", "v"), ("OK", "v"), ("REF", "${X}")]);
        let shell = encode(Format::Shell, &secrets).unwrap();
        assert_eq!(shell.text, "export OK='v'\nexport REF='${X}'\n");
        assert_eq!(shell.rejected, vec![Rejected { key: "my-dashed-key".into(), reason: Reason::ShellName }]);
        let dotenv = encode(Format::Dotenv, &secrets).unwrap();
        assert_eq!(dotenv.text, "OK=\"v\"\nmy-dashed-key=\"v\"\n");
        assert_eq!(dotenv.rejected, vec![Rejected { key: "REF".into(), reason: Reason::Interpolation }]);
    }

    #[test]
    fn json_keeps_every_key() {
        let secrets = entries(&[("b.c", "x\0y"), ("a-b", "${X}\n\"q\"")]);
        let json = encode(Format::Json, &secrets).unwrap();
        assert!(json.rejected.is_empty());
        assert!(json.text.ends_with("}\n"));
        let parsed: BTreeMap<String, String> = serde_json::from_str(&json.text).unwrap();
        assert_eq!(parsed.get("b.c").map(String::as_str), Some("x\0y"));
        assert_eq!(parsed.get("a-b").map(String::as_str), Some("${X}\n\"q\""));
        assert!(json.text.find("a-b").unwrap() < json.text.find("b.c").unwrap());
    }

    #[test]
    fn json_of_nothing_is_empty_object() {
        assert_eq!(encode(Format::Json, &[]).unwrap().text, "{}\n");
        assert_eq!(encode(Format::Dotenv, &[]).unwrap().text, "");
    }

    #[test]
    fn rejection_message_names_key_not_value() {
        let rejected = vec![Rejected { key: "TOKEN_REF".into(), reason: Reason::Interpolation }];
        let error = rejection_error(Format::Dotenv, &rejected);
        assert_eq!(error.kind, Kind::Config);
        assert!(error.message.contains("TOKEN_REF"), "{}", error.message);
        assert!(error.message.contains("--skip-invalid"), "{}", error.message);
        assert!(error.message.contains("json or shell"), "{}", error.message);
    }

    #[test]
    fn rejection_hint_skips_current_format() {
        let rejected = vec![Rejected { key: "BINARY".into(), reason: Reason::NulByte }];
        let error = rejection_error(Format::Shell, &rejected);
        assert!(error.message.contains("use --format json,"), "{}", error.message);
        assert!(!error.message.contains("json or shell"), "{}", error.message);
        let renamed = vec![Rejected { key: "my-key".into(), reason: Reason::ShellName }];
        let error = rejection_error(Format::Shell, &renamed);
        assert!(error.message.contains("rename them"), "{}", error.message);
    }

    #[test]
    fn format_names() {
        for name in ["dotenv", "dotenv-export", "shell", "json"] {
            assert_eq!(Format::parse(name).unwrap().name(), name);
        }
        assert_eq!(Format::parse("yaml").unwrap_err().kind, Kind::Usage);
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        use std::os::unix::fs::PermissionsExt;

        let directory = std::env::temp_dir().join(format!("infisical-init-output-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("secrets.env");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();

        write_atomically(&path, b"new").unwrap();

        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(&directory).unwrap().map(|entry| entry.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secrets.env")]);
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn atomic_write_rejects_devices_and_fifos() {
        let error = write_atomically(Path::new("/dev/null"), b"K=v\n").unwrap_err();
        assert_eq!(error.kind, Kind::CannotWrite);
        assert!(error.message.contains("not a regular file"), "{}", error.message);
        let metadata = std::fs::metadata("/dev/null").unwrap();
        assert!(!metadata.is_file(), "/dev/null must still be a device");
    }

    #[test]
    fn atomic_write_follows_symlink() {
        let directory = std::env::temp_dir().join(format!("infisical-init-link-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let target = directory.join("real.env");
        let link = directory.join("link.env");
        std::fs::write(&target, "old").unwrap();
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomically(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn atomic_write_reports_missing_directory() {
        let path = Path::new("/nonexistent-infisical-init-directory/secrets.env");
        let error = write_atomically(path, b"x").unwrap_err();
        assert_eq!(error.kind, Kind::CannotWrite);
        assert!(error.message.contains("/nonexistent-infisical-init-directory/secrets.env"), "{}", error.message);
    }
}
