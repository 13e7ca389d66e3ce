//! Neighbour discovery and ARP hygiene through the real `dpf` binary in
//! replay mode (router mode, gateways resolved by dpf itself): an ND
//! message that crossed a router cannot repoint a next hop, an NA or NS
//! that is not about us creates no entry, a flood of ARP senders keeps the
//! table within `neighbor_limit` while the box forwards, and a claim to the
//! box's own address is counted and logged as a conflict.

use dataplane::wire::build::{self, Body, Reply, L4 as ReplyL4};
use dataplane::wire::{ethernet, icmpv6, ipv6, EtherType, EthernetAddress};
use dpf_tests::frames::{frame_with, Arrival, L4};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Output;
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];
const GW6_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 6];
const EVIL_MAC: [u8; 6] = [2, 0x66, 0x66, 0x66, 0x66, 0x66];
const LIMIT: u64 = 64;

/// No static neighbours: dpf resolves both default gateways itself.
const CONFIG: &str = r#"
[eal]
args = []
[dataplane]
mode = "router"
neighbor_limit = 64
[[port]]
name = "lan0"
device = "net_null0"
addresses = ["10.1.0.1/16", "2001:db8:1::1/64"]
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["10.2.0.1/24", "2001:db8:2::1/64"]
[[route]]
to = "default"
via = "10.2.0.254"
[[route]]
to = "::/0"
via = "2001:db8:2::fe"
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn at_us(port: u32, us: u64, frame: Vec<u8>) -> Arrival {
    Arrival {
        port,
        at: Duration::from_micros(us),
        frame,
    }
}

fn at(port: u32, ms: u64, frame: Vec<u8>) -> Arrival {
    at_us(port, ms * 1000, frame)
}

fn replay(arrivals: &[Arrival]) -> (Vec<Arrival>, Value, Output) {
    let r = dpf_tests::frames::replay(CONFIG, None, 2, arrivals, 1);
    (r.out, r.stats, r.output)
}

fn emit(r: Reply<'_>) -> Vec<u8> {
    let mut b = vec![0u8; r.buffer_len()];
    let n = r.emit(&mut b).unwrap();
    b.truncate(n);
    b
}

/// A UDP datagram from a LAN host to `dst`, through the box.
fn from_host(dst: &str) -> Vec<u8> {
    let src = if dst.contains(':') {
        ip("2001:db8:1::7")
    } else {
        ip("10.1.0.7")
    };
    let l4 = L4::Udp {
        sport: 40000,
        dport: 53,
        payload: b"q".to_vec(),
    };
    frame_with(HOST_MAC, LAN_MAC, 64, src, ip(dst), &l4)
}

/// A UDP datagram from the internet to `dst`, arriving on wan0.
fn from_internet(dst: &str) -> Vec<u8> {
    let l4 = L4::Udp {
        sport: 53,
        dport: 40000,
        payload: b"a".to_vec(),
    };
    frame_with(GW_MAC, WAN_MAC, 64, ip("2001:db8:100::9"), ip(dst), &l4)
}

/// An ND message in IPv6 with hop limit `hop`.
fn nd(src_mac: [u8; 6], src: &str, dst: &str, hop: u8, l4: icmpv6::Repr<'_>) -> Vec<u8> {
    let dst = v6(dst);
    let dst_mac = if dst.is_multicast() {
        EthernetAddress::ipv6_multicast(&dst.octets())
    } else {
        EthernetAddress(WAN_MAC)
    };
    emit(Reply {
        eth: ethernet::Repr {
            src_addr: EthernetAddress(src_mac),
            dst_addr: dst_mac,
            vlan_id: None,
            ethertype: EtherType::IPV6,
        },
        body: Body::Ipv6 {
            ip: ipv6::Repr {
                src_addr: v6(src),
                dst_addr: dst,
                next_header: 58,
                payload_len: 0,
                hop_limit: hop,
                traffic_class: 0,
                flow_label: 0,
            },
            l4: ReplyL4::Icmpv6(l4),
        },
    })
}

fn na(target: &str, solicited: bool, override_flag: bool, mac: [u8; 6]) -> icmpv6::Repr<'static> {
    icmpv6::Repr::NeighborAdvert {
        router: true,
        solicited,
        override_flag,
        target_addr: v6(target),
        lladdr: Some(EthernetAddress(mac)),
    }
}

fn ns(target: &str, mac: [u8; 6]) -> icmpv6::Repr<'static> {
    icmpv6::Repr::NeighborSolicit {
        target_addr: v6(target),
        lladdr: Some(EthernetAddress(mac)),
    }
}

fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    emit(build::arp_request(
        None,
        EthernetAddress(mac),
        sender,
        target,
    ))
}

fn arp_reply(mac: [u8; 6], sender: Ipv4Addr, target_mac: [u8; 6], target: Ipv4Addr) -> Vec<u8> {
    emit(build::arp_reply(
        None,
        EthernetAddress(mac),
        sender,
        EthernetAddress(target_mac),
        target,
    ))
}

/// Forwarded UDP datagrams (not ARP / ND / ICMP from the slow path), as
/// (egress port, destination MAC).
fn forwarded(out: &[Arrival]) -> Vec<(u32, [u8; 6])> {
    out.iter()
        .filter(|o| {
            let f = &o.frame;
            match &f[12..14] {
                [0x08, 0x00] => f.get(23) == Some(&17),
                [0x86, 0xdd] => f.get(20) == Some(&17),
                _ => false,
            }
        })
        .map(|o| (o.port, o.frame[0..6].try_into().unwrap()))
        .collect()
}

/// Neighbour solicitations dpf sent, by target.
fn solicitations(out: &[Arrival]) -> Vec<Ipv6Addr> {
    out.iter()
        .filter(|o| o.frame[12..14] == [0x86, 0xdd] && o.frame.get(54) == Some(&135))
        .map(|o| Ipv6Addr::from(<[u8; 16]>::try_from(&o.frame[62..78]).unwrap()))
        .collect()
}

fn slow(stats: &Value, key: &str) -> u64 {
    stats["slow_path_stats"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no slow_path_stats.{key} in {stats}"))
}

/// The next hop of `::/0` resolved by dpf: a datagram, the solicited
/// answer 1 ms later, a datagram that goes through.
fn resolve_gw6() -> Vec<Arrival> {
    let answer = nd(
        GW6_MAC,
        "2001:db8:2::fe",
        "2001:db8:2::1",
        255,
        na("2001:db8:2::fe", true, true, GW6_MAC),
    );
    vec![
        at(0, 0, from_host("2001:db8:100::9")),
        at(1, 1, answer),
        at(0, 3, from_host("2001:db8:100::9")),
    ]
}

#[test]
fn an_unsolicited_na_with_hop_limit_50_does_not_repoint_the_default_route() {
    let mut input = resolve_gw6();
    // From the internet: "2001:db8:2::fe is at EVIL_MAC now" (O=1), hop
    // limit 50, from an off-link source, to the box and to all nodes.
    let attack = |dst| {
        nd(
            EVIL_MAC,
            "2001:db8:99::5",
            dst,
            50,
            na("2001:db8:2::fe", false, true, EVIL_MAC),
        )
    };
    input.push(at(1, 5, attack("2001:db8:2::1")));
    input.push(at(1, 6, attack("ff02::1")));
    input.push(at(0, 10, from_host("2001:db8:100::9")));
    let (out, stats, _) = replay(&input);
    assert_eq!(
        solicitations(&out),
        vec![v6("2001:db8:2::fe")],
        "the gateway was resolved: {stats}"
    );
    assert_eq!(
        forwarded(&out),
        vec![(1, GW6_MAC), (1, GW6_MAC), (1, GW6_MAC)],
        "the datagram held during the resolution and both after it went to the gateway's own MAC: {stats}"
    );
    assert_eq!(slow(&stats, "nd_bad_hop_limit"), 2, "{stats}");
    assert_eq!(stats["neighbor_held"], 1, "{stats}");
    assert_eq!(stats["drops"]["neighbor-unresolved"], 0, "{stats}");
}

#[test]
fn an_na_or_ns_that_is_not_about_us_creates_no_entry() {
    let mut input = resolve_gw6();
    // Hop limit 255 but unsolicited, for targets dpf never asked about:
    // an on-link address, and one from an off-link source.
    input.push(at(
        1,
        5,
        nd(
            EVIL_MAC,
            "2001:db8:2::77",
            "ff02::1",
            255,
            na("2001:db8:2::77", false, true, EVIL_MAC),
        ),
    ));
    input.push(at(
        1,
        6,
        nd(
            EVIL_MAC,
            "2001:db8:99::5",
            "2001:db8:2::1",
            255,
            na("2001:db8:2::78", true, true, EVIL_MAC),
        ),
    ));
    // A solicitation for someone else's address does not teach its source.
    input.push(at(
        0,
        7,
        nd(
            EVIL_MAC,
            "2001:db8:1::50",
            "ff02::1:ff00:99",
            255,
            ns("2001:db8:1::99", EVIL_MAC),
        ),
    ));
    // Nor does one for ours from an off-link source (answered, not learned).
    input.push(at(
        1,
        8,
        nd(
            EVIL_MAC,
            "2001:db8:99::5",
            "2001:db8:2::1",
            255,
            ns("2001:db8:2::1", EVIL_MAC),
        ),
    ));
    // Datagrams to each of them: none may be forwarded (to EVIL_MAC); each
    // makes dpf ask.
    for (i, dst) in ["2001:db8:2::77", "2001:db8:2::78", "2001:db8:1::50"]
        .iter()
        .enumerate()
    {
        input.push(at(1, 20 + i as u64, from_internet(dst)));
    }
    let (out, stats, _) = replay(&input);
    assert_eq!(
        forwarded(&out),
        vec![(1, GW6_MAC), (1, GW6_MAC)],
        "only the gateway's datagrams (the first held until it answered): {stats}"
    );
    assert_eq!(
        stats["neighbor_held"], 4,
        "each waits for its own answer: {stats}"
    );
    assert_eq!(
        solicitations(&out),
        [
            "2001:db8:2::fe",
            "2001:db8:2::77",
            "2001:db8:2::78",
            "2001:db8:1::50"
        ]
        .map(v6),
        "{stats}"
    );
    assert_eq!(slow(&stats, "na_ignored"), 2, "{stats}");
    assert_eq!(
        slow(&stats, "neighbor_rejected"),
        1,
        "the off-link asker: {stats}"
    );
    assert_eq!(
        slow(&stats, "neighbor_entries"),
        4,
        "the gateway and three incomplete: {stats}"
    );
}

#[test]
fn a_flood_of_arp_from_10k_on_link_senders_stays_within_the_limit_and_the_box_forwards() {
    let gw = Ipv4Addr::new(10, 2, 0, 254);
    let mut input = vec![
        at(0, 0, from_host("198.51.100.9")),
        at(
            1,
            1,
            arp_reply(GW_MAC, gw, WAN_MAC, Ipv4Addr::new(10, 2, 0, 1)),
        ),
        at(0, 2, from_host("198.51.100.9")),
    ];
    // 10k hosts of lan0's /16 ask for the box, 20 us apart.
    let us = Ipv4Addr::new(10, 1, 0, 1);
    for i in 0..10_000u32 {
        let [_, _, hi, lo] = (0x0a01_0100 + i).to_be_bytes();
        let mac = [2, 0xbb, 0, 0, hi, lo];
        let sender = Ipv4Addr::new(10, 1, hi, lo);
        input.push(at_us(
            0,
            3_000 + 20 * u64::from(i),
            arp_request(mac, sender, us),
        ));
    }
    // Then one of them changes its MAC 5000 times in 100 ms (gratuitous
    // ARP): each frame changes the table.
    for i in 0..5_000u32 {
        let mac = [2, 0xcc, 0, 0, (i >> 8) as u8, i as u8];
        let first = Ipv4Addr::new(10, 1, 1, 0);
        input.push(at_us(
            0,
            210_000 + 20 * u64::from(i),
            arp_request(mac, first, first),
        ));
    }
    input.push(at(0, 320, from_host("198.51.100.9")));
    let (out, stats, _) = replay(&input);
    assert_eq!(
        forwarded(&out),
        vec![(1, GW_MAC), (1, GW_MAC), (1, GW_MAC)],
        "forwarding to the gateway goes on (the first datagram held until it answered): {stats}"
    );
    let entries = slow(&stats, "neighbor_entries");
    assert!(entries <= LIMIT, "{entries} entries: {stats}");
    assert_eq!(entries, LIMIT, "full, not emptied: {stats}");
    assert_eq!(
        slow(&stats, "neighbor_table_full"),
        10_000 + 1 - LIMIT,
        "the gateway and 63 senders got in: {stats}"
    );
    assert_eq!(slow(&stats, "arp_replies"), 10_000, "all answered: {stats}");
    assert_eq!(slow(&stats, "learned"), LIMIT + 5_000, "{stats}");
    // Neither flood rebuilt the workers' table per packet: at most one
    // snapshot a millisecond (~100 for the 100 ms of MAC changes).
    let published = slow(&stats, "snapshots_published");
    assert!(
        (50..=120).contains(&published),
        "{published} snapshots for 15k frames: {stats}"
    );
}

#[test]
fn an_arp_or_na_claiming_the_box_s_address_is_a_conflict() {
    let mut input = vec![
        // A gratuitous ARP for lan0's address, a reply claiming wan0's.
        at(
            0,
            0,
            arp_request(
                EVIL_MAC,
                Ipv4Addr::new(10, 1, 0, 1),
                Ipv4Addr::new(10, 1, 0, 1),
            ),
        ),
        at(
            1,
            1,
            arp_reply(
                EVIL_MAC,
                Ipv4Addr::new(10, 2, 0, 1),
                WAN_MAC,
                Ipv4Addr::new(10, 2, 0, 1),
            ),
        ),
        // An NA for the box's IPv6 address.
        at(
            1,
            2,
            nd(
                EVIL_MAC,
                "2001:db8:2::1",
                "ff02::1",
                255,
                na("2001:db8:2::1", false, true, EVIL_MAC),
            ),
        ),
    ];
    // Then a flood of them: counted, but logged a few times only.
    for i in 0..200 {
        input.push(at_us(
            0,
            3_000 + i,
            arp_request(
                EVIL_MAC,
                Ipv4Addr::new(10, 1, 0, 1),
                Ipv4Addr::new(10, 1, 0, 1),
            ),
        ));
    }
    let (out, stats, run) = replay(&input);
    assert!(out.is_empty(), "nothing answered: {out:?}");
    assert_eq!(slow(&stats, "address_conflicts"), 203, "{stats}");
    assert_eq!(slow(&stats, "neighbor_entries"), 0, "{stats}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("address conflict"))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("10.1.0.1")
            && l.contains("02:66:66:66:66:66")
            && l.contains("lan0")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.contains("2001:db8:2::1")),
        "{stderr}"
    );
    assert!((3..=5).contains(&lines.len()), "rate-limited: {stderr}");
}
