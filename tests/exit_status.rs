//! Exit status of `run`. The child's own code passes through and a death by
//! signal N gives 128 + N. A command that cannot be started gives 127 (not
//! found) or 126 (not executable), in the supervising and the `--exec` mode.

mod util;
use util::*;

use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};
use std::time::Duration;

/// Runs `sh -c SCRIPT` under the shim against `server`.
fn run_shell(server: &TestServer, script: &str) -> Output {
    run(shim_for(server).args(["run", "--", "sh", "-c", script]))
}

#[test]
fn common_exit_codes_pass_through() {
    let server = TestServer::start();
    for expected in [0, 1, 2, 126, 127, 255] {
        let output = run_shell(&server, &format!("exit {expected}"));
        let stderr = text(&output.stderr);
        assert_eq!(code(&output.status), expected, "child exited {expected}; stderr:\n{stderr}");
        assert_no_leak(&stderr);
    }
}

/// Exit codes spread over 0..=255, including every code the shim uses for
/// its own failures, which the child's code must never be mistaken for. All
/// 256 codes took about 7 s on a 2-CPU machine (four runs at a time), so
/// this test covers a spread instead.
const SPREAD: &[i32] =
    &[3, 4, 8, 16, 32, 63, 64, 65, 66, 69, 73, 77, 78, 100, 125, 128, 129, 130, 137, 143, 165, 192, 200, 254];

#[test]
fn spread_of_exit_codes_passes_through() {
    let server = TestServer::start();
    for &expected in SPREAD {
        let output = run_shell(&server, &format!("exit {expected}"));
        assert_eq!(code(&output.status), expected, "child exited {expected}; stderr:\n{}", text(&output.stderr));
    }
}

#[test]
fn death_by_signal_gives_128_plus_number() {
    let server = TestServer::start();
    // Numbers on Linux for x86 and ARM (MIPS, SPARC and Alpha differ).
    let cases =
        [("TERM", 15), ("INT", 2), ("HUP", 1), ("QUIT", 3), ("USR1", 10), ("USR2", 12), ("KILL", 9), ("SEGV", 11)];
    for (name, number) in cases {
        // `ulimit -c 0` keeps SIGQUIT and SIGSEGV from writing a core file.
        let output = run_shell(&server, &format!("ulimit -c 0; kill -s {name} $$"));
        assert_eq!(code(&output.status), 128 + number, "child killed by SIG{name}; stderr:\n{}", text(&output.stderr));
    }
}

#[test]
fn missing_command_gives_127() {
    let server = TestServer::start();
    let output = run(shim_for(&server).args(["run", "--", "no-such-command-4f1c"]));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 127, "stderr:\n{stderr}");
    assert!(stderr.contains("no-such-command-4f1c"), "the message names the command:\n{stderr}");
    assert!(stderr.contains("not found"), "the message says what failed:\n{stderr}");
    assert_no_leak(&stderr);
}

#[test]
fn missing_path_gives_127() {
    let server = TestServer::start();
    let missing = temp_dir("missing-path").join("absent");
    let output = run(shim_for(&server).arg("run").arg("--").arg(&missing));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 127, "stderr:\n{stderr}");
    assert!(stderr.contains(&*missing.to_string_lossy()), "the message names the path:\n{stderr}");
}

#[test]
fn file_without_execute_permission_gives_126() {
    let server = TestServer::start();
    let script = temp_dir("not-executable").join("script.sh");
    write_file(&script, "#!/bin/sh\nexit 0\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let output = run(shim_for(&server).arg("run").arg("--").arg(&script));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 126, "stderr:\n{stderr}");
    assert!(stderr.contains(&*script.to_string_lossy()), "the message names the file:\n{stderr}");
}

#[test]
fn directory_as_command_gives_126() {
    let server = TestServer::start();
    let directory = temp_dir("directory-command");
    let output = run(shim_for(&server).arg("run").arg("--").arg(&directory));
    assert_eq!(code(&output.status), 126, "stderr:\n{}", text(&output.stderr));
}

#[test]
fn exec_mode_replaces_shim() {
    let server = TestServer::start();
    let child = shim_for(&server)
        .args(["run", "--exec", "--", "sh", "-c", "echo $$; exit 7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let shim_pid = child.id();
    let output = wait_with_limit(child, Duration::from_secs(30));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.trim(), shim_pid.to_string(), "the command runs in the shim's process");
    assert_eq!(code(&output.status), 7, "stderr:\n{}", text(&output.stderr));
}

#[test]
fn exec_mode_passes_signal_death() {
    let server = TestServer::start();
    let output = run(shim_for(&server).args(["run", "--exec", "--", "sh", "-c", "kill -s USR1 $$"]));
    let signal = std::os::unix::process::ExitStatusExt::signal(&output.status);
    // Once replaced, the process dies from the signal itself, because no
    // shim code is left to turn it into 138.
    assert_eq!(signal, Some(10), "status {:?}; stderr:\n{}", output.status, text(&output.stderr));
}

#[test]
fn exec_mode_missing_command_gives_127() {
    let server = TestServer::start();
    let output = run(shim_for(&server).args(["run", "--exec", "--", "no-such-command-4f1c"]));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 127, "stderr:\n{stderr}");
    assert!(stderr.contains("no-such-command-4f1c"), "the message names the command:\n{stderr}");
}
