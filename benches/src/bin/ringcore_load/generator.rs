//! The generator: one runtime shard per generator core, each driving its share of the
//! connections on the open-loop schedule ([`ringcore_testkit::schedule`]), responses
//! delimited by [`ringcore_testkit::http1::Delimiter`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringcore_runtime::net::TcpStream;
use ringcore_runtime::time::{sleep, sleep_until, timeout_at};
use ringcore_runtime::{n_shards, shard_id, spawn_local, Runtime};

use ringcore_testkit::http1::{Delimiter, RequestKind};
use ringcore_testkit::schedule::OpenLoop;

use super::cli::Args;
use super::report::{error_rate, new_hist, percentiles, status_class, RunResult, StatusClasses};
use super::request::RequestTemplate;
use super::timeline::{Row, Timeline};

/// What one shard sends back to the main thread.
#[derive(Debug)]
pub(crate) struct ShardOut {
    pub(crate) hist: Histogram<u64>,
    /// The admitted answers' latencies (not 429, not 5xx).
    pub(crate) admitted: Histogram<u64>,
    /// Responses (any status) completed inside the measurement window.
    pub(crate) completed_in_window: u64,
    /// Responses to requests due inside the window (these are in `hist`).
    pub(crate) requests: u64,
    pub(crate) non_2xx: u64,
    pub(crate) errors: u64,
    pub(crate) unfinished: u64,
    pub(crate) cpu_ns: u64,
    pub(crate) status: [u64; 6],
    pub(crate) status_all: [u64; 6],
    /// The highest request index `k` any connection of this shard reached.
    pub(crate) max_k: u64,
    /// `--timeline` rows (empty without it).
    pub(crate) timeline: Vec<Row>,
}

#[derive(Default)]
pub(crate) struct Local {
    pub(crate) completed_in_window: Cell<u64>,
    pub(crate) requests: Cell<u64>,
    pub(crate) non_2xx: Cell<u64>,
    pub(crate) errors: Cell<u64>,
    pub(crate) unfinished: Cell<u64>,
    pub(crate) progress: Cell<u64>,
    pub(crate) status: [Cell<u64>; 6],
    pub(crate) status_all: [Cell<u64>; 6],
    pub(crate) max_k: Cell<u64>,
}

pub(crate) fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

/// On-CPU time of the calling thread in ns (first field of its schedstat).
pub(crate) fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Shared, read-only plan of one run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) addr: String,
    pub(crate) request: RequestTemplate,
    /// Sequence number (`{n}`) of request 0 of connection 0.
    pub(crate) seq_base: u64,
    pub(crate) rate: f64,
    pub(crate) conns: usize,
    pub(crate) depth: usize,
    pub(crate) timeout: Duration,
    pub(crate) start: Instant,
    pub(crate) window_start: Instant,
    pub(crate) window_end: Instant,
    pub(crate) drain_end: Instant,
    /// HEAD requests get answers without bodies.
    pub(crate) kind: RequestKind,
    /// `--timeline`: keep one request in this many (0: no timeline).
    pub(crate) timeline_every: u64,
}

impl Plan {
    pub(crate) fn closed(&self) -> bool {
        self.rate == 0.0
    }
    /// The open-loop schedule (meaningless in closed loop, where `rate` is 0).
    pub(crate) fn schedule(&self) -> OpenLoop {
        OpenLoop {
            start: self.start,
            rate: self.rate,
            conns: self.conns,
        }
    }
    pub(crate) fn intended(&self, conn: usize, k: u64) -> Instant {
        self.schedule().due_for(conn, k)
    }
    /// True once connection state `next_due` (or, closed loop, the clock) says no more sends.
    pub(crate) fn sending_over(&self, next_due: Instant, now: Instant) -> bool {
        if self.closed() {
            now >= self.window_end
        } else {
            next_due >= self.window_end
        }
    }
    pub(crate) fn in_window(&self, t: Instant) -> bool {
        t >= self.window_start && t < self.window_end
    }
}

pub(crate) struct Outstanding {
    /// The request's slot in the merged schedule (`{n}` less the run's base).
    pub(crate) slot: u64,
    pub(crate) intended: Instant,
    pub(crate) sent: Instant,
}

/// Drives one connection until its schedule (or, closed loop, the window) ends and its last
/// responses are in, or the drain deadline passes.
/// The latency histograms of one shard: every answer, and the admitted ones.
pub(crate) struct Hists {
    pub(crate) all: Histogram<u64>,
    pub(crate) admitted: Histogram<u64>,
    pub(crate) timeline: Timeline,
}

pub(crate) fn is_admitted(status: u16) -> bool {
    status != 429 && !(500..600).contains(&status)
}

pub(crate) async fn connection(plan: Rc<Plan>, conn: usize, local: Rc<Local>, hist: Rc<RefCell<Hists>>) {
    let closed = plan.closed();
    let mut k: u64 = 0;
    let mut next_due = if closed {
        plan.start
    } else {
        plan.intended(conn, 0)
    };
    let mut outq: VecDeque<Outstanding> = VecDeque::with_capacity(plan.depth);
    let mut wbuf: Vec<u8> = Vec::with_capacity(plan.request.len_hint() * plan.depth);
    let lose = |outq: &mut VecDeque<Outstanding>| {
        bump(&local.errors, outq.len() as u64);
        outq.clear();
    };
    'reconnect: loop {
        let now = Instant::now();
        if now >= plan.drain_end || (plan.sending_over(next_due, now) && outq.is_empty()) {
            break;
        }
        // A connect is bounded by the request timeout: against a listener whose backlog is
        // full the SYN goes unanswered, and waiting for the run's end would hide that stall.
        let connect_deadline = (now + plan.timeout).min(plan.drain_end);
        let stream = match timeout_at(connect_deadline, TcpStream::connect(plan.addr.as_str())).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => {
                bump(&local.errors, 1);
                sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) if Instant::now() < plan.drain_end => {
                bump(&local.errors, 1);
                continue;
            }
            Err(_) => break,
        };
        let _ = stream.set_nodelay(true);
        let mut parser = Delimiter::new(plan.kind);
        if next_due < plan.start {
            next_due = plan.start;
        }
        loop {
            // Send every request that is due, up to `depth` outstanding, in one write.
            let now = Instant::now();
            if now >= plan.drain_end {
                break 'reconnect;
            }
            wbuf.clear();
            while outq.len() < plan.depth && next_due <= now && !plan.sending_over(next_due, now) {
                // The request's slot in the merged schedule: unique over connections and cores.
                let slot = plan.schedule().slot(conn, k);
                plan.request.render(plan.seq_base + slot, &mut wbuf);
                outq.push_back(Outstanding {
                    slot,
                    intended: if closed { now } else { next_due },
                    sent: now,
                });
                k += 1;
                if !closed {
                    next_due = plan.intended(conn, k);
                }
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
                if plan.sending_over(next_due, now) {
                    break 'reconnect;
                }
                sleep_until(next_due).await;
                continue;
            }
            // Wait for a response, a request falling due, or the oldest request's timeout.
            let oldest_timeout = outq.front().map_or(plan.drain_end, |o| o.sent + plan.timeout);
            let mut wake = oldest_timeout.min(plan.drain_end);
            if !closed && outq.len() < plan.depth && next_due < plan.window_end {
                wake = wake.min(next_due);
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
            let now = Instant::now();
            let mut extra = false;
            let mut h = hist.borrow_mut();
            let mut answer = |status: u16| {
                let Some(o) = outq.pop_front() else {
                    extra = true;
                    return;
                };
                if plan.in_window(now) {
                    bump(&local.completed_in_window, 1);
                }
                bump(&local.progress, 1);
                let class = status_class(status);
                bump(&local.status_all[class], 1);
                if plan.in_window(o.intended) {
                    bump(&local.requests, 1);
                    bump(&local.status[class], 1);
                    if !(200..300).contains(&status) {
                        bump(&local.non_2xx, 1);
                    }
                    let us = now.saturating_duration_since(o.intended).as_micros() as u64;
                    h.all.saturating_record(us);
                    if is_admitted(status) {
                        h.admitted.saturating_record(us);
                    }
                    h.timeline
                        .record(o.slot, plan.window_start, o.intended, us, status);
                }
            };
            if chunk.is_empty() {
                // EOF: it ends a close-delimited answer; whatever else was outstanding is lost.
                let res = parser.eof();
                if let Ok(Some(status)) = res {
                    answer(status);
                }
                bump(&local.errors, u64::from(extra));
                drop(h);
                lose(&mut outq);
                continue 'reconnect;
            }
            let res = parser.feed(&chunk, &mut answer);
            drop(h);
            drop(chunk);
            if res.is_err() || extra {
                bump(&local.errors, u64::from(extra));
                lose(&mut outq);
                continue 'reconnect;
            }
        }
    }
    local.max_k.set(local.max_k.get().max(k));
    // Requests due in the window that never completed or failed (the backlog at the end).
    let mut unfinished = outq.iter().filter(|o| plan.in_window(o.intended)).count() as u64;
    if !closed {
        while next_due < plan.window_end {
            if next_due >= plan.window_start {
                unfinished += 1;
            }
            k += 1;
            next_due = plan.intended(conn, k);
        }
    }
    bump(&local.unfinished, unfinished);
}

pub(crate) async fn shard_main(plan: Arc<Plan>, progress: Option<Arc<AtomicU64>>) -> ShardOut {
    let (me, shards) = (shard_id(), n_shards());
    let plan = Rc::new(Plan::clone(&plan));
    let local = Rc::new(Local::default());
    let hist = Rc::new(RefCell::new(Hists {
        all: new_hist(),
        admitted: new_hist(),
        timeline: Timeline::new(plan.timeline_every),
    }));
    let tasks: Vec<_> = (0..plan.conns)
        .filter(|c| c % shards == me)
        .map(|c| spawn_local(connection(plan.clone(), c, local.clone(), hist.clone())))
        .collect();
    // CPU time of this shard's thread over the measurement window.
    let cpu = {
        let plan = plan.clone();
        spawn_local(async move {
            sleep_until(plan.window_start).await;
            let a = thread_cpu_ns();
            sleep_until(plan.window_end).await;
            thread_cpu_ns().saturating_sub(a)
        })
    };
    let ticker = progress.map(|p| {
        let local = local.clone();
        let end = plan.drain_end;
        spawn_local(async move {
            while Instant::now() < end {
                sleep(Duration::from_millis(100)).await;
                p.fetch_add(local.progress.replace(0), Ordering::Relaxed);
            }
        })
    });
    for t in tasks {
        let _ = t.await;
    }
    if let Some(t) = ticker {
        t.abort();
    }
    let cpu_ns = cpu.await.unwrap_or(0);
    let hists = hist.replace(Hists {
        all: new_hist(),
        admitted: new_hist(),
        timeline: Timeline::new(0),
    });
    ShardOut {
        hist: hists.all,
        admitted: hists.admitted,
        completed_in_window: local.completed_in_window.get(),
        requests: local.requests.get(),
        non_2xx: local.non_2xx.get(),
        errors: local.errors.get(),
        unfinished: local.unfinished.get(),
        cpu_ns,
        status: local.status.each_ref().map(Cell::get),
        status_all: local.status_all.each_ref().map(Cell::get),
        max_k: local.max_k.get(),
        timeline: hists.timeline.rows,
    }
}

/// What one run hands back: the result, the first sequence number the next run may use, and
/// each shard's `--timeline` rows.
pub(crate) type RunOut = (RunResult, u64, Vec<Vec<Row>>);

/// One run at `rate`; request `{n}`s start at `seq_base`.
pub(crate) fn run_once(args: &Args, rate: f64, seq_base: u64) -> Result<RunOut, String> {
    let rt = Runtime::builder()
        .cores(args.cores.to_runtime())
        .handle_signals(true)
        // Open-loop timers fall due every few µs; spinning for them would burn the core and
        // inflate the generator's CPU per request. The ring wait's timeout is precise enough.
        .idle_spin(Duration::ZERO)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let n_cores = rt.cores().len();
    let request = RequestTemplate::new(args);
    // Leave the shards time to start and connect before the schedule begins.
    let start = Instant::now() + Duration::from_millis(50);
    let window_start = start + args.warmup;
    let window_end = window_start + args.duration;
    let plan = Arc::new(Plan {
        addr: args.addr.clone(),
        request,
        seq_base,
        rate,
        conns: args.conns,
        depth: args.depth,
        timeout: args.timeout,
        start,
        window_start,
        window_end,
        drain_end: window_end + args.timeout,
        kind: if args.method == "HEAD" {
            RequestKind::Head
        } else {
            RequestKind::Other
        },
        timeline_every: args.timeline.as_ref().map_or(0, |t| t.1),
    });
    let total = args.warmup + args.duration;
    let show = args.progress && total > Duration::from_secs(3) && std::io::stdout().is_terminal();
    let counter = show.then(|| Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let bar_thread = counter.clone().map(|c| {
        let stop = stop.clone();
        let label = if rate == 0.0 {
            "closed loop".to_string()
        } else {
            format!("{rate:.0} req/s")
        };
        std::thread::spawn(move || progress_bar(c, stop, start, total, label))
    });
    let p2 = plan.clone();
    let out = rt.run(move || shard_main(p2.clone(), counter.clone()));
    stop.store(true, Ordering::Relaxed);
    if let Some(t) = bar_thread {
        let _ = t.join();
    }
    let outs = out.map_err(|e| format!("runtime: {e}"))?;
    if outs.iter().any(Option::is_none) {
        return Err("interrupted".into());
    }
    let mut hist = new_hist();
    let mut admitted = new_hist();
    let (mut completed, mut requests, mut non_2xx, mut errors, mut unfinished, mut cpu) = (0, 0, 0, 0, 0, 0);
    let (mut status, mut status_all, mut max_k) = ([0u64; 6], [0u64; 6], 0);
    let mut timeline = Vec::new();
    for mut o in outs.into_iter().flatten() {
        timeline.push(std::mem::take(&mut o.timeline));
        for i in 0..6 {
            status[i] += o.status[i];
            status_all[i] += o.status_all[i];
        }
        max_k = max_k.max(o.max_k);
        hist.add(&o.hist).map_err(|e| format!("histogram merge: {e}"))?;
        admitted
            .add(&o.admitted)
            .map_err(|e| format!("histogram merge: {e}"))?;
        completed += o.completed_in_window;
        requests += o.requests;
        non_2xx += o.non_2xx;
        errors += o.errors;
        unfinished += o.unfinished;
        cpu += o.cpu_ns;
    }
    let secs = args.duration.as_secs_f64();
    let achieved = completed as f64 / secs;
    let next_seq = seq_base + max_k * args.conns as u64;
    let result = RunResult {
        url: args.url.clone(),
        target_rate: rate,
        achieved_rate: achieved,
        requests,
        errors,
        error_rate: error_rate(errors, status_all.iter().sum()),
        non_2xx,
        duration_s: secs,
        conns: args.conns,
        depth: args.depth,
        latency_us: percentiles(&hist),
        latency_admitted_us: percentiles(&admitted),
        admitted: admitted.len(),
        saturated: rate > 0.0 && achieved < 0.99 * rate,
        generator_cpu_ns_per_req: if completed > 0 {
            cpu as f64 / completed as f64
        } else {
            0.0
        },
        generator_busy: cpu as f64 / (secs * 1e9 * n_cores.max(1) as f64),
        unfinished,
        cores: n_cores,
        status: StatusClasses::from_counts(status),
        status_all: StatusClasses::from_counts(status_all),
    };
    Ok((result, next_seq, timeline))
}

pub(crate) fn progress_bar(
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    start: Instant,
    total: Duration,
    label: String,
) {
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {elapsed}/{duration} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label);
    let (mut last_n, mut last_t) = (0u64, Instant::now());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        let n = count.load(Ordering::Relaxed);
        let rate = (n - last_n) as f64 / now.duration_since(last_t).as_secs_f64().max(1e-9);
        (last_n, last_t) = (n, now);
        bar.set_position(
            (now.saturating_duration_since(start).as_millis() as u64).min(total.as_millis() as u64),
        );
        bar.set_message(format!("{rate:.0} req/s"));
    }
    bar.finish_and_clear();
}
