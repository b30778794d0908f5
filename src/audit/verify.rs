//! `simgate audit verify FILE…`: checks the chain across files, in the order
//! given (rotated files first; `audit/audit*.jsonl` sorts that way).
//!
//! Every line must be a JSON object whose `seq` is one more than the
//! previous record's (starting at 1) and whose `prev` is the SHA-256 of the
//! previous line. The first bad line is named:
//!
//! - a line with the wrong `seq` (a line deleted before it, or lines
//!   swapped) or that is not a record is itself bad;
//! - a line whose successor's `prev` does not match its hash was edited
//!   (or its successor's `prev` was): the edited line is named.
//!
//! An incomplete last line at the very end of the last file (a crash during
//! a write, never acknowledged) is reported but does not fail verification;
//! anywhere else it does. Lines removed from the very end cannot be detected
//! from the files alone: compare the printed last hash with one kept
//! elsewhere.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{GENESIS, line_hash, parse_link};

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// The last record's seq.
    pub last_seq: u64,
    /// The last record's hash.
    pub last_hash: String,
    /// Bytes of an incomplete line at the end of the last file, if any.
    pub torn_tail: Option<u64>,
}

/// Why verification failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The first bad line.
    #[error("{}:{line}: {why}", file.display())]
    Broken {
        /// The file holding it.
        file: PathBuf,
        /// Its line number in that file (1-based).
        line: u64,
        /// What is wrong.
        why: String,
    },
}

/// The previous line, kept to name it if its successor's `prev` disagrees.
struct Prev {
    file: PathBuf,
    line: u64,
    seq: u64,
    hash: String,
}

/// Verifies the chain across `files`, in order.
pub fn verify_files<P: AsRef<Path>>(files: &[P]) -> Result<Verified, VerifyError> {
    let mut prev: Option<Prev> = None;
    let mut records = 0u64;
    let mut torn_tail = None;
    for (i, path) in files.iter().enumerate() {
        let path = path.as_ref();
        let io_err = |source| VerifyError::Io {
            file: path.to_path_buf(),
            source,
        };
        let mut reader = BufReader::new(File::open(path).map_err(io_err)?);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let broken = |line: u64, why: String| VerifyError::Broken {
                file: path.to_path_buf(),
                line,
                why,
            };
            let Some(line) = buf.strip_suffix(b"\n") else {
                if i + 1 == files.len() {
                    torn_tail = Some(buf.len() as u64);
                    break;
                }
                return Err(broken(
                    line_no,
                    "incomplete line (no newline) before the end of the trail".into(),
                ));
            };
            let Some((seq, prev_hash)) = parse_link(line) else {
                return Err(broken(
                    line_no,
                    "not an audit record (JSON object with seq and prev)".into(),
                ));
            };
            let expected_seq = prev.as_ref().map_or(1, |p| p.seq + 1);
            if seq != expected_seq {
                let why = if seq > expected_seq {
                    format!(
                        "seq {seq} where {expected_seq} was expected: records missing or reordered"
                    )
                } else {
                    format!(
                        "seq {seq} where {expected_seq} was expected: records repeated or reordered"
                    )
                };
                return Err(broken(line_no, why));
            }
            let expected_hash = prev.as_ref().map_or(GENESIS, |p| p.hash.as_str());
            if prev_hash != expected_hash {
                return Err(match &prev {
                    Some(p) => VerifyError::Broken {
                        file: p.file.clone(),
                        line: p.line,
                        why: format!(
                            "its hash does not match the `prev` of seq {seq}: this record was altered"
                        ),
                    },
                    None => broken(
                        line_no,
                        "the first record must link to the genesis hash".into(),
                    ),
                });
            }
            prev = Some(Prev {
                file: path.to_path_buf(),
                line: line_no,
                seq,
                hash: line_hash(line),
            });
            records += 1;
        }
    }
    Ok(Verified {
        records,
        last_seq: prev.as_ref().map_or(0, |p| p.seq),
        last_hash: prev.map_or_else(|| GENESIS.to_owned(), |p| p.hash),
        torn_tail,
    })
}

/// Runs `simgate audit verify` and prints the result; `Err` for exit 1.
pub fn run<P: AsRef<Path>>(files: &[P]) -> Result<(), VerifyError> {
    let v = verify_files(files)?;
    if let Some(bytes) = v.torn_tail {
        eprintln!(
            "warning: {}: ends in an incomplete line of {bytes} bytes (a write cut short by a crash; it was never acknowledged)",
            files
                .last()
                .map(|p| p.as_ref().display().to_string())
                .unwrap_or_default()
        );
    }
    println!(
        "ok: {} records, last seq {}, last hash {}",
        v.records, v.last_seq, v.last_hash
    );
    Ok(())
}

/// The line number a [`VerifyError::Broken`] names, for tests and tools.
pub fn bad_line(err: &VerifyError) -> Option<(&Path, u64)> {
    match err {
        VerifyError::Broken { file, line, .. } => Some((file, *line)),
        VerifyError::Io { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::Link;

    /// A trail of `n` records split over files of `per_file` lines.
    fn trail(dir: &Path, n: usize, per_file: usize) -> Vec<PathBuf> {
        let mut link = Link::genesis();
        let mut files = Vec::new();
        let mut text = String::new();
        for i in 1..=n {
            text += &link.seal(
                &format!("{{\"kind\":\"intent\",\"i\":{i}}}"),
                "2025-01-01T00:00:00.000Z",
            );
            if i % per_file == 0 || i == n {
                let p = dir.join(format!("audit.{:012}.jsonl", files.len()));
                std::fs::write(&p, std::mem::take(&mut text)).unwrap();
                files.push(p);
            }
        }
        files
    }

    fn edit(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
        let mut lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        f(&mut lines);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    fn failure(files: &[PathBuf]) -> (PathBuf, u64, String) {
        match verify_files(files).unwrap_err() {
            VerifyError::Broken { file, line, why } => (file, line, why),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn intact_trail_across_files_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 10, 4);
        assert_eq!(files.len(), 3);
        let v = verify_files(&files).unwrap();
        assert_eq!((v.records, v.last_seq, v.torn_tail), (10, 10, None));
        let last = std::fs::read_to_string(&files[2]).unwrap();
        assert_eq!(
            v.last_hash,
            line_hash(last.lines().last().unwrap().as_bytes())
        );
    }

    #[test]
    fn edited_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 6, 100);
        edit(&files[0], |l| l[2] = l[2].replace("\"i\":3", "\"i\":33"));
        let (file, line, why) = failure(&files);
        assert_eq!((file, line), (files[0].clone(), 3), "{why}");
        assert!(why.contains("altered"), "{why}");
    }

    #[test]
    fn deleted_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 6, 100);
        edit(&files[0], |l| {
            l.remove(2);
        });
        let (_, line, why) = failure(&files);
        assert_eq!(line, 3, "{why}");
        assert!(why.contains("seq 4 where 3"), "{why}");
    }

    #[test]
    fn swapped_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 6, 100);
        edit(&files[0], |l| l.swap(3, 4));
        let (_, line, why) = failure(&files);
        assert_eq!(line, 4, "{why}");
        assert!(why.contains("reordered"), "{why}");
    }

    #[test]
    fn files_out_of_order_or_missing_fail() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 9, 3);
        let (file, line, _) = failure(&[files[1].clone(), files[0].clone()]);
        assert_eq!((file, line), (files[1].clone(), 1));
        let (file, line, _) = failure(&[files[0].clone(), files[2].clone()]);
        assert_eq!((file, line), (files[2].clone(), 1));
    }

    #[test]
    fn torn_tail_only_allowed_at_the_very_end() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 6, 3);
        let mut torn = std::fs::read(&files[1]).unwrap();
        torn.extend_from_slice(b"{\"seq\":7,\"pre");
        std::fs::write(&files[1], &torn).unwrap();
        let v = verify_files(&files).unwrap();
        assert_eq!((v.records, v.torn_tail), (6, Some(13)));
        let mut first = std::fs::read(&files[0]).unwrap();
        first.extend_from_slice(b"{\"seq\":4");
        std::fs::write(&files[0], &first).unwrap();
        assert_eq!(failure(&files).1, 4);
    }

    #[test]
    fn garbage_and_forged_genesis_fail() {
        let dir = tempfile::tempdir().unwrap();
        let files = trail(dir.path(), 3, 100);
        edit(&files[0], |l| l[1] = "hello".into());
        assert_eq!(failure(&files).1, 2);
        let p = dir.path().join("forged.jsonl");
        std::fs::write(&p, "{\"seq\":1,\"prev\":\"abc\"}\n").unwrap();
        assert_eq!(failure(&[p]).1, 1);
    }
}
