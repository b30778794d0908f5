//! Media types: the request's `Content-Type` against the operation's.
//!
//! A request names exactly one media type. For the media types the gateway
//! validates (JSON, `+json`, JSON Patch, `application/x-www-form-urlencoded`)
//! its only allowed parameter is `charset=utf-8`; other declared media types
//! (multipart, XML, octet-stream, …, and ranges such as `image/*` or `*/*`)
//! take any parameters (`boundary=…`) and their bodies are forwarded as sent.
//! A `Content-Encoding` other than `identity` is refused: the gateway
//! validates the bytes it forwards and does not decompress them.

use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

use crate::error::Error;

/// How a body of a declared media type is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A JSON document against the operation's schema.
    Json,
    /// A JSON Patch (RFC 6902 array or the `{"operations": [...]}` envelope).
    Patch,
    /// `application/x-www-form-urlencoded`, field by field.
    Form,
    /// Forwarded as sent, without schema validation.
    Opaque,
}

/// The media type JSON Patch bodies are declared with.
pub(crate) const JSON_PATCH: &str = "application/json-patch+json";
/// The media type of HTML form bodies.
pub(crate) const FORM: &str = "application/x-www-form-urlencoded";

/// The lowercased `type/subtype` (or range) of a declared media type and
/// how its bodies are checked; `None` when it is not a media type.
pub(crate) fn declared(media_type: &str) -> Option<(String, Kind)> {
    let essence = media_type.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, sub) = essence.split_once('/')?;
    if !(is_token(kind) && is_token(sub)) {
        return None;
    }
    let kind = if essence == JSON_PATCH {
        Kind::Patch
    } else if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Kind::Json
    } else if essence == FORM {
        Kind::Form
    } else {
        Kind::Opaque
    };
    Some((essence, kind))
}

/// Whether a declared essence (or range) covers a requested essence.
pub(crate) fn covers(declared: &str, requested: &str) -> bool {
    if declared == requested || declared == "*/*" {
        return true;
    }
    match declared.strip_suffix("/*") {
        Some(kind) => requested.split_once('/').is_some_and(|(k, _)| k == kind),
        None => false,
    }
}

/// The request's media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requested {
    /// Lowercased `type/subtype`.
    pub(crate) essence: String,
    /// Whether it carries no parameter but `charset=utf-8`.
    pub(crate) plain_utf8: bool,
}

/// The request's one `Content-Type`: `Ok(None)` when there is none (or
/// several, or a malformed one); a content-encoded body is refused.
pub(crate) fn requested(headers: &HeaderMap) -> Result<Option<Requested>, Error> {
    for v in headers.get_all(CONTENT_ENCODING) {
        let text = v.to_str().unwrap_or("?").trim();
        if !text.eq_ignore_ascii_case("identity") {
            let shown: String = text.chars().take(32).collect();
            return Err(Error::ContentEncoded { encoding: shown });
        }
    }
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Ok(None);
    };
    Ok(value.to_str().ok().and_then(parse))
}

/// See [`requested`].
pub(crate) fn parse(value: &str) -> Option<Requested> {
    let mut parts = value.split(';');
    let essence = parts.next()?.trim();
    let (kind, sub) = essence.split_once('/')?;
    if !is_token(kind) || !is_token(sub) {
        return None;
    }
    let mut plain_utf8 = true;
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            continue;
        }
        let (name, v) = param.split_once('=')?;
        if !is_token(name.trim()) {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        if !name.trim().eq_ignore_ascii_case("charset") || !v.eq_ignore_ascii_case("utf-8") {
            plain_utf8 = false;
        }
    }
    Some(Requested {
        essence: essence.to_ascii_lowercase(),
        plain_utf8,
    })
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

    fn essence(v: &str) -> Option<(String, bool)> {
        parse(v).map(|r| (r.essence, r.plain_utf8))
    }

    #[test]
    fn content_types() {
        let ok = [
            ("application/json", "application/json", true),
            ("Application/JSON", "application/json", true),
            ("application/json; charset=utf-8", "application/json", true),
            (
                "application/json;charset=\"UTF-8\"",
                "application/json",
                true,
            ),
            ("application/json;", "application/json", true),
            (
                "application/json-patch+json",
                "application/json-patch+json",
                true,
            ),
            ("text/plain", "text/plain", true),
            (
                "application/json; charset=latin1",
                "application/json",
                false,
            ),
            (
                "multipart/form-data; boundary=x",
                "multipart/form-data",
                false,
            ),
        ];
        for (header, want, plain) in ok {
            assert_eq!(essence(header), Some((want.to_owned(), plain)), "{header}");
        }
        for bad in [
            "",
            "application",
            "application/",
            "/json",
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
        assert_eq!(requested(&h).unwrap(), None);
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(
            requested(&h).unwrap().map(|r| r.essence).as_deref(),
            Some("application/json")
        );
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
        assert!(requested(&h).unwrap().is_some());
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(matches!(
            requested(&h),
            Err(Error::ContentEncoded { encoding }) if encoding == "gzip"
        ));
        h.remove(CONTENT_ENCODING);
        h.append(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        assert_eq!(requested(&h).unwrap(), None);
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
        assert_eq!(declared(FORM).map(|d| d.1), Some(Kind::Form));
        assert_eq!(
            declared("multipart/form-data").map(|d| d.1),
            Some(Kind::Opaque)
        );
        assert_eq!(declared("image/*").map(|d| d.1), Some(Kind::Opaque));
        assert_eq!(declared("nonsense"), None);
        assert!(covers("image/*", "image/png"));
        assert!(covers("*/*", "text/xml"));
        assert!(!covers("image/*", "text/png"));
        assert!(!covers("application/xml", "application/json"));
    }
}
