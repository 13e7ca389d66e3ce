//! Flow identity: addresses, the direction-independent state key, the
//! symmetric flow hash that picks a packet's owning worker, and
//! [`PacketInfo`], the parsed summary of one packet that rules and state
//! tracking decide on.
//!
//! Invariants: both directions of a connection produce the same [`FlowKey`]
//! and the same [`FlowKey::symmetric_hash`]; `PacketInfo` holds everything a
//! decision needs, so deciding never re-reads packet bytes.
//!
//! The hash is keyed with a per-process secret ([`set_hash_secret`], set
//! once by the daemon from the OS RNG before any state exists and before
//! the workers start): with fixed constants, 5-tuples that share a bucket
//! are found offline in milliseconds and a SYN flood of them turns every
//! state lookup into a walk. Hashes are therefore only meaningful inside
//! one process: they pick the owning worker and the shard bucket, and are
//! never stored outside the shard, sent to a peer or compared across boxes.
//! Until the secret is set the key is a fixed default (tests, benches).

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Address family, with OpenBSD's numeric values (as carried by pfsync).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[repr(u8)]
pub enum Af {
    /// IPv4 (`AF_INET` = 2).
    Inet = 2,
    /// IPv6 (`AF_INET6` = 24 on OpenBSD).
    Inet6 = 24,
}

/// An IPv4 or IPv6 address in 16 bytes. IPv4 occupies the first 4 bytes and
/// the remaining 12 are zero (pf's `pf_addr` layout), so a key is the same
/// size for both families.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr(pub [u8; 16]);

impl Addr {
    /// The all-zero address.
    pub const ZERO: Addr = Addr([0; 16]);

    /// An IPv4 address.
    pub const fn v4(octets: [u8; 4]) -> Addr {
        // The octets, then zeros: one 128-bit value (not sixteen stores).
        Addr((u32::from_le_bytes(octets) as u128).to_le_bytes())
    }

    /// An IPv6 address.
    pub const fn v6(octets: [u8; 16]) -> Addr {
        Addr(octets)
    }

    /// The first four bytes, meaningful for an IPv4 address.
    pub fn v4_octets(&self) -> [u8; 4] {
        [self.0[0], self.0[1], self.0[2], self.0[3]]
    }

    /// Converts to `std::net::IpAddr` for display.
    pub fn to_ip(&self, af: Af) -> std::net::IpAddr {
        match af {
            Af::Inet => std::net::IpAddr::V4(self.v4_octets().into()),
            Af::Inet6 => std::net::IpAddr::V6(self.0.into()),
        }
    }

    /// From a `std::net::IpAddr`, with its family.
    pub fn from_ip(ip: std::net::IpAddr) -> (Af, Addr) {
        match ip {
            std::net::IpAddr::V4(v4) => (Af::Inet, Addr::v4(v4.octets())),
            std::net::IpAddr::V6(v6) => (Af::Inet6, Addr::v6(v6.octets())),
        }
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0[4..].iter().all(|b| *b == 0) {
            write!(f, "{}", std::net::Ipv4Addr::from(self.v4_octets()))
        } else {
            write!(f, "{}", std::net::Ipv6Addr::from(self.0))
        }
    }
}

/// Direction of a packet relative to the interface it is evaluated on
/// (pf's `in` / `out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[repr(u8)]
pub enum Direction {
    /// Received on the interface.
    In = 1,
    /// Transmitted on the interface.
    Out = 2,
}

/// Index of an interface (a DPDK port in dpf's configuration order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
pub struct IfIndex(pub u16);

/// IP protocol numbers dpf names.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// CARP (shares VRRP's number).
    pub const CARP: u8 = 112;
    /// pfsync.
    pub const PFSYNC: u8 = 240;
}

/// TCP flag bits as in the TCP header's 13th byte.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
    /// ECE.
    pub const ECE: u8 = 0x40;
    /// CWR.
    pub const CWR: u8 = 0x80;
}

/// The direction-independent identity of a connection: pf's state key.
///
/// `addr[0]:port[0]` is the lower endpoint of the two, so the two directions
/// of one connection build the same key; [`FlowKey::from_packet`] tells
/// which side the packet came from. For ICMP queries both ports hold the
/// ICMP identifier (pf's convention).
// `PartialEq` is written out for speed but compares every field, exactly as
// the derive would, so the derived `Hash` agrees with it.
#[allow(clippy::derived_hash_with_manual_eq)]
#[derive(Clone, Copy, Eq, Hash, Default)]
#[repr(C)]
pub struct FlowKey {
    /// The two endpoint addresses, lower first.
    pub addr: [Addr; 2],
    /// The two ports, in the order of `addr`.
    pub port: [u16; 2],
    /// Routing domain (pf's `rdomain`; dpf has one, 0). Kept so the key
    /// matches `pfsync_state_key` byte for byte.
    pub rdomain: u16,
    /// Address family as its OpenBSD number (2 or 24); 0 in an empty key.
    pub af: u8,
    /// IP protocol.
    pub proto: u8,
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

const _: () = assert!(core::mem::offset_of!(FlowKey, port) == 32);

impl FlowKey {
    /// Bytes 32..40 of the key (`port`, `rdomain`, `af`, `proto`) as one
    /// word, for comparisons.
    #[inline(always)]
    fn tail_word(&self) -> u64 {
        // SAFETY: `FlowKey` is `repr(C)`, 40 bytes with `port` at 32
        // (asserted above) and no padding (2 + 2 + 2 + 1 + 1 bytes follow
        // the addresses), so bytes 32..40 are initialised and in bounds;
        // the read is unaligned-tolerant.
        unsafe {
            core::ptr::read_unaligned((self as *const FlowKey).cast::<u8>().add(32).cast::<u64>())
        }
    }
}

impl FlowKey {
    /// Whether this is the key of the IPv4 flow whose canonical endpoints
    /// are `lo:lo_port` (`addr[0]`) and `hi:hi_port`: [`FlowKey::from_v4`]'s
    /// key compared without building it.
    #[inline(always)]
    pub fn is_v4_flow(
        &self,
        proto: u8,
        lo: [u8; 4],
        lo_port: u16,
        hi: [u8; 4],
        hi_port: u16,
    ) -> bool {
        let tail = FlowKey {
            addr: [Addr::ZERO; 2],
            port: [lo_port, hi_port],
            rdomain: 0,
            af: Af::Inet as u8,
            proto,
        }
        .tail_word();
        (u128::from_ne_bytes(self.addr[0].0) ^ u128::from_ne_bytes(Addr::v4(lo).0))
            | (u128::from_ne_bytes(self.addr[1].0) ^ u128::from_ne_bytes(Addr::v4(hi).0))
            | (self.tail_word() ^ tail) as u128
            == 0
    }
}

impl PartialEq for FlowKey {
    /// Field-wise equality in three wide compares (state lookups compare a
    /// key per candidate).
    #[inline]
    fn eq(&self, other: &FlowKey) -> bool {
        (u128::from_ne_bytes(self.addr[0].0) ^ u128::from_ne_bytes(other.addr[0].0))
            | (u128::from_ne_bytes(self.addr[1].0) ^ u128::from_ne_bytes(other.addr[1].0))
            | (self.tail_word() ^ other.tail_word()) as u128
            == 0
    }
}

impl fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "proto {} {:?}:{} <-> {:?}:{}",
            self.proto, self.addr[0], self.port[0], self.addr[1], self.port[1]
        )
    }
}

impl FlowKey {
    /// Builds the key of a packet going `src:sport -> dst:dport`, and returns
    /// whether the source is `addr[0]` (`false`) or `addr[1]` (`true`).
    #[inline]
    pub fn from_packet(
        af: Af,
        proto: u8,
        src: Addr,
        sport: u16,
        dst: Addr,
        dport: u16,
    ) -> (FlowKey, bool) {
        // Big-endian integers order like the byte arrays, in two compares
        // instead of a byte-wise memcmp.
        let (s, d) = (u128::from_be_bytes(src.0), u128::from_be_bytes(dst.0));
        let swapped = d < s || (d == s && dport < sport);
        let (a0, p0, a1, p1) = if swapped {
            (dst, dport, src, sport)
        } else {
            (src, sport, dst, dport)
        };
        (
            FlowKey {
                addr: [a0, a1],
                port: [p0, p1],
                rdomain: 0,
                af: af as u8,
                proto,
            },
            swapped,
        )
    }

    /// [`FlowKey::from_packet`] for IPv4 (`af` inet), ordering the
    /// endpoints with 32-bit compares.
    #[inline(always)]
    pub fn from_v4(
        proto: u8,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
    ) -> (FlowKey, bool) {
        let ((a0, p0, a1, p1), swapped) = v4_order(src, sport, dst, dport);
        (
            FlowKey {
                addr: [Addr::v4(a0.to_be_bytes()), Addr::v4(a1.to_be_bytes())],
                port: [p0, p1],
                rdomain: 0,
                af: Af::Inet as u8,
                proto,
            },
            swapped,
        )
    }

    /// The address family of a non-empty key.
    pub fn family(&self) -> Af {
        if self.af == Af::Inet6 as u8 {
            Af::Inet6
        } else {
            Af::Inet
        }
    }

    /// A hash that is the same for both directions of a connection (the key
    /// is already canonical), keyed with the process's secret
    /// ([`set_hash_secret`]). It picks the owning worker (`hash >> 32`,
    /// see [`FlowKey::owner`]) and the bucket in that worker's shard (the
    /// low half), so it must mix all bits well.
    #[inline]
    pub fn symmetric_hash(&self) -> u64 {
        self.symmetric_hash_with(&hash_secret())
    }

    /// [`FlowKey::symmetric_hash`] under an explicit `secret` (tests and
    /// benchmarks compare keys; the fast path uses the process's secret).
    #[inline]
    pub fn symmetric_hash_with(&self, secret: &HashSecret) -> u64 {
        let word = |a: &Addr, half: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&a.0[half * 8..half * 8 + 8]);
            u64::from_le_bytes(w)
        };
        let [k0, k1, k2, k3, k4, k5] = secret.0;
        let ports = (self.port[0] as u64) << 16 | self.port[1] as u64;
        let meta = (self.proto as u64) << 8 | self.af as u64;
        // Two independent folded multiplies over the four address words
        // (they run in parallel), then one over their sum with the ports:
        // three multiplies on the critical path instead of five
        // finaliser rounds. Every input word is xored with a secret word
        // before it is multiplied (wyhash's keying).
        let a = fold_mul(word(&self.addr[0], 0) ^ k0, word(&self.addr[1], 0) ^ k1);
        let b = fold_mul(word(&self.addr[0], 1) ^ k2, word(&self.addr[1], 1) ^ k3);
        fold_mul(a ^ ports ^ k4, b ^ (meta << 32) ^ k5)
    }

    /// The symmetric hash under `secret` and the canonical order of an
    /// IPv4 flow `src:sport -> dst:dport`, without building its key: the
    /// [`FlowKey::symmetric_hash_with`] of [`FlowKey::from_v4`]'s key (whose
    /// address words past the first four bytes are zero, so their multiply
    /// is the secret's alone), and whether the source is `addr[1]`. The
    /// burst pass loads the secret once per burst.
    #[inline(always)]
    pub fn v4_hash_with(
        secret: &HashSecret,
        proto: u8,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
    ) -> (u64, bool) {
        let ((a0, p0, a1, p1), swapped) = v4_order(src, sport, dst, dport);
        let [k0, k1, k2, k3, k4, k5] = secret.0;
        // The general hash reads the address bytes little-endian.
        let word = |a: u32| u64::from(a.swap_bytes());
        let ports = (p0 as u64) << 16 | p1 as u64;
        let meta = (proto as u64) << 8 | Af::Inet as u64;
        let a = fold_mul(word(a0) ^ k0, word(a1) ^ k1);
        let b = fold_mul(k2, k3);
        (fold_mul(a ^ ports ^ k4, b ^ (meta << 32) ^ k5), swapped)
    }
}

/// The canonical order of an IPv4 flow's endpoints (lower address, then
/// lower port, first), as big-endian integers, and whether the source
/// came second.
#[inline(always)]
fn v4_order(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> ((u32, u16, u32, u16), bool) {
    let (s, d) = (u32::from_be_bytes(src), u32::from_be_bytes(dst));
    let swapped = d < s || (d == s && dport < sport);
    if swapped {
        ((d, dport, s, sport), true)
    } else {
        ((s, sport, d, dport), false)
    }
}

/// Number of 64-bit words in a [`HashSecret`].
pub const HASH_SECRET_WORDS: usize = 6;

/// The key of the symmetric flow hash: six 64-bit words, one per input
/// word of the hash.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashSecret(pub [u64; HASH_SECRET_WORDS]);

impl HashSecret {
    /// The key in force until [`set_hash_secret`] is called (fixed, so
    /// tests and benchmarks are deterministic; never for a daemon).
    pub const DEFAULT: HashSecret = HashSecret([K0, K1, K2, K3, K4, K5]);
}

impl fmt::Debug for HashSecret {
    /// Never prints the words: a secret in a log is no longer one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashSecret(..)")
    }
}

/// The process's flow hash key. Written once at start, read by every
/// worker on every packet: Relaxed loads of words that do not change
/// compile to plain loads from a line that stays in every core's cache.
static HASH_SECRET: [AtomicU64; HASH_SECRET_WORDS] = [
    AtomicU64::new(K0),
    AtomicU64::new(K1),
    AtomicU64::new(K2),
    AtomicU64::new(K3),
    AtomicU64::new(K4),
    AtomicU64::new(K5),
];

/// Keys the flow hash of this process with `secret` (the daemon passes
/// words from the OS RNG).
///
/// Call it once at start, before any shard holds a state and before the
/// workers run: a state inserted under one key cannot be found under
/// another. The workers are started after it (thread creation orders the
/// stores before their loads), so Relaxed stores suffice.
pub fn set_hash_secret(secret: [u64; HASH_SECRET_WORDS]) {
    for (slot, word) in HASH_SECRET.iter().zip(secret) {
        slot.store(word, Ordering::Relaxed);
    }
}

/// The key the flow hash of this process uses now.
#[inline(always)]
pub fn hash_secret() -> HashSecret {
    let [k0, k1, k2, k3, k4, k5] = &HASH_SECRET;
    HashSecret([
        k0.load(Ordering::Relaxed),
        k1.load(Ordering::Relaxed),
        k2.load(Ordering::Relaxed),
        k3.load(Ordering::Relaxed),
        k4.load(Ordering::Relaxed),
        k5.load(Ordering::Relaxed),
    ])
}

/// A keyed hash of a pfsync state identity `(id, creatorid)` (the state
/// table's id index): one folded multiply of the two, each xored with a
/// word of the process's secret, so which identities share a bucket
/// depends on the key (peers choose ids and creator ids).
#[inline]
pub fn identity_hash(id: u64, creatorid: u32) -> u64 {
    let [k0, k1, ..] = &HASH_SECRET;
    fold_mul(
        id ^ k0.load(Ordering::Relaxed),
        creatorid as u64 ^ k1.load(Ordering::Relaxed),
    )
}

// The default key (wyhash's and splitmix's constants).
const K0: u64 = 0xa076_1d64_78bd_642f;
const K1: u64 = 0xe703_7ed1_a0b4_28db;
const K2: u64 = 0x8ebc_6af0_9c88_c6e3;
const K3: u64 = 0x5899_65cc_7537_4cc3;
const K4: u64 = 0x1d8e_4e27_c47d_124f;
const K5: u64 = 0x9e37_79b9_7f4a_7c15;

/// The folded 64×64→128-bit multiply (wyhash's mixing step): every input
/// bit reaches the middle bits of the product, and xoring the halves keeps
/// both.
#[inline(always)]
pub(crate) fn fold_mul(a: u64, b: u64) -> u64 {
    let p = a as u128 * b as u128;
    (p as u64) ^ ((p >> 64) as u64)
}

/// The TCP fields the established lane tracks a segment by (a segment
/// without SYN: no option of it matters to pf's tracking).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Raw (unscaled) window field.
    pub win: u16,
    /// Flags byte (see [`tcp_flags`]).
    pub flags: u8,
    /// TCP payload length in bytes.
    pub payload_len: u16,
}

impl From<&TcpInfo> for TcpSegment {
    #[inline(always)]
    fn from(t: &TcpInfo) -> TcpSegment {
        TcpSegment {
            seq: t.seq,
            ack: t.ack,
            win: t.win,
            flags: t.flags,
            payload_len: t.payload_len,
        }
    }
}

/// TCP segment fields state tracking needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when ACK is set).
    pub ack: u32,
    /// Raw (unscaled) window field.
    pub win: u16,
    /// Flags byte (see [`tcp_flags`]).
    pub flags: u8,
    /// Window scale option (shift count) if present (only honoured on SYN).
    pub wscale: Option<u8>,
    /// MSS option if present.
    pub mss: Option<u16>,
    /// SACK-permitted option present.
    pub sack_permitted: bool,
    /// Timestamp option (TSval, TSecr) if present.
    pub timestamp: Option<(u32, u32)>,
    /// TCP payload length in bytes.
    pub payload_len: u16,
}

/// ICMP (or ICMPv6) fields. For an error message, `quoted` summarises the
/// packet it quotes (pf looks up that packet's state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IcmpInfo {
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub code: u8,
    /// Identifier of an echo/query message (0 otherwise).
    pub id: u16,
    /// Whether this is an error message (unreachable, time exceeded, packet
    /// too big, parameter problem...).
    pub is_error: bool,
    /// For an error: the quoted packet's protocol, source, destination,
    /// source port, destination port (ICMP id for quoted echo), and for TCP
    /// its sequence number.
    pub quoted: Option<QuotedPacket>,
}

/// The header of the packet quoted inside an ICMP error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotedPacket {
    /// Protocol of the quoted packet.
    pub proto: u8,
    /// Its source address.
    pub src: Addr,
    /// Its destination address.
    pub dst: Addr,
    /// Its source port (or ICMP id).
    pub sport: u16,
    /// Its destination port (or ICMP id).
    pub dport: u16,
    /// TCP sequence number of the quoted segment (0 if not TCP).
    pub tcp_seq: u32,
}

/// Transport-specific part of [`PacketInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum L4Info {
    /// TCP.
    Tcp(TcpInfo),
    /// UDP (ports are in `PacketInfo`).
    Udp,
    /// ICMP or ICMPv6.
    Icmp(IcmpInfo),
    /// Any other protocol (no ports).
    #[default]
    Other,
}

/// Everything rules and state tracking decide on, extracted from a packet by
/// the parse pass. Plain data; built on the stack per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// Address family.
    pub af: Af,
    /// IP protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Source port (TCP/UDP), ICMP id for ICMP queries, 0 otherwise.
    pub sport: u16,
    /// Destination port (TCP/UDP), ICMP id for ICMP queries, 0 otherwise.
    pub dport: u16,
    /// IP total length in bytes (IPv4 total length, IPv6 40 + payload length).
    pub ip_len: u16,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Interface the packet is evaluated on.
    pub ifindex: IfIndex,
    /// Direction relative to `ifindex`.
    pub dir: Direction,
    /// Transport fields.
    pub l4: L4Info,
}

impl PacketInfo {
    /// TCP flags, or 0 for non-TCP packets.
    pub fn tcp_flags(&self) -> u8 {
        match self.l4 {
            L4Info::Tcp(t) => t.flags,
            _ => 0,
        }
    }

    /// The state key of this packet and whether its source is `addr[1]`.
    pub fn key(&self) -> (FlowKey, bool) {
        FlowKey::from_packet(
            self.af, self.proto, self.src, self.sport, self.dst, self.dport,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The IPv4 shortcuts are the general key and hash.
        #[test]
        fn the_v4_key_and_hash_are_the_general_ones(
            src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16,
            tcp: bool, secret: [u64; HASH_SECRET_WORDS], same_addr: bool,
        ) {
            let dst = if same_addr { src } else { dst };
            let proto = if tcp { proto::TCP } else { proto::UDP };
            let general = FlowKey::from_packet(
                Af::Inet, proto, Addr::v4(src), sport, Addr::v4(dst), dport,
            );
            let v4 = FlowKey::from_v4(proto, src, sport, dst, dport);
            prop_assert_eq!(v4, general);
            let secret = HashSecret(secret);
            prop_assert_eq!(
                FlowKey::v4_hash_with(&secret, proto, src, sport, dst, dport),
                (general.0.symmetric_hash_with(&secret), general.1)
            );
            // Equality sees every byte of the tail word.
            let mut other = v4.0;
            other.rdomain ^= 1;
            prop_assert_ne!(other, v4.0);
            other = v4.0;
            other.port[1] ^= 0x100;
            prop_assert_ne!(other, v4.0);
        }
    }

    #[test]
    fn both_directions_share_key_and_hash() {
        let a = Addr::v4([10, 0, 0, 1]);
        let b = Addr::v4([192, 168, 1, 9]);
        let (k1, s1) = FlowKey::from_packet(Af::Inet, proto::TCP, a, 40000, b, 80);
        let (k2, s2) = FlowKey::from_packet(Af::Inet, proto::TCP, b, 80, a, 40000);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
        assert_eq!(k1.symmetric_hash(), k2.symmetric_hash());
        let hash = crate::rss::Placement::Hash;
        assert_eq!(
            hash.owner(&k1, k1.symmetric_hash(), 4),
            hash.owner(&k2, k2.symmetric_hash(), 4)
        );
    }

    #[test]
    fn the_keyed_hash_is_symmetric_under_any_secret_and_depends_on_it() {
        let a = Addr::v6([0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]);
        let b = Addr::v6([0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        let (k1, _) = FlowKey::from_packet(Af::Inet6, proto::UDP, a, 5353, b, 53);
        let (k2, _) = FlowKey::from_packet(Af::Inet6, proto::UDP, b, 53, a, 5353);
        let one = HashSecret([1, 2, 3, 4, 5, 6]);
        let other = HashSecret([6, 5, 4, 3, 2, 1]);
        for secret in [one, other, HashSecret::DEFAULT] {
            assert_eq!(
                k1.symmetric_hash_with(&secret),
                k2.symmetric_hash_with(&secret)
            );
        }
        assert_ne!(k1.symmetric_hash_with(&one), k1.symmetric_hash_with(&other));
        // Every word of the secret takes part.
        for i in 0..HASH_SECRET_WORDS {
            let mut flipped = one;
            flipped.0[i] ^= 1 << 40;
            assert_ne!(
                k1.symmetric_hash_with(&one),
                k1.symmetric_hash_with(&flipped),
                "word {i}"
            );
        }
        // The unkeyed call uses the process's key (the default one here:
        // unit tests never set it, they share the process).
        assert_eq!(hash_secret(), HashSecret::DEFAULT);
        assert_eq!(
            k1.symmetric_hash(),
            k1.symmetric_hash_with(&HashSecret::DEFAULT)
        );
        assert_eq!(format!("{one:?}"), "HashSecret(..)");
    }

    #[test]
    fn same_address_different_ports_orders_by_port() {
        let a = Addr::v4([10, 0, 0, 1]);
        let (k1, _) = FlowKey::from_packet(Af::Inet, proto::UDP, a, 9, a, 5);
        assert_eq!(k1.port, [5, 9]);
    }

    #[test]
    fn owners_spread_across_workers() {
        let mut counts = [0usize; 4];
        for i in 0..4000u32 {
            let (k, _) = FlowKey::from_packet(
                Af::Inet,
                proto::TCP,
                Addr::v4([10, 0, (i >> 8) as u8, i as u8]),
                1024 + (i % 7) as u16,
                Addr::v4([198, 18, 0, 1]),
                80,
            );
            counts[crate::rss::Placement::Hash.owner(&k, k.symmetric_hash(), 4)] += 1;
        }
        for c in counts {
            assert!(c > 800, "unbalanced owners: {counts:?}");
        }
    }
}
