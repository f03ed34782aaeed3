//! `File`: positioned, owned-buffer reads and writes, syncs and truncation on the ring.

use std::fmt;
use std::io;
use std::path::Path;

use super::OpenOptions;
use crate::buf::{IoBuf, IoBufMut};
use crate::context;
use crate::driver::op;
use crate::fd::SharedFd;
use crate::sys;

/// An open file owned by one core.
///
/// Every operation is an io_uring request on the calling core's ring; methods take `&self`, so
/// several tasks may read and write one file concurrently at different positions. Buffers go in
/// by value and come back with the result. Dropping an operation's future is safe at any point:
/// the buffer (and the fd) stay with the driver until the kernel is done, and the operation is
/// cancelled (a write already started may still land).
///
/// Dropping a `File` closes it synchronously once no operation uses its fd;
/// [`close`](Self::close) closes it through the ring and reports the result.
pub struct File {
    fd: SharedFd,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("fd", &self.fd.raw()).finish()
    }
}

/// `pos + n` for a resumed transfer, or `InvalidInput` past the largest file offset.
fn advance(pos: u64, n: usize) -> io::Result<u64> {
    u64::try_from(n)
        .ok()
        .and_then(|n| pos.checked_add(n))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "file position overflows u64"))
}

impl File {
    pub(super) fn from_fd(fd: SharedFd) -> File {
        File { fd }
    }

    /// Opens an existing file read-only.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens a file write-only, creating it if missing and truncating it if present.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// A blank [`OpenOptions`] (same as `OpenOptions::new()`).
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Reads from file offset `pos` into the spare capacity of `buf` (`buf[len..capacity]`) and
    /// returns how many bytes were appended; `Ok(0)` means `pos` is at or past the end.
    ///
    /// A read may return fewer bytes than asked. A buffer with no spare capacity gets
    /// `InvalidInput` (a zero-byte read would look like end of file).
    pub async fn read_at<B: IoBufMut>(&self, buf: B, pos: u64) -> (io::Result<usize>, B) {
        if buf.bytes_init() >= buf.bytes_total() {
            let e = io::Error::new(io::ErrorKind::InvalidInput, "read buffer has no spare capacity");
            return (Err(e), buf);
        }
        match op::read_at(&self.fd, buf, pos) {
            Ok(op) => op.await,
            Err((e, buf)) => (Err(e), buf),
        }
    }

    /// Fills the whole spare capacity of `buf` from file offset `pos`, reading as many times
    /// as it takes. `UnexpectedEof` if the file ends first (the bytes read so far stay in `buf`).
    pub async fn read_exact_at<B: IoBufMut>(&self, mut buf: B, pos: u64) -> (io::Result<()>, B) {
        let start = buf.bytes_init();
        while buf.bytes_init() < buf.bytes_total() {
            let at = match advance(pos, buf.bytes_init() - start) {
                Ok(at) => at,
                Err(e) => return (Err(e), buf),
            };
            let (res, b) = self.read_at(buf, at).await;
            buf = b;
            match res {
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file ended before the buffer was full",
                    );
                    return (Err(e), buf);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Writes some of `buf` at file offset `pos`; returns how many bytes were written.
    ///
    /// In append mode the bytes go to the end of the file whatever `pos` says.
    pub async fn write_at<B: IoBuf>(&self, buf: B, pos: u64) -> (io::Result<usize>, B) {
        match op::write_at(&self.fd, buf, 0, pos, false) {
            Ok(op) => op.await,
            Err((e, buf)) => (Err(e), buf),
        }
    }

    /// Writes all of `buf` at file offset `pos`, resuming after short writes.
    ///
    /// On error some prefix of `buf` may have been written.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, pos: u64) -> (io::Result<()>, B) {
        self.write_all_at_inner(buf, pos, false).await
    }

    /// Like [`write_at`](Self::write_at), but a *data-sync* write (`RWF_DSYNC`): it completes
    /// only once the bytes it wrote, and the metadata needed to read them back (a new file
    /// length, newly allocated blocks), are on the device, as if followed by
    /// [`sync_data`](Self::sync_data) for that range. One ring op (`IORING_OP_WRITE` with
    /// `rw_flags`) instead of a write and an `FSYNC`; on the epoll driver one `pwritev2`.
    /// It syncs only this write's range, not other dirty data of the file.
    pub async fn write_at_dsync<B: IoBuf>(&self, buf: B, pos: u64) -> (io::Result<usize>, B) {
        match op::write_at(&self.fd, buf, 0, pos, true) {
            Ok(op) => op.await,
            Err((e, buf)) => (Err(e), buf),
        }
    }

    /// [`write_all_at`](Self::write_all_at) with every write a data-sync write
    /// ([`write_at_dsync`](Self::write_at_dsync)): once it returns `Ok`, all of `buf` is on
    /// the device. On error some prefix of `buf` may have been written (and synced).
    pub async fn write_all_at_dsync<B: IoBuf>(&self, buf: B, pos: u64) -> (io::Result<()>, B) {
        self.write_all_at_inner(buf, pos, true).await
    }

    async fn write_all_at_inner<B: IoBuf>(&self, mut buf: B, pos: u64, dsync: bool) -> (io::Result<()>, B) {
        let len = buf.bytes_init();
        let mut done = 0;
        while done < len {
            let at = match advance(pos, done) {
                Ok(at) => at,
                Err(e) => return (Err(e), buf),
            };
            let (res, b) = match op::write_at(&self.fd, buf, done, at, dsync) {
                Ok(op) => op.await,
                Err((e, buf)) => return (Err(e), buf),
            };
            buf = b;
            match res {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Flushes data and metadata to the device (`fsync`).
    pub async fn sync_all(&self) -> io::Result<()> {
        op::fsync(&self.fd, false)?.await
    }

    /// Flushes data, and the metadata needed to read it back (such as the length), to the
    /// device (`fdatasync`: `IORING_FSYNC_DATASYNC`).
    pub async fn sync_data(&self) -> io::Result<()> {
        op::fsync(&self.fd, true)?.await
    }

    /// Truncates or extends the file to `len` bytes (extension reads as zeros). Needs write
    /// access.
    ///
    /// `IORING_OP_FTRUNCATE` where the kernel has it (6.9+), else a plain `ftruncate(2)`.
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        let on_ring = context::with(|cx| cx.driver.borrow().features().ftruncate);
        if on_ring {
            op::ftruncate(&self.fd, len)?.await
        } else {
            sys::fs::ftruncate(self.fd.raw(), len)
        }
    }

    /// Drops the file's clean cached pages in `offset..offset + len` (`len` 0: to the end of
    /// the file), a plain `posix_fadvise(POSIX_FADV_DONTNEED)`. For a file also written with
    /// `O_DIRECT`: a direct write over cached pages cannot be issued without blocking (the
    /// kernel must drop them first), so io_uring hands it to a worker thread.
    pub fn drop_cache(&self, offset: u64, len: u64) -> io::Result<()> {
        sys::fs::drop_cache(self.fd.raw(), offset, len)
    }

    /// The file's metadata (a plain `fstat`); `metadata()?.len()` is its length.
    pub fn metadata(&self) -> io::Result<std::fs::Metadata> {
        sys::fs::metadata(self.fd.raw())
    }

    /// The raw fd (for calls this type does not wrap). Do not close it.
    pub fn as_raw_fd(&self) -> i32 {
        self.fd.raw()
    }

    /// Closes the file through the ring and reports the result (a deferred write-back error
    /// may show up here; call [`sync_all`](Self::sync_all) first to be sure data is durable).
    pub async fn close(self) -> io::Result<()> {
        match self.fd.try_unwrap() {
            Ok(raw) => op::close_file(raw)?.await,
            // A cancelled operation still holds the fd; it closes when the kernel lets go.
            Err(shared) => {
                drop(shared);
                Ok(())
            }
        }
    }
}
