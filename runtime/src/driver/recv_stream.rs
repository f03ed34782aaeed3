//! The receive side of a stream socket as the driver serves it: "the next received bytes".
//!
//! Where the kernel has provided buffer rings, one multishot `RECV` per socket picks buffers
//! from the core's ring, and each completion is handed out as a [`RecvBuf`] lent by the ring
//! (no copy). When the ring runs dry the kernel ends the multishot with `ENOBUFS`; that one
//! receive then goes into a private buffer, and the next one re-arms the multishot. A
//! multishot the kernel ends without an error is re-armed too. Without the ring (older
//! kernels, `portable_ops`), every receive is a single-shot `RECV` into a private buffer.
//! On the epoll driver a receive is made only when bytes are there: one that would block
//! gives its buffer back and the stream waits for the fd's next readable edge holding
//! nothing, so an idle connection holds no receive buffer there either.
//! The caller (`net::TcpStream`) sees none of this: it asks for the next chunk.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::backend::Driver;
use super::buf_ring::BufRing;
use super::op::{self, Multi, Op, Readable, Recv};
use super::recv_buf::RecvBuf;
use super::Errno;
use crate::context;
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
    /// The epoll driver: a receive is made only when bytes are there ([`op::recv_now`]), and
    /// the wait for them ([`op::readable`]) holds no buffer, so an idle connection holds
    /// none (a parked receive would hold its 16 KiB buffer for as long as the peer is quiet).
    readiness: bool,
    /// The wait for readability in flight (epoll).
    readable: Option<Op<Readable>>,
    /// The peer closed its sending side: every later receive is empty at once.
    eof: bool,
}

impl RecvStream {
    /// A receive stream for a socket of this core (multishot if the core has a buffer ring).
    pub(crate) fn new() -> Self {
        let (ring, readiness) = context::with(|cx| {
            let d = cx.driver.borrow();
            let ring = if d.features().multishot_recv {
                d.buf_ring().cloned()
            } else {
                None
            };
            (ring, matches!(*d, Driver::Epoll(_)))
        });
        RecvStream {
            ring,
            multi: None,
            single: None,
            readiness,
            readable: None,
            eof: false,
        }
    }

    /// True if received bytes come from the core's provided buffer ring.
    pub(crate) fn uses_buf_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// True if a receive may go straight into the caller's own buffer (`op::recv`): no
    /// buffer ring in use and no receive of this stream in flight.
    pub(crate) fn is_direct(&self) -> bool {
        self.ring.is_none() && self.single.is_none() && self.readable.is_none()
    }

    /// The next received bytes on `fd`; an empty chunk means EOF.
    pub(crate) fn poll_next(&mut self, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<RecvBuf>> {
        if self.eof {
            return Poll::Ready(Ok(RecvBuf::owned(Vec::new())));
        }
        loop {
            if let Some(single) = self.single.as_mut() {
                let (res, buf) = std::task::ready!(Pin::new(single).poll(cx));
                self.single = None;
                if self.readiness && matches!(&res, Err(e) if e.raw_os_error() == Some(libc::EAGAIN)) {
                    // Nothing there: wait for the next bytes without the buffer.
                    drop(buf);
                    self.readable = Some(op::readable(fd)?);
                    continue;
                }
                return Poll::Ready(match res {
                    Ok(0) => {
                        self.eof = true;
                        Ok(RecvBuf::owned(Vec::new()))
                    }
                    Ok(_) => Ok(RecvBuf::owned(buf)),
                    Err(e) => Err(e),
                });
            }
            if let Some(readable) = self.readable.as_mut() {
                let res = std::task::ready!(Pin::new(readable).poll(cx));
                self.readable = None;
                res?;
            }
            let Some(ring) = self.ring.as_ref() else {
                let buf = Vec::with_capacity(FALLBACK_RECV_SIZE);
                let op = if self.readiness {
                    op::recv_now(fd, buf)
                } else {
                    op::recv(fd, buf)
                };
                self.single = Some(op.map_err(|(e, _)| e)?);
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
                    // Every ring buffer is out: receive this time into a private buffer.
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

fn bump(counter: impl FnOnce(&stats::ShardStats) -> &std::sync::atomic::AtomicU64) {
    context::with(|c| stats::bump(counter(&c.shared.shards[c.shard_id].stats), 1));
}
