//! Reverse-proxy header hygiene, both ways.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) and every header named in
//! `Connection` are removed, except the end-to-end headers the gateway
//! checked or set ([`PROTECTED`]): naming `Content-Type` or `X-Request-Id`
//! in `Connection` cannot strip them after validation. Method-override
//! headers are never forwarded. `X-Forwarded-For`, `X-Forwarded-Proto`,
//! `X-Forwarded-Host`, `Forwarded` and `Via` are set on the way up: a
//! trusted proxy's `X-Forwarded-For`/`Forwarded` chain is extended, anyone
//! else's is replaced (the rule of
//! [`ClientAddr`](crate::rate_limit::client_addr::ClientAddr)). On the way
//! down `Content-Length` is dropped when `Transfer-Encoding` is present
//! (RFC 9112 §6.3) and `Via` is added.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, FORWARDED, HOST, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::{HeaderMap, HeaderName, HeaderValue};

/// What the proxy adds to `Via`.
pub const VIA_VALUE: &str = "1.1 simgate";

/// The hop-by-hop headers of RFC 9110 §7.6.1 and their common
/// predecessors, as [`HOP_BY_HOP`] spells them.
const HOP_BY_HOP_NAMES: [&str; 9] = [
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
];

static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static(HOP_BY_HOP_NAMES[5]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[6]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[7]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[8]),
];

/// Headers that ask a server to treat a request as another method. Never
/// honoured and never forwarded.
pub static METHOD_OVERRIDE: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// End-to-end headers that a `Connection` header cannot remove: what was
/// validated (body type and length), identified (request id), authenticated
/// or routed (Authorization, Host) is what is forwarded.
pub static PROTECTED: [HeaderName; 6] = [
    CONTENT_TYPE,
    CONTENT_LENGTH,
    CONTENT_ENCODING,
    AUTHORIZATION,
    HOST,
    HeaderName::from_static("x-request-id"),
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Removes hop-by-hop headers, including those named in `Connection`
/// (but never the [`PROTECTED`] ones).
///
/// One pass over the names finds which hop-by-hop headers are present (by
/// length first, so most names cost one test); only those are removed.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOP_BY_HOP.len()];
    let mut any = false;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present[i] = true;
            any = true;
        }
    }
    if !any {
        return;
    }
    // Names listed in `Connection` beyond the standard hop-by-hop ones (rare:
    // the list is allocated only when there is one).
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| hop_by_hop_index(name).is_none() && !PROTECTED.contains(name))
        .collect();
    for name in &named {
        headers.remove(name);
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// Lengths of the [`HOP_BY_HOP`] names, as bits.
const HOP_BY_HOP_LENGTHS: u32 = {
    let mut bits = 0u32;
    let mut i = 0;
    while i < HOP_BY_HOP_NAMES.len() {
        bits |= 1 << HOP_BY_HOP_NAMES[i].len();
        i += 1;
    }
    bits
};

/// The position of `name` in [`HOP_BY_HOP`], if it is one.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    let len = name.as_str().len();
    if len >= 32 || HOP_BY_HOP_LENGTHS & (1 << len) == 0 {
        return None;
    }
    HOP_BY_HOP.iter().position(|h| h == name)
}

/// Sets the forwarding headers for a request from `client` that arrived
/// with `host` over `proto` (`http` or `https`). From a `trusted` proxy the
/// `X-Forwarded-For` and `Forwarded` chains are extended; from anyone else
/// they (and `X-Real-IP`) are the client's invention and are replaced.
pub fn set_forwarding(
    headers: &mut HeaderMap,
    client: IpAddr,
    trusted: bool,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    if !trusted {
        headers.remove(&X_FORWARDED_FOR);
        headers.remove(FORWARDED);
        headers.remove(&X_REAL_IP);
    }
    let mut text = String::with_capacity(64);
    push_ip(&mut text, client);
    append_csv(headers, &X_FORWARDED_FOR, &text);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    text.clear();
    text.push_str("for=");
    match client {
        IpAddr::V4(_) => push_ip(&mut text, client),
        IpAddr::V6(_) => {
            text.push_str("\"[");
            push_ip(&mut text, client);
            text.push_str("]\"");
        }
    }
    text.push_str(";proto=");
    text.push_str(proto);
    if let Some(h) = host
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_token_or_hostport(h))
    {
        text.push_str(";host=");
        text.push_str(h);
    }
    append_csv(headers, &FORWARDED, &text);
    add_via(headers);
}

/// Response framing hygiene: a message with `Transfer-Encoding` has no
/// meaningful `Content-Length` (RFC 9112 §6.3); keeping it would let the
/// length truncate what the coding framed.
pub fn response_framing(headers: &mut HeaderMap) {
    if headers.contains_key(TRANSFER_ENCODING) {
        headers.remove(CONTENT_LENGTH);
    }
}

/// Appends `Via` to a request or response.
pub fn add_via(headers: &mut HeaderMap) {
    if headers.contains_key(VIA) {
        append_csv(headers, &VIA, VIA_VALUE);
    } else {
        headers.insert(VIA, HeaderValue::from_static(VIA_VALUE));
    }
}

/// Removes the request's `Host`; the client sets the upstream's.
pub fn remove_host(headers: &mut HeaderMap) {
    headers.remove(HOST);
}

/// Sets `name` to its previous value (if any) followed by `, value`.
fn append_csv(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    let joined = match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => {
            let mut joined = String::with_capacity(prev.len() + 2 + value.len());
            joined.push_str(prev);
            joined.push_str(", ");
            joined.push_str(value);
            joined
        }
        _ => value.to_owned(),
    };
    // The String's buffer becomes the value's, without a copy.
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
        headers.insert(name.clone(), v);
    }
}

/// Appends `ip` as `Display` writes it; IPv4 (the common case) without the
/// formatting machinery.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        // Writing into a String cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn is_token_or_hostport(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_names_are_spelled_once() {
        for (name, text) in HOP_BY_HOP.iter().zip(HOP_BY_HOP_NAMES) {
            assert_eq!(name.as_str(), text);
            assert!(hop_by_hop_index(name).is_some());
        }
        assert_eq!(hop_by_hop_index(&CONTENT_TYPE), None);
        assert_eq!(
            hop_by_hop_index(&HeaderName::from_static("x-connectio")),
            None
        );
    }

    #[test]
    fn ips_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.99.100",
            "255.255.255.9",
            "::1",
            "2001:db8::42",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
    }

    #[test]
    fn nothing_hop_by_hop_leaves_the_headers_alone() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn connection_cannot_name_protected_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("Content-Type, x-request-id, authorization, content-length"),
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("2"));
        h.insert("x-request-id", HeaderValue::from_static("r1"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 4, "{h:?}");
        assert!(!h.contains_key(CONNECTION));
    }

    #[test]
    fn transfer_encoding_drops_content_length() {
        let mut h = HeaderMap::new();
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        response_framing(&mut h);
        assert!(!h.contains_key(CONTENT_LENGTH));
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        response_framing(&mut h);
        assert_eq!(h[CONTENT_LENGTH], "5");
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert(FORWARDED, HeaderValue::from_static("for=6.6.6.6"));
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        set_forwarding(&mut h, "127.0.0.1".parse().unwrap(), false, "http", None);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h[FORWARDED], "for=127.0.0.1;proto=http");
        assert!(!h.contains_key("x-real-ip"));
    }

    #[test]
    fn appends_forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        set_forwarding(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            true,
            "http",
            Some(&HeaderValue::from_static("gw:8080")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gw:8080");
        assert_eq!(h[FORWARDED], "for=127.0.0.1;proto=http;host=gw:8080");
        assert_eq!(h[VIA], "1.1 simgate");
        let mut h = HeaderMap::new();
        set_forwarding(&mut h, "::1".parse().unwrap(), true, "https", None);
        assert_eq!(h[FORWARDED], "for=\"[::1]\";proto=https");
    }
}
