//! `IORING_OP_NOP`: a round trip through the ring with no work, for benchmarks and tests.

use std::io;

use io_uring::{opcode, squeue};

use super::{Completion, Op, OpKind};
use crate::driver::epoll::SysOp;

pub(crate) struct Nop;

impl OpKind for Nop {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Nop::new().build()
    }

    fn sys_op(&mut self) -> SysOp {
        SysOp::Nop
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|_| ())
    }
}

pub(crate) fn nop() -> io::Result<Op<Nop>> {
    Op::submit(Nop).map_err(|(e, _)| e)
}
