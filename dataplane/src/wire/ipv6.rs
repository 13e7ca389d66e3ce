//! IPv6 fixed headers (RFC 8200 §3) and the walk over extension headers
//! (§4) to the upper-layer header.
//!
//! ```text
//!  0       4               12                      32
//! +-------+---------------+------------------------+
//! |version| traffic class |       flow label       |
//! +-------+-------+-------+--------+---------------+
//! |        payload length          | next  | hop   |
//! |                                | header| limit |
//! +--------------------------------+-------+-------+
//! |            source address (16 bytes)           |
//! |         destination address (16 bytes)        |
//! +------------------------------------------------+
//! extension header:  | next header | hdr ext len (8-byte units, minus 1) | ...
//! fragment header:   | next header | 0 | offset (13 bits) | 00 | M | identification (32) |
//! ```
//!
//! Invariants: after [`Packet::check_len`], `40 + payload_len <= buffer
//! length`. [`walk_ext_headers`] visits at most [`MAX_EXT_HEADERS`]
//! headers and only reads inside the slice it is given.

use core::net::Ipv6Addr;

use super::{be16, be32, field::*, put16, put32, WireError};

mod field {
    use super::Field;
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Field = 8..24;
    pub const DST: Field = 24..40;
    pub const HEADER_LEN: usize = 40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Extension headers walked at most before giving up
/// ([`WireError::TooManyIpv6ExtHeaders`]).
pub const MAX_EXT_HEADERS: usize = 8;
/// The hop limit dpf puts on the packets it originates (neighbour
/// discovery uses 255 instead, RFC 4861 §4).
pub const DEFAULT_HOP_LIMIT: u8 = 64;

/// Next-header values of the extension headers dpf walks, and the
/// terminator.
pub mod ext {
    /// Hop-by-hop options (must come first, RFC 8200 §4.1).
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// No next header.
    pub const NO_NEXT_HEADER: u8 = 59;
    /// Destination options.
    pub const DST_OPTIONS: u8 = 60;
    /// IP authentication header (RFC 4302): length in 4-byte units.
    pub const AH: u8 = 51;
}

/// Hop-by-hop option types pf tells apart (RFC 8200 §4.2, RFC 2711).
pub mod hbh_option {
    /// One byte of padding.
    pub const PAD1: u8 = 0;
    /// N bytes of padding.
    pub const PADN: u8 = 1;
    /// Router alert (MLD, RSVP).
    pub const ROUTER_ALERT: u8 = 5;
}

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; getters may panic.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks that the fixed header and the payload length fit.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN {
            Err(WireError::Truncated)
        } else if self.total_len() > len {
            Err(WireError::BadIpTotalLen)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (6 for a valid packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload length (everything after the fixed header).
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// 40 + payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        field::HEADER_LEN + usize::from(self.payload_len())
    }

    /// Next header of the fixed header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address bytes.
    #[inline]
    pub fn src_octets(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// Destination address bytes.
    #[inline]
    pub fn dst_octets(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src_octets())
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst_octets())
    }

    /// The payload (extension headers included) up to the payload length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER_LEN..self.total_len()]
    }

    /// Walks the extension headers of the payload; offsets in the result
    /// are relative to [`Packet::payload`].
    #[inline]
    pub fn upper_layer(&self) -> Result<UpperLayer, WireError> {
        walk_ext_headers(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version, traffic class and flow label.
    #[inline]
    pub fn set_version_tc_flow(&mut self, version: u8, traffic_class: u8, flow_label: u32) {
        let v = u32::from(version) << 28 | u32::from(traffic_class) << 20 | flow_label & 0xf_ffff;
        put32(self.buffer.as_mut(), field::VER_TC_FLOW, v);
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = value;
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&value.octets());
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        &mut self.buffer.as_mut()[field::HEADER_LEN..end]
    }
}

/// Where the upper-layer header of an IPv6 packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UpperLayer {
    /// Upper-layer protocol (the last next-header value; 59 for none).
    pub protocol: u8,
    /// Offset of the upper-layer header from the start of the slice
    /// walked (the IPv6 payload).
    pub offset: usize,
    /// Whether a fragment header with a non-zero offset or the M flag was
    /// seen. An atomic fragment (offset 0, M clear) is processed as a
    /// whole packet (RFC 6946 §4) and is not flagged.
    pub fragment: bool,
    /// Fragment offset in bytes. When non-zero there is no upper-layer
    /// header here: `offset` points at fragment data.
    pub frag_offset: u16,
    /// A routing header (of a type other than 0) was walked: pf blocks
    /// the packet unless the rule says `allow-opts`.
    pub routing: bool,
    /// The hop-by-hop header carried an option other than padding and
    /// router alert (also blocked without `allow-opts`).
    pub hbh_options: bool,
    /// The hop-by-hop header carried a router alert (allowed for MLD).
    pub router_alert: bool,
}

/// Walks hop-by-hop (0), routing (43), destination options (60),
/// authentication (51) and fragment (44) headers starting with
/// `next_header` over `payload`, and returns the upper-layer protocol,
/// where it starts and which options pf cares about (pf's
/// `pf_walk_header6` / `pf_walk_option6`).
///
/// Errors: [`WireError::Truncated`] when a header does not fit,
/// [`WireError::BadIpv6ExtHeader`] for a hop-by-hop header that is not
/// first (RFC 8200 §4.1), a second fragment or routing header, or a
/// malformed hop-by-hop option, [`WireError::Ipv6RoutingType0`] for a type
/// 0 routing header (RFC 5095 §3; pf drops it),
/// [`WireError::TooManyIpv6ExtHeaders`] past [`MAX_EXT_HEADERS`].
#[inline]
pub fn walk_ext_headers(next_header: u8, payload: &[u8]) -> Result<UpperLayer, WireError> {
    let mut nh = next_header;
    let mut up = UpperLayer::default();
    let mut seen_fragment_header = false;
    for index in 0..=MAX_EXT_HEADERS {
        let at_ext = matches!(
            nh,
            ext::HOP_BY_HOP | ext::ROUTING | ext::DST_OPTIONS | ext::FRAGMENT | ext::AH
        );
        if !at_ext {
            up.protocol = nh;
            return Ok(up);
        }
        if index == MAX_EXT_HEADERS {
            break;
        }
        // Every extension header is at least 8 bytes.
        let hdr = payload
            .get(up.offset..up.offset + 8)
            .ok_or(WireError::Truncated)?;
        match nh {
            ext::FRAGMENT => {
                if seen_fragment_header {
                    return Err(WireError::BadIpv6ExtHeader);
                }
                seen_fragment_header = true;
                let off_m = be16(hdr, 2);
                let frag_offset = off_m & 0xfff8;
                let more = off_m & 0x0001 != 0;
                nh = hdr[0];
                up.offset += 8;
                if frag_offset != 0 {
                    up.protocol = nh;
                    up.fragment = true;
                    up.frag_offset = frag_offset;
                    return Ok(up);
                }
                up.fragment = more;
            }
            _ => {
                if nh == ext::HOP_BY_HOP && index != 0 {
                    return Err(WireError::BadIpv6ExtHeader);
                }
                if nh == ext::ROUTING {
                    if hdr[2] == 0 {
                        return Err(WireError::Ipv6RoutingType0);
                    }
                    if up.routing {
                        return Err(WireError::BadIpv6ExtHeader);
                    }
                    up.routing = true;
                }
                let len = if nh == ext::AH {
                    (usize::from(hdr[1]) + 2) * 4
                } else {
                    (usize::from(hdr[1]) + 1) * 8
                };
                let body = payload
                    .get(up.offset..up.offset + len)
                    .ok_or(WireError::BadIpv6ExtHeader)?;
                if nh == ext::HOP_BY_HOP {
                    walk_hbh_options(&body[2..], &mut up)?;
                }
                nh = hdr[0];
                up.offset += len;
            }
        }
    }
    Err(WireError::TooManyIpv6ExtHeaders)
}

/// The options of a hop-by-hop header (TLVs after its first two bytes).
fn walk_hbh_options(opts: &[u8], up: &mut UpperLayer) -> Result<(), WireError> {
    let mut at = 0;
    while at < opts.len() {
        let ty = opts[at];
        if ty == hbh_option::PAD1 {
            at += 1;
            continue;
        }
        let len = usize::from(*opts.get(at + 1).ok_or(WireError::BadIpv6ExtHeader)?);
        if at + 2 + len > opts.len() {
            return Err(WireError::BadIpv6ExtHeader);
        }
        match ty {
            hbh_option::PADN => {}
            hbh_option::ROUTER_ALERT => up.router_alert = true,
            _ => up.hbh_options = true,
        }
        at += 2 + len;
    }
    Ok(())
}

/// An IPv6 fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next header of the fixed header.
    pub next_header: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Parses a checked packet (version 6).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(WireError::BadIpVersion);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Header length this emits: 40.
    pub const fn buffer_len(&self) -> usize {
        field::HEADER_LEN
    }

    /// Writes the fixed header into the first 40 bytes. `payload_len` must
    /// be at most 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_tc_flow(6, self.traffic_class, self.flow_label);
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2001:db8::1 -> 2001:db8::2, hop-by-hop (PadN) + fragment header
    /// (offset 0, M set, id 0x12345678) + 8 bytes of UDP header.
    const HBH_FRAG_UDP: [u8; 64] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x18, 0x00, 0x40, // ver, plen 24, nh HBH, hlim 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // src
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // dst
        0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, // HBH -> frag, PadN(4)
        0x11, 0x00, 0x00, 0x01, 0x12, 0x34, 0x56, 0x78, // frag -> UDP, off 0, M
        0x30, 0x39, 0x00, 0x35, 0x00, 0x10, 0x00, 0x00, // UDP 12345 -> 53
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&HBH_FRAG_UDP[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.payload_len(), 24);
        assert_eq!(p.next_header(), 0);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.dst_addr(), "2001:db8::2".parse::<Ipv6Addr>().unwrap());
        let ul = p.upper_layer().unwrap();
        assert_eq!(
            ul,
            UpperLayer {
                protocol: 17,
                offset: 16,
                fragment: true,
                frag_offset: 0,
                ..UpperLayer::default()
            }
        );
        assert_eq!(
            p.payload()[ul.offset..ul.offset + 4],
            [0x30, 0x39, 0x00, 0x35]
        );
    }

    #[test]
    fn non_first_fragment_stops_walk() {
        let mut b = HBH_FRAG_UDP;
        b[50] = 0x05; // offset 0x05a8 >> 3 -> 181 * 8 = 1448
        b[51] = 0xa8;
        let p = Packet::new_checked(&b[..]).unwrap();
        let ul = p.upper_layer().unwrap();
        assert!(ul.fragment);
        assert_eq!(ul.frag_offset, 1448);
        assert_eq!(ul.offset, 16);
    }

    #[test]
    fn atomic_fragment_is_whole() {
        let mut b = HBH_FRAG_UDP;
        b[51] = 0x00;
        let ul = Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert!(!ul.fragment);
        assert_eq!(ul.protocol, 17);
    }

    #[test]
    fn ext_header_errors() {
        // Payload length past the frame.
        assert_eq!(
            Packet::new_checked(&HBH_FRAG_UDP[..63]).unwrap_err(),
            WireError::BadIpTotalLen
        );
        // Hop-by-hop after the fragment header.
        let mut b = HBH_FRAG_UDP;
        b[48] = 0;
        assert_eq!(
            walk_ext_headers(0, &b[40..]).unwrap_err(),
            WireError::BadIpv6ExtHeader
        );
        // Two fragment headers.
        assert_eq!(
            walk_ext_headers(44, &b[48..]).unwrap_err(),
            WireError::BadIpv6ExtHeader
        );
        let two = [0x2c, 0, 0, 1, 0, 0, 0, 1, 0x11, 0, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            walk_ext_headers(44, &two).unwrap_err(),
            WireError::BadIpv6ExtHeader
        );
        // Routing header type 0.
        let rh0 = [0x11, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            walk_ext_headers(43, &rh0).unwrap_err(),
            WireError::Ipv6RoutingType0
        );
        // Routing header type 4 (SRH) is walked.
        let rh4 = [0x06, 0, 4, 0, 0, 0, 0, 0];
        assert_eq!(walk_ext_headers(43, &rh4).unwrap().protocol, 6);
        // Header length past the payload.
        let long = [0x11, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            walk_ext_headers(60, &long).unwrap_err(),
            WireError::BadIpv6ExtHeader
        );
        assert_eq!(
            walk_ext_headers(60, &long[..7]).unwrap_err(),
            WireError::Truncated
        );
        // Too many destination options headers.
        let mut many = Vec::new();
        for _ in 0..MAX_EXT_HEADERS + 1 {
            many.extend([60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            walk_ext_headers(60, &many).unwrap_err(),
            WireError::TooManyIpv6ExtHeaders
        );
        // Exactly the maximum is fine.
        let last = many.len() - 8;
        many[last - 8] = 6;
        let ul = walk_ext_headers(60, &many[..last]).unwrap();
        assert_eq!((ul.protocol, ul.offset), (6, last));
    }

    #[test]
    fn no_next_header() {
        let ul = walk_ext_headers(59, &[]).unwrap();
        assert_eq!((ul.protocol, ul.offset, ul.fragment), (59, 0, false));
    }

    #[test]
    fn parse_and_emit() {
        let p = Packet::new_checked(&HBH_FRAG_UDP[..]).unwrap();
        let repr = Repr::parse(&p).unwrap();
        let mut out = [0u8; 40];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out[..], HBH_FRAG_UDP[..40]);
        let mut v4 = HBH_FRAG_UDP;
        v4[0] = 0x45;
        let p = Packet::new_checked(&v4[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap_err(), WireError::BadIpVersion);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.payload(), p.flow_label(), p.traffic_class());
                let _ = Repr::parse(&p);
                if let Ok(ul) = p.upper_layer() {
                    prop_assert!(ul.offset <= p.payload().len());
                }
            }
        }

        #[test]
        fn walk_arbitrary_never_panics(nh in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(ul) = walk_ext_headers(nh, &bytes) {
                prop_assert!(ul.offset <= bytes.len());
            }
        }

        #[test]
        fn repr_round_trip(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), nh in any::<u8>(),
            payload_len in 0usize..64, hop_limit in any::<u8>(), tc in any::<u8>(),
            flow in 0u32..0x10_0000,
        ) {
            let repr = Repr {
                src_addr: src.into(), dst_addr: dst.into(), next_header: nh, payload_len,
                hop_limit, traffic_class: tc, flow_label: flow,
            };
            let mut buf = vec![0u8; repr.buffer_len() + payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }
    }
}
