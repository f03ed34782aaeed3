//! [`Driver`]: the core's I/O driver, io_uring or epoll, chosen once when the core starts.
//!
//! Both backends keep their operations in the same [`OpTable`](super::lifecycle::OpTable)
//! state machine and answer the same calls (poll, drop, turn, shutdown); only submission
//! differs (an SQE or a [`SysOp`](super::epoll::SysOp)), which is the one branch
//! [`op::Op::submit`](super::op::Op::submit) takes per operation. Every other call is a
//! `match` on a value that never changes for the life of the core, so the branch predictor
//! always gets it right.

use std::any::Any;
use std::io;
use std::rc::Rc;
use std::task::Waker;

use super::buf_ring::BufRing;
use super::epoll::EpollDriver;
use super::lifecycle::OpTable;
use super::{Completion, Deferred, Features, MultiPoll, UringDriver, Wait};
use crate::select::DriverKind;
use crate::shared::{Config, ShardRemote};

/// One core's I/O driver.
pub(crate) enum Driver {
    Uring(UringDriver),
    Epoll(EpollDriver),
}

impl Driver {
    /// Creates the backend `cfg.driver` names, on the calling (shard) thread.
    pub(crate) fn new(remote: &ShardRemote, cfg: &Config) -> io::Result<Self> {
        Ok(match cfg.driver {
            DriverKind::IoUring => Driver::Uring(UringDriver::new(
                remote,
                cfg.ring_entries,
                cfg.portable_ops,
                cfg.buf_ring_entries,
                cfg.buf_size,
            )?),
            DriverKind::Epoll => Driver::Epoll(EpollDriver::new(remote, cfg.ring_entries).map_err(|e| {
                let msg = e.to_string();
                if msg.starts_with("ringcore cannot start") {
                    e
                } else {
                    io::Error::new(
                        e.kind(),
                        format!("ringcore cannot start: the epoll driver could not be set up: {msg}"),
                    )
                }
            })?),
        })
    }

    pub(crate) fn features(&self) -> Features {
        match self {
            Driver::Uring(d) => d.features(),
            Driver::Epoll(d) => d.features(),
        }
    }

    pub(crate) fn buf_ring(&self) -> Option<&Rc<BufRing>> {
        match self {
            Driver::Uring(d) => d.buf_ring(),
            Driver::Epoll(_) => None,
        }
    }

    /// The op table both backends keep their operations in.
    fn ops(&self) -> &OpTable {
        match self {
            Driver::Uring(d) => &d.ops,
            Driver::Epoll(d) => &d.ops,
        }
    }

    fn ops_mut(&mut self) -> &mut OpTable {
        match self {
            Driver::Uring(d) => &mut d.ops,
            Driver::Epoll(d) => &mut d.ops,
        }
    }

    pub(crate) fn ops_in_flight(&self) -> usize {
        self.ops().len()
    }

    /// Polls a single-shot operation: its completion, or `None` (the waker is registered).
    pub(crate) fn poll_op(&mut self, key: usize, waker: &Waker) -> Option<Completion> {
        self.ops_mut().poll_single(key, waker)
    }

    /// True if the single-shot op `key` has its completion waiting.
    pub(crate) fn is_completed(&self, key: usize) -> bool {
        self.ops().is_completed(key)
    }

    /// Polls a multishot operation (`local`: see [`WaitState`](super::lifecycle::WaitState)).
    pub(crate) fn poll_multi(&mut self, key: usize, waker: &Waker, local: bool) -> MultiPoll {
        self.ops_mut().poll_multi(key, waker, local)
    }

    /// The next completion of a multishot operation if one has arrived (no waker registered).
    pub(crate) fn try_multi(&mut self, key: usize) -> Option<Completion> {
        self.ops_mut().try_multi(key)
    }

    /// Puts a multishot completion back at the front of its queue (the task had to yield).
    pub(crate) fn unpoll_multi(&mut self, key: usize, c: Completion) {
        self.ops_mut().unpoll_multi(key, c);
    }

    pub(crate) fn drop_op(&mut self, key: usize, data: Option<Box<dyn Any>>) {
        match self {
            Driver::Uring(d) => d.drop_op(key, data),
            Driver::Epoll(d) => d.drop_op(key, data),
        }
    }

    /// The lane of posted send `key` is gone: cancel the send if it is still in the kernel
    /// (its buffer stays in the slot until the kernel lets go of it). Only io_uring posts.
    pub(crate) fn detach_posted(&mut self, key: usize) {
        if let Driver::Uring(d) = self {
            d.detach_posted(key);
        }
    }

    /// Whether a park's deadline is passed to the kernel as an absolute time (io_uring on
    /// 6.12+), so that the `now` of [`Wait::Until`] may be from before the turn's tasks ran.
    pub(crate) fn parks_on_absolute_deadline(&self) -> bool {
        match self {
            Driver::Uring(d) => d.parks_on_absolute_deadline(),
            Driver::Epoll(_) => false,
        }
    }

    pub(crate) fn turn(&mut self, remote: &ShardRemote, wait: Wait) -> io::Result<()> {
        match self {
            Driver::Uring(d) => d.turn(remote, wait),
            Driver::Epoll(d) => d.turn(remote, wait),
        }
    }

    /// Whether wakers or resources wait for [`take_deferred`](Self::take_deferred).
    pub(crate) fn has_deferred(&self) -> bool {
        match self {
            Driver::Uring(d) => d.has_deferred(),
            Driver::Epoll(d) => d.has_deferred(),
        }
    }

    pub(crate) fn take_deferred(&mut self, out: &mut Deferred) {
        match self {
            Driver::Uring(d) => d.take_deferred(out),
            Driver::Epoll(d) => d.take_deferred(out),
        }
    }

    pub(crate) fn shutdown(&mut self, remote: &ShardRemote) -> Vec<Box<dyn Any>> {
        match self {
            Driver::Uring(d) => d.shutdown(remote),
            Driver::Epoll(d) => d.shutdown(remote),
        }
    }
}
