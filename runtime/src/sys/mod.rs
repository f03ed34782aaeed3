//! The raw system calls the runtime makes outside the ring, each behind a safe, checked
//! function.
//!
//! Together with `driver/` and `buf.rs`, this is the only place in the crate with `unsafe`.
//! Every function here takes only plain values or references and returns `io::Result` (or
//! nothing, where a failure changes nothing for the caller), so no caller needs to know the
//! C calling conventions.

pub(crate) mod fs;
pub(crate) mod signal;
pub(crate) mod socket;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Closes `fd`. The caller owns it and gives it up; errors are ignored (the fd is released
/// by the kernel even when `close` reports one).
pub(crate) fn close(fd: RawFd) {
    // SAFETY: `close` takes a plain integer; the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// A new non-blocking, close-on-exec eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd has no memory-safety preconditions; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd. A failed write (`EAGAIN` when the counter is saturated) still
/// leaves the reader woken, so it is ignored.
pub(crate) fn eventfd_write(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local to an fd the caller keeps open.
    unsafe {
        libc::write(
            fd.as_raw_fd(),
            (&one as *const u64).cast(),
            std::mem::size_of::<u64>(),
        )
    };
}

/// Sets the calling thread's timer slack (`PR_SET_TIMERSLACK`), in nanoseconds.
pub(crate) fn set_timer_slack(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes plain integers and affects only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`), if the clock can be read.
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// `clock`'s time since its epoch, if it can be read.
pub(crate) fn clock(clock: libc::clockid_t) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call; an unknown clock id
    // is refused with EINVAL.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// The open-files limit: `(soft, hard)`, `libc::RLIM_INFINITY` for unlimited.
pub(crate) fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Sets the open-files limit.
pub(crate) fn set_nofile_limit(soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
