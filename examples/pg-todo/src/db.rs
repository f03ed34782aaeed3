//! One PostgreSQL connection per core: `tokio-postgres` over a ringcore `TcpStream` wrapped in
//! [`Compat`], its `Connection` future a task on the core, every call under a deadline, and a
//! reconnect when the connection is gone.
//!
//! A core's connection serves all of that core's requests: tokio-postgres pipelines the
//! queries of concurrent requests over it, so a pool per core buys little here.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use ringcore_runtime::compat::Compat;
use ringcore_runtime::net::TcpStream;
use ringcore_runtime::time::timeout;
use ringcore_runtime::{spawn_local, JoinHandle};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// How often a core retries the connection while the database is down: a request in between
/// is answered 503 at once rather than waiting for another connect that will fail.
pub(crate) const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// Run at every connect. Concurrent `CREATE TABLE IF NOT EXISTS` from several cores can fail
/// on the catalog's unique index, so the creators queue on a transaction-scoped advisory lock.
const SCHEMA: &str = "BEGIN;
SELECT pg_advisory_xact_lock(7465646);
CREATE TABLE IF NOT EXISTS todos (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    done boolean NOT NULL DEFAULT false
);
COMMIT;";

/// Where the database is and the deadlines of talking to it.
#[derive(Debug, Clone)]
pub(crate) struct DbSettings {
    /// User, database name and password (`host` / `port` are read from it too).
    pub(crate) config: Config,
    /// TCP connect plus the start-up exchange (authentication, statement preparation).
    pub(crate) connect_timeout: Duration,
    /// Every query, from the call to its last row.
    pub(crate) query_timeout: Duration,
}

impl DbSettings {
    /// The TCP address to connect to: the first host and port of the config. Unix sockets are
    /// not supported (the runtime has TCP only).
    pub(crate) fn address(&self) -> Result<(String, u16), String> {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => {
                return Err(format!(
                    "unix socket {} is not supported (ringcore connects over TCP): give a host name or IP",
                    p.display()
                ))
            }
            None => "127.0.0.1".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        Ok((host, port))
    }

    /// `user@host:port/dbname`, for messages.
    pub(crate) fn describe(&self) -> String {
        let (host, port) = self.address().unwrap_or_else(|_| ("?".into(), 0));
        format!(
            "{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().or(self.config.get_user()).unwrap_or("?")
        )
    }
}

/// Why a call to the database did not give an answer.
#[derive(Debug)]
pub(crate) enum DbError {
    /// No usable connection, the connection broke, or the call passed its deadline: the
    /// client should retry later (503 + `Retry-After`).
    Unavailable(String),
    /// The database answered with an error (a bug here, or bad data): 500.
    Query(tokio_postgres::Error),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            DbError::Query(e) => write!(f, "database error: {e}"),
        }
    }
}

/// The prepared statements of one connection.
#[derive(Debug)]
pub(crate) struct Statements {
    /// `$1` title, `$2` done → id, title, done.
    pub(crate) insert: Statement,
    /// `$1` id → id, title, done.
    pub(crate) get: Statement,
    /// `$1` limit → id, title, done, by id.
    pub(crate) list: Statement,
    /// `$1` id, `$2` title or NULL, `$3` done or NULL → id, title, done.
    pub(crate) update: Statement,
    /// `$1` id → id.
    pub(crate) delete: Statement,
}

/// A live connection: the client, its statements, and the task that drives it.
pub(crate) struct Conn {
    /// The client (queries are pipelined over one connection).
    pub(crate) client: Client,
    /// Prepared at connect time.
    pub(crate) stmts: Statements,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Dropping the connection future closes the socket; in-flight calls on the client
        // fail with "connection closed".
        self.task.abort();
    }
}

/// The database health this core last saw.
#[derive(Debug, Clone)]
pub(crate) enum Health {
    /// The last call or connect worked.
    Up,
    /// Down since then, for this reason.
    Down { since: SystemTime, why: String },
}

/// One core's database handle (lives in the router's state on that core).
pub(crate) struct Db {
    settings: DbSettings,
    conn: RefCell<Option<Rc<Conn>>>,
    connecting: Cell<bool>,
    last_attempt: Cell<Option<Instant>>,
    health: RefCell<Health>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("database", &self.settings.describe())
            .field("health", &*self.health.borrow())
            .finish()
    }
}

impl Db {
    /// Connects (under the connect deadline), creating the table if it is missing. An error
    /// here is a start-up error: its text names the database and the cause.
    pub(crate) async fn connect(settings: DbSettings) -> Result<Db, String> {
        let conn = open(&settings)
            .await
            .map_err(|e| format!("cannot use the database {}: {e}", settings.describe()))?;
        Ok(Db {
            settings,
            conn: RefCell::new(Some(Rc::new(conn))),
            connecting: Cell::new(false),
            last_attempt: Cell::new(Some(Instant::now())),
            health: RefCell::new(Health::Up),
        })
    }

    /// What this core last saw.
    pub(crate) fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// Runs `call` on this core's connection under the query deadline. A broken connection or
    /// a call past its deadline drops the connection (the next call reconnects) and is
    /// [`DbError::Unavailable`].
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Result<T, DbError>
    where
        F: FnOnce(Rc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let conn = self.conn().await?;
        match timeout(self.settings.query_timeout, call(conn.clone())).await {
            Ok(Ok(v)) => {
                self.mark_up();
                Ok(v)
            }
            Ok(Err(e)) if e.as_db_error().is_some() && !conn.client.is_closed() && !is_outage(&e) => {
                Err(DbError::Query(e))
            }
            Ok(Err(e)) => {
                let why = format!("connection lost: {e}");
                self.discard(&conn, &why);
                Err(DbError::Unavailable(why))
            }
            Err(_) => {
                let why = format!(
                    "no answer within the query deadline ({:?})",
                    self.settings.query_timeout
                );
                self.discard(&conn, &why);
                Err(DbError::Unavailable(why))
            }
        }
    }

    /// The live connection, or a new one (at most one connect in flight per core, and not
    /// more often than [`RECONNECT_BACKOFF`]).
    async fn conn(&self) -> Result<Rc<Conn>, DbError> {
        let current = self.conn.borrow().clone();
        if let Some(c) = current {
            if !c.client.is_closed() {
                return Ok(c);
            }
            self.discard(&c, "connection closed");
        }
        if self.connecting.get() {
            return Err(self.unavailable());
        }
        if let Some(t) = self.last_attempt.get() {
            if t.elapsed() < RECONNECT_BACKOFF {
                return Err(self.unavailable());
            }
        }
        self.connecting.set(true);
        // Cleared however the attempt ends: a request dropped mid-connect (a shorter
        // deadline around the handler) must not leave the core believing one is running.
        let attempt = Connecting(&self.connecting);
        self.last_attempt.set(Some(Instant::now()));
        let result = open(&self.settings).await;
        drop(attempt);
        match result {
            Ok(conn) => {
                let conn = Rc::new(conn);
                *self.conn.borrow_mut() = Some(conn.clone());
                self.mark_up();
                tracing::info!("reconnected to the database {}", self.settings.describe());
                Ok(conn)
            }
            Err(e) => {
                self.mark_down(format!("reconnect failed: {e}"));
                Err(self.unavailable())
            }
        }
    }

    fn unavailable(&self) -> DbError {
        match &*self.health.borrow() {
            Health::Down { why, .. } => DbError::Unavailable(why.clone()),
            Health::Up => DbError::Unavailable("reconnecting".into()),
        }
    }

    /// Forgets `conn` if it is still the current one.
    fn discard(&self, conn: &Rc<Conn>, why: &str) {
        let mut current = self.conn.borrow_mut();
        if current.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
            *current = None;
        }
        drop(current);
        self.mark_down(why.to_string());
    }

    fn mark_up(&self) {
        let mut h = self.health.borrow_mut();
        if matches!(*h, Health::Down { .. }) {
            *h = Health::Up;
        }
    }

    fn mark_down(&self, why: String) {
        let mut h = self.health.borrow_mut();
        match &mut *h {
            Health::Down { why: w, .. } => *w = why,
            Health::Up => {
                tracing::warn!("database {} down: {why}", self.settings.describe());
                *h = Health::Down {
                    since: SystemTime::now(),
                    why,
                }
            }
        }
    }
}

/// A database answer that means "not now" rather than "wrong query": SQLSTATE classes 08
/// (connection exception), 53 (insufficient resources, e.g. too many connections) and 57
/// (operator intervention: shutdown, restart, cancelled statement).
fn is_outage(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(c.code().get(..2), Some("08" | "53" | "57")))
}

/// TCP connect on the ring, the start-up exchange through the adapter, the connection's task
/// spawned on this core, the statements prepared; all under the connect deadline.
async fn open(settings: &DbSettings) -> io::Result<Conn> {
    let deadline = settings.connect_timeout;
    match timeout(deadline, open_inner(settings)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within the connect deadline ({deadline:?})"),
        )),
    }
}

async fn open_inner(settings: &DbSettings) -> io::Result<Conn> {
    let addr = settings.address().map_err(io::Error::other)?;
    let stream = TcpStream::connect(addr).await?;
    let (client, connection) = settings
        .config
        .connect_raw(Compat::new(stream), NoTls)
        .await
        .map_err(io::Error::other)?;
    let task = spawn_local(async move {
        if let Err(e) = connection.await {
            tracing::debug!("database connection ended: {e}");
        }
    });
    // If the schema or a statement fails, the guard aborts the connection's task.
    let guard = AbortOnDrop(Some(task));
    client.batch_execute(SCHEMA).await.map_err(io::Error::other)?;
    let stmts = prepare(&client).await.map_err(io::Error::other)?;
    Ok(Conn {
        client,
        stmts,
        task: guard.take(),
    })
}

struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    fn take(mut self) -> JoinHandle<()> {
        match self.0.take() {
            Some(t) => t,
            None => unreachable!("taken once"),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
    Ok(Statements {
        insert: client
            .prepare("INSERT INTO todos (title, done) VALUES ($1, $2) RETURNING id, title, done")
            .await?,
        get: client
            .prepare("SELECT id, title, done FROM todos WHERE id = $1")
            .await?,
        list: client
            .prepare("SELECT id, title, done FROM todos ORDER BY id LIMIT $1")
            .await?,
        update: client
            .prepare(
                "UPDATE todos SET title = COALESCE($2, title), done = COALESCE($3, done) \
                 WHERE id = $1 RETURNING id, title, done",
            )
            .await?,
        delete: client
            .prepare("DELETE FROM todos WHERE id = $1 RETURNING id")
            .await?,
    })
}

/// Marks a connect attempt as running while it lives.
struct Connecting<'a>(&'a std::cell::Cell<bool>);

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}
