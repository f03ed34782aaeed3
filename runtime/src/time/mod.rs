//! Timers: `sleep`, `sleep_until`, `timeout`, `interval`, driven by the ring's wait.
//!
//! Each core keeps its pending deadlines in two ordered maps: the timers it may poll for when
//! one is due within `Builder::idle_spin`, and the coarse ones ([`Sleep::coarse`]) it never
//! polls for. A loop turn fires every deadline that has passed, earliest first, and when the
//! core has nothing to run it waits in `io_uring_enter` with the nearest deadline as the
//! wait's timeout, so no extra SQE or thread is needed for time.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::context;
use crate::executor::coop;

thread_local! {
    static LOOP_NOW: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

pub(crate) fn set_loop_now(now: Instant) {
    LOOP_NOW.with(|c| c.set(Some(now)));
}

/// The instant this core last collected completions and fired timers: a clock with the
/// resolution of one loop turn that costs no system call.
///
/// Data a task received in this turn arrived no later than this instant, so `loop_now()`
/// read right after an I/O completes is when the work became known to the core; the time
/// from it to when the task gets to run is the core's queueing delay (what load shedding
/// measures). Off a shard thread (or before the first turn) it reads the real clock.
pub fn loop_now() -> Instant {
    LOOP_NOW.with(|c| c.get()).unwrap_or_else(Instant::now)
}

thread_local! {
    /// The hooks [`at_turn_end`] registered for the end of the current turn.
    static TURN_END: RefCell<Vec<fn(Instant)>> = const { RefCell::new(Vec::new()) };
    /// `TURN_END` is not empty: what the loop checks each turn.
    static TURN_END_WANTED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `hook` when the tasks of this loop turn have run, before the core waits for more
/// work, with one clock reading taken then for all the hooks of the turn: work the turn's
/// tasks did is finished no later than that instant. A hook runs once per registration
/// (registering it twice in a turn runs it twice). That holds for a registration made while
/// a task is polled; one made elsewhere (from a hook, or from a closure another core sent
/// with [`submit_to`](crate::submit_to), which runs after the tasks) runs at the end of the
/// next turn, after the core has waited. The last turn's hooks run before the loop returns,
/// and those registered while the shard's tasks are dropped at its end run once they all
/// are.
///
/// This is how per-request bookkeeping pays for one clock read per turn instead of one per
/// request: ringcore-http records the latency of every answer handed to the socket in a turn
/// at its end. Returns false (nothing registered) off a shard thread, where no turn ends.
pub fn at_turn_end(hook: fn(Instant)) -> bool {
    if !context::on_shard() {
        return false;
    }
    TURN_END.with(|h| h.borrow_mut().push(hook));
    TURN_END_WANTED.set(true);
    true
}

/// Runs the hooks registered with [`at_turn_end`] (the loop's end of turn); the check, which
/// nearly every turn stops at, inline.
#[inline]
pub(crate) fn run_turn_end() {
    if TURN_END_WANTED.get() {
        run_turn_end_hooks();
    }
}

#[inline(never)]
fn run_turn_end_hooks() {
    // Taken out first, so that a hook may register again (for the next turn) and its
    // registration is not run now; the list's memory is kept for the next turn.
    TURN_END_WANTED.set(false);
    let mut hooks = TURN_END.with(|h| std::mem::take(&mut *h.borrow_mut()));
    let now = Instant::now();
    for hook in hooks.drain(..) {
        hook(now);
    }
    TURN_END.with(|h| {
        let mut h = h.borrow_mut();
        if h.is_empty() {
            *h = hooks;
        }
    });
}

pub(crate) struct Timers {
    /// Timers the core may poll for instead of parking when one is due within
    /// `Builder::idle_spin` (so a short sleep ends on time).
    precise: Queue,
    /// [`Sleep::coarse`] timers: the core parks until them, never polls for them.
    coarse: Queue,
    next_id: u64,
}

/// The high bit of a coarse timer's id (its key says which queue holds it).
const COARSE: u64 = 1 << 63;

/// Deadlines in order, with the earliest kept (so that a loop turn with no timer due does not
/// walk the tree).
#[derive(Default)]
struct Queue {
    map: BTreeMap<(Instant, u64), Waker>,
    earliest: Option<Instant>,
}

impl Queue {
    fn insert(&mut self, key: (Instant, u64), waker: Waker) {
        self.map.insert(key, waker);
        match self.earliest {
            Some(e) if e <= key.0 => {}
            _ => self.earliest = Some(key.0),
        }
    }

    fn remove(&mut self, key: (Instant, u64)) {
        if self.map.remove(&key).is_some() && self.earliest == Some(key.0) {
            self.earliest = self.map.first_key_value().map(|(k, _)| k.0);
        }
    }

    fn expire(&mut self, now: Instant, out: &mut Vec<Waker>) {
        match self.earliest {
            Some(e) if e <= now => {}
            _ => return,
        }
        while let Some(entry) = self.map.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        self.earliest = self.map.first_key_value().map(|(k, _)| k.0);
    }
}

impl Timers {
    pub(crate) fn new() -> Self {
        Self {
            precise: Queue::default(),
            coarse: Queue::default(),
            next_id: 0,
        }
    }

    fn queue(&mut self, key: (Instant, u64)) -> &mut Queue {
        if key.1 & COARSE != 0 {
            &mut self.coarse
        } else {
            &mut self.precise
        }
    }

    fn insert(&mut self, deadline: Instant, waker: Waker, coarse: bool) -> (Instant, u64) {
        let key = (deadline, self.next_id | if coarse { COARSE } else { 0 });
        self.next_id = (self.next_id + 1) & !COARSE;
        self.queue(key).insert(key, waker);
        key
    }

    fn update(&mut self, key: (Instant, u64), waker: &Waker) {
        if let Some(w) = self.queue(key).map.get_mut(&key) {
            if !w.will_wake(waker) {
                *w = waker.clone();
            }
        }
    }

    fn remove(&mut self, key: (Instant, u64)) {
        self.queue(key).remove(key);
    }

    /// Moves the wakers of all deadlines up to `now` into `out`, earliest first (of two
    /// timers due at the same instant, the precise one first).
    /// Whether a timer of either kind is due at `now`: the check of every loop turn, which
    /// nearly always says no, kept apart from [`expire`](Self::expire) so that it costs no call.
    #[inline]
    pub(crate) fn any_due(&self, now: Instant) -> bool {
        self.precise.earliest.is_some_and(|e| e <= now) || self.coarse.earliest.is_some_and(|e| e <= now)
    }

    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Waker>) {
        let due = |q: &Queue| q.earliest.filter(|&e| e <= now);
        match (due(&self.precise), due(&self.coarse)) {
            (None, None) => return,
            // The usual case: one kind due.
            (Some(_), None) => return self.precise.expire(now, out),
            (None, Some(_)) => return self.coarse.expire(now, out),
            (Some(_), Some(_)) => {}
        }
        loop {
            let front = |q: &Queue| q.map.first_key_value().map(|(k, _)| k.0).filter(|&d| d <= now);
            let queue = match (front(&self.precise), front(&self.coarse)) {
                (None, None) => break,
                (Some(p), Some(c)) if c < p => &mut self.coarse,
                (Some(_), _) => &mut self.precise,
                (None, Some(_)) => &mut self.coarse,
            };
            if let Some(entry) = queue.map.first_entry() {
                out.push(entry.remove());
            }
        }
        for q in [&mut self.precise, &mut self.coarse] {
            q.earliest = q.map.first_key_value().map(|(k, _)| k.0);
        }
    }

    /// The earliest deadline of any timer: how long the core may park.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.precise
            .earliest
            .into_iter()
            .chain(self.coarse.earliest)
            .min()
    }

    /// The earliest deadline of a timer the core may poll for instead of parking.
    pub(crate) fn next_precise_deadline(&self) -> Option<Instant> {
        self.precise.earliest
    }

    pub(crate) fn len(&self) -> usize {
        self.precise.map.len() + self.coarse.map.len()
    }

    pub(crate) fn clear(&mut self) -> Vec<Waker> {
        let precise = std::mem::take(&mut self.precise).map.into_values();
        let coarse = std::mem::take(&mut self.coarse).map.into_values();
        precise.chain(coarse).collect()
    }
}

/// The future of [`sleep`] and [`sleep_until`].
pub struct Sleep {
    deadline: Instant,
    key: Option<(Instant, u64)>,
    coarse: bool,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").field("deadline", &self.deadline).finish()
    }
}

impl Sleep {
    /// The instant this sleep ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Makes this a coarse timer: a core with nothing else to do parks until it instead of
    /// polling for it (as it does for a timer due within [`Builder::idle_spin`]), so it may
    /// end a wake-up late (the time a parked core takes to run again: tens of microseconds
    /// on a virtual machine) but costs no CPU while the core waits. It still fires in
    /// deadline order with the other timers. For timers that pace background work, such as a batch window, where a
    /// core polling for each one would spend more than the precision is worth.
    ///
    /// [`Builder::idle_spin`]: crate::Builder::idle_spin
    pub fn coarse(mut self) -> Self {
        self.unregister();
        self.coarse = true;
        self
    }

    /// Moves the deadline (the timer is re-registered on the next poll).
    pub fn reset(&mut self, deadline: Instant) {
        self.unregister();
        self.deadline = deadline;
    }

    fn unregister(&mut self) {
        if let Some(key) = self.key.take() {
            context::try_with(|cx| cx.timers.borrow_mut().remove(key));
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = self.now();
        self.poll_at(cx, now)
    }
}

impl Sleep {
    /// The instant to compare the deadline with: the clock on the first poll (so a deadline
    /// already passed, such as a zero timeout's, is seen at once), then the loop turn's
    /// instant, with no clock read per poll (a registered sleep is woken by the timer, after
    /// the turn recorded its instant).
    fn now(&self) -> Instant {
        if self.key.is_none() {
            Instant::now()
        } else {
            loop_now()
        }
    }

    fn poll_at(mut self: Pin<&mut Self>, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        if now >= self.deadline {
            if coop::poll_proceed(cx).is_pending() {
                return Poll::Pending;
            }
            self.unregister();
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        match self.key {
            Some(key) => context::with(|c| c.timers.borrow_mut().update(key, cx.waker())),
            None => {
                let coarse = self.coarse;
                let key =
                    context::with(|c| c.timers.borrow_mut().insert(deadline, cx.waker().clone(), coarse));
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// Waits until `dur` has passed.
pub fn sleep(dur: Duration) -> Sleep {
    sleep_until(Instant::now().checked_add(dur).unwrap_or_else(far_future))
}

/// Waits until `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
        coarse: false,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// The deadline of a [`timeout`] passed before its future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> Self {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed")
    }
}

pin_project_lite::pin_project! {
    /// The future of [`timeout`].
    pub struct Timeout<F> {
        #[pin]
        fut: F,
        sleep: Sleep,
    }
}

impl<F> fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("deadline", &self.sleep.deadline)
            .finish()
    }
}

/// Runs `fut` for at most `dur`. On expiry the inner future is dropped (cancelled) and
/// `Err(Elapsed)` is returned. The inner future is polled first, so a future that is ready
/// at the deadline still wins.
pub fn timeout<F: Future>(dur: Duration, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        sleep: sleep(dur),
    }
}

/// Like [`timeout`] with an absolute deadline.
pub fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        sleep: sleep_until(deadline),
    }
}

impl<F> Timeout<F> {
    /// Makes the deadline a coarse timer ([`Sleep::coarse`]): a core with nothing else to do
    /// parks until it rather than polling for it, so the timeout may end tens of
    /// microseconds late. For deadlines counted in milliseconds or more, such as a
    /// protocol's read and write timeouts.
    pub fn coarse(mut self) -> Self {
        self.sleep = self.sleep.coarse();
        self
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `fut` is structurally pinned; `sleep` is `Unpin` and not.
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        // The deadline is checked outside the cooperative budget (as tokio's `Timeout` does):
        // an inner future that spends the whole budget on every poll would otherwise make the
        // elapsed sleep yield forever, and the timeout could never fire.
        let now = this.sleep.now();
        if now >= this.sleep.deadline {
            this.sleep.unregister();
            return Poll::Ready(Err(Elapsed(())));
        }
        match Pin::new(this.sleep).poll_at(cx, now) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Ticks at a fixed period on a fixed grid: tick `n` is due at `start + n * period`.
///
/// Lateness never accumulates: a late tick does not push later ones back. When the task falls
/// more than a whole period behind, the missed ticks are skipped (not burst) and the next tick
/// is the next grid point in the future.
#[derive(Debug)]
pub struct Interval {
    next: Instant,
    period: Duration,
    sleep: Sleep,
}

/// A ticker whose first tick is immediate and which then ticks every `period`.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// A ticker whose first tick is at `start`.
///
/// # Panics
///
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval period must be non-zero");
    Interval {
        next: start,
        period,
        sleep: sleep_until(start),
    }
}

impl Interval {
    /// Waits for the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.sleep).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let due = self.next;
        let now = Instant::now();
        let mut next = due + self.period;
        if next <= now {
            // Skip missed grid points, staying on the grid.
            let behind = now.duration_since(due).as_nanos() / self.period.as_nanos().max(1);
            let skip = u32::try_from(behind).unwrap_or(u32::MAX);
            next = due + self.period * skip.saturating_add(1);
            if next <= now {
                next += self.period;
            }
        }
        self.next = next;
        self.sleep.reset(next);
        Poll::Ready(due)
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_next_deadline_follows_inserts_removals_and_expiry() {
        struct Nop;
        impl Wake for Nop {
            fn wake(self: Arc<Self>) {}
        }
        let nop = Waker::from(Arc::new(Nop));
        let mut t = Timers::new();
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        assert_eq!(t.next_deadline(), None);
        let k30 = t.insert(at(30), nop.clone(), false);
        let k10 = t.insert(at(10), nop.clone(), false);
        let _k20 = t.insert(at(20), nop.clone(), false);
        let k10b = t.insert(at(10), nop.clone(), false);
        assert_eq!(t.next_deadline(), Some(at(10)));
        // One of two timers at the earliest deadline goes: the deadline stays.
        t.remove(k10);
        assert_eq!(t.next_deadline(), Some(at(10)));
        t.remove(k10b);
        assert_eq!(t.next_deadline(), Some(at(20)));
        // Removing a later one leaves it; a removed key is not found twice.
        t.remove(k30);
        t.remove(k30);
        assert_eq!(t.next_deadline(), Some(at(20)));
        let mut out = Vec::new();
        t.expire(at(15), &mut out);
        assert!(out.is_empty(), "nothing due before 20 ms");
        t.expire(at(20), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(t.next_deadline(), None);
        t.insert(at(5), nop.clone(), false);
        assert_eq!(t.next_deadline(), Some(at(5)));
        t.clear();
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn expire_fires_in_deadline_order_and_only_past_ones() {
        let mut t = Timers::new();
        let base = Instant::now();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Rec(usize, Arc<std::sync::Mutex<Vec<usize>>>);
        impl Wake for Rec {
            fn wake(self: Arc<Self>) {
                if let Ok(mut v) = self.1.lock() {
                    v.push(self.0);
                }
            }
        }
        for (i, ms) in [30u64, 10, 20, 40].iter().enumerate() {
            t.insert(
                base + Duration::from_millis(*ms),
                Waker::from(Arc::new(Rec(i, order.clone()))),
                false,
            );
        }
        let mut out = Vec::new();
        t.expire(base + Duration::from_millis(30), &mut out);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(*order.lock().unwrap_or_else(|e| e.into_inner()), vec![1, 2, 0]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.next_deadline(), Some(base + Duration::from_millis(40)));
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let key = t.insert(base, Waker::from(c.clone()), false);
        t.remove(key);
        let mut out = Vec::new();
        t.expire(base + Duration::from_millis(35), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn coarse_timers_bound_the_park_but_not_the_polling() {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        let w = Waker::from(c.clone());
        let mut t = Timers::new();
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let coarse = t.insert(at(10), w.clone(), true);
        let precise = t.insert(at(20), w.clone(), false);
        assert_eq!(
            t.next_deadline(),
            Some(at(10)),
            "the park ends at the coarse timer"
        );
        assert_eq!(
            t.next_precise_deadline(),
            Some(at(20)),
            "polling only for the precise one"
        );
        assert_eq!(t.len(), 2);
        t.remove(coarse);
        assert_eq!(t.next_deadline(), Some(at(20)));
        t.remove(precise);
        assert_eq!((t.next_deadline(), t.len()), (None, 0));

        // Both kinds fire once due, and only then.
        t.insert(at(10), w.clone(), true);
        t.insert(at(12), w.clone(), false);
        t.insert(at(30), w.clone(), true);
        let mut out = Vec::new();
        t.expire(at(5), &mut out);
        assert!(out.is_empty());
        t.expire(at(15), &mut out);
        out.drain(..).for_each(Waker::wake);
        assert_eq!(c.0.load(Ordering::SeqCst), 2);
        assert_eq!(t.next_deadline(), Some(at(30)));
        assert_eq!(t.next_precise_deadline(), None);
        assert_eq!(t.clear().len(), 1);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn precise_and_coarse_timers_fire_together_in_deadline_order() {
        struct Rec(u64, Arc<std::sync::Mutex<Vec<u64>>>);
        impl Wake for Rec {
            fn wake(self: Arc<Self>) {
                if let Ok(mut v) = self.1.lock() {
                    v.push(self.0);
                }
            }
        }
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut t = Timers::new();
        let base = Instant::now();
        for (ms, coarse) in [
            (40u64, true),
            (10, false),
            (30, true),
            (20, false),
            (15, true),
            (50, false),
        ] {
            let w = Waker::from(Arc::new(Rec(ms, order.clone())));
            t.insert(base + Duration::from_millis(ms), w, coarse);
        }
        let mut out = Vec::new();
        t.expire(base + Duration::from_millis(40), &mut out);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(
            *order.lock().unwrap_or_else(|e| e.into_inner()),
            vec![10, 15, 20, 30, 40]
        );
        assert_eq!(t.next_deadline(), Some(base + Duration::from_millis(50)));
        assert_eq!(t.next_precise_deadline(), Some(base + Duration::from_millis(50)));
        assert_eq!(t.len(), 1);
    }
}
