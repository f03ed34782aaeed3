//! A private `redis-server` for one test: started on a free 127.0.0.1 port without
//! persistence, killed (by its own PID) when the guard drops, also on a failed assertion.
//!
//! No `redis-server` on PATH is a test failure, not a skip: CI installs it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; killed on drop.
pub(crate) struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts a server, retrying on another port if the chosen one was taken meanwhile.
    pub(crate) fn start() -> RedisServer {
        let mut last = String::new();
        for _ in 0..5 {
            match try_start() {
                Ok(s) => return s,
                Err(e) => last = e.to_string(),
            }
        }
        panic!("could not start redis-server: {last}");
    }

    /// `redis://127.0.0.1:port`
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this child's PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn try_start() -> io::Result<RedisServer> {
    let port = free_port()?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
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
    let mut server = RedisServer { child, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if ping(port, server.child.id()).is_ok() {
            return Ok(server);
        }
        if let Some(status) = server.child.try_wait()? {
            return Err(io::Error::other(format!(
                "redis-server on port {port} exited: {status}"
            )));
        }
        if Instant::now() > deadline {
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
