//! Verdicts, drop reasons and per-worker counters.
//!
//! Every packet a worker receives ends in exactly one [`Verdict`]; a drop
//! always names a [`DropReason`], which indexes a counter. Counters are
//! single-writer: a worker owns its [`WorkerCounters`] by value and
//! publishes them to its [`SharedCounters`] slot (relaxed atomic stores, no
//! read-modify-write) every few bursts; readers sum the slots.

use crate::histogram::BurstHistogram;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident => $text:literal,)*) => {
        /// Why a packet was dropped. Each reason indexes a counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($(#[$doc])* $name,)* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons.
            pub const COUNT: usize = DropReason::ALL.len();
            /// Name shown by `dpfctl -s info` and in JSON.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$name => $text,)* }
            }
        }
    };
}

drop_reasons! {
    /// Not classified (the fail-closed default; should stay 0).
    Unclassified => "unclassified",
    /// Malformed or truncated headers.
    BadHeader => "bad-header",
    /// An IP fragment with `set reassemble no` (fail closed), or one the
    /// box itself sends.
    Fragment => "fragment",
    /// Blocked by a `block` rule.
    BlockedByRule => "blocked-by-rule",
    /// TCP segment outside the state's window (pf's "state mismatch").
    StateMismatch => "state-mismatch",
    /// RST outside the window.
    BadRst => "bad-rst",
    /// State table full: no state could be created.
    StateTableFull => "state-table-full",
    /// A state that translates, routes (`route-to`, `reply-to`) or scrubs
    /// (`max-mss`, `min-ttl`, `set-tos`) found every side record in use:
    /// the worker's state table was sized at start for a ruleset without
    /// such rules (pf's PFRES_MEMORY).
    SideRecordsFull => "side-records-full",
    /// `max` states of the rule reached.
    RuleMaxStates => "rule-max-states",
    /// The handoff ring to the owning worker was full.
    HandoffRingFull => "handoff-ring-full",
    /// The slow-path ring was full.
    SlowPathRingFull => "slowpath-ring-full",
    /// A pfsync packet on a port other than `syncdev` (pfsync(4)'s
    /// `badif`), dropped by the worker so it never takes the sync port's
    /// room in the pfsync ring.
    PfsyncNotSyncdev => "pfsync-not-syncdev",
    /// The transmit queue refused the packet.
    TxFull => "tx-full",
    /// No egress for the packet (wire mode: an unpaired port).
    NoEgress => "no-egress",
    /// No route to the destination.
    NoRoute => "no-route",
    /// The next hop's MAC is not resolved yet.
    NeighborUnresolved => "neighbor-unresolved",
    /// TTL or hop limit expired.
    TtlExceeded => "ttl-exceeded",
    /// Frame to a CARP virtual MAC of a vhid we are not MASTER for.
    CarpBackup => "carp-backup",
    /// Frame not addressed to us (unicast to another MAC).
    NotForUs => "not-for-us",
    /// Unsupported EtherType or protocol for this mode.
    Unsupported => "unsupported",
    /// An EtherType the bridge is not told to pass (`pass_ethertypes`),
    /// a non-IP frame in router mode, or a VLAN stack deeper than dpf walks.
    EtherType => "ethertype",
    /// A VLAN-tagged frame in router mode (dpf has no VLAN interfaces).
    Vlan => "vlan",
    /// IPv4 options or IPv6 routing / hop-by-hop options without
    /// `allow-opts` on the deciding rule or state (pf's PFRES_IPOPTIONS).
    IpOptions => "ip-options",
    /// No translation could be made for a new connection (`nat-to` pool
    /// without an address of the packet's family, every port of the range
    /// in use, a translated key that exists already) or a packet of a
    /// translated state arrived from the wrong side (pf's PFRES_TRANSLATE
    /// / PFRES_MAPFAILED).
    TranslationFailed => "translation-failed",
    /// A source tracking limit (`max-src-states`, `max-src-nodes`, `set
    /// limit src-nodes`, `max-src-conn`, `max-src-conn-rate`): pf's
    /// PFRES_SRCLIMIT.
    SrcLimit => "src-limit",
    /// A fragment overlapping (or duplicating) another of its datagram:
    /// the whole datagram is dropped (RFC 5722; teardrop).
    FragmentOverlap => "fragment-overlap",
    /// A datagram not complete within `set timeout frag`: its fragments.
    FragmentTimeout => "fragment-timeout",
    /// `set limit frags` reached: the oldest datagrams' fragments (pf's
    /// PFRES_MEMORY).
    FragmentLimit => "fragment-limit",
    /// A datagram of more than 64 fragments: its fragments.
    FragmentTooMany => "fragment-too-many",
    /// A malformed fragment (empty, not a multiple of 8 bytes but last,
    /// past 65535 bytes, DF set, contradicting its datagram's end); with a
    /// contradiction, its datagram's fragments too (pf's PFRES_FRAG).
    FragmentBad => "fragment-bad",
    /// A TCP SYN answered with a SYN cookie (`set syncookies`): no state,
    /// the SYN-ACK goes back instead.
    SynCookieSent => "syncookie-sent",
    /// An ACK without a state while SYN cookies are on, whose cookie is
    /// not valid (forged, or older than two key lifetimes).
    SynCookieInvalid => "syncookie-invalid",
    /// A packet the firewall's own handshake consumed (pf's
    /// PFRES_SYNPROXY): a valid cookie ACK (the SYN to the server goes out
    /// instead), the server's SYN-ACK (answered), or a packet of the
    /// connection before the server answered.
    Synproxy => "synproxy",
    /// A reassembled datagram to the box itself, or whose TTL runs out
    /// here (the slow path takes single frames).
    FragmentLocal => "fragment-local",
}

/// Why a packet goes to the control thread: set by the worker that
/// decided it, so the control side dispatches without parsing again, and
/// the timing-critical protocols (CARP, pfsync) travel on a ring of their
/// own that a flood of anything else cannot fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Punt {
    /// ARP (outside the ruleset).
    Arp = 1,
    /// ICMPv6 neighbour discovery to the box (RS, RA, NS, NA, redirect).
    Nd = 2,
    /// CARP (IP protocol 112) to the box.
    Carp = 3,
    /// pfsync (IP protocol 240) to the box.
    Pfsync = 4,
    /// Other ICMP / ICMPv6 to the box (echo...).
    Icmp = 5,
    /// Any other IP to the box.
    Local = 6,
    /// A routed packet whose TTL / hop limit runs out here (ICMP time
    /// exceeded).
    TtlExceeded = 7,
}

/// The slow-path ring of pfsync packets ([`Punt::class`]): a worker reads
/// its sync port only while this ring has room for a burst (for a while),
/// so a backup that imports more slowly than the link delivers makes the
/// link, and the sender, wait instead of losing states.
pub const PFSYNC_CLASS: usize = 1;

/// Number of slow-path rings ([`Punt::class`]).
pub const SLOW_CLASSES: usize = 4;

impl Punt {
    /// Every reason.
    pub const ALL: [Punt; 7] = [
        Punt::Arp,
        Punt::Nd,
        Punt::Carp,
        Punt::Pfsync,
        Punt::Icmp,
        Punt::Local,
        Punt::TtlExceeded,
    ];

    /// The slow-path ring this reason travels on, in the order the control
    /// thread serves them: 0 CARP, 1 pfsync, 2 ARP and neighbour
    /// discovery, 3 the rest (ICMP, other traffic to the box, TTL
    /// exceeded). Each ring is bounded and served with a budget, so a flood
    /// of one class never delays the classes before it, and a bulk update
    /// (or a flood on the sync segment) never takes an advertisement's
    /// place in its ring.
    #[inline]
    pub fn class(self) -> usize {
        match self {
            Punt::Carp => 0,
            Punt::Pfsync => PFSYNC_CLASS,
            Punt::Arp | Punt::Nd => 2,
            Punt::Icmp | Punt::Local | Punt::TtlExceeded => 3,
        }
    }

    /// The reason a tag ([`Punt`] as `u8`) names.
    pub fn from_tag(tag: u32) -> Option<Punt> {
        Punt::ALL.into_iter().find(|p| *p as u32 == tag)
    }
}

/// What happens to one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Transmit on this port.
    Forward(u16),
    /// Hand to the owning worker.
    Handoff(u16),
    /// Send to the control thread (addressed to the box), for this reason.
    SlowPath(Punt),
    /// Free the packet and count the reason.
    Drop(DropReason),
    /// The packet was blocked with `block return`: the pipeline wrote the
    /// answer (TCP RST or ICMP unreachable) into its reply buffer; send that
    /// on this port instead of the packet.
    Reply(u16),
    /// Router mode: the packet's next hop is being resolved; the worker
    /// keeps it in this slot until the pipeline releases it
    /// ([`crate::neighbor_hold`]).
    AwaitNeighbor(u16),
    /// pfsync `defer`: the packet created a state the peer must learn
    /// first; the worker keeps it in this defer slot until the pipeline
    /// releases it ([`crate::defer`]).
    Hold(u16),
    /// A fragment taken into the reassembly table: the worker keeps the
    /// frame at this entry until the pipeline hands the entry back
    /// ([`crate::frag`]).
    Reassembly(u32),
}

/// Per-worker counters, owned by value by the worker (plain integers).
#[derive(Clone, Debug)]
pub struct WorkerCounters {
    /// Packets received.
    pub rx: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets transmitted (accepted by tx_burst).
    pub tx: u64,
    /// Packets forwarded by the pipeline.
    pub forwarded: u64,
    /// Packets passed by an existing state.
    pub state_hits: u64,
    /// States created.
    pub states_created: u64,
    /// States removed (expired or killed).
    pub states_removed: u64,
    /// Packets handed to another worker.
    pub handed_off: u64,
    /// Packets received from other workers.
    pub handed_in: u64,
    /// Packets sent to the slow path.
    pub slow_path: u64,
    /// Frames the box itself sent that the `out` rules let through.
    pub local_out: u64,
    /// Routed packets held while their next hop was resolved.
    pub neighbor_held: u64,
    /// Drops by reason.
    pub drops: [u64; DropReason::COUNT],
    /// TSC cycles spent processing bursts (excluding empty polls).
    pub busy_cycles: u64,
    /// Bursts processed (non-empty).
    pub bursts: u64,
    /// Current states in this worker's shard.
    pub states: u64,
    /// `block return` answers sent.
    pub block_returns: u64,
    /// pfsync exports the ring refused (each is retried: see
    /// `export_resent`, `export_lost`).
    pub export_dropped: u64,
    /// pfsync exports sent again after the ring had refused them.
    pub export_resent: u64,
    /// pfsync deletions given up because the ring and the backlog were
    /// full (the peer expires those states by its own timeouts).
    pub export_lost: u64,
    /// Peer updates that were older than our state on a side (our state
    /// was sent back, spec/pfsync.md §5.3.1).
    pub sync_stale: u64,
    /// pfsync records imported.
    pub imported: u64,
    /// Packets held by pfsync `defer` until the peer had their state.
    pub deferred: u64,
    /// Held packets released by the peer's acknowledgement.
    pub defer_acked: u64,
    /// Held packets released after the defer timeout (20 ms).
    pub defer_timeout: u64,
    /// New states not deferred because every defer slot was taken.
    pub defer_full: u64,
    /// Cross-worker alias messages that found their ring or table full
    /// (an alias not made refuses its state; one not withdrawn lingers
    /// until its key is used again).
    pub alias_lost: u64,
    /// Datagrams reassembled from fragments.
    pub reassembled: u64,
    /// pflog records handed to the logger.
    pub pflog_logged: u64,
    /// pflog records lost: the logger's ring was full, or one packet
    /// matched more logging rules than a decision carries.
    pub pflog_dropped: u64,
    /// Times the tx queue began refusing frames of the box's own that must
    /// not be lost (pfsync packets), which were kept and sent again when
    /// it took them ([`crate::local_tx`]): waits, not retries.
    pub local_tx_waits: u64,
    /// Iterations in which this worker left its sync port unread because
    /// the pfsync slow-path ring had no room for a burst (the backup makes
    /// the link wait instead of losing states).
    pub sync_rx_paused: u64,
    /// States in this worker's shard holding a side record (translation,
    /// route or scrub values).
    pub side_records_used: u64,
    /// TSC cycles of each non-empty burst (the per-burst share of
    /// `busy_cycles`), for latency percentiles.
    pub burst_cycles: BurstHistogram,
}

impl Default for WorkerCounters {
    fn default() -> Self {
        WorkerCounters {
            rx: 0,
            rx_bytes: 0,
            tx: 0,
            forwarded: 0,
            state_hits: 0,
            states_created: 0,
            states_removed: 0,
            handed_off: 0,
            handed_in: 0,
            slow_path: 0,
            local_out: 0,
            neighbor_held: 0,
            drops: [0; DropReason::COUNT],
            busy_cycles: 0,
            bursts: 0,
            states: 0,
            block_returns: 0,
            export_dropped: 0,
            export_resent: 0,
            export_lost: 0,
            sync_stale: 0,
            imported: 0,
            deferred: 0,
            defer_acked: 0,
            defer_timeout: 0,
            defer_full: 0,
            alias_lost: 0,
            reassembled: 0,
            pflog_logged: 0,
            pflog_dropped: 0,
            local_tx_waits: 0,
            sync_rx_paused: 0,
            side_records_used: 0,
            burst_cycles: BurstHistogram::new(),
        }
    }
}

impl WorkerCounters {
    /// Counts a drop.
    #[inline(always)]
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Total drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    fn fields(&self) -> [u64; SCALARS] {
        [
            self.rx,
            self.rx_bytes,
            self.tx,
            self.forwarded,
            self.state_hits,
            self.states_created,
            self.states_removed,
            self.handed_off,
            self.handed_in,
            self.slow_path,
            self.local_out,
            self.neighbor_held,
            self.busy_cycles,
            self.bursts,
            self.states,
            self.block_returns,
            self.export_dropped,
            self.export_resent,
            self.export_lost,
            self.sync_stale,
            self.imported,
            self.deferred,
            self.defer_acked,
            self.defer_timeout,
            self.defer_full,
            self.alias_lost,
            self.reassembled,
            self.pflog_logged,
            self.pflog_dropped,
            self.local_tx_waits,
            self.sync_rx_paused,
            self.side_records_used,
        ]
    }

    fn set_fields(&mut self, f: &[u64; SCALARS]) {
        [
            self.rx,
            self.rx_bytes,
            self.tx,
            self.forwarded,
            self.state_hits,
            self.states_created,
            self.states_removed,
            self.handed_off,
            self.handed_in,
            self.slow_path,
            self.local_out,
            self.neighbor_held,
            self.busy_cycles,
            self.bursts,
            self.states,
            self.block_returns,
            self.export_dropped,
            self.export_resent,
            self.export_lost,
            self.sync_stale,
            self.imported,
            self.deferred,
            self.defer_acked,
            self.defer_timeout,
            self.defer_full,
            self.alias_lost,
            self.reassembled,
            self.pflog_logged,
            self.pflog_dropped,
            self.local_tx_waits,
            self.sync_rx_paused,
            self.side_records_used,
        ] = *f;
    }

    /// Adds `other` into `self` (for summing workers).
    pub fn add(&mut self, other: &WorkerCounters) {
        let mut a = self.fields();
        for (x, y) in a.iter_mut().zip(other.fields()) {
            *x += y;
        }
        self.set_fields(&a);
        for (x, y) in self.drops.iter_mut().zip(other.drops.iter()) {
            *x += y;
        }
        self.burst_cycles.add(&other.burst_cycles);
    }
}

const SCALARS: usize = 32;

/// One worker's published counters: atomics written by that worker only.
#[derive(Debug)]
pub struct CounterSlot {
    scalars: [AtomicU64; SCALARS],
    drops: [AtomicU64; DropReason::COUNT],
    burst_buckets: [AtomicU64; BurstHistogram::LEN],
    burst_max: AtomicU64,
}

impl Default for CounterSlot {
    fn default() -> Self {
        CounterSlot {
            scalars: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            burst_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            burst_max: AtomicU64::new(0),
        }
    }
}

/// Counter slots of all workers, each on its own cache lines.
#[derive(Debug)]
pub struct SharedCounters {
    slots: Vec<CachePadded<CounterSlot>>,
}

impl SharedCounters {
    /// Slots for `workers` workers.
    pub fn new(workers: usize) -> SharedCounters {
        SharedCounters {
            slots: (0..workers)
                .map(|_| CachePadded::new(CounterSlot::default()))
                .collect(),
        }
    }

    /// Publishes worker `w`'s counters (called by worker `w` only).
    #[inline]
    pub fn publish(&self, w: usize, c: &WorkerCounters) {
        if let Some(slot) = self.slots.get(w) {
            for (a, v) in slot.scalars.iter().zip(c.fields()) {
                a.store(v, Ordering::Relaxed);
            }
            for (a, v) in slot.drops.iter().zip(c.drops.iter()) {
                a.store(*v, Ordering::Relaxed);
            }
            // Only buckets up to the highest one ever used can have moved.
            let h = &c.burst_cycles;
            for (i, a) in slot.burst_buckets[..h.touched()].iter().enumerate() {
                a.store(h.bucket(i), Ordering::Relaxed);
            }
            slot.burst_max.store(h.max(), Ordering::Relaxed);
        }
    }

    /// Worker `w`'s last published counters.
    pub fn read(&self, w: usize) -> WorkerCounters {
        let mut c = WorkerCounters::default();
        if let Some(slot) = self.slots.get(w) {
            let mut f = [0u64; SCALARS];
            for (v, a) in f.iter_mut().zip(slot.scalars.iter()) {
                *v = a.load(Ordering::Relaxed);
            }
            c.set_fields(&f);
            for (v, a) in c.drops.iter_mut().zip(slot.drops.iter()) {
                *v = a.load(Ordering::Relaxed);
            }
            for (i, a) in slot.burst_buckets.iter().enumerate() {
                c.burst_cycles.set_bucket(i, a.load(Ordering::Relaxed));
            }
            c.burst_cycles
                .set_max(slot.burst_max.load(Ordering::Relaxed));
        }
        c
    }

    /// The sum over all workers.
    pub fn total(&self) -> WorkerCounters {
        let mut t = WorkerCounters::default();
        for w in 0..self.slots.len() {
            t.add(&self.read(w));
        }
        t
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carp_has_a_ring_of_its_own_served_first_and_pfsync_the_next() {
        // A bulk update or a flood on the sync segment fills pfsync's ring,
        // never the one advertisements travel on.
        assert_eq!(Punt::Carp.class(), 0);
        assert_eq!(Punt::Pfsync.class(), PFSYNC_CLASS);
        for p in Punt::ALL {
            assert!(p.class() < SLOW_CLASSES);
            if p != Punt::Carp {
                assert_ne!(p.class(), Punt::Carp.class(), "{p:?}");
            }
            if p != Punt::Pfsync {
                assert_ne!(p.class(), PFSYNC_CLASS, "{p:?}");
            }
        }
    }

    #[test]
    fn publish_and_sum() {
        let shared = SharedCounters::new(2);
        let mut a = WorkerCounters {
            rx: 5,
            ..Default::default()
        };
        a.drop(DropReason::Fragment);
        let mut b = WorkerCounters {
            rx: 7,
            ..Default::default()
        };
        b.drop(DropReason::Fragment);
        b.drop(DropReason::BadHeader);
        shared.publish(0, &a);
        shared.publish(1, &b);
        let t = shared.total();
        assert_eq!(t.rx, 12);
        assert_eq!(t.drops[DropReason::Fragment as usize], 2);
        assert_eq!(t.total_drops(), 3);
    }

    #[test]
    fn burst_histograms_publish_and_merge() {
        let shared = SharedCounters::new(2);
        let mut a = WorkerCounters::default();
        let mut b = WorkerCounters::default();
        for cycles in [100, 200, 300] {
            a.burst_cycles.record(cycles);
        }
        b.burst_cycles.record(50_000);
        shared.publish(0, &a);
        shared.publish(1, &b);
        let t = shared.total();
        assert_eq!(t.burst_cycles.count(), 4);
        assert_eq!(t.burst_cycles.max(), 50_000);
        assert_eq!(t.burst_cycles.quantile(0.5), a.burst_cycles.quantile(0.5));
        // A later publish replaces the slot's buckets.
        a.burst_cycles.record(100);
        shared.publish(0, &a);
        assert_eq!(shared.read(0).burst_cycles.count(), 4);
    }

    #[test]
    fn reason_names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
