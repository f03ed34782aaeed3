//! The service under test: this same executable run as `serve` in a child process, with a
//! fresh data directory. Dropping the guard stops the child (SIGTERM, then SIGKILL after 5 s)
//! and removes the directory, on every path out of the demo.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the child gets to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the child gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const LISTENING: &str = "flash-sale listening on ";

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> std::io::Result<TempDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("flash-sale-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running service.
#[derive(Debug)]
pub(crate) struct Service {
    child: Child,
    addr: SocketAddr,
    // Dropped after `Drop::drop` has stopped the child: nothing writes to it any more.
    _dir: TempDir,
}

impl Service {
    /// Starts `current_exe serve --addr 127.0.0.1:0 [--cores C] --data-dir DIR` and waits (at
    /// most 10 s) for its `flash-sale listening on ADDR` line.
    pub(crate) fn start(cores: Option<&str>, extra: &[String]) -> Result<Service, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let dir = TempDir::new("demo").map_err(|e| format!("temp dir: {e}"))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("serve").args(["--addr", "127.0.0.1:0"]);
        if let Some(c) = cores {
            cmd.args(["--cores", c]);
        }
        cmd.args(extra);
        cmd.arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: the closure runs in the forked child before exec and only makes one
        // async-signal-safe system call (prctl); it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                // If the demo dies without running its guard (SIGKILL), the service goes too.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("child has no stdout".into());
        };
        // From here on the guard stops the child on every path.
        let mut service = Service {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            _dir: dir,
        };
        let (tx, rx) = mpsc::channel();
        // Reads the child's stdout to its end (so the child never blocks on a full pipe); the
        // thread ends when the child exits and the pipe closes.
        std::thread::Builder::new()
            .name("flash-sale-demo-stdout".into())
            .spawn(move || {
                block_termination_signals();
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        // Nobody listens any more: keep draining.
                        continue;
                    }
                }
            })
            .map_err(|e| format!("stdout reader thread: {e}"))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.trim().strip_prefix(LISTENING) {
                        // `ADDR (driver: KIND)`: the address is the first word.
                        service.addr = a
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .parse()
                            .map_err(|e| format!("service listening line {line:?}: {e}"))?;
                        return Ok(service);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the service did not print its listening line in {START_TIMEOUT:?}"
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = service.wait_exit(Duration::from_secs(1));
                    return Err(format!(
                        "the service exited before listening ({})",
                        status.unwrap_or_else(|| "still running".into())
                    ));
                }
            }
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the child to exit; its status, or `None` if still running.
    fn wait_exit(&mut self, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status.to_string()),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => return None,
                Err(e) => return Some(format!("wait: {e}")),
            }
        }
    }
}

/// Keeps SIGINT and SIGTERM away from the calling thread. While the crowd runs, the ringcore
/// runtime blocks them in its own threads and takes them through a signalfd (Ctrl-C ends the
/// crowd early and the demo still cleans up); a helper thread that left them unblocked would
/// take the default action instead, killing the demo without its guard.
fn block_termination_signals() {
    // SAFETY: `set` is a local, initialised by sigemptyset before use; pthread_sigmask only
    // changes this thread's mask and accepts a null old-set pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: plain syscall on our own child's PID; the child has not been reaped
                // (try_wait just said it is running), so the PID cannot have been reused.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            if self.wait_exit(STOP_TIMEOUT).is_none() {
                eprintln!(
                    "flash-sale demo: the service (pid {}) did not stop in {STOP_TIMEOUT:?}; killing it",
                    self.child.id()
                );
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
