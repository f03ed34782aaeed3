//! SIGINT/SIGTERM as a shutdown request, without a signal handler.
//!
//! `run` blocks both signals in the calling thread before it starts the shard threads (which
//! inherit the mask), then sleeps in `poll(2)` on a signalfd and on an eventfd the shards
//! write when they finish: it wakes only when there is something to do. No async-signal-
//! safety concerns arise because no handler ever runs.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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

/// A signalfd for SIGINT and SIGTERM (which must be blocked).
pub(crate) fn termination_fd() -> io::Result<OwnedFd> {
    let set = termination_set();
    // SAFETY: `set` is a valid sigset_t; -1 asks for a new fd; the result is checked.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Blocks until `done` is written or (if given) a termination signal arrives. Returns true
/// if a signal arrived (consumed). Both fds are drained.
pub(crate) fn wait(done: &OwnedFd, signals: Option<&OwnedFd>) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: done.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: signals.map_or(-1, |s| s.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfds (a negative fd is ignored by poll).
    unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
    let mut buf = [0u8; 128];
    // SAFETY: reads into a live local buffer of the given size (non-blocking fds).
    unsafe { libc::read(done.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    let mut got_signal = false;
    if let Some(s) = signals {
        // signalfd_siginfo is 128 bytes; each read returns one pending signal.
        // SAFETY: reads into a live local buffer of 128 bytes from a non-blocking signalfd.
        while unsafe { libc::read(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
            got_signal = true;
        }
    }
    got_signal
}

/// Restores a mask saved by [`block_termination_signals`].
pub(crate) fn restore(old: &libc::sigset_t) {
    // SAFETY: `old` is a mask returned by pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}
