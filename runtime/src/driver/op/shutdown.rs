//! `IORING_OP_SHUTDOWN`.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};
use crate::driver::epoll::{ReadyCall, ReadyOp, SysOp};
use crate::fd::SharedFd;

pub(crate) struct Shutdown {
    fd: SharedFd,
    how: i32,
}

impl OpKind for Shutdown {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Shutdown::new(types::Fd(self.fd.raw()), self.how).build()
    }

    fn sys_op(&mut self) -> SysOp {
        SysOp::Ready(ReadyOp {
            fd: self.fd.clone(),
            call: ReadyCall::Shutdown { how: self.how },
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|_| ())
    }
}

pub(crate) fn shutdown(fd: &SharedFd, how: i32) -> io::Result<Op<Shutdown>> {
    Op::submit(Shutdown { fd: fd.clone(), how }).map_err(|(e, _)| e)
}
