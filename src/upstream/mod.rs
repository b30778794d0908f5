//! The reference SIM Integrations API (`simgate upstream`): a stand-in for
//! the vendor's API that the demo, the tests and the benchmarks put behind
//! the gateway.
//!
//! It is a **reference server, not a product database**: everything lives
//! in memory and is gone when the process stops. By default it is open;
//! with a client registry ([`Api::with_oauth`], [`oauth`]) it is a stand-in
//! for the vendor's own authentication too: a SailPoint-shaped
//! `POST /oauth/token` (client-credentials grant) and API paths that need
//! one of its tokens (401 without a valid one, 403 when a read-only client
//! tries a change).
//!
//! All seven operations answer under both path families, `/beta/sim-integrations…`
//! and `/sim-integrations/v1…`, over one shared store, with the status codes
//! the vendor's OpenAPI documents give (which are all 200, delete included):
//!
//! | operation | method and path (after the family prefix) | success |
//! |---|---|---|
//! | list | `GET ` | 200, JSON array of ServiceDeskIntegrationDto, oldest first |
//! | create | `POST ` | 200, the new ServiceDeskIntegrationDto |
//! | get | `GET /{id}` | 200, ServiceDeskIntegrationDto |
//! | put | `PUT /{id}` | 200, full replace; `id` and `created` kept |
//! | patchSIMAttributes | `PATCH /{id}` | 200, JSON Patch on the whole integration |
//! | patchBeforeProvisioningRule | `PATCH /{id}/beforeProvisioningRule` | 200, JSON Patch on that sub-object |
//! | delete | `DELETE /{id}` | 200, empty body |
//!
//! Create assigns a 32-hex-digit `id` and RFC 3339 `created`/`modified`
//! timestamps (milliseconds, UTC); every write moves `modified` strictly
//! forward. PATCH takes an RFC 6902 array or the `{"operations": [...]}`
//! envelope the official Python SDK sends, and applies it atomically: to a
//! copy, kept only if every operation applies and the result is still a
//! valid integration with unchanged `id`/`created`/`modified`. Failures
//! are `ErrorResponseDto`s: unknown id or path → 404, malformed body or
//! failed patch → 400, body over 1 MiB → 413, wrong method → 405 with
//! `Allow`. The `trackingId` is the request's `X-Request-Id` when
//! well-formed (the gateway sends one), else a fresh id.
//!
//! Where the vendor documents disagree with themselves: the beta document
//! declares the list response as a single ServiceDeskIntegrationDto (and
//! SDK 1.x's typed `get_sim_integrations()` follows it); both families
//! return an array, as the v1 document says and as a list must. Not
//! enforced (so nobody relies on it): the v1 document's required
//! `X-SailPoint-Experimental` header and the "name must be unique" rule.
//!
//! Speed: it is the floor in benchmarks. Items keep their serialised bytes,
//! the list is cached between writes, no lock is held across an `.await`,
//! and nothing is logged per request.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! simgate::upstream::serve(listener, std::future::pending()).await
//! # }
//! ```

mod dto;
pub mod oauth;
mod patch;
mod reply;
mod route;
mod store;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::body::{Body, BoxError};
use crate::request_id::{RequestId, X_REQUEST_ID};
pub use oauth::{OAuth, UpstreamClient};
use reply::Failure;
use route::Route;
use store::Store;

/// Largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// How long in-flight requests may take to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The API: a cheap handle (clone it freely) on one shared store.
#[derive(Debug, Clone, Default)]
pub struct Api {
    store: Arc<Store>,
    /// The client registry; `None`: no authentication.
    oauth: Option<Arc<OAuth>>,
}

impl Api {
    /// An API with an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An API with an empty store whose paths need a token from `oauth`'s
    /// `/oauth/token`.
    pub fn with_oauth(oauth: Arc<OAuth>) -> Self {
        Api {
            store: Arc::default(),
            oauth: Some(oauth),
        }
    }

    /// How many integrations are stored.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether no integration is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Answers one request. Never fails: every failure is an
    /// `ErrorResponseDto` response.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let tracking_id = tracking_id(req.headers());
        if let Some(oauth) = &self.oauth {
            if req.uri().path() == oauth::TOKEN_PATH {
                if req.method() != Method::POST {
                    return Failure::method_not_allowed("POST").respond(tracking_id.as_str());
                }
                let (parts, body) = req.into_parts();
                return match read(body).await {
                    Ok(bytes) => oauth.token_endpoint(&parts.headers, &bytes),
                    Err(failure) => failure.respond(tracking_id.as_str()),
                };
            }
            if let Some(res) = oauth.check(req.method(), req.headers(), tracking_id.as_str()) {
                return res;
            }
        }
        match self.dispatch(req).await {
            Ok(res) => res,
            Err(failure) => failure.respond(tracking_id.as_str()),
        }
    }

    async fn dispatch<B>(&self, req: Request<B>) -> Result<Response<Body>, Failure>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        let route = route::parse(parts.uri.path()).ok_or_else(Failure::not_found)?;
        let store = &self.store;
        let ok = |bytes: &Bytes| Ok(reply::json(StatusCode::OK, bytes.clone()));
        match (route, &parts.method) {
            (Route::Collection, &Method::GET) => ok(&store.list()),
            (Route::Collection, &Method::POST) => {
                let doc = dto::from_body(&read(body).await?)?;
                ok(&store.create(doc)?.bytes)
            }
            (Route::Integration(id), &Method::GET) => {
                ok(&store.get(id).ok_or_else(Failure::not_found)?.bytes)
            }
            (Route::Integration(id), &Method::PUT) => {
                let doc = dto::from_body(&read(body).await?)?;
                ok(&store.update(id, move |_| Ok(doc))?.bytes)
            }
            (Route::Integration(id), &Method::PATCH) => {
                let ops = patch::parse(&read(body).await?)?;
                ok(&store
                    .update(id, |cur| patch::apply_to_integration(cur, &ops))?
                    .bytes)
            }
            (Route::Rule(id), &Method::PATCH) => {
                let ops = patch::parse(&read(body).await?)?;
                ok(&store
                    .update(id, |cur| patch::apply_to_rule(cur, &ops))?
                    .bytes)
            }
            (Route::Integration(id), &Method::DELETE) => match store.remove(id) {
                true => Ok(reply::no_content(StatusCode::OK)),
                false => Err(Failure::not_found()),
            },
            (route, _) => Err(Failure::method_not_allowed(route.allow())),
        }
    }
}

/// The request's id if the client (the gateway) sent a well-formed one.
fn tracking_id(headers: &HeaderMap) -> RequestId {
    headers
        .get(&X_REQUEST_ID)
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate)
}

/// Reads a whole body of at most [`MAX_BODY`] bytes.
async fn read<B>(body: B) -> Result<Bytes, Failure>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(Failure::too_large(MAX_BODY)),
        Err(_) => Err(Failure::bad_request("The request body could not be read.")),
    }
}

/// Serves the reference API with a fresh store on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_api(listener, Api::new(), shutdown).await
}

/// Serves `api` on `listener` (HTTP/1.1 and cleartext HTTP/2, auto-detected)
/// until `shutdown` completes; then stops accepting and gives in-flight
/// requests a grace period to finish.
pub async fn serve_api(
    listener: TcpListener,
    api: Api,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "reference upstream: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        let conn = graceful.watch(
            builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned(),
        );
        tokio::spawn(async move {
            // A client going away mid-request is its business, not ours.
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::full;
    use serde_json::{Value, json};

    async fn call(api: &Api, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let body = if body.is_null() {
            Bytes::new()
        } else {
            Bytes::from(body.to_string())
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("x-request-id", "rid-1")
            .body(full(body))
            .unwrap();
        let res = api.handle(req).await;
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    #[tokio::test]
    async fn round_trip_in_process() {
        let api = Api::new();
        let (s, created) = call(
            &api,
            Method::POST,
            "/beta/sim-integrations",
            json!({"name": "a"}),
        )
        .await;
        assert_eq!(s, 200);
        let id = created["id"].as_str().unwrap();
        let (s, got) = call(
            &api,
            Method::GET,
            &format!("/sim-integrations/v1/{id}"),
            Value::Null,
        )
        .await;
        assert_eq!((s, &got), (StatusCode::OK, &created));
        let (s, err) = call(
            &api,
            Method::GET,
            "/beta/sim-integrations/nope",
            Value::Null,
        )
        .await;
        assert_eq!(s, 404);
        assert_eq!(err["trackingId"], "rid-1");
        assert_eq!(err["messages"][0]["localeOrigin"], "DEFAULT");
        let (s, _) = call(&api, Method::POST, "/beta/sim-integrations/x", Value::Null).await;
        assert_eq!(s, 405);
        let (s, _) = call(
            &api,
            Method::DELETE,
            &format!("/beta/sim-integrations/{id}"),
            Value::Null,
        )
        .await;
        assert_eq!(s, 200);
        assert!(api.is_empty());
    }
}
