//! pf's state timeouts (`set timeout <name> <seconds>`), with pf's names and
//! defaults, and pf's adaptive scaling (`adaptive.start`, `adaptive.end`).
//! The ruleset parser fills a [`Timeouts`]; state expiry reads it with the
//! [`TimeoutScale`] of the moment.
//!
//! Adaptive timeouts (pf.c `pf_state_expires`): once the number of states
//! exceeds `adaptive.start`, every timeout is multiplied by
//! `(end - states) / (end - start)`; at `adaptive.end` and beyond every
//! timeout is 0 (states expire at once). `end` 0 or `start >= end` turns
//! scaling off. The scale is a pair of integers, so the expiry test is two
//! multiplications and no division ([`TimeoutScale::expired`]): the
//! per-packet check stays as cheap as the unscaled one.

use serde::Serialize;

/// The timeout classes a state can be in, one per pf timeout name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[repr(u8)]
pub enum TimeoutClass {
    /// `tcp.first`: after the first packet.
    TcpFirst = 0,
    /// `tcp.opening`: before the destination has answered.
    TcpOpening,
    /// `tcp.established`: fully established.
    TcpEstablished,
    /// `tcp.closing`: after the first FIN.
    TcpClosing,
    /// `tcp.finwait`: both FINs exchanged, connection closed.
    TcpFinWait,
    /// `tcp.closed`: after an RST.
    TcpClosed,
    /// `udp.first`: after the first packet.
    UdpFirst,
    /// `udp.single`: only the source has sent more than one packet.
    UdpSingle,
    /// `udp.multiple`: both sides have sent packets.
    UdpMultiple,
    /// `icmp.first`: after the first packet.
    IcmpFirst,
    /// `icmp.error`: after an ICMP error came back.
    IcmpError,
    /// `other.first`: after the first packet.
    OtherFirst,
    /// `other.single`: only the source has sent more than one packet.
    OtherSingle,
    /// `other.multiple`: both sides have sent packets.
    OtherMultiple,
}

impl TimeoutClass {
    /// Every class, in discriminant order.
    pub const ALL: [TimeoutClass; 14] = [
        TimeoutClass::TcpFirst,
        TimeoutClass::TcpOpening,
        TimeoutClass::TcpEstablished,
        TimeoutClass::TcpClosing,
        TimeoutClass::TcpFinWait,
        TimeoutClass::TcpClosed,
        TimeoutClass::UdpFirst,
        TimeoutClass::UdpSingle,
        TimeoutClass::UdpMultiple,
        TimeoutClass::IcmpFirst,
        TimeoutClass::IcmpError,
        TimeoutClass::OtherFirst,
        TimeoutClass::OtherSingle,
        TimeoutClass::OtherMultiple,
    ];

    /// pf's name of the timeout (`set timeout <name>`).
    pub const fn name(self) -> &'static str {
        match self {
            TimeoutClass::TcpFirst => "tcp.first",
            TimeoutClass::TcpOpening => "tcp.opening",
            TimeoutClass::TcpEstablished => "tcp.established",
            TimeoutClass::TcpClosing => "tcp.closing",
            TimeoutClass::TcpFinWait => "tcp.finwait",
            TimeoutClass::TcpClosed => "tcp.closed",
            TimeoutClass::UdpFirst => "udp.first",
            TimeoutClass::UdpSingle => "udp.single",
            TimeoutClass::UdpMultiple => "udp.multiple",
            TimeoutClass::IcmpFirst => "icmp.first",
            TimeoutClass::IcmpError => "icmp.error",
            TimeoutClass::OtherFirst => "other.first",
            TimeoutClass::OtherSingle => "other.single",
            TimeoutClass::OtherMultiple => "other.multiple",
        }
    }

    /// The class named `name`, if pf has it.
    pub fn from_name(name: &str) -> Option<TimeoutClass> {
        TimeoutClass::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// pf's default, in seconds.
    pub const fn default_secs(self) -> u32 {
        match self {
            TimeoutClass::TcpFirst => 120,
            TimeoutClass::TcpOpening => 30,
            TimeoutClass::TcpEstablished => 86400,
            TimeoutClass::TcpClosing => 900,
            TimeoutClass::TcpFinWait => 45,
            TimeoutClass::TcpClosed => 90,
            TimeoutClass::UdpFirst => 60,
            TimeoutClass::UdpSingle => 30,
            TimeoutClass::UdpMultiple => 60,
            TimeoutClass::IcmpFirst => 20,
            TimeoutClass::IcmpError => 10,
            TimeoutClass::OtherFirst => 60,
            TimeoutClass::OtherSingle => 30,
            TimeoutClass::OtherMultiple => 60,
        }
    }
}

/// pf's default `adaptive.start` (`PFSTATE_ADAPT_START`: 60% of the
/// default state limit).
pub const ADAPTIVE_START_DEFAULT: u32 = 60_000;
/// pf's default `adaptive.end` (`PFSTATE_ADAPT_END`: 120%).
pub const ADAPTIVE_END_DEFAULT: u32 = 120_000;

/// Seconds per timeout class, and the adaptive thresholds (in states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    secs: [u32; 14],
    adaptive_start: u32,
    adaptive_end: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        let mut secs = [0u32; 14];
        for c in TimeoutClass::ALL {
            secs[c as usize] = c.default_secs();
        }
        Timeouts {
            secs,
            adaptive_start: ADAPTIVE_START_DEFAULT,
            adaptive_end: ADAPTIVE_END_DEFAULT,
        }
    }
}

/// pf's adaptive factor at some state count: timeouts are multiplied by
/// `num / den` (rounded down, as pf's integer arithmetic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutScale {
    num: u32,
    den: u32,
}

impl Default for TimeoutScale {
    fn default() -> Self {
        TimeoutScale::NONE
    }
}

impl TimeoutScale {
    /// Timeouts as configured.
    pub const NONE: TimeoutScale = TimeoutScale { num: 1, den: 1 };

    /// The factor with `states` states against `adaptive.start` `start`
    /// and `adaptive.end` `end` (pf's `pf_state_expires`): none unless
    /// `end != 0`, `states > start` and `start < end`; 0 from `end` on.
    pub fn of(start: u32, end: u32, states: u64) -> TimeoutScale {
        if end == 0 || states <= start as u64 || start >= end {
            return TimeoutScale::NONE;
        }
        if states >= end as u64 {
            return TimeoutScale { num: 0, den: 1 };
        }
        TimeoutScale {
            num: end - states as u32,
            den: end - start,
        }
    }

    /// Whether timeouts are scaled at all.
    #[inline]
    pub fn is_none(self) -> bool {
        self.num == self.den
    }

    /// `secs` scaled: `secs * num / den` rounded down.
    #[inline]
    pub fn scaled(self, secs: u32) -> u64 {
        if self.num == self.den {
            return secs as u64;
        }
        secs as u64 * self.num as u64 / self.den as u64
    }

    /// Whether a state last seen at `last_s` with a timeout of `secs` has
    /// expired at `now_s`: `last_s + scaled(secs) <= now_s`, computed
    /// without a division (`secs * num < (now - last + 1) * den`).
    #[inline]
    pub fn expired(self, last_s: u32, secs: u32, now_s: u32) -> bool {
        if self.num == self.den {
            return last_s as u64 + secs as u64 <= now_s as u64;
        }
        let Some(idle) = now_s.checked_sub(last_s) else {
            return false;
        };
        (secs as u64) * (self.num as u64) < (idle as u64 + 1) * (self.den as u64)
    }
}

impl Timeouts {
    /// The timeout of `class`, in seconds.
    #[inline]
    pub fn secs(&self, class: TimeoutClass) -> u32 {
        self.secs[class as usize]
    }

    /// The timeout of `class`, in nanoseconds.
    #[inline]
    pub fn nanos(&self, class: TimeoutClass) -> u64 {
        self.secs[class as usize] as u64 * 1_000_000_000
    }

    /// Sets the timeout of `class`.
    pub fn set(&mut self, class: TimeoutClass, secs: u32) {
        self.secs[class as usize] = secs;
    }

    /// `adaptive.start` and `adaptive.end`, in states.
    #[inline]
    pub fn adaptive(&self) -> (u32, u32) {
        (self.adaptive_start, self.adaptive_end)
    }

    /// Sets `adaptive.start` and `adaptive.end`.
    pub fn set_adaptive(&mut self, start: u32, end: u32) {
        self.adaptive_start = start;
        self.adaptive_end = end;
    }

    /// Sets `adaptive.start` / `adaptive.end` as pfctl does: the values
    /// given; when neither is given and `set limit states` is, 60% and
    /// 120% of the limit (pfctl's `pfctl_load_options`); otherwise pf's
    /// defaults for what is not given.
    pub fn set_adaptive_from(&mut self, start: Option<u32>, end: Option<u32>, limit: Option<u32>) {
        match (start, end, limit) {
            (None, None, Some(l)) => {
                self.set_adaptive((l / 10).saturating_mul(6), (l / 10).saturating_mul(12))
            }
            (s, e, _) => self.set_adaptive(
                s.unwrap_or(ADAPTIVE_START_DEFAULT),
                e.unwrap_or(ADAPTIVE_END_DEFAULT),
            ),
        }
    }

    /// The adaptive factor with `states` states.
    #[inline]
    pub fn scale(&self, states: u64) -> TimeoutScale {
        TimeoutScale::of(self.adaptive_start, self.adaptive_end, states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_defaults_are_pfs() {
        for c in TimeoutClass::ALL {
            assert_eq!(TimeoutClass::from_name(c.name()), Some(c));
        }
        let t = Timeouts::default();
        assert_eq!(t.secs(TimeoutClass::TcpEstablished), 86400);
        assert_eq!(t.secs(TimeoutClass::IcmpError), 10);
        assert_eq!(TimeoutClass::from_name("tcp.bogus"), None);
        assert_eq!(t.adaptive(), (60_000, 120_000));
    }

    #[test]
    fn adaptive_scale_is_pfs_linear_factor() {
        // pf.conf(5): start 6000, end 12000, 9000 states: timeouts halved.
        let s = TimeoutScale::of(6000, 12000, 9000);
        assert_eq!(s.scaled(86400), 43200);
        assert_eq!(s.scaled(31), 15, "rounded down as pf's integer division");
        // At or below start, or scaling off: unchanged.
        assert!(TimeoutScale::of(6000, 12000, 6000).is_none());
        assert!(TimeoutScale::of(6000, 0, 9000).is_none());
        assert!(TimeoutScale::of(12000, 6000, 13000).is_none());
        // At end and beyond: 0.
        assert_eq!(TimeoutScale::of(6000, 12000, 12000).scaled(86400), 0);
        assert_eq!(TimeoutScale::of(6000, 12000, 50000).scaled(10), 0);
    }

    #[test]
    fn expired_without_division_agrees_with_the_scaled_timeout() {
        for states in [0u64, 6001, 7000, 9000, 11999, 12000, 20000] {
            let s = TimeoutScale::of(6000, 12000, states);
            for secs in [0u32, 1, 7, 30, 86400] {
                for last in [0u32, 5, 1000] {
                    for now in [0u32, 4, 5, 6, 20, 1000, 1015, 50000, 200000] {
                        let want = last as u64 + s.scaled(secs) <= now as u64;
                        assert_eq!(
                            s.expired(last, secs, now),
                            want,
                            "{states} {secs} {last} {now}"
                        );
                    }
                }
            }
        }
    }
}
