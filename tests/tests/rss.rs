//! Flows owned by the queue a NIC's symmetric RSS gives them, through the
//! real `dpf --replay --replay-rss` (each packet reaches the worker of the
//! queue its Toeplitz hash picks, as on a multi-queue NIC):
//! - established TCP in both directions is never handed to another worker
//!   (with 2 and 4 workers), where placement by port hands most packets
//!   over;
//! - every state lives on the worker the NIC's placement names;
//! - with `nat-to`, the translated port is chosen so that the replies'
//!   queue is the connection's worker: no handoff either;
//! - an ICMP error is an exception the NIC cannot place: it is handed to
//!   the worker of the flow it quotes, which matches it to its state.

use dataplane::flow::{Addr, Af, Direction, IfIndex, L4Info};
use dataplane::rss::RssPlacement;
use dataplane::wire::{classify, FrameKind};
use dpf_tests::frames::{flags, frame_with, ip_packet, tcp, Arrival, L4};
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const WAN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const HOST_MAC: [u8; 6] = [2, 0xaa, 0, 0, 0, 7];
const GW_MAC: [u8; 6] = [2, 0xfe, 0, 0, 0, 1];

const RULES: &str = "\
block all
pass in on lan0 inet proto tcp from 10.1.0.0/24
pass out on wan0 inet proto tcp
pass in on wan0 inet proto icmp
";

const NAT_RULES: &str = "\
block all
match out on wan0 inet from 10.1.0.0/24 nat-to 203.0.113.1
pass in on lan0 inet proto tcp from 10.1.0.0/24
pass out on wan0 inet proto tcp
";

const FLOWS: u16 = 300;

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

/// Flow `i`: 10.1.0.7:(20000 + i) to 198.51.100.(1 + i % 200):80.
fn client(i: u16) -> (String, u16, String) {
    (
        "10.1.0.7".to_string(),
        20000 + i,
        format!("198.51.100.{}", 1 + i % 200),
    )
}

/// The counters a failure message shows.
fn brief(stats: &Value) -> String {
    let drops: Vec<String> = stats["drops"]
        .as_object()
        .map(|d| {
            d.iter()
                .filter(|(_, v)| v.as_u64() != Some(0))
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "forwarded {} handed_off {} states {} drops [{}]",
        stats["forwarded"],
        stats["handed_off"],
        stats["states"],
        drops.join(" ")
    )
}

fn lan(src: &str, dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(HOST_MAC, LAN_MAC, 64, ip(src), ip(dst), l4)
}

fn wan(src: &str, dst: &str, l4: &L4) -> Vec<u8> {
    frame_with(GW_MAC, WAN_MAC, 64, ip(src), ip(dst), l4)
}

/// Handshake and two data segments each way for every flow; `outside`
/// gives the address and port the server sees for flow `i`.
fn conversations(outside: &dyn Fn(u16) -> (String, u16)) -> Vec<Arrival> {
    let mut a = Vec::new();
    let mut t = 0;
    let mut step = |a: &mut Vec<Arrival>, port: u32, f: Vec<u8>| {
        t += 1;
        a.push(at(port, t, f));
    };
    for i in 0..FLOWS {
        let (c, cp, s) = client(i);
        step(&mut a, 0, lan(&c, &s, &tcp(cp, 80, 1000, 0, flags::SYN)));
    }
    for i in 0..FLOWS {
        let (_, _, s) = client(i);
        let (o, op) = outside(i);
        let synack = tcp(80, op, 5000, 1001, flags::SYN | flags::ACK);
        step(&mut a, 1, wan(&s, &o, &synack));
    }
    for round in 0..2u32 {
        for i in 0..FLOWS {
            let (c, cp, s) = client(i);
            let (o, op) = outside(i);
            let data = |seq, ack, from_client| L4::Tcp {
                sport: if from_client { cp } else { 80 },
                dport: if from_client { 80 } else { op },
                seq,
                ack,
                flags: flags::ACK,
                win: 65535,
                wscale: None,
                payload: vec![0x55; 100],
            };
            step(
                &mut a,
                0,
                lan(&c, &s, &data(1001 + 100 * round, 5001 + 100 * round, true)),
            );
            step(
                &mut a,
                1,
                wan(&s, &o, &data(5001 + 100 * round, 1101 + 100 * round, false)),
            );
        }
    }
    a
}

fn run(rules: &str, arrivals: &[Arrival], workers: u16, rss: bool) -> (Vec<Arrival>, Value) {
    let mut extra = vec!["--replay-seed", "11"];
    if rss {
        extra.push("--replay-rss");
    }
    let r = dpf_tests::frames::replay_args(
        &dpf_tests::frames::router_config("10.1.0.7", "02:aa:00:00:00:07", ""),
        Some(rules),
        2,
        arrivals,
        workers,
        &extra,
    );
    assert!(r.output.status.success(), "{:?}", r.output);
    (r.out, r.stats)
}

fn no_nat(i: u16) -> (String, u16) {
    let (c, cp, _) = client(i);
    (c, cp)
}

#[test]
fn established_traffic_stays_on_the_worker_rss_gives_it() {
    let arrivals = conversations(&no_nat);
    let total = arrivals.len() as u64;
    for workers in [2u16, 4] {
        let (out, stats) = run(RULES, &arrivals, workers, true);
        assert_eq!(
            out.len() as u64,
            total,
            "every packet forwarded: {}",
            brief(&stats)
        );
        let handed = stats["handed_off"].as_u64().unwrap();
        assert!(
            handed * 100 < total,
            "{workers} workers: {handed} of {total} handed off"
        );
        // Each state is on the worker of its flow's queue.
        let rss = RssPlacement::default_for(workers, 64);
        let list = stats["state_list"].as_array().unwrap();
        assert_eq!(list.len(), usize::from(FLOWS));
        let mut per_worker = vec![0; usize::from(workers)];
        for i in 0..FLOWS {
            let (c, cp, s) = client(i);
            let (key, _) = dataplane::flow::FlowKey::from_packet(
                Af::Inet,
                6,
                Addr::v4(c.parse::<std::net::Ipv4Addr>().unwrap().octets()),
                cp,
                Addr::v4(s.parse::<std::net::Ipv4Addr>().unwrap().octets()),
                80,
            );
            let want = rss.owner(&key);
            per_worker[want] += 1;
            let st = list
                .iter()
                .find(|st| st["sport"] == cp)
                .unwrap_or_else(|| panic!("no state for flow {i}"));
            assert_eq!(st["worker"], want, "flow {i}: {st}");
            assert_eq!(st["timeout"], "tcp.established", "flow {i}: {st}");
        }
        assert!(per_worker.iter().all(|n| *n > 0), "{per_worker:?}");
        // Placement by port, as without RSS: most packets change worker.
        let (_, by_port) = run(RULES, &arrivals, workers, false);
        let handed_by_port = by_port["handed_off"].as_u64().unwrap();
        assert!(
            handed_by_port * 4 > total,
            "{workers} workers by port: only {handed_by_port} of {total} handed off"
        );
    }
}

#[test]
fn nat_picks_ports_whose_replies_land_on_the_connection_worker() {
    // The SYNs alone show the translated ports (the run is seeded, so the
    // full run picks the same ones).
    let syns: Vec<Arrival> = conversations(&no_nat)
        .into_iter()
        .take(usize::from(FLOWS))
        .collect();
    let (out, _) = run(NAT_RULES, &syns, 4, true);
    assert_eq!(out.len(), usize::from(FLOWS));
    // Output in input order: the i-th frame is flow i's SYN.
    let mut ports = Vec::new();
    for (i, a) in out.iter().enumerate() {
        let c = classify(&a.frame, IfIndex(1), Direction::Out).unwrap();
        let FrameKind::Ip { info, .. } = c.kind else {
            panic!("not IP")
        };
        assert_eq!(info.src, Addr::v4([203, 0, 113, 1]));
        assert_eq!(info.dport, 80, "flow {i}");
        ports.push(info.sport);
    }
    let outside = |i: u16| ("203.0.113.1".to_string(), ports[usize::from(i)]);
    let arrivals = conversations(&outside);
    let total = arrivals.len() as u64;
    let (out, stats) = run(NAT_RULES, &arrivals, 4, true);
    let handed = stats["handed_off"].as_u64().unwrap();
    assert!(
        handed * 100 < total,
        "{handed} of {total} handed off: {}",
        brief(&stats)
    );
    assert!(
        out.len() as u64 > total * 9 / 10,
        "{} of {total} forwarded: {stats}",
        out.len()
    );
}

#[test]
fn an_icmp_error_goes_to_the_worker_of_the_flow_it_quotes() {
    let mut arrivals: Vec<Arrival> = conversations(&no_nat)
        .into_iter()
        .take(usize::from(FLOWS))
        .collect();
    // A router on the WAN side says a flow's SYN was too big: the first
    // flow whose error a NIC would put on another worker's queue (it
    // hashes the error's own addresses).
    let rss = RssPlacement::default_for(4, 64);
    let (err, arrival_queue, quoted_owner) = (0..FLOWS)
        .find_map(|i| {
            let (c, cp, s) = client(i);
            let quoted = ip_packet(ip(&c), ip(&s), &tcp(cp, 80, 1000, 0, flags::SYN));
            let err = wan(
                &format!("192.0.2.{}", 1 + i % 250),
                &c,
                &L4::TooBig { mtu: 1280, quoted },
            );
            let (key, _) = dataplane::flow::FlowKey::from_packet(
                Af::Inet,
                6,
                Addr::v4(c.parse::<std::net::Ipv4Addr>().unwrap().octets()),
                cp,
                Addr::v4(s.parse::<std::net::Ipv4Addr>().unwrap().octets()),
                80,
            );
            let owner = rss.owner(&key);
            let queue = usize::from(rss.queue_of_frame(&err));
            (queue != owner).then_some((err, queue, owner))
        })
        .expect("a flow whose error lands elsewhere");
    arrivals.push(at(1, 100_000, err));
    let (out, stats) = run(RULES, &arrivals, 4, true);
    let last = out.last().unwrap();
    let c2 = classify(&last.frame, IfIndex(0), Direction::Out).unwrap();
    let FrameKind::Ip { info, .. } = c2.kind else {
        panic!("not IP")
    };
    assert!(
        matches!(info.l4, L4Info::Icmp(i) if i.is_error),
        "the ICMP error was forwarded to the client: {}",
        brief(&stats)
    );
    let handed = stats["handed_off"].as_u64().unwrap();
    assert_eq!(
        handed,
        1,
        "queue {arrival_queue}, owner {quoted_owner}: {}",
        brief(&stats)
    );
}
