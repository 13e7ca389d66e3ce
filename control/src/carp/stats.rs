//! CARP's statistics (`struct carpstats`, spec/carp.md §5.3): the counters
//! in OpenBSD's order and names. Written by the receive validation and the
//! state machine, read by `dpfctl -s carp`.

/// Index of a `struct carpstats` counter (§5.3), in OpenBSD's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(usize)]
pub enum Counter {
    /// Any IPv4 CARP packet received.
    IPackets = 0,
    /// Any IPv6 CARP packet received.
    IPackets6 = 1,
    /// Received on an unsuitable interface.
    BadIf = 2,
    /// TTL / hop limit ≠ 255.
    BadTtl = 3,
    /// Could not pull up the header (never produced here: frames are contiguous).
    HdrOps = 4,
    /// Checksum wrong.
    BadSum = 5,
    /// Version ≠ 2.
    BadVer = 6,
    /// Too short.
    BadLen = 7,
    /// HMAC mismatch; own cookie seen on a simplex parent.
    BadAuth = 8,
    /// No matching VHID, or the carp interface not running.
    BadVhid = 9,
    /// Unused.
    BadAddrs = 10,
    /// IPv4 advertisement sent.
    OPackets = 11,
    /// IPv6 advertisement sent.
    OPackets6 = 12,
    /// No buffer for an advertisement.
    ONoMem = 13,
    /// Unused (historical).
    OStates = 14,
    /// Every BACKUP → MASTER transition.
    Preempt = 15,
}

/// Number of CARP counters.
pub const NUM_COUNTERS: usize = 16;

impl Counter {
    /// All counters in `struct carpstats` order.
    pub const ALL: [Counter; NUM_COUNTERS] = [
        Counter::IPackets,
        Counter::IPackets6,
        Counter::BadIf,
        Counter::BadTtl,
        Counter::HdrOps,
        Counter::BadSum,
        Counter::BadVer,
        Counter::BadLen,
        Counter::BadAuth,
        Counter::BadVhid,
        Counter::BadAddrs,
        Counter::OPackets,
        Counter::OPackets6,
        Counter::ONoMem,
        Counter::OStates,
        Counter::Preempt,
    ];

    /// The OpenBSD field name (`carps_*`).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::IPackets => "carps_ipackets",
            Counter::IPackets6 => "carps_ipackets6",
            Counter::BadIf => "carps_badif",
            Counter::BadTtl => "carps_badttl",
            Counter::HdrOps => "carps_hdrops",
            Counter::BadSum => "carps_badsum",
            Counter::BadVer => "carps_badver",
            Counter::BadLen => "carps_badlen",
            Counter::BadAuth => "carps_badauth",
            Counter::BadVhid => "carps_badvhid",
            Counter::BadAddrs => "carps_badaddrs",
            Counter::OPackets => "carps_opackets",
            Counter::OPackets6 => "carps_opackets6",
            Counter::ONoMem => "carps_onomem",
            Counter::OStates => "carps_ostates",
            Counter::Preempt => "carps_preempt",
        }
    }

    /// Position in `struct carpstats`.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// `struct carpstats`: 16 × u64 (§5.3). Single writer; readers sum copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CarpStats {
    counters: [u64; NUM_COUNTERS],
}

impl CarpStats {
    /// All zero.
    pub const fn new() -> CarpStats {
        CarpStats {
            counters: [0; NUM_COUNTERS],
        }
    }
    /// Adds one.
    pub fn inc(&mut self, counter: Counter) {
        self.add(counter, 1);
    }
    /// Adds `n` (wrapping, as kernel counters do).
    pub fn add(&mut self, counter: Counter, n: u64) {
        let c = &mut self.counters[counter.index()];
        *c = c.wrapping_add(n);
    }
    /// Current value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter.index()]
    }
    /// The raw array, in `struct carpstats` order.
    pub fn as_array(&self) -> &[u64; NUM_COUNTERS] {
        &self.counters
    }
    /// Adds every counter of `other` (summing per-thread copies).
    pub fn merge(&mut self, other: &CarpStats) {
        for c in Counter::ALL {
            self.add(c, other.get(c));
        }
    }
    /// `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL.into_iter().map(|c| (c.name(), self.get(c)))
    }
}
