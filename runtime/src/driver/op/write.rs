//! `IORING_OP_WRITE` at a file offset, from an owned buffer, optionally with `RWF_DSYNC`.

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
    /// `RWF_*` flags of the write (`rw_flags` on the ring, `pwritev2` on the pool); 0 or
    /// `RWF_DSYNC`.
    rw_flags: i32,
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
            .rw_flags(self.rw_flags)
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
            rw_flags: self.rw_flags,
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        (c.io_result().map(|n| n as usize), self.buf)
    }
}

/// Writes `buf[skip..]` at file offset `pos`; with `dsync`, as `RWF_DSYNC`: the call
/// completes once the written data, and the metadata needed to read it back, are on the
/// device (what a following `fdatasync` would do for this range).
pub(crate) fn write_at<B: IoBuf>(
    fd: &SharedFd,
    buf: B,
    skip: usize,
    pos: u64,
    dsync: bool,
) -> Result<Op<Write<B>>, (io::Error, B)> {
    Op::submit(Write {
        fd: fd.clone(),
        buf,
        skip,
        pos,
        rw_flags: if dsync { libc::RWF_DSYNC } else { 0 },
    })
    .map_err(|(e, op)| (e, op.buf))
}
