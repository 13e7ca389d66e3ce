//! `Pipeline::process_burst` decides exactly as `Pipeline::process` does
//! packet by packet: same verdicts, same counters, same states — whatever
//! the burst boundaries, including bursts where an early packet creates,
//! kills or reuses the state a later packet of the same flow needs (the
//! burst pass looks flows up ahead of deciding them).

#[path = "../benches/common/mod.rs"]
mod common;

use common::{client_port, client_v4, tcp4_frame, udp4_frame, Segment, SERVER_PORT, SERVER_V4};
use dataplane::counters::{DropReason, Verdict};
use dataplane::flow::tcp_flags as f;
use dataplane::flow::IfIndex;
use dataplane::pipeline::{Pipeline, PipelineConfig, MAX_BURST};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::Shard;
use dataplane::time::Instant;
use proptest::prelude::*;
use std::sync::Arc;

const RULES: &str = "block all\npass out on wan0 proto tcp keep state\npass in on lan0 proto tcp flags S/SA keep state\npass in on lan0 proto udp keep state\npass out on wan0 proto udp\n";

fn pipeline(capacity: usize) -> Pipeline {
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile(RULES, "burst.conf", &env).expect("ruleset");
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    Pipeline::new(
        cfg,
        Arc::new(rules),
        Shard::new(capacity, 0).expect("shard"),
    )
}

/// One packet of the generated traffic: (port it arrives on, frame).
fn packet(kind: u8, flow: usize) -> (u16, Vec<u8>) {
    let seg = |sport, dport, seq, ack, flags| Segment {
        sport,
        dport,
        seq,
        ack,
        flags,
    };
    let c = client_v4(flow);
    let cp = client_port(flow);
    match kind % 9 {
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
            tcp4_frame(SERVER_V4, c, seg(SERVER_PORT, cp, 5001, 1001, f::ACK)),
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
        6 => (
            1,
            tcp4_frame(SERVER_V4, c, seg(SERVER_PORT, cp, 9, 0, f::SYN)),
        ),
        7 => (0, udp4_frame(c, SERVER_V4, cp, 53)),
        _ => {
            // A frame cut short: a bad header.
            let mut fr = tcp4_frame(c, SERVER_V4, seg(cp, SERVER_PORT, 1, 0, f::SYN));
            fr.truncate(30);
            (0, fr)
        }
    }
}

/// Runs `packets` through a fresh pipeline in bursts (see
/// `common::run_bursts`).
fn run_bursts(
    packets: &[(u16, Vec<u8>)],
    max_burst: usize,
    lookahead: bool,
    now: Instant,
) -> (Vec<Verdict>, Pipeline) {
    let mut p = pipeline(64);
    if lookahead {
        p.set_lookahead_min_states(0);
    }
    let (verdicts, _) = common::run_bursts(&mut p, packets, max_burst, now);
    (verdicts, p)
}

fn run_one_by_one(packets: &[(u16, Vec<u8>)], now: Instant) -> (Vec<Verdict>, Pipeline) {
    let mut p = pipeline(64);
    let (verdicts, _) = common::run_one_by_one(&mut p, packets, now);
    (verdicts, p)
}

proptest! {
    #[test]
    fn bursts_decide_like_single_packets(
        traffic in proptest::collection::vec((0u8..9, 0usize..6), 0..200),
        max_burst in 1usize..=MAX_BURST,
        lookahead: bool,
    ) {
        let packets: Vec<_> = traffic.iter().map(|&(k, flow)| packet(k, flow)).collect();
        let now = Instant::from_secs(10);
        let (v1, p1) = run_one_by_one(&packets, now);
        let (v2, p2) = run_bursts(&packets, max_burst, lookahead, now);
        prop_assert_eq!(v1, v2);
        prop_assert_eq!(p1.shard().len(), p2.shard().len());
        prop_assert_eq!(p1.counters.states_created, p2.counters.states_created);
        prop_assert_eq!(p1.counters.state_hits, p2.counters.state_hits);
        prop_assert_eq!(p1.counters.drops, p2.counters.drops);
    }
}

#[test]
fn a_handshake_inside_one_burst_passes() {
    // SYN creates the state; the SYN-ACK and ACK later in the same burst
    // must see it although the burst looked them up before it existed.
    let packets = [packet(0, 1), packet(2, 1), packet(2, 1)];
    let (verdicts, p) = run_bursts(&packets, MAX_BURST, true, Instant::from_secs(1));
    assert_eq!(verdicts, vec![Verdict::Forward(1); 3]);
    assert_eq!(p.shard().len(), 1);
    assert_eq!(p.counters.state_hits, 2);
}

#[test]
fn frames_past_max_burst_are_dropped_unclassified() {
    let mut p = pipeline(2 * MAX_BURST);
    p.set_lookahead_min_states(0);
    let mut frames: Vec<Vec<u8>> = (0..MAX_BURST + 2).map(|i| packet(7, i).1).collect();
    let mut burst: Vec<&mut [u8]> = frames.iter_mut().map(|v| v.as_mut_slice()).collect();
    let mut out = vec![Verdict::Forward(9); MAX_BURST + 2];
    p.process_burst(&mut burst, 0, Instant::from_secs(1), &mut out);
    assert!(out[..MAX_BURST].iter().all(|v| *v == Verdict::Forward(1)));
    assert_eq!(
        out[MAX_BURST..],
        [Verdict::Drop(DropReason::Unclassified); 2]
    );
}

#[test]
fn replies_of_a_burst_longer_than_a_chunk_are_kept_by_their_index() {
    // Every SYN of a 64-frame burst is answered with a RST: the answer to
    // frame i must be the one `reply(i)` gives, past the first 32 too.
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile("block return-rst in on lan0 proto tcp\n", "rst.conf", &env)
        .expect("ruleset");
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    let mut p = Pipeline::new(cfg, Arc::new(rules), Shard::new(64, 0).expect("shard"));
    p.set_lookahead_min_states(0);
    let mut frames: Vec<Vec<u8>> = (0..MAX_BURST).map(|i| packet(0, i).1).collect();
    let mut burst: Vec<&mut [u8]> = frames.iter_mut().map(|v| v.as_mut_slice()).collect();
    let mut out = vec![Verdict::Forward(9); MAX_BURST];
    p.process_burst(&mut burst, 0, Instant::from_secs(1), &mut out);
    for (i, v) in out.iter().enumerate() {
        assert!(matches!(v, Verdict::Reply(0)), "frame {i}: {v:?}");
        let reply = p.reply(i);
        // The RST goes back to frame i's client (IPv4 destination).
        assert_eq!(reply[30..34], client_v4(i), "frame {i}");
    }
}
