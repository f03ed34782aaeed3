//! The open-loop schedule `ringcore-load` and `flash-sale demo` share.
//!
//! `conns` connections together send `rate` requests per second: request `slot` of the
//! merged stream is due at `start + slot / rate`, and connection `c` sends slots
//! `c, c + conns, c + 2 * conns, ...` (its `k`-th request is slot `c + k * conns`). Latency
//! is measured from the due time, so a stalled server shows in the tail instead of slowing
//! the generator down (no coordinated omission).

use std::time::{Duration, Instant};

/// An open-loop schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenLoop {
    /// When slot 0 is due.
    pub start: Instant,
    /// Requests per second over all connections (> 0).
    pub rate: f64,
    /// Connections sharing the schedule (>= 1).
    pub conns: usize,
}

impl OpenLoop {
    /// The slot of request `k` of connection `conn`.
    pub fn slot(&self, conn: usize, k: u64) -> u64 {
        conn as u64 + k * self.conns as u64
    }

    /// Offset of `slot` from `start`, in ns (exact for whole slots: no drift over long runs).
    pub fn offset_ns(&self, slot: u64) -> u64 {
        (slot as f64 * 1e9 / self.rate) as u64
    }

    /// When `slot` is due.
    pub fn due(&self, slot: u64) -> Instant {
        self.start + Duration::from_nanos(self.offset_ns(slot))
    }

    /// When request `k` of connection `conn` is due.
    pub fn due_for(&self, conn: usize, k: u64) -> Instant {
        self.due(self.slot(conn, k))
    }

    /// How many slots fall due before `start + span` (slots `0..n`).
    pub fn slots_within(&self, span: Duration) -> u64 {
        (span.as_secs_f64() * self.rate).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_over_connections_without_drift() {
        let s = OpenLoop {
            start: Instant::now(),
            rate: 1000.0,
            conns: 4,
        };
        let mut all: Vec<u64> = (0..4)
            .flat_map(|c| (0..25).map(move |k| s.offset_ns(s.slot(c, k))))
            .collect();
        all.sort_unstable();
        for (slot, t) in all.iter().enumerate() {
            assert_eq!(*t, slot as u64 * 1_000_000);
        }
        let s = OpenLoop {
            rate: 64_000.0,
            conns: 64,
            ..s
        };
        assert_eq!(s.offset_ns(s.slot(1, 0)), 15_625);
        assert_eq!(s.due_for(1, 1) - s.due_for(1, 0), Duration::from_millis(1));
        let s = OpenLoop { rate: 100_000.0, ..s };
        assert_eq!(s.offset_ns(s.slot(0, 10_000_000)), 6_400_000_000_000);
        assert_eq!(s.slots_within(Duration::from_millis(15)), 1500);
    }

    #[test]
    fn every_slot_belongs_to_one_connection() {
        let s = OpenLoop {
            start: Instant::now(),
            rate: 1.0,
            conns: 7,
        };
        let mut all: Vec<u64> = (0..7).flat_map(|c| (0..50).map(move |k| s.slot(c, k))).collect();
        all.sort_unstable();
        assert_eq!(all, (0..350).collect::<Vec<_>>());
    }
}
