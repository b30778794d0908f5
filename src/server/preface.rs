//! Which protocol a connection speaks, read from its first bytes under the
//! caller's deadline.
//!
//! hyper-util's auto-detection reads the first bytes with no timer, so a
//! peer that connects and sends nothing (or the HTTP/2 preface one byte a
//! second) would hold its socket forever. [`read`] reads at most the 24
//! bytes of the HTTP/2 connection preface (RFC 9113 §3.4) and stops at the
//! first byte that differs from it; the caller bounds it with a timeout.
//! The bytes read are replayed by [`Rewind`] to the HTTP server.
//!
//! It refuses nothing itself: a peer that closes before deciding yields
//! `None`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Anything that is not the HTTP/2 preface.
    Http1,
    /// The full HTTP/2 preface.
    Http2,
}

/// Reads until the protocol is known. `Ok(None)`: the peer closed first.
pub(crate) async fn read<I: AsyncRead + Unpin>(
    io: &mut I,
) -> io::Result<Option<(Protocol, Bytes)>> {
    let mut buf = [0u8; 24];
    let mut filled = 0;
    while filled < H2_PREFACE.len() {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(None);
        }
        let before = filled;
        filled += n;
        if buf[before..filled] != H2_PREFACE[before..filled] {
            return Ok(Some((
                Protocol::Http1,
                Bytes::copy_from_slice(&buf[..filled]),
            )));
        }
    }
    Ok(Some((Protocol::Http2, Bytes::copy_from_slice(&buf))))
}

/// An IO that first replays bytes already read from it.
#[derive(Debug)]
pub(crate) struct Rewind<I> {
    prefix: Bytes,
    inner: I,
}

impl<I> Rewind<I> {
    /// `inner`, with `prefix` read again first.
    pub(crate) fn new(prefix: Bytes, inner: I) -> Self {
        Rewind { prefix, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn detect(chunks: &[&[u8]]) -> Option<(Protocol, Bytes)> {
        let (mut client, mut server) = tokio::io::duplex(64);
        for c in chunks {
            client.write_all(c).await.unwrap();
        }
        drop(client);
        read(&mut server).await.unwrap()
    }

    #[tokio::test]
    async fn http1_is_decided_at_the_first_differing_byte() {
        let (p, seen) = detect(&[b"GET / HTTP/1.1\r\n"]).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        assert_eq!(&seen[..], b"GET / HTTP/1.1\r\n");
        let (p, _) = detect(&[b"PRI", b" * HTTP/1.1"]).await.unwrap();
        assert_eq!(p, Protocol::Http1);
    }

    #[tokio::test]
    async fn http2_needs_the_whole_preface_and_replays_it() {
        let mut all = H2_PREFACE.to_vec();
        all.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        let (p, seen) = detect(&[&all[..5], &all[5..]]).await.unwrap();
        assert_eq!(p, Protocol::Http2);
        assert_eq!(&seen[..], H2_PREFACE);
        assert_eq!(detect(&[&H2_PREFACE[..10]]).await, None);
        assert_eq!(detect(&[]).await, None);

        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"rest").await.unwrap();
        drop(client);
        let mut r = Rewind::new(Bytes::from_static(b"PRI"), server);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"PRIrest");
    }
}
