//! dpf's bounded lock-free single-producer single-consumer ring: worker ->
//! worker flow handoff, worker -> sync pfsync export and sync -> worker
//! import (ARCHITECTURE.md, "Queues").
//!
//! [`channel`] allocates a ring of a fixed power-of-two capacity and returns
//! its two ends. [`Producer`] and [`Consumer`] are `Send` but neither `Clone`
//! nor `Sync`, so "one producer, one consumer" is enforced by ownership, not
//! by convention. Nothing blocks and nothing allocates after creation: a full
//! ring hands the item back ([`Producer::push`] returns `Err(item)`) and the
//! caller counts the drop; an empty ring returns `None` / `0`.
//!
//! Items are `T: Copy + Send`: plain records (pfsync export/import state
//! records, handoff entries) or raw mbuf pointers wrapped by the caller in a `Copy + Send`
//! newtype. Because `T: Copy`, `T` has no drop glue, so the ring never drops
//! items: items still in the ring (or pushed but never published) when both
//! ends are gone are simply forgotten, and the buffer is freed by the last
//! end's `Arc`. Ownership of anything an item *points to* (an mbuf) stays the
//! caller's business.
//!
//! Batching: [`Producer::push`] writes a slot but does not make it visible;
//! [`Producer::publish`] makes every pushed item visible with one release
//! store, once per burst. [`Consumer::pop_batch`] reads the producer's index
//! once and gives back all the slots it copied with one release store.
//!
//! ```text
//!   Shared (Arc)                      slots[capacity], index & mask
//!   +-----------------------------+   +---+---+---+---+---+---+---+---+
//!   | head  (CachePadded)  <-cons |   |   | r | r | p | p | u |   |   |
//!   | tail  (CachePadded)  <-prod |   +---+---+---+---+---+---+---+---+
//!   | slots, mask (read-only)     |         ^head   ^tail   ^write
//!   +-----------------------------+   r: published, readable by the consumer
//!   Producer { write, published,      p: published (tail) ... u: pushed,
//!              cached_head }             not yet published (write)
//!   Consumer { read, cached_tail }
//! ```
//!
//! Invariants (indices are free-running `usize` counters; a slot is
//! `index & mask`):
//! `head <= tail <= write` and `write - head <= capacity` (wrapping
//! arithmetic); only the producer writes `tail` and slots in
//! `[tail, head + capacity)`; only the consumer writes `head` and reads slots
//! in `[head, tail)`.
//!
//! # Design note: memory orderings
//!
//! Each index has exactly one writer, so no read-modify-write or CAS is
//! needed, and each side keeps its own index in a local field (it never loads
//! its own atomic). The ring is two message-passing handoffs, each over one
//! atomic:
//!
//! * **Data handoff (producer -> consumer), over `tail`.** The producer
//!   writes slots with plain stores, then `tail.store(write, Release)`. The
//!   consumer `tail.load(Acquire)`; if it reads `t`, every slot write for an
//!   index `< t` happens-before its reads of those slots. One release store
//!   orders *all* earlier writes in program order, which is why one store per
//!   burst publishes the whole burst, and why a consumer sees a published
//!   burst entirely or not at all.
//! * **Slot return (consumer -> producer), over `head`.** The consumer reads
//!   slots, then `head.store(read, Release)`. The producer `head.load(Acquire)`
//!   before reusing a slot; if it reads `h`, the consumer's reads of slots
//!   `< h` happen-before the producer's overwrites (no write-after-read race,
//!   so the consumer never sees a torn or newer item).
//!
//! Acquire/release is enough because every property needed is a pairwise
//! "this side's accesses before the store are visible after the other side's
//! load of that value" over a single location; nothing ever reasons about the
//! relative order of `head` and `tail` as seen by a third thread, which is
//! the only thing `SeqCst`'s single total order would add.
//!
//! Cached indices (`Producer::cached_head`, `Consumer::cached_tail`) may be
//! stale, but the real indices only move forward, so a stale copy only makes
//! the ring look fuller (producer) or emptier (consumer) than it is: safe,
//! merely conservative. They are reloaded (acquire) only when they say
//! full/empty, so in steady state the producer touches the consumer's cache
//! line about once per wrap of the ring, not once per item.
//!
//! Index wrap: capacities are powers of two no larger than
//! `2^(usize::BITS - 1)`, so `write.wrapping_sub(head)` is exact and
//! `index & mask` stays continuous when a counter wraps past `usize::MAX`
//! (`2^usize::BITS` is a multiple of the capacity).
//!
//! # Proof obligations and how they are checked
//!
//! * `loom` (`mod loom_tests`) explores the interleavings and memory
//!   orderings of: a batch push + publish against a concurrent consumer, a
//!   capacity-2 ring wrapping around, and full-ring refusal followed by
//!   progress. loom's `UnsafeCell` tracking fails the model if a slot read and
//!   write are not ordered by happens-before. Run them with (a separate target
//!   directory, only for loom):
//!
//!   ```text
//!   LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=/work/cargo-target-loom \
//!       cargo test -p dataplane --no-default-features --release --lib ring
//!   ```
//!
//!   (the tests default the preemption bound to 3 when `LOOM_MAX_PREEMPTIONS`
//!   is unset).
//! * `tests/ring_stress.rs` runs a real producer and consumer thread over
//!   millions of items and checks nothing is lost, duplicated or reordered
//!   (and, in the dropping variant, `received + dropped == sent`).

mod sync;

#[cfg(all(test, loom))]
mod loom_tests;

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;
use core::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use sync::{Arc, AtomicUsize, Ordering, UnsafeCell};

/// The largest capacity [`try_channel`] accepts (before the byte-size check):
/// half the index space, so wrapping index differences stay exact.
pub const MAX_CAPACITY: usize = 1 << (usize::BITS - 1);

/// Why a ring could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The capacity, rounded up to a power of two, exceeds [`MAX_CAPACITY`]
    /// or the slot array would exceed `isize::MAX` bytes.
    #[error("ring capacity {requested} is too large")]
    CapacityTooLarge {
        /// The capacity asked for.
        requested: usize,
    },
}

/// Creates a ring holding at least `capacity` items (rounded up to a power of
/// two; 0 counts as 1) and returns its two ends. All memory is allocated here.
///
/// # Panics
///
/// If the rounded capacity is unrepresentable (see [`try_channel`]); rings are
/// created at start-up with configured sizes, so this is a start-up failure.
/// Use [`try_channel`] to handle it instead.
pub fn channel<T: Copy + Send>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    match try_channel(capacity) {
        Ok(ends) => ends,
        // Start-up site: a ring size is configuration, not traffic.
        Err(e) => panic!("{e}"),
    }
}

/// One ring of `capacity` for every ordered pair of `n` parties: `out[a][b]`
/// sends from `a` to `b` (`None` when `a == b`), `inn[b]` holds the
/// receiving ends of the rings into `b`.
#[allow(clippy::type_complexity)]
pub fn mesh<T: Copy + Send>(
    n: usize,
    capacity: usize,
) -> (Vec<Vec<Option<Producer<T>>>>, Vec<Vec<Consumer<T>>>) {
    let mut out: Vec<Vec<Option<Producer<T>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut inn: Vec<Vec<Consumer<T>>> = (0..n).map(|_| Vec::new()).collect();
    for (from, row) in out.iter_mut().enumerate() {
        for (to, slot) in row.iter_mut().enumerate() {
            if from != to {
                let (p, c) = channel(capacity);
                *slot = Some(p);
                inn[to].push(c);
            }
        }
    }
    (out, inn)
}

/// [`channel`], but returns [`RingError::CapacityTooLarge`] instead of
/// panicking when `capacity` rounded up to a power of two exceeds
/// [`MAX_CAPACITY`] or `isize::MAX` bytes of slots.
pub fn try_channel<T: Copy + Send>(
    capacity: usize,
) -> Result<(Producer<T>, Consumer<T>), RingError> {
    let rounded = capacity
        .max(1)
        .checked_next_power_of_two()
        .filter(|&c| c <= MAX_CAPACITY)
        .filter(|&c| {
            c.checked_mul(core::mem::size_of::<T>())
                .is_some_and(|bytes| bytes <= isize::MAX as usize)
        })
        .ok_or(RingError::CapacityTooLarge {
            requested: capacity,
        })?;
    Ok(with_start_index(rounded, 0))
}

/// Builds the two ends of a ring of exactly `capacity` (a power of two) slots
/// whose indices all start at `start`. Tests use a `start` near `usize::MAX`
/// to exercise index wrap-around.
fn with_start_index<T: Copy + Send>(capacity: usize, start: usize) -> (Producer<T>, Consumer<T>) {
    debug_assert!(capacity.is_power_of_two());
    let slots: Box<[UnsafeCell<MaybeUninit<T>>]> = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(start)),
        tail: CachePadded::new(AtomicUsize::new(start)),
        slots,
        mask: capacity - 1,
    });
    let producer = Producer {
        shared: Arc::clone(&shared),
        capacity,
        write: start,
        published: start,
        cached_head: start,
        _not_sync: PhantomData,
    };
    let consumer = Consumer {
        shared,
        capacity,
        read: start,
        cached_tail: start,
        _not_sync: PhantomData,
    };
    (producer, consumer)
}

/// The state both ends share. Freed when the last end is dropped.
struct Shared<T> {
    /// Consumer's index: the next slot to read. Stored (release) only by the
    /// consumer; loaded (acquire) by the producer. Own cache line.
    head: CachePadded<AtomicUsize>,
    /// Producer's published index: one past the last published slot. Stored
    /// (release) only by the producer; loaded (acquire) by the consumer. Own
    /// cache line.
    tail: CachePadded<AtomicUsize>,
    /// `capacity` slots; slot `i & mask` holds item number `i`. Read-only
    /// after creation except through the handoff protocol.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// `capacity - 1`.
    mask: usize,
}

// SAFETY: `Shared` is only reachable from one `Producer` and one `Consumer`
// (neither is `Clone` nor `Sync`). The indices are atomics. Each slot is
// accessed by one side at a time: the producer only writes slots in
// `[tail, head + capacity)` and the consumer only reads slots in `[head, tail)`,
// and a slot moves between those ranges only through a release store matched by
// an acquire load (module design note), which orders the accesses. Items are
// `T: Send` values moved from the producer's thread to the consumer's.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: as above; sending `Shared` sends the `T`s in its slots, which are
// `Send`.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T: Copy> Shared<T> {
    /// Writes `item` into the slot of `index`.
    ///
    /// # Safety
    ///
    /// The caller must be the ring's only producer and the slot must be free:
    /// `index - head < capacity` for a `head` value it loaded with acquire
    /// ordering (so the consumer's last read of this slot happens-before this
    /// write) and `index >= tail` (so the consumer will not read it until a
    /// later release store of `tail`).
    #[inline(always)]
    unsafe fn write_slot(&self, index: usize, item: T) {
        // SAFETY: `mask == slots.len() - 1`, so `index & mask < slots.len()`.
        let cell = unsafe { self.slots.get_unchecked(index & self.mask) };
        cell.with_mut(|slot| {
            // SAFETY: the caller guarantees exclusive access to this slot (no
            // concurrent read or write); `slot` points into a live allocation
            // and `MaybeUninit<T>` accepts any write.
            unsafe { slot.write(MaybeUninit::new(item)) }
        });
    }

    /// Reads the item in the slot of `index`.
    ///
    /// # Safety
    ///
    /// The caller must be the ring's only consumer, `index >= head` and
    /// `index < t` for a `tail` value `t` it loaded with acquire ordering: the
    /// slot was written by the producer before the release store of `t`, so it
    /// is initialised, and the producer will not overwrite it until the
    /// consumer stores a `head` past `index`.
    #[inline(always)]
    unsafe fn read_slot(&self, index: usize) -> T {
        // SAFETY: `mask == slots.len() - 1`, so `index & mask < slots.len()`.
        let cell = unsafe { self.slots.get_unchecked(index & self.mask) };
        cell.with(|slot| {
            // SAFETY: the caller guarantees the slot holds a published,
            // initialised `T` that nobody writes concurrently; `T: Copy`, so
            // reading it out leaves no double-drop hazard.
            unsafe { slot.read().assume_init() }
        })
    }
}

/// The producing end of a ring. `Send`, not `Clone`, not `Sync`.
///
/// ```compile_fail,E0277
/// fn needs_sync<S: Sync>() {}
/// needs_sync::<dataplane::ring::Producer<u64>>();
/// ```
///
/// ```compile_fail,E0277
/// fn needs_clone<C: Clone>() {}
/// needs_clone::<dataplane::ring::Producer<u64>>();
/// ```
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Slot count (a power of two); a local copy to avoid the pointer chase.
    capacity: usize,
    /// Next index to write. `[published, write)` is pushed but not visible.
    write: usize,
    /// The last value stored to `tail`.
    published: usize,
    /// The consumer's `head` as last loaded (acquire): a lower bound on it.
    cached_head: usize,
    /// Makes the type `!Sync` while keeping it `Send`.
    _not_sync: PhantomData<Cell<()>>,
}

impl<T: Copy + Send> Producer<T> {
    /// Writes `item` into the next slot without making it visible to the
    /// consumer (call [`publish`](Self::publish) once per burst). Returns
    /// `Err(item)` when the ring is full; the caller counts the drop.
    ///
    /// Pushed-but-unpublished items occupy slots: if the ring is full of them,
    /// only `publish` (and the consumer draining) makes room, so a producer
    /// that wants to wait for space must publish first.
    ///
    /// Reloads the consumer's index (one acquire load) only when the cached
    /// copy says the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.write.wrapping_sub(self.cached_head) == self.capacity {
            self.cached_head = self.shared.head.load(Ordering::Acquire);
            if self.write.wrapping_sub(self.cached_head) == self.capacity {
                return Err(item);
            }
        }
        // SAFETY: we are the only producer (`Producer` is neither `Clone` nor
        // `Sync` and `push` takes `&mut self`); `write - cached_head <
        // capacity` for a `cached_head` loaded with acquire (or the start
        // value, when no slot has been used), and `write >= published == tail`.
        unsafe { self.shared.write_slot(self.write, item) };
        self.write = self.write.wrapping_add(1);
        Ok(())
    }

    /// Makes every pushed item visible to the consumer with one release store
    /// (none if nothing was pushed since the last publish).
    #[inline]
    pub fn publish(&mut self) {
        if self.published != self.write {
            self.shared.tail.store(self.write, Ordering::Release);
            self.published = self.write;
        }
    }

    /// How many more items [`push`](Self::push) would accept right now.
    /// Reloads the consumer's index (acquire) and refreshes the cached copy,
    /// so a burst that fits pushes without touching the consumer's line.
    #[inline]
    pub fn free_slots(&mut self) -> usize {
        self.cached_head = self.shared.head.load(Ordering::Acquire);
        self.capacity - self.write.wrapping_sub(self.cached_head)
    }

    /// Items pushed but not yet published.
    #[inline]
    pub fn pending(&self) -> usize {
        self.write.wrapping_sub(self.published)
    }

    /// The ring's capacity (a power of two).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity)
            .field("write", &self.write)
            .field("published", &self.published)
            .field("cached_head", &self.cached_head)
            .finish()
    }
}

/// The consuming end of a ring. `Send`, not `Clone`, not `Sync`.
///
/// ```compile_fail,E0277
/// fn needs_sync<S: Sync>() {}
/// needs_sync::<dataplane::ring::Consumer<u64>>();
/// ```
///
/// ```compile_fail,E0277
/// fn needs_clone<C: Clone>() {}
/// needs_clone::<dataplane::ring::Consumer<u64>>();
/// ```
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Slot count (a power of two); a local copy to avoid the pointer chase.
    capacity: usize,
    /// Next index to read; the last value stored to `head`.
    read: usize,
    /// The producer's `tail` as last loaded (acquire): a lower bound on it.
    cached_tail: usize,
    /// Makes the type `!Sync` while keeping it `Send`.
    _not_sync: PhantomData<Cell<()>>,
}

impl<T: Copy + Send> Consumer<T> {
    /// Takes the oldest published item, if any, and gives its slot back to
    /// the producer (one release store). Reloads the producer's index
    /// (acquire) only when the cached copy says the ring is empty. Prefer
    /// [`pop_batch`](Self::pop_batch) on the fast path.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.read == self.cached_tail {
            self.cached_tail = self.shared.tail.load(Ordering::Acquire);
            if self.read == self.cached_tail {
                return None;
            }
        }
        // SAFETY: we are the only consumer (`&mut self`, not `Clone`/`Sync`);
        // `read == head` and `read < cached_tail`, a `tail` value loaded with
        // acquire.
        let item = unsafe { self.shared.read_slot(self.read) };
        self.read = self.read.wrapping_add(1);
        self.shared.head.store(self.read, Ordering::Release);
        Some(item)
    }

    /// Copies up to `out.len()` published items, oldest first, into the front
    /// of `out` and returns how many. Loads the producer's index once
    /// (acquire) and releases all copied slots with one release store.
    #[inline]
    pub fn pop_batch(&mut self, out: &mut [T]) -> usize {
        if out.is_empty() {
            return 0;
        }
        self.cached_tail = self.shared.tail.load(Ordering::Acquire);
        let available = self.cached_tail.wrapping_sub(self.read);
        let n = available.min(out.len());
        if n == 0 {
            return 0;
        }
        for (offset, dst) in out[..n].iter_mut().enumerate() {
            // SAFETY: we are the only consumer; `read + offset` is in
            // `[head, cached_tail)` since `offset < n <= cached_tail - read`,
            // and `cached_tail` was loaded with acquire above.
            *dst = unsafe { self.shared.read_slot(self.read.wrapping_add(offset)) };
        }
        self.read = self.read.wrapping_add(n);
        self.shared.head.store(self.read, Ordering::Release);
        n
    }

    /// Published items waiting to be popped (one acquire load of the
    /// producer's index; a snapshot that may grow as soon as it is read).
    #[inline]
    pub fn len(&self) -> usize {
        self.shared
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.read)
    }

    /// Whether no published item is waiting (same snapshot caveat as
    /// [`len`](Self::len)).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's capacity (a power of two).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity)
            .field("read", &self.read)
            .field("cached_tail", &self.cached_tail)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn assert_send<S: Send>() {}

    #[test]
    fn ends_are_send() {
        assert_send::<Producer<u64>>();
        assert_send::<Consumer<u64>>();
    }

    #[test]
    fn capacity_rounds_up_to_power_of_two() {
        for (asked, got) in [(0, 1), (1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (1000, 1024)] {
            let (p, c) = channel::<u32>(asked);
            assert_eq!(p.capacity(), got, "asked {asked}");
            assert_eq!(c.capacity(), got, "asked {asked}");
        }
    }

    #[test]
    fn rounded_capacity_is_usable_in_full() {
        let (mut p, mut c) = channel::<u32>(5);
        for i in 0..8 {
            assert_eq!(p.push(i), Ok(()));
        }
        assert_eq!(p.push(8), Err(8));
        p.publish();
        let mut out = [0u32; 16];
        assert_eq!(c.pop_batch(&mut out), 8);
        assert_eq!(&out[..8], &[0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn oversized_capacity_is_an_error() {
        for asked in [usize::MAX, MAX_CAPACITY + 1] {
            assert_eq!(
                try_channel::<u8>(asked).err(),
                Some(RingError::CapacityTooLarge { requested: asked })
            );
        }
        // Fits the index space but not the address space.
        assert!(try_channel::<u64>(MAX_CAPACITY).is_err());
    }

    #[test]
    fn push_without_publish_is_invisible() {
        let (mut p, mut c) = channel::<u32>(8);
        for i in 0..3 {
            assert_eq!(p.push(i), Ok(()));
        }
        assert_eq!(p.pending(), 3);
        assert_eq!(c.len(), 0);
        assert!(c.is_empty());
        assert_eq!(c.pop(), None);
        let mut out = [0u32; 8];
        assert_eq!(c.pop_batch(&mut out), 0);
    }

    #[test]
    fn publish_makes_pushed_items_visible() {
        let (mut p, mut c) = channel::<u32>(8);
        for i in 10..13 {
            assert_eq!(p.push(i), Ok(()));
        }
        p.publish();
        assert_eq!(p.pending(), 0);
        assert_eq!(c.len(), 3);
        assert_eq!(c.pop(), Some(10));
        assert_eq!(c.pop(), Some(11));
        assert_eq!(c.pop(), Some(12));
        assert_eq!(c.pop(), None);
        assert!(c.is_empty());
    }

    #[test]
    fn publish_covers_only_items_pushed_before_it() {
        let (mut p, mut c) = channel::<u32>(8);
        assert_eq!(p.push(1), Ok(()));
        p.publish();
        assert_eq!(p.push(2), Ok(()));
        assert_eq!(c.len(), 1);
        assert_eq!(c.pop(), Some(1));
        assert_eq!(c.pop(), None);
        p.publish();
        assert_eq!(c.pop(), Some(2));
    }

    #[test]
    fn pop_batch_keeps_order_and_respects_out_len() {
        let (mut p, mut c) = channel::<u32>(16);
        for i in 0..10 {
            assert_eq!(p.push(i), Ok(()));
        }
        p.publish();
        let mut out = [u32::MAX; 4];
        assert_eq!(c.pop_batch(&mut out), 4);
        assert_eq!(out, [0, 1, 2, 3]);
        assert_eq!(c.pop_batch(&mut []), 0);
        let mut out = [u32::MAX; 8];
        assert_eq!(c.pop_batch(&mut out), 6);
        assert_eq!(out, [4, 5, 6, 7, 8, 9, u32::MAX, u32::MAX]);
        assert_eq!(c.pop_batch(&mut out), 0);
    }

    #[test]
    fn full_ring_returns_the_item() {
        let (mut p, mut c) = channel::<u32>(4);
        for i in 0..4 {
            assert_eq!(p.push(i), Ok(()));
        }
        assert_eq!(p.push(99), Err(99));
        assert_eq!(p.free_slots(), 0);
        p.publish();
        assert_eq!(p.push(98), Err(98));
        assert_eq!(c.pop(), Some(0));
        assert_eq!(p.free_slots(), 1);
        assert_eq!(p.push(4), Ok(()));
        assert_eq!(p.push(97), Err(97));
        p.publish();
        let mut out = [0u32; 8];
        assert_eq!(c.pop_batch(&mut out), 4);
        assert_eq!(&out[..4], &[1, 2, 3, 4]);
    }

    #[test]
    fn unpublished_items_occupy_slots() {
        let (mut p, mut c) = channel::<u32>(2);
        assert_eq!(p.push(1), Ok(()));
        assert_eq!(p.push(2), Ok(()));
        assert_eq!(p.push(3), Err(3));
        assert_eq!(c.pop(), None);
        p.publish();
        assert_eq!(c.pop(), Some(1));
        assert_eq!(p.push(3), Ok(()));
    }

    #[test]
    fn free_slots_tracks_both_sides() {
        let (mut p, mut c) = channel::<u32>(8);
        assert_eq!(p.free_slots(), 8);
        for i in 0..5 {
            assert_eq!(p.push(i), Ok(()));
        }
        assert_eq!(p.free_slots(), 3);
        p.publish();
        assert_eq!(p.free_slots(), 3);
        let mut out = [0u32; 2];
        assert_eq!(c.pop_batch(&mut out), 2);
        assert_eq!(p.free_slots(), 5);
    }

    /// Pushes and pops `rounds` bursts of varying size through a small ring,
    /// checking every item in order, so the slot index wraps many times.
    fn run_wrap_rounds(p: &mut Producer<u64>, c: &mut Consumer<u64>, rounds: u64) {
        let capacity = p.capacity() as u64;
        let mut next_in = 0u64;
        let mut next_out = 0u64;
        let mut out = [0u64; 3];
        for round in 0..rounds {
            let burst = round % capacity + 1;
            for _ in 0..burst {
                assert_eq!(p.push(next_in), Ok(()));
                next_in += 1;
            }
            p.publish();
            if round % 2 == 0 {
                while let Some(v) = c.pop() {
                    assert_eq!(v, next_out);
                    next_out += 1;
                }
            } else {
                loop {
                    let n = c.pop_batch(&mut out);
                    if n == 0 {
                        break;
                    }
                    for &v in &out[..n] {
                        assert_eq!(v, next_out);
                        next_out += 1;
                    }
                }
            }
            assert_eq!(next_out, next_in);
        }
    }

    #[test]
    fn wraps_around_many_times() {
        let (mut p, mut c) = channel::<u64>(4);
        run_wrap_rounds(&mut p, &mut c, 10_000);
    }

    #[test]
    fn index_counters_wrap_past_usize_max() {
        let (mut p, mut c) = with_start_index::<u64>(4, usize::MAX - 5);
        run_wrap_rounds(&mut p, &mut c, 100);
        assert!(c.read < 1_000, "the read counter did not wrap: {}", c.read);
        // Full detection still works across the wrap.
        for i in 0..4 {
            assert_eq!(p.push(i), Ok(()));
        }
        assert_eq!(p.push(4), Err(4));
    }

    #[test]
    fn either_end_may_be_dropped_first() {
        let (mut p, c) = channel::<u32>(2);
        drop(c);
        assert_eq!(p.push(1), Ok(()));
        assert_eq!(p.push(2), Ok(()));
        p.publish();
        assert_eq!(p.push(3), Err(3));

        let (mut p, mut c) = channel::<u32>(2);
        assert_eq!(p.push(7), Ok(()));
        p.publish();
        drop(p);
        assert_eq!(c.pop(), Some(7));
        assert_eq!(c.pop(), None);
    }

    #[test]
    fn carries_pointer_newtypes() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        struct RawMbuf(*mut u8);
        // SAFETY: test stand-in for the caller's mbuf-pointer newtype; the
        // pointer is never dereferenced.
        unsafe impl Send for RawMbuf {}

        let mut bytes = [0u8; 4];
        let (mut p, mut c) = channel::<RawMbuf>(4);
        let ptr = RawMbuf(bytes.as_mut_ptr());
        assert_eq!(p.push(ptr), Ok(()));
        p.publish();
        assert_eq!(c.pop(), Some(ptr));
    }
}
