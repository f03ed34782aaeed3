//! `ringcore-load`: an HTTP/1.1 load generator on ringcore's own runtime, open loop by default.
//!
//! ```text
//! ringcore-load --url http://127.0.0.1:PORT/plaintext  [--rate R | --rates R1,R2,...]  [--conns N=64]
//!               [--depth D=1] [--duration S=10] [--warmup S=1] [--cores all|N|LIST (default 1)]
//!               [--json FILE] [--no-progress] [--timeout-ms 2000]
//!               [--method GET] [--body TEMPLATE] [--content-type application/json]
//! ```
//!
//! - `--rate R` (> 0): open loop. Request `k` of connection `i` (of `N`) is due at
//!   `start + (i + k * N) / R`, so the `N` connections together send one request every `1/R`
//!   seconds. Latency is measured from that *intended* time to the completion of the response,
//!   so a stalled server shows in the tail instead of slowing the generator down (no
//!   coordinated omission). A connection behind schedule sends its overdue requests at once,
//!   up to `--depth` outstanding.
//! - `--rate 0`: closed loop (max throughput); every connection keeps `--depth` requests
//!   outstanding and latency is measured from the actual send.
//! - `--rates R1,R2,...`: a sweep, one run (with its own warm-up) per rate; JSON is an array.
//!
//! - `--method M --body TEMPLATE`: requests with a body (`Content-Length` set). Every `{n}` in
//!   the template becomes the request's sequence number, unique across the run (all
//!   connections and cores, warm-up included) and across the runs of a `--rates` sweep: request
//!   `k` of connection `i` is number `base + i + k * N`, the slot of its scheduled send, so
//!   numbering costs no coordination between cores. `--body '{"user":"u{n}"}'` makes every
//!   request a different user. `--content-type` (default `application/json` when a body is
//!   given). A template without `{n}` is rendered once, like a plain GET.
//!
//! Responses are counted by status class (`1xx` .. `5xx`, `other`) twice in the JSON: `status`
//! for the requests due in the measurement window (the ones in the latency histogram) and
//! `status_all` for every response of the run, warm-up and drain included (what the server
//! did in total, e.g. how many buys succeeded).
//!
//! Responses are delimited by `Content-Length` or `Transfer-Encoding: chunked`. Errors
//! (connect failures, resets, EOF with requests outstanding, timeouts, malformed responses) are
//! counted per lost request and the connection reconnects. Latencies go into one
//! `hdrhistogram` per core, merged at the end.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringcore_cli::CoreSpec;
use ringcore_runtime::net::TcpStream;
use ringcore_runtime::time::{sleep, sleep_until, timeout_at};
use ringcore_runtime::{n_shards, shard_id, spawn_local, Runtime};
use serde::Serialize;

/// Highest latency the histogram tracks (larger values are clamped): one hour, in µs.
const HIST_MAX_US: u64 = 3_600_000_000;
/// Longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

/// An HTTP/1.1 load generator on ringcore's runtime, open loop by default.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ringcore-load",
    version,
    after_help = "--rate 0 = closed loop (max throughput)"
)]
struct Cli {
    /// The URL every request goes to.
    #[arg(long, value_name = "http://HOST:PORT/PATH")]
    url: String,
    /// Requests per second, open loop (0: closed loop, max throughput).
    #[arg(long, value_name = "R", value_parser = ringcore_cli::non_negative, conflicts_with = "rates")]
    rate: Option<f64>,
    /// A sweep: one run (with its own warm-up) per rate; the JSON is an array.
    #[arg(long, value_name = "R1,R2,...", value_delimiter = ',', value_parser = ringcore_cli::non_negative)]
    rates: Vec<f64>,
    /// Connections (spread over the cores).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    conns: u32,
    /// Most requests outstanding on one connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    depth: u32,
    /// Seconds measured.
    #[arg(long, default_value = "10", value_name = "SECS", value_parser = ringcore_cli::secs)]
    duration: Duration,
    /// Seconds of warm-up before the measurement.
    #[arg(long, default_value = "1", value_name = "SECS", value_parser = ringcore_cli::secs)]
    warmup: Duration,
    /// Generator cores: `all`, `N` (the first N of this process's CPU set) or a list such as
    /// `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// A request unanswered this long is an error (its connection reconnects).
    #[arg(long = "timeout-ms", default_value = "2000", value_name = "MS", value_parser = ringcore_cli::millis)]
    timeout: Duration,
    /// Request method (one upper-case token).
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body; every `{n}` in it becomes the request's sequence number.
    #[arg(long, value_name = "TEMPLATE")]
    body: Option<String>,
    /// Content-Type of the body (default application/json when a body is given).
    #[arg(long, value_name = "TYPE")]
    content_type: Option<String>,
}

#[derive(Debug, Clone)]
struct Args {
    url: String,
    /// host:port to connect to.
    addr: String,
    host: String,
    path: String,
    rates: Vec<f64>,
    sweep: bool,
    conns: usize,
    depth: usize,
    duration: Duration,
    warmup: Duration,
    cores: CoreSpec,
    json: Option<String>,
    progress: bool,
    timeout: Duration,
    method: String,
    body: Option<String>,
    content_type: Option<String>,
}

/// Splits `http://host[:port][/path]` into (connect address, Host header, path).
fn parse_url(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err(format!("{url}: no host"));
    }
    let addr = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    Ok((addr, hostport.to_string(), path.to_string()))
}

impl Args {
    /// Checks what clap cannot and derives the connect address, Host and path from the URL.
    fn from_cli(c: Cli) -> Result<Args, String> {
        let (addr, host, path) = parse_url(&c.url)?;
        let sweep = c.rate.is_none() && !c.rates.is_empty();
        let rates = match c.rate {
            Some(r) => vec![r],
            None if c.rates.is_empty() => vec![0.0],
            None => c.rates,
        };
        let mut a = Args {
            url: c.url,
            addr,
            host,
            path,
            rates,
            sweep,
            conns: c.conns as usize,
            depth: c.depth as usize,
            duration: c.duration,
            warmup: c.warmup,
            cores: c.cores,
            json: c.json,
            progress: !c.no_progress,
            timeout: c.timeout,
            method: c.method,
            body: c.body,
            content_type: c.content_type,
        };
        if a.duration.is_zero() {
            return Err("--duration must be > 0".into());
        }
        if a.timeout.is_zero() {
            return Err("--timeout-ms must be > 0".into());
        }
        if a.method.is_empty() || !a.method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "--method {:?}: one upper-case token such as GET or POST",
                a.method
            ));
        }
        if a.body.is_some() && a.content_type.is_none() {
            a.content_type = Some("application/json".to_string());
        }
        if let Some(ct) = &a.content_type {
            if ct.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err("--content-type: no line breaks".into());
            }
        }
        Ok(a)
    }
}

/// The command line after the program name, parsed and checked (for the tests).
#[cfg(test)]
fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
    use clap::Parser;
    let cli = Cli::try_parse_from(std::iter::once("ringcore-load".to_string()).chain(argv))
        .map_err(|e| e.to_string())?;
    Args::from_cli(cli)
}

// ---------------------------------------------------------------------------------------------
// Schedule
// ---------------------------------------------------------------------------------------------

/// Offset from the run's start, in ns, of request `k` of connection `conn` when `conns`
/// connections together send `rate` requests per second: connection `conn` sends every
/// `conns / rate` seconds, shifted by `conn / rate`, so the merged stream is evenly spaced.
fn intended_offset_ns(conn: usize, k: u64, conns: usize, rate: f64) -> u64 {
    let slot = conn as f64 + k as f64 * conns as f64;
    (slot * 1e9 / rate) as u64
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// The bytes of every request of a run.
#[derive(Debug, Clone, PartialEq)]
enum RequestTemplate {
    /// The same bytes every time (no body, or a body without `{n}`).
    Fixed(Vec<u8>),
    /// A body with `{n}` in it: the head up to `Content-Length: `, then the body's pieces
    /// around each `{n}`.
    Numbered { head: Vec<u8>, parts: Vec<Vec<u8>> },
}

/// `v` in decimal, written at the end of `buf` (no allocation per request).
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// The placeholder for the sequence number in `--body`.
const SEQ: &str = "{n}";

impl RequestTemplate {
    fn new(a: &Args) -> Self {
        let mut head = format!("{} {} HTTP/1.1\r\nHost: {}\r\n", a.method, a.path, a.host);
        if let Some(ct) = &a.content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        let body = a.body.as_deref().unwrap_or("");
        let framed = a.body.is_some() || !matches!(a.method.as_str(), "GET" | "HEAD");
        if !framed {
            head.push_str("\r\n");
            return Self::Fixed(head.into_bytes());
        }
        head.push_str("Content-Length: ");
        if !body.contains(SEQ) {
            head.push_str(&format!("{}\r\n\r\n{body}", body.len()));
            return Self::Fixed(head.into_bytes());
        }
        let parts = body.split(SEQ).map(|p| p.as_bytes().to_vec()).collect();
        Self::Numbered {
            head: head.into_bytes(),
            parts,
        }
    }

    /// Appends request number `n` to `out`.
    fn render(&self, n: u64, out: &mut Vec<u8>) {
        match self {
            Self::Fixed(bytes) => out.extend_from_slice(bytes),
            Self::Numbered { head, parts } => {
                let mut buf = [0u8; 20];
                let digits = decimal(n, &mut buf);
                let len = parts.iter().map(Vec::len).sum::<usize>() + (parts.len() - 1) * digits.len();
                out.extend_from_slice(head);
                out.extend_from_slice(decimal(len as u64, &mut [0u8; 20]));
                out.extend_from_slice(b"\r\n\r\n");
                for (j, p) in parts.iter().enumerate() {
                    if j > 0 {
                        out.extend_from_slice(digits);
                    }
                    out.extend_from_slice(p);
                }
            }
        }
    }

    /// About how long one request is.
    fn len_hint(&self) -> usize {
        match self {
            Self::Fixed(b) => b.len(),
            Self::Numbered { head, parts } => {
                head.len() + 32 + parts.iter().map(|p| p.len() + 20).sum::<usize>()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Response delimiting
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// In the head (status line and headers).
    Head,
    /// `n` body bytes left (Content-Length).
    Fixed(u64),
    /// Chunked: reading a chunk-size line.
    ChunkSize,
    /// Chunked: `n` bytes of chunk data left, then CRLF.
    ChunkData(u64),
    /// Chunked: the CRLF after chunk data (bytes of it still expected).
    ChunkCrlf(u8),
    /// Chunked: trailer lines after the last chunk, until an empty line.
    Trailers,
}

/// Incremental HTTP/1.1 response delimiter: feed it received bytes, it reports the status of
/// every complete response. Bodies are skipped, not stored.
#[derive(Debug)]
struct RespParser {
    state: Body,
    /// Partial head or partial chunk line carried across chunks.
    carry: Vec<u8>,
    status: u16,
}

impl Default for RespParser {
    fn default() -> Self {
        Self {
            state: Body::Head,
            carry: Vec::new(),
            status: 0,
        }
    }
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// Parses a complete head (ending in CRLFCRLF); returns the status and how the body is framed.
fn parse_head(head: &[u8]) -> Result<(u16, Body), &'static str> {
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = lines.next().ok_or("empty head")?;
    if !status_line.starts_with(b"HTTP/1.") || status_line.len() < 12 || status_line[8] != b' ' {
        return Err("bad status line");
    }
    let code = &status_line[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Err("bad status code");
    }
    let status = code.iter().fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
    let mut len = None;
    let mut chunked = false;
    for line in lines {
        let line = trim_ascii(line);
        if line.is_empty() {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err("header without colon");
        };
        let (name, value) = (&line[..colon], trim_ascii(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let s = std::str::from_utf8(value).map_err(|_| "bad content-length")?;
            len = Some(s.parse::<u64>().map_err(|_| "bad content-length")?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value
                .rsplit(|&b| b == b',')
                .next()
                .map(trim_ascii)
                .unwrap_or_default();
            if !last.eq_ignore_ascii_case(b"chunked") {
                return Err("unsupported transfer-encoding");
            }
            chunked = true;
        }
    }
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        Body::Fixed(0)
    } else if chunked {
        Body::ChunkSize
    } else if let Some(n) = len {
        Body::Fixed(n)
    } else {
        return Err("response without Content-Length or chunked encoding");
    };
    Ok((status, body))
}

impl RespParser {
    /// Consumes `data`, calling `done(status)` for each complete response in order.
    fn feed(&mut self, mut data: &[u8], mut done: impl FnMut(u16)) -> Result<(), &'static str> {
        while !data.is_empty() {
            match self.state {
                Body::Head => {
                    let Some(used) = self.take_until(data, b"\r\n\r\n")? else {
                        return Ok(());
                    };
                    let (status, body) = if self.carry.is_empty() {
                        parse_head(&data[..used])?
                    } else {
                        let r = parse_head(&self.carry);
                        self.carry.clear();
                        r?
                    };
                    data = &data[used..];
                    self.status = status;
                    self.state = body;
                    if body == Body::Fixed(0) {
                        self.state = Body::Head;
                        done(status);
                    }
                }
                Body::Fixed(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    if take == n {
                        self.state = Body::Head;
                        done(self.status);
                    } else {
                        self.state = Body::Fixed(n - take);
                    }
                }
                Body::ChunkSize => {
                    let Some(used) = self.take_until(data, b"\r\n")? else {
                        return Ok(());
                    };
                    let line = if self.carry.is_empty() {
                        &data[..used]
                    } else {
                        &self.carry[..]
                    };
                    let hex = trim_ascii(line.split(|&b| b == b';').next().unwrap_or_default());
                    let size = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or("bad chunk size")?;
                    self.carry.clear();
                    data = &data[used..];
                    self.state = if size == 0 {
                        Body::Trailers
                    } else {
                        Body::ChunkData(size)
                    };
                }
                Body::ChunkData(n) => {
                    let take = n.min(data.len() as u64);
                    data = &data[take as usize..];
                    self.state = if take == n {
                        Body::ChunkCrlf(2)
                    } else {
                        Body::ChunkData(n - take)
                    };
                }
                Body::ChunkCrlf(left) => {
                    let want: &[u8] = if left == 2 { b"\r\n" } else { b"\n" };
                    let take = want.len().min(data.len());
                    if data[..take] != want[..take] {
                        return Err("missing CRLF after chunk data");
                    }
                    data = &data[take..];
                    let left = left - take as u8;
                    self.state = if left == 0 {
                        Body::ChunkSize
                    } else {
                        Body::ChunkCrlf(left)
                    };
                }
                Body::Trailers => {
                    let Some(used) = self.take_until(data, b"\r\n")? else {
                        return Ok(());
                    };
                    let empty = if self.carry.is_empty() {
                        used == 2
                    } else {
                        self.carry.len() == 2
                    };
                    self.carry.clear();
                    data = &data[used..];
                    if empty {
                        self.state = Body::Head;
                        done(self.status);
                    }
                }
            }
        }
        Ok(())
    }

    /// Looks for `delim` in carry + `data`. Returns how many bytes of `data` complete the
    /// delimited unit (appended to `carry` if `carry` was in use), or `None` after saving all of
    /// `data` in `carry`.
    fn take_until(&mut self, data: &[u8], delim: &[u8]) -> Result<Option<usize>, &'static str> {
        if self.carry.is_empty() {
            if let Some(i) = memchr::memmem::find(data, delim) {
                return Ok(Some(i + delim.len()));
            }
            self.carry.extend_from_slice(data);
        } else {
            let old = self.carry.len();
            let from = old.saturating_sub(delim.len() - 1);
            self.carry.extend_from_slice(data);
            if let Some(i) = memchr::memmem::find(&self.carry[from..], delim) {
                let end = from + i + delim.len();
                self.carry.truncate(end);
                return Ok(Some(end - old));
            }
        }
        if self.carry.len() > MAX_HEAD {
            return Err("response head or chunk line too long");
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Percentiles and results
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    p99_9: u64,
    p99_99: u64,
    max: u64,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_max(HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Percentiles in µs (hdrhistogram's equivalent-value rounding, 3 significant digits).
fn percentiles(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        p99_99: h.value_at_quantile(0.9999),
        max: h.max(),
    }
}

/// Responses by status class.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
struct StatusClasses {
    #[serde(rename = "1xx")]
    informational: u64,
    #[serde(rename = "2xx")]
    success: u64,
    #[serde(rename = "3xx")]
    redirect: u64,
    #[serde(rename = "4xx")]
    client_error: u64,
    #[serde(rename = "5xx")]
    server_error: u64,
    /// Any other code (under 100 or over 599).
    other: u64,
}

/// Index of `status`'s class in a `[_; 6]` of counts: 1xx .. 5xx, then everything else.
fn status_class(status: u16) -> usize {
    match status / 100 {
        c @ 1..=5 => usize::from(c - 1),
        _ => 5,
    }
}

impl StatusClasses {
    fn from_counts(c: [u64; 6]) -> Self {
        Self {
            informational: c[0],
            success: c[1],
            redirect: c[2],
            client_error: c[3],
            server_error: c[4],
            other: c[5],
        }
    }
}

#[derive(Debug, Serialize)]
struct RunResult {
    url: String,
    target_rate: f64,
    achieved_rate: f64,
    requests: u64,
    errors: u64,
    non_2xx: u64,
    duration_s: f64,
    conns: usize,
    depth: usize,
    latency_us: Latency,
    /// Latency of the *admitted* answers only: every status but 429 and 5xx (what a service
    /// that sheds load promises to keep fast).
    latency_admitted_us: Latency,
    /// How many answers `latency_admitted_us` covers.
    admitted: u64,
    saturated: bool,
    generator_cpu_ns_per_req: f64,
    /// Requests due in the window that neither completed nor failed before the drain ended
    /// (open loop against a saturated server: the backlog). Not in the latency histogram.
    unfinished: u64,
    cores: usize,
    /// Responses to the requests due in the window (the ones counted in `requests`), by class.
    status: StatusClasses,
    /// Every response of the run (warm-up and drain included), by class.
    status_all: StatusClasses,
}

/// What one shard sends back to the main thread.
#[derive(Debug)]
struct ShardOut {
    hist: Histogram<u64>,
    /// The admitted answers' latencies (not 429, not 5xx).
    admitted: Histogram<u64>,
    /// Responses (any status) completed inside the measurement window.
    completed_in_window: u64,
    /// Responses to requests due inside the window (these are in `hist`).
    requests: u64,
    non_2xx: u64,
    errors: u64,
    unfinished: u64,
    cpu_ns: u64,
    status: [u64; 6],
    status_all: [u64; 6],
    /// The highest request index `k` any connection of this shard reached.
    max_k: u64,
}

#[derive(Default)]
struct Local {
    completed_in_window: Cell<u64>,
    requests: Cell<u64>,
    non_2xx: Cell<u64>,
    errors: Cell<u64>,
    unfinished: Cell<u64>,
    progress: Cell<u64>,
    status: [Cell<u64>; 6],
    status_all: [Cell<u64>; 6],
    max_k: Cell<u64>,
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

/// On-CPU time of the calling thread in ns (first field of its schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

/// Shared, read-only plan of one run.
#[derive(Debug, Clone)]
struct Plan {
    addr: String,
    request: RequestTemplate,
    /// Sequence number (`{n}`) of request 0 of connection 0.
    seq_base: u64,
    rate: f64,
    conns: usize,
    depth: usize,
    timeout: Duration,
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    drain_end: Instant,
}

impl Plan {
    fn closed(&self) -> bool {
        self.rate == 0.0
    }
    fn intended(&self, conn: usize, k: u64) -> Instant {
        self.start + Duration::from_nanos(intended_offset_ns(conn, k, self.conns, self.rate))
    }
    /// True once connection state `next_due` (or, closed loop, the clock) says no more sends.
    fn sending_over(&self, next_due: Instant, now: Instant) -> bool {
        if self.closed() {
            now >= self.window_end
        } else {
            next_due >= self.window_end
        }
    }
    fn in_window(&self, t: Instant) -> bool {
        t >= self.window_start && t < self.window_end
    }
}

struct Outstanding {
    intended: Instant,
    sent: Instant,
}

/// Drives one connection until its schedule (or, closed loop, the window) ends and its last
/// responses are in, or the drain deadline passes.
/// The latency histograms of one shard: every answer, and the admitted ones.
struct Hists {
    all: Histogram<u64>,
    admitted: Histogram<u64>,
}

fn is_admitted(status: u16) -> bool {
    status != 429 && !(500..600).contains(&status)
}

async fn connection(plan: Rc<Plan>, conn: usize, local: Rc<Local>, hist: Rc<RefCell<Hists>>) {
    let closed = plan.closed();
    let mut k: u64 = 0;
    let mut next_due = if closed {
        plan.start
    } else {
        plan.intended(conn, 0)
    };
    let mut outq: VecDeque<Outstanding> = VecDeque::with_capacity(plan.depth);
    let mut wbuf: Vec<u8> = Vec::with_capacity(plan.request.len_hint() * plan.depth);
    let lose = |outq: &mut VecDeque<Outstanding>| {
        bump(&local.errors, outq.len() as u64);
        outq.clear();
    };
    'reconnect: loop {
        let now = Instant::now();
        if now >= plan.drain_end || (plan.sending_over(next_due, now) && outq.is_empty()) {
            break;
        }
        // A connect is bounded by the request timeout: against a listener whose backlog is
        // full the SYN goes unanswered, and waiting for the run's end would hide that stall.
        let connect_deadline = (now + plan.timeout).min(plan.drain_end);
        let stream = match timeout_at(connect_deadline, TcpStream::connect(plan.addr.as_str())).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => {
                bump(&local.errors, 1);
                sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) if Instant::now() < plan.drain_end => {
                bump(&local.errors, 1);
                continue;
            }
            Err(_) => break,
        };
        let _ = stream.set_nodelay(true);
        let mut parser = RespParser::default();
        if next_due < plan.start {
            next_due = plan.start;
        }
        loop {
            // Send every request that is due, up to `depth` outstanding, in one write.
            let now = Instant::now();
            if now >= plan.drain_end {
                break 'reconnect;
            }
            wbuf.clear();
            while outq.len() < plan.depth && next_due <= now && !plan.sending_over(next_due, now) {
                // The request's slot in the merged schedule: unique over connections and cores.
                let n = plan.seq_base + conn as u64 + k * plan.conns as u64;
                plan.request.render(n, &mut wbuf);
                outq.push_back(Outstanding {
                    intended: if closed { now } else { next_due },
                    sent: now,
                });
                k += 1;
                if !closed {
                    next_due = plan.intended(conn, k);
                }
            }
            if !wbuf.is_empty() {
                let (res, b) = stream.write_all(std::mem::take(&mut wbuf)).await;
                wbuf = b;
                if res.is_err() {
                    lose(&mut outq);
                    continue 'reconnect;
                }
            }
            if outq.is_empty() {
                if plan.sending_over(next_due, now) {
                    break 'reconnect;
                }
                sleep_until(next_due).await;
                continue;
            }
            // Wait for a response, a request falling due, or the oldest request's timeout.
            let oldest_timeout = outq.front().map_or(plan.drain_end, |o| o.sent + plan.timeout);
            let mut wake = oldest_timeout.min(plan.drain_end);
            if !closed && outq.len() < plan.depth && next_due < plan.window_end {
                wake = wake.min(next_due);
            }
            let chunk = match timeout_at(wake, stream.recv()).await {
                Err(_) => {
                    if Instant::now() >= oldest_timeout {
                        lose(&mut outq);
                        continue 'reconnect;
                    }
                    continue;
                }
                Ok(Err(_)) => {
                    lose(&mut outq);
                    continue 'reconnect;
                }
                Ok(Ok(c)) => c,
            };
            if chunk.is_empty() {
                // EOF: whatever was outstanding is lost.
                lose(&mut outq);
                continue 'reconnect;
            }
            let now = Instant::now();
            let mut extra = false;
            let mut h = hist.borrow_mut();
            let res = parser.feed(&chunk, |status| {
                let Some(o) = outq.pop_front() else {
                    extra = true;
                    return;
                };
                if plan.in_window(now) {
                    bump(&local.completed_in_window, 1);
                }
                bump(&local.progress, 1);
                let class = status_class(status);
                bump(&local.status_all[class], 1);
                if plan.in_window(o.intended) {
                    bump(&local.requests, 1);
                    bump(&local.status[class], 1);
                    if !(200..300).contains(&status) {
                        bump(&local.non_2xx, 1);
                    }
                    let us = now.saturating_duration_since(o.intended).as_micros() as u64;
                    h.all.saturating_record(us);
                    if is_admitted(status) {
                        h.admitted.saturating_record(us);
                    }
                }
            });
            drop(h);
            drop(chunk);
            if res.is_err() || extra {
                bump(&local.errors, u64::from(extra));
                lose(&mut outq);
                continue 'reconnect;
            }
        }
    }
    local.max_k.set(local.max_k.get().max(k));
    // Requests due in the window that never completed or failed (the backlog at the end).
    let mut unfinished = outq.iter().filter(|o| plan.in_window(o.intended)).count() as u64;
    if !closed {
        while next_due < plan.window_end {
            if next_due >= plan.window_start {
                unfinished += 1;
            }
            k += 1;
            next_due = plan.intended(conn, k);
        }
    }
    bump(&local.unfinished, unfinished);
}

async fn shard_main(plan: Arc<Plan>, progress: Option<Arc<AtomicU64>>) -> ShardOut {
    let (me, shards) = (shard_id(), n_shards());
    let plan = Rc::new(Plan::clone(&plan));
    let local = Rc::new(Local::default());
    let hist = Rc::new(RefCell::new(Hists {
        all: new_hist(),
        admitted: new_hist(),
    }));
    let tasks: Vec<_> = (0..plan.conns)
        .filter(|c| c % shards == me)
        .map(|c| spawn_local(connection(plan.clone(), c, local.clone(), hist.clone())))
        .collect();
    // CPU time of this shard's thread over the measurement window.
    let cpu = {
        let plan = plan.clone();
        spawn_local(async move {
            sleep_until(plan.window_start).await;
            let a = thread_cpu_ns();
            sleep_until(plan.window_end).await;
            thread_cpu_ns().saturating_sub(a)
        })
    };
    let ticker = progress.map(|p| {
        let local = local.clone();
        let end = plan.drain_end;
        spawn_local(async move {
            while Instant::now() < end {
                sleep(Duration::from_millis(100)).await;
                p.fetch_add(local.progress.replace(0), Ordering::Relaxed);
            }
        })
    });
    for t in tasks {
        let _ = t.await;
    }
    if let Some(t) = ticker {
        t.abort();
    }
    let cpu_ns = cpu.await.unwrap_or(0);
    let hists = hist.replace(Hists {
        all: new_hist(),
        admitted: new_hist(),
    });
    ShardOut {
        hist: hists.all,
        admitted: hists.admitted,
        completed_in_window: local.completed_in_window.get(),
        requests: local.requests.get(),
        non_2xx: local.non_2xx.get(),
        errors: local.errors.get(),
        unfinished: local.unfinished.get(),
        cpu_ns,
        status: local.status.each_ref().map(Cell::get),
        status_all: local.status_all.each_ref().map(Cell::get),
        max_k: local.max_k.get(),
    }
}

/// One run at `rate`; request `{n}`s start at `seq_base`. Returns the result and the first
/// sequence number the next run may use.
fn run_once(args: &Args, rate: f64, seq_base: u64) -> Result<(RunResult, u64), String> {
    let rt = Runtime::builder()
        .cores(args.cores.to_runtime())
        .handle_signals(true)
        // Open-loop timers fall due every few µs; spinning for them would burn the core and
        // inflate the generator's CPU per request. The ring wait's timeout is precise enough.
        .idle_spin(Duration::ZERO)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let n_cores = rt.cores().len();
    let request = RequestTemplate::new(args);
    // Leave the shards time to start and connect before the schedule begins.
    let start = Instant::now() + Duration::from_millis(50);
    let window_start = start + args.warmup;
    let window_end = window_start + args.duration;
    let plan = Arc::new(Plan {
        addr: args.addr.clone(),
        request,
        seq_base,
        rate,
        conns: args.conns,
        depth: args.depth,
        timeout: args.timeout,
        start,
        window_start,
        window_end,
        drain_end: window_end + args.timeout,
    });
    let total = args.warmup + args.duration;
    let show = args.progress && total > Duration::from_secs(3) && std::io::stdout().is_terminal();
    let counter = show.then(|| Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let bar_thread = counter.clone().map(|c| {
        let stop = stop.clone();
        let label = if rate == 0.0 {
            "closed loop".to_string()
        } else {
            format!("{rate:.0} req/s")
        };
        std::thread::spawn(move || progress_bar(c, stop, start, total, label))
    });
    let p2 = plan.clone();
    let out = rt.run(move || shard_main(p2.clone(), counter.clone()));
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = bar_thread {
        let _ = t.join();
    }
    let outs = out.map_err(|e| format!("runtime: {e}"))?;
    if outs.iter().any(Option::is_none) {
        return Err("interrupted".into());
    }
    let mut hist = new_hist();
    let mut admitted = new_hist();
    let (mut completed, mut requests, mut non_2xx, mut errors, mut unfinished, mut cpu) = (0, 0, 0, 0, 0, 0);
    let (mut status, mut status_all, mut max_k) = ([0u64; 6], [0u64; 6], 0);
    for o in outs.into_iter().flatten() {
        for i in 0..6 {
            status[i] += o.status[i];
            status_all[i] += o.status_all[i];
        }
        max_k = max_k.max(o.max_k);
        hist.add(&o.hist).map_err(|e| format!("histogram merge: {e}"))?;
        admitted
            .add(&o.admitted)
            .map_err(|e| format!("histogram merge: {e}"))?;
        completed += o.completed_in_window;
        requests += o.requests;
        non_2xx += o.non_2xx;
        errors += o.errors;
        unfinished += o.unfinished;
        cpu += o.cpu_ns;
    }
    let secs = args.duration.as_secs_f64();
    let achieved = completed as f64 / secs;
    let next_seq = seq_base + max_k * args.conns as u64;
    let result = RunResult {
        url: args.url.clone(),
        target_rate: rate,
        achieved_rate: achieved,
        requests,
        errors,
        non_2xx,
        duration_s: secs,
        conns: args.conns,
        depth: args.depth,
        latency_us: percentiles(&hist),
        latency_admitted_us: percentiles(&admitted),
        admitted: admitted.len(),
        saturated: rate > 0.0 && achieved < 0.99 * rate,
        generator_cpu_ns_per_req: if completed > 0 {
            cpu as f64 / completed as f64
        } else {
            0.0
        },
        unfinished,
        cores: n_cores,
        status: StatusClasses::from_counts(status),
        status_all: StatusClasses::from_counts(status_all),
    };
    Ok((result, next_seq))
}

fn progress_bar(
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    start: Instant,
    total: Duration,
    label: String,
) {
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {elapsed}/{duration} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label);
    let (mut last_n, mut last_t) = (0u64, Instant::now());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        let n = count.load(Ordering::Relaxed);
        let rate = (n - last_n) as f64 / now.duration_since(last_t).as_secs_f64().max(1e-9);
        (last_n, last_t) = (n, now);
        bar.set_position(
            (now.saturating_duration_since(start).as_millis() as u64).min(total.as_millis() as u64),
        );
        bar.set_message(format!("{rate:.0} req/s"));
    }
    bar.finish_and_clear();
}

fn print_summary(r: &RunResult) {
    let target = if r.target_rate == 0.0 {
        "closed loop (max)".to_string()
    } else {
        format!("{:.0} req/s", r.target_rate)
    };
    let l = &r.latency_us;
    println!(
        "{}  conns={} depth={} cores={} duration={:.1}s",
        r.url, r.conns, r.depth, r.cores, r.duration_s
    );
    println!("  target rate     {target}");
    println!("  achieved rate   {:.0} req/s", r.achieved_rate);
    println!(
        "  requests        {}  errors {}  non-2xx {}  unfinished {}",
        r.requests, r.errors, r.non_2xx, r.unfinished
    );
    println!(
        "  latency (us)    p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
        l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max
    );
    let l = &r.latency_admitted_us;
    println!(
        "  admitted (us)   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} answers neither 429 nor 5xx)",
        l.p50, l.p90, l.p99, l.p99_9, l.max, r.admitted
    );
    let (s, a) = (&r.status, &r.status_all);
    println!(
        "  status          2xx {}  4xx {}  5xx {}  other {}  (whole run: 2xx {}  4xx {}  5xx {}  other {})",
        s.success,
        s.client_error,
        s.server_error,
        s.informational + s.redirect + s.other,
        a.success,
        a.client_error,
        a.server_error,
        a.informational + a.redirect + a.other
    );
    println!("  generator CPU   {:.0} ns/request", r.generator_cpu_ns_per_req);
    if r.saturated {
        println!(
            "WARNING: achieved rate {:.0} is more than 1% below target {:.0} (generator or server saturated)",
            r.achieved_rate, r.target_rate
        );
    }
}

fn main() -> ExitCode {
    let args = match Args::from_cli(clap::Parser::parse()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringcore-load: {e}");
            return ExitCode::from(2);
        }
    };
    let mut results = Vec::new();
    let mut seq = 0;
    for &rate in &args.rates {
        match run_once(&args, rate, seq) {
            Ok((r, next)) => {
                seq = next;
                print_summary(&r);
                let _ = std::io::stdout().flush();
                results.push(r);
            }
            Err(e) => {
                eprintln!("ringcore-load: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = &args.json {
        let text = if args.sweep {
            serde_json::to_string_pretty(&results)
        } else {
            serde_json::to_string_pretty(&results[0])
        };
        let written = text
            .map_err(|e| e.to_string())
            .and_then(|t| std::fs::write(path, t + "\n").map_err(|e| format!("{path}: {e}")));
        if let Err(e) = written {
            eprintln!("ringcore-load: writing JSON: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const R200: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";
    const R404: &[u8] = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    const RCHUNK: &[u8] = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nHello\r\n\
a\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
    const R204: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    const R503: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";

    fn stream() -> (Vec<u8>, Vec<u16>) {
        let mut all = Vec::new();
        let mut want = Vec::new();
        for (r, s) in [
            (R200, 200),
            (RCHUNK, 201),
            (R404, 404),
            (R204, 204),
            (R200, 200),
            (R503, 503),
        ] {
            all.extend_from_slice(r);
            want.push(s);
        }
        (all, want)
    }

    fn feed_parts(parts: &[&[u8]]) -> Result<Vec<u16>, &'static str> {
        let mut p = RespParser::default();
        let mut got = Vec::new();
        for part in parts {
            p.feed(part, |s| got.push(s))?;
        }
        assert_eq!(p.state, Body::Head, "parser ends between responses");
        assert!(p.carry.is_empty());
        Ok(got)
    }

    #[test]
    fn pipelined_responses_in_one_chunk() {
        let (all, want) = stream();
        assert_eq!(feed_parts(&[&all]).unwrap(), want);
    }

    #[test]
    fn pipelined_responses_split_at_every_byte_boundary() {
        let (all, want) = stream();
        for i in 0..=all.len() {
            let got = feed_parts(&[&all[..i], &all[i..]]).unwrap();
            assert_eq!(got, want, "split at {i}");
        }
        // Three pieces, at every pair of boundaries.
        for i in 0..=all.len() {
            for j in i..=all.len() {
                let got = feed_parts(&[&all[..i], &all[i..j], &all[j..]]).unwrap();
                assert_eq!(got, want, "split at {i}, {j}");
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let (all, want) = stream();
        let parts: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(feed_parts(&parts).unwrap(), want);
    }

    #[test]
    fn completes_at_exact_end_and_reports_nothing_early() {
        let mut p = RespParser::default();
        let mut got = Vec::new();
        p.feed(&R200[..R200.len() - 1], |s| got.push(s)).unwrap();
        assert!(got.is_empty());
        p.feed(&R200[R200.len() - 1..], |s| got.push(s)).unwrap();
        assert_eq!(got, vec![200]);
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bad in [
            &b"HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabX",
        ] {
            let mut p = RespParser::default();
            assert!(p.feed(bad, |_| {}).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut p = RespParser::default();
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert!(p.feed(b"HTTP/1.1 200 OK\r\nX: ", |_| {}).is_ok());
        assert!(p.feed(&huge, |_| {}).is_err());
    }

    #[test]
    fn schedule_is_evenly_spaced_over_connections() {
        let (conns, rate) = (4usize, 1000.0);
        // Connection i, request k is slot i + k*conns: 1 ms apart overall.
        let mut all: Vec<u64> = (0..conns)
            .flat_map(|c| (0..25).map(move |k| intended_offset_ns(c, k, conns, rate)))
            .collect();
        all.sort_unstable();
        for (slot, t) in all.iter().enumerate() {
            assert_eq!(*t, slot as u64 * 1_000_000);
        }
        // Each connection on its own: conns / rate apart.
        assert_eq!(intended_offset_ns(1, 0, 64, 64_000.0), 15_625);
        assert_eq!(
            intended_offset_ns(1, 1, 64, 64_000.0) - intended_offset_ns(1, 0, 64, 64_000.0),
            1_000_000
        );
        // No drift over a long run: request 10 million of connection 0 at 100k/s is at 100 s
        // (64 conns, so 10M * 64 slots / 100k/s = 6400 s).
        assert_eq!(
            intended_offset_ns(0, 10_000_000, 64, 100_000.0),
            6_400_000_000_000
        );
    }

    #[test]
    fn percentile_extraction() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let l = percentiles(&h);
        // 3 significant digits: values are within 0.1%.
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(l.p50, 5_000), "{l:?}");
        assert!(near(l.p90, 9_000), "{l:?}");
        assert!(near(l.p99, 9_900), "{l:?}");
        assert!(near(l.p99_9, 9_990), "{l:?}");
        assert!(near(l.p99_99, 9_999), "{l:?}");
        assert!(near(l.max, 10_000), "{l:?}");
        // A single outlier shows up only at the top.
        let mut h = new_hist();
        for _ in 0..9_999 {
            h.record(100).unwrap();
        }
        h.record(50_000).unwrap();
        let l = percentiles(&h);
        assert_eq!((l.p50, l.p99, l.p99_9, l.p99_99), (100, 100, 100, 100));
        assert!(near(l.max, 50_000), "{l:?}");
        assert_eq!(percentiles(&new_hist()), Latency::default());
        // Merging per-core histograms keeps every count.
        let mut a = new_hist();
        a.record(10).unwrap();
        let mut b = new_hist();
        b.record(1_000).unwrap();
        a.add(&b).unwrap();
        assert_eq!((a.len(), percentiles(&a).max), (2, 1_000));
    }

    fn template(argv: &str, extra: &[&str]) -> RequestTemplate {
        let mut v: Vec<String> = argv.split_whitespace().map(String::from).collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        RequestTemplate::new(&parse_args(v).unwrap())
    }

    fn rendered(t: &RequestTemplate, n: u64) -> String {
        let mut out = Vec::new();
        t.render(n, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_get_is_the_old_request() {
        let t = template("--url http://127.0.0.1:8080/plaintext", &[]);
        assert_eq!(
            t,
            RequestTemplate::Fixed(b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_vec())
        );
        assert_eq!(rendered(&t, 7), rendered(&t, 8));
    }

    #[test]
    fn numbered_bodies() {
        let t = template(
            "--url http://h:1/items/hot/buy --method POST",
            &["--body", r#"{"user":"u{n}","again":"{n}"}"#],
        );
        let want = |n: &str| {
            let body = format!(r#"{{"user":"u{n}","again":"{n}"}}"#);
            format!(
                "POST /items/hot/buy HTTP/1.1\r\nHost: h:1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        for n in [0, 9, 10, 12345, u64::MAX] {
            assert_eq!(rendered(&t, n), want(&n.to_string()));
        }
        // Requests back to back parse as separate requests with the right lengths.
        let mut two = Vec::new();
        t.render(5, &mut two);
        t.render(123, &mut two);
        assert_eq!(String::from_utf8(two).unwrap(), want("5") + &want("123"));
        // A body without {n} is rendered once; a POST without a body says Content-Length: 0.
        let t = template(
            "--url http://h:1/p --method PUT --content-type text/plain",
            &["--body", "stock"],
        );
        assert_eq!(
            t,
            RequestTemplate::Fixed(
                b"PUT /p HTTP/1.1\r\nHost: h:1\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nstock"
                    .to_vec()
            )
        );
        let t = template("--url http://h:1/p --method POST", &[]);
        assert_eq!(
            rendered(&t, 1),
            "POST /p HTTP/1.1\r\nHost: h:1\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn sequence_numbers_are_unique_over_connections() {
        // n = base + conn + k * conns: every (conn, k) its own number, no gaps.
        let (conns, base) = (7u64, 1000u64);
        let mut all: Vec<u64> = (0..conns)
            .flat_map(|c| (0..50).map(move |k| base + c + k * conns))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (base..base + conns * 50).collect::<Vec<_>>());
    }

    #[test]
    fn status_classes() {
        let mut c = [0u64; 6];
        for s in [100, 200, 201, 204, 301, 404, 409, 409, 503, 99, 600] {
            c[status_class(s)] += 1;
        }
        let s = StatusClasses::from_counts(c);
        assert_eq!(
            (
                s.informational,
                s.success,
                s.redirect,
                s.client_error,
                s.server_error,
                s.other
            ),
            (1, 3, 1, 3, 1, 2)
        );
        let j = serde_json::to_value(s).unwrap();
        assert_eq!(
            (j["2xx"].as_u64(), j["4xx"].as_u64(), j["other"].as_u64()),
            (Some(3), Some(3), Some(2))
        );
    }

    #[test]
    fn cli_contract() {
        let a = |s: &str| parse_args(s.split_whitespace().map(String::from));
        let x = a("--url http://127.0.0.1:8080/plaintext").unwrap();
        assert_eq!(
            (x.addr.as_str(), x.path.as_str()),
            ("127.0.0.1:8080", "/plaintext")
        );
        assert_eq!(
            (x.rates.clone(), x.sweep, x.conns, x.depth),
            (vec![0.0], false, 64, 1)
        );
        assert_eq!(
            (x.duration, x.warmup, x.timeout),
            (
                Duration::from_secs(10),
                Duration::from_secs(1),
                Duration::from_millis(2000)
            )
        );
        assert_eq!(x.cores, CoreSpec::First(1));
        let x = a(
            "--url http://127.0.0.1:1/p --rates 1000,2000 --conns 8 --depth 4 --duration 2.5 --warmup 0 \
--cores 0,2,5 --json out.json --no-progress --timeout-ms 300",
        )
        .unwrap();
        assert_eq!((x.rates.clone(), x.sweep), (vec![1000.0, 2000.0], true));
        assert_eq!(
            (x.conns, x.depth, x.duration, x.warmup),
            (8, 4, Duration::from_millis(2500), Duration::ZERO)
        );
        assert_eq!(
            (x.cores, x.json.as_deref(), x.progress),
            (CoreSpec::List(vec![0, 2, 5]), Some("out.json"), false)
        );
        assert_eq!(x.timeout, Duration::from_millis(300));
        assert_eq!(a("--url http://h/ --rate 5000").unwrap().rates, vec![5000.0]);
        assert!(a("--url https://h/").is_err());
        assert!(a("--rate 5").is_err());
        assert!(a("--url http://h/ --rate -1").is_err());
        assert!(a("--url http://h/ --bogus").is_err());
        assert_eq!(
            (x.method.as_str(), x.body.as_deref(), x.content_type.as_deref()),
            ("GET", None, None)
        );
        let x = a("--url http://h/ --method POST --body {\"user\":\"u{n}\"}").unwrap();
        assert_eq!(
            (x.method.as_str(), x.body.as_deref(), x.content_type.as_deref()),
            ("POST", Some(r#"{"user":"u{n}"}"#), Some("application/json"))
        );
        assert!(a("--url http://h/ --method post").is_err());
        assert!(a("--url http://h/ --method").is_err());
    }
}
