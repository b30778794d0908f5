//! The authentication middleware: every request must carry a valid bearer
//! token from a configured issuer.
//!
//! The token is taken only from `Authorization: Bearer <token>` (scheme
//! case-insensitive); a token in the query string is never looked at. On
//! success the [`Principal`](super::Principal) goes into the request
//! extensions as `Arc<Principal>`. Refused, as
//! [`Error::Unauthenticated`] (401 with an RFC 6750 challenge):
//! no `Authorization` header or another scheme (no `error` in the
//! challenge), several `Authorization` headers, an empty or non-ASCII token,
//! and every token the [`Authenticator`] refuses. Reasons never echo the
//! token.
//!
//! ```
//! # use std::sync::Arc;
//! # use simgate::auth::{AuthenticateLayer, Authenticator};
//! # fn demo(auth: Arc<Authenticator>) {
//! use simgate::body::{BoxError, Body, empty};
//! use tower::ServiceBuilder;
//! let svc = ServiceBuilder::new()
//!     .layer(AuthenticateLayer::new(auth))
//!     .service_fn(|_req: http::Request<Body>| async {
//!         Ok::<_, BoxError>(http::Response::new(empty()))
//!     });
//! # let _ = svc; }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::Either;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request, Response};
use tower::{Layer, Service};

use super::Authenticator;
use crate::body::{Body, BoxError};
use crate::error::Error;
use crate::record::RequestRecord;
use crate::request_id::RequestId;

/// Requires a valid bearer token on every request.
#[derive(Debug, Clone)]
pub struct AuthenticateLayer {
    auth: Arc<Authenticator>,
}

impl AuthenticateLayer {
    /// Authenticates with `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        AuthenticateLayer { auth }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// Service of [`AuthenticateLayer`].
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S> Service<Request<Body>> for Authenticate<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let record = req.extensions().get::<RequestRecord>().cloned();
        let token = match bearer(req.headers()) {
            Ok(t) => t,
            Err(e) => {
                if let Some(r) = &record {
                    r.set_auth_failure(match &e {
                        Error::Unauthenticated {
                            token_present: false,
                            ..
                        } if req.headers().contains_key(AUTHORIZATION) => "wrong_scheme",
                        Error::Unauthenticated {
                            token_present: false,
                            ..
                        } => "missing_token",
                        _ => "malformed_header",
                    });
                }
                return Box::pin(std::future::ready(Err(e.into())));
            }
        };
        let auth = self.auth.clone();
        // The ready service goes into the future; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let id = req.extensions().get::<RequestId>().cloned();
        let verified = async move { auth.authenticate(&token).await };
        // A combinator rather than one async block: the inner future is then
        // a named type, which keeps the boxed future `Send`.
        Box::pin(verified.then(move |verified| match verified {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                Either::Left(inner.call(req))
            }
            Err(reject) => {
                if let Some(r) = &record {
                    r.set_auth_failure(reject.label());
                }
                if let Some(id) = id {
                    tracing::debug!(request_id = %id, reason = %reject, "token refused");
                }
                Either::Right(std::future::ready(Err(Error::invalid_token(
                    reject.to_string(),
                )
                .into())))
            }
        }))
    }
}

/// The bearer token of a request, or why there is none.
pub fn bearer(headers: &HeaderMap) -> Result<String, Error> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(if headers.contains_key(AUTHORIZATION) {
            Error::invalid_token("more than one Authorization header")
        } else {
            Error::Unauthenticated {
                reason: "missing bearer token".into(),
                token_present: false,
            }
        });
    };
    let value = value
        .to_str()
        .map_err(|_| Error::invalid_token("malformed Authorization header"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::Unauthenticated {
            reason: "Authorization scheme must be Bearer".into(),
            token_present: false,
        });
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(Error::invalid_token("empty bearer token"));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::generate_rsa;
    use crate::auth::mint::mint;
    use crate::auth::{AuthSection, Principal};
    use http::HeaderValue;
    use serde_json::json;
    use std::path::Path;
    use tower::{ServiceBuilder, ServiceExt};

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn reason(e: Error) -> (String, bool) {
        match e {
            Error::Unauthenticated {
                reason,
                token_present,
            } => (reason, token_present),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bearer_is_the_only_source() {
        assert_eq!(bearer(&headers(&["Bearer abc"])).unwrap(), "abc");
        assert_eq!(bearer(&headers(&["bEaReR  abc"])).unwrap(), "abc");
        assert_eq!(
            reason(bearer(&headers(&[])).unwrap_err()),
            ("missing bearer token".into(), false)
        );
        assert!(!reason(bearer(&headers(&["Basic dTpw"])).unwrap_err()).1);
        assert_eq!(
            reason(bearer(&headers(&["Bearer a", "Bearer b"])).unwrap_err()).0,
            "more than one Authorization header"
        );
        for empty in ["Bearer", "Bearer ", "Bearer    "] {
            assert_eq!(
                reason(bearer(&headers(&[empty])).unwrap_err()),
                ("empty bearer token".into(), true)
            );
        }
    }

    #[tokio::test]
    async fn principal_travels_in_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate_rsa("k1").unwrap();
        std::fs::write(dir.path().join("jwks.json"), key.jwks().to_string()).unwrap();
        let section: AuthSection = toml::from_str(
            r#"[[issuers]]
issuer = "https://idp"
audiences = ["simgate"]
jwks_file = "jwks.json"
algorithms = ["RS256"]"#,
        )
        .unwrap();
        let auth = Authenticator::from_config(&section, Path::new("t.toml"), dir.path()).unwrap();
        let svc = ServiceBuilder::new()
            .layer(AuthenticateLayer::new(auth))
            .service_fn(|req: Request<Body>| async move {
                let p = req.extensions().get::<Arc<Principal>>().unwrap().clone();
                Ok::<_, BoxError>(Response::new(crate::body::full(p.subject.clone())))
            });
        let now = crate::auth::clock::Clock::now(&crate::auth::clock::SystemClock);
        let token = mint(
            &key,
            &json!({"iss": "https://idp", "aud": "simgate", "sub": "alice", "exp": now + 60}),
        )
        .unwrap();
        let req = Request::get("/x")
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(crate::body::empty())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap();
        assert_eq!(body.to_bytes(), "alice");

        let req = Request::get("/x?access_token=abc")
            .body(crate::body::empty())
            .unwrap();
        let err = svc.clone().oneshot(req).await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<Error>(),
            Some(Error::Unauthenticated {
                token_present: false,
                ..
            })
        ));
        let req = Request::get("/x")
            .header(AUTHORIZATION, format!("Bearer {token}x"))
            .body(crate::body::empty())
            .unwrap();
        let err = svc.oneshot(req).await.unwrap_err().to_string();
        assert_eq!(err, "invalid signature");
        assert!(!err.contains(&token));
    }
}
