//! `naive_uring`: the fixed-response HTTP/1.1 server written straight on the `io-uring` crate,
//! with no runtime: the floor a runtime should match.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin naive_uring -- --addr
//! 127.0.0.1:8080 --cores 0,`
//!
//! One thread per listed core (one by default), each with its own ring and its own
//! `SO_REUSEPORT` listener, and one loop: publish recycled receive buffers, one
//! `io_uring_enter` that submits everything queued and waits for a completion
//! (`submit_and_wait(1)`), then handle every completion. Connections come from a multishot
//! accept; bytes from a multishot receive on a provided buffer ring (so an idle connection
//! holds no receive buffer); each complete request (`"\r\n\r\n"`) gets the fixed response,
//! and all requests answered by one receive go out in one send from a static buffer. With
//! `BENCH_HTTPARSE=1` each head is parsed with `httparse` first (`ringcore_benches::Framing`;
//! `bare_hp` in the scripts: the floor as issue 12 defines it).
//! SIGINT/SIGTERM are blocked and watched through a `signalfd` polled on every ring.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::ptr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::thread;

use io_uring::types::{BufRingEntry, Fd};
use io_uring::{cqueue, opcode, squeue, IoUring};
use ringcore_benches::{
    bind_listeners, join_all, parse_server_args, pin_to, responses, wait_started, Framing, RequestCounter,
    MAX_BATCH,
};
use slab::Slab;

/// Submission queue entries per ring (the completion queue gets four times more), as ringcore.
const RING_ENTRIES: u32 = 1024;
/// Provided receive buffers per ring, and their size: ringcore's defaults.
const BUF_ENTRIES: u16 = 1024;
const BUF_SIZE: usize = 4096;
/// The buffer group id of the ring's provided buffers.
const BGID: u16 = 0;

/// `user_data` = kind << 32 | connection key.
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
const SIGNAL: u64 = 4;

fn token(kind: u64, key: usize) -> u64 {
    (kind << 32) | key as u64
}

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping at an address the kernel picks; the result is
        // checked before use.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { ptr: ptr.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and nothing uses them after drop.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A provided buffer ring: `BUF_ENTRIES` buffers of `BUF_SIZE` bytes the kernel picks from.
struct BufRing {
    /// The page-aligned ring of `io_uring_buf` entries shared with the kernel.
    entries: Mapping,
    /// The buffers themselves (pages are only backed once the kernel writes them).
    bufs: Mapping,
    /// Our copy of the tail; published with `publish`.
    tail: u16,
}

impl BufRing {
    /// Maps the ring and the buffers, registers them with `ring`, and hands every buffer over.
    fn new(ring: &IoUring) -> io::Result<BufRing> {
        let entries = Mapping::new(usize::from(BUF_ENTRIES) * mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(usize::from(BUF_ENTRIES) * BUF_SIZE)?;
        // SAFETY: `entries` is a page-aligned, zeroed mapping of BUF_ENTRIES entries that lives
        // as long as this BufRing, which the server drops only after the ring itself.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries.ptr as u64, BUF_ENTRIES, BGID, 0)?;
        }
        let mut br = BufRing {
            entries,
            bufs,
            tail: 0,
        };
        for bid in 0..BUF_ENTRIES {
            br.give(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Queues buffer `bid` for the kernel (visible once `publish` runs).
    fn give(&mut self, bid: u16) {
        let slot = usize::from(self.tail & (BUF_ENTRIES - 1));
        // SAFETY: `slot < BUF_ENTRIES`, so the entry lies inside the mapping; the kernel does not
        // read entries past the published tail, so writing this one races with nothing.
        let entry = unsafe { &mut *self.entries.ptr.cast::<BufRingEntry>().add(slot) };
        // SAFETY: `bid < BUF_ENTRIES`, so the buffer lies inside the `bufs` mapping.
        let addr = unsafe { self.bufs.ptr.add(usize::from(bid) * BUF_SIZE) };
        entry.set_addr(addr as u64);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every buffer given since the last call visible to the kernel.
    fn publish(&self) {
        // SAFETY: the entry mapping is page aligned and initialised; the tail is the `resv`
        // field of its first entry, a u16 the kernel only reads.
        let tail = unsafe { BufRingEntry::tail(self.entries.ptr.cast::<BufRingEntry>()) };
        // SAFETY: `tail` points at a live, 2-byte-aligned u16 shared with the kernel, which
        // reads it atomically; we are its only writer.
        let tail = unsafe { AtomicU16::from_ptr(tail.cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`.
    ///
    /// # Safety
    ///
    /// The kernel must have handed `bid` to us with at least `len` bytes written, and `bid` must
    /// not be given back while the slice lives.
    unsafe fn slice(&self, bid: u16, len: usize) -> &[u8] {
        let len = len.min(BUF_SIZE);
        // SAFETY: `bid < BUF_ENTRIES` (clamped) and `len <= BUF_SIZE`, so the range lies inside
        // the mapping; the caller guarantees the kernel wrote it and will not write it now.
        unsafe {
            std::slice::from_raw_parts(self.bufs.ptr.add(usize::from(bid % BUF_ENTRIES) * BUF_SIZE), len)
        }
    }
}

/// A response being sent: a static slice and how much of it went out.
struct Sending {
    buf: &'static [u8],
    done: usize,
}

struct Conn {
    fd: RawFd,
    counter: RequestCounter,
    /// Requests received but not answered yet (not counting the send in flight).
    owed: usize,
    /// The send in flight, if any (at most one per connection, so responses stay in order).
    sending: Option<Sending>,
    /// True while a multishot receive is armed.
    recv_armed: bool,
    /// Shut down after an error: no more sends, close once the receive ends.
    dead: bool,
}

struct Server {
    // Field order matters: the ring drops (unregistering the buffer ring) before its memory.
    ring: IoUring,
    bufs: BufRing,
    listener: std::net::TcpListener,
    sigfd: RawFd,
    conns: Slab<Conn>,
    reported_accept_error: bool,
}

/// Builds a ring with the best flags this kernel takes (the same ladder as ringcore).
fn build_ring() -> io::Result<IoUring> {
    let mut last = None;
    for (single, defer, coop) in [
        (true, true, false),
        (true, false, true),
        (false, false, true),
        (false, false, false),
    ] {
        let mut b = IoUring::builder();
        b.setup_cqsize(RING_ENTRIES * 4).setup_submit_all();
        if single {
            b.setup_single_issuer();
        }
        if defer {
            b.setup_defer_taskrun();
        }
        if coop {
            b.setup_coop_taskrun();
        }
        match b.build(RING_ENTRIES) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("io_uring_setup failed")))
}

impl Server {
    fn new(listener: std::net::TcpListener, sigfd: RawFd) -> io::Result<Server> {
        let ring = build_ring()?;
        let bufs = BufRing::new(&ring)?;
        Ok(Server {
            ring,
            bufs,
            listener,
            sigfd,
            conns: Slab::with_capacity(1024),
            reported_accept_error: false,
        })
    }

    /// Queues an SQE; if the queue is full, submits what is queued first.
    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every SQE we build points only at memory that outlives the operation:
            // static response buffers, or nothing (accept, multishot receive, poll).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        let sqe = opcode::AcceptMulti::new(Fd(self.listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token(ACCEPT, 0));
        self.push(&sqe)
    }

    fn arm_recv(&mut self, key: usize, fd: RawFd) -> io::Result<()> {
        let sqe = opcode::RecvMulti::new(Fd(fd), BGID)
            .build()
            .user_data(token(RECV, key));
        self.push(&sqe)
    }

    fn push_send(&mut self, key: usize, fd: RawFd, rest: &'static [u8]) -> io::Result<()> {
        let sqe = opcode::Send::new(Fd(fd), rest.as_ptr(), rest.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token(SEND, key));
        self.push(&sqe)
    }

    /// Starts the next send on `key` if it owes responses and has none in flight.
    fn maybe_send(&mut self, key: usize) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if c.dead || c.sending.is_some() || c.owed == 0 {
            return Ok(());
        }
        let k = c.owed.min(MAX_BATCH);
        c.owed -= k;
        let buf = responses(k);
        c.sending = Some(Sending { buf, done: 0 });
        let fd = c.fd;
        self.push_send(key, fd, buf)
    }

    /// Stops serving `key` after an error: the armed receive then ends with EOF.
    fn kill(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key) {
            if !c.dead {
                c.dead = true;
                c.owed = 0;
                // SAFETY: shutdown on an fd we own; it only wakes the armed receive.
                unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
            }
        }
    }

    /// Closes `key` once no operation uses it any more.
    fn maybe_close(&mut self, key: usize) {
        let idle = self
            .conns
            .get(key)
            .is_some_and(|c| !c.recv_armed && c.sending.is_none());
        if idle {
            let c = self.conns.remove(key);
            // SAFETY: closing the fd this connection owns; no operation in flight uses it.
            unsafe { libc::close(c.fd) };
        }
    }

    fn on_accept(&mut self, res: i32, flags: u32) -> io::Result<()> {
        if res >= 0 {
            let fd = res;
            let one: libc::c_int = 1;
            // SAFETY: sets TCP_NODELAY on the fresh socket from a live int of the right size.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            let key = self.conns.insert(Conn {
                fd,
                counter: RequestCounter::with_framing(Framing::from_env()),
                owed: 0,
                sending: None,
                recv_armed: true,
                dead: false,
            });
            self.arm_recv(key, fd)?;
        } else if !self.reported_accept_error {
            self.reported_accept_error = true;
            eprintln!("naive_uring: accept: {}", io::Error::from_raw_os_error(-res));
        }
        if !cqueue::more(flags) {
            self.arm_accept()?;
        }
        Ok(())
    }

    fn on_recv(&mut self, key: usize, res: i32, flags: u32) -> io::Result<()> {
        let bid = cqueue::buffer_select(flags);
        let mut failed = false;
        if let (Some(c), Some(bid), true) = (self.conns.get_mut(key), bid, res > 0) {
            // SAFETY: the kernel handed us `bid` with `res` bytes written; it is given back
            // below, after `feed` is done with the slice.
            match c.counter.feed(unsafe { self.bufs.slice(bid, res as usize) }) {
                Ok(n) => c.owed += n,
                Err(_) => failed = true,
            }
        } else if res > 0 && self.conns.contains(key) {
            // Bytes without a buffer: cannot happen with BUFFER_SELECT.
            failed = true;
        }
        if let Some(bid) = bid {
            self.bufs.give(bid);
        }
        if failed {
            self.kill(key);
        }
        if cqueue::more(flags) {
            return self.maybe_send(key);
        }
        // The multishot receive ended. On EOF or an error, close once the send is done;
        // otherwise (out of ring buffers, or the kernel stopped it) re-arm.
        let rearm = res > 0 || res == -libc::ENOBUFS || res == -libc::EINTR;
        match self.conns.get_mut(key) {
            Some(c) if rearm && !c.dead => {
                let fd = c.fd;
                self.arm_recv(key, fd)?;
                self.maybe_send(key)
            }
            Some(c) => {
                c.recv_armed = false;
                self.maybe_close(key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn on_send(&mut self, key: usize, res: i32) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(key) else {
            return Ok(());
        };
        let Some(s) = c.sending.as_mut() else {
            return Ok(());
        };
        if res > 0 {
            s.done += res as usize;
            if s.done < s.buf.len() {
                let buf: &'static [u8] = s.buf;
                let (fd, rest) = (c.fd, &buf[s.done..]);
                return self.push_send(key, fd, rest);
            }
            c.sending = None;
            if c.recv_armed {
                return self.maybe_send(key);
            }
        } else if (res == -libc::EINTR || res == -libc::EAGAIN) && !c.dead {
            let buf: &'static [u8] = s.buf;
            let (fd, rest) = (c.fd, &buf[s.done..]);
            return self.push_send(key, fd, rest);
        } else {
            c.sending = None;
            self.kill(key);
        }
        self.maybe_close(key);
        Ok(())
    }

    /// Serves until SIGINT/SIGTERM.
    fn run(&mut self) -> io::Result<()> {
        self.arm_accept()?;
        let poll = opcode::PollAdd::new(Fd(self.sigfd), libc::POLLIN as u32)
            .build()
            .user_data(token(SIGNAL, 0));
        self.push(&poll)?;
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(RING_ENTRIES as usize * 4);
        loop {
            self.bufs.publish();
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(ud, res, flags) in &cqes {
                let key = (ud & 0xffff_ffff) as usize;
                match ud >> 32 {
                    ACCEPT => self.on_accept(res, flags)?,
                    RECV => self.on_recv(key, res, flags)?,
                    SEND => self.on_send(key, res)?,
                    SIGNAL => return Ok(()),
                    _ => {}
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for (_, c) in self.conns.iter() {
            // SAFETY: each connection owns its fd; the ring (dropped next) keeps its own
            // reference to any file an operation still uses.
            unsafe { libc::close(c.fd) };
        }
    }
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts) and returns a
/// signalfd that becomes readable when one is pending.
fn signal_fd() -> io::Result<RawFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a live sigset_t; these calls only fill it, block it, and make an fd.
    let fd = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut()) != 0 {
            return Err(io::Error::other("pthread_sigmask failed"));
        }
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn main() -> ExitCode {
    let args = match parse_server_args("naive_uring") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let sigfd = match signal_fd() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("naive_uring: signalfd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Bind every listener up front (port 0 picks one port, then every core shares it).
    let Some((addr, listeners)) = bind_listeners("naive_uring", args.addr, args.cores.len()) else {
        return ExitCode::FAILURE;
    };
    let (tx, rx) = mpsc::channel::<io::Result<()>>();
    let mut threads = Vec::new();
    for (listener, &core) in listeners.into_iter().zip(&args.cores) {
        let tx = tx.clone();
        let spawned =
            thread::Builder::new()
                .name(format!("naive-{core}"))
                .spawn(move || -> io::Result<()> {
                    if !pin_to(core) {
                        let e = io::Error::other(format!("cannot pin to core {core}"));
                        let _ = tx.send(Err(io::Error::other(e.to_string())));
                        return Err(e);
                    }
                    let mut server = match Server::new(listener, sigfd) {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    };
                    let _ = tx.send(Ok(()));
                    server.run()
                });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("naive_uring: cannot start a thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    drop(tx);
    if !wait_started("naive_uring", &rx, threads.len()) {
        return ExitCode::FAILURE;
    }
    println!("listening on {addr}");
    let code = if join_all("naive_uring", threads) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    // SAFETY: every thread that polled the signalfd has ended.
    unsafe { libc::close(sigfd) };
    code
}
