//! The `hello` binary out of file descriptors: started with `RLIMIT_NOFILE` at 64 (soft and
//! hard, so it cannot raise it), then held by more clients than it can accept. Accepting must
//! pause instead of spinning (CPU low, memory flat), the connections it has keep working, the
//! failures are counted in `/metrics`, and new clients are served once descriptors free up.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOFILE: u64 = 64;
/// More than the server can hold open under [`NOFILE`].
const CLIENTS: usize = 100;

struct Hello {
    child: Child,
    addr: String,
}

impl Drop for Hello {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_hello() -> Hello {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hello"));
    cmd.args(["--addr", "127.0.0.1:0", "--cores", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe calls: setrlimit(2) with a valid
    // rlimit on the stack; no memory of the parent is touched.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start hello");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let addr = first
        .strip_prefix("hello listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_string();
    // Keep draining stdout so the server never blocks on it.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Hello { child, addr }
}

/// GET `path` on `stream` (keep-alive); returns the status and body.
fn get(stream: &mut TcpStream, path: &str) -> (u16, String) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
    let mut r = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header");
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// (CPU ticks of the process, RSS in KiB).
fn usage(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmRSS");
    (ticks, rss)
}

#[test]
fn out_of_descriptors_pauses_accepting_and_recovers() {
    let hello = start_hello();
    let pid = hello.child.id();
    // One connection served before the flood: it must keep working throughout.
    let mut first = connect(&hello.addr);
    assert_eq!(get(&mut first, "/plaintext").0, 200);

    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| connect(&hello.addr)).collect();
    // Let the server accept what it can and hit the limit.
    std::thread::sleep(Duration::from_millis(500));
    let (t0, rss0) = usage(pid);
    let measured = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (t1, rss1) = usage(pid);
    let secs = measured.elapsed().as_secs_f64();
    // Clock ticks are 1/100 s on Linux.
    let cpu = (t1 - t0) as f64 / 100.0 / secs;
    assert!(
        cpu < 0.3,
        "out of descriptors, the server used {:.0}% of a CPU (a busy accept loop)",
        cpu * 100.0
    );
    assert!(
        rss1 < rss0 + 8 * 1024,
        "memory grew from {rss0} KiB to {rss1} KiB in {secs:.1} s while out of descriptors"
    );
    assert_eq!(
        get(&mut first, "/plaintext").0,
        200,
        "an existing connection still works"
    );
    let (_, metrics) = get(&mut first, "/metrics");
    let exhausted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringcore_http_accept_exhausted_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ringcore_http_accept_exhausted_total in /metrics"));
    assert!(exhausted > 0, "failed accepts are counted");
    assert!(
        exhausted < 1000,
        "{exhausted} failed accepts in ~2.5 s: the loop does not back off"
    );

    // Free the descriptors: a new client is served (the back-off is at most 100 ms).
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fresh = connect(&hello.addr);
    loop {
        // The clients still queued in the kernel are accepted first, then closed; retry.
        let _ = fresh.set_read_timeout(Some(Duration::from_secs(2)));
        if write!(fresh, "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n").is_ok() {
            let mut buf = [0u8; 12];
            if fresh.read_exact(&mut buf).is_ok() && &buf == b"HTTP/1.1 200" {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no new client served after descriptors were freed"
        );
        std::thread::sleep(Duration::from_millis(100));
        fresh = connect(&hello.addr);
    }
    drop(hello);
}
