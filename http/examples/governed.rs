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

use clap::Parser;
use hdrhistogram::Histogram;
use ringcore_cli::CoreSpec;
use ringcore_http::middleware::LoadShed;
use ringcore_http::runtime::{n_shards, submit_to};
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

/// A CPU-bound route behind load shedding, for the governance benchmark.
#[derive(Debug, Parser)]
#[command(name = "governed", version)]
struct Args {
    /// Address every core listens on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` (the first N of this process's CPU set) or a list such
    /// as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// Microseconds of CPU each `/work` request spins.
    #[arg(long, default_value_t = 200, value_name = "US")]
    work_us: u64,
    /// `LoadShed`'s queueing-time target.
    #[arg(long, default_value_t = 5, value_name = "MS")]
    target_ms: u64,
    /// No load shedding.
    #[arg(long)]
    no_shed: bool,
}

fn main() -> ExitCode {
    let Args {
        addr,
        cores,
        work_us,
        target_ms,
        no_shed,
    } = Args::parse();
    let (cores, shed) = (cores.to_runtime(), !no_shed);
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
