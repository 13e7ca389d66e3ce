//! Tests of the candidate index: it never leaves out a rule that matches
//! (nor an anchor rule), and evaluation through it decides exactly as the
//! linear evaluator does (differential property test), tables changing at
//! run time included.

use super::compile::{AddrKind, Rule};
use super::index::{RuleIndex, INDEX_MIN_RULES};
use super::table::{addr_bits, parse_table_addr, Table, TableFlags, TableSet};
use super::*;
use crate::flow::{proto, tcp_flags, Direction, IcmpInfo, L4Info, PacketInfo, TcpInfo};
use proptest::prelude::*;

const IFS: &[(&str, IfIndex)] = &[
    ("lan0", IfIndex(0)),
    ("wan0", IfIndex(1)),
    ("dmz0", IfIndex(2)),
    ("lo0", IfIndex(3)),
];

fn ip(s: &str) -> (Af, Addr) {
    Addr::from_ip(s.parse().unwrap())
}

fn compile(src: &str) -> Result<Ruleset, RuleError> {
    let selfs = [ip("10.1.2.3"), ip("2001:db8::1")];
    let names = [NamedInterface {
        name: "grp".into(),
        ports: 0b101,
        addrs: vec![(Af::Inet, ip("192.0.2.1").1, 24)],
    }];
    let env = RuleEnv {
        interfaces: IFS,
        self_addrs: &selfs,
        names: &names,
    };
    Ruleset::compile(src, "pf.conf", &env)
}

fn rs(src: &str) -> Ruleset {
    compile(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

/// A packet of protocol `p` (TCP: flags `flags`; ICMP: type `dport >> 8`,
/// code `dport & 0xff`).
#[allow(clippy::too_many_arguments)]
fn packet(
    p: u8,
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: u8,
    ifx: u16,
    out: bool,
) -> PacketInfo {
    let (af, src) = ip(src);
    let (_, dst) = ip(dst);
    let l4 = match p {
        proto::TCP => L4Info::Tcp(TcpInfo {
            flags,
            ..TcpInfo::default()
        }),
        proto::UDP => L4Info::Udp,
        proto::ICMP | proto::ICMPV6 => L4Info::Icmp(IcmpInfo {
            icmp_type: (dport >> 8) as u8,
            code: dport as u8,
            ..IcmpInfo::default()
        }),
        _ => L4Info::Other,
    };
    let ports = p == proto::TCP || p == proto::UDP;
    PacketInfo {
        af,
        proto: p,
        src,
        dst,
        sport: if ports { sport } else { 0 },
        dport: if ports { dport } else { 0 },
        ip_len: 60,
        ttl: 64,
        ifindex: IfIndex(ifx),
        dir: if out { Direction::Out } else { Direction::In },
        l4,
    }
}

/// Whether `r`'s own conditions on the indexed and cheap fields hold for
/// `pkt` (everything but tags, flags and ICMP, which the index never
/// looks at): a rule for which this holds must be a candidate.
fn could_match(r: &Rule, pkt: &PacketInfo, tables: &TableSet) -> bool {
    if let Some((ports, not)) = r.ifp {
        let on = pkt.ifindex.0 < 32 && ports & (1u32 << pkt.ifindex.0) != 0;
        if on == not {
            return false;
        }
    }
    let addr = |m: &compile::AddrMatch, a: &Addr| {
        let a = addr_bits(a);
        let hit = match m.kind {
            AddrKind::Any => true,
            AddrKind::Net { af, net, mask, .. } => af == pkt.af && a & mask == net,
            AddrKind::Table(i) => tables.get(i as usize).is_some_and(|t| t.matches(pkt.af, a)),
            AddrKind::Range { af, lo, hi } => af == pkt.af && lo <= a && a <= hi,
        };
        hit != m.neg
    };
    let ports = pkt.proto == proto::TCP || pkt.proto == proto::UDP;
    r.dir.is_none_or(|d| d == pkt.dir)
        && r.af.is_none_or(|a| a == pkt.af)
        && (r.proto == 0 || r.proto == pkt.proto)
        && addr(&r.src, &pkt.src)
        && addr(&r.dst, &pkt.dst)
        && (!ports || (r.src_port.matches(pkt.sport) && r.dst_port.matches(pkt.dport)))
}

/// The candidates the index gives `pkt` (its best field, whatever it
/// leaves).
fn candidates(ix: &RuleIndex, pkt: &PacketInfo) -> Vec<usize> {
    let (s, d) = (addr_bits(&pkt.src), addr_bits(&pkt.dst));
    ix.candidates(pkt, s, d, usize::MAX)
        .expect("a field is always chosen without a limit")
        .collect(ix.len())
}

fn assert_superset(r: &Ruleset, ix: &RuleIndex, tables: &TableSet, pkt: &PacketInfo) {
    let cands = candidates(ix, pkt);
    assert!(
        cands.windows(2).all(|w| w[0] < w[1]),
        "unordered: {cands:?}"
    );
    for (i, rule) in r.rules.iter().enumerate() {
        if rule.anchor_end.is_some() || could_match(rule, pkt, tables) {
            assert!(
                cands.contains(&i),
                "rule {i} `{}` can match {pkt:?} but is not a candidate ({cands:?})",
                r.rule_text(i)
            );
        }
    }
}

/// A ruleset large enough to be indexed, with every kind of address,
/// port and interface condition.
fn big_ruleset() -> Ruleset {
    let mut src = String::from("table <t> { 10.9.0.0/16, !10.9.9.0/24 }\ntable <d> persist\n");
    src.push_str("block all\n");
    for i in 0..40 {
        src.push_str(&format!(
            "pass in on lan0 proto tcp from 10.1.{i}.0/24 to any port {}\n",
            1000 + i
        ));
        src.push_str(&format!(
            "pass out on wan0 proto udp to 192.0.2.{i} port {}\n",
            2000 + i
        ));
    }
    src.push_str(concat!(
        "pass from <t>\n",
        "block from ! 10.0.0.0/8\n",
        "pass to 10.1.2.0 - 10.1.2.10\n",
        "pass from self\n",
        "pass in on ! lan0 proto tcp to port > 5000\n",
        "pass on grp to <d>\n",
        "pass inet6 from 2001:db8::/32 to 2001:db8:1::/48\n",
        "anchor \"a\" on wan0 {\n  pass quick proto udp from 10.1.5.0/24\n}\n",
        "pass inet proto icmp icmp-type echoreq\n",
    ));
    rs(&src)
}

#[test]
fn index_is_built_for_large_rulesets_only() {
    assert!(rs("pass\nblock from 10.0.0.1\n").index.is_none());
    let r = big_ruleset();
    assert!(r.len() >= INDEX_MIN_RULES);
    assert_eq!(r.index.as_ref().map(|ix| ix.len()), Some(r.len()));
}

#[test]
fn candidates_include_every_rule_that_can_match() {
    let r = big_ruleset();
    let tables = r.table_set();
    let ix = r.index.as_ref().unwrap();
    let addrs = [
        "10.1.5.7",
        "10.1.2.3",
        "10.1.2.11",
        "10.9.1.1",
        "10.9.9.9",
        "192.0.2.7",
        "192.0.2.200",
        "8.8.8.8",
    ];
    let addrs6 = ["2001:db8::1", "2001:db8:1::5", "fe80::1"];
    let ports = [0u16, 80, 1005, 2007, 5001, 65535];
    let mut checked = 0;
    for p in [proto::TCP, proto::UDP, proto::ICMP, 47] {
        for (s, d) in addrs
            .iter()
            .flat_map(|s| addrs.iter().map(move |d| (s, d)))
            .chain(
                addrs6
                    .iter()
                    .flat_map(|s| addrs6.iter().map(move |d| (s, d))),
            )
        {
            for &port in &ports {
                for ifx in [0u16, 1, 2, 40] {
                    for out in [false, true] {
                        let pkt = packet(p, s, port, d, port, tcp_flags::SYN, ifx, out);
                        assert_superset(&r, ix, &tables, &pkt);
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000);
}

#[test]
fn a_rule_missing_from_the_candidates_is_caught() {
    // The check above is not vacuous: a rule that matches but is not a
    // candidate of the chosen field makes it fail.
    let r = big_ruleset();
    let tables = r.table_set();
    let pkt = packet(
        proto::TCP,
        "10.1.5.7",
        40000,
        "8.8.8.8",
        1005,
        tcp_flags::SYN,
        0,
        false,
    );
    let ix = r.index.as_ref().unwrap();
    let cands = candidates(ix, &pkt);
    let want = r
        .rules
        .iter()
        .position(|x| matches!(x.src.kind, AddrKind::Net { net, .. } if net == addr_bits(&ip("10.1.5.0").1)))
        .unwrap();
    assert!(cands.contains(&want));
    // An index built as if that rule had another source and port, used
    // for this ruleset, misses it.
    let mut fewer = r.rules.clone();
    fewer[want].src.kind = AddrKind::Net {
        af: Af::Inet,
        net: addr_bits(&ip("172.16.0.0").1),
        mask: table::prefix_mask(16),
        len: 16,
    };
    fewer[want].dst_port.a = 9999;
    let stale = RuleIndex::build(&fewer);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_superset(&r, &stale, &tables, &pkt)
    }));
    assert!(caught.is_err(), "a missing candidate went unnoticed");
}

#[test]
fn large_rulesets_examine_few_rules() {
    // 1000 rules of which the packet's source hits one /24: the index
    // leaves that rule and the wildcard `pass all`.
    let mut src = String::new();
    for i in 0..999 {
        src.push_str(&format!(
            "pass in on lan0 proto tcp from 10.{}.{}.0/24 to any port 80\n",
            i >> 8,
            i & 0xff
        ));
    }
    src.push_str("block all\n");
    let r = rs(&src);
    let mut c = vec![RuleCounters::default(); r.len()];
    let pkt = packet(
        proto::TCP,
        "10.1.7.9",
        40000,
        "192.0.2.80",
        80,
        tcp_flags::SYN,
        0,
        false,
    );
    let d = r.evaluate(&pkt, &mut c);
    assert_eq!((d.action, d.rule), (Action::Block, Some(999)));
    assert_eq!(c.iter().map(|c| c.evaluations).sum::<u64>(), 2);
    assert_eq!((c[263].evaluations, c[999].packets), (1, 1));
    // Not from 10/8: only the last rule is examined.
    let mut c = vec![RuleCounters::default(); r.len()];
    let pkt = packet(
        proto::TCP,
        "192.168.1.1",
        40000,
        "192.0.2.80",
        80,
        tcp_flags::SYN,
        0,
        false,
    );
    assert_eq!(r.evaluate(&pkt, &mut c).rule, Some(999));
    assert_eq!(c.iter().map(|c| c.evaluations).sum::<u64>(), 1);
}

#[test]
fn table_changes_reach_indexed_rules() {
    let mut src = String::from("table <allow> persist\nblock all\n");
    for i in 0..100 {
        src.push_str(&format!("pass in proto tcp to 192.0.2.{i} port 22\n"));
    }
    src.push_str("pass in proto tcp from <allow> to 198.51.100.1 port 443\n");
    let r = rs(&src);
    assert!(r.index.is_some());
    let pkt = packet(
        proto::TCP,
        "203.0.113.9",
        40000,
        "198.51.100.1",
        443,
        tcp_flags::SYN,
        1,
        false,
    );
    let mut c = vec![RuleCounters::default(); r.len()];
    assert_eq!(r.evaluate(&pkt, &mut c).action, Action::Block);
    let set = r.table_set();
    let (i, _) = set.find("allow").unwrap();
    let t = Table::new(
        "allow".into(),
        TableFlags {
            persist: true,
            ..TableFlags::default()
        },
        &[parse_table_addr("203.0.113.0/24").unwrap()],
        0,
    );
    r.publish_tables(set.with_table(i, t)).unwrap();
    let d = r.evaluate(&pkt, &mut c);
    assert_eq!((d.action, d.rule), (Action::Pass, Some(101)));
}

// ---- differential property test: indexed == linear.

const ADDRS_V4: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.3",
    "10.1.2.4",
    "10.1.9.0/24",
    "192.0.2.0/24",
    "192.0.2.1",
    "192.0.2.200",
    "8.8.8.8",
    "! 10.1.0.0/16",
    "! 192.0.2.1",
    "10.1.2.0 - 10.1.2.5",
    "{ 10.1.2.3 192.0.2.1 }",
    "<t>",
    "! <t>",
    "<d>",
    "self",
    "grp",
    "grp:network",
];
const ADDRS_V6: &[&str] = &[
    "2001:db8::/32",
    "2001:db8::/64",
    "2001:db8::1",
    "2001:db8:0:1::9",
    "fe80::/10",
    "! 2001:db8::/48",
    "<t>",
];
const PORTS: &[&str] = &[
    "",
    "",
    " port 80",
    " port 22",
    " port 443",
    " port 53",
    " port 1000:2000",
    " port != 80",
    " port > 1024",
    " port { 22 80 }",
    " port 22 >< 443",
];
const IFACES: &[&str] = &[
    "",
    "",
    " on lan0",
    " on wan0",
    " on ! wan0",
    " on { lan0 wan0 }",
    " on grp",
];
const PROTOS: &[&str] = &[
    "",
    " proto tcp",
    " proto udp",
    " proto { tcp udp }",
    " proto icmp",
    " proto 47",
];
const DIRS: &[&str] = &["", " in", " out"];
const TAGS: &[&str] = &["", "", "", " tagged t1", " ! tagged t2", " tagged t2"];

/// One rule line: `(action, dir, quick, iface, proto, af, src, sport,
/// dst, dport, extra, tag, tagged)` choices.
#[allow(clippy::type_complexity)]
fn rule_line(
    (action, dir, quick, ifc, pr, v6): (u8, usize, bool, usize, usize, bool),
    (s, sp, d, dp): (usize, usize, usize, usize),
    (extra, tag, tagged): (u8, u8, usize),
) -> String {
    let addrs = if v6 { ADDRS_V6 } else { ADDRS_V4 };
    let proto_text = if v6 && PROTOS[pr] == " proto icmp" {
        " proto icmp6"
    } else {
        PROTOS[pr]
    };
    let ported = matches!(pr, 1..=3);
    let port = |i: usize| if ported { PORTS[i % PORTS.len()] } else { "" };
    let addr = |i: usize| {
        // Half the time `any`, so wildcards and networks mix.
        if i.is_multiple_of(2) {
            "any"
        } else {
            addrs[(i / 2) % addrs.len()]
        }
    };
    let action = match action % 6 {
        0 | 1 => "pass",
        2 => "block",
        3 => "block return",
        4 => "match",
        _ => "pass",
    };
    let af = match (v6, extra % 3) {
        (_, 0) => "",
        (false, _) => " inet",
        (true, _) => " inet6",
    };
    let mut line = format!(
        "{action}{}{}{}{af}{proto_text} from {}{} to {}{}",
        DIRS[dir],
        if quick { " quick" } else { "" },
        IFACES[ifc],
        addr(s),
        port(sp),
        addr(d),
        port(dp),
    );
    if action == "pass" && extra % 5 == 1 {
        line.push_str(" no state");
    }
    if pr == 1 && extra % 4 == 2 {
        line.push_str(" flags A/A");
    }
    if action == "match" && extra % 2 == 0 {
        line.push_str(" scrub (max-mss 1400)");
    }
    if action != "block" && action != "block return" {
        match tag % 4 {
            1 => line.push_str(" tag t1"),
            2 => line.push_str(" tag t2"),
            _ => {}
        }
    }
    line.push_str(TAGS[tagged % TAGS.len()]);
    line
}

fn line_strategy() -> impl Strategy<Value = String> {
    (
        (
            any::<u8>(),
            0..DIRS.len(),
            proptest::bool::weighted(0.15),
            0..IFACES.len(),
            0..PROTOS.len(),
            proptest::bool::weighted(0.25),
        ),
        (
            any::<usize>(),
            any::<usize>(),
            any::<usize>(),
            any::<usize>(),
        ),
        (any::<u8>(), any::<u8>(), any::<usize>()),
    )
        .prop_map(|(a, b, c)| rule_line(a, b, c))
}

const PRELUDE: &str = "table <t> { 10.1.0.0/16, !10.1.2.0/24, 10.1.2.4, 2001:db8::/64 }\n\
                       table <d> persist\n";

/// A ruleset of lines and anchors (`anchor [quick] [on lan0] { lines }`);
/// lines that do not compile alone are dropped.
fn ruleset_strategy() -> impl Strategy<Value = Ruleset> {
    let item = prop_oneof![
        8 => line_strategy().prop_map(|l| (l, None)),
        1 => (
            any::<u8>(),
            proptest::collection::vec(line_strategy(), 1..5)
        )
            .prop_map(|(k, lines)| (String::new(), Some((k, lines)))),
    ];
    proptest::collection::vec(item, 0..90).prop_map(|items| {
        let ok = |l: &str| compile(&format!("{PRELUDE}{l}\n")).is_ok();
        let mut src = String::from(PRELUDE);
        for (line, anchor) in items {
            match anchor {
                None if ok(&line) => {
                    src.push_str(&line);
                    src.push('\n');
                }
                None => {}
                Some((k, lines)) => {
                    src.push_str(&format!(
                        "anchor{}{} {{\n",
                        if k % 3 == 0 { " quick" } else { "" },
                        ["", " on lan0", " proto tcp", " from 10.1.0.0/16"][(k as usize / 3) % 4]
                    ));
                    // `match` is not allowed inside an anchor.
                    for l in lines.iter().filter(|l| !l.starts_with("match") && ok(l)) {
                        src.push_str(&format!("  {l}\n"));
                    }
                    src.push_str("}\n");
                }
            }
        }
        rs(&src)
    })
}

const V4: &[&str] = &[
    "10.1.2.3",
    "10.1.2.4",
    "10.1.2.200",
    "10.1.9.9",
    "10.0.0.5",
    "192.0.2.1",
    "192.0.2.200",
    "8.8.8.8",
];
const V6: &[&str] = &[
    "2001:db8::1",
    "2001:db8::5",
    "2001:db8:0:1::9",
    "fe80::1",
    "2001:dead::1",
];
const PKT_PORTS: &[u16] = &[0, 22, 53, 80, 443, 1000, 1500, 2000, 8080, 65535];

fn packet_strategy() -> impl Strategy<Value = (PacketInfo, u16)> {
    (
        (any::<bool>(), any::<usize>(), any::<usize>(), 0u8..4),
        (any::<usize>(), any::<usize>(), any::<u8>()),
        (0u16..4, any::<bool>(), 0u16..3),
    )
        .prop_map(|((v6, s, d, kind), (sp, dp, flags), (ifx, out, tag))| {
            let (s, d) = if v6 {
                (V6[s % V6.len()], V6[d % V6.len()])
            } else {
                (V4[s % V4.len()], V4[d % V4.len()])
            };
            let p = match kind {
                0 => proto::TCP,
                1 => proto::UDP,
                2 if v6 => proto::ICMPV6,
                2 => proto::ICMP,
                _ => 47,
            };
            let flags = [tcp_flags::SYN, tcp_flags::ACK, flags][flags as usize % 3];
            let dport = if kind == 2 {
                [0x0800u16, 0x0000, 0x0303, 0x8000, 0x8100][dp % 5]
            } else {
                PKT_PORTS[dp % PKT_PORTS.len()]
            };
            let ifx = if ifx == 3 { 40 } else { ifx };
            let pkt = packet(
                p,
                s,
                PKT_PORTS[sp % PKT_PORTS.len()],
                d,
                dport,
                flags,
                ifx,
                out,
            );
            (pkt, tag)
        })
}

/// The same ruleset's tables with `<d>` filled and `<t>` changed, as
/// `dpfctl -T` would at run time.
fn changed_tables(r: &Ruleset) -> TableSet {
    let set = r.table_set();
    let entries =
        |list: &[&str]| -> Vec<_> { list.iter().map(|a| parse_table_addr(a).unwrap()).collect() };
    let (d, _) = set.find("d").unwrap();
    let (t, _) = set.find("t").unwrap();
    let flags = TableFlags {
        persist: true,
        ..TableFlags::default()
    };
    set.with_table(
        d,
        Table::new(
            "d".into(),
            flags,
            &entries(&["10.1.2.0/24", "2001:db8::5"]),
            0,
        ),
    )
    .with_table(
        t,
        Table::new("t".into(), flags, &entries(&["8.8.8.8", "192.0.2.0/25"]), 0),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn indexed_evaluation_equals_linear(
        r in ruleset_strategy(),
        pkts in proptest::collection::vec(packet_strategy(), 1..24),
    ) {
        let ix = RuleIndex::build(&r.rules);
        for tables in [r.table_set(), std::sync::Arc::new(changed_tables(&r))] {
            let mut lin = vec![RuleCounters::default(); r.len()];
            let mut idx = vec![RuleCounters::default(); r.len()];
            for (pkt, tag) in &pkts {
                let want = r.evaluate_linear(pkt, &tables, *tag, &mut lin);
                let got = r.evaluate_indexed(&ix, pkt, &tables, *tag, &mut idx);
                prop_assert_eq!(got, want, "packet {:?} tag {}", pkt, tag);
                // What the pipeline calls (the index when the ruleset is
                // large enough, and when it prunes enough).
                let mut c = vec![RuleCounters::default(); r.len()];
                prop_assert_eq!(r.evaluate_with(pkt, &tables, *tag, &mut c), want);
                assert_superset(&r, &ix, &tables, pkt);
            }
            for (i, (l, x)) in lin.iter().zip(&idx).enumerate() {
                let strip = |c: &RuleCounters| RuleCounters { evaluations: 0, ..*c };
                prop_assert_eq!(strip(l), strip(x), "rule {} counters", i);
                // A rule that decided or matched was examined.
                prop_assert!(x.packets == 0 || x.evaluations > 0);
            }
        }
    }
}
