//! One owner per data dir: an exclusive `flock` on `DIR/flash-sale.lock`, taken before
//! replay and held for the life of the process.
//!
//! Two processes appending to the same per-core journals would interleave their batches at
//! the same offsets and destroy acknowledged orders, so a second `serve` (or `repair`) on a
//! data dir in use fails at start with the directory and the PID that holds it. The lock is
//! the kernel's: it goes away with the process however it ends (`kill -9` included), so a
//! stale lock file never blocks a restart.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data dir.
pub const LOCK_FILE: &str = "flash-sale.lock";

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Creates `dir` if missing and takes its lock, writing this process's PID into the lock
/// file.
///
/// Errors: `dir` exists but is not a directory; another process holds the lock
/// (`WouldBlock`, naming the directory and the holder's PID); I/O errors with the path.
pub fn lock(dir: &Path) -> io::Result<DataDirLock> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("data dir {}: exists and is not a directory", dir.display()),
            ))
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("data dir {}: create: {e}", dir.display())))?,
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("data dir {}: {e}", dir.display()),
            ))
        }
    }
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("lock file {}: {e}", path.display())))?;
    // SAFETY: flock(2) on a descriptor this function owns; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("another process (PID {holder})")
            };
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "data dir {} is in use by {who}: it holds {}; stop it first, or give this \
                     instance its own --data-dir",
                    dir.display(),
                    path.display()
                ),
            ));
        }
        return Err(io::Error::new(e.kind(), format!("lock {}: {e}", path.display())));
    }
    // Ours now: record who holds it, for the next one who tries.
    let pid = std::process::id();
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{pid}"))
        .map_err(|e| io::Error::new(e.kind(), format!("lock file {}: {e}", path.display())))?;
    Ok(DataDirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_dir_is_refused_and_names_the_holder() {
        let dir = std::env::temp_dir().join(format!("flash-sale-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = lock(&dir).expect("first lock");
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process would.
        let err = lock(&dir).expect_err("second lock must fail");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let text = err.to_string();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(text.contains(&format!("PID {}", std::process::id())), "{text}");
        drop(first);
        let again = lock(&dir).expect("free again after the holder let go");
        drop(again);
        let file = dir.join("plain-file");
        std::fs::write(&file, b"x").expect("write");
        let err = lock(&file).expect_err("a plain file is not a data dir");
        assert!(err.to_string().contains("not a directory"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
