//! `TcpListener`: one per core on the same address, accepting with a multishot accept.

use std::cell::RefCell;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

use super::stream::TcpStream;
use crate::driver::AcceptStream;
use crate::fd::SharedFd;
use crate::sys::socket;

/// The listen backlog used by [`TcpListener::bind`].
pub const DEFAULT_BACKLOG: i32 = 1024;

/// A TCP listening socket owned by one core.
///
/// `bind` sets `SO_REUSEADDR` and `SO_REUSEPORT`, so every core can bind the same address and
/// the kernel load-balances incoming connections between the cores' listeners.
pub struct TcpListener {
    fd: SharedFd,
    accept: RefCell<AcceptStream>,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("fd", &self.fd.raw())
            .field("local_addr", &self.local_addr().ok())
            .field("multishot", &self.is_multishot())
            .finish()
    }
}

impl TcpListener {
    /// Binds with `SO_REUSEPORT` and listens with [`DEFAULT_BACKLOG`].
    ///
    /// Binding port 0 gives each core a different port; to share one, bind port 0 on one core,
    /// read [`local_addr`](Self::local_addr), and bind that on the others.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        Self::bind_with_backlog(addr, DEFAULT_BACKLOG)
    }

    /// Like [`bind`](Self::bind) with an explicit backlog.
    pub fn bind_with_backlog(addr: impl ToSocketAddrs, backlog: i32) -> io::Result<TcpListener> {
        let mut last = None;
        for addr in addr.to_socket_addrs()? {
            match Self::bind_one(&addr, backlog) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
    }

    fn bind_one(addr: &SocketAddr, backlog: i32) -> io::Result<TcpListener> {
        let fd = SharedFd::new(socket::tcp_socket(addr)?);
        socket::set_opt(fd.raw(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        socket::set_opt(fd.raw(), libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
        socket::bind_listen(fd.raw(), addr, backlog)?;
        Ok(TcpListener {
            fd,
            accept: RefCell::new(AcceptStream::new()),
        })
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        socket::local_addr(self.fd.raw())
    }

    /// True if accepts use a multishot accept (one SQE for many connections).
    pub fn is_multishot(&self) -> bool {
        self.accept.borrow().is_multishot()
    }

    /// Accepts the next connection, with its peer address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let stream = self.accept_stream().await?;
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }

    /// Accepts the next connection without asking for its peer address (one syscall less).
    ///
    /// Cancel-safe: dropping the future loses no connection (queued ones stay queued; one
    /// that completes after the listener is dropped is closed).
    pub async fn accept_stream(&self) -> io::Result<TcpStream> {
        let fd = poll_fn(|cx| self.accept.borrow_mut().poll_next(&self.fd, cx)).await?;
        Ok(TcpStream::from_fd(fd))
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        // A cancelled multishot accept keeps the fd open until its last completion arrives;
        // shutting the listening socket down now stops it listening at once (it leaves the
        // SO_REUSEPORT group), so new connections go to other cores or are refused.
        // Failure is harmless: the fd closes anyway.
        let _ = socket::shutdown(self.fd.raw(), libc::SHUT_RDWR);
    }
}
