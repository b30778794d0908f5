//! The address of the client behind a request: the TCP peer, unless the peer
//! is a trusted proxy.
//!
//! Forwarding headers are written by whoever sends them, so they are
//! believed only from a peer inside the configured trusted-proxy CIDRs
//! (none by default), and only the one header those proxies maintain
//! ([`ForwardedHeader`], `X-Forwarded-For` by default): a header the proxy
//! passes through untouched is the client's own invention. The chain in that
//! header is read right to left, skipping trusted proxies; the first
//! untrusted address is the client. Entries to its left were written by the
//! client and are ignored, so prepending addresses changes nothing.
//!
//! An entry that is not an address (`unknown`, an obfuscated `_name`) ends
//! the walk at the trusted proxy that reported it; a chain of trusted
//! proxies only yields its left-most entry. IPv4-mapped IPv6 addresses are
//! reduced to IPv4.
//!
//! ```
//! use http::HeaderMap;
//! use simgate::rate_limit::client_addr::{ClientAddr, ForwardedHeader, TrustedProxies};
//!
//! let trusted = TrustedProxies::parse(&["10.0.0.0/8".to_owned()]).unwrap();
//! let resolve = ClientAddr::new(trusted, ForwardedHeader::XForwardedFor);
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1".parse().unwrap());
//! // From a trusted proxy: the right-most untrusted entry.
//! assert_eq!(resolve.of([10, 0, 0, 1].into(), &headers).to_string(), "203.0.113.9");
//! // From anyone else: the peer itself.
//! assert_eq!(resolve.of([198, 51, 100, 7].into(), &headers).to_string(), "198.51.100.7");
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::HeaderMap;
use http::header::{FORWARDED, HeaderName};
use ipnet::IpNet;

/// Networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`) or single addresses (`192.0.2.1`).
    pub fn parse(items: &[String]) -> Result<TrustedProxies, String> {
        let nets = items
            .iter()
            .map(|s| {
                let s = s.trim();
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies(nets.into()))
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The forwarding header trusted proxies maintain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (the default).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
    /// `X-Real-IP: client`.
    XRealIp,
}

impl ForwardedHeader {
    /// Parses `x-forwarded-for`, `forwarded` or `x-real-ip`.
    pub fn parse(s: &str) -> Option<ForwardedHeader> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(ForwardedHeader::XForwardedFor),
            "forwarded" => Some(ForwardedHeader::Forwarded),
            "x-real-ip" => Some(ForwardedHeader::XRealIp),
            _ => None,
        }
    }

    fn name(self) -> HeaderName {
        match self {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => FORWARDED,
            ForwardedHeader::XRealIp => HeaderName::from_static("x-real-ip"),
        }
    }
}

/// Resolves the client address of requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAddr {
    trusted: TrustedProxies,
    header: ForwardedHeader,
}

/// One hop of a forwarding chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Addr(IpAddr),
    /// `unknown`, an obfuscated identifier or garbage.
    Opaque,
}

impl ClientAddr {
    /// Believes `header` from peers in `trusted`.
    pub fn new(trusted: TrustedProxies, header: ForwardedHeader) -> ClientAddr {
        ClientAddr { trusted, header }
    }

    /// Whether `peer` is a trusted proxy, whose forwarding header is
    /// believed (and which the proxy extends rather than replaces).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.contains(peer)
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusted.contains(peer) {
            return peer;
        }
        let mut nearest = peer;
        let values = headers.get_all(self.header.name());
        let mut chain: Vec<Hop> = Vec::new();
        for value in values {
            let Ok(text) = value.to_str() else {
                chain.push(Hop::Opaque);
                continue;
            };
            match self.header {
                ForwardedHeader::Forwarded => forwarded_hops(text, &mut chain),
                _ => chain.extend(text.split(',').map(|e| parse_hop(e.trim()))),
            }
        }
        for hop in chain.iter().rev() {
            match *hop {
                Hop::Addr(ip) if self.trusted.contains(ip) => nearest = ip,
                Hop::Addr(ip) => return ip,
                Hop::Opaque => return nearest,
            }
        }
        nearest
    }
}

/// The `for=` of each element of a `Forwarded` value, quotes respected.
fn forwarded_hops(text: &str, out: &mut Vec<Hop>) {
    for element in split_unquoted(text, ',') {
        let hop = split_unquoted(element, ';')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
            .map_or(Hop::Opaque, |(_, value)| parse_hop(value.trim()));
        out.push(hop);
    }
}

/// Splits at `sep` outside double quotes.
fn split_unquoted(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    let mut escaped = false;
    text.split(move |c: char| {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            return true;
        }
        false
    })
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]:80`, any of
/// them in double quotes.
fn parse_hop(entry: &str) -> Hop {
    let entry = entry
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or(entry);
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Hop::Addr(ip.to_canonical());
    }
    if let Ok(sa) = entry.parse::<SocketAddr>() {
        return Hop::Addr(sa.ip().to_canonical());
    }
    if let Some(inner) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']'))
        && let Ok(ip) = inner.parse::<IpAddr>()
    {
        return Hop::Addr(ip.to_canonical());
    }
    Hop::Opaque
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(trusted: &[&str], header: ForwardedHeader) -> ClientAddr {
        let trusted: Vec<String> = trusted.iter().map(|s| s.to_string()).collect();
        ClientAddr::new(TrustedProxies::parse(&trusted).unwrap(), header)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_sends() {
        let r = resolver(&[], ForwardedHeader::XForwardedFor);
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
        ]);
        assert_eq!(r.of(ip("198.51.100.7"), &h), ip("198.51.100.7"));
        let r = resolver(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        assert_eq!(r.of(ip("198.51.100.7"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn right_most_untrusted_entry_from_trusted_proxies() {
        let r = resolver(&["10.0.0.0/8", "192.0.2.1"], ForwardedHeader::XForwardedFor);
        // Client-prepended entries are ignored; trusted hops are skipped.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 7.7.7.7"),
            ("x-forwarded-for", "203.0.113.9, 192.0.2.1, 10.9.9.9"),
        ]);
        assert_eq!(r.of(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        // No header: the proxy itself.
        assert_eq!(r.of(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        // Only trusted hops: the left-most.
        let h = headers(&[("x-forwarded-for", "10.2.2.2, 10.3.3.3")]);
        assert_eq!(r.of(ip("10.0.0.1"), &h), ip("10.2.2.2"));
        // Garbage stops at the proxy that reported it.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, unknown, 10.3.3.3")]);
        assert_eq!(r.of(ip("10.0.0.1"), &h), ip("10.3.3.3"));
    }

    #[test]
    fn only_the_configured_header_counts() {
        let r = resolver(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("forwarded", "for=1.2.3.4"), ("x-real-ip", "1.2.3.4")]);
        assert_eq!(r.of(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let r = resolver(&["10.0.0.0/8"], ForwardedHeader::XRealIp);
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(r.of(ip("10.0.0.1"), &h), ip("5.6.7.8"));
    }

    #[test]
    fn forwarded_header_with_quotes_ports_and_ipv6() {
        let r = resolver(
            &["10.0.0.0/8", "2001:db8:1::/48"],
            ForwardedHeader::Forwarded,
        );
        let h = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https;by="a,b", For="[2001:db8:1::5]""#,
        )]);
        assert_eq!(r.of(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", "for=\"203.0.113.9:80\";proto=http")]);
        assert_eq!(r.of(ip("10.0.0.1"), &h), ip("203.0.113.9"));
        let h = headers(&[("forwarded", "for=_hidden, proto=http")]);
        assert_eq!(r.of(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let r = resolver(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.9")]);
        assert_eq!(r.of(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.9"));
        assert_eq!(
            r.of(ip("::ffff:198.51.100.7"), &HeaderMap::new()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn trusted_proxies_parse() {
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
        let t = TrustedProxies::parse(&["10.1.2.3/8".into(), "::1".into()]).unwrap();
        assert!(t.contains(ip("10.200.0.1")));
        assert!(t.contains(ip("::1")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert_eq!(
            ForwardedHeader::parse("X-Real-IP"),
            Some(ForwardedHeader::XRealIp)
        );
        assert_eq!(ForwardedHeader::parse("via"), None);
    }
}
