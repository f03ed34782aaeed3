//! TCP echo across all cores with many concurrent clients, byte-exact, on both I/O paths.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ringcore_runtime::net::{TcpListener, TcpStream};
use ringcore_runtime::{
    driver_kind, local_state, n_shards, shard_id, spawn_local, submit_to, DriverKind, Runtime,
};

const CLIENTS: usize = 64;
const ROUNDS: usize = 20;

/// Deterministic pseudo-random payload for client `c`, round `r` (sizes from 1 byte to 64 KiB).
fn payload(c: usize, r: usize) -> Vec<u8> {
    let mut x = (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (r as u64 + 7).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let len = 1 + (x % 65_536) as usize;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn echo(stream: TcpStream) {
    loop {
        let chunk = match stream.recv().await {
            Ok(c) if !c.is_empty() => c,
            _ => break,
        };
        let (res, _) = stream.write_all(chunk).await;
        if res.is_err() {
            break;
        }
    }
}

fn run_echo(portable: bool) {
    let rt = Runtime::builder()
        .portable_ops(portable)
        .handle_signals(false)
        .build()
        .expect("build runtime");
    let shutdown = rt.shutdown_handle();
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let addr_tx = std::sync::Mutex::new(Some(addr_tx));
    let addr_tx = std::sync::Arc::new(addr_tx);

    let server = thread::spawn(move || {
        rt.run(move || {
            let addr_tx = addr_tx.clone();
            async move {
                // Shard 0 picks a free port; the others bind the same one (SO_REUSEPORT).
                let listener = if shard_id() == 0 {
                    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
                    let addr = l.local_addr().expect("local addr");
                    // The closure runs on shard `s` and leaves the address in its thread-local.
                    for s in 1..n_shards() {
                        submit_to(s, move || ADDR.with(|c| c.set(Some(addr))))
                            .await
                            .expect("send addr");
                    }
                    if let Some(tx) = addr_tx.lock().ok().and_then(|mut g| g.take()) {
                        tx.send(addr).expect("publish addr");
                    }
                    l
                } else {
                    // Wait for shard 0's closure to deliver the port on this core.
                    let addr = loop {
                        if let Some(a) = ADDR.with(|c| c.get()) {
                            break a;
                        }
                        ringcore_runtime::time::sleep(Duration::from_millis(1)).await;
                    };
                    TcpListener::bind(addr).expect("bind same port")
                };
                assert_eq!(
                    listener.is_multishot(),
                    !portable && driver_kind() == DriverKind::IoUring
                );
                loop {
                    let Ok(stream) = listener.accept_stream().await else {
                        continue;
                    };
                    assert_eq!(stream.uses_buf_ring(), !portable && local_state().multishot_recv);
                    spawn_local(echo(stream)).detach();
                }
            }
        })
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server address");

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            thread::spawn(move || {
                let mut s = StdStream::connect(addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("timeout");
                s.set_nodelay(true).expect("nodelay");
                let mut total = 0;
                for r in 0..ROUNDS {
                    let data = payload(c, r);
                    let writer = {
                        let mut w = s.try_clone().expect("clone");
                        let data = data.clone();
                        thread::spawn(move || w.write_all(&data).expect("write"))
                    };
                    let mut got = vec![0u8; data.len()];
                    s.read_exact(&mut got).expect("read echo");
                    writer.join().expect("writer");
                    assert!(got == data, "client {c} round {r}: echo differs");
                    total += data.len();
                }
                total
            })
        })
        .collect();
    let total: usize = clients.into_iter().map(|c| c.join().expect("client")).sum();
    assert!(total > CLIENTS * ROUNDS);
    shutdown.shutdown();
    let out = server.join().expect("server thread").expect("runtime");
    assert!(
        out.iter().all(Option::is_none),
        "main futures were stopped by shutdown"
    );
}

thread_local! {
    static ADDR: std::cell::Cell<Option<SocketAddr>> = const { std::cell::Cell::new(None) };
}

#[test]
fn echo_all_cores_multishot() {
    run_echo(false);
}

#[test]
fn echo_all_cores_portable() {
    run_echo(true);
}
