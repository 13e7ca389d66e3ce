//! Tests of `match`, `tag`/`tagged` and the translation options
//! (`nat-to`, `rdr-to`, `binat-to`): what pfctl accepts and refuses (with
//! positions), the canonical text, and how evaluation combines them.

use super::*;
use crate::flow::{proto, tcp_flags, Direction, L4Info, PacketInfo, TcpInfo};

const IFS: &[(&str, IfIndex)] = &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))];

fn names() -> Vec<NamedInterface> {
    let a = |s: &str| Addr::from_ip(s.parse().unwrap()).1;
    vec![
        NamedInterface {
            name: "lan0".into(),
            ports: 1,
            addrs: vec![(Af::Inet, a("10.1.0.1"), 24)],
        },
        NamedInterface {
            name: "wan0".into(),
            ports: 2,
            addrs: vec![
                (Af::Inet, a("192.0.2.1"), 24),
                (Af::Inet6, a("2001:db8::1"), 64),
            ],
        },
        NamedInterface {
            name: "carp2".into(),
            ports: 2,
            addrs: vec![(Af::Inet, a("192.0.2.254"), 24)],
        },
    ]
}

fn compile(src: &str) -> Result<Ruleset, RuleError> {
    let names = names();
    let env = RuleEnv {
        interfaces: IFS,
        self_addrs: &[],
        names: &names,
    };
    Ruleset::compile(src, "pf.conf", &env)
}

fn rs(src: &str) -> Ruleset {
    compile(src).unwrap_or_else(|e| panic!("{e}\n{src}"))
}

fn err(src: &str) -> String {
    match compile(src) {
        Ok(_) => panic!("expected an error:\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn v4(s: &str) -> Addr {
    Addr::from_ip(s.parse().unwrap()).1
}

fn syn(port: u16, dir: Direction, src: &str, dst: &str, dport: u16) -> PacketInfo {
    PacketInfo {
        af: Af::Inet,
        proto: proto::TCP,
        src: v4(src),
        dst: v4(dst),
        sport: 40000,
        dport,
        ip_len: 40,
        ttl: 64,
        ifindex: IfIndex(port),
        dir,
        l4: L4Info::Tcp(TcpInfo {
            flags: tcp_flags::SYN,
            ..Default::default()
        }),
    }
}

#[test]
fn pfctl_refuses_translation_in_the_wrong_direction_or_without_state() {
    assert_eq!(
        err("pass in on wan0 nat-to 192.0.2.1"),
        "pf.conf:1:17: nat-to can only be used outbound"
    );
    assert_eq!(
        err("pass out on lan0 rdr-to 10.1.0.5"),
        "pf.conf:1:18: rdr-to can only be used inbound"
    );
    assert_eq!(
        err("pass out on wan0 nat-to 192.0.2.1 no state"),
        "pf.conf:1:1: nat-to and rdr-to require keep state"
    );
    assert!(err("block out on wan0 nat-to 192.0.2.1").contains("doesn't make sense"));
    assert!(err("match out on wan0 nat-to 192.0.2.1 keep state").contains("match rules"));
    assert!(err("pass out on wan0 nat-to 192.0.2.1 nat-to 192.0.2.2").contains("redefined"));
    assert!(err("pass out on wan0 nat-to any").contains("'any'"));
    assert!(err("pass out on wan0 nat-to ! 192.0.2.1").contains("negated"));
    assert!(err("pass out on wan0 nat-to <nope>").contains("not defined"));
}

#[test]
fn refused_pool_options_say_not_supported() {
    assert!(err("pass out on wan0 nat-to 192.0.2.0/24 least-states").contains("not supported"));
    assert!(err("pass in on wan0 rdr-to 10.1.0.5 static-port").contains("static-port"));
    assert!(err("pass out on wan0 nat-to { 192.0.2.1 192.0.2.2 } bitmask").contains("bitmask"));
    assert!(err("pass out on wan0 nat-to 192.0.2.1 random round-robin").contains("redefined"));
    assert!(err("pass out on wan0 nat-to 192.0.2.0/24 source-hash 0x1234").contains("128 bits"));
    assert!(err("pass out on wan0 nat-to 192.0.2.1 port 70000").contains("illegal port"));
    assert!(err("pass out on wan0 nat-to 192.0.2.1 port 2000:1000").contains("invalid port range"));
}

#[test]
fn binat_needs_a_single_source_and_target_of_one_size() {
    assert!(err("pass on wan0 from any binat-to 192.0.2.5").contains("single address"));
    assert!(
        err("pass on wan0 from 10.1.0.0/24 binat-to 192.0.2.5").contains("same family and size")
    );
    assert!(err("pass in on wan0 from 10.1.0.5 binat-to 192.0.2.5").contains("outbound"));
    let r = rs("pass on wan0 from 10.1.0.5 binat-to 192.0.2.5");
    assert_eq!(r.len(), 2, "an outbound nat-to and an inbound rdr-to");
    assert_eq!(
        r.rule_text(0),
        "pass out on wan0 inet from 10.1.0.5 to any flags S/SA nat-to 192.0.2.5 bitmask static-port"
    );
    assert_eq!(
        r.rule_text(1),
        "pass in on wan0 inet from any to 192.0.2.5 flags S/SA rdr-to 10.1.0.5 bitmask"
    );
}

#[test]
fn texts_show_pools_tags_and_match() {
    let r = rs("match out on wan0 inet from 10.1.0.0/24 to any nat-to (wan0) port 1024:65535 source-hash \"k\"\n\
                pass in on lan0 tag LAN\n\
                pass out on wan0 ! tagged OTHER\n\
                pass in on wan0 proto tcp to carp2 port 80 rdr-to { 10.1.0.5, 10.1.0.6 } port 8080 round-robin");
    assert!(r
        .rule_text(0)
        .starts_with("match out on wan0 inet from 10.1.0.0/24 to any"));
    assert!(
        r.rule_text(0)
            .ends_with("nat-to (wan0) port 1024:65535 source-hash 0x")
            || r.rule_text(0)
                .contains("nat-to wan0 port 1024:65535 source-hash 0x"),
        "{}",
        r.rule_text(0)
    );
    assert!(r.rule_text(1).ends_with("tag LAN"), "{}", r.rule_text(1));
    assert!(
        r.rule_text(2).ends_with("! tagged OTHER"),
        "{}",
        r.rule_text(2)
    );
    assert!(
        r.rule_text(3)
            .ends_with("rdr-to { 10.1.0.5, 10.1.0.6 } port 8080 round-robin"),
        "{}",
        r.rule_text(3)
    );
    assert!(r.has_translation());
    assert!(!rs("pass all").has_translation());
}

#[test]
fn match_rules_set_options_without_deciding() {
    let r = rs("block all\n\
                match out on wan0 from 10.1.0.0/24 nat-to 192.0.2.1\n\
                pass out on wan0");
    let mut c = vec![RuleCounters::default(); r.len()];
    let d = r.evaluate(
        &syn(1, Direction::Out, "10.1.0.7", "198.51.100.1", 80),
        &mut c,
    );
    assert_eq!(
        (d.action, d.rule),
        (Action::Pass, Some(2)),
        "the pass rule decides"
    );
    assert_eq!(d.nat, Some(0), "the match rule's nat-to applies");
    assert_eq!(
        c[1].packets, 1,
        "a match rule counts the packets it matched"
    );
    // A block after the match still blocks; the default pass keeps the
    // match rule's options.
    let r = rs("match out on wan0 nat-to 192.0.2.1\nblock out on wan0 proto udp");
    let d = r.evaluate(
        &syn(1, Direction::Out, "10.1.0.7", "198.51.100.1", 80),
        &mut c,
    );
    assert_eq!((d.action, d.rule, d.nat), (Action::Pass, None, Some(0)));
    // The deciding rule's own nat-to wins over a match rule's.
    let r = rs("match out on wan0 nat-to 192.0.2.1\npass out on wan0 nat-to 192.0.2.2");
    let d = r.evaluate(
        &syn(1, Direction::Out, "10.1.0.7", "198.51.100.1", 80),
        &mut c,
    );
    assert_eq!(d.nat, Some(1));
    assert_eq!(
        r.pool(1)
            .unwrap()
            .map_addr(Af::Inet, &v4("10.1.0.7"), &v4("10.1.0.7"), 0),
        Some(v4("192.0.2.2"))
    );
    // A quick match rule ends the evaluation: the default decides.
    let r = rs("match out quick on wan0 nat-to 192.0.2.1\nblock all");
    let d = r.evaluate(
        &syn(1, Direction::Out, "10.1.0.7", "198.51.100.1", 80),
        &mut c,
    );
    assert_eq!((d.action, d.rule, d.nat), (Action::Pass, None, Some(0)));
}

#[test]
fn tags_set_by_one_pass_are_seen_by_the_next() {
    let r = rs("block all\npass in on lan0 tag LAN\npass out on wan0 tagged LAN\n");
    let mut c = vec![RuleCounters::default(); r.len()];
    let d_in = r.evaluate(
        &syn(0, Direction::In, "10.1.0.7", "198.51.100.1", 80),
        &mut c,
    );
    assert_eq!(d_in.action, Action::Pass);
    assert_ne!(d_in.tag, 0);
    assert_eq!(r.tag_name(d_in.tag), Some("LAN"));
    let out = syn(1, Direction::Out, "10.1.0.7", "198.51.100.1", 80);
    assert_eq!(
        r.evaluate_tagged(&out, d_in.tag, &mut c).action,
        Action::Pass
    );
    assert_eq!(r.evaluate_tagged(&out, 0, &mut c).action, Action::Block);
    // A tag set earlier in the same evaluation counts (pf_match_tag).
    let r = rs("block all\nmatch in tag A\npass in tagged A");
    let d = r.evaluate(
        &syn(0, Direction::In, "10.1.0.7", "198.51.100.1", 80),
        &mut c,
    );
    assert_eq!(d.action, Action::Pass);
}

#[test]
fn rdr_port_maps_relative_to_the_rule_port() {
    let r = rs("pass in on wan0 proto tcp to 192.0.2.1 port 8000:8010 rdr-to 10.1.0.5 port 9000:*");
    let mut c = vec![RuleCounters::default(); r.len()];
    let d = r.evaluate(
        &syn(1, Direction::In, "198.51.100.1", "192.0.2.1", 8004),
        &mut c,
    );
    let pool = r.pool(d.rdr.unwrap()).unwrap();
    assert_eq!(d.rdr_port_base, 8000);
    assert_eq!(pool.rdr_port(8004, d.rdr_port_base), 9004);
}

#[test]
fn a_pool_of_another_family_leaves_no_rule() {
    // The IPv6-only rule cannot use an IPv4 pool: no combination is left.
    assert!(err("pass out on wan0 inet6 nat-to 192.0.2.1").contains("no valid combination"));
    // Without a family, the pool's decides.
    let r = rs("pass out on wan0 nat-to 192.0.2.1");
    assert!(
        r.rule_text(0).starts_with("pass out on wan0 inet "),
        "{}",
        r.rule_text(0)
    );
}

#[test]
fn route_to_and_reply_to_parse_print_and_refuse_as_pfctl() {
    let r = rs(
        "pass in on lan0 from 10.1.0.8 route-to (wan0 192.0.2.254)\n\
                pass in on wan0 proto tcp to port 22 reply-to (wan0 192.0.2.254)\n\
                pass in on lan0 from 10.9.9.0/24 route-to { (wan0 192.0.2.253), (wan0 192.0.2.254) } random",
    );
    assert!(r.has_routes());
    assert!(
        r.rule_text(0).ends_with("route-to (wan0 192.0.2.254)"),
        "{}",
        r.rule_text(0)
    );
    assert!(
        r.rule_text(1).ends_with("reply-to (wan0 192.0.2.254)"),
        "{}",
        r.rule_text(1)
    );
    assert!(
        r.rule_text(2)
            .ends_with("route-to { (wan0 192.0.2.253), (wan0 192.0.2.254) } random"),
        "{}",
        r.rule_text(2)
    );
    let mut c = vec![RuleCounters::default(); r.len()];
    let d = r.evaluate(
        &syn(0, Direction::In, "10.1.0.8", "198.51.100.1", 80),
        &mut c,
    );
    let rt = r.route(d.route.unwrap()).unwrap();
    assert_eq!(rt.kind, crate::state::route_kind::ROUTE_TO);
    assert_eq!(
        rt.choose(Af::Inet, &v4("10.1.0.8"), 0),
        Some((Some(1), Some(v4("192.0.2.254"))))
    );
    assert!(err("match in route-to (wan0 192.0.2.254)").contains("must not be used on match rules"));
    assert!(err("pass in dup-to (wan0 192.0.2.254)").contains("not supported"));
    assert!(err("pass in route-to (wan0 192.0.2.0/24)").contains("single address"));
    assert!(err("pass in route-to (nope0 192.0.2.1)").contains("unknown interface"));
    assert!(err("block in route-to (wan0 192.0.2.1)").contains("doesn't make sense"));
    assert!(
        err("pass in route-to (wan0 192.0.2.1) reply-to (wan0 192.0.2.1)").contains("redefined")
    );
    // A block decision carries no route.
    let r = rs("block in on lan0\npass in on lan0 from 10.9.9.9 route-to (wan0 192.0.2.254)");
    let d = r.evaluate(
        &syn(0, Direction::In, "10.1.0.8", "198.51.100.1", 80),
        &mut c,
    );
    assert_eq!((d.action, d.route), (Action::Block, None));
}

#[test]
fn modulate_state_is_keep_state_with_modulation() {
    let r = rs("pass in on lan0 proto tcp modulate state (max 10)");
    assert!(
        r.rule_text(0).contains("modulate state (max 10, "),
        "{}",
        r.rule_text(0)
    );
    let mut c = vec![RuleCounters::default(); r.len()];
    let d = r.evaluate(
        &syn(0, Direction::In, "10.1.0.7", "198.51.100.1", 80),
        &mut c,
    );
    assert!(d.keep_state && d.modulate);
    assert!(err("pass in modulate state (sloppy)")
        .contains("cannot be used with synproxy state or modulate state"));
    assert!(err("pass in keep state modulate state").contains("redefined"));
    assert!(err("pass in synproxy state keep state").contains("redefined"));
}

#[test]
fn sticky_address_keeps_a_source_on_one_address() {
    let r = rs(
        "pass out on wan0 nat-to { 192.0.2.1, 192.0.2.2, 192.0.2.3 } round-robin sticky-address",
    );
    assert!(
        r.rule_text(0).ends_with("round-robin sticky-address"),
        "{}",
        r.rule_text(0)
    );
    let pool = r.pool(0).unwrap();
    for n in 0..20u8 {
        let src = Addr::v4([10, 1, 0, n]);
        let first = pool.map_addr(Af::Inet, &src, &src, 1);
        for k in 0..5 {
            assert_eq!(pool.map_addr(Af::Inet, &src, &src, k), first, "source {n}");
        }
    }
    // Without it, round-robin moves on.
    let r = rs("pass out on wan0 nat-to { 192.0.2.1, 192.0.2.2 } round-robin");
    let pool = r.pool(0).unwrap();
    let src = Addr::v4([10, 1, 0, 9]);
    assert_ne!(
        pool.map_addr(Af::Inet, &src, &src, 0),
        pool.map_addr(Af::Inet, &src, &src, 0)
    );
}

#[test]
fn pf_options_dpf_does_not_offer_are_refused_by_name() {
    for (rule, word) in [
        ("pass in divert-to 127.0.0.1 port 8080", "divert-to"),
        ("pass in queue std", "queue"),
        ("pass in rtable 1", "rtable"),
        ("pass in proto tcp user root", "user"),
        ("pass in af-to inet6 from 2001:db8::1", "af-to"),
        ("pass in probability 50%", "probability"),
    ] {
        let e = err(rule);
        assert!(
            e.contains(&format!("'{word}' is not supported by dpf")),
            "{rule}: {e}"
        );
    }
}
