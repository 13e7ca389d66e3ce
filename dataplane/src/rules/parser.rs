//! The pf.conf subset parser: tokens to an unresolved syntax tree.
//!
//! Statements end at a newline outside braces and parentheses (newlines
//! inside a list are ignored, like pfctl's `optnl`). Macros (`name = value`)
//! are recorded in order and `$name` is replaced by the tokens of its value
//! before a statement is parsed, so a macro must be defined before use and
//! may hold a list (`ports = "{ 22 80 }"`). Rules follow pfctl's fixed order
//! (`action dir log quick on af proto from/to options`); the options after
//! from/to (`flags`, `icmp-type`, state, `label`) may come in any order.
//!
//! `include "file"` is parsed in place (macros are shared with the
//! including file); `anchor ... {` at the end of a line starts an inline
//! anchor whose rules run to a `}` on a line of its own; `load anchor`
//! files and run-time anchors are parsed as anchor bodies into
//! [`Ast::anchors`]. Every token's position names its file
//! ([`Ast::files`]).
//!
//! Invariants: every syntax error names the file and position of the
//! offending token (or of the `$macro` it came from); options (`set ...`)
//! may come anywhere, and a `block` rule takes the `set block-policy` in
//! force where it stands (pfctl's parse.y reads `blockpolicy` as each rule
//! is parsed); includes and anchors nest at most 16 deep and never loop.

use std::collections::HashMap;

use super::lexer::{lex, Pos, Tok, Token};
use super::names;
use super::{Action, BlockPolicy, RuleError};
use crate::flow::{Addr, Af, Direction};
use crate::timeouts::TimeoutClass;

mod translation;
pub(crate) use translation::{PoolAst, PoolPorts, PoolType, RouteAst, TaggedAst};

/// How deep macro values may reference other macros.
const MACRO_DEPTH_MAX: u32 = 16;
/// pfctl's `PF_TABLE_NAME_SIZE - 1`.
const TABLE_NAME_MAX: usize = 31;
/// pf's `PF_RULE_LABEL_SIZE - 1`.
pub(crate) const LABEL_MAX: usize = 63;

/// An address as written: `any`, `self`, a network, or a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HostAst {
    Any,
    SelfAddrs,
    Net {
        af: Af,
        addr: Addr,
        len: u8,
    },
    Table(String),
    /// An inclusive address range `from - to` (pf's `PF_ADDR_RANGE`).
    Range {
        af: Af,
        from: Addr,
        to: Addr,
    },
    /// An interface, CARP interface or group name standing for its
    /// addresses (`lan0`, `(lan0)`, `lan0:network`, `carp1:broadcast`).
    Iface {
        name: String,
        modifier: IfaceModifier,
    },
}

/// What of an interface's addresses `name[:modifier]` stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum IfaceModifier {
    /// The addresses themselves (hosts).
    Addresses,
    /// `:network`: the networks they are on.
    Network,
    /// `:broadcast`: the IPv4 broadcast address of each network.
    Broadcast,
    /// `:0`: the first address of each family (no aliases).
    NoAliases,
}

/// One (possibly negated) address of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostItem {
    pub not: bool,
    pub host: HostAst,
    pub pos: Pos,
}

/// Port comparison operators, as pf's `PF_OP_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PortOp {
    /// `= a`
    Eq,
    /// `!= a`
    Ne,
    /// `< a`
    Lt,
    /// `<= a`
    Le,
    /// `> a`
    Gt,
    /// `>= a`
    Ge,
    /// `a:b`, inclusive range (`PF_OP_RRG`).
    Range,
    /// `a >< b`, strictly between (`PF_OP_IRG`).
    Inside,
    /// `a <> b`, outside the closed range (`PF_OP_XRG`).
    Outside,
}

/// One port condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PortItem {
    pub op: PortOp,
    pub a: u16,
    pub b: u16,
    pub pos: Pos,
}

/// `from`/`to` operand: addresses (empty = any) and ports (empty = any).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub hosts: Vec<HostItem>,
    pub ports: Vec<PortItem>,
}

/// `on [!]name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IfItem {
    pub name: String,
    pub not: bool,
    pub pos: Pos,
}

/// `icmp-type t [code c]` (af Inet) or `icmp6-type ...` (af Inet6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IcmpItem {
    pub af: Af,
    pub ty: u8,
    pub code: Option<u8>,
    pub pos: Pos,
}

/// What a `block` does besides dropping (pf's `PFRULE_RETURN*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum BlockMode {
    Drop,
    Return,
    ReturnRst,
    ReturnIcmp,
}

/// `keep state (...)` options.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StateOpts {
    /// `modulate state`: TCP initial sequence numbers replaced by random
    /// ones (both sides), every packet's sequence and ack rewritten.
    pub modulate: bool,
    /// `synproxy state`: the firewall completes the client's handshake
    /// before opening the server's.
    pub synproxy: bool,
    pub max: Option<u32>,
    pub sloppy: bool,
    pub no_sync: bool,
    pub timeouts: Vec<(TimeoutClass, u32)>,
    /// Source tracking options (`max-src-*`, `overload`, `source-track`,
    /// `src.track`).
    pub src: SrcTrackAst,
    /// `adaptive.start N` / `adaptive.end N` (states of this rule).
    pub adaptive_start: Option<u32>,
    pub adaptive_end: Option<u32>,
}

/// `source-track` as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceTrackAst {
    /// `source-track` alone (pfctl's `PF_SRCTRACK`).
    Plain,
    /// `source-track rule`.
    Rule,
    /// `source-track global`.
    Global,
}

/// What `overload <table> flush` flushes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub enum OverloadFlush {
    /// No `flush`: the source's states stay.
    #[default]
    None,
    /// `flush`: the source's states created by this rule.
    Rule,
    /// `flush global`: all the source's states.
    Global,
}

/// The source tracking options of `keep state (...)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SrcTrackAst {
    pub max_src_nodes: Option<u32>,
    pub max_src_states: Option<u32>,
    pub max_src_conn: Option<u32>,
    /// (connections, seconds).
    pub max_src_conn_rate: Option<(u32, u32)>,
    /// (table, its position, flush).
    pub overload: Option<(String, Pos, OverloadFlush)>,
    pub source_track: Option<SourceTrackAst>,
    /// `src.track N` in the rule's options.
    pub src_track_s: Option<u32>,
    /// Where the first of these options is (for errors about them).
    pub pos: Option<Pos>,
}

/// The state clause of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StateAst {
    Keep(StateOpts),
    No,
}

/// `flags a/b` or `flags any`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlagsAst {
    pub flags: u8,
    pub flagset: u8,
}

/// A filter rule as written, before list expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleAst {
    pub pos: Pos,
    pub action: Action,
    pub block: BlockMode,
    pub dir: Option<Direction>,
    /// `log [(all, matches, to pflog0)]`: [`crate::pflog::log_flags`] bits
    /// (0 = no `log`).
    pub log: u8,
    pub quick: bool,
    pub ifaces: Vec<IfItem>,
    pub af: Option<Af>,
    pub protos: Vec<(u8, Pos)>,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub flags: Option<FlagsAst>,
    pub icmp: Vec<IcmpItem>,
    pub state: Option<StateAst>,
    pub label: Option<String>,
    /// `allow-opts`.
    pub allow_opts: bool,
    /// `nat-to ...`.
    pub nat: Option<PoolAst>,
    /// `rdr-to ...`.
    pub rdr: Option<PoolAst>,
    /// `binat-to ...`.
    pub binat: Option<PoolAst>,
    /// `tag <name>`.
    pub tag: Option<(String, Pos)>,
    /// `[!] tagged <name>`.
    pub tagged: Option<TaggedAst>,
    /// `route-to` / `reply-to`.
    pub route: Option<RouteAst>,
    /// `scrub (...)` and `set tos`.
    pub scrub: ScrubAst,
    /// The ICMP unreachable codes `return-icmp`/`return` answers with
    /// (IPv4, IPv6): pf's `return_icmp`/`return_icmp6`, port unreachable
    /// unless `return-icmp (code)` / `return-icmp6 (code)` say otherwise.
    pub return_icmp: (u8, u8),
    /// `anchor`: the anchor this rule calls (its rules are evaluated where
    /// it sits when its conditions match).
    pub anchor: Option<AnchorCall>,
}

/// pf's default `return-icmp` codes: port unreachable (ICMP type 3 code 3,
/// ICMPv6 type 1 code 4).
pub(crate) const RETURN_ICMP_DEFAULT: (u8, u8) = (3, 4);

/// What an `anchor` rule evaluates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AnchorCall {
    /// Its name (pfctl names an unnamed inline anchor `_N`).
    pub name: String,
    /// Inline rules (`anchor "a" { ... }`); `None` for a named anchor,
    /// whose rules come from `load anchor` or `dpfctl -a`.
    pub inline: Option<Vec<RuleAst>>,
}

impl RuleAst {
    /// A rule with `action` and nothing else (`block drop`, `pass` with
    /// pf's defaults), for rules the parser makes itself (`antispoof`).
    pub(crate) fn blank(pos: Pos, action: Action) -> RuleAst {
        RuleAst {
            pos,
            action,
            block: BlockMode::Drop,
            dir: None,
            log: 0,
            quick: false,
            ifaces: Vec::new(),
            af: None,
            protos: Vec::new(),
            src: Endpoint::default(),
            dst: Endpoint::default(),
            flags: None,
            icmp: Vec::new(),
            state: None,
            label: None,
            allow_opts: false,
            return_icmp: RETURN_ICMP_DEFAULT,
            anchor: None,
            nat: None,
            rdr: None,
            binat: None,
            tag: None,
            tagged: None,
            route: None,
            scrub: ScrubAst::default(),
        }
    }
}

/// A rule's scrub options (`scrub (...)`, `set tos`), as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ScrubAst {
    pub no_df: bool,
    pub random_id: bool,
    pub min_ttl: Option<u8>,
    pub max_mss: Option<u16>,
    pub set_tos: Option<u8>,
}

impl ScrubAst {
    /// Whether the rule has any scrub option.
    pub fn is_some(&self) -> bool {
        *self != ScrubAst::default()
    }
}

/// Words that may follow `anchor` where its name would be: the anchor
/// rule's conditions (an anchor named like one must be quoted).
const ANCHOR_CONDITION_WORDS: &[&str] = &[
    "in", "out", "log", "quick", "on", "inet", "inet6", "proto", "from", "to", "all",
];

/// pfctl's `anchorname` checks.
fn check_anchor_name(p: &Parser<'_>, name: &str, pos: Pos) -> Result<(), RuleError> {
    if name.is_empty() {
        return Err(p.err(pos, "anchor name must not be empty"));
    }
    if name.starts_with('_') || name.contains("/_") {
        return Err(p.err(
            pos,
            "anchor names beginning with '_' are reserved for internal use",
        ));
    }
    if name.len() > ANCHOR_NAME_MAX {
        return Err(p.err(pos, format!("anchor name is longer than {ANCHOR_NAME_MAX}")));
    }
    if name.ends_with('/') || name.contains("//") || name.split('/').any(|c| c == ".." || c == ".")
    {
        return Err(p.err(pos, format!("bad anchor name {name}")));
    }
    Ok(())
}

/// Longest anchor path dpf takes.
const ANCHOR_NAME_MAX: usize = 255;

/// `table <name> [persist] [const] [{ ... }] [file "path"]...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableDef {
    pub name: String,
    pub pos: Pos,
    pub entries: Vec<HostItem>,
    pub persist: bool,
    pub constant: bool,
    /// `file "path"` options, in order, with the position of the path.
    pub files: Vec<(String, Pos)>,
    /// A `{ }` list (even empty) or a `file` was given: pfctl's
    /// `init_addr`, which makes a reload reset the table's contents.
    pub has_addrs: bool,
}

/// A whole parsed file.
#[derive(Clone, Debug, Default)]
pub(crate) struct Ast {
    pub limit_states: Option<u32>,
    /// `set limit src-nodes`.
    pub limit_src_nodes: Option<u32>,
    /// `set limit frags`.
    pub limit_frags: Option<u32>,
    /// `set timeout frag` (seconds).
    pub frag_timeout: Option<u32>,
    /// `set reassemble yes|no [no-df]`: (reassemble, no-df).
    pub reassemble: Option<(bool, bool)>,
    pub timeouts: Vec<(TimeoutClass, u32)>,
    /// `set timeout src.track`.
    pub src_track_s: Option<u32>,
    /// `set timeout adaptive.start N` (states).
    pub adaptive_start: Option<u32>,
    /// `set timeout adaptive.end N` (states).
    pub adaptive_end: Option<u32>,
    pub skip: Vec<(String, Pos)>,
    pub block_policy: BlockPolicy,
    /// `set syncookies`.
    pub syncookies: Option<crate::syncookie::Mode>,
    pub tables: Vec<TableDef>,
    pub rules: Vec<RuleAst>,
    /// Named anchors' rules (`load anchor`, `dpfctl -a`), by name.
    pub anchors: std::collections::BTreeMap<String, Vec<RuleAst>>,
    /// Anchors whose rules were given at run time: they replace inline
    /// rules of the same name.
    pub replaced: std::collections::BTreeSet<String>,
    /// The files read, indexed by `Pos::file` (0 = the main file).
    pub files: Vec<String>,
}

/// Words that start a statement or that pfctl reserves; not macro names.
const RESERVED: &[&str] = &[
    "pass",
    "block",
    "match",
    "set",
    "table",
    "anchor",
    "antispoof",
    "scrub",
    "nat",
    "rdr",
    "binat",
    "load",
    "queue",
    "altq",
    "include",
    "in",
    "out",
    "on",
    "from",
    "to",
    "all",
    "any",
    "self",
    "port",
    "proto",
    "inet",
    "inet6",
    "flags",
    "quick",
    "log",
    "keep",
    "state",
    "no",
];

/// Statements pf has but dpf does not implement.
const UNSUPPORTED_STATEMENTS: &[&str] = &[
    "scrub",
    "nat",
    "rdr",
    "binat",
    "queue",
    "altq",
    "nat-anchor",
    "rdr-anchor",
    "binat-anchor",
];

/// How deep `include` may nest (pfctl has no limit but loops forever on
/// a cycle; dpf refuses both).
const INCLUDE_DEPTH_MAX: usize = 16;
/// How deep anchors may nest inside anchors.
const ANCHOR_DEPTH_MAX: usize = 16;

/// Where `include "file"` and `load anchor ... from "file"` read their
/// files: a relative path is relative to the directory of the file that
/// names it (as pfctl resolves it), the reader adds its own base.
pub trait SourceFiles {
    /// The text of file `path`, or why it cannot be read.
    fn read(&self, path: &str) -> Result<String, String>;
}

/// Reads files from the file system; relative paths are taken relative to
/// `base` (the directory the main file was named from), or to the current
/// directory.
#[derive(Clone, Debug, Default)]
pub struct FsFiles {
    /// Directory relative paths start from.
    pub base: Option<std::path::PathBuf>,
}

impl SourceFiles for FsFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        let p = std::path::Path::new(path);
        let full = match &self.base {
            Some(b) if p.is_relative() => b.join(p),
            _ => p.to_path_buf(),
        };
        std::fs::read_to_string(&full).map_err(|e| e.to_string())
    }
}

/// The path of `name` as written in file `from`: relative names are
/// relative to `from`'s directory.
fn relative_to(from: &str, name: &str) -> String {
    let p = std::path::Path::new(name);
    if p.is_absolute() {
        return name.to_string();
    }
    match std::path::Path::new(from).parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(p).to_string_lossy().into_owned(),
        _ => name.to_string(),
    }
}

/// The parse of one run: the files read so far, the macros (global across
/// included files, as pfctl's), the errors.
struct Files<'r> {
    reader: &'r dyn SourceFiles,
    names: Vec<String>,
    /// Files being read (include loop detection).
    stack: Vec<String>,
    macros: HashMap<String, String>,
    errors: Vec<RuleError>,
    /// Anchor bodies being parsed.
    anchor_depth: usize,
}

/// Parses a whole file, reading included files through `reader`. Every
/// statement with an error is reported (in order) and left out of the
/// tree, and the rest is still parsed, so one run names every error.
pub(crate) fn parse_with(
    src: &str,
    file: &str,
    reader: &dyn SourceFiles,
    anchors: &[super::AnchorSource],
) -> (Ast, Vec<RuleError>) {
    let mut ast = Ast::default();
    let mut f = Files {
        reader,
        names: vec![file.to_string()],
        stack: vec![file.to_string()],
        macros: HashMap::new(),
        errors: Vec::new(),
        anchor_depth: 0,
    };
    f.parse_file(src, 0, &mut ast);
    // Anchors loaded at run time (`dpfctl -a name -f file`) replace what
    // `load anchor` gave them.
    for a in anchors {
        f.stack = vec![a.file.clone()];
        let idx = f.add_file(&a.file);
        let body = f.parse_anchor_file(&a.text, idx, &mut ast);
        ast.anchors.insert(a.name.clone(), body);
        ast.replaced.insert(a.name.clone());
    }
    ast.files = f.names;
    let mut errors = f.errors;
    errors.sort_by_key(|e| (e.file != file, e.line, e.col));
    (ast, errors)
}

impl Files<'_> {
    fn add_file(&mut self, name: &str) -> u16 {
        self.names.push(name.to_string());
        (self.names.len() - 1).min(u16::MAX as usize) as u16
    }

    /// Lexes and parses one file's text into `ast`.
    fn parse_file(&mut self, src: &str, idx: u16, ast: &mut Ast) {
        let name = self.names[idx as usize].clone();
        let mut raw = match lex(src, &name, None) {
            Ok(r) => r,
            Err(e) => {
                self.errors.push(e);
                return;
            }
        };
        for t in &mut raw {
            t.pos.file = idx;
        }
        // Position just past the last character, for "unexpected end" errors.
        let eof = Pos {
            line: 1 + src.matches('\n').count() as u32,
            col: 1 + src.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32,
            file: idx,
        };
        let mut iter = raw.into_iter().peekable();
        self.statements(&mut iter, &name, eof, ast, false);
    }

    /// Parses a file of anchor rules (`load anchor`, `dpfctl -a`): its
    /// filter rules, with `include` and nested anchors.
    fn parse_anchor_file(&mut self, src: &str, idx: u16, ast: &mut Ast) -> Vec<RuleAst> {
        let saved = std::mem::take(&mut ast.rules);
        self.anchor_depth += 1;
        self.parse_file(src, idx, ast);
        self.anchor_depth -= 1;
        std::mem::replace(&mut ast.rules, saved)
    }

    /// Splits tokens into statements and parses each. In an anchor body
    /// (`in_body`), stops after the `}` that closes it and returns whether
    /// it came.
    fn statements(
        &mut self,
        iter: &mut std::iter::Peekable<std::vec::IntoIter<Token>>,
        file: &str,
        eof: Pos,
        ast: &mut Ast,
        in_body: bool,
    ) -> bool {
        let mut stmt: Vec<Token> = Vec::new();
        let mut opens: Vec<Pos> = Vec::new();
        let mut body: Option<Vec<RuleAst>> = None;
        loop {
            let t = iter.next();
            if in_body && stmt.is_empty() && t.as_ref().is_some_and(|t| t.tok == Tok::RBrace) {
                return true;
            }
            // `anchor ... {` then a newline: the anchor's rules follow, up
            // to a `}` of their own line (pfctl's `pfa_anchor`).
            if let Some(tk) = &t {
                let anchor_stmt =
                    matches!(stmt.first().map(|t| &t.tok), Some(Tok::Word(w)) if w == "anchor");
                if tk.tok == Tok::LBrace
                    && opens.is_empty()
                    && anchor_stmt
                    && iter.peek().is_some_and(|n| n.tok == Tok::Newline)
                {
                    if self.anchor_depth >= ANCHOR_DEPTH_MAX {
                        self.errors.push(RuleError::new(
                            file,
                            tk.pos,
                            "anchors nested too deeply".into(),
                        ));
                        return false;
                    }
                    let saved = std::mem::take(&mut ast.rules);
                    self.anchor_depth += 1;
                    let closed = self.statements(iter, file, eof, ast, true);
                    self.anchor_depth -= 1;
                    body = Some(std::mem::replace(&mut ast.rules, saved));
                    if !closed {
                        self.errors.push(RuleError::new(
                            file,
                            tk.pos,
                            "unbalanced '{': anchor not closed".into(),
                        ));
                        return false;
                    }
                    stmt.push(tk.clone());
                    continue;
                }
            }
            let end = match &t {
                None => true,
                Some(t) => t.tok == Tok::Newline && opens.is_empty(),
            };
            if let Some(t) = &t {
                match t.tok {
                    Tok::LBrace | Tok::LParen => opens.push(t.pos),
                    Tok::RBrace | Tok::RParen => {
                        opens.pop();
                    }
                    _ => {}
                }
            }
            if !end {
                if let Some(t) = t {
                    if t.tok != Tok::Newline {
                        stmt.push(t);
                    }
                }
                continue;
            }
            if let Some(open) = opens.first() {
                self.errors.push(RuleError::new(
                    file,
                    *open,
                    "unbalanced '{' or '(': not closed".into(),
                ));
                return false;
            }
            if !stmt.is_empty() {
                let end_pos = match &t {
                    Some(t) => t.pos,
                    None => eof,
                };
                let toks = std::mem::take(&mut stmt);
                if let Err(e) = self.statement(toks, end_pos, file, ast, body.take(), in_body) {
                    self.errors.push(e);
                }
            }
            if t.is_none() {
                return false;
            }
        }
    }

    /// One statement: `include`, `load anchor`, or what [`statement`] parses.
    fn statement(
        &mut self,
        toks: Vec<Token>,
        end: Pos,
        file: &str,
        ast: &mut Ast,
        body: Option<Vec<RuleAst>>,
        in_body: bool,
    ) -> Result<(), RuleError> {
        let first = match toks.first().map(|t| &t.tok) {
            Some(Tok::Word(w)) => w.as_str(),
            _ => "",
        };
        let in_anchor = in_body || self.anchor_depth > 0;
        match first {
            "include" => {
                let toks = expand(&toks, file, &self.macros, 0)?;
                let mut p = Parser::new(file, toks, end);
                p.i = 1;
                let (name, pos) = p.string("a file name")?;
                p.finish()?;
                self.include(&name, pos, file, ast)
            }
            "load" => {
                if in_anchor {
                    return Err(RuleError::new(file, toks[0].pos, "load anchor is not allowed inside an anchor".into()));
                }
                let toks = expand(&toks, file, &self.macros, 0)?;
                let mut p = Parser::new(file, toks, end);
                p.i = 1;
                p.expect_kw("anchor")?;
                let (name, npos) = p.string("an anchor name")?;
                check_anchor_name(&p, &name, npos)?;
                p.expect_kw("from")?;
                let (path, ppos) = p.string("a file name")?;
                p.finish()?;
                let full = relative_to(file, &path);
                let text = self.reader.read(&full).map_err(|e| {
                    RuleError::new(file, ppos, format!("cannot load anchor {name} from {full}: {e}"))
                })?;
                let saved = std::mem::replace(&mut self.stack, vec![full.clone()]);
                let idx = self.add_file(&full);
                let rules = self.parse_anchor_file(&text, idx, ast);
                self.stack = saved;
                ast.anchors.insert(name, rules);
                Ok(())
            }
            _ if in_anchor && !matches!(first, "pass" | "block" | "anchor") && toks.get(1).map(|t| &t.tok) != Some(&Tok::Eq) => {
                Err(RuleError::new(
                    file,
                    toks[0].pos,
                    format!("'{first}' is not allowed inside an anchor (filter rules, anchors and include only)"),
                ))
            }
            _ => statement(toks, end, file, &mut self.macros, ast, body),
        }
    }

    /// `include "file"`: parses the file in place (macros carry over both
    /// ways, as pfctl's include is textual).
    fn include(
        &mut self,
        name: &str,
        pos: Pos,
        file: &str,
        ast: &mut Ast,
    ) -> Result<(), RuleError> {
        let full = relative_to(file, name);
        if self.stack.contains(&full) {
            return Err(RuleError::new(
                file,
                pos,
                format!("include loop: {full} includes itself"),
            ));
        }
        if self.stack.len() > INCLUDE_DEPTH_MAX {
            return Err(RuleError::new(
                file,
                pos,
                format!("includes nested more than {INCLUDE_DEPTH_MAX} deep"),
            ));
        }
        let text = self.reader.read(&full).map_err(|e| {
            RuleError::new(file, pos, format!("failed to include file {full}: {e}"))
        })?;
        let idx = self.add_file(&full);
        self.stack.push(full);
        self.parse_file(&text, idx, ast);
        self.stack.pop();
        Ok(())
    }
}

fn statement(
    toks: Vec<Token>,
    end: Pos,
    file: &str,
    macros: &mut HashMap<String, String>,
    ast: &mut Ast,
    body: Option<Vec<RuleAst>>,
) -> Result<(), RuleError> {
    // Macro definition: `name = value...`.
    if let (Some(Tok::Word(name)), Some(Tok::Eq)) =
        (toks.first().map(|t| &t.tok), toks.get(1).map(|t| &t.tok))
    {
        let pos = toks[0].pos;
        if RESERVED.contains(&name.as_str()) {
            return Err(RuleError::new(
                file,
                pos,
                format!("'{name}' is a reserved word, not a macro name"),
            ));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(RuleError::new(
                file,
                pos,
                format!("invalid macro name '{name}': use letters, digits and '_'"),
            ));
        }
        if toks.len() < 3 {
            return Err(RuleError::new(
                file,
                end,
                format!("macro '{name}' has no value"),
            ));
        }
        let value_toks = expand(&toks[2..], file, macros, 0)?;
        let value: Vec<String> = value_toks
            .iter()
            .map(|t| match &t.tok {
                Tok::Str(s) => s.clone(),
                other => other.text(),
            })
            .collect();
        macros.insert(name.clone(), value.join(" "));
        return Ok(());
    }
    let toks = expand(&toks, file, macros, 0)?;
    let mut p = Parser::new(file, toks, end);
    p.anchor_body = body;
    p.statement(ast)
}

/// Replaces `$name` tokens by the tokens of the macro's value.
fn expand(
    toks: &[Token],
    file: &str,
    macros: &HashMap<String, String>,
    depth: u32,
) -> Result<Vec<Token>, RuleError> {
    let mut out = Vec::with_capacity(toks.len());
    for t in toks {
        match &t.tok {
            Tok::Macro(name) => {
                let Some(value) = macros.get(name) else {
                    return Err(RuleError::new(
                        file,
                        t.pos,
                        format!("macro '{name}' is not defined"),
                    ));
                };
                if depth >= MACRO_DEPTH_MAX {
                    return Err(RuleError::new(
                        file,
                        t.pos,
                        format!("macro '{name}' expands too deeply"),
                    ));
                }
                let inner = lex(value, file, Some(t.pos))?;
                let inner: Vec<Token> = inner
                    .into_iter()
                    .filter(|t| t.tok != Tok::Newline)
                    .collect();
                out.extend(expand(&inner, file, macros, depth + 1)?);
            }
            _ => out.push(t.clone()),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    file: &'a str,
    toks: Vec<Token>,
    i: usize,
    end: Pos,
    /// The rules of an inline anchor (`anchor "a" { ... }`) this
    /// statement ends with, parsed by the statement splitter.
    anchor_body: Option<Vec<RuleAst>>,
}

impl<'a> Parser<'a> {
    fn new(file: &'a str, toks: Vec<Token>, end: Pos) -> Parser<'a> {
        Parser {
            file,
            toks,
            i: 0,
            end,
            anchor_body: None,
        }
    }

    fn err(&self, pos: Pos, msg: impl Into<String>) -> RuleError {
        RuleError::new(self.file, pos, msg.into())
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn pos(&self) -> Pos {
        self.toks.get(self.i).map(|t| t.pos).unwrap_or(self.end)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn unexpected(&self, expected: &str) -> RuleError {
        match self.peek() {
            None => self.err(
                self.end,
                format!("unexpected end of line, expected {expected}"),
            ),
            Some(t) => self.err(
                self.pos(),
                format!("unexpected '{}', expected {expected}", t.text()),
            ),
        }
    }

    fn expect(&mut self, tok: &Tok, expected: &str) -> Result<(), RuleError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    /// `log [( all | matches | to pflog0 [, ...] )]` (pfctl's `logopts`),
    /// the `log` keyword at the cursor: [`crate::pflog::log_flags`] bits.
    /// `user` (socket lookup) and log interfaces other than `pflog0` (dpf
    /// writes one log) are refused.
    fn log_opts(&mut self) -> Result<u8, RuleError> {
        use crate::pflog::log_flags;
        self.expect_kw("log")?;
        let mut flags = log_flags::LOG;
        if !self.eat(&Tok::LParen) {
            return Ok(flags);
        }
        loop {
            let pos = self.pos();
            if self.eat_kw("all") {
                flags |= log_flags::ALL;
            } else if self.eat_kw("matches") {
                flags |= log_flags::MATCHES;
            } else if self.eat_kw("to") {
                let (ifname, ipos) = self.string("a pflog interface")?;
                if ifname != "pflog0" {
                    return Err(self.err(
                        ipos,
                        format!("log to {ifname} is not supported by dpf (one log: pflog0, the [log] file)"),
                    ));
                }
            } else if self.is_kw("user") {
                return Err(self.err(
                    pos,
                    "log (user) is not supported by dpf (no sockets to look up)",
                ));
            } else {
                return Err(self.unexpected("all, matches, to pflog0 or ')'"));
            }
            if self.eat(&Tok::RParen) {
                return Ok(flags);
            }
            self.eat(&Tok::Comma);
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), RuleError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{kw}'")))
        }
    }

    /// A word or quoted string (pfctl's `STRING`).
    fn string(&mut self, expected: &str) -> Result<(String, Pos), RuleError> {
        let pos = self.pos();
        match self.peek() {
            Some(Tok::Word(w)) | Some(Tok::Str(w)) => {
                let w = w.clone();
                self.i += 1;
                Ok((w, pos))
            }
            _ => Err(self.unexpected(expected)),
        }
    }

    fn number(&mut self, what: &str, max: u64) -> Result<(u64, Pos), RuleError> {
        let (s, pos) = self.string(what)?;
        match s.parse::<u64>() {
            Ok(n) if n <= max && s.bytes().all(|b| b.is_ascii_digit()) => Ok((n, pos)),
            Ok(_) => Err(self.err(pos, format!("{what} {s} is out of range (0-{max})"))),
            Err(_) => Err(self.err(pos, format!("'{s}' is not a number ({what})"))),
        }
    }

    fn at_end(&self) -> bool {
        self.i >= self.toks.len()
    }

    fn finish(&self) -> Result<(), RuleError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.unexpected("end of line"))
        }
    }

    /// Calls `item` for a single item or for each item of `{ a, b c }`.
    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, RuleError>,
    ) -> Result<Vec<T>, RuleError> {
        if self.eat(&Tok::LBrace) {
            let mut v = Vec::new();
            loop {
                if self.eat(&Tok::RBrace) {
                    break;
                }
                v.push(item(self)?);
                self.eat(&Tok::Comma);
            }
            if v.is_empty() {
                return Err(self.err(self.toks[self.i - 1].pos, "empty list"));
            }
            Ok(v)
        } else {
            Ok(vec![item(self)?])
        }
    }

    fn statement(&mut self, ast: &mut Ast) -> Result<(), RuleError> {
        let (first, pos) = match self.peek() {
            Some(Tok::Word(w)) => (w.clone(), self.pos()),
            _ => return Err(self.unexpected("a statement (pass, block, set, table or a macro)")),
        };
        match first.as_str() {
            "pass" | "block" | "match" => {
                let rule = self.rule(ast.block_policy)?;
                ast.rules.push(rule);
                Ok(())
            }
            // Options may come anywhere (current pfctl); `set
            // block-policy` applies to the block rules after it, as
            // pfctl's parser reads it when it parses each rule.
            "set" => {
                self.i += 1;
                self.set(ast)
            }
            "anchor" => {
                let rule = self.anchor_rule(ast)?;
                ast.rules.push(rule);
                Ok(())
            }
            "antispoof" => {
                let rules = self.antispoof()?;
                ast.rules.extend(rules);
                Ok(())
            }
            "table" => {
                self.i += 1;
                let t = self.table()?;
                ast.tables.push(t);
                Ok(())
            }
            w if UNSUPPORTED_STATEMENTS.contains(&w) => {
                Err(self.err(pos, format!("'{w}' is not supported by dpf")))
            }
            w => Err(self.err(
                pos,
                format!("unknown statement '{w}', expected pass, block, set, table or a macro"),
            )),
        }
    }

    /// `anchor [name] [in|out] [quick] [on ...] [af] [proto ...]
    /// [from ... to ... | all] [filter options] [{ rules }]` (pfctl's
    /// `anchorrule`): parsed as a pass rule's head and conditions, without
    /// state.
    fn anchor_rule(&mut self, ast: &Ast) -> Result<RuleAst, RuleError> {
        let pos = self.pos();
        let body = self.anchor_body.take();
        if body.is_some() {
            // The `{` the statement splitter left in place of the rules.
            self.toks.pop();
        }
        let mut name = None;
        match self.toks.get(1).map(|t| (&t.tok, t.pos)) {
            Some((Tok::Str(n), npos)) => name = Some((n.clone(), npos)),
            Some((Tok::Word(w), npos)) if !ANCHOR_CONDITION_WORDS.contains(&w.as_str()) => {
                name = Some((w.clone(), npos))
            }
            _ => {}
        }
        if let Some((n, npos)) = &name {
            check_anchor_name(self, n, *npos)?;
            if body.is_some() && n.contains('/') {
                return Err(self.err(
                    *npos,
                    "anchor paths containing '/' cannot be used for inline anchors.",
                ));
            }
            self.toks.remove(1);
        }
        self.toks[0].tok = Tok::Word("pass".into());
        let mut rule = self.rule(BlockPolicy::Drop)?;
        if rule.state.is_some() {
            return Err(self.err(pos, "cannot specify state handling on anchors"));
        }
        if rule.allow_opts {
            return Err(self.err(pos, "allow-opts cannot be specified on anchors"));
        }
        if rule.scrub.is_some() {
            return Err(self.err(pos, "scrub options cannot be specified on anchors"));
        }
        if rule.log != 0 {
            // pf.conf's anchor-rule has no log option.
            return Err(self.err(pos, "log cannot be specified on anchors"));
        }
        let name = match (name, &body) {
            (Some((n, _)), _) => n,
            // pfctl names an unnamed inline anchor `_N`.
            (None, Some(_)) => format!("_{}", ast.rules.len() + 1),
            (None, None) => {
                return Err(self.err(pos, "anchors without explicit rules must specify a name"))
            }
        };
        rule.pos = pos;
        rule.anchor = Some(AnchorCall { name, inline: body });
        Ok(rule)
    }

    /// `antispoof [quick] for IF|{ IF ... } [inet|inet6] [label "l"]`,
    /// expanded as pfctl does (its `antispoof` rule): for each interface,
    /// `block drop in on ! IF from IF:network to any` (its networks arriving
    /// elsewhere) and `block drop in from IF to any` (its own addresses
    /// arriving from outside). dpf has no loopback ports, so the second
    /// rule is always made.
    fn antispoof(&mut self) -> Result<Vec<RuleAst>, RuleError> {
        let pos = self.pos();
        self.i += 1;
        let mut quick = false;
        let mut log = 0u8;
        loop {
            if log == 0 && self.is_kw("log") {
                log = self.log_opts()?;
                continue;
            }
            if !quick && self.eat_kw("quick") {
                quick = true;
                continue;
            }
            break;
        }
        self.expect_kw("for")?;
        let ifs = self.list(|p| {
            let paren = p.eat(&Tok::LParen);
            let (n, npos) = p.string("an interface name")?;
            if paren {
                p.expect(&Tok::RParen, "')' after the interface name")?;
            }
            if !is_iface_word(&n) || n.contains(':') {
                return Err(p.err(npos, format!("invalid interface name '{n}'")));
            }
            Ok((n, npos))
        })?;
        let af = if self.eat_kw("inet") {
            Some(Af::Inet)
        } else if self.eat_kw("inet6") {
            Some(Af::Inet6)
        } else {
            None
        };
        let mut label = None;
        while self.is_kw("label") {
            if label.is_some() {
                return Err(self.err(self.pos(), "label cannot be redefined"));
            }
            self.i += 1;
            label = Some(self.label()?);
        }
        self.finish()?;
        let mut base = RuleAst::blank(pos, Action::Block);
        base.dir = Some(Direction::In);
        base.quick = quick;
        base.log = log;
        base.af = af;
        base.label = label;
        let mut out = Vec::new();
        for (name, npos) in ifs {
            let mut outside = base.clone();
            outside.ifaces = vec![IfItem {
                name: name.clone(),
                not: true,
                pos: npos,
            }];
            outside.src.hosts = vec![HostItem {
                not: false,
                host: HostAst::Iface {
                    name: name.clone(),
                    modifier: IfaceModifier::Network,
                },
                pos: npos,
            }];
            let mut own = base.clone();
            own.src.hosts = vec![HostItem {
                not: false,
                host: HostAst::Iface {
                    name,
                    modifier: IfaceModifier::Addresses,
                },
                pos: npos,
            }];
            out.push(outside);
            out.push(own);
        }
        Ok(out)
    }

    fn set(&mut self, ast: &mut Ast) -> Result<(), RuleError> {
        let (opt, pos) = self.string("an option name")?;
        match opt.as_str() {
            "limit" => {
                let items = self.list(|p| {
                    let (name, npos) = p.string("a limit name")?;
                    if !["states", "src-nodes", "frags"].contains(&name.as_str()) {
                        return Err(p.err(
                            npos,
                            format!(
                                "set limit {name} is not supported by dpf (only 'states', 'src-nodes' and 'frags')"
                            ),
                        ));
                    }
                    let (n, _) = p.number("limit", u32::MAX as u64)?;
                    Ok((name, n as u32))
                })?;
                for (name, n) in items {
                    match name.as_str() {
                        "states" => ast.limit_states = Some(n),
                        "src-nodes" => ast.limit_src_nodes = Some(n),
                        _ => ast.limit_frags = Some(n),
                    }
                }
            }
            "timeout" => {
                let items = self.list(|p| {
                    let (name, npos) = p.string("a timeout name")?;
                    let which = match name.as_str() {
                        "adaptive.start" => TimeoutName::AdaptiveStart,
                        "adaptive.end" => TimeoutName::AdaptiveEnd,
                        "src.track" => TimeoutName::SrcTrack,
                        "frag" => TimeoutName::Frag,
                        n => match TimeoutClass::from_name(n) {
                            Some(class) => TimeoutName::State(class),
                            None => return Err(p.err(npos, unknown_timeout(&name))),
                        },
                    };
                    let (n, _) = p.number("timeout", u32::MAX as u64)?;
                    Ok((which, n as u32))
                })?;
                for (which, n) in items {
                    match which {
                        TimeoutName::State(class) => ast.timeouts.push((class, n)),
                        TimeoutName::AdaptiveStart => ast.adaptive_start = Some(n),
                        TimeoutName::AdaptiveEnd => ast.adaptive_end = Some(n),
                        TimeoutName::SrcTrack => ast.src_track_s = Some(n),
                        TimeoutName::Frag => ast.frag_timeout = Some(n),
                    }
                }
            }
            "reassemble" => {
                let (v, vpos) = self.string("'yes' or 'no'")?;
                let on = match v.as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => {
                        return Err(self.err(
                            vpos,
                            format!("unknown reassemble value '{v}', expected 'yes' or 'no'"),
                        ))
                    }
                };
                let no_df = self.eat_kw("no-df");
                ast.reassemble = Some((on, no_df));
            }
            "skip" => {
                self.expect_kw("on")?;
                let items = self.list(|p| p.string("an interface name"))?;
                ast.skip.extend(items);
            }
            "block-policy" => {
                let (v, vpos) = self.string("'drop' or 'return'")?;
                ast.block_policy = match v.as_str() {
                    "drop" => BlockPolicy::Drop,
                    "return" => BlockPolicy::Return,
                    _ => {
                        return Err(self.err(
                            vpos,
                            format!("unknown block-policy '{v}', expected 'drop' or 'return'"),
                        ))
                    }
                };
            }
            "syncookies" => ast.syncookies = Some(self.syncookies()?),
            other => {
                return Err(self.err(pos, format!("set {other} is not supported by dpf")));
            }
        }
        self.finish()
    }

    /// `set syncookies never | always | adaptive [(start N%, end N%)]`
    /// (pfctl's `syncookie_opts`; percentages may have decimals).
    fn syncookies(&mut self) -> Result<crate::syncookie::Mode, RuleError> {
        use crate::syncookie::Mode;
        let (v, vpos) = self.string("'never', 'always' or 'adaptive'")?;
        match v.as_str() {
            "never" => return Ok(Mode::Never),
            "always" => return Ok(Mode::Always),
            "adaptive" => {}
            _ => {
                return Err(self.err(
                    vpos,
                    format!(
                        "unknown syncookies mode '{v}', expected 'never', 'always' or 'adaptive'"
                    ),
                ))
            }
        }
        if !self.eat(&Tok::LParen) {
            return Ok(Mode::ADAPTIVE_DEFAULT);
        }
        let (mut start, mut end) = (None, None);
        loop {
            let (name, npos) = self.string("'start' or 'end'")?;
            let (pct, ppos) = self.string("a percentage such as 25%")?;
            let value = parse_cpct(&pct).ok_or_else(|| {
                self.err(
                    ppos,
                    format!("'{pct}' is not a percentage between 0% and 100%"),
                )
            })?;
            match name.as_str() {
                "start" if start.is_none() => start = Some(value),
                "end" if end.is_none() => end = Some(value),
                "start" | "end" => {
                    return Err(self.err(npos, format!("{name} cannot be redefined")))
                }
                _ => {
                    return Err(self.err(npos, format!("expected 'start' or 'end', found '{name}'")))
                }
            }
            if self.eat(&Tok::RParen) {
                break;
            }
            self.expect(&Tok::Comma, "',' or ')'")?;
        }
        let (Some(start_cpct), Some(end_cpct)) = (start, end) else {
            return Err(self.err(vpos, "syncookies adaptive needs both start and end"));
        };
        if end_cpct > start_cpct {
            return Err(self.err(vpos, "syncookies end must not be above start"));
        }
        Ok(Mode::Adaptive {
            start_cpct,
            end_cpct,
        })
    }

    /// pfctl's `tabledef`: options in any order, lists and files any
    /// number of times.
    fn table(&mut self) -> Result<TableDef, RuleError> {
        let pos = self.pos();
        self.expect(&Tok::Lt, "'<' before the table name")?;
        let (name, npos) = self.string("a table name")?;
        self.expect(&Tok::Gt, "'>' after the table name")?;
        check_table_name(self, &name, npos)?;
        let mut def = TableDef {
            name,
            pos,
            entries: Vec::new(),
            persist: false,
            constant: false,
            files: Vec::new(),
            has_addrs: false,
        };
        while !self.at_end() {
            if self.eat_kw("persist") {
                def.persist = true;
            } else if self.eat_kw("const") {
                def.constant = true;
            } else if self.is_kw("counters") {
                return Err(self.err(
                    self.pos(),
                    "table counters are not supported by dpf (per-address counters would cost every lookup)",
                ));
            } else if self.eat_kw("file") {
                let (path, ppos) = self.string("a file name in quotes")?;
                def.files.push((path, ppos));
                def.has_addrs = true;
            } else if self.eat(&Tok::LBrace) {
                def.has_addrs = true;
                loop {
                    if self.eat(&Tok::RBrace) {
                        break;
                    }
                    let item = self.xhost()?;
                    if let HostAst::Table(_) | HostAst::Any = item.host {
                        return Err(self.err(
                            item.pos,
                            "a table entry must be an address, a network or self",
                        ));
                    }
                    def.entries.push(item);
                    self.eat(&Tok::Comma);
                }
            } else {
                return Err(self.unexpected("persist, const, '{' or file"));
            }
        }
        Ok(def)
    }

    fn rule(&mut self, policy: BlockPolicy) -> Result<RuleAst, RuleError> {
        let pos = self.pos();
        let action = if self.eat_kw("pass") {
            Action::Pass
        } else if self.eat_kw("match") {
            Action::Match
        } else {
            self.expect_kw("block")?;
            Action::Block
        };
        let mut block = BlockMode::Drop;
        let mut return_icmp = RETURN_ICMP_DEFAULT;
        if action == Action::Block {
            block = match policy {
                BlockPolicy::Drop => BlockMode::Drop,
                BlockPolicy::Return => BlockMode::Return,
            };
            let mode_pos = self.pos();
            if self.eat_kw("drop") {
                block = BlockMode::Drop;
            } else if self.eat_kw("return") {
                block = BlockMode::Return;
            } else if self.eat_kw("return-rst") {
                block = BlockMode::ReturnRst;
            } else if self.is_kw("return-icmp") || self.is_kw("return-icmp6") {
                let v6 = self.is_kw("return-icmp6");
                self.i += 1;
                block = BlockMode::ReturnIcmp;
                if self.peek() == Some(&Tok::LParen) {
                    return_icmp = self.return_icmp_codes(v6)?;
                }
            }
            if self.peek() == Some(&Tok::LParen) {
                return Err(self.err(
                    mode_pos,
                    "return options in parentheses are not supported by dpf (only return-icmp (code))",
                ));
            }
        }
        let dir = if self.eat_kw("in") {
            Some(Direction::In)
        } else if self.eat_kw("out") {
            Some(Direction::Out)
        } else {
            None
        };
        let mut quick = false;
        let mut log = 0u8;
        for _ in 0..2 {
            if log == 0 && self.is_kw("log") {
                log = self.log_opts()?;
            } else if !quick && self.eat_kw("quick") {
                quick = true;
            }
        }
        let mut ifaces = Vec::new();
        if self.eat_kw("on") {
            ifaces = self.list(|p| {
                let not = p.eat(&Tok::Bang);
                let (name, pos) = p.string("an interface name")?;
                Ok(IfItem { name, not, pos })
            })?;
        }
        let af = if self.eat_kw("inet") {
            Some(Af::Inet)
        } else if self.eat_kw("inet6") {
            Some(Af::Inet6)
        } else {
            None
        };
        let mut protos = Vec::new();
        if self.eat_kw("proto") {
            protos = self.list(|p| {
                let (s, pos) = p.string("a protocol")?;
                let proto = if s.bytes().all(|b| b.is_ascii_digit()) {
                    match s.parse::<u16>() {
                        Ok(n) if n <= 255 => n as u8,
                        _ => return Err(p.err(pos, format!("protocol {s} outside range"))),
                    }
                } else {
                    match names::proto_by_name(&s) {
                        Some(n) => n,
                        None => return Err(p.err(pos, format!("unknown protocol {s}"))),
                    }
                };
                if proto == 0 {
                    return Err(p.err(pos, "proto 0 cannot be used"));
                }
                Ok((proto, pos))
            })?;
        }
        let (src, dst) = if self.eat_kw("all") {
            (Endpoint::default(), Endpoint::default())
        } else {
            let src = if self.eat_kw("from") {
                self.endpoint()?
            } else {
                Endpoint::default()
            };
            let dst = if self.eat_kw("to") {
                self.endpoint()?
            } else {
                Endpoint::default()
            };
            (src, dst)
        };
        let mut rule = RuleAst {
            pos,
            action,
            block,
            dir,
            log,
            quick,
            ifaces,
            af,
            protos,
            src,
            dst,
            flags: None,
            icmp: Vec::new(),
            state: None,
            label: None,
            allow_opts: false,
            nat: None,
            rdr: None,
            binat: None,
            tag: None,
            tagged: None,
            route: None,
            scrub: ScrubAst::default(),
            return_icmp,
            anchor: None,
        };
        self.filter_opts(&mut rule)?;
        self.finish()?;
        Ok(rule)
    }

    fn filter_opts(&mut self, rule: &mut RuleAst) -> Result<(), RuleError> {
        loop {
            let pos = self.pos();
            if self.peek() == Some(&Tok::Bang) {
                self.i += 1;
                if !self.eat_kw("tagged") {
                    return Err(self.unexpected("'tagged' after '!'"));
                }
                if rule.tagged.is_some() {
                    return Err(self.err(pos, "tagged cannot be redefined"));
                }
                let (name, npos) = self.tag_name()?;
                rule.tagged = Some(TaggedAst {
                    not: true,
                    name,
                    pos: npos,
                });
                continue;
            }
            let Some(Tok::Word(w)) = self.peek() else {
                break;
            };
            match w.as_str() {
                "flags" => {
                    if rule.flags.is_some() {
                        return Err(self.err(pos, "flags cannot be redefined"));
                    }
                    self.i += 1;
                    let f = if self.eat_kw("any") {
                        FlagsAst {
                            flags: 0,
                            flagset: 0,
                        }
                    } else {
                        let flags = if self.peek() == Some(&Tok::Slash) {
                            0
                        } else {
                            self.flag_letters()?
                        };
                        self.expect(&Tok::Slash, "'/' in flags a/b")?;
                        let flagset = self.flag_letters()?;
                        if flags & flagset != flags {
                            return Err(self.err(pos, "flags always false"));
                        }
                        FlagsAst { flags, flagset }
                    };
                    if (f.flags != 0 || f.flagset != 0)
                        && !rule.protos.is_empty()
                        && !rule
                            .protos
                            .iter()
                            .any(|(p, _)| *p == crate::flow::proto::TCP)
                    {
                        return Err(self.err(pos, "flags only apply to tcp"));
                    }
                    rule.flags = Some(f);
                }
                "icmp-type" | "icmp6-type" => {
                    if !rule.icmp.is_empty() {
                        return Err(self.err(pos, "icmp-type cannot be redefined"));
                    }
                    let af = if w == "icmp-type" {
                        Af::Inet
                    } else {
                        Af::Inet6
                    };
                    self.i += 1;
                    rule.icmp = self.list(|p| p.icmp_item(af))?;
                }
                "keep" | "modulate" | "synproxy" => {
                    let modulate = w == "modulate";
                    let synproxy = w == "synproxy";
                    if rule.state.is_some() {
                        return Err(self.err(pos, "state cannot be redefined"));
                    }
                    self.i += 1;
                    self.expect_kw("state")?;
                    let mut opts = if self.peek() == Some(&Tok::LParen) {
                        self.state_opts()?
                    } else {
                        StateOpts::default()
                    };
                    if rule.action == Action::Block {
                        return Err(self.err(pos, "keep state on block rules doesn't make sense"));
                    }
                    if (modulate || synproxy) && opts.sloppy {
                        return Err(self.err(
                            pos,
                            "sloppy state matching cannot be used with synproxy state or modulate state",
                        ));
                    }
                    if synproxy
                        && !rule.protos.is_empty()
                        && !rule.protos.iter().any(|(p, _)| *p == crate::flow::proto::TCP)
                    {
                        return Err(self.err(
                            pos,
                            "synproxy state without proto tcp is not supported (it proxies tcp only)",
                        ));
                    }
                    opts.modulate = modulate;
                    opts.synproxy = synproxy;
                    rule.state = Some(StateAst::Keep(opts));
                }
                "no" => {
                    if rule.state.is_some() {
                        return Err(self.err(pos, "state cannot be redefined"));
                    }
                    self.i += 1;
                    self.expect_kw("state")?;
                    rule.state = Some(StateAst::No);
                }
                "nat-to" | "rdr-to" | "binat-to" => {
                    let what = w.clone();
                    let slot = match what.as_str() {
                        "nat-to" => &rule.nat,
                        "rdr-to" => &rule.rdr,
                        _ => &rule.binat,
                    };
                    if slot.is_some() {
                        return Err(self.err(pos, format!("{what} cannot be redefined")));
                    }
                    if rule.action == Action::Block {
                        return Err(self.err(pos, format!("{what} on block rules doesn't make sense")));
                    }
                    self.i += 1;
                    let pool = self.pool(&what, pos)?;
                    match what.as_str() {
                        "nat-to" => rule.nat = Some(pool),
                        "rdr-to" => rule.rdr = Some(pool),
                        _ => rule.binat = Some(pool),
                    }
                }
                "tag" => {
                    if rule.tag.is_some() {
                        return Err(self.err(pos, "tag cannot be redefined"));
                    }
                    self.i += 1;
                    rule.tag = Some(self.tag_name()?);
                }
                "tagged" => {
                    if rule.tagged.is_some() {
                        return Err(self.err(pos, "tagged cannot be redefined"));
                    }
                    self.i += 1;
                    let (name, npos) = self.tag_name()?;
                    rule.tagged = Some(TaggedAst {
                        not: false,
                        name,
                        pos: npos,
                    });
                }
                "route-to" | "reply-to" => {
                    let reply = w == "reply-to";
                    if rule.route.is_some() {
                        return Err(self.err(pos, "route-to / reply-to cannot be redefined"));
                    }
                    if rule.action == Action::Block {
                        return Err(self.err(pos, format!("{w} on block rules doesn't make sense")));
                    }
                    self.i += 1;
                    rule.route = Some(self.route_spec(reply, pos)?);
                }
                "dup-to" | "fastroute" => {
                    return Err(self.err(pos, format!("{w} is not supported by dpf")));
                }
                "scrub" => {
                    if rule.action == Action::Block {
                        return Err(self.err(pos, "scrub on block rules doesn't make sense"));
                    }
                    self.i += 1;
                    self.scrub_opts(&mut rule.scrub)?;
                }
                "set" => {
                    if rule.action == Action::Block {
                        return Err(self.err(pos, "set on block rules doesn't make sense"));
                    }
                    self.i += 1;
                    self.filter_sets(&mut rule.scrub)?;
                }
                // pf before 4.6 wrote these after `scrub`; now they are
                // scrub options.
                "no-df" | "random-id" | "min-ttl" | "max-mss" | "set-tos" => {
                    return Err(self.err(
                        pos,
                        format!("'{w}' is a scrub option: write scrub ({w} ...)"),
                    ));
                }
                // pf's filter options dpf does not offer (no local
                // sockets, queues, routing domains or af-to).
                w if PF_ONLY_FILTER_OPTIONS.contains(&w) => {
                    return Err(self.err(pos, format!("'{w}' is not supported by dpf")));
                }
                "label" => {
                    if rule.label.is_some() {
                        return Err(self.err(pos, "label cannot be redefined"));
                    }
                    self.i += 1;
                    rule.label = Some(self.label()?);
                }
                "allow-opts" => {
                    if rule.allow_opts {
                        return Err(self.err(pos, "allow-opts cannot be redefined"));
                    }
                    if rule.action == Action::Block {
                        return Err(self.err(pos, "allow-opts on block rules doesn't make sense"));
                    }
                    self.i += 1;
                    rule.allow_opts = true;
                }
                "log" => {
                    return Err(self.err(
                        pos,
                        "log goes after the direction (pass in log quick ...), as in pf.conf",
                    ));
                }
                _ => {
                    return Err(self.unexpected(
                        "flags, icmp-type, icmp6-type, keep state, no state, allow-opts, nat-to, rdr-to, binat-to, route-to, reply-to, scrub, set tos, tag, tagged, label or end of line",
                    ))
                }
            }
        }
        Ok(())
    }

    /// `scrub (no-df, random-id, min-ttl N, max-mss N, set-tos T,
    /// reassemble tcp)` (pfctl's `scrub_opts`; commas optional): sets the
    /// rule's scrub options, each at most once.
    fn scrub_opts(&mut self, scrub: &mut ScrubAst) -> Result<(), RuleError> {
        let open = self.pos();
        self.expect(&Tok::LParen, "'(' after scrub")?;
        let mut any = false;
        loop {
            if self.eat(&Tok::RParen) {
                break;
            }
            if any {
                self.eat(&Tok::Comma);
                if self.eat(&Tok::RParen) {
                    break;
                }
            }
            any = true;
            let (name, pos) = self.string("a scrub option")?;
            let again = |p: &Self| p.err(pos, format!("{name} cannot be respecified"));
            match name.as_str() {
                "no-df" => {
                    if scrub.no_df {
                        return Err(again(self));
                    }
                    scrub.no_df = true;
                }
                "random-id" => {
                    if scrub.random_id {
                        return Err(again(self));
                    }
                    scrub.random_id = true;
                }
                "min-ttl" => {
                    if scrub.min_ttl.is_some() {
                        return Err(again(self));
                    }
                    let (v, vpos) = self.string("a TTL")?;
                    match v.parse::<u32>() {
                        Ok(n) if n <= 255 && v.bytes().all(|b| b.is_ascii_digit()) => {
                            scrub.min_ttl = Some(n as u8)
                        }
                        _ => return Err(self.err(vpos, format!("illegal min-ttl value {v}"))),
                    }
                }
                "max-mss" => {
                    if scrub.max_mss.is_some() {
                        return Err(again(self));
                    }
                    let (v, vpos) = self.string("an MSS")?;
                    match v.parse::<u32>() {
                        Ok(n) if n <= 65535 && v.bytes().all(|b| b.is_ascii_digit()) => {
                            scrub.max_mss = Some(n as u16)
                        }
                        _ => return Err(self.err(vpos, format!("illegal max-mss value {v}"))),
                    }
                }
                "set-tos" => {
                    if scrub.set_tos.is_some() {
                        return Err(again(self));
                    }
                    scrub.set_tos = Some(self.tos()?);
                }
                "reassemble" => {
                    let (v, vpos) = self.string("'tcp'")?;
                    if !v.eq_ignore_ascii_case("tcp") {
                        return Err(self.err(
                            vpos,
                            format!("scrub reassemble supports only tcp, not '{v}'"),
                        ));
                    }
                    return Err(self.err(
                        pos,
                        "scrub (reassemble tcp) is not supported by dpf (no TCP normalisation: timestamp modulation, PAWS)",
                    ));
                }
                "fragment" | "fragcache" => {
                    return Err(self.err(
                        pos,
                        format!("scrub ({name} ...) is not supported by dpf (fragments are handled by set reassemble)"),
                    ));
                }
                _ => {
                    return Err(self.err(
                        pos,
                        format!("unknown scrub option '{name}' (expected no-df, random-id, min-ttl, max-mss, set-tos or reassemble tcp)"),
                    ))
                }
            }
        }
        if !any {
            return Err(self.err(open, "scrub needs at least one option"));
        }
        Ok(())
    }

    /// pf's `set` filter options: `set tos T` or `set (tos T, ...)`
    /// (pfctl's `filter_sets`); `prio`, `queue` and `delay` are refused.
    fn filter_sets(&mut self, scrub: &mut ScrubAst) -> Result<(), RuleError> {
        let paren = self.eat(&Tok::LParen);
        loop {
            let (name, pos) = self.string("tos, prio, queue or delay")?;
            match name.as_str() {
                "tos" => {
                    if scrub.set_tos.is_some() {
                        return Err(self.err(pos, "tos cannot be respecified"));
                    }
                    scrub.set_tos = Some(self.tos()?);
                }
                "prio" | "queue" | "delay" => {
                    return Err(self.err(pos, format!("set {name} is not supported by dpf")));
                }
                _ => {
                    return Err(self.err(
                        pos,
                        format!("unknown set option '{name}' (expected tos, prio, queue or delay)"),
                    ))
                }
            }
            if !paren {
                return Ok(());
            }
            self.eat(&Tok::Comma);
            if self.eat(&Tok::RParen) {
                return Ok(());
            }
        }
    }

    /// A TOS value as pfctl reads it (`map_tos`): a DiffServ or precedence
    /// name, `0x` hex, or decimal, 0-255.
    fn tos(&mut self) -> Result<u8, RuleError> {
        let (v, pos) = self.string("a TOS value")?;
        let n = if let Some(t) = names::tos_by_name(&v) {
            Some(t as u32)
        } else if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            u32::from_str_radix(h, 16).ok()
        } else if v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<u32>().ok()
        } else {
            None
        };
        match n {
            Some(n) if n <= 255 => Ok(n as u8),
            _ => Err(self.err(pos, format!("illegal tos value {v}"))),
        }
    }

    /// `label "text"`: a string; an unquoted number is pfctl's syntax
    /// error (its lexer makes it a NUMBER, which `label` does not take).
    fn label(&mut self) -> Result<String, RuleError> {
        let pos = self.pos();
        if let Some(Tok::Word(w)) = self.peek() {
            if w.bytes().all(|b| b.is_ascii_digit())
                || (w.starts_with('-') && w.len() > 1 && w[1..].bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(self.err(
                    pos,
                    format!("syntax error: label {w} is a number; quote it (label \"{w}\")"),
                ));
            }
        }
        let (l, lpos) = self.string("a label")?;
        if l.len() > LABEL_MAX {
            return Err(self.err(lpos, format!("rule label too long (max {LABEL_MAX} chars)")));
        }
        Ok(l)
    }

    /// `(code)`, `(code4, code6)` after `return-icmp`, `(code6)` after
    /// `return-icmp6`: names or numbers of the unreachable type's codes
    /// (pfctl's `reticmpspec`).
    fn return_icmp_codes(&mut self, v6: bool) -> Result<(u8, u8), RuleError> {
        self.expect(&Tok::LParen, "'('")?;
        let mut codes = RETURN_ICMP_DEFAULT;
        let first = self.icmp_unreach_code(if v6 { Af::Inet6 } else { Af::Inet })?;
        if v6 {
            codes.1 = first;
        } else {
            codes.0 = first;
            if self.eat(&Tok::Comma) {
                codes.1 = self.icmp_unreach_code(Af::Inet6)?;
            }
        }
        self.expect(&Tok::RParen, "')'")?;
        Ok(codes)
    }

    fn icmp_unreach_code(&mut self, af: Af) -> Result<u8, RuleError> {
        let (c, pos) = self.string("an icmp code")?;
        let unreach = if af == Af::Inet { 3 } else { 1 };
        if c.bytes().all(|b| b.is_ascii_digit()) {
            return match c.parse::<u32>() {
                Ok(n) if n <= 255 => Ok(n as u8),
                _ => Err(self.err(pos, format!("invalid icmp code {c}"))),
            };
        }
        names::icmp_code_by_name(af, unreach, &c)
            .ok_or_else(|| self.err(pos, format!("unknown icmp code {c}")))
    }

    fn flag_letters(&mut self) -> Result<u8, RuleError> {
        let (s, pos) = self.string("TCP flag letters (FSRPAUEW)")?;
        match names::parse_tcp_flags(&s) {
            Some(f) if !s.is_empty() => Ok(f),
            _ => Err(self.err(pos, format!("bad flags {s}"))),
        }
    }

    fn icmp_item(&mut self, af: Af) -> Result<IcmpItem, RuleError> {
        let kind = if af == Af::Inet {
            "icmp-type"
        } else {
            "icmp6-type"
        };
        let (s, pos) = self.string(kind)?;
        let ty = if s.bytes().all(|b| b.is_ascii_digit()) {
            match s.parse::<u16>() {
                Ok(n) if n <= 255 => n as u8,
                _ => return Err(self.err(pos, format!("illegal {kind} {s}"))),
            }
        } else {
            match names::icmp_type_by_name(af, &s) {
                Some(t) => t,
                None => return Err(self.err(pos, format!("unknown {kind} {s}"))),
            }
        };
        let mut code = None;
        if self.eat_kw("code") {
            let (c, cpos) = self.string("an icmp code")?;
            let codekind = if af == Af::Inet {
                "icmp-code"
            } else {
                "icmp6-code"
            };
            code = Some(if c.bytes().all(|b| b.is_ascii_digit()) {
                match c.parse::<u16>() {
                    Ok(n) if n <= 255 => n as u8,
                    _ => return Err(self.err(cpos, format!("illegal {codekind} {c}"))),
                }
            } else {
                match names::icmp_code_by_name(af, ty, &c) {
                    Some(v) => v,
                    None => return Err(self.err(cpos, format!("unknown {codekind} {c}"))),
                }
            });
        }
        Ok(IcmpItem { af, ty, code, pos })
    }

    fn state_opts(&mut self) -> Result<StateOpts, RuleError> {
        self.expect(&Tok::LParen, "'('")?;
        let mut o = StateOpts::default();
        let mut seen_max = false;
        loop {
            if self.eat(&Tok::RParen) {
                break;
            }
            let (name, pos) = self.string("a state option")?;
            match name.as_str() {
                "max" => {
                    if seen_max {
                        return Err(self.err(pos, "state option 'max' multiple definitions"));
                    }
                    seen_max = true;
                    let (n, _) = self.number("max", u32::MAX as u64)?;
                    // pf: max 0 means no limit.
                    o.max = if n == 0 { None } else { Some(n as u32) };
                }
                "sloppy" => {
                    if o.sloppy {
                        return Err(self.err(pos, "state sloppy option: multiple definitions"));
                    }
                    o.sloppy = true;
                }
                "no-sync" => {
                    if o.no_sync {
                        return Err(self.err(pos, "state option 'no-sync' multiple definitions"));
                    }
                    o.no_sync = true;
                }
                "adaptive.start" | "adaptive.end" => {
                    let slot = if name == "adaptive.start" {
                        &mut o.adaptive_start
                    } else {
                        &mut o.adaptive_end
                    };
                    if slot.is_some() {
                        return Err(
                            self.err(pos, format!("state timeout {name} multiple definitions"))
                        );
                    }
                    let (n, _) = self.number("timeout", u32::MAX as u64)?;
                    *slot = Some(n as u32);
                }
                n if self.src_track_opt(n, pos, &mut o.src)? => {}
                n => {
                    if let Some(class) = TimeoutClass::from_name(n) {
                        if o.timeouts.iter().any(|(c, _)| *c == class) {
                            return Err(
                                self.err(pos, format!("state timeout {n} multiple definitions"))
                            );
                        }
                        let (secs, _) = self.number("timeout", u32::MAX as u64)?;
                        o.timeouts.push((class, secs as u32));
                    } else if n.contains('.') || PF_ONLY_TIMEOUTS.contains(&n) {
                        return Err(self.err(pos, unknown_timeout(n)));
                    } else {
                        return Err(self.err(
                            pos,
                            format!("state option '{n}' is not supported by dpf (max, sloppy, no-sync, max-src-nodes, max-src-states, max-src-conn, max-src-conn-rate, overload, source-track, <timeout> <secs>)"),
                        ));
                    }
                }
            }
            if !self.eat(&Tok::Comma) && self.peek() != Some(&Tok::RParen) {
                return Err(self.unexpected("',' or ')'"));
            }
        }
        Ok(o)
    }

    /// A source tracking option of `keep state (...)` (pfctl's
    /// `state_opt_item` for `max-src-*`, `overload`, `source-track` and
    /// `src.track`): true if `name` was one.
    fn src_track_opt(
        &mut self,
        name: &str,
        pos: Pos,
        o: &mut SrcTrackAst,
    ) -> Result<bool, RuleError> {
        let limit = |p: &mut Self, what: &str, slot: &mut Option<u32>| {
            if slot.is_some() {
                return Err(p.err(pos, format!("state option '{what}' multiple definitions")));
            }
            let (n, _) = p.number(what, u32::MAX as u64)?;
            *slot = Some(n as u32);
            Ok(())
        };
        match name {
            "max-src-nodes" => limit(self, name, &mut o.max_src_nodes)?,
            "max-src-states" => limit(self, name, &mut o.max_src_states)?,
            "max-src-conn" => limit(self, name, &mut o.max_src_conn)?,
            "max-src-conn-rate" => {
                if o.max_src_conn_rate.is_some() {
                    return Err(
                        self.err(pos, "state option 'max-src-conn-rate' multiple definitions")
                    );
                }
                let (n, npos) = self.number("max-src-conn-rate", u32::MAX as u64)?;
                self.expect(&Tok::Slash, "'/' in max-src-conn-rate N/S")?;
                let (secs, _) = self.number("max-src-conn-rate seconds", u32::MAX as u64)?;
                if n == 0 || secs == 0 {
                    return Err(self.err(npos, "'max-src-conn-rate' values must be > 0"));
                }
                if n > crate::srcnodes::THRESHOLD_MAX as u64 {
                    return Err(self.err(
                        npos,
                        format!(
                            "'max-src-conn-rate' maximum rate must be < {}",
                            crate::srcnodes::THRESHOLD_MAX
                        ),
                    ));
                }
                o.max_src_conn_rate = Some((n as u32, secs as u32));
            }
            "overload" => {
                if o.overload.is_some() {
                    return Err(self.err(pos, "multiple 'overload' table definitions"));
                }
                self.expect(&Tok::Lt, "'<' before the overload table name")?;
                let (table, tpos) = self.string("a table name")?;
                self.expect(&Tok::Gt, "'>' after the table name")?;
                check_table_name(self, &table, tpos)?;
                let mut flush = OverloadFlush::None;
                if self.eat_kw("flush") {
                    flush = if self.eat_kw("global") {
                        OverloadFlush::Global
                    } else {
                        OverloadFlush::Rule
                    };
                }
                o.overload = Some((table, tpos, flush));
            }
            "source-track" => {
                if o.source_track.is_some() {
                    return Err(self.err(pos, "state option 'source-track' multiple definitions"));
                }
                o.source_track = Some(if self.eat_kw("rule") {
                    SourceTrackAst::Rule
                } else if self.eat_kw("global") {
                    SourceTrackAst::Global
                } else {
                    SourceTrackAst::Plain
                });
            }
            "src.track" => {
                if o.src_track_s.is_some() {
                    return Err(self.err(pos, "state timeout src.track multiple definitions"));
                }
                let (n, _) = self.number("timeout", u32::MAX as u64)?;
                o.src_track_s = Some(n as u32);
            }
            _ => return Ok(false),
        }
        o.pos.get_or_insert(pos);
        Ok(true)
    }

    fn endpoint(&mut self) -> Result<Endpoint, RuleError> {
        let mut e = Endpoint::default();
        if !self.is_kw("port") {
            if self.eat_kw("any") {
                // any
            } else {
                e.hosts = self.list(|p| p.xhost())?;
                if e.hosts.iter().any(|h| h.host == HostAst::Any) && e.hosts.len() == 1 {
                    e.hosts.clear();
                }
            }
        }
        if self.eat_kw("port") {
            e.ports = self.list(|p| p.port_item())?;
        }
        Ok(e)
    }

    fn xhost(&mut self) -> Result<HostItem, RuleError> {
        let start = self.pos();
        let not = self.eat(&Tok::Bang);
        if self.eat(&Tok::Lt) {
            let (name, npos) = self.string("a table name")?;
            self.expect(&Tok::Gt, "'>' after the table name")?;
            check_table_name(self, &name, npos)?;
            return Ok(HostItem {
                not,
                host: HostAst::Table(name),
                pos: start,
            });
        }
        if self.eat(&Tok::LParen) {
            // `(if)`: dpf's interface addresses are fixed by the
            // configuration, so the dynamic form is the static one.
            let (name, npos) = self.string("an interface name")?;
            self.expect(&Tok::RParen, "')' after the interface name")?;
            let (name, modifier) = iface_with_modifier(self, &name, npos)?;
            return Ok(HostItem {
                not,
                host: HostAst::Iface { name, modifier },
                pos: start,
            });
        }
        let (s, pos) = self.string("an address, a network, <table>, self or any")?;
        let host = match s.as_str() {
            "any" => {
                if not {
                    return Err(self.err(pos, "'any' cannot be negated"));
                }
                HostAst::Any
            }
            "self" => HostAst::SelfAddrs,
            "no-route" | "urpf-failed" | "route" => {
                return Err(self.err(pos, format!("'{s}' is not supported by dpf")));
            }
            _ => {
                let ip: std::net::IpAddr = match s.parse() {
                    Ok(ip) => ip,
                    // `10/8`, `192.168/16`: pfctl reads a network whose
                    // trailing octets are left out (inet_net_pton).
                    Err(_) if self.peek() == Some(&Tok::Slash) && abbreviated_v4(&s).is_some() => {
                        std::net::IpAddr::V4(abbreviated_v4(&s).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED))
                    }
                    Err(_) if is_iface_word(&s) => {
                        let (name, modifier) = iface_with_modifier(self, &s, pos)?;
                        return Ok(HostItem {
                            not,
                            host: HostAst::Iface { name, modifier },
                            pos: start,
                        });
                    }
                    Err(_) => {
                        return Err(self.err(
                            pos,
                            format!("unknown host '{s}': expected an IPv4/IPv6 address, network, <table>, an interface or group name, self or any (dpf resolves no host names)"),
                        ))
                    }
                };
                let (af, addr) = Addr::from_ip(ip);
                if self.is_kw("-") {
                    return self.range(not, af, addr, start);
                }
                let max = if af == Af::Inet { 32 } else { 128 };
                let mut len = max;
                if self.eat(&Tok::Slash) {
                    let (n, npos) = self.number("prefix length", 255)?;
                    if n > max as u64 {
                        let fam = if af == Af::Inet { "IPv4" } else { "IPv6" };
                        return Err(self.err(
                            npos,
                            format!("prefix length {n} invalid for an {fam} address"),
                        ));
                    }
                    len = n as u8;
                }
                HostAst::Net { af, addr, len }
            }
        };
        Ok(HostItem {
            not,
            host,
            pos: start,
        })
    }

    /// The rest of `from - to` (pfctl's `STRING '-' STRING`): two host
    /// addresses of one family, `from <= to`.
    fn range(&mut self, not: bool, af: Af, from: Addr, start: Pos) -> Result<HostItem, RuleError> {
        self.i += 1;
        let (s, pos) = self.string("the last address of the range")?;
        let to = match s.parse::<std::net::IpAddr>().map(Addr::from_ip) {
            Ok((taf, to)) if taf == af => to,
            _ => {
                return Err(self.err(
                    pos,
                    format!(
                        "invalid address range: '{s}' is not an address of the first one's family"
                    ),
                ))
            }
        };
        if self.peek() == Some(&Tok::Slash) {
            return Err(self.err(
                self.pos(),
                "invalid address range: a range is of host addresses, without prefix length",
            ));
        }
        if to.0 < from.0 {
            return Err(self.err(
                start,
                "invalid address range: the first address is above the last",
            ));
        }
        Ok(HostItem {
            not,
            host: HostAst::Range { af, from, to },
            pos: start,
        })
    }

    fn port_item(&mut self) -> Result<PortItem, RuleError> {
        let pos = self.pos();
        let unary = match self.peek() {
            Some(Tok::Eq) => Some(PortOp::Eq),
            Some(Tok::Ne) => Some(PortOp::Ne),
            Some(Tok::Lt) => Some(PortOp::Lt),
            Some(Tok::Le) => Some(PortOp::Le),
            Some(Tok::Gt) => Some(PortOp::Gt),
            Some(Tok::Ge) => Some(PortOp::Ge),
            _ => None,
        };
        if let Some(op) = unary {
            self.i += 1;
            let (a, b, range) = self.port_value()?;
            if range {
                return Err(self.err(pos, "':' cannot be used with an other port operator"));
            }
            return Ok(PortItem { op, a, b, pos });
        }
        let (a, b, range) = self.port_value()?;
        let binary = match self.peek() {
            Some(Tok::Inside) => Some(PortOp::Inside),
            Some(Tok::Outside) => Some(PortOp::Outside),
            _ => None,
        };
        if let Some(op) = binary {
            self.i += 1;
            let (b2, _, range2) = self.port_value()?;
            if range || range2 {
                return Err(self.err(pos, "':' cannot be used with an other port operator"));
            }
            return Ok(PortItem { op, a, b: b2, pos });
        }
        let op = if range { PortOp::Range } else { PortOp::Eq };
        Ok(PortItem { op, a, b, pos })
    }

    /// A port, a service name or `a:b`; returns (a, b, is_range).
    fn port_value(&mut self) -> Result<(u16, u16, bool), RuleError> {
        let (s, pos) = self.string("a port number or service name")?;
        let one = |p: &Self, v: &str| -> Result<u16, RuleError> {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                match v.parse::<u32>() {
                    Ok(n) if n <= 65535 => Ok(n as u16),
                    _ => Err(p.err(pos, format!("illegal port value {v}"))),
                }
            } else {
                names::service_by_name(v).ok_or_else(|| p.err(pos, format!("unknown port {v}")))
            }
        };
        match s.split_once(':') {
            None => Ok((one(self, &s)?, 0, false)),
            Some((a, b)) => Ok((one(self, a)?, one(self, b)?, true)),
        }
    }
}

/// Filter options of pf.conf(5) that dpf refuses by name.
const PF_ONLY_FILTER_OPTIONS: &[&str] = &[
    "divert-to",
    "divert-reply",
    "divert-packet",
    "queue",
    "rtable",
    "user",
    "group",
    "af-to",
    "received-on",
    "probability",
    "once",
    "fragment",
    "os",
    "prio",
    "max-pkt-rate",
    "tos",
];

/// A name `set timeout` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimeoutName {
    /// A state timeout class.
    State(TimeoutClass),
    /// `adaptive.start` (a number of states).
    AdaptiveStart,
    /// `adaptive.end` (a number of states).
    AdaptiveEnd,
    /// `src.track` (seconds a source node outlives its states).
    SrcTrack,
    /// `frag` (seconds a datagram may take to reassemble).
    Frag,
}

/// pf timeouts that are not state timeouts (`interval`...) and that dpf
/// does not have.
const PF_ONLY_TIMEOUTS: &[&str] = &["interval"];

fn unknown_timeout(name: &str) -> String {
    if PF_ONLY_TIMEOUTS.contains(&name) {
        format!("timeout {name} is not supported by dpf")
    } else {
        let mut all: Vec<&str> = TimeoutClass::ALL.iter().map(|c| c.name()).collect();
        all.push("frag");
        format!(
            "unknown timeout {name} (expected one of {})",
            all.join(", ")
        )
    }
}

/// An abbreviated IPv4 network address as pfctl reads it before a `/len`
/// (`10`, `192.168`, `172.16.5`): one to three decimal octets, the rest
/// zero.
fn abbreviated_v4(s: &str) -> Option<std::net::Ipv4Addr> {
    let mut o = [0u8; 4];
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        o[i] = p.parse::<u8>().ok()?;
    }
    Some(std::net::Ipv4Addr::from(o))
}

/// Whether `w` can be an interface or group name (letters first, then
/// letters, digits, `_` and `-`, with an optional `:modifier`); a dotted
/// word is a host name, which dpf does not resolve.
fn is_iface_word(w: &str) -> bool {
    let name = w.split(':').next().unwrap_or("");
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// Splits `name[:modifier]`; `:peer` and unknown modifiers are errors.
fn iface_with_modifier(
    p: &Parser<'_>,
    word: &str,
    pos: Pos,
) -> Result<(String, IfaceModifier), RuleError> {
    let (name, modifier) = match word.split_once(':') {
        None => (word, IfaceModifier::Addresses),
        Some((n, "network")) => (n, IfaceModifier::Network),
        Some((n, "broadcast")) => (n, IfaceModifier::Broadcast),
        Some((n, "0")) => (n, IfaceModifier::NoAliases),
        Some((_, "peer")) => {
            return Err(p.err(
                pos,
                "':peer' is not supported by dpf (no point-to-point interfaces)",
            ))
        }
        Some((_, m)) => {
            return Err(p.err(
                pos,
                format!("unknown interface modifier ':{m}' (network, broadcast, 0)"),
            ))
        }
    };
    if !is_iface_word(name) {
        return Err(p.err(pos, format!("invalid interface name '{name}'")));
    }
    Ok((name.to_string(), modifier))
}

fn check_table_name(p: &Parser<'_>, name: &str, pos: Pos) -> Result<(), RuleError> {
    if name.is_empty() {
        return Err(p.err(pos, "empty table name"));
    }
    if name.len() > TABLE_NAME_MAX {
        return Err(p.err(
            pos,
            format!("table name '{name}' too long (max {TABLE_NAME_MAX})"),
        ));
    }
    Ok(())
}

/// `25%` or `12.5%` in hundredths of a percent (at most two decimals,
/// at most 100%).
fn parse_cpct(s: &str) -> Option<u32> {
    let n = s.strip_suffix('%')?;
    let (whole, frac) = n.split_once('.').unwrap_or((n, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole
            .bytes()
            .chain(frac.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u32 = whole.parse().ok().filter(|w| *w <= 100)?;
    let frac: u32 = format!("{frac:0<2}").parse().ok()?;
    let v = whole * 100 + frac;
    (v <= 10_000).then_some(v)
}
