//! `IORING_OP_CLOSE`.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};
use crate::driver::epoll::{BlockingOp, SysOp};

pub(crate) struct Close {
    fd: RawFd,
    /// A regular file: on the epoll driver its close goes to the blocking pool.
    file: bool,
}

impl OpKind for Close {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Close::new(types::Fd(self.fd)).build()
    }

    fn sys_op(&mut self) -> SysOp {
        if self.file {
            SysOp::Blocking(BlockingOp::Close { fd: self.fd })
        } else {
            SysOp::Close(self.fd)
        }
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|_| ())
    }
}

/// Closes `fd` through the ring. The caller gives up ownership of `fd`.
pub(crate) fn close(fd: RawFd) -> io::Result<Op<Close>> {
    submit(Close { fd, file: false })
}

/// Closes the file `fd` (on the epoll driver, on the blocking pool: a file's close may wait
/// for the device). The caller gives up ownership of `fd`.
pub(crate) fn close_file(fd: RawFd) -> io::Result<Op<Close>> {
    submit(Close { fd, file: true })
}

fn submit(close: Close) -> io::Result<Op<Close>> {
    Op::submit(close).map_err(|(e, c)| {
        // The ring refused the op: close synchronously so the fd is not leaked.
        // The caller gave up ownership of `c.fd`; it is closed once, here.
        crate::sys::close(c.fd);
        e
    })
}
