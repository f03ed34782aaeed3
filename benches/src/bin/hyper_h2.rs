//! `hyper_h2`: `GET /plaintext` on hyper 1's HTTP/2 server (cleartext, prior knowledge) over
//! tokio's current-thread runtime, one thread pinned to each listed core, with a `!Send` local
//! executor (`spawn_local` on a `LocalSet`, as ringcore's HTTP/2 path does on its core): the
//! baseline `scripts/bench-h2.sh` compares ringcore-http's HTTP/2 against. `hyper_ct` is the
//! same server on HTTP/1.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin hyper_h2 -- --addr
//! 127.0.0.1:8080 --cores 1`
//!
//! `GET /plaintext` answers `Hello, World!` (`text/plain; charset=utf-8`, hyper adds `Date`);
//! any other path answers 404. hyper's HTTP/2 defaults (200 concurrent streams, 1 MiB
//! windows). `--cores` (the one grammar of every binary) picks the cores, one thread and
//! `SO_REUSEPORT` listener each. `TCP_NODELAY` on every accepted connection. Prints `listening on ADDR`;
//! SIGINT/SIGTERM stop it with exit status 0.

use std::convert::Infallible;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ringcore_benches::{parse_server_args, serve_tokio_local};

/// hyper's executor for its per-stream tasks: `spawn_local` on this thread's `LocalSet`.
#[derive(Clone, Copy, Debug)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: std::future::Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = if req.uri().path() == "/plaintext" {
        Response::new(Full::new(Bytes::from_static(b"Hello, World!")))
    } else {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(resp)
}

fn main() -> ExitCode {
    let args = match parse_server_args("hyper_h2") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    serve_tokio_local("hyper_h2", args.addr, &args.cores, |stream| async move {
        let _ = http2::Builder::new(LocalExec)
            .serve_connection(TokioIo::new(stream), service_fn(answer))
            .await;
    })
}
