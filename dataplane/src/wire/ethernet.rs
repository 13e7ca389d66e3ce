//! Ethernet II frames with at most one IEEE 802.1Q VLAN tag.
//!
//! ```text
//!  0      6      12         14        16        18
//! +------+------+----------+---------+---------+---------
//! | dst  | src  | 0x8100   | TCI     | type    | payload      tagged
//! +------+------+----------+---------+---------+---------
//! | dst  | src  | type     | payload                         untagged
//! +------+------+----------+---------------------------
//! TCI = PCP(3) DEI(1) VID(12)
//! ```
//!
//! Invariant: after [`Frame::check_len`] the whole header, including the
//! tag when the outer EtherType is 802.1Q, is in the buffer. An 802.1ad or
//! second 802.1Q tag is not stripped: it is reported as the EtherType.

use core::fmt;

use super::{be16, field::*, put16, WireError};

/// An EtherType value.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// IEEE 802.1ad service tag (QinQ outer tag).
    pub const QINQ: EtherType = EtherType(0x88a8);
}

impl fmt::Debug for EtherType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("IPv4"),
            EtherType::ARP => f.write_str("ARP"),
            EtherType::VLAN => f.write_str("802.1Q"),
            EtherType::IPV6 => f.write_str("IPv6"),
            EtherType::QINQ => f.write_str("802.1ad"),
            EtherType(other) => write!(f, "0x{other:04x}"),
        }
    }
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    /// ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);
    /// 00:00:00:00:00:00.
    pub const ZERO: EthernetAddress = EthernetAddress([0; 6]);

    /// From a 6-byte slice; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<EthernetAddress> {
        <[u8; 6]>::try_from(bytes).ok().map(EthernetAddress)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    /// The broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// A group address (I/G bit set; includes broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// An individual address (I/G bit clear).
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// A locally administered address (U/L bit set), as CARP's virtual
    /// MACs are not (00:00:5e:00:01:vhid is IANA's).
    pub fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// The IPv6 multicast MAC 33:33:xx:xx:xx:xx for a multicast group
    /// (RFC 2464 §7).
    pub fn ipv6_multicast(group: &[u8; 16]) -> EthernetAddress {
        EthernetAddress([0x33, 0x33, group[12], group[13], group[14], group[15]])
    }
}

impl fmt::Debug for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

mod field {
    use super::Field;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: usize = 12;
    pub const TCI: usize = 14;
    pub const INNER_ETHERTYPE: usize = 16;
    pub const HEADER_LEN: usize = 14;
    pub const TAGGED_HEADER_LEN: usize = 18;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Length of an Ethernet header with one 802.1Q tag.
pub const TAGGED_HEADER_LEN: usize = field::TAGGED_HEADER_LEN;
/// The largest VLAN identifier (4095 is reserved).
pub const MAX_VLAN_ID: u16 = 4094;

/// A view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking it; getters may panic.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after [`Frame::check_len`].
    pub fn new_checked(buffer: T) -> Result<Frame<T>, WireError> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the header (and the VLAN tag, if the outer EtherType
    /// says there is one) fits in the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN || len < self.header_len() {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC.
    #[inline]
    pub fn dst_addr(&self) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DESTINATION]);
        EthernetAddress(a)
    }

    /// Source MAC.
    #[inline]
    pub fn src_addr(&self) -> EthernetAddress {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SOURCE]);
        EthernetAddress(a)
    }

    /// The EtherType at offset 12 (0x8100 for a tagged frame).
    #[inline]
    pub fn outer_ethertype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }

    /// Whether the frame carries an 802.1Q tag.
    #[inline]
    pub fn is_tagged(&self) -> bool {
        self.outer_ethertype() == EtherType::VLAN
    }

    /// Header length: 18 when tagged, else 14.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.is_tagged() {
            field::TAGGED_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }

    /// The tag control information of a tagged frame.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_tagged()
            .then(|| be16(self.buffer.as_ref(), field::TCI))
    }

    /// The 12-bit VLAN identifier of a tagged frame.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|tci| tci & 0x0fff)
    }

    /// The EtherType of the payload (after the tag when tagged).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        if self.is_tagged() {
            EtherType(be16(self.buffer.as_ref(), field::INNER_ETHERTYPE))
        } else {
            self.outer_ethertype()
        }
    }

    /// The payload after the header (and tag).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::DESTINATION].copy_from_slice(&value.0);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src_addr(&mut self, value: EthernetAddress) {
        self.buffer.as_mut()[field::SOURCE].copy_from_slice(&value.0);
    }

    /// Sets the EtherType at offset 12.
    #[inline]
    pub fn set_outer_ethertype(&mut self, value: EtherType) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, value.0);
    }

    /// Sets the TCI of a tagged frame (the outer EtherType must be 0x8100).
    #[inline]
    pub fn set_vlan_tci(&mut self, tci: u16) {
        put16(self.buffer.as_mut(), field::TCI, tci);
    }

    /// Sets the payload EtherType (after the tag when tagged).
    #[inline]
    pub fn set_ethertype(&mut self, value: EtherType) {
        if self.is_tagged() {
            put16(self.buffer.as_mut(), field::INNER_ETHERTYPE, value.0);
        } else {
            self.set_outer_ethertype(value);
        }
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// An Ethernet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    /// Source MAC.
    pub src_addr: EthernetAddress,
    /// Destination MAC.
    pub dst_addr: EthernetAddress,
    /// 802.1Q VLAN identifier (priority and DEI are emitted as 0).
    pub vlan_id: Option<u16>,
    /// Payload EtherType.
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header of a checked frame.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr, WireError> {
        frame.check_len()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan_id: frame.vlan_id(),
            ethertype: frame.ethertype(),
        })
    }

    /// Header length this emits: 14 or 18.
    pub const fn buffer_len(&self) -> usize {
        if self.vlan_id.is_some() {
            field::TAGGED_HEADER_LEN
        } else {
            field::HEADER_LEN
        }
    }

    /// Writes the header into the first [`Repr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        match self.vlan_id {
            Some(vid) => {
                frame.set_outer_ethertype(EtherType::VLAN);
                frame.set_vlan_tci(vid & 0x0fff);
                frame.set_ethertype(self.ethertype);
            }
            None => frame.set_outer_ethertype(self.ethertype),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Broadcast ARP request from 52:54:00:12:34:56, tagged VLAN 100 prio 3.
    const TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x81, 0x00, 0x60,
        0x64, 0x08, 0x06, 0x00, 0x01,
    ];
    const UNTAGGED: [u8; 16] = [
        0x00, 0x00, 0x5e, 0x00, 0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60,
        0x00,
    ];

    #[test]
    fn deconstruct_tagged() {
        let f = Frame::new_checked(&TAGGED[..]).unwrap();
        assert!(f.dst_addr().is_broadcast());
        assert!(f.dst_addr().is_multicast());
        assert_eq!(
            f.src_addr(),
            EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert!(f.src_addr().is_unicast());
        assert!(f.is_tagged());
        assert_eq!(f.vlan_tci(), Some(0x6064));
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn deconstruct_untagged() {
        let f = Frame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst_addr().to_string(), "00:00:5e:00:01:01");
        assert!(!f.dst_addr().is_multicast());
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.ethertype(), EtherType::IPV6);
        assert_eq!(f.payload(), &[0x60, 0x00]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&TAGGED[..13]).unwrap_err(),
            WireError::Truncated
        );
        // Says tagged but the tag is cut.
        assert_eq!(
            Frame::new_checked(&TAGGED[..17]).unwrap_err(),
            WireError::Truncated
        );
        assert!(Frame::new_checked(&TAGGED[..18]).is_ok());
    }

    #[test]
    fn emit_matches_bytes() {
        let repr = Repr::parse(&Frame::new_checked(&UNTAGGED[..]).unwrap()).unwrap();
        let mut buf = [0u8; 14];
        repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
        assert_eq!(&buf[..], &UNTAGGED[..14]);

        let tagged = Repr {
            vlan_id: Some(100),
            ethertype: EtherType::ARP,
            ..repr
        };
        let mut buf = [0u8; 18];
        tagged.emit(&mut Frame::new_unchecked(&mut buf[..]));
        assert_eq!(buf[12..18], [0x81, 0x00, 0x00, 0x64, 0x08, 0x06]);
    }

    #[test]
    fn ipv6_multicast_mac() {
        let mut g = [0u8; 16];
        g[0] = 0xff;
        g[1] = 0x02;
        g[11] = 0x01;
        g[12] = 0xff;
        g[13] = 0x00;
        g[14] = 0x00;
        g[15] = 0x01;
        assert_eq!(
            EthernetAddress::ipv6_multicast(&g),
            EthernetAddress([0x33, 0x33, 0xff, 0, 0, 1])
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(f) = Frame::new_checked(&bytes[..]) {
                let _ = (f.dst_addr(), f.src_addr(), f.vlan_id(), f.ethertype(), f.payload());
                let _ = Repr::parse(&f);
            }
        }

        #[test]
        fn repr_round_trip(
            src in any::<[u8; 6]>(), dst in any::<[u8; 6]>(),
            vlan in proptest::option::of(0u16..4095), et in any::<u16>(),
        ) {
            prop_assume!(et != 0x8100);
            let repr = Repr {
                src_addr: EthernetAddress(src),
                dst_addr: EthernetAddress(dst),
                vlan_id: vlan,
                ethertype: EtherType(et),
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
            let parsed = Repr::parse(&Frame::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(parsed, repr);
        }
    }
}
