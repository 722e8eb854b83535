//! What `infisical-init run` fetches and how it builds the child's
//! environment: recorded values byte for byte, merge precedence, reserved
//! names, credential stripping, `_FILE` settings, the v4-to-v3 fallback,
//! unknown environments and the precedence of flags over variables.
mod util;
use util::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// A Python child that writes its whole environment to stdout as one JSON
/// object. Python reads the environment itself, so no shell quoting or
/// `printf` formatting comes between the shim and the comparison.
const PRINT_ENVIRONMENT: &str = "import json, os, sys\nsys.stdout.write(json.dumps(dict(os.environ)))";

/// Variables the child may have besides the secrets: the harness's own, the
/// non-credential settings the shim passes through, and `LC_CTYPE`, which
/// Python sets in its own environment when it coerces the C locale.
const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "PYTHONUTF8",
    "LC_CTYPE",
    "INFISICAL_DOMAIN",
    "INFISICAL_PROJECT_ID",
];

const ROOT_DATABASE_URL: &str = "postgres://app:s3cr3t@db.internal:5432/appdb?sslmode=disable";
const BACKEND_DATABASE_URL: &str = "postgres://backend@db.internal:5432/backend";

/// A temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(temp_dir(&format!("fetch-{name}")))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Returns the path of the real Python interpreter. A version manager's
/// `python3` wrapper (pyenv's shim, for one) changes PATH and adds its own
/// variables before Python starts, which would spoil the comparison.
fn python_interpreter() -> &'static str {
    static INTERPRETER: OnceLock<String> = OnceLock::new();
    INTERPRETER.get_or_init(|| {
        let output = Command::new("python3")
            .args(["-c", "import sys; sys.stdout.write(sys.executable)"])
            .output()
            .expect("python3 runs");
        assert!(output.status.success(), "python3 -c failed: {}", text(&output.stderr));
        text(&output.stdout)
    })
}

/// Runs `infisical-init run RUN_ARGS -- python3 -c PRINT_ENVIRONMENT` and
/// returns the whole output, without checking the exit status.
fn run_printing_environment(command: &mut Command, run_args: &[&str]) -> Output {
    command.env("PYTHONUTF8", "1").arg("run").args(run_args);
    command.args(["--", python_interpreter(), "-c", PRINT_ENVIRONMENT]);
    run(command)
}

/// Runs the Python child, checks that the shim succeeded, and returns the
/// child's environment and the shim's stderr.
fn child_environment(command: &mut Command, run_args: &[&str]) -> (HashMap<String, String>, String) {
    let output = run_printing_environment(command, run_args);
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");
    let environment: HashMap<String, String> = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not the child's JSON ({error}):\n{}", text(&output.stdout)));
    (environment, stderr)
}

fn load_fixture(name: &str) -> Value {
    let path = repository().join("tests/fixtures/infisical-api").join(name);
    let body = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&body).unwrap_or_else(|error| panic!("parse {}: {error}", path.display()))
}

fn secret_pairs(secrets: &Value) -> Vec<(String, String)> {
    secrets
        .as_array()
        .expect("a list of secrets")
        .iter()
        .map(|secret| {
            let key = secret["secretKey"].as_str().expect("secretKey is a string");
            let value = secret["secretValue"].as_str().expect("secretValue is a string");
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The recorded dev `/` secrets as the child must see them by default: the
/// imports of the imports listing first, in list order, then the folder's own
/// expanded secrets over them.
fn expected_dev_secrets() -> HashMap<String, String> {
    let imports = load_fixture("11-list-dev-root-imports.json");
    let expanded = load_fixture("13-list-dev-root-expand.json");
    let mut expected = HashMap::new();
    for import in imports["imports"].as_array().expect("a list of imports") {
        expected.extend(secret_pairs(&import["secrets"]));
    }
    expected.extend(secret_pairs(&expanded["secrets"]));
    expected
}

/// Writes a `--data` dataset with the test project and `folders`, in the
/// server's schema: `{"dev": {"/": {"secrets": [...], "imports": [...]}}}`.
fn write_dataset(scratch: &Scratch, folders: Value) -> PathBuf {
    let dataset = json!({
        "projects": [{
            "id": PROJECT_ID,
            "slug": "dataset-project",
            "environments": [
                {"slug": "dev", "name": "Development"},
                {"slug": "staging", "name": "Staging"},
                {"slug": "prod", "name": "Production"},
            ],
            "folders": folders,
        }]
    });
    let path = scratch.path("dataset.json");
    write_file(&path, &dataset.to_string());
    path
}

fn dataset_server(dataset: &Path) -> TestServer {
    TestServer::with_args(&["--data", dataset.to_str().expect("UTF-8 temporary path")])
}

fn secret(key: &str, value: &str) -> Value {
    json!({"key": key, "value": value})
}

fn lines_containing<'a>(stderr: &'a str, needle: &str) -> Vec<&'a str> {
    stderr.lines().filter(|line| line.contains(needle)).collect()
}

// Every recorded secret, byte for byte.

#[test]
fn recorded_dev_secrets_arrive_exactly() {
    let server = TestServer::start();
    let expected = expected_dev_secrets();
    let (environment, stderr) = child_environment(&mut shim_for(&server), &[]);

    for (key, value) in &expected {
        assert_eq!(environment.get(key), Some(value), "secret {key} in the child");
    }
    for key in environment.keys() {
        assert!(
            expected.contains_key(key) || INHERITED.contains(&key.as_str()),
            "unexpected variable {key} in the child"
        );
    }
    assert_no_leak(&stderr);
}

#[test]
fn recorded_dev_secrets_cover_hard_cases() {
    let server = TestServer::start();
    let (environment, _) = child_environment(&mut shim_for(&server), &[]);
    let value = |key: &str| environment.get(key).map(String::as_str);

    // The folder's own secret beats the imported one of the same name.
    assert_eq!(value("API_KEY"), Some("dev-api-key-123"));
    assert_eq!(value("STAGING_ONLY"), Some("from-staging"));
    assert_eq!(value("SHARED_SETTING"), Some("staging-shared"));
    assert_eq!(value("my-dashed-key"), Some("dash-in-name"));
    assert_eq!(value("dotted.key.name"), Some("dot-in-name"));
    assert_eq!(value("EMPTY_VALUE"), Some(""));
    assert_eq!(value("MULTILINE_VALUE"), Some("-----BEGIN KEY-----\nline2\nline3\n-----END KEY-----"));
    assert_eq!(value("QUOTES_DOLLAR_EQUALS"), Some("he said \"hi\" & it's $HOME; a=b==c `x` \\n"));
    assert_eq!(value("UNICODE_VALUE"), Some("héllo wörld — ünïcødé ✓ 日本語 🚀"));
    assert_eq!(value("REFERENCE_VALUE"), Some("Bearer dev-api-key-123"));
    assert_eq!(value("NESTED_REFERENCE"), Some("9000|from-staging"));
}

// Merge precedence and the fetch switches.

#[test]
fn later_path_beats_earlier() {
    let server = TestServer::start();

    let (environment, _) = child_environment(&mut shim_for(&server), &["--path", "/", "--path", "/backend"]);
    assert_eq!(environment["DATABASE_URL"], BACKEND_DATABASE_URL);
    assert_eq!(environment["BACKEND_SECRET"], "backend-only-secret");
    assert_eq!(environment["API_KEY"], "dev-api-key-123");

    let (environment, _) = child_environment(&mut shim_for(&server), &["--path", "/backend", "--path", "/"]);
    assert_eq!(environment["DATABASE_URL"], ROOT_DATABASE_URL);
    assert_eq!(environment["BACKEND_SECRET"], "backend-only-secret");
}

#[test]
fn no_imports_drops_imported_secrets() {
    let server = TestServer::start();
    let (environment, _) = child_environment(&mut shim_for(&server), &["--no-imports"]);
    assert!(!environment.contains_key("STAGING_ONLY"), "STAGING_ONLY was imported");
    assert!(!environment.contains_key("SHARED_SETTING"), "SHARED_SETTING was imported");
    assert_eq!(environment["API_KEY"], "dev-api-key-123");
}

#[test]
fn no_expand_keeps_references() {
    let server = TestServer::start();
    let (environment, _) = child_environment(&mut shim_for(&server), &["--no-expand"]);
    assert_eq!(environment["REFERENCE_VALUE"], "Bearer ${API_KEY}");
    assert_eq!(environment["NESTED_REFERENCE"], "${dev.backend.BACKEND_PORT}|${staging.STAGING_ONLY}");
}

#[test]
fn recursive_includes_subfolders() {
    let server = TestServer::start();

    let (environment, _) = child_environment(&mut shim_for(&server), &[]);
    assert!(!environment.contains_key("BACKEND_SECRET"), "BACKEND_SECRET without --recursive");

    let (environment, _) = child_environment(&mut shim_for(&server), &["--recursive"]);
    assert_eq!(environment["BACKEND_SECRET"], "backend-only-secret");
    assert_eq!(environment["BACKEND_PORT"], "9000");
    assert_eq!(environment["API_KEY"], "dev-api-key-123");
}

#[test]
fn later_import_beats_earlier() {
    let scratch = Scratch::new("imports");
    let dataset = write_dataset(
        &scratch,
        json!({
            "dev": {"/": {
                "secrets": [secret("OWN", "own-value"), secret("OVERRIDDEN", "own-value")],
                "imports": [
                    {"environment": "staging", "path": "/"},
                    {"environment": "prod", "path": "/shared"},
                ],
            }},
            "staging": {"/": {"secrets": [
                secret("SHARED", "from-first-import"),
                secret("FIRST_ONLY", "first"),
                secret("OVERRIDDEN", "from-first-import"),
            ]}},
            "prod": {"/shared": {"secrets": [
                secret("SHARED", "from-second-import"),
                secret("SECOND_ONLY", "second"),
                secret("OVERRIDDEN", "from-second-import"),
            ]}},
        }),
    );
    let server = dataset_server(&dataset);
    let (environment, _) = child_environment(&mut shim_for(&server), &[]);

    assert_eq!(environment["SHARED"], "from-second-import");
    assert_eq!(environment["FIRST_ONLY"], "first");
    assert_eq!(environment["SECOND_ONLY"], "second");
    assert_eq!(environment["OVERRIDDEN"], "own-value");
    assert_eq!(environment["OWN"], "own-value");
}

// Reserved names.

#[test]
fn reserved_names_not_injected() {
    let scratch = Scratch::new("reserved");
    let dataset = write_dataset(
        &scratch,
        json!({"dev": {"/": {"secrets": [
            secret("PATH", "/evil/bin"),
            secret("HOME", "/evil/home"),
            secret("LC_ALL", "evil"),
            secret("XDG_CONFIG_HOME", "/evil/xdg"),
            secret("XDG_RUNTIME_DIR", "/evil/run"),
            secret("SHELL", "/evil/sh"),
            secret("ALLOWED", "allowed-value"),
        ]}}}),
    );
    let server = dataset_server(&dataset);
    let inherited_path = std::env::var("PATH").expect("the test runs with PATH set");
    let mut command = shim_for(&server);
    command
        .env("HOME", "/inherited/home")
        .env("LC_ALL", "C")
        .env("XDG_CONFIG_HOME", "/inherited/xdg");
    let (environment, stderr) = child_environment(&mut command, &[]);

    assert_eq!(environment["PATH"], inherited_path);
    assert_eq!(environment["HOME"], "/inherited/home");
    assert_eq!(environment["LC_ALL"], "C");
    assert_eq!(environment["XDG_CONFIG_HOME"], "/inherited/xdg");
    assert!(!environment.contains_key("XDG_RUNTIME_DIR"), "reserved XDG_RUNTIME_DIR was injected");
    assert!(!environment.contains_key("SHELL"), "reserved SHELL was injected");
    assert_eq!(environment["ALLOWED"], "allowed-value");

    for key in ["PATH", "HOME", "LC_ALL", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR", "SHELL"] {
        let warnings = lines_containing(&stderr, &format!("secret {key} not injected"));
        assert_eq!(warnings.len(), 1, "one warning naming {key}:\n{stderr}");
        assert!(warnings[0].contains(" warn: "), "the line for {key} is a warning: {}", warnings[0]);
    }
    assert!(lines_containing(&stderr, "ALLOWED").is_empty(), "no warning for ALLOWED:\n{stderr}");
    assert!(!stderr.contains("/evil"), "a reserved value is logged:\n{stderr}");
}

// The shim's credentials never reach the child.

fn assert_no_credentials(environment: &HashMap<String, String>) {
    for name in [
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID",
        "INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET",
        "INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN",
        "INFISICAL_TOKEN",
    ] {
        assert!(!environment.contains_key(name), "{name} reached the child");
        let file_variable = format!("{name}_FILE");
        assert!(!environment.contains_key(&file_variable), "{file_variable} reached the child");
    }
    for (name, value) in environment {
        assert!(!value.contains(CLIENT_SECRET), "{name} holds the client secret");
        assert!(!value.contains(READY_TOKEN), "{name} holds the access token");
    }
}

#[test]
fn credential_variables_not_passed() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command.env("INFISICAL_TOKEN", READY_TOKEN);
    let (environment, _) = child_environment(&mut command, &[]);

    assert_no_credentials(&environment);
    assert_eq!(environment["API_KEY"], "dev-api-key-123");
    assert_eq!(environment["INFISICAL_PROJECT_ID"], PROJECT_ID);
    assert_eq!(environment["INFISICAL_DOMAIN"], server.url);
}

#[test]
fn credential_file_variables_not_passed() {
    let scratch = Scratch::new("credential-files");
    let token_file = scratch.path("token");
    let id_file = scratch.path("client-id");
    let secret_file = scratch.path("client-secret");
    write_file(&token_file, &format!("{READY_TOKEN}\n"));
    write_file(&id_file, &format!("{CLIENT_ID}\n"));
    write_file(&secret_file, &format!("{CLIENT_SECRET}\n"));
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID")
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID_FILE", &id_file)
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE", &secret_file)
        .env("INFISICAL_TOKEN_FILE", &token_file)
        .env("INFISICAL_UNIVERSAL_AUTH_ACCESS_TOKEN", READY_TOKEN);
    let (environment, _) = child_environment(&mut command, &[]);

    assert_no_credentials(&environment);
    assert_eq!(environment["API_KEY"], "dev-api-key-123");
    assert_eq!(environment["INFISICAL_PROJECT_ID"], PROJECT_ID);
}

// Credentials read from `_FILE` variables.

/// Runs `infisical-init run RUN_ARGS -- touch MARKER`, so a test can tell
/// whether the child started.
fn run_touching(command: &mut Command, run_args: &[&str], marker: &Path) -> Output {
    command.arg("run").args(run_args).args(["--", "touch"]).arg(marker);
    run(command)
}

/// Checks that the shim failed with `expected` and one error line, and
/// returns that line.
fn single_error_line(output: &Output, expected: i32) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), expected, "stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr:\n{stderr}");
    assert!(lines[0].starts_with("infisical-init: "), "prefixed line: {}", lines[0]);
    assert!(lines[0].contains(" error: "), "an error line: {}", lines[0]);
    assert_eq!(text(&output.stdout), "", "nothing on stdout");
    assert_no_leak(&stderr);
    lines[0].to_string()
}

#[test]
fn file_credentials_with_trailing_newline() {
    let scratch = Scratch::new("file-credentials");
    let id_file = scratch.path("client-id");
    let secret_file = scratch.path("client-secret");
    write_file(&id_file, &format!("{CLIENT_ID}\n"));
    write_file(&secret_file, &format!("{CLIENT_SECRET}\n"));
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID")
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID_FILE", &id_file)
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE", &secret_file);
    let (environment, stderr) = child_environment(&mut command, &[]);

    assert_eq!(environment["API_KEY"], "dev-api-key-123");
    let logins: Vec<String> = server
        .api_paths()
        .into_iter()
        .filter(|path| path == "/api/v1/auth/universal-auth/login")
        .collect();
    assert_eq!(logins.len(), 1, "one login with the file credentials");
    assert_no_leak(&stderr);
}

#[test]
fn variable_and_file_both_set() {
    let scratch = Scratch::new("both-set");
    let secret_file = scratch.path("client-secret");
    let marker = scratch.path("started");
    write_file(&secret_file, &format!("{CLIENT_SECRET}\n"));
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command.env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE", &secret_file);
    let output = run_touching(&mut command, &[], &marker);

    let line = single_error_line(&output, 78);
    assert!(line.contains("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET "), "names the variable: {line}");
    assert!(line.contains("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE"), "names the _FILE variable: {line}");
    assert!(!marker.exists(), "the child was started");
    assert!(server.api_paths().is_empty(), "requests sent: {:?}", server.api_paths());
}

#[test]
fn unreadable_credential_file() {
    let scratch = Scratch::new("unreadable");
    let missing = scratch.path("no-such-file");
    // A directory cannot be read as a file, even by root.
    let directory = scratch.path("a-directory");
    std::fs::create_dir(&directory).expect("create a directory");
    let marker = scratch.path("started");
    let server = TestServer::start();

    for path in [&missing, &directory] {
        let mut command = shim_for(&server);
        command
            .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")
            .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE", path);
        let output = run_touching(&mut command, &[], &marker);

        let line = single_error_line(&output, 78);
        let path_text = path.display().to_string();
        assert!(line.contains(&path_text), "names {path_text}: {line}");
        assert!(line.contains("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE"), "names the variable: {line}");
        assert!(!marker.exists(), "the child was started");
    }
    assert!(server.api_paths().is_empty(), "requests sent: {:?}", server.api_paths());
}

// The v4-to-v3 fallback.

const LOGIN: &str = "/api/v1/auth/universal-auth/login";
const V4_LIST: &str = "/api/v4/secrets";
const V3_LIST: &str = "/api/v3/secrets/raw";

#[test]
fn v3_fallback_probes_v4_once() {
    let server = TestServer::with_args(&["--no-v4"]);
    let (environment, _) = child_environment(&mut shim_for(&server), &["--path", "/", "--path", "/backend"]);

    assert_eq!(environment["DATABASE_URL"], BACKEND_DATABASE_URL);
    assert_eq!(environment["STAGING_ONLY"], "from-staging");
    assert_eq!(server.api_paths(), [LOGIN, V4_LIST, V3_LIST, V3_LIST]);
    let requests = server.requests();
    let v3_paths: Vec<&str> = requests
        .iter()
        .filter(|request| request["path"] == V3_LIST)
        .map(|request| request["query"]["secretPath"].as_str().expect("secretPath in the query"))
        .collect();
    assert_eq!(v3_paths, ["/", "/backend"]);
    for request in requests.iter().filter(|request| request["path"] == V3_LIST) {
        assert_eq!(request["query"]["workspaceId"], PROJECT_ID, "v3 names the project as workspaceId");
    }
}

#[test]
fn v4_server_gets_no_v3_request() {
    let server = TestServer::start();
    let (environment, _) = child_environment(&mut shim_for(&server), &["--path", "/", "--path", "/backend"]);

    assert_eq!(environment["DATABASE_URL"], BACKEND_DATABASE_URL);
    assert_eq!(server.api_paths(), [LOGIN, V4_LIST, V4_LIST]);
    for request in server.requests().iter().filter(|request| request["path"] == V4_LIST) {
        assert_eq!(request["query"]["projectId"], PROJECT_ID, "v4 names the project as projectId");
        assert_eq!(request["has_auth"], true, "the listing carries the token");
    }
}

// Environments and paths that do not exist.

#[test]
fn unknown_environment_lists_valid_ones() {
    let scratch = Scratch::new("unknown-environment");
    let marker = scratch.path("started");
    let server = TestServer::start();
    let output = run_touching(&mut shim_for(&server), &["--env", "nope"], &marker);

    let line = single_error_line(&output, 78);
    assert!(line.contains("'nope'"), "names the slug: {line}");
    assert!(line.contains("dev, staging, prod"), "lists the environments: {line}");
    assert!(!marker.exists(), "the child was started");
}

#[test]
fn empty_path_starts_with_warning() {
    let scratch = Scratch::new("empty-path");
    let marker = scratch.path("started");
    let server = TestServer::start();
    let output = run_touching(&mut shim_for(&server), &["--path", "/nope"], &marker);
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");
    assert!(marker.exists(), "the child did not start");
    let warnings = lines_containing(&stderr, " warn: ");
    assert_eq!(warnings.len(), 1, "one warning:\n{stderr}");
    assert!(warnings[0].contains("no secrets found"), "{}", warnings[0]);
    assert!(warnings[0].contains("/nope"), "names the path: {}", warnings[0]);
}

// Flags, variables and their forms.

#[test]
fn env_flag_beats_variable() {
    let server = TestServer::start();

    let mut command = shim_for(&server);
    command.env("INFISICAL_ENVIRONMENT", "prod");
    let (environment, _) = child_environment(&mut command, &[]);
    assert_eq!(environment["PROD_ONLY"], "prod-value");
    assert!(!environment.contains_key("STAGING_ONLY"), "staging secret with INFISICAL_ENVIRONMENT=prod");

    let mut command = shim_for(&server);
    command.env("INFISICAL_ENVIRONMENT", "prod");
    let (environment, _) = child_environment(&mut command, &["--env", "staging"]);
    assert_eq!(environment["STAGING_ONLY"], "from-staging");
    assert_eq!(environment["API_KEY"], "staging-api-key-should-be-shadowed");
    assert!(!environment.contains_key("PROD_ONLY"), "prod secret with --env staging");
}

#[test]
fn domain_flag_beats_variable() {
    let server = TestServer::start();
    let other = TestServer::start();
    let mut command = shim_for(&server);
    command.env("INFISICAL_DOMAIN", &other.url);
    let domain = server.url.clone();
    let (environment, _) = child_environment(&mut command, &["--domain", &domain]);

    assert_eq!(environment["API_KEY"], "dev-api-key-123");
    assert_eq!(server.api_paths(), [LOGIN, V4_LIST]);
    assert!(other.api_paths().is_empty(), "INFISICAL_DOMAIN got requests: {:?}", other.api_paths());
}

#[test]
fn project_id_flag_forms() {
    let server = TestServer::start();
    let alias = ["--projectId", PROJECT_ID];
    let equals = format!("--project-id={PROJECT_ID}");
    let forms: [&[&str]; 3] = [&alias, &[equals.as_str()], &["--project-id", PROJECT_ID]];

    for form in forms {
        server.reset();
        let mut command = shim_for(&server);
        // A variable naming another project shows that the flag wins.
        command.env("INFISICAL_PROJECT_ID", OTHER_PROJECT_ID);
        let (environment, stderr) = child_environment(&mut command, form);
        assert_eq!(environment["API_KEY"], "dev-api-key-123", "with {form:?}:\n{stderr}");
        let requests = server.requests();
        let listing = requests
            .iter()
            .find(|request| request["path"] == V4_LIST)
            .unwrap_or_else(|| panic!("no listing with {form:?}"));
        assert_eq!(listing["query"]["projectId"], PROJECT_ID, "with {form:?}");
    }
}

#[test]
fn domain_forms_normalized() {
    let server = TestServer::start();
    let url = &server.url;
    let forms = [
        format!("{url}/"),
        format!("{url}/api"),
        format!("{url}/api/"),
        format!("\"{url}\""),
        format!("'{url}/'"),
    ];

    for domain in &forms {
        server.reset();
        let mut command = shim_for(&server);
        command.env("INFISICAL_DOMAIN", domain);
        let (environment, stderr) = child_environment(&mut command, &[]);
        assert_eq!(environment["API_KEY"], "dev-api-key-123", "with INFISICAL_DOMAIN={domain}:\n{stderr}");
        assert_eq!(server.api_paths(), [LOGIN, V4_LIST], "with INFISICAL_DOMAIN={domain}");
    }
}

#[test]
fn ready_token_skips_login() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID")
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")
        .env("INFISICAL_TOKEN", READY_TOKEN);
    let (environment, stderr) = child_environment(&mut command, &[]);

    assert_eq!(environment["API_KEY"], "dev-api-key-123");
    assert_eq!(server.api_paths(), [V4_LIST]);
    assert_no_leak(&stderr);
}

#[test]
fn ready_token_beats_client_credentials() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command.env("INFISICAL_TOKEN", READY_TOKEN);
    let (environment, _) = child_environment(&mut command, &[]);

    assert_eq!(environment["API_KEY"], "dev-api-key-123");
    assert_eq!(server.api_paths(), [V4_LIST]);
}

/// 2,000 secrets of 100 bytes take about 240 KiB of environment: more than
/// the 128 KiB that `sysconf(ARG_MAX)` reports in a static musl build, well
/// under the kernel's real limit of a quarter of the stack limit.
#[test]
fn thousands_of_secrets_start() {
    let server = TestServer::with_args(&["--generate", "2000"]);
    let output = run(shim_for(&server).args(["run", "--", "sh", "-c", "printf %s \"${#GEN_01999}\""]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "100");
}
