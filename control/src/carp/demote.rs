//! CARP demotion counters (`spec/carp.md` §4.8).
//!
//! [`Demotion`] owns the per-interface-group counters (`ifg_carp_demoted`):
//! the administrative `carpdemote` adjustments (`-g group carpdemote N` /
//! `-carpdemote N`, results bounded to 0..=255), the automatic adjustments
//! of `group_demote_adj` (floored at 0), and the advertised value of a carp
//! interface (sum over its groups, its own counter if that sum is 0, capped
//! at 255). [`SendErrors`] tracks the consecutive advertisement send errors
//! that demote by one (§4.8 table).
//!
//! Invariants: counters never go below 0; each adjusting call reports
//! whether MASTERs must advertise at once, which the caller forwards as
//! `fsm::Event::DemoteChanged { advertise_now }`. Group maps are only
//! touched on the control path (they allocate group names).

use std::collections::BTreeMap;

/// Largest advertised demote (§2.1) and largest administrative value.
pub const MAX_DEMOTE: u32 = 255;
/// The group every carp interface (and pfsync) belongs to (§4.8).
pub const CARP_GROUP: &str = "carp";
/// The group automatic adjustments skip (§4.8).
pub const ALL_GROUP: &str = "all";

/// Errors of administrative demotion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DemoteError {
    /// No such interface group.
    #[error("no such interface group: {0}")]
    NoSuchGroup(String),
    /// The result would leave 0..=255 (the kernel's ERANGE).
    #[error("carpdemote of group {group} would become {value}, outside 0..=255")]
    OutOfRange {
        /// The group.
        group: String,
        /// The rejected result.
        value: i64,
    },
}

/// Interface-group demotion counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demotion {
    groups: BTreeMap<String, u32>,
}

impl Demotion {
    /// No groups.
    pub fn new() -> Demotion {
        Demotion::default()
    }

    /// Makes `group` known (counter 0) if it is not.
    pub fn add_group(&mut self, group: &str) {
        if !self.groups.contains_key(group) {
            self.groups.insert(group.to_owned(), 0);
        }
    }

    /// The counter of `group` (0 if unknown), as `ifconfig -g` shows it.
    pub fn group(&self, group: &str) -> u32 {
        self.groups.get(group).copied().unwrap_or(0)
    }

    /// Iterates `(group, counter)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.groups.iter().map(|(g, c)| (g.as_str(), *c))
    }

    /// `ifconfig -g group carpdemote N` (positive `delta`) or
    /// `-carpdemote N` (negative): rejects results outside 0..=255.
    /// Returns `advertise_now`: true when `delta > 0` (every running member
    /// carp interface advertises immediately, §4.8).
    pub fn carpdemote(&mut self, group: &str, delta: i32) -> Result<bool, DemoteError> {
        let cur = self
            .groups
            .get_mut(group)
            .ok_or_else(|| DemoteError::NoSuchGroup(group.to_owned()))?;
        let value = i64::from(*cur) + i64::from(delta);
        if !(0..=i64::from(MAX_DEMOTE)).contains(&value) {
            return Err(DemoteError::OutOfRange {
                group: group.to_owned(),
                value,
            });
        }
        // In 0..=255 after the check above.
        *cur = value as u32;
        Ok(delta > 0)
    }

    /// `carp_group_demote_adj`: adjusts the carp interface's own counter
    /// (if given) and every group in `member_of` except `all`, each floored
    /// at 0, calling `on_change(group, new_value)` for each group (logged at
    /// LOG_ERR by the caller). Returns `advertise_now`: `adj > 0` and some
    /// group went from 0 to exactly 1.
    pub fn adjust<'g>(
        &mut self,
        member_of: impl IntoIterator<Item = &'g str>,
        own: Option<&mut u32>,
        adj: i32,
        mut on_change: impl FnMut(&str, u32),
    ) -> bool {
        if let Some(own) = own {
            *own = apply(*own, adj);
        }
        let mut advertise_now = false;
        for g in member_of {
            if g == ALL_GROUP {
                continue;
            }
            self.add_group(g);
            if let Some(cur) = self.groups.get_mut(g) {
                *cur = apply(*cur, adj);
                if adj > 0 && *cur == 1 {
                    advertise_now = true;
                }
                on_change(g, *cur);
            }
        }
        advertise_now
    }

    /// A carp interface joins `group`, carrying its own counter into it.
    pub fn join(&mut self, group: &str, own: u32) {
        self.add_group(group);
        if let Some(cur) = self.groups.get_mut(group) {
            *cur = cur.saturating_add(own);
        }
    }

    /// A carp interface leaves `group`, taking its own counter out of it.
    pub fn leave(&mut self, group: &str, own: u32) {
        if let Some(cur) = self.groups.get_mut(group) {
            *cur = cur.saturating_sub(own);
        }
    }

    /// The demote byte a carp interface advertises: the sum of its groups'
    /// counters, or its own counter if that sum is 0, capped at 255.
    pub fn advertised<'g>(&self, member_of: impl IntoIterator<Item = &'g str>, own: u32) -> u8 {
        let sum: u64 = member_of
            .into_iter()
            .map(|g| u64::from(self.group(g)))
            .sum();
        let value = if sum == 0 { u64::from(own) } else { sum };
        // Capped to 255 first.
        value.min(u64::from(MAX_DEMOTE)) as u8
    }
}

fn apply(cur: u32, adj: i32) -> u32 {
    if adj >= 0 {
        cur.saturating_add(adj.unsigned_abs())
    } else {
        cur.saturating_sub(adj.unsigned_abs())
    }
}

/// Consecutive advertisement send errors of one carp interface (§4.8):
/// `3 × VHIDs` errors in a row demote by 1; afterwards `3 × VHIDs`
/// successes in a row undo it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendErrors {
    errors: u32,
    successes: u32,
    demoted: bool,
}

impl SendErrors {
    /// Records one send; returns the demotion adjustment to apply
    /// (`+1` "> snderrors", `-1` "< snderrors", or 0).
    pub fn record(&mut self, ok: bool, num_vhids: u32) -> i32 {
        let limit = num_vhids.max(1).saturating_mul(3);
        if !ok {
            self.successes = 0;
            self.errors = self.errors.saturating_add(1);
            if !self.demoted && self.errors >= limit {
                self.demoted = true;
                return 1;
            }
            0
        } else if self.demoted {
            self.successes += 1;
            if self.successes >= limit {
                *self = SendErrors::default();
                return -1;
            }
            0
        } else {
            self.errors = 0;
            0
        }
    }

    /// The interface is currently demoted for send errors.
    pub fn demoted(&self) -> bool {
        self.demoted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faq_internal_group_failover_and_back() {
        let mut d = Demotion::new();
        d.join(CARP_GROUP, 0);
        d.join("internal", 0);
        let carp1 = [CARP_GROUP, "internal"];
        let carp3 = [CARP_GROUP];
        assert_eq!(d.group("internal"), 0);
        assert!(
            d.carpdemote("internal", 50).unwrap(),
            "positive delta advertises now"
        );
        assert_eq!(d.group("internal"), 50);
        assert_eq!(d.advertised(carp1, 0), 50);
        assert_eq!(d.advertised(carp3, 0), 0);
        assert!(!d.carpdemote("internal", -50).unwrap());
        assert_eq!(d.advertised(carp1, 0), 0);
    }

    #[test]
    fn carpdemote_bounds() {
        let mut d = Demotion::new();
        d.add_group("g");
        assert_eq!(
            d.carpdemote("g", -1),
            Err(DemoteError::OutOfRange {
                group: "g".into(),
                value: -1
            })
        );
        d.carpdemote("g", 255).unwrap();
        assert!(matches!(
            d.carpdemote("g", 1),
            Err(DemoteError::OutOfRange { value: 256, .. })
        ));
        assert_eq!(d.group("g"), 255);
        assert_eq!(
            d.carpdemote("nope", 1),
            Err(DemoteError::NoSuchGroup("nope".into()))
        );
    }

    #[test]
    fn sum_over_groups_capped_and_own_fallback() {
        let mut d = Demotion::new();
        d.add_group("a");
        d.add_group("b");
        d.carpdemote("a", 200).unwrap();
        d.carpdemote("b", 100).unwrap();
        assert_eq!(d.advertised(["a", "b"], 0), 255);
        assert_eq!(d.advertised(["b"], 7), 100);
        assert_eq!(
            d.advertised(["c"], 7),
            7,
            "own counter when the group sum is 0"
        );
        assert_eq!(d.advertised(["c"], 999), 255);
    }

    #[test]
    fn automatic_adjustments() {
        let mut d = Demotion::new();
        let mut own = 0u32;
        let mut log = Vec::new();
        // Parent link down: +1 on every group but "all"; 0 → 1 advertises now.
        let now = d.adjust([CARP_GROUP, ALL_GROUP, "lan"], Some(&mut own), 1, |g, v| {
            log.push((g.to_owned(), v))
        });
        assert!(now);
        assert_eq!(own, 1);
        assert_eq!(d.group(CARP_GROUP), 1);
        assert_eq!(d.group(ALL_GROUP), 0);
        assert_eq!(log, vec![("carp".to_owned(), 1), ("lan".to_owned(), 1)]);
        // pfsync bulk +32 on top: no 0 → 1 transition, no immediate advert.
        assert!(!d.adjust([CARP_GROUP], None, 32, |_, _| {}));
        assert_eq!(d.group(CARP_GROUP), 33);
        // Decrements floor at 0.
        assert!(!d.adjust([CARP_GROUP], Some(&mut own), -40, |_, _| {}));
        assert_eq!((d.group(CARP_GROUP), own), (0, 0));
        // Leaving a group takes the interface's own counter out.
        d.join("x", 5);
        d.leave("x", 3);
        assert_eq!(d.group("x"), 2);
        assert_eq!(d.iter().count(), 3, "\"all\" is never created");
    }

    #[test]
    fn send_errors_demote_and_recover() {
        let mut s = SendErrors::default();
        // One VHID: 3 errors demote once.
        assert_eq!(s.record(false, 1), 0);
        assert_eq!(s.record(false, 1), 0);
        assert_eq!(s.record(false, 1), 1);
        assert!(s.demoted());
        assert_eq!(s.record(false, 1), 0, "only once");
        // Then 3 successes undo it; a failure in between restarts the count.
        assert_eq!(s.record(true, 1), 0);
        assert_eq!(s.record(false, 1), 0);
        assert_eq!(s.record(true, 1), 0);
        assert_eq!(s.record(true, 1), 0);
        assert_eq!(s.record(true, 1), -1);
        assert!(!s.demoted());
        // A success below the threshold resets the error run.
        assert_eq!(s.record(false, 2), 0);
        assert_eq!(s.record(true, 2), 0);
        for _ in 0..5 {
            assert_eq!(s.record(false, 2), 0);
        }
        assert_eq!(s.record(false, 2), 1);
    }
}
