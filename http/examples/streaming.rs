//! Streaming both ways, with back-pressure.
//!
//! - `POST /upload`: the body is a [`BodyStream`]; the handler runs as soon as the head is
//!   in and reads the body chunk by chunk as it arrives (the server holds one chunk at a
//!   time, however large the upload), answering its size, line count and a checksum.
//! - `GET /numbers/{n}`: a response body made by a task through [`Body::channel`]; each
//!   `feed(..).await` waits while the client is slow to read, so the task never runs ahead
//!   of the socket by more than the channel's capacity.
//!
//! `cargo run -p ringcore-http --example streaming -- --addr 127.0.0.1:8080`, then
//! `curl -T big.file http://127.0.0.1:8080/upload` and
//! `curl http://127.0.0.1:8080/numbers/100000 | tail -1`.

use std::process::ExitCode;

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_http::runtime::spawn_local;
use ringcore_http::{get, post, Body, BodyError, BodyStream, Limits, Path, Router, Server};

/// Reads the upload as it arrives. `?` on a chunk answers the error's problem response (413
/// past the body limit, 408 for a client too slow, 400 for broken framing).
async fn upload(mut body: BodyStream) -> Result<String, BodyError> {
    let (mut bytes, mut lines, mut sum) = (0usize, 0usize, 0u32);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        bytes += chunk.len();
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
        sum = chunk.iter().fold(sum, |s, &b| s.wrapping_add(u32::from(b)));
    }
    Ok(format!("bytes={bytes} lines={lines} sum={sum}\n"))
}

/// Streams the numbers 1..=n, one per line, produced by a task that waits for the client.
async fn numbers(Path(n): Path<u64>) -> Body {
    let (tx, body) = Body::channel();
    spawn_local(async move {
        let mut line = String::new();
        for i in 1..=n {
            line.push_str(&format!("{i}\n"));
            // Send in batches of about 4 KiB; `feed` fails once the client has gone.
            if line.len() >= 4096 && tx.feed(std::mem::take(&mut line)).await.is_err() {
                return;
            }
        }
        if !line.is_empty() {
            let _ = tx.feed(line).await;
        }
        // Dropping `tx` ends the body.
    })
    .detach();
    body
}

#[derive(Debug, Parser)]
#[command(name = "streaming", version)]
struct Args {
    /// Address every core listens on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Cores to serve on: `all`, `N` or a list such as `0,2-3`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// Largest upload accepted, in MiB (the default limit is 1 MiB).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    max_upload_mib: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut limits = Limits::default();
    limits.max_body_bytes = args.max_upload_mib * 1024 * 1024;
    let result = Server::bind(args.addr)
        .cores(args.cores.to_runtime())
        .limits(limits)
        .on_listening(|a| println!("streaming listening on {a}"))
        .serve(|| {
            Router::new()
                .route("/upload", post(upload))
                .route("/numbers/{n}", get(numbers))
        });
    match result {
        Ok(r) => {
            println!("streaming stopped: {r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("streaming: {e}");
            ExitCode::FAILURE
        }
    }
}
