//! A file descriptor shared by a socket and the operations in flight on it.

use std::os::fd::RawFd;
use std::rc::Rc;

/// Closes its fd when the socket *and* every operation using it are gone, so the kernel
/// never sees a recycled fd number in a late operation.
#[derive(Clone)]
pub(crate) struct SharedFd(Rc<FdInner>);

struct FdInner {
    fd: RawFd,
}

impl SharedFd {
    /// Takes ownership of `fd`.
    pub(crate) fn new(fd: RawFd) -> Self {
        SharedFd(Rc::new(FdInner { fd }))
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.fd
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
