//! Temporary directories for tests: fresh, private and removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty directory, removed with everything in it when dropped. Its path (the
/// field) names the tag, the process and a per-process counter, so tests running at once,
/// in one process or several, never share one.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory `ringcore-TAG-PID-N` under the system's temporary directory.
    pub fn new(tag: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), tag)
    }

    /// A fresh directory `ringcore-TAG-PID-N` under `root` (created if missing).
    ///
    /// # Panics
    ///
    /// If it cannot be created: a test cannot run without it.
    pub fn new_in(root: &Path, tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = root.join(format!("ringcore-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            panic!("create temporary directory {}: {e}", dir.display());
        }
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dir_is_fresh_private_and_removed_on_drop() {
        let a = TempDir::new("tmp-test");
        let b = TempDir::new("tmp-test");
        assert_ne!(a.path(), b.path(), "two directories, not one");
        assert!(a.path().is_dir() && b.path().is_dir());
        std::fs::write(a.join("f"), b"x").expect("write");
        let inner = TempDir::new_in(a.path(), "inner");
        assert!(inner.path().starts_with(a.path()));
        let kept = a.path().to_path_buf();
        drop(inner);
        drop(a);
        assert!(!kept.exists(), "removed with its contents");
        assert!(b.path().is_dir(), "the other one stays");
    }
}
