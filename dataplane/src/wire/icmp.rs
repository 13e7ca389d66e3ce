//! ICMP for IPv4 (RFC 792): echo and the other queries, and the error
//! messages that quote the offending packet.
//!
//! ```text
//!  0       8       16              32
//! +-------+-------+---------------+
//! | type  | code  |   checksum    |
//! +-------+-------+---------------+
//! |  identifier   | sequence no.  |   echo, timestamp, info, mask
//! |    unused     | next-hop MTU  |   destination unreachable (code 4: RFC 1191)
//! | ptr   |        unused         |   parameter problem
//! |        gateway address        |   redirect
//! +-------------------------------+
//! | data: echo payload, or the quoted IP header + at least 8 bytes
//! ```
//!
//! Invariant: after [`Packet::check_len`] the 8-byte header is present;
//! the checksum covers the whole buffer, so the view's buffer is exactly
//! the ICMP message (the IP payload).

use core::net::Ipv4Addr;

use super::{be16, be32, checksum, put16, put32, WireError};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ_NO: usize = 6;
    pub const REST: usize = 4;
    pub const HEADER_LEN: usize = 8;
}

/// Length of the ICMP header (type, code, checksum, 4 more bytes).
pub const HEADER_LEN: usize = field::HEADER_LEN;

/// ICMPv4 message types.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated by RFC 6633, still quoted by pf).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 9;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 10;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;
    /// Information request.
    pub const INFO_REQUEST: u8 = 15;
    /// Information reply.
    pub const INFO_REPLY: u8 = 16;
    /// Address mask request.
    pub const MASK_REQUEST: u8 = 17;
    /// Address mask reply.
    pub const MASK_REPLY: u8 = 18;
}

/// Destination unreachable codes.
pub mod unreach {
    /// Network unreachable.
    pub const NET: u8 = 0;
    /// Host unreachable.
    pub const HOST: u8 = 1;
    /// Protocol unreachable.
    pub const PROTOCOL: u8 = 2;
    /// Port unreachable.
    pub const PORT: u8 = 3;
    /// Fragmentation needed and DF set (carries the next-hop MTU).
    pub const NEED_FRAG: u8 = 4;
    /// Communication administratively prohibited (RFC 1812).
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Whether a type is an error that quotes a packet (pf's
/// `pf_icmp_mapping`: unreachable, source quench, redirect, time
/// exceeded, parameter problem).
#[inline]
pub const fn is_error(t: u8) -> bool {
    matches!(
        t,
        msg_type::DST_UNREACHABLE
            | msg_type::SOURCE_QUENCH
            | msg_type::REDIRECT
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAM_PROBLEM
    )
}

/// Whether a type is a query carrying an identifier at offset 4 (echo,
/// timestamp, information, address mask, and their replies).
#[inline]
pub const fn is_query(t: u8) -> bool {
    matches!(
        t,
        msg_type::ECHO_REPLY
            | msg_type::ECHO_REQUEST
            | msg_type::TIMESTAMP
            | msg_type::TIMESTAMP_REPLY
            | msg_type::INFO_REQUEST
            | msg_type::INFO_REPLY
            | msg_type::MASK_REQUEST
            | msg_type::MASK_REPLY
    )
}

/// A view of an ICMPv4 message.
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

    /// Checks that the 8-byte header fits.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        if self.buffer.as_ref().len() < field::HEADER_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Identifier of a query.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// Sequence number of a query.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SEQ_NO)
    }

    /// Next-hop MTU of a "fragmentation needed" (RFC 1191 §4).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SEQ_NO)
    }

    /// Pointer of a parameter problem.
    #[inline]
    pub fn pointer(&self) -> u8 {
        self.buffer.as_ref()[field::REST]
    }

    /// Gateway of a redirect.
    #[inline]
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.rest_of_header())
    }

    /// The four bytes after the checksum, whatever the type.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }

    /// The data after the header (echo payload, or the quoted packet).
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER_LEN..]
    }

    /// Whether the checksum over the whole message is correct (always
    /// computes, also under `cfg(fuzzing)`).
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Sets the query identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets the query sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::SEQ_NO, value);
    }

    /// Sets the four bytes after the checksum.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        put32(self.buffer.as_mut(), field::REST, value);
    }

    /// The data, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::HEADER_LEN..]
    }

    /// Computes and writes the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::data(self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

/// An ICMPv4 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Echo request (type 8, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Echo reply (type 0, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Destination unreachable (type 3).
    DstUnreachable {
        /// Code (see [`unreach`]).
        code: u8,
        /// Next-hop MTU for code 4, else 0.
        next_hop_mtu: u16,
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Source quench (type 4).
    SourceQuench {
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Redirect (type 5).
    Redirect {
        /// Code.
        code: u8,
        /// Better gateway.
        gateway: Ipv4Addr,
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Time exceeded (type 11).
    TimeExceeded {
        /// Code (0 in transit, 1 reassembly).
        code: u8,
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Parameter problem (type 12).
    ParamProblem {
        /// Code.
        code: u8,
        /// Offending octet.
        pointer: u8,
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Any other message, header kept raw.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// The four bytes after the checksum.
        rest: u32,
        /// Data.
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a checked message, verifying the checksum (skipped under
    /// `cfg(fuzzing)`). Echo messages with a non-zero code are `Other`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>, WireError> {
        packet.check_len()?;
        if !cfg!(fuzzing) && !packet.verify_checksum() {
            return Err(WireError::BadChecksum);
        }
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let data = &bytes[field::HEADER_LEN..];
        let code = packet.msg_code();
        Ok(match (packet.msg_type(), code) {
            (msg_type::ECHO_REQUEST, 0) => Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            },
            (msg_type::ECHO_REPLY, 0) => Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            },
            (msg_type::DST_UNREACHABLE, _) if packet.rest_of_header() >> 16 == 0 => {
                Repr::DstUnreachable {
                    code,
                    next_hop_mtu: packet.next_hop_mtu(),
                    data,
                }
            }
            (msg_type::SOURCE_QUENCH, 0) if packet.rest_of_header() == 0 => {
                Repr::SourceQuench { data }
            }
            (msg_type::REDIRECT, _) => Repr::Redirect {
                code,
                gateway: packet.gateway(),
                data,
            },
            (msg_type::TIME_EXCEEDED, _) if packet.rest_of_header() == 0 => {
                Repr::TimeExceeded { code, data }
            }
            (msg_type::PARAM_PROBLEM, _) if packet.rest_of_header() & 0x00ff_ffff == 0 => {
                Repr::ParamProblem {
                    code,
                    pointer: packet.pointer(),
                    data,
                }
            }
            (t, _) => Repr::Other {
                msg_type: t,
                code,
                rest: packet.rest_of_header(),
                data,
            },
        })
    }

    fn parts(&self) -> (u8, u8, u32, &'a [u8]) {
        match *self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (
                msg_type::ECHO_REQUEST,
                0,
                u32::from(ident) << 16 | u32::from(seq_no),
                data,
            ),
            Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (
                msg_type::ECHO_REPLY,
                0,
                u32::from(ident) << 16 | u32::from(seq_no),
                data,
            ),
            Repr::DstUnreachable {
                code,
                next_hop_mtu,
                data,
            } => (
                msg_type::DST_UNREACHABLE,
                code,
                u32::from(next_hop_mtu),
                data,
            ),
            Repr::SourceQuench { data } => (msg_type::SOURCE_QUENCH, 0, 0, data),
            Repr::Redirect {
                code,
                gateway,
                data,
            } => (msg_type::REDIRECT, code, u32::from(gateway), data),
            Repr::TimeExceeded { code, data } => (msg_type::TIME_EXCEEDED, code, 0, data),
            Repr::ParamProblem {
                code,
                pointer,
                data,
            } => (
                msg_type::PARAM_PROBLEM,
                code,
                u32::from(pointer) << 24,
                data,
            ),
            Repr::Other {
                msg_type,
                code,
                rest,
                data,
            } => (msg_type, code, rest, data),
        }
    }

    /// Message length this emits.
    pub fn buffer_len(&self) -> usize {
        field::HEADER_LEN + self.parts().3.len()
    }

    /// Writes the message into a buffer of exactly [`Repr::buffer_len`]
    /// bytes, checksum last.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let (t, code, rest, data) = self.parts();
        packet.set_msg_type(t);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest);
        packet.data_mut().copy_from_slice(data);
        packet.fill_checksum();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Linux `ping` echo request: id 0x1234, seq 1, 56 data bytes (a
    /// 16-byte timeval, then 0x10..=0x37); checksum computed independently.
    pub(crate) const ECHO_REQUEST: [u8; 64] = [
        0x08, 0x00, 0x90, 0xbf, 0x12, 0x34, 0x00, 0x01, 0x00, 0xf1, 0x53, 0x65, 0x00, 0x00, 0x00,
        0x00, 0x40, 0xe2, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
        0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24,
        0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33,
        0x34, 0x35, 0x36, 0x37,
    ];

    /// Port unreachable quoting a UDP datagram 192.168.1.10:54321 ->
    /// 192.168.1.1:53 (its IPv4 header + the 8-byte UDP header).
    pub(crate) const PORT_UNREACH: [u8; 36] = [
        0x03, 0x03, 0x1e, 0x14, 0x00, 0x00, 0x00, 0x00, // type 3 code 3
        0x45, 0x00, 0x00, 0x20, 0xab, 0xcd, 0x00, 0x00, 0x40, 0x11, 0x4b, 0xa4, 0xc0, 0xa8, 0x01,
        0x0a, 0xc0, 0xa8, 0x01, 0x01, // quoted IPv4 header
        0xd4, 0x31, 0x00, 0x35, 0x00, 0x0c, 0x0a, 0x76, // quoted UDP header
    ];

    #[test]
    fn deconstruct_echo() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq_no(), 1);
        assert_eq!(p.data().len(), 56);
        assert!(p.verify_checksum());
        assert!(is_query(p.msg_type()) && !is_error(p.msg_type()));
    }

    #[test]
    fn deconstruct_unreachable() {
        let p = Packet::new_checked(&PORT_UNREACH[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(is_error(p.msg_type()));
        let quoted = super::super::ipv4::Packet::new_unchecked(&p.data()[..20]);
        assert!(quoted.verify_checksum());
        match Repr::parse(&p).unwrap() {
            Repr::DstUnreachable {
                code,
                next_hop_mtu,
                data,
            } => {
                assert_eq!((code, next_hop_mtu, data.len()), (unreach::PORT, 0, 28));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_checksum_and_truncation() {
        assert_eq!(
            Packet::new_checked(&PORT_UNREACH[..7]).unwrap_err(),
            WireError::Truncated
        );
        let mut b = PORT_UNREACH;
        b[30] ^= 0xff;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(!p.verify_checksum());
        #[cfg(not(fuzzing))]
        assert_eq!(Repr::parse(&p).unwrap_err(), WireError::BadChecksum);
    }

    #[test]
    fn parse_and_emit() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        let repr = Repr::parse(&p).unwrap();
        assert!(matches!(
            repr,
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                ..
            }
        ));
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, ECHO_REQUEST);
        let p = Packet::new_checked(&PORT_UNREACH[..]).unwrap();
        let repr = Repr::parse(&p).unwrap();
        let mut out = [0u8; 36];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, PORT_UNREACH);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.data(), p.gateway(), p.pointer(), p.verify_checksum());
                let _ = Repr::parse(&p);
            }
        }

        #[test]
        fn repr_round_trip(
            variant in 0u8..8, code in any::<u8>(), a in any::<u16>(), b in any::<u16>(),
            rest in any::<u32>(), other_type in 19u8..,
            data in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let data = &data[..];
            let repr = match variant {
                0 => Repr::EchoRequest { ident: a, seq_no: b, data },
                1 => Repr::EchoReply { ident: a, seq_no: b, data },
                2 => Repr::DstUnreachable { code, next_hop_mtu: a, data },
                3 => Repr::SourceQuench { data },
                4 => Repr::Redirect { code, gateway: rest.into(), data },
                5 => Repr::TimeExceeded { code, data },
                6 => Repr::ParamProblem { code, pointer: a as u8, data },
                _ => Repr::Other { msg_type: other_type, code, rest, data },
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
        }
    }
}
