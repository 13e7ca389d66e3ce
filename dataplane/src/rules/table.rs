//! pf tables: named address sets that rules test (`from <t>`) and that the
//! operator changes at run time (`dpfctl -t T -T add ...`) without a
//! ruleset reload.
//!
//! Semantics are pf's (`pfr_match_addr`): the longest prefix of the table
//! that contains the address decides; if that entry is negated (`!net`) the
//! address does not match, otherwise it does. An address no entry contains
//! does not match.
//!
//! A [`Table`] is immutable once published: its entries sorted by (family,
//! network, length), and per family a [`Lpm`] trie for the lookup. A change
//! ([`Table::apply`]) makes a new `Table` on the control thread that shares
//! every untouched trie node with the old one, so adding one address to a
//! table of a million costs a path copy in the trie plus one copy of the
//! entry list, never a rebuild. The tables of a ruleset are a [`TableSet`]
//! behind a [`Snapshot`] that the ruleset owns: the control thread publishes
//! a new set, and each worker picks it up between bursts (one atomic load
//! per burst when nothing changed), so a worker sees the old or the new
//! table, never a mix, and never waits.
//!
//! Indices: the rules name tables by their index in the set. The compiler
//! places the tables the file defines (and its internal address sets for
//! `self` and interface names, whose names start with `__`) first; tables
//! created by `dpfctl -T add` come after them and no rule refers to them.
//! A set never shrinks below the ruleset's own tables, so an index a rule
//! holds stays valid.
//!
//! Invariant: a table holds at most one entry per (family, network,
//! length), networks are masked to their length, and its tries hold exactly
//! its entries.

use std::collections::HashMap;
use std::sync::Arc;

use crate::flow::{Addr, Af};
use crate::lpm::{Leaf, Lpm};
use crate::snapshot::Snapshot;

/// An address as a big-endian `u128` (IPv4 in the top 32 bits).
#[inline]
pub(crate) fn addr_bits(a: &Addr) -> u128 {
    u128::from_be_bytes(a.0)
}

/// The mask of a `len`-bit prefix in the `u128` layout.
#[inline]
pub(crate) fn prefix_mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - len.min(128) as u32)
    }
}

fn max_len(af: Af) -> u8 {
    match af {
        Af::Inet => 32,
        Af::Inet6 => 128,
    }
}

/// An address or network of a table as given: `[!]addr[/len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableAddr {
    /// Family.
    pub af: Af,
    /// Network, masked to `len` (IPv4 in the top 32 bits).
    pub net: u128,
    /// Prefix length.
    pub len: u8,
    /// `!addr`: addresses in it do not match (unless a longer entry says so).
    pub negated: bool,
}

impl TableAddr {
    /// A masked entry.
    pub fn new(af: Af, net: u128, len: u8, negated: bool) -> TableAddr {
        let len = len.min(max_len(af));
        TableAddr {
            af,
            net: net & prefix_mask(len),
            len,
            negated,
        }
    }

    fn key(&self) -> (u8, u128, u8) {
        (self.af as u8, self.net, self.len)
    }

    /// Whether it is a single host (`/32`, `/128`).
    pub fn is_host(&self) -> bool {
        self.len == max_len(self.af)
    }
}

impl std::fmt::Display for TableAddr {
    /// As pfctl writes it: `!` for negated, no `/len` for a host.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = Addr(self.net.to_be_bytes()).to_ip(self.af);
        let not = if self.negated { "!" } else { "" };
        if self.is_host() {
            write!(f, "{not}{ip}")
        } else {
            write!(f, "{not}{ip}/{}", self.len)
        }
    }
}

/// Parses one table address as pfctl takes it on its command line and in
/// table files: `[!]address[/len]`, where an IPv4 network may be
/// abbreviated (`10/8`, `192.168/16`). Host names are refused (dpf
/// resolves none). Host bits beyond the prefix are cleared.
pub fn parse_table_addr(s: &str) -> Result<TableAddr, String> {
    let (negated, rest) = match s.strip_prefix('!') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (addr, len) = match rest.split_once('/') {
        Some((a, l)) => {
            let len: u8 = l
                .parse()
                .ok()
                .filter(|_| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("'{s}': invalid prefix length '{l}'"))?;
            (a, Some(len))
        }
        None => (rest, None),
    };
    let ip: std::net::IpAddr = match addr.parse() {
        Ok(ip) => ip,
        Err(_) => match (len, abbreviated_v4(addr)) {
            (Some(_), Some(ip)) => std::net::IpAddr::V4(ip),
            _ => {
                return Err(format!(
                    "'{s}' is not an IPv4 or IPv6 address or network (dpf resolves no host names)"
                ))
            }
        },
    };
    let (af, a) = Addr::from_ip(ip);
    let len = len.unwrap_or(max_len(af));
    if len > max_len(af) {
        let fam = if af == Af::Inet { "IPv4" } else { "IPv6" };
        return Err(format!(
            "'{s}': prefix length {len} invalid for an {fam} address"
        ));
    }
    Ok(TableAddr::new(af, addr_bits(&a), len, negated))
}

/// `10`, `192.168`, `172.16.1`: the missing octets are zero (as
/// `inet_net_pton` reads a network).
fn abbreviated_v4(s: &str) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    let mut o = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        o[i] = p.parse().ok()?;
    }
    Some(std::net::Ipv4Addr::from(o))
}

/// A table file's addresses, each with its 1-based (line, column): words
/// separated by white space, `#` (or `;` at the start of a word) comments
/// to the end of the line, as pfctl reads them. The first bad word is the
/// error, with its position.
pub fn parse_table_text(text: &str) -> Result<Vec<(TableAddr, u32, u32)>, TableTextError> {
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("");
        let mut col = 0usize;
        for word in line.split_inclusive(char::is_whitespace) {
            let start = col;
            col += word.chars().count();
            let w = word.trim_end();
            if w.is_empty() {
                continue;
            }
            if w.starts_with(';') {
                break;
            }
            let a = parse_table_addr(w).map_err(|msg| TableTextError {
                line: ln as u32 + 1,
                col: start as u32 + 1,
                msg,
            })?;
            out.push((a, ln as u32 + 1, start as u32 + 1));
        }
    }
    Ok(out)
}

/// A bad word of a table file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {msg}")]
pub struct TableTextError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column (characters).
    pub col: u32,
    /// What is wrong.
    pub msg: String,
}

/// A table's flags, as `pfctl -s Tables -v` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFlags {
    /// `const`: no change at run time.
    pub constant: bool,
    /// `persist`: kept without rules referring to it (and created by
    /// `dpfctl -T add`).
    pub persist: bool,
    /// Rules of the ruleset refer to it.
    pub referenced: bool,
    /// The ruleset defined it with addresses (`{ ... }` or `file`): a
    /// reload resets it to them (pf's `PFR_FLAG_ADDRSTOO`).
    pub defined_with_addrs: bool,
    /// One of the compiler's address sets for `self` or an interface
    /// name: not the operator's, neither listed nor changed.
    pub internal: bool,
}

impl TableFlags {
    /// pfctl's flag letters (`c` const, `p` persist, `a` active, `i`
    /// inactive, `r` referenced, `h` in an anchor, `C` counters), `-` for
    /// each absent one.
    pub fn letters(&self) -> String {
        [
            if self.constant { 'c' } else { '-' },
            if self.persist { 'p' } else { '-' },
            'a',
            '-',
            if self.referenced { 'r' } else { '-' },
            '-',
            '-',
        ]
        .iter()
        .collect()
    }
}

/// One entry of a table with the time it was added, changed or zeroed
/// (pf's `pfrke_tzero`, Unix seconds; 0 = never stamped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// The address or network.
    pub addr: TableAddr,
    /// Unix seconds of its last add, change or zero.
    pub tzero: u64,
}

/// What a change did (pfctl's counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeCounts {
    /// Addresses the request named (distinct).
    pub given: u64,
    /// Entries added.
    pub added: u64,
    /// Entries deleted.
    pub deleted: u64,
    /// Entries whose negation changed.
    pub changed: u64,
    /// Addresses in the request that contradict an entry (same network,
    /// other negation) and were left alone (`add`, `delete`).
    pub conflicts: u64,
}

/// A change to one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableChange {
    /// Add entries (existing ones are left as they are).
    Add(Vec<TableAddr>),
    /// Delete entries (network, length and negation must match).
    Delete(Vec<TableAddr>),
    /// Make the table exactly these entries.
    Replace(Vec<TableAddr>),
    /// Delete every entry.
    Flush,
    /// Delete entries not added, changed or zeroed in the last `secs`
    /// seconds (entries never stamped stay).
    Expire {
        /// Age in seconds.
        secs: u64,
    },
    /// Zero the statistics: the table's and every entry's time.
    Zero,
}

/// Why a table operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// No (operator) table has that name.
    #[error("table <{0}> does not exist")]
    NoSuchTable(String),
    /// The table is `const`.
    #[error("table <{0}> is const: it cannot be changed")]
    Const(String),
    /// `-T test` takes hosts only.
    #[error("{0}: -T test takes addresses, not networks")]
    NetworkInTest(String),
    /// A set published to a ruleset it does not belong to.
    #[error("internal: a table set of another ruleset")]
    ForeignSet,
    /// A table name pf would refuse.
    #[error("invalid table name '{0}' (1 to 31 characters)")]
    BadName(String),
}

/// pfctl's `PF_TABLE_NAME_SIZE - 1`.
pub const TABLE_NAME_MAX: usize = 31;

/// One table: name, flags, entries and their lookup tries.
#[derive(Clone, Debug, Default)]
pub struct Table {
    name: String,
    flags: TableFlags,
    v4: Lpm,
    v6: Lpm,
    /// Sorted by (family, network, length); one per key.
    entries: Vec<TableEntry>,
    /// Unix seconds of the last `zero` (or creation).
    cleared: u64,
    /// Addresses of non-negated entries per family ([inet, inet6]),
    /// saturating.
    hosts: [u128; 2],
}

fn family_index(af: Af) -> usize {
    match af {
        Af::Inet => 0,
        Af::Inet6 => 1,
    }
}

impl Table {
    /// A table of `entries` (masked; duplicates of a key keep the last).
    pub fn new(name: String, flags: TableFlags, entries: &[TableAddr], now_s: u64) -> Table {
        let mut t = Table {
            name,
            flags,
            cleared: now_s,
            ..Table::default()
        };
        t.entries = sorted_entries(entries, now_s);
        t.rebuild_tries();
        t
    }

    fn rebuild_tries(&mut self) {
        self.v4 = Lpm::new();
        self.v6 = Lpm::new();
        self.hosts = [0; 2];
        // Longest first: each slot is written once by its winner.
        let mut order: Vec<TableAddr> = self.entries.iter().map(|e| e.addr).collect();
        order.sort_by_key(|a| std::cmp::Reverse(a.len));
        for a in order {
            self.lpm_mut(a.af)
                .insert(a.net, a.len, Leaf::new(a.len, a.negated));
        }
        self.recount_hosts();
    }

    fn recount_hosts(&mut self) {
        self.hosts = [0; 2];
        for e in &self.entries {
            if !e.addr.negated {
                let bits = u32::from(max_len(e.addr.af) - e.addr.len);
                let n = 1u128.checked_shl(bits).unwrap_or(u128::MAX);
                let h = &mut self.hosts[family_index(e.addr.af)];
                *h = h.saturating_add(n);
            }
        }
    }

    fn lpm_mut(&mut self, af: Af) -> &mut Lpm {
        match af {
            Af::Inet => &mut self.v4,
            Af::Inet6 => &mut self.v6,
        }
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The flags.
    pub fn flags(&self) -> TableFlags {
        self.flags
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Unix seconds of the last `zero` (pfctl's "Cleared").
    pub fn cleared(&self) -> u64 {
        self.cleared
    }

    /// The entries, sorted by (family, network, length).
    pub fn entries(&self) -> &[TableEntry] {
        &self.entries
    }

    /// The entries of one family (a sub-slice of [`Table::entries`]).
    pub fn family_entries(&self, af: Af) -> &[TableEntry] {
        let lo = self
            .entries
            .partition_point(|e| (e.addr.af as u8) < af as u8);
        let hi = self
            .entries
            .partition_point(|e| (e.addr.af as u8) <= af as u8);
        &self.entries[lo..hi]
    }

    /// Entry `i` of [`Table::entries`] (NAT pools walk a table with it;
    /// negated entries are for the caller to skip).
    #[inline]
    pub fn nth_entry(&self, i: usize) -> Option<&TableEntry> {
        self.entries.get(i)
    }

    /// How many addresses of family `af` the non-negated entries hold
    /// (saturating; nested entries are counted once per entry, as pf's
    /// pools count them).
    #[inline]
    pub fn count_hosts(&self, af: Af) -> u128 {
        self.hosts[family_index(af)]
    }

    /// The longest entry containing `addr` of family `af` (`addr` in the
    /// `u128` layout), or [`Leaf::NONE`].
    #[inline]
    pub fn lookup(&self, af: Af, addr: u128) -> Leaf {
        match af {
            Af::Inet => self.v4.lookup(addr),
            Af::Inet6 => self.v6.lookup(addr),
        }
    }

    /// Whether `addr` of family `af` matches the table (pf's
    /// `pfr_match_addr`).
    #[inline]
    pub fn matches(&self, af: Af, addr: u128) -> bool {
        self.lookup(af, addr).matches()
    }

    /// The entry with exactly this key, if any.
    pub fn find(&self, af: Af, net: u128, len: u8) -> Option<&TableEntry> {
        let k = (af as u8, net, len);
        self.entries
            .binary_search_by(|e| e.addr.key().cmp(&k))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Approximate heap bytes of the tries and the entry list.
    pub fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes()
            + self.v6.memory_bytes()
            + self.entries.capacity() * std::mem::size_of::<TableEntry>()
    }

    /// Marks it as referenced by a rule (the compiler).
    pub(crate) fn set_referenced(&mut self) {
        self.flags.referenced = true;
    }

    /// The same table under other flags (a reload keeps contents).
    pub(crate) fn with_flags(&self, name: &str, flags: TableFlags) -> Table {
        Table {
            name: name.to_string(),
            flags,
            ..self.clone()
        }
    }

    /// Stamps entries never stamped (a ruleset's tables when it is put in
    /// service) with `now_s`.
    pub(crate) fn stamped(&self, now_s: u64) -> Table {
        let mut t = self.clone();
        if t.cleared == 0 {
            t.cleared = now_s;
        }
        for e in &mut t.entries {
            if e.tzero == 0 {
                e.tzero = now_s;
            }
        }
        t
    }

    /// This table after `change` at time `now_s`, with pfctl's counts.
    /// Refused for a `const` table.
    pub fn apply(
        &self,
        change: &TableChange,
        now_s: u64,
    ) -> Result<(Table, ChangeCounts), TableError> {
        if self.flags.constant {
            return Err(TableError::Const(self.name.clone()));
        }
        let mut counts = ChangeCounts::default();
        match change {
            TableChange::Zero => {
                let mut t = self.clone();
                t.cleared = now_s;
                for e in &mut t.entries {
                    e.tzero = now_s;
                }
                return Ok((t, counts));
            }
            TableChange::Flush => {
                counts.deleted = self.entries.len() as u64;
                let mut t = self.with_entries(Vec::new());
                t.rebuild_tries();
                return Ok((t, counts));
            }
            _ => {}
        }
        // Removals (by index into the old list), negation flips (index,
        // new negation) and additions; then one merge.
        let mut remove: Vec<usize> = Vec::new();
        let mut flip: Vec<usize> = Vec::new();
        let mut add: Vec<TableAddr> = Vec::new();
        match change {
            TableChange::Add(list) => {
                let list = distinct(list);
                counts.given = list.len() as u64;
                for a in list {
                    match self.index_of(&a) {
                        Some(i) if self.entries[i].addr.negated != a.negated => {
                            counts.conflicts += 1
                        }
                        Some(_) => {}
                        None => add.push(a),
                    }
                }
                counts.added = add.len() as u64;
            }
            TableChange::Delete(list) => {
                let list = distinct(list);
                counts.given = list.len() as u64;
                for a in list {
                    match self.index_of(&a) {
                        Some(i) if self.entries[i].addr.negated != a.negated => {
                            counts.conflicts += 1
                        }
                        Some(i) => remove.push(i),
                        None => {}
                    }
                }
                counts.deleted = remove.len() as u64;
            }
            TableChange::Replace(list) => {
                let list = distinct(list);
                counts.given = list.len() as u64;
                let wanted: HashMap<(u8, u128, u8), bool> =
                    list.iter().map(|a| (a.key(), a.negated)).collect();
                for (i, e) in self.entries.iter().enumerate() {
                    match wanted.get(&e.addr.key()) {
                        None => remove.push(i),
                        Some(&neg) if neg != e.addr.negated => flip.push(i),
                        Some(_) => {}
                    }
                }
                add = list
                    .into_iter()
                    .filter(|a| self.index_of(a).is_none())
                    .collect();
                counts.added = add.len() as u64;
                counts.deleted = remove.len() as u64;
                counts.changed = flip.len() as u64;
            }
            TableChange::Expire { secs } => {
                let limit = now_s.saturating_sub(*secs);
                remove = (0..self.entries.len())
                    .filter(|&i| self.entries[i].tzero != 0 && self.entries[i].tzero < limit)
                    .collect();
                counts.given = remove.len() as u64;
                counts.deleted = remove.len() as u64;
            }
            TableChange::Zero | TableChange::Flush => {}
        }
        if remove.is_empty() && flip.is_empty() && add.is_empty() {
            return Ok((self.clone(), counts));
        }
        // The new entry list, in one pass over the old one (the one copy
        // of the list a change costs).
        const KEEP: u8 = 0;
        const DROP: u8 = 1;
        const FLIP: u8 = 2;
        let mut fate = vec![KEEP; self.entries.len()];
        for &i in &remove {
            fate[i] = DROP;
        }
        for &i in &flip {
            fate[i] = FLIP;
        }
        add.sort_by_key(|a| a.key());
        let mut entries: Vec<TableEntry> = Vec::with_capacity(self.entries.len() + add.len());
        let mut adds = add.iter().peekable();
        for (e, f) in self.entries.iter().zip(&fate) {
            while let Some(n) = adds.next_if(|n| n.key() < e.addr.key()) {
                entries.push(TableEntry {
                    addr: *n,
                    tzero: now_s,
                });
            }
            match *f {
                DROP => {}
                FLIP => {
                    let mut e = *e;
                    e.addr.negated = !e.addr.negated;
                    e.tzero = now_s;
                    entries.push(e);
                }
                _ => entries.push(*e),
            }
        }
        entries.extend(adds.map(|n| TableEntry {
            addr: *n,
            tzero: now_s,
        }));
        let mut t = self.with_entries(entries);
        let work = remove.len() + flip.len() + add.len();
        if work > t.entries.len() / 4 + 64 {
            // A large change: building afresh is cheaper than patching.
            t.rebuild_tries();
            return Ok((t, counts));
        }
        // Patch the tries: removals first, each slot falling back to the
        // longest entry of the final list that covers it; then flips and
        // additions, which overwrite where they are the longer.
        for &i in &remove {
            let a = self.entries[i].addr;
            // The fallback reads the entry list only: the trie can be
            // taken out meanwhile.
            let mut lpm = std::mem::take(t.lpm_mut(a.af));
            lpm.remove(a.net, a.len, |d| t.fallback(a, d));
            *t.lpm_mut(a.af) = lpm;
        }
        for &i in &flip {
            let mut a = self.entries[i].addr;
            a.negated = !a.negated;
            t.lpm_mut(a.af)
                .insert(a.net, a.len, Leaf::new(a.len, a.negated));
        }
        for a in &add {
            t.lpm_mut(a.af)
                .insert(a.net, a.len, Leaf::new(a.len, a.negated));
        }
        t.recount_hosts();
        Ok((t, counts))
    }

    /// This table's name, flags, time and tries with another entry list
    /// (the caller makes the tries agree).
    fn with_entries(&self, entries: Vec<TableEntry>) -> Table {
        Table {
            name: self.name.clone(),
            flags: self.flags,
            v4: self.v4.clone(),
            v6: self.v6.clone(),
            entries,
            cleared: self.cleared,
            hosts: self.hosts,
        }
    }

    fn index_of(&self, a: &TableAddr) -> Option<usize> {
        let k = a.key();
        self.entries.binary_search_by(|e| e.addr.key().cmp(&k)).ok()
    }

    /// The longest entry covering `a` with a length above `d` and below
    /// `a.len` (what `a`'s slots fall back to when it is removed).
    fn fallback(&self, a: TableAddr, d: u8) -> Leaf {
        let mut l = a.len;
        while l > d + 1 {
            l -= 1;
            if let Some(e) = self.find(a.af, a.net & prefix_mask(l), l) {
                return Leaf::new(l, e.addr.negated);
            }
        }
        Leaf::NONE
    }
}

/// The distinct addresses of a request, masked (by key; the last negation
/// wins).
fn distinct(list: &[TableAddr]) -> Vec<TableAddr> {
    let mut seen: HashMap<(u8, u128, u8), usize> = HashMap::with_capacity(list.len());
    let mut out: Vec<TableAddr> = Vec::with_capacity(list.len());
    for a in list {
        let a = &TableAddr::new(a.af, a.net, a.len, a.negated);
        match seen.get(&a.key()) {
            Some(&i) => out[i] = *a,
            None => {
                seen.insert(a.key(), out.len());
                out.push(*a);
            }
        }
    }
    out
}

fn sorted_entries(list: &[TableAddr], now_s: u64) -> Vec<TableEntry> {
    let mut v: Vec<TableEntry> = distinct(list)
        .into_iter()
        .map(|addr| TableEntry { addr, tzero: now_s })
        .collect();
    v.sort_by_key(|e| e.addr.key());
    v.dedup_by_key(|e| e.addr.key());
    v
}

/// The tables of a ruleset as the workers see them: the ruleset's own
/// (by the index its rules hold), then tables created at run time.
#[derive(Clone, Debug, Default)]
pub struct TableSet {
    tables: Vec<Arc<Table>>,
    /// How many of `tables` the ruleset defined (rules refer to these).
    defined: usize,
}

impl TableSet {
    pub(crate) fn new(tables: Vec<Table>) -> TableSet {
        let defined = tables.len();
        TableSet {
            tables: tables.into_iter().map(Arc::new).collect(),
            defined,
        }
    }

    /// Table `i` (the index a rule holds).
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Table> {
        self.tables.get(i).map(|t| &**t)
    }

    /// The operator's tables (not the internal address sets), in order:
    /// defined ones first, then those created at run time.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Table>> {
        self.tables.iter().filter(|t| !t.flags.internal)
    }

    /// The operator's table called `name`, with its index.
    pub fn find(&self, name: &str) -> Option<(usize, &Arc<Table>)> {
        self.tables
            .iter()
            .enumerate()
            .find(|(_, t)| !t.flags.internal && t.name == name)
    }

    /// This set with table `i` replaced.
    pub fn with_table(&self, i: usize, t: Table) -> TableSet {
        let mut s = self.clone();
        if let Some(slot) = s.tables.get_mut(i) {
            *slot = Arc::new(t);
        }
        s
    }

    /// This set with a table created at run time (`dpfctl -T add` on an
    /// unknown name: pfctl creates it, `persist`).
    pub fn with_new_table(&self, t: Table) -> TableSet {
        let mut s = self.clone();
        s.tables.push(Arc::new(t));
        s
    }

    /// pfctl's `-F Tables` (`pfr_clr_tables`): tables no rule refers to
    /// are deleted (a defined one is emptied and becomes a runtime-less
    /// placeholder no listing shows), the others lose `persist` and
    /// `const` but keep their entries. Returns the set and how many
    /// tables were deleted.
    pub fn flushed(&self) -> (TableSet, u64) {
        let mut deleted = 0;
        let mut tables = Vec::with_capacity(self.defined);
        for (i, t) in self.tables.iter().enumerate() {
            if t.flags.internal {
                tables.push(Arc::clone(t));
                continue;
            }
            if t.flags.referenced {
                let mut f = t.flags;
                f.persist = false;
                f.constant = false;
                tables.push(Arc::new(t.with_flags(&t.name, f)));
                continue;
            }
            deleted += 1;
            if i < self.defined {
                // Rules hold indices: the slot stays, hidden and empty.
                tables.push(Arc::new(Table::new(
                    t.name.clone(),
                    TableFlags {
                        internal: true,
                        ..TableFlags::default()
                    },
                    &[],
                    0,
                )));
            }
        }
        (
            TableSet {
                tables,
                defined: self.defined,
            },
            deleted,
        )
    }

    /// How many tables the ruleset defined (indices below this are the
    /// rules').
    pub fn defined(&self) -> usize {
        self.defined
    }

    /// Number of tables, internal ones included.
    pub fn len(&self) -> usize {
        self.tables.len()
    }

    /// Whether there is no table at all.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// A ruleset's tables as published to the workers: a [`Snapshot`] of
/// its [`TableSet`], written by the control thread only.
///
/// Freeing a replaced table (after a `replace` or `flush` of a million
/// entries, its whole trie) must not fall to a worker: the set a publish
/// replaces is kept in `retired` until no worker holds it any more, and
/// freed by a later publish on the control thread. A worker dropping its
/// old set therefore only decrements a count.
#[derive(Debug)]
pub struct LiveTables {
    snap: Snapshot<TableSet>,
    retired: std::sync::Mutex<Vec<Arc<TableSet>>>,
}

impl LiveTables {
    pub(crate) fn new(set: TableSet) -> LiveTables {
        LiveTables {
            snap: Snapshot::new(Arc::new(set)),
            retired: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The epoch, moved by every publish (one atomic load).
    #[inline(always)]
    pub fn epoch(&self) -> u64 {
        self.snap.epoch()
    }

    /// The current set.
    pub fn load(&self) -> Arc<TableSet> {
        self.snap.load()
    }

    /// Publishes `set`; the replaced one is retired (see the type's doc).
    pub(crate) fn publish(&self, set: Arc<TableSet>) -> u64 {
        let old = self.snap.load();
        let epoch = self.snap.publish(set);
        self.retire(old);
        epoch
    }

    /// Keeps `set` until no one else holds it; frees the retired sets no
    /// one holds any more.
    pub(crate) fn retire(&self, set: Arc<TableSet>) {
        if let Ok(mut r) = self.retired.lock() {
            r.retain(|s| Arc::strong_count(s) > 1);
            r.push(set);
        }
    }
}

/// The contents a new ruleset's tables start with at a reload
/// (`pfr_ina_commit` / `pfr_commit_ktable`): a table defined with
/// addresses (`{ ... }` or `file`, even empty) gets them; a table defined
/// without any keeps the entries of the table of that name in `previous`;
/// tables of `previous` that the new ruleset does not define are kept if
/// `persist` (runtime-created ones are) and dropped otherwise. Every entry
/// and table not yet stamped gets `now_s`.
pub(crate) fn carry_over(new: &TableSet, previous: Option<&TableSet>, now_s: u64) -> TableSet {
    let mut tables: Vec<Arc<Table>> = Vec::with_capacity(new.tables.len());
    for t in &new.tables {
        let old = previous.and_then(|p| p.find(&t.name));
        let t = match old {
            Some((_, old)) if !t.flags.internal && !t.flags.defined_with_addrs => {
                old.with_flags(&t.name, t.flags).stamped(now_s)
            }
            _ => t.stamped(now_s),
        };
        tables.push(Arc::new(t));
    }
    if let Some(p) = previous {
        for t in p.iter() {
            if t.flags.persist && !new.iter().any(|n| n.name == t.name) {
                let mut f = t.flags;
                f.referenced = false;
                f.defined_with_addrs = false;
                tables.push(Arc::new(t.with_flags(&t.name, f)));
            }
        }
    }
    TableSet {
        tables,
        defined: new.defined,
    }
}

/// Checks a table name as pfctl does.
pub fn check_table_name(name: &str) -> Result<(), TableError> {
    if name.is_empty() || name.len() > TABLE_NAME_MAX {
        return Err(TableError::BadName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(a: [u8; 4]) -> u128 {
        addr_bits(&Addr::v4(a))
    }

    fn a(s: &str) -> TableAddr {
        parse_table_addr(s).unwrap()
    }

    fn table(list: &[&str]) -> Table {
        let v: Vec<TableAddr> = list.iter().map(|s| a(s)).collect();
        Table::new("t".into(), TableFlags::default(), &v, 100)
    }

    #[test]
    fn longest_prefix_with_negation_decides() {
        let t = table(&["10.0.0.0/8", "!10.1.0.0/16", "10.1.2.0/24", "!10.1.2.3"]);
        assert!(t.matches(Af::Inet, v4([10, 9, 9, 9])));
        assert!(!t.matches(Af::Inet, v4([10, 1, 9, 9])));
        assert!(t.matches(Af::Inet, v4([10, 1, 2, 9])));
        assert!(!t.matches(Af::Inet, v4([10, 1, 2, 3])));
        assert!(!t.matches(Af::Inet, v4([11, 0, 0, 1])));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn families_are_separate() {
        let t = table(&["2001:db8::/32"]);
        let inside = addr_bits(&Addr::v6([
            0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1,
        ]));
        assert!(t.matches(Af::Inet6, inside));
        assert!(!t.matches(Af::Inet6, 1));
        // Bits that fall inside the v6 prefix do not match as IPv4.
        assert!(!t.matches(Af::Inet, inside));
        // 0.0.0.0/0 matches every IPv4 address but no IPv6 one.
        let t = table(&["0.0.0.0/0"]);
        assert!(t.matches(Af::Inet, v4([1, 2, 3, 4])));
        assert!(!t.matches(Af::Inet6, inside));
        assert_eq!(t.count_hosts(Af::Inet), 1 << 32);
        assert_eq!(t.count_hosts(Af::Inet6), 0);
    }

    #[test]
    fn addresses_parse_as_pfctl_writes_them() {
        assert_eq!(a("192.168.1.77/24").to_string(), "192.168.1.0/24");
        assert_eq!(a("!10/8").to_string(), "!10.0.0.0/8");
        assert_eq!(a("172.16/12").to_string(), "172.16.0.0/12");
        assert_eq!(a("10.1.2.3").to_string(), "10.1.2.3");
        assert_eq!(a("2001:db8::1/128").to_string(), "2001:db8::1");
        assert_eq!(a("!2001:db8::/32").to_string(), "!2001:db8::/32");
        for bad in [
            "10",
            "host.example",
            "10.0.0.0/33",
            "::/129",
            "1.2.3.4/",
            "1.2.3.4/x",
            "!",
        ] {
            assert!(parse_table_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_text_has_comments_blank_lines_and_positions() {
        let text = "# allowed clients\n\n10.0.0.1\n  !10.0.0.0/24   # not these\n192.0.2.0/24 2001:db8::/48\n; old\n";
        let v = parse_table_text(text).unwrap();
        let got: Vec<(String, u32, u32)> =
            v.iter().map(|(a, l, c)| (a.to_string(), *l, *c)).collect();
        assert_eq!(
            got,
            vec![
                ("10.0.0.1".to_string(), 3, 1),
                ("!10.0.0.0/24".to_string(), 4, 3),
                ("192.0.2.0/24".to_string(), 5, 1),
                ("2001:db8::/48".to_string(), 5, 14),
            ]
        );
        let e = parse_table_text("10.0.0.1\n\n  10.0.0.300\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 3));
        assert!(e.msg.contains("10.0.0.300"), "{}", e.msg);
    }

    #[test]
    fn add_delete_replace_count_as_pfctl() {
        let t = table(&["10.0.0.0/8", "!10.1.0.0/16"]);
        let (t2, c) = t
            .apply(
                &TableChange::Add(vec![
                    a("10.0.0.0/8"),
                    a("10.1.0.0/16"),
                    a("192.0.2.1"),
                    a("192.0.2.1"),
                ]),
                200,
            )
            .unwrap();
        assert_eq!((c.given, c.added, c.conflicts), (3, 1, 1));
        assert!(t2.matches(Af::Inet, v4([192, 0, 2, 1])));
        assert!(
            !t.matches(Af::Inet, v4([192, 0, 2, 1])),
            "the old table is unchanged"
        );
        assert_eq!(
            t2.find(Af::Inet, v4([192, 0, 2, 1]), 32).unwrap().tzero,
            200
        );
        assert_eq!(t2.find(Af::Inet, v4([10, 0, 0, 0]), 8).unwrap().tzero, 100);

        let (t3, c) = t2
            .apply(
                &TableChange::Delete(vec![a("!10.1.0.0/16"), a("10.0.0.0/8"), a("1.1.1.1")]),
                300,
            )
            .unwrap();
        assert_eq!((c.given, c.deleted), (3, 2));
        assert!(!t3.matches(Af::Inet, v4([10, 9, 9, 9])));
        assert_eq!(t3.len(), 1);

        let (t4, c) = t2
            .apply(
                &TableChange::Replace(vec![a("10.0.0.0/8"), a("10.1.0.0/16"), a("10.2.0.0/16")]),
                400,
            )
            .unwrap();
        assert_eq!((c.added, c.deleted, c.changed), (1, 1, 1));
        assert!(t4.matches(Af::Inet, v4([10, 1, 0, 1])), "negation flipped");
        assert_eq!(t4.find(Af::Inet, v4([10, 1, 0, 0]), 16).unwrap().tzero, 400);
        assert_eq!(t4.find(Af::Inet, v4([10, 0, 0, 0]), 8).unwrap().tzero, 100);
    }

    #[test]
    fn expire_zero_flush_and_const() {
        let t = table(&["10.0.0.1", "10.0.0.2"]);
        let (t, _) = t
            .apply(&TableChange::Add(vec![a("10.0.0.3")]), 1000)
            .unwrap();
        // Entries stamped at 100 are older than 500 s at 1000; the new one is not.
        let (e, c) = t.apply(&TableChange::Expire { secs: 500 }, 1000).unwrap();
        assert_eq!(c.deleted, 2);
        assert_eq!(e.len(), 1);
        assert!(e.matches(Af::Inet, v4([10, 0, 0, 3])));
        // Zero restamps everything: nothing is old any more.
        let (z, _) = t.apply(&TableChange::Zero, 1000).unwrap();
        assert_eq!(z.cleared(), 1000);
        let (z, c) = z.apply(&TableChange::Expire { secs: 500 }, 1000).unwrap();
        assert_eq!((c.deleted, z.len()), (0, 3));
        let (f, c) = z.apply(&TableChange::Flush, 1001).unwrap();
        assert_eq!((c.deleted, f.len()), (3, 0));
        assert!(!f.matches(Af::Inet, v4([10, 0, 0, 3])));
        let k = Table::new(
            "k".into(),
            TableFlags {
                constant: true,
                ..TableFlags::default()
            },
            &[],
            0,
        );
        assert_eq!(
            k.apply(&TableChange::Flush, 1).unwrap_err(),
            TableError::Const("k".into())
        );
    }

    #[test]
    fn a_reload_keeps_tables_defined_without_addresses() {
        let flags = |persist, with_addrs| TableFlags {
            persist,
            defined_with_addrs: with_addrs,
            ..TableFlags::default()
        };
        let old = TableSet::new(vec![
            Table::new("bare".into(), flags(true, false), &[], 0),
            Table::new("listed".into(), flags(true, true), &[a("10.0.0.1")], 0),
            Table::new("gone".into(), flags(true, true), &[a("10.0.0.9")], 0),
            Table::new("transient".into(), flags(false, true), &[a("10.0.0.8")], 0),
        ]);
        // Runtime additions to both.
        let (i, b) = old.find("bare").unwrap();
        let old = old.with_table(
            i,
            b.apply(&TableChange::Add(vec![a("192.0.2.1")]), 50)
                .unwrap()
                .0,
        );
        let (i, l) = old.find("listed").unwrap();
        let old = old.with_table(
            i,
            l.apply(&TableChange::Add(vec![a("192.0.2.2")]), 50)
                .unwrap()
                .0,
        );
        let old = old.with_new_table(Table::new(
            "made".into(),
            flags(true, false),
            &[a("192.0.2.3")],
            50,
        ));

        let new = TableSet::new(vec![
            Table::new("bare".into(), flags(true, false), &[], 0),
            Table::new("listed".into(), flags(true, true), &[a("10.0.0.1")], 0),
        ]);
        let set = carry_over(&new, Some(&old), 99);
        let names: Vec<&str> = set.iter().map(|t| t.name()).collect();
        assert_eq!(names, vec!["bare", "listed", "gone", "made"]);
        let bare = set.find("bare").unwrap().1;
        assert!(
            bare.matches(Af::Inet, v4([192, 0, 2, 1])),
            "runtime addition kept"
        );
        assert_eq!(bare.entries()[0].tzero, 50);
        let listed = set.find("listed").unwrap().1;
        assert_eq!(listed.len(), 1, "reset to its definition");
        assert_eq!(listed.entries()[0].tzero, 99);
        assert!(set
            .find("made")
            .unwrap()
            .1
            .matches(Af::Inet, v4([192, 0, 2, 3])));
    }

    #[test]
    fn flush_tables_deletes_unreferenced_and_unpins_the_rest() {
        let mut used = TableFlags {
            persist: true,
            constant: true,
            ..TableFlags::default()
        };
        used.referenced = true;
        let set = TableSet::new(vec![
            Table::new("used".into(), used, &[a("10.0.0.1")], 0),
            Table::new("idle".into(), TableFlags::default(), &[a("10.0.0.2")], 0),
        ])
        .with_new_table(Table::new("made".into(), TableFlags::default(), &[], 0));
        let (f, deleted) = set.flushed();
        assert_eq!(deleted, 2);
        let names: Vec<&str> = f.iter().map(|t| t.name()).collect();
        assert_eq!(names, vec!["used"]);
        let u = f.find("used").unwrap().1;
        assert!(!u.flags().persist && !u.flags().constant && u.len() == 1);
        assert_eq!(f.len(), 2, "the defined slot stays for the rules' indices");
    }

    /// The reference: the longest entry that contains the address.
    fn naive(entries: &[TableAddr], af: Af, key: u128) -> bool {
        entries
            .iter()
            .filter(|e| e.af == af && key & prefix_mask(e.len) == e.net)
            .max_by_key(|e| e.len)
            .is_some_and(|e| !e.negated)
    }

    fn arb_addr() -> impl Strategy<Value = TableAddr> {
        (
            any::<bool>(),
            any::<u32>(),
            any::<u128>(),
            0u8..=128,
            any::<bool>(),
            0u8..3,
        )
            .prop_map(|(v6, bits, bits6, len, neg, c)| {
                if v6 {
                    let net = 0x2001_0db8u128 << 96 | u128::from(c) << 92 | bits6 >> 36;
                    TableAddr::new(Af::Inet6, net, len, neg)
                } else {
                    let net = u128::from(u32::from(c) << 29 | bits >> 3) << 96;
                    TableAddr::new(Af::Inet, net, len % 33, neg)
                }
            })
    }

    fn arb_change() -> impl Strategy<Value = TableChange> {
        let list = || prop::collection::vec(arb_addr(), 0..40);
        prop_oneof![
            4 => list().prop_map(TableChange::Add),
            3 => list().prop_map(TableChange::Delete),
            1 => list().prop_map(TableChange::Replace),
            1 => (0u64..200).prop_map(|secs| TableChange::Expire { secs }),
            1 => Just(TableChange::Zero),
            1 => Just(TableChange::Flush),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]

        /// Every change keeps the tries equal to a naive scan of the entry
        /// list, and the entry list equal to pf's set arithmetic.
        #[test]
        fn changes_keep_lookup_equal_to_a_naive_scan(
            start in prop::collection::vec(arb_addr(), 0..80),
            changes in prop::collection::vec(arb_change(), 1..8),
            probes in prop::collection::vec((any::<bool>(), any::<u128>()), 30),
        ) {
            let mut t = Table::new("t".into(), TableFlags::default(), &start, 1);
            let mut model: Vec<TableAddr> = sorted_entries(&start, 1).iter().map(|e| e.addr).collect();
            for (step, ch) in changes.iter().enumerate() {
                let now = 100 * (step as u64 + 1);
                t = t.apply(ch, now).unwrap().0;
                match ch {
                    TableChange::Add(l) => for x in distinct(l) {
                        if !model.iter().any(|m| m.key() == x.key()) { model.push(x); }
                    },
                    TableChange::Delete(l) => for x in distinct(l) {
                        model.retain(|m| *m != x);
                    },
                    TableChange::Replace(l) => model = distinct(l),
                    TableChange::Flush => model.clear(),
                    TableChange::Expire { .. } | TableChange::Zero => {
                        model = t.entries().iter().map(|e| e.addr).collect();
                    }
                }
                let mut want: Vec<(u8, u128, u8, bool)> = model.iter().map(|m| (m.af as u8, m.net, m.len, m.negated)).collect();
                want.sort();
                let got: Vec<(u8, u128, u8, bool)> = t.entries().iter().map(|e| (e.addr.af as u8, e.addr.net, e.addr.len, e.addr.negated)).collect();
                prop_assert_eq!(&got, &want);
                let mut keys: Vec<(Af, u128)> = probes.iter().map(|&(v6, k)| if v6 { (Af::Inet6, k) } else { (Af::Inet, k & prefix_mask(32)) }).collect();
                for m in &model {
                    keys.push((m.af, m.net));
                    keys.push((m.af, m.net | (!prefix_mask(m.len) & prefix_mask(max_len(m.af)))));
                }
                for (af, k) in keys {
                    prop_assert_eq!(t.matches(af, k), naive(&model, af, k), "{:?} {:032x} after {:?}", af, k, ch);
                }
            }
        }
    }
}
