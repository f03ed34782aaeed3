//! The receive side of a stream socket as the driver serves it: "the next received bytes".
//!
//! Where the kernel has provided buffer rings, one multishot `RECV` per socket picks buffers
//! from the core's ring, and each completion is handed out as a [`RecvBuf`] lent by the ring
//! (no copy). When the ring runs dry the kernel ends the multishot with `ENOBUFS`; that one
//! receive then goes into a private buffer, and the next one re-arms the multishot. A
//! multishot the kernel ends without an error is re-armed too. Without the ring (older
//! kernels, `portable_ops`), every receive is a single-shot `RECV` into a private buffer.
//! On the epoll driver the driver makes the receive itself ([`EpollDriver::poll_recv`]), only
//! while the socket may have bytes, into the core's one receive buffer; a stream waiting for
//! bytes holds no buffer and no op there, only its waker in the driver's per-fd state.
//!
//! [`EpollDriver::poll_recv`]: super::epoll::EpollDriver::poll_recv
//! The caller (`net::TcpStream`) sees none of this: it asks for the next chunk.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::backend::Driver;
use super::buf_ring::BufRing;
use super::op::{self, Multi, Op, Recv};
use super::recv_buf::RecvBuf;
use super::{Errno, SendMode};
use crate::context;
use crate::executor::coop;
use crate::fd::SharedFd;
use crate::stats;

/// Size of the private buffer a receive uses when no provided ring buffer is available.
pub const FALLBACK_RECV_SIZE: usize = 16 * 1024;

/// The receive state of one socket.
pub(crate) struct RecvStream {
    /// The core's provided buffer ring, when multishot receive is in use.
    ring: Option<Rc<BufRing>>,
    multi: Option<Multi>,
    /// A single-shot receive in flight (the portable path, or the ring ran dry).
    single: Option<Op<Recv<Vec<u8>>>>,
    /// The epoll driver: receives are the driver's `poll_recv` (no op, no buffer held while
    /// the peer is quiet).
    readiness: bool,
    /// The peer closed its sending side: every later receive is empty at once.
    eof: bool,
    send_mode: SendMode,
}

impl RecvStream {
    /// A receive stream for a socket of this core (multishot if the core has a buffer ring).
    pub(crate) fn new() -> Self {
        let (ring, readiness, send_mode) = context::with(|cx| {
            let d = cx.driver.borrow();
            let ring = if d.features().multishot_recv {
                d.buf_ring().cloned()
            } else {
                None
            };
            let epoll = matches!(*d, Driver::Epoll(_));
            let send_mode = match cx.shared.config.speculative_send {
                Some(true) => SendMode::Now,
                Some(false) => SendMode::Op,
                None if epoll => SendMode::Now,
                None => SendMode::WhenQuiet,
            };
            (ring, epoll, send_mode)
        });
        RecvStream {
            ring,
            multi: None,
            single: None,
            readiness,
            eof: false,
            send_mode,
        }
    }

    /// How this core's sends are made (the runtime's `speculative_send` setting; by default
    /// at once on epoll, and on io_uring while the core is quiet).
    pub(crate) fn send_mode(&self) -> SendMode {
        self.send_mode
    }

    /// True if received bytes come from the core's provided buffer ring.
    pub(crate) fn uses_buf_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// True if a receive may go straight into the caller's own buffer (`op::recv`): no
    /// buffer ring in use and no receive of this stream in flight.
    pub(crate) fn is_direct(&self) -> bool {
        self.ring.is_none() && self.single.is_none()
    }

    /// Bytes the ring's multishot receive has already brought, if any: `None` when nothing
    /// has arrived, on the other receive paths, for an end or an error (which the next
    /// poll reports as usual), and when the task's cooperative budget is spent (as a poll
    /// would yield then: a task reading chunk after chunk this way still lets the others run).
    pub(crate) fn try_next(&mut self) -> Option<RecvBuf> {
        if self.eof || self.single.is_some() || self.readiness {
            return None;
        }
        let ring = self.ring.as_ref()?;
        let multi = self.multi.as_mut()?;
        let c = multi.try_next()?;
        match (c.result, c.buffer_id()) {
            (Ok(n), Some(bid)) if n > 0 && coop::try_proceed() => {
                Some(RecvBuf::ring(ring.clone(), bid, n as usize))
            }
            _ => {
                multi.put_back(c);
                None
            }
        }
    }

    /// The next received bytes on `fd`; an empty chunk means EOF.
    pub(crate) fn poll_next(&mut self, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<RecvBuf>> {
        if self.eof {
            return Poll::Ready(Ok(RecvBuf::owned(Vec::new())));
        }
        if self.readiness {
            return self.poll_ready_recv(fd, cx);
        }
        loop {
            if let Some(single) = self.single.as_mut() {
                let (res, buf) = std::task::ready!(Pin::new(single).poll(cx));
                self.single = None;
                return Poll::Ready(match res {
                    Ok(0) => {
                        self.eof = true;
                        Ok(RecvBuf::owned(Vec::new()))
                    }
                    Ok(_) => Ok(RecvBuf::owned(buf)),
                    Err(e) => Err(e),
                });
            }
            let Some(ring) = self.ring.as_ref() else {
                let buf = Vec::with_capacity(FALLBACK_RECV_SIZE);
                self.single = Some(op::recv(fd, buf).map_err(|(e, _)| e)?);
                continue;
            };
            let multi = match self.multi.as_mut() {
                Some(m) => m,
                None => self.multi.insert(op::recv_multi(fd)?),
            };
            let Some(c) = std::task::ready!(multi.poll_next(cx)) else {
                // The kernel ended the multishot receive without an error: re-arm.
                self.multi = None;
                bump(|s| &s.recv_rearms);
                continue;
            };
            // A buffer the completion carries is ours now; dropping the chunk returns it.
            let chunk = c
                .buffer_id()
                .map(|bid| RecvBuf::ring(ring.clone(), bid, c.result.unwrap_or(0) as usize));
            match c.result {
                Ok(0) => {
                    self.eof = true;
                    self.multi = None;
                    return Poll::Ready(Ok(RecvBuf::owned(Vec::new())));
                }
                Ok(_) => {
                    return Poll::Ready(
                        chunk.ok_or_else(|| io::Error::other("multishot receive completed without a buffer")),
                    );
                }
                Err(Errno(libc::ENOBUFS)) => {
                    // The ring's published window was empty (the driver widens it): receive
                    // this time into a private buffer.
                    self.multi = None;
                    bump(|s| &s.recv_buf_ring_empty);
                    let buf = Vec::with_capacity(ring.buf_size() as usize);
                    self.single = Some(op::recv(fd, buf).map_err(|(e, _)| e)?);
                }
                Err(e) => {
                    self.multi = None;
                    return Poll::Ready(Err(e.into()));
                }
            }
        }
    }
}

impl RecvStream {
    /// The epoll driver's receive: the driver's per-fd readiness decides whether a `recv` is
    /// made; the task's cooperative budget is spent only when one is.
    fn poll_ready_recv(&mut self, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<RecvBuf>> {
        // One context lookup and one driver borrow (spending budget wakes no driver code).
        let got = context::with(|c| match &mut *c.driver.borrow_mut() {
            Driver::Epoll(d) => {
                if d.may_recv(fd) {
                    std::task::ready!(coop::poll_proceed(cx));
                }
                d.poll_recv(fd, cx.waker(), c.executor.is_polling(cx.waker()))
            }
            Driver::Uring(_) => Poll::Ready(Err(io::Error::other("readiness receive on io_uring"))),
        });
        match std::task::ready!(got) {
            Ok(v) => {
                if v.is_empty() {
                    self.eof = true;
                }
                Poll::Ready(Ok(v))
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

fn bump(counter: impl FnOnce(&stats::ShardStats) -> &std::sync::atomic::AtomicU64) {
    context::with(|c| stats::bump(counter(&c.shared.shards[c.shard_id].stats), 1));
}
