//! The HTTP side: the reqwest client with rustls and embedded roots, timeouts,
//! the Infisical routes this program calls, their JSON types, and the mapping
//! from an HTTP failure to an `Error` with a hint. Never logs bodies or values.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client as HttpClient, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::Secret;
use crate::error::{Error, Kind, Result};
use crate::{debug, info};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-request limit covering the response headers and each body read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Responses larger than this are rejected; 10,000 secrets take about 4 MB.
pub const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// PEM bundles that Linux distributions ship, tried in order when neither
/// `SSL_CERT_FILE` nor `SSL_CERT_DIR` is set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// One secret as the list and get routes return it. Unused fields are
/// skipped and new ones tolerated.
#[derive(Debug, Deserialize)]
pub struct RawSecret {
    #[serde(rename = "secretKey")]
    pub key: String,
    #[serde(rename = "secretValue", default)]
    pub value: String,
    #[serde(rename = "secretPath", default)]
    pub path: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// The secrets of one imported folder.
#[derive(Debug, Deserialize)]
pub struct Import {
    #[serde(rename = "secretPath", default)]
    pub path: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
}

/// The body of a secrets listing. The server does not merge `imports` into
/// `secrets`; `secrets.rs` does.
#[derive(Debug, Deserialize)]
pub struct Listing {
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
    #[serde(default)]
    pub imports: Vec<Import>,
}

#[derive(Debug, Deserialize)]
struct LoginResponse {
    #[serde(rename = "accessToken")]
    access_token: String,
}

#[derive(Debug, Deserialize)]
struct OneSecret {
    secret: RawSecret,
}

#[derive(Debug, Deserialize)]
struct ProjectResponse {
    workspace: Project,
}

#[derive(Debug, Deserialize)]
struct Project {
    #[serde(default)]
    environments: Vec<ProjectEnvironment>,
}

#[derive(Debug, Deserialize)]
struct ProjectEnvironment {
    slug: String,
}

/// The error body every Infisical route returns. `message` is an array for
/// validation errors, and some permission errors carry the detail in `error`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(rename = "reqId", default)]
    req_id: Option<String>,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The route being called, which decides the wording of failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Login,
    ListSecrets,
    GetSecret,
    GetProject,
    Revoke,
}

impl Operation {
    fn describe(self) -> &'static str {
        match self {
            Operation::Login => "failed to log in",
            Operation::ListSecrets => "failed to list secrets",
            Operation::GetSecret => "failed to get secret",
            Operation::GetProject => "failed to read the project",
            Operation::Revoke => "failed to revoke the token",
        }
    }
}

/// A filter on a secrets listing.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub project_id: &'a str,
    pub environment: &'a str,
    pub path: &'a str,
    pub recursive: bool,
    pub include_imports: bool,
    pub expand_references: bool,
    pub tags: &'a [String],
}

/// A response read in full: status and body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

pub struct Client {
    http: HttpClient,
    api_url: String,
    /// Set once the server has shown it has no v4 routes, so every later
    /// listing goes straight to v3.
    v3_only: Cell<bool>,
}

impl Client {
    pub fn new(api_url: &str) -> Result<Client> {
        let https = api_url.starts_with("https://") || proxy_variables_set();
        let tls = tls_config(https)?;
        let http = HttpClient::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("infisical-init/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::config(format!("failed to create the HTTP client: {}", chain(&error))))?;
        Ok(Client { http, api_url: api_url.to_string(), v3_only: Cell::new(false) })
    }

    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Logs in with Universal Auth. A rejected login is never retried,
    /// because three failures in 30 s lock the identity for every caller.
    pub fn login_universal_auth(&self, client_id: &str, client_secret: &Secret) -> Result<Secret> {
        let url = format!("{}/v1/auth/universal-auth/login", self.api_url);
        let body = serde_json::json!({ "clientId": client_id, "clientSecret": client_secret.expose() });
        let request = self.http.post(&url).json(&body);
        let reply = self.send(request, "POST", &url, Operation::Login)?;
        let login: LoginResponse = parse_json(&reply, "POST", &url, Operation::Login)?;
        Ok(Secret::new(login.access_token))
    }

    pub fn revoke(&self, token: &Secret) -> Result<()> {
        let url = format!("{}/v1/auth/token/revoke", self.api_url);
        let body = serde_json::json!({ "accessToken": token.expose() });
        let request = self.http.post(&url).json(&body);
        self.send(request, "POST", &url, Operation::Revoke)?;
        Ok(())
    }

    /// Lists the secrets of one folder, from v4 or, on servers without it,
    /// from v3.
    pub fn list_secrets(&self, token: &Secret, query: &ListQuery<'_>) -> Result<Listing> {
        if !self.v3_only.get() {
            let url = format!("{}/v4/secrets", self.api_url);
            let request = self.http.get(&url).query(&list_parameters(query, "projectId"));
            let reply = self.send_unchecked(authorized(request, token), "GET", &url, Operation::ListSecrets)?;
            if !is_route_not_found(&reply) {
                let url = describe_url(&url, query);
                check_status(&reply, "GET", &url, Operation::ListSecrets)?;
                return parse_json(&reply, "GET", &url, Operation::ListSecrets);
            }
            info!("the server has no v4 API; using /api/v3/secrets/raw from now on");
            self.v3_only.set(true);
        }
        let url = format!("{}/v3/secrets/raw", self.api_url);
        let request = self.http.get(&url).query(&list_parameters(query, "workspaceId"));
        let described = describe_url(&url, query);
        let reply = self.send(authorized(request, token), "GET", &described, Operation::ListSecrets)?;
        parse_json(&reply, "GET", &described, Operation::ListSecrets)
    }

    /// Fetches one secret by name; `Ok(None)` when the server has no such
    /// secret.
    pub fn get_secret(&self, token: &Secret, name: &str, query: &ListQuery<'_>) -> Result<Option<RawSecret>> {
        let encoded = encode_path_segment(name);
        let (url, project_key) = if self.v3_only.get() {
            (format!("{}/v3/secrets/raw/{encoded}", self.api_url), "workspaceId")
        } else {
            (format!("{}/v4/secrets/{encoded}", self.api_url), "projectId")
        };
        let request = self.http.get(&url).query(&list_parameters(query, project_key));
        let reply = self.send_unchecked(authorized(request, token), "GET", &url, Operation::GetSecret)?;
        if is_route_not_found(&reply) && !self.v3_only.get() {
            info!("the server has no v4 API; using /api/v3/secrets/raw from now on");
            self.v3_only.set(true);
            return self.get_secret(token, name, query);
        }
        if reply.status == 404 {
            return Ok(None);
        }
        check_status(&reply, "GET", &url, Operation::GetSecret)?;
        let one: OneSecret = parse_json(&reply, "GET", &url, Operation::GetSecret)?;
        Ok(Some(one.secret))
    }

    /// Returns the environment slugs of a project, to explain an empty
    /// listing.
    pub fn environment_slugs(&self, token: &Secret, project_id: &str) -> Result<Vec<String>> {
        let url = format!("{}/v1/workspace/{}", self.api_url, encode_path_segment(project_id));
        let reply = self.send(authorized(self.http.get(&url), token), "GET", &url, Operation::GetProject)?;
        let project: ProjectResponse = parse_json(&reply, "GET", &url, Operation::GetProject)?;
        Ok(project.workspace.environments.into_iter().map(|env| env.slug).collect())
    }

    fn send(&self, request: RequestBuilder, method: &str, url: &str, operation: Operation) -> Result<Reply> {
        let reply = self.send_unchecked(request, method, url, operation)?;
        check_status(&reply, method, url, operation)?;
        Ok(reply)
    }

    /// Sends a request and reads the whole body, up to `MAX_BODY_BYTES`.
    fn send_unchecked(&self, request: RequestBuilder, method: &str, url: &str, operation: Operation) -> Result<Reply> {
        debug!("{method} {url}");
        let response = request.send().map_err(|error| transport_error(&error, method, url, operation))?;
        let status = response.status().as_u16();
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0).min(MAX_BODY_BYTES) as usize);
        response
            .take(MAX_BODY_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|error| {
                let detail = match error.get_ref() {
                    Some(inner) => chain(inner),
                    None => error.to_string(),
                };
                Error::new(
                    Kind::Unavailable,
                    format!("{}: {method} {url}: reading the response failed: {detail}", operation.describe()),
                )
            })?;
        if body.len() as u64 > MAX_BODY_BYTES {
            return Err(Error::new(
                Kind::BadResponse,
                format!(
                    "{}: {method} {url}: the response is larger than {} MiB; check that the domain points at an Infisical server",
                    operation.describe(),
                    MAX_BODY_BYTES / 1024 / 1024
                ),
            ));
        }
        debug!("{method} {url}: {status}, {} bytes", body.len());
        Ok(Reply { status, body })
    }
}

fn authorized(request: RequestBuilder, token: &Secret) -> RequestBuilder {
    request.bearer_auth(token.expose())
}

/// Builds the listing query. Booleans are sent as `true`/`false` because the
/// server rejects anything else with 422, and the imports switch is sent in
/// both spellings that server versions have read.
fn list_parameters<'a>(query: &ListQuery<'a>, project_key: &'a str) -> Vec<(&'a str, String)> {
    let mut parameters = vec![
        (project_key, query.project_id.to_string()),
        ("environment", query.environment.to_string()),
        ("secretPath", query.path.to_string()),
        ("recursive", query.recursive.to_string()),
        ("expandSecretReferences", query.expand_references.to_string()),
        ("include_imports", query.include_imports.to_string()),
        ("includeImports", query.include_imports.to_string()),
    ];
    if !query.tags.is_empty() {
        parameters.push(("tagSlugs", query.tags.join(",")));
    }
    parameters
}

/// Names the listing in messages without repeating every query parameter.
fn describe_url(url: &str, query: &ListQuery<'_>) -> String {
    format!("{url} (environment {}, path {})", query.environment, query.path)
}

fn encode_path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Tells "this server has no such route" (404 without `reqId`, message
/// "Route GET:/... not found") from "this resource was not found".
fn is_route_not_found(reply: &Reply) -> bool {
    if reply.status != 404 {
        return false;
    }
    match serde_json::from_slice::<ErrorBody>(&reply.body) {
        Ok(body) => {
            body.req_id.is_none()
                && body
                    .message
                    .as_ref()
                    .and_then(|message| message.as_str())
                    .is_some_and(|message| message.starts_with("Route "))
        }
        Err(_) => false,
    }
}

fn parse_json<T: DeserializeOwned>(reply: &Reply, method: &str, url: &str, operation: Operation) -> Result<T> {
    serde_json::from_slice(&reply.body).map_err(|error| {
        let hint = if looks_like_html(&reply.body) {
            "the server returned HTML, not JSON: does the domain point at the web UI instead of the API?"
        } else {
            "the response is not the JSON an Infisical server returns: check that the domain points at the Infisical API"
        };
        Error::new(
            Kind::BadResponse,
            format!("{}: {method} {url} returned {}: {hint} ({error})", operation.describe(), reply.status),
        )
    })
}

fn looks_like_html(body: &[u8]) -> bool {
    let start = body.iter().position(|byte| !byte.is_ascii_whitespace()).unwrap_or(body.len());
    body[start..].starts_with(b"<")
}

/// Turns a non-2xx status into an error naming the route, the status, the
/// server's `reqId` and message, and what to do next.
fn check_status(reply: &Reply, method: &str, url: &str, operation: Operation) -> Result<()> {
    if (200..300).contains(&reply.status) {
        return Ok(());
    }
    let body: ErrorBody = serde_json::from_slice(&reply.body).unwrap_or_default();
    let error_name = body.error.as_ref().and_then(|error| error.as_str()).unwrap_or("");
    let mut detail = server_message(&body);
    if detail.is_empty() {
        detail = if looks_like_html(&reply.body) {
            "the body is HTML, not JSON".to_string()
        } else {
            "no error message".to_string()
        };
    }
    let request_id = body
        .req_id
        .as_deref()
        .map(|id| format!(" (reqId {id})"))
        .unwrap_or_default();
    let (kind, hint) = classify(operation, reply.status, error_name);
    Err(Error::new(
        kind,
        format!(
            "{}: {method} {url} returned {}{request_id}: {detail}; {hint}",
            operation.describe(),
            reply.status
        ),
    ))
}

/// Joins the server's message and, when it adds something, its `error`
/// field. Validation errors list each field with its problem.
fn server_message(body: &ErrorBody) -> String {
    let message = match &body.message {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| {
                let field = item
                    .get("path")
                    .and_then(|path| path.as_array())
                    .map(|parts| parts.iter().filter_map(|part| part.as_str()).collect::<Vec<_>>().join("."))
                    .unwrap_or_default();
                let text = item.get("message").and_then(|text| text.as_str()).unwrap_or("invalid");
                if field.is_empty() {
                    text.to_string()
                } else {
                    format!("{field}: {text}")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    match body.error.as_ref().and_then(|error| error.as_str()) {
        Some(error) if error.contains(' ') && !message.contains(error) => format!("{message}: {error}"),
        _ => message,
    }
}

/// Picks the exit class and the advice for a failed status.
fn classify(operation: Operation, status: u16, error_name: &str) -> (Kind, &'static str) {
    match (operation, status) {
        (Operation::Login, 401) => (
            Kind::Rejected,
            "check INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET; the login is not retried because \
             3 failures in 30 s lock the identity for 5 minutes",
        ),
        (Operation::Login, 404) => (
            Kind::Rejected,
            "check INFISICAL_UNIVERSAL_AUTH_CLIENT_ID: no machine identity has this client ID",
        ),
        (_, 401) => (Kind::Rejected, "the access token was rejected: log in again or mint a new token"),
        (_, 403) if error_name == "TokenError" => (
            Kind::Rejected,
            "the access token is expired or invalid: log in again or mint a new token",
        ),
        (_, 403) => (
            Kind::Rejected,
            "give the machine identity access to this project, environment and path",
        ),
        (Operation::ListSecrets | Operation::GetProject, 404) => (
            Kind::Config,
            "check the project ID in --project-id or INFISICAL_PROJECT_ID",
        ),
        (_, 400 | 422) => (Kind::Config, "check the project ID, environment and path settings"),
        (_, 429) => (Kind::Unavailable, "the server is rate limiting this address: try again later"),
        (_, 500..=599) => (Kind::Unavailable, "the server is failing: try again later"),
        _ => (Kind::Unavailable, "unexpected status from the server"),
    }
}

fn transport_error(error: &reqwest::Error, method: &str, url: &str, operation: Operation) -> Error {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    Error::new(
        Kind::Unavailable,
        format!(
            "{}: {method} {url}: {what}: {}; check --domain or INFISICAL_DOMAIN and that the server is reachable",
            operation.describe(),
            chain(error)
        ),
    )
}

/// Formats an error with its sources, skipping repeats.
fn chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(error);
    while let Some(error) = current {
        let text = error.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        current = error.source();
    }
    parts.join(": ")
}

fn proxy_variables_set() -> bool {
    ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Builds the rustls configuration on the ring provider. Root certificates
/// are loaded only when HTTPS can be used, because parsing them costs more
/// than a plain-HTTP start-up.
fn tls_config(https: bool) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let added = add_system_roots(&mut roots);
        debug!("trusting {} embedded and {added} system root certificates", webpki_roots::TLS_SERVER_ROOTS.len());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::config(format!("failed to set up TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Adds the system's CA bundle, if the image has one; returns how many
/// certificates were added.
fn add_system_roots(roots: &mut rustls::RootCertStore) -> usize {
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
        files.push(file.into());
    }
    if let Some(directory) = std::env::var_os("SSL_CERT_DIR") {
        for directory in std::env::split_paths(&directory) {
            if let Ok(entries) = std::fs::read_dir(&directory) {
                files.extend(entries.flatten().map(|entry| entry.path()));
            }
        }
    }
    if files.is_empty() {
        if let Some(bundle) = SYSTEM_BUNDLES.iter().map(Path::new).find(|path| path.is_file()) {
            files.push(bundle.to_path_buf());
        }
    }
    files.iter().map(|file| add_pem_file(roots, file)).sum()
}

fn add_pem_file(roots: &mut rustls::RootCertStore, file: &Path) -> usize {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let Ok(certificates) = CertificateDer::pem_file_iter(file) else {
        return 0;
    };
    let (added, _ignored) = roots.add_parsable_certificates(certificates.flatten());
    added
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_not_found_has_no_request_id() {
        let route = Reply {
            status: 404,
            body: br#"{"message":"Route GET:/api/v4/secrets not found","error":"Not Found","statusCode":404}"#.to_vec(),
        };
        let missing = Reply {
            status: 404,
            body: br#"{"reqId":"req-1","statusCode":404,"message":"Project not found","error":"NotFound"}"#.to_vec(),
        };
        assert!(is_route_not_found(&route));
        assert!(!is_route_not_found(&missing));
    }

    #[test]
    fn validation_message_lists_fields() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"message":[{"path":["clientId"],"message":"Required"},{"path":["clientSecret"],"message":"Required"}]}"#,
        )
        .unwrap();
        assert_eq!(server_message(&body), "clientId: Required, clientSecret: Required");
    }

    #[test]
    fn permission_detail_in_error_field() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"message":"You are not allowed to access this resource","error":"Identity is not a member"}"#,
        )
        .unwrap();
        assert_eq!(server_message(&body), "You are not allowed to access this resource: Identity is not a member");
    }

    #[test]
    fn path_segment_encoding() {
        assert_eq!(encode_path_segment("my key/é"), "my%20key%2F%C3%A9");
        assert_eq!(encode_path_segment("dotted.key-name_1"), "dotted.key-name_1");
    }
}
