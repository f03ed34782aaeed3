//! `IORING_OP_CONNECT`.

use std::io;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op, OpKind};
use crate::driver::epoll::{ReadyCall, ReadyOp, SysOp};
use crate::fd::SharedFd;

pub(crate) struct Connect {
    fd: SharedFd,
    addr: Box<libc::sockaddr_storage>,
    len: libc::socklen_t,
}

impl OpKind for Connect {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        let ptr = (&*self.addr as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
        opcode::Connect::new(types::Fd(self.fd.raw()), ptr, self.len).build()
    }

    fn sys_op(&mut self) -> SysOp {
        SysOp::Ready(ReadyOp {
            fd: self.fd.clone(),
            call: ReadyCall::Connect {
                addr: (&*self.addr as *const libc::sockaddr_storage).cast::<libc::sockaddr>(),
                len: self.len,
                connected: false,
            },
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        c.io_result().map(|_| ())
    }
}

pub(crate) fn connect(
    fd: &SharedFd,
    addr: Box<libc::sockaddr_storage>,
    len: libc::socklen_t,
) -> io::Result<Op<Connect>> {
    Op::submit(Connect {
        fd: fd.clone(),
        addr,
        len,
    })
    .map_err(|(e, _)| e)
}
