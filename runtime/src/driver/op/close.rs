//! `IORING_OP_CLOSE`.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};

pub(crate) struct Close {
    fd: RawFd,
}

impl OpKind for Close {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.fd)).build()
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|_| ())
    }
}

/// Closes `fd` through the ring. The caller gives up ownership of `fd`.
pub(crate) fn close(fd: RawFd) -> io::Result<Op<Close>> {
    Op::submit(Close { fd }).map_err(|(e, c)| {
        // The ring refused the op: close synchronously so the fd is not leaked.
        // SAFETY: the caller gave up ownership of `c.fd`; it is closed once, here.
        unsafe { libc::close(c.fd) };
        e
    })
}
