//! `--timeline FILE`: one CSV line per measured request (or per sampled one), so a bimodal
//! tail can be laid against time (`scripts/timeline-report.py` reads it).
//!
//! Each shard keeps its rows in memory (16 bytes each: no I/O on the sending path); the main
//! thread merges the shards' rows by scheduled send time and writes the file after the run.
//! Sampling is by the request's slot in the schedule (`slot % every == 0`, the same slot that
//! numbers `{n}`), so it is spread evenly over time and connections, not biased towards
//! fast or slow answers.

use std::io::{self, Write};
use std::time::Instant;

/// One answered request of the measurement window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    /// Scheduled send time (open loop) or actual send time (closed loop), µs after the window's
    /// start.
    pub(crate) offset_us: u64,
    /// From that time to the answer's last byte, µs.
    pub(crate) latency_us: u32,
    pub(crate) status: u16,
}

/// The rows one shard keeps.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    /// Keep one request in `every` (0: keep none).
    every: u64,
    pub(crate) rows: Vec<Row>,
}

impl Timeline {
    pub(crate) fn new(every: u64) -> Self {
        Timeline {
            every,
            rows: Vec::new(),
        }
    }

    /// Records the request at schedule slot `slot`, if it is sampled.
    pub(crate) fn record(
        &mut self,
        slot: u64,
        window_start: Instant,
        intended: Instant,
        latency_us: u64,
        status: u16,
    ) {
        if self.every == 0 || slot % self.every != 0 {
            return;
        }
        self.rows.push(Row {
            offset_us: intended.saturating_duration_since(window_start).as_micros() as u64,
            latency_us: latency_us.min(u64::from(u32::MAX)) as u32,
            status,
        });
    }
}

/// The CSV's first line.
pub(crate) const HEADER: &str = "offset_us,latency_us,status";

/// Writes the shards' rows as one CSV ordered by send time (ties keep shard order).
pub(crate) fn write_csv(mut shards: Vec<Vec<Row>>, out: impl Write) -> io::Result<usize> {
    let mut rows: Vec<Row> = Vec::with_capacity(shards.iter().map(Vec::len).sum());
    for s in &mut shards {
        rows.append(s);
    }
    rows.sort_by_key(|r| r.offset_us);
    let mut w = io::BufWriter::new(out);
    writeln!(w, "{HEADER}")?;
    for r in &rows {
        writeln!(w, "{},{},{}", r.offset_us, r.latency_us, r.status)?;
    }
    w.flush()?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn samples_by_slot_and_writes_rows_in_send_order() {
        let t0 = Instant::now();
        let at = |us| t0 + Duration::from_micros(us);
        let mut a = Timeline::new(2);
        let mut b = Timeline::new(2);
        a.record(0, t0, at(300), 40, 200);
        a.record(1, t0, at(310), 999, 200); // odd slot: not sampled
        b.record(2, t0, at(100), 7_000_000_000, 503); // clamped to u32::MAX
        b.record(4, t0, at(200), 55, 200);
        // Sent before the window (cannot happen for measured requests): offset 0, not a wrap.
        b.record(6, at(50), t0, 1, 200);
        let mut out = Vec::new();
        let n = write_csv(vec![a.rows, b.rows], &mut out).unwrap();
        assert_eq!(n, 4);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "offset_us,latency_us,status\n0,1,200\n100,4294967295,503\n200,55,200\n300,40,200\n"
        );
        let mut none = Timeline::new(0);
        none.record(0, t0, t0, 1, 200);
        assert!(none.rows.is_empty());
    }
}
