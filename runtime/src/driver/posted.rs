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
//! The SQE carries `MSG_WAITALL`: on a stream socket the kernel then retries a short send
//! itself until every byte is sent or the socket fails, so a completion that reports fewer
//! bytes than the buffer held means the connection is broken (there is no buffer left to
//! send the rest from).

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
    _fd: SharedFd,
    /// `None` once the lane is gone (the send is being cancelled).
    lane: Option<Rc<Lane>>,
    recycle: fn(Vec<u8>),
}

impl Posted {
    pub(crate) fn new(buf: Vec<u8>, fd: SharedFd, lane: Rc<Lane>) -> Posted {
        let recycle = lane.recycle;
        Posted {
            buf,
            _fd: fd,
            lane: Some(lane),
            recycle,
        }
    }

    /// The bytes to send (for the SQE).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The buffer back (the send was never submitted).
    pub(crate) fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// The lane let go of the send (it is being cancelled): its outcome goes nowhere.
    pub(crate) fn detach(&mut self) {
        self.lane = None;
    }

    /// The kernel is done: the outcome goes to the lane. Returns the waker to call (a task
    /// waiting for the outcome) and the buffer with where it goes.
    pub(crate) fn finish(self, c: Completion) -> (Option<Waker>, Recycled) {
        let mut waker = None;
        if let Some(lane) = &self.lane {
            let state = match c.result {
                Ok(n) if n as usize == self.buf.len() => LaneState::Idle,
                Ok(_) => LaneState::Failed(None),
                Err(e) => LaneState::Failed(Some(e)),
            };
            lane.state.set(state);
            waker = lane.waker.take();
        }
        (waker, (self.buf, self.recycle))
    }
}
