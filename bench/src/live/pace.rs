//! Transmit pacing: a token bucket on the TSC. Credit accrues at `rate_pps`
//! packets per second in units of TSC ticks (integer arithmetic, no drift:
//! the remainder of every division is kept), and at most `burst` packets of
//! credit are held, so a stalled sender does not catch up in one burst.
//! Pure: the caller passes the TSC reading in.

/// A token bucket paced by the TSC.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate_pps: u64,
    tsc_hz: u64,
    burst: u64,
    /// Credit in packet·ticks (one packet = `tsc_hz` of credit).
    credit: u128,
    last_tsc: u64,
}

impl TokenBucket {
    /// A bucket for `rate_pps` packets per second on a TSC of `tsc_hz`,
    /// holding at most `burst` packets, starting empty at `now_tsc`.
    pub fn new(rate_pps: u64, tsc_hz: u64, burst: u64, now_tsc: u64) -> TokenBucket {
        TokenBucket {
            rate_pps,
            tsc_hz: tsc_hz.max(1),
            burst: burst.max(1),
            credit: 0,
            last_tsc: now_tsc,
        }
    }

    /// Packets that may be sent at `now_tsc`, at most `max`; they are
    /// taken from the bucket.
    pub fn take(&mut self, now_tsc: u64, max: u64) -> u64 {
        let elapsed = now_tsc.saturating_sub(self.last_tsc);
        self.last_tsc = now_tsc.max(self.last_tsc);
        let cap = u128::from(self.burst) * u128::from(self.tsc_hz);
        self.credit = (self.credit + u128::from(elapsed) * u128::from(self.rate_pps)).min(cap);
        let n = ((self.credit / u128::from(self.tsc_hz)) as u64).min(max);
        self.credit -= u128::from(n) * u128::from(self.tsc_hz);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paces_at_the_rate_and_caps_the_burst() {
        // 1 GHz TSC, 1 Mpps: one packet per 1000 ticks.
        let mut b = TokenBucket::new(1_000_000, 1_000_000_000, 32, 0);
        assert_eq!(b.take(999, 32), 0);
        assert_eq!(b.take(1000, 32), 1);
        assert_eq!(b.take(10_500, 32), 9);
        assert_eq!(b.take(11_000, 32), 1);
        // A long stall yields one burst, not the backlog.
        assert_eq!(b.take(10_000_000, 1000), 32);
        assert_eq!(b.take(10_000_000, 1000), 0);
        // `max` leaves the rest in the bucket.
        assert_eq!(b.take(10_005_000, 2), 2);
        assert_eq!(b.take(10_005_000, 32), 3);
        // The clock going backwards gives nothing and breaks nothing.
        assert_eq!(b.take(5, 32), 0);
    }

    proptest! {
        /// Over any polling pattern, the packets sent match the rate within
        /// one burst.
        #[test]
        fn long_run_rate_is_exact(
            rate in 1u64..20_000_000, hz in 1_000_000u64..5_000_000_000,
            steps in prop::collection::vec(1u64..50_000, 1..500),
        ) {
            let mut b = TokenBucket::new(rate, hz, 32, 0);
            let (mut now, mut sent) = (0u64, 0u64);
            for s in steps {
                now += s;
                sent += b.take(now, 32);
            }
            let ideal = u128::from(now) * u128::from(rate) / u128::from(hz);
            prop_assert!(u128::from(sent) <= ideal);
            // Short of the ideal only by what the 32-packet cap threw away,
            // which needs a step longer than 32 packets' time.
            let max_step_pkts = u128::from(50_000u64) * u128::from(rate) / u128::from(hz);
            if max_step_pkts < 30 {
                prop_assert!(ideal - u128::from(sent) <= 1);
            }
        }
    }
}
