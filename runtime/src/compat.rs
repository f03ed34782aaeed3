//! Poll-based I/O traits for [`TcpStream`]: tokio's `AsyncRead` / `AsyncWrite` (feature
//! `tokio-io`) and hyper's `rt::Read` / `rt::Write` (feature `hyper-io`), so protocol crates
//! written against them (hyper, rustls' tokio adapter, database drivers, codecs) run on a
//! ringcore core over its ring.
//!
//! The ring works on owned buffers that it keeps until the kernel is done with them; the
//! poll traits lend a borrowed slice for one call. [`Compat`] bridges the two with buffers it
//! owns, so that stopping to poll (a dropped future, a timeout, a `select`) is always safe:
//!
//! - **Read**: the receive stays with the stream across polls (`TcpStream::poll_recv`); each
//!   received chunk (a provided-ring buffer on io_uring) is copied into the caller's slice,
//!   and what does not fit is kept for the next poll. Nothing is lost if the caller stops.
//! - **Write**: the caller's bytes are copied into an owned buffer, a send is started and the
//!   bytes are reported written at once; the send runs on while the caller goes on. The next
//!   `poll_write`, `poll_flush` or `poll_shutdown` first waits for it (and reports its error,
//!   if it failed). `poll_flush` returns `Ready` only when every accepted byte was handed to
//!   the kernel. Dropping the adapter with a send in flight cancels it (the buffer stays with
//!   the driver until the kernel lets go; bytes not yet sent are lost, as with any unflushed
//!   writer).
//!
//! Cost: one copy of every byte each way, plus one boxed future per write (the send's owned
//! buffer is reused). That is the price of the borrowed-slice traits; ringcore's own code
//! (HTTP, the client) uses the owned-buffer API directly and pays none of it.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::net::{RecvBuf, TcpStream};

/// The most bytes one `poll_write` accepts (a larger slice is taken in parts).
pub const MAX_WRITE: usize = 64 * 1024;

type SendFut = Pin<Box<dyn Future<Output = (io::Result<()>, Vec<u8>)>>>;
type ShutdownFut = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// A [`TcpStream`] with the poll-based read/write traits (see the [module docs](self)).
///
/// `!Send`, like the stream: use it on the core that owns the connection.
pub struct Compat {
    stream: Rc<TcpStream>,
    /// A received chunk only partly copied out.
    leftover: Option<(RecvBuf, usize)>,
    /// The send in flight, if any.
    sending: Option<SendFut>,
    /// The owned write buffer, when no send holds it.
    spare: Vec<u8>,
    shutdown: Option<ShutdownFut>,
    /// EOF was seen on the read side (sticky).
    eof: bool,
}

impl std::fmt::Debug for Compat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compat")
            .field("stream", &self.stream)
            .field("sending", &self.sending.is_some())
            .finish()
    }
}

impl Compat {
    /// Wraps `stream`.
    pub fn new(stream: TcpStream) -> Self {
        Compat {
            stream: Rc::new(stream),
            leftover: None,
            sending: None,
            spare: Vec::new(),
            shutdown: None,
            eof: false,
        }
    }

    /// The wrapped stream (for addresses and socket options).
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// The received bytes not yet consumed, waiting for some if there are none; empty at EOF.
    /// Call [`consume`](Self::consume) with how many were used.
    pub fn poll_fill_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        if self.leftover.is_none() && !self.eof {
            match self.stream.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(chunk)) if chunk.is_empty() => self.eof = true,
                Poll::Ready(Ok(chunk)) => self.leftover = Some((chunk, 0)),
            }
        }
        match &self.leftover {
            Some((chunk, at)) => Poll::Ready(Ok(&chunk[*at..])),
            None => Poll::Ready(Ok(&[])),
        }
    }

    /// Marks `n` bytes of what [`poll_fill_buf`](Self::poll_fill_buf) returned as used.
    pub fn consume(&mut self, n: usize) {
        if let Some((chunk, at)) = self.leftover.as_mut() {
            *at = (*at + n).min(chunk.len());
            if *at == chunk.len() {
                self.leftover = None;
            }
        }
    }

    /// Waits for the send in flight, if any; its error if it failed.
    fn poll_sent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(fut) = self.sending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let (res, mut buf) = match fut.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.sending = None;
        buf.clear();
        self.spare = buf;
        Poll::Ready(res)
    }

    /// Accepts up to [`MAX_WRITE`] bytes of `src` for sending (see the module docs).
    pub fn poll_write_slice(&mut self, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
        match self.poll_sent(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = src.len().min(MAX_WRITE);
        let mut buf = std::mem::take(&mut self.spare);
        buf.extend_from_slice(&src[..n]);
        let stream = self.stream.clone();
        let mut fut: SendFut = Box::pin(async move { stream.write_all(buf).await });
        // Start it now; if it finishes at once, the buffer comes straight back.
        match fut.as_mut().poll(cx) {
            Poll::Ready((res, mut buf)) => {
                buf.clear();
                self.spare = buf;
                Poll::Ready(res.map(|()| n))
            }
            Poll::Pending => {
                self.sending = Some(fut);
                Poll::Ready(Ok(n))
            }
        }
    }

    /// Ready when every accepted byte was handed to the kernel.
    pub fn poll_flush_sends(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_sent(cx)
    }

    /// Flushes, then shuts down the sending side (the peer reads EOF).
    pub fn poll_shutdown_write(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.poll_sent(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if self.shutdown.is_none() {
            let stream = self.stream.clone();
            self.shutdown = Some(Box::pin(async move { stream.shutdown(Shutdown::Write).await }));
        }
        let Some(fut) = self.shutdown.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let res = std::task::ready!(fut.as_mut().poll(cx));
        Poll::Ready(res)
    }
}

#[cfg(feature = "tokio-io")]
mod tokio_impl {
    use super::*;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    impl AsyncRead for Compat {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let avail = std::task::ready!(this.poll_fill_buf(cx))?;
            let n = avail.len().min(buf.remaining());
            buf.put_slice(&avail[..n]);
            this.consume(n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Compat {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
            self.get_mut().poll_write_slice(cx, src)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_flush_sends(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_shutdown_write(cx)
        }
    }
}

#[cfg(feature = "hyper-io")]
mod hyper_impl {
    use super::*;
    use hyper::rt::{Read, ReadBufCursor, Write};

    impl Read for Compat {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            mut buf: ReadBufCursor<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let avail = std::task::ready!(this.poll_fill_buf(cx))?;
            let n = avail.len().min(buf.remaining());
            buf.put_slice(&avail[..n]);
            this.consume(n);
            Poll::Ready(Ok(()))
        }
    }

    impl Write for Compat {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
            self.get_mut().poll_write_slice(cx, src)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_flush_sends(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().poll_shutdown_write(cx)
        }
    }
}
