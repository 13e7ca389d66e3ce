//! Longest-prefix match over 128-bit keys (IPv4 in the top 32 bits, as
//! [`crate::flow::Addr`] stores it): the lookup structure of pf tables.
//!
//! A multibit trie with 8-bit strides and path compression, persistent by
//! path copying:
//!
//! ```text
//! Node (depth d, a multiple of 8; prefix = the key's bits above d)
//!   bits[4]  : u64 × 4   which of the 256 slots (key bits d..d+8) exist
//!   base[4]  : u16 × 4   slots present in the words before (popcount rank)
//!   slots    : [Slot]    only the present ones, in slot order
//! Slot
//!   leaf     : Leaf      the longest prefix of length d+1..=d+8 covering
//!                        the slot (prefix expansion), or none
//!   child    : Arc<Node> longer prefixes below; its depth may skip levels
//!                        (path compression): the lookup checks its prefix
//! ```
//!
//! A prefix of length `l ≥ 1` lives in the node of depth `8·⌊(l-1)/8⌋` on
//! its path, spread over the `2^(d+8-l)` slots it covers; `/0` is a separate
//! default. A lookup walks at most 16 nodes (4 for IPv4 keys), keeping the
//! last leaf seen: one prefix compare, one popcount and one slot load per
//! node, whatever the number of prefixes. It neither allocates nor locks.
//!
//! Changes copy only the nodes on the changed paths ([`Arc::make_mut`]), so
//! the control thread clones an [`Lpm`] (one reference count), changes the
//! clone and publishes it while workers keep reading the old one; the two
//! share every untouched node.
//!
//! Invariants: a node's `depth` is a multiple of 8, at most 120, and larger
//! than its parent's by at least 8; `prefix` has no bits at or below
//! `depth`; a slot has a leaf or a child (empty slots are removed, empty
//! nodes pruned); a node holding nothing but one child is collapsed into its
//! parent's slot. A slot's leaf is the longest of the prefixes stored in its
//! node that cover it.

use std::sync::Arc;

/// What a stored prefix says: its length and whether it is negated (pf's
/// `!addr` table entry). Packed in 16 bits; [`Leaf::NONE`] is no prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Leaf(u16);

impl Leaf {
    /// No prefix.
    pub const NONE: Leaf = Leaf(0);

    /// A prefix of `len` bits (at most 128), negated or not.
    #[inline]
    pub fn new(len: u8, negated: bool) -> Leaf {
        Leaf(((u16::from(len.min(128)) << 1) | u16::from(negated)) + 1)
    }

    /// Whether this is [`Leaf::NONE`].
    #[inline]
    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// The prefix length (0 for none).
    #[inline]
    pub fn prefix_len(self) -> u8 {
        (self.0.saturating_sub(1) >> 1) as u8
    }

    /// Whether the prefix is negated.
    #[inline]
    pub fn negated(self) -> bool {
        self.0 != 0 && (self.0 - 1) & 1 == 1
    }

    /// pf's table match: a prefix was found and it is not negated.
    #[inline]
    pub fn matches(self) -> bool {
        self.0 != 0 && (self.0 - 1) & 1 == 0
    }
}

/// The mask of the top `len` bits.
#[inline]
fn top_mask(len: u8) -> u128 {
    !(u128::MAX.checked_shr(u32::from(len)).unwrap_or(0))
}

/// Key bits `depth..depth+8` (depth at most 120).
#[inline]
fn byte_at(key: u128, depth: u8) -> u8 {
    (key >> (120 - u32::from(depth.min(120)))) as u8
}

#[derive(Clone, Debug)]
struct Slot {
    child: Option<Arc<Node>>,
    leaf: Leaf,
}

#[derive(Clone, Debug)]
struct Node {
    depth: u8,
    prefix: u128,
    bits: [u64; 4],
    base: [u16; 4],
    slots: Vec<Slot>,
}

impl Node {
    fn new(depth: u8, key: u128) -> Node {
        Node {
            depth,
            prefix: key & top_mask(depth),
            bits: [0; 4],
            base: [0; 4],
            slots: Vec::new(),
        }
    }

    /// Whether `key` is on this node's path.
    #[inline]
    fn on_path(&self, key: u128) -> bool {
        key & top_mask(self.depth) == self.prefix
    }

    /// The index of slot `s` in `slots` if it is present.
    #[inline]
    fn find(&self, s: u8) -> Option<usize> {
        let (w, b) = (usize::from(s >> 6), s & 63);
        let word = self.bits[w];
        (word >> b & 1 == 1)
            .then(|| usize::from(self.base[w]) + (word & ((1u64 << b) - 1)).count_ones() as usize)
    }

    fn recount(&mut self) {
        let mut n = 0u16;
        for w in 0..4 {
            self.base[w] = n;
            n += self.bits[w].count_ones() as u16;
        }
    }

    /// Slot `s`, inserted empty if absent.
    fn slot_mut(&mut self, s: u8) -> &mut Slot {
        let i = match self.find(s) {
            Some(i) => i,
            None => {
                let (w, b) = (usize::from(s >> 6), s & 63);
                let i = usize::from(self.base[w])
                    + (self.bits[w] & ((1u64 << b) - 1)).count_ones() as usize;
                self.bits[w] |= 1u64 << b;
                self.recount();
                self.slots.insert(
                    i,
                    Slot {
                        child: None,
                        leaf: Leaf::NONE,
                    },
                );
                i
            }
        };
        &mut self.slots[i]
    }

    fn remove_slot(&mut self, s: u8) {
        if let Some(i) = self.find(s) {
            self.slots.remove(i);
            self.bits[usize::from(s >> 6)] &= !(1u64 << (s & 63));
            self.recount();
        }
    }

    /// The slots a prefix of `len` bits stored in this node covers.
    fn span(&self, net: u128, len: u8) -> std::ops::Range<u16> {
        let first = u16::from(byte_at(net, self.depth));
        let count = 1u16
            << (u32::from(self.depth) + 8)
                .saturating_sub(u32::from(len))
                .min(8);
        first..(first + count).min(256)
    }

    /// Stores a prefix of this node (`depth < len <= depth + 8`) in the
    /// slots it covers, unless a longer one holds a slot.
    fn fill(&mut self, net: u128, len: u8, leaf: Leaf) {
        for s in self.span(net, len) {
            let slot = self.slot_mut(s as u8);
            if slot.leaf.is_none() || slot.leaf.prefix_len() <= len {
                slot.leaf = leaf;
            }
        }
    }

    /// Removes a prefix of this node: its slots take `replacement` (the
    /// next shorter prefix of this node covering it, or none).
    fn unfill(&mut self, net: u128, len: u8, replacement: Leaf) {
        for s in self.span(net, len) {
            let s = s as u8;
            let Some(i) = self.find(s) else { continue };
            let slot = &mut self.slots[i];
            if !slot.leaf.is_none() && slot.leaf.prefix_len() == len {
                slot.leaf = replacement;
                if slot.leaf.is_none() && slot.child.is_none() {
                    self.remove_slot(s);
                }
            }
        }
    }
}

/// A set of prefixes, each negated or not, with longest-prefix lookup.
/// Cloning is one reference count; see the module doc.
#[derive(Clone, Debug)]
pub struct Lpm {
    /// The `/0` prefix.
    default: Leaf,
    root: Arc<Node>,
}

impl Default for Lpm {
    fn default() -> Self {
        Lpm {
            default: Leaf::NONE,
            root: Arc::new(Node::new(0, 0)),
        }
    }
}

/// The depth of the node that stores prefixes of `len` bits (`len >= 1`).
#[inline]
fn home_depth(len: u8) -> u8 {
    (len.clamp(1, 128) - 1) / 8 * 8
}

impl Lpm {
    /// An empty set.
    pub fn new() -> Lpm {
        Lpm::default()
    }

    /// The longest stored prefix containing `key`, or [`Leaf::NONE`].
    #[inline]
    pub fn lookup(&self, key: u128) -> Leaf {
        let mut best = self.default;
        let mut node: &Node = &self.root;
        // Depth grows by at least 8 per step: at most 16 nodes.
        for _ in 0..16 {
            if !node.on_path(key) {
                break;
            }
            let Some(i) = node.find(byte_at(key, node.depth)) else {
                break;
            };
            let Some(slot) = node.slots.get(i) else { break };
            if !slot.leaf.is_none() {
                best = slot.leaf;
            }
            match &slot.child {
                Some(c) => node = c,
                None => break,
            }
        }
        best
    }

    /// Adds the prefix `net/len` (host bits are ignored) or replaces its
    /// leaf. `leaf` should say `len`; [`Lpm::lookup`] returns it.
    pub fn insert(&mut self, net: u128, len: u8, leaf: Leaf) {
        let len = len.min(128);
        let net = net & top_mask(len);
        if len == 0 {
            self.default = leaf;
            return;
        }
        insert_at(&mut self.root, net, len, home_depth(len), leaf);
    }

    /// Removes the prefix `net/len`. `replacement(d)` must give the longest
    /// other stored prefix covering `net/len` whose length is above `d`
    /// and below `len`, or [`Leaf::NONE`] (the caller keeps the list of
    /// prefixes; the trie only knows the winners). Removing a prefix that
    /// is not stored changes nothing.
    pub fn remove(&mut self, net: u128, len: u8, replacement: impl Fn(u8) -> Leaf) {
        let len = len.min(128);
        let net = net & top_mask(len);
        if len == 0 {
            self.default = Leaf::NONE;
            return;
        }
        let td = home_depth(len);
        remove_at(&mut self.root, net, len, td, &replacement(td));
    }

    /// Nodes in the trie (for sizing reports).
    pub fn node_count(&self) -> usize {
        fn count(n: &Node) -> usize {
            1 + n
                .slots
                .iter()
                .filter_map(|s| s.child.as_deref())
                .map(count)
                .sum::<usize>()
        }
        count(&self.root)
    }

    /// Approximate heap bytes of the trie (nodes and slot arrays).
    pub fn memory_bytes(&self) -> usize {
        fn bytes(n: &Node) -> usize {
            std::mem::size_of::<Node>()
                + 2 * std::mem::size_of::<usize>()
                + n.slots.capacity() * std::mem::size_of::<Slot>()
                + n.slots
                    .iter()
                    .filter_map(|s| s.child.as_deref())
                    .map(bytes)
                    .sum::<usize>()
        }
        bytes(&self.root)
    }
}

fn insert_at(node: &mut Arc<Node>, net: u128, len: u8, td: u8, leaf: Leaf) {
    let n = Arc::make_mut(node);
    if n.depth == td {
        n.fill(net, len, leaf);
        return;
    }
    let depth = n.depth;
    let slot = n.slot_mut(byte_at(net, depth));
    let Some(c) = slot.child.as_mut() else {
        let mut c = Node::new(td, net);
        c.fill(net, len, leaf);
        slot.child = Some(Arc::new(c));
        return;
    };
    let cd = c.depth;
    let limit = u32::from(cd.min(td));
    let common = (c.prefix ^ net).leading_zeros();
    if cd <= td && common >= u32::from(cd) {
        insert_at(c, net, len, td, leaf);
        return;
    }
    // The paths part before the child's depth (or the prefix's home comes
    // first): a new node where they part takes both. Both agree on the
    // slot byte of this node, so the new depth is below this node's.
    let nd = (common.min(limit) / 8 * 8) as u8;
    let mut m = Node::new(nd, net);
    let old_byte = byte_at(c.prefix, nd);
    let old = slot.child.take();
    m.slot_mut(old_byte).child = old;
    if nd == td {
        m.fill(net, len, leaf);
    } else {
        let mut home = Node::new(td, net);
        home.fill(net, len, leaf);
        m.slot_mut(byte_at(net, nd)).child = Some(Arc::new(home));
    }
    slot.child = Some(Arc::new(m));
}

fn remove_at(node: &mut Arc<Node>, net: u128, len: u8, td: u8, replacement: &Leaf) {
    if !node.on_path(net) || node.depth > td {
        return;
    }
    let n = Arc::make_mut(node);
    if n.depth == td {
        n.unfill(net, len, *replacement);
        return;
    }
    let s = byte_at(net, n.depth);
    let Some(i) = n.find(s) else { return };
    let slot = &mut n.slots[i];
    if let Some(c) = slot.child.as_mut() {
        remove_at(c, net, len, td, replacement);
        if c.slots.is_empty() {
            slot.child = None;
        } else if c.slots.len() == 1 && c.slots[0].leaf.is_none() {
            // Only a pass-through: the grandchild takes its place.
            slot.child = c.slots[0].child.clone();
        }
    }
    if slot.leaf.is_none() && slot.child.is_none() {
        n.remove_slot(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v4(a: [u8; 4]) -> u128 {
        u128::from(u32::from_be_bytes(a)) << 96
    }

    /// The naive reference: the longest matching prefix by scanning.
    fn naive(prefixes: &[(u128, u8, bool)], key: u128) -> Leaf {
        prefixes
            .iter()
            .filter(|(net, len, _)| key & top_mask(*len) == *net)
            .max_by_key(|(_, len, _)| *len)
            .map_or(Leaf::NONE, |(_, len, neg)| Leaf::new(*len, *neg))
    }

    /// The replacement a table gives [`Lpm::remove`].
    fn replacement_in(prefixes: &[(u128, u8, bool)], net: u128, len: u8, d: u8) -> Leaf {
        prefixes
            .iter()
            .filter(|(n, l, _)| *l > d && *l < len && net & top_mask(*l) == *n)
            .max_by_key(|(_, l, _)| *l)
            .map_or(Leaf::NONE, |(_, l, neg)| Leaf::new(*l, *neg))
    }

    #[test]
    fn leaf_packing() {
        for len in 0..=128u8 {
            for neg in [false, true] {
                let l = Leaf::new(len, neg);
                assert!(!l.is_none());
                assert_eq!((l.prefix_len(), l.negated(), l.matches()), (len, neg, !neg));
            }
        }
        assert!(Leaf::NONE.is_none() && !Leaf::NONE.matches() && !Leaf::NONE.negated());
    }

    #[test]
    fn longest_prefix_wins_and_removal_restores_the_shorter() {
        let mut t = Lpm::new();
        t.insert(v4([10, 0, 0, 0]), 8, Leaf::new(8, false));
        t.insert(v4([10, 1, 0, 0]), 16, Leaf::new(16, true));
        t.insert(v4([10, 1, 2, 0]), 24, Leaf::new(24, false));
        t.insert(v4([10, 1, 2, 3]), 32, Leaf::new(32, true));
        t.insert(v4([10, 1, 2, 128]), 25, Leaf::new(25, true));
        assert_eq!(t.lookup(v4([10, 9, 9, 9])), Leaf::new(8, false));
        assert_eq!(t.lookup(v4([10, 1, 9, 9])), Leaf::new(16, true));
        assert_eq!(t.lookup(v4([10, 1, 2, 9])), Leaf::new(24, false));
        assert_eq!(t.lookup(v4([10, 1, 2, 3])), Leaf::new(32, true));
        assert_eq!(t.lookup(v4([10, 1, 2, 200])), Leaf::new(25, true));
        assert_eq!(t.lookup(v4([11, 0, 0, 1])), Leaf::NONE);
        let before = t.clone();
        t.remove(v4([10, 1, 2, 0]), 24, |_| Leaf::NONE);
        // The /16 lives in another node: it still decides there.
        assert_eq!(t.lookup(v4([10, 1, 2, 9])), Leaf::new(16, true));
        assert_eq!(t.lookup(v4([10, 1, 2, 200])), Leaf::new(25, true));
        // The clone taken before the change is untouched (path copying).
        assert_eq!(before.lookup(v4([10, 1, 2, 9])), Leaf::new(24, false));
        t.remove(v4([10, 1, 2, 128]), 25, |_| Leaf::NONE);
        t.remove(v4([10, 1, 2, 3]), 32, |_| Leaf::NONE);
        t.remove(v4([10, 1, 0, 0]), 16, |_| Leaf::NONE);
        assert_eq!(t.lookup(v4([10, 1, 2, 3])), Leaf::new(8, false));
        t.remove(v4([10, 0, 0, 0]), 8, |_| Leaf::NONE);
        assert_eq!(t.lookup(v4([10, 1, 2, 3])), Leaf::NONE);
        assert_eq!(t.node_count(), 1, "empty nodes are pruned");
    }

    #[test]
    fn default_route_and_full_length_keys() {
        let mut t = Lpm::new();
        t.insert(0, 0, Leaf::new(0, false));
        t.insert(u128::MAX, 128, Leaf::new(128, true));
        assert_eq!(t.lookup(12345), Leaf::new(0, false));
        assert_eq!(t.lookup(u128::MAX), Leaf::new(128, true));
        assert_eq!(t.lookup(u128::MAX - 1), Leaf::new(0, false));
        t.remove(0, 0, |_| Leaf::NONE);
        assert_eq!(t.lookup(12345), Leaf::NONE);
    }

    #[test]
    fn compressed_paths_split_where_they_part() {
        let mut t = Lpm::new();
        // Two /128s sharing 100 bits, then one sharing only 20 with them,
        // then a /64 above the first two: each insert splits a path.
        let a = 0x2001_0db8_0000_0000_0000_0000_0000_0001u128;
        let b = a ^ (1 << 20);
        let c = a ^ (1 << 107);
        t.insert(a, 128, Leaf::new(128, false));
        t.insert(b, 128, Leaf::new(128, true));
        t.insert(c, 128, Leaf::new(128, false));
        t.insert(a, 64, Leaf::new(64, false));
        assert_eq!(t.lookup(a), Leaf::new(128, false));
        assert_eq!(t.lookup(b), Leaf::new(128, true));
        assert_eq!(t.lookup(c), Leaf::new(128, false));
        assert_eq!(t.lookup(a ^ 2), Leaf::new(64, false));
        assert_eq!(t.lookup(c ^ 2), Leaf::NONE);
        // Removing b leaves a pass-through node above a: it is collapsed
        // and a is still found.
        let nodes = t.node_count();
        t.remove(b, 128, |_| Leaf::NONE);
        assert_eq!(t.node_count(), nodes - 2);
        assert_eq!(t.lookup(a), Leaf::new(128, false));
        assert_eq!(t.lookup(b), Leaf::new(64, false));
    }

    /// A prefix from raw bits: keys are clustered so that prefixes
    /// overlap and nest often.
    fn prefix_of(
        (bits, len, neg, cluster): (u128, u8, bool, u8),
        v4_only: bool,
    ) -> (u128, u8, bool) {
        let (key, len) = if v4_only {
            let k32 = u128::from(cluster) << 30 | (bits & 0x3fff_ffff);
            (k32 << 96, len % 33)
        } else {
            (
                0x2001_0db8u128 << 96 | u128::from(cluster) << 94 | bits >> 34,
                len,
            )
        };
        (key & top_mask(len), len, neg)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn agrees_with_a_naive_scan_through_inserts_and_removals(
            v4_only in any::<bool>(),
            raw in prop::collection::vec((any::<u128>(), 0u8..=128, any::<bool>(), 0u8..4), 1..60),
            removes in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
            probes in prop::collection::vec(any::<u128>(), 40),
        ) {
            let adds: Vec<(u128, u8, bool)> = raw.into_iter().map(|r| prefix_of(r, v4_only)).collect();
            // One entry per (net, len): the last insert wins.
            let mut set: Vec<(u128, u8, bool)> = Vec::new();
            let mut t = Lpm::new();
            for &(net, len, neg) in &adds {
                set.retain(|e| (e.0, e.1) != (net, len));
                set.push((net, len, neg));
                t.insert(net, len, Leaf::new(len, neg));
            }
            let snapshot = t.clone();
            let before = set.clone();
            for r in &removes {
                if set.is_empty() { break; }
                let (net, len, _) = set.remove(r.index(set.len()));
                t.remove(net, len, |d| replacement_in(&set, net, len, d));
            }
            // Probe near every prefix and at random.
            let mut keys: Vec<u128> = probes
                .iter()
                .map(|&p| if v4_only { (p >> 96) << 96 } else { p })
                .collect();
            for &(net, len, _) in &before {
                keys.push(net);
                keys.push(net | !top_mask(len));
                keys.push(net ^ 1);
            }
            for k in keys {
                prop_assert_eq!(t.lookup(k), naive(&set, k), "key {:032x}", k);
                prop_assert_eq!(snapshot.lookup(k), naive(&before, k), "snapshot key {:032x}", k);
            }
            if set.is_empty() {
                prop_assert_eq!(t.node_count(), 1);
            }
        }
    }
}
