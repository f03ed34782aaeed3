//! Reusable memory for type-erased futures run one at a time.
//!
//! A server keeps its handlers type-erased (one `Rc<dyn ..>` per route, made once); what a
//! handler returns per request is a future of a type only the handler knows. Boxing that
//! future costs an allocation and a free per request. A [`FutureSlot`] avoids both: the
//! code that knows the type writes the future into the slot's memory with
//! [`put`](FutureSlot::put) (the memory grows, rarely, to the largest future placed so far),
//! and the caller polls it there, through the [`SlotFuture`] it gets back, as it would poll
//! a `Pin<Box<dyn Future>>` (or [`place`](FutureSlot::place)s it and polls it through the
//! slot itself, [`poll_placed`](FutureSlot::poll_placed), with no handle to keep).
//! ringcore-http keeps one per connection, which runs one handler at a time: its plain
//! request path allocates nothing per request.
//!
//! The future is pinned in place: the slot's memory does not move or get reused while the
//! future lives. Placing a new future, growing and freeing the memory all need `&mut
//! FutureSlot`, which the [`SlotFuture`] holds for as long as it exists, and each of them
//! first drops a future still in the slot (one whose `SlotFuture` was leaked), so a pinned
//! future is always dropped before its memory is used again.
//!
//! ```
//! use ringcore_runtime::FutureSlot;
//!
//! let total = ringcore_runtime::block_on_with(|| async {
//!     let mut slot = FutureSlot::new();
//!     let mut total = 0;
//!     for i in 0..3u32 {
//!         // The same memory each time: no allocation after the first.
//!         total += slot.put(async move { i * 2 }).await;
//!     }
//!     total
//! });
//! assert_eq!(total, 6);
//! ```

use std::alloc::{self, Layout};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

type PollFn<T> = unsafe fn(NonNull<u8>, &mut Context<'_>) -> Poll<T>;
type DropFn = unsafe fn(NonNull<u8>);

/// The least alignment the slot's memory is allocated with (a future with a stricter one
/// reallocates it).
const MIN_ALIGN: usize = 16;

/// Reusable memory for one future at a time whose output is `T`; see the
/// [module docs](crate::future_slot).
///
/// Neither it nor its [`SlotFuture`] is `Send` or `Sync`: the futures it holds may be
/// `!Send` (a handler holding an `Rc`), and it does not know which.
///
/// ```compile_fail
/// fn send<X: Send>() {}
/// send::<ringcore_runtime::FutureSlot<()>>();
/// ```
///
/// ```compile_fail
/// fn send<X: Send>() {}
/// send::<ringcore_runtime::SlotFuture<'static, ()>>();
/// ```
pub struct FutureSlot<T> {
    /// `layout.size()` bytes aligned to `layout.align()`; dangling while the size is 0.
    mem: NonNull<u8>,
    layout: Layout,
    /// The future in the slot, if one was placed and not dropped yet: where it is, how to
    /// drop it and how to poll it.
    live: Option<(NonNull<u8>, DropFn, PollFn<T>)>,
    _output: PhantomData<fn() -> T>,
    /// Not `Send`, not `Sync`, whatever the fields above become (see the type's docs).
    _local: PhantomData<*mut ()>,
}

impl<T> FutureSlot<T> {
    /// An empty slot; it allocates on the first [`put`](Self::put) of a future that is not
    /// zero-sized.
    pub fn new() -> Self {
        FutureSlot {
            mem: NonNull::dangling(),
            layout: Layout::new::<()>(),
            live: None,
            _output: PhantomData,
            _local: PhantomData,
        }
    }

    /// How many bytes of memory the slot holds (at least the largest future placed so far).
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Moves `fut` into the slot (growing its memory if `fut` does not fit) and returns it,
    /// pinned there, as a future to poll. Dropping the returned future drops `fut`.
    ///
    /// `'static`: a future left in the slot by a leaked [`SlotFuture`] is dropped later, when
    /// the slot is reused or dropped, so it must not borrow anything that could be gone.
    pub fn put<F>(&mut self, fut: F) -> SlotFuture<'_, T>
    where
        F: Future<Output = T> + 'static,
    {
        let at = self.write(fut);
        SlotFuture {
            at,
            poll: poll_shim::<F, T>,
            slot: self,
        }
    }

    /// Moves `fut` into the slot (growing its memory if `fut` does not fit), to be polled
    /// there with [`poll_placed`](Self::poll_placed): [`put`](Self::put) without a
    /// [`SlotFuture`], so that the caller has nothing to move around (ringcore-http's
    /// connections place their handlers' futures this way, and poll them through
    /// [`std::future::poll_fn`]). A future placed and never polled to the end is dropped by
    /// the next `place` or `put`, or with the slot.
    ///
    /// ```
    /// use ringcore_runtime::FutureSlot;
    ///
    /// let n = ringcore_runtime::block_on_with(|| async {
    ///     let mut slot = FutureSlot::new();
    ///     slot.place(async { 7 });
    ///     std::future::poll_fn(|cx| slot.poll_placed(cx)).await
    /// });
    /// assert_eq!(n, Some(7));
    /// ```
    pub fn place<F>(&mut self, fut: F)
    where
        F: Future<Output = T> + 'static,
    {
        self.write(fut);
    }

    /// Polls the future [`place`](Self::place)d in the slot; once it is ready, drops it and
    /// gives its output. `Ready(None)` when the slot holds no future (none was placed, or it
    /// already gave its output here). (A future [`put`](Self::put) is polled through its
    /// [`SlotFuture`], which keeps it until the handle is dropped: polling it here after it
    /// finished there would poll a finished future.)
    pub fn poll_placed(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Some((at, _, poll)) = self.live else {
            return Poll::Ready(None);
        };
        // SAFETY: `live` names the future written at `at` with its own poll function; it is
        // alive (only `clear` drops it, and takes `live` first) and never moves (see the
        // module docs).
        match unsafe { poll(at, cx) } {
            Poll::Ready(out) => {
                self.clear();
                Poll::Ready(Some(out))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes `fut` into the slot's memory (dropping the future there, and growing the
    /// memory if `fut` does not fit) and records it as the live one; where it is.
    fn write<F>(&mut self, fut: F) -> NonNull<u8>
    where
        F: Future<Output = T> + 'static,
    {
        self.clear();
        let need = Layout::new::<F>();
        let at: NonNull<F> = if need.size() == 0 {
            NonNull::dangling()
        } else {
            if need.size() > self.layout.size() || need.align() > self.layout.align() {
                self.grow(need);
            }
            self.mem.cast()
        };
        // SAFETY: `at` is valid for a write of an `F`: a well-aligned dangling pointer when
        // `F` is zero-sized, else the slot's memory, which `grow` made at least `need.size()`
        // bytes at an alignment of at least `need.align()`. No future lives there (`clear`
        // above), so nothing is overwritten.
        unsafe { at.as_ptr().write(fut) };
        let at = at.cast::<u8>();
        self.live = Some((at, drop_shim::<F>, poll_shim::<F, T>));
        at
    }

    /// Drops the future in the slot, if any; the memory is kept for the next one. (What a
    /// pool of slots does before it keeps a slot whose future was abandoned: whatever that
    /// future holds is let go now, not when the slot is next used.)
    pub fn clear(&mut self) {
        // Taken first: a drop that panics must not leave the future to be dropped again.
        if let Some((at, drop, _)) = self.live.take() {
            // SAFETY: `live` names the future `put` wrote at `at` with its own drop function,
            // and it was not dropped yet (whoever drops it takes `live` first).
            unsafe { drop(at) };
        }
    }

    /// Replaces the memory with a block that fits `need` (no future lives in the slot).
    fn grow(&mut self, need: Layout) {
        let size = need.size().max(self.layout.size());
        let align = need.align().max(self.layout.align()).max(MIN_ALIGN);
        let layout = match Layout::from_size_align(size, align) {
            Ok(l) => l,
            // Only for a size within the alignment's rounding of `isize::MAX`: abort, as an
            // allocation failure does.
            Err(_) => alloc::handle_alloc_error(need),
        };
        self.release();
        // SAFETY: `layout` has a non-zero size (`need.size() > 0` when `grow` is called).
        let mem = unsafe { alloc::alloc(layout) };
        let Some(mem) = NonNull::new(mem) else {
            alloc::handle_alloc_error(layout)
        };
        self.mem = mem;
        self.layout = layout;
    }

    /// Frees the memory (no future lives in the slot).
    fn release(&mut self) {
        if self.layout.size() > 0 {
            // SAFETY: `mem` was allocated by `grow` with exactly `layout`, and is freed once:
            // the slot is reset to the empty state right after.
            unsafe { alloc::dealloc(self.mem.as_ptr(), self.layout) };
        }
        self.mem = NonNull::dangling();
        self.layout = Layout::new::<()>();
    }
}

impl<T> std::fmt::Debug for FutureSlot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FutureSlot")
            .field("capacity", &self.layout.size())
            .field("occupied", &self.live.is_some())
            .finish()
    }
}

impl<T> std::fmt::Debug for SlotFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotFuture")
    }
}

impl<T> Default for FutureSlot<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for FutureSlot<T> {
    fn drop(&mut self) {
        // A leaked future's drop that panics leaves the memory unfreed (a leak, not a fault).
        self.clear();
        self.release();
    }
}

/// A future placed in a [`FutureSlot`], polled where it lies; dropping this drops it.
pub struct SlotFuture<'s, T> {
    at: NonNull<u8>,
    poll: PollFn<T>,
    slot: &'s mut FutureSlot<T>,
}

impl<T> Future for SlotFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        // SAFETY: `at` holds the future `put` placed with this `poll` function; it is alive
        // (only dropping this drops it: a later `put` and the slot's own drop would need the
        // borrow this holds) and never moves (see the module docs).
        unsafe { (self.poll)(self.at, cx) }
    }
}

impl<T> Drop for SlotFuture<'_, T> {
    fn drop(&mut self) {
        self.slot.clear();
    }
}

/// Polls the `F` at `at`.
///
/// # Safety
///
/// `at` must point to a live `F` that stays at that address until it is dropped.
unsafe fn poll_shim<F: Future<Output = T>, T>(at: NonNull<u8>, cx: &mut Context<'_>) -> Poll<T> {
    // SAFETY: forwarded from the caller; the `F` never moves, so pinning it is sound.
    let fut = unsafe { Pin::new_unchecked(&mut *at.cast::<F>().as_ptr()) };
    fut.poll(cx)
}

/// Drops the `F` at `at` in place.
///
/// # Safety
///
/// `at` must point to a live `F`, which is not used again.
unsafe fn drop_shim<F>(at: NonNull<u8>) {
    // SAFETY: forwarded from the caller.
    unsafe { at.cast::<F>().as_ptr().drop_in_place() }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::task::Waker;

    use super::*;

    /// A no-op waker (`Waker::noop` needs Rust 1.85).
    fn noop_waker() -> Waker {
        use std::task::{RawWaker, RawWakerVTable};
        const VTABLE: RawWakerVTable =
            RawWakerVTable::new(|p| RawWaker::new(p, &VTABLE), |_| {}, |_| {}, |_| {});
        // SAFETY: every function of the table ignores its data pointer.
        unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
    }

    fn poll_once<T>(f: &mut SlotFuture<'_, T>) -> Poll<T> {
        let waker = noop_waker();
        Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    /// Counts its drops; pending on its first poll, then ready with `value`.
    struct Probe {
        drops: Rc<Cell<u32>>,
        polled: bool,
        value: u64,
        _pad: [u64; 8],
    }

    impl Probe {
        fn new(drops: &Rc<Cell<u32>>, value: u64) -> Self {
            Probe {
                drops: drops.clone(),
                polled: false,
                value,
                _pad: [0; 8],
            }
        }
    }

    impl Future for Probe {
        type Output = u64;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
            if std::mem::replace(&mut self.polled, true) {
                Poll::Ready(self.value)
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    #[test]
    fn futures_run_in_the_same_memory_one_after_another() {
        let drops = Rc::new(Cell::new(0));
        let mut slot = FutureSlot::new();
        let mut first_at = None;
        for i in 0..3u64 {
            let mut f = slot.put(Probe::new(&drops, i));
            let at = f.at;
            assert_eq!(*first_at.get_or_insert(at), at, "future {i} moved to new memory");
            assert_eq!(poll_once(&mut f), Poll::Pending);
            assert_eq!(poll_once(&mut f), Poll::Ready(i));
            drop(f);
            assert_eq!(
                drops.get(),
                i as u32 + 1,
                "future {i} not dropped with its handle"
            );
        }
        assert_eq!(slot.capacity(), std::mem::size_of::<Probe>());
    }

    /// `place` and `poll_placed`: the output once, the future dropped as it gives it, then
    /// nothing; a placed future never finished is dropped by the next `place` or with the
    /// slot; the memory is the same as `put`'s.
    #[test]
    fn a_placed_future_is_polled_where_it_lies_and_dropped_once() {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let drops = Rc::new(Cell::new(0));
        let mut slot = FutureSlot::new();
        assert_eq!(slot.poll_placed(&mut cx), Poll::Ready(None), "nothing placed yet");
        let at = slot.put(Probe::new(&drops, 0)).at;
        assert_eq!(drops.get(), 1);
        slot.place(Probe::new(&drops, 5));
        assert_eq!(
            slot.live.map(|(a, _, _)| a),
            Some(at),
            "placed in the same memory"
        );
        assert_eq!(slot.poll_placed(&mut cx), Poll::Pending);
        assert_eq!(drops.get(), 1, "dropped while pending");
        assert_eq!(slot.poll_placed(&mut cx), Poll::Ready(Some(5)));
        assert_eq!(drops.get(), 2, "not dropped when it gave its output");
        assert_eq!(
            slot.poll_placed(&mut cx),
            Poll::Ready(None),
            "polled after its end"
        );
        assert_eq!(drops.get(), 2, "dropped twice");
        // Never finished: dropped by the next place, and with the slot.
        slot.place(Probe::new(&drops, 6));
        assert_eq!(slot.poll_placed(&mut cx), Poll::Pending);
        slot.place(Probe::new(&drops, 7));
        assert_eq!(drops.get(), 3, "overwritten without its drop");
        drop(slot);
        assert_eq!(drops.get(), 4, "the slot was freed with a future still in it");
    }

    #[test]
    fn clear_drops_the_future_now_and_keeps_the_memory() {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let drops = Rc::new(Cell::new(0));
        let mut slot = FutureSlot::new();
        slot.place(Probe::new(&drops, 1));
        assert_eq!(slot.poll_placed(&mut cx), Poll::Pending);
        let capacity = slot.capacity();
        slot.clear();
        assert_eq!(drops.get(), 1, "not dropped by clear");
        assert_eq!(slot.capacity(), capacity, "the memory went with it");
        assert_eq!(slot.poll_placed(&mut cx), Poll::Ready(None), "still in the slot");
        slot.clear();
        drop(slot);
        assert_eq!(drops.get(), 1, "dropped twice");
    }

    /// A placed future whose poll panics stays in the slot, and is dropped once: by the next
    /// `place`, which then runs in the same memory.
    #[test]
    fn a_placed_future_that_panics_is_dropped_once_by_the_next() {
        struct Boom(Rc<Cell<u32>>);
        impl Future for Boom {
            type Output = u64;
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u64> {
                panic!("boom");
            }
        }
        impl Drop for Boom {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let waker = noop_waker();
        let drops = Rc::new(Cell::new(0));
        let mut slot = FutureSlot::new();
        slot.place(Boom(drops.clone()));
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            slot.poll_placed(&mut Context::from_waker(&waker))
        }));
        assert!(polled.is_err(), "the poll's panic comes out");
        assert_eq!(drops.get(), 0, "dropped by the panic");
        slot.place(Probe::new(&drops, 8));
        assert_eq!(drops.get(), 1, "the panicked future was not dropped, or twice");
        let mut cx = Context::from_waker(&waker);
        assert_eq!(slot.poll_placed(&mut cx), Poll::Pending);
        assert_eq!(slot.poll_placed(&mut cx), Poll::Ready(Some(8)));
        assert_eq!(drops.get(), 2);
    }

    #[test]
    fn a_handle_dropped_before_the_end_drops_its_future() {
        let drops = Rc::new(Cell::new(0));
        let mut slot = FutureSlot::new();
        let mut f = slot.put(Probe::new(&drops, 7));
        assert_eq!(poll_once(&mut f), Poll::Pending);
        drop(f);
        assert_eq!(drops.get(), 1);
        drop(slot);
        assert_eq!(drops.get(), 1, "dropped twice");
    }

    #[test]
    fn a_leaked_handle_s_future_is_dropped_before_its_memory_is_reused_or_freed() {
        let drops = Rc::new(Cell::new(0));
        let mut slot = FutureSlot::new();
        std::mem::forget(slot.put(Probe::new(&drops, 1)));
        assert_eq!(drops.get(), 0);
        let mut f = slot.put(Probe::new(&drops, 2));
        assert_eq!(
            drops.get(),
            1,
            "the leaked future was overwritten without its drop"
        );
        assert_eq!(poll_once(&mut f), Poll::Pending);
        std::mem::forget(f);
        drop(slot);
        assert_eq!(drops.get(), 2, "the slot was freed with a future still in it");
    }

    #[test]
    fn a_larger_or_stricter_future_gets_memory_that_fits() {
        #[repr(align(128))]
        struct Aligned([u8; 300]);
        let drops = Rc::new(Cell::new(0));
        let mut slot = FutureSlot::new();
        drop(slot.put(Probe::new(&drops, 0)));
        let small = slot.capacity();
        let big = Aligned([9; 300]);
        let mut f = slot.put(async move {
            // The whole value, not just its field (edition 2021 captures fields apart).
            let big = big;
            big.0.iter().map(|&b| u64::from(b)).sum::<u64>()
        });
        assert_eq!(f.at.as_ptr() as usize % 128, 0, "misaligned");
        assert_eq!(poll_once(&mut f), Poll::Ready(2700));
        drop(f);
        assert!(slot.capacity() >= 300 && slot.capacity() > small);
        // Back to a small future: the larger memory is kept.
        let mut f = slot.put(Probe::new(&drops, 3));
        assert_eq!(f.at.as_ptr() as usize % 128, 0);
        assert_eq!(poll_once(&mut f), Poll::Pending);
        assert_eq!(poll_once(&mut f), Poll::Ready(3));
    }

    #[test]
    fn a_zero_sized_future_needs_no_memory() {
        struct Five;
        impl Future for Five {
            type Output = u8;
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u8> {
                Poll::Ready(5)
            }
        }
        let mut slot = FutureSlot::new();
        let mut f = slot.put(Five);
        assert_eq!(poll_once(&mut f), Poll::Ready(5));
        drop(f);
        assert_eq!(slot.capacity(), 0);
    }
}
