//! Cross-origin requests from browsers (CORS), with tower-http's
//! [`CorsLayer`].
//!
//! Off unless `[cors] allowed_origins` names at least one origin:
//!
//! ```toml
//! [cors]
//! allowed_origins = ["https://tools.example.com"]  # exact origins, or ["*"]
//! allowed_methods = ["GET", "POST"]          # default: GET, HEAD, POST, PUT, PATCH, DELETE
//! allowed_headers = ["authorization", "content-type"]  # default: these, accept, x-request-id
//! expose_headers = ["x-request-id"]          # default: x-request-id, retry-after, ratelimit, ratelimit-policy
//! allow_credentials = false                  # default; not with "*"
//! max_age_secs = 600                         # how long browsers may cache a preflight
//! ```
//!
//! [`CorsGateLayer`] sits above authentication. A request whose `Origin` is
//! allowed goes through the [`CorsLayer`]: a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered here, never needs a token
//! and is never forwarded; an actual request goes on unchanged and its
//! response — error responses included — carries the CORS headers.
//! Everything else — no `Origin`, an origin not allowed, a plain `OPTIONS`
//! — bypasses the CORS layer completely: it gets no CORS headers and is
//! authenticated, rate limited and audited like any request (so a preflight
//! from a disallowed origin gets the ordinary 401).

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::Either;
use http::header::{ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use serde::Deserialize;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

use crate::error::ConfigError;

/// `[cors]`, as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    /// Origins (`scheme://host[:port]`) browsers may call from; `["*"]`
    /// for any. Empty (default): CORS is off.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for.
    pub allowed_methods: Option<Vec<String>>,
    /// Request headers a preflight may ask for.
    pub allowed_headers: Option<Vec<String>>,
    /// Response headers the browser lets scripts read.
    pub expose_headers: Option<Vec<String>>,
    /// Whether browsers may send credentials (cookies, client certificates).
    pub allow_credentials: Option<bool>,
    /// How long a preflight answer may be cached, in seconds (default 600).
    pub max_age_secs: Option<u64>,
}

/// The origins the gate lets into the CORS layer.
#[derive(Debug, Clone)]
enum Origins {
    Any,
    List(Vec<HeaderValue>),
}

impl Origins {
    fn allows(&self, origin: &HeaderValue) -> bool {
        match self {
            Origins::Any => true,
            Origins::List(list) => list.iter().any(|o| o == origin),
        }
    }
}

/// Routes requests from allowed origins through a [`CorsLayer`]
/// (configuration only).
#[derive(Debug, Clone)]
pub struct CorsGateLayer {
    origins: Origins,
    cors: CorsLayer,
}

impl CorsGateLayer {
    /// The layer `[cors]` describes; `Ok(None)` when CORS is off. Errors
    /// name `config_path` and the key.
    pub fn from_section(
        s: &CorsSection,
        config_path: &std::path::Path,
    ) -> Result<Option<CorsGateLayer>, ConfigError> {
        if s.allowed_origins.is_empty() {
            return Ok(None);
        }
        let at = |key: &str, why: String| ConfigError::at(config_path, &format!("cors.{key}"), why);
        let credentials = s.allow_credentials.unwrap_or(false);
        let origins = if s.allowed_origins.iter().any(|o| o == "*") {
            if s.allowed_origins.len() > 1 {
                return Err(at("allowed_origins", "\"*\" must be the only entry".into()));
            }
            if credentials {
                return Err(at(
                    "allow_credentials",
                    "cannot be true with allowed_origins = [\"*\"]".into(),
                ));
            }
            Origins::Any
        } else {
            let mut list = Vec::new();
            for o in &s.allowed_origins {
                list.push(origin(o).map_err(|e| at("allowed_origins", format!("{o:?}: {e}")))?);
            }
            Origins::List(list)
        };
        let methods = match &s.allowed_methods {
            None => vec![
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ],
            Some(list) => list
                .iter()
                .map(|m| {
                    Method::from_bytes(m.as_bytes())
                        .map_err(|_| at("allowed_methods", format!("{m:?} is not a method")))
                })
                .collect::<Result<_, _>>()?,
        };
        let names = |key: &str, list: &Option<Vec<String>>, default: &[&str]| {
            let list: Vec<String> = match list {
                None => default.iter().map(|s| (*s).to_owned()).collect(),
                Some(l) => l.clone(),
            };
            list.iter()
                .map(|h| {
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| at(key, format!("{h:?} is not a header name")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let headers = names(
            "allowed_headers",
            &s.allowed_headers,
            &["authorization", "content-type", "accept", "x-request-id"],
        )?;
        let expose = names(
            "expose_headers",
            &s.expose_headers,
            &[
                "x-request-id",
                "retry-after",
                "ratelimit",
                "ratelimit-policy",
            ],
        )?;
        let allow_origin = match &origins {
            Origins::Any => AllowOrigin::any(),
            Origins::List(list) => AllowOrigin::list(list.clone()),
        };
        let cors = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods(methods)
            .allow_headers(headers)
            .expose_headers(expose)
            .allow_credentials(credentials)
            .max_age(Duration::from_secs(s.max_age_secs.unwrap_or(600)));
        Ok(Some(CorsGateLayer { origins, cors }))
    }
}

/// Checks one configured origin: `scheme://host[:port]`, nothing else.
fn origin(o: &str) -> Result<HeaderValue, String> {
    let uri: http::Uri = o.parse().map_err(|_| "not an origin".to_owned())?;
    let ok = matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
        && uri
            .path_and_query()
            .is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
        && !o.ends_with('/');
    if !ok {
        return Err(
            "must be scheme://host[:port] (http or https, no path, no trailing '/')".into(),
        );
    }
    HeaderValue::from_str(&o.to_ascii_lowercase()).map_err(|e| e.to_string())
}

impl<S> Layer<S> for CorsGateLayer {
    type Service = CorsGate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CorsGate {
            origins: self.origins.clone(),
            cors: self.cors.layer(inner),
        }
    }
}

/// Service of [`CorsGateLayer`].
#[derive(Debug, Clone)]
pub struct CorsGate<S> {
    origins: Origins,
    cors: Cors<S>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CorsGate<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.cors.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let allowed = req
            .headers()
            .get(ORIGIN)
            .is_some_and(|o| self.origins.allows(o));
        let preflight = req.method() == Method::OPTIONS
            && req.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
        let plain_options = req.method() == Method::OPTIONS && !preflight;
        if allowed && !plain_options {
            Either::Left(self.cors.call(req))
        } else {
            Either::Right(self.cors.get_mut().call(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use tower::{ServiceBuilder, ServiceExt};

    fn section(text: &str) -> CorsSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn off_by_default_and_bad_values_name_the_key() {
        let p = Path::new("/etc/simgate.toml");
        assert!(
            CorsGateLayer::from_section(&CorsSection::default(), p)
                .unwrap()
                .is_none()
        );
        for (text, key) in [
            (
                "allowed_origins = [\"tools.example.com\"]",
                "cors.allowed_origins",
            ),
            (
                "allowed_origins = [\"https://a.example/\"]",
                "cors.allowed_origins",
            ),
            (
                "allowed_origins = [\"https://a.example/x\"]",
                "cors.allowed_origins",
            ),
            (
                "allowed_origins = [\"*\", \"https://a.example\"]",
                "cors.allowed_origins",
            ),
            (
                "allowed_origins = [\"*\"]\nallow_credentials = true",
                "cors.allow_credentials",
            ),
            (
                "allowed_origins = [\"https://a.example\"]\nallowed_headers = [\"a b\"]",
                "cors.allowed_headers",
            ),
        ] {
            let e = CorsGateLayer::from_section(&section(text), p).unwrap_err();
            assert!(
                e.0.contains(key) && e.0.contains("/etc/simgate.toml"),
                "{text}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn only_allowed_origins_get_cors_headers() {
        let layer = CorsGateLayer::from_section(
            &section("allowed_origins = [\"https://tools.example.com\"]"),
            Path::new("x.toml"),
        )
        .unwrap()
        .unwrap();
        let svc = ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_req: Request<()>| async {
                Ok::<_, std::convert::Infallible>(Response::new("inner".to_owned()))
            });
        let req = |method: Method, origin: Option<&str>, preflight: bool| {
            let mut b = Request::builder().method(method).uri("/x");
            if let Some(o) = origin {
                b = b.header(ORIGIN, o);
            }
            if preflight {
                b = b.header(ACCESS_CONTROL_REQUEST_METHOD, "POST");
            }
            b.body(()).unwrap()
        };
        let ok = "https://tools.example.com";
        let res = svc
            .clone()
            .oneshot(req(Method::OPTIONS, Some(ok), true))
            .await
            .unwrap();
        assert_eq!(res.headers()["access-control-allow-origin"], ok);
        assert!(
            res.headers()["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST")
        );
        assert_eq!(res.body(), "");
        let res = svc
            .clone()
            .oneshot(req(Method::GET, Some(ok), false))
            .await
            .unwrap();
        assert_eq!(res.headers()["access-control-allow-origin"], ok);
        assert_eq!(res.body(), "inner");
        for (m, o, pre) in [
            (Method::OPTIONS, Some("https://evil.example"), true),
            (Method::GET, Some("https://evil.example"), false),
            (Method::GET, None, false),
            (Method::OPTIONS, Some(ok), false),
        ] {
            let res = svc.clone().oneshot(req(m.clone(), o, pre)).await.unwrap();
            assert_eq!(res.body(), "inner", "{m} {o:?}");
            assert!(
                !res.headers()
                    .keys()
                    .any(|k| k.as_str().starts_with("access-control-")),
                "{m} {o:?}: {:?}",
                res.headers()
            );
        }
    }
}
