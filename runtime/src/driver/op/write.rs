//! `IORING_OP_WRITE` at a file offset, from an owned buffer.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};
use crate::buf::IoBuf;
use crate::driver::epoll::{BlockingOp, SysOp};
use crate::fd::SharedFd;

pub(crate) struct Write<B> {
    fd: SharedFd,
    buf: B,
    /// Where in `buf` the bytes to write start (a resumed partial write).
    skip: usize,
    pos: u64,
}

impl<B: IoBuf> OpKind for Write<B> {
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        let init = self.buf.bytes_init();
        let skip = self.skip.min(init);
        // SAFETY: `skip <= init`, inside the buffer.
        let ptr = unsafe { self.buf.stable_ptr().add(skip) };
        let len = u32::try_from(init - skip).unwrap_or(u32::MAX);
        opcode::Write::new(types::Fd(self.fd.raw()), ptr, len)
            .offset(self.pos)
            .build()
    }

    fn sys_op(&mut self) -> SysOp {
        let init = self.buf.bytes_init();
        let skip = self.skip.min(init);
        // SAFETY: `skip <= init`, inside the buffer.
        let ptr = unsafe { self.buf.stable_ptr().add(skip) };
        SysOp::Blocking(BlockingOp::Write {
            fd: self.fd.raw(),
            ptr,
            len: init - skip,
            pos: self.pos,
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        (c.io_result().map(|n| n as usize), self.buf)
    }
}

/// Writes `buf[skip..]` at file offset `pos`.
pub(crate) fn write_at<B: IoBuf>(
    fd: &SharedFd,
    buf: B,
    skip: usize,
    pos: u64,
) -> Result<Op<Write<B>>, (io::Error, B)> {
    Op::submit(Write {
        fd: fd.clone(),
        buf,
        skip,
        pos,
    })
    .map_err(|(e, op)| (e, op.buf))
}
