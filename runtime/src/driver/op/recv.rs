//! `IORING_OP_RECV`: into an owned buffer, or multishot from the provided buffer ring.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Multi, Op, OpKind};
use crate::buf::IoBufMut;
use crate::driver::buf_ring::BUF_GROUP;
use crate::driver::epoll::{ReadyCall, ReadyOp, SysOp};
use crate::driver::{Completion, Orphan};
use crate::fd::SharedFd;

pub(crate) struct Recv<B> {
    fd: SharedFd,
    buf: B,
}

impl<B: IoBufMut> OpKind for Recv<B> {
    type Output = (io::Result<usize>, B);

    const RECEIVE: bool = true;

    fn sqe(&mut self) -> squeue::Entry {
        let init = self.buf.bytes_init();
        let total = self.buf.bytes_total();
        // SAFETY: `init <= total`, so the pointer stays inside the buffer's allocation.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(init) };
        let len = u32::try_from(total - init).unwrap_or(u32::MAX);
        opcode::Recv::new(types::Fd(self.fd.raw()), ptr, len).build()
    }

    fn sys_op(&mut self) -> SysOp {
        let init = self.buf.bytes_init();
        let total = self.buf.bytes_total();
        // SAFETY: `init <= total`, so the pointer stays inside the buffer's allocation.
        let ptr = unsafe { self.buf.stable_mut_ptr().add(init) };
        SysOp::Ready(ReadyOp {
            fd: self.fd.clone(),
            call: ReadyCall::Recv {
                ptr,
                len: total - init,
            },
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

/// Receives into the spare capacity of `buf`.
pub(crate) fn recv<B: IoBufMut>(fd: &SharedFd, buf: B) -> Result<Op<Recv<B>>, (io::Error, B)> {
    Op::submit(Recv { fd: fd.clone(), buf }).map_err(|(e, op)| (e, op.buf))
}

/// Arms a multishot receive that picks buffers from the shard's provided buffer ring.
pub(in crate::driver) fn recv_multi(fd: &SharedFd) -> io::Result<Multi> {
    let sqe = opcode::RecvMulti::new(types::Fd(fd.raw()), BUF_GROUP).build();
    // SAFETY: the SQE carries no pointers of ours (the kernel picks ring buffers, which the
    // driver owns); the fd handle travels with the stream.
    unsafe { Multi::submit(sqe, Orphan::Nothing, true, Box::new(fd.clone())) }
}
