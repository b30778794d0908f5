//! Removing object members from JSON text without re-serialising it.
//!
//! Used for `read_only = "strip"`: the listed members go, every other byte
//! stays as the client sent it. The input has already passed the strict
//! parser, so this scanner can be small; it loops, never recurses.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// `text` without the object members at `paths` (decoded tokens; the last
/// one names the member). `None` if a path does not lead to a member.
pub(crate) fn remove(text: &str, paths: &[Vec<String>]) -> Option<String> {
    let mut paths: Vec<&Vec<String>> = paths.iter().filter(|p| !p.is_empty()).collect();
    paths.sort();
    paths.dedup();
    // A member inside one that goes anyway needs no work of its own.
    let mut kept: Vec<&Vec<String>> = Vec::new();
    for p in paths {
        if !kept.iter().any(|k| p.starts_with(k)) {
            kept.push(p);
        }
    }
    let mut by_parent: BTreeMap<&[String], BTreeSet<&str>> = BTreeMap::new();
    for p in kept {
        let (last, parent) = p.split_last()?;
        by_parent.entry(parent).or_default().insert(last.as_str());
    }
    let b = text.as_bytes();
    let mut cuts: Vec<Range<usize>> = Vec::new();
    for (parent, names) in by_parent {
        let start = value_at(b, parent)?;
        let members = members(text, start)?;
        let gone: Vec<bool> = members
            .iter()
            .map(|m| names.contains(m.key.as_str()))
            .collect();
        if gone.iter().filter(|g| **g).count() != names.len() {
            return None;
        }
        let mut i = 0;
        while i < members.len() {
            if !gone[i] {
                i += 1;
                continue;
            }
            let mut j = i;
            while j + 1 < members.len() && gone[j + 1] {
                j += 1;
            }
            cuts.push(if j + 1 < members.len() {
                members[i].start..members[j + 1].start
            } else if i > 0 {
                members[i - 1].end..members[j].end
            } else {
                members[i].start..members[j].end
            });
            i = j + 1;
        }
    }
    cuts.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for cut in cuts {
        out.push_str(text.get(at..cut.start)?);
        at = cut.end;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}

/// One member of an object: from its key to the end of its value.
struct Member {
    key: String,
    start: usize,
    end: usize,
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// Past the string starting at `i` (an opening quote).
fn skip_string(b: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// Past the value starting at `i`.
fn skip_value(b: &[u8], mut i: usize) -> usize {
    match b.get(i) {
        Some(b'"') => skip_string(b, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(b, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            i
        }
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n')
            {
                i += 1;
            }
            i
        }
    }
}

/// The members of the object starting at `start`.
fn members(text: &str, start: usize) -> Option<Vec<Member>> {
    let b = text.as_bytes();
    if b.get(start) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    let mut i = ws(b, start + 1);
    if b.get(i) == Some(&b'}') {
        return Some(out);
    }
    loop {
        let key_end = skip_string(b, i);
        let key: String = serde_json::from_str(text.get(i..key_end)?).ok()?;
        let colon = ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let value = ws(b, colon + 1);
        let end = skip_value(b, value);
        out.push(Member { key, start: i, end });
        i = ws(b, end);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return Some(out),
            _ => return None,
        }
    }
}

/// Where the value at `path` starts.
fn value_at(b: &[u8], path: &[String]) -> Option<usize> {
    let text = std::str::from_utf8(b).ok()?;
    let mut at = ws(b, 0);
    for token in path {
        match b.get(at)? {
            b'{' => {
                let m = members(text, at)?.into_iter().find(|m| &m.key == token)?;
                let colon = ws(b, skip_string(b, m.start));
                at = ws(b, colon + 1);
            }
            b'[' => {
                let index: usize = token.parse().ok()?;
                let mut i = ws(b, at + 1);
                for _ in 0..index {
                    i = ws(b, skip_value(b, i));
                    if b.get(i) != Some(&b',') {
                        return None;
                    }
                    i = ws(b, i + 1);
                }
                if matches!(b.get(i), None | Some(b']')) {
                    return None;
                }
                at = i;
            }
            _ => return None,
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn removes_members_keeping_every_other_byte() {
        let cases: &[(&str, Vec<Vec<String>>, &str)] = &[
            (
                r#"{"id":"1","name":"n"}"#,
                vec![p(&["id"])],
                r#"{"name":"n"}"#,
            ),
            (
                r#"{"name":"n", "id" : "1" }"#,
                vec![p(&["id"])],
                r#"{"name":"n" }"#,
            ),
            (r#"{ "id": "1" }"#, vec![p(&["id"])], r#"{  }"#),
            (
                r#"{"id":"1","created":"x","name":"n","modified":"y"}"#,
                vec![p(&["id"]), p(&["created"]), p(&["modified"])],
                r#"{"name":"n"}"#,
            ),
            (
                r#"{"a":{"b":[1,{"c":"}\"]"}],"id":2},  "id":"x"}"#,
                vec![p(&["a", "id"]), p(&["id"])],
                r#"{"a":{"b":[1,{"c":"}\"]"}]}}"#,
            ),
            (
                r#"[{"x":1},{"x":2,"\u0069d":3}]"#,
                vec![p(&["1", "id"])],
                r#"[{"x":1},{"x":2}]"#,
            ),
            (
                r#"{"o":{"id":1},"p":2}"#,
                vec![p(&["o"]), p(&["o", "id"])],
                r#"{"p":2}"#,
            ),
        ];
        for (input, paths, want) in cases {
            assert_eq!(remove(input, paths).as_deref(), Some(*want), "{input}");
        }
        assert_eq!(remove(r#"{"a":1}"#, &[p(&["b"])]), None);
        assert_eq!(remove(r#"[1]"#, &[p(&["3", "b"])]), None);
    }
}
