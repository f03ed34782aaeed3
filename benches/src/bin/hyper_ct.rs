//! `hyper_ct`: `GET /plaintext` on hyper 1's HTTP/1 server over tokio's current-thread
//! runtime, one runtime per listed core, each thread pinned there with its own
//! `SO_REUSEPORT` listener: hyper as a tokio user runs it per core (the `!Send`-friendly way,
//! a `LocalSet` of connection tasks), the baseline the epoll-driver issue compares ringcore
//! against.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin hyper_ct -- --addr
//! 127.0.0.1:8080 --cores 1`
//!
//! `GET /plaintext` answers `Hello, World!` (`text/plain; charset=utf-8`, hyper adds `Date`);
//! any other path answers 404. `--cores` (the one grammar of every binary) picks the cores,
//! one thread each. `TCP_NODELAY` on every accepted connection. Prints
//! `listening on ADDR`; SIGINT/SIGTERM stop it with exit status 0.

use std::convert::Infallible;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ringcore_benches::{parse_server_args, serve_tokio_local};

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
    let args = match parse_server_args("hyper_ct") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    serve_tokio_local("hyper_ct", args.addr, &args.cores, |stream| async move {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service_fn(answer))
            .await;
    })
}
