//! Reverse-proxy header hygiene, both ways.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1) and every header named in
//! `Connection` are removed; method-override headers are never forwarded;
//! `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Forwarded`
//! and `Via` are set on the way up, `Via` on the way down.

use std::net::IpAddr;

use http::header::{CONNECTION, FORWARDED, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA};
use http::{HeaderMap, HeaderName, HeaderValue};

/// What the proxy adds to `Via`.
pub const VIA_VALUE: &str = "1.1 simgate";

static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("proxy-authenticate"),
    HeaderName::from_static("proxy-authorization"),
];

/// Headers that ask a server to treat a request as another method. Never
/// honoured and never forwarded.
pub static METHOD_OVERRIDE: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Sets the forwarding headers for a request from `client` that arrived
/// with `host` over `proto` (`http` or `https`).
pub fn set_forwarding(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    append_csv(headers, &X_FORWARDED_FOR, &client.to_string());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    let node = match client {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let mut element = format!("for={node};proto={proto}");
    if let Some(h) = host
        .and_then(|h| h.to_str().ok())
        .filter(|h| is_token_or_hostport(h))
    {
        element.push_str(";host=");
        element.push_str(h);
    }
    append_csv(headers, &FORWARDED, &element);
    append_csv(headers, &VIA, VIA_VALUE);
}

/// Appends `Via` to a response.
pub fn add_via(headers: &mut HeaderMap) {
    append_csv(headers, &VIA, VIA_VALUE);
}

/// Removes the request's `Host`; the client sets the upstream's.
pub fn remove_host(headers: &mut HeaderMap) {
    headers.remove(HOST);
}

fn append_csv(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    let joined = match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {value}"),
        _ => value.to_owned(),
    };
    if let Ok(v) = HeaderValue::from_str(&joined) {
        headers.insert(name.clone(), v);
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
    fn appends_forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        set_forwarding(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            "http",
            Some(&HeaderValue::from_static("gw:8080")),
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "gw:8080");
        assert_eq!(h[FORWARDED], "for=127.0.0.1;proto=http;host=gw:8080");
        assert_eq!(h[VIA], "1.1 simgate");
        let mut h = HeaderMap::new();
        set_forwarding(&mut h, "::1".parse().unwrap(), "https", None);
        assert_eq!(h[FORWARDED], "for=\"[::1]\";proto=https");
    }
}
