//! `IORING_OP_READ` at a file offset, into an owned buffer.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};
use crate::buf::IoBufMut;
use crate::driver::epoll::{BlockingOp, SysOp};
use crate::fd::SharedFd;

pub(crate) struct Read<B> {
    fd: SharedFd,
    buf: B,
    pos: u64,
}

impl<B: IoBufMut> OpKind for Read<B> {
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        let init = self.buf.bytes_init();
        let total = self.buf.bytes_total();
        // SAFETY: `init <= total`, so the pointer stays inside the buffer's allocation.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(init) };
        let len = u32::try_from(total - init).unwrap_or(u32::MAX);
        opcode::Read::new(types::Fd(self.fd.raw()), ptr, len)
            .offset(self.pos)
            .build()
    }

    fn sys_op(&mut self) -> SysOp {
        let init = self.buf.bytes_init();
        let total = self.buf.bytes_total();
        // SAFETY: `init <= total`, so the pointer stays inside the buffer's allocation.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(init) };
        SysOp::Blocking(BlockingOp::Read {
            fd: self.fd.raw(),
            ptr,
            len: total - init,
            pos: self.pos,
        })
    }

    fn complete(mut self, c: Completion) -> Self::Output {
        let out = c.io_result().map(|n| {
            let n = n as usize;
            let init = self.buf.bytes_init();
            // SAFETY: the kernel wrote `n` bytes right after the initialised prefix.
            unsafe { self.buf.set_init(init + n) };
            n
        });
        (out, self.buf)
    }
}

/// Reads from file offset `pos` into the spare capacity of `buf`.
pub(crate) fn read_at<B: IoBufMut>(fd: &SharedFd, buf: B, pos: u64) -> Result<Op<Read<B>>, (io::Error, B)> {
    Op::submit(Read {
        fd: fd.clone(),
        buf,
        pos,
    })
    .map_err(|(e, op)| (e, op.buf))
}
