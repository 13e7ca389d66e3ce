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
//! | [`slowpath`] | `slowpath::SlowPath::handle` / `resolve` / `poll` on a router with addresses and VIPs, moving clock |
//! | [`pipeline`] | `pipeline::Pipeline::process_burst` with state across bursts (wire and router mode, lookahead on and off, one or two workers), `expire` |
//! | [`pfsync_import`] | `pfsync::engine::Sync::handle` (received pfsync → import records) into two workers' pipelines (`sync_poll`), `Sync::poll` / `send_bulk` |
//! | [`import_records`] | arbitrary `export::ImportRecord`s through a pipeline's import ring (`set_sync`, `sync_poll`), with packets of the imported states |
//! | [`carp_engine`] | `carp::engine::Carp::handle` (§2.5 validation + the VHID state machines), `poll`, `set_link`, `carpdemote`, moving clock |
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
use control::pfsync::wire::frame::{self as pfsync_frame, LinkParams, RxContext};
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
    ("slowpath", slowpath),
    ("pipeline", pipeline),
    ("pfsync_import", pfsync_import),
    ("import_records", import_records),
    ("carp_engine", carp_engine),
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
        .into_iter()
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
        // The frame path parses with the dataplane's classifier (VLAN tags,
        // IPv4 options, transport headers): stricter at the IP layer than
        // `receive_ip`. Whatever it lets through to pfsync's checks, the IP
        // path must judge the same way.
        let untagged_v4 = data.get(12..14) == Some(&[0x08, 0x00][..]);
        if untagged_v4 && (r.is_ok() || r.is_err_and(|d| d.counter().is_some())) {
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

// ------------------------------------------------- structured (stateful) inputs
//
// The targets below drive an engine through a sequence of operations read
// from the input with [`Input`]: every byte string is a valid program (a
// read past the end gives zeros), so the fuzzer mutates programs, not
// syntax. Frames in a program are length-prefixed (`u16`, big-endian).

/// A fuzz input read as a stream of fields.
struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, at: 0 }
    }

    fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.at = start.saturating_add(n);
        &self.data[start..end]
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let b = self.bytes(N);
        out[..b.len()].copy_from_slice(b);
        out
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// A length-prefixed frame (at most 2048 bytes), with its checksums
    /// recomputed outside libFuzzer (the smoke run's mutations would stop
    /// at a checksum otherwise; `cfg(fuzzing)` skips them).
    fn frame(&mut self) -> Vec<u8> {
        let len = usize::from(self.u16() % 2049);
        let mut f = self.bytes(len).to_vec();
        if !cfg!(fuzzing) {
            fix_frame_checksums(&mut f);
        }
        f
    }
}

/// The box the stateful targets run: a router with two ports, IPv4 and
/// IPv6 addresses, a default route, a static neighbour, two carp
/// interfaces (one dual-stack) whose VIPs the slow path answers for.
const ROUTER_TOML: &str = r#"
[eal]
args = []
[dataplane]
mode = "router"
[[port]]
name = "lan0"
device = "net_null0"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]
mac = "02:00:00:00:01:01"
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["10.2.0.1/24", "2001:db8:2::1/64"]
mac = "02:00:00:00:02:01"
[[route]]
to = "default"
via = "10.2.0.254"
[[route]]
to = "2000::/3"
via = "2001:db8:2::fe"
[[neighbor]]
ip = "10.2.0.254"
mac = "02:00:00:00:02:fe"
[[carp]]
name = "carp1"
vhid = 1
pass = "lanpass"
carpdev = "lan0"
addresses = ["10.1.0.254/24", "2001:db8:1::fe/64"]
[[carp]]
name = "carp2"
vhid = 2
pass = "wanpass"
carpdev = "wan0"
advskew = 100
addresses = ["10.2.0.254/24"]
"#;

/// Ports of [`ROUTER_TOML`].
const ROUTER_PORTS: u16 = 2;

fn router_config() -> &'static control::config::Config {
    static CONFIG: OnceLock<control::config::Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        control::config::Config::parse(ROUTER_TOML, Path::new("fuzz.toml"))
            .expect("the fuzz router configuration is valid")
    })
}

/// A fresh routing table (with its own VIP ownership flags) and the static
/// neighbours of [`ROUTER_TOML`].
fn router_routing() -> (
    std::sync::Arc<dataplane::route::Routing>,
    Vec<dataplane::route::NeighborEntry>,
) {
    let config = router_config();
    let macs: Vec<[u8; 6]> = config
        .ports
        .iter()
        .map(|p| p.mac.unwrap_or([2, 0, 0, 0, 0, 0xee]))
        .collect();
    let (routing, statics) = control::daemon::build_routing(config, &macs);
    (std::sync::Arc::new(routing), statics)
}

/// A frame dpf sends: on an existing port, a well-formed Ethernet frame,
/// and if it is IP, one that classifies with correct checksums.
fn check_sent(what: &str, port: u16, frame: &[u8]) {
    assert!(port < ROUTER_PORTS, "{what} sent on port {port}");
    check_frame_sent(what, port, frame);
}

fn check_frame_sent(what: &str, port: u16, frame: &[u8]) {
    let eth = ethernet::Frame::new_checked(frame)
        .unwrap_or_else(|e| panic!("{what} sent a bad frame ({e}): {frame:02x?}"));
    if eth.ethertype() == EtherType::IPV4 || eth.ethertype() == EtherType::IPV6 {
        let c = wire::classify(frame, IfIndex(port), Direction::Out)
            .unwrap_or_else(|e| panic!("{what} sent a frame that does not classify ({e})"));
        assert!(
            checksums_ok(frame, &c),
            "{what} sent a bad checksum: {frame:02x?}"
        );
    }
}

/// A pipeline that started with an empty shard has created exactly as many
/// states as it removed plus those it holds. (Its `states` gauge is not
/// checked: it lags after an imported DEL and a reused TCP state, see
/// `tests/tests/fuzz_smoke.rs`.)
fn assert_states_balance(p: &dataplane::pipeline::Pipeline) {
    let c = &p.counters;
    assert_eq!(
        c.states_created,
        c.states_removed + p.shard().len() as u64,
        "states created {} removed {} held {}",
        c.states_created,
        c.states_removed,
        p.shard().len()
    );
}

// ------------------------------------------------------------------ slowpath

/// The router-mode slow path ([`control::slowpath::SlowPath`]) driven by a
/// program: frames on any port (one past the last too), next-hop
/// resolution requests, a clock that moves forward (`poll`), VIP ownership
/// changes. Everything it sends is a well-formed frame (with correct
/// checksums) on an existing port or, for an answer, the receiving port;
/// it learns neighbours only on existing ports; its counters count every
/// frame.
///
/// Program: repeated `op` byte, then by `op % 5`: 0-1 frame (`port`,
/// frame); 2 resolve (`v6`, 16 address bytes, `port`); 3 advance
/// (`u16` × 16 ms) and poll; 4 VIP ownership (`port`, `vhid`, `master`).
pub fn slowpath(data: &[u8]) {
    slowpath_run(data);
}

/// [`slowpath`], returning the slow path's counters.
pub fn slowpath_run(data: &[u8]) -> control::slowpath::SlowPathStats {
    use control::slowpath::SlowPath;
    use dataplane::route::ResolveRequest;
    let (routing, statics) = router_routing();
    let mut sp = SlowPath::new(std::sync::Arc::clone(&routing), &statics);
    let mut input = Input::new(data);
    let mut now = dataplane::time::Instant::from_secs(1);
    let mut out = Vec::new();
    let mut frames = 0u64;
    while !input.is_empty() {
        // The slow path answers out the port a frame came in on, even one
        // the box does not have (the daemon only hands it frames from its
        // ports); everything else goes out an existing port.
        let mut rx_port = None;
        match input.u8() % 5 {
            0 | 1 => {
                let port = u16::from(input.u8()) % (ROUTER_PORTS + 1);
                let frame = input.frame();
                sp.handle(&frame, port, now, &mut out);
                frames += 1;
                rx_port = Some(port);
            }
            2 => {
                let v6 = input.bool();
                let raw: [u8; 16] = input.array();
                let (af, addr) = if v6 {
                    (Af::Inet6, Addr::v6(raw))
                } else {
                    (Af::Inet, Addr::v4([raw[0], raw[1], raw[2], raw[3]]))
                };
                let port = u16::from(input.u8()) % ROUTER_PORTS;
                sp.resolve(ResolveRequest { af, addr, port }, now, &mut out);
            }
            3 => {
                now = now + dataplane::time::Duration::from_millis(u64::from(input.u16()) * 16);
                sp.poll(now, &mut out);
            }
            _ => {
                let port = u16::from(input.u8()) % ROUTER_PORTS;
                let vhid = 1 + input.u8() % 2;
                routing.vips.set_master(port, vhid, input.bool());
            }
        }
        for (port, frame) in out.drain(..) {
            if Some(port) == rx_port {
                check_frame_sent("the slow path", port, &frame);
            } else {
                check_sent("the slow path", port, &frame);
            }
        }
    }
    assert_eq!(sp.stats.received, frames);
    for row in sp.entries() {
        assert!(
            row.port < ROUTER_PORTS,
            "neighbour on port {}: {:?}",
            row.port,
            row.addr
        );
    }
    let _ = sp.take_snapshot(dataplane::time::Instant(u64::MAX / 2));
    sp.stats
}

// ------------------------------------------------------------------ pipeline

/// The ruleset of the `pipeline` target: default block, `block return`
/// for one port, stateful passes for TCP, UDP, ICMP and ICMPv6, one rule
/// with `sloppy` and one with `max`.
const PIPELINE_RULES: &str = "\
block all
pass in on lan0 proto tcp to port { 22, 80, 443 } keep state
pass in on lan0 proto tcp to port 8080 keep state (sloppy)
pass in proto udp keep state (max 40)
pass in inet proto icmp icmp-type echoreq keep state
pass inet6 proto icmp6 keep state
pass out keep state
block return in on wan0 proto tcp to port 25
block return in on lan0 proto udp to port 7
";

/// A fresh ruleset per run: `keep state (max N)` counts live in the
/// ruleset (shared by every worker holding it), so a ruleset kept across
/// runs would carry the places earlier runs took.
fn pipeline_rules() -> std::sync::Arc<Ruleset> {
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    std::sync::Arc::new(
        Ruleset::compile(PIPELINE_RULES, "fuzz.conf", &env).expect("the fuzz ruleset compiles"),
    )
}

/// Swaps a frame's direction in place (MACs, IP addresses, ports; for TCP
/// sequence and acknowledgement, the latter plus one, and `flags`), so a
/// program can answer a frame it sent earlier. Returns whether it could.
fn answer_frame(frame: &mut [u8], flags: u8) -> bool {
    let Ok(c) = wire::classify(frame, IfIndex(0), Direction::In) else {
        return false;
    };
    let FrameKind::Ip {
        info, l4_offset, ..
    } = c.kind
    else {
        return false;
    };
    let (l3, l4) = (usize::from(c.l3_offset), usize::from(l4_offset));
    let (mut dst, src) = ([0u8; 6], [0u8; 6]);
    dst.copy_from_slice(&frame[0..6]);
    let mut src = src;
    src.copy_from_slice(&frame[6..12]);
    frame[0..6].copy_from_slice(&src);
    frame[6..12].copy_from_slice(&dst);
    let (a, alen) = if info.af == Af::Inet {
        (l3 + 12, 4)
    } else {
        (l3 + 8, 16)
    };
    for i in 0..alen {
        frame.swap(a + i, a + alen + i);
    }
    if matches!(info.proto, proto::TCP | proto::UDP) && frame.len() >= l4 + 4 {
        frame.swap(l4, l4 + 2);
        frame.swap(l4 + 1, l4 + 3);
    }
    if info.proto == proto::TCP && frame.len() >= l4 + 14 {
        let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
        let ack =
            u32::from_be_bytes([frame[l4 + 8], frame[l4 + 9], frame[l4 + 10], frame[l4 + 11]]);
        let answered = seq.wrapping_add(u32::from(info.tcp_flags() & tcp_flags::SYN != 0));
        frame[l4 + 4..l4 + 8].copy_from_slice(&ack.to_be_bytes());
        frame[l4 + 8..l4 + 12].copy_from_slice(&answered.to_be_bytes());
        frame[l4 + 13] = flags;
    }
    if !cfg!(fuzzing) {
        fix_frame_checksums(frame);
    }
    true
}

/// Bursts of frames through [`dataplane::pipeline::Pipeline::process_burst`]
/// with the state table carried across bursts: wire or router mode, one
/// or two workers, a small or a large table, with or without the burst
/// lookahead (`set_lookahead_min_states(0)`), time moving forward with
/// expiry. A program can answer earlier frames (swapped addresses and
/// ports, chosen TCP flags), so handshakes and state tracking are reached.
///
/// Invariants: every frame gets a verdict and exactly one counter moves
/// for it (a fragment kept for reassembly, once it leaves the table);
/// forwarded and answered frames leave on an existing port (in wire
/// mode, the paired one; a `block return` answer, the receiving one, with a
/// well-formed reply); hand-offs name the other worker; states created =
/// removed + held, never more than the capacity; a forwarded frame still
/// classifies.
///
/// Program: a `flags` byte (bit 0 router, bit 1 lookahead, bit 2 two
/// workers, bit 3 a table of 64 states instead of 4096), then repeated
/// `op` byte, by `op % 4`: 0-1 burst (`count`, `port`, frames); 2 answers
/// (`count`, `port`, then per frame: history index, TCP flags); 3 advance
/// (`u16` × 50 ms) and expire (`u8` × 8 slots).
pub fn pipeline(data: &[u8]) {
    pipeline_run(data);
}

/// [`pipeline`], returning the pipeline's counters.
pub fn pipeline_run(data: &[u8]) -> dataplane::counters::WorkerCounters {
    use dataplane::counters::{DropReason, Verdict};
    use dataplane::pipeline::{Pipeline, PipelineConfig};
    use dataplane::state::Shard;
    let mut input = Input::new(data);
    let flags = input.u8();
    let (router, lookahead, two_workers) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
    let capacity = if flags & 8 != 0 { 64 } else { 4096 };
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    cfg.workers = if two_workers { 2 } else { 1 };
    cfg.creatorid = 0x0dbf_0001;
    let shard = Shard::new(capacity, 0).expect("capacity");
    let mut p = Pipeline::new(cfg, pipeline_rules(), shard);
    let mut resolve = None;
    if router {
        let (routing, statics) = router_routing();
        let neighbors = std::sync::Arc::new(dataplane::route::Neighbors::new(statics));
        let (tx, rx) = dataplane::ring::channel(64);
        resolve = Some(rx);
        p.set_router(routing, neighbors, Some(tx));
    }
    if lookahead {
        p.set_lookahead_min_states(0);
    }
    let mut now = dataplane::time::Instant::from_secs(1);
    let mut history: Vec<Vec<u8>> = Vec::new();
    while !input.is_empty() {
        let op = input.u8() % 4;
        if op == 3 {
            now = now + dataplane::time::Duration::from_millis(u64::from(input.u16()) * 50);
            let budget = usize::from(input.u8()) * 8;
            let before = p.shard().len();
            let removed = p.expire(now, budget);
            assert_eq!(p.shard().len() + removed, before);
            continue;
        }
        let count = 1 + usize::from(input.u8()) % 32;
        let port = u16::from(input.u8()) % (ROUTER_PORTS + 1);
        let mut frames: Vec<Vec<u8>> = Vec::with_capacity(count);
        for _ in 0..count {
            if op == 2 && !history.is_empty() {
                let mut f = history[usize::from(input.u8()) % history.len()].clone();
                answer_frame(&mut f, input.u8());
                frames.push(f);
            } else {
                frames.push(input.frame());
            }
        }
        for f in &frames {
            if history.len() < 64 {
                history.push(f.clone());
            }
        }
        let before = p.counters.clone();
        let held_before = p.fragments_held() as u64;
        let mut burst: Vec<&mut [u8]> = frames.iter_mut().map(|f| &mut f[..]).collect();
        let mut verdicts = vec![Verdict::Drop(DropReason::Unclassified); count];
        p.process_burst(&mut burst, port, now, &mut verdicts);
        let c = &p.counters;
        let moved = (c.forwarded - before.forwarded)
            + (c.total_drops() - before.total_drops())
            + (c.slow_path - before.slow_path)
            + (c.handed_off - before.handed_off)
            + (c.deferred - before.deferred)
            + (c.neighbor_held - before.neighbor_held);
        // A fragment kept for reassembly moves no counter until its
        // datagram is dropped (a drop per fragment, which may come in a
        // later burst) or completed: frames in = counters moved + the
        // change in fragments held.
        let held_after = p.fragments_held() as u64;
        assert_eq!(
            moved + held_after,
            count as u64 + held_before,
            "one counter per frame, or held for reassembly: {verdicts:?}"
        );
        for (i, (v, f)) in verdicts.iter().zip(&frames).enumerate() {
            match *v {
                Verdict::Forward(out) => {
                    assert!(out < ROUTER_PORTS, "forwarded to port {out}");
                    if !router {
                        assert_eq!(out, 1 - port, "wire mode forwards to the paired port");
                    }
                    assert!(
                        wire::classify(f, IfIndex(out), Direction::Out).is_ok(),
                        "a forwarded frame no longer classifies"
                    );
                }
                Verdict::Reply(out) => {
                    assert_eq!(out, port, "an answer goes back out the receiving port");
                    check_sent("block return", out, p.reply(i));
                }
                Verdict::Handoff(w) => assert!(two_workers && w == 1, "handed to {w}"),
                Verdict::Hold(_) => panic!("held without pfsync defer"),
                Verdict::SlowPath(_)
                | Verdict::Drop(_)
                | Verdict::AwaitNeighbor(_)
                | Verdict::Reassembly(_) => {}
            }
        }
        assert_states_balance(&p);
        assert!(p.shard().len() <= capacity);
        if let Some(rx) = resolve.as_mut() {
            while let Some(req) = rx.pop() {
                assert!(req.port < ROUTER_PORTS);
            }
        }
    }
    p.counters
}

// ------------------------------------------------------------ pfsync_import

/// Our creator id in the pfsync targets, and the peer's.
const OUR_CREATORID: u32 = 0x0dbf_0001;
const PEER_CREATORID: u32 = 0x0dbf_0002;
/// Our syncdev MAC (frames from it are ignored as our own).
const OUR_SYNC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0f, 0x01];

/// pfsync's receive side end to end: received frames go through
/// [`control::pfsync::engine::Sync::handle`] (`receive_frame`, the message walker,
/// validation, the import records routed to the owning worker), two
/// workers' pipelines apply them (`sync_poll`), answer on their export
/// rings, and `Sync::poll` packs and sends; a bulk request is answered
/// with the workers' states. Invariants: every state a worker holds is
/// one it owns (`FlowKey::owner`); states created = removed + held;
/// everything pfsync sends goes out the syncdev and passes our own receive
/// checks.
///
/// Program: repeated `port` byte (0 and 2: the syncdev, 1: another port),
/// `u8` × 10 ms to advance after the frame, frame.
pub fn pfsync_import(data: &[u8]) {
    pfsync_import_run(data);
}

/// [`pfsync_import`], returning the states the workers imported and hold.
pub fn pfsync_import_run(data: &[u8]) -> (u64, usize) {
    use control::pfsync::engine::{Sync, SyncEvent, SyncSetup};
    use dataplane::export::{ImportRecord, StateRecord};
    use dataplane::pipeline::{Pipeline, PipelineConfig};
    use dataplane::state::Shard;
    const WORKERS: usize = 2;
    let mut now = dataplane::time::Instant::from_secs(1000);
    let (mut pipelines, mut exports, mut imports) = (Vec::new(), Vec::new(), Vec::new());
    for w in 0..WORKERS {
        let (etx, erx) = dataplane::ring::channel::<StateRecord>(256);
        let (itx, irx) = dataplane::ring::channel::<ImportRecord>(256);
        let mut cfg = PipelineConfig::default();
        cfg.pair(0, 1);
        cfg.worker = w;
        cfg.workers = WORKERS;
        cfg.creatorid = OUR_CREATORID;
        let mut p = Pipeline::new(
            cfg,
            pipeline_rules(),
            Shard::new(512, w as u8).expect("capacity"),
        );
        p.set_sync(etx, irx, 128);
        pipelines.push(p);
        exports.push(erx);
        imports.push(itx);
    }
    let setup = SyncSetup {
        syncdev: 0,
        syncdev_name: "lan0".into(),
        mac: OUR_SYNC_MAC,
        ip: [10, 1, 0, 1],
        syncpeer: None,
        mtu: 1500,
        max_frame_len: 2048,
        state_limit: 100_000,
        auth: None,
        maxupd: 128,
        defer: false,
        creatorid: OUR_CREATORID,
        ifnames: vec!["lan0".into(), "wan0".into()],
        timeouts: dataplane::timeouts::Timeouts::default(),
        states_total: Default::default(),
        placement: Default::default(),
    };
    let mut sync = Sync::new(setup, exports, imports, now).expect("pfsync setup");
    let ctx = RxContext {
        pf_running: true,
        pfsync_up: true,
        on_syncdev: true,
    };
    let mut out = Vec::new();
    let mut input = Input::new(data);
    while !input.is_empty() {
        let port = u16::from(input.u8() % 3 == 1);
        let advance_ms = u64::from(input.u8()) * 10;
        let frame = input.frame();
        if sync.handle(&frame, port, now, &mut out) == SyncEvent::BulkRequested {
            let states: Vec<(dataplane::state::State, dataplane::state::Translation)> = pipelines
                .iter()
                .flat_map(|p| {
                    p.shard()
                        .iter()
                        .map(|(slot, s)| {
                            (*s, p.shard().translation(slot).copied().unwrap_or_default())
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            sync.send_bulk(states, &mut out);
        }
        for p in &mut pipelines {
            p.sync_poll(now, 512);
        }
        now = now + dataplane::time::Duration::from_millis(advance_ms);
        sync.poll(now, &mut out);
        for (port, f) in out.drain(..) {
            assert_eq!(port, 0, "pfsync sent off the syncdev");
            let mut stats = PfsyncStats::default();
            let pkt = pfsync_frame::receive_frame(&f, &ctx, &mut stats)
                .unwrap_or_else(|e| panic!("we sent a pfsync frame we refuse: {e:?}"));
            let _ = walk_all(pkt.walker());
        }
        for (w, p) in pipelines.iter().enumerate() {
            assert_states_balance(p);
            for (_, st) in p.shard().iter() {
                assert_eq!(
                    dataplane::rss::Placement::Hash.owner(
                        st.key(),
                        st.key().symmetric_hash(),
                        WORKERS
                    ),
                    w,
                    "worker {w} holds {:?}",
                    st.key()
                );
            }
        }
    }
    (
        pipelines.iter().map(|p| p.counters.imported).sum(),
        pipelines.iter().map(|p| p.shard().len()).sum(),
    )
}

// ----------------------------------------------------------- import_records

/// A small key space, so records and packets of a program meet: family,
/// protocol and 2 × 4 addresses × 4 ports.
fn small_key(input: &mut Input<'_>) -> (dataplane::flow::FlowKey, bool) {
    let b = input.u8();
    let protos = [proto::TCP, proto::UDP, proto::ICMP, proto::ICMPV6];
    let proto_n = protos[usize::from(b >> 1) % 4];
    let (a, c) = (input.u8(), input.u8());
    let (src, dst) = if b & 1 == 0 {
        (Addr::v4([10, 1, 0, a % 4]), Addr::v4([10, 2, 0, c % 4]))
    } else {
        let v6 = |n: u8| Addr::v6([0x20, 1, 0xd, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, n % 4]);
        (v6(a), v6(c.wrapping_add(8)))
    };
    let af = if b & 1 == 0 { Af::Inet } else { Af::Inet6 };
    let ports = [80u16, 443, 1024, 40000];
    dataplane::flow::FlowKey::from_packet(
        af,
        proto_n,
        src,
        ports[usize::from(a >> 4) % 4],
        dst,
        ports[usize::from(c >> 4) % 4],
    )
}

fn fuzz_peer(input: &mut Input<'_>) -> dataplane::state::Peer {
    dataplane::state::Peer {
        seqlo: input.u32(),
        seqhi: input.u32(),
        seqdiff: input.u32(),
        max_win: input.u16(),
        mss: input.u16(),
        wscale: input.u8(),
        state: input.u8(),
    }
}

/// A small id space (collisions between records), and our, the peer's or
/// any creator id.
fn fuzz_identity(input: &mut Input<'_>) -> (u64, u32) {
    let id = input.u64() % 8;
    let creatorid = match input.u8() % 3 {
        0 => OUR_CREATORID,
        1 => PEER_CREATORID,
        _ => input.u32(),
    };
    (id, creatorid)
}

/// The worker side of pfsync fed arbitrary import records through its
/// import ring ([`dataplane::pipeline::Pipeline::set_sync`], `sync_poll`):
/// inserts of states with any peers, timeouts, flags and rule numbers,
/// compressed updates, requests, acks of deferred packets, deletes and
/// clears, interleaved with packets of those states (both directions, any
/// TCP flags and numbers) so tracking runs over imported windows, and
/// expiry. Invariants: states created = removed + held, no more than the
/// capacity; verdicts stay in range.
///
/// Program: `flags` (bit 0 lookahead, bit 1 pfsync defer, bit 2 a table
/// of 16 states, bits 4-7 maxupd), then repeated `op`, by `op % 8`: 0-1
/// upsert (key, side, identity, rule, state flags, timeout, direction,
/// peers, age, expiry); 2 merge (identity, peers, timeout); 3 request; 4
/// ack; 5 delete; 6 clear (creator); 7 packets of a key (`count`, then per
/// packet: key, from the source, TCP flags, seq, ack, window) and advance
/// (`u8` seconds) with expiry.
pub fn import_records(data: &[u8]) {
    import_records_run(data);
}

/// [`import_records`], returning the pipeline's counters.
pub fn import_records_run(data: &[u8]) -> dataplane::counters::WorkerCounters {
    use dataplane::counters::{DropReason, Verdict};
    use dataplane::export::{ImportRecord, StateRecord};
    use dataplane::pipeline::{Pipeline, PipelineConfig};
    use dataplane::state::{Shard, State};
    use dataplane::timeouts::TimeoutClass;
    let mut input = Input::new(data);
    let flags = input.u8();
    let capacity = if flags & 4 != 0 { 16 } else { 1024 };
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    cfg.creatorid = OUR_CREATORID;
    let mut p = Pipeline::new(
        cfg,
        pipeline_rules(),
        Shard::new(capacity, 0).expect("capacity"),
    );
    let (etx, mut exported) = dataplane::ring::channel::<StateRecord>(64);
    let (mut itx, irx) = dataplane::ring::channel::<ImportRecord>(64);
    p.set_sync(etx, irx, flags >> 4);
    if flags & 1 != 0 {
        p.set_lookahead_min_states(0);
    }
    if flags & 2 != 0 {
        p.set_defer(true);
    }
    let mut now = dataplane::time::Instant::from_secs(5000);
    while !input.is_empty() {
        let op = input.u8() % 8;
        let rec = match op {
            0 | 1 => {
                let (key, _) = small_key(&mut input);
                let src_is_addr1 = input.bool();
                let (id, creatorid) = fuzz_identity(&mut input);
                let mut st = State::new(key, src_is_addr1, id, creatorid, now);
                st.rule = u32::from(input.u8()).wrapping_sub(128);
                st.state_flags = input.u16();
                st.timeout = TimeoutClass::ALL[usize::from(input.u8()) % TimeoutClass::ALL.len()];
                st.direction = if input.bool() {
                    Direction::In
                } else {
                    Direction::Out
                };
                st.src = fuzz_peer(&mut input);
                st.dst = fuzz_peer(&mut input);
                // Some states translated (the far key differs by a port),
                // chosen from bytes already read so the seeds keep their
                // meaning.
                let translation = if st.id() % 4 == 3 {
                    let mut key = *st.key();
                    key.port[0] ^= (st.creatorid() as u16) | 1;
                    dataplane::state::Translation {
                        key,
                        src_is_addr1: st.src_is_addr1(),
                        route: Default::default(),
                        scrub: Default::default(),
                    }
                } else {
                    dataplane::state::Translation::NONE
                };
                Some(ImportRecord::Upsert {
                    state: st,
                    translation,
                    age_s: input.u32(),
                    expire_s: input.u32(),
                })
            }
            2 => {
                let (id, creatorid) = fuzz_identity(&mut input);
                Some(ImportRecord::Merge {
                    id,
                    creatorid,
                    src: fuzz_peer(&mut input),
                    dst: fuzz_peer(&mut input),
                    timeout: TimeoutClass::ALL[usize::from(input.u8()) % TimeoutClass::ALL.len()],
                })
            }
            3 => {
                let (id, creatorid) = fuzz_identity(&mut input);
                Some(ImportRecord::Request { id, creatorid })
            }
            4 => {
                let (id, creatorid) = fuzz_identity(&mut input);
                Some(ImportRecord::Ack { id, creatorid })
            }
            5 => {
                let (id, creatorid) = fuzz_identity(&mut input);
                Some(ImportRecord::Delete { id, creatorid })
            }
            6 => Some(ImportRecord::Clear {
                creatorid: fuzz_identity(&mut input).1,
            }),
            _ => None,
        };
        if let Some(rec) = rec {
            if itx.push(rec).is_err() {
                p.sync_poll(now, 64);
                let _ = itx.push(rec);
            }
            itx.publish();
        } else {
            let count = 1 + usize::from(input.u8()) % 8;
            let mut frames = Vec::with_capacity(count);
            for _ in 0..count {
                let (key, _) = small_key(&mut input);
                let from_src = input.bool();
                let (a, pa, b, pb) = if from_src {
                    (key.addr[0], key.port[0], key.addr[1], key.port[1])
                } else {
                    (key.addr[1], key.port[1], key.addr[0], key.port[0])
                };
                let (sa, da) = (a.to_ip(key.family()), b.to_ip(key.family()));
                let l4 = match key.proto {
                    proto::TCP => crate::frames::L4::Tcp {
                        sport: pa,
                        dport: pb,
                        flags: input.u8(),
                        seq: input.u32(),
                        ack: input.u32(),
                        win: input.u16(),
                        wscale: None,
                        payload: Vec::new(),
                    },
                    proto::UDP => crate::frames::L4::Udp {
                        sport: pa,
                        dport: pb,
                        payload: vec![0; 8],
                    },
                    _ => crate::frames::L4::Echo {
                        request: input.bool(),
                        id: pa,
                        seq: 1,
                    },
                };
                frames.push(crate::frames::frame(sa, da, &l4));
            }
            let port = u16::from(input.u8() & 1);
            let mut burst: Vec<&mut [u8]> = frames.iter_mut().map(|f| &mut f[..]).collect();
            let mut verdicts = vec![Verdict::Drop(DropReason::Unclassified); count];
            p.process_burst(&mut burst, port, now, &mut verdicts);
            for v in &verdicts {
                match *v {
                    Verdict::Forward(out) => assert_eq!(out, 1 - port),
                    Verdict::Reply(out) => assert_eq!(out, port),
                    Verdict::Handoff(w) => panic!("handed to {w} with one worker"),
                    Verdict::Hold(_) => assert!(flags & 2 != 0, "held without defer"),
                    Verdict::SlowPath(_)
                    | Verdict::Drop(_)
                    | Verdict::AwaitNeighbor(_)
                    | Verdict::Reassembly(_) => {}
                }
            }
            now = now + dataplane::time::Duration::from_secs(u64::from(input.u8()));
            p.release_deferred(now, |_, port| assert!(port < 2));
            p.expire(now, 64);
        }
        p.sync_poll(now, 64);
        while let Some(r) = exported.pop() {
            let _ = (r.action, r.state.id(), r.state.creatorid());
        }
        assert_states_balance(&p);
        assert!(p.shard().len() <= capacity);
    }
    p.counters
}

// --------------------------------------------------------------- carp_engine

/// The CARP engine of [`ROUTER_TOML`] ([`control::carp::engine::Carp`]: the §2.5
/// validation, each VHID's state machine, its timers and actions) fed
/// arbitrary frames and adverts built with the peer's key from
/// fuzz-chosen fields (so they pass the HMAC and reach the election),
/// with a clock that moves forward, link changes and demotion. Invariants:
/// every frame it sends goes out an existing port and is well-formed (its
/// adverts parse); after `poll(now)` no timer is due at or before `now`;
/// a VIP's ownership flag is set exactly when its carp interface is
/// MASTER.
///
/// Program: repeated `op`, by `op % 6`: 0 frame (`port`, frame); 1-2
/// advert (`vhid`, IPv6, advbase, advskew, demote, counter, a bad HMAC,
/// source); 3 advance (`u16` ms) and poll; 4 link (`port`, up); 5 demote
/// the `carp` group (`i8`).
pub fn carp_engine(data: &[u8]) {
    carp_engine_run(data);
}

/// [`carp_engine`], returning the CARP counters and whether a carp
/// interface was ever MASTER.
pub fn carp_engine_run(data: &[u8]) -> (control::carp::CarpStats, bool) {
    use control::carp::engine::Carp;
    use control::carp::wire::{
        AdvertFrameV4, AdvertFrameV6, Repr, ADVERT_V4_FRAME_LEN, ADVERT_V6_FRAME_LEN,
    };
    let config = router_config();
    let (routing, _) = router_routing();
    let mut carp = Carp::new(
        &config.carp,
        config.sysctl,
        std::sync::Arc::clone(&routing),
        std::sync::Arc::clone(&routing.vips),
    );
    let mut now = dataplane::time::Instant::from_secs(1);
    let mut out = Vec::new();
    carp.start(now, &mut out);
    let mut input = Input::new(data);
    let mut was_master = false;
    loop {
        for (port, f) in out.drain(..) {
            check_sent("carp", port, &f);
            if f.get(12..14) == Some(&[0x08, 0x00]) && f.get(23) == Some(&112)
                || f.get(12..14) == Some(&[0x86, 0xdd]) && f.get(20) == Some(&112)
            {
                assert!(
                    carp_wire::parse_frame(&f).is_ok(),
                    "carp sent an advert it cannot parse"
                );
            }
        }
        let shown = carp.show(None).expect("show");
        for spec in &config.carp {
            let state = shown["interfaces"]
                .as_array()
                .and_then(|a| a.iter().find(|i| i["name"] == spec.name.as_str()))
                .map(|i| i["state"].clone());
            let master = state.as_ref().and_then(|s| s.as_str()) == Some("MASTER");
            was_master |= master;
            assert_eq!(
                routing.vips.is_master(spec.carpdev as u16, spec.vhid),
                master,
                "{} is {state:?}",
                spec.name
            );
        }
        if input.is_empty() {
            break;
        }
        match input.u8() % 6 {
            0 => {
                let port = u16::from(input.u8()) % (ROUTER_PORTS + 1);
                let mut f = input.frame();
                if !cfg!(fuzzing) {
                    fix_carp_checksums(&mut f);
                }
                carp.handle(&f, port, now, &mut out);
            }
            1 | 2 => {
                let spec = &config.carp[usize::from(input.u8() & 1)];
                let v6 = input.bool();
                let (advbase, advskew, demote) = (input.u8(), input.u8(), input.u8());
                let counter = input.u64();
                let bad_md = input.u8() == 0xff;
                let own_source = input.u8() == 0xff;
                let peer = AuthContext::new(
                    &Key::from_passphrase(spec.pass.as_bytes()),
                    &AuthInput {
                        vhid: spec.vhid,
                        lladdr: None,
                        v4: &spec
                            .addresses
                            .iter()
                            .filter_map(|(a, _)| match a {
                                IpAddr::V4(v) => Some(*v),
                                IpAddr::V6(_) => None,
                            })
                            .collect::<Vec<_>>(),
                        v6: &spec
                            .addresses
                            .iter()
                            .filter_map(|(a, _)| match a {
                                IpAddr::V6(v) => Some(*v),
                                IpAddr::V4(_) => None,
                            })
                            .collect::<Vec<_>>(),
                    },
                );
                let mut md = peer.generate(&counter.to_be_bytes());
                if bad_md {
                    md[0] ^= 1;
                }
                let repr = Repr::advertisement(spec.vhid, advbase, advskew, demote, counter, md);
                let port = spec.carpdev as u16;
                let src_mac = carp_wire::virtual_mac(spec.vhid);
                let f = if v6 {
                    let frame = AdvertFrameV6 {
                        src_mac,
                        dst_mac: carp_wire::CARP_GROUP_MAC_V6,
                        src: if own_source {
                            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 0x0101)
                        } else {
                            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x99)
                        },
                        dst: carp_wire::CARP_GROUP_V6,
                        carp: repr,
                    };
                    let mut b = vec![0u8; ADVERT_V6_FRAME_LEN];
                    frame.emit(&mut b).expect("exact length");
                    b
                } else {
                    let base = if port == 0 { [10, 1, 0] } else { [10, 2, 0] };
                    let frame = AdvertFrameV4 {
                        src_mac,
                        dst_mac: carp_wire::CARP_GROUP_MAC_V4,
                        src: Ipv4Addr::new(
                            base[0],
                            base[1],
                            base[2],
                            if own_source { 1 } else { 9 },
                        ),
                        dst: carp_wire::CARP_GROUP_V4,
                        ip_id: 1,
                        carp: repr,
                    };
                    let mut b = vec![0u8; ADVERT_V4_FRAME_LEN];
                    frame.emit(&mut b).expect("exact length");
                    b
                };
                carp.handle(&f, port, now, &mut out);
            }
            3 => {
                now = now + dataplane::time::Duration::from_millis(u64::from(input.u16()));
                carp.poll(now, &mut out);
                if let Some(t) = carp.poll_at() {
                    assert!(t > now, "a timer at {t:?} is due after poll({now:?})");
                }
            }
            4 => {
                let port = u16::from(input.u8()) % (ROUTER_PORTS + 1);
                carp.set_link(port, input.bool(), now, &mut out);
            }
            _ => {
                let delta = i32::from(input.u8() as i8);
                let _ = carp.carpdemote("carp", delta, now, &mut out);
            }
        }
    }
    (carp.stats, was_master)
}
