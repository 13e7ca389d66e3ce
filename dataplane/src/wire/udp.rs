//! UDP datagrams (RFC 768).
//!
//! ```text
//!  0               16              32
//! +---------------+---------------+
//! |  source port  |  dest port    |
//! |    length     |   checksum    |
//! |   payload ...                 |
//! +-------------------------------+
//! ```
//!
//! Invariant: after [`Packet::check_len`], `8 <= length <= buffer length`,
//! so [`Packet::payload`] never panics. A zero checksum over IPv4 means
//! "none" (RFC 768) and verifies; over IPv6 it is invalid (RFC 8200 §8.1).

use super::{be16, checksum, put16, IpPair, WireError};
use crate::flow::proto;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const HEADER_LEN: usize = 8;
}

/// Length of a UDP header.
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// A view of a UDP datagram.
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

    /// Checks that the header fits and the length field is between 8 and
    /// the buffer length.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            let field_len = usize::from(self.len());
            if field_len < field::HEADER_LEN || field_len > len {
                Err(WireError::BadUdpLen)
            } else {
                Ok(())
            }
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// Length field (header + payload).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Payload up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER_LEN..usize::from(self.len())]
    }

    /// Whether the checksum is correct; a zero checksum over IPv4 is
    /// accepted (always computes, also under `cfg(fuzzing)`).
    pub fn verify_checksum(&self, ips: &IpPair) -> bool {
        if self.checksum() == 0 {
            return matches!(ips, IpPair::V4 { .. });
        }
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::combine(&[
            ips.pseudo_header_sum(proto::UDP, u32::from(self.len())),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, value);
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Payload up to the length field, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[field::HEADER_LEN..end]
    }

    /// Computes and writes the checksum (a computed 0 is sent as 0xffff,
    /// RFC 768).
    pub fn fill_checksum(&mut self, ips: &IpPair) {
        self.set_checksum(0);
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let sum = checksum::combine(&[
            ips.pseudo_header_sum(proto::UDP, u32::from(len)),
            checksum::data(data),
        ]);
        let c = match checksum::finish(sum) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }
}

/// A UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked datagram, verifying the checksum against `ips`
    /// (skipped under `cfg(fuzzing)`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        ips: &IpPair,
    ) -> Result<Repr<'a>, WireError> {
        packet.check_len()?;
        if !cfg!(fuzzing) && !packet.verify_checksum(ips) {
            return Err(WireError::BadChecksum);
        }
        let data: &'a [u8] = packet.buffer.as_ref();
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: &data[field::HEADER_LEN..usize::from(packet.len())],
        })
    }

    /// Datagram length this emits.
    pub const fn buffer_len(&self) -> usize {
        field::HEADER_LEN + self.payload.len()
    }

    /// Writes the datagram into the first [`Repr::buffer_len`] bytes,
    /// checksum last. The payload must be at most 65527 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, ips: &IpPair) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(self.buffer_len() as u16);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(ips);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use proptest::prelude::*;

    fn ips() -> IpPair {
        IpPair::V4 {
            src: Ipv4Addr::new(192, 168, 1, 10),
            dst: Ipv4Addr::new(192, 168, 1, 1),
        }
    }

    /// DNS-ish datagram 192.168.1.10:54321 -> 192.168.1.1:53 with a 4-byte
    /// payload; checksum computed independently.
    const DATAGRAM: [u8; 12] = [
        0xd4, 0x31, 0x00, 0x35, 0x00, 0x0c, 0x0a, 0x76, 0xde, 0xad, 0xbe, 0xef,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 54321);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 12);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum(&ips()));
        assert!(!p.verify_checksum(&IpPair::V4 {
            src: Ipv4Addr::new(192, 168, 1, 11),
            dst: Ipv4Addr::new(192, 168, 1, 1),
        }));
    }

    #[test]
    fn zero_checksum() {
        let mut b = DATAGRAM;
        b[6] = 0;
        b[7] = 0;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(&ips()));
        let v6 = IpPair::V6 {
            src: Ipv6Addr::LOCALHOST,
            dst: Ipv6Addr::LOCALHOST,
        };
        assert!(!p.verify_checksum(&v6));
    }

    #[test]
    fn length_errors() {
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..7]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..11]).unwrap_err(),
            WireError::BadUdpLen
        );
        let mut b = DATAGRAM;
        b[5] = 7;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::BadUdpLen
        );
        // Trailing bytes past the length are not payload.
        let mut long = DATAGRAM.to_vec();
        long.extend([0; 6]);
        assert_eq!(Packet::new_checked(&long[..]).unwrap().payload().len(), 4);
    }

    #[test]
    fn parse_and_emit() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        let repr = Repr::parse(&p, &ips()).unwrap();
        let mut buf = [0u8; 12];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &ips());
        assert_eq!(buf, DATAGRAM);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.payload(), p.verify_checksum(&ips()));
                let _ = Repr::parse(&p, &ips());
            }
        }

        #[test]
        fn repr_round_trip(
            sp in any::<u16>(), dp in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let repr = Repr { src_port: sp, dst_port: dp, payload: &payload };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &ips());
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.checksum() != 0);
            prop_assert_eq!(Repr::parse(&p, &ips()).unwrap(), repr);
        }
    }
}
