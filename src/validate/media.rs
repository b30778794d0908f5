//! Media types: the request's `Content-Type` against the operation's.
//!
//! A request names exactly one media type; its only allowed parameter is
//! `charset=utf-8` (JSON is UTF-8). A `Content-Encoding` other than
//! `identity` is refused too: the gateway validates the bytes it forwards
//! and does not decompress them.

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

/// How a body of a declared media type is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A JSON document against the operation's schema.
    Json,
    /// A JSON Patch (RFC 6902 array or the `{"operations": [...]}` envelope).
    Patch,
}

/// The media type JSON Patch bodies are declared with.
pub(crate) const JSON_PATCH: &str = "application/json-patch+json";

/// The lowercased `type/subtype` of a declared media type and how its
/// bodies are checked; `None` for media types the gateway cannot validate.
pub(crate) fn declared(media_type: &str) -> Option<(String, Kind)> {
    let essence = media_type.split(';').next()?.trim().to_ascii_lowercase();
    if essence == JSON_PATCH {
        Some((essence, Kind::Patch))
    } else if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Some((essence, Kind::Json))
    } else {
        None
    }
}

/// The lowercased `type/subtype` of the request's one `Content-Type`, if it
/// is well-formed and carries no parameter but `charset=utf-8`, and the
/// body is not content-encoded.
pub(crate) fn requested(headers: &HeaderMap) -> Option<String> {
    for v in headers.get_all(CONTENT_ENCODING) {
        if !v.to_str().ok()?.trim().eq_ignore_ascii_case("identity") {
            return None;
        }
    }
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return None;
    };
    parse(value.to_str().ok()?)
}

/// See [`requested`].
pub(crate) fn parse(value: &str) -> Option<String> {
    let mut parts = value.split(';');
    let essence = parts.next()?.trim();
    let (kind, sub) = essence.split_once('/')?;
    if !is_token(kind) || !is_token(sub) {
        return None;
    }
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (name, v) = param.split_once('=')?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        if !name.trim().eq_ignore_ascii_case("charset") || !v.eq_ignore_ascii_case("utf-8") {
            return None;
        }
    }
    Some(essence.to_ascii_lowercase())
}

/// An RFC 9110 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn content_types() {
        let ok = [
            ("application/json", "application/json"),
            ("Application/JSON", "application/json"),
            ("application/json; charset=utf-8", "application/json"),
            ("application/json;charset=\"UTF-8\"", "application/json"),
            ("application/json;", "application/json"),
            ("application/json-patch+json", "application/json-patch+json"),
            ("text/plain", "text/plain"),
        ];
        for (header, want) in ok {
            assert_eq!(parse(header).as_deref(), Some(want), "{header}");
        }
        for bad in [
            "",
            "application",
            "application/",
            "/json",
            "application/json; charset=latin1",
            "application/json; charset=utf-16",
            "application/json; boundary=x",
            "application/json; charset",
            "application /json",
            "application/json, text/plain",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn one_unencoded_content_type() {
        let mut h = HeaderMap::new();
        assert_eq!(requested(&h), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(requested(&h).as_deref(), Some("application/json"));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert!(requested(&h).is_some());
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(requested(&h), None);
        h.remove(CONTENT_ENCODING);
        h.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(requested(&h), None);
    }

    #[test]
    fn declared_media_types() {
        assert_eq!(
            declared("application/json-patch+json"),
            Some((JSON_PATCH.into(), Kind::Patch))
        );
        assert_eq!(
            declared("application/json; charset=utf-8"),
            Some(("application/json".into(), Kind::Json))
        );
        assert_eq!(
            declared("application/merge-patch+json").map(|d| d.1),
            Some(Kind::Json)
        );
        assert_eq!(declared("multipart/form-data"), None);
    }
}
