//! `axum_flash_sale`: the flash-sale service (`examples/flash-sale`) written the way most tokio
//! users would write it, as the baseline of `scripts/bench-flash-sale.sh`.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin axum_flash_sale -- --addr
//! 127.0.0.1:8080 --threads 1 --data-dir /tmp/fs`
//!
//! # HTTP contract (the same as the ringcore service)
//!
//! - `PUT /items/{item}` `{"stock":N,"price"?:P,"name"?:S}` → 201 `{"item","stock"}` created,
//!   200 updated (only while nothing is sold), 409 `{"error":"sale_started"}`, 400
//!   `{"error":"bad_request","detail":..}` (not a JSON object, stock missing or not a
//!   non-negative integer).
//! - `GET /items/{item}` → 200 `{"item","stock","sold","remaining"}`, 404
//!   `{"error":"unknown_item"}`.
//! - `POST /items/{item}/buy` `{"user":"..."}` → 200 `{"order","item","user"}` once the order
//!   is durable; 409 `{"error":"sold_out"}`; 409 `{"error":"already_bought","order":"..."}`;
//!   404 `{"error":"unknown_item"}`; 400 `{"error":"bad_request"}`; 503
//!   `{"error":"unavailable"}` after a failed journal write or sync.
//! - `GET /orders/{order}` → 200 `{"order","item","user","ts"}` (ts: ms since the Unix epoch),
//!   404 `{"error":"unknown_order"}`. `GET /healthz` → 200 `ok`.
//!
//! # Durability, the idiomatic tokio way
//!
//! All state is in one `std::sync::Mutex` (held for a few hash-map operations, never across
//! an `.await`). A buy reserves its unit and the user's record under the lock (`sold + 1`,
//! `buyers[user] = order`), then hands its journal record and a `oneshot` to the journal
//! writer over an unbounded `mpsc` channel, still under the lock, so records reach the file in
//! the order the state changed. The writer task takes everything queued
//! ([`tokio::sync::mpsc::UnboundedReceiver::recv_many`]), writes it with one `write_all` and
//! one `sync_data` on the blocking pool (`spawn_blocking`, `std::fs`), then completes every
//! `oneshot` of the batch: group commit. Buys arriving while a batch is on its way to the disk
//! gather in the next one. Only then does the handler insert the order (visible to
//! `GET /orders`) and answer 200; if the write failed it releases the unit and the user record
//! and answers 503 `unavailable`. A failed write or sync stops the journal for good (fail-stop, like the
//! ringcore journal: after a failed `fsync` nothing later could be trusted).
//!
//! `PUT` goes through the journal too (the stock must survive a restart); on failure the
//! previous item is put back if nothing was sold meanwhile.
//!
//! A user whose purchase is still on its way to the disk already counts as a buyer: a second
//! buy by them answers `already_bought` with the pending order id.
//!
//! Journal: `DIR/axum-journal.log`, records `[len u32 LE][crc32 u32 LE][json]`. On start the
//! file is replayed up to its first torn or corrupt record, and cut there.
//!
//! `--threads N` sets tokio's worker threads (not pinned: pin the process with `taskset`).
//! Prints `axum_flash_sale listening on ADDR`; SIGINT/SIGTERM stop it with exit status 0.

use std::collections::HashMap;
use std::io::{self, Read, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// Journal file name inside `--data-dir`.
const JOURNAL_FILE: &str = "axum-journal.log";
/// Bytes in front of every journal payload: length and CRC-32, both u32 LE.
const RECORD_OVERHEAD: usize = 8;
/// Largest payload replay accepts (a larger length field is damage).
const MAX_RECORD_LEN: usize = 16 * 1024 * 1024;
/// Most records one group commit takes from the queue.
const MAX_BATCH: usize = 4096;
/// Longest item or user id accepted.
const MAX_ID_LEN: usize = 256;

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Item {
    stock: u64,
    /// Units sold, counting purchases still on their way to the disk.
    sold: u64,
    price: Option<i64>,
    name: Option<String>,
    /// user → order id.
    buyers: HashMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
struct Order {
    order: String,
    item: String,
    user: String,
    ts: u64,
}

#[derive(Debug, Default)]
struct Sale {
    items: HashMap<String, Item>,
    /// Durable orders only.
    orders: HashMap<String, Order>,
}

/// One journal record's payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Record {
    Put {
        item: String,
        stock: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Buy {
        order: String,
        item: String,
        user: String,
        ts: u64,
    },
}

impl Sale {
    /// Applies a replayed record.
    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Put {
                item,
                stock,
                price,
                name,
            } => {
                let it = self.items.entry(item).or_default();
                it.stock = stock;
                if price.is_some() {
                    it.price = price;
                }
                if name.is_some() {
                    it.name = name;
                }
            }
            Record::Buy {
                order,
                item,
                user,
                ts,
            } => {
                let it = self.items.entry(item.clone()).or_default();
                it.sold += 1;
                it.buyers.insert(user.clone(), order.clone());
                self.orders.insert(
                    order.clone(),
                    Order {
                        order,
                        item,
                        user,
                        ts,
                    },
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Journal
// ---------------------------------------------------------------------------------------------

/// Why a record is not durable: the journal has stopped.
type JournalError = Arc<str>;

struct Append {
    /// One encoded record (prefix and payload).
    bytes: Vec<u8>,
    done: oneshot::Sender<Result<(), JournalError>>,
}

/// Encodes `rec` as `[len][crc32][json]`.
fn encode(rec: &Record) -> Vec<u8> {
    // Serializing this enum of strings and integers cannot fail.
    let payload = serde_json::to_vec(rec).unwrap_or_default();
    let mut out = Vec::with_capacity(RECORD_OVERHEAD + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Splits `bytes` into valid payloads; returns them and the length of the valid prefix (the
/// first torn, zero-length, oversized or corrupt record and everything after it are not).
fn scan(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= RECORD_OVERHEAD {
        let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let len = word(pos) as usize;
        let crc = word(pos + 4);
        let start = pos + RECORD_OVERHEAD;
        if len == 0 || len > MAX_RECORD_LEN || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        out.push(payload);
        pos = start + len;
    }
    (out, pos)
}

/// Opens (creating) the journal in `dir`, replays it into a [`Sale`] and cuts a damaged tail.
fn open_journal(dir: &Path) -> io::Result<(std::fs::File, Sale, PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let path = dir.join(JOURNAL_FILE);
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(ctx)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(ctx)?;
    let (payloads, valid) = scan(&bytes);
    let mut sale = Sale::default();
    for p in payloads {
        let rec: Record = serde_json::from_slice(p).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: bad record: {e}", path.display()),
            )
        })?;
        sale.apply(rec);
    }
    if valid < bytes.len() {
        eprintln!(
            "axum_flash_sale: {}: cutting {} damaged bytes at offset {valid}",
            path.display(),
            bytes.len() - valid
        );
        file.set_len(valid as u64).map_err(ctx)?;
        file.sync_all().map_err(ctx)?;
    }
    file.seek(io::SeekFrom::End(0)).map_err(ctx)?;
    Ok((file, sale, path))
}

/// The group-commit writer: one batch in flight, everything queued meanwhile in the next.
async fn journal_writer(file: std::fs::File, path: PathBuf, mut rx: mpsc::UnboundedReceiver<Append>) {
    let file = Arc::new(file);
    let mut failed: Option<JournalError> = None;
    let mut batch: Vec<Append> = Vec::with_capacity(MAX_BATCH);
    let mut buf: Vec<u8> = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if failed.is_none() {
            buf.clear();
            for a in &batch {
                buf.extend_from_slice(&a.bytes);
            }
            let f = Arc::clone(&file);
            let data = std::mem::take(&mut buf);
            let res = tokio::task::spawn_blocking(move || {
                let mut w: &std::fs::File = &f;
                let r = w.write_all(&data).and_then(|()| f.sync_data());
                (r, data)
            })
            .await;
            match res {
                Ok((Ok(()), data)) => buf = data,
                Ok((Err(e), _)) => {
                    let msg = format!(
                        "journal {}: write or sync failed, journal stopped: {e}",
                        path.display()
                    );
                    eprintln!("axum_flash_sale: {msg}");
                    failed = Some(msg.into());
                }
                Err(e) => {
                    let msg = format!(
                        "journal {}: writer task failed, journal stopped: {e}",
                        path.display()
                    );
                    eprintln!("axum_flash_sale: {msg}");
                    failed = Some(msg.into());
                }
            }
        }
        for a in batch.drain(..) {
            let _ = a.done.send(match &failed {
                None => Ok(()),
                Some(e) => Err(Arc::clone(e)),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

struct App {
    sale: Mutex<Sale>,
    journal: mpsc::UnboundedSender<Append>,
    /// Order ids are `{tag}-{seq}`: `tag` is unique to this process run.
    tag: String,
    seq: AtomicU64,
}

impl App {
    fn lock(&self) -> MutexGuard<'_, Sale> {
        // A handler that panicked under the lock left the maps consistent (every change is a
        // few inserts with no await in between); keep serving.
        self.sale.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `rec` (call with the lock held, so records keep the order of the changes).
    fn append(&self, rec: &Record) -> oneshot::Receiver<Result<(), JournalError>> {
        let (done, rx) = oneshot::channel();
        // If the writer is gone, `done` is dropped with the message and `rx` reports it.
        let _ = self.journal.send(Append {
            bytes: encode(rec),
            done,
        });
        rx
    }
}

type Shared = Arc<App>;

fn err(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn bad_request(detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "bad_request", "detail": detail })),
    )
        .into_response()
}

async fn durable(rx: oneshot::Receiver<Result<(), JournalError>>) -> bool {
    matches!(rx.await, Ok(Ok(())))
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn put_item(State(app): State<Shared>, UrlPath(item): UrlPath<String>, body: Bytes) -> Response {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&body) else {
        return err(StatusCode::BAD_REQUEST, "bad_request");
    };
    if !valid_id(&item) {
        return err(StatusCode::BAD_REQUEST, "bad_request");
    }
    let Some(stock) = obj.get("stock").and_then(Value::as_u64) else {
        return bad_request("\"stock\" must be a non-negative integer");
    };
    let price = match obj.get("price") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(p) => Some(p),
            None => return err(StatusCode::BAD_REQUEST, "bad_request"),
        },
    };
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return err(StatusCode::BAD_REQUEST, "bad_request"),
    };
    let (created, before, rx) = {
        let mut sale = app.lock();
        let before = sale.items.get(&item).cloned();
        if before.as_ref().is_some_and(|it| it.sold > 0) {
            return err(StatusCode::CONFLICT, "sale_started");
        }
        let it = sale.items.entry(item.clone()).or_default();
        it.stock = stock;
        if price.is_some() {
            it.price = price;
        }
        if name.is_some() {
            it.name.clone_from(&name);
        }
        let rx = app.append(&Record::Put {
            item: item.clone(),
            stock,
            price,
            name,
        });
        (before.is_none(), before, rx)
    };
    if !durable(rx).await {
        let mut sale = app.lock();
        if sale.items.get(&item).is_some_and(|it| it.sold == 0) {
            match before {
                Some(b) => {
                    sale.items.insert(item, b);
                }
                None => {
                    sale.items.remove(&item);
                }
            }
        }
        return err(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({ "item": item, "stock": stock }))).into_response()
}

async fn get_item(State(app): State<Shared>, UrlPath(item): UrlPath<String>) -> Response {
    let sale = app.lock();
    let Some(it) = sale.items.get(&item) else {
        drop(sale);
        return err(StatusCode::NOT_FOUND, "unknown_item");
    };
    let (stock, sold) = (it.stock, it.sold);
    drop(sale);
    Json(json!({ "item": item, "stock": stock, "sold": sold, "remaining": stock.saturating_sub(sold) }))
        .into_response()
}

async fn buy(State(app): State<Shared>, UrlPath(item): UrlPath<String>, body: Bytes) -> Response {
    let user = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(mut obj)) => match obj.remove("user") {
            Some(Value::String(u)) if valid_id(&u) => u,
            _ => return err(StatusCode::BAD_REQUEST, "bad_request"),
        },
        _ => return err(StatusCode::BAD_REQUEST, "bad_request"),
    };
    let ts = now_ms();
    let (order, rx) = {
        let mut sale = app.lock();
        let Some(it) = sale.items.get_mut(&item) else {
            drop(sale);
            return err(StatusCode::NOT_FOUND, "unknown_item");
        };
        if let Some(order) = it.buyers.get(&user) {
            let body = json!({ "error": "already_bought", "order": order });
            drop(sale);
            return (StatusCode::CONFLICT, Json(body)).into_response();
        }
        if it.sold >= it.stock {
            drop(sale);
            return err(StatusCode::CONFLICT, "sold_out");
        }
        let order = format!("{}-{}", app.tag, app.seq.fetch_add(1, Ordering::Relaxed));
        it.sold += 1;
        it.buyers.insert(user.clone(), order.clone());
        let rx = app.append(&Record::Buy {
            order: order.clone(),
            item: item.clone(),
            user: user.clone(),
            ts,
        });
        (order, rx)
    };
    let ok = durable(rx).await;
    let mut sale = app.lock();
    if !ok {
        if let Some(it) = sale.items.get_mut(&item) {
            if it.buyers.get(&user) == Some(&order) {
                it.buyers.remove(&user);
                it.sold -= 1;
            }
        }
        drop(sale);
        return err(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    sale.orders.insert(
        order.clone(),
        Order {
            order: order.clone(),
            item: item.clone(),
            user: user.clone(),
            ts,
        },
    );
    drop(sale);
    Json(json!({ "order": order, "item": item, "user": user })).into_response()
}

async fn get_order(State(app): State<Shared>, UrlPath(order): UrlPath<String>) -> Response {
    let found = app.lock().orders.get(&order).cloned();
    match found {
        Some(o) => Json(o).into_response(),
        None => err(StatusCode::NOT_FOUND, "unknown_order"),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

fn router(app: Shared) -> Router {
    Router::new()
        .route("/items/{item}", get(get_item).put(put_item))
        .route("/items/{item}/buy", post(buy))
        .route("/orders/{order}", get(get_order))
        .route("/healthz", get(healthz))
        .with_state(app)
}

// ---------------------------------------------------------------------------------------------
// Start-up
// ---------------------------------------------------------------------------------------------

/// The flash-sale service written the usual tokio + axum way (the baseline).
#[derive(Debug, clap::Parser)]
#[command(name = "axum_flash_sale", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT", value_parser = ringcore_benches::resolve)]
    addr: SocketAddr,
    /// Tokio worker threads (not pinned: pin the process with `taskset`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    threads: u32,
    /// Where the journal goes.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
}

/// Serves until SIGINT or SIGTERM; `Err` is the message to print.
async fn run(args: Args) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("signal: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("signal: {e}"))?;
    let dir = args.data_dir.clone();
    let (file, sale, path) = tokio::task::spawn_blocking(move || open_journal(&dir))
        .await
        .map_err(|e| format!("journal: {e}"))?
        .map_err(|e| format!("journal: {e}"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(journal_writer(file, path, rx));
    let app = Arc::new(App {
        sale: Mutex::new(sale),
        journal: tx,
        tag: format!("{:x}.{:x}", std::process::id(), now_ms()),
        seq: AtomicU64::new(1),
    });
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot bind {}: {e}", args.addr))?;
    let local = listener.local_addr().map_err(|e| format!("local address: {e}"))?;
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    println!("axum_flash_sale listening on {local}");
    let _ = io::stdout().flush();
    tokio::select! {
        served = axum::serve(listener, router(app)) => served.map_err(|e| format!("serve: {e}")),
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    }
}

fn main() -> ExitCode {
    let args: Args = clap::Parser::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("axum_flash_sale: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(args));
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_flash_sale: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Record {
        Record::Buy {
            order: format!("o{i}"),
            item: "hot".into(),
            user: format!("u{i}"),
            ts: i,
        }
    }

    #[test]
    fn scan_stops_at_the_first_damaged_record() {
        let mut all = Vec::new();
        for i in 0..3 {
            all.extend_from_slice(&encode(&rec(i)));
        }
        let (p, valid) = scan(&all);
        assert_eq!((p.len(), valid), (3, all.len()));
        // Torn at every length inside the last record: two records, cut before the third.
        let two = all.len() - encode(&rec(2)).len();
        for cut in two..all.len() {
            let (p, valid) = scan(&all[..cut]);
            assert_eq!((p.len(), valid), (2, two), "cut at {cut}");
        }
        // A flipped payload byte in the second record: one record.
        let first = encode(&rec(0)).len();
        let mut bad = all.clone();
        bad[first + RECORD_OVERHEAD + 2] ^= 1;
        assert_eq!(scan(&bad).1, first);
        // Zeroes (what a crash can leave) are not a record.
        assert_eq!(scan(&[0u8; 64]).1, 0);
    }

    #[test]
    fn replayed_records_rebuild_the_sale() {
        let mut sale = Sale::default();
        sale.apply(Record::Put {
            item: "hot".into(),
            stock: 5,
            price: Some(3),
            name: None,
        });
        for i in 0..2 {
            sale.apply(rec(i));
        }
        let it = &sale.items["hot"];
        assert_eq!((it.stock, it.sold, it.buyers.len()), (5, 2, 2));
        assert_eq!(sale.orders["o1"].user, "u1");
    }
}
