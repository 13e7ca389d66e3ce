//! dpf's ruleset: a pf.conf subset parsed, compiled to a flat array of
//! rules with pf's skip steps, and evaluated per packet with pf's semantics.
//!
//! The language (see `parser` for the grammar): macros (`lan = "lan0"`,
//! `$lan`, also inside lists), `#` comments, `\` line continuation, lists
//! `{ a, b c }`, static tables `table <t> { 10/8, !10.1/16 }`, options
//! anywhere in the file: `set limit states N`, `set timeout <pf name> <s>`
//! / `{ ... }` (with `adaptive.start` / `adaptive.end`, in states), `set skip on <if>` / `{ ... }`, `set block-policy
//! drop|return` (for the block rules after it, as pfctl reads it);
//! `include "file"` (relative to the including file, read through a
//! [`SourceFiles`]); `antispoof [quick] for <if>|{...} [inet|inet6] [label
//! "l"]`; `anchor ["name"] <conditions> [{ rules }]` and `load anchor
//! "name" from "file"` (or [`AnchorSource`]s given at run time); and filter
//! rules
//! `pass|match|block [drop|return|return-rst|return-icmp [(code[, code6])]|
//! return-icmp6 [(code6)]] [in|out] [log [(all, matches, to pflog0)]] [quick] [on [!]<if>|{...}]
//! [inet|inet6] [proto <p>|{...}] [all | from <src> [port <ops>] to <dst>
//! [port <ops>]] [flags <a>/<b>|any] [icmp-type|icmp6-type <t> [code
//! <c>]|{...}] [keep state [(max N, sloppy, no-sync, <timeout> <s>,
//! max-src-nodes N, max-src-states N, max-src-conn N, max-src-conn-rate
//! N/S, overload <t> [flush [global]], source-track [rule|global],
//! src.track S)] | no
//! state] [allow-opts] [nat-to|rdr-to|binat-to <pool> [port ...] [pool
//! type] [static-port]] [scrub (no-df, random-id, min-ttl N, max-mss N,
//! set-tos T)] [set tos T] [tag <t>] [[!] tagged <t>] [label "..."]`, where an
//! address is also an
//! abbreviated network (`10/8`) or a range `a - b`, and a port name is one
//! of OpenBSD's `/etc/services`.
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
//! * a table with negated entries is decided by the longest matching prefix;
//! * an anchor's rules follow its anchor rule in the flat array and are
//!   examined only when the anchor rule matches; `quick` inside them ends
//!   the evaluation, a `quick` anchor ends it when one of its rules
//!   matched; skip steps are computed per anchor, as pf does per ruleset;
//! * labels are expanded per rule (`$if`, `$srcaddr`, ...) and numbered
//!   ([`Ruleset::labels`]) so counters can be summed per label;
//! * a matching `match` rule sets its options (`nat-to`, `rdr-to`, `tag`,
//!   scrub) and evaluation goes on; the deciding rule's own options win
//!   ([`Decision::nat`], [`Decision::rdr`], [`Decision::tag`]; scrub flags
//!   accumulate and values are replaced, [`merge_scrub`]); `tag` takes
//!   effect at once, `tagged` compares the packet's tag (the in pass's tag
//!   is given to the out pass, [`Ruleset::evaluate_tagged`]);
//! * `nat-to` only on outbound rules, `rdr-to` only on inbound ones, both
//!   needing state unless on `match` (pfctl's `rule_consistent`);
//!   `binat-to` expands to an outbound `nat-to` and an inbound `rdr-to`
//!   (see [`pool`] for how a pool picks addresses and ports);
//! * adaptive timeouts: `set limit states N` without adaptive values sets
//!   them to 60% / 120% of N, and a rule with `max N` and none of its own
//!   gets 60% / 120% of N counted on its own states (pfctl);
//! * `log` logs the packet a `pass` rule creates a state for or a `block`
//!   rule blocks (and every packet a `match` rule with `log` matches);
//!   `log (all)` every packet of the state as well; `log (matches)` the
//!   packet again on every rule it matches after that one
//!   ([`Decision::logged`], [`Decision::log`]; see [`crate::pflog`]).
//!
//! Deviations from pfctl, all errors rather than silent differences: a
//! reference to an undefined table is an error (pf would create an empty
//! table, which hides a typo; define it `table <t> persist` to feed it at
//! run time); host names, `log (user)`, `log (to pflogN)` but pflog0,
//! `af-to` and `least-states` are rejected as
//! unsupported; `overload` without `max-src-conn` / `max-src-conn-rate`
//! (which pfctl accepts and never uses) is an error. Anchor names are one flat
//! namespace (no `a/b` paths relative to the calling anchor).
//!
//! Rulesets of 64 rules or more also get a candidate index (see `index`):
//! per packet, only the rules its most selective field leaves are
//! examined, with the verdicts of the linear walk.
//!
//! Invariants: [`Ruleset::evaluate`] neither allocates nor parses; every
//! skip step of rule `i` points to the next rule whose field differs from
//! rule `i`'s, so skipping never passes a rule that could have matched.

mod compile;
mod eval;
mod index;
mod lexer;
mod names;
mod parser;
pub mod pool;
pub mod table;

#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod scrub_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod translation_tests;

use crate::flow::{Addr, Af, IfIndex};
use crate::timeouts::Timeouts;

pub use parser::{FsFiles, OverloadFlush, SourceFiles};

/// `overload <table> [flush [global]]` of a rule.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Overload {
    /// The table the offending source goes into.
    pub table: String,
    /// Which of its states are killed.
    pub flush: OverloadFlush,
}

/// A rule's source tracking (pf's `PFRULE_SRCTRACK` options; see
/// [`crate::srcnodes`]). Limits of 0 are "no limit", as in pf.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SrcTrack {
    /// `source-track global`: one node per source shared by every rule
    /// tracking globally (else one per source and rule).
    pub global: bool,
    /// `max-src-nodes`.
    pub max_src_nodes: u32,
    /// `max-src-states`.
    pub max_src_states: u32,
    /// `max-src-conn`.
    pub max_src_conn: u32,
    /// `max-src-conn-rate N/S`: (N, S).
    pub max_src_conn_rate: (u32, u32),
    /// `overload <table> [flush [global]]`.
    pub overload: Option<Overload>,
    /// The rule's `src.track` (at least the rate's seconds, as pfctl
    /// makes it); `None`: `set timeout src.track`.
    pub timeout_s: Option<u32>,
}

/// The rules of a named anchor given at run time (`dpfctl -a name -f
/// file`): they replace what the ruleset's `load anchor` gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorSource {
    /// The anchor's name (`load anchor <name>`, `anchor "<name>"`).
    pub name: String,
    /// Its rules (pf.conf filter rules, `include`, nested anchors).
    pub text: String,
    /// The file they came from, for errors.
    pub file: String,
}

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
    /// The box's own addresses (what `self` matches): every interface
    /// address and every CARP address. Empty on a bridge (wire mode), where
    /// `self` then matches nothing.
    pub self_addrs: &'a [(Af, Addr)],
    /// Names usable as addresses and (for those with ports) in `on`:
    /// ports (`lan0`, `lan0:network`), CARP interfaces (`carp1`: its
    /// addresses; `on carp1`: its carpdev) and interface groups (`carp`,
    /// the `group`s of `[[carp]]`, `egress`).
    pub names: &'a [NamedInterface],
}

/// A name pf.conf may use for an interface or an interface group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedInterface {
    /// The name (`lan0`, `carp1`, `carp`, `egress`...).
    pub name: String,
    /// The ports `on <name>` matches (bit i = port i); 0 for a name that
    /// only stands for addresses.
    pub ports: u32,
    /// Its addresses with their prefix lengths (`<name>` is the addresses,
    /// `<name>:network` the networks, `<name>:broadcast` the IPv4
    /// broadcast addresses).
    pub addrs: Vec<(Af, Addr, u8)>,
}

/// The bits of a state's rule tag ([`Ruleset::state_rule_tag`]) that hold
/// the rule number; the bits above hold the ruleset's epoch.
pub const RULE_NR_BITS: u32 = 20;
const RULE_NR_MASK: u32 = (1 << RULE_NR_BITS) - 1;
/// Epochs cycle through `0..EPOCHS` (never the all-ones value, so no tag
/// equals `NO_RULE`).
const EPOCHS: u32 = (1 << (32 - RULE_NR_BITS)) - 1;
static NEXT_EPOCH: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// The rule number of a state's rule tag, `None` for "no rule".
#[inline]
pub fn rule_nr_of_tag(tag: u32) -> Option<u32> {
    (tag != u32::MAX).then_some(tag & RULE_NR_MASK)
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
    /// `set skip on`: interfaces pf does not filter (bit i = port i).
    pub skip_mask: u32,
    /// `set block-policy`.
    pub block_policy: BlockPolicy,
    /// `set limit src-nodes` (default 10000, pf's).
    pub limit_src_nodes: u32,
    /// `set timeout src.track`: seconds a source node outlives its last
    /// state (default 0).
    pub src_track_s: u32,
    /// `set reassemble yes|no` (pf's default: yes).
    pub reassemble: bool,
    /// `set reassemble yes no-df`: IPv4 fragments with DF are reassembled
    /// (and leave without it) instead of dropped.
    pub reassemble_no_df: bool,
    /// `set limit frags` (pf's default: 65536 fragments held).
    pub limit_frags: u32,
    /// `set timeout frag` (pf's default: 60 s).
    pub frag_timeout_s: u32,
    /// `set syncookies` (pf's default: never).
    pub syncookies: crate::syncookie::Mode,
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions {
            limit_src_nodes: crate::srcnodes::DEFAULT_LIMIT,
            src_track_s: 0,
            limit_states: 100_000,
            timeouts: Timeouts::default(),
            skip_mask: 0,
            block_policy: BlockPolicy::Drop,
            reassemble: true,
            reassemble_no_df: false,
            limit_frags: 65_536,
            frag_timeout_s: 60,
            syncookies: crate::syncookie::Mode::Never,
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
    /// pf's `match`: set options (translation, tag) without deciding;
    /// never the action of a [`Decision`].
    Match,
}

/// What to send back for a blocked packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum ReturnMode {
    /// Nothing (drop silently).
    #[default]
    None,
    /// A TCP RST (with ACK), as pf's `return-rst`.
    Rst,
    /// ICMP destination unreachable (ICMPv6: type 1) with this code: the
    /// rule's `return-icmp (code)` for the packet's family, by default port
    /// unreachable (3; ICMPv6 4).
    IcmpUnreachable(u8),
}

/// Per-rule counters, as `pfctl -vsr` shows them. The evaluator only counts
/// `evaluations`, `packets` and `bytes`; `states_created` is for the caller
/// to increment when it inserts a state for [`Decision::rule`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuleCounters {
    /// How often the rule was examined (rules passed over by a skip step
    /// are not examined, as in pf; in a ruleset of 64 rules or more, nor
    /// are the rules the candidate index ruled out for the packet, so the
    /// figure is lower there than pf's linear walk would report).
    pub evaluations: u64,
    /// Packets this rule decided.
    pub packets: u64,
    /// Bytes (IP length) of the packets this rule decided.
    pub bytes: u64,
    /// Of `packets`, those it decided in the `out` direction (pf's
    /// `packets[1]`).
    pub packets_out: u64,
    /// Of `bytes`, those of `out` packets.
    pub bytes_out: u64,
    /// States created by this rule (maintained by the caller).
    pub states_created: u64,
    /// States of this rule that exist now (maintained by the caller:
    /// one more per state created, one less per state of this ruleset's
    /// rule removed).
    pub states_cur: u64,
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
    /// `modulate state`: random TCP sequence numbers (pf's
    /// `PF_STATE_MODULATE`).
    pub modulate: bool,
    /// `synproxy state`: pf's `PF_STATE_SYNPROXY`
    /// ([`crate::syncookie`]).
    pub synproxy: bool,
    /// `keep state (no-sync)`: do not export the state over pfsync.
    pub no_sync: bool,
    /// `keep state (max N)`: the rule's state limit.
    pub max_states: Option<u32>,
    /// `allow-opts`: IP options / IPv6 routing headers may pass.
    pub allow_opts: bool,
    /// The deciding rule was `quick`.
    pub quick: bool,
    /// What to answer a blocked packet with (always `None` for pass).
    pub return_mode: ReturnMode,
    /// `nat-to` of the deciding rule, else of the last matching `match`
    /// rule: index of the pool ([`Ruleset::pool`]).
    pub nat: Option<u16>,
    /// `rdr-to`, as `nat`.
    pub rdr: Option<u16>,
    /// The first port of the destination port condition of the rule whose
    /// `rdr-to` applies (pf maps `port a:b` / `a:*` relative to it).
    pub rdr_port_base: u16,
    /// The packet's tag after the rules (`tag`; 0 = none).
    pub tag: u16,
    /// `route-to` / `reply-to` of the deciding rule ([`Ruleset::route`]).
    pub route: Option<u16>,
    /// Scrub options ([`crate::state::state_flags`] NODF, RANDOMID,
    /// SETTOS) of the matching `match` rules and the deciding rule, or'd
    /// (pf's `pf_rule_to_actions`).
    pub scrub_flags: u16,
    /// Scrub values (`max-mss`, `min-ttl`, `set tos`): each from the last
    /// rule that set it, the deciding rule's last.
    pub scrub: crate::state::Scrub,
    /// Log bits ([`crate::pflog::log_flags`]) of the matching `match`
    /// rules and the deciding rule, or'd (pf's `act.log`): a state created
    /// with `ALL` among them logs all its packets.
    pub log: u8,
    /// The rules that log this packet, in the order they matched (pf's
    /// `pflog_packet` calls in `pf_test_rule`): `match` rules with `log`,
    /// every rule matching after a `log (matches)` one, and the deciding
    /// rule if it has `log`.
    pub logged: crate::pflog::LogList,
}

impl Decision {
    /// pf's implicit default: pass, no state.
    pub const DEFAULT_PASS: Decision = Decision {
        action: Action::Pass,
        rule: None,
        keep_state: false,
        sloppy: false,
        no_sync: false,
        modulate: false,
        synproxy: false,
        max_states: None,
        allow_opts: false,
        quick: false,
        return_mode: ReturnMode::None,
        nat: None,
        rdr: None,
        rdr_port_base: 0,
        tag: 0,
        route: None,
        scrub_flags: 0,
        scrub: crate::state::Scrub::NONE,
        log: 0,
        logged: crate::pflog::LogList::EMPTY,
    };

    /// Adds a rule's scrub options to the packet's (pf's
    /// `pf_rule_to_actions`): flags accumulate, a value set by the rule
    /// replaces the one before.
    #[inline]
    pub fn merge_scrub(&mut self, flags: u16, values: &crate::state::Scrub) {
        merge_scrub(&mut self.scrub_flags, &mut self.scrub, flags, values);
    }
}

/// pf's `pf_rule_to_actions` for scrub options: `flags` are or'd into
/// `acc_flags`, each value set in `values` replaces the one in `acc`.
#[inline]
pub fn merge_scrub(
    acc_flags: &mut u16,
    acc: &mut crate::state::Scrub,
    flags: u16,
    values: &crate::state::Scrub,
) {
    *acc_flags |= flags;
    if flags & crate::state::state_flags::SETTOS != 0 {
        acc.set_tos = values.set_tos;
    }
    if values.min_ttl != 0 {
        acc.min_ttl = values.min_ttl;
    }
    if values.max_mss != 0 {
        acc.max_mss = values.max_mss;
    }
}

/// A compiled ruleset: options, tables and the expanded rules.
/// Immutable once built; share it between workers behind an `Arc`.
#[derive(Clone, Debug)]
pub struct Ruleset {
    /// Global options.
    pub options: RuleOptions,
    rules: Vec<compile::Rule>,
    texts: Vec<String>,
    /// Distinct labels (after macro expansion), in order of first use.
    labels: Vec<String>,
    /// Per rule: the anchor it is in (index into `anchors`), or
    /// `compile::NO_ANCHOR`.
    rule_anchor: Vec<u32>,
    /// Anchor names.
    anchors: Vec<String>,
    /// The tables, outside the rules so that they change without a
    /// reload: published to the workers like a ruleset (see `table`).
    tables: std::sync::Arc<table::LiveTables>,
    /// Translation targets of `nat-to` / `rdr-to` / `binat-to`.
    pools: Vec<pool::Pool>,
    /// Next hops of `route-to` / `reply-to`.
    routes: Vec<pool::RoutePool>,
    /// Tag names; tag number `n` is `tag_names[n - 1]`.
    tag_names: Vec<String>,
    /// Effective state timeouts of rules with `keep state (<timeout> N)`.
    rule_timeouts: Vec<Timeouts>,
    /// This ruleset's epoch (distinct among the last 4095 compiled in this
    /// process), stamped into the rule tag of the states it creates.
    epoch: u32,
    /// States each rule created that still exist (maintained only for
    /// rules with `max`), shared by every worker: `keep state (max N)`
    /// holds across workers.
    state_counts: std::sync::Arc<[std::sync::atomic::AtomicU32]>,
    /// Source tracking options, indexed by `compile::Rule::src_track`.
    src_tracks: Vec<SrcTrack>,
    /// Source nodes each rule created that still exist (`max-src-nodes`),
    /// shared by every worker.
    src_node_counts: std::sync::Arc<[std::sync::atomic::AtomicU32]>,
    /// The candidate index of a large ruleset (`index::INDEX_MIN_RULES`
    /// rules or more), built with the rules and never changed.
    index: Option<std::sync::Arc<index::RuleIndex>>,
}

impl Ruleset {
    /// Parses and compiles `source` (named `file_name` in errors); the
    /// first error.
    pub fn compile(source: &str, file_name: &str, env: &RuleEnv) -> Result<Ruleset, RuleError> {
        Ruleset::compile_all(source, file_name, env).map_err(|mut e| e.swap_remove(0))
    }

    /// [`Ruleset::compile`] reporting every error of the file, in order
    /// (`dpf -n`): a statement with an error is skipped and the rest is
    /// still checked. Never an empty error list.
    pub fn compile_all(
        source: &str,
        file_name: &str,
        env: &RuleEnv,
    ) -> Result<Ruleset, Vec<RuleError>> {
        Ruleset::compile_with(source, file_name, env, &FsFiles::default(), &[])
    }

    /// [`Ruleset::compile_all`] reading `include` and `load anchor` files
    /// through `files`, with the run-time contents of named anchors
    /// (`dpfctl -a`), which replace what `load anchor` gives them.
    pub fn compile_with(
        source: &str,
        file_name: &str,
        env: &RuleEnv,
        files: &dyn SourceFiles,
        anchors: &[AnchorSource],
    ) -> Result<Ruleset, Vec<RuleError>> {
        let (ast, mut errors) = parser::parse_with(source, file_name, files, anchors);
        match compile::compile(ast, file_name, env) {
            Ok(r) if errors.is_empty() => Ok(r),
            Ok(_) => Err(errors),
            Err(mut more) => {
                errors.append(&mut more);
                errors.sort_by_key(|e| (e.file != file_name, e.line, e.col));
                Err(errors)
            }
        }
    }

    pub(crate) fn next_epoch() -> u32 {
        NEXT_EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % EPOCHS
    }

    /// The tag a state created by rule `nr` carries: the rule number and
    /// this ruleset's epoch, so a state outliving a reload is never taken
    /// for a rule of the new ruleset.
    #[inline]
    pub fn state_rule_tag(&self, nr: u32) -> u32 {
        (self.epoch << RULE_NR_BITS) | (nr & RULE_NR_MASK)
    }

    /// The rule number a state's tag names in this ruleset, if the state
    /// was created by this ruleset.
    #[inline]
    pub fn rule_of_tag(&self, tag: u32) -> Option<u32> {
        (tag != u32::MAX && tag >> RULE_NR_BITS == self.epoch).then_some(tag & RULE_NR_MASK)
    }

    /// Whether rule `nr`'s states are counted across workers (it has
    /// `max`, or adaptive timeouts that scale with its own states): its
    /// states must be reserved with [`Ruleset::reserve_rule_state`].
    #[inline]
    pub fn counts_rule_states(&self, nr: u32) -> bool {
        self.rules
            .get(nr as usize)
            .is_some_and(|r| r.max_states.is_some() || r.adaptive)
    }

    /// The adaptive factor of the timeouts of rule `nr`'s states when they
    /// scale with the rule's own states (pf: the rule's `adaptive.start`
    /// is not 0, then its `states_cur` counts); `None` when the global
    /// factor applies.
    #[inline]
    pub fn rule_timeout_scale(&self, nr: u32) -> Option<crate::timeouts::TimeoutScale> {
        let r = self.rules.get(nr as usize).filter(|r| r.adaptive)?;
        let t = r
            .timeouts
            .and_then(|t| self.rule_timeouts.get(t as usize))?;
        Some(t.scale(self.rule_states(nr) as u64))
    }

    /// Reserves a state for rule `nr` against its `max` (pf's
    /// `states_cur < max_states`); false when the rule is at its limit.
    /// Rules whose states are not counted ([`Ruleset::counts_rule_states`])
    /// always succeed and count nothing.
    #[inline]
    pub fn reserve_rule_state(&self, nr: u32) -> bool {
        let Some(r) = self.rules.get(nr as usize) else {
            return true;
        };
        if r.max_states.is_none() && !r.adaptive {
            return true;
        }
        let max = r.max_states.unwrap_or(u32::MAX);
        let Some(c) = self.state_counts.get(nr as usize) else {
            return true;
        };
        c.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |n| (n < max).then_some(n + 1),
        )
        .is_ok()
    }

    /// Gives back a state of rule `nr` reserved by
    /// [`Ruleset::reserve_rule_state`] (the state is gone).
    #[inline]
    pub fn release_rule_state(&self, nr: u32) {
        if self.counts_rule_states(nr) {
            if let Some(c) = self.state_counts.get(nr as usize) {
                let _ = c.fetch_update(
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Acquire,
                    |n| n.checked_sub(1),
                );
            }
        }
    }

    /// States rule `nr` created that still exist (counted for rules with
    /// `max` or per-rule adaptive timeouts only).
    pub fn rule_states(&self, nr: u32) -> u32 {
        self.state_counts
            .get(nr as usize)
            .map_or(0, |c| c.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether a state this ruleset creates may need a side record in the
    /// state table ([`crate::state::Shard::with_records`]): a rule, in
    /// any anchor, translates (`nat-to`, `rdr-to`, `binat-to`), routes
    /// (`route-to`, `reply-to`) or keeps scrub values (`max-mss`,
    /// `min-ttl`, `set-tos`). So may one with an anchor (`dpfctl -a` may
    /// fill it at run time, as relayd and ftp-proxy do) and an empty one
    /// (dpf started without rules gets them from `dpfctl -f`).
    pub fn makes_side_records(&self) -> bool {
        self.rules.is_empty()
            || self.rules.iter().any(|r| {
                r.nat.is_some()
                    || r.rdr.is_some()
                    || r.route.is_some()
                    || r.scrub.is_some()
                    || r.anchor_end.is_some()
            })
    }

    /// Whether rule `nr` has `keep state (<timeout> N)` overrides.
    #[inline]
    pub fn has_rule_timeouts(&self, nr: u32) -> bool {
        self.rules
            .get(nr as usize)
            .is_some_and(|r| r.timeouts.is_some())
    }

    /// Whether rule `nr` says `allow-opts` (packets with IP options or
    /// IPv6 routing headers may pass by it).
    #[inline]
    pub fn allows_opts(&self, nr: u32) -> bool {
        self.rules.get(nr as usize).is_some_and(|r| r.allow_opts)
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

    /// The label of rule `nr` (after pf's macro expansion), if it has one.
    pub fn rule_label(&self, nr: usize) -> Option<&str> {
        self.rule_label_id(nr)
            .and_then(|l| self.labels.get(l as usize))
            .map(String::as_str)
    }

    /// The index in [`Ruleset::labels`] of rule `nr`'s label.
    pub fn rule_label_id(&self, nr: usize) -> Option<u32> {
        self.rules.get(nr).and_then(|r| r.label)
    }

    /// The distinct labels of the rules, in order of first use.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The anchor rule `nr` belongs to (`None`: the main ruleset).
    pub fn rule_anchor(&self, nr: usize) -> Option<&str> {
        self.rule_anchor
            .get(nr)
            .and_then(|a| self.anchors.get(*a as usize))
            .map(String::as_str)
    }

    /// The same options and tables without any rule (`dpfctl -F rules`:
    /// pf keeps its options when its rules are flushed).
    pub fn without_rules(&self) -> Ruleset {
        Ruleset {
            options: self.options.clone(),
            rules: Vec::new(),
            texts: Vec::new(),
            labels: Vec::new(),
            rule_anchor: Vec::new(),
            anchors: Vec::new(),
            tables: self.tables.clone(),
            pools: Vec::new(),
            routes: Vec::new(),
            tag_names: Vec::new(),
            rule_timeouts: Vec::new(),
            epoch: Ruleset::next_epoch(),
            state_counts: std::sync::Arc::from(Vec::new()),
            src_tracks: Vec::new(),
            src_node_counts: std::sync::Arc::from(Vec::new()),
            index: None,
        }
    }

    /// Rule `nr`'s source tracking, if it tracks sources.
    #[inline]
    pub fn src_track(&self, nr: u32) -> Option<&SrcTrack> {
        self.rules
            .get(nr as usize)
            .and_then(|r| r.src_track)
            .and_then(|i| self.src_tracks.get(i as usize))
    }

    /// Rule `nr`'s source nodes that exist now and its `max-src-nodes`
    /// (for [`crate::srcnodes::SourceTable::attach`]).
    #[inline]
    pub fn src_node_budget(&self, nr: u32) -> Option<(&std::sync::atomic::AtomicU32, u32)> {
        let max = self.src_track(nr)?.max_src_nodes;
        self.src_node_counts.get(nr as usize).map(|c| (c, max))
    }

    /// Gives back a source node of rule `nr` (it expired).
    #[inline]
    pub fn release_src_node(&self, nr: u32) {
        if let Some(c) = self.src_node_counts.get(nr as usize) {
            let _ = c.fetch_update(
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
                |n| n.checked_sub(1),
            );
        }
    }

    /// How long a source node of rule `nr` outlives its last state: the
    /// rule's `src.track`, else `set timeout src.track`.
    #[inline]
    pub fn src_track_timeout(&self, nr: u32) -> u32 {
        self.src_track(nr)
            .and_then(|t| t.timeout_s)
            .unwrap_or(self.options.src_track_s)
    }

    /// Whether any rule tracks sources.
    pub fn has_src_tracking(&self) -> bool {
        !self.src_tracks.is_empty()
    }

    /// Whether `set skip on` names this interface: its packets are not
    /// filtered in the direction they cross it (pf skips the interface
    /// alone, not the other side of the packet's path).
    #[inline]
    pub fn is_skipped(&self, ifindex: IfIndex) -> bool {
        ifindex.0 < 32 && self.options.skip_mask & (1u32 << ifindex.0) != 0
    }

    /// The state timeouts for states created by `rule`: the global ones with
    /// the rule's `keep state (<timeout> N)` overrides applied.
    pub fn state_timeouts(&self, rule: Option<u32>) -> &Timeouts {
        rule.and_then(|r| self.rules.get(r as usize))
            .and_then(|r| r.timeouts)
            .and_then(|t| self.rule_timeouts.get(t as usize))
            .unwrap_or(&self.options.timeouts)
    }

    /// Translation pool `i` (a [`Decision::nat`] / [`Decision::rdr`]).
    #[inline]
    pub fn pool(&self, i: u16) -> Option<&pool::Pool> {
        self.pools.get(i as usize)
    }

    /// `route-to` / `reply-to` `i` (a [`Decision::route`]).
    #[inline]
    pub fn route(&self, i: u16) -> Option<&pool::RoutePool> {
        self.routes.get(i as usize)
    }

    /// Whether any rule has `log` (pflog records need somewhere to go).
    pub fn logs(&self) -> bool {
        self.rules.iter().any(|r| r.log != 0)
    }

    /// Whether any rule has `route-to` / `reply-to`.
    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    /// Whether any rule translates addresses (`nat-to`, `rdr-to`,
    /// `binat-to`).
    pub fn has_translation(&self) -> bool {
        !self.pools.is_empty()
    }

    /// The name of tag number `tag` (`None` for 0 or unknown).
    pub fn tag_name(&self, tag: u16) -> Option<&str> {
        (tag as usize)
            .checked_sub(1)
            .and_then(|i| self.tag_names.get(i))
            .map(String::as_str)
    }

    /// The operator's tables now, in order: (name, number of entries).
    /// The address sets the compiler made for `self` and interface names
    /// are not tables of the ruleset and are not listed.
    pub fn tables(&self) -> Vec<(String, usize)> {
        self.tables
            .load()
            .iter()
            .map(|t| (t.name().to_string(), t.len()))
            .collect()
    }

    /// The current table set (what the workers use now).
    pub fn table_set(&self) -> std::sync::Arc<table::TableSet> {
        self.tables.load()
    }

    /// The table set's epoch: it moves on every published change. A
    /// worker compares it once per burst.
    #[inline]
    pub fn table_epoch(&self) -> u64 {
        self.tables.epoch()
    }

    /// Publishes a changed table set (the control thread, the only
    /// writer). The set must derive from [`Ruleset::table_set`] of this
    /// ruleset, so that the rules' table indices stay valid; a set with
    /// fewer tables than the ruleset defines is refused.
    pub fn publish_tables(&self, set: table::TableSet) -> Result<u64, table::TableError> {
        if set.defined() != self.tables.load().defined() || set.len() < set.defined() {
            return Err(table::TableError::ForeignSet);
        }
        Ok(self.tables.publish(std::sync::Arc::new(set)))
    }

    /// Puts this ruleset's tables in service, before the ruleset is
    /// published: with pf's reload semantics against `previous` (the
    /// ruleset it replaces; see [`table::TableSet`]'s `carry_over`), and
    /// stamping entries with `now_s` (Unix seconds) for `-T expire`.
    pub fn adopt_tables(&self, previous: Option<&Ruleset>, now_s: u64) {
        let old = previous.map(|p| p.tables.load());
        let set = table::carry_over(&self.tables.load(), old.as_deref(), now_s);
        self.tables.publish(std::sync::Arc::new(set));
        // The old ruleset's tables are freed here, not by the worker that
        // drops the old ruleset last.
        if let Some(old) = old {
            self.tables.retire(old);
        }
    }
}
