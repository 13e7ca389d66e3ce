//! `Ruleset::evaluate` over rulesets of 1, 10, 100, 1000 and 10000 rules in
//! which only the last rule (`pass all`) matches. The others are
//! `pass in on lan0 proto tcp from 10.a.b.0/24 to any port 80`, all with a
//! different source network:
//!
//! - `src_miss`: a TCP SYN on lan0 from 192.168.1.1 fails every rule on its
//!   source address; consecutive rules differ there, so the source skip
//!   step is the next rule and evaluation is linear in the ruleset;
//! - `if_skip`: the same packet on wan0 fails the first rule's interface,
//!   whose skip step jumps straight to `pass all`;
//! - `proto_skip`: a UDP datagram on lan0 skips on the protocol likewise.
//!
//! One element = one evaluation.

mod common;

use common::config;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::flow::{
    proto, tcp_flags, Addr, Af, Direction, IfIndex, L4Info, PacketInfo, TcpInfo,
};
use dataplane::rules::{Action, RuleCounters, RuleEnv, Ruleset};

const SIZES: [usize; 5] = [1, 10, 100, 1000, 10_000];
const LAN: IfIndex = IfIndex(0);
const WAN: IfIndex = IfIndex(1);

/// `n` rules of which only the last, `pass all`, matches the bench packets.
fn ruleset(n: usize) -> Ruleset {
    let mut src = String::new();
    for i in 0..n - 1 {
        src.push_str(&format!(
            "pass in on lan0 proto tcp from 10.{}.{}.0/24 to any port 80\n",
            i >> 8,
            i & 0xff
        ));
    }
    src.push_str("pass all\n");
    let env = RuleEnv {
        interfaces: &[("lan0", LAN), ("wan0", WAN)],
        self_addrs: &[],
        names: &[],
    };
    Ruleset::compile(&src, "bench.conf", &env).expect("generated ruleset compiles")
}

fn packet(ifindex: IfIndex, proto: u8) -> PacketInfo {
    PacketInfo {
        af: Af::Inet,
        proto,
        src: Addr::v4([192, 168, 1, 1]),
        dst: Addr::v4([192, 0, 2, 80]),
        sport: 40000,
        dport: 80,
        ip_len: 40,
        ttl: 64,
        ifindex,
        dir: Direction::In,
        l4: if proto == proto::TCP {
            L4Info::Tcp(TcpInfo {
                seq: 1000,
                win: 65535,
                flags: tcp_flags::SYN,
                ..Default::default()
            })
        } else {
            L4Info::Udp
        },
    }
}

fn bench_rules(c: &mut Criterion) {
    let cases = [
        ("src_miss", packet(LAN, proto::TCP)),
        ("if_skip", packet(WAN, proto::TCP)),
        ("proto_skip", packet(LAN, proto::UDP)),
    ];
    let rulesets: Vec<(usize, Ruleset)> = SIZES.iter().map(|&n| (n, ruleset(n))).collect();
    for (case, pkt) in &cases {
        let mut g = c.benchmark_group(format!("rules/{case}"));
        g.throughput(Throughput::Elements(1));
        for (n, rs) in &rulesets {
            let mut counters = vec![RuleCounters::default(); rs.len()];
            let d = rs.evaluate(pkt, &mut counters);
            assert_eq!((d.action, d.rule), (Action::Pass, Some(*n as u32 - 1)));
            let examined: u64 = counters.iter().map(|c| c.evaluations).sum();
            println!("rules/{case}/{n}: {examined} rules examined per evaluation");
            g.bench_with_input(BenchmarkId::from_parameter(n), pkt, |b, pkt| {
                b.iter(|| black_box(rs.evaluate(black_box(pkt), &mut counters)))
            });
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = config().sample_size(10).measurement_time(std::time::Duration::from_secs(1));
    targets = bench_rules
}
criterion_main!(benches);
