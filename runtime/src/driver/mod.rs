//! The I/O driver: one io_uring per core, and the table of operations in flight.
//!
//! # The seam
//!
//! The rest of the crate sees the driver only through this module's crate-internal API:
//! operation futures built by the functions in [`op`] (`op::recv(fd, buf)`,
//! `op::send(fd, buf, offset)`, `op::openat(..)`, ...), the receive and accept streams
//! ([`RecvStream`], [`AcceptStream`]: "the next received bytes", "the next connection"),
//! typed [`Completion`]s, and [`Driver::turn`] (submit, wait up to a deadline, complete).
//! `net/`, `fs/`, `time/` and `mesh/` never name an io_uring type. A readiness (epoll)
//! backend for machines where io_uring is blocked would implement the same items
//! (`docs/ARCHITECTURE.md`, "The driver seam", lists them); the public API would not change.
//!
//! # Operation life
//!
//! Every in-flight operation has a slot in the per-core [`lifecycle::OpTable`] (a pure state
//! machine, unit-tested with fabricated completions); the slot key is the SQE's `user_data`.
//! Completions enter it already typed ([`Completion`]: `Result<u32, Errno>` + flags), so
//! nothing above the driver sees a raw `(i32, u32)`. The future that submitted an operation
//! ([`op::Op`]) owns its resources (fd handle, buffer, sockaddr). If the future is dropped
//! before the completion arrives, the resources move into the slot (`Lifecycle::Ignored`)
//! and an `ASYNC_CANCEL` is submitted;
//! the slot, and with it the resources, is freed only when the kernel's last completion for it
//! arrives. A late completion that carries an fd (accept) closes it; one that carries a
//! provided buffer returns it to the ring.

mod accept_stream;
mod backend;
mod blocking;
pub(crate) mod buf_ring;
pub(crate) mod epoll;
mod lifecycle;
pub(crate) mod op;
pub(crate) mod posted;
mod recv_buf;
mod recv_stream;
pub(crate) mod uring;

use std::any::Any;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use crate::shared::ShardRemote;
use crate::stats;
pub(crate) use accept_stream::AcceptStream;
pub(crate) use backend::Driver;
use buf_ring::BufRing;
pub(crate) use lifecycle::{multi_epoch, Completion, Deferred, Errno, MultiPoll, Orphan};
use lifecycle::{OpTable, MAX_OP_KEY};
use posted::Posted;
pub use recv_buf::RecvBuf;
pub(crate) use recv_stream::RecvStream;
pub use recv_stream::FALLBACK_RECV_SIZE;
pub(crate) use uring::Features;

/// A ring turn in which at most this many receives (multishot into the provided buffer ring,
/// or single-shot into a buffer of their own) brought bytes leaves the core quiet: a send
/// then goes out at once (`SendMode::WhenQuiet`). Receives reaped between turns (a full
/// submission queue makes a push reap) count towards the next turn.
///
/// Only receives count: they are what wakes tasks that answer. A turn that collected only
/// the completions of the sends a busy turn put in the ring is quiet (until 2026-12-01 every
/// completion counted, so the ring's own sends could keep a core "busy").
///
/// Eight, not two: on the 2-core VM at 53,000 answers/s (20% of one core, 64 connections)
/// two sent half the answers through the ring (0.52 send SQEs and 1.53 completions per
/// answer, the runtime's counters), each a second completion and a second poll of its task;
/// eight sends 2% of them (1.03 completions per answer), and in the closed loop, where a
/// turn collects 20 to 50 receives, both send everything through the ring. Server CPU per
/// answer, eight against two, in six interleaved runs (`scripts/cpu-per-request.sh`, 5-7
/// rounds each): 2-5% less at 53,000/s in four, level at 120,000/s and in the closed loop.
const QUIET_RECEIVES: usize = 8;

thread_local! {
    /// Whether in this core's last ring turn at most [`QUIET_RECEIVES`] receives brought
    /// bytes (the io_uring driver sets it).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Whether this core is quiet (see [`QUIET_RECEIVES`]).
pub(crate) fn quiet() -> bool {
    QUIET.with(std::cell::Cell::get)
}

/// How a stream's sends are made (`Builder::speculative_send`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendMode {
    /// Every send is an operation.
    Op,
    /// One non-blocking `send` first; an operation only if it would block.
    Now,
    /// `Now` while the core is quiet ([`quiet`]), `Op` while it is busy.
    WhenQuiet,
}

impl SendMode {
    /// Whether a send made now is tried at once.
    #[inline]
    pub(crate) fn now(self) -> bool {
        match self {
            SendMode::Op => false,
            SendMode::Now => true,
            SendMode::WhenQuiet => quiet(),
        }
    }
}

/// `user_data` of the `ASYNC_CANCEL` requests we submit; their completions are ignored.
const CANCEL_USER_DATA: u64 = u64::MAX;
/// `user_data` of the read on the shard's wake-up eventfd.
const EVENTFD_USER_DATA: u64 = u64::MAX - 1;
const _: () = assert!(EVENTFD_USER_DATA > MAX_OP_KEY as u64);

/// How long a loop turn may wait in the ring.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Submit and collect what is ready; do not block.
    No,
    /// Block until a completion arrives or the deadline passes (`None`: no deadline). A
    /// relative timeout runs from `now`, the caller's clock read; where the ring takes
    /// absolute deadlines (`parks_on_absolute_deadline`) `now` may be older, and only a
    /// deadline before it skips the wait.
    Until { deadline: Option<Instant>, now: Instant },
}

/// The io_uring backend of [`Driver`].
pub(crate) struct UringDriver {
    ring: IoUring,
    pub(in crate::driver) ops: OpTable,
    features: Features,
    buf_ring: Option<Rc<BufRing>>,
    eventfd: i32,
    eventfd_buf: Box<[u8; 8]>,
    eventfd_armed: bool,
    /// Set by `shutdown`: the eventfd read is not re-armed any more.
    closing: bool,
    /// Completions that brought bytes to a receive since the last turn's end (for `QUIET`).
    received: usize,
    /// Set when the kernel takes absolute ring timeouts (`Features::abs_timer`): a park then
    /// needs no clock read.
    clock: Option<uring::RingClock>,
}

impl UringDriver {
    pub(crate) fn new(
        remote: &ShardRemote,
        entries: u32,
        portable: bool,
        buf_entries: u16,
        buf_size: u32,
    ) -> io::Result<Self> {
        let (ring, mut features) = uring::build(entries, portable)?;
        let buf_ring = if features.multishot_recv {
            match BufRing::new(&ring, buf_entries, buf_size) {
                Ok(b) => Some(Rc::new(b)),
                Err(_) => {
                    features.multishot_recv = false;
                    None
                }
            }
        } else {
            None
        };
        let mut driver = Self {
            ring,
            ops: OpTable::with_capacity(usize::try_from(entries).unwrap_or(256)),
            features,
            buf_ring,
            eventfd: remote.eventfd(),
            eventfd_buf: Box::new([0; 8]),
            eventfd_armed: false,
            closing: false,
            received: 0,
            clock: features.abs_timer.then(uring::RingClock::new).flatten(),
        };
        driver.arm_eventfd()?;
        Ok(driver)
    }

    pub(crate) fn features(&self) -> Features {
        self.features
    }

    /// See [`Driver::parks_on_absolute_deadline`](backend::Driver::parks_on_absolute_deadline).
    pub(crate) fn parks_on_absolute_deadline(&self) -> bool {
        self.clock.is_some()
    }

    pub(crate) fn buf_ring(&self) -> Option<&Rc<BufRing>> {
        self.buf_ring.as_ref()
    }

    fn arm_eventfd(&mut self) -> io::Result<()> {
        let sqe = opcode::Read::new(types::Fd(self.eventfd), self.eventfd_buf.as_mut_ptr(), 8)
            .build()
            .user_data(EVENTFD_USER_DATA);
        // SAFETY: the 8-byte buffer is owned by the driver and outlives the ring's use of it
        // (the driver cancels and drains all requests before it drops).
        unsafe { self.push(&sqe) }?;
        self.eventfd_armed = true;
        Ok(())
    }

    /// Pushes an SQE, flushing the submission queue to the kernel first if it is full.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must stay valid until its completion arrives.
    unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded from the caller.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            // Full: hand what we have to the kernel now (a second enter this turn).
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    self.reap();
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Registers a new operation and queues its request. Returns the slot key.
    ///
    /// # Safety
    ///
    /// Every pointer in `sqe` must stay valid until the operation's last completion: the
    /// caller keeps the resources in the op future, which hands them to the slot on drop.
    pub(crate) unsafe fn submit(
        &mut self,
        sqe: squeue::Entry,
        orphan: Orphan,
        multi: bool,
        receive: bool,
    ) -> io::Result<usize> {
        let key = self.ops.insert(orphan, multi, receive)?;
        let sqe = sqe.user_data(key as u64);
        // SAFETY: forwarded from the caller.
        if let Err(e) = unsafe { self.push(&sqe) } {
            self.ops.remove_unsubmitted(key);
            return Err(e);
        }
        Ok(key)
    }

    /// Submits a posted send (`TcpStream::post_send`): `MSG_WAITALL`, so that the kernel
    /// sends every byte or fails; the slot owns the buffer until the completion. A request
    /// the ring does not take completes at once with its error (the lane gets it, the buffer
    /// goes to its pool). Returns the slot's key.
    pub(crate) fn submit_posted(&mut self, posted: Posted, fd: i32) -> Result<usize, Posted> {
        let sqe = posted_sqe(posted.bytes(), fd);
        let key = self.ops.insert_posted(posted)?;
        self.push_posted(key, sqe);
        Ok(key)
    }

    /// Queues the request of posted send `key` (built by [`posted_sqe`] from its slot's
    /// bytes); a request the ring does not take completes the send with the error.
    fn push_posted(&mut self, key: usize, sqe: squeue::Entry) {
        let sqe = sqe.user_data(key as u64);
        // SAFETY: the SQE points into the posted buffer's heap allocation, which the slot
        // owns (moving the `Vec` into it did not move its bytes) until the kernel's last
        // completion for it; the slot also holds the fd open.
        if let Err(e) = unsafe { self.push(&sqe) } {
            let errno = Errno(e.raw_os_error().unwrap_or(libc::EIO));
            self.ops.complete(key, Completion::new(Err(errno)));
        }
    }

    /// Submits the rest of each posted send that a completion cut short (after a reap: a
    /// push may reap again when the submission queue is full).
    fn resend_posted(&mut self) {
        let keys = self.ops.take_resends();
        for &key in &keys {
            if let Some(sqe) = self.ops.posted_rest(key).map(|(fd, rest)| posted_sqe(rest, fd)) {
                self.push_posted(key, sqe);
            }
        }
        self.ops.put_back_resends(keys);
    }

    /// The lane of posted send `key` is gone: cancel it if it is still in the kernel.
    pub(crate) fn detach_posted(&mut self, key: usize) {
        if self.ops.detach_posted(key) {
            self.cancel(key);
        }
    }

    /// The future of operation `key` was dropped: keep `data` alive until the kernel is done.
    pub(crate) fn drop_op(&mut self, key: usize, data: Option<Box<dyn Any>>) {
        if self.ops.drop_op(key, data) {
            self.cancel(key);
        }
        self.dispose_orphaned();
    }

    fn cancel(&mut self, key: usize) {
        let sqe = opcode::AsyncCancel::new(key as u64)
            .build()
            .user_data(CANCEL_USER_DATA);
        // SAFETY: ASYNC_CANCEL carries no pointers.
        let _ = unsafe { self.push(&sqe) };
        // Submitted now, not with the next turn: what the task does after dropping the op
        // (a speculative send that makes a peer answer, say) must not race the cancel, or the
        // dropped receive could still take bytes that were meant for the next one. Drops of
        // in-flight ops are rare (timeouts, cancellation), so the extra enter is too.
        let _ = self.ring.submit();
    }

    /// Closes the fds and returns the provided buffers of completions nobody waits for; the
    /// check that there are some, made on every reap, inline.
    #[inline]
    fn dispose_orphaned(&mut self) {
        if self.ops.has_orphaned() {
            self.dispose_all_orphaned();
        }
    }

    #[inline(never)]
    fn dispose_all_orphaned(&mut self) {
        let ring = self.buf_ring.as_deref();
        for o in self.ops.take_orphaned() {
            o.dispose(ring);
        }
    }

    /// One trip to the kernel: submit everything queued, wait as told, handle completions.
    pub(crate) fn turn(&mut self, remote: &ShardRemote, wait: Wait) -> io::Result<()> {
        let to_submit = self.ring.submission().len();
        // A deadline already passed is a non-blocking turn.
        let wait = match wait {
            Wait::Until {
                deadline: Some(d),
                now,
            } if d <= now => Wait::No,
            w => w,
        };
        let res = match wait {
            Wait::No => {
                // SAFETY: no argument pointer is passed. GETEVENTS makes the kernel run
                // deferred task work, so completions appear even with DEFER_TASKRUN.
                unsafe {
                    self.ring.submitter().enter::<libc::sigset_t>(
                        to_submit as u32,
                        0,
                        io_uring::EnterFlags::GETEVENTS.bits(),
                        None,
                    )
                }
            }
            Wait::Until { deadline: None, .. } => self.ring.submit_and_wait(1),
            Wait::Until {
                deadline: Some(deadline),
                now,
            } => match &mut self.clock {
                // On the ring's own clock: no clock read, and the turn's `now` may be from
                // before its tasks ran (a deadline passed since returns at once).
                Some(clock) => {
                    let ts = clock.timespec(deadline);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args_and_flags(
                        1,
                        &args,
                        io_uring::EnterFlags::ABS_TIMER,
                    )
                }
                None => {
                    let dur = deadline
                        .saturating_duration_since(now)
                        .max(Duration::from_micros(1));
                    let ts = types::Timespec::new().sec(dur.as_secs()).nsec(dur.subsec_nanos());
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
            },
        };
        stats::bump(&remote.stats.ring_enters, 1);
        match res {
            Ok(n) => stats::bump(&remote.stats.sqes_submitted, n as u64),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                    stats::bump(&remote.stats.sqes_submitted, to_submit as u64);
                }
                _ => return Err(e),
            },
        }
        let n = self.reap();
        // Receives reaped earlier, when a full submission queue made a task's push reap
        // (`push`), count towards this turn.
        let received = std::mem::take(&mut self.received);
        QUIET.with(|q| q.set(received <= QUIET_RECEIVES));
        stats::bump(&remote.stats.completions, n as u64);
        stats::set(&remote.stats.ops_in_flight, self.ops.len() as u64);
        if !self.eventfd_armed && !self.closing {
            self.arm_eventfd()?;
        }
        Ok(())
    }

    /// Moves completions from the CQ into the op slots. Returns how many were handled; adds
    /// those that brought bytes to a receive to `received`.
    fn reap(&mut self) -> usize {
        let mut n = 0;
        // Whether a multishot receive found the provided buffer ring empty in this batch
        // (counted once: the receives of one burst all find it empty together; another op's
        // ENOBUFS, a send's for one, says nothing about the ring).
        let mut starved = false;
        // Handled where they lie in the CQ (its head moves on when `cq` is dropped): only
        // the fields other than the ring are touched meanwhile, and nothing handled here
        // submits (a short posted send is resent after the loop).
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            n += 1;
            let (res, flags) = (cqe.result(), cqe.flags());
            match cqe.user_data() {
                CANCEL_USER_DATA => {}
                EVENTFD_USER_DATA => self.eventfd_armed = false,
                key => {
                    let c = Completion::from_raw(res, flags);
                    if c.buffer_id().is_some() {
                        if let Some(ring) = &self.buf_ring {
                            ring.taken();
                        }
                    }
                    starved |= res == -libc::ENOBUFS && self.ops.is_multi(key as usize);
                    self.received += usize::from(self.ops.complete_counted(key as usize, c));
                }
            }
        }
        drop(cq);
        if let (true, Some(ring)) = (starved, &self.buf_ring) {
            ring.starved();
        }
        self.dispose_orphaned();
        if self.ops.has_resends() {
            self.resend_posted();
        }
        n
    }

    /// Wakers to call and resources to free, taken out so the caller can release them with
    /// no driver borrow held (a dropped resource may itself use the driver).
    pub(crate) fn has_deferred(&self) -> bool {
        self.ops.has_deferred()
    }

    pub(crate) fn take_deferred(&mut self, out: &mut Deferred) {
        self.ops.take_deferred(out);
    }

    /// Cancels everything in flight and waits (bounded) for the kernel to finish with it.
    ///
    /// Returns the resources of operations the kernel has not released in time: the caller
    /// must leak them rather than free memory the kernel may still write.
    pub(crate) fn shutdown(&mut self, remote: &ShardRemote) -> Vec<Box<dyn Any>> {
        let keys = self.ops.keys();
        for key in keys {
            self.cancel(key);
        }
        let eventfd_cancel = opcode::AsyncCancel::new(EVENTFD_USER_DATA)
            .build()
            .user_data(CANCEL_USER_DATA);
        // SAFETY: ASYNC_CANCEL carries no pointers.
        let _ = unsafe { self.push(&eventfd_cancel) };
        self.closing = true;
        let deadline = Instant::now() + Duration::from_secs(2);
        while (!self.ops.is_empty() || self.eventfd_armed) && Instant::now() < deadline {
            let step = Instant::now() + Duration::from_millis(10);
            let wait = Wait::Until {
                deadline: Some(step),
                now: Instant::now(),
            };
            if self.turn(remote, wait).is_err() {
                break;
            }
        }
        if let Some(ring) = &self.buf_ring {
            ring.unregister(&self.ring);
        }
        if !self.ops.is_empty() {
            // A receive still in the kernel may yet pick a provided buffer: keep the area.
            if let Some(ring) = self.buf_ring.take() {
                std::mem::forget(ring);
            }
        }
        let mut leaked = self.ops.abandon();
        if self.eventfd_armed {
            // The kernel may still own the eventfd read's buffer: never free it.
            let buf = std::mem::replace(&mut self.eventfd_buf, Box::new([0; 8]));
            leaked.push(buf as Box<dyn Any>);
        }
        leaked
    }
}

/// The request of a posted send of `bytes` on `fd` (`MSG_WAITALL`: a 5.18+ kernel finishes
/// a short send itself).
fn posted_sqe(bytes: &[u8], fd: i32) -> squeue::Entry {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    opcode::Send::new(types::Fd(fd), bytes.as_ptr(), len)
        .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
        .build()
}
