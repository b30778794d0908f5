//! The hash chain that makes the trail tamper-evident.
//!
//! Each line is one JSON object starting with `"seq"` (1, 2, 3, … without
//! gaps, continuing across rotated files) and `"prev"`: the lowercase hex
//! SHA-256 of the previous line's bytes (without its newline); the first
//! record ever links to [`GENESIS`]. Editing a line changes its hash and
//! breaks the next line's `prev`; deleting or reordering lines breaks `seq`.
//! (Removing lines from the very end cannot be seen from the file alone;
//! compare the last hash `simgate audit verify` prints with one kept
//! elsewhere.)

use sha2::{Digest, Sha256};

/// `prev` of the very first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The SHA-256 of a line (without its newline), as lowercase hex.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Where the chain stands: the last record's `seq` and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The last record's `seq` (0 before the first record).
    pub seq: u64,
    /// The last record's hash ([`GENESIS`] before the first record).
    pub hash: String,
}

impl Link {
    /// Before the first record.
    pub fn genesis() -> Self {
        Link {
            seq: 0,
            hash: GENESIS.to_owned(),
        }
    }

    /// Builds the next line from a serialized record (a JSON object) and the
    /// record's time, and advances the chain. Returns the line with its
    /// newline.
    pub fn seal(&mut self, record_json: &str, time: &str) -> String {
        let seq = self.seq + 1;
        // `record_json` is a non-empty object: splice our fields in front.
        let rest = record_json
            .strip_prefix('{')
            .filter(|r| *r != "}")
            .map(|r| format!(",{r}"))
            .unwrap_or_else(|| "}".to_owned());
        let line = format!(
            "{{\"seq\":{seq},\"prev\":\"{}\",\"time\":\"{time}\"{rest}",
            self.hash
        );
        self.seq = seq;
        self.hash = line_hash(line.as_bytes());
        line + "\n"
    }
}

/// The `seq` and `prev` of a line, if it is a JSON object carrying them.
pub fn parse_link(line: &[u8]) -> Option<(u64, String)> {
    #[derive(serde::Deserialize)]
    struct Head {
        seq: u64,
        prev: String,
    }
    let head: Head = serde_json::from_slice(line).ok()?;
    Some((head.seq, head.prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_link_to_the_previous_hash() {
        let mut link = Link::genesis();
        let a = link.seal(r#"{"kind":"intent"}"#, "2025-01-01T00:00:00.000Z");
        let b = link.seal(r#"{"kind":"outcome"}"#, "2025-01-01T00:00:00.001Z");
        assert!(a.ends_with('\n') && b.ends_with('\n'));
        let (a, b) = (a.trim_end(), b.trim_end());
        assert_eq!(parse_link(a.as_bytes()), Some((1, GENESIS.to_owned())));
        assert_eq!(parse_link(b.as_bytes()), Some((2, line_hash(a.as_bytes()))));
        assert_eq!(link.seq, 2);
        assert_eq!(link.hash, line_hash(b.as_bytes()));
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        assert_eq!(v["kind"], "outcome");
        assert_eq!(v["time"], "2025-01-01T00:00:00.001Z");
    }

    #[test]
    fn empty_object_still_seals() {
        let mut link = Link::genesis();
        let line = link.seal("{}", "t");
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            line_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
