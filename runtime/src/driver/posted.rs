//! Sends a task does not wait for (`TcpStream::post_send`). HOT PATH.
//!
//! An awaited send on io_uring costs its task a second wake-up and poll: the task gives the
//! buffer to the ring, sleeps, and is woken by the completion only to take the buffer back.
//! A posted send gives the buffer to the driver for good. The slot (`Lifecycle::Posted`)
//! owns it, with a handle on the fd, until the completion; then the buffer goes to the
//! lane's `recycle` function (a pool, where the buffer the kernel just read is the next one
//! taken, still in the cache), and only the outcome is left in the lane, a small shared cell
//! the task reads when it next writes. Nothing is woken unless the task is waiting for the
//! outcome.
//!
//! The SQE carries `MSG_WAITALL`: on a stream socket a 5.18+ kernel then retries a short send
//! itself until every byte is sent or the socket fails. A completion that still reports
//! fewer bytes (an older kernel, or a send the kernel gave up on part way) is not the end:
//! the slot keeps the buffer and how much went, and the driver submits the rest under the
//! same key (`OpTable::take_resends`), so the outcome the lane gets is all or an error.

use std::cell::Cell;
use std::rc::Rc;
use std::task::Waker;

use super::lifecycle::{Completion, Errno};
use crate::fd::SharedFd;

/// A completed posted send's buffer, with the function it goes to.
pub(crate) type Recycled = (Vec<u8>, fn(Vec<u8>));

/// Where a lane's posted send is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LaneState {
    /// None under way, and no failure to report.
    Idle,
    /// Under way as operation `key`.
    InFlight(usize),
    /// The last one failed: with this errno, or `None` if it sent only part of the bytes.
    Failed(Option<Errno>),
}

/// The cell a connection and the driver share for the connection's posted sends (one at a
/// time: a second would race the first for the socket, and bytes could go out of order).
pub(crate) struct Lane {
    pub(crate) state: Cell<LaneState>,
    /// The task waiting for the outcome, if any (rare: the outcome is usually there).
    pub(crate) waker: Cell<Option<Waker>>,
    /// Where a completed send's buffer goes.
    pub(crate) recycle: fn(Vec<u8>),
}

impl Lane {
    pub(crate) fn new(recycle: fn(Vec<u8>)) -> Rc<Lane> {
        Rc::new(Lane {
            state: Cell::new(LaneState::Idle),
            waker: Cell::new(None),
            recycle,
        })
    }
}

/// What the driver's slot of a posted send owns until its completion.
pub(crate) struct Posted {
    /// The bytes the kernel sends from (the SQE points into its heap allocation, which does
    /// not move when the `Vec` does).
    buf: Vec<u8>,
    /// Keeps the fd number from being reused until the kernel is done.
    fd: SharedFd,
    /// Where the outcome goes, and the buffer (its `recycle`).
    lane: Rc<Lane>,
    /// How many bytes went in earlier, short completions (a send is at most `u32::MAX`
    /// bytes: the SQE's length).
    sent: u32,
    /// The lane let go (the send is being cancelled): the outcome goes nowhere.
    detached: bool,
}
// A slot of the op table fits a cache line (`an_op_slot_fits_a_cache_line`).

impl Posted {
    pub(crate) fn new(buf: Vec<u8>, fd: SharedFd, lane: Rc<Lane>) -> Posted {
        Posted {
            buf,
            fd,
            lane,
            sent: 0,
            detached: false,
        }
    }

    /// The socket.
    pub(crate) fn fd(&self) -> i32 {
        self.fd.raw()
    }

    /// The bytes still to send (for the SQE).
    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.get(self.sent as usize..).unwrap_or_default()
    }

    /// A completion that sent `n` bytes, short of the rest, with the lane still there: true
    /// (and the bytes counted) if the rest is to be sent under the same key.
    pub(crate) fn short(&mut self, c: Completion) -> bool {
        match c.result {
            Ok(n) if n > 0 && !self.detached && (n as usize) < self.bytes().len() => {
                self.sent += n;
                true
            }
            _ => false,
        }
    }

    /// The buffer back (the send was never submitted).
    pub(crate) fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// The lane let go of the send (it is being cancelled): its outcome goes nowhere.
    pub(crate) fn detach(&mut self) {
        self.detached = true;
    }

    /// The kernel is done: the outcome goes to the lane. Returns the waker to call (a task
    /// waiting for the outcome) and the buffer with where it goes.
    pub(crate) fn finish(self, c: Completion) -> (Option<Waker>, Recycled) {
        let mut waker = None;
        if !self.detached {
            let state = match c.result {
                Ok(n) if self.sent as usize + n as usize == self.buf.len() => LaneState::Idle,
                Ok(_) => LaneState::Failed(None),
                Err(e) => LaneState::Failed(Some(e)),
            };
            self.lane.state.set(state);
            waker = self.lane.waker.take();
        }
        (waker, (self.buf, self.lane.recycle))
    }
}
