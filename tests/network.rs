//! Fault injection: `infisical-init run` against a test server that refuses,
//! resets, hangs, stalls, fails, rate limits or returns bodies that are not
//! the API's JSON. Each case checks the exit code, the one error line, the
//! number of attempts in the server's request log and in the "gave up after
//! N attempts" text, that the child never starts on failure, and that no
//! credential leaks. Small `--timeout` values keep every case short; the
//! limit given to `run_with_limit` only catches hangs.
mod util;
use util::*;

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const LOGIN: &str = "/api/v1/auth/universal-auth/login";
const LIST: &str = "/api/v4/secrets";

/// How long past its `--timeout` a run may take before it counts as hung.
const HANG_MARGIN: Duration = Duration::from_secs(20);

/// The result of one `run` with a marker-writing child.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    child_started: bool,
    elapsed: Duration,
}

impl Outcome {
    /// Returns the error lines (`infisical-init: [pid] error: ...`).
    fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|line| line.contains("] error: ")).collect()
    }

    /// Returns the waits, in seconds, of the "retrying in X s" log lines.
    fn retry_waits(&self) -> Vec<f64> {
        self.stderr
            .lines()
            .filter_map(|line| line.split("retrying in ").nth(1))
            .filter_map(|rest| rest.split(' ').next())
            .map(|seconds| seconds.parse().expect("a number of seconds after 'retrying in'"))
            .collect()
    }
}

/// A scratch directory holding the marker file, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(temp_dir(&format!("network-{name}")))
    }

    fn marker(&self) -> PathBuf {
        self.0.join("child-started")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `infisical-init run --timeout TIMEOUT -- touch MARKER` and collects
/// what the checks need. Panics if the run outlives its timeout by
/// `HANG_MARGIN`.
fn run_case(command: &mut Command, name: &str, timeout: &str) -> Outcome {
    let scratch = Scratch::new(name);
    let marker = scratch.marker();
    command.args(["run", "--timeout", timeout, "--", "touch"]).arg(&marker);
    let limit = Duration::from_secs(timeout.parse().expect("whole seconds")) + HANG_MARGIN;
    let started = Instant::now();
    let output = run_with_limit(command, limit);
    let elapsed = started.elapsed();
    Outcome {
        code: code(&output.status),
        stdout: text(&output.stdout),
        stderr: text(&output.stderr),
        child_started: marker.exists(),
        elapsed,
    }
}

/// Returns N from "gave up after N attempts", if the line has it.
fn gave_up_attempts(line: &str) -> Option<usize> {
    let rest = line.split("gave up after ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

fn count_path(paths: &[String], path: &str) -> usize {
    paths.iter().filter(|served| served.as_str() == path).count()
}

/// What one fault case expects.
struct Expected {
    code: i32,
    /// Parts of the error line; empty for a case that succeeds.
    error_contains: &'static [&'static str],
    logins: RangeInclusive<usize>,
    lists: RangeInclusive<usize>,
    /// The route whose retries the error line counts: its "gave up after N
    /// attempts" must equal the requests to that route in the log. `None`:
    /// the line must not have that text, because one attempt was made.
    gave_up_on: Option<&'static str>,
}

/// One row of a fault table: server options, `--timeout`, extra variables
/// for the binary, and the expected outcome.
struct Case {
    name: &'static str,
    server: &'static [&'static str],
    timeout: &'static str,
    env: &'static [(&'static str, &'static str)],
    expected: Expected,
}

fn success(logins: RangeInclusive<usize>, lists: RangeInclusive<usize>) -> Expected {
    Expected { code: 0, error_contains: &[], logins, lists, gave_up_on: None }
}

fn failure(
    code: i32,
    error_contains: &'static [&'static str],
    logins: RangeInclusive<usize>,
    lists: RangeInclusive<usize>,
    gave_up_on: Option<&'static str>,
) -> Expected {
    Expected { code, error_contains, logins, lists, gave_up_on }
}

/// Runs each case against its own server and checks every expectation,
/// naming the case in each message.
fn check_cases(cases: &[Case]) {
    for case in cases {
        let server = TestServer::with_args(case.server);
        let mut command = shim_for(&server);
        command.envs(case.env.iter().copied());
        let outcome = run_case(&mut command, case.name, case.timeout);
        let paths = server.api_paths();
        check_outcome(case.name, &outcome, &paths, &case.expected);
    }
}

fn check_outcome(name: &str, outcome: &Outcome, paths: &[String], expected: &Expected) {
    let context = format!(
        "case {name}: exit {}, {:.1} s, requests {paths:?}\nstderr:\n{}",
        outcome.code,
        outcome.elapsed.as_secs_f64(),
        outcome.stderr
    );
    assert_eq!(outcome.code, expected.code, "exit code; {context}");
    assert_no_leak(&format!("{}{}", outcome.stdout, outcome.stderr));

    let logins = count_path(paths, LOGIN);
    let lists = count_path(paths, LIST);
    assert!(expected.logins.contains(&logins), "{logins} logins, expected {:?}; {context}", expected.logins);
    assert!(expected.lists.contains(&lists), "{lists} listings, expected {:?}; {context}", expected.lists);

    let errors = outcome.error_lines();
    if expected.code == 0 {
        assert!(outcome.child_started, "the child was not started; {context}");
        assert!(errors.is_empty(), "error lines on success; {context}");
        return;
    }

    assert!(!outcome.child_started, "the child was started; {context}");
    assert_eq!(outcome.stdout, "", "stdout on failure; {context}");
    assert_eq!(errors.len(), 1, "one error line; {context}");
    let line = errors[0];
    assert!(line.starts_with("infisical-init: "), "prefixed error line; {context}");
    for part in expected.error_contains {
        assert!(line.contains(part), "error line lacks {part:?}; {context}");
    }
    match expected.gave_up_on {
        Some(route) => {
            let attempts = gave_up_attempts(line);
            assert_eq!(attempts, Some(count_path(paths, route)), "gave-up count vs requests to {route}; {context}");
        }
        // A single try that ran into the deadline says "gave up after 1
        // attempt"; anything more would report retries that never happened.
        None => assert!(gave_up_attempts(line).unwrap_or(1) <= 1, "one attempt reported as retries; {context}"),
    }
}

// Transport failures: no listener, reset, no response, stalled body.

#[test]
fn connection_refused_retried_until_deadline() {
    // Bind a free port, then close it, so nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = shim();
    command
        .env("INFISICAL_DOMAIN", format!("http://127.0.0.1:{port}"))
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", CLIENT_ID)
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", CLIENT_SECRET)
        .env("INFISICAL_PROJECT_ID", PROJECT_ID);
    let outcome = run_case(&mut command, "refused", "2");
    let context = format!("stderr:\n{}", outcome.stderr);

    assert_eq!(outcome.code, 69, "{context}");
    assert!(!outcome.child_started, "{context}");
    assert_no_leak(&outcome.stderr);
    let errors = outcome.error_lines();
    assert_eq!(errors.len(), 1, "{context}");
    assert!(errors[0].contains("failed to log in"), "{context}");
    assert!(errors[0].contains("could not connect"), "{context}");
    assert!(errors[0].contains("Connection refused"), "{context}");
    let attempts = gave_up_attempts(errors[0]).expect("the line counts the attempts");
    assert!(attempts >= 2, "a refused connection is retried; {context}");
    assert_eq!(attempts, outcome.retry_waits().len() + 1, "one retry log line per attempt after the first; {context}");
}

#[test]
fn transport_faults() {
    check_cases(&[
        Case {
            name: "list-reset-always",
            server: &["--fail", "list=reset"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to list secrets", LIST, "reset"], 1..=1, 2..=100, Some(LIST)),
        },
        Case {
            name: "list-reset-twice",
            server: &["--fail", "list=resetx2"],
            timeout: "3",
            env: &[],
            expected: success(1..=1, 3..=3),
        },
        Case {
            name: "login-reset-twice",
            server: &["--fail", "login=resetx2"],
            timeout: "3",
            env: &[],
            expected: success(3..=3, 1..=1),
        },
        Case {
            // The per-request timeout shrinks to the deadline, so the one
            // attempt uses it all.
            name: "login-hang",
            server: &["--fail", "login=hang"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to log in", LOGIN, "timed out"], 1..=1, 0..=0, None),
        },
        Case {
            name: "list-hang",
            server: &["--fail", "list=hang"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to list secrets", LIST, "timed out"], 1..=1, 1..=1, None),
        },
        Case {
            // Headers and a few body bytes, then nothing: the read must time out.
            name: "list-stall",
            server: &["--fail", "list=stall"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to list secrets", "reading the response failed", "timed out"], 1..=1, 1..=1, None),
        },
        Case {
            name: "list-slow-within-deadline",
            server: &["--delay", "list=1"],
            timeout: "3",
            env: &[],
            expected: success(1..=1, 1..=1),
        },
    ]);
}

// Statuses: 500 is final; 502, 503 and 504 are retried until the deadline.

#[test]
fn server_error_not_retried() {
    check_cases(&[
        Case {
            name: "list-500",
            server: &["--fail", "list=500"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to list secrets", "returned 500", "(reqId req-"], 1..=1, 1..=1, None),
        },
        Case {
            name: "login-500",
            server: &["--fail", "login=500"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to log in", "returned 500"], 1..=1, 0..=0, None),
        },
    ]);
}

#[test]
fn gateway_errors_retried_then_succeed() {
    check_cases(&[
        Case {
            name: "list-502x2",
            server: &["--fail", "list=502x2"],
            timeout: "5",
            env: &[],
            expected: success(1..=1, 3..=3),
        },
        Case {
            name: "list-503x2",
            server: &["--fail", "list=503x2"],
            timeout: "5",
            env: &[],
            expected: success(1..=1, 3..=3),
        },
        Case {
            name: "list-504x2",
            server: &["--fail", "list=504x2"],
            timeout: "5",
            env: &[],
            expected: success(1..=1, 3..=3),
        },
        Case {
            name: "login-503x2",
            server: &["--fail", "login=503x2"],
            timeout: "5",
            env: &[],
            expected: success(3..=3, 1..=1),
        },
    ]);
}

#[test]
fn login_gateway_error_gives_up_at_deadline() {
    check_cases(&[Case {
        name: "login-503-always",
        server: &["--fail", "login=503"],
        timeout: "2",
        env: &[],
        expected: failure(69, &["failed to log in", "returned 503"], 2..=100, 0..=0, Some(LOGIN)),
    }]);
}

#[test]
fn list_gateway_errors_give_up_at_deadline() {
    check_cases(&[
        Case {
            name: "list-502-always",
            server: &["--fail", "list=502"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to list secrets", "returned 502"], 1..=1, 2..=100, Some(LIST)),
        },
        Case {
            name: "list-503-always",
            server: &["--fail", "list=503"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to list secrets", "returned 503"], 1..=1, 2..=100, Some(LIST)),
        },
        Case {
            name: "list-504-always",
            server: &["--fail", "list=504"],
            timeout: "2",
            env: &[],
            expected: failure(69, &["failed to list secrets", "returned 504"], 1..=1, 2..=100, Some(LIST)),
        },
    ]);
}

// Rate limits: a 429 waits as long as the server asks, plus up to a fifth
// of that (at least 0.5 s) as jitter.

/// Runs one 429 case and checks that it succeeded after one retry whose
/// logged wait lies in `told ..= told + max(told / 5, 0.5)`.
fn check_rate_limited_once(name: &'static str, server_args: &'static [&'static str], told: f64) {
    let server = TestServer::with_args(server_args);
    let outcome = run_case(&mut shim_for(&server), name, "10");
    let paths = server.api_paths();
    check_outcome(name, &outcome, &paths, &success(1..=1, 2..=2));

    let waits = outcome.retry_waits();
    assert_eq!(waits.len(), 1, "case {name}: one retry logged:\n{}", outcome.stderr);
    let spread = (told / 5.0).max(0.5);
    // The log rounds to 0.1 s.
    assert!(waits[0] >= told - 0.05, "case {name}: waited less than the server asked:\n{}", outcome.stderr);
    assert!(waits[0] <= told + spread + 0.05, "case {name}: waited more than asked plus jitter:\n{}", outcome.stderr);
}

#[test]
fn rate_limit_with_retry_after_header() {
    check_rate_limited_once("429-retry-after-2", &["--fail", "list=429x1", "--retry-after", "2"], 2.0);
}

#[test]
fn rate_limit_without_retry_after_header() {
    // Without --retry-after the 429 has no Retry-After header and its body
    // says "try again in 1 seconds".
    check_rate_limited_once("429-message-only", &["--fail", "list=429x1"], 1.0);
}

#[test]
fn rate_limit_on_login_waits_and_succeeds() {
    let server = TestServer::with_args(&["--fail", "login=429x1", "--retry-after", "1"]);
    let outcome = run_case(&mut shim_for(&server), "429-login", "10");
    let paths = server.api_paths();
    check_outcome("429-login", &outcome, &paths, &success(2..=2, 1..=1));
    assert_eq!(outcome.retry_waits().len(), 1, "{}", outcome.stderr);
}

#[test]
fn rate_limit_gives_up_at_deadline() {
    check_cases(&[Case {
        name: "list-429-always",
        server: &["--fail", "list=429", "--retry-after", "1"],
        timeout: "3",
        env: &[],
        expected: failure(69, &["failed to list secrets", "returned 429", "rate limiting"], 1..=1, 2..=100, Some(LIST)),
    }]);
}

// Bodies that are not the API's JSON: exit 65 at once, never retried.

#[test]
fn malformed_bodies_rejected() {
    check_cases(&[
        Case {
            name: "list-truncated",
            server: &["--fail", "list=truncated"],
            timeout: "3",
            env: &[],
            expected: failure(65, &["failed to list secrets", "not the JSON"], 1..=1, 1..=1, None),
        },
        Case {
            name: "list-html",
            server: &["--fail", "list=html"],
            timeout: "3",
            env: &[],
            expected: failure(65, &["failed to list secrets", "HTML", "web UI"], 1..=1, 1..=1, None),
        },
        Case {
            name: "login-html",
            server: &["--fail", "login=html"],
            timeout: "3",
            env: &[],
            expected: failure(65, &["failed to log in", "HTML"], 1..=1, 0..=0, None),
        },
        Case {
            name: "list-notjson",
            server: &["--fail", "list=notjson"],
            timeout: "3",
            env: &[],
            expected: failure(65, &["failed to list secrets", "not the JSON"], 1..=1, 1..=1, None),
        },
        Case {
            name: "login-truncated",
            server: &["--fail", "login=truncated"],
            timeout: "3",
            env: &[],
            expected: failure(65, &["failed to log in", "not the JSON"], 1..=1, 0..=0, None),
        },
    ]);
}

#[test]
fn oversized_body_rejected() {
    // 70,000,000 bytes is just over the 64 MiB (67,108,864-byte) limit.
    check_cases(&[Case {
        name: "list-oversize",
        server: &["--fail", "list=oversize", "--oversize-bytes", "70000000"],
        timeout: "10",
        env: &[],
        expected: failure(65, &["failed to list secrets", "larger than 64 MiB"], 1..=1, 1..=1, None),
    }]);
}

// Tokens and credentials.

#[test]
fn token_rejections() {
    check_cases(&[
        Case {
            // Every listing is answered after the 1 s token has expired, so
            // the fresh login does not help either: exactly two logins.
            name: "token-expires-before-every-list",
            server: &["--token-ttl", "1", "--delay", "list=1.5"],
            timeout: "10",
            env: &[],
            expected: failure(77, &["failed to list secrets", "returned 403", "expired"], 2..=2, 2..=2, None),
        },
        Case {
            // The 429 wait outlasts the 1 s token, so the retried listing
            // gets 403 TokenError; one fresh login then succeeds.
            name: "token-expires-during-429-wait",
            server: &["--token-ttl", "1", "--fail", "list=429x1", "--retry-after", "1"],
            timeout: "10",
            env: &[],
            expected: success(2..=2, 3..=3),
        },
        Case {
            name: "token-rejected-once",
            server: &["--fail", "list=401x1"],
            timeout: "3",
            env: &[],
            expected: success(2..=2, 2..=2),
        },
        Case {
            name: "token-rejected-always",
            server: &["--fail", "list=401"],
            timeout: "3",
            env: &[],
            expected: failure(77, &["failed to list secrets", "returned 401"], 2..=2, 2..=2, None),
        },
    ]);
}

#[test]
fn rejected_credentials_not_retried() {
    check_cases(&[
        Case {
            name: "wrong-client-secret",
            server: &[],
            timeout: "3",
            env: &[("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", "wrong-client-secret")],
            expected: failure(77, &["failed to log in", "returned 401", "Invalid credentials"], 1..=1, 0..=0, None),
        },
        Case {
            name: "unknown-client-id",
            server: &[],
            timeout: "3",
            env: &[("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", "99999999-2222-4333-8444-555555555555")],
            expected: failure(77, &["failed to log in", "returned 404", "INFISICAL_UNIVERSAL_AUTH_CLIENT_ID"], 1..=1, 0..=0, None),
        },
    ]);
}

// Stop signals while retrying or waiting on a request.

/// Starts `run` against `server`, waits until the log shows `listings`
/// requests to the listing route, sends SIGTERM, and returns the output.
fn sigterm_after_listings(server: &TestServer, listings: usize, marker: &std::path::Path) -> Output {
    let child = shim_for(server)
        .args(["run", "--timeout", "60", "--", "touch"])
        .arg(marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    let reached = wait_until(Duration::from_secs(20), || count_path(&server.api_paths(), LIST) >= listings);
    assert!(reached, "{listings} listing requests were never sent");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM is sent");
    // The 60 s deadline is far away: only an immediate stop ends the run in time.
    wait_with_limit(child, Duration::from_secs(10))
}

#[test]
fn sigterm_during_retries_exits_143() {
    let server = TestServer::with_args(&["--fail", "list=503"]);
    let scratch = Scratch::new("sigterm-retries");
    let marker = scratch.marker();
    let output = sigterm_after_listings(&server, 2, &marker);
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), 143, "stderr:\n{stderr}");
    assert!(!marker.exists(), "the child was started");
    assert!(stderr.contains("retrying in"), "the run was retrying:\n{stderr}");
    assert!(!stderr.contains("] error: "), "an abort is not an error:\n{stderr}");
    assert_no_leak(&format!("{}{stderr}", text(&output.stdout)));
}

#[test]
fn sigterm_during_hung_request_exits_143() {
    let server = TestServer::with_args(&["--fail", "list=hang"]);
    let scratch = Scratch::new("sigterm-hang");
    let marker = scratch.marker();
    let output = sigterm_after_listings(&server, 1, &marker);
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), 143, "stderr:\n{stderr}");
    assert!(!marker.exists(), "the child was started");
    assert_no_leak(&format!("{}{stderr}", text(&output.stdout)));
}

// INFISICAL_CUSTOM_HEADERS, against a server started with --require-header.

#[test]
fn custom_headers_sent() {
    let required: &[&str] = &[
        "--require-header",
        "X-Tenant=acme",
        "--require-header",
        "X-Route-Note=two words here",
        "--require-header",
        "X-Single=it's=fine",
    ];
    check_cases(&[
        Case {
            name: "headers-present",
            server: required,
            timeout: "3",
            env: &[(
                "INFISICAL_CUSTOM_HEADERS",
                r#"X-Tenant=acme X-Route-Note="two words here" X-Single="it's=fine""#,
            )],
            expected: success(1..=1, 1..=1),
        },
        Case {
            name: "headers-single-quoted",
            server: &["--require-header", "X-Route-Note=two words here"],
            timeout: "3",
            env: &[("INFISICAL_CUSTOM_HEADERS", "X-Route-Note='two words here'")],
            expected: success(1..=1, 1..=1),
        },
        Case {
            name: "headers-missing",
            server: required,
            timeout: "3",
            env: &[],
            expected: failure(77, &["failed to log in", "returned 403", "X-Tenant"], 1..=1, 0..=0, None),
        },
        Case {
            // Unquoted, the value stops at the space and "words" and "here"
            // are not Name=value pairs: a configuration error, nothing sent.
            name: "headers-unquoted-space",
            server: required,
            timeout: "3",
            env: &[("INFISICAL_CUSTOM_HEADERS", "X-Tenant=acme X-Route-Note=two words here")],
            expected: failure(78, &["INFISICAL_CUSTOM_HEADERS"], 0..=0, 0..=0, None),
        },
        Case {
            name: "headers-wrong-value",
            server: &["--require-header", "X-Route-Note=two words here"],
            timeout: "3",
            env: &[("INFISICAL_CUSTOM_HEADERS", "X-Route-Note=two")],
            expected: failure(77, &["failed to log in", "returned 403", "X-Route-Note"], 1..=1, 0..=0, None),
        },
    ]);
}
