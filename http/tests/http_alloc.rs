//! The plain request path allocates nothing per request: the handler's future runs in the
//! connection's reusable slot (`ringcore_runtime::FutureSlot`), not in a box. Neither does a
//! route behind middleware, the governance set included: each layer's future runs in the slot
//! of the layer outside it, taken from a pool the layer keeps. Counted with a global
//! allocator that counts per thread, on a real server over 127.0.0.1, on whichever driver
//! `RINGCORE_DRIVER` selects. And the faults that would break the slots: a handler that panics
//! while its future lies in one, and a handler abandoned by a timeout.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use std::time::Duration;

use common::{get_req, start};
use ringcore_http::middleware::{self, CircuitBreaker, ConcurrencyLimit, LoadShed, RateLimit, Timeout};
use ringcore_http::{get, Request, Response, Router};

/// Counts the allocations made on each thread, then defers to the system allocator.
struct Counting;

thread_local! {
    /// Allocations (and reallocations) made on this thread so far. Const-initialised and
    /// without a destructor, so reading it from the allocator never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds `GlobalAlloc`'s
// contract; the count is a thread-local `Cell` that takes no lock and allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocations made so far on the core serving this request.
async fn allocations() -> String {
    ALLOCATIONS.with(Cell::get).to_string()
}

async fn hello() -> &'static str {
    "Hello, World!"
}

/// Allocates its answer (a `String`) on every request.
async fn owned() -> String {
    String::from("Hello, World!")
}

/// Reads its request's head (the method and the target).
async fn reads_head(req: Request) -> &'static str {
    if req.method() == ringcore_http::Method::GET && req.path() == "/read" {
        "Hello, World!"
    } else {
        "not this"
    }
}

/// How many probes `/boom`'s handler dropped.
static PROBES_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// How many probes `/boom-layered`'s handler, abandoned by its layer's panic, dropped.
static LAYERED_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// How many of [`slow`]'s probes were dropped.
static SLOW_DROPPED: AtomicUsize = AtomicUsize::new(0);

/// Counts its drop in its counter: held across an await by a handler, so it lies in a slot.
struct DropProbe(&'static AtomicUsize);

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Sleeps for a minute with a [`DropProbe`] counting in `dropped` alive, unless it is
/// abandoned.
async fn slow(dropped: &'static AtomicUsize) -> &'static str {
    let probe = DropProbe(dropped);
    ringcore_http::runtime::time::sleep(Duration::from_secs(60)).await;
    drop(probe);
    "too late"
}

/// Panics after its first await, with a [`DropProbe`] alive in its future.
async fn boom() -> &'static str {
    let probe = DropProbe(&PROBES_DROPPED);
    ringcore_http::runtime::yield_now().await;
    if std::hint::black_box(true) {
        panic!("handler panics on purpose (test)");
    }
    drop(probe);
    "unreachable"
}

/// A layer that starts the rest of the chain, lets it run to its first await (its future,
/// with its probe, pending in the layer's pooled slot), then panics.
async fn panics_over_pending(req: Request, next: middleware::Next) -> Response {
    let mut rest = next.run(req);
    std::future::poll_fn(|cx| {
        assert!(Pin::new(&mut rest).poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    if std::hint::black_box(true) {
        panic!("a layer panics on purpose (test)");
    }
    rest.await
}

/// A layer that only passes the request on.
async fn pass(req: Request, next: middleware::Next) -> Response {
    next.run(req).await
}

fn app() -> Router {
    Router::new()
        .route("/allocations", get(allocations))
        .route("/hello", get(hello))
        .route("/read", get(reads_head))
        .route("/boom", get(boom))
        .route(
            "/boom-layered",
            get(|| slow(&LAYERED_DROPPED)).layer(middleware::from_fn(panics_over_pending)),
        )
        .route("/owned", get(owned))
        .route("/tagged", get(hello).layer(middleware::from_fn(pass)))
        .route(
            "/governed",
            get(hello)
                .layer(middleware::from_fn(pass))
                .layer(CircuitBreaker::new("governed"))
                .layer(Timeout::new(Duration::from_secs(10)))
                .layer(ConcurrencyLimit::new(64))
                .layer(RateLimit::per_second(1e9).burst(1_000_000))
                .layer(LoadShed::new()),
        )
        .route(
            "/slow",
            get(|| slow(&SLOW_DROPPED))
                .layer(middleware::from_fn(pass))
                .layer(Timeout::new(Duration::from_millis(20))),
        )
}

/// The serving core's allocations over `n` requests to `path`, one at a time on one
/// kept-alive connection (after 50 to warm it: buffers, the handler slot, the route's
/// metrics).
fn allocations_over(path: &str, n: u64) -> u64 {
    let server = start(app);
    let mut c = server.client();
    let read_count = |c: &mut common::Client| -> u64 {
        c.send(&get_req("/allocations"));
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.head_raw);
        r.text().parse().expect("a count")
    };
    let hit = |c: &mut common::Client| expect_hello(c, path);
    for _ in 0..50 {
        hit(&mut c);
    }
    let before = read_count(&mut c);
    for _ in 0..n {
        hit(&mut c);
    }
    let after = read_count(&mut c);
    server.stop();
    // The first count's own answer (its `String`) is in the difference.
    after - before
}

#[test]
fn plain_requests_on_a_kept_alive_connection_allocate_nothing_per_request() {
    let n = 400;
    let made = allocations_over("/hello", n);
    // A few for the count's own answer, and whatever the core's periodic work (the `Date`
    // refresh) did meanwhile; one per request (a boxed handler future) would be 400.
    assert!(made < 40, "{made} allocations for {n} requests");
}

/// A handler that takes its request gets the head split off a pooled receive buffer (a
/// reference count), whether the head came alone in its receive and was read in place or
/// not: no copy of it in an allocation of its own per request.
#[test]
fn a_handler_that_reads_its_request_allocates_nothing_per_request() {
    let n = 400;
    let made = allocations_over("/read", n);
    assert!(made < 40, "{made} allocations for {n} requests");
}

#[test]
fn the_count_sees_a_handler_that_allocates() {
    // Pins the counting itself: a handler that allocates its answer is seen doing so.
    let n = 200;
    let made = allocations_over("/owned", n);
    assert!(
        made >= n,
        "{made} allocations for {n} requests that each allocate"
    );
}

#[test]
fn a_route_behind_a_middleware_allocates_nothing_per_request() {
    let n = 400;
    let made = allocations_over("/tagged", n);
    // Before the layers' futures ran in slots: 802 (a box for the middleware's future and one
    // for the handler's, per request).
    assert!(
        made < 40,
        "{made} allocations for {n} requests behind a middleware"
    );
}

#[test]
fn a_route_behind_the_governance_set_allocates_nothing_per_request() {
    // Load shedding, a rate limit, a concurrency limit, a timeout (a timer per request), a
    // circuit breaker and a `from_fn` layer around the handler: six layers.
    let n = 400;
    let made = allocations_over("/governed", n);
    // Before: 2,003 (five boxes a request).
    assert!(made < 40, "{made} allocations for {n} requests behind six layers");
}

#[test]
fn a_handler_abandoned_by_a_timeout_is_dropped_and_its_slot_reused() {
    let server = start(app);
    let mut c = server.client();
    for i in 1..=3 {
        c.send(&get_req("/slow"));
        let r = c.read_response();
        assert_eq!(r.status, 503, "{}", r.head_raw);
        assert!(r.text().contains("timed_out"), "{}", r.text());
        // The handler's future (and its probe) went when the timeout fired, not a minute
        // later and not when its slot was next used.
        assert_eq!(SLOW_DROPPED.load(Ordering::SeqCst), i);
        // The connection serves on.
        c.send(&get_req("/hello"));
        assert_eq!(c.read_response().text(), "Hello, World!");
    }
    server.stop();
    assert_eq!(SLOW_DROPPED.load(Ordering::SeqCst), 3, "dropped twice");
}

/// Three requests for `path` on a new connection, each answered "Hello, World!": the core
/// serves on after a connection's handler panicked.
fn serves_on(server: &common::TestServer, path: &str) {
    let mut d = server.client();
    for _ in 0..3 {
        expect_hello(&mut d, path);
    }
}

/// One request for `path` on `c`, answered 200 "Hello, World!".
fn expect_hello(c: &mut common::Client, path: &str) {
    c.send(&get_req(path));
    let r = c.read_response();
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "Hello, World!"),
        "{path}: {}",
        r.head_raw
    );
}

#[test]
fn a_layer_that_panics_drops_the_pending_rest_once_and_its_slot_is_reused() {
    let server = start(app);
    for round in 1..=2 {
        let mut c = server.client();
        c.send(&get_req("/boom-layered"));
        c.expect_closed();
        // The pending handler in the layer's pooled slot was dropped while the panic
        // unwound, once, not left there until the slot's next use; the second round runs
        // in the slot the first gave back.
        assert_eq!(LAYERED_DROPPED.load(Ordering::SeqCst), round);
    }
    // The core serves on, through a layer too.
    serves_on(&server, "/tagged");
    server.stop();
    assert_eq!(LAYERED_DROPPED.load(Ordering::SeqCst), 2, "dropped twice");
}

#[test]
fn a_handler_that_panics_in_the_slot_costs_its_connection_only() {
    let server = start(app);
    let mut c = server.client();
    // The slot already holds an earlier handler's future memory.
    c.send(&get_req("/hello"));
    assert_eq!(c.read_response().text(), "Hello, World!");
    c.send(&get_req("/boom"));
    c.expect_closed();
    // The panicking future was dropped (unwound out of the slot), once.
    assert_eq!(PROBES_DROPPED.load(Ordering::SeqCst), 1);
    // The core serves on: a new connection, its handlers in a slot of their own.
    serves_on(&server, "/hello");
    server.stop();
    assert_eq!(PROBES_DROPPED.load(Ordering::SeqCst), 1, "dropped twice");
}
