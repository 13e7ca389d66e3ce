//! Static address tables (`table <name> { ... }`), compiled for lookup
//! without allocation.
//!
//! Semantics are pf's (`pfr_match_addr`): the longest prefix of the table
//! that contains the address decides; if that entry is negated (`!net`) the
//! address does not match, otherwise it does. An address no entry contains
//! does not match.
//!
//! Layout: per family, groups of entries with the same prefix length, the
//! groups ordered longest first, each group's networks sorted, so a lookup is
//! at most one binary search per distinct prefix length. Addresses are
//! `u128` in network order (IPv4 in the top 32 bits, as [`Addr`] stores it).
//!
//! Invariant: a table holds at most one entry per (family, network, length);
//! the compiler rejects a network listed both negated and not.

use crate::flow::{Addr, Af};

/// An address as a big-endian `u128` (IPv4 in the top 32 bits).
#[inline]
pub(crate) fn addr_bits(a: &Addr) -> u128 {
    u128::from_be_bytes(a.0)
}

/// The mask of a `len`-bit prefix in the `u128` layout.
#[inline]
pub(crate) fn prefix_mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128) as u32)
    }
}

/// Prefixes of one length.
#[derive(Clone, Debug, Default)]
struct Group {
    mask: u128,
    /// (network, negated), sorted by network.
    entries: Vec<(u128, bool)>,
}

/// The prefixes of one family.
#[derive(Clone, Debug, Default)]
struct PrefixSet {
    /// Longest prefix length first.
    groups: Vec<Group>,
}

impl PrefixSet {
    fn build(mut entries: Vec<(u128, u8, bool)>) -> PrefixSet {
        entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut groups: Vec<Group> = Vec::new();
        let mut cur_len: Option<u8> = None;
        for (net, len, neg) in entries {
            if cur_len != Some(len) {
                groups.push(Group {
                    mask: prefix_mask(len),
                    entries: Vec::new(),
                });
                cur_len = Some(len);
            }
            if let Some(g) = groups.last_mut() {
                g.entries.push((net, neg));
            }
        }
        PrefixSet { groups }
    }

    #[inline]
    fn lookup(&self, a: u128) -> bool {
        for g in &self.groups {
            let key = a & g.mask;
            if let Ok(i) = g.entries.binary_search_by(|e| e.0.cmp(&key)) {
                return !g.entries[i].1;
            }
        }
        false
    }
}

/// One compiled table.
#[derive(Clone, Debug, Default)]
pub(crate) struct Table {
    pub(crate) name: String,
    v4: PrefixSet,
    v6: PrefixSet,
    /// The entries as given (family, masked network, length, negated), kept
    /// for the reference evaluator in tests and for listing.
    pub(crate) entries: Vec<(Af, u128, u8, bool)>,
}

impl Table {
    /// Builds a table from `(family, network, prefix length, negated)`
    /// entries; networks are masked to their length. Duplicates must have
    /// been removed by the caller.
    pub(crate) fn new(name: String, entries: Vec<(Af, u128, u8, bool)>) -> Table {
        let masked: Vec<(Af, u128, u8, bool)> = entries
            .into_iter()
            .map(|(af, net, len, neg)| (af, net & prefix_mask(len), len, neg))
            .collect();
        let pick = |want: Af| {
            masked
                .iter()
                .filter(|e| e.0 == want)
                .map(|e| (e.1, e.2, e.3))
                .collect::<Vec<_>>()
        };
        Table {
            name,
            v4: PrefixSet::build(pick(Af::Inet)),
            v6: PrefixSet::build(pick(Af::Inet6)),
            entries: masked,
        }
    }

    /// Whether `addr` of family `af` matches the table (pf's
    /// `pfr_match_addr`).
    #[inline]
    pub(crate) fn matches(&self, af: Af, addr: u128) -> bool {
        match af {
            Af::Inet => self.v4.lookup(addr),
            Af::Inet6 => self.v6.lookup(addr),
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> u128 {
        addr_bits(&Addr::v4(a))
    }

    #[test]
    fn longest_prefix_with_negation_decides() {
        let t = Table::new(
            "t".into(),
            vec![
                (Af::Inet, v4([10, 0, 0, 0]), 8, false),
                (Af::Inet, v4([10, 1, 0, 0]), 16, true),
                (Af::Inet, v4([10, 1, 2, 0]), 24, false),
                (Af::Inet, v4([10, 1, 2, 3]), 32, true),
            ],
        );
        assert!(t.matches(Af::Inet, v4([10, 9, 9, 9])));
        assert!(!t.matches(Af::Inet, v4([10, 1, 9, 9])));
        assert!(t.matches(Af::Inet, v4([10, 1, 2, 9])));
        assert!(!t.matches(Af::Inet, v4([10, 1, 2, 3])));
        assert!(!t.matches(Af::Inet, v4([11, 0, 0, 1])));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn families_are_separate() {
        let v6net = addr_bits(&Addr::v6([
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]));
        let t = Table::new("t".into(), vec![(Af::Inet6, v6net, 32, false)]);
        let inside = addr_bits(&Addr::v6([
            0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1,
        ]));
        assert!(t.matches(Af::Inet6, inside));
        assert!(!t.matches(Af::Inet6, 1));
        // Bits that fall inside the v6 prefix do not match as IPv4.
        assert!(!t.matches(Af::Inet, inside));
        // 0.0.0.0/0 matches every IPv4 address but no IPv6 one.
        let t = Table::new("t".into(), vec![(Af::Inet, 0, 0, false)]);
        assert!(t.matches(Af::Inet, v4([1, 2, 3, 4])));
        assert!(!t.matches(Af::Inet6, inside));
    }

    #[test]
    fn host_bits_are_masked() {
        let t = Table::new(
            "t".into(),
            vec![(Af::Inet, v4([192, 168, 1, 77]), 24, false)],
        );
        assert!(t.matches(Af::Inet, v4([192, 168, 1, 1])));
        assert_eq!(t.entries[0].1, v4([192, 168, 1, 0]));
    }
}
