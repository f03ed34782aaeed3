//! Files on the ring: `openat`, positioned reads and writes, `fsync` / `fdatasync`, `ftruncate`
//! and `close` are io_uring operations on the calling core's ring.
//!
//! Like [`net`](crate::net), reads and writes take owned buffers and hand them back with the
//! result (`let (res, buf) = file.read_at(buf, 0).await;`): the kernel works on the buffer after
//! the call yields, so dropping the future leaves the buffer with the driver until the kernel
//! is done. All I/O is positioned (`*_at`): there is no cursor, so concurrent operations on one
//! [`File`] never race on a shared offset.
//!
//! ```no_run
//! use ringcore_runtime::fs::OpenOptions;
//! use ringcore_runtime::Runtime;
//!
//! Runtime::builder().core_count(1).build()?.run(|| async {
//!     let file = OpenOptions::new().read(true).write(true).create(true).open("/tmp/hello.txt").await?;
//!     let (res, _) = file.write_all_at(b"hello" as &'static [u8], 0).await;
//!     res?;
//!     file.sync_data().await?; // durable from here on
//!     let (res, buf) = file.read_at(Vec::with_capacity(16), 0).await;
//!     assert_eq!(&buf[..res?], b"hello");
//!     file.close().await
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Metadata (`fstat`) and, on kernels before 6.9 or with [`Builder::portable_ops`], `set_len`
//! (`ftruncate`) are plain system calls: both are short and never wait on the device.
//!
//! [`Builder::portable_ops`]: crate::Builder::portable_ops

mod file;
mod open_options;

pub use file::File;
pub use open_options::OpenOptions;

/// The system's memory page size in bytes (the unit of the page cache).
pub fn page_size() -> usize {
    crate::sys::fs::page_size()
}
