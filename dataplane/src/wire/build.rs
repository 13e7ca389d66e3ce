//! Frames dpf originates: ARP requests, replies and gratuitous ARP, TCP
//! RST for `block return`, ICMP/ICMPv6 echo replies and errors, neighbour
//! advertisements.
//!
//! Each builder returns a [`Reply`]: plain data made of the `Repr`s of each
//! layer (borrowing the request for echo payloads and quotes). Its
//! [`Reply::buffer_len`] is exact and [`Reply::emit`] writes the frame into
//! a caller's buffer without allocating, each checksum after the bytes it
//! covers.
//!
//! Invariant: a builder refuses ([`WireError::NotAnswerable`]) to answer
//! what the RFCs forbid answering: an RST, an ICMP error, a non-first
//! fragment (IPv4), a broadcast or multicast destination (except IPv6
//! packet too big, RFC 4443 §2.4(e.3)), a source that is not a unique host
//! (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7, RFC 4443 §2.4(e)). Malformed
//! requests give the parse error.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{
    arp, classify,
    ethernet::{self, EtherType, EthernetAddress},
    icmp, icmpv6, ipv4, ipv6, tcp, Classified, FrameKind, IpPair, WireError,
};
use crate::flow::{proto, tcp_flags, Af, Direction, IfIndex, L4Info, PacketInfo};

/// All-nodes multicast ff02::1.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A frame to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    /// Ethernet header.
    pub eth: ethernet::Repr,
    /// Everything after it.
    pub body: Body<'a>,
}

/// The payload of a [`Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// An ARP packet.
    Arp(arp::Repr),
    /// IPv4 (the header's `payload_len` is taken from `l4` on emit).
    Ipv4 {
        /// IP header.
        ip: ipv4::Repr,
        /// Transport.
        l4: L4<'a>,
    },
    /// IPv6 (the header's `payload_len` is taken from `l4` on emit).
    Ipv6 {
        /// IP header.
        ip: ipv6::Repr,
        /// Transport.
        l4: L4<'a>,
    },
}

/// The transport message of a [`Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4<'a> {
    /// TCP.
    Tcp(tcp::Repr<'a>),
    /// ICMPv4.
    Icmpv4(icmp::Repr<'a>),
    /// ICMPv6.
    Icmpv6(icmpv6::Repr<'a>),
}

impl L4<'_> {
    fn buffer_len(&self) -> usize {
        match self {
            L4::Tcp(r) => r.buffer_len(),
            L4::Icmpv4(r) => r.buffer_len(),
            L4::Icmpv6(r) => r.buffer_len(),
        }
    }

    fn protocol(&self) -> u8 {
        match self {
            L4::Tcp(_) => proto::TCP,
            L4::Icmpv4(_) => proto::ICMP,
            L4::Icmpv6(_) => proto::ICMPV6,
        }
    }

    fn emit(&self, out: &mut [u8], ips: &IpPair) {
        match self {
            L4::Tcp(r) => r.emit(&mut tcp::Packet::new_unchecked(out), ips),
            L4::Icmpv4(r) => r.emit(&mut icmp::Packet::new_unchecked(out)),
            L4::Icmpv6(r) => r.emit(&mut icmpv6::Packet::new_unchecked(out), ips),
        }
    }
}

impl Reply<'_> {
    /// Exact length of the frame [`Reply::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        self.eth.buffer_len()
            + match &self.body {
                Body::Arp(a) => a.buffer_len(),
                Body::Ipv4 { l4, .. } => ipv4::HEADER_LEN + l4.buffer_len(),
                Body::Ipv6 { l4, .. } => ipv6::HEADER_LEN + l4.buffer_len(),
            }
    }

    /// Writes the frame at the start of `out` and returns its length;
    /// [`WireError::BufferTooSmall`] if `out` is shorter than
    /// [`Reply::buffer_len`].
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let len = self.buffer_len();
        let out = out.get_mut(..len).ok_or(WireError::BufferTooSmall)?;
        self.eth
            .emit(&mut ethernet::Frame::new_unchecked(&mut *out));
        let l3 = &mut out[self.eth.buffer_len()..];
        match &self.body {
            Body::Arp(a) => a.emit(&mut arp::Packet::new_unchecked(l3)),
            Body::Ipv4 { ip, l4 } => {
                let ip = ipv4::Repr {
                    payload_len: l4.buffer_len(),
                    protocol: l4.protocol(),
                    ..*ip
                };
                let ips = IpPair::V4 {
                    src: ip.src_addr,
                    dst: ip.dst_addr,
                };
                ip.emit(&mut ipv4::Packet::new_unchecked(&mut *l3));
                l4.emit(&mut l3[ipv4::HEADER_LEN..], &ips);
            }
            Body::Ipv6 { ip, l4 } => {
                let ip = ipv6::Repr {
                    payload_len: l4.buffer_len(),
                    next_header: l4.protocol(),
                    ..*ip
                };
                let ips = IpPair::V6 {
                    src: ip.src_addr,
                    dst: ip.dst_addr,
                };
                ip.emit(&mut ipv6::Packet::new_unchecked(&mut *l3));
                l4.emit(&mut l3[ipv6::HEADER_LEN..], &ips);
            }
        }
        Ok(len)
    }

    /// The same reply with another IPv4 TTL / IPv6 hop limit.
    pub fn with_ttl(mut self, ttl: u8) -> Self {
        match &mut self.body {
            Body::Arp(_) => {}
            Body::Ipv4 { ip, .. } => ip.ttl = ttl,
            Body::Ipv6 { ip, .. } => ip.hop_limit = ttl,
        }
        self
    }
}

fn eth_reply(
    to: EthernetAddress,
    from: EthernetAddress,
    vlan_id: Option<u16>,
    et: EtherType,
) -> ethernet::Repr {
    ethernet::Repr {
        src_addr: from,
        dst_addr: to,
        vlan_id,
        ethertype: et,
    }
}

fn arp_frame(dst: EthernetAddress, vlan_id: Option<u16>, arp: arp::Repr) -> Reply<'static> {
    Reply {
        eth: eth_reply(dst, arp.sender_hardware_addr, vlan_id, EtherType::ARP),
        body: Body::Arp(arp),
    }
}

/// A broadcast ARP request for `target_ip` (RFC 826).
pub fn arp_request(
    vlan_id: Option<u16>,
    sender_mac: EthernetAddress,
    sender_ip: Ipv4Addr,
    target_ip: Ipv4Addr,
) -> Reply<'static> {
    arp_frame(
        EthernetAddress::BROADCAST,
        vlan_id,
        arp::Repr::request(sender_mac, sender_ip, target_ip),
    )
}

/// A unicast ARP reply: `sender_ip` is at `sender_mac`, sent to
/// `target_mac`/`target_ip`.
pub fn arp_reply(
    vlan_id: Option<u16>,
    sender_mac: EthernetAddress,
    sender_ip: Ipv4Addr,
    target_mac: EthernetAddress,
    target_ip: Ipv4Addr,
) -> Reply<'static> {
    arp_frame(
        target_mac,
        vlan_id,
        arp::Repr {
            operation: arp::Operation::Reply,
            sender_hardware_addr: sender_mac,
            sender_protocol_addr: sender_ip,
            target_hardware_addr: target_mac,
            target_protocol_addr: target_ip,
        },
    )
}

/// The reply to a parsed ARP request, from `our_mac` (the request's
/// target address is taken as ours: the caller checked it).
pub fn arp_reply_to(
    request: &arp::Repr,
    vlan_id: Option<u16>,
    our_mac: EthernetAddress,
) -> Result<Reply<'static>, WireError> {
    if request.operation != arp::Operation::Request || request.sender_hardware_addr.is_multicast() {
        return Err(WireError::NotAnswerable);
    }
    Ok(arp_reply(
        vlan_id,
        our_mac,
        request.target_protocol_addr,
        request.sender_hardware_addr,
        request.sender_protocol_addr,
    ))
}

/// A gratuitous ARP announcing `ip` at `mac`: a broadcast request with
/// sender and target IP both `ip` and a zero target MAC (as OpenBSD's
/// `arprequest(ifp, &ip, &ip, mac)` sends on a CARP takeover).
pub fn gratuitous_arp(vlan_id: Option<u16>, mac: EthernetAddress, ip: Ipv4Addr) -> Reply<'static> {
    arp_request(vlan_id, mac, ip, ip)
}

/// An IPv4 address that may be the source of a packet we answer
/// (RFC 1122 §3.2.1.3, RFC 1812 §4.3.2.7): not 0.0.0.0, broadcast,
/// multicast, loopback or class E.
fn unique_v4(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
        && a.octets()[0] < 240
}

/// An IPv4 destination that is not a group (multicast or limited
/// broadcast). Directed broadcasts are for the caller, who knows its
/// subnets.
fn unicast_dst_v4(a: Ipv4Addr) -> bool {
    !(a.is_multicast() || a.is_broadcast())
}

fn unique_v6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_multicast())
}

fn ip_info(c: &Classified) -> Result<(PacketInfo, u16, bool), WireError> {
    match c.kind {
        FrameKind::Ip {
            info,
            l4_offset,
            fragment,
            ..
        } => Ok((info, l4_offset, fragment)),
        _ => Err(WireError::NotAnswerable),
    }
}

fn v4(a: crate::flow::Addr) -> Ipv4Addr {
    Ipv4Addr::from(a.v4_octets())
}

fn v6(a: crate::flow::Addr) -> Ipv6Addr {
    Ipv6Addr::from(a.0)
}

/// The source and destination checks every IP answer makes.
fn answerable(c: &Classified, info: &PacketInfo) -> Result<(), WireError> {
    let ok = c.src_mac.is_unicast()
        && match info.af {
            Af::Inet => unique_v4(v4(info.src)) && unicast_dst_v4(v4(info.dst)),
            Af::Inet6 => unique_v6(v6(info.src)) && !v6(info.dst).is_multicast(),
        };
    if ok {
        Ok(())
    } else {
        Err(WireError::NotAnswerable)
    }
}

/// Ethernet + IP headers of an answer to `info` from `src`, with the
/// transport `l4`.
fn ip_reply<'a>(
    c: &Classified,
    info: &PacketInfo,
    our_mac: EthernetAddress,
    l4: L4<'a>,
) -> Reply<'a> {
    ip_reply_from(c, info, our_mac, info.dst, l4)
}

fn ip_reply_from<'a>(
    c: &Classified,
    info: &PacketInfo,
    our_mac: EthernetAddress,
    src: crate::flow::Addr,
    l4: L4<'a>,
) -> Reply<'a> {
    match info.af {
        Af::Inet => Reply {
            eth: eth_reply(c.src_mac, our_mac, c.vlan, EtherType::IPV4),
            body: Body::Ipv4 {
                ip: ipv4::Repr {
                    src_addr: v4(src),
                    dst_addr: v4(info.src),
                    protocol: l4.protocol(),
                    payload_len: l4.buffer_len(),
                    ttl: ipv4::DEFAULT_TTL,
                    tos: 0,
                    ident: 0,
                    dont_frag: true,
                },
                l4,
            },
        },
        Af::Inet6 => Reply {
            eth: eth_reply(c.src_mac, our_mac, c.vlan, EtherType::IPV6),
            body: Body::Ipv6 {
                ip: ipv6::Repr {
                    src_addr: v6(src),
                    dst_addr: v6(info.src),
                    next_header: l4.protocol(),
                    payload_len: l4.buffer_len(),
                    hop_limit: ipv6::DEFAULT_HOP_LIMIT,
                    traffic_class: 0,
                    flow_label: 0,
                },
                l4,
            },
        },
    }
}

/// The TCP RST pf's `block return` sends for a classified segment (IPv4
/// or IPv6), from `our_mac` back to the segment's sender, following RFC
/// 9293 §3.10.7.1: if the segment has ACK, `seq = SEG.ACK` and flags RST;
/// otherwise `seq = 0`, `ack = SEG.SEQ + SEG.LEN` (SYN and FIN count one)
/// and flags RST|ACK. An RST is never answered.
pub fn tcp_rst(c: &Classified, our_mac: EthernetAddress) -> Result<Reply<'static>, WireError> {
    let (info, _, _) = ip_info(c)?;
    let seg = match info.l4 {
        L4Info::Tcp(t) if t.flags & tcp_flags::RST == 0 => t,
        _ => return Err(WireError::NotAnswerable),
    };
    answerable(c, &info)?;
    let (seq_number, ack_number, flags) = if seg.flags & tcp_flags::ACK != 0 {
        (seg.ack, 0, tcp_flags::RST)
    } else {
        let len = u32::from(seg.payload_len)
            + u32::from(seg.flags & tcp_flags::SYN != 0)
            + u32::from(seg.flags & tcp_flags::FIN != 0);
        (
            0,
            seg.seq.wrapping_add(len),
            tcp_flags::RST | tcp_flags::ACK,
        )
    };
    let rst = tcp::Repr {
        src_port: info.dport,
        dst_port: info.sport,
        seq_number,
        ack_number,
        flags,
        window_len: 0,
        options: tcp::Options::default(),
        payload: &[],
    };
    Ok(ip_reply(c, &info, our_mac, L4::Tcp(rst)))
}

/// The fields of a TCP segment dpf sends for a handshake it completes
/// itself (SYN cookies): sequence, acknowledgement, flags, window, MSS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags byte.
    pub flags: u8,
    /// Window field (unscaled).
    pub win: u16,
    /// MSS option, if any.
    pub mss: Option<u16>,
}

fn segment_repr(seg: Segment, src_port: u16, dst_port: u16) -> tcp::Repr<'static> {
    tcp::Repr {
        src_port,
        dst_port,
        seq_number: seg.seq,
        ack_number: seg.ack,
        flags: seg.flags,
        window_len: seg.win,
        options: tcp::Options {
            mss: seg.mss,
            ..tcp::Options::default()
        },
        payload: &[],
    }
}

/// A TCP segment back to the sender of the TCP packet `c` (addresses and
/// ports swapped, from `our_mac`), e.g. the SYN-ACK that carries a SYN
/// cookie. Refused for what `block return` would not answer either.
pub fn tcp_answer(
    c: &Classified,
    our_mac: EthernetAddress,
    seg: Segment,
) -> Result<Reply<'static>, WireError> {
    let (info, _, _) = ip_info(c)?;
    if info.proto != proto::TCP {
        return Err(WireError::NotAnswerable);
    }
    answerable(c, &info)?;
    Ok(ip_reply(
        c,
        &info,
        our_mac,
        L4::Tcp(segment_repr(seg, info.dport, info.sport)),
    ))
}

/// A TCP segment in the direction of the TCP packet `c`, between its
/// endpoints and MACs (the SYN dpf opens a cookie's connection with); the
/// caller translates and re-addresses it for its next hop.
pub fn tcp_onward(c: &Classified, seg: Segment) -> Result<Reply<'static>, WireError> {
    let (info, _, _) = ip_info(c)?;
    if info.proto != proto::TCP {
        return Err(WireError::NotAnswerable);
    }
    let l4 = L4::Tcp(segment_repr(seg, info.sport, info.dport));
    let mut r = ip_reply_from(c, &info, c.dst_mac, info.src, l4);
    r.eth.dst_addr = c.dst_mac;
    r.eth.src_addr = c.src_mac;
    match &mut r.body {
        Body::Ipv4 { ip, .. } => ip.dst_addr = v4(info.dst),
        Body::Ipv6 { ip, .. } => ip.dst_addr = v6(info.dst),
        Body::Arp(_) => return Err(WireError::NotAnswerable),
    }
    Ok(r)
}

fn classify_request(
    request: &[u8],
) -> Result<(Classified, PacketInfo, usize, usize, bool), WireError> {
    let c = classify(request, IfIndex(0), Direction::In)?;
    let (info, l4_offset, fragment) = ip_info(&c)?;
    let l3 = usize::from(c.l3_offset);
    let end = l3 + usize::from(info.ip_len);
    Ok((c, info, usize::from(l4_offset), end, fragment))
}

/// The ICMPv4 echo reply to an echo request frame, from `our_mac` and the
/// request's destination address, echoing identifier, sequence number and
/// data (RFC 792). The request's ICMP checksum must be correct.
pub fn icmpv4_echo_reply(request: &[u8], our_mac: EthernetAddress) -> Result<Reply<'_>, WireError> {
    let (c, info, l4, end, fragment) = classify_request(request)?;
    if info.af != Af::Inet || info.proto != proto::ICMP || fragment {
        return Err(WireError::NotAnswerable);
    }
    answerable(&c, &info)?;
    let msg = icmp::Packet::new_checked(request.get(l4..end).ok_or(WireError::Truncated)?)?;
    match icmp::Repr::parse(&msg)? {
        icmp::Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } => Ok(ip_reply(
            &c,
            &info,
            our_mac,
            L4::Icmpv4(icmp::Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
        )),
        _ => Err(WireError::NotAnswerable),
    }
}

/// An ICMPv4 destination unreachable (type 3, `code`; see
/// [`icmp::unreach`]) from `our_mac`/`src_ip` to the sender of `request`,
/// quoting its IP header (with options) and the first 8 bytes of its
/// payload (RFC 792, RFC 1812 §4.3.2.3). For code 4 set the next-hop MTU
/// in the result (RFC 1191).
pub fn icmpv4_dst_unreachable(
    request: &[u8],
    code: u8,
    our_mac: EthernetAddress,
    src_ip: Ipv4Addr,
) -> Result<Reply<'_>, WireError> {
    let (c, info, l4, end, _) = classify_request(request)?;
    if info.af != Af::Inet {
        return Err(WireError::NotAnswerable);
    }
    let non_first_fragment = {
        let ip = ipv4::Packet::new_checked(&request[usize::from(c.l3_offset)..end])?;
        ip.frag_offset() != 0
    };
    let is_icmp_error = matches!(info.l4, L4Info::Icmp(i) if i.is_error);
    if non_first_fragment || is_icmp_error || c.dst_mac.is_multicast() {
        return Err(WireError::NotAnswerable);
    }
    answerable(&c, &info)?;
    let quote = &request[usize::from(c.l3_offset)..end.min(l4 + 8)];
    let msg = icmp::Repr::DstUnreachable {
        code,
        next_hop_mtu: 0,
        data: quote,
    };
    Ok(ip_reply_from(
        &c,
        &info,
        our_mac,
        crate::flow::Addr::v4(src_ip.octets()),
        L4::Icmpv4(msg),
    ))
}

/// The ICMPv6 echo reply to an echo request frame, from `our_mac` and the
/// request's destination address (RFC 4443 §4.2). The request's checksum
/// must be correct; a request to a multicast group is not answered here.
pub fn icmpv6_echo_reply(request: &[u8], our_mac: EthernetAddress) -> Result<Reply<'_>, WireError> {
    let (c, info, l4, end, fragment) = classify_request(request)?;
    if info.af != Af::Inet6 || info.proto != proto::ICMPV6 || fragment {
        return Err(WireError::NotAnswerable);
    }
    answerable(&c, &info)?;
    let ips = IpPair::from_addrs(info.af, info.src, info.dst);
    let msg = icmpv6::Packet::new_checked(request.get(l4..end).ok_or(WireError::Truncated)?)?;
    match icmpv6::Repr::parse(&msg, &ips)? {
        icmpv6::Repr::EchoRequest {
            ident,
            seq_no,
            data,
        } => Ok(ip_reply(
            &c,
            &info,
            our_mac,
            L4::Icmpv6(icmpv6::Repr::EchoReply {
                ident,
                seq_no,
                data,
            }),
        )),
        _ => Err(WireError::NotAnswerable),
    }
}

fn icmpv6_error<'a>(
    request: &'a [u8],
    our_mac: EthernetAddress,
    src_ip: Ipv6Addr,
    packet_too_big: bool,
    make: impl FnOnce(&'a [u8]) -> icmpv6::Repr<'a>,
) -> Result<Reply<'a>, WireError> {
    let (c, info, _, end, _) = classify_request(request)?;
    if info.af != Af::Inet6 {
        return Err(WireError::NotAnswerable);
    }
    // RFC 4443 §2.4(e): never for an error or a redirect; not for a
    // multicast destination (link or IP) except packet too big.
    let no = match info.l4 {
        L4Info::Icmp(i) => i.is_error || i.icmp_type == icmpv6::msg_type::REDIRECT,
        _ => false,
    };
    let group_dst = c.dst_mac.is_multicast() || v6(info.dst).is_multicast();
    if no || (group_dst && !packet_too_big) || !c.src_mac.is_unicast() || !unique_v6(v6(info.src)) {
        return Err(WireError::NotAnswerable);
    }
    let l3 = usize::from(c.l3_offset);
    let quote = &request[l3..end.min(l3 + icmpv6::MAX_ERROR_QUOTE)];
    Ok(ip_reply_from(
        &c,
        &info,
        our_mac,
        crate::flow::Addr::v6(src_ip.octets()),
        L4::Icmpv6(make(quote)),
    ))
}

/// An ICMPv6 destination unreachable (type 1, `code`; see
/// [`icmpv6::unreach`]) from `our_mac`/`src_ip` to the sender of
/// `request`, quoting as much of it as fits in 1280 bytes (RFC 4443 §3.1).
pub fn icmpv6_dst_unreachable(
    request: &[u8],
    code: u8,
    our_mac: EthernetAddress,
    src_ip: Ipv6Addr,
) -> Result<Reply<'_>, WireError> {
    icmpv6_error(request, our_mac, src_ip, false, |data| {
        icmpv6::Repr::DstUnreachable { code, data }
    })
}

/// An ICMPv6 packet too big (type 2) carrying `mtu`, otherwise as
/// [`icmpv6_dst_unreachable`] (RFC 4443 §3.2; sent also for multicast).
pub fn icmpv6_packet_too_big(
    request: &[u8],
    mtu: u32,
    our_mac: EthernetAddress,
    src_ip: Ipv6Addr,
) -> Result<Reply<'_>, WireError> {
    icmpv6_error(request, our_mac, src_ip, true, |data| {
        icmpv6::Repr::PacketTooBig { mtu, data }
    })
}

fn neighbor_advert(
    vlan_id: Option<u16>,
    our_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    target: Ipv6Addr,
    dst_ip: Ipv6Addr,
    router: bool,
    solicited: bool,
) -> Reply<'static> {
    let l4 = L4::Icmpv6(icmpv6::Repr::NeighborAdvert {
        router,
        solicited,
        override_flag: true,
        target_addr: target,
        lladdr: Some(our_mac),
    });
    Reply {
        eth: eth_reply(dst_mac, our_mac, vlan_id, EtherType::IPV6),
        body: Body::Ipv6 {
            ip: ipv6::Repr {
                src_addr: target,
                dst_addr: dst_ip,
                next_header: proto::ICMPV6,
                payload_len: l4.buffer_len(),
                // RFC 4861 §7.1.2: receivers drop NAs with another value.
                hop_limit: 255,
                traffic_class: 0,
                flow_label: 0,
            },
            l4,
        },
    }
}

/// An unsolicited neighbour advertisement of `addr` at `mac` to all nodes
/// (RFC 4861 §7.2.6), with Override set so neighbours update their caches
/// (what a CARP master sends for its IPv6 addresses on takeover).
pub fn unsolicited_neighbor_advert(
    vlan_id: Option<u16>,
    mac: EthernetAddress,
    addr: Ipv6Addr,
    router: bool,
) -> Reply<'static> {
    neighbor_advert(
        vlan_id,
        mac,
        EthernetAddress::ipv6_multicast(&ALL_NODES.octets()),
        addr,
        ALL_NODES,
        router,
        false,
    )
}

/// The solicited neighbour advertisement answering a neighbour
/// solicitation frame whose target the caller has checked is ours
/// (RFC 4861 §7.2.4): from the target address, to the solicitation's
/// source (or all nodes, without Solicited, for duplicate address
/// detection from `::`), to its source link-layer address option (or
/// Ethernet source), with Override and our MAC as target link-layer
/// address.
///
/// The solicitation is validated as RFC 4861 §7.1.1 says (hop limit 255,
/// checksum, code 0, options, target not multicast, DAD only to a
/// solicited-node group and without a source link-layer option);
/// failures are [`WireError::Malformed`].
pub fn neighbor_advert_reply(
    request: &[u8],
    our_mac: EthernetAddress,
    router: bool,
) -> Result<Reply<'static>, WireError> {
    let (c, info, l4, end, fragment) = classify_request(request)?;
    if info.af != Af::Inet6 || info.proto != proto::ICMPV6 || fragment {
        return Err(WireError::NotAnswerable);
    }
    if info.ttl != 255 {
        return Err(WireError::Malformed);
    }
    let ips = IpPair::from_addrs(info.af, info.src, info.dst);
    let msg = icmpv6::Packet::new_checked(request.get(l4..end).ok_or(WireError::Truncated)?)?;
    let (target, lladdr) = match icmpv6::Repr::parse(&msg, &ips)? {
        icmpv6::Repr::NeighborSolicit {
            target_addr,
            lladdr,
        } => (target_addr, lladdr),
        _ => return Err(WireError::NotAnswerable),
    };
    if target.is_multicast() {
        return Err(WireError::Malformed);
    }
    let src = v6(info.src);
    if src.is_unspecified() {
        let dst = v6(info.dst).octets();
        let solicited_node = dst[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
        if !solicited_node || lladdr.is_some() {
            return Err(WireError::Malformed);
        }
        return Ok(neighbor_advert(
            c.vlan,
            our_mac,
            EthernetAddress::ipv6_multicast(&ALL_NODES.octets()),
            target,
            ALL_NODES,
            router,
            false,
        ));
    }
    if src.is_multicast() {
        return Err(WireError::Malformed);
    }
    let dst_mac = lladdr.unwrap_or(c.src_mac);
    if dst_mac.is_multicast() {
        return Err(WireError::NotAnswerable);
    }
    Ok(neighbor_advert(
        c.vlan, our_mac, dst_mac, target, src, router, true,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::vectors::*;
    use super::*;
    use crate::flow::{Addr, TcpInfo};

    const FW_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
    const CLIENT_MAC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    fn emit(reply: &Reply<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; reply.buffer_len() + 7];
        let n = reply.emit(&mut buf).unwrap();
        assert_eq!(n, reply.buffer_len());
        assert!(buf[n..].iter().all(|b| *b == 0), "wrote past buffer_len");
        buf.truncate(n);
        assert_eq!(
            reply.emit(&mut vec![0u8; n - 1]).unwrap_err(),
            WireError::BufferTooSmall
        );
        buf
    }

    fn parse(frame: &[u8]) -> (Classified, PacketInfo, usize) {
        let c = classify(frame, IfIndex(0), Direction::Out).unwrap();
        let (info, l4, _) = ip_info(&c).unwrap();
        (c, info, usize::from(l4))
    }

    /// Checks IPv4 header and transport checksums of an emitted frame.
    fn assert_checksums(frame: &[u8]) {
        let (c, info, l4) = parse(frame);
        let l3 = usize::from(c.l3_offset);
        let end = l3 + usize::from(info.ip_len);
        assert_eq!(end, frame.len());
        let seg = &frame[l4..end];
        let ips = IpPair::from_addrs(info.af, info.src, info.dst);
        if info.af == Af::Inet {
            assert!(ipv4::Packet::new_checked(&frame[l3..])
                .unwrap()
                .verify_checksum());
        }
        let ok = match info.proto {
            proto::TCP => tcp::Packet::new_checked(seg).unwrap().verify_checksum(&ips),
            proto::ICMP => icmp::Packet::new_checked(seg).unwrap().verify_checksum(),
            proto::ICMPV6 => icmpv6::Packet::new_checked(seg)
                .unwrap()
                .verify_checksum(&ips),
            p => panic!("proto {p}"),
        };
        assert!(ok, "transport checksum");
    }

    #[test]
    fn arp_request_reply_and_gratuitous() {
        let ip = Ipv4Addr::new(192, 168, 1, 1);
        let client = Ipv4Addr::new(192, 168, 1, 10);

        let req = arp_request(Some(100), FW_MAC, ip, client);
        let f = emit(&req);
        assert_eq!(f.len(), 18 + 28);
        let c = classify(&f, IfIndex(0), Direction::Out).unwrap();
        assert_eq!((c.kind, c.vlan), (FrameKind::Arp, Some(100)));
        assert!(c.dst_mac.is_broadcast());
        let a = arp::Repr::parse(&arp::Packet::new_checked(&f[18..]).unwrap()).unwrap();
        assert_eq!(a, arp::Repr::request(FW_MAC, ip, client));

        // Answer the captured VLAN request from the client.
        let theirs =
            arp::Repr::parse(&arp::Packet::new_checked(&ARP_REQUEST_VLAN[18..]).unwrap()).unwrap();
        let reply = arp_reply_to(&theirs, Some(100), FW_MAC).unwrap();
        let f = emit(&reply);
        let e = ethernet::Frame::new_checked(&f[..]).unwrap();
        assert_eq!(
            (e.dst_addr(), e.src_addr(), e.vlan_id()),
            (CLIENT_MAC, FW_MAC, Some(100))
        );
        let a = arp::Repr::parse(&arp::Packet::new_checked(e.payload()).unwrap()).unwrap();
        assert_eq!(a.operation, arp::Operation::Reply);
        assert_eq!(
            (a.sender_hardware_addr, a.sender_protocol_addr),
            (FW_MAC, ip)
        );
        assert_eq!(
            (a.target_hardware_addr, a.target_protocol_addr),
            (CLIENT_MAC, client)
        );
        assert_eq!(
            arp_reply_to(&a, None, FW_MAC).unwrap_err(),
            WireError::NotAnswerable
        );

        // Gratuitous: byte-exact.
        let f = emit(&gratuitous_arp(None, FW_MAC, ip));
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef,
            0xc0, 0xa8, 0x01, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0xa8, 0x01, 0x01,
        ];
        assert_eq!(f, expected);
    }

    #[test]
    fn rst_for_syn_acks_it() {
        let c = classify(&V4_TCP_SYN, IfIndex(1), Direction::In).unwrap();
        let f = emit(&tcp_rst(&c, FW_MAC).unwrap());
        assert_checksums(&f);
        let (rc, info, _) = parse(&f);
        assert_eq!((rc.dst_mac, rc.src_mac), (CLIENT_MAC, FW_MAC));
        assert_eq!(info.src, Addr::v4([93, 184, 216, 34]));
        assert_eq!(info.dst, Addr::v4([192, 168, 1, 10]));
        assert_eq!((info.sport, info.dport, info.ttl), (80, 43210, 64));
        assert_eq!(
            info.l4,
            L4Info::Tcp(TcpInfo {
                seq: 0,
                ack: 1_000_000_001,
                flags: tcp_flags::RST | tcp_flags::ACK,
                ..TcpInfo::default()
            })
        );
    }

    #[test]
    fn rst_for_ack_uses_their_ack() {
        let c = classify(&V4_TCP_PSH_VLAN, IfIndex(1), Direction::In).unwrap();
        let f = emit(&tcp_rst(&c, FW_MAC).unwrap().with_ttl(255));
        assert_checksums(&f);
        let (rc, info, _) = parse(&f);
        assert_eq!(rc.vlan, Some(100));
        assert_eq!(info.ttl, 255);
        match info.l4 {
            L4Info::Tcp(t) => {
                assert_eq!((t.seq, t.flags), (3_000_000_001, tcp_flags::RST));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rst_over_ipv6_and_never_for_rst() {
        let c = classify(&V6_TCP_SYN_VLAN, IfIndex(1), Direction::In).unwrap();
        let f = emit(&tcp_rst(&c, FW_MAC).unwrap());
        assert_checksums(&f);
        let (rc, info, _) = parse(&f);
        assert_eq!(rc.vlan, Some(7));
        assert_eq!((info.sport, info.dport), (443, 50000));
        let rst = classify(&f, IfIndex(1), Direction::In).unwrap();
        assert_eq!(tcp_rst(&rst, FW_MAC).unwrap_err(), WireError::NotAnswerable);
        let udp = classify(&V4_UDP_PADDED, IfIndex(1), Direction::In).unwrap();
        assert_eq!(tcp_rst(&udp, FW_MAC).unwrap_err(), WireError::NotAnswerable);
    }

    #[test]
    fn echo_reply_v4() {
        let reply = icmpv4_echo_reply(&V4_ICMP_ECHO, FW_MAC).unwrap();
        let f = emit(&reply);
        assert_checksums(&f);
        let (_, info, l4) = parse(&f);
        assert_eq!(info.src, Addr::v4([192, 168, 1, 1]));
        assert_eq!(info.dst, Addr::v4([192, 168, 1, 10]));
        let msg = icmp::Packet::new_checked(&f[l4..]).unwrap();
        match icmp::Repr::parse(&msg).unwrap() {
            icmp::Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                assert_eq!((ident, seq_no), (0x1234, 1));
                assert_eq!(data, &V4_ICMP_ECHO[14 + 20 + 8..]);
            }
            other => panic!("{other:?}"),
        }
        // Not for an echo reply, nor for a request to a broadcast.
        assert_eq!(
            icmpv4_echo_reply(&f, FW_MAC).unwrap_err(),
            WireError::NotAnswerable
        );
        let mut bcast = V4_ICMP_ECHO;
        bcast[30..34].copy_from_slice(&[255, 255, 255, 255]);
        let mut ip = ipv4::Packet::new_unchecked(&mut bcast[14..]);
        ip.fill_checksum();
        assert_eq!(
            icmpv4_echo_reply(&bcast, FW_MAC).unwrap_err(),
            WireError::NotAnswerable
        );
    }

    #[test]
    fn unreachable_v4_quotes_header_and_8_bytes() {
        let src = Ipv4Addr::new(192, 168, 1, 1);
        let reply = icmpv4_dst_unreachable(&V4_TCP_SYN, icmp::unreach::PORT, FW_MAC, src).unwrap();
        let f = emit(&reply);
        assert_checksums(&f);
        let (_, info, l4) = parse(&f);
        assert_eq!(info.src, Addr::v4(src.octets()));
        assert_eq!(info.ip_len, 20 + 8 + 28);
        match info.l4 {
            L4Info::Icmp(i) => {
                assert_eq!((i.icmp_type, i.code, i.is_error), (3, 3, true));
                let q = i.quoted.unwrap();
                assert_eq!((q.sport, q.dport, q.tcp_seq), (43210, 80, 1_000_000_000));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(&f[l4 + 8..], &V4_TCP_SYN[14..14 + 28]);
        // Never for an ICMP error, or a non-first fragment.
        assert_eq!(
            icmpv4_dst_unreachable(&f, 3, FW_MAC, src).unwrap_err(),
            WireError::NotAnswerable
        );
        assert_eq!(
            icmpv4_dst_unreachable(&V4_UDP_LATER_FRAGMENT, 3, FW_MAC, src).unwrap_err(),
            WireError::NotAnswerable
        );
        // A first fragment is fine; a short payload is quoted as it is.
        let f = emit(&icmpv4_dst_unreachable(&V4_UDP_FIRST_FRAGMENT, 13, FW_MAC, src).unwrap());
        assert_checksums(&f);
    }

    #[test]
    fn echo_reply_v6() {
        let f = emit(&icmpv6_echo_reply(&V6_ICMP_ECHO, FW_MAC).unwrap());
        assert_checksums(&f);
        let (_, info, l4) = parse(&f);
        // pf_icmp_mapping: an echo reply is (ICMP6_ECHO_REQUEST, id).
        assert_eq!((info.sport, info.dport, info.ttl), (128, 0x0777, 64));
        assert_eq!(&f[l4 + 8..], b"abcdefgh");
        assert_eq!(f[l4], icmpv6::msg_type::ECHO_REPLY);
    }

    #[test]
    fn unreachable_and_too_big_v6() {
        let router: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let f = emit(
            &icmpv6_dst_unreachable(
                &V6_TCP_SYN_VLAN,
                icmpv6::unreach::ADMIN_PROHIBITED,
                FW_MAC,
                router,
            )
            .unwrap(),
        );
        assert_checksums(&f);
        let (c, info, l4) = parse(&f);
        assert_eq!(c.vlan, Some(7));
        assert_eq!(&f[l4 + 8..], &V6_TCP_SYN_VLAN[18..]);
        match info.l4 {
            L4Info::Icmp(i) => {
                assert_eq!((i.icmp_type, i.code), (1, 1));
                assert_eq!(i.quoted.unwrap().sport, 50000);
            }
            other => panic!("{other:?}"),
        }
        let f2 = emit(&icmpv6_packet_too_big(&V6_TCP_SYN_VLAN, 1280, FW_MAC, router).unwrap());
        assert_checksums(&f2);
        let (_, _, l4) = parse(&f2);
        assert_eq!(
            f2[l4..l4 + 8],
            [2, 0, f2[l4 + 2], f2[l4 + 3], 0, 0, 0x05, 0x00]
        );
        // Never for an error.
        assert_eq!(
            icmpv6_dst_unreachable(&f, 0, FW_MAC, router).unwrap_err(),
            WireError::NotAnswerable
        );
        // The quote stops at 1232 bytes.
        let mut big = V6_ICMP_ECHO[..14 + 40].to_vec();
        big.extend_from_slice(&V6_ICMP_ECHO[14 + 40..14 + 48]);
        big.resize(big.len() + 1400, 0x5a);
        let plen = (big.len() - 54) as u16;
        big[18..20].copy_from_slice(&plen.to_be_bytes());
        let r = icmpv6_packet_too_big(&big, 1280, FW_MAC, router).unwrap();
        assert_eq!(r.buffer_len(), 14 + 1280);
        assert_checksums(&emit(&r));
    }

    #[test]
    fn solicited_advert_answers_ns() {
        let reply = neighbor_advert_reply(&V6_NS, FW_MAC, false).unwrap();
        let f = emit(&reply);
        assert_checksums(&f);
        let (c, info, l4) = parse(&f);
        assert_eq!((c.dst_mac, c.src_mac), (CLIENT_MAC, FW_MAC));
        assert_eq!(info.ttl, 255);
        let ips = IpPair::from_addrs(info.af, info.src, info.dst);
        let target: Ipv6Addr = "fe80::5054:ff:feab:cdef".parse().unwrap();
        assert_eq!(info.src, Addr::v6(target.octets()));
        let msg = icmpv6::Packet::new_checked(&f[l4..]).unwrap();
        assert_eq!(
            icmpv6::Repr::parse(&msg, &ips).unwrap(),
            icmpv6::Repr::NeighborAdvert {
                router: false,
                solicited: true,
                override_flag: true,
                target_addr: target,
                lladdr: Some(FW_MAC),
            }
        );
        // A hop limit other than 255 is discarded.
        let mut bad = V6_NS;
        bad[14 + 7] = 64;
        assert_eq!(
            neighbor_advert_reply(&bad, FW_MAC, false).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn dad_and_unsolicited_adverts_go_to_all_nodes() {
        // Make the NS a DAD probe: source ::, no SLLA option.
        let mut ns = V6_NS[..V6_NS.len() - 8].to_vec();
        ns[14 + 8..14 + 24].fill(0);
        ns[14 + 5] -= 8;
        let ips = IpPair::V6 {
            src: Ipv6Addr::UNSPECIFIED,
            dst: "ff02::1:ffab:cdef".parse().unwrap(),
        };
        icmpv6::Packet::new_unchecked(&mut ns[54..]).fill_checksum(&ips);
        let f = emit(&neighbor_advert_reply(&ns, FW_MAC, true).unwrap());
        assert_checksums(&f);
        let (c, info, l4) = parse(&f);
        assert_eq!(c.dst_mac, EthernetAddress([0x33, 0x33, 0, 0, 0, 1]));
        assert_eq!(info.dst, Addr::v6(ALL_NODES.octets()));
        assert_eq!(f[l4 + 4], 0xa0, "router and override, not solicited");

        let addr: Ipv6Addr = "2001:db8:1::1".parse().unwrap();
        let f = emit(&unsolicited_neighbor_advert(Some(5), FW_MAC, addr, false));
        assert_checksums(&f);
        let (c, info, l4) = parse(&f);
        assert_eq!((c.vlan, info.ttl), (Some(5), 255));
        assert_eq!(f[l4 + 4], 0x20, "override only");
        assert_eq!(&f[l4 + 8..l4 + 24], &addr.octets());
        assert_eq!(
            &f[l4 + 24..l4 + 32],
            &[2, 1, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]
        );
    }
}
