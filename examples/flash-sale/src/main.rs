//! `flash-sale serve | demo`: the reference service on ringcore.
//!
//! ```text
//! flash-sale serve --addr HOST:PORT --cores N --data-dir DIR [--store redis://HOST:PORT]
//!                  [--admin-token T] [--prefix P] [--user-rate R] [--global-rate R]
//!                  [--redis-timeout MS] [--allow-redis-data-loss] [--share-addr]
//! flash-sale demo  [--cores N] [--items K] [--stock S] [--users U] [--rate R] ...
//! ```

use std::process::ExitCode;

use flash_sale::service::{self, Config};
use ringcore_http::runtime::Cores;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage:
  flash-sale serve --addr HOST:PORT [--cores N | --cores 0,2,5] --data-dir DIR
                   [--store redis://HOST:PORT] [--prefix P] [--admin-token T]
                   [--user-rate BUYS_PER_SEC] [--global-rate BUYS_PER_SEC]
                   [--redis-timeout MS] [--allow-redis-data-loss] [--share-addr]
  flash-sale demo  [options]   (flash-sale demo --help)

  --share-addr             serve HOST:PORT even if another process already serves it (both
                           take connections via SO_REUSEPORT): for a zero-downtime restart,
                           start the new instance, then stop the old one. Without it, a
                           served address is refused at start
  --redis-timeout MS       deadline of every Redis operation (default 1000); past it the
                           request answers 503 + Retry-After (a buy is then in doubt: its
                           retry answers already_bought if it went through)
  --allow-redis-data-loss  start even if Redis can lose acknowledged orders (anything but
                           appendonly yes + appendfsync always) or refuses CONFIG GET";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
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
    let result = service::serve(
        cfg,
        |snap| {
            if embedded {
                eprintln!(
                    "flash-sale: replayed {} journal records: {} items, {} orders",
                    snap.records,
                    snap.items.len(),
                    snap.orders.len()
                );
            }
            for d in &snap.damage {
                eprintln!("flash-sale: journal damage repaired: {d}");
            }
        },
        |addr| {
            use std::io::Write;
            println!("flash-sale listening on {addr}");
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
            ExitCode::FAILURE
        }
    }
}
