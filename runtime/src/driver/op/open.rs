//! `IORING_OP_OPENAT`.

use std::ffi::CString;
use std::io;

use io_uring::{opcode, squeue, types};

use super::{Op, OpKind};
use crate::driver::epoll::{BlockingOp, SysOp};
use crate::driver::{Completion, Orphan};
use crate::fd::SharedFd;

pub(crate) struct OpenAt {
    /// The path the kernel reads; owned here so it outlives the op even if the future is dropped.
    path: CString,
    flags: i32,
    mode: libc::mode_t,
}

impl OpKind for OpenAt {
    type Output = io::Result<SharedFd>;
    /// A completion nobody waits for carries a new fd: close it.
    const ORPHAN: Orphan = Orphan::CloseFd;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), self.path.as_ptr())
            .flags(self.flags)
            .mode(self.mode)
            .build()
    }

    fn sys_op(&mut self) -> SysOp {
        SysOp::Blocking(BlockingOp::OpenAt {
            path: self.path.as_ptr(),
            flags: self.flags,
            mode: self.mode,
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|fd| SharedFd::new(fd as i32))
    }
}

/// Opens `path` (relative paths from the current directory) with `open(2)` `flags` and `mode`.
pub(crate) fn openat(path: CString, flags: i32, mode: libc::mode_t) -> io::Result<Op<OpenAt>> {
    Op::submit(OpenAt { path, flags, mode }).map_err(|(e, _)| e)
}
