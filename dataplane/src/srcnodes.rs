//! Source tracking: pf's source nodes (`pf_src_node`), shared by every
//! worker. A state created by worker 2 counts against the same source as
//! one created by worker 5, so the counts live here and not in a shard.
//!
//! A node is keyed by (scope, address family, source address): the scope
//! is the rule tag of the rule that created it (`source-track rule`, the
//! default of `max-src-nodes` / `max-src-conn` / `max-src-conn-rate`) or
//! [`GLOBAL_SCOPE`] (`source-track global`: one node per source for every
//! rule that tracks globally, as pf's `rule.ptr = NULL` nodes). A node
//! exists while it has states, and `src.track` seconds after its last
//! state went (pf's `expire`).
//!
//! Layout (capacity `N` slots, fixed at [`SourceTable::new`], never
//! reallocated):
//!
//! ```text
//! words  [AtomicU64; N]   status (2 bits) | states (24 bits) | fingerprint (38 bits)
//! nodes  [Node; N]        56 B: address, scope, owner rule, connections,
//!                         rate (count | last second), expiry, creation
//! ```
//!
//! 64 bytes per slot; [`SourceTable::new`] gives 5/4 slots per node of
//! `set limit src-nodes` plus one window, so about 80 bytes per tracked
//! source of the limit.
//!
//! Concurrency (no lock, no allocation, bounded work):
//! - a key lives in the [`WINDOW`] slots from its home slot on; every
//!   operation reads the whole window (one line of `words`), never more;
//! - a node's state count lives in its word, so attaching a state is one
//!   CAS that also proves the slot still holds the node (a node is freed
//!   only by a CAS from "live, 0 states" to empty, which fails if a state
//!   attached meanwhile, and an attach to a slot freed meanwhile fails
//!   because the word changed);
//! - creating a node claims an empty slot by CAS (busy, 1 state), writes
//!   the key, then marks it live; a worker that finds a busy slot with the
//!   same fingerprint attaches to it (the fingerprint is 38 bits of a keyed
//!   hash, on top of the window's position: a false match needs a
//!   collision nobody can aim, about 2^-38 per lookup);
//! - two workers creating the same source at once both claim the first
//!   empty slot of the window, so one CAS fails and that worker attaches
//!   to the winner. Only a slot freed between the two scans can make them
//!   claim different slots: the source then has two nodes for a while.
//!   Nothing is lost: every release decrements a node of the source that
//!   has states, limits count the sum of its nodes, and both go when their
//!   states do;
//! - expiry ([`SourceTable::sweep`]) runs on the workers, each over its
//!   share of the slots, a bounded slice per call.
//!
//! Invariants: a node's `states` is the number of states attached to it
//! (attached by [`SourceTable::attach`], given back by
//! [`SourceTable::release`]); a node is freed only with 0 states, so a
//! release always finds the node its state counted in.

use crate::flow::{Addr, Af, FlowKey};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

/// The scope of `source-track global` nodes (never a rule tag: tags have
/// an epoch below 4095 in their top 12 bits).
pub const GLOBAL_SCOPE: u32 = u32::MAX - 1;

/// Slots a key may occupy from its home slot on (one line of `words`).
pub const WINDOW: usize = 8;

/// Most states one node counts (24 bits of its word).
pub const MAX_NODE_STATES: u32 = (1 << 24) - 1;

/// pf's `PF_THRESHOLD_MULT`: connection rates are kept in thousandths.
pub const THRESHOLD_MULT: u32 = 1000;
/// pf's `PF_THRESHOLD_MAX`: the largest `max-src-conn-rate` count.
pub const THRESHOLD_MAX: u32 = u32::MAX / THRESHOLD_MULT;

/// pf's default `set limit src-nodes` (`PFSNODE_HIWAT`).
pub const DEFAULT_LIMIT: u32 = 10_000;

const EMPTY: u64 = 0;
const BUSY: u64 = 1;
const LIVE: u64 = 2;
const STATUS_MASK: u64 = 3;
const STATES_SHIFT: u32 = 2;
const ONE_STATE: u64 = 1 << STATES_SHIFT;
const STATES_MASK: u64 = (MAX_NODE_STATES as u64) << STATES_SHIFT;
const FP_SHIFT: u32 = 26;
/// Tries of an operation whose CAS keeps losing to other workers before it
/// gives up (counted by the caller; never a wait).
const RETRIES: usize = 16;

/// What identifies a source node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceKey {
    /// The creating rule's tag (`source-track rule`) or [`GLOBAL_SCOPE`].
    pub scope: u32,
    /// The source's family.
    pub af: Af,
    /// The source address (the initiator's, before translation).
    pub addr: Addr,
}

impl SourceKey {
    #[inline]
    fn hash(&self) -> u64 {
        FlowKey {
            addr: [self.addr, Addr::ZERO],
            port: [(self.scope >> 16) as u16, self.scope as u16],
            rdomain: 0,
            af: self.af as u8,
            proto: 0xff,
        }
        .symmetric_hash()
    }
}

/// Why [`SourceTable::attach`] refused a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// `max-src-states`: the source has as many states as the rule allows.
    #[error("max-src-states reached")]
    States,
    /// `max-src-nodes`: the rule tracks as many sources as it allows.
    #[error("max-src-nodes reached")]
    Nodes,
    /// `set limit src-nodes`, or no free slot in the key's window.
    #[error("source table full")]
    Full,
    /// Other workers kept changing the window (bounded retries).
    #[error("source table contended")]
    Contended,
}

/// The limits of a new state's node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachLimits {
    /// `max-src-states` (0: none).
    pub max_states: u32,
    /// `max-src-conn-rate`'s seconds (kept in the node for listings).
    pub rate_secs: u32,
    /// The rule tag of the creating rule (its `max-src-nodes` count is
    /// given back when the node goes).
    pub owner: u32,
}

/// One node as listed (`dpfctl -s Sources`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceNode {
    /// Its key.
    pub key: SourceKey,
    /// The rule tag of the rule that created it.
    pub owner: u32,
    /// States attached.
    pub states: u32,
    /// Established TCP connections (`max-src-conn`).
    pub conn: u32,
    /// The connection rate, in thousandths, as of `rate_last_s`.
    pub rate_count: u32,
    /// The rate's interval (`max-src-conn-rate N/S`'s S).
    pub rate_secs: u32,
    /// Creation, whole seconds of the `Instant` clock.
    pub creation_s: u32,
    /// With no state: when it goes, whole seconds of the `Instant` clock.
    pub expire_s: u32,
}

#[derive(Default)]
#[repr(C, align(8))]
struct Node {
    addr: [AtomicU64; 2],
    scope: AtomicU32,
    owner: AtomicU32,
    conn: AtomicU32,
    expire_s: AtomicU32,
    creation_s: AtomicU32,
    rate_secs: AtomicU32,
    /// count (thousandths) in the low half, last update second in the high.
    rate: AtomicU64,
    af: AtomicU8,
}

const _: () = assert!(core::mem::size_of::<Node>() == 56);

impl Node {
    fn key(&self) -> Option<SourceKey> {
        let af = match self.af.load(Ordering::Relaxed) {
            2 => Af::Inet,
            24 => Af::Inet6,
            _ => return None,
        };
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.addr[0].load(Ordering::Relaxed).to_le_bytes());
        a[8..].copy_from_slice(&self.addr[1].load(Ordering::Relaxed).to_le_bytes());
        Some(SourceKey {
            scope: self.scope.load(Ordering::Relaxed),
            af,
            addr: Addr(a),
        })
    }

    fn set_key(&self, key: &SourceKey) {
        let mut w = [0u8; 8];
        w.copy_from_slice(&key.addr.0[..8]);
        self.addr[0].store(u64::from_le_bytes(w), Ordering::Relaxed);
        w.copy_from_slice(&key.addr.0[8..]);
        self.addr[1].store(u64::from_le_bytes(w), Ordering::Relaxed);
        self.scope.store(key.scope, Ordering::Relaxed);
        self.af.store(key.af as u8, Ordering::Relaxed);
    }
}

/// Longest table name an [`OverloadEvent`] carries (pf's
/// `PF_TABLE_NAME_SIZE` - 1).
pub const TABLE_NAME_MAX: usize = 31;

/// A source went over `max-src-conn` / `max-src-conn-rate` of a rule with
/// `overload <table>`: sent by the worker to the control thread, which
/// adds the address to the table and, with `flush`, has every worker kill
/// the source's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverloadEvent {
    /// The source's family.
    pub af: Af,
    /// The source address.
    pub addr: Addr,
    table: [u8; TABLE_NAME_MAX],
    table_len: u8,
    /// Which states go.
    pub flush: crate::rules::OverloadFlush,
    /// The rule tag of the rule (a `flush` without `global` kills only
    /// the source's states of this rule).
    pub rule: u32,
}

impl OverloadEvent {
    /// An event for `table` (`None` if its name is too long for one).
    pub fn new(
        af: Af,
        addr: Addr,
        table: &str,
        flush: crate::rules::OverloadFlush,
        rule: u32,
    ) -> Option<OverloadEvent> {
        let b = table.as_bytes();
        if b.len() > TABLE_NAME_MAX {
            return None;
        }
        let mut name = [0u8; TABLE_NAME_MAX];
        name[..b.len()].copy_from_slice(b);
        Some(OverloadEvent {
            af,
            addr,
            table: name,
            table_len: b.len() as u8,
            flush,
            rule,
        })
    }

    /// The overload table's name.
    pub fn table(&self) -> &str {
        std::str::from_utf8(&self.table[..usize::from(self.table_len)]).unwrap_or("")
    }
}

/// pf's source tracking limit counters (`pfctl -si`'s "Limit Counters"),
/// counted when a limit acts (never per packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum LimitCounter {
    /// `max-src-states` refused a state.
    MaxSrcStates,
    /// `max-src-nodes` (or `set limit src-nodes`) refused a node.
    MaxSrcNodes,
    /// `max-src-conn` exceeded.
    MaxSrcConn,
    /// `max-src-conn-rate` exceeded.
    MaxSrcConnRate,
    /// An address was sent for an overload table.
    OverloadTable,
    /// A flush of an overloading source's states was sent.
    OverloadFlush,
    /// An overload event found its ring full (the source is not added).
    OverloadLost,
}

impl LimitCounter {
    /// Every counter, in order.
    pub const ALL: [LimitCounter; 7] = [
        LimitCounter::MaxSrcStates,
        LimitCounter::MaxSrcNodes,
        LimitCounter::MaxSrcConn,
        LimitCounter::MaxSrcConnRate,
        LimitCounter::OverloadTable,
        LimitCounter::OverloadFlush,
        LimitCounter::OverloadLost,
    ];

    /// pfctl's name.
    pub const fn name(self) -> &'static str {
        match self {
            LimitCounter::MaxSrcStates => "max-src-states",
            LimitCounter::MaxSrcNodes => "max-src-nodes",
            LimitCounter::MaxSrcConn => "max-src-conn",
            LimitCounter::MaxSrcConnRate => "max-src-conn-rate",
            LimitCounter::OverloadTable => "overload table insertion",
            LimitCounter::OverloadFlush => "overload flush states",
            LimitCounter::OverloadLost => "overload events lost",
        }
    }
}

/// The box's source nodes. See the module documentation.
pub struct SourceTable {
    limits: [AtomicU64; 7],
    words: Box<[AtomicU64]>,
    nodes: Box<[Node]>,
    /// Nodes in use (busy or live).
    used: AtomicU32,
    /// The `set limit src-nodes` the table was sized for.
    limit: AtomicU32,
}

impl core::fmt::Debug for SourceTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SourceTable")
            .field("slots", &self.words.len())
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish()
    }
}

#[inline]
fn fingerprint(hash: u64) -> u64 {
    // Never 0, so a busy or live word is never EMPTY whatever its count.
    ((hash >> FP_SHIFT) | 1) << FP_SHIFT
}

#[inline]
fn states_of(word: u64) -> u32 {
    ((word & STATES_MASK) >> STATES_SHIFT) as u32
}

/// pf's `pf_add_threshold` over a packed (count, last) word: decays the
/// count linearly over `secs`, adds one connection.
#[inline]
fn add_threshold(packed: u64, now_s: u32, secs: u32) -> u64 {
    let (count, last) = (packed as u32, (packed >> 32) as u32);
    let diff = now_s.wrapping_sub(last);
    let count = if secs == 0 || diff >= secs {
        0
    } else {
        count - (count as u64 * diff as u64 / secs as u64) as u32
    };
    let count = count.saturating_add(THRESHOLD_MULT);
    (now_s as u64) << 32 | count as u64
}

impl SourceTable {
    /// A table for `limit` nodes (`set limit src-nodes`): all memory is
    /// allocated here.
    pub fn new(limit: u32) -> SourceTable {
        let slots = (limit as usize).saturating_mul(5) / 4 + WINDOW;
        SourceTable {
            words: (0..slots).map(|_| AtomicU64::new(EMPTY)).collect(),
            nodes: (0..slots).map(|_| Node::default()).collect(),
            used: AtomicU32::new(0),
            limit: AtomicU32::new(limit),
            limits: Default::default(),
        }
    }

    /// Bytes a table for `limit` nodes allocates.
    pub fn memory_bytes_for(limit: u32) -> usize {
        ((limit as usize).saturating_mul(5) / 4 + WINDOW) * (8 + core::mem::size_of::<Node>())
            + core::mem::size_of::<SourceTable>()
    }

    /// The nodes this table was sized for at creation.
    pub fn capacity(&self) -> u32 {
        ((self.words.len() - WINDOW) * 4 / 5) as u32
    }

    /// Counts a limit acting.
    #[inline]
    pub fn count(&self, c: LimitCounter) {
        self.limits[c as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A limit counter's value.
    pub fn counter(&self, c: LimitCounter) -> u64 {
        self.limits[c as usize].load(Ordering::Relaxed)
    }

    /// Nodes in use.
    pub fn len(&self) -> u32 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether no node is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        ((hash as u32 as u64 * self.words.len() as u64) >> 32) as usize
    }

    #[inline]
    fn slot(&self, home: usize, i: usize) -> usize {
        let s = home + i;
        if s >= self.words.len() {
            s - self.words.len()
        } else {
            s
        }
    }

    /// Whether slot `s` (word `w`) holds `key`: a live node compares its
    /// key, a busy one (being written) its fingerprint only.
    #[inline]
    fn holds(&self, s: usize, w: u64, fp: u64, key: &SourceKey) -> bool {
        let status = w & STATUS_MASK;
        if status == EMPTY || w & !(STATES_MASK | STATUS_MASK) != fp {
            return false;
        }
        status == BUSY || self.nodes[s].key().as_ref() == Some(key)
    }

    /// Counts a new state against `key`'s node, creating the node if the
    /// source has none; a new node takes a place under the rule's
    /// `max-src-nodes` (`rule_nodes`: the rule's node count and its limit)
    /// and under `box_limit` (the ruleset's `set limit src-nodes`; the
    /// table never holds more nodes than it was sized for). pf's
    /// `pf_insert_src_node`.
    pub fn attach(
        &self,
        key: &SourceKey,
        now_s: u32,
        limits: AttachLimits,
        rule_nodes: Option<(&AtomicU32, u32)>,
        box_limit: u32,
    ) -> Result<(), AttachError> {
        let hash = key.hash();
        let fp = fingerprint(hash);
        let home = self.home(hash);
        let mut placed = false;
        let mut result = Err(AttachError::Contended);
        for _ in 0..RETRIES {
            let mut first = None;
            let mut first_empty = None;
            let mut total = 0u32;
            for i in 0..WINDOW {
                let s = self.slot(home, i);
                let w = self.words[s].load(Ordering::Acquire);
                if self.holds(s, w, fp, key) {
                    total = total.saturating_add(states_of(w));
                    first.get_or_insert((s, w));
                } else if w & STATUS_MASK == EMPTY && first_empty.is_none() {
                    first_empty = Some((s, w));
                }
            }
            if let Some((s, w)) = first {
                if limits.max_states != 0 && total >= limits.max_states {
                    result = Err(AttachError::States);
                    break;
                }
                if states_of(w) >= MAX_NODE_STATES {
                    result = Err(AttachError::Full);
                    break;
                }
                if self.words[s]
                    .compare_exchange(w, w + ONE_STATE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    result = Ok(());
                    break;
                }
                continue;
            }
            // A new node: a place under the rule's and the box's limits,
            // taken once however many times the claim is retried.
            if !placed {
                if let Err(e) = self.take_place(rule_nodes, box_limit) {
                    result = Err(e);
                    break;
                }
                placed = true;
            }
            let Some((s, w)) = first_empty else {
                result = Err(AttachError::Full);
                break;
            };
            if self.words[s]
                .compare_exchange(
                    w,
                    fp | ONE_STATE | BUSY,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                continue;
            }
            let n = &self.nodes[s];
            n.set_key(key);
            n.owner.store(limits.owner, Ordering::Relaxed);
            n.conn.store(0, Ordering::Relaxed);
            n.creation_s.store(now_s, Ordering::Relaxed);
            n.expire_s.store(0, Ordering::Relaxed);
            n.rate_secs.store(limits.rate_secs, Ordering::Relaxed);
            n.rate.store((now_s as u64) << 32, Ordering::Relaxed);
            // Busy -> live (others may have attached meanwhile: add, do not
            // store). Release: the key is visible to whoever sees it live.
            self.words[s].fetch_add(LIVE - BUSY, Ordering::AcqRel);
            return Ok(());
        }
        if placed {
            self.give_place(rule_nodes.map(|(c, _)| c));
        }
        result
    }

    fn take_place(
        &self,
        rule_nodes: Option<(&AtomicU32, u32)>,
        box_limit: u32,
    ) -> Result<(), AttachError> {
        if let Some((count, max)) = rule_nodes {
            if count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (max == 0 || n < max).then_some(n + 1)
                })
                .is_err()
            {
                return Err(AttachError::Nodes);
            }
        }
        let limit = box_limit.min(self.limit.load(Ordering::Relaxed));
        if self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            if let Some((count, _)) = rule_nodes {
                let _ =
                    count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
            return Err(AttachError::Full);
        }
        Ok(())
    }

    fn give_place(&self, rule_count: Option<&AtomicU32>) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if let Some(count) = rule_count {
            let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Gives back a state attached to `key` (pf's
    /// `pf_src_tree_remove_state`): its connection if it was counted
    /// established (`conn`), its place in the node; a node left without
    /// states goes `timeout_s` seconds from `now_s`. False if no node of
    /// the source had a state to give back (a bug: counted, never lost).
    pub fn release(&self, key: &SourceKey, now_s: u32, timeout_s: u32, conn: bool) -> bool {
        let hash = key.hash();
        let fp = fingerprint(hash);
        let home = self.home(hash);
        for _ in 0..RETRIES {
            let mut target = None;
            for i in 0..WINDOW {
                let s = self.slot(home, i);
                let w = self.words[s].load(Ordering::Acquire);
                if self.holds(s, w, fp, key) && states_of(w) > 0 {
                    target = Some((s, w));
                    break;
                }
            }
            let Some((s, w)) = target else {
                return false;
            };
            if states_of(w) == 1 {
                // Written before the count reaches 0: the sweep that sees
                // 0 sees this expiry.
                self.nodes[s]
                    .expire_s
                    .store(now_s.saturating_add(timeout_s), Ordering::Release);
            }
            if self.words[s]
                .compare_exchange(w, w - ONE_STATE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                if conn {
                    let _ =
                        self.nodes[s]
                            .conn
                            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                n.checked_sub(1)
                            });
                }
                return true;
            }
        }
        false
    }

    /// A state of `key` reached ESTABLISHED (pf's `pf_src_connlimit`):
    /// counts the connection and its rate. True when the source is now
    /// over `max_conn` (0: no limit) or over `rate_limit` connections per
    /// `rate_secs` (0: no limit): the caller kills the state and, with
    /// `overload`, reports the source.
    pub fn establish(
        &self,
        key: &SourceKey,
        now_s: u32,
        max_conn: u32,
        rate_limit: u32,
        rate_secs: u32,
    ) -> bool {
        let Some(s) = self.find(key) else {
            return false;
        };
        let n = &self.nodes[s];
        let conn = n.conn.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let mut packed = n.rate.load(Ordering::Acquire);
        let mut count;
        loop {
            let next = add_threshold(packed, now_s, rate_secs);
            count = next as u32;
            match n
                .rate
                .compare_exchange_weak(packed, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(p) => packed = p,
            }
        }
        (max_conn != 0 && conn > max_conn)
            || (rate_limit != 0 && count > rate_limit.saturating_mul(THRESHOLD_MULT))
    }

    /// The slot of `key`'s first live node.
    fn find(&self, key: &SourceKey) -> Option<usize> {
        let hash = key.hash();
        let fp = fingerprint(hash);
        let home = self.home(hash);
        (0..WINDOW).map(|i| self.slot(home, i)).find(|&s| {
            let w = self.words[s].load(Ordering::Acquire);
            w & STATUS_MASK == LIVE && self.holds(s, w, fp, key)
        })
    }

    /// States counted against `key` (all its nodes).
    pub fn states_of(&self, key: &SourceKey) -> u32 {
        let hash = key.hash();
        let fp = fingerprint(hash);
        let home = self.home(hash);
        (0..WINDOW)
            .map(|i| self.slot(home, i))
            .map(|s| {
                let w = self.words[s].load(Ordering::Acquire);
                if self.holds(s, w, fp, key) {
                    states_of(w)
                } else {
                    0
                }
            })
            .sum()
    }

    /// Frees the nodes without states whose time is up among `max_slots`
    /// slots from `from`, calling `on_freed(owner)` with the creating
    /// rule's tag of each (its `max-src-nodes` place goes back). `force`
    /// frees them whatever their expiry (`dpfctl -K`, `-F Sources`).
    /// Returns the slot to continue from (0 after the last).
    pub fn sweep(
        &self,
        from: usize,
        max_slots: usize,
        now_s: u32,
        mut on_freed: impl FnMut(u32),
    ) -> usize {
        let n = self.words.len();
        let from = if from >= n { 0 } else { from };
        let end = from.saturating_add(max_slots).min(n);
        for s in from..end {
            let w = self.words[s].load(Ordering::Acquire);
            if w & STATUS_MASK != LIVE || states_of(w) != 0 {
                continue;
            }
            if self.nodes[s].expire_s.load(Ordering::Acquire) > now_s {
                continue;
            }
            let owner = self.nodes[s].owner.load(Ordering::Relaxed);
            if self.words[s]
                .compare_exchange(w, EMPTY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                let _ = self
                    .used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                on_freed(owner);
            }
        }
        if end >= n {
            0
        } else {
            end
        }
    }

    /// Slots in the table (what a full [`SourceTable::sweep`] walks).
    pub fn slots(&self) -> usize {
        self.words.len()
    }

    /// Marks the nodes `pred` selects to go as soon as they have no state
    /// (`dpfctl -K`: their states are detached by the workers). Returns how
    /// many it marked.
    pub fn expire_now(&self, mut pred: impl FnMut(&SourceKey) -> bool) -> u64 {
        let mut n = 0;
        for s in 0..self.words.len() {
            let w = self.words[s].load(Ordering::Acquire);
            if w & STATUS_MASK != LIVE {
                continue;
            }
            if self.nodes[s].key().is_some_and(|k| pred(&k)) {
                self.nodes[s].expire_s.store(0, Ordering::Release);
                n += 1;
            }
        }
        n
    }

    /// Every live node (listing; not for the packet path).
    pub fn nodes(&self) -> Vec<SourceNode> {
        let mut out = Vec::new();
        for s in 0..self.words.len() {
            let w = self.words[s].load(Ordering::Acquire);
            if w & STATUS_MASK != LIVE {
                continue;
            }
            let n = &self.nodes[s];
            let Some(key) = n.key() else { continue };
            let rate = n.rate.load(Ordering::Acquire);
            out.push(SourceNode {
                key,
                owner: n.owner.load(Ordering::Relaxed),
                states: states_of(w),
                conn: n.conn.load(Ordering::Relaxed),
                rate_count: rate as u32,
                rate_secs: n.rate_secs.load(Ordering::Relaxed),
                creation_s: n.creation_s.load(Ordering::Relaxed),
                expire_s: n.expire_s.load(Ordering::Relaxed),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn key(last: u8, scope: u32) -> SourceKey {
        SourceKey {
            scope,
            af: Af::Inet,
            addr: Addr::v4([192, 0, 2, last]),
        }
    }

    fn limits(max_states: u32) -> AttachLimits {
        AttachLimits {
            max_states,
            rate_secs: 30,
            owner: 7,
        }
    }

    #[test]
    fn a_node_counts_states_and_goes_src_track_after_the_last() {
        let t = SourceTable::new(100);
        let k = key(1, 7);
        for _ in 0..3 {
            t.attach(&k, 10, limits(3), None, 100).unwrap();
        }
        assert_eq!(t.states_of(&k), 3);
        assert_eq!(
            t.attach(&k, 10, limits(3), None, 100),
            Err(AttachError::States)
        );
        assert_eq!(t.len(), 1);
        for _ in 0..3 {
            assert!(t.release(&k, 20, 5, false));
        }
        assert!(!t.release(&k, 20, 5, false), "nothing left to give back");
        // Kept src.track seconds after its last state.
        let mut freed = Vec::new();
        t.sweep(0, t.slots(), 24, |o| freed.push(o));
        assert_eq!(t.len(), 1);
        t.sweep(0, t.slots(), 25, |o| freed.push(o));
        assert_eq!((t.len(), freed), (0, vec![7]));
        assert!(t.nodes().is_empty());
    }

    #[test]
    fn node_limits_of_the_rule_and_of_the_box() {
        let t = SourceTable::new(100);
        let rule = AtomicU32::new(0);
        t.attach(&key(1, 1), 0, limits(0), Some((&rule, 2)), 100)
            .unwrap();
        t.attach(&key(2, 1), 0, limits(0), Some((&rule, 2)), 100)
            .unwrap();
        assert_eq!(
            t.attach(&key(3, 1), 0, limits(0), Some((&rule, 2)), 100),
            Err(AttachError::Nodes)
        );
        // A known source is no new node.
        t.attach(&key(1, 1), 0, limits(0), Some((&rule, 2)), 100)
            .unwrap();
        assert_eq!(rule.load(Ordering::Relaxed), 2);
        // `set limit src-nodes 2` of the box, whatever the rule allows.
        assert_eq!(
            t.attach(&key(4, 2), 0, limits(0), None, 2),
            Err(AttachError::Full)
        );
        assert_eq!(
            rule.load(Ordering::Relaxed),
            2,
            "the rule's place given back"
        );
        // Global and per-rule nodes of one address are distinct.
        t.attach(&key(1, GLOBAL_SCOPE), 0, limits(0), None, 100)
            .unwrap();
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn connection_limits_follow_pfs_threshold() {
        let t = SourceTable::new(10);
        let k = key(9, 3);
        t.attach(&k, 100, limits(0), None, 10).unwrap();
        // max-src-conn-rate 5/30: five in a second pass, the sixth is over.
        for _ in 0..5 {
            assert!(!t.establish(&k, 100, 0, 5, 30));
        }
        assert!(t.establish(&k, 100, 0, 5, 30));
        // After the interval the rate starts again.
        assert!(!t.establish(&k, 131, 0, 5, 30));
        // max-src-conn: the connections counted, given back with states.
        let k2 = key(10, 3);
        t.attach(&k2, 0, limits(0), None, 10).unwrap();
        t.attach(&k2, 0, limits(0), None, 10).unwrap();
        assert!(!t.establish(&k2, 0, 1, 0, 0));
        assert!(t.establish(&k2, 0, 1, 0, 0));
        assert!(t.release(&k2, 0, 0, true));
        assert_eq!(t.nodes().iter().find(|n| n.key == k2).unwrap().conn, 1);
        assert!(t.release(&k2, 0, 0, true));
        assert_eq!(t.nodes().iter().find(|n| n.key == k2).unwrap().conn, 0);
    }

    #[test]
    fn expire_now_frees_a_node_at_its_last_state() {
        let t = SourceTable::new(10);
        let k = key(1, 1);
        t.attach(&k, 0, limits(0), None, 10).unwrap();
        assert_eq!(t.expire_now(|x| *x == k), 1);
        t.sweep(0, t.slots(), 0, |_| {});
        assert_eq!(t.len(), 1, "it still has a state");
        assert!(t.release(&k, 0, 0, false));
        t.sweep(0, t.slots(), 0, |_| {});
        assert!(t.is_empty());
    }

    #[test]
    fn memory_per_source_is_about_80_bytes() {
        let per = SourceTable::memory_bytes_for(100_000) as f64 / 100_000.0;
        assert!((80.0..=81.0).contains(&per), "{per}");
    }

    /// Workers attaching and releasing the same few sources at once:
    /// every state is counted exactly once, and every node goes once its
    /// states are gone.
    #[test]
    fn concurrent_workers_count_every_state_once() {
        let t = std::sync::Arc::new(SourceTable::new(64));
        let threads: Vec<_> = (0..4u8)
            .map(|w| {
                let t = std::sync::Arc::clone(&t);
                std::thread::spawn(move || {
                    let mut held: Vec<SourceKey> = Vec::new();
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(w);
                    for i in 0..20_000u32 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let k = key((x % 12) as u8, 1);
                        if !x.is_multiple_of(3) || held.is_empty() {
                            if t.attach(&k, i / 1000, limits(0), None, 64).is_ok() {
                                held.push(k);
                            }
                        } else {
                            let k = held.swap_remove((x as usize / 3) % held.len());
                            assert!(t.release(&k, i / 1000, 0, false));
                        }
                        if i.is_multiple_of(64) {
                            t.sweep(0, t.slots(), i / 1000, |_| {});
                        }
                    }
                    held
                })
            })
            .collect();
        let mut expected: HashMap<SourceKey, u32> = HashMap::new();
        for h in threads {
            for k in h.join().unwrap() {
                *expected.entry(k).or_default() += 1;
            }
        }
        for (k, n) in &expected {
            assert_eq!(t.states_of(k), *n, "{k:?}");
        }
        let total: u32 = t.nodes().iter().map(|n| n.states).sum();
        assert_eq!(total, expected.values().sum::<u32>());
        for (k, n) in expected {
            for _ in 0..n {
                assert!(t.release(&k, 100, 0, false));
            }
        }
        t.sweep(0, t.slots(), 100, |_| {});
        assert!(t.is_empty(), "{:?}", t.nodes());
    }

    proptest::proptest! {
        /// One worker's operations against a model: per-source counts,
        /// limits, and nodes freed only without states.
        #[test]
        fn the_table_matches_a_model(ops in proptest::collection::vec((0u8..3, 0u8..20, 0u32..4), 1..300)) {
            let t = SourceTable::new(16);
            let mut model: HashMap<u8, u32> = HashMap::new();
            let mut now = 0u32;
            for (op, src, max) in ops {
                let k = key(src, 5);
                match op {
                    0 => {
                        let before = model.get(&src).copied();
                        let r = t.attach(&k, now, limits(max), None, 16);
                        match before {
                            Some(n) if max != 0 && n >= max => {
                                proptest::prop_assert_eq!(r, Err(AttachError::States));
                            }
                            Some(_) => proptest::prop_assert_eq!(r, Ok(())),
                            None if r.is_ok() => {}
                            None => proptest::prop_assert_eq!(r, Err(AttachError::Full)),
                        }
                        if r.is_ok() {
                            *model.entry(src).or_default() += 1;
                        }
                    }
                    1 => {
                        let had = model.get(&src).copied().unwrap_or(0);
                        proptest::prop_assert_eq!(t.release(&k, now, 1, false), had > 0);
                        if had > 0 {
                            model.insert(src, had - 1);
                        }
                    }
                    _ => {
                        now += 1;
                        t.sweep(0, t.slots(), now, |_| {});
                        // A node without states for a second is gone.
                        model.retain(|_, n| *n > 0 || now == 0);
                    }
                }
                for (s, n) in &model {
                    proptest::prop_assert_eq!(t.states_of(&key(*s, 5)), *n);
                }
                proptest::prop_assert!(t.len() as usize >= model.values().filter(|n| **n > 0).count());
            }
        }
    }
}
