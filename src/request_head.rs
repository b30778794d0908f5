//! Checks of the request head that hyper leaves to the application.
//!
//! hyper refuses malformed framing itself (a bad chunk size, conflicting
//! `Content-Length` values, obs-fold); what it accepts but RFC 9112 does
//! not, this layer refuses with [`Error::BadRequestHead`] (400) before any
//! other layer reads the request:
//!
//! - more than one `Host`, or a `Host` that is not one valid value
//!   (RFC 9112 §3.2: "MUST respond with a 400");
//! - an HTTP/1.1 request without `Host` (same section);
//! - `Content-Length` together with `Transfer-Encoding` (RFC 9112 §6.1:
//!   such a message "ought to be handled as an error", the smuggling
//!   pattern CL.TE / TE.CL), and a `Transfer-Encoding` other than `chunked`.
//!
//! ```
//! use http::Request;
//! use simgate::request_head::check;
//!
//! let twice = Request::get("/").header("host", "a").header("host", "b").body(()).unwrap();
//! assert!(check(&twice).is_err());
//! let once = Request::get("/").header("host", "a").body(()).unwrap();
//! assert!(check(&once).is_ok());
//! ```

use std::task::{Context, Poll};

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Request, Version};
use tower::{Layer, Service};

use crate::body::BoxError;
use crate::error::Error;

/// Refuses request heads RFC 9112 forbids and hyper lets through.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHeadLayer;

impl<S> Layer<S> for RequestHeadLayer {
    type Service = RequestHead<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestHead { inner }
    }
}

/// Service of [`RequestHeadLayer`].
#[derive(Debug, Clone)]
pub struct RequestHead<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for RequestHead<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = futures_util::future::Either<
        futures_util::future::ErrInto<S::Future, BoxError>,
        std::future::Ready<Result<S::Response, BoxError>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        use futures_util::future::Either;
        match check(&req) {
            Ok(()) => Either::Left(self.inner.call(req).err_into()),
            Err(e) => Either::Right(std::future::ready(Err(e.into()))),
        }
    }
}

/// Why `req`'s head is refused, if it is.
pub fn check<B>(req: &Request<B>) -> Result<(), Error> {
    let h = req.headers();
    let mut hosts = h.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(Error::BadRequestHead("more than one Host header")),
        (Some(v), None) if v.is_empty() || v.as_bytes().contains(&b',') => {
            return Err(Error::BadRequestHead("invalid Host header"));
        }
        (None, _) if req.version() == Version::HTTP_11 => {
            return Err(Error::BadRequestHead("missing Host header"));
        }
        _ => {}
    }
    let mut codings = h.get_all(TRANSFER_ENCODING).iter().peekable();
    if codings.peek().is_some() {
        if h.contains_key(CONTENT_LENGTH) {
            return Err(Error::BadRequestHead(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        let only_chunked = codings.all(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .all(|c| c.trim().eq_ignore_ascii_case("chunked"))
            })
        });
        if !only_chunked {
            return Err(Error::BadRequestHead("unsupported Transfer-Encoding"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::post("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_must_be_one_value() {
        assert!(check(&req(&[("host", "a")])).is_ok());
        for bad in [
            &[("host", "a"), ("host", "b")][..],
            &[("host", "a"), ("host", "a")],
            &[("host", "a, b")],
            &[("host", "")],
            &[],
        ] {
            assert!(
                matches!(check(&req(bad)), Err(Error::BadRequestHead(_))),
                "{bad:?}"
            );
        }
        let mut old = req(&[]);
        *old.version_mut() = Version::HTTP_10;
        assert!(check(&old).is_ok());
        let mut h2 = req(&[]);
        *h2.version_mut() = Version::HTTP_2;
        assert!(check(&h2).is_ok());
    }

    #[test]
    fn length_and_coding_do_not_mix() {
        let chunked = [("host", "a"), ("transfer-encoding", "chunked")];
        assert!(check(&req(&chunked)).is_ok());
        assert!(
            check(&req(&[
                ("host", "a"),
                ("transfer-encoding", "gzip, chunked")
            ]))
            .is_err()
        );
        assert!(
            check(&req(&[
                ("host", "a"),
                ("transfer-encoding", "chunked"),
                ("content-length", "4")
            ]))
            .is_err()
        );
    }
}
