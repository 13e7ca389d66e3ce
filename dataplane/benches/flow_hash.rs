//! The flow key and its symmetric hash (which picks the owning worker and
//! the shard bucket) for a burst of 32 parsed TCP/IPv4 packets, and each
//! half alone.

mod common;

use common::{client_port, client_v4, config, packet_info, Segment, BURST, SERVER_PORT};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::flow::tcp_flags as flags;
use dataplane::flow::{FlowKey, PacketInfo};

fn bench_flow_hash(c: &mut Criterion) {
    let infos: Vec<PacketInfo> = (0..BURST)
        .map(|i| {
            // Half the packets come from the server side, so both branches
            // of the canonical ordering are taken.
            let seg = Segment {
                sport: client_port(i),
                dport: SERVER_PORT,
                seq: 1001,
                ack: 5001,
                flags: flags::ACK,
            };
            let f = if i % 2 == 0 {
                common::tcp4_frame(client_v4(i), common::SERVER_V4, seg)
            } else {
                let back = Segment {
                    sport: seg.dport,
                    dport: seg.sport,
                    ..seg
                };
                common::tcp4_frame(common::SERVER_V4, client_v4(i), back)
            };
            packet_info(&f)
        })
        .collect();
    let keys: Vec<FlowKey> = infos.iter().map(|p| p.key().0).collect();

    let mut g = c.benchmark_group("flow_hash");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("key+symmetric_hash", |b| {
        b.iter(|| {
            for p in black_box(&infos) {
                let (key, swapped) = p.key();
                black_box((key.symmetric_hash(), swapped));
            }
        })
    });
    g.bench_function("key", |b| {
        b.iter(|| {
            for p in black_box(&infos) {
                black_box(p.key());
            }
        })
    });
    g.bench_function("symmetric_hash", |b| {
        b.iter(|| {
            for k in black_box(&keys) {
                black_box(k.symmetric_hash());
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_flow_hash
}
criterion_main!(benches);
