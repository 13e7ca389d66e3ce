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
//! Invariants: every syntax error names the position of the offending token
//! (or of the `$macro` it came from); options (`set ...`) come before the
//! first filter rule, as pfctl requires, so `set block-policy` is known when
//! a `block` rule is parsed.

use std::collections::HashMap;

use super::lexer::{lex, Pos, Tok, Token};
use super::names;
use super::{Action, BlockPolicy, RuleError};
use crate::flow::{Addr, Af, Direction};
use crate::timeouts::TimeoutClass;

/// How deep macro values may reference other macros.
const MACRO_DEPTH_MAX: u32 = 16;
/// pfctl's `PF_TABLE_NAME_SIZE - 1`.
const TABLE_NAME_MAX: usize = 31;

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
    pub max: Option<u32>,
    pub sloppy: bool,
    pub no_sync: bool,
    pub timeouts: Vec<(TimeoutClass, u32)>,
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
}

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
    pub timeouts: Vec<(TimeoutClass, u32)>,
    pub skip: Vec<(String, Pos)>,
    pub block_policy: BlockPolicy,
    pub tables: Vec<TableDef>,
    pub rules: Vec<RuleAst>,
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
    "match",
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
    "nat-anchor",
    "rdr-anchor",
    "binat-anchor",
];

/// Parses a whole file. Every statement with an error is reported (in
/// order) and left out of the tree, and the rest is still parsed, so one
/// run names every error of the file.
pub(crate) fn parse(src: &str, file: &str) -> (Ast, Vec<RuleError>) {
    let mut ast = Ast::default();
    let raw = match lex(src, file, None) {
        Ok(r) => r,
        Err(e) => return (ast, vec![e]),
    };
    let mut errors = Vec::new();
    let mut macros: HashMap<String, String> = HashMap::new();

    let mut stmt: Vec<Token> = Vec::new();
    let mut opens: Vec<Pos> = Vec::new();
    // Position just past the last character, for "unexpected end" errors.
    let eof = Pos {
        line: 1 + src.matches('\n').count() as u32,
        col: 1 + src.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32,
    };
    let mut iter = raw.into_iter().peekable();
    loop {
        let t = iter.next();
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
            errors.push(RuleError::new(
                file,
                *open,
                "unbalanced '{' or '(': not closed".into(),
            ));
            break;
        }
        if !stmt.is_empty() {
            let end_pos = match &t {
                Some(t) => t.pos,
                None => eof,
            };
            if let Err(e) = statement(
                std::mem::take(&mut stmt),
                end_pos,
                file,
                &mut macros,
                &mut ast,
            ) {
                errors.push(e);
            }
        }
        if t.is_none() {
            break;
        }
    }
    (ast, errors)
}

fn statement(
    toks: Vec<Token>,
    end: Pos,
    file: &str,
    macros: &mut HashMap<String, String>,
    ast: &mut Ast,
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
    let mut p = Parser {
        file,
        toks,
        i: 0,
        end,
    };
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
}

impl Parser<'_> {
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
            "pass" | "block" => {
                let rule = self.rule(ast.block_policy)?;
                ast.rules.push(rule);
                Ok(())
            }
            "set" => {
                if !ast.rules.is_empty() {
                    return Err(self.err(
                        pos,
                        "options must come before filter rules (pf.conf order: macros, tables, options, filter rules)",
                    ));
                }
                self.i += 1;
                self.set(ast)
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

    fn set(&mut self, ast: &mut Ast) -> Result<(), RuleError> {
        let (opt, pos) = self.string("an option name")?;
        match opt.as_str() {
            "limit" => {
                let items = self.list(|p| {
                    let (name, npos) = p.string("a limit name")?;
                    if name != "states" {
                        return Err(p.err(
                            npos,
                            format!("set limit {name} is not supported by dpf (only 'states')"),
                        ));
                    }
                    let (n, _) = p.number("limit", u32::MAX as u64)?;
                    Ok(n as u32)
                })?;
                ast.limit_states = items.last().copied();
            }
            "timeout" => {
                let items = self.list(|p| {
                    let (name, npos) = p.string("a timeout name")?;
                    let Some(class) = TimeoutClass::from_name(&name) else {
                        return Err(p.err(npos, unknown_timeout(&name)));
                    };
                    let (n, _) = p.number("timeout", u32::MAX as u64)?;
                    Ok((class, n as u32))
                })?;
                ast.timeouts.extend(items);
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
            other => {
                return Err(self.err(pos, format!("set {other} is not supported by dpf")));
            }
        }
        self.finish()
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
        } else {
            self.expect_kw("block")?;
            Action::Block
        };
        let mut block = BlockMode::Drop;
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
            } else if self.eat_kw("return-icmp") || self.eat_kw("return-icmp6") {
                block = BlockMode::ReturnIcmp;
            }
            if self.peek() == Some(&Tok::LParen) {
                return Err(self.err(
                    mode_pos,
                    "return options in parentheses are not supported by dpf",
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
        for _ in 0..2 {
            if self.is_kw("log") {
                return Err(self.err(
                    self.pos(),
                    "log is not supported by dpf (no pflog logging yet)",
                ));
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
        };
        self.filter_opts(&mut rule)?;
        self.finish()?;
        Ok(rule)
    }

    fn filter_opts(&mut self, rule: &mut RuleAst) -> Result<(), RuleError> {
        while let Some(Tok::Word(w)) = self.peek() {
            let pos = self.pos();
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
                "keep" => {
                    if rule.state.is_some() {
                        return Err(self.err(pos, "state cannot be redefined"));
                    }
                    self.i += 1;
                    self.expect_kw("state")?;
                    let opts = if self.peek() == Some(&Tok::LParen) {
                        self.state_opts()?
                    } else {
                        StateOpts::default()
                    };
                    if rule.action == Action::Block {
                        return Err(self.err(pos, "keep state on block rules doesn't make sense"));
                    }
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
                "modulate" | "synproxy" => {
                    return Err(self.err(pos, format!("{w} state is not supported by dpf")));
                }
                "label" => {
                    self.i += 1;
                    let (l, _) = self.string("a label")?;
                    rule.label = Some(l);
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
                    return Err(
                        self.err(pos, "log is not supported by dpf (no pflog logging yet)")
                    );
                }
                _ => {
                    return Err(self.unexpected(
                        "flags, icmp-type, icmp6-type, keep state, no state, allow-opts, label or end of line",
                    ))
                }
            }
        }
        Ok(())
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
                            format!("state option '{n}' is not supported by dpf (max, sloppy, no-sync, <timeout> <secs>)"),
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

/// pf timeouts that are not state timeouts (`interval`, `frag`...).
const PF_ONLY_TIMEOUTS: &[&str] = &[
    "interval",
    "frag",
    "src.track",
    "adaptive.start",
    "adaptive.end",
];

fn unknown_timeout(name: &str) -> String {
    if PF_ONLY_TIMEOUTS.contains(&name) {
        format!("timeout {name} is not supported by dpf")
    } else {
        let all: Vec<&str> = TimeoutClass::ALL.iter().map(|c| c.name()).collect();
        format!(
            "unknown timeout {name} (expected one of {})",
            all.join(", ")
        )
    }
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
