//! `flash-sale serve | repair | demo`: the reference service on ringcore.
//!
//! ```text
//! flash-sale serve  --addr HOST:PORT --cores all|N|LIST --data-dir DIR [--store redis://HOST:PORT|redis-cluster://HOST:PORT,..]
//!                   [--admin-token T] [--prefix P] [--user-rate R] [--global-rate R]
//!                   [--accept-data-loss] [--share-addr] [--shed-grace MS]
//!                   [--redis-timeout MS] [--redis-wait-replicas N] [--allow-redis-data-loss]
//!                   [--tls-cert PEM --tls-key PEM]
//! flash-sale repair --data-dir DIR
//! flash-sale demo   [--cores all|N|LIST] [--items K] [--stock S] [--users U] [--rate R] ...
//! ```
//!
//! `flash-sale --help` and `flash-sale SUBCOMMAND --help` list every option.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use flash_sale::service::{self, Config};
use ringcore_cli::CoreSpec;
use tracing_subscriber::EnvFilter;

const AFTER_HELP: &str = "serve refuses to start on a journal whose damage is followed by valid \
records (acknowledged orders were corrupted). repair cuts each such journal at the damage (the \
cut bytes are kept in journal-<core>.log.cut-<offset>) and prints every order it drops; \
--accept-data-loss does the same at start (the list goes to stderr) and then serves. A dropped \
order's unit is for sale again and its user may buy again: contact the users listed.";

/// The flash-sale reference service on ringcore.
#[derive(Debug, Parser)]
#[command(name = "flash-sale", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--journal-sync`'s values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum JournalSync {
    /// One RWF_DSYNC write per batch.
    Dsync,
    /// A write, then fdatasync, per batch.
    Fdatasync,
    /// An O_DIRECT write of whole blocks, then fdatasync, per batch (buffered where the file
    /// system refuses O_DIRECT).
    Direct,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the sale until SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Cut each journal at its damage, keep the cut bytes in a side file, list what is dropped.
    Repair {
        /// The data directory of a stopped service.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Start the service, fire a flash crowd at it, check the invariants.
    Demo(flash_sale::demo::Options),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address every core listens on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` (the first N of this process's CPU set) or a list of
    /// ids such as `0,2-3`.
    #[arg(long, default_value = "all", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// Where the embedded store keeps its journals (required without --store).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the sale in Redis (`redis://HOST:PORT`, or a Redis Cluster:
    /// `redis-cluster://HOST:PORT[,HOST:PORT...]`) instead of the embedded journal.
    #[arg(long, value_name = "URL", value_parser = store_url)]
    store: Option<String>,
    /// Key prefix in Redis.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// Required `X-Admin-Token` for `PUT /items/..`.
    #[arg(long, value_name = "T")]
    admin_token: Option<String>,
    /// Buys per second per user (burst the same; default 10).
    #[arg(long, value_name = "BUYS_PER_SEC", value_parser = ringcore_cli::non_negative)]
    user_rate: Option<f64>,
    /// Buys per second over the whole server (default 0: no global limit).
    #[arg(long, value_name = "BUYS_PER_SEC", value_parser = ringcore_cli::non_negative)]
    global_rate: Option<f64>,
    /// Start even on a corrupt journal: cut it at the damage (as `repair` does), list the
    /// dropped orders on stderr, then serve.
    #[arg(long)]
    accept_data_loss: bool,
    /// Bytes of zeros each core's journal writes and syncs ahead of its end (default 16777216,
    /// rounded up to 4 KiB pages), so a group commit overwrites prepared blocks and its sync
    /// commits no size change; 0 turns it off (each batch then extends the file).
    #[arg(long, value_name = "BYTES")]
    journal_prealloc: Option<u64>,
    /// How a journal batch is made durable: `dsync` (default: one RWF_DSYNC write),
    /// `fdatasync` (a write, then fdatasync) or `direct` (an O_DIRECT write of whole blocks,
    /// then fdatasync: no page-cache copy and write-back by a kernel worker thread), for
    /// comparing them.
    #[arg(long, value_name = "MODE")]
    journal_sync: Option<JournalSync>,
    /// Each journal's batch window in microseconds (default 500, 0..=10000): under load a
    /// journal starts a batch (one write and one sync) at most once per window, so the buys of
    /// a window share it; a buy on an idle journal is written at once. 0 writes each batch as
    /// soon as the previous one is durable. At most 10 ms, well under the 50 ms a buy may
    /// wait for the journal before buys are shed.
    #[arg(long, value_name = "US", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    journal_commit_window: Option<u64>,
    /// Serve HOST:PORT even if another process already serves it (both take connections via
    /// SO_REUSEPORT): for a zero-downtime restart, start the new instance, then stop the old
    /// one. Without it, a served address is refused at start.
    #[arg(long)]
    share_addr: bool,
    /// How long a core may stay saturated before buys are shed with 503 + Retry-After
    /// (default 30, 10..=600000): a shorter burst is queued and served, a standing overload is
    /// shed so admitted buys stay fast.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=600_000))]
    shed_grace: Option<u64>,
    /// Deadline of every Redis operation (default 1000, 1..=3600000); past it the request
    /// answers 503 + Retry-After (a buy is then in doubt: its retry answers already_bought if
    /// it went through).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    redis_timeout: Option<u64>,
    /// Replicas that must acknowledge a buy (Redis `WAIT N`, within --redis-timeout) before
    /// it answers 200; fewer in time: 503 in_doubt with the order id (GET /orders/{id} tells
    /// later). An item's PUT waits the same way (fewer in time: 503 in_doubt, PUT it again).
    /// Default 0 (no WAIT). Use 1 on a cluster whose masters have replicas: Redis replication
    /// is asynchronous, so a replica that takes over after its master crashed can lack the
    /// last acknowledged orders.
    #[arg(long, value_name = "N", default_value_t = 0)]
    redis_wait_replicas: u32,
    /// Start even if Redis can lose acknowledged orders (anything but appendonly yes +
    /// appendfsync always) or refuses CONFIG GET.
    #[arg(long)]
    allow_redis_data_loss: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs `--tls-key`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn store_url(url: &str) -> Result<String, String> {
    flash_sale::redis::check_store_url(url).map_err(|e| e.to_string())?;
    Ok(url.to_string())
}

/// Warnings, and the runtime's start-up facts (the driver and why, when io_uring is
/// unavailable). `RUST_LOG` replaces it.
const DEFAULT_LOG: &str = "warn,ringcore_runtime=info";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)))
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => match config(*args) {
            Ok(cfg) => serve(cfg),
            Err(e) => {
                eprintln!("flash-sale: {e}");
                ExitCode::from(2)
            }
        },
        Command::Repair { data_dir } => repair(data_dir),
        Command::Demo(opts) => flash_sale::demo::main(&opts),
    }
}

fn config(a: ServeArgs) -> Result<Config, String> {
    let mut cfg = Config::new(a.addr, "");
    cfg.cores = a.cores.to_runtime();
    cfg.store = a.store;
    if let Some(p) = a.prefix {
        cfg.prefix = p;
    }
    cfg.admin_token = a.admin_token;
    if let Some(r) = a.user_rate {
        cfg.user_rate = r;
    }
    if let Some(r) = a.global_rate {
        cfg.global_rate = r;
    }
    cfg.share_addr = a.share_addr;
    if let Some(ms) = a.shed_grace {
        cfg.shed_grace = Duration::from_millis(ms);
    }
    if let Some(ms) = a.redis_timeout {
        cfg.redis_timeout = Duration::from_millis(ms);
    }
    cfg.redis_wait_replicas = a.redis_wait_replicas;
    cfg.allow_redis_data_loss = a.allow_redis_data_loss;
    cfg.accept_data_loss = a.accept_data_loss;
    if let Some(bytes) = a.journal_prealloc {
        cfg.journal_prealloc = bytes;
    }
    if let Some(mode) = a.journal_sync {
        cfg.journal_sync = match mode {
            JournalSync::Dsync => flash_sale::journal::SyncMode::DsyncWrite,
            JournalSync::Fdatasync => flash_sale::journal::SyncMode::WriteThenFdatasync,
            JournalSync::Direct => flash_sale::journal::SyncMode::Direct,
        };
    }
    if let Some(us) = a.journal_commit_window {
        cfg.journal_commit_window = Duration::from_micros(us);
    }
    cfg.tls = a.tls_cert.zip(a.tls_key);
    match a.data_dir {
        Some(d) => cfg.data_dir = d,
        None if cfg.store.is_some() => cfg.data_dir = std::env::temp_dir(),
        None => return Err("--data-dir is required with the embedded store".into()),
    }
    Ok(cfg)
}

fn serve(cfg: Config) -> ExitCode {
    let embedded = cfg.store.is_none();
    let data_dir = cfg.data_dir.clone();
    let with_tls = if cfg.tls.is_some() { " with TLS" } else { "" };
    let result = service::serve(
        cfg,
        |snap| {
            if embedded {
                eprintln!(
                    "flash-sale: replayed {} journal records: {} items, {} orders",
                    snap.records,
                    snap.items.len(),
                    snap.order_count()
                );
            }
            for d in &snap.damage {
                eprintln!("flash-sale: journal damage repaired: {d}");
            }
            for d in &snap.dropped {
                eprintln!("flash-sale: --accept-data-loss dropped {d}");
            }
        },
        move |addr| {
            use std::io::Write;
            println!(
                "flash-sale listening on {addr}{with_tls} (driver: {})",
                ringcore_http::runtime::driver_kind()
            );
            let _ = std::io::stdout().flush();
        },
    );
    match result {
        Ok(report) => {
            println!("flash-sale stopped: {report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flash-sale: {e}");
            if flash_sale::journal::Corruption::of(&e).is_some() {
                eprintln!(
                    "flash-sale: to start anyway, run `flash-sale repair --data-dir {}` (it cuts \
                     the journal at the damage, keeps the cut bytes in a side file and lists every \
                     order it drops), or serve with --accept-data-loss",
                    data_dir.display()
                );
            }
            ExitCode::FAILURE
        }
    }
}

fn repair(dir: PathBuf) -> ExitCode {
    if !dir.is_dir() {
        eprintln!("flash-sale: repair: {} is not a directory", dir.display());
        return ExitCode::FAILURE;
    }
    // A running server on this dir would keep appending at offsets the repair moves.
    let _lock = match flash_sale::datadir::lock(&dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("flash-sale: repair: {e}");
            return ExitCode::FAILURE;
        }
    };
    match service::replay::repair_dir(&dir) {
        Ok(r) => {
            for c in &r.cuts {
                println!("flash-sale repair: cut {c}");
            }
            for d in &r.dropped {
                println!("flash-sale repair: dropped {d}");
            }
            let orders = r
                .dropped
                .iter()
                .filter(|d| matches!(d.record, Some(service::replay::Record::Order { .. })))
                .count();
            if r.dropped.is_empty() {
                println!(
                    "flash-sale repair: no acknowledged record dropped ({} journal(s) cut)",
                    r.cuts.len()
                );
            } else {
                println!(
                    "flash-sale repair: dropped {} record(s), {orders} of them readable orders: their units \
                     are for sale again and their users may buy again; the cut bytes are in the side files",
                    r.dropped.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flash-sale: repair: {e}");
            ExitCode::FAILURE
        }
    }
}
