//! Rule evaluation: pf's `pf_test_rule` loop over the compiled rules.
//!
//! Each rule is tested field by field in pf's order (interface, direction,
//! family, protocol, source, destination, then ports for TCP/UDP, flags for
//! TCP, type/code for ICMP). A mismatch on a field that has a skip step jumps
//! to the next rule whose value of that field differs; other mismatches go
//! to the next rule. The last match wins unless a matching rule is `quick`.
//! A matching anchor rule enters its rules (a fixed-size stack, no
//! allocation); a mismatching one jumps past them.
//!
//! Rulesets of `index::INDEX_MIN_RULES` rules or more carry a `RuleIndex`:
//! the same loop then visits only the packet's candidate rules (the
//! [`Walk`] it is given jumps from each rule number it would go to, to the
//! first candidate at or after it). Non-candidates cannot match, so the
//! decision, the `packets`/`bytes` counters and the tag/translation
//! options are those of the linear walk; `evaluations` counts the rules
//! actually examined, so it is lower for rules the index ruled out (as for
//! rules passed over by a skip step).
//!
//! Invariants: no allocation, no parsing; `counters` shorter than the
//! ruleset is tolerated (rules past its end are simply not counted), so a
//! caller swapping rulesets can never make evaluation panic.

use super::compile::{
    AddrKind, AddrMatch, Rule, SKIP_AF, SKIP_DIR, SKIP_DST_ADDR, SKIP_DST_PORT, SKIP_IFP,
    SKIP_PROTO, SKIP_SRC_ADDR, SKIP_SRC_PORT,
};
use super::index::Candidates;
use super::parser::BlockMode;
use super::table::{addr_bits, TableSet};
use super::{Action, Decision, ReturnMode, RuleCounters, Ruleset};
use crate::flow::{proto, tcp_flags, Af, L4Info, PacketInfo};

/// Anchors that may be entered at once (the compiler nests them at most
/// 16 deep).
const ANCHOR_STACK: usize = 17;

/// How the evaluation loop moves on: from the rule number it would go to
/// next, to the next rule it examines.
trait Walk {
    /// The first rule at or after `at` to examine (`n`: none). `at` never
    /// goes backwards.
    fn seek(&mut self, at: usize, n: usize) -> usize;
}

/// Every rule (skip steps aside): pf's walk.
struct Linear;

impl Walk for Linear {
    #[inline(always)]
    fn seek(&mut self, at: usize, _n: usize) -> usize {
        at
    }
}

impl Walk for Candidates<'_> {
    #[inline(always)]
    fn seek(&mut self, at: usize, n: usize) -> usize {
        Candidates::seek(self, at, n)
    }
}

/// ICMP facts about a packet that rule matching needs (pf's
/// `pf_icmp_mapping`).
#[derive(Clone, Copy)]
struct IcmpFacts {
    ty: u8,
    code: u8,
    /// The message refers to another connection (errors; IPv6 neighbour
    /// advertisements): pf creates no state for it (`state_icmp`).
    state_icmp: bool,
    /// A reply to a query (echo reply...): pf's `icmp_dir == PF_OUT`.
    reply: bool,
}

fn icmp_facts(pkt: &PacketInfo) -> Option<IcmpFacts> {
    let L4Info::Icmp(i) = pkt.l4 else { return None };
    let ty = i.icmp_type;
    let (state_icmp, reply) = match pkt.af {
        // pf.c pf_icmp_mapping, AF_INET.
        Af::Inet => (
            matches!(ty, 3 | 4 | 5 | 11 | 12),
            matches!(ty, 0 | 14 | 16 | 18 | 34 | 36 | 9),
        ),
        // AF_INET6: errors and neighbour advertisements map to other states.
        Af::Inet6 => (matches!(ty, 1..=4 | 136), matches!(ty, 129 | 140 | 200)),
    };
    Some(IcmpFacts {
        ty,
        code: i.code,
        state_icmp,
        reply,
    })
}

#[inline]
fn addr_matches(m: &AddrMatch, af: Af, a: u128, tables: &TableSet) -> bool {
    let hit = match m.kind {
        AddrKind::Any => true,
        AddrKind::Net {
            af: naf, net, mask, ..
        } => naf == af && (a & mask) == net,
        AddrKind::Table(i) => tables.get(i as usize).is_some_and(|t| t.matches(af, a)),
        AddrKind::Range { af: raf, lo, hi } => raf == af && lo <= a && a <= hi,
    };
    hit != m.neg
}

/// What pf sends back for a packet blocked by `r` (pf.c, after
/// `pf_test_rule`'s loop).
fn return_mode(r: &Rule, pkt: &PacketInfo, icmp: Option<IcmpFacts>) -> ReturnMode {
    let rst_ok = pkt.proto == proto::TCP && pkt.tcp_flags() & tcp_flags::RST == 0;
    let icmp_ok = match pkt.af {
        // Not in reply to ICMP errors (ICMP_INFOTYPE).
        Af::Inet => {
            pkt.proto != proto::ICMP
                || icmp.is_some_and(|i| matches!(i.ty, 0 | 8 | 9 | 10 | 13..=18))
        }
        Af::Inet6 => pkt.proto != proto::ICMPV6 || icmp.is_some_and(|i| i.ty >= 128 && i.ty != 137),
    };
    match r.block {
        BlockMode::Drop => ReturnMode::None,
        BlockMode::Return if rst_ok => ReturnMode::Rst,
        BlockMode::ReturnRst if rst_ok => ReturnMode::Rst,
        BlockMode::ReturnRst => ReturnMode::None,
        BlockMode::Return | BlockMode::ReturnIcmp if icmp_ok => {
            ReturnMode::IcmpUnreachable(match pkt.af {
                Af::Inet => r.return_icmp.0,
                Af::Inet6 => r.return_icmp.1,
            })
        }
        BlockMode::Return | BlockMode::ReturnIcmp => ReturnMode::None,
    }
}

impl Ruleset {
    /// Decides a packet that matched no state. Increments `evaluations` of
    /// every rule examined and `packets`/`bytes` (`pkt.ip_len`) of the
    /// deciding rule. `counters` should have [`Ruleset::len`] entries (the
    /// caller's job, e.g. reallocated on ruleset swap); extra or missing
    /// entries are ignored. Never allocates.
    ///
    /// Tables are read from the ruleset's current [`TableSet`] (one
    /// reference count per call); the pipeline holds the set itself and
    /// calls [`Ruleset::evaluate_with`].
    pub fn evaluate(&self, pkt: &PacketInfo, counters: &mut [RuleCounters]) -> Decision {
        let tables = self.tables.load();
        self.evaluate_with(pkt, &tables, 0, counters)
    }

    /// [`Ruleset::evaluate`] for a packet that already carries tag `tag`
    /// (given by the rules of an earlier pass, as pf keeps it in the
    /// mbuf), reading the ruleset's current tables.
    pub fn evaluate_tagged(
        &self,
        pkt: &PacketInfo,
        tag: u16,
        counters: &mut [RuleCounters],
    ) -> Decision {
        let tables = self.tables.load();
        self.evaluate_with(pkt, &tables, tag, counters)
    }

    /// [`Ruleset::evaluate`] against `tables`, which must be a set of this
    /// ruleset ([`Ruleset::table_set`]): what a worker does with the set it
    /// picked up between bursts, for a packet carrying tag `tag`. `match`
    /// rules that match set their options (`tag`, `nat-to`, `rdr-to`) and
    /// evaluation goes on; the deciding rule's own options override them
    /// (pf's `pf_rule_to_actions`). Never allocates, locks or waits.
    pub fn evaluate_with(
        &self,
        pkt: &PacketInfo,
        tables: &TableSet,
        tag: u16,
        counters: &mut [RuleCounters],
    ) -> Decision {
        if let Some(ix) = &self.index {
            let (src, dst) = (addr_bits(&pkt.src), addr_bits(&pkt.dst));
            // Worth it only when the index leaves at most half the rules.
            if let Some(mut c) = ix.candidates(pkt, src, dst, ix.len() / 2) {
                return self.walk(pkt, tables, tag, counters, &mut c);
            }
        }
        self.walk(pkt, tables, tag, counters, &mut Linear)
    }

    /// [`Ruleset::evaluate_with`] without the index: the reference.
    #[cfg(test)]
    pub(crate) fn evaluate_linear(
        &self,
        pkt: &PacketInfo,
        tables: &TableSet,
        tag: u16,
        counters: &mut [RuleCounters],
    ) -> Decision {
        self.walk(pkt, tables, tag, counters, &mut Linear)
    }

    /// [`Ruleset::evaluate_with`] through `ix` (built for these rules,
    /// whatever their number), always using its best field.
    #[cfg(test)]
    pub(crate) fn evaluate_indexed(
        &self,
        ix: &super::index::RuleIndex,
        pkt: &PacketInfo,
        tables: &TableSet,
        tag: u16,
        counters: &mut [RuleCounters],
    ) -> Decision {
        let (src, dst) = (addr_bits(&pkt.src), addr_bits(&pkt.dst));
        match ix.candidates(pkt, src, dst, usize::MAX) {
            Some(mut c) => self.walk(pkt, tables, tag, counters, &mut c),
            None => panic!("no field chosen with an unbounded limit"),
        }
    }

    /// The evaluation loop over the rules `walk` leads to.
    #[inline(always)]
    fn walk<W: Walk>(
        &self,
        pkt: &PacketInfo,
        tables: &TableSet,
        mut tag: u16,
        counters: &mut [RuleCounters],
        walk: &mut W,
    ) -> Decision {
        let rules = &self.rules;
        let mut nat: Option<u16> = None;
        let mut rdr: Option<(u16, u16)> = None;
        let (mut scrub_flags, mut scrub) = (0u16, crate::state::Scrub::NONE);
        // pf's `act.log` and the rules that log (pflog_packet calls).
        let mut log = 0u8;
        let mut logged = crate::pflog::LogList::EMPTY;
        // The last pass/block rule logged by `log (matches)`.
        let mut logged_decider: Option<usize> = None;
        let n = rules.len();
        let src = addr_bits(&pkt.src);
        let dst = addr_bits(&pkt.dst);
        let tcp = pkt.proto == proto::TCP;
        let ports = tcp || pkt.proto == proto::UDP;
        let th_flags = pkt.tcp_flags();
        let icmp = if pkt.proto == proto::ICMP || pkt.proto == proto::ICMPV6 {
            icmp_facts(pkt)
        } else {
            None
        };
        let is_icmp = pkt.proto == proto::ICMP || pkt.proto == proto::ICMPV6;

        let mut matched: Option<usize> = None;
        // Anchors being evaluated: (anchor rule, end of its rules, quick).
        let mut anchors = [(0u32, 0u32, false); ANCHOR_STACK];
        let mut depth = 0usize;
        let mut i = walk.seek(0, n);
        'rules: loop {
            // Leaving anchors whose rules are done: a `quick` anchor ends
            // the evaluation if one of its rules matched (pf_step_out_of_anchor).
            while depth > 0 && i >= anchors[depth - 1].1 as usize {
                depth -= 1;
                let (start, _, quick) = anchors[depth];
                if quick && matched.is_some_and(|m| m > start as usize) {
                    break 'rules;
                }
            }
            if i >= n {
                break;
            }
            let r = &rules[i];
            // The next rule when this one does not match: past an anchor
            // rule's rules.
            let next = r.anchor_end.map_or(i + 1, |e| e as usize);
            if let Some(c) = counters.get_mut(i) {
                c.evaluations += 1;
            }
            if let Some((ports, not)) = r.ifp {
                let on = pkt.ifindex.0 < 32 && ports & (1u32 << pkt.ifindex.0) != 0;
                if on == not {
                    i = walk.seek(r.skip[SKIP_IFP] as usize, n);
                    continue;
                }
            }
            if r.dir.is_some_and(|d| d != pkt.dir) {
                i = walk.seek(r.skip[SKIP_DIR] as usize, n);
                continue;
            }
            if r.af.is_some_and(|a| a != pkt.af) {
                i = walk.seek(r.skip[SKIP_AF] as usize, n);
                continue;
            }
            if r.proto != 0 && r.proto != pkt.proto {
                i = walk.seek(r.skip[SKIP_PROTO] as usize, n);
                continue;
            }
            if !addr_matches(&r.src, pkt.af, src, tables) {
                i = walk.seek(r.skip[SKIP_SRC_ADDR] as usize, n);
                continue;
            }
            if !addr_matches(&r.dst, pkt.af, dst, tables) {
                i = walk.seek(r.skip[SKIP_DST_ADDR] as usize, n);
                continue;
            }
            if ports {
                if !r.src_port.matches(pkt.sport) {
                    i = walk.seek(r.skip[SKIP_SRC_PORT] as usize, n);
                    continue;
                }
                if !r.dst_port.matches(pkt.dport) {
                    i = walk.seek(r.skip[SKIP_DST_PORT] as usize, n);
                    continue;
                }
                if tcp && (r.flagset & th_flags) != r.flags {
                    i = walk.seek(next, n);
                    continue;
                }
            }
            if is_icmp {
                let (ty, code, state_icmp, reply) = match icmp {
                    Some(f) => (Some(f.ty), Some(f.code), f.state_icmp, f.reply),
                    None => (None, None, false, false),
                };
                if r.icmp_type.is_some() && r.icmp_type != ty {
                    i = walk.seek(next, n);
                    continue;
                }
                if r.icmp_code.is_some() && r.icmp_code != code {
                    i = walk.seek(next, n);
                    continue;
                }
                // pf: don't create states on replies.
                if r.keep_state && !state_icmp && !r.sloppy && reply {
                    i = walk.seek(next, n);
                    continue;
                }
            }
            if let Some((t, not)) = r.tagged {
                if (tag == t) == not {
                    i = walk.seek(next, n);
                    continue;
                }
            }
            if let Some(end) = r.anchor_end {
                // The anchor's conditions match: its rules are next.
                if depth < ANCHOR_STACK {
                    anchors[depth] = (i as u32, end, r.quick);
                    depth += 1;
                    i = walk.seek(i + 1, n);
                } else {
                    i = walk.seek(next, n);
                }
                continue;
            }
            if r.tag != 0 {
                tag = r.tag;
            }
            if r.action == Action::Match {
                if let Some(c) = counters.get_mut(i) {
                    c.packets += 1;
                    c.bytes += pkt.ip_len as u64;
                }
                if r.nat.is_some() {
                    nat = r.nat;
                }
                if let Some(p) = r.rdr {
                    rdr = Some((p, r.dst_port.a));
                }
                super::merge_scrub(&mut scrub_flags, &mut scrub, r.scrub_flags, &r.scrub);
                // pf_match_rule: a `match` rule with `log` logs here; after
                // a `log (matches)` rule every matching rule does.
                if r.log != 0 || log & crate::pflog::log_flags::MATCHES != 0 {
                    logged.push(i as u32, crate::pflog::action::MATCH);
                }
                log |= r.log;
                if r.quick {
                    break;
                }
                i = walk.seek(i + 1, n);
                continue;
            }
            if log & crate::pflog::log_flags::MATCHES != 0 {
                // pf_log_matches: the packet on this (maybe later
                // overridden) rule too.
                logged.push(i as u32, crate::pflog::action_of(r.action));
                logged_decider = Some(i);
            }
            matched = Some(i);
            if r.quick {
                // `quick`, inside an anchor too, ends the evaluation.
                break;
            }
            i = walk.seek(i + 1, n);
        }

        let Some(m) = matched else {
            return Decision {
                nat,
                rdr: rdr.map(|r| r.0),
                rdr_port_base: rdr.map_or(0, |r| r.1),
                tag,
                scrub_flags,
                scrub,
                log,
                logged,
                ..Decision::DEFAULT_PASS
            };
        };
        let r = &rules[m];
        if let Some(c) = counters.get_mut(m) {
            c.packets += 1;
            c.bytes += pkt.ip_len as u64;
            if pkt.dir == crate::flow::Direction::Out {
                c.packets_out += 1;
                c.bytes_out += pkt.ip_len as u64;
            }
        }
        let pass = r.action == Action::Pass;
        let state_icmp = icmp.is_some_and(|f| f.state_icmp);
        super::merge_scrub(&mut scrub_flags, &mut scrub, r.scrub_flags, &r.scrub);
        // The deciding rule logs (once: it may have logged above as a
        // match after `log (matches)`).
        if r.log != 0 && logged_decider != Some(m) {
            logged.push(m as u32, crate::pflog::action_of(r.action));
        }
        log |= r.log;
        Decision {
            action: r.action,
            rule: Some(m as u32),
            keep_state: pass && r.keep_state && !state_icmp,
            sloppy: r.sloppy,
            modulate: r.modulate,
            synproxy: r.synproxy,
            no_sync: r.no_sync,
            max_states: r.max_states,
            allow_opts: r.allow_opts,
            quick: r.quick,
            return_mode: if pass {
                ReturnMode::None
            } else {
                return_mode(r, pkt, icmp)
            },
            nat: r.nat.or(nat),
            rdr: r.rdr.or(rdr.map(|r| r.0)),
            rdr_port_base: match r.rdr {
                Some(_) => r.dst_port.a,
                None => rdr.map_or(0, |r| r.1),
            },
            tag,
            route: if pass { r.route } else { None },
            scrub_flags,
            scrub,
            log,
            logged,
        }
    }
}
