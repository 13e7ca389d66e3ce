//! The state shard: lookup hits and misses in full shards of 10k and 1M
//! states (random access over a pre-built key array, bursts of 32), inserting
//! into an empty shard until it is full, and one `expire_slice` sweep over a
//! full 1M shard in which every state has expired. Throughput is in states
//! (lookups, inserts, states examined and removed).

mod common;

use common::{client_port, client_v4, config, shuffled, BURST, SERVER_PORT, SERVER_V4};
use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use dataplane::flow::tcp_flags as flags;
use dataplane::flow::{proto, Addr, Af, Direction, FlowKey, IfIndex, L4Info, PacketInfo, TcpInfo};
use dataplane::state::{new_state, Shard, State, StateOptions};
use dataplane::time::Instant;
use dataplane::timeouts::Timeouts;
use std::time::Duration;

const SIZES: [(usize, &str); 2] = [(10_000, "10k"), (1_000_000, "1M")];
const CREATED: Instant = Instant::from_secs(1);

/// The initial SYN of flow `i` (client `10.x.y.z:port` -> server:80).
fn syn(i: usize) -> PacketInfo {
    PacketInfo {
        af: Af::Inet,
        proto: proto::TCP,
        src: Addr::v4(client_v4(i)),
        dst: Addr::v4(SERVER_V4),
        sport: client_port(i),
        dport: SERVER_PORT,
        ip_len: 40,
        ttl: 64,
        ifindex: IfIndex(0),
        dir: Direction::In,
        l4: L4Info::Tcp(TcpInfo {
            seq: 1000,
            win: 65535,
            flags: flags::SYN,
            ..Default::default()
        }),
    }
}

/// The states of flows `0..n`, ids `1..=n`.
fn states(n: usize) -> Vec<State> {
    (0..n)
        .map(|i| {
            new_state(&syn(i), CREATED, StateOptions::default(), i as u64 + 1, 7)
                .expect("an initial SYN makes a state")
        })
        .collect()
}

fn full_shard(states: &[State]) -> Shard {
    let mut shard = Shard::new(states.len(), 0).expect("capacity");
    for st in states {
        shard.insert(*st).expect("room for every state");
    }
    shard
}

/// `(key, hash)` of flows `0..n` in a random order.
fn keys(flows: impl Fn(usize) -> usize, n: usize) -> Vec<(FlowKey, u64)> {
    shuffled(n)
        .into_iter()
        .map(|i| {
            let (k, _) = syn(flows(i)).key();
            (k, k.symmetric_hash())
        })
        .collect()
}

/// A full shard of `n` states and, in a random order, the keys it holds
/// and keys it does not.
struct Lookups {
    shard: Shard,
    hits: Vec<(FlowKey, u64)>,
    misses: Vec<(FlowKey, u64)>,
}

fn lookups(n: usize) -> Lookups {
    let shard = full_shard(&states(n));
    let hits = keys(|i| i, n);
    // Flows the shard does not hold (client addresses past the n used).
    let misses = keys(|i| i + n, n);
    assert!(hits.iter().all(|(k, h)| shard.lookup(k, *h).is_some()));
    assert!(misses.iter().all(|(k, h)| shard.lookup(k, *h).is_none()));
    Lookups {
        shard,
        hits,
        misses,
    }
}

fn bench_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("state/lookup");
    g.throughput(Throughput::Elements(BURST as u64));
    for (n, label) in SIZES {
        // Built by the first selected benchmark of this size.
        let mut set: Option<Lookups> = None;
        for name in ["hit", "miss"] {
            let mut at = 0usize;
            g.bench_function(BenchmarkId::new(name, label), |b| {
                let l = set.get_or_insert_with(|| lookups(n));
                let keys = if name == "hit" { &l.hits } else { &l.misses };
                b.iter(|| {
                    let burst = &keys[at..at + BURST];
                    at = if at + 2 * BURST > keys.len() {
                        0
                    } else {
                        at + BURST
                    };
                    for (k, h) in burst {
                        black_box(l.shard.lookup(k, *h));
                    }
                })
            });
        }
    }
    g.finish();
}

fn bench_insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("state/insert_until_full");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200));
    for (n, label) in SIZES {
        let mut sts: Option<Vec<State>> = None;
        // One fill per sample for 1M (about half a second each here).
        g.measurement_time(Duration::from_millis(if n > 100_000 { 6000 } else { 500 }));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(label, |b| {
            let sts = sts.get_or_insert_with(|| states(n));
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let mut shard = Shard::new(n, 0).expect("capacity");
                    let t0 = std::time::Instant::now();
                    for st in sts.iter() {
                        let _ = black_box(shard.insert(*st));
                    }
                    measured += t0.elapsed();
                    assert_eq!(shard.len(), n);
                }
                measured
            })
        });
    }
    g.finish();
}

fn bench_expire(c: &mut Criterion) {
    let mut g = c.benchmark_group("state/expire_slice_all_expired");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(6));
    let (n, label) = SIZES[1];
    let mut sts: Option<Vec<State>> = None;
    let timeouts = Timeouts::default();
    // A day after creation: past tcp.first (120 s) for every state.
    let later = Instant::from_secs(86_400);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(label, |b| {
        let sts = sts.get_or_insert_with(|| states(n));
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for _ in 0..iters {
                let mut shard = full_shard(sts);
                let t0 = std::time::Instant::now();
                let removed = shard.expire_slice(later, n, &timeouts, |st| {
                    black_box(st);
                });
                measured += t0.elapsed();
                assert_eq!(removed, n);
            }
            measured
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_lookup, bench_insert, bench_expire
}
criterion_main!(benches);
