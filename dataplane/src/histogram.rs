//! Fixed-size log-linear histograms of `u64` values (HDR-style), for
//! latencies measured on a fast path: recording is an index computation and
//! one add, with no allocation, lock or branch on the value's size.
//!
//! Layout: values below `2^(SUB_BITS+1)` have a bucket each; above that,
//! every power of two `[2^e, 2^(e+1))` is split into `2^SUB_BITS` equal
//! sub-buckets, so a bucket is never wider than `2^-SUB_BITS` of its lower
//! bound (12.5% for [`BurstHistogram`], 3.1% with 5 sub-bucket bits). The
//! bucket of `v` is `(shift << SUB_BITS) + (v >> shift)` with
//! `shift = max(0, floor(log2 v) - SUB_BITS)`, which covers all of `u64` in
//! `(65 - SUB_BITS) << SUB_BITS` buckets.
//!
//! Why not `hdrhistogram` here (the benchmark generator and reports use
//! it): a worker records one value per burst on its fast path and
//! publishes the buckets into fixed arrays of atomics that the control
//! thread sums ([`crate::counters::CounterSlot`]). That needs a layout
//! fixed at compile time, shared by every worker and the reader, and a
//! record that is an index computation and an add — no `Result`, no range
//! check that can fail, no heap buffer whose length is a runtime value.
//!
//! Invariants: `counts` sums to the number of recorded values; `max` is the
//! largest recorded value (0 when empty); `touched` is one past the highest
//! non-zero bucket, so publishing can skip the empty tail.

use serde::{Deserialize, Serialize};

/// A log-linear histogram with `2^SUB_BITS` sub-buckets per power of two
/// and `LEN` buckets, where `LEN` must be `(65 - SUB_BITS) << SUB_BITS`
/// (checked at compile time).
#[derive(Clone)]
pub struct LogHistogram<const SUB_BITS: u32, const LEN: usize> {
    counts: [u64; LEN],
    max: u64,
    touched: usize,
}

/// Per-burst processing cycles of a worker: 8 sub-buckets (≤ 12.5% wide),
/// 496 buckets.
pub type BurstHistogram = LogHistogram<3, 496>;

impl<const SUB_BITS: u32, const LEN: usize> Default for LogHistogram<SUB_BITS, LEN> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SUB_BITS: u32, const LEN: usize> std::fmt::Debug for LogHistogram<SUB_BITS, LEN> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHistogram")
            .field("count", &self.count())
            .field("max", &self.max)
            .finish()
    }
}

impl<const SUB_BITS: u32, const LEN: usize> LogHistogram<SUB_BITS, LEN> {
    const LAYOUT_OK: () = assert!(
        SUB_BITS >= 1 && SUB_BITS <= 16 && LEN == ((65 - SUB_BITS as usize) << SUB_BITS),
        "LogHistogram: LEN must be (65 - SUB_BITS) << SUB_BITS"
    );

    /// Buckets.
    pub const LEN: usize = LEN;

    /// An empty histogram.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::LAYOUT_OK;
        LogHistogram {
            counts: [0; LEN],
            max: 0,
            touched: 0,
        }
    }

    /// The bucket `value` falls in.
    #[inline(always)]
    pub const fn index_of(value: u64) -> usize {
        let log2 = 63 - (value | 1).leading_zeros();
        let shift = log2.saturating_sub(SUB_BITS);
        ((shift as usize) << SUB_BITS) + (value >> shift) as usize
    }

    /// The smallest and largest value of bucket `index` (inclusive).
    pub const fn bounds(index: usize) -> (u64, u64) {
        let shift = (index >> SUB_BITS).saturating_sub(1) as u32;
        let mantissa = (index - ((shift as usize) << SUB_BITS)) as u64;
        let low = mantissa << shift;
        (low, low + ((1u64 << shift) - 1))
    }

    /// Records one value.
    #[inline(always)]
    pub fn record(&mut self, value: u64) {
        let i = Self::index_of(value);
        // `index_of` is < LEN for every u64 (LAYOUT_OK); `get_mut` keeps the
        // fast path free of a panic site all the same.
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        if i >= self.touched {
            self.touched = i + 1;
        }
        if value > self.max {
            self.max = value;
        }
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts[..self.touched].iter().sum()
    }

    /// The largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Count of bucket `index` (0 outside the histogram).
    pub fn bucket(&self, index: usize) -> u64 {
        self.counts.get(index).copied().unwrap_or(0)
    }

    /// One past the highest bucket that may be non-zero.
    pub fn touched(&self) -> usize {
        self.touched
    }

    /// Sets bucket `index` to `count` (for rebuilding a published copy).
    /// Out-of-range indices are ignored.
    pub fn set_bucket(&mut self, index: usize, count: u64) {
        if let Some(c) = self.counts.get_mut(index) {
            *c = count;
            if count > 0 && index >= self.touched {
                self.touched = index + 1;
            }
        }
    }

    /// Sets the recorded maximum (for rebuilding a published copy).
    pub fn set_max(&mut self, max: u64) {
        self.max = max;
    }

    /// Adds every value of `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        for (a, b) in self.counts[..other.touched]
            .iter_mut()
            .zip(&other.counts[..other.touched])
        {
            *a += b;
        }
        self.touched = self.touched.max(other.touched);
        self.max = self.max.max(other.max);
    }

    /// Removes `earlier`'s values from `self`, where `earlier` is a
    /// previous snapshot of the same cumulative histogram; `None` if a
    /// bucket went backwards (not an earlier snapshot). The maximum stays
    /// `self`'s (the window's own maximum is not recoverable).
    pub fn since(&self, earlier: &Self) -> Option<Self> {
        let mut out = self.clone();
        for (a, b) in out.counts.iter_mut().zip(&earlier.counts) {
            *a = a.checked_sub(*b)?;
        }
        Some(out)
    }

    /// The bucket holding the value of rank `ceil(q × count)` (at least 1):
    /// the `q`-quantile lies in it. `None` when empty.
    pub fn quantile_bucket(&self, q: f64) -> Option<usize> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
        let mut seen = 0u64;
        for (i, &c) in self.counts[..self.touched].iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(i);
            }
        }
        None
    }

    /// The `q`-quantile as the highest value of its bucket, never above the
    /// recorded maximum (HDR's "highest equivalent value": a quantile is
    /// over- rather than under-stated, by less than one bucket width).
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let (_, high) = Self::bounds(self.quantile_bucket(q)?);
        Some(high.min(self.max))
    }

    /// Non-empty buckets as `(index, count)`, for JSON.
    pub fn sparse(&self) -> Vec<(usize, u64)> {
        self.counts[..self.touched]
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (i, c))
            .collect()
    }

    /// p50, p99, p99.9 and the maximum, converted with `to_ns` (e.g. TSC
    /// cycles at `hz` to nanoseconds).
    pub fn summary(&self, to_ns: impl Fn(u64) -> f64) -> LatencySummary {
        let q = |q: f64| self.quantile(q).map(&to_ns);
        LatencySummary {
            count: self.count(),
            p50_ns: q(0.5),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: (self.count() > 0).then(|| to_ns(self.max)),
        }
    }
}

/// A latency distribution's headline figures, in nanoseconds (`None` when
/// nothing was recorded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_ns: Option<f64>,
    /// 99th percentile.
    pub p99_ns: Option<f64>,
    /// 99.9th percentile.
    pub p999_ns: Option<f64>,
    /// Largest value.
    pub max_ns: Option<f64>,
}

/// Converts TSC cycles to nanoseconds at `hz`; `None` for an unknown rate.
pub fn cycles_to_ns(hz: u64) -> Option<impl Fn(u64) -> f64> {
    (hz > 0).then_some(move |cycles: u64| cycles as f64 * 1e9 / hz as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A finer layout (32 sub-buckets, ≤ 3.2% wide), to test the const
    /// parameters beyond the one the workers use.
    type FineHistogram = LogHistogram<5, 1920>;

    #[test]
    fn small_values_are_exact_and_buckets_tile_u64() {
        for v in 0..16u64 {
            assert_eq!(BurstHistogram::index_of(v), v as usize);
            assert_eq!(BurstHistogram::bounds(v as usize), (v, v));
        }
        assert_eq!(BurstHistogram::index_of(u64::MAX), BurstHistogram::LEN - 1);
        assert_eq!(FineHistogram::index_of(u64::MAX), FineHistogram::LEN - 1);
        // Consecutive buckets are contiguous and cover 0..=u64::MAX.
        let mut next = 0u64;
        for i in 0..BurstHistogram::LEN {
            let (lo, hi) = BurstHistogram::bounds(i);
            assert_eq!(lo, next, "bucket {i}");
            assert!(hi >= lo);
            assert_eq!(BurstHistogram::index_of(lo), i);
            assert_eq!(BurstHistogram::index_of(hi), i);
            next = hi.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
        // 960..=1023 share a bucket at 3 sub-bits.
        assert_eq!(
            BurstHistogram::bounds(BurstHistogram::index_of(1000)),
            (960, 1023)
        );
    }

    #[test]
    fn empty_and_single() {
        let mut h = BurstHistogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.summary(|c| c as f64), LatencySummary::default());
        h.record(1000);
        assert_eq!(h.count(), 1);
        // The bucket's top is 1023 but the maximum caps it.
        assert_eq!(h.quantile(0.0), Some(1000));
        assert_eq!(h.quantile(1.0), Some(1000));
        let s = h.summary(|c| c as f64 / 2.0);
        assert_eq!((s.count, s.p50_ns, s.max_ns), (1, Some(500.0), Some(500.0)));
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = FineHistogram::new();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let within = |got: u64, want: u64| {
            let (lo, hi) = FineHistogram::bounds(FineHistogram::index_of(want));
            assert!(
                (lo..=hi).contains(&got),
                "got {got}, want {want} in [{lo}, {hi}]"
            );
        };
        within(h.quantile(0.5).unwrap(), 5000);
        within(h.quantile(0.99).unwrap(), 9900);
        within(h.quantile(0.999).unwrap(), 9990);
        assert_eq!(h.quantile(1.0), Some(10_000));
    }

    #[test]
    fn add_since_and_sparse() {
        let mut a = BurstHistogram::new();
        let mut b = BurstHistogram::new();
        a.record(5);
        a.record(100);
        b.record(100);
        b.record(1 << 40);
        let before = a.clone();
        a.add(&b);
        assert_eq!(a.count(), 4);
        assert_eq!(a.max(), 1 << 40);
        let i100 = BurstHistogram::index_of(100);
        assert_eq!(a.bucket(i100), 2);
        let delta = a.since(&before).unwrap();
        assert_eq!(delta.count(), 2);
        assert_eq!(delta.bucket(i100), 1);
        assert!(
            before.since(&a).is_none(),
            "a later snapshot is not earlier"
        );
        let sparse = a.sparse();
        assert_eq!(sparse.len(), 3);
        let mut rebuilt = BurstHistogram::new();
        for (i, c) in &sparse {
            rebuilt.set_bucket(*i, *c);
        }
        rebuilt.set_max(a.max());
        assert_eq!(rebuilt.sparse(), sparse);
        assert_eq!(rebuilt.quantile(0.75), a.quantile(0.75));
        rebuilt.set_bucket(BurstHistogram::LEN, 7); // ignored
        assert_eq!(rebuilt.count(), 4);
    }

    #[test]
    fn cycles_convert_at_the_tsc_rate() {
        let f = cycles_to_ns(2_000_000_000).unwrap();
        assert_eq!(f(3000), 1500.0);
        assert!(cycles_to_ns(0).is_none());
    }

    proptest! {
        /// Every quantile lies in the bucket of the sorted reference's
        /// value of the same rank, and never above the maximum.
        #[test]
        fn quantiles_match_a_sorted_reference(
            mut values in prop::collection::vec(
                prop_oneof![0u64..64, 0u64..100_000, any::<u64>()], 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut h = BurstHistogram::new();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            let n = values.len() as u64;
            prop_assert_eq!(h.count(), n);
            prop_assert_eq!(h.max(), *values.last().unwrap());
            let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
            let want = values[rank as usize - 1];
            prop_assert_eq!(h.quantile_bucket(q), Some(BurstHistogram::index_of(want)));
            let got = h.quantile(q).unwrap();
            let (lo, hi) = BurstHistogram::bounds(BurstHistogram::index_of(want));
            prop_assert!(lo <= got && got <= hi && got <= h.max());
            // The relative error bound of the layout (values ≥ 16).
            if want >= 16 {
                prop_assert!((got - want) as f64 <= want as f64 / 8.0);
            }
        }

        #[test]
        fn index_and_bounds_agree(v in any::<u64>()) {
            let i = FineHistogram::index_of(v);
            prop_assert!(i < FineHistogram::LEN);
            let (lo, hi) = FineHistogram::bounds(i);
            prop_assert!(lo <= v && v <= hi);
        }
    }
}
