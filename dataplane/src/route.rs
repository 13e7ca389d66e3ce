//! Router mode's tables: the box's interfaces and addresses, static routes
//! with longest-prefix match, and the neighbour table. All are immutable
//! snapshots: the control thread builds a new one and swaps it in
//! ([`crate::snapshot::Snapshot`]); workers read them without locks and
//! without allocating.

use crate::flow::{Addr, Af};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Most VHIDs per port (vhid 0 is unused).
const VHIDS: usize = 256;

/// A CARP virtual address: on `port`, owned by `vhid` when MASTER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vip {
    /// Family.
    pub af: Af,
    /// The address.
    pub addr: Addr,
    /// Its carpdev.
    pub port: u16,
    /// Its VHID.
    pub vhid: u8,
}

/// CARP virtual addresses and, per (port, vhid), whether this box is
/// MASTER: single atomics the control thread writes and workers read per
/// packet (a relaxed load of a bool that stays in cache).
#[derive(Debug)]
pub struct VipTable {
    vips: Vec<Vip>,
    master: Vec<[AtomicBool; VHIDS]>,
}

impl Default for VipTable {
    fn default() -> Self {
        VipTable::new(Vec::new(), 0)
    }
}

impl VipTable {
    /// A table of `vips` on `ports` ports, nothing MASTER.
    pub fn new(mut vips: Vec<Vip>, ports: usize) -> VipTable {
        // Sorted by (family, address): the per-packet lookup is a binary
        // search (255 dual-stack VHIDs are 765 addresses).
        vips.sort_by_key(|v| (v.af, v.addr));
        VipTable {
            vips,
            master: (0..ports)
                .map(|_| std::array::from_fn(|_| AtomicBool::new(false)))
                .collect(),
        }
    }

    /// The VIP `addr`, if it is one.
    #[inline]
    pub fn lookup(&self, af: Af, addr: &Addr) -> Option<Vip> {
        self.vips
            .binary_search_by(|v| (v.af, v.addr).cmp(&(af, *addr)))
            .ok()
            .and_then(|i| self.vips.get(i))
            .copied()
    }

    /// Every VIP.
    pub fn iter(&self) -> impl Iterator<Item = &Vip> {
        self.vips.iter()
    }

    /// Whether this box is MASTER for `vhid` on `port`.
    #[inline(always)]
    pub fn is_master(&self, port: u16, vhid: u8) -> bool {
        self.master
            .get(port as usize)
            .is_some_and(|m| m[vhid as usize].load(Ordering::Acquire))
    }

    /// Sets MASTER ownership (control thread).
    pub fn set_master(&self, port: u16, vhid: u8, owner: bool) {
        if let Some(m) = self.master.get(port as usize) {
            m[vhid as usize].store(owner, Ordering::Release);
        }
    }
}

/// The VHID of a CARP virtual MAC `00:00:5e:00:01:<vhid>`.
#[inline(always)]
pub fn vmac_vhid(mac: &[u8; 6]) -> Option<u8> {
    (mac[..5] == [0x00, 0x00, 0x5e, 0x00, 0x01]).then_some(mac[5])
}

/// A prefix of an address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// Family.
    pub af: Af,
    /// Network address (host bits zero).
    pub addr: Addr,
    /// Prefix length.
    pub len: u8,
}

impl Prefix {
    /// The prefix of `len` bits containing `addr` (host bits cleared).
    pub fn new(af: Af, addr: Addr, len: u8) -> Prefix {
        Prefix {
            af,
            addr: mask(addr, len),
            len,
        }
    }

    /// Whether `addr` (of family `af`) is inside the prefix.
    #[inline]
    pub fn contains(&self, af: Af, addr: &Addr) -> bool {
        af == self.af && mask(*addr, self.len) == self.addr
    }
}

/// `addr` with all but the first `len` bits cleared.
#[inline]
pub fn mask(addr: Addr, len: u8) -> Addr {
    let mut out = [0u8; 16];
    let full = (len / 8) as usize;
    out[..full.min(16)].copy_from_slice(&addr.0[..full.min(16)]);
    if full < 16 && !len.is_multiple_of(8) {
        out[full] = addr.0[full] & (0xffu8 << (8 - len % 8));
    }
    Addr(out)
}

/// One address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: Addr,
    /// Its subnet.
    pub prefix: Prefix,
}

/// An interface as the router sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Name (`lan0`).
    pub name: String,
    /// Its MAC.
    pub mac: [u8; 6],
    /// MTU of its link.
    pub mtu: u16,
    /// Its addresses.
    pub addrs: Vec<IfAddr>,
}

/// A route: packets to `prefix` leave on `port`, to `via` or (connected)
/// straight to their destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub prefix: Prefix,
    /// Egress port.
    pub port: u16,
    /// Next hop, `None` for a connected route.
    pub via: Option<Addr>,
}

/// Where a routed packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Egress port.
    pub port: u16,
    /// The neighbour to send it to.
    pub addr: Addr,
}

/// The interfaces and routes of the box (changes only with the config).
#[derive(Clone, Debug, Default)]
pub struct Routing {
    /// Interfaces by port index.
    pub interfaces: Vec<Interface>,
    /// Routes, longest prefix first within each family.
    routes: Vec<Route>,
    /// CARP virtual addresses and ownership.
    pub vips: Arc<VipTable>,
}

impl Routing {
    /// Builds the table: a connected route per interface address plus the
    /// static `routes`.
    pub fn new(interfaces: Vec<Interface>, routes: Vec<Route>) -> Routing {
        let mut all = Vec::new();
        for (port, i) in interfaces.iter().enumerate() {
            for a in &i.addrs {
                all.push(Route {
                    prefix: a.prefix,
                    port: port as u16,
                    via: None,
                });
            }
        }
        all.extend(routes);
        // Longest prefix first; connected routes before static ones of the
        // same length (stable sort keeps insertion order).
        all.sort_by_key(|r| std::cmp::Reverse(r.prefix.len));
        Routing {
            interfaces,
            routes: all,
            vips: Arc::new(VipTable::default()),
        }
    }

    /// The same with CARP virtual addresses.
    pub fn with_vips(mut self, vips: Arc<VipTable>) -> Routing {
        self.vips = vips;
        self
    }

    /// Longest-prefix match for `dst`.
    #[inline]
    pub fn lookup(&self, af: Af, dst: &Addr) -> Option<NextHop> {
        self.routes
            .iter()
            .find(|r| r.prefix.contains(af, dst))
            .map(|r| NextHop {
                port: r.port,
                addr: r.via.unwrap_or(*dst),
            })
    }

    /// The routes, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The port that owns address `addr`, if it is one of ours.
    #[inline]
    pub fn owner_of(&self, af: Af, addr: &Addr) -> Option<u16> {
        self.interfaces
            .iter()
            .position(|i| i.addrs.iter().any(|a| a.prefix.af == af && a.addr == *addr))
            .map(|p| p as u16)
    }

    /// An address of `port` in family `af` (the source of what the box
    /// sends there).
    pub fn address_on(&self, port: u16, af: Af) -> Option<Addr> {
        self.interfaces
            .get(port as usize)?
            .addrs
            .iter()
            .find(|a| a.prefix.af == af)
            .map(|a| a.addr)
    }

    /// The MAC of `port`.
    #[inline]
    pub fn mac(&self, port: u16) -> Option<[u8; 6]> {
        self.interfaces.get(port as usize).map(|i| i.mac)
    }
}

/// A resolved neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    /// Its MAC.
    pub mac: [u8; 6],
    /// The port it is on.
    pub port: u16,
}

/// A neighbour keyed by its address (a static entry, a table row).
pub type NeighborEntry = ((Af, Addr), Neighbor);

/// The neighbour table's hash: a folded multiply per 8-byte word, keyed
/// with the process's flow-hash secret as the table is built
/// ([`crate::flow::set_hash_secret`]), so the addresses an outsider can
/// make the box resolve cannot be chosen to collide, at a fraction of
/// SipHash's cost (every routed packet looks its next hop up).
#[derive(Clone, Copy, Debug)]
pub struct NeighborHash {
    seed: u64,
    key: u64,
}

impl Default for NeighborHash {
    fn default() -> Self {
        let s = crate::flow::hash_secret();
        NeighborHash {
            seed: s.0[0] ^ s.0[2],
            key: s.0[1] | 1,
        }
    }
}

impl std::hash::BuildHasher for NeighborHash {
    type Hasher = NeighborHasher;
    #[inline]
    fn build_hasher(&self) -> NeighborHasher {
        NeighborHasher {
            h: self.seed,
            key: self.key,
        }
    }
}

/// The hasher of [`NeighborHash`].
#[derive(Clone, Copy, Debug)]
pub struct NeighborHasher {
    h: u64,
    key: u64,
}

impl NeighborHasher {
    #[inline(always)]
    fn mix(&mut self, word: u64) {
        self.h = crate::flow::fold_mul(self.h ^ word, self.key);
    }
}

impl std::hash::Hasher for NeighborHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.mix(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.mix(u64::from(v));
    }

    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.mix(u64::from(v));
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.mix(u64::from(v));
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.mix(v);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.mix(v as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        crate::flow::fold_mul(self.h, self.key ^ 0x9e37_79b9_7f4a_7c15)
    }
}

/// Resolved neighbours, published by the control thread.
#[derive(Clone, Debug, Default)]
pub struct Neighbors {
    map: HashMap<(Af, Addr), Neighbor, NeighborHash>,
}

impl Neighbors {
    /// A table with these entries.
    pub fn new(entries: impl IntoIterator<Item = ((Af, Addr), Neighbor)>) -> Neighbors {
        Neighbors {
            map: entries.into_iter().collect(),
        }
    }

    /// The neighbour `addr`, if resolved.
    #[inline]
    pub fn get(&self, af: Af, addr: &Addr) -> Option<Neighbor> {
        self.map.get(&(af, *addr)).copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every entry.
    pub fn iter(&self) -> impl Iterator<Item = (&(Af, Addr), &Neighbor)> {
        self.map.iter()
    }
}

/// A worker asking the control thread to resolve a next hop it had no
/// neighbour entry for (the packet was dropped and counted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolveRequest {
    /// Family.
    pub af: Af,
    /// The next hop.
    pub addr: Addr,
    /// The port it should be on.
    pub port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyed_neighbour_table_finds_every_entry_of_a_dense_subnet() {
        let entries: Vec<NeighborEntry> = (0..65_536u32)
            .map(|i| {
                let b = i.to_be_bytes();
                let n = Neighbor {
                    mac: [2, 0, 0, 0, b[2], b[3]],
                    port: 1,
                };
                ((Af::Inet, Addr::v4([10, 7, b[2], b[3]])), n)
            })
            .collect();
        let t = Neighbors::new(entries);
        assert_eq!(t.len(), 65_536);
        for i in (0..65_536u32).step_by(97) {
            let b = i.to_be_bytes();
            let got = t.get(Af::Inet, &Addr::v4([10, 7, b[2], b[3]]));
            assert_eq!(got.map(|n| n.mac), Some([2, 0, 0, 0, b[2], b[3]]));
        }
        assert_eq!(t.get(Af::Inet6, &Addr::v4([10, 7, 0, 1])), None);
        assert_eq!(t.get(Af::Inet, &Addr::v4([10, 8, 0, 1])), None);
    }

    fn v4(a: [u8; 4]) -> Addr {
        Addr::v4(a)
    }

    #[test]
    fn vip_lookup_finds_every_address_of_both_families() {
        let mut vips = Vec::new();
        for vhid in 1..=255u8 {
            vips.push(Vip {
                af: Af::Inet,
                addr: v4([10, 0, 1, 255 - vhid]),
                port: 0,
                vhid,
            });
            let mut a6 = [0u8; 16];
            a6[0] = 0x20;
            a6[15] = vhid;
            vips.push(Vip {
                af: Af::Inet6,
                addr: Addr::v6(a6),
                port: 1,
                vhid,
            });
        }
        let table = VipTable::new(vips.clone(), 2);
        for v in &vips {
            assert_eq!(table.lookup(v.af, &v.addr), Some(*v));
        }
        assert_eq!(table.lookup(Af::Inet, &v4([10, 0, 2, 1])), None);
        // The same bytes in the other family are not a VIP.
        assert_eq!(table.lookup(Af::Inet6, &v4([10, 0, 1, 254])), None);
    }

    fn routing() -> Routing {
        let lan = Interface {
            name: "lan0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            mtu: 1500,
            addrs: vec![IfAddr {
                addr: v4([10, 1, 0, 1]),
                prefix: Prefix::new(Af::Inet, v4([10, 1, 0, 1]), 24),
            }],
        };
        let wan = Interface {
            name: "wan0".into(),
            mac: [2, 0, 0, 0, 0, 2],
            mtu: 1500,
            addrs: vec![IfAddr {
                addr: v4([10, 2, 0, 1]),
                prefix: Prefix::new(Af::Inet, v4([10, 2, 0, 1]), 24),
            }],
        };
        Routing::new(
            vec![lan, wan],
            vec![
                Route {
                    prefix: Prefix::new(Af::Inet, Addr::ZERO, 0),
                    port: 1,
                    via: Some(v4([10, 2, 0, 254])),
                },
                Route {
                    prefix: Prefix::new(Af::Inet, v4([172, 16, 0, 0]), 12),
                    port: 0,
                    via: Some(v4([10, 1, 0, 254])),
                },
            ],
        )
    }

    #[test]
    fn longest_prefix_wins() {
        let r = routing();
        assert_eq!(
            r.lookup(Af::Inet, &v4([10, 1, 0, 9])),
            Some(NextHop {
                port: 0,
                addr: v4([10, 1, 0, 9])
            })
        );
        assert_eq!(
            r.lookup(Af::Inet, &v4([172, 20, 1, 1])),
            Some(NextHop {
                port: 0,
                addr: v4([10, 1, 0, 254])
            })
        );
        assert_eq!(
            r.lookup(Af::Inet, &v4([8, 8, 8, 8])),
            Some(NextHop {
                port: 1,
                addr: v4([10, 2, 0, 254])
            })
        );
        assert_eq!(
            r.lookup(
                Af::Inet6,
                &Addr::v6([0x20, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
            ),
            None
        );
    }

    #[test]
    fn masks_and_ownership() {
        assert_eq!(mask(v4([10, 1, 2, 3]), 12), v4([10, 0, 0, 0]));
        assert_eq!(mask(v4([10, 255, 2, 3]), 12), v4([10, 240, 0, 0]));
        let r = routing();
        assert_eq!(r.owner_of(Af::Inet, &v4([10, 2, 0, 1])), Some(1));
        assert_eq!(r.owner_of(Af::Inet, &v4([10, 2, 0, 2])), None);
        assert_eq!(r.address_on(0, Af::Inet), Some(v4([10, 1, 0, 1])));
    }
}
