//! `may_hello`: `GET /plaintext` on may_minihttp 0.1 (its own HTTP/1 server on the `may`
//! stackful-coroutine runtime, one of the fastest in TechEmpower's plaintext test), as a peer for
//! docs/bench-peers.md. (Named `may_hello`, not `may_minihttp`: a binary with its dependency's
//! name would shadow the crate.)
//!
//! Run with: `cargo run --release -p ringcore-benches --bin may_hello -- --addr
//! 127.0.0.1:8080 --cores 0,`
//!
//! `--cores` sets may's worker threads (one per listed core); the process is restricted to
//! those cores before may starts, and may pins its workers to them in turn. Every request gets
//! `Hello, World!` with `Content-Type: text/plain`; may_minihttp always adds its own
//! `Server: M` and a cached `Date` header and answers `200 Ok`, and it parses pipelined requests
//! and answers them in one write. It does not set `TCP_NODELAY` (its source has the line
//! commented out); with one write per batch of answers that makes no difference to a
//! request/response client.
//!
//! may_minihttp binds its own listener (no `SO_REUSEPORT`, no way to read a port it picked):
//! with port 0 this binary asks the kernel for a free port first and hands that to may.
//! Prints `listening on ADDR`; SIGINT/SIGTERM print `may_hello stopped` and exit 0.

use std::io;
use std::process::ExitCode;

use may_minihttp::{HttpServer, HttpService, Request, Response};
use ringcore_benches::{block_signals, parse_server_args, restrict_to, wait_for_stop};

#[derive(Clone)]
struct Hello;

impl HttpService for Hello {
    fn call(&mut self, _req: Request, rsp: &mut Response) -> io::Result<()> {
        rsp.header("Content-Type: text/plain");
        rsp.body("Hello, World!");
        Ok(())
    }
}

fn main() -> ExitCode {
    let args = match parse_server_args("may_hello") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let signals = block_signals();
    if !restrict_to(&args.cores) {
        eprintln!("may_hello: cannot restrict the process to cores {:?}", args.cores);
        return ExitCode::FAILURE;
    }
    let mut addr = args.addr;
    if addr.port() == 0 {
        match std::net::TcpListener::bind(addr).and_then(|l| l.local_addr()) {
            Ok(a) => addr = a,
            Err(e) => {
                eprintln!("may_hello: cannot find a free port on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    may::config().set_workers(args.cores.len());
    may::config().set_worker_pin(true);
    let server = match HttpServer(Hello).start(addr) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("may_hello: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {addr}");
    let _ = io::Write::flush(&mut io::stdout());
    if let Err(rc) = wait_for_stop(&signals) {
        eprintln!("may_hello: sigwait failed: {rc}");
        return ExitCode::FAILURE;
    }
    println!("may_hello stopped");
    let _ = io::Write::flush(&mut io::stdout());
    // The server coroutine accepts forever; leave without joining it.
    drop(server);
    std::process::exit(0)
}
