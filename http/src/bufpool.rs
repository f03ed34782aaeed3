//! Per-core pools of the connections' receive and output buffers. HOT PATH.
//!
//! A connection gives its buffers back the moment it waits with nothing buffered (so an idle
//! keep-alive connection holds none), and takes them again when its next bytes arrive. Without
//! a pool that is one `malloc`/`free` pair per buffer per request on a closed-loop client, and
//! an output buffer regrown from nothing (several `realloc`s) for every answer. The pools are
//! LIFO: the buffer given back last, still in the cache, is the next one taken. Each pool holds
//! at most [`POOLED`] buffers; past that a buffer is freed, so the memory a core keeps for
//! waiting connections is bounded (2 × 128 × 4 KiB = 1 MiB) whatever the number of
//! connections.

use std::cell::RefCell;

use bytes::BytesMut;

/// The capacity a pooled buffer starts with (one receive; a typical batch of answers).
pub(crate) const BUF_CAPACITY: usize = 4096;

/// The most buffers each pool keeps.
pub(crate) const POOLED: usize = 128;

/// A buffer grown past this (a large answer or request) is freed rather than kept.
const MAX_POOLED_CAPACITY: usize = 64 * 1024;

thread_local! {
    /// The output buffers, one pool per thread (per core) for every server on it: a posted
    /// send's buffer comes back here from the runtime's loop ([`recycle_out`]), which knows
    /// no server.
    static OUT: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `buf` (emptied) for the next [`BufPool::take_out`] on this thread, or frees it: the
/// recycle function of the connections' posted sends (`ringcore_runtime::net::SendLane`).
#[inline]
pub(crate) fn recycle_out(mut buf: Vec<u8>) {
    let cap = buf.capacity();
    if !(BUF_CAPACITY..=MAX_POOLED_CAPACITY).contains(&cap) {
        return;
    }
    // `try_with`: a buffer that comes back while the thread is ending is freed.
    let _ = OUT.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED {
            buf.clear();
            pool.push(buf);
        }
    });
}

#[derive(Default)]
pub(crate) struct BufPool {
    rx: RefCell<Vec<BytesMut>>,
}

impl BufPool {
    /// An empty output buffer with room for [`BUF_CAPACITY`] bytes at least.
    #[inline]
    pub(crate) fn take_out(&self) -> Vec<u8> {
        OUT.with(|pool| pool.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(BUF_CAPACITY))
    }

    /// Keeps `buf` (emptied) for the next [`take_out`](Self::take_out), or frees it.
    #[inline]
    pub(crate) fn put_out(&self, buf: Vec<u8>) {
        recycle_out(buf);
    }

    /// An empty receive buffer.
    pub(crate) fn take_rx(&self) -> BytesMut {
        self.rx
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(BUF_CAPACITY))
    }

    /// Keeps `buf` (emptied) for the next [`take_rx`](Self::take_rx), or frees it. A buffer
    /// whose storage still backs bytes handed out (a request a handler kept) is kept too: its
    /// next growth allocates anew, as it would have without the pool.
    pub(crate) fn put_rx(&self, mut buf: BytesMut) {
        let cap = buf.capacity();
        if !(BUF_CAPACITY / 2..=MAX_POOLED_CAPACITY).contains(&cap) {
            return;
        }
        let mut pool = self.rx.borrow_mut();
        if pool.len() < POOLED {
            buf.clear();
            pool.push(buf);
        }
    }

    /// Buffers held now (output, receive).
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        (OUT.with(|p| p.borrow().len()), self.rx.borrow().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_buffer_given_back_is_the_next_taken_and_the_pool_is_bounded() {
        let pool = BufPool::default();
        let a = pool.take_out();
        assert!(a.capacity() >= BUF_CAPACITY);
        let a_ptr = a.as_ptr();
        let b = pool.take_out();
        let b_ptr = b.as_ptr();
        pool.put_out(a);
        pool.put_out(b);
        let first = pool.take_out();
        let second = pool.take_out();
        assert_eq!(first.as_ptr(), b_ptr, "LIFO: the warmest buffer first");
        assert_eq!(second.as_ptr(), a_ptr);

        for _ in 0..POOLED + 10 {
            pool.put_out(Vec::with_capacity(BUF_CAPACITY));
            pool.put_rx(BytesMut::with_capacity(BUF_CAPACITY));
        }
        assert_eq!(pool.held(), (POOLED, POOLED), "never more than POOLED each");
    }

    #[test]
    fn buffers_come_back_empty_and_outsized_ones_are_freed() {
        let pool = BufPool::default();
        let mut out = pool.take_out();
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        pool.put_out(out);
        assert!(pool.take_out().is_empty());

        pool.put_out(Vec::with_capacity(MAX_POOLED_CAPACITY * 2));
        pool.put_out(Vec::new());
        pool.put_rx(BytesMut::with_capacity(MAX_POOLED_CAPACITY * 2));
        assert_eq!(pool.held(), (0, 0));

        let mut rx = pool.take_rx();
        rx.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let head = rx.split_to(4).freeze();
        pool.put_rx(rx);
        let rx = pool.take_rx();
        assert!(rx.is_empty());
        assert_eq!(&head[..], b"GET ", "bytes handed out stay intact");
    }
}
