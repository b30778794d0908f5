//! Spawned test-server tasks whose panics fail the test.
//!
//! A panic in a test upstream would otherwise only close its connection, and
//! the test would see a 502 from the gateway (which some tests expect). Every
//! support server runs its tasks through [`Panics::spawn`]: the panic is
//! caught where it happens and recorded, and [`Panics::check`] (called by the
//! servers' accessors and when the last handle on the server is dropped)
//! re-raises it in the test itself.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

/// The first panic of a server's tasks, if any, and the handles of its
/// long-running tasks.
#[derive(Debug, Clone, Default)]
pub struct Panics {
    first: Arc<Mutex<Option<String>>>,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Panics {
    /// Spawns `fut`, recording a panic instead of losing it; the handle is
    /// kept (and checked by [`check`](Self::check)).
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(self.guard(fut));
        let mut handles = self.handles.lock().unwrap();
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }

    /// `fut`, with its panic recorded here (and then resumed).
    pub fn guard<F: Future<Output = ()>>(&self, fut: F) -> CatchPanic<F> {
        CatchPanic {
            fut: Box::pin(fut),
            first: self.first.clone(),
        }
    }

    /// Panics in the test if any task of the server panicked.
    pub fn check(&self) {
        if std::thread::panicking() {
            return;
        }
        if let Some(msg) = self.first.lock().unwrap().clone() {
            panic!("a test server task panicked: {msg}");
        }
    }
}

/// A future whose panic is recorded in [`Panics`].
pub struct CatchPanic<F> {
    fut: Pin<Box<F>>,
    first: Arc<Mutex<Option<String>>>,
}

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let fut = self.fut.as_mut();
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(p) => p,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic".into());
                self.first.lock().unwrap().get_or_insert(msg);
                std::panic::resume_unwind(payload)
            }
        }
    }
}

/// Checks [`Panics`] when the last clone of a server handle is dropped.
#[derive(Debug, Default)]
pub struct CheckOnDrop(pub Panics);

impl Drop for CheckOnDrop {
    fn drop(&mut self) {
        self.0.check();
    }
}
