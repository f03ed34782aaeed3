//! Operation futures: one file per opcode, one generic future ([`Op`]) that drives them.
//!
//! An op struct owns everything the kernel touches (the fd handle, the buffer, the sockaddr)
//! and turns itself into an SQE ([`OpKind::sqe`]). [`Op`] submits it, waits for the
//! completion, and hands the resources back with the result ([`OpKind::complete`]). Dropping
//! an [`Op`] early hands the resources to the driver, which keeps them until the kernel is done.

mod accept;
mod close;
mod connect;
mod fsync;
mod ftruncate;
mod nop;
mod open;
mod read;
mod recv;
mod send;
mod shutdown;
mod write;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use io_uring::squeue;

pub(in crate::driver) use accept::{accept, accept_multi, Accept};
pub(crate) use close::{close, close_file};
pub(crate) use connect::connect;
pub(crate) use fsync::fsync;
pub(crate) use ftruncate::ftruncate;
pub(crate) use nop::nop;
pub(crate) use open::openat;
pub(crate) use read::read_at;
pub(crate) use recv::recv;
pub(in crate::driver) use recv::{recv_multi, Recv};
pub(crate) use send::{send, sendmsg};
pub(crate) use shutdown::shutdown;
pub(crate) use write::write_at;

use super::epoll::SysOp;
use super::{multi_epoch, Completion, Driver, MultiPoll, Orphan};
use crate::context;
use crate::executor::coop;

/// An io_uring operation: how to build its SQE and what its completion means.
pub(crate) trait OpKind: Unpin + 'static {
    type Output;

    /// What a completion means when nobody waits for it any more.
    const ORPHAN: Orphan = Orphan::Nothing;

    /// A receive from a socket: its completions with bytes make a ring turn busy
    /// (`driver::quiet`).
    const RECEIVE: bool = false;

    /// The SQE. Pointers in it point into `self`'s heap-owned resources.
    fn sqe(&mut self) -> squeue::Entry;

    /// The same operation for the epoll driver (a non-blocking socket call, a blocking-pool
    /// file call, or one done at once). Pointers in it point into `self`'s heap-owned
    /// resources, as the SQE's do.
    fn sys_op(&mut self) -> SysOp;

    /// Turns the completion into the output, handing the resources back.
    fn complete(self, c: Completion) -> Self::Output;
}

/// The future of one single-shot operation.
pub(crate) struct Op<T: OpKind> {
    key: usize,
    data: Option<T>,
}

impl<T: OpKind> Op<T> {
    /// Submits `data` (the SQE goes to the kernel with this core's next ring enter).
    ///
    /// On failure (the ring is unusable) the resources come back with the error.
    pub(crate) fn submit(mut data: T) -> Result<Op<T>, (io::Error, T)> {
        // The request's pointers point into `data`'s heap resources, which the returned `Op`
        // owns, and which move into the driver's slot if the `Op` is dropped before the
        // completion (see `Drop`), so they stay valid until the kernel (or, on epoll, the
        // blocking pool) is done with them.
        let key = context::with(|cx| match &mut *cx.driver.borrow_mut() {
            // SAFETY: see above; the SQE's pointers point into `data`.
            Driver::Uring(d) => unsafe { d.submit(data.sqe(), T::ORPHAN, false, T::RECEIVE) },
            // SAFETY: see above; the SysOp's pointers point into `data`.
            Driver::Epoll(d) => unsafe { d.submit(data.sys_op(), T::ORPHAN) },
        });
        match key {
            Ok(key) => Ok(Op {
                key,
                data: Some(data),
            }),
            Err(e) => Err((e, data)),
        }
    }
}

impl<T: OpKind> Future for Op<T> {
    type Output = T::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let key = self.key;
        let done = context::with(|c| c.driver.borrow_mut().is_completed(key));
        if done && coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let polled = context::with(|c| c.driver.borrow_mut().poll_op(key, cx.waker()));
        match polled {
            Some(c) => match self.data.take() {
                Some(data) => Poll::Ready(data.complete(c)),
                None => panic!("ringcore: operation polled after completion"),
            },
            None => Poll::Pending,
        }
    }
}

impl<T: OpKind> Drop for Op<T> {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            let key = self.key;
            let boxed: Box<dyn std::any::Any> = Box::new(data);
            let mut boxed = Some(boxed);
            context::try_with(|cx| cx.driver.borrow_mut().drop_op(key, boxed.take()));
            // No context (the shard is tearing down abnormally): the kernel may still own
            // these resources, so they are leaked rather than freed.
            std::mem::forget(boxed);
        }
    }
}

/// A multishot operation: a stream of completions from one SQE.
pub(crate) struct Multi {
    key: Option<usize>,
    /// Resources the kernel uses for the whole stream (the listener / socket fd handle).
    data: Option<Box<dyn std::any::Any>>,
    /// The core's multishot epoch when this stream last left `armed_for` registered in its
    /// slot with nothing queued (`NOT_ARMED`: not since its last completion). While the
    /// epoch has not moved, a poll with that waker is pending without asking the driver.
    armed_at: u64,
    /// The waker last registered (a clone kept for the stream's life, made again only when
    /// the polling waker changes).
    armed_for: Option<Waker>,
}

/// [`Multi::armed_at`] when the stream is not known to be armed.
const NOT_ARMED: u64 = u64::MAX;

impl Multi {
    /// # Safety
    ///
    /// Every pointer in `sqe` must point into `data`'s heap-owned resources.
    pub(crate) unsafe fn submit(
        sqe: squeue::Entry,
        orphan: Orphan,
        receive: bool,
        data: Box<dyn std::any::Any>,
    ) -> io::Result<Multi> {
        let key = context::with(|cx| match &mut *cx.driver.borrow_mut() {
            // SAFETY: forwarded from the caller; `data` moves into the slot if this stream
            // is dropped before the kernel's final completion.
            Driver::Uring(d) => unsafe { d.submit(sqe, orphan, true, receive) },
            // Multishot requests exist only on io_uring; the epoll driver's features say so,
            // so the streams never ask it for one.
            Driver::Epoll(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "multishot operations need the io_uring driver",
            )),
        })?;
        Ok(Multi {
            key: Some(key),
            data: Some(data),
            armed_at: NOT_ARMED,
            armed_for: None,
        })
    }

    /// The next completion if it has already arrived; `None` otherwise (nothing registered:
    /// [`poll_next`](Self::poll_next) is the way to wait).
    pub(crate) fn try_next(&mut self) -> Option<Completion> {
        let key = self.key?;
        context::with(|c| c.driver.borrow_mut().try_multi(key))
    }

    /// Puts a completion [`try_next`](Self::try_next) gave back at the front of the queue.
    pub(crate) fn put_back(&mut self, c: Completion) {
        self.armed_at = NOT_ARMED;
        if let Some(key) = self.key {
            context::with(|cx| cx.driver.borrow_mut().unpoll_multi(key, c));
        }
    }

    /// The next completion, or `None` once the kernel has ended the stream (re-arm then).
    ///
    /// Inline up to the armed case: the stream's waker is registered and nothing has reached
    /// its slot since (the core's multishot epoch has not moved), so it is pending without a
    /// look at the driver. That is a connection's read after its answer, in the same poll
    /// as the read that brought the request (`scripts/callgrind-http.sh`: about 65
    /// instructions a request at 1x1 and 64x1).
    #[inline]
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Completion>> {
        if self.armed_at == multi_epoch() && self.armed_for.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        self.poll_slot(cx)
    }

    /// [`poll_next`](Self::poll_next) past the armed case: the slot's queue, and the waker
    /// registered (arming the stream) where it stays pending or took the last completion.
    #[inline(never)]
    fn poll_slot(&mut self, cx: &mut Context<'_>) -> Poll<Option<Completion>> {
        self.armed_at = NOT_ARMED;
        let Some(key) = self.key else {
            return Poll::Ready(None);
        };
        let r = context::with(|c| {
            let local = c.executor.is_polling(cx.waker());
            c.driver.borrow_mut().poll_multi(key, cx.waker(), local)
        });
        let (v, armed) = match r {
            MultiPoll::Item(v) => (v, false),
            MultiPoll::Armed(v) => (v, true),
            MultiPoll::Pending => {
                self.arm(cx.waker());
                return Poll::Pending;
            }
            MultiPoll::Ended => {
                self.key = None;
                return Poll::Ready(None);
            }
        };
        if coop::poll_proceed(cx).is_pending() {
            // Put it back in front: nothing is lost by yielding (and the stream is not
            // armed: its slot has a completion queued).
            context::with(|c| c.driver.borrow_mut().unpoll_multi(key, v));
            return Poll::Pending;
        }
        if armed {
            self.arm(cx.waker());
        }
        Poll::Ready(Some(v))
    }

    /// `waker` is registered in the slot with nothing queued, as of the current epoch.
    fn arm(&mut self, waker: &Waker) {
        if !self.armed_for.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.armed_for = Some(waker.clone());
        }
        self.armed_at = multi_epoch();
    }
}

impl Drop for Multi {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut data = self.data.take();
            context::try_with(|cx| cx.driver.borrow_mut().drop_op(key, data.take()));
            // No context: leak rather than free what the kernel may still use.
            std::mem::forget(data);
        }
    }
}
