//! `IORING_OP_FTRUNCATE` (Linux 6.9+; callers check `Features::ftruncate` first).

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};
use crate::driver::epoll::{BlockingOp, SysOp};
use crate::fd::SharedFd;

pub(crate) struct Ftruncate {
    fd: SharedFd,
    len: u64,
}

impl OpKind for Ftruncate {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Ftruncate::new(types::Fd(self.fd.raw()), self.len).build()
    }

    fn sys_op(&mut self) -> SysOp {
        SysOp::Blocking(BlockingOp::Ftruncate {
            fd: self.fd.raw(),
            len: self.len,
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|_| ())
    }
}

/// Sets the length of the file `fd` to `len` bytes.
pub(crate) fn ftruncate(fd: &SharedFd, len: u64) -> io::Result<Op<Ftruncate>> {
    Op::submit(Ftruncate { fd: fd.clone(), len }).map_err(|(e, _)| e)
}
