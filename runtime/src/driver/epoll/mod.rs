//! The epoll (readiness) driver: where io_uring is unavailable, the same op futures run on
//! one epoll instance per core.
//!
//! An op is submitted as a [`SysOp`] (the counterpart of its SQE) and gets a slot in the same
//! [`OpTable`] as on io_uring, so its life — waiting, completed, dropped with its resources
//! kept in the slot — is the same state machine. What differs is who completes it:
//!
//! - **Socket calls** (`recv`, `send`, `sendmsg`, `accept4`, `connect`, `shutdown`) are made
//!   at once, non-blocking. One that answers `EAGAIN` waits in its fd's read or write list;
//!   the fd is added to the core's epoll the first time that happens, **edge-triggered**
//!   (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`, one `epoll_ctl` per socket, never
//!   re-armed), and stays there until it is closed (closing removes it). When `epoll_wait`
//!   reports the fd, the driver makes each waiting call again and completes the ones that
//!   no longer block. Dropping the future of a waiting call completes it with `ECANCELED`
//!   at once: nothing else holds its buffer.
//! - **File calls** go to the [blocking pool](super::blocking); the completion comes back
//!   through the pool's eventfd. They cannot be cancelled.
//! - **Mesh wake-ups**: the shard's eventfd (the one other cores write) is in the epoll set.
//! - **Timers**: the wait's timeout is the next timer deadline, with nanosecond precision
//!   through `epoll_pwait2` (5.11+), else `epoll_wait` rounded up to the millisecond.
//!
//! No multishot accept or receive and no provided buffers: every accept and every receive is
//! one call. A stream's receives do not go through the op table at all
//! ([`EpollDriver::poll_recv`]): the driver keeps, per fd, whether the socket may have bytes
//! (`rx_ready`) and the waker of the one task waiting for them. A receive is made only while
//! `rx_ready` holds; a receive that answers `EAGAIN`, or that returns less than it asked for
//! (the kernel's queue is empty then, as tokio also assumes), clears it, and the next edge
//! epoll reports sets it and wakes the task. So a request costs one `recv` (no second one
//! to hear `EAGAIN`), and a waiting connection costs a flag and a waker, no buffer and no op.
//! Bytes are received into a 16 KiB buffer from a per-core pool and handed out in it (no
//! copy); the chunk gives the buffer back to the pool when dropped (`RxPool`: LIFO, at most 64
//! free buffers kept), so a receive costs no allocation either. A chunk kept for long holds
//! its 16 KiB (as a provided-ring buffer holds its 4 KiB on io_uring).

pub(crate) mod sysop;

use std::any::Any;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::blocking::{self, Job, Returns};
use super::lifecycle::{register_waiter, wake_waiter, Deferred, OpTable, WaitState};
use super::recv_buf::RxPool;
use super::recv_stream::FALLBACK_RECV_SIZE;
use super::uring::Features;
use super::RecvBuf;
use super::{Completion, Errno, Orphan, Wait};
use crate::fd::SharedFd;
use crate::shared::ShardRemote;
use crate::stats;
use crate::sys;
pub(crate) use sysop::{BlockingOp, Interest, ReadyCall, ReadyOp, SysOp};

/// epoll token of the shard's wake-up eventfd.
const WAKE_TOKEN: u64 = u64::MAX;
/// epoll token of the blocking pool's completion eventfd.
const POOL_TOKEN: u64 = u64::MAX - 1;
/// Events fetched per `epoll_wait`.
const MAX_EVENTS: usize = 256;
/// The longest park while pool jobs wait for room in the pool's queue.
const POOL_RETRY: Duration = Duration::from_millis(1);

/// The calls waiting for one fd's readiness (op keys), and its stream receive's state.
struct FdWaiters {
    read: KeyList,
    write: KeyList,
    /// The socket may have bytes (or an EOF, or an error) to receive: set by every readable
    /// edge, cleared by a receive that found the queue empty. True until a receive says so.
    rx_ready: bool,
    /// epoll reported the peer's close (or an error): a receive always answers now, so
    /// `rx_ready` is never cleared again (a short receive can leave the EOF behind it, and
    /// no edge would come for it).
    rx_closed: bool,
    /// The task waiting in [`EpollDriver::poll_recv`] for the next readable edge, and how
    /// it waits.
    rx_waker: Option<Waker>,
    rx_wait: WaitState,
}

impl Default for FdWaiters {
    fn default() -> Self {
        Self {
            read: KeyList::default(),
            write: KeyList::default(),
            rx_ready: true,
            rx_closed: false,
            rx_waker: None,
            rx_wait: WaitState::Idle,
        }
    }
}

/// Op keys waiting on one fd for one readiness: nearly always at most one (a socket's
/// receive, or its send), kept inline; more go to a vector allocated only then. An idle
/// connection's waiting receive thus costs no allocation here.
struct KeyList {
    /// `NONE` when empty; the vector is empty while this is.
    first: usize,
    more: Vec<usize>,
}

impl KeyList {
    const NONE: usize = usize::MAX;

    fn push(&mut self, key: usize) {
        if self.first == Self::NONE {
            self.first = key;
        } else {
            self.more.push(key);
        }
    }

    fn remove(&mut self, key: usize) {
        if self.first == key {
            self.first = if self.more.is_empty() {
                Self::NONE
            } else {
                self.more.remove(0)
            };
        } else {
            self.more.retain(|&k| k != key);
        }
    }

    /// Moves every key, in order, to the end of `out`.
    fn take_into(&mut self, out: &mut Vec<usize>) {
        if self.first != Self::NONE {
            out.push(std::mem::replace(&mut self.first, Self::NONE));
            out.append(&mut self.more);
        }
    }
}

impl Default for KeyList {
    fn default() -> Self {
        Self {
            first: Self::NONE,
            more: Vec::new(),
        }
    }
}

pub(crate) struct EpollDriver {
    epoll: OwnedFd,
    pub(in crate::driver) ops: OpTable,
    /// The socket call of each op key that waits for readiness (indexed by key).
    waiting: Vec<Option<ReadyOp>>,
    /// Waiting op keys per fd number.
    fds: Vec<FdWaiters>,
    returns: Arc<Returns>,
    /// Pool jobs that found the pool's queue full.
    backlog: std::collections::VecDeque<Job>,
    /// Pool jobs not yet come back.
    on_pool: usize,
    wake_fd: RawFd,
    events: Vec<libc::epoll_event>,
    pool_done: Vec<(usize, Completion)>,
    /// Keys taken off an fd's lists while its readiness is handled (reused).
    scratch: Vec<usize>,
    /// `epoll_pwait2` is missing (ENOSYS): wait with millisecond timeouts.
    no_pwait2: bool,
    /// The core's receive buffers for stream receives ([`Self::poll_recv`]), each with room
    /// for [`FALLBACK_RECV_SIZE`] bytes.
    rx_pool: Rc<RxPool>,
    /// Tasks whose socket turned readable in the last `epoll_wait`, woken by the shard.
    rx_woken: Vec<Waker>,
}

fn check(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ctl(epoll: RawFd, op: i32, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a live, valid epoll_event; the fds are plain integers.
    check(unsafe { libc::epoll_ctl(epoll, op, fd, &mut ev) }).map(|_| ())
}

impl EpollDriver {
    pub(crate) fn new(remote: &ShardRemote, entries: u32) -> io::Result<Self> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; the result is checked.
        let epfd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("ringcore cannot start: epoll_create1 failed: {e}"),
            )
        })?;
        // SAFETY: `epfd` was just returned by epoll_create1 and is owned by nobody else.
        let epoll = unsafe { OwnedFd::from_raw_fd(epfd) };
        let wake_fd = remote.eventfd();
        ctl(
            epfd,
            libc::EPOLL_CTL_ADD,
            wake_fd,
            libc::EPOLLIN as u32,
            WAKE_TOKEN,
        )?;
        let returns = Returns::new(new_eventfd()?);
        ctl(
            epfd,
            libc::EPOLL_CTL_ADD,
            returns.eventfd(),
            libc::EPOLLIN as u32,
            POOL_TOKEN,
        )?;
        let cap = usize::try_from(entries).unwrap_or(256);
        Ok(EpollDriver {
            epoll,
            ops: OpTable::with_capacity(cap),
            waiting: Vec::new(),
            fds: Vec::new(),
            returns,
            backlog: std::collections::VecDeque::new(),
            on_pool: 0,
            wake_fd,
            events: Vec::with_capacity(MAX_EVENTS),
            pool_done: Vec::new(),
            scratch: Vec::new(),
            no_pwait2: false,
            rx_pool: Rc::new(RxPool::default()),
            rx_woken: Vec::new(),
        })
    }

    /// What this driver offers the layers above: no multishot, no buffer ring; truncation
    /// is a pool call like every file call.
    pub(crate) fn features(&self) -> Features {
        Features {
            ftruncate: true,
            ..Features::default()
        }
    }

    /// Registers an operation and starts it. Returns the slot key.
    ///
    /// # Safety
    ///
    /// Every pointer in `op` must stay valid until the operation's completion has been filed
    /// in the op table: the caller keeps the resources in the op future, which hands them to
    /// the slot on drop.
    pub(crate) unsafe fn submit(&mut self, op: SysOp, orphan: Orphan) -> io::Result<usize> {
        let key = self.ops.insert(orphan, false, false)?;
        match op {
            SysOp::Nop => self.ops.complete(key, Completion::new(Ok(0))),
            SysOp::Close(fd) => {
                // SAFETY: the op owns `fd` (its caller gave it up) and closes it once, here.
                let r = unsafe { libc::close(fd) };
                let c = if r < 0 {
                    Completion::new(Err(Errno(
                        io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO),
                    )))
                } else {
                    Completion::new(Ok(0))
                };
                self.ops.complete(key, c);
            }
            SysOp::Ready(mut r) => match r.attempt() {
                Some(c) => self.ops.complete(key, c),
                None => {
                    if let Err(e) = self.wait_ready(key, r) {
                        self.ops.remove_unsubmitted(key);
                        return Err(e);
                    }
                }
            },
            SysOp::Blocking(op) => {
                self.on_pool += 1;
                let job = Job {
                    key,
                    op,
                    returns: self.returns.clone(),
                };
                if let Err(job) = blocking::try_submit(job) {
                    self.backlog.push_back(job);
                }
            }
        }
        self.dispose_orphaned();
        Ok(key)
    }

    /// The index of `fd` in `fds`, adding the fd to epoll the first time it waits. An fd
    /// number's state starts afresh then (the number may have belonged to a closed socket).
    fn register(&mut self, fd: &SharedFd) -> io::Result<usize> {
        let raw = fd.raw();
        let idx = usize::try_from(raw).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        if self.fds.len() <= idx {
            self.fds.resize_with(idx + 1, FdWaiters::default);
        }
        if !fd.is_polled() {
            let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            match ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                raw,
                events,
                raw as u64,
            ) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
            fd.set_polled();
            let w = &mut self.fds[idx];
            w.rx_ready = true;
            w.rx_closed = false;
            w.rx_waker = None;
            w.rx_wait = WaitState::Idle;
        }
        Ok(idx)
    }

    /// True if a stream receive on `fd` would make a call now (it may have bytes); false
    /// means [`Self::poll_recv`] would wait.
    pub(crate) fn may_recv(&self, fd: &SharedFd) -> bool {
        if !fd.is_polled() {
            return true;
        }
        usize::try_from(fd.raw())
            .ok()
            .and_then(|i| self.fds.get(i))
            .map_or(true, |w| w.rx_ready)
    }

    /// The stream receive on `fd`: the next bytes (empty at EOF), or `Pending` with `waker`
    /// kept until epoll reports the fd readable (`local`: see [`WaitState`]). Makes a `recv`
    /// only while the fd may have bytes (see the module docs).
    pub(crate) fn poll_recv(
        &mut self,
        fd: &SharedFd,
        waker: &Waker,
        local: bool,
    ) -> Poll<io::Result<RecvBuf>> {
        let idx = match self.register(fd) {
            Ok(i) => i,
            Err(e) => return Poll::Ready(Err(e)),
        };
        loop {
            let w = &mut self.fds[idx];
            if !w.rx_ready {
                // One waiting task per stream: another task's registration replaces it.
                if !register_waiter(&mut w.rx_waker, &mut w.rx_wait, waker, local) {
                    w.rx_wait = WaitState::Idle;
                    register_waiter(&mut w.rx_waker, &mut w.rx_wait, waker, local);
                }
                return Poll::Pending;
            }
            let mut buf = self.rx_pool.take(FALLBACK_RECV_SIZE);
            match sys::socket::recv_spare(fd.raw(), &mut buf) {
                Ok(0) => {
                    self.rx_pool.give(buf);
                    return Poll::Ready(Ok(RecvBuf::owned(Vec::new())));
                }
                Ok(n) => {
                    if n < buf.capacity() {
                        // Short: the queue is empty now; the next edge says when it is not.
                        let w = &mut self.fds[idx];
                        w.rx_ready = w.rx_closed;
                    }
                    return Poll::Ready(Ok(RecvBuf::pooled(buf, self.rx_pool.clone())));
                }
                Err(e) => {
                    self.rx_pool.give(buf);
                    match e.raw_os_error() {
                        // Nothing there, closed or not (never spin on it).
                        Some(libc::EAGAIN) => self.fds[idx].rx_ready = false,
                        Some(libc::EINTR) => {}
                        _ => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }

    /// Parks socket call `key` until its fd is ready, adding the fd to epoll the first time.
    fn wait_ready(&mut self, key: usize, op: ReadyOp) -> io::Result<()> {
        let idx = self.register(&op.fd)?;
        match op.interest() {
            Interest::Read => self.fds[idx].read.push(key),
            Interest::Write => self.fds[idx].write.push(key),
        }
        if self.waiting.len() <= key {
            self.waiting.resize_with(key + 1, || None);
        }
        self.waiting[key] = Some(op);
        Ok(())
    }

    /// The future of `key` was dropped: a waiting socket call is cancelled at once; a pool
    /// call keeps its resources in the slot until it returns.
    pub(crate) fn drop_op(&mut self, key: usize, data: Option<Box<dyn Any>>) {
        if self.ops.drop_op(key, data) {
            self.cancel(key);
        }
        self.dispose_orphaned();
    }

    fn cancel(&mut self, key: usize) {
        let Some(op) = self.waiting.get_mut(key).and_then(Option::take) else {
            // On the pool (or already done): its completion will free the slot.
            return;
        };
        if let Some(w) = usize::try_from(op.fd.raw())
            .ok()
            .and_then(|i| self.fds.get_mut(i))
        {
            w.read.remove(key);
            w.write.remove(key);
        }
        self.ops
            .complete(key, Completion::new(Err(Errno(libc::ECANCELED))));
        // The fd handle is released with the other deferred resources.
        drop(op);
    }

    fn dispose_orphaned(&mut self) {
        for o in self.ops.take_orphaned() {
            o.dispose(None);
        }
    }

    /// One `epoll_wait`: wait as told, then complete what became ready.
    pub(crate) fn turn(&mut self, remote: &ShardRemote, wait: Wait) -> io::Result<()> {
        while let Some(job) = self.backlog.pop_front() {
            if let Err(job) = blocking::try_submit(job) {
                self.backlog.push_front(job);
                break;
            }
        }
        let timeout = match wait {
            Wait::No => Some(Duration::ZERO),
            Wait::Until { deadline: None, .. } => None,
            Wait::Until {
                deadline: Some(d),
                now,
            } => Some(d.saturating_duration_since(now)),
        };
        let timeout = if self.backlog.is_empty() {
            timeout
        } else {
            Some(timeout.map_or(POOL_RETRY, |t| t.min(POOL_RETRY)))
        };
        let n = self.wait(timeout)?;
        stats::bump(&remote.stats.ring_enters, 1);
        let mut completed = 0u64;
        for i in 0..n {
            let ev = self.events[i];
            let (token, bits) = (ev.u64, ev.events);
            match token {
                WAKE_TOKEN => {
                    let mut buf = [0u8; 8];
                    // SAFETY: reads 8 bytes into a live local from the non-blocking eventfd.
                    unsafe { libc::read(self.wake_fd, buf.as_mut_ptr().cast(), 8) };
                }
                POOL_TOKEN => {
                    let mut done = std::mem::take(&mut self.pool_done);
                    self.returns.drain(&mut done);
                    for (key, c) in done.drain(..) {
                        self.on_pool = self.on_pool.saturating_sub(1);
                        self.ops.complete(key, c);
                        completed += 1;
                    }
                    self.pool_done = done;
                }
                fd => completed += self.ready(fd as usize, bits),
            }
        }
        self.events.clear();
        self.dispose_orphaned();
        stats::bump(&remote.stats.completions, completed);
        stats::set(&remote.stats.ops_in_flight, self.ops.len() as u64);
        Ok(())
    }

    /// Waits for events; returns how many `self.events` holds.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        self.events.clear();
        let epfd = self.epoll.as_raw_fd();
        let ptr = self.events.as_mut_ptr();
        let max = MAX_EVENTS as i32;
        let mut n = -1;
        if !self.no_pwait2 {
            let ts = timeout.map(|t| libc::timespec {
                tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: t.subsec_nanos() as _,
            });
            let ts_ptr = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `ptr` has room for `max` events (capacity MAX_EVENTS); `ts_ptr` is null
            // or points to a live timespec; a null sigmask leaves the mask alone.
            n = unsafe {
                libc::syscall(
                    libc::SYS_epoll_pwait2,
                    epfd,
                    ptr,
                    max,
                    ts_ptr,
                    std::ptr::null::<libc::sigset_t>(),
                    0usize,
                )
            } as i32;
            if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
                self.no_pwait2 = true;
            }
        }
        if self.no_pwait2 {
            let ms = timeout.map_or(-1, |t| {
                // Rounded up: a park must not end before its deadline.
                let ms = t.as_nanos().div_ceil(1_000_000);
                i32::try_from(ms).unwrap_or(i32::MAX)
            });
            // SAFETY: `ptr` has room for `max` events.
            n = unsafe { libc::epoll_wait(epfd, ptr, max, ms) };
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        // SAFETY: the kernel initialised the first `n` entries (n <= MAX_EVENTS = capacity).
        unsafe { self.events.set_len(n) };
        Ok(n)
    }

    /// Fd `fd` is ready (`bits` from epoll): make its waiting calls again.
    fn ready(&mut self, fd: usize, bits: u32) -> u64 {
        let Some(w) = self.fds.get_mut(fd) else {
            return 0;
        };
        let err = bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
        let readable = err || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0;
        let writable = err || bits & libc::EPOLLOUT as u32 != 0;
        let mut keys = std::mem::take(&mut self.scratch);
        let mut completed = 0;
        if readable {
            w.read.take_into(&mut keys);
            w.rx_ready = true;
            if bits & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                w.rx_closed = true;
            }
            if wake_waiter(&mut w.rx_waker, &mut w.rx_wait, &mut self.rx_woken) {
                completed += 1;
            }
        }
        if writable {
            w.write.take_into(&mut keys);
        }
        for &key in &keys {
            let Some(mut op) = self.waiting.get_mut(key).and_then(Option::take) else {
                continue;
            };
            match op.attempt() {
                Some(c) => {
                    self.ops.complete(key, c);
                    completed += 1;
                }
                None => {
                    // Still blocked (a spurious or shared wake-up): wait again.
                    let list = &mut self.fds[fd];
                    match op.interest() {
                        Interest::Read => list.read.push(key),
                        Interest::Write => list.write.push(key),
                    }
                    self.waiting[key] = Some(op);
                }
            }
        }
        keys.clear();
        self.scratch = keys;
        completed
    }

    pub(crate) fn has_deferred(&self) -> bool {
        !self.rx_woken.is_empty() || self.ops.has_deferred()
    }

    pub(crate) fn take_deferred(&mut self, out: &mut Deferred) {
        super::lifecycle::move_all(&mut out.wake, &mut self.rx_woken);
        self.ops.take_deferred(out);
    }

    /// Cancels every waiting socket call and waits (bounded) for the pool to return the
    /// calls it is running. Returns the resources of calls still on the pool: the caller
    /// must leak them, as a pool thread may still write into them.
    pub(crate) fn shutdown(&mut self, remote: &ShardRemote) -> Vec<Box<dyn Any>> {
        for w in &mut self.fds {
            w.rx_waker = None;
            w.rx_wait = WaitState::Idle;
        }
        self.rx_woken.clear();
        for key in self.ops.keys() {
            self.cancel(key);
        }
        // Jobs never handed to the pool: their calls never ran.
        for job in std::mem::take(&mut self.backlog) {
            self.on_pool = self.on_pool.saturating_sub(1);
            self.ops
                .complete(job.key, Completion::new(Err(Errno(libc::ECANCELED))));
        }
        self.dispose_orphaned();
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.on_pool > 0 && Instant::now() < deadline {
            let step = Instant::now() + Duration::from_millis(10);
            let wait = Wait::Until {
                deadline: Some(step),
                now: Instant::now(),
            };
            if self.turn(remote, wait).is_err() {
                break;
            }
        }
        self.ops.abandon()
    }
}

#[cfg(test)]
mod key_list_tests {
    use super::KeyList;

    fn taken(l: &mut KeyList) -> Vec<usize> {
        let mut out = Vec::new();
        l.take_into(&mut out);
        out
    }

    #[test]
    fn keys_come_out_in_order_and_removal_keeps_the_rest() {
        let mut l = KeyList::default();
        assert!(taken(&mut l).is_empty());
        for k in [4, 7, 9] {
            l.push(k);
        }
        l.remove(4);
        assert_eq!(taken(&mut l), vec![7, 9]);
        assert!(taken(&mut l).is_empty(), "taking empties the list");
        l.push(1);
        l.push(2);
        l.remove(2);
        l.push(3);
        assert_eq!(taken(&mut l), vec![1, 3]);
        l.push(0);
        l.remove(5);
        assert_eq!(taken(&mut l), vec![0]);
    }
}
