//! End to end in an image-like root, the way the binary runs in a
//! `FROM scratch` image. The static musl binary runs as PID 1 of a new PID
//! namespace whose root directory contains only the binary, a static busybox
//! and a check script. There is no /etc, so no CA bundle, resolver
//! configuration or user database. The test server is reached on 127.0.0.1
//! because the network namespace is shared.
//!
//! Skipped, with a message on stderr, when the musl target or
//! `/bin/busybox` (Debian's busybox-static) is missing.

mod util;
use util::*;

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
const BUSYBOX: &str = "/bin/busybox";

/// Runs as the shim's child inside the new root. Prints NAME=VALUE records,
/// each ended by a NUL byte so values with newlines come through intact.
const CHECK_SCRIPT: &str = r#"printf 'pid=%s\0' "$$"
printf 'parent=%s\0' "$PPID"
printf 'pid1_cmdline=%s\0' "$(tr '\000' ' ' < /proc/1/cmdline)"
printf 'API_KEY=%s\0' "$API_KEY"
printf 'MULTILINE_VALUE=%s\0' "$MULTILINE_VALUE"
printf 'UNICODE_VALUE=%s\0' "$UNICODE_VALUE"
printf 'client_secret_set=%s\0' "${INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET+yes}"
printf 'client_id_set=%s\0' "${INFISICAL_UNIVERSAL_AUTH_CLIENT_ID+yes}"
"#;

/// Returns true when the standard library for `MUSL_TARGET` is installed.
fn musl_target_installed() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc).args(["--print", "target-libdir", "--target", MUSL_TARGET]).output() else {
        return false;
    };
    output.status.success() && Path::new(text(&output.stdout).trim()).is_dir()
}

/// Builds the release binary for `MUSL_TARGET` and returns its path, read
/// from cargo's JSON messages so a configured target directory is honored.
fn build_static_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--release", "--bin", "infisical-init", "--message-format=json", "--target", MUSL_TARGET])
        .current_dir(repository())
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo build --release --target {MUSL_TARGET} failed:\n{}", text(&output.stderr));
    let executable = text(&output.stdout).lines().find_map(|line| {
        let message: serde_json::Value = serde_json::from_str(line).ok()?;
        if message["reason"] != "compiler-artifact" || message["target"]["name"] != "infisical-init" {
            return None;
        }
        message["executable"].as_str().map(PathBuf::from)
    });
    executable.expect("cargo reports the path of the built binary")
}

/// Creates the root directory: /infisical-init, /bin/busybox with the
/// applets the script uses, /check.sh, and an empty /proc for the
/// namespace's procfs.
fn build_root(binary: &Path) -> PathBuf {
    let root = temp_dir("scratch-root");
    std::fs::copy(binary, root.join("infisical-init")).expect("copy the binary");
    std::fs::create_dir(root.join("bin")).expect("create /bin");
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "tr"] {
        symlink("busybox", root.join("bin").join(applet)).expect("link a busybox applet");
    }
    std::fs::create_dir(root.join("proc")).expect("create /proc");
    write_file(&root.join("check.sh"), CHECK_SCRIPT);
    root
}

/// Splits the script's NUL-ended NAME=VALUE records.
fn parse_records(stdout: &[u8]) -> HashMap<String, Vec<u8>> {
    stdout
        .split(|&byte| byte == 0)
        .filter(|record| !record.is_empty())
        .map(|record| {
            let equals = record.iter().position(|&byte| byte == b'=').expect("NAME=VALUE record");
            (text(&record[..equals]), record[equals + 1..].to_vec())
        })
        .collect()
}

#[test]
fn static_binary_runs_as_pid1_in_empty_root() {
    if !musl_target_installed() {
        eprintln!("SKIPPED: the {MUSL_TARGET} target is not installed (rustup target add {MUSL_TARGET})");
        return;
    }
    if !Path::new(BUSYBOX).is_file() {
        eprintln!("SKIPPED: {BUSYBOX} is missing (apt-get install busybox-static)");
        return;
    }
    let binary = build_static_binary();
    let root = build_root(&binary);
    assert!(!root.join("etc").exists(), "the root has no /etc");

    let server = TestServer::start();
    let template = shim_for(&server);
    let mut command = Command::new("unshare");
    command.env_clear();
    for (name, value) in template.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    // PATH is resolved inside the new root, where only /bin exists.
    command.env("PATH", "/bin");
    command.stdin(Stdio::null());
    command.args(["--pid", "--fork", "--mount-proc"]);
    command.arg(format!("--root={}", root.display()));
    command.args(["/infisical-init", "run", "--", "/bin/sh", "/check.sh"]);
    let output = run(&mut command);
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");

    let records = parse_records(&output.stdout);
    let record = |name: &str| -> Vec<u8> {
        records.get(name).cloned().unwrap_or_else(|| panic!("no {name} record in {:?}", text(&output.stdout)))
    };
    // The shim's threads take pids in the namespace too, so the child's
    // own pid is not always 2. Its parent must be PID 1.
    assert_eq!(record("parent"), b"1", "the child's parent is PID 1");
    assert_eq!(text(&record("pid1_cmdline")), "/infisical-init run -- /bin/sh /check.sh ", "PID 1 is the shim");
    assert_eq!(record("API_KEY"), b"dev-api-key-123");
    assert_eq!(record("MULTILINE_VALUE"), b"-----BEGIN KEY-----\nline2\nline3\n-----END KEY-----");
    assert_eq!(record("UNICODE_VALUE"), "héllo wörld — ünïcødé ✓ 日本語 🚀".as_bytes());
    assert_eq!(record("client_secret_set"), b"", "the child sees INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET");
    assert_eq!(record("client_id_set"), b"", "the child sees INFISICAL_UNIVERSAL_AUTH_CLIENT_ID");
    assert_no_leak(&stderr);

    // The root contains a copy of the binary and of busybox, about 4 MB.
    let _ = std::fs::remove_dir_all(&root);
}
