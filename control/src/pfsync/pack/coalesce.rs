//! The sender-side queue of one slice (`spec/pfsync.md` §5.1, §5.2, §1.2):
//! at most one pending message per state, coalesced by pf's rules, in a
//! fixed-capacity table allocated once.
//!
//! The queue holds *which* message each state needs, not its data: when the
//! slice is written ([`Coalescer::drain`]) the caller reads each state's
//! current data from the state table and pushes the message into a
//! [`super::Packer`] — "state data is read when the packet is written, so one
//! queued message always carries the latest values" (§5.2).
//!
//! Rules (§5.2):
//!
//! | event | nothing queued | INS_ACK | UPD_C | DEL_C | INS | UPD |
//! |---|---|---|---|---|---|---|
//! | [`insert`](Coalescer::insert) (new local state) | INS | INS | INS (race) | INS | — | INS |
//! | [`update`](Coalescer::update) (local change) | UPD_C | UPD_C | count | — | — | count |
//! | [`delete`](Coalescer::delete) | DEL_C | DEL_C | DEL_C | — | dropped | DEL_C |
//! | [`ins_ack`](Coalescer::ins_ack) (import with ACK) | INS_ACK, now | — | — | — | — | — |
//! | [`update_reply`](Coalescer::update_reply) (UPD_REQ) | UPD, now | UPD, now | UPD, now | — | — | — |
//!
//! "count": for TCP states only, a per-state counter grows and reaching
//! `maxupd` asks for an immediate flush; the counter restarts when an UPD_C
//! or DEL_C is queued. Any local update of a state pfsync touched less than
//! 2 s ago flushes immediately (the caller says so with `recently_synced`).
//!
//! Length accounting follows §1.2: the packet length starts at 40 and each
//! message adds its size plus 4 if its section was empty. An operation that
//! would push the length past the MTU is refused with
//! [`CoalesceError::PacketFull`] *before* changing anything: the caller
//! drains (sends) the slice and repeats the call, which is exactly pf's
//! "close the current packet first" (§1.2). A drained slice therefore
//! always fits one packet.
//!
//! Timer: the first message queued into an empty slice arms a 1-second
//! deadline that later messages do not extend ([`Coalescer::poll_at`]).
//!
//! dpf runs two slices (two `Coalescer`s), chosen with [`slice_of`] from the
//! wire key's hash so all messages about one state stay ordered. NOSYNC
//! states must never be queued (the caller filters them).

use std::collections::HashMap;

use dataplane::time::{Duration, Instant};

use super::super::wire::{Action, StateId, PFSYNC_MINPKT, SUBHEADER_LEN};
use super::{check_mtu, PackError};

/// Number of slices (§1.2).
pub const SLICES: usize = 2;
/// Delay between the first message queued into an empty slice and its
/// transmission (§1.2).
pub const SLICE_DELAY: Duration = Duration::from_secs(1);
/// A local update of a state pfsync modified less than this long ago is
/// flushed immediately (§5.2).
pub const PEER_INPUT_WINDOW: Duration = Duration::from_secs(2);
/// Default `maxupd` (§1).
pub const DEFAULT_MAXUPD: u8 = 128;

/// The slice of a state whose wire key hashes to `wire_key_hash`.
pub fn slice_of(wire_key_hash: u64) -> usize {
    (wire_key_hash % SLICES as u64) as usize
}

/// The message queued for a state, in section order (§1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Pending {
    /// INS_ACK: the peer holds a deferred packet.
    InsAck = 0,
    /// UPD_C: compressed update of a state the peer knows.
    UpdC = 1,
    /// DEL_C: the state is gone.
    DelC = 2,
    /// INS: full state, new to the peer.
    Ins = 3,
    /// UPD: full state (answer to UPD_REQ).
    Upd = 4,
}

impl Pending {
    /// In section order.
    pub const ALL: [Pending; 5] = [
        Pending::InsAck,
        Pending::UpdC,
        Pending::DelC,
        Pending::Ins,
        Pending::Upd,
    ];

    /// The wire action.
    pub const fn action(self) -> Action {
        match self {
            Pending::InsAck => Action::InsAck,
            Pending::UpdC => Action::UpdC,
            Pending::DelC => Action::DelC,
            Pending::Ins => Action::Ins,
            Pending::Upd => Action::Upd,
        }
    }
}

/// Whether the caller should write the slice now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// The slice timer ([`Coalescer::poll_at`]) will do.
    Later,
    /// Write the slice immediately.
    Now,
}

/// Why an operation was refused; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CoalesceError {
    /// The message would not fit the slice's packet: drain the slice, send
    /// it, then repeat the call.
    #[error("slice packet full: drain and retry")]
    PacketFull,
    /// The table is at capacity: the state cannot be queued (count it and
    /// resynchronise later).
    #[error("coalescing table full")]
    Capacity,
}

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    id: StateId,
    kind: Pending,
    updates: u8,
    prev: u32,
    next: u32,
}

/// One slice's pending messages.
#[derive(Debug, Clone)]
pub struct Coalescer {
    capacity: usize,
    mtu: usize,
    maxupd: u8,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<StateId, u32>,
    heads: [u32; 5],
    tails: [u32; 5],
    counts: [usize; 5],
    /// Running IP length of the packet the queue makes (§1.2).
    len: usize,
    deadline: Option<Instant>,
    flush_now: bool,
}

impl Coalescer {
    /// A slice holding at most `capacity` states, making packets of at most
    /// `mtu` IP bytes, flushing TCP updates after `maxupd` coalesced ones.
    pub fn new(capacity: usize, mtu: usize, maxupd: u8) -> Result<Coalescer, PackError> {
        check_mtu(mtu)?;
        let capacity = capacity.min(NIL as usize);
        Ok(Coalescer {
            capacity,
            mtu,
            maxupd,
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            index: HashMap::with_capacity(capacity),
            heads: [NIL; 5],
            tails: [NIL; 5],
            counts: [0; 5],
            len: PFSYNC_MINPKT,
            deadline: None,
            flush_now: false,
        })
    }

    /// Changes `maxupd` (0..=255; ifconfig's range).
    pub fn set_maxupd(&mut self, maxupd: u8) {
        self.maxupd = maxupd;
    }

    /// Number of queued states.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// IP length of the packet the queue would make now (§1.2).
    pub fn packet_len(&self) -> usize {
        self.len
    }

    /// The message queued for `id`, if any.
    pub fn pending(&self, id: StateId) -> Option<Pending> {
        let slot = *self.index.get(&id)?;
        self.slots.get(slot as usize).map(|s| s.kind)
    }

    /// When the slice must be written: now if a flush was requested, else
    /// the 1-second timer, or `None` when empty.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.is_empty() {
            None
        } else if self.flush_now {
            Some(Instant(0))
        } else {
            self.deadline
        }
    }

    /// Whether the slice should be written at `now`.
    pub fn needs_flush(&self, now: Instant) -> bool {
        self.poll_at().is_some_and(|at| at <= now)
    }

    /// A new local state (§5.2): queue INS.
    pub fn insert(&mut self, id: StateId, now: Instant) -> Result<Flush, CoalesceError> {
        match self.pending(id) {
            Some(Pending::Ins) => Ok(Flush::Later),
            _ => self.set(id, Pending::Ins, now, false),
        }
    }

    /// A local change of a state (§5.2). `is_tcp`: the wire key's protocol is
    /// TCP (only TCP updates count towards `maxupd`); `recently_synced`:
    /// pfsync modified the state less than [`PEER_INPUT_WINDOW`] ago.
    pub fn update(
        &mut self,
        id: StateId,
        is_tcp: bool,
        recently_synced: bool,
        now: Instant,
    ) -> Result<Flush, CoalesceError> {
        let flush = match self.pending(id) {
            Some(Pending::UpdC) | Some(Pending::Upd) => {
                let mut reached = false;
                if is_tcp {
                    if let Some(slot) = self.slot_mut(id) {
                        slot.updates = slot.updates.saturating_add(1);
                        reached = slot.updates >= self.maxupd;
                    }
                }
                if reached {
                    self.flush_now = true;
                    Flush::Now
                } else {
                    Flush::Later
                }
            }
            Some(Pending::Ins) => Flush::Later,
            Some(Pending::DelC) => return Ok(Flush::Later),
            Some(Pending::InsAck) | None => self.set(id, Pending::UpdC, now, false)?,
        };
        if recently_synced {
            self.flush_now = true;
            return Ok(Flush::Now);
        }
        Ok(flush)
    }

    /// A local state was removed (§5.2): DEL_C, or nothing at all if the
    /// peer never heard of it (INS still queued).
    pub fn delete(&mut self, id: StateId, now: Instant) -> Result<Flush, CoalesceError> {
        match self.pending(id) {
            Some(Pending::Ins) => {
                self.remove(id);
                Ok(Flush::Later)
            }
            Some(Pending::DelC) => Ok(Flush::Later),
            _ => self.set(id, Pending::DelC, now, false),
        }
    }

    /// A state was imported with the ACK flag (§5.2, §5.7): INS_ACK, sent
    /// immediately. A message already queued for the state is kept (it
    /// reaches the peer in the same packet).
    pub fn ins_ack(&mut self, id: StateId, now: Instant) -> Result<Flush, CoalesceError> {
        if self.pending(id).is_none() {
            self.set(id, Pending::InsAck, now, true)?;
        }
        self.flush_now = true;
        Ok(Flush::Now)
    }

    /// The peer asked for this state with UPD_REQ (§5.3): a full UPD, sent
    /// immediately, unless INS, UPD or DEL_C is already queued.
    pub fn update_reply(&mut self, id: StateId, now: Instant) -> Result<Flush, CoalesceError> {
        match self.pending(id) {
            Some(Pending::Ins) | Some(Pending::Upd) | Some(Pending::DelC) => Ok(Flush::Later),
            _ => self.set(id, Pending::Upd, now, true),
        }
    }

    /// Removes every queued message in section order, calling `f` for each
    /// (each section in queueing order), and disarms the timer.
    pub fn drain(&mut self, mut f: impl FnMut(Pending, StateId)) {
        for kind in Pending::ALL {
            let mut at = self.heads[kind as usize];
            while let Some(slot) = self.slots.get(at as usize) {
                f(kind, slot.id);
                at = slot.next;
            }
        }
        self.clear();
    }

    /// Drops everything (pfsync going down).
    pub fn clear(&mut self) {
        self.slots.clear();
        self.free.clear();
        self.index.clear();
        self.heads = [NIL; 5];
        self.tails = [NIL; 5];
        self.counts = [0; 5];
        self.len = PFSYNC_MINPKT;
        self.deadline = None;
        self.flush_now = false;
    }

    // -- internals ----------------------------------------------------------

    fn slot_mut(&mut self, id: StateId) -> Option<&mut Slot> {
        let at = *self.index.get(&id)?;
        self.slots.get_mut(at as usize)
    }

    /// Length contribution of adding one message of `kind`, given the
    /// section's count after a possible removal.
    fn cost(kind: Pending, count_in_section: usize) -> usize {
        let sub = if count_in_section == 0 {
            SUBHEADER_LEN
        } else {
            0
        };
        sub + kind.action().message_len()
    }

    /// Queues `kind` for `id`, replacing what was queued (moving it to the
    /// tail of the new section) and restarting its update counter.
    fn set(
        &mut self,
        id: StateId,
        kind: Pending,
        now: Instant,
        flush: bool,
    ) -> Result<Flush, CoalesceError> {
        let old = self.pending(id);
        // Length if the old message were removed.
        let mut len = self.len;
        let mut counts = self.counts;
        if let Some(old) = old {
            counts[old as usize] -= 1;
            len -= old.action().message_len();
            if counts[old as usize] == 0 {
                len -= SUBHEADER_LEN;
            }
        }
        let new_len = len + Self::cost(kind, counts[kind as usize]);
        let others = counts.iter().sum::<usize>() > 0;
        if new_len > self.mtu && others {
            return Err(CoalesceError::PacketFull);
        }
        if old.is_none() && self.index.len() >= self.capacity {
            return Err(CoalesceError::Capacity);
        }

        let at = match old {
            Some(_) => {
                let at = *self.index.get(&id).ok_or(CoalesceError::Capacity)?;
                self.unlink(at);
                at
            }
            None => {
                let slot = Slot {
                    id,
                    kind,
                    updates: 0,
                    prev: NIL,
                    next: NIL,
                };
                let at = match self.free.pop() {
                    Some(at) => {
                        if let Some(s) = self.slots.get_mut(at as usize) {
                            *s = slot;
                        }
                        at
                    }
                    None => {
                        self.slots.push(slot);
                        (self.slots.len() - 1) as u32
                    }
                };
                self.index.insert(id, at);
                at
            }
        };
        self.link_tail(at, kind);
        if let Some(s) = self.slots.get_mut(at as usize) {
            s.updates = 0;
        }
        self.len = new_len;
        if self.deadline.is_none() {
            self.deadline = Some(now + SLICE_DELAY);
        }
        if flush {
            self.flush_now = true;
            Ok(Flush::Now)
        } else {
            Ok(Flush::Later)
        }
    }

    fn remove(&mut self, id: StateId) {
        let Some(at) = self.index.remove(&id) else {
            return;
        };
        let kind = self.slots.get(at as usize).map(|s| s.kind);
        self.unlink(at);
        if let Some(kind) = kind {
            self.len -= kind.action().message_len();
            if self.counts[kind as usize] == 0 {
                self.len -= SUBHEADER_LEN;
            }
        }
        self.free.push(at);
        if self.index.is_empty() {
            self.deadline = None;
            self.flush_now = false;
        }
    }

    /// Takes slot `at` out of its section list.
    fn unlink(&mut self, at: u32) {
        let Some(&Slot {
            kind, prev, next, ..
        }) = self.slots.get(at as usize)
        else {
            return;
        };
        match self.slots.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.heads[kind as usize] = next,
        }
        match self.slots.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tails[kind as usize] = prev,
        }
        self.counts[kind as usize] -= 1;
    }

    /// Appends slot `at` to the `kind` section list.
    fn link_tail(&mut self, at: u32, kind: Pending) {
        let tail = self.tails[kind as usize];
        if let Some(s) = self.slots.get_mut(at as usize) {
            s.kind = kind;
            s.prev = tail;
            s.next = NIL;
        }
        match self.slots.get_mut(tail as usize) {
            Some(t) => t.next = at,
            None => self.heads[kind as usize] = at,
        }
        self.tails[kind as usize] = at;
        self.counts[kind as usize] += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(id: u64) -> StateId {
        StateId {
            id,
            creatorid: 0xabcd,
        }
    }
    const T0: Instant = Instant::from_secs(100);

    fn drained(c: &mut Coalescer) -> Vec<(Pending, u64)> {
        let mut v = Vec::new();
        c.drain(|k, id| v.push((k, id.id)));
        v
    }

    #[test]
    fn ins_then_upd_keeps_ins() {
        let mut c = Coalescer::new(16, 1500, 128).unwrap();
        assert_eq!(c.insert(sid(1), T0), Ok(Flush::Later));
        assert_eq!(c.update(sid(1), true, false, T0), Ok(Flush::Later));
        assert_eq!(c.pending(sid(1)), Some(Pending::Ins));
        assert_eq!(c.packet_len(), 40 + 4 + 264);
        assert_eq!(drained(&mut c), vec![(Pending::Ins, 1)]);
        assert!(c.is_empty());
        assert_eq!(c.packet_len(), 40);
    }

    #[test]
    fn del_removes_pending_ins_entirely() {
        let mut c = Coalescer::new(16, 1500, 128).unwrap();
        c.insert(sid(1), T0).unwrap();
        c.delete(sid(1), T0).unwrap();
        assert_eq!(c.pending(sid(1)), None);
        assert!(c.is_empty());
        assert_eq!(c.packet_len(), 40);
        assert_eq!(c.poll_at(), None);
        assert_eq!(drained(&mut c), vec![]);
    }

    #[test]
    fn del_replaces_pending_upd_c_and_later_updates_are_ignored() {
        let mut c = Coalescer::new(16, 1500, 128).unwrap();
        c.update(sid(1), false, false, T0).unwrap();
        assert_eq!(c.pending(sid(1)), Some(Pending::UpdC));
        c.delete(sid(1), T0).unwrap();
        assert_eq!(c.pending(sid(1)), Some(Pending::DelC));
        assert_eq!(c.packet_len(), 40 + 4 + 12);
        c.update(sid(1), false, false, T0).unwrap();
        c.insert(sid(2), T0).unwrap();
        assert_eq!(drained(&mut c), vec![(Pending::DelC, 1), (Pending::Ins, 2)]);
    }

    #[test]
    fn update_of_known_state_is_upd_c_and_insert_race_replaces_it() {
        let mut c = Coalescer::new(16, 1500, 128).unwrap();
        c.update(sid(1), true, false, T0).unwrap();
        assert_eq!(c.pending(sid(1)), Some(Pending::UpdC));
        c.insert(sid(1), T0).unwrap();
        assert_eq!(c.pending(sid(1)), Some(Pending::Ins));
        assert_eq!(c.packet_len(), 40 + 4 + 264);
    }

    #[test]
    fn ins_ack_is_immediate_and_replaced_by_upd_c() {
        let mut c = Coalescer::new(16, 1500, 128).unwrap();
        assert_eq!(c.ins_ack(sid(1), T0), Ok(Flush::Now));
        assert!(c.needs_flush(T0));
        c.update(sid(1), false, false, T0).unwrap();
        assert_eq!(c.pending(sid(1)), Some(Pending::UpdC));
        assert_eq!(c.packet_len(), 40 + 4 + 84);
    }

    #[test]
    fn maxupd_counts_tcp_only_and_flushes() {
        let mut c = Coalescer::new(16, 1500, 3).unwrap();
        assert_eq!(c.update(sid(1), true, false, T0), Ok(Flush::Later));
        assert_eq!(c.update(sid(1), true, false, T0), Ok(Flush::Later));
        assert_eq!(c.update(sid(1), true, false, T0), Ok(Flush::Later));
        assert!(!c.needs_flush(T0));
        assert_eq!(c.update(sid(1), true, false, T0), Ok(Flush::Now));
        assert!(c.needs_flush(T0));
        c.drain(|_, _| {});
        for _ in 0..10 {
            assert_eq!(c.update(sid(2), false, false, T0), Ok(Flush::Later));
        }
        assert!(!c.needs_flush(T0 + Duration::from_millis(999)));
        assert!(c.needs_flush(T0 + SLICE_DELAY));
    }

    #[test]
    fn recent_peer_input_flushes_immediately() {
        let mut c = Coalescer::new(16, 1500, 128).unwrap();
        assert_eq!(c.update(sid(1), true, true, T0), Ok(Flush::Now));
        assert_eq!(c.poll_at(), Some(Instant(0)));
    }

    #[test]
    fn update_reply_rules() {
        let mut c = Coalescer::new(16, 1500, 128).unwrap();
        c.update(sid(1), false, false, T0).unwrap();
        assert_eq!(c.update_reply(sid(1), T0), Ok(Flush::Now));
        assert_eq!(c.pending(sid(1)), Some(Pending::Upd));
        c.insert(sid(2), T0).unwrap();
        assert_eq!(c.update_reply(sid(2), T0), Ok(Flush::Later));
        assert_eq!(c.pending(sid(2)), Some(Pending::Ins));
    }

    #[test]
    fn timer_is_not_extended() {
        let mut c = Coalescer::new(16, 1500, 128).unwrap();
        c.update(sid(1), false, false, T0).unwrap();
        c.update(sid(2), false, false, T0 + Duration::from_millis(600))
            .unwrap();
        assert_eq!(c.poll_at(), Some(T0 + SLICE_DELAY));
        c.drain(|_, _| {});
        assert_eq!(c.poll_at(), None);
        c.update(sid(3), false, false, T0 + Duration::from_secs(5))
            .unwrap();
        assert_eq!(c.poll_at(), Some(T0 + Duration::from_secs(6)));
    }

    #[test]
    fn full_packet_refuses_without_change_then_retry_after_drain() {
        // 1500: 5 INS fit (40 + 4 + 5*264 = 1364); a 6th does not.
        let mut c = Coalescer::new(64, 1500, 128).unwrap();
        for i in 0..5 {
            c.insert(sid(i), T0).unwrap();
        }
        assert_eq!(c.insert(sid(5), T0), Err(CoalesceError::PacketFull));
        assert_eq!(c.pending(sid(5)), None);
        assert_eq!(c.len(), 5);
        // A small DEL_C still fits (1364 + 16 <= 1500).
        assert_eq!(c.delete(sid(77), T0), Ok(Flush::Later));
        let first = drained(&mut c);
        assert_eq!(first.len(), 6);
        assert_eq!(first[0], (Pending::DelC, 77));
        assert_eq!(c.insert(sid(5), T0), Ok(Flush::Later));
        assert_eq!(drained(&mut c), vec![(Pending::Ins, 5)]);
    }

    #[test]
    fn capacity_is_fixed_and_slots_are_reused() {
        let mut c = Coalescer::new(2, 9000, 128).unwrap();
        c.update(sid(1), false, false, T0).unwrap();
        c.update(sid(2), false, false, T0).unwrap();
        assert_eq!(
            c.update(sid(3), false, false, T0),
            Err(CoalesceError::Capacity)
        );
        // Replacing an existing entry needs no new slot.
        assert!(c.delete(sid(2), T0).is_ok());
        c.insert(sid(9), T0).unwrap_err();
        c.drain(|_, _| {});
        for round in 0..5u64 {
            c.insert(sid(100 + round), T0).unwrap();
            c.delete(sid(100 + round), T0).unwrap();
        }
        assert!(c.is_empty());
        c.insert(sid(1), T0).unwrap();
        c.insert(sid(2), T0).unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn drain_order_is_section_then_queue_order() {
        let mut c = Coalescer::new(16, 9000, 128).unwrap();
        c.insert(sid(1), T0).unwrap();
        c.update(sid(2), false, false, T0).unwrap();
        c.delete(sid(3), T0).unwrap();
        c.update(sid(4), false, false, T0).unwrap();
        c.ins_ack(sid(5), T0).unwrap();
        c.update_reply(sid(6), T0).unwrap();
        c.update(sid(5), false, false, T0).unwrap(); // INS_ACK -> UPD_C at the tail
        assert_eq!(
            drained(&mut c),
            vec![
                (Pending::UpdC, 2),
                (Pending::UpdC, 4),
                (Pending::UpdC, 5),
                (Pending::DelC, 3),
                (Pending::Ins, 1),
                (Pending::Upd, 6),
            ]
        );
    }
}
