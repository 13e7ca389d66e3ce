//! Golden tests of router mode through the real `dpf` binary in replay
//! mode: forwarding (MAC rewrite, TTL / hop limit, IPv4 checksum), the slow
//! path's answers (ARP, ND, echo, time exceeded), next-hop resolution, and
//! the drops (no route, unresolved neighbour, not our MAC).

use dataplane::flow::{Addr, Direction, IfIndex, L4Info};
use dataplane::wire::build::{self, Body, Reply, L4 as ReplyL4};
use dataplane::wire::{
    classify, ethernet, icmpv6, ipv4, ipv6, EtherType, EthernetAddress, FrameKind,
};
use dpf_tests::frames::{flags, frame_with, tcp, Arrival, L4};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];
const GW6_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 6];

const CONFIG: &str = r#"
[eal]
args = []
[dataplane]
mode = "router"
[[port]]
name = "lan0"
device = "net_null0"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["10.2.0.1/24", "2001:db8:2::1/64"]
[[route]]
to = "default"
via = "10.2.0.254"
[[route]]
to = "2001:db8:100::/48"
via = "2001:db8:2::fe"
[[neighbor]]
ip = "10.2.0.254"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "2001:db8:2::fe"
mac = "02:fe:00:00:00:06"
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn at(port: u32, ms: u64, f: Vec<u8>) -> Arrival {
    Arrival {
        port,
        at: Duration::from_millis(ms),
        frame: f,
    }
}

fn replay(arrivals: &[Arrival]) -> (Vec<Arrival>, Value) {
    let r = dpf_tests::frames::replay(CONFIG, None, 2, arrivals, 1);
    (r.out, r.stats)
}

fn from_host(ttl: u8, dst: &str, l4: &L4) -> Vec<u8> {
    let src = if dst.contains(':') {
        ip("2001:db8:1::7")
    } else {
        ip("10.1.0.7")
    };
    frame_with(HOST_MAC, LAN_MAC, ttl, src, ip(dst), l4)
}

fn emit(r: Reply<'_>) -> Vec<u8> {
    let mut b = vec![0u8; r.buffer_len()];
    let n = r.emit(&mut b).unwrap();
    b.truncate(n);
    b
}

#[test]
fn routed_packets_get_next_hop_macs_and_a_decremented_ttl_with_a_valid_checksum() {
    let v4 = at(
        0,
        0,
        from_host(64, "198.51.100.9", &tcp(40000, 443, 1, 0, flags::SYN)),
    );
    let v6 = at(
        0,
        1,
        from_host(64, "2001:db8:100::9", &tcp(40000, 443, 1, 0, flags::SYN)),
    );
    let (out, stats) = replay(&[v4.clone(), v6.clone()]);
    assert_eq!(out.len(), 2, "{stats}");
    let f = &out[0];
    assert_eq!(f.port, 1);
    assert_eq!(&f.frame[0..6], &GW_MAC, "to the default gateway's MAC");
    assert_eq!(&f.frame[6..12], &WAN_MAC, "from the egress port's MAC");
    let ipv4 = ipv4::Packet::new_checked(&f.frame[14..]).unwrap();
    assert_eq!(ipv4.ttl(), 63);
    assert!(
        ipv4.verify_checksum(),
        "incremental checksum update is right"
    );
    assert_eq!(&f.frame[34..], &v4.frame[34..], "payload untouched");
    let g = &out[1];
    assert_eq!(
        (g.port, &g.frame[0..6], &g.frame[6..12]),
        (1, &GW6_MAC[..], &WAN_MAC[..])
    );
    assert_eq!(g.frame[14 + 7], 63, "hop limit decremented");
}

#[test]
fn the_slow_path_answers_arp_nd_echo_and_expired_ttl() {
    let arp = emit(build::arp_request(
        None,
        EthernetAddress(HOST_MAC),
        Ipv4Addr::new(10, 1, 0, 7),
        Ipv4Addr::new(10, 1, 0, 1),
    ));
    let host6: Ipv6Addr = "2001:db8:1::7".parse().unwrap();
    let ns = emit(Reply {
        eth: ethernet::Repr {
            src_addr: EthernetAddress(HOST_MAC),
            dst_addr: EthernetAddress([0x33, 0x33, 0xff, 0, 0, 1]),
            vlan_id: None,
            ethertype: EtherType::IPV6,
        },
        body: Body::Ipv6 {
            ip: ipv6::Repr {
                src_addr: host6,
                dst_addr: "ff02::1:ff00:1".parse().unwrap(),
                next_header: 58,
                payload_len: 0,
                hop_limit: 255,
                traffic_class: 0,
                flow_label: 0,
            },
            l4: ReplyL4::Icmpv6(icmpv6::Repr::NeighborSolicit {
                target_addr: "2001:db8:1::1".parse().unwrap(),
                lladdr: Some(EthernetAddress(HOST_MAC)),
            }),
        },
    });
    let ping = from_host(
        64,
        "10.1.0.1",
        &L4::Echo {
            request: true,
            id: 9,
            seq: 1,
        },
    );
    let ping6 = from_host(
        64,
        "2001:db8:1::1",
        &L4::Echo {
            request: true,
            id: 9,
            seq: 2,
        },
    );
    let dying = from_host(
        1,
        "198.51.100.9",
        &L4::Udp {
            sport: 33434,
            dport: 33435,
            payload: vec![0; 8],
        },
    );
    let input = [
        at(0, 0, arp),
        at(0, 1, ns),
        at(0, 2, ping),
        at(0, 3, ping6),
        at(0, 4, dying.clone()),
    ];
    let (out, stats) = replay(&input);
    assert_eq!(out.len(), 5, "one answer each: {stats}");
    for o in &out {
        assert_eq!(o.port, 0, "answers go back out lan0");
        assert_eq!(&o.frame[0..6], &HOST_MAC);
        assert_eq!(&o.frame[6..12], &LAN_MAC);
    }
    assert_eq!(&out[0].frame[12..14], &[8, 6]);
    assert_eq!(&out[0].frame[20..22], &[0, 2], "ARP reply");
    let kinds: Vec<(u8, u8, Addr)> = out[1..]
        .iter()
        .map(|o| {
            let c = classify(&o.frame, IfIndex(0), Direction::In).unwrap();
            let FrameKind::Ip { info, .. } = c.kind else {
                panic!("not IP")
            };
            let L4Info::Icmp(i) = info.l4 else {
                panic!("not ICMP")
            };
            (i.icmp_type, i.code, info.src)
        })
        .collect();
    assert_eq!(kinds[0].0, 136, "neighbour advertisement");
    assert_eq!(
        (kinds[1].0, kinds[1].2),
        (0, Addr::v4([10, 1, 0, 1])),
        "echo reply from 10.1.0.1"
    );
    assert_eq!(kinds[2].0, 129, "ICMPv6 echo reply");
    assert_eq!(
        (kinds[3].0, kinds[3].1, kinds[3].2),
        (11, 0, Addr::v4([10, 1, 0, 1])),
        "time exceeded from the ingress address"
    );
    let q = classify(&out[4].frame, IfIndex(0), Direction::In).unwrap();
    let FrameKind::Ip { info, .. } = q.kind else {
        panic!()
    };
    let L4Info::Icmp(i) = info.l4 else { panic!() };
    assert_eq!(
        i.quoted.unwrap().dport,
        33435,
        "quotes the expired datagram"
    );
}

#[test]
fn packets_to_an_unresolved_next_hop_wait_for_its_answer() {
    let to_host = |ms| {
        at(
            0,
            ms,
            from_host(
                64,
                "10.2.0.77",
                &L4::Udp {
                    sport: 1000,
                    dport: 53,
                    payload: b"q".to_vec(),
                },
            ),
        )
    };
    let answer = emit(build::arp_reply(
        None,
        EthernetAddress([2, 0x77, 0, 0, 0, 1]),
        Ipv4Addr::new(10, 2, 0, 77),
        EthernetAddress(WAN_MAC),
        Ipv4Addr::new(10, 2, 0, 1),
    ));
    let input = [to_host(0), at(1, 5, answer), to_host(10)];
    let (out, stats) = replay(&input);
    assert_eq!(stats["drops"]["neighbor-unresolved"], 0, "{stats}");
    assert_eq!(stats["neighbor_held"], 1, "{stats}");
    assert_eq!(
        out.len(),
        3,
        "an ARP request, the held packet once answered, then the second: {stats}"
    );
    assert_eq!(out[0].port, 1);
    assert_eq!(&out[0].frame[0..6], &[0xff; 6], "ARP request is broadcast");
    assert_eq!(
        &out[0].frame[38..42],
        &[10, 2, 0, 77],
        "asks for the next hop"
    );
    for o in &out[1..] {
        assert_eq!(o.port, 1);
        assert_eq!(
            &o.frame[0..6],
            &[2, 0x77, 0, 0, 0, 1],
            "forwarded to the resolved MAC"
        );
        assert_eq!(&o.frame[6..12], &WAN_MAC, "from the egress port");
    }
    assert_eq!(
        out[1].at,
        Duration::from_millis(5),
        "sent when the answer came"
    );
    // A next hop that never answers: its packets are dropped after 3 s.
    let input = [to_host(0), to_host(4000)];
    let (out, stats) = replay(&input);
    assert_eq!(stats["drops"]["neighbor-unresolved"], 1, "{stats}");
    assert!(
        out.iter().all(|o| o.frame[0..6] == [0xff; 6]),
        "only ARP requests"
    );
}

#[test]
fn no_route_and_foreign_mac_are_dropped_and_counted() {
    let no_route = at(
        0,
        0,
        from_host(
            64,
            "2001:db8:99::1",
            &L4::Udp {
                sport: 1,
                dport: 2,
                payload: vec![],
            },
        ),
    );
    let foreign = at(
        0,
        1,
        frame_with(
            HOST_MAC,
            [2, 0x33, 0, 0, 0, 3],
            64,
            ip("10.1.0.7"),
            ip("198.51.100.1"),
            &L4::Udp {
                sport: 1,
                dport: 2,
                payload: vec![],
            },
        ),
    );
    let (out, stats) = replay(&[no_route, foreign]);
    assert!(out.is_empty());
    assert_eq!(stats["drops"]["no-route"], 1, "{stats}");
    assert_eq!(stats["drops"]["not-for-us"], 1, "{stats}");
}
