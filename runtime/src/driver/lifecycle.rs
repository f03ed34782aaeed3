//! The life of an operation: a pure state machine over completions, with no ring in it.
//!
//! [`OpTable`] holds one slot per operation in flight (the slot key is what the backend
//! tags the request with: the SQE's `user_data` on io_uring). It decides what each event
//! means — a poll, a completion, the future being dropped — and queues the side effects for
//! the backend to carry out once its borrow is released: wakers to call, resources to free,
//! and completions nobody waits for any more ([`Orphaned`]), whose fd must be closed or whose
//! provided buffer must go back to the ring. It never talks to the kernel itself, which is
//! why the tests below drive it with fabricated completions.

use std::any::Any;
use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::task::Waker;

use slab::Slab;

use super::buf_ring::BufRing;
use super::posted::{Posted, Recycled};
use crate::sys;

/// Highest key an operation slot may have (the keys above are reserved by the backend).
pub(crate) const MAX_OP_KEY: usize = (u64::MAX - 16) as usize;

/// io_uring's `IORING_CQE_F_BUFFER`: the completion carries a provided buffer id.
const F_BUFFER: u32 = 1 << 0;
/// io_uring's `IORING_CQE_F_MORE`: more completions follow for this (multishot) request.
const F_MORE: u32 = 1 << 1;
/// Where the buffer id sits in the flags (`IORING_CQE_BUFFER_SHIFT`).
const BUFFER_SHIFT: u32 = 16;

/// An errno, as a completion carries it: `Copy`, turned into an [`io::Error`] on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(pub(crate) i32);

impl From<Errno> for io::Error {
    fn from(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.0)
    }
}

/// One completion of an operation, as it crosses the driver boundary.
///
/// The result is already typed: a byte count / new fd, or the errno. It is a plain `Copy`
/// value (an [`Errno`] rather than an `io::Error`, which is not `Copy`); `io_result()` gives
/// the `io::Result<u32>`. The flags are kept with io_uring's bit layout and read through
/// [`more`](Self::more) and [`buffer_id`](Self::buffer_id); a readiness backend would build
/// its completions as `Completion { result, flags: 0 }`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completion {
    pub(crate) result: Result<u32, Errno>,
    pub(crate) flags: u32,
}

impl Completion {
    /// A completion with `result` and no flags (what a readiness backend produces).
    pub(crate) fn new(result: Result<u32, Errno>) -> Self {
        Completion { result, flags: 0 }
    }

    /// Converts a raw CQE (`res` is a count or `-errno`).
    pub(crate) fn from_raw(res: i32, flags: u32) -> Self {
        let result = if res < 0 {
            Err(Errno(res.saturating_neg()))
        } else {
            Ok(res as u32)
        };
        Completion { result, flags }
    }

    /// Marks the completion as carrying provided buffer `bid`.
    #[cfg(test)]
    pub(crate) fn with_buffer(mut self, bid: u16) -> Self {
        self.flags |= F_BUFFER | (u32::from(bid) << BUFFER_SHIFT);
        self
    }

    /// Marks the completion as not the last of its (multishot) request.
    #[cfg(test)]
    pub(crate) fn with_more(mut self) -> Self {
        self.flags |= F_MORE;
        self
    }

    pub(crate) fn io_result(self) -> io::Result<u32> {
        self.result.map_err(io::Error::from)
    }

    /// True if more completions follow for the same request (multishot).
    pub(crate) fn more(self) -> bool {
        self.flags & F_MORE != 0
    }

    /// The provided buffer the kernel filled, if any.
    pub(crate) fn buffer_id(self) -> Option<u16> {
        if self.flags & F_BUFFER != 0 {
            Some((self.flags >> BUFFER_SHIFT) as u16)
        } else {
            None
        }
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("result", &self.result)
            .field("more", &self.more())
            .field("buffer_id", &self.buffer_id())
            .finish()
    }
}

/// What to do with a completion nobody waits for any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Orphan {
    /// Nothing beyond freeing the resources (and returning a provided buffer it carries).
    Nothing,
    /// A non-negative result is a new fd: close it.
    CloseFd,
}

/// A completion that reached no future: what it carries must not leak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Orphaned {
    pub(crate) orphan: Orphan,
    pub(crate) completion: Completion,
}

impl Orphaned {
    /// Closes the fd it carries (if its op makes fds) and returns its provided buffer.
    pub(crate) fn dispose(self, ring: Option<&BufRing>) {
        if let (Some(bid), Some(ring)) = (self.completion.buffer_id(), ring) {
            ring.recycle(bid);
        }
        if self.orphan == Orphan::CloseFd {
            if let Ok(fd) = self.completion.result {
                // The kernel created this fd for an op whose future is gone: nobody else
                // knows it.
                sys::close(fd as i32);
            }
        }
    }
}

/// Where an operation is in its life.
pub(crate) enum Lifecycle {
    /// Submitted; nobody has polled it yet.
    Submitted,
    /// A task waits for the completion.
    Waiting(Waker),
    /// The future was dropped; the slot keeps the resources until the last completion.
    Ignored(Option<Box<dyn Any>>),
    /// The completion arrived and waits to be collected.
    Completed(Completion),
    /// A send nobody waits for (`TcpStream::post_send`): the slot owns its buffer until
    /// the completion, which goes to its lane.
    Posted(Posted),
    /// A multishot operation: completions queue up until the stream polls them.
    Multi {
        wakers: Wakers,
        /// How the first of `wakers` waits.
        wait: WaitState,
        results: Results,
        /// The final completion (no `more`) has arrived.
        finished: bool,
    },
}

struct Slot {
    state: Lifecycle,
    orphan: Orphan,
    /// A receive from a socket (single-shot or multishot): its completions with bytes are
    /// what makes a ring turn busy (`driver::quiet`).
    receive: bool,
}

/// How the task registered for the next event of a long-lived source (a multishot receive,
/// a socket's readability on epoll) waits, next to its waker (see [`register_waiter`]).
///
/// A waker of this core's own executor, passed down unchanged from the task's poll
/// (`Executor::is_polling`), is *local*: waking it only queues the task on this core (no
/// foreign code runs, so the driver's borrow may stay held), and the event wakes it in place
/// and keeps it for the task's next poll, which re-arms it without a clone. A connection's
/// receive then costs no reference count per request: no atomic add at the registration and
/// no atomic sub at the wake. Any other waker is taken at the event and handed out, to be
/// woken with no borrow held. Either way the next event wakes only a task that polled again
/// since the last one.
///
/// The owner keeps the waker and this state as two fields, not one struct: inside a struct
/// the one-byte state would cost a multishot slot 8 bytes of padding, and the slot its cache
/// line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum WaitState {
    /// No task waits (a local waker may be kept from its last wake-up).
    #[default]
    Idle,
    /// A task waits, with a waker that is taken at the event.
    Foreign,
    /// A task waits, with a local waker, woken in place and kept.
    Local,
}

/// Registers `waker` (`local`: see [`WaitState`]) in `slot` for the next event. Returns
/// false, and registers nothing, if another task's waker waits there already.
pub(crate) fn register_waiter(
    slot: &mut Option<Waker>,
    state: &mut WaitState,
    waker: &Waker,
    local: bool,
) -> bool {
    match slot {
        // The same task again: a local waker kept from its last wake-up, or one still waiting.
        Some(w) if w.will_wake(waker) => {
            if local || *state != WaitState::Foreign {
                *state = WaitState::Local;
            }
            return true;
        }
        Some(_) if *state != WaitState::Idle => return false,
        // Nobody, or a kept waker whose task waits here no more.
        _ => *slot = Some(waker.clone()),
    }
    *state = if local {
        WaitState::Local
    } else {
        WaitState::Foreign
    };
    true
}

/// The event: wakes the task waiting in `slot`, a local waker in place, any other by handing
/// it to `deferred`. Returns whether a task was waiting.
pub(crate) fn wake_waiter(
    slot: &mut Option<Waker>,
    state: &mut WaitState,
    deferred: &mut Vec<Waker>,
) -> bool {
    match std::mem::take(state) {
        WaitState::Idle => false,
        WaitState::Local => {
            if let Some(w) = slot {
                w.wake_by_ref();
            }
            true
        }
        WaitState::Foreign => {
            deferred.extend(slot.take());
            true
        }
    }
}

/// The tasks waiting on a multishot operation: nearly always one, kept inline; more (two
/// tasks reading one socket) go to a vector that is allocated only then. A multishot receive
/// lives as long as its connection, so its idle cost is per connection.
#[derive(Default)]
pub(crate) struct Wakers {
    /// With the slot's `wait` (see [`WaitState`]).
    first: Option<Waker>,
    // Boxed on purpose: 8 bytes in every slot instead of a vector's 24.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Waker>>>,
}

impl Wakers {
    /// Registers the local `waker` again where it is the one kept from its last wake-up
    /// (and no other task's waits): the usual case, with no clone. False (nothing
    /// registered) otherwise.
    #[inline]
    fn rearm_kept(&mut self, wait: &mut WaitState, waker: &Waker) -> bool {
        match &self.first {
            Some(w) if *wait != WaitState::Foreign && self.more.is_none() && w.will_wake(waker) => {
                *wait = WaitState::Local;
                true
            }
            _ => false,
        }
    }

    fn register(&mut self, wait: &mut WaitState, waker: &Waker, local: bool) {
        if !register_waiter(&mut self.first, wait, waker, local) {
            let more = self.more.get_or_insert_with(Box::default);
            if !more.iter().any(|w| w.will_wake(waker)) {
                more.push(waker.clone());
            }
        }
    }

    fn wake(&mut self, wait: &mut WaitState, out: &mut Vec<Waker>) {
        wake_waiter(&mut self.first, wait, out);
        if let Some(more) = self.more.as_mut() {
            out.append(more);
        }
    }
}

/// The completions of a multishot operation not yet polled, in order: nearly always at most
/// one, kept inline; a burst goes on to a queue that is allocated only then. Invariant: the
/// queue is empty while `first` is `None`.
#[derive(Default)]
pub(crate) struct Results {
    first: Option<Completion>,
    // Boxed on purpose: 8 bytes in every slot instead of a queue's 32.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Completion>>>,
}

impl Results {
    fn push_back(&mut self, c: Completion) {
        if self.first.is_none() {
            self.first = Some(c);
        } else {
            self.rest.get_or_insert_with(Box::default).push_back(c);
        }
    }

    fn push_front(&mut self, c: Completion) {
        if let Some(old) = self.first.replace(c) {
            self.rest.get_or_insert_with(Box::default).push_front(old);
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn pop_front(&mut self) -> Option<Completion> {
        let c = self.first.take()?;
        self.first = self.rest.as_mut().and_then(|r| r.pop_front());
        Some(c)
    }

    fn drain(&mut self) -> impl Iterator<Item = Completion> + '_ {
        self.first
            .take()
            .into_iter()
            .chain(self.rest.iter_mut().flat_map(|r| r.drain(..)))
    }
}

/// What the backend hands out to be released with no driver borrow held: wakers to call,
/// resources to free, and the buffers of completed posted sends with where each goes.
#[derive(Default)]
pub(crate) struct Deferred {
    pub(crate) wake: Vec<Waker>,
    pub(crate) drop_: Vec<Box<dyn Any>>,
    pub(crate) recycle: Vec<Recycled>,
}

impl Deferred {
    /// Wakes, frees and recycles everything in it, keeping the vectors' memory.
    pub(crate) fn release(&mut self) {
        // Each list only when it has something: the usual hand-over is one waker, and an
        // empty list's drain or clear is still a call and its drop glue.
        if !self.wake.is_empty() {
            for w in self.wake.drain(..) {
                w.wake();
            }
        }
        if !self.drop_.is_empty() {
            self.drop_.clear();
        }
        if !self.recycle.is_empty() {
            for (buf, recycle) in self.recycle.drain(..) {
                recycle(buf);
            }
        }
    }
}

/// Moves every item of `from` to the end of `to`: by swapping the two vectors when `to` is
/// empty (the usual hand-over: both keep their memory, nothing is copied), else by appending.
#[inline]
pub(crate) fn move_all<T>(to: &mut Vec<T>, from: &mut Vec<T>) {
    if to.is_empty() {
        std::mem::swap(to, from);
    } else {
        to.append(from);
    }
}

thread_local! {
    /// How many times a multishot operation's slot on this core has changed other than by
    /// its own stream's poll (see [`multi_epoch`]).
    static MULTI_EPOCH: Cell<u64> = const { Cell::new(0) };
}

/// This core's multishot epoch: it moves whenever a completion reaches a multishot
/// operation's slot (and when the table is abandoned at shutdown), and at no other time.
/// A stream that polled its slot and left its waker registered there ([`MultiPoll::Pending`]
/// or [`MultiPoll::Armed`]) knows, while the epoch has not moved, that nothing arrived since:
/// polled again with the same waker it is still pending, with no driver access
/// (`op::Multi::poll_next`). A connection that answers and then reads again does so within
/// one poll of its task, between two turns of the ring, so its second read of every request
/// is such a poll.
#[inline]
pub(crate) fn multi_epoch() -> u64 {
    MULTI_EPOCH.with(Cell::get)
}

fn bump_multi_epoch() {
    MULTI_EPOCH.with(|e| e.set(e.get() + 1));
}

/// What polling a multishot operation found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MultiPoll {
    /// The next completion.
    Item(Completion),
    /// The next completion, the last one queued, polled with a local waker: the waker is
    /// registered again at once (as the task's next poll would), so the next completion
    /// wakes the task in place even if it has not polled again by then, and that poll finds
    /// it armed (see [`multi_epoch`]).
    Armed(Completion),
    /// Nothing queued; the waker is registered.
    Pending,
    /// The stream has ended (its final completion was collected); the slot is free.
    Ended,
}

/// The table of operations in flight on one core.
pub(crate) struct OpTable {
    slots: Slab<Slot>,
    /// Set when the backend gave up waiting for the kernel at shutdown: the resources of an
    /// operation dropped later, with no slot left, are leaked, not freed.
    leak_orphans: bool,
    to_wake: Vec<Waker>,
    to_drop: Vec<Box<dyn Any>>,
    /// Buffers of completed posted sends, with where each goes.
    to_recycle: Vec<Recycled>,
    /// Posted sends cut short, whose rest the backend is to submit.
    resends: Vec<usize>,
    orphaned: Vec<Orphaned>,
}

impl OpTable {
    pub(crate) fn with_capacity(n: usize) -> Self {
        OpTable {
            slots: Slab::with_capacity(n),
            leak_orphans: false,
            to_wake: Vec::new(),
            to_drop: Vec::new(),
            to_recycle: Vec::new(),
            resends: Vec::new(),
            orphaned: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub(crate) fn keys(&self) -> Vec<usize> {
        self.slots.iter().map(|(k, _)| k).collect()
    }

    /// Opens a slot for a new operation; returns its key.
    pub(crate) fn insert(&mut self, orphan: Orphan, multi: bool, receive: bool) -> io::Result<usize> {
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        if key > MAX_OP_KEY {
            return Err(io::Error::other("operation table full"));
        }
        let state = if multi {
            Lifecycle::Multi {
                wakers: Wakers::default(),
                wait: WaitState::Idle,
                results: Results::default(),
                finished: false,
            }
        } else {
            Lifecycle::Submitted
        };
        entry.insert(Slot {
            state,
            orphan,
            receive,
        });
        Ok(key)
    }

    /// Posted sends cut short since the last call: the backend submits the rest of each
    /// ([`posted_rest`](Self::posted_rest)) under the same key.
    pub(crate) fn take_resends(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.resends)
    }

    /// Gives back the (emptied) list [`take_resends`](Self::take_resends) handed out, keeping
    /// its memory.
    pub(crate) fn put_back_resends(&mut self, mut keys: Vec<usize>) {
        keys.clear();
        if self.resends.is_empty() {
            self.resends = keys;
        }
    }

    /// Whether a posted send waits for its rest to be submitted.
    pub(crate) fn has_resends(&self) -> bool {
        !self.resends.is_empty()
    }

    /// The fd and the bytes posted send `key` still has to send, if there is such a send.
    pub(crate) fn posted_rest(&self, key: usize) -> Option<(i32, &[u8])> {
        match self.slots.get(key) {
            Some(Slot {
                state: Lifecycle::Posted(p),
                ..
            }) => Some((p.fd(), p.bytes())),
            _ => None,
        }
    }

    /// Opens a slot for a posted send; returns its key, or the send if the table is full.
    pub(crate) fn insert_posted(&mut self, posted: Posted) -> Result<usize, Posted> {
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        if key > MAX_OP_KEY {
            return Err(posted);
        }
        entry.insert(Slot {
            state: Lifecycle::Posted(posted),
            orphan: Orphan::Nothing,
            receive: false,
        });
        Ok(key)
    }

    /// The lane of posted send `key` is gone: the outcome goes nowhere. Returns true if the
    /// backend must cancel the request (it is still in the kernel).
    pub(crate) fn detach_posted(&mut self, key: usize) -> bool {
        match self.slots.get_mut(key) {
            Some(Slot {
                state: Lifecycle::Posted(p),
                ..
            }) => {
                p.detach();
                true
            }
            _ => false,
        }
    }

    /// Frees a slot whose request never reached the kernel.
    pub(crate) fn remove_unsubmitted(&mut self, key: usize) {
        if self.slots.contains(key) {
            self.slots.remove(key);
        }
    }

    /// True if the single-shot op `key` has its completion waiting.
    pub(crate) fn is_completed(&self, key: usize) -> bool {
        matches!(
            self.slots.get(key),
            Some(Slot {
                state: Lifecycle::Completed(..),
                ..
            })
        )
    }

    /// Polls a single-shot operation: its completion (the slot is freed), or `None` with the
    /// waker registered.
    pub(crate) fn poll_single(&mut self, key: usize, waker: &Waker) -> Option<Completion> {
        let slot = self.slots.get_mut(key)?;
        match &mut slot.state {
            Lifecycle::Completed(c) => {
                let c = *c;
                self.slots.remove(key);
                Some(c)
            }
            Lifecycle::Waiting(w) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                None
            }
            // No future polls a posted send (its outcome goes to its lane).
            Lifecycle::Posted(_) => None,
            state => {
                *state = Lifecycle::Waiting(waker.clone());
                None
            }
        }
    }

    /// Polls a multishot operation; `local`: `waker` is the polling task's own (see
    /// [`WaitState`]).
    pub(crate) fn poll_multi(&mut self, key: usize, waker: &Waker, local: bool) -> MultiPoll {
        let Some(Slot {
            state:
                Lifecycle::Multi {
                    wakers,
                    wait,
                    results,
                    finished,
                },
            ..
        }) = self.slots.get_mut(key)
        else {
            return MultiPoll::Ended;
        };
        if let Some(c) = results.pop_front() {
            if local && !*finished && results.is_empty() && wakers.rearm_kept(wait, waker) {
                return MultiPoll::Armed(c);
            }
            return MultiPoll::Item(c);
        }
        if *finished {
            self.slots.remove(key);
            return MultiPoll::Ended;
        }
        wakers.register(wait, waker, local);
        MultiPoll::Pending
    }

    /// The next completion of a multishot operation if one has arrived; no waker is
    /// registered (the caller polls as usual when this finds none).
    pub(crate) fn try_multi(&mut self, key: usize) -> Option<Completion> {
        match self.slots.get_mut(key) {
            Some(Slot {
                state: Lifecycle::Multi { results, .. },
                ..
            }) => results.pop_front(),
            _ => None,
        }
    }

    /// Puts a multishot completion back at the front of its queue (the task had to yield).
    pub(crate) fn unpoll_multi(&mut self, key: usize, c: Completion) {
        if let Some(Slot {
            state: Lifecycle::Multi { results, .. },
            ..
        }) = self.slots.get_mut(key)
        {
            results.push_front(c);
        }
    }

    /// The future of operation `key` was dropped: keep `data` alive until the kernel is done.
    ///
    /// Returns true if the backend must cancel the request (it is still in the kernel).
    pub(crate) fn drop_op(&mut self, key: usize, data: Option<Box<dyn Any>>) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            if self.leak_orphans {
                std::mem::forget(data);
            } else {
                self.to_drop.extend(data);
            }
            return false;
        };
        let orphan = slot.orphan;
        match &mut slot.state {
            Lifecycle::Completed(c) => {
                let c = *c;
                self.slots.remove(key);
                self.orphaned.push(Orphaned {
                    orphan,
                    completion: c,
                });
                self.to_drop.extend(data);
                false
            }
            Lifecycle::Multi {
                results, finished, ..
            } => {
                let finished = *finished;
                self.orphaned
                    .extend(results.drain().map(|completion| Orphaned { orphan, completion }));
                if finished {
                    self.slots.remove(key);
                    self.to_drop.extend(data);
                    false
                } else {
                    slot.state = Lifecycle::Ignored(data);
                    true
                }
            }
            // Dropped twice: cannot happen (the future is gone after the first drop).
            Lifecycle::Ignored(_) => false,
            // No future owns a posted send (its lane lets go with `detach_posted`).
            Lifecycle::Posted(_) => {
                self.to_drop.extend(data);
                false
            }
            Lifecycle::Submitted | Lifecycle::Waiting(_) => {
                slot.state = Lifecycle::Ignored(data);
                true
            }
        }
    }

    /// True if `key` is a multishot operation whose future is alive (a receive that picks
    /// provided buffers, or an accept).
    pub(crate) fn is_multi(&self, key: usize) -> bool {
        matches!(
            self.slots.get(key),
            Some(Slot {
                state: Lifecycle::Multi { .. },
                ..
            })
        )
    }

    /// Files a completion for operation `key`.
    pub(crate) fn complete(&mut self, key: usize, c: Completion) {
        self.complete_counted(key, c);
    }

    /// [`complete`](Self::complete), and says whether the completion brought bytes to a
    /// receive (what the io_uring driver counts for `driver::quiet`).
    pub(crate) fn complete_counted(&mut self, key: usize, c: Completion) -> bool {
        let Some(slot) = self.slots.get_mut(key) else {
            // No such operation: return what the completion carries.
            self.orphaned.push(Orphaned {
                orphan: Orphan::Nothing,
                completion: c,
            });
            return false;
        };
        let orphan = slot.orphan;
        let received = slot.receive && matches!(c.result, Ok(n) if n > 0);
        match &mut slot.state {
            Lifecycle::Submitted => slot.state = Lifecycle::Completed(c),
            Lifecycle::Waiting(_) => {
                if let Lifecycle::Waiting(w) = std::mem::replace(&mut slot.state, Lifecycle::Completed(c)) {
                    self.to_wake.push(w);
                }
            }
            // A second completion for a single-shot op: return what it carries.
            Lifecycle::Completed(_) => self.orphaned.push(Orphaned {
                orphan,
                completion: c,
            }),
            Lifecycle::Multi {
                wakers,
                wait,
                results,
                finished,
            } => {
                bump_multi_epoch();
                results.push_back(c);
                if !c.more() {
                    *finished = true;
                }
                wakers.wake(wait, &mut self.to_wake);
            }
            Lifecycle::Posted(p) => {
                if p.short(c) {
                    // Cut short with the lane still there: the backend sends the rest.
                    self.resends.push(key);
                } else if let Lifecycle::Posted(p) = self.slots.remove(key).state {
                    let (waker, buf) = p.finish(c);
                    self.to_wake.extend(waker);
                    self.to_recycle.push(buf);
                }
            }
            Lifecycle::Ignored(_) => {
                if !c.more() {
                    if let Lifecycle::Ignored(data) = self.slots.remove(key).state {
                        self.to_drop.extend(data);
                    }
                }
                self.orphaned.push(Orphaned {
                    orphan,
                    completion: c,
                });
            }
        }
        received
    }

    /// Whether [`take_orphaned`](Self::take_orphaned) has anything to hand over.
    #[inline]
    pub(crate) fn has_orphaned(&self) -> bool {
        !self.orphaned.is_empty()
    }

    /// Completions that reached no future since the last call, for the backend to dispose of.
    pub(crate) fn take_orphaned(&mut self) -> std::vec::Drain<'_, Orphaned> {
        self.orphaned.drain(..)
    }

    /// Wakers to call and resources to free, taken out so the caller can release them with
    /// no driver borrow held (a dropped resource may itself use the driver).
    /// Whether [`take_deferred`](Self::take_deferred) has anything to hand over.
    pub(crate) fn has_deferred(&self) -> bool {
        !self.to_wake.is_empty() || !self.to_drop.is_empty() || !self.to_recycle.is_empty()
    }

    pub(crate) fn take_deferred(&mut self, out: &mut Deferred) {
        move_all(&mut out.wake, &mut self.to_wake);
        move_all(&mut out.drop_, &mut self.to_drop);
        move_all(&mut out.recycle, &mut self.to_recycle);
    }

    /// At shutdown, after the backend gave up waiting: empties the table and returns the
    /// resources of operations still in the kernel (to be leaked, never freed). Operations
    /// dropped after this leak their resources too.
    pub(crate) fn abandon(&mut self) -> Vec<Box<dyn Any>> {
        bump_multi_epoch();
        if !self.slots.is_empty() {
            self.leak_orphans = true;
        }
        let mut leaked = Vec::new();
        for slot in self.slots.drain() {
            match slot.state {
                Lifecycle::Ignored(Some(data)) => leaked.push(data),
                Lifecycle::Posted(p) => leaked.push(Box::new(p)),
                _ => {}
            }
        }
        leaked
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream;
    use std::rc::Rc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    use super::*;

    struct CountWake(AtomicUsize);

    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountWake>, Waker) {
        let w = Arc::new(CountWake(AtomicUsize::new(0)));
        (w.clone(), Waker::from(w))
    }

    fn wake_all(t: &mut OpTable) -> usize {
        let mut d = Deferred::default();
        t.take_deferred(&mut d);
        let n = d.wake.len();
        d.wake.into_iter().for_each(Waker::wake);
        n
    }

    fn dropped(t: &mut OpTable) -> Vec<Box<dyn Any>> {
        let mut d = Deferred::default();
        t.take_deferred(&mut d);
        d.drop_
    }

    fn ok(n: u32) -> Completion {
        Completion::new(Ok(n))
    }

    #[test]
    fn raw_results_are_typed_at_the_boundary() {
        let c = Completion::from_raw(-libc::ENOBUFS, 0);
        assert_eq!(c.result, Err(Errno(libc::ENOBUFS)));
        assert_eq!(
            c.io_result().map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENOBUFS))
        );
        let c = Completion::from_raw(42, F_MORE | F_BUFFER | (7 << BUFFER_SHIFT));
        assert_eq!(c.result, Ok(42));
        assert!(c.more());
        assert_eq!(c.buffer_id(), Some(7));
        assert_eq!(Completion::from_raw(0, 0).buffer_id(), None);
        assert!(!Completion::from_raw(0, 0).more());
    }

    /// A connection holds a slot for its multishot receive for as long as it lives, and the
    /// slab keeps every slot at the size of the largest state: keep it to a cache line.
    #[test]
    fn an_op_slot_fits_a_cache_line() {
        assert!(
            std::mem::size_of::<Slot>() <= 64,
            "{}",
            std::mem::size_of::<Slot>()
        );
    }

    #[test]
    fn a_multishot_queue_keeps_order_through_a_burst_and_a_put_back() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, true, false).expect("slot");
        let (_, w) = waker();
        for n in 1..=4 {
            t.complete(key, Completion::from_raw(n, F_MORE));
        }
        let MultiPoll::Item(first) = t.poll_multi(key, &w, false) else {
            panic!("a completion is queued");
        };
        assert_eq!(first.result, Ok(1));
        // The task had to yield: the completion goes back in front of the rest.
        t.unpoll_multi(key, first);
        let mut got = Vec::new();
        while let MultiPoll::Item(c) = t.poll_multi(key, &w, false) {
            got.push(c.result);
        }
        assert_eq!(got, vec![Ok(1), Ok(2), Ok(3), Ok(4)]);
        t.complete(key, Completion::from_raw(5, F_MORE));
        assert_eq!(
            t.poll_multi(key, &w, false),
            MultiPoll::Item(Completion::from_raw(5, F_MORE))
        );
    }

    #[test]
    fn every_task_waiting_on_a_multishot_op_is_woken() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, true, false).expect("slot");
        let (a, wa) = waker();
        let (b, wb) = waker();
        assert_eq!(t.poll_multi(key, &wa, false), MultiPoll::Pending);
        assert_eq!(t.poll_multi(key, &wb, false), MultiPoll::Pending);
        assert_eq!(
            t.poll_multi(key, &wa, false),
            MultiPoll::Pending,
            "registered once"
        );
        t.complete(key, Completion::from_raw(1, F_MORE));
        assert_eq!(wake_all(&mut t), 2);
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 1);
        // Woken wakers are not kept: the next completion wakes only who polled again.
        assert_eq!(
            t.poll_multi(key, &wb, false),
            MultiPoll::Item(Completion::from_raw(1, F_MORE))
        );
        assert_eq!(t.poll_multi(key, &wb, false), MultiPoll::Pending);
        t.complete(key, Completion::from_raw(2, F_MORE));
        assert_eq!(wake_all(&mut t), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_local_waker_is_woken_in_place_and_kept_with_no_clone_per_completion() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, true, false).expect("slot");
        let (count, w) = waker();
        assert_eq!(Arc::strong_count(&count), 2);
        assert_eq!(t.poll_multi(key, &w, true), MultiPoll::Pending);
        assert_eq!(Arc::strong_count(&count), 3, "the first registration clones");
        for n in 1..=100 {
            t.complete(key, Completion::from_raw(n, F_MORE));
            assert_eq!(
                count.0.load(Ordering::SeqCst),
                n as usize,
                "woken at the completion"
            );
            assert_eq!(wake_all(&mut t), 0, "nothing handed out to wake later");
            // The last completion queued: taken with the waker armed again at once.
            assert_eq!(
                t.poll_multi(key, &w, true),
                MultiPoll::Armed(Completion::from_raw(n, F_MORE))
            );
            assert_eq!(t.poll_multi(key, &w, true), MultiPoll::Pending);
            assert_eq!(Arc::strong_count(&count), 3, "kept, not cloned again");
        }
        // Woken and not polled since: the next completions wake nobody.
        t.complete(key, Completion::from_raw(101, F_MORE));
        t.complete(key, Completion::from_raw(102, F_MORE));
        assert_eq!(count.0.load(Ordering::SeqCst), 101);
        // Another one queued behind it: not armed.
        assert_eq!(
            t.poll_multi(key, &w, true),
            MultiPoll::Item(Completion::from_raw(101, F_MORE))
        );
        assert_eq!(count.0.load(Ordering::SeqCst), 101);
        assert_eq!(
            t.poll_multi(key, &w, true),
            MultiPoll::Armed(Completion::from_raw(102, F_MORE))
        );
        // Armed with the last one: the next completion wakes the task although it has not
        // polled since.
        t.complete(key, Completion::from_raw(103, F_MORE));
        assert_eq!(count.0.load(Ordering::SeqCst), 102);
        assert_eq!(
            t.poll_multi(key, &w, true),
            MultiPoll::Armed(Completion::from_raw(103, F_MORE))
        );
        // A foreign waker is never armed with a completion.
        t.complete(key, Completion::from_raw(104, F_MORE));
        assert_eq!(count.0.load(Ordering::SeqCst), 103);
        assert_eq!(
            t.poll_multi(key, &w, false),
            MultiPoll::Item(Completion::from_raw(104, F_MORE))
        );
        // The final completion ends the stream and frees the slot with the kept waker.
        assert_eq!(t.poll_multi(key, &w, true), MultiPoll::Pending);
        t.complete(key, ok(0));
        assert_eq!(count.0.load(Ordering::SeqCst), 104);
        assert_eq!(
            t.poll_multi(key, &w, true),
            MultiPoll::Item(ok(0)),
            "final: not armed"
        );
        assert_eq!(t.poll_multi(key, &w, true), MultiPoll::Ended);
        assert!(t.is_empty());
        assert_eq!(Arc::strong_count(&count), 2, "the kept waker went with the slot");
    }

    /// A stream that left its waker armed may skip the driver while the epoch stands still:
    /// every completion that reaches a multishot slot must move it (and only those).
    #[test]
    fn the_multishot_epoch_moves_with_every_completion_of_a_multishot_op() {
        let mut t = OpTable::with_capacity(4);
        let multi = t.insert(Orphan::Nothing, true, false).expect("slot");
        let single = t.insert(Orphan::Nothing, false, false).expect("slot");
        let (_, w) = waker();
        assert_eq!(t.poll_multi(multi, &w, true), MultiPoll::Pending);
        let armed = multi_epoch();
        t.complete(single, ok(1));
        assert_eq!(multi_epoch(), armed, "another op's completion");
        t.complete(multi, Completion::from_raw(1, F_MORE));
        assert_ne!(multi_epoch(), armed, "the multishot op's completion");
        let next = multi_epoch();
        assert_eq!(
            t.poll_multi(multi, &w, true),
            MultiPoll::Armed(Completion::from_raw(1, F_MORE))
        );
        assert_eq!(multi_epoch(), next, "its own poll");
        t.complete(multi, ok(0));
        assert_ne!(multi_epoch(), next, "its final completion");
        let last = multi_epoch();
        let _ = t.abandon();
        assert_ne!(multi_epoch(), last, "the table abandoned");
    }

    #[test]
    fn a_foreign_waker_is_handed_out_to_wake_and_not_kept() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, true, false).expect("slot");
        let (count, w) = waker();
        for n in 1..=3 {
            assert_eq!(t.poll_multi(key, &w, false), MultiPoll::Pending);
            assert_eq!(Arc::strong_count(&count), 3);
            t.complete(key, Completion::from_raw(n, F_MORE));
            assert_eq!(
                count.0.load(Ordering::SeqCst),
                n as usize - 1,
                "not woken in place"
            );
            assert_eq!(wake_all(&mut t), 1);
            assert_eq!(count.0.load(Ordering::SeqCst), n as usize);
            assert_eq!(Arc::strong_count(&count), 2, "taken, not kept");
            assert_eq!(
                t.poll_multi(key, &w, false),
                MultiPoll::Item(Completion::from_raw(n, F_MORE))
            );
        }
    }

    #[test]
    fn another_task_takes_the_place_of_a_kept_waker_that_no_longer_waits() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, true, false).expect("slot");
        let (a, wa) = waker();
        let (b, wb) = waker();
        assert_eq!(t.poll_multi(key, &wa, true), MultiPoll::Pending);
        t.complete(key, Completion::from_raw(1, F_MORE));
        assert_eq!(a.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            t.poll_multi(key, &wb, false),
            MultiPoll::Item(Completion::from_raw(1, F_MORE))
        );
        // `a` is kept but does not wait; `b` waits now, in its place.
        assert_eq!(t.poll_multi(key, &wb, false), MultiPoll::Pending);
        assert_eq!(Arc::strong_count(&a), 2, "the kept waker was let go");
        t.complete(key, Completion::from_raw(2, F_MORE));
        assert_eq!(wake_all(&mut t), 1);
        assert_eq!((a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)), (1, 1));
        // Both waiting: the first local, the second beside it; both woken.
        assert_eq!(
            t.poll_multi(key, &wb, false),
            MultiPoll::Item(Completion::from_raw(2, F_MORE))
        );
        assert_eq!(t.poll_multi(key, &wa, true), MultiPoll::Pending);
        assert_eq!(t.poll_multi(key, &wb, false), MultiPoll::Pending);
        t.complete(key, Completion::from_raw(3, F_MORE));
        assert_eq!(a.0.load(Ordering::SeqCst), 2, "the local one in place");
        assert_eq!(wake_all(&mut t), 1);
        assert_eq!(b.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_polled_op_is_woken_once_and_collects_its_completion() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, false, false).expect("slot");
        let (count, w) = waker();
        assert_eq!(t.poll_single(key, &w), None);
        assert!(!t.is_completed(key));
        t.complete(key, ok(5));
        assert!(t.is_completed(key));
        assert_eq!(wake_all(&mut t), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(t.poll_single(key, &w), Some(ok(5)));
        assert!(t.is_empty(), "collecting the completion frees the slot");
        assert_eq!(t.take_orphaned().count(), 0);
    }

    #[test]
    fn drop_before_completion_keeps_resources_until_the_completion() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, false, false).expect("slot");
        let (_, w) = waker();
        assert_eq!(t.poll_single(key, &w), None);
        let buffer = Rc::new(vec![0u8; 64]);
        assert!(
            t.drop_op(key, Some(Box::new(buffer.clone()))),
            "an op in flight is cancelled"
        );
        assert!(
            dropped(&mut t).is_empty(),
            "the kernel may still write the buffer"
        );
        assert_eq!(Rc::strong_count(&buffer), 2);
        assert_eq!(t.len(), 1);
        t.complete(key, Completion::from_raw(-libc::ECANCELED, 0));
        assert!(t.is_empty());
        assert_eq!(wake_all(&mut t), 0, "nobody waits for a dropped op");
        drop(dropped(&mut t));
        assert_eq!(Rc::strong_count(&buffer), 1, "freed on the completion");
    }

    #[test]
    fn drop_after_completion_frees_at_once_without_cancel() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, false, false).expect("slot");
        t.complete(key, ok(3));
        assert!(!t.drop_op(key, Some(Box::new(1u8))));
        assert!(t.is_empty());
        assert_eq!(dropped(&mut t).len(), 1);
    }

    #[test]
    fn only_a_receive_that_brought_bytes_counts_as_received() {
        let mut t = OpTable::with_capacity(8);
        let recv = t.insert(Orphan::Nothing, false, true).expect("slot");
        assert!(t.complete_counted(recv, ok(5)), "bytes");
        let eof = t.insert(Orphan::Nothing, false, true).expect("slot");
        assert!(!t.complete_counted(eof, ok(0)), "end of stream");
        let failed = t.insert(Orphan::Nothing, false, true).expect("slot");
        assert!(
            !t.complete_counted(failed, Completion::new(Err(Errno(libc::ECONNRESET)))),
            "error"
        );
        let multi = t.insert(Orphan::Nothing, true, true).expect("slot");
        assert!(
            t.complete_counted(multi, ok(7).with_buffer(3).with_more()),
            "multishot bytes"
        );
        let send = t.insert(Orphan::Nothing, false, false).expect("slot");
        assert!(!t.complete_counted(send, ok(9)), "a send");
        assert!(!t.complete_counted(1000, ok(9)), "no such op");
    }

    #[test]
    fn late_completion_carrying_an_fd_is_closed() {
        let (ours, peer) = UnixStream::pair().expect("socketpair");
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::CloseFd, false, false).expect("slot");
        assert!(t.drop_op(key, None));
        // The "accepted" fd arrives after the future is gone.
        t.complete(key, ok(peer.into_raw_fd() as u32));
        let orphans: Vec<_> = t.take_orphaned().collect();
        assert_eq!(orphans.len(), 1);
        for o in orphans {
            o.dispose(None);
        }
        // The other end sees EOF: the fd was closed, not leaked.
        let mut ours = ours;
        ours.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut b = [0u8; 1];
        assert_eq!(ours.read(&mut b).expect("read"), 0);
    }

    #[test]
    fn a_failed_late_completion_closes_nothing() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::CloseFd, false, false).expect("slot");
        assert!(t.drop_op(key, None));
        t.complete(key, Completion::from_raw(-libc::ECANCELED, 0));
        let orphans: Vec<_> = t.take_orphaned().collect();
        assert_eq!(orphans[0].completion.result, Err(Errno(libc::ECANCELED)));
        // dispose must not call close(-ECANCELED as fd) or close(0).
        orphans[0].dispose(None);
    }

    #[test]
    fn late_completion_carrying_a_provided_buffer_is_returned() {
        let ring = io_uring::IoUring::new(8).expect("io_uring");
        let bufs = BufRing::new(&ring, 4, 64).expect("buffer ring");
        assert_eq!(bufs.out(), 0, "all buffers start in the ring");
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, true, false).expect("slot");
        assert!(t.drop_op(key, None), "a live multishot is cancelled");
        // The kernel filled buffer 2 before it saw the cancel.
        bufs.taken();
        t.complete(key, ok(10).with_buffer(2).with_more());
        assert_eq!(t.len(), 1, "more completions follow: the slot stays");
        for o in t.take_orphaned() {
            o.dispose(Some(&bufs));
        }
        assert_eq!(bufs.out(), 0, "the buffer went back to the ring");
        t.complete(key, Completion::from_raw(-libc::ECANCELED, 0));
        assert!(t.is_empty(), "the final completion frees the slot");
        bufs.unregister(&ring);
    }

    #[test]
    fn multishot_queues_completions_until_the_final_one() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, true, false).expect("slot");
        let (count, w) = waker();
        assert_eq!(t.poll_multi(key, &w, false), MultiPoll::Pending);
        t.complete(key, ok(1).with_more());
        t.complete(key, ok(2).with_more());
        assert_eq!(wake_all(&mut t), 1, "the waker is taken once");
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(t.poll_multi(key, &w, false), MultiPoll::Item(ok(1).with_more()));
        // A task that had to yield puts its item back in front.
        let second = ok(2).with_more();
        assert_eq!(t.poll_multi(key, &w, false), MultiPoll::Item(second));
        t.unpoll_multi(key, second);
        assert_eq!(t.poll_multi(key, &w, false), MultiPoll::Item(second));
        assert_eq!(t.poll_multi(key, &w, false), MultiPoll::Pending);
        t.complete(key, Completion::from_raw(-libc::ENOBUFS, 0));
        assert_eq!(wake_all(&mut t), 1);
        assert_eq!(
            t.poll_multi(key, &w, false),
            MultiPoll::Item(Completion::from_raw(-libc::ENOBUFS, 0))
        );
        assert_eq!(t.len(), 1, "the final item is collected before the slot is freed");
        assert_eq!(t.poll_multi(key, &w, false), MultiPoll::Ended);
        assert!(t.is_empty());
        assert_eq!(t.poll_multi(key, &w, false), MultiPoll::Ended, "stays ended");
    }

    #[test]
    fn dropping_a_multishot_returns_its_queued_completions() {
        let (ours, peer) = UnixStream::pair().expect("socketpair");
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::CloseFd, true, false).expect("slot");
        t.complete(key, ok(peer.into_raw_fd() as u32).with_more());
        assert!(t.drop_op(key, Some(Box::new(7u8))), "still armed: cancel it");
        let orphans: Vec<_> = t.take_orphaned().collect();
        assert_eq!(orphans.len(), 1, "the queued accept nobody will collect");
        orphans.into_iter().for_each(|o| o.dispose(None));
        let mut ours = ours;
        ours.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert_eq!(ours.read(&mut [0u8; 1]).expect("read"), 0, "its fd was closed");
        assert!(dropped(&mut t).is_empty(), "kept until the final completion");
        t.complete(key, Completion::from_raw(-libc::ECANCELED, 0));
        assert!(t.is_empty());
        assert_eq!(dropped(&mut t).len(), 1);
    }

    #[test]
    fn cancel_of_a_finished_multishot_frees_at_once() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, true, false).expect("slot");
        t.complete(key, ok(0));
        assert!(!t.drop_op(key, Some(Box::new(1u8))), "nothing left in the kernel");
        assert!(t.is_empty());
        assert_eq!(t.take_orphaned().count(), 1);
        assert_eq!(dropped(&mut t).len(), 1);
    }

    #[test]
    fn a_completion_for_no_slot_still_returns_its_buffer() {
        let mut t = OpTable::with_capacity(4);
        t.complete(3, ok(5).with_buffer(1));
        let o: Vec<_> = t.take_orphaned().collect();
        assert_eq!(o[0].completion.buffer_id(), Some(1));
        assert_eq!(o[0].orphan, Orphan::Nothing);
    }

    #[test]
    fn abandoned_resources_are_handed_out_and_later_drops_leak() {
        let mut t = OpTable::with_capacity(4);
        let key = t.insert(Orphan::Nothing, false, false).expect("slot");
        let buffer = Rc::new(1u8);
        assert!(t.drop_op(key, Some(Box::new(buffer.clone()))));
        let other = t.insert(Orphan::Nothing, false, false).expect("slot");
        let leaked = t.abandon();
        assert_eq!(leaked.len(), 1);
        assert!(t.is_empty());
        std::mem::forget(leaked);
        let late = Rc::new(2u8);
        assert!(!t.drop_op(other, Some(Box::new(late.clone()))));
        assert!(
            dropped(&mut t).is_empty(),
            "not freed: the kernel may still use it"
        );
        assert_eq!(Rc::strong_count(&late), 2);
    }

    thread_local! {
        static RECYCLED: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn recycle(buf: Vec<u8>) {
        RECYCLED.with(|r| r.borrow_mut().push(buf));
    }

    /// A posted send of `bytes` on a socket of its own, and its lane.
    fn posted(bytes: &[u8]) -> (Posted, Rc<super::super::posted::Lane>) {
        let (a, _b) = UnixStream::pair().expect("pair");
        let fd = crate::fd::SharedFd::new(a.into_raw_fd());
        let lane = super::super::posted::Lane::new(recycle);
        (Posted::new(bytes.to_vec(), fd, lane.clone()), lane)
    }

    fn recycle_all(t: &mut OpTable) -> usize {
        let mut d = Deferred::default();
        t.take_deferred(&mut d);
        let n = d.recycle.len();
        d.release();
        n
    }

    #[test]
    fn a_posted_send_leaves_its_outcome_in_the_lane_and_its_buffer_for_the_pool() {
        use super::super::posted::LaneState;
        let mut t = OpTable::with_capacity(4);
        let (p, lane) = posted(b"hello");
        let key = t.insert_posted(p).ok().expect("slot");
        assert_eq!(
            t.poll_single(key, &waker().1),
            None,
            "no future polls a posted send"
        );
        t.complete(key, ok(5));
        assert_eq!(lane.state.get(), LaneState::Idle, "all sent");
        assert!(t.is_empty(), "the slot is freed");
        assert_eq!(recycle_all(&mut t), 1);
        assert_eq!(RECYCLED.with(|r| r.borrow_mut().pop()), Some(b"hello".to_vec()));

        let (p, lane) = posted(b"doomed");
        let key = t.insert_posted(p).ok().expect("slot");
        t.complete(key, Completion::new(Err(Errno(libc::EPIPE))));
        assert_eq!(lane.state.get(), LaneState::Failed(Some(Errno(libc::EPIPE))));
        assert_eq!(recycle_all(&mut t), 1, "a failed send's buffer comes back too");
    }

    #[test]
    fn a_short_posted_send_is_sent_on_from_where_it_stopped() {
        use super::super::posted::LaneState;
        let mut t = OpTable::with_capacity(4);
        let (p, lane) = posted(b"0123456789");
        let key = t.insert_posted(p).ok().expect("slot");
        t.complete(key, ok(4));
        assert_eq!(t.take_resends(), vec![key], "the rest is to be submitted");
        assert_eq!(
            t.posted_rest(key).map(|(_, rest)| rest.to_vec()),
            Some(b"456789".to_vec())
        );
        assert_eq!(recycle_all(&mut t), 0, "the buffer stays in the slot");
        t.complete(key, ok(6));
        assert_eq!(lane.state.get(), LaneState::Idle, "4 + 6 bytes: all of it");
        assert_eq!(recycle_all(&mut t), 1);
        assert!(t.posted_rest(key).is_none());

        // A completion with no byte sent is a failure, not a resend.
        let (p, lane) = posted(b"abc");
        let key = t.insert_posted(p).ok().expect("slot");
        t.complete(key, ok(0));
        assert!(t.take_resends().is_empty());
        assert_eq!(lane.state.get(), LaneState::Failed(None));
        assert_eq!(recycle_all(&mut t), 1);
    }

    #[test]
    fn a_detached_posted_send_is_cancelled_and_still_gives_its_buffer_back() {
        use super::super::posted::LaneState;
        let mut t = OpTable::with_capacity(4);
        let (p, lane) = posted(b"0123456789");
        let key = t.insert_posted(p).ok().expect("slot");
        lane.state.set(LaneState::InFlight(key));
        assert!(t.detach_posted(key), "still in the kernel: cancel it");
        // Cut short by the cancel: nobody waits, so no resend.
        t.complete(key, ok(3));
        assert!(t.take_resends().is_empty());
        assert_eq!(lane.state.get(), LaneState::InFlight(key), "the lane is not told");
        assert_eq!(recycle_all(&mut t), 1);
        assert!(t.is_empty());
        assert!(!t.detach_posted(key), "nothing left to cancel");
    }

    #[test]
    fn abandoning_the_table_leaks_a_posted_send_still_in_the_kernel() {
        let mut t = OpTable::with_capacity(4);
        let (p, _lane) = posted(b"in flight");
        t.insert_posted(p).ok().expect("slot");
        let leaked = t.abandon();
        assert_eq!(leaked.len(), 1, "its buffer is handed out to be leaked");
        std::mem::forget(leaked);
        assert_eq!(recycle_all(&mut t), 0);
    }
}
