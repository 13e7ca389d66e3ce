//! dpf's ruleset: a pf.conf subset parsed, compiled to a flat array of
//! rules with pf's skip steps, and evaluated per packet with pf's semantics.
//!
//! The language (see `parser` for the grammar): macros (`lan = "lan0"`,
//! `$lan`, also inside lists), `#` comments, `\` line continuation, lists
//! `{ a, b c }`, static tables `table <t> { 10/8, !10.1/16 }`, options
//! `set limit states N`, `set timeout <pf name> <s>` / `{ ... }`,
//! `set skip on <if>` / `{ ... }`, `set block-policy drop|return`, and
//! filter rules
//! `pass|block [drop|return|return-rst|return-icmp] [in|out] [log] [quick]
//! [on [!]<if>|{...}] [inet|inet6] [proto <p>|{...}] [all | from <src>
//! [port <ops>] to <dst> [port <ops>]] [flags <a>/<b>|any]
//! [icmp-type|icmp6-type <t> [code <c>]|{...}] [keep state [(max N, sloppy,
//! no-sync, <timeout> <s>)] | no state] [label "..."]`.
//!
//! Semantics follow OpenBSD pf (`sys/net/pf.c` `pf_test_rule`, pfctl's
//! `parse.y`):
//! * a rule with lists expands to the cross product of its lists (in pfctl's
//!   order: interface, proto, src addr, src port, dst addr, dst port,
//!   icmp type); combinations whose address families disagree are dropped,
//!   and a rule where none is left is an error;
//! * the last matching rule decides, except that the first matching `quick`
//!   rule decides at once;
//! * **no matching rule means pass without state** (pf's implicit default
//!   rule is `pass all no state`); [`Decision::rule`] is then `None`;
//! * `pass` implies `keep state`, and for TCP-capable rules (no proto or
//!   proto tcp) `flags S/SA`; `no state` turns both off, `flags any` turns
//!   the flag check off. Flags only constrain TCP packets;
//! * ports only constrain TCP and UDP packets, ICMP types only ICMP packets;
//!   a `keep state` rule without `sloppy` does not match an ICMP reply
//!   (echo reply...), as in pf, and no state is requested for ICMP error
//!   messages ([`Decision::keep_state`] is false for them);
//! * `block return` answers TCP (without RST) with a RST and everything else
//!   except ICMP errors with ICMP port unreachable; `return-rst` only sends
//!   RSTs; `return-icmp` sends ICMP for TCP too. `set block-policy return`
//!   makes a plain `block` a `block return`;
//! * `self` expands (like pfctl) to the box's addresses given in
//!   [`RuleEnv::self_addrs`], one rule per address, so `! self` in a rule
//!   expands to one negated rule per address (pf.conf(5)'s warning about
//!   negated lists applies; use a table for "none of these");
//! * a table with negated entries is decided by the longest matching prefix.
//!
//! Deviations from pfctl, all errors rather than silent differences: a
//! reference to an undefined table is an error (pf would create an empty
//! table; dpf has no runtime table changes); host names, interface
//! addresses `(if)`/`if:network`, `match`, anchors, NAT, `modulate state`,
//! `synproxy state` and source tracking are rejected as unsupported.
//!
//! Invariants: [`Ruleset::evaluate`] neither allocates nor parses; every
//! skip step of rule `i` points to the next rule whose field differs from
//! rule `i`'s, so skipping never passes a rule that could have matched.

mod compile;
mod eval;
mod lexer;
mod names;
mod parser;
mod table;

#[cfg(test)]
mod tests;

use crate::flow::{Addr, Af, IfIndex};
use crate::timeouts::Timeouts;

/// A compile error: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}")]
pub struct RuleError {
    /// The file name given to [`Ruleset::compile`].
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters (a tab is one column). Errors
    /// in text that came from a macro point at the `$name` reference.
    pub col: u32,
    /// What is wrong, in pfctl's words where pfctl has some.
    pub msg: String,
}

impl RuleError {
    pub(crate) fn new(file: &str, pos: lexer::Pos, msg: String) -> RuleError {
        RuleError {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            msg,
        }
    }
}

/// What the ruleset needs to know about the box at compile time.
#[derive(Clone, Copy, Debug)]
pub struct RuleEnv<'a> {
    /// Interface names usable in `on` and `set skip on`, with their index.
    pub interfaces: &'a [(&'a str, IfIndex)],
    /// The box's own addresses (what `self` expands to).
    pub self_addrs: &'a [(Af, Addr)],
}

/// `set block-policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum BlockPolicy {
    /// Plain `block` drops silently (pf's default).
    #[default]
    Drop,
    /// Plain `block` behaves as `block return`.
    Return,
}

/// Global options set by `set` statements.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleOptions {
    /// `set limit states` (default 100000).
    pub limit_states: u32,
    /// `set timeout` values over pf's defaults.
    pub timeouts: Timeouts,
    /// `set skip on`: interfaces pf does not filter at all.
    pub skip: Vec<IfIndex>,
    /// `set block-policy`.
    pub block_policy: BlockPolicy,
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions {
            limit_states: 100_000,
            timeouts: Timeouts::default(),
            skip: Vec::new(),
            block_policy: BlockPolicy::Drop,
        }
    }
}

/// A rule's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Action {
    /// Let the packet through.
    Pass,
    /// Drop the packet (and maybe answer, see [`ReturnMode`]).
    Block,
}

/// What to send back for a blocked packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum ReturnMode {
    /// Nothing (drop silently).
    #[default]
    None,
    /// A TCP RST (with ACK), as pf's `return-rst`.
    Rst,
    /// ICMP destination unreachable, code port unreachable (ICMPv6: type 1
    /// code 4, port unreachable), as pf's `return-icmp` default.
    IcmpUnreachable,
}

/// Per-rule counters, as `pfctl -vsr` shows them. The evaluator only counts
/// `evaluations`, `packets` and `bytes`; `states_created` is for the caller
/// to increment when it inserts a state for [`Decision::rule`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleCounters {
    /// How often the rule was examined (rules passed over by a skip step
    /// are not examined, as in pf).
    pub evaluations: u64,
    /// Packets this rule decided.
    pub packets: u64,
    /// Bytes (IP length) of the packets this rule decided.
    pub bytes: u64,
    /// States created by this rule (maintained by the caller).
    pub states_created: u64,
}

/// The verdict for one packet that matched no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// Pass or block.
    pub action: Action,
    /// Index of the deciding rule, `None` for the implicit default.
    pub rule: Option<u32>,
    /// Whether the caller should create a state (pass rule with keep state,
    /// not for ICMP error messages).
    pub keep_state: bool,
    /// `keep state (sloppy)`: loose TCP tracking.
    pub sloppy: bool,
    /// `keep state (no-sync)`: do not export the state over pfsync.
    pub no_sync: bool,
    /// `keep state (max N)`: the rule's state limit.
    pub max_states: Option<u32>,
    /// `log`.
    pub log: bool,
    /// The deciding rule was `quick`.
    pub quick: bool,
    /// What to answer a blocked packet with (always `None` for pass).
    pub return_mode: ReturnMode,
}

impl Decision {
    /// pf's implicit default: pass, no state.
    pub const DEFAULT_PASS: Decision = Decision {
        action: Action::Pass,
        rule: None,
        keep_state: false,
        sloppy: false,
        no_sync: false,
        max_states: None,
        log: false,
        quick: false,
        return_mode: ReturnMode::None,
    };
}

/// A compiled ruleset: options, tables and the expanded rules.
/// Immutable once built; share it between workers behind an `Arc`.
#[derive(Clone, Debug)]
pub struct Ruleset {
    /// Global options.
    pub options: RuleOptions,
    rules: Vec<compile::Rule>,
    texts: Vec<String>,
    tables: Vec<table::Table>,
    /// Effective state timeouts of rules with `keep state (<timeout> N)`.
    rule_timeouts: Vec<Timeouts>,
}

impl Ruleset {
    /// Parses and compiles `source` (named `file_name` in errors).
    pub fn compile(source: &str, file_name: &str, env: &RuleEnv) -> Result<Ruleset, RuleError> {
        let ast = parser::parse(source, file_name)?;
        compile::compile(ast, file_name, env)
    }

    /// Number of (expanded) rules; the length `counters` must have.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (everything passes without state).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule `index` as `pfctl -sr` would print it (it parses back to the
    /// same rule). Empty for an index out of range.
    pub fn rule_text(&self, index: usize) -> &str {
        self.texts.get(index).map(String::as_str).unwrap_or("")
    }

    /// Whether `set skip on` names this interface (the caller passes its
    /// packets without filtering or state).
    pub fn is_skipped(&self, ifindex: IfIndex) -> bool {
        self.options.skip.contains(&ifindex)
    }

    /// The state timeouts for states created by `rule`: the global ones with
    /// the rule's `keep state (<timeout> N)` overrides applied.
    pub fn state_timeouts(&self, rule: Option<u32>) -> &Timeouts {
        rule.and_then(|r| self.rules.get(r as usize))
            .and_then(|r| r.timeouts)
            .and_then(|t| self.rule_timeouts.get(t as usize))
            .unwrap_or(&self.options.timeouts)
    }

    /// The tables, in definition order: (name, number of entries).
    pub fn tables(&self) -> impl Iterator<Item = (&str, usize)> {
        self.tables.iter().map(|t| (t.name.as_str(), t.len()))
    }
}
