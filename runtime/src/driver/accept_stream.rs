//! The accepting side of a listening socket as the driver serves it: "the next connection".
//!
//! Where the kernel has it (5.19+), one multishot `ACCEPT` yields every new connection and is
//! re-armed when the kernel ends it; otherwise each accept is a single-shot `ACCEPT`. The
//! caller (`net::TcpListener`) sees neither: it asks for the next fd.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::op::{self, Accept, Multi, Op};
use crate::context;
use crate::fd::SharedFd;

/// The accept state of one listening socket.
pub(crate) struct AcceptStream {
    multishot: bool,
    multi: Option<Multi>,
    single: Option<Op<Accept>>,
}

impl AcceptStream {
    /// An accept stream for a listener of this core (multishot if the kernel has it).
    pub(crate) fn new() -> Self {
        let multishot = context::with(|cx| cx.driver.borrow().features().multishot_accept);
        AcceptStream {
            multishot,
            multi: None,
            single: None,
        }
    }

    /// True if accepts use a multishot accept (one request for many connections).
    pub(crate) fn is_multishot(&self) -> bool {
        self.multishot
    }

    /// The next accepted connection's fd (close-on-exec, non-blocking).
    pub(crate) fn poll_next(&mut self, fd: &SharedFd, cx: &mut Context<'_>) -> Poll<io::Result<SharedFd>> {
        if !self.multishot {
            let single = match self.single.as_mut() {
                Some(s) => s,
                None => self.single.insert(op::accept(fd)?),
            };
            let r = std::task::ready!(Pin::new(single).poll(cx));
            self.single = None;
            return Poll::Ready(r);
        }
        loop {
            let multi = match self.multi.as_mut() {
                Some(m) => m,
                None => self.multi.insert(op::accept_multi(fd)?),
            };
            match std::task::ready!(multi.poll_next(cx)) {
                Some(c) => return Poll::Ready(c.io_result().map(|new| SharedFd::new(new as i32))),
                // The kernel ended the multishot (e.g. after an error): re-arm.
                None => self.multi = None,
            }
        }
    }
}
