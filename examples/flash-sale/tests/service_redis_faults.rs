//! `flash-sale serve --store redis://...` when Redis fails, black-box over the binary and a
//! private `redis-server`:
//!
//! - Redis stopped (SIGSTOP) for 3 s under a stream of buys: no buy waits longer than the
//!   deadline (`--redis-timeout`) plus a bound, buys get 503 + `Retry-After` during the stall,
//!   `/healthz` is 503 during it and 200 after SIGCONT, buys succeed again, and every user's
//!   retries end with the truth (one order each, `sold` equal to the users holding one).
//! - Redis killed (SIGKILL) and restarted on the same port and directory mid-sale: the same
//!   service sells again, never more than the stock, one order per user, every order readable.
//! - A Redis that can lose acknowledged orders (or hides `CONFIG`) is refused at start, and
//!   accepted with a warning under `--allow-redis-data-loss`.
//!
//! Signals go only to the `redis-server` PID this test started. No `redis-server` on PATH is
//! a test failure, not a skip: CI installs it.

mod support_redis;
mod support_service;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support_redis::RedisServer;
use support_service::{assert_order, unique, Client, Config, ItemState, Service, TempDir, START_TIMEOUT};

/// `--redis-timeout` in these tests.
const DEADLINE: Duration = Duration::from_millis(300);
/// What the issue allows past the deadline.
const ALLOWED: Duration = Duration::from_millis(100);
/// What a noisy, shared 2-core machine may add on top (scheduling, the test's own threads).
const SLACK: Duration = Duration::from_millis(150);
/// No test loop runs past this.
const TEST_LIMIT: Duration = Duration::from_secs(60);

fn redis_config(redis: &RedisServer, dir: &TempDir) -> Config {
    let mut config = Config::new(2, dir.path());
    config.store = Some(redis.url());
    config.prefix = Some(unique("faults"));
    config.extra_args = vec![
        "--redis-timeout".into(),
        DEADLINE.as_millis().to_string(),
        // Retries every 50 ms must not meet the per-user limit.
        "--user-rate".into(),
        "1000".into(),
    ];
    config
}

/// One `POST /items/{item}/buy` as the client saw it.
#[derive(Debug, Clone)]
struct Attempt {
    user: String,
    /// When it was sent and answered, from the test's start.
    sent: Duration,
    answered: Duration,
    status: u16,
    retry_after: bool,
    error: Option<String>,
    order: Option<String>,
}

impl Attempt {
    fn took(&self) -> Duration {
        self.answered - self.sent
    }
}

/// How a user's buying ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Final {
    /// 200 with this order, or 409 `already_bought` with it (an attempt in doubt went through).
    Order(String),
    SoldOut,
}

/// What one buyer thread saw: every attempt, and each user's final outcome.
type Outcomes = (Vec<Attempt>, Vec<(String, Final)>);

/// A buyer thread: users `{tag}-{k}` one after another, each retrying its 503s every 50 ms
/// until a definitive answer; stops at the first user after `stop` is set.
fn buyer(
    addr: std::net::SocketAddr,
    item: String,
    tag: String,
    t0: Instant,
    stop: Arc<AtomicBool>,
    orders_seen: Arc<AtomicUsize>,
    pause: Duration,
) -> Outcomes {
    let mut client = Client::new(addr);
    let mut attempts = Vec::new();
    let mut finals = Vec::new();
    for k in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let user = format!("{tag}-{k}");
        let outcome = loop {
            assert!(
                t0.elapsed() < TEST_LIMIT,
                "{user} got no definitive answer within {TEST_LIMIT:?}"
            );
            let sent = t0.elapsed();
            let resp = client
                .buy_once(&item, &user)
                .unwrap_or_else(|e| panic!("buy for {user}: {e}"));
            let a = Attempt {
                user: user.clone(),
                sent,
                answered: t0.elapsed(),
                status: resp.status,
                retry_after: resp.header("retry-after").is_some(),
                error: resp.error(),
                order: resp.str_field("order"),
            };
            attempts.push(a.clone());
            match (a.status, a.error.as_deref(), a.order) {
                (200, _, Some(o)) => {
                    orders_seen.fetch_add(1, Ordering::Relaxed);
                    break Final::Order(o);
                }
                (409, Some("already_bought"), Some(o)) => break Final::Order(o),
                (409, Some("sold_out"), _) => break Final::SoldOut,
                (503, _, _) => {
                    assert!(a.retry_after, "503 without Retry-After: {}", resp.describe());
                    thread::sleep(Duration::from_millis(50));
                }
                _ => panic!("buy for {user}: unexpected {}", resp.describe()),
            }
        };
        finals.push((user, outcome));
        thread::sleep(pause);
    }
    (attempts, finals)
}

/// Polls `/healthz` (bounded by `within`) until its status is `want`; returns the body and
/// how long it took.
fn healthz_until(addr: std::net::SocketAddr, want: u16, within: Duration) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let mut client = Client::new(addr);
    loop {
        let resp = client.must_get("/healthz");
        if resp.status == want {
            return (resp.json(), started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "/healthz still {} after {within:?} (want {want})",
            resp.describe()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The sale's invariants from what the users were told: one order per user, distinct order
/// ids, every order readable with its user, and `sold` equal to the users holding an order.
/// Returns that number.
/// Joins the buyer threads and collects their attempts and final outcomes.
fn join_buyers(threads: Vec<thread::JoinHandle<Outcomes>>) -> Outcomes {
    let mut attempts = Vec::new();
    let mut finals = Vec::new();
    for t in threads {
        let (a, f) = t.join().expect("buyer thread");
        attempts.extend(a);
        finals.extend(f);
    }
    (attempts, finals)
}

fn check_sale(addr: std::net::SocketAddr, item: &str, stock: u64, finals: &[(String, Final)]) -> u64 {
    let mut client = Client::new(addr);
    let mut users = HashSet::new();
    let mut ids = HashMap::new();
    for (user, f) in finals {
        assert!(users.insert(user.clone()), "{user} answered twice");
        if let Final::Order(order) = f {
            if let Some(other) = ids.insert(order.clone(), user.clone()) {
                panic!("order {order} told to {other} and to {user}");
            }
            assert_order(&client.order(order), order, item, user);
        }
    }
    let holders = ids.len() as u64;
    let state = client.item_until(item, |s| s.sold == holders);
    assert_eq!(
        (state.stock, state.sold),
        (stock, holders),
        "sold must equal the users told they hold an order (no unit sold behind anyone's back)"
    );
    assert!(state.sold <= state.stock, "oversold: {state:?}");
    holders
}

#[test]
fn a_stalled_redis_answers_503_within_the_deadline_and_recovers() {
    const THREADS: usize = 4;
    const STOCK: u64 = 100_000;
    const STALL: Duration = Duration::from_secs(3);

    let redis = RedisServer::start();
    let dir = TempDir::new("redis-stall");
    let service = Service::start(&redis_config(&redis, &dir));
    let addr = service.addr();
    let item = unique("stall");
    assert_eq!(Client::new(addr).put_item(&item, STOCK).status, 201);
    let (body, _) = healthz_until(addr, 200, Duration::from_secs(2));
    assert_eq!(body["failing"], serde_json::json!([]));

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (item, stop, seen) = (item.clone(), stop.clone(), seen.clone());
            thread::spawn(move || {
                buyer(
                    addr,
                    item,
                    format!("s{t}"),
                    t0,
                    stop,
                    seen,
                    Duration::from_millis(10),
                )
            })
        })
        .collect();

    thread::sleep(Duration::from_secs(1));
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "no buy succeeded before the stall"
    );
    let stopped_at = t0.elapsed();
    redis.stop();
    let (body, took) = healthz_until(addr, 503, Duration::from_secs(2));
    eprintln!("/healthz 503 {took:?} into the stall: {body}");
    let failing = body["failing"].as_array().expect("a failing list");
    assert!(
        failing.iter().any(|p| {
            p["part"].as_str().is_some_and(|s| s.starts_with("redis-"))
                && p["error"].as_str().is_some_and(|e| !e.is_empty())
                && p["since_unix_ms"].as_u64().is_some()
        }),
        "/healthz during the stall names no failing redis part: {body}"
    );
    thread::sleep((stopped_at + STALL).saturating_sub(t0.elapsed()));
    // /healthz still says so at the end of the stall.
    assert_eq!(Client::new(addr).must_get("/healthz").status, 503);
    let resumed_at = t0.elapsed();
    redis.resume();
    let (body, healthy_after) = healthz_until(addr, 200, Duration::from_secs(5));
    assert_eq!(body["failing"], serde_json::json!([]));
    eprintln!("/healthz 200 {healthy_after:?} after SIGCONT");
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);

    let (attempts, finals) = join_buyers(threads);

    let longest = attempts.iter().max_by_key(|a| a.took()).expect("attempts");
    let in_stall: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.sent >= stopped_at + Duration::from_millis(20) && a.answered <= resumed_at)
        .collect();
    let longest_in_stall = in_stall.iter().map(|a| a.took()).max().unwrap_or_default();
    let n503 = attempts.iter().filter(|a| a.status == 503).count();
    eprintln!(
        "{} attempts, {} users, {n503} answered 503; longest buy {:?} ({} at {:?}); \
         longest during the stall {longest_in_stall:?}; {} attempts inside the stall",
        attempts.len(),
        finals.len(),
        longest.took(),
        longest.status,
        longest.sent,
        in_stall.len()
    );
    assert!(
        longest.took() <= DEADLINE + ALLOWED + SLACK,
        "a buy waited {:?} (deadline {DEADLINE:?}): {longest:?}",
        longest.took()
    );
    assert!(
        in_stall.len() >= 10,
        "too few buys during the stall: {}",
        in_stall.len()
    );
    for a in &in_stall {
        assert!(
            a.status == 503 && a.retry_after,
            "a buy for {} during the stall was answered {} (retry-after {}): {a:?}",
            a.user,
            a.status,
            a.retry_after
        );
    }
    let after: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.sent >= resumed_at + healthy_after)
        .collect();
    assert!(
        after.iter().any(|a| a.status == 200),
        "no buy succeeded after Redis came back ({} attempts)",
        after.len()
    );
    assert!(
        finals.iter().all(|(_, f)| *f != Final::SoldOut),
        "{STOCK} units cannot sell out here"
    );
    let holders = check_sale(addr, &item, STOCK, &finals);
    let in_doubt = attempts
        .iter()
        .filter(|a| a.status == 409 && a.error.as_deref() == Some("already_bought"))
        .count();
    eprintln!("{holders} orders; {in_doubt} buys in doubt that had gone through (told by a retry)");
    drop(attempts);
    service.stop_clean();
}

#[test]
fn a_killed_and_restarted_redis_is_served_again_without_a_service_restart() {
    const THREADS: usize = 4;
    const STOCK: u64 = 60;

    let mut redis = RedisServer::start();
    let dir = TempDir::new("redis-kill");
    let service = Service::start(&redis_config(&redis, &dir));
    let addr = service.addr();
    let item = unique("kill");
    assert_eq!(Client::new(addr).put_item(&item, STOCK).status, 201);

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (item, stop, seen) = (item.clone(), stop.clone(), seen.clone());
            thread::spawn(move || {
                buyer(
                    addr,
                    item,
                    format!("k{t}"),
                    t0,
                    stop,
                    seen,
                    Duration::from_millis(30),
                )
            })
        })
        .collect();

    // Mid-sale: a third of the stock acknowledged.
    while seen.load(Ordering::Relaxed) < (STOCK / 3) as usize {
        assert!(t0.elapsed() < Duration::from_secs(20), "the sale does not start");
        thread::sleep(Duration::from_millis(2));
    }
    let killed_at = t0.elapsed();
    let acked_before = seen.load(Ordering::Relaxed);
    // Down for half a second: connections refused, the service backs off and retries.
    redis.kill9_and_restart(Duration::from_millis(500));
    let restarted_at = t0.elapsed();
    eprintln!("redis killed after {acked_before} orders at {killed_at:?}, serving again at {restarted_at:?}");
    // Everyone else buys until the stock is gone.
    let mut client = Client::new(addr);
    let started = Instant::now();
    loop {
        // 503 (+ Retry-After) while the service has not found Redis again.
        let resp = client.must_get(&format!("/items/{item}"));
        if resp.status == 200 && ItemState::from_json(&resp.json()).remaining == 0 {
            break;
        }
        assert!(
            resp.status == 200 || (resp.status == 503 && resp.header("retry-after").is_some()),
            "GET /items/{item}: {}",
            resp.describe()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the sale never sold out after the restart: {}",
            resp.describe()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let (_, healthy_after) = healthz_until(addr, 200, Duration::from_secs(5));
    eprintln!("/healthz 200 again {healthy_after:?} after the sell-out was seen");
    // A few sold-out answers after the last unit.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (attempts, finals) = join_buyers(threads);

    let longest = attempts.iter().max_by_key(|a| a.took()).expect("attempts");
    let n503 = attempts
        .iter()
        .filter(|a| a.status == 503 && a.sent >= killed_at)
        .count();
    let after = attempts
        .iter()
        .filter(|a| a.status == 200 && a.sent >= restarted_at)
        .count();
    eprintln!(
        "{} attempts, {} users; {n503} answered 503 after the kill; {after} sold after the \
         restart; longest buy {:?}",
        attempts.len(),
        finals.len(),
        longest.took()
    );
    assert!(
        longest.took() <= DEADLINE + ALLOWED + SLACK,
        "a buy waited {:?} (deadline {DEADLINE:?}): {longest:?}",
        longest.took()
    );
    assert!(after > 0, "nothing was sold after Redis came back");
    assert!(n503 > 0, "no buy was refused while Redis was down");
    let holders = check_sale(addr, &item, STOCK, &finals);
    assert_eq!(holders, STOCK, "the whole stock is sold, once per user");
    assert!(
        finals.iter().any(|(_, f)| *f == Final::SoldOut),
        "more buyers than stock: someone is told sold_out"
    );
    // Everything acknowledged before the kill survived it (appendfsync always).
    assert!(holders as usize >= acked_before);
    service.stop_clean();
}

/// Runs `serve` expecting it to refuse to start (bounded by [`START_TIMEOUT`]); returns its
/// stderr.
fn refused(config: &Config) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flash-sale"));
    cmd.args(["serve", "--addr", "127.0.0.1:0", "--cores", "2", "--data-dir"])
        .arg(&config.data_dir)
        .args(["--store", config.store.as_deref().expect("a redis store")])
        .args(&config.extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn flash-sale");
    let mut err = child.stderr.take().expect("stderr pipe");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            // `Child::kill` signals exactly this child's PID.
            let _ = child.kill();
            let _ = child.wait();
            panic!("flash-sale did not refuse to start within {START_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().expect("stderr reader");
    assert!(
        !status.success(),
        "flash-sale started and exited 0; stderr:\n{stderr}"
    );
    stderr
}

#[test]
fn start_is_refused_against_a_redis_that_can_lose_orders_unless_allowed() {
    let dir = TempDir::new("redis-lossy");

    // No append-only file at all.
    let redis = RedisServer::start_with(&["--appendonly", "no"]);
    let config = redis_config(&redis, &dir);
    let stderr = refused(&config);
    for needle in [
        "appendonly is \"no\"",
        "appendfsync is \"everysec\"",
        "appendonly yes",
        "appendfsync always",
        "--allow-redis-data-loss",
    ] {
        assert!(stderr.contains(needle), "refusal lacks {needle:?}:\n{stderr}");
    }
    // Allowed explicitly: it starts, says so, and sells.
    let mut allowed = config.clone();
    allowed.extra_args.push("--allow-redis-data-loss".into());
    let service = Service::start(&allowed);
    let warning = service.stderr_until(|s| s.contains("starting anyway"));
    assert!(
        warning.contains("starting anyway") && warning.contains("appendonly is \"no\""),
        "no warning on stderr:\n{warning}"
    );
    let item = unique("lossy");
    let mut client = Client::new(service.addr());
    assert_eq!(client.put_item(&item, 1).status, 201);
    let resp = client.buy_once(&item, "u").expect("buy");
    assert_eq!(resp.status, 200, "{}", resp.describe());
    service.stop_clean();
    drop(redis);

    // An append-only file synced once a second: up to a second of orders lost.
    let redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"]);
    let stderr = refused(&redis_config(&redis, &dir));
    assert!(stderr.contains("appendfsync is \"everysec\""), "{stderr}");
    assert!(
        !stderr.contains("appendonly is"),
        "appendonly is fine here:\n{stderr}"
    );
    drop(redis);

    // CONFIG hidden: it cannot check, says so, and the same flag overrides.
    let mut settings = support_redis::DURABLE.to_vec();
    settings.extend(["--rename-command", "CONFIG", "CONFIG-HIDDEN-FOR-TEST"]);
    let redis = RedisServer::start_with(&settings);
    let config = redis_config(&redis, &dir);
    let stderr = refused(&config);
    assert!(
        stderr.contains("CONFIG GET appendonly was refused") && stderr.contains("--allow-redis-data-loss"),
        "{stderr}"
    );
    let mut allowed = config.clone();
    allowed.extra_args.push("--allow-redis-data-loss".into());
    let service = Service::start(&allowed);
    assert!(service
        .stderr_until(|s| s.contains("starting anyway"))
        .contains("cannot check"));
    service.stop_clean();
}
