//! The static musl binary as the ENTRYPOINT of a `FROM scratch` image in
//! real podman containers.
//!
//! `podman stop` and `podman kill` reach the child. A stop during a slow
//! fetch ends the container with 143 before the command starts. An orphan
//! storm leaves no zombie. With a terminal (`podman run -it`), Ctrl-C
//! reaches the child once.
//!
//! The image contains only /infisical-init, a static busybox and its applet
//! links. Containers use the host network to reach the test server on
//! 127.0.0.1. Podman runs through `tests/containers/podman.sh`, which sets
//! it up for these machines. Every container and image a test creates is
//! removed when the test ends, also when it fails.
//!
//! Durations are printed (run with `--nocapture` to see them), never
//! asserted.

mod util;
use util::*;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use nix::libc;

const BUSYBOX: &str = "/bin/busybox";

/// Limit for one podman call, so a stuck podman fails the test instead of
/// blocking the suite.
const PODMAN_LIMIT: Duration = Duration::from_secs(120);

/// Limit for a container to show an expected line or state.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Seconds `podman stop` waits before SIGKILL: long enough that a SIGKILL
/// (exit 137) means the stop was not handled.
const STOP_GRACE_SECONDS: &str = "60";

// ---------------------------------------------------------------------------
// Podman

fn podman() -> Command {
    let mut command = Command::new(repository().join("tests/containers/podman.sh"));
    command.stdin(Stdio::null());
    command
}

/// Runs podman with `args` and fails the test unless it succeeds.
fn podman_ok(args: &[&str]) -> Output {
    let output = run_with_limit(podman().args(args), PODMAN_LIMIT);
    assert!(
        output.status.success(),
        "podman {args:?} failed ({:?}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// Fails with a clear message when podman or busybox-static is missing.
fn require_tools() {
    let podman = Command::new("podman").arg("--version").output();
    assert!(
        podman.is_ok_and(|output| output.status.success()),
        "podman is not installed; the container tests need it: run scripts/setup \
         (apt-get install -y podman runc busybox-static musl-tools)"
    );
    assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} is missing: apt-get install -y busybox-static");
}


/// An image built for one test, removed when dropped.
struct Image {
    tag: String,
}

impl Image {
    /// Builds `FROM scratch` with the static binary as ENTRYPOINT
    /// (`/infisical-init run --`) and busybox with its applets in /bin.
    fn build(name: &str) -> Image {
        require_tools();
        let context = temp_dir(&format!("containers-{name}"));
        std::fs::copy(static_binary(), context.join("infisical-init")).unwrap();
        std::fs::copy(BUSYBOX, context.join("busybox")).unwrap();
        write_file(
            &context.join("Containerfile"),
            "FROM scratch\n\
             COPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             COPY infisical-init /infisical-init\n\
             ENTRYPOINT [\"/infisical-init\", \"run\", \"--\"]\n",
        );
        let tag = format!("localhost/infisical-init-containers-test-{name}-{}:latest", std::process::id());
        let image = Image { tag };
        let context_path = context.to_str().expect("UTF-8 temporary path");
        podman_ok(&["build", "--layers=false", "--network=none", "--tag", &image.tag, context_path]);
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let output = run_with_limit(podman().args(["rmi", "--force", &self.tag]), PODMAN_LIMIT);
        if !output.status.success() {
            eprintln!("failed to remove image {}: {}", self.tag, text(&output.stderr));
        }
    }
}

/// A container created by a test, removed (killed first) when dropped.
struct Container {
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let output = run_with_limit(podman().args(["rm", "--force", "--time", "0", &self.name]), PODMAN_LIMIT);
        if !output.status.success() {
            eprintln!("failed to remove container {}: {}", self.name, text(&output.stderr));
        }
    }
}

fn container_name(test: &str) -> String {
    format!("infisical-init-containers-{test}-{}", std::process::id())
}

/// Returns the `podman run` options that point the shim at `server`
/// through the host network.
fn server_options(server: &TestServer) -> Vec<String> {
    vec![
        "--network=host".to_string(),
        "-e".to_string(),
        format!("INFISICAL_DOMAIN={}", server.url),
        "-e".to_string(),
        format!("INFISICAL_UNIVERSAL_AUTH_CLIENT_ID={CLIENT_ID}"),
        "-e".to_string(),
        format!("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET={CLIENT_SECRET}"),
        "-e".to_string(),
        format!("INFISICAL_PROJECT_ID={PROJECT_ID}"),
    ]
}

/// Starts a detached container running `sh -c SCRIPT` under the shim.
fn run_detached(image: &Image, server: &TestServer, test: &str, script: &str) -> Container {
    let container = Container { name: container_name(test) };
    let mut args: Vec<String> = vec!["run".into(), "--detach".into(), "--name".into(), container.name.clone()];
    args.extend(server_options(server));
    args.extend([image.tag.clone(), "sh".into(), "-c".into(), script.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    podman_ok(&args);
    container
}

/// Returns the container's output so far, standard output and error.
fn logs(container: &Container) -> String {
    let output = podman_ok(&["logs", &container.name]);
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

/// Polls the logs until `condition` is true or `WAIT_LIMIT` passes.
/// Returns whether it became true, and the last logs read.
fn wait_for_logs(container: &Container, condition: impl Fn(&str) -> bool) -> (bool, String) {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let current = logs(container);
        if condition(&current) {
            return (true, current);
        }
        if Instant::now() > deadline {
            return (false, current);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the container to exit and returns its exit code.
fn wait_exit_code(container: &Container) -> i32 {
    let output = podman_ok(&["wait", &container.name]);
    text(&output.stdout).trim().parse().unwrap_or_else(|_| panic!("podman wait printed {:?}", text(&output.stdout)))
}

/// Runs `podman stop` and returns how long it took.
fn stop(container: &Container) -> Duration {
    let started = Instant::now();
    podman_ok(&["stop", "--time", STOP_GRACE_SECONDS, &container.name]);
    started.elapsed()
}

// ---------------------------------------------------------------------------
// Stop and kill

/// Child that records TERM, USR1 and real-time signals 34, 35 and 64 on
/// standard output. `wait` returns as soon as a trapped signal arrives,
/// so the trap runs at once.
const SIGNAL_CHILD: &str = r#"trap 'echo got-term; exit 7' TERM
trap 'echo got-usr1' USR1
for number in 34 35 64; do trap "echo got-$number" $number; done
echo ready
while :; do sleep 1000 & wait $!; done"#;

#[test]
fn podman_stop_reaches_child() {
    let image = Image::build("stop");
    let server = TestServer::start();
    let container = run_detached(&image, &server, "stop", SIGNAL_CHILD);
    let (ready, output) = wait_for_logs(&container, |logs| logs.contains("ready"));
    assert!(ready, "the child did not start:\n{output}");

    let took = stop(&container);
    let status = wait_exit_code(&container);
    let output = logs(&container);
    eprintln!("podman stop took {:.3} s", took.as_secs_f64());

    assert!(output.contains("got-term"), "SIGTERM did not reach the child:\n{output}");
    assert_eq!(status, 7, "the container exits with the child's status:\n{output}");
    assert_no_leak(&output);
}

#[test]
fn podman_kill_usr1_reaches_child() {
    let image = Image::build("kill");
    let server = TestServer::start();
    let container = run_detached(&image, &server, "kill", SIGNAL_CHILD);
    let (ready, output) = wait_for_logs(&container, |logs| logs.contains("ready"));
    assert!(ready, "the child did not start:\n{output}");

    podman_ok(&["kill", "--signal", "USR1", &container.name]);
    let (received, output) = wait_for_logs(&container, |logs| logs.contains("got-usr1"));
    assert!(received, "SIGUSR1 did not reach the child:\n{output}");
    podman_ok(&["kill", "--signal", "TERM", &container.name]);
    let status = wait_exit_code(&container);

    assert_eq!(status, 7, "logs:\n{}", logs(&container));
}

/// Real-time signals by number; 34 is SIGRTMIN for glibc programs and what
/// `podman kill --signal RTMIN` sends.
#[test]
fn podman_kill_real_time_signals() {
    let image = Image::build("kill-real-time");
    let server = TestServer::start();
    let container = run_detached(&image, &server, "kill-real-time", SIGNAL_CHILD);
    let (ready, output) = wait_for_logs(&container, |logs| logs.contains("ready"));
    assert!(ready, "the child did not start:\n{output}");

    let mut missing = Vec::new();
    for number in ["35", "64", "34"] {
        podman_ok(&["kill", "--signal", number, &container.name]);
        let expected = format!("got-{number}");
        let (received, _) = wait_for_logs(&container, |logs| logs.contains(&expected));
        if !received {
            missing.push(number);
        }
    }
    podman_ok(&["kill", "--signal", "TERM", &container.name]);
    let status = wait_exit_code(&container);
    let output = logs(&container);

    assert!(missing.is_empty(), "signals {missing:?} did not reach the child:\n{output}");
    assert_eq!(status, 7, "logs:\n{output}");
}

#[test]
fn stop_during_slow_fetch_exits_143() {
    let image = Image::build("stop-during-fetch");
    let server = TestServer::with_args(&["--delay", "list=10"]);
    let container = run_detached(&image, &server, "stop-during-fetch", "echo command-started");
    let in_flight = wait_until(WAIT_LIMIT, || server.api_paths().iter().any(|path| path.contains("/secrets")));
    assert!(in_flight, "the shim never asked for the secrets: {:?}\n{}", server.api_paths(), logs(&container));

    let took = stop(&container);
    let status = wait_exit_code(&container);
    let output = logs(&container);
    eprintln!("podman stop during a 10 s fetch took {:.3} s", took.as_secs_f64());

    assert_eq!(status, 143, "a stop during start-up exits 128 + SIGTERM:\n{output}");
    assert!(!output.contains("command-started"), "the command started although start-up was aborted:\n{output}");
    assert!(output.contains("SIGTERM"), "the log names the signal:\n{output}");
    assert_no_leak(&output);
}

// ---------------------------------------------------------------------------
// Reaping

/// Number of orphans in the storm.
const STORM: usize = 100;

/// Starts `STORM` orphans that each live 4 s (their parent subshell exits
/// at once), prints "storm PID..." with their pids, then waits for TERM.
const STORM_CHILD: &str = r#"trap 'exit 0' TERM
pids=
i=0
while [ "$i" -lt "$1" ]; do
    pids="$pids $( (sleep 4 >/dev/null 2>&1 & echo $!) )"
    i=$((i + 1))
done
echo "storm$pids"
while :; do sleep 1000 & wait $!; done"#;

/// Returns "PID STATE PPID" for every process in the container, read from
/// /proc inside it.
fn container_processes(container: &Container) -> Vec<(u32, char, u32)> {
    // The command name in /proc/PID/stat is in parentheses; the fields
    // after the last ") " are the state and the parent pid.
    let script = r#"for stat in /proc/[0-9]*/stat; do read -r line < "$stat" 2>/dev/null || continue; pid=${line%% *}; rest=${line##*) }; echo "$pid $rest"; done"#;
    let output = podman_ok(&["exec", &container.name, "sh", "-c", script]);
    text(&output.stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((fields.first()?.parse().ok()?, fields.get(1)?.chars().next()?, fields.get(2)?.parse().ok()?))
        })
        .collect()
}

#[test]
fn orphan_storm_leaves_no_zombie() {
    let image = Image::build("orphans");
    let server = TestServer::start();
    let container = Container { name: container_name("orphans") };
    let mut args: Vec<String> = vec!["run".into(), "--detach".into(), "--name".into(), container.name.clone()];
    args.extend(server_options(&server));
    args.extend([image.tag.clone(), "sh".into(), "-c".into(), STORM_CHILD.into(), "sh".into(), STORM.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    podman_ok(&args);

    let (started, output) = wait_for_logs(&container, |logs| logs.lines().any(|line| line.starts_with("storm ")));
    assert!(started, "the storm did not start:\n{output}");
    let orphans: Vec<u32> = output
        .lines()
        .find_map(|line| line.strip_prefix("storm "))
        .map(|pids| pids.split_whitespace().filter_map(|pid| pid.parse().ok()).collect())
        .unwrap_or_default();
    let snapshot = container_processes(&container);
    let adopted = orphans
        .iter()
        .filter(|pid| snapshot.iter().any(|(found, state, parent)| found == *pid && *parent == 1 && *state != 'Z'))
        .count();

    // Each orphan lives 4 s; wait until none is left, then look for zombies.
    let mut processes = Vec::new();
    let orphans_gone = wait_until(WAIT_LIMIT, || {
        processes = container_processes(&container);
        !processes.iter().any(|(pid, _, _)| orphans.contains(pid))
    });
    let zombies: Vec<&(u32, char, u32)> = processes.iter().filter(|(_, state, _)| *state == 'Z').collect();
    podman_ok(&["kill", "--signal", "TERM", &container.name]);
    let status = wait_exit_code(&container);

    assert_eq!(orphans.len(), STORM, "orphan pids printed by the child:\n{output}");
    // Orphans that already ended are not in the snapshot, so fewer than
    // all is possible on a slow machine, but most must show PID 1 as their
    // parent.
    assert!(adopted > STORM / 2, "only {adopted} of {STORM} orphans were children of PID 1: {snapshot:?}");
    assert!(orphans_gone, "orphans still in /proc after {WAIT_LIMIT:?}: {processes:?}");
    assert!(zombies.is_empty(), "zombies in the container: {zombies:?}");
    assert_eq!(status, 0, "logs:\n{}", logs(&container));
}

// ---------------------------------------------------------------------------
// Terminal

/// Opens a pseudo-terminal whose ends close on exec, so processes started
/// by other tests never hold them.
fn open_terminal() -> (OwnedFd, OwnedFd) {
    let pty = nix::pty::openpty(None::<&nix::pty::Winsize>, None::<&nix::sys::termios::Termios>).expect("openpty");
    for fd in [&pty.master, &pty.slave] {
        nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).expect("set FD_CLOEXEC");
    }
    (pty.master, pty.slave)
}

/// Sends each line read from `stream` to the returned channel, without
/// the carriage return a terminal adds.
fn lines_of(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        // The master ends with EIO once every slave is closed.
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if sender.send(line.trim_end_matches('\r').to_string()).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Returns the next line that contains `needle`, with the lines skipped
/// before it; `None` after `WAIT_LIMIT`.
fn next_containing(lines: &Receiver<String>, needle: &str, seen: &mut Vec<String>) -> Option<String> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).ok()?;
        seen.push(line.clone());
        if line.contains(needle) {
            return Some(line);
        }
    }
}

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
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `podman run -it` on a new pseudo-terminal, as from a terminal emulator:
/// Ctrl-C typed there reaches the child once, and the child's process
/// group is the container terminal's foreground group.
#[test]
fn tty_ctrl_c_reaches_child_once() {
    let image = Image::build("tty");
    let server = TestServer::start();
    let container = Container { name: container_name("tty") };
    // The child reports its pid, its group and the terminal's foreground
    // group, then records INT and USR1 and exits 5 on TERM.
    let script = r#"trap 'echo got-int' INT
trap 'echo got-usr1' USR1
trap 'echo got-term; exit 5' TERM
echo "ready $$ $(cut -d' ' -f5 /proc/$$/stat) $(cut -d' ' -f8 /proc/$$/stat)"
while :; do sleep 1000 & wait $!; done"#;

    let (master, slave) = open_terminal();
    let mut command = podman();
    command.args(["run", "--interactive", "--tty", "--name", &container.name]);
    command.args(server_options(&server));
    command.args([image.tag.as_str(), "sh", "-c", script]);
    command.stdin(Stdio::from(slave.try_clone().expect("dup the slave")));
    command.stdout(Stdio::from(slave.try_clone().expect("dup the slave")));
    command.stderr(Stdio::from(slave));
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
    let mut podman_run = command.spawn().expect("podman starts");
    // Close the slave ends held by `command`, so only podman has them.
    drop(command);
    let mut master = File::from(master);
    let lines = lines_of(master.try_clone().expect("dup the master"));
    let mut seen = Vec::new();

    let ready = next_containing(&lines, "ready", &mut seen);
    let ready_fields: Vec<u32> = ready
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    if ready_fields.len() != 3 {
        let _ = podman_run.kill();
        panic!("no ready line from the child: {seen:?}");
    }
    master.write_all(b"\x03").unwrap();
    let interrupted = next_containing(&lines, "got-int", &mut seen).is_some();
    podman_ok(&["kill", "--signal", "USR1", &container.name]);
    let usr1 = next_containing(&lines, "got-usr1", &mut seen).is_some();
    podman_ok(&["kill", "--signal", "TERM", &container.name]);
    let status = wait_status(&mut podman_run, PODMAN_LIMIT);
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(1)) {
        seen.push(line);
    }

    let (pid, group, foreground) = (ready_fields[0], ready_fields[1], ready_fields[2]);
    assert_eq!(group, pid, "the child leads its own process group: {seen:?}");
    assert_eq!(foreground, group, "the child's group is the terminal's foreground group: {seen:?}");
    assert!(interrupted, "Ctrl-C did not reach the child: {seen:?}");
    assert!(usr1, "SIGUSR1 did not reach the child: {seen:?}");
    let interrupts = seen.iter().filter(|line| line.contains("got-int")).count();
    assert_eq!(interrupts, 1, "Ctrl-C reached the child {interrupts} times: {seen:?}");
    assert!(seen.iter().any(|line| line.contains("got-term")), "{seen:?}");
    assert_eq!(status.code(), Some(5), "podman run exits with the child's status: {seen:?}");
}
