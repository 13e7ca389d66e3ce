//! The fast path's parse pass: one Ethernet frame to a [`Classified`]
//! summary with a complete [`PacketInfo`].
//!
//! Ethernet [+ up to two VLAN tags, 802.1Q or 802.1ad] -> ARP | IPv4
//! (options walked) | IPv6 (extension headers walked) -> TCP | UDP | ICMP |
//! ICMPv6 | other. A third tag is [`FrameKind::Other`] with the tag's
//! EtherType, so nothing hides behind a stack dpf does not walk. Every length is checked
//! and a failure names what was wrong ([`WireError`]); the IPv4 header
//! checksum is verified (not under `cfg(fuzzing)`), transport checksums are
//! not (see `tcp::Packet::verify_checksum` and friends).
//!
//! Fragments (reassembled by [`crate::frag`] before filtering): a
//! non-first fragment has no transport header, so it is reported with
//! `fragment: true`, ports 0 and [`L4Info::Other`]; a first fragment is
//! parsed as far as its transport header and flagged `fragment: true` (its
//! UDP length field describes the whole datagram, so that one is not
//! checked).
//!
//! ICMP conventions follow pf: for queries (echo and, for ICMPv4,
//! timestamp/information/mask) both ports are the identifier; for errors
//! the quoted packet is summarised in [`IcmpInfo::quoted`] and a quote too
//! short to hold the IP header and 8 transport bytes is
//! [`WireError::BadIcmpQuote`]. ICMPv4 inside IPv6 and ICMPv6 inside IPv4
//! are [`WireError::WrongIcmpFamily`] (pf drops both, `PFRES_NORM`).
//!
//! Invariants: no allocation, no panic on any input; when `Ok`, every
//! offset in the result is inside the frame and, for IP, `l3_offset +
//! ip_len <= frame.len()` (bytes past it are link-layer padding).

use super::{
    be16, be32,
    ethernet::{self, EtherType, EthernetAddress},
    icmp, icmpv6, ipv4, ipv6, tcp, WireError,
};
use crate::flow::{
    proto, Addr, Af, Direction, IcmpInfo, IfIndex, L4Info, PacketInfo, QuotedPacket, TcpInfo,
    TcpSegment,
};

/// What [`classify`] found in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    /// Destination MAC.
    pub dst_mac: EthernetAddress,
    /// Source MAC.
    pub src_mac: EthernetAddress,
    /// 802.1Q VLAN identifier (12 bits) of the innermost tag, if the frame
    /// was tagged.
    pub vlan: Option<u16>,
    /// How many VLAN tags (802.1Q 0x8100, 802.1ad 0x88a8, 0x9100) precede
    /// the payload (0 to [`MAX_VLAN_TAGS`]).
    pub vlan_tags: u8,
    /// EtherType of the payload (after the tag).
    pub ethertype: EtherType,
    /// Offset of the ARP or IP header (14, 18 or 22).
    pub l3_offset: u16,
    /// The payload.
    pub kind: FrameKind,
}

/// The payload of a classified frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// An ARP packet of at least 28 bytes (contents not validated: see
    /// `arp::Repr::parse`).
    Arp,
    /// An IPv4 or IPv6 packet.
    Ip {
        /// The packet summary.
        info: PacketInfo,
        /// Offset of the transport header (after IPv4 options or IPv6
        /// extension headers), or of the fragment data for a non-first
        /// fragment.
        l4_offset: u16,
        /// Whether the packet is a fragment (first or not).
        fragment: bool,
        /// IPv4 options or IPv6 routing / hop-by-hop options that pf
        /// blocks unless the deciding rule says `allow-opts` (router alert
        /// is allowed on IGMP and MLD, as pf allows it).
        ip_options: bool,
    },
    /// Any other EtherType.
    Other,
}

/// The most VLAN tags dpf walks to reach the payload.
pub const MAX_VLAN_TAGS: usize = 2;

/// Parses one Ethernet frame received (`dir`) on `ifindex`.
#[inline(always)]
pub fn classify(frame: &[u8], ifindex: IfIndex, dir: Direction) -> Result<Classified, WireError> {
    match classify_common_v4(frame, ifindex, dir) {
        Some(c) => Ok(c),
        None => classify_any(frame, ifindex, dir),
    }
}

/// An untagged IPv4 frame without options, not a fragment, whose header
/// checksum is correct: its first 34 bytes (Ethernet and IP headers) and
/// the transport bytes the total length covers (link padding excluded).
/// `None` for anything else.
#[inline(always)]
fn plain_ipv4(frame: &[u8]) -> Option<(&[u8; 34], &[u8])> {
    const L3: usize = ethernet::HEADER_LEN;
    const L4: usize = L3 + 20;
    let eth: &[u8; L4] = frame.get(..L4)?.try_into().ok()?;
    if eth[12..14] != [0x08, 0x00] || eth[L3] != 0x45 || eth[L3 + 6] & 0x3f != 0 || eth[L3 + 7] != 0
    {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([eth[L3 + 2], eth[L3 + 3]]));
    let l4 = frame.get(L4..L3 + total_len)?;
    // RFC 1071 over the 20-byte header: it is correct when its
    // one's-complement sum is 0xffff, i.e.
    // when the plain sum of its 16-bit words is a non-zero multiple of
    // 0xffff (folding computes the sum modulo 0xffff). Summed as five
    // native-endian 32-bit words: a 32-bit word is its two halves modulo
    // 0xffff (2^16 ≡ 1), and swapping a half's bytes multiplies it by 2^8,
    // which is invertible modulo 0xffff, so a multiple stays one. The sum
    // is never 0: the first byte is 0x45.
    let word = |at: usize| {
        u64::from(u32::from_ne_bytes([
            eth[at],
            eth[at + 1],
            eth[at + 2],
            eth[at + 3],
        ]))
    };
    let sum = word(L3) + word(L3 + 4) + word(L3 + 8) + word(L3 + 12) + word(L3 + 16);
    if !cfg!(fuzzing) && sum % 0xffff != 0 {
        return None;
    }
    Some((eth, l4))
}

/// The shape of nearly every forwarded packet, parsed with a handful of
/// loads and no per-layer views: untagged Ethernet, IPv4 without options,
/// not a fragment, a correct header checksum, and TCP without options or
/// UDP with a sane length. Anything else (or anything wrong) is `None`, and
/// [`classify_any`] decides it. When it answers, the answer is exactly
/// [`classify_any`]'s (a differential proptest holds it to that).
#[inline(always)]
fn classify_common_v4(frame: &[u8], ifindex: IfIndex, dir: Direction) -> Option<Classified> {
    const L3: usize = ethernet::HEADER_LEN;
    const L4: usize = L3 + 20;
    let (eth, l4) = plain_ipv4(frame)?;
    let total_len = l4.len() + 20;
    let proto = eth[L3 + 9];
    let (l4_info, sport, dport) = match proto {
        proto::TCP => {
            if l4.len() < 20 || l4[12] >> 4 != 5 {
                return None;
            }
            let tcp = TcpInfo {
                seq: be32(l4, 4),
                ack: be32(l4, 8),
                win: be16(l4, 14),
                flags: l4[13],
                payload_len: (l4.len() - 20) as u16,
                ..TcpInfo::default()
            };
            (L4Info::Tcp(tcp), be16(l4, 0), be16(l4, 2))
        }
        proto::UDP => {
            if l4.len() < super::udp::HEADER_LEN {
                return None;
            }
            let udp_len = usize::from(be16(l4, 4));
            if udp_len < super::udp::HEADER_LEN || udp_len > l4.len() {
                return None;
            }
            (L4Info::Udp, be16(l4, 0), be16(l4, 2))
        }
        _ => return None,
    };
    let addr = |at: usize| Addr::v4([eth[at], eth[at + 1], eth[at + 2], eth[at + 3]]);
    let mac = |at: usize| {
        EthernetAddress([
            eth[at],
            eth[at + 1],
            eth[at + 2],
            eth[at + 3],
            eth[at + 4],
            eth[at + 5],
        ])
    };
    Some(Classified {
        dst_mac: mac(0),
        src_mac: mac(6),
        vlan: None,
        vlan_tags: 0,
        ethertype: EtherType::IPV4,
        l3_offset: L3 as u16,
        kind: FrameKind::Ip {
            info: PacketInfo {
                af: Af::Inet,
                proto,
                src: addr(L3 + 12),
                dst: addr(L3 + 16),
                sport,
                dport,
                ip_len: total_len as u16,
                ttl: eth[L3 + 8],
                ifindex,
                dir,
                l4: l4_info,
            },
            l4_offset: L4 as u16,
            fragment: false,
            ip_options: false,
        },
    })
}

/// What the established lane ([`crate::pipeline`]'s burst pass) needs of
/// a TCP or UDP packet over IPv4: the addresses, ports and lengths of the
/// packet and, for TCP, its fields. TCP options are not parsed (`wscale`,
/// `mss`, `timestamp` stay `None`): the lane takes only segments without
/// SYN, whose options pf's tracking never reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment4 {
    /// Source address.
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IPv4 total length.
    pub ip_len: u16,
    /// IPv4 TTL.
    pub ttl: u8,
    /// [`proto::TCP`] or [`proto::UDP`].
    pub proto: u8,
    /// The TCP fields; all zero for UDP.
    pub tcp: TcpSegment,
}

/// The lane's parse: untagged Ethernet, IPv4 without options and not a
/// fragment, with a correct header checksum, carrying TCP with a sane data
/// offset (options allowed) or UDP with a sane length. Anything else is
/// `None` and goes through [`classify`]. When it answers, [`classify_any`]
/// gives the same addresses, ports, lengths and TCP fields and nothing
/// that would change a decision (a differential proptest holds it to
/// that).
#[inline(always)]
pub fn segment4(frame: &[u8]) -> Option<Segment4> {
    const L3: usize = ethernet::HEADER_LEN;
    let (eth, l4) = plain_ipv4(frame)?;
    let proto = eth[L3 + 9];
    let tcp = match proto {
        proto::TCP => {
            if l4.len() < 20 {
                return None;
            }
            let header_len = usize::from(l4[12] >> 4) * 4;
            if header_len < 20 || header_len > l4.len() {
                return None;
            }
            TcpSegment {
                seq: be32(l4, 4),
                ack: be32(l4, 8),
                win: be16(l4, 14),
                flags: l4[13],
                payload_len: (l4.len() - header_len) as u16,
            }
        }
        proto::UDP => {
            if l4.len() < super::udp::HEADER_LEN {
                return None;
            }
            let udp_len = usize::from(be16(l4, 4));
            if udp_len < super::udp::HEADER_LEN || udp_len > l4.len() {
                return None;
            }
            TcpSegment::default()
        }
        _ => return None,
    };
    let addr = |at: usize| [eth[at], eth[at + 1], eth[at + 2], eth[at + 3]];
    Some(Segment4 {
        src: addr(L3 + 12),
        dst: addr(L3 + 16),
        sport: be16(l4, 0),
        dport: be16(l4, 2),
        // At most 65535: it is the header's total length.
        ip_len: (l4.len() + 20) as u16,
        ttl: eth[L3 + 8],
        proto,
        tcp,
    })
}

/// The general parse: every link, network and transport shape dpf knows.
#[inline]
pub fn classify_any(
    frame: &[u8],
    ifindex: IfIndex,
    dir: Direction,
) -> Result<Classified, WireError> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let mut l3_offset = ethernet::HEADER_LEN;
    let mut ethertype = eth.outer_ethertype();
    let mut vlan = None;
    let mut vlan_tags = 0u8;
    while is_vlan_tag(ethertype) {
        if usize::from(vlan_tags) == MAX_VLAN_TAGS {
            // A stack deeper than dpf walks: its payload is unknown.
            break;
        }
        let tag = frame
            .get(l3_offset..l3_offset + 4)
            .ok_or(WireError::Truncated)?;
        vlan = Some(be16(tag, 0) & 0x0fff);
        ethertype = EtherType(be16(tag, 2));
        vlan_tags += 1;
        l3_offset += 4;
    }
    let payload = &frame[l3_offset..];
    let kind = match ethertype {
        _ if is_vlan_tag(ethertype) => FrameKind::Other,
        EtherType::IPV4 => ipv4_kind(payload, l3_offset, ifindex, dir)?,
        EtherType::IPV6 => ipv6_kind(payload, l3_offset, ifindex, dir)?,
        EtherType::ARP => {
            if payload.len() < super::arp::PACKET_LEN {
                return Err(WireError::Truncated);
            }
            FrameKind::Arp
        }
        _ => FrameKind::Other,
    };
    Ok(Classified {
        dst_mac: eth.dst_addr(),
        src_mac: eth.src_addr(),
        vlan,
        vlan_tags,
        ethertype,
        l3_offset: l3_offset as u16,
        kind,
    })
}

/// Offset of the IP header of an IPv4 or IPv6 frame behind up to
/// [`MAX_VLAN_TAGS`] tags (`None` for anything else or a short frame).
#[inline]
pub fn l3_offset(frame: &[u8]) -> Option<usize> {
    let mut at = ethernet::HEADER_LEN;
    let mut ethertype = EtherType(be16(frame.get(..at)?, 12));
    for _ in 0..MAX_VLAN_TAGS {
        if !is_vlan_tag(ethertype) {
            break;
        }
        ethertype = EtherType(be16(frame.get(at..at + 4)?, 2));
        at += 4;
    }
    matches!(ethertype, EtherType::IPV4 | EtherType::IPV6).then_some(at)
}

/// The EtherTypes of a VLAN tag: 802.1Q, 802.1ad and the pre-standard
/// QinQ 0x9100.
#[inline]
pub fn is_vlan_tag(t: EtherType) -> bool {
    matches!(t.0, 0x8100 | 0x88a8 | 0x9100)
}

/// pf's `pf_walk_option` over IPv4 options: `Ok(true)` when an option
/// other than end-of-list, no-op (and router alert on IGMP) is present,
/// an error when an option is malformed (pf drops those whatever the rule).
#[inline]
fn ipv4_options(opts: &[u8], proto: u8) -> Result<bool, WireError> {
    const EOL: u8 = 0;
    const NOP: u8 = 1;
    const ROUTER_ALERT: u8 = 148;
    const IGMP: u8 = 2;
    let mut bad = false;
    let mut at = 0;
    while at < opts.len() {
        let ty = opts[at];
        if ty == EOL {
            break;
        }
        if ty == NOP {
            at += 1;
            continue;
        }
        let len = usize::from(*opts.get(at + 1).ok_or(WireError::Malformed)?);
        if len < 2 || at + len > opts.len() {
            return Err(WireError::Malformed);
        }
        if !(ty == ROUTER_ALERT && proto == IGMP) {
            bad = true;
        }
        at += len;
    }
    Ok(bad)
}

#[inline(always)]
fn ipv4_kind(
    bytes: &[u8],
    l3_offset: usize,
    ifindex: IfIndex,
    dir: Direction,
) -> Result<FrameKind, WireError> {
    match bytes.first() {
        None => return Err(WireError::Truncated),
        Some(b) if b >> 4 != 4 => return Err(WireError::BadIpVersion),
        Some(_) => {}
    }
    let ip = ipv4::Packet::new_checked(bytes)?;
    if !cfg!(fuzzing) && !ip.verify_checksum() {
        return Err(WireError::BadIpChecksum);
    }
    let header_len = ip.header_len();
    let fragment = ip.is_fragment();
    let ip_options = match bytes.get(20..header_len) {
        Some(opts) if !opts.is_empty() => ipv4_options(opts, ip.protocol())?,
        _ => false,
    };
    let mut info = PacketInfo {
        af: Af::Inet,
        proto: ip.protocol(),
        src: Addr::v4(ip.src_octets()),
        dst: Addr::v4(ip.dst_octets()),
        sport: 0,
        dport: 0,
        ip_len: ip.total_len(),
        ttl: ip.ttl(),
        ifindex,
        dir,
        l4: L4Info::Other,
    };
    if ip.frag_offset() == 0 {
        transport(&mut info, ip.payload(), fragment)?;
    }
    Ok(FrameKind::Ip {
        info,
        // header_len <= 60 and l3_offset <= 22.
        l4_offset: (l3_offset + header_len) as u16,
        fragment,
        ip_options,
    })
}

#[inline]
fn ipv6_kind(
    bytes: &[u8],
    l3_offset: usize,
    ifindex: IfIndex,
    dir: Direction,
) -> Result<FrameKind, WireError> {
    match bytes.first() {
        None => return Err(WireError::Truncated),
        Some(b) if b >> 4 != 6 => return Err(WireError::BadIpVersion),
        Some(_) => {}
    }
    let ip = ipv6::Packet::new_checked(bytes)?;
    let payload = ip.payload();
    let upper = ipv6::walk_ext_headers(ip.next_header(), payload)?;
    let mut info = PacketInfo {
        af: Af::Inet6,
        proto: upper.protocol,
        src: Addr::v6(ip.src_octets()),
        dst: Addr::v6(ip.dst_octets()),
        sport: 0,
        dport: 0,
        // 40 + payload length exceeds u16 only for a payload over 65495
        // bytes; saturate rather than wrap.
        ip_len: u16::try_from(ip.total_len()).unwrap_or(u16::MAX),
        ttl: ip.hop_limit(),
        ifindex,
        dir,
        l4: L4Info::Other,
    };
    if upper.frag_offset == 0 {
        let l4 = payload.get(upper.offset..).ok_or(WireError::Truncated)?;
        transport(&mut info, l4, upper.fragment)?;
    }
    // Router alert is how MLD travels (RFC 2710 §3); pf lets it through.
    let mld = matches!(info.l4, L4Info::Icmp(i) if matches!(i.icmp_type, 130..=132 | 143));
    let ip_options = upper.routing || upper.hbh_options || (upper.router_alert && !mld);
    Ok(FrameKind::Ip {
        info,
        // The walk covers at most MAX_EXT_HEADERS headers of at most 2048
        // bytes each, so this is far below 65535.
        l4_offset: (l3_offset + ipv6::HEADER_LEN + upper.offset) as u16,
        fragment: upper.fragment,
        ip_options,
    })
}

/// Fills ports and [`L4Info`] from the transport header at the start of
/// `l4` (which ends at the IP packet's end).
#[inline]
fn transport(info: &mut PacketInfo, l4: &[u8], fragment: bool) -> Result<(), WireError> {
    match info.proto {
        proto::TCP => {
            let tcp = tcp::Packet::new_checked(l4)?;
            let options = tcp::Options::parse(tcp.options());
            info.sport = tcp.src_port();
            info.dport = tcp.dst_port();
            info.l4 = L4Info::Tcp(TcpInfo {
                seq: tcp.seq_number(),
                ack: tcp.ack_number(),
                win: tcp.window_len(),
                flags: tcp.flags(),
                wscale: options.wscale,
                mss: options.mss,
                sack_permitted: options.sack_permitted,
                timestamp: options.timestamp,
                // l4 is at most 65535 bytes.
                payload_len: (l4.len() - tcp.header_len()) as u16,
            });
        }
        proto::UDP => {
            if l4.len() < super::udp::HEADER_LEN {
                return Err(WireError::Truncated);
            }
            let udp_len = usize::from(be16(l4, 4));
            // RFC 768: the length covers header and data; a first fragment
            // carries only part of the datagram the length describes.
            if !fragment && (udp_len < super::udp::HEADER_LEN || udp_len > l4.len()) {
                return Err(WireError::BadUdpLen);
            }
            info.sport = be16(l4, 0);
            info.dport = be16(l4, 2);
            info.l4 = L4Info::Udp;
        }
        proto::ICMP => {
            if info.af != Af::Inet {
                return Err(WireError::WrongIcmpFamily);
            }
            let msg = icmp::Packet::new_checked(l4)?;
            let t = msg.msg_type();
            let mut icmp_info = IcmpInfo {
                icmp_type: t,
                code: msg.msg_code(),
                ..IcmpInfo::default()
            };
            if icmp::is_query(t) {
                icmp_info.id = msg.echo_ident();
                (info.sport, info.dport) = icmp_query_ports(proto::ICMP, t, icmp_info.id);
            } else if icmp::is_error(t) {
                icmp_info.is_error = true;
                icmp_info.quoted = Some(quoted_v4(msg.data())?);
            }
            info.l4 = L4Info::Icmp(icmp_info);
        }
        proto::ICMPV6 => {
            if info.af != Af::Inet6 {
                return Err(WireError::WrongIcmpFamily);
            }
            let msg = icmpv6::Packet::new_checked(l4)?;
            let t = msg.msg_type();
            let mut icmp_info = IcmpInfo {
                icmp_type: t,
                code: msg.msg_code(),
                ..IcmpInfo::default()
            };
            if icmpv6::is_query(t) {
                icmp_info.id = msg.echo_ident();
                (info.sport, info.dport) = icmp_query_ports(proto::ICMPV6, t, icmp_info.id);
            } else if icmpv6::is_error(t) {
                icmp_info.is_error = true;
                icmp_info.quoted = Some(quoted_v6(msg.data())?);
            }
            info.l4 = L4Info::Icmp(icmp_info);
        }
        _ => {}
    }
    Ok(())
}

/// The ports pf gives an ICMP query of type `t` with identifier `id`
/// (`pf_icmp_mapping`): a request is (id, its type), a reply (the request
/// type, id) — so a request and its reply make the same normalised
/// [`FlowKey`](crate::flow::FlowKey), and a state synchronised with an
/// OpenBSD peer (spec/pfsync.md §3.7) carries the ports pf expects. Echo
/// 8/0 map to 8, timestamp 13/14 to 13, information 15/16 to 15, address
/// mask 17/18 to 17; ICMPv6 echo 128/129 to 128.
#[inline]
fn icmp_query_ports(icmp_proto: u8, t: u8, id: u16) -> (u16, u16) {
    let (request, is_request) = if icmp_proto == proto::ICMP {
        match t {
            0 | 8 => (8, t == 8),
            13 | 14 => (13, t == 13),
            15 | 16 => (15, t == 15),
            17 | 18 => (17, t == 17),
            _ => (t, true),
        }
    } else {
        match t {
            128 | 129 => (128, t == 128),
            _ => (t, true),
        }
    };
    if is_request {
        (id, u16::from(request))
    } else {
        (u16::from(request), id)
    }
}

/// Ports (and TCP sequence number) of a quoted transport header: pf needs
/// its first 8 bytes for TCP, UDP and ICMP.
#[inline]
fn quoted_ports(q: &mut QuotedPacket, l4: &[u8], icmp_proto: u8) -> Result<(), WireError> {
    let p = q.proto;
    if p != proto::TCP && p != proto::UDP && p != icmp_proto {
        return Ok(());
    }
    if l4.len() < 8 {
        return Err(WireError::BadIcmpQuote);
    }
    if p == icmp_proto {
        let query = if icmp_proto == proto::ICMP {
            icmp::is_query(l4[0])
        } else {
            icmpv6::is_query(l4[0])
        };
        if query {
            (q.sport, q.dport) = icmp_query_ports(icmp_proto, l4[0], be16(l4, 4));
        }
    } else {
        q.sport = be16(l4, 0);
        q.dport = be16(l4, 2);
        if p == proto::TCP {
            q.tcp_seq = be32(l4, 4);
        }
    }
    Ok(())
}

/// Summarises the IPv4 packet quoted in an ICMPv4 error. The quoted total
/// length and checksum are not checked (the quote is usually truncated,
/// and RFC 1812 routers may have changed the header).
#[inline]
fn quoted_v4(data: &[u8]) -> Result<QuotedPacket, WireError> {
    if data.len() < ipv4::HEADER_LEN || data[0] >> 4 != 4 {
        return Err(WireError::BadIcmpQuote);
    }
    let ip = ipv4::Packet::new_unchecked(data);
    let header_len = ip.header_len();
    if header_len < ipv4::HEADER_LEN || header_len > data.len() {
        return Err(WireError::BadIcmpQuote);
    }
    let mut q = QuotedPacket {
        proto: ip.protocol(),
        src: Addr::v4(ip.src_octets()),
        dst: Addr::v4(ip.dst_octets()),
        ..QuotedPacket::default()
    };
    if ip.frag_offset() == 0 {
        quoted_ports(&mut q, &data[header_len..], proto::ICMP)?;
    }
    Ok(q)
}

/// Summarises the IPv6 packet quoted in an ICMPv6 error, walking its
/// extension headers over the bytes present.
#[inline]
fn quoted_v6(data: &[u8]) -> Result<QuotedPacket, WireError> {
    if data.len() < ipv6::HEADER_LEN || data[0] >> 4 != 6 {
        return Err(WireError::BadIcmpQuote);
    }
    let ip = ipv6::Packet::new_unchecked(data);
    let rest = &data[ipv6::HEADER_LEN..];
    let upper =
        ipv6::walk_ext_headers(ip.next_header(), rest).map_err(|_| WireError::BadIcmpQuote)?;
    let mut q = QuotedPacket {
        proto: upper.protocol,
        src: Addr::v6(ip.src_octets()),
        dst: Addr::v6(ip.dst_octets()),
        ..QuotedPacket::default()
    };
    if upper.frag_offset == 0 {
        let l4 = rest.get(upper.offset..).ok_or(WireError::BadIcmpQuote)?;
        quoted_ports(&mut q, l4, proto::ICMPV6)?;
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::super::vectors::*;
    use super::*;
    use crate::flow::tcp_flags;
    use proptest::prelude::*;

    const IF: IfIndex = IfIndex(1);

    fn ip_of(c: &Classified) -> (PacketInfo, u16, bool) {
        match c.kind {
            FrameKind::Ip {
                info,
                l4_offset,
                fragment,
                ..
            } => (info, l4_offset, fragment),
            other => panic!("not IP: {other:?}"),
        }
    }

    fn v6(s: &str) -> Addr {
        Addr::v6(s.parse::<core::net::Ipv6Addr>().unwrap().octets())
    }

    /// Recomputes the IPv4 header checksum of an untagged frame with a
    /// 20-byte header (so mutated frames still reach the common path).
    fn fix_ipv4_checksum(f: &mut [u8]) {
        if f.len() >= 34 {
            f[24] = 0;
            f[25] = 0;
            let c = !crate::wire::checksum::data(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// A TCP/IPv4 segment without options (V4_TCP_SYN cut to 54 bytes).
    fn v4_tcp_plain() -> Vec<u8> {
        let mut f = V4_TCP_SYN[..54].to_vec();
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[46] = 0x50;
        fix_ipv4_checksum(&mut f);
        f
    }

    #[test]
    fn common_v4_path_takes_plain_tcp_and_udp() {
        for f in [v4_tcp_plain(), V4_UDP_PADDED.to_vec()] {
            let fast = classify_common_v4(&f, IF, Direction::In);
            assert!(fast.is_some(), "common path refused {f:02x?}");
            assert_eq!(fast.map(Ok), Some(classify_any(&f, IF, Direction::In)));
        }
        // Options, fragments and tags go the general way.
        for f in [
            &V4_TCP_SYN[..],
            &V4_TCP_PSH_VLAN[..],
            &V4_UDP_FIRST_FRAGMENT[..],
            &V4_ICMP_ECHO[..],
        ] {
            assert_eq!(classify_common_v4(f, IF, Direction::In), None);
        }
    }

    proptest! {
        #[test]
        fn common_v4_path_and_lane_parse_agree_with_the_general_parse(
            shape in 0u8..3,
            flips in proptest::collection::vec((0usize..80, any::<u8>()), 0..4),
            keep_checksum in any::<bool>(),
            cut in 0usize..60,
        ) {
            let mut f = match shape {
                0 => V4_UDP_PADDED.to_vec(),
                1 => v4_tcp_plain(),
                _ => V4_TCP_SYN.to_vec(),
            };
            for (at, b) in flips {
                let n = f.len();
                f[at % n] = b;
            }
            if !keep_checksum {
                fix_ipv4_checksum(&mut f);
            }
            f.truncate(f.len().saturating_sub(cut % 8 * (cut / 8)));
            let general = classify_any(&f, IF, Direction::In);
            if let Some(c) = classify_common_v4(&f, IF, Direction::In) {
                prop_assert_eq!(Ok(c), general);
            }
            if let Some(lane) = segment4(&f) {
                prop_assert!(general.is_ok(), "{:?}", general);
                prop_assert_eq!(Some(lane), lane_view(&general.unwrap()));
            }
        }
    }

    /// What the lane's parse must agree with: `classify_any`'s answer for
    /// the same frame, reduced to the lane's fields.
    fn lane_view(c: &Classified) -> Option<Segment4> {
        match c.kind {
            FrameKind::Ip {
                info,
                fragment: false,
                ip_options: false,
                ..
            } if c.vlan_tags == 0 && c.ethertype == EtherType::IPV4 => {
                let tcp = match &info.l4 {
                    L4Info::Tcp(t) => TcpSegment::from(t),
                    L4Info::Udp => TcpSegment::default(),
                    _ => return None,
                };
                Some(Segment4 {
                    src: info.src.v4_octets(),
                    dst: info.dst.v4_octets(),
                    sport: info.sport,
                    dport: info.dport,
                    ip_len: info.ip_len,
                    ttl: info.ttl,
                    proto: info.proto,
                    tcp,
                })
            }
            _ => None,
        }
    }

    #[test]
    fn the_lane_parse_refuses_every_single_bit_error_in_the_ipv4_header() {
        let good = v4_tcp_plain();
        assert!(segment4(&good).is_some());
        for byte in 14..34 {
            for bit in 0..8 {
                let mut f = good.clone();
                f[byte] ^= 1 << bit;
                assert_eq!(segment4(&f), None, "bit {bit} of byte {byte} flipped");
            }
        }
    }

    #[test]
    fn the_lane_parse_takes_tcp_with_and_without_options_and_udp() {
        for f in [v4_tcp_plain(), V4_TCP_SYN.to_vec(), V4_UDP_PADDED.to_vec()] {
            let lane = segment4(&f);
            assert!(lane.is_some(), "lane refused {f:02x?}");
            let general = classify_any(&f, IF, Direction::In).unwrap();
            assert_eq!(lane, lane_view(&general));
        }
        for f in [
            &V4_TCP_PSH_VLAN[..],
            &V4_UDP_FIRST_FRAGMENT[..],
            &V4_ICMP_ECHO[..],
        ] {
            assert_eq!(segment4(f), None);
        }
    }

    #[test]
    fn ipv4_tcp_syn() {
        let c = classify(&V4_TCP_SYN, IF, Direction::In).unwrap();
        assert_eq!(
            c.src_mac,
            EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(c.vlan, None);
        assert_eq!(c.ethertype, EtherType::IPV4);
        assert_eq!(c.l3_offset, 14);
        let (info, l4_offset, fragment) = ip_of(&c);
        assert_eq!((l4_offset, fragment), (34, false));
        assert_eq!(
            info,
            PacketInfo {
                af: Af::Inet,
                proto: proto::TCP,
                src: Addr::v4([192, 168, 1, 10]),
                dst: Addr::v4([93, 184, 216, 34]),
                sport: 43210,
                dport: 80,
                ip_len: 60,
                ttl: 64,
                ifindex: IF,
                dir: Direction::In,
                l4: L4Info::Tcp(TcpInfo {
                    seq: 1_000_000_000,
                    ack: 0,
                    win: 64240,
                    flags: tcp_flags::SYN,
                    wscale: Some(7),
                    mss: Some(1460),
                    sack_permitted: true,
                    timestamp: Some((123_456, 0)),
                    payload_len: 0,
                }),
            }
        );
        // The transport checksum is separate and correct.
        let ips = super::super::IpPair::from_addrs(info.af, info.src, info.dst);
        let seg = tcp::Packet::new_checked(&V4_TCP_SYN[34..]).unwrap();
        assert!(seg.verify_checksum(&ips));
    }

    #[test]
    fn ipv4_tcp_data_on_vlan() {
        let c = classify(&V4_TCP_PSH_VLAN, IF, Direction::Out).unwrap();
        assert_eq!(c.vlan, Some(100));
        assert_eq!(c.l3_offset, 18);
        let (info, l4_offset, _) = ip_of(&c);
        assert_eq!(l4_offset, 38);
        assert_eq!(info.dir, Direction::Out);
        match info.l4 {
            L4Info::Tcp(t) => {
                assert_eq!(t.seq, 1_000_000_001);
                assert_eq!(t.ack, 3_000_000_001);
                assert_eq!(t.win, 502);
                assert_eq!(t.flags, tcp_flags::PSH | tcp_flags::ACK);
                assert_eq!(t.payload_len, 5);
                assert_eq!(t.timestamp, Some((123_556, 3_000_000_000)));
                assert_eq!((t.mss, t.wscale), (None, None));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ipv4_udp_with_padding() {
        let c = classify(&V4_UDP_PADDED, IF, Direction::In).unwrap();
        let (info, l4_offset, fragment) = ip_of(&c);
        assert_eq!((info.sport, info.dport, info.ip_len), (54321, 53, 40));
        assert_eq!(info.l4, L4Info::Udp);
        assert_eq!((l4_offset, fragment), (34, false));
    }

    #[test]
    fn ipv4_icmp_echo_ports_are_pfs_id_and_type() {
        let c = classify(&V4_ICMP_ECHO, IF, Direction::In).unwrap();
        let (info, _, _) = ip_of(&c);
        // pf_icmp_mapping: an echo request is (id, ICMP_ECHO).
        assert_eq!((info.sport, info.dport), (0x1234, 8));
        assert_eq!(
            info.l4,
            L4Info::Icmp(IcmpInfo {
                icmp_type: 8,
                code: 0,
                id: 0x1234,
                is_error: false,
                quoted: None,
            })
        );
    }

    #[test]
    fn ipv4_icmp_error_quotes_tcp() {
        let c = classify(&V4_ICMP_TIME_EXCEEDED, IF, Direction::In).unwrap();
        let (info, _, _) = ip_of(&c);
        assert_eq!((info.sport, info.dport, info.ttl), (0, 0, 250));
        assert_eq!(
            info.l4,
            L4Info::Icmp(IcmpInfo {
                icmp_type: 11,
                code: 0,
                id: 0,
                is_error: true,
                quoted: Some(QuotedPacket {
                    proto: proto::TCP,
                    src: Addr::v4([192, 168, 1, 10]),
                    dst: Addr::v4([93, 184, 216, 34]),
                    sport: 43210,
                    dport: 80,
                    tcp_seq: 1_000_000_000,
                }),
            })
        );
    }

    #[test]
    fn short_icmp_quote_is_an_error() {
        // Cut the quote to the IP header + 7 bytes and fix up the lengths
        // and checksums so only the quote is wrong.
        let mut f = V4_ICMP_TIME_EXCEEDED[..V4_ICMP_TIME_EXCEEDED.len() - 1].to_vec();
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        let total = ip.total_len() - 1;
        ip.set_total_len(total);
        ip.fill_checksum();
        assert_eq!(
            classify(&f, IF, Direction::In).unwrap_err(),
            WireError::BadIcmpQuote
        );
        // A quote that is not IPv4.
        let mut f = V4_ICMP_TIME_EXCEEDED.to_vec();
        f[14 + 20 + 8] = 0x65;
        assert_eq!(
            classify(&f, IF, Direction::In).unwrap_err(),
            WireError::BadIcmpQuote
        );
    }

    #[test]
    fn ipv4_fragments() {
        let c = classify(&V4_UDP_FIRST_FRAGMENT, IF, Direction::In).unwrap();
        let (info, l4_offset, fragment) = ip_of(&c);
        assert!(fragment);
        assert_eq!((info.sport, info.dport, info.l4), (54321, 53, L4Info::Udp));
        assert_eq!(l4_offset, 34);

        let c = classify(&V4_UDP_LATER_FRAGMENT, IF, Direction::In).unwrap();
        let (info, l4_offset, fragment) = ip_of(&c);
        assert!(fragment);
        assert_eq!(info.proto, proto::UDP);
        assert_eq!((info.sport, info.dport, info.l4), (0, 0, L4Info::Other));
        assert_eq!(l4_offset, 34);
    }

    #[test]
    fn ipv6_tcp_on_vlan() {
        let c = classify(&V6_TCP_SYN_VLAN, IF, Direction::In).unwrap();
        assert_eq!(
            (c.vlan, c.l3_offset, c.ethertype),
            (Some(7), 18, EtherType::IPV6)
        );
        let (info, l4_offset, fragment) = ip_of(&c);
        assert_eq!((l4_offset, fragment), (58, false));
        assert_eq!(info.af, Af::Inet6);
        assert_eq!(info.src, v6("2001:db8:1::10"));
        assert_eq!(info.dst, v6("2001:db8:2::80"));
        assert_eq!(
            (info.sport, info.dport, info.ip_len, info.ttl),
            (50000, 443, 80, 64)
        );
        match info.l4 {
            L4Info::Tcp(t) => {
                assert_eq!(t.seq, 0xdead_beef);
                assert_eq!(
                    (t.mss, t.wscale, t.sack_permitted),
                    (Some(1440), Some(10), true)
                );
                assert_eq!(t.timestamp, Some((1, 0)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_icmp_query_and_its_reply_make_one_flow_key() {
        use crate::flow::{Addr, Af, FlowKey};
        let (a, b) = (Addr::v4([10, 0, 0, 1]), Addr::v4([10, 0, 0, 2]));
        for (req, rep) in [(8u8, 0u8), (13, 14), (15, 16), (17, 18)] {
            let (s, d) = icmp_query_ports(proto::ICMP, req, 0x4242);
            assert_eq!((s, d), (0x4242, u16::from(req)));
            let (rs, rd) = icmp_query_ports(proto::ICMP, rep, 0x4242);
            assert_eq!((rs, rd), (u16::from(req), 0x4242));
            let k1 = FlowKey::from_packet(Af::Inet, proto::ICMP, a, s, b, d);
            let k2 = FlowKey::from_packet(Af::Inet, proto::ICMP, b, rs, a, rd);
            assert_eq!(k1.0, k2.0);
            assert_ne!(k1.1, k2.1, "one is the swapped direction");
        }
        assert_eq!(icmp_query_ports(proto::ICMPV6, 128, 7), (7, 128));
        assert_eq!(icmp_query_ports(proto::ICMPV6, 129, 7), (128, 7));
    }

    #[test]
    fn ipv6_echo_and_ns() {
        let (info, _, _) = ip_of(&classify(&V6_ICMP_ECHO, IF, Direction::In).unwrap());
        assert_eq!(
            (info.proto, info.sport, info.dport),
            (proto::ICMPV6, 0x0777, 128)
        );

        let c = classify(&V6_NS, IF, Direction::In).unwrap();
        assert!(c.dst_mac.is_multicast());
        let (info, l4_offset, _) = ip_of(&c);
        assert_eq!(info.ttl, 255);
        assert_eq!((info.sport, info.dport), (0, 0));
        assert!(matches!(
            info.l4,
            L4Info::Icmp(IcmpInfo {
                icmp_type: 135,
                is_error: false,
                quoted: None,
                ..
            })
        ));
        let ips = super::super::IpPair::from_addrs(info.af, info.src, info.dst);
        let msg = icmpv6::Packet::new_checked(&V6_NS[usize::from(l4_offset)..]).unwrap();
        assert!(msg.verify_checksum(&ips));
    }

    #[test]
    fn ipv6_packet_too_big_quotes_tcp() {
        let (info, _, _) = ip_of(&classify(&V6_PACKET_TOO_BIG, IF, Direction::In).unwrap());
        assert_eq!(
            info.l4,
            L4Info::Icmp(IcmpInfo {
                icmp_type: 2,
                code: 0,
                id: 0,
                is_error: true,
                quoted: Some(QuotedPacket {
                    proto: proto::TCP,
                    src: v6("2001:db8:1::10"),
                    dst: v6("2001:db8:2::80"),
                    sport: 50000,
                    dport: 443,
                    tcp_seq: 0xdead_beef,
                }),
            })
        );
    }

    #[test]
    fn ipv6_later_fragment_after_hop_by_hop() {
        let (info, l4_offset, fragment) =
            ip_of(&classify(&V6_HBH_LATER_FRAGMENT, IF, Direction::In).unwrap());
        assert!(fragment);
        assert_eq!(info.proto, proto::UDP);
        assert_eq!((info.sport, info.dport, info.l4), (0, 0, L4Info::Other));
        assert_eq!(l4_offset, 14 + 40 + 16);
    }

    #[test]
    fn arp_and_other() {
        let c = classify(&ARP_REQUEST_VLAN, IF, Direction::In).unwrap();
        assert_eq!(
            (c.kind, c.vlan, c.l3_offset),
            (FrameKind::Arp, Some(100), 18)
        );
        assert!(c.dst_mac.is_broadcast());
        let c = classify(&LLDP, IF, Direction::In).unwrap();
        assert_eq!((c.kind, c.ethertype), (FrameKind::Other, EtherType(0x88cc)));
    }

    #[test]
    fn named_errors() {
        let err = |f: &[u8]| classify(f, IF, Direction::In).unwrap_err();
        assert_eq!(err(&V4_TCP_SYN[..13]), WireError::Truncated);
        assert_eq!(err(&V4_TCP_SYN[..14]), WireError::Truncated);
        let mut f = V4_TCP_SYN;
        f[14] = 0x65;
        assert_eq!(err(&f), WireError::BadIpVersion);
        let mut f = V4_TCP_SYN;
        f[14] = 0x44;
        assert_eq!(err(&f), WireError::BadIpHeaderLen);
        assert_eq!(err(&V4_TCP_SYN[..73]), WireError::BadIpTotalLen);
        let mut f = V4_TCP_SYN;
        f[22] -= 1; // TTL changed, checksum not updated
        #[cfg(not(fuzzing))]
        assert_eq!(err(&f), WireError::BadIpChecksum);
        let mut f = V4_TCP_SYN;
        f[14 + 20 + 12] = 0x40; // data offset 4
        assert_eq!(err(&f), WireError::BadTcpHeaderLen);
        let mut f = V4_TCP_SYN;
        f[14 + 20 + 12] = 0xf0; // data offset 15 > segment
        assert_eq!(err(&f), WireError::BadTcpHeaderLen);
        let mut f = V4_UDP_PADDED;
        f[14 + 20 + 5] = 0x30; // UDP length 48 > 20 bytes of IP payload
        assert_eq!(err(&f), WireError::BadUdpLen);
        let mut f = V6_ICMP_ECHO;
        f[14 + 6] = proto::ICMP;
        assert_eq!(err(&f), WireError::WrongIcmpFamily);
        let mut f = V6_HBH_LATER_FRAGMENT;
        f[14 + 40] = 0; // hop-by-hop twice
        assert_eq!(err(&f), WireError::BadIpv6ExtHeader);
        let mut f = V6_TCP_SYN_VLAN;
        f[18] = 0x45;
        assert_eq!(err(&f), WireError::BadIpVersion);
        assert_eq!(err(&ARP_REQUEST_VLAN[..18 + 27]), WireError::Truncated);
    }

    #[test]
    fn ipv4_udp_in_icmp_port_unreach() {
        // The ICMP unreachable vector of icmp.rs, behind Ethernet + IPv4.
        let msg = &super::super::icmp::tests::PORT_UNREACH;
        let mut f = V4_ICMP_ECHO[..34].to_vec();
        f.extend_from_slice(msg);
        let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
        ip.set_total_len(20 + msg.len() as u16);
        ip.fill_checksum();
        let (info, _, _) = ip_of(&classify(&f, IF, Direction::In).unwrap());
        match info.l4 {
            L4Info::Icmp(i) => {
                let q = i.quoted.unwrap();
                assert_eq!(
                    (q.proto, q.sport, q.dport, q.tcp_seq),
                    (proto::UDP, 54321, 53, 0)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    const ALL: [&[u8]; 13] = [
        &V4_TCP_SYN,
        &V4_TCP_PSH_VLAN,
        &V4_UDP_PADDED,
        &V4_ICMP_ECHO,
        &V4_ICMP_TIME_EXCEEDED,
        &V4_UDP_FIRST_FRAGMENT,
        &V4_UDP_LATER_FRAGMENT,
        &V6_TCP_SYN_VLAN,
        &V6_ICMP_ECHO,
        &V6_NS,
        &V6_PACKET_TOO_BIG,
        &V6_HBH_LATER_FRAGMENT,
        &ARP_REQUEST_VLAN,
    ];

    /// The vectors' transport checksums (computed by an independent
    /// implementation) verify with ours, and break when a byte changes.
    #[test]
    fn vector_transport_checksums_verify() {
        let mut checked = 0;
        for frame in ALL {
            let c = classify(frame, IF, Direction::In).unwrap();
            let FrameKind::Ip {
                info,
                l4_offset,
                fragment,
                ..
            } = c.kind
            else {
                continue;
            };
            if fragment {
                continue;
            }
            let end = usize::from(c.l3_offset) + usize::from(info.ip_len);
            let mut seg = frame[usize::from(l4_offset)..end].to_vec();
            let ips = super::super::IpPair::from_addrs(info.af, info.src, info.dst);
            let verify = |seg: &[u8]| match info.proto {
                proto::TCP => tcp::Packet::new_checked(seg).unwrap().verify_checksum(&ips),
                proto::UDP => super::super::udp::Packet::new_checked(seg)
                    .unwrap()
                    .verify_checksum(&ips),
                proto::ICMP => icmp::Packet::new_checked(seg).unwrap().verify_checksum(),
                proto::ICMPV6 => icmpv6::Packet::new_checked(seg)
                    .unwrap()
                    .verify_checksum(&ips),
                p => panic!("proto {p}"),
            };
            assert!(verify(&seg), "{frame:02x?}");
            let last = seg.len() - 1;
            seg[last] ^= 0x01;
            assert!(!verify(&seg), "{frame:02x?}");
            checked += 1;
        }
        assert_eq!(checked, 9);
    }

    /// Every prefix of every valid frame is an error, or (when only
    /// link-layer padding was cut) the same result as the whole frame.
    #[test]
    fn truncated_copies_fail_or_agree() {
        for frame in ALL.iter().chain([&&LLDP[..]]) {
            let whole = classify(frame, IF, Direction::In).unwrap();
            for cut in 0..frame.len() {
                let copy = frame[..cut].to_vec();
                match classify(&copy, IF, Direction::In) {
                    Err(_) => {}
                    Ok(c) => {
                        assert_eq!(c, whole, "cut at {cut} of {frame:02x?}");
                        let end = match c.kind {
                            FrameKind::Ip { info, .. } => {
                                usize::from(c.l3_offset) + usize::from(info.ip_len)
                            }
                            FrameKind::Arp => usize::from(c.l3_offset) + 28,
                            FrameKind::Other => usize::from(c.l3_offset),
                        };
                        assert!(end <= cut, "cut at {cut}");
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(c) = classify(&bytes, IF, Direction::In) {
                prop_assert!(usize::from(c.l3_offset) <= bytes.len());
                if let FrameKind::Ip { info, l4_offset, .. } = c.kind {
                    prop_assert!(usize::from(l4_offset) <= bytes.len());
                    prop_assert!(usize::from(c.l3_offset) + usize::from(info.ip_len) <= bytes.len());
                }
            }
        }

        /// Valid Ethernet + IP headers (correct IPv4 checksum) with any
        /// protocol, fragment offset and payload reach the transport and
        /// ICMP-quote parsers.
        #[test]
        fn arbitrary_payload_behind_valid_ip_never_panics(
            v6 in any::<bool>(),
            protocol in prop_oneof![Just(1u8), Just(6), Just(17), Just(58), Just(0), Just(43),
                                    Just(44), Just(60), any::<u8>()],
            more_frags in any::<bool>(), frag_offset in prop_oneof![Just(0u16), any::<u16>()],
            payload in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let mut f = vec![0u8; 14];
            f[12..14].copy_from_slice(&if v6 { [0x86, 0xdd] } else { [0x08, 0x00] });
            let start = f.len();
            if v6 {
                let repr = ipv6::Repr {
                    src_addr: [0x20; 16].into(), dst_addr: [0x21; 16].into(),
                    next_header: protocol, payload_len: payload.len(), hop_limit: 64,
                    traffic_class: 0, flow_label: 0,
                };
                f.resize(start + 40, 0);
                repr.emit(&mut ipv6::Packet::new_unchecked(&mut f[start..]));
            } else {
                let repr = ipv4::Repr {
                    src_addr: [10, 0, 0, 1].into(), dst_addr: [10, 0, 0, 2].into(), protocol,
                    payload_len: payload.len(), ttl: 64, tos: 0, ident: 1, dont_frag: false,
                };
                f.resize(start + 20, 0);
                let mut ip = ipv4::Packet::new_unchecked(&mut f[start..]);
                repr.emit(&mut ip);
                ip.set_flags_frag(false, more_frags, frag_offset & 0xfff8);
                ip.fill_checksum();
            }
            f.extend_from_slice(&payload);
            match classify(&f, IF, Direction::In) {
                Ok(c) => {
                    let FrameKind::Ip { info, l4_offset, .. } = c.kind else {
                        return Err(TestCaseError::fail("not IP"));
                    };
                    prop_assert!(usize::from(l4_offset) <= f.len());
                    prop_assert_eq!(usize::from(info.ip_len), f.len() - 14);
                }
                Err(e) => prop_assert!(e != WireError::BadIpChecksum && e != WireError::BadIpVersion),
            }
        }

        /// Mutating bytes of valid frames reaches the deep parsers.
        #[test]
        fn mutated_vectors_never_panic(
            which in 0usize..13,
            edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..6),
            cut in any::<u16>(),
        ) {
            let mut f = ALL[which].to_vec();
            for (at, v) in edits {
                let at = usize::from(at) % f.len();
                f[at] = v;
            }
            let len = f.len();
            f.truncate(usize::from(cut) % (len + 1));
            if let Ok(c) = classify(&f, IF, Direction::In) {
                if let FrameKind::Ip { l4_offset, .. } = c.kind {
                    prop_assert!(usize::from(l4_offset) <= f.len());
                }
            }
        }
    }
}
