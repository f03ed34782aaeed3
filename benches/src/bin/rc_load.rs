//! Closed-loop load client on ringcore itself, for multi-core scaling runs where `wrk` is not
//! installed. Each client shard opens `--conns` connections; each connection keeps `--depth`
//! requests in flight (pipelined), for `--duration` seconds.
//!
//! Run with: `rc_load --addr 127.0.0.1:8080 --cores 8-9 --conns 32 --duration 5 --mode http`
//!
//! `--mode http` sends `GET /plaintext HTTP/1.1` and expects responses of `--resp-len` bytes
//! each (default 78, the fixed answer of the benchmark servers; `hello` answers 148);
//! `--mode echo` sends `--size` bytes and expects them back. Prints one JSON line: requests,
//! seconds, requests/s, errors.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use ringcore_cli::CoreSpec;
use ringcore_runtime::net::TcpStream;
use ringcore_runtime::time::timeout;
use ringcore_runtime::{spawn_local, Runtime};

const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

/// Closed-loop load client on ringcore, for multi-core scaling runs.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rc_load", version)]
struct Args {
    /// Server to load.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    addr: String,
    /// Client cores: `all`, `N` (the first N of this process's CPU set) or a list such as
    /// `8-9`.
    #[arg(long, default_value = "1", value_name = "all|N|LIST")]
    cores: CoreSpec,
    /// Connections per client core.
    #[arg(long, default_value_t = 32)]
    conns: usize,
    /// Requests in flight per connection (pipelined).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    depth: u32,
    /// Seconds to run.
    #[arg(long, default_value = "5", value_name = "SECS", value_parser = ringcore_cli::secs)]
    duration: Duration,
    /// `http` (GET /plaintext) or `echo` (--size bytes, expected back).
    #[arg(long, default_value = "http", value_parser = ["http", "echo"])]
    mode: String,
    /// Echo mode: bytes per request.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// HTTP mode: bytes of each response (78: the benchmark servers' fixed answer).
    #[arg(long, default_value_t = RESPONSE.len())]
    resp_len: usize,
}

async fn connection(args: Rc<Args>, deadline: Instant, done: Rc<Cell<u64>>, errors: Rc<Cell<u64>>) {
    let stream = match TcpStream::connect(args.addr.as_str()).await {
        Ok(s) => s,
        Err(_) => {
            errors.set(errors.get() + 1);
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (one_req, one_resp): (Vec<u8>, usize) = if args.mode == "http" {
        (REQUEST.to_vec(), args.resp_len)
    } else {
        (vec![b'x'; args.size], args.size)
    };
    let batch: Vec<u8> = one_req.repeat(args.depth as usize);
    let batch: Rc<[u8]> = batch.into();
    let want = one_resp * args.depth as usize;
    while Instant::now() < deadline {
        let (res, _) = stream.write_all(batch.clone()).await;
        if res.is_err() {
            errors.set(errors.get() + 1);
            return;
        }
        let mut got = 0;
        while got < want {
            match timeout(Duration::from_secs(5), stream.recv()).await {
                Ok(Ok(chunk)) if !chunk.is_empty() => got += chunk.len(),
                _ => {
                    errors.set(errors.get() + 1);
                    return;
                }
            }
        }
        done.set(done.get() + u64::from(args.depth));
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match Runtime::builder()
        .cores(args.cores.to_runtime())
        .handle_signals(true)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rc_load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let a2 = args.clone();
    let out = rt.run(move || {
        let args = Rc::new(a2.clone());
        async move {
            let deadline = Instant::now() + args.duration;
            let done = Rc::new(Cell::new(0u64));
            let errors = Rc::new(Cell::new(0u64));
            let tasks: Vec<_> = (0..args.conns)
                .map(|_| spawn_local(connection(args.clone(), deadline, done.clone(), errors.clone())))
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            (done.get(), errors.get())
        }
    });
    let secs = started.elapsed().as_secs_f64();
    match out {
        Ok(v) => {
            let (reqs, errs) = v.iter().flatten().fold((0, 0), |(r, e), (a, b)| (r + a, e + b));
            println!(
                "{{\"requests\":{reqs},\"seconds\":{secs:.3},\"rps\":{:.0},\"errors\":{errs}}}",
                reqs as f64 / args.duration.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rc_load: {e}");
            ExitCode::FAILURE
        }
    }
}
