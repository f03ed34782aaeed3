//! Two ready queues and the rule that picks between them.

use std::collections::VecDeque;
use std::time::Duration;

/// The scheduling class of a task.
///
/// When both classes have ready tasks, CPU time is divided between them by their shares
/// (`Builder::class_shares`, default 4:1 for latency-critical). A class with no ready tasks
/// gives its time to the other and does not bank credit meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskClass {
    /// Request handling and anything on a user's critical path. The default.
    Latency,
    /// Journal flushes, cache refreshes, metrics, bulk work.
    Background,
}

impl TaskClass {
    fn index(self) -> usize {
        match self {
            TaskClass::Latency => 0,
            TaskClass::Background => 1,
        }
    }
}

pub(super) struct Scheduler {
    queues: [VecDeque<(usize, u32)>; 2],
    shares: [u64; 2],
    /// Virtual runtime: nanoseconds of CPU scaled by 1024 / share.
    vruntime: [u64; 2],
}

impl Scheduler {
    pub(super) fn new(shares: [u32; 2]) -> Self {
        Self {
            queues: [VecDeque::with_capacity(256), VecDeque::with_capacity(64)],
            shares: [u64::from(shares[0].max(1)), u64::from(shares[1].max(1))],
            vruntime: [0, 0],
        }
    }

    pub(super) fn push(&mut self, class: TaskClass, key: usize, generation: u32) {
        self.queues[class.index()].push_back((key, generation));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queues[0].is_empty() && self.queues[1].is_empty()
    }

    pub(super) fn depths(&self) -> (usize, usize) {
        (self.queues[0].len(), self.queues[1].len())
    }

    /// The next task to poll, its class, and whether both classes were competing (then the
    /// caller measures the poll and reports it with [`account`](Self::account)).
    pub(super) fn pick(&mut self) -> Option<(TaskClass, usize, u32, bool)> {
        let ready = [!self.queues[0].is_empty(), !self.queues[1].is_empty()];
        let (class, contended) = match ready {
            [true, true] => {
                // Ties go to the latency class.
                if self.vruntime[0] <= self.vruntime[1] {
                    (TaskClass::Latency, true)
                } else {
                    (TaskClass::Background, true)
                }
            }
            [true, false] => (TaskClass::Latency, false),
            [false, true] => (TaskClass::Background, false),
            [false, false] => return None,
        };
        if !contended {
            // The idle class must not bank credit: bring it level with the running one.
            let (run, idle) = (class.index(), 1 - class.index());
            self.vruntime[idle] = self.vruntime[idle].max(self.vruntime[run]);
        }
        let (key, generation) = self.queues[class.index()].pop_front()?;
        Some((class, key, generation, contended))
    }

    pub(super) fn account(&mut self, class: TaskClass, ran: Duration) {
        let i = class.index();
        let ns = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX);
        self.vruntime[i] = self.vruntime[i].saturating_add(ns.saturating_mul(1024) / self.shares[i]);
    }

    pub(super) fn clear(&mut self) {
        self.queues[0].clear();
        self.queues[1].clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contended_classes_split_by_share() {
        let mut s = Scheduler::new([3, 1]);
        let mut runs = [0u32; 2];
        for _ in 0..4000 {
            s.push(TaskClass::Latency, 0, 0);
            s.push(TaskClass::Background, 1, 0);
            let (class, _, _, contended) = s.pick().unwrap_or((TaskClass::Latency, 0, 0, false));
            assert!(contended);
            runs[class.index()] += 1;
            s.account(class, Duration::from_micros(10));
            s.clear();
        }
        let share = f64::from(runs[0]) / 4000.0;
        assert!((share - 0.75).abs() < 0.01, "latency share {share}");
    }

    #[test]
    fn idle_class_banks_no_credit() {
        let mut s = Scheduler::new([1, 1]);
        // Background runs alone for a long time.
        for _ in 0..100 {
            s.push(TaskClass::Background, 1, 0);
            let (class, ..) = s.pick().unwrap_or((TaskClass::Latency, 0, 0, false));
            assert_eq!(class, TaskClass::Background);
            s.account(class, Duration::from_millis(1));
        }
        // Then latency work arrives: it must not monopolise the core for 100 ms.
        let mut latency_in_a_row = 0;
        for _ in 0..10 {
            s.push(TaskClass::Latency, 0, 0);
            s.push(TaskClass::Background, 1, 0);
            let (class, ..) = s.pick().unwrap_or((TaskClass::Latency, 0, 0, false));
            if class == TaskClass::Latency {
                latency_in_a_row += 1;
            }
            s.account(class, Duration::from_millis(1));
            s.clear();
        }
        assert!(latency_in_a_row <= 6, "latency ran {latency_in_a_row} of 10");
    }
}
