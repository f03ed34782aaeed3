//! Shared helpers of the benchmark binaries.
//!
//! The baseline servers share their command line ([`parse_server_args`], clap, the workspace's
//! one `--cores` grammar); the three fixed-response servers (`naive_uring`, `tokio_ct`,
//! `ringcore_fixed`) also share their request framing ([`RequestCounter`]: one request per
//! `"\r\n\r\n"`, pipelining allowed) and their reply ([`RESPONSE`], batched with
//! [`responses`]), so the benchmark compares the I/O layers and nothing else. With
//! `BENCH_HTTPARSE=1` in their environment ([`Framing::from_env`]) they frame their requests
//! with `httparse` instead, each head parsed before its answer: the floor as issue 12 states
//! it ("httparse, fixed answer, no `Date`"), which the scripts name `bare_hp` and
//! `tokio_ct_hp`.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::OnceLock;

use ringcore_cli::CoreSpec;

/// The one response every server sends for every request.
pub const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

/// The `/json` response of the httparse-based servers (the same shape as [`RESPONSE`]).
pub const JSON_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 27\r\nContent-Type: application/json\r\n\r\n{\"message\":\"Hello, World!\"}";

/// Headers [`answer_parsed`] parses per request; a request with more is an error.
pub const MAX_HEADERS: usize = 32;

/// The httparse-based servers' (`glommio_hello`, `monoio_hello`) framing: parses every
/// complete request head in `buf` and appends its response to `out` (`GET /json` gets
/// [`JSON_RESPONSE`], everything else [`RESPONSE`]). Returns (requests, bytes consumed), or
/// `Err` on a malformed request.
pub fn answer_parsed(buf: &[u8], out: &mut Vec<u8>) -> Result<(u64, usize), httparse::Error> {
    let mut used = 0;
    let mut n = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[used..])? {
            httparse::Status::Complete(len) => {
                out.extend_from_slice(if req.path == Some("/json") {
                    JSON_RESPONSE
                } else {
                    RESPONSE
                });
                used += len;
                n += 1;
            }
            httparse::Status::Partial => return Ok((n, used)),
        }
    }
}

/// The most responses [`responses`] returns in one slice (more pipelined requests are answered
/// in several sends).
pub const MAX_BATCH: usize = 64;

/// A request longer than this without its `"\r\n\r\n"` closes the connection.
pub const MAX_REQUEST_HEAD: usize = 64 * 1024;

/// Listen backlog of the baseline servers (the same as ringcore's `DEFAULT_BACKLOG`).
pub const BACKLOG: i32 = 1024;

/// `n` copies of [`RESPONSE`] back to back, for `1 <= n <= MAX_BATCH` (clamped), in a static
/// buffer: answering a burst of pipelined requests is one send with no allocation.
pub fn responses(n: usize) -> &'static [u8] {
    static BATCH: OnceLock<Vec<u8>> = OnceLock::new();
    let all = BATCH.get_or_init(|| RESPONSE.repeat(MAX_BATCH));
    &all[..n.clamp(1, MAX_BATCH) * RESPONSE.len()]
}

/// Why [`RequestCounter::feed`] gave up on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// The request head is longer than [`MAX_REQUEST_HEAD`].
    TooLarge,
    /// With [`Framing::Httparse`]: a head `httparse` refuses.
    Malformed,
}

/// How the fixed-response servers find their requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Count each `"\r\n\r\n"`: no HTTP parsing at all, the cheapest a server can be.
    #[default]
    Count,
    /// Frame with `httparse` instead (at most [`MAX_HEADERS`] fields, their slots left
    /// uninitialised): a request is a head it parses, and a head it refuses closes the
    /// connection; the answer stays the fixed one.
    Httparse,
}

impl Framing {
    /// [`Framing::Httparse`] when the environment has `BENCH_HTTPARSE=1`, else
    /// [`Framing::Count`] (read once per process).
    pub fn from_env() -> Framing {
        static FRAMING: OnceLock<Framing> = OnceLock::new();
        *FRAMING.get_or_init(|| match std::env::var("BENCH_HTTPARSE") {
            Ok(v) if v == "1" => Framing::Httparse,
            _ => Framing::Count,
        })
    }
}

/// Counts complete requests (each ends with `"\r\n\r\n"`; with [`Framing::Httparse`], each a
/// head `httparse` parses) in a byte stream that arrives in arbitrary chunks.
///
/// Only an incomplete request is copied (into `partial`); a chunk that holds whole requests is
/// scanned where it lies. An idle connection holds no buffer.
#[derive(Debug, Default)]
pub struct RequestCounter {
    partial: Vec<u8>,
    framing: Framing,
}

/// Finds every `"\r\n\r\n"` in `data`; returns (how many, bytes up to the end of the last).
fn scan(data: &[u8]) -> (usize, usize) {
    let mut count = 0;
    let mut consumed = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        if nl >= consumed + 3 && &data[nl - 3..=nl] == b"\r\n\r\n" {
            count += 1;
            consumed = nl + 1;
        }
    }
    (count, consumed)
}

/// Frames with `httparse` alone: parses heads from the front of `buf` until one is incomplete
/// and returns (how many, the bytes they fill). Field slots are left uninitialised
/// (`parse_with_uninit_headers`), so the parse is all the work.
fn parse_heads(buf: &[u8]) -> Result<(usize, usize), FramingError> {
    let mut at = 0;
    let mut n = 0;
    loop {
        let mut fields = [std::mem::MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&buf[at..], &mut fields) {
            Ok(httparse::Status::Complete(len)) => {
                at += len;
                n += 1;
            }
            Ok(httparse::Status::Partial) => return Ok((n, at)),
            Err(_) => return Err(FramingError::Malformed),
        }
    }
}

impl RequestCounter {
    /// A counter with no pending bytes that counts without parsing ([`Framing::Count`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A counter with no pending bytes that frames requests as `framing` says.
    pub fn with_framing(framing: Framing) -> Self {
        RequestCounter {
            partial: Vec::new(),
            framing,
        }
    }

    /// Feeds the next received chunk; returns how many requests it completed.
    pub fn feed(&mut self, data: &[u8]) -> Result<usize, FramingError> {
        if self.partial.is_empty() {
            let (n, used) = match self.framing {
                Framing::Count => scan(data),
                Framing::Httparse => parse_heads(data)?,
            };
            let rest = &data[used..];
            if rest.len() > MAX_REQUEST_HEAD {
                return Err(FramingError::TooLarge);
            }
            self.partial.extend_from_slice(rest);
            return Ok(n);
        }
        // `partial` holds no terminator, but one may straddle the old end: rescan its last
        // three bytes with the new chunk.
        let start = self.partial.len().saturating_sub(3);
        self.partial.extend_from_slice(data);
        let (mut n, used) = scan(&self.partial[start..]);
        let mut used = start + used;
        // With `httparse`, the held head is parsed once a terminator came (not at every
        // chunk), from its start, and the parse decides what was complete.
        if n > 0 && self.framing == Framing::Httparse {
            (n, used) = parse_heads(&self.partial)?;
        }
        if n > 0 {
            self.partial.drain(..used);
        }
        if self.partial.len() > MAX_REQUEST_HEAD {
            return Err(FramingError::TooLarge);
        }
        if self.partial.is_empty() && self.partial.capacity() > 4096 {
            self.partial = Vec::new();
        }
        Ok(n)
    }

    /// Bytes of an incomplete request held back.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// Command line of the baseline servers (`naive_uring`, `tokio_ct`, `ringcore_fixed`,
/// `axum_hello`, `glommio_hello`), with the cores resolved to ids.
#[derive(Debug, Clone)]
pub struct ServerArgs {
    /// `--addr HOST:PORT` (default `127.0.0.1:8080`).
    pub addr: SocketAddr,
    /// `--cores all|N|LIST` resolved against this process's CPU set (default `1`: the first
    /// allowed core); see [`ringcore_cli::CoreSpec`].
    pub cores: Vec<usize>,
}

/// The baseline servers' options, as clap reads them.
#[derive(Debug, clap::Parser)]
#[command(
    version,
    about = "A baseline server: every request answered with the same fixed response"
)]
struct ServerCli {
    /// Address every core listens on (SO_REUSEPORT); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT", value_parser = resolve)]
    addr: SocketAddr,
    /// Cores to serve on, one pinned thread each: `all`, `N` (the first N of this process's
    /// CPU set) or a list of ids such as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
}

/// Parses `--addr` and `--cores` from the process arguments as binary `name`. `--help`,
/// `--version` and a malformed command line exit here (0, 0, 2); `Err` holds the message for a
/// `--cores` outside this process's CPU set.
pub fn parse_server_args(name: &'static str) -> Result<ServerArgs, String> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = ServerCli::command().name(name).bin_name(name).get_matches();
    let cli = ServerCli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let cores = cli.cores.resolve().map_err(|e| format!("--cores: {e}"))?;
    Ok(ServerArgs {
        addr: cli.addr,
        cores,
    })
}

/// Resolves `HOST:PORT` to its first address.
pub fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("address {addr:?} resolves to nothing"))
}

/// A listening socket with `SO_REUSEADDR` and `SO_REUSEPORT`, so one per core can share `addr`.
pub fn reuseport_listener(addr: SocketAddr, nonblocking: bool) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(nonblocking)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Pins the calling thread to `core`; false if the kernel refused.
pub fn pin_to(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

/// Blocks SIGINT and SIGTERM in the calling thread (and the threads it starts later), for a
/// later [`wait_for_stop`].
pub fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; pthread_sigmask
    // reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Waits for one of the signals blocked by [`block_signals`]; `Err` holds `sigwait`'s error.
pub fn wait_for_stop(signals: &libc::sigset_t) -> Result<(), i32> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `signals` is an initialised set; sigwait writes one int.
    match unsafe { libc::sigwait(signals, &mut sig) } {
        0 => Ok(()),
        rc => Err(rc),
    }
}

/// Restricts the calling thread (and the threads it starts later) to `cores`, for servers
/// whose worker threads cannot be pinned one by one (actix-web, may); false if the kernel
/// refused.
pub fn restrict_to(cores: &[usize]) -> bool {
    // SAFETY: cpu_set_t is plain data, zeroed then filled by CPU_SET with ids below
    // CPU_SETSIZE (others are skipped); sched_setaffinity reads `size_of` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores {
            if c < libc::CPU_SETSIZE as usize {
                libc::CPU_SET(c, &mut set);
            }
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Waits for one start-up report from each of `n` server threads (`Ok(())` once a thread
/// listens); prints the first failure as `name: error`. True if all started.
pub fn wait_started<E: std::fmt::Display>(
    name: &str,
    rx: &std::sync::mpsc::Receiver<Result<(), E>>,
    n: usize,
) -> bool {
    for _ in 0..n {
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("{name}: {e}");
                return false;
            }
            Err(_) => {
                eprintln!("{name}: a server thread died during start-up");
                return false;
            }
        }
    }
    true
}

/// Joins the server threads; prints `name: error` for each that failed. False if any failed
/// or panicked.
pub fn join_all<E: std::fmt::Display>(
    name: &str,
    threads: Vec<std::thread::JoinHandle<Result<(), E>>>,
) -> bool {
    let mut ok = true;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                eprintln!("{name}: {e}");
                ok = false;
            }
            Err(_) => ok = false,
        }
    }
    ok
}

/// Binds `n` non-blocking `SO_REUSEPORT` listeners on `addr` (port 0 picks one port, which
/// every later listener shares). Returns the bound address and the listeners, or prints
/// `name: cannot bind ...` and returns `None`.
pub fn bind_listeners(name: &str, addr: SocketAddr, n: usize) -> Option<(SocketAddr, Vec<TcpListener>)> {
    let mut addr = addr;
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        match reuseport_listener(addr, true) {
            Ok(l) => {
                if let Ok(a) = l.local_addr() {
                    addr = a;
                }
                listeners.push(l);
            }
            Err(e) => {
                eprintln!("{name}: cannot bind {addr}: {e}");
                return None;
            }
        }
    }
    Some((addr, listeners))
}

/// The tokio baselines' common loop (`hyper_ct`, `hyper_h2`, `hyper_tls`): one current-thread
/// tokio runtime with a `LocalSet` per listed core, each thread pinned there with a
/// `SO_REUSEPORT` listener of its own on `addr` (how a tokio user runs hyper per core; prints
/// `listening on ADDR` once every thread accepts), `serve(stream)` spawned locally for each
/// accepted connection (`TCP_NODELAY` on), until SIGINT or SIGTERM. Errors are printed
/// prefixed with `name`; returns the exit code.
pub fn serve_tokio_local<F, Fut>(
    name: &str,
    addr: SocketAddr,
    cores: &[usize],
    serve: F,
) -> std::process::ExitCode
where
    F: Fn(tokio::net::TcpStream) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    use std::process::ExitCode;
    let Some((addr, listeners)) = bind_listeners(name, addr, cores.len().max(1)) else {
        return ExitCode::FAILURE;
    };
    // Blocked here, so every thread started below inherits the mask and only `wait_for_stop`
    // takes the signal.
    let signals = block_signals();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut threads = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let core = cores.get(i).copied();
        let (serve, mut stop, ready) = (serve.clone(), stop_rx.clone(), ready_tx.clone());
        let spawned =
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || -> Result<(), String> {
                    let started = (|| {
                        if let Some(core) = core {
                            if !pin_to(core) {
                                return Err(format!("cannot pin to core {core}"));
                            }
                        }
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .map_err(|e| format!("runtime: {e}"))?;
                        let listener = {
                            let _guard = rt.enter();
                            tokio::net::TcpListener::from_std(listener)
                                .map_err(|e| format!("listener: {e}"))?
                        };
                        Ok((rt, listener))
                    })();
                    let (rt, listener) = match started {
                        Ok(x) => x,
                        Err(e) => {
                            let _ = ready.send(Err(e.clone()));
                            return Err(e);
                        }
                    };
                    let _ = ready.send(Ok(()));
                    let local = tokio::task::LocalSet::new();
                    local.block_on(&rt, async move {
                        loop {
                            tokio::select! {
                                _ = stop.changed() => return,
                                accepted = listener.accept() => match accepted {
                                    Ok((stream, _)) => {
                                        let _ = stream.set_nodelay(true);
                                        tokio::task::spawn_local(serve(stream));
                                    }
                                    // EMFILE and the like: that accept failed; keep serving.
                                    Err(_) => tokio::task::yield_now().await,
                                },
                            }
                        }
                    });
                    Ok(())
                    // Dropping `local` and `rt` here cancels the connections and closes them.
                });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("{name}: cannot start a thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    drop(ready_tx);
    if !wait_started(name, &ready_rx, threads.len()) {
        return ExitCode::FAILURE;
    }
    println!("listening on {addr}");
    let waited = wait_for_stop(&signals);
    let _ = stop_tx.send(true);
    let mut code = ExitCode::SUCCESS;
    if let Err(rc) = waited {
        eprintln!("{name}: sigwait: {rc}");
        code = ExitCode::FAILURE;
    }
    if !join_all(name, threads) {
        code = ExitCode::FAILURE;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn one_request_in_one_chunk() {
        let mut c = RequestCounter::new();
        assert_eq!(c.feed(REQ), Ok(1));
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn pipelined_requests_in_one_chunk() {
        let mut c = RequestCounter::new();
        let three = REQ.repeat(3);
        assert_eq!(c.feed(&three), Ok(3));
        assert_eq!(c.pending(), 0);
    }

    /// Feeds `data` in two pieces, cut at every point: `want` requests, nothing held back.
    fn counts_at_every_cut(data: &[u8], framing: Framing, want: usize) {
        for cut in 0..=data.len() {
            let mut c = RequestCounter::with_framing(framing);
            let a = c.feed(&data[..cut]).unwrap_or(99);
            let b = c.feed(&data[cut..]).unwrap_or(99);
            assert_eq!(a + b, want, "{framing:?}, cut at {cut}");
            assert_eq!(c.pending(), 0, "{framing:?}, cut at {cut}");
        }
    }

    #[test]
    fn every_split_point_counts_once() {
        counts_at_every_cut(&REQ.repeat(2), Framing::Count, 2);
    }

    #[test]
    fn byte_at_a_time() {
        let mut c = RequestCounter::new();
        let mut total = 0;
        for b in REQ.repeat(4) {
            total += c.feed(&[b]).unwrap_or(99);
        }
        assert_eq!(total, 4);
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn partial_tail_is_kept() {
        let mut c = RequestCounter::new();
        let mut data = REQ.to_vec();
        data.extend_from_slice(b"GET / HT");
        assert_eq!(c.feed(&data), Ok(1));
        assert_eq!(c.pending(), 8);
        assert_eq!(c.feed(&REQ[8..]), Ok(1));
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn overlapping_terminators_do_not_double_count() {
        let mut c = RequestCounter::new();
        // "\r\n\r\n\r\n": one terminator, then the start of nothing.
        assert_eq!(c.feed(b"GET / HTTP/1.1\r\n\r\n\r\n"), Ok(1));
        assert_eq!(c.pending(), 2);
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut c = RequestCounter::new();
        let junk = vec![b'a'; MAX_REQUEST_HEAD + 1];
        assert_eq!(c.feed(&junk), Err(FramingError::TooLarge));
    }

    #[test]
    fn httparse_framing_counts_the_same_at_every_split_point() {
        counts_at_every_cut(&REQ.repeat(2), Framing::Httparse, 2);
    }

    #[test]
    fn httparse_framing_skips_empty_lines_as_httparse_does() {
        // Empty lines before a request line, whole or cut anywhere: one request.
        counts_at_every_cut(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", Framing::Httparse, 1);
    }

    #[test]
    fn httparse_framing_refuses_what_counting_lets_through() {
        // A space in a field name: httparse refuses it; counting sees one request.
        let bad = b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n";
        assert_eq!(RequestCounter::new().feed(bad), Ok(1));
        let mut c = RequestCounter::with_framing(Framing::Httparse);
        assert_eq!(c.feed(bad), Err(FramingError::Malformed));
        // Also when the bad head arrives after a good one, in pieces.
        let mut c = RequestCounter::with_framing(Framing::Httparse);
        assert_eq!(c.feed(&REQ[..10]), Ok(0));
        let mut rest = REQ[10..].to_vec();
        rest.extend_from_slice(bad);
        assert_eq!(c.feed(&rest), Err(FramingError::Malformed));
    }

    #[test]
    fn batched_responses() {
        assert_eq!(responses(1), RESPONSE);
        assert_eq!(responses(3), RESPONSE.repeat(3).as_slice());
        assert_eq!(responses(1000).len(), MAX_BATCH * RESPONSE.len());
    }
}
