//! `monoio_hello`: `GET /plaintext` and `GET /json` on monoio 0.2 (ByteDance's thread-per-core
//! io_uring runtime), one runtime per core, requests parsed with `httparse`: the same fixed
//! answers as `glommio_hello`, as a peer for docs/bench-peers.md.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin monoio_hello -- --addr
//! 127.0.0.1:8080 --cores 0,`
//!
//! One thread per listed core, pinned, each with its own `IoUringDriver` runtime and its own
//! `SO_REUSEPORT` listener (bound up front, so port 0 picks one port for all of them). Each
//! connection reads into its own 4 KiB buffer, handed to the kernel and back by value
//! (monoio's owned-buffer reads; the unparsed tail of a split request stays in front), and answers every complete request head in it with
//! [`answer_parsed`] (pipelining allowed: all answers to one read go out in one write).
//! No `Date` header, like `glommio_hello` and `naive_uring`.
//!
//! Prints `listening on ADDR`. SIGINT/SIGTERM (blocked in every thread, awaited by the main
//! thread) print `monoio_hello stopped: N requests` and exit 0 without draining the runtimes.

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio::{IoUringDriver, RuntimeBuilder};
use ringcore_benches::{
    answer_parsed, bind_listeners, block_signals, parse_server_args, pin_to, wait_for_stop, wait_started,
};

/// Per-connection receive buffer.
const BUF: usize = 4096;
/// Submission queue entries of each runtime's ring (as ringcore's default).
const RING_ENTRIES: u32 = 1024;

/// Requests answered, over all runtimes.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

async fn serve_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(BUF);
    let mut out: Vec<u8> = Vec::with_capacity(BUF);
    loop {
        if buf.len() == buf.capacity() {
            return; // a request head longer than the buffer
        }
        // A `Vec` read fills from index 0; the slice after `buf.len()` keeps the unparsed rest
        // of a split request and appends after it (its length becomes `len + n`).
        let filled = buf.len();
        let (res, b) = stream.read(buf.slice_mut(filled..)).await;
        buf = b.into_inner();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        out.clear();
        let Ok((n, used)) = answer_parsed(&buf, &mut out) else {
            return;
        };
        buf.drain(..used);
        if n > 0 {
            REQUESTS.fetch_add(n, Ordering::Relaxed);
            let (res, o) = stream.write_all(out).await;
            out = o;
            if res.is_err() {
                return;
            }
        }
    }
}

async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                monoio::spawn(serve_conn(stream));
            }
            // Out of fds, a connection reset before accept...: keep serving.
            Err(_) => monoio::time::sleep(std::time::Duration::from_millis(1)).await,
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_server_args("monoio_hello") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let signals = block_signals();
    let Some((addr, listeners)) = bind_listeners("monoio_hello", args.addr, args.cores.len()) else {
        return ExitCode::FAILURE;
    };
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    for (listener, &core) in listeners.into_iter().zip(&args.cores) {
        let ready = ready_tx.clone();
        let spawned = thread::Builder::new()
            .name(format!("monoio-{core}"))
            .spawn(move || {
                if !pin_to(core) {
                    let _ = ready.send(Err(format!("cannot pin a thread to core {core}")));
                    return;
                }
                let rt = RuntimeBuilder::<IoUringDriver>::new()
                    .with_entries(RING_ENTRIES)
                    .enable_timer()
                    .build();
                let mut rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(format!("runtime on core {core}: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready.send(Err(format!("listener on core {core}: {e}")));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    serve(listener).await;
                });
            });
        if let Err(e) = spawned {
            eprintln!("monoio_hello: cannot start a thread: {e}");
            return ExitCode::FAILURE;
        }
    }
    drop(ready_tx);
    if !wait_started("monoio_hello", &ready_rx, args.cores.len()) {
        return ExitCode::FAILURE;
    }
    println!("listening on {addr}");
    let _ = io::Write::flush(&mut io::stdout());
    if let Err(rc) = wait_for_stop(&signals) {
        eprintln!("monoio_hello: sigwait failed: {rc}");
        return ExitCode::FAILURE;
    }
    println!(
        "monoio_hello stopped: {} requests",
        REQUESTS.load(Ordering::Relaxed)
    );
    let _ = io::Write::flush(&mut io::stdout());
    // The runtimes serve forever; leave without joining them.
    std::process::exit(0)
}
