//! TLS: the test server serves HTTPS with certificates that rcgen issues in
//! each test from a throw-away CA. A CA passed with `--ca-cert` or
//! `INFISICAL_CA_CERT_FILE` is trusted; an unknown issuer, an expired
//! certificate and a host name mismatch each fail with exit 69 and a message
//! saying which, after one attempt; a CA file that is missing or contains no
//! PEM certificate is a configuration error (78). Every server binds to
//! 127.0.0.1, and every domain names 127.0.0.1.
mod util;
use util::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The `--timeout` of every run: long enough for several retries, so that
/// a certificate failure that were retried shows more than one attempt.
const TIMEOUT: &str = "5";
/// Catches hangs only.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// A temporary directory of certificate files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(temp_dir(&format!("tls-{name}")))
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        write_file(&path, contents);
        path
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

/// A certificate authority that issues server certificates.
struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Authority {
    fn new(common_name: &str) -> Authority {
        let key = KeyPair::generate().expect("an ECDSA key is generated");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let pem = params.self_signed(&key).expect("the CA certificate is signed").pem();
        Authority { params, key, pem }
    }

    /// Issues a server certificate for `names` (DNS names or IP addresses),
    /// valid from `not_before` to `not_after` (year, month, day). Returns the
    /// certificate and its key in PEM.
    fn issue(&self, names: &[&str], not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (String, String) {
        let key = KeyPair::generate().expect("an ECDSA key is generated");
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("server certificate parameters");
        params.distinguished_name.push(DnType::CommonName, "infisical-init test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let certificate = params.signed_by(&key, &issuer).expect("the server certificate is signed");
        (certificate.pem(), key.serialize_pem())
    }
}

const VALID_FROM: (i32, u8, u8) = (2020, 1, 1);
const VALID_UNTIL: (i32, u8, u8) = (2200, 1, 1);

/// Starts the test server with HTTPS, using a certificate for `names` from
/// `authority`.
fn https_server(scratch: &Scratch, authority: &Authority, names: &[&str], valid: ((i32, u8, u8), (i32, u8, u8))) -> TestServer {
    let (certificate, key) = authority.issue(names, valid.0, valid.1);
    let certificate_path = scratch.write("server.pem", &certificate);
    let key_path = scratch.write("server-key.pem", &key);
    let server = TestServer::with_args(&[
        "--tls-cert",
        certificate_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    assert!(server.url.starts_with("https://127.0.0.1:"), "an HTTPS URL: {}", server.url);
    server
}

/// Returns the paths of the `/api/` requests the HTTPS server logged. The
/// control request uses Python's ssl module without verification, because it
/// only reads the test's own server, whose certificate may be deliberately
/// broken.
fn https_api_paths(server: &TestServer) -> Vec<String> {
    let script = "import json, ssl, sys, urllib.request\n\
                  context = ssl._create_unverified_context()\n\
                  with urllib.request.urlopen(sys.argv[1] + '/__test/requests', context=context, timeout=10) as response:\n\
                  \x20   print(json.dumps([entry['path'] for entry in json.load(response)]))\n";
    let output = Command::new("python3")
        .args(["-c", script, &server.url])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "reading the request log failed: {}", text(&output.stderr));
    let paths: Vec<String> = serde_json::from_slice(&output.stdout).expect("a JSON list of paths");
    paths.into_iter().filter(|path| path.starts_with("/api/")).collect()
}

/// The outcome of one `run` whose child prints `$API_KEY` and creates a
/// marker file.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    child_started: bool,
}

impl Outcome {
    fn error_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|line| line.contains("] error: ")).collect()
    }

    /// Returns how many attempts the debug log shows for the login request.
    fn login_attempts(&self) -> usize {
        self.stderr
            .lines()
            .filter(|line| line.contains("universal-auth/login (attempt "))
            .count()
    }
}

/// Runs `infisical-init run --log-level debug EXTRA -- sh -c ...` against
/// `server`.
fn run_against(server: &TestServer, scratch: &Scratch, extra: &[&str], env: &[(&str, &Path)]) -> Outcome {
    let marker = scratch.marker();
    let mut command = shim_for(server);
    command.envs(env.iter().map(|(name, path)| (*name, path.as_os_str())));
    command
        .args(["run", "--log-level", "debug", "--timeout", TIMEOUT])
        .args(extra)
        .args(["--", "sh", "-c", "touch \"$0\"; printf %s \"$API_KEY\""])
        .arg(&marker);
    let output = run_with_limit(&mut command, RUN_LIMIT);
    Outcome {
        code: code(&output.status),
        stdout: text(&output.stdout),
        stderr: text(&output.stderr),
        child_started: marker.exists(),
    }
}

fn assert_succeeded(outcome: &Outcome, server: &TestServer) {
    assert_eq!(outcome.code, 0, "stderr:\n{}", outcome.stderr);
    assert!(outcome.child_started, "the child did not start");
    assert_eq!(outcome.stdout, "dev-api-key-123", "the child received the secret over TLS");
    assert_no_leak(&outcome.stderr);
    let paths = https_api_paths(server);
    assert_eq!(paths, ["/api/v1/auth/universal-auth/login", "/api/v4/secrets"], "one login and one listing over HTTPS");
}

/// Checks a certificate failure: exit 69, one error line with every part of
/// `expected`, one attempt, no request reached the server, no child.
fn assert_certificate_rejected(outcome: &Outcome, server: &TestServer, expected: &[&str]) {
    let context = format!("stderr:\n{}", outcome.stderr);
    assert_eq!(outcome.code, 69, "{context}");
    assert!(!outcome.child_started, "the child was started; {context}");
    assert_eq!(outcome.stdout, "", "{context}");
    assert_no_leak(&outcome.stderr);

    let errors = outcome.error_lines();
    assert_eq!(errors.len(), 1, "one error line; {context}");
    assert!(errors[0].starts_with("infisical-init: "), "{context}");
    assert!(errors[0].contains("failed to log in"), "names the step; {context}");
    assert!(errors[0].contains(&server.url), "names the URL; {context}");
    for part in expected {
        assert!(errors[0].contains(part), "error line lacks {part:?}; {context}");
    }

    assert_eq!(outcome.login_attempts(), 1, "a certificate failure is not retried; {context}");
    assert!(!outcome.stderr.contains("retrying in"), "a certificate failure is not retried; {context}");
    assert!(!errors[0].contains("gave up after"), "{context}");
    assert!(https_api_paths(server).is_empty(), "no HTTP request got through the handshake");
}

#[test]
fn private_ca_trusted_with_flag() {
    let scratch = Scratch::new("flag");
    let authority = Authority::new("infisical-init test CA");
    let server = https_server(&scratch, &authority, &["127.0.0.1", "localhost"], (VALID_FROM, VALID_UNTIL));
    let ca = scratch.write("ca.pem", &authority.pem);

    let outcome = run_against(&server, &scratch, &["--ca-cert", ca.to_str().unwrap()], &[]);
    assert_succeeded(&outcome, &server);
}

#[test]
fn private_ca_trusted_with_variable() {
    let scratch = Scratch::new("variable");
    let authority = Authority::new("infisical-init test CA");
    let server = https_server(&scratch, &authority, &["127.0.0.1", "localhost"], (VALID_FROM, VALID_UNTIL));
    let ca = scratch.write("ca.pem", &authority.pem);

    let outcome = run_against(&server, &scratch, &[], &[("INFISICAL_CA_CERT_FILE", &ca)]);
    assert_succeeded(&outcome, &server);
}

#[test]
fn private_ca_found_in_bundle() {
    let scratch = Scratch::new("bundle");
    let authority = Authority::new("infisical-init test CA");
    let unrelated = Authority::new("unrelated CA");
    let server = https_server(&scratch, &authority, &["127.0.0.1", "localhost"], (VALID_FROM, VALID_UNTIL));
    let bundle = scratch.write("bundle.pem", &format!("{}{}", unrelated.pem, authority.pem));

    let outcome = run_against(&server, &scratch, &["--ca-cert", bundle.to_str().unwrap()], &[]);
    assert_succeeded(&outcome, &server);
}

#[test]
fn untrusted_certificate_rejected() {
    let scratch = Scratch::new("untrusted");
    let authority = Authority::new("infisical-init test CA");
    let server = https_server(&scratch, &authority, &["127.0.0.1", "localhost"], (VALID_FROM, VALID_UNTIL));

    let outcome = run_against(&server, &scratch, &[], &[]);
    assert_certificate_rejected(&outcome, &server, &["not trusted", "--ca-cert"]);
}

#[test]
fn other_ca_not_trusted() {
    let scratch = Scratch::new("other-ca");
    let authority = Authority::new("infisical-init test CA");
    let unrelated = Authority::new("unrelated CA");
    let server = https_server(&scratch, &authority, &["127.0.0.1", "localhost"], (VALID_FROM, VALID_UNTIL));
    let other = scratch.write("other.pem", &unrelated.pem);

    let outcome = run_against(&server, &scratch, &["--ca-cert", other.to_str().unwrap()], &[]);
    assert_certificate_rejected(&outcome, &server, &["not trusted", "--ca-cert"]);
}

#[test]
fn expired_certificate_rejected() {
    let scratch = Scratch::new("expired");
    let authority = Authority::new("infisical-init test CA");
    let server = https_server(&scratch, &authority, &["127.0.0.1", "localhost"], ((2000, 1, 1), (2001, 1, 1)));
    let ca = scratch.write("ca.pem", &authority.pem);

    let outcome = run_against(&server, &scratch, &["--ca-cert", ca.to_str().unwrap()], &[]);
    assert_certificate_rejected(&outcome, &server, &["expired"]);
}

#[test]
fn host_name_mismatch_rejected() {
    let scratch = Scratch::new("mismatch");
    let authority = Authority::new("infisical-init test CA");
    // Issued for example.test only; the client still connects to 127.0.0.1.
    let server = https_server(&scratch, &authority, &["example.test"], (VALID_FROM, VALID_UNTIL));
    let ca = scratch.write("ca.pem", &authority.pem);

    let outcome = run_against(&server, &scratch, &["--ca-cert", ca.to_str().unwrap()], &[]);
    assert_certificate_rejected(&outcome, &server, &["does not match its host name"]);
}

/// Checks that a bad `--ca-cert` file is exit 78 with a line naming the file,
/// before any request.
fn assert_bad_ca_file(name: &str, contents: Option<&str>, via_variable: bool, expected: &str) {
    let scratch = Scratch::new(name);
    let authority = Authority::new("infisical-init test CA");
    let server = https_server(&scratch, &authority, &["127.0.0.1", "localhost"], (VALID_FROM, VALID_UNTIL));
    let path = match contents {
        Some(contents) => scratch.write("ca.pem", contents),
        None => scratch.0.join("missing-ca.pem"),
    };

    let outcome = if via_variable {
        run_against(&server, &scratch, &[], &[("INFISICAL_CA_CERT_FILE", &path)])
    } else {
        run_against(&server, &scratch, &["--ca-cert", path.to_str().unwrap()], &[])
    };
    let context = format!("case {name}: stderr:\n{}", outcome.stderr);

    assert_eq!(outcome.code, 78, "{context}");
    assert!(!outcome.child_started, "{context}");
    let errors = outcome.error_lines();
    assert_eq!(errors.len(), 1, "{context}");
    assert!(errors[0].contains("invalid CA certificate file"), "{context}");
    assert!(errors[0].contains(path.to_str().unwrap()), "names the file; {context}");
    assert!(errors[0].contains(expected), "error line lacks {expected:?}; {context}");
    assert_no_leak(&outcome.stderr);
    assert!(https_api_paths(&server).is_empty(), "no request before the configuration is valid; {context}");
}

#[test]
fn missing_ca_file_is_config_error() {
    assert_bad_ca_file("missing-flag", None, false, "No such file");
    assert_bad_ca_file("missing-variable", None, true, "No such file");
}

#[test]
fn non_pem_ca_file_is_config_error() {
    assert_bad_ca_file("not-pem", Some("this is not a certificate\n"), false, "no usable certificate");
    assert_bad_ca_file("empty", Some(""), true, "no usable certificate");
}

#[test]
fn key_only_ca_file_is_config_error() {
    let key = KeyPair::generate().unwrap().serialize_pem();
    assert_bad_ca_file("key-only", Some(&key), false, "no usable certificate");
}
