//! The HTTP side: the reqwest client with rustls and embedded roots, timeouts,
//! the Infisical routes this program calls, their JSON types, and the mapping
//! from an HTTP failure to an `Error` with a hint. Never logs bodies or values.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client as HttpClient, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{Connection, Secret};
use crate::error::{Error, Kind, Result};
use crate::{debug, info};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-request limit covering the response headers and each body read.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The minimum time left before the deadline that is still worth a try.
const MIN_LAST_TRY: Duration = Duration::from_millis(200);
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
    GetProject,
    Revoke,
}

impl Operation {
    fn describe(self) -> &'static str {
        match self {
            Operation::Login => "failed to log in",
            Operation::ListSecrets => "failed to list secrets",
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

/// A response read in full.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
    /// How many tries it took.
    attempts: u32,
}

pub struct Client {
    http: HttpClient,
    api_url: String,
    /// Set once the server has shown it has no v4 routes, so every later
    /// listing goes straight to v3.
    v3_only: Cell<bool>,
    /// When retries stop; `None` retries forever.
    deadline: Option<Instant>,
    started: Instant,
    random: Cell<u64>,
}

impl Client {
    pub fn new(connection: &Connection) -> Result<Client> {
        let api_url = connection.api_url.as_str();
        let https = api_url.starts_with("https://") || proxy_variables_set();
        let tls = tls_config(https, connection.ca_cert.as_deref())?;
        let mut builder = HttpClient::builder();
        if no_proxy_for_any_host() {
            builder = builder.no_proxy();
        }
        let http = builder
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .default_headers(header_map(&connection.custom_headers)?)
            .user_agent(concat!("infisical-init/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::config(format!("failed to create the HTTP client: {}", chain(&error))))?;
        let started = Instant::now();
        Ok(Client {
            http,
            api_url: api_url.to_string(),
            v3_only: Cell::new(false),
            deadline: connection.timeout.map(|timeout| started + timeout),
            started,
            random: Cell::new(seed()),
        })
    }

    /// Sleeps a random time of up to `splay`, so that a fleet restarted at
    /// once does not log in all at the same moment.
    pub fn splay(&self, splay: Duration) {
        if splay.is_zero() {
            return;
        }
        let wait = splay.mul_f64(self.next_fraction());
        info!("waiting {:.1} s (--splay) before the first request", wait.as_secs_f64());
        std::thread::sleep(wait);
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
        if !crate::config::is_valid_token(&login.access_token) {
            return Err(Error::new(
                Kind::BadResponse,
                format!("failed to log in: POST {url} returned an access token with characters a token cannot have; check that the domain points at an Infisical server"),
            ));
        }
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
            let request = self.http.get(with_query(&url, &list_parameters(query, "projectId")));
            let reply = self.send_unchecked(authorized(request, token), "GET", &url, Operation::ListSecrets)?;
            if !is_route_not_found(&reply) {
                let url = describe_url(&url, query);
                check_status(&reply, "GET", &url, Operation::ListSecrets)
                    .map_err(|error| self.note_attempts(error, reply.attempts))?;
                return parse_json(&reply, "GET", &url, Operation::ListSecrets);
            }
            info!("the server has no v4 API; using /api/v3/secrets/raw from now on");
            self.v3_only.set(true);
        }
        let url = format!("{}/v3/secrets/raw", self.api_url);
        let request = self.http.get(with_query(&url, &list_parameters(query, "workspaceId")));
        let described = describe_url(&url, query);
        let reply = self.send(authorized(request, token), "GET", &described, Operation::ListSecrets)?;
        parse_json(&reply, "GET", &described, Operation::ListSecrets)
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
        check_status(&reply, method, url, operation).map_err(|error| self.note_attempts(error, reply.attempts))?;
        Ok(reply)
    }

    /// Sends a request and reads the whole body, up to `MAX_BODY_BYTES`.
    /// Connection failures, timeouts, 429, 502, 503 and 504 are retried with
    /// exponential backoff and full jitter until the deadline; a 429 waits
    /// as long as the server requests. Other statuses are returned as they are.
    fn send_unchecked(&self, request: RequestBuilder, method: &str, url: &str, operation: Operation) -> Result<Reply> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            // Cloning fails only for a request that could not be built, such
            // as one with an invalid header value.
            let Some(this_try) = request.try_clone() else {
                return Err(Error::config(format!(
                    "{}: {method} {url}: the request could not be built; check INFISICAL_CUSTOM_HEADERS",
                    operation.describe()
                )));
            };
            let this_try = match self.request_timeout() {
                Some(timeout) => this_try.timeout(timeout),
                None => this_try,
            };
            debug!("{method} {url} (attempt {attempt})");
            let failure = match self.try_once(this_try, method, url, operation) {
                Ok(mut reply) => {
                    let Some(wait) = self.retry_wait(&reply, attempt) else {
                        reply.attempts = attempt;
                        return Ok(reply);
                    };
                    let reason = format!("returned {}", reply.status);
                    let beyond_deadline =
                        self.deadline.is_some_and(|deadline| reply.status == 429 && Instant::now() + wait > deadline);
                    if beyond_deadline || !self.wait_before_retry(wait, method, url, &reason, attempt) {
                        reply.attempts = attempt;
                        return Ok(reply);
                    }
                    continue;
                }
                Err((error, retryable)) => {
                    if !retryable {
                        return Err(self.note_attempts(error, attempt));
                    }
                    error
                }
            };
            let wait = self.backoff(attempt);
            if !self.wait_before_retry(wait, method, url, &failure.message, attempt) {
                return Err(self.note_attempts(failure, attempt));
            }
        }
    }

    /// Sends once; a failure comes with whether it is worth retrying.
    fn try_once(&self, request: RequestBuilder, method: &str, url: &str, operation: Operation) -> std::result::Result<Reply, (Error, bool)> {
        let response = request.send().map_err(|error| {
            let retryable =
                tls_problem(&error).is_none() && (error.is_connect() || error.is_timeout() || error.is_request());
            (transport_error(&error, method, url, operation), retryable)
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let mut body = Vec::with_capacity(response.content_length().unwrap_or(0).min(MAX_BODY_BYTES) as usize);
        if let Err(error) = response.take(MAX_BODY_BYTES + 1).read_to_end(&mut body) {
            let detail = match error.get_ref() {
                Some(inner) => chain(inner),
                None => error.to_string(),
            };
            let message = format!("{}: {method} {url}: reading the response failed: {detail}", operation.describe());
            return Err((Error::new(Kind::Unavailable, message), true));
        }
        if body.len() as u64 > MAX_BODY_BYTES {
            let message = format!(
                "{}: {method} {url}: the response is larger than {} MiB; check that the domain points at an Infisical server",
                operation.describe(),
                MAX_BODY_BYTES / 1024 / 1024
            );
            return Err((Error::new(Kind::BadResponse, message), false));
        }
        debug!("{method} {url}: {status}, {} bytes", body.len());
        Ok(Reply { status, headers, body, attempts: 1 })
    }

    /// Returns how long to wait before retrying this reply, or `None` when
    /// it is final.
    fn retry_wait(&self, reply: &Reply, attempt: u32) -> Option<Duration> {
        match reply.status {
            429 => {
                let told = rate_limit_wait(reply).unwrap_or_else(|| self.backoff(attempt));
                // Spread the retries of clients given the same wait over a
                // fifth of it (at most 5 s), so they do not all return at
                // once and the last of them is not delayed much.
                let spread = told.mul_f64(0.2).clamp(Duration::from_millis(500), Duration::from_secs(5));
                Some(told + spread.mul_f64(self.next_fraction()))
            }
            502..=504 => Some(self.backoff(attempt)),
            _ => None,
        }
    }

    /// Full-jitter exponential backoff: a random wait between 0 and
    /// 250 ms × 2^(attempt - 1), capped at 10 s.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = Duration::from_millis(250).saturating_mul(1 << attempt.saturating_sub(1).min(10));
        ceiling.min(Duration::from_secs(10)).mul_f64(self.next_fraction())
    }

    /// Logs and sleeps before a retry; returns false when the wait would
    /// pass the deadline, so the caller gives up.
    fn wait_before_retry(&self, wait: Duration, method: &str, url: &str, reason: &str, attempt: u32) -> bool {
        let mut wait = wait;
        if let Some(deadline) = self.deadline {
            // Near the deadline, the last try happens just before it rather
            // than not at all.
            let left = deadline.saturating_duration_since(Instant::now());
            if left < MIN_LAST_TRY {
                return false;
            }
            wait = wait.min(left - MIN_LAST_TRY / 2);
        }
        info!(
            "{method} {url} failed ({}); retrying in {:.1} s (attempt {} next)",
            short_reason(reason),
            wait.as_secs_f64(),
            attempt + 1
        );
        std::thread::sleep(wait);
        true
    }

    /// Returns the per-request timeout: the usual limit, or less when the
    /// deadline is nearer.
    fn request_timeout(&self) -> Option<Duration> {
        let deadline = self.deadline?;
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        Some(left.min(REQUEST_TIMEOUT))
    }

    fn note_attempts(&self, mut error: Error, attempts: u32) -> Error {
        let deadline_reached = self
            .deadline
            .is_some_and(|deadline| deadline.saturating_duration_since(Instant::now()) < MIN_LAST_TRY);
        if attempts > 1 || deadline_reached {
            error.message = format!(
                "{} (gave up after {attempts} {} in {:.1} s; raise --timeout or INFISICAL_TIMEOUT to wait longer)",
                error.message,
                if attempts == 1 { "attempt" } else { "attempts" },
                self.started.elapsed().as_secs_f64()
            );
        }
        error
    }

    /// Returns a pseudo-random number in [0, 1) from a xorshift generator.
    /// Jitter needs spread, not unpredictability.
    fn next_fraction(&self) -> f64 {
        let mut x = self.random.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Seeds the jitter generator from the clock and the pid, so processes
/// started in the same instant still differ.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

/// Keeps the part of an error message after the URL, for retry logs.
fn short_reason(reason: &str) -> &str {
    let without_hint = reason.split("; ").next().unwrap_or(reason);
    without_hint.rsplit(": ").next().unwrap_or(without_hint)
}

/// Reads how long a 429 requests the client to wait: `Retry-After`, else
/// `x-ratelimit-reset`, else the seconds in "try again in N seconds".
fn rate_limit_wait(reply: &Reply) -> Option<Duration> {
    let header_seconds = |name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
    };
    if let Some(seconds) = header_seconds("retry-after") {
        return Some(Duration::from_secs_f64(seconds.min(3600.0)));
    }
    if let Some(reset) = header_seconds("x-ratelimit-reset") {
        // Some servers send an epoch time instead of a number of seconds.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_secs_f64();
        let seconds = if reset > 1e9 { reset - now } else { reset };
        return Some(Duration::from_secs_f64(seconds.clamp(0.0, 3600.0)));
    }
    let body: ErrorBody = serde_json::from_slice(&reply.body).ok()?;
    let message = server_message(&body);
    let after = &message[message.find("try again in ")? + "try again in ".len()..];
    let number: String = after.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let seconds = number.parse::<f64>().ok()?;
    Some(Duration::from_secs_f64(seconds.clamp(0.0, 3600.0)))
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

/// Appends percent-encoded query parameters to `url`. Written here rather
/// than with reqwest's `query` feature, which would add a URL-encoding crate
/// to a binary with a size budget.
fn with_query(url: &str, parameters: &[(&str, String)]) -> String {
    let mut full = String::with_capacity(url.len() + 160);
    full.push_str(url);
    for (index, (name, value)) in parameters.iter().enumerate() {
        full.push(if index == 0 { '?' } else { '&' });
        full.push_str(&encode_path_segment(name));
        full.push('=');
        full.push_str(&encode_path_segment(value));
    }
    full
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

/// Parses a JSON body. The whole body is checked as UTF-8 once up front,
/// because serde_json then skips the check for each string, which is a
/// third of the parse time for a listing of 10,000 secrets.
fn parse_json<T: DeserializeOwned>(reply: &Reply, method: &str, url: &str, operation: Operation) -> Result<T> {
    let parsed = match std::str::from_utf8(&reply.body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(&reply.body),
    };
    parsed.map_err(|error| {
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
    let (kind, hint) = classify(operation, reply.status, error_name, is_route_not_found(reply));
    let mut error = Error::new(
        kind,
        format!(
            "{}: {method} {url} returned {}{request_id}: {detail}; {hint}",
            operation.describe(),
            reply.status
        ),
    );
    error.token_rejected =
        operation != Operation::Login && (reply.status == 401 || (reply.status == 403 && error_name == "TokenError"));
    Err(error)
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
    let message = message.trim_end_matches('.').to_string();
    match body.error.as_ref().and_then(|error| error.as_str()) {
        Some(error) if error.contains(' ') && !message.contains(error) => format!("{message}: {error}"),
        _ => message,
    }
}

/// Picks the exit class and the advice for a failed status.
fn classify(operation: Operation, status: u16, error_name: &str, route_missing: bool) -> (Kind, &'static str) {
    match (operation, status) {
        (Operation::Login, 401) => (
            Kind::Rejected,
            "check INFISICAL_UNIVERSAL_AUTH_CLIENT_SECRET; the login is not retried because \
             3 failures in 30 s lock the identity for 5 minutes",
        ),
        (_, 404) if route_missing => (
            Kind::Config,
            "the server has no such route: check that --domain or INFISICAL_DOMAIN is the server's base URL, without /api/v1",
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
    if let Some(problem) = tls_problem(error) {
        return Error::new(
            Kind::Unavailable,
            format!("{}: {method} {url}: {problem}", operation.describe()),
        );
    }
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

/// Explains a certificate failure found anywhere in the error's sources,
/// with the fix for each kind.
fn tls_problem(error: &reqwest::Error) -> Option<String> {
    use rustls::CertificateError;

    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        let tls = find_rustls_error(error);
        if let Some(rustls::Error::InvalidCertificate(problem)) = tls {
            let fix = "pass the CA certificate that signed it with --ca-cert or INFISICAL_CA_CERT_FILE";
            return Some(match problem {
                CertificateError::UnknownIssuer => format!(
                    "the server's TLS certificate is not trusted (unknown issuer): if the server uses a private CA, {fix}"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the server's TLS certificate has expired: renew it on the server".to_string()
                }
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                    "the server's TLS certificate does not match its host name: use the host name the certificate was issued for in --domain".to_string()
                }
                other => format!("the server's TLS certificate was rejected ({other:?}); if the server uses a private CA, {fix}"),
            });
        }
        if let Some(other) = tls {
            return Some(format!("the TLS handshake failed: {other}"));
        }
        current = error.source();
    }
    None
}

/// Finds a rustls error in `error` or in the `io::Error`s it wraps, because
/// `io::Error::source` skips the error it wraps, and hyper-rustls wraps
/// rustls's error in two of them.
fn find_rustls_error<'a>(mut error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        error = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
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

/// Tells whether NO_PROXY is `*`, which reqwest's matcher applies to host
/// names but not to IP addresses.
fn no_proxy_for_any_host() -> bool {
    ["NO_PROXY", "no_proxy"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .is_some_and(|value| value.trim() == "*")
}

fn proxy_variables_set() -> bool {
    ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// Builds the rustls configuration on the ring provider. Root certificates
/// are loaded only when HTTPS can be used, because parsing them costs more
/// than a plain-HTTP start-up. A `--ca-cert` bundle is added to the roots.
fn tls_config(https: bool, ca_cert: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if https {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let added = add_system_roots(&mut roots);
        debug!("trusting {} embedded and {added} system root certificates", webpki_roots::TLS_SERVER_ROOTS.len());
    }
    if let Some(path) = ca_cert {
        add_ca_cert(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::config(format!("failed to set up TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Adds the certificates of a `--ca-cert` PEM bundle; a bundle that cannot
/// be read or contains no certificate is a configuration error.
fn add_ca_cert(roots: &mut rustls::RootCertStore, path: &Path) -> Result<()> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    let invalid = |problem: String| {
        Error::config(format!(
            "invalid CA certificate file {} (--ca-cert or INFISICAL_CA_CERT_FILE): {problem}",
            path.display()
        ))
    };
    let bytes = std::fs::read(path).map_err(|error| invalid(error.to_string()))?;
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|error| invalid(format!("{error:?}")))?;
    let (added, ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(invalid(format!(
            "no usable certificate found ({ignored} rejected); expected PEM blocks starting with -----BEGIN CERTIFICATE-----"
        )));
    }
    debug!("trusting {added} certificates from {}", path.display());
    Ok(())
}

/// Turns `INFISICAL_CUSTOM_HEADERS` pairs into request headers. Messages
/// name the header, never its value.
fn header_map(headers: &[(String, String)]) -> Result<reqwest::header::HeaderMap> {
    use reqwest::header::{HeaderName, HeaderValue};

    let mut map = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        let invalid = || Error::config(format!("invalid header {name} in INFISICAL_CUSTOM_HEADERS: use a token name and a printable value"));
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut header_value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        header_value.set_sensitive(true);
        map.insert(header, header_value);
    }
    Ok(map)
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
            headers: Default::default(),
            attempts: 1,
            body: br#"{"message":"Route GET:/api/v4/secrets not found","error":"Not Found","statusCode":404}"#.to_vec(),
        };
        let missing = Reply {
            status: 404,
            headers: Default::default(),
            attempts: 1,
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
    fn query_is_percent_encoded() {
        let parameters = [("secretPath", "/a b&c".to_string()), ("environment", "dev".to_string())];
        assert_eq!(with_query("http://h/api", &parameters), "http://h/api?secretPath=%2Fa%20b%26c&environment=dev");
    }

    #[test]
    fn path_segment_encoding() {
        assert_eq!(encode_path_segment("my key/é"), "my%20key%2F%C3%A9");
        assert_eq!(encode_path_segment("dotted.key-name_1"), "dotted.key-name_1");
    }
}
