//! The SPSC ring with 8-byte items (an mbuf pointer's size) in bursts of 32:
//!
//! - `burst_1thread`: push 32, publish, pop_batch 32 on one thread (the
//!   ring's own cost, everything in L1);
//! - `burst_2threads`: a producer thread pushing bursts of 32 (publishing
//!   each, retrying while the ring is full) and a consumer thread popping
//!   batches of up to 32, through a 1024-slot ring; the time is from both
//!   threads being ready to the consumer having received everything, so it
//!   includes the cache-line transfers between the two cores.
//!
//! One element = one item through the ring.

mod common;

use common::{config, BURST};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::ring::channel;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const RING_SLOTS: usize = 1024;

fn bench_one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(BURST as u64));
    let (mut tx, mut rx) = channel::<u64>(RING_SLOTS);
    let mut out = [0u64; BURST];
    let mut next = 0u64;
    g.bench_function("burst_1thread", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                let _ = tx.push(black_box(next));
                next = next.wrapping_add(1);
            }
            tx.publish();
            black_box(rx.pop_batch(&mut out));
            black_box(&out);
        })
    });
    g.finish();
}

/// Moves `bursts * BURST` items from one thread to another; returns the
/// time from the start barrier to the consumer's last item.
fn two_threads(bursts: u64) -> Duration {
    let (mut tx, mut rx) = channel::<u64>(RING_SLOTS);
    let total = bursts * BURST as u64;
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            let mut out = [0u64; BURST];
            let mut received = 0u64;
            let mut sum = 0u64;
            start.wait();
            let t0 = Instant::now();
            while received < total {
                let n = rx.pop_batch(&mut out);
                if n == 0 {
                    std::hint::spin_loop();
                    continue;
                }
                for v in &out[..n] {
                    sum = sum.wrapping_add(*v);
                }
                received += n as u64;
            }
            black_box(sum);
            t0.elapsed()
        });
        start.wait();
        let mut item = 0u64;
        for _ in 0..bursts {
            for _ in 0..BURST {
                while tx.push(item).is_err() {
                    tx.publish();
                    std::hint::spin_loop();
                }
                item += 1;
            }
            tx.publish();
        }
        consumer.join().unwrap_or(Duration::ZERO)
    })
}

fn bench_two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("burst_2threads", |b| b.iter_custom(two_threads));
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_one_thread, bench_two_threads
}
criterion_main!(benches);
