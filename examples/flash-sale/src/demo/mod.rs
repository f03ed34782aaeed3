//! `flash-sale demo`: start the service, create items, fire a bounded flash crowd, report.
//!
//! ```text
//! flash-sale demo [--cores all|N|LIST] [--items K=3] [--stock S=1000] [--users U=20000]
//!                 [--rate R=20000] [--conns C=64] [--duration SECS=10] [--hot]
//!                 [--shed-grace MS]   (passed to the service: see `serve --shed-grace`)
//! ```
//!
//! The service runs as a child process of this executable (`serve` on an ephemeral port with
//! a fresh data directory), stopped and cleaned up on every way out. Each user `user-<i>`
//! tries once to buy one item (item 0 the hottest; all of them item 0 with `--hot`), and one
//! attempt in fifty is a repeat by an earlier user. The attempts go out open loop at `R` per
//! second over `C` keep-alive connections, pipelined, until every user has tried or the
//! duration cap passes; latency runs from each attempt's scheduled time.
//!
//! Afterwards the demo checks what a flash sale must guarantee: every item whose demand
//! exceeded its stock sold exactly its stock, nobody bought an item twice, every confirmed
//! order reads back, `already_bought` names the user's own order, and shed answers carry
//! `Retry-After`. Exit status 0 if every check holds, 1 if one fails or the run breaks, 2 for
//! a bad command line.

mod check;
mod crowd;
mod http;
mod server;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use hdrhistogram::Histogram;
use ringcore_cli::CoreSpec;

use check::{Check, Evidence, ItemState, OrderLookup, OrderState};
use crowd::{item_name, Attempt, Outcome};
use http::{request, Client};
use server::Service;

/// Bound on every setup and check request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// An attempt unanswered this long counts as lost.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most requests outstanding on one crowd connection.
const DEPTH: usize = 16;
/// Reads of item state may be cached per core for up to 100 ms.
const SETTLE: Duration = Duration::from_millis(200);
/// Connections (threads) that read the orders back, and requests pipelined per batch.
const CHECKERS: usize = 4;
const CHECK_BATCH: usize = 64;

/// `flash-sale demo`'s options.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Options {
    /// Cores of the service (passed to `serve --cores`): `all`, `N` or a list such as
    /// `0,2-3`; default: all.
    #[arg(long, value_name = "all|N|LIST")]
    pub cores: Option<CoreSpec>,
    /// Items for sale (item 0 the hottest).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub items: u32,
    /// Stock of each item.
    #[arg(long, default_value_t = 1000)]
    pub stock: u64,
    /// Users in the crowd (each tries once; one attempt in fifty is a repeat).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,
    /// Attempts per second, open loop.
    #[arg(long, default_value_t = 20_000.0, value_parser = positive)]
    pub rate: f64,
    /// Keep-alive connections of the crowd.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub conns: u32,
    /// Nothing is sent after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = positive_secs)]
    pub duration: Duration,
    /// Every user wants item 0.
    #[arg(long)]
    pub hot: bool,
    /// Passed to `serve --shed-grace` (see `flash-sale serve --help`).
    #[arg(long = "shed-grace", value_name = "MS")]
    pub shed_grace_ms: Option<u64>,
}

fn positive(s: &str) -> Result<f64, String> {
    let v = ringcore_cli::non_negative(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err("must be > 0".into())
    }
}

fn positive_secs(s: &str) -> Result<Duration, String> {
    let d = ringcore_cli::secs(s)?;
    if d.is_zero() {
        Err("must be > 0".into())
    } else {
        Ok(d)
    }
}

/// Cores the service will run on, for the report.
fn server_cores(cores: Option<&CoreSpec>) -> usize {
    let all = std::thread::available_parallelism().map_or(1, usize::from);
    cores.unwrap_or(&CoreSpec::All).count_in(all)
}

/// Runs the demo; exit status 0 if every invariant held.
pub fn main(opts: &Options) -> ExitCode {
    match run(opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("flash-sale demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole demo; `Ok(all invariants held)`.
fn run(opts: &Options) -> Result<bool, String> {
    let extra: Vec<String> = match opts.shed_grace_ms {
        Some(ms) => vec!["--shed-grace".into(), ms.to_string()],
        None => Vec::new(),
    };
    let cores = opts.cores.as_ref().map(CoreSpec::to_string);
    let service = Service::start(cores.as_deref(), &extra)?;
    let addr = service.addr();
    eprintln!(
        "flash-sale demo: service pid {} listening on {addr}",
        service.pid()
    );
    create_items(addr, opts)?;

    let attempts = crowd::plan(opts.users, opts.items, opts.stock, opts.hot);
    let gen_cores = std::thread::available_parallelism().map_or(1, usize::from).min(2);
    let cfg = crowd::Config {
        addr,
        rate: opts.rate,
        conns: opts.conns as usize,
        depth: DEPTH,
        cap: opts.duration,
        timeout: ATTEMPT_TIMEOUT,
        cores: gen_cores,
    };
    let fired = crowd::fire(&cfg, attempts.clone())?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(summary(opts, &attempts, &fired).as_bytes());
    let _ = out.flush();

    std::thread::sleep(SETTLE);
    let item_states: Vec<_> = (0..opts.items).map(|k| item_state(addr, k)).collect();
    let orders = look_up_orders(addr, check::orders_to_look_up(&fired.outcomes));
    let checks = check::invariants(&Evidence {
        stock: opts.stock,
        items: opts.items,
        attempts: &attempts,
        outcomes: &fired.outcomes,
        item_states: &item_states,
        orders: &orders,
    });
    let _ = out.write_all(invariant_lines(&checks).as_bytes());
    let _ = out.flush();
    drop(service);
    Ok(checks.iter().all(|c| c.ok))
}

fn create_items(addr: SocketAddr, opts: &Options) -> Result<(), String> {
    let mut client = Client::new(addr, CLIENT_TIMEOUT);
    for k in 0..opts.items {
        let name = item_name(k);
        let body = format!(
            "{{\"stock\": {}, \"name\": \"Flash item {k}\", \"price\": {}}}",
            opts.stock,
            1999 + 1000 * u64::from(k)
        );
        let resp = client
            .send(&request("PUT", &format!("/items/{name}"), Some(&body)))
            .map_err(|e| format!("PUT /items/{name}: {e}"))?;
        if resp.status != 201 {
            return Err(format!(
                "PUT /items/{name}: expected 201, got {} {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
    }
    Ok(())
}

fn item_state(addr: SocketAddr, k: u32) -> Result<ItemState, String> {
    let name = item_name(k);
    let resp = Client::new(addr, CLIENT_TIMEOUT)
        .send(&request("GET", &format!("/items/{name}"), None))
        .map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!(
            "status {} {}",
            resp.status,
            String::from_utf8_lossy(&resp.body)
        ));
    }
    serde_json::from_slice(&resp.body).map_err(|e| format!("body: {e}"))
}

/// `GET /orders/{id}` for every id, over a few keep-alive connections in parallel.
fn look_up_orders(addr: SocketAddr, ids: Vec<String>) -> HashMap<String, OrderLookup> {
    let per = ids.len().div_ceil(CHECKERS).max(1);
    let mut out = HashMap::with_capacity(ids.len());
    std::thread::scope(|s| {
        let workers: Vec<_> = ids
            .chunks(per)
            .map(|ids| {
                s.spawn(move || {
                    let mut client = Client::new(addr, CLIENT_TIMEOUT);
                    let mut found = Vec::with_capacity(ids.len());
                    for batch in ids.chunks(CHECK_BATCH) {
                        let reqs: Vec<_> = batch
                            .iter()
                            .map(|id| request("GET", &format!("/orders/{id}"), None))
                            .collect();
                        match client.batch(&reqs) {
                            Ok(resps) => {
                                for (id, r) in batch.iter().zip(resps) {
                                    let got = match r.status {
                                        200 => serde_json::from_slice::<OrderState>(&r.body)
                                            .map(Some)
                                            .map_err(|e| format!("body: {e}")),
                                        404 => Ok(None),
                                        s => Err(format!("status {s}")),
                                    };
                                    found.push((id.clone(), got));
                                }
                            }
                            Err(e) => found.extend(batch.iter().map(|id| (id.clone(), Err(e.to_string())))),
                        }
                    }
                    found
                })
            })
            .collect();
        for w in workers {
            if let Ok(found) = w.join() {
                out.extend(found);
            }
        }
    });
    out
}

/// `1.23 ms`, with fewer decimals as the value grows.
fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 100.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.0} ms")
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    ok: u64,
    sold_out: u64,
    already: u64,
    too_many: u64,
    unavailable: u64,
    other: u64,
    lost: u64,
    unsent: u64,
    cut: u64,
}

fn tally(outcomes: &[Outcome]) -> Tally {
    let mut t = Tally::default();
    for o in outcomes {
        let n = match o {
            Outcome::Bought { .. } => &mut t.ok,
            Outcome::SoldOut => &mut t.sold_out,
            Outcome::AlreadyBought { .. } => &mut t.already,
            Outcome::TooMany { .. } => &mut t.too_many,
            Outcome::Unavailable { .. } => &mut t.unavailable,
            Outcome::Other { .. } => &mut t.other,
            Outcome::Lost => &mut t.lost,
            Outcome::Unsent => &mut t.unsent,
            Outcome::Cut => &mut t.cut,
        };
        *n += 1;
    }
    t
}

fn summary(opts: &Options, attempts: &[Attempt], fired: &crowd::Fired) -> String {
    let t = tally(&fired.outcomes);
    let answered = t.ok + t.sold_out + t.already + t.too_many + t.unavailable + t.other;
    let sent = answered + t.lost;
    let mut s = format!(
        "flash sale: {} item{} x {} stock, {} users{}, {:.0} req/s offered, {} core{}\n",
        opts.items,
        if opts.items == 1 { "" } else { "s" },
        opts.stock,
        opts.users,
        if opts.hot { " all after item-0" } else { "" },
        opts.rate,
        server_cores(opts.cores.as_ref()),
        if server_cores(opts.cores.as_ref()) == 1 {
            ""
        } else {
            "s"
        },
    );
    // Users who tried each item (first tries that went out).
    let mut demand = vec![0u64; opts.items as usize];
    for (a, o) in attempts.iter().zip(&fired.outcomes) {
        if !a.repeat && !matches!(o, Outcome::Cut | Outcome::Unsent) {
            demand[a.item as usize] += 1;
        }
    }
    let wants: Vec<_> = demand
        .iter()
        .enumerate()
        .filter(|(_, &d)| d > 0)
        .map(|(k, d)| format!("{}: {d} users", item_name(k as u32)))
        .collect();
    s += &format!("  demand        {}\n", wants.join("  "));
    s += &format!(
        "  requests      {sent:<7} (200: {}  sold_out: {}  already_bought: {}  429: {}  503: {}  other: {}  lost: {})\n",
        t.ok, t.sold_out, t.already, t.too_many, t.unavailable, t.other, t.lost
    );
    s += &format!("  latency       {}\n", latency_line(&fired.hist));
    s += &format!(
        "  admitted      {}   (answers but 429/503)\n",
        latency_line(&fired.admitted)
    );
    let secs = fired.elapsed.as_secs_f64();
    let rate = if secs > 0.0 { answered as f64 / secs } else { 0.0 };
    s += &format!("  throughput    {rate:.0} req/s over {secs:.2} s\n");
    if answered > 0 && rate < 0.9 * opts.rate {
        s += &format!(
            "  note          {rate:.0} of {:.0} req/s answered: the service (or the generator, on at most \
2 cores of this machine) fell behind, and the latency above includes that wait\n",
            opts.rate
        );
    }
    if t.cut > 0 {
        s += &format!(
            "  not sent      {} attempts: the {:?} duration cap came first\n",
            t.cut, opts.duration
        );
    }
    if t.unsent > 0 {
        s += &format!(
            "  unsent        {} attempts were due but never sent (no connection, or {DEPTH} already outstanding)\n",
            t.unsent
        );
    }
    if t.lost > 0 {
        s += &format!(
            "  lost          {} attempts got no answer in {ATTEMPT_TIMEOUT:?} (or their connection broke)\n",
            t.lost
        );
    }
    s
}

fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no answers".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

fn invariant_lines(checks: &[Check]) -> String {
    let mut s = String::from("invariants\n");
    for c in checks {
        s += &format!("  [{}] {}\n", if c.ok { "ok" } else { "FAIL" }, c.text);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Demo {
        #[command(flatten)]
        o: Options,
    }

    fn parse_args(s: &str) -> Result<Options, clap::Error> {
        use clap::Parser;
        Demo::try_parse_from(std::iter::once("demo").chain(s.split_whitespace())).map(|d| d.o)
    }

    #[test]
    fn command_line() {
        let d = parse_args("").unwrap();
        assert_eq!(
            (
                d.cores,
                d.items,
                d.stock,
                d.users,
                d.rate,
                d.conns,
                d.duration,
                d.hot,
                d.shed_grace_ms
            ),
            (
                None,
                3,
                1000,
                20_000,
                20_000.0,
                64,
                Duration::from_secs(10),
                false,
                None
            )
        );
        let o = parse_args(
            "--cores 2 --items 2 --stock=200 --users 1000 --rate 4000 --conns 8 --duration 2.5 --hot \
             --shed-grace 500",
        )
        .unwrap();
        assert_eq!(
            o,
            Options {
                cores: Some(CoreSpec::First(2)),
                items: 2,
                stock: 200,
                users: 1000,
                rate: 4000.0,
                conns: 8,
                duration: Duration::from_millis(2500),
                hot: true,
                shed_grace_ms: Some(500),
            }
        );
        for bad in [
            "--cores 0",
            "--items 0",
            "--rate 0",
            "--rate -5",
            "--duration 0",
            "--users",
            "--bogus 1",
            "--stock x",
        ] {
            assert!(parse_args(bad).is_err(), "{bad}");
        }
        assert_eq!(server_cores(Some(&CoreSpec::First(3))), 3);
        assert_eq!(server_cores(Some(&"0,2".parse().unwrap())), 2);
    }

    #[test]
    fn report_lines_line_up() {
        let mut hist = crowd::new_hist();
        for us in [300, 400, 500, 12_000] {
            hist.record(us).unwrap();
        }
        let attempts = crowd::plan(4, 2, 1, false);
        let outcomes = vec![
            Outcome::Bought {
                order: "o".into(),
                item: "item-0".into(),
                user: "user-0".into(),
            },
            Outcome::SoldOut,
            Outcome::Unavailable { retry_after: true },
            Outcome::Lost,
        ];
        let mut admitted = crowd::new_hist();
        admitted.record(400).expect("record");
        let fired = crowd::Fired {
            outcomes,
            hist,
            admitted,
            elapsed: Duration::from_millis(500),
        };
        let opts = Options {
            cores: Some(CoreSpec::First(2)),
            items: 2,
            stock: 1,
            users: 4,
            ..parse_args("").unwrap()
        };
        let s = summary(&opts, &attempts, &fired);
        let lines: Vec<_> = s.lines().collect();
        assert_eq!(
            lines[0],
            "flash sale: 2 items x 1 stock, 4 users, 20000 req/s offered, 2 cores"
        );
        assert!(lines[1].starts_with("  demand        item-"), "{s}");
        assert_eq!(
            lines[2],
            "  requests      4       (200: 1  sold_out: 1  already_bought: 0  429: 0  503: 1  other: 0  lost: 1)"
        );
        assert_eq!(
            lines[3],
            "  latency       p50 0.40 ms  p90 12.0 ms  p99 12.0 ms  p99.9 12.0 ms  max 12.0 ms"
        );
        assert_eq!(
            lines[4],
            "  admitted      p50 0.40 ms  p90 0.40 ms  p99 0.40 ms  p99.9 0.40 ms  max 0.40 ms   (answers but 429/503)"
        );
        assert_eq!(lines[5], "  throughput    6 req/s over 0.50 s");
        assert!(
            lines[6].starts_with("  note          6 of 20000 req/s answered"),
            "{s}"
        );
        assert!(lines[7].starts_with("  lost          1 attempts"), "{s}");
        let inv = invariant_lines(&[
            Check {
                ok: true,
                text: "a".into(),
            },
            Check {
                ok: false,
                text: "b".into(),
            },
        ]);
        assert_eq!(inv, "invariants\n  [ok] a\n  [FAIL] b\n");
        assert_eq!(
            (ms(412), ms(45_600), ms(123_456)),
            ("0.41 ms".into(), "45.6 ms".into(), "123 ms".into())
        );
    }
}
