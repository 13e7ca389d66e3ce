//! The compiler: syntax tree to the flat rule array.
//!
//! It resolves interface names, `self` and table names, expands lists into
//! the cross product (pfctl's `expand_rule`), applies pfctl's defaults and
//! consistency checks (`filter_consistent`), pre-computes address masks and
//! port ranges, renders each rule's canonical text, expands labels, lays
//! each anchor's rules out right after its anchor rule, and computes pf's
//! skip steps (`pf_calc_skip_steps`) per ruleset (main or anchor).
//!
//! Invariants of the output: a rule's `af` is set whenever one of its
//! addresses is a network (so address comparison never crosses families);
//! rules with ports have proto tcp or udp; rules with an ICMP type have proto
//! icmp/icmp6 and the matching family; `skip[f][i] > i` for every field,
//! and a skip step of a rule never leaves the rules of its anchor (nor
//! enters another anchor's).

use std::collections::HashMap;
use std::fmt::Write as _;

use super::lexer::Pos;
use super::names;
use super::parser::{
    Ast, BlockMode, Endpoint, FlagsAst, HostAst, HostItem, IcmpItem, IfaceModifier, PoolAst,
    PoolType, PortItem, PortOp, RuleAst, ScrubAst, StateAst,
};
use super::pool::{Pool, PoolRole, RoutePool};
use super::table::{
    addr_bits, parse_table_text, prefix_mask, Table, TableAddr, TableFlags, TableSet,
};
use super::{Action, RuleEnv, RuleError, RuleOptions, Ruleset};
use crate::flow::{proto, tcp_flags, Af, Direction};
use crate::state::{state_flags, Scrub};
use crate::timeouts::Timeouts;

/// Most rules one file may expand to (rule numbers fit the rule tag of a
/// state, see [`super::RULE_NR_BITS`]).
const RULES_MAX: usize = (1 << super::RULE_NR_BITS) - 1;

/// Names of the address sets the compiler builds for `self` and interface
/// names start with this (they are not the operator's tables).
pub(crate) const INTERNAL_TABLE_PREFIX: &str = "__";

/// Skip-step fields, in pf's evaluation order.
pub(crate) const SKIP_IFP: usize = 0;
pub(crate) const SKIP_DIR: usize = 1;
pub(crate) const SKIP_AF: usize = 2;
pub(crate) const SKIP_PROTO: usize = 3;
pub(crate) const SKIP_SRC_ADDR: usize = 4;
pub(crate) const SKIP_DST_ADDR: usize = 5;
pub(crate) const SKIP_SRC_PORT: usize = 6;
pub(crate) const SKIP_DST_PORT: usize = 7;
pub(crate) const SKIP_COUNT: usize = 8;

/// What an address condition compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddrKind {
    /// Any address of any family.
    Any,
    /// `(addr & mask) == net` for addresses of family `af`.
    Net {
        af: Af,
        net: u128,
        mask: u128,
        len: u8,
    },
    /// Membership in table `Ruleset::tables[i]`.
    Table(u32),
    /// `lo <= a <= hi` for addresses of family `af` (`a - b`).
    Range { af: Af, lo: u128, hi: u128 },
}

/// An address condition; `neg` inverts it (pf's `!`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddrMatch {
    pub kind: AddrKind,
    pub neg: bool,
}

/// A port condition; `op == None` matches every port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortMatch {
    pub op: Option<PortOp>,
    pub a: u16,
    pub b: u16,
}

impl PortMatch {
    pub(crate) const ANY: PortMatch = PortMatch {
        op: None,
        a: 0,
        b: 0,
    };

    /// pf's `pf_match_port`.
    #[inline]
    pub(crate) fn matches(&self, p: u16) -> bool {
        let (a, b) = (self.a, self.b);
        match self.op {
            None => true,
            Some(PortOp::Eq) => p == a,
            Some(PortOp::Ne) => p != a,
            Some(PortOp::Lt) => p < a,
            Some(PortOp::Le) => p <= a,
            Some(PortOp::Gt) => p > a,
            Some(PortOp::Ge) => p >= a,
            Some(PortOp::Range) => p >= a && p <= b,
            Some(PortOp::Inside) => p > a && p < b,
            Some(PortOp::Outside) => p < a || p > b,
        }
    }
}

/// One compiled rule, all fields pre-resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    /// `on [!]if`: (ports it names, bit i = port i; negated). A group
    /// or CARP interface names several ports.
    pub ifp: Option<(u32, bool)>,
    pub dir: Option<Direction>,
    pub af: Option<Af>,
    /// 0 = any.
    pub proto: u8,
    pub src: AddrMatch,
    pub dst: AddrMatch,
    pub src_port: PortMatch,
    pub dst_port: PortMatch,
    /// `(th_flags & flagset) == flags`; both 0 = no check.
    pub flags: u8,
    pub flagset: u8,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub action: Action,
    pub block: BlockMode,
    pub quick: bool,
    /// `log`: [`crate::pflog::log_flags`] bits.
    pub log: u8,
    /// `allow-opts`: packets with IPv4 options or IPv6 routing headers
    /// may pass by this rule (and by the states it creates).
    pub allow_opts: bool,
    pub keep_state: bool,
    pub sloppy: bool,
    /// `modulate state`.
    pub modulate: bool,
    /// `synproxy state`.
    pub synproxy: bool,
    pub no_sync: bool,
    pub max_states: Option<u32>,
    /// Source tracking: index into `Ruleset::src_tracks`.
    pub src_track: Option<u16>,
    /// Index into `Ruleset::rule_timeouts`.
    pub timeouts: Option<u32>,
    /// Its timeouts scale with its own states (`adaptive.start` of the
    /// rule, or derived from `max`): pf's per-rule adaptive timeouts.
    pub adaptive: bool,
    /// `nat-to`: index into `Ruleset::pools`.
    pub nat: Option<u16>,
    /// `rdr-to`: index into `Ruleset::pools`.
    pub rdr: Option<u16>,
    /// `tag`: the tag's number (0 = none).
    pub tag: u16,
    /// `[!] tagged`: (tag number, negated).
    pub tagged: Option<(u16, bool)>,
    /// `route-to` / `reply-to`: index into `Ruleset::routes`.
    pub route: Option<u16>,
    /// `scrub (no-df, random-id)`, `set tos`: [`state_flags`] bits
    /// (NODF, RANDOMID, SETTOS).
    pub scrub_flags: u16,
    /// `scrub (max-mss, min-ttl)`, `set tos` values.
    pub scrub: Scrub,
    /// `return-icmp` codes (IPv4, IPv6).
    pub return_icmp: (u8, u8),
    /// Index into `Ruleset::labels` of the rule's (expanded) label.
    pub label: Option<u32>,
    /// An anchor rule: its anchor's rules follow it, up to (not including)
    /// rule `anchor_end`; they are evaluated only when it matches.
    pub anchor_end: Option<u32>,
    /// Next rule to examine when field `f` mismatches.
    pub skip: [u32; SKIP_COUNT],
}

/// An expanded address: the condition, its family and its text.
#[derive(Clone, Debug)]
struct ExpHost {
    m: AddrMatch,
    af: Option<Af>,
}

struct Ctx<'a> {
    file: &'a str,
    env: &'a RuleEnv<'a>,
    tables: HashMap<String, u32>,
    table_list: Vec<Table>,
    pools: Vec<Pool>,
    routes: Vec<RoutePool>,
    /// Tag names in order of first use; a tag's number is its index + 1.
    tags: Vec<String>,
    /// The files of the parse (`Pos::file` indexes it).
    files: Vec<String>,
    /// Distinct expanded labels, in order of first use.
    labels: Vec<String>,
    label_ids: HashMap<String, u32>,
    /// Source tracking options of the rules (`Rule::src_track`).
    src_tracks: Vec<super::SrcTrack>,
}

impl Ctx<'_> {
    fn err(&self, pos: Pos, msg: impl Into<String>) -> RuleError {
        let file = self
            .files
            .get(pos.file as usize)
            .map_or(self.file, String::as_str);
        RuleError::new(file, pos, msg.into())
    }

    fn label_id(&mut self, label: String) -> u32 {
        if let Some(i) = self.label_ids.get(&label) {
            return *i;
        }
        let i = self.labels.len() as u32;
        self.label_ids.insert(label.clone(), i);
        self.labels.push(label);
        i
    }

    /// The ports `name` stands for in `on name` / `set skip on name`: a
    /// port, or a CARP interface or group (their carpdevs / members).
    fn iface_ports(&self, name: &str) -> Option<u32> {
        if let Some((_, i)) = self.env.interfaces.iter().find(|(n, _)| *n == name) {
            return (i.0 < 32).then(|| 1u32 << i.0);
        }
        self.env
            .names
            .iter()
            .find(|n| n.name == name && n.ports != 0)
            .map(|n| n.ports)
    }

    fn iface_mask(&self, name: &str, pos: Pos) -> Result<u32, RuleError> {
        self.iface_ports(name)
            .ok_or_else(|| self.err(pos, format!("unknown interface {name}")))
    }

    fn self_addrs(&self) -> Vec<(Af, u128, u8)> {
        self.env
            .self_addrs
            .iter()
            .map(|(af, a)| (*af, addr_bits(a), host_len(*af)))
            .collect()
    }

    /// The addresses `name[:modifier]` stands for (pf's `ifa_lookup`).
    fn iface_addrs(
        &self,
        name: &str,
        modifier: IfaceModifier,
        pos: Pos,
    ) -> Result<Vec<(Af, u128, u8)>, RuleError> {
        let Some(n) = self.env.names.iter().find(|n| n.name == name) else {
            return Err(self.err(
                pos,
                format!("unknown interface or group '{name}' (dpf resolves no host names)"),
            ));
        };
        let mut out: Vec<(Af, u128, u8)> = Vec::new();
        let mut seen_af: Vec<Af> = Vec::new();
        for (af, addr, len) in &n.addrs {
            let bits = addr_bits(addr);
            let entry = match modifier {
                IfaceModifier::Addresses => Some((*af, bits, host_len(*af))),
                IfaceModifier::Network => Some((*af, bits & prefix_mask(*len), *len)),
                IfaceModifier::Broadcast => (*af == Af::Inet && *len < 31).then(|| {
                    let host_bits = !prefix_mask(*len) & (u128::from(u32::MAX) << 96);
                    (*af, bits | host_bits, 32)
                }),
                IfaceModifier::NoAliases => {
                    if seen_af.contains(af) {
                        None
                    } else {
                        seen_af.push(*af);
                        Some((*af, bits, host_len(*af)))
                    }
                }
            };
            if let Some(e) = entry {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// An internal table for an address set, made once per name.
    fn internal_table(&mut self, name: String, entries: Vec<(Af, u128, u8)>) -> u32 {
        if let Some(i) = self.tables.get(&name) {
            return *i;
        }
        let idx = self.table_list.len() as u32;
        self.tables.insert(name.clone(), idx);
        let entries: Vec<TableAddr> = entries
            .into_iter()
            .map(|(af, n, l)| TableAddr::new(af, n, l, false))
            .collect();
        let flags = TableFlags {
            internal: true,
            constant: true,
            referenced: true,
            ..TableFlags::default()
        };
        self.table_list.push(Table::new(name, flags, &entries, 0));
        idx
    }

    /// Expands one address item.
    fn hosts(&mut self, item: &HostItem) -> Result<Vec<ExpHost>, RuleError> {
        let net = |af: Af, bits: u128, len: u8, neg: bool| {
            let mask = prefix_mask(len);
            let kind = if len == 0 && !neg {
                AddrKind::Any
            } else {
                AddrKind::Net {
                    af,
                    net: bits & mask,
                    mask,
                    len,
                }
            };
            ExpHost {
                m: AddrMatch { kind, neg },
                af: Some(af),
            }
        };
        Ok(match &item.host {
            HostAst::Any => vec![ExpHost {
                m: AddrMatch {
                    kind: AddrKind::Any,
                    neg: false,
                },
                af: None,
            }],
            // `self` and interface names are one set each (an internal
            // table), so `! self` means "none of the box's addresses".
            HostAst::SelfAddrs => {
                let entries = self.self_addrs();
                let t = self.internal_table(format!("{INTERNAL_TABLE_PREFIX}self"), entries);
                vec![ExpHost {
                    m: AddrMatch {
                        kind: AddrKind::Table(t),
                        neg: item.not,
                    },
                    af: None,
                }]
            }
            HostAst::Iface { name, modifier } => {
                let entries = self.iface_addrs(name, *modifier, item.pos)?;
                let t = self.internal_table(
                    format!("{INTERNAL_TABLE_PREFIX}{}", iface_text(name, *modifier)),
                    entries,
                );
                vec![ExpHost {
                    m: AddrMatch {
                        kind: AddrKind::Table(t),
                        neg: item.not,
                    },
                    af: None,
                }]
            }
            HostAst::Net { af, addr, len } => vec![net(*af, addr_bits(addr), *len, item.not)],
            HostAst::Range { af, from, to } => vec![ExpHost {
                m: AddrMatch {
                    kind: AddrKind::Range {
                        af: *af,
                        lo: addr_bits(from),
                        hi: addr_bits(to),
                    },
                    neg: item.not,
                },
                af: Some(*af),
            }],
            HostAst::Table(name) => {
                let Some(i) = self.tables.get(name) else {
                    return Err(self.err(item.pos, format!("table <{name}> is not defined")));
                };
                if let Some(t) = self.table_list.get_mut(*i as usize) {
                    t.set_referenced();
                }
                vec![ExpHost {
                    m: AddrMatch {
                        kind: AddrKind::Table(*i),
                        neg: item.not,
                    },
                    af: None,
                }]
            }
        })
    }

    /// The number of tag `name` (1-based), allocated on first use.
    fn tag_id(&mut self, name: &str, pos: Pos) -> Result<u16, RuleError> {
        if let Some(i) = self.tags.iter().position(|t| t == name) {
            return Ok(i as u16 + 1);
        }
        if self.tags.len() >= u16::MAX as usize - 1 {
            return Err(self.err(pos, "too many tags"));
        }
        self.tags.push(name.to_string());
        Ok(self.tags.len() as u16)
    }

    /// Compiles a translation target into `pools`; its index.
    fn pool(&mut self, p: &PoolAst, role: PoolRole, what: &str) -> Result<u16, RuleError> {
        let mut entries: Vec<(Af, u128, u8)> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        for h in &p.hosts {
            let list: Vec<(Af, u128, u8)> = match &h.host {
                HostAst::Net { af, addr, len } => vec![(*af, addr_bits(addr), *len)],
                HostAst::SelfAddrs => self.self_addrs(),
                HostAst::Iface { name, modifier } => self.iface_addrs(name, *modifier, h.pos)?,
                HostAst::Table(name) => {
                    let Some(i) = self.tables.get(name) else {
                        return Err(self.err(h.pos, format!("table <{name}> is not defined")));
                    };
                    let t = &self.table_list[*i as usize];
                    if t.entries().iter().any(|e| e.addr.negated) {
                        return Err(self.err(
                            h.pos,
                            format!("{what}: table <{name}> has negated entries; a translation pool cannot"),
                        ));
                    }
                    t.entries()
                        .iter()
                        .map(|e| (e.addr.af, e.addr.net, e.addr.len))
                        .collect()
                }
                HostAst::Any => {
                    return Err(self.err(h.pos, format!("{what}: 'any' is not an address")))
                }
                HostAst::Range { .. } => {
                    return Err(self.err(
                        h.pos,
                        format!("{what}: an address range is not supported as a translation target (use a network, a list or a table)"),
                    ))
                }
            };
            if list.is_empty() {
                return Err(self.err(h.pos, format!("{what}: no address to translate to")));
            }
            texts.push(match &h.host {
                HostAst::Table(n) => format!("<{n}>"),
                HostAst::Iface { name, modifier } => iface_text(name, *modifier),
                HostAst::SelfAddrs => "self".to_string(),
                _ => list
                    .iter()
                    .map(|(af, n, l)| fmt_net(*af, *n, *l))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
            for e in list {
                if !entries.contains(&e) {
                    entries.push(e);
                }
            }
        }
        if p.static_port && role != PoolRole::Nat {
            return Err(self.err(p.pos, format!("static-port is not supported with {what}")));
        }
        let several = |af: Af| entries.iter().filter(|e| e.0 == af).count() > 1;
        let kind = match p.kind {
            Some((PoolType::Bitmask, kpos)) => {
                if several(Af::Inet) || several(Af::Inet6) {
                    return Err(
                        self.err(kpos, "bitmask needs a single address or network per family")
                    );
                }
                PoolType::Bitmask
            }
            Some((k, _)) => k,
            None => PoolType::RoundRobin,
        };
        // `sticky-address`: a source keeps its address. dpf has no source
        // tracking to remember the first choice, so the choice itself is
        // made by the source (a keyed hash, the same on both boxes of a
        // pair) instead of in turn or at random; bitmask and source-hash
        // pools are sticky already.
        let kind = match kind {
            PoolType::RoundRobin | PoolType::Random if p.sticky => PoolType::SourceHash(None),
            k => k,
        };
        let mut text = format!("{what} ");
        if texts.len() == 1 {
            text.push_str(&texts[0]);
        } else {
            let _ = write!(text, "{{ {} }}", texts.join(", "));
        }
        if let Some(ports) = p.ports {
            if ports.star {
                let _ = write!(text, " port {}:*", ports.low);
            } else if ports.low == ports.high {
                let _ = write!(text, " port {}", ports.low);
            } else {
                let _ = write!(text, " port {}:{}", ports.low, ports.high);
            }
        }
        match p.kind.map(|k| k.0) {
            Some(PoolType::Bitmask) => text.push_str(" bitmask"),
            Some(PoolType::Random) => text.push_str(" random"),
            Some(PoolType::RoundRobin) => text.push_str(" round-robin"),
            Some(PoolType::SourceHash(None)) => text.push_str(" source-hash"),
            Some(PoolType::SourceHash(Some(k))) => {
                text.push_str(" source-hash 0x");
                for b in k {
                    let _ = write!(text, "{b:02x}");
                }
            }
            None => {}
        }
        if p.sticky {
            text.push_str(" sticky-address");
        }
        if p.static_port {
            text.push_str(" static-port");
        }
        if self.pools.len() >= u16::MAX as usize {
            return Err(self.err(p.pos, "too many translation rules"));
        }
        self.pools
            .push(Pool::new(role, entries, kind, p.ports, p.static_port, text));
        Ok(self.pools.len() as u16 - 1)
    }

    /// Compiles `route-to` / `reply-to` into `routes`; its index.
    fn route(&mut self, r: &super::parser::RouteAst) -> Result<u16, RuleError> {
        let what = if r.reply { "reply-to" } else { "route-to" };
        let mut hops = Vec::new();
        let mut texts = Vec::new();
        for h in &r.hops {
            let port = match &h.iface {
                Some((name, pos)) => {
                    let Some((_, i)) = self.env.interfaces.iter().find(|(n, _)| n == name) else {
                        return Err(self.err(
                            *pos,
                            format!("{what}: unknown interface {name} (a port name)"),
                        ));
                    };
                    Some(i.0)
                }
                None => None,
            };
            let addr = match &h.addr {
                Some(HostItem {
                    host: HostAst::Net { af, addr, .. },
                    ..
                }) => Some((*af, *addr)),
                _ => None,
            };
            texts.push(match (&h.iface, addr) {
                (Some((n, _)), Some((af, a))) => {
                    format!("({n} {})", fmt_net(af, addr_bits(&a), host_len(af)))
                }
                (Some((n, _)), None) => format!("({n})"),
                (None, Some((af, a))) => fmt_net(af, addr_bits(&a), host_len(af)),
                (None, None) => String::new(),
            });
            hops.push((port, addr));
        }
        let mut text = format!("{what} ");
        if texts.len() == 1 {
            text.push_str(&texts[0]);
        } else {
            let _ = write!(text, "{{ {} }}", texts.join(", "));
        }
        let pool = match r.kind {
            Some((k, _)) => {
                text.push_str(match k {
                    PoolType::Random => " random",
                    PoolType::SourceHash(_) => " source-hash",
                    _ => " round-robin",
                });
                k
            }
            None => PoolType::RoundRobin,
        };
        if self.routes.len() >= u16::MAX as usize {
            return Err(self.err(r.pos, "too many route-to / reply-to rules"));
        }
        let kind = if r.reply {
            crate::state::route_kind::REPLY_TO
        } else {
            crate::state::route_kind::ROUTE_TO
        };
        self.routes.push(RoutePool::new(kind, hops, pool, text));
        Ok(self.routes.len() as u16 - 1)
    }

    fn endpoint_hosts(&mut self, e: &Endpoint) -> Result<Vec<ExpHost>, RuleError> {
        if e.hosts.is_empty() {
            return Ok(vec![ExpHost {
                m: AddrMatch {
                    kind: AddrKind::Any,
                    neg: false,
                },
                af: None,
            }]);
        }
        let mut v = Vec::new();
        for h in &e.hosts {
            v.extend(self.hosts(h)?);
        }
        Ok(v)
    }
}

/// How an interface address set is written (and rendered back).
fn iface_text(name: &str, modifier: IfaceModifier) -> String {
    match modifier {
        IfaceModifier::Addresses => name.to_string(),
        IfaceModifier::Network => format!("{name}:network"),
        IfaceModifier::Broadcast => format!("{name}:broadcast"),
        IfaceModifier::NoAliases => format!("{name}:0"),
    }
}

fn host_len(af: Af) -> u8 {
    match af {
        Af::Inet => 32,
        Af::Inet6 => 128,
    }
}

fn ports_of(e: &Endpoint) -> Vec<Option<PortItem>> {
    if e.ports.is_empty() {
        vec![None]
    } else {
        e.ports.iter().copied().map(Some).collect()
    }
}

fn port_match(p: Option<PortItem>) -> PortMatch {
    match p {
        None => PortMatch::ANY,
        Some(p) => PortMatch {
            op: Some(p.op),
            a: p.a,
            b: if matches!(p.op, PortOp::Range | PortOp::Inside | PortOp::Outside) {
                p.b
            } else {
                0
            },
        },
    }
}

/// Compiles a parsed file; every error (a table or rule with an error is
/// left out and the rest still checked).
pub(crate) fn compile(ast: Ast, file: &str, env: &RuleEnv<'_>) -> Result<Ruleset, Vec<RuleError>> {
    let mut ctx = Ctx {
        file,
        env,
        tables: HashMap::new(),
        table_list: Vec::new(),
        pools: Vec::new(),
        routes: Vec::new(),
        tags: Vec::new(),
        files: ast.files.clone(),
        labels: Vec::new(),
        label_ids: HashMap::new(),
        src_tracks: Vec::new(),
    };
    let mut errors = Vec::new();

    let mut options = RuleOptions::default();
    if let Some(n) = ast.limit_states {
        options.limit_states = n;
    }
    if let Some(n) = ast.limit_src_nodes {
        options.limit_src_nodes = n;
    }
    if let Some(n) = ast.src_track_s {
        options.src_track_s = n;
    }
    for (class, secs) in &ast.timeouts {
        options.timeouts.set(*class, *secs);
    }
    options
        .timeouts
        .set_adaptive_from(ast.adaptive_start, ast.adaptive_end, ast.limit_states);
    options.block_policy = ast.block_policy;
    options.syncookies = ast.syncookies.unwrap_or_default();
    if let Some(n) = ast.limit_frags {
        options.limit_frags = n;
    }
    if let Some(s) = ast.frag_timeout {
        options.frag_timeout_s = s;
    }
    if let Some((on, no_df)) = ast.reassemble {
        options.reassemble = on;
        options.reassemble_no_df = no_df;
    }
    // pf skips interfaces by name whether they exist or not (`set skip on
    // lo` is line one of OpenBSD's pf.conf): a name dpf has no port for
    // skips nothing.
    for (name, _) in &ast.skip {
        options.skip_mask |= ctx.iface_ports(name).unwrap_or(0);
    }

    for t in &ast.tables {
        if ctx.tables.contains_key(&t.name) {
            errors.push(ctx.err(t.pos, format!("table <{}> is already defined", t.name)));
            continue;
        }
        match table_entries(&ctx, t) {
            Ok(entries) => {
                let idx = ctx.table_list.len() as u32;
                ctx.tables.insert(t.name.clone(), idx);
                let flags = TableFlags {
                    persist: t.persist,
                    constant: t.constant,
                    defined_with_addrs: t.has_addrs,
                    ..TableFlags::default()
                };
                ctx.table_list
                    .push(Table::new(t.name.clone(), flags, &entries, 0));
            }
            Err(e) => errors.push(e),
        }
    }

    let mut out = Out::default();
    compile_list(
        &mut ctx,
        &ast,
        &ast.rules,
        &options,
        &mut out,
        &mut errors,
        NO_ANCHOR,
        &mut Vec::new(),
    );
    if !errors.is_empty() {
        return Err(errors);
    }
    let Out {
        mut rules,
        texts,
        rule_timeouts,
        rule_anchor,
        anchors,
    } = out;
    calc_skip_steps(&mut rules);
    let index = (rules.len() >= super::index::INDEX_MIN_RULES)
        .then(|| std::sync::Arc::new(super::index::RuleIndex::build(&rules)));
    let state_counts: std::sync::Arc<[std::sync::atomic::AtomicU32]> = (0..rules.len())
        .map(|_| std::sync::atomic::AtomicU32::new(0))
        .collect();
    let src_node_counts: std::sync::Arc<[std::sync::atomic::AtomicU32]> = (0..rules.len())
        .map(|_| std::sync::atomic::AtomicU32::new(0))
        .collect();

    Ok(Ruleset {
        options,
        rules,
        texts,
        labels: ctx.labels,
        rule_anchor,
        anchors,
        tables: std::sync::Arc::new(super::table::LiveTables::new(TableSet::new(ctx.table_list))),
        pools: ctx.pools,
        routes: ctx.routes,
        tag_names: ctx.tags,
        rule_timeouts,
        epoch: Ruleset::next_epoch(),
        state_counts,
        src_tracks: ctx.src_tracks,
        src_node_counts,
        index,
    })
}

/// `rule_anchor` of a rule of the main ruleset.
pub(crate) const NO_ANCHOR: u32 = u32::MAX;

/// How deep anchors may call anchors.
const ANCHOR_DEPTH_MAX: usize = 16;

/// The compiled rules so far.
#[derive(Default)]
struct Out {
    rules: Vec<Rule>,
    texts: Vec<String>,
    rule_timeouts: Vec<Timeouts>,
    /// Per rule: the anchor (index into `anchors`) whose rules it is one
    /// of, [`NO_ANCHOR`] for the main ruleset.
    rule_anchor: Vec<u32>,
    /// Anchor names.
    anchors: Vec<String>,
}

/// Compiles a list of rules (the main ruleset or an anchor's) into `out`;
/// a rule with an error is left out and reported.
#[allow(clippy::too_many_arguments)]
fn compile_list(
    ctx: &mut Ctx<'_>,
    ast: &Ast,
    list: &[RuleAst],
    options: &RuleOptions,
    out: &mut Out,
    errors: &mut Vec<RuleError>,
    anchor: u32,
    path: &mut Vec<String>,
) {
    for r in list {
        let before = out.rules.len();
        let res = match &r.anchor {
            // `binat-to` is two rules (pfctl's expansion).
            None => match binat_rules(ctx, r) {
                Ok(Some(pair)) => pair.iter().try_for_each(|r| {
                    expand_rule(
                        ctx,
                        r,
                        options,
                        &mut out.rules,
                        &mut out.texts,
                        &mut out.rule_timeouts,
                    )
                }),
                Ok(None) => expand_rule(
                    ctx,
                    r,
                    options,
                    &mut out.rules,
                    &mut out.texts,
                    &mut out.rule_timeouts,
                ),
                Err(e) => Err(e),
            },
            Some(call) => compile_anchor(ctx, ast, r, call, options, out, errors, anchor, path),
        };
        if let Err(e) = res {
            out.rules.truncate(before);
            out.texts.truncate(before);
            errors.push(e);
        }
        out.rule_anchor.truncate(out.rules.len());
        while out.rule_anchor.len() < out.rules.len() {
            out.rule_anchor.push(anchor);
        }
    }
}

/// An anchor rule (each rule it expands to) followed by its anchor's rules
/// (pf evaluates them in place of the anchor rule when it matches).
#[allow(clippy::too_many_arguments)]
fn compile_anchor(
    ctx: &mut Ctx<'_>,
    ast: &Ast,
    r: &RuleAst,
    call: &super::parser::AnchorCall,
    options: &RuleOptions,
    out: &mut Out,
    errors: &mut Vec<RuleError>,
    parent: u32,
    path: &mut Vec<String>,
) -> Result<(), RuleError> {
    let name = &call.name;
    if path.iter().any(|p| p == name) {
        return Err(ctx.err(r.pos, format!("anchor \"{name}\" calls itself")));
    }
    if path.len() >= ANCHOR_DEPTH_MAX {
        return Err(ctx.err(r.pos, "anchors nested too deeply"));
    }
    let body: &[RuleAst] = match (&call.inline, ast.anchors.get(name)) {
        (Some(inline), _) if !ast.replaced.contains(name) => inline,
        (_, Some(loaded)) => loaded,
        (Some(inline), None) => inline,
        (None, None) => &[],
    };
    let mut heads = Vec::new();
    let mut head_texts = Vec::new();
    expand_rule(
        ctx,
        r,
        options,
        &mut heads,
        &mut head_texts,
        &mut out.rule_timeouts,
    )?;
    let id = match out.anchors.iter().position(|a| a == name) {
        Some(i) => i as u32,
        None => {
            out.anchors.push(name.clone());
            out.anchors.len() as u32 - 1
        }
    };
    path.push(name.clone());
    for (head, text) in heads.into_iter().zip(head_texts) {
        let k = out.rules.len();
        out.rules.push(head);
        out.texts.push(text);
        out.rule_anchor.push(parent);
        let errors_before = errors.len();
        compile_list(ctx, ast, body, options, out, errors, id, path);
        let end = out.rules.len() as u32;
        if let Some(h) = out.rules.get_mut(k) {
            h.anchor_end = Some(end);
        }
        if errors.len() > errors_before {
            break;
        }
    }
    path.pop();
    if out.rules.len() >= RULES_MAX {
        return Err(ctx.err(
            r.pos,
            format!("ruleset expands to more than {RULES_MAX} rules"),
        ));
    }
    Ok(())
}

/// Largest table file dpf reads (a million IPv6 networks fit easily).
const TABLE_FILE_MAX_BYTES: u64 = 256 << 20;

/// Reads a table file named in `ruleset_file`: a relative path is taken
/// from the ruleset file's directory. Only regular files are read.
fn read_table_file(ruleset_file: &str, path: &str) -> Result<(String, String), String> {
    use std::io::Read as _;
    let p = std::path::Path::new(path);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::path::Path::new(ruleset_file)
            .parent()
            .unwrap_or(std::path::Path::new(""))
            .join(p)
    };
    let shown = full.display().to_string();
    let f =
        std::fs::File::open(&full).map_err(|e| format!("cannot read table file {shown}: {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read table file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("table file {shown} is not a regular file"));
    }
    if meta.len() > TABLE_FILE_MAX_BYTES {
        return Err(format!(
            "table file {shown} is larger than {} MiB",
            TABLE_FILE_MAX_BYTES >> 20
        ));
    }
    let mut text = String::new();
    f.take(TABLE_FILE_MAX_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read table file {shown}: {e}"))?;
    Ok((shown, text))
}

/// A table's entries: addresses, networks, `self` and interface names of
/// its list, then the addresses of its files. A network listed both
/// negated and not is an error (at its second mention, in the file and
/// line where it is).
fn table_entries(ctx: &Ctx<'_>, t: &super::parser::TableDef) -> Result<Vec<TableAddr>, RuleError> {
    let mut entries: Vec<TableAddr> = Vec::new();
    let mut seen: HashMap<(Af, u128, u8), bool> = HashMap::new();
    let mut push = |a: TableAddr, err: &dyn Fn(String) -> RuleError| -> Result<(), RuleError> {
        match seen.get(&(a.af, a.net, a.len)) {
            Some(&neg) if neg != a.negated => Err(err(format!(
                "conflicting entries for {} in table <{}>",
                fmt_net(a.af, a.net, a.len),
                t.name
            ))),
            Some(_) => Ok(()),
            None => {
                seen.insert((a.af, a.net, a.len), a.negated);
                entries.push(a);
                Ok(())
            }
        }
    };
    for item in &t.entries {
        let list: Vec<(Af, u128, u8)> = match &item.host {
            HostAst::SelfAddrs => ctx.self_addrs(),
            HostAst::Iface { name, modifier } => ctx.iface_addrs(name, *modifier, item.pos)?,
            HostAst::Net { af, addr, len } => vec![(*af, addr_bits(addr), *len)],
            HostAst::Range { .. } => {
                return Err(ctx.err(item.pos, "address ranges are not permitted inside tables"))
            }
            HostAst::Any | HostAst::Table(_) => {
                return Err(ctx.err(
                    item.pos,
                    "a table entry must be an address, a network, an interface or self",
                ))
            }
        };
        for (af, bits, len) in list {
            push(TableAddr::new(af, bits, len, item.not), &|m| {
                ctx.err(item.pos, m)
            })?;
        }
    }
    for (path, pos) in &t.files {
        let (shown, text) = read_table_file(ctx.file, path).map_err(|m| ctx.err(*pos, m))?;
        let addrs = parse_table_text(&text).map_err(|e| RuleError {
            file: shown.clone(),
            line: e.line,
            col: e.col,
            msg: e.msg,
        })?;
        for (a, line, col) in addrs {
            push(a, &|msg| RuleError {
                file: shown.clone(),
                line,
                col,
                msg,
            })?;
        }
    }
    Ok(entries)
}

fn expand_rule(
    ctx: &mut Ctx<'_>,
    r: &RuleAst,
    options: &RuleOptions,
    rules: &mut Vec<Rule>,
    texts: &mut Vec<String>,
    rule_timeouts: &mut Vec<Timeouts>,
) -> Result<(), RuleError> {
    let mut ifaces: Vec<Option<(u32, bool, &str)>> = Vec::new();
    for i in &r.ifaces {
        ifaces.push(Some((
            ctx.iface_mask(&i.name, i.pos)?,
            i.not,
            i.name.as_str(),
        )));
    }
    if ifaces.is_empty() {
        ifaces.push(None);
    }
    let protos: Vec<(u8, Pos)> = if r.protos.is_empty() {
        vec![(0, r.pos)]
    } else {
        r.protos.clone()
    };
    let src_hosts = ctx.endpoint_hosts(&r.src)?;
    let dst_hosts = ctx.endpoint_hosts(&r.dst)?;
    let src_ports = ports_of(&r.src);
    let dst_ports = ports_of(&r.dst);
    let icmps: Vec<Option<IcmpItem>> = if r.icmp.is_empty() {
        vec![None]
    } else {
        r.icmp.iter().copied().map(Some).collect()
    };

    let (keep_state, opts) = match &r.state {
        Some(_) if r.action == Action::Match => {
            return Err(ctx.err(
                r.pos,
                "match rules do not create states: keep state / no state do not apply",
            ));
        }
        Some(StateAst::Keep(o)) => (true, o.clone()),
        Some(StateAst::No) => (false, Default::default()),
        // An anchor rule (parsed as `pass`) decides nothing: no state.
        None => (
            r.action == Action::Pass && r.anchor.is_none(),
            Default::default(),
        ),
    };
    // pfctl's rule_consistent().
    if (r.nat.is_some() || r.rdr.is_some()) && r.action == Action::Pass && !keep_state {
        return Err(ctx.err(r.pos, "nat-to and rdr-to require keep state"));
    }
    if let Some(p) = &r.nat {
        if r.dir != Some(Direction::Out) {
            return Err(ctx.err(p.pos, "nat-to can only be used outbound"));
        }
    }
    if let Some(p) = &r.rdr {
        if r.dir != Some(Direction::In) {
            return Err(ctx.err(p.pos, "rdr-to can only be used inbound"));
        }
    }
    let nat = match &r.nat {
        Some(p) => Some(ctx.pool(p, PoolRole::Nat, "nat-to")?),
        None => None,
    };
    let rdr = match &r.rdr {
        Some(p) => Some(ctx.pool(p, PoolRole::Rdr, "rdr-to")?),
        None => None,
    };
    let tag = match &r.tag {
        Some((name, pos)) => ctx.tag_id(name, *pos)?,
        None => 0,
    };
    let tagged = match &r.tagged {
        Some(t) => Some((ctx.tag_id(&t.name, t.pos)?, t.not)),
        None => None,
    };
    let route = match &r.route {
        Some(rt) if r.action == Action::Match => {
            return Err(ctx.err(
                rt.pos,
                "route-to, reply-to, dup-to and fastroute must not be used on match rules",
            ));
        }
        Some(rt) => Some(ctx.route(rt)?),
        None => None,
    };
    let (scrub_flags, scrub) = scrub_of(&r.scrub);
    let pools_of_rule: Vec<u16> = nat.iter().chain(rdr.iter()).copied().collect();
    // 'flags S/SA' by default on stateful rules (pfctl parse.y).
    let flags = match r.flags {
        Some(f) => f,
        None if r.action == Action::Pass && keep_state => FlagsAst {
            flags: tcp_flags::SYN,
            flagset: tcp_flags::SYN | tcp_flags::ACK,
        },
        None => FlagsAst {
            flags: 0,
            flagset: 0,
        },
    };
    let src_track = src_track_of(ctx, &opts.src, r.pos)?;
    // Adaptive timeouts counted on the rule's own states (pf: a rule
    // whose `adaptive.start` is not 0), explicit or, for a rule with `max`
    // and neither given, 60% and 120% of it (pfctl's parse.y).
    let rule_adaptive = if opts.adaptive_start.is_some() || opts.adaptive_end.is_some() {
        opts.adaptive_start
            .filter(|s| *s != 0)
            .map(|s| (s, opts.adaptive_end.unwrap_or(0)))
    } else {
        opts.max
            .map(|m| ((m / 10).saturating_mul(6), (m / 10).saturating_mul(12)))
            .filter(|(s, _)| *s != 0)
    };
    let timeouts = if opts.timeouts.is_empty() && rule_adaptive.is_none() {
        None
    } else {
        let mut t = options.timeouts;
        for (class, secs) in &opts.timeouts {
            t.set(*class, *secs);
        }
        if let Some((start, end)) = rule_adaptive {
            t.set_adaptive(start, end);
        }
        rule_timeouts.push(t);
        Some(rule_timeouts.len() as u32 - 1)
    };
    // What `pfctl -sr` prints among the state options: the rule's own
    // timeouts, then adaptive.start / adaptive.end (explicit or derived).
    let shown_adaptive = match (opts.adaptive_start, opts.adaptive_end) {
        (None, None) => rule_adaptive.map(|(s, e)| (Some(s), Some(e))),
        (s, e) => Some((s.filter(|v| *v != 0), e.filter(|v| *v != 0))),
    };

    let mut added = 0usize;
    for ifp in &ifaces {
        for (proto_nr, proto_pos) in &protos {
            for sh in &src_hosts {
                for sp in &src_ports {
                    for dh in &dst_hosts {
                        for dp in &dst_ports {
                            for icmp in &icmps {
                                // Address families must agree (pfctl expand_rule).
                                if let Some(af) = r.af {
                                    if sh.af.is_some_and(|a| a != af)
                                        || dh.af.is_some_and(|a| a != af)
                                    {
                                        continue;
                                    }
                                }
                                if let (Some(a), Some(b)) = (sh.af, dh.af) {
                                    if a != b {
                                        continue;
                                    }
                                }
                                let mut af = r.af.or(sh.af).or(dh.af);
                                // A translation decides the family when its
                                // pool has one (pfctl: combinations whose
                                // families disagree are dropped).
                                let mut fits = true;
                                for p in &pools_of_rule {
                                    let pool = &ctx.pools[*p as usize];
                                    match af {
                                        Some(a) => fits &= pool.has_family(a),
                                        None => {
                                            let v4 = pool.has_family(Af::Inet);
                                            let v6 = pool.has_family(Af::Inet6);
                                            if v4 != v6 {
                                                af = Some(if v4 { Af::Inet } else { Af::Inet6 });
                                            }
                                        }
                                    }
                                }
                                if let (Some(rt), Some(a)) = (route, af) {
                                    fits &= ctx.routes[rt as usize].has_family(a);
                                }
                                if !fits {
                                    continue;
                                }
                                let pr = *proto_nr;
                                // filter_consistent().
                                if let Some(p) = sp.or(*dp) {
                                    if pr != proto::TCP && pr != proto::UDP {
                                        return Err(ctx.err(p.pos, "port only applies to tcp/udp"));
                                    }
                                }
                                if let Some(it) = icmp {
                                    let want = if it.af == Af::Inet {
                                        proto::ICMP
                                    } else {
                                        proto::ICMPV6
                                    };
                                    if pr != want {
                                        let (kw, pname) = if it.af == Af::Inet {
                                            ("icmp-type", "icmp")
                                        } else {
                                            ("icmp6-type", "icmp6")
                                        };
                                        return Err(
                                            ctx.err(it.pos, format!("{kw} requires proto {pname}"))
                                        );
                                    }
                                    if af.is_none() {
                                        return Err(ctx.err(
                                            it.pos,
                                            "must indicate address family with icmp-type/code",
                                        ));
                                    }
                                }
                                if (pr == proto::ICMP && af == Some(Af::Inet6))
                                    || (pr == proto::ICMPV6 && af == Some(Af::Inet))
                                {
                                    let (p, a) = if pr == proto::ICMP {
                                        ("icmp", "inet6")
                                    } else {
                                        ("icmp6", "inet")
                                    };
                                    return Err(ctx.err(
                                        *proto_pos,
                                        format!("proto {p} doesn't match address family {a}"),
                                    ));
                                }
                                if r.block == BlockMode::ReturnRst
                                    && r.action == Action::Block
                                    && pr != proto::TCP
                                {
                                    return Err(ctx.err(
                                        r.pos,
                                        "return-rst can only be applied to TCP rules",
                                    ));
                                }
                                let (fl, fs) = if pr != 0 && pr != proto::TCP {
                                    (0, 0)
                                } else {
                                    (flags.flags, flags.flagset)
                                };
                                let rule = Rule {
                                    ifp: ifp.map(|(i, not, _)| (i, not)),
                                    dir: r.dir,
                                    af,
                                    proto: pr,
                                    src: sh.m,
                                    dst: dh.m,
                                    src_port: port_match(*sp),
                                    dst_port: port_match(*dp),
                                    flags: fl,
                                    flagset: fs,
                                    icmp_type: icmp.map(|i| i.ty),
                                    icmp_code: icmp.and_then(|i| i.code),
                                    action: r.action,
                                    block: if r.action == Action::Block {
                                        r.block
                                    } else {
                                        BlockMode::Drop
                                    },
                                    quick: r.quick,
                                    log: r.log,
                                    allow_opts: r.allow_opts,
                                    keep_state,
                                    sloppy: opts.sloppy,
                                    modulate: opts.modulate,
                                    synproxy: opts.synproxy,
                                    no_sync: opts.no_sync,
                                    max_states: opts.max,
                                    src_track,
                                    timeouts,
                                    adaptive: rule_adaptive.is_some(),
                                    nat,
                                    rdr,
                                    tag,
                                    tagged,
                                    route,
                                    scrub_flags,
                                    scrub,
                                    return_icmp: r.return_icmp,
                                    label: None,
                                    anchor_end: None,
                                    skip: [0; SKIP_COUNT],
                                };
                                let label = r.label.as_deref().map(|l| {
                                    expand_label(
                                        l,
                                        ifp.map(|(_, _, n)| n),
                                        &rule,
                                        &ctx.table_list,
                                        rules.len(),
                                    )
                                });
                                let mut rule = rule;
                                rule.label = label.clone().map(|l| ctx.label_id(l));
                                if rules.len() >= RULES_MAX {
                                    return Err(ctx.err(
                                        r.pos,
                                        format!("ruleset expands to more than {RULES_MAX} rules"),
                                    ));
                                }
                                let mut text = render(
                                    &rule,
                                    ifp.map(|(_, _, n)| n),
                                    &ctx.table_list,
                                    &opts.timeouts,
                                    src_track.and_then(|i| ctx.src_tracks.get(i as usize)),
                                    shown_adaptive,
                                    label.as_deref(),
                                    r.anchor.as_ref().map(|a| a.name.as_str()),
                                );
                                render_translation(
                                    &mut text,
                                    &rule,
                                    &ctx.pools,
                                    &ctx.routes,
                                    &ctx.tags,
                                );
                                rules.push(rule);
                                texts.push(text);
                                added += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    if added == 0 {
        return Err(ctx.err(r.pos, "rule expands to no valid combination"));
    }
    Ok(())
}

/// pf's `pf_calc_skip_steps`: for each field, the next rule whose field
/// differs, among the rules of the same ruleset. An anchor's rules are a
/// ruleset of their own: skip steps never lead into or out of them (the
/// rule after an anchor rule, for a skip, is the one after its rules).
pub(crate) fn calc_skip_steps(rules: &mut [Rule]) {
    let n = rules.len();
    calc_skip_steps_in(rules, 0, n);
}

fn calc_skip_steps_in(rules: &mut [Rule], lo: usize, hi: usize) {
    // The rules of this ruleset, in order.
    let mut members = Vec::new();
    let mut i = lo;
    while i < hi {
        members.push(i);
        i = rules[i]
            .anchor_end
            .map_or(i + 1, |e| (e as usize).clamp(i + 1, hi));
    }
    for m in (0..members.len()).rev() {
        let i = members[m];
        let next = members.get(m + 1).copied();
        for f in 0..SKIP_COUNT {
            rules[i].skip[f] = match next {
                Some(j) if same_field(&rules[i], &rules[j], f) => rules[j].skip[f],
                Some(j) => j as u32,
                None => hi as u32,
            };
        }
        if let Some(e) = rules[i].anchor_end {
            calc_skip_steps_in(rules, i + 1, (e as usize).min(hi));
        }
    }
}

pub(crate) fn same_field(a: &Rule, b: &Rule, f: usize) -> bool {
    match f {
        SKIP_IFP => a.ifp == b.ifp,
        SKIP_DIR => a.dir == b.dir,
        SKIP_AF => a.af == b.af,
        SKIP_PROTO => a.proto == b.proto,
        SKIP_SRC_ADDR => a.src == b.src,
        SKIP_DST_ADDR => a.dst == b.dst,
        SKIP_SRC_PORT => a.src_port == b.src_port,
        _ => a.dst_port == b.dst_port,
    }
}

fn fmt_net(af: Af, net: u128, len: u8) -> String {
    let ip = match af {
        Af::Inet => std::net::IpAddr::V4(std::net::Ipv4Addr::from((net >> 96) as u32)),
        Af::Inet6 => std::net::IpAddr::V6(std::net::Ipv6Addr::from(net)),
    };
    if len == host_len(af) {
        ip.to_string()
    } else {
        format!("{ip}/{len}")
    }
}

fn render_addr(out: &mut String, m: &AddrMatch, tables: &[Table]) {
    if m.neg {
        out.push_str("! ");
    }
    match m.kind {
        AddrKind::Any => out.push_str("any"),
        AddrKind::Net { af, net, len, .. } => out.push_str(&fmt_net(af, net, len)),
        AddrKind::Range { af, lo, hi } => {
            let _ = write!(
                out,
                "{} - {}",
                fmt_net(af, lo, host_len(af)),
                fmt_net(af, hi, host_len(af))
            );
        }
        AddrKind::Table(i) => {
            let name = tables.get(i as usize).map(|t| t.name()).unwrap_or("?");
            match name.strip_prefix(INTERNAL_TABLE_PREFIX) {
                Some(set) => out.push_str(set),
                None => {
                    let _ = write!(out, "<{name}>");
                }
            }
        }
    }
}

fn render_port(out: &mut String, p: &PortMatch, proto: u8) {
    let name = |v: u16| {
        names::service_name(v, proto)
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    let Some(op) = p.op else { return };
    out.push_str(" port ");
    let _ = match op {
        PortOp::Eq => write!(out, "= {}", name(p.a)),
        PortOp::Ne => write!(out, "!= {}", name(p.a)),
        PortOp::Lt => write!(out, "< {}", p.a),
        PortOp::Le => write!(out, "<= {}", p.a),
        PortOp::Gt => write!(out, "> {}", p.a),
        PortOp::Ge => write!(out, ">= {}", p.a),
        PortOp::Range => write!(out, "{}:{}", p.a, p.b),
        PortOp::Inside => write!(out, "{} >< {}", p.a, p.b),
        PortOp::Outside => write!(out, "{} <> {}", p.a, p.b),
    };
}

/// `return-icmp(code)`: pfctl prints the codes of a `return-icmp` rule;
/// dpf prints them only when they are not the default (port unreachable).
fn render_return_icmp(s: &mut String, r: &Rule) {
    if r.block != BlockMode::ReturnIcmp || r.return_icmp == super::parser::RETURN_ICMP_DEFAULT {
        return;
    }
    let code = |af: Af, c: u8| {
        let unreach = if af == Af::Inet { 3 } else { 1 };
        names::icmp_code_name(af, unreach, c)
            .map(str::to_string)
            .unwrap_or_else(|| c.to_string())
    };
    let (c4, c6) = (
        code(Af::Inet, r.return_icmp.0),
        code(Af::Inet6, r.return_icmp.1),
    );
    let _ = match r.af {
        Some(Af::Inet) => write!(s, "({c4})"),
        Some(Af::Inet6) => {
            s.truncate(s.len() - "return-icmp".len());
            write!(s, "return-icmp6({c6})")
        }
        None => write!(s, "({c4}, {c6})"),
    };
}

/// pfctl's `expand_label`: `$if`, `$srcaddr`, `$dstaddr`, `$srcport`,
/// `$dstport`, `$proto` and `$nr` replaced by the expanded rule's values.
fn expand_label(
    label: &str,
    ifname: Option<&str>,
    r: &Rule,
    tables: &[Table],
    nr: usize,
) -> String {
    if !label.contains('$') {
        return label.to_string();
    }
    let addr = |m: &AddrMatch| {
        let mut t = String::new();
        render_addr(&mut t, m, tables);
        t
    };
    let port = |p: &PortMatch| match p.op {
        None => "any".to_string(),
        Some(PortOp::Eq) => p.a.to_string(),
        Some(PortOp::Ne) => format!("!={}", p.a),
        Some(PortOp::Lt) => format!("<{}", p.a),
        Some(PortOp::Le) => format!("<={}", p.a),
        Some(PortOp::Gt) => format!(">{}", p.a),
        Some(PortOp::Ge) => format!(">={}", p.a),
        Some(PortOp::Range) => format!("{}:{}", p.a, p.b),
        Some(PortOp::Inside) => format!("{}><{}", p.a, p.b),
        Some(PortOp::Outside) => format!("{}<>{}", p.a, p.b),
    };
    let proto = match r.proto {
        0 => "ip".to_string(),
        p => names::proto_name(p).map_or_else(|| p.to_string(), str::to_string),
    };
    let mut out = label
        .replace("$if", ifname.unwrap_or("any"))
        .replace("$srcaddr", &addr(&r.src))
        .replace("$dstaddr", &addr(&r.dst))
        .replace("$srcport", &port(&r.src_port))
        .replace("$dstport", &port(&r.dst_port))
        .replace("$proto", &proto)
        .replace("$nr", &nr.to_string());
    // pf truncates to its label size.
    while out.len() > super::parser::LABEL_MAX {
        out.pop();
    }
    out
}

/// The rule as `pfctl -sr` prints it (pfctl_parser.c `print_rule`).
/// pfctl's checks of the source tracking options of a rule (parse.y's
/// `filter_opts` end and `rule_consistent`), and the rule's
/// [`super::SrcTrack`] (its index in `ctx.src_tracks`), if it tracks.
fn src_track_of(
    ctx: &mut Ctx<'_>,
    o: &super::parser::SrcTrackAst,
    rule_pos: Pos,
) -> Result<Option<u16>, RuleError> {
    use super::parser::SourceTrackAst;
    let pos = o.pos.unwrap_or(rule_pos);
    // pfctl: max-src-nodes, max-src-conn and max-src-conn-rate track per
    // rule; max-src-states and a plain source-track track globally unless
    // `rule` is said or implied.
    let per_rule = o.max_src_nodes.is_some()
        || o.max_src_conn.is_some()
        || o.max_src_conn_rate.is_some()
        || o.source_track == Some(SourceTrackAst::Rule);
    let tracks = per_rule || o.max_src_states.is_some() || o.source_track.is_some();
    if o.source_track == Some(SourceTrackAst::Global) {
        for (set, name) in [
            (o.max_src_nodes.is_some(), "max-src-nodes"),
            (o.max_src_conn.is_some(), "max-src-conn"),
            (o.max_src_conn_rate.is_some(), "max-src-conn-rate"),
        ] {
            if set {
                return Err(ctx.err(
                    pos,
                    format!("'{name}' is incompatible with 'source-track global'"),
                ));
            }
        }
    }
    let overload = match &o.overload {
        None => None,
        Some((table, tpos, flush)) => {
            // pf would accept it and never use it: dpf says so.
            if o.max_src_conn.is_none() && o.max_src_conn_rate.is_none() {
                return Err(ctx.err(
                    *tpos,
                    "overload needs max-src-conn or max-src-conn-rate (nothing else overloads a source)",
                ));
            }
            match ctx.tables.get(table) {
                None => {
                    return Err(ctx.err(
                        *tpos,
                        format!(
                            "table <{table}> is not defined (define it 'table <{table}> persist')"
                        ),
                    ))
                }
                Some(&i) if ctx.table_list[i as usize].flags().constant => {
                    return Err(ctx.err(
                        *tpos,
                        format!("overload table <{table}> is const: nothing can be added to it"),
                    ))
                }
                Some(_) => {}
            }
            Some(super::Overload {
                table: table.clone(),
                flush: *flush,
            })
        }
    };
    if !tracks {
        if o.src_track_s.is_some() {
            return Err(ctx.err(
                pos,
                "src.track needs source tracking (max-src-* or source-track)",
            ));
        }
        return Ok(None);
    }
    let rate = o.max_src_conn_rate.unwrap_or((0, 0));
    // pfctl: a node lives at least as long as its rate interval.
    let timeout_s = match o.src_track_s {
        Some(t) => Some(t.max(rate.1)),
        None if rate.1 > 0 => Some(rate.1),
        None => None,
    };
    if ctx.src_tracks.len() >= u16::MAX as usize {
        return Err(ctx.err(pos, "too many rules with source tracking"));
    }
    ctx.src_tracks.push(super::SrcTrack {
        global: !per_rule,
        max_src_nodes: o.max_src_nodes.unwrap_or(0),
        max_src_states: o.max_src_states.unwrap_or(0),
        max_src_conn: o.max_src_conn.unwrap_or(0),
        max_src_conn_rate: rate,
        overload,
        timeout_s,
    });
    Ok(Some(ctx.src_tracks.len() as u16 - 1))
}

/// pfctl's print of a rule's source tracking options, in its order.
fn render_src_track(t: &super::SrcTrack, parts: &mut Vec<String>) {
    parts.push(if t.global {
        "source-track global".into()
    } else {
        "source-track rule".into()
    });
    if t.max_src_states != 0 {
        parts.push(format!("max-src-states {}", t.max_src_states));
    }
    if t.max_src_conn != 0 {
        parts.push(format!("max-src-conn {}", t.max_src_conn));
    }
    if t.max_src_conn_rate.0 != 0 {
        parts.push(format!(
            "max-src-conn-rate {}/{}",
            t.max_src_conn_rate.0, t.max_src_conn_rate.1
        ));
    }
    if t.max_src_nodes != 0 {
        parts.push(format!("max-src-nodes {}", t.max_src_nodes));
    }
    if let Some(o) = &t.overload {
        parts.push(format!(
            "overload <{}>{}",
            o.table,
            match o.flush {
                super::OverloadFlush::None => "",
                super::OverloadFlush::Rule => " flush",
                super::OverloadFlush::Global => " flush global",
            }
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    r: &Rule,
    ifname: Option<&str>,
    tables: &[Table],
    timeouts: &[(crate::timeouts::TimeoutClass, u32)],
    src_track: Option<&super::SrcTrack>,
    adaptive: Option<(Option<u32>, Option<u32>)>,
    label: Option<&str>,
    anchor: Option<&str>,
) -> String {
    let mut s = String::new();
    match (anchor, r.action) {
        (Some(name), _) => {
            let _ = write!(s, "anchor \"{name}\"");
        }
        (None, Action::Match) => s.push_str("match"),
        (None, Action::Pass) => s.push_str("pass"),
        (None, Action::Block) => {
            s.push_str(match r.block {
                BlockMode::Drop => "block drop",
                BlockMode::Return => "block return",
                BlockMode::ReturnRst => "block return-rst",
                BlockMode::ReturnIcmp => "block return-icmp",
            });
            render_return_icmp(&mut s, r);
        }
    }
    match r.dir {
        Some(Direction::In) => s.push_str(" in"),
        Some(Direction::Out) => s.push_str(" out"),
        None => {}
    }
    if r.log != 0 {
        // pfctl's print_rule: `log`, `log (all)`, `log (matches)`,
        // `log (all, matches)`.
        use crate::pflog::log_flags;
        s.push_str(" log");
        match (r.log & log_flags::ALL != 0, r.log & log_flags::MATCHES != 0) {
            (true, true) => s.push_str(" (all, matches)"),
            (true, false) => s.push_str(" (all)"),
            (false, true) => s.push_str(" (matches)"),
            (false, false) => {}
        }
    }
    if r.quick {
        s.push_str(" quick");
    }
    if let (Some((_, not)), Some(name)) = (r.ifp, ifname) {
        let _ = write!(s, " on {}{name}", if not { "! " } else { "" });
    }
    match r.af {
        Some(Af::Inet) => s.push_str(" inet"),
        Some(Af::Inet6) => s.push_str(" inet6"),
        None => {}
    }
    if r.proto != 0 {
        match names::proto_name(r.proto) {
            Some(n) => {
                let _ = write!(s, " proto {n}");
            }
            None => {
                let _ = write!(s, " proto {}", r.proto);
            }
        }
    }
    let any = |m: &AddrMatch| m.kind == AddrKind::Any && !m.neg;
    if any(&r.src) && any(&r.dst) && r.src_port.op.is_none() && r.dst_port.op.is_none() {
        s.push_str(" all");
    } else {
        s.push_str(" from ");
        render_addr(&mut s, &r.src, tables);
        render_port(&mut s, &r.src_port, r.proto);
        s.push_str(" to ");
        render_addr(&mut s, &r.dst, tables);
        render_port(&mut s, &r.dst_port, r.proto);
    }
    if r.flags != 0 || r.flagset != 0 {
        s.push_str(" flags ");
        names::format_tcp_flags(r.flags, &mut s);
        s.push('/');
        names::format_tcp_flags(r.flagset, &mut s);
    } else if r.action == Action::Pass && (r.proto == 0 || r.proto == proto::TCP) && r.keep_state {
        s.push_str(" flags any");
    }
    if let Some(ty) = r.icmp_type {
        let af = r.af.unwrap_or(Af::Inet);
        s.push_str(if af == Af::Inet6 {
            " icmp6-type "
        } else {
            " icmp-type "
        });
        match names::icmp_type_name(af, ty) {
            Some(n) => s.push_str(n),
            None => {
                let _ = write!(s, "{ty}");
            }
        }
        if let Some(code) = r.icmp_code {
            match names::icmp_code_name(af, ty, code) {
                Some(n) => {
                    let _ = write!(s, " code {n}");
                }
                None => {
                    let _ = write!(s, " code {code}");
                }
            }
        }
    }
    let adaptive = adaptive.unwrap_or((None, None));
    let ropts = r.max_states.is_some()
        || r.no_sync
        || r.sloppy
        || !timeouts.is_empty()
        || src_track.is_some()
        || adaptive.0.is_some()
        || adaptive.1.is_some();
    if !r.keep_state && r.action == Action::Pass && anchor.is_none() {
        s.push_str(" no state");
    } else if r.keep_state && r.synproxy {
        s.push_str(" synproxy state");
    } else if r.keep_state && r.modulate {
        s.push_str(" modulate state");
    } else if r.keep_state && ropts {
        s.push_str(" keep state");
    }
    if r.keep_state && ropts {
        let mut parts: Vec<String> = Vec::new();
        if let Some(m) = r.max_states {
            parts.push(format!("max {m}"));
        }
        if r.no_sync {
            parts.push("no-sync".into());
        }
        if let Some(t) = src_track {
            render_src_track(t, &mut parts);
        }
        if r.sloppy {
            parts.push("sloppy".into());
        }
        let mut t: Vec<_> = timeouts.to_vec();
        t.sort_by_key(|(c, _)| *c as u8);
        for (c, secs) in t {
            parts.push(format!("{} {secs}", c.name()));
        }
        if let Some(secs) = src_track.and_then(|t| t.timeout_s) {
            parts.push(format!("src.track {secs}"));
        }
        if let Some(n) = adaptive.0 {
            parts.push(format!("adaptive.start {n}"));
        }
        if let Some(n) = adaptive.1 {
            parts.push(format!("adaptive.end {n}"));
        }
        let _ = write!(s, " ({})", parts.join(", "));
    }
    if r.allow_opts {
        s.push_str(" allow-opts");
    }
    render_scrub(&mut s, r);
    if let Some(l) = label {
        // Escape what the lexer unescapes (`\x` is `x` inside quotes).
        let escaped = l.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = write!(s, " label \"{escaped}\"");
    }
    s
}

/// A rule's scrub options as written, compiled: [`state_flags`] bits and
/// values (pf's `scrub_flags`, `max_mss`, `min_ttl`, `set_tos`).
fn scrub_of(a: &ScrubAst) -> (u16, Scrub) {
    let mut flags = 0;
    if a.no_df {
        flags |= state_flags::NODF;
    }
    if a.random_id {
        flags |= state_flags::RANDOMID;
    }
    if a.set_tos.is_some() {
        flags |= state_flags::SETTOS;
    }
    let scrub = Scrub {
        max_mss: a.max_mss.unwrap_or(0),
        min_ttl: a.min_ttl.unwrap_or(0),
        set_tos: a.set_tos.unwrap_or(0),
    };
    (flags, scrub)
}

/// Appends a rule's scrub options as pfctl prints them (`print_rule`):
/// ` scrub (no-df, random-id, min-ttl N, max-mss N)`, ` set tos 0xNN`.
fn render_scrub(s: &mut String, r: &Rule) {
    let mut parts: Vec<String> = Vec::new();
    if r.scrub_flags & state_flags::NODF != 0 {
        parts.push("no-df".into());
    }
    if r.scrub_flags & state_flags::RANDOMID != 0 {
        parts.push("random-id".into());
    }
    if r.scrub.min_ttl != 0 {
        parts.push(format!("min-ttl {}", r.scrub.min_ttl));
    }
    if r.scrub.max_mss != 0 {
        parts.push(format!("max-mss {}", r.scrub.max_mss));
    }
    if !parts.is_empty() {
        let _ = write!(s, " scrub ({})", parts.join(", "));
    }
    if r.scrub_flags & state_flags::SETTOS != 0 {
        let _ = write!(s, " set tos 0x{:02x}", r.scrub.set_tos);
    }
}

/// Appends a rule's tag and translation options as pfctl prints them.
fn render_translation(
    s: &mut String,
    r: &Rule,
    pools: &[Pool],
    routes: &[RoutePool],
    tags: &[String],
) {
    if let Some(rt) = r.route.and_then(|i| routes.get(i as usize)) {
        s.push(' ');
        s.push_str(rt.text());
    }
    let tag_name = |t: u16| tags.get(t as usize - 1).map(String::as_str).unwrap_or("?");
    if r.tag != 0 {
        let _ = write!(s, " tag {}", tag_name(r.tag));
    }
    if let Some((t, not)) = r.tagged {
        let _ = write!(s, " {}tagged {}", if not { "! " } else { "" }, tag_name(t));
    }
    for p in [r.nat, r.rdr].into_iter().flatten() {
        if let Some(pool) = pools.get(p as usize) {
            s.push(' ');
            s.push_str(pool.text());
        }
    }
}

/// `binat-to`: pfctl's two rules, an outbound one translating the source
/// (`nat-to` with `bitmask` and `static-port`) and an inbound one
/// translating the destination back (`rdr-to` with `bitmask`). `None` for
/// a rule without `binat-to`.
fn binat_rules(ctx: &Ctx<'_>, r: &RuleAst) -> Result<Option<[RuleAst; 2]>, RuleError> {
    let Some(b) = &r.binat else { return Ok(None) };
    if r.nat.is_some() || r.rdr.is_some() {
        return Err(ctx.err(b.pos, "binat-to cannot be combined with nat-to or rdr-to"));
    }
    if r.dir == Some(Direction::In) {
        return Err(ctx.err(
            b.pos,
            "binat-to can only be used outbound (the inbound half is implied)",
        ));
    }
    if b.ports.is_some() || b.kind.is_some_and(|k| k.0 != PoolType::Bitmask) {
        return Err(ctx.err(
            b.pos,
            "binat-to takes a single address or network, without port or pool type",
        ));
    }
    let single = |hosts: &[HostItem], what: &str| -> Result<(Af, u8), RuleError> {
        match hosts {
            [HostItem {
                not: false,
                host: HostAst::Net { af, len, .. },
                ..
            }] => Ok((*af, *len)),
            [h, ..] => Err(ctx.err(
                h.pos,
                format!("binat-to: {what} must be a single address or network"),
            )),
            [] => Err(ctx.err(
                r.pos,
                format!("binat-to: {what} must be a single address or network"),
            )),
        }
    };
    let (saf, slen) = single(&r.src.hosts, "the source")?;
    let (taf, tlen) = single(&b.hosts, "the translation")?;
    if saf != taf || slen != tlen {
        return Err(ctx.err(
            b.pos,
            "binat-to: the source and the translation must be of the same family and size",
        ));
    }
    let mut out = r.clone();
    out.binat = None;
    out.dir = Some(Direction::Out);
    out.nat = Some(PoolAst {
        kind: Some((PoolType::Bitmask, b.pos)),
        static_port: true,
        ..b.clone()
    });
    let mut inb = r.clone();
    inb.binat = None;
    inb.dir = Some(Direction::In);
    inb.src = r.dst.clone();
    inb.dst = Endpoint {
        hosts: b.hosts.clone(),
        ports: r.src.ports.clone(),
    };
    inb.rdr = Some(PoolAst {
        pos: b.pos,
        hosts: r.src.hosts.clone(),
        ports: None,
        kind: Some((PoolType::Bitmask, b.pos)),
        sticky: false,
        static_port: false,
    });
    Ok(Some([out, inb]))
}
