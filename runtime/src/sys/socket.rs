//! Thin, checked wrappers over the socket syscalls that do not go through the ring.

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

fn check(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A new non-blocking, close-on-exec TCP socket for `addr`'s family.
pub(crate) fn tcp_socket(addr: &SocketAddr) -> io::Result<RawFd> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: socket has no memory-safety preconditions; the result is checked.
    check(unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })
}

pub(crate) fn set_opt(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 and its exact size.
    check(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

pub(crate) fn get_opt(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: i32 = 0;
    let mut len = mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: passes a pointer to a live i32 and its size.
    check(unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut i32).cast(), &mut len) })?;
    Ok(value)
}

/// Encodes `addr` as a sockaddr.
pub(crate) fn to_sockaddr(addr: &SocketAddr) -> (Box<libc::sockaddr_storage>, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut storage: Box<libc::sockaddr_storage> = Box::new(unsafe { mem::zeroed() });
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut *storage as *mut libc::sockaddr_storage).cast(), sin) };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut *storage as *mut libc::sockaddr_storage).cast(), sin6) };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Ok(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Ok(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        f => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected address family {f}"),
        )),
    }
}

fn name(fd: RawFd, peer: bool) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ptr = (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    // SAFETY: `ptr`/`len` describe our live, writable storage.
    let ret = unsafe {
        if peer {
            libc::getpeername(fd, ptr, &mut len)
        } else {
            libc::getsockname(fd, ptr, &mut len)
        }
    };
    check(ret)?;
    from_sockaddr(&storage)
}

pub(crate) fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name(fd, true)
}

pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name(fd, false)
}

pub(crate) fn bind_listen(fd: RawFd, addr: &SocketAddr, backlog: i32) -> io::Result<()> {
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage`/`len` describe a valid sockaddr for the socket's family.
    check(unsafe { libc::bind(fd, (&*storage as *const libc::sockaddr_storage).cast(), len) })?;
    // SAFETY: listen has no memory-safety preconditions.
    check(unsafe { libc::listen(fd, backlog) })?;
    Ok(())
}

/// `shutdown(fd, how)`, synchronously (for `Drop`, where no ring op can be awaited).
pub(crate) fn shutdown(fd: RawFd, how: i32) -> io::Result<()> {
    // SAFETY: shutdown takes plain integers; no pointers.
    check(unsafe { libc::shutdown(fd, how) }).map(|_| ())
}

/// `recv(fd, ptr, len, flags)` as a plain system call. glibc's `recv` and `send` are
/// thread-cancellation points, and each call brackets the system call with the switching of
/// the asynchronous cancellation state (about 30 instructions a call); the runtime never
/// cancels threads, so its per-request calls skip that.
///
/// # Safety
///
/// `ptr..ptr + len` must be writable memory that nothing else accesses during the call.
pub(crate) unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize, flags: i32) -> isize {
    // SAFETY: recvfrom with a null address asks for no peer address; the buffer is the
    // caller's promise.
    unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            ptr,
            len,
            flags,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        ) as isize
    }
}

/// `send(fd, ptr, len, flags)` as a plain system call (see [`recv_raw`]).
///
/// # Safety
///
/// `ptr..ptr + len` must be initialised memory that stays valid during the call.
pub(crate) unsafe fn send_raw(fd: RawFd, ptr: *const u8, len: usize, flags: i32) -> isize {
    // SAFETY: sendto with a null address and zero length is send; the buffer is the caller's
    // promise.
    unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            ptr,
            len,
            flags,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        ) as isize
    }
}

/// One non-blocking `recv` into the spare capacity of `buf`, whose length grows by the bytes
/// received. `Ok(0)`: the peer closed its side. `EAGAIN` comes back as an error.
pub(crate) fn recv_spare(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `buf`, which nothing
    // else touches during the call.
    let r = unsafe { recv_raw(fd, spare.as_mut_ptr().cast(), spare.len(), libc::MSG_DONTWAIT) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = r as usize;
    // SAFETY: the kernel initialised `n <= spare.len()` bytes right after the current length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// One non-blocking `send` of `bytes` (never raising `SIGPIPE`); `EAGAIN` comes back as an
/// error.
pub(crate) fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is a live, initialised slice of the length given.
    let r = unsafe {
        send_raw(
            fd,
            bytes.as_ptr(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
