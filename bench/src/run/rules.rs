//! Generated rulesets for `bench sweep rules`.
//!
//! A ruleset of `n` rules is the profile's own rules (from the generator's
//! sidecar) with `n` filler rules inserted after `block all`, before the
//! profile's `pass` rules. Every filler is `pass in on lan` for the
//! profile's address family, protocol and client prefix, to its own host
//! in a prefix the traffic never uses (10.0.0.0/8, 2001:db8::/32), so no
//! filler matches and consecutive fillers differ only in the destination:
//! pf's skip steps cannot jump over them, and a packet arriving on `lan`
//! is compared with each of them before the last `pass` rule decides. (A
//! packet evaluated `out on wan` skips them all at once on the interface
//! field, as it would in pf.)
//!
//! With `keep state`, only the first pass of the looped pcap evaluates the
//! ruleset: every later packet of a flow hits its state. So by default the
//! profile's pass rules are made `no state`, and every packet walks the
//! whole ruleset; `--keep-state` measures the stateful variant instead.
//!
//! Invariants: filler `i` is distinct from filler `j != i` for every
//! `i, j < 2^24`; the output always ends with the profile's pass rules.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Largest filler count (distinct /32s in 10.0.0.0/8 minus network and
/// broadcast).
pub const MAX_FILLERS: usize = (1 << 24) - 2;

/// Filler rule `i`.
pub fn filler(i: usize, ipv6: bool, proto: &str, from: &str, port: u16) -> String {
    // i + 1 skips the network address.
    let host = (i + 1) as u32;
    let to = if ipv6 {
        Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, (host >> 16) as u16, host as u16).to_string()
    } else {
        Ipv4Addr::from(0x0a00_0000 | host).to_string()
    };
    let af = if ipv6 { "inet6" } else { "inet" };
    format!("pass in on lan {af} proto {proto} from {from} to {to} port {port}")
}

/// Why a sweep ruleset cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SweepRulesError {
    /// The profile's rules have no `pass in on lan` rule to copy from.
    #[error("the profile's rules have no `pass in on lan ... proto P from A to B port N` rule")]
    NoPassRule,
    /// Too many fillers.
    #[error("{0} filler rules is more than {MAX_FILLERS}")]
    TooMany(usize),
}

/// The ruleset with `fillers` non-matching rules before the profile's
/// `pass` rules (see the module doc). `profile_rules` are the generator's
/// lines: `block all`, then `pass` rules.
pub fn sweep_ruleset(
    profile_rules: &[String],
    fillers: usize,
    keep_state: bool,
) -> Result<String, SweepRulesError> {
    if fillers > MAX_FILLERS {
        return Err(SweepRulesError::TooMany(fillers));
    }
    // Copy af, proto, source and port from the first `pass in on lan` rule.
    let template = profile_rules
        .iter()
        .find(|r| r.starts_with("pass in on lan"))
        .ok_or(SweepRulesError::NoPassRule)?;
    let words: Vec<&str> = template.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
            .copied()
    };
    let af = words
        .get(4)
        .copied()
        .filter(|w| *w == "inet" || *w == "inet6");
    let (Some(af), Some(proto), Some(from)) = (af, after("proto"), after("from")) else {
        return Err(SweepRulesError::NoPassRule);
    };
    let port = words
        .iter()
        .rposition(|w| *w == "port")
        .and_then(|i| words.get(i + 1))
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or(SweepRulesError::NoPassRule)?;
    let ipv6 = af == "inet6";

    let mut out = String::new();
    let _ = writeln!(
        out,
        "# bench sweep rules: {fillers} non-matching rules before the pass rules ({})",
        if keep_state { "keep state" } else { "no state" }
    );
    let mut fillers_written = false;
    for rule in profile_rules {
        let is_pass = rule.starts_with("pass");
        if is_pass && !fillers_written {
            for i in 0..fillers {
                let _ = writeln!(out, "{}", filler(i, ipv6, proto, from, port));
            }
            fillers_written = true;
        }
        if is_pass && !keep_state {
            let _ = writeln!(out, "{}", rule.replace(" keep state", " no state"));
        } else {
            let _ = writeln!(out, "{rule}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::plan::{GenConfig, Plan, Profile};

    fn rules(ipv6: bool) -> Vec<String> {
        Plan::new(GenConfig {
            profile: Profile::NewConn,
            flows: 10,
            frame_size: 64,
            seed: 1,
            ipv6,
        })
        .unwrap()
        .rules()
    }

    #[test]
    fn fillers_go_between_block_and_pass() {
        let text = sweep_ruleset(&rules(false), 3, false).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 1 + 3 + 2, "{text}");
        assert_eq!(lines[0], "block all");
        assert_eq!(
            lines[1],
            "pass in on lan inet proto tcp from 198.18.0.0/16 to 10.0.0.1 port 80"
        );
        assert_eq!(
            lines[3],
            "pass in on lan inet proto tcp from 198.18.0.0/16 to 10.0.0.3 port 80"
        );
        assert!(lines[4].starts_with("pass in on lan inet proto tcp from 198.18.0.0/16 to 198.19.0.0/16 port 80 flags S/SA no state"));
        assert!(lines[5].starts_with("pass out on wan") && lines[5].ends_with("no state"));
        let kept = sweep_ruleset(&rules(false), 0, true).unwrap();
        assert!(kept
            .lines()
            .filter(|l| l.starts_with("pass"))
            .all(|l| l.ends_with("keep state")));
        assert_eq!(kept.lines().filter(|l| l.starts_with("pass")).count(), 2);
    }

    #[test]
    fn fillers_are_distinct_and_v6_works() {
        assert_eq!(
            filler(255, false, "tcp", "a", 80).split(' ').nth(10),
            Some("10.0.1.0")
        );
        assert_ne!(
            filler(0, false, "tcp", "a", 80),
            filler(1, false, "tcp", "a", 80)
        );
        let text = sweep_ruleset(&rules(true), 70_000, false).unwrap();
        let fillers: std::collections::HashSet<&str> =
            text.lines().filter(|l| l.contains("2001:db8::")).collect();
        assert_eq!(fillers.len(), 70_000);
        assert!(text.contains("to 2001:db8::1:1 port 80"));
        assert!(text.contains("pass in on lan inet6 proto tcp from 2001:2:0:1::/64"));
    }

    #[test]
    fn refuses_what_it_cannot_build() {
        assert_eq!(
            sweep_ruleset(&["block all".to_string()], 1, false),
            Err(SweepRulesError::NoPassRule)
        );
        assert_eq!(
            sweep_ruleset(&rules(false), MAX_FILLERS + 1, false),
            Err(SweepRulesError::TooMany(MAX_FILLERS + 1))
        );
    }
}
