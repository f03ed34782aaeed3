//! `IORING_OP_SEND` and `IORING_OP_SENDMSG` (vectored), always with `MSG_NOSIGNAL`.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};
use crate::buf::IoBuf;
use crate::driver::epoll::{ReadyCall, ReadyOp, SysOp};
use crate::fd::SharedFd;

pub(crate) struct Send<B> {
    fd: SharedFd,
    buf: B,
    offset: usize,
}

impl<B: IoBuf> OpKind for Send<B> {
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        let init = self.buf.bytes_init();
        let offset = self.offset.min(init);
        // SAFETY: `offset <= init`, inside the buffer.
        let ptr = unsafe { self.buf.stable_ptr().add(offset) };
        let len = u32::try_from(init - offset).unwrap_or(u32::MAX);
        opcode::Send::new(types::Fd(self.fd.raw()), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }

    fn sys_op(&mut self) -> SysOp {
        let init = self.buf.bytes_init();
        let offset = self.offset.min(init);
        // SAFETY: `offset <= init`, inside the buffer.
        let ptr = unsafe { self.buf.stable_ptr().add(offset) };
        SysOp::Ready(ReadyOp {
            fd: self.fd.clone(),
            call: ReadyCall::Send {
                ptr,
                len: init - offset,
            },
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        (c.io_result().map(|n| n as usize), self.buf)
    }
}

/// Sends `buf[offset..]`.
pub(crate) fn send<B: IoBuf>(fd: &SharedFd, buf: B, offset: usize) -> Result<Op<Send<B>>, (io::Error, B)> {
    Op::submit(Send {
        fd: fd.clone(),
        buf,
        offset,
    })
    .map_err(|(e, op)| (e, op.buf))
}

pub(crate) struct SendMsg<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
    msg: Box<libc::msghdr>,
}

impl<B: IoBuf> OpKind for SendMsg<B> {
    type Output = (io::Result<usize>, Vec<B>);

    fn sqe(&mut self) -> squeue::Entry {
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovecs.len() as _;
        opcode::SendMsg::new(types::Fd(self.fd.raw()), &*self.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }

    fn sys_op(&mut self) -> SysOp {
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovecs.len() as _;
        SysOp::Ready(ReadyOp {
            fd: self.fd.clone(),
            call: ReadyCall::SendMsg { msg: &*self.msg },
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        (c.io_result().map(|n| n as usize), self.bufs)
    }
}

/// Sends all `bufs` in one `sendmsg`, skipping the first `skip` bytes.
pub(crate) fn sendmsg<B: IoBuf>(
    fd: &SharedFd,
    bufs: Vec<B>,
    skip: usize,
) -> Result<Op<SendMsg<B>>, (io::Error, Vec<B>)> {
    let mut skip = skip;
    let mut iovecs = Vec::with_capacity(bufs.len());
    for b in &bufs {
        let len = b.bytes_init();
        if skip >= len {
            skip -= len;
            continue;
        }
        iovecs.push(libc::iovec {
            // SAFETY: `skip < len`, inside the buffer.
            iov_base: unsafe { b.stable_ptr().add(skip) } as *mut libc::c_void,
            iov_len: len - skip,
        });
        skip = 0;
    }
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    Op::submit(SendMsg {
        fd: fd.clone(),
        bufs,
        iovecs,
        msg,
    })
    .map_err(|(e, op)| (e, op.bufs))
}
