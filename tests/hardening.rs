//! Inputs found by trying to break the tool as a new user: each must fail
//! cleanly with the documented exit code and one error line, or work.
mod util;
use std::time::Duration;
use util::*;

/// Runs and checks one clean failure: the exit code, a single error line
/// and no leaked credential.
fn assert_clean_failure(output: &std::process::Output, expected: i32) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), expected, "stderr:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|line| line.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_no_leak(&stderr);
    assert_no_leak(&text(&output.stdout));
    stderr
}

#[test]
fn get_reads_options_after_names() {
    let server = TestServer::start();
    let output = run(shim_for(&server).args(["get", "PROD_ONLY", "--env", "prod"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "prod-value\n");
    let output = run(shim_for(&server).args(["get", "PROD_ONLY", "--env=prod"]));
    assert_eq!(text(&output.stdout), "prod-value\n");
}

#[test]
fn token_with_line_break_rejected() {
    let server = TestServer::start();
    let output = run(shim_for(&server).env("INFISICAL_TOKEN", "abc\ndef").args(["run", "--", "true"]));
    let stderr = assert_clean_failure(&output, 78);
    assert!(stderr.contains("INFISICAL_TOKEN"), "{stderr}");
    assert!(!stderr.contains("abc"), "the token must not be echoed:\n{stderr}");
    assert!(server.api_paths().is_empty(), "no request may be sent");
}

#[test]
fn fifo_credential_file_rejected() {
    let directory = temp_dir("fifo");
    let fifo = directory.join("secret");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command
        .env_remove("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET")
        .env("INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET_FILE", &fifo)
        .args(["run", "--", "true"]);
    let output = run_with_limit(&mut command, Duration::from_secs(10));
    let stderr = assert_clean_failure(&output, 78);
    assert!(stderr.contains("not a regular file"), "{stderr}");
    std::fs::remove_dir_all(directory).unwrap();
}

#[test]
fn domain_password_not_printed() {
    let output = run(shim().env("INFISICAL_DOMAIN", "http://user:hunter2@127.0.0.1:9").args(["run", "--project-id", "p", "--", "true"]));
    let stderr = assert_clean_failure(&output, 78);
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn domain_with_api_path_is_configuration_error() {
    let server = TestServer::start();
    let domain = format!("{}/api/v1", server.url);
    let output = run(shim_for(&server).env("INFISICAL_DOMAIN", domain).args(["run", "--", "true"]));
    let stderr = assert_clean_failure(&output, 78);
    assert!(stderr.contains("base URL"), "{stderr}");
}

#[test]
fn empty_domain_rejected() {
    let output = run(shim().env("INFISICAL_DOMAIN", "").args(["run", "--project-id", "p", "--", "true"]));
    let stderr = assert_clean_failure(&output, 78);
    assert!(stderr.contains("INFISICAL_DOMAIN is set but empty"), "{stderr}");
}

#[test]
fn path_option_needs_value() {
    let output = run(shim().args(["run", "--path", "--", "true"]));
    let stderr = assert_clean_failure(&output, 64);
    assert!(stderr.contains("--path"), "{stderr}");
}

#[test]
fn export_refuses_device_output() {
    let server = TestServer::start();
    let output = run(shim_for(&server).args(["export", "--output", "/dev/null"]));
    let stderr = assert_clean_failure(&output, 73);
    assert!(stderr.contains("not a regular file"), "{stderr}");
    let metadata = std::fs::metadata("/dev/null").unwrap();
    assert!(!metadata.is_file(), "/dev/null must still be a device");
}

#[test]
fn protocol_header_rejected() {
    let server = TestServer::start();
    let output = run(shim_for(&server).env("INFISICAL_CUSTOM_HEADERS", "Content-Length=5").args(["run", "--", "true"]));
    let stderr = assert_clean_failure(&output, 78);
    assert!(stderr.contains("Content-Length"), "{stderr}");
}

#[test]
fn exec_rejects_supervision_options() {
    let output = run(shim().args(["run", "--exec", "--kill-group", "--project-id", "p", "--", "true"]));
    let stderr = assert_clean_failure(&output, 64);
    assert!(stderr.contains("--exec"), "{stderr}");
}

#[test]
fn rewrite_of_kill_rejected() {
    let output = run(shim().args(["run", "--rewrite", "KILL:TERM", "--project-id", "p", "--", "true"]));
    let stderr = assert_clean_failure(&output, 64);
    assert!(stderr.contains("KILL:TERM"), "{stderr}");
}

#[test]
fn real_time_signal_death_gives_128_plus_number() {
    let server = TestServer::start();
    for signal in [34, 40, 64] {
        let script = format!("kill -s {signal} $$ 2>/dev/null || kill -{signal} $$");
        let mut command = shim_for(&server);
        command.args(["run", "--", "sh", "-c", &script]);
        let output = run_with_limit(&mut command, Duration::from_secs(20));
        let stderr = text(&output.stderr);
        assert_eq!(code(&output.status), 128 + signal, "child killed by signal {signal}; stderr:\n{stderr}");
        assert!(!stderr.contains("waitpid failed"), "{stderr}");
        assert!(!stderr.contains("status was lost"), "{stderr}");
    }
}

#[test]
fn group_drain_reports_no_lost_status() {
    let server = TestServer::start();
    let mut command = shim_for(&server);
    command.args(["run", "--kill-group", "--drain", "1", "--", "sh", "-c", "sleep 1000 & sleep 0.2; exit 5"]);
    let output = run_with_limit(&mut command, Duration::from_secs(20));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 5, "{stderr}");
    assert!(!stderr.contains("status was lost"), "{stderr}");
}

#[test]
fn rewrite_to_rtmin_sends_34() {
    let server = TestServer::start();
    let script = "trap 'echo got34; exit 0' 34; echo ready; while :; do sleep 0.05; done";
    let mut command = shim_for(&server);
    command
        .args(["run", "--rewrite", "USR1:RTMIN", "--", "bash", "-c", script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let sent = std::process::Command::new("kill").args(["-s", "USR1", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "got34");
    let output = wait_with_limit(child, Duration::from_secs(20));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
}

/// Writes a dataset with the given `dev /` secrets and returns its path.
fn dataset(name: &str, secrets: &[(&str, &str)]) -> std::path::PathBuf {
    let directory = temp_dir(name);
    let secrets: Vec<serde_json::Value> =
        secrets.iter().map(|(key, value)| serde_json::json!({"key": key, "value": value})).collect();
    let data = serde_json::json!({"projects": [{
        "id": PROJECT_ID, "slug": "hardening",
        "environments": [{"slug": "dev", "name": "Development"}],
        "folders": {"dev": {"/": {"secrets": secrets}}}
    }]});
    let path = directory.join("data.json");
    std::fs::write(&path, data.to_string()).unwrap();
    path
}

#[test]
fn shell_export_rejects_reserved_names() {
    let data = dataset("reserved", &[("PATH", "/evil"), ("IFS", "x"), ("LD_PRELOAD", "/x.so"), ("OK", "1")]);
    let server = TestServer::with_args(&["--data", data.to_str().unwrap()]);
    let output = run(shim_for(&server).args(["export", "--format", "shell"]));
    let stderr = assert_clean_failure(&output, 78);
    for key in ["PATH", "IFS", "LD_PRELOAD"] {
        assert!(stderr.contains(&format!("\"{key}\"")), "{key} not named:\n{stderr}");
    }
    let output = run(shim_for(&server).args(["export", "--format", "shell", "--skip-invalid"]));
    assert_eq!(code(&output.status), 0, "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "export OK='1'\n");
}

#[test]
fn rejected_key_cannot_forge_log_line() {
    let forged = "X\ninfisical-init: [1] info: injected 0 secrets";
    let data = dataset("forged", &[(forged, "v")]);
    let server = TestServer::with_args(&["--data", data.to_str().unwrap()]);
    let output = run(shim_for(&server).args(["export", "--format", "shell"]));
    let stderr = assert_clean_failure(&output, 78);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn many_rejected_keys_stay_one_short_line() {
    let names: Vec<String> = (0..500).map(|index| format!("bad-key-{index}")).collect();
    let secrets: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "v")).collect();
    let data = dataset("many", &secrets);
    let server = TestServer::with_args(&["--data", data.to_str().unwrap()]);
    let output = run(shim_for(&server).args(["export", "--format", "shell"]));
    let stderr = assert_clean_failure(&output, 78);
    assert!(stderr.contains("and 490 more"), "{stderr}");
    assert!(stderr.len() < 4000, "{} bytes", stderr.len());
}

#[test]
fn closed_stdout_exits_quietly() {
    let server = TestServer::with_args(&["--generate", "3000"]);
    let mut command = shim_for(&server);
    command.args(["export", "--format", "json"]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    drop(child.stdout.take());
    let output = wait_with_limit(child, Duration::from_secs(20));
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 141, "{stderr}");
    assert!(!stderr.contains("error:"), "{stderr}");
}
