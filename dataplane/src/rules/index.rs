//! The candidate index of a large ruleset: for a packet, the ordered set
//! of rules that can possibly match it, so that evaluation examines those
//! instead of walking every rule.
//!
//! It owns, per indexed field, the rules that field can rule out, keyed by
//! the field's value, and the field's *wildcard* list (rules the field can
//! never rule out). All lists are sorted rule numbers in one flat array.
//! The fields:
//!
//! - source and destination address: per family and per distinct prefix
//!   mask, an open-addressing table from the masked address to the rules
//!   whose address is that non-negated network (`from 10.1.2.0/24`,
//!   `self` and interface names the compiler expanded to networks). Tables
//!   (they change at run time), negations, ranges and `any` are wildcards;
//! - destination port (TCP and UDP packets only): `port = N` rules by N;
//!   every other operator is a wildcard;
//! - protocol: `proto P` rules by P; `proto any` is the wildcard;
//! - interface: the rules of `on <if>` (or a group) by port; `on ! <if>`,
//!   no `on` and ports 32 and above go to the wildcard.
//!
//! Anchor rules are wildcards of every field: they are always examined, so
//! a mismatching anchor still jumps over its rules exactly as in the linear
//! evaluator.
//!
//! For a packet, [`RuleIndex::candidates`] sizes each field's candidate set
//! (its wildcard list plus the lists its value hits; addresses first, then
//! port, protocol, interface; a field whose wildcard list alone is no
//! better is not looked up, and 8 candidates or fewer end the search) and
//! picks the smallest, if it leaves fewer than half the rules; a
//! [`Candidates`] cursor then merges that field's lists in rule order,
//! on the stack (no allocation). The evaluator runs the exact per-rule match
//! on each candidate, with pf's ordering, `quick`, anchors and skip steps
//! unchanged: a rule that is not a candidate cannot match the packet, and
//! a rule that cannot match only ever moves the linear evaluator forward.
//!
//! Invariant (tested by `index_tests`): for every packet, every rule whose
//! conditions all hold, and every anchor rule, is in the chosen candidate
//! set. A field whose value would hit more lists than the cursor holds is
//! not used; when no field prunes enough, evaluation stays linear.

use super::compile::{AddrKind, AddrMatch, Rule};
use super::parser::PortOp;
use crate::flow::{proto, Af, PacketInfo};
use std::collections::HashMap;

/// Rulesets with at least this many rules get an index; smaller ones are
/// evaluated linearly (skip steps are as fast there).
pub(crate) const INDEX_MIN_RULES: usize = 64;

/// Lists one field may merge for a packet (its wildcard list included).
const MAX_LISTS: usize = 16;

/// Candidates this few end the search for a better field.
const GOOD_ENOUGH: usize = 8;

/// The field chosen for a packet.
#[derive(Clone, Copy)]
enum Choice<'a> {
    /// An address field and the packet's address.
    Addr(&'a AddrIndex, u128),
    /// A one-list field: its wildcard list and the list the packet hits.
    Lists(Span, Span),
}

/// A run of the flat list array: `lists[start..end]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    #[inline]
    fn len(self) -> usize {
        (self.end - self.start) as usize
    }
}

/// An open-addressing hash table from a key to a span; built once, read
/// without allocation.
#[derive(Clone, Debug, Default)]
struct SpanTable {
    /// `(key, span)`; an empty slot has an empty span.
    slots: Vec<(u128, Span)>,
    /// `slots.len() - 1` (a power of two minus one).
    mask: usize,
}

#[inline]
fn hash(k: u128) -> usize {
    let x = ((k >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (k as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let x = x ^ (x >> 29);
    (x.wrapping_mul(0x1656_67B1_9E37_79F9) >> 32) as usize
}

impl SpanTable {
    fn build(entries: &[(u128, Span)]) -> SpanTable {
        let cap = (entries.len() * 2).max(2).next_power_of_two();
        let mask = cap - 1;
        let mut slots = vec![(0u128, Span::default()); cap];
        for &(k, s) in entries {
            let mut h = hash(k) & mask;
            while slots[h].1.len() != 0 {
                h = (h + 1) & mask;
            }
            slots[h] = (k, s);
        }
        SpanTable { slots, mask }
    }

    /// The span of `k`; empty when absent.
    #[inline]
    fn get(&self, k: u128) -> Span {
        if self.slots.is_empty() {
            return Span::default();
        }
        let mut h = hash(k) & self.mask;
        // Terminates: at least half the slots are empty.
        loop {
            let (key, s) = self.slots[h];
            if s.len() == 0 {
                return Span::default();
            }
            if key == k {
                return s;
            }
            h = (h + 1) & self.mask;
        }
    }
}

/// The networks of one family and one prefix mask.
#[derive(Clone, Debug)]
struct MaskTable {
    mask: u128,
    table: SpanTable,
}

/// An address field (source or destination).
#[derive(Clone, Debug, Default)]
struct AddrIndex {
    wild: Span,
    v4: Vec<MaskTable>,
    v6: Vec<MaskTable>,
}

impl AddrIndex {
    #[inline]
    fn tables(&self, af: Af) -> &[MaskTable] {
        match af {
            Af::Inet => &self.v4,
            Af::Inet6 => &self.v6,
        }
    }
}

/// The index of one ruleset; see the module doc.
#[derive(Clone, Default)]
pub(crate) struct RuleIndex {
    /// Number of rules indexed.
    n: usize,
    /// Every list, back to back; each is ascending.
    lists: Vec<u32>,
    src: AddrIndex,
    dst: AddrIndex,
    dport_wild: Span,
    dport: SpanTable,
    proto_wild: Span,
    proto: Vec<Span>,
    ifp_wild: Span,
    ifp: Vec<Span>,
}

impl std::fmt::Debug for RuleIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleIndex")
            .field("rules", &self.n)
            .field("entries", &self.lists.len())
            .finish_non_exhaustive()
    }
}

/// Collects lists while building.
struct Builder {
    lists: Vec<u32>,
}

impl Builder {
    fn push(&mut self, rules: &[u32]) -> Span {
        let start = self.lists.len() as u32;
        self.lists.extend_from_slice(rules);
        Span {
            start,
            end: self.lists.len() as u32,
        }
    }

    /// Lists keyed by `K`, in first-seen order, with the wildcard list.
    fn keyed<K: std::hash::Hash + Eq + Copy>(
        &mut self,
        rules: &[Rule],
        key: impl Fn(&Rule) -> Option<K>,
    ) -> (Span, Vec<(K, Span)>) {
        let mut wild = Vec::new();
        let mut order: Vec<K> = Vec::new();
        let mut by_key: HashMap<K, Vec<u32>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            match key(r).filter(|_| r.anchor_end.is_none()) {
                Some(k) => by_key
                    .entry(k)
                    .or_insert_with(|| {
                        order.push(k);
                        Vec::new()
                    })
                    .push(i as u32),
                None => wild.push(i as u32),
            }
        }
        let wild = self.push(&wild);
        let keyed = order
            .into_iter()
            .map(|k| (k, self.push(&by_key[&k])))
            .collect();
        (wild, keyed)
    }

    fn addr(&mut self, rules: &[Rule], field: impl Fn(&Rule) -> &AddrMatch) -> AddrIndex {
        let (wild, keyed) = self.keyed(rules, |r| match *field(r) {
            AddrMatch {
                kind: AddrKind::Net { af, net, mask, .. },
                neg: false,
            } => Some((af == Af::Inet6, mask, net & mask)),
            _ => None,
        });
        let mut masks: Vec<(bool, u128)> = Vec::new();
        for &((v6, mask, _), _) in &keyed {
            if !masks.contains(&(v6, mask)) {
                masks.push((v6, mask));
            }
        }
        let mut out = AddrIndex {
            wild,
            ..AddrIndex::default()
        };
        for (v6, mask) in masks {
            let entries: Vec<(u128, Span)> = keyed
                .iter()
                .filter(|((kv6, kmask, _), _)| (*kv6, *kmask) == (v6, mask))
                .map(|((_, _, net), s)| (*net, *s))
                .collect();
            let t = MaskTable {
                mask,
                table: SpanTable::build(&entries),
            };
            if v6 {
                out.v6.push(t);
            } else {
                out.v4.push(t);
            }
        }
        out
    }
}

impl RuleIndex {
    /// Indexes `rules` (compiled, with skip steps).
    pub(crate) fn build(rules: &[Rule]) -> RuleIndex {
        let mut b = Builder { lists: Vec::new() };
        let src = b.addr(rules, |r| &r.src);
        let dst = b.addr(rules, |r| &r.dst);
        let (dport_wild, keyed) = b.keyed(rules, |r| {
            (r.dst_port.op == Some(PortOp::Eq)).then_some(r.dst_port.a)
        });
        let dport = SpanTable::build(
            &keyed
                .iter()
                .map(|&(p, s)| (p as u128, s))
                .collect::<Vec<_>>(),
        );
        let (proto_wild, keyed) = b.keyed(rules, |r| (r.proto != 0).then_some(r.proto));
        let mut proto = vec![Span::default(); 256];
        for (p, s) in keyed {
            proto[p as usize] = s;
        }
        // Interfaces: a rule of `on {a b}` is listed under each port.
        let mut ifp_wild = Vec::new();
        let mut per_port: Vec<Vec<u32>> = vec![Vec::new(); 32];
        for (i, r) in rules.iter().enumerate() {
            match r.ifp {
                Some((ports, false)) if r.anchor_end.is_none() => {
                    for (p, list) in per_port.iter_mut().enumerate() {
                        if ports & (1u32 << p) != 0 {
                            list.push(i as u32);
                        }
                    }
                }
                _ => ifp_wild.push(i as u32),
            }
        }
        let ifp_wild = b.push(&ifp_wild);
        let ifp = per_port.iter().map(|l| b.push(l)).collect();
        RuleIndex {
            n: rules.len(),
            lists: b.lists,
            src,
            dst,
            dport_wild,
            dport,
            proto_wild,
            proto,
            ifp_wild,
            ifp,
        }
    }

    /// The candidates of `pkt` (with `src`/`dst` its addresses as
    /// `addr_bits`): the lists of the field that leaves the fewest rules,
    /// if that is fewer than `limit`; `None` otherwise (evaluate linearly
    /// then). Every field leaves at most [`RuleIndex::len`] rules.
    #[inline]
    pub(crate) fn candidates(
        &self,
        pkt: &PacketInfo,
        src: u128,
        dst: u128,
        limit: usize,
    ) -> Option<Candidates<'_>> {
        // Fields in order of usual selectivity; a field whose wildcard
        // list alone leaves no fewer rules than the best so far is not
        // looked up, and a few candidates are good enough to stop.
        let mut best: Option<Choice<'_>> = None;
        let mut best_len = limit;
        // Address fields: the wildcard list and one list per mask hit,
        // sized here and gathered again only for the field chosen.
        for (ix, a) in [(&self.src, src), (&self.dst, dst)] {
            if ix.wild.len() >= best_len || best_len <= GOOD_ENOUGH {
                continue;
            }
            let (mut total, mut k) = (ix.wild.len(), 1);
            for t in ix.tables(pkt.af) {
                let hit = t.table.get(a & t.mask);
                total += hit.len();
                k += (hit.len() != 0) as usize;
                if total >= best_len || k > MAX_LISTS {
                    break;
                }
            }
            if total < best_len && k <= MAX_LISTS {
                best_len = total;
                best = Some(Choice::Addr(ix, a));
            }
        }
        // One-list fields: (wildcard, hit) spans.
        let ports = pkt.proto == proto::TCP || pkt.proto == proto::UDP;
        for field in 0..3 {
            if best_len <= GOOD_ENOUGH {
                break;
            }
            let wild = match field {
                0 if ports => self.dport_wild,
                0 => continue,
                1 => self.proto_wild,
                _ => self.ifp_wild,
            };
            if wild.len() >= best_len {
                continue;
            }
            let hit = match field {
                0 => self.dport.get(pkt.dport as u128),
                1 => self.proto[pkt.proto as usize],
                _ => self
                    .ifp
                    .get(pkt.ifindex.0 as usize)
                    .copied()
                    .unwrap_or_default(),
            };
            if wild.len() + hit.len() < best_len {
                best_len = wild.len() + hit.len();
                best = Some(Choice::Lists(wild, hit));
            }
        }
        let mut out = Candidates::new(&self.lists);
        match best? {
            Choice::Addr(ix, a) => {
                out.add(ix.wild);
                for t in ix.tables(pkt.af) {
                    out.add(t.table.get(a & t.mask));
                }
            }
            Choice::Lists(wild, hit) => {
                out.add(wild);
                out.add(hit);
            }
        }
        // Cannot overflow (sized above); were it to, no list is dropped:
        // the evaluation goes linear.
        (!out.overflow).then_some(out)
    }

    /// Number of rules the index was built for.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.n
    }
}
/// Walks the candidate rules of one packet in ascending order: a merge of
/// up to [`MAX_LISTS`] sorted lists, held on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Candidates<'a> {
    lists: &'a [u32],
    /// Per list: (next position, end).
    pos: [(u32, u32); MAX_LISTS],
    k: usize,
    /// A list did not fit: this set is unusable.
    overflow: bool,
}

impl<'a> Candidates<'a> {
    #[inline]
    fn new(lists: &'a [u32]) -> Candidates<'a> {
        Candidates {
            lists,
            pos: [(0, 0); MAX_LISTS],
            k: 0,
            overflow: false,
        }
    }

    #[inline]
    fn add(&mut self, s: Span) {
        if s.len() == 0 {
            return;
        }
        if self.k == MAX_LISTS {
            self.overflow = true;
            return;
        }
        self.pos[self.k] = (s.start, s.end);
        self.k += 1;
    }

    /// The first candidate at or after rule `at`; `n` when there is none.
    /// Calls must not go backwards (`at` never below a previous answer's
    /// argument).
    #[inline]
    pub(crate) fn seek(&mut self, at: usize, n: usize) -> usize {
        let mut best = n;
        for (p, end) in self.pos[..self.k].iter_mut() {
            while *p < *end {
                let r = self.lists[*p as usize] as usize;
                if r >= at {
                    best = best.min(r);
                    break;
                }
                *p += 1;
            }
        }
        best
    }

    /// Every candidate, in order (tests).
    #[cfg(test)]
    pub(crate) fn collect(mut self, n: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut i = self.seek(0, n);
        while i < n {
            out.push(i);
            i = self.seek(i + 1, n);
        }
        out
    }
}
