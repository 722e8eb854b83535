//! Proxies: `HTTP_PROXY` for an `http://` domain (requests in absolute form),
//! `HTTPS_PROXY` for an `https://` domain (a CONNECT tunnel), and `NO_PROXY`
//! to bypass them. The proxy is a small one in this file, on 127.0.0.1, that
//! records each request line and forwards only to 127.0.0.1.
mod util;
use util::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

const LOGIN: &str = "/api/v1/auth/universal-auth/login";
const LIST: &str = "/api/v4/secrets";

/// A forwarding HTTP proxy on 127.0.0.1 that handles one request (or one
/// CONNECT tunnel) per client connection and records every request line.
struct Proxy {
    port: u16,
    request_lines: Arc<Mutex<Vec<String>>>,
    stopping: Arc<AtomicBool>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the proxy binds to 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let request_lines = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (lines, stop) = (Arc::clone(&request_lines), Arc::clone(&stopping));
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let lines = Arc::clone(&lines);
                thread::spawn(move || {
                    let _ = serve_client(client, &lines);
                });
            }
        });
        Proxy { port, request_lines, stopping }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn request_lines(&self) -> Vec<String> {
        self.request_lines.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it reads the flag and returns.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Returns the port of `authority` ("127.0.0.1:PORT" or "localhost:PORT"),
/// or `None` for any other host: the proxy forwards to loopback only.
fn loopback_port(authority: &str) -> Option<u16> {
    let (host, port) = authority.rsplit_once(':')?;
    if host != "127.0.0.1" && host != "localhost" {
        return None;
    }
    port.parse().ok()
}

/// Reads a request or response head up to the blank line; returns its lines
/// without line endings.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line);
    }
}

fn header_value<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|line| {
        let (field, value) = line.split_once(':')?;
        field.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Copies a head, leaving out the hop-by-hop `Connection`-type fields and
/// asking for `Connection: close`, so each connection carries one exchange.
fn write_head(stream: &mut TcpStream, first_line: &str, head: &[String]) -> std::io::Result<()> {
    let mut text = format!("{first_line}\r\n");
    for line in head.iter().skip(1) {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(name.as_str(), "connection" | "proxy-connection" | "keep-alive") {
            text.push_str(line);
            text.push_str("\r\n");
        }
    }
    text.push_str("Connection: close\r\n\r\n");
    stream.write_all(text.as_bytes())
}

fn serve_client(client: TcpStream, request_lines: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let head = read_head(&mut reader)?;
    let request_line = head.first().cloned().unwrap_or_default();
    request_lines.lock().unwrap().push(request_line.clone());
    let mut parts = request_line.split(' ');
    let (method, target, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let mut client = client;

    if method == "CONNECT" {
        let Some(port) = loopback_port(target) else {
            return client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        };
        let upstream = TcpStream::connect(("127.0.0.1", port))?;
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
        return tunnel(reader, client, upstream);
    }

    // Anything else must be in absolute form: http://HOST:PORT/PATH.
    let Some((authority, path)) = target
        .strip_prefix("http://")
        .map(|rest| rest.split_once('/').map_or((rest, "/".to_string()), |(host, path)| (host, format!("/{path}"))))
    else {
        return client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let Some(port) = loopback_port(authority) else {
        return client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    let mut upstream = TcpStream::connect(("127.0.0.1", port))?;
    write_head(&mut upstream, &format!("{method} {path} {version}"), &head)?;
    let length: u64 = header_value(&head, "content-length").and_then(|value| value.parse().ok()).unwrap_or(0);
    std::io::copy(&mut (&mut reader).take(length), &mut upstream)?;

    let mut upstream_reader = BufReader::new(upstream);
    let response = read_head(&mut upstream_reader)?;
    write_head(&mut client, &response[0], &response)?;
    std::io::copy(&mut upstream_reader, &mut client)?;
    client.shutdown(Shutdown::Both)
}

/// Relays bytes both ways until each side has closed its half.
fn tunnel(mut client_reader: BufReader<TcpStream>, mut client: TcpStream, upstream: TcpStream) -> std::io::Result<()> {
    let mut upstream_writer = upstream.try_clone()?;
    let upward = thread::spawn(move || {
        // Bytes the client sent right after the CONNECT head are in the buffer.
        let buffered = client_reader.buffer().to_vec();
        let _ = upstream_writer.write_all(&buffered);
        client_reader.consume(buffered.len());
        let _ = std::io::copy(client_reader.get_mut(), &mut upstream_writer);
        let _ = upstream_writer.shutdown(Shutdown::Write);
    });
    let mut upstream_reader = upstream;
    let _ = std::io::copy(&mut upstream_reader, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = upward.join();
    Ok(())
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(temp_dir(&format!("proxy-{name}")))
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        write_file(&path, contents);
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the test server with HTTPS and a certificate for 127.0.0.1 from a
/// fresh CA; returns the server and the CA file.
fn https_server(scratch: &Scratch) -> (TestServer, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "infisical-init proxy test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let certificate = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key)).unwrap();

    let certificate_path = scratch.write("server.pem", &certificate.pem());
    let key_path = scratch.write("server-key.pem", &key.serialize_pem());
    let ca_path = scratch.write("ca.pem", &ca.pem());
    let server = TestServer::with_args(&[
        "--tls-cert",
        certificate_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    (server, ca_path)
}

/// Runs `infisical-init run -- sh -c 'printf %s "$API_KEY"'` with the
/// given variables and checks that the child received the secret.
fn run_and_expect_secret(command: &mut Command, extra: &[&str]) -> String {
    command
        .args(["run", "--timeout", "10"])
        .args(extra)
        .args(["--", "sh", "-c", "printf %s \"$API_KEY\""]);
    let output = run(command);
    let stderr = text(&output.stderr);
    assert_eq!(code(&output.status), 0, "stderr:\n{stderr}");
    assert_eq!(text(&output.stdout), "dev-api-key-123", "the child received the secret; stderr:\n{stderr}");
    assert_no_leak(&stderr);
    stderr
}

fn count_lines_with(lines: &[String], part: &str) -> usize {
    lines.iter().filter(|line| line.contains(part)).count()
}

#[test]
fn http_proxy_gets_absolute_form_requests() {
    for variable in ["HTTP_PROXY", "http_proxy", "ALL_PROXY"] {
        let server = TestServer::start();
        let proxy = Proxy::start();
        let mut command = shim_for(&server);
        command.env(variable, proxy.url());
        run_and_expect_secret(&mut command, &[]);

        let lines = proxy.request_lines();
        let login = format!("POST {}{LOGIN} HTTP/1.1", server.url);
        let list = format!("GET {}{LIST}?", server.url);
        assert!(lines.contains(&login), "with {variable}: the proxy saw the login in absolute form: {lines:?}");
        assert_eq!(count_lines_with(&lines, &list), 1, "with {variable}: the proxy saw one listing: {lines:?}");
        assert_eq!(lines.len(), 2, "with {variable}: nothing else went through the proxy: {lines:?}");
        assert_eq!(server.api_paths(), [LOGIN, LIST], "with {variable}: the server got both through the proxy");
    }
}

#[test]
fn https_proxy_tunnels_with_connect() {
    let scratch = Scratch::new("connect");
    let (server, ca) = https_server(&scratch);
    let proxy = Proxy::start();
    let mut command = shim_for(&server);
    command.env("HTTPS_PROXY", proxy.url());
    run_and_expect_secret(&mut command, &["--ca-cert", ca.to_str().unwrap()]);

    let authority = server.url.strip_prefix("https://").unwrap();
    let lines = proxy.request_lines();
    assert!(!lines.is_empty(), "the proxy saw no request");
    for line in &lines {
        assert_eq!(line, &format!("CONNECT {authority} HTTP/1.1"), "every request is a tunnel to the server: {lines:?}");
    }
}

#[test]
fn http_proxy_not_used_for_https() {
    let scratch = Scratch::new("http-only");
    let (server, ca) = https_server(&scratch);
    let proxy = Proxy::start();
    let mut command = shim_for(&server);
    command.env("HTTP_PROXY", proxy.url());
    run_and_expect_secret(&mut command, &["--ca-cert", ca.to_str().unwrap()]);

    assert_eq!(proxy.request_lines(), Vec::<String>::new(), "HTTP_PROXY applies to http:// URLs only");
}

// NOTE: reqwest 0.13 does not bypass a proxy for loopback addresses on its
// own: the tests above go through the proxy to 127.0.0.1. Only NO_PROXY
// exempts a host.

#[test]
fn no_proxy_bypasses_proxy() {
    for no_proxy in ["127.0.0.1", "example.test, 127.0.0.1", "127.0.0.0/8"] {
        let server = TestServer::start();
        let proxy = Proxy::start();
        let mut command = shim_for(&server);
        command.env("HTTP_PROXY", proxy.url()).env("NO_PROXY", no_proxy);
        run_and_expect_secret(&mut command, &[]);

        assert_eq!(proxy.request_lines(), Vec::<String>::new(), "NO_PROXY={no_proxy} bypasses the proxy");
        assert_eq!(server.api_paths(), [LOGIN, LIST], "NO_PROXY={no_proxy}: the server got the requests directly");
    }
}

#[test]
fn no_proxy_for_other_host_keeps_proxy() {
    let server = TestServer::start();
    let proxy = Proxy::start();
    let mut command = shim_for(&server);
    command.env("HTTP_PROXY", proxy.url()).env("no_proxy", "example.test,10.0.0.0/8");
    run_and_expect_secret(&mut command, &[]);

    assert_eq!(proxy.request_lines().len(), 2, "a NO_PROXY list without this host keeps the proxy");
}

#[test]
fn unreachable_proxy_fails_with_69() {
    let server = TestServer::start();
    // Bind a free port, then close it, so no proxy listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut command = shim_for(&server);
    command
        .env("HTTP_PROXY", format!("http://127.0.0.1:{port}"))
        .args(["run", "--timeout", "2", "--", "true"]);
    let output = run(&mut command);
    let stderr = text(&output.stderr);

    assert_eq!(code(&output.status), 69, "stderr:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|line| line.contains("] error: ")).collect();
    assert_eq!(errors.len(), 1, "stderr:\n{stderr}");
    assert!(errors[0].contains("failed to log in"), "stderr:\n{stderr}");
    assert!(errors[0].contains("gave up after"), "a dead proxy is retried until the deadline:\n{stderr}");
    assert!(server.api_paths().is_empty(), "nothing reached the server directly");
    assert_no_leak(&stderr);
}

/// Runs against `domain` with `HTTP_PROXY` and `NO_PROXY=*`, and returns
/// what the proxy saw.
fn proxy_lines_with_wildcard(server: &TestServer, domain: &str) -> Vec<String> {
    let proxy = Proxy::start();
    let mut command = shim_for(server);
    command
        .env("INFISICAL_DOMAIN", domain)
        .env("HTTP_PROXY", proxy.url())
        .env("NO_PROXY", "*");
    run_and_expect_secret(&mut command, &[]);
    proxy.request_lines()
}

#[test]
fn no_proxy_wildcard_with_host_name() {
    let server = TestServer::start();
    let lines = proxy_lines_with_wildcard(&server, &format!("http://localhost:{}", server.port));
    assert_eq!(lines, Vec::<String>::new(), "NO_PROXY=* bypasses the proxy for localhost");
}

#[test]
fn no_proxy_wildcard_with_ip_address() {
    // NO_PROXY=* means no proxy for any host, IP addresses included.
    // NOTE: fails with hyper-util 0.1.21 (reqwest's proxy matcher), which
    // matches "*" against host names only.
    let server = TestServer::start();
    let lines = proxy_lines_with_wildcard(&server, &server.url);
    assert_eq!(lines, Vec::<String>::new(), "NO_PROXY=* bypasses the proxy for 127.0.0.1");
}
