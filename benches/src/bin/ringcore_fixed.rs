//! `ringcore_fixed`: the fixed-response HTTP/1.1 server on ringcore-runtime.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin ringcore_fixed -- --addr
//! 127.0.0.1:8080 --cores 0,`
//!
//! One shard per listed core, each with its own `SO_REUSEPORT` listener (multishot accept) and
//! one task per connection that takes chunks from the multishot receive on the core's provided
//! buffer ring, counts complete requests (the shared `RequestCounter`) and answers them with
//! one `write_all` of a static buffer. The runtime itself turns SIGINT/SIGTERM into a clean
//! stop. With `BENCH_HTTPARSE=1` it parses every head with `httparse` before answering it
//! (`ringcore_benches::Framing`).

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ringcore_benches::{parse_server_args, responses, Framing, RequestCounter, MAX_BATCH};
use ringcore_runtime::net::{TcpListener, TcpStream};
use ringcore_runtime::{request_shutdown, shard_id, spawn_local, Runtime};

async fn serve_conn(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut counter = RequestCounter::with_framing(Framing::from_env());
    loop {
        let fed = match stream.recv().await {
            Ok(chunk) if !chunk.is_empty() => counter.feed(&chunk),
            _ => return, // EOF or error
        };
        // `chunk` is dropped here: its ring buffer is back before we wait on the send.
        let Ok(mut owed) = fed else { return };
        while owed > 0 {
            let k = owed.min(MAX_BATCH);
            owed -= k;
            let (res, _) = stream.write_all(responses(k)).await;
            if res.is_err() {
                return;
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_server_args("ringcore_fixed") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match Runtime::builder().core_list(&args.cores).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringcore_fixed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let n = args.cores.len();
    let addr = args.addr;
    let bound = Arc::new(AtomicUsize::new(0));
    let result = rt.run(move || {
        let bound = bound.clone();
        async move {
            let listener = match TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("ringcore_fixed: shard {}: cannot bind {addr}: {e}", shard_id());
                    request_shutdown();
                    return;
                }
            };
            // The last shard to bind says so (with port 0, each shard has its own port).
            if bound.fetch_add(1, Ordering::AcqRel) + 1 == n {
                let shown = listener.local_addr().unwrap_or(addr);
                println!("listening on {shown}");
            }
            let mut reported = false;
            loop {
                match listener.accept_stream().await {
                    Ok(stream) => spawn_local(serve_conn(stream)).detach(),
                    Err(e) => {
                        if !reported {
                            reported = true;
                            eprintln!("ringcore_fixed: accept: {e}");
                        }
                        // Out of fds and the like: let the connections finish first.
                        ringcore_runtime::yield_now().await;
                    }
                }
            }
        }
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringcore_fixed: {e}");
            ExitCode::FAILURE
        }
    }
}
