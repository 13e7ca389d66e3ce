//! Cross-worker aliases of translated states.
//!
//! A flow belongs to the worker its key hashes to. A translated state has
//! two keys (the ingress and the egress side), and for `rdr-to`,
//! `binat-to` inbound or `static-port` the egress key may hash to another
//! worker than the one holding the state (`nat-to` picks ports that stay).
//! That worker keeps an alias — "packets with this key belong to worker
//! W" — and hands such packets to W, which finds the state by its far key.
//! The holder adds and removes its aliases with [`AliasMsg`]s over SPSC
//! rings (one per ordered pair of workers), so every table has a single
//! writer.
//!
//! [`AliasTable`]: open addressing with linear probing and backward-shift
//! deletion, a fixed capacity allocated once (at most half full); keys are
//! placed by the keyed flow hash, so they cannot be aimed.
//!
//! Invariants: a key is in a table at most once; an insert into a table at
//! its limit fails (counted by the caller) rather than growing.

use crate::flow::FlowKey;

/// A message from the worker holding a translated state to the worker
/// owning its far key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AliasMsg {
    /// Packets with `key` belong to worker `owner`.
    Add {
        /// The far key.
        key: FlowKey,
        /// The worker holding the state.
        owner: u16,
    },
    /// The state is gone: forget `key` (if it still names `owner`).
    Remove {
        /// The far key.
        key: FlowKey,
        /// The worker that held the state.
        owner: u16,
    },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: FlowKey,
    owner: u16,
    used: bool,
}

const VACANT: Entry = Entry {
    key: FlowKey {
        addr: [crate::flow::Addr::ZERO; 2],
        port: [0; 2],
        rdomain: 0,
        af: 0,
        proto: 0,
    },
    owner: 0,
    used: false,
};

/// One worker's aliases (see the module documentation).
#[derive(Debug)]
pub struct AliasTable {
    slots: Box<[Entry]>,
    mask: usize,
    len: usize,
    limit: usize,
}

impl AliasTable {
    /// A table for up to `capacity` aliases (twice as many slots).
    pub fn new(capacity: usize) -> AliasTable {
        let slots = (capacity.max(1) * 2).next_power_of_two();
        AliasTable {
            slots: vec![VACANT; slots].into_boxed_slice(),
            mask: slots - 1,
            len: 0,
            limit: capacity.max(1),
        }
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        (hash >> 7) as usize & self.mask
    }

    /// The worker `key` belongs to, if aliased; `hash` is its
    /// [`FlowKey::symmetric_hash`].
    #[inline]
    pub fn get(&self, key: &FlowKey, hash: u64) -> Option<u16> {
        let mut i = self.home(hash);
        loop {
            let e = &self.slots[i];
            if !e.used {
                return None;
            }
            if e.key == *key {
                return Some(e.owner);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Adds (or re-points) `key -> owner`; false when the table is at its
    /// limit.
    pub fn insert(&mut self, key: FlowKey, hash: u64, owner: u16) -> bool {
        let mut i = self.home(hash);
        loop {
            let e = &mut self.slots[i];
            if !e.used {
                if self.len >= self.limit {
                    return false;
                }
                *e = Entry {
                    key,
                    owner,
                    used: true,
                };
                self.len += 1;
                return true;
            }
            if e.key == key {
                e.owner = owner;
                return true;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `key` if it names `owner` (a newer alias of the same key
    /// stays); whether it was removed.
    pub fn remove(&mut self, key: &FlowKey, hash: u64, owner: u16) -> bool {
        let mut i = self.home(hash);
        loop {
            let e = &self.slots[i];
            if !e.used {
                return false;
            }
            if e.key == *key {
                if e.owner != owner {
                    return false;
                }
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward shift: move later entries of the run into the hole when
        // their home does not lie cyclically in (hole, j].
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        loop {
            let e = self.slots[j];
            if !e.used {
                break;
            }
            let h = self.home(e.key.symmetric_hash());
            let dist_home = j.wrapping_sub(h) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                self.slots[hole] = e;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.slots[hole] = VACANT;
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{proto, Addr, Af};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(n: u32) -> FlowKey {
        FlowKey::from_packet(
            Af::Inet,
            proto::TCP,
            Addr::v4([10, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
            (n % 50_000) as u16,
            Addr::v4([192, 0, 2, 1]),
            80,
        )
        .0
    }

    #[test]
    fn limit_is_enforced_and_re_pointing_is_not_an_insert() {
        let mut t = AliasTable::new(4);
        for n in 0..4 {
            let k = key(n);
            assert!(t.insert(k, k.symmetric_hash(), 1));
        }
        let k = key(9);
        assert!(!t.insert(k, k.symmetric_hash(), 1), "at its limit");
        let k0 = key(0);
        assert!(t.insert(k0, k0.symmetric_hash(), 3));
        assert_eq!(t.get(&k0, k0.symmetric_hash()), Some(3));
        assert!(
            !t.remove(&k0, k0.symmetric_hash(), 1),
            "names another owner now"
        );
        assert!(t.remove(&k0, k0.symmetric_hash(), 3));
        assert_eq!(t.len(), 3);
    }

    proptest! {
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u32..300, 0u8..3, 0u16..4), 1..2000)) {
            let mut t = AliasTable::new(256);
            let mut m: HashMap<u32, u16> = HashMap::new();
            for (n, op, owner) in ops {
                let k = key(n);
                let h = k.symmetric_hash();
                match op {
                    0 | 1 => {
                        let ok = t.insert(k, h, owner);
                        if m.contains_key(&n) || m.len() < 256 {
                            prop_assert!(ok);
                            m.insert(n, owner);
                        } else {
                            prop_assert!(!ok);
                        }
                    }
                    _ => {
                        let expect = m.get(&n) == Some(&owner);
                        prop_assert_eq!(t.remove(&k, h, owner), expect);
                        if expect {
                            m.remove(&n);
                        }
                    }
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for n in 0..300u32 {
                let k = key(n);
                prop_assert_eq!(t.get(&k, k.symmetric_hash()), m.get(&n).copied());
            }
        }
    }
}
