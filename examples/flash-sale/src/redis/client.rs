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
//! reply is read and thrown away, and the connection stays in step.
//!
//! Failures: if the connection fails (I/O error, EOF, a reply that is not RESP, no byte for
//! [`REPLY_TIMEOUT`]), every command of the batch in flight and everything queued behind it
//! gets an error, and the next command opens a new connection. A command that got an I/O
//! error may or may not have run on the server.
//!
//! Blocking commands (`BLPOP`, `XREAD BLOCK`) that wait longer than [`REPLY_TIMEOUT`] are
//! not supported, and would hold up every command queued behind them anyway.
//!
//! The client is `!Send`: one per core (share it with `Rc`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use ringcore_runtime::net::TcpStream;
use ringcore_runtime::spawn_local;
use ringcore_runtime::time::timeout;

use super::resp::{encode_command, Decoder, Value};

/// How long the connection task waits for more bytes of a reply before it gives the
/// connection up (Redis's own `busy-reply-threshold` for a slow script is 5 s).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

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
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("host", &self.host)
            .field("port", &self.port)
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
    /// Connects to `redis://host:port` and starts the connection task on this core.
    ///
    /// Must be called on a runtime core. The connection is made now, so a wrong address
    /// fails here rather than at the first command.
    pub async fn connect(url: &str) -> io::Result<Client> {
        let (host, port) = parse_url(url)?;
        let stream = open(&host, port).await?;
        let shared = Rc::new(Shared {
            queue: RefCell::new(VecDeque::new()),
            task: RefCell::new(None),
            closed: Cell::new(false),
        });
        spawn_local(connection_task(shared.clone(), host.clone(), port, stream)).detach();
        Ok(Client { shared, host, port })
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
        slot.wait().await
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

    /// Everything queued, or `None` once the client is gone and nothing is left.
    async fn next_batch(&self) -> Option<Vec<Request>> {
        poll_fn(|cx| {
            let mut q = self.queue.borrow_mut();
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

/// Owns the socket: writes each batch, reads its replies, hands them out.
async fn connection_task(shared: Rc<Shared>, host: String, port: u16, stream: TcpStream) {
    let mut conn = Some(stream);
    let mut out = Vec::new();
    while let Some(batch) = shared.next_batch().await {
        let stream = match conn.take() {
            Some(s) => s,
            None => match open(&host, port).await {
                Ok(s) => s,
                Err(e) => {
                    fail(batch, &e);
                    continue;
                }
            },
        };
        out.clear();
        for r in &batch {
            out.extend_from_slice(&r.bytes);
        }
        let (res, buf) = stream.write_all(out).await;
        out = buf;
        if let Err(e) = res {
            fail(
                batch,
                &io::Error::new(e.kind(), format!("redis: write failed: {e}")),
            );
            continue;
        }
        match read_replies(&stream, batch).await {
            Ok(()) => conn = Some(stream),
            // The stream is dropped (closed); the next batch reconnects.
            Err((e, rest)) => fail(rest, &e),
        }
    }
}

/// Reads the replies of `batch` in order and fills each slot; on a failure, returns the
/// error and the requests that got no reply.
async fn read_replies(stream: &TcpStream, batch: Vec<Request>) -> Result<(), (io::Error, Vec<Request>)> {
    let mut decoder = Decoder::new();
    let mut pending = batch.into_iter();
    while let Some(req) = pending.next() {
        let mut replies = Vec::with_capacity(req.replies);
        while replies.len() < req.replies {
            match next_reply(stream, &mut decoder).await {
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

async fn next_reply(stream: &TcpStream, decoder: &mut Decoder) -> io::Result<Value> {
    loop {
        if let Some(v) = decoder.decode()? {
            return Ok(v);
        }
        let chunk = timeout(REPLY_TIMEOUT, stream.recv())
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis: no reply within {REPLY_TIMEOUT:?}"),
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
