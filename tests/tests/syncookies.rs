//! pf's SYN-flood defences through the real `dpf` binary in replay mode
//! (clients on wan0, the server 10.1.0.7 on lan0).
//!
//! `set syncookies` (router mode):
//! - a spoofed SYN flood interleaved with a legitimate SYN: every SYN is
//!   answered with a SYN-ACK whose ISN is a cookie, no state is created;
//! - the legitimate client's ACK returns its cookie: the state is created
//!   and the firewall's SYN goes to the server; the server's SYN-ACK is
//!   answered with an ACK; data then flows both ways with the server's
//!   sequence numbers translated to the cookie's;
//! - a forged ACK with a wrong cookie is dropped and counted;
//! - `adaptive`: off below its start, so SYNs create states as usual; on
//!   past it; under a flood that fills the table without cookies,
//!   legitimate handshakes still complete with them.
//!
//! `synproxy state` (router and wire mode): dpf answers the client's SYN
//! with its own ISN, opens the server's side on the client's ACK, answers
//! the server's SYN-ACK, then translates the server's numbers for the
//! connection's life; a server that refuses (RST) gets the client reset
//! and the state removed; a SYN to the box itself is refused.
//!
//! Every output frame is parsed again (the classifier verifies the IPv4
//! header and TCP checksums).

use dataplane::flow::{Direction, IfIndex, L4Info, PacketInfo, TcpInfo};
use dataplane::wire::{classify, FrameKind};
use dpf_tests::frames::{flags, frame_with, tcp, Arrival, L4};
use serde_json::Value;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];

/// The replay tests' router with the LAN host 10.1.0.7 resolved.
fn router_config() -> String {
    dpf_tests::frames::router_config("10.1.0.7", "02:aa:00:00:00:07", "")
}

const RULES: &str = "set syncookies always
block
pass proto tcp to 10.1.0.7 port 80
";

const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "10.1.0.7";
const CLIENT_ISN: u32 = 1000;
const SERVER_ISN: u32 = 0x8000_0000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr(s: &str) -> dataplane::flow::Addr {
    dataplane::flow::Addr::from_ip(ip(s)).1
}

fn at(port: u32, us: u64, frame: Vec<u8>) -> Arrival {
    Arrival {
        port,
        at: Duration::from_micros(us),
        frame,
    }
}

fn from_wan(src: &str, dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(GW_MAC, WAN_MAC, 64, ip(src), ip(dst), l4)
}

fn from_lan(src: &str, dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(HOST_MAC, LAN_MAC, 64, ip(src), ip(dst), l4)
}

/// A SYN with an MSS option of 1460 (the builder adds it with a window
/// scale).
fn syn(sport: u16, seq: u32) -> L4 {
    L4::Tcp {
        sport,
        dport: 80,
        seq,
        ack: 0,
        flags: flags::SYN,
        win: 65535,
        wscale: Some(7),
        payload: Vec::new(),
    }
}

fn data(sport: u16, dport: u16, seq: u32, ack: u32, payload: &[u8]) -> L4 {
    L4::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags: flags::ACK | flags::PSH,
        win: 1000,
        wscale: None,
        payload: payload.to_vec(),
    }
}

fn replay(rules: &str, arrivals: &[Arrival], workers: u16) -> (Vec<Arrival>, Value) {
    let r = dpf_tests::frames::replay_args(
        &router_config(),
        Some(rules),
        2,
        arrivals,
        workers,
        &["--replay-seed", "7"],
    );
    (r.out, r.stats)
}

/// The parsed packet and its TCP fields; panics unless the frame parses
/// (valid IPv4 header and TCP checksums).
fn parsed(a: &Arrival) -> (PacketInfo, TcpInfo) {
    let c = classify(&a.frame, IfIndex(a.port as u16), Direction::Out)
        .unwrap_or_else(|e| panic!("output frame does not parse (bad checksum?): {e:?}"));
    let FrameKind::Ip { info, .. } = c.kind else {
        panic!("not IP")
    };
    let L4Info::Tcp(t) = info.l4 else {
        panic!("not TCP: {info:?}")
    };
    (info, t)
}

fn drops(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap_or(0)
}

/// The flood: `n` SYNs from spoofed sources, the legitimate SYN in the
/// middle.
fn flood_with_client(n: u32) -> Vec<Arrival> {
    let mut v = Vec::new();
    for i in 0..n {
        let src = format!("198.51.{}.{}", 100 + i / 250, 1 + i % 250);
        v.push(at(
            1,
            u64::from(i),
            from_wan(&src, SERVER, &syn(1024 + i as u16, i * 7919)),
        ));
        if i == n / 2 {
            v.push(at(
                1,
                u64::from(i),
                from_wan(CLIENT, SERVER, &syn(40000, CLIENT_ISN)),
            ));
        }
    }
    v
}

fn to(out: &[Arrival], port: u32, dst: &str) -> Vec<(PacketInfo, TcpInfo, Vec<u8>)> {
    out.iter()
        .filter(|a| a.port == port)
        .map(|a| {
            let (i, t) = parsed(a);
            (i, t, a.frame.clone())
        })
        .filter(|(i, _, _)| i.dst == addr(dst))
        .collect()
}

#[test]
fn a_syn_flood_gets_cookies_and_no_states_while_the_client_connects() {
    const FLOOD: u32 = 400;
    let phase1 = flood_with_client(FLOOD);
    let (out, stats) = replay(RULES, &phase1, 1);
    // Every SYN answered back out wan0 with a SYN-ACK; no state.
    assert_eq!(
        drops(&stats, "syncookie-sent"),
        u64::from(FLOOD) + 1,
        "{stats}"
    );
    assert_eq!(stats["states_created"].as_u64(), Some(0), "{stats}");
    assert_eq!(
        out.iter().filter(|a| a.port == 1).count(),
        FLOOD as usize + 1
    );
    assert!(
        out.iter().all(|a| a.port == 1),
        "nothing reaches the server"
    );
    let answer = to(&out, 1, CLIENT);
    assert_eq!(answer.len(), 1);
    let (info, t, frame) = &answer[0];
    assert_eq!(t.flags, flags::SYN | flags::ACK);
    assert_eq!(t.ack, CLIENT_ISN + 1);
    assert_eq!((info.sport, info.dport), (80, 40000));
    assert_eq!(info.src, addr(SERVER));
    assert_eq!(t.mss, Some(1460), "the cookie's MSS is offered");
    assert_eq!(t.wscale, None, "no window scaling offered");
    assert_eq!(&frame[0..6], &GW_MAC, "back to the sender's MAC");
    let cookie = t.seq;

    // The client's ACK returns the cookie; a forged ACK does not.
    let mut all = phase1.clone();
    let ack = tcp(
        40000,
        80,
        CLIENT_ISN + 1,
        cookie.wrapping_add(1),
        flags::ACK,
    );
    all.push(at(1, 1000, from_wan(CLIENT, SERVER, &ack)));
    let forged = tcp(5555, 80, 77, cookie.wrapping_add(0x100), flags::ACK);
    all.push(at(1, 1001, from_wan("198.51.100.77", SERVER, &forged)));
    // The server answers the firewall's SYN.
    let synack = L4::Tcp {
        sport: 80,
        dport: 40000,
        seq: SERVER_ISN,
        ack: CLIENT_ISN + 1,
        flags: flags::SYN | flags::ACK,
        win: 28960,
        wscale: Some(7),
        payload: Vec::new(),
    };
    all.push(at(0, 1100, from_lan(SERVER, CLIENT, &synack)));
    // Data both ways.
    let get = data(40000, 80, CLIENT_ISN + 1, cookie.wrapping_add(1), b"GET /");
    all.push(at(1, 1200, from_wan(CLIENT, SERVER, &get)));
    let resp = data(80, 40000, SERVER_ISN + 1, CLIENT_ISN + 6, b"HTTP/1.1 200");
    all.push(at(0, 1300, from_lan(SERVER, CLIENT, &resp)));
    let (out, stats) = replay(RULES, &all, 1);

    assert_eq!(
        stats["states_created"].as_u64(),
        Some(1),
        "only the client's: {stats}"
    );
    assert_eq!(drops(&stats, "syncookie-invalid"), 1, "{stats}");
    let to_server = to(&out, 0, SERVER);
    assert_eq!(to_server.len(), 3, "SYN, ACK, data: {to_server:?}");
    let (si, s, sframe) = &to_server[0];
    assert_eq!(s.flags, flags::SYN, "the firewall's SYN");
    assert_eq!(s.seq, CLIENT_ISN);
    assert_eq!(s.mss, Some(1460), "with the MSS the cookie carried");
    assert_eq!((si.src, si.sport), (addr(CLIENT), 40000));
    assert_eq!(&sframe[0..6], &HOST_MAC, "to the server's MAC");
    assert_eq!(&sframe[6..12], &LAN_MAC, "from lan0");
    let (_, a, _) = &to_server[1];
    assert_eq!(a.flags, flags::ACK, "the ACK completing the server's side");
    assert_eq!((a.seq, a.ack), (CLIENT_ISN + 1, SERVER_ISN + 1));
    let (_, d, _) = &to_server[2];
    assert_eq!(d.payload_len, 5);
    assert_eq!(
        (d.seq, d.ack),
        (CLIENT_ISN + 1, SERVER_ISN + 1),
        "the client's ACK of the cookie, translated to the server's ISN"
    );
    let to_client = to(&out, 1, CLIENT);
    let (_, r, _) = to_client.last().expect("the response");
    assert_eq!(r.payload_len, 12);
    assert_eq!(
        (r.seq, r.ack),
        (cookie.wrapping_add(1), CLIENT_ISN + 6),
        "the server's numbers shifted to the cookie's"
    );
    let states = stats["state_list"].as_array().expect("state list");
    assert_eq!(states.len(), 1, "{stats}");
}

#[test]
fn adaptive_cookies_stay_off_below_their_start() {
    let rules = "set limit states 1000
set syncookies adaptive (start 50%, end 25%)
block
pass proto tcp to 10.1.0.7 port 80
";
    let arrivals = flood_with_client(100);
    let (out, stats) = replay(rules, &arrivals, 1);
    assert_eq!(drops(&stats, "syncookie-sent"), 0, "{stats}");
    assert_eq!(stats["states_created"].as_u64(), Some(101), "{stats}");
    assert!(out.iter().all(|a| a.port == 0), "the SYNs go to the server");
}

#[test]
fn adaptive_cookies_turn_on_past_their_start() {
    // 10 states fill 10 % of 100: the 11th SYN on gets a cookie.
    let rules = "set limit states 100
set syncookies adaptive (start 10%, end 5%)
block
pass proto tcp to 10.1.0.7 port 80
";
    // One burst per SYN: the mode is decided per burst.
    let arrivals: Vec<Arrival> = (0..30u32)
        .map(|i| {
            let src = format!("198.51.100.{}", 1 + i);
            at(
                1,
                u64::from(i) * 1000,
                from_wan(&src, SERVER, &syn(2000, i)),
            )
        })
        .collect();
    let (_, stats) = replay(rules, &arrivals, 1);
    assert_eq!(stats["states_created"].as_u64(), Some(11), "{stats}");
    assert_eq!(drops(&stats, "syncookie-sent"), 19, "{stats}");
}

/// SYN-ACK rate of one worker answering a flood (replay, release build
/// when run with `--release`); printed for the README.
#[test]
fn syn_ack_rate_of_one_worker() {
    const FLOOD: u32 = 100_000;
    let arrivals: Vec<Arrival> = (0..FLOOD)
        .map(|i| {
            let src = format!("198.{}.{}.{}", 18 + (i >> 16) % 2, (i >> 8) & 255, i & 255);
            at(
                1,
                u64::from(i / 32),
                from_wan(&src, SERVER, &syn(1024 + (i % 60000) as u16, i)),
            )
        })
        .collect();
    let started = Instant::now();
    let (out, stats) = replay(RULES, &arrivals, 1);
    let took = started.elapsed();
    assert_eq!(drops(&stats, "syncookie-sent"), u64::from(FLOOD), "{stats}");
    assert_eq!(out.len(), FLOOD as usize);
    assert_eq!(stats["states_created"].as_u64(), Some(0));
    eprintln!(
        "syncookies: {FLOOD} SYN-ACKs in {took:?} through dpf --replay (whole process, pcap I/O included): {:.0}/s",
        f64::from(FLOOD) / took.as_secs_f64()
    );
}

/// The SYN-ACKs of `out` to `client` (their cookies), by source port.
fn cookie_for(out: &[Arrival], client: &str) -> u32 {
    let a = to(out, 1, client);
    assert_eq!(a.len(), 1, "one SYN-ACK to {client}");
    assert_eq!(a[0].1.flags, flags::SYN | flags::ACK);
    a[0].1.seq
}

#[test]
fn adaptive_cookies_keep_legitimate_handshakes_going_through_a_flood() {
    // The flood alone would fill the table (200 states); legitimate
    // clients come after it has started.
    const FLOOD: u32 = 600;
    const CLIENTS: u32 = 5;
    let client = |k: u32| format!("192.0.2.{}", 20 + k);
    let mut phase1 = Vec::new();
    for i in 0..FLOOD {
        let src = format!("198.51.{}.{}", 100 + i / 250, 1 + i % 250);
        phase1.push(at(
            1,
            u64::from(i) * 10,
            from_wan(&src, SERVER, &syn(1024 + i as u16, i)),
        ));
        if i >= FLOOD / 2 && i % 50 == 0 && (i - FLOOD / 2) / 50 < CLIENTS {
            let k = (i - FLOOD / 2) / 50;
            phase1.push(at(
                1,
                u64::from(i) * 10,
                from_wan(&client(k), SERVER, &syn(40000, 5000 + k)),
            ));
        }
    }
    let flood_rules = |mode: &str| {
        format!("set limit states 200\nset syncookies {mode}\nblock\npass proto tcp to 10.1.0.7 port 80\n")
    };
    // Without cookies the flood takes the table and the clients are shut
    // out: the test fails without the feature.
    let (out, stats) = replay(&flood_rules("never"), &phase1, 1);
    assert!(drops(&stats, "state-table-full") > 0, "{stats}");
    for k in 0..CLIENTS {
        let syns = to(&out, 0, SERVER)
            .into_iter()
            .filter(|(i, _, _)| i.src == addr(&client(k)))
            .count();
        assert_eq!(syns, 0, "without cookies client {k} is shut out");
    }
    // With adaptive cookies the flood stops creating states past 10 %.
    let rules = flood_rules("adaptive (start 10%, end 5%)");
    let (out, stats) = replay(&rules, &phase1, 1);
    assert_eq!(drops(&stats, "state-table-full"), 0, "{stats}");
    let created = stats["states_created"].as_u64().unwrap_or(0);
    assert!(
        (20..=60).contains(&created),
        "cookies on past 20 states: {stats}"
    );
    let mut phase2 = phase1.clone();
    for k in 0..CLIENTS {
        let cookie = cookie_for(&out, &client(k));
        let ack = tcp(40000, 80, 5001 + k, cookie.wrapping_add(1), flags::ACK);
        phase2.push(at(
            1,
            100_000 + u64::from(k),
            from_wan(&client(k), SERVER, &ack),
        ));
    }
    let (out, stats) = replay(&rules, &phase2, 1);
    for k in 0..CLIENTS {
        let syns: Vec<_> = to(&out, 0, SERVER)
            .into_iter()
            .filter(|(i, _, _)| i.src == addr(&client(k)))
            .collect();
        assert_eq!(syns.len(), 1, "client {k}'s connection is opened: {stats}");
        assert_eq!(syns[0].1.flags, flags::SYN);
        assert_eq!(syns[0].1.seq, 5000 + k);
    }
    assert_eq!(
        stats["states_created"].as_u64(),
        Some(created + u64::from(CLIENTS))
    );
    assert_eq!(drops(&stats, "syncookie-invalid"), 0, "{stats}");
}

// ---------------------------------------------------------------- synproxy

const SYNPROXY_RULES: &str = "block
pass in proto tcp to 10.1.0.7 port 80 synproxy state
pass out proto tcp
";

const WIRE_CONFIG: &str = "[eal]\nargs = []\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_null1\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n";

/// The two deployments: frames from the client on wan0 (port 1) and from
/// the server on lan0 (port 0), as each mode receives them.
#[derive(Clone, Copy)]
enum Mode {
    Router,
    Wire,
}

impl Mode {
    fn config(self) -> String {
        match self {
            Mode::Router => router_config(),
            Mode::Wire => WIRE_CONFIG.to_string(),
        }
    }

    fn client(self, l4: &L4) -> Vec<u8> {
        match self {
            Mode::Router => from_wan(CLIENT, SERVER, l4),
            // On a bridge the client talks to the server's MAC.
            Mode::Wire => frame_with(GW_MAC, HOST_MAC, 64, ip(CLIENT), ip(SERVER), l4),
        }
    }

    fn server(self, l4: &L4) -> Vec<u8> {
        match self {
            Mode::Router => from_lan(SERVER, CLIENT, l4),
            Mode::Wire => frame_with(HOST_MAC, GW_MAC, 64, ip(SERVER), ip(CLIENT), l4),
        }
    }

    fn replay(self, arrivals: &[Arrival]) -> (Vec<Arrival>, Value) {
        let r = dpf_tests::frames::replay_args(
            &self.config(),
            Some(SYNPROXY_RULES),
            2,
            arrivals,
            1,
            &["--replay-seed", "7"],
        );
        (r.out, r.stats)
    }
}

/// The client's SYN and dpf's answer: (the arrivals so far, dpf's ISN).
fn synproxy_first_leg(mode: Mode) -> (Vec<Arrival>, u32) {
    let arrivals = vec![at(1, 0, mode.client(&syn(40000, CLIENT_ISN)))];
    let (out, stats) = mode.replay(&arrivals);
    assert_eq!(out.len(), 1, "only the SYN-ACK: {out:?}");
    assert_eq!(out[0].port, 1, "back to the client");
    let (info, t) = parsed(&out[0]);
    assert_eq!(t.flags, flags::SYN | flags::ACK);
    assert_eq!((info.src, info.dst), (addr(SERVER), addr(CLIENT)));
    assert_eq!((info.sport, info.dport), (80, 40000));
    assert_eq!(t.ack, CLIENT_ISN + 1);
    assert_eq!(t.mss, Some(1460), "the client's MSS offered back");
    assert_eq!(t.wscale, None, "no window scaling");
    assert_eq!(&out[0].frame[0..6], &GW_MAC, "to the client's MAC");
    assert_eq!(drops(&stats, "synproxy"), 1, "{stats}");
    assert_eq!(stats["states_created"].as_u64(), Some(1), "{stats}");
    assert_ne!(t.seq, CLIENT_ISN, "dpf's own ISN");
    (arrivals, t.seq)
}

fn synproxy_end_to_end(mode: Mode) {
    let (mut all, isn) = synproxy_first_leg(mode);
    // Anything but the handshake's ACK is dropped (pf: synproxy).
    let bogus = tcp(40000, 80, CLIENT_ISN + 1, isn.wrapping_add(99), flags::ACK);
    all.push(at(1, 500, mode.client(&bogus)));
    let ack = tcp(40000, 80, CLIENT_ISN + 1, isn.wrapping_add(1), flags::ACK);
    all.push(at(1, 1000, mode.client(&ack)));
    let synack = L4::Tcp {
        sport: 80,
        dport: 40000,
        seq: SERVER_ISN,
        ack: CLIENT_ISN + 1,
        flags: flags::SYN | flags::ACK,
        win: 28960,
        wscale: Some(7),
        payload: Vec::new(),
    };
    all.push(at(0, 1100, mode.server(&synack)));
    let get = data(40000, 80, CLIENT_ISN + 1, isn.wrapping_add(1), b"GET /");
    all.push(at(1, 1200, mode.client(&get)));
    let resp = data(80, 40000, SERVER_ISN + 1, CLIENT_ISN + 6, b"HTTP/1.1 200");
    all.push(at(0, 1300, mode.server(&resp)));
    let more = data(40000, 80, CLIENT_ISN + 6, isn.wrapping_add(13), b"bye");
    all.push(at(1, 1400, mode.client(&more)));
    let (out, stats) = mode.replay(&all);

    assert_eq!(stats["states_created"].as_u64(), Some(1), "{stats}");
    // The client's SYN, the bogus ACK, the handshake's ACK and the
    // server's SYN-ACK are the firewall's.
    assert_eq!(drops(&stats, "synproxy"), 4, "{stats}");
    let to_server = to(&out, 0, SERVER);
    assert_eq!(to_server.len(), 4, "SYN, ACK, data, data: {to_server:?}");
    let (si, s, sframe) = &to_server[0];
    assert_eq!(s.flags, flags::SYN, "dpf's SYN to the server");
    assert_eq!(s.seq, CLIENT_ISN, "with the client's ISN");
    assert_eq!(s.mss, Some(1460));
    assert_eq!((si.src, si.sport), (addr(CLIENT), 40000));
    assert_eq!(&sframe[0..6], &HOST_MAC, "to the server's MAC");
    if let Mode::Router = mode {
        assert_eq!(&sframe[6..12], &LAN_MAC, "from lan0");
    }
    let (_, a, _) = &to_server[1];
    assert_eq!(a.flags, flags::ACK, "the ACK completing the server's side");
    assert_eq!((a.seq, a.ack), (CLIENT_ISN + 1, SERVER_ISN + 1));
    let (_, d, _) = &to_server[2];
    assert_eq!(d.payload_len, 5);
    assert_eq!(
        (d.seq, d.ack),
        (CLIENT_ISN + 1, SERVER_ISN + 1),
        "ack translated"
    );
    let (_, d, _) = &to_server[3];
    assert_eq!(d.payload_len, 3);
    assert_eq!(
        (d.seq, d.ack),
        (CLIENT_ISN + 6, SERVER_ISN + 13),
        "ack translated"
    );
    let to_client = to(&out, 1, CLIENT);
    assert_eq!(to_client.len(), 2, "SYN-ACK, response: {to_client:?}");
    let (_, r, _) = &to_client[1];
    assert_eq!(r.payload_len, 12);
    assert_eq!(
        (r.seq, r.ack),
        (isn.wrapping_add(1), CLIENT_ISN + 6),
        "the server's numbers shifted to dpf's ISN"
    );
    let states = stats["state_list"].as_array().expect("state list");
    assert_eq!(states.len(), 1, "{stats}");
}

#[test]
fn synproxy_completes_the_handshake_then_translates_router_mode() {
    synproxy_end_to_end(Mode::Router);
}

#[test]
fn synproxy_completes_the_handshake_then_translates_wire_mode() {
    synproxy_end_to_end(Mode::Wire);
}

fn synproxy_server_refuses(mode: Mode) {
    let (mut all, isn) = synproxy_first_leg(mode);
    let ack = tcp(40000, 80, CLIENT_ISN + 1, isn.wrapping_add(1), flags::ACK);
    all.push(at(1, 1000, mode.client(&ack)));
    let rst = tcp(80, 40000, 0, CLIENT_ISN + 1, flags::RST | flags::ACK);
    all.push(at(0, 1100, mode.server(&rst)));
    // Anything more of the connection finds no state.
    let late = data(40000, 80, CLIENT_ISN + 1, isn.wrapping_add(1), b"late");
    all.push(at(1, 1200, mode.client(&late)));
    let (out, stats) = mode.replay(&all);
    let to_client = to(&out, 1, CLIENT);
    assert_eq!(to_client.len(), 2, "SYN-ACK, then the RST: {to_client:?}");
    let (ri, r, rframe) = &to_client[1];
    assert_eq!(r.flags, flags::RST | flags::ACK);
    assert_eq!(
        (r.seq, r.ack),
        (isn.wrapping_add(1), CLIENT_ISN + 1),
        "in the client's numbers"
    );
    assert_eq!((ri.src, ri.sport, ri.dport), (addr(SERVER), 80, 40000));
    assert_eq!(&rframe[0..6], &GW_MAC);
    assert_eq!(
        to(&out, 0, SERVER).len(),
        1,
        "only the SYN reached the server"
    );
    assert_eq!(
        stats["state_list"].as_array().map(Vec::len),
        Some(0),
        "{stats}"
    );
    assert_eq!(stats["states_removed"].as_u64(), Some(1), "{stats}");
    assert!(
        drops(&stats, "blocked-by-rule") >= 1,
        "the late data: {stats}"
    );
}

#[test]
fn synproxy_resets_the_client_when_the_server_refuses_router_mode() {
    synproxy_server_refuses(Mode::Router);
}

#[test]
fn synproxy_resets_the_client_when_the_server_refuses_wire_mode() {
    synproxy_server_refuses(Mode::Wire);
}

#[test]
fn synproxy_to_the_box_itself_is_refused_and_counted() {
    let rules = "block\npass in proto tcp synproxy state\n";
    let l4 = syn(40000, CLIENT_ISN);
    let arrivals = vec![at(1, 0, from_wan(CLIENT, "203.0.113.1", &l4))];
    let r = dpf_tests::frames::replay_args(&router_config(), Some(rules), 2, &arrivals, 1, &[]);
    assert!(r.out.is_empty(), "{:?}", r.out);
    assert_eq!(drops(&r.stats, "synproxy"), 1, "{}", r.stats);
    assert_eq!(r.stats["states_created"].as_u64(), Some(0));
}
