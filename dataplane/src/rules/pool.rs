//! Compiled translation pools (`nat-to`, `rdr-to`, `binat-to` targets) and
//! pf's address and port choice for a new connection (`pf_map_addr`,
//! `pf_get_sport`'s port range, the rdr port mapping).
//!
//! A pool is a list of addresses and networks of one or both families, a
//! pool type and a port spec. Choosing an address never allocates: the
//! caller passes the packet's addresses and a random word; round-robin
//! pools keep one shared counter (an atomic, touched once per new
//! connection, never per packet).
//!
//! Invariants: every entry's network has its host bits cleared; a
//! `bitmask` pool has exactly one entry per family (the compiler checks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::parser::{PoolPorts, PoolType};
use super::table::{addr_bits, prefix_mask};
use crate::flow::{Addr, Af};

/// pf's default source port range for `nat-to` (`PF_NAT_PROXY_PORT_LOW`,
/// `PF_NAT_PROXY_PORT_HIGH`).
pub const NAT_PORT_LOW: u16 = 50001;
/// See [`NAT_PORT_LOW`].
pub const NAT_PORT_HIGH: u16 = 65535;

/// What a pool translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolRole {
    /// `nat-to`: the source address (and port).
    Nat,
    /// `rdr-to`: the destination address (and port).
    Rdr,
}

/// One compiled translation target.
#[derive(Clone, Debug)]
pub struct Pool {
    /// What it translates.
    pub role: PoolRole,
    /// (family, network, prefix length), host bits clear.
    entries: Vec<(Af, u128, u8)>,
    /// Pool type (pf's default already applied).
    pub(crate) kind: PoolType,
    /// `port ...` of the rule, if any.
    pub(crate) ports: Option<PoolPorts>,
    /// `static-port`: keep the source port (nat-to).
    pub static_port: bool,
    /// Round-robin position, shared by every worker.
    next: Arc<AtomicU64>,
    /// The pool as pfctl prints it (`nat-to 192.0.2.1 port 1024:65535`).
    pub(crate) text: String,
}

/// Number of host addresses of a prefix (capped at 2^64 for IPv6).
fn hosts_of(af: Af, len: u8) -> u64 {
    let bits = match af {
        Af::Inet => 32u32.saturating_sub(len as u32),
        Af::Inet6 => 128u32.saturating_sub(len as u32),
    };
    if bits >= 64 {
        u64::MAX
    } else {
        1u64 << bits
    }
}

fn bits_to_addr(af: Af, bits: u128) -> Addr {
    match af {
        Af::Inet => Addr::v4(((bits >> 96) as u32).to_be_bytes()),
        Af::Inet6 => Addr::v6(bits.to_be_bytes()),
    }
}

/// The `i`-th usable host of a network: IPv4 networks of /30 and wider
/// skip their network and broadcast addresses.
fn nth_host(af: Af, net: u128, len: u8, i: u64) -> u128 {
    let total = hosts_of(af, len);
    let (skip, usable) = if af == Af::Inet && len < 31 {
        (1, total - 2)
    } else {
        (0, total)
    };
    let off = (i % usable.max(1)) + skip;
    let shift = match af {
        Af::Inet => 96,
        Af::Inet6 => 0,
    };
    net | (u128::from(off) << shift)
}

/// A keyed 64-bit hash of an address (`source-hash`).
fn source_hash(a: &Addr, key: &[u8; 16]) -> u64 {
    let mut k0 = [0u8; 8];
    let mut k1 = [0u8; 8];
    k0.copy_from_slice(&key[..8]);
    k1.copy_from_slice(&key[8..]);
    let (k0, k1) = (u64::from_be_bytes(k0), u64::from_be_bytes(k1));
    let mut w0 = [0u8; 8];
    let mut w1 = [0u8; 8];
    w0.copy_from_slice(&a.0[..8]);
    w1.copy_from_slice(&a.0[8..]);
    let m = |x: u64, y: u64| {
        let p = (x as u128) * (y as u128);
        (p as u64) ^ ((p >> 64) as u64)
    };
    let h = m(
        u64::from_be_bytes(w0) ^ k0 ^ 0x9e37_79b9_7f4a_7c15,
        u64::from_be_bytes(w1) ^ k1 ^ 0xa076_1d64_78bd_642f,
    );
    m(h ^ k1, 0xe703_7ed1_a0b4_28db ^ k0)
}

impl Pool {
    pub(crate) fn new(
        role: PoolRole,
        entries: Vec<(Af, u128, u8)>,
        kind: PoolType,
        ports: Option<PoolPorts>,
        static_port: bool,
        text: String,
    ) -> Pool {
        let entries = entries
            .into_iter()
            .map(|(af, net, len)| (af, net & prefix_mask(len), len))
            .collect();
        Pool {
            role,
            entries,
            kind,
            ports,
            static_port,
            next: Arc::new(AtomicU64::new(0)),
            text,
        }
    }

    /// The families the pool has addresses of.
    pub fn has_family(&self, af: Af) -> bool {
        self.entries.iter().any(|e| e.0 == af)
    }

    /// pf's `pf_map_addr`: the address a new connection of family `af` is
    /// translated to. `own` is the address being replaced (the source for
    /// `nat-to`, the destination for `rdr-to`; `bitmask` keeps its host
    /// bits), `src` the packet's source (`source-hash`), `random` a random
    /// word. `None` when the pool has no address of that family.
    pub fn map_addr(&self, af: Af, own: &Addr, src: &Addr, random: u64) -> Option<Addr> {
        let count = self.entries.iter().filter(|e| e.0 == af).count() as u64;
        if count == 0 {
            return None;
        }
        let nth = |i: u64| {
            self.entries
                .iter()
                .filter(|e| e.0 == af)
                .nth(i as usize)
                .copied()
        };
        let (eaf, net, len) = match self.kind {
            PoolType::Bitmask => nth(0)?,
            _ if count == 1 => nth(0)?,
            PoolType::Random => nth(random % count)?,
            PoolType::SourceHash(key) => nth(source_hash(src, &key.unwrap_or([0; 16])) % count)?,
            PoolType::RoundRobin => nth(self.next.load(Ordering::Relaxed) % count)?,
        };
        let host_bits = !prefix_mask(len)
            & match eaf {
                Af::Inet => u128::from(u32::MAX) << 96,
                Af::Inet6 => u128::MAX,
            };
        if host_bits == 0 {
            if self.kind == PoolType::RoundRobin && count > 1 {
                self.next.fetch_add(1, Ordering::Relaxed);
            }
            return Some(bits_to_addr(eaf, net));
        }
        let bits = match self.kind {
            PoolType::Bitmask => net | (addr_bits(own) & host_bits),
            PoolType::Random => nth_host(eaf, net, len, random >> 8),
            PoolType::SourceHash(key) => nth_host(
                eaf,
                net,
                len,
                source_hash(src, &key.unwrap_or([0; 16])) >> 16,
            ),
            PoolType::RoundRobin => {
                // Entries in turn, and each network's hosts in turn.
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                nth_host(eaf, net, len, n / count)
            }
        };
        Some(bits_to_addr(eaf, bits))
    }

    /// The source port range `nat-to` chooses from: `port a:b` or pf's
    /// default 50001-65535.
    pub fn nat_ports(&self) -> (u16, u16) {
        match self.ports {
            Some(p) => (p.low, p.high),
            None => (NAT_PORT_LOW, NAT_PORT_HIGH),
        }
    }

    /// The destination port `rdr-to` gives a connection to `dport`
    /// matched by a rule whose destination port range starts at
    /// `rule_low` (pf: a single port replaces; `a:b` maps the rule's range
    /// onto it modulo its size; `a:*` shifts it).
    pub fn rdr_port(&self, dport: u16, rule_low: u16) -> u16 {
        match self.ports {
            None => dport,
            Some(p) if p.star => p.low.wrapping_add(dport.wrapping_sub(rule_low)),
            Some(p) if p.low == p.high => p.low,
            Some(p) => {
                let size = u32::from(p.high - p.low) + 1;
                let off = u32::from(dport.wrapping_sub(rule_low)) % size;
                p.low + off as u16
            }
        }
    }

    /// The pool as pfctl prints it.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Addr {
        Addr::v4(s.parse::<std::net::Ipv4Addr>().unwrap().octets())
    }

    fn pool(entries: &[(&str, u8)], kind: PoolType) -> Pool {
        Pool::new(
            PoolRole::Nat,
            entries
                .iter()
                .map(|(a, l)| (Af::Inet, addr_bits(&v4(a)), *l))
                .collect(),
            kind,
            None,
            false,
            String::new(),
        )
    }

    #[test]
    fn single_address_is_always_chosen() {
        let p = pool(&[("192.0.2.1", 32)], PoolType::RoundRobin);
        for r in 0..10 {
            assert_eq!(
                p.map_addr(Af::Inet, &v4("10.0.0.1"), &v4("10.0.0.1"), r),
                Some(v4("192.0.2.1"))
            );
        }
        assert_eq!(p.map_addr(Af::Inet6, &Addr::ZERO, &Addr::ZERO, 0), None);
    }

    #[test]
    fn bitmask_keeps_host_bits() {
        let p = pool(&[("192.0.2.0", 24)], PoolType::Bitmask);
        assert_eq!(
            p.map_addr(Af::Inet, &v4("10.1.2.77"), &v4("1.1.1.1"), 5),
            Some(v4("192.0.2.77"))
        );
    }

    #[test]
    fn round_robin_walks_entries_and_hosts() {
        let p = pool(
            &[("192.0.2.1", 32), ("198.51.100.1", 32)],
            PoolType::RoundRobin,
        );
        let a: Vec<Addr> = (0..4)
            .map(|_| p.map_addr(Af::Inet, &Addr::ZERO, &Addr::ZERO, 0).unwrap())
            .collect();
        assert_eq!(
            a,
            vec![
                v4("192.0.2.1"),
                v4("198.51.100.1"),
                v4("192.0.2.1"),
                v4("198.51.100.1")
            ]
        );
        let n = pool(&[("192.0.2.0", 30)], PoolType::RoundRobin);
        let a: Vec<Addr> = (0..3)
            .map(|_| n.map_addr(Af::Inet, &Addr::ZERO, &Addr::ZERO, 0).unwrap())
            .collect();
        // /30: .1 and .2 (network and broadcast skipped), then .1 again.
        assert_eq!(a, vec![v4("192.0.2.1"), v4("192.0.2.2"), v4("192.0.2.1")]);
    }

    #[test]
    fn source_hash_is_stable_per_source_and_spreads() {
        let p = pool(&[("192.0.2.0", 24)], PoolType::SourceHash(None));
        let a = p.map_addr(Af::Inet, &Addr::ZERO, &v4("10.0.0.5"), 1);
        assert_eq!(a, p.map_addr(Af::Inet, &Addr::ZERO, &v4("10.0.0.5"), 999));
        let distinct: std::collections::HashSet<Addr> = (0..64u8)
            .filter_map(|i| p.map_addr(Af::Inet, &Addr::ZERO, &Addr::v4([10, 0, 1, i]), 0))
            .collect();
        assert!(distinct.len() > 20, "{}", distinct.len());
        let keyed = pool(&[("192.0.2.0", 24)], PoolType::SourceHash(Some([7; 16])));
        let differ = (0..32u8).any(|i| {
            let s = Addr::v4([10, 0, 2, i]);
            keyed.map_addr(Af::Inet, &Addr::ZERO, &s, 0) != p.map_addr(Af::Inet, &Addr::ZERO, &s, 0)
        });
        assert!(differ, "the key changes the mapping");
    }

    #[test]
    fn random_stays_inside_the_network() {
        let p = pool(&[("192.0.2.0", 28)], PoolType::Random);
        for r in 0..200u64 {
            let a = p
                .map_addr(
                    Af::Inet,
                    &Addr::ZERO,
                    &Addr::ZERO,
                    r.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                )
                .unwrap();
            let o = a.v4_octets();
            assert_eq!(&o[..3], &[192, 0, 2]);
            assert!(o[3] >= 1 && o[3] <= 14, "{a:?}");
        }
    }

    #[test]
    fn rdr_port_mapping_follows_pf() {
        let mk = |low, high, star| {
            let mut p = pool(&[("10.0.0.1", 32)], PoolType::RoundRobin);
            p.role = PoolRole::Rdr;
            p.ports = Some(PoolPorts { low, high, star });
            p
        };
        assert_eq!(mk(8080, 8080, false).rdr_port(80, 80), 8080);
        assert_eq!(mk(8000, 8001, false).rdr_port(82, 80), 8000);
        assert_eq!(mk(8000, 8000, true).rdr_port(85, 80), 8005);
        assert_eq!(
            pool(&[("10.0.0.1", 32)], PoolType::RoundRobin).rdr_port(443, 443),
            443
        );
    }
}

/// One next hop of a [`RoutePool`]: (egress port, or `None` for a route
/// lookup of the address; next hop, `None` for the packet's destination on
/// that port).
pub type RouteHop = (Option<u16>, Option<(Af, Addr)>);

/// A compiled `route-to` / `reply-to`: its next hops and how one is
/// chosen for a new connection.
#[derive(Clone, Debug)]
pub struct RoutePool {
    /// [`crate::state::route_kind`] `ROUTE_TO` or `REPLY_TO`.
    pub kind: u8,
    hops: Vec<RouteHop>,
    pool: PoolType,
    next: Arc<AtomicU64>,
    /// As pfctl prints it (`route-to (wan1 192.0.2.1)`).
    pub(crate) text: String,
}

impl RoutePool {
    pub(crate) fn new(kind: u8, hops: Vec<RouteHop>, pool: PoolType, text: String) -> RoutePool {
        RoutePool {
            kind,
            hops,
            pool,
            next: Arc::new(AtomicU64::new(0)),
            text,
        }
    }

    /// Whether a hop serves family `af`.
    pub fn has_family(&self, af: Af) -> bool {
        self.hops.iter().any(|h| h.1.is_none_or(|(a, _)| a == af))
    }

    /// The next hop for a new connection of family `af` from `src`
    /// (`random` a random word): (port or `None`, next hop or `None`).
    /// `None` when no hop serves the family.
    pub fn choose(&self, af: Af, src: &Addr, random: u64) -> Option<(Option<u16>, Option<Addr>)> {
        let fits = |h: &&RouteHop| h.1.is_none_or(|(a, _)| a == af);
        let count = self.hops.iter().filter(fits).count() as u64;
        if count == 0 {
            return None;
        }
        let i = match self.pool {
            _ if count == 1 => 0,
            PoolType::Random => random % count,
            PoolType::SourceHash(key) => source_hash(src, &key.unwrap_or([0; 16])) % count,
            _ => self.next.fetch_add(1, Ordering::Relaxed) % count,
        };
        let (port, addr) = *self.hops.iter().filter(fits).nth(i as usize)?;
        Some((port, addr.map(|(_, a)| a)))
    }

    /// As pfctl prints it.
    pub fn text(&self) -> &str {
        &self.text
    }
}
