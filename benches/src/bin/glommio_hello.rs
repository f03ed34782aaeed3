//! `glommio_hello`: `GET /plaintext` and `GET /json` on glommio 0.9, one `LocalExecutor` per
//! core: the established thread-per-core io_uring runtime, as a baseline for ringcore.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin glommio_hello -- --addr
//! 127.0.0.1:8080 --cores 0,`
//!
//! One executor thread per listed core (`Placement::Fixed`), each with its own `SO_REUSEPORT`
//! listener on the same address (bound up front with `socket2`, so port 0 picks one port for
//! all of them, then handed to glommio with `FromRawFd`). Each connection reads into its own
//! 4 KiB buffer (glommio's non-buffered stream receives into the caller's buffer, so an idle
//! connection keeps it) and parses every complete request head with `httparse`, pipelining
//! allowed: `GET /json` gets `{"message":"Hello, World!"}`, every other request the shared
//! fixed plaintext response (`ringcore_benches::RESPONSE`, as `naive_uring` and `tokio_ct`
//! send), so `idle_conns` can measure it too. All responses to one read go out in one write.
//!
//! Prints `listening on ADDR`. SIGINT/SIGTERM (blocked in every thread, awaited by the main
//! thread with `sigwait`) print `glommio_hello stopped: N requests` and exit 0 without
//! draining the executors. glommio needs `RLIMIT_MEMLOCK` of at least 512 KiB; the executors
//! reserve 1 MiB of DMA memory each (storage I/O only, unused here) instead of the default
//! 10 MiB.

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use ringcore_benches::{
    answer_parsed as answer, bind_listeners, block_signals, parse_server_args, wait_for_stop, wait_started,
};

/// Per-connection receive buffer.
const BUF: usize = 4096;
/// DMA memory each executor reserves (for storage I/O, which this server does not use).
const IO_MEMORY: usize = 1 << 20;

/// Requests answered, over all executors.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

async fn serve_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; BUF];
    let mut filled = 0;
    let mut out = Vec::new();
    loop {
        if filled == buf.len() {
            return; // a request head longer than the buffer
        }
        let got = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(k) => k,
        };
        filled += got;
        out.clear();
        let (n, used) = match answer(&buf[..filled], &mut out) {
            Ok(r) => r,
            Err(_) => return,
        };
        if n > 0 {
            REQUESTS.fetch_add(n, Ordering::Relaxed);
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
    }
}

async fn serve(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(serve_conn(stream)).detach();
            }
            // Out of fds, a connection reset before accept...: keep serving.
            Err(_) => glommio::yield_if_needed().await,
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_server_args("glommio_hello") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let signals = block_signals();
    // Bind every listener up front (port 0 picks one port, then every core shares it).
    let Some((addr, listeners)) = bind_listeners("glommio_hello", args.addr, args.cores.len()) else {
        return ExitCode::FAILURE;
    };
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    for (listener, &core) in listeners.into_iter().zip(&args.cores) {
        let ready = ready_tx.clone();
        let fd = listener.into_raw_fd();
        let spawned = thread::Builder::new()
            .name(format!("glommio-{core}"))
            .spawn(move || {
                let ex = LocalExecutorBuilder::new(Placement::Fixed(core))
                    .name(&format!("glommio-{core}"))
                    .io_memory(IO_MEMORY)
                    .make();
                let ex = match ex {
                    Ok(ex) => ex,
                    Err(e) => {
                        let _ = ready.send(Err(format!("executor on core {core}: {e}")));
                        return;
                    }
                };
                ex.run(async move {
                    // SAFETY: `fd` is a bound, listening TCP socket this thread now owns alone.
                    let listener = unsafe { TcpListener::from_raw_fd(fd) };
                    let _ = ready.send(Ok(()));
                    serve(listener).await;
                });
            });
        if let Err(e) = spawned {
            eprintln!("glommio_hello: cannot start a thread: {e}");
            return ExitCode::FAILURE;
        }
    }
    drop(ready_tx);
    if !wait_started("glommio_hello", &ready_rx, args.cores.len()) {
        return ExitCode::FAILURE;
    }
    println!("listening on {addr}");
    let _ = io::Write::flush(&mut io::stdout());
    if let Err(rc) = wait_for_stop(&signals) {
        eprintln!("glommio_hello: sigwait failed: {rc}");
        return ExitCode::FAILURE;
    }
    println!(
        "glommio_hello stopped: {} requests",
        REQUESTS.load(Ordering::Relaxed)
    );
    let _ = io::Write::flush(&mut io::stdout());
    // The executors run detached tasks forever; leave without joining them.
    std::process::exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcore_benches::{JSON_RESPONSE, RESPONSE};

    #[test]
    fn pipelined_and_partial() {
        let mut out = Vec::new();
        let data = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /json HTTP/1.1\r\n\r\nGET /pl";
        let (n, used) = answer(data, &mut out).unwrap();
        assert_eq!(n, 2);
        assert_eq!(&data[used..], b"GET /pl");
        let mut want = RESPONSE.to_vec();
        want.extend_from_slice(JSON_RESPONSE);
        assert_eq!(out, want);
    }

    #[test]
    fn json_length_matches() {
        let body = b"{\"message\":\"Hello, World!\"}";
        assert_eq!(body.len(), 27);
        assert!(JSON_RESPONSE.ends_with(body));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut out = Vec::new();
        assert!(answer(b"\x01\x02 nonsense\r\n\r\n", &mut out).is_err());
    }
}
