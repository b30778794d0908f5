//! The idle timer of an HTTP/2 connection.
//!
//! HTTP/1.1 connections are bounded between requests by hyper's header read
//! timeout; HTTP/2 has no such timer, so a peer that sends its preface and
//! SETTINGS and then nothing (or only PINGs) would hold the connection
//! forever. [`Idle`] counts the requests in flight on one connection (from
//! the call of the service until its response body is dropped);
//! [`Idle::expired`] resolves once none has been in flight for the timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;

use crate::body::{Body, BoxError};

/// The in-flight requests of one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Idle(Arc<State>);

#[derive(Debug, Default)]
struct State {
    in_flight: AtomicUsize,
    changed: Notify,
}

impl Idle {
    /// Marks one request in flight until the returned guard is dropped.
    pub(crate) fn busy(&self) -> Busy {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
        Busy(self.0.clone())
    }

    /// Resolves once no request has been in flight for `timeout`.
    pub(crate) async fn expired(&self, timeout: Duration) {
        loop {
            let changed = self.0.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.0.in_flight.load(Ordering::Acquire) == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(timeout) => return,
                    _ = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

/// One request in flight.
#[derive(Debug)]
pub(crate) struct Busy(Arc<State>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it is dropped.
    pub(crate) struct Tracked {
        #[pin]
        body: Body,
        busy: Busy,
    }
}

impl Tracked {
    /// `body`, holding `busy`.
    pub(crate) fn new(body: Body, busy: Busy) -> Self {
        Tracked { body, busy }
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_the_last_request_is_done() {
        let idle = Idle::default();
        let busy = idle.busy();
        let waiter = tokio::spawn({
            let idle = idle.clone();
            async move { idle.expired(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiter.is_finished(), "a request is in flight");
        drop(busy);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!waiter.is_finished());
        let again = idle.busy();
        drop(again);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !waiter.is_finished(),
            "the last request restarted the timer"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        waiter.await.unwrap();
    }
}
