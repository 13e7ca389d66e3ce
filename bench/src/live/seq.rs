//! Sequence accounting of one trial at the receiver: packets received,
//! unique, duplicated, reordered, and (at the end) lost, from the sequence
//! numbers the sender stamped (0, 1, 2, ... in transmission order).
//!
//! A bitmap of the last [`WINDOW`] sequence numbers tells a late packet
//! (reordered: it fills a gap) from a second copy (duplicate). A packet
//! more than `WINDOW` behind the highest seen cannot be told apart and is
//! counted as `too_late` (and as unique, so it never inflates the loss).
//! Nothing allocates after [`SeqTracker::new`]: it runs in the receive loop.

/// Sequence numbers remembered behind the highest one seen.
pub const WINDOW: u64 = 1 << 16;
const WORDS: usize = (WINDOW / 64) as usize;

/// Counts of one trial.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeqCounts {
    /// Stamped packets of this trial received (copies included).
    pub received: u64,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Second and later copies of a sequence number.
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Reordered packets too far behind to check for duplication.
    pub too_late: u64,
    /// Sequence numbers at or above what was sent (corrupt stamps).
    pub invalid: u64,
}

impl SeqCounts {
    /// Packets sent but never received.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.unique)
    }
}

/// The receiver's state for one trial.
pub struct SeqTracker {
    /// One past the highest sequence number seen.
    next: u64,
    seen: Box<[u64; WORDS]>,
    counts: SeqCounts,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    /// A tracker for a new trial.
    pub fn new() -> SeqTracker {
        SeqTracker {
            next: 0,
            seen: Box::new([0; WORDS]),
            counts: SeqCounts::default(),
        }
    }

    /// Forgets everything (a new trial).
    pub fn reset(&mut self) {
        self.next = 0;
        self.seen.fill(0);
        self.counts = SeqCounts::default();
    }

    fn bit(seq: u64) -> (usize, u64) {
        let slot = seq % WINDOW;
        ((slot / 64) as usize, 1u64 << (slot % 64))
    }

    /// Accounts a received packet with sequence number `seq`, when `sent`
    /// packets of the trial have been sent so far.
    pub fn record(&mut self, seq: u64, sent: u64) {
        if seq >= sent {
            self.counts.invalid += 1;
            return;
        }
        self.counts.received += 1;
        if seq >= self.next {
            // Clear the slots of the numbers skipped over: they may be
            // reused by numbers WINDOW behind.
            if seq - self.next >= WINDOW {
                self.seen.fill(0);
            } else {
                for s in self.next..seq {
                    let (w, b) = Self::bit(s);
                    self.seen[w] &= !b;
                }
            }
            let (w, b) = Self::bit(seq);
            self.seen[w] |= b;
            self.next = seq + 1;
            self.counts.unique += 1;
            return;
        }
        if self.next - seq > WINDOW {
            self.counts.too_late += 1;
            self.counts.reordered += 1;
            self.counts.unique += 1;
            return;
        }
        let (w, b) = Self::bit(seq);
        if self.seen[w] & b != 0 {
            self.counts.duplicates += 1;
        } else {
            self.seen[w] |= b;
            self.counts.reordered += 1;
            self.counts.unique += 1;
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> SeqCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(seqs: &[u64], sent: u64) -> SeqCounts {
        let mut t = SeqTracker::new();
        for &s in seqs {
            t.record(s, sent);
        }
        t.counts()
    }

    #[test]
    fn in_order_loss_reorder_duplicate() {
        let c = run(&[0, 1, 2, 3], 4);
        assert_eq!((c.received, c.unique, c.lost(4)), (4, 4, 0));
        assert_eq!((c.duplicates, c.reordered), (0, 0));
        // 2 lost.
        let c = run(&[0, 1, 3], 4);
        assert_eq!((c.unique, c.lost(4), c.reordered), (3, 1, 0));
        // 1 arrives after 2: reordered, nothing lost.
        let c = run(&[0, 2, 1, 3], 4);
        assert_eq!(
            (c.unique, c.lost(4), c.reordered, c.duplicates),
            (4, 0, 1, 0)
        );
        // Copies, in order and late.
        let c = run(&[0, 1, 1, 2, 0], 3);
        assert_eq!(
            (c.received, c.unique, c.duplicates, c.lost(3)),
            (5, 3, 2, 0)
        );
        // A stamp beyond what was sent.
        let c = run(&[0, 9], 2);
        assert_eq!((c.invalid, c.received, c.lost(2)), (1, 1, 1));
    }

    #[test]
    fn far_behind_and_wrapped_slots() {
        // A gap bigger than the window clears it; a packet from before it
        // is too late to check.
        let c = run(&[0, WINDOW + 10, 1], WINDOW + 11);
        assert_eq!((c.too_late, c.reordered, c.unique), (1, 1, 3));
        // A slot reused after a wrap does not make a late packet a duplicate.
        let c = run(&[5, WINDOW + 6, WINDOW + 4], WINDOW + 7);
        assert_eq!((c.duplicates, c.reordered), (0, 1));
        let mut t = SeqTracker::new();
        t.record(0, 1);
        t.reset();
        t.record(0, 1);
        assert_eq!(t.counts().duplicates, 0);
    }

    proptest! {
        /// Any delivery of a subset of 0..n, shuffled locally and with
        /// copies, is accounted exactly against a set-based reference.
        #[test]
        fn matches_a_reference(
            n in 1u64..3000,
            keep in prop::collection::vec(any::<bool>(), 3000),
            swaps in prop::collection::vec((0usize..3000, 0usize..40), 0..200),
            copies in prop::collection::vec(0usize..3000, 0..50),
        ) {
            let mut order: Vec<u64> = (0..n).filter(|&s| keep[s as usize]).collect();
            for &(at, by) in &swaps {
                if order.len() > 1 {
                    let a = at % order.len();
                    let b = (a + by).min(order.len() - 1);
                    order.swap(a, b);
                }
            }
            for &c in &copies {
                if !order.is_empty() {
                    let s = order[c % order.len()];
                    order.insert((c * 7) % order.len(), s);
                }
            }
            let c = run(&order, n);
            // Reference.
            let mut seen = std::collections::HashSet::new();
            let (mut dups, mut reord, mut max) = (0u64, 0u64, None::<u64>);
            for &s in &order {
                if !seen.insert(s) {
                    dups += 1;
                } else if max.is_some_and(|m| s < m) {
                    reord += 1;
                }
                max = max.max(Some(s));
            }
            prop_assert_eq!(c.received, order.len() as u64);
            prop_assert_eq!(c.unique, seen.len() as u64);
            prop_assert_eq!(c.duplicates, dups);
            prop_assert_eq!(c.reordered, reord);
            prop_assert_eq!(c.lost(n), n - seen.len() as u64);
            prop_assert_eq!(c.too_late, 0);
        }
    }
}
