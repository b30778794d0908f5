//! The one body type that travels through the stack, in both directions.
//!
//! Requests arrive as hyper's `Incoming` and responses come back from the
//! upstream the same way; synthetic responses (errors, health) are small
//! `Full` buffers. Boxing them behind one type keeps every layer generic-free
//! at the cost of one allocation per message.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Boxed error for bodies and services.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every request and response inside the stack.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Boxes any body into [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body holding the given bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}
