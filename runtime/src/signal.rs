//! SIGINT/SIGTERM as a shutdown request, without a signal handler.
//!
//! `run` blocks both signals in the calling thread before it starts the shard threads (which
//! inherit the mask), then polls for them with `sigtimedwait` between its other checks. No
//! async-signal-safety concerns arise because no handler ever runs.

use std::mem;

fn termination_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t owned by us.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
    }
    set
}

/// Blocks SIGINT and SIGTERM in this thread; returns the previous mask.
pub(crate) fn block_termination_signals() -> libc::sigset_t {
    let set = termination_set();
    // SAFETY: sigset_t is plain old data.
    let mut old: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: both pointers are to valid sigset_t values we own.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    old
}

/// True if SIGINT or SIGTERM is pending (and consumes it).
pub(crate) fn take_pending_termination() -> bool {
    let set = termination_set();
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `set` and `zero` are valid; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
    sig == libc::SIGINT || sig == libc::SIGTERM
}

/// Restores a mask saved by [`block_termination_signals`].
pub(crate) fn restore(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask returned by pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}
