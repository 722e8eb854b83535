//! Init-grade supervision by `run`, on the host with real processes.
//!
//! Every forwardable signal reaches the child in order, and fault signals
//! are never forwarded. `--kill-group`, `--drain`, `--stop-timeout`,
//! `--rewrite` and `--remap-exit` behave as the README documents. The
//! child gets back the signal mask and ignored signals the shim inherited,
//! and a terminal goes to the child's process group. 100 orphans are reaped
//! both as subreaper and as PID 1, `--verbose` logs signals and reaped
//! zombies, and the shim leaves the caller's working directory.
//!
//! Most tests run a Python child (`RECORDER` below) that prints
//! "signal N" for each signal it receives. Signals are sent to the shim's
//! pid, never to the child's, one at a time: the next one is sent only
//! after the child has recorded the previous one.

mod util;
use util::*;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::libc;

/// Limit for one line from a child; only reached when something hangs.
const LINE_LIMIT: Duration = Duration::from_secs(10);

/// Limit for the shim to exit after the test ends its child.
const EXIT_LIMIT: Duration = Duration::from_secs(20);

/// The recorder's exit status when its standard input reaches end of file.
const RECORDER_EXIT_STATUS: i32 = 3;

/// Child that records signals. Installs a handler for every signal the C
/// library lets it catch (all but KILL, STOP and the ones glibc reserves),
/// SIGCHLD included, so a forwarded SIGCHLD would show. With
/// `--default-job-control`, TSTP, TTIN and TTOU keep their default action
/// (stop). Prints "ready PID PGRP FOREGROUND SIGRTMIN SIGRTMAX", where
/// FOREGROUND is the foreground process group of the terminal on standard
/// input or -1, then "signal N" for each signal received. Exits with the
/// status in argv[1] when standard input reaches end of file.
const RECORDER: &str = r#"
import os
import signal
import sys


def record(number, _frame):
    os.write(1, b"signal %d\n" % number)


job_control = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
keep_job_control = "--default-job-control" in sys.argv[2:]
for number in range(1, signal.NSIG):
    if number in (signal.SIGKILL, signal.SIGSTOP):
        continue
    if keep_job_control and number in job_control:
        continue
    try:
        signal.signal(number, record)
    except (OSError, ValueError):
        pass  # reserved by the C library (32 and 33 with glibc)

try:
    foreground = os.tcgetpgrp(0)
except OSError:
    foreground = -1
os.write(1, b"ready %d %d %d %d %d\n" % (
    os.getpid(), os.getpgrp(), foreground, signal.SIGRTMIN, signal.SIGRTMAX))
while os.read(0, 4096):
    pass
sys.exit(int(sys.argv[1]))
"#;

/// Signals 1 to 31 that must reach the child: all but KILL and STOP
/// (uncatchable), CHLD (never forwarded), TSTP, TTIN and TTOU (the shim
/// stops itself after forwarding them) and the fault signals.
const FORWARDED_STANDARD: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGSTKFLT,
    libc::SIGCONT,
    libc::SIGURG,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGIO,
    libc::SIGPWR,
];

/// Signals the shim leaves unblocked so that a fault in its own code
/// crashes it instead of hanging it.
const FAULT_SIGNALS: &[i32] =
    &[libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGTRAP, libc::SIGABRT, libc::SIGSYS];

// ---------------------------------------------------------------------------
// Processes and /proc

/// Sends any signal number, real-time ones included, to `pid`.
fn send(pid: u32, signal: i32) {
    let target = i32::try_from(pid).expect("pid fits in i32");
    // SAFETY: kill takes plain integers and has no memory-safety
    // preconditions.
    let result = unsafe { libc::kill(target, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
}

/// Sends SIGKILL to `pid`, ignoring errors; for clean-up only.
fn kill_quietly(pid: u32) {
    if let Ok(target) = i32::try_from(pid) {
        if target > 0 {
            // SAFETY: kill takes plain integers and has no memory-safety
            // preconditions.
            unsafe { libc::kill(target, libc::SIGKILL) };
        }
    }
}

/// The fields of `/proc/PID/stat` the tests read.
#[derive(Debug, Clone, Copy)]
struct ProcessStat {
    /// `R`, `S`, `T` (stopped), `Z` (zombie) and so on.
    state: char,
    parent: u32,
    group: u32,
}

/// Reads `/proc/PID/stat`; `None` once the process is gone. The command
/// name is in parentheses and may contain spaces, so the fields after the
/// last ") " are used.
fn process_stat(pid: u32) -> Option<ProcessStat> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &line[line.rfind(") ")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcessStat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
    })
}

/// Returns the pids of every process in /proc whose process group is
/// `group`, zombies included.
fn group_members(group: u32) -> Vec<(u32, ProcessStat)> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc is readable").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        if let Some(stat) = process_stat(pid) {
            if stat.group == group {
                members.push((pid, stat));
            }
        }
    }
    members
}

/// Returns the children of `pid` (from `/proc/PID/task/PID/children`).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// Waits for the single child of `pid` to appear and returns it.
fn only_child(pid: u32) -> u32 {
    let mut found = Vec::new();
    let appeared = wait_until(LINE_LIMIT, || {
        found = children_of(pid);
        found.len() == 1
    });
    assert!(appeared, "pid {pid} never had exactly one child: {found:?}");
    found[0]
}

/// Finds `FIELD:\tHEX` in `text` and parses the hex mask.
fn parse_mask(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(field)?.strip_prefix(':'))
        .find_map(|value| u64::from_str_radix(value.trim(), 16).ok())
}

/// Returns the bit of `signal` in a `/proc/PID/status` mask.
fn bit(signal: i32) -> u64 {
    1 << (signal - 1)
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_status(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} still running after {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads a whole stream on a thread, so a full pipe never blocks the shim.
fn collect(stream: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut stream = stream;
        let _ = stream.read_to_end(&mut bytes);
        bytes
    })
}

/// Sends each line of `stream` to the returned channel, without the
/// carriage return a terminal adds.
fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        // A pseudo-terminal master ends with EIO once every slave is
        // closed; a pipe ends with end of file. Both end the loop.
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if sender.send(line.trim_end_matches('\r').to_string()).is_err() {
                return;
            }
        }
    });
    receiver
}

fn recorder_script() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = temp_dir("supervision-recorder").join("recorder.py");
        write_file(&path, RECORDER);
        path
    })
    .clone()
}

// ---------------------------------------------------------------------------
// The shim supervising the recorder

/// How the test writes to the child's standard input.
enum Input {
    Pipe(ChildStdin),
    /// The pseudo-terminal master; end of file is Ctrl-D.
    Terminal(File),
}

/// The ready line of the recorder.
#[derive(Debug, Clone, Copy)]
struct Ready {
    pid: u32,
    group: u32,
    foreground: i32,
    rt_min: i32,
    rt_max: i32,
}

/// A running shim (or `unshare` around it) with the recorder as its child.
struct Supervised {
    process: Child,
    /// The pid that signals go to: the shim's, also when `process` is an
    /// `unshare` around it.
    shim_pid: u32,
    input: Option<Input>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    ready: Ready,
    /// Whether `ready.pid` is a pid of this PID namespace; inside `unshare`
    /// it is not, and killing it here would hit an unrelated process.
    child_pid_is_local: bool,
}

/// What is left once the shim has exited.
struct Finished {
    status: ExitStatus,
    /// Lines the recorder printed after the last one the test read.
    rest: Vec<String>,
    stderr: String,
}

impl Supervised {
    /// Starts `command` (the shim, or unshare around it, with the recorder
    /// as command) with piped standard streams and waits for the ready line.
    fn start(mut command: Command) -> Supervised {
        let mut process = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the command starts");
        let input = Input::Pipe(process.stdin.take().expect("stdin is piped"));
        let lines = lines_of(process.stdout.take().expect("stdout is piped"));
        let stderr = collect(process.stderr.take().expect("stderr is piped"));
        let shim_pid = process.id();
        Supervised::attach(process, shim_pid, input, lines, stderr)
    }

    /// Like `start`, for a shim inside `unshare`: the shim is the child of
    /// the unshare process.
    fn start_in_namespace(command: Command) -> Supervised {
        let mut supervised = Supervised::start(command);
        supervised.child_pid_is_local = false;
        supervised.shim_pid = only_child(supervised.process.id());
        supervised
    }

    /// Starts `binary run OPTIONS -- recorder` under a shell that is PID 1
    /// of a new PID namespace, so the shim is not PID 1 and, if it dies,
    /// the orphaned recorder ends with the namespace instead of outliving
    /// the test. The shell prints "shim-status N" on standard error and
    /// exits with the shim's status.
    fn start_under_namespace_shell(server: &TestServer, binary: &Path, options: &[&str]) -> Supervised {
        let wrapper = "ulimit -c 0; \"$@\"; status=$?; echo \"shim-status $status\" >&2; exit $status";
        let mut command = in_pid_namespace(server, Path::new("sh"));
        command.args(["-c", wrapper, "sh"]).arg(binary).arg("run").args(options).args(["--", "python3"]);
        command.arg(recorder_script()).arg(RECORDER_EXIT_STATUS.to_string());
        let mut supervised = Supervised::start(command);
        supervised.child_pid_is_local = false;
        let shell = only_child(supervised.process.id());
        supervised.shim_pid = only_child(shell);
        let parent = process_stat(supervised.shim_pid).map(|stat| stat.parent);
        assert_eq!(parent, Some(shell), "the shim runs under the namespace's shell, not as PID 1");
        supervised
    }

    fn attach(
        process: Child,
        shim_pid: u32,
        input: Input,
        lines: Receiver<String>,
        stderr: JoinHandle<Vec<u8>>,
    ) -> Supervised {
        let placeholder = Ready { pid: 0, group: 0, foreground: 0, rt_min: 0, rt_max: 0 };
        let mut supervised =
            Supervised {
                process,
                shim_pid,
                input: Some(input),
                lines,
                stderr: Some(stderr),
                ready: placeholder,
                child_pid_is_local: true,
            };
        let line = supervised.next_line();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let parse = |index: usize| -> i64 {
            fields.get(index).and_then(|field| field.parse().ok()).unwrap_or_else(|| panic!("bad ready line {line:?}"))
        };
        assert_eq!(fields.first(), Some(&"ready"), "first line from the recorder: {line:?}");
        supervised.ready = Ready {
            pid: parse(1) as u32,
            group: parse(2) as u32,
            foreground: parse(3) as i32,
            rt_min: parse(4) as i32,
            rt_max: parse(5) as i32,
        };
        supervised
    }

    /// Returns the next line, failing the test if none comes within
    /// `LINE_LIMIT`. The panic message reports whether the shim has exited.
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(LINE_LIMIT) {
            Ok(line) => line,
            Err(error) => {
                let state = match self.process.try_wait() {
                    Ok(Some(status)) => format!("the shim (or unshare around it) exited: {status}"),
                    _ => "the shim is still running".to_string(),
                };
                panic!("no line from the recorder within {LINE_LIMIT:?} ({error}); {state}");
            }
        }
    }

    /// Returns the next recorded signal number.
    fn next_signal(&mut self) -> i32 {
        let line = self.next_line();
        line.strip_prefix("signal ")
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line from the recorder: {line:?}"))
    }

    /// Sends `signal` to the shim and returns what the child recorded next.
    fn forward(&mut self, signal: i32) -> i32 {
        send(self.shim_pid, signal);
        self.next_signal()
    }

    /// Ends the recorder's input, so it exits with `RECORDER_EXIT_STATUS`,
    /// and waits for the shim.
    fn finish(mut self) -> Finished {
        match self.input.take() {
            Some(Input::Pipe(stdin)) => drop(stdin),
            Some(Input::Terminal(mut master)) => {
                master.write_all(b"\x04").expect("write Ctrl-D to the terminal");
            }
            None => {}
        }
        self.wait()
    }

    /// Waits for the shim to exit and collects what is left.
    fn wait(mut self) -> Finished {
        let status = wait_status(&mut self.process, EXIT_LIMIT);
        let mut rest = Vec::new();
        // The recorder may outlive a shim that crashed; stop reading after
        // a pause instead of waiting for its end of file.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            rest.push(line);
        }
        let stderr = self.stderr.take().map(|reader| text(&reader.join().unwrap_or_default())).unwrap_or_default();
        Finished { status, rest, stderr }
    }
}

impl Drop for Supervised {
    /// Kills what a failed test left running: the shim and the recorder.
    fn drop(&mut self) {
        if matches!(self.process.try_wait(), Ok(None)) {
            kill_quietly(self.shim_pid);
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
        // Inside unshare, --kill-child ends the namespace with unshare.
        if self.child_pid_is_local && process_stat(self.ready.pid).is_some_and(|stat| stat.state != 'Z') {
            kill_quietly(self.ready.pid);
        }
    }
}

/// Returns the shim, set up against `server`, running the recorder with
/// `options` before `--`.
fn shim_with_recorder(server: &TestServer, options: &[&str]) -> Command {
    let mut command = shim_for(server);
    command.arg("run").args(options).arg("--");
    command.arg("python3").arg(recorder_script()).arg(RECORDER_EXIT_STATUS.to_string());
    command
}


// ---------------------------------------------------------------------------
// Forwarding

/// Sends every forwardable standard signal, then every real-time signal of
/// the child's C library, one at a time, and checks each is recorded in
/// turn. Returns the ready line and what was left after the last signal.
fn check_every_signal_in_order(mut supervised: Supervised) -> (Ready, Finished) {
    let ready = supervised.ready;
    let real_time: Vec<i32> = (ready.rt_min..=ready.rt_max).collect();
    let expected: Vec<i32> = FORWARDED_STANDARD.iter().copied().chain(real_time.iter().copied()).collect();

    let mut received = Vec::new();
    for &signal in &expected {
        received.push(supervised.forward(signal));
    }
    let finished = supervised.finish();

    assert_eq!(received, expected, "signals recorded by the child, in the order sent");
    assert!(finished.rest.is_empty(), "the child recorded more than was sent: {:?}", finished.rest);
    (ready, finished)
}

#[test]
fn every_signal_reaches_child_in_order() {
    let server = TestServer::start();
    let supervised = Supervised::start(shim_with_recorder(&server, &[]));
    let (ready, finished) = check_every_signal_in_order(supervised);

    assert_eq!(ready.rt_max - ready.rt_min, 30, "the child's C library has 31 real-time signals");
    assert_eq!(code(&finished.status), RECORDER_EXIT_STATUS, "stderr:\n{}", finished.stderr);
    assert_no_leak(&finished.stderr);
}

/// The static musl binary is what goes into images. musl reserves signals
/// 32 to 34 for itself, so its full signal set leaves them out, but 34 is
/// SIGRTMIN for glibc programs and for `docker kill -s RTMIN`.
#[test]
fn static_binary_forwards_every_signal() {
    let server = TestServer::start();
    let supervised = Supervised::start_under_namespace_shell(&server, &static_binary(), &[]);
    let (ready, finished) = check_every_signal_in_order(supervised);

    assert_eq!(ready.rt_min, 34, "the recorder runs on glibc, whose SIGRTMIN is 34");
    assert_eq!(code(&finished.status), RECORDER_EXIT_STATUS, "stderr:\n{}", finished.stderr);
}

/// Outside PID 1 a fault signal sent from outside kills the shim, as the
/// README's "Blocks every signal except the fault signals" implies: the
/// shim leaves them unblocked so a bug in it crashes instead of hanging.
/// The child never receives them.
#[test]
fn fault_signal_kills_shim_not_pid1() {
    let server = TestServer::start();
    for &fault in FAULT_SIGNALS {
        let supervised = Supervised::start_under_namespace_shell(&server, &binary(), &[]);

        send(supervised.shim_pid, fault);
        let finished = supervised.finish();

        let expected = format!("shim-status {}", 128 + fault);
        assert!(finished.stderr.contains(&expected), "signal {fault} did not kill the shim:\n{}", finished.stderr);
        assert_eq!(code(&finished.status), 128 + fault);
        assert!(
            !finished.rest.contains(&format!("signal {fault}")),
            "signal {fault} was forwarded to the child: {:?}",
            finished.rest
        );
    }
}

/// As PID 1 of a PID namespace, the kernel drops a signal from outside the
/// namespace that the process neither blocks nor handles, so fault signals
/// sent to the shim are lost: not fatal, not forwarded.
#[test]
fn fault_signals_dropped_as_pid1() {
    let server = TestServer::start();
    let mut command = in_pid_namespace(&server, binary());
    command.args(["run", "--", "python3"]).arg(recorder_script()).arg(RECORDER_EXIT_STATUS.to_string());
    let mut supervised = Supervised::start_in_namespace(command);

    for &fault in FAULT_SIGNALS {
        send(supervised.shim_pid, fault);
    }
    let after = supervised.forward(libc::SIGUSR1);
    let finished = supervised.finish();

    assert_eq!(after, libc::SIGUSR1, "a fault signal reached the child");
    assert!(finished.rest.is_empty(), "{:?}", finished.rest);
    assert_eq!(code(&finished.status), RECORDER_EXIT_STATUS, "stderr:\n{}", finished.stderr);
}

#[test]
fn rewrite_term_to_usr1() {
    let server = TestServer::start();
    let mut supervised = Supervised::start(shim_with_recorder(&server, &["--rewrite", "TERM:USR1"]));

    let term = supervised.forward(libc::SIGTERM);
    let alive = matches!(supervised.process.try_wait(), Ok(None));
    let usr2 = supervised.forward(libc::SIGUSR2);
    let finished = supervised.finish();

    assert_eq!(term, libc::SIGUSR1, "SIGTERM reaches the child as SIGUSR1");
    assert!(alive, "the shim exited after a rewritten SIGTERM");
    assert_eq!(usr2, libc::SIGUSR2, "other signals pass unchanged");
    assert_eq!(code(&finished.status), RECORDER_EXIT_STATUS, "stderr:\n{}", finished.stderr);
}

#[test]
fn rewrite_to_zero_drops_signal() {
    let server = TestServer::start();
    let options = ["--rewrite", "USR1:0", "--rewrite", "RTMIN+1:HUP", "--verbose"];
    let mut supervised = Supervised::start(shim_with_recorder(&server, &options));
    // The shim and the recorder both use glibc here, so they agree on
    // SIGRTMIN.
    let rt_min_plus_1 = supervised.ready.rt_min + 1;

    send(supervised.shim_pid, libc::SIGUSR1);
    let after_drop = supervised.forward(libc::SIGUSR2);
    let rewritten = supervised.forward(rt_min_plus_1);
    let finished = supervised.finish();

    assert_eq!(after_drop, libc::SIGUSR2, "SIGUSR1 reached the child although --rewrite USR1:0 drops it");
    assert_eq!(rewritten, libc::SIGHUP, "SIGRTMIN+1 reaches the child as SIGHUP");
    assert!(finished.stderr.contains("dropped SIGUSR1"), "the drop is logged:\n{}", finished.stderr);
    assert_eq!(code(&finished.status), RECORDER_EXIT_STATUS, "stderr:\n{}", finished.stderr);
}

// ---------------------------------------------------------------------------
// Process groups, --drain and --stop-timeout

/// A member of a process group under test: records USR1 and TERM in a log,
/// or with `ignore` ignores TERM (so does its `sleep`, which inherits the
/// ignored disposition), until SIGKILL.
///
/// Usage: member.sh NAME LOG [ignore]
const MEMBER_SCRIPT: &str = r#"name=$1
log=$2
trap 'echo "$name usr1" >> "$log"' USR1
if [ "$3" = ignore ]; then
    trap '' TERM
else
    trap 'echo "$name term" >> "$log"; exit 0' TERM
fi
echo "$name ready $$" >> "$log"
while :; do
    sleep 1000 &
    wait $!
done
"#;

/// A directory with `member.sh` and an empty `log`.
struct GroupFiles {
    member: PathBuf,
    log: PathBuf,
}

fn group_files(name: &str) -> GroupFiles {
    let directory = temp_dir(name);
    let member = directory.join("member.sh");
    write_file(&member, MEMBER_SCRIPT);
    let log = directory.join("log");
    write_file(&log, "");
    GroupFiles { member, log }
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Returns the pid after "NAME ready" in the log.
fn ready_pid(log: &str, name: &str) -> u32 {
    let prefix = format!("{name} ready ");
    log.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or_else(|| panic!("no ready line for {name} in the log:\n{log}"))
}

/// Returns the pid after "main" in the log, written by the shim's child.
fn main_pid(log: &str) -> u32 {
    log.lines()
        .find_map(|line| line.strip_prefix("main ")?.parse().ok())
        .unwrap_or_else(|| panic!("no main line in the log:\n{log}"))
}

fn spawn_quiet(command: &mut Command) -> Child {
    command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("the binary starts")
}

#[test]
fn kill_group_signals_every_pipeline_member() {
    let server = TestServer::start();
    let files = group_files("kill-group-pipeline");
        // The shell traps USR1 so it survives it; a handler, unlike an ignored
    // signal, is reset in the members, which set their own.
    let script = r#"trap : USR1; echo "main $$" >> "$1"; sh "$0" a "$1" | sh "$0" b "$1" | sh "$0" c "$1""#;
    let mut shim = spawn_quiet(
        shim_for(&server)
            .args(["run", "--kill-group", "--drain", "5", "--", "sh", "-c", script])
            .arg(&files.member)
            .arg(&files.log),
    );
    let stderr = collect(shim.stderr.take().expect("stderr is piped"));
    let all_ready = wait_until(LINE_LIMIT, || read_log(&files.log).matches(" ready ").count() == 3);
    let log = read_log(&files.log);
    assert!(all_ready, "the pipeline did not start:\n{log}");
    let group = main_pid(&log);
    let members = ["a", "b", "c"].map(|name| ready_pid(&log, name));
    let groups = members.map(|pid| process_stat(pid).map(|stat| stat.group));

    send(shim.id(), libc::SIGUSR1);
    let all_usr1 = wait_until(LINE_LIMIT, || read_log(&files.log).matches(" usr1").count() >= 3);
    send(shim.id(), libc::SIGTERM);
    let status = wait_status(&mut shim, EXIT_LIMIT);
    let stderr = text(&stderr.join().unwrap_or_default());
    let log = read_log(&files.log);
    let left = group_members(group);

    assert_eq!(groups, [Some(group); 3], "the pipeline runs in the child's process group");
    assert!(all_usr1, "SIGUSR1 did not reach every member:\n{log}");
    for name in ["a", "b", "c"] {
        assert!(log.contains(&format!("{name} usr1")), "{name} missed SIGUSR1:\n{log}");
        assert!(log.contains(&format!("{name} term")), "{name} missed SIGTERM:\n{log}");
    }
    assert!(left.is_empty(), "processes of group {group} left after the shim exited: {left:?}");
    assert_eq!(code(&status), 128 + libc::SIGTERM, "the shell died from SIGTERM; stderr:\n{stderr}");
}

#[test]
fn kill_group_drains_group_after_child_exits() {
    let server = TestServer::start();
    let files = group_files("kill-group-drain");
    // The child starts a member that exits on SIGTERM and one that ignores
    // it, waits until both are ready, and exits 5.
    let script = r#"echo "main $$" >> "$1"
sh "$0" polite "$1" &
sh "$0" stubborn "$1" ignore &
while [ "$(grep -c ready "$1")" -lt 2 ]; do sleep 0.01; done
exit 5"#;
    let mut shim = spawn_quiet(
        shim_for(&server)
            .args(["run", "--kill-group", "--drain", "1", "--verbose", "--", "sh", "-c", script])
            .arg(&files.member)
            .arg(&files.log),
    );
    let stderr = collect(shim.stderr.take().expect("stderr is piped"));
    let status = wait_status(&mut shim, EXIT_LIMIT);
    let stderr = text(&stderr.join().unwrap_or_default());
    let log = read_log(&files.log);
    let group = main_pid(&log);
    let stubborn = ready_pid(&log, "stubborn");
    let left = group_members(group);

    assert_eq!(code(&status), 5, "the child's status; stderr:\n{stderr}");
    assert!(log.contains("polite term"), "the rest of the group did not get SIGTERM:\n{log}");
    assert!(!log.contains("stubborn term"), "the member ignoring SIGTERM recorded it:\n{log}");
    assert!(stderr.contains("still running after --drain; sending SIGKILL"), "stderr:\n{stderr}");
    assert!(process_stat(stubborn).is_none(), "the member ignoring SIGTERM survived: {:?}", process_stat(stubborn));
    assert!(left.is_empty(), "processes of group {group} left after the shim exited: {left:?}");
}

#[test]
fn stop_timeout_kills_child_ignoring_term() {
    let server = TestServer::start();
    let mut shim = shim_for(&server)
        .args(["run", "--stop-timeout", "1", "--verbose", "--", "sh", "-c", "trap '' TERM; echo ready $$; exec sleep 1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = collect(shim.stderr.take().expect("stderr is piped"));
    let mut ready = String::new();
    BufReader::new(shim.stdout.take().expect("stdout is piped")).read_line(&mut ready).unwrap();
    let child: u32 = ready.trim().strip_prefix("ready ").and_then(|pid| pid.parse().ok()).expect("ready line");

    send(shim.id(), libc::SIGTERM);
    let status = wait_status(&mut shim, EXIT_LIMIT);
    let stderr = text(&stderr.join().unwrap_or_default());

    assert_eq!(code(&status), 128 + libc::SIGKILL, "the child ignores SIGTERM, so SIGKILL ends it; stderr:\n{stderr}");
    assert!(stderr.contains("forwarding SIGTERM"), "stderr:\n{stderr}");
    assert!(stderr.contains("still running after --stop-timeout; sending SIGKILL"), "stderr:\n{stderr}");
    assert!(process_stat(child).is_none(), "the child is still there: {:?}", process_stat(child));
}

#[test]
fn stop_timeout_with_kill_group_kills_group() {
    let server = TestServer::start();
    let files = group_files("stop-timeout-group");
    // The shell records SIGTERM and goes on waiting, so only SIGKILL ends
    // it. Its members start before the trap is set, so the polite one can
    // set its own.
    let script = r#"echo "main $$" >> "$1"
sh "$0" polite "$1" &
sh "$0" stubborn "$1" ignore &
trap 'echo "main term" >> "$1"' TERM
while :; do sleep 1000 & wait $!; done"#;
    let mut shim = spawn_quiet(
        shim_for(&server)
            .args(["run", "--kill-group", "--stop-timeout", "1", "--drain", "1", "--", "sh", "-c", script])
            .arg(&files.member)
            .arg(&files.log),
    );
    let stderr = collect(shim.stderr.take().expect("stderr is piped"));
    let all_ready = wait_until(LINE_LIMIT, || read_log(&files.log).matches(" ready ").count() == 2);

    send(shim.id(), libc::SIGTERM);
    let status = wait_status(&mut shim, EXIT_LIMIT);
    let stderr = text(&stderr.join().unwrap_or_default());
    let log = read_log(&files.log);
    let group = main_pid(&log);
    let left = group_members(group);

    assert!(all_ready, "the members did not start:\n{log}");
    assert!(log.contains("polite term"), "SIGTERM did not reach the group:\n{log}");
    assert!(log.contains("main term"), "SIGTERM did not reach the child:\n{log}");
    assert_eq!(code(&status), 128 + libc::SIGKILL, "the child ignores SIGTERM; stderr:\n{stderr}");
    assert!(left.is_empty(), "processes of group {group} left after the shim exited: {left:?}");
}

// ---------------------------------------------------------------------------
// Exit codes

/// Runs `sh -c 'exit CODE'` under the shim with `--remap-exit REMAP` and
/// returns the shim's exit code.
fn exit_code_with_remap(server: &TestServer, child_code: u8, remap: u8) -> i32 {
    let output = run(shim_for(server)
        .args(["run", "--remap-exit", &remap.to_string(), "--", "sh", "-c"])
        .arg(format!("exit {child_code}")));
    code(&output.status)
}

/// Every code 0 to 255: remapped to 0 when named, passed through when a
/// different code is named. Two threads share the work.
#[test]
fn remap_exit_every_code() {
    let server = TestServer::start();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = [0u8, 1]
            .into_iter()
            .map(|parity| {
                let server = &server;
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for child_code in (0..=255u8).filter(|child_code| child_code % 2 == parity) {
                        let remapped = exit_code_with_remap(server, child_code, child_code);
                        if remapped != 0 {
                            failures.push(format!("--remap-exit {child_code}, child exits {child_code}: got {remapped}"));
                        }
                        let other = child_code.wrapping_add(1);
                        let passed = exit_code_with_remap(server, child_code, other);
                        if passed != i32::from(child_code) {
                            failures.push(format!("--remap-exit {other}, child exits {child_code}: got {passed}"));
                        }
                    }
                    failures
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("worker thread")).collect()
    });
    assert!(failures.is_empty(), "{} wrong exit codes:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn remap_exit_covers_signal_death() {
    let server = TestServer::start();
    let output = run(shim_for(&server).args(["run", "--remap-exit", "143", "--", "sh", "-c", "kill -s TERM $$"]));
    assert_eq!(code(&output.status), 0, "a child killed by SIGTERM counts as 143; stderr:\n{}", text(&output.stderr));

    let output = run(shim_for(&server).args(["run", "--remap-exit", "143", "--", "sh", "-c", "kill -s USR1 $$"]));
    assert_eq!(code(&output.status), 128 + libc::SIGUSR1, "stderr:\n{}", text(&output.stderr));
}

// ---------------------------------------------------------------------------
// Inherited signal mask and dispositions

/// Python wrapper that blocks the signals in argv[1], ignores those in
/// argv[2] and resets those in argv[3] to the default action (numbers,
/// comma-separated, possibly empty), prints its own SigBlk and SigIgn lines
/// prefixed with "wrapper ", and replaces itself with argv[4:]. Python
/// itself starts with SIGPIPE and SIGXFSZ ignored.
const MASK_WRAPPER: &str = r#"
import os
import signal
import sys


def numbers(argument):
    return [int(number) for number in argument.split(",") if number]


signal.pthread_sigmask(signal.SIG_BLOCK, numbers(sys.argv[1]))
for number in numbers(sys.argv[2]):
    signal.signal(number, signal.SIG_IGN)
for number in numbers(sys.argv[3]):
    signal.signal(number, signal.SIG_DFL)
with open("/proc/self/status") as status:
    for line in status:
        if line.startswith(("SigBlk:", "SigIgn:")):
            os.write(1, b"wrapper " + line.encode())
os.execv(sys.argv[4], sys.argv[4:])
"#;

fn join_numbers(signals: &[i32]) -> String {
    signals.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// Runs the shim under the mask wrapper with `cat /proc/self/status` as the
/// command and returns (wrapper's SigBlk, SigIgn, child's SigBlk, SigIgn,
/// shim's exit code).
fn masks_through_shim(server: &TestServer, block: &[i32], ignore: &[i32], default: &[i32]) -> (u64, u64, u64, u64, i32) {
    let wrapper = temp_dir("supervision-mask-wrapper").join("wrapper.py");
    write_file(&wrapper, MASK_WRAPPER);
    let template = shim_for(server);
    let mut command = Command::new("python3");
    command.env_clear().envs(template.get_envs().filter_map(|(name, value)| Some((name, value?))));
    command.stdin(Stdio::null()).arg(&wrapper);
    command.args([join_numbers(block), join_numbers(ignore), join_numbers(default)]);
    command.arg(binary()).args(["run", "--", "cat", "/proc/self/status"]);
    let output = run_with_limit(&mut command, EXIT_LIMIT);
    let stdout = text(&output.stdout);
    let wrapper_lines: String =
        stdout.lines().filter_map(|line| line.strip_prefix("wrapper ")).map(|line| format!("{line}\n")).collect();
    let child_lines: String = stdout.lines().filter(|line| !line.starts_with("wrapper ")).map(|line| format!("{line}\n")).collect();
    let mask = |lines: &str, field: &str| {
        parse_mask(lines, field).unwrap_or_else(|| panic!("no {field} in:\n{stdout}\nstderr:\n{}", text(&output.stderr)))
    };
    (
        mask(&wrapper_lines, "SigBlk"),
        mask(&wrapper_lines, "SigIgn"),
        mask(&child_lines, "SigBlk"),
        mask(&child_lines, "SigIgn"),
        code(&output.status),
    )
}

#[test]
fn child_gets_inherited_mask_and_ignored_signals() {
    let server = TestServer::start();
    let block = [libc::SIGUSR2, libc::SIGWINCH, libc::SIGALRM, 40];
    let ignore = [libc::SIGHUP, libc::SIGUSR1, libc::SIGTTOU];
    let (wrapper_blocked, wrapper_ignored, child_blocked, child_ignored, status) =
        masks_through_shim(&server, &block, &ignore, &[]);

    for signal in block {
        assert_ne!(wrapper_blocked & bit(signal), 0, "the wrapper did not block {signal}");
    }
    for signal in ignore.iter().chain(&[libc::SIGPIPE, libc::SIGXFSZ]) {
        assert_ne!(wrapper_ignored & bit(*signal), 0, "the wrapper did not ignore {signal}");
    }
    assert_eq!(child_blocked, wrapper_blocked, "SigBlk: child {child_blocked:016x}, inherited {wrapper_blocked:016x}");
    assert_eq!(child_ignored, wrapper_ignored, "SigIgn: child {child_ignored:016x}, inherited {wrapper_ignored:016x}");
    assert_eq!(status, 0);
}

/// The shim blocks almost everything itself, so a child that inherited the
/// shim's own mask would fail this check: nothing blocked, SIGPIPE at its
/// default action.
#[test]
fn child_gets_empty_mask_and_default_sigpipe() {
    let server = TestServer::start();
    let (wrapper_blocked, wrapper_ignored, child_blocked, child_ignored, status) =
        masks_through_shim(&server, &[], &[], &[libc::SIGPIPE, libc::SIGXFSZ]);

    assert_eq!(wrapper_blocked, 0);
    assert_eq!(wrapper_ignored & bit(libc::SIGPIPE), 0, "the wrapper did not reset SIGPIPE");
    assert_eq!(child_blocked, 0, "SigBlk of the child: {child_blocked:016x}");
    assert_eq!(child_ignored, wrapper_ignored, "SigIgn: child {child_ignored:016x}, inherited {wrapper_ignored:016x}");
    assert_eq!(status, 0);
}

/// A shim started with SIGCHLD ignored (a parent that set SIG_IGN and then
/// ran it) must still learn its child's status: with SIGCHLD ignored the
/// kernel reaps children itself and `waitpid` only returns ECHILD.
#[test]
fn inherited_ignored_sigchld_keeps_exit_status() {
    let server = TestServer::start();
    let wrapper = temp_dir("supervision-sigchld-wrapper").join("wrapper.py");
    write_file(&wrapper, MASK_WRAPPER);
    let template = shim_for(&server);
    let mut command = Command::new("python3");
    command.env_clear().envs(template.get_envs().filter_map(|(name, value)| Some((name, value?))));
    command.stdin(Stdio::null()).arg(&wrapper).args(["", &libc::SIGCHLD.to_string(), ""]);
    command.arg(binary()).args(["run", "--", "sh", "-c", "exit 7"]);
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("python3 starts");
    let stderr = collect(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + EXIT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = text(&stderr.join().unwrap_or_default());

    let status = status.unwrap_or_else(|| {
        panic!("the shim never exited after its child exited 7 (inherited SIGCHLD ignored); stderr:\n{stderr}")
    });
    assert_eq!(code(&status), 7, "stderr:\n{stderr}");
}

// ---------------------------------------------------------------------------
// Terminal and job control

/// Opens a pseudo-terminal with echo off; both ends close on exec, so
/// processes started by other tests never hold them.
fn open_terminal() -> (OwnedFd, OwnedFd) {
    let pty = nix::pty::openpty(None::<&nix::pty::Winsize>, None::<&nix::sys::termios::Termios>).expect("openpty");
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).expect("set FD_CLOEXEC");
    }
    let mut settings = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
    settings.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &settings).expect("tcsetattr");
    (pty.master, pty.slave)
}

/// Starts the shim with the recorder in a new session whose controlling
/// terminal is a new pseudo-terminal, as a terminal emulator would: the
/// shim's group is the foreground group when it starts. TSTP, TTIN and
/// TTOU keep their default action in the recorder.
fn start_on_terminal(server: &TestServer) -> (Supervised, File) {
    let (master, slave) = open_terminal();
    let mut command = shim_with_recorder(server, &["--verbose"]);
    command.arg("--default-job-control");
    command
        .stdin(Stdio::from(slave.try_clone().expect("dup the slave")))
        .stdout(Stdio::from(slave))
        .stderr(Stdio::piped());
    // SAFETY: setsid and ioctl are async-signal-safe system calls on
    // integers; nothing is allocated between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut process = command.spawn().expect("the binary starts");
    // The slave ends were moved into `command`; dropping it closes them
    // here, so only the shim and its child hold the terminal.
    drop(command);
    let master = File::from(master);
    let lines = lines_of(master.try_clone().expect("dup the master"));
    let stderr = collect(process.stderr.take().expect("stderr is piped"));
    let shim_pid = process.id();
    let control = master.try_clone().expect("dup the master");
    (Supervised::attach(process, shim_pid, Input::Terminal(master), lines, stderr), control)
}

fn foreground_group(master: &File) -> u32 {
    nix::unistd::tcgetpgrp(master).expect("tcgetpgrp on the master").as_raw() as u32
}

fn state_of(pid: u32) -> char {
    process_stat(pid).map_or('-', |stat| stat.state)
}

#[test]
fn terminal_goes_to_child_ctrl_c_once() {
    let server = TestServer::start();
    let (mut supervised, mut master) = start_on_terminal(&server);
    let ready = supervised.ready;
    let shim_group = process_stat(supervised.shim_pid).map(|stat| stat.group);

    master.write_all(b"\x03").unwrap();
    let interrupt = supervised.next_signal();
    let next = supervised.forward(libc::SIGUSR1);
    let finished = supervised.finish();

    assert_eq!(ready.group, ready.pid, "the child leads its own process group");
    assert_ne!(shim_group, Some(ready.group), "the shim is not in the child's group");
    assert_eq!(ready.foreground, ready.group as i32, "the child's group is the terminal's foreground group");
    assert_eq!(interrupt, libc::SIGINT, "Ctrl-C reaches the child");
    assert_eq!(next, libc::SIGUSR1, "Ctrl-C reached the child twice");
    assert!(finished.rest.is_empty(), "{:?}", finished.rest);
    assert!(!finished.stderr.contains("received SIGINT"), "the shim got Ctrl-C too:\n{}", finished.stderr);
    assert_eq!(code(&finished.status), RECORDER_EXIT_STATUS, "stderr:\n{}", finished.stderr);
}

/// Waits until both processes are stopped (state `T`).
fn wait_stopped(shim: u32, child: u32) -> bool {
    wait_until(LINE_LIMIT, || state_of(shim) == 'T' && state_of(child) == 'T')
}

/// Ctrl-Z stops the child; the shim stops too, so a shell above it would
/// see the job stop. SIGCONT to the shim (what `fg` sends) resumes both and
/// gives the terminal back to the child.
#[test]
fn ctrl_z_stops_both_sigcont_resumes() {
    let server = TestServer::start();
    let (mut supervised, mut master) = start_on_terminal(&server);
    let (shim, child) = (supervised.shim_pid, supervised.ready.pid);

    master.write_all(b"\x1a").unwrap();
    let stopped = wait_stopped(shim, child);
    let states = (state_of(shim), state_of(child));
    send(shim, libc::SIGCONT);
    let continued = supervised.next_signal();
    let running = wait_until(LINE_LIMIT, || state_of(shim) != 'T' && state_of(child) != 'T');
    let foreground = foreground_group(&master);
    master.write_all(b"\x03").unwrap();
    let interrupt = supervised.next_signal();
    let finished = supervised.finish();

    assert!(stopped, "Ctrl-Z did not stop both (shim, child) states: {states:?}");
    assert_eq!(continued, libc::SIGCONT, "SIGCONT reaches the child");
    assert!(running, "shim {} child {} after SIGCONT", state_of(shim), state_of(child));
    assert_eq!(foreground, child, "the terminal is back with the child's group");
    assert_eq!(interrupt, libc::SIGINT);
    assert_eq!(code(&finished.status), RECORDER_EXIT_STATUS, "stderr:\n{}", finished.stderr);
}

/// SIGTSTP sent to the shim (not typed) is forwarded, the child stops, and
/// the shim stops itself. One SIGCONT must resume both, as one `fg` does.
#[test]
fn sigtstp_to_shim_stops_both_one_sigcont_resumes() {
    let server = TestServer::start();
    let (mut supervised, mut master) = start_on_terminal(&server);
    let (shim, child) = (supervised.shim_pid, supervised.ready.pid);

    send(shim, libc::SIGTSTP);
    let stopped = wait_stopped(shim, child);
    let states = (state_of(shim), state_of(child));
    send(shim, libc::SIGCONT);
    let continued = supervised.lines.recv_timeout(LINE_LIMIT);
    let after = (state_of(shim), state_of(child));

    assert!(stopped, "SIGTSTP did not stop both (shim, child) states: {states:?}");
    assert_eq!(
        continued.as_deref(),
        Ok("signal 18"),
        "one SIGCONT did not resume the child; (shim, child) states: {after:?}"
    );
    master.write_all(b"\x03").unwrap();
    assert_eq!(supervised.next_signal(), libc::SIGINT);
    let finished = supervised.finish();
    assert_eq!(code(&finished.status), RECORDER_EXIT_STATUS, "stderr:\n{}", finished.stderr);
}

// ---------------------------------------------------------------------------
// Reaping, --verbose and the working directory

const ORPHANS: usize = 100;

/// The numbers `tests/scripts/orphans.sh` prints. The script belongs to
/// another test file and may gain lines, so unknown lines are skipped.
struct OrphanReport {
    parents: Vec<u32>,
    /// Orphans still in /proc at the end, when the script reports them.
    unreaped: Option<usize>,
    zombies: usize,
    zombies_total: usize,
}

fn parse_orphans(stdout: &str, stderr: &str) -> OrphanReport {
    let mut report = OrphanReport { parents: Vec::new(), unreaped: None, zombies: usize::MAX, zombies_total: usize::MAX };
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["orphan", _, "parent", parent] => report.parents.push(parent.parse().expect("parent pid")),
            ["unreaped", count] => report.unreaped = Some(count.parse().expect("orphan count")),
            ["zombies", count] => report.zombies = count.parse().expect("zombie count"),
            ["zombies-total", count] => report.zombies_total = count.parse().expect("zombie count"),
            _ => {}
        }
    }
    assert_eq!(report.parents.len(), ORPHANS, "orphans.sh output:\n{stdout}\nstderr:\n{stderr}");
    assert_ne!(report.zombies, usize::MAX, "no zombies line from orphans.sh:\n{stdout}");
    report
}

#[test]
fn subreaper_reaps_100_orphans() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command.args(["run", "--", "sh"]).arg(repository().join("tests/scripts/orphans.sh"));
    command.args([ORPHANS.to_string(), "500".to_string()]);
    let shim = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    let shim_pid = shim.id();
    let output = wait_with_limit(shim, Duration::from_secs(60));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let report = parse_orphans(&stdout, &stderr);

    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");
    let strays: Vec<&u32> = report.parents.iter().filter(|&&parent| parent != shim_pid).collect();
    assert!(strays.is_empty(), "orphans not adopted by the shim (pid {shim_pid}): {strays:?}");
    assert_eq!(report.unreaped.unwrap_or(0), 0, "orphans the shim never reaped");
    assert_eq!(report.zombies, 0, "zombies left among the shim's children");
}

#[test]
fn pid1_reaps_100_orphans() {
    let server = TestServer::start();
    let mut command = in_pid_namespace(&server, binary());
    command.args(["run", "--", "sh"]).arg(repository().join("tests/scripts/orphans.sh"));
    command.args([ORPHANS.to_string(), "500".to_string()]).stdin(Stdio::null());
    let output = run_with_limit(&mut command, Duration::from_secs(60));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let report = parse_orphans(&stdout, &stderr);

    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");
    let strays: Vec<&u32> = report.parents.iter().filter(|&&parent| parent != 1).collect();
    assert!(strays.is_empty(), "orphans not adopted by the shim as PID 1: {strays:?}");
    assert_eq!(report.unreaped.unwrap_or(0), 0, "orphans the shim never reaped");
    assert_eq!(report.zombies, 0, "zombies left among the shim's children");
    assert_eq!(report.zombies_total, 0, "zombies left in the namespace");
}

/// The child leaves two orphans for the shim to reap, one that exits and
/// one killed by SIGKILL, then records USR1 and exits 5 on TERM.
const VERBOSE_CHILD: &str = r#"exited=$( (sleep 0.1 >/dev/null 2>&1 & echo $!) )
killed=$( (sleep 1000 >/dev/null 2>&1 & echo $!) )
kill -s KILL "$killed"
trap 'echo usr1' USR1
trap 'exit 5' TERM
echo "ready $$ $exited $killed"
while :; do sleep 0.05; done"#;

/// Runs `VERBOSE_CHILD` under the shim with `options`, waits until both
/// orphans are reaped, sends USR1 then TERM, and returns (child pid, orphan
/// pids, exit code, stderr).
fn run_verbose_child(server: &TestServer, options: &[&str]) -> (u32, [u32; 2], i32, String) {
    let mut shim = shim_for(server)
        .arg("run")
        .args(options)
        .args(["--", "sh", "-c", VERBOSE_CHILD])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = collect(shim.stderr.take().expect("stderr is piped"));
    let lines = lines_of(shim.stdout.take().expect("stdout is piped"));
    let ready = lines.recv_timeout(LINE_LIMIT).expect("ready line from the child");
    let pids: Vec<u32> = ready.split_whitespace().skip(1).map(|pid| pid.parse().expect("pid")).collect();
    let (child, orphans) = (pids[0], [pids[1], pids[2]]);

    let reaped = wait_until(LINE_LIMIT, || orphans.iter().all(|&pid| process_stat(pid).is_none()));
    assert!(reaped, "the orphans were not reaped: {:?}", orphans.map(process_stat));
    send(shim.id(), libc::SIGUSR1);
    assert_eq!(lines.recv_timeout(LINE_LIMIT).as_deref(), Ok("usr1"));
    send(shim.id(), libc::SIGTERM);
    let status = wait_status(&mut shim, EXIT_LIMIT);
    (child, orphans, code(&status), text(&stderr.join().unwrap_or_default()))
}

#[test]
fn verbose_logs_signals_and_zombies() {
    let server = TestServer::start();
    let (child, [exited, killed], status, stderr) = run_verbose_child(&server, &["--verbose"]);

    assert_eq!(status, 5, "stderr:\n{stderr}");
    let expected = [
        "received SIGUSR1".to_string(),
        format!("forwarding SIGUSR1 to pid {child}"),
        "received SIGTERM".to_string(),
        format!("forwarding SIGTERM to pid {child}"),
        format!("reaped pid {exited} (exit status 0)"),
        format!("reaped pid {killed} (killed by SIGKILL)"),
        "command exited with status 5".to_string(),
    ];
    for line in expected {
        assert!(stderr.contains(&line), "--verbose did not log {line:?}:\n{stderr}");
    }
    assert_no_leak(&stderr);
}

#[test]
fn quiet_without_verbose() {
    let server = TestServer::start();
    let (_, _, status, stderr) = run_verbose_child(&server, &[]);

    assert_eq!(status, 5, "stderr:\n{stderr}");
    for word in ["received SIGUSR1", "forwarding", "reaped pid"] {
        assert!(!stderr.contains(word), "logged {word:?} without --verbose:\n{stderr}");
    }
}

fn working_directory(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|error| panic!("read /proc/{pid}/cwd: {error}"))
}

#[test]
fn shim_cwd_is_root_child_keeps_caller() {
    let server = TestServer::start();
    let directory = temp_dir("supervision-cwd").canonicalize().unwrap();
    let mut shim = shim_for(&server)
        .args(["run", "--", "sh", "-c", "echo \"ready $$ $(pwd -P)\"; exec sleep 1000"])
        .current_dir(&directory)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = collect(shim.stderr.take().expect("stderr is piped"));
    let lines = lines_of(shim.stdout.take().expect("stdout is piped"));
    let ready = lines.recv_timeout(LINE_LIMIT).expect("ready line from the child");
    let (child, reported) = ready
        .strip_prefix("ready ")
        .and_then(|rest| rest.split_once(' '))
        .map(|(pid, directory)| (pid.parse::<u32>().expect("pid"), PathBuf::from(directory)))
        .unwrap_or_else(|| panic!("unexpected line from the child: {ready:?}"));

    // The shim changes directory just after starting the child, so the
    // child may be ready first.
    let shim_left = wait_until(LINE_LIMIT, || working_directory(shim.id()) == Path::new("/"));
    let shim_directory = working_directory(shim.id());
    let child_directory = working_directory(child);
    send(shim.id(), libc::SIGTERM);
    let status = wait_status(&mut shim, EXIT_LIMIT);
    let stderr = text(&stderr.join().unwrap_or_default());

    assert!(shim_left, "the shim's working directory is {shim_directory:?}, expected /");
    assert_eq!(child_directory, directory, "the child keeps the caller's working directory");
    assert_eq!(reported, directory, "pwd in the child");
    assert_eq!(code(&status), 128 + libc::SIGTERM, "stderr:\n{stderr}");
}
