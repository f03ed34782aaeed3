//! [`TransportIo`]: hyper's poll-based `rt::Read` / `rt::Write` over any connection
//! [`Transport`] (plaintext `TcpStream` or `TlsStream`), with owned buffers.
//!
//! Why not `ringcore_runtime::compat::Compat`: it wraps a `TcpStream` only, and HTTP/2 runs
//! over TLS too; and on cleartext the connection has already received the first bytes (the
//! preface that chose HTTP/2), which must be handed to hyper first. This adapter is the same
//! idea over the `Transport` seam (owned buffers kept across polls, so a dropped connection
//! future is always safe) and starts from those bytes.
//!
//! Cost, as `Compat`: every received byte is copied once into hyper's buffer and every sent
//! byte once into the adapter's own `Vec`; one boxed future per receive and per send.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use ringcore_runtime::time::loop_now;

use crate::conn::coarse::timeout_at;

use crate::conn::Transport;

/// The most bytes one `poll_write` takes (a larger slice is taken in parts).
const MAX_WRITE: usize = 64 * 1024;

type RecvFut<C> = Pin<Box<dyn Future<Output = io::Result<C>>>>;
type SendFut = Pin<Box<dyn Future<Output = (io::Result<()>, Vec<u8>)>>>;
type ShutdownFut = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// A [`Transport`] with hyper's I/O traits (see the module docs).
pub(crate) struct TransportIo<T: Transport> {
    stream: Rc<T>,
    /// A received chunk only partly handed out, and how much of it was.
    leftover: Option<(T::Chunk, usize)>,
    receiving: Option<RecvFut<T::Chunk>>,
    sending: Option<SendFut>,
    /// The owned write buffer, when no send holds it.
    spare: Vec<u8>,
    shutdown: Option<ShutdownFut>,
    eof: bool,
    /// Each send must make progress within this (`Limits::write_timeout`).
    write_timeout: Duration,
}

// Nothing is pinned structurally: the futures are boxed, the chunk is only read.
impl<T: Transport> Unpin for TransportIo<T> {}

impl<T: Transport + 'static> TransportIo<T> {
    /// Wraps `stream`; `first` (bytes already received) is read before anything else.
    pub(crate) fn new(stream: T, first: Option<T::Chunk>, write_timeout: Duration) -> Self {
        TransportIo {
            stream: Rc::new(stream),
            leftover: first.filter(|c| !c.is_empty()).map(|c| (c, 0)),
            receiving: None,
            sending: None,
            spare: Vec::new(),
            shutdown: None,
            eof: false,
            write_timeout,
        }
    }

    /// Waits for the send in flight, if any; its error if it failed.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(fut) = self.sending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (res, mut buf) = std::task::ready!(fut.as_mut().poll(cx));
        self.sending = None;
        buf.clear();
        self.spare = buf;
        Poll::Ready(res)
    }
}

/// Writes all of `buf` and hands it back; each write must take some bytes within `timeout`.
async fn send_all<T: Transport>(
    stream: &T,
    mut buf: Vec<u8>,
    timeout: Duration,
) -> (io::Result<()>, Vec<u8>) {
    loop {
        let written = timeout_at(loop_now() + timeout, stream.write(buf)).await;
        let (res, b) = match written {
            Ok(r) => r,
            // The send is cancelled with its future (its buffer stays with the driver until
            // the kernel lets go); the connection is done for.
            Err(_) => return (Err(io::ErrorKind::TimedOut.into()), Vec::new()),
        };
        buf = b;
        match res {
            Ok(n) if n >= buf.len() => return (Ok(()), buf),
            Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
            Ok(n) => drop(buf.drain(..n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (Err(e), buf),
        }
    }
}

impl<T: Transport + 'static> Read for TransportIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.leftover.is_none() && !this.eof {
            let stream = this.stream.clone();
            let fut = this
                .receiving
                .get_or_insert_with(|| Box::pin(async move { stream.recv().await }));
            let chunk = std::task::ready!(fut.as_mut().poll(cx));
            this.receiving = None;
            match chunk {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(c) if c.is_empty() => this.eof = true,
                Ok(c) => this.leftover = Some((c, 0)),
            }
        }
        if let Some((chunk, at)) = this.leftover.as_mut() {
            let avail = &chunk[*at..];
            let n = avail.len().min(buf.remaining());
            buf.put_slice(&avail[..n]);
            *at += n;
            if *at >= chunk.len() {
                this.leftover = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Transport + 'static> Write for TransportIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_sent(cx))?;
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = src.len().min(MAX_WRITE);
        let mut buf = std::mem::take(&mut this.spare);
        buf.extend_from_slice(&src[..n]);
        let (stream, timeout) = (this.stream.clone(), this.write_timeout);
        let mut fut: SendFut = Box::pin(async move { send_all(&*stream, buf, timeout).await });
        // Start it now; if it finishes at once, the buffer comes straight back.
        match fut.as_mut().poll(cx) {
            Poll::Ready((res, mut buf)) => {
                buf.clear();
                this.spare = buf;
                Poll::Ready(res.map(|()| n))
            }
            Poll::Pending => {
                this.sending = Some(fut);
                Poll::Ready(Ok(n))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_sent(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_sent(cx))?;
        let stream = this.stream.clone();
        let fut = this
            .shutdown
            .get_or_insert_with(|| Box::pin(async move { stream.shutdown_write().await }));
        fut.as_mut().poll(cx)
    }
}
