//! The raw system calls the runtime makes outside the ring, each behind a safe, checked
//! function.
//!
//! Together with `driver/` and `buf.rs`, this is the only place in the crate with `unsafe`.
//! Every function here takes only plain values or references and returns `io::Result` (or
//! nothing, where a failure changes nothing for the caller), so no caller needs to know the
//! C calling conventions.

use std::os::fd::RawFd;

/// Closes `fd`. The caller owns it and gives it up; errors are ignored (the fd is released
/// by the kernel even when `close` reports one).
pub(crate) fn close(fd: RawFd) {
    // SAFETY: `close` takes a plain integer; the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}
