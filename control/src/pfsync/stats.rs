//! pfsync statistics (`spec/pfsync.md` §5.9): the 16 64-bit counters of
//! `net.inet.pfsync.stats`, in OpenBSD's order and with its names.
//!
//! One [`PfsyncStats`] per writer ([`crate::pfsync::engine::Sync`], on the control
//! thread, owns one); readers sum.
//! The counters only grow (wrapping on overflow is not a concern at 64
//! bits).

use core::ops::{Index, IndexMut};

/// One counter of [`PfsyncStats`], in wire/sysctl order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Counter {
    /// Packets received (§1.1 step 1).
    Ipackets = 0,
    /// IPv6 packets received (unused).
    Ipackets6,
    /// Not received on the sync interface.
    Badif,
    /// TTL not 255.
    Badttl,
    /// Shorter than the pfsync header.
    Hdrops,
    /// Version not 6.
    Badver,
    /// Unusable action (§2.3).
    Badact,
    /// Length inconsistent with the packet.
    Badlen,
    /// Authentication failures (unused by OpenBSD; dpf's `auth`: packets
    /// unauthenticated, altered or replayed).
    Badauth,
    /// Merges that found stale data (§5.3.1).
    Stale,
    /// Invalid field values (§5.3).
    Badval,
    /// Insert or lookup failed (§5.3).
    Badstate,
    /// Packets sent.
    Opackets,
    /// IPv6 packets sent (unused).
    Opackets6,
    /// Packets not built for lack of memory / capacity.
    Onomem,
    /// Output errors.
    Oerrors,
}

impl Counter {
    /// All counters, in order.
    pub const ALL: [Counter; 16] = [
        Counter::Ipackets,
        Counter::Ipackets6,
        Counter::Badif,
        Counter::Badttl,
        Counter::Hdrops,
        Counter::Badver,
        Counter::Badact,
        Counter::Badlen,
        Counter::Badauth,
        Counter::Stale,
        Counter::Badval,
        Counter::Badstate,
        Counter::Opackets,
        Counter::Opackets6,
        Counter::Onomem,
        Counter::Oerrors,
    ];

    /// OpenBSD's field name (`pfsyncs_` prefix dropped).
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Ipackets => "ipackets",
            Counter::Ipackets6 => "ipackets6",
            Counter::Badif => "badif",
            Counter::Badttl => "badttl",
            Counter::Hdrops => "hdrops",
            Counter::Badver => "badver",
            Counter::Badact => "badact",
            Counter::Badlen => "badlen",
            Counter::Badauth => "badauth",
            Counter::Stale => "stale",
            Counter::Badval => "badval",
            Counter::Badstate => "badstate",
            Counter::Opackets => "opackets",
            Counter::Opackets6 => "opackets6",
            Counter::Onomem => "onomem",
            Counter::Oerrors => "oerrors",
        }
    }
}

/// The 16 pfsync counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PfsyncStats {
    counters: [u64; 16],
}

impl PfsyncStats {
    /// Adds one to `counter`.
    #[inline]
    pub fn incr(&mut self, counter: Counter) {
        self[counter] = self[counter].wrapping_add(1);
    }

    /// The value of `counter`.
    #[inline]
    pub fn get(&self, counter: Counter) -> u64 {
        self[counter]
    }

    /// The 16 values in sysctl order.
    pub fn as_array(&self) -> [u64; 16] {
        self.counters
    }

    /// `(name, value)` pairs in sysctl order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL.iter().map(move |c| (c.name(), self[*c]))
    }

    /// Adds every counter of `other` (summing per-thread copies).
    pub fn add(&mut self, other: &PfsyncStats) {
        for (a, b) in self.counters.iter_mut().zip(other.counters.iter()) {
            *a = a.wrapping_add(*b);
        }
    }
}

impl Index<Counter> for PfsyncStats {
    type Output = u64;
    fn index(&self, c: Counter) -> &u64 {
        &self.counters[c as usize]
    }
}

impl IndexMut<Counter> for PfsyncStats {
    fn index_mut(&mut self, c: Counter) -> &mut u64 {
        &mut self.counters[c as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_names_follow_spec() {
        let names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "ipackets",
                "ipackets6",
                "badif",
                "badttl",
                "hdrops",
                "badver",
                "badact",
                "badlen",
                "badauth",
                "stale",
                "badval",
                "badstate",
                "opackets",
                "opackets6",
                "onomem",
                "oerrors"
            ]
        );
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
    }

    #[test]
    fn incr_and_sum() {
        let mut a = PfsyncStats::default();
        a.incr(Counter::Badttl);
        a.incr(Counter::Badttl);
        let mut b = PfsyncStats::default();
        b.incr(Counter::Oerrors);
        b.add(&a);
        assert_eq!(b.get(Counter::Badttl), 2);
        assert_eq!(b.as_array()[15], 1);
        assert_eq!(b.iter().nth(3), Some(("badttl", 2)));
    }
}
