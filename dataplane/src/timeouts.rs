//! pf's state timeouts (`set timeout <name> <seconds>`), with pf's names and
//! defaults. The ruleset parser fills a [`Timeouts`]; state expiry reads it.

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

/// Seconds per timeout class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    secs: [u32; 14],
}

impl Default for Timeouts {
    fn default() -> Self {
        let mut secs = [0u32; 14];
        for c in TimeoutClass::ALL {
            secs[c as usize] = c.default_secs();
        }
        Timeouts { secs }
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
    }
}
