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
