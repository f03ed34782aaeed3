//! `GET /plaintext`, `GET /json` (the TechEmpower shapes) and `/echo` (any method: the request
//! body back with its Content-Type), on every core. `GET /governed` is `/plaintext` behind the
//! governance a production route carries (load shedding, a concurrency limit, a timeout, a
//! logging `from_fn` layer), to measure what those layers cost a request
//! (`scripts/callgrind-http.sh --path /governed`).
//!
//! `GET /metrics` serves every core's metrics in the Prometheus text format. Logs go to
//! stderr through `tracing` (`RUST_LOG=info` for start-up details, `RUST_LOG=
//! ringcore_http::access=info` adds the access log).
//!
//! Run with: `cargo run --release -p hello -- --addr 127.0.0.1:8080 --cores 2`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_http::header::CONTENT_TYPE;
use ringcore_http::middleware::{self, ConcurrencyLimit, LoadShed, Next, Timeout};
use ringcore_http::{any, get, HeaderValue, Json, Request, Response, Router, Server, TlsConfig};
use serde::Serialize;
use tracing_subscriber::EnvFilter;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

async fn plaintext() -> &'static str {
    "Hello, World!"
}

async fn json() -> Json<Message> {
    Json(Message {
        message: "Hello, World!",
    })
}

async fn echo(req: Request) -> Response {
    let ctype = req
        .header(CONTENT_TYPE.as_str())
        .and_then(|v| HeaderValue::from_bytes(v).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let body = req.into_body();
    Response::with_body(ringcore_http::Body::Full(body)).header(CONTENT_TYPE, ctype)
}

/// A pass-through `from_fn` layer: logs a server error at `debug` (what a service's own
/// middleware typically looks like).
async fn log_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if resp.status_code().is_server_error() {
        tracing::debug!(status = %resp.status_code(), "server error");
    }
    resp
}

/// `GET /plaintext`, `/json`, `/governed`, `/echo` and `/metrics` on every core.
#[derive(Debug, Parser)]
#[command(name = "hello", version)]
struct Args {
    /// Address every core listens on (SO_REUSEPORT); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` (the first N of this process's CPU set) or a list of
    /// ids such as `0,2-3`.
    #[arg(long, default_value = "all", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs `--tls-key`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of `--tls-cert`.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn router() -> Router {
    Router::new()
        .route("/plaintext", get(plaintext))
        .route("/json", get(json))
        .route(
            "/governed",
            get(plaintext)
                .layer(middleware::from_fn(log_errors))
                .layer(Timeout::new(Duration::from_secs(5)))
                .layer(ConcurrencyLimit::new(1024))
                // A wait of 1 s before shedding, not 5 ms: the route measures what the layers
                // cost an admitted request, and under valgrind a core is slow enough to shed.
                .layer(LoadShed::new().target(Duration::from_secs(1))),
        )
        .route("/echo", any(echo))
        .route("/metrics", get(ringcore_http::metrics::prometheus))
        .access_log(tracing::enabled!(target: "ringcore_http::access", tracing::Level::INFO))
}

/// Warnings, and the runtime's start-up facts (the driver and why, when io_uring is
/// unavailable). `RUST_LOG` replaces it.
const DEFAULT_LOG: &str = "warn,ringcore_runtime=info";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG)))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut server = Server::bind(args.addr).cores(args.cores.to_runtime());
    let scheme = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match TlsConfig::from_pem_files(cert, key) {
            Ok(tls) => {
                server = server.tls(tls);
                " with TLS"
            }
            Err(e) => {
                eprintln!("hello: TLS: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => "",
    };
    let result = server
        .on_listening(move |a| {
            println!(
                "hello listening on {a}{scheme} (driver: {})",
                ringcore_http::runtime::driver_kind()
            )
        })
        .serve(router);
    match result {
        Ok(report) => {
            println!("hello stopped: {report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hello: {e}");
            ExitCode::FAILURE
        }
    }
}
