//! The one writer of the trail file.
//!
//! A dedicated thread owns the file, so lines never interleave or tear under
//! concurrency, and assigns each record its `seq`, `prev` and `time` in file
//! order. Callers serialize (and redact) their record on their own task, hand
//! it over through a channel and wait until it is on stable storage:
//!
//! - [`FlushPolicy::Always`]: each record is written and `fdatasync`ed on
//!   its own before its caller is released;
//! - [`FlushPolicy::Batch`]: the writer takes every record waiting in the
//!   channel (up to [`MAX_BATCH`]), writes them in one go and syncs once;
//!   every caller in the group is released only after that sync. While one
//!   sync runs the next group gathers, so there is no timer and no added
//!   latency when idle.
//!
//! If a write or sync fails, the file is cut back to its last good length
//! and every caller of the group gets an error (the chain does not advance).
//! If even that fails, the file is reopened — and its torn end cut off — on
//! the next attempt. A target that cannot be opened at all (missing
//! permissions, full disk) is retried on every record, so the trail recovers
//! by itself once the cause is fixed.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;

use super::chain::Link;
use super::config::{AuditConfig, FlushPolicy};
use super::record::{Record, ReloadRecord};
use super::rotate::{self, Clock, Rotation, SystemClock, Tail, TailError};

/// Most records written per sync under [`FlushPolicy::Batch`].
pub const MAX_BATCH: usize = 1024;

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Its `seq`.
    pub seq: u64,
    /// Its hash (the next record's `prev`).
    pub hash: String,
}

/// Why a record was not durably written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened, written or synced.
    #[error("audit trail {path} unavailable: {why}")]
    Unavailable {
        /// The trail file.
        path: PathBuf,
        /// The I/O error.
        why: String,
    },
    /// The writer thread is gone.
    #[error("audit writer stopped")]
    Closed,
    /// The record could not be serialized.
    #[error("audit record not serializable: {0}")]
    Serialize(String),
}

type Reply = oneshot::Sender<Result<Appended, AuditError>>;

struct Job {
    record: String,
    reply: Option<Reply>,
}

/// A handle on the trail; clones share the one writer thread, which stops
/// once every handle is dropped (after writing what was queued).
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens `config.path` (creating its folder) and starts the writer
    /// thread. If the file cannot be opened the failure is logged and the
    /// open retried on every record, which fails until it succeeds.
    pub fn open(config: &AuditConfig) -> io::Result<AuditLog> {
        Self::open_with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`AuditLog::open`], with the given clock.
    pub fn open_with_clock(config: &AuditConfig, clock: Arc<dyn Clock>) -> io::Result<AuditLog> {
        let (tx, rx) = mpsc::channel::<Job>();
        let mut writer = Writer {
            path: config.path.clone(),
            flush: config.flush,
            rotation: Rotation {
                max_bytes: config.rotate_max_bytes,
                daily: config.rotate_daily,
            },
            clock,
            file: None,
            len: 0,
            link: Link::genesis(),
            first_seq: None,
            file_day: None,
            failing: false,
        };
        if let Err(e) = writer.ensure_open() {
            writer.report_failure(&e);
        }
        std::thread::Builder::new()
            .name("simgate-audit".into())
            .spawn(move || writer.run(&rx))?;
        Ok(AuditLog {
            tx,
            path: Arc::new(config.path.clone()),
        })
    }

    /// The active trail file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Queues `record` at once and returns a future that resolves when it is
    /// on stable storage. Dropping the future does not withdraw the record.
    pub fn append(
        &self,
        record: &Record,
    ) -> impl Future<Output = Result<Appended, AuditError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let queued = self.submit(record, Some(reply));
        async move {
            queued?;
            rx.await.map_err(|_| AuditError::Closed)?
        }
    }

    /// Queues `record` without waiting for it (for drop guards, which cannot
    /// wait). It is written like any other.
    pub fn append_detached(&self, record: &Record) {
        if let Err(e) = self.submit(record, None) {
            tracing::error!(error = %e, "audit record lost");
        }
    }

    /// Queues a reload record and returns a future that resolves when it
    /// is on stable storage (like [`AuditLog::append`]).
    pub fn append_reload(
        &self,
        record: &ReloadRecord,
    ) -> impl Future<Output = Result<Appended, AuditError>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let queued = self.submit(record, Some(reply));
        async move {
            queued?;
            rx.await.map_err(|_| AuditError::Closed)?
        }
    }

    fn submit(
        &self,
        record: &impl serde::Serialize,
        reply: Option<Reply>,
    ) -> Result<(), AuditError> {
        let record =
            serde_json::to_string(record).map_err(|e| AuditError::Serialize(e.to_string()))?;
        self.tx
            .send(Job { record, reply })
            .map_err(|_| AuditError::Closed)
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    flush: FlushPolicy,
    rotation: Rotation,
    clock: Arc<dyn Clock>,
    /// `None` until opened, and after a failure that left the file unknown.
    file: Option<File>,
    /// Bytes known good (fully written and synced).
    len: u64,
    link: Link,
    /// The active file's first seq, once it has a record.
    first_seq: Option<u64>,
    /// UTC day of the active file's first (or, when resumed, last) record.
    file_day: Option<u64>,
    failing: bool,
}

impl Writer {
    fn run(&mut self, rx: &mpsc::Receiver<Job>) {
        let max = match self.flush {
            FlushPolicy::Always => 1,
            FlushPolicy::Batch => MAX_BATCH,
        };
        let mut jobs = Vec::with_capacity(max);
        while let Ok(first) = rx.recv() {
            jobs.push(first);
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            let result = self.write_batch(&jobs);
            match &result {
                Ok(_) if self.failing => {
                    self.failing = false;
                    tracing::info!(path = %self.path.display(), "audit trail writable again");
                }
                Ok(_) => {}
                Err(e) => self.report_failure(e),
            }
            match result {
                Ok(appended) => {
                    for (job, done) in jobs.drain(..).zip(appended) {
                        if let Some(reply) = job.reply {
                            let _ = reply.send(Ok(done));
                        }
                    }
                }
                Err(e) => {
                    let err = AuditError::Unavailable {
                        path: self.path.clone(),
                        why: e.to_string(),
                    };
                    for job in jobs.drain(..) {
                        match job.reply {
                            Some(reply) => {
                                let _ = reply.send(Err(err.clone()));
                            }
                            None => tracing::error!(error = %err, "audit record lost"),
                        }
                    }
                }
            }
        }
    }

    fn report_failure(&mut self, e: &io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                "audit trail unavailable: mutations are refused until it can be written"
            );
        } else {
            tracing::debug!(path = %self.path.display(), error = %e, "audit trail still unavailable");
        }
    }

    /// Opens the active file if needed and resumes the chain from disk.
    fn ensure_open(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let dir = rotate::parent(&self.path);
        std::fs::create_dir_all(&dir)?;
        let mut file = open_append(&self.path)?;
        let tail = read_tail(&mut file, &self.path)?;
        if tail.torn_bytes > 0 {
            tracing::warn!(
                path = %self.path.display(),
                bytes = tail.torn_bytes,
                "audit trail ends in an incomplete line (crash or full disk); cutting it off"
            );
            file.set_len(tail.good_len)?;
            file.sync_data()?;
        }
        let link = match tail.link {
            Some(link) => link,
            None => match rotate::rotated_files(&self.path)?.pop() {
                Some((_, newest)) => {
                    let mut f = File::open(&newest)?;
                    read_tail(&mut f, &newest)?
                        .link
                        .unwrap_or_else(Link::genesis)
                }
                None => Link::genesis(),
            },
        };
        self.len = tail.good_len;
        self.link = link;
        self.first_seq = tail.first_seq;
        // A file with records but no readable time counts as today's.
        self.file_day = tail
            .last_day
            .or_else(|| tail.first_seq.map(|_| rotate::utc_day(self.clock.now())));
        self.file = Some(file);
        Ok(())
    }

    /// Chains, writes and syncs `jobs`; returns where each landed.
    fn write_batch(&mut self, jobs: &[Job]) -> io::Result<Vec<Appended>> {
        self.ensure_open()?;
        let now = self.clock.now();
        let time = rotate::format_time(now);
        let today = rotate::utc_day(now);
        let mut link = self.link.clone();
        let mut bytes = String::new();
        let mut appended = Vec::with_capacity(jobs.len());
        for job in jobs {
            bytes.push_str(&link.seal(&job.record, &time));
            appended.push(Appended {
                seq: link.seq,
                hash: link.hash.clone(),
            });
        }
        let due = self
            .rotation
            .due(self.len, bytes.len() as u64, self.file_day, today);
        if due && let Err(e) = self.rotate() {
            tracing::warn!(path = %self.path.display(), error = %e, "audit rotation failed");
            self.ensure_open()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("audit file not open"));
        };
        if let Err(e) = file
            .write_all(bytes.as_bytes())
            .and_then(|()| file.sync_data())
        {
            // Cut the partial write off so the next record follows a whole line.
            if file.set_len(self.len).is_err() {
                self.file = None;
            }
            return Err(e);
        }
        self.len += bytes.len() as u64;
        if self.first_seq.is_none() {
            self.first_seq = appended.first().map(|a| a.seq);
            self.file_day = Some(today);
        }
        self.link = link;
        Ok(appended)
    }

    /// Renames the active file to its rotated name and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        let Some(first) = self.first_seq else {
            return Ok(());
        };
        let target = rotate::rotated_name(&self.path, first);
        if target.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", target.display()),
            ));
        }
        let dir = rotate::parent(&self.path);
        std::fs::rename(&self.path, &target)?;
        self.file = None;
        let file = open_append(&self.path)?;
        rotate::sync_dir(&dir)?;
        self.file = Some(file);
        self.len = 0;
        self.first_seq = None;
        self.file_day = None;
        tracing::info!(rotated = %target.display(), "audit trail rotated");
        Ok(())
    }
}

fn open_append(path: &std::path::Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn read_tail(file: &mut File, path: &std::path::Path) -> io::Result<Tail> {
    rotate::read_tail(file).map_err(|e| match e {
        TailError::Io(e) => e,
        e @ TailError::NotARecord => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_support::record;
    use crate::audit::verify::verify_files;
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[derive(Debug)]
    struct FakeClock(Mutex<SystemTime>);
    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn appends_chain_and_resume_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig::with_path(dir.path().join("a/audit.jsonl"));
        let log = AuditLog::open(&config).unwrap();
        let first = log.append(&record(1)).await.unwrap();
        let second = log.append(&record(2)).await.unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        drop(log);
        // A new writer (a restart) continues the chain.
        let log = AuditLog::open(&config).unwrap();
        assert_eq!(log.append(&record(3)).await.unwrap().seq, 3);
        let v = lines(&config.path);
        assert_eq!(v.len(), 3);
        assert_eq!(v[2]["prev"], second.hash);
        assert_eq!(v[0]["request_id"], "req-1");
        let report = verify_files(&[&config.path]).unwrap();
        assert_eq!(report.records, 3);
    }

    #[tokio::test]
    async fn torn_tail_is_cut_off_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig::with_path(dir.path().join("audit.jsonl"));
        let log = AuditLog::open(&config).unwrap();
        log.append(&record(1)).await.unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&config.path).unwrap();
        f.write_all(b"{\"seq\":2,\"prev\":\"ab").unwrap();
        let log = AuditLog::open(&config).unwrap();
        assert_eq!(log.append(&record(2)).await.unwrap().seq, 2);
        assert_eq!(verify_files(&[&config.path]).unwrap().records, 2);
    }

    #[tokio::test]
    async fn concurrent_batch_appends_keep_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AuditConfig::with_path(dir.path().join("audit.jsonl"));
        config.flush = FlushPolicy::Batch;
        let log = AuditLog::open(&config).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move { log.append(&record(i)).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap().seq);
        }
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        assert_eq!(verify_files(&[&config.path]).unwrap().records, 200);
    }

    #[tokio::test]
    async fn failed_writes_refuse_and_do_not_advance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let log = AuditLog::open(&AuditConfig::with_path(&path)).unwrap();
        for i in 0..3 {
            let err = log.append(&record(i)).await.unwrap_err();
            assert!(matches!(err, AuditError::Unavailable { .. }), "{err}");
        }
        // The parent is a file: cannot even be opened.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, "").unwrap();
        let log = AuditLog::open(&AuditConfig::with_path(blocker.join("audit.jsonl"))).unwrap();
        assert!(log.append(&record(0)).await.is_err());
        // Fixing the cause lets the same writer recover.
        std::fs::remove_file(&blocker).unwrap();
        assert_eq!(log.append(&record(1)).await.unwrap().seq, 1);
    }

    #[tokio::test]
    async fn rotation_by_size_links_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AuditConfig::with_path(dir.path().join("audit.jsonl"));
        config.rotate_max_bytes = Some(1000);
        let log = AuditLog::open(&config).unwrap();
        let mut last = None;
        for i in 0..20 {
            last = Some(log.append(&record(i)).await.unwrap());
        }
        let rotated = rotate::rotated_files(&config.path).unwrap();
        assert!(rotated.len() >= 3, "{rotated:?}");
        let mut files: Vec<PathBuf> = rotated.iter().map(|(_, p)| p.clone()).collect();
        for (seq, p) in &rotated {
            let v = lines(p);
            assert_eq!(v[0]["seq"], *seq);
            assert!(std::fs::metadata(p).unwrap().len() <= 1000);
        }
        // Each file's first record links to the previous file's last line.
        for pair in files.windows(2) {
            let prev_text = std::fs::read_to_string(&pair[0]).unwrap();
            let prev_last = prev_text.lines().last().unwrap();
            assert_eq!(
                lines(&pair[1])[0]["prev"],
                crate::audit::chain::line_hash(prev_last.as_bytes())
            );
        }
        files.push(config.path.clone());
        let report = verify_files(&files).unwrap();
        assert_eq!(report.records, 20);
        assert_eq!(Some(report.last_hash), last.map(|a| a.hash));
        // A restart resumes after the newest file, even if the active one is empty.
        drop(log);
        let active = std::fs::read_to_string(&config.path).unwrap();
        let newest = rotate::rotated_name(&config.path, 99);
        std::fs::write(&newest, &active).unwrap();
        std::fs::write(&config.path, "").unwrap();
        let log = AuditLog::open(&config).unwrap();
        assert_eq!(log.append(&record(21)).await.unwrap().seq, 21);
    }

    #[tokio::test]
    async fn rotation_by_day_uses_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AuditConfig::with_path(dir.path().join("audit.jsonl"));
        config.rotate_daily = true;
        let day = UNIX_EPOCH + Duration::from_secs(86_400 * 20_000 + 3600);
        let clock = Arc::new(FakeClock(Mutex::new(day)));
        let log = AuditLog::open_with_clock(&config, clock.clone()).unwrap();
        log.append(&record(1)).await.unwrap();
        log.append(&record(2)).await.unwrap();
        *clock.0.lock().unwrap() = day + Duration::from_secs(86_400);
        log.append(&record(3)).await.unwrap();
        let rotated = rotate::rotated_files(&config.path).unwrap();
        assert_eq!(rotated.len(), 1);
        assert_eq!(lines(&rotated[0].1).len(), 2);
        let active = lines(&config.path);
        assert_eq!(active.len(), 1);
        assert_eq!(active[0]["seq"], 3);
        assert_eq!(
            active[0]["time"],
            rotate::format_time(day + Duration::from_secs(86_400))
        );
        let report = verify_files(&[rotated[0].1.clone(), config.path.clone()]).unwrap();
        assert_eq!(report.records, 3);
    }
}
