//! `flash-sale serve | repair | demo`: the reference service on ringcore.
//!
//! ```text
//! flash-sale serve  --addr HOST:PORT --cores N --data-dir DIR [--store redis://HOST:PORT]
//!                   [--admin-token T] [--prefix P] [--user-rate R] [--global-rate R]
//!                   [--accept-data-loss] [--share-addr] [--shed-grace MS]
//!                   [--redis-timeout MS] [--allow-redis-data-loss]
//! flash-sale repair --data-dir DIR
//! flash-sale demo   [--cores N] [--items K] [--stock S] [--users U] [--rate R] ...
//! ```

use std::process::ExitCode;

use flash_sale::service::{self, Config};
use ringcore_http::runtime::Cores;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage:
  flash-sale serve  --addr HOST:PORT [--cores N | --cores 0,2,5] --data-dir DIR
                    [--store redis://HOST:PORT] [--prefix P] [--admin-token T]
                    [--user-rate BUYS_PER_SEC] [--global-rate BUYS_PER_SEC]
                    [--accept-data-loss] [--share-addr] [--shed-grace MS]
                    [--redis-timeout MS] [--allow-redis-data-loss]
  flash-sale repair --data-dir DIR
  flash-sale demo   [options]   (flash-sale demo --help)

  --share-addr             serve HOST:PORT even if another process already serves it (both
                           take connections via SO_REUSEPORT): for a zero-downtime restart,
                           start the new instance, then stop the old one. Without it, a
                           served address is refused at start
  --shed-grace MS          how long a core may stay saturated before buys are shed with
                           503 + Retry-After (default 30): a shorter burst is queued and
                           served, a standing overload is shed so admitted buys stay fast
  --redis-timeout MS       deadline of every Redis operation (default 1000); past it the
                           request answers 503 + Retry-After (a buy is then in doubt: its
                           retry answers already_bought if it went through)
  --allow-redis-data-loss  start even if Redis can lose acknowledged orders (anything but
                           appendonly yes + appendfsync always) or refuses CONFIG GET

serve refuses to start on a journal whose damage is followed by valid records (acknowledged
orders were corrupted). repair cuts each such journal at the damage (the cut bytes are kept in
journal-<core>.log.cut-<offset>) and prints every order it drops; --accept-data-loss does the
same at start (the list goes to stderr) and then serves. A dropped order's unit is for sale
again and its user may buy again: contact the users listed.";

/// Warnings, and the runtime's start-up facts (the driver and why, when io_uring is
/// unavailable). `RUST_LOG` replaces it.
const DEFAULT_LOG: &str = "warn,ringcore_runtime=info";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("repair") => repair(&args[1..]),
        Some("demo") => flash_sale::demo::main(&args[1..]),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn parse_serve(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config::new("127.0.0.1:8080", "");
    let mut data_dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--addr" => cfg.addr = value()?,
            "--cores" => cfg.cores = value()?.parse::<Cores>().map_err(|e| format!("--cores: {e}"))?,
            "--data-dir" => data_dir = Some(value()?),
            "--store" => {
                let url = value()?;
                flash_sale::redis::parse_url(&url).map_err(|e| format!("--store: {e}"))?;
                cfg.store = Some(url);
            }
            "--prefix" => cfg.prefix = value()?,
            "--admin-token" => cfg.admin_token = Some(value()?),
            "--user-rate" => cfg.user_rate = rate(&value()?)?,
            "--global-rate" => cfg.global_rate = rate(&value()?)?,
            "--share-addr" => cfg.share_addr = true,
            "--shed-grace" => {
                let v = value()?;
                cfg.shed_grace = match v.parse::<u64>() {
                    Ok(ms) if (10..=600_000).contains(&ms) => std::time::Duration::from_millis(ms),
                    _ => {
                        return Err(format!(
                            "--shed-grace: not a number of milliseconds in 10..=600000: {v:?}"
                        ))
                    }
                };
            }
            "--redis-timeout" => {
                let v = value()?;
                cfg.redis_timeout = match v.parse::<u64>() {
                    Ok(ms) if (1..=3_600_000).contains(&ms) => std::time::Duration::from_millis(ms),
                    _ => {
                        return Err(format!(
                            "--redis-timeout: not a number of milliseconds in 1..=3600000: {v:?}"
                        ))
                    }
                };
            }
            "--allow-redis-data-loss" => cfg.allow_redis_data_loss = true,
            "--accept-data-loss" => cfg.accept_data_loss = true,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    match data_dir {
        Some(d) => cfg.data_dir = d.into(),
        None if cfg.store.is_some() => cfg.data_dir = std::env::temp_dir(),
        None => return Err("--data-dir is required with the embedded store".into()),
    }
    Ok(cfg)
}

fn rate(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if r >= 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("not a rate: {v:?}")),
    }
}

fn serve(args: &[String]) -> ExitCode {
    let cfg = match parse_serve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flash-sale: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let embedded = cfg.store.is_none();
    let data_dir = cfg.data_dir.clone();
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
        |addr| {
            use std::io::Write;
            println!(
                "flash-sale listening on {addr} (driver: {})",
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

fn repair(args: &[String]) -> ExitCode {
    let dir = match args {
        [flag, dir] if flag == "--data-dir" => std::path::PathBuf::from(dir),
        _ => {
            eprintln!("flash-sale: repair takes --data-dir DIR\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
