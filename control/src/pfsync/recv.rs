//! What received pfsync messages do (`spec/pfsync.md` §5.3, §5.3.1, §5.4),
//! as pure functions over a [`StateStore`] the state table implements.
//!
//! [`Receiver::process`] walks an accepted packet (see
//! [`super::wire::frame::receive_frame`]) and, per message, validates it,
//! looks the state up, imports, merges or deletes through the store, counts
//! into [`PfsyncStats`] and reports everything that needs sending or timing
//! as an [`Effect`] — it never sends. The sync thread maps effects onto the
//! coalescer, the bulk machines and the deferral area:
//!
//! | effect | sync thread does |
//! |---|---|
//! | [`Effect::SendInsAck`] | `Coalescer::ins_ack` (flush now) |
//! | [`Effect::Acknowledged`] | `Deferrals::ack`, transmit the packet |
//! | [`Effect::LocalUpdate`] | `Coalescer::update(.., recently_synced = true, ..)` |
//! | [`Effect::SendUpdate`] | `Coalescer::update_reply` |
//! | [`Effect::RequestUpdates`] | one UPD_REQ packet now (`PacketWriter`) |
//! | [`Effect::BulkRequested`] | `BulkSender::request` |
//! | [`Effect::BulkStatus`] | `BulkRequester::handle(BusStart / BusEnd)` |
//!
//! # What a [`StateStore`] must guarantee
//!
//! * `find`/`merge`/`delete` address a state by the exact pair
//!   `(id, creatorid)` (§4); creatorid compares as 4 bytes.
//! * `insert` attaches the state to the default rule (§5.4 step 4), recomputes
//!   key hashes locally, creates a second (stack) key only when
//!   [`Import::stack_key_differs`], ignores the wire counters (already zero),
//!   marks the state "from pfsync" so it is not echoed, and fails with
//!   [`InsertError::Exists`] on an id or key collision, with
//!   [`InsertError::NoMemory`] when the table is full.
//! * `merge` applies a [`MergeDecision`] atomically: it copies the accepted
//!   peers (their scrub fields only if [`ScrubRepr::is_valid`], allocating
//!   scrub memory if needed), sets last-activity to `now` and the timeout if
//!   `refresh`, and **always** records "last updated by pfsync = now" — the
//!   sender side uses that for its 2-second fast path (§5.2).
//! * `delete` and `clear` set NOSYNC before removing, so no DEL_C is echoed
//!   back to the peer.
//! * No method sends anything or calls back into the receiver.

use dataplane::time::{Duration, Instant};
use dataplane::timeouts::{TimeoutClass, Timeouts};

use super::stats::{Counter, PfsyncStats};
use super::wire::frame::RxPacket;
use super::wire::state::{
    state_flags, AF_INET, AF_INET6, PEER_STATE_MAX, PEER_STATE_PROXY_SRC, PFTM_MAX,
};
use super::wire::{Action, BusStatus, Message, PeerRepr, ScrubRepr, StateId, StateRepr};

/// `SEQ_GT(a, b)`: `a` is after `b` modulo 2³².
#[inline]
pub fn seq_gt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The receiver's timeout class of PFTM index `pftm`, for the state
/// timeouts dpf has (0..=13; PFTM and [`TimeoutClass`] share numbering).
pub fn timeout_class(pftm: u8) -> Option<TimeoutClass> {
    TimeoutClass::ALL.get(usize::from(pftm)).copied()
}

/// §5.3 validity check shared by INS, UPD and UPD_C.
pub fn valid_update(timeout: u8, src: &PeerRepr, dst: &PeerRepr) -> bool {
    timeout < PFTM_MAX && src.state <= PEER_STATE_MAX && dst.state <= PEER_STATE_MAX
}

fn valid_af(af: u8) -> bool {
    af == AF_INET || af == AF_INET6
}

/// §5.3 validity check of INS: [`valid_update`] plus direction ≤ 2, the
/// state's family, and each non-zero key family.
pub fn valid_insert(s: &StateRepr) -> bool {
    valid_update(s.timeout, &s.src, &s.dst)
        && s.direction <= 2
        && valid_af(s.af)
        && s.key.iter().all(|k| k.af == 0 || valid_af(k.af))
}

/// The local facts a merge and an UPD_REQ answer need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSync {
    /// IP protocol of the wire key.
    pub proto: u8,
    /// Local source peer.
    pub src: PeerRepr,
    /// Local destination peer.
    pub dst: PeerRepr,
    /// PFTM index of the local state.
    pub timeout: u8,
    /// The state must never be synchronised.
    pub nosync: bool,
}

/// What to apply to a known state on UPD / UPD_C (§5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeDecision {
    /// The received source peer, if accepted.
    pub src: Option<PeerRepr>,
    /// The received destination peer, if accepted.
    pub dst: Option<PeerRepr>,
    /// At least one side accepted: set last-activity to now and adopt
    /// `timeout`.
    pub refresh: bool,
    /// The received timeout (adopt it if `refresh`).
    pub timeout: u8,
    /// At least one side was stale: count `stale` and send our newer view.
    pub stale: bool,
}

/// Judges an update against the local state (§5.3.1).
pub fn merge_decision(
    local: &LocalSync,
    src: &PeerRepr,
    dst: &PeerRepr,
    timeout: u8,
) -> MergeDecision {
    let (src_stale, dst_stale) = if local.proto == dataplane::flow::proto::TCP {
        // A TCP side never moves backwards, except that a synproxy state
        // (11/12) may be replaced by a real one; equal states compare seqlo.
        let src_stale = (local.src.state > src.state
            && (local.src.state < PEER_STATE_PROXY_SRC || src.state >= PEER_STATE_PROXY_SRC))
            || (local.src.state == src.state && seq_gt(local.src.seqlo, src.seqlo));
        let dst_stale = local.dst.state > dst.state
            || (local.dst.state == dst.state && seq_gt(local.dst.seqlo, dst.seqlo));
        (src_stale, dst_stale)
    } else {
        (local.src.state > src.state, local.dst.state > dst.state)
    };
    MergeDecision {
        src: (!src_stale).then_some(*src),
        dst: (!dst_stale).then_some(*dst),
        refresh: !(src_stale && dst_stale),
        timeout,
        stale: src_stale || dst_stale,
    }
}

/// A state ready to be inserted (§5.4), derived from a received full state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Import {
    /// The received state with: ACK cleared from `state_flags`, key
    /// families of 0 replaced by the state's, packet and byte counters
    /// zeroed (they are not imported).
    pub state: StateRepr,
    /// The sender holds a deferred packet: answer with INS_ACK.
    pub ack_requested: bool,
    /// Local creation time (`now − creation`).
    pub created_at: Instant,
    /// Local last-activity time, so the remaining lifetime equals the
    /// sender's (§5.4 step 7).
    pub last_activity: Instant,
}

impl Import {
    /// Whether wire and stack keys differ (two keys are needed).
    pub fn stack_key_differs(&self) -> bool {
        self.state.key[0] != self.state.key[1]
    }
    /// The stack key's protocol: ICMP and ICMPv6 swap under address-family
    /// translation (§5.4 step 5).
    pub fn stack_proto(&self) -> u8 {
        use dataplane::flow::proto::{ICMP, ICMPV6};
        if self.state.key[0].af == self.state.key[1].af {
            return self.state.proto;
        }
        match self.state.proto {
            ICMP => ICMPV6,
            ICMPV6 => ICMP,
            p => p,
        }
    }
}

/// Why a state cannot be imported (§5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// creatorid 0 is rejected (step 1).
    #[error("creatorid 0")]
    ZeroCreator,
    /// State family 0: skipped (step 3).
    #[error("no address family")]
    NoFamily,
    /// A family other than IPv4/IPv6 (step 5).
    #[error("unsupported address family")]
    BadFamily,
}

/// Prepares the import of `s` at `now` with the receiver's `timeouts`
/// (§5.4 steps 1, 3, 5–8; the store does 2, 4 and 9).
pub fn prepare_import(
    s: &StateRepr,
    now: Instant,
    timeouts: &Timeouts,
) -> Result<Import, ImportError> {
    if s.creatorid == 0 {
        return Err(ImportError::ZeroCreator);
    }
    if s.af == 0 {
        return Err(ImportError::NoFamily);
    }
    if !valid_af(s.af) {
        return Err(ImportError::BadFamily);
    }
    let mut state = *s;
    for key in &mut state.key {
        if key.af == 0 {
            key.af = s.af;
        }
        if !valid_af(key.af) {
            return Err(ImportError::BadFamily);
        }
    }
    let ack_requested = state.state_flags & state_flags::ACK != 0;
    state.state_flags &= !state_flags::ACK;
    state.packets = [0; 2];
    state.bytes = [0; 2];

    let created_at = now - Duration::from_secs(u64::from(s.creation_s));
    // Remaining lifetime = the sender's: last_activity = now − (T − expire).
    // Without a receiver timeout for the index, or with expire 0, the state
    // starts a full fresh lifetime.
    let last_activity = match timeout_class(s.timeout) {
        Some(class) if s.expire_s != 0 => {
            let t = timeouts.secs(class);
            now - Duration::from_secs(u64::from(t.saturating_sub(s.expire_s)))
        }
        _ => now,
    };
    Ok(Import {
        state,
        ack_requested,
        created_at,
        last_activity,
    })
}

/// Why the store refused an insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Same id or key already present (EEXIST).
    #[error("state exists")]
    Exists,
    /// The table (or its shard, or the import queue) is full.
    #[error("no memory")]
    NoMemory,
    /// Anything else (unknown interface...): skipped.
    #[error("insert refused")]
    Refused,
}

/// The state table as the receiver sees it. See the module doc for the
/// guarantees an implementation must give.
pub trait StateStore {
    /// Looks up `(id, creatorid)`.
    fn find(&self, id: StateId) -> Option<LocalSync>;
    /// Inserts an imported state.
    fn insert(&mut self, import: &Import) -> Result<(), InsertError>;
    /// Applies a merge decision to a known state.
    fn merge(&mut self, id: StateId, decision: &MergeDecision, now: Instant);
    /// Removes a state without echoing a DEL_C; `false` if unknown.
    fn delete(&mut self, id: StateId) -> bool;
    /// Removes every state of `creatorid` (bound to `ifname`, if given)
    /// without echo; returns how many.
    fn clear(&mut self, creatorid: u32, ifname: Option<&[u8]>) -> usize;
    /// Whether an interface (or group) of that name exists.
    fn interface_exists(&self, ifname: &[u8]) -> bool;
}

/// Something the sync thread must do because of a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect<'a> {
    /// An imported state asked for an INS_ACK: queue it and flush now.
    SendInsAck(StateId),
    /// The peer acknowledged or updated the state: release its deferred
    /// packet, if one is held.
    Acknowledged(StateId),
    /// A merge found our data newer: treat as a local update of the state
    /// (it was just touched by pfsync, so it is flushed at once).
    LocalUpdate(StateId),
    /// The peer asked for this state: queue a full UPD and flush now.
    SendUpdate(StateId),
    /// Send one UPD_REQ packet listing these states now.
    RequestUpdates(&'a [StateId]),
    /// The peer asked for a bulk update.
    BulkRequested,
    /// A BUS START or END arrived.
    BulkStatus(BusStatus),
}

/// Most UPD_C messages one packet can carry (65535-byte datagram).
const MAX_UNKNOWN: usize = u16::MAX as usize / super::wire::msg::UPD_C_LEN + 1;

/// Processes received packets; holds scratch space allocated once.
#[derive(Debug, Clone)]
pub struct Receiver {
    timeouts: Timeouts,
    unknown: Vec<StateId>,
}

impl Receiver {
    /// A receiver using `timeouts` for imported states' lifetimes.
    pub fn new(timeouts: Timeouts) -> Receiver {
        Receiver {
            timeouts,
            unknown: Vec::with_capacity(MAX_UNKNOWN),
        }
    }

    /// Replaces the timeouts (ruleset reload).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// Processes every message of an accepted packet (§2.3, §5.3).
    pub fn process<S: StateStore + ?Sized>(
        &mut self,
        packet: &RxPacket<'_>,
        store: &mut S,
        now: Instant,
        stats: &mut PfsyncStats,
        mut effects: impl FnMut(Effect<'_>),
    ) {
        for section in packet.walker() {
            let section = match section {
                Ok(s) => s,
                Err(e) => {
                    stats.incr(e.counter());
                    break;
                }
            };
            let Some(action) = section.action() else {
                continue; // skipped section (§2.3)
            };
            match action {
                Action::Bus => {
                    // §5.3: only the first message is examined.
                    if let Some(Message::Bus(bus)) = section.first() {
                        if let Some(status) = bus.bus_status() {
                            effects(Effect::BulkStatus(status));
                        }
                    }
                }
                Action::Ins => {
                    for msg in section.messages() {
                        if let Message::Ins(s) = msg {
                            if self.ins(&s, store, now, stats, &mut effects).is_err() {
                                break; // out of memory: rest of the subheader dropped
                            }
                        }
                    }
                }
                Action::UpdC => {
                    self.unknown.clear();
                    for msg in section.messages() {
                        if let Message::UpdC(u) = msg {
                            self.upd_c(&u, store, now, stats, &mut effects);
                        }
                    }
                    if !self.unknown.is_empty() {
                        // §5.3: one UPD_REQ packet, reverse order of arrival.
                        self.unknown.reverse();
                        effects(Effect::RequestUpdates(&self.unknown));
                    }
                }
                _ => {
                    for msg in section.messages() {
                        self.other(&msg, store, now, stats, &mut effects);
                    }
                }
            }
        }
    }

    /// INS (§5.3): `Err` only when the store is out of memory.
    fn ins<S: StateStore + ?Sized>(
        &mut self,
        s: &StateRepr,
        store: &mut S,
        now: Instant,
        stats: &mut PfsyncStats,
        effects: &mut impl FnMut(Effect<'_>),
    ) -> Result<(), InsertError> {
        if !valid_insert(s) {
            stats.incr(Counter::Badval);
            return Ok(());
        }
        let Ok(import) = prepare_import(s, now, &self.timeouts) else {
            return Ok(()); // §5.4: rejected or skipped silently
        };
        match store.insert(&import) {
            Ok(()) => {
                if import.ack_requested {
                    effects(Effect::SendInsAck(s.state_id()));
                }
                Ok(())
            }
            Err(InsertError::NoMemory) => Err(InsertError::NoMemory),
            Err(_) => Ok(()),
        }
    }

    fn upd_c<S: StateStore + ?Sized>(
        &mut self,
        u: &super::wire::UpdCRepr,
        store: &mut S,
        now: Instant,
        stats: &mut PfsyncStats,
        effects: &mut impl FnMut(Effect<'_>),
    ) {
        if !valid_update(u.timeout, &u.src, &u.dst) {
            stats.incr(Counter::Badval);
            return;
        }
        let id = u.state_id();
        match store.find(id) {
            Some(local) => merge(
                store, id, &local, &u.src, &u.dst, u.timeout, now, stats, effects,
            ),
            None => {
                if self.unknown.len() < self.unknown.capacity() {
                    self.unknown.push(id);
                }
            }
        }
    }

    fn other<S: StateStore + ?Sized>(
        &mut self,
        msg: &Message,
        store: &mut S,
        now: Instant,
        stats: &mut PfsyncStats,
        effects: &mut impl FnMut(Effect<'_>),
    ) {
        match msg {
            Message::Clr(c) => {
                let name = c.ifname_bytes();
                if name.is_empty() {
                    store.clear(c.creatorid, None);
                } else if store.interface_exists(name) {
                    store.clear(c.creatorid, Some(name));
                }
            }
            Message::InsAck(id) => effects(Effect::Acknowledged(*id)),
            Message::Upd(s) => {
                if !valid_update(s.timeout, &s.src, &s.dst) {
                    stats.incr(Counter::Badval);
                    return;
                }
                let id = s.state_id();
                match store.find(id) {
                    Some(local) => merge(
                        store, id, &local, &s.src, &s.dst, s.timeout, now, stats, effects,
                    ),
                    None => {
                        let inserted = prepare_import(s, now, &self.timeouts)
                            .ok()
                            .and_then(|import| store.insert(&import).ok().map(|()| import));
                        match inserted {
                            Some(import) if import.ack_requested => effects(Effect::SendInsAck(id)),
                            Some(_) => {}
                            None => stats.incr(Counter::Badstate),
                        }
                    }
                }
            }
            Message::UpdReq(id) => {
                if id.is_bulk_request() {
                    effects(Effect::BulkRequested);
                    return;
                }
                match store.find(*id) {
                    Some(local) if !local.nosync && local.timeout < PFTM_MAX => {
                        effects(Effect::SendUpdate(*id))
                    }
                    _ => stats.incr(Counter::Badstate),
                }
            }
            Message::Del(s) => {
                if !store.delete(s.state_id()) {
                    stats.incr(Counter::Badstate);
                }
            }
            Message::DelC(id) => {
                if !store.delete(*id) {
                    stats.incr(Counter::Badstate);
                }
            }
            // dpf has no IPsec: TDB is parsed and ignored (§5.8).
            Message::Tdb(_) => {}
            // Handled per section in `process`.
            Message::Ins(_) | Message::UpdC(_) | Message::Bus(_) => {}
        }
    }
}

/// §5.3.1 for UPD and UPD_C on a known state.
#[allow(clippy::too_many_arguments)]
fn merge<S: StateStore + ?Sized>(
    store: &mut S,
    id: StateId,
    local: &LocalSync,
    src: &PeerRepr,
    dst: &PeerRepr,
    timeout: u8,
    now: Instant,
    stats: &mut PfsyncStats,
    effects: &mut impl FnMut(Effect<'_>),
) {
    let decision = merge_decision(local, src, dst, timeout);
    store.merge(id, &decision, now);
    // An update counts as acknowledgement of a deferred packet (§5.7).
    effects(Effect::Acknowledged(id));
    if decision.stale {
        stats.incr(Counter::Stale);
        effects(Effect::LocalUpdate(id));
    }
}

/// The scrub data a merge copies for one side, if the sender had any.
pub fn scrub_to_copy(peer: &PeerRepr) -> Option<ScrubRepr> {
    peer.scrub.is_valid().then_some(peer.scrub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pfsync::pack::PacketWriter;
    use crate::pfsync::wire::frame::{receive_frame, LinkParams, RxContext};
    use crate::pfsync::wire::msg::{ifname_from_str, ClrRepr};
    use crate::pfsync::wire::state::tests::example_state;
    use crate::pfsync::wire::{BusRepr, UpdCRepr, PFSYNC_GROUP};
    use std::collections::HashMap;

    const NOW: Instant = Instant::from_secs(10_000);

    #[derive(Default)]
    struct FakeStore {
        states: HashMap<StateId, LocalSync>,
        inserted: Vec<Import>,
        merged: Vec<(StateId, MergeDecision)>,
        deleted: Vec<StateId>,
        cleared: Vec<(u32, Option<Vec<u8>>)>,
        insert_results: Vec<Result<(), InsertError>>,
    }

    impl StateStore for FakeStore {
        fn find(&self, id: StateId) -> Option<LocalSync> {
            self.states.get(&id).copied()
        }
        fn insert(&mut self, import: &Import) -> Result<(), InsertError> {
            let r = if self.insert_results.is_empty() {
                Ok(())
            } else {
                self.insert_results.remove(0)
            };
            if r.is_ok() {
                self.inserted.push(*import);
            }
            r
        }
        fn merge(&mut self, id: StateId, decision: &MergeDecision, _now: Instant) {
            self.merged.push((id, *decision));
        }
        fn delete(&mut self, id: StateId) -> bool {
            self.deleted.push(id);
            self.states.remove(&id).is_some()
        }
        fn clear(&mut self, creatorid: u32, ifname: Option<&[u8]>) -> usize {
            self.cleared.push((creatorid, ifname.map(|n| n.to_vec())));
            0
        }
        fn interface_exists(&self, ifname: &[u8]) -> bool {
            ifname == b"em0"
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Eff {
        InsAck(u64),
        Ack(u64),
        Local(u64),
        Upd(u64),
        Req(Vec<u64>),
        Bulk,
        Bus(BusStatus),
    }

    fn frame(msgs: &[Message]) -> Vec<u8> {
        let link = LinkParams::new([2; 6], [10, 0, 0, 2], PFSYNC_GROUP, None).unwrap();
        let mut w = PacketWriter::new(9000, link, 1).unwrap();
        for m in msgs {
            w.push(m).unwrap();
        }
        w.finish().unwrap().to_vec()
    }

    fn run(store: &mut FakeStore, frame: &[u8]) -> (Vec<Eff>, PfsyncStats) {
        let ctx = RxContext {
            pf_running: true,
            pfsync_up: true,
            on_syncdev: true,
        };
        let mut stats = PfsyncStats::default();
        let p = receive_frame(frame, &ctx, &mut stats).unwrap();
        let mut out = Vec::new();
        let mut rx = Receiver::new(Timeouts::default());
        rx.process(&p, store, NOW, &mut stats, |e| {
            out.push(match e {
                Effect::SendInsAck(id) => Eff::InsAck(id.id),
                Effect::Acknowledged(id) => Eff::Ack(id.id),
                Effect::LocalUpdate(id) => Eff::Local(id.id),
                Effect::SendUpdate(id) => Eff::Upd(id.id),
                Effect::RequestUpdates(ids) => Eff::Req(ids.iter().map(|i| i.id).collect()),
                Effect::BulkRequested => Eff::Bulk,
                Effect::BulkStatus(s) => Eff::Bus(s),
            })
        });
        (out, stats)
    }

    fn tcp_local(src_state: u8, src_seqlo: u32, dst_state: u8, dst_seqlo: u32) -> LocalSync {
        let s = example_state();
        LocalSync {
            proto: 6,
            src: PeerRepr {
                state: src_state,
                seqlo: src_seqlo,
                ..s.src
            },
            dst: PeerRepr {
                state: dst_state,
                seqlo: dst_seqlo,
                ..s.dst
            },
            timeout: 2,
            nosync: false,
        }
    }

    fn peer(state: u8, seqlo: u32) -> PeerRepr {
        PeerRepr {
            state,
            seqlo,
            ..PeerRepr::default()
        }
    }

    #[test]
    fn seq_gt_wraps() {
        assert!(seq_gt(5, 3));
        assert!(!seq_gt(3, 5));
        assert!(seq_gt(2, 0xffff_fff0));
        assert!(!seq_gt(7, 7));
    }

    #[test]
    fn merge_rules_tcp() {
        // Local ahead in state on src: src stale, dst accepted.
        let d = merge_decision(&tcp_local(4, 100, 4, 100), &peer(3, 500), &peer(4, 200), 2);
        assert_eq!(d.src, None);
        assert_eq!(d.dst, Some(peer(4, 200)));
        assert!(d.refresh && d.stale);
        // Synproxy local state is replaced by a real one.
        let d = merge_decision(&tcp_local(11, 0, 4, 0), &peer(4, 1), &peer(4, 1), 2);
        assert!(d.src.is_some() && !d.stale);
        // Equal states: seqlo decides (modulo 2^32).
        let d = merge_decision(
            &tcp_local(4, 10, 4, 2),
            &peer(4, 0xffff_fff0),
            &peer(4, 1),
            3,
        );
        assert_eq!((d.src, d.dst.is_some()), (None, false));
        assert!(!d.refresh && d.stale);
        assert_eq!(d.timeout, 3);
        // dst side has no synproxy exception.
        let d = merge_decision(&tcp_local(4, 0, 11, 0), &peer(4, 0), &peer(4, 0), 2);
        assert!(d.dst.is_none());
    }

    #[test]
    fn merge_rules_other_protocols() {
        let mut local = tcp_local(2, 0, 1, 0);
        local.proto = 17;
        let d = merge_decision(&local, &peer(1, 0), &peer(2, 0), 8);
        assert_eq!(d.src, None);
        assert_eq!(d.dst, Some(peer(2, 0)));
        // Sequence numbers do not matter for UDP.
        let d = merge_decision(&local, &peer(2, 0), &peer(1, 0), 8);
        assert!(!d.stale);
    }

    #[test]
    fn ins_imports_with_lifetime_ack_and_no_counters() {
        let mut s = example_state();
        s.expire_s = 86400 - 100;
        s.state_flags = state_flags::ACK | state_flags::SLOPPY;
        let mut store = FakeStore::default();
        let (eff, stats) = run(&mut store, &frame(&[Message::Ins(s)]));
        assert_eq!(eff, vec![Eff::InsAck(s.id)]);
        assert_eq!(stats.get(Counter::Ipackets), 1);
        let imp = &store.inserted[0];
        assert!(imp.ack_requested);
        assert_eq!(imp.state.state_flags, state_flags::SLOPPY);
        assert_eq!(imp.state.packets, [0, 0]);
        assert_eq!(imp.state.bytes, [0, 0]);
        assert_eq!(imp.created_at, NOW - Duration::from_secs(30));
        assert_eq!(imp.last_activity, NOW - Duration::from_secs(100));
        assert!(!imp.stack_key_differs());
        assert_eq!(imp.stack_proto(), 6);
    }

    #[test]
    fn prepare_import_rules() {
        let t = Timeouts::default();
        let mut s = example_state();
        s.creatorid = 0;
        assert_eq!(prepare_import(&s, NOW, &t), Err(ImportError::ZeroCreator));
        let mut s = example_state();
        s.af = 0;
        assert_eq!(prepare_import(&s, NOW, &t), Err(ImportError::NoFamily));
        let mut s = example_state();
        s.key[1].af = 0;
        s.expire_s = 0;
        let imp = prepare_import(&s, NOW, &t).unwrap();
        assert_eq!(imp.state.key[1].af, AF_INET);
        assert_eq!(imp.last_activity, NOW, "expire 0: fresh lifetime");
        s.key[0].af = 7;
        assert_eq!(prepare_import(&s, NOW, &t), Err(ImportError::BadFamily));
        // Address-family translation swaps ICMP for the stack key.
        let mut s = example_state();
        s.proto = 1;
        s.key[1].af = AF_INET6;
        let imp = prepare_import(&s, NOW, &t).unwrap();
        assert!(imp.stack_key_differs());
        assert_eq!(imp.stack_proto(), 58);
    }

    #[test]
    fn invalid_ins_is_badval_and_oom_stops_the_subheader_only() {
        let mut bad = example_state();
        bad.timeout = PFTM_MAX;
        let ok = |id| StateRepr {
            id,
            ..example_state()
        };
        let mut store = FakeStore {
            insert_results: vec![Ok(()), Err(InsertError::NoMemory)],
            ..FakeStore::default()
        };
        let f = frame(&[
            Message::Ins(bad),
            Message::Ins(ok(1)),
            Message::Ins(ok(2)),
            Message::Ins(ok(3)), // dropped after NoMemory on 2
            Message::DelC(StateId {
                id: 9,
                creatorid: 1,
            }),
            Message::Ins(ok(4)), // new subheader: processed again
        ]);
        let (_, stats) = run(&mut store, &f);
        assert_eq!(stats.get(Counter::Badval), 1);
        let ids: Vec<u64> = store.inserted.iter().map(|i| i.state.id).collect();
        assert_eq!(ids, vec![1, 4]);
        assert_eq!(stats.get(Counter::Badstate), 1, "DEL_C of an unknown state");
    }

    #[test]
    fn upd_c_merges_known_and_requests_unknown_in_reverse() {
        let s = example_state();
        let mut store = FakeStore::default();
        let known = s.state_id();
        // Local src is ahead: the update is partly stale.
        store
            .states
            .insert(known, tcp_local(4, s.src.seqlo.wrapping_add(10), 4, 0));
        let upd = |id: u64| {
            Message::UpdC(UpdCRepr {
                id,
                src: s.src,
                dst: s.dst,
                creatorid: s.creatorid,
                expire_s: 0,
                timeout: 2,
                state_flags: 0,
            })
        };
        let mut invalid = upd(50);
        if let Message::UpdC(u) = &mut invalid {
            u.src.state = 13;
        }
        let f = frame(&[upd(100), upd(s.id), upd(101), invalid, upd(102)]);
        let (eff, stats) = run(&mut store, &f);
        assert_eq!(
            eff,
            vec![
                Eff::Ack(s.id),
                Eff::Local(s.id),
                Eff::Req(vec![102, 101, 100])
            ]
        );
        assert_eq!(stats.get(Counter::Stale), 1);
        assert_eq!(stats.get(Counter::Badval), 1);
        let (_, d) = store.merged[0];
        assert_eq!(d.src, None);
        assert_eq!(d.dst, Some(s.dst));
        assert!(d.refresh);
    }

    #[test]
    fn upd_imports_unknown_and_counts_failure() {
        let mut store = FakeStore::default();
        let s = example_state();
        let mut zero = example_state();
        zero.id = 77;
        zero.creatorid = 0;
        let (eff, stats) = run(&mut store, &frame(&[Message::Upd(s), Message::Upd(zero)]));
        assert!(eff.is_empty());
        assert_eq!(store.inserted.len(), 1);
        assert_eq!(stats.get(Counter::Badstate), 1);
    }

    #[test]
    fn upd_req_del_clr_bus() {
        let mut store = FakeStore::default();
        let s = example_state();
        store.states.insert(s.state_id(), tcp_local(4, 0, 4, 0));
        let mut ns = tcp_local(4, 0, 4, 0);
        ns.nosync = true;
        store.states.insert(
            StateId {
                id: 5,
                creatorid: 1,
            },
            ns,
        );
        let f = frame(&[
            Message::UpdReq(StateId::BULK_REQUEST),
            Message::UpdReq(s.state_id()),
            Message::UpdReq(StateId {
                id: 5,
                creatorid: 1,
            }),
            Message::UpdReq(StateId {
                id: 6,
                creatorid: 1,
            }),
            Message::Bus(BusRepr::new(3, BusStatus::Start)),
            Message::Clr(ClrRepr {
                ifname: [0; 16],
                creatorid: 3,
            }),
            Message::Clr(ClrRepr {
                ifname: ifname_from_str("em9"),
                creatorid: 3,
            }),
            Message::Clr(ClrRepr {
                ifname: ifname_from_str("em0"),
                creatorid: 4,
            }),
            Message::DelC(s.state_id()),
            Message::InsAck(StateId {
                id: 8,
                creatorid: 1,
            }),
        ]);
        let (eff, stats) = run(&mut store, &f);
        assert_eq!(
            eff,
            vec![
                Eff::Bulk,
                Eff::Upd(s.id),
                Eff::Bus(BusStatus::Start),
                Eff::Ack(8)
            ]
        );
        assert_eq!(stats.get(Counter::Badstate), 2);
        assert_eq!(store.cleared, vec![(3, None), (4, Some(b"em0".to_vec()))]);
        assert_eq!(store.deleted, vec![s.state_id()]);
        assert!(store.find(s.state_id()).is_none());
    }

    #[test]
    fn only_first_bus_message_of_a_section_counts() {
        // Hand-build one BUS section with START then END (count 2).
        let mut f = frame(&[Message::Bus(BusRepr::new(3, BusStatus::Start))]);
        let mut end = [0u8; 12];
        BusRepr::new(3, BusStatus::End).emit(&mut crate::pfsync::wire::msg::Bus::new_unchecked(
            &mut end[..],
        ));
        f.extend_from_slice(&end);
        // Fix lengths: IP total, pfsync len, subheader count, IP checksum.
        let ip_len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[36..38].copy_from_slice(&(ip_len - 20).to_be_bytes());
        f[56..58].copy_from_slice(&2u16.to_be_bytes());
        let c = crate::pfsync::wire::frame::ipv4_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let (eff, _) = run(&mut FakeStore::default(), &f);
        assert_eq!(eff, vec![Eff::Bus(BusStatus::Start)]);
    }

    #[test]
    fn walk_error_is_counted_after_earlier_messages() {
        let mut f = frame(&[Message::InsAck(StateId {
            id: 1,
            creatorid: 1,
        })]);
        f.extend_from_slice(&[99, 0, 0, 1]); // unusable action
        let ip_len = (f.len() - 14) as u16;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[36..38].copy_from_slice(&(ip_len - 20).to_be_bytes());
        let c = crate::pfsync::wire::frame::ipv4_checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        let (eff, stats) = run(&mut FakeStore::default(), &f);
        assert_eq!(eff, vec![Eff::Ack(1)]);
        assert_eq!(stats.get(Counter::Badact), 1);
    }
}
