//! `OpenOptions`: how a file is opened (the `open(2)` flags), std's builder on the ring.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::File;
use crate::driver::op;

/// Permission bits of a file this crate creates, before the umask (as std's default).
const DEFAULT_MODE: u32 = 0o666;

/// Options for opening a file, as [`std::fs::OpenOptions`]; [`open`](Self::open) is an
/// `IORING_OP_OPENAT` on the calling core's ring.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// use ringcore_runtime::fs::OpenOptions;
///
/// let log = OpenOptions::new().read(true).write(true).create(true).open("app.log").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// All options off; the mode for a created file is `0o666` (before the umask).
    pub fn new() -> Self {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: DEFAULT_MODE,
            custom_flags: 0,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }

    /// Open for appending (`O_APPEND`; implies write). Every write then goes to the end of the
    /// file, whatever position it names.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }

    /// Truncate an existing file to length 0 (`O_TRUNC`; needs write).
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }

    /// Create the file if it is missing (`O_CREAT`; needs write or append).
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }

    /// Create the file, failing with `AlreadyExists` if it exists (`O_CREAT | O_EXCL`).
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }

    /// Permission bits of a created file (before the umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Extra `open(2)` flags (`O_DIRECT`, `O_DSYNC`, `O_NOATIME`, ...). The access mode bits
    /// are ignored; `O_CLOEXEC` is always set.
    pub fn custom_flags(&mut self, flags: i32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    /// Opens `path` with these options.
    ///
    /// Errors: those of `open(2)` (`NotFound`, `PermissionDenied`, `AlreadyExists`, ...);
    /// `InvalidInput` for a path with a NUL byte or an invalid combination of options (as std:
    /// nothing to access, or create / truncate without write).
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let flags = self.flags()?;
        let path = CString::new(path.as_ref().as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file path contains a NUL byte"))?;
        let fd = op::openat(path, flags, self.mode as libc::mode_t)?.await?;
        Ok(File::from_fd(fd))
    }

    /// The `open(2)` flags, with std's rules for invalid combinations.
    fn flags(&self) -> io::Result<i32> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => return Err(invalid("open options: none of read, write, append")),
        };
        if !self.write && !self.append && (self.truncate || self.create || self.create_new) {
            return Err(invalid("open options: create or truncate without write"));
        }
        if self.append && self.truncate && !self.create_new {
            return Err(invalid("open options: append with truncate"));
        }
        let creation = match (self.create, self.truncate, self.create_new) {
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (false, false, false) => 0,
        };
        Ok(libc::O_CLOEXEC | access | creation | (self.custom_flags & !libc::O_ACCMODE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_std_rules() {
        let f = |o: &OpenOptions| o.flags().map_err(|e| e.kind());
        assert_eq!(
            f(OpenOptions::new().read(true)),
            Ok(libc::O_CLOEXEC | libc::O_RDONLY)
        );
        assert_eq!(
            f(OpenOptions::new().write(true).create(true).truncate(true)),
            Ok(libc::O_CLOEXEC | libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        );
        assert_eq!(
            f(OpenOptions::new().append(true).create_new(true)),
            Ok(libc::O_CLOEXEC | libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_EXCL)
        );
        assert_eq!(f(&OpenOptions::new()), Err(io::ErrorKind::InvalidInput));
        assert_eq!(
            f(OpenOptions::new().read(true).create(true)),
            Err(io::ErrorKind::InvalidInput)
        );
        assert_eq!(
            f(OpenOptions::new().append(true).truncate(true)),
            Err(io::ErrorKind::InvalidInput)
        );
        // Access bits in custom flags cannot turn a read-only open into a writable one.
        assert_eq!(
            f(OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_RDWR | libc::O_DSYNC)),
            Ok(libc::O_CLOEXEC | libc::O_RDONLY | libc::O_DSYNC)
        );
    }
}
