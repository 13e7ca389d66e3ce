//! pf's scrub options and adaptive timeouts through the real `dpf` binary
//! in replay mode (router mode):
//! - `scrub (max-mss N)` clamps the MSS of the SYN and of the SYN-ACK (the
//!   state applies it both ways), `no-df`, `min-ttl`, `random-id` and
//!   `set tos` rewrite the IPv4 header (both directions of the state), and
//!   IPv6's hop limit and traffic class; every output frame is parsed again
//!   (the classifier verifies the IPv4 header and transport checksums);
//! - `set timeout { adaptive.start, adaptive.end }`: a table filled past
//!   `adaptive.start` expires idle states sooner; at `set limit states` new
//!   states are refused and counted while existing ones keep passing.

use dataplane::flow::{Direction, IfIndex, PacketInfo};
use dataplane::wire::{checksum, classify, FrameKind};
use dpf_tests::frames::{flags, frame_with, Arrival, L4};
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
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["203.0.113.1/24", "2001:db8:ff::2/64"]
[[route]]
to = "default"
via = "203.0.113.254"
[[route]]
to = "::/0"
via = "2001:db8:ff::1"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "2001:db8:ff::1"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "10.1.0.7"
mac = "02:aa:00:00:00:07"
[[neighbor]]
ip = "2001:db8:1::7"
mac = "02:aa:00:00:00:07"
"#;

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

fn lan(src: &str, dst: &str, ttl: u8, l4: &L4) -> Vec<u8> {
    frame_with(HOST_MAC, LAN_MAC, ttl, ip(src), ip(dst), l4)
}

fn wan(src: &str, dst: &str, ttl: u8, l4: &L4) -> Vec<u8> {
    frame_with(GW_MAC, WAN_MAC, ttl, ip(src), ip(dst), l4)
}

/// A SYN (or SYN-ACK) carrying an MSS option of 1460.
fn syn(sport: u16, dport: u16, seq: u32, ack: u32, fl: u8) -> L4 {
    L4::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags: fl,
        win: 65535,
        wscale: Some(7),
        payload: Vec::new(),
    }
}

fn udp(sport: u16, dport: u16) -> L4 {
    L4::Udp {
        sport,
        dport,
        payload: b"scrub".to_vec(),
    }
}

/// Sets the IPv4 header's DF bit, TOS and id in an Ethernet frame and
/// fixes its checksum (the test packets' builder sets neither).
fn with_v4_header(mut f: Vec<u8>, df: bool, tos: u8, id: u16) -> Vec<u8> {
    let h = &mut f[14..34];
    h[1] = tos;
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6] = if df { 0x40 } else { 0 };
    h[10] = 0;
    h[11] = 0;
    let ck = checksum::finish(checksum::data(h));
    h[10..12].copy_from_slice(&ck.to_be_bytes());
    f
}

fn replay(rules: &str, arrivals: &[Arrival]) -> (Vec<Arrival>, Value) {
    let r = dpf_tests::frames::replay_args(
        CONFIG,
        Some(rules),
        2,
        arrivals,
        1,
        &["--replay-seed", "7"],
    );
    (r.out, r.stats)
}

/// The parsed packet; panics unless the frame parses, which needs valid
/// IPv4 header and transport checksums.
fn parsed(a: &Arrival) -> PacketInfo {
    match classify(&a.frame, IfIndex(a.port as u16), Direction::Out) {
        Ok(c) => match c.kind {
            FrameKind::Ip { info, .. } => {
                if a.frame[12..14] == [0x08, 0x00] {
                    assert_eq!(
                        checksum::data(&a.frame[14..34]),
                        0xffff,
                        "IPv4 header checksum"
                    );
                }
                info
            }
            k => panic!("not IP: {k:?}"),
        },
        Err(e) => panic!("output frame does not parse (bad checksum?): {e:?}"),
    }
}

/// The MSS option value of the TCP segment in an IPv4 frame.
fn mss_of(f: &[u8]) -> Option<u16> {
    let tcp = &f[34..];
    let hlen = (tcp[12] >> 4) as usize * 4;
    let mut i = 20;
    while i + 1 < hlen {
        match tcp[i] {
            0 => return None,
            1 => i += 1,
            2 => return Some(u16::from_be_bytes([tcp[i + 2], tcp[i + 3]])),
            _ => i += tcp[i + 1] as usize,
        }
    }
    None
}

fn drops(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap_or(0)
}

#[test]
fn max_mss_clamps_the_syn_and_the_syn_ack_with_valid_checksums() {
    let rules = "\
pass
match out on wan0 inet proto tcp scrub (max-mss 1400)
";
    let arrivals = [
        at(
            0,
            0,
            lan(
                "10.1.0.7",
                "198.51.100.10",
                64,
                &syn(40000, 80, 1000, 0, flags::SYN),
            ),
        ),
        at(
            1,
            5,
            wan(
                "198.51.100.10",
                "10.1.0.7",
                64,
                &syn(80, 40000, 5000, 1001, flags::SYN | flags::ACK),
            ),
        ),
    ];
    assert_eq!(mss_of(&arrivals[0].frame), Some(1460));
    let (out, stats) = replay(rules, &arrivals);
    assert_eq!(out.len(), 2, "{stats}");
    let (s, sa) = (parsed(&out[0]), parsed(&out[1]));
    assert_eq!((out[0].port, s.dport), (1, 80));
    assert_eq!(mss_of(&out[0].frame), Some(1400), "the SYN's MSS clamped");
    // The SYN-ACK matched the state, which carries the scrub: clamped too.
    assert_eq!((out[1].port, sa.sport), (0, 80));
    assert_eq!(
        mss_of(&out[1].frame),
        Some(1400),
        "the SYN-ACK's MSS clamped"
    );
    // A rule that does not match leaves the MSS alone.
    let (out, _) = replay(
        "pass\nmatch out on wan0 inet proto udp scrub (max-mss 1400)\n",
        &arrivals[..1],
    );
    assert_eq!(mss_of(&out[0].frame), Some(1460));
}

#[test]
fn ipv4_header_options_apply_to_both_directions_of_the_state() {
    let rules = "\
pass
match on wan0 inet proto udp scrub (no-df, min-ttl 100, random-id) set tos lowdelay
";
    let out_pkt = with_v4_header(
        lan("10.1.0.7", "198.51.100.10", 64, &udp(5000, 53)),
        true,
        0x01,
        0x1111,
    );
    let reply = with_v4_header(
        wan("198.51.100.10", "10.1.0.7", 64, &udp(53, 5000)),
        true,
        0x02,
        0x2222,
    );
    let (out, stats) = replay(rules, &[at(0, 0, out_pkt), at(1, 5, reply)]);
    assert_eq!(out.len(), 2, "{stats}");
    for (a, old_id, ecn) in [(&out[0], 0x1111u16, 0x01u8), (&out[1], 0x2222, 0x02)] {
        let p = parsed(a);
        let h = &a.frame[14..34];
        assert_eq!(h[6] & 0x40, 0, "DF cleared");
        assert_eq!(
            p.ttl, 100,
            "TTL raised to min-ttl after the router's decrement"
        );
        assert_eq!(h[1], 0x10 | ecn, "TOS set to lowdelay, ECN bits kept");
        assert_ne!(u16::from_be_bytes([h[4], h[5]]), old_id, "random id");
    }
    // Without the scrub the headers go out as they came (TTL decremented).
    let plain = with_v4_header(
        lan("10.1.0.7", "198.51.100.10", 64, &udp(5000, 53)),
        true,
        0x01,
        0x1111,
    );
    let (out, _) = replay("pass\n", &[at(0, 0, plain)]);
    let h = &out[0].frame[14..34];
    assert_eq!(
        (h[6] & 0x40, h[8], h[1], h[4], h[5]),
        (0x40, 63, 0x01, 0x11, 0x11)
    );
}

#[test]
fn a_pass_rule_without_state_scrubs_its_packets() {
    let rules = "pass out on wan0 inet proto udp no state scrub (min-ttl 200)\npass in no state\n";
    let (out, stats) = replay(
        rules,
        &[at(
            0,
            0,
            lan("10.1.0.7", "198.51.100.10", 64, &udp(5000, 53)),
        )],
    );
    assert_eq!(out.len(), 1, "{stats}");
    assert_eq!(parsed(&out[0]).ttl, 200);
    assert_eq!(stats["states_created"].as_u64(), Some(0), "{stats}");
}

#[test]
fn ipv6_hop_limit_and_traffic_class() {
    let rules = "pass\nmatch out on wan0 inet6 scrub (min-ttl 90) set tos 0x28\n";
    let (out, stats) = replay(
        rules,
        &[
            at(
                0,
                0,
                lan("2001:db8:1::7", "2001:db8:99::1", 64, &udp(5000, 53)),
            ),
            at(
                1,
                5,
                wan("2001:db8:99::1", "2001:db8:1::7", 64, &udp(53, 5000)),
            ),
        ],
    );
    assert_eq!(out.len(), 2, "{stats}");
    for a in &out {
        let p = parsed(a);
        assert_eq!(p.ttl, 90, "hop limit raised");
        let h = &a.frame[14..];
        assert_eq!((h[0] & 0x0f) << 4 | h[1] >> 4, 0x28, "traffic class af11");
    }
}

/// UDP flows from the LAN, replies from the WAN only by state.
const ADAPTIVE_BASE: &str = "\
block in on wan0
pass out on wan0 proto udp keep state
pass in on lan0
";

fn flows(n: u16, at_ms: u64) -> Vec<Arrival> {
    (0..n)
        .map(|i| {
            at(
                0,
                at_ms,
                lan("10.1.0.7", "198.51.100.10", 64, &udp(10000 + i, 53)),
            )
        })
        .collect()
}

fn reply(i: u16, at_ms: u64) -> Arrival {
    at(
        1,
        at_ms,
        wan("198.51.100.10", "10.1.0.7", 64, &udp(53, 10000 + i)),
    )
}

#[test]
fn a_table_past_adaptive_start_expires_idle_states_sooner() {
    // 7 states between start 4 and end 10: timeouts scaled by 3/6, so
    // udp.first's 60 s become 30 s.
    let mut arrivals = flows(7, 0);
    arrivals.push(reply(0, 31_000));
    let scaled = format!("set timeout {{ adaptive.start 4, adaptive.end 10 }}\n{ADAPTIVE_BASE}");
    let (out, stats) = replay(&scaled, &arrivals);
    assert_eq!(
        out.len(),
        7,
        "the reply after 31 s finds its state gone: {stats}"
    );
    assert_eq!(drops(&stats, "blocked-by-rule"), 1, "{stats}");
    // pf's defaults (60000 / 120000): the same reply still has its state.
    let (out, stats) = replay(ADAPTIVE_BASE, &arrivals);
    assert_eq!(out.len(), 8, "{stats}");
    // Below adaptive.start nothing is scaled.
    let mut few = flows(4, 0);
    few.push(reply(0, 31_000));
    let (out, stats) = replay(&scaled, &few);
    assert_eq!(out.len(), 5, "{stats}");
}

#[test]
fn at_the_state_limit_new_states_are_refused_and_existing_ones_pass() {
    // set limit states 10: adaptive 6 / 12 derived (pfctl), 10 states
    // scale udp.first to 20 s; replies within that pass.
    let rules = format!("set limit states 10\n{ADAPTIVE_BASE}");
    let mut arrivals = flows(11, 0);
    for i in 0..10 {
        arrivals.push(reply(i, 2_000));
    }
    let (out, stats) = replay(&rules, &arrivals);
    assert_eq!(
        drops(&stats, "state-table-full"),
        1,
        "the 11th flow: {stats}"
    );
    assert_eq!(
        out.len(),
        10 + 10,
        "10 flows out, their 10 replies in: {stats}"
    );
    assert!(out[10..].iter().all(|a| a.port == 0));
}

/// A bridge: lan0 and wan0 cross-connected.
const WIRE: &str = "[eal]\nargs = []\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_null1\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n";

#[test]
fn a_bridge_scrubs_both_directions_too() {
    let rules = "pass\nmatch in on lan0 proto tcp scrub (max-mss 1200, no-df, min-ttl 30)\n";
    let syn_out = with_v4_header(
        lan("10.1.0.7", "10.1.0.9", 5, &syn(40000, 22, 1, 0, flags::SYN)),
        true,
        0,
        7,
    );
    let syn_ack = with_v4_header(
        wan(
            "10.1.0.9",
            "10.1.0.7",
            5,
            &syn(22, 40000, 9, 2, flags::SYN | flags::ACK),
        ),
        true,
        0,
        8,
    );
    let r = dpf_tests::frames::replay(
        WIRE,
        Some(rules),
        2,
        &[at(0, 0, syn_out), at(1, 1, syn_ack)],
        1,
    );
    assert_eq!(r.out.len(), 2, "{}", r.stats);
    for a in &r.out {
        let p = parsed(a);
        assert_eq!(mss_of(&a.frame), Some(1200));
        assert_eq!(p.ttl, 30, "no router decrement on a bridge; raised");
        assert_eq!(a.frame[20] & 0x40, 0, "DF cleared");
    }
}

#[test]
fn a_rules_own_adaptive_values_scale_by_its_own_states() {
    let rules = "\
block in on wan0
pass out on wan0 proto udp to port 53 keep state (adaptive.start 4, adaptive.end 10)
pass out on wan0 proto udp to port 123
pass in on lan0 no state
";
    // 7 states of the port-53 rule (the `out` pass's: the `in` pass keeps
    // none): its timeouts halved (30 s).
    let mut arrivals = flows(7, 0);
    arrivals.push(reply(0, 31_000));
    let (out, stats) = replay(rules, &arrivals);
    assert_eq!(out.len(), 7, "{stats}");
    // 7 states of the other rule do not count for it.
    let mut ntp: Vec<Arrival> = (0..7)
        .map(|i| {
            at(
                0,
                0,
                lan("10.1.0.7", "198.51.100.10", 64, &udp(20000 + i, 123)),
            )
        })
        .collect();
    ntp.extend(flows(1, 0));
    ntp.push(reply(0, 31_000));
    let (out, stats) = replay(rules, &ntp);
    assert_eq!(out.len(), 9, "{stats}");
}
