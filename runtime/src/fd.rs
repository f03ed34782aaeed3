//! A file descriptor shared by a socket and the operations in flight on it.

use std::cell::Cell;
use std::os::fd::RawFd;
use std::rc::Rc;

/// Closes its fd when the socket *and* every operation using it are gone, so the kernel
/// never sees a recycled fd number in a late operation.
#[derive(Clone)]
pub(crate) struct SharedFd(Rc<FdInner>);

struct FdInner {
    fd: RawFd,
    /// The epoll driver added this fd to its core's epoll set (it stays there until closed).
    polled: Cell<bool>,
}

impl SharedFd {
    /// Takes ownership of `fd`.
    pub(crate) fn new(fd: RawFd) -> Self {
        SharedFd(Rc::new(FdInner {
            fd,
            polled: Cell::new(false),
        }))
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.fd
    }

    /// True once the epoll driver has added this fd to its core's epoll set.
    pub(crate) fn is_polled(&self) -> bool {
        self.0.polled.get()
    }

    pub(crate) fn set_polled(&self) {
        self.0.polled.set(true);
    }

    /// Gives the fd back if this is the last user, for an explicit asynchronous close.
    pub(crate) fn try_unwrap(self) -> Result<RawFd, SharedFd> {
        match Rc::try_unwrap(self.0) {
            Ok(inner) => {
                let fd = inner.fd;
                std::mem::forget(inner);
                Ok(fd)
            }
            Err(rc) => Err(SharedFd(rc)),
        }
    }
}

impl Drop for FdInner {
    fn drop(&mut self) {
        // We own `fd`; it is closed exactly once, here.
        crate::sys::close(self.fd);
    }
}
