//! Fragment reassembly throughput: 8 KiB UDP/IPv4 datagrams in six
//! fragments of at most 1514-byte frames (1480 data bytes), through
//! `Pipeline::process_burst` in bursts of 32 (each fragment: classify,
//! datagram hash, reassembly-table insert), then, per completed
//! datagram, `Pipeline::process_reassembled` (join into one frame,
//! decide it whole by the state it hits, write it back into its
//! fragments). Wire mode, one worker, `pass all` (keep state).
//!
//! Besides criterion's time, it prints TSC cycles per fragment (see
//! `common::tsc`).

mod common;

use common::{config, tsc, CycleTally, BURST};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::counters::{DropReason, Verdict};
use dataplane::flow::IfIndex;
use dataplane::frag::FRAGS_PER_DATAGRAM;
use dataplane::pipeline::{Arrival, Pipeline, PipelineConfig};
use dataplane::rules::{RuleEnv, Ruleset};
use dataplane::state::Shard;
use dataplane::time::Instant;
use dataplane::wire::checksum;
use std::sync::Arc;

const DATAGRAMS: usize = 64;
const PAYLOAD: usize = 8192;
const FRAG_DATA: usize = 1480;

/// The fragments (1514-byte frames but the last) of datagram `id`.
fn fragments(id: u16) -> Vec<Vec<u8>> {
    let data_len = 8 + PAYLOAD;
    let mut data = vec![0u8; data_len];
    data[0..2].copy_from_slice(&40000u16.to_be_bytes());
    data[2..4].copy_from_slice(&5353u16.to_be_bytes());
    data[4..6].copy_from_slice(&(data_len as u16).to_be_bytes());
    for (i, b) in data[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    data.chunks(FRAG_DATA)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = vec![0u8; 34];
            f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
            f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            let off = i * FRAG_DATA;
            let more = off + chunk.len() < data_len;
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            let flags = (off / 8) as u16 | if more { 0x2000 } else { 0 };
            ip[6..8].copy_from_slice(&flags.to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
            ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
            let c = !checksum::data(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(chunk);
            f
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
    cfg.frag_capacity = 65_536;
    Pipeline::new(cfg, Arc::new(rules), Shard::new(4096, 0).expect("capacity"))
}

/// Runs every fragment through `p` once; returns the fragments forwarded.
fn run(p: &mut Pipeline, frames: &mut [Vec<u8>], held: &mut [usize], now: Instant) -> usize {
    let mut verdicts = [Verdict::Drop(DropReason::Unclassified); BURST];
    let mut entries = [0u32; FRAGS_PER_DATAGRAM];
    let mut forwarded = 0;
    let mut at = 0;
    while at < frames.len() {
        let n = BURST.min(frames.len() - at);
        {
            let mut burst: [&mut [u8]; BURST] = Default::default();
            for (b, f) in burst.iter_mut().zip(frames[at..at + n].iter_mut()) {
                *b = &mut f[..];
            }
            p.process_burst(&mut burst[..n], 0, now, &mut verdicts[..n]);
        }
        for (i, v) in verdicts[..n].iter().enumerate() {
            if let Verdict::Reassembly(e) = v {
                held[*e as usize] = at + i;
            }
        }
        at += n;
        while let Some(r) = p.next_reassembled(&mut entries) {
            // The datagram's frames, moved out and back (no copy).
            let mut taken: [Vec<u8>; FRAGS_PER_DATAGRAM] = std::array::from_fn(|_| Vec::new());
            for k in 0..r.fragments {
                taken[k] = std::mem::take(&mut frames[held[entries[k] as usize]]);
            }
            let mut refs: [&mut [u8]; FRAGS_PER_DATAGRAM] =
                std::array::from_fn(|_| Default::default());
            for (r, t) in refs.iter_mut().zip(taken.iter_mut()) {
                *r = &mut t[..];
            }
            if let Verdict::Forward(_) =
                p.process_reassembled(&mut refs[..r.fragments], 0, now, Arrival::Reassembled)
            {
                forwarded += r.fragments;
            }
            for k in 0..r.fragments {
                frames[held[entries[k] as usize]] = std::mem::take(&mut taken[k]);
            }
        }
    }
    forwarded
}

fn bench(c: &mut Criterion) {
    let mut p = pipeline();
    let mut frames: Vec<Vec<u8>> = (0..DATAGRAMS as u16).flat_map(fragments).collect();
    let total = frames.len();
    let bytes: usize = frames.iter().map(|f| f.len()).sum();
    let mut held = vec![0usize; p.fragment_capacity()];
    let now = Instant::from_secs(1);
    assert_eq!(run(&mut p, &mut frames, &mut held, now), total, "all pass");
    let mut g = c.benchmark_group("reassembly");
    g.throughput(Throughput::Elements(total as u64));
    let mut tally = CycleTally::default();
    g.bench_function("udp4_8k_in_1500_byte_fragments", |b| {
        b.iter_custom(|iters| {
            let t0 = std::time::Instant::now();
            let c0 = tsc();
            for _ in 0..iters {
                run(&mut p, &mut frames, &mut held, now);
            }
            let (cycles, elapsed) = (tsc() - c0, t0.elapsed());
            tally.add(cycles, elapsed, iters * total as u64);
            elapsed
        })
    });
    g.finish();
    tally.report("reassembly/udp4_8k_in_1500_byte_fragments (per fragment)");
    println!(
        "{total} fragments, {bytes} bytes a pass ({} bytes a fragment on average)",
        bytes / total
    );
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
