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

    /// Drops the first `n` bytes (they were consumed).
    pub(crate) fn advance(&mut self, n: usize) {
        match &mut self.inner {
            Inner::Ring { start, end, .. } => *start = (*start + n).min(*end),
            Inner::Owned(v, start) => *start = (*start + n).min(v.len()),
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
            Inner::Owned(v, start) => &v[*start..],
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
        if let Inner::Ring { ring, bid, .. } = &self.inner {
            ring.recycle(*bid);
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
// owned Vec's heap block; neither moves when the RecvBuf moves, and neither is written while
// the RecvBuf lives (a ring buffer goes back to the kernel only on drop).
unsafe impl IoBuf for RecvBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.deref().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}
