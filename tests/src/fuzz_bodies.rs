//! The bodies of dpf's fuzz targets, shared by the libFuzzer binaries in
//! `fuzz/fuzz_targets/` (each is one line calling a function here) and by
//! the plain `cargo test` smoke run in `tests/tests/fuzz_smoke.rs`, which
//! feeds them the seed corpus and deterministic mutations of it.
//!
//! | target | parser entry points |
//! |---|---|
//! | [`classify`] | `wire::classify`, `new_checked` + `Repr::parse` of ethernet, arp, ipv4, ipv6 (+ extension-header walk), tcp, udp, icmp, icmpv6; the reply builders of `wire::build` |
//! | [`rules`] | `rules::Ruleset::compile` with two interfaces, `evaluate` on fixed packets, canonical rule text |
//! | [`carp`] | `carp::wire::parse_frame`, `Packet::new_checked`/`Repr::parse`, `carp::validate::validate` |
//! | [`pfsync`] | `pfsync::wire::frame::receive_frame`/`receive_ip`, the §2.3 walker over every message, re-packing |
//! | [`config`] | `config::Config::parse` |
//! | [`ctl`] | `ctl::parse_request` |
//!
//! Invariants asserted beyond "does not panic", where they are cheap:
//! `parse(emit(parse(x))) == parse(x)` for every `Repr` (and
//! `emit(parse(x)) == x` where the `Repr` keeps every byte), that
//! `classify` results lie inside the frame and agree with the layer views,
//! that every reply dpf builds from a packet is a well-formed frame with
//! correct checksums, that counters move exactly as the validation
//! pipelines document, and that a compiled rule's canonical text compiles
//! back to the same text.
//!
//! These functions panic (`assert!`) on a violated invariant: that is
//! how a fuzzer learns of a bug. They allocate freely; they are test code.
//!
//! Checksums: under `cfg(fuzzing)` (set by cargo-fuzz) dpf's parse paths
//! skip checksum verification so the fuzzer reaches deep code. Without it
//! (the smoke test) most mutated packets would stop at a checksum, so each
//! packet body is also run on a copy whose checksums were recomputed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::OnceLock;

use control::carp::validate::{Candidate, RxContext as CarpRxContext, RxIf};
use control::carp::wire as carp_wire;
use control::carp::{AuthContext, AuthInput, CarpDrop, CarpStats, Key};
use control::pfsync::pack::{PackError, PacketWriter};
use control::pfsync::wire::frame::{self as pfsync_frame, LinkParams, RxContext, RxDrop};
use control::pfsync::wire::{Message, Walker, PFSYNC_GROUP};
use control::pfsync::PfsyncStats;
use dataplane::flow::{
    proto, tcp_flags, Addr, Af, Direction, IcmpInfo, IfIndex, L4Info, PacketInfo, TcpInfo,
};
use dataplane::rules::{Action, ReturnMode, RuleCounters, RuleEnv, Ruleset};
use dataplane::wire::{
    self, arp, build, ethernet, icmp, icmpv6, ipv4, ipv6, tcp, udp, Classified, EtherType,
    EthernetAddress, FrameKind, IpPair,
};

/// A target body: takes one input, panics on a broken invariant.
pub type Body = fn(&[u8]);

/// Every target: its name (the corpus directory and fuzz binary) and body.
pub const TARGETS: &[(&str, Body)] = &[
    ("classify", classify),
    ("rules", rules),
    ("carp", carp),
    ("pfsync", pfsync),
    ("config", config),
    ("ctl", ctl),
];

// ------------------------------------------------------------------ classify

/// Our MAC in the reply builders.
const OUR_MAC: EthernetAddress = EthernetAddress([0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
/// Our IPv4 address in the ICMP error builders.
const OUR_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Our IPv6 address in the ICMPv6 error builders.
const OUR_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// Fixed pseudo-header pairs for transport parsers run on raw bytes.
fn fixed_pairs() -> [IpPair; 2] {
    [
        IpPair::V4 {
            src: Ipv4Addr::new(192, 168, 1, 10),
            dst: Ipv4Addr::new(93, 184, 216, 34),
        },
        IpPair::V6 {
            src: Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10),
            dst: Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x80),
        },
    ]
}

/// One Ethernet frame: `classify`, every layer view and `Repr` on the raw
/// bytes and on the layers `classify` found, and every reply builder.
pub fn classify(data: &[u8]) {
    classify_once(data);
    if !cfg!(fuzzing) {
        let mut fixed = data.to_vec();
        if fix_frame_checksums(&mut fixed) {
            classify_once(&fixed);
        }
    }
}

fn classify_once(data: &[u8]) {
    // Each layer parser on the raw input, so the fuzzer can reach each one
    // without building the layers above it.
    ethernet_layer(data);
    arp_layer(data);
    ipv4_layer(data);
    ipv6_layer(data);
    icmp_layer(data);
    for ips in fixed_pairs() {
        tcp_layer(data, &ips);
        udp_layer(data, &ips);
        icmpv6_layer(data, &ips);
    }

    for dir in [Direction::In, Direction::Out] {
        let _ = wire::classify(data, IfIndex(1), dir);
    }
    let Ok(c) = wire::classify(data, IfIndex(0), Direction::In) else {
        return;
    };
    check_classified(data, &c);
    builders(data, &c);
}

/// The documented invariants of a successful `classify`, and agreement
/// with the layer views.
fn check_classified(data: &[u8], c: &Classified) {
    let l3 = usize::from(c.l3_offset);
    let eth = ethernet::Frame::new_checked(data).expect("classified frame has an Ethernet header");
    assert_eq!(l3, ethernet::HEADER_LEN + 4 * usize::from(c.vlan_tags));
    assert!(usize::from(c.vlan_tags) <= dataplane::wire::MAX_VLAN_TAGS);
    if c.vlan_tags <= 1 {
        // The Ethernet view walks one 802.1Q tag.
        if eth.outer_ethertype() != EtherType::QINQ && eth.outer_ethertype().0 != 0x9100 {
            assert_eq!(c.vlan, eth.vlan_id());
            assert_eq!(c.ethertype, eth.ethertype());
        }
    }
    assert_eq!((c.src_mac, c.dst_mac), (eth.src_addr(), eth.dst_addr()));
    match c.kind {
        FrameKind::Other => {
            assert!(c.ethertype != EtherType::IPV4 && c.ethertype != EtherType::IPV6);
        }
        FrameKind::Arp => {
            assert_eq!(c.ethertype, EtherType::ARP);
            assert!(data.len() >= l3 + arp::PACKET_LEN);
            arp_layer(&data[l3..]);
        }
        FrameKind::Ip {
            info,
            l4_offset,
            fragment,
            ..
        } => {
            let l4 = usize::from(l4_offset);
            let end = l3 + usize::from(info.ip_len);
            assert!(
                l3 < l4 && l4 <= end && end <= data.len(),
                "offsets l3 {l3} l4 {l4} end {end} outside a {}-byte frame",
                data.len()
            );
            assert_eq!((info.ifindex, info.dir), (IfIndex(0), Direction::In));
            let ip = &data[l3..end];
            match info.af {
                Af::Inet => {
                    assert_eq!(c.ethertype, EtherType::IPV4);
                    let p = ipv4::Packet::new_checked(ip).expect("classified IPv4 header");
                    assert_eq!(Addr::v4(p.src_octets()), info.src);
                    assert_eq!(Addr::v4(p.dst_octets()), info.dst);
                    assert_eq!((p.protocol(), p.ttl()), (info.proto, info.ttl));
                    assert_eq!(fragment, p.is_fragment());
                    ipv4_layer(ip);
                }
                Af::Inet6 => {
                    assert_eq!(c.ethertype, EtherType::IPV6);
                    let p = ipv6::Packet::new_checked(ip).expect("classified IPv6 header");
                    assert_eq!(Addr::v6(p.src_octets()), info.src);
                    assert_eq!(Addr::v6(p.dst_octets()), info.dst);
                    assert_eq!(p.hop_limit(), info.ttl);
                    let ul = p.upper_layer().expect("classified extension headers");
                    assert_eq!(ul.protocol, info.proto);
                    assert_eq!(l3 + ipv6::HEADER_LEN + ul.offset, l4);
                    ipv6_layer(ip);
                }
            }
            let non_first_fragment = fragment && !has_transport_header(&info);
            if non_first_fragment {
                assert_eq!((info.sport, info.dport), (0, 0));
                return;
            }
            let seg = &data[l4..end];
            let ips = IpPair::from_addrs(info.af, info.src, info.dst);
            match info.l4 {
                L4Info::Tcp(t) => {
                    let p = tcp::Packet::new_checked(seg).expect("classified TCP header");
                    assert_eq!((p.src_port(), p.dst_port()), (info.sport, info.dport));
                    assert_eq!((p.seq_number(), p.ack_number()), (t.seq, t.ack));
                    assert_eq!((p.flags(), p.window_len()), (t.flags, t.win));
                    tcp_layer(seg, &ips);
                }
                L4Info::Udp => {
                    assert_eq!(info.proto, proto::UDP);
                    if seg.len() >= udp::HEADER_LEN {
                        assert_eq!(u16::from_be_bytes([seg[0], seg[1]]), info.sport);
                        assert_eq!(u16::from_be_bytes([seg[2], seg[3]]), info.dport);
                    }
                    udp_layer(seg, &ips);
                }
                L4Info::Icmp(i) => {
                    if info.af == Af::Inet {
                        let p = icmp::Packet::new_checked(seg).expect("classified ICMP header");
                        assert_eq!((p.msg_type(), p.msg_code()), (i.icmp_type, i.code));
                        icmp_layer(seg);
                    } else {
                        let p = icmpv6::Packet::new_checked(seg).expect("classified ICMPv6");
                        assert_eq!((p.msg_type(), p.msg_code()), (i.icmp_type, i.code));
                        icmpv6_layer(seg, &ips);
                    }
                    assert!(i.quoted.is_none() || i.is_error);
                }
                L4Info::Other => {}
            }
        }
    }
}

/// Whether `classify` reported transport fields (a first fragment or a
/// whole packet) rather than fragment data.
fn has_transport_header(info: &PacketInfo) -> bool {
    !matches!(info.l4, L4Info::Other)
}

fn ethernet_layer(data: &[u8]) {
    let Ok(frame) = ethernet::Frame::new_checked(data) else {
        return;
    };
    let _ = (frame.payload(), frame.vlan_tci(), frame.outer_ethertype());
    let Ok(repr) = ethernet::Repr::parse(&frame) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ethernet::Frame::new_unchecked(&mut buf[..]));
    let again = ethernet::Frame::new_checked(&buf[..]).expect("emitted Ethernet header");
    assert_eq!(ethernet::Repr::parse(&again), Ok(repr));
}

fn arp_layer(data: &[u8]) {
    let Ok(p) = arp::Packet::new_checked(data) else {
        return;
    };
    let Ok(repr) = arp::Repr::parse(&p) else {
        return;
    };
    let mut buf = [0u8; arp::PACKET_LEN];
    repr.emit(&mut arp::Packet::new_unchecked(&mut buf[..]));
    // The Repr keeps every byte of an Ethernet/IPv4 ARP packet.
    assert_eq!(&buf[..], &data[..arp::PACKET_LEN]);
    let _ = build::arp_reply_to(&repr, None, OUR_MAC).map(|r| check_reply(&r));
}

fn ipv4_layer(data: &[u8]) {
    let Ok(p) = ipv4::Packet::new_checked(data) else {
        return;
    };
    let _ = (
        p.options(),
        p.payload(),
        p.frag_offset(),
        p.verify_checksum(),
    );
    let Ok(repr) = ipv4::Repr::parse(&p) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]));
    let again = ipv4::Packet::new_checked(&buf[..]).expect("emitted IPv4 header");
    assert!(again.verify_checksum(), "emitted IPv4 checksum");
    assert_eq!(ipv4::Repr::parse(&again), Ok(repr));
}

fn ipv6_layer(data: &[u8]) {
    let Ok(p) = ipv6::Packet::new_checked(data) else {
        return;
    };
    if let Ok(ul) = p.upper_layer() {
        assert!(
            ul.offset <= p.payload().len(),
            "upper layer past the payload"
        );
    }
    let Ok(repr) = ipv6::Repr::parse(&p) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
    repr.emit(&mut ipv6::Packet::new_unchecked(&mut buf[..]));
    let again = ipv6::Packet::new_checked(&buf[..]).expect("emitted IPv6 header");
    assert_eq!(ipv6::Repr::parse(&again), Ok(repr));
}

fn tcp_layer(data: &[u8], ips: &IpPair) {
    let Ok(p) = tcp::Packet::new_checked(data) else {
        return;
    };
    for opt in p.options_iter() {
        if opt.is_err() {
            break;
        }
    }
    let _ = (p.payload(), p.segment_len(), p.urgent_at());
    let Ok(repr) = tcp::Repr::parse(&p, ips) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut tcp::Packet::new_unchecked(&mut buf[..]), ips);
    let again = tcp::Packet::new_checked(&buf[..]).expect("emitted TCP header");
    assert!(again.verify_checksum(ips), "emitted TCP checksum");
    assert_eq!(tcp::Repr::parse(&again, ips), Ok(repr));
}

fn udp_layer(data: &[u8], ips: &IpPair) {
    let Ok(p) = udp::Packet::new_checked(data) else {
        return;
    };
    let _ = p.payload();
    let Ok(repr) = udp::Repr::parse(&p, ips) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut udp::Packet::new_unchecked(&mut buf[..]), ips);
    let again = udp::Packet::new_checked(&buf[..]).expect("emitted UDP header");
    assert!(again.verify_checksum(ips), "emitted UDP checksum");
    assert_eq!(udp::Repr::parse(&again, ips), Ok(repr));
}

fn icmp_layer(data: &[u8]) {
    let Ok(p) = icmp::Packet::new_checked(data) else {
        return;
    };
    let _ = (p.data(), p.gateway(), p.pointer(), p.next_hop_mtu());
    let Ok(repr) = icmp::Repr::parse(&p) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut icmp::Packet::new_unchecked(&mut buf[..]));
    let again = icmp::Packet::new_checked(&buf[..]).expect("emitted ICMP header");
    assert!(again.verify_checksum(), "emitted ICMP checksum");
    assert_eq!(icmp::Repr::parse(&again), Ok(repr));
    // Every field of the 8-byte header and the data are kept.
    assert_eq!(&buf[..2], &data[..2]);
    assert_eq!(&buf[4..], &data[4..]);
}

fn icmpv6_layer(data: &[u8], ips: &IpPair) {
    let Ok(p) = icmpv6::Packet::new_checked(data) else {
        return;
    };
    let _ = (p.data(), p.target_addr(), p.na_router());
    for opt in p.ndp_options() {
        if opt.is_err() {
            break;
        }
    }
    let Ok(repr) = icmpv6::Repr::parse(&p, ips) else {
        return;
    };
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut icmpv6::Packet::new_unchecked(&mut buf[..]), ips);
    let again = icmpv6::Packet::new_checked(&buf[..]).expect("emitted ICMPv6 header");
    assert!(again.verify_checksum(ips), "emitted ICMPv6 checksum");
    assert_eq!(icmpv6::Repr::parse(&again, ips), Ok(repr));
}

/// Every builder that answers a received packet.
fn builders(data: &[u8], c: &Classified) {
    let replies = [
        build::tcp_rst(c, OUR_MAC),
        build::icmpv4_echo_reply(data, OUR_MAC),
        build::icmpv4_dst_unreachable(data, 3, OUR_MAC, OUR_V4),
        build::icmpv6_echo_reply(data, OUR_MAC),
        build::icmpv6_dst_unreachable(data, 4, OUR_MAC, OUR_V6),
        build::icmpv6_packet_too_big(data, 1280, OUR_MAC, OUR_V6),
        build::neighbor_advert_reply(data, OUR_MAC, false),
    ];
    for reply in replies.iter().flatten() {
        check_reply(reply);
    }
}

/// A reply emits exactly `buffer_len` bytes, refuses a shorter buffer and
/// is a frame `classify` accepts, with correct checksums at every layer.
fn check_reply(reply: &build::Reply<'_>) {
    let len = reply.buffer_len();
    let mut buf = vec![0u8; len + 7];
    assert_eq!(
        reply.emit(&mut buf[..len - 1]),
        Err(wire::WireError::BufferTooSmall)
    );
    assert_eq!(reply.emit(&mut buf), Ok(len));
    let frame = &buf[..len];
    let c = wire::classify(frame, IfIndex(0), Direction::Out)
        .unwrap_or_else(|e| panic!("reply does not classify: {e}: {reply:?}"));
    assert!(checksums_ok(frame, &c), "bad checksum in reply {reply:?}");
    let again = wire::classify(frame, IfIndex(0), Direction::Out);
    assert_eq!(again, Ok(c));
}

/// Verifies the IPv4 header and transport checksums of a classified
/// frame (the views' `verify_checksum` always computes).
fn checksums_ok(frame: &[u8], c: &Classified) -> bool {
    let FrameKind::Ip {
        info, l4_offset, ..
    } = c.kind
    else {
        return true;
    };
    let l3 = usize::from(c.l3_offset);
    let end = l3 + usize::from(info.ip_len);
    if info.af == Af::Inet {
        match ipv4::Packet::new_checked(&frame[l3..end]) {
            Ok(p) if p.verify_checksum() => {}
            _ => return false,
        }
    }
    let seg = &frame[usize::from(l4_offset)..end];
    let ips = IpPair::from_addrs(info.af, info.src, info.dst);
    match (info.af, info.proto) {
        (_, proto::TCP) => tcp::Packet::new_checked(seg).is_ok_and(|p| p.verify_checksum(&ips)),
        (Af::Inet, proto::ICMP) => {
            icmp::Packet::new_checked(seg).is_ok_and(|p| p.verify_checksum())
        }
        (Af::Inet6, proto::ICMPV6) => {
            icmpv6::Packet::new_checked(seg).is_ok_and(|p| p.verify_checksum(&ips))
        }
        _ => true,
    }
}

/// Recomputes the IPv4 header checksum and the transport checksum of an
/// Ethernet frame in place, as far as the headers allow. Returns whether
/// it found an IP packet.
fn fix_frame_checksums(frame: &mut [u8]) -> bool {
    let (l3, ethertype) = match ethernet::Frame::new_checked(&*frame) {
        Ok(eth) => (eth.header_len(), eth.ethertype()),
        Err(_) => return false,
    };
    let ip = &mut frame[l3..];
    if ethertype == EtherType::IPV4 {
        let Ok(mut p) = ipv4::Packet::new_checked(&mut *ip) else {
            return false;
        };
        p.fill_checksum();
        let (header_len, total_len) = (p.header_len(), usize::from(p.total_len()));
        let ips = IpPair::V4 {
            src: p.src_addr(),
            dst: p.dst_addr(),
        };
        let (protocol, later_fragment) = (p.protocol(), p.frag_offset() != 0);
        if !later_fragment {
            fix_transport_checksum(protocol, &mut ip[header_len..total_len], &ips);
        }
        true
    } else if ethertype == EtherType::IPV6 {
        let Ok(p) = ipv6::Packet::new_checked(&*ip) else {
            return false;
        };
        let ips = IpPair::V6 {
            src: p.src_addr(),
            dst: p.dst_addr(),
        };
        let total_len = p.total_len();
        if let Ok(ul) = p.upper_layer() {
            if ul.frag_offset == 0 {
                let start = ipv6::HEADER_LEN + ul.offset;
                fix_transport_checksum(ul.protocol, &mut ip[start..total_len], &ips);
            }
        }
        true
    } else {
        false
    }
}

fn fix_transport_checksum(protocol: u8, seg: &mut [u8], ips: &IpPair) {
    match protocol {
        proto::TCP => {
            if let Ok(mut p) = tcp::Packet::new_checked(seg) {
                p.fill_checksum(ips);
            }
        }
        proto::UDP => {
            if let Ok(mut p) = udp::Packet::new_checked(seg) {
                p.fill_checksum(ips);
            }
        }
        proto::ICMP => {
            if let Ok(mut p) = icmp::Packet::new_checked(seg) {
                p.fill_checksum();
            }
        }
        proto::ICMPV6 => {
            if let Ok(mut p) = icmpv6::Packet::new_checked(seg) {
                p.fill_checksum(ips);
            }
        }
        _ => {}
    }
}

// --------------------------------------------------------------------- rules

/// The two interfaces rules may name.
const RULE_IFS: &[(&str, IfIndex)] = &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))];
/// Canonical texts checked for round trip per input (bounded: a ruleset
/// may expand to many rules).
const ROUND_TRIP_RULES: usize = 32;

fn self_addrs() -> [(Af, Addr); 2] {
    [
        Addr::from_ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        Addr::from_ip(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
    ]
}

/// Packets every compiled ruleset is evaluated on: both interfaces and
/// directions, both families, TCP/UDP/ICMP queries and errors.
fn sample_packets() -> Vec<PacketInfo> {
    let v4 = |s: &str| Addr::from_ip(s.parse().expect("literal")).1;
    let base = |af, p, src: &str, sport, dst: &str, dport, l4| PacketInfo {
        af,
        proto: p,
        src: v4(src),
        dst: v4(dst),
        sport,
        dport,
        ip_len: 60,
        ttl: 64,
        ifindex: IfIndex(0),
        dir: Direction::In,
        l4,
    };
    let syn = L4Info::Tcp(TcpInfo {
        flags: tcp_flags::SYN,
        ..Default::default()
    });
    let ack = L4Info::Tcp(TcpInfo {
        flags: tcp_flags::ACK,
        ..Default::default()
    });
    let echo = L4Info::Icmp(IcmpInfo {
        icmp_type: 8,
        id: 7,
        ..Default::default()
    });
    let unreach = L4Info::Icmp(IcmpInfo {
        icmp_type: 3,
        code: 3,
        is_error: true,
        ..Default::default()
    });
    let echo6 = L4Info::Icmp(IcmpInfo {
        icmp_type: 128,
        id: 9,
        ..Default::default()
    });
    let proto_tcp = proto::TCP;
    let mut out = Vec::new();
    for (ifindex, dir) in [
        (IfIndex(0), Direction::In),
        (IfIndex(1), Direction::In),
        (IfIndex(0), Direction::Out),
        (IfIndex(1), Direction::Out),
    ] {
        for p in [
            base(
                Af::Inet,
                proto_tcp,
                "192.168.1.10",
                40000,
                "10.0.0.1",
                80,
                syn,
            ),
            base(Af::Inet, proto_tcp, "10.0.0.1", 22, "192.0.2.7", 1025, ack),
            base(
                Af::Inet,
                proto::UDP,
                "10.1.2.3",
                53,
                "10.0.0.1",
                5353,
                L4Info::Udp,
            ),
            base(Af::Inet, proto::ICMP, "192.0.2.7", 7, "10.0.0.1", 7, echo),
            base(
                Af::Inet,
                proto::ICMP,
                "198.51.100.1",
                0,
                "10.0.0.1",
                0,
                unreach,
            ),
            base(
                Af::Inet6,
                proto_tcp,
                "2001:db8::1",
                50000,
                "2001:db8:2::80",
                443,
                syn,
            ),
            base(
                Af::Inet6,
                proto::UDP,
                "fe80::1",
                546,
                "ff02::1:2",
                547,
                L4Info::Udp,
            ),
            base(
                Af::Inet6,
                proto::ICMPV6,
                "2001:db8:1::10",
                9,
                "2001:db8::1",
                9,
                echo6,
            ),
            base(Af::Inet, 47, "203.0.113.5", 0, "10.0.0.1", 0, L4Info::Other),
        ] {
            out.push(PacketInfo { ifindex, dir, ..p });
        }
    }
    out
}

/// pf.conf text (lossy UTF-8): compile, evaluate sample packets, and
/// compile every canonical rule text back.
pub fn rules(data: &[u8]) {
    rules_text(&String::from_utf8_lossy(data));
}

fn rules_text(text: &str) {
    let selfs = self_addrs();
    let env = RuleEnv {
        interfaces: RULE_IFS,
        self_addrs: &selfs,
        names: &[],
    };
    let rs = match Ruleset::compile(text, "fuzz", &env) {
        Ok(rs) => rs,
        Err(e) => {
            assert_eq!(e.file, "fuzz");
            assert!(e.line >= 1 && e.col >= 1, "error without a position: {e}");
            let lines = text.split('\n').count() + 1;
            assert!(
                e.line as usize <= lines,
                "error line {} of {lines}: {e}",
                e.line
            );
            assert!(!e.msg.is_empty());
            return;
        }
    };
    let n = rs.len();
    assert_eq!(rs.is_empty(), n == 0);
    assert_eq!(rs.rule_text(n), "");
    let mut counters = vec![RuleCounters::default(); n];
    let mut decided = 0u64;
    for pkt in sample_packets() {
        let d = rs.evaluate(&pkt, &mut counters);
        match d.rule {
            Some(i) => {
                assert!((i as usize) < n, "decision by rule {i} of {n}");
                decided += 1;
            }
            None => assert_eq!(d, dataplane::rules::Decision::DEFAULT_PASS),
        }
        if d.action == Action::Pass {
            assert_eq!(d.return_mode, ReturnMode::None);
        } else {
            assert!(!d.keep_state);
        }
        let _ = (rs.state_timeouts(d.rule), rs.is_skipped(pkt.ifindex));
    }
    assert_eq!(counters.iter().map(|c| c.packets).sum::<u64>(), decided);

    // Canonical text parses back to itself (tables redefined by name; their
    // contents do not appear in rule text).
    let prelude: String = rs
        .tables()
        .map(|(name, _)| format!("table <{name}> {{ 127.0.0.1 }}\n"))
        .collect();
    for i in 0..n.min(ROUND_TRIP_RULES) {
        let t = rs.rule_text(i);
        let again = Ruleset::compile(&format!("{prelude}{t}"), "again", &env)
            .unwrap_or_else(|e| panic!("canonical text of rule {i} does not compile: {e}\n{t}"));
        assert_eq!(again.len(), 1, "canonical text expands: {t}");
        assert_eq!(again.rule_text(0), t);
    }
}

// ---------------------------------------------------------------------- carp

/// Authentication of the spec's §3.5 example frames: VHID 1 ("secret",
/// 192.168.1.10) and VHID 7 (no passphrase, two IPv6 addresses).
fn carp_auth() -> &'static [AuthContext; 2] {
    static AUTH: OnceLock<[AuthContext; 2]> = OnceLock::new();
    AUTH.get_or_init(|| {
        let v4 = [Ipv4Addr::new(192, 168, 1, 10)];
        let v6 = [
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10),
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2),
        ];
        [
            AuthContext::new(
                &Key::from_passphrase(b"secret"),
                &AuthInput {
                    vhid: 1,
                    lladdr: None,
                    v4: &v4,
                    v6: &[],
                },
            ),
            AuthContext::new(
                &Key::default(),
                &AuthInput {
                    vhid: 7,
                    lladdr: None,
                    v4: &[],
                    v6: &v6,
                },
            ),
        ]
    })
}

/// A CARP frame (or bare header): `parse_frame`, the header view and
/// `Repr`, and the §2.5 validation pipeline in several receive contexts.
pub fn carp(data: &[u8]) {
    carp_once(data);
    if !cfg!(fuzzing) {
        let mut fixed = data.to_vec();
        if fix_carp_checksums(&mut fixed) {
            carp_once(&fixed);
        }
    }
}

fn carp_once(data: &[u8]) {
    carp_header(data);
    let Ok(frame) = carp_wire::parse_frame(data) else {
        return;
    };
    assert!(frame.payload.len() <= data.len());
    assert_eq!(frame.is_ipv6(), frame.dst.is_ipv6());
    if let Ok(p) = frame.carp() {
        carp_header(p.into_inner());
    }
    let auth = carp_auth();
    let cands = [
        Candidate {
            vhid: 1,
            running: true,
            peer_multicast: true,
            auth: &auth[0],
            cookie: 99,
        },
        Candidate {
            vhid: 7,
            running: true,
            peer_multicast: true,
            auth: &auth[1],
            cookie: 1,
        },
        Candidate {
            vhid: 3,
            running: false,
            peer_multicast: false,
            auth: &auth[0],
            cookie: 5,
        },
    ];
    for rx_if in [
        RxIf::Carp,
        RxIf::Ether {
            has_carp_children: false,
        },
        RxIf::Ether {
            has_carp_children: true,
        },
    ] {
        for parent_simplex in [true, false] {
            let ctx = CarpRxContext {
                allow: true,
                rx_if,
                parent_simplex,
            };
            let mut stats = CarpStats::new();
            let r = control::carp::validate(&frame, &ctx, cands.iter().copied(), &mut stats);
            let total: u64 = stats.iter().map(|(_, n)| n).sum();
            let counted = r.as_ref().err().and_then(CarpDrop::counter).is_some();
            assert_eq!(total, 1 + u64::from(counted), "{r:?} {stats:?}");
            match r {
                Ok(v) => {
                    let cand = &cands[v.index];
                    assert!(cand.running && cand.vhid == v.vhid);
                    let p = frame.carp().expect("validated CARP header");
                    assert_eq!(p.vhid(), v.vhid);
                    assert_eq!(p.version(), carp_wire::CARP_VERSION);
                    assert_eq!(frame.ttl, carp_wire::CARP_TTL);
                    assert_eq!(v.advert.src, frame.src);
                    assert_eq!(
                        (v.advert.advbase, v.advert.advskew, v.advert.demote),
                        (p.advbase(), p.advskew(), p.demote())
                    );
                    assert_ne!(v.advert.counter, cand.cookie);
                }
                Err(CarpDrop::BadTtl { ttl }) => assert_ne!(ttl, carp_wire::CARP_TTL),
                Err(CarpDrop::BadLen { len }) => assert!(len < carp_wire::HEADER_LEN),
                Err(_) => {}
            }
            let _ = r.map_err(|d| (d.log_level(), d.input_error(), d.to_string()));
        }
    }
    let off = CarpRxContext {
        allow: false,
        rx_if: RxIf::Carp,
        parent_simplex: true,
    };
    let mut stats = CarpStats::new();
    let r = control::carp::validate(&frame, &off, cands.iter().copied(), &mut stats);
    assert_eq!(r, Err(CarpDrop::NotAllowed));
}

fn carp_header(data: &[u8]) {
    let Ok(p) = carp_wire::Packet::new_checked(data) else {
        return;
    };
    let _ = (p.type_(), p.authlen(), p.checksum(), p.counter_bytes());
    let Ok(repr) = carp_wire::Repr::parse(&p) else {
        return;
    };
    let mut buf = [0u8; carp_wire::HEADER_LEN];
    repr.emit(&mut carp_wire::Packet::new_unchecked(&mut buf[..]));
    let again = carp_wire::Packet::new_checked(&buf[..]).expect("emitted CARP header");
    assert_eq!(carp_wire::Repr::parse(&again), Ok(repr));
    // Every byte but the checksum (not verified under `cfg(fuzzing)`) is kept.
    assert_eq!(&buf[..6], &data[..6]);
    assert_eq!(&buf[8..], &data[8..carp_wire::HEADER_LEN]);
}

/// Recomputes the IPv4 header and CARP header checksums of a frame; also
/// the CARP checksum of a bare header. Returns whether anything changed.
fn fix_carp_checksums(data: &mut [u8]) -> bool {
    let before = data.to_vec();
    if let Ok(mut p) = carp_wire::Packet::new_checked(&mut *data) {
        p.fill_checksum();
    }
    if let Ok(eth) = ethernet::Frame::new_checked(&*data) {
        let l3 = eth.header_len();
        let ethertype = eth.ethertype();
        let ip = &mut data[l3..];
        let payload = if ethertype == EtherType::IPV4 {
            match ipv4::Packet::new_checked(&mut *ip) {
                Ok(mut p) => {
                    p.fill_checksum();
                    let (h, t) = (p.header_len(), usize::from(p.total_len()));
                    Some(&mut ip[h..t])
                }
                Err(_) => None,
            }
        } else if ethertype == EtherType::IPV6 {
            match ipv6::Packet::new_checked(&*ip) {
                Ok(p) => {
                    let t = p.total_len();
                    Some(&mut ip[ipv6::HEADER_LEN..t])
                }
                Err(_) => None,
            }
        } else {
            None
        };
        if let Some(Ok(mut p)) = payload.map(carp_wire::Packet::new_checked) {
            p.fill_checksum();
        }
    }
    data != &before[..]
}

// -------------------------------------------------------------------- pfsync

/// The receive contexts the pfsync body tries: the good one first.
const PFSYNC_CONTEXTS: [RxContext; 4] = [
    RxContext {
        pf_running: true,
        pfsync_up: true,
        on_syncdev: true,
    },
    RxContext {
        pf_running: false,
        pfsync_up: true,
        on_syncdev: true,
    },
    RxContext {
        pf_running: true,
        pfsync_up: false,
        on_syncdev: true,
    },
    RxContext {
        pf_running: true,
        pfsync_up: true,
        on_syncdev: false,
    },
];
/// Messages re-packed per input (bounded).
const REPACK_MESSAGES: usize = 64;

/// A pfsync frame: §1.1 receive checks, the §2.3 walk, every message's
/// `parse(emit(m)) == m`, and re-packing the messages into frames that
/// parse back to the same messages. Also walks the raw input as a body.
pub fn pfsync(data: &[u8]) {
    pfsync_once(data);
    if !cfg!(fuzzing) && data.len() >= pfsync_frame::FRAME_HEADROOM {
        let mut fixed = data.to_vec();
        if let Ok(mut p) = ipv4::Packet::new_checked(&mut fixed[pfsync_frame::ETH_HDR_LEN..]) {
            p.fill_checksum();
            pfsync_once(&fixed);
        }
    }
}

fn pfsync_once(data: &[u8]) {
    walk_all(Walker::new(data));
    let ip = data.get(pfsync_frame::ETH_HDR_LEN..).unwrap_or(&[]);
    for (i, ctx) in PFSYNC_CONTEXTS.iter().enumerate() {
        let mut stats = PfsyncStats::default();
        let r = pfsync_frame::receive_frame(data, ctx, &mut stats);
        let mut stats_ip = PfsyncStats::default();
        let r_ip = pfsync_frame::receive_ip(ip, ctx, &mut stats_ip);
        if r.is_ok() || r.is_err_and(|d| d != RxDrop::NotIpv4) {
            assert_eq!(r, r_ip, "receive_frame and receive_ip disagree");
            assert_eq!(stats, stats_ip);
        }
        let total: u64 = stats.as_array().iter().sum();
        let ipackets = stats.get(control::pfsync::Counter::Ipackets);
        let counted = r.is_err_and(|d| d.counter().is_some());
        assert_eq!(total, ipackets + u64::from(counted), "{r:?}");
        match r {
            Ok(p) => {
                assert_eq!(i, 0, "accepted in a bad context {ctx:?}");
                assert_eq!(ipackets, 1);
                assert!(p.pfsync.len() >= control::pfsync::wire::HEADER_LEN);
                let msgs = walk_all(p.walker());
                repack(&msgs);
            }
            Err(d) => {
                let _ = d.to_string();
            }
        }
    }
}

/// Walks every section and message; returns the messages in order.
fn walk_all(walker: Walker<'_>) -> Vec<Message> {
    let mut msgs = Vec::new();
    let mut errors = 0;
    for section in walker.clone() {
        match section {
            Ok(s) => {
                let n = s.messages().count();
                assert!(n <= usize::from(s.count()));
                if s.action().is_none() {
                    assert_eq!(n, 0);
                }
                let _ = (s.first(), s.subheader(), s.message_len());
            }
            Err(e) => {
                errors += 1;
                let _ = (e.counter(), e.to_string());
            }
        }
    }
    assert!(errors <= 1, "the walk goes on after a stopping error");
    let mut walk_errors = 0;
    walker.for_each_message(
        |_| walk_errors += 1,
        |m| {
            let mut buf = vec![0u8; m.buffer_len()];
            m.emit(&mut buf).expect("message fits its own length");
            assert_eq!(Message::parse(m.action(), &buf), Ok(m));
            if !buf.is_empty() {
                let short = buf.len() - 1;
                assert!(m.emit(&mut buf[..short]).is_err());
            }
            msgs.push(m);
        },
    );
    assert_eq!(walk_errors, errors);
    msgs
}

/// Writes `msgs` into frames with the packet writer (a new frame when one
/// is full) and checks that they are received and walked back to the same
/// messages in the same order.
fn repack(msgs: &[Message]) {
    let msgs = &msgs[..msgs.len().min(REPACK_MESSAGES)];
    let link = LinkParams::new(
        [0x00, 0x0c, 0x29, 0xaa, 0xbb, 0x01],
        [10, 10, 10, 1],
        PFSYNC_GROUP,
        None,
    )
    .expect("link parameters");
    let mut writer = PacketWriter::new(1500, link, 0).expect("packet writer");
    let mut back = Vec::new();
    for m in msgs {
        if writer.push(m) == Err(PackError::Full) {
            receive_packed(writer.finish(), &mut back);
            writer.push(m).expect("a message fits an empty packet");
        }
    }
    receive_packed(writer.finish(), &mut back);
    assert_eq!(back, msgs, "re-packed messages");
}

fn receive_packed(frame: Option<&[u8]>, back: &mut Vec<Message>) {
    let Some(frame) = frame else {
        return;
    };
    let mut stats = PfsyncStats::default();
    let p = pfsync_frame::receive_frame(frame, &PFSYNC_CONTEXTS[0], &mut stats)
        .unwrap_or_else(|d| panic!("packed frame refused: {d}"));
    p.walker()
        .for_each_message(|e| panic!("packed frame walk: {e}"), |m| back.push(m));
}

// -------------------------------------------------------------- config, ctl

/// `dpf.toml` text: `Config::parse`; errors name the file and a position
/// inside the text, and a valid configuration is consistent.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match control::config::Config::parse(text, Path::new("fuzz.toml")) {
        Ok(c) => {
            assert!(!c.ports.is_empty() && c.ports.len() <= control::config::MAX_PORTS);
            for &(a, b) in &c.wire_pairs {
                assert!(a < c.ports.len() && b < c.ports.len() && a != b);
            }
            for (i, p) in c.ports.iter().enumerate() {
                assert!(c.ports[..i].iter().all(|q| q.name != p.name));
            }
            let _ = (c.has_pci(), serde_json::to_string(&c));
        }
        Err(e) => {
            assert_eq!(e.file, "fuzz.toml");
            let lines = text.split('\n').count();
            assert!(e.line <= lines, "error line {} of {lines}: {e}", e.line);
            assert!(e.to_string().starts_with("fuzz.toml:"));
        }
    }
}

/// One control-socket request line: `parse_request`; an accepted request
/// serialises back to a line that parses to the same request, and the
/// ruleset of a `load-rules` goes through the rules body.
pub fn ctl(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match control::ctl::parse_request(line) {
        Ok(req) => {
            let envelope = control::ctl::Envelope {
                version: control::ctl::PROTOCOL_VERSION,
                request: req.clone(),
            };
            let again = serde_json::to_string(&envelope).expect("requests serialise");
            assert_eq!(control::ctl::parse_request(&again), Ok(req.clone()));
            if let control::ctl::Request::LoadRules { text, .. } = &req {
                rules_text(text);
            }
        }
        Err(msg) => assert!(!msg.is_empty()),
    }
}
