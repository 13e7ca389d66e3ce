//! Tests of the scrub options (`scrub (...)`, `set tos`) and of adaptive
//! timeouts (`set timeout adaptive.*`, `keep state (adaptive.* N)`, the
//! values pfctl derives from `set limit states` and `max`): what pfctl
//! accepts and refuses (with positions), the canonical text, and how
//! evaluation combines `match` rules with the deciding rule.

use super::*;
use crate::flow::{proto, Direction, L4Info, PacketInfo};
use crate::state::{state_flags, Scrub};
use crate::timeouts::TimeoutScale;

const IFS: &[(&str, IfIndex)] = &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))];

fn compile(src: &str) -> Result<Ruleset, RuleError> {
    let env = RuleEnv {
        interfaces: IFS,
        self_addrs: &[],
        names: &[],
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

fn udp_out() -> PacketInfo {
    PacketInfo {
        af: Af::Inet,
        proto: proto::UDP,
        src: Addr::from_ip("10.1.0.7".parse().unwrap()).1,
        dst: Addr::from_ip("192.0.2.9".parse().unwrap()).1,
        sport: 5000,
        dport: 53,
        ip_len: 40,
        ttl: 64,
        ifindex: IfIndex(1),
        dir: Direction::Out,
        l4: L4Info::Udp,
    }
}

fn eval(r: &Ruleset, p: &PacketInfo) -> Decision {
    let mut c = vec![RuleCounters::default(); r.len()];
    r.evaluate(p, &mut c)
}

#[test]
fn scrub_options_parse_and_print_as_pfctl() {
    let r = rs(
        "match out on wan0 scrub (no-df random-id, min-ttl 64, max-mss 1440)\n\
                pass out scrub (set-tos 0x10)\n\
                pass in set tos af11\n\
                pass in set ( tos 40 )\n\
                match scrub (max-mss 0)",
    );
    assert_eq!(
        r.rule_text(0),
        "match out on wan0 all scrub (no-df, random-id, min-ttl 64, max-mss 1440)"
    );
    assert_eq!(r.rule_text(1), "pass out all flags S/SA set tos 0x10");
    assert_eq!(r.rule_text(2), "pass in all flags S/SA set tos 0x28");
    assert_eq!(r.rule_text(3), "pass in all flags S/SA set tos 0x28");
    // max-mss 0 is no clamp (pf: only a non-zero max_mss is set).
    assert_eq!(r.rule_text(4), "match all");
    // The printed text parses back to the same rule.
    let again = rs(r.rule_text(0));
    assert_eq!(again.rule_text(0), r.rule_text(0));
}

#[test]
fn scrub_errors_name_the_word() {
    assert_eq!(
        err("pass scrub (min-ttl 256)"),
        "pf.conf:1:21: illegal min-ttl value 256"
    );
    assert_eq!(
        err("pass scrub (max-mss 70000)"),
        "pf.conf:1:21: illegal max-mss value 70000"
    );
    assert_eq!(
        err("pass set tos bogus"),
        "pf.conf:1:14: illegal tos value bogus"
    );
    assert_eq!(
        err("pass set tos 0x100"),
        "pf.conf:1:14: illegal tos value 0x100"
    );
    assert_eq!(
        err("pass scrub (no-df, no-df)"),
        "pf.conf:1:20: no-df cannot be respecified"
    );
    assert_eq!(
        err("pass scrub (reassemble tcp)"),
        "pf.conf:1:13: scrub (reassemble tcp) is not supported by dpf (no TCP normalisation: timestamp modulation, PAWS)"
    );
    assert!(err("pass scrub (reassemble udp)").contains("supports only tcp"));
    assert!(err("pass scrub (fragment reassemble)").contains("not supported"));
    assert!(err("pass scrub (bogus)").contains("unknown scrub option 'bogus'"));
    assert!(err("pass scrub ()").contains("at least one option"));
    assert!(err("block scrub (no-df)").contains("doesn't make sense"));
    assert!(err("pass set prio 3").contains("set prio is not supported"));
    assert!(err("pass set queue q").contains("set queue is not supported"));
    assert!(err("pass set (tos 1, tos 2)").contains("tos cannot be respecified"));
    assert_eq!(
        err("pass no-df"),
        "pf.conf:1:6: 'no-df' is a scrub option: write scrub (no-df ...)"
    );
    assert!(err("anchor \"a\" scrub (no-df) {\npass\n}").contains("anchors"));
    // pf has had no `scrub` statement since OpenBSD 4.6.
    assert_eq!(
        err("scrub in all"),
        "pf.conf:1:1: 'scrub' is not supported by dpf"
    );
}

#[test]
fn match_rules_accumulate_scrub_and_the_deciding_rule_wins() {
    // pf_rule_to_actions: flags or'd, each value from the last rule that
    // sets it.
    let r = rs("match out scrub (min-ttl 10, max-mss 1400, no-df)\n\
                match out scrub (min-ttl 20) set tos 0x08\n\
                pass out scrub (random-id, max-mss 1300)");
    let d = eval(&r, &udp_out());
    assert_eq!(
        d.scrub_flags,
        state_flags::NODF | state_flags::RANDOMID | state_flags::SETTOS
    );
    assert_eq!(
        d.scrub,
        Scrub {
            max_mss: 1300,
            min_ttl: 20,
            set_tos: 0x08
        }
    );
    // A later match rule overrides an earlier one; a deciding rule
    // without scrub keeps what the match rules set.
    let r = rs("match out scrub (max-mss 1400)\nmatch out scrub (max-mss 1200)\npass out");
    let d = eval(&r, &udp_out());
    assert_eq!((d.scrub_flags, d.scrub.max_mss), (0, 1200));
    // A match rule that does not match sets nothing; nor does a block.
    let r = rs("match in scrub (max-mss 1400)\npass out");
    assert_eq!(eval(&r, &udp_out()).scrub, Scrub::NONE);
    // No rule decides: the match rules' options still apply (pf's
    // default rule keeps the actions).
    let r = rs("match out scrub (no-df)");
    assert_eq!(eval(&r, &udp_out()).scrub_flags, state_flags::NODF);
}

#[test]
fn adaptive_timeouts_parse_with_pfctls_defaults() {
    // pf's defaults.
    assert_eq!(rs("pass").options.timeouts.adaptive(), (60_000, 120_000));
    // set limit states without adaptive values: 60% and 120% of it.
    assert_eq!(
        rs("set limit states 1000\npass")
            .options
            .timeouts
            .adaptive(),
        (600, 1200)
    );
    // Explicit values win; one alone leaves the other at pf's default.
    let r = rs("set limit states 1000\nset timeout { adaptive.start 10, adaptive.end 20 }");
    assert_eq!(r.options.timeouts.adaptive(), (10, 20));
    let r = rs("set limit states 1000\nset timeout adaptive.end 5000");
    assert_eq!(r.options.timeouts.adaptive(), (60_000, 5000));
    assert!(err("set timeout adaptive.start x").contains("not a number"));
    assert!(err("set timeout interval 5").contains("not supported"));
}

#[test]
fn per_rule_adaptive_counts_the_rules_states() {
    let r = rs(
        "pass proto udp keep state (adaptive.start 4, adaptive.end 10)\n\
                pass proto tcp keep state (max 100)\n\
                pass proto icmp keep state (max 100, adaptive.start 0)\n\
                pass proto gre",
    );
    assert_eq!(
        r.rule_text(0),
        "pass proto udp all keep state (adaptive.start 4, adaptive.end 10)"
    );
    // `max` gives 60% / 120% of it (pfctl), printed as pfctl prints it.
    assert_eq!(
        r.rule_text(1),
        "pass proto tcp all flags S/SA keep state (max 100, adaptive.start 60, adaptive.end 120)"
    );
    assert!(r.counts_rule_states(0) && r.counts_rule_states(1));
    // adaptive.start 0 on the rule: the global values and count apply.
    assert!(!r.has_rule_timeouts(2) || r.rule_timeout_scale(2).is_none());
    assert!(!r.counts_rule_states(3) && r.rule_timeout_scale(3).is_none());
    assert_eq!(r.rule_timeout_scale(0), Some(TimeoutScale::NONE));
    for _ in 0..7 {
        assert!(r.reserve_rule_state(0));
    }
    // 7 states between 4 and 10: halved.
    assert_eq!(r.rule_timeout_scale(0).map(|s| s.scaled(60)), Some(30));
    r.release_rule_state(0);
    assert_eq!(r.rule_states(0), 6);
    assert!(err("pass keep state (adaptive.end 1, adaptive.end 2)").contains("multiple"));
}
