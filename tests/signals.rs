//! Signal handling of `run`. Signals sent to the shim reach the child in
//! order, except SIGCHLD, also when the shim is PID 1 of a PID namespace.
//! Bursts neither stop the shim nor lose real-time signals. A stop signal
//! during start-up ends the shim before the command starts, and other
//! signals are ignored until then.
//!
//! The child is `tests/scripts/signal_recorder.py`, which prints
//! "ready PID SIGRTMIN" once its handlers are installed and then the number
//! of each signal it receives, one per line. Every signal is sent to the
//! shim's pid, never to the child's.

mod util;
use util::*;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// The recorder's exit status after it records SIGTERM.
const RECORDER_EXIT_STATUS: i32 = 42;

/// Limit for one line from the recorder, reached only when something hangs.
const LINE_LIMIT: Duration = Duration::from_secs(10);

// Numbers of the standard signals on Linux for x86 and ARM (MIPS, SPARC and
// Alpha use other numbers).
const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGUSR1: i32 = 10;
const SIGUSR2: i32 = 12;
const SIGTERM: i32 = 15;
const SIGCHLD: i32 = 17;
const SIGWINCH: i32 = 28;

/// Sends `signal` (a name such as `USR1` or a number) to `pid` with the
/// shell's `kill -s`.
fn send_signal(pid: u32, signal: &str) {
    run_shell_kill(&format!("kill -s {signal} {pid}"));
}

/// Runs a shell script of `kill` commands and checks that every one worked.
fn run_shell_kill(script: &str) {
    let status = Command::new("sh").args(["-c", &format!("set -e; {script}")]).status().expect("sh runs");
    assert!(status.success(), "kill failed: {script}");
}

/// The shim running the signal recorder, with the recorder's output lines
/// arriving on a channel.
struct Recorder {
    /// The process started by the test: the shim, or `unshare` with the
    /// shim as its child.
    process: Child,
    /// The pid that signals are sent to, as seen from the test.
    shim_pid: u32,
    lines: Receiver<String>,
    /// The recorder's pid, from its "ready" line.
    child_pid: u32,
    /// SIGRTMIN as the recorder's C library defines it.
    rt_min: i32,
}

fn recorder_script() -> std::path::PathBuf {
    repository().join("tests/scripts/signal_recorder.py")
}

impl Recorder {
    /// Starts the shim with the recorder and waits for its "ready" line, so
    /// no signal is sent before the handlers are installed.
    fn start(server: &TestServer) -> Recorder {
        let mut command = shim_for(server);
        command.args(["run", "--", "python3"]).arg(recorder_script());
        let recorder = Recorder::spawn(command);
        assert_ne!(recorder.child_pid, recorder.shim_pid, "the recorder runs as a child of the shim");
        recorder
    }

    /// Starts the shim with the recorder as PID 1 of a new PID namespace,
    /// under `unshare --fork`, and waits for the "ready" line.
    fn start_as_pid1(server: &TestServer) -> Recorder {
        let mut command = in_pid_namespace(server, binary());
        command
            .args(["run", "--", "python3"])
            .arg(recorder_script());
        let mut recorder = Recorder::spawn(command);
        recorder.shim_pid = child_of(recorder.process.id());
        recorder
    }

    fn spawn(mut command: Command) -> Recorder {
        let mut process = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary starts");
        let stdout = process.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let shim_pid = process.id();
        let mut recorder = Recorder { process, shim_pid, lines, child_pid: 0, rt_min: 0 };
        let ready = recorder.next_line();
        let fields: Vec<&str> = ready.split_whitespace().collect();
        assert_eq!(fields.first(), Some(&"ready"), "first line from the recorder: {ready:?}");
        recorder.child_pid = fields[1].parse().expect("pid in the ready line");
        recorder.rt_min = fields[2].parse().expect("SIGRTMIN in the ready line");
        recorder
    }

    fn shim_pid(&self) -> u32 {
        self.shim_pid
    }

    /// Returns the next line, failing the test if none comes within
    /// `LINE_LIMIT`.
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(LINE_LIMIT)
            .unwrap_or_else(|error| panic!("no line from the recorder within {LINE_LIMIT:?}: {error}"))
    }

    /// Returns the next recorded signal number.
    fn next_signal(&self) -> i32 {
        let line = self.next_line();
        line.parse().unwrap_or_else(|_| panic!("unexpected line from the recorder: {line:?}"))
    }

    /// Sends SIGTERM to the shim, collects the signals recorded until the
    /// recorder exits, and returns them with the shim's output.
    fn stop(self) -> (Vec<i32>, Output) {
        send_signal(self.shim_pid, "TERM");
        let mut recorded = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(LINE_LIMIT) {
            recorded.push(line.parse().unwrap_or_else(|_| panic!("unexpected line from the recorder: {line:?}")));
        }
        let output = wait_with_limit(self.process, Duration::from_secs(10));
        (recorded, output)
    }
}

#[test]
fn signals_forwarded_in_order() {
    let server = TestServer::start();
    let recorder = Recorder::start(&server);
    // SIGRTMIN+3 is 37 with glibc and 38 with musl, whose SIGRTMIN is 35.
    // The recorder reports its own SIGRTMIN, so the number sent is the one
    // its handlers see.
    let rt_min_plus_3 = recorder.rt_min + 3;
    let signals = [
        ("HUP".to_string(), SIGHUP),
        ("INT".to_string(), SIGINT),
        ("QUIT".to_string(), SIGQUIT),
        ("USR1".to_string(), SIGUSR1),
        ("USR2".to_string(), SIGUSR2),
        ("WINCH".to_string(), SIGWINCH),
        (rt_min_plus_3.to_string(), rt_min_plus_3),
    ];
    // The shim takes SIGCHLD as a cue to reap and does not forward it. Had
    // it been forwarded, it would show up among the signals recorded next.
    send_signal(recorder.shim_pid(), "CHLD");
    let mut received = Vec::new();
    for (name, _) in &signals {
        send_signal(recorder.shim_pid(), name);
        received.push(recorder.next_signal());
    }

    let (after_term, output) = recorder.stop();

    let expected: Vec<i32> = signals.iter().map(|(_, number)| *number).collect();
    assert!(!received.contains(&SIGCHLD), "SIGCHLD was forwarded: {received:?}");
    assert_eq!(received, expected, "signals recorded by the child, in the order sent");
    assert_eq!(after_term, [SIGTERM], "SIGTERM reaches the child last");
    assert_eq!(code(&output.status), RECORDER_EXIT_STATUS, "stderr:\n{}", text(&output.stderr));
    assert_no_leak(&text(&output.stderr));
}

/// Returns the pid of the only child of `parent`, read from the PPid field
/// of every `/proc/PID/stat`.
fn child_of(parent: u32) -> u32 {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The fields after the command name, which is in parentheses and may
        // contain spaces: state, then the parent pid.
        let Some((_, fields)) = stat.rsplit_once(") ") else { continue };
        if fields.split_whitespace().nth(1) == Some(&*parent.to_string()) {
            children.push(pid);
        }
    }
    assert_eq!(children.len(), 1, "children of pid {parent}: {children:?}");
    children[0]
}

/// The kernel drops a signal sent to PID 1 of a namespace when the signal
/// is neither blocked nor handled, which is how `docker stop` can fail to
/// reach an init. The shim blocks every signal, so signals from the parent
/// namespace must still reach the child.
#[test]
fn pid1_forwards_signals_from_outside() {
    let server = TestServer::start();
    let recorder = Recorder::start_as_pid1(&server);

    send_signal(recorder.shim_pid(), "USR1");
    let first = recorder.next_signal();
    let (after_term, output) = recorder.stop();

    assert_eq!(first, SIGUSR1, "SIGUSR1 sent to PID 1 from outside its namespace");
    assert_eq!(after_term, [SIGTERM], "SIGTERM sent to PID 1 from outside its namespace");
    assert_eq!(code(&output.status), RECORDER_EXIT_STATUS, "stderr:\n{}", text(&output.stderr));
}

#[test]
fn burst_of_signals_keeps_shim_running() {
    let server = TestServer::start();
    let mut recorder = Recorder::start(&server);
    let shim_pid = recorder.shim_pid();

    // Standard signals merge while pending, in the shim and in the child,
    // so only "at least one" is certain. The USR2 sent after the burst is
    // read after every pending USR1 (lower numbers are dequeued first).
    let burst =
        format!("i=0; while [ $i -lt 50 ]; do kill -s USR1 {shim_pid}; i=$((i + 1)); done; kill -s USR2 {shim_pid}");
    run_shell_kill(&burst);
    let mut standard = Vec::new();
    loop {
        let signal = recorder.next_signal();
        standard.push(signal);
        if signal == SIGUSR2 {
            break;
        }
    }
    assert!(recorder.process.try_wait().expect("try_wait").is_none(), "the shim is still running after the burst");

    // Real-time signals queue, so each of 20 distinct ones must arrive.
    let real_time: Vec<i32> = (1..=20).map(|offset| recorder.rt_min + offset).collect();
    let script: Vec<String> = real_time.iter().map(|number| format!("kill -s {number} {shim_pid}")).collect();
    run_shell_kill(&script.join("; "));
    let mut received: Vec<i32> = real_time.iter().map(|_| recorder.next_signal()).collect();

    let (after_term, output) = recorder.stop();

    let usr1_count = standard.iter().filter(|&&signal| signal == SIGUSR1).count();
    assert!(usr1_count >= 1, "no SIGUSR1 of the burst reached the child: {standard:?}");
    assert!(usr1_count <= 50, "more SIGUSR1 than sent: {standard:?}");
    assert!(standard.iter().all(|&signal| signal == SIGUSR1 || signal == SIGUSR2), "{standard:?}");
    received.sort_unstable();
    assert_eq!(received, real_time, "every queued real-time signal reaches the child once");
    assert_eq!(after_term, [SIGTERM], "nothing else reaches the child");
    assert_eq!(code(&output.status), RECORDER_EXIT_STATUS, "stderr:\n{}", text(&output.stderr));
}

/// Starts the shim against `server` with a command that creates `marker`,
/// waits until the server has received a request whose path contains
/// `path_part`, sends `signal` to the shim and returns the shim's output.
fn signal_during_request(server: &TestServer, path_part: &str, signal: &str, marker: &std::path::Path) -> Output {
    let shim = shim_for(server)
        .args(["run", "--", "sh", "-c", "touch \"$0\""])
        .arg(marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let in_flight =
        wait_until(Duration::from_secs(10), || server.api_paths().iter().any(|path| path.contains(path_part)));
    assert!(in_flight, "the shim never sent a request to {path_part}: {:?}", server.api_paths());
    send_signal(shim.id(), signal);
    // With a 5 s server delay, a shim that waited for the response would
    // outlive this limit.
    wait_with_limit(shim, Duration::from_secs(3))
}

#[test]
fn sigterm_during_fetch_aborts() {
    let server = TestServer::with_args(&["--delay", "list=5"]);
    let marker = temp_dir("term-during-fetch").join("started");
    let output = signal_during_request(&server, "/secrets", "TERM", &marker);
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 128 + SIGTERM, "stderr:\n{stderr}");
    assert!(!marker.exists(), "the command started although start-up was aborted");
    assert!(stderr.contains("SIGTERM"), "the log names the signal:\n{stderr}");
    assert_no_leak(&stderr);
}

#[test]
fn sigint_during_login_aborts() {
    let server = TestServer::with_args(&["--delay", "login=5"]);
    let marker = temp_dir("int-during-login").join("started");
    let output = signal_during_request(&server, "/auth/universal-auth/login", "INT", &marker);
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 128 + SIGINT, "stderr:\n{stderr}");
    assert!(!marker.exists(), "the command started although start-up was aborted");
    assert!(
        !server.api_paths().iter().any(|path| path.contains("/secrets")),
        "the shim fetched secrets after SIGINT: {:?}",
        server.api_paths()
    );
    assert_no_leak(&stderr);
}

#[test]
fn sigusr1_during_fetch_is_ignored() {
    // A 1 s delay is enough to have the request in flight when USR1 comes.
    let server = TestServer::with_args(&["--delay", "list=1"]);
    let marker = temp_dir("usr1-during-fetch").join("started");
    let output = signal_during_request(&server, "/secrets", "USR1", &marker);
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");
    assert!(marker.exists(), "the command did not start after SIGUSR1 during start-up");
    assert!(stderr.contains("SIGUSR1"), "the log names the ignored signal:\n{stderr}");
}
