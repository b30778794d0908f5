//! The reference upstream's own OAuth2: a SailPoint-shaped token endpoint
//! and the check of its tokens on the API paths.
//!
//! `POST /oauth/token` takes a form body with `grant_type=client_credentials`
//! and the client's `client_id`/`client_secret` (in the body, or as HTTP
//! Basic) and answers `{"access_token", "token_type": "bearer",
//! "expires_in", "scope", "jti"}`. Tokens are opaque random strings, valid
//! for the registry's lifetime. Refused: another grant type (400
//! `unsupported_grant_type`), an unknown client or a wrong secret (401
//! `invalid_client`), a body that is not a form (400 `invalid_request`).
//!
//! With a registry, every API path needs a valid token: none, unknown or
//! expired → 401 `{"error": "…"}` (the vendor's shape) with
//! `WWW-Authenticate: Bearer`; a read-only client's token on anything but
//! GET → 403 `ErrorResponseDto`. Without a registry (the default) the API is
//! open, as before, and `/oauth/token` is 404.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::json;

use super::reply::{self, Failure};
use crate::body::Body;

/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/oauth/token";

/// One client the reference upstream knows.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamClient {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: String,
    /// May only read (GET).
    pub read_only: bool,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamClient")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .field("read_only", &self.read_only)
            .finish()
    }
}

impl UpstreamClient {
    /// A client with a fresh random secret.
    pub fn generate(id: &str, read_only: bool) -> UpstreamClient {
        UpstreamClient {
            id: id.into(),
            secret: random(),
            read_only,
        }
    }
}

/// (client id, method, status of the token check).
type CallKey = (Arc<str>, Method, u16);

#[derive(Debug)]
struct Issued {
    client_id: Arc<str>,
    read_only: bool,
    expires: Instant,
}

/// The client registry and the tokens issued to its clients.
#[derive(Debug)]
pub struct OAuth {
    clients: Vec<UpstreamClient>,
    lifetime: Duration,
    tokens: Mutex<HashMap<String, Issued>>,
    token_requests: AtomicUsize,
    /// API calls that carried a known token: (client, method, status) → count.
    calls: Mutex<HashMap<CallKey, usize>>,
}

impl OAuth {
    /// A registry of `clients` whose tokens live `lifetime`.
    pub fn new(clients: Vec<UpstreamClient>, lifetime: Duration) -> Arc<OAuth> {
        Arc::new(OAuth {
            clients,
            lifetime: lifetime.max(Duration::from_secs(1)),
            tokens: Mutex::new(HashMap::new()),
            token_requests: AtomicUsize::new(0),
            calls: Mutex::new(HashMap::new()),
        })
    }

    /// How many token requests were answered (successful or not).
    pub fn token_requests(&self) -> usize {
        self.token_requests.load(Ordering::SeqCst)
    }

    /// How many API calls with `method` carried a token of `client_id` and
    /// were answered `status` by the token check (200: let through to the
    /// API, 403: refused as a read-only client's change).
    pub fn calls(&self, client_id: &str, method: &Method, status: u16) -> usize {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls
            .iter()
            .filter(|((c, m, s), _)| &**c == client_id && m == method && *s == status)
            .map(|(_, n)| *n)
            .sum()
    }

    fn count(&self, client: &Arc<str>, method: &Method, status: u16) {
        let mut calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        *calls
            .entry((client.clone(), method.clone(), status))
            .or_default() += 1;
    }

    /// Forgets every issued token, as if they had all expired.
    pub fn revoke_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers `POST /oauth/token`.
    pub(crate) fn token_endpoint(&self, headers: &HeaderMap, body: &Bytes) -> Response<Body> {
        self.token_requests.fetch_add(1, Ordering::SeqCst);
        let is_form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        if !is_form {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            );
        }
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        let (id, secret) = match basic(headers) {
            Some(pair) => pair,
            None => (
                form.get("client_id").cloned().unwrap_or_default(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        let Some(client) = self
            .clients
            .iter()
            .find(|c| c.id == id && constant_time_eq(c.secret.as_bytes(), secret.as_bytes()))
        else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Bad credentials",
            );
        };
        let token = random();
        let now = Instant::now();
        {
            let mut tokens = self.lock();
            tokens.retain(|_, t| t.expires > now);
            tokens.insert(
                token.clone(),
                Issued {
                    client_id: client.id.as_str().into(),
                    read_only: client.read_only,
                    expires: now + self.lifetime,
                },
            );
        }
        let scope = if client.read_only {
            "sp:scopes:default"
        } else {
            "sp:scopes:all"
        };
        let body = json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.lifetime.as_secs(),
            "scope": scope,
            "jti": random(),
        });
        let mut res = reply::json(StatusCode::OK, Bytes::from(body.to_string()));
        res.headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        res
    }

    /// Checks an API request's token: `None` to serve it, else the refusal.
    pub(crate) fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        tracking_id: &str,
    ) -> Option<Response<Body>> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(token) = token else {
            return Some(unauthorized("JWT validation failed: no access token"));
        };
        let (client, read_only) = match self.lock().get(token) {
            Some(t) if t.expires > Instant::now() => (t.client_id.clone(), t.read_only),
            Some(_) => return Some(unauthorized("JWT validation failed: JWT is expired")),
            None => return Some(unauthorized("JWT validation failed: invalid access token")),
        };
        if read_only && !matches!(*method, Method::GET | Method::HEAD) {
            self.count(&client, method, 403);
            return Some(Failure::forbidden(
                "The server understood the request but refuses to authorize it: this client may only read.",
            )
            .respond(tracking_id));
        }
        self.count(&client, method, 200);
        None
    }
}

/// `Authorization: Basic` id and secret (form-urlencoded, RFC 6749 §2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response<Body> {
    let body = json!({ "error": code, "error_description": description });
    let mut res = reply::json(status, Bytes::from(body.to_string()));
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth\""),
        );
    }
    res
}

fn unauthorized(text: &'static str) -> Response<Body> {
    let mut res = reply::json(
        StatusCode::UNAUTHORIZED,
        Bytes::from(json!({ "error": text }).to_string()),
    );
    res.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}
