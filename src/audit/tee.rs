//! A request body that keeps what the layers below read of it.
//!
//! The outcome layer wraps the request body in a [`Tee`] instead of reading
//! it: a request refused before anyone reads its body (authorization, rate
//! limit) is never buffered for the audit, and one that validation read and
//! refused is recorded with exactly the bytes validation saw. The chunks are
//! shared `Bytes`, so keeping them costs no copy.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::body::{Body, BoxError};

/// What a [`Tee`] has seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    chunks: Mutex<Vec<Bytes>>,
    complete: AtomicBool,
}

impl Seen {
    /// The whole body, if it was read to its end.
    pub fn complete_body(&self) -> Option<Bytes> {
        if !self.complete.load(Ordering::Acquire) {
            return None;
        }
        let chunks = self.chunks.lock().ok()?;
        Some(match chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut all = BytesMut::with_capacity(many.iter().map(Bytes::len).sum());
                many.iter().for_each(|c| all.extend_from_slice(c));
                all.freeze()
            }
        })
    }

    fn push(&self, chunk: &Bytes) {
        if let Ok(mut chunks) = self.chunks.lock() {
            chunks.push(chunk.clone());
        }
    }

    fn finish(&self) {
        self.complete.store(true, Ordering::Release);
    }
}

pin_project_lite::pin_project! {
    /// A body that records its data frames into a shared [`Seen`].
    pub struct Tee {
        #[pin]
        inner: Body,
        seen: Arc<Seen>,
    }
}

impl std::fmt::Debug for Tee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tee").field("seen", &self.seen).finish()
    }
}

/// Wraps `body`; the returned [`Seen`] fills as the body is read.
pub fn tee(body: Body) -> (Body, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    if body.is_end_stream() {
        seen.finish();
    }
    let tee = Tee {
        inner: body,
        seen: seen.clone(),
    };
    (crate::body::boxed(tee), seen)
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    this.seen.push(data);
                }
                if this.inner.is_end_stream() {
                    this.seen.finish();
                }
            }
            None => this.seen.finish(),
            Some(Err(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn keeps_what_was_read() {
        let stream = http_body_util::StreamBody::new(futures_util::stream::iter(
            ["ab", "cd"].map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from(s)))),
        ));
        let (body, seen) = tee(crate::body::boxed(stream));
        assert_eq!(seen.complete_body(), None, "nothing read yet");
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read, "abcd");
        assert_eq!(seen.complete_body().unwrap(), "abcd");
    }

    #[tokio::test]
    async fn size_hint_passes_through_and_empty_is_complete() {
        let (body, seen) = tee(crate::body::full("12345"));
        assert_eq!(body.size_hint().exact(), Some(5));
        drop(body);
        assert_eq!(seen.complete_body(), None, "never read");
        let (_body, seen) = tee(crate::body::empty());
        assert_eq!(seen.complete_body().unwrap(), "");
    }
}
