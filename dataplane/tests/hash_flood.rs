//! A SYN flood aimed at the state table's buckets, through the pipeline:
//! with the flow hash keyed by a secret the attacker does not know, flows
//! built against another key make states like any others; flows aimed with
//! the secret itself (a leaked key) fill only the probe window of their
//! home bucket and the rest are dropped and counted as `state-table-full`,
//! while the states already made keep passing.
//!
//! Its own test binary, so setting the process's hash key here cannot
//! disturb other tests (every test in this file sets the same key).

#[path = "../benches/common/mod.rs"]
mod common;

use common::{tcp4_frame, Segment, BURST};
use dataplane::counters::{DropReason, Verdict};
use dataplane::flow::tcp_flags as flags;
use dataplane::flow::{proto, set_hash_secret, Addr, Af, FlowKey, HashSecret, IfIndex};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::{Shard, MAX_PROBE_BUCKETS};
use dataplane::time::Instant;
use std::sync::Arc;

/// The process's key in this binary (stands for the daemon's random one).
const SECRET: HashSecret = HashSecret([
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6c,
]);
/// 1000 index buckets.
const CAPACITY: usize = 6000;
const BUCKETS: u64 = 1000;
const SERVER: [u8; 4] = [192, 0, 2, 80];
const NOW: Instant = Instant::from_secs(1);

fn client(i: u32) -> ([u8; 4], u16) {
    (
        [10, (i >> 16) as u8, (i >> 8) as u8, i as u8],
        1024 + (i >> 24) as u16,
    )
}

fn home(i: u32, key: &HashSecret) -> u64 {
    let (addr, port) = client(i);
    let (k, _) = FlowKey::from_packet(
        Af::Inet,
        proto::TCP,
        Addr::v4(addr),
        port,
        Addr::v4(SERVER),
        443,
    );
    // The shard's home bucket: tag = low half of the hash.
    (k.symmetric_hash_with(key) as u32 as u64 * BUCKETS) >> 32
}

/// The first `count` clients whose flow's home bucket under `key` is in
/// `homes` (an offline search by someone who knows `key`).
fn aimed(key: &HashSecret, homes: std::ops::Range<u64>, count: usize) -> Vec<u32> {
    (0..1u32 << 24)
        .filter(|&i| homes.contains(&home(i, key)))
        .take(count)
        .collect()
}

fn frame(i: u32, from_server: bool, fl: u8) -> Vec<u8> {
    let (addr, port) = client(i);
    if from_server {
        let seg = Segment {
            sport: 443,
            dport: port,
            seq: 5000,
            ack: 1001,
            flags: fl,
        };
        tcp4_frame(SERVER, addr, seg)
    } else {
        let seg = Segment {
            sport: port,
            dport: 443,
            seq: 1000,
            ack: 0,
            flags: fl,
        };
        tcp4_frame(addr, SERVER, seg)
    }
}

fn pipeline(lookahead: bool) -> Pipeline {
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile("block all\npass proto tcp keep state\n", "t.conf", &env)
        .expect("ruleset");
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    let mut p = Pipeline::new(
        cfg,
        Arc::new(rules),
        Shard::new(CAPACITY, 0).expect("capacity"),
    );
    if lookahead {
        p.set_lookahead_min_states(0);
    }
    p
}

/// Sends `frames` on `port` in bursts; returns the verdicts.
fn send(p: &mut Pipeline, port: u16, mut frames: Vec<Vec<u8>>) -> Vec<Verdict> {
    let mut out = Vec::new();
    for chunk in frames.chunks_mut(BURST) {
        let mut burst: Vec<&mut [u8]> = chunk.iter_mut().map(|f| &mut f[..]).collect();
        let mut verdicts = vec![Verdict::Drop(DropReason::Unclassified); burst.len()];
        p.process_burst(&mut burst, port, NOW, &mut verdicts);
        out.extend(verdicts);
    }
    out
}

#[test]
fn aimed_syn_floods_are_harmless_or_bounded_and_counted() {
    set_hash_secret(SECRET.0);
    // Aimed against the old fixed key at 4 of the 1000 buckets: 2048 flows.
    let against_default = aimed(&HashSecret::DEFAULT, 0..4, 2048);
    // Aimed against the secret itself at one bucket: 600 other flows.
    let against_secret: Vec<u32> = aimed(&SECRET, 500..501, 700)
        .into_iter()
        .filter(|i| !against_default.contains(i))
        .take(600)
        .collect();
    assert_eq!(against_secret.len(), 600);
    for lookahead in [false, true] {
        let mut p = pipeline(lookahead);
        let v = send(
            &mut p,
            0,
            against_default
                .iter()
                .map(|&i| frame(i, false, flags::SYN))
                .collect(),
        );
        assert!(
            v.iter().all(|v| *v == Verdict::Forward(1)),
            "lookahead {lookahead}"
        );
        assert_eq!(p.counters.states_created, 2048);
        assert_eq!(p.counters.total_drops(), 0);

        let v = send(
            &mut p,
            0,
            against_secret
                .iter()
                .map(|&i| frame(i, false, flags::SYN))
                .collect(),
        );
        let passed = v.iter().filter(|v| **v == Verdict::Forward(1)).count();
        let refused = v
            .iter()
            .filter(|v| **v == Verdict::Drop(DropReason::StateTableFull))
            .count();
        // The probe window of the home bucket holds 32 buckets of 8 ways
        // (none of the 2048 earlier states live there, or a few do).
        assert!(
            passed <= MAX_PROBE_BUCKETS * 8,
            "lookahead {lookahead}: {passed}"
        );
        assert!(
            passed >= MAX_PROBE_BUCKETS * 8 - 64,
            "lookahead {lookahead}: {passed}"
        );
        assert_eq!(passed + refused, 600);
        assert_eq!(
            p.counters.drops[DropReason::StateTableFull as usize],
            refused as u64
        );
        assert_eq!(p.counters.states_created, 2048 + passed as u64);
        assert!(p.shard().len() < CAPACITY / 2);

        // Every state made, aimed or not, still answers: the server's
        // SYN+ACK of each passes back.
        let made: Vec<u32> = against_default
            .iter()
            .copied()
            .chain(
                against_secret
                    .iter()
                    .zip(&v)
                    .filter(|(_, v)| **v == Verdict::Forward(1))
                    .map(|(i, _)| *i),
            )
            .collect();
        let back = send(
            &mut p,
            1,
            made.iter()
                .map(|&i| frame(i, true, flags::SYN | flags::ACK))
                .collect(),
        );
        assert!(
            back.iter().all(|v| *v == Verdict::Forward(0)),
            "lookahead {lookahead}"
        );
    }
}
