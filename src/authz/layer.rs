//! [`AuthorizeLayer`]: lets a request through only if the policy grants its
//! operation to one of the caller's roles (and, with scope checking, the
//! token carries one of the operation's declared scopes or a wildcard).
//!
//! Reads `Arc<Principal>` (from authentication) and `Arc<Operation>` (from
//! matching) in the request extensions. Refused with
//! [`Error::Forbidden`] naming the operation (403), nothing passed on: a
//! caller without a granted role or scope, and — failing closed — a request
//! without a principal. A request without a matched operation is a wiring
//! bug ([`Error::Internal`], 500).
//!
//! ```
//! # use std::sync::Arc;
//! # use simgate::authz::{AuthorizeLayer, Policy};
//! # fn stack(policy: Arc<Policy>) {
//! let layer = tower::ServiceBuilder::new().layer(AuthorizeLayer::new(policy));
//! # let _ = layer;
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, MapErr, Ready, TryFutureExt, ready};
use http::Request;
use tower::{Layer, Service};

use super::policy::Policy;
use crate::auth::Principal;
use crate::body::BoxError;
use crate::error::Error;
use crate::routes::Operation;

/// Authorizes requests against a [`Policy`] (configuration only).
#[derive(Debug, Clone)]
pub struct AuthorizeLayer {
    policy: Arc<Policy>,
}

impl AuthorizeLayer {
    /// A layer deciding with `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        AuthorizeLayer { policy }
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// Service of [`AuthorizeLayer`].
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    policy: Arc<Policy>,
}

/// Future of [`Authorize`].
pub type ResponseFuture<F, R, E> = Either<MapErr<F, fn(E) -> BoxError>, Ready<Result<R, BoxError>>>;

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        match self.decide(&req) {
            Ok(()) => Either::Left(self.inner.call(req).map_err(Into::into as fn(_) -> _)),
            Err(e) => Either::Right(ready(Err(e.into()))),
        }
    }
}

impl<S> Authorize<S> {
    fn decide<B>(&self, req: &Request<B>) -> Result<(), Error> {
        let Some(op) = req.extensions().get::<Arc<Operation>>() else {
            return Err(Error::Internal(
                "authorization without a matched operation".into(),
            ));
        };
        match req.extensions().get::<Arc<Principal>>() {
            Some(principal) => self.policy.authorize(principal, op),
            None => Err(Error::Forbidden {
                operation: op.operation_id.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::OperationTable;
    use crate::routes::config::{ApiSection, DocumentEntry};
    use http::Response;
    use std::path::Path;
    use tower::{ServiceBuilder, ServiceExt};

    fn setup() -> (Arc<OperationTable>, Arc<Policy>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let api = ApiSection {
            documents: vec![DocumentEntry {
                path: "openapi/sim-integrations.beta.json".into(),
                mount: "/beta".into(),
            }],
        };
        let t = OperationTable::load(&api, &dir.join("simgate.toml"), &dir).unwrap();
        let p = Policy::parse(
            "[roles]\nREADER = [\"@read\"]\n",
            Path::new("policy.toml"),
            &t,
        )
        .unwrap();
        (t, Arc::new(p))
    }

    fn request(op: Option<&Arc<Operation>>, roles: Option<&[&str]>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(op) = op {
            req.extensions_mut().insert(op.clone());
        }
        if let Some(roles) = roles {
            req.extensions_mut().insert(Arc::new(Principal {
                subject: "s".into(),
                client_key: "s".into(),
                issuer: "i".into(),
                roles: roles.iter().map(|r| r.to_string()).collect(),
                scopes: vec!["sp:scopes:all".into()],
                token_id: None,
            }));
        }
        req
    }

    async fn run(policy: &Arc<Policy>, req: Request<()>) -> Result<&'static str, Error> {
        let svc = ServiceBuilder::new()
            .layer(AuthorizeLayer::new(policy.clone()))
            .service_fn(|_req: Request<()>| async { Ok::<_, BoxError>(Response::new("upstream")) });
        match svc.oneshot(req).await {
            Ok(res) => Ok(res.into_body()),
            Err(e) => Err(*e.downcast::<Error>().unwrap()),
        }
    }

    #[tokio::test]
    async fn granted_operations_pass_others_are_forbidden() {
        let (t, p) = setup();
        let get = t.get("getSIMIntegration").unwrap();
        let delete = t.get("deleteSIMIntegration").unwrap();
        assert_eq!(
            run(&p, request(Some(get), Some(&["READER"])))
                .await
                .unwrap(),
            "upstream"
        );
        match run(&p, request(Some(delete), Some(&["READER"]))).await {
            Err(Error::Forbidden { operation }) => assert_eq!(operation, "deleteSIMIntegration"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            run(&p, request(Some(get), Some(&[]))).await,
            Err(Error::Forbidden { .. })
        ));
    }

    #[tokio::test]
    async fn fails_closed_without_principal_or_operation() {
        let (t, p) = setup();
        let get = t.get("getSIMIntegration").unwrap();
        assert!(matches!(
            run(&p, request(Some(get), None)).await,
            Err(Error::Forbidden { .. })
        ));
        assert!(matches!(
            run(&p, request(None, Some(&["READER"]))).await,
            Err(Error::Internal(_))
        ));
    }
}
