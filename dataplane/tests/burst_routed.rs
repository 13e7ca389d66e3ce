//! Router mode: `Pipeline::process_burst` (which takes established
//! packets through the routed lane: local and MAC checks, route, resolved
//! next hop, state tracking, MAC and TTL rewrite) decides exactly as
//! `Pipeline::process` does packet by packet — same verdicts, same frames
//! as they leave, same counters and states — on traffic that mixes
//! handshakes, established TCP and UDP both ways, closes, resets, TTL 1,
//! frames to foreign and virtual MACs (as MASTER and as BACKUP), a next
//! hop that is not resolved and frames cut short.

#[path = "../benches/common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{
    client_port, client_v4, router_tables, tcp4_frame, udp4_frame, Segment, HOST_MAC, LAN_MAC,
    SERVER_MAC, SERVER_PORT, SERVER_V4, WAN_MAC,
};
use dataplane::counters::Verdict;
use dataplane::flow::tcp_flags as f;
use dataplane::flow::IfIndex;
use dataplane::pipeline::{Pipeline, PipelineConfig, MAX_BURST};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::Shard;
use dataplane::time::Instant;
use proptest::prelude::*;

const VMAC: [u8; 6] = [0x00, 0x00, 0x5e, 0x00, 0x01, 0x01];
const FOREIGN_MAC: [u8; 6] = [0x02, 0, 0, 0, 9, 9];
/// A server behind wan0 whose MAC is not known.
const UNRESOLVED_V4: [u8; 4] = [192, 0, 2, 81];

/// The router of `common::router_tables` (vhid 1 on lan0 MASTER or not),
/// passing what lan0 starts and wan0 lets out.
fn pipeline(master: bool) -> Pipeline {
    let (routing, neighbors) = router_tables(master, 6);
    let ifs = [("lan0", IfIndex(0)), ("wan0", IfIndex(1))];
    let env = RuleEnv {
        interfaces: &ifs,
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile(
        "set limit states 64\nblock all\npass in on lan0 keep state\npass out on wan0 keep state\n",
        "routed.conf",
        &env,
    )
    .unwrap();
    let cfg = PipelineConfig {
        workers: 1,
        ..PipelineConfig::default()
    };
    let mut p = Pipeline::new(cfg, Arc::new(rules), Shard::new(64, 0).unwrap());
    p.set_router(routing, neighbors, None);
    p
}

/// Sets the destination MAC and the TTL of an IPv4 frame (header checksum
/// recomputed).
fn shape(mut fr: Vec<u8>, dst_mac: [u8; 6], ttl: u8) -> Vec<u8> {
    fr[0..6].copy_from_slice(&dst_mac);
    let mut ip = dataplane::wire::ipv4::Packet::new_unchecked(&mut fr[14..]);
    ip.set_ttl(ttl);
    ip.fill_checksum();
    fr
}

/// One packet: (port it arrives on, frame). `twist` 0-5 is a plain
/// packet; 6 has TTL 1, 7 a foreign destination MAC, 8 the virtual MAC.
fn packet(kind: u8, flow: usize, twist: u8) -> (u16, Vec<u8>) {
    let seg = |sport, dport, seq, ack, flags| Segment {
        sport,
        dport,
        seq,
        ack,
        flags,
    };
    let c = client_v4(flow);
    let cp = client_port(flow);
    let (port, fr) = match kind % 12 {
        0 => (
            0,
            tcp4_frame(c, SERVER_V4, seg(cp, SERVER_PORT, 1000, 0, f::SYN)),
        ),
        1 => (
            1,
            tcp4_frame(
                SERVER_V4,
                c,
                seg(SERVER_PORT, cp, 5000, 1001, f::SYN | f::ACK),
            ),
        ),
        2 => (
            0,
            tcp4_frame(c, SERVER_V4, seg(cp, SERVER_PORT, 1001, 5001, f::ACK)),
        ),
        3 => (
            1,
            tcp4_frame(
                SERVER_V4,
                c,
                seg(SERVER_PORT, cp, 5001, 1001, f::ACK | f::PSH),
            ),
        ),
        4 => (
            0,
            tcp4_frame(
                c,
                SERVER_V4,
                seg(cp, SERVER_PORT, 1001, 5001, f::FIN | f::ACK),
            ),
        ),
        5 => (
            0,
            tcp4_frame(c, SERVER_V4, seg(cp, SERVER_PORT, 1001, 5001, f::RST)),
        ),
        6 => (0, udp4_frame(c, SERVER_V4, cp, 53)),
        7 => (1, udp4_frame(SERVER_V4, c, 53, cp)),
        8 => (
            0,
            tcp4_frame(c, UNRESOLVED_V4, seg(cp, SERVER_PORT, 1000, 0, f::SYN)),
        ),
        9 => (
            0,
            tcp4_frame(c, UNRESOLVED_V4, seg(cp, SERVER_PORT, 1001, 7, f::ACK)),
        ),
        10 => (
            0,
            tcp4_frame(c, SERVER_V4, seg(cp, SERVER_PORT, 900_000, 5001, f::ACK)),
        ),
        _ => {
            let mut fr = tcp4_frame(c, SERVER_V4, seg(cp, SERVER_PORT, 1, 0, f::ACK));
            fr.truncate(30);
            return (0, fr);
        }
    };
    let own = if port == 0 { LAN_MAC } else { WAN_MAC };
    let (mac, ttl) = match twist {
        6 => (own, 1),
        7 => (FOREIGN_MAC, 64),
        8 => (VMAC, 64),
        _ => (own, 64),
    };
    (port, shape(fr, mac, ttl))
}

type Outcome = (Vec<Verdict>, Vec<Vec<u8>>, Pipeline);

fn run_bursts(packets: &[(u16, Vec<u8>)], max_burst: usize, master: bool, now: Instant) -> Outcome {
    let mut p = pipeline(master);
    let (verdicts, frames) = common::run_bursts(&mut p, packets, max_burst, now);
    (verdicts, frames, p)
}

fn run_one_by_one(packets: &[(u16, Vec<u8>)], master: bool, now: Instant) -> Outcome {
    let mut p = pipeline(master);
    let (verdicts, frames) = common::run_one_by_one(&mut p, packets, now);
    (verdicts, frames, p)
}

proptest! {
    #[test]
    fn routed_bursts_decide_like_single_packets(
        traffic in proptest::collection::vec((0u8..12, 0usize..6, 0u8..9), 0..200),
        max_burst in 1usize..=MAX_BURST,
        master: bool,
    ) {
        let packets: Vec<_> = traffic.iter().map(|&(k, flow, t)| packet(k, flow, t)).collect();
        let now = Instant::from_secs(10);
        let (v1, f1, p1) = run_one_by_one(&packets, master, now);
        let (v2, f2, p2) = run_bursts(&packets, max_burst, master, now);
        prop_assert_eq!(v1, v2);
        prop_assert_eq!(f1, f2);
        prop_assert_eq!(p1.shard().len(), p2.shard().len());
        prop_assert_eq!(p1.counters.states_created, p2.counters.states_created);
        prop_assert_eq!(p1.counters.state_hits, p2.counters.state_hits);
        prop_assert_eq!(p1.counters.forwarded, p2.counters.forwarded);
        prop_assert_eq!(p1.counters.drops, p2.counters.drops);
    }
}

#[test]
fn an_established_routed_flow_is_rewritten_for_its_next_hop() {
    // Handshake, then the client's ACK and the server's data: forwarded
    // with our MAC as source, the next hop's as destination, TTL 63.
    let packets = [
        packet(0, 1, 0),
        packet(1, 1, 0),
        packet(2, 1, 0),
        packet(3, 1, 0),
    ];
    let (verdicts, frames, p) = run_bursts(&packets, MAX_BURST, false, Instant::from_secs(1));
    assert_eq!(
        verdicts,
        [
            Verdict::Forward(1),
            Verdict::Forward(0),
            Verdict::Forward(1),
            Verdict::Forward(0)
        ]
    );
    assert_eq!(frames[2][0..6], SERVER_MAC);
    assert_eq!(frames[2][6..12], WAN_MAC);
    assert_eq!(frames[2][22], 63);
    assert_eq!(frames[3][0..6], HOST_MAC);
    assert_eq!(frames[3][6..12], LAN_MAC);
    assert_eq!(p.counters.state_hits, 3);
    // The IPv4 header checksum still holds after the TTL decrement.
    let sum: u32 = frames[3][14..34]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
}
