//! A private `redis-server` for one test: started on a free 127.0.0.1 port, configured to
//! keep every acknowledged write (`appendonly yes`, `appendfsync always`, its files in a
//! fresh temporary `--dir`), killed (by its own PID) when the guard drops, also on a failed
//! assertion. [`RedisServer::start_with`] starts one with other settings (a server that can
//! lose writes, a renamed `CONFIG`); [`RedisServer::stop`], [`RedisServer::resume`] and
//! [`RedisServer::kill9_and_restart`] make faults, signalling only this server's PID.
//!
//! No `redis-server` on PATH is a test failure, not a skip: CI installs it.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The settings that make Redis answer a write only once it is on disk.
pub(crate) const DURABLE: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];

/// A running server; killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    settings: Vec<String>,
}

impl RedisServer {
    /// Starts a durable server ([`DURABLE`]), retrying on another port if the chosen one was
    /// taken meanwhile.
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(DURABLE)
    }

    /// Starts a server with `settings` (`redis-server` options, e.g. `--appendonly no`)
    /// instead of [`DURABLE`].
    pub(crate) fn start_with(settings: &[&str]) -> RedisServer {
        let dir = temp_dir();
        let settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        let mut last = String::new();
        for _ in 0..5 {
            let port = match free_port() {
                Ok(p) => p,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            match try_start(port, &dir, &settings) {
                Ok(child) => {
                    return RedisServer {
                        child,
                        port,
                        dir,
                        settings,
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("could not start redis-server: {last}");
    }

    /// `redis://127.0.0.1:port`
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGSTOP: the server stalls (connections stay open, nothing is answered).
    pub(crate) fn stop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`RedisServer::stop`].
    pub(crate) fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// SIGKILL, `down` with nothing listening, then a new server on the same port and
    /// directory (so it reloads what the old one wrote to its append-only file). Waits
    /// (bounded) until the new one answers.
    pub(crate) fn kill9_and_restart(&mut self, down: Duration) {
        // `Child::kill` sends SIGKILL to exactly this child's PID.
        self.child.kill().expect("SIGKILL redis-server");
        self.child.wait().expect("reap redis-server");
        std::thread::sleep(down);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match try_start(self.port, &self.dir, &self.settings) {
                Ok(child) => {
                    self.child = child;
                    return;
                }
                // The port may linger for a moment; nobody else should take it.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restarting redis-server on port {}: {e}", self.port);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("could not restart redis-server on port {}: {e}", self.port),
            }
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with the PID of our own child, which has not been reaped (so the PID
        // cannot have been reused), and a valid signal number.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this child's PID (SIGKILL also ends a stopped one).
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir() -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flash-sale-redis-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the redis temp dir");
    dir
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn try_start(port: u16, dir: &std::path::Path, settings: &[String]) -> io::Result<Child> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .arg("--dir")
        .arg(dir)
        .args(settings)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run redis-server ({e}): these tests need a real Redis 6 or newer on PATH \
                 (Debian/Ubuntu: apt-get install redis-server)"
            )
        });
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if ping(port, child.id()).is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "redis-server on port {port} exited: {status}"
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "redis-server on port {port} did not answer PING in 10 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Ok once the server on `port` answers and is this child (not another test's server that
/// happened to get the port).
fn ping(port: u16, pid: u32) -> io::Result<()> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    (&s).write_all(b"INFO server\r\n")?;
    let mut r = BufReader::new(&s);
    let mut head = String::new();
    r.read_line(&mut head)?;
    let len: usize = head
        .strip_prefix('$')
        .and_then(|n| n.trim_end().parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected INFO reply {head:?}")))?;
    let mut body = vec![0u8; len + 2];
    r.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body);
    if body.lines().any(|l| l.trim_end() == format!("process_id:{pid}")) {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "port {port} is served by another process"
        )))
    }
}
