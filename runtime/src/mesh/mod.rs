//! The cross-core mesh: one bounded channel per (from, to) pair of shards.
//!
//! [`submit_to`] runs a closure on another core and resolves to its result, like Seastar's
//! `smp::submit_to`; on the calling core it runs at once (the same-core fast path). A full
//! channel is back-pressure: [`try_submit_to`] reports [`TrySubmitError::Full`] at once and
//! hands the closure back; [`submit_to`] waits for room. The target is woken through its
//! ring's eventfd, and only when it is parked in its ring wait.
//!
//! Replies travel back over the target's channel to the caller. A reply never waits for
//! room: if that channel is full, the target keeps the reply in a local outbox and retries
//! on its next loop turn. At the target's exit its outbox is handed over, waiting for room
//! up to `EXIT_DELIVERY_LIMIT` (1 s) per caller, and calls still queued to it are dropped with
//! their callers told `Closed`; a reply is lost only when its caller has exited too or has
//! not read its inbox for that long (the caller then sees `Closed`).

mod sharded;

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use slab::Slab;

pub use sharded::Sharded;

use crate::context::{self, Context as ShardCx};
use crate::executor::coop;
use crate::stats;

type Call = Box<dyn FnOnce() -> Box<dyn Any + Send> + Send>;

/// What travels between cores.
pub(crate) enum Message {
    /// Run `f` and send its result back to `(from, key)`.
    Call { from: usize, key: usize, f: Call },
    /// The result of the caller's call `key`.
    Reply { key: usize, value: Box<dyn Any + Send> },
    /// The target stopped before running call `key`.
    Dropped { key: usize },
}

/// Why a cross-core call produced no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The target shard index is not in `0..n_shards()`.
    NoSuchShard,
    /// The target shard has stopped (the runtime is shutting down). Almost always the
    /// closure was dropped without running; the one exception is a reply the target could not
    /// hand over at its exit because this (calling) shard did not read its inbox for a whole
    /// second (`EXIT_DELIVERY_LIMIT`): then it ran and its result was lost.
    Closed,
    /// The closure panicked on the target shard.
    Panicked,
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubmitError::NoSuchShard => "no such shard",
            SubmitError::Closed => "target shard has stopped",
            SubmitError::Panicked => "the submitted closure panicked",
        })
    }
}

impl std::error::Error for SubmitError {}

/// Why [`try_submit_to`] did not send; the closure comes back.
pub enum TrySubmitError<F> {
    /// The channel to the target is full right now.
    Full(F),
    /// The target has stopped, or does not exist.
    Closed(F),
}

impl<F> TrySubmitError<F> {
    /// The closure that was not sent.
    pub fn into_inner(self) -> F {
        match self {
            TrySubmitError::Full(f) | TrySubmitError::Closed(f) => f,
        }
    }

    /// True for `Full`.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySubmitError::Full(_))
    }
}

impl<F> fmt::Debug for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySubmitError::Full(_) => "Full(..)",
            TrySubmitError::Closed(_) => "Closed(..)",
        })
    }
}

impl<F> fmt::Display for TrySubmitError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrySubmitError::Full(_) => "cross-core channel is full",
            TrySubmitError::Closed(_) => "target shard has stopped",
        })
    }
}

enum ReplyState {
    /// Sent to shard `to`; the caller's waker once it polled.
    Waiting {
        to: usize,
        waker: Option<Waker>,
    },
    Ready(Result<Box<dyn Any + Send>, SubmitError>),
    /// The caller's future was dropped; the reply is discarded on arrival.
    Abandoned,
}

/// The shard-local half of the mesh.
pub(crate) struct MeshLocal {
    replies: RefCell<Slab<ReplyState>>,
    /// Replies that found the caller's channel full, retried every turn.
    outbox: RefCell<VecDeque<(usize, Message)>>,
    /// Tasks waiting for room in a full channel, re-polled every turn.
    room_waiters: RefCell<Vec<Waker>>,
}

impl MeshLocal {
    pub(crate) fn new() -> Self {
        Self {
            replies: RefCell::new(Slab::new()),
            outbox: RefCell::new(VecDeque::new()),
            room_waiters: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn has_backlog(&self) -> bool {
        !self.outbox.borrow().is_empty() || !self.room_waiters.borrow().is_empty()
    }

    /// Calls this shard has sent and whose replies have not arrived yet.
    pub(crate) fn pending_replies(&self) -> usize {
        self.replies.borrow().len()
    }
}

/// Sends `msg` from the current shard to `to`. Returns the message if the channel is full.
fn send(cx: &ShardCx, to: usize, msg: Message) -> Result<(), TrySendError<Message>> {
    let me = cx.shard_id;
    cx.shared.senders[me][to].try_send(msg)?;
    stats::bump(&cx.shared.shards[me].stats.mesh_sent, 1);
    cx.shared.shards[to].mail();
    Ok(())
}

/// Handles up to `max` messages from every inbox, retries the outbox, and wakes room waiters.
/// Returns how many messages were handled.
///
/// The check that there is nothing to do, which nearly every loop turn ends with, is inline;
/// the work out of line.
#[inline]
pub(crate) fn poll_inbox(cx: &ShardCx, max: usize) -> usize {
    let idle = cx.mesh.outbox.borrow().is_empty()
        && !cx.shared.shards[cx.shard_id].has_mail.load(Ordering::Relaxed)
        && cx.mesh.room_waiters.borrow().is_empty()
        && cx.mesh.replies.borrow().is_empty();
    if idle {
        return 0;
    }
    poll_inbox_busy(cx, max)
}

#[inline(never)]
fn poll_inbox_busy(cx: &ShardCx, max: usize) -> usize {
    let me = cx.shard_id;
    // Retry replies that found a full channel.
    // (Checked first: a pop moves a whole message out even to say there is none.)
    while !cx.mesh.outbox.borrow().is_empty() {
        let next = cx.mesh.outbox.borrow_mut().pop_front();
        let Some((to, msg)) = next else { break };
        match send(cx, to, msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                cx.mesh.outbox.borrow_mut().push_front((to, msg));
                break;
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
    let mut handled = 0;
    // Cleared before the inboxes are read: a message queued after a channel was read sets
    // it again, for the next turn.
    let remote = &cx.shared.shards[me];
    // (A plain load first: the swap's locked write only when there is mail.)
    if remote.has_mail.load(Ordering::Relaxed) && remote.has_mail.swap(false, Ordering::SeqCst) {
        for from in 0..cx.shared.n_shards() {
            let rx = &cx.shared.receivers[me][from];
            while handled < max {
                let Ok(msg) = rx.try_recv() else { break };
                handled += 1;
                handle(cx, from, msg);
            }
        }
        if handled >= max {
            // The budget ran out: what is left is read next turn.
            remote.has_mail.store(true, Ordering::SeqCst);
        }
    }
    if handled > 0 {
        stats::bump(&cx.shared.shards[me].stats.mesh_received, handled as u64);
    }
    if !cx.mesh.room_waiters.borrow().is_empty() {
        let waiters = std::mem::take(&mut *cx.mesh.room_waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }
    if !cx.mesh.replies.borrow().is_empty() {
        fail_orphans(cx);
    }
    handled
}

/// Calls sent to a shard whose exit is complete (`drained`) and whose reply channel holds
/// nothing more can never be answered: they complete with `Closed` now, not when this shard
/// tears down. (A shard's exit hands over its last replies and notices first, then sets
/// `drained` and wakes every shard.)
fn fail_orphans(cx: &ShardCx) {
    for (to, key) in orphans(cx) {
        complete(cx, to, key, Err(SubmitError::Closed));
    }
}

/// Whether this shard waits on calls that [`fail_orphans`] would complete: checked before
/// parking, since the `drained` wake-up may have come before this shard was parked.
pub(crate) fn has_orphans(cx: &ShardCx) -> bool {
    !cx.mesh.replies.borrow().is_empty() && !orphans(cx).is_empty()
}

/// `(target, key)` of the calls waiting on a drained shard with nothing left in its channel.
/// Its callers ask only when some call waits for a reply (every loop turn asks, and nearly
/// always none does).
fn orphans(cx: &ShardCx) -> Vec<(usize, usize)> {
    let me = cx.shard_id;
    let gone = |to: usize| {
        cx.shared.shards[to].drained.load(Ordering::Acquire) && cx.shared.receivers[me][to].is_empty()
    };
    if !(0..cx.shared.n_shards()).any(|s| s != me && cx.shared.shards[s].drained.load(Ordering::Acquire)) {
        return Vec::new();
    }
    cx.mesh
        .replies
        .borrow()
        .iter()
        .filter_map(|(key, st)| match st {
            ReplyState::Waiting { to, .. } if gone(*to) => Some((*to, key)),
            _ => None,
        })
        .collect()
}

fn handle(cx: &ShardCx, from: usize, msg: Message) {
    match msg {
        Message::Call { from: caller, key, f } => {
            let reply = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                Ok(value) => Message::Reply { key, value },
                Err(_) => Message::Dropped { key: key | PANIC_BIT },
            };
            debug_assert_eq!(caller, from);
            reply_to(cx, caller, reply);
        }
        Message::Reply { key, value } => complete(cx, from, key, Ok(value)),
        Message::Dropped { key } => {
            let err = if key & PANIC_BIT != 0 {
                SubmitError::Panicked
            } else {
                SubmitError::Closed
            };
            complete(cx, from, key & !PANIC_BIT, Err(err));
        }
    }
}

/// Marks a `Dropped` reply as "the closure panicked" (keys never reach this bit).
const PANIC_BIT: usize = 1 << (usize::BITS - 1);

fn reply_to(cx: &ShardCx, to: usize, msg: Message) {
    if !cx.mesh.outbox.borrow().is_empty() {
        cx.mesh.outbox.borrow_mut().push_back((to, msg));
        return;
    }
    match send(cx, to, msg) {
        Ok(()) => {}
        Err(TrySendError::Full(msg)) => cx.mesh.outbox.borrow_mut().push_back((to, msg)),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Completes the call in slot `key`, if it is one sent to shard `from` (a slot freed and
/// reused for a call to another shard is left alone).
fn complete(cx: &ShardCx, from: usize, key: usize, value: Result<Box<dyn Any + Send>, SubmitError>) {
    let mut replies = cx.mesh.replies.borrow_mut();
    let Some(state) = replies.get_mut(key) else {
        return;
    };
    match state {
        ReplyState::Waiting { to, .. } if *to != from => return,
        _ => {}
    }
    match std::mem::replace(state, ReplyState::Ready(value)) {
        ReplyState::Waiting { waker, .. } => {
            drop(replies);
            if let Some(w) = waker {
                w.wake();
            }
        }
        ReplyState::Abandoned => {
            let gone = replies.remove(key);
            drop(replies);
            drop(gone);
        }
        ReplyState::Ready(_) => {}
    }
}

/// How long an exiting shard keeps trying to hand its last replies to a caller whose channel
/// is full (the caller drains it every loop turn; one that does not for this long is stuck).
const EXIT_DELIVERY_LIMIT: Duration = Duration::from_secs(1);

/// Sends `msg` to `to` at shard exit, waiting (bounded) for room; gives up if `to` has exited
/// too. Returns whether it was delivered.
fn deliver_on_exit(cx: &ShardCx, to: usize, mut msg: Message, until: Instant) -> bool {
    let me = cx.shard_id;
    loop {
        if cx.shared.shards[to].exited.load(Ordering::Acquire) {
            return false;
        }
        match cx.shared.senders[me][to].try_send(msg) {
            Ok(()) => {
                cx.shared.shards[to].mail();
                return true;
            }
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(m)) => {
                if Instant::now() >= until {
                    return false;
                }
                msg = m;
                cx.shared.shards[to].unpark();
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

/// At shard exit: replies still waiting for room are delivered, every call still queued to
/// this shard is dropped and its caller told (`Closed`), and every other shard is woken so
/// that a call sent after this drain fails at once (see [`fail_orphans`]). A reply or notice
/// is lost only if its caller exited too, or did not drain its inbox for
/// [`EXIT_DELIVERY_LIMIT`].
pub(crate) fn drain_on_exit(cx: &ShardCx) {
    let me = cx.shard_id;
    let until = Instant::now() + EXIT_DELIVERY_LIMIT;
    // Replies first: they were decided before the calls still queued.
    let outbox = std::mem::take(&mut *cx.mesh.outbox.borrow_mut());
    for (to, msg) in outbox {
        deliver_on_exit(cx, to, msg, until);
    }
    for from in 0..cx.shared.n_shards() {
        while let Ok(msg) = cx.shared.receivers[me][from].try_recv() {
            if let Message::Call { from: caller, key, f } = msg {
                drop(f);
                deliver_on_exit(cx, caller, Message::Dropped { key }, until);
            }
        }
    }
    cx.shared.shards[me].drained.store(true, Ordering::Release);
    for s in &cx.shared.shards {
        s.unpark();
    }
    // Taken out first: dropping a reply value or a waker runs user code, which must not
    // find these cells borrowed.
    let replies = std::mem::take(&mut *cx.mesh.replies.borrow_mut());
    drop(replies);
}

/// The future of [`submit_to`]: resolves to the closure's result.
pub struct Submit<R> {
    state: SubmitState,
    _result: PhantomData<fn() -> R>,
}

enum SubmitState {
    /// Ran on this core already.
    Local(Option<Result<Box<dyn Any + Send>, SubmitError>>),
    /// Waiting for room in the channel to `to`.
    Unsent {
        to: usize,
        key: usize,
        msg: Option<Message>,
    },
    /// Sent; waiting for the reply in slot `key`.
    Sent {
        key: usize,
    },
    Done,
}

impl<R> fmt::Debug for Submit<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Submit")
    }
}

fn boxed_call<F, R>(f: F) -> Call
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    Box::new(move || Box::new(f()) as Box<dyn Any + Send>)
}

/// Runs `f` on shard `shard` and resolves to its result.
///
/// On the calling shard, `f` runs at once. Otherwise it is queued on the bounded channel to
/// that shard; if the channel is full, the future waits for room (back-pressure). The result
/// is `Err(SubmitError::Closed)` if the target stopped before running `f`.
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn submit_to<F, R>(shard: usize, f: F) -> Submit<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    context::with(|cx| {
        if shard >= cx.shared.n_shards() {
            return Submit {
                state: SubmitState::Local(Some(Err(SubmitError::NoSuchShard))),
                _result: PhantomData,
            };
        }
        if shard == cx.shard_id {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .map(|r| Box::new(r) as Box<dyn Any + Send>)
                .map_err(|_| SubmitError::Panicked);
            return Submit {
                state: SubmitState::Local(Some(out)),
                _result: PhantomData,
            };
        }
        if cx.shared.shards[shard].exited.load(Ordering::Acquire) {
            return Submit {
                state: SubmitState::Local(Some(Err(SubmitError::Closed))),
                _result: PhantomData,
            };
        }
        let key = cx.mesh.replies.borrow_mut().insert(ReplyState::Waiting {
            to: shard,
            waker: None,
        });
        let msg = Message::Call {
            from: cx.shard_id,
            key,
            f: boxed_call(f),
        };
        let state = match send(cx, shard, msg) {
            Ok(()) => SubmitState::Sent { key },
            Err(TrySendError::Full(msg)) => SubmitState::Unsent {
                to: shard,
                key,
                msg: Some(msg),
            },
            Err(TrySendError::Disconnected(_)) => {
                cx.mesh.replies.borrow_mut().remove(key);
                SubmitState::Local(Some(Err(SubmitError::Closed)))
            }
        };
        Submit {
            state,
            _result: PhantomData,
        }
    })
}

/// Like [`submit_to`], but never waits for room: if the channel to `shard` is full it
/// returns `Err(TrySubmitError::Full(f))` at once, handing `f` back unrun.
///
/// # Panics
///
/// Outside a ringcore shard.
pub fn try_submit_to<F, R>(shard: usize, f: F) -> Result<Submit<R>, TrySubmitError<F>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let verdict = context::with(|cx| {
        if shard >= cx.shared.n_shards() || cx.shared.shards[shard].exited.load(Ordering::Acquire) {
            return Err(false);
        }
        if shard == cx.shard_id {
            return Ok(true);
        }
        // Only this shard sends on (me, shard), and the receiver only frees room, so a
        // channel that is not full now accepts our send below.
        if cx.shared.senders[cx.shard_id][shard].is_full() {
            stats::bump(&cx.shared.shards[cx.shard_id].stats.mesh_full, 1);
            return Err(true);
        }
        Ok(false)
    });
    match verdict {
        Err(true) => Err(TrySubmitError::Full(f)),
        Err(false) => Err(TrySubmitError::Closed(f)),
        Ok(_) => Ok(submit_to(shard, f)),
    }
}

impl<R: Send + 'static> Future for Submit<R> {
    type Output = Result<R, SubmitError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.state {
                SubmitState::Done => return Poll::Ready(Err(SubmitError::Closed)),
                SubmitState::Local(out) => {
                    if coop::poll_proceed(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let out = out.take().unwrap_or(Err(SubmitError::Closed));
                    self.state = SubmitState::Done;
                    return Poll::Ready(downcast(out));
                }
                SubmitState::Unsent { to, key, msg } => {
                    let (to, key) = (*to, *key);
                    let Some(m) = msg.take() else {
                        self.state = SubmitState::Done;
                        continue;
                    };
                    // The target stopped before this call could be queued: it will never run.
                    if context::with(|c| c.shared.shards[to].exited.load(Ordering::Acquire)) {
                        drop(m);
                        context::with(|c| c.mesh.replies.borrow_mut().try_remove(key));
                        self.state = SubmitState::Done;
                        return Poll::Ready(Err(SubmitError::Closed));
                    }
                    let sent = context::with(|c| match send(c, to, m) {
                        Ok(()) => Ok(()),
                        Err(TrySendError::Full(m)) => {
                            c.mesh.room_waiters.borrow_mut().push(cx.waker().clone());
                            Err(Some(m))
                        }
                        Err(TrySendError::Disconnected(_)) => Err(None),
                    });
                    match sent {
                        Ok(()) => self.state = SubmitState::Sent { key },
                        Err(Some(m)) => {
                            if let SubmitState::Unsent { msg, .. } = &mut self.state {
                                *msg = Some(m);
                            }
                            return Poll::Pending;
                        }
                        Err(None) => {
                            context::with(|c| c.mesh.replies.borrow_mut().try_remove(key));
                            self.state = SubmitState::Done;
                            return Poll::Ready(Err(SubmitError::Closed));
                        }
                    }
                }
                SubmitState::Sent { key } => {
                    let key = *key;
                    let ready = context::with(|c| {
                        let mut replies = c.mesh.replies.borrow_mut();
                        match replies.get_mut(key) {
                            Some(ReplyState::Ready(_)) => {
                                if coop::poll_proceed(cx).is_pending() {
                                    return None;
                                }
                                match replies.remove(key) {
                                    ReplyState::Ready(v) => Some(v),
                                    _ => Some(Err(SubmitError::Closed)),
                                }
                            }
                            Some(ReplyState::Waiting { waker, .. }) => {
                                *waker = Some(cx.waker().clone());
                                None
                            }
                            _ => Some(Err(SubmitError::Closed)),
                        }
                    });
                    return match ready {
                        Some(v) => {
                            self.state = SubmitState::Done;
                            Poll::Ready(downcast(v))
                        }
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}

fn downcast<R: 'static>(v: Result<Box<dyn Any + Send>, SubmitError>) -> Result<R, SubmitError> {
    v.and_then(|b| b.downcast::<R>().map(|b| *b).map_err(|_| SubmitError::Closed))
}

impl<R> Drop for Submit<R> {
    fn drop(&mut self) {
        let key = match &self.state {
            SubmitState::Sent { key } | SubmitState::Unsent { key, .. } => *key,
            _ => return,
        };
        let unsent = matches!(self.state, SubmitState::Unsent { .. });
        context::try_with(|c| {
            let mut replies = c.mesh.replies.borrow_mut();
            if unsent {
                replies.try_remove(key);
                return;
            }
            let finished = matches!(replies.get(key), Some(ReplyState::Ready(_)));
            if finished {
                let v = replies.remove(key);
                drop(replies);
                drop(v);
            } else if let Some(s) = replies.get_mut(key) {
                *s = ReplyState::Abandoned;
            }
        });
    }
}
