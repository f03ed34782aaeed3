//! Owned buffers: what may be handed to the kernel.
//!
//! I/O functions take a buffer by value and hand it back with the result
//! (`read(buf) -> (io::Result<usize>, buf)`). While the kernel works on it, the buffer belongs
//! to the driver, even if the caller drops the future: that is what makes cancellation safe.

use std::rc::Rc;

/// A buffer whose bytes the kernel may read (for writes).
///
/// # Safety
///
/// `stable_ptr()` must point to `bytes_init()` initialised bytes that stay valid, at the same
/// address and unmodified, for as long as the value lives, even when the value itself is moved.
/// (Heap-backed buffers satisfy this; arrays on the stack do not.)
pub unsafe trait IoBuf: Unpin + 'static {
    /// Start of the initialised bytes.
    fn stable_ptr(&self) -> *const u8;
    /// How many bytes from `stable_ptr()` are initialised and will be written.
    fn bytes_init(&self) -> usize;

    /// The initialised bytes, borrowed (for code that must look at them before a write:
    /// encryption, a copy into another buffer).
    fn as_init_slice(&self) -> &[u8] {
        let len = self.bytes_init();
        if len == 0 {
            return &[];
        }
        // SAFETY: the trait's contract: `stable_ptr()` points to `bytes_init()` initialised
        // bytes that stay valid and unmodified while `self` lives, and the slice borrows
        // `self`. The empty case returns early (a null or dangling pointer is never used).
        unsafe { std::slice::from_raw_parts(self.stable_ptr(), len) }
    }
}

/// A buffer the kernel may fill (for reads). Reads append: they write into
/// `[bytes_init(), bytes_total())` and then grow `bytes_init()`.
///
/// # Safety
///
/// As for [`IoBuf`], and `stable_mut_ptr()` must be valid for writes of `bytes_total()` bytes.
pub unsafe trait IoBufMut: IoBuf {
    /// Start of the whole buffer.
    fn stable_mut_ptr(&mut self) -> *mut u8;
    /// Capacity in bytes.
    fn bytes_total(&self) -> usize;
    /// Marks the first `n` bytes as initialised.
    ///
    /// # Safety
    ///
    /// The first `n` bytes must have been initialised, and `n <= bytes_total()`.
    unsafe fn set_init(&mut self, n: usize);
}

/// Appends as much of `src` as fits into the spare capacity of `buf`; returns how many bytes.
pub(crate) fn put_slice<B: IoBufMut>(buf: &mut B, src: &[u8]) -> usize {
    let init = buf.bytes_init();
    let n = src.len().min(buf.bytes_total().saturating_sub(init));
    // SAFETY: `init + n <= bytes_total()`, so the copy stays inside the buffer's allocation
    // (valid for writes per `IoBufMut`); `src` is a live, initialised slice that cannot overlap
    // a buffer we hold by `&mut`; the `n` bytes after `init` are initialised by the copy.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), buf.stable_mut_ptr().add(init), n);
        buf.set_init(init + n);
    }
    n
}

// SAFETY: a Vec's heap block does not move when the Vec value moves; `len` bytes are init.
unsafe impl IoBuf for Vec<u8> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: as for IoBuf; `capacity` bytes are allocated and writable.
unsafe impl IoBufMut for Vec<u8> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.capacity()
    }
    unsafe fn set_init(&mut self, n: usize) {
        if n > self.len() {
            // SAFETY: the caller guarantees the first `n` bytes are initialised and in capacity.
            unsafe { self.set_len(n) };
        }
    }
}

// SAFETY: a boxed slice's heap block does not move with the box.
unsafe impl IoBuf for Box<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: a String's heap block does not move with the String.
unsafe impl IoBuf for String {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: 'static data never moves and is never freed.
unsafe impl IoBuf for &'static [u8] {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: 'static data never moves and is never freed.
unsafe impl IoBuf for &'static str {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

// SAFETY: an Rc's allocation does not move while any clone lives, and `[u8]` in an Rc is
// immutable.
unsafe impl IoBuf for Rc<[u8]> {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

/// A byte buffer whose start is aligned to [`AlignedBuf::ALIGN`] (4096) bytes, for `O_DIRECT`
/// file I/O, where the buffer's address, the length and the file offset must all be multiples
/// of the device's logical block size (512 or 4096 bytes).
///
/// It over-allocates by one alignment and uses the aligned part of its heap block, so it
/// needs no allocator call of its own. Writes send its [`len`](Self::len) bytes.
#[derive(Debug, Default)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    /// Where the aligned part starts in `raw`.
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// The alignment of the buffer's start.
    pub const ALIGN: usize = 4096;

    /// An empty buffer with room for `capacity` bytes before it must grow.
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        let raw = vec![0u8; capacity + Self::ALIGN];
        // (Computed from the address: `align_offset` may give up and answer usize::MAX.)
        let addr = raw.as_ptr() as usize;
        let start = (Self::ALIGN - addr % Self::ALIGN) % Self::ALIGN;
        AlignedBuf { raw, start, len: 0 }
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes it can hold before it must grow.
    pub fn capacity(&self) -> usize {
        self.raw.len() - self.start
    }

    /// Empties it, keeping its memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `bytes`, growing (to a new aligned block) if needed.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        self.reserve_total(end);
        self.raw[self.start + self.len..self.start + end].copy_from_slice(bytes);
        self.len = end;
    }

    /// Sets the length to `len`, new bytes being `value`.
    pub fn resize(&mut self, len: usize, value: u8) {
        if len > self.len {
            self.reserve_total(len);
            self.raw[self.start + self.len..self.start + len].fill(value);
        }
        self.len = len;
    }

    /// The bytes held.
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// The bytes held, to change in place (or to read into, after a
    /// [`resize`](Self::resize)).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }

    fn reserve_total(&mut self, total: usize) {
        if self.start + total <= self.raw.len() {
            return;
        }
        let mut grown = AlignedBuf::with_capacity(total.max(2 * self.raw.len()));
        grown.extend_from_slice(self.as_slice());
        *self = grown;
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

// SAFETY: the bytes live in the heap block of `raw`, which does not move when the value moves
// and is only reallocated through `&mut self` (never while the kernel holds the buffer: an
// operation takes it by value); `start + len <= raw.len()`, and `raw` is fully initialised.
unsafe impl IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len
    }
}

// SAFETY: a `Bytes` points into shared (or 'static) storage that is immutable and is not
// freed or moved while any handle, this one included, lives.
#[cfg(feature = "bytes")]
unsafe impl IoBuf for bytes::Bytes {
    fn stable_ptr(&self) -> *const u8 {
        self.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aligned_buffer_stays_aligned_and_keeps_its_bytes_as_it_grows() {
        let mut b = AlignedBuf::with_capacity(10);
        assert!(b.is_empty());
        let mut want = Vec::new();
        for i in 0..3000u32 {
            let piece = i.to_le_bytes();
            b.extend_from_slice(&piece);
            want.extend_from_slice(&piece);
            assert_eq!(b.stable_ptr() as usize % AlignedBuf::ALIGN, 0, "after {i} pieces");
        }
        assert_eq!(b.as_slice(), &want[..]);
        assert_eq!(b.bytes_init(), want.len());
        assert!(b.capacity() >= b.len());
        // Padding to a block with zeros, then shrinking.
        b.resize(4 * AlignedBuf::ALIGN, 0);
        assert_eq!(&b[..want.len()], &want[..]);
        assert!(b[want.len()..].iter().all(|&x| x == 0));
        b.resize(3, 0);
        assert_eq!(b.as_slice(), &want[..3]);
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.as_init_slice(), b"");
    }
}
