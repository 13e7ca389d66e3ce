//! [`Shard`]: one worker's state table, allocated once at creation and
//! never again.
//!
//! Memory (capacity `N` states, `R` side records, `R <= N`):
//!
//! ```text
//! slab        [State; N]        128 B per state, the states themselves
//! occupied    [u64; N/64]       1 bit per slab slot
//! links       [u32; N]          per slab slot: the next free slot of a free
//!                               one (the free list); the side record of an
//!                               occupied one when R < N
//! records     [Translation; R]  66 B each: the far key of a translated
//!                               state, the route of a routed one, the
//!                               scrub values of a scrubbed one
//! record_free [u32; R]          stack of free records (only when R < N)
//! by_key      [Bucket; (N+R)/6] key index:  hash tag -> slab slot (a
//!                               translated state has two entries: the
//!                               second, for its far key, has bit 31 set)
//! by_id       [Bucket; N/6]     id index:   (id, creatorid) tag -> slab slot
//! Bucket      64 B, cache-line aligned: tags [u32; 8] + slots [u32; 8]
//! ```
//!
//! Only a state that translates, routes (`route-to` / `reply-to`) or
//! scrubs (`max-mss`, `min-ttl`, `set-tos`) has a side record. With
//! `R = N` (a ruleset that can make such states: every state may need one)
//! record `i` belongs to slot `i`, ≈ 230 bytes per state of capacity in
//! all; with `R = N/32` (a ruleset that makes none; room for pfsync imports
//! and a reload that adds a few) ≈ 156, and records are taken from their
//! own free stack (see [`Shard::memory_bytes_for`]). A state that needs a
//! record when none is left is refused ([`InsertError::NoRecord`]).
//!
//! Each index is open addressing over buckets of 8 ways with linear probing
//! by bucket, at most 75% full. A 32-bit tag of the hash sits next to each
//! slot number, so a lookup reads one bucket line (usually the only one),
//! compares tags, and touches the slab only on a tag match: about one cache
//! miss for the index plus one for the state. The tag also names the
//! entry's home bucket (`tag * buckets >> 32`), so deletion can
//! backward-shift without re-reading states.
//!
//! Probes are bounded: an entry is stored at most [`MAX_PROBE_BUCKETS`]
//! buckets from its home (home included), and a lookup reads at most that
//! many (adjacent lines: a few hundred nanoseconds at worst). An insert
//! whose window is full fails as [`InsertError::Full`] (the pipeline counts
//! a `state-table-full` drop) even if other buckets have room: a flood of
//! keys aimed at a few buckets costs the attacker its own states, not
//! everyone's lookups. With the keyed hash ([`crate::flow::set_hash_secret`])
//! such keys cannot be aimed, and random keys stay well below the bound at
//! full capacity (a test measures the longest probe).
//!
//! Invariants:
//! - every occupied slab slot has exactly one entry in each index, and
//!   every index entry names an occupied slot;
//! - probe invariant: an entry stored in bucket `p` with home bucket `h` has
//!   every bucket from `h` up to `p - 1` (cyclically) full, and `p` is
//!   fewer than [`MAX_PROBE_BUCKETS`] buckets after `h`. Lookups stop at
//!   the first bucket with a free way or after the bound;
//!   [`IndexTable::remove`] restores the invariant by moving later entries
//!   back (no tombstones, so churn never degrades lookups);
//! - no two states share a key, nor an `(id, creatorid)` pair;
//! - the flow hash's secret does not change while the shard holds states
//!   (the tags are derived from it).

use super::entry::{State, Translation};
use crate::cpu::{eq_mask8, prefetch_read};
use crate::flow::{identity_hash, FlowKey};
use crate::time::Instant;
use crate::timeouts::{TimeoutScale, Timeouts};

/// Default number of states per shard.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// A ruleset that makes no side records still gets one per this many
/// states ([`side_records_for`]).
pub const SPARE_RECORDS: usize = 32;

/// The side records a shard of `states` needs: one per state when the
/// ruleset can make them ([`crate::rules::Ruleset::makes_side_records`]:
/// any state may need one), else one per [`SPARE_RECORDS`] states, at
/// least one (pfsync
/// imports from a peer whose rules differ, a reload that adds a few such
/// rules).
pub fn side_records_for(makes_side_records: bool, states: usize) -> usize {
    if makes_side_records {
        states
    } else {
        states.div_ceil(SPARE_RECORDS)
    }
}
/// Largest capacity a shard accepts (slots are 32-bit; 2^28 states would
/// already take 40 GiB).
pub const MAX_CAPACITY: usize = 1 << 28;

/// Most buckets a probe reads, home included (32 cache lines, 256 ways).
/// Random keys filling a shard to capacity (75% of the ways) average 1.1
/// buckets, and the longest probe among all keys is about 15 buckets at
/// 100k states and 22 at 1M (linear probing's tail shrinks about 2x per
/// bucket): with keys nobody can aim, the bound is practically never why
/// an insert fails.
pub const MAX_PROBE_BUCKETS: usize = 32;

const WAYS: usize = 8;
/// Ways used per bucket at full capacity (75% load).
const FILL_WAYS: usize = 6;
const EMPTY: u32 = u32::MAX;
/// Marks a key-index entry that names a translated state by its far key
/// ([`Translation::key`]); slots are below 2^28, so it never makes `EMPTY`.
const FAR_KEY: u32 = 1 << 31;
const ID_COUNTER_MASK: u64 = (1 << 56) - 1;

/// Handle of a state in a [`Shard`]: the index of its slab slot. Valid until
/// the state is removed; the slot may then be reused by another state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(u32);

impl SlotId {
    /// The slab index.
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Why [`Shard::insert`] refused a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Every slot is in use, or every bucket within
    /// [`MAX_PROBE_BUCKETS`] of the key's (or id's) home bucket is full.
    #[error("state table full")]
    Full,
    /// A state with the same key exists (pf's `PFRES_STATEINS`).
    #[error("a state with this key already exists")]
    Exists(SlotId),
    /// A state with the same `(id, creatorid)` exists (pf: id collision).
    #[error("a state with this id and creator id already exists")]
    IdExists(SlotId),
    /// The state translates, routes or scrubs, and every side record is in
    /// use (the shard was sized for a ruleset that made none).
    #[error("no side record left for the state's translation, route or scrub values")]
    NoRecord,
}

/// Why [`Shard::new`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Capacity outside `1..=MAX_CAPACITY`.
    #[error("shard capacity {0} is outside 1..={MAX_CAPACITY}")]
    Capacity(usize),
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u32; WAYS],
    slots: [u32; WAYS],
}

const _: () = assert!(core::mem::size_of::<Bucket>() == 64);

impl Bucket {
    const VACANT: Bucket = Bucket {
        tags: [0; WAYS],
        slots: [EMPTY; WAYS],
    };

    #[inline]
    fn free_way(&self) -> Option<usize> {
        self.slots.iter().position(|&s| s == EMPTY)
    }

    /// Bit `w` of the first mask is set when way `w`'s tag is `tag`, of the
    /// second when way `w` is empty.
    #[inline(always)]
    fn masks(&self, tag: u32) -> (u32, u32) {
        (eq_mask8(&self.tags, tag), eq_mask8(&self.slots, EMPTY))
    }
}

/// Open-addressing index from a 32-bit tag to slab slots (see the module
/// documentation for its invariants).
struct IndexTable {
    buckets: crate::huge::HugeSlice<Bucket>,
}

impl IndexTable {
    fn buckets_for(capacity: usize) -> usize {
        capacity.div_ceil(FILL_WAYS).max(1)
    }

    fn new(capacity: usize) -> IndexTable {
        IndexTable {
            buckets: crate::huge::HugeSlice::filled(Bucket::VACANT, Self::buckets_for(capacity)),
        }
    }

    fn bytes(&self) -> usize {
        self.buckets.len() * core::mem::size_of::<Bucket>()
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        ((tag as u64 * self.buckets.len() as u64) >> 32) as usize
    }

    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// Cyclic distance from bucket `from` forward to bucket `to`.
    #[inline]
    fn dist(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to - from
        } else {
            to + self.buckets.len() - from
        }
    }

    /// Buckets a probe may read: [`MAX_PROBE_BUCKETS`], or all of them in
    /// a smaller table.
    #[inline(always)]
    fn probe_limit(&self) -> usize {
        self.buckets.len().min(MAX_PROBE_BUCKETS)
    }

    /// The slot of the entry with `tag` for which `eq(slot)` holds. Reads
    /// at most [`MAX_PROBE_BUCKETS`] buckets.
    #[inline]
    fn find(&self, tag: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut b = self.home(tag);
        for _ in 0..self.probe_limit() {
            let bucket = self.buckets.get(b)?;
            let (hits, free) = bucket.masks(tag);
            let mut hits = hits & !free;
            while hits != 0 {
                let w = hits.trailing_zeros() as usize;
                let s = bucket.slots[w];
                if eq(s) {
                    return Some(s);
                }
                hits &= hits - 1;
            }
            if free != 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// The first occupied way whose tag matches in `tag`'s home bucket,
    /// or, when that bucket is full without one, in the next (where a
    /// fuller table puts the entries its home bucket had no room for).
    #[inline]
    fn first_tag_match(&self, tag: u32) -> Option<u32> {
        let home = self.home(tag);
        let bucket = self.buckets.get(home)?;
        let (hits, free) = bucket.masks(tag);
        let hits = hits & !free;
        if hits != 0 {
            return Some(bucket.slots[hits.trailing_zeros() as usize]);
        }
        if free != 0 {
            return None;
        }
        let next = self.buckets.get(self.next(home))?;
        let (hits, free) = next.masks(tag);
        let hits = hits & !free;
        (hits != 0).then(|| next.slots[hits.trailing_zeros() as usize])
    }

    /// Prefetches the home bucket of `tag` (a lookup follows soon), and
    /// with `next` the one after it, which
    /// [`IndexTable::first_tag_match`] reads when the home bucket is full.
    #[inline(always)]
    fn prefetch(&self, tag: u32, next: bool) {
        let home = self.home(tag);
        if let Some(bucket) = self.buckets.get(home) {
            prefetch_read(bucket as *const Bucket as *const u8);
        }
        if next {
            if let Some(bucket) = self.buckets.get(self.next(home)) {
                prefetch_read(bucket as *const Bucket as *const u8);
            }
        }
    }

    /// Where `tag` would be stored: the first free way within
    /// [`MAX_PROBE_BUCKETS`] of its home, as `(bucket, way)`.
    #[inline]
    fn vacancy(&self, tag: u32) -> Option<(usize, usize)> {
        let mut b = self.home(tag);
        for _ in 0..self.probe_limit() {
            if let Some(w) = self.buckets.get(b).and_then(Bucket::free_way) {
                return Some((b, w));
            }
            b = self.next(b);
        }
        None
    }

    /// Stores `tag -> slot` in the way [`IndexTable::vacancy`] returned.
    #[inline]
    fn put(&mut self, (b, w): (usize, usize), tag: u32, slot: u32) {
        if let Some(bucket) = self.buckets.get_mut(b) {
            bucket.tags[w] = tag;
            bucket.slots[w] = slot;
        }
    }

    /// Adds `tag -> slot` in the first bucket with a free way from its home
    /// (`false`: none within [`MAX_PROBE_BUCKETS`]).
    #[cfg(test)]
    fn insert(&mut self, tag: u32, slot: u32) -> bool {
        match self.vacancy(tag) {
            Some(at) => {
                self.put(at, tag, slot);
                true
            }
            None => false,
        }
    }

    /// Removes the entry `tag -> slot`, then shifts later entries back so
    /// the probe invariant holds again.
    fn remove(&mut self, tag: u32, slot: u32) -> bool {
        let n = self.buckets.len();
        let mut b = self.home(tag);
        let mut found = None;
        for _ in 0..self.probe_limit() {
            let bucket = &self.buckets[b];
            if let Some(w) = (0..WAYS).find(|&w| bucket.slots[w] == slot && bucket.tags[w] == tag) {
                found = Some(w);
                break;
            }
            if bucket.free_way().is_some() {
                break;
            }
            b = self.next(b);
        }
        let Some(way) = found else {
            return false;
        };
        let was_full = self.buckets[b].free_way().is_none();
        self.buckets[b].slots[way] = EMPTY;
        if !was_full {
            // No entry probed past a bucket that had a free way.
            return true;
        }
        let (mut hole_b, mut hole_w) = (b, way);
        let mut j = self.next(hole_b);
        for _ in 1..n {
            if self.dist(hole_b, j) >= MAX_PROBE_BUCKETS {
                // Entries from bucket j on are fewer than the bound from
                // their homes, so their homes are after the hole.
                return true;
            }
            let bucket = self.buckets[j];
            let j_full = bucket.free_way().is_none();
            // An entry of bucket j whose probe passed through the hole.
            let candidate = (0..WAYS).find(|&w| {
                bucket.slots[w] != EMPTY && {
                    let h = self.home(bucket.tags[w]);
                    self.dist(h, hole_b) < self.dist(h, j)
                }
            });
            if let Some(w) = candidate {
                self.buckets[hole_b].tags[hole_w] = bucket.tags[w];
                self.buckets[hole_b].slots[hole_w] = bucket.slots[w];
                self.buckets[j].slots[w] = EMPTY;
                hole_b = j;
                hole_w = w;
            }
            if !j_full {
                // Entries beyond a bucket with a free way never probed
                // through it, so none can have passed through the hole.
                return true;
            }
            j = self.next(j);
        }
        true
    }
}

#[cfg(test)]
impl IndexTable {
    /// Buckets a lookup of `tag -> slot` reads (1 = home bucket only).
    fn probe_len(&self, tag: u32, slot: u32) -> usize {
        let mut b = self.home(tag);
        for n in 1..=self.probe_limit() {
            let bucket = &self.buckets[b];
            if (0..WAYS).any(|w| bucket.slots[w] == slot && bucket.tags[w] == tag) {
                return n;
            }
            b = self.next(b);
        }
        usize::MAX
    }
}

#[inline]
fn key_tag(hash: u64) -> u32 {
    // The high half picks the owning worker (`FlowKey::owner`), so within
    // one shard it is not uniform; the low half is independent of it.
    hash as u32
}

/// The id index's tag, keyed with the flow hash's secret: ids and creator
/// ids arrive from pfsync peers, so they must not be aimable either
/// ([`crate::flow::identity_hash`]; a plain xor of the two, as before,
/// would let a peer forge pairs that collide under every key).
#[inline]
fn id_tag(id: u64, creatorid: u32) -> u32 {
    identity_hash(id, creatorid) as u32
}

/// One worker's state table. See the module documentation.
pub struct Shard {
    slab: crate::huge::HugeSlice<State>,
    occupied: Box<[u64]>,
    /// Per slab slot: the next free slot of a free slot ([`EMPTY`] ends
    /// the list), the side record of an occupied one in a pooled shard.
    links: Box<[u32]>,
    free_head: u32,
    free_len: usize,
    /// Side records: `records[i]` is slot `i`'s unless `pooled`, then
    /// `records[links[i]]`.
    records: crate::huge::HugeSlice<Translation>,
    /// Fewer records than slots: they come from `record_free`.
    pooled: bool,
    /// Stack of free records of a pooled shard (empty otherwise).
    record_free: Box<[u32]>,
    record_free_len: usize,
    /// States that hold a side record.
    records_used: usize,
    /// Half the key index's ways.
    key_ways_half: usize,
    /// The key index holds more entries than `key_ways_half`: lookups
    /// prefetch two buckets (below, a home bucket is practically never
    /// full, and the next line would only take cache room).
    crowded: bool,
    by_key: IndexTable,
    by_id: IndexTable,
    len: usize,
    translated: usize,
    /// Far keys of translated states removed since the last
    /// [`Shard::take_far_removals`] (recorded only after
    /// [`Shard::record_far_removals`]; bounded by its capacity).
    far_removed: Vec<FlowKey>,
    /// Removals that found `far_removed` full.
    far_removals_lost: u64,
    /// Bumped by every insert and remove: a lookup's answer stays valid
    /// while it is unchanged.
    generation: u64,
    expire_cursor: usize,
    shard_index: u8,
    next_id: u64,
}

impl core::fmt::Debug for Shard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Shard")
            .field("shard_index", &self.shard_index)
            .field("len", &self.len)
            .field("capacity", &self.slab.len())
            .finish()
    }
}

impl Shard {
    /// A shard for worker `shard_index` holding up to `capacity` states,
    /// each of which may have a side record (see the module
    /// documentation). All memory is allocated (and written, so it is
    /// faulted in) here.
    pub fn new(capacity: usize, shard_index: u8) -> Result<Shard, ShardError> {
        Shard::with_records(capacity, capacity, shard_index)
    }

    /// A shard of `capacity` states of which at most `records` (at most
    /// `capacity`) translate, route or scrub.
    pub fn with_records(
        capacity: usize,
        records: usize,
        shard_index: u8,
    ) -> Result<Shard, ShardError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(ShardError::Capacity(capacity));
        }
        let records = records.min(capacity);
        let pooled = records < capacity;
        let blank = State::new(FlowKey::default(), false, 0, 0, Instant::default());
        // The free list hands out 0, 1, 2... first.
        let links: Box<[u32]> = (1..=capacity as u32)
            .map(|n| if n as usize == capacity { EMPTY } else { n })
            .collect();
        let record_free: Box<[u32]> = if pooled {
            (0..records as u32).rev().collect()
        } else {
            Box::new([])
        };
        let by_key = IndexTable::new(capacity + records);
        Ok(Shard {
            slab: crate::huge::HugeSlice::filled(blank, capacity),
            occupied: vec![0u64; capacity.div_ceil(64)].into_boxed_slice(),
            links,
            free_head: 0,
            free_len: capacity,
            records: crate::huge::HugeSlice::filled(Translation::NONE, records),
            pooled,
            record_free_len: record_free.len(),
            record_free,
            records_used: 0,
            key_ways_half: by_key.buckets.len() * WAYS / 2,
            crowded: false,
            by_key,
            by_id: IndexTable::new(capacity),
            len: 0,
            translated: 0,
            far_removed: Vec::new(),
            far_removals_lost: 0,
            generation: 0,
            expire_cursor: 0,
            shard_index,
            next_id: 1,
        })
    }

    /// Bytes a shard of `capacity` states and `records` side records
    /// ([`Shard::with_records`]) allocates.
    pub fn memory_bytes_for(capacity: usize, records: usize) -> usize {
        let records = records.min(capacity);
        let record_stack = if records < capacity { records * 4 } else { 0 };
        capacity * core::mem::size_of::<State>()
            + capacity.div_ceil(64) * 8
            + capacity * 4
            + records * core::mem::size_of::<Translation>()
            + record_stack
            + (IndexTable::buckets_for(capacity + records) + IndexTable::buckets_for(capacity))
                * core::mem::size_of::<Bucket>()
            + core::mem::size_of::<Shard>()
    }

    /// Bytes this shard allocated (all of it at [`Shard::new`]).
    pub fn memory_bytes(&self) -> usize {
        self.slab.len() * core::mem::size_of::<State>()
            + self.occupied.len() * 8
            + self.links.len() * 4
            + self.records.len() * core::mem::size_of::<Translation>()
            + self.record_free.len() * 4
            + self.by_key.bytes()
            + self.by_id.bytes()
            + core::mem::size_of::<Shard>()
    }

    /// The worker index given at creation (top 8 bits of local state ids).
    pub fn shard_index(&self) -> u8 {
        self.shard_index
    }

    /// Number of states.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Updates `crowded` after the key index gained or lost entries.
    #[inline]
    fn note_key_entries(&mut self) {
        self.crowded = self.len + self.translated > self.key_ways_half;
    }

    /// Side records: how many states may translate, route or scrub.
    pub fn records_capacity(&self) -> usize {
        self.records.len()
    }

    /// States holding a side record.
    pub fn records_used(&self) -> usize {
        self.records_used
    }

    /// The index in `records` of the side record of the occupied slot `i`
    /// (meaningful only when its state has one).
    #[inline(always)]
    fn record_of(&self, i: usize) -> usize {
        if self.pooled {
            self.links.get(i).map_or(usize::MAX, |&r| r as usize)
        } else {
            i
        }
    }

    /// Whether a state without a side record can be given one.
    #[inline]
    pub fn record_available(&self) -> bool {
        !self.pooled || self.record_free_len > 0
    }

    /// Gives the occupied slot `i` a side record ([`Shard::record_available`]
    /// said there is one) and returns its index.
    fn take_record(&mut self, i: usize) -> usize {
        self.records_used += 1;
        if !self.pooled {
            return i;
        }
        self.record_free_len -= 1;
        let r = self.record_free[self.record_free_len];
        self.links[i] = r;
        r as usize
    }

    /// Returns the side record of the occupied slot `i`.
    fn give_back_record(&mut self, i: usize) {
        let r = self.record_of(i);
        if let Some(rec) = self.records.get_mut(r) {
            *rec = Translation::NONE;
        }
        self.records_used -= 1;
        if self.pooled {
            self.record_free[self.record_free_len] = r as u32;
            self.record_free_len += 1;
        }
    }

    /// Whether the shard holds no state.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maximum number of states.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slab.len()
    }

    /// Seeds the per-shard id counter (low 56 bits of ids). pfsync expects
    /// ids to be unique across restarts: seed with e.g.
    /// `unix_seconds << 24` (spec/pfsync.md §4).
    pub fn seed_ids(&mut self, seed: u64) {
        self.next_id = seed & ID_COUNTER_MASK;
    }

    /// A fresh state id: this shard's index in the top 8 bits, the counter
    /// in the rest.
    pub fn alloc_id(&mut self) -> u64 {
        let id = (self.shard_index as u64) << 56 | (self.next_id & ID_COUNTER_MASK);
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    #[inline]
    fn is_occupied(&self, i: usize) -> bool {
        self.occupied
            .get(i / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    #[inline]
    fn set_occupied(&mut self, i: usize, on: bool) {
        if let Some(w) = self.occupied.get_mut(i / 64) {
            if on {
                *w |= 1u64 << (i % 64);
            } else {
                *w &= !(1u64 << (i % 64));
            }
        }
    }

    /// The state with `key`; `hash` must be `key.symmetric_hash()` (the
    /// pipeline computed it to pick the worker).
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<SlotId> {
        self.lookup_side(key, hash).map(|(slot, _)| slot)
    }

    /// [`Shard::lookup`] that also says which key matched: `false` the
    /// state's own key (the side its first packet arrived on), `true` the
    /// far key of a translated state ([`Shard::translation`]).
    #[inline]
    pub fn lookup_side(&self, key: &FlowKey, hash: u64) -> Option<(SlotId, bool)> {
        debug_assert_eq!(hash, key.symmetric_hash());
        self.by_key
            .find(key_tag(hash), |s| {
                if s & FAR_KEY == 0 {
                    self.slab.get(s as usize).is_some_and(|st| st.key() == key)
                } else {
                    self.records
                        .get(self.record_of((s & !FAR_KEY) as usize))
                        .is_some_and(|t| t.key == *key)
                }
            })
            .map(|s| (SlotId(s & !FAR_KEY), s & FAR_KEY != 0))
    }

    /// The far side and route of the state in `slot` (`None` for a state
    /// that neither translates nor routes).
    #[inline]
    pub fn translation(&self, slot: SlotId) -> Option<&Translation> {
        let st = self.get(slot)?;
        if st.has_side_record() {
            self.records.get(self.record_of(slot.index()))
        } else {
            None
        }
    }

    /// Keeps the far keys of removed translated states (up to `capacity`
    /// between two [`Shard::take_far_removals`]; allocated here, once), so
    /// the worker can withdraw the aliases other workers hold for them.
    pub fn record_far_removals(&mut self, capacity: usize) {
        self.far_removed = Vec::with_capacity(capacity);
    }

    /// The far keys removed since the last call (see
    /// [`Shard::record_far_removals`]); the buffer is kept.
    pub fn take_far_removals(&mut self) -> std::vec::Drain<'_, FlowKey> {
        self.far_removed.drain(..)
    }

    /// Removals whose far key found the record full.
    pub fn far_removals_lost(&self) -> u64 {
        self.far_removals_lost
    }

    /// Number of translated states.
    #[inline]
    pub fn translated_len(&self) -> usize {
        self.translated
    }

    /// Changes whenever a state is inserted or removed: a [`Shard::lookup`]
    /// answer obtained at generation `g` is still the answer while
    /// `generation() == g` (the burst pass looks up ahead of deciding).
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Prefetches the index bucket a [`Shard::lookup`] with `hash` reads
    /// first (the burst pass calls it a few packets ahead).
    #[inline(always)]
    pub fn prefetch_bucket(&self, hash: u64) {
        self.by_key.prefetch(key_tag(hash), self.crowded);
    }

    /// Prefetches the state in `slot`: both its cache lines (the key and
    /// times in the first, counters, flags and peers in the second).
    #[inline(always)]
    pub fn prefetch_state(&self, slot: SlotId) {
        if let Some(st) = self.slab.get(slot.index()) {
            let at = st as *const State as *const u8;
            prefetch_read(at);
            // In bounds: a State is 128 bytes.
            prefetch_read(at.wrapping_add(64));
        }
        // A shard with translations: the state's far side too (its
        // packets are rewritten from it).
        if self.translated > 0 {
            if self.pooled {
                // The record's index is read first.
                if let Some(link) = self.links.get(slot.index()) {
                    prefetch_read(link as *const u32 as *const u8);
                }
            } else if let Some(tr) = self.records.get(slot.index()) {
                prefetch_read(tr as *const Translation as *const u8);
            }
        }
    }

    /// The first index entry of `hash`'s home bucket whose tag matches,
    /// without comparing keys: what the burst pass prefetches, for
    /// [`Shard::key_at`] to confirm once it has arrived (a tag collision or
    /// a table changed since falls back to [`Shard::lookup_side`]).
    #[inline]
    pub fn candidate(&self, hash: u64) -> Option<(SlotId, bool)> {
        let s = self.by_key.first_tag_match(key_tag(hash))?;
        Some((SlotId(s & !FAR_KEY), s & FAR_KEY != 0))
    }

    /// The key of the state in `slot`, if the slot holds one.
    #[inline]
    pub fn key_at(&self, slot: SlotId) -> Option<&FlowKey> {
        if self.is_occupied(slot.index()) {
            self.slab.get(slot.index()).map(State::key)
        } else {
            None
        }
    }

    /// The state with `(id, creatorid)` (pfsync's identity, spec §4).
    pub fn find_by_id(&self, id: u64, creatorid: u32) -> Option<SlotId> {
        let slab = &self.slab;
        self.by_id
            .find(id_tag(id, creatorid), |s| {
                slab.get(s as usize)
                    .is_some_and(|st| st.id() == id && st.creatorid() == creatorid)
            })
            .map(SlotId)
    }

    /// Inserts `state`. Fails without side effects when the key or the
    /// `(id, creatorid)` pair is already present, or when the shard is full.
    pub fn insert(&mut self, state: State) -> Result<SlotId, InsertError> {
        self.insert_translated(state, Translation::NONE)
    }

    /// Inserts `state` with the far key of its translation (both keys are
    /// indexed: a packet of either side finds it). With
    /// [`Translation::NONE`] (or a far key equal to the state's) this is
    /// [`Shard::insert`]. Fails without side effects when either key or
    /// the identity is present, or when the shard is full.
    pub fn insert_translated(
        &mut self,
        mut state: State,
        translation: Translation,
    ) -> Result<SlotId, InsertError> {
        let translated = translation.is_some() && translation.key != *state.key();
        let routed = translation.route.kind != crate::state::route_kind::NONE;
        let scrubbed = translation.scrub.is_some();
        state.set_translated(translated);
        state.set_routed(routed);
        state.set_scrubbed(scrubbed);
        let hash = state.key().symmetric_hash();
        if let Some(s) = self.lookup(state.key(), hash) {
            return Err(InsertError::Exists(s));
        }
        let far_hash = translation.key.symmetric_hash();
        if translated {
            if let Some(s) = self.lookup(&translation.key, far_hash) {
                return Err(InsertError::Exists(s));
            }
        }
        if let Some(s) = self.find_by_id(state.id(), state.creatorid()) {
            return Err(InsertError::IdExists(s));
        }
        if self.free_len == 0 {
            return Err(InsertError::Full);
        }
        let needs_record = translated || routed || scrubbed;
        if needs_record && !self.record_available() {
            return Err(InsertError::NoRecord);
        }
        let (key_t, id_t) = (key_tag(hash), id_tag(state.id(), state.creatorid()));
        // Both indexes have a way for it within the probe bound, or neither
        // is touched.
        let (Some(key_at), Some(id_at)) = (self.by_key.vacancy(key_t), self.by_id.vacancy(id_t))
        else {
            return Err(InsertError::Full);
        };
        let slot = self.free_head;
        self.by_key.put(key_at, key_t, slot);
        if translated {
            let far_t = key_tag(far_hash);
            match self.by_key.vacancy(far_t) {
                Some(at) => self.by_key.put(at, far_t, slot | FAR_KEY),
                None => {
                    self.by_key.remove(key_t, slot);
                    return Err(InsertError::Full);
                }
            }
            self.translated += 1;
        }
        self.free_head = self.links[slot as usize];
        self.free_len -= 1;
        self.slab[slot as usize] = state;
        if needs_record {
            let r = self.take_record(slot as usize);
            self.records[r] = if translated {
                translation
            } else {
                Translation {
                    route: translation.route,
                    scrub: translation.scrub,
                    ..Translation::NONE
                }
            };
        }
        self.set_occupied(slot as usize, true);
        self.by_id.put(id_at, id_t, slot);
        self.len += 1;
        self.note_key_entries();
        self.generation = self.generation.wrapping_add(1);
        Ok(SlotId(slot))
    }

    /// Gives the untranslated state in `slot` the far key of `translation`
    /// and indexes it, as [`Shard::insert_translated`] would have. pfsync
    /// needs it: an OpenBSD peer keeps an outbound NAT connection as two
    /// states (untranslated inbound on the LAN side, translated outbound on
    /// the WAN side) that share the untranslated key; the second one's
    /// translation is attached to the state the first one created.
    ///
    /// A far key equal to the state's own is nothing to attach (`Ok`).
    /// Fails without side effects with `Exists(slot)` when `slot` holds no
    /// state or one already translated, `Exists(other)` when the far key
    /// is another state's, and `Full` when its key index window is full.
    pub fn attach_translation(
        &mut self,
        slot: SlotId,
        translation: Translation,
    ) -> Result<(), InsertError> {
        let i = slot.index();
        let Some(st) = self.get(slot) else {
            return Err(InsertError::Exists(slot));
        };
        if st.is_translated() {
            return Err(InsertError::Exists(slot));
        }
        if !translation.is_some() || translation.key == *st.key() {
            return Ok(());
        }
        let far_hash = translation.key.symmetric_hash();
        if let Some(other) = self.lookup(&translation.key, far_hash) {
            return Err(InsertError::Exists(other));
        }
        let had_record = st.has_side_record();
        if !had_record && !self.record_available() {
            return Err(InsertError::NoRecord);
        }
        let far_t = key_tag(far_hash);
        let Some(at) = self.by_key.vacancy(far_t) else {
            return Err(InsertError::Full);
        };
        self.by_key.put(at, far_t, slot.0 | FAR_KEY);
        let r = if had_record {
            self.record_of(i)
        } else {
            self.take_record(i)
        };
        // A route the state already has stays unless the import has one.
        let route = if translation.route.kind != crate::state::route_kind::NONE {
            translation.route
        } else {
            self.records[r].route
        };
        // So do scrub values.
        let scrub = if translation.scrub.is_some() {
            translation.scrub
        } else {
            self.records[r].scrub
        };
        self.records[r] = Translation {
            route,
            scrub,
            ..translation
        };
        self.slab[i].set_translated(true);
        self.slab[i].set_routed(route.kind != crate::state::route_kind::NONE);
        self.slab[i].set_scrubbed(scrub.is_some());
        self.translated += 1;
        self.note_key_entries();
        // A lookup of the far key now finds this state.
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// Removes the state in `slot` and returns it (`None` if the slot is
    /// free).
    pub fn remove(&mut self, slot: SlotId) -> Option<State> {
        let i = slot.index();
        if !self.is_occupied(i) {
            return None;
        }
        let st = *self.slab.get(i)?;
        let ok_key = self
            .by_key
            .remove(key_tag(st.key().symmetric_hash()), slot.0);
        let ok_id = self.by_id.remove(id_tag(st.id(), st.creatorid()), slot.0);
        debug_assert!(ok_key && ok_id);
        if st.is_translated() {
            let far = self.records[self.record_of(i)].key;
            let ok_far = self
                .by_key
                .remove(key_tag(far.symmetric_hash()), slot.0 | FAR_KEY);
            debug_assert!(ok_far);
            self.translated -= 1;
            if self.far_removed.len() < self.far_removed.capacity() {
                self.far_removed.push(far);
            } else if self.far_removed.capacity() > 0 {
                self.far_removals_lost += 1;
            }
        }
        if st.has_side_record() {
            self.give_back_record(i);
        }
        self.set_occupied(i, false);
        self.links[i] = self.free_head;
        self.free_head = slot.0;
        self.free_len += 1;
        self.len -= 1;
        self.note_key_entries();
        self.generation = self.generation.wrapping_add(1);
        Some(st)
    }

    /// The state in `slot`.
    #[inline]
    pub fn get(&self, slot: SlotId) -> Option<&State> {
        if self.is_occupied(slot.index()) {
            self.slab.get(slot.index())
        } else {
            None
        }
    }

    /// The state in `slot`, mutable (its key and ids cannot change).
    #[inline]
    pub fn get_mut(&mut self, slot: SlotId) -> Option<&mut State> {
        if self.is_occupied(slot.index()) {
            self.slab.get_mut(slot.index())
        } else {
            None
        }
    }

    /// The state in `slot`, mutable, with a copy of its translation
    /// ([`Translation::NONE`] if it translates nothing).
    #[inline]
    pub fn get_mut_translated(&mut self, slot: SlotId) -> Option<(&mut State, Translation)> {
        let i = slot.index();
        if !self.is_occupied(i) {
            return None;
        }
        let tr = self.translation(slot).copied().unwrap_or(Translation::NONE);
        let st = self.slab.get_mut(i)?;
        Some((st, tr))
    }

    /// Every state, in slab order (for listing and pfsync bulk updates).
    pub fn iter(&self) -> impl Iterator<Item = (SlotId, &State)> + '_ {
        self.occupied
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| {
                let mut rest = bits;
                core::iter::from_fn(move || {
                    if rest == 0 {
                        return None;
                    }
                    let b = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    Some(w * 64 + b)
                })
            })
            .filter_map(|i| self.slab.get(i).map(|st| (SlotId(i as u32), st)))
    }

    /// Examines at most `budget_slots` slab slots, continuing round-robin
    /// from where the previous call stopped, and removes the states that
    /// have expired at `now` (`last_seen + timeout(class) <= now`), calling
    /// `on_expired` with each before it goes (pfsync DEL_C). Returns the
    /// number removed. A full sweep takes `capacity / budget_slots` calls.
    pub fn expire_slice(
        &mut self,
        now: Instant,
        budget_slots: usize,
        timeouts: &Timeouts,
        mut on_expired: impl FnMut(&State),
    ) -> usize {
        self.expire_slice_visit(
            now,
            budget_slots,
            |_| (timeouts, TimeoutScale::NONE),
            |st, _, expired| {
                if expired {
                    on_expired(st)
                }
            },
        )
    }

    /// [`Shard::expire_slice`] that hands every state it examines to
    /// `visit`: `(state, true)` for one it removed, `(state, false)` for one
    /// it keeps (pfsync re-sends the live states marked owed). `timeouts`
    /// gives each state's timeouts (a rule's `keep state (<timeout> N)`)
    /// and the adaptive factor they are scaled by now.
    pub fn expire_slice_visit<'t>(
        &mut self,
        now: Instant,
        budget_slots: usize,
        timeouts: impl Fn(&State) -> (&'t Timeouts, TimeoutScale),
        mut visit: impl FnMut(&mut State, &Translation, bool),
    ) -> usize {
        let cap = self.slab.len();
        let mut removed = 0;
        for _ in 0..budget_slots.min(cap) {
            let i = self.expire_cursor;
            self.expire_cursor = if i + 1 == cap { 0 } else { i + 1 };
            if !self.is_occupied(i) {
                continue;
            }
            let expired = self.slab.get(i).is_some_and(|st| {
                let (t, scale) = timeouts(st);
                st.is_expired_scaled(now, t, scale)
            });
            let tr = match self.slab.get(i) {
                Some(st) if st.has_side_record() => self.records[self.record_of(i)],
                _ => Translation::NONE,
            };
            if expired {
                if let Some(mut st) = self.remove(SlotId(i as u32)) {
                    visit(&mut st, &tr, true);
                    removed += 1;
                }
            } else if let Some(st) = self.slab.get_mut(i) {
                // Key, id and creatorid are private: `visit` cannot move
                // the state within the indexes.
                visit(st, &tr, false);
            }
        }
        removed
    }

    /// Visits the states in slab slots `from..`, at most `max_slots` slots,
    /// while `visit` returns `true`. Returns the slot to continue from
    /// (the slot whose state `visit` refused, so it is offered again), or
    /// `None` when the slab is done. Bounded work per call: a worker lists
    /// or dumps its shard a slice at a time between bursts.
    pub fn scan(
        &self,
        from: usize,
        max_slots: usize,
        mut visit: impl FnMut(&State, &Translation) -> bool,
    ) -> Option<usize> {
        let end = from.saturating_add(max_slots).min(self.slab.len());
        for i in from..end {
            if self.is_occupied(i) {
                if let Some(st) = self.slab.get(i) {
                    let tr = if st.has_side_record() {
                        &self.records[self.record_of(i)]
                    } else {
                        &Translation::NONE
                    };
                    if !visit(st, tr) {
                        return Some(i);
                    }
                }
            }
        }
        (end < self.slab.len()).then_some(end)
    }

    /// Visits the states in slots `from..` (at most `max_slots` slots),
    /// mutably (their key and ids cannot change). Returns the slot to
    /// continue from, or `None` when the slab is done.
    pub fn scan_mut(
        &mut self,
        from: usize,
        max_slots: usize,
        mut visit: impl FnMut(&mut State),
    ) -> Option<usize> {
        let end = from.saturating_add(max_slots).min(self.slab.len());
        for i in from..end {
            if self.is_occupied(i) {
                if let Some(st) = self.slab.get_mut(i) {
                    visit(st);
                }
            }
        }
        (end < self.slab.len()).then_some(end)
    }

    /// Removes the states in slots `from..` (at most `max_slots` slots)
    /// for which `pred` holds, calling `on_removed` with each. Returns the
    /// slot to continue from, or `None` when the slab is done.
    pub fn scan_remove(
        &mut self,
        from: usize,
        max_slots: usize,
        mut pred: impl FnMut(&State) -> bool,
        mut on_removed: impl FnMut(&State),
    ) -> Option<usize> {
        let end = from.saturating_add(max_slots).min(self.slab.len());
        for i in from..end {
            if self.is_occupied(i) && self.slab.get(i).is_some_and(&mut pred) {
                if let Some(st) = self.remove(SlotId(i as u32)) {
                    on_removed(&st);
                }
            }
        }
        (end < self.slab.len()).then_some(end)
    }

    /// Removes every state for which `pred` holds, calling `on_removed`
    /// with each (pfsync CLR by creator id, flushes). Returns the number
    /// removed. Walks the whole slab: not for the packet path.
    pub fn remove_if(
        &mut self,
        mut pred: impl FnMut(&State) -> bool,
        mut on_removed: impl FnMut(&State),
    ) -> usize {
        let mut removed = 0;
        for i in 0..self.slab.len() {
            if self.is_occupied(i) && self.slab.get(i).is_some_and(&mut pred) {
                if let Some(st) = self.remove(SlotId(i as u32)) {
                    on_removed(&st);
                    removed += 1;
                }
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{proto, Addr, Af, HashSecret};
    use crate::timeouts::TimeoutClass;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key_n(n: u32) -> FlowKey {
        FlowKey::from_packet(
            Af::Inet,
            proto::UDP,
            Addr::v4([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
            1000 + (n % 7) as u16,
            Addr::v4([192, 0, 2, 1]),
            53,
        )
        .0
    }

    fn state_n(n: u32, id: u64, at_s: u64) -> State {
        let mut s = State::new(key_n(n), false, id, 0xC0FFEE, Instant::from_secs(at_s));
        s.timeout = TimeoutClass::UdpFirst;
        s
    }

    #[test]
    fn insert_lookup_remove_roundtrip() {
        let mut sh = Shard::new(16, 3).unwrap();
        let id = sh.alloc_id();
        assert_eq!(id >> 56, 3);
        let st = state_n(1, id, 0);
        let k = *st.key();
        let slot = sh.insert(st).unwrap();
        assert_eq!(sh.lookup(&k, k.symmetric_hash()), Some(slot));
        assert_eq!(sh.find_by_id(id, 0xC0FFEE), Some(slot));
        assert_eq!(sh.find_by_id(id, 0xC0FFEF), None);
        assert_eq!(sh.insert(st), Err(InsertError::Exists(slot)));
        let mut other = state_n(2, id, 0);
        other.rule = 4;
        assert_eq!(sh.insert(other), Err(InsertError::IdExists(slot)));
        assert_eq!(sh.len(), 1);
        assert_eq!(sh.remove(slot).map(|s| s.id()), Some(id));
        assert_eq!(sh.remove(slot), None);
        assert_eq!(sh.lookup(&k, k.symmetric_hash()), None);
        assert_eq!(sh.find_by_id(id, 0xC0FFEE), None);
        assert!(sh.is_empty());
    }

    #[test]
    fn full_table_refuses_and_keeps_working() {
        let mut sh = Shard::new(10, 0).unwrap();
        let slots: Vec<SlotId> = (0..10)
            .map(|n| sh.insert(state_n(n, n as u64, 0)).unwrap())
            .collect();
        assert_eq!(sh.insert(state_n(99, 99, 0)), Err(InsertError::Full));
        for n in 0..10 {
            let k = key_n(n);
            assert_eq!(sh.lookup(&k, k.symmetric_hash()), Some(slots[n as usize]));
        }
        sh.remove(slots[4]).unwrap();
        let s = sh.insert(state_n(99, 99, 0)).unwrap();
        assert_eq!(s, slots[4], "the freed slot is reused");
        assert_eq!(sh.len(), 10);
    }

    #[test]
    fn capacity_bounds_are_checked() {
        assert_eq!(Shard::new(0, 0).err(), Some(ShardError::Capacity(0)));
        assert!(Shard::new(MAX_CAPACITY + 1, 0).is_err());
    }

    #[test]
    fn memory_is_at_most_231_bytes_per_state_and_156_with_a_record_per_32() {
        // 128 the state, 4 its link, ~21 the two indexes; 66 each side
        // record (translation, route and scrub values), with its key-index
        // entry (~11) and, in a pool, its free-stack entry (4).
        for cap in [1000usize, DEFAULT_CAPACITY, 1_000_000, 10_000_000] {
            let per = Shard::memory_bytes_for(cap, cap) as f64 / cap as f64;
            assert!(per <= 231.0, "capacity {cap}: {per} bytes per state");
            let per = Shard::memory_bytes_for(cap, cap / 32) as f64 / cap as f64;
            assert!(
                per <= 156.5,
                "capacity {cap}, records 1/32: {per} bytes per state"
            );
            let per = Shard::memory_bytes_for(cap, 0) as f64 / cap as f64;
            assert!(
                per <= 154.0,
                "capacity {cap}, no records: {per} bytes per state"
            );
        }
        let sh = Shard::new(DEFAULT_CAPACITY, 0).unwrap();
        assert_eq!(
            sh.memory_bytes(),
            Shard::memory_bytes_for(DEFAULT_CAPACITY, DEFAULT_CAPACITY)
        );
        assert!(sh.memory_bytes() <= 231 * DEFAULT_CAPACITY);
        let sh = Shard::with_records(DEFAULT_CAPACITY, DEFAULT_CAPACITY / 32, 0).unwrap();
        assert_eq!(sh.records_capacity(), DEFAULT_CAPACITY / 32);
        assert_eq!(
            sh.memory_bytes(),
            Shard::memory_bytes_for(DEFAULT_CAPACITY, DEFAULT_CAPACITY / 32)
        );
        assert!(sh.memory_bytes() <= 156 * DEFAULT_CAPACITY);
    }

    #[test]
    fn lookups_prefetch_the_next_bucket_only_past_half_the_key_index() {
        let mut sh = Shard::with_records(600, 0, 0).unwrap();
        // 100 buckets of 8 ways.
        assert_eq!(sh.key_ways_half, 400);
        let mut slots = Vec::new();
        for n in 0..400 {
            slots.push(sh.insert(state_n(n, n as u64, 0)).unwrap());
            assert!(!sh.crowded, "{n}");
        }
        slots.push(sh.insert(state_n(400, 400, 0)).unwrap());
        assert!(sh.crowded);
        sh.remove(slots[7]).unwrap();
        assert!(!sh.crowded);
    }

    #[test]
    fn a_candidate_is_found_in_the_next_bucket_when_its_home_is_full() {
        let mut t = IndexTable::new(64);
        // Small tags share home bucket 0.
        for tag in 1..=9u32 {
            assert_eq!(t.home(tag), 0);
            assert!(t.insert(tag, 100 + tag));
        }
        // The ninth went to bucket 1, where the lane's candidate looks too.
        assert_eq!(t.probe_len(9, 109), 2);
        assert_eq!(t.first_tag_match(9), Some(109));
        assert_eq!(t.first_tag_match(3), Some(103));
        assert_eq!(t.first_tag_match(10), None);
        // With a way free at home, nothing can have gone further.
        assert!(t.remove(2, 102));
        assert_eq!(t.first_tag_match(9), Some(109), "shifted back home");
        assert_eq!(t.probe_len(9, 109), 1);
    }

    #[test]
    fn index_backward_shift_keeps_colliding_entries_reachable() {
        // 4 buckets; every tag with the same top bits lands on one home, so
        // entries spill over several buckets and wrap around the end.
        let mut t = IndexTable::new(24);
        assert_eq!(t.buckets.len(), 4);
        let home3 = |i: u32| 0xF000_0000u32 | i; // home bucket 3 (last)
        for i in 0..20 {
            assert!(t.insert(home3(i), i));
        }
        let present = |t: &IndexTable, i: u32| t.find(home3(i), |s| s == i) == Some(i);
        for i in 0..20 {
            assert!(present(&t, i));
        }
        for i in (0..20).step_by(3) {
            assert!(t.remove(home3(i), i));
            assert!(!t.remove(home3(i), i));
        }
        for i in 0..20 {
            assert_eq!(present(&t, i), i % 3 != 0, "entry {i}");
        }
        // Entries with their own homes are not displaced wrongly either.
        assert!(t.insert(0x0000_0001, 100));
        assert!(t.insert(0x4000_0001, 101));
        for i in (1..20).filter(|i| i % 3 != 0) {
            assert!(t.remove(home3(i), i));
        }
        assert_eq!(t.find(0x0000_0001, |s| s == 100), Some(100));
        assert_eq!(t.find(0x4000_0001, |s| s == 101), Some(101));
        let used: usize = t
            .buckets
            .iter()
            .map(|b| b.slots.iter().filter(|&&s| s != EMPTY).count())
            .sum();
        assert_eq!(used, 2);
    }

    #[test]
    fn expire_slice_is_bounded_and_round_robin() {
        let t = Timeouts::default(); // udp.first = 60 s
        let mut sh = Shard::new(100, 0).unwrap();
        for n in 0..100 {
            sh.insert(state_n(n, n as u64, 0)).unwrap();
        }
        let now = Instant::from_secs(60);
        let mut gone = Vec::new();
        assert_eq!(sh.expire_slice(now, 30, &t, |s| gone.push(s.id())), 30);
        assert_eq!(sh.len(), 70);
        assert_eq!(sh.expire_slice(now, 30, &t, |s| gone.push(s.id())), 30);
        assert_eq!(sh.expire_slice(now, 1000, &t, |s| gone.push(s.id())), 40);
        gone.sort_unstable();
        assert_eq!(gone, (0..100).collect::<Vec<u64>>());
        assert!(sh.is_empty());
    }

    #[test]
    fn expiry_for_every_timeout_class_on_a_fake_clock() {
        let mut t = Timeouts::default();
        t.set(TimeoutClass::TcpEstablished, 500);
        for class in TimeoutClass::ALL {
            let mut sh = Shard::new(4, 0).unwrap();
            let mut st = state_n(1, 1, 1000);
            st.timeout = class;
            sh.insert(st).unwrap();
            let secs = t.secs(class) as u64;
            let just_before = Instant::from_nanos((1000 + secs) * 1_000_000_000 - 1);
            assert_eq!(sh.expire_slice(just_before, 4, &t, |_| {}), 0, "{class:?}");
            assert_eq!(sh.len(), 1);
            let mut seen = None;
            let at = Instant::from_secs(1000 + secs);
            assert_eq!(sh.expire_slice(at, 4, &t, |s| seen = Some(s.timeout)), 1);
            assert_eq!(seen, Some(class));
            assert!(sh.is_empty());
        }
    }

    #[test]
    fn iter_and_remove_if_see_every_state() {
        let mut sh = Shard::new(200, 0).unwrap();
        for n in 0..150 {
            sh.insert(state_n(n, n as u64, 0)).unwrap();
        }
        for n in (0..150).step_by(2) {
            let k = key_n(n);
            let s = sh.lookup(&k, k.symmetric_hash()).unwrap();
            sh.remove(s).unwrap();
        }
        let mut ids: Vec<u64> = sh.iter().map(|(_, s)| s.id()).collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..150).step_by(2).collect::<Vec<u64>>());
        let mut removed = 0;
        assert_eq!(sh.remove_if(|s| s.id() % 3 == 0, |_| removed += 1), 25);
        assert_eq!(removed, 25);
        assert_eq!(sh.iter().count(), 50);
    }

    #[test]
    fn full_default_shard_lookups_read_about_one_bucket() {
        let mut sh = Shard::new(DEFAULT_CAPACITY, 1).unwrap();
        for n in 0..DEFAULT_CAPACITY as u32 {
            let id = sh.alloc_id();
            sh.insert(state_n(n, id, 0)).unwrap();
        }
        assert_eq!(sh.insert(state_n(u32::MAX, 0, 0)), Err(InsertError::Full));
        let mut probes = 0usize;
        for n in 0..DEFAULT_CAPACITY as u32 {
            let k = key_n(n);
            let h = k.symmetric_hash();
            let slot = sh.lookup(&k, h).unwrap();
            assert_eq!(sh.get(slot).map(|s| *s.key()), Some(k));
            probes += sh.by_key.probe_len(key_tag(h), slot.0);
        }
        let avg = probes as f64 / DEFAULT_CAPACITY as f64;
        assert!(avg < 1.1, "average buckets per lookup at 75% load: {avg}");
        let longest = (0..DEFAULT_CAPACITY as u32)
            .map(|n| {
                let k = key_n(n);
                let h = k.symmetric_hash();
                sh.lookup(&k, h)
                    .map_or(usize::MAX, |s| sh.by_key.probe_len(key_tag(h), s.0))
            })
            .max();
        // About 15 buckets here (the far end of linear probing's tail).
        assert!(
            longest.is_some_and(|l| l < MAX_PROBE_BUCKETS),
            "longest probe of random keys at 75% load: {longest:?}"
        );
        // The id index with sequential local ids (the keyed identity hash
        // spreads them like random ones).
        let longest_id = sh
            .iter()
            .map(|(slot, st)| sh.by_id.probe_len(id_tag(st.id(), st.creatorid()), slot.0))
            .max();
        assert!(
            longest_id.is_some_and(|l| l < MAX_PROBE_BUCKETS),
            "longest id probe at 75% load: {longest_id:?}"
        );
        // Churn: remove and re-add half, everything stays reachable.
        for n in (0..DEFAULT_CAPACITY as u32).step_by(2) {
            let k = key_n(n);
            let slot = sh.lookup(&k, k.symmetric_hash()).unwrap();
            sh.remove(slot).unwrap();
        }
        for n in (0..DEFAULT_CAPACITY as u32).step_by(2) {
            let id = sh.alloc_id();
            sh.insert(state_n(n, id, 0)).unwrap();
        }
        assert_eq!(sh.len(), DEFAULT_CAPACITY);
        for n in 0..DEFAULT_CAPACITY as u32 {
            let k = key_n(n);
            assert!(sh.lookup(&k, k.symmetric_hash()).is_some(), "key {n}");
        }
    }

    /// The key of a SYN from client `n` (`10.a.b.c:port`) to 192.0.2.80:443.
    fn syn_key(n: u32) -> FlowKey {
        FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
            1024 + (n >> 24) as u16,
            Addr::v4([192, 0, 2, 80]),
            443,
        )
        .0
    }

    /// What an attacker who knows `secret` does offline: tries client
    /// addresses until `count` keys have their home bucket in `homes` of an
    /// index of `table`'s size. Bounded: gives up after 2^24 tries.
    fn aimed_keys(
        secret: &HashSecret,
        table: &IndexTable,
        homes: core::ops::Range<usize>,
        count: usize,
    ) -> Vec<FlowKey> {
        (0..1u32 << 24)
            .map(syn_key)
            .filter(|k| homes.contains(&table.home(key_tag(k.symmetric_hash_with(secret)))))
            .take(count)
            .collect()
    }

    /// Keys per home bucket under `secret`, largest first.
    fn occupancy(secret: &HashSecret, table: &IndexTable, keys: &[FlowKey]) -> Vec<usize> {
        let mut per = vec![0usize; table.buckets.len()];
        for k in keys {
            per[table.home(key_tag(k.symmetric_hash_with(secret)))] += 1;
        }
        per.sort_unstable_by(|a, b| b.cmp(a));
        per
    }

    #[test]
    fn keys_aimed_under_a_known_secret_spread_under_another() {
        // 1024 buckets (a shard of 6144 states); 2048 keys is 25% load.
        let table = IndexTable::new(6144);
        assert_eq!(table.buckets.len(), 1024);
        let known = HashSecret::DEFAULT;
        let keys = aimed_keys(&known, &table, 0..4, 2048);
        assert_eq!(keys.len(), 2048);
        // Under the key they were built for, all of them share 4 buckets...
        let aimed = occupancy(&known, &table, &keys);
        assert!(aimed[4..].iter().all(|&n| n == 0), "{:?}", &aimed[..8]);
        assert!(aimed[0] >= 512);
        // ...so an index keyed with it keeps only what fits in the probe
        // windows of those 4 homes.
        let mut t = IndexTable::new(6144);
        let kept = keys
            .iter()
            .enumerate()
            .filter(|(i, k)| t.insert(key_tag(k.symmetric_hash_with(&known)), *i as u32))
            .count();
        assert_eq!(kept, (MAX_PROBE_BUCKETS + 3) * WAYS);
        // Under another key they land like random keys: 2 per bucket on
        // average, the fullest with a handful, and every one fits in the
        // index at its home or the next bucket.
        let secret = HashSecret([
            0x243f_6a88_85a3_08d3,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
            0x4528_21e6_38d0_1377,
            0xbe54_66cf_34e9_0c6c,
        ]);
        let spread = occupancy(&secret, &table, &keys);
        assert!(spread[0] <= 12, "fullest bucket: {}", spread[0]);
        assert!(spread.iter().filter(|&&n| n > 0).count() > 800);
        let mut t = IndexTable::new(6144);
        for (i, k) in keys.iter().enumerate() {
            assert!(t.insert(key_tag(k.symmetric_hash_with(&secret)), i as u32));
        }
        let longest = keys
            .iter()
            .enumerate()
            .map(|(i, k)| t.probe_len(key_tag(k.symmetric_hash_with(&secret)), i as u32))
            .max();
        assert!(longest.is_some_and(|l| l <= 2), "longest probe {longest:?}");
    }

    #[test]
    fn keys_aimed_at_one_bucket_fill_only_its_probe_window() {
        // The attacker knows this process's key (the default one in unit
        // tests): 600 keys with home bucket 500 of a 1000-bucket key index
        // (sized for two keys per state: 3000 states).
        let mut sh = Shard::new(3000, 0).unwrap();
        assert_eq!(sh.by_key.buckets.len(), 1000);
        let keys = aimed_keys(&crate::flow::hash_secret(), &sh.by_key, 500..501, 600);
        assert_eq!(keys.len(), 600);
        let mut slots = Vec::new();
        let mut refused = Vec::new();
        for (n, k) in keys.iter().enumerate() {
            let st = State::new(*k, false, n as u64 + 1, 7, Instant::from_secs(1));
            match sh.insert(st) {
                Ok(slot) => slots.push((*k, slot)),
                Err(e) => {
                    assert_eq!(e, InsertError::Full);
                    refused.push((*k, n as u64 + 1));
                }
            }
        }
        // The window of 32 buckets from the home takes 256; the rest fail
        // as "full" although the shard has room for 2744 more.
        assert_eq!(slots.len(), MAX_PROBE_BUCKETS * WAYS);
        assert_eq!(sh.len(), slots.len());
        for (k, slot) in &slots {
            let h = k.symmetric_hash();
            assert_eq!(sh.lookup(k, h), Some(*slot));
            assert!(sh.by_key.probe_len(key_tag(h), slot.0) <= MAX_PROBE_BUCKETS);
        }
        for (k, _) in &refused {
            assert_eq!(sh.lookup(k, k.symmetric_hash()), None);
        }
        // Other keys are not refused: the 1000 first SYN keys whose home is
        // elsewhere all go in.
        let mut others = 0;
        for n in 0..u32::MAX {
            let k = syn_key(n);
            let home = sh.by_key.home(key_tag(k.symmetric_hash()));
            if (500..500 + MAX_PROBE_BUCKETS).contains(&home) {
                continue;
            }
            let st = State::new(k, false, 1_000_000 + n as u64, 7, Instant::from_secs(1));
            assert!(sh.insert(st).is_ok(), "key {n}");
            others += 1;
            if others == 1000 {
                break;
            }
        }
        // Removing aimed states makes room for the refused ones, and every
        // state stays reachable (the backward shift keeps the bound).
        for (k, slot) in slots.drain(..40) {
            assert_eq!(sh.remove(slot).map(|s| *s.key()), Some(k));
        }
        for (k, id) in refused.drain(..40) {
            let slot = sh.insert(State::new(k, false, id, 7, Instant::from_secs(1)));
            slots.push((k, slot.unwrap()));
        }
        assert_eq!(
            sh.insert(State::new(refused[0].0, false, 9, 7, Instant::from_secs(1))),
            Err(InsertError::Full)
        );
        for (k, slot) in &slots {
            assert_eq!(sh.lookup(k, k.symmetric_hash()), Some(*slot));
        }
        assert_eq!(sh.len(), MAX_PROBE_BUCKETS * WAYS + 1000);
    }

    proptest! {
        /// The index alone against a model, with tags crowded onto a few
        /// home buckets so probes spill and wrap.
        #[test]
        fn index_table_matches_a_model_under_collisions(
            ops in proptest::collection::vec((any::<bool>(), 0u32..4, 0u32..40), 1..300),
        ) {
            let mut t = IndexTable::new(36); // 6 buckets, 48 ways
            let mut model: HashMap<u32, u32> = HashMap::new(); // slot -> tag
            for (add, home, slot) in ops {
                let tag = home << 30 | slot;
                if add {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(slot) {
                        prop_assert!(t.insert(tag, slot));
                        e.insert(tag);
                    }
                } else if let Some(stored) = model.remove(&slot) {
                    prop_assert!(t.remove(stored, slot));
                } else {
                    prop_assert!(!t.remove(tag, slot));
                }
                for s in 0..40u32 {
                    for h in 0..4u32 {
                        let tag = h << 30 | s;
                        let want = model.get(&s) == Some(&tag);
                        prop_assert_eq!(t.find(tag, |x| x == s).is_some(), want);
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// An index larger than the probe bound with every tag homed on
        /// bucket 0 or 2: inserts fail exactly when the window is full, and
        /// lookups and removals stay right around the refusals.
        #[test]
        fn bounded_index_matches_a_model_under_collisions(
            ops in proptest::collection::vec((0u8..3, 0u32..2, 0u32..400), 1..1500),
        ) {
            let mut t = IndexTable::new(6 * 40); // 40 buckets
            prop_assert!(t.buckets.len() > MAX_PROBE_BUCKETS);
            let mut model: HashMap<u32, u32> = HashMap::new(); // slot -> tag
            for (op, h, slot) in ops {
                let tag = h << 28 | slot; // home 0 or 2
                if op < 2 {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(slot) {
                        let room = t.vacancy(tag).is_some();
                        prop_assert_eq!(t.insert(tag, slot), room);
                        if room {
                            e.insert(tag);
                        } else {
                            let home = t.home(tag);
                            for d in 0..MAX_PROBE_BUCKETS {
                                prop_assert!(t.buckets[(home + d) % 40].free_way().is_none());
                            }
                        }
                    }
                } else if let Some(stored) = model.remove(&slot) {
                    prop_assert!(t.remove(stored, slot));
                }
            }
            for (&slot, &tag) in &model {
                prop_assert_eq!(t.find(tag, |x| x == slot), Some(slot));
                prop_assert!(t.probe_len(tag, slot) <= MAX_PROBE_BUCKETS);
            }
            for s in 0..400u32 {
                for h in 0..2u32 {
                    let tag = h << 28 | s;
                    let want = model.get(&s) == Some(&tag);
                    prop_assert_eq!(t.find(tag, |x| x == s).is_some(), want);
                }
            }
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u32, u64),
        Lookup(u32),
        Remove(u32),
        FindId(u64),
        Touch(u32),
        Advance(u64),
        Expire(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..60, 0u64..80).prop_map(|(k, id)| Op::Insert(k, id)),
            2 => (0u32..60).prop_map(Op::Lookup),
            2 => (0u32..60).prop_map(Op::Remove),
            1 => (0u64..80).prop_map(Op::FindId),
            1 => (0u32..60).prop_map(Op::Touch),
            1 => (0u64..40).prop_map(Op::Advance),
            1 => (0usize..50).prop_map(Op::Expire),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn shard_matches_a_hashmap_model(cap in 1usize..40, pooled: bool, ops in proptest::collection::vec(op(), 1..400)) {
            let t = Timeouts::default(); // udp.first 60 s
            // Side records one per slot, or from a pool (plain states need
            // none: the same behaviour either way).
            let records = if pooled { cap / 4 } else { cap };
            let mut sh = Shard::with_records(cap, records, 0).unwrap();
            // key number -> (id, last_seen_s)
            let mut model: HashMap<u32, (u64, u64)> = HashMap::new();
            let mut now_s = 0u64;
            for op in ops {
                match op {
                    Op::Insert(k, id) => {
                        let r = sh.insert(state_n(k, id, now_s));
                        let id_taken = model.values().any(|&(i, _)| i == id);
                        if model.contains_key(&k) {
                            prop_assert!(matches!(r, Err(InsertError::Exists(_))));
                        } else if id_taken {
                            prop_assert!(matches!(r, Err(InsertError::IdExists(_))));
                        } else if model.len() == cap {
                            prop_assert_eq!(r, Err(InsertError::Full));
                        } else {
                            prop_assert!(r.is_ok());
                            model.insert(k, (id, now_s));
                        }
                    }
                    Op::Lookup(k) => {
                        let key = key_n(k);
                        let got = sh.lookup(&key, key.symmetric_hash()).and_then(|s| sh.get(s)).map(|s| s.id());
                        prop_assert_eq!(got, model.get(&k).map(|v| v.0));
                    }
                    Op::Remove(k) => {
                        let key = key_n(k);
                        let got = sh.lookup(&key, key.symmetric_hash()).and_then(|s| sh.remove(s)).map(|s| s.id());
                        prop_assert_eq!(got, model.remove(&k).map(|v| v.0));
                    }
                    Op::FindId(id) => {
                        let got = sh.find_by_id(id, 0xC0FFEE).and_then(|s| sh.get(s)).map(|s| *s.key());
                        let want = model.iter().find(|(_, v)| v.0 == id).map(|(k, _)| key_n(*k));
                        prop_assert_eq!(got, want);
                    }
                    Op::Touch(k) => {
                        let key = key_n(k);
                        if let Some(s) = sh.lookup(&key, key.symmetric_hash()) {
                            sh.get_mut(s).unwrap().touch(Instant::from_secs(now_s));
                        }
                        if let Some(v) = model.get_mut(&k) {
                            v.1 = now_s;
                        }
                    }
                    Op::Advance(d) => now_s += d,
                    Op::Expire(budget) => {
                        let mut gone = Vec::new();
                        // A full sweep so the model can predict the result.
                        sh.expire_slice(Instant::from_secs(now_s), cap.max(budget), &t, |s| gone.push(s.id()));
                        let mut want: Vec<u64> = model.values().filter(|v| v.1 + 60 <= now_s).map(|v| v.0).collect();
                        model.retain(|_, v| v.1 + 60 > now_s);
                        gone.sort_unstable();
                        want.sort_unstable();
                        prop_assert_eq!(gone, want);
                    }
                }
                prop_assert_eq!(sh.len(), model.len());
            }
            let mut all: Vec<u64> = sh.iter().map(|(_, s)| s.id()).collect();
            let mut want: Vec<u64> = model.values().map(|v| v.0).collect();
            all.sort_unstable();
            want.sort_unstable();
            prop_assert_eq!(all, want);
        }
    }
}

#[cfg(test)]
mod translation_tests {
    use super::*;
    use crate::flow::{proto, Addr, Af};

    fn key(a: [u8; 4], ap: u16, b: [u8; 4], bp: u16) -> (FlowKey, bool) {
        FlowKey::from_packet(Af::Inet, proto::TCP, Addr::v4(a), ap, Addr::v4(b), bp)
    }

    #[test]
    fn a_translated_state_is_found_by_both_keys_and_removed_with_both() {
        let mut sh = Shard::new(100, 0).unwrap();
        let (ka, sa) = key([10, 1, 0, 7], 40000, [198, 51, 100, 10], 80);
        let (kb, sb) = key([203, 0, 113, 1], 63725, [198, 51, 100, 10], 80);
        let st = State::new(ka, sa, 1, 7, Instant::from_secs(1));
        let tr = Translation {
            key: kb,
            src_is_addr1: sb,
            route: Default::default(),
            scrub: Default::default(),
        };
        let slot = sh.insert_translated(st, tr).unwrap();
        assert_eq!(
            sh.lookup_side(&ka, ka.symmetric_hash()),
            Some((slot, false))
        );
        assert_eq!(sh.lookup_side(&kb, kb.symmetric_hash()), Some((slot, true)));
        assert_eq!(sh.translation(slot), Some(&tr));
        assert_eq!(sh.translated_len(), 1);
        // Neither key can be taken by another state.
        let other = State::new(kb, sb, 2, 7, Instant::from_secs(1));
        assert_eq!(sh.insert(other), Err(InsertError::Exists(slot)));
        let (kc, sc) = key([10, 1, 0, 8], 1, [198, 51, 100, 10], 80);
        let third = State::new(kc, sc, 3, 7, Instant::from_secs(1));
        assert_eq!(
            sh.insert_translated(third, tr),
            Err(InsertError::Exists(slot))
        );
        assert!(sh.remove(slot).is_some());
        assert_eq!(sh.lookup(&ka, ka.symmetric_hash()), None);
        assert_eq!(sh.lookup(&kb, kb.symmetric_hash()), None);
        assert_eq!(sh.translated_len(), 0);
        // The far key is free again.
        assert!(sh
            .insert(State::new(kb, sb, 4, 7, Instant::from_secs(1)))
            .is_ok());
    }

    #[test]
    fn a_translation_attached_to_a_state_indexes_its_far_key() {
        let mut sh = Shard::new(100, 0).unwrap();
        let t = Instant::from_secs(1);
        // The LAN side's untranslated state, as an OpenBSD peer's inbound
        // state on its LAN interface arrives first.
        let (ka, sa) = key([10, 1, 0, 7], 40000, [198, 51, 100, 10], 80);
        let (kb, sb) = key([203, 0, 113, 1], 63725, [198, 51, 100, 10], 80);
        let tr = Translation {
            key: kb,
            src_is_addr1: sb,
            route: Default::default(),
            scrub: Default::default(),
        };
        let slot = sh.insert(State::new(ka, sa, 1, 7, t)).unwrap();
        let gen = sh.generation();
        assert_eq!(sh.lookup(&kb, kb.symmetric_hash()), None);
        assert_eq!(sh.attach_translation(slot, tr), Ok(()));
        assert_ne!(sh.generation(), gen, "the far key's lookups changed");
        assert!(sh.get(slot).unwrap().is_translated());
        assert_eq!(sh.translation(slot), Some(&tr));
        assert_eq!(sh.translated_len(), 1);
        assert_eq!(sh.lookup_side(&kb, kb.symmetric_hash()), Some((slot, true)));
        assert_eq!(
            sh.lookup_side(&ka, ka.symmetric_hash()),
            Some((slot, false))
        );
        // Once translated it keeps its translation.
        let (kc, sc) = key([203, 0, 113, 1], 1, [198, 51, 100, 10], 80);
        let other = Translation {
            key: kc,
            src_is_addr1: sc,
            route: Default::default(),
            scrub: Default::default(),
        };
        assert_eq!(
            sh.attach_translation(slot, other),
            Err(InsertError::Exists(slot))
        );
        assert_eq!(sh.translation(slot), Some(&tr));
        // A far key that is another state's is refused, nothing changes.
        let (kd, sd) = key([10, 1, 0, 8], 40000, [198, 51, 100, 10], 80);
        let second = sh.insert(State::new(kd, sd, 2, 7, t)).unwrap();
        assert_eq!(
            sh.attach_translation(second, tr),
            Err(InsertError::Exists(slot))
        );
        assert_eq!(sh.translation(second), None);
        assert_eq!(sh.translated_len(), 1);
        // A translation to its own key is none; a free slot has nothing.
        let own = Translation {
            key: kd,
            src_is_addr1: sd,
            route: Default::default(),
            scrub: Default::default(),
        };
        assert_eq!(sh.attach_translation(second, own), Ok(()));
        assert_eq!(sh.translation(second), None);
        // Removing the state removes both keys.
        assert!(sh.remove(slot).is_some());
        assert_eq!(sh.lookup(&kb, kb.symmetric_hash()), None);
        assert_eq!(sh.translated_len(), 0);
        assert_eq!(
            sh.attach_translation(slot, tr),
            Err(InsertError::Exists(slot))
        );
    }

    fn routed() -> Translation {
        Translation {
            route: crate::state::StateRoute {
                kind: crate::state::route_kind::ROUTE_TO,
                ..crate::state::StateRoute::NONE
            },
            ..Translation::NONE
        }
    }

    #[test]
    fn a_pooled_shard_refuses_a_state_that_needs_a_record_when_none_is_left() {
        let mut sh = Shard::with_records(8, 2, 0).unwrap();
        let t = Instant::from_secs(1);
        let (ka, sa) = key([10, 1, 0, 7], 40000, [198, 51, 100, 10], 80);
        let (kb, sb) = key([203, 0, 113, 1], 63725, [198, 51, 100, 10], 80);
        let (kc, sc) = key([10, 1, 0, 8], 40000, [198, 51, 100, 10], 80);
        let (kd, sd) = key([10, 1, 0, 9], 40000, [198, 51, 100, 10], 80);
        let nat = Translation {
            key: kb,
            src_is_addr1: sb,
            ..Translation::NONE
        };
        let a = sh
            .insert_translated(State::new(ka, sa, 1, 7, t), nat)
            .unwrap();
        let c = sh
            .insert_translated(State::new(kc, sc, 2, 7, t), routed())
            .unwrap();
        assert_eq!(sh.records_used(), 2);
        // No record left: refused without a trace; a plain state still fits.
        let gen = sh.generation();
        assert_eq!(
            sh.insert_translated(State::new(kd, sd, 3, 7, t), routed()),
            Err(InsertError::NoRecord)
        );
        assert_eq!(sh.generation(), gen);
        assert_eq!(sh.len(), 2);
        assert_eq!(sh.lookup(&kd, kd.symmetric_hash()), None);
        assert_eq!(sh.find_by_id(3, 7), None);
        let d = sh.insert(State::new(kd, sd, 3, 7, t)).unwrap();
        // Nor can a translation be attached to it.
        let (ke, se) = key([203, 0, 113, 2], 1000, [198, 51, 100, 10], 80);
        let far = Translation {
            key: ke,
            src_is_addr1: se,
            ..Translation::NONE
        };
        assert_eq!(sh.attach_translation(d, far), Err(InsertError::NoRecord));
        assert_eq!(sh.lookup(&ke, ke.symmetric_hash()), None);
        // Each state reads its own record.
        assert_eq!(sh.translation(a), Some(&nat));
        assert_eq!(
            sh.translation(c).map(|t| t.route.kind),
            Some(routed().route.kind)
        );
        assert_eq!(sh.translation(d), None);
        assert_eq!(sh.lookup_side(&kb, kb.symmetric_hash()), Some((a, true)));
        // A removal gives the record back.
        sh.remove(a).unwrap();
        assert_eq!(sh.records_used(), 1);
        assert_eq!(sh.lookup(&kb, kb.symmetric_hash()), None);
        assert_eq!(sh.attach_translation(d, far), Ok(()));
        assert_eq!(sh.translation(d), Some(&far));
        assert_eq!(sh.lookup_side(&ke, ke.symmetric_hash()), Some((d, true)));
        assert_eq!(sh.records_used(), 2);
    }

    #[derive(Clone, Debug)]
    enum PoolOp {
        /// Key number, and what the state needs: 0 nothing, 1 a
        /// translation (far key `1000 + n`), 2 a route.
        Insert(u8, u8),
        Remove(u8),
        Attach(u8),
    }

    fn pool_op() -> impl Strategy<Value = PoolOp> {
        prop_oneof![
            4 => (0u8..24, 0u8..3).prop_map(|(k, n)| PoolOp::Insert(k, n)),
            2 => (0u8..24).prop_map(PoolOp::Remove),
            1 => (0u8..24).prop_map(PoolOp::Attach),
        ]
    }

    fn near(n: u8) -> (FlowKey, bool) {
        key([10, 1, 0, n], 40000, [198, 51, 100, 10], 80)
    }

    fn far(n: u8) -> Translation {
        let (k, s) = key([203, 0, 113, n], 1000, [198, 51, 100, 10], 80);
        Translation {
            key: k,
            src_is_addr1: s,
            ..Translation::NONE
        }
    }

    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Whatever the mix, a pooled shard gives each state that needs
        /// one a record of its own, refuses exactly when none is left, and
        /// finds every state by each of its keys.
        #[test]
        fn a_pooled_shard_matches_a_model(
            cap in 1usize..16,
            records in 0usize..16,
            ops in proptest::collection::vec(pool_op(), 1..200),
        ) {
            let mut sh = Shard::with_records(cap, records, 0).unwrap();
            let records = records.min(cap);
            let t = Instant::from_secs(1);
            // key number -> what its state holds (0, 1 translated, 2 routed)
            let mut model: HashMap<u8, u8> = HashMap::new();
            let mut next_id = 1u64;
            for op in ops {
                let used = model.values().filter(|&&n| n != 0).count();
                match op {
                    PoolOp::Insert(k, need) => {
                        let (kk, s) = near(k);
                        let tr = match need { 1 => far(k), 2 => routed(), _ => Translation::NONE };
                        next_id += 1;
                        let r = sh.insert_translated(State::new(kk, s, next_id, 7, t), tr);
                        if model.contains_key(&k) {
                            prop_assert!(matches!(r, Err(InsertError::Exists(_))));
                        } else if model.len() == cap {
                            prop_assert_eq!(r, Err(InsertError::Full));
                        } else if need != 0 && used == records {
                            prop_assert_eq!(r, Err(InsertError::NoRecord));
                        } else {
                            prop_assert!(r.is_ok());
                            model.insert(k, need);
                        }
                    }
                    PoolOp::Remove(k) => {
                        let (kk, _) = near(k);
                        let got = sh.lookup(&kk, kk.symmetric_hash()).and_then(|s| sh.remove(s));
                        prop_assert_eq!(got.is_some(), model.remove(&k).is_some());
                    }
                    PoolOp::Attach(k) => {
                        let (kk, _) = near(k);
                        if let Some(slot) = sh.lookup(&kk, kk.symmetric_hash()) {
                            let r = sh.attach_translation(slot, far(k));
                            match model.get(&k).copied() {
                                Some(1) => prop_assert!(r.is_err()),
                                Some(2) => {
                                    prop_assert_eq!(r, Ok(()));
                                    model.insert(k, 1);
                                }
                                _ if used == records => prop_assert_eq!(r, Err(InsertError::NoRecord)),
                                _ => {
                                    prop_assert_eq!(r, Ok(()));
                                    model.insert(k, 1);
                                }
                            }
                        }
                    }
                }
                prop_assert_eq!(sh.len(), model.len());
                prop_assert_eq!(sh.records_used(), model.values().filter(|&&n| n != 0).count());
                for (&k, &need) in &model {
                    let (kk, _) = near(k);
                    let slot = sh.lookup(&kk, kk.symmetric_hash());
                    prop_assert!(slot.is_some());
                    let tr = slot.and_then(|s| sh.translation(s)).copied();
                    let fk = far(k).key;
                    match need {
                        1 => {
                            prop_assert_eq!(tr.map(|t| t.key), Some(fk));
                            prop_assert_eq!(sh.lookup_side(&fk, fk.symmetric_hash()), slot.map(|s| (s, true)));
                        }
                        2 => {
                            prop_assert_eq!(tr.map(|t| t.route.kind), Some(crate::state::route_kind::ROUTE_TO));
                            prop_assert_eq!(sh.lookup(&fk, fk.symmetric_hash()), None);
                        }
                        _ => {
                            prop_assert_eq!(tr, None);
                            prop_assert_eq!(sh.lookup(&fk, fk.symmetric_hash()), None);
                        }
                    }
                }
            }
        }
    }
}
