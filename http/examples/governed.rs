//! A server for the overload benchmark (`scripts/bench-governance.sh`): `GET /work` burns
//! `--work-us` microseconds of CPU per request, behind `LoadShed` unless `--no-shed`.
//!
//! `GET /admitted` answers the latency of the requests `/work` admitted and served since the
//! last call (arrival on the core → response ready, all cores merged) as JSON, and resets it:
//! `{"count":N,"p50_us":..,"p99_us":..,"p999_us":..,"max_us":..}`. `GET /metrics` is the
//! usual Prometheus page (200 and 503 counts per route).
//!
//! `cargo run --release -p ringcore-http --example governed -- --addr 127.0.0.1:8080 --work-us 200`

use std::cell::RefCell;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringcore_http::middleware::LoadShed;
use ringcore_http::runtime::{n_shards, submit_to, Cores};
use ringcore_http::{get, Request, Router, Server};

ringcore_http::runtime::core_local! {
    static ADMITTED: RefCell<Option<Histogram<u64>>> = RefCell::new(None);
}

fn record(us: u64) {
    ADMITTED.with(|h| {
        let mut h = h.borrow_mut();
        let h = h.get_or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"));
        let _ = h.record(us.clamp(1, 60_000_000));
    });
}

fn take_local() -> Option<Histogram<u64>> {
    ADMITTED.with(|h| h.borrow_mut().take())
}

async fn admitted() -> String {
    let mut all: Option<Histogram<u64>> = None;
    for core in 0..n_shards() {
        if let Ok(Some(h)) = submit_to(core, take_local).await {
            match &mut all {
                Some(a) => {
                    let _ = a.add(&h);
                }
                None => all = Some(h),
            }
        }
    }
    match all {
        Some(h) => format!(
            "{{\"count\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        ),
        None => "{\"count\":0}".to_string(),
    }
}

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:8080".to_string();
    let mut cores = Cores::Count(1);
    let mut work_us = 200u64;
    let mut shed = true;
    let mut target_ms = 5u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let ok = match a.as_str() {
            "--no-shed" => {
                shed = false;
                true
            }
            "--addr" => args.next().map(|v| addr = v).is_some(),
            "--cores" => args
                .next()
                .and_then(|v| v.parse().ok())
                .map(|c| cores = c)
                .is_some(),
            "--work-us" => args
                .next()
                .and_then(|v| v.parse().ok())
                .map(|w| work_us = w)
                .is_some(),
            "--target-ms" => args
                .next()
                .and_then(|v| v.parse().ok())
                .map(|t| target_ms = t)
                .is_some(),
            _ => false,
        };
        if !ok {
            eprintln!(
                "usage: governed [--addr HOST:PORT] [--cores N] [--work-us US] [--target-ms MS] [--no-shed] (at {a:?})"
            );
            return ExitCode::from(2);
        }
    }
    let result = Server::bind(addr)
        .cores(cores)
        .on_listening(|a| println!("governed listening on {a}"))
        .serve(move || {
            let work = get(move |req: Request| async move {
                let until = Instant::now() + Duration::from_micros(work_us);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                if let Some(t) = req.received_at() {
                    record(t.elapsed().as_micros() as u64);
                }
                "done"
            });
            let work = if shed {
                work.layer(LoadShed::new().target(Duration::from_millis(target_ms)))
            } else {
                work
            };
            Router::new()
                .route("/work", work)
                .route("/admitted", get(admitted))
                .route("/metrics", get(ringcore_http::metrics::prometheus))
        });
    match result {
        Ok(r) => {
            println!("governed stopped: {r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("governed: {e}");
            ExitCode::FAILURE
        }
    }
}
