//! A minimal async Redis client: one TCP connection, driven by one connection task.
//!
//! Callers never touch the socket. [`Client::cmd`] and [`Client::pipeline`] encode their
//! commands, put them on the client's queue and wait for their replies. The connection task
//! takes everything queued, writes it in one `write_all`, then reads exactly as many replies
//! as commands it wrote and hands each caller its own, in order. So requests from many tasks
//! on a core never interleave on the wire, and concurrent callers are pipelined for free.
//!
//! Why a task rather than an async mutex around the stream: a caller that is dropped (a
//! timeout, a cancelled request) after its command was written would leave its reply on the
//! wire for the next caller to read. Here the task owns the exchange; a dropped caller's
//! reply is read and thrown away, and the connection stays in step. A caller that is gone
//! *before* its command was written is skipped: its command is never sent.
//!
//! # Deadlines
//!
//! Every call has a deadline ([`Client::deadline`], [`DEFAULT_DEADLINE`] unless set with
//! [`Client::connect_with`]), counted from the call: time in the queue, a reconnect, the
//! write and the reply all count. Past it the caller gets an `io::ErrorKind::TimedOut` error,
//! whatever the connection task is doing, so a stalled server (`SIGSTOP`, a slow script, a
//! silent network) can hold a caller no longer than the deadline. A command that timed out
//! after it was written may still run on the server: its result is in doubt.
//!
//! The connection task bounds itself the same way: a connect, a write, or a batch's replies
//! that take longer than the deadline give the connection up (the socket is closed, so a late
//! reply can never reach a later caller), every request of the batch gets an error, and the
//! next batch opens a new connection.
//!
//! # Failures and back-off
//!
//! If the connection fails (I/O error, EOF, a reply that is not RESP, the deadline), every
//! command of the batch in flight gets an error and the next batch reconnects at once. If
//! that fails too, reconnects back off ([`BACKOFF_FIRST`] doubling up to [`BACKOFF_MAX`]);
//! until the next attempt is due, commands fail at once with the last error instead of
//! waiting, so an unreachable server costs callers nothing but the error. The first reply
//! read resets the back-off.
//!
//! Blocking commands (`BLPOP`, `XREAD BLOCK`) that wait longer than the deadline are not
//! supported, and would hold up every command queued behind them anyway.
//!
//! The client is `!Send`: one per core (share it with `Rc`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use ringcore_runtime::net::TcpStream;
use ringcore_runtime::spawn_local;
use ringcore_runtime::time::{timeout, timeout_at};

use super::resp::{encode_command, Decoder, Value};

/// How long a call may take, from the call to its reply, unless [`Client::connect_with`]
/// says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(1);

/// The wait before the second reconnect in a row (the first is immediate).
pub const BACKOFF_FIRST: Duration = Duration::from_millis(25);

/// The longest wait between two reconnects: once the server is back, the client finds it
/// within this.
pub const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// The port of a `redis://host` URL without one.
pub const DEFAULT_PORT: u16 = 6379;

/// An error reply from the server (`-ERR ...`, `-NOSCRIPT ...`), carried inside the
/// `io::Error` that [`Client::cmd`] returns; find it with [`RedisError::of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisError {
    message: String,
}

impl RedisError {
    /// The whole error line, e.g. `ERR unknown command 'FOO'`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The error code: the message's first word (`ERR`, `WRONGTYPE`, `NOSCRIPT`).
    pub fn code(&self) -> &str {
        self.message.split(' ').next().unwrap_or("")
    }

    /// The server error inside `e`, if `e` is one.
    pub fn of(e: &io::Error) -> Option<&RedisError> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<RedisError>())
    }

    /// The error for an error reply's line.
    pub(crate) fn reply(message: String) -> io::Error {
        RedisError { message }.into_io()
    }

    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis: {}", self.message)
    }
}

impl std::error::Error for RedisError {}

/// The `host:port` of a `redis://host[:port][/]` URL. Anything else (a password, a database
/// number, `rediss://`, a query) is refused rather than ignored.
pub fn parse_url(url: &str) -> io::Result<(String, u16)> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("redis URL {url:?}: {why}; expected redis://host:port"),
        )
    };
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| bad("scheme must be redis://"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '@', '?', '#']) {
        return Err(bad(
            "only host and port are supported (no user, password, database or query)",
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => return Err(bad("port must be 1..=65535")),
        },
    };
    Ok((host.to_owned(), port))
}

/// A connection to one Redis server. See the module docs for how requests are serialized.
pub struct Client {
    shared: Rc<Shared>,
    host: String,
    port: u16,
    deadline: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("deadline", &self.deadline)
            .field("queued", &self.shared.queue.borrow().len())
            .finish()
    }
}

struct Shared {
    /// Commands not yet written.
    queue: RefCell<VecDeque<Request>>,
    /// The connection task, when it waits for work.
    task: RefCell<Option<Waker>>,
    /// The `Client` is gone: the task ends once the queue is empty.
    closed: Cell<bool>,
}

struct Request {
    /// One or more encoded commands.
    bytes: Vec<u8>,
    /// How many replies they produce.
    replies: usize,
    slot: Rc<Slot>,
}

/// Where the connection task leaves a request's replies for its caller.
struct Slot(RefCell<SlotState>);

enum SlotState {
    Waiting(Option<Waker>),
    Done(io::Result<Vec<Value>>),
    Taken,
}

impl Request {
    /// The caller is gone (timed out, cancelled): nobody will read the reply.
    fn abandoned(&self) -> bool {
        Rc::strong_count(&self.slot) == 1
    }
}

impl Slot {
    fn fill(&self, result: io::Result<Vec<Value>>) {
        let prev = std::mem::replace(&mut *self.0.borrow_mut(), SlotState::Done(result));
        // Wake with the borrow released.
        if let SlotState::Waiting(Some(w)) = prev {
            w.wake();
        }
    }

    async fn wait(&self) -> io::Result<Vec<Value>> {
        poll_fn(|cx| {
            let mut st = self.0.borrow_mut();
            match std::mem::replace(&mut *st, SlotState::Taken) {
                SlotState::Done(r) => Poll::Ready(r),
                SlotState::Waiting(_) => {
                    *st = SlotState::Waiting(Some(cx.waker().clone()));
                    Poll::Pending
                }
                SlotState::Taken => Poll::Ready(Err(io::Error::other("redis reply already taken"))),
            }
        })
        .await
    }
}

impl Client {
    /// Connects to `redis://host:port` with [`DEFAULT_DEADLINE`] on every call; see
    /// [`Client::connect_with`].
    pub async fn connect(url: &str) -> io::Result<Client> {
        Client::connect_with(url, DEFAULT_DEADLINE).await
    }

    /// Connects to `redis://host:port` and starts the connection task on this core. Every
    /// call (and this connect) fails with `TimedOut` once `deadline` has passed.
    ///
    /// Must be called on a runtime core. The connection is made now, so a wrong address
    /// fails here rather than at the first command.
    pub async fn connect_with(url: &str, deadline: Duration) -> io::Result<Client> {
        let (host, port) = parse_url(url)?;
        let stream = open_within(&host, port, deadline).await?;
        let shared = Rc::new(Shared {
            queue: RefCell::new(VecDeque::new()),
            task: RefCell::new(None),
            closed: Cell::new(false),
        });
        let task = connection_task(shared.clone(), host.clone(), port, stream, deadline);
        spawn_local(task).detach();
        Ok(Client {
            shared,
            host,
            port,
            deadline,
        })
    }

    /// How long each call may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The server's `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Runs one command. An error reply becomes an `io::Error` holding a [`RedisError`].
    pub async fn cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> io::Result<Value> {
        let mut bytes = Vec::new();
        encode_command(&mut bytes, args);
        let mut replies = self.send(bytes, 1).await?;
        match replies.pop() {
            Some(Value::Error(message)) => Err(RedisError { message }.into_io()),
            Some(v) => Ok(v),
            None => Err(io::Error::other("redis: no reply")),
        }
    }

    /// Sends `cmds` in one write and returns their replies in order. Error replies stay in
    /// the list as [`Value::Error`] (the other commands still ran); only a connection failure
    /// is an `Err`.
    pub async fn pipeline<C, A>(&self, cmds: &[C]) -> io::Result<Vec<Value>>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut bytes = Vec::new();
        for c in cmds {
            encode_command(&mut bytes, c.as_ref());
        }
        self.send(bytes, cmds.len()).await
    }

    async fn send(&self, bytes: Vec<u8>, replies: usize) -> io::Result<Vec<Value>> {
        let slot = Rc::new(Slot(RefCell::new(SlotState::Waiting(None))));
        self.shared.queue.borrow_mut().push_back(Request {
            bytes,
            replies,
            slot: slot.clone(),
        });
        self.shared.wake_task();
        match timeout(self.deadline, slot.wait()).await {
            Ok(r) => r,
            // Dropping `slot` here tells the task nobody waits: if the command is still
            // queued, it is never sent.
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("redis: no reply from {} within {:?}", self.addr(), self.deadline),
            )),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared.closed.set(true);
        self.shared.wake_task();
    }
}

impl Shared {
    fn wake_task(&self) {
        let w = self.task.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// Everything queued whose caller still waits, or `None` once the client is gone and
    /// nothing is left.
    async fn next_batch(&self) -> Option<Vec<Request>> {
        poll_fn(|cx| {
            let mut q = self.queue.borrow_mut();
            q.retain(|r| !r.abandoned());
            if !q.is_empty() {
                return Poll::Ready(Some(q.drain(..).collect()));
            }
            if self.closed.get() {
                return Poll::Ready(None);
            }
            *self.task.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

async fn open(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("redis: cannot connect to {host}:{port}: {e}")))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// [`open`], bounded by `deadline`.
async fn open_within(host: &str, port: u16, deadline: Duration) -> io::Result<TcpStream> {
    timeout(deadline, open(host, port)).await.unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("redis: cannot connect to {host}:{port} within {deadline:?}"),
        ))
    })
}

/// When the connection task may try to connect again after failures.
///
/// The first reconnect after a failure is immediate (a server that closed one idle
/// connection is usually fine); each further failure in a row doubles the wait, from
/// [`BACKOFF_FIRST`] up to [`BACKOFF_MAX`]. A reply read resets it.
#[derive(Debug, Default)]
struct Backoff {
    /// Failures in a row.
    failures: u32,
    /// No connect before this.
    retry_at: Option<Instant>,
    /// What the last failure was.
    last_error: String,
}

impl Backoff {
    fn failed(&mut self, e: &io::Error, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = e.to_string();
        let wait = match self.failures {
            0 | 1 => Duration::ZERO,
            n => BACKOFF_FIRST
                .saturating_mul(1 << (n - 2).min(16))
                .min(BACKOFF_MAX),
        };
        self.retry_at = Some(now + wait);
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// The error to answer with while a connect is not yet due, `None` when one may be tried.
    fn refuse(&self, now: Instant) -> Option<io::Error> {
        let at = self.retry_at?;
        let left = at.checked_duration_since(now).filter(|d| !d.is_zero())?;
        Some(io::Error::new(
            io::ErrorKind::NotConnected,
            format!(
                "{} (next reconnect in {} ms)",
                self.last_error,
                left.as_millis().max(1)
            ),
        ))
    }
}

/// Owns the socket: writes each batch, reads its replies, hands them out.
async fn connection_task(shared: Rc<Shared>, host: String, port: u16, stream: TcpStream, deadline: Duration) {
    let mut conn = Some(stream);
    let mut backoff = Backoff::default();
    let mut out = Vec::new();
    while let Some(mut batch) = shared.next_batch().await {
        let stream = match conn.take() {
            Some(s) => s,
            None => {
                if let Some(e) = backoff.refuse(Instant::now()) {
                    fail(batch, &e);
                    continue;
                }
                match open_within(&host, port, deadline).await {
                    Ok(s) => s,
                    Err(e) => {
                        backoff.failed(&e, Instant::now());
                        fail(batch, &e);
                        continue;
                    }
                }
            }
        };
        // Callers that gave up while we connected: their commands are not sent.
        batch.retain(|r| !r.abandoned());
        if batch.is_empty() {
            conn = Some(stream);
            continue;
        }
        out.clear();
        for r in &batch {
            out.extend_from_slice(&r.bytes);
        }
        let until = Instant::now() + deadline;
        let written = match timeout_at(until, stream.write_all(std::mem::take(&mut out))).await {
            Ok((res, buf)) => {
                out = buf;
                res.map_err(|e| io::Error::new(e.kind(), format!("redis: write failed: {e}")))
            }
            // The buffer stays with the cancelled write; the next batch gets a new one.
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("redis: {host}:{port} took no request within {deadline:?}; connection dropped"),
            )),
        };
        if let Err(e) = written {
            backoff.failed(&e, Instant::now());
            fail(batch, &e);
            continue;
        }
        match read_replies(&stream, batch, until, deadline).await {
            Ok(()) => {
                backoff.succeeded();
                conn = Some(stream);
            }
            // The stream is dropped (closed), so a late reply can reach nobody; the next
            // batch reconnects.
            Err((e, rest)) => {
                backoff.failed(&e, Instant::now());
                fail(rest, &e);
            }
        }
    }
}

/// Reads the replies of `batch` in order and fills each slot; on a failure (or once `until`
/// has passed), returns the error and the requests that got no reply.
async fn read_replies(
    stream: &TcpStream,
    batch: Vec<Request>,
    until: Instant,
    deadline: Duration,
) -> Result<(), (io::Error, Vec<Request>)> {
    let mut decoder = Decoder::new();
    let mut pending = batch.into_iter();
    while let Some(req) = pending.next() {
        let mut replies = Vec::with_capacity(req.replies);
        while replies.len() < req.replies {
            match next_reply(stream, &mut decoder, until, deadline).await {
                Ok(v) => replies.push(v),
                Err(e) => {
                    let mut rest = vec![req];
                    rest.extend(pending);
                    return Err((e, rest));
                }
            }
        }
        req.slot.fill(Ok(replies));
    }
    if decoder.buffered() > 0 {
        let e = io::Error::new(io::ErrorKind::InvalidData, "redis: bytes after the last reply");
        return Err((e, Vec::new()));
    }
    Ok(())
}

async fn next_reply(
    stream: &TcpStream,
    decoder: &mut Decoder,
    until: Instant,
    deadline: Duration,
) -> io::Result<Value> {
    loop {
        if let Some(v) = decoder.decode()? {
            return Ok(v);
        }
        let chunk = timeout_at(until, stream.recv())
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis: no reply within {deadline:?}; connection dropped"),
                )
            })?
            .map_err(|e| io::Error::new(e.kind(), format!("redis: read failed: {e}")))?;
        if chunk.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "redis: the server closed the connection",
            ));
        }
        decoder.push(&chunk);
    }
}

fn fail(requests: Vec<Request>, e: &io::Error) {
    for r in requests {
        r.slot.fill(Err(io::Error::new(e.kind(), e.to_string())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("redis://127.0.0.1:6380").ok(),
            Some(("127.0.0.1".into(), 6380))
        );
        assert_eq!(
            parse_url("redis://cache.local/").ok(),
            Some(("cache.local".into(), 6379))
        );
        assert_eq!(parse_url("redis://[::1]:7000").ok(), Some(("::1".into(), 7000)));
        assert_eq!(parse_url("redis://[::1]").ok(), Some(("::1".into(), 6379)));
        for bad in [
            "127.0.0.1:6379",
            "rediss://h:1",
            "redis://",
            "redis://:6379",
            "redis://h:0",
            "redis://h:99999",
            "redis://h:x",
            "redis://user:pw@h:1",
            "redis://h:1/2",
            "redis://h:1?db=2",
            "redis://[::1",
            "redis://[::1]x",
        ] {
            let e = parse_url(bad).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains("redis://host:port"), "{e}");
        }
    }

    #[test]
    fn backoff_retries_at_once_then_doubles_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        assert!(b.refuse(t0).is_none(), "a fresh client connects");
        let e = io::Error::other("redis: boom");
        b.failed(&e, t0);
        assert!(b.refuse(t0).is_none(), "the first reconnect is immediate");
        b.failed(&e, t0);
        let refused = b.refuse(t0).expect("the second waits");
        assert_eq!(refused.kind(), io::ErrorKind::NotConnected);
        assert!(refused.to_string().contains("boom"), "{refused}");
        assert!(b.refuse(t0 + BACKOFF_FIRST).is_none());
        let mut waits = Vec::new();
        for _ in 0..12 {
            b.failed(&e, t0);
            let due = (1..=2000u64)
                .map(Duration::from_millis)
                .find(|d| b.refuse(t0 + *d).is_none())
                .expect("due within 2 s");
            waits.push(due.as_millis());
        }
        assert_eq!(&waits[..5], &[50, 100, 200, 400, 500]);
        assert!(waits.iter().all(|w| *w <= BACKOFF_MAX.as_millis()), "{waits:?}");
        b.succeeded();
        b.failed(&e, t0);
        assert!(b.refuse(t0).is_none(), "a success resets the back-off");
    }

    #[test]
    fn error_codes() {
        let e = RedisError {
            message: "NOSCRIPT No matching script".into(),
        }
        .into_io();
        let r = RedisError::of(&e).expect("a server error");
        assert_eq!(r.code(), "NOSCRIPT");
        assert!(e.to_string().contains("No matching script"));
        assert!(RedisError::of(&io::Error::other("x")).is_none());
    }
}
