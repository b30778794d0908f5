//! Logging set-up: `tracing-subscriber`, plain text or JSON, `RUST_LOG`
//! first, on standard error.
//!
//! Lines go through a buffered non-blocking writer ([`crate::log_writer`]):
//! a background thread writes them out every 50 ms, so a slow disk or a full
//! pipe never stalls a request; when its buffer is full, lines are dropped
//! (and counted) rather than waited for. Colours (ANSI escape codes) are used only when standard error is a
//! terminal, never in files or pipes.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Keeps the log writer running; dropping it flushes what is buffered.
/// Hold it until the process ends.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard(
    #[allow(dead_code, reason = "held for its Drop")] Option<crate::log_writer::LogWriterGuard>,
);

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
/// Calling it twice is harmless (the second call does nothing).
pub fn init(format: LogFormat, level: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = match crate::log_writer::spawn(std::io::stderr()) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("simgate: cannot start the log writer thread ({e}); logging is off");
            return LogGuard(None);
        }
    };
    let access = writer.clone();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    if installed.is_err() {
        return LogGuard(None);
    }
    let _ = ACCESS.set(AccessSink {
        writer: access,
        format,
    });
    LogGuard(Some(guard))
}

/// Where access-log lines go when [`init`] installed the subscriber: its
/// writer, in its format.
struct AccessSink {
    writer: crate::log_writer::LogWriter,
    format: LogFormat,
}

static ACCESS: OnceLock<AccessSink> = OnceLock::new();

thread_local! {
    /// Each worker formats its access-log lines in one reused buffer.
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Appends `line` to the log writer in the subscriber's format. False when
/// [`init`] did not install the subscriber (the caller logs an event instead).
pub(crate) fn write_access(line: &crate::access_log::Line<'_>) -> bool {
    let Some(sink) = ACCESS.get() else {
        return false;
    };
    LINE.with_borrow_mut(|buf| {
        buf.clear();
        match sink.format {
            LogFormat::Json => line.write_json(buf),
            LogFormat::Pretty => line.write_text(buf),
        }
        sink.writer.append(buf.as_bytes());
    });
    true
}
