//! Private frame builder for `bench gen`: Ethernet II + IPv4/IPv6 + TCP/UDP
//! frames emitted from a [`FrameRepr`] into a caller's buffer, with every
//! checksum filled in.
//!
//! This is deliberately small and separate from `dataplane::wire` (written in
//! parallel): the generator only needs to *build* well-formed frames, and a
//! second, independent implementation makes the generated pcaps a useful
//! cross-check of dpf's parser. The decoder at the bottom exists for tests.
//!
//! ```text
//! captured frame (what a pcap stores; the 4-byte FCS is not stored)
//! +----------+-------------------+-----------------------+---------+---------+
//! | ethernet | IPv4 (20) or      | TCP (20 + options) or | payload | trailer |
//! | (14)     | IPv6 (40)         | UDP (8)               |         | (zeros) |
//! +----------+-------------------+-----------------------+---------+---------+
//!            |<--- IP total length / IPv6 header + payload length -->|
//! ```
//!
//! Invariants of [`FrameRepr::emit`]: the frame is exactly
//! [`FrameRepr::buffer_len`] bytes and at least [`MIN_CAPTURED_LEN`] (a
//! shorter frame gets a zero Ethernet trailer, as a NIC would pad it); the IP
//! length fields cover headers and payload but never the trailer; the IPv4
//! header checksum and the TCP/UDP checksum (RFC 793 / RFC 768 pseudo-header
//! for IPv4, RFC 8200 §8.1 for IPv6) verify; a UDP checksum that computes to
//! zero is sent as `0xffff` (RFC 768, mandatory for IPv6 per RFC 8200 §8.1).
//! The payload is a fixed byte pattern, so equal reprs emit equal bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use dataplane::flow::proto;

/// Bytes of Ethernet FCS on the wire that a pcap does not store: a "64-byte
/// frame" is 60 captured bytes.
pub const FCS_LEN: usize = 4;
/// The smallest Ethernet frame without FCS (64 on the wire).
pub const MIN_CAPTURED_LEN: usize = 60;
/// The largest standard Ethernet frame without FCS (1518 on the wire).
pub const MAX_CAPTURED_LEN: usize = 1514;
/// Ethernet II header length.
pub const ETHER_HEADER_LEN: usize = 14;
/// IPv4 header length without options (the builder never emits options).
pub const IPV4_HEADER_LEN: usize = 20;
/// IPv6 fixed header length (the builder never emits extension headers).
pub const IPV6_HEADER_LEN: usize = 40;
/// TCP header length without options.
pub const TCP_HEADER_LEN: usize = 20;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;

/// Hop limit / TTL of every generated packet.
pub const HOP_LIMIT: u8 = 64;

/// EtherType values.
mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const IPV6: u16 = 0x86dd;
}

/// TCP option kinds (RFC 9293 §3.2, RFC 7323 §2, RFC 2018 §2).
mod tcp_option {
    #[cfg(test)]
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WSCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
}

/// Payload filler, repeated: visible in a packet dump, never all zeros.
const PAYLOAD_PATTERN: &[u8] = b"dpf-bench ";

/// An Ethernet MAC address.
pub type MacAddr = [u8; 6];

/// Errors from [`FrameRepr::emit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The output buffer cannot hold the frame.
    #[error("buffer of {got} bytes cannot hold a {needed}-byte frame")]
    BufferTooShort {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// The IP datagram would not fit its 16-bit length field.
    #[error("IP datagram of {len} bytes does not fit a 16-bit length")]
    TooLong {
        /// The datagram length.
        len: usize,
    },
}

/// Source and destination address of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpPair {
    /// IPv4 addresses.
    V4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
    },
    /// IPv6 addresses.
    V6 {
        /// Source address.
        src: Ipv6Addr,
        /// Destination address.
        dst: Ipv6Addr,
    },
}

impl IpPair {
    /// Length of the IP header this pair is carried in.
    pub fn header_len(&self) -> usize {
        match self {
            IpPair::V4 { .. } => IPV4_HEADER_LEN,
            IpPair::V6 { .. } => IPV6_HEADER_LEN,
        }
    }

    /// The pair of the reply direction.
    #[cfg(test)]
    pub fn reversed(self) -> IpPair {
        match self {
            IpPair::V4 { src, dst } => IpPair::V4 { src: dst, dst: src },
            IpPair::V6 { src, dst } => IpPair::V6 { src: dst, dst: src },
        }
    }
}

/// The TCP options the generator emits, in a fixed layout:
/// `MSS`, then `NOP WSCALE`, then `NOP NOP SACK_PERMITTED`, each group 4
/// bytes, so the option block is always a multiple of 4 and needs no padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (RFC 9293 §3.7.1), SYN only.
    pub mss: Option<u16>,
    /// Window scale shift count (RFC 7323 §2.2), SYN only.
    pub wscale: Option<u8>,
    /// SACK permitted (RFC 2018 §2), SYN only.
    pub sack_permitted: bool,
}

impl TcpOptions {
    /// MSS 1460, window scale 7, SACK permitted: what the handshakes carry.
    pub const HANDSHAKE: TcpOptions = TcpOptions {
        mss: Some(1460),
        wscale: Some(7),
        sack_permitted: true,
    };

    /// MSS 1460 only: a SYN that still fits a 64-byte IPv4 frame.
    pub const MSS_ONLY: TcpOptions = TcpOptions {
        mss: Some(1460),
        wscale: None,
        sack_permitted: false,
    };

    /// Length of the encoded options in bytes (a multiple of 4).
    pub fn len(&self) -> usize {
        4 * (usize::from(self.mss.is_some())
            + usize::from(self.wscale.is_some())
            + usize::from(self.sack_permitted))
    }

    /// Writes the options; `buf` must be exactly [`TcpOptions::len`] bytes.
    fn emit(&self, buf: &mut [u8]) {
        let mut at = 0;
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            buf[at..at + 4].copy_from_slice(&[tcp_option::MSS, 4, hi, lo]);
            at += 4;
        }
        if let Some(shift) = self.wscale {
            buf[at..at + 4].copy_from_slice(&[tcp_option::NOP, tcp_option::WSCALE, 3, shift]);
            at += 4;
        }
        if self.sack_permitted {
            buf[at..at + 4].copy_from_slice(&[
                tcp_option::NOP,
                tcp_option::NOP,
                tcp_option::SACK_PERMITTED,
                2,
            ]);
        }
    }
}

/// A TCP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number (meaningful with ACK set).
    pub ack: u32,
    /// Flag bits (`dataplane::flow::tcp_flags`).
    pub flags: u8,
    /// Window field as sent (unscaled on SYNs, scaled otherwise).
    pub window: u16,
    /// Options.
    pub options: TcpOptions,
}

impl TcpRepr {
    /// Header length including options.
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options.len()
    }
}

/// A UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

/// The transport header of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Repr {
    /// TCP.
    Tcp(TcpRepr),
    /// UDP.
    Udp(UdpRepr),
}

impl L4Repr {
    /// Header length including options.
    pub fn header_len(&self) -> usize {
        match self {
            L4Repr::Tcp(tcp) => tcp.header_len(),
            L4Repr::Udp(_) => UDP_HEADER_LEN,
        }
    }

    /// IP protocol number.
    pub fn protocol(&self) -> u8 {
        match self {
            L4Repr::Tcp(_) => proto::TCP,
            L4Repr::Udp(_) => proto::UDP,
        }
    }
}

/// How [`FrameRepr::fill_to`] grows a frame to a target length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// Grow the transport payload (the IP length grows with it).
    Payload,
    /// Append a zero Ethernet trailer after the IP datagram (the IP length
    /// does not change), as a NIC pads a short frame.
    Trailer,
}

/// One frame to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRepr {
    /// Ethernet source.
    pub src_mac: MacAddr,
    /// Ethernet destination.
    pub dst_mac: MacAddr,
    /// IP addresses (and so the IP version).
    pub ip: IpPair,
    /// Transport header.
    pub l4: L4Repr,
    /// Transport payload bytes.
    pub payload_len: usize,
    /// Zero bytes after the IP datagram, beyond the minimum-frame padding
    /// that [`FrameRepr::emit`] always adds.
    pub trailer_len: usize,
}

impl FrameRepr {
    /// A frame with no payload and no trailer.
    pub fn new(src_mac: MacAddr, dst_mac: MacAddr, ip: IpPair, l4: L4Repr) -> FrameRepr {
        FrameRepr {
            src_mac,
            dst_mac,
            ip,
            l4,
            payload_len: 0,
            trailer_len: 0,
        }
    }

    /// Ethernet + IP + transport header length.
    pub fn header_len(&self) -> usize {
        ETHER_HEADER_LEN + self.ip.header_len() + self.l4.header_len()
    }

    /// Length of the IP datagram (header, transport header, payload).
    pub fn ip_len(&self) -> usize {
        self.ip.header_len() + self.l4.header_len() + self.payload_len
    }

    /// Exact length [`FrameRepr::emit`] writes: headers, payload and
    /// trailer, at least [`MIN_CAPTURED_LEN`].
    pub fn buffer_len(&self) -> usize {
        (ETHER_HEADER_LEN + self.ip_len() + self.trailer_len).max(MIN_CAPTURED_LEN)
    }

    /// Grows the frame to `captured_len` bytes with payload or trailer. A
    /// frame whose headers alone are longer keeps its natural length.
    pub fn fill_to(mut self, captured_len: usize, fill: Fill) -> FrameRepr {
        let extra = captured_len.saturating_sub(self.header_len());
        match fill {
            Fill::Payload => {
                self.payload_len = extra;
                self.trailer_len = 0;
            }
            Fill::Trailer => {
                self.payload_len = 0;
                self.trailer_len = extra;
            }
        }
        self
    }

    /// Writes the frame into `buf[..self.buffer_len()]` and returns its
    /// length. Checksums are computed last, over the bytes just written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, FrameError> {
        let frame_len = self.buffer_len();
        let ip_len = self.ip_len();
        if buf.len() < frame_len {
            return Err(FrameError::BufferTooShort {
                needed: frame_len,
                got: buf.len(),
            });
        }
        if ip_len > usize::from(u16::MAX) {
            return Err(FrameError::TooLong { len: ip_len });
        }
        let frame = &mut buf[..frame_len];

        // Ethernet II.
        frame[0..6].copy_from_slice(&self.dst_mac);
        frame[6..12].copy_from_slice(&self.src_mac);
        let ethertype = match self.ip {
            IpPair::V4 { .. } => ethertype::IPV4,
            IpPair::V6 { .. } => ethertype::IPV6,
        };
        frame[12..14].copy_from_slice(&ethertype.to_be_bytes());

        let ip_start = ETHER_HEADER_LEN;
        let l4_start = ip_start + self.ip.header_len();
        let payload_start = l4_start + self.l4.header_len();
        let ip_end = ip_start + ip_len;
        let l4_len = ip_end - l4_start;

        // Payload pattern, then zero trailer.
        for (i, byte) in frame[payload_start..ip_end].iter_mut().enumerate() {
            *byte = PAYLOAD_PATTERN[i % PAYLOAD_PATTERN.len()];
        }
        frame[ip_end..].fill(0);

        // Transport header with a zero checksum field.
        let l4_header = &mut frame[l4_start..payload_start];
        l4_header.fill(0);
        match &self.l4 {
            L4Repr::Tcp(tcp) => {
                l4_header[0..2].copy_from_slice(&tcp.src_port.to_be_bytes());
                l4_header[2..4].copy_from_slice(&tcp.dst_port.to_be_bytes());
                l4_header[4..8].copy_from_slice(&tcp.seq.to_be_bytes());
                l4_header[8..12].copy_from_slice(&tcp.ack.to_be_bytes());
                // Header length in 32-bit words; at most 15 * 4 = 60 bytes,
                // and our options are at most 12 bytes.
                l4_header[12] = ((tcp.header_len() / 4) as u8) << 4;
                l4_header[13] = tcp.flags;
                l4_header[14..16].copy_from_slice(&tcp.window.to_be_bytes());
                tcp.options.emit(&mut l4_header[TCP_HEADER_LEN..]);
            }
            L4Repr::Udp(udp) => {
                l4_header[0..2].copy_from_slice(&udp.src_port.to_be_bytes());
                l4_header[2..4].copy_from_slice(&udp.dst_port.to_be_bytes());
                // Fits: l4_len <= ip_len <= u16::MAX, checked above.
                l4_header[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            }
        }

        // IP header with a zero checksum field.
        let protocol = self.l4.protocol();
        let ip_header = &mut frame[ip_start..l4_start];
        match self.ip {
            IpPair::V4 { src, dst } => {
                ip_header[0] = 0x45; // version 4, IHL 5
                ip_header[1] = 0; // DSCP/ECN
                ip_header[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
                ip_header[4..6].copy_from_slice(&0u16.to_be_bytes()); // identification
                ip_header[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF, offset 0
                ip_header[8] = HOP_LIMIT;
                ip_header[9] = protocol;
                ip_header[10..12].copy_from_slice(&[0, 0]);
                ip_header[12..16].copy_from_slice(&src.octets());
                ip_header[16..20].copy_from_slice(&dst.octets());
                let sum = checksum::finish(checksum::add(0, ip_header));
                ip_header[10..12].copy_from_slice(&sum.to_be_bytes());
            }
            IpPair::V6 { src, dst } => {
                ip_header[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
                ip_header[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                ip_header[6] = protocol;
                ip_header[7] = HOP_LIMIT;
                ip_header[8..24].copy_from_slice(&src.octets());
                ip_header[24..40].copy_from_slice(&dst.octets());
            }
        }

        // Transport checksum over pseudo-header + segment.
        let pseudo = checksum::pseudo_header(&self.ip, protocol, l4_len as u32);
        let sum = checksum::finish(checksum::add(pseudo, &frame[l4_start..ip_end]));
        let (field, sum) = match self.l4 {
            L4Repr::Tcp(_) => (16, sum),
            // RFC 768: a computed zero is transmitted as all ones.
            L4Repr::Udp(_) => (6, if sum == 0 { 0xffff } else { sum }),
        };
        frame[l4_start + field..l4_start + field + 2].copy_from_slice(&sum.to_be_bytes());
        Ok(frame_len)
    }
}

/// The Internet checksum (RFC 1071): a 16-bit one's complement sum kept
/// unfolded in a `u64` while bytes are added.
pub mod checksum {
    use super::IpPair;

    /// Adds `data` as big-endian 16-bit words (an odd last byte is padded
    /// with zero) to the running sum `acc`.
    pub fn add(mut acc: u64, data: &[u8]) -> u64 {
        let mut words = data.chunks_exact(2);
        for word in &mut words {
            acc += u64::from(u16::from_be_bytes([word[0], word[1]]));
        }
        if let [last] = words.remainder() {
            acc += u64::from(u16::from_be_bytes([*last, 0]));
        }
        acc
    }

    /// Folds the carries and complements: the value to store in a checksum
    /// field. Summing a region that includes a correct checksum field
    /// finishes to zero.
    pub fn finish(mut acc: u64) -> u16 {
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        // After folding `acc` fits 16 bits.
        !(acc as u16)
    }

    /// Sum of the TCP/UDP pseudo-header: addresses, protocol and transport
    /// length (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6).
    pub fn pseudo_header(ip: &IpPair, protocol: u8, l4_len: u32) -> u64 {
        let acc = match ip {
            IpPair::V4 { src, dst } => add(add(0, &src.octets()), &dst.octets()),
            IpPair::V6 { src, dst } => add(add(0, &src.octets()), &dst.octets()),
        };
        acc + u64::from(protocol) + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff)
    }
}

/// A forgiving decoder of what [`FrameRepr::emit`] writes, for tests: it
/// never panics on arbitrary bytes and reports checksum validity instead of
/// rejecting bad checksums.
#[cfg(test)]
pub mod decode {
    use super::*;

    /// Why bytes are not a frame the builder could have written.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DecodeError {
        /// Shorter than a header or a length field claims.
        Truncated,
        /// An EtherType, version, IHL, protocol or option the builder never
        /// writes.
        Unsupported,
    }

    /// TCP options as decoded.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct DecodedOptions {
        /// MSS option value.
        pub mss: Option<u16>,
        /// Window scale shift.
        pub wscale: Option<u8>,
        /// SACK permitted present.
        pub sack_permitted: bool,
    }

    /// A decoded frame.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Decoded {
        /// Ethernet source.
        pub src_mac: MacAddr,
        /// Ethernet destination.
        pub dst_mac: MacAddr,
        /// Addresses.
        pub ip: IpPair,
        /// TTL / hop limit.
        pub hop_limit: u8,
        /// Transport header (TCP options decoded into `TcpRepr::options`).
        pub l4: L4Repr,
        /// Transport payload length.
        pub payload_len: usize,
        /// Bytes after the IP datagram.
        pub trailer_len: usize,
        /// Whether the trailer is all zeros.
        pub trailer_zero: bool,
        /// IPv4 header checksum verifies (always true for IPv6).
        pub ip_checksum_ok: bool,
        /// TCP/UDP checksum verifies.
        pub l4_checksum_ok: bool,
    }

    fn be16(b: &[u8], at: usize) -> Result<u16, DecodeError> {
        match b.get(at..at + 2) {
            Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
            _ => Err(DecodeError::Truncated),
        }
    }

    fn be32(b: &[u8], at: usize) -> Result<u32, DecodeError> {
        match b.get(at..at + 4) {
            Some(&[a, c, d, e]) => Ok(u32::from_be_bytes([a, c, d, e])),
            _ => Err(DecodeError::Truncated),
        }
    }

    fn slice(b: &[u8], from: usize, to: usize) -> Result<&[u8], DecodeError> {
        b.get(from..to).ok_or(DecodeError::Truncated)
    }

    fn options(bytes: &[u8]) -> Result<DecodedOptions, DecodeError> {
        let mut out = DecodedOptions::default();
        let mut at = 0;
        while let Some(&kind) = bytes.get(at) {
            match kind {
                tcp_option::END => break,
                tcp_option::NOP => at += 1,
                _ => {
                    let len = usize::from(*bytes.get(at + 1).ok_or(DecodeError::Truncated)?);
                    let body = slice(bytes, at + 2, at + len.max(2))?;
                    match (kind, body) {
                        (tcp_option::MSS, &[hi, lo]) => {
                            out.mss = Some(u16::from_be_bytes([hi, lo]))
                        }
                        (tcp_option::WSCALE, &[shift]) => out.wscale = Some(shift),
                        (tcp_option::SACK_PERMITTED, &[]) => out.sack_permitted = true,
                        _ => return Err(DecodeError::Unsupported),
                    }
                    at += len.max(2);
                }
            }
        }
        Ok(out)
    }

    /// Decodes one captured frame.
    pub fn decode(frame: &[u8]) -> Result<Decoded, DecodeError> {
        let mut src_mac = [0u8; 6];
        let mut dst_mac = [0u8; 6];
        dst_mac.copy_from_slice(slice(frame, 0, 6)?);
        src_mac.copy_from_slice(slice(frame, 6, 12)?);
        let ip_start = ETHER_HEADER_LEN;
        let (ip, hop_limit, protocol, l4_start, ip_end, ip_checksum_ok) = match be16(frame, 12)? {
            ethertype::IPV4 => {
                let header = slice(frame, ip_start, ip_start + IPV4_HEADER_LEN)?;
                if header[0] != 0x45 {
                    return Err(DecodeError::Unsupported);
                }
                let total = usize::from(be16(header, 2)?);
                if total < IPV4_HEADER_LEN {
                    return Err(DecodeError::Unsupported);
                }
                let mut src = [0u8; 4];
                let mut dst = [0u8; 4];
                src.copy_from_slice(&header[12..16]);
                dst.copy_from_slice(&header[16..20]);
                let ok = checksum::finish(checksum::add(0, header)) == 0;
                (
                    IpPair::V4 {
                        src: src.into(),
                        dst: dst.into(),
                    },
                    header[8],
                    header[9],
                    ip_start + IPV4_HEADER_LEN,
                    ip_start + total,
                    ok,
                )
            }
            ethertype::IPV6 => {
                let header = slice(frame, ip_start, ip_start + IPV6_HEADER_LEN)?;
                if header[0] >> 4 != 6 {
                    return Err(DecodeError::Unsupported);
                }
                let payload = usize::from(be16(header, 4)?);
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src.copy_from_slice(&header[8..24]);
                dst.copy_from_slice(&header[24..40]);
                (
                    IpPair::V6 {
                        src: src.into(),
                        dst: dst.into(),
                    },
                    header[7],
                    header[6],
                    ip_start + IPV6_HEADER_LEN,
                    ip_start + IPV6_HEADER_LEN + payload,
                    true,
                )
            }
            _ => return Err(DecodeError::Unsupported),
        };
        let segment = slice(frame, l4_start, ip_end)?;
        let trailer = &frame[ip_end..];
        let (l4, header_len) = match protocol {
            proto::TCP => {
                let offset = usize::from(*segment.get(12).ok_or(DecodeError::Truncated)? >> 4) * 4;
                if offset < TCP_HEADER_LEN {
                    return Err(DecodeError::Unsupported);
                }
                let opts = options(slice(segment, TCP_HEADER_LEN, offset)?)?;
                let tcp = TcpRepr {
                    src_port: be16(segment, 0)?,
                    dst_port: be16(segment, 2)?,
                    seq: be32(segment, 4)?,
                    ack: be32(segment, 8)?,
                    flags: segment[13],
                    window: be16(segment, 14)?,
                    options: TcpOptions {
                        mss: opts.mss,
                        wscale: opts.wscale,
                        sack_permitted: opts.sack_permitted,
                    },
                };
                (L4Repr::Tcp(tcp), offset)
            }
            proto::UDP => {
                if usize::from(be16(segment, 4)?) != segment.len() {
                    return Err(DecodeError::Unsupported);
                }
                let udp = UdpRepr {
                    src_port: be16(segment, 0)?,
                    dst_port: be16(segment, 2)?,
                };
                (L4Repr::Udp(udp), UDP_HEADER_LEN)
            }
            _ => return Err(DecodeError::Unsupported),
        };
        if segment.len() < header_len {
            return Err(DecodeError::Truncated);
        }
        let pseudo = checksum::pseudo_header(&ip, protocol, segment.len() as u32);
        let l4_checksum_ok = checksum::finish(checksum::add(pseudo, segment)) == 0;
        Ok(Decoded {
            src_mac,
            dst_mac,
            ip,
            hop_limit,
            l4,
            payload_len: segment.len() - header_len,
            trailer_len: trailer.len(),
            trailer_zero: trailer.iter().all(|b| *b == 0),
            ip_checksum_ok,
            l4_checksum_ok,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::decode::decode;
    use super::*;
    use dataplane::flow::tcp_flags;
    use proptest::prelude::*;

    const A: MacAddr = [0x02, 0, 0, 0, 0, 0x01];
    const B: MacAddr = [0x02, 0, 0, 0, 0, 0x02];

    fn v4() -> IpPair {
        IpPair::V4 {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 19, 0, 1),
        }
    }

    fn syn() -> FrameRepr {
        FrameRepr::new(
            A,
            B,
            v4(),
            L4Repr::Tcp(TcpRepr {
                src_port: 1024,
                dst_port: 80,
                seq: 0x0102_0304,
                ack: 0,
                flags: tcp_flags::SYN,
                window: 65535,
                options: TcpOptions::HANDSHAKE,
            }),
        )
    }

    /// A SYN with MSS 1460, NOP WS 7, NOP NOP SACK-permitted, checked
    /// byte by byte (checksums computed independently with a Python RFC 1071
    /// one-liner; the IPv4 one by hand below).
    #[test]
    fn ipv4_syn_bytes() {
        let mut buf = [0u8; 128];
        let len = syn().emit(&mut buf).unwrap();
        assert_eq!(len, 66);
        #[rustfmt::skip]
        let expected: [u8; 66] = [
            // ethernet: dst, src, type
            0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00,
            // ipv4: 45 00, len 52, id 0, DF, ttl 64, tcp, csum, src, dst
            0x45, 0x00, 0x00, 0x34, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0xae, 0x9c,
            198, 18, 0, 1, 198, 19, 0, 1,
            // tcp: ports, seq, ack, off 8, SYN, win, csum, urg
            0x04, 0x00, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0,
            0x80, 0x02, 0xff, 0xff, 0xda, 0x93, 0x00, 0x00,
            // options
            0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07, 0x01, 0x01, 0x04, 0x02,
        ];
        assert_eq!(&buf[..len], &expected[..]);
    }

    /// The IPv4 header checksum above, by RFC 1071 arithmetic:
    /// 4500+0034+0000+4000+4006+c612+0001+c613+0001 = 0x25161 -> fold
    /// 0x5161 + 0x2 = 0x5163 -> complement 0xae9c.
    #[test]
    fn ipv4_header_checksum_by_hand() {
        let words: [u16; 9] = [
            0x4500, 0x0034, 0x0000, 0x4000, 0x4006, 0xc612, 0x0001, 0xc613, 0x0001,
        ];
        let sum: u64 = words.iter().map(|w| u64::from(*w)).sum();
        assert_eq!(checksum::finish(sum), 0xae9c);
    }

    #[test]
    fn short_frames_get_a_zero_trailer_outside_the_ip_length() {
        let repr = FrameRepr::new(
            A,
            B,
            v4(),
            L4Repr::Udp(UdpRepr {
                src_port: 1,
                dst_port: 9,
            }),
        );
        let mut buf = [0xaau8; 128];
        let len = repr.emit(&mut buf).unwrap();
        assert_eq!(len, MIN_CAPTURED_LEN);
        let d = decode(&buf[..len]).unwrap();
        assert_eq!(d.payload_len, 0);
        assert_eq!(d.trailer_len, MIN_CAPTURED_LEN - 42);
        assert!(d.trailer_zero && d.ip_checksum_ok && d.l4_checksum_ok);
    }

    #[test]
    fn fill_payload_and_trailer() {
        let p = syn().fill_to(200, Fill::Payload);
        assert_eq!(
            (p.payload_len, p.trailer_len, p.buffer_len()),
            (134, 0, 200)
        );
        let t = syn().fill_to(200, Fill::Trailer);
        assert_eq!(
            (t.payload_len, t.trailer_len, t.buffer_len()),
            (0, 134, 200)
        );
        // Headers longer than the target keep their natural length.
        assert_eq!(syn().fill_to(60, Fill::Payload).buffer_len(), 66);
    }

    #[test]
    fn too_small_buffer_is_an_error() {
        let mut buf = [0u8; 65];
        assert_eq!(
            syn().emit(&mut buf),
            Err(FrameError::BufferTooShort {
                needed: 66,
                got: 65
            })
        );
    }

    #[test]
    fn corrupting_a_byte_breaks_a_checksum() {
        let mut buf = [0u8; 128];
        let len = syn().fill_to(100, Fill::Payload).emit(&mut buf).unwrap();
        buf[len - 1] ^= 0x01;
        assert!(!decode(&buf[..len]).unwrap().l4_checksum_ok);
        buf[len - 1] ^= 0x01;
        buf[ETHER_HEADER_LEN + 8] ^= 0x01; // TTL
        assert!(!decode(&buf[..len]).unwrap().ip_checksum_ok);
    }

    fn arb_ip() -> impl Strategy<Value = IpPair> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(s, d)| IpPair::V4 {
                src: s.into(),
                dst: d.into()
            }),
            (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(s, d)| IpPair::V6 {
                src: s.into(),
                dst: d.into()
            }),
        ]
    }

    fn arb_l4() -> impl Strategy<Value = L4Repr> {
        let options = (
            proptest::option::of(any::<u16>()),
            proptest::option::of(0u8..15),
            any::<bool>(),
        )
            .prop_map(|(mss, wscale, sack_permitted)| TcpOptions {
                mss,
                wscale,
                sack_permitted,
            });
        prop_oneof![
            (any::<(u16, u16, u32, u32, u8, u16)>(), options).prop_map(
                |((src_port, dst_port, seq, ack, flags, window), options)| {
                    L4Repr::Tcp(TcpRepr {
                        src_port,
                        dst_port,
                        seq,
                        ack,
                        flags,
                        window,
                        options,
                    })
                }
            ),
            any::<(u16, u16)>()
                .prop_map(|(src_port, dst_port)| L4Repr::Udp(UdpRepr { src_port, dst_port })),
        ]
    }

    proptest! {
        #[test]
        fn emit_then_decode_round_trips(
            ip in arb_ip(),
            l4 in arb_l4(),
            payload_len in 0usize..1500,
            trailer_len in 0usize..64,
        ) {
            let repr = FrameRepr { src_mac: A, dst_mac: B, ip, l4, payload_len, trailer_len };
            let mut buf = vec![0x55u8; repr.buffer_len()];
            let len = repr.emit(&mut buf).unwrap();
            prop_assert_eq!(len, repr.buffer_len());
            let d = decode(&buf).unwrap();
            prop_assert_eq!(d.ip, ip);
            prop_assert_eq!(d.l4, l4);
            prop_assert_eq!(d.src_mac, A);
            prop_assert_eq!(d.dst_mac, B);
            prop_assert_eq!(d.hop_limit, HOP_LIMIT);
            prop_assert_eq!(d.payload_len, payload_len);
            prop_assert_eq!(ETHER_HEADER_LEN + repr.ip_len() + d.trailer_len, len);
            prop_assert!(d.trailer_zero);
            prop_assert!(d.ip_checksum_ok);
            prop_assert!(d.l4_checksum_ok);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_frames(
            at in 0usize..66, value in any::<u8>(), cut in 0usize..67,
        ) {
            let mut buf = [0u8; 66];
            syn().emit(&mut buf).unwrap();
            buf[at] = value;
            let _ = decode(&buf[..cut]);
        }
    }
}
