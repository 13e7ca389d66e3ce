//! `classify` (the fast path's parse pass) over bursts of 32 minimum-size
//! frames: TCP/IPv4 and UDP/IPv4 (60 bytes), TCP/IPv6 (74 bytes). Each
//! frame of a burst is a different flow; the IPv4 header checksum is
//! verified, transport checksums are not (as on the fast path).

mod common;

use common::{client_port, client_v4, config, Segment, BURST, SERVER_PORT, SERVER_V4};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::flow::tcp_flags as flags;
use dataplane::flow::{Direction, IfIndex, PacketInfo};
use dataplane::wire::{classify, Classified, WireError};
use std::mem::size_of;

fn ack(i: usize) -> Segment {
    Segment {
        sport: client_port(i),
        dport: SERVER_PORT,
        seq: 1001,
        ack: 5001,
        flags: flags::ACK,
    }
}

fn v6(last: u16) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[14..].copy_from_slice(&last.to_be_bytes());
    a
}

fn bench_parse(c: &mut Criterion) {
    let bursts: [(&str, Vec<Vec<u8>>); 3] = [
        (
            "tcp4",
            (0..BURST)
                .map(|i| common::tcp4_frame(client_v4(i), SERVER_V4, ack(i)))
                .collect(),
        ),
        (
            "udp4",
            (0..BURST)
                .map(|i| common::udp4_frame(client_v4(i), SERVER_V4, client_port(i), 53))
                .collect(),
        ),
        (
            "tcp6",
            (0..BURST)
                .map(|i| common::tcp6_frame(v6(i as u16 + 1), v6(0x80), ack(i)))
                .collect(),
        ),
    ];
    // What each call moves around besides parsing.
    println!(
        "parse: size_of::<Result<Classified, WireError>>() = {} bytes, \
         size_of::<PacketInfo>() = {} bytes",
        size_of::<Result<Classified, WireError>>(),
        size_of::<PacketInfo>()
    );
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(BURST as u64));
    for (name, frames) in &bursts {
        for f in frames {
            assert!(classify(f, IfIndex(0), Direction::In).is_ok(), "{name}");
        }
        g.bench_function(*name, |b| {
            b.iter(|| {
                for f in frames {
                    let _ = black_box(classify(black_box(f), IfIndex(0), Direction::In));
                }
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_parse
}
criterion_main!(benches);
