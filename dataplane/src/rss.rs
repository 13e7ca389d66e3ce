//! Flow placement as the NIC does it: the symmetric Toeplitz hash (RSS)
//! and the redirection table (RETA) that map a packet to an rx queue, and
//! so to the worker polling that queue.
//!
//! With ports that spread packets by RSS, a flow's owner is the worker of
//! the queue the NIC picks for it: packets the NIC placed are already on
//! their owner (no handoff), and what the NIC cannot place — ICMP errors
//! quoting a flow, reassembled datagrams, pfsync imports, packets from
//! ports without RSS, the far key of a translated state — is placed here
//! by computing the same hash and table lookup in software.
//!
//! The tuple is the NIC's for the configured hash types (IPv4/IPv6 with
//! TCP and UDP): source and destination addresses, then for TCP and UDP
//! the two ports, in network byte order. The key is the symmetric one
//! (0x6d5a repeated), under which both directions of a flow hash alike;
//! the state table's own hash stays keyed with a secret (hash flooding),
//! so a known RSS key spreads load but cannot overload a bucket chain.
//!
//! The hash is computed a byte at a time from tables built once per key
//! (36 positions × 256 values, the XOR of the key windows each byte
//! selects): a lookup and an XOR per input byte.

use crate::flow::{proto, Addr, Af, FlowKey};

/// The symmetric Toeplitz key: 0x6d5a repeated (52 bytes, what NICs with
/// the longest keys take; the first 40 are what most use).
pub const SYMMETRIC_KEY: [u8; 52] = {
    let mut k = [0u8; 52];
    let mut i = 0;
    while i < 52 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// Longest input: two IPv6 addresses and two ports.
const MAX_INPUT: usize = 36;

/// The Toeplitz hash for one key, table-driven.
#[derive(Clone)]
pub struct Toeplitz {
    /// `tables[p][v]`: the hash contribution of byte value `v` at input
    /// position `p`.
    tables: Box<[[u32; 256]; MAX_INPUT]>,
}

impl std::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Toeplitz")
    }
}

/// The 32 key bits starting at bit `i` (bit 0 = the MSB of byte 0).
fn key_window(key: &[u8], i: usize) -> u32 {
    let mut w = 0u32;
    for b in 0..32 {
        let bit = i + b;
        let byte = key.get(bit / 8).copied().unwrap_or(0);
        let v = (byte >> (7 - bit % 8)) & 1;
        w = (w << 1) | u32::from(v);
    }
    w
}

impl Toeplitz {
    /// The tables for `key` (40 bytes or more: the windows of a 36-byte
    /// input reach byte 39).
    pub fn new(key: &[u8]) -> Toeplitz {
        let mut tables = Box::new([[0u32; 256]; MAX_INPUT]);
        for (p, table) in tables.iter_mut().enumerate() {
            let windows: [u32; 8] = std::array::from_fn(|b| key_window(key, p * 8 + b));
            for (v, slot) in table.iter_mut().enumerate() {
                let mut h = 0;
                for (b, w) in windows.iter().enumerate() {
                    if v & (0x80 >> b) != 0 {
                        h ^= w;
                    }
                }
                *slot = h;
            }
        }
        Toeplitz { tables }
    }

    /// The hash of `input` (at most 36 bytes; more is ignored).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        let mut h = 0;
        for (table, &b) in self.tables.iter().zip(input) {
            h ^= table[usize::from(b)];
        }
        h
    }
}

/// The RSS input of a flow: addresses, then ports for TCP and UDP (the
/// NIC's hash types); its length.
fn tuple(
    af: u8,
    proto_: u8,
    a: &Addr,
    b: &Addr,
    pa: u16,
    pb: u16,
    buf: &mut [u8; MAX_INPUT],
) -> usize {
    let alen = if af == Af::Inet6 as u8 { 16 } else { 4 };
    buf[..alen].copy_from_slice(&a.0[..alen]);
    buf[alen..2 * alen].copy_from_slice(&b.0[..alen]);
    let mut n = 2 * alen;
    if proto_ == proto::TCP || proto_ == proto::UDP {
        buf[n..n + 2].copy_from_slice(&pa.to_be_bytes());
        buf[n + 2..n + 4].copy_from_slice(&pb.to_be_bytes());
        n += 4;
    }
    n
}

/// Where packets go: the hash, a redirection table common to every RSS
/// port (entry `i` of a port's table is entry `i % len` here), and the
/// worker of each queue (queue `q` is polled by worker `q`).
#[derive(Clone, Debug)]
pub struct RssPlacement {
    toeplitz: Toeplitz,
    reta: Box<[u16]>,
    mask: u32,
}

impl RssPlacement {
    /// `key` and a redirection table whose length is a power of two.
    pub fn new(key: &[u8], reta: Vec<u16>) -> Result<RssPlacement, String> {
        if reta.is_empty() || !reta.len().is_power_of_two() {
            return Err(format!(
                "a redirection table of {} entries (a power of two is needed)",
                reta.len()
            ));
        }
        if key.len() < 40 {
            return Err(format!("an RSS key of {} bytes (40 at least)", key.len()));
        }
        Ok(RssPlacement {
            toeplitz: Toeplitz::new(key),
            mask: reta.len() as u32 - 1,
            reta: reta.into_boxed_slice(),
        })
    }

    /// The symmetric key and the table DPDK drivers start with (entry `i`
    /// → queue `i % queues`), `len` entries.
    pub fn default_for(queues: u16, len: usize) -> RssPlacement {
        let reta = (0..len)
            .map(|i| (i % usize::from(queues.max(1))) as u16)
            .collect();
        RssPlacement::new(&SYMMETRIC_KEY, reta).expect("a power-of-two table and a 52-byte key")
    }

    /// The redirection table.
    pub fn reta(&self) -> &[u16] {
        &self.reta
    }

    /// The queue of an RSS hash.
    #[inline]
    pub fn queue_of_hash(&self, hash: u32) -> u16 {
        self.reta[(hash & self.mask) as usize]
    }

    /// The RSS hash of a flow, as the NIC computes it for its packets.
    #[inline]
    pub fn hash_key(&self, key: &FlowKey) -> u32 {
        let mut buf = [0u8; MAX_INPUT];
        let n = tuple(
            key.af,
            key.proto,
            &key.addr[0],
            &key.addr[1],
            key.port[0],
            key.port[1],
            &mut buf,
        );
        self.toeplitz.hash(&buf[..n])
    }

    /// The worker owning a flow: the queue its packets are received on.
    #[inline]
    pub fn owner(&self, key: &FlowKey) -> usize {
        usize::from(self.queue_of_hash(self.hash_key(key)))
    }

    /// The queue a NIC placing by this table puts `frame` on: TCP and UDP
    /// by their 4-tuple, fragments and other IP by their addresses, what is
    /// not IP (hash 0) by entry 0.
    pub fn queue_of_frame(&self, frame: &[u8]) -> u16 {
        use crate::flow::{Direction, IfIndex};
        use crate::wire::{classify, Classified, FrameKind};
        match classify(frame, IfIndex(0), Direction::In) {
            Ok(Classified {
                kind: FrameKind::Ip { info, fragment, .. },
                ..
            }) => {
                if fragment {
                    self.owner_of_addrs(info.af, &info.src, &info.dst) as u16
                } else {
                    self.owner(&info.key().0) as u16
                }
            }
            _ => self.queue_of_hash(0),
        }
    }

    /// The worker of a packet hashed on its addresses alone (IP fragments,
    /// protocols without ports).
    #[inline]
    pub fn owner_of_addrs(&self, af: Af, src: &Addr, dst: &Addr) -> usize {
        let mut buf = [0u8; MAX_INPUT];
        let n = tuple(af as u8, 0, src, dst, 0, 0, &mut buf);
        usize::from(self.queue_of_hash(self.toeplitz.hash(&buf[..n])))
    }
}

/// How the box decides which worker owns a flow.
#[derive(Clone, Debug, Default)]
pub enum Placement {
    /// The keyed symmetric hash of the flow (ports without RSS).
    #[default]
    Hash,
    /// The NIC's: symmetric Toeplitz and the redirection table; packets
    /// from the ports in `placed` (a bit per port) arrive on their owner.
    Rss {
        /// Hash, table and queue → worker.
        rss: std::sync::Arc<RssPlacement>,
        /// Ports whose queues the device fills by `rss`.
        placed: u64,
    },
}

impl Placement {
    /// The owner of the flow `key` (`hash`: its [`FlowKey::symmetric_hash`])
    /// among `workers`.
    #[inline]
    pub fn owner(&self, key: &FlowKey, hash: u64, workers: usize) -> usize {
        match self {
            Placement::Hash => Placement::hash_owner(hash, workers),
            _ if workers <= 1 => 0,
            Placement::Rss { rss, .. } => rss.owner(key) % workers,
        }
    }

    /// The owner under [`Placement::Hash`] of a flow whose
    /// [`FlowKey::symmetric_hash`] is `hash`.
    #[inline(always)]
    pub fn hash_owner(hash: u64, workers: usize) -> usize {
        if workers <= 1 {
            return 0;
        }
        ((hash >> 32) % workers as u64) as usize
    }

    /// Whether the device puts packets received on `port` on their
    /// owner's queue already.
    #[inline]
    pub fn places(&self, port: u16) -> bool {
        match self {
            Placement::Hash => false,
            Placement::Rss { placed, .. } => port < 64 && placed & (1 << port) != 0,
        }
    }

    /// The owner of an IP fragment's datagram: by its addresses under RSS
    /// (as the NIC hashes fragments), else by `datagram_hash`.
    #[inline]
    pub fn fragment_owner(
        &self,
        af: Af,
        src: &Addr,
        dst: &Addr,
        datagram_hash: u64,
        workers: usize,
    ) -> usize {
        if workers <= 1 {
            return 0;
        }
        match self {
            Placement::Hash => ((datagram_hash >> 32) % workers as u64) as usize,
            Placement::Rss { rss, .. } => rss.owner_of_addrs(af, src, dst) % workers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Toeplitz bit by bit, as the definition reads.
    fn reference(key: &[u8], input: &[u8]) -> u32 {
        let mut h = 0;
        for (i, byte) in input.iter().enumerate() {
            for b in 0..8 {
                if byte & (0x80 >> b) != 0 {
                    h ^= key_window(key, i * 8 + b);
                }
            }
        }
        h
    }

    /// Microsoft's RSS verification key.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    #[test]
    fn microsofts_verification_vectors() {
        // Source 66.9.149.187:2794, destination 161.142.100.80:1766.
        let t = Toeplitz::new(&MS_KEY);
        let ip = [66, 9, 149, 187, 161, 142, 100, 80];
        assert_eq!(t.hash(&ip), 0x323e_8fc2);
        let mut l4 = ip.to_vec();
        l4.extend_from_slice(&2794u16.to_be_bytes());
        l4.extend_from_slice(&1766u16.to_be_bytes());
        assert_eq!(t.hash(&l4), 0x51cc_c178);
        // Source 199.92.111.2:14230, destination 65.69.140.83:4739.
        let ip2 = [199, 92, 111, 2, 65, 69, 140, 83];
        assert_eq!(t.hash(&ip2), 0xd718_262a);
        let mut l4b = ip2.to_vec();
        l4b.extend_from_slice(&14230u16.to_be_bytes());
        l4b.extend_from_slice(&4739u16.to_be_bytes());
        assert_eq!(t.hash(&l4b), 0xc626_b0ea);
    }

    #[test]
    fn the_tables_compute_the_definition() {
        let t = Toeplitz::new(&SYMMETRIC_KEY);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..=MAX_INPUT {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert_eq!(t.hash(&input), reference(&SYMMETRIC_KEY, &input), "{len}");
            assert_eq!(
                Toeplitz::new(&MS_KEY).hash(&input),
                reference(&MS_KEY, &input)
            );
        }
    }

    #[test]
    fn both_directions_of_a_flow_have_one_owner() {
        let p = RssPlacement::default_for(4, 128);
        for (af, a, b) in [
            (Af::Inet, Addr::v4([10, 0, 0, 1]), Addr::v4([192, 0, 2, 9])),
            (
                Af::Inet6,
                Addr([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                Addr([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99, 2]),
            ),
        ] {
            for pr in [proto::TCP, proto::UDP, proto::ICMP] {
                for port in [1u16, 80, 40000, 65535] {
                    let (k1, _) = FlowKey::from_packet(af, pr, a, port, b, 53);
                    let (k2, _) = FlowKey::from_packet(af, pr, b, 53, a, port);
                    assert_eq!(p.hash_key(&k1), p.hash_key(&k2));
                    // And the raw tuple either way round, as a NIC sees it.
                    let mut fwd = [0u8; MAX_INPUT];
                    let mut rev = [0u8; MAX_INPUT];
                    let n = tuple(af as u8, pr, &a, &b, port, 53, &mut fwd);
                    tuple(af as u8, pr, &b, &a, 53, port, &mut rev);
                    assert_eq!(p.toeplitz.hash(&fwd[..n]), p.toeplitz.hash(&rev[..n]));
                    assert_eq!(p.toeplitz.hash(&fwd[..n]), p.hash_key(&k1));
                }
            }
        }
    }

    #[test]
    fn flows_spread_over_every_queue() {
        let p = RssPlacement::default_for(4, 512);
        let mut counts = [0u32; 4];
        for i in 0..4000u32 {
            let (k, _) = FlowKey::from_packet(
                Af::Inet,
                proto::UDP,
                Addr::v4([198, 18, (i >> 8) as u8, i as u8]),
                1024 + (i % 1000) as u16,
                Addr::v4([198, 19, 0, 1]),
                9,
            );
            counts[p.owner(&k)] += 1;
        }
        assert!(counts.iter().all(|c| *c > 700), "{counts:?}");
    }

    #[test]
    fn a_table_must_be_a_power_of_two_and_the_key_long_enough() {
        assert!(RssPlacement::new(&SYMMETRIC_KEY, vec![0; 100]).is_err());
        assert!(RssPlacement::new(&SYMMETRIC_KEY[..20], vec![0; 64]).is_err());
        assert!(RssPlacement::new(&SYMMETRIC_KEY, vec![0, 1, 0, 1]).is_ok());
    }
}
