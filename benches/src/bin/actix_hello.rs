//! `actix_hello`: `GET /plaintext` on actix-web 4 (default features off: no compression, no
//! cookies, no macros), one worker per listed core, as a peer for docs/bench-peers.md.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin actix_hello -- --addr
//! 127.0.0.1:8080 --cores 0,`
//!
//! `--cores` sets the workers (`HttpServer::workers`, one per listed core; `1` for the peer
//! benchmark); actix starts its own worker threads, so the process is restricted to the listed
//! cores before it starts (the threads inherit that) instead of pinning each worker. The
//! listener is bound by this binary (`SO_REUSEPORT`, backlog 1024, as the other baselines) and
//! handed to actix. `GET /plaintext` answers `Hello, World!` with `Content-Type: text/plain`;
//! actix adds its cached `Date` header and `Content-Length`. Prints `listening on ADDR`;
//! SIGINT/SIGTERM stop it (actix's own signal handling, at most 1 s of graceful shutdown),
//! then it prints `actix_hello stopped` and exits 0.

use std::io;
use std::process::ExitCode;

use actix_web::{web, App, HttpResponse, HttpServer};
use ringcore_benches::{bind_listeners, parse_server_args, restrict_to};

async fn plaintext() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("Hello, World!")
}

fn main() -> ExitCode {
    let args = match parse_server_args("actix_hello") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !restrict_to(&args.cores) {
        eprintln!(
            "actix_hello: cannot restrict the process to cores {:?}",
            args.cores
        );
        return ExitCode::FAILURE;
    }
    let Some((addr, mut listeners)) = bind_listeners("actix_hello", args.addr, 1) else {
        return ExitCode::FAILURE;
    };
    let Some(listener) = listeners.pop() else {
        return ExitCode::FAILURE;
    };
    let workers = args.cores.len();
    let run = actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| App::new().route("/plaintext", web::get().to(plaintext)))
            .workers(workers)
            .shutdown_timeout(1)
            .listen(listener)?
            .run();
        println!("listening on {addr}");
        let _ = io::Write::flush(&mut io::stdout());
        server.await
    });
    if let Err(e) = run {
        eprintln!("actix_hello: {e}");
        return ExitCode::FAILURE;
    }
    println!("actix_hello stopped");
    ExitCode::SUCCESS
}
