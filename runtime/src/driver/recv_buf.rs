//! `RecvBuf`: received bytes, usually a buffer lent by the core's provided buffer ring.

use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

use super::buf_ring::BufRing;
use crate::buf::IoBuf;

/// Bytes received from a socket.
///
/// When the kernel supports it, this is the provided-ring buffer the kernel wrote into (no
/// copy); dropping it gives the buffer back to the ring. Keep it only as long as you need it:
/// the ring has a fixed number of buffers per core. It can be written to a socket as is
/// (it implements [`IoBuf`]), which is how an echo server avoids a copy.
pub struct RecvBuf {
    inner: Inner,
}

enum Inner {
    Ring {
        ring: Rc<BufRing>,
        bid: u16,
        start: usize,
        end: usize,
    },
    Owned(Vec<u8>, usize),
    /// A buffer of the epoll driver's per-core receive pool: dropping it gives it back.
    Pooled(Vec<u8>, usize, Rc<RxPool>),
}

/// The epoll driver's per-core pool of receive buffers ([`FALLBACK_RECV_SIZE`] bytes each):
/// a receive takes one and the chunk gives it back when dropped, so a receive costs no
/// allocation and no copy. LIFO (the buffer given back last is warm), and at most
/// [`RxPool::KEEP`] free buffers are kept.
///
/// [`FALLBACK_RECV_SIZE`]: super::recv_stream::FALLBACK_RECV_SIZE
#[derive(Default)]
pub(crate) struct RxPool {
    free: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl RxPool {
    /// Free buffers kept per core (1 MiB of 16 KiB buffers).
    pub(crate) const KEEP: usize = 64;

    /// An empty buffer with room for `size` bytes.
    pub(crate) fn take(&self, size: usize) -> Vec<u8> {
        match self.free.borrow_mut().pop() {
            Some(mut v) if v.capacity() >= size => {
                v.clear();
                v
            }
            _ => Vec::with_capacity(size),
        }
    }

    /// Keeps `v` for the next [`take`](Self::take), or frees it past [`KEEP`](Self::KEEP).
    pub(crate) fn give(&self, v: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < Self::KEEP {
            free.push(v);
        }
    }

    /// Free buffers held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.free.borrow().len()
    }
}

impl RecvBuf {
    pub(crate) fn ring(ring: Rc<BufRing>, bid: u16, len: usize) -> Self {
        Self {
            inner: Inner::Ring {
                ring,
                bid,
                start: 0,
                end: len,
            },
        }
    }

    pub(crate) fn owned(v: Vec<u8>) -> Self {
        Self {
            inner: Inner::Owned(v, 0),
        }
    }

    /// `v`, which came from `pool` and goes back to it on drop.
    pub(crate) fn pooled(v: Vec<u8>, pool: Rc<RxPool>) -> Self {
        Self {
            inner: Inner::Pooled(v, 0, pool),
        }
    }

    /// Drops the first `n` bytes (they were consumed).
    pub(crate) fn advance(&mut self, n: usize) {
        match &mut self.inner {
            Inner::Ring { start, end, .. } => *start = (*start + n).min(*end),
            Inner::Owned(v, start) | Inner::Pooled(v, start, _) => *start = (*start + n).min(v.len()),
        }
    }

    /// True if these bytes sit in the core's provided buffer ring (zero-copy receive).
    pub fn is_from_ring(&self) -> bool {
        matches!(self.inner, Inner::Ring { .. })
    }
}

impl Deref for RecvBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            Inner::Ring {
                ring,
                bid,
                start,
                end,
            } => {
                // SAFETY: the kernel handed `bid` to us with `end` bytes written, and it is
                // recycled only when this RecvBuf drops.
                let all = unsafe { ring.slice(*bid, *end) };
                &all[*start..]
            }
            Inner::Owned(v, start) | Inner::Pooled(v, start, _) => &v[*start..],
        }
    }
}

impl AsRef<[u8]> for RecvBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        match &mut self.inner {
            Inner::Ring { ring, bid, .. } => ring.recycle(*bid),
            Inner::Pooled(v, _, pool) => pool.give(std::mem::take(v)),
            Inner::Owned(..) => {}
        }
    }
}

impl fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuf")
            .field("len", &self.len())
            .field("from_ring", &self.is_from_ring())
            .finish()
    }
}

// SAFETY: the bytes live in the ring's boxed buffer area (kept alive by the `Rc`) or in the
// owned (or pooled) Vec's heap block; neither moves when the RecvBuf moves, and neither is
// written while the RecvBuf lives (a ring buffer goes back to the kernel, a pooled one to its
// pool, only on drop).
unsafe impl IoBuf for RecvBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.deref().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_chunk_goes_back_to_its_pool_and_the_pool_is_bounded() {
        let pool = Rc::new(RxPool::default());
        let mut v = pool.take(64);
        v.extend_from_slice(b"hello world");
        let ptr = v.as_ptr();
        let mut chunk = RecvBuf::pooled(v, pool.clone());
        chunk.advance(6);
        assert_eq!(&chunk[..], b"world");
        drop(chunk);
        assert_eq!(pool.held(), 1);
        let again = pool.take(64);
        assert!(again.is_empty(), "a buffer comes back empty");
        assert_eq!(again.as_ptr(), ptr, "the buffer given back last is taken first");
        for _ in 0..RxPool::KEEP + 5 {
            drop(RecvBuf::pooled(Vec::with_capacity(64), pool.clone()));
        }
        assert_eq!(pool.held(), RxPool::KEEP);
    }
}
