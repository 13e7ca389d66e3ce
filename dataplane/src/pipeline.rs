//! The per-packet decision: a frame in, a [`Verdict`] out. Pure Rust over
//! byte slices (no DPDK type), owned by one worker, so it is unit-tested and
//! benchmarked without EAL.
//!
//! Wire mode (ports cross-connected in pairs, like a pf bridge):
//!
//! ```text
//! classify ─ bad header ──────────────────────────────► Drop(BadHeader)
//!    │ ARP / non-IP ──────────────────────────────────► Forward(peer)   (a bridge passes non-IP)
//!    │ IP fragment ─► reassembled by its datagram's owner, then decided whole (see `reassembly`)
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

use crate::alias::{AliasMsg, AliasTable};
use crate::counters::{DropReason, Punt, Verdict, WorkerCounters};
use crate::defer::{DeferQueue, Released};
use crate::export::{ImportRecord, StateRecord, SyncAction};
use crate::flow::{Addr, Af, Direction, FlowKey, IfIndex, L4Info, PacketInfo};
use crate::nat::{map_endpoints, Endpoints, Orientation};
use crate::neighbor_hold::{HoldOutcome, NeighborHold};
use crate::ring::{Consumer, Producer};
use crate::route::{Neighbors, ResolveRequest, Routing};
use crate::rules::{Action, Decision, ReturnMode, RuleCounters, Ruleset};
use crate::scrub::ScrubAction;
use crate::srcnodes::{AttachError, LimitCounter, OverloadEvent, SourceKey, SourceTable};
use crate::state::{
    icmp_error_matches, new_state, state_flags, track, track_established, track_udp_multiple,
    InsertError, Shard, SlotId, StateDrop, StateOptions, StateRoute, TrackOutcome, Translation,
};
use crate::time::Instant;
use crate::timeouts::{TimeoutScale, Timeouts};
use crate::wire::{build, classify, ethernet, Classified, EthernetAddress, FrameKind, WireError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

mod pflog;
mod reassembly;
mod syncookie;
pub use reassembly::Arrival;

/// Most ports dpf drives.
pub const MAX_PORTS: usize = 16;

/// Most frames [`Pipeline::process_burst`] decides in one call.
pub const MAX_BURST: usize = 64;

/// How many packets behind the parse a burst looks its flows up: the
/// index bucket prefetched that many packets earlier has usually arrived
/// (a parse is ~60 cycles; a miss to memory ~300), and the state's own
/// prefetch then overlaps the rest of the parse instead of the decisions.
const LOOKUP_DISTANCE: usize = 12;

/// Frames one pass of [`Pipeline::decide_ahead`] decides (a worker's
/// receive burst): its per-frame arrays are set up for this many.
const AHEAD_CHUNK: usize = 32;

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
    /// States in every worker's shard: `set limit states` holds for the
    /// box, not per worker. Clones share it.
    pub states_total: Arc<AtomicUsize>,
    /// Wire mode: the non-IP EtherTypes the bridge forwards.
    pub pass_ethertypes: EtherTypeSet,
    /// The box's source nodes (`max-src-*`), shared by every worker:
    /// clones share it. Sized at start by `set limit src-nodes`.
    pub sources: Arc<SourceTable>,
    /// Fragments this worker's reassembly table can hold (`set limit
    /// frags` over the workers, bounded by the packet buffers the daemon
    /// has); allocated once.
    pub frag_capacity: usize,
    /// Which worker owns a flow (see [`crate::rss`]).
    pub placement: crate::rss::Placement,
    /// With `[pfsync]`: the sync port. pfsync to the box on any other port
    /// is dropped here (pfsync(4)'s `badif`), so it never takes the sync
    /// port's room in the pfsync slow-path ring.
    pub syncdev: Option<u16>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            wire_peer: [NO_EGRESS; MAX_PORTS],
            worker: 0,
            workers: 1,
            creatorid: 0,
            states_total: Arc::new(AtomicUsize::new(0)),
            pass_ethertypes: EtherTypeSet::default(),
            sources: Arc::new(SourceTable::new(crate::srcnodes::DEFAULT_LIMIT)),
            frag_capacity: 4096,
            placement: crate::rss::Placement::Hash,
            syncdev: None,
        }
    }
}

/// The non-IP frames a bridge passes (pf never sees them): ARP by
/// default; IEEE 802.3 length-field frames (LLC: STP...) only when told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EtherTypeSet {
    types: [u16; EtherTypeSet::MAX],
    len: usize,
    llc: bool,
}

impl Default for EtherTypeSet {
    fn default() -> Self {
        let mut s = EtherTypeSet::none();
        s.insert(crate::wire::EtherType::ARP.0);
        s
    }
}

impl EtherTypeSet {
    /// Most EtherTypes a set holds.
    pub const MAX: usize = 16;

    /// Passes nothing.
    pub const fn none() -> EtherTypeSet {
        EtherTypeSet {
            types: [0; EtherTypeSet::MAX],
            len: 0,
            llc: false,
        }
    }

    /// Adds an EtherType (values below 0x0600 are 802.3 lengths: adding
    /// any of them passes every LLC frame). False when the set is full.
    pub fn insert(&mut self, ethertype: u16) -> bool {
        if ethertype < 0x0600 {
            self.llc = true;
            return true;
        }
        if self.types[..self.len].contains(&ethertype) {
            return true;
        }
        if self.len == EtherTypeSet::MAX {
            return false;
        }
        self.types[self.len] = ethertype;
        self.len += 1;
        true
    }

    /// Whether frames of this EtherType pass.
    #[inline]
    pub fn passes(&self, t: crate::wire::EtherType) -> bool {
        if t.0 < 0x0600 {
            self.llc
        } else {
            self.types[..self.len].contains(&t.0)
        }
    }
}

/// Which of pf's passes a packet gets: a routed or bridged packet is
/// filtered `in` on its receiving port and `out` on its egress port; a
/// packet to the box only `in`, one from the box only `out` (on the port
/// named), as pf filters what the stack receives and sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Passes {
    Both { in_port: u16, out_port: u16 },
    In(u16),
    Out(u16),
}

impl Passes {
    /// (in pass port, out pass port).
    fn ports(self) -> (Option<u16>, Option<u16>) {
        match self {
            Passes::Both { in_port, out_port } => (Some(in_port), Some(out_port)),
            Passes::In(p) => (Some(p), None),
            Passes::Out(p) => (None, Some(p)),
        }
    }

    /// The port a passing verdict names.
    fn verdict_port(self) -> u16 {
        match self {
            Passes::Both { out_port, .. } => out_port,
            Passes::In(p) | Passes::Out(p) => p,
        }
    }

    /// To or from the box itself.
    fn is_local(self) -> bool {
        !matches!(self, Passes::Both { .. })
    }
}

/// Rulesets a pipeline remembers after a reload, so states they created
/// keep their rule's timeouts and give back their rule's `max` places.
const RECENT_RULESETS: usize = 8;

/// The timeouts of `st` and the adaptive factor they are scaled by: its
/// rule's `keep state (<timeout> N)` when it has some (found in the
/// current or a recent ruleset by the state's rule tag), else the current
/// global ones; the rule's own factor when its timeouts scale with its
/// states (per-rule `adaptive.*`, or `max`), else `global` (the box's,
/// taken once per burst).
#[inline]
fn state_timeouts<'a>(
    rules: &'a Ruleset,
    recent: &'a [Arc<Ruleset>],
    st: &crate::state::State,
    global: TimeoutScale,
) -> (&'a Timeouts, TimeoutScale) {
    if st.state_flags & state_flags::RULE_TIMEOUTS == 0 {
        return (&rules.options.timeouts, global);
    }
    ruleset_of_tag(rules, recent, st.rule).map_or((&rules.options.timeouts, global), |(r, nr)| {
        (
            r.state_timeouts(Some(nr)),
            r.rule_timeout_scale(nr).unwrap_or(global),
        )
    })
}

/// The ruleset (current or recent) whose rule a state's rule tag names,
/// and the rule's number in it.
#[inline]
fn ruleset_of_tag<'a>(
    rules: &'a Ruleset,
    recent: &'a [Arc<Ruleset>],
    tag: u32,
) -> Option<(&'a Ruleset, u32)> {
    std::iter::once(rules)
        .chain(recent.iter().map(|r| &**r))
        .find_map(|r| r.rule_of_tag(tag).map(|nr| (r, nr)))
}

/// Gives back what a removed state held: its place in the box's table,
/// its place under its rule's `max`, and its place in its source node
/// (`now_s`: when, for the node's `src.track`).
#[inline]
fn release_state(
    config: &PipelineConfig,
    rules: &Ruleset,
    recent: &[Arc<Ruleset>],
    st: &crate::state::State,
    now_s: u32,
) {
    let _ = config
        .states_total
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    if st.state_flags & state_flags::RULE_COUNTED != 0 {
        if let Some((r, nr)) = ruleset_of_tag(rules, recent, st.rule) {
            r.release_rule_state(nr);
        }
    }
    release_source(config, rules, recent, st, now_s, None);
}

/// The source node key of a tracked state (`global`: of a `source-track
/// global` node): the initiator's address before translation.
#[inline]
fn source_key(st: &crate::state::State, global: bool) -> SourceKey {
    SourceKey {
        scope: if global {
            crate::srcnodes::GLOBAL_SCOPE
        } else {
            st.rule
        },
        af: st.key().family(),
        addr: st.src_endpoint().0,
    }
}

/// Gives back a state's place in its source node, if it has one; the node
/// goes `timeout_s` (default: its rule's `src.track`) after its last state.
#[inline]
fn release_source(
    config: &PipelineConfig,
    rules: &Ruleset,
    recent: &[Arc<Ruleset>],
    st: &crate::state::State,
    now_s: u32,
    timeout_s: Option<u32>,
) {
    let Some(global) = st.src_tracking() else {
        return;
    };
    let timeout = timeout_s.unwrap_or_else(|| {
        ruleset_of_tag(rules, recent, st.rule)
            .map_or(rules.options.src_track_s, |(r, nr)| r.src_track_timeout(nr))
    });
    config
        .sources
        .release(&source_key(st, global), now_s, timeout, st.is_src_conn());
}

/// A state is gone: its rule (if of the ruleset in use) has one state
/// less (pfctl -vsr's `States:`).
#[inline]
fn forget_rule_state(rules: &Ruleset, counters: &mut [RuleCounters], st: &crate::state::State) {
    if let Some(c) = rules
        .rule_of_tag(st.rule)
        .and_then(|nr| counters.get_mut(nr as usize))
    {
        c.states_cur = c.states_cur.saturating_sub(1);
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
    /// The ruleset's tables as of the start of the current burst, and the
    /// table epoch they were taken at (tables change without a reload).
    tables: Arc<crate::rules::table::TableSet>,
    tables_epoch: u64,
    /// The rulesets replaced by the last reloads, newest first (at most
    /// [`RECENT_RULESETS`]).
    recent_rules: Vec<Arc<Ruleset>>,
    rule_counters: Vec<RuleCounters>,
    shard: Shard,
    /// `block return` answers, one per frame of a burst (slot `i` for
    /// `frames[i]`), so several blocked packets of one burst each get their
    /// own answer.
    replies: Box<[[u8; REPLY_MAX]; MAX_BURST]>,
    reply_lens: [u16; MAX_BURST],
    /// The slot [`Pipeline::answer`] writes into (the frame's index in its
    /// burst; 0 outside bursts).
    reply_slot: usize,
    /// The packet being decided was received on a port whose device put
    /// it on its flow's owner (RSS placement): no ownership check.
    arrival_placed: bool,
    router: Option<Router>,
    sync: Option<SyncPorts>,
    lookahead_min_states: usize,
    /// The translation [`Pipeline::filter`] decided for the packet being
    /// processed; the caller rewrites the frame before it leaves.
    pending: Option<Pending>,
    /// The `route-to` / `reply-to` the filter decided for the packet being
    /// processed (its egress port and next hop replace the routing
    /// table's).
    pending_route: Option<StateRoute>,
    /// `modulate state` for the packet being processed: (added to its
    /// sequence number, subtracted from its acknowledgement and SACK
    /// edges).
    pending_seq: Option<(u32, u32)>,
    /// The scrub the packet being processed gets (its state's, or the
    /// rules' when it passes without one); applied as it leaves.
    pending_scrub: Option<ScrubAction>,
    /// xorshift state for pool and port choices (seeded per worker from
    /// the process's secret hash key).
    rng: u64,
    /// The box's adaptive timeout factor, taken once per burst and per
    /// expiry sweep ([`Pipeline::refresh_timeout_scale`]).
    timeout_scale: TimeoutScale,
    /// Aliases of far keys whose states other workers hold (several
    /// workers only).
    aliases: Option<AliasTable>,
    /// Alias messages to each other worker (`None` at this worker).
    alias_out: Vec<Option<Producer<AliasMsg>>>,
    /// Alias messages from the other workers.
    alias_in: Vec<Consumer<AliasMsg>>,
    /// The packet being decided was sent here by another worker's alias:
    /// it is not redirected again.
    redirected: bool,
    /// `overload <table>` events to the control thread.
    overload: Option<Producer<OverloadEvent>>,
    /// The last time seen (whole seconds), for what happens outside a
    /// packet (operator kills give their states' sources this time).
    now_s: u32,
    /// Where this worker's share of the source table sweep goes on.
    src_sweep: usize,
    /// Datagrams under reassembly (their frames are the worker's).
    frags: crate::frag::FragTable,
    /// Where a reassembled datagram is joined to be decided
    /// ([`crate::frag::SCRATCH_LEN`] bytes).
    frag_scratch: Box<[u8]>,
    /// SYN cookies: keys, on or off ([`syncookie`]).
    cookies: syncookie::CookieState,
    /// pflog records to the logger (`None`: logging off).
    pflog: Option<Producer<crate::pflog::Record>>,
    /// Log events of the packet being processed.
    log_intents: pflog::Intents,
    /// This worker's counters.
    pub counters: WorkerCounters,
}

/// A translation decided for the packet being processed.
#[derive(Clone, Copy, Debug)]
enum Pending {
    /// Rewrite the packet's endpoints.
    Packet(Endpoints),
    /// An ICMP error about a translated connection.
    IcmpError(crate::nat::IcmpErrorRewrite),
}

/// Far keys of removed translated states a shard keeps for
/// [`Pipeline::poll_aliases`] between two polls (more are counted
/// `alias_lost`: their aliases stay until re-pointed).
const ALIAS_REMOVALS: usize = 16_384;

/// Most ports `nat-to` tries for one new connection before giving up
/// (counted `translation-failed`): bounded work per packet, however full
/// the range.
const NAT_PORT_TRIES: u32 = 512;

impl Pipeline {
    /// A pipeline for one worker with a shard of `state_capacity` states.
    pub fn new(config: PipelineConfig, rules: Arc<Ruleset>, shard: Shard) -> Pipeline {
        let rule_counters = vec![RuleCounters::default(); rules.len()];
        let k = crate::flow::hash_secret().0;
        let rng = (k[2]
            ^ k[5].rotate_left(17)
            ^ (config.worker as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            | 1;
        let tables_epoch = rules.table_epoch();
        let tables = rules.table_set();
        let frags = crate::frag::FragTable::new(config.frag_capacity);
        Pipeline {
            config,
            rules,
            tables,
            tables_epoch,
            recent_rules: Vec::with_capacity(RECENT_RULESETS),
            rule_counters,
            shard,
            replies: Box::new([[0; REPLY_MAX]; MAX_BURST]),
            reply_lens: [0; MAX_BURST],
            reply_slot: 0,
            arrival_placed: false,
            router: None,
            sync: None,
            lookahead_min_states: LOOKAHEAD_MIN_STATES,
            pending: None,
            pending_route: None,
            pending_seq: None,
            pending_scrub: None,
            rng,
            timeout_scale: TimeoutScale::NONE,
            aliases: None,
            alias_out: Vec::new(),
            alias_in: Vec::new(),
            redirected: false,
            overload: None,
            now_s: 0,
            src_sweep: 0,
            frags,
            frag_scratch: vec![0; crate::frag::SCRATCH_LEN].into_boxed_slice(),
            cookies: syncookie::CookieState::new(),
            pflog: None,
            log_intents: pflog::Intents::default(),
            counters: WorkerCounters::default(),
        }
    }

    /// Connects this worker to the control thread for `overload <table>`
    /// events (without it, an overloading source is refused its state
    /// and counted, but added to no table).
    pub fn set_overload(&mut self, events: Producer<OverloadEvent>) {
        self.overload = Some(events);
    }

    /// Connects this worker to the others for cross-worker aliases of
    /// translated states (see [`crate::alias`]): `out[w]` carries messages
    /// to worker `w` (`None` at this worker's index), `inn` from each other
    /// worker; the table takes up to `capacity` aliases.
    pub fn set_aliases(
        &mut self,
        out: Vec<Option<Producer<AliasMsg>>>,
        inn: Vec<Consumer<AliasMsg>>,
        capacity: usize,
    ) {
        self.alias_out = out;
        self.alias_in = inn;
        self.aliases = Some(AliasTable::new(capacity));
        self.shard.record_far_removals(ALIAS_REMOVALS);
    }

    /// Applies the other workers' alias messages and sends this worker's
    /// removals (between bursts).
    pub fn poll_aliases(&mut self) {
        let Some(table) = self.aliases.as_mut() else {
            return;
        };
        for ring in &mut self.alias_in {
            while let Some(m) = ring.pop() {
                match m {
                    AliasMsg::Add { key, owner } => {
                        if !table.insert(key, key.symmetric_hash(), owner) {
                            self.counters.alias_lost += 1;
                        }
                    }
                    AliasMsg::Remove { key, owner } => {
                        table.remove(&key, key.symmetric_hash(), owner);
                    }
                }
            }
        }
        let me = self.config.worker;
        let workers = self.config.workers;
        for key in self.shard.take_far_removals() {
            let w = self
                .config
                .placement
                .owner(&key, key.symmetric_hash(), workers);
            if w == me {
                continue;
            }
            let msg = AliasMsg::Remove {
                key,
                owner: me as u16,
            };
            let sent = match self.alias_out.get_mut(w) {
                Some(Some(p)) => p.push(msg).is_ok(),
                _ => false,
            };
            if !sent {
                self.counters.alias_lost += 1;
            }
        }
        for p in self.alias_out.iter_mut().flatten() {
            p.publish();
        }
    }

    /// The worker an alias names for `info`'s flow, if another one.
    #[inline]
    fn alias_of(&self, info: &PacketInfo) -> Option<u16> {
        let table = self.aliases.as_ref().filter(|t| !t.is_empty())?;
        let (key, _) = info.key();
        table
            .get(&key, key.symmetric_hash())
            .filter(|w| *w as usize != self.config.worker)
    }

    /// Tells the worker owning `tr`'s far key that its packets belong
    /// here, when that is another worker. False if it cannot be told (no
    /// alias rings, or the ring is full): the state must not be kept.
    fn announce_far_key(&mut self, tr: &Translation) -> bool {
        if !tr.is_some() || self.config.workers <= 1 {
            return true;
        }
        let w = self
            .config
            .placement
            .owner(&tr.key, tr.key.symmetric_hash(), self.config.workers);
        if w == self.config.worker {
            return true;
        }
        let msg = AliasMsg::Add {
            key: tr.key,
            owner: self.config.worker as u16,
        };
        match self.alias_out.get_mut(w) {
            Some(Some(p)) => {
                if p.push(msg).is_ok() {
                    // Published now: the first answer may be on its way
                    // as soon as this packet leaves.
                    p.publish();
                    true
                } else {
                    self.counters.alias_lost += 1;
                    false
                }
            }
            _ => false,
        }
    }

    /// The next hop of `route-to` / `reply-to` `route` for a new
    /// connection (`pkt` as it leaves): its port given or found by a route
    /// lookup of the next hop; `None` when no hop serves the family or the
    /// next hop has no route.
    fn pick_route(&mut self, route: u16, pkt: &PacketInfo) -> Option<StateRoute> {
        let random = self.next_random();
        let pool = self.rules.route(route)?;
        let (port, addr) = pool.choose(pkt.af, &pkt.src, random)?;
        let port = match (port, addr) {
            (Some(p), _) => p,
            (None, Some(a)) => self.router.as_ref()?.routing.lookup(pkt.af, &a)?.port,
            (None, None) => return None,
        };
        Some(StateRoute {
            kind: pool.kind,
            port,
            addr: addr.unwrap_or(Addr::ZERO),
        })
    }

    /// [`Pipeline::process_owned`] for a packet another worker's alias
    /// sent here (the state's holder): decided here, never sent on.
    pub fn process_redirected(&mut self, frame: &mut [u8], in_port: u16, now: Instant) -> Verdict {
        self.redirected = true;
        let v = self.process_owned(frame, in_port, now);
        self.redirected = false;
        v
    }

    /// A random word (xorshift64*), for pool and port choices.
    #[inline]
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `nat-to` for a new connection (pf's `pf_map_addr` and
    /// `pf_get_sport`): rewrites `pkt`'s source to an address of pool
    /// `pool` and a port of its range that no state of this worker uses
    /// towards the same destination (and that this worker owns, so both
    /// keys of the state hash to it). False when none is free.
    fn map_nat(&mut self, pkt: &mut PacketInfo, pool: u16) -> bool {
        let random = self.next_random();
        let rules = Arc::clone(&self.rules);
        let Some(pool) = rules.pool(pool) else {
            return false;
        };
        let Some(addr) = pool.map_addr(pkt.af, &pkt.src, &pkt.src, random) else {
            return false;
        };
        let query = matches!(pkt.l4, L4Info::Icmp(i) if !i.is_error);
        let ported =
            pkt.proto == crate::flow::proto::TCP || pkt.proto == crate::flow::proto::UDP || query;
        let usable = |this: &Self, port: u16| {
            let (key, _) = FlowKey::from_packet(pkt.af, pkt.proto, addr, port, pkt.dst, pkt.dport);
            let hash = key.symmetric_hash();
            this.shard.lookup(&key, hash).is_none()
                && (this.config.workers <= 1
                    || this.config.placement.owner(&key, hash, this.config.workers)
                        == this.config.worker)
        };
        if !ported || pool.static_port {
            if !usable(self, pkt.sport) {
                return false;
            }
            pkt.src = addr;
            return true;
        }
        let (low, high) = pool.nat_ports();
        let span = u32::from(high - low) + 1;
        let start = (random >> 32) as u32 % span;
        for i in 0..span.min(NAT_PORT_TRIES) {
            let port = low + ((start + i) % span) as u16;
            if usable(self, port) {
                pkt.src = addr;
                pkt.sport = port;
                return true;
            }
        }
        false
    }

    /// `rdr-to` for a new connection: rewrites `pkt`'s destination to an
    /// address of pool `pool` (and its port, for TCP and UDP). False when
    /// the pool has no address of the packet's family.
    fn map_rdr(&mut self, pkt: &mut PacketInfo, pool: u16, port_base: u16) -> bool {
        let random = self.next_random();
        let Some(pool) = self.rules.pool(pool) else {
            return false;
        };
        let Some(addr) = pool.map_addr(pkt.af, &pkt.dst, &pkt.src, random) else {
            return false;
        };
        if pkt.proto == crate::flow::proto::TCP || pkt.proto == crate::flow::proto::UDP {
            pkt.dport = pool.rdr_port(pkt.dport, port_base);
        }
        pkt.dst = addr;
        true
    }

    /// Applies the scrub the filter decided (`pending_scrub`) to the frame
    /// (IP header at `l3`, transport at `l4`), after any translation.
    #[inline]
    fn apply_scrub(&mut self, frame: &mut [u8], l3: usize, l4: usize, info: &PacketInfo) {
        let Some(a) = self.pending_scrub.take() else {
            return;
        };
        match info.af {
            crate::flow::Af::Inet => {
                let id = if a.wants_random_id() {
                    self.next_random() as u16
                } else {
                    0
                };
                crate::scrub::apply_v4(frame, l3, &a, id);
            }
            crate::flow::Af::Inet6 => crate::scrub::apply_v6(frame, l3, &a),
        }
        if a.values.max_mss != 0 && matches!(info.l4, L4Info::Tcp(_)) {
            crate::scrub::clamp_mss(frame, l4, a.values.max_mss);
        }
    }

    /// Applies the translation the filter decided to the frame (IP header
    /// at `l3`, transport at `l4`); false if the frame could not be
    /// rewritten. Returns the packet's new destination in `dst`.
    fn apply_pending(
        &mut self,
        frame: &mut [u8],
        l3: usize,
        l4: usize,
        info: &PacketInfo,
    ) -> Option<Addr> {
        if let Some((seq_add, ack_sub)) = self.pending_seq.take() {
            if !crate::nat::modulate(frame, l4, seq_add, ack_sub) {
                return None;
            }
            if self.pending.is_none() {
                return Some(info.dst);
            }
        }
        match self.pending.take()? {
            Pending::Packet(to) => crate::nat::rewrite(frame, l3, l4, info, &to).then_some(to.dst),
            Pending::IcmpError(rw) => {
                crate::nat::rewrite_icmp_error(frame, l3, l4, info, &rw).then_some(rw.outer.1)
            }
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
            clears: Vec::with_capacity(CLEARS_MAX),
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
                translation: Translation::NONE,
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
        self.clear_step();
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
                            &Translation::NONE,
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
                if let Some((st, tr)) = self
                    .shard
                    .find_by_id(id, creatorid)
                    .and_then(|slot| self.shard.get_mut_translated(slot))
                {
                    export_or_owe(
                        &mut self.sync,
                        &mut self.counters,
                        SyncAction::FullUpdate,
                        st,
                        &tr,
                        now,
                    );
                }
            }
            ImportRecord::Delete { id, creatorid } => {
                if let Some(slot) = self.shard.find_by_id(id, creatorid) {
                    self.remove_state(slot);
                    self.counters.imported += 1;
                } else {
                    let st = crate::state::State::identity_only(id, creatorid, now);
                    push_export(
                        &mut self.sync,
                        &mut self.counters,
                        SyncAction::NotDeleted,
                        &st,
                        &Translation::NONE,
                        now,
                    );
                }
            }
            ImportRecord::Clear { creatorid } => {
                // Applied by `clear_step`, a bounded slice per poll; a
                // repeated CLR for the same creator walks again from the
                // start; beyond CLEARS_MAX distinct creators it is dropped.
                self.counters.imported += 1;
                if let Some(s) = self.sync.as_mut() {
                    if let Some(c) = s.clears.iter_mut().find(|c| c.0 == creatorid) {
                        c.1 = 0;
                    } else if s.clears.len() < CLEARS_MAX {
                        s.clears.push((creatorid, 0));
                    }
                }
            }
            ImportRecord::Upsert {
                mut state,
                translation,
                age_s,
                expire_s,
            } => {
                self.counters.imported += 1;
                let by_id = self.shard.find_by_id(state.id(), state.creatorid());
                let found =
                    by_id.or_else(|| self.shard.lookup(state.key(), state.key().symmetric_hash()));
                if let Some(slot) = found {
                    if by_id.is_none() {
                        self.attach_imported_translation(slot, &state, translation);
                    }
                    let (src, dst, timeout) = (state.src, state.dst, state.timeout);
                    self.merge_import(slot, &src, &dst, timeout, now);
                } else {
                    state.import_times(now, age_s, expire_s, &self.rules.options.timeouts);
                    // A peer's state names a rule of the peer's ruleset:
                    // here it belongs to no rule (pf gives states imported
                    // from the network its default rule).
                    state.rule = crate::state::NO_RULE;
                    state.state_flags &= state_flags::WIRE;
                    if !self.reserve_state() {
                        self.counters.drop(DropReason::StateTableFull);
                    } else {
                        match self.insert_imported(state, translation) {
                            Ok(()) => {
                                self.counters.states_created += 1;
                                // Its far side's packets must find it here.
                                let _ = self.announce_far_key(&translation);
                            }
                            Err(e) => {
                                self.release_reservation(&state);
                                self.counters.drop(match e {
                                    InsertError::NoRecord => DropReason::SideRecordsFull,
                                    _ => DropReason::StateTableFull,
                                });
                            }
                        }
                    }
                }
                self.note_shard_len();
            }
        }
    }

    /// A peer's translated state whose stack side this worker already
    /// holds untranslated, under another id of the same creator: an
    /// OpenBSD peer keeps an outbound NAT connection as two states (the
    /// untranslated inbound one on its LAN interface, then the translated
    /// outbound one on its WAN interface) where dpf keeps one. The second
    /// one's translation goes onto the state the first one made, so this
    /// box rewrites the connection as the peer does. A far key another
    /// state holds is counted `translation-failed` (pf: EEXIST, §5.4).
    fn attach_imported_translation(
        &mut self,
        slot: SlotId,
        import: &crate::state::State,
        translation: Translation,
    ) {
        let untranslated_twin = self
            .shard
            .get(slot)
            .is_some_and(|st| !st.is_translated() && st.creatorid() == import.creatorid());
        if !translation.is_some() || !untranslated_twin {
            return;
        }
        match self.shard.attach_translation(slot, translation) {
            Ok(()) => {
                let _ = self.announce_far_key(&translation);
            }
            Err(InsertError::Full) => self.counters.drop(DropReason::StateTableFull),
            Err(InsertError::NoRecord) => self.counters.drop(DropReason::SideRecordsFull),
            Err(_) => self.counters.drop(DropReason::TranslationFailed),
        }
    }

    /// Inserts a peer's state. When it is translated and its far key is
    /// held by an untranslated state of the same creator — an OpenBSD
    /// peer's other half of the connection (for `rdr-to`, its outbound
    /// state on the LAN interface), received first — that state gives way
    /// to this one, which keys the connection on both sides.
    fn insert_imported(
        &mut self,
        state: crate::state::State,
        translation: Translation,
    ) -> Result<(), InsertError> {
        match self.shard.insert_translated(state, translation) {
            Ok(_) => Ok(()),
            Err(InsertError::Exists(twin))
                if translation.is_some()
                    && self.shard.get(twin).is_some_and(|st| {
                        !st.is_translated()
                            && st.creatorid() == state.creatorid()
                            && *st.key() == translation.key
                    }) =>
            {
                // The twin goes only if this state can take its place: it
                // needs a record, which the twin may not have held.
                let twin_record = self.shard.get(twin).is_some_and(|st| st.has_side_record());
                if !twin_record && !self.shard.record_available() {
                    return Err(InsertError::NoRecord);
                }
                self.remove_state(twin);
                self.shard.insert_translated(state, translation).map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// Advances the oldest pending pfsync CLR by [`CLEAR_SLOTS_PER_POLL`]
    /// slab slots (bounded work per worker loop, however large the table).
    fn clear_step(&mut self) {
        let Some(&(creatorid, from)) = self.sync.as_ref().and_then(|s| s.clears.first()) else {
            return;
        };
        let now_s = self.now_s;
        let (config, rules, recent) = (&self.config, &*self.rules, &self.recent_rules[..]);
        let rule_counters = &mut self.rule_counters;
        let mut removed = 0u64;
        let next = self.shard.scan_remove(
            from,
            CLEAR_SLOTS_PER_POLL,
            |st| st.creatorid() == creatorid,
            |st| {
                release_state(config, rules, recent, st, now_s);
                forget_rule_state(rules, rule_counters, st);
                removed += 1;
            },
        );
        self.counters.states_removed += removed;
        self.note_shard_len();
        if let Some(s) = self.sync.as_mut() {
            match next {
                Some(n) => {
                    if let Some(c) = s.clears.first_mut() {
                        c.1 = n;
                    }
                }
                None => {
                    s.clears.remove(0);
                }
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
        let Some((st, tr)) = self.shard.get_mut_translated(slot) else {
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
                &tr,
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
            neighbors_changed: false,
            resolve,
            hold: NeighborHold::new(),
        });
    }

    /// Replaces the neighbour snapshot (between bursts).
    pub fn set_neighbors(&mut self, neighbors: Arc<Neighbors>) {
        if let Some(r) = self.router.as_mut() {
            r.neighbors = neighbors;
            r.neighbors_changed = true;
        }
    }

    /// Publishes pending resolve requests (once per burst).
    pub fn publish_requests(&mut self) {
        if let Some(p) = self.router.as_mut().and_then(|r| r.resolve.as_mut()) {
            p.publish();
        }
    }

    /// The answer written for the [`Verdict::Reply`] of frame `index` of
    /// the last burst (index 0 for [`Pipeline::process`] and
    /// [`Pipeline::process_owned`]). Valid until the next call that decides
    /// packets.
    pub fn reply(&self, index: usize) -> &[u8] {
        match (self.replies.get(index), self.reply_lens.get(index)) {
            (Some(buf), Some(&len)) => &buf[..usize::from(len)],
            _ => &[],
        }
    }

    /// Switches to a new ruleset (between bursts). Existing states survive;
    /// per-rule counters restart.
    pub fn set_rules(&mut self, rules: Arc<Ruleset>) {
        self.rule_counters.clear();
        self.rule_counters
            .resize(rules.len(), RuleCounters::default());
        let old = std::mem::replace(&mut self.rules, rules);
        self.tables_epoch = self.rules.table_epoch();
        self.tables = self.rules.table_set();
        if !Arc::ptr_eq(&old, &self.rules) {
            self.recent_rules.truncate(RECENT_RULESETS - 1);
            self.recent_rules.insert(0, old);
        }
    }

    /// The ruleset in use.
    pub fn rules(&self) -> &Arc<Ruleset> {
        &self.rules
    }

    /// Per-rule counters of this worker (index = rule number).
    pub fn rule_counters(&self) -> &[RuleCounters] {
        &self.rule_counters
    }

    /// Zeroes this worker's per-rule counters (`dpfctl -z`); the states
    /// a rule has now are not a counter and stay.
    pub fn zero_rule_counters(&mut self) {
        for c in &mut self.rule_counters {
            *c = RuleCounters {
                states_cur: c.states_cur,
                ..RuleCounters::default()
            };
        }
    }

    /// The ruleset in use, then those the last reloads replaced (which
    /// states created before a reload still name), newest first.
    pub fn rulesets(&self) -> impl Iterator<Item = &Arc<Ruleset>> {
        std::iter::once(&self.rules).chain(self.recent_rules.iter())
    }

    /// This worker's state shard.
    pub fn shard(&self) -> &Shard {
        &self.shard
    }

    /// The shard's gauges in the counters (after states came or went).
    #[inline]
    fn note_shard_len(&mut self) {
        self.counters.states = self.shard.len() as u64;
        self.counters.side_records_used = self.shard.records_used() as u64;
    }

    /// Replaces this worker's state shard (benchmarks refill a full one);
    /// the box's state count follows (the old shard's states are gone, the
    /// new one's are counted).
    pub fn replace_shard(&mut self, shard: Shard) {
        let (old, new) = (self.shard.len(), shard.len());
        let total = &self.config.states_total;
        let _ = total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            Some(n.saturating_sub(old) + new)
        });
        self.shard = shard;
        self.note_shard_len();
    }

    /// Expires states: examines at most `budget_slots` slots. Also drops
    /// the datagrams whose reassembly took longer than `set timeout frag`.
    pub fn expire(&mut self, now: Instant, budget_slots: usize) -> usize {
        self.now_s = crate::state::entry::secs_of(now);
        self.sweep_sources(budget_slots);
        let now_s = self.now_s;
        self.refresh_timeout_scale();
        let frag_timeout = self.rules.options.frag_timeout_s;
        self.frags.expire(now, frag_timeout, &mut self.counters);
        let (shard, sync, counters) = (&mut self.shard, &mut self.sync, &mut self.counters);
        let (config, rules, recent) = (&self.config, &*self.rules, &self.recent_rules[..]);
        let rule_counters = &mut self.rule_counters;
        // Each expired state is exported as a DEL while it is removed; a
        // live state marked owed is sent again in full, one with packets
        // not yet announced as a compressed update.
        let global = self.timeout_scale;
        let timeouts = |st: &crate::state::State| state_timeouts(rules, recent, st, global);
        let removed = shard.expire_slice_visit(now, budget_slots, timeouts, |st, tr, expired| {
            if expired {
                release_state(config, rules, recent, st, now_s);
                forget_rule_state(rules, rule_counters, st);
                delete_or_owe(sync, counters, st, now);
            } else if st.state_flags & state_flags::SYNC_OWED != 0 {
                st.state_flags &= !state_flags::SYNC_OWED;
                if push_export(sync, counters, SyncAction::FullUpdate, st, tr, now) {
                    counters.export_resent += 1;
                } else {
                    st.state_flags |= state_flags::SYNC_OWED;
                }
            } else if st.sync_updates > 0 && sync.is_some() {
                // Packets since the last update, fewer than maxupd: the peer
                // hears of them within a sweep (~1 s), as pfsync's 1-second
                // slice timer would send them.
                st.sync_updates = 0;
                export_or_owe(sync, counters, SyncAction::Update, st, tr, now);
            }
        });
        self.counters.states_removed += removed as u64;
        self.note_shard_len();
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
        let (config, rules, recent) = (&self.config, &*self.rules, &self.recent_rules[..]);
        let rule_counters = &mut self.rule_counters;
        let now_s = self.now_s;
        let mut removed = 0u64;
        let next = shard.scan_remove(from, max_slots, pred, |st| {
            release_state(config, rules, recent, st, now_s);
            forget_rule_state(rules, rule_counters, st);
            removed += 1;
            if export {
                // Operator kills carry no export time (`at` is 0).
                delete_or_owe(sync, counters, st, Instant::default());
            }
        });
        self.counters.states_removed += removed;
        self.note_shard_len();
        (next, removed)
    }

    /// Detaches the states whose source node `pred` selects from it,
    /// among `max_slots` slab slots from `from` (`dpfctl -K`, `-F
    /// Sources`: pf's states outlive their killed nodes and no longer
    /// count); the node goes once it has no state. Returns the next cursor
    /// (`None` at the end) and how many states were detached.
    pub fn detach_sources(
        &mut self,
        from: usize,
        max_slots: usize,
        mut pred: impl FnMut(&SourceKey) -> bool,
    ) -> (Option<usize>, u64) {
        let (config, rules, recent) = (&self.config, &*self.rules, &self.recent_rules[..]);
        let now_s = self.now_s;
        let mut detached = 0u64;
        let next = self.shard.scan_mut(from, max_slots, |st| {
            let Some(global) = st.src_tracking() else {
                return;
            };
            if pred(&source_key(st, global)) {
                release_source(config, rules, recent, st, now_s, Some(0));
                st.clear_src_tracking();
                detached += 1;
            }
        });
        (next, detached)
    }

    /// Frees the source nodes of this worker's share of the table whose
    /// time is up (a slice per call), giving back their rules'
    /// `max-src-nodes` places.
    fn sweep_sources(&mut self, budget_slots: usize) {
        let sources = &self.config.sources;
        let slots = sources.slots();
        let (w, n) = (self.config.worker, self.config.workers.max(1));
        let (lo, hi) = (slots * w / n, slots * (w + 1) / n);
        if hi <= lo {
            return;
        }
        let from = self.src_sweep.clamp(lo, hi);
        let len = budget_slots.max(64).min(hi - from);
        let (rules, recent) = (&*self.rules, &self.recent_rules[..]);
        let next = sources.sweep(from, len, self.now_s, |owner| {
            if let Some((r, nr)) = ruleset_of_tag(rules, recent, owner) {
                r.release_src_node(nr);
            }
        });
        self.src_sweep = if next == 0 || next >= hi { lo } else { next };
    }

    /// Counts a new state against its source node when its rule tracks
    /// sources (pf's `pf_insert_src_node`); false (counted) when a limit
    /// refuses it.
    fn attach_source(&mut self, st: &mut crate::state::State, rule_nr: u32, now: Instant) -> bool {
        let Some(t) = self.rules.src_track(rule_nr) else {
            return true;
        };
        let key = source_key(st, t.global);
        let limits = crate::srcnodes::AttachLimits {
            max_states: t.max_src_states,
            rate_secs: t.max_src_conn_rate.1,
            owner: st.rule,
        };
        let sources = &self.config.sources;
        match sources.attach(
            &key,
            crate::state::entry::secs_of(now),
            limits,
            self.rules.src_node_budget(rule_nr),
            self.rules.options.limit_src_nodes,
        ) {
            Ok(()) => {
                st.set_src_tracked(t.global);
                true
            }
            Err(e) => {
                sources.count(match e {
                    AttachError::States => LimitCounter::MaxSrcStates,
                    _ => LimitCounter::MaxSrcNodes,
                });
                false
            }
        }
    }

    /// A tracked TCP state reached ESTABLISHED (pf's `pf_src_connlimit`):
    /// counts the connection; true when its source is over `max-src-conn`
    /// or `max-src-conn-rate` — then an `overload` table gets the source
    /// (through the control thread) and the caller kills the state.
    fn src_connlimit(
        config: &PipelineConfig,
        rules: &Ruleset,
        recent: &[Arc<Ruleset>],
        overload: &mut Option<Producer<OverloadEvent>>,
        st: &mut crate::state::State,
        now: Instant,
    ) -> bool {
        let Some(global) = st.src_tracking() else {
            return false;
        };
        st.set_src_conn();
        let Some(t) = ruleset_of_tag(rules, recent, st.rule).and_then(|(r, nr)| r.src_track(nr))
        else {
            return false;
        };
        let key = source_key(st, global);
        let sources = &config.sources;
        let (conn, rate) = (t.max_src_conn, t.max_src_conn_rate);
        let over = sources.establish(
            &key,
            crate::state::entry::secs_of(now),
            conn,
            rate.0,
            rate.1,
        );
        if !over {
            return false;
        }
        sources.count(if rate.0 != 0 {
            LimitCounter::MaxSrcConnRate
        } else {
            LimitCounter::MaxSrcConn
        });
        if let Some(o) = &t.overload {
            let sent = OverloadEvent::new(key.af, key.addr, &o.table, o.flush, st.rule)
                .zip(overload.as_mut())
                .is_some_and(|(ev, p)| {
                    let ok = p.push(ev).is_ok();
                    // Published at once: the table should have it before
                    // the source's next connection.
                    p.publish();
                    ok
                });
            sources.count(if sent {
                LimitCounter::OverloadTable
            } else {
                LimitCounter::OverloadLost
            });
        }
        true
    }

    /// Decides the fate of one frame received on `in_port`. The frame may be
    /// rewritten in place. Counts the verdict.
    #[inline]
    pub fn process(&mut self, frame: &mut [u8], in_port: u16, now: Instant) -> Verdict {
        self.now_s = crate::state::entry::secs_of(now);
        self.refresh_tables();
        self.process_at(frame, in_port, now, 0)
    }

    /// [`Pipeline::process`] for frame `slot` of a burst (its answer, if
    /// any, goes to reply slot `slot`).
    #[inline]
    fn process_at(&mut self, frame: &mut [u8], in_port: u16, now: Instant, slot: usize) -> Verdict {
        self.reply_slot = slot;
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
        self.now_s = crate::state::entry::secs_of(now);
        self.refresh_tables();
        let lane = self.lane_mode(in_port);
        if lane.is_none() && self.shard.len() < self.lookahead_min_states {
            for (i, (frame, verdict)) in frames[..n].iter_mut().zip(verdicts.iter_mut()).enumerate()
            {
                *verdict = self.process_at(frame, in_port, now, i);
            }
        } else {
            // In chunks, so the per-chunk arrays stay small to set up.
            for (chunk, (frames, verdicts)) in frames[..n]
                .chunks_mut(AHEAD_CHUNK)
                .zip(verdicts.chunks_mut(AHEAD_CHUNK))
                .enumerate()
            {
                let first = chunk * AHEAD_CHUNK;
                self.decide_ahead(frames, first, in_port, now, verdicts, lane);
            }
        }
        for v in verdicts.iter_mut().skip(n) {
            *v = Verdict::Drop(DropReason::Unclassified);
            self.count(*v);
        }
    }

    /// Takes the ruleset's tables anew if they changed since the last
    /// burst: one atomic load when they did not.
    #[inline]
    fn refresh_tables(&mut self) {
        self.refresh_timeout_scale();
        let epoch = self.rules.table_epoch();
        if epoch != self.tables_epoch {
            self.tables_epoch = epoch;
            self.tables = self.rules.table_set();
        }
    }

    /// Takes the box's adaptive timeout factor anew (pf's
    /// `pf_state_expires` with `pf_status.states`): once per burst and per
    /// expiry sweep, one load of the shared state count, so the per-packet
    /// expiry check reads a local copy.
    #[inline]
    fn refresh_timeout_scale(&mut self) {
        let states = self.config.states_total.load(Ordering::Relaxed) as u64;
        self.timeout_scale = self.rules.options.timeouts.scale(states);
        self.refresh_syncookies();
    }

    /// The box's adaptive timeout factor as of the last burst or sweep.
    pub fn timeout_scale(&self) -> TimeoutScale {
        self.timeout_scale
    }

    /// How this box places flows on workers.
    pub fn placement(&self) -> &crate::rss::Placement {
        &self.config.placement
    }

    /// Sets the table size from which bursts are looked up ahead (tests
    /// use 0 to exercise that path on small tables).
    pub fn set_lookahead_min_states(&mut self, states: usize) {
        self.lookahead_min_states = states;
    }

    /// Whether, and how, the established lane takes a burst received on
    /// `in_port`: in wire mode towards the port's wire peer, in router mode
    /// by the routing table; `None` for a port without a wire peer or an
    /// interface of `set skip on`.
    #[inline]
    fn lane_mode(&self, in_port: u16) -> Option<Lane> {
        if self.rules.is_skipped(IfIndex(in_port)) {
            return None;
        }
        if self.router.is_some() {
            return Some(Lane::Routed);
        }
        let egress = *self.config.wire_peer.get(in_port as usize)?;
        if egress == NO_EGRESS || self.rules.is_skipped(IfIndex(egress)) {
            return None;
        }
        Some(Lane::Wire(egress))
    }

    /// The established lane in router mode, for a packet the burst pass
    /// parsed with [`crate::wire::segment4`] and looked up: what
    /// [`Pipeline::decide_routed`] does for a packet that is not for the
    /// box (nor a group address), arrives on our MAC (or a virtual MAC we
    /// are MASTER for) with a TTL above 1, has a route whose port is not
    /// skipped and a resolved next hop — and whose state
    /// [`Pipeline::lane_track`] takes: the frame is rewritten for its next
    /// hop (MACs, TTL with the checksum) and forwarded. `None` (nothing
    /// changed) sends it the full way, which decides everything else.
    #[inline]
    fn lane_routed(
        &mut self,
        frame: &mut [u8],
        a: &LaneAhead,
        in_port: u16,
        now: Instant,
    ) -> Option<Verdict> {
        let seg = &a.seg;
        let router = self.router.as_ref()?;
        let routing = &router.routing;
        let dst = Addr::v4(seg.dst);
        if seg.ttl <= 1
            || seg.dst[0] >= 224
            || seg.dst == [255; 4]
            || routing.owner_of(Af::Inet, &dst).is_some()
            || routing.vips.lookup(Af::Inet, &dst).is_some()
        {
            return None;
        }
        let dst_mac: [u8; 6] = frame.get(..6)?.try_into().ok()?;
        if routing.mac(in_port) != Some(dst_mac) {
            match crate::route::vmac_vhid(&dst_mac) {
                Some(vhid) if routing.vips.is_master(in_port, vhid) => {}
                _ => return None,
            }
        }
        let hop = routing.lookup(Af::Inet, &dst)?;
        if self.rules.is_skipped(IfIndex(hop.port)) {
            return None;
        }
        let egress_mac = routing.mac(hop.port).unwrap_or([0; 6]);
        let next_mac = router.neighbors.get(Af::Inet, &hop.addr)?.mac;
        if !self.lane_track(a, now) {
            return None;
        }
        frame[0..6].copy_from_slice(&next_mac);
        frame[6..12].copy_from_slice(&egress_mac);
        if let Some(ip) = frame.get_mut(ethernet::HEADER_LEN..) {
            crate::wire::ipv4::Packet::new_unchecked(ip).decrement_ttl();
        }
        Some(Verdict::Forward(hop.port))
    }

    /// The established lane's tracking of a TCP or UDP packet over IPv4
    /// the burst pass looked up: `true` when the flow's state is a plain
    /// state (no translation, route, scrub, modulation or per-packet log),
    /// not expired, and [`track_established`] (TCP) or
    /// [`track_udp_multiple`] (UDP) takes the packet —
    /// exactly what the full path would decide and do. `None` (nothing
    /// changed) sends the packet the full way.
    #[inline]
    fn lane_track(&mut self, a: &LaneAhead, now: Instant) -> bool {
        let seg = &a.seg;
        // The burst pass's candidate (a tag match), confirmed by its key.
        let (lo, lo_port, hi, hi_port) = if a.swapped {
            (seg.dst, seg.dport, seg.src, seg.sport)
        } else {
            (seg.src, seg.sport, seg.dst, seg.dport)
        };
        let hit = match a.slot {
            Some((slot, false))
                if self
                    .shard
                    .key_at(slot)
                    .is_some_and(|k| k.is_v4_flow(seg.proto, lo, lo_port, hi, hi_port)) =>
            {
                a.slot
            }
            _ => {
                let (key, _) = FlowKey::from_v4(seg.proto, seg.src, seg.sport, seg.dst, seg.dport);
                self.shard.lookup_side(&key, a.hash)
            }
        };
        let Some((slot, false)) = hit else {
            return false;
        };
        let Some(st) = self.shard.get_mut(slot) else {
            return false;
        };
        if !lane_state(st, self.pflog.is_some()) {
            return false;
        }
        let (t, scale) = state_timeouts(&self.rules, &self.recent_rules, st, self.timeout_scale);
        let from_src = st.is_from_src(a.swapped);
        if st.is_expired_scaled_s(self.now_s, t, scale)
            || !(if seg.proto == crate::flow::proto::TCP {
                track_established(st, &seg.tcp, seg.ip_len, from_src, now)
            } else {
                track_udp_multiple(st, seg.ip_len, from_src, now)
            })
        {
            return false;
        }
        lane_hit(&mut self.sync, &mut self.counters, st, now);
        true
    }

    /// The burst pass's start on a flow this worker owns (`placed`: the
    /// device put the packet on its owner): its hash, with the index
    /// bucket prefetched. `None` for a flow another worker owns (the full
    /// path hands the packet over).
    #[inline(always)]
    fn look_ahead(&self, key: FlowKey, swapped: bool, placed: bool) -> Option<Lookahead> {
        let hash = key.symmetric_hash();
        if !placed
            && self.config.placement.owner(&key, hash, self.config.workers) != self.config.worker
        {
            return None;
        }
        self.shard.prefetch_bucket(hash);
        Some(Lookahead {
            key,
            swapped,
            hash,
            slot: None,
            generation: 0,
        })
    }

    /// Whether this worker owns the IPv4 flow of `seg` (`hash`: its
    /// symmetric hash), for packets the device did not place.
    #[inline]
    fn owns_v4(&self, seg: &crate::wire::Segment4, hash: u64) -> bool {
        let workers = self.config.workers;
        let owner = match &self.config.placement {
            crate::rss::Placement::Hash => crate::rss::Placement::hash_owner(hash, workers),
            rss => {
                let (key, _) = FlowKey::from_v4(seg.proto, seg.src, seg.sport, seg.dst, seg.dport);
                rss.owner(&key, hash, workers)
            }
        };
        owner == self.config.worker
    }

    /// The burst's second step for one flow whose index bucket was
    /// prefetched: its state's slot, with that state prefetched. For the
    /// lane (`lane`), a candidate by tag only: the key is compared once the
    /// state's prefetch has landed.
    #[inline(always)]
    fn find_ahead(&self, a: &mut Option<Lookahead>, lane: Option<&mut LaneAhead>, generation: u64) {
        let slot = if let Some(l) = lane {
            l.slot = self.shard.candidate(l.hash);
            l.slot
        } else if let Some(a) = a {
            a.slot = self.shard.lookup_side(&a.key, a.hash);
            a.generation = generation;
            a.slot
        } else {
            None
        };
        if let Some((slot, _)) = slot {
            self.shard.prefetch_state(slot);
        }
    }

    /// The passes of [`Pipeline::process_burst`]: parse and hash every
    /// frame (prefetching its index bucket), look every flow up
    /// (prefetching its state), then decide each in order. With `lane`
    /// (see [`Pipeline::lane_mode`]), TCP and UDP over IPv4 are parsed by
    /// [`crate::wire::segment4`] and decided by [`Pipeline::lane_track`]
    /// (and, routed, [`Pipeline::lane_routed`]) when their state allows;
    /// the rest, and what the lane declines, take the full path. `first`
    /// is the index of `frames[0]` in the whole burst (replies are kept by
    /// it, see [`Pipeline::reply`]).
    fn decide_ahead(
        &mut self,
        frames: &mut [&mut [u8]],
        first: usize,
        in_port: u16,
        now: Instant,
        verdicts: &mut [Verdict],
        lane: Option<Lane>,
    ) {
        let n = frames.len().min(verdicts.len()).min(AHEAD_CHUNK);
        let placed = self.config.placement.places(in_port);
        // The lane's ownership check is needed only for packets the device
        // did not place and when there are other workers.
        let lane_owned = placed || self.config.workers <= 1;
        let secret = crate::flow::hash_secret();
        let mut classified: [Option<Result<Classified, WireError>>; AHEAD_CHUNK] =
            [None; AHEAD_CHUNK];
        let mut ahead: [Option<Lookahead>; AHEAD_CHUNK] = [None; AHEAD_CHUNK];
        let mut lanes: [Option<LaneAhead>; AHEAD_CHUNK] = [None; AHEAD_CHUNK];
        // Nothing below changes the shard until the decisions.
        let generation = self.shard.generation();
        for i in 0..n {
            // The second step for the packet LOOKUP_DISTANCE behind, whose
            // bucket has had that many packets' time to arrive: its state's
            // prefetch then lands while the rest of the burst is parsed.
            if let Some(j) = i.checked_sub(LOOKUP_DISTANCE) {
                self.find_ahead(&mut ahead[j], lanes[j].as_mut(), generation);
            }
            // Only what the lane can take: a SYN, FIN or RST, or a segment
            // without ACK, is tracked by the full path (parsed once, there).
            if let Some(seg) = lane
                .and_then(|_| crate::wire::segment4(frames[i]))
                .filter(|s| {
                    s.proto != crate::flow::proto::TCP || s.tcp.flags & LANE_FLAGS == LANE_ACK
                })
            {
                let (hash, swapped) = FlowKey::v4_hash_with(
                    &secret, seg.proto, seg.src, seg.sport, seg.dst, seg.dport,
                );
                if lane_owned || self.owns_v4(&seg, hash) {
                    self.shard.prefetch_bucket(hash);
                    lanes[i] = Some(LaneAhead {
                        seg,
                        hash,
                        swapped,
                        slot: None,
                    });
                    continue;
                }
            }
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
                // ICMP errors are owned by the flow they quote: decided
                // without a lookahead.
                if owner_key(info).is_some() {
                    classified[i] = Some(c);
                    continue;
                }
                let (key, swapped) = info.key();
                ahead[i] = self.look_ahead(key, swapped, placed);
            }
            classified[i] = Some(c);
        }
        for j in n.saturating_sub(LOOKUP_DISTANCE)..n {
            self.find_ahead(&mut ahead[j], lanes[j].as_mut(), generation);
        }
        for i in 0..n {
            // A reply is kept by its frame's index in the whole burst.
            self.reply_slot = first + i;
            if let (Some(a), Some(mode)) = (&lanes[i], lane) {
                let taken = match mode {
                    Lane::Wire(egress) => {
                        self.lane_track(a, now).then_some(Verdict::Forward(egress))
                    }
                    Lane::Routed => self.lane_routed(frames[i], a, in_port, now),
                };
                if let Some(v) = taken {
                    self.count(v);
                    verdicts[i] = v;
                    continue;
                }
                // Declined: the full path, which looks the flow up itself
                // (the candidate was never confirmed).
                classified[i] = Some(classify(frames[i], IfIndex(in_port), Direction::In));
            }
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
        // A worker may get handed-in packets between bursts of its own:
        // they see the tables as they are now too.
        self.refresh_tables();
        self.counters.handed_in += 1;
        self.reply_slot = 0;
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
            Verdict::SlowPath(_) => self.counters.slow_path += 1,
            Verdict::Handoff(_) => self.counters.handed_off += 1,
            // The firewall's own handshake (SYN cookies), counted as such.
            Verdict::Reply(_) if self.cookies.reply_reason.is_some() => {
                if let Some(r) = self.cookies.reply_reason.take() {
                    self.counters.drop(r);
                }
            }
            Verdict::Reply(_) => {
                self.counters.block_returns += 1;
                self.counters.drop(DropReason::BlockedByRule);
            }
            // Counted `forwarded` when released.
            Verdict::Hold(_) => self.counters.deferred += 1,
            // Counted `forwarded` or dropped when released.
            Verdict::AwaitNeighbor(_) => self.counters.neighbor_held += 1,
            // Counted with its datagram: forwarded or dropped.
            Verdict::Reassembly(_) => {}
        }
    }

    /// The decision for a parsed frame (`ahead`: its flow looked up by the
    /// burst pass, if it was), before its log events go out
    /// ([`Pipeline::decide`] in `pflog`).
    #[inline]
    fn decide_unlogged(
        &mut self,
        frame: &mut [u8],
        in_port: u16,
        now: Instant,
        owned: bool,
        classified: Result<Classified, WireError>,
        ahead: Option<&Lookahead>,
    ) -> Verdict {
        self.arrival_placed = !owned && self.config.placement.places(in_port);
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
            FrameKind::Ip {
                info,
                fragment,
                ip_options,
                l4_offset,
            } => {
                if fragment {
                    let l3 = classified.l3_offset as usize;
                    return self.fragment_in(frame, l3, in_port, now, owned);
                }
                let passes = Passes::Both {
                    in_port,
                    out_port: egress,
                };
                self.pending = None;
                self.pending_route = None;
                self.pending_seq = None;
                self.pending_scrub = None;
                let l3 = classified.l3_offset as usize;
                let v = match self.filter(&info, passes, ip_options, now, owned, ahead) {
                    Blocked(mode) => return self.answer(mode, &classified, frame, in_port),
                    Cookie(a) => return self.cookie_answer(a, &classified, in_port, None),
                    // A state imported from a routing peer may translate.
                    Decided(v) if self.pending.is_some() || self.pending_seq.is_some() => {
                        match self.apply_pending(frame, l3, l4_offset as usize, &info) {
                            Some(_) => v,
                            None => Verdict::Drop(DropReason::TranslationFailed),
                        }
                    }
                    Decided(v) => v,
                };
                if matches!(v, Verdict::Forward(_) | Verdict::Hold(_)) {
                    self.apply_scrub(frame, l3, l4_offset as usize, &info);
                }
                v
            }
            // A bridge passes only the EtherTypes it is told to
            // (`pass_ethertypes`, ARP by default): pf never sees them, so
            // everything else fails closed.
            FrameKind::Arp | FrameKind::Other
                if self.config.pass_ethertypes.passes(classified.ethertype) =>
            {
                Verdict::Forward(egress)
            }
            _ => Verdict::Drop(DropReason::EtherType),
        }
    }

    /// Router mode: ARP goes to the slow path (pf never sees it); IP to
    /// the box itself (its addresses, CARP addresses, broadcast and
    /// multicast) is filtered `in` on the receiving port and, when the
    /// rules let it in, goes to the slow path; so is a packet whose TTL
    /// runs out here (for ICMP time exceeded). The rest is routed (longest
    /// prefix), filtered `in` on the receiving port and `out` on the egress
    /// port, and rewritten (MACs, TTL with an incremental checksum) for its
    /// next hop. Tagged frames are dropped: dpf has no VLAN interfaces.
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
        if classified.vlan_tags > 0 {
            return Verdict::Drop(DropReason::Vlan);
        }
        let (info, fragment, ip_options, l3, l4) = match classified.kind {
            FrameKind::Arp => return Verdict::SlowPath(Punt::Arp),
            FrameKind::Other => return Verdict::Drop(DropReason::EtherType),
            FrameKind::Ip {
                info,
                fragment,
                ip_options,
                l4_offset,
            } => (
                info,
                fragment,
                ip_options,
                classified.l3_offset as usize,
                l4_offset as usize,
            ),
        };
        let routing = &router.routing;
        let local = is_group(&info)
            || routing.owner_of(info.af, &info.dst).is_some()
            || routing.vips.lookup(info.af, &info.dst).is_some();
        if !local {
            match routing.mac(in_port) {
                Some(mac) if mac == classified.dst_mac.0 => {}
                // A CARP virtual MAC: ours only while MASTER for its VHID.
                _ => match crate::route::vmac_vhid(&classified.dst_mac.0) {
                    Some(vhid) if routing.vips.is_master(in_port, vhid) => {}
                    Some(_) => return Verdict::Drop(DropReason::CarpBackup),
                    None => return Verdict::Drop(DropReason::NotForUs),
                },
            }
        }
        if fragment {
            return self.fragment_in(frame, l3, in_port, now, owned);
        }
        self.pending = None;
        self.pending_route = None;
        self.pending_seq = None;
        self.pending_scrub = None;
        let mut hop = None;
        // The destination as the packet leaves (translated or not).
        let mut dst_after = info.dst;
        let mut verdict = if local || info.ttl <= 1 {
            // To the box, or its TTL runs out here: only the `in` pass
            // applies (pf filters what the stack receives); what passes
            // goes to the slow path, which answers (echo, ND, CARP, pfsync,
            // time exceeded) through the `out` filter of
            // [`Pipeline::process_local_out`] — unless a translation
            // sends it on (the translated address of a `nat-to`
            // connection, an `rdr-to` service on a box address).
            if !local && routing.lookup(info.af, &info.dst).is_none() {
                return Verdict::Drop(DropReason::NoRoute);
            }
            let punt = if local {
                punt_of(&info)
            } else {
                Punt::TtlExceeded
            };
            match self.filter(&info, Passes::In(in_port), ip_options, now, owned, ahead) {
                Blocked(mode) => return self.answer(mode, &classified, frame, in_port),
                Cookie(a) => return self.cookie_answer(a, &classified, in_port, None),
                Decided(v @ (Verdict::Forward(_) | Verdict::Hold(_))) if self.pending.is_some() => {
                    v
                }
                Decided(Verdict::Forward(_)) => return self.to_box(punt, in_port),
                Decided(v) => return v,
            }
        } else if let Some(h) = routing.lookup(info.af, &info.dst) {
            hop = Some(h);
            let passes = Passes::Both {
                in_port,
                out_port: h.port,
            };
            match self.filter(&info, passes, ip_options, now, owned, ahead) {
                Blocked(mode) => return self.answer(mode, &classified, frame, in_port),
                Cookie(a) => return self.cookie_answer(a, &classified, in_port, hop),
                Decided(v @ (Verdict::Forward(_) | Verdict::Hold(_))) => v,
                Decided(v) => return v,
            }
        } else {
            // No route: only a `route-to` sends it on (pf routes it from
            // the `in` pass, before the routing table is asked).
            match self.filter(&info, Passes::In(in_port), ip_options, now, owned, ahead) {
                Blocked(mode) => return self.answer(mode, &classified, frame, in_port),
                Cookie(a) => return self.cookie_answer(a, &classified, in_port, None),
                Decided(v @ (Verdict::Forward(_) | Verdict::Hold(_)))
                    if self.pending_route.is_some() =>
                {
                    v
                }
                Decided(Verdict::Forward(_)) => return Verdict::Drop(DropReason::NoRoute),
                Decided(v) => return v,
            }
        };
        if self.pending.is_some() || self.pending_seq.is_some() {
            // Translated (or modulated): rewritten, then routed by its new
            // destination.
            let Some(dst) = self.apply_pending(frame, l3, l4, &info) else {
                return Verdict::Drop(DropReason::TranslationFailed);
            };
            dst_after = dst;
            let Some(router) = self.router.as_ref() else {
                return Verdict::Drop(DropReason::Unclassified);
            };
            let routing = &router.routing;
            if routing.owner_of(info.af, &dst).is_some()
                || routing.vips.lookup(info.af, &dst).is_some()
            {
                // Translated back to one of the box's own addresses (the
                // reply to a connection the box itself opened).
                return match verdict {
                    Verdict::Forward(_) => self.to_box(punt_of(&info), in_port),
                    v => v,
                };
            }
            let Some(h) = routing.lookup(info.af, &dst) else {
                return Verdict::Drop(DropReason::NoRoute);
            };
            hop = Some(h);
            if let Verdict::Forward(_) = verdict {
                verdict = Verdict::Forward(h.port);
            }
        }
        if let Some(r) = self.pending_route.take() {
            // `route-to` / `reply-to`: the state's port and next hop, not
            // the routing table's (the packet's own destination for
            // `route-to (if)`).
            let Some(router) = self.router.as_ref() else {
                return Verdict::Drop(DropReason::Unclassified);
            };
            let next = if r.addr == Addr::ZERO {
                dst_after
            } else {
                r.addr
            };
            let port = if r.port == crate::state::ROUTE_PORT_LOOKUP {
                match router.routing.lookup(info.af, &next) {
                    Some(h) => h.port,
                    None => return Verdict::Drop(DropReason::NoRoute),
                }
            } else {
                r.port
            };
            hop = Some(crate::route::NextHop { port, addr: next });
            if let Verdict::Forward(_) = verdict {
                verdict = Verdict::Forward(port);
            }
        }
        let Some(hop) = hop else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let Some(router) = self.router.as_ref() else {
            return Verdict::Drop(DropReason::Unclassified);
        };
        let egress_mac = router.routing.mac(hop.port).unwrap_or([0; 6]);
        let neighbor = router.neighbors.get(info.af, &hop.addr);
        // A packet held by pfsync `defer` is rewritten now and sent
        // as it is when released. The packet leaves rewritten for
        // its next hop: our MAC, TTL / hop limit one less; the next
        // hop's MAC now, or when it is resolved.
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
        // Scrub as the packet leaves (pf's `out` pass: `min-ttl` holds
        // after the decrement).
        self.apply_scrub(frame, l3, l4, &info);
        if let Some(n) = neighbor {
            frame[0..6].copy_from_slice(&n.mac);
            return verdict;
        }
        let Some(router) = self.router.as_mut() else {
            return Verdict::Drop(DropReason::Unclassified);
        };
        if let Some(p) = router.resolve.as_mut() {
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
        // Held until the next hop answers (bounded; what finds no
        // room is dropped).
        match router.hold.hold(info.af, hop.addr, hop.port, now) {
            Some(slot) => Verdict::AwaitNeighbor(slot),
            None => Verdict::Drop(DropReason::NeighborUnresolved),
        }
    }

    /// Lets go of the packets held for a next hop: calls `release(slot,
    /// port, Some(mac))` for each whose next hop the current neighbour
    /// snapshot resolves (the worker writes the MAC and sends it) and
    /// `release(slot, port, None)` for each that waited too long (freed,
    /// counted `neighbor-unresolved`). Constant time while nothing is held
    /// or due.
    #[inline]
    pub fn release_awaiting(
        &mut self,
        now: Instant,
        mut release: impl FnMut(u16, u16, Option<[u8; 6]>),
    ) {
        let Some(router) = self.router.as_mut() else {
            return;
        };
        let changed = std::mem::take(&mut router.neighbors_changed);
        let counters = &mut self.counters;
        router.hold.release(
            &router.neighbors,
            changed,
            now,
            |slot, port, outcome| match outcome {
                HoldOutcome::Resolved(mac) => {
                    counters.forwarded += 1;
                    release(slot, port, Some(mac));
                }
                HoldOutcome::Expired => {
                    counters.drop(DropReason::NeighborUnresolved);
                    release(slot, port, None);
                }
            },
        );
    }

    /// Decides a frame the box itself sends (the control thread's answers,
    /// CARP advertisements, pfsync, neighbour resolution) on `out_port`:
    /// IP is filtered `out` on that port like any packet (a state the
    /// request created lets the answer out; `block all` without `pass out
    /// ... proto carp` keeps CARP in, as in pf); ARP and other non-IP
    /// frames are outside the ruleset. `Forward(out_port)` sends it.
    pub fn process_local_out(&mut self, frame: &mut [u8], out_port: u16, now: Instant) -> Verdict {
        self.refresh_tables();
        let verdict = self.decide_local_out(frame, out_port, now, false);
        self.count_local_out(verdict);
        verdict
    }

    /// Counts a local-out verdict (what passes is `local_out`, not
    /// `forwarded`).
    fn count_local_out(&mut self, verdict: Verdict) {
        match verdict {
            Verdict::Forward(_) => self.counters.local_out += 1,
            v => self.count(v),
        }
    }

    /// [`Pipeline::process_local_out`] for a frame another worker handed
    /// over (this worker owns its flow).
    pub fn process_local_out_owned(
        &mut self,
        frame: &mut [u8],
        out_port: u16,
        now: Instant,
    ) -> Verdict {
        self.refresh_tables();
        self.counters.handed_in += 1;
        let verdict = self.decide_local_out(frame, out_port, now, true);
        self.count_local_out(verdict);
        verdict
    }

    fn decide_local_out(
        &mut self,
        frame: &mut [u8],
        out_port: u16,
        now: Instant,
        owned: bool,
    ) -> Verdict {
        let Ok(c) = classify(frame, IfIndex(out_port), Direction::Out) else {
            return Verdict::Drop(DropReason::BadHeader);
        };
        match c.kind {
            FrameKind::Ip {
                info,
                fragment,
                ip_options,
                l4_offset,
            } => {
                if fragment {
                    return Verdict::Drop(DropReason::Fragment);
                }
                self.pending = None;
                self.pending_route = None;
                self.pending_seq = None;
                self.pending_scrub = None;
                let v =
                    match self.filter(&info, Passes::Out(out_port), ip_options, now, owned, None) {
                        Blocked(_) => return Verdict::Drop(DropReason::BlockedByRule),
                        // Never for what the box sends (cookies answer `in`).
                        Cookie(_) => return Verdict::Drop(DropReason::Synproxy),
                        Decided(Verdict::Hold(_)) => Verdict::Forward(out_port),
                        Decided(v) => v,
                    };
                // What the box sends is translated like any packet
                // (`nat-to` on an outbound rule matching it).
                if (self.pending.is_some() || self.pending_seq.is_some())
                    && self
                        .apply_pending(frame, c.l3_offset as usize, l4_offset as usize, &info)
                        .is_none()
                {
                    return Verdict::Drop(DropReason::TranslationFailed);
                }
                if let Verdict::Forward(_) = v {
                    self.apply_scrub(frame, c.l3_offset as usize, l4_offset as usize, &info);
                }
                match (self.pending_route.take(), v) {
                    // `route-to` on what the box sends: the route's port,
                    // to its next hop's MAC (resolved, or the frame goes).
                    (Some(r), Verdict::Forward(_)) => self.reroute_local(frame, &info, r),
                    _ => v,
                }
            }
            _ => Verdict::Forward(out_port),
        }
    }

    /// Sends a frame of the box's own by a `route-to`: our MAC on the
    /// route's port, the next hop's MAC (asked for, and the frame dropped,
    /// while it is not resolved).
    fn reroute_local(&mut self, frame: &mut [u8], info: &PacketInfo, r: StateRoute) -> Verdict {
        let Some(router) = self.router.as_mut() else {
            return Verdict::Drop(DropReason::NoRoute);
        };
        let next = if r.addr == Addr::ZERO {
            info.dst
        } else {
            r.addr
        };
        let port = if r.port == crate::state::ROUTE_PORT_LOOKUP {
            match router.routing.lookup(info.af, &next) {
                Some(h) => h.port,
                None => return Verdict::Drop(DropReason::NoRoute),
            }
        } else {
            r.port
        };
        let mac = router.routing.mac(port).unwrap_or([0; 6]);
        match router.neighbors.get(info.af, &next) {
            Some(n) if frame.len() >= 12 => {
                frame[0..6].copy_from_slice(&n.mac);
                frame[6..12].copy_from_slice(&mac);
                Verdict::Forward(port)
            }
            _ => {
                if let Some(p) = router.resolve.as_mut() {
                    let _ = p.push(ResolveRequest {
                        af: info.af,
                        addr: next,
                        port,
                    });
                }
                Verdict::Drop(DropReason::NeighborUnresolved)
            }
        }
    }

    #[inline]
    fn filter(
        &mut self,
        info: &PacketInfo,
        passes: Passes,
        ip_options: bool,
        now: Instant,
        owned: bool,
        ahead: Option<&Lookahead>,
    ) -> FilterOutcome {
        self.now_s = crate::state::entry::secs_of(now);
        // `set skip on`: pf skips the interface, not the packet's path.
        let passes = match passes {
            Passes::Both { in_port, out_port } => match (
                self.rules.is_skipped(IfIndex(in_port)),
                self.rules.is_skipped(IfIndex(out_port)),
            ) {
                (true, true) => return Decided(Verdict::Forward(out_port)),
                (true, false) => Passes::Out(out_port),
                (false, true) => Passes::In(in_port),
                (false, false) => passes,
            },
            Passes::In(p) | Passes::Out(p) if self.rules.is_skipped(IfIndex(p)) => {
                return Decided(Verdict::Forward(p))
            }
            _ => passes,
        };
        let out_port = passes.verdict_port();
        let (swapped, hit) = match ahead {
            // The burst pass checked ownership and looked the flow up.
            Some(a) if a.generation == self.shard.generation() => (a.swapped, a.slot),
            Some(a) => (a.swapped, self.shard.lookup_side(&a.key, a.hash)),
            None => {
                let (key, swapped) = info.key();
                let hash = key.symmetric_hash();
                if !owned && self.config.workers > 1 {
                    // An ICMP error belongs with the flow it quotes; any
                    // other packet the device placed is on its owner.
                    let owner = match owner_key(info) {
                        Some(q) => {
                            self.config
                                .placement
                                .owner(&q, q.symmetric_hash(), self.config.workers)
                        }
                        None if self.arrival_placed => self.config.worker,
                        None => self.config.placement.owner(&key, hash, self.config.workers),
                    };
                    if owner != self.config.worker {
                        return Decided(Verdict::Handoff(owner as u16));
                    }
                }
                (swapped, self.shard.lookup_side(&key, hash))
            }
        };
        // Which key of a translated state the packet matched.
        let (mut found, far) = match hit {
            Some((slot, far)) => (Some(slot), far),
            None => (None, false),
        };
        // The far key of a translated state another worker holds: that
        // worker decides (once; a redirected packet is never sent on).
        if found.is_none() && !self.redirected {
            if let Some(w) = self.alias_of(info) {
                return Decided(Verdict::Handoff(w));
            }
        }
        if let Some(slot) = found {
            // A state past its timeout that the sweep has not reached yet
            // is gone as far as this packet is concerned.
            let expired = self.shard.get(slot).is_some_and(|st| {
                let (t, scale) =
                    state_timeouts(&self.rules, &self.recent_rules, st, self.timeout_scale);
                st.is_expired_scaled(now, t, scale)
            });
            if expired {
                self.remove_state(slot);
                found = None;
            }
        }
        if let Some(slot) = found {
            if let Some((st, tr)) = self.shard.get_mut_translated(slot) {
                // The established lane: an in-window ACK of a plain TCP
                // state, or a datagram of a plain UDP state both sides
                // have sent on (no translation, route, scrub, modulation,
                // option or per-packet log), is tracked by
                // `track_established` / `track_udp_multiple`, pf's tracker
                // for those cases; anything they decline takes the full
                // path below, unchanged.
                if !ip_options
                    && lane_state(st, self.pflog.is_some())
                    && match &info.l4 {
                        L4Info::Tcp(tcp) => {
                            let seg = crate::flow::TcpSegment::from(tcp);
                            track_established(st, &seg, info.ip_len, st.is_from_src(swapped), now)
                        }
                        L4Info::Udp => {
                            track_udp_multiple(st, info.ip_len, st.is_from_src(swapped), now)
                        }
                        _ => false,
                    }
                {
                    lane_hit(&mut self.sync, &mut self.counters, st, now);
                    self.pending = None;
                    self.pending_scrub = None;
                    return Decided(Verdict::Forward(out_port));
                }
                let mut to = None;
                let from_src = if tr.is_some() {
                    // Only the initiator's direction on the ingress side
                    // and the responder's on the egress side: anything
                    // else claims the other side's addresses.
                    match map_endpoints(st, &tr, far, (info.src, info.sport)) {
                        Some((
                            o @ (Orientation::IngressForward | Orientation::EgressReply),
                            ends,
                        )) => {
                            to = Some(ends);
                            o.from_src()
                        }
                        _ => return Decided(Verdict::Drop(DropReason::TranslationFailed)),
                    }
                } else {
                    st.is_from_src(swapped)
                };
                if ip_options && st.state_flags & state_flags::ALLOWOPTS == 0 {
                    return Decided(Verdict::Drop(DropReason::IpOptions));
                }
                if let Some((o, remove)) = syncookie::on_proxy_state(
                    st,
                    &tr,
                    info,
                    from_src,
                    &mut self.sync,
                    &mut self.counters,
                    now,
                ) {
                    // What dpf sends on is translated and scrubbed as the
                    // state's packets are.
                    self.pending = to.map(Pending::Packet);
                    self.pending_scrub = ScrubAction::of(st.state_flags, tr.scrub);
                    if tr.route.applies(from_src) {
                        self.pending_route = Some(tr.route);
                    }
                    if remove {
                        let gone = *st;
                        delete_or_owe(&mut self.sync, &mut self.counters, &gone, now);
                        self.remove_state(slot);
                    }
                    return o;
                }
                match track(st, info, from_src, now) {
                    TrackOutcome::Pass { transition }
                        if transition
                            && st.src_tracking().is_some()
                            && !st.is_src_conn()
                            && st.src.state == crate::state::tcps::ESTABLISHED
                            && st.dst.state == crate::state::tcps::ESTABLISHED
                            && info.proto == crate::flow::proto::TCP
                            && Self::src_connlimit(
                                &self.config,
                                &self.rules,
                                &self.recent_rules,
                                &mut self.overload,
                                st,
                                now,
                            ) =>
                    {
                        // pf kills the state (PFTM_PURGE) and drops the
                        // packet that completed the handshake.
                        self.remove_state(slot);
                        return Decided(Verdict::Drop(DropReason::SrcLimit));
                    }
                    TrackOutcome::Pass { transition } => {
                        self.counters.state_hits += 1;
                        if st.log_all() && self.pflog.is_some() {
                            self.log_intents.note_state(st.rule, info);
                        }
                        if self.sync.is_some() {
                            let maxupd = self.sync.as_ref().map_or(u8::MAX, |s| s.maxupd);
                            if transition || st.sync_tick(maxupd) {
                                export_or_owe(
                                    &mut self.sync,
                                    &mut self.counters,
                                    SyncAction::Update,
                                    st,
                                    &tr,
                                    now,
                                );
                            }
                        }
                        self.pending = to.map(Pending::Packet);
                        if st.src.seqdiff != 0 || st.dst.seqdiff != 0 {
                            let (snd, rcv) = if from_src {
                                (st.src.seqdiff, st.dst.seqdiff)
                            } else {
                                (st.dst.seqdiff, st.src.seqdiff)
                            };
                            if matches!(info.l4, L4Info::Tcp(_)) {
                                self.pending_seq = Some((snd, rcv));
                            }
                        }
                        if tr.route.applies(from_src) {
                            self.pending_route = Some(tr.route);
                        }
                        self.pending_scrub = ScrubAction::of(st.state_flags, tr.scrub);
                        return Decided(Verdict::Forward(out_port));
                    }
                    TrackOutcome::Drop(StateDrop::BadRst) => {
                        return Decided(Verdict::Drop(DropReason::BadRst))
                    }
                    TrackOutcome::Drop(_) => {
                        return Decided(Verdict::Drop(DropReason::StateMismatch))
                    }
                    TrackOutcome::Reuse => {
                        self.remove_state(slot);
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
                let hit = self.shard.lookup_side(&qkey, qhash);
                if hit.is_none() && !self.redirected {
                    // The quoted flow's far key, held by another worker.
                    if let Some(w) = self
                        .aliases
                        .as_ref()
                        .filter(|t| !t.is_empty())
                        .and_then(|t| t.get(&qkey, qhash))
                        .filter(|w| *w as usize != self.config.worker)
                    {
                        return Decided(Verdict::Handoff(w));
                    }
                }
                if let Some(((st, tr), far)) =
                    hit.and_then(|(s, far)| self.shard.get_mut_translated(s).map(|x| (x, far)))
                {
                    let mut pending = None;
                    let quoted_from_src = if tr.is_some() {
                        // The quoted packet went the other way: the
                        // initiator's direction seen on the egress side,
                        // or the responder's on the ingress side.
                        match map_endpoints(st, &tr, far, (q.src, q.sport)) {
                            Some((
                                o @ (Orientation::EgressForward | Orientation::IngressReply),
                                new,
                            )) => {
                                let old = Endpoints {
                                    src: q.src,
                                    sport: q.sport,
                                    dst: q.dst,
                                    dport: q.dport,
                                };
                                // The error goes back to the quoted
                                // packet's sender, maybe from its
                                // destination.
                                let dst = if info.dst == q.src { new.src } else { info.dst };
                                let src = if info.src == q.dst { new.dst } else { info.src };
                                pending = Some(Pending::IcmpError(crate::nat::IcmpErrorRewrite {
                                    outer: (src, dst),
                                    quoted_proto: q.proto,
                                    quoted_old: old,
                                    quoted_new: new,
                                    quoted_seq_sub: 0,
                                }));
                                o.from_src()
                            }
                            _ => return Decided(Verdict::Drop(DropReason::TranslationFailed)),
                        }
                    } else {
                        st.is_from_src(qswapped)
                    };
                    if icmp_error_matches(st, &q, quoted_from_src) {
                        if ip_options && st.state_flags & state_flags::ALLOWOPTS == 0 {
                            return Decided(Verdict::Drop(DropReason::IpOptions));
                        }
                        st.count(!quoted_from_src, info.ip_len as u32);
                        self.counters.state_hits += 1;
                        // `modulate state`: the quoted segment goes back
                        // with the sequence number its sender used.
                        let sender = if quoted_from_src { &st.src } else { &st.dst };
                        if q.proto == crate::flow::proto::TCP && sender.seqdiff != 0 {
                            let sub = sender.seqdiff;
                            let quoted = Endpoints {
                                src: q.src,
                                sport: q.sport,
                                dst: q.dst,
                                dport: q.dport,
                            };
                            pending = Some(Pending::IcmpError(match pending {
                                Some(Pending::IcmpError(rw)) => crate::nat::IcmpErrorRewrite {
                                    quoted_seq_sub: sub,
                                    ..rw
                                },
                                _ => crate::nat::IcmpErrorRewrite {
                                    outer: (info.src, info.dst),
                                    quoted_proto: q.proto,
                                    quoted_old: quoted,
                                    quoted_new: quoted,
                                    quoted_seq_sub: sub,
                                },
                            }));
                        }
                        self.pending = pending;
                        self.pending_scrub = ScrubAction::of(st.state_flags, tr.scrub);
                        return Decided(Verdict::Forward(out_port));
                    }
                }
            }
        }
        if let Some(o) = self.cookie_ack(info, passes, ip_options, now) {
            return o;
        }
        let o = self.evaluate_new(info, passes, ip_options, now);
        self.synproxy_after_new(info, o, now)
    }

    /// The rules for a packet without a state: `in` on the receiving port,
    /// then `out` on the transmitting one (or the one pass `passes` says);
    /// creates the state.
    fn evaluate_new(
        &mut self,
        info: &PacketInfo,
        passes: Passes,
        ip_options: bool,
        now: Instant,
    ) -> FilterOutcome {
        let mut pkt = *info;
        let mut deciding: [Option<Decision>; 2] = [None, None];
        let (in_port, mut out_port) = passes.ports();
        let mut verdict_port = passes.verdict_port();
        let mut local = passes.is_local();
        // ICMP errors create no state, so they are not translated by rules
        // (only by the state of the packet they quote).
        let icmp_error = matches!(info.l4, L4Info::Icmp(i) if i.is_error);
        let mut tag = 0;
        let mut route_state = StateRoute::NONE;
        if let Some(p) = in_port {
            pkt.ifindex = IfIndex(p);
            pkt.dir = Direction::In;
            let d = self
                .rules
                .evaluate_with(&pkt, &self.tables, 0, &mut self.rule_counters);
            self.note_log_decision(&d, &pkt);
            if d.action == Action::Block {
                return Blocked(d.return_mode);
            }
            tag = d.tag;
            if let (Some(pool), false) = (d.rdr, icmp_error) {
                if !self.map_rdr(&mut pkt, pool, d.rdr_port_base) {
                    return Decided(Verdict::Drop(DropReason::TranslationFailed));
                }
                // Routed again to the new destination, and filtered `out`
                // there (pf's rules see the redirected packet outbound).
                if let Some(router) = self.router.as_ref() {
                    let r = &router.routing;
                    if r.owner_of(pkt.af, &pkt.dst).is_some()
                        || r.vips.lookup(pkt.af, &pkt.dst).is_some()
                    {
                        return Decided(Verdict::Drop(DropReason::TranslationFailed));
                    }
                    let Some(hop) = r.lookup(pkt.af, &pkt.dst) else {
                        return Decided(Verdict::Drop(DropReason::NoRoute));
                    };
                    if self.rules.is_skipped(IfIndex(hop.port)) {
                        out_port = None;
                    } else {
                        out_port = Some(hop.port);
                    }
                    verdict_port = hop.port;
                    local = false;
                }
            }
            if let Some(route) = d.route {
                let Some(r) = self.pick_route(route, &pkt) else {
                    return Decided(Verdict::Drop(DropReason::NoRoute));
                };
                if r.kind == crate::state::route_kind::ROUTE_TO && self.router.is_some() {
                    // pf_route: the packet leaves by the route and is
                    // filtered `out` there.
                    out_port = (!self.rules.is_skipped(IfIndex(r.port))).then_some(r.port);
                    verdict_port = r.port;
                    local = false;
                    self.pending_route = Some(r);
                }
                route_state = r;
            }
            deciding[0] = Some(d);
        }
        if let Some(p) = out_port {
            pkt.ifindex = IfIndex(p);
            pkt.dir = Direction::Out;
            let d = self
                .rules
                .evaluate_with(&pkt, &self.tables, tag, &mut self.rule_counters);
            self.note_log_decision(&d, &pkt);
            if d.action == Action::Block {
                return Blocked(d.return_mode);
            }
            if let (Some(pool), false) = (d.nat, icmp_error) {
                if !self.map_nat(&mut pkt, pool) {
                    return Decided(Verdict::Drop(DropReason::TranslationFailed));
                }
            }
            if let Some(route) = d.route {
                let Some(r) = self.pick_route(route, &pkt) else {
                    return Decided(Verdict::Drop(DropReason::NoRoute));
                };
                if r.kind == crate::state::route_kind::ROUTE_TO && self.router.is_some() {
                    if r.port != p && !self.rules.is_skipped(IfIndex(r.port)) {
                        // pf_route filters it `out` again on the new port.
                        let mut again = pkt;
                        again.ifindex = IfIndex(r.port);
                        let d2 = self.rules.evaluate_with(
                            &again,
                            &self.tables,
                            tag,
                            &mut self.rule_counters,
                        );
                        self.note_log_decision(&d2, &again);
                        if d2.action == Action::Block {
                            return Blocked(d2.return_mode);
                        }
                    }
                    verdict_port = r.port;
                    self.pending_route = Some(r);
                }
                route_state = r;
            }
            deciding[1] = Some(d);
        }
        // pf: a packet with IP options passes only if the rule that passed
        // it (in each direction) says `allow-opts`; pf's implicit default
        // rule does not.
        if ip_options && deciding.iter().flatten().any(|d| !d.allow_opts) {
            return Decided(Verdict::Drop(DropReason::IpOptions));
        }
        let translated = pkt.src != info.src
            || pkt.dst != info.dst
            || pkt.sport != info.sport
            || pkt.dport != info.dport;
        // Scrub: both passes' options (pf applies each pass's; dpf's one
        // state keeps the union, the `out` pass's values last).
        let (mut scrub_flags, mut scrub) = (0u16, crate::state::Scrub::NONE);
        for p in deciding.iter().flatten() {
            crate::rules::merge_scrub(&mut scrub_flags, &mut scrub, p.scrub_flags, &p.scrub);
        }
        // What passes without a state is scrubbed by the rules.
        self.pending_scrub = ScrubAction::of(scrub_flags, scrub);
        let d = match deciding {
            [Some(d), _] if d.keep_state => d,
            [_, Some(d)] => d,
            [Some(d), None] => d,
            [None, None] => return Decided(Verdict::Forward(verdict_port)),
        };
        // A translation always keeps state (pf: the state holds it).
        if !d.keep_state && !translated {
            return Decided(Verdict::Forward(verdict_port));
        }
        let flags = info.tcp_flags();
        let initial_syn =
            flags & crate::flow::tcp_flags::SYN != 0 && flags & crate::flow::tcp_flags::ACK == 0;
        let tcp_syn = initial_syn && info.proto == crate::flow::proto::TCP;
        if tcp_syn && !self.cookies.recreating {
            // dpf proxies only what it forwards: a connection to or from
            // the box itself is the slow path's, which cannot take one
            // over (pf would; refused and counted, never passed
            // unproxied).
            if d.synproxy && (local || in_port.is_none()) {
                return Decided(Verdict::Drop(DropReason::Synproxy));
            }
            // `set syncookies`: a forwarded SYN that would create a state
            // gets a cookie instead.
            if !local {
                if let Some(o) = self.cookie_for_syn(info, in_port.is_some()) {
                    return o;
                }
            }
        }
        // `synproxy state`: see [`Pipeline::synproxy_after_new`].
        self.cookies.synproxy_rule =
            d.synproxy && tcp_syn && !local && in_port.is_some() && !self.cookies.recreating;
        let rule_nr = d.rule.unwrap_or(crate::state::NO_RULE);
        let opts = StateOptions {
            sloppy: d.sloppy,
            no_sync: d.no_sync,
            any_flags: info.proto == crate::flow::proto::TCP && !initial_syn,
            rule: d
                .rule
                .map_or(crate::state::NO_RULE, |r| self.rules.state_rule_tag(r)),
            allow_opts: d.allow_opts,
        };
        let id = self.shard.alloc_id();
        let Some(mut st) = new_state(info, now, opts, id, self.config.creatorid) else {
            // pf creates no state for this packet (e.g. an RST) but passes it.
            return Decided(Verdict::Forward(verdict_port));
        };
        // `modulate state`: random modulators for both sides from the
        // initial SYN on (pf draws the responder's at its first packet;
        // any non-zero random offset is as good).
        let mut modulators = None;
        if d.modulate {
            if let L4Info::Tcp(t) = info.l4 {
                let syn = crate::flow::tcp_flags::SYN;
                if t.flags & (syn | crate::flow::tcp_flags::ACK) == syn {
                    let r = self.next_random();
                    st.src.seqdiff = (r as u32).max(1);
                    st.dst.seqdiff = ((r >> 32) as u32).max(1);
                    modulators = Some((st.src.seqdiff, st.dst.seqdiff));
                }
            }
        }
        st.direction = if in_port.is_some() {
            Direction::In
        } else {
            Direction::Out
        };
        st.ifindex = IfIndex(in_port.or(out_port).unwrap_or(0));
        st.state_flags |= scrub_flags & crate::scrub::SCRUB_FLAGS;
        // `log (all)` on either pass's rules: every packet of the state.
        st.set_log_all(
            deciding
                .iter()
                .flatten()
                .any(|p| p.log & crate::pflog::log_flags::ALL != 0),
        );
        // `keep state (max N)` and per-rule adaptive timeouts: counted
        // across workers.
        if self.rules.counts_rule_states(rule_nr) {
            if !self.rules.reserve_rule_state(rule_nr) {
                return Decided(Verdict::Drop(DropReason::RuleMaxStates));
            }
            st.state_flags |= state_flags::RULE_COUNTED;
        }
        if d.rule.is_some_and(|r| self.rules.has_rule_timeouts(r)) {
            st.state_flags |= state_flags::RULE_TIMEOUTS;
        }
        // Source tracking: counted across workers.
        if !self.attach_source(&mut st, rule_nr, now) {
            if st.state_flags & state_flags::RULE_COUNTED != 0 {
                self.rules.release_rule_state(rule_nr);
            }
            return Decided(Verdict::Drop(DropReason::SrcLimit));
        }
        // `set limit states`: counted across workers.
        if !self.reserve_state() {
            if st.state_flags & state_flags::RULE_COUNTED != 0 {
                self.rules.release_rule_state(rule_nr);
            }
            release_source(
                &self.config,
                &self.rules,
                &self.recent_rules,
                &st,
                crate::state::entry::secs_of(now),
                None,
            );
            return Decided(Verdict::Drop(DropReason::StateTableFull));
        }
        let translation = if translated {
            let (key, swapped) =
                FlowKey::from_packet(pkt.af, pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport);
            Translation {
                key,
                src_is_addr1: swapped,
                route: route_state,
                scrub,
            }
        } else {
            Translation {
                route: route_state,
                scrub,
                ..Translation::NONE
            }
        };
        let inserted = self.shard.insert_translated(st, translation);
        if let Ok(slot) = inserted {
            if translated && !self.announce_far_key(&translation) {
                // The far key belongs to another worker that cannot be
                // told to send its packets here: refused (and counted)
                // rather than half-working. (`nat-to` picks ports that
                // stay here.)
                if let Some(st) = self.shard.remove(slot) {
                    self.release_reservation(&st);
                }
                return Decided(Verdict::Drop(DropReason::TranslationFailed));
            }
        }
        Decided(match inserted {
            Ok(slot) => {
                let mut verdict = Verdict::Forward(verdict_port);
                self.pending_seq = modulators;
                if translated {
                    self.pending = Some(Pending::Packet(Endpoints::of(&pkt)));
                }
                if let Some((st, tr)) = self.shard.get_mut_translated(slot) {
                    let held = match self.sync.as_mut().and_then(|s| s.defer.as_mut()) {
                        Some(q) if !st.is_nosync() && !is_group(info) && !local => {
                            let h = q.hold(st.id(), st.creatorid(), verdict_port, now);
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
                                &tr,
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
                            &tr,
                            now,
                        ),
                    }
                }
                self.counters.states_created += 1;
                self.note_shard_len();
                if let Some(c) = d.rule.and_then(|r| self.rule_counters.get_mut(r as usize)) {
                    c.states_created += 1;
                    c.states_cur += 1;
                }
                verdict
            }
            Err(e) => {
                self.release_reservation(&st);
                match e {
                    InsertError::Full => Verdict::Drop(DropReason::StateTableFull),
                    InsertError::NoRecord => Verdict::Drop(DropReason::SideRecordsFull),
                    InsertError::Exists(_) if translated => {
                        Verdict::Drop(DropReason::TranslationFailed)
                    }
                    // Another packet of the flow created it meanwhile
                    // (cannot happen on the owning worker; fail closed if
                    // it does).
                    _ => Verdict::Drop(DropReason::StateMismatch),
                }
            }
        })
    }

    /// Takes a place in the box's state table (`set limit states`, shared
    /// by every worker); false when it is full.
    #[inline]
    fn reserve_state(&self) -> bool {
        let limit = self.rules.options.limit_states as usize;
        let total = &self.config.states_total;
        if total.fetch_add(1, Ordering::AcqRel) >= limit {
            total.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back what a state held: its place in the table and, if it
    /// counted against its rule's `max`, that.
    #[inline]
    fn release_reservation(&self, st: &crate::state::State) {
        release_state(
            &self.config,
            &self.rules,
            &self.recent_rules,
            st,
            self.now_s,
        );
    }

    /// Removes the state in `slot` (expired on lookup, reused), giving back
    /// what it held.
    fn remove_state(&mut self, slot: SlotId) {
        if let Some(st) = self.shard.remove(slot) {
            self.release_reservation(&st);
            forget_rule_state(&self.rules, &mut self.rule_counters, &st);
            self.counters.states_removed += 1;
            self.note_shard_len();
        }
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
        // The answer carries at most one tag: a double-tagged packet is
        // dropped without one.
        if c.vlan_tags > 1 {
            return blocked;
        }
        // On a bridge dpf answers as the destination host would.
        let our_mac: EthernetAddress = c.dst_mac;
        let reply = match (mode, info.af) {
            (ReturnMode::None, _) => return blocked,
            (ReturnMode::Rst, _) => build::tcp_rst(c, our_mac),
            // The code is the rule's `return-icmp (code)`, port
            // unreachable by default.
            (ReturnMode::IcmpUnreachable(code), crate::flow::Af::Inet) => {
                let src = std::net::Ipv4Addr::from(info.dst.v4_octets());
                build::icmpv4_dst_unreachable(frame, code, our_mac, src)
            }
            (ReturnMode::IcmpUnreachable(code), crate::flow::Af::Inet6) => {
                let src = std::net::Ipv6Addr::from(info.dst.0);
                build::icmpv6_dst_unreachable(frame, code, our_mac, src)
            }
        };
        let slot = self.reply_slot.min(MAX_BURST - 1);
        match reply.and_then(|r| r.emit(&mut self.replies[slot][..])) {
            Ok(len) => {
                self.reply_lens[slot] = len as u16;
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
    translation: &Translation,
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
        translation: *translation,
        at: now,
    };
    if s.export.push(rec).is_err() {
        counters.export_dropped += 1;
        return false;
    }
    true
}

/// How the established lane sends on what it takes (see
/// [`Pipeline::lane_mode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// Wire mode: to this port, the frame untouched.
    Wire(u16),
    /// Router mode: by the routing table, rewritten for the next hop.
    Routed,
}

/// The TCP flags the established lane looks at: it takes segments whose
/// only one of them is ACK (see [`track_established`]).
const LANE_FLAGS: u8 = crate::flow::tcp_flags::SYN
    | crate::flow::tcp_flags::FIN
    | crate::flow::tcp_flags::RST
    | crate::flow::tcp_flags::ACK;
/// What the lane wants of [`LANE_FLAGS`]: ACK alone.
const LANE_ACK: u8 = crate::flow::tcp_flags::ACK;

/// Whether the established lane may take a packet of `st`: a state
/// without a translation, route or scrub record, scrub flags, sequence
/// modulation or (with a logger) per-packet logging — a state whose
/// packets the full path forwards untouched once tracking passes them.
#[inline]
fn lane_state(st: &crate::state::State, logging: bool) -> bool {
    !st.has_side_record()
        && st.state_flags & crate::scrub::SCRUB_FLAGS == 0
        && st.src.seqdiff == 0
        && st.dst.seqdiff == 0
        && !(logging && st.log_all())
}

/// The bookkeeping of a segment the established lane took (the full
/// path's for a pass without a transition): a state hit, and a pfsync
/// update every `maxupd` packets (out of line: one packet in `maxupd`).
#[inline(always)]
fn lane_hit(
    sync: &mut Option<SyncPorts>,
    counters: &mut WorkerCounters,
    st: &mut crate::state::State,
    now: Instant,
) {
    counters.state_hits += 1;
    if let Some(maxupd) = sync.as_ref().map(|s| s.maxupd) {
        if st.sync_tick(maxupd) {
            lane_export(sync, counters, st, now);
        }
    }
}

/// [`lane_hit`]'s pfsync update.
#[cold]
#[inline(never)]
fn lane_export(
    sync: &mut Option<SyncPorts>,
    counters: &mut WorkerCounters,
    st: &mut crate::state::State,
    now: Instant,
) {
    export_or_owe(
        sync,
        counters,
        SyncAction::Update,
        st,
        &Translation::NONE,
        now,
    );
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
    translation: &Translation,
    now: Instant,
) {
    if !push_export(sync, counters, action, state, translation, now) {
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
    if push_export(
        sync,
        counters,
        SyncAction::Delete,
        state,
        &Translation::NONE,
        now,
    ) {
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
    /// The state, and whether it matched by its far (translated) key.
    slot: Option<(SlotId, bool)>,
    generation: u64,
}

/// The burst pass's record of a packet the established lane may take:
/// its fields, its flow's hash and the candidate state (a tag match, not
/// yet confirmed by the key).
#[derive(Clone, Copy, Debug)]
struct LaneAhead {
    /// The packet, as the lane parsed it.
    seg: crate::wire::Segment4,
    hash: u64,
    /// Whether the packet's source is the key's `addr[1]`.
    swapped: bool,
    /// The candidate, and whether it matched by its far (translated) key.
    slot: Option<(SlotId, bool)>,
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
    /// pfsync CLRs being applied: (creatorid, next slab slot), oldest
    /// first; capacity [`CLEARS_MAX`], never grown.
    clears: Vec<(u32, usize)>,
}

/// pfsync CLRs of distinct creators pending at once, at most.
const CLEARS_MAX: usize = 16;
/// Slab slots a pending CLR walks per [`Pipeline::sync_poll`].
const CLEAR_SLOTS_PER_POLL: usize = 4096;

/// Router-mode tables of a pipeline.
#[derive(Debug)]
struct Router {
    routing: Arc<Routing>,
    neighbors: Arc<Neighbors>,
    /// A new neighbour snapshot arrived since the held packets were last
    /// looked at.
    neighbors_changed: bool,
    resolve: Option<Producer<ResolveRequest>>,
    /// Routed packets waiting for their next hop's MAC.
    hold: NeighborHold,
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

impl Pipeline {
    /// The pfsync sync port, with `[pfsync]`.
    pub fn syncdev(&self) -> Option<u16> {
        self.config.syncdev
    }

    /// A packet to the box the rules let in: to the control thread, but
    /// pfsync only from the sync port.
    #[inline]
    fn to_box(&self, punt: Punt, in_port: u16) -> Verdict {
        match self.config.syncdev {
            Some(sync) if punt == Punt::Pfsync && sync != in_port => {
                Verdict::Drop(DropReason::PfsyncNotSyncdev)
            }
            _ => Verdict::SlowPath(punt),
        }
    }
}

/// Why a packet to the box goes to the control thread.
#[inline]
fn punt_of(info: &PacketInfo) -> Punt {
    match (info.proto, info.l4) {
        (crate::flow::proto::CARP, _) => Punt::Carp,
        (crate::flow::proto::PFSYNC, _) => Punt::Pfsync,
        (crate::flow::proto::ICMPV6, L4Info::Icmp(i)) if (133..=137).contains(&i.icmp_type) => {
            Punt::Nd
        }
        (crate::flow::proto::ICMP | crate::flow::proto::ICMPV6, _) => Punt::Icmp,
        _ => Punt::Local,
    }
}

/// What filtering decided: a verdict, or a block that may be answered.
enum FilterOutcome {
    Decided(Verdict),
    Blocked(ReturnMode),
    /// The firewall answers for a SYN cookie handshake ([`syncookie`]).
    Cookie(syncookie::CookieAction),
}
use FilterOutcome::{Blocked, Cookie, Decided};

/// The flow that decides the owner of an ICMP error: the one it quotes
/// (`None` for any other packet, owned by its own flow).
#[inline]
fn owner_key(info: &PacketInfo) -> Option<FlowKey> {
    match info.l4 {
        L4Info::Icmp(i) if i.is_error => i
            .quoted
            .map(|q| FlowKey::from_packet(info.af, q.proto, q.src, q.sport, q.dst, q.dport).0),
        _ => None,
    }
}
