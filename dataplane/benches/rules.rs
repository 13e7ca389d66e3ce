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
//! Two cases where a rule in the middle decides, as in a real ruleset
//! (`block all` first, then one pass rule per host or service):
//!
//! - `dst_host`: `block all`, then `pass in on lan0 proto tcp to 10.a.b.c
//!   port 443` for distinct hosts; the SYN goes to the middle rule's host;
//! - `dst_port`: `block all`, then `pass in on lan0 proto tcp to
//!   192.0.2.80 port P` for distinct ports; the SYN goes to the middle
//!   rule's port.
//!
//! Rulesets of 64 rules or more are evaluated through the candidate index
//! (`rules/index.rs`): the cost should stay flat from 100 to 10000 rules.
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

/// `block all`, then `n - 1` pass rules, rule `i` written by `rule(i)`.
fn middle_ruleset(n: usize, rule: impl Fn(usize) -> String) -> Ruleset {
    let mut src = String::from("block all\n");
    for i in 1..n {
        src.push_str(&rule(i));
        src.push('\n');
    }
    let env = RuleEnv {
        interfaces: &[("lan0", LAN), ("wan0", WAN)],
        self_addrs: &[],
        names: &[],
    };
    Ruleset::compile(&src, "bench.conf", &env).expect("generated ruleset compiles")
}

/// Host `i` of `10.0.0.0/8`.
fn host(i: usize) -> [u8; 4] {
    [10, (i >> 16) as u8, (i >> 8) as u8, i as u8]
}

fn packet(ifindex: IfIndex, proto: u8) -> PacketInfo {
    to(ifindex, proto, [192, 0, 2, 80], 80)
}

fn to(ifindex: IfIndex, proto: u8, dst: [u8; 4], dport: u16) -> PacketInfo {
    PacketInfo {
        af: Af::Inet,
        proto,
        src: Addr::v4([192, 168, 1, 1]),
        dst: Addr::v4(dst),
        sport: 40000,
        dport,
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

/// One bench case: its rulesets by size, the packet of each size and the
/// rule that must decide it.
struct Case {
    name: &'static str,
    sets: Vec<(usize, Ruleset, PacketInfo, u32)>,
}

fn cases() -> Vec<Case> {
    let last = |n: usize| n as u32 - 1;
    let pass_all = |name, pkt: PacketInfo| Case {
        name,
        sets: SIZES
            .iter()
            .map(|&n| (n, ruleset(n), pkt, last(n)))
            .collect(),
    };
    let mid = |n: usize| n / 2;
    vec![
        pass_all("src_miss", packet(LAN, proto::TCP)),
        pass_all("if_skip", packet(WAN, proto::TCP)),
        pass_all("proto_skip", packet(LAN, proto::UDP)),
        Case {
            name: "dst_host",
            sets: SIZES
                .iter()
                .map(|&n| {
                    let rs = middle_ruleset(n, |i| {
                        let [a, b, c, d] = host(i);
                        format!("pass in on lan0 proto tcp to {a}.{b}.{c}.{d} port 443")
                    });
                    (n, rs, to(LAN, proto::TCP, host(mid(n)), 443), mid(n) as u32)
                })
                .collect(),
        },
        Case {
            name: "dst_port",
            sets: SIZES
                .iter()
                .map(|&n| {
                    let rs = middle_ruleset(n, |i| {
                        format!("pass in on lan0 proto tcp to 192.0.2.80 port {}", 1000 + i)
                    });
                    let pkt = to(LAN, proto::TCP, [192, 0, 2, 80], 1000 + mid(n) as u16);
                    (n, rs, pkt, mid(n) as u32)
                })
                .collect(),
        },
    ]
}

fn bench_rules(c: &mut Criterion) {
    for case in cases() {
        let mut g = c.benchmark_group(format!("rules/{}", case.name));
        g.throughput(Throughput::Elements(1));
        for (n, rs, pkt, want) in &case.sets {
            let mut counters = vec![RuleCounters::default(); rs.len()];
            let d = rs.evaluate(pkt, &mut counters);
            let action = if *want == 0 && case.name.starts_with("dst_") {
                Action::Block
            } else {
                Action::Pass
            };
            assert_eq!(
                (d.action, d.rule),
                (action, Some(*want)),
                "{}/{n}",
                case.name
            );
            let examined: u64 = counters.iter().map(|c| c.evaluations).sum();
            println!(
                "rules/{}/{n}: {examined} rules examined per evaluation",
                case.name
            );
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
