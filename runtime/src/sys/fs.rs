//! The file calls that do not go through the ring (`fstat`, `ftruncate` where the ring has
//! no `FTRUNCATE`, and `posix_fadvise`), as checked libc wrappers.

use std::fs::Metadata;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{FromRawFd, RawFd};

/// `fstat(fd)` as a `std::fs::Metadata`. `fd` stays open and owned by the caller.
pub(crate) fn metadata(fd: RawFd) -> io::Result<Metadata> {
    // SAFETY: `fd` is an open file descriptor (the caller's `SharedFd` keeps it open for this
    // call). The `std::fs::File` only borrows it: `ManuallyDrop` never runs its `Drop`, so the
    // fd is not closed here and keeps exactly one owner.
    let file = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
    file.metadata()
}

/// `ftruncate(fd, len)`.
pub(crate) fn ftruncate(fd: RawFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file length does not fit in off_t"))?;
    // SAFETY: plain syscall on an fd the caller keeps open; no pointers.
    if unsafe { libc::ftruncate(fd, len) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `posix_fadvise(fd, offset, len, POSIX_FADV_DONTNEED)`: drops the clean cached pages of the
/// range (`len` 0: to the end of the file). Dirty pages are not written or dropped.
pub(crate) fn drop_cache(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "range does not fit in off_t");
    let offset = libc::off_t::try_from(offset).map_err(|_| too_big())?;
    let len = libc::off_t::try_from(len).map_err(|_| too_big())?;
    // SAFETY: plain syscall on an fd the caller keeps open; no pointers.
    match unsafe { libc::posix_fadvise(fd, offset, len, libc::POSIX_FADV_DONTNEED) } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// The system's page size in bytes (`sysconf(_SC_PAGESIZE)`; 4096 if it cannot say).
pub(crate) fn page_size() -> usize {
    // SAFETY: plain libc call with no pointers.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}
