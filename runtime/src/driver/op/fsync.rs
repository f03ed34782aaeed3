//! `IORING_OP_FSYNC`, whole file, with or without `IORING_FSYNC_DATASYNC`.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};
use crate::driver::epoll::{BlockingOp, SysOp};
use crate::fd::SharedFd;

pub(crate) struct Fsync {
    fd: SharedFd,
    datasync: bool,
}

impl OpKind for Fsync {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        let flags = if self.datasync {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        opcode::Fsync::new(types::Fd(self.fd.raw())).flags(flags).build()
    }

    fn sys_op(&mut self) -> SysOp {
        SysOp::Blocking(BlockingOp::Fsync {
            fd: self.fd.raw(),
            datasync: self.datasync,
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|_| ())
    }
}

/// `fsync(fd)`, or `fdatasync(fd)` when `datasync`.
pub(crate) fn fsync(fd: &SharedFd, datasync: bool) -> io::Result<Op<Fsync>> {
    Op::submit(Fsync {
        fd: fd.clone(),
        datasync,
    })
    .map_err(|(e, _)| e)
}
