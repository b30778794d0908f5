//! The log writer: lines are appended to a shared buffer in memory, and a
//! background thread writes the buffer out [`FLUSH_INTERVAL`] after its
//! first line (sooner once it holds [`FLUSH_BYTES`]), in one `write(2)` per
//! flush, as nginx's `access_log … buffer= flush=` does. The thread sleeps
//! while nothing is logged.
//!
//! A request therefore never makes a system call or wakes a thread for its
//! log line, and never waits for a slow disk or a full pipe: when the buffer
//! already holds [`MAX_BUFFERED`] bytes (the destination is stuck), new lines
//! are dropped and counted, and the count is written once the destination
//! takes lines again. Dropping the [`LogWriterGuard`] writes what is left.
//!
//! (`tracing-appender`'s non-blocking writer sends each line through a
//! channel and wakes its worker for it: one wake-up and one `write(2)` per
//! line, several µs per request on a loaded core, and 4 MB of channel slots
//! allocated up front.)

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest time a line waits in memory.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// A buffer this full is written at once.
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;
/// Beyond this, lines are dropped until the destination catches up.
pub(crate) const MAX_BUFFERED: usize = 4 * 1024 * 1024;

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread early: a full buffer, or closing.
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only bytes behind: go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where the subscriber writes each formatted line (one `write` per
/// line); cloned per event.
#[derive(Clone)]
pub(crate) struct LogWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter").finish_non_exhaustive()
    }
}

/// Keeps the writer thread running; dropping it writes what is buffered
/// and stops the thread.
pub(crate) struct LogWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LogWriterGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriterGuard").finish_non_exhaustive()
    }
}

/// A writer into `out`, written by a background thread. Fails only when
/// the thread cannot be started.
pub(crate) fn spawn<W: Write + Send + 'static>(
    out: W,
) -> std::io::Result<(LogWriter, LogWriterGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
    });
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("simgate-log".into())
            .spawn(move || write_loop(&shared, out))?
    };
    Ok((
        LogWriter {
            shared: shared.clone(),
        },
        LogWriterGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

fn write_loop<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let closed = {
            let mut state = shared.lock();
            // Idle: sleep until the first line (no wake-ups while nothing
            // is logged).
            while !state.closed && state.lines.is_empty() {
                state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            // Then gather lines for one interval, or until the buffer is full.
            if !state.closed && state.lines.len() < FLUSH_BYTES {
                state = shared
                    .wake
                    .wait_timeout(state, FLUSH_INTERVAL)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            std::mem::swap(&mut state.lines, &mut spare);
            state.closed
        };
        // Nowhere to report a failing log destination: the lines are lost,
        // the requests go on.
        if !spare.is_empty() {
            let _ = out.write_all(&spare);
            spare.clear();
        }
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "simgate: {dropped} log lines dropped (the log destination fell behind)"
            );
        }
        let _ = out.flush();
        // A buffer grown by a burst is not kept.
        spare.shrink_to(FLUSH_BYTES * 2);
        if closed {
            return;
        }
    }
}

impl LogWriter {
    /// Appends whole lines, or drops them (counted) when the buffer is full.
    pub(crate) fn append(&self, lines: &[u8]) {
        let mut state = self.shared.lock();
        let before = state.lines.len();
        if before + lines.len() > MAX_BUFFERED {
            drop(state);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.lines.extend_from_slice(lines);
        // Wake the writer for the first line of a batch (it is idle) and
        // for a full buffer; never for the lines in between.
        let first = before == 0;
        let full = before < FLUSH_BYTES && state.lines.len() >= FLUSH_BYTES;
        drop(state);
        if first || full {
            self.shared.wake.notify_one();
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination the test can read, and stop (a full pipe).
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        stuck: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _wait = self.stuck.lock().unwrap();
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(sink: &Sink) -> String {
        String::from_utf8(sink.bytes.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_arrive_within_the_interval_and_all_on_drop() {
        let sink = Sink::default();
        let (mut writer, guard) = spawn(sink.clone()).unwrap();
        writer.write_all(b"one\n").unwrap();
        std::thread::sleep(FLUSH_INTERVAL * 4);
        assert_eq!(text(&sink), "one\n");
        writer.write_all(b"two\n").unwrap();
        drop(guard);
        assert_eq!(text(&sink), "one\ntwo\n");
    }

    #[test]
    fn a_stuck_destination_drops_lines_and_says_how_many() {
        let sink = Sink::default();
        let stuck = sink.stuck.lock().unwrap();
        let (mut writer, guard) = spawn(sink.clone()).unwrap();
        let line = [b'x'; 1023];
        let mut line = line.to_vec();
        line.push(b'\n');
        // Fills the buffer while the writer thread holds its first batch.
        writer.write_all(&line).unwrap();
        std::thread::sleep(FLUSH_INTERVAL * 2);
        let lines = MAX_BUFFERED / line.len() + 10;
        for _ in 0..lines {
            writer.write_all(&line).unwrap();
        }
        drop(stuck);
        drop(guard);
        let out = text(&sink);
        let written = out.lines().filter(|l| l.starts_with('x')).count();
        assert!(written < lines + 1, "{written} of {}", lines + 1);
        let dropped = lines + 1 - written;
        assert!(
            out.contains(&format!("simgate: {dropped} log lines dropped")),
            "{}",
            &out[out.len().saturating_sub(200)..]
        );
    }
}
