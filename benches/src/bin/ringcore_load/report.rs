//! Percentiles, status classes, the result of a run and its summary.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram tracks (larger values are clamped): one hour, in µs.
const HIST_MAX_US: u64 = 3_600_000_000;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub(crate) struct Latency {
    pub(crate) p50: u64,
    pub(crate) p90: u64,
    pub(crate) p99: u64,
    pub(crate) p99_9: u64,
    pub(crate) p99_99: u64,
    pub(crate) max: u64,
}

pub(crate) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_max(HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Percentiles in µs (hdrhistogram's equivalent-value rounding, 3 significant digits).
pub(crate) fn percentiles(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p99_9: h.value_at_quantile(0.999),
        p99_99: h.value_at_quantile(0.9999),
        max: h.max(),
    }
}

/// Responses by status class.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub(crate) struct StatusClasses {
    #[serde(rename = "1xx")]
    pub(crate) informational: u64,
    #[serde(rename = "2xx")]
    pub(crate) success: u64,
    #[serde(rename = "3xx")]
    pub(crate) redirect: u64,
    #[serde(rename = "4xx")]
    pub(crate) client_error: u64,
    #[serde(rename = "5xx")]
    pub(crate) server_error: u64,
    /// Any other code (under 100 or over 599).
    pub(crate) other: u64,
}

/// Index of `status`'s class in a `[_; 6]` of counts: 1xx .. 5xx, then everything else.
pub(crate) fn status_class(status: u16) -> usize {
    match status / 100 {
        c @ 1..=5 => usize::from(c - 1),
        _ => 5,
    }
}

impl StatusClasses {
    pub(crate) fn from_counts(c: [u64; 6]) -> Self {
        Self {
            informational: c[0],
            success: c[1],
            redirect: c[2],
            client_error: c[3],
            server_error: c[4],
            other: c[5],
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct RunResult {
    pub(crate) url: String,
    pub(crate) target_rate: f64,
    pub(crate) achieved_rate: f64,
    pub(crate) requests: u64,
    /// Requests lost over the whole run (refused or timed-out connects, resets, EOF with
    /// requests outstanding, timeouts, malformed answers): not answers of any status.
    pub(crate) errors: u64,
    /// `errors / (errors + answers)` over the whole run (answers of any status: a 503 or 429
    /// is an answer).
    pub(crate) error_rate: f64,
    pub(crate) non_2xx: u64,
    pub(crate) duration_s: f64,
    pub(crate) conns: usize,
    pub(crate) depth: usize,
    pub(crate) latency_us: Latency,
    /// Latency of the *admitted* answers only: every status but 429 and 5xx (what a service
    /// that sheds load promises to keep fast).
    pub(crate) latency_admitted_us: Latency,
    /// How many answers `latency_admitted_us` covers.
    pub(crate) admitted: u64,
    pub(crate) saturated: bool,
    pub(crate) generator_cpu_ns_per_req: f64,
    /// The share of the window the generator's shard threads were on a CPU, averaged over its
    /// cores (1.0: every generator core busy the whole window). Above [`GENERATOR_BUSY_WARN`]
    /// the latencies include the generator's own queueing: requests wait for it, not only
    /// for the server.
    pub(crate) generator_busy: f64,
    /// Requests due in the window that neither completed nor failed before the drain ended
    /// (open loop against a saturated server: the backlog). Not in the latency histogram.
    pub(crate) unfinished: u64,
    pub(crate) cores: usize,
    /// Responses to the requests due in the window (the ones counted in `requests`), by class.
    pub(crate) status: StatusClasses,
    /// Every response of the run (warm-up and drain included), by class.
    pub(crate) status_all: StatusClasses,
}

/// Above this share of its cores' time busy, the generator's own queueing shows in the
/// latencies it reports (an open-loop M/D/1 queue at 70% load already waits 1.2 service
/// times on average, and its tail is far longer).
pub(crate) const GENERATOR_BUSY_WARN: f64 = 0.7;

pub(crate) fn print_summary(r: &RunResult) {
    let target = if r.target_rate == 0.0 {
        "closed loop (max)".to_string()
    } else {
        format!("{:.0} req/s", r.target_rate)
    };
    let l = &r.latency_us;
    println!(
        "{}  conns={} depth={} cores={} duration={:.1}s",
        r.url, r.conns, r.depth, r.cores, r.duration_s
    );
    println!("  target rate     {target}");
    println!("  achieved rate   {:.0} req/s", r.achieved_rate);
    println!(
        "  requests        {}  errors {}  non-2xx {}  unfinished {}",
        r.requests, r.errors, r.non_2xx, r.unfinished
    );
    println!(
        "  latency (us)    p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
        l.p50, l.p90, l.p99, l.p99_9, l.p99_99, l.max
    );
    let l = &r.latency_admitted_us;
    println!(
        "  admitted (us)   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} answers neither 429 nor 5xx)",
        l.p50, l.p90, l.p99, l.p99_9, l.max, r.admitted
    );
    let (s, a) = (&r.status, &r.status_all);
    println!(
        "  status          2xx {}  4xx {}  5xx {}  other {}  (whole run: 2xx {}  4xx {}  5xx {}  other {})",
        s.success,
        s.client_error,
        s.server_error,
        s.informational + s.redirect + s.other,
        a.success,
        a.client_error,
        a.server_error,
        a.informational + a.redirect + a.other
    );
    println!(
        "  generator CPU   {:.0} ns/request, {:.0}% busy",
        r.generator_cpu_ns_per_req,
        r.generator_busy * 100.0
    );
    if r.generator_busy > GENERATOR_BUSY_WARN {
        println!(
            "WARNING: the generator was {:.0}% busy: its own queueing is in the latencies (use more generator cores or a lower rate)",
            r.generator_busy * 100.0
        );
    }
    if r.saturated {
        println!(
            "WARNING: achieved rate {:.0} is more than 1% below target {:.0} (generator or server saturated)",
            r.achieved_rate, r.target_rate
        );
    }
}

impl StatusClasses {
    /// Every answer counted.
    pub(crate) fn total(&self) -> u64 {
        self.informational + self.success + self.redirect + self.client_error + self.server_error + self.other
    }
}

/// `errors / (errors + answers)`, 0 when there was neither.
pub(crate) fn error_rate(errors: u64, answers: u64) -> f64 {
    if errors == 0 {
        0.0
    } else {
        errors as f64 / (errors + answers) as f64
    }
}

/// `Err(one line)` when the run failed: no request got an answer, or more than
/// `max_error_rate` of them were lost.
pub(crate) fn verdict(r: &RunResult, max_error_rate: f64) -> Result<(), String> {
    let answers = r.status_all.total();
    if answers == 0 {
        return Err(format!(
            "no request got an answer ({} errors: refused connects, resets, timeouts, malformed answers)",
            r.errors
        ));
    }
    if r.error_rate > max_error_rate {
        return Err(format!(
            "{:.2}% of requests failed ({} errors: resets, timeouts, malformed answers; {answers} answers), \
             above --max-error-rate {:.2}%",
            r.error_rate * 100.0,
            r.errors,
            max_error_rate * 100.0
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_extraction() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let l = percentiles(&h);
        // 3 significant digits: values are within 0.1%.
        let near = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.001 + 1.0;
        assert!(near(l.p50, 5_000), "{l:?}");
        assert!(near(l.p90, 9_000), "{l:?}");
        assert!(near(l.p99, 9_900), "{l:?}");
        assert!(near(l.p99_9, 9_990), "{l:?}");
        assert!(near(l.p99_99, 9_999), "{l:?}");
        assert!(near(l.max, 10_000), "{l:?}");
        // A single outlier shows up only at the top.
        let mut h = new_hist();
        for _ in 0..9_999 {
            h.record(100).unwrap();
        }
        h.record(50_000).unwrap();
        let l = percentiles(&h);
        assert_eq!((l.p50, l.p99, l.p99_9, l.p99_99), (100, 100, 100, 100));
        assert!(near(l.max, 50_000), "{l:?}");
        assert_eq!(percentiles(&new_hist()), Latency::default());
        // Merging per-core histograms keeps every count.
        let mut a = new_hist();
        a.record(10).unwrap();
        let mut b = new_hist();
        b.record(1_000).unwrap();
        a.add(&b).unwrap();
        assert_eq!((a.len(), percentiles(&a).max), (2, 1_000));
    }
    #[test]
    fn status_classes() {
        let mut c = [0u64; 6];
        for s in [100, 200, 201, 204, 301, 404, 409, 409, 503, 99, 600] {
            c[status_class(s)] += 1;
        }
        let s = StatusClasses::from_counts(c);
        assert_eq!(
            (
                s.informational,
                s.success,
                s.redirect,
                s.client_error,
                s.server_error,
                s.other
            ),
            (1, 3, 1, 3, 1, 2)
        );
        let j = serde_json::to_value(s).unwrap();
        assert_eq!(
            (j["2xx"].as_u64(), j["4xx"].as_u64(), j["other"].as_u64()),
            (Some(3), Some(3), Some(2))
        );
    }

    #[test]
    fn verdict_fails_on_no_answer_or_too_many_errors() {
        let run = |errors: u64, answers: [u64; 6]| RunResult {
            url: String::new(),
            target_rate: 0.0,
            achieved_rate: 0.0,
            requests: 0,
            errors,
            error_rate: error_rate(errors, answers.iter().sum()),
            non_2xx: 0,
            duration_s: 1.0,
            conns: 1,
            depth: 1,
            latency_us: Latency::default(),
            latency_admitted_us: Latency::default(),
            admitted: 0,
            saturated: false,
            generator_cpu_ns_per_req: 0.0,
            generator_busy: 0.0,
            unfinished: 0,
            cores: 1,
            status: StatusClasses::default(),
            status_all: StatusClasses::from_counts(answers),
        };
        assert!(verdict(&run(0, [0; 6]), 0.01)
            .unwrap_err()
            .contains("no request got an answer"));
        assert!(verdict(&run(5, [0; 6]), 1.0).is_err());
        // 503s and 429s are answers, not errors.
        assert_eq!(verdict(&run(0, [0, 10, 0, 500, 500, 0]), 0.0), Ok(()));
        assert_eq!(verdict(&run(1, [0, 99, 0, 0, 0, 0]), 0.01), Ok(()));
        let e = verdict(&run(2, [0, 98, 0, 0, 0, 0]), 0.01).unwrap_err();
        assert!(
            e.contains("2.00% of requests failed") && e.contains("above --max-error-rate 1.00%"),
            "{e}"
        );
        assert_eq!(verdict(&run(2, [0, 98, 0, 0, 0, 0]), 0.05), Ok(()));
    }
}
