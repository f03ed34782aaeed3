//! `Server::serve_async`: each core builds its router with an async factory (awaiting timers,
//! holding `Rc`s, told its core index); an error from any core's factory stops start-up with
//! that error's message, and no core listens.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use ringcore_http::runtime::time::sleep;
use ringcore_http::runtime::Cores;
use ringcore_http::test::TestClient;
use ringcore_http::{get, Router, Server, ShutdownReport, State};

struct Conn {
    core: usize,
    warmed: Cell<u32>,
}

/// Runs `serve_async` with `factory` on two cores on its own thread; returns the address it
/// listens on (or the thread's result if it stopped first) and a stop function.
fn serve_two<F, Fut, O>(
    factory: F,
) -> Result<(std::net::SocketAddr, impl FnOnce() -> ShutdownReport), io::Error>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = O> + 'static,
    O: ringcore_http::IntoRouter<Conn> + 'static,
{
    let (addr_tx, addr_rx) = mpsc::channel();
    let (handle_tx, handle_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = Server::bind("127.0.0.1:0")
            .cores(Cores::Count(2))
            .runtime(|b| b.handle_signals(false))
            .on_listening(move |a| {
                let _ = addr_tx.send(a);
            })
            .with_shutdown_handle(move |h| {
                let _ = handle_tx.send(h);
            })
            .serve_async(factory);
        let _ = done_tx.send(r);
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(addr) = addr_rx.try_recv() {
            let handle = handle_rx
                .recv_timeout(Duration::from_secs(1))
                .expect("shutdown handle");
            return Ok((addr, move || {
                handle.shutdown();
                match done_rx.recv_timeout(Duration::from_secs(15)) {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => panic!("serve failed: {e}"),
                    Err(_) => panic!("did not stop within 15 s"),
                }
            }));
        }
        if let Ok(r) = done_rx.try_recv() {
            return Err(r
                .err()
                .unwrap_or_else(|| io::Error::other("stopped without error")));
        }
        assert!(
            Instant::now() < deadline,
            "neither listening nor stopped after 10 s"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn an_async_factory_builds_each_cores_router_on_that_core() {
    let (addr, stop) = serve_two(|core| async move {
        // Async set-up that holds a !Send value across an await.
        let conn = Rc::new(Conn {
            core,
            warmed: Cell::new(0),
        });
        sleep(Duration::from_millis(20)).await;
        conn.warmed.set(7);
        let conn = Rc::try_unwrap(conn).unwrap_or_else(|_| unreachable!("one owner"));
        Ok::<_, io::Error>(Router::with_state(conn).route(
            "/",
            get(|State(c): State<Conn>| async move { format!("core {} warmed {}", c.core, c.warmed.get()) }),
        ))
    })
    .expect("starts");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let text = TestClient::connect(addr).get("/").text();
        assert!(text.ends_with("warmed 7"), "{text}");
        seen.insert(text);
        if seen.len() == 2 {
            break;
        }
    }
    // Whichever core took a connection answered from the state its own factory built.
    assert!(seen
        .iter()
        .all(|t| t.starts_with("core 0") || t.starts_with("core 1")));
    let report = stop();
    assert!(report.requests >= 1);
}

#[test]
fn a_factory_may_return_a_plain_router() {
    let (addr, stop) = serve_two(|core| async move {
        Router::with_state(Conn {
            core,
            warmed: Cell::new(1),
        })
        .route("/", get(|| async { "plain" }))
    })
    .expect("starts");
    assert_eq!(TestClient::connect(addr).get("/").text(), "plain");
    stop();
}

#[test]
fn a_factory_error_on_one_core_stops_start_up_with_its_message() {
    let core0_built = Arc::new(AtomicBool::new(false));
    let built = core0_built.clone();
    let started = Instant::now();
    let err = match serve_two(move |core| {
        let built = built.clone();
        async move {
            sleep(Duration::from_millis(10)).await;
            if core == 1 {
                return Err("redis at 127.0.0.1:1 refused the connection".to_string());
            }
            built.store(true, Ordering::SeqCst);
            Ok(Router::with_state(Conn {
                core,
                warmed: Cell::new(0),
            })
            .route("/", get(|| async { "must not serve" })))
        }
    }) {
        Ok(_) => panic!("the server listened although core 1's factory failed"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert_eq!(
        msg,
        "the router factory failed on core 1: redis at 127.0.0.1:1 refused the connection"
    );
    // Core 0 built its router but never listened (`on_listening` was not called), and
    // start-up stopped at once rather than after a grace period.
    assert!(core0_built.load(Ordering::SeqCst));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_factory_error_on_core_0_stops_start_up_too() {
    let err = match serve_two(|core| async move {
        if core == 0 {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no config file"));
        }
        sleep(Duration::from_millis(30)).await;
        Ok(Router::with_state(Conn {
            core,
            warmed: Cell::new(0),
        }))
    }) {
        Ok(_) => panic!("the server listened although core 0's factory failed"),
        Err(e) => e,
    };
    assert_eq!(
        err.to_string(),
        "the router factory failed on core 0: no config file"
    );
}
