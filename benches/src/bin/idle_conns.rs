//! `idle_conns`: opens many keep-alive connections, makes one request on each, then holds them
//! all open and idle for a bounded time, so a server's memory per idle connection can be read.
//!
//! Run with: `idle_conns --addr 127.0.0.1:8080 --conns 10000 --hold 10`
//!
//! The request is `GET /plaintext`; the answer must be one complete `200` response with the
//! body `Hello, World!` that keeps the connection open (read with the workspace's one HTTP/1
//! response parser, `ringcore_testkit::http1`), so any server of the benchmarks qualifies,
//! whatever headers it adds (`Date`, `Server`, ...).
//!
//! Prints `ready N` (N = connections established and answered) once every connection has its
//! response, then holds them `--hold` seconds (at most 600) and exits 0. It raises its own
//! RLIMIT_NOFILE as far as the hard limit allows. Exits non-zero if not every connection
//! could be made and answered within `--timeout` seconds (default 60).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringcore_benches::resolve;
use ringcore_testkit::http1::{RequestKind, Response};

const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
const BODY: &[u8] = b"Hello, World!";
/// The longest response accepted (a plaintext answer is under 200 bytes).
const MAX_RESPONSE: usize = 4096;
const MAX_HOLD_S: u64 = 600;

/// Opens many keep-alive connections, one request each, then holds them idle.
#[derive(Debug, clap::Parser)]
#[command(name = "idle_conns", version)]
struct Args {
    /// Server to connect to.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT", value_parser = resolve)]
    addr: SocketAddr,
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Seconds to hold them idle (at most 600).
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=MAX_HOLD_S))]
    hold: u64,
    /// Seconds allowed to open and answer them all.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// Raises the soft RLIMIT_NOFILE to `want` (or to the hard limit, or higher if we may).
fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    // Privileged: lift the hard limit too. Otherwise: up to the hard limit.
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: lim.rlim_max.max(want),
    };
    // SAFETY: setrlimit reads one rlimit from a live local.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return want;
    }
    let capped = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) } == 0 {
        return lim.rlim_max;
    }
    lim.rlim_cur
}

/// Connects, sends one request and reads its whole response.
fn open_one(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "out of time"));
    }
    let mut s = TcpStream::connect_timeout(&addr, left)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(left.max(Duration::from_millis(10))))?;
    s.write_all(REQUEST)?;
    let mut got = [0u8; MAX_RESPONSE];
    let mut n = 0;
    let response = loop {
        let parsed = Response::parse(&got[..n], RequestKind::Other, false)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad response: {e}")))?;
        if let Some((response, _)) = parsed {
            break response;
        }
        if n == got.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no complete response in {MAX_RESPONSE} bytes"),
            ));
        }
        let r = s.read(&mut got[n..])?;
        if r == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the response",
            ));
        }
        n += r;
    };
    if response.status != 200 || response.body != BODY || response.has_close() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected response: {}", response.head_raw.trim_end()),
        ));
    }
    Ok(s)
}

fn main() -> ExitCode {
    let args: Args = clap::Parser::parse();
    let (hold, timeout) = (Duration::from_secs(args.hold), Duration::from_secs(args.timeout));
    let limit = raise_nofile(args.conns as u64 + 64);
    if limit < args.conns as u64 + 16 {
        eprintln!(
            "idle_conns: RLIMIT_NOFILE is {limit}, too low for {} connections",
            args.conns
        );
        return ExitCode::FAILURE;
    }
    let start = Instant::now();
    let deadline = start + timeout;
    let mut held = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        match open_one(args.addr, deadline) {
            Ok(s) => held.push(s),
            Err(e) => {
                eprintln!("idle_conns: connection {i} to {}: {e}", args.addr);
                println!("failed {}", held.len());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("ready {}", held.len());
    let _ = io::stdout().flush();
    eprintln!(
        "idle_conns: {} connections in {:.2}s, holding {}s",
        held.len(),
        start.elapsed().as_secs_f64(),
        args.hold
    );
    std::thread::sleep(hold);
    drop(held);
    ExitCode::SUCCESS
}
