//! Files on disk: rotation names, resuming the chain at start, time.
//!
//! The active file is the configured path, e.g. `audit/audit.jsonl`. When it
//! is rotated (by size or UTC day) it is renamed to
//! `audit/audit.<first seq, 12 digits>.jsonl`, so rotated files sort in
//! chain order before the active one (`simgate audit verify
//! audit/audit*.jsonl` checks them all, in order), and a new active file is
//! started whose first record links to the last hash of the rotated one.
//!
//! At start the chain resumes from the last complete line of the active file
//! (or, if it is missing or empty, of the newest rotated file). An incomplete
//! last line — a write torn by a crash or a full disk, which nobody was told
//! was durable — is cut off.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::chain::{Link, line_hash, parse_link};

/// The source of time for records and daily rotation (injectable in tests).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Days since the epoch, in UTC.
pub fn utc_day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// `time` as written in records: RFC 3339, UTC, milliseconds.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// When to start a new file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Before a write would take the file past this size.
    pub max_bytes: Option<u64>,
    /// When the UTC day differs from the day of the file's first record.
    pub daily: bool,
}

impl Rotation {
    /// Whether a file of `len` bytes, begun on `file_day`, must be rotated
    /// before `incoming` more bytes are written on `today`. Empty files are
    /// never rotated.
    pub fn due(&self, len: u64, incoming: u64, file_day: Option<u64>, today: u64) -> bool {
        if len == 0 {
            return false;
        }
        let by_size = self
            .max_bytes
            .is_some_and(|max| len.saturating_add(incoming) > max);
        let by_day = self.daily && file_day.is_some_and(|d| d != today);
        by_size || by_day
    }
}

/// `dir/stem.000000000042.ext` for the active file `dir/stem.ext` whose
/// first record has seq 42.
pub fn rotated_name(active: &Path, first_seq: u64) -> PathBuf {
    let stem = active
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match active.extension() {
        Some(ext) => format!("{stem}.{first_seq:012}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{first_seq:012}"),
    };
    active.with_file_name(name)
}

/// The rotated files of `active`, oldest first, with their first seq.
pub fn rotated_files(active: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let dir = parent(active);
    let stem = active
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix = active
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let prefix = format!("{stem}.");
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(digits) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(&suffix))
        else {
            continue;
        };
        if digits.len() == 12
            && let Ok(seq) = digits.parse::<u64>()
        {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// The folder holding `path` (`.` for a bare file name).
pub fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename or creation in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What the end of a trail file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The last complete record's link, if there is one.
    pub link: Option<Link>,
    /// The first record's seq, if there is one.
    pub first_seq: Option<u64>,
    /// UTC day of the last complete record.
    pub last_day: Option<u64>,
    /// Bytes up to and including the last newline.
    pub good_len: u64,
    /// Bytes after the last newline (an incomplete line).
    pub torn_bytes: u64,
}

/// Why a trail file's end cannot be resumed from.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The last complete line is not a record.
    #[error("its last complete line is not an audit record (run `simgate audit verify`)")]
    NotARecord,
}

/// Reads the end of a trail file.
pub fn read_tail(file: &mut File) -> Result<Tail, TailError> {
    let len = file.metadata()?.len();
    let mut tail = Tail {
        link: None,
        first_seq: None,
        last_day: None,
        good_len: 0,
        torn_bytes: len,
    };
    let Some(last_nl) = rfind_newline(file, len)? else {
        return Ok(tail);
    };
    tail.good_len = last_nl + 1;
    tail.torn_bytes = len - tail.good_len;
    let start = rfind_newline(file, last_nl)?.map_or(0, |p| p + 1);
    let line = read_range(file, start, last_nl)?;
    let (seq, _) = parse_link(&line).ok_or(TailError::NotARecord)?;
    tail.link = Some(Link {
        seq,
        hash: line_hash(&line),
    });
    tail.last_day = serde_json::from_slice::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v.get("time")?.as_str().map(str::to_owned))
        .and_then(|t| humantime::parse_rfc3339(&t).ok())
        .map(utc_day);
    let first_end = find_newline(file)?.unwrap_or(last_nl);
    let first = read_range(file, 0, first_end)?;
    tail.first_seq = Some(parse_link(&first).ok_or(TailError::NotARecord)?.0);
    Ok(tail)
}

/// The position of the last `\n` before `end`.
fn rfind_newline(file: &mut File, end: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 64 * 1024;
    let mut hi = end;
    let mut buf = vec![0u8; CHUNK as usize];
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let n = (hi - lo) as usize;
        file.seek(SeekFrom::Start(lo))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}

/// The position of the first `\n`.
fn find_newline(file: &mut File) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    file.seek(SeekFrom::Start(0))?;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(i) = buf[..n].iter().position(|b| *b == b'\n') {
            return Ok(Some(pos + i as u64));
        }
        pos += n as u64;
    }
}

fn read_range(file: &mut File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[test]
    fn rotated_names_sort_before_the_active_file() {
        let active = Path::new("/var/log/simgate/audit.jsonl");
        let a = rotated_name(active, 1);
        let b = rotated_name(active, 1234);
        assert_eq!(a, Path::new("/var/log/simgate/audit.000000000001.jsonl"));
        let mut names = [active.to_path_buf(), b.clone(), a.clone()];
        names.sort();
        assert_eq!(names, [a, b, active.to_path_buf()]);
        assert_eq!(
            rotated_name(Path::new("trail"), 7),
            Path::new("trail.000000000007")
        );
    }

    #[test]
    fn lists_rotated_files_in_seq_order() {
        let dir = tempfile::tempdir().unwrap();
        let active = dir.path().join("audit.jsonl");
        for seq in [30, 4, 120] {
            std::fs::write(rotated_name(&active, seq), "").unwrap();
        }
        std::fs::write(dir.path().join("audit.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("audit.12.jsonl"), "").unwrap();
        std::fs::write(dir.path().join("other.000000000001.jsonl"), "").unwrap();
        let seqs: Vec<u64> = rotated_files(&active)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(seqs, [4, 30, 120]);
        assert!(
            rotated_files(&dir.path().join("none/a.jsonl"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rotation_by_size_and_day() {
        let r = Rotation {
            max_bytes: Some(100),
            daily: true,
        };
        assert!(!r.due(0, 500, Some(1), 2), "empty files stay");
        assert!(!r.due(50, 50, Some(1), 1));
        assert!(r.due(50, 51, Some(1), 1));
        assert!(r.due(10, 10, Some(1), 2));
        assert!(!Rotation::default().due(10_000, 10_000, Some(1), 9));
    }

    #[test]
    fn tail_finds_the_last_complete_line_and_torn_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let mut link = Link::genesis();
        let mut text = String::new();
        let big = "x".repeat(100_000);
        for i in 0..3 {
            text += &link.seal(
                &format!("{{\"i\":{i},\"pad\":\"{big}\"}}"),
                "2025-03-04T05:06:07.089Z",
            );
        }
        std::fs::write(&path, format!("{text}{{\"seq\":4,\"pr")).unwrap();
        let mut f = File::open(&path).unwrap();
        let tail = read_tail(&mut f).unwrap();
        assert_eq!(tail.link.as_ref(), Some(&link));
        assert_eq!(tail.first_seq, Some(1));
        assert_eq!(tail.good_len, text.len() as u64);
        assert_eq!(tail.torn_bytes, 12);
        let day = utc_day(humantime::parse_rfc3339("2025-03-04T23:59:59Z").unwrap());
        assert_eq!(tail.last_day, Some(day));

        std::fs::write(&path, "no newline at all").unwrap();
        let tail = read_tail(&mut File::open(&path).unwrap()).unwrap();
        assert_eq!((tail.link, tail.good_len, tail.torn_bytes), (None, 0, 17));

        let mut f = File::create(&path).unwrap();
        f.write_all(b"not json\n").unwrap();
        assert!(matches!(
            read_tail(&mut File::open(&path).unwrap()),
            Err(TailError::NotARecord)
        ));
    }

    #[test]
    fn days_are_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 5);
        assert_eq!(utc_day(t), 3);
        assert_eq!(format_time(t), "1970-01-04T00:00:05.000Z");
    }
}
