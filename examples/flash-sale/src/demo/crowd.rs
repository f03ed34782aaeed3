//! The flash crowd: who buys what, in which order ([`plan`]), and an open-loop generator on
//! the ringcore runtime that fires it at a fixed rate ([`fire`]).
//!
//! Attempt `j` is due at `start + j / rate` and goes out on connection `j % conns`; a
//! connection sends every attempt that is due at once, pipelined, up to `depth` outstanding,
//! without waiting for earlier answers. Latency runs from the attempt's *due* time to its
//! answer, so a server that falls behind shows as queueing in the tail instead of slowing the
//! crowd down (no coordinated omission).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringcore_runtime::net::TcpStream;
use ringcore_runtime::time::{sleep, sleep_until, timeout_at};
use ringcore_runtime::{n_shards, shard_id, spawn_local, Cores, Runtime};
use ringcore_testkit::schedule::OpenLoop;
use serde::Deserialize;

use super::http::{parse_response, request, Response};

/// Highest latency the histogram tracks (larger values are clamped): one hour, in µs.
const HIST_MAX_US: u64 = 3_600_000_000;
/// One attempt in this many is a repeat by a user who already tried.
const REPEAT_EVERY: usize = 50;
/// A repeat comes at least this many attempts after the user's first.
const REPEAT_LAG: usize = 200;

/// One buy attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) user: u32,
    pub(crate) item: u32,
    pub(crate) repeat: bool,
}

pub(crate) fn item_name(k: u32) -> String {
    format!("item-{k}")
}

pub(crate) fn user_name(i: u32) -> String {
    format!("user-{i}")
}

/// A well-mixed 64-bit hash (SplitMix64's finaliser): the crowd is the same on every run.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The item user `i` wants: item `k` with weight `1 / (k + 1)`, so item 0 is the hottest.
fn pick_item(i: u32, items: u32) -> u32 {
    let total: f64 = (0..items).map(|k| 1.0 / f64::from(k + 1)).sum();
    let u = (mix(u64::from(i)) >> 11) as f64 / (1u64 << 53) as f64 * total;
    let mut acc = 0.0;
    for k in 0..items {
        acc += 1.0 / f64::from(k + 1);
        if u < acc {
            return k;
        }
    }
    items - 1
}

/// Every user's first attempt in user order, each on the item it wants (item 0 for all when
/// `hot`), with a repeat after every 49th attempt by an earlier user among the first `stock`
/// (who most likely bought, so the repeat shows `already_bought`).
pub(crate) fn plan(users: u32, items: u32, stock: u64, hot: bool) -> Vec<Attempt> {
    let mut out = Vec::with_capacity(users as usize + users as usize / (REPEAT_EVERY - 1) + 1);
    let mut wants = Vec::with_capacity(users as usize);
    for i in 0..users {
        let item = if hot { 0 } else { pick_item(i, items) };
        wants.push(item);
        out.push(Attempt {
            user: i,
            item,
            repeat: false,
        });
        if out.len() % REPEAT_EVERY == REPEAT_EVERY - 1 && (i as usize) > REPEAT_LAG {
            let pool = (i as usize - REPEAT_LAG)
                .min(usize::try_from(stock).unwrap_or(usize::MAX))
                .max(1);
            let user = (mix(u64::from(i) ^ 0x5eed) % pool as u64) as u32;
            out.push(Attempt {
                user,
                item: wants[user as usize],
                repeat: true,
            });
        }
    }
    out
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 200 with the order as the service described it.
    Bought {
        order: String,
        item: String,
        user: String,
    },
    SoldOut,
    /// 409 already_bought, naming the user's order (if it did).
    AlreadyBought {
        order: Option<String>,
    },
    /// 429.
    TooMany {
        retry_after: bool,
    },
    /// 503.
    Unavailable {
        retry_after: bool,
    },
    /// Any other answer (status and body, for the report).
    Other {
        status: u16,
        body: String,
    },
    /// Sent, but no answer came (reset, close, timeout): it may or may not have bought.
    Lost,
    /// Due before the cap but never sent (no connection, or the connection's backlog).
    Unsent,
    /// Scheduled after the duration cap: not part of this run.
    Cut,
}

#[derive(Deserialize)]
struct OrderBody {
    order: String,
    item: String,
    user: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    order: Option<String>,
}

/// Classifies a buy answer by status and body.
pub(crate) fn classify(r: &Response) -> Outcome {
    let other = || Outcome::Other {
        status: r.status,
        body: String::from_utf8_lossy(&r.body).chars().take(200).collect(),
    };
    match r.status {
        200 => match serde_json::from_slice::<OrderBody>(&r.body) {
            Ok(o) => Outcome::Bought {
                order: o.order,
                item: o.item,
                user: o.user,
            },
            Err(_) => other(),
        },
        409 => match serde_json::from_slice::<ErrorBody>(&r.body) {
            Ok(e) if e.error == "sold_out" => Outcome::SoldOut,
            Ok(e) if e.error == "already_bought" => Outcome::AlreadyBought { order: e.order },
            _ => other(),
        },
        429 => Outcome::TooMany {
            retry_after: r.retry_after,
        },
        503 => Outcome::Unavailable {
            retry_after: r.retry_after,
        },
        _ => other(),
    }
}

/// How to fire the crowd.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) addr: SocketAddr,
    pub(crate) rate: f64,
    pub(crate) conns: usize,
    /// Most requests outstanding on one connection.
    pub(crate) depth: usize,
    /// Nothing is sent after `start + cap`.
    pub(crate) cap: Duration,
    /// An attempt unanswered this long counts as lost (and its connection is reopened).
    pub(crate) timeout: Duration,
    /// Generator cores.
    pub(crate) cores: usize,
}

/// What the crowd came to.
#[derive(Debug)]
pub(crate) struct Fired {
    /// Per attempt, in plan order.
    pub(crate) outcomes: Vec<Outcome>,
    /// Latency (µs, from the due time) of every answered attempt.
    pub(crate) hist: Histogram<u64>,
    /// The same, for the admitted attempts only (every answer but 429 and 503): what load
    /// shedding promises to keep short.
    pub(crate) admitted: Histogram<u64>,
    /// From the first due time to the last answer.
    pub(crate) elapsed: Duration,
}

pub(crate) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_max(HIST_MAX_US, 3).expect("valid histogram bounds")
}

#[derive(Debug)]
struct Plan {
    cfg: Config,
    attempts: Vec<Attempt>,
    start: Instant,
    /// Attempts with index below this are due before the cap.
    due_count: usize,
    drain_end: Instant,
}

impl Plan {
    /// When attempt `j` is due: slot `j` of the shared open-loop schedule (connection `c`
    /// sends attempts `c, c + conns, ...`).
    fn due(&self, j: usize) -> Instant {
        OpenLoop {
            start: self.start,
            rate: self.cfg.rate,
            conns: self.cfg.conns,
        }
        .due(j as u64)
    }
}

/// Per shard: answers in (attempt, outcome) form, the latency histogram, the last answer time.
#[derive(Debug)]
struct ShardOut {
    outcomes: Vec<(usize, Outcome)>,
    hist: Histogram<u64>,
    admitted: Histogram<u64>,
    last: Option<Instant>,
}

struct Shared {
    outcomes: RefCell<Vec<(usize, Outcome)>>,
    hist: RefCell<Histogram<u64>>,
    admitted: RefCell<Histogram<u64>>,
    last: RefCell<Option<Instant>>,
}

/// Fires `attempts` at `cfg.rate` and returns what every attempt came to.
pub(crate) fn fire(cfg: &Config, attempts: Vec<Attempt>) -> Result<Fired, String> {
    let rt = Runtime::builder()
        .cores(Cores::Count(cfg.cores.max(1)))
        .handle_signals(true)
        // Timers fall due every few µs: the ring wait's timeout is precise enough, spinning
        // would only take CPU from the service on a small machine.
        .idle_spin(Duration::ZERO)
        .build()
        .map_err(|e| format!("generator runtime: {e}"))?;
    let n = attempts.len();
    // Leave the shards time to start and connect before the first attempt is due.
    let start = Instant::now() + Duration::from_millis(100);
    let due_count = n.min((cfg.cap.as_secs_f64() * cfg.rate).ceil() as usize);
    let last_due = start + Duration::from_secs_f64(due_count as f64 / cfg.rate);
    let plan = Arc::new(Plan {
        cfg: cfg.clone(),
        attempts,
        start,
        due_count,
        drain_end: last_due + cfg.timeout,
    });
    let p = plan.clone();
    let outs = rt
        .run(move || shard_main(p.clone()))
        .map_err(|e| format!("generator: {e}"))?;
    let mut outcomes = vec![Outcome::Cut; n];
    for o in outcomes.iter_mut().take(due_count) {
        *o = Outcome::Unsent;
    }
    let mut hist = new_hist();
    let mut admitted = new_hist();
    let mut last = start;
    for out in outs {
        let out = out.ok_or("the crowd was interrupted (SIGINT or SIGTERM)")?;
        hist.add(&out.hist).map_err(|e| format!("histogram merge: {e}"))?;
        admitted
            .add(&out.admitted)
            .map_err(|e| format!("histogram merge: {e}"))?;
        for (j, o) in out.outcomes {
            outcomes[j] = o;
        }
        if let Some(t) = out.last {
            last = last.max(t);
        }
    }
    Ok(Fired {
        outcomes,
        hist,
        admitted,
        elapsed: last.saturating_duration_since(start),
    })
}

async fn shard_main(plan: Arc<Plan>) -> ShardOut {
    let (me, shards) = (shard_id(), n_shards());
    let shared = Rc::new(Shared {
        outcomes: RefCell::new(Vec::new()),
        hist: RefCell::new(new_hist()),
        admitted: RefCell::new(new_hist()),
        last: RefCell::new(None),
    });
    let tasks: Vec<_> = (0..plan.cfg.conns)
        .filter(|c| c % shards == me)
        .map(|c| spawn_local(connection(plan.clone(), c, shared.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let hist = shared.hist.replace(new_hist());
    let admitted = shared.admitted.replace(new_hist());
    let last = *shared.last.borrow();
    ShardOut {
        outcomes: shared.outcomes.take(),
        hist,
        admitted,
        last,
    }
}

struct Outstanding {
    j: usize,
    sent: Instant,
}

/// Drives connection `conn`: attempts `conn`, `conn + conns`, ... below `due_count`.
async fn connection(plan: Arc<Plan>, conn: usize, shared: Rc<Shared>) {
    let cfg = &plan.cfg;
    let mine: Vec<usize> = (conn..plan.due_count).step_by(cfg.conns).collect();
    let mut next = 0;
    let mut outq: VecDeque<Outstanding> = VecDeque::with_capacity(cfg.depth);
    let mut wbuf: Vec<u8> = Vec::new();
    let mut rbuf: Vec<u8> = Vec::new();
    let lose = |outq: &mut VecDeque<Outstanding>| {
        let mut out = shared.outcomes.borrow_mut();
        out.extend(outq.drain(..).map(|o| (o.j, Outcome::Lost)));
    };
    'reconnect: loop {
        let now = Instant::now();
        if now >= plan.drain_end || (next == mine.len() && outq.is_empty()) {
            break;
        }
        let connect_deadline = (now + cfg.timeout).min(plan.drain_end);
        let stream = match timeout_at(connect_deadline, TcpStream::connect(cfg.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => {
                sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        rbuf.clear();
        loop {
            let now = Instant::now();
            if now >= plan.drain_end {
                break 'reconnect;
            }
            // Send every attempt that is due, up to `depth` outstanding, in one write.
            wbuf.clear();
            while outq.len() < cfg.depth && next < mine.len() && plan.due(mine[next]) <= now {
                let j = mine[next];
                let a = plan.attempts[j];
                let body = format!("{{\"user\":\"{}\"}}", user_name(a.user));
                let path = format!("/items/{}/buy", item_name(a.item));
                wbuf.extend_from_slice(&request("POST", &path, Some(&body)));
                outq.push_back(Outstanding { j, sent: now });
                next += 1;
            }
            if !wbuf.is_empty() {
                let (res, b) = stream.write_all(std::mem::take(&mut wbuf)).await;
                wbuf = b;
                if res.is_err() {
                    lose(&mut outq);
                    continue 'reconnect;
                }
            }
            if outq.is_empty() {
                if next == mine.len() {
                    break 'reconnect;
                }
                sleep_until(plan.due(mine[next])).await;
                continue;
            }
            // Wait for an answer, the next attempt falling due, or the oldest one's timeout.
            let oldest_timeout = outq.front().map_or(plan.drain_end, |o| o.sent + cfg.timeout);
            let mut wake = oldest_timeout.min(plan.drain_end);
            if outq.len() < cfg.depth && next < mine.len() {
                wake = wake.min(plan.due(mine[next]));
            }
            let chunk = match timeout_at(wake, stream.recv()).await {
                Err(_) => {
                    if Instant::now() >= oldest_timeout {
                        lose(&mut outq);
                        continue 'reconnect;
                    }
                    continue;
                }
                Ok(Err(_)) => {
                    lose(&mut outq);
                    continue 'reconnect;
                }
                Ok(Ok(c)) => c,
            };
            if chunk.is_empty() {
                lose(&mut outq);
                continue 'reconnect;
            }
            rbuf.extend_from_slice(&chunk);
            drop(chunk);
            let now = Instant::now();
            let mut used = 0;
            let mut broken = false;
            loop {
                match parse_response(&rbuf[used..]) {
                    Ok(Some((resp, n))) => {
                        used += n;
                        let Some(o) = outq.pop_front() else {
                            // An answer nobody asked for: the stream is out of step.
                            broken = true;
                            break;
                        };
                        let us = now.saturating_duration_since(plan.due(o.j)).as_micros() as u64;
                        shared.hist.borrow_mut().saturating_record(us);
                        let outcome = classify(&resp);
                        if !matches!(outcome, Outcome::TooMany { .. } | Outcome::Unavailable { .. }) {
                            shared.admitted.borrow_mut().saturating_record(us);
                        }
                        shared.outcomes.borrow_mut().push((o.j, outcome));
                        *shared.last.borrow_mut() = Some(now);
                        if resp.close {
                            broken = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        broken = true;
                        break;
                    }
                }
            }
            rbuf.drain(..used);
            if broken {
                lose(&mut outq);
                continue 'reconnect;
            }
        }
    }
    // Whatever is still outstanding got no answer in time; the rest was never sent.
    lose(&mut outq);
    shared
        .outcomes
        .borrow_mut()
        .extend(mine[next..].iter().map(|&j| (j, Outcome::Unsent)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_has_every_user_once_plus_two_percent_repeats_of_earlier_users() {
        let p = plan(20_000, 3, 1000, false);
        let firsts: Vec<_> = p.iter().filter(|a| !a.repeat).collect();
        assert_eq!(firsts.len(), 20_000);
        assert!(firsts.iter().enumerate().all(|(i, a)| a.user as usize == i));
        let repeats = p.len() - firsts.len();
        assert!((350..=420).contains(&repeats), "{repeats} repeats");
        // A repeat comes after the user's first attempt, on the same item, by an early user.
        let mut first_at = vec![usize::MAX; 20_000];
        for (j, a) in p.iter().enumerate() {
            if !a.repeat {
                first_at[a.user as usize] = j;
            } else {
                assert!(first_at[a.user as usize] + REPEAT_LAG <= j, "{a:?} at {j}");
                assert_eq!(a.item, p[first_at[a.user as usize]].item);
                assert!(a.user < 1000);
            }
        }
        // Item 0 is the hottest, and every item is wanted by more users than its stock.
        let mut demand = [0u32; 3];
        for a in &firsts {
            demand[a.item as usize] += 1;
        }
        assert!(demand[0] > demand[1] && demand[1] > demand[2], "{demand:?}");
        assert!(demand[2] > 1000, "{demand:?}");
        // Deterministic, and --hot sends everybody to item 0.
        assert_eq!(p, plan(20_000, 3, 1000, false));
        assert!(plan(1000, 3, 200, true).iter().all(|a| a.item == 0));
    }

    #[test]
    fn answers_are_classified_by_status_and_body() {
        let r = |status, body: &str, retry_after| Response {
            status,
            retry_after,
            close: false,
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            classify(&r(
                200,
                r#"{"order":"o1","item":"item-0","user":"user-3"}"#,
                false
            )),
            Outcome::Bought {
                order: "o1".into(),
                item: "item-0".into(),
                user: "user-3".into()
            }
        );
        assert_eq!(
            classify(&r(409, r#"{"error":"sold_out"}"#, false)),
            Outcome::SoldOut
        );
        assert_eq!(
            classify(&r(409, r#"{"error":"already_bought","order":"o1"}"#, false)),
            Outcome::AlreadyBought {
                order: Some("o1".into())
            }
        );
        assert_eq!(
            classify(&r(503, "", true)),
            Outcome::Unavailable { retry_after: true }
        );
        assert_eq!(
            classify(&r(429, "", false)),
            Outcome::TooMany { retry_after: false }
        );
        assert!(matches!(
            classify(&r(200, "not json", false)),
            Outcome::Other { status: 200, .. }
        ));
        assert!(matches!(
            classify(&r(409, r#"{"error":"what"}"#, false)),
            Outcome::Other { status: 409, .. }
        ));
        assert!(matches!(
            classify(&r(404, "", false)),
            Outcome::Other { status: 404, .. }
        ));
    }
}
