//! The per-packet decision: a frame in, a [`Verdict`] out. Pure Rust over
//! byte slices (no DPDK type), owned by one worker, so it is unit-tested and
//! benchmarked without EAL.
//!
//! Wire mode (ports cross-connected in pairs, like a pf bridge):
//!
//! ```text
//! classify ─ bad header ──────────────────────────────► Drop(BadHeader)
//!    │ ARP / non-IP ──────────────────────────────────► Forward(peer)   (a bridge passes non-IP)
//!    │ IP fragment ───────────────────────────────────► Drop(Fragment)  (no reassembly yet: fail closed)
//!    ▼ IP
//! owner = symmetric hash % workers ── not me ─────────► Handoff(owner)
//!    ▼
//! shard lookup ── hit ── track (pf window checks) ────► Forward / Drop(StateMismatch|BadRst)
//!    │ ICMP error quoting a known state ──────────────► Forward
//!    ▼ miss
//! rules `in` on the receiving port, `out` on the peer ─ block ─► Drop(BlockedByRule)
//!    ▼ pass
//! keep state? insert (table full ─► Drop(StateTableFull)) ─► Forward(peer)
//!                                   (pfsync defer ─► Hold(slot), released later)
//! ```
//!
//! With pfsync on, state changes go out through the export ring (inserts,
//! updates every `maxupd` packets or on a TCP transition, deletions; what
//! the full ring refuses is re-sent by the expiry sweep) and the peer's
//! records come in through the import ring ([`Pipeline::sync_poll`]).
//!
//! A packet starts as `Drop(Unclassified)` and only an explicit decision
//! forwards it (fail closed). dpf keeps one state per connection: the first
//! packet is evaluated `in` on the receiving interface and `out` on the
//! transmitting one, and a state is created when either pass says `keep
//! state` (pf would create one state per pass).

use crate::counters::{DropReason, Verdict, WorkerCounters};
use crate::defer::{DeferQueue, Released};
use crate::export::{ImportRecord, StateRecord, SyncAction};
use crate::flow::{Direction, FlowKey, IfIndex, L4Info, PacketInfo};
use crate::ring::{Consumer, Producer};
use crate::route::{Neighbors, ResolveRequest, Routing};
use crate::rules::{Action, ReturnMode, RuleCounters, Ruleset};
use crate::state::{
    icmp_error_matches, new_state, state_flags, track, InsertError, Shard, SlotId, StateDrop,
    StateOptions, TrackOutcome,
};
use crate::time::Instant;
use crate::timeouts::Timeouts;
use crate::wire::{build, classify, Classified, EthernetAddress, FrameKind, WireError};
use std::sync::Arc;

/// Most ports dpf drives.
pub const MAX_PORTS: usize = 16;

/// Most frames [`Pipeline::process_burst`] decides in one call.
pub const MAX_BURST: usize = 64;

/// States from which [`Pipeline::process_burst`] looks flows up ahead
/// (512 KiB of states: the L2 cache of the CPUs dpf targets, past which
/// lookups start missing). Below it the passes cost more instructions than
/// the misses they hide, and packets are decided one by one.
pub const LOOKAHEAD_MIN_STATES: usize = 1 << 12;

/// Marks a port without an egress in wire mode.
pub const NO_EGRESS: u16 = u16::MAX;

/// Room for the largest answer dpf generates (an ICMPv6 error quoting
/// 1232 bytes, with Ethernet, VLAN and IPv6 headers).
pub const REPLY_MAX: usize = 1536;

/// ICMP / ICMPv6 "port unreachable", pf's default for `block return`.
const ICMP_UNREACH_PORT: u8 = 3;
const ICMP6_UNREACH_PORT: u8 = 4;

/// What a worker's pipeline needs to know about the box.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Wire mode: the port each port's traffic leaves on (`NO_EGRESS` if
    /// unpaired).
    pub wire_peer: [u16; MAX_PORTS],
    /// This worker's index.
    pub worker: usize,
    /// Number of workers (flow owners).
    pub workers: usize,
    /// pfsync host id stamped on states this box creates.
    pub creatorid: u32,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            wire_peer: [NO_EGRESS; MAX_PORTS],
            worker: 0,
            workers: 1,
            creatorid: 0,
        }
    }
}

impl PipelineConfig {
    /// Cross-connects ports `a` and `b` (wire mode).
    pub fn pair(&mut self, a: u16, b: u16) {
        if let Some(x) = self.wire_peer.get_mut(a as usize) {
            *x = b;
        }
        if let Some(x) = self.wire_peer.get_mut(b as usize) {
            *x = a;
        }
    }
}

/// One worker's pipeline: configuration, its state shard, the ruleset
/// snapshot it uses, and its single-writer counters.
#[derive(Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    rules: Arc<Ruleset>,
    rule_counters: Vec<RuleCounters>,
    timeouts: Timeouts,
    shard: Shard,
    reply: Box<[u8; REPLY_MAX]>,
    reply_len: usize,
    router: Option<Router>,
    sync: Option<SyncPorts>,
    lookahead_min_states: usize,
    /// This worker's counters.
    pub counters: WorkerCounters,
}

impl Pipeline {
    /// A pipeline for one worker with a shard of `state_capacity` states.
    pub fn new(config: PipelineConfig, rules: Arc<Ruleset>, shard: Shard) -> Pipeline {
        let timeouts = rules.options.timeouts;
        let rule_counters = vec![RuleCounters::default(); rules.len()];
        Pipeline {
            config,
            rules,
            rule_counters,
            timeouts,
            shard,
            reply: Box::new([0; REPLY_MAX]),
            reply_len: 0,
            router: None,
            sync: None,
            lookahead_min_states: LOOKAHEAD_MIN_STATES,
            counters: WorkerCounters::default(),
        }
    }

    /// Turns on pfsync export (`maxupd`: an update every that many
    /// packets of a state) and import.
    pub fn set_sync(
        &mut self,
        export: Producer<StateRecord>,
        import: Consumer<ImportRecord>,
        maxupd: u8,
    ) {
        self.sync = Some(SyncPorts {
            export,
            import,
            maxupd: maxupd.max(1),
            owed_deletes: Vec::with_capacity(OWED_DELETES),
            defer: None,
        });
    }

    /// Turns pfsync `defer` on (after [`Pipeline::set_sync`]): the packet
    /// that creates a state is held ([`Verdict::Hold`]) until the peer
    /// acknowledges the state or 20 ms pass ([`Pipeline::release_deferred`]).
    pub fn set_defer(&mut self, on: bool) {
        if let Some(s) = self.sync.as_mut() {
            s.defer = on.then(DeferQueue::new);
        }
    }

    /// Releases the held packets that may go now (acknowledged, or held
    /// for 20 ms), calling `release(slot, port)` for each: the worker
    /// transmits the packet it keeps in that slot on that port. Constant
    /// time when nothing is due.
    #[inline]
    pub fn release_deferred(&mut self, now: Instant, mut release: impl FnMut(u16, u16)) {
        let Some(q) = self.sync.as_mut().and_then(|s| s.defer.as_mut()) else {
            return;
        };
        let counters = &mut self.counters;
        q.release(now, |slot, port, why| {
            match why {
                Released::Acked => counters.defer_acked += 1,
                Released::Timeout => counters.defer_timeout += 1,
            }
            counters.forwarded += 1;
            release(slot, port);
        });
    }

    /// Publishes exported records (once per burst) and applies up to
    /// `budget` imported ones.
    pub fn sync_poll(&mut self, now: Instant, budget: usize) {
        let Some(s) = self.sync.as_mut() else {
            return;
        };
        // Deletions that found the ring full, oldest first.
        let mut sent = 0;
        for &(id, creatorid) in s.owed_deletes.iter() {
            let rec = StateRecord {
                action: SyncAction::Delete,
                state: crate::state::State::identity_only(id, creatorid, now),
                at: now,
            };
            if s.export.push(rec).is_err() {
                break;
            }
            sent += 1;
        }
        if sent > 0 {
            s.owed_deletes.drain(..sent);
            self.counters.export_resent += sent as u64;
        }
        for _ in 0..budget {
            let Some(rec) = self.sync.as_mut().and_then(|s| s.import.pop()) else {
                break;
            };
            self.import(rec, now);
        }
        // One publication for the burst's exports and the answers to the
        // imports (stale updates, requests, missing states).
        if let Some(s) = self.sync.as_mut() {
            s.export.publish();
        }
    }

    fn import(&mut self, rec: ImportRecord, now: Instant) {
        match rec {
            ImportRecord::Merge {
                id,
                creatorid,
                src,
                dst,
                timeout,
            } => {
                self.counters.imported += 1;
                match self.shard.find_by_id(id, creatorid) {
                    Some(slot) => self.merge_import(slot, &src, &dst, timeout, now),
                    None => {
                        let st = crate::state::State::identity_only(id, creatorid, now);
                        push_export(
                            &mut self.sync,
                            &mut self.counters,
                            SyncAction::Missing,
                            &st,
                            now,
                        );
                    }
                }
            }
            ImportRecord::Ack { id, creatorid } => {
                self.counters.imported += 1;
                if let Some(q) = self.sync.as_mut().and_then(|s| s.defer.as_mut()) {
                    q.ack(id, creatorid);
                }
            }
            ImportRecord::Request { id, creatorid } => {
                self.counters.imported += 1;
                if let Some(st) = self
                    .shard
                    .find_by_id(id, creatorid)
                    .and_then(|slot| self.shard.get_mut(slot))
                {
                    export_or_owe(
                        &mut self.sync,
                        &mut self.counters,
                        SyncAction::FullUpdate,
                        st,
                        now,
                    );
                }
            }
            ImportRecord::Delete { id, creatorid } => {
                if let Some(slot) = self.shard.find_by_id(id, creatorid) {
                    self.shard.remove(slot);
                    self.counters.states_removed += 1;
                    self.counters.imported += 1;
                }
            }
            ImportRecord::Clear { creatorid } => {
                // Once per peer flush: a walk of the slab's occupancy bits.
                let removed = self
                    .shard
                    .remove_if(|st| st.creatorid() == creatorid, |_| {});
                self.counters.states_removed += removed as u64;
                self.counters.imported += 1;
                self.counters.states = self.shard.len() as u64;
            }
            ImportRecord::Upsert {
                mut state,
                age_s,
                expire_s,
            } => {
                self.counters.imported += 1;
                let found = self
                    .shard
                    .find_by_id(state.id(), state.creatorid())
                    .or_else(|| self.shard.lookup(state.key(), state.key().symmetric_hash()));
                if let Some(slot) = found {
                    let (src, dst, timeout) = (state.src, state.dst, state.timeout);
                    self.merge_import(slot, &src, &dst, timeout, now);
                } else {
                    state.import_times(now, age_s, expire_s, &self.timeouts);
                    match self.shard.insert(state) {
                        Ok(_) => self.counters.states_created += 1,
                        Err(_) => self.counters.drop(DropReason::StateTableFull),
                    }
                }
                self.counters.states = self.shard.len() as u64;
            }
        }
    }

    /// Merges a peer's update into the state in `slot` (spec/pfsync.md
    /// §5.3.1); when a side of ours was newer, our state goes back to the
    /// peer as an update so it learns the newer view.
    fn merge_import(
        &mut self,
        slot: SlotId,
        src: &crate::state::Peer,
        dst: &crate::state::Peer,
        timeout: crate::timeouts::TimeoutClass,
        now: Instant,
    ) {
        let Some(st) = self.shard.get_mut(slot) else {
            return;
        };
        // An update from the peer acknowledges the state (spec §5.7).
        if let Some(q) = self.sync.as_mut().and_then(|s| s.defer.as_mut()) {
            q.ack(st.id(), st.creatorid());
        }
        if let crate::state::MergeOutcome::Stale { .. } =
            crate::state::merge_peer_update(st, src, dst, timeout, now)
        {
            self.counters.sync_stale += 1;
            export_or_owe(
                &mut self.sync,
                &mut self.counters,
                SyncAction::Update,
                st,
                now,
            );
        }
    }

    /// Switches the pipeline to router mode: packets are routed by
    /// `routing` to neighbours in `neighbors`; next hops without a
    /// neighbour entry are asked for on `resolve` (and the packet dropped).
    pub fn set_router(
        &mut self,
        routing: Arc<Routing>,
        neighbors: Arc<Neighbors>,
        resolve: Option<Producer<ResolveRequest>>,
    ) {
        self.router = Some(Router {
            routing,
            neighbors,
            resolve,
        });
    }

    /// Replaces the neighbour snapshot (between bursts).
    pub fn set_neighbors(&mut self, neighbors: Arc<Neighbors>) {
        if let Some(r) = self.router.as_mut() {
            r.neighbors = neighbors;
        }
    }

    /// Publishes pending resolve requests (once per burst).
    pub fn publish_requests(&mut self) {
        if let Some(p) = self.router.as_mut().and_then(|r| r.resolve.as_mut()) {
            p.publish();
        }
    }

    /// The answer written for the last [`Verdict::Reply`].
    pub fn reply(&self) -> &[u8] {
        &self.reply[..self.reply_len]
    }

    /// Switches to a new ruleset (between bursts). Existing states survive;
    /// per-rule counters restart.
    pub fn set_rules(&mut self, rules: Arc<Ruleset>) {
        self.timeouts = rules.options.timeouts;
        self.rule_counters.clear();
        self.rule_counters
            .resize(rules.len(), RuleCounters::default());
        self.rules = rules;
    }

    /// The ruleset in use.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    /// Per-rule counters of this worker (index = rule number).
    pub fn rule_counters(&self) -> &[RuleCounters] {
        &self.rule_counters
    }

    /// This worker's state shard.
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// This worker's state shard, writable (state kills, pfsync imports).
    pub fn shard_mut(&mut self) -> &mut Shard {
        &mut self.shard
    }

    /// Expires states: examines at most `budget_slots` slots.
    pub fn expire(&mut self, now: Instant, budget_slots: usize) -> usize {
        let (shard, sync, counters) = (&mut self.shard, &mut self.sync, &mut self.counters);
        // Each expired state is exported as a DEL while it is removed; a
        // live state marked owed is sent again in full, one with packets
        // not yet announced as a compressed update.
        let removed = shard.expire_slice_visit(now, budget_slots, &self.timeouts, |st, expired| {
            if expired {
                delete_or_owe(sync, counters, st, now);
            } else if st.state_flags & state_flags::SYNC_OWED != 0 {
                st.state_flags &= !state_flags::SYNC_OWED;
                if push_export(sync, counters, SyncAction::FullUpdate, st, now) {
                    counters.export_resent += 1;
                } else {
                    st.state_flags |= state_flags::SYNC_OWED;
                }
            } else if st.sync_updates > 0 && sync.is_some() {
                // Packets since the last update, fewer than maxupd: the peer
                // hears of them within a sweep (~1 s), as pfsync's 1-second
                // slice timer would send them.
                st.sync_updates = 0;
                export_or_owe(sync, counters, SyncAction::Update, st, now);
            }
        });
        self.counters.states_removed += removed as u64;
        self.counters.states = self.shard.len() as u64;
        removed
    }

    /// Removes the states `pred` selects among `max_slots` slab slots from
    /// `from` (operator kills, a slice per call). With `export`, each
    /// removal goes to pfsync as a deletion (`dpfctl -k`); a flush sends
    /// one CLR from the control thread instead. Returns the next cursor
    /// (`None` at the end) and how many states were removed.
    pub fn kill_states(
        &mut self,
        from: usize,
        max_slots: usize,
        pred: impl FnMut(&crate::state::State) -> bool,
        export: bool,
    ) -> (Option<usize>, u64) {
        let (shard, sync, counters) = (&mut self.shard, &mut self.sync, &mut self.counters);
        let mut removed = 0u64;
        let next = shard.scan_remove(from, max_slots, pred, |st| {
            removed += 1;
            if export {
                // Operator kills carry no export time (`at` is 0).
                delete_or_owe(sync, counters, st, Instant::default());
            }
        });
        self.counters.states_removed += removed;
        self.counters.states = self.shard.len() as u64;
        (next, removed)
    }

    /// Decides the fate of one frame received on `in_port`. The frame may be
    /// rewritten in place. Counts the verdict.
    #[inline]
    pub fn process(&mut self, frame: &mut [u8], in_port: u16, now: Instant) -> Verdict {
        let classified = classify(frame, IfIndex(in_port), Direction::In);
        let verdict = self.decide(frame, in_port, now, false, classified, None);
        self.count(verdict);
        verdict
    }

    /// Decides a burst of frames received on `in_port` (at most
    /// [`MAX_BURST`]; the rest get `Drop(Unclassified)`), `verdicts[i]` for
    /// `frames[i]`, with the same outcome as [`Pipeline::process`] on each
    /// in order. On a large table (see [`LOOKAHEAD_MIN_STATES`]) the work
    /// is done in passes so memory is fetched ahead of use: parse every frame and hash its flow (prefetching the state
    /// index bucket), then look every flow up (prefetching its state),
    /// then decide each packet in order. A lookup made ahead is reused only
    /// while no state was inserted or removed since (a SYN earlier in the
    /// burst may create the state a later packet needs).
    pub fn process_burst(
        &mut self,
        frames: &mut [&mut [u8]],
        in_port: u16,
        now: Instant,
        verdicts: &mut [Verdict],
    ) {
        let n = frames.len().min(verdicts.len()).min(MAX_BURST);
        if self.shard.len() < self.lookahead_min_states {
            for (frame, verdict) in frames[..n].iter_mut().zip(verdicts.iter_mut()) {
                *verdict = self.process(frame, in_port, now);
            }
        } else {
            self.decide_ahead(&mut frames[..n], in_port, now, verdicts);
        }
        for v in verdicts.iter_mut().skip(n) {
            *v = Verdict::Drop(DropReason::Unclassified);
            self.count(*v);
        }
    }

    /// Sets the table size from which bursts are looked up ahead (tests
    /// use 0 to exercise that path on small tables).
    pub fn set_lookahead_min_states(&mut self, states: usize) {
        self.lookahead_min_states = states;
    }

    /// The passes of [`Pipeline::process_burst`] for a large table.
    fn decide_ahead(
        &mut self,
        frames: &mut [&mut [u8]],
        in_port: u16,
        now: Instant,
        verdicts: &mut [Verdict],
    ) {
        let n = frames.len().min(verdicts.len()).min(MAX_BURST);
        let mut classified: [Option<Result<Classified, WireError>>; MAX_BURST] = [None; MAX_BURST];
        let mut ahead: [Option<Lookahead>; MAX_BURST] = [None; MAX_BURST];
        for i in 0..n {
            let c = classify(frames[i], IfIndex(in_port), Direction::In);
            if let Ok(Classified {
                kind:
                    FrameKind::Ip {
                        info,
                        fragment: false,
                        ..
                    },
                ..
            }) = &c
            {
                let (key, swapped) = info.key();
                let hash = key.symmetric_hash();
                if owner_of(hash, self.config.workers) == self.config.worker {
                    self.shard.prefetch_bucket(hash);
                    ahead[i] = Some(Lookahead {
                        key,
                        swapped,
                        hash,
                        slot: None,
                        generation: 0,
                    });
                }
            }
            classified[i] = Some(c);
        }
        let generation = self.shard.generation();
        for a in ahead[..n].iter_mut().flatten() {
            a.slot = self.shard.lookup(&a.key, a.hash);
            a.generation = generation;
            if let Some(slot) = a.slot {
                self.shard.prefetch_state(slot);
            }
        }
        for i in 0..n {
            let verdict = match classified[i].take() {
                Some(c) => self.decide(frames[i], in_port, now, false, c, ahead[i].as_ref()),
                None => Verdict::Drop(DropReason::Unclassified),
            };
            self.count(verdict);
            verdicts[i] = verdict;
        }
    }

    /// Like [`Pipeline::process`] for a packet another worker handed over
    /// (this worker owns its flow, so it is never handed off again).
    #[inline]
    pub fn process_owned(&mut self, frame: &mut [u8], in_port: u16, now: Instant) -> Verdict {
        self.counters.handed_in += 1;
        let classified = classify(frame, IfIndex(in_port), Direction::In);
        let verdict = self.decide(frame, in_port, now, true, classified, None);
        self.count(verdict);
        verdict
    }

    #[inline(always)]
    fn count(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Forward(_) => self.counters.forwarded += 1,
            Verdict::Drop(r) => self.counters.drop(r),
            Verdict::SlowPath => self.counters.slow_path += 1,
            Verdict::Handoff(_) => self.counters.handed_off += 1,
            Verdict::Reply(_) => {
                self.counters.block_returns += 1;
                self.counters.drop(DropReason::BlockedByRule);
            }
            // Counted `forwarded` when released.
            Verdict::Hold(_) => self.counters.deferred += 1,
        }
    }

    /// The decision for a parsed frame (`ahead`: its flow looked up by the
    /// burst pass, if it was).
    #[inline]
    fn decide(
        &mut self,
        frame: &mut [u8],
        in_port: u16,
        now: Instant,
        owned: bool,
        classified: Result<Classified, WireError>,
        ahead: Option<&Lookahead>,
    ) -> Verdict {
        if self.router.is_some() {
            return self.decide_routed(frame, in_port, now, owned, classified, ahead);
        }
        let Some(&egress) = self.config.wire_peer.get(in_port as usize) else {
            return Verdict::Drop(DropReason::NoEgress);
        };
        if egress == NO_EGRESS {
            return Verdict::Drop(DropReason::NoEgress);
        }
        let Ok(classified) = classified else {
            return Verdict::Drop(DropReason::BadHeader);
        };
        match classified.kind {
            FrameKind::Ip { info, fragment, .. } => {
                if fragment {
                    return Verdict::Drop(DropReason::Fragment);
                }
                match self.filter(&info, in_port, egress, now, owned, ahead) {
                    Blocked(mode) => self.answer(mode, &classified, frame, in_port),
                    Decided(v) => v,
                }
            }
            // A bridge passes what pf does not filter.
            _ => Verdict::Forward(egress),
        }
    }

    /// Router mode: what is addressed to the box goes to the slow path;
    /// the rest is routed (longest prefix), filtered `in` on the receiving
    /// port and `out` on the egress port, and rewritten (MACs, TTL with an
    /// incremental checksum) for its next hop.
    fn decide_routed(
        &mut self,
        frame: &mut [u8],
        in_port: u16,
        now: Instant,
        owned: bool,
        classified: Result<Classified, WireError>,
        ahead: Option<&Lookahead>,
    ) -> Verdict {
        let Some(router) = self.router.as_ref() else {
            return Verdict::Drop(DropReason::Unclassified);
        };
        let Ok(classified) = classified else {
            return Verdict::Drop(DropReason::BadHeader);
        };
        let (info, fragment, l3) = match classified.kind {
            FrameKind::Arp => return Verdict::SlowPath,
            FrameKind::Other => return Verdict::Drop(DropReason::Unsupported),
            FrameKind::Ip { info, fragment, .. } => (info, fragment, classified.l3_offset as usize),
        };
        let routing = &router.routing;
        if is_group(&info)
            || routing.owner_of(info.af, &info.dst).is_some()
            || routing.vips.lookup(info.af, &info.dst).is_some()
        {
            return Verdict::SlowPath;
        }
        match routing.mac(in_port) {
            Some(mac) if mac == classified.dst_mac.0 => {}
            // A CARP virtual MAC: ours only while MASTER for its VHID.
            _ => match crate::route::vmac_vhid(&classified.dst_mac.0) {
                Some(vhid) if routing.vips.is_master(in_port, vhid) => {}
                Some(_) => return Verdict::Drop(DropReason::CarpBackup),
                None => return Verdict::Drop(DropReason::NotForUs),
            },
        }
        if fragment {
            return Verdict::Drop(DropReason::Fragment);
        }
        let Some(hop) = routing.lookup(info.af, &info.dst) else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        if info.ttl <= 1 {
            // The control thread answers with ICMP time exceeded.
            return Verdict::SlowPath;
        }
        let egress_mac = routing.mac(hop.port).unwrap_or([0; 6]);
        let neighbor = router.neighbors.get(info.af, &hop.addr);
        match self.filter(&info, in_port, hop.port, now, owned, ahead) {
            Blocked(mode) => self.answer(mode, &classified, frame, in_port),
            // A packet held by pfsync `defer` is rewritten now and sent
            // as it is when released.
            Decided(verdict @ (Verdict::Forward(_) | Verdict::Hold(_))) => {
                let Some(n) = neighbor else {
                    if let Some(p) = self.router.as_mut().and_then(|r| r.resolve.as_mut()) {
                        let _ = p.push(ResolveRequest {
                            af: info.af,
                            addr: hop.addr,
                            port: hop.port,
                        });
                    }
                    if let Verdict::Hold(slot) = verdict {
                        if let Some(q) = self.sync.as_mut().and_then(|s| s.defer.as_mut()) {
                            q.cancel(slot);
                        }
                    }
                    return Verdict::Drop(DropReason::NeighborUnresolved);
                };
                frame[0..6].copy_from_slice(&n.mac);
                frame[6..12].copy_from_slice(&egress_mac);
                match info.af {
                    crate::flow::Af::Inet => {
                        if let Some(ip) = frame.get_mut(l3..) {
                            crate::wire::ipv4::Packet::new_unchecked(ip).decrement_ttl();
                        }
                    }
                    crate::flow::Af::Inet6 => {
                        if let Some(h) = frame.get_mut(l3 + 7) {
                            *h -= 1;
                        }
                    }
                }
                verdict
            }
            Decided(v) => v,
        }
    }

    #[inline]
    fn filter(
        &mut self,
        info: &PacketInfo,
        in_port: u16,
        out_port: u16,
        now: Instant,
        owned: bool,
        ahead: Option<&Lookahead>,
    ) -> FilterOutcome {
        if self.rules.is_skipped(IfIndex(in_port)) && self.rules.is_skipped(IfIndex(out_port)) {
            return Decided(Verdict::Forward(out_port));
        }
        let (swapped, mut found) = match ahead {
            // The burst pass checked ownership and looked the flow up.
            Some(a) if a.generation == self.shard.generation() => (a.swapped, a.slot),
            Some(a) => (a.swapped, self.shard.lookup(&a.key, a.hash)),
            None => {
                let (key, swapped) = info.key();
                let hash = key.symmetric_hash();
                if !owned && self.config.workers > 1 {
                    let owner = owner_of(hash, self.config.workers);
                    if owner != self.config.worker {
                        return Decided(Verdict::Handoff(owner as u16));
                    }
                }
                (swapped, self.shard.lookup(&key, hash))
            }
        };
        if let Some(slot) = found {
            // A state past its timeout that the sweep has not reached yet
            // is gone as far as this packet is concerned.
            if self
                .shard
                .get(slot)
                .is_some_and(|st| st.is_expired(now, &self.timeouts))
            {
                self.shard.remove(slot);
                self.counters.states_removed += 1;
                self.counters.states = self.shard.len() as u64;
                found = None;
            }
        }
        if let Some(slot) = found {
            if let Some(st) = self.shard.get_mut(slot) {
                let from_src = st.is_from_src(swapped);
                match track(st, info, from_src, now) {
                    TrackOutcome::Pass { transition } => {
                        self.counters.state_hits += 1;
                        if self.sync.is_some() {
                            let maxupd = self.sync.as_ref().map_or(u8::MAX, |s| s.maxupd);
                            if transition || st.sync_tick(maxupd) {
                                export_or_owe(
                                    &mut self.sync,
                                    &mut self.counters,
                                    SyncAction::Update,
                                    st,
                                    now,
                                );
                            }
                        }
                        return Decided(Verdict::Forward(out_port));
                    }
                    TrackOutcome::Drop(StateDrop::BadRst) => {
                        return Decided(Verdict::Drop(DropReason::BadRst))
                    }
                    TrackOutcome::Drop(_) => {
                        return Decided(Verdict::Drop(DropReason::StateMismatch))
                    }
                    TrackOutcome::Reuse => {
                        self.shard.remove(slot);
                        self.counters.states_removed += 1;
                    }
                }
            }
        } else if let L4Info::Icmp(icmp) = info.l4 {
            if let (true, Some(q)) = (icmp.is_error, icmp.quoted) {
                // An ICMP error passes with the state of the packet it quotes
                // (PMTU discovery). That packet went the other way.
                let (qkey, qswapped) =
                    FlowKey::from_packet(info.af, q.proto, q.src, q.sport, q.dst, q.dport);
                let qhash = qkey.symmetric_hash();
                if let Some(st) = self
                    .shard
                    .lookup(&qkey, qhash)
                    .and_then(|s| self.shard.get_mut(s))
                {
                    let quoted_from_src = st.is_from_src(qswapped);
                    if icmp_error_matches(st, &q, quoted_from_src) {
                        st.count(!quoted_from_src, info.ip_len as u32);
                        self.counters.state_hits += 1;
                        return Decided(Verdict::Forward(out_port));
                    }
                }
            }
        }
        self.evaluate_new(info, in_port, out_port, now)
    }

    /// The rules for a packet without a state: `in` on the receiving port,
    /// then `out` on the transmitting one; creates the state.
    fn evaluate_new(
        &mut self,
        info: &PacketInfo,
        in_port: u16,
        out_port: u16,
        now: Instant,
    ) -> FilterOutcome {
        let mut pkt = *info;
        pkt.ifindex = IfIndex(in_port);
        pkt.dir = Direction::In;
        let d_in = self.rules.evaluate(&pkt, &mut self.rule_counters);
        if d_in.action == Action::Block {
            return Blocked(d_in.return_mode);
        }
        pkt.ifindex = IfIndex(out_port);
        pkt.dir = Direction::Out;
        let d_out = self.rules.evaluate(&pkt, &mut self.rule_counters);
        if d_out.action == Action::Block {
            return Blocked(d_out.return_mode);
        }
        let d = if d_in.keep_state { d_in } else { d_out };
        if !d.keep_state {
            return Decided(Verdict::Forward(out_port));
        }
        let flags = info.tcp_flags();
        let initial_syn =
            flags & crate::flow::tcp_flags::SYN != 0 && flags & crate::flow::tcp_flags::ACK == 0;
        let opts = StateOptions {
            sloppy: d.sloppy,
            no_sync: d.no_sync,
            any_flags: info.proto == crate::flow::proto::TCP && !initial_syn,
            rule: d.rule.unwrap_or(crate::state::NO_RULE),
        };
        let id = self.shard.alloc_id();
        let Some(mut st) = new_state(info, now, opts, id, self.config.creatorid) else {
            // pf creates no state for this packet (e.g. an RST) but passes it.
            return Decided(Verdict::Forward(out_port));
        };
        st.direction = Direction::In;
        st.ifindex = IfIndex(in_port);
        Decided(match self.shard.insert(st) {
            Ok(slot) => {
                let mut verdict = Verdict::Forward(out_port);
                if let Some(st) = self.shard.get_mut(slot) {
                    let held = match self.sync.as_mut().and_then(|s| s.defer.as_mut()) {
                        Some(q) if !st.is_nosync() && !is_group(info) => {
                            let h = q.hold(st.id(), st.creatorid(), out_port, now);
                            if h.is_none() {
                                self.counters.defer_full += 1;
                            }
                            h
                        }
                        _ => None,
                    };
                    match held {
                        Some(h) => {
                            // The INS asks the peer for an INS_ACK; the
                            // flag is on the exported copy only.
                            let mut copy = *st;
                            copy.state_flags |= state_flags::ACK;
                            let pushed = push_export(
                                &mut self.sync,
                                &mut self.counters,
                                SyncAction::Insert,
                                &copy,
                                now,
                            );
                            if !pushed {
                                st.state_flags |= state_flags::SYNC_OWED;
                            }
                            verdict = Verdict::Hold(h);
                        }
                        None => export_or_owe(
                            &mut self.sync,
                            &mut self.counters,
                            SyncAction::Insert,
                            st,
                            now,
                        ),
                    }
                }
                self.counters.states_created += 1;
                self.counters.states = self.shard.len() as u64;
                if let Some(c) = d.rule.and_then(|r| self.rule_counters.get_mut(r as usize)) {
                    c.states_created += 1;
                }
                verdict
            }
            Err(InsertError::Full) => Verdict::Drop(DropReason::StateTableFull),
            // Another packet of the flow created it meanwhile (cannot happen
            // on the owning worker; fail closed if it does).
            Err(_) => Verdict::Drop(DropReason::StateMismatch),
        })
    }

    /// Writes pf's `block return` answer for a blocked packet into the
    /// reply buffer: a TCP RST for TCP, ICMP(v6) port unreachable for the
    /// rest, sent back out the receiving port from the address the packet
    /// was sent to. Packets that must not be answered (RSTs, ICMP errors,
    /// broadcasts...) are just dropped.
    fn answer(&mut self, mode: ReturnMode, c: &Classified, frame: &[u8], in_port: u16) -> Verdict {
        let blocked = Verdict::Drop(DropReason::BlockedByRule);
        let FrameKind::Ip { info, .. } = &c.kind else {
            return blocked;
        };
        // On a bridge dpf answers as the destination host would.
        let our_mac: EthernetAddress = c.dst_mac;
        let reply = match (mode, info.af) {
            (ReturnMode::None, _) => return blocked,
            (ReturnMode::Rst, _) => build::tcp_rst(c, our_mac),
            (ReturnMode::IcmpUnreachable, crate::flow::Af::Inet) => {
                let src = std::net::Ipv4Addr::from(info.dst.v4_octets());
                build::icmpv4_dst_unreachable(frame, ICMP_UNREACH_PORT, our_mac, src)
            }
            (ReturnMode::IcmpUnreachable, crate::flow::Af::Inet6) => {
                let src = std::net::Ipv6Addr::from(info.dst.0);
                build::icmpv6_dst_unreachable(frame, ICMP6_UNREACH_PORT, our_mac, src)
            }
        };
        match reply.and_then(|r| r.emit(&mut self.reply[..])) {
            Ok(len) => {
                self.reply_len = len;
                Verdict::Reply(in_port)
            }
            Err(_) => blocked,
        }
    }
}

/// Deletions a worker keeps for a later burst when the export ring is
/// full (allocated once; beyond it a deletion is counted `export_lost`).
const OWED_DELETES: usize = 4096;

/// Pushes a pfsync record unless pfsync is off or the state is `no-sync`.
/// Returns false, counting `export_dropped`, when the ring was full.
#[inline]
fn push_export(
    sync: &mut Option<SyncPorts>,
    counters: &mut WorkerCounters,
    action: SyncAction,
    state: &crate::state::State,
    now: Instant,
) -> bool {
    let Some(s) = sync.as_mut() else {
        return true;
    };
    if state.is_nosync() {
        return true;
    }
    let rec = StateRecord {
        action,
        state: *state,
        at: now,
    };
    if s.export.push(rec).is_err() {
        counters.export_dropped += 1;
        return false;
    }
    true
}

/// Exports a live state's insert or update; when the ring is full the
/// state is marked [`state_flags::SYNC_OWED`] so the expiry sweep sends it
/// again in full (no update is lost for good).
#[inline]
fn export_or_owe(
    sync: &mut Option<SyncPorts>,
    counters: &mut WorkerCounters,
    action: SyncAction,
    state: &mut crate::state::State,
    now: Instant,
) {
    if !push_export(sync, counters, action, state, now) {
        state.state_flags |= state_flags::SYNC_OWED;
    }
}

/// Exports a removed state's deletion; when the ring is full its identity
/// waits in the worker's backlog for the next burst.
fn delete_or_owe(
    sync: &mut Option<SyncPorts>,
    counters: &mut WorkerCounters,
    state: &crate::state::State,
    now: Instant,
) {
    if push_export(sync, counters, SyncAction::Delete, state, now) {
        return;
    }
    if let Some(s) = sync.as_mut() {
        if s.owed_deletes.len() < s.owed_deletes.capacity() {
            s.owed_deletes.push((state.id(), state.creatorid()));
        } else {
            counters.export_lost += 1;
        }
    }
}

/// A flow's key, hash and state lookup, computed by the burst pass before
/// the packet is decided. `slot` is valid while the shard's generation is
/// still `generation`.
#[derive(Clone, Copy, Debug)]
struct Lookahead {
    key: FlowKey,
    swapped: bool,
    hash: u64,
    slot: Option<SlotId>,
    generation: u64,
}

/// pfsync rings of a pipeline.
#[derive(Debug)]
struct SyncPorts {
    export: Producer<StateRecord>,
    import: Consumer<ImportRecord>,
    maxupd: u8,
    /// (id, creatorid) of deletions the full ring refused, retried first
    /// thing every burst; capacity [`OWED_DELETES`], never grown.
    owed_deletes: Vec<(u64, u32)>,
    /// pfsync `defer`: the states whose first packet the worker holds.
    defer: Option<DeferQueue>,
}

/// Router-mode tables of a pipeline.
#[derive(Debug)]
struct Router {
    routing: Arc<Routing>,
    neighbors: Arc<Neighbors>,
    resolve: Option<Producer<ResolveRequest>>,
}

/// Whether the destination is a broadcast or multicast group (handled by
/// the control thread: ND, CARP, pfsync).
#[inline]
fn is_group(info: &PacketInfo) -> bool {
    match info.af {
        crate::flow::Af::Inet => {
            let d = info.dst.v4_octets();
            d[0] >= 224 || d == [255, 255, 255, 255]
        }
        crate::flow::Af::Inet6 => info.dst.0[0] == 0xff,
    }
}

/// What filtering decided: a verdict, or a block that may be answered.
enum FilterOutcome {
    Decided(Verdict),
    Blocked(ReturnMode),
}
use FilterOutcome::{Blocked, Decided};

/// The worker that owns a flow with symmetric hash `hash`.
#[inline(always)]
pub fn owner_of(hash: u64, workers: usize) -> usize {
    if workers <= 1 {
        0
    } else {
        ((hash >> 32) % workers as u64) as usize
    }
}
