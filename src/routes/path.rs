//! The strict check of a raw request path, before any matching.
//!
//! A path that a normaliser (ours, the upstream's, a cache's) could read two
//! ways is refused, never "fixed". Refused with [`Error::BadPath`]:
//!
//! - dot segments (`.`, `..`, or any segment made only of dots),
//! - empty segments (`//`, a trailing `/`),
//! - `\` and `;` (path parameters), raw or percent-encoded,
//! - percent-encoded `/`, `.`, `%` (double encoding), `?` and `#`,
//! - control characters, raw or percent-encoded (`%00` …),
//! - percent-encoded unreserved characters (`%41` for `A`: a normaliser
//!   decodes them, so the path has two spellings),
//! - raw non-ASCII bytes and characters outside RFC 3986 `pchar`,
//! - invalid percent-encoding and percent-encodings that do not decode to
//!   UTF-8.
//!
//! Accepted segments keep their raw text (what is forwarded and compared
//! with the template's literal segments) and their decoded value (what a
//! path parameter is worth).

use std::borrow::Cow;

use crate::error::Error;

/// One segment of a checked path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    /// As received.
    pub(crate) raw: &'a str,
    /// Percent-decoded (valid UTF-8).
    pub(crate) decoded: Cow<'a, str>,
}

/// Checks `path` (the raw path of the request target, without the query)
/// and splits it into segments; `/` has none.
pub(crate) fn check(path: &str) -> Result<Vec<Segment<'_>>, Error> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Error::BadPath("the path must start with '/'"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/').map(segment).collect()
}

/// Whether `b` may appear unencoded in a segment: RFC 3986 `pchar` without
/// `%` and `;`.
pub(crate) fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

fn segment(raw: &str) -> Result<Segment<'_>, Error> {
    if raw.is_empty() {
        return Err(Error::BadPath(
            "empty path segment ('//' or a trailing '/')",
        ));
    }
    if raw.bytes().all(|b| b == b'.') {
        return Err(Error::BadPath("dot segment"));
    }
    let bytes = raw.as_bytes();
    let mut decoded: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |k: usize| bytes.get(k).and_then(|&c| char::from(c).to_digit(16));
            let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                return Err(Error::BadPath("invalid percent-encoding"));
            };
            // Two hex digits: at most 0xff.
            let byte = (hi * 16 + lo) as u8;
            refuse_encoded(byte)?;
            decoded
                .get_or_insert_with(|| bytes[..i].to_vec())
                .push(byte);
            i += 3;
            continue;
        }
        refuse_raw(b)?;
        if let Some(d) = decoded.as_mut() {
            d.push(b);
        }
        i += 1;
    }
    let decoded = match decoded {
        None => Cow::Borrowed(raw),
        Some(d) => Cow::Owned(
            String::from_utf8(d).map_err(|_| Error::BadPath("percent-encoding is not UTF-8"))?,
        ),
    };
    Ok(Segment { raw, decoded })
}

fn refuse_raw(b: u8) -> Result<(), Error> {
    match b {
        _ if is_plain(b) => Ok(()),
        b'\\' => Err(Error::BadPath("backslash")),
        b';' => Err(Error::BadPath("';' path parameters")),
        0..=0x1f | 0x7f => Err(Error::BadPath("control character")),
        0x80.. => Err(Error::BadPath("unencoded non-ASCII character")),
        _ => Err(Error::BadPath("character not allowed in a path")),
    }
}

fn refuse_encoded(b: u8) -> Result<(), Error> {
    match b {
        0 => Err(Error::BadPath("percent-encoded NUL")),
        0x01..=0x1f | 0x7f => Err(Error::BadPath("percent-encoded control character")),
        b'/' => Err(Error::BadPath("percent-encoded '/'")),
        b'\\' => Err(Error::BadPath("percent-encoded backslash")),
        b'.' => Err(Error::BadPath("percent-encoded '.'")),
        b'%' => Err(Error::BadPath("percent-encoded '%' (double encoding)")),
        b';' => Err(Error::BadPath("percent-encoded ';'")),
        b'?' | b'#' => Err(Error::BadPath("percent-encoded '?' or '#'")),
        _ if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') => Err(Error::BadPath(
            "percent-encoded unreserved character (send it unencoded)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(path: &str) -> &'static str {
        match check(path) {
            Err(Error::BadPath(why)) => why,
            other => panic!("{path:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn plain_paths_split_into_segments() {
        assert!(check("/").unwrap().is_empty());
        let segs = check("/beta/sim-integrations/2c9180835d2e5168015d32f890ca1581").unwrap();
        let raw: Vec<_> = segs.iter().map(|s| s.raw).collect();
        assert_eq!(
            raw,
            [
                "beta",
                "sim-integrations",
                "2c9180835d2e5168015d32f890ca1581"
            ]
        );
        let segs = check("/a/caf%C3%A9%20x,y:z@w").unwrap();
        assert_eq!(segs[1].raw, "caf%C3%A9%20x,y:z@w");
        assert_eq!(segs[1].decoded, "café x,y:z@w");
        assert_eq!(check("/a/file.json").unwrap()[1].decoded, "file.json");
    }

    #[test]
    fn tricks_are_refused() {
        let table: &[(&str, &str)] = &[
            ("", "start with '/'"),
            ("*", "start with '/'"),
            ("beta/x", "start with '/'"),
            ("//beta/sim-integrations", "empty"),
            ("/beta//sim-integrations", "empty"),
            ("/beta/sim-integrations/", "empty"),
            ("/beta/./sim-integrations", "dot segment"),
            ("/beta/../v1", "dot segment"),
            ("/beta/sim-integrations/..", "dot segment"),
            ("/beta/sim-integrations/...", "dot segment"),
            ("/beta/%2e%2e/x", "'.'"),
            ("/beta/%2E/x", "'.'"),
            ("/beta/.%2e/x", "'.'"),
            ("/beta%2fsim-integrations", "'/'"),
            ("/beta%2Fsim-integrations", "'/'"),
            ("/beta%5csim-integrations", "backslash"),
            ("/beta\\sim-integrations", "backslash"),
            ("/beta/sim-integrations;x=1", "';'"),
            ("/beta/sim-integrations/abc;jsessionid=1", "';'"),
            ("/beta/sim-integrations%3Bx", "';'"),
            ("/beta/sim-integrations%3F", "'?' or '#'"),
            ("/beta/sim-integrations%23x", "'?' or '#'"),
            ("/beta/sim-integrations%00", "NUL"),
            ("/beta/sim-integrations%0a", "control"),
            ("/beta/sim-integrations%7F", "control"),
            ("/beta/sim-integrations\u{0}", "control"),
            ("/beta/sim-integrations%252f", "double encoding"),
            ("/beta/sim-integr%61tions", "unreserved"),
            ("/beta/sim%2Dintegrations", "unreserved"),
            ("/beta/sim-integrations/%", "invalid percent"),
            ("/beta/sim-integrations/%4", "invalid percent"),
            ("/beta/sim-integrations/%zz", "invalid percent"),
            ("/beta/sim-integrations/%+1", "invalid percent"),
            ("/beta/sim-integrations/%C3", "UTF-8"),
            ("/beta/sim-integrations/%FF%FE", "UTF-8"),
            ("/beta/sim-integrations/café", "non-ASCII"),
            ("/beta/sim-integrations/{id}", "not allowed"),
            ("/beta/sim-integrations/a b", "not allowed"),
            ("/beta/sim-integrations/a|b", "not allowed"),
            ("/beta/sim-integrations/\"x\"", "not allowed"),
        ];
        for (path, why) in table {
            let got = refused(path);
            assert!(
                got.contains(why),
                "{path:?}: {got:?} does not mention {why:?}"
            );
        }
    }
}
