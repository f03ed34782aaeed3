//! The flash-sale HTTP service: routes, governance in front of buy, the two stores.
//!
//! `serve` replays the journals (embedded store), then starts one router per core. Handlers
//! only touch this core's state, talk to other cores through the mesh (`submit_to`), and
//! write to this core's journal; see [`embedded`] for how a buy is decided.

mod buy;
pub mod embedded;
pub mod health;
mod orders;
mod redis_calls;
pub mod replay;
mod user_limit;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ringcore_http::extract::{FromRequest, FromRequestParts, Parts};
use ringcore_http::metrics::Counter;
use ringcore_http::middleware::{LoadShed, RateLimit};
use ringcore_http::runtime::cache::Cache;
use ringcore_http::runtime::time::sleep;
use ringcore_http::runtime::{n_shards, shard_id, spawn_local_in, submit_to, Cores, TaskClass};
use ringcore_http::{
    get, post, put, IntoResponse, Json, Limits, Path, Request, Response, Router, Server, ShutdownReport,
    State, StatusCode, TlsConfig,
};
use serde::Deserialize;
use serde_json::json;

use self::replay::{OnCorruption, Record, Snapshot};
use crate::journal::{AppendError, Health, Journal};
use crate::redis::{run_tag, PutOutcome, RedisStore};

/// How `serve` is set up (the command line's options).
#[derive(Debug, Clone)]
pub struct Config {
    /// `HOST:PORT` to listen on (port 0: any free port).
    pub addr: String,
    /// Which cores serve.
    pub cores: Cores,
    /// Where the embedded store keeps its journals.
    pub data_dir: PathBuf,
    /// `redis://host:port`: keep the sale in Redis instead.
    pub store: Option<String>,
    /// Key prefix in Redis.
    pub prefix: String,
    /// Required `X-Admin-Token` for `PUT /items/..`, if set.
    pub admin_token: Option<String>,
    /// Buys per second per user (burst the same).
    pub user_rate: f64,
    /// Buys per second over the whole server (0: no global limit).
    pub global_rate: f64,
    /// How long `GET /items/..` answers may be cached per core.
    pub item_cache_ttl: Duration,
    /// Serve `addr` even if another process already listens on it (both then take
    /// connections through `SO_REUSEPORT`): for a zero-downtime restart, start the new
    /// instance with this set (on its own data dir or store), then stop the old one.
    pub share_addr: bool,
    /// How long a core must be saturated before the buy route sheds (503) the requests it
    /// cannot see waiting in the kernel: a burst shorter than this is absorbed.
    pub shed_grace: Duration,
    /// The deadline of every Redis operation (past it: 503 + `Retry-After`).
    pub redis_timeout: Duration,
    /// How many replicas must acknowledge a buy (`WAIT`, within `redis_timeout`) before it
    /// is answered 200; fewer in time: 503 `in_doubt` with the order id. 0 (the default):
    /// no `WAIT`, for a single Redis or a cluster without automatic failover; set 1 for a
    /// cluster whose masters have replicas (`docs/deploy.md`).
    pub redis_wait_replicas: u32,
    /// Start even against a Redis that can lose acknowledged orders (or will not say).
    pub allow_redis_data_loss: bool,
    /// Start even on a corrupt journal: cut it at the damage (as `flash-sale repair` does)
    /// and list the dropped records in [`Snapshot::dropped`].
    pub accept_data_loss: bool,
    /// Bytes of zeros each journal prepares ahead of its end
    /// ([`JournalOptions::prealloc`](crate::journal::JournalOptions); 0: none).
    pub journal_prealloc: u64,
    /// How each journal batch is made durable (default: one `RWF_DSYNC` write).
    pub journal_sync: crate::journal::SyncMode,
    /// Each journal's batch window
    /// ([`JournalOptions::commit_window`](crate::journal::JournalOptions)).
    pub journal_commit_window: Duration,
    /// Serve HTTPS with this PEM certificate chain and private key (see
    /// [`ringcore_http::TlsConfig`]); `None`: plaintext.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Config {
    /// The defaults for `addr` and `data_dir`.
    pub fn new(addr: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            addr: addr.into(),
            cores: Cores::All,
            data_dir: data_dir.into(),
            store: None,
            prefix: crate::redis::DEFAULT_PREFIX.to_string(),
            admin_token: None,
            user_rate: 10.0,
            global_rate: 0.0,
            item_cache_ttl: Duration::from_millis(100),
            share_addr: false,
            shed_grace: Duration::from_millis(30),
            redis_timeout: crate::redis::client::DEFAULT_DEADLINE,
            redis_wait_replicas: 0,
            allow_redis_data_loss: false,
            accept_data_loss: false,
            journal_prealloc: crate::journal::DEFAULT_PREALLOC,
            journal_sync: crate::journal::SyncMode::DsyncWrite,
            journal_commit_window: crate::journal::DEFAULT_COMMIT_WINDOW,
            tls: None,
        }
    }
}

/// Starts the service and serves until SIGINT/SIGTERM. `on_listening` gets the address once
/// every core accepts; `on_replay` gets the replayed snapshot (embedded store) before that.
///
/// Refuses to start (before touching any journal) when another process holds the data dir
/// ([`datadir::lock`](crate::datadir::lock)) or already serves `addr` (unless
/// [`Config::share_addr`]).
///
/// Start-up reads each journal once ([`replay::replay_dir`], one thread per journal), then
/// every core installs its part of the snapshot and opens its journal where the replay left
/// it ([`Journal::open_replayed`]: no second read); the snapshot is dropped once every core
/// has installed.
pub fn serve(
    cfg: Config,
    on_replay: impl FnOnce(&Snapshot),
    on_listening: impl Fn(SocketAddr) + Send + Sync + 'static,
) -> io::Result<ShutdownReport> {
    // Held until `serve` returns; the kernel drops it if the process dies.
    let _lock = match cfg.store {
        None => Some(crate::datadir::lock(&cfg.data_dir)?),
        Some(_) => None,
    };
    if !cfg.share_addr {
        refuse_served_addr(&cfg.addr)?;
    }
    // Checked before any journal is read: a bad certificate fails start-up at once.
    let tls = match &cfg.tls {
        Some((cert, key)) => Some(TlsConfig::from_pem_files(cert, key)?),
        None => None,
    };
    let snapshot = if cfg.store.is_none() {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| io::Error::new(e.kind(), format!("data dir {}: {e}", cfg.data_dir.display())))?;
        let on_corruption = if cfg.accept_data_loss {
            OnCorruption::Cut
        } else {
            OnCorruption::Refuse
        };
        replay::replay_dir(&cfg.data_dir, on_corruption)?
    } else {
        Snapshot::default()
    };
    on_replay(&snapshot);
    let handoff = Arc::new(Handoff::new(snapshot));
    let tag = run_tag();
    let mut limits = Limits::default();
    limits.max_body_bytes = 64 * 1024;
    let cfg = Arc::new(cfg);
    let cfg2 = cfg.clone();
    let mut server = Server::bind(cfg.addr.clone());
    if let Some(tls) = tls {
        server = server.tls(tls);
    }
    server
        .cores(cfg.cores.clone())
        .limits(limits)
        .server_header(ringcore_http::HeaderValue::from_static("flash-sale"))
        .on_listening(on_listening)
        .serve(move || router(&cfg2, &handoff, &tag))
}

/// The replayed snapshot on its way to the cores: each core takes it once to install its
/// part, and the last one leaves nothing behind, so it is freed after start-up.
struct Handoff {
    /// The snapshot (until every core took it) and how many cores took it.
    slot: std::sync::Mutex<(Option<Arc<Snapshot>>, usize)>,
}

impl Handoff {
    fn new(snap: Snapshot) -> Handoff {
        Handoff {
            slot: std::sync::Mutex::new((Some(Arc::new(snap)), 0)),
        }
    }

    /// The snapshot for one of `n` cores; after the `n`-th call it is no longer held here.
    fn take(&self, n: usize) -> Arc<Snapshot> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        slot.1 += 1;
        let snap = if slot.1 >= n {
            slot.0.take()
        } else {
            slot.0.clone()
        };
        // Every core calls the router factory exactly once, so the n-th is the last.
        snap.expect("the replay snapshot is taken once per core")
    }
}

/// Hands the heap pages freed at start-up (the replay's file buffers, the snapshot, the
/// tables' growth) back to the kernel: glibc keeps freed memory below its mmap threshold
/// (which a freed 32 MiB buffer raises to 32 MiB) in its arenas otherwise.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only walks glibc's own arenas under their
    // locks and returns whole free pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Fails if another process already listens on `addr`. Our listeners set `SO_REUSEPORT`,
/// which would let them join that process's socket silently (the kernel would then split
/// the connections between two services); a probe bind without it fails instead.
fn refuse_served_addr(addr: &str) -> io::Result<()> {
    use std::net::ToSocketAddrs;
    let addrs = addr
        .to_socket_addrs()
        .map_err(|e| io::Error::new(e.kind(), format!("--addr {addr}: {e}")))?;
    for a in addrs.filter(|a| a.port() != 0) {
        match std::net::TcpListener::bind(a) {
            Ok(probe) => drop(probe),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{a} is already served by another process; stop it, choose another \
                         --addr, or pass --share-addr to share it on purpose (zero-downtime \
                         restart: both take connections until the old one stops)"
                    ),
                ))
            }
            // Other errors (no such local address, permission) surface from the real bind.
            Err(_) => {}
        }
    }
    Ok(())
}

/// Where the sale's state lives.
enum Store {
    Embedded,
    Redis(std::cell::RefCell<Option<Rc<RedisStore>>>),
}

/// One core's application state.
struct App {
    store: Store,
    cache: Cache<String, Bytes>,
    tag: String,
    admin_token: Option<String>,
    seq: std::cell::Cell<u64>,
    /// Buys in progress on this core (from the handler's start to its answer).
    buys_in_flight: Rc<std::cell::Cell<usize>>,
    m: Metrics,
}

/// Most buys in progress on one core: reserving over the mesh, stealing, or waiting for
/// their group commit. Past it a buy is answered 503 at once (a bounded queue, not a
/// growing one).
const MAX_BUYS_IN_FLIGHT: usize = 1024;
/// A buy is refused (503) while the group commit ahead of it has been on its way to the disk
/// longer than this: its own wait would be at least as long.
const COMMIT_WAIT_TARGET: Duration = Duration::from_millis(50);
/// Most records waiting for the next group commit on one core.
const MAX_QUEUED_RECORDS: u64 = 4096;

/// Counts one buy in progress until dropped (the handler's future may be dropped midway).
struct InFlight(Rc<std::cell::Cell<usize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

struct Metrics {
    sold: Counter,
    sold_out: Counter,
    already: Counter,
    /// Buys refused by the service's own bounds (in flight, group commit backlog).
    shed: Counter,
    /// Buys refused by the per-user limit.
    rate_limited: Counter,
    /// Buys Redis ran but too few replicas acknowledged (`--redis-wait-replicas`).
    in_doubt: Counter,
    journal_batches: ringcore_http::metrics::Gauge,
}

fn router(cfg: &Config, handoff: &Handoff, tag: &str) -> Router<App> {
    let (me, n) = (shard_id(), n_shards());
    let snap = handoff.take(n);
    // What the prewarm needs from the snapshot: this core's journal length and the item views.
    let journal_len = snap.journals.get(&me).copied();
    let views: Vec<(String, Bytes)> = snap
        .items
        .iter()
        .map(|s| (s.id.clone(), item_json(&s.id, s.stock, s.sold)))
        .collect();
    let store = match &cfg.store {
        None => {
            embedded::install(&snap, me, n);
            Store::Embedded
        }
        Some(_) => Store::Redis(std::cell::RefCell::new(None)),
    };
    drop(snap);
    release_free_memory();
    let outcome = |o: &str| {
        Counter::new(
            "flash_sale_buys_total",
            "Buy attempts answered, by outcome.",
            &[("outcome", o)],
        )
    };
    let app = App {
        store,
        cache: Cache::builder()
            .max_entries(100_000)
            .ttl(cfg.item_cache_ttl)
            .build(),
        tag: tag.to_string(),
        admin_token: cfg.admin_token.clone(),
        seq: std::cell::Cell::new(0),
        buys_in_flight: Rc::new(std::cell::Cell::new(0)),
        m: Metrics {
            sold: outcome("sold"),
            sold_out: outcome("sold_out"),
            already: outcome("already_bought"),
            shed: outcome("overloaded"),
            rate_limited: outcome("rate_limited"),
            in_doubt: outcome("in_doubt"),
            journal_batches: ringcore_http::metrics::Gauge::new(
                "flash_sale_journal_batches",
                "Group commits (one data-sync write, or write + fdatasync, each) done by this process's journals.",
                &[],
            ),
        },
    };
    // The per-user limit is checked on the user's owner core, in the handler (exact across
    // cores); the global one is split over the cores.
    user_limit::configure(cfg.user_rate, cfg.user_rate.ceil().max(1.0) as u32);
    let mut buy = post(buy::buy);
    if cfg.global_rate > 0.0 {
        buy = buy.layer(RateLimit::per_second(cfg.global_rate).name("buy_global"));
    }
    // Shed on the wait inside the core (CoDel) and, since a saturated core cannot see the
    // requests still in the kernel or the clients, on saturation too.
    let buy = buy.layer(
        LoadShed::new()
            .on_saturation(Duration::from_millis(10), cfg.shed_grace)
            .name("buy"),
    );

    let router = Router::with_state(app);
    let state = router.state().clone();
    let store_url = cfg.store.clone();
    let prefix = cfg.prefix.clone();
    let data_dir = cfg.data_dir.clone();
    let journal_opts = crate::journal::JournalOptions {
        prealloc: cfg.journal_prealloc,
        sync: cfg.journal_sync,
        commit_window: cfg.journal_commit_window,
    };
    let (redis_timeout, allow_loss) = (cfg.redis_timeout, cfg.allow_redis_data_loss);
    let wait_replicas = cfg.redis_wait_replicas;
    router
        .route("/items/{item}", put(put_item).get(get_item))
        .route("/items/{item}/buy", buy)
        .route("/orders/{order}", get(get_order))
        .route("/healthz", get(healthz))
        .route("/metrics", get(ringcore_http::metrics::prometheus))
        .prewarm("store", move || async move {
            match store_url {
                None => {
                    let journal = match journal_len {
                        // Replayed at start: open where the replay left it, without reading.
                        Some(len) => {
                            Journal::open_replayed_with(&data_dir, shard_id(), len, &journal_opts).await?
                        }
                        // A core with no journal yet (more cores than before): a new file.
                        None => Journal::open_with(&data_dir, shard_id(), &journal_opts).await?.0,
                    };
                    let part = format!("journal-{}", shard_id());
                    if journal_opts.sync == crate::journal::SyncMode::Direct {
                        if journal.is_direct() {
                            tracing::info!("{part}: batches written with O_DIRECT");
                        } else {
                            tracing::warn!(
                                "{part}: the file system refuses aligned O_DIRECT writes; batches \
                                 are written buffered (RWF_DSYNC)"
                            );
                        }
                    }
                    journal.on_health(move |h| match h {
                        Health::Healthy => {
                            if health::set_healthy(&part) {
                                tracing::info!("{part}: accepting writes again");
                            }
                        }
                        Health::Stopped(why) => {
                            tracing::warn!("{part}: {why}");
                            health::set_failing(&part, why.clone());
                        }
                    });
                    *embedded::core().journal.borrow_mut() = Some(Rc::new(journal));
                    // The item cache starts with every item as replayed.
                    for (id, view) in views {
                        state.cache.insert(id, view);
                    }
                }
                Some(url) => {
                    let store = RedisStore::connect_with(&url, &prefix, redis_timeout)
                        .await?
                        .with_wait_replicas(wait_replicas);
                    if shard_id() == 0 {
                        redis_calls::check_durability(&store, allow_loss).await?;
                        redis_calls::check_replicas(&store).await;
                    }
                    if let Store::Redis(slot) = &state.store {
                        *slot.borrow_mut() = Some(Rc::new(store));
                    }
                }
            }
            Ok(())
        })
}

/// `GET /healthz`: 200 `{"status":"ok","failing":[]}` when every part of every core is
/// healthy, else 503 with each failing part, its error and since when.
async fn healthz() -> Response {
    let failing = health::gather().await;
    if failing.is_empty() {
        json_response(StatusCode::OK, json!({"status": "ok", "failing": []}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "failing", "failing": failing}),
        )
    }
}

fn item_json(item: &str, stock: u64, sold: u64) -> Bytes {
    let v = json!({"item": item, "stock": stock, "sold": sold, "remaining": stock.saturating_sub(sold)});
    Bytes::from(v.to_string())
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, code: &str) -> Response {
    json_response(status, json!({ "error": code }))
}

fn bad_request(detail: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"error": "bad_request", "detail": detail}),
    )
}

fn unavailable(detail: &str) -> Response {
    retry_later("unavailable", detail)
}

/// 503 `{"error": code, "detail": detail}` with `Retry-After: 1`.
fn retry_later(code: &str, detail: &str) -> Response {
    json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"error": code, "detail": detail}),
    )
    .header(
        ringcore_http::header::RETRY_AFTER,
        ringcore_http::HeaderValue::from_static("1"),
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn redis_of(app: &App) -> Option<Rc<RedisStore>> {
    match &app.store {
        Store::Redis(slot) => slot.borrow().clone(),
        Store::Embedded => None,
    }
}

/// Parses a JSON *object* into `T` (serde would also take an array in field order).
fn object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    if !v.is_object() {
        return Err(serde::de::Error::custom("the body must be a JSON object"));
    }
    serde_json::from_value(v)
}

#[derive(Deserialize)]
struct PutBody {
    stock: serde_json::Value,
    #[serde(default)]
    price: Option<i64>,
    #[serde(default)]
    name: Option<String>,
    /// Redis store: split the stock over this many buckets (hash slots); default 1. The
    /// embedded store already splits every item's stock over the cores, and ignores it.
    #[serde(default)]
    buckets: Option<u32>,
}

/// A mesh call that cannot fail in a running server (the target core exists and runs until
/// shutdown); if it does, the request gets 503.
async fn on<R: Send + 'static>(core: usize, f: impl FnOnce() -> R + Send + 'static) -> Result<R, MeshDown> {
    submit_to(core, f)
        .await
        .map_err(|e| MeshDown(format!("core {core}: {e}")))
}

/// A mesh call failed (see [`on`]): 503 `unavailable`.
struct MeshDown(String);

impl From<MeshDown> for Response {
    fn from(e: MeshDown) -> Response {
        unavailable(&e.0)
    }
}

impl From<MeshDown> for Unlock {
    fn from(e: MeshDown) -> Unlock {
        Unlock::Now(e.into())
    }
}

/// How long a buy waits for a stock change or an earlier buy by the same user.
const WAIT_LIMIT: Duration = Duration::from_secs(2);

/// The caller may change the catalog: its `X-Admin-Token` is the configured token (any
/// caller when none is configured). A parts extractor, so a request without it gets 401
/// before its body is looked at.
struct Admin;

impl FromRequestParts<App> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Rc<App>) -> Result<Self, Response> {
        match &app.admin_token {
            Some(t) if parts.header_str("x-admin-token") != Some(t.as_str()) => {
                Err(error(StatusCode::UNAUTHORIZED, "unauthorized"))
            }
            _ => Ok(Admin),
        }
    }
}

/// A `PUT /items/{item}` body, `{"stock": n, "price": p, "name": "..", "buckets": b}`,
/// parsed once by this extractor: 400 `bad_request` if it is not a JSON object of that shape
/// or `stock` is not a non-negative integer. (Not `Json<T>`: the service has always taken
/// the body without a `Content-Type`, and its answers to bad input stay the same.)
struct ItemSpec {
    stock: u64,
    price: Option<i64>,
    name: Option<String>,
    buckets: Option<u32>,
}

impl<S> FromRequest<S> for ItemSpec {
    type Rejection = Response;

    async fn from_request(req: Request, _: &Rc<S>) -> Result<Self, Response> {
        let body: PutBody = object(req.body()).map_err(|e| bad_request(&format!("malformed JSON: {e}")))?;
        let Some(stock) = body.stock.as_u64() else {
            return Err(bad_request("\"stock\" must be a non-negative integer"));
        };
        Ok(ItemSpec {
            stock,
            price: body.price,
            name: body.name,
            buckets: body.buckets,
        })
    }
}

async fn put_item(Path(item): Path<String>, State(app): State<App>, _: Admin, body: ItemSpec) -> Response {
    let stock = body.stock;
    if item.is_empty() || item.len() > 256 {
        return bad_request("item ids are 1 to 256 bytes");
    }
    let buckets = body.buckets.unwrap_or(1);
    if !(1..=crate::redis::MAX_BUCKETS).contains(&buckets) {
        return bad_request(&format!("\"buckets\" must be 1 to {}", crate::redis::MAX_BUCKETS));
    }
    let outcome = match redis_of(&app) {
        Some(store) => match redis_calls::call(&store, || {
            store.put_item_buckets(&item, stock, buckets, body.price, body.name.as_deref())
        })
        .await
        {
            Ok(o) => o,
            Err(e) => return unavailable(&format!("store: {e}")),
        },
        None => match put_embedded(&item, stock, body.price, body.name).await {
            Ok(o) => o,
            Err(r) => return r,
        },
    };
    // Every core forgets its cached view.
    for k in 0..n_shards() {
        let i = item.clone();
        let _ = submit_to(k, move || CACHE_INVALIDATE.with(|c| c.borrow_mut().push(i))).await;
    }
    app.cache.remove(&item);
    match outcome {
        PutOutcome::Created => json_response(StatusCode::CREATED, json!({"item": item, "stock": stock})),
        PutOutcome::Updated => json_response(StatusCode::OK, json!({"item": item, "stock": stock})),
        PutOutcome::SaleStarted => error(StatusCode::CONFLICT, "sale_started"),
        PutOutcome::Unacknowledged => retry_later(
            "in_doubt",
            &format!(
                "item {item} was written, but fewer than --redis-wait-replicas replicas \
                 acknowledged it in time, so a failover could lose it; PUT it again"
            ),
        ),
    }
}

ringcore_http::runtime::core_local! {
    /// Items whose cached view another core asked this core to drop.
    static CACHE_INVALIDATE: std::cell::RefCell<Vec<String>> = std::cell::RefCell::new(Vec::new());
}

async fn put_embedded(
    item: &str,
    stock: u64,
    price: Option<i64>,
    name: Option<String>,
) -> Result<PutOutcome, Response> {
    let n = n_shards();
    let started = std::time::Instant::now();
    let version = loop {
        let i = item.to_string();
        if let Some(v) = on(0, move || embedded::lock_item(&i)).await? {
            break v;
        }
        if started.elapsed() > WAIT_LIMIT {
            return Err(unavailable("another change of this item is in progress"));
        }
        sleep(Duration::from_millis(1)).await;
    };
    match put_locked(item, stock, price, name, version, n).await {
        // In doubt: the doubt task unfreezes and unlocks the item once resolved; until then
        // no other change may start (it would thaw or reset the segments under it).
        Err(Unlock::Deferred(r)) => Err(r),
        result => {
            let i = item.to_string();
            on(0, move || embedded::unlock_item(&i)).await?;
            result.map_err(|e| match e {
                Unlock::Now(r) | Unlock::Deferred(r) => r,
            })
        }
    }
}

/// How `put_locked` failed, and who releases the item's change lock.
enum Unlock {
    /// The caller, now.
    Now(Response),
    /// The task that waits out a journal doubt.
    Deferred(Response),
}

impl From<Response> for Unlock {
    fn from(r: Response) -> Self {
        Unlock::Now(r)
    }
}

async fn put_locked(
    item: &str,
    stock: u64,
    price: Option<i64>,
    name: Option<String>,
    version: u64,
    n: usize,
) -> Result<PutOutcome, Unlock> {
    let mut exists = false;
    let mut old_stock = 0;
    let mut segments = 0;
    let mut sold = 0;
    for k in 0..n {
        let i = item.to_string();
        let (e, st, seg, s) = on(k, move || embedded::freeze(&i)).await?;
        exists |= e;
        old_stock = old_stock.max(st);
        segments += seg;
        sold += s;
    }
    let unfreeze_all = || async {
        for k in 0..n {
            let i = item.to_string();
            let _ = submit_to(k, move || embedded::unfreeze(&i)).await;
        }
    };
    if exists && (sold > 0 || segments < old_stock) {
        unfreeze_all().await;
        return Ok(PutOutcome::SaleStarted);
    }
    let rec = Record::Item {
        item: item.to_string(),
        stock,
        price,
        name: name.clone(),
        v: version,
    };
    let payload = serde_json::to_vec(&rec).map_err(|e| Unlock::Now(unavailable(&e.to_string())))?;
    let journal = embedded::core().journal.borrow().clone();
    let durable = match journal {
        Some(j) => j.append(&payload).await,
        None => Err(AppendError::NotWritten(io::Error::other("journal not open"))),
    };
    match durable {
        Ok(()) => {}
        Err(AppendError::NotWritten(e)) => {
            unfreeze_all().await;
            return Err(unavailable(&format!("journal: {e}")).into());
        }
        Err(AppendError::InDoubt(e, doubt)) => {
            // The new stock may be durable: the item stays frozen (no buy takes the old
            // segments) and locked (no other change starts) until the journal cuts the
            // record off; then both are released.
            let i = item.to_string();
            spawn_local_in(TaskClass::Background, async move {
                doubt.await;
                for k in 0..n {
                    let i = i.clone();
                    let _ = submit_to(k, move || embedded::unfreeze(&i)).await;
                }
                let _ = submit_to(0, move || embedded::unlock_item(&i)).await;
            })
            .detach();
            return Err(Unlock::Deferred(unavailable(&format!(
                "journal: {e}; the change is in doubt, retry later"
            ))));
        }
    }
    for k in 0..n {
        let (i, nm) = (item.to_string(), name.clone());
        let seg = embedded::split(stock, k, n);
        on(k, move || embedded::set_item(&i, stock, price, nm, seg)).await?;
    }
    Ok(if exists {
        PutOutcome::Updated
    } else {
        PutOutcome::Created
    })
}

async fn get_item(Path(item): Path<String>, State(app): State<App>) -> Response {
    let stale: Vec<String> = CACHE_INVALIDATE.with(|c| std::mem::take(&mut *c.borrow_mut()));
    for i in stale {
        app.cache.remove(&i);
    }
    let store = redis_of(&app);
    let key = item.clone();
    let loaded = app
        .cache
        .get_or_load(key, || async move {
            match store {
                Some(s) => match redis_calls::call(&s, || s.get_item(&item)).await {
                    Ok(Some(v)) => Ok(item_json(&item, v.stock, v.sold)),
                    Ok(None) => Err(Missing::NotFound),
                    Err(e) => Err(Missing::Store(e.to_string())),
                },
                None => {
                    let mut stock = None;
                    let mut sold = 0;
                    for k in 0..n_shards() {
                        let i = item.clone();
                        match submit_to(k, move || embedded::item_local(&i)).await {
                            Ok(Some((st, s, _))) => {
                                stock = Some(st);
                                sold += s;
                            }
                            Ok(None) => {}
                            Err(e) => return Err(Missing::Store(e.to_string())),
                        }
                    }
                    match stock {
                        Some(st) => Ok(item_json(&item, st, sold)),
                        None => Err(Missing::NotFound),
                    }
                }
            }
        })
        .await;
    match loaded {
        Ok(body) => Response::with_body(ringcore_http::Body::Full(body)).header(
            ringcore_http::header::CONTENT_TYPE,
            ringcore_http::HeaderValue::from_static("application/json"),
        ),
        Err(Missing::NotFound) => error(StatusCode::NOT_FOUND, "unknown_item"),
        Err(Missing::Store(e)) => unavailable(&e),
    }
}

#[derive(Debug, Clone)]
enum Missing {
    NotFound,
    Store(String),
}

async fn get_order(Path(order): Path<String>, State(app): State<App>) -> Response {
    let found = match redis_of(&app) {
        Some(store) => match redis_calls::call(&store, || store.get_order(&order)).await {
            Ok(o) => o.map(|o| json!({"order": o.order, "item": o.item, "user": o.user, "ts": o.ts})),
            Err(e) => return unavailable(&format!("store: {e}")),
        },
        None => {
            let owner = embedded::order_owner(&order, n_shards());
            let id = order.clone();
            match on(owner, move || embedded::lookup_order(&id)).await {
                Ok(o) => o.map(|o| json!({"order": o.order, "item": o.item, "user": o.user, "ts": o.ts})),
                Err(e) => return e.into(),
            }
        }
    };
    match found {
        Some(v) => json_response(StatusCode::OK, v),
        None => error(StatusCode::NOT_FOUND, "unknown_order"),
    }
}
