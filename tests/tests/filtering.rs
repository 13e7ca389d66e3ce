//! Golden tests of stateful filtering through the real `dpf` binary in
//! replay mode (`dpf --replay`): the configured rules and pipelines see the
//! packets in exact order, with packet timestamps as the clock, and every
//! forwarded packet is written out with its egress port. Wire mode: lan0
//! (port 0) <-> wan0 (port 1).

use dpf_tests::frames::{flags, frame, ip_packet, read_pcapng, tcp, write_pcapng, Arrival, L4};
use dpf_tests::*;
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

const RULES: &str = "\
# dpf golden test ruleset
block in all
pass in on lan0 proto tcp to port { 80, 443 }
pass in on lan0 proto udp to port 53
pass in on lan0 inet proto icmp icmp-type echoreq
pass in on lan0 inet6 proto icmp6 icmp6-type echoreq
pass in quick on wan0 proto tcp to port 22
block in on wan0 proto tcp to port 22
";

const LAN: u32 = 0;
const WAN: u32 = 1;

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

/// Runs `arrivals` through dpf with `workers` pipelines; returns the
/// forwarded packets and dpf's counters.
fn replay(arrivals: &[Arrival], workers: u16) -> (Vec<Arrival>, Value) {
    replay_with(RULES, arrivals, workers)
}

fn replay_with(rules: &str, arrivals: &[Arrival], workers: u16) -> (Vec<Arrival>, Value) {
    let dir = scratch();
    std::fs::write(dir.path().join("pf.conf"), rules).unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        "[eal]\nargs = []\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_null0\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_null1\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n",
    )
    .unwrap();
    let input = dir.path().join("in.pcapng");
    let output = dir.path().join("out.pcapng");
    write_pcapng(&input, 2, arrivals);
    let workers = workers.to_string();
    let out = run_dpf(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--replay",
            input.to_str().unwrap(),
            "--replay-out",
            output.to_str().unwrap(),
            "--replay-workers",
            &workers,
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    expect_success(&out).unwrap();
    let stats: Value = serde_json::from_slice(&out.stdout).expect("replay prints JSON");
    (read_pcapng(&output), stats)
}

fn drops(stats: &Value, reason: &str) -> u64 {
    stats["drops"][reason].as_u64().unwrap()
}

/// The forwarded copy of `a` (egress = the other port, bytes unchanged).
fn forwarded(out: &[Arrival], a: &Arrival) -> bool {
    out.iter()
        .any(|o| o.port == 1 - a.port && o.frame == a.frame && o.at == a.at)
}

struct Conn {
    client: IpAddr,
    server: IpAddr,
    cport: u16,
    sport: u16,
    cseq: u32,
    sseq: u32,
}

impl Conn {
    fn c2s(&self, seq_off: u32, ack_off: u32, fl: u8, payload: &[u8]) -> Vec<u8> {
        let mut l4 = tcp(
            self.cport,
            self.sport,
            self.cseq.wrapping_add(seq_off),
            self.sseq.wrapping_add(ack_off),
            fl,
        );
        if let L4::Tcp {
            payload: p, wscale, ..
        } = &mut l4
        {
            *p = payload.to_vec();
            if fl & flags::SYN != 0 {
                *wscale = Some(7);
            }
        }
        frame(self.client, self.server, &l4)
    }
    fn s2c(&self, seq_off: u32, ack_off: u32, fl: u8, payload: &[u8]) -> Vec<u8> {
        let mut l4 = tcp(
            self.sport,
            self.cport,
            self.sseq.wrapping_add(seq_off),
            self.cseq.wrapping_add(ack_off),
            fl,
        );
        if let L4::Tcp {
            payload: p, wscale, ..
        } = &mut l4
        {
            *p = payload.to_vec();
            if fl & flags::SYN != 0 {
                *wscale = Some(7);
            }
        }
        frame(self.server, self.client, &l4)
    }
    /// Handshake + one data segment each way (all must pass).
    fn open(&self, t0: u64) -> Vec<Arrival> {
        vec![
            at(LAN, t0, self.c2s(0, 0, flags::SYN, b"")),
            at(WAN, t0 + 1, self.s2c(0, 1, flags::SYN | flags::ACK, b"")),
            at(LAN, t0 + 2, self.c2s(1, 1, flags::ACK, b"")),
            at(
                LAN,
                t0 + 3,
                self.c2s(1, 1, flags::ACK | flags::PSH, b"GET / HTTP/1.0\r\n\r\n"),
            ),
            at(
                WAN,
                t0 + 4,
                self.s2c(
                    1,
                    19,
                    flags::ACK | flags::PSH,
                    b"HTTP/1.0 200 OK\r\n\r\nhello",
                ),
            ),
        ]
    }
}

fn v4_conn() -> Conn {
    Conn {
        client: ip("10.0.0.2"),
        server: ip("198.19.0.1"),
        cport: 40000,
        sport: 80,
        cseq: 1_000_000,
        sseq: 3_000_000_000,
    }
}

#[test]
fn outbound_tcp_passes_both_ways_and_unsolicited_inbound_is_blocked() {
    let c = v4_conn();
    let mut input = c.open(0);
    let close = vec![
        at(LAN, 10, c.c2s(19, 25, flags::FIN | flags::ACK, b"")),
        at(WAN, 11, c.s2c(25, 20, flags::FIN | flags::ACK, b"")),
        at(LAN, 12, c.c2s(20, 26, flags::ACK, b"")),
    ];
    input.extend(close);
    let unsolicited = at(
        WAN,
        20,
        frame(
            ip("198.19.0.9"),
            ip("10.0.0.2"),
            &tcp(5555, 80, 1, 0, flags::SYN),
        ),
    );
    input.push(unsolicited.clone());
    let (out, stats) = replay(&input, 1);
    for a in &input[..8] {
        assert!(
            forwarded(&out, a),
            "packet at {:?} on port {} was not forwarded",
            a.at,
            a.port
        );
    }
    assert!(
        !forwarded(&out, &unsolicited),
        "unsolicited inbound SYN passed"
    );
    assert_eq!(out.len(), 8);
    assert_eq!(drops(&stats, "blocked-by-rule"), 1);
    assert_eq!(stats["states_created"], 1);
    let st = &stats["state_list"][0];
    // Both sides saw FIN and the last ACK: pf's FIN_WAIT_2 (9) / TIME_WAIT (10) range.
    assert!(
        st["src_state"].as_u64().unwrap() >= 9 && st["dst_state"].as_u64().unwrap() >= 9,
        "{st}"
    );
    assert_eq!(st["timeout"], "tcp.closed");
}

#[test]
fn out_of_window_segment_and_spoofed_rst_are_dropped_and_the_connection_survives() {
    let c = v4_conn();
    let mut input = c.open(0);
    // Server data far beyond the client's window.
    let oow = at(
        WAN,
        10,
        c.s2c(1 + 900_000_000, 19, flags::ACK | flags::PSH, b"evil"),
    );
    // An RST with a sequence number outside the window (a blind spoof).
    let spoofed_rst = at(WAN, 11, c.s2c(1 + 200_000_000, 0, flags::RST, b""));
    // The real conversation goes on afterwards.
    let later = at(LAN, 12, c.c2s(19, 25, flags::ACK | flags::PSH, b"more"));
    input.extend([oow.clone(), spoofed_rst.clone(), later.clone()]);
    let (out, stats) = replay(&input, 1);
    assert!(!forwarded(&out, &oow), "out-of-window segment passed");
    assert!(!forwarded(&out, &spoofed_rst), "spoofed RST passed");
    assert!(forwarded(&out, &later), "the connection did not survive");
    assert_eq!(drops(&stats, "state-mismatch"), 1);
    assert_eq!(drops(&stats, "bad-rst"), 1);
    // An in-window RST closes it.
    let c = v4_conn();
    let mut input = c.open(0);
    let rst = at(WAN, 10, c.s2c(25, 0, flags::RST, b""));
    input.push(rst.clone());
    let (out, stats) = replay(&input, 1);
    assert!(forwarded(&out, &rst));
    assert_eq!(stats["state_list"][0]["timeout"], "tcp.closed");
}

#[test]
fn quick_rule_beats_a_later_block() {
    let ssh = at(
        WAN,
        0,
        frame(
            ip("198.19.0.9"),
            ip("10.0.0.2"),
            &tcp(5555, 22, 1, 0, flags::SYN),
        ),
    );
    let telnet = at(
        WAN,
        1,
        frame(
            ip("198.19.0.9"),
            ip("10.0.0.2"),
            &tcp(5556, 23, 1, 0, flags::SYN),
        ),
    );
    let (out, _) = replay(&[ssh.clone(), telnet.clone()], 1);
    assert!(forwarded(&out, &ssh), "quick pass lost to a later block");
    assert!(!forwarded(&out, &telnet));
}

#[test]
fn udp_and_icmp_pass_by_state_and_pmtu_errors_pass_with_their_state() {
    let (client, server, router) = (ip("10.0.0.2"), ip("198.19.0.53"), ip("198.19.0.254"));
    let q = at(
        LAN,
        0,
        frame(
            client,
            server,
            &L4::Udp {
                sport: 5353,
                dport: 53,
                payload: b"q".to_vec(),
            },
        ),
    );
    let r = at(
        WAN,
        1,
        frame(
            server,
            client,
            &L4::Udp {
                sport: 53,
                dport: 5353,
                payload: b"r".to_vec(),
            },
        ),
    );
    let unsolicited_udp = at(
        WAN,
        2,
        frame(
            server,
            client,
            &L4::Udp {
                sport: 53,
                dport: 5354,
                payload: b"x".to_vec(),
            },
        ),
    );
    let ping = at(
        LAN,
        3,
        frame(
            client,
            server,
            &L4::Echo {
                request: true,
                id: 7,
                seq: 1,
            },
        ),
    );
    let pong = at(
        WAN,
        4,
        frame(
            server,
            client,
            &L4::Echo {
                request: false,
                id: 7,
                seq: 1,
            },
        ),
    );
    let inbound_ping = at(
        WAN,
        5,
        frame(
            server,
            client,
            &L4::Echo {
                request: true,
                id: 8,
                seq: 1,
            },
        ),
    );
    // PMTU discovery: a router on the far side says the client's segment
    // was too big; the error quotes that segment and must reach the client.
    let c = Conn {
        server: ip("198.19.0.1"),
        ..v4_conn()
    };
    let mut input = vec![
        q.clone(),
        r.clone(),
        unsolicited_udp.clone(),
        ping.clone(),
        pong.clone(),
        inbound_ping.clone(),
    ];
    input.extend(c.open(10));
    let big = ip_packet(
        c.client,
        c.server,
        &tcp(c.cport, c.sport, c.cseq + 19, c.sseq + 25, flags::ACK),
    );
    let too_big = at(
        WAN,
        20,
        frame(
            router,
            client,
            &L4::TooBig {
                mtu: 1400,
                quoted: big,
            },
        ),
    );
    let unrelated = ip_packet(client, ip("198.19.9.9"), &tcp(1, 2, 3, 4, flags::ACK));
    let bogus_error = at(
        WAN,
        21,
        frame(
            router,
            client,
            &L4::TooBig {
                mtu: 1400,
                quoted: unrelated,
            },
        ),
    );
    input.push(too_big.clone());
    input.push(bogus_error.clone());
    let (out, _) = replay(&input, 1);
    for a in [&q, &r, &ping, &pong, &too_big] {
        assert!(forwarded(&out, a), "packet at {:?} was not forwarded", a.at);
    }
    for a in [&unsolicited_udp, &inbound_ping, &bogus_error] {
        assert!(
            !forwarded(&out, a),
            "packet at {:?} passed without a state",
            a.at
        );
    }
}

#[test]
fn states_expire_after_their_timeout() {
    let (client, server) = (ip("10.0.0.2"), ip("198.19.0.53"));
    let udp = |p: u32, ms: u64, a: IpAddr, b: IpAddr, sp: u16, dp: u16| {
        at(
            p,
            ms,
            frame(
                a,
                b,
                &L4::Udp {
                    sport: sp,
                    dport: dp,
                    payload: b"x".to_vec(),
                },
            ),
        )
    };
    let q = udp(LAN, 0, client, server, 5353, 53);
    let r = udp(WAN, 1_000, server, client, 53, 5353);
    // Both sides have sent more than one packet: udp.multiple (60 s).
    let q2 = udp(LAN, 2_000, client, server, 5353, 53);
    // Still alive 50 s after the last packet...
    let r2 = udp(WAN, 52_000, server, client, 53, 5353);
    // ...gone 61 s after it. The expiry sweep runs on the owning core as
    // packets arrive, so a few unrelated packets give it time to run.
    let mut input = vec![q.clone(), r.clone(), q2.clone(), r2.clone()];
    for i in 0..64u16 {
        input.push(udp(
            LAN,
            113_000 + i as u64,
            ip("10.0.0.9"),
            server,
            6000 + i,
            53,
        ));
    }
    let late = udp(WAN, 114_000, server, client, 53, 5353);
    input.push(late.clone());
    let (out, stats) = replay(&input, 1);
    assert!(forwarded(&out, &r), "{stats}");
    assert!(forwarded(&out, &r2), "{stats}");
    assert!(
        !forwarded(&out, &late),
        "a reply 62 s after the last packet passed"
    );
    // The short udp.single timeout (30 s) applies while one side has sent
    // only one packet: a second exchange 31 s later finds no state.
    let input = vec![
        udp(LAN, 0, client, server, 5353, 53),
        udp(WAN, 1_000, server, client, 53, 5353),
        udp(WAN, 32_000, server, client, 53, 5353),
    ];
    let (out, _) = replay(&input, 1);
    assert!(forwarded(&out, &input[1]));
    assert!(
        !forwarded(&out, &input[2]),
        "udp.single did not expire the state"
    );
    assert!(stats["states_removed"].as_u64().unwrap() >= 1, "{stats}");
}

#[test]
fn ipv6_tcp_passes_by_state_and_unsolicited_inbound_is_blocked() {
    let c = Conn {
        client: ip("2001:db8:1::2"),
        server: ip("2001:2::80"),
        cport: 41000,
        sport: 443,
        cseq: 77,
        sseq: 4_000_000_000,
    };
    let mut input = c.open(0);
    let spoof = at(WAN, 9, c.s2c(1 + 1_500_000_000, 19, flags::ACK, b"oops"));
    let unsolicited = at(
        WAN,
        10,
        frame(
            ip("2001:2::81"),
            ip("2001:db8:1::2"),
            &tcp(1, 443, 5, 0, flags::SYN),
        ),
    );
    let ping6 = at(
        LAN,
        11,
        frame(
            c.client,
            c.server,
            &L4::Echo {
                request: true,
                id: 1,
                seq: 1,
            },
        ),
    );
    let pong6 = at(
        WAN,
        12,
        frame(
            c.server,
            c.client,
            &L4::Echo {
                request: false,
                id: 1,
                seq: 1,
            },
        ),
    );
    input.extend([
        spoof.clone(),
        unsolicited.clone(),
        ping6.clone(),
        pong6.clone(),
    ]);
    let (out, stats) = replay(&input, 1);
    for a in input.iter().take(5).chain([&ping6, &pong6]) {
        assert!(
            forwarded(&out, a),
            "IPv6 packet at {:?} was not forwarded",
            a.at
        );
    }
    assert!(!forwarded(&out, &spoof));
    assert!(!forwarded(&out, &unsolicited));
    assert_eq!(stats["states_created"], 2);
}

#[test]
fn two_workers_find_one_state_when_directions_arrive_on_different_workers() {
    // In replay mode port 0 arrives on worker 0 and port 1 on worker 1:
    // the two directions of every flow start on different workers.
    let mut input = Vec::new();
    for i in 0..20u16 {
        let c = Conn {
            client: IpAddr::V4([10, 0, 1, i as u8 + 1].into()),
            cport: 30000 + i,
            ..v4_conn()
        };
        input.extend(c.open(i as u64 * 10));
    }
    let (out, stats) = replay(&input, 2);
    assert_eq!(out.len(), input.len(), "every packet of every flow passes");
    assert_eq!(stats["states_created"], 20, "one state per connection");
    assert_eq!(stats["state_list"].as_array().unwrap().len(), 20);
    assert!(
        stats["handed_off"].as_u64().unwrap() > 0,
        "no packet crossed workers: {stats}"
    );
    let workers: std::collections::BTreeSet<u64> = stats["state_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["worker"].as_u64().unwrap())
        .collect();
    assert_eq!(workers.len(), 2, "states live on both workers");
    assert_eq!(stats["dropped"], 0);
}

#[test]
fn block_return_answers_tcp_with_rst_and_udp_with_icmp_unreachable() {
    use dataplane::flow::{Direction, IfIndex, L4Info};
    use dataplane::wire::{classify, FrameKind};
    let rules = "block in all\nblock return in on wan0 proto { tcp, udp } to port { 23, 161 }\n";
    let (outside, inside) = (ip("198.19.0.9"), ip("10.0.0.2"));
    let syn = at(
        WAN,
        0,
        frame(outside, inside, &tcp(5555, 23, 1000, 0, flags::SYN)),
    );
    let dgram = at(
        WAN,
        1,
        frame(
            outside,
            inside,
            &L4::Udp {
                sport: 5556,
                dport: 161,
                payload: b"get".to_vec(),
            },
        ),
    );
    let silent = at(
        WAN,
        2,
        frame(outside, inside, &tcp(5557, 25, 1, 0, flags::SYN)),
    );
    let (out, stats) = replay_with(rules, &[syn, dgram, silent], 1);
    assert_eq!(
        out.len(),
        2,
        "one answer each for the two block-return packets, none for block drop"
    );
    assert_eq!(stats["block_returns"], 2);
    assert_eq!(drops(&stats, "blocked-by-rule"), 3);
    for a in &out {
        assert_eq!(a.port, WAN, "answers leave through the receiving port");
    }
    let rst = classify(&out[0].frame, IfIndex(1), Direction::In).unwrap();
    let FrameKind::Ip { info, .. } = rst.kind else {
        panic!("RST is not IP")
    };
    assert_eq!(
        (info.src, info.dst),
        (
            dataplane::flow::Addr::v4([10, 0, 0, 2]),
            dataplane::flow::Addr::v4([198, 19, 0, 9])
        )
    );
    let L4Info::Tcp(t) = info.l4 else {
        panic!("not TCP")
    };
    assert_eq!((info.sport, info.dport), (23, 5555));
    assert_eq!(t.flags & flags::RST, flags::RST);
    assert_eq!(t.ack, 1001, "RST acknowledges the SYN");
    let unreach = classify(&out[1].frame, IfIndex(1), Direction::In).unwrap();
    let FrameKind::Ip { info, .. } = unreach.kind else {
        panic!("ICMP is not IP")
    };
    let L4Info::Icmp(icmp) = info.l4 else {
        panic!("not ICMP")
    };
    assert_eq!((icmp.icmp_type, icmp.code), (3, 3), "port unreachable");
    let q = icmp.quoted.expect("quotes the datagram");
    assert_eq!((q.sport, q.dport), (5556, 161));
}

/// The same decisions through real DPDK ports (net_pcap in, net_pcap out),
/// one worker: allowed packets come out in order and unchanged, blocked,
/// malformed and fragmented ones do not (`set reassemble no`: a fragment
/// is dropped at once; tests/tests/fragments.rs reassembles).
#[test]
fn through_net_pcap_ports_only_allowed_packets_come_out() {
    let dir = scratch();
    std::fs::write(
        dir.path().join("pf.conf"),
        format!("set reassemble no\n{RULES}"),
    )
    .unwrap();
    let (client, server) = (ip("10.0.0.2"), ip("198.19.0.1"));
    let mut allowed = Vec::new();
    let mut input = Vec::new();
    for i in 0..200u16 {
        let pass = frame(client, server, &tcp(20000 + i, 80, 7, 0, flags::SYN));
        let blocked = frame(client, server, &tcp(20000 + i, 25, 7, 0, flags::SYN));
        input.push(pass.clone());
        input.push(blocked);
        allowed.push(pass);
    }
    let mut truncated = frame(client, server, &tcp(1, 80, 7, 0, flags::SYN));
    truncated.truncate(30);
    input.push(truncated);
    let mut fragment = frame(
        client,
        server,
        &L4::Udp {
            sport: 1,
            dport: 53,
            payload: vec![0; 16],
        },
    );
    fragment[20] = 0x20; // IPv4 MF set: a first fragment
    let sum = {
        fragment[24] = 0;
        fragment[25] = 0;
        inet_checksum(&fragment[14..34])
    };
    fragment[24..26].copy_from_slice(&sum.to_be_bytes());
    input.push(fragment);
    let lan_in = dir.path().join("lan-in.pcap");
    let wan_out = dir.path().join("wan-out.pcap");
    let lan_out = dir.path().join("lan-out.pcap");
    write_pcap(&lan_in, &input).unwrap();
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nargs = {}\n[dataplane]\nrules = \"pf.conf\"\n[[port]]\nname = \"lan0\"\ndevice = \"net_pcap0,rx_pcap={},tx_pcap={}\"\n[[port]]\nname = \"wan0\"\ndevice = \"net_pcap1,tx_pcap={}\"\n[wire]\npairs = [[\"lan0\", \"wan0\"]]\n[control]\nsocket = \"{}\"\n",
            eal_args("filter", 256, "0@0,1@1"),
            lan_in.display(),
            lan_out.display(),
            wan_out.display(),
            dir.path().join("dpf.sock").display()
        ),
    )
    .unwrap();
    let out = run_dpf(
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--exit-when-idle",
            "400",
            "--json-stats",
        ],
        Duration::from_secs(60),
    )
    .unwrap();
    expect_success(&out).unwrap();
    let stats: Value = serde_json::from_slice(
        out.stdout
            .split(|b| *b == b'\n')
            .find(|l| !l.is_empty())
            .unwrap(),
    )
    .unwrap();
    let got = read_pcap(&wan_out).unwrap();
    assert_eq!(
        got, allowed,
        "exactly the allowed SYNs, in order, unchanged"
    );
    assert_eq!(stats["states"], 200);
    assert_eq!(drops(&stats, "blocked-by-rule"), 200);
    assert_eq!(drops(&stats, "bad-header"), 1);
    assert_eq!(drops(&stats, "fragment"), 1);
}
