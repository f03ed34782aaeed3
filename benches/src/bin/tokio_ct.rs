//! `tokio_ct`: the fixed-response HTTP/1.1 server on tokio, thread-per-core style.
//!
//! Run with: `cargo run --release -p ringcore-benches --bin tokio_ct -- --addr 127.0.0.1:8080
//! --cores 0,`
//!
//! One current-thread tokio runtime per listed core, each thread pinned there, each with its
//! own `SO_REUSEPORT` listener on the same address: the shape of ringcore, on epoll. A
//! connection waits for readability and reads into a per-thread scratch buffer, so, as with
//! ringcore's provided buffer ring, an idle connection holds no receive buffer. Framing and
//! replies are the shared ones (`ringcore_benches::RequestCounter`, `responses`); with
//! `BENCH_HTTPARSE=1` every head is parsed with `httparse` first (`tokio_ct_hp` in the
//! scripts). The main thread waits for SIGINT/SIGTERM and then stops every runtime.

use std::cell::RefCell;
use std::io;
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use ringcore_benches::{
    bind_listeners, join_all, parse_server_args, pin_to, responses, wait_started, Framing, RequestCounter,
    MAX_BATCH,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Size of each thread's scratch receive buffer (the same as ringcore's ring buffers).
const SCRATCH: usize = 4096;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
}

/// Reads what the socket holds into the thread's scratch buffer and counts the requests it
/// completes. `Ok(None)` is EOF.
fn read_and_count(stream: &TcpStream, counter: &mut RequestCounter) -> io::Result<Option<usize>> {
    SCRATCH_BUF.with(|b| {
        let mut b = b.borrow_mut();
        match stream.try_read(&mut b[..]) {
            Ok(0) => Ok(None),
            Ok(n) => counter.feed(&b[..n]).map(Some).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad request framing: {e:?}"))
            }),
            Err(e) => Err(e),
        }
    })
}

async fn serve_conn(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut counter = RequestCounter::with_framing(Framing::from_env());
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        let mut owed = match read_and_count(&stream, &mut counter) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        while owed > 0 {
            let k = owed.min(MAX_BATCH);
            owed -= k;
            if stream.write_all(responses(k)).await.is_err() {
                return;
            }
        }
    }
}

async fn serve(listener: std::net::TcpListener, mut stop: watch::Receiver<bool>) -> io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_conn(stream));
                }
                // Out of fds, a connection reset before accept...: keep serving.
                Err(_) => tokio::task::yield_now().await,
            },
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_server_args("tokio_ct") {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // Bind every listener up front (port 0 picks one port, then every core shares it).
    let Some((addr, listeners)) = bind_listeners("tokio_ct", args.addr, args.cores.len()) else {
        return ExitCode::FAILURE;
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let mut threads = Vec::new();
    for (listener, &core) in listeners.into_iter().zip(&args.cores) {
        let stop = stop_rx.clone();
        let ready = ready_tx.clone();
        let spawned =
            thread::Builder::new()
                .name(format!("tokio-ct-{core}"))
                .spawn(move || -> Result<(), String> {
                    let started = (|| {
                        if !pin_to(core) {
                            return Err(format!("cannot pin to core {core}"));
                        }
                        tokio::runtime::Builder::new_current_thread()
                            .enable_io()
                            .build()
                            .map_err(|e| format!("runtime: {e}"))
                    })();
                    let rt = match started {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready.send(Err(e.clone()));
                            return Err(e);
                        }
                    };
                    let _ = ready.send(Ok(()));
                    rt.block_on(serve(listener, stop)).map_err(|e| e.to_string())
                    // Dropping `rt` here cancels the connection tasks and closes their sockets.
                });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("tokio_ct: cannot start a thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    drop(ready_tx);
    if !wait_started("tokio_ct", &ready_rx, threads.len()) {
        return ExitCode::FAILURE;
    }
    // The main thread only waits for SIGINT/SIGTERM, on a runtime of its own.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .and_then(|rt| {
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let mut term = signal(SignalKind::terminate())?;
                let mut int = signal(SignalKind::interrupt())?;
                println!("listening on {addr}");
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                Ok(())
            })
        });
    if let Err(e) = signals {
        eprintln!("tokio_ct: signal handling: {e}");
        let _ = stop_tx.send(true);
        return ExitCode::FAILURE;
    }
    let _ = stop_tx.send(true);
    if join_all("tokio_ct", threads) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
