//! Zero-copy wire views of the packets dpf parses and builds.
//!
//! Two levels, as in smoltcp:
//!
//! * **Views** (`Frame`/`Packet<T: AsRef<[u8]>>`) read and write fields in
//!   place over borrowed bytes (an mbuf's data). Untrusted bytes enter only
//!   through `new_checked`, which calls `check_len`; after it succeeds no
//!   getter panics. Setters exist only for `T: AsMut<[u8]>`.
//! * **Reprs** (`Repr`) are small plain values for the slow path: `parse`
//!   validates what a view does not (versions, codes, checksums) and `emit`
//!   writes into a buffer of exactly `buffer_len()` bytes, checksums last.
//!
//! On top of them: [`classify()`] is the per-packet parse pass of the fast
//! path (Ethernet [+ one 802.1Q tag] -> ARP | IPv4 | IPv6 -> TCP | UDP |
//! ICMP | ICMPv6) producing a [`crate::flow::PacketInfo`], and [`build`]
//! makes the replies the slow path sends (ARP, ICMP echo replies and errors,
//! TCP RST, neighbour advertisements).
//!
//! Invariants: nothing in this module allocates or panics on any input
//! bytes; every failure is a [`WireError`] naming what was wrong. Checksum
//! verification inside parse paths (`Repr::parse`, [`classify()`]) is
//! skipped under `cfg(fuzzing)` so fuzzers reach deep code; the
//! `verify_checksum` methods themselves always compute.

#![forbid(unsafe_code)]

pub mod arp;
pub mod build;
pub mod checksum;
mod classify;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
#[cfg(test)]
mod vectors;

pub use classify::{
    classify, is_vlan_tag, l3_offset, segment4, Classified, FrameKind, Segment4, MAX_VLAN_TAGS,
};
pub use ethernet::{EtherType, EthernetAddress};

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::flow::{Addr, Af};

/// Byte ranges of fixed header fields.
mod field {
    /// A fixed field.
    pub type Field = core::ops::Range<usize>;
}

/// What was wrong with a packet (or a buffer to emit into).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before a header (or a length field) says it does.
    #[error("truncated packet")]
    Truncated,
    /// An IP header whose version is not the one its EtherType (or the
    /// enclosing ICMP message) announces.
    #[error("bad IP version")]
    BadIpVersion,
    /// IPv4 IHL below 5 or beyond the total length.
    #[error("bad IPv4 header length")]
    BadIpHeaderLen,
    /// IP total (or IPv6 payload) length shorter than the header or longer
    /// than the frame.
    #[error("bad IP total length")]
    BadIpTotalLen,
    /// IPv4 header checksum mismatch.
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    /// A malformed IPv6 extension header (hop-by-hop not first, a second
    /// fragment header, a length past the packet).
    #[error("bad IPv6 extension header")]
    BadIpv6ExtHeader,
    /// An IPv6 type 0 routing header (deprecated by RFC 5095; pf drops it).
    #[error("IPv6 type 0 routing header")]
    Ipv6RoutingType0,
    /// More IPv6 extension headers than dpf walks
    /// ([`ipv6::MAX_EXT_HEADERS`]).
    #[error("too many IPv6 extension headers")]
    TooManyIpv6ExtHeaders,
    /// TCP data offset below 5 or past the segment.
    #[error("bad TCP header length")]
    BadTcpHeaderLen,
    /// UDP length field below 8 or past the IP payload.
    #[error("bad UDP length")]
    BadUdpLen,
    /// An ICMP error message whose quoted packet is too short or not an IP
    /// header of the right version.
    #[error("bad packet quoted in ICMP error")]
    BadIcmpQuote,
    /// ICMPv4 inside IPv6 or ICMPv6 inside IPv4 (pf drops both).
    #[error("ICMP of the wrong IP version")]
    WrongIcmpFamily,
    /// An ARP packet that is not Ethernet/IPv4.
    #[error("unsupported ARP hardware or protocol")]
    BadArp,
    /// A transport (TCP, UDP, ICMP, ICMPv6) checksum mismatch.
    #[error("bad checksum")]
    BadChecksum,
    /// A field value the format forbids (unknown code, option of length 0...).
    #[error("malformed packet")]
    Malformed,
    /// The output buffer is smaller than `buffer_len()`.
    #[error("output buffer too small")]
    BufferTooSmall,
    /// The packet must not be answered (an RST, an ICMP error, a
    /// broadcast, a non-first fragment...).
    #[error("packet must not be answered")]
    NotAnswerable,
}

/// Source and destination addresses of one IP packet: what transport
/// checksums need for their pseudo-header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpPair {
    /// IPv4 addresses.
    V4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
    },
    /// IPv6 addresses.
    V6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// From [`crate::flow`] addresses and their family.
    pub fn from_addrs(af: Af, src: Addr, dst: Addr) -> IpPair {
        match af {
            Af::Inet => IpPair::V4 {
                src: Ipv4Addr::from(src.v4_octets()),
                dst: Ipv4Addr::from(dst.v4_octets()),
            },
            Af::Inet6 => IpPair::V6 {
                src: Ipv6Addr::from(src.0),
                dst: Ipv6Addr::from(dst.0),
            },
        }
    }

    /// The same pair with source and destination exchanged.
    pub fn reversed(self) -> IpPair {
        match self {
            IpPair::V4 { src, dst } => IpPair::V4 { src: dst, dst: src },
            IpPair::V6 { src, dst } => IpPair::V6 { src: dst, dst: src },
        }
    }

    /// The folded (not complemented) one's-complement sum of the
    /// pseudo-header for an upper-layer packet of `protocol` and `length`
    /// bytes (RFC 768 / RFC 793 for IPv4, RFC 8200 §8.1 for IPv6).
    #[inline]
    pub fn pseudo_header_sum(&self, protocol: u8, length: u32) -> u16 {
        match self {
            IpPair::V4 { src, dst } => {
                checksum::pseudo_header_v4(&src.octets(), &dst.octets(), protocol, length)
            }
            IpPair::V6 { src, dst } => {
                checksum::pseudo_header_v6(&src.octets(), &dst.octets(), protocol, length)
            }
        }
    }
}

/// Reads the big-endian u16 at `at`. Callers have checked the length.
#[inline(always)]
fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Reads the big-endian u32 at `at`. Callers have checked the length.
#[inline(always)]
fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Writes `value` big-endian at `at`.
#[inline(always)]
fn put16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes `value` big-endian at `at`.
#[inline(always)]
fn put32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}
