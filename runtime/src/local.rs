//! `CoreLocal<T>`: per-core state owned by a module, the runtime's `thread_local!`.
//!
//! A [`CoreLocal`] is a `static` naming one slot; every shard keeps its own value for it in
//! its context (a `Vec` indexed by the slot's number, assigned once per process on first
//! use). The value is created lazily on each core by the static's initializer, lives as long
//! as that core's shard, and is dropped on the shard's own thread during its teardown (after
//! its tasks and `Sharded` instances, before its ring is shut down), so a value may hold
//! runtime resources. Using it off a shard thread panics with a message naming the type.
//!
//! An access is a thread-local read, a relaxed load of the slot number, two `RefCell`
//! borrows, an index and two non-atomic `Rc` clones (the shard context's and the value's): no
//! lock, no atomic read-modify-write, no hashing. `cargo bench -p ringcore-runtime --bench runtime
//! -- core_local` compares it with a plain `thread_local!` (not yet measured on a quiet
//! machine; the development VM is shared).
//!
//! [`Sharded`](crate::Sharded) is the other half: a service built at run time by a factory
//! and addressed from other cores (`invoke_on`, `map_reduce`). A module's own per-core
//! state (caches, registries, configuration) is a `CoreLocal`.

use std::any::{type_name, Any};
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::context::{self, Context};

/// Slot numbers handed out so far (process-wide; each `CoreLocal` takes one on first use).
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// How often the teardown drops the values again when dropping them created new ones.
const DROP_ROUNDS: usize = 8;

/// One shard's core-local values, indexed by slot number.
#[derive(Default)]
pub(crate) struct Locals {
    slots: Vec<Option<Rc<dyn Any>>>,
    /// Set once the shard's teardown dropped the values: later accesses find nothing.
    closed: bool,
}

/// Per-core state: one `T` per shard, created on first use on that shard, dropped when the
/// shard exits. Declare it with [`core_local!`](crate::core_local).
///
/// `T` need not be `Send` or `Sync`: each value is created, used and dropped on one core's
/// thread. Values are reached from another core only by sending a closure there
/// ([`submit_to`](crate::submit_to)) that reads that core's value.
///
/// ```no_run
/// use std::cell::Cell;
/// use ringcore_runtime::{core_local, Runtime};
///
/// core_local! {
///     /// Requests this core served.
///     static SERVED: Cell<u64> = Cell::new(0);
/// }
///
/// Runtime::builder().core_count(2).build()?.run(|| async {
///     SERVED.with(|n| n.set(n.get() + 1));
///     assert_eq!(SERVED.with(Cell::get), 1); // each core counts its own
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct CoreLocal<T: 'static> {
    init: fn() -> T,
    /// The slot number plus one; 0 until the first use assigns one.
    slot: AtomicUsize,
    _t: PhantomData<fn() -> T>,
}

impl<T: 'static> fmt::Debug for CoreLocal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreLocal")
            .field("type", &type_name::<T>())
            .finish_non_exhaustive()
    }
}

impl<T: 'static> CoreLocal<T> {
    /// A core-local slot whose value `init` creates on each core. Prefer
    /// [`core_local!`](crate::core_local), which declares the `static`.
    pub const fn new(init: fn() -> T) -> Self {
        CoreLocal {
            init,
            slot: AtomicUsize::new(0),
            _t: PhantomData,
        }
    }

    /// Runs `f` with this core's value (created by the initializer on first use).
    ///
    /// `f` may use any runtime function and any core-local, this one included: no borrow is
    /// held while it runs.
    ///
    /// # Panics
    ///
    /// Outside a ringcore shard, or from a `Drop` that runs after the shard's teardown
    /// dropped its core-local values. [`try_with`](Self::try_with) returns `None` instead.
    #[inline]
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let v = self.get();
        f(&v)
    }

    /// This core's value, shared (created by the initializer on first use).
    ///
    /// # Panics
    ///
    /// As [`with`](Self::with).
    #[inline]
    pub fn get(&'static self) -> Rc<T> {
        match self.try_get() {
            Some(v) => v,
            None => self.missing(),
        }
    }

    /// Runs `f` with this core's value, or returns `None` off a shard thread (or after the
    /// shard's teardown dropped its core-local values).
    #[inline]
    pub fn try_with<R>(&'static self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let v = self.try_get()?;
        Some(f(&v))
    }

    /// This core's value, or `None` where [`try_with`](Self::try_with) gives `None`.
    #[inline]
    pub fn try_get(&'static self) -> Option<Rc<T>> {
        let slot = self.slot();
        context::try_with(|cx| self.get_in(cx, slot)).flatten()
    }

    fn get_in(&'static self, cx: &Context, slot: usize) -> Option<Rc<T>> {
        let found = {
            let locals = cx.locals.borrow();
            if locals.closed {
                return None;
            }
            locals.slots.get(slot).and_then(Option::clone)
        };
        match found {
            Some(v) => Some(downcast(v)),
            None => self.create(cx, slot),
        }
    }

    #[cold]
    fn create(&'static self, cx: &Context, slot: usize) -> Option<Rc<T>> {
        // The initializer is user code: it runs with no borrow held, and may use other
        // core-locals.
        let fresh: Rc<dyn Any> = Rc::new((self.init)());
        let (kept, unused) = {
            let mut locals = cx.locals.borrow_mut();
            if locals.closed {
                (None, Some(fresh))
            } else {
                if locals.slots.len() <= slot {
                    locals.slots.resize(slot + 1, None);
                }
                match &locals.slots[slot] {
                    // The initializer itself created this value (it used the same local):
                    // the first one stays.
                    Some(v) => (Some(v.clone()), Some(fresh)),
                    None => {
                        locals.slots[slot] = Some(fresh.clone());
                        (Some(fresh), None)
                    }
                }
            }
        };
        // Dropped after the borrow: a value's drop may run any code.
        drop(unused);
        kept.map(downcast)
    }

    #[inline]
    fn slot(&self) -> usize {
        match self.slot.load(Ordering::Relaxed) {
            0 => self.assign_slot(),
            s => s - 1,
        }
    }

    #[cold]
    fn assign_slot(&self) -> usize {
        let fresh = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) + 1;
        // Two threads may race to assign: the first wins, the loser's number stays unused.
        match self
            .slot
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh - 1,
            Err(won) => won - 1,
        }
    }

    #[cold]
    fn missing(&self) -> ! {
        if context::try_with(|_| ()).is_some() {
            panic!(
                "ringcore: core-local `{}` used after its shard's teardown dropped core-local \
                 state (from a Drop that runs at shard exit)",
                type_name::<T>()
            )
        }
        panic!(
            "ringcore: core-local `{}` used outside a ringcore shard: core-local state exists \
             only on a runtime core (inside Runtime::run)",
            type_name::<T>()
        )
    }
}

fn downcast<T: 'static>(v: Rc<dyn Any>) -> Rc<T> {
    match v.downcast::<T>() {
        Ok(v) => v,
        // A slot number belongs to one `CoreLocal<T>` static for the whole process, and only
        // that static stores into it.
        Err(_) => unreachable!("a core-local slot holds a value of its own type"),
    }
}

/// Drops every core-local value of the shard `cx`, on its own thread, and closes the table.
/// Called from the shard's teardown.
pub(crate) fn drop_all(cx: &Context) {
    for _ in 0..DROP_ROUNDS {
        let slots = std::mem::take(&mut cx.locals.borrow_mut().slots);
        if slots.iter().all(Option::is_none) {
            break;
        }
        // Dropped after the borrow: a value's drop may use (and so re-create) core-locals.
        drop(slots);
    }
    let rest = {
        let mut locals = cx.locals.borrow_mut();
        locals.closed = true;
        std::mem::take(&mut locals.slots)
    };
    drop(rest);
}

/// Declares [`CoreLocal`] statics, with the syntax of `thread_local!`:
///
/// ```
/// use std::cell::RefCell;
/// ringcore_runtime::core_local! {
///     /// Items this core was asked to forget.
///     static FORGET: RefCell<Vec<String>> = RefCell::new(Vec::new());
///     pub(crate) static LIMIT: u32 = 10;
/// }
/// ```
///
/// Each initializer runs once per core, on that core, at the first use there.
#[macro_export]
macro_rules! core_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])*
        $vis static $name: $crate::CoreLocal<$t> = $crate::CoreLocal::new({
            fn __ringcore_core_local_init() -> $t {
                $init
            }
            __ringcore_core_local_init
        });
        $crate::core_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $crate::core_local!($(#[$attr])* $vis static $name: $t = $init;);
    };
}
