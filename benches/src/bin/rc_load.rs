//! Closed-loop load client on ringcore itself, for multi-core scaling runs where `wrk` is not
//! installed. Each client shard opens `--conns` connections; each connection keeps `--depth`
//! requests in flight (pipelined), for `--duration` seconds.
//!
//! Run with: `rc_load --addr 127.0.0.1:8080 --cores 8,9 --conns 32 --duration 5 --mode http`
//!
//! `--mode http` sends `GET /plaintext HTTP/1.1` and expects responses of `--resp-len` bytes
//! each (default 78, the fixed answer of the benchmark servers; `hello` answers 148);
//! `--mode echo` sends `--size` bytes and expects them back. Prints one JSON line: requests,
//! seconds, requests/s, errors.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringcore_runtime::net::TcpStream;
use ringcore_runtime::time::timeout;
use ringcore_runtime::{spawn_local, Cores, Runtime};

const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n";
const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

#[derive(Clone)]
struct Args {
    addr: String,
    cores: Cores,
    conns: usize,
    depth: usize,
    duration: Duration,
    http: bool,
    size: usize,
    resp_len: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:8080".into(),
        cores: Cores::Count(1),
        conns: 32,
        depth: 1,
        duration: Duration::from_secs(5),
        http: true,
        size: 64,
        resp_len: RESPONSE.len(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--addr" => a.addr = v()?,
            "--cores" => {
                let s = v()?;
                a.cores = if s.contains(',') {
                    Cores::List(
                        s.split(',')
                            .map(|x| x.parse().map_err(|e| format!("{x}: {e}")))
                            .collect::<Result<_, _>>()?,
                    )
                } else {
                    Cores::Count(s.parse().map_err(|e| format!("{s}: {e}"))?)
                }
            }
            "--conns" => a.conns = v()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--depth" => a.depth = v()?.parse::<usize>().map_err(|e| format!("--depth: {e}"))?.max(1),
            "--duration" => {
                a.duration = Duration::from_secs_f64(v()?.parse().map_err(|e| format!("--duration: {e}"))?)
            }
            "--mode" => a.http = v()? == "http",
            "--size" => a.size = v()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--resp-len" => a.resp_len = v()?.parse().map_err(|e| format!("--resp-len: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
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
    let (one_req, one_resp): (Vec<u8>, usize) = if args.http {
        (REQUEST.to_vec(), args.resp_len)
    } else {
        (vec![b'x'; args.size], args.size)
    };
    let batch: Vec<u8> = one_req.repeat(args.depth);
    let batch: Rc<[u8]> = batch.into();
    let want = one_resp * args.depth;
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
        done.set(done.get() + args.depth as u64);
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("rc_load: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match Runtime::builder()
        .cores(args.cores.clone())
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
