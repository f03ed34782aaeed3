//! `SysOp`: an operation as the epoll driver carries it out, the counterpart of an io_uring
//! SQE. Each op file builds one ([`OpKind::sys_op`](crate::driver::op::OpKind::sys_op)) with
//! raw pointers into the resources its future owns, exactly as it builds its SQE.
//!
//! Socket calls ([`ReadyOp`]) are made non-blocking on the core: tried at once, and again each
//! time epoll reports the fd ready, until they stop answering `EAGAIN`. File calls
//! ([`BlockingOp`]) go to the blocking pool. `Nop` and `Close` complete at once.

use std::os::fd::RawFd;

use crate::driver::{Completion, Errno};
use crate::fd::SharedFd;

/// What one operation asks of the epoll driver.
pub(crate) enum SysOp {
    /// Completes at once with 0.
    Nop,
    /// `close(fd)` on the core (a socket: it never blocks).
    Close(RawFd),
    /// A socket call retried on readiness.
    Ready(ReadyOp),
    /// A file call run on the blocking pool.
    Blocking(BlockingOp),
}

/// A socket call and the fd (handle) it works on.
pub(crate) struct ReadyOp {
    pub(crate) fd: SharedFd,
    pub(crate) call: ReadyCall,
}

/// Which readiness a waiting socket call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// A non-blocking socket call. Pointers point into the op future's heap resources.
pub(crate) enum ReadyCall {
    /// Waits for readiness holding its buffer. (A stream's receives do not come here: the
    /// driver makes them itself, see `EpollDriver::poll_recv`.)
    Recv {
        ptr: *mut u8,
        len: usize,
    },
    Send {
        ptr: *const u8,
        len: usize,
    },
    SendMsg {
        msg: *const libc::msghdr,
    },
    Accept,
    /// `connected` turns true once `connect` said `EINPROGRESS`: from then on the result is
    /// read from `SO_ERROR` when the socket turns writable.
    Connect {
        addr: *const libc::sockaddr,
        len: libc::socklen_t,
        connected: bool,
    },
    Shutdown {
        how: i32,
    },
}

/// A blocking file call. Pointers point into the op future's heap resources; the fd is kept
/// open by the op's fd handle.
pub(crate) enum BlockingOp {
    Read {
        fd: RawFd,
        ptr: *mut u8,
        len: usize,
        pos: u64,
    },
    Write {
        fd: RawFd,
        ptr: *const u8,
        len: usize,
        pos: u64,
        /// `RWF_*` flags: 0 is a plain `pwrite`, anything else a `pwritev2` with them.
        rw_flags: i32,
    },
    Fsync {
        fd: RawFd,
        datasync: bool,
    },
    Ftruncate {
        fd: RawFd,
        len: u64,
    },
    OpenAt {
        path: *const libc::c_char,
        flags: i32,
        mode: libc::mode_t,
    },
    Close {
        fd: RawFd,
    },
}

// SAFETY: a `BlockingOp` is sent to a pool thread together with its slot key. The memory its
// pointers name belongs to the op's resources, which the submitting core keeps alive (in the
// op future, or in the driver's slot once the future is dropped) and never touches until the
// pool's completion for that key has come back; at shutdown, resources of calls still on the
// pool are leaked, never freed. So the pool thread has exclusive use of that memory while it
// runs the call.
unsafe impl Send for BlockingOp {}

fn result(ret: isize) -> Completion {
    if ret < 0 {
        Completion::new(Err(Errno(last_errno())))
    } else {
        Completion::new(Ok(u32::try_from(ret).unwrap_or(u32::MAX)))
    }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Clamps a length to what one call may transfer and a completion can report.
fn clamp(len: usize) -> usize {
    len.min(u32::MAX as usize >> 1)
}

impl ReadyOp {
    /// The readiness this call waits for after `EAGAIN`.
    pub(crate) fn interest(&self) -> Interest {
        match self.call {
            ReadyCall::Recv { .. } | ReadyCall::Accept => Interest::Read,
            ReadyCall::Send { .. } | ReadyCall::SendMsg { .. } | ReadyCall::Connect { .. } => Interest::Write,
            ReadyCall::Shutdown { .. } => Interest::Write,
        }
    }

    /// Makes the call; `None` if it would block (wait for readiness and try again). A call
    /// interrupted by a signal is made again at once.
    pub(crate) fn attempt(&mut self) -> Option<Completion> {
        for _ in 0..8 {
            match self.attempt_once() {
                Some(Completion {
                    result: Err(Errno(libc::EINTR)),
                    ..
                }) => continue,
                other => return other,
            }
        }
        None
    }

    fn attempt_once(&mut self) -> Option<Completion> {
        let fd = self.fd.raw();
        let ret: isize = match &mut self.call {
            ReadyCall::Recv { ptr, len } => {
                // SAFETY: `ptr..ptr+len` is the spare capacity of a buffer the op owns (see
                // the `Recv` op), valid and not otherwise accessed while the op is in flight.
                unsafe { crate::sys::socket::recv_raw(fd, ptr.cast(), clamp(*len), libc::MSG_DONTWAIT) }
            }
            ReadyCall::Send { ptr, len } => {
                // SAFETY: `ptr..ptr+len` is the initialised part of a buffer the op owns.
                unsafe {
                    crate::sys::socket::send_raw(
                        fd,
                        ptr.cast(),
                        clamp(*len),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                }
            }
            ReadyCall::SendMsg { msg } => {
                // SAFETY: `msg` points to the op's boxed msghdr, whose iovecs point into the
                // buffers the op owns.
                unsafe { libc::sendmsg(fd, *msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) }
            }
            ReadyCall::Accept => {
                // SAFETY: null address pointers ask for no peer address.
                let r = unsafe {
                    libc::accept4(
                        fd,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    )
                };
                r as isize
            }
            ReadyCall::Connect { addr, len, connected } => {
                if *connected {
                    return connect_result(fd);
                }
                // SAFETY: `addr`/`len` describe the op's boxed sockaddr_storage.
                let r = unsafe { libc::connect(fd, *addr, *len) };
                if r < 0 && last_errno() == libc::EINPROGRESS {
                    *connected = true;
                    return None;
                }
                r as isize
            }
            ReadyCall::Shutdown { how } => {
                // SAFETY: plain integers.
                (unsafe { libc::shutdown(fd, *how) }) as isize
            }
        };
        let c = result(ret);
        match c.result {
            Err(Errno(libc::EAGAIN)) => None,
            _ => Some(c),
        }
    }
}

/// The outcome of a connect that said `EINPROGRESS`, once the socket is writable:
/// `SO_ERROR`, or `None` while it is still in progress.
fn connect_result(fd: RawFd) -> Option<Completion> {
    let mut err: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `err`/`len` are live locals of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut i32).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Some(Completion::new(Err(Errno(last_errno()))));
    }
    match err {
        0 => {
            // Writable with no error can also mean "not yet" on a spurious wake-up: a
            // connected socket has a peer.
            // SAFETY: sockaddr_storage is plain old data; the pointers describe it.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: `ss`/`sl` are live locals of the sizes given.
            let p =
                unsafe { libc::getpeername(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut sl) };
            if p == 0 {
                Some(Completion::new(Ok(0)))
            } else if last_errno() == libc::ENOTCONN {
                None
            } else {
                Some(Completion::new(Err(Errno(last_errno()))))
            }
        }
        libc::EINPROGRESS | libc::EALREADY => None,
        e => Some(Completion::new(Err(Errno(e)))),
    }
}

impl BlockingOp {
    /// Makes the (blocking) call; runs on a pool thread.
    pub(crate) fn run(&self) -> Completion {
        let ret: isize = match *self {
            BlockingOp::Read { fd, ptr, len, pos } => match libc::off_t::try_from(pos) {
                // SAFETY: `ptr..ptr+len` is the spare capacity of a buffer the op owns, used
                // by nobody else until this call's completion is delivered (see `Send`).
                Ok(off) => unsafe { libc::pread(fd, ptr.cast(), clamp(len), off) },
                Err(_) => return Completion::new(Err(Errno(libc::EINVAL))),
            },
            BlockingOp::Write {
                fd,
                ptr,
                len,
                pos,
                rw_flags,
            } => match libc::off_t::try_from(pos) {
                // SAFETY: `ptr..ptr+len` is the initialised part of a buffer the op owns.
                Ok(off) if rw_flags == 0 => unsafe { libc::pwrite(fd, ptr.cast(), clamp(len), off) },
                Ok(off) => {
                    let iov = libc::iovec {
                        iov_base: ptr.cast_mut().cast(),
                        iov_len: clamp(len),
                    };
                    // SAFETY: `iov` (on this stack frame, outliving the call) describes the
                    // initialised part of a buffer the op owns; the kernel only reads it.
                    unsafe { libc::pwritev2(fd, &iov, 1, off, rw_flags) }
                }
                Err(_) => return Completion::new(Err(Errno(libc::EINVAL))),
            },
            BlockingOp::Fsync { fd, datasync } => {
                // SAFETY: plain integers.
                (unsafe {
                    if datasync {
                        libc::fdatasync(fd)
                    } else {
                        libc::fsync(fd)
                    }
                }) as isize
            }
            BlockingOp::Ftruncate { fd, len } => match libc::off_t::try_from(len) {
                // SAFETY: plain integers.
                Ok(len) => (unsafe { libc::ftruncate(fd, len) }) as isize,
                Err(_) => return Completion::new(Err(Errno(libc::EINVAL))),
            },
            BlockingOp::OpenAt { path, flags, mode } => {
                // SAFETY: `path` points to the op's owned, NUL-terminated CString.
                (unsafe { libc::openat(libc::AT_FDCWD, path, flags, mode as libc::c_uint) }) as isize
            }
            BlockingOp::Close { fd } => {
                // SAFETY: the op owns `fd` (its caller gave it up) and closes it once, here.
                (unsafe { libc::close(fd) }) as isize
            }
        };
        result(ret)
    }
}
