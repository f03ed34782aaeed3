//! `bench_report` as the benchmark scripts run it: from a results JSON naming every server of
//! `scripts/lib/bench-common.sh` it writes a doc whose tables list each one with its binary,
//! and plots whose legends name each one; `cpu-plot` draws scripts/bench-http.sh's ratios.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bench_report");
const SERVERS: [(&str, &str, &str); 10] = [
    ("tokio_ct", "tokio_ct", ""),
    ("bare", "naive_uring", ""),
    ("may", "may_hello", ""),
    ("hyper_ct", "hyper_ct", ""),
    ("actix", "actix_hello", ""),
    ("axum", "axum_hello", ""),
    ("rc_uring", "hello", "io_uring"),
    ("rc_epoll", "hello", "epoll"),
    ("monoio", "monoio_hello", ""),
    ("glommio", "glommio_hello", ""),
];

/// A fresh scratch directory under the target dir, removed first if a run left it.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn run_json(server: &str, phase: &str, frac: &str, target: f64, achieved: f64, p99: f64) -> String {
    format!(
        r#"{{"server":"{server}","phase":"{phase}","rep":1,"frac":{frac},"server_cpu_ns":1e9,"wall_ns":3e9,"server_busy_pct":50,"gen_core_busy_pct":60,"steal_pct":0.1,"load":{{"target_rate":{target},"achieved_rate":{achieved},"requests":1000,"errors":0,"non_2xx":0,"duration_s":3,"latency_us":{{"p50":50,"p90":80,"p99":{p99},"p99_9":{},"p99_99":{},"max":{}}}}}}}"#,
        p99 * 2.0,
        p99 * 3.0,
        p99 * 4.0
    )
}

/// The SVG backend writes each text element's content on a line of its own.
fn has_text(svg: &str, text: &str) -> bool {
    svg.lines().any(|l| l.trim() == text)
}

#[test]
fn report_and_plots_name_every_server() {
    let dir = scratch("bench_report_all");
    let mut runs = Vec::new();
    let mut peers = Vec::new();
    for (i, (name, bin, driver)) in SERVERS.iter().enumerate() {
        let p99 = 100.0 + 10.0 * i as f64;
        runs.push(run_json(name, "closed", "null", 0.0, 100_000.0 + i as f64, p99));
        runs.push(run_json(name, "sweep", "0.2", 20_000.0, 20_000.0, p99));
        runs.push(run_json(name, "sweep", "0.6", 60_000.0, 60_000.0, p99 * 2.0));
        peers.push(format!(
            r#"{{"name":"{name}","binary":"{bin}","driver":"{driver}","what":"what {name} is, with \"quotes\""}}"#
        ));
    }
    let names: Vec<String> = SERVERS.iter().map(|(n, _, _)| format!("\"{n}\"")).collect();
    let json = format!(
        r#"{{"meta":{{"mode":"quick","generator":"ringcore-load","conns":64,"depth":1}},"servers":[{}],"peers":[{}],"runs":[{}],"idle":[{{"server":"rc_uring","binary":"hello","conns":2000,"warm_kib":5000,"held_kib":9000,"kib_per_conn":2.0}}]}}"#,
        names.join(","),
        peers.join(","),
        runs.join(",")
    );
    let results = dir.join("results.json");
    std::fs::write(&results, json).expect("write results");
    let doc = dir.join("benchmarks.md");
    std::fs::write(&doc, "# Old title\n\n## The load generator\n\nkept\n").expect("write doc");
    let out = Command::new(BIN)
        .arg("--results")
        .arg(&results)
        .arg("--doc")
        .arg(&doc)
        .arg("--svg-dir")
        .arg(&dir)
        .output()
        .expect("run bench_report");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&doc).expect("doc");
    assert!(text.contains("## The load generator\n\nkept"), "{text}");
    for (name, bin, driver) in SERVERS {
        let row = if driver.is_empty() {
            format!("| {name} | `{bin}` | what {name} is, with \"quotes\" |")
        } else {
            format!("| {name} | `{bin}` (`RINGCORE_DRIVER={driver}`) | what {name} is")
        };
        assert!(text.contains(&row), "no row {row:?} in:\n{text}");
        // The servers row, a closed-loop row, two sweep rows, three in "every run" and, for
        // rc_uring, the memory row.
        let memory = usize::from(name == "rc_uring");
        assert_eq!(
            text.matches(&format!("| {name} | ")).count(),
            1 + 1 + 2 + 3 + memory,
            "{name}"
        );
    }
    // The tail ratios: ours against each of the nine others.
    assert!(
        text.contains("| p99 / tokio_ct |") && text.contains("| p99.9 / glommio |"),
        "{text}"
    );
    assert!(!text.contains("p99 / rc_uring"), "{text}");
    for svg in ["bench-latency.svg", "bench-throughput-latency.svg"] {
        let plot = std::fs::read_to_string(dir.join(svg)).expect(svg);
        assert!(plot.starts_with("<svg"), "{svg}");
        for (name, _, _) in SERVERS {
            assert!(has_text(&plot, name), "{svg} has no legend for {name}");
        }
    }
}

fn cpu_plot(data: &Path, svg: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("cpu-plot")
        .arg("--data")
        .arg(data)
        .arg("--svg")
        .arg(svg)
        .output()
        .expect("run bench_report cpu-plot")
}

#[test]
fn cpu_plot_draws_every_server_and_workload() {
    let dir = scratch("bench_report_cpu");
    let data = dir.join("ratios.txt");
    let svg = dir.join("cpu.svg");
    std::fs::write(
        &data,
        "# workload server ratio\nc64 bare 1.000\nc64 rc_uring 1.150\nc64 hyper_ct 1.210\n\
         p16 bare 1.000\np16 rc_uring 2.090\np16 hyper_ct 10.900\n",
    )
    .expect("write data");
    let out = cpu_plot(&data, &svg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plot = std::fs::read_to_string(&svg).expect("svg");
    for label in ["bare", "rc_uring", "hyper_ct", "c64", "p16", "10.90", "2.09"] {
        assert!(has_text(&plot, label), "no {label} in the plot");
    }
    // A line that is not `WORKLOAD SERVER RATIO` is refused, naming the line.
    std::fs::write(&data, "c64 bare\n").expect("write data");
    let out = cpu_plot(&data, &svg);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
