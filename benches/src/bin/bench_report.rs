//! `bench_report`: turns the results JSON of `scripts/bench.sh` into the results part of
//! `docs/benchmarks.md` and two plots; `bench_report cpu-plot` draws `scripts/bench-http.sh`'s
//! CPU per request ratios.
//!
//! Run with: `bench_report --results bench-results/bench-DATE.json --doc docs/benchmarks.md
//! --svg-dir docs`, or `bench_report cpu-plot --data RATIOS --svg docs/bench-http-cpu.svg`
//!
//! The servers table comes from the results JSON (`peers`: name, binary, driver and what it
//! is, written by the scripts from the one table in `scripts/lib/bench-common.sh`). Every
//! server keeps its colour in every plot (`color_of`), whichever subset a run measured.
//!
//! Only the text between `<!-- bench.sh:begin -->` and `<!-- bench.sh:end -->` in `--doc` is
//! replaced (the block is put at the top of the file when the markers are missing); whatever
//! else the file holds, such as the section on the load generator, is kept as it is. The plots:
//! `bench-latency.svg` (latency at each percentile, per server, at one representative offered
//! rate, log scale) and `bench-throughput-latency.svg` (p99 against achieved rate, per server).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use plotters::prelude::*;
use serde::Deserialize;

const BEGIN: &str = "<!-- bench.sh:begin -->";
const END: &str = "<!-- bench.sh:end -->";
/// The server whose maximum sets the offered rates, ours, and the floor (as named in
/// `scripts/lib/bench-common.sh`).
const BASE: &str = "tokio_ct";
const OURS: &str = "rc_uring";
const BARE: &str = "bare";

#[derive(Debug, Deserialize, Clone, Default)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    p99_99: f64,
    max: f64,
}

#[derive(Debug, Deserialize, Clone)]
struct Load {
    target_rate: f64,
    achieved_rate: f64,
    requests: u64,
    errors: u64,
    non_2xx: u64,
    duration_s: f64,
    latency_us: Latency,
    #[serde(default)]
    generator_cpu_ns_per_req: f64,
}

#[derive(Debug, Deserialize, Clone)]
struct Run {
    server: String,
    /// "closed" or "sweep".
    phase: String,
    rep: u32,
    /// The offered rate as a fraction of tokio_ct's maximum (sweep runs).
    #[serde(default)]
    frac: Option<f64>,
    server_cpu_ns: f64,
    wall_ns: f64,
    server_busy_pct: f64,
    gen_core_busy_pct: f64,
    steal_pct: f64,
    load: Load,
}

impl Run {
    /// Server CPU per request: the CPU between the two reads (warm-up and connects included)
    /// over the requests the generator would have completed in that time at its achieved rate.
    fn cpu_ns_per_req(&self) -> f64 {
        let reqs = self.load.achieved_rate * self.wall_ns / 1e9;
        if reqs > 0.0 {
            self.server_cpu_ns / reqs
        } else {
            f64::NAN
        }
    }

    /// The generator, not the server, was the limit (or the run fell short with the server
    /// idle part of the time).
    fn generator_limited(&self) -> bool {
        let short = self.load.target_rate <= 0.0 || self.load.achieved_rate < 0.99 * self.load.target_rate;
        (short && self.server_busy_pct < 95.0) || self.gen_core_busy_pct > 95.0
    }
}

#[derive(Debug, Deserialize)]
struct Idle {
    server: String,
    binary: String,
    conns: u64,
    warm_kib: f64,
    held_kib: f64,
    kib_per_conn: f64,
}

/// One server of the run, from the scripts' shared table.
#[derive(Debug, Deserialize)]
struct Peer {
    name: String,
    binary: String,
    /// `RINGCORE_DRIVER` for the ringcore servers, empty for the others.
    #[serde(default)]
    driver: String,
    what: String,
}

#[derive(Debug, Deserialize)]
struct Results {
    meta: serde_json::Value,
    servers: Vec<String>,
    #[serde(default)]
    peers: Vec<Peer>,
    runs: Vec<Run>,
    #[serde(default)]
    idle: Vec<Idle>,
    #[serde(default)]
    idle_skipped: Vec<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians over the repetitions of one server at one offered rate.
#[derive(Debug, Clone, Default)]
struct Cell {
    limited: usize,
    achieved: f64,
    target: f64,
    lat: Latency,
    cpu: f64,
    busy: f64,
    gen_busy: f64,
    steal: f64,
    errors: u64,
    non_2xx: u64,
}

fn cell(runs: &[&Run]) -> Cell {
    let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(|r| f(r)).collect());
    Cell {
        limited: runs.iter().filter(|r| r.generator_limited()).count(),
        achieved: m(&|r| r.load.achieved_rate),
        target: m(&|r| r.load.target_rate),
        lat: Latency {
            p50: m(&|r| r.load.latency_us.p50),
            p90: m(&|r| r.load.latency_us.p90),
            p99: m(&|r| r.load.latency_us.p99),
            p99_9: m(&|r| r.load.latency_us.p99_9),
            p99_99: m(&|r| r.load.latency_us.p99_99),
            max: m(&|r| r.load.latency_us.max),
        },
        cpu: m(&|r| r.cpu_ns_per_req()),
        busy: m(&|r| r.server_busy_pct),
        gen_busy: m(&|r| r.gen_core_busy_pct),
        steal: m(&|r| r.steal_pct),
        errors: runs.iter().map(|r| r.load.errors).sum(),
        non_2xx: runs.iter().map(|r| r.load.non_2xx).sum(),
    }
}

fn us(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} us")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn mark(c: &Cell) -> &'static str {
    if c.limited > 0 {
        " ⚠"
    } else {
        ""
    }
}

fn meta_str(meta: &serde_json::Value, key: &str) -> String {
    match meta.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "?".into(),
    }
}

/// A warning when the 1-minute load average before the run was at least half the CPUs: other
/// work then shared the cores the server and the generator were pinned to.
fn busy_machine(meta: &serde_json::Value) -> String {
    let load: Option<f64> = meta_str(meta, "load_before")
        .split_whitespace()
        .next()
        .and_then(|l| l.parse().ok());
    let cpus: Option<f64> = meta_str(meta, "cpus").parse().ok();
    match (load, cpus) {
        (Some(l), Some(c)) if l >= 0.5 * c => format!(
            " **This machine was busy with other work** (load average {l} on {c} CPUs before the \
             run): the figures say as much about that work as about the servers."
        ),
        _ => String::new(),
    }
}

/// Sweep cells keyed by fraction (in thousandths, for ordering) then server.
type Sweep = BTreeMap<i64, BTreeMap<String, Cell>>;

fn sweep_cells(res: &Results) -> Sweep {
    let mut out: Sweep = BTreeMap::new();
    let mut keys: Vec<(i64, String)> = res
        .runs
        .iter()
        .filter(|r| r.phase == "sweep")
        .map(|r| ((r.frac.unwrap_or(0.0) * 1000.0).round() as i64, r.server.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    for (k, s) in keys {
        let runs: Vec<&Run> = res
            .runs
            .iter()
            .filter(|r| {
                r.phase == "sweep" && r.server == s && (r.frac.unwrap_or(0.0) * 1000.0).round() as i64 == k
            })
            .collect();
        out.entry(k).or_default().insert(s, cell(&runs));
    }
    out
}

fn closed_cells(res: &Results) -> BTreeMap<String, Cell> {
    let mut out = BTreeMap::new();
    for s in &res.servers {
        let runs: Vec<&Run> = res
            .runs
            .iter()
            .filter(|r| r.phase == "closed" && &r.server == s)
            .collect();
        if !runs.is_empty() {
            out.insert(s.clone(), cell(&runs));
        }
    }
    out
}

/// The servers of the run, from the scripts' table (`peers` in the results JSON).
fn servers_table(res: &Results) -> String {
    let mut o = String::from("## Servers\n\n");
    o.push_str(
        "Each started by `scripts/lib/bench-common.sh` (`peer_start`, the one table of the \
         benchmark scripts): `taskset -c CORE BINARY --addr 127.0.0.1:PORT --cores 1`, the \
         ringcore ones with `RINGCORE_DRIVER` set (and checked in the start-up line). Before its \
         first run each must answer three pipelined `GET /plaintext` sent in two writes.\n\n",
    );
    o.push_str("| server | binary | what |\n|---|---|---|\n");
    for s in &res.servers {
        match res.peers.iter().find(|p| &p.name == s) {
            Some(p) if !p.driver.is_empty() => {
                let _ = writeln!(
                    o,
                    "| {s} | `{}` (`RINGCORE_DRIVER={}`) | {} |",
                    p.binary, p.driver, p.what
                );
            }
            Some(p) => {
                let _ = writeln!(o, "| {s} | `{}` | {} |", p.binary, p.what);
            }
            None => {
                let _ = writeln!(o, "| {s} | ? | (not in the results' server table) |");
            }
        }
    }
    o.push('\n');
    o
}

/// Ours over each other server, p99 then p99.9, at each offered rate.
fn tail_ratios(res: &Results, sweep: &Sweep, others: &[&String]) -> String {
    let mut o = String::new();
    if !res.servers.iter().any(|s| s == OURS) {
        return o;
    }
    let _ = writeln!(
        o,
        "### {OURS}'s tail over each other server's, same offered rate\n\n\
         Below 1: {OURS}'s is lower. Goal (issue 12): at or below 1 against every HTTP-parsing \
         peer at every rate up to 80% of tokio_ct's maximum.\n"
    );
    for (label, pick) in [
        ("p99", (|c: &Cell| c.lat.p99) as fn(&Cell) -> f64),
        ("p99.9", |c: &Cell| c.lat.p99_9),
    ] {
        let mut hdr = String::from("| offered |");
        let mut sep = String::from("|---|");
        for s in others {
            let _ = write!(hdr, " {label} / {s} |");
            sep.push_str("---:|");
        }
        let _ = writeln!(o, "{hdr}\n{sep}");
        for cells in sweep.values() {
            let Some(ours) = cells.get(OURS) else { continue };
            let mut line = format!("| {:.0}{} |", ours.target, mark(ours));
            for s in others {
                let v = cells.get(*s).map(pick).unwrap_or(f64::NAN);
                let _ = write!(line, " {} |", ratio(pick(ours), v));
            }
            let _ = writeln!(o, "{line}");
        }
        o.push('\n');
    }
    o
}

fn report(res: &Results) -> String {
    let meta = &res.meta;
    let sweep = sweep_cells(res);
    let closed = closed_cells(res);
    let others: Vec<&String> = res.servers.iter().filter(|s| s.as_str() != OURS).collect();
    let mut o = String::new();
    let generator = meta_str(meta, "generator");
    let _ = writeln!(o, "# Benchmarks: ringcore-http against its peers, open loop\n");
    if generator != "ringcore-load" {
        let _ = writeln!(
            o,
            "> **The figures below were NOT produced by `ringcore-load`** but by a stand-in \
             generator (`{generator}`): they only show the report's shape. Rerun \
             `scripts/bench.sh` for real figures.\n"
        );
    }
    let _ = writeln!(
        o,
        "Generated by `scripts/bench.sh` ({}) on {} in {} s:\n\n```sh\n{}\n```\n",
        meta_str(meta, "mode"),
        meta_str(meta, "date"),
        meta_str(meta, "elapsed_s"),
        meta_str(meta, "cmdline")
    );
    o.push_str(
        "Modes: `scripts/bench.sh` (full: 10 s runs after a 2 s warm-up, 3 repetitions, offered \
         rates at 20/40/60/80/95% of tokio_ct's maximum plus one above saturation, 3 closed-loop \
         repetitions, 10,000 idle connections; about 45 minutes for the ten servers) and \
         `scripts/bench.sh --quick` (2 s runs, 1 s warm-up, 1 repetition, 20/60/80/95% plus one \
         above, 1 closed-loop repetition, 2,000 idle connections; about 4.5 minutes for the ten \
         servers on 2 cores). `--servers \"tokio_ct rc_uring ...\"` runs a subset (tokio_ct is \
         always run: its maximum sets the rates); `--help` lists the options.\n\n",
    );
    if meta_str(meta, "mode") == "quick" {
        let _ = writeln!(
            o,
            "> **A quick run** ({} CPUs{}): 2 s runs, one repetition. Its figures are indicative \
             only; rankings within a few tens of percent, and every p99.9/max, need the full mode on \
             a quiet machine.{}\n",
            meta_str(meta, "cpus"),
            if meta_str(meta, "cpus").parse::<u32>().is_ok_and(|n| n <= 2) {
                ", a shared VM: the server and the generator each have one core and other work may run beside them"
            } else {
                ""
            },
            busy_machine(meta)
        );
    }
    let _ = writeln!(
        o,
        "Raw results: `{}` (gitignored; one JSON object per run with the generator's own JSON).\n",
        meta_str(meta, "results_file")
    );

    // ------------------------------------------------------------ servers
    o.push_str(&servers_table(res));

    // ------------------------------------------------------------ method
    let _ = writeln!(
        o,
        "## Method\n\n\
- **Open loop.** `ringcore-load` sends at a constant offered rate over {conns} keep-alive \
connections (depth {depth}) and measures every request's latency from its *intended* send time. A \
closed-loop client (wrk, ab) waits for a slow answer before sending the next request, so a server \
stall delays the requests that would have seen it and vanishes from the tail (coordinated \
omission); open loop keeps them in. Every server gets the SAME absolute offered rates, fractions \
of tokio_ct's closed-loop maximum measured first in the same run, plus one rate above saturation.\n\
- **Pinning.** The server runs alone on core {sc} (`taskset -c {sc}`, `--cores 1`), the generator \
alone on core {cc} (`--cores 1` under `taskset -c {cc}`). Sharing a core would make each one's \
latency the other's scheduling; nothing else of this script runs on those cores (other work on \
the machine may: see the load average under Machine).\n\
- **Runs.** Each run starts a fresh server; the generator warms up for {warm} s, then measures for \
{dur} s. Per rate the servers run back to back ({order}), repeated {reps} times, so drift of \
the shared machine hits all alike; cells are medians over the repetitions.\n\
- **Server CPU per request**: the sum over the server's threads of `/proc/PID/task/*/schedstat` \
field 1 (on-CPU ns, kernel TCP work on those threads included), read before and after the \
generator, over (achieved rate x that wall time). Core busy = that CPU over the wall time.\n\
- **Steal**: the `steal` column of `/proc/stat` (all CPUs) over the run, as % of all CPU time. \
This VM's hypervisor takes the CPU away for milliseconds at a time: a run with steal above 1% or so \
has a p99.9/max that partly measures the machine, not the server.\n\
- **Generator-limited (⚠)**: a run where the generator, not the server, was the limit: the \
achieved rate fell more than 1% short of the offered one (or closed loop) while the server's core \
was under 95% busy, or the generator's core (`/proc/stat`, core {cc}) was over 95% busy. In a \
cell, ⚠ means at least one repetition was so.\n\
- **Reading the plots.** `bench-latency.svg`: latency (log scale) at p50, p90, p99, p99.9, \
p99.99 and max for each server at one offered rate; flatter and lower is better; a curve that \
rises steeply after p99 has stalls. `bench-throughput-latency.svg`: p99 against achieved rate; \
the knee where a curve turns up is the server's usable capacity; a curve that stops moving right \
saturated (or its generator did).\n",
        conns = meta_str(meta, "conns"),
        depth = meta_str(meta, "depth"),
        sc = meta_str(meta, "server_core"),
        cc = meta_str(meta, "client_core"),
        warm = meta_str(meta, "warm"),
        dur = meta_str(meta, "dur"),
        reps = meta_str(meta, "reps"),
        order = res.servers.join(", "),
    );

    // ------------------------------------------------------------ machine
    let _ = writeln!(
        o,
        "## Machine\n\n- kernel: `{}`\n- CPU: {} ({} CPUs)\n- rustc: `{}`\n- crates: {}\n- servers built from commit `{}`{}\n- load average before/after: {} / {}\n",
        meta_str(meta, "kernel"),
        meta_str(meta, "cpu_model"),
        meta_str(meta, "cpus"),
        meta_str(meta, "rustc"),
        meta_str(meta, "crates"),
        meta_str(meta, "commit"),
        if meta_str(meta, "dirty") != "0" {
            format!(" plus uncommitted changes ({} entries of `git status`)", meta_str(meta, "dirty"))
        } else {
            String::new()
        },
        meta_str(meta, "load_before"),
        meta_str(meta, "load_after"),
    );

    // ------------------------------------------------------------ max throughput
    o.push_str("## Max throughput (closed loop)\n\n");
    let _ = writeln!(
        o,
        "`--rate 0`: every connection keeps {} request(s) outstanding. Medians over {} run(s).\n",
        meta_str(meta, "depth"),
        meta_str(meta, "closed_reps")
    );
    o.push_str("| server | req/s | vs tokio_ct | vs bare | CPU ns/req | CPU vs bare | server core busy | generator core busy | p99 | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let base_max = closed.get(BASE).map(|c| c.achieved).unwrap_or(f64::NAN);
    let naive_max = closed.get(BARE).map(|c| c.achieved).unwrap_or(f64::NAN);
    let naive_cpu = closed.get(BARE).map(|c| c.cpu).unwrap_or(f64::NAN);
    for s in &res.servers {
        if let Some(c) = closed.get(s) {
            let _ = writeln!(
                o,
                "| {s} | {:.0}{} | {} | {} | {:.0} | {} | {:.0}% | {:.0}% | {} | {} |",
                c.achieved,
                mark(c),
                ratio(c.achieved, base_max),
                ratio(c.achieved, naive_max),
                c.cpu,
                ratio(c.cpu, naive_cpu),
                c.busy,
                c.gen_busy,
                us(c.lat.p99),
                c.errors + c.non_2xx
            );
        }
    }
    o.push('\n');

    // ------------------------------------------------------------ sweep
    o.push_str("## Latency at fixed offered rates (open loop)\n\n");
    o.push_str(
        "![latency percentiles](bench-latency.svg)\n\n![p99 vs throughput](bench-throughput-latency.svg)\n\n",
    );
    o.push_str("| offered | server | achieved req/s | p50 | p99 | p99.9 | max | CPU ns/req | core busy | gen. core busy | steal | errors |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for cells in sweep.values() {
        for s in &res.servers {
            if let Some(c) = cells.get(s) {
                let frac = cells
                    .values()
                    .next()
                    .map(|c| c.target / base_max)
                    .unwrap_or(f64::NAN);
                let _ = writeln!(
                    o,
                    "| {:.0} ({:.0}%) | {s} | {:.0}{} | {} | {} | {} | {} | {:.0} | {:.0}% | {:.0}% | {:.2}% | {} |",
                    c.target,
                    frac * 100.0,
                    c.achieved,
                    mark(c),
                    us(c.lat.p50),
                    us(c.lat.p99),
                    us(c.lat.p99_9),
                    us(c.lat.max),
                    c.cpu,
                    c.busy,
                    c.gen_busy,
                    c.steal,
                    c.errors + c.non_2xx
                );
            }
        }
    }
    o.push_str("\n(offered % = of tokio_ct's closed-loop maximum in this run.)\n\n");

    // ------------------------------------------------------------ ratios
    o.push_str(&tail_ratios(res, &sweep, &others));

    // ------------------------------------------------------------ memory
    o.push_str("## Memory per idle connection\n\n");
    if res.idle.is_empty() {
        o.push_str("Not measured in this run.\n\n");
    } else {
        let _ = writeln!(
            o,
            "Fresh server, a 1 s closed-loop warm-up, then `idle_conns` opens {} keep-alive connections, one `GET /plaintext` on each (any complete `200 Hello, World!` that keeps the connection open), and holds them; VmRSS while held minus VmRSS after the warm-up, over the connections. The whole process is measured, so a runtime's fixed buffers count once, not per connection.\n",
            res.idle[0].conns
        );
        o.push_str("| server | binary | connections | VmRSS warm (KiB) | VmRSS holding (KiB) | per idle connection |\n|---|---|---:|---:|---:|---:|\n");
        for m in &res.idle {
            let _ = writeln!(
                o,
                "| {} | `{}` | {} | {:.0} | {:.0} | {:.2} KiB ({:.0} B) |",
                m.server,
                m.binary,
                m.conns,
                m.warm_kib,
                m.held_kib,
                m.kib_per_conn,
                m.kib_per_conn * 1024.0
            );
        }
        o.push('\n');
    }
    if !res.idle_skipped.is_empty() {
        let _ = writeln!(o, "Not measured: {}.\n", res.idle_skipped.join("; "));
    }

    // ------------------------------------------------------------ every run
    o.push_str("## Every run\n\n<details><summary>all runs</summary>\n\n| phase | rep | server | offered | achieved | p50 | p99 | p99.9 | p99.99 | max | CPU ns/req | core busy | gen. core busy | gen. CPU ns/req | steal | errors | non-2xx | limited |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in &res.runs {
        let l = &r.load;
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}% | {:.0}% | {:.0} | {:.2}% | {} | {} | {} |",
            r.phase,
            r.rep,
            r.server,
            l.target_rate,
            l.achieved_rate,
            l.latency_us.p50,
            l.latency_us.p99,
            l.latency_us.p99_9,
            l.latency_us.p99_99,
            l.latency_us.max,
            r.cpu_ns_per_req(),
            r.server_busy_pct,
            r.gen_core_busy_pct,
            l.generator_cpu_ns_per_req,
            r.steal_pct,
            l.errors,
            l.non_2xx,
            if r.generator_limited() { "⚠" } else { "" }
        );
        let _ = (l.requests, l.duration_s, l.latency_us.p90);
    }
    o.push_str("\n</details>\n");
    o
}

/// Picks the representative rate of the latency plot: the highest offered rate at or below 60%
/// of tokio_ct's maximum (else the lowest).
fn representative(sweep: &Sweep) -> Option<i64> {
    sweep
        .keys()
        .copied()
        .filter(|k| *k <= 600)
        .max()
        .or_else(|| sweep.keys().copied().next())
}

/// One colour per server of `scripts/lib/bench-common.sh`, the same in every plot whatever
/// subset was run; ringcore's two drivers in reds, the floor in grey. A name not listed takes
/// one of `SPARE` by its place in the run.
/// Draws the legend (white, framed) at `pos` and writes the SVG out.
fn finish<'a, 'b: 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    root: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    pos: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

const COLORS: [(&str, RGBColor); 10] = [
    ("rc_uring", RGBColor(214, 39, 40)),
    ("rc_epoll", RGBColor(255, 152, 150)),
    ("bare", RGBColor(127, 127, 127)),
    ("tokio_ct", RGBColor(31, 119, 180)),
    ("axum", RGBColor(174, 199, 232)),
    ("hyper_ct", RGBColor(23, 190, 207)),
    ("may", RGBColor(44, 160, 44)),
    ("actix", RGBColor(255, 127, 14)),
    ("monoio", RGBColor(148, 103, 189)),
    ("glommio", RGBColor(140, 86, 75)),
];
const SPARE: [RGBColor; 4] = [
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(0, 0, 0),
    RGBColor(197, 176, 213),
];

fn color_of(name: &str, place: usize) -> RGBColor {
    COLORS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| *c)
        .unwrap_or(SPARE[place % SPARE.len()])
}

/// Ours drawn thicker.
fn width_of(name: &str) -> u32 {
    if name == OURS {
        3
    } else {
        2
    }
}

fn plot_latency(res: &Results, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let sweep = sweep_cells(res);
    let Some(k) = representative(&sweep) else {
        return Ok(());
    };
    let cells = &sweep[&k];
    // x: -log10(1 - p): p50 -> 0.3, p90 -> 1, p99 -> 2, ..., max drawn at 5.
    let xs = [std::f64::consts::LOG10_2, 1.0, 2.0, 3.0, 4.0, 5.0];
    let pts = |c: &Cell| {
        let l = &c.lat;
        [l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max]
    };
    let all: Vec<f64> = cells.values().flat_map(&pts).filter(|v| *v > 0.0).collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1.0) * 0.7;
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0) * 1.5;
    let target = cells.values().next().map(|c| c.target).unwrap_or(0.0);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("GET /plaintext latency at {target:.0} req/s offered (open loop), log scale"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0f64..5.2, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&|x| {
            let names = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];
            xs.iter()
                .position(|v| (v - x).abs() < 0.05)
                .map(|i| names[i].to_string())
                .unwrap_or_default()
        })
        .x_desc("percentile")
        .y_desc("latency (us)")
        .draw()?;
    for (i, s) in res.servers.iter().enumerate() {
        let Some(c) = cells.get(s) else { continue };
        let (color, w) = (color_of(s, i), width_of(s));
        let series: Vec<(f64, f64)> = xs.iter().copied().zip(pts(c)).filter(|(_, y)| *y > 0.0).collect();
        chart
            .draw_series(LineSeries::new(series.clone(), color.stroke_width(w)))?
            .label(format!(
                "{s}{}",
                if c.limited > 0 { " (generator-limited)" } else { "" }
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(w)));
        chart.draw_series(
            series
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft)
}

fn plot_throughput(res: &Results, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let sweep = sweep_cells(res);
    if sweep.is_empty() {
        return Ok(());
    }
    let mut per: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for cells in sweep.values() {
        for (s, c) in cells {
            if c.achieved > 0.0 && c.lat.p99 > 0.0 {
                per.entry(s.as_str()).or_default().push((c.achieved, c.lat.p99));
            }
        }
    }
    let all: Vec<(f64, f64)> = per.values().flatten().copied().collect();
    if all.is_empty() {
        return Ok(());
    }
    let xmax = all.iter().map(|p| p.0).fold(0.0, f64::max) * 1.1;
    let lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).max(1.0) * 0.7;
    let hi = all.iter().map(|p| p.1).fold(0.0, f64::max).max(lo * 10.0) * 1.5;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "GET /plaintext: p99 latency vs achieved rate (open loop)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("achieved requests/s")
        .y_desc("p99 latency (us), log scale")
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .draw()?;
    for (i, s) in res.servers.iter().enumerate() {
        let Some(pts) = per.get(s.as_str()) else { continue };
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (color, w) = (color_of(s, i), width_of(s));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(w)))?
            .label(s.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(w)));
        chart.draw_series(pts.iter().map(|&(x, y)| Circle::new((x, y), 3, color.filled())))?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft)
}

/// `scripts/bench-http.sh`'s ratios: one `WORKLOAD SERVER RATIO` line each (CPU per request
/// over the bare loop's, paired median), `#` comments and blank lines skipped. Returns the
/// workloads and the servers in the order they first appear, and the ratios (NaN where a
/// figure is missing, such as `nan` in the file).
type CpuRatios = (Vec<String>, Vec<String>, BTreeMap<(String, String), f64>);

fn parse_cpu_ratios(text: &str) -> Result<CpuRatios, String> {
    let (mut wls, mut servers, mut ratios) = (Vec::new(), Vec::new(), BTreeMap::new());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [wl, server, r] = f[..] else {
            return Err(format!(
                "line {}: want `WORKLOAD SERVER RATIO`, got {line:?}",
                i + 1
            ));
        };
        let r: f64 = r
            .parse()
            .map_err(|_| format!("line {}: {r:?} is not a number", i + 1))?;
        if !wls.iter().any(|w| w == wl) {
            wls.push(wl.to_string());
        }
        if !servers.iter().any(|s| s == server) {
            servers.push(server.to_string());
        }
        ratios.insert((wl.to_string(), server.to_string()), r);
    }
    if ratios.is_empty() {
        return Err("no ratios".into());
    }
    Ok((wls, servers, ratios))
}

/// Grouped bars: per workload, one bar per server, its CPU per request as a ratio to the bare
/// loop's (the line at 1), the value written above each bar.
fn plot_cpu_ratios(data: &CpuRatios, title: &str, path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (wls, servers, ratios) = data;
    let max = ratios
        .values()
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let shown = max.min(CPU_CUT);
    let top = shown * 1.15;
    let n = servers.len() as f64;
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        // A free column on the right for the legend, so that it never hides a bar.
        .build_cartesian_2d(0.0..wls.len() as f64 + LEGEND_COLUMN, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Ticks every 0.1 workload, so that each workload's middle (i + 0.5) has one to name.
        .x_labels(((wls.len() as f64 + LEGEND_COLUMN) * 10.0).round() as usize + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - (i as f64 + 0.5)).abs() < 0.01 {
                wls.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("workload")
        .y_desc(if max > shown {
            format!("CPU per request / bare loop's (bars broken at {CPU_CUT}: see the number)")
        } else {
            "CPU per request / bare loop's".to_string()
        })
        .draw()?;
    // Each workload takes [i, i + 1): 10% margin each side, the servers share the rest.
    let bar = 0.8 / n;
    for (j, s) in servers.iter().enumerate() {
        let color = color_of(s, j);
        let bars: Vec<(f64, f64, f64)> = wls
            .iter()
            .enumerate()
            .filter_map(|(i, w)| {
                let v = *ratios.get(&(w.clone(), s.clone()))?;
                v.is_finite().then_some((i as f64 + 0.1 + j as f64 * bar, v, bar))
            })
            .collect();
        chart
            .draw_series(
                bars.iter().map(|&(x, v, b)| {
                    Rectangle::new([(x, 0.0), (x + b * 0.9, v.min(shown))], color.filled())
                }),
            )?
            .label(s.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        // A broken bar (visibly taller than the axis): a white band across it below the top.
        chart.draw_series(bars.iter().filter(|b| b.1 > shown * 1.02).map(|&(x, _, b)| {
            Rectangle::new([(x, shown * 0.93), (x + b * 0.9, shown * 0.96)], WHITE.filled())
        }))?;
        chart.draw_series(bars.iter().map(|&(x, v, _)| {
            Text::new(
                format!("{v:.2}"),
                (x, v.min(shown) + top * 0.01),
                ("sans-serif", 10),
            )
        }))?;
    }
    chart.draw_series(LineSeries::new(
        [(0.0, 1.0), (wls.len() as f64, 1.0)],
        BLACK.stroke_width(1),
    ))?;
    finish(&mut chart, &root, SeriesLabelPosition::UpperRight)
}

/// Bars above this ratio are broken at it (their number says how high), so that one outlier,
/// such as a server that does not batch pipelined answers, does not flatten the bars near 1
/// that the plot is for.
const CPU_CUT: f64 = 4.0;

/// Width of the cpu-plot's legend column, in workloads.
const LEGEND_COLUMN: f64 = 0.6;

/// `doc` with the text between the markers replaced by `block` (kept: everything else).
fn splice(doc: Option<&str>, block: &str) -> String {
    let wrapped = format!("{BEGIN}\n{block}{END}\n");
    let Some(doc) = doc else {
        return wrapped;
    };
    if let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) {
        if b < e {
            let rest = &doc[e + END.len()..];
            let rest = rest.strip_prefix('\n').unwrap_or(rest);
            return format!("{}{wrapped}{rest}", &doc[..b]);
        }
    }
    // No markers: the block goes first; a leading `# title` of the old file gives way to ours.
    let rest = match doc.strip_prefix("# ") {
        Some(r) => r.split_once('\n').map(|(_, r)| r).unwrap_or(""),
        None => doc,
    };
    format!("{wrapped}\n{}", rest.trim_start_matches('\n'))
}

/// Tables and SVG plots from `scripts/bench.sh`'s results JSON (or, with `cpu-plot`,
/// `scripts/bench-http.sh`'s CPU per request ratios).
#[derive(Debug, clap::Parser)]
#[command(
    name = "bench_report",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// The results JSON.
    #[arg(long, value_name = "FILE", required = true)]
    results: Option<String>,
    /// The Markdown file whose bench.sh block is rewritten.
    #[arg(long, default_value = "docs/benchmarks.md", value_name = "FILE")]
    doc: String,
    /// Where the plots go.
    #[arg(long, default_value = "docs", value_name = "DIR")]
    svg_dir: String,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// A bar chart (SVG) of CPU per request as ratios to the bare loop, per workload and server.
    CpuPlot {
        /// Lines `WORKLOAD SERVER RATIO` (scripts/bench-http.sh writes them).
        #[arg(long, value_name = "FILE")]
        data: String,
        /// The SVG to write.
        #[arg(long, value_name = "FILE")]
        svg: String,
        /// The plot's title.
        #[arg(
            long,
            default_value = "GET /plaintext: server CPU per request, ratio to the bare io_uring loop"
        )]
        title: String,
    },
}

fn run() -> Result<(), String> {
    let Args {
        cmd,
        results,
        doc,
        svg_dir,
    } = clap::Parser::parse();
    if let Some(Cmd::CpuPlot { data, svg, title }) = cmd {
        let text = std::fs::read_to_string(&data).map_err(|e| format!("{data}: {e}"))?;
        let ratios = parse_cpu_ratios(&text).map_err(|e| format!("{data}: {e}"))?;
        plot_cpu_ratios(&ratios, &title, &svg).map_err(|e| format!("{svg}: {e}"))?;
        println!("wrote {svg}");
        return Ok(());
    }
    let results = results.ok_or("--results is required")?;
    let text = std::fs::read_to_string(&results).map_err(|e| format!("{results}: {e}"))?;
    let res: Results = serde_json::from_str(&text).map_err(|e| format!("{results}: {e}"))?;
    let block = report(&res);
    let old = std::fs::read_to_string(&doc).ok();
    std::fs::write(&doc, splice(old.as_deref(), &block)).map_err(|e| format!("{doc}: {e}"))?;
    let lat = format!("{svg_dir}/bench-latency.svg");
    plot_latency(&res, &lat).map_err(|e| format!("{lat}: {e}"))?;
    let tl = format!("{svg_dir}/bench-throughput-latency.svg");
    plot_throughput(&res, &tl).map_err(|e| format!("{tl}: {e}"))?;
    println!("wrote {doc}, {lat}, {tl}");
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_report: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_other_sections() {
        let doc = format!("# T\n{BEGIN}\nold\n{END}\n## The load generator\nkept\n");
        let out = splice(Some(&doc), "new\n");
        assert_eq!(
            out,
            format!("# T\n{BEGIN}\nnew\n{END}\n## The load generator\nkept\n")
        );
        let out = splice(Some("# Old\n\n## The load generator\nkept\n"), "new\n");
        assert_eq!(
            out,
            format!("{BEGIN}\nnew\n{END}\n\n## The load generator\nkept\n")
        );
        assert_eq!(splice(None, "x\n"), format!("{BEGIN}\nx\n{END}\n"));
    }

    #[test]
    fn cpu_ratios_keep_the_order_of_the_file() {
        let (wls, servers, r) =
            parse_cpu_ratios("# c\nc64 bare 1\nc64 rc_uring 1.2\n\np16 bare 1\np16 rc_uring nan\n")
                .expect("parses");
        assert_eq!(wls, ["c64", "p16"]);
        assert_eq!(servers, ["bare", "rc_uring"]);
        assert_eq!(r[&("c64".to_string(), "rc_uring".to_string())], 1.2);
        assert!(r[&("p16".to_string(), "rc_uring".to_string())].is_nan());
        assert!(parse_cpu_ratios("c64 bare\n").is_err());
        assert!(parse_cpu_ratios("c64 bare x\n").is_err());
        assert!(parse_cpu_ratios("# nothing\n").is_err());
    }

    #[test]
    fn every_server_keeps_its_own_colour() {
        let names = [
            "rc_uring", "rc_epoll", "bare", "tokio_ct", "axum", "hyper_ct", "may", "actix", "monoio",
            "glommio",
        ];
        let colors: Vec<RGBColor> = names.iter().map(|n| color_of(n, 0)).collect();
        for (i, a) in colors.iter().enumerate() {
            for b in &colors[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // An unknown name takes a spare colour, not one of the listed servers'.
        assert!(!colors.contains(&color_of("other", 1)));
    }

    #[test]
    fn a_busy_machine_is_named() {
        let meta = |load: &str| serde_json::json!({"load_before": load, "cpus": 2});
        assert!(busy_machine(&meta("2.54 2.86 2.71")).contains("load average 2.54 on 2 CPUs"));
        assert_eq!(busy_machine(&meta("0.30 0.50 0.60")), "");
        assert_eq!(busy_machine(&serde_json::json!({})), "");
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
