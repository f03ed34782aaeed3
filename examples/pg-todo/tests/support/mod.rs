//! What the pg-todo tests share: a real PostgreSQL in a temporary directory, the `pg-todo`
//! binary, and a small blocking HTTP/1.1 client (responses read by the workspace's parser).
#![allow(dead_code)] // each test file uses a part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringcore_testkit::http1::{RequestKind, Response};

/// How long PostgreSQL may take to accept connections after start (crash recovery included).
const PG_READY: Duration = Duration::from_secs(30);

/// The PostgreSQL server binaries: the highest version under `/usr/lib/postgresql/*/bin`
/// (Debian's layout). Fails the test, naming the package, when there is none.
fn pg_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").is_file() && bin.join("initdb").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install the \
             Debian package `postgresql` (scripts/test does)"
        ),
    }
}

/// The `postgres` user's uid and gid when this test runs as root (PostgreSQL refuses to run
/// as root), else `None`.
fn run_as() -> Option<(u32, u32)> {
    let me = id(&["-u"]);
    if me != 0 {
        return None;
    }
    Some((id(&["-u", "postgres"]), id(&["-g", "postgres"])))
}

fn id(args: &[&str]) -> u32 {
    let out = Command::new("id").args(args).output().expect("run id");
    assert!(
        out.status.success(),
        "`id {}` failed: {} (running as root needs the `postgres` user that the Debian package \
         `postgresql` creates)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A PostgreSQL server of our own: data in a fresh temporary directory, TCP on 127.0.0.1 at
/// `port`, its Unix socket in that directory. Killed by PID when dropped.
pub(crate) struct Postgres {
    bin: PathBuf,
    dir: PathBuf,
    owner: Option<(u32, u32)>,
    pub(crate) port: u16,
    child: Option<Child>,
}

impl Postgres {
    /// `initdb` (trust authentication, user `postgres`), then the server, ready.
    pub(crate) fn start() -> Postgres {
        let bin = pg_bin_dir();
        let owner = run_as();
        let dir = std::env::temp_dir().join(format!("pg-todo-test-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown temp dir to postgres");
        }
        let mut pg = Postgres {
            bin,
            dir,
            owner,
            port: free_port(),
            child: None,
        };
        let out = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
            .arg(pg.data())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.spawn();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(gid);
        }
        cmd.env("LC_ALL", "C");
        cmd
    }

    /// Starts the server on the same data directory and port, and waits until it accepts.
    pub(crate) fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("log")).expect("create log");
        let log2 = log.try_clone().expect("log fd");
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(self.dir.join("log"), Some(uid), Some(gid)).expect("chown log");
        }
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let t0 = Instant::now();
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-t", "1"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "postgres exited ({st}) before accepting connections:\n{}",
                    self.log()
                );
            }
            assert!(
                t0.elapsed() < PG_READY,
                "postgres did not accept connections within {PG_READY:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// PIDs of the postmaster and its children (backends and helpers), read from /proc.
    fn pids(&self) -> Vec<i32> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let root = child.id() as i32;
        let mut pids = vec![root];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ppid ...`: comm may hold spaces, so read after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(root) {
                pids.push(pid);
            }
        }
        pids
    }

    fn signal(pid: i32, sig: i32) {
        // SAFETY: kill(2) with a pid of a process this test started (or a child of it) and a
        // valid signal number; no memory is involved.
        unsafe { libc::kill(pid, sig) };
    }

    /// Immediate shutdown (SIGQUIT to the postmaster: it kills its backends and exits without
    /// a checkpoint, as after a crash), waiting until it has exited.
    pub(crate) fn kill(&mut self) {
        self.stop(libc::SIGQUIT);
    }

    /// Sends `sig` to the postmaster (SIGQUIT: immediate shutdown; SIGINT: fast shutdown,
    /// backends end their sessions with SQLSTATE 57P01) and waits until it has exited
    /// (SIGKILL after 10 s).
    pub(crate) fn stop(&mut self, sig: i32) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        Self::signal(child.id() as i32, sig);
        let t0 = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP to the postmaster and every backend: connections stay open and nothing answers.
    pub(crate) fn freeze(&self) {
        for pid in self.pids() {
            Self::signal(pid, libc::SIGSTOP);
        }
    }

    /// SIGCONT to what `freeze` stopped.
    pub(crate) fn thaw(&self) {
        for pid in self.pids() {
            Self::signal(pid, libc::SIGCONT);
        }
    }

    /// The URL pg-todo is given.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.thaw();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `pg-todo` binary, started with `args` after `--addr 127.0.0.1:0`; killed when dropped.
pub(crate) struct App {
    child: Child,
    pub(crate) addr: String,
    stderr: Arc<Mutex<String>>,
}

impl App {
    pub(crate) fn start(args: &[&str]) -> App {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pg-todo"))
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn,pg_todo=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pg-todo");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        let _ = BufReader::new(stdout).read_line(&mut first);
        let Some(addr) = first
            .strip_prefix("pg-todo listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
        else {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("pg-todo did not start: first line {first:?}, stderr:\n{err}");
        };
        // The epoll pass of scripts/test must really run on epoll.
        if let Ok(driver) = std::env::var("RINGCORE_DRIVER") {
            if driver == "epoll" || driver == "io_uring" {
                assert!(
                    first.contains(&format!("driver: {driver}")),
                    "RINGCORE_DRIVER={driver}: {first}"
                );
            }
        }
        // Drained by a thread, so a chatty log never fills the pipe and stalls the server.
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            });
        }
        App { child, addr, stderr }
    }

    /// One request on a new connection.
    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let mut c = Conn::open(&self.addr);
        c.request(method, path, body)
    }

    /// What the server wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn conn(&self) -> Conn {
        Conn::open(&self.addr)
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A keep-alive connection; every read bounded.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// The longest a test waits for one response.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(15);

impl Conn {
    pub(crate) fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect to pg-todo");
        stream.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    pub(crate) fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> Response {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body.unwrap_or(""));
        self.stream.write_all(req.as_bytes()).expect("send request");
        let t0 = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((resp, used)) =
                Response::parse(&self.buf, RequestKind::Other, false).expect("a valid response")
            {
                self.buf.drain(..used);
                return resp;
            }
            assert!(
                t0.elapsed() < READ_TIMEOUT,
                "no response to {method} {path} within {READ_TIMEOUT:?}"
            );
            // A signal (the test stops and continues the database's processes) can interrupt
            // the read: read again.
            let n = match self.stream.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read response: {e}"),
            };
            assert!(n > 0, "connection closed before the response to {method} {path}");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The response body as JSON.
pub(crate) fn json(resp: &Response) -> serde_json::Value {
    serde_json::from_slice(&resp.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", resp.text()))
}
