//! A catalog of hostile HTTP input, one function per attack class, each case
//! with the RFC or CVE it comes from. Requests are written as raw bytes on
//! TCP sockets (and raw HTTP/2 frames), upstream answers as raw bytes from
//! [`Raw`], so every case is byte-exact.
//!
//! No timing thresholds: where a case is about a connection being closed,
//! the gateway runs with 1 s timeouts and the test waits at most
//! [`CLOSE_BOUND`] for the close.
//!
//! Classes: request smuggling and framing, size limits, slow clients and
//! drain, HTTP/2 floods, header tricks, hostile upstreams.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing_subscriber::layer::SubscriberExt;

use support::gateway::{PASSTHROUGH, TestGateway, standard_unlimited};
use support::http::{raw, raw_status, send};
use support::tokens::token;
use support::upstream::{Raw, Recording};

/// Longest wait for the gateway to close a connection that it must close.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// Short timeouts so that closes happen quickly.
const FAST_TIMEOUTS: &str = "[limits]\nheader_read_timeout = \"1s\"\nidle_timeout = \"1s\"\n";

async fn passthrough(upstream: &str, extra: &str) -> TestGateway {
    TestGateway::start_with(
        &format!("[upstream]\nurl = \"{upstream}\"\n{extra}"),
        PASSTHROUGH,
    )
    .await
}

async fn gateway(upstream: &str) -> TestGateway {
    TestGateway::start(&standard_unlimited(upstream)).await
}

fn admin() -> String {
    token("hostile-admin", &["ORG_ADMIN"], &["sp:scopes:all"])
}

/// A create body as the Python SDKs send it.
const CREATE: &str = r#"{"name": "aName", "description": "d", "type": "ServiceNow Service Desk", "attributes": {"uid": "x"}, "sources": ["2c9180835d191a86015d28455b4a2329"], "cluster": "xyzzy999", "statusMap": {"closed_cancelled": "Failed"}, "request": {"short_description": "r"}, "beforeProvisioningRule": {"type": "RULE", "id": "2c918085708c274401708c2a8a760001", "name": "Example Rule"}}"#;

/// The JSON body of a raw HTTP/1.1 response.
fn raw_json(response: &str) -> serde_json::Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

/// How many responses a raw exchange returned.
fn responses(response: &str) -> usize {
    response.matches("HTTP/1.1 ").count()
}

/// Waits (at most [`CLOSE_BOUND`]) until the peer closes `s`, reading and
/// discarding what it sends. True if it closed.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let wait = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(CLOSE_BOUND, wait).await.is_ok()
}

/// Counts the ERROR events on this thread (the tests run on a
/// current-thread runtime, so the gateway's tasks log here too).
#[derive(Clone, Default)]
struct ErrorEvents(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ErrorEvents {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

// ---------------------------------------------------------------------------
// Request smuggling and message framing
// ---------------------------------------------------------------------------

/// Broken chunked framing is the client's fault: 400 in the DTO shape, no
/// ERROR line, nothing forwarded.
/// - chunk size `0x10` (RFC 9112 §7.1: chunk-size is 1*HEXDIG, no prefix);
/// - bare LF line endings (RFC 9112 §2.2: a recipient MAY accept them only
///   in the start line and fields, never as chunk framing).
#[tokio::test]
async fn smuggling_malformed_chunked_framing_is_400() {
    let errors = ErrorEvents::default();
    let _log =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(errors.clone()));
    let up = Recording::start().await;
    let bodies: [&[u8]; 3] = [
        b"0x10\r\n0123456789abcdef\r\n0\r\n\r\n",
        b"5\nhello\n0\n\n",
        b"5\r\nhello\r\nzz\r\n\r\n",
    ];
    // Through body validation (gateway) and straight to the proxy.
    let gw = gateway(&up.url()).await;
    let pt = passthrough(&up.url(), "").await;
    let auth = format!("Bearer {}", admin());
    for (target, path) in [(&gw, "/beta/sim-integrations"), (&pt, "/anything")] {
        for body in bodies {
            let mut req = format!(
                "POST {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\n\
                 X-SailPoint-Experimental: true\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )
            .into_bytes();
            req.extend_from_slice(body);
            let res = raw(target.addr, &req).await;
            assert_eq!(raw_status(&res), 400, "{path} {body:?}: {res}");
            let dto = raw_json(&res);
            assert_eq!(dto["detailCode"], "400.0 Bad Request", "{res}");
            assert!(dto["trackingId"].is_string(), "{res}");
        }
    }
    assert_eq!(
        errors.count(),
        0,
        "a client framing error wrote an ERROR line"
    );
    assert!(
        up.seen().iter().all(|s| s.body.is_empty()),
        "no broken body was forwarded"
    );
    gw.stop().await;
    pt.stop().await;
}

/// CL.TE and TE.CL (RFC 9112 §6.1, §11.2; the PortSwigger smuggling
/// classes): with both `Content-Length` and `Transfer-Encoding` the coding
/// wins, the connection closes after the response, and the bytes after the
/// chunked body never become a second request. Two different
/// `Content-Length` values (RFC 9112 §6.3 item 5), obs-fold (RFC 9112 §5.2),
/// whitespace before the colon (RFC 9112 §5.1) and codings other than a
/// final `chunked` (RFC 9112 §6.1) are 400.
#[tokio::test]
async fn smuggling_length_and_coding_conflicts() {
    let up = Recording::start().await;
    let gw = passthrough(&up.url(), "").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    // CL.TE: a front end trusting CL would forward everything as one body.
    let cl_te = format!(
        "POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    // TE.CL: a back end trusting CL would read `smuggled` as the next request.
    let te_cl = format!(
        "POST /b HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    for req in [cl_te, te_cl] {
        let res = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(responses(&res), 1, "{res}");
        assert!(matches!(raw_status(&res), 200 | 400), "{res}");
    }
    let seen = up.seen();
    assert!(seen.iter().all(|s| s.uri.path() != "/smuggled"), "{seen:?}");
    for s in &seen {
        assert!(
            !(s.headers.contains_key("content-length")
                && s.headers.contains_key("transfer-encoding")),
            "{s:?}"
        );
    }
    let before = up.count();
    for bad in [
        "POST /c HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "GET /d HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n b\r\n\r\n",
        "POST /e HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "POST /f HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST /g HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST /h HTTP/1.0\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "GET /i HTTP/1.1\r\nHost: gw\r\nX-Nul: a\0b\r\n\r\n",
    ] {
        let res = raw(gw.addr, bad.as_bytes()).await;
        assert_eq!(raw_status(&res), 400, "{bad:?}: {res}");
    }
    assert_eq!(
        up.count(),
        before,
        "refused requests never reach the upstream"
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Size limits
// ---------------------------------------------------------------------------

/// Heads beyond `limits.max_header_bytes` are 431 (RFC 6585 §5), too many
/// header fields too, and bodies beyond `limits.max_body_bytes` are 413
/// (RFC 9110 §15.5.14), declared or chunked; none reaches the upstream.
#[tokio::test]
async fn size_limits_are_enforced_before_forwarding() {
    let up = Recording::start().await;
    let gw = passthrough(
        &up.url(),
        "[limits]\nmax_header_bytes = 8192\nmax_body_bytes = 1024\n",
    )
    .await;
    let big_header = format!(
        "GET / HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many_headers = format!("GET / HTTP/1.1\r\nHost: gw\r\n{many}\r\n");
    for req in [big_header, many_headers] {
        let res = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(raw_status(&res), 431, "{res}");
    }
    let declared =
        "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 1025\r\nConnection: close\r\n\r\n";
    let res = raw(gw.addr, declared.as_bytes()).await;
    assert_eq!(raw_status(&res), 413, "{res}");
    let chunk = format!("100\r\n{}\r\n", "x".repeat(256));
    let chunked = format!(
        "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(5)
    );
    let res = raw(gw.addr, chunked.as_bytes()).await;
    assert_eq!(raw_status(&res), 413, "{res}");
    assert!(up.seen().iter().all(|s| s.body.len() <= 1024));
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Slow clients and drain
// ---------------------------------------------------------------------------

/// Slowloris and idle sockets: a connection that sends nothing, the HTTP/2
/// preface one byte a second, or an HTTP/1.1 head one byte a second is
/// closed once `header_read_timeout` is over (the timer runs from the first
/// byte, before protocol detection). RFC 9112 §9.5 allows a server to close
/// idle connections; the classic attack is slowloris (CVE-2007-6750).
#[tokio::test]
async fn slow_clients_are_closed() {
    let up = Recording::start().await;
    let gw = passthrough(&up.url(), FAST_TIMEOUTS).await;

    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed(&mut silent).await, "a silent connection stayed open");

    for trickle in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        &b"GET / HTTP/1.1\r\nHost: gw\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"[..],
    ] {
        let s = TcpStream::connect(gw.addr).await.unwrap();
        let (mut read, mut write) = s.into_split();
        let writer = tokio::spawn(async move {
            for b in trickle {
                if write.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            // Keep the write half open: only the gateway may close.
            tokio::time::sleep(CLOSE_BOUND).await;
        });
        let mut buf = [0u8; 1024];
        let closed = tokio::time::timeout(CLOSE_BOUND, async {
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok();
        writer.abort();
        assert!(closed, "a trickling client ({:?}…) stayed connected", &trickle[..3]);
    }
    assert_eq!(up.count(), 0);
    gw.stop().await;
}

/// Shutdown ends connections that never sent a request at once, without
/// waiting for their header timer; the listener is closed after it.
#[tokio::test]
async fn drain_drops_connections_that_never_sent_a_request() {
    let up = Recording::start().await;
    let gw = passthrough(&up.url(), "[limits]\nheader_read_timeout = \"300s\"\n").await;
    let addr = gw.addr;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"PRI * HTTP/2").await.unwrap();
    // Make sure the gateway accepted both before it stops.
    let res = send(Method::GET, &gw.url("/ok"), &[], "").await;
    assert_eq!(res.status, 200);
    tokio::time::timeout(CLOSE_BOUND, gw.stop())
        .await
        .expect("shutdown waited for idle sockets");
    assert!(closed(&mut idle).await);
    assert!(closed(&mut half).await);
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------
// HTTP/2
// ---------------------------------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK for `GET http://gw/` (static table entries and one literal).
fn get_root() -> Vec<u8> {
    // :method GET, :scheme http, :path /, :authority "gw" (literal, not indexed)
    vec![0x82, 0x86, 0x84, 0x01, 2, b'g', b'w']
}

/// A raw HTTP/2 connection after the preface and an empty SETTINGS.
async fn h2_connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    s.write_all(&hello).await.unwrap();
    s
}

/// Reads frames until the peer closes (true) or [`CLOSE_BOUND`] passes
/// (false); returns the frame types seen.
async fn h2_frames_until_close(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut kinds = Vec::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let wait = async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                kinds.push(buf[3]);
                buf.drain(..9 + len);
            }
        }
    };
    let closed = tokio::time::timeout(CLOSE_BOUND, wait).await.is_ok();
    (kinds, closed)
}

/// RFC 9113 has no idle limit of its own; a connection that sends its
/// preface and SETTINGS and then nothing is closed after
/// `limits.idle_timeout`, with a GOAWAY (RFC 9113 §6.8), as is a
/// well-behaved client (the h2 crate, which answers PINGs) that stays idle.
#[tokio::test]
async fn http2_idle_connections_are_closed() {
    let up = Recording::start().await;
    let gw = passthrough(&up.url(), FAST_TIMEOUTS).await;
    let mut s = h2_connect(gw.addr).await;
    let (kinds, closed) = h2_frames_until_close(&mut s).await;
    assert!(
        closed,
        "an idle HTTP/2 connection stayed open; frames {kinds:?}"
    );
    assert!(kinds.contains(&GOAWAY), "{kinds:?}");

    // A real client: one request, then idle.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(conn);
    let req = Request::get(format!("http://{}/x", gw.addr))
        .body(())
        .unwrap();
    let (res, _) = client.send_request(req, true).unwrap();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 200);
    let mut body = res.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let ended = tokio::time::timeout(CLOSE_BOUND, driver).await;
    assert!(ended.is_ok(), "an idle h2 client kept its connection");
    assert_eq!(up.count(), 1);
    gw.stop().await;
}

/// Floods on one HTTP/2 connection end that connection, not the gateway:
/// - rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, a thousand
///   times; beyond a small budget of streams reset before being served, the
///   connection gets GOAWAY and is closed;
/// - CONTINUATION flood (CVE-2024-27316 class, VU#421644): HEADERS without
///   END_HEADERS followed by endless CONTINUATION frames; the header block
///   is cut off at `max_header_bytes` and the connection closed;
/// - SETTINGS and PING floods (CVE-2019-9515, CVE-2019-9512): thousands of
///   frames that each ask for an acknowledgement, without reading; bounded
///   by the socket, and afterwards the gateway still serves.
///
/// After each, a fresh connection is served, and the flooding connections
/// left at most a few requests upstream.
#[tokio::test]
async fn http2_floods_end_the_connection_not_the_gateway() {
    let up = Recording::start().await;
    let gw = passthrough(&up.url(), FAST_TIMEOUTS).await;

    // Rapid reset.
    let mut s = h2_connect(gw.addr).await;
    let mut flood = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &get_root()));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = s.write_all(&flood).await;
    let (kinds, closed) = h2_frames_until_close(&mut s).await;
    assert!(
        closed,
        "rapid reset: connection still open; frames {kinds:?}"
    );
    assert!(kinds.contains(&GOAWAY), "{kinds:?}");

    // CONTINUATION flood: 1 MiB of header block in 16 KiB frames.
    let mut s = h2_connect(gw.addr).await;
    let mut block = get_root();
    block.extend_from_slice(&[0x00, 3, b'x', b'-', b'a', 0x7f, 0x81, 0x7f]);
    let mut flood = frame(HEADERS, END_STREAM, 1, &block);
    let filler = vec![b'a'; 16 * 1024];
    for _ in 0..64 {
        flood.extend(frame(CONTINUATION, 0, 1, &filler));
    }
    let _ = tokio::time::timeout(CLOSE_BOUND, s.write_all(&flood)).await;
    let (kinds, closed) = h2_frames_until_close(&mut s).await;
    assert!(
        closed,
        "CONTINUATION flood: connection still open; frames {kinds:?}"
    );

    // SETTINGS and PING floods, written without reading the acks.
    for kind in [SETTINGS, PING] {
        let mut s = h2_connect(gw.addr).await;
        let payload: &[u8] = if kind == PING { &[0; 8] } else { &[] };
        let one = frame(kind, 0, 0, payload);
        let flood: Vec<u8> = one
            .iter()
            .copied()
            .cycle()
            .take(one.len() * 20_000)
            .collect();
        let _ = tokio::time::timeout(CLOSE_BOUND, s.write_all(&flood)).await;
        let (_, closed) = h2_frames_until_close(&mut s).await;
        assert!(
            closed,
            "frame {kind} flood: connection not closed after going idle"
        );
    }

    let res = send(Method::GET, &gw.url("/after"), &[], "").await;
    assert_eq!(res.status, 200, "the gateway still serves");
    let upstream = up.seen();
    assert!(
        upstream.iter().filter(|s| s.uri.path() == "/").count() <= 100,
        "reset streams were served: {}",
        upstream.len()
    );
    let _ = DATA;
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Header tricks
// ---------------------------------------------------------------------------

/// Two `Host` fields, a list in `Host`, or none on HTTP/1.1 are 400 (RFC
/// 9112 §3.2 "MUST respond with a 400"); the second value never reaches the
/// upstream as `X-Forwarded-Host` or `Forwarded`.
#[tokio::test]
async fn header_tricks_host() {
    let up = Recording::start().await;
    let gw = passthrough(&up.url(), "").await;
    for bad in [
        "GET / HTTP/1.1\r\nHost: gw\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: gw, evil.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let res = raw(gw.addr, bad.as_bytes()).await;
        assert_eq!(raw_status(&res), 400, "{bad:?}: {res}");
        assert_eq!(raw_json(&res)["detailCode"], "400.0 Bad Request");
    }
    assert_eq!(up.count(), 0);
    // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2).
    let res = raw(
        gw.addr,
        b"GET http://gw.example/x HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&res), 200, "{res}");
    let seen = up.seen();
    assert_eq!(seen[0].headers["x-forwarded-host"], "gw.example");
    gw.stop().await;
}

/// `Connection` may name only hop-by-hop fields (RFC 9110 §7.6.1); a
/// client naming `Content-Type`, `Content-Length`, `X-Request-Id` or
/// `Authorization` there cannot strip them from the upstream request after
/// validation: what was validated is what is forwarded.
#[tokio::test]
async fn header_tricks_connection_cannot_strip_validated_headers() {
    let up = Recording::start().await;
    let gw = gateway(&up.url()).await;
    let auth = format!("Bearer {}", admin());
    let res = send(
        Method::POST,
        &gw.url("/beta/sim-integrations"),
        &[
            ("authorization", &auth),
            ("x-sailpoint-experimental", "true"),
            ("content-type", "application/json"),
            ("x-request-id", "hostile-1"),
            (
                "connection",
                "Content-Type, X-Request-Id, content-length, authorization, x-hop",
            ),
            ("x-hop", "1"),
        ],
        CREATE,
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text());
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-request-id"], "hostile-1");
    assert_eq!(h["content-length"], seen[0].body.len().to_string().as_str());
    assert!(!h.contains_key("x-hop"));
    assert!(!h.contains_key("connection"));
    gw.stop().await;
}

/// `X-Forwarded-For`, `Forwarded` and `X-Real-IP` from a peer that is not a
/// trusted proxy are the client's own invention (RFC 7239 §8.1): replaced by
/// the peer address, as the rate limiter reads them. From a trusted proxy
/// the chain is extended.
#[tokio::test]
async fn header_tricks_forwarding_headers_from_untrusted_peers_are_replaced() {
    let spoof = [
        ("x-forwarded-for", "6.6.6.6"),
        ("forwarded", "for=6.6.6.6;proto=https"),
        ("x-real-ip", "6.6.6.6"),
    ];
    let up = Recording::start().await;
    let gw = passthrough(&up.url(), "").await;
    assert_eq!(
        send(Method::GET, &gw.url("/x"), &spoof, "").await.status,
        200
    );
    let seen = up.seen();
    let h = &seen[0].headers;
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(
        h["forwarded"],
        format!("for=127.0.0.1;proto=http;host={}", gw.addr).as_str()
    );
    assert!(!h.contains_key("x-real-ip"));
    gw.stop().await;

    let up = Recording::start().await;
    let gw = passthrough(
        &up.url(),
        "[rate_limit]\ntrusted_proxies = [\"127.0.0.1\"]\n",
    )
    .await;
    assert_eq!(
        send(Method::GET, &gw.url("/x"), &spoof, "").await.status,
        200
    );
    let seen = up.seen();
    assert_eq!(seen[0].headers["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
    gw.stop().await;
}

// ---------------------------------------------------------------------------
// Hostile upstreams
// ---------------------------------------------------------------------------

async fn client_h2_get(url: &str) -> (u16, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let res = client
        .request(Request::get(url).body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes())
}

/// A response with both `Content-Length` and `Transfer-Encoding: chunked`:
/// the coding frames it, the length is dropped (RFC 9112 §6.3 item 3), and
/// the client gets the whole body, not the first `Content-Length` bytes.
#[tokio::test]
async fn hostile_upstream_length_and_chunked() {
    let up = Raw::start(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
    )
    .await;
    let gw = passthrough(&up.url(), "").await;
    let res = send(Method::GET, &gw.url("/x"), &[], "").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "hello world");
    assert_ne!(res.header("content-length"), "5");
    gw.stop().await;
}

/// An unrequested `101 Switching Protocols` (RFC 9110 §15.2.2: only in
/// answer to `Upgrade`, which the gateway never forwards; RFC 9113 §8.6:
/// no 101 in HTTP/2) is 502 for HTTP/1.1 and HTTP/2 clients alike. Two
/// different `Content-Length` values (RFC 9112 §6.3 item 5) and a response
/// cut short are 502 or an aborted body, never a silent short answer.
#[tokio::test]
async fn hostile_upstream_framing() {
    let up = Raw::start(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw bytes of another protocol",
    )
    .await;
    let gw = passthrough(&up.url(), "").await;
    let res = send(Method::GET, &gw.url("/ws"), &[("upgrade", "websocket")], "").await;
    assert_eq!(res.status, 502, "{}", res.text());
    assert_eq!(res.json()["detailCode"], "502 Bad Gateway");
    let (status, body) = client_h2_get(&gw.url("/ws")).await;
    assert_eq!(status, 502, "{body:?}");
    gw.stop().await;

    let up =
        Raw::start(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").await;
    let gw = passthrough(&up.url(), "").await;
    assert_eq!(send(Method::GET, &gw.url("/x"), &[], "").await.status, 502);
    gw.stop().await;

    let up = Raw::start(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b").await;
    let gw = passthrough(&up.url(), "").await;
    let res = raw(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    .await;
    let status = raw_status(&res);
    if status == 200 {
        // The head went out: the body must end short of its length (the
        // client sees an aborted message), never look complete.
        let body = res.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert!(body.len() < 100, "{res}");
        assert!(
            res.to_ascii_lowercase().contains("content-length: 100"),
            "{res}"
        );
    } else {
        assert_eq!(status, 502, "{res}");
    }
    gw.stop().await;
}

/// The test support itself: a panic in a test upstream's task fails the
/// test that uses it (here: expectedly) instead of passing as a 502.
#[tokio::test]
#[should_panic(expected = "a test server task panicked: upstream bug")]
async fn a_panicking_test_upstream_fails_the_test() {
    let up = Raw::start_with(Arc::new(|_| panic!("upstream bug"))).await;
    let gw = passthrough(&up.url(), "").await;
    let res = send(Method::GET, &gw.url("/x"), &[], "").await;
    assert_eq!(res.status, 502);
    gw.stop().await;
    let _ = up.requests();
}

/// A self-signed certificate and key for `localhost`, made by the openssl
/// command (installed from Debian when missing).
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::process::Command;
    let have = || {
        Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !have() {
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "openssl"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get").arg("update").status();
            assert!(install(), "openssl is missing and could not be installed");
        }
    }
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "1", "-subj", "/CN=localhost"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// The TLS handshake is under the same first deadline: a peer that connects
/// to the TLS listener and sends nothing, or half a ClientHello, is closed
/// once `header_read_timeout` is over (RFC 8446 sets no limit; slowloris on
/// TLS is the same attack one layer down).
#[tokio::test]
async fn slow_tls_handshakes_are_closed() {
    let up = Recording::start().await;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let server = format!(
        "{PASSTHROUGH}\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    );
    let gw = TestGateway::start_with(
        &format!("[upstream]\nurl = \"{}\"\n{FAST_TIMEOUTS}", up.url()),
        &server,
    )
    .await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    assert!(
        closed(&mut silent).await,
        "a silent TLS connection stayed open"
    );
    let mut half = TcpStream::connect(gw.addr).await.unwrap();
    // A TLS record header announcing a 512-byte handshake, then 5 bytes of it.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03])
        .await
        .unwrap();
    assert!(closed(&mut half).await, "a half ClientHello stayed open");
    assert_eq!(up.count(), 0);
    gw.stop().await;
}
