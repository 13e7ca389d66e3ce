//! Address translation through the real `dpf` binary in replay mode
//! (router mode): `nat-to` on a `match` rule, `rdr-to` publishing a
//! service, `binat-to`, `tag`/`tagged`; both directions rewritten with
//! valid checksums (TCP, UDP, ICMP echo ids, the packet quoted by an ICMP
//! error), packets claiming the wrong side of a translation dropped, and
//! pf's rule that the `out` pass sees the redirected packet.

use dataplane::flow::{Addr, Direction, IfIndex, L4Info, PacketInfo};
use dataplane::wire::{classify, ipv4, FrameKind};
use dpf_tests::frames::{flags, frame_with, ip_packet, tcp, Arrival, L4};
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];

const CONFIG: &str = r#"
[eal]
args = []
[dataplane]
mode = "router"
rules = "pf.conf"
[[port]]
name = "lan0"
device = "net_null0"
addresses = ["10.1.0.1/24"]
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["203.0.113.1/24", "203.0.113.2/24"]
[[route]]
to = "default"
via = "203.0.113.254"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "10.1.0.7"
mac = "02:aa:00:00:00:07"
[[neighbor]]
ip = "10.1.0.50"
mac = "02:aa:00:00:00:50"
"#;

/// An edge ruleset: everything blocked, the LAN translated to the WAN
/// address by a `match` rule, a web server published with `rdr-to`.
const EDGE: &str = "\
block all
match out on wan0 inet from 10.1.0.0/24 to any nat-to 203.0.113.1
pass in on lan0 inet from 10.1.0.0/24 tag LAN
pass out on wan0 tagged LAN
pass in on wan0 inet proto tcp to 203.0.113.1 port 80 rdr-to 10.1.0.50 port 8080
pass out on lan0 inet proto tcp to 10.1.0.50 port 8080
";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(port: u32, ms: u64, frame: Vec<u8>) -> Arrival {
    Arrival {
        port,
        at: Duration::from_millis(ms),
        frame,
    }
}

fn lan(src: &str, dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(HOST_MAC, LAN_MAC, 64, ip(src), ip(dst), l4)
}

fn wan(src: &str, dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(GW_MAC, WAN_MAC, 64, ip(src), ip(dst), l4)
}

fn replay(rules: &str, arrivals: &[Arrival], workers: u16) -> (Vec<Arrival>, Value) {
    // Seeded: the translated ports a first run shows are the ports a
    // second run with the answers picks.
    let r = dpf_tests::frames::replay_args(
        CONFIG,
        Some(rules),
        2,
        arrivals,
        workers,
        &["--replay-seed", "7"],
    );
    (r.out, r.stats)
}

/// The parsed packet (the classifier verifies the IPv4 header and the
/// transport checksums, so a frame with a wrong one does not parse).
fn parsed(a: &Arrival) -> PacketInfo {
    match classify(&a.frame, IfIndex(a.port as u16), Direction::Out) {
        Ok(c) => match c.kind {
            FrameKind::Ip { info, .. } => {
                let v4 = ipv4::Packet::new_checked(&a.frame[14..]).unwrap();
                assert!(v4.verify_checksum(), "IPv4 header checksum");
                info
            }
            k => panic!("not IP: {k:?}"),
        },
        Err(e) => panic!("output frame does not parse (bad checksum?): {e:?}"),
    }
}

fn v4(s: &str) -> Addr {
    Addr::v4(s.parse::<std::net::Ipv4Addr>().unwrap().octets())
}

fn drops(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn nat_to_translates_the_source_and_the_replies_back() {
    let syn = at(
        0,
        0,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &tcp(40000, 80, 1000, 0, flags::SYN),
        ),
    );
    let (out, stats) = replay(EDGE, std::slice::from_ref(&syn), 1);
    assert_eq!(out.len(), 1, "{stats}");
    let p = parsed(&out[0]);
    assert_eq!(out[0].port, 1, "out on wan0");
    assert_eq!(p.src, v4("203.0.113.1"), "source translated");
    assert!(
        (50001..=65535).contains(&p.sport),
        "pf's port range: {}",
        p.sport
    );
    assert_eq!((p.dst, p.dport), (v4("198.51.100.10"), 80));
    let nport = p.sport;

    // The answer comes back to the translated address and port.
    let synack = at(
        1,
        1,
        wan(
            "198.51.100.10",
            "203.0.113.1",
            &tcp(80, nport, 5000, 1001, flags::SYN | flags::ACK),
        ),
    );
    let ack = at(
        0,
        2,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &tcp(40000, 80, 1001, 5001, flags::ACK),
        ),
    );
    let (out, stats) = replay(EDGE, &[syn, synack, ack], 1);
    assert_eq!(out.len(), 3, "{stats}");
    let back = parsed(&out[1]);
    assert_eq!(out[1].port, 0, "back on lan0");
    assert_eq!(
        (back.src, back.sport, back.dst, back.dport),
        (v4("198.51.100.10"), 80, v4("10.1.0.7"), 40000)
    );
    assert_eq!(&out[1].frame[0..6], &HOST_MAC, "to the host's MAC");
    let again = parsed(&out[2]);
    assert_eq!(
        (again.src, again.sport),
        (v4("203.0.113.1"), nport),
        "same translation"
    );
    assert_eq!(stats["states"].as_u64(), Some(1), "{stats}");
}

#[test]
fn rdr_to_publishes_a_service_and_the_out_pass_sees_the_redirected_packet() {
    let syn = at(
        1,
        0,
        wan(
            "198.51.100.20",
            "203.0.113.1",
            &tcp(5555, 80, 77, 0, flags::SYN),
        ),
    );
    let synack = at(
        0,
        1,
        lan(
            "10.1.0.50",
            "198.51.100.20",
            &tcp(8080, 5555, 9000, 78, flags::SYN | flags::ACK),
        ),
    );
    let (out, stats) = replay(EDGE, &[syn.clone(), synack], 1);
    assert_eq!(out.len(), 2, "{stats}");
    let fwd = parsed(&out[0]);
    assert_eq!(out[0].port, 0, "to the server on lan0");
    assert_eq!(
        (fwd.src, fwd.sport, fwd.dst, fwd.dport),
        (v4("198.51.100.20"), 5555, v4("10.1.0.50"), 8080)
    );
    assert_eq!(
        &out[0].frame[0..6],
        &[2, 0xaa, 0, 0, 0, 0x50],
        "server's MAC"
    );
    let rev = parsed(&out[1]);
    assert_eq!(out[1].port, 1);
    assert_eq!(
        (rev.src, rev.sport, rev.dst, rev.dport),
        (v4("203.0.113.1"), 80, v4("198.51.100.20"), 5555),
        "the reply leaves from the published address, not nat-to's port"
    );

    // Without a rule passing the redirected packet out on lan0, pf blocks
    // it there.
    let strict = EDGE.replace(
        "pass out on lan0 inet proto tcp to 10.1.0.50 port 8080\n",
        "",
    );
    let (out, stats) = replay(&strict, &[syn], 1);
    assert!(out.is_empty(), "{stats}");
    assert_eq!(drops(&stats, "blocked-by-rule"), 1, "{stats}");
}

#[test]
fn packets_claiming_the_other_side_of_a_translation_are_dropped() {
    let syn = at(
        0,
        0,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &tcp(40000, 80, 1000, 0, flags::SYN),
        ),
    );
    // The outside server sends straight to the private address: the
    // state's ingress key, from the wrong side.
    let direct = at(
        1,
        1,
        wan(
            "198.51.100.10",
            "10.1.0.7",
            &tcp(80, 40000, 5000, 1001, flags::SYN | flags::ACK),
        ),
    );
    let (out, stats) = replay(EDGE, &[syn, direct], 1);
    assert_eq!(out.len(), 1, "only the SYN: {stats}");
    assert_eq!(drops(&stats, "translation-failed"), 1, "{stats}");
}

#[test]
fn icmp_echo_ids_and_quoted_packets_of_errors_are_translated() {
    let ping = at(
        0,
        0,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &L4::Echo {
                request: true,
                id: 77,
                seq: 1,
            },
        ),
    );
    let (out, stats) = replay(EDGE, std::slice::from_ref(&ping), 1);
    assert_eq!(out.len(), 1, "{stats}");
    let p = parsed(&out[0]);
    assert_eq!(p.src, v4("203.0.113.1"));
    let L4Info::Icmp(i) = p.l4 else { panic!() };
    assert_ne!(i.id, 77, "the query id is the translated port");
    let nid = i.id;
    let pong = at(
        1,
        1,
        wan(
            "198.51.100.10",
            "203.0.113.1",
            &L4::Echo {
                request: false,
                id: nid,
                seq: 1,
            },
        ),
    );

    // A router on the way reports the translated TCP segment too big.
    let syn = at(
        0,
        2,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &tcp(40000, 80, 1000, 0, flags::SYN),
        ),
    );
    let (out, stats) = replay(EDGE, &[ping.clone(), pong.clone(), syn.clone()], 1);
    assert_eq!(out.len(), 3, "{stats}");
    let back = parsed(&out[1]);
    let L4Info::Icmp(i) = back.l4 else { panic!() };
    assert_eq!(
        (back.dst, i.id, out[1].port),
        (v4("10.1.0.7"), 77, 0),
        "reply id restored"
    );
    let s = parsed(&out[2]);
    let quoted = ip_packet(
        ip("203.0.113.1"),
        ip("198.51.100.10"),
        &tcp(s.sport, 80, 1000, 0, flags::SYN),
    );
    let too_big = at(
        1,
        3,
        wan(
            "198.51.100.1",
            "203.0.113.1",
            &L4::TooBig { mtu: 1400, quoted },
        ),
    );
    let (out, stats) = replay(EDGE, &[ping, pong, syn, too_big], 1);
    assert_eq!(out.len(), 4, "{stats}");
    let err = parsed(&out[3]);
    assert_eq!(
        (out[3].port, err.src, err.dst),
        (0, v4("198.51.100.1"), v4("10.1.0.7"))
    );
    let L4Info::Icmp(i) = err.l4 else { panic!() };
    let q = i.quoted.expect("quote parsed");
    assert_eq!(
        (q.src, q.sport, q.dst, q.dport),
        (v4("10.1.0.7"), 40000, v4("198.51.100.10"), 80),
        "the quoted packet is the one the host sent"
    );
    // The ICMP checksum covers the rewritten quote.
    let icmp = &out[3].frame[34..];
    let len = usize::from(u16::from_be_bytes([out[3].frame[16], out[3].frame[17]])) - 20;
    assert_eq!(
        dataplane::wire::checksum::data(&icmp[..len]),
        0xffff,
        "ICMP checksum"
    );
}

#[test]
fn binat_maps_one_to_one_both_ways_keeping_ports() {
    let rules = "\
block all
pass on wan0 inet from 10.1.0.7 to any binat-to 203.0.113.2
pass in on lan0
pass out on lan0
";
    let out_syn = at(
        0,
        0,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &tcp(40000, 22, 1, 0, flags::SYN),
        ),
    );
    let in_syn = at(
        1,
        1,
        wan(
            "198.51.100.30",
            "203.0.113.2",
            &tcp(6000, 22, 1, 0, flags::SYN),
        ),
    );
    let (out, stats) = replay(rules, &[out_syn, in_syn], 1);
    assert_eq!(out.len(), 2, "{stats}");
    let a = parsed(&out[0]);
    assert_eq!((a.src, a.sport), (v4("203.0.113.2"), 40000), "static port");
    let b = parsed(&out[1]);
    assert_eq!(
        (out[1].port, b.dst, b.dport),
        (0, v4("10.1.0.7"), 22),
        "inbound mapped back"
    );
}

#[test]
fn untagged_traffic_is_not_passed_by_a_tagged_rule() {
    // The WAN host's packet to the LAN is not tagged LAN, and nothing else
    // passes it out on lan0.
    let rules = "\
block all
pass in on lan0 inet tag LAN
pass in on wan0 inet
pass out tagged LAN
";
    let from_lan = at(
        0,
        0,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &tcp(40000, 80, 1, 0, flags::SYN),
        ),
    );
    let from_wan = at(
        1,
        1,
        wan(
            "198.51.100.10",
            "10.1.0.7",
            &tcp(80, 41000, 1, 0, flags::SYN),
        ),
    );
    let (out, stats) = replay(rules, &[from_lan, from_wan], 1);
    assert_eq!(out.len(), 1, "{stats}");
    assert_eq!(out[0].port, 1);
    assert_eq!(drops(&stats, "blocked-by-rule"), 1, "{stats}");
}

#[test]
fn nat_ports_stay_on_the_worker_that_owns_the_connection() {
    // Two workers: every translated connection's replies find their state
    // (nat-to picks ports whose far key hashes to the same worker).
    let mut arrivals = Vec::new();
    for i in 0..40u16 {
        arrivals.push(at(
            0,
            u64::from(i),
            lan(
                "10.1.0.7",
                "198.51.100.10",
                &tcp(30000 + i, 80, 1, 0, flags::SYN),
            ),
        ));
    }
    let (out, stats) = replay(EDGE, &arrivals, 2);
    assert_eq!(out.len(), 40, "{stats}");
    let mut replies = Vec::new();
    for (n, o) in out.iter().enumerate() {
        let p = parsed(o);
        replies.push(at(
            1,
            100 + n as u64,
            wan(
                "198.51.100.10",
                "203.0.113.1",
                &tcp(80, p.sport, 7, 2, flags::SYN | flags::ACK),
            ),
        ));
    }
    let mut all = arrivals.clone();
    all.extend(replies);
    let (out, stats) = replay(EDGE, &all, 2);
    assert_eq!(out.len(), 80, "{stats}");
    let mut back: Vec<u16> = out
        .iter()
        .filter(|o| o.port == 0)
        .map(|o| parsed(o).dport)
        .collect();
    back.sort_unstable();
    assert_eq!(back, (30000..30040).collect::<Vec<_>>());
}

#[test]
fn rdr_to_works_on_several_workers_through_aliases() {
    // The redirected key of about half of these connections hashes to the
    // other worker: its alias sends the server's answers to the worker
    // that holds the state.
    let mut arrivals = Vec::new();
    for i in 0..40u16 {
        arrivals.push(at(
            1,
            u64::from(i),
            wan(
                "198.51.100.20",
                "203.0.113.1",
                &tcp(20000 + i, 80, 5, 0, flags::SYN),
            ),
        ));
    }
    for i in 0..40u16 {
        arrivals.push(at(
            0,
            100 + u64::from(i),
            lan(
                "10.1.0.50",
                "198.51.100.20",
                &tcp(8080, 20000 + i, 9, 6, flags::SYN | flags::ACK),
            ),
        ));
    }
    let (out, stats) = replay(EDGE, &arrivals, 2);
    assert_eq!(out.len(), 80, "{stats}");
    let mut answered: Vec<u16> = out
        .iter()
        .filter(|o| o.port == 1)
        .map(|o| {
            let p = parsed(o);
            assert_eq!((p.src, p.sport), (v4("203.0.113.1"), 80));
            p.dport
        })
        .collect();
    answered.sort_unstable();
    assert_eq!(answered, (20000..20040).collect::<Vec<_>>());
    assert_eq!(drops(&stats, "translation-failed"), 0, "{stats}");
}

#[test]
fn icmp_errors_find_their_translated_flow_on_any_worker() {
    // An ICMP error is owned by the flow it quotes, not by its own
    // addresses: with two workers every "too big" reaches its host.
    let mut syns = Vec::new();
    for i in 0..20u16 {
        syns.push(at(
            0,
            u64::from(i),
            lan(
                "10.1.0.7",
                "198.51.100.10",
                &tcp(31000 + i, 80, 1000, 0, flags::SYN),
            ),
        ));
    }
    let (out, stats) = replay(EDGE, &syns, 2);
    assert_eq!(out.len(), 20, "{stats}");
    let mut all = syns.clone();
    for (n, o) in out.iter().enumerate() {
        let p = parsed(o);
        let quoted = ip_packet(
            ip("203.0.113.1"),
            ip("198.51.100.10"),
            &tcp(p.sport, 80, 1000, 0, flags::SYN),
        );
        all.push(at(
            1,
            100 + n as u64,
            wan(
                "198.51.100.1",
                "203.0.113.1",
                &L4::TooBig { mtu: 1400, quoted },
            ),
        ));
    }
    let (out, stats) = replay(EDGE, &all, 2);
    let mut quoted_ports: Vec<u16> = out
        .iter()
        .filter(|o| o.port == 0)
        .map(|o| {
            let p = parsed(o);
            let L4Info::Icmp(i) = p.l4 else { panic!() };
            i.quoted.expect("quote").sport
        })
        .collect();
    quoted_ports.sort_unstable();
    assert_eq!(quoted_ports, (31000..31020).collect::<Vec<_>>(), "{stats}");
}

fn tcp_seq_ack(a: &Arrival) -> (u32, u32) {
    match parsed(a).l4 {
        L4Info::Tcp(t) => (t.seq, t.ack),
        l => panic!("{l:?}"),
    }
}

#[test]
fn modulate_state_replaces_sequence_numbers_both_ways() {
    let rules = "block all\npass in on lan0 inet modulate state\npass out on wan0\n";
    let syn = at(
        0,
        0,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &tcp(40000, 80, 1000, 0, flags::SYN),
        ),
    );
    let (out, stats) = replay(rules, std::slice::from_ref(&syn), 1);
    assert_eq!(out.len(), 1, "{stats}");
    let (wire_isn, _) = tcp_seq_ack(&out[0]);
    assert_ne!(wire_isn, 1000, "the client's ISN is replaced");
    // The server answers the modulated ISN; the client must see its own.
    let synack = at(
        1,
        1,
        wan(
            "198.51.100.10",
            "10.1.0.7",
            &tcp(
                80,
                40000,
                5000,
                wire_isn.wrapping_add(1),
                flags::SYN | flags::ACK,
            ),
        ),
    );
    let (out, stats) = replay(rules, &[syn.clone(), synack.clone()], 1);
    assert_eq!(out.len(), 2, "{stats}");
    let (server_isn_seen, ack_seen) = tcp_seq_ack(&out[1]);
    assert_eq!(
        ack_seen, 1001,
        "the client sees its own sequence acknowledged"
    );
    assert_ne!(server_isn_seen, 5000, "the server's ISN is replaced too");
    let ack = at(
        0,
        2,
        lan(
            "10.1.0.7",
            "198.51.100.10",
            &tcp(40000, 80, 1001, server_isn_seen.wrapping_add(1), flags::ACK),
        ),
    );
    let (out, stats) = replay(rules, &[syn, synack, ack], 1);
    assert_eq!(out.len(), 3, "{stats}");
    assert_eq!(
        tcp_seq_ack(&out[2]),
        (wire_isn.wrapping_add(1), 5001),
        "the server sees the modulated sequence and its own acknowledged"
    );
    assert_eq!(
        stats["state_list"][0]["dst_state"].as_u64(),
        Some(4),
        "{stats}"
    );
    assert_eq!(
        stats["state_list"][0]["src_state"].as_u64(),
        Some(4),
        "{stats}"
    );
}

const CONFIG6: &str = r#"
[eal]
args = []
[dataplane]
mode = "router"
rules = "pf.conf"
[[port]]
name = "lan0"
device = "net_null0"
addresses = ["2001:db8:1::1/64"]
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["2001:db8:2::1/64"]
[[route]]
to = "default"
via = "2001:db8:2::fe"
[[neighbor]]
ip = "2001:db8:2::fe"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "2001:db8:1::7"
mac = "02:aa:00:00:00:07"
"#;

#[test]
fn nat_to_works_for_ipv6_tcp_and_icmpv6_echo() {
    let rules = "\
block all
pass quick inet6 proto icmp6 icmp6-type { neighbrsol, neighbradv }
match out on wan0 inet6 from 2001:db8:1::/64 to any nat-to 2001:db8:2::1
pass in on lan0 inet6
pass out on wan0 inet6
";
    let run = |arrivals: &[Arrival]| {
        let r = dpf_tests::frames::replay_args(
            CONFIG6,
            Some(rules),
            2,
            arrivals,
            1,
            &["--replay-seed", "7"],
        );
        (r.out, r.stats)
    };
    let v6 = |s: &str| Addr::v6(s.parse::<std::net::Ipv6Addr>().unwrap().octets());
    let syn = at(
        0,
        0,
        lan(
            "2001:db8:1::7",
            "2001:db8:100::10",
            &tcp(40000, 443, 1, 0, flags::SYN),
        ),
    );
    let ping = at(
        0,
        1,
        lan(
            "2001:db8:1::7",
            "2001:db8:100::10",
            &L4::Echo {
                request: true,
                id: 99,
                seq: 1,
            },
        ),
    );
    let (out, stats) = run(&[syn.clone(), ping.clone()]);
    assert_eq!(out.len(), 2, "{stats}");
    let p = parsed6(&out[0]);
    assert_eq!(
        p.src,
        v6("2001:db8:2::1"),
        "IPv6 source translated (TCP checksum valid)"
    );
    let e = parsed6(&out[1]);
    let L4Info::Icmp(i) = e.l4 else { panic!() };
    assert_eq!(e.src, v6("2001:db8:2::1"));
    let reply = at(
        1,
        2,
        wan(
            "2001:db8:100::10",
            "2001:db8:2::1",
            &tcp(443, p.sport, 9, 2, flags::SYN | flags::ACK),
        ),
    );
    let pong = at(
        1,
        3,
        wan(
            "2001:db8:100::10",
            "2001:db8:2::1",
            &L4::Echo {
                request: false,
                id: i.id,
                seq: 1,
            },
        ),
    );
    let (out, stats) = run(&[syn, ping, reply, pong]);
    assert_eq!(out.len(), 4, "{stats}");
    let back = parsed6(&out[2]);
    assert_eq!((back.dst, back.dport), (v6("2001:db8:1::7"), 40000));
    let pong_back = parsed6(&out[3]);
    let L4Info::Icmp(i) = pong_back.l4 else {
        panic!()
    };
    assert_eq!(
        (pong_back.dst, i.id),
        (v6("2001:db8:1::7"), 99),
        "ICMPv6 id and checksum restored"
    );
}

/// An IPv6 frame parsed (the classifier verifies the transport checksum).
fn parsed6(a: &Arrival) -> PacketInfo {
    match classify(&a.frame, IfIndex(a.port as u16), Direction::Out) {
        Ok(c) => match c.kind {
            FrameKind::Ip { info, .. } => info,
            k => panic!("not IP: {k:?}"),
        },
        Err(e) => panic!("output frame does not parse (bad checksum?): {e:?}"),
    }
}
