//! `IORING_OP_ACCEPT`, single-shot and multishot.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Multi, Op, OpKind};
use crate::driver::epoll::{ReadyCall, ReadyOp, SysOp};
use crate::driver::{Completion, Orphan};
use crate::fd::SharedFd;

const ACCEPT_FLAGS: i32 = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;

pub(crate) struct Accept {
    fd: SharedFd,
}

impl OpKind for Accept {
    type Output = io::Result<SharedFd>;
    const ORPHAN: Orphan = Orphan::CloseFd;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Accept::new(
            types::Fd(self.fd.raw()),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(ACCEPT_FLAGS)
        .build()
    }

    fn sys_op(&mut self) -> SysOp {
        SysOp::Ready(ReadyOp {
            fd: self.fd.clone(),
            call: ReadyCall::Accept,
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|fd| SharedFd::new(fd as i32))
    }
}

/// Accepts one connection on listening socket `fd`.
pub(in crate::driver) fn accept(fd: &SharedFd) -> io::Result<Op<Accept>> {
    Op::submit(Accept { fd: fd.clone() }).map_err(|(e, _)| e)
}

/// Arms a multishot accept: every new connection is one completion carrying the new fd.
pub(in crate::driver) fn accept_multi(fd: &SharedFd) -> io::Result<Multi> {
    let sqe = opcode::AcceptMulti::new(types::Fd(fd.raw()))
        .flags(ACCEPT_FLAGS)
        .build();
    // SAFETY: the SQE carries no pointers; the fd handle travels with the stream so the fd
    // stays open while the kernel accepts on it.
    unsafe { Multi::submit(sqe, Orphan::CloseFd, false, Box::new(fd.clone())) }
}
