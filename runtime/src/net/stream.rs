//! `TcpStream`: owned-buffer reads and writes on the ring.

use std::cell::RefCell;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::buf::{IoBuf, IoBufMut};
use crate::context;
use crate::driver::op;
use crate::driver::posted::{Lane, LaneState, Posted};
use crate::driver::{Driver, RecvBuf, RecvStream, SendMode};
use crate::executor::coop;
use crate::fd::SharedFd;
use crate::sys::socket;

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
    /// Whether sends are tried at once, before any op (see `send_at`).
    send_mode: SendMode,
}

struct RecvState {
    /// The driver's receive stream (multishot from the buffer ring, or single-shot).
    stream: RecvStream,
    /// A received chunk only partly handed to the application.
    leftover: Option<RecvBuf>,
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
        let stream = RecvStream::new();
        TcpStream {
            fd,
            send_mode: stream.send_mode(),
            recv: RefCell::new(RecvState {
                stream,
                leftover: None,
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

    /// Sets `SO_SNDBUF`: the kernel's send buffer for this socket, in bytes (Linux doubles
    /// the value for its bookkeeping and stops tuning the size automatically).
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        let v = i32::try_from(bytes).unwrap_or(i32::MAX);
        socket::set_opt(self.fd.raw(), libc::SOL_SOCKET, libc::SO_SNDBUF, v)
    }

    /// `SO_SNDBUF` as the kernel reports it.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        socket::get_opt(self.fd.raw(), libc::SOL_SOCKET, libc::SO_SNDBUF).map(|v| v.max(0) as usize)
    }

    /// Sets `SO_RCVBUF`: the kernel's receive buffer for this socket, in bytes (doubled and
    /// no longer tuned, as for [`set_send_buffer_size`](Self::set_send_buffer_size)).
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        let v = i32::try_from(bytes).unwrap_or(i32::MAX);
        socket::set_opt(self.fd.raw(), libc::SOL_SOCKET, libc::SO_RCVBUF, v)
    }

    /// `SO_RCVBUF` as the kernel reports it.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        socket::get_opt(self.fd.raw(), libc::SOL_SOCKET, libc::SO_RCVBUF).map(|v| v.max(0) as usize)
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
        self.recv.borrow().stream.uses_buf_ring()
    }

    /// Polls for the next received chunk (what [`recv`](Self::recv) awaits). The receive
    /// stays with the stream between polls, so a caller that stops polling loses no bytes:
    /// the next poll (or `recv`) gets them. An empty chunk is EOF.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<io::Result<RecvBuf>> {
        let mut st = self.recv.borrow_mut();
        if let Some(b) = st.leftover.take() {
            return Poll::Ready(Ok(b));
        }
        st.stream.poll_next(&self.fd, cx)
    }

    /// The next chunk if it has already been received, without waiting and without
    /// registering for a wake-up; `None` if none is here (then [`recv`](Self::recv) waits
    /// for it). Bytes arrive here only from the core's provided buffer ring (a multishot
    /// receive can bring several chunks at once: a pipelined batch larger than one buffer);
    /// on the other receive paths, and for an end or an error, it gives `None` and the next
    /// `recv` reports them.
    pub fn try_recv(&self) -> Option<RecvBuf> {
        let mut st = self.recv.borrow_mut();
        if let Some(b) = st.leftover.take() {
            return Some(b);
        }
        st.stream.try_next()
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
            st.stream.is_direct() && st.leftover.is_none()
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
        let n = crate::buf::put_slice(&mut buf, &chunk);
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
        // Speculative send (Seastar's word): a socket's send buffer nearly always has room,
        // so the bytes go out now in one non-blocking `send`, with no op. On io_uring this
        // also spares the loop a turn: a send SQE's completion would wake the task once more
        // and, at low load, end the next park at once. Only a send that would block goes
        // through the driver (a send SQE, or on epoll a wait for the fd to turn writable),
        // which holds `buf` until the kernel is done.
        if self.send_mode.now() {
            coop::consume_budget().await;
            let bytes = buf.as_init_slice();
            match socket::send_now(self.fd.raw(), bytes.get(offset..).unwrap_or_default()) {
                Ok(n) => return (Ok(n), buf),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => {}
                Err(e) => return (Err(e), buf),
            }
        }
        match op::send(&self.fd, buf, offset) {
            Ok(op) => op.await,
            Err((e, buf)) => (Err(e), buf),
        }
    }

    /// Whether a write made now is first tried with one non-blocking `send` on the core
    /// ([`Builder::speculative_send`](crate::Builder::speculative_send)): when false,
    /// [`try_write`](Self::try_write) would return `WouldBlock` without a system call, so a
    /// caller that checks this first spares itself that error.
    #[inline]
    pub fn sends_now(&self) -> bool {
        self.send_mode.now()
    }

    /// Tries to write `bytes` now, without waiting: one non-blocking `send`, no operation
    /// and no buffer handed to the driver. Returns how many bytes were taken, or
    /// `WouldBlock` when the socket's send buffer is full; then use [`write`](Self::write).
    ///
    /// With speculative sends off ([`Builder::speculative_send`](crate::Builder::speculative_send)),
    /// and by default on io_uring while the core is busy, every send goes through the driver
    /// and this returns `WouldBlock` without a system call.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        if !self.sends_now() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        socket::send_now(self.fd.raw(), bytes)
    }

    /// Hands `buf` to the driver to send, and returns at once: the task goes on (to its next
    /// read, say) while the kernel sends, and the completion wakes nobody. The driver owns
    /// the buffer until the kernel is done with it, then gives it to the lane's `recycle`
    /// function (see [`SendLane::new`]); the outcome stays in `lane`, where
    /// [`SendLane::settled`] finds it. Every byte is sent or the send fails: `MSG_WAITALL`
    /// makes a 5.18+ kernel finish a short send itself, and the driver sends the rest of one
    /// that still comes back short.
    ///
    /// This is the write of a task that answers and then reads its peer's next request. On
    /// io_uring an awaited send costs such a task a second wake-up and poll, when the
    /// completion arrives only to hand the buffer back; a posted send does not, and its
    /// buffer, recycled at the completion, is the next one a connection takes (still in the
    /// cache), however many connections are waiting. One send at a time per lane, so bytes
    /// go out in order: settle the lane before the next write of any kind on this stream,
    /// and before shutting it down. Dropping the lane cancels a send still under way.
    ///
    /// Gives `buf` back with `Unsupported` on the epoll driver (write it there), and with
    /// `InvalidInput` while the lane's last send is under way or its failure unread (or for
    /// a buffer of 4 GiB or more). A
    /// request the ring cannot take fails through the lane, like a failed send.
    pub fn post_send(&self, lane: &SendLane, buf: Vec<u8>) -> Result<(), (io::Error, Vec<u8>)> {
        if lane.lane.state.get() != LaneState::Idle || u32::try_from(buf.len()).is_err() {
            // The caller's mistake (it did not settle; a send larger than one request can
            // say): a plain kind, no allocation.
            return Err((io::ErrorKind::InvalidInput.into(), buf));
        }
        if buf.is_empty() {
            (lane.lane.recycle)(buf);
            return Ok(());
        }
        let submitted = context::with(|cx| match &mut *cx.driver.borrow_mut() {
            Driver::Uring(d) => {
                let posted = Posted::new(buf, self.fd.clone(), lane.lane.clone());
                d.submit_posted(posted, self.fd.raw()).map_err(|p| {
                    let e = io::Error::other("operation table full");
                    (e, p.into_buf())
                })
            }
            // Asked on every flush that would block there: a plain kind, nothing allocated
            // or counted.
            Driver::Epoll(_) => Err((io::ErrorKind::Unsupported.into(), buf)),
        });
        let key = submitted?;
        // A request the ring refused has completed already and left its failure.
        if lane.lane.state.get() == LaneState::Idle {
            lane.lane.state.set(LaneState::InFlight(key));
        }
        Ok(())
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
        let TcpStream { fd, recv, .. } = self;
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

/// Where one connection's posted sends report ([`TcpStream::post_send`]): whether one is
/// under way, and how the last one ended. One send at a time.
pub struct SendLane {
    lane: Rc<Lane>,
}

impl SendLane {
    /// A lane whose completed sends' buffers go to `recycle` (a pool, typically: the buffer
    /// the kernel has just read is then the next one taken). `recycle` runs on the core's
    /// loop after the completion, with no borrow of the runtime held.
    pub fn new(recycle: fn(Vec<u8>)) -> SendLane {
        SendLane {
            lane: Lane::new(recycle),
        }
    }

    /// True if no posted send is under way and no failure waits to be reported: the next
    /// send may be posted, and [`settled`](Self::settled) would return `Ok` at once.
    pub fn is_settled(&self) -> bool {
        self.lane.state.get() == LaneState::Idle
    }

    /// True while a posted send is under way.
    pub fn is_busy(&self) -> bool {
        matches!(self.lane.state.get(), LaneState::InFlight(_))
    }

    /// Ready once no posted send is under way: `Ok`, or the failure of the last one (a send
    /// that sent only some of its bytes fails with `WriteZero`), reported once. Pending (the
    /// task is woken at the completion) while one is under way.
    pub fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.lane.state.get() {
            LaneState::Idle => Poll::Ready(Ok(())),
            LaneState::InFlight(_) => {
                let waker = match self.lane.waker.take() {
                    Some(w) if w.will_wake(cx.waker()) => w,
                    _ => cx.waker().clone(),
                };
                self.lane.waker.set(Some(waker));
                Poll::Pending
            }
            LaneState::Failed(errno) => {
                self.lane.state.set(LaneState::Idle);
                Poll::Ready(Err(match errno {
                    Some(e) => e.into(),
                    None => io::Error::new(io::ErrorKind::WriteZero, "the posted send was cut short"),
                }))
            }
        }
    }

    /// Waits until no posted send is under way (see [`poll_settled`](Self::poll_settled)).
    pub fn settled(&self) -> impl Future<Output = io::Result<()>> + '_ {
        poll_fn(|cx| self.poll_settled(cx))
    }
}

impl Drop for SendLane {
    fn drop(&mut self) {
        if let LaneState::InFlight(key) = self.lane.state.get() {
            // The send is cancelled; its buffer stays with the driver until the kernel lets
            // go of it (or is leaked with the ring at a shard's abnormal end).
            context::try_with(|cx| cx.driver.borrow_mut().detach_posted(key));
        }
    }
}

impl fmt::Debug for SendLane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendLane")
            .field("state", &self.lane.state.get())
            .finish()
    }
}
