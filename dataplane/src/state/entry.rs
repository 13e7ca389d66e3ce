//! [`State`]: one pf state, laid out to fit two cache lines' worth of
//! budget (128 bytes, asserted at compile time), and [`Peer`], pf's
//! per-endpoint TCP window record (`pf_state_peer`).
//!
//! Layout (`#[repr(C, align(64))]`: two cache lines; offsets in bytes):
//!
//! ```text
//!   0  key           FlowKey (40)   canonical: lower endpoint first
//!  40  id            u64            top 8 bits = creating shard, rest = counter
//!  48  creatorid     u32            pfsync host id of the creator
//!  52  rule          u32            rule number, u32::MAX = none
//!  56  creation_s    u32            creation time, whole seconds of `Instant`
//!  60  last_seen_s   u32            last activity, whole seconds of `Instant`
//!  64  packets       [u32; 2]       [0] src->dst, [1] dst->src (wrapping)
//!  72  bytes_lo      [u32; 2]       low 32 bits of the 48-bit byte counters
//!  80  bytes_hi      [u16; 2]       high 16 bits
//!  84  ifindex       u16            interface the state was created on
//!  86  state_flags   u16            pfsync PFSTATE_* bits (spec/pfsync.md §3.8)
//!  88  timeout       u8             TimeoutClass = PFTM_* index
//!  89  direction     u8             creating direction (1 in, 2 out)
//!  90  sync_updates  u8             updates since the last pfsync export (maxupd)
//!  91  sides         u8             bit 0: which key endpoint is pf's `src` peer;
//!                                 bit 1: translated (the shard holds a [`Translation`]);
//!                                 bit 2: routed; bits 3-5: source tracking; bit 6: scrub values;
//!                                 bit 7: `log (all)` (pf's `st->log`)
//!  92  src           Peer (18)      peer that sent the first packet
//! 110  dst           Peer (18)      the other peer
//! 128
//! ```
//!
//! Invariants: `key`, `id` and `creatorid` never change while the state is
//! in a [`Shard`](super::Shard) (they are the table's index keys), so they
//! are private with getters. Times are kept at whole-second resolution, as
//! pf's `time_uptime`: a state expires when
//! `last_seen_s + timeout_s <= now_s`.

use crate::flow::{Addr, Direction, FlowKey, IfIndex};
use crate::time::Instant;
use crate::timeouts::{TimeoutClass, TimeoutScale, Timeouts};

/// pf's per-peer TCP states (`TCPS_*` from `tcp_fsm.h`, and pf's synproxy
/// states), as carried in `pfsync_state_peer.state` (spec/pfsync.md §3.8).
pub mod tcps {
    /// Closed.
    pub const CLOSED: u8 = 0;
    /// Listening.
    pub const LISTEN: u8 = 1;
    /// SYN sent.
    pub const SYN_SENT: u8 = 2;
    /// SYN received.
    pub const SYN_RECEIVED: u8 = 3;
    /// Established.
    pub const ESTABLISHED: u8 = 4;
    /// Close wait.
    pub const CLOSE_WAIT: u8 = 5;
    /// FIN wait 1.
    pub const FIN_WAIT_1: u8 = 6;
    /// Closing (pf: this peer has sent a FIN).
    pub const CLOSING: u8 = 7;
    /// Last ACK.
    pub const LAST_ACK: u8 = 8;
    /// FIN wait 2 (pf: this peer's FIN has been acknowledged).
    pub const FIN_WAIT_2: u8 = 9;
    /// Time wait (pf: after an RST).
    pub const TIME_WAIT: u8 = 10;
    /// Synproxy, client side (`synproxy state`, [`crate::syncookie`]).
    pub const PROXY_SRC: u8 = 11;
    /// Synproxy, server side (`synproxy state` and SYN cookies,
    /// [`crate::syncookie`]).
    pub const PROXY_DST: u8 = 12;
    /// Largest value valid on the wire.
    pub const MAX: u8 = PROXY_DST;
}

/// pf's UDP and other-protocol peer states (`PFUDPS_*` / `PFOTHERS_*`).
pub mod udps {
    /// This peer has sent nothing.
    pub const NO_TRAFFIC: u8 = 0;
    /// Only this peer's first packet(s), the other side silent.
    pub const SINGLE: u8 = 1;
    /// Both sides have sent.
    pub const MULTIPLE: u8 = 2;
}

/// `pfsync_state.state_flags` bits (PFSTATE_*), spec/pfsync.md §3.8.
pub mod state_flags {
    /// `allow-opts`.
    pub const ALLOWOPTS: u16 = 0x0001;
    /// `keep state (sloppy)`: no sequence number checks.
    pub const SLOPPY: u16 = 0x0002;
    /// pflow export.
    pub const PFLOW: u16 = 0x0004;
    /// `no-sync`: never announced by pfsync.
    pub const NOSYNC: u16 = 0x0008;
    /// The sender holds a deferred packet and wants an INS_ACK.
    pub const ACK: u16 = 0x0010;
    /// `no-df`.
    pub const NODF: u16 = 0x0020;
    /// `set-tos`.
    pub const SETTOS: u16 = 0x0040;
    /// `random-id`.
    pub const RANDOMID: u16 = 0x0080;
    /// `scrub` TCP normalisation.
    pub const SCRUB_TCP: u16 = 0x0100;
    /// `set prio`.
    pub const SETPRIO: u16 = 0x0200;
    /// Socket unlinked.
    pub const INP_UNLINKED: u16 = 0x0400;
    /// Internal, never on the wire: the peer may be missing this state's
    /// latest data because its pfsync export found the ring full; the
    /// worker's expiry sweep sends it again in full.
    pub const SYNC_OWED: u16 = 0x8000;
    /// Internal, never on the wire: pf's `src` peer was last written by
    /// pfsync, not by a packet seen here; see [`SYNCED_DST`].
    pub const SYNCED_SRC: u16 = 0x4000;
    /// Internal, never on the wire: pf's `dst` peer was last written by
    /// pfsync. While either bit is set, TCP packets are not held to the
    /// sequence windows (the peer's view lags the connection by what it
    /// sent since its last update); each side's first packet here re-anchors
    /// that side's window and clears its bit, then tracking is strict again.
    pub const SYNCED_DST: u16 = 0x2000;
    /// Internal, never on the wire: the state's rule has `keep state
    /// (<timeout> N)` overrides; its expiry uses the rule's timeouts.
    pub const RULE_TIMEOUTS: u16 = 0x1000;
    /// Internal, never on the wire: the state counts against its rule's
    /// `max` and gives its place back when it goes.
    pub const RULE_COUNTED: u16 = 0x0800;
    /// The bits pfsync carries (pf's PFSTATE_* up to INP_UNLINKED).
    pub const WIRE: u16 = 0x07ff;
}

/// `Peer::wscale` bit meaning "this peer sent a window scale option"
/// (pf's `PF_WSCALE_FLAG`).
pub const WSCALE_FLAG: u8 = 0x80;
/// `Peer::wscale` bits holding the shift count (pf's `PF_WSCALE_MASK`).
pub const WSCALE_MASK: u8 = 0x0f;
/// Largest window shift TCP allows (RFC 7323 §2.3).
pub const MAX_WINSHIFT: u8 = 14;

const SIDE_SRC_IS_ADDR1: u8 = 1;
const SIDE_TRANSLATED: u8 = 2;
const SIDE_ROUTED: u8 = 4;
/// The state counts against a source node ([`crate::srcnodes`]).
const SIDE_SRC_TRACKED: u8 = 8;
/// Its node is a `source-track global` one (else its rule's).
const SIDE_SRC_GLOBAL: u8 = 16;
/// It reached ESTABLISHED and counts as a connection of its source.
const SIDE_SRC_CONN: u8 = 32;

/// `pfsync_state.sync_flags` bit: the state has source nodes
/// (spec/pfsync.md §3.7, pf's `PFSYNC_FLAG_SRCNODE`).
pub const SYNC_FLAG_SRCNODE: u8 = 0x04;
const SIDE_SCRUBBED: u8 = 64;
/// `log (all)`: every packet of the state is logged (pf's `st->log &
/// PF_LOG_ALL`).
const SIDE_LOG_ALL: u8 = 128;

/// pf's `rt` values (pfsync_state `rt`): how a state routes its packets.
pub mod route_kind {
    /// The routing table decides.
    pub const NONE: u8 = 0;
    /// `route-to`: packets of the initiator's direction leave by the
    /// state's route.
    pub const ROUTE_TO: u8 = 1;
    /// `reply-to`: packets of the responder's direction leave by it.
    pub const REPLY_TO: u8 = 3;
}

/// Port value of a [`StateRoute`] whose port is found by a route lookup
/// of its next hop when it is used (a route received by pfsync, which
/// carries the next hop's address only).
pub const ROUTE_PORT_LOOKUP: u16 = u16::MAX;

/// A state's `route-to` / `reply-to` (pf's `rt`, `rt_addr`, `rt_kif`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateRoute {
    /// [`route_kind`].
    pub kind: u8,
    /// Egress port ([`ROUTE_PORT_LOOKUP`]: by a route lookup of `addr`).
    pub port: u16,
    /// Next hop; [`Addr::ZERO`] for `route-to (if)`: the packet's
    /// destination on that port.
    pub addr: Addr,
}

impl StateRoute {
    /// No route: the routing table decides.
    pub const NONE: StateRoute = StateRoute {
        kind: route_kind::NONE,
        port: 0,
        addr: Addr::ZERO,
    };

    /// Whether packets from the initiator (`from_src`) or the responder
    /// take this route.
    #[inline]
    pub fn applies(&self, from_src: bool) -> bool {
        match self.kind {
            route_kind::ROUTE_TO => from_src,
            route_kind::REPLY_TO => !from_src,
            _ => false,
        }
    }
}

/// The values of pf's scrub options a state applies to every packet
/// (`pf_state`'s `max_mss`, `min_ttl`, `set_tos`; pfsync carries them,
/// spec/pfsync.md §3.7). The on/off options are [`state_flags`] bits:
/// [`state_flags::NODF`], [`state_flags::RANDOMID`],
/// [`state_flags::SETTOS`] (which makes `set_tos` apply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Scrub {
    /// `max-mss`: MSS options above it are lowered to it (0 = none).
    pub max_mss: u16,
    /// `min-ttl`: TTL / hop limit raised to at least it (0 = none).
    pub min_ttl: u8,
    /// `set-tos` / `set tos`: the TOS / traffic class (ECN bits kept).
    pub set_tos: u8,
}

impl Scrub {
    /// No values.
    pub const NONE: Scrub = Scrub {
        max_mss: 0,
        min_ttl: 0,
        set_tos: 0,
    };

    /// Whether any value is set.
    #[inline]
    pub fn is_some(&self) -> bool {
        *self != Scrub::NONE
    }
}

/// The far side of a translated state (`nat-to`, `rdr-to`, `binat-to`):
/// the connection's key as its packets look on the other side of the
/// translation. [`State::key`] is the side the first packet arrived on
/// (the ingress side); this is the side it left on (egress). pf's state
/// keys: for a state created by an outbound translation the ingress key
/// is pf's stack key and this the wire key; for an inbound one the other
/// way round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Translation {
    /// Canonical key of the egress side (lower endpoint first).
    pub key: FlowKey,
    /// Whether `key.addr[1]` is the initiator's endpoint on that side.
    pub src_is_addr1: bool,
    /// The state's `route-to` / `reply-to` (kept with the translation: both
    /// are what a state does to its packets beyond letting them pass).
    pub route: StateRoute,
    /// The state's scrub values (`max-mss`, `min-ttl`, `set-tos`), kept
    /// here for the same reason.
    pub scrub: Scrub,
}

impl Translation {
    /// No translation (`key.af == 0`) and no route.
    pub const NONE: Translation = Translation {
        key: FlowKey {
            addr: [Addr::ZERO; 2],
            port: [0; 2],
            rdomain: 0,
            af: 0,
            proto: 0,
        },
        src_is_addr1: false,
        route: StateRoute::NONE,
        scrub: Scrub::NONE,
    };

    /// Whether this describes a translation.
    #[inline]
    pub fn is_some(&self) -> bool {
        self.key.af != 0
    }

    /// The initiator's endpoint on the egress side.
    pub fn src_endpoint(&self) -> (Addr, u16) {
        let i = self.src_is_addr1 as usize;
        (self.key.addr[i], self.key.port[i])
    }

    /// The responder's endpoint on the egress side.
    pub fn dst_endpoint(&self) -> (Addr, u16) {
        let i = (!self.src_is_addr1) as usize;
        (self.key.addr[i], self.key.port[i])
    }
}

/// Rule number meaning "no rule" (pfsync's 0xffffffff).
pub const NO_RULE: u32 = u32::MAX;

/// One endpoint's view of a connection: pf's `pf_state_peer`, with the
/// fields `pfsync_state_peer` carries (spec/pfsync.md §3.6) minus scrub.
///
/// Packed to 2-byte alignment so that two peers fit the 128-byte
/// [`State`]; read and write the fields by value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed(2))]
pub struct Peer {
    /// Highest sequence number this peer has sent (next expected), or 0
    /// before it sent anything.
    pub seqlo: u32,
    /// Highest sequence number this peer may send: the other side's highest
    /// ACK plus its window.
    pub seqhi: u32,
    /// Sequence number modulator. dpf does not modulate (`modulate state`),
    /// so it is 0 for local states; carried for pfsync.
    pub seqdiff: u32,
    /// Largest window this peer advertised, unscaled.
    pub max_win: u16,
    /// MSS (synproxy only; 0 in dpf's own states).
    pub mss: u16,
    /// Window scale: low 4 bits the shift, [`WSCALE_FLAG`] when the option
    /// was sent.
    pub wscale: u8,
    /// [`tcps`] state for TCP, [`udps`] level for UDP and others.
    pub state: u8,
}

const _: () = assert!(core::mem::size_of::<Peer>() == 18);

/// One pf state. See the module documentation for the layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct State {
    key: FlowKey,
    id: u64,
    creatorid: u32,
    /// Number of the rule that created the state ([`NO_RULE`] if none).
    pub rule: u32,
    creation_s: u32,
    last_seen_s: u32,
    packets: [u32; 2],
    bytes_lo: [u32; 2],
    bytes_hi: [u16; 2],
    /// Interface the creating packet was evaluated on.
    pub ifindex: IfIndex,
    /// pfsync PFSTATE_* bits ([`state_flags`]).
    pub state_flags: u16,
    /// Current timeout class (pf's `timeout`, PFTM_* index).
    pub timeout: TimeoutClass,
    /// Direction of the creating packet.
    pub direction: Direction,
    /// Updates since the last pfsync export of this state (for `maxupd`).
    pub sync_updates: u8,
    sides: u8,
    /// pf's `src` peer: the endpoint that sent the first packet.
    pub src: Peer,
    /// pf's `dst` peer.
    pub dst: Peer,
}

const _: () = assert!(core::mem::size_of::<State>() <= 128);
const _: () = assert!(core::mem::size_of::<State>() == 128);

/// Whole seconds of `now` (pf's `time_uptime`), saturating at `u32::MAX`
/// (136 years).
#[inline]
pub(crate) fn secs_of(now: Instant) -> u32 {
    let s = now.0 / 1_000_000_000;
    if s > u32::MAX as u64 {
        u32::MAX
    } else {
        s as u32
    }
}

/// Whole seconds of `now` (the clock states and source nodes keep).
#[inline]
pub fn secs_of_instant(now: Instant) -> u32 {
    secs_of(now)
}

impl State {
    /// A state with identity `key` / `id` / `creatorid`, created at `now`.
    /// `src_is_addr1` says which endpoint of `key` is pf's `src` peer
    /// (the second value of [`FlowKey::from_packet`] for the first packet).
    ///
    /// Everything else starts empty: peers zero, no rule, direction in,
    /// interface 0, timeout `other.first`. Local states come from
    /// [`new_state`](super::new_state); pfsync imports fill the public
    /// fields after this.
    pub fn new(key: FlowKey, src_is_addr1: bool, id: u64, creatorid: u32, now: Instant) -> State {
        let t = secs_of(now);
        State {
            key,
            id,
            creatorid,
            rule: NO_RULE,
            creation_s: t,
            last_seen_s: t,
            packets: [0; 2],
            bytes_lo: [0; 2],
            bytes_hi: [0; 2],
            ifindex: IfIndex(0),
            state_flags: 0,
            timeout: TimeoutClass::OtherFirst,
            direction: Direction::In,
            sync_updates: 0,
            sides: src_is_addr1 as u8,
            src: Peer::default(),
            dst: Peer::default(),
        }
    }

    /// A record that names a state by its pfsync identity only (a deletion
    /// retried after a full ring, a request for a state this box lacks);
    /// never inserted into a shard.
    pub fn identity_only(id: u64, creatorid: u32, now: Instant) -> State {
        State::new(FlowKey::default(), false, id, creatorid, now)
    }

    /// The state key (canonical, lower endpoint first).
    #[inline]
    pub fn key(&self) -> &FlowKey {
        &self.key
    }

    /// The state id (spec/pfsync.md §4).
    #[inline]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The creator's host id (spec/pfsync.md §4).
    #[inline]
    pub fn creatorid(&self) -> u32 {
        self.creatorid
    }

    /// The shard that allocated a locally created state's id (top 8 bits).
    #[inline]
    pub fn id_shard(&self) -> u8 {
        (self.id >> 56) as u8
    }

    /// Whether `key.addr[1]` is pf's `src` peer (else `key.addr[0]` is).
    #[inline]
    pub fn src_is_addr1(&self) -> bool {
        self.sides & SIDE_SRC_IS_ADDR1 != 0
    }

    /// Whether the state translates addresses (NAT): its shard holds the
    /// other side's key ([`Translation`]) and indexes it too.
    #[inline]
    pub fn is_translated(&self) -> bool {
        self.sides & SIDE_TRANSLATED != 0
    }

    /// Whether the state has a `route-to` / `reply-to` (held by its shard
    /// with the translation, [`Translation::route`]).
    #[inline]
    pub fn is_routed(&self) -> bool {
        self.sides & SIDE_ROUTED != 0
    }

    /// The source node the state counts against, if any: `Some(true)` for
    /// a `source-track global` node, `Some(false)` for its rule's.
    #[inline]
    pub fn src_tracking(&self) -> Option<bool> {
        (self.sides & SIDE_SRC_TRACKED != 0).then_some(self.sides & SIDE_SRC_GLOBAL != 0)
    }

    /// Whether every packet of the state is logged (`log (all)`).
    #[inline]
    pub fn log_all(&self) -> bool {
        self.sides & SIDE_LOG_ALL != 0
    }

    /// Sets whether every packet of the state is logged (`log (all)`).
    #[inline]
    pub fn set_log_all(&mut self, on: bool) {
        if on {
            self.sides |= SIDE_LOG_ALL;
        } else {
            self.sides &= !SIDE_LOG_ALL;
        }
    }

    /// Marks the state as counted against a source node (`global`: a
    /// `source-track global` one).
    #[inline]
    pub fn set_src_tracked(&mut self, global: bool) {
        self.sides |= SIDE_SRC_TRACKED;
        if global {
            self.sides |= SIDE_SRC_GLOBAL;
        }
    }

    /// Whether the state counts as an established connection of its
    /// source (`max-src-conn`).
    #[inline]
    pub fn is_src_conn(&self) -> bool {
        self.sides & SIDE_SRC_CONN != 0
    }

    /// Counts the state as an established connection of its source.
    #[inline]
    pub fn set_src_conn(&mut self) {
        self.sides |= SIDE_SRC_CONN;
    }

    /// Detaches the state from its source node (it no longer counts).
    #[inline]
    pub fn clear_src_tracking(&mut self) {
        self.sides &= !(SIDE_SRC_TRACKED | SIDE_SRC_GLOBAL | SIDE_SRC_CONN);
    }

    /// Whether the state has scrub values (held by its shard with the
    /// translation, [`Translation::scrub`]).
    #[inline]
    pub fn is_scrubbed(&self) -> bool {
        self.sides & SIDE_SCRUBBED != 0
    }

    /// Whether the shard holds a [`Translation`] record for the state (a
    /// translation, a route or scrub values).
    #[inline]
    pub fn has_side_record(&self) -> bool {
        self.sides & (SIDE_TRANSLATED | SIDE_ROUTED | SIDE_SCRUBBED) != 0
    }

    /// Marks the state scrubbed or not (only the shard does).
    #[inline]
    pub(crate) fn set_scrubbed(&mut self, on: bool) {
        if on {
            self.sides |= SIDE_SCRUBBED;
        } else {
            self.sides &= !SIDE_SCRUBBED;
        }
    }

    /// Marks the state routed or not (only the shard does).
    #[inline]
    pub(crate) fn set_routed(&mut self, on: bool) {
        if on {
            self.sides |= SIDE_ROUTED;
        } else {
            self.sides &= !SIDE_ROUTED;
        }
    }

    /// Marks the state translated or not (only the shard does, as it
    /// indexes the other key).
    #[inline]
    pub(crate) fn set_translated(&mut self, on: bool) {
        if on {
            self.sides |= SIDE_TRANSLATED;
        } else {
            self.sides &= !SIDE_TRANSLATED;
        }
    }

    /// Whether a packet whose [`FlowKey::from_packet`] returned `swapped`
    /// comes from pf's `src` peer.
    #[inline]
    pub fn is_from_src(&self, swapped: bool) -> bool {
        swapped == self.src_is_addr1()
    }

    /// pf's `src` endpoint (address, port).
    pub fn src_endpoint(&self) -> (Addr, u16) {
        let i = self.src_is_addr1() as usize;
        (self.key.addr[i], self.key.port[i])
    }

    /// pf's `dst` endpoint (address, port).
    pub fn dst_endpoint(&self) -> (Addr, u16) {
        let i = (!self.src_is_addr1()) as usize;
        (self.key.addr[i], self.key.port[i])
    }

    /// Whether the state uses the sloppy TCP tracker.
    #[inline]
    pub fn is_sloppy(&self) -> bool {
        self.state_flags & state_flags::SLOPPY != 0
    }

    /// Whether pfsync must never announce this state.
    #[inline]
    pub fn is_nosync(&self) -> bool {
        self.state_flags & state_flags::NOSYNC != 0
    }

    /// Packets counted in direction `dir` (0 = src->dst, 1 = dst->src).
    /// Kept modulo 2^32.
    #[inline]
    pub fn packets(&self, dir: usize) -> u64 {
        self.packets[dir & 1] as u64
    }

    /// Bytes counted in direction `dir` (0 = src->dst, 1 = dst->src). Kept
    /// modulo 2^48.
    #[inline]
    pub fn bytes(&self, dir: usize) -> u64 {
        let d = dir & 1;
        (self.bytes_hi[d] as u64) << 32 | self.bytes_lo[d] as u64
    }

    /// Counts one packet of `len` bytes from the `src` peer (`from_src`)
    /// or from the `dst` peer.
    #[inline]
    pub fn count(&mut self, from_src: bool, len: u32) {
        let d = (!from_src) as usize;
        self.packets[d] = self.packets[d].wrapping_add(1);
        // The 48-bit sum as a 32-bit add whose rare carry goes to the high
        // half (wrapping there is the 48-bit wrap).
        let (lo, carry) = self.bytes_lo[d].overflowing_add(len);
        self.bytes_lo[d] = lo;
        if carry {
            self.bytes_hi[d] = self.bytes_hi[d].wrapping_add(1);
        }
    }

    /// Resets the packet and byte counters (pfsync imports do not carry
    /// them, spec/pfsync.md §5.4 step 6).
    pub fn clear_counters(&mut self) {
        self.packets = [0; 2];
        self.bytes_lo = [0; 2];
        self.bytes_hi = [0; 2];
    }

    /// Creation time, whole seconds of the `Instant` clock.
    #[inline]
    pub fn creation_s(&self) -> u32 {
        self.creation_s
    }

    /// Last activity, whole seconds of the `Instant` clock.
    #[inline]
    pub fn last_seen_s(&self) -> u32 {
        self.last_seen_s
    }

    /// Records activity at `now` (pf: `expire = time_uptime`).
    #[inline]
    pub fn touch(&mut self, now: Instant) {
        // Written only when the second changes: the state's first cache
        // line then stays clean for most packets (no write-back).
        let s = secs_of(now);
        if self.last_seen_s != s {
            self.last_seen_s = s;
        }
    }

    /// Age in seconds at `now` (pfsync `creation`).
    pub fn age_s(&self, now: Instant) -> u32 {
        secs_of(now).saturating_sub(self.creation_s)
    }

    /// The instant at which the state expires under `timeouts`.
    pub fn expires_at(&self, timeouts: &Timeouts) -> Instant {
        Instant::from_secs(self.last_seen_s as u64 + timeouts.secs(self.timeout) as u64)
    }

    /// Whether the state has expired at `now`:
    /// `last_seen_s + timeout_s <= now_s`.
    #[inline]
    pub fn is_expired(&self, now: Instant, timeouts: &Timeouts) -> bool {
        self.is_expired_scaled(now, timeouts, TimeoutScale::NONE)
    }

    /// [`State::is_expired`] with pf's adaptive factor applied to the
    /// timeout (`last_seen_s + scaled(timeout_s) <= now_s`).
    #[inline]
    pub fn is_expired_scaled(
        &self,
        now: Instant,
        timeouts: &Timeouts,
        scale: TimeoutScale,
    ) -> bool {
        self.is_expired_scaled_s(secs_of(now), timeouts, scale)
    }

    /// [`State::is_expired_scaled`] at `now_s`, whole seconds of `now`
    /// ([`secs_of_instant`]; a burst computes it once).
    #[inline]
    pub fn is_expired_scaled_s(
        &self,
        now_s: u32,
        timeouts: &Timeouts,
        scale: TimeoutScale,
    ) -> bool {
        scale.expired(self.last_seen_s, timeouts.secs(self.timeout), now_s)
    }

    /// Seconds until expiry at `now`, 0 if expired (pfsync `expire`).
    pub fn expire_in_s(&self, now: Instant, timeouts: &Timeouts) -> u32 {
        self.expire_in_s_scaled(now, timeouts, TimeoutScale::NONE)
    }

    /// [`State::expire_in_s`] with pf's adaptive factor applied (what pf
    /// exports: spec/pfsync.md §3.7, `expire` includes the scaling).
    pub fn expire_in_s_scaled(
        &self,
        now: Instant,
        timeouts: &Timeouts,
        scale: TimeoutScale,
    ) -> u32 {
        let end = self.last_seen_s as u64 + scale.scaled(timeouts.secs(self.timeout));
        end.saturating_sub(secs_of(now) as u64).min(u32::MAX as u64) as u32
    }

    /// Sets the times of a state imported by pfsync from the sender's
    /// `creation` (age) and `expire` (seconds left), spec/pfsync.md §5.4
    /// step 7: the remaining lifetime equals the sender's; `expire == 0`
    /// gives a full fresh lifetime. `self.timeout` must already be set.
    pub fn import_times(&mut self, now: Instant, age_s: u32, expire_s: u32, timeouts: &Timeouts) {
        let now_s = secs_of(now);
        self.creation_s = now_s.saturating_sub(age_s);
        self.last_seen_s = now_s;
        if expire_s != 0 {
            let t = timeouts.secs(self.timeout);
            // last = now - (T - expire); an expire beyond T keeps `now`.
            self.last_seen_s = now_s.saturating_sub(t.saturating_sub(expire_s));
        }
    }

    /// Counts one more update for pfsync's `maxupd` coalescing (spec/pfsync.md
    /// §5.2) and returns true, resetting the counter, when it reaches
    /// `maxupd`: the caller then exports an update now.
    pub fn sync_tick(&mut self, maxupd: u8) -> bool {
        self.sync_updates = self.sync_updates.saturating_add(1);
        if self.sync_updates >= maxupd {
            self.sync_updates = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{proto, Af};

    fn key() -> (FlowKey, bool) {
        FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4([10, 0, 0, 9]),
            40000,
            Addr::v4([10, 0, 0, 1]),
            22,
        )
    }

    #[test]
    fn layout_is_two_64_byte_halves() {
        assert_eq!(core::mem::size_of::<State>(), 128);
        // Cache-line aligned: a state is exactly two lines of the slab.
        assert_eq!(core::mem::align_of::<State>(), 64);
    }

    #[test]
    fn src_endpoint_follows_the_first_packet() {
        let (k, swapped) = key();
        assert!(swapped, "10.0.0.9 > 10.0.0.1 so the source is addr[1]");
        let s = State::new(k, swapped, 1, 7, Instant::from_secs(5));
        assert_eq!(s.src_endpoint(), (Addr::v4([10, 0, 0, 9]), 40000));
        assert_eq!(s.dst_endpoint(), (Addr::v4([10, 0, 0, 1]), 22));
        assert!(s.is_from_src(true));
        assert!(!s.is_from_src(false));
    }

    #[test]
    fn counters_are_per_direction_and_48_bit_bytes_wrap() {
        let (k, sw) = key();
        let mut s = State::new(k, sw, 1, 7, Instant::from_secs(0));
        s.count(true, 100);
        s.count(false, 40);
        s.count(true, 1500);
        assert_eq!((s.packets(0), s.bytes(0)), (2, 1600));
        assert_eq!((s.packets(1), s.bytes(1)), (1, 40));
        // Crossing 2^32 carries into the high half.
        for _ in 0..3 {
            s.count(false, u32::MAX);
        }
        assert_eq!(s.bytes(1), 40 + 3 * u32::MAX as u64);
        // Near 2^48 the counter wraps modulo 2^48, whatever the start.
        const BYTES_MASK: u64 = (1 << 48) - 1;
        for start in [
            BYTES_MASK,
            BYTES_MASK - 99,
            (1 << 48) - (1 << 32),
            0xffff_ffff,
        ] {
            for len in [1u32, 100, u32::MAX] {
                s.bytes_lo[0] = start as u32;
                s.bytes_hi[0] = (start >> 32) as u16;
                s.count(true, len);
                assert_eq!(
                    s.bytes(0),
                    (start + len as u64) & BYTES_MASK,
                    "{start:#x} + {len}"
                );
            }
        }
        s.clear_counters();
        assert_eq!(s.bytes(1) + s.packets(0), 0);
    }

    #[test]
    fn expiry_is_last_seen_plus_timeout_in_seconds() {
        let (k, sw) = key();
        let t = Timeouts::default();
        let mut s = State::new(k, sw, 1, 7, Instant::from_secs(100));
        s.timeout = TimeoutClass::TcpOpening; // 30 s
        assert!(!s.is_expired(Instant::from_secs(129), &t));
        assert!(!s.is_expired(Instant::from_nanos(129_999_999_999), &t));
        assert!(s.is_expired(Instant::from_secs(130), &t));
        assert_eq!(s.expires_at(&t), Instant::from_secs(130));
        assert_eq!(s.expire_in_s(Instant::from_secs(110), &t), 20);
        assert_eq!(s.expire_in_s(Instant::from_secs(200), &t), 0);
        s.touch(Instant::from_secs(150));
        assert!(!s.is_expired(Instant::from_secs(170), &t));
        assert_eq!(s.age_s(Instant::from_secs(170)), 70);
    }

    #[test]
    fn import_times_keep_the_senders_remaining_lifetime() {
        let (k, sw) = key();
        let t = Timeouts::default();
        let now = Instant::from_secs(10_000);
        let mut s = State::new(k, sw, 1, 7, now);
        s.timeout = TimeoutClass::TcpEstablished;
        s.import_times(now, 300, 86_000, &t);
        assert_eq!(s.age_s(now), 300);
        assert_eq!(s.expire_in_s(now, &t), 86_000);
        s.import_times(now, 0, 0, &t);
        assert_eq!(s.expire_in_s(now, &t), 86_400);
    }

    #[test]
    fn sync_tick_fires_every_maxupd_updates() {
        let (k, sw) = key();
        let mut s = State::new(k, sw, 1, 7, Instant::from_secs(1));
        let fired: Vec<bool> = (0..6).map(|_| s.sync_tick(3)).collect();
        assert_eq!(fired, [false, false, true, false, false, true]);
    }
}
