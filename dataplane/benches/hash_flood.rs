//! A SYN flood aimed at the state table: the time to insert
//! [`FLOOD`] new TCP flows, one SYN each, through `Pipeline::process_burst`
//! into an empty shard of [`CAPACITY`] states (dpf's default), for three
//! sets of flows:
//!
//! - `random`: flows picked at random;
//! - `aimed_at_known_key/secret_key`: flows an attacker built offline
//!   against a known key A (the fixed default key every build had before
//!   the hash was keyed) so that they all land in [`AIMED_BUCKETS`] home
//!   buckets, inserted into a table keyed with another key B (as the
//!   daemon's OS-random key is);
//! - `aimed_at_secret_key/secret_key`: the same aimed at B itself, as if
//!   the secret had leaked: what the probe bound alone limits (most of
//!   these SYNs are refused as `state-table-full`).
//!
//! Every iteration starts from an empty shard (built outside the measured
//! time); the figure is the time per flood. The home bucket is computed as
//! the shard does (tag = low 32 bits of the hash, home = tag * buckets >>
//! 32, buckets = capacity / 6), which is what an attacker would copy.
//!
//! ```text
//! cargo bench -p dataplane --no-default-features --bench hash_flood
//! ```

mod common;

use common::{client_port, client_v4, config, rng, Segment, BURST, SERVER_PORT, SERVER_V4};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::counters::{DropReason, Verdict};
use dataplane::flow::tcp_flags as flags;
use dataplane::flow::{proto, set_hash_secret, Addr, Af, FlowKey, HashSecret, IfIndex};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::Shard;
use dataplane::time::Instant;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// States per shard (dpf's default).
const CAPACITY: usize = 100_000;
/// SYNs per flood (2813 bursts of 32).
const FLOOD: usize = 90_016;
/// Home buckets the aimed flows share (of `CAPACITY / 6` = 16667).
const AIMED_BUCKETS: u64 = 100;
const NOW: Instant = Instant::from_secs(1);

/// Key B: stands for the daemon's OS-random key (fixed so runs compare).
const SECRET: HashSecret = HashSecret([
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6c,
]);

fn flow_key(i: usize) -> FlowKey {
    FlowKey::from_packet(
        Af::Inet,
        proto::TCP,
        Addr::v4(client_v4(i)),
        client_port(i),
        Addr::v4(SERVER_V4),
        SERVER_PORT,
    )
    .0
}

/// The first `FLOOD` flows whose home bucket under `key` is one of the
/// first `AIMED_BUCKETS` (an offline search: ~15 M hashes).
fn aimed_flows(key: &HashSecret) -> Vec<usize> {
    let buckets = CAPACITY.div_ceil(6) as u64;
    (0..1usize << 24)
        .filter(|&i| {
            let tag = flow_key(i).symmetric_hash_with(key) as u32 as u64;
            (tag * buckets) >> 32 < AIMED_BUCKETS
        })
        .take(FLOOD)
        .collect()
}

/// `FLOOD` distinct flows at random among 2^24.
fn random_flows() -> Vec<usize> {
    let mut r = rng();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(FLOOD);
    while out.len() < FLOOD {
        let i = r.gen_range(0..1usize << 24);
        if seen.insert(i) {
            out.push(i);
        }
    }
    out
}

fn syn_frames(flows: &[usize]) -> Vec<Vec<u8>> {
    flows
        .iter()
        .map(|&i| {
            let seg = Segment {
                sport: client_port(i),
                dport: SERVER_PORT,
                seq: 1000,
                ack: 0,
                flags: flags::SYN,
            };
            common::tcp4_frame(client_v4(i), SERVER_V4, seg)
        })
        .collect()
}

fn pipeline() -> Pipeline {
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    let rules = Ruleset::compile("pass all\n", "bench.conf", &env).expect("ruleset");
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    Pipeline::new(
        cfg,
        Arc::new(rules),
        Shard::new(CAPACITY, 0).expect("capacity"),
    )
}

/// Runs the whole flood through `p`.
fn flood(p: &mut Pipeline, frames: &mut [Vec<u8>]) {
    let mut verdicts = [Verdict::Drop(DropReason::Unclassified); BURST];
    for chunk in frames.chunks_mut(BURST) {
        let mut burst: Vec<&mut [u8]> = chunk.iter_mut().map(|f| &mut f[..]).collect();
        p.process_burst(&mut burst, 0, NOW, &mut verdicts);
        black_box(&verdicts);
    }
}

fn bench_hash_flood(c: &mut Criterion) {
    // Before any shard exists, as the daemon does.
    set_hash_secret(SECRET.0);
    type Flows = fn() -> Vec<usize>;
    let sets: [(&str, Flows); 3] = [
        ("random", random_flows),
        ("aimed_at_known_key/secret_key", || {
            aimed_flows(&HashSecret::DEFAULT)
        }),
        ("aimed_at_secret_key/secret_key", || aimed_flows(&SECRET)),
    ];
    let mut g = c.benchmark_group("hash_flood");
    g.throughput(Throughput::Elements(FLOOD as u64));
    g.sample_size(10);
    for (name, flows) in sets {
        let mut frames: Option<Vec<Vec<u8>>> = None;
        let mut outcome = None;
        g.bench_function(name, |b| {
            let frames = frames.get_or_insert_with(|| syn_frames(&flows()));
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let mut p = pipeline();
                    let mut copy = frames.clone();
                    let t0 = std::time::Instant::now();
                    flood(&mut p, &mut copy);
                    measured += t0.elapsed();
                    outcome = Some((
                        p.counters.states_created,
                        p.counters.drops[DropReason::StateTableFull as usize],
                    ));
                }
                measured
            })
        });
        if let Some((created, refused)) = outcome {
            println!("hash_flood/{name}: {created} states created, {refused} SYNs refused (state-table-full) of {FLOOD}");
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config().measurement_time(Duration::from_secs(4));
    targets = bench_hash_flood
}
criterion_main!(benches);
