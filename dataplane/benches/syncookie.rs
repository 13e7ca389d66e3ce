//! SYN cookies (`set syncookies always`) on one worker in wire mode (ports
//! 0 <-> 1, `pass all`): a spoofed SYN flood, a fresh 60-byte TCP/IPv4
//! SYN of a new flow per packet in bursts of 32. Each SYN is classified,
//! misses the state table, is evaluated by the rules, gets its cookie
//! (SipHash-2-4 of the 4-tuple and ISN) and a SYN-ACK built into the
//! burst's reply slot; no state is created. The figure is SYN-ACKs per
//! second per worker (the reply's copy into the mbuf and the tx burst are
//! not included).

mod common;

use common::{
    client_port, client_v4, config, tsc, CycleTally, Segment, BURST, SERVER_PORT, SERVER_V4,
};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::counters::{DropReason, Verdict};
use dataplane::flow::tcp_flags as flags;
use dataplane::flow::IfIndex;
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::Shard;
use dataplane::time::Instant;
use std::sync::Arc;
use std::time::Duration;

const FLOWS: usize = 1 << 16;
const SLOT: usize = 64;

fn bench_syncookie_flood(c: &mut Criterion) {
    let env = RuleEnv {
        interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
        self_addrs: &[],
        names: &[],
    };
    let rules =
        Ruleset::compile("set syncookies always\npass all\n", "bench.conf", &env).expect("ruleset");
    let mut cfg = PipelineConfig::default();
    cfg.pair(0, 1);
    let mut p = Pipeline::new(cfg, Arc::new(rules), Shard::new(1024, 0).expect("capacity"));
    let mut bytes = vec![0u8; FLOWS * SLOT];
    let mut len = 0;
    for i in 0..FLOWS {
        let seg = Segment {
            sport: client_port(i),
            dport: SERVER_PORT,
            seq: i as u32,
            ack: 0,
            flags: flags::SYN,
        };
        let f = common::tcp4_frame(client_v4(i), SERVER_V4, seg);
        len = f.len();
        bytes[i * SLOT..i * SLOT + len].copy_from_slice(&f);
    }
    let now = Instant::from_secs(2);
    let mut tally = CycleTally::default();
    let mut at = 0usize;
    let mut g = c.benchmark_group("syncookie");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("syn_flood", |b| {
        b.iter_custom(|iters| {
            let mut verdicts = [Verdict::Drop(DropReason::Unclassified); BURST];
            let t0 = std::time::Instant::now();
            let c0 = tsc();
            for _ in 0..iters {
                if at + BURST > FLOWS {
                    at = 0;
                }
                let mut burst: [&mut [u8]; BURST] = Default::default();
                let slots = bytes[at * SLOT..(at + BURST) * SLOT].chunks_mut(SLOT);
                for (o, slot) in burst.iter_mut().zip(slots) {
                    *o = &mut slot[..len];
                }
                p.process_burst(&mut burst, 0, now, &mut verdicts);
                black_box(&verdicts);
                at += BURST;
            }
            let took: Duration = t0.elapsed();
            tally.add(tsc().wrapping_sub(c0), took, iters * BURST as u64);
            took
        })
    });
    g.finish();
    assert_eq!(p.counters.states_created, 0);
    assert_eq!(
        p.counters.drops[DropReason::SynCookieSent as usize],
        tally.packets
    );
    assert!(p.reply(0).len() >= 58, "a SYN-ACK was built");
    tally.report("syncookie/syn_flood (SYN-ACKs)");
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_syncookie_flood
}
criterion_main!(benches);
