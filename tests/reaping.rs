//! Init duties of `run`: reaping orphaned zombies as PID 1 of a PID
//! namespace, adopting them as a child subreaper when not PID 1, exiting
//! with the child without waiting for its descendants, and leaving the
//! caller's working directory to the child.
//!
//! `tests/scripts/orphans.sh` creates orphans, kills them and prints how
//! many zombies its parent (the init) still has. Its header describes the
//! output lines.

mod util;
use util::*;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const ORPHANS: usize = 5;

fn orphans_script() -> PathBuf {
    repository().join("tests/scripts/orphans.sh")
}

/// The numbers `orphans.sh` printed: each orphan's parent pid, the orphans
/// never reaped, the zombies left among the init's children, and the
/// zombies in all of /proc.
struct OrphanReport {
    parents: Vec<u32>,
    unreaped: usize,
    zombies: usize,
    zombies_total: usize,
}

fn parse_report(output: &Output) -> OrphanReport {
    let stdout = text(&output.stdout);
    let mut report =
        OrphanReport { parents: Vec::new(), unreaped: usize::MAX, zombies: usize::MAX, zombies_total: usize::MAX };
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["orphan", _, "parent", parent] => report.parents.push(parent.parse().expect("parent pid")),
            ["unreaped", count] => report.unreaped = count.parse().expect("orphan count"),
            ["zombies", count] => report.zombies = count.parse().expect("zombie count"),
            ["zombies-total", count] => report.zombies_total = count.parse().expect("zombie count"),
            _ => panic!("unexpected line from orphans.sh: {line:?}\n{stdout}"),
        }
    }
    assert_eq!(report.parents.len(), ORPHANS, "orphans.sh output:\n{stdout}\nstderr:\n{}", text(&output.stderr));
    report
}

#[test]
fn pid1_reaps_orphaned_zombies() {
    let server = TestServer::start();
    let output = run(in_pid_namespace(&server, binary())
        .args(["run", "--", "sh"])
        .arg(orphans_script())
        .args([ORPHANS.to_string(), "100".to_string()]));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");

    let report = parse_report(&output);
    assert!(
        report.parents.iter().all(|&parent| parent == 1),
        "orphans re-parent to the shim as PID 1: {:?}",
        report.parents
    );
    assert_eq!(report.unreaped, 0, "orphans the shim never reaped");
    assert_eq!(report.zombies, 0, "zombies left among the shim's children");
    assert_eq!(report.zombies_total, 0, "zombies left in the namespace");
    assert_no_leak(&stderr);
}

/// Shows that the check above can fail: the same script under a PID 1 that
/// waits only for its own child (Python's `subprocess.call`) leaves every
/// orphan a zombie.
#[test]
fn non_reaping_pid1_leaves_zombies() {
    let server = TestServer::start();
    let output = run(in_pid_namespace(&server, "python3")
        .args(["-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))", "sh"])
        .arg(orphans_script())
        .args([ORPHANS.to_string(), "10".to_string()]));
    assert_eq!(code(&output.status), 0, "stderr:\n{}", text(&output.stderr));

    let report = parse_report(&output);
    assert!(report.parents.iter().all(|&parent| parent == 1), "{:?}", report.parents);
    assert_eq!(report.unreaped, ORPHANS, "a non-reaping PID 1 leaves every orphan in /proc");
    assert_eq!(report.zombies, ORPHANS, "a non-reaping PID 1 keeps every orphan as a zombie");
}

#[test]
fn subreaper_adopts_and_reaps_orphans() {
    let server = TestServer::start();
    let shim = shim_for(&server)
        .args(["run", "--", "sh"])
        .arg(orphans_script())
        .args([ORPHANS.to_string(), "100".to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let shim_pid = shim.id();
    let output = wait_with_limit(shim, Duration::from_secs(30));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");

    let report = parse_report(&output);
    assert_ne!(shim_pid, 1);
    assert!(
        report.parents.iter().all(|&parent| parent == shim_pid),
        "orphans re-parent to the shim (pid {shim_pid}), not to the host's init: {:?}",
        report.parents
    );
    assert_eq!(report.unreaped, 0, "orphans the shim never reaped");
    assert_eq!(report.zombies, 0, "zombies left among the shim's children");
}

#[test]
fn shim_exits_without_waiting_for_descendants() {
    let server = TestServer::start();
    // The background sleep outlives the child. Its output goes to
    // /dev/null so that reading the shim's output does not wait for it.
    let output = run_with_limit(
        shim_for(&server).args(["run", "--", "sh", "-c", "sleep 30 >/dev/null 2>&1 & echo $!; exit 3"]),
        Duration::from_secs(10),
    );
    let stdout = text(&output.stdout);
    let straggler: u32 = stdout.trim().parse().unwrap_or_else(|_| panic!("unexpected output: {stdout:?}"));
    let still_running = Path::new(&format!("/proc/{straggler}")).exists();
    let _ = Command::new("sh").args(["-c", &format!("kill {straggler}")]).status();

    assert_eq!(code(&output.status), 3, "stderr:\n{}", text(&output.stderr));
    assert!(still_running, "the background process ended before the shim exited");
}

/// Returns the target of `/proc/PID/cwd`.
fn working_directory(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_else(|error| panic!("read /proc/{pid}/cwd: {error}"))
}

#[test]
fn shim_leaves_working_directory() {
    let server = TestServer::start();
    let directory = temp_dir("working-directory").canonicalize().expect("canonical path");
    let mut shim = shim_for(&server)
        .args(["run", "--", "sh", "-c", "echo ready $$; exec sleep 30"])
        .current_dir(&directory)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let shim_pid = shim.id();
    let mut ready = String::new();
    let stdout = shim.stdout.take().expect("stdout is piped");
    BufReader::new(stdout).read_line(&mut ready).expect("read the ready line");
    let child_pid: u32 = ready
        .strip_prefix("ready ")
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected line from the child: {ready:?}"));

    // The shim changes directory just after starting the child, so the
    // child may report ready first.
    let shim_left = wait_until(Duration::from_secs(5), || working_directory(shim_pid) == Path::new("/"));
    let shim_directory = working_directory(shim_pid);
    let child_directory = working_directory(child_pid);

    let status = Command::new("sh").args(["-c", &format!("kill -s TERM {shim_pid}")]).status().expect("sh runs");
    assert!(status.success(), "kill -s TERM {shim_pid} failed");
    let output = wait_with_limit(shim, Duration::from_secs(10));

    assert!(shim_left, "the shim's working directory is {shim_directory:?}, expected /");
    assert_eq!(child_directory, directory, "the child keeps the caller's working directory");
    assert_eq!(code(&output.status), 143, "SIGTERM forwarded to sleep; stderr:\n{}", text(&output.stderr));
}
