//! Shared harness for the integration tests: starts the project's
//! Infisical-compatible test server on 127.0.0.1, builds commands that run
//! the real binary against it with every inherited `INFISICAL_*` variable
//! cleared, and checks output for leaked credentials and values.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "11111111-2222-4333-8444-555555555555";
pub const CLIENT_SECRET: &str = "test-client-secret-7f3a9c";
pub const PROJECT_ID: &str = "ea08c28d-5ca9-4510-a157-d2ec0639956a";
pub const OTHER_PROJECT_ID: &str = "17bac717-3cdd-455e-ba20-96eb372056a3";
/// A token the server accepts when started with `--accept-token`.
pub const READY_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWFkeSJ9.ready-token-for-tests-0123456789";

/// Values from the recorded dataset that must never show up in logs or
/// errors, with the token prefix every issued token shares.
pub const SENSITIVE: &[&str] = &[
    CLIENT_SECRET,
    "eyJhbGciOiJIUzI1NiJ9",
    "dev-api-key-123",
    "s3cr3t",
    "backend-only-secret",
    "from-staging",
    "staging-shared",
    "staging-api-key-should-be-shadowed",
    "prod-value",
    "-----BEGIN KEY-----",
    "dash-in-name",
    "dot-in-name",
];

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_infisical-init"))
}

pub fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the real Python interpreter. On machines where `python3` is a
/// launcher script (pyenv), the launcher's pid is not the server's, so the
/// harness runs the interpreter itself and can stop the server by its pid.
pub fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let output = Command::new("python3")
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .expect("python3 is installed");
            PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
        })
        .clone()
}

/// Gives SIGINT, SIGQUIT and SIGHUP their default action in the test
/// process, once. A runner started in the background of a non-interactive
/// shell, or under nohup, ignores them, and ignored dispositions pass on to
/// the shim and its child, which would then never see these signals.
pub fn restore_default_signals() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for signal in [nix::libc::SIGINT, nix::libc::SIGQUIT, nix::libc::SIGHUP] {
            // SAFETY: SIG_DFL installs no handler; the test process runs no
            // code that depends on these signals being ignored.
            unsafe { nix::libc::signal(signal, nix::libc::SIG_DFL) };
        }
    });
}

/// A running test server, stopped (by its pid) when dropped. Its standard
/// input is a pipe from the test process, so it also exits when the test
/// process dies without dropping it.
pub struct TestServer {
    child: Child,
    pub url: String,
    pub port: u16,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with_args(&[])
    }

    pub fn with_args(args: &[&str]) -> TestServer {
        restore_default_signals();
        let script = repository().join("tests/server/infisical_test_server.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--host", "127.0.0.1", "--port", "0", "--accept-token", READY_TOKEN, "--exit-with-stdin"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the test server");
        let stdout = child.stdout.take().expect("server stdout is piped");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("server prints its address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the test server: {line:?}"))
            .to_string();
        let port = url.rsplit(':').next().and_then(|port| port.parse().ok()).expect("port in the server URL");
        TestServer { child, url, port }
    }

    /// Sends a plain HTTP/1.0 request to a test-only route and returns the
    /// body.
    fn control(&self, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the test server");
        write!(stream, "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
    }

    /// Returns the log of requests the server has served.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let body = self.control("GET", "/__test/requests");
        serde_json::from_str(&body).expect("the request log is JSON")
    }

    /// Returns the paths of the `/api/` requests served so far.
    pub fn api_paths(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter_map(|request| request["path"].as_str().map(str::to_string))
            .filter(|path| path.starts_with("/api/"))
            .collect()
    }

    pub fn reset(&self) {
        self.control("POST", "/__test/reset");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a command for the binary with a clean environment: only PATH, HOME and
/// LANG survive, so no inherited `INFISICAL_*` setting can point it anywhere
/// but the test server.
pub fn shim() -> Command {
    restore_default_signals();
    let mut command = Command::new(binary());
    command.env_clear();
    // A test that names no server reaches a closed loopback port
    // instead of the binary's default, Infisical Cloud.
    command.env("INFISICAL_DOMAIN", "http://127.0.0.1:9");
    for name in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// Returns a command for the binary, set up to log in to `server` and read the
/// test project.
pub fn shim_for(server: &TestServer) -> Command {
    let mut command = shim();
    command
        .env("INFISICAL_DOMAIN", &server.url)
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID", CLIENT_ID)
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET", CLIENT_SECRET)
        .env("INFISICAL_PROJECT_ID", PROJECT_ID);
    command
}

/// Runs a command to completion, killing it if it outlives `limit`; a hang
/// fails the test instead of blocking the suite.
pub fn run_with_limit(command: &mut Command, limit: Duration) -> Output {
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    wait_with_limit(child, limit)
}

pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdout_reader = std::thread::spawn(move || read_all(stdout));
    let stderr_reader = std::thread::spawn(move || read_all(stderr));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {pid} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output { status, stdout: stdout_reader.join().unwrap(), stderr: stderr_reader.join().unwrap() }
}

fn read_all(stream: Option<impl Read>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(mut stream) = stream {
        let _ = stream.read_to_end(&mut bytes);
    }
    bytes
}

/// Runs with a 30-second limit.
pub fn run(command: &mut Command) -> Output {
    run_with_limit(command, Duration::from_secs(30))
}

pub fn code(status: &ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| panic!("the binary was killed: {status:?}"))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails when any credential or recorded secret value appears in `output`.
pub fn assert_no_leak(output: &str) {
    for sensitive in SENSITIVE {
        assert!(!output.contains(sensitive), "output leaks {sensitive:?}:\n{output}");
    }
    assert!(!output.contains(READY_TOKEN), "output leaks the access token:\n{output}");
}

/// Polls `condition` every 5 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    condition()
}

/// Writes a file in a fresh temporary directory and returns its path.
pub fn temp_dir(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("infisical-init-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

pub fn write_file(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap();
}

/// The target of the static binary that goes into images.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the static musl release binary once per test process and returns
/// its path, read from cargo's JSON messages so a configured target
/// directory is honored.
pub fn static_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let output = Command::new(cargo)
                .current_dir(repository())
                .args(["build", "--release", "--bin", "infisical-init", "--target", MUSL_TARGET])
                .args(["--message-format", "json-render-diagnostics"])
                .stderr(Stdio::inherit())
                .output()
                .expect("cargo runs");
            assert!(
                output.status.success(),
                "the musl build failed: run `rustup target add {MUSL_TARGET}` and install musl-tools"
            );
            text(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|message| message["reason"] == "compiler-artifact")
                .find_map(|message| message["executable"].as_str().map(PathBuf::from))
                .expect("cargo reports the executable it built")
        })
        .clone()
}

/// Returns `unshare` set up to run `program` as PID 1 of a new PID namespace
/// with its own /proc, with the environment `shim_for(server)` sets.
/// `--kill-child` ends the namespace if unshare itself is killed.
pub fn in_pid_namespace(server: &TestServer, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let template = shim_for(server);
    let mut command = Command::new("unshare");
    command.env_clear();
    for (name, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    command.stdin(Stdio::null());
    command.args(["--pid", "--fork", "--mount-proc", "--kill-child"]).arg(program);
    command
}
