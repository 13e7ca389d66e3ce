//! The slow path of router mode, sans-I/O: frames the workers sent to the
//! control thread (ARP, neighbour discovery, ICMP to the box's addresses,
//! packets whose TTL ran out) go in, frames to transmit come out; next-hop
//! resolution (ARP request / neighbour solicitation, retries, aging,
//! incomplete entries) runs on a clock passed in. Changes of the resolved
//! set are published as neighbour snapshots for the workers
//! ([`SlowPath::take_snapshot`]).
//!
//! # Neighbour hygiene
//!
//! Every frame on every port is hostile. What may teach the table a MAC:
//!
//! - ND (RFC 4861): an NS, NA, RS, RA or redirect whose hop limit is not 255
//!   crossed a router, so it is not from the link: dropped and counted
//!   (`nd_bad_hop_limit`; §6.1.1, §6.1.2, §7.1.1, §7.1.2, §8.1). The other
//!   validity rules of those sections drop and count `nd_invalid`: code 0,
//!   the minimum length of each message, no option of length 0, a checksum
//!   that verifies, no fragment (RFC 6980), an NS/NA target that is not
//!   multicast, a source that is not multicast, an NS from `::` (DAD) only
//!   to a solicited-node group and without a source link-layer option, no
//!   Solicited flag on an NA to a group, RA and redirect only from a
//!   link-local source. Valid RS, RA and redirects are then ignored: dpf is
//!   a router with static routes.
//! - An NS teaches its source only when its target is ours on that port (an
//!   address of the port, or a VIP we are MASTER for), its source is not
//!   `::` and it carries a source link-layer address (§7.2.3, narrowed: a
//!   DAD probe or an NS for someone else never creates an entry).
//! - An NA never creates an entry (§7.2.5): for a target without one it is
//!   ignored (`na_ignored`). It completes an incomplete entry (with a target
//!   link-layer address). On a resolved entry a different MAC replaces the
//!   old one only with the Override flag (O=0: ignored), and only a
//!   solicited NA confirms reachability (refreshes the entry's age and its
//!   place in the LRU); an unsolicited one changes the MAC at most.
//! - ARP (RFC 826, as Linux with `arp_accept=0`): an ARP from a known
//!   sender updates its entry; a new entry is made only from a request for
//!   our address on that port. Replies and gratuitous ARP update existing
//!   entries (an incomplete one: the answer to our request) and create none.
//! - Whatever is learned must be on a connected subnet of the receiving
//!   port, not `0.0.0.0`/`::`, a broadcast (limited or directed), a group,
//!   one of our addresses or a VIP, and have a unicast, non-zero MAC
//!   (`neighbor_rejected`). Static entries never change.
//! - An ARP or ND message claiming one of our addresses or a VIP we are
//!   MASTER for (ARP sender, NS source, NA target) from a MAC that is not
//!   ours (a port's MAC, or the virtual MAC of a VHID on that port) is an
//!   address conflict: counted (`address_conflicts`), logged at `warning`
//!   at most [`CONFLICT_LOGS_PER_S`] times a second (the count of the
//!   unlogged ones rides on the next line), never learned, never answered.
//!
//! # A bounded table
//!
//! At most `neighbor_limit` dynamic entries (`[dataplane] neighbor_limit`);
//! static ones are not counted and never evicted. A new entry in a full
//! table evicts the oldest incomplete entry, else the least recently
//! confirmed resolved one (`neighbor_evictions`), but not one confirmed
//! less than [`EVICT_MIN_AGE`] ago (Linux's forced GC spares such entries
//! too): a flood of new sources cannot push out the next hop that just
//! answered. With nothing evictable the new entry is not made
//! (`neighbor_table_full`). An LRU index ordered by (incomplete first,
//! confirmation order) makes each of these O(log n).
//!
//! # What a flood costs
//!
//! Nothing done per packet walks the table: a frame costs O(log n) (a hash
//! lookup, an LRU index update). The O(n) work is the snapshot the workers
//! read, rebuilt only when a resolved entry changed (the dirty flag), and
//! [`SlowPath::take_snapshot`] builds one at most once per
//! max([`SNAPSHOT_MIN_INTERVAL`], n × [`SNAPSHOT_INTERVAL_PER_ENTRY`]) (1 ms,
//! or 4 ms for 4096 entries): however fast the flood, rebuilding takes a
//! small bounded share of the control thread, an amortised O(1) per packet,
//! and a next hop that answered is in the workers' table within about a
//! millisecond. [`SlowPath::poll`] walks the table only when the earliest
//! deadline (a retry, a refresh, an expiry) has come.

use crate::log::Level;
use dataplane::flow::{proto, Addr, Af, Direction, IfIndex, L4Info, PacketInfo};
use dataplane::route::{
    vmac_vhid, Neighbor, NeighborEntry, Neighbors, Prefix, ResolveRequest, Routing,
};
use dataplane::time::{Duration, Instant};
use dataplane::wire::build::{self, Body, Reply, L4};
use dataplane::wire::{
    arp, classify, ethernet, icmp, icmpv6, ipv4, ipv6, Classified, EtherType, EthernetAddress,
    FrameKind,
};
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Tries before a next hop is given up (until the next request).
const RESOLVE_TRIES: u8 = 3;
/// Between tries.
const RESOLVE_RETRY: Duration = Duration::from_secs(1);
/// A resolved entry is refreshed after this...
const REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// ...and forgotten after this without an answer.
const EXPIRE_AFTER: Duration = Duration::from_secs(20 * 60);
/// ICMP errors (time exceeded) per second.
const ICMP_ERRORS_PER_S: u32 = 100;
/// How often next hops kept resolved ([`SlowPath::with_gateways`]) are
/// checked for an entry.
const GATEWAY_CHECK: Duration = Duration::from_secs(10);
/// Echo replies (ping, ping6) per second, in all.
const ECHO_REPLIES_PER_S: u32 = 1000;
/// ICMP answers of either kind per second to one source address.
const ICMP_PER_SOURCE_PER_S: u32 = 20;
/// Source addresses tracked for the per-source limit (a fixed table
/// indexed by a keyed hash of the address; a colliding source takes the
/// slot over, so a flood of spoofed sources is held by the global limits).
const ICMP_SOURCE_SLOTS: usize = 4096;

/// A token bucket refilled once a second.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    refill_at: Instant,
}

impl Bucket {
    const fn empty() -> Bucket {
        Bucket {
            tokens: 0,
            refill_at: Instant(0),
        }
    }

    /// Takes a token (refilling to `per_s` when a second has passed).
    fn take(&mut self, per_s: u32, now: Instant) -> bool {
        if now >= self.refill_at {
            self.tokens = per_s;
            self.refill_at = now + Duration::from_secs(1);
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Rate limits of what the box answers with ICMP: echo replies and ICMP
/// errors each have a global budget per second, and every source address
/// has its own small one on top, so one host (or a flood) cannot make the
/// box a reflector nor starve others' answers.
struct IcmpLimiter {
    echo: Bucket,
    errors: Bucket,
    /// (address, bucket) per slot.
    sources: Box<[(Addr, Bucket)]>,
    key: u64,
}

/// What is being answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IcmpAnswer {
    Echo,
    Error,
}

impl IcmpLimiter {
    fn new() -> IcmpLimiter {
        IcmpLimiter {
            echo: Bucket::empty(),
            errors: Bucket::empty(),
            sources: vec![(Addr::ZERO, Bucket::empty()); ICMP_SOURCE_SLOTS].into_boxed_slice(),
            key: rand::random(),
        }
    }

    /// Whether an answer of `kind` to `src` may go now; counts refusals.
    fn allow(
        &mut self,
        kind: IcmpAnswer,
        src: &Addr,
        now: Instant,
        stats: &mut SlowPathStats,
    ) -> bool {
        let mut h = self.key;
        for chunk in src.0.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        }
        let slot = (h as usize) % ICMP_SOURCE_SLOTS;
        let Some(entry) = self.sources.get_mut(slot) else {
            return false;
        };
        if entry.0 != *src {
            *entry = (*src, Bucket::empty());
        }
        if !entry.1.take(ICMP_PER_SOURCE_PER_S, now) {
            stats.icmp_rate_limited_source += 1;
            return false;
        }
        let global = match kind {
            IcmpAnswer::Echo => self.echo.take(ECHO_REPLIES_PER_S, now),
            IcmpAnswer::Error => self.errors.take(ICMP_ERRORS_PER_S, now),
        };
        if !global {
            stats.icmp_rate_limited += 1;
        }
        global
    }
}
/// Dynamic neighbour entries when the configuration does not say.
pub const DEFAULT_NEIGHBOR_LIMIT: usize = 4096;
/// A resolved entry confirmed more recently than this is not evicted.
pub const EVICT_MIN_AGE: Duration = Duration::from_secs(5);
/// Snapshots are published at most this often...
pub const SNAPSHOT_MIN_INTERVAL: Duration = Duration::from_millis(1);
/// ...and, for a big table, at most once per this much time per entry.
pub const SNAPSHOT_INTERVAL_PER_ENTRY: Duration = Duration::from_micros(1);
/// Address-conflict log lines per second.
pub const CONFLICT_LOGS_PER_S: u32 = 5;
/// The hop limit every ND message is sent with (RFC 4861 §7.1).
const ND_HOP_LIMIT: u8 = 255;

#[derive(Clone, Copy, Debug)]
enum Entry {
    Incomplete {
        port: u16,
        tries: u8,
        next_at: Instant,
        /// Place in the LRU index.
        lru: u64,
    },
    Reachable {
        nb: Neighbor,
        /// Last confirmed (solicited answer, ARP from it).
        learned_at: Instant,
        refreshing: Option<Instant>,
        /// Place in the LRU index.
        lru: u64,
    },
    Static(Neighbor),
}

impl Entry {
    /// The key of a dynamic entry in the LRU index: incomplete entries
    /// (class 0) go before resolved ones (class 1), each oldest first.
    fn lru_key(&self) -> Option<(u8, u64)> {
        match *self {
            Entry::Incomplete { lru, .. } => Some((0, lru)),
            Entry::Reachable { lru, .. } => Some((1, lru)),
            Entry::Static(_) => None,
        }
    }

    /// When [`SlowPath::poll`] has something to do for this entry.
    fn deadline(&self) -> Option<Instant> {
        match *self {
            Entry::Incomplete { next_at, .. } => Some(next_at),
            Entry::Reachable {
                learned_at,
                refreshing,
                ..
            } => Some(refreshing.map_or(learned_at + REFRESH_AFTER, |t| {
                t.min(learned_at + EXPIRE_AFTER)
            })),
            Entry::Static(_) => None,
        }
    }

    fn reachable(nb: Neighbor, now: Instant) -> Entry {
        Entry::Reachable {
            nb,
            learned_at: now,
            refreshing: None,
            lru: 0,
        }
    }
}

/// Slow-path counters (shown by `dpfctl -s info`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SlowPathStats {
    /// Frames received from workers.
    pub received: u64,
    /// ARP requests answered.
    pub arp_replies: u64,
    /// Neighbour solicitations answered.
    pub na_sent: u64,
    /// Echo requests answered.
    pub echo_replies: u64,
    /// ARP requests / neighbour solicitations sent to resolve next hops.
    pub resolutions_sent: u64,
    /// Next hops learned or refreshed.
    pub learned: u64,
    /// ICMP time exceeded sent.
    pub time_exceeded: u64,
    /// ICMP answers (errors, echo replies) not sent because of the global
    /// rate limits (100 errors/s, 1000 echo replies/s).
    pub icmp_rate_limited: u64,
    /// ICMP answers not sent because their destination had its 20 for
    /// this second.
    pub icmp_rate_limited_source: u64,
    /// Frames dropped (not for the slow path, malformed, unanswerable).
    pub dropped: u64,
    /// ND messages (NS, NA, RS, RA, redirect) dropped: hop limit not 255.
    pub nd_bad_hop_limit: u64,
    /// ND messages dropped by the other validity checks of RFC 4861 (code,
    /// length, options, checksum, target, flags, source).
    pub nd_invalid: u64,
    /// NAs that taught nothing: no entry for the target, a static entry,
    /// Override clear with another MAC, no target link-layer address for
    /// an incomplete entry.
    pub na_ignored: u64,
    /// Would-be neighbours refused: off the receiving port's subnets, an
    /// unusable address (unspecified, broadcast, group, ours) or MAC.
    pub neighbor_rejected: u64,
    /// ARP / ND claims to one of our addresses or a VIP we are MASTER for
    /// from a MAC not ours.
    pub address_conflicts: u64,
    /// Dynamic entries evicted to make room for new ones.
    pub neighbor_evictions: u64,
    /// New entries not made: the table was full of entries too recently
    /// confirmed to evict.
    pub neighbor_table_full: u64,
    /// Dynamic entries (incomplete and resolved) now.
    pub neighbor_entries: u64,
    /// Neighbour snapshots published to the workers.
    pub snapshots_published: u64,
}

/// One neighbour table row, for `dpfctl -s neighbors`.
#[derive(Clone, Copy, Debug)]
pub struct NeighborRow {
    /// Family.
    pub af: Af,
    /// Address.
    pub addr: Addr,
    /// MAC, `None` while incomplete.
    pub mac: Option<[u8; 6]>,
    /// Port.
    pub port: u16,
    /// `incomplete`, `reachable` or `static`.
    pub state: &'static str,
}

/// A frame to transmit on a port.
pub type Out = (u16, Vec<u8>);

/// Whether a message may create the entry of the address it teaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Teach {
    /// A request / solicitation for our address: create or update.
    Create,
    /// Anything else: update an existing entry only.
    Update,
}

/// What a neighbour advertisement says (RFC 4861 §4.4).
#[derive(Clone, Copy, Debug)]
struct Advert {
    target: Addr,
    lladdr: Option<[u8; 6]>,
    solicited: bool,
    override_flag: bool,
}

/// Router-mode slow path state.
pub struct SlowPath {
    routing: Arc<Routing>,
    table: HashMap<(Af, Addr), Entry>,
    /// Dynamic entries by (class, confirmation order): the eviction order.
    lru: BTreeMap<(u8, u64), (Af, Addr)>,
    lru_seq: u64,
    neighbor_limit: usize,
    /// A resolved entry changed since the last snapshot.
    dirty: bool,
    published_at: Option<Instant>,
    /// No entry has anything for `poll` to do before this.
    poll_at: Instant,
    /// Next hops kept resolved whether traffic uses them or not (the
    /// routes' gateways), so a box that takes over as CARP master routes
    /// its first packets without waiting for ARP or ND.
    gateways: Vec<ResolveRequest>,
    /// When the gateways are next checked.
    gateways_at: Instant,
    icmp_limits: IcmpLimiter,
    conflict_log_tokens: u32,
    conflict_log_refill_at: Instant,
    conflicts_unlogged: u64,
    conflicts_logged: u64,
    /// Counters.
    pub stats: SlowPathStats,
}

impl SlowPath {
    /// A slow path for `routing` with static neighbours `statics` (the
    /// caller publishes those itself: the first snapshot comes with the
    /// first change), at most [`DEFAULT_NEIGHBOR_LIMIT`] dynamic entries.
    pub fn new(routing: Arc<Routing>, statics: &[NeighborEntry]) -> SlowPath {
        SlowPath {
            routing,
            table: statics
                .iter()
                .map(|(k, n)| (*k, Entry::Static(*n)))
                .collect(),
            lru: BTreeMap::new(),
            lru_seq: 0,
            neighbor_limit: DEFAULT_NEIGHBOR_LIMIT,
            dirty: false,
            published_at: None,
            poll_at: Instant(0),
            gateways: Vec::new(),
            gateways_at: Instant(0),
            icmp_limits: IcmpLimiter::new(),
            conflict_log_tokens: CONFLICT_LOGS_PER_S,
            conflict_log_refill_at: Instant(0),
            conflicts_unlogged: 0,
            conflicts_logged: 0,
            stats: SlowPathStats::default(),
        }
    }

    /// At most `limit` dynamic (incomplete or resolved) entries.
    pub fn with_neighbor_limit(mut self, limit: usize) -> SlowPath {
        self.neighbor_limit = limit;
        self
    }

    /// Keeps these next hops resolved: asked for at once and again every
    /// [`GATEWAY_CHECK`] while they have no entry (a resolved entry is
    /// refreshed as any other).
    pub fn with_gateways(mut self, gateways: Vec<ResolveRequest>) -> SlowPath {
        self.gateways = gateways;
        self
    }

    /// The resolved neighbours, if they changed since the last snapshot
    /// and the last one is old enough (see the module doc: at most one
    /// O(n) rebuild per max(1 ms, n µs)). A change held back stays pending
    /// and comes out on a later call.
    pub fn take_snapshot(&mut self, now: Instant) -> Option<Neighbors> {
        if !self.dirty {
            return None;
        }
        if let Some(at) = self.published_at {
            let per_entry = SNAPSHOT_INTERVAL_PER_ENTRY
                .0
                .saturating_mul(self.table.len() as u64);
            let every = Duration(SNAPSHOT_MIN_INTERVAL.0.max(per_entry));
            // A clock that went back (a replayed capture) does not hold
            // publication up.
            if now >= at && now.saturating_since(at) < every {
                return None;
            }
        }
        self.dirty = false;
        self.published_at = Some(now);
        self.stats.snapshots_published += 1;
        Some(Neighbors::new(self.table.iter().filter_map(
            |(k, e)| match e {
                Entry::Reachable { nb, .. } | Entry::Static(nb) => Some((*k, *nb)),
                Entry::Incomplete { .. } => None,
            },
        )))
    }

    /// Every entry for display, sorted by family and address.
    pub fn entries(&self) -> Vec<NeighborRow> {
        let row = |af: Af, addr: Addr, mac, port, state| NeighborRow {
            af,
            addr,
            mac,
            port,
            state,
        };
        let mut v: Vec<_> = self
            .table
            .iter()
            .map(|((af, a), e)| match e {
                Entry::Incomplete { port, .. } => row(*af, *a, None, *port, "incomplete"),
                Entry::Reachable { nb, .. } => row(*af, *a, Some(nb.mac), nb.port, "reachable"),
                Entry::Static(nb) => row(*af, *a, Some(nb.mac), nb.port, "static"),
            })
            .collect();
        v.sort_by_key(|r| (r.af as u8, r.addr));
        v
    }

    fn mac(&self, port: u16) -> EthernetAddress {
        EthernetAddress(self.routing.mac(port).unwrap_or([0; 6]))
    }

    /// Handles one frame received on `port`; returns what to send.
    pub fn handle(&mut self, frame: &[u8], port: u16, now: Instant, out: &mut Vec<Out>) {
        self.stats.received += 1;
        let Ok(c) = classify(frame, IfIndex(port), Direction::In) else {
            self.stats.dropped += 1;
            return;
        };
        let our_mac = self.mac(port);
        match c.kind {
            FrameKind::Arp => self.arp(frame, &c, port, our_mac, now, out),
            FrameKind::Ip {
                info,
                l4_offset,
                fragment,
                ..
            } => {
                // A VIP is ours only while we are MASTER for its VHID, and
                // answers come from its virtual MAC.
                let vip = self.routing.vips.lookup(info.af, &info.dst);
                let vip_master = vip.filter(|v| self.routing.vips.is_master(v.port, v.vhid));
                let ours =
                    self.routing.owner_of(info.af, &info.dst).is_some() || vip_master.is_some();
                let our_mac = vip_master.map_or(our_mac, |v| EthernetAddress(vmac(v.vhid)));
                match info.l4 {
                    L4Info::Icmp(i)
                        if ours
                            && info.af == Af::Inet
                            && i.icmp_type == icmp::msg_type::ECHO_REQUEST =>
                    {
                        if self
                            .icmp_limits
                            .allow(IcmpAnswer::Echo, &info.src, now, &mut self.stats)
                        {
                            self.send(build::icmpv4_echo_reply(frame, our_mac), port, out, |s| {
                                s.echo_replies += 1
                            });
                        }
                    }
                    L4Info::Icmp(_) if info.af == Af::Inet6 && info.proto == proto::ICMPV6 => {
                        let l4 = IcmpFrame {
                            frame,
                            c: &c,
                            info: &info,
                            l4_offset: l4_offset as usize,
                            fragment,
                        };
                        self.icmpv6(&l4, ours, port, our_mac, now, out);
                    }
                    _ if !ours && info.ttl <= 1 && !is_group(info.af, &info.dst) => {
                        self.time_exceeded(frame, info.af, port, now, out);
                    }
                    _ => self.stats.dropped += 1,
                }
            }
            FrameKind::Other => self.stats.dropped += 1,
        }
    }

    fn send(
        &mut self,
        r: Result<Reply<'_>, dataplane::wire::WireError>,
        port: u16,
        out: &mut Vec<Out>,
        count: impl FnOnce(&mut SlowPathStats),
    ) {
        match r.and_then(|r| {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf).map(|n| {
                buf.truncate(n);
                buf
            })
        }) {
            Ok(buf) => {
                count(&mut self.stats);
                out.push((port, buf));
            }
            Err(_) => self.stats.dropped += 1,
        }
    }

    /// Whether `addr` is one of ours: an address of any port, or a VIP we
    /// are MASTER for.
    fn claims_ours(&self, af: Af, addr: &Addr) -> bool {
        self.routing.owner_of(af, addr).is_some()
            || self
                .routing
                .vips
                .lookup(af, addr)
                .is_some_and(|v| self.routing.vips.is_master(v.port, v.vhid))
    }

    /// Whether `mac` is one of ours: a port's MAC, or the virtual MAC of a
    /// VHID on `port` (the other box of the pair uses it too).
    fn is_own_mac(&self, mac: &[u8; 6], port: u16) -> bool {
        self.routing.interfaces.iter().any(|i| i.mac == *mac)
            || vmac_vhid(mac).is_some_and(|vhid| {
                self.routing
                    .vips
                    .iter()
                    .any(|v| v.port == port && v.vhid == vhid)
            })
    }

    /// Someone else claims our address `addr` (`what` says how): counted,
    /// logged with a rate limit, never learned.
    fn conflict(&mut self, af: Af, addr: Addr, mac: [u8; 6], port: u16, what: &str, now: Instant) {
        self.stats.address_conflicts += 1;
        if now >= self.conflict_log_refill_at {
            self.conflict_log_tokens = CONFLICT_LOGS_PER_S;
            self.conflict_log_refill_at = now + Duration::from_secs(1);
        }
        if self.conflict_log_tokens == 0 {
            self.conflicts_unlogged += 1;
            return;
        }
        self.conflict_log_tokens -= 1;
        self.conflicts_logged += 1;
        let unlogged = std::mem::take(&mut self.conflicts_unlogged);
        let ifname = self
            .routing
            .interfaces
            .get(port as usize)
            .map_or("?", |i| i.name.as_str());
        let more = if unlogged > 0 {
            format!(" ({unlogged} earlier conflicts not logged)")
        } else {
            String::new()
        };
        crate::log!(
            Level::Warning,
            "address conflict: {what} from {} on {ifname} claims our address {}{more}",
            EthernetAddress(mac),
            addr.to_ip(af)
        );
    }

    /// Whether `addr` at `mac` may be a neighbour on `port`.
    fn acceptable(&self, af: Af, addr: &Addr, mac: &[u8; 6], port: u16) -> bool {
        let eth = EthernetAddress(*mac);
        if eth.is_multicast() || *mac == [0; 6] {
            return false;
        }
        if *addr == Addr::ZERO
            || is_group(af, addr)
            || self.routing.owner_of(af, addr).is_some()
            || self.routing.vips.lookup(af, addr).is_some()
        {
            return false;
        }
        self.routing.interfaces.get(port as usize).is_some_and(|i| {
            i.addrs
                .iter()
                .any(|a| a.prefix.contains(af, addr) && !is_directed_broadcast(&a.prefix, addr))
        })
    }

    /// Inserts or replaces the entry `key`; a dynamic one goes to the most
    /// recent end of its LRU class.
    fn put(&mut self, key: (Af, Addr), mut e: Entry) {
        self.lru_seq += 1;
        if let Entry::Incomplete { lru, .. } | Entry::Reachable { lru, .. } = &mut e {
            *lru = self.lru_seq;
        }
        if let Some(k) = self.table.insert(key, e).and_then(|old| old.lru_key()) {
            self.lru.remove(&k);
        }
        if let Some(k) = e.lru_key() {
            self.lru.insert(k, key);
        }
        if let Some(d) = e.deadline() {
            self.poll_at = self.poll_at.min(d);
        }
        self.stats.neighbor_entries = self.lru.len() as u64;
    }

    /// Room for one more dynamic entry: evicts the oldest incomplete
    /// entry, else the least recently confirmed resolved one if it was
    /// confirmed at least [`EVICT_MIN_AGE`] ago. `false` (counted) when
    /// nothing may go.
    fn make_room(&mut self, now: Instant) -> bool {
        while self.lru.len() >= self.neighbor_limit {
            let Some((&k, &key)) = self.lru.first_key_value() else {
                self.stats.neighbor_table_full += 1;
                return false;
            };
            if let Some(Entry::Reachable { learned_at, .. }) = self.table.get(&key) {
                if now.saturating_since(*learned_at) < EVICT_MIN_AGE {
                    self.stats.neighbor_table_full += 1;
                    return false;
                }
                self.dirty = true;
            }
            self.lru.remove(&k);
            self.table.remove(&key);
            self.stats.neighbor_evictions += 1;
        }
        self.stats.neighbor_entries = self.lru.len() as u64;
        true
    }

    /// RFC 826 for ARP, §7.2.3 for an NS: `addr` is at `mac` on `port`.
    fn learn(&mut self, af: Af, addr: Addr, mac: [u8; 6], port: u16, now: Instant, teach: Teach) {
        let key = (af, addr);
        let existing = self.table.get(&key).copied();
        match existing {
            Some(Entry::Static(_)) => return,
            // Nothing to update: most ARP on a LAN.
            None if teach == Teach::Update => return,
            _ => {}
        }
        if !self.acceptable(af, &addr, &mac, port) {
            self.stats.neighbor_rejected += 1;
            return;
        }
        let nb = Neighbor { mac, port };
        match existing {
            // Confirmed again: the same MAC on the same port.
            Some(Entry::Reachable { nb: old, .. }) if old == nb => {
                self.put(key, Entry::reachable(nb, now));
            }
            Some(_) => {
                self.put(key, Entry::reachable(nb, now));
                self.stats.learned += 1;
                self.dirty = true;
            }
            None => {
                if self.make_room(now) {
                    self.put(key, Entry::reachable(nb, now));
                    self.stats.learned += 1;
                    self.dirty = true;
                }
            }
        }
    }

    /// RFC 4861 §7.2.5: a valid NA for `a.target`, not ours.
    fn neighbor_advert(&mut self, a: Advert, port: u16, now: Instant) {
        let key = (Af::Inet6, a.target);
        match self.table.get(&key).copied() {
            // No entry: silently discarded (no creation); static: ours to say.
            None | Some(Entry::Static(_)) => self.stats.na_ignored += 1,
            Some(Entry::Incomplete { .. }) => {
                // Completed by the target link-layer address, or not at all.
                let Some(mac) = a.lladdr else {
                    self.stats.na_ignored += 1;
                    return;
                };
                if !self.acceptable(Af::Inet6, &a.target, &mac, port) {
                    self.stats.neighbor_rejected += 1;
                    return;
                }
                self.put(key, Entry::reachable(Neighbor { mac, port }, now));
                self.stats.learned += 1;
                self.dirty = true;
            }
            Some(Entry::Reachable {
                nb,
                learned_at,
                refreshing,
                lru,
            }) => {
                let new = Neighbor {
                    mac: a.lladdr.unwrap_or(nb.mac),
                    port,
                };
                if !self.acceptable(Af::Inet6, &a.target, &new.mac, port) {
                    self.stats.neighbor_rejected += 1;
                    return;
                }
                let differs = new != nb;
                if differs && !a.override_flag {
                    // O=0 and another address: the cached one stays.
                    self.stats.na_ignored += 1;
                    return;
                }
                if differs {
                    self.stats.learned += 1;
                    self.dirty = true;
                }
                if a.solicited {
                    // An answer: reachable, confirmed now.
                    self.put(key, Entry::reachable(new, now));
                } else if differs {
                    // Unsolicited: the new address (O=1), not a
                    // confirmation (the entry keeps its age and LRU place).
                    self.table.insert(
                        key,
                        Entry::Reachable {
                            nb: new,
                            learned_at,
                            refreshing,
                            lru,
                        },
                    );
                }
            }
        }
    }

    fn arp(
        &mut self,
        frame: &[u8],
        c: &Classified,
        port: u16,
        our_mac: EthernetAddress,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(bytes) = frame.get(c.l3_offset as usize..) else {
            self.stats.dropped += 1;
            return;
        };
        let Ok(repr) = arp::Packet::new_checked(bytes).and_then(|p| arp::Repr::parse(&p)) else {
            self.stats.dropped += 1;
            return;
        };
        let target = Addr::v4(repr.target_protocol_addr.octets());
        let sender = Addr::v4(repr.sender_protocol_addr.octets());
        let sender_mac = repr.sender_hardware_addr.0;
        let request = repr.operation == arp::Operation::Request;
        // Someone else says our address is theirs (RFC 5227 §2.4).
        if self.claims_ours(Af::Inet, &sender) {
            if self.is_own_mac(&sender_mac, port) {
                self.stats.dropped += 1;
            } else {
                let what = if repr.is_gratuitous() {
                    "gratuitous ARP"
                } else if request {
                    "ARP request"
                } else {
                    "ARP reply"
                };
                self.conflict(Af::Inet, sender, sender_mac, port, what, now);
            }
            return;
        }
        // A VIP is answered with its virtual MAC, and only by the MASTER.
        let vip = self.routing.vips.lookup(Af::Inet, &target);
        let vip_master =
            vip.filter(|v| v.port == port && self.routing.vips.is_master(port, v.vhid));
        if vip.is_some() && vip_master.is_none() {
            // A BACKUP does not answer, but learns the hosts that ask for
            // the shared gateway on its segment, so the table is warm the
            // moment it takes over (nothing waits for ARP then).
            if request && vip.is_some_and(|v| v.port == port) {
                self.learn(Af::Inet, sender, sender_mac, port, now, Teach::Create);
            }
            self.stats.dropped += 1;
            return;
        }
        let for_us = vip_master.is_some() || self.routing.owner_of(Af::Inet, &target) == Some(port);
        // RFC 826: update a known sender; add it only when a request is
        // for us. Replies and gratuitous ARP create nothing.
        let teach = if for_us && request {
            Teach::Create
        } else {
            Teach::Update
        };
        self.learn(Af::Inet, sender, sender_mac, port, now, teach);
        if for_us && request {
            let mac = vip_master.map_or(our_mac, |v| EthernetAddress(vmac(v.vhid)));
            self.send(build::arp_reply_to(&repr, c.vlan, mac), port, out, |s| {
                s.arp_replies += 1
            });
        } else if !for_us {
            self.stats.dropped += 1;
        }
    }

    fn icmpv6(
        &mut self,
        f: &IcmpFrame<'_>,
        ours: bool,
        port: u16,
        our_mac: EthernetAddress,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let info = f.info;
        // The ICMPv6 message is the IPv6 payload after the extension
        // headers, without any Ethernet padding.
        let end = f.c.l3_offset as usize + info.ip_len as usize;
        let Some(l4) = f.frame.get(f.l4_offset..end) else {
            self.stats.dropped += 1;
            return;
        };
        let msg_type = l4.first().copied().unwrap_or(0);
        let nd = nd_min_len(msg_type);
        if let Some(min_len) = nd {
            // RFC 4861 §6.1, §7.1, §8.1: from the link, or not at all.
            if info.ttl != ND_HOP_LIMIT {
                self.stats.nd_bad_hop_limit += 1;
                return;
            }
            if f.fragment
                || l4.get(1) != Some(&0)
                || l4.len() < min_len
                || is_group(Af::Inet6, &info.src)
            {
                self.stats.nd_invalid += 1;
                return;
            }
        }
        let ips = dataplane::wire::IpPair::from_addrs(info.af, info.src, info.dst);
        let Ok(repr) = icmpv6::Packet::new_checked(l4).and_then(|p| icmpv6::Repr::parse(&p, &ips))
        else {
            if nd.is_some() {
                self.stats.nd_invalid += 1;
            } else {
                self.stats.dropped += 1;
            }
            return;
        };
        match repr {
            icmpv6::Repr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                let target = Addr::v6(target_addr.octets());
                let dad = info.src == Addr::ZERO;
                // §7.1.1: a unicast target; a DAD probe goes to the
                // target's solicited-node group, without a link-layer address.
                if target_addr.is_multicast()
                    || (dad && (!is_solicited_node(&info.dst) || lladdr.is_some()))
                {
                    self.stats.nd_invalid += 1;
                    return;
                }
                if !dad && self.claims_ours(Af::Inet6, &info.src) {
                    let mac = lladdr.unwrap_or(f.c.src_mac).0;
                    if self.is_own_mac(&mac, port) {
                        self.stats.dropped += 1;
                    } else {
                        self.conflict(
                            Af::Inet6,
                            info.src,
                            mac,
                            port,
                            "neighbour solicitation",
                            now,
                        );
                    }
                    return;
                }
                // An IPv6 VIP is answered with its virtual MAC, and only by
                // the MASTER of its VHID (carp spec §4.11).
                let answer_mac = match self.routing.vips.lookup(Af::Inet6, &target) {
                    Some(v) if v.port == port && self.routing.vips.is_master(port, v.vhid) => {
                        Some(EthernetAddress(vmac(v.vhid)))
                    }
                    Some(v) => {
                        // A BACKUP learns who asks for the shared gateway
                        // on its segment (warm for a takeover), unanswered.
                        if let (true, false, Some(l)) = (v.port == port, dad, lladdr) {
                            self.learn(Af::Inet6, info.src, l.0, port, now, Teach::Create);
                        }
                        None
                    }
                    None => {
                        (self.routing.owner_of(Af::Inet6, &target) == Some(port)).then_some(our_mac)
                    }
                };
                let Some(mac) = answer_mac else {
                    // Not for us: nothing learned.
                    self.stats.dropped += 1;
                    return;
                };
                // §7.2.3, narrowed: a solicitation for us teaches its
                // source, if it gives its link-layer address.
                if let (false, Some(l)) = (dad, lladdr) {
                    self.learn(Af::Inet6, info.src, l.0, port, now, Teach::Create);
                }
                self.send(
                    build::neighbor_advert_reply(f.frame, mac, true),
                    port,
                    out,
                    |s| s.na_sent += 1,
                );
            }
            icmpv6::Repr::NeighborAdvert {
                solicited,
                override_flag,
                target_addr,
                lladdr,
                ..
            } => {
                // §7.1.2: a unicast target; S=0 to a group.
                if target_addr.is_multicast() || (solicited && is_group(Af::Inet6, &info.dst)) {
                    self.stats.nd_invalid += 1;
                    return;
                }
                let target = Addr::v6(target_addr.octets());
                if self.claims_ours(Af::Inet6, &target) {
                    let mac = lladdr.unwrap_or(f.c.src_mac).0;
                    if self.is_own_mac(&mac, port) {
                        self.stats.dropped += 1;
                    } else {
                        self.conflict(Af::Inet6, target, mac, port, "neighbour advertisement", now);
                    }
                    return;
                }
                self.neighbor_advert(
                    Advert {
                        target,
                        lladdr: lladdr.map(|l| l.0),
                        solicited,
                        override_flag,
                    },
                    port,
                    now,
                );
            }
            icmpv6::Repr::EchoRequest { .. } if ours => {
                if self
                    .icmp_limits
                    .allow(IcmpAnswer::Echo, &info.src, now, &mut self.stats)
                {
                    self.send(build::icmpv6_echo_reply(f.frame, our_mac), port, out, |s| {
                        s.echo_replies += 1
                    });
                }
            }
            icmpv6::Repr::Other { msg_type, data, .. } if nd.is_some() => {
                // RS, RA, redirect: checked (§6.1.1, §6.1.2, §8.1), then
                // ignored by a router with static routes.
                let fixed = nd.unwrap_or(0).saturating_sub(icmpv6::HEADER_LEN);
                let options = data.get(fixed..).unwrap_or(&[]);
                let mut slla = false;
                let mut bad = false;
                for o in icmpv6::NdpOptionsIter::new(options) {
                    match o {
                        Ok(icmpv6::NdpOption::SourceLinkLayerAddr(_)) => slla = true,
                        Ok(_) => {}
                        Err(_) => bad = true,
                    }
                }
                let link_local = info.src.0[0] == 0xfe && info.src.0[1] & 0xc0 == 0x80;
                bad |= match msg_type {
                    icmpv6::msg_type::ROUTER_SOLICIT => info.src == Addr::ZERO && slla,
                    _ => !link_local,
                };
                if bad {
                    self.stats.nd_invalid += 1;
                } else {
                    self.stats.dropped += 1;
                }
            }
            _ => self.stats.dropped += 1,
        }
    }

    fn time_exceeded(&mut self, frame: &[u8], af: Af, port: u16, now: Instant, out: &mut Vec<Out>) {
        let Ok(c) = classify(frame, IfIndex(port), Direction::In) else {
            return;
        };
        let FrameKind::Ip { info, .. } = c.kind else {
            return;
        };
        if !self
            .icmp_limits
            .allow(IcmpAnswer::Error, &info.src, now, &mut self.stats)
        {
            return;
        }
        let Some(src) = self.routing.address_on(port, af) else {
            self.stats.dropped += 1;
            return;
        };
        let l3 = c.l3_offset as usize;
        let eth = ethernet::Repr {
            src_addr: self.mac(port),
            dst_addr: c.src_mac,
            vlan_id: c.vlan,
            ethertype: if af == Af::Inet {
                EtherType::IPV4
            } else {
                EtherType::IPV6
            },
        };
        let reply = match af {
            Af::Inet => {
                let ihl = ((frame.get(l3).copied().unwrap_or(0x45) & 0x0f) as usize) * 4;
                let quoted = &frame[l3..frame.len().min(l3 + ihl + 8)];
                let l4 = L4::Icmpv4(icmp::Repr::TimeExceeded {
                    code: 0,
                    data: quoted,
                });
                Reply {
                    eth,
                    body: Body::Ipv4 {
                        ip: ipv4::Repr {
                            src_addr: Ipv4Addr::from(src.v4_octets()),
                            dst_addr: Ipv4Addr::from(info.src.v4_octets()),
                            protocol: proto::ICMP,
                            payload_len: 0,
                            ttl: ipv4::DEFAULT_TTL,
                            tos: 0,
                            ident: 0,
                            dont_frag: false,
                        },
                        l4,
                    },
                }
            }
            Af::Inet6 => {
                let quoted = &frame[l3..frame.len().min(l3 + icmpv6::MAX_ERROR_QUOTE)];
                let l4 = L4::Icmpv6(icmpv6::Repr::TimeExceeded {
                    code: 0,
                    data: quoted,
                });
                Reply {
                    eth,
                    body: Body::Ipv6 {
                        ip: ipv6::Repr {
                            src_addr: Ipv6Addr::from(src.0),
                            dst_addr: Ipv6Addr::from(info.src.0),
                            next_header: proto::ICMPV6,
                            payload_len: 0,
                            hop_limit: ipv6::DEFAULT_HOP_LIMIT,
                            traffic_class: 0,
                            flow_label: 0,
                        },
                        l4,
                    },
                }
            }
        };
        self.send(Ok(reply), port, out, |s| s.time_exceeded += 1);
    }

    /// A worker could not forward to `req.addr`: start resolving it.
    pub fn resolve(&mut self, req: ResolveRequest, now: Instant, out: &mut Vec<Out>) {
        let key = (req.af, req.addr);
        if self.table.contains_key(&key) || !self.make_room(now) {
            return;
        }
        self.put(
            key,
            Entry::Incomplete {
                port: req.port,
                tries: 1,
                next_at: now + RESOLVE_RETRY,
                lru: 0,
            },
        );
        self.solicit(req.af, req.addr, req.port, out);
    }

    /// Retries, refreshes and ages entries; walks the table only once the
    /// earliest deadline has come.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Out>) {
        if now >= self.gateways_at && !self.gateways.is_empty() {
            self.gateways_at = now + GATEWAY_CHECK;
            for i in 0..self.gateways.len() {
                if let Some(&g) = self.gateways.get(i) {
                    self.resolve(g, now, out);
                }
            }
        }
        if now < self.poll_at {
            return;
        }
        let mut solicit = Vec::new();
        let mut removed = false;
        let mut next = Instant(u64::MAX);
        let lru = &mut self.lru;
        self.table.retain(|(af, addr), e| {
            let keep = match e {
                Entry::Static(_) => true,
                Entry::Incomplete {
                    port,
                    tries,
                    next_at,
                    ..
                } => {
                    if now < *next_at {
                        true
                    } else if *tries >= RESOLVE_TRIES {
                        false
                    } else {
                        *tries += 1;
                        *next_at = now + RESOLVE_RETRY;
                        solicit.push((*af, *addr, *port));
                        true
                    }
                }
                Entry::Reachable {
                    nb,
                    learned_at,
                    refreshing,
                    ..
                } => {
                    let age = now.saturating_since(*learned_at);
                    if age >= EXPIRE_AFTER {
                        removed = true;
                        false
                    } else {
                        if age >= REFRESH_AFTER && refreshing.is_none_or(|t| now >= t) {
                            *refreshing = Some(now + RESOLVE_RETRY);
                            solicit.push((*af, *addr, nb.port));
                        }
                        true
                    }
                }
            };
            if keep {
                if let Some(d) = e.deadline() {
                    next = next.min(d);
                }
            } else if let Some(k) = e.lru_key() {
                lru.remove(&k);
            }
            keep
        });
        self.poll_at = next;
        self.stats.neighbor_entries = self.lru.len() as u64;
        if removed {
            self.dirty = true;
        }
        for (af, addr, port) in solicit {
            self.solicit(af, addr, port, out);
        }
    }

    fn solicit(&mut self, af: Af, addr: Addr, port: u16, out: &mut Vec<Out>) {
        let Some(src) = self.routing.address_on(port, af) else {
            self.stats.dropped += 1;
            return;
        };
        let mac = self.mac(port);
        let reply = match af {
            Af::Inet => build::arp_request(
                None,
                mac,
                Ipv4Addr::from(src.v4_octets()),
                Ipv4Addr::from(addr.v4_octets()),
            ),
            Af::Inet6 => {
                // Solicited-node multicast: ff02::1:ff00:0/104 plus the low 24 bits of the target.
                let t = addr.0;
                let dst = Ipv6Addr::new(
                    0xff02,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0xff00 | t[13] as u16,
                    (t[14] as u16) << 8 | t[15] as u16,
                );
                Reply {
                    eth: ethernet::Repr {
                        src_addr: mac,
                        dst_addr: EthernetAddress([0x33, 0x33, 0xff, t[13], t[14], t[15]]),
                        vlan_id: None,
                        ethertype: EtherType::IPV6,
                    },
                    body: Body::Ipv6 {
                        ip: ipv6::Repr {
                            src_addr: Ipv6Addr::from(src.0),
                            dst_addr: dst,
                            next_header: proto::ICMPV6,
                            payload_len: 0,
                            hop_limit: 255,
                            traffic_class: 0,
                            flow_label: 0,
                        },
                        l4: L4::Icmpv6(icmpv6::Repr::NeighborSolicit {
                            target_addr: Ipv6Addr::from(t),
                            lladdr: Some(mac),
                        }),
                    },
                }
            }
        };
        self.send(Ok(reply), port, out, |s| s.resolutions_sent += 1);
    }
}

/// The CARP virtual MAC of `vhid`.
fn vmac(vhid: u8) -> [u8; 6] {
    [0x00, 0x00, 0x5e, 0x00, 0x01, vhid]
}

fn is_group(af: Af, a: &Addr) -> bool {
    match af {
        Af::Inet => a.0[0] >= 224,
        Af::Inet6 => a.0[0] == 0xff,
    }
}

/// An ICMPv6 frame as classified.
struct IcmpFrame<'a> {
    frame: &'a [u8],
    c: &'a Classified,
    info: &'a PacketInfo,
    l4_offset: usize,
    fragment: bool,
}

/// The minimum length of an ND message of type `t` (RFC 4861 §6.1.1,
/// §6.1.2, §7.1.1, §7.1.2, §8.1), `None` if `t` is not ND.
fn nd_min_len(t: u8) -> Option<usize> {
    match t {
        icmpv6::msg_type::ROUTER_SOLICIT => Some(8),
        icmpv6::msg_type::ROUTER_ADVERT => Some(16),
        icmpv6::msg_type::NEIGHBOR_SOLICIT | icmpv6::msg_type::NEIGHBOR_ADVERT => Some(24),
        icmpv6::msg_type::REDIRECT => Some(40),
        _ => None,
    }
}

/// A solicited-node group (ff02::1:ff00:0/104).
fn is_solicited_node(a: &Addr) -> bool {
    a.0[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

/// The directed broadcast of an IPv4 prefix of /30 or shorter.
fn is_directed_broadcast(p: &Prefix, a: &Addr) -> bool {
    if p.af != Af::Inet || p.len > 30 {
        return false;
    }
    let host = u32::MAX >> p.len;
    u32::from_be_bytes(a.v4_octets()) & host == host
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::route::{IfAddr, Interface, Prefix};

    fn routing() -> Arc<Routing> {
        let ifa = |a: [u8; 4]| IfAddr {
            addr: Addr::v4(a),
            prefix: Prefix::new(Af::Inet, Addr::v4(a), 24),
        };
        Arc::new(Routing::new(
            vec![
                Interface {
                    name: "lan0".into(),
                    mac: [2, 0, 0, 0, 1, 1],
                    mtu: 1500,
                    addrs: vec![ifa([10, 1, 0, 1])],
                },
                Interface {
                    name: "wan0".into(),
                    mac: [2, 0, 0, 0, 2, 1],
                    mtu: 1500,
                    addrs: vec![ifa([10, 2, 0, 1])],
                },
            ],
            vec![],
        ))
    }

    fn arp_frame(
        op_request: bool,
        sender_mac: [u8; 6],
        sender: [u8; 4],
        target: [u8; 4],
    ) -> Vec<u8> {
        let r = if op_request {
            build::arp_request(
                None,
                EthernetAddress(sender_mac),
                Ipv4Addr::from(sender),
                Ipv4Addr::from(target),
            )
        } else {
            build::arp_reply(
                None,
                EthernetAddress(sender_mac),
                Ipv4Addr::from(sender),
                EthernetAddress([2, 0, 0, 0, 1, 1]),
                Ipv4Addr::from(target),
            )
        };
        let mut b = vec![0u8; r.buffer_len()];
        let n = r.emit(&mut b).unwrap();
        b.truncate(n);
        b
    }

    #[test]
    fn answers_arp_for_own_address_and_learns_the_asker() {
        let mut sp = SlowPath::new(routing(), &[]);
        let mut out = Vec::new();
        sp.handle(
            &arp_frame(true, [2, 9, 9, 9, 9, 9], [10, 1, 0, 7], [10, 1, 0, 1]),
            0,
            Instant(0),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 0);
        let reply = &out[0].1;
        assert_eq!(&reply[0..6], &[2, 9, 9, 9, 9, 9]);
        assert_eq!(&reply[6..12], &[2, 0, 0, 0, 1, 1]);
        assert_eq!(&reply[20..22], &[0, 2], "ARP reply opcode");
        let snap = sp.take_snapshot(Instant(0)).unwrap();
        assert_eq!(
            snap.get(Af::Inet, &Addr::v4([10, 1, 0, 7])).unwrap().mac,
            [2, 9, 9, 9, 9, 9]
        );
        // Not for us: no answer, nothing learned from a stranger.
        out.clear();
        sp.handle(
            &arp_frame(true, [2, 8, 8, 8, 8, 8], [10, 1, 0, 8], [10, 1, 0, 99]),
            0,
            Instant(0),
            &mut out,
        );
        assert!(out.is_empty());
        assert!(sp.take_snapshot(Instant(0)).is_none());
    }

    #[test]
    fn resolves_with_retries_and_gives_up() {
        let mut sp = SlowPath::new(routing(), &[]);
        let mut out = Vec::new();
        let req = ResolveRequest {
            af: Af::Inet,
            addr: Addr::v4([10, 2, 0, 9]),
            port: 1,
        };
        sp.resolve(req, Instant::from_secs(0), &mut out);
        sp.resolve(req, Instant::from_secs(0), &mut out);
        assert_eq!(out.len(), 1, "one request while incomplete");
        assert_eq!(&out[0].1[0..6], &[0xff; 6], "ARP request is broadcast");
        sp.poll(Instant::from_secs(1), &mut out);
        sp.poll(Instant::from_secs(2), &mut out);
        assert_eq!(out.len(), 3, "three tries");
        sp.poll(Instant::from_secs(3), &mut out);
        assert_eq!(out.len(), 3);
        assert!(sp.entries().is_empty(), "given up after three tries");
        // An answer resolves it and publishes the neighbour.
        sp.resolve(req, Instant::from_secs(10), &mut out);
        sp.handle(
            &arp_frame(false, [2, 7, 7, 7, 7, 7], [10, 2, 0, 9], [10, 2, 0, 1]),
            1,
            Instant::from_secs(10),
            &mut out,
        );
        let snap = sp.take_snapshot(Instant::from_secs(10)).unwrap();
        assert_eq!(
            snap.get(Af::Inet, &Addr::v4([10, 2, 0, 9])).unwrap().port,
            1
        );
        // Aged out after 20 minutes without answers to the refreshes.
        sp.poll(Instant::from_secs(10 + 20 * 60), &mut out);
        assert!(sp
            .take_snapshot(Instant::from_secs(10 + 20 * 60))
            .unwrap()
            .is_empty());
    }
}

#[cfg(test)]
mod vip_tests {
    use super::*;
    use dataplane::route::{IfAddr, Interface, Prefix, Vip, VipTable};

    #[test]
    fn a_vip_answers_only_while_master_and_from_its_virtual_mac() {
        let a = Addr::v4([10, 1, 0, 1]);
        let vip = Addr::v4([10, 1, 0, 254]);
        let vips = Arc::new(VipTable::new(
            vec![Vip {
                af: Af::Inet,
                addr: vip,
                port: 0,
                vhid: 1,
            }],
            1,
        ));
        let routing = Arc::new(
            Routing::new(
                vec![Interface {
                    name: "lan0".into(),
                    mac: [2, 0, 0, 0, 1, 1],
                    mtu: 1500,
                    addrs: vec![IfAddr {
                        addr: a,
                        prefix: Prefix::new(Af::Inet, a, 24),
                    }],
                }],
                vec![],
            )
            .with_vips(Arc::clone(&vips)),
        );
        let mut sp = SlowPath::new(routing, &[]);
        // An echo request from a Linux host: 98 bytes.
        let mut f = vec![
            0x00, 0x00, 0x5e, 0x00, 0x01, 0x01, 0x02, 0x09, 0, 0, 0, 0x32, 0x08, 0x00,
        ];
        let mut ip = vec![
            0x45, 0, 0, 84, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 1, 0, 50, 10, 1, 0, 254,
        ];
        let c = dataplane::wire::checksum::data(&ip);
        ip[10..12].copy_from_slice(&(!c).to_be_bytes());
        let mut icmp = vec![8, 0, 0, 0, 0, 7, 0, 1];
        icmp.extend((0..56).map(|i| i as u8));
        let c = dataplane::wire::checksum::data(&icmp);
        icmp[2..4].copy_from_slice(&(!c).to_be_bytes());
        f.extend(ip);
        f.extend(icmp);
        let mut out = Vec::new();
        sp.handle(&f, 0, Instant(0), &mut out);
        assert!(out.is_empty(), "a BACKUP must not answer the VIP");
        vips.set_master(0, 1, true);
        sp.handle(&f, 0, Instant(0), &mut out);
        assert_eq!(out.len(), 1, "{:?}", sp.stats);
        assert_eq!(
            &out[0].1[6..12],
            &[0, 0, 0x5e, 0, 1, 1],
            "from the virtual MAC"
        );
    }

    /// An echo request from `src` to 10.1.0.1 (the box's address).
    fn echo_from(src: [u8; 4]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 1, 1, 0x02, 0x09, 0, 0, 0, 0x32, 0x08, 0x00];
        let mut ip = vec![0x45, 0, 0, 36, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0];
        ip.extend(src);
        ip.extend([10, 1, 0, 1]);
        let c = dataplane::wire::checksum::data(&ip);
        ip[10..12].copy_from_slice(&(!c).to_be_bytes());
        let mut icmp = vec![8, 0, 0, 0, 0, 7, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let c = dataplane::wire::checksum::data(&icmp);
        icmp[2..4].copy_from_slice(&(!c).to_be_bytes());
        f.extend(ip);
        f.extend(icmp);
        f
    }

    #[test]
    fn echo_replies_are_rate_limited_per_source_and_in_all() {
        let a = Addr::v4([10, 1, 0, 1]);
        let routing = Arc::new(Routing::new(
            vec![Interface {
                name: "lan0".into(),
                mac: [2, 0, 0, 0, 1, 1],
                mtu: 1500,
                addrs: vec![IfAddr {
                    addr: a,
                    prefix: Prefix::new(Af::Inet, a, 8),
                }],
            }],
            vec![],
        ));
        let mut sp = SlowPath::new(routing, &[]);
        let mut out = Vec::new();
        // One host pinging flat out: 20 answers a second.
        for _ in 0..500 {
            sp.handle(&echo_from([10, 1, 0, 50]), 0, Instant(0), &mut out);
        }
        assert_eq!(out.len(), ICMP_PER_SOURCE_PER_S as usize);
        assert_eq!(sp.stats.icmp_rate_limited_source, 480);
        // Another host is still answered in the same second.
        out.clear();
        sp.handle(&echo_from([10, 1, 0, 51]), 0, Instant(0), &mut out);
        assert_eq!(out.len(), 1);
        // A flood from many sources meets the global limit.
        out.clear();
        for i in 0..5000u32 {
            let b = i.to_be_bytes();
            sp.handle(&echo_from([10, b[1], b[2], b[3]]), 0, Instant(1), &mut out);
        }
        assert!(out.len() < ECHO_REPLIES_PER_S as usize, "{}", out.len());
        assert!(sp.stats.icmp_rate_limited > 0);
        // A second later the host is answered again.
        out.clear();
        sp.handle(
            &echo_from([10, 1, 0, 50]),
            0,
            Instant::from_secs(2),
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn an_ipv6_vip_is_resolved_to_its_virtual_mac_only_while_master() {
        let a = Addr::v6("2001:db8:1::1".parse::<Ipv6Addr>().unwrap().octets());
        let vip: Ipv6Addr = "2001:db8:1::fe".parse().unwrap();
        let vips = Arc::new(VipTable::new(
            vec![Vip {
                af: Af::Inet6,
                addr: Addr::v6(vip.octets()),
                port: 0,
                vhid: 2,
            }],
            1,
        ));
        let routing = Arc::new(
            Routing::new(
                vec![Interface {
                    name: "lan0".into(),
                    mac: [2, 0, 0, 0, 1, 1],
                    mtu: 1500,
                    addrs: vec![IfAddr {
                        addr: a,
                        prefix: Prefix::new(Af::Inet6, a, 64),
                    }],
                }],
                vec![],
            )
            .with_vips(Arc::clone(&vips)),
        );
        let mut sp = SlowPath::new(routing, &[]);
        // A host's solicitation for the VIP, to its solicited-node group.
        let host_mac = EthernetAddress([2, 9, 0, 0, 0, 0x50]);
        let t = vip.octets();
        let ns = Reply {
            eth: ethernet::Repr {
                src_addr: host_mac,
                dst_addr: EthernetAddress([0x33, 0x33, 0xff, t[13], t[14], t[15]]),
                vlan_id: None,
                ethertype: EtherType::IPV6,
            },
            body: Body::Ipv6 {
                ip: ipv6::Repr {
                    src_addr: "2001:db8:1::50".parse().unwrap(),
                    dst_addr: "ff02::1:ff00:fe".parse().unwrap(),
                    next_header: proto::ICMPV6,
                    payload_len: 0,
                    hop_limit: 255,
                    traffic_class: 0,
                    flow_label: 0,
                },
                l4: L4::Icmpv6(icmpv6::Repr::NeighborSolicit {
                    target_addr: vip,
                    lladdr: Some(host_mac),
                }),
            },
        };
        let mut f = vec![0u8; ns.buffer_len()];
        let n = ns.emit(&mut f).unwrap();
        f.truncate(n);
        let mut out = Vec::new();
        sp.handle(&f, 0, Instant(0), &mut out);
        assert!(out.is_empty(), "a BACKUP must not answer for the VIP");
        vips.set_master(0, 2, true);
        sp.handle(&f, 0, Instant(0), &mut out);
        assert_eq!(out.len(), 1, "{:?}", sp.stats);
        let na = &out[0].1;
        let vmac = [0, 0, 0x5e, 0, 1, 2];
        assert_eq!(&na[0..6], &host_mac.0);
        assert_eq!(&na[6..12], &vmac, "from the virtual MAC");
        assert_eq!(na[54], 136, "neighbour advertisement");
        assert_eq!(&na[62..78], &vip.octets());
        assert_eq!(&na[80..86], &vmac, "target link-layer address");
    }
}

/// The neighbour hygiene rules of the module doc, on a fake clock.
#[cfg(test)]
mod hygiene_tests {
    use super::*;
    use dataplane::route::{IfAddr, Interface, Prefix, Vip, VipTable};
    use dataplane::wire::IpPair;

    const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
    const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 2, 1];
    const HOST: [u8; 6] = [2, 9, 0, 0, 0, 7];
    const GW: [u8; 6] = [2, 0xfe, 0, 0, 0, 6];
    const EVIL: [u8; 6] = [2, 6, 6, 6, 6, 6];
    const STATIC_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];
    const VMAC1: [u8; 6] = [0, 0, 0x5e, 0, 1, 1];

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn a6(s: &str) -> Addr {
        Addr::v6(v6(s).octets())
    }

    fn a4(o: [u8; 4]) -> Addr {
        Addr::v4(o)
    }

    fn ms(n: u64) -> Instant {
        Instant(n * 1_000_000)
    }

    /// lan0 10.1.0.1/24 2001:db8:1::1/64 with VIPs 10.1.0.254 and
    /// 2001:db8:1::fe (vhid 1); wan0 10.2.0.1/24 2001:db8:2::1/64 with a
    /// static neighbour 10.2.0.254 and one for 2001:db8:2::ff.
    fn setup() -> (SlowPath, Arc<VipTable>) {
        let ifa = |af, a: Addr, len| IfAddr {
            addr: a,
            prefix: Prefix::new(af, a, len),
        };
        let vips = Arc::new(VipTable::new(
            vec![
                Vip {
                    af: Af::Inet,
                    addr: a4([10, 1, 0, 254]),
                    port: 0,
                    vhid: 1,
                },
                Vip {
                    af: Af::Inet6,
                    addr: a6("2001:db8:1::fe"),
                    port: 0,
                    vhid: 1,
                },
            ],
            2,
        ));
        let routing = Arc::new(
            Routing::new(
                vec![
                    Interface {
                        name: "lan0".into(),
                        mac: LAN_MAC,
                        mtu: 1500,
                        addrs: vec![
                            ifa(Af::Inet, a4([10, 1, 0, 1]), 24),
                            ifa(Af::Inet6, a6("2001:db8:1::1"), 64),
                        ],
                    },
                    Interface {
                        name: "wan0".into(),
                        mac: WAN_MAC,
                        mtu: 1500,
                        addrs: vec![
                            ifa(Af::Inet, a4([10, 2, 0, 1]), 24),
                            ifa(Af::Inet6, a6("2001:db8:2::1"), 64),
                        ],
                    },
                ],
                vec![],
            )
            .with_vips(Arc::clone(&vips)),
        );
        let statics = [
            (
                (Af::Inet, a4([10, 2, 0, 254])),
                Neighbor {
                    mac: STATIC_MAC,
                    port: 1,
                },
            ),
            (
                (Af::Inet6, a6("2001:db8:2::ff")),
                Neighbor {
                    mac: STATIC_MAC,
                    port: 1,
                },
            ),
        ];
        (SlowPath::new(routing, &statics), vips)
    }

    fn row(sp: &SlowPath, af: Af, a: Addr) -> Option<NeighborRow> {
        sp.entries().into_iter().find(|r| r.af == af && r.addr == a)
    }

    fn mac6(sp: &SlowPath, a: &str) -> Option<[u8; 6]> {
        row(sp, Af::Inet6, a6(a)).and_then(|r| r.mac)
    }

    fn mac4(sp: &SlowPath, a: [u8; 4]) -> Option<[u8; 6]> {
        row(sp, Af::Inet, a4(a)).and_then(|r| r.mac)
    }

    fn feed(sp: &mut SlowPath, f: &[u8], port: u16, now: Instant) -> Vec<Out> {
        let mut out = Vec::new();
        sp.handle(f, port, now, &mut out);
        out
    }

    /// An ICMPv6 message (checksum filled in) in IPv6 with hop limit `hop`.
    fn icmp6(src_mac: [u8; 6], src: &str, dst: &str, hop: u8, mut icmp: Vec<u8>) -> Vec<u8> {
        let (s, d) = (v6(src), v6(dst));
        icmpv6::Packet::new_unchecked(&mut icmp[..]).fill_checksum(&IpPair::V6 { src: s, dst: d });
        let mut f = Vec::new();
        f.extend_from_slice(&LAN_MAC);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
        f.extend_from_slice(&[58, hop]);
        f.extend_from_slice(&s.octets());
        f.extend_from_slice(&d.octets());
        f.extend(icmp);
        f
    }

    fn ns_body(target: &str, slla: Option<[u8; 6]>) -> Vec<u8> {
        let mut b = vec![135, 0, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&v6(target).octets());
        if let Some(m) = slla {
            b.extend_from_slice(&[1, 1]);
            b.extend_from_slice(&m);
        }
        b
    }

    fn na_body(target: &str, s: bool, o: bool, tlla: Option<[u8; 6]>) -> Vec<u8> {
        let flags = u8::from(s) << 6 | u8::from(o) << 5;
        let mut b = vec![136, 0, 0, 0, flags, 0, 0, 0];
        b.extend_from_slice(&v6(target).octets());
        if let Some(m) = tlla {
            b.extend_from_slice(&[2, 1]);
            b.extend_from_slice(&m);
        }
        b
    }

    fn arp(request: bool, sender_mac: [u8; 6], sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let r = if request {
            build::arp_request(
                None,
                EthernetAddress(sender_mac),
                Ipv4Addr::from(sender),
                Ipv4Addr::from(target),
            )
        } else {
            build::arp_reply(
                None,
                EthernetAddress(sender_mac),
                Ipv4Addr::from(sender),
                EthernetAddress(LAN_MAC),
                Ipv4Addr::from(target),
            )
        };
        let mut b = vec![0u8; r.buffer_len()];
        let n = r.emit(&mut b).unwrap();
        b.truncate(n);
        b
    }

    /// 2001:db8:2::fe resolved on wan0 to `GW` at `now`.
    fn resolve_gw6(sp: &mut SlowPath, now: Instant) {
        let mut out = Vec::new();
        let req = ResolveRequest {
            af: Af::Inet6,
            addr: a6("2001:db8:2::fe"),
            port: 1,
        };
        sp.resolve(req, now, &mut out);
        assert_eq!(out.len(), 1, "a neighbour solicitation");
        let na = icmp6(
            GW,
            "2001:db8:2::fe",
            "2001:db8:2::1",
            255,
            na_body("2001:db8:2::fe", true, true, Some(GW)),
        );
        feed(sp, &na, 1, now);
        assert_eq!(mac6(sp, "2001:db8:2::fe"), Some(GW), "{:?}", sp.stats);
    }

    #[test]
    fn nd_not_sent_with_hop_limit_255_is_dropped_and_counted() {
        let (mut sp, _) = setup();
        resolve_gw6(&mut sp, ms(0));
        // The attack: an unsolicited, overriding NA from off the link.
        let evil = na_body("2001:db8:2::fe", false, true, Some(EVIL));
        let f = icmp6(EVIL, "2001:db8:99::5", "2001:db8:2::1", 50, evil.clone());
        feed(&mut sp, &f, 1, ms(1));
        assert_eq!(mac6(&sp, "2001:db8:2::fe"), Some(GW), "the gateway stays");
        assert_eq!(sp.stats.nd_bad_hop_limit, 1);
        // Every ND type, any hop limit but 255.
        let mut ra = vec![134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ra.extend_from_slice(&[1, 1]);
        ra.extend_from_slice(&EVIL);
        let mut rs = vec![133, 0, 0, 0, 0, 0, 0, 0];
        rs.extend_from_slice(&[1, 1]);
        rs.extend_from_slice(&EVIL);
        let mut redirect = vec![137, 0, 0, 0, 0, 0, 0, 0];
        redirect.extend_from_slice(&v6("2001:db8:2::66").octets());
        redirect.extend_from_slice(&v6("2001:db8:100::1").octets());
        for (hop, body) in [
            (254, ns_body("2001:db8:2::1", Some(EVIL))),
            (64, evil),
            (1, rs),
            (0, ra),
            (128, redirect),
        ] {
            let f = icmp6(EVIL, "fe80::66", "ff02::1", hop, body);
            assert!(feed(&mut sp, &f, 1, ms(2)).is_empty());
        }
        assert_eq!(sp.stats.nd_bad_hop_limit, 6);
        assert_eq!(mac6(&sp, "2001:db8:2::fe"), Some(GW));
        assert!(sp.take_snapshot(ms(2)).is_some(), "only the resolution");
        assert_eq!(sp.stats.learned, 1);
    }

    #[test]
    fn nd_messages_breaking_rfc_4861_7_1_are_dropped_and_counted() {
        let (mut sp, _) = setup();
        resolve_gw6(&mut sp, ms(0));
        let gw = "2001:db8:2::fe";
        let to_us = "2001:db8:2::1";
        let good_na = na_body(gw, false, true, Some(EVIL));
        let mut code1 = good_na.clone();
        code1[1] = 1;
        // (A short NS or NA never gets here: classifying it fails, and the
        // worker drops it as a bad header.)
        let short_ra = vec![134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0];
        let mut zero_opt = good_na.clone();
        zero_opt[25] = 0;
        let mut frag = icmp6(EVIL, gw, to_us, 255, good_na.clone());
        // The same NA behind a fragment header (first fragment, M=1).
        frag[20] = 44;
        let mut fh = vec![58, 0, 0, 1, 0, 0, 0, 9];
        let plen = u16::from_be_bytes([frag[18], frag[19]]) + 8;
        frag[18..20].copy_from_slice(&plen.to_be_bytes());
        fh.extend_from_slice(&frag[54..]);
        frag.truncate(54);
        frag.extend(fh);
        let mut bad_sum = icmp6(EVIL, gw, to_us, 255, good_na.clone());
        let n = bad_sum.len();
        bad_sum[n - 1] ^= 0xff;
        let mut ra_global = vec![134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        ra_global.extend_from_slice(&[1, 1]);
        ra_global.extend_from_slice(&EVIL);
        let mut rs_dad_slla = vec![133, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        rs_dad_slla.extend_from_slice(&EVIL);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("code 1", icmp6(EVIL, gw, to_us, 255, code1)),
            (
                "12-byte RA",
                icmp6(EVIL, "fe80::1", "ff02::1", 255, short_ra),
            ),
            ("option of length 0", icmp6(EVIL, gw, to_us, 255, zero_opt)),
            ("fragment", frag),
            ("checksum", bad_sum),
            (
                "NA with S=1 to a group",
                icmp6(
                    EVIL,
                    gw,
                    "ff02::1",
                    255,
                    na_body(gw, true, true, Some(EVIL)),
                ),
            ),
            (
                "NA for a multicast target",
                icmp6(
                    EVIL,
                    gw,
                    to_us,
                    255,
                    na_body("ff02::1", false, true, Some(EVIL)),
                ),
            ),
            (
                "NS for a multicast target",
                icmp6(EVIL, gw, to_us, 255, ns_body("ff02::1:ff00:1", Some(EVIL))),
            ),
            (
                "DAD NS with a link-layer address",
                icmp6(
                    EVIL,
                    "::",
                    "ff02::1:ff00:1",
                    255,
                    ns_body(to_us, Some(EVIL)),
                ),
            ),
            (
                "DAD NS not to the solicited-node group",
                icmp6(EVIL, "::", to_us, 255, ns_body(to_us, None)),
            ),
            (
                "NS from a group",
                icmp6(EVIL, "ff02::1", to_us, 255, ns_body(to_us, Some(EVIL))),
            ),
            (
                "RA from a global source",
                icmp6(EVIL, gw, "ff02::1", 255, ra_global),
            ),
            (
                "RS from :: with a link-layer address",
                icmp6(EVIL, "::", "ff02::2", 255, rs_dad_slla),
            ),
            (
                "short redirect",
                icmp6(EVIL, "fe80::1", to_us, 255, vec![137, 0, 0, 0, 0, 0, 0, 0]),
            ),
        ];
        for (i, (what, f)) in cases.iter().enumerate() {
            let out = feed(&mut sp, f, 1, ms(1));
            assert!(out.is_empty(), "{what}: answered");
            assert_eq!(sp.stats.nd_invalid, i as u64 + 1, "{what}: {:?}", sp.stats);
            assert_eq!(mac6(&sp, gw), Some(GW), "{what}: the entry changed");
        }
        // The same NA, valid, is applied (O=1: the new MAC).
        feed(&mut sp, &icmp6(EVIL, gw, to_us, 255, good_na), 1, ms(1));
        assert_eq!(mac6(&sp, gw), Some(EVIL));
        assert_eq!(sp.stats.nd_invalid, cases.len() as u64);
    }

    #[test]
    fn an_ns_teaches_its_source_only_when_the_target_is_ours() {
        let (mut sp, vips) = setup();
        let ns = |src: &str, dst: &str, target: &str, slla: Option<[u8; 6]>| {
            icmp6(HOST, src, dst, 255, ns_body(target, slla))
        };
        let host = "2001:db8:1::7";
        // For someone else: no entry.
        feed(
            &mut sp,
            &ns(host, "ff02::1:ff00:99", "2001:db8:1::99", Some(HOST)),
            0,
            ms(0),
        );
        // A DAD probe for our address: answered to all-nodes, no entry.
        let out = feed(
            &mut sp,
            &ns("::", "ff02::1:ff00:1", "2001:db8:1::1", None),
            0,
            ms(0),
        );
        assert_eq!(out.len(), 1, "our address is defended");
        // For us but without a source link-layer address: answered, no entry.
        let out = feed(
            &mut sp,
            &ns(host, "2001:db8:1::1", "2001:db8:1::1", None),
            0,
            ms(0),
        );
        assert_eq!(out.len(), 1);
        // For wan0's address on lan0: not ours there.
        let out = feed(
            &mut sp,
            &ns(host, "ff02::1:ff00:1", "2001:db8:2::1", Some(HOST)),
            0,
            ms(0),
        );
        assert!(out.is_empty());
        assert!(
            sp.entries().iter().all(|r| r.state == "static"),
            "{:?}",
            sp.entries()
        );
        // For the VIP while BACKUP: not answered, but its source is learned
        // (the table is warm when this box takes over).
        let out = feed(
            &mut sp,
            &ns(host, "ff02::1:ff00:fe", "2001:db8:1::fe", Some(HOST)),
            0,
            ms(0),
        );
        assert!(out.is_empty());
        assert!(
            sp.entries().iter().any(|r| r.state == "reachable"),
            "{:?}",
            sp.entries()
        );
        // For our address, with one: learned.
        let out = feed(
            &mut sp,
            &ns(host, "ff02::1:ff00:1", "2001:db8:1::1", Some(HOST)),
            0,
            ms(0),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(mac6(&sp, host), Some(HOST));
        // For the VIP while MASTER: learned too.
        vips.set_master(0, 1, true);
        let other = "2001:db8:1::8";
        let out = feed(
            &mut sp,
            &ns(other, "ff02::1:ff00:fe", "2001:db8:1::fe", Some(HOST)),
            0,
            ms(0),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(mac6(&sp, other), Some(HOST));
        // From an off-link source: answered (it asked), not learned.
        let out = feed(
            &mut sp,
            &ns(
                "2001:db8:9::9",
                "2001:db8:1::1",
                "2001:db8:1::1",
                Some(HOST),
            ),
            0,
            ms(0),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(
            row(&sp, Af::Inet6, a6("2001:db8:9::9")).map(|r| r.state),
            None
        );
        assert_eq!(sp.stats.neighbor_rejected, 1);
    }

    #[test]
    fn an_na_follows_rfc_4861_7_2_5() {
        let (mut sp, _) = setup();
        let gw = "2001:db8:2::fe";
        let na = |s, o, tlla| icmp6(GW, gw, "2001:db8:2::1", 255, na_body(gw, s, o, tlla));
        // No entry for the target: ignored, nothing created (even solicited).
        feed(&mut sp, &na(true, true, Some(GW)), 1, ms(0));
        feed(&mut sp, &na(false, true, Some(GW)), 1, ms(0));
        assert_eq!(mac6(&sp, gw), None);
        assert!(row(&sp, Af::Inet6, a6(gw)).is_none());
        assert_eq!(sp.stats.na_ignored, 2);
        // Incomplete: an NA without the target's link-layer address does
        // not complete it; a solicited one with it does.
        let mut out = Vec::new();
        let req = ResolveRequest {
            af: Af::Inet6,
            addr: a6(gw),
            port: 1,
        };
        sp.resolve(req, ms(0), &mut out);
        feed(&mut sp, &na(true, true, None), 1, ms(1));
        assert_eq!(
            row(&sp, Af::Inet6, a6(gw)).map(|r| r.state),
            Some("incomplete")
        );
        feed(&mut sp, &na(true, false, Some(GW)), 1, ms(1));
        assert_eq!(mac6(&sp, gw), Some(GW));
        let first = sp.take_snapshot(ms(1)).unwrap();
        assert_eq!(first.get(Af::Inet6, &a6(gw)).map(|n| n.mac), Some(GW));
        // O=0 with another MAC: the reachable entry keeps its MAC, solicited
        // or not.
        let other = |s, o| {
            icmp6(
                EVIL,
                gw,
                "2001:db8:2::1",
                255,
                na_body(gw, s, o, Some(EVIL)),
            )
        };
        feed(&mut sp, &other(true, false), 1, ms(2));
        feed(&mut sp, &other(false, false), 1, ms(2));
        assert_eq!(mac6(&sp, gw), Some(GW));
        // O=1, unsolicited: the new MAC, but no confirmation.
        feed(&mut sp, &other(false, true), 1, ms(3));
        assert_eq!(mac6(&sp, gw), Some(EVIL));
        let Some(Entry::Reachable { learned_at, .. }) = sp.table.get(&(Af::Inet6, a6(gw))) else {
            panic!("reachable")
        };
        assert_eq!(
            *learned_at,
            ms(1),
            "an unsolicited NA is not a confirmation"
        );
        // Solicited, same MAC: confirmed.
        feed(&mut sp, &other(true, false), 1, ms(4));
        let Some(Entry::Reachable { learned_at, .. }) = sp.table.get(&(Af::Inet6, a6(gw))) else {
            panic!("reachable")
        };
        assert_eq!(*learned_at, ms(4));
        // A static entry never changes.
        let st = "2001:db8:2::ff";
        let f = icmp6(
            EVIL,
            st,
            "2001:db8:2::1",
            255,
            na_body(st, true, true, Some(EVIL)),
        );
        feed(&mut sp, &f, 1, ms(5));
        assert_eq!(mac6(&sp, st), Some(STATIC_MAC));
        assert_eq!(sp.stats.na_ignored, 6, "{:?}", sp.stats);
    }

    #[test]
    fn arp_learns_only_sane_on_link_senders_and_creates_only_from_requests_for_us() {
        let (mut sp, _) = setup();
        let us = [10, 1, 0, 1];
        // Requests for us from unusable senders: answered or not, never learned.
        feed(&mut sp, &arp(true, HOST, [10, 2, 0, 9], us), 0, ms(0)); // off-link for lan0
        feed(&mut sp, &arp(true, [0xff; 6], [10, 1, 0, 9], us), 0, ms(0)); // broadcast MAC
        feed(
            &mut sp,
            &arp(true, [0x01, 0, 0x5e, 0, 0, 1], [10, 1, 0, 9], us),
            0,
            ms(0),
        );
        feed(&mut sp, &arp(true, [0; 6], [10, 1, 0, 9], us), 0, ms(0));
        feed(&mut sp, &arp(true, HOST, [0, 0, 0, 0], us), 0, ms(0)); // RFC 5227 probe
        feed(&mut sp, &arp(true, HOST, [10, 1, 0, 255], us), 0, ms(0)); // directed broadcast
        feed(
            &mut sp,
            &arp(true, HOST, [255, 255, 255, 255], us),
            0,
            ms(0),
        );
        feed(&mut sp, &arp(true, HOST, [10, 1, 0, 254], us), 0, ms(0)); // a VIP (BACKUP)
        assert!(
            sp.entries().iter().all(|r| r.state == "static"),
            "{:?}",
            sp.entries()
        );
        assert_eq!(sp.stats.neighbor_rejected, 8, "{:?}", sp.stats);
        // Replies and gratuitous ARP create nothing, even aimed at us.
        feed(&mut sp, &arp(false, HOST, [10, 1, 0, 60], us), 0, ms(0));
        feed(
            &mut sp,
            &arp(true, HOST, [10, 1, 0, 61], [10, 1, 0, 61]),
            0,
            ms(0),
        );
        feed(
            &mut sp,
            &arp(false, HOST, [10, 1, 0, 62], [10, 1, 0, 62]),
            0,
            ms(0),
        );
        feed(
            &mut sp,
            &arp(true, HOST, [10, 1, 0, 63], [10, 1, 0, 99]),
            0,
            ms(0),
        );
        assert!(
            sp.entries().iter().all(|r| r.state == "static"),
            "{:?}",
            sp.entries()
        );
        // A request for us creates; a gratuitous ARP then updates.
        let out = feed(&mut sp, &arp(true, HOST, [10, 1, 0, 7], us), 0, ms(0));
        assert_eq!(out.len(), 1, "answered");
        assert_eq!(mac4(&sp, [10, 1, 0, 7]), Some(HOST));
        feed(
            &mut sp,
            &arp(true, GW, [10, 1, 0, 7], [10, 1, 0, 7]),
            0,
            ms(1),
        );
        assert_eq!(mac4(&sp, [10, 1, 0, 7]), Some(GW));
        // The same sender on the wrong port (off its subnet): refused.
        feed(
            &mut sp,
            &arp(false, EVIL, [10, 1, 0, 7], [10, 2, 0, 1]),
            1,
            ms(2),
        );
        feed(
            &mut sp,
            &arp(true, EVIL, [10, 1, 0, 7], [10, 1, 0, 7]),
            1,
            ms(2),
        );
        assert_eq!(
            row(&sp, Af::Inet, a4([10, 1, 0, 7])).map(|r| (r.mac, r.port)),
            Some((Some(GW), 0))
        );
        // A reply completes our own resolution.
        let mut out = Vec::new();
        let req = ResolveRequest {
            af: Af::Inet,
            addr: a4([10, 2, 0, 77]),
            port: 1,
        };
        sp.resolve(req, ms(3), &mut out);
        feed(
            &mut sp,
            &arp(false, GW, [10, 2, 0, 77], [10, 2, 0, 1]),
            1,
            ms(3),
        );
        assert_eq!(mac4(&sp, [10, 2, 0, 77]), Some(GW));
        // A static entry never changes.
        feed(
            &mut sp,
            &arp(true, EVIL, [10, 2, 0, 254], [10, 2, 0, 1]),
            1,
            ms(4),
        );
        assert_eq!(mac4(&sp, [10, 2, 0, 254]), Some(STATIC_MAC));
    }

    #[test]
    fn claims_to_our_addresses_are_conflicts_counted_logged_within_a_limit_and_never_learned() {
        let (mut sp, vips) = setup();
        // Gratuitous ARP for lan0's address from another MAC.
        let out = feed(
            &mut sp,
            &arp(true, EVIL, [10, 1, 0, 1], [10, 1, 0, 1]),
            0,
            ms(0),
        );
        assert!(out.is_empty());
        assert_eq!(sp.stats.address_conflicts, 1);
        // wan0's address claimed on lan0, in a request for us: not answered.
        let out = feed(
            &mut sp,
            &arp(true, EVIL, [10, 2, 0, 1], [10, 1, 0, 1]),
            0,
            ms(0),
        );
        assert!(out.is_empty());
        assert_eq!(sp.stats.address_conflicts, 2);
        // Our own frames coming back are not conflicts.
        feed(
            &mut sp,
            &arp(true, LAN_MAC, [10, 1, 0, 1], [10, 1, 0, 1]),
            0,
            ms(0),
        );
        assert_eq!(sp.stats.address_conflicts, 2);
        // A VIP: a conflict only while we are MASTER, and not from its vMAC.
        feed(
            &mut sp,
            &arp(true, EVIL, [10, 1, 0, 254], [10, 1, 0, 254]),
            0,
            ms(0),
        );
        assert_eq!(sp.stats.address_conflicts, 2);
        vips.set_master(0, 1, true);
        feed(
            &mut sp,
            &arp(true, VMAC1, [10, 1, 0, 254], [10, 1, 0, 254]),
            0,
            ms(0),
        );
        assert_eq!(sp.stats.address_conflicts, 2);
        feed(
            &mut sp,
            &arp(false, EVIL, [10, 1, 0, 254], [10, 1, 0, 1]),
            0,
            ms(0),
        );
        assert_eq!(sp.stats.address_conflicts, 3);
        // ND: an NA for our address, an NA for the VIP, an NS from our address.
        let na = |t: &str| icmp6(EVIL, t, "ff02::1", 255, na_body(t, false, true, Some(EVIL)));
        feed(&mut sp, &na("2001:db8:1::1"), 0, ms(0));
        feed(&mut sp, &na("2001:db8:1::fe"), 0, ms(0));
        let ns = icmp6(
            EVIL,
            "2001:db8:1::1",
            "ff02::1:ff00:1",
            255,
            ns_body("2001:db8:1::1", Some(EVIL)),
        );
        assert!(feed(&mut sp, &ns, 0, ms(0)).is_empty());
        assert_eq!(sp.stats.address_conflicts, 6);
        assert!(
            sp.entries().iter().all(|r| r.state == "static"),
            "{:?}",
            sp.entries()
        );
        assert_eq!(
            sp.conflicts_logged, CONFLICT_LOGS_PER_S as u64,
            "rate-limited"
        );
        // A flood over two seconds: counted in full, logged a few times a
        // second.
        for i in 0..2000 {
            feed(
                &mut sp,
                &arp(true, EVIL, [10, 1, 0, 1], [10, 1, 0, 1]),
                0,
                ms(i),
            );
        }
        assert_eq!(sp.stats.address_conflicts, 2006);
        assert_eq!(sp.conflicts_logged, 2 * CONFLICT_LOGS_PER_S as u64);
        assert!(sp.conflicts_unlogged > 0);
        feed(
            &mut sp,
            &arp(true, EVIL, [10, 1, 0, 1], [10, 1, 0, 1]),
            0,
            ms(2000),
        );
        assert_eq!(sp.conflicts_logged, 2 * CONFLICT_LOGS_PER_S as u64 + 1);
        assert_eq!(sp.conflicts_unlogged, 0, "reported with the next line");
    }

    #[test]
    fn the_table_is_bounded_evicting_incomplete_then_least_recently_confirmed() {
        let (sp, _) = setup();
        let mut sp = sp.with_neighbor_limit(16);
        let us = [10, 1, 0, 1];
        let host = |i: u8| [10, 1, 0, 10 + i];
        let mac = |i: u8| [2, 9, 0, 0, 1, i];
        // 16 fit; the 17th finds only entries confirmed < 5 s ago.
        for i in 0..20 {
            feed(
                &mut sp,
                &arp(true, mac(i), host(i), us),
                0,
                ms(u64::from(i)),
            );
        }
        let dynamic = |sp: &SlowPath| sp.entries().iter().filter(|r| r.state != "static").count();
        assert_eq!(dynamic(&sp), 16);
        assert_eq!(sp.stats.neighbor_entries, 16);
        assert_eq!(sp.stats.neighbor_table_full, 4);
        assert_eq!(sp.stats.neighbor_evictions, 0);
        assert_eq!(sp.entries().len(), 18, "static entries on top of the limit");
        // Host 0 is confirmed again (ARP from it); hosts 1.. age.
        feed(&mut sp, &arp(true, mac(0), host(0), us), 0, ms(3000));
        // After 5 s the least recently confirmed go first: host 1, then 2.
        let t = Instant::from_secs(6);
        feed(&mut sp, &arp(true, mac(40), host(40), us), 0, t);
        assert_eq!(mac4(&sp, host(1)), None);
        assert_eq!(mac4(&sp, host(0)), Some(mac(0)), "confirmed recently");
        assert_eq!(sp.stats.neighbor_evictions, 1);
        // An incomplete entry goes before any resolved one.
        let mut out = Vec::new();
        let req = ResolveRequest {
            af: Af::Inet,
            addr: a4([10, 2, 0, 50]),
            port: 1,
        };
        sp.resolve(req, t, &mut out);
        assert_eq!(
            row(&sp, Af::Inet, a4([10, 2, 0, 50])).map(|r| r.state),
            Some("incomplete")
        );
        assert_eq!(mac4(&sp, host(2)), None, "made room for the resolution");
        feed(&mut sp, &arp(true, mac(41), host(41), us), 0, t);
        assert!(
            row(&sp, Af::Inet, a4([10, 2, 0, 50])).is_none(),
            "incomplete first"
        );
        assert_eq!(mac4(&sp, host(3)), Some(mac(3)));
        assert_eq!(sp.stats.neighbor_evictions, 3);
        assert_eq!(dynamic(&sp), 16);
        // The static entries are still there.
        assert_eq!(mac4(&sp, [10, 2, 0, 254]), Some(STATIC_MAC));
    }

    #[test]
    fn snapshots_are_published_at_most_once_a_millisecond() {
        let (mut sp, _) = setup();
        let us = [10, 1, 0, 1];
        assert!(
            sp.take_snapshot(Instant(0)).is_none(),
            "statics: the caller's"
        );
        feed(&mut sp, &arp(true, HOST, [10, 1, 0, 7], us), 0, Instant(0));
        let s = sp
            .take_snapshot(Instant(0))
            .expect("the first change at once");
        assert_eq!(s.len(), 3);
        // A flood of new senders within the next millisecond: held back.
        for i in 0..200u32 {
            let t = Instant(u64::from(i) * 4_000);
            let sender = [10, 1, 0, 8 + (i % 200) as u8];
            feed(
                &mut sp,
                &arp(true, [2, 9, 0, 0, 2, i as u8], sender, us),
                0,
                t,
            );
            assert!(sp.take_snapshot(t).is_none(), "frame {i}");
        }
        // Then one snapshot with all of them.
        let s = sp.take_snapshot(ms(1)).expect("due");
        assert_eq!(s.len(), 2 + sp.stats.neighbor_entries as usize);
        assert_eq!(sp.stats.snapshots_published, 2);
        // A big table is published less often: n × 1 µs.
        let mut sp = sp.with_neighbor_limit(100_000);
        for i in 0..4000u32 {
            sp.put(
                (Af::Inet, Addr::v4((0x0a01_0000u32 + i).to_be_bytes())),
                Entry::reachable(Neighbor { mac: HOST, port: 0 }, ms(1)),
            );
        }
        sp.dirty = true;
        assert!(sp.take_snapshot(ms(10)).is_some());
        sp.dirty = true;
        assert!(
            sp.take_snapshot(ms(13)).is_none(),
            "~4000 entries: every ~4 ms"
        );
        assert!(sp.take_snapshot(ms(15)).is_some());
    }
}
