//! pf table lookup and build cost against table size: `Table::matches`
//! (the per-packet lookup: the `dataplane::lpm` trie) on tables of 10,
//! 10 000 and 1 000 000 random prefixes, IPv4 and IPv6, with the probe
//! addresses cycling through 4096 random ones (about half of them hit);
//! building a table of each size; and one `-T add` to the 1M tables (a
//! path copy, not a rebuild).
//!
//! Prefix mix: IPv4 70 % /32, 25 % /24, 5 % /16; IPv6 50 % /128,
//! 30 % /64, 20 % /48 in 2000::/3; one in 16 entries negated.
//!
//! ```text
//! cargo bench -p dataplane --no-default-features --bench tables
//! ```
//!
//! One element = one lookup (or one build / one add).

mod common;

use common::config;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::flow::Af;
use dataplane::rules::table::{Table, TableAddr, TableChange, TableFlags};
use rand::{Rng, SeedableRng};

const SIZES: [usize; 3] = [10, 10_000, 1_000_000];
const PROBES: usize = 4096;

fn prefixes(af: Af, n: usize, rng: &mut rand::rngs::StdRng) -> Vec<TableAddr> {
    (0..n)
        .map(|_| {
            let r: u32 = rng.gen_range(0..100);
            let neg = rng.gen_range(0..16) == 0;
            match af {
                Af::Inet => {
                    let len = if r < 70 {
                        32
                    } else if r < 95 {
                        24
                    } else {
                        16
                    };
                    TableAddr::new(af, u128::from(rng.gen::<u32>()) << 96, len, neg)
                }
                Af::Inet6 => {
                    let len = if r < 50 {
                        128
                    } else if r < 80 {
                        64
                    } else {
                        48
                    };
                    let net = (rng.gen::<u128>() >> 3) | (1u128 << 125);
                    TableAddr::new(af, net, len, neg)
                }
            }
        })
        .collect()
}

/// Probe keys: half inside random entries, half random.
fn probes(af: Af, entries: &[TableAddr], rng: &mut rand::rngs::StdRng) -> Vec<u128> {
    (0..PROBES)
        .map(|i| {
            let host_bits = |len: u8, width: u8, r: u128| -> u128 {
                let bits = u32::from(width - len);
                if bits == 0 {
                    0
                } else {
                    (r >> (128 - bits)) << (128 - u32::from(width))
                }
            };
            let width = if af == Af::Inet { 32 } else { 128 };
            if i % 2 == 0 && !entries.is_empty() {
                let e = entries[rng.gen_range(0..entries.len())];
                e.net | host_bits(e.len, width, rng.gen())
            } else if af == Af::Inet {
                u128::from(rng.gen::<u32>()) << 96
            } else {
                (rng.gen::<u128>() >> 3) | (1u128 << 125)
            }
        })
        .collect()
}

fn bench_tables(c: &mut Criterion) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for (af, fam) in [(Af::Inet, "v4"), (Af::Inet6, "v6")] {
        let mut lookups = c.benchmark_group(format!("tables/lookup_{fam}"));
        lookups.throughput(Throughput::Elements(1));
        let mut built = Vec::new();
        for &n in &SIZES {
            let list = prefixes(af, n, &mut rng);
            let t0 = std::time::Instant::now();
            let t = Table::new("bench".into(), TableFlags::default(), &list, 1);
            let secs = t0.elapsed().as_secs_f64();
            let keys = probes(af, &list, &mut rng);
            let hits = keys.iter().filter(|&&k| t.matches(af, k)).count();
            println!(
                "tables/{fam}/{n}: {} entries, built in {secs:.3} s, {:.1} MiB, {hits}/{PROBES} probes match",
                t.len(),
                t.memory_bytes() as f64 / (1 << 20) as f64
            );
            lookups.bench_with_input(BenchmarkId::from_parameter(n), &keys, |b, keys| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) & (PROBES - 1);
                    black_box(t.matches(af, black_box(keys[i])))
                })
            });
            built.push((n, list, t));
        }
        lookups.finish();

        let mut build = c.benchmark_group(format!("tables/build_{fam}"));
        build.sample_size(10);
        for (n, list, _) in &built {
            build.throughput(Throughput::Elements(1));
            build.bench_with_input(BenchmarkId::from_parameter(n), list, |b, list| {
                b.iter(|| black_box(Table::new("b".into(), TableFlags::default(), list, 1)))
            });
        }
        build.finish();

        if let Some((n, _, big)) = built.last() {
            let mut add = c.benchmark_group(format!("tables/add_one_{fam}"));
            let extra = prefixes(af, 1, &mut rng);
            let change = TableChange::Add(extra);
            add.bench_function(BenchmarkId::from_parameter(n), |b| {
                b.iter(|| black_box(big.apply(&change, 2)))
            });
            add.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = config().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = bench_tables
}
criterion_main!(benches);
