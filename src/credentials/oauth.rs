//! The OAuth2 client-credentials grant (RFC 6749 §4.4) against one token
//! endpoint.
//!
//! Sends `POST token_url` with a form body `grant_type=client_credentials`
//! (and `scope` when configured); the client authenticates with
//! `client_id`/`client_secret` in the body (`client_secret_post`) or with
//! HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1). Accepts a 200 JSON
//! answer with `access_token`, `token_type` `bearer` (any case) and
//! `expires_in`; anything else is an error naming the status and the OAuth2
//! `error` code, never the secret or the token. HTTPS endpoints are verified
//! against the system roots plus the credential's `ca_file`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::config::{AuthMethod, OAuth2Spec};
use super::secret::Secret;
use super::source::{FetchFuture, FetchToken, Fetched};

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// Largest token response read.
const MAX_RESPONSE: usize = 64 * 1024;

/// Lifetime assumed when the endpoint does not say (`expires_in` absent).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);

/// Fetches tokens for one client.
pub(crate) struct ClientCredentials {
    spec: OAuth2Spec,
    secret: Secret,
    client: Client<Https, Full<Bytes>>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.spec.token_url)
            .field("client_id", &self.spec.client_id)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// A client for `spec` with its secret already read.
    pub(crate) fn new(spec: OAuth2Spec, secret: Secret) -> Result<Self, String> {
        let tls = client_tls(spec.ca_file.as_deref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(spec.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(ClientCredentials {
            spec,
            secret,
            client,
        })
    }

    fn request(&self) -> Result<Request<Full<Bytes>>, String> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &self.spec.scope {
            form.append_pair("scope", scope);
        }
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.spec.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        match self.spec.auth_method {
            AuthMethod::Post => {
                form.append_pair("client_id", &self.spec.client_id);
                form.append_pair("client_secret", self.secret.expose());
            }
            AuthMethod::Basic => {
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair = format!(
                    "{}:{}",
                    enc(&self.spec.client_id),
                    enc(self.secret.expose())
                );
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                let mut v = HeaderValue::from_str(&format!("Basic {b64}"))
                    .map_err(|_| "client id or secret is not a valid header value".to_owned())?;
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
        }
        req.body(Full::new(Bytes::from(form.finish())))
            .map_err(|e| format!("cannot build the token request: {e}"))
    }

    async fn fetch_once(&self) -> Result<Fetched, String> {
        let url = &self.spec.token_url;
        let req = self.request()?;
        let res = tokio::time::timeout(self.spec.timeout, self.client.request(req))
            .await
            .map_err(|_| {
                format!(
                    "token endpoint {url} did not answer within {:?}",
                    self.spec.timeout
                )
            })?
            .map_err(|e| format!("token endpoint {url} unreachable: {}", chain(&e)))?;
        let status = res.status();
        let body = tokio::time::timeout(
            self.spec.timeout,
            Limited::new(res.into_body(), MAX_RESPONSE).collect(),
        )
        .await
        .map_err(|_| format!("token endpoint {url}: response body timed out"))?
        .map_err(|e| format!("token endpoint {url}: cannot read the response: {e}"))?
        .to_bytes();
        if !status.is_success() {
            // The OAuth2 error code only (`invalid_client`, …): short, no secret.
            let code = serde_json::from_slice::<ErrorBody>(&body)
                .ok()
                .and_then(|e| e.error)
                .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()))
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            return Err(format!("token endpoint {url} answered {status}{code}"));
        }
        let answer: TokenBody = serde_json::from_slice(&body)
            .map_err(|e| format!("token endpoint {url}: not a token response: {e}"))?;
        if !answer.token_type.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "token endpoint {url}: token_type {:?} is not bearer",
                answer.token_type.chars().take(32).collect::<String>()
            ));
        }
        if answer.access_token.is_empty() {
            return Err(format!("token endpoint {url}: empty access_token"));
        }
        Ok(Fetched {
            access_token: Secret::new(&answer.access_token),
            lifetime: answer
                .expires_in
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_LIFETIME),
        })
    }
}

impl FetchToken for ClientCredentials {
    fn fetch(&self) -> FetchFuture<'_> {
        Box::pin(self.fetch_once())
    }
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A TLS client config trusting the system roots plus the PEM
/// certificates in `ca_file`.
pub(crate) fn client_tls(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let blocks = pem::parse_many(text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut added = 0;
        for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
            roots
                .add(rustls::pki_types::CertificateDer::from(
                    block.into_contents(),
                ))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{}: no CERTIFICATE in it", path.display()));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
