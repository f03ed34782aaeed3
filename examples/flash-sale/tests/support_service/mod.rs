//! Black-box helpers for the `flash-sale serve` tests: the service as a child process (started
//! on a free port, stopped with SIGTERM or killed with SIGKILL by its own PID, killed on drop),
//! a unique temporary data directory, and a small HTTP/1.1 client over `std::net::TcpStream`
//! (keep-alive; responses read with `ringcore_testkit::http1`, the workspace's one parser).
//!
//! Every wait is bounded: the service must print its listening line within
//! [`START_TIMEOUT`], every read times out after [`READ_TIMEOUT`], a stop waits at most
//! [`STOP_TIMEOUT`].
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ringcore_testkit::http1::{self, RequestKind};
use serde_json::Value;

/// How long the service may take to print `flash-sale listening on ...`.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for any single read or write.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long SIGTERM may take to stop the service.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// GET responses may be cached per core for up to 100 ms; poll this long before asserting.
pub(crate) const GET_SETTLE: Duration = Duration::from_secs(1);

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A string unique to this process and call: `tag-pid-seq-nanos`.
pub(crate) fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("flash-sale-svc-{}", unique(tag)));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `journal-*.log` files of a data directory with their sizes.
pub(crate) fn journal_sizes(dir: &Path) -> BTreeMap<String, u64> {
    let mut sizes = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read data dir") {
        let entry = entry.expect("data dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("journal-") && name.ends_with(".log") {
            sizes.insert(name, entry.metadata().expect("journal metadata").len());
        }
    }
    sizes
}

/// How to start `flash-sale serve`.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) cores: usize,
    pub(crate) data_dir: PathBuf,
    pub(crate) store: Option<String>,
    pub(crate) admin_token: Option<String>,
    pub(crate) prefix: Option<String>,
    /// `--addr` (default `127.0.0.1:0`, any free port).
    pub(crate) addr: Option<String>,
    /// More command-line arguments, after the others (`--accept-data-loss`, ...).
    pub(crate) extra_args: Vec<String>,
    /// Start with SIGXFSZ ignored (inherited through exec), so that a write past an
    /// `RLIMIT_FSIZE` set later fails with EFBIG instead of killing the service.
    pub(crate) ignore_sigxfsz: bool,
}

impl Config {
    /// Embedded store, `cores` cores, data in `data_dir`.
    pub(crate) fn new(cores: usize, data_dir: &Path) -> Config {
        Config {
            cores,
            data_dir: data_dir.to_owned(),
            store: None,
            admin_token: None,
            prefix: None,
            addr: None,
            extra_args: Vec::new(),
            ignore_sigxfsz: false,
        }
    }
}

/// A running `flash-sale serve`; killed (SIGKILL, by PID) on drop unless stopped.
pub(crate) struct Service {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    stderr_reader: Option<thread::JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl Service {
    /// Starts the service expecting it to refuse: waits (at most [`START_TIMEOUT`]) for it
    /// to exit and returns its status and stderr. Panics if it starts listening instead.
    pub(crate) fn start_refused(config: &Config) -> (ExitStatus, String) {
        let mut child = Self::command(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flash-sale");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                let mut out = String::new();
                let mut err = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                assert!(
                    !out.contains("flash-sale listening on"),
                    "expected a refusal, but it listened: stdout {out:?}, stderr {err:?}"
                );
                return (status, err);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("flash-sale neither refused nor exited within {START_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn command(config: &Config) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flash-sale"));
        cmd.arg("serve")
            .args(["--addr", config.addr.as_deref().unwrap_or("127.0.0.1:0")])
            .args(["--cores", &config.cores.to_string()])
            .arg("--data-dir")
            .arg(&config.data_dir);
        if let Some(store) = &config.store {
            cmd.args(["--store", store]);
        }
        if let Some(token) = &config.admin_token {
            cmd.args(["--admin-token", token]);
        }
        if let Some(prefix) = &config.prefix {
            cmd.args(["--prefix", prefix]);
        }
        cmd.args(&config.extra_args);
        if config.ignore_sigxfsz {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only async-signal-safe calls are allowed;
            // signal(2) with SIG_IGN is one, and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Starts the service and waits (at most [`START_TIMEOUT`]) for its listening line.
    pub(crate) fn start(config: &Config) -> Service {
        let mut child = Self::command(config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn flash-sale");

        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr pipe");
        let err_sink = stderr.clone();
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends at EOF, when the service exits.
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err_sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });

        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let out_pipe = child.stdout.take().expect("stdout pipe");
        let out_sink = stdout_lines.clone();
        let (tx, rx) = mpsc::channel::<String>();
        thread::spawn(move || {
            // Keeps draining stdout after the listening line so the service never blocks on it.
            for line in BufReader::new(out_pipe).lines() {
                let Ok(line) = line else { break };
                out_sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });

        let mut service = Service {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            stderr,
            stdout_lines,
            stderr_reader: Some(stderr_reader),
            exited: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("flash-sale listening on ") {
                        // `ADDR (driver: KIND)`: the address is the first word.
                        service.addr = addr
                            .split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .parse()
                            .unwrap_or_else(|e| panic!("listening line {line:?} has no address: {e}"));
                        assert!(
                            service.addr.ip().is_loopback() && service.addr.port() != 0,
                            "listening line {line:?}: expected 127.0.0.1 and a real port"
                        );
                        return service;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is gone or going; collect its status.
                    let status = service.wait_exit(Duration::from_secs(2));
                    panic!(
                        "flash-sale exited before printing its listening line ({status:?}); \
                         stdout {:?}; stderr:\n{}",
                        service.stdout_lines(),
                        service.stderr_wait(Duration::from_millis(200))
                    );
                }
            }
            if let Some(status) = service.child.try_wait().expect("try_wait") {
                service.exited = Some(status);
                panic!(
                    "flash-sale exited before printing its listening line ({status}); \
                     stdout {:?}; stderr:\n{}",
                    service.stdout_lines(),
                    service.stderr_wait(Duration::from_millis(200))
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "flash-sale printed no `flash-sale listening on` line in {START_TIMEOUT:?}; \
                     stdout {:?}; stderr:\n{}",
                    service.stdout_lines(),
                    service.stderr()
                );
            }
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the service wrote on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stderr after giving the reader thread up to `wait` to catch up (it ends at EOF).
    fn stderr_wait(&self, wait: Duration) -> String {
        thread::sleep(wait);
        self.stderr()
    }

    /// Stderr once `done` holds for it, or whatever is there after 1 s.
    pub(crate) fn stderr_until(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            let s = self.stderr();
            if done(&s) || Instant::now() >= deadline {
                return s;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then waits (at most [`STOP_TIMEOUT`]) for the exit status. A service that
    /// does not stop in time is killed and the test fails.
    pub(crate) fn stop(self) -> ExitStatus {
        self.stop_with(libc::SIGTERM)
    }

    /// Sends `sig` (SIGTERM or SIGINT), then waits (at most [`STOP_TIMEOUT`]) for the exit
    /// status. A service that does not stop in time is killed and the test fails.
    pub(crate) fn stop_with(mut self, sig: libc::c_int) -> ExitStatus {
        self.signal(sig);
        match self.wait_exit(STOP_TIMEOUT) {
            Some(status) => {
                // The process is gone, so its stderr is at EOF: collect all of it.
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                status
            }
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "flash-sale did not exit within {STOP_TIMEOUT:?} of signal {sig}; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// SIGTERM and asserts a clean exit (status 0); returns all the service wrote on stderr.
    pub(crate) fn stop_clean(self) -> String {
        self.stop_clean_with(libc::SIGTERM)
    }

    /// `sig` (SIGTERM or SIGINT) and asserts a clean exit (status 0); returns all the
    /// service wrote on stderr.
    pub(crate) fn stop_clean_with(self, sig: libc::c_int) -> String {
        let stderr = self.stderr.clone();
        let status = self.stop_with(sig);
        let stderr = stderr.lock().unwrap().clone();
        assert!(
            status.success(),
            "flash-sale after signal {sig}: {status}, expected exit status 0; stderr:\n{stderr}"
        );
        stderr
    }

    /// SIGKILL by PID, then reaps the process.
    pub(crate) fn kill9(mut self) {
        // `Child::kill` sends SIGKILL to exactly this child's PID.
        self.child.kill().expect("SIGKILL flash-sale");
        let status = self.child.wait().expect("reap flash-sale");
        self.exited = Some(status);
    }

    fn signal(&self, sig: libc::c_int) {
        if self.exited.is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) with the PID of our own child, which has not been reaped yet (so
        // the PID cannot have been reused), and a valid signal number.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "--- flash-sale {} stderr ---\n{}\n--- end ---",
                self.addr,
                self.stderr()
            );
        }
    }
}

/// One HTTP response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Field names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (showing the body) if it is not.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {} body is not JSON ({e}): {:?}", self.status, self.text()))
    }

    /// The `"error"` field of a JSON body, if any.
    pub(crate) fn error(&self) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()?
            .get("error")?
            .as_str()
            .map(str::to_owned)
    }

    /// A string field of a JSON body.
    pub(crate) fn str_field(&self, name: &str) -> Option<String> {
        serde_json::from_slice::<Value>(&self.body)
            .ok()?
            .get(name)?
            .as_str()
            .map(str::to_owned)
    }

    /// `status body` for assertion messages.
    pub(crate) fn describe(&self) -> String {
        let mut text = self.text();
        if text.len() > 300 {
            text.truncate(300);
            text.push_str("...");
        }
        format!("{} {text:?}", self.status)
    }
}

/// Reads one response (skipping 1xx interim responses) from `r`.
pub(crate) fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    loop {
        let resp = read_one(r)?;
        if !(100..200).contains(&resp.status) {
            return Ok(resp);
        }
    }
}

/// The largest response accepted.
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Reads one response (a 1xx too) with the workspace's one client-side parser
/// (`ringcore_testkit::http1`), consuming exactly its bytes from `r`.
fn read_one(r: &mut impl BufRead) -> io::Result<Response> {
    let mut acc = Vec::new();
    loop {
        let chunk = r.fill_buf()?;
        let (eof, n) = (chunk.is_empty(), chunk.len());
        let before = acc.len();
        acc.extend_from_slice(chunk);
        match http1::Response::parse(&acc, RequestKind::Other, eof) {
            Ok(Some((resp, used))) => {
                r.consume(used.saturating_sub(before));
                return Ok(Response {
                    status: resp.status,
                    headers: resp
                        .headers
                        .into_iter()
                        .map(|(n, v)| (n.to_ascii_lowercase(), v))
                        .collect(),
                    body: resp.body,
                });
            }
            Ok(None) if eof => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            Ok(None) if acc.len() > MAX_RESPONSE => return Err(io::Error::other("response too large")),
            Ok(None) => r.consume(n),
            Err(e) => return Err(io::Error::other(e)),
        }
    }
}

/// A keep-alive HTTP/1.1 client for one server.
pub(crate) struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    /// Sent as `X-Admin-Token` on every request when set.
    admin_token: Option<String>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            admin_token: None,
        }
    }

    pub(crate) fn with_admin_token(addr: SocketAddr, token: &str) -> Client {
        Client {
            admin_token: Some(token.to_owned()),
            ..Client::new(addr)
        }
    }

    fn connect(&self) -> io::Result<BufReader<TcpStream>> {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(READ_TIMEOUT))?;
        s.set_write_timeout(Some(READ_TIMEOUT))?;
        s.set_nodelay(true)?;
        Ok(BufReader::new(s))
    }

    /// Sends one request and reads its response. On a reused keep-alive connection that the
    /// server had already closed (the write fails or EOF comes before any response byte), it
    /// reconnects and sends once more.
    pub(crate) fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut msg = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            msg.push_str("Content-Type: application/json\r\n");
        }
        if let Some(token) = &self.admin_token {
            msg.push_str(&format!("X-Admin-Token: {token}\r\n"));
        }
        for (name, value) in headers {
            msg.push_str(&format!("{name}: {value}\r\n"));
        }
        msg.push_str("\r\n");
        let mut bytes = msg.into_bytes();
        bytes.extend_from_slice(body);

        let reused = self.conn.is_some();
        match self.exchange(&bytes) {
            Ok(resp) => Ok(resp),
            Err((e, false)) if reused => {
                let _ = e;
                self.exchange(&bytes).map_err(|(e, _)| e)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// Err carries whether any response byte was seen (then a resend is not safe to assume).
    fn exchange(&mut self, bytes: &[u8]) -> Result<Response, (io::Error, bool)> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().map_err(|e| (e, false))?,
        };
        conn.get_mut().write_all(bytes).map_err(|e| (e, false))?;
        if conn.fill_buf().map_err(|e| (e, false))?.is_empty() {
            return Err((
                io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"),
                false,
            ));
        }
        let resp = read_response(&mut conn).map_err(|e| (e, true))?;
        let close = resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !close {
            self.conn = Some(conn);
        }
        Ok(resp)
    }

    pub(crate) fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    pub(crate) fn post(&mut self, path: &str, body: &str) -> io::Result<Response> {
        self.request("POST", path, &[], body.as_bytes())
    }

    pub(crate) fn put(&mut self, path: &str, body: &str) -> io::Result<Response> {
        self.request("PUT", path, &[], body.as_bytes())
    }

    /// `PUT /items/{item}` with `{"stock": stock}`; panics on a transport error.
    pub(crate) fn put_item(&mut self, item: &str, stock: u64) -> Response {
        self.put(&format!("/items/{item}"), &format!("{{\"stock\": {stock}}}"))
            .unwrap_or_else(|e| panic!("PUT /items/{item}: {e}"))
    }

    /// `POST /items/{item}/buy` once.
    pub(crate) fn buy_once(&mut self, item: &str, user: &str) -> io::Result<Response> {
        let body = serde_json::json!({ "user": user }).to_string();
        self.post(&format!("/items/{item}/buy"), &body)
    }

    /// `POST /items/{item}/buy`, retrying a bounded number of times while the answer is 429
    /// or 503 (each must carry `Retry-After`). Returns the first other answer, or the last 429
    /// or 503 when the retries run out.
    pub(crate) fn buy(&mut self, item: &str, user: &str) -> io::Result<Response> {
        let mut attempt = 0u64;
        loop {
            let resp = self.buy_once(item, user)?;
            if resp.status != 429 && resp.status != 503 {
                return Ok(resp);
            }
            assert!(
                resp.header("retry-after").is_some(),
                "buy {item} for {user}: {} without Retry-After",
                resp.describe()
            );
            attempt += 1;
            if attempt >= 30 {
                return Ok(resp);
            }
            thread::sleep(Duration::from_millis((20 * attempt).min(300)));
        }
    }

    /// `GET path`, panicking on a transport error.
    pub(crate) fn must_get(&mut self, path: &str) -> Response {
        self.get(path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET /orders/{order}`.
    pub(crate) fn order(&mut self, order: &str) -> Response {
        self.must_get(&format!("/orders/{order}"))
    }

    /// Polls `GET /items/{item}` (per-core caches may serve a value up to 100 ms old) until
    /// `done` holds or [`GET_SETTLE`] has passed; returns the last 200 body.
    pub(crate) fn item_until(&mut self, item: &str, done: impl Fn(&ItemState) -> bool) -> ItemState {
        let deadline = Instant::now() + GET_SETTLE;
        loop {
            let resp = self.must_get(&format!("/items/{item}"));
            assert_eq!(resp.status, 200, "GET /items/{item}: {}", resp.describe());
            let state = ItemState::from_json(&resp.json());
            if done(&state) || Instant::now() >= deadline {
                return state;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `GET /items/{item}` as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ItemState {
    pub(crate) stock: u64,
    pub(crate) sold: u64,
    pub(crate) remaining: u64,
}

impl ItemState {
    pub(crate) fn from_json(v: &Value) -> ItemState {
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_u64)
                .unwrap_or_else(|| panic!("item JSON {v} lacks a non-negative integer {name:?}"))
        };
        ItemState {
            stock: field("stock"),
            sold: field("sold"),
            remaining: field("remaining"),
        }
    }
}

/// Checks a `GET /orders/{order}` answer: 200 with this item and user.
pub(crate) fn assert_order(resp: &Response, order: &str, item: &str, user: &str) {
    assert_eq!(
        resp.status,
        200,
        "GET /orders/{order} (acknowledged to {user} for {item}): {}",
        resp.describe()
    );
    let v = resp.json();
    assert_eq!(v["order"].as_str(), Some(order), "order {order}: {v}");
    assert_eq!(v["item"].as_str(), Some(item), "order {order}: {v}");
    assert_eq!(v["user"].as_str(), Some(user), "order {order}: {v}");
    assert!(!v["ts"].is_null(), "order {order} has no ts: {v}");
}

/// What one buy attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 200 with this order id.
    Ordered(String),
    /// 409 sold_out.
    SoldOut,
    /// 409 already_bought with this order id.
    AlreadyBought(String),
    /// 429 or 503 even after the bounded retries.
    Throttled(u16),
    /// Anything else (status and body).
    Other(String),
}

/// Classifies a buy answer, checking the fields a 200 must carry.
pub(crate) fn outcome(resp: &Response, item: &str, user: &str) -> Outcome {
    match (resp.status, resp.error().as_deref()) {
        (200, _) => {
            let v = resp.json();
            assert_eq!(v["item"].as_str(), Some(item), "200 buy for {user}: {v}");
            assert_eq!(v["user"].as_str(), Some(user), "200 buy for {user}: {v}");
            let order = v["order"]
                .as_str()
                .filter(|o| !o.is_empty())
                .unwrap_or_else(|| panic!("200 buy for {user} without an order id: {v}"));
            Outcome::Ordered(order.to_owned())
        }
        (409, Some("sold_out")) => Outcome::SoldOut,
        (409, Some("already_bought")) => Outcome::AlreadyBought(
            resp.str_field("order")
                .unwrap_or_else(|| panic!("already_bought without an order id: {}", resp.describe())),
        ),
        (429 | 503, _) => Outcome::Throttled(resp.status),
        _ => Outcome::Other(resp.describe()),
    }
}
