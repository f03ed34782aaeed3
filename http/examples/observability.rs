//! Metrics and tracing: every request gets a `tracing` span (`request`: method, route,
//! status, latency, request id), printed here by `tracing_subscriber`'s fmt layer when the
//! request closes; `GET /metrics` serves every core's metrics merged, in the Prometheus text
//! format (the request latency histogram per route, status counts, connection and runtime
//! counters, and the application's own `Counter` below).
//!
//! `cargo run -p ringcore-http --example observability -- --addr 127.0.0.1:8080`, then
//! `curl -H 'X-Request-Id: abc' http://127.0.0.1:8080/work/3` (the span shows
//! `request_id=abc`; the response carries it back) and `curl http://127.0.0.1:8080/metrics`.
//! `RUST_LOG` picks what is printed (default `info`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_http::metrics::Counter;
use ringcore_http::runtime::time::sleep;
use ringcore_http::{get, Path, Router, Server};
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

/// Sleeps `ms` milliseconds (capped at 1 s), logging inside the request's span.
async fn work(Path(ms): Path<u64>) -> String {
    let ms = ms.min(1000);
    // Found or created by name on this core; `/metrics` sums it over cores.
    Counter::new("example_work_ms_total", "Milliseconds of /work asked for.", &[]).add(ms);
    tracing::info!(ms, "working");
    sleep(Duration::from_millis(ms)).await;
    format!("worked {ms} ms\n")
}

#[derive(Debug, Parser)]
#[command(name = "observability", version)]
struct Args {
    /// Address every core listens on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` or a list such as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        // One line per request when its span closes, with the span's fields.
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(std::io::stderr)
        .init();
    let result = Server::bind(args.addr)
        .cores(args.cores.to_runtime())
        .on_listening(|a| println!("observability listening on {a}"))
        .serve(|| {
            Router::new()
                .route("/work/{ms}", get(work))
                .route("/metrics", get(ringcore_http::metrics::prometheus))
        });
    match result {
        Ok(r) => {
            println!("observability stopped: {r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("observability: {e}");
            ExitCode::FAILURE
        }
    }
}
