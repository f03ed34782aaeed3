//! The per-core provided buffer ring for multishot receive.
//!
//! One ring of `n` equally sized buffers per shard, registered with the kernel as buffer group
//! [`BUF_GROUP`]. A multishot receive takes a buffer only when data arrives, so an idle
//! connection holds no receive buffer. The buffer comes back to the ring when the
//! [`RecvBuf`](crate::net::RecvBuf) that carries it is dropped.
//!
//! **A small hot set, last in first out.** The kernel takes buffers from the ring in the
//! order they were published, so a ring holding all `n` buffers would hand out each of them
//! in turn: at 4 KiB each, every receive would land in memory not touched for `n - 1`
//! receives (4 MiB for the default 1024), a cache and TLB miss for the kernel's copy and for
//! the parser's read. So only a window of buffers is published (32 at first); the rest wait
//! on a stack of free buffers, and a buffer given back goes on top of it, to be published
//! again next. The same few buffers then carry nearly every receive. A window the kernel
//! empties (a receive ends with `ENOBUFS`) doubles, up to `n`, so a burst over many
//! connections costs one fallback receive per connection once, not on every burst.

use std::cell::{Cell, RefCell};
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// The buffer group id of the shard's ring.
pub(crate) const BUF_GROUP: u16 = 0;

/// Buffers published to the kernel at first (see the module's notes).
const FIRST_WINDOW: u16 = 32;

pub(crate) struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    entries: u16,
    buf_size: u32,
    /// The buffer area, from `Box::into_raw` (mutable provenance: the kernel writes into it
    /// while we hold no reference to it); freed in `Drop`.
    bufs: NonNull<u8>,
    bufs_len: usize,
    tail: Cell<u16>,
    /// Buffers out with the application or queued in a stream (gauge for tests and stats).
    out: Cell<u32>,
    /// Buffers neither published nor out, the last given back on top.
    free: RefCell<Vec<u16>>,
    /// Buffers published and not yet reported taken by a completion (the kernel may have
    /// taken some whose completions are not reaped yet: then fewer are in the ring).
    published: Cell<u16>,
    /// How many buffers to keep published.
    window: Cell<u16>,
}

impl BufRing {
    /// Allocates and registers the ring. `entries` is rounded to a power of two.
    pub(crate) fn new(ring: &IoUring, entries: u16, buf_size: u32) -> io::Result<Self> {
        let entries = entries.clamp(1, 32768).next_power_of_two();
        let ring_bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; all arguments are valid and the result checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let Some(ptr) = NonNull::new(addr.cast::<BufRingEntry>()) else {
            return Err(io::Error::other("mmap returned null"));
        };
        let area: Box<[u8]> = vec![0u8; usize::from(entries) * buf_size as usize].into_boxed_slice();
        let bufs_len = area.len();
        let Some(bufs) = NonNull::new(Box::into_raw(area).cast::<u8>()) else {
            return Err(io::Error::other("buffer allocation returned null"));
        };
        let this = Self {
            ring: ptr,
            ring_bytes,
            entries,
            buf_size,
            bufs,
            bufs_len,
            tail: Cell::new(0),
            out: Cell::new(0),
            // Buffer 0 on top.
            free: RefCell::new((0..entries).rev().collect()),
            published: Cell::new(0),
            window: Cell::new(FIRST_WINDOW.min(entries)),
        };
        // SAFETY: the ring memory is page aligned (mmap), `entries` long, and lives until
        // `unregister` + drop; the kernel reads it only while registered.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr.as_ptr() as u64, entries, BUF_GROUP, 0)?;
        }
        this.refill();
        Ok(this)
    }

    pub(crate) fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Buffers held by the application or queued in streams (not free, not published).
    pub(crate) fn out(&self) -> u32 {
        self.out.get()
    }

    /// How many buffers the ring keeps published (see the module's notes).
    pub(crate) fn window(&self) -> u16 {
        self.window.get()
    }

    /// The bytes of buffer `bid`, `len` long.
    ///
    /// # Safety
    ///
    /// `bid` must have been handed out by the kernel with `len` bytes written and not yet be
    /// recycled.
    pub(crate) unsafe fn slice(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid.min(self.entries - 1)) * self.buf_size as usize;
        let len = len.min(self.buf_size as usize);
        // SAFETY: `start + len <= bufs_len` (bid < entries, len <= buf_size); the caller
        // guarantees the kernel is done with this buffer and it is not recycled while the
        // returned slice lives. Only this buffer's bytes are covered, so the kernel may write
        // other buffers meanwhile.
        unsafe { std::slice::from_raw_parts(self.bufs.as_ptr().add(start), len) }
    }

    /// Takes buffer `bid` back from the application: it is published again next (it is the
    /// one most likely still in the cache).
    pub(crate) fn recycle(&self, bid: u16) {
        if bid >= self.entries {
            return;
        }
        let mut free = self.free.borrow_mut();
        // A buffer given back twice would be published twice, one copy still being read.
        debug_assert!(!free.contains(&bid), "buffer {bid} given back twice");
        free.push(bid);
        drop(free);
        self.out.set(self.out.get().saturating_sub(1));
        self.refill();
    }

    /// Records that the kernel handed out a buffer (a completion carried it).
    pub(crate) fn taken(&self) {
        self.out.set(self.out.get() + 1);
        self.published.set(self.published.get().saturating_sub(1));
        self.refill();
    }

    /// Records that the kernel found the ring empty (a receive ended with `ENOBUFS`): the
    /// window doubles, up to every buffer.
    pub(crate) fn starved(&self) {
        let grown = self.window.get().saturating_mul(2).min(self.entries);
        self.window.set(grown);
        self.refill();
    }

    /// Publishes free buffers, the last given back first, until the window is full.
    fn refill(&self) {
        let mut free = self.free.borrow_mut();
        let mut tail = self.tail.get();
        let start = tail;
        while self.published.get() < self.window.get() {
            let Some(bid) = free.pop() else { break };
            self.write_entry(tail, bid);
            tail = tail.wrapping_add(1);
            self.published.set(self.published.get() + 1);
        }
        if tail == start {
            return;
        }
        self.tail.set(tail);
        // SAFETY: the tail field lives in entry 0 of our mapping and is 2-byte aligned; the
        // kernel reads it concurrently, hence the atomic release store (after the entries).
        unsafe {
            let tail_ptr = BufRingEntry::tail(self.ring.as_ptr()) as *mut u16;
            AtomicU16::from_ptr(tail_ptr).store(tail, Ordering::Release);
        }
    }

    /// Writes the ring entry at position `tail` for buffer `bid` (not yet visible to the
    /// kernel: the tail store publishes it).
    fn write_entry(&self, tail: u16, bid: u16) {
        let idx = usize::from(tail & (self.entries - 1));
        let addr = self.bufs.as_ptr() as u64 + u64::from(bid) * u64::from(self.buf_size);
        // SAFETY: `idx < entries`, so the entry is inside the page-aligned mapping, and the
        // fields are written through raw pointers at their ABI offsets (struct io_uring_buf:
        // addr u64 at 0, len u32 at 8, bid u16 at 12, resv/tail u16 at 14) without forming a
        // reference to the entry: entry 0's last field is the tail the kernel reads. The
        // kernel reads entries only up to the published tail, and this one is beyond it until
        // the tail store in `refill`; at most `entries` buffers exist, so no published entry
        // is overwritten.
        unsafe {
            let entry = self.ring.as_ptr().add(idx).cast::<u8>();
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(self.buf_size);
            entry.add(12).cast::<u16>().write(bid);
        }
    }

    pub(crate) fn unregister(&self, ring: &IoUring) {
        let _ = ring.submitter().unregister_buf_ring(BUF_GROUP);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with this length and is unmapped once. The
        // driver unregisters the ring (or closes it) before the last reference goes.
        unsafe { libc::munmap(self.ring.as_ptr().cast(), self.ring_bytes) };
        // SAFETY: `bufs`/`bufs_len` came from `Box::into_raw` of a boxed slice of that length
        // in `new`, and are freed once, here, when no RecvBuf (each holds an Rc to us) and no
        // registered ring can reach them any more.
        drop(unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.bufs.as_ptr(),
                self.bufs_len,
            ))
        });
    }
}
