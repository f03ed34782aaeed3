//! `TcpStream`: owned-buffer reads and writes on the ring.

use std::cell::RefCell;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::recv_buf::RecvBuf;
use super::socket;
use crate::buf::{IoBuf, IoBufMut};
use crate::context;
use crate::driver::buf_ring::BufRing;
use crate::driver::op::{self, Multi, Op, Recv};
use crate::driver::Errno;
use crate::fd::SharedFd;
use crate::stats;

/// Size of the private buffer a receive uses when no provided ring buffer is available.
pub const FALLBACK_RECV_SIZE: usize = 16 * 1024;

/// A TCP connection owned by one core.
///
/// All I/O takes owned buffers and hands them back, because the kernel works on them after
/// control returns to other tasks: `let (res, buf) = stream.write_all(buf).await;`.
/// Methods take `&self`, so one task may read while another writes; two concurrent reads (or
/// two concurrent writes) on one stream interleave unpredictably and are not supported.
///
/// Dropping a read or write future is safe at any point: the buffer stays with the driver
/// until the kernel is done with it, and the operation is cancelled.
pub struct TcpStream {
    fd: SharedFd,
    recv: RefCell<RecvState>,
}

struct RecvState {
    /// The core's provided buffer ring, when multishot receive is in use.
    ring: Option<Rc<BufRing>>,
    multi: Option<Multi>,
    /// A received chunk only partly handed to the application.
    leftover: Option<RecvBuf>,
    /// A single-shot receive in flight (the portable path, or the ring ran dry).
    single: Option<Op<Recv<Vec<u8>>>>,
    eof: bool,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.fd.raw())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl TcpStream {
    pub(crate) fn from_fd(fd: SharedFd) -> TcpStream {
        let ring = context::with(|cx| {
            let d = cx.driver.borrow();
            if d.features().multishot_recv {
                d.buf_ring().cloned()
            } else {
                None
            }
        });
        TcpStream {
            fd,
            recv: RefCell::new(RecvState {
                ring,
                multi: None,
                leftover: None,
                single: None,
                eof: false,
            }),
        }
    }

    /// Opens a connection to `addr` (each resolved address is tried in turn).
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last = None;
        for addr in addr.to_socket_addrs()? {
            match Self::connect_one(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")))
    }

    async fn connect_one(addr: SocketAddr) -> io::Result<TcpStream> {
        let fd = SharedFd::new(socket::tcp_socket(&addr)?);
        let (storage, len) = socket::to_sockaddr(&addr);
        op::connect(&fd, storage, len)?.await?;
        Ok(TcpStream::from_fd(fd))
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        socket::set_opt(self.fd.raw(), libc::IPPROTO_TCP, libc::TCP_NODELAY, i32::from(on))
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        socket::get_opt(self.fd.raw(), libc::IPPROTO_TCP, libc::TCP_NODELAY).map(|v| v != 0)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        socket::peer_addr(self.fd.raw())
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket::local_addr(self.fd.raw())
    }

    /// The raw fd (for socket options this type does not wrap). Do not close it.
    pub fn as_raw_fd(&self) -> i32 {
        self.fd.raw()
    }

    /// True if reads come from a multishot receive on the core's provided buffer ring.
    pub fn uses_buf_ring(&self) -> bool {
        self.recv.borrow().ring.is_some()
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<RecvBuf>> {
        let mut st = self.recv.borrow_mut();
        if let Some(b) = st.leftover.take() {
            return Poll::Ready(Ok(b));
        }
        if st.eof {
            return Poll::Ready(Ok(RecvBuf::owned(Vec::new())));
        }
        loop {
            if let Some(single) = st.single.as_mut() {
                return match Pin::new(single).poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready((res, buf)) => {
                        st.single = None;
                        match res {
                            Ok(0) => {
                                st.eof = true;
                                Poll::Ready(Ok(RecvBuf::owned(Vec::new())))
                            }
                            Ok(_) => Poll::Ready(Ok(RecvBuf::owned(buf))),
                            Err(e) => Poll::Ready(Err(e)),
                        }
                    }
                };
            }
            let Some(ring) = st.ring.clone() else {
                st.single =
                    Some(op::recv(&self.fd, Vec::with_capacity(FALLBACK_RECV_SIZE)).map_err(|(e, _)| e)?);
                continue;
            };
            if st.multi.is_none() {
                st.multi = Some(op::recv_multi(&self.fd)?);
            }
            let Some(multi) = st.multi.as_mut() else {
                continue;
            };
            match multi.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    // The kernel ended the multishot receive without an error: re-arm.
                    st.multi = None;
                    context::with(|c| stats::bump(&c.shared.shards[c.shard_id].stats.recv_rearms, 1));
                }
                Poll::Ready(Some(c)) => {
                    let chunk = c.buffer_id().map(|bid| {
                        let len = c.result.unwrap_or(0) as usize;
                        RecvBuf::ring(ring.clone(), bid, len)
                    });
                    match c.result {
                        Ok(0) => {
                            drop(chunk);
                            st.eof = true;
                            st.multi = None;
                            return Poll::Ready(Ok(RecvBuf::owned(Vec::new())));
                        }
                        Ok(_) => {
                            return Poll::Ready(chunk.ok_or_else(|| {
                                io::Error::other("multishot receive completed without a buffer")
                            }));
                        }
                        Err(Errno(libc::ENOBUFS)) => {
                            drop(chunk);
                            st.multi = None;
                            // Every ring buffer is out: receive this time into a private buffer.
                            context::with(|c| {
                                stats::bump(&c.shared.shards[c.shard_id].stats.recv_buf_ring_empty, 1)
                            });
                            let buf = Vec::with_capacity(ring.buf_size() as usize);
                            st.single = Some(op::recv(&self.fd, buf).map_err(|(e, _)| e)?);
                            continue;
                        }
                        Err(e) => {
                            drop(chunk);
                            st.multi = None;
                            return Poll::Ready(Err(e.into()));
                        }
                    }
                }
            }
        }
    }

    /// Receives the next chunk of bytes, without copying when the core's provided buffer ring
    /// is in use. An empty chunk means the peer closed its sending side (EOF).
    ///
    /// Cancel-safe: dropping the future loses no bytes.
    pub async fn recv(&self) -> io::Result<RecvBuf> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Reads into the spare capacity of `buf` (`buf[len..capacity]`) and returns how many
    /// bytes were appended; `Ok(0)` means EOF.
    ///
    /// A buffer with no spare capacity gets `InvalidInput`.
    pub async fn read<B: IoBufMut>(&self, mut buf: B) -> (io::Result<usize>, B) {
        let (init, total) = (buf.bytes_init(), buf.bytes_total());
        if init >= total {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "read buffer has no spare capacity");
            return (Err(e), buf);
        }
        let direct = {
            let st = self.recv.borrow();
            st.ring.is_none() && st.leftover.is_none() && st.single.is_none()
        };
        if direct {
            // Portable path: the kernel writes straight into the caller's buffer.
            return match op::recv(&self.fd, buf) {
                Ok(op) => {
                    let (res, buf) = op.await;
                    (res, buf)
                }
                Err((e, buf)) => (Err(e), buf),
            };
        }
        let mut chunk = match self.recv().await {
            Ok(c) => c,
            Err(e) => return (Err(e), buf),
        };
        let n = chunk.len().min(total - init);
        // SAFETY: `n <= total - init`, so the copy stays inside the buffer's allocation, and the
        // source is a live, initialised slice that cannot overlap a buffer we own exclusively.
        unsafe {
            std::ptr::copy_nonoverlapping(chunk.as_ptr(), buf.stable_mut_ptr().add(init), n);
            buf.set_init(init + n);
        }
        if n < chunk.len() {
            chunk.advance(n);
            self.recv.borrow_mut().leftover = Some(chunk);
        }
        (Ok(n), buf)
    }

    /// Writes some of `buf`; returns how many bytes were written.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        self.send_at(buf, 0).await
    }

    async fn send_at<B: IoBuf>(&self, buf: B, offset: usize) -> (io::Result<usize>, B) {
        match op::send(&self.fd, buf, offset) {
            Ok(op) => op.await,
            Err((e, buf)) => (Err(e), buf),
        }
    }

    /// Writes all of `buf`.
    pub async fn write_all<B: IoBuf>(&self, mut buf: B) -> (io::Result<()>, B) {
        let len = buf.bytes_init();
        let mut done = 0;
        while done < len {
            let (res, b) = self.send_at(buf, done).await;
            buf = b;
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Writes from several buffers in one `sendmsg`; returns how many bytes were written.
    pub async fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        match op::sendmsg(&self.fd, bufs, 0) {
            Ok(op) => op.await,
            Err((e, bufs)) => (Err(e), bufs),
        }
    }

    /// Writes all bytes of all `bufs`, in order.
    pub async fn writev_all<B: IoBuf>(&self, mut bufs: Vec<B>) -> (io::Result<()>, Vec<B>) {
        let total: usize = bufs.iter().map(IoBuf::bytes_init).sum();
        let mut done = 0;
        while done < total {
            let (res, b) = match op::sendmsg(&self.fd, bufs, done) {
                Ok(op) => op.await,
                Err((e, bufs)) => return (Err(e), bufs),
            };
            bufs = b;
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), bufs),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), bufs),
            }
        }
        (Ok(()), bufs)
    }

    /// Shuts down the read side, the write side, or both.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let how = match how {
            Shutdown::Read => libc::SHUT_RD,
            Shutdown::Write => libc::SHUT_WR,
            Shutdown::Both => libc::SHUT_RDWR,
        };
        op::shutdown(&self.fd, how)?.await
    }

    /// Closes the connection through the ring and reports the result.
    ///
    /// Dropping a `TcpStream` also closes it (synchronously, once no operation uses the fd).
    pub async fn close(self) -> io::Result<()> {
        let TcpStream { fd, recv } = self;
        drop(recv);
        match fd.try_unwrap() {
            Ok(raw) => op::close(raw)?.await,
            // A cancelled operation still holds the fd; it closes when the kernel lets go.
            Err(shared) => {
                drop(shared);
                Ok(())
            }
        }
    }
}
