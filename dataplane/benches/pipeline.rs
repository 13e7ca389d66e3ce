//! `Pipeline::process` in wire mode (ports 0 <-> 1, ruleset `pass all`,
//! which keeps state), one worker, 60-byte TCP/IPv4 frames in bursts of 32:
//!
//! - `established/{10k,1M}`: every flow went through SYN, SYN-ACK, ACK
//!   first; then in-window pure ACKs from the clients, the flows in a random
//!   order (each packet: classify, key + hash, shard lookup hit, pf window
//!   tracking, forward);
//! - `syn_flood`: a fresh SYN of a new flow per packet (lookup miss, `in`
//!   and `out` rule evaluation, state creation and insertion) into a shard
//!   of 1M states that fills from empty; when the pre-built SYNs run out the
//!   shard is replaced by an empty one, outside the measured time.
//!
//! - `sync_on/{established/10k,syn_flood}`: the same with pfsync export on
//!   (`Pipeline::set_sync`, rings of 16384 records as dpf uses, maxupd 128):
//!   a thread on another core drains the export ring as the sync side does,
//!   so the figure is the export's cost to the worker (compare with the
//!   plain runs; under `taskset -c 1` the drain thread moves to CPU 0).
//!
//! - `nat/{established/10k,established/1M,syn_flood}`: the same through
//!   `pass out on wan0 nat-to 198.18.0.0/20` (source translated to a
//!   round-robin address of the pool and a free port of 50001-65535):
//!   established packets are rewritten (address, port, IPv4 and TCP
//!   checksums) after the lookup hit; each flood SYN also picks an address
//!   and a free port and inserts a state with two keys. The frames are
//!   restored between passes, outside the measured time (the rewrite is
//!   in place).
//!
//! - `routed/established/{10k,1M}`: the established case through a router
//!   (routing table, next hop's MAC, MAC and TTL rewrite), frames restored
//!   between passes outside the measured time.
//!
//! Besides criterion's time per burst, each benchmark prints TSC cycles per
//! packet measured with `_rdtsc` inside `iter_custom` (see
//! `common::tsc`): the TSC ticks at the CPU's nominal frequency, so
//! `cycles/packet = ns/packet * TSC GHz` (printed alongside); core cycles
//! differ by the ratio of the real to the nominal clock (turbo, power
//! states, a hypervisor's steal time).

mod common;

use common::{
    client_port, client_v4, config, shuffled, tsc, CycleTally, Segment, BURST, SERVER_PORT,
    SERVER_V4,
};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::counters::{DropReason, Verdict};
use dataplane::export::{ImportRecord, StateRecord};
use dataplane::flow::tcp_flags as flags;
use dataplane::flow::IfIndex;
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::ring::{channel, Producer};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::table::side_records_for;
use dataplane::state::Shard;
use dataplane::time::Instant;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CLIENT_PORT_ID: u16 = 0;
const SERVER_PORT_ID: u16 = 1;
const HANDSHAKE_AT: Instant = Instant::from_secs(1);
const TRAFFIC_AT: Instant = Instant::from_secs(2);
const FLOOD_STATES: usize = 1_000_000;

/// Frames back to back, one per 64-byte slot (like mbuf data rooms, each
/// frame starts on its own cache line).
struct Frames {
    bytes: Vec<u8>,
    len: usize,
    /// The frames as built, for benchmarks whose processing rewrites them
    /// (NAT): restored before each pass.
    pristine: Option<Vec<u8>>,
}

const SLOT: usize = 64;

impl Frames {
    fn new(frames: impl ExactSizeIterator<Item = Vec<u8>>) -> Frames {
        let len = frames.len();
        let mut bytes = vec![0u8; len * SLOT];
        for (i, f) in frames.enumerate() {
            bytes[i * SLOT..i * SLOT + f.len()].copy_from_slice(&f);
        }
        Frames {
            bytes,
            len,
            pristine: None,
        }
    }

    /// Frames that are restored to these bytes before each pass.
    fn restored(mut self) -> Frames {
        self.pristine = Some(self.bytes.clone());
        self
    }

    /// The `BURST` frames from `at` (as the worker hands a burst over).
    fn burst_mut(&mut self, at: usize) -> [&mut [u8]; BURST] {
        let mut out: [&mut [u8]; BURST] = Default::default();
        let slots = self.bytes[at * SLOT..(at + BURST) * SLOT].chunks_mut(SLOT);
        for (o, slot) in out.iter_mut().zip(slots) {
            *o = &mut slot[..common::MIN_FRAME_LEN];
        }
        out
    }
}

fn pipeline(states: usize) -> Pipeline {
    pipeline_with(states, "pass all\n")
}

/// The NAT benchmarks' ruleset.
const NAT_RULES: &str = "pass in\npass out on wan0 nat-to 198.18.0.0/20\n";

fn pipeline_with(states: usize, rules: &str) -> Pipeline {
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    // `set limit states` holds for the box: room for every state.
    let text = format!("set limit states {states}\n{rules}");
    let rules = Ruleset::compile(&text, "bench.conf", &env).expect("ruleset");
    let mut cfg = PipelineConfig::default();
    cfg.pair(CLIENT_PORT_ID, SERVER_PORT_ID);
    // Side records as dpf sizes them for this ruleset.
    let records = side_records_for(rules.makes_side_records(), states);
    Pipeline::new(
        cfg,
        Arc::new(rules),
        Shard::with_records(states, records, 0).expect("capacity"),
    )
}

/// A shard for `pipeline`'s ruleset (which makes no side records), sized
/// as dpf sizes it.
fn plain_shard(states: usize) -> Shard {
    Shard::with_records(states, side_records_for(false, states), 0).expect("capacity")
}

fn client_seg(i: usize, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let seg = Segment {
        sport: client_port(i),
        dport: SERVER_PORT,
        seq,
        ack,
        flags,
    };
    common::tcp4_frame(client_v4(i), SERVER_V4, seg)
}

fn server_seg(i: usize, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let seg = Segment {
        sport: SERVER_PORT,
        dport: client_port(i),
        seq,
        ack,
        flags,
    };
    common::tcp4_frame(SERVER_V4, client_v4(i), seg)
}

/// Processes bursts of 32 frames from `frames`, starting at `*at`, until
/// `iters` bursts are done; calls `refill` (not timed) whenever the frames
/// run out. Returns the measured time and adds it to `tally`.
fn run_bursts(
    p: &mut Pipeline,
    frames: &mut Frames,
    at: &mut usize,
    iters: u64,
    tally: &mut CycleTally,
    mut refill: impl FnMut(&mut Pipeline),
) -> Duration {
    let mut measured = Duration::ZERO;
    let mut cycles = 0u64;
    let mut left = iters;
    while left > 0 {
        if *at + BURST > frames.len {
            refill(p);
            if let Some(b) = &frames.pristine {
                frames.bytes.copy_from_slice(b);
            }
            *at = 0;
        }
        let bursts = left.min(((frames.len - *at) / BURST) as u64);
        let t0 = std::time::Instant::now();
        let c0 = tsc();
        let mut verdicts = [Verdict::Drop(DropReason::Unclassified); BURST];
        for _ in 0..bursts {
            let mut burst = frames.burst_mut(*at);
            p.process_burst(&mut burst, CLIENT_PORT_ID, TRAFFIC_AT, &mut verdicts);
            black_box(&verdicts);
            // Once per burst, as the worker does (publishes pfsync exports;
            // nothing without sync).
            p.sync_poll(TRAFFIC_AT, 64);
            *at += BURST;
        }
        cycles += tsc().wrapping_sub(c0);
        measured += t0.elapsed();
        left -= bursts;
    }
    tally.add(cycles, measured, iters * BURST as u64);
    measured
}

/// A pipeline with its traffic, built on the first call of a benchmark (so
/// a benchmark filtered out on the command line costs nothing).
struct Bench {
    p: Pipeline,
    frames: Frames,
    at: usize,
    tally: CycleTally,
}

impl Bench {
    /// [`run_bursts`] over this bench's pipeline and traffic.
    fn run(&mut self, iters: u64, refill: impl FnMut(&mut Pipeline)) -> Duration {
        run_bursts(
            &mut self.p,
            &mut self.frames,
            &mut self.at,
            iters,
            &mut self.tally,
            refill,
        )
    }
}

/// `n` established flows through `nat-to`, and one in-window client ACK
/// per flow in a random order.
fn established_nat(n: usize) -> Bench {
    let mut p = pipeline_with(n, NAT_RULES);
    for i in 0..n {
        let mut syn = client_seg(i, 1000, 0, flags::SYN);
        let v = p.process(&mut syn, CLIENT_PORT_ID, HANDSHAKE_AT);
        assert_eq!(v, Verdict::Forward(SERVER_PORT_ID), "flow {i} SYN");
        // The translated source, as the SYN left.
        let nat_addr: [u8; 4] = syn[26..30].try_into().expect("IPv4 source");
        let nat_port = u16::from_be_bytes([syn[34], syn[35]]);
        let seg = Segment {
            sport: SERVER_PORT,
            dport: nat_port,
            seq: 5000,
            ack: 1001,
            flags: flags::SYN | flags::ACK,
        };
        let mut synack = common::tcp4_frame(SERVER_V4, nat_addr, seg);
        let v = p.process(&mut synack, SERVER_PORT_ID, HANDSHAKE_AT);
        assert_eq!(v, Verdict::Forward(CLIENT_PORT_ID), "flow {i} SYN-ACK");
        let mut ack = client_seg(i, 1001, 5001, flags::ACK);
        let v = p.process(&mut ack, CLIENT_PORT_ID, HANDSHAKE_AT);
        assert_eq!(v, Verdict::Forward(SERVER_PORT_ID), "flow {i} ACK");
    }
    assert_eq!(p.shard().len(), n);
    assert_eq!(p.shard().translated_len(), n);
    p.counters = Default::default();
    let order = shuffled(n);
    let frames =
        Frames::new(order.iter().map(|&i| client_seg(i, 1001, 5001, flags::ACK))).restored();
    Bench {
        p,
        frames,
        at: 0,
        tally: CycleTally::default(),
    }
}

fn bench_nat(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline/nat");
    g.throughput(Throughput::Elements(BURST as u64));
    for (n, label) in [
        (10_000usize, "established/10k"),
        (1_000_000, "established/1M"),
    ] {
        if let Some(s) = bench_flows(&mut g, BenchmarkId::from_parameter(label), || {
            established_nat(n)
        }) {
            assert_eq!(s.p.counters.state_hits, s.tally.packets);
            assert_eq!(s.p.counters.drops.iter().sum::<u64>(), 0);
            s.tally.report(&format!("pipeline/nat/{label}"));
        }
    }
    let mut bench: Option<Bench> = None;
    let mut refills = 0u32;
    g.bench_function("syn_flood", |b| {
        let s = bench.get_or_insert_with(|| Bench {
            p: pipeline_with(FLOOD_STATES, NAT_RULES),
            frames: Frames::new((0..FLOOD_STATES).map(|i| client_seg(i, 1000, 0, flags::SYN)))
                .restored(),
            at: 0,
            tally: CycleTally::default(),
        });
        b.iter_custom(|iters| {
            s.run(iters, |p| {
                p.replace_shard(Shard::new(FLOOD_STATES, 0).expect("capacity"));
                refills += 1;
            })
        })
    });
    if let Some(s) = bench {
        assert_eq!(s.p.counters.states_created, s.tally.packets);
        assert_eq!(s.p.counters.drops.iter().sum::<u64>(), 0);
        s.tally.report(&format!(
            "pipeline/nat/syn_flood (shard of {FLOOD_STATES} filled {refills} times)"
        ));
    }
    g.finish();
}

/// `n` established flows, and one in-window client ACK per flow in a random
/// order. `routed`: through a router (lan0 -> wan0 by the routing table,
/// the server's MAC resolved, the clients' not), every frame addressed to
/// the MAC of the port it arrives on, and the frames restored between
/// passes outside the measured time (routing rewrites the MACs and the TTL
/// in place).
fn established(n: usize, routed: bool) -> Bench {
    let mut p = pipeline(n);
    if routed {
        let (routing, neighbors) = common::router_tables(false, 0);
        p.set_router(routing, neighbors, None);
    }
    let addressed = |mut f: Vec<u8>, port: u16| {
        if routed {
            let mac = if port == CLIENT_PORT_ID {
                common::LAN_MAC
            } else {
                common::WAN_MAC
            };
            f[0..6].copy_from_slice(&mac);
        }
        f
    };
    for i in 0..n {
        let handshake = [
            (client_seg(i, 1000, 0, flags::SYN), CLIENT_PORT_ID),
            (
                server_seg(i, 5000, 1001, flags::SYN | flags::ACK),
                SERVER_PORT_ID,
            ),
            (client_seg(i, 1001, 5001, flags::ACK), CLIENT_PORT_ID),
        ];
        for (f, port) in handshake {
            let v = p.process(&mut addressed(f, port), port, HANDSHAKE_AT);
            // Routed, the clients' MACs are not resolved: the SYN-ACK
            // advances the state and waits for its next hop (or is dropped
            // when the hold is full), which the benchmark does not need.
            if !(routed && port == SERVER_PORT_ID) {
                assert_eq!(v, Verdict::Forward(port ^ 1), "flow {i} handshake");
            }
        }
    }
    assert_eq!(p.shard().len(), n);
    p.counters = Default::default();
    let order = shuffled(n);
    let frames = Frames::new(
        order
            .iter()
            .map(|&i| addressed(client_seg(i, 1001, 5001, flags::ACK), CLIENT_PORT_ID)),
    );
    Bench {
        p,
        frames: if routed { frames.restored() } else { frames },
        at: 0,
        tally: CycleTally::default(),
    }
}

/// Measures the frames `build` sets up (once, when criterion first runs
/// `id`; they never run out) and returns the bench for its checks, if it
/// ran.
fn bench_flows(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    build: impl Fn() -> Bench,
) -> Option<Bench> {
    let mut bench: Option<Bench> = None;
    g.bench_function(id, |b| {
        let s = bench.get_or_insert_with(&build);
        b.iter_custom(|iters| s.run(iters, |_| {}))
    });
    bench
}

/// `pipeline/established` and `pipeline/routed/established`.
fn bench_established(c: &mut Criterion) {
    for (group, routed) in [
        ("pipeline/established", false),
        ("pipeline/routed/established", true),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(BURST as u64));
        for (n, label) in [(10_000usize, "10k"), (1_000_000, "1M")] {
            let id = BenchmarkId::from_parameter(label);
            if let Some(s) = bench_flows(&mut g, id, || established(n, routed)) {
                // Every measured packet passed on its state and was
                // forwarded.
                assert_eq!(s.p.counters.state_hits, s.tally.packets);
                assert_eq!(s.p.counters.drops.iter().sum::<u64>(), 0);
                assert_eq!(s.p.counters.forwarded, s.tally.packets);
                s.tally.report(&format!("{group}/{label}"));
            }
        }
        g.finish();
    }
}

fn bench_syn_flood(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut bench: Option<Bench> = None;
    let mut refills = 0u32;
    g.bench_function("syn_flood", |b| {
        let s = bench.get_or_insert_with(|| Bench {
            p: pipeline(FLOOD_STATES),
            frames: Frames::new((0..FLOOD_STATES).map(|i| client_seg(i, 1000, 0, flags::SYN))),
            at: 0,
            tally: CycleTally::default(),
        });
        b.iter_custom(|iters| {
            s.run(iters, |p| {
                p.replace_shard(plain_shard(FLOOD_STATES));
                refills += 1;
            })
        })
    });
    if let Some(s) = bench {
        // Every measured SYN created a state.
        assert_eq!(s.p.counters.states_created, s.tally.packets);
        assert_eq!(s.p.counters.drops.iter().sum::<u64>(), 0);
        s.tally.report(&format!(
            "pipeline/syn_flood (shard of {FLOOD_STATES} filled {refills} times)"
        ));
    }
    g.finish();
}

/// pfsync export on a pipeline, drained by a thread as the sync side
/// drains it; stops and joins the thread when dropped.
struct SyncDrain {
    stop: Arc<AtomicBool>,
    drained: Option<std::thread::JoinHandle<u64>>,
    _imports: Producer<ImportRecord>,
}

fn attach_sync(p: &mut Pipeline) -> SyncDrain {
    let (export, mut exported) = channel::<StateRecord>(16_384);
    let (imports, import) = channel::<ImportRecord>(16_384);
    p.set_sync(export, import, 128);
    let stop = Arc::new(AtomicBool::new(false));
    let stop_drain = Arc::clone(&stop);
    // The drain on another core than the pipeline (run the benchmark under
    // `taskset -c 1`: the drain moves itself to CPU 0 when it exists).
    let drained = std::thread::spawn(move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
        let mut n = 0u64;
        while !stop_drain.load(Ordering::Relaxed) {
            while let Some(rec) = exported.pop() {
                black_box(&rec);
                n += 1;
            }
            std::hint::spin_loop();
        }
        n
    });
    SyncDrain {
        stop,
        drained: Some(drained),
        _imports: imports,
    }
}

impl SyncDrain {
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.drained.take().map_or(0, |h| h.join().unwrap_or(0))
    }
}

impl Drop for SyncDrain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.drained.take() {
            let _ = h.join();
        }
    }
}

fn bench_sync_on(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline/sync_on");
    g.throughput(Throughput::Elements(BURST as u64));
    let mut bench: Option<(Bench, SyncDrain)> = None;
    g.bench_function("established/10k", |b| {
        let (s, _) = bench.get_or_insert_with(|| {
            let mut s = established(10_000, false);
            let d = attach_sync(&mut s.p);
            (s, d)
        });
        b.iter_custom(|iters| s.run(iters, |_| {}))
    });
    if let Some((s, d)) = bench.take() {
        assert_eq!(s.p.counters.state_hits, s.tally.packets);
        let drained = d.finish();
        s.tally.report(&format!(
            "pipeline/sync_on/established/10k ({drained} updates exported, {} refused by a full ring)",
            s.p.counters.export_dropped
        ));
    }
    let mut bench: Option<(Bench, SyncDrain)> = None;
    g.bench_function("syn_flood", |b| {
        let (s, _) = bench.get_or_insert_with(|| {
            let mut s = Bench {
                p: pipeline(FLOOD_STATES),
                frames: Frames::new((0..FLOOD_STATES).map(|i| client_seg(i, 1000, 0, flags::SYN))),
                at: 0,
                tally: CycleTally::default(),
            };
            let d = attach_sync(&mut s.p);
            (s, d)
        });
        b.iter_custom(|iters| {
            s.run(iters, |p| {
                p.replace_shard(plain_shard(FLOOD_STATES));
            })
        })
    });
    if let Some((s, d)) = bench.take() {
        assert_eq!(s.p.counters.states_created, s.tally.packets);
        let drained = d.finish();
        s.tally.report(&format!(
            "pipeline/sync_on/syn_flood ({drained} inserts exported, {} refused by a full ring)",
            s.p.counters.export_dropped
        ));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_established, bench_syn_flood, bench_sync_on, bench_nat
}
criterion_main!(benches);
