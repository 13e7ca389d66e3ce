//! IPv4 headers (RFC 791).
//!
//! ```text
//!  0       4       8               16    19                        32
//! +-------+-------+---------------+-----+-------------------------+
//! |version|  IHL  |  DSCP  | ECN  |        total length           |
//! +-------+-------+---------------+-----+-------------------------+
//! |        identification         |0|DF|MF|  fragment offset (x8) |
//! +---------------+---------------+-------------------------------+
//! |      TTL      |   protocol    |        header checksum        |
//! +---------------+---------------+-------------------------------+
//! |                        source address                         |
//! |                     destination address                       |
//! |                 options (IHL * 4 - 20 bytes)                  |
//! +---------------------------------------------------------------+
//! ```
//!
//! Invariant: after [`Packet::check_len`], `20 <= header_len <= total_len
//! <= buffer length`, so [`Packet::options`] and [`Packet::payload`] never
//! panic. Bytes past the total length (Ethernet padding) are not payload.

use core::net::Ipv4Addr;

use super::{be16, checksum, field::*, put16, WireError};

mod field {
    use super::Field;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
    pub const HEADER_LEN: usize = 20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// The TTL dpf puts on the packets it originates.
pub const DEFAULT_TTL: u8 = 64;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
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

    /// Checks the header and total lengths against each other and the
    /// buffer (RFC 791 §3.1: IHL >= 5; RFC 1122 §3.2.1.1/.2 checks).
    /// Does not check the version: see [`Repr::parse`].
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        let total_len = usize::from(self.total_len());
        if header_len < field::HEADER_LEN {
            Err(WireError::BadIpHeaderLen)
        } else if header_len > len {
            Err(WireError::Truncated)
        } else if total_len < header_len {
            Err(WireError::BadIpHeaderLen)
        } else if total_len > len {
            Err(WireError::BadIpTotalLen)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// IP version (4 for a valid packet).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The type-of-service byte (DSCP << 2 | ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// DSCP.
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// ECN bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// Total length in bytes (header + payload).
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    fn flags_frag(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS_FRAG)
    }

    /// Don't Fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_frag() & FLAG_DF != 0
    }

    /// More Fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_frag() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_frag() & FRAG_OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (MF set or a non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Source address bytes.
    #[inline]
    pub fn src_octets(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    /// Destination address bytes.
    #[inline]
    pub fn dst_octets(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src_octets())
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst_octets())
    }

    /// Options (the header past 20 bytes).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER_LEN..self.header_len()]
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload: from the end of the header to the total length.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether the header checksum is correct (always computes, also under
    /// `cfg(fuzzing)`).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.header()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version and IHL from a header length in bytes (a multiple of 4).
    #[inline]
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = version << 4 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the type-of-service byte.
    #[inline]
    pub fn set_tos(&mut self, value: u8) {
        self.buffer.as_mut()[field::TOS] = value;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets DF, MF and the fragment offset (in bytes, a multiple of 8).
    #[inline]
    pub fn set_flags_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & FRAG_OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        put16(self.buffer.as_mut(), field::FLAGS_FRAG, v);
    }

    /// Sets the TTL.
    #[inline]
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    #[inline]
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&value.octets());
    }

    /// Computes and writes the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::data(self.header()));
        self.set_checksum(c);
    }

    /// Decrements the TTL by one and updates the checksum incrementally
    /// (RFC 1624); returns the new TTL. A TTL of 0 stays 0.
    #[inline]
    pub fn decrement_ttl(&mut self) -> u8 {
        let ttl = self.ttl();
        if ttl == 0 {
            return 0;
        }
        let old = be16(self.buffer.as_ref(), field::TTL);
        self.set_ttl(ttl - 1);
        let new = be16(self.buffer.as_ref(), field::TTL);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
        ttl - 1
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// An IPv4 header without options. Fragmentation is not represented:
/// `emit` writes an unfragmented packet (check [`Packet::is_fragment`]
/// before relying on a parsed one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub protocol: u8,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Type-of-service byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
}

impl Repr {
    /// Parses a checked packet: version 4 and a correct header checksum
    /// (skipped under `cfg(fuzzing)`); options are skipped.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(WireError::BadIpVersion);
        }
        if !cfg!(fuzzing) && !packet.verify_checksum() {
            return Err(WireError::BadIpChecksum);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Header length this emits: 20.
    pub const fn buffer_len(&self) -> usize {
        field::HEADER_LEN
    }

    /// Writes the header (checksum last) into the first 20 bytes; the
    /// buffer must also hold the payload for the total length to be true.
    /// `payload_len` must be at most 65515.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_and_header_len(4, field::HEADER_LEN);
        packet.set_tos(self.tos);
        packet.set_total_len((field::HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.set_flags_frag(self.dont_frag, false, 0);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ICMP echo request 192.168.1.10 -> 192.168.1.1 (ping, 56 data
    /// bytes): IPv4 header of a real Linux ping, checksum 0x9b07.
    pub(crate) const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x01, 0x9b, 0x07, 0xc0, 0xa8, 0x01,
        0x0a, 0xc0, 0xa8, 0x01, 0x01,
    ];

    /// IPv4 header with a 4-byte Router Alert option (RFC 2113) and a
    /// 4-byte payload; IGMP to 224.0.0.22; checksum 0xfac4.
    const WITH_OPTIONS: [u8; 28] = [
        0x46, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0xfa, 0xc4, 0x0a, 0x00, 0x00,
        0x01, 0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef,
    ];

    fn full_header() -> Vec<u8> {
        let mut v = HEADER.to_vec();
        v.extend((0..64).map(|i| i as u8));
        v
    }

    #[test]
    fn deconstruct() {
        let bytes = full_header();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 84);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 1);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 10));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(p.payload().len(), 64);
        assert!(p.options().is_empty());
        assert!(p.verify_checksum());
    }

    #[test]
    fn options_and_checksum() {
        let p = Packet::new_checked(&WITH_OPTIONS[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
        let mut broken = WITH_OPTIONS;
        broken[21] ^= 1;
        let p = Packet::new_checked(&broken[..]).unwrap();
        assert!(!p.verify_checksum());
        #[cfg(not(fuzzing))]
        assert_eq!(Repr::parse(&p).unwrap_err(), WireError::BadIpChecksum);
    }

    #[test]
    fn fragments() {
        let mut bytes = full_header();
        // MF set, offset 0: a first fragment.
        bytes[6] = 0x20;
        bytes[7] = 0x00;
        let p = Packet::new_unchecked(&bytes[..]);
        assert!(p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        // Offset 185 * 8 = 1480, last fragment.
        bytes[6] = 0x00;
        bytes[7] = 0xb9;
        let p = Packet::new_unchecked(&bytes[..]);
        assert!(!p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
    }

    #[test]
    fn length_errors() {
        let bytes = full_header();
        assert_eq!(
            Packet::new_checked(&bytes[..19]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Packet::new_checked(&bytes[..83]).unwrap_err(),
            WireError::BadIpTotalLen
        );
        let mut b = bytes.clone();
        b[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::BadIpHeaderLen
        );
        let mut b = bytes.clone();
        b[2] = 0;
        b[3] = 19;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::BadIpHeaderLen
        );
        let mut b = bytes.clone();
        b[0] = 0x4f;
        assert_eq!(
            Packet::new_checked(&b[..40]).unwrap_err(),
            WireError::Truncated
        );
        let mut b = bytes;
        b[0] = 0x65;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap_err(), WireError::BadIpVersion);
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut bytes = WITH_OPTIONS.to_vec();
        bytes.extend([0u8; 18]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn decrement_ttl_keeps_checksum_valid() {
        let mut bytes = full_header();
        let mut p = Packet::new_checked(&mut bytes[..]).unwrap();
        assert_eq!(p.decrement_ttl(), 63);
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), 0x9c07);
    }

    #[test]
    fn parse_and_emit() {
        let bytes = full_header();
        let repr = Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.payload_len, 64);
        let mut out = [0u8; 20];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, HEADER);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.options(), p.payload(), p.verify_checksum(), p.frag_offset());
                let _ = Repr::parse(&p);
            }
        }

        #[test]
        fn repr_round_trip(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), protocol in any::<u8>(),
            payload_len in 0usize..64, ttl in any::<u8>(), tos in any::<u8>(),
            ident in any::<u16>(), dont_frag in any::<bool>(),
        ) {
            let repr = Repr {
                src_addr: src.into(), dst_addr: dst.into(), protocol, payload_len, ttl, tos,
                ident, dont_frag,
            };
            let mut buf = vec![0u8; repr.buffer_len() + payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
        }
    }
}
