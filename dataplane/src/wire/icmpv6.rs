//! ICMPv6 (RFC 4443): echo, the error messages, and neighbour
//! solicitation/advertisement (RFC 4861 §4.3, §4.4) with their link-layer
//! address options; router messages and redirects only by type.
//!
//! ```text
//!  0       8       16              32
//! +-------+-------+---------------+
//! | type  | code  |   checksum    |
//! +-------+-------+---------------+
//! |  identifier   | sequence no.  |  echo (128, 129)
//! |             MTU               |  packet too big (2)
//! |           pointer             |  parameter problem (4)
//! |            unused             |  unreachable (1), time exceeded (3)
//! |R|S|O|       reserved          |  neighbour advertisement (136); NS (135): reserved
//! +-------------------------------+
//! | data: echo payload, or as much of the offending packet as fits
//! | NS/NA: target address (16 bytes), then options:
//! |   | type | length (8-byte units) | ... |   1 = source, 2 = target link-layer address
//! ```
//!
//! Invariants: after [`Packet::check_len`] the 8-byte header is present,
//! and for NS/NA the 16-byte target too. The checksum covers a
//! pseudo-header and the whole buffer, so the view's buffer is exactly the
//! ICMPv6 message. The NDP option iterator stops at an option of length 0
//! (RFC 4861 §4.6 says to discard such packets; [`Repr::parse`] does).

use core::net::Ipv6Addr;

use super::{be16, be32, checksum, ethernet::EthernetAddress, put16, put32, IpPair, WireError};
use crate::flow::proto;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const IDENT: usize = 4;
    pub const SEQ_NO: usize = 6;
    pub const REST: usize = 4;
    pub const NA_FLAGS: usize = 4;
    pub const HEADER_LEN: usize = 8;
    pub const TARGET: core::ops::Range<usize> = 8..24;
    pub const ND_HEADER_LEN: usize = 24;
}

/// Length of the ICMPv6 header.
pub const HEADER_LEN: usize = field::HEADER_LEN;
/// Length of an NS/NA before its options.
pub const ND_HEADER_LEN: usize = field::ND_HEADER_LEN;
/// How much of the offending packet an error may quote: the minimum IPv6
/// MTU less the IPv6 and ICMPv6 headers (RFC 4443 §2.4(c)).
pub const MAX_ERROR_QUOTE: usize = 1280 - 40 - 8;

/// ICMPv6 message types.
pub mod msg_type {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// Redirect.
    pub const REDIRECT: u8 = 137;
}

/// Destination unreachable codes (RFC 4443 §3.1).
pub mod unreach {
    /// No route to destination.
    pub const NO_ROUTE: u8 = 0;
    /// Communication administratively prohibited.
    pub const ADMIN_PROHIBITED: u8 = 1;
    /// Address unreachable.
    pub const ADDRESS: u8 = 3;
    /// Port unreachable.
    pub const PORT: u8 = 4;
    /// Source address failed ingress/egress policy.
    pub const POLICY: u8 = 5;
    /// Reject route to destination.
    pub const REJECT_ROUTE: u8 = 6;
}

/// NDP option types.
pub mod ndp_option {
    /// Source link-layer address.
    pub const SOURCE_LL_ADDR: u8 = 1;
    /// Target link-layer address.
    pub const TARGET_LL_ADDR: u8 = 2;
}

const NA_ROUTER: u8 = 0x80;
const NA_SOLICITED: u8 = 0x40;
const NA_OVERRIDE: u8 = 0x20;

/// Whether a type is an error that quotes a packet (pf's
/// `pf_icmp_mapping`: unreachable, packet too big, time exceeded,
/// parameter problem).
#[inline]
pub const fn is_error(t: u8) -> bool {
    matches!(
        t,
        msg_type::DST_UNREACHABLE
            | msg_type::PACKET_TOO_BIG
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAM_PROBLEM
    )
}

/// Whether a type is an echo request or reply (carrying an identifier).
#[inline]
pub const fn is_query(t: u8) -> bool {
    matches!(t, msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY)
}

/// A view of an ICMPv6 message.
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

    /// Checks that the 8-byte header fits, and for NS/NA the target.
    #[inline]
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < field::HEADER_LEN || (self.is_neighbor_msg() && len < field::ND_HEADER_LEN) {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn is_neighbor_msg(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT
        )
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

    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }

    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SEQ_NO)
    }

    /// The four bytes after the checksum: MTU of packet too big, pointer
    /// of parameter problem.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        be32(self.buffer.as_ref(), field::REST)
    }

    /// Router flag of a neighbour advertisement.
    #[inline]
    pub fn na_router(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_ROUTER != 0
    }

    /// Solicited flag of a neighbour advertisement.
    #[inline]
    pub fn na_solicited(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_SOLICITED != 0
    }

    /// Override flag of a neighbour advertisement.
    #[inline]
    pub fn na_override(&self) -> bool {
        self.buffer.as_ref()[field::NA_FLAGS] & NA_OVERRIDE != 0
    }

    /// Target address of an NS/NA (`None` if the message is too short).
    #[inline]
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        let bytes = self.buffer.as_ref().get(field::TARGET)?;
        <[u8; 16]>::try_from(bytes).ok().map(Ipv6Addr::from)
    }

    /// NDP options of an NS/NA (empty if too short).
    #[inline]
    pub fn ndp_options(&self) -> NdpOptionsIter<'_> {
        NdpOptionsIter {
            rest: self
                .buffer
                .as_ref()
                .get(field::ND_HEADER_LEN..)
                .unwrap_or(&[]),
        }
    }

    /// Data after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::HEADER_LEN..]
    }

    /// Whether the checksum over pseudo-header and message is correct
    /// (always computes, also under `cfg(fuzzing)`).
    pub fn verify_checksum(&self, ips: &IpPair) -> bool {
        let data = self.buffer.as_ref();
        checksum::combine(&[
            ips.pseudo_header_sum(proto::ICMPV6, data.len() as u32),
            checksum::data(data),
        ]) == 0xffff
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

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        put16(self.buffer.as_mut(), field::SEQ_NO, value);
    }

    /// Sets the four bytes after the checksum.
    #[inline]
    pub fn set_rest_of_header(&mut self, value: u32) {
        put32(self.buffer.as_mut(), field::REST, value);
    }

    /// Sets the target address of an NS/NA (needs 24 bytes).
    #[inline]
    pub fn set_target_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::TARGET].copy_from_slice(&value.octets());
    }

    /// Data after the 8-byte header, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::HEADER_LEN..]
    }

    /// Computes and writes the checksum.
    pub fn fill_checksum(&mut self, ips: &IpPair) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            ips.pseudo_header_sum(proto::ICMPV6, data.len() as u32),
            checksum::data(data),
        ]);
        self.set_checksum(checksum::finish(sum));
    }
}

/// One NDP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdpOption<'a> {
    /// Source link-layer address (type 1) of an Ethernet sender.
    SourceLinkLayerAddr(EthernetAddress),
    /// Target link-layer address (type 2) of an Ethernet target.
    TargetLinkLayerAddr(EthernetAddress),
    /// Any other option (or a link-layer option not 8 bytes long).
    Other {
        /// Option type.
        kind: u8,
        /// Bytes after type and length.
        data: &'a [u8],
    },
}

/// Iterates over NDP options; yields `Err(Malformed)` once for a length of
/// 0 or past the end, then stops.
#[derive(Clone, Debug)]
pub struct NdpOptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> NdpOptionsIter<'a> {
    /// Iterates over `options`.
    pub fn new(options: &'a [u8]) -> Self {
        NdpOptionsIter { rest: options }
    }
}

impl<'a> Iterator for NdpOptionsIter<'a> {
    type Item = Result<NdpOption<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.rest;
        if rest.is_empty() {
            return None;
        }
        let len = match rest.get(1) {
            Some(&units) if units != 0 && usize::from(units) * 8 <= rest.len() => {
                usize::from(units) * 8
            }
            _ => {
                self.rest = &[];
                return Some(Err(WireError::Malformed));
            }
        };
        self.rest = &rest[len..];
        let kind = rest[0];
        let data = &rest[2..len];
        let mac = || EthernetAddress::from_bytes(&data[..6]);
        Some(Ok(match (kind, len) {
            (ndp_option::SOURCE_LL_ADDR, 8) => mac()
                .map(NdpOption::SourceLinkLayerAddr)
                .unwrap_or(NdpOption::Other { kind, data }),
            (ndp_option::TARGET_LL_ADDR, 8) => mac()
                .map(NdpOption::TargetLinkLayerAddr)
                .unwrap_or(NdpOption::Other { kind, data }),
            _ => NdpOption::Other { kind, data },
        }))
    }
}

/// An ICMPv6 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Echo request (128, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Echo reply (129, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Payload.
        data: &'a [u8],
    },
    /// Destination unreachable (1).
    DstUnreachable {
        /// Code (see [`unreach`]).
        code: u8,
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Packet too big (2, code 0).
    PacketTooBig {
        /// MTU of the next hop.
        mtu: u32,
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Time exceeded (3).
    TimeExceeded {
        /// Code.
        code: u8,
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Parameter problem (4).
    ParamProblem {
        /// Code.
        code: u8,
        /// Offset of the offending octet.
        pointer: u32,
        /// The quoted packet.
        data: &'a [u8],
    },
    /// Neighbour solicitation (135, code 0).
    NeighborSolicit {
        /// Target address.
        target_addr: Ipv6Addr,
        /// Source link-layer address option.
        lladdr: Option<EthernetAddress>,
    },
    /// Neighbour advertisement (136, code 0).
    NeighborAdvert {
        /// Router flag.
        router: bool,
        /// Solicited flag.
        solicited: bool,
        /// Override flag.
        override_flag: bool,
        /// Target address.
        target_addr: Ipv6Addr,
        /// Target link-layer address option.
        lladdr: Option<EthernetAddress>,
    },
    /// Any other message (router solicitation/advertisement, redirect,
    /// MLD...), header kept raw.
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
    /// Parses a checked message, verifying the checksum against `ips`
    /// (skipped under `cfg(fuzzing)`). An NS/NA with a non-zero code or a
    /// zero-length option is [`WireError::Malformed`] (RFC 4861 §7.1.1,
    /// §7.1.2); other options in them are skipped.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        ips: &IpPair,
    ) -> Result<Repr<'a>, WireError> {
        packet.check_len()?;
        if !cfg!(fuzzing) && !packet.verify_checksum(ips) {
            return Err(WireError::BadChecksum);
        }
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let data = &bytes[field::HEADER_LEN..];
        let code = packet.msg_code();
        let rest = packet.rest_of_header();
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
            (msg_type::DST_UNREACHABLE, _) if rest == 0 => Repr::DstUnreachable { code, data },
            (msg_type::PACKET_TOO_BIG, 0) => Repr::PacketTooBig { mtu: rest, data },
            (msg_type::TIME_EXCEEDED, _) if rest == 0 => Repr::TimeExceeded { code, data },
            (msg_type::PARAM_PROBLEM, _) => Repr::ParamProblem {
                code,
                pointer: rest,
                data,
            },
            (t @ (msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT), c) => {
                if c != 0 {
                    return Err(WireError::Malformed);
                }
                let target_addr = packet.target_addr().ok_or(WireError::Truncated)?;
                let mut lladdr = None;
                for opt in packet.ndp_options() {
                    match (t, opt?) {
                        (msg_type::NEIGHBOR_SOLICIT, NdpOption::SourceLinkLayerAddr(a))
                        | (msg_type::NEIGHBOR_ADVERT, NdpOption::TargetLinkLayerAddr(a)) => {
                            lladdr = Some(a)
                        }
                        _ => {}
                    }
                }
                if t == msg_type::NEIGHBOR_SOLICIT {
                    Repr::NeighborSolicit {
                        target_addr,
                        lladdr,
                    }
                } else {
                    Repr::NeighborAdvert {
                        router: packet.na_router(),
                        solicited: packet.na_solicited(),
                        override_flag: packet.na_override(),
                        target_addr,
                        lladdr,
                    }
                }
            }
            (t, _) => Repr::Other {
                msg_type: t,
                code,
                rest,
                data,
            },
        })
    }

    /// Message length this emits.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::NeighborSolicit { lladdr, .. } | Repr::NeighborAdvert { lladdr, .. } => {
                field::ND_HEADER_LEN + if lladdr.is_some() { 8 } else { 0 }
            }
            Repr::EchoRequest { data, .. }
            | Repr::EchoReply { data, .. }
            | Repr::DstUnreachable { data, .. }
            | Repr::PacketTooBig { data, .. }
            | Repr::TimeExceeded { data, .. }
            | Repr::ParamProblem { data, .. }
            | Repr::Other { data, .. } => field::HEADER_LEN + data.len(),
        }
    }

    /// Writes the message into a buffer of exactly [`Repr::buffer_len`]
    /// bytes, checksum (over `ips`) last.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, ips: &IpPair) {
        let echo = |ident: u16, seq: u16| u32::from(ident) << 16 | u32::from(seq);
        let (t, code, rest, data): (u8, u8, u32, &[u8]) = match *self {
            Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => (msg_type::ECHO_REQUEST, 0, echo(ident, seq_no), data),
            Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => (msg_type::ECHO_REPLY, 0, echo(ident, seq_no), data),
            Repr::DstUnreachable { code, data } => (msg_type::DST_UNREACHABLE, code, 0, data),
            Repr::PacketTooBig { mtu, data } => (msg_type::PACKET_TOO_BIG, 0, mtu, data),
            Repr::TimeExceeded { code, data } => (msg_type::TIME_EXCEEDED, code, 0, data),
            Repr::ParamProblem {
                code,
                pointer,
                data,
            } => (msg_type::PARAM_PROBLEM, code, pointer, data),
            Repr::Other {
                msg_type,
                code,
                rest,
                data,
            } => (msg_type, code, rest, data),
            Repr::NeighborSolicit {
                target_addr,
                lladdr,
            } => {
                packet.set_msg_type(msg_type::NEIGHBOR_SOLICIT);
                packet.set_msg_code(0);
                packet.set_rest_of_header(0);
                packet.set_target_addr(target_addr);
                emit_lladdr(packet, ndp_option::SOURCE_LL_ADDR, lladdr);
                packet.fill_checksum(ips);
                return;
            }
            Repr::NeighborAdvert {
                router,
                solicited,
                override_flag,
                target_addr,
                lladdr,
            } => {
                let mut flags = 0u8;
                if router {
                    flags |= NA_ROUTER;
                }
                if solicited {
                    flags |= NA_SOLICITED;
                }
                if override_flag {
                    flags |= NA_OVERRIDE;
                }
                packet.set_msg_type(msg_type::NEIGHBOR_ADVERT);
                packet.set_msg_code(0);
                packet.set_rest_of_header(u32::from(flags) << 24);
                packet.set_target_addr(target_addr);
                emit_lladdr(packet, ndp_option::TARGET_LL_ADDR, lladdr);
                packet.fill_checksum(ips);
                return;
            }
        };
        packet.set_msg_type(t);
        packet.set_msg_code(code);
        packet.set_rest_of_header(rest);
        packet.data_mut().copy_from_slice(data);
        packet.fill_checksum(ips);
    }
}

fn emit_lladdr<T: AsRef<[u8]> + AsMut<[u8]>>(
    packet: &mut Packet<T>,
    kind: u8,
    lladdr: Option<EthernetAddress>,
) {
    if let Some(mac) = lladdr {
        let opt = &mut packet.buffer.as_mut()[field::ND_HEADER_LEN..field::ND_HEADER_LEN + 8];
        opt[0] = kind;
        opt[1] = 1;
        opt[2..8].copy_from_slice(&mac.0);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn ll(last: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0x5054, 0x00ff, 0xfe12, last)
    }

    /// NS from fe80::5054:ff:fe12:3456 to the solicited-node group
    /// ff02::1:ff12:1 for target fe80::5054:ff:fe12:1, with a source
    /// link-layer option 52:54:00:12:34:56; checksum computed independently.
    pub(crate) const NS: [u8; 32] = [
        0x87, 0x00, 0x22, 0xaa, 0x00, 0x00, 0x00, 0x00, // type 135
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x00,
        0x01, // target
        0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // SLLA
    ];

    pub(crate) fn ns_ips() -> IpPair {
        IpPair::V6 {
            src: ll(0x3456),
            dst: Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff12, 0x0001),
        }
    }

    #[test]
    fn deconstruct_ns() {
        let p = Packet::new_checked(&NS[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert_eq!(p.target_addr(), Some(ll(1)));
        assert!(p.verify_checksum(&ns_ips()));
        assert!(!p.verify_checksum(&IpPair::V6 {
            src: ll(0x3457),
            dst: ll(1)
        }));
        let opts: Vec<_> = p.ndp_options().collect();
        assert_eq!(
            opts,
            vec![Ok(NdpOption::SourceLinkLayerAddr(EthernetAddress([
                0x52, 0x54, 0x00, 0x12, 0x34, 0x56
            ])))]
        );
        let repr = Repr::parse(&p, &ns_ips()).unwrap();
        assert_eq!(
            repr,
            Repr::NeighborSolicit {
                target_addr: ll(1),
                lladdr: Some(EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]))
            }
        );
        let mut out = [0u8; 32];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]), &ns_ips());
        assert_eq!(out, NS);
    }

    #[test]
    fn ns_errors() {
        assert_eq!(
            Packet::new_checked(&NS[..23]).unwrap_err(),
            WireError::Truncated
        );
        // Zero-length option: discard (RFC 4861 §4.6), checksum fixed up.
        let mut b = NS;
        b[25] = 0;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&ns_ips());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Repr::parse(&p, &ns_ips()).unwrap_err(),
            WireError::Malformed
        );
        let mut b = NS;
        b[1] = 1;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&ns_ips());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(
            Repr::parse(&p, &ns_ips()).unwrap_err(),
            WireError::Malformed
        );
        #[cfg(not(fuzzing))]
        {
            let mut b = NS;
            b[31] ^= 1;
            let p = Packet::new_checked(&b[..]).unwrap();
            assert_eq!(
                Repr::parse(&p, &ns_ips()).unwrap_err(),
                WireError::BadChecksum
            );
        }
    }

    #[test]
    fn echo_and_errors_by_type() {
        assert!(is_error(msg_type::PACKET_TOO_BIG) && !is_error(msg_type::ECHO_REQUEST));
        assert!(is_query(msg_type::ECHO_REPLY) && !is_query(msg_type::NEIGHBOR_ADVERT));
        let ips = ns_ips();
        let data = [1u8, 2, 3];
        let repr = Repr::PacketTooBig {
            mtu: 1280,
            data: &data,
        };
        let mut buf = [0u8; 11];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &ips);
        assert_eq!(buf[..8], [2, 0, buf[2], buf[3], 0, 0, 5, 0]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Repr::parse(&p, &ips).unwrap(), repr);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.data(), p.target_addr(), p.na_router(), p.verify_checksum(&ns_ips()));
                for o in p.ndp_options() { let _ = o; }
                let _ = Repr::parse(&p, &ns_ips());
            }
        }

        #[test]
        fn repr_round_trip(
            variant in 0u8..9, code in any::<u8>(), a in any::<u16>(), b in any::<u16>(),
            rest in any::<u32>(), flags in any::<(bool, bool, bool)>(),
            target in any::<[u8; 16]>(), mac in proptest::option::of(any::<[u8; 6]>()),
            other_type in 137u8..,
            data in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let data = &data[..];
            let lladdr = mac.map(EthernetAddress);
            let repr = match variant {
                0 => Repr::EchoRequest { ident: a, seq_no: b, data },
                1 => Repr::EchoReply { ident: a, seq_no: b, data },
                2 => Repr::DstUnreachable { code, data },
                3 => Repr::PacketTooBig { mtu: rest, data },
                4 => Repr::TimeExceeded { code, data },
                5 => Repr::ParamProblem { code, pointer: rest, data },
                6 => Repr::NeighborSolicit { target_addr: target.into(), lladdr },
                7 => Repr::NeighborAdvert {
                    router: flags.0, solicited: flags.1, override_flag: flags.2,
                    target_addr: target.into(), lladdr,
                },
                _ => Repr::Other { msg_type: other_type, code, rest, data },
            };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]), &ns_ips());
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum(&ns_ips()));
            prop_assert_eq!(Repr::parse(&p, &ns_ips()).unwrap(), repr);
        }
    }
}
