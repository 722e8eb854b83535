//! How `infisical-init run` fails: each case exits with its documented code,
//! prints one `infisical-init:` error line that names the request where one
//! was sent, leaks no credential or secret value, and never starts the child.
mod util;
use util::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

const LOGIN: &str = "/api/v1/auth/universal-auth/login";
const V4_LIST: &str = "/api/v4/secrets";

/// A JWT-shaped token that the server treats as expired when started with
/// `--expired-token`. It shares the prefix that `assert_no_leak` looks for.
const EXPIRED_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJleHBpcmVkIn0.expired-token-for-tests-0123";

/// A temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(temp_dir(&format!("errors-{name}")))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Returns the path of the file that the child creates when it starts.
    fn marker(&self) -> PathBuf {
        self.path("child-started")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Adds `run RUN_ARGS -- touch MARKER` to `command`.
fn run_touching<'a>(command: &'a mut Command, run_args: &[&str], marker: &Path) -> &'a mut Command {
    command.arg("run").args(run_args).args(["--", "touch"]).arg(marker)
}

/// Runs `infisical-init run RUN_ARGS -- touch MARKER` and checks what every
/// failure shares: exit code `expected`, nothing on stdout, exactly one
/// prefixed error line on stderr, no leaked value, and no child. Returns the
/// error line.
fn expect_failure(command: &mut Command, run_args: &[&str], expected: i32) -> String {
    let scratch = Scratch::new(&format!("failure-{}", unique_suffix()));
    let marker = scratch.marker();
    let output = run(run_touching(command, run_args, &marker));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), expected, "stderr:\n{stderr}");
    assert!(!marker.exists(), "the child was started");
    assert_eq!(stdout, "", "nothing on stdout");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr:\n{stderr}");
    assert!(lines[0].starts_with("infisical-init: "), "prefixed line: {}", lines[0]);
    assert!(lines[0].contains(" error: "), "an error line: {}", lines[0]);
    assert_no_leak(&format!("{stdout}{stderr}"));
    lines[0].to_string()
}

/// Returns a number unique within this test process, for scratch names.
fn unique_suffix() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Checks that an error line names the request, its status and the server's
/// request id.
fn assert_names_request(line: &str, server: &TestServer, route: &str, status: u16) {
    let url = format!("{}{route}", server.url);
    assert!(line.contains(&url), "names {url}: {line}");
    assert!(line.contains(&format!("returned {status}")), "names status {status}: {line}");
    assert!(line.contains("(reqId req-"), "names the reqId: {line}");
}

fn write_dataset(scratch: &Scratch, secrets: serde_json::Value) -> PathBuf {
    let dataset = json!({
        "projects": [{
            "id": PROJECT_ID,
            "slug": "dataset-project",
            "environments": [{"slug": "dev", "name": "Development"}],
            "folders": {"dev": {"/": {"secrets": secrets}}},
        }]
    });
    let path = scratch.path("dataset.json");
    write_file(&path, &dataset.to_string());
    path
}

// Rejected credentials and permissions (77).

#[test]
fn wrong_client_secret_not_retried() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command.env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", "wrong-client-secret");
    let line = expect_failure(&mut command, &[], 77);

    assert_names_request(&line, &server, LOGIN, 401);
    assert!(line.contains("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET"), "names the variable: {line}");
    assert!(!line.contains("wrong-client-secret"), "shows the secret: {line}");
    assert_eq!(server.api_paths(), [LOGIN], "one login and nothing else");
}

#[test]
fn unknown_client_id_rejected() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command.env("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "99999999-2222-4333-8444-555555555555");
    let line = expect_failure(&mut command, &[], 77);

    assert_names_request(&line, &server, LOGIN, 404);
    assert!(line.contains("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"), "names the variable: {line}");
    assert_eq!(server.api_paths(), [LOGIN]);
}

#[test]
fn project_without_membership_rejected() {
    let server = TestServer::start();
    let line = expect_failure(&mut shim_for(&server), &["--project-id", OTHER_PROJECT_ID], 77);

    assert_names_request(&line, &server, V4_LIST, 403);
    assert!(line.contains("not a member"), "gives the server's reason: {line}");
}

#[test]
fn expired_token_rejected() {
    let server = TestServer::with_args(&["--expired-token", EXPIRED_TOKEN]);
    let mut command = shim_for(&server);
    command.env("INFISICAL_TOKEN", EXPIRED_TOKEN);
    let line = expect_failure(&mut command, &[], 77);

    assert_names_request(&line, &server, V4_LIST, 403);
    assert!(line.contains("expired"), "says the token expired: {line}");
    assert_eq!(server.api_paths(), [V4_LIST], "a ready token needs no login");
}

#[test]
fn garbage_tokens_rejected() {
    let server = TestServer::start();
    let tokens = [
        "not-a-token-at-all",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.forged-signature",
    ];

    for token in tokens {
        server.reset();
        let mut command = shim_for(&server);
        command.env("INFISICAL_TOKEN", token);
        let line = expect_failure(&mut command, &[], 77);

        assert_names_request(&line, &server, V4_LIST, 403);
        assert!(!line.contains(token), "shows the token: {line}");
        assert_eq!(server.api_paths(), [V4_LIST], "with token {token}");
    }
}

// Missing or invalid configuration (78).

#[test]
fn no_credentials_configured() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID")
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET");
    let line = expect_failure(&mut command, &[], 78);

    assert!(line.contains("no credentials"), "{line}");
    assert!(line.contains("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"), "names what to set: {line}");
    assert!(server.api_paths().is_empty(), "requests sent: {:?}", server.api_paths());
}

#[test]
fn missing_project_id() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command.env_remove("INFISICAL_PROJECT_ID");
    let line = expect_failure(&mut command, &[], 78);

    assert!(line.contains("missing project ID"), "{line}");
    assert!(line.contains("INFISICAL_PROJECT_ID"), "names the variable: {line}");
    assert!(server.api_paths().is_empty(), "requests sent: {:?}", server.api_paths());
}

#[test]
fn invalid_domain_scheme() {
    let server = TestServer::start();
    let line = expect_failure(&mut shim_for(&server), &["--domain", "ftp://x"], 78);

    assert!(line.contains("invalid domain 'ftp://x'"), "{line}");
    assert!(server.api_paths().is_empty(), "requests sent: {:?}", server.api_paths());
}

#[test]
fn invalid_log_level() {
    let server = TestServer::start();
    let line = expect_failure(&mut shim_for(&server), &["--log-level", "loud"], 78);
    assert!(line.contains("invalid log level 'loud'"), "{line}");

    let mut command = shim_for(&server);
    command.env("INFISICAL_LOG_LEVEL", "verbose");
    let line = expect_failure(&mut command, &[], 78);
    assert!(line.contains("'verbose'"), "{line}");
    assert!(line.contains("INFISICAL_LOG_LEVEL"), "names the variable: {line}");

    assert!(server.api_paths().is_empty(), "requests sent: {:?}", server.api_paths());
}

#[test]
fn unknown_project_id() {
    let server = TestServer::start();
    let project = "00000000-0000-4000-8000-000000000000";
    let line = expect_failure(&mut shim_for(&server), &["--project-id", project], 78);

    assert_names_request(&line, &server, V4_LIST, 404);
    assert!(line.contains(project), "names the project: {line}");
    assert!(line.contains("--project-id"), "names the flag: {line}");
}

#[test]
fn secret_with_nul_byte() {
    let scratch = Scratch::new("nul-byte");
    let dataset = write_dataset(&scratch, json!([
        {"key": "FINE", "value": "fine-value"},
        {"key": "HAS_NUL", "value": "a\u{0}b"},
    ]));
    let server = TestServer::with_args(&["--data", dataset.to_str().expect("UTF-8 temporary path")]);
    let line = expect_failure(&mut shim_for(&server), &[], 78);

    assert!(line.contains("HAS_NUL"), "names the key: {line}");
    assert!(line.contains("3 bytes"), "gives the size: {line}");
    assert!(line.contains("NUL"), "gives the reason: {line}");
    assert!(!line.contains("fine-value"), "shows a value: {line}");
}

#[test]
fn secret_over_variable_limit() {
    let scratch = Scratch::new("too-large");
    let large = "x".repeat(200_000);
    let dataset = write_dataset(&scratch, json!([{"key": "HUGE_SECRET", "value": large}]));
    let server = TestServer::with_args(&["--data", dataset.to_str().expect("UTF-8 temporary path")]);
    let line = expect_failure(&mut shim_for(&server), &[], 78);

    assert!(line.contains("HUGE_SECRET"), "names the key: {line}");
    assert!(!line.contains("xxxxxxxx"), "shows the value: {line}");
}

// An unavailable or misbehaving server (69, 65).

#[test]
fn server_down() {
    let server = TestServer::start();
    let url = server.url.clone();
    drop(server);
    let scratch = Scratch::new("server-down");
    let marker = scratch.marker();
    let mut command = shim();
    command
        .env("INFISICAL_DOMAIN", &url)
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", CLIENT_ID)
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", CLIENT_SECRET)
        .env("INFISICAL_PROJECT_ID", PROJECT_ID);
    // A refused connection is retried until --timeout runs out (120 s by
    // default), so a short one keeps the test fast.
    let output = run(run_touching(&mut command, &["--timeout", "1"], &marker));
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), 69, "stderr:\n{stderr}");
    assert!(!marker.exists(), "the child was started");
    assert_eq!(stdout, "", "nothing on stdout");
    assert_no_leak(&format!("{stdout}{stderr}"));
    let login_url = format!("{url}{LOGIN}");
    let (errors, others): (Vec<&str>, Vec<&str>) = stderr.lines().partition(|line| line.contains(" error: "));
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    assert!(errors[0].starts_with("infisical-init: "), "prefixed line: {}", errors[0]);
    assert!(errors[0].contains(&login_url), "names the URL: {}", errors[0]);
    assert!(errors[0].contains("could not connect"), "{}", errors[0]);
    for line in others {
        assert!(line.starts_with("infisical-init: "), "prefixed line: {line}");
        assert!(line.contains("retrying in"), "only retries are logged besides the error: {line}");
    }
}

#[test]
fn server_error_on_list() {
    let server = TestServer::with_args(&["--fail", "list=500"]);
    let line = expect_failure(&mut shim_for(&server), &[], 69);

    assert_names_request(&line, &server, V4_LIST, 500);
    assert_eq!(server.api_paths(), [LOGIN, V4_LIST]);
}

#[test]
fn html_instead_of_json() {
    let server = TestServer::with_args(&["--fail", "list=html"]);
    let line = expect_failure(&mut shim_for(&server), &[], 65);

    assert!(line.contains(&format!("{}{V4_LIST}", server.url)), "names the URL: {line}");
    assert!(line.contains("HTML"), "says the body is HTML: {line}");
    assert!(line.contains("web UI"), "suggests the web UI: {line}");
}

#[test]
fn malformed_json_on_list() {
    for fault in ["list=notjson", "list=truncated"] {
        let server = TestServer::with_args(&["--fail", fault]);
        let line = expect_failure(&mut shim_for(&server), &[], 65);

        assert!(line.contains(&format!("{}{V4_LIST}", server.url)), "names the URL with {fault}: {line}");
        assert!(line.contains("not the JSON"), "says the body is not JSON with {fault}: {line}");
        assert!(!line.contains("HTML"), "calls it HTML with {fault}: {line}");
    }
}

// A stop signal during start-up.

#[test]
fn sigterm_during_fetch_aborts() {
    let scratch = Scratch::new("sigterm");
    let marker = scratch.marker();
    // The delay only keeps the listing in flight; the shim must not wait it
    // out, which the request log shows below.
    let server = TestServer::with_args(&["--delay", "list=5"]);
    let mut command = shim_for(&server);
    run_touching(&mut command, &[], &marker);
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();

    let listing_sent = wait_until(Duration::from_secs(10), || server.api_paths().iter().any(|path| path == V4_LIST));
    assert!(listing_sent, "the listing request never arrived");
    let kill = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill runs");
    assert!(kill.success(), "kill -TERM {pid} failed");
    let output = wait_with_limit(child, Duration::from_secs(10));
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), 143, "stderr:\n{stderr}");
    assert!(!marker.exists(), "the child was started");
    let requests = server.requests();
    let listing = requests.iter().find(|request| request["path"] == V4_LIST).expect("the listing is logged");
    assert!(listing["status"].is_null(), "the shim waited for the delayed response: {listing}");
    assert!(stderr.contains("SIGTERM"), "names the signal:\n{stderr}");
    assert!(!stderr.contains(" error: "), "an abort is not an error:\n{stderr}");
    assert_eq!(text(&output.stdout), "");
    assert_no_leak(&stderr);
}

// The command line (64) and the commands that need no credentials.

#[test]
fn missing_command() {
    for args in [&["run", "--"][..], &["run"][..]] {
        let output = run(shim().args(args));
        let stderr = text(&output.stderr);
        assert_eq!(code(&output.status), 64, "with {args:?}:\n{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr with {args:?}:\n{stderr}");
        assert!(lines[0].starts_with("infisical-init: "), "{}", lines[0]);
        assert!(lines[0].contains("missing command"), "{}", lines[0]);
        assert_eq!(text(&output.stdout), "");
    }
}

#[test]
fn unknown_flag_is_usage_error() {
    let scratch = Scratch::new("unknown-flag");
    let marker = scratch.marker();
    let output = run(run_touching(&mut shim(), &["--no-such-flag"], &marker));
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), 64, "stderr:\n{stderr}");
    assert!(!marker.exists(), "the child was started");
    assert!(stderr.contains("--no-such-flag"), "names the flag:\n{stderr}");
    for line in stderr.lines() {
        assert!(line.starts_with("infisical-init: "), "prefixed line: {line}");
    }
    assert_eq!(text(&output.stdout), "");
}

#[test]
fn unknown_flag_single_line() {
    let output = run(shim().args(["run", "--no-such-flag", "--", "true"]));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 64, "stderr:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr:\n{stderr}");
}

#[test]
fn help_and_version_need_no_credentials() {
    for args in [&["--help"][..], &["run", "--help"][..]] {
        let output = run(shim().args(args));
        let stdout = text(&output.stdout);
        assert_eq!(code(&output.status), 0, "with {args:?}:\n{}", text(&output.stderr));
        assert!(stdout.starts_with("Usage: infisical-init"), "usage with {args:?}:\n{stdout}");
        assert_eq!(text(&output.stderr), "", "with {args:?}");
    }

    let output = run(shim().arg("--version"));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("infisical-init {}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(text(&output.stderr), "");
}

// The leak check itself.

#[test]
fn leak_check_catches_leak() {
    let server = TestServer::start();
    let output = run(shim_for(&server).args(["run", "--", "sh", "-c", "printf %s \"$API_KEY\" >&2"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("dev-api-key-123"), "the child printed the secret:\n{stderr}");

    let caught = std::panic::catch_unwind(|| assert_no_leak(&stderr));
    assert!(caught.is_err(), "assert_no_leak accepted output with a secret value");
    let caught = std::panic::catch_unwind(|| assert_no_leak(&format!("Bearer {READY_TOKEN}")));
    assert!(caught.is_err(), "assert_no_leak accepted output with the access token");
    let clean = std::panic::catch_unwind(|| assert_no_leak("infisical-init: [1] info: injected 12 secrets"));
    assert!(clean.is_ok(), "assert_no_leak rejected clean output");
}

// A control for the checks above: the same child does start, and leaves
// its marker, when nothing fails.

#[test]
fn successful_run_has_no_error_line() {
    let scratch = Scratch::new("success");
    let marker = scratch.marker();
    let server = TestServer::start();
    let output = run(run_touching(&mut shim_for(&server), &[], &marker));
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");
    assert!(marker.exists(), "the child did not start");
    assert!(!stderr.contains(" error: "), "{stderr}");
    assert_no_leak(&stderr);
}
