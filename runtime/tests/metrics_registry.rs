//! `metrics`: a service on the runtime alone counts per core and exports every core's
//! counters and gauges, summed, in the Prometheus text format.

use ringcore_runtime::metrics::{self, Counter, Gauge, Snapshot};
use ringcore_runtime::{shard_id, submit_to, Runtime};

fn two_cores() -> ringcore_runtime::Builder {
    Runtime::builder().core_count(2).handle_signals(false)
}

/// The value of the sample line `series` (name with its labels) in `text`.
fn sample(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_string))
}

#[test]
fn gather_sums_every_core_and_renders_prometheus_text() {
    let out = two_cores()
        .build()
        .expect("build")
        .run(|| async {
            let me = shard_id();
            let jobs = Counter::new("jobs_done_total", "Jobs finished.", &[("kind", "re\"size")]);
            // The same name and labels give this core's same counter.
            let again = Counter::new("jobs_done_total", "Jobs finished.", &[("kind", "re\"size")]);
            jobs.add(10 * (me as u64 + 1));
            again.inc();
            Gauge::new("queue_depth", "Jobs waiting.", &[]).set(5 + me as i64);
            if me != 0 {
                return None;
            }
            // Core 1 counted before core 0 gathers: wait until its counter exists.
            for _ in 0..1000 {
                let seen = submit_to(1, || {
                    Snapshot::local().counter("jobs_done_total", &[("kind", "re\"size")])
                })
                .await
                .expect("submit");
                if seen == 21 {
                    break;
                }
                ringcore_runtime::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let all = metrics::gather().await;
            Some((
                all.counter("jobs_done_total", &[("kind", "re\"size")]),
                all.gauge("queue_depth", &[]),
                all.runtime_counters().len(),
                all.render(),
            ))
        })
        .expect("run");
    let (jobs, depth, cores, text) = out[0].clone().flatten().expect("core 0 gathered");
    assert_eq!(jobs, 11 + 21, "both cores' counts, summed");
    assert_eq!(depth, 5 + 6);
    assert_eq!(cores, 2);
    assert!(
        text.contains("# HELP jobs_done_total Jobs finished.\n# TYPE jobs_done_total counter\n"),
        "{text}"
    );
    assert_eq!(
        sample(&text, "jobs_done_total{kind=\"re\\\"size\"}").as_deref(),
        Some("32"),
        "{text}"
    );
    assert!(text.contains("# TYPE queue_depth gauge\n"), "{text}");
    assert_eq!(sample(&text, "queue_depth").as_deref(), Some("11"), "{text}");
    // The runtime's own counters, per core.
    for core in 0..2 {
        let polled = sample(
            &text,
            &format!("ringcore_runtime_tasks_polled_total{{core=\"{core}\"}}"),
        )
        .and_then(|v| v.parse::<u64>().ok());
        assert!(polled.is_some_and(|n| n > 0), "{text}");
        assert!(
            sample(&text, &format!("ringcore_runtime_tasks_alive{{core=\"{core}\"}}")).is_some(),
            "{text}"
        );
    }
}

#[test]
fn each_run_starts_with_empty_registries() {
    for round in 0..2u64 {
        let out = two_cores()
            .build()
            .expect("build")
            .run(move || async move {
                let c = Counter::new("rounds_total", "Rounds.", &[]);
                let before = c.get();
                c.inc();
                (round, before)
            })
            .expect("run");
        assert_eq!(out, vec![Some((round, 0)), Some((round, 0))]);
    }
}
