//! `axum_hello`: the TechEmpower shapes on axum 0.8 over tokio's multi-thread runtime, the
//! set-up most tokio users pick (`#[tokio::main]` + `axum::serve`).
//!
//! Run with: `cargo run --release -p ringcore-benches --bin axum_hello -- --addr
//! 127.0.0.1:8080 --cores 1`
//!
//! `GET /plaintext` answers `Hello, World!` (axum's `&'static str`: `text/plain;
//! charset=utf-8`), `GET /json` answers `{"message":"Hello, World!"}`. `--cores` (`N`: the first N
//! cores of this process's affinity mask, `all`, or a list such as `0,2-3`) sets the
//! worker threads (one per core, each pinned to its core in turn); axum's default features,
//! `TCP_NODELAY` on every accepted connection. Prints `listening on ADDR`; SIGINT/SIGTERM stop
//! it with exit status 0 (open connections are dropped with the runtime).

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use ringcore_benches::{parse_server_args, pin_to};
use serde::Serialize;

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

fn router() -> Router {
    Router::new()
        .route("/plaintext", get(plaintext))
        .route("/json", get(json))
}

/// Serves until SIGINT or SIGTERM; `Err` is the message to print.
async fn run(addr: std::net::SocketAddr) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("signal: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("signal: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("local address: {e}"))?;
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    println!("listening on {local}");
    tokio::select! {
        served = axum::serve(listener, router()) => served.map_err(|e| format!("serve: {e}")),
        _ = term.recv() => Ok(()),
        _ = int.recv() => Ok(()),
    }
}

fn main() -> ExitCode {
    let args = match parse_server_args("axum_hello") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cores = Arc::new(args.cores);
    let next = Arc::new(AtomicUsize::new(0));
    let pin_cores = Arc::clone(&cores);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.len())
        .enable_all()
        .on_thread_start(move || {
            // Workers (and any blocking-pool thread) take the listed cores in turn.
            let i = next.fetch_add(1, Ordering::Relaxed);
            let _ = pin_to(pin_cores[i % pin_cores.len()]);
        })
        .build();
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("axum_hello: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(run(args.addr));
    // Dropping the runtime cancels the connection tasks and closes their sockets; don't wait
    // on a keep-alive client that never hangs up.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("axum_hello: {e}");
            ExitCode::FAILURE
        }
    }
}
