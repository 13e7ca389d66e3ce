//! The RFC 2544 §26.1 throughput search as a pure state machine: offer the
//! maximum rate first; while the last trial lost frames, bisect between the
//! highest rate that passed and the lowest that failed, until the two are
//! within `resolution` of each other, or the trials run out. The result is
//! the highest rate that passed (RFC 2544: "the fastest rate at which the
//! count of test frames transmitted by the DUT is equal to the number of
//! test frames sent to it").

/// Where the search stands.
#[derive(Clone, Debug)]
pub struct Search {
    min_pps: u64,
    max_pps: u64,
    resolution: f64,
    max_trials: usize,
    trials: usize,
    passed: Option<u64>,
    failed: Option<u64>,
    /// Every (rate, passed) so far.
    history: Vec<(u64, bool)>,
}

impl Search {
    /// A search over `min_pps..=max_pps` that stops when the bracket is
    /// narrower than `resolution` (a fraction of the failing rate) or after
    /// `max_trials` trials.
    pub fn new(min_pps: u64, max_pps: u64, resolution: f64, max_trials: usize) -> Search {
        let min_pps = min_pps.max(1);
        Search {
            min_pps,
            max_pps: max_pps.max(min_pps),
            resolution: if resolution.is_finite() {
                resolution.clamp(0.0, 1.0)
            } else {
                0.01
            },
            max_trials,
            trials: 0,
            passed: None,
            failed: None,
            history: Vec::new(),
        }
    }

    /// The rate of the next trial, or `None` when the search is over.
    pub fn next_rate(&self) -> Option<u64> {
        if self.trials >= self.max_trials {
            return None;
        }
        let Some(hi) = self.failed else {
            // Nothing failed above the best pass: try the maximum unless
            // it passed.
            return (self.passed != Some(self.max_pps)).then_some(self.max_pps);
        };
        match self.passed {
            None if hi <= self.min_pps => None,
            None => {
                let mid = hi / 2;
                Some(mid.max(self.min_pps))
            }
            Some(lo) => {
                let width = hi.saturating_sub(lo) as f64;
                if width <= (self.resolution * hi as f64).max(1.0) {
                    return None;
                }
                Some(lo + (hi - lo) / 2)
            }
        }
    }

    /// Records a trial's outcome at `rate_pps`.
    pub fn record(&mut self, rate_pps: u64, passed: bool) {
        self.trials += 1;
        self.history.push((rate_pps, passed));
        // The bracket: the highest pass below the lowest failure. Noise can
        // make a rate pass above one that failed (or fail below one that
        // passed); the later trial is trusted, and the bracket is rebuilt
        // from the outcomes on the far side of it.
        if passed {
            self.passed = Some(rate_pps);
            self.failed = self
                .history
                .iter()
                .filter(|&&(r, ok)| !ok && r > rate_pps)
                .map(|&(r, _)| r)
                .min();
            if let Some(p) = self
                .history
                .iter()
                .filter(|&&(r, ok)| ok && r > rate_pps && !matches!(self.failed, Some(f) if r >= f))
                .map(|&(r, _)| r)
                .max()
            {
                self.passed = Some(p);
            }
        } else {
            self.failed = Some(rate_pps);
            self.passed = self
                .history
                .iter()
                .filter(|&&(r, ok)| ok && r < rate_pps)
                .map(|&(r, _)| r)
                .max();
            if let Some(f) = self
                .history
                .iter()
                .filter(|&&(r, ok)| {
                    !ok && r < rate_pps && !matches!(self.passed, Some(p) if r <= p)
                })
                .map(|&(r, _)| r)
                .min()
            {
                self.failed = Some(f);
            }
        }
    }

    /// The highest rate that passed, if any.
    pub fn result(&self) -> Option<u64> {
        self.passed
    }

    /// Trials run.
    pub fn trials(&self) -> usize {
        self.trials
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn search(threshold: u64, min: u64, max: u64, res: f64) -> (Option<u64>, Vec<u64>) {
        let mut s = Search::new(min, max, res, 40);
        let mut rates = Vec::new();
        while let Some(r) = s.next_rate() {
            rates.push(r);
            s.record(r, r <= threshold);
        }
        (s.result(), rates)
    }

    #[test]
    fn maximum_first_then_bisection() {
        let (best, rates) = search(10_000_000, 1000, 5_000_000, 0.01);
        assert_eq!((best, rates), (Some(5_000_000), vec![5_000_000]));
        let (best, rates) = search(3_000_000, 1000, 4_000_000, 0.05);
        assert_eq!(&rates[..3], &[4_000_000, 2_000_000, 3_000_000]);
        assert_eq!(best, Some(3_000_000));
        // Nothing passes: the minimum is tried, then the search gives up.
        let (best, rates) = search(10, 1000, 4000, 0.01);
        assert_eq!(best, None);
        assert_eq!(rates, [4000, 2000, 1000]);
        // Trials run out.
        let mut s = Search::new(1, 1 << 30, 0.0, 3);
        for _ in 0..3 {
            let r = s.next_rate().unwrap();
            s.record(r, false);
        }
        assert_eq!((s.next_rate(), s.trials()), (None, 3));
    }

    #[test]
    fn a_noisy_pass_above_a_failure_moves_the_bracket() {
        let mut s = Search::new(1, 1000, 0.01, 20);
        s.record(1000, false);
        s.record(500, true);
        s.record(750, false);
        // Noise: 800 passes after 750 failed; 1000 still failed.
        s.record(800, true);
        assert_eq!(s.result(), Some(800));
        assert_eq!(s.next_rate(), Some(900));
        // And 600 fails below the 800 that passed: 500 passed before it.
        s.record(600, false);
        assert_eq!(s.result(), Some(500));
        assert_eq!(s.next_rate(), Some(550));
    }

    proptest! {
        /// With a clean threshold the result is the threshold within the
        /// resolution, never above it.
        #[test]
        fn converges_below_the_threshold(
            threshold in 1000u64..10_000_000, max in 10_000_000u64..20_000_000,
        ) {
            let (best, rates) = search(threshold, 1000, max, 0.01);
            let best = best.unwrap();
            prop_assert!(best <= threshold);
            prop_assert!(best as f64 >= threshold as f64 * 0.98 - 1.0, "{best} {threshold}");
            prop_assert!(rates.len() <= 30);
        }
    }
}
