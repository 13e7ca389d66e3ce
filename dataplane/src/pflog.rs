//! pflog: what a `log` rule records, in OpenBSD's format.
//!
//! A worker that decides a logged packet copies the packet's first
//! [`PACKET_SNAP`] bytes (from its IP header) and the facts of the log
//! event into a fixed-size [`Record`] and pushes it into its own bounded
//! SPSC ring to the logger (a full ring drops the record and counts it:
//! `pflog_dropped`; the worker never waits nor allocates). The logger
//! turns each record into a pcap record with link type [`DLT_PFLOG`]: a
//! [`Header`] (OpenBSD `struct pfloghdr`, `net/if_pflog.h`) then the
//! packet, so `tcpdump -n -e -r FILE` reads the file as it reads
//! OpenBSD's `/var/log/pflog`.
//!
//! `struct pfloghdr` (OpenBSD, 100 bytes; multi-byte fields in network
//! order as `pflog_packet` writes `rulenr`/`subrulenr`):
//!
//! ```text
//!  0  length     u8        PFLOG_HDRLEN (100)
//!  1  af         u8        AF_INET 2 / AF_INET6 24 (OpenBSD values)
//!  2  action     u8        PF_PASS 0, PF_DROP 1, PF_MATCH 12
//!  3  reason     u8        PFRES_MATCH 0, ...
//!  4  ifname     [u8; 16]  the interface the rule was evaluated on
//! 20  ruleset    [u8; 16]  anchor name (empty: main ruleset)
//! 36  rulenr     u32       rule number
//! 40  subrulenr  u32       rule in the anchor, 0xffffffff for none
//! 44  uid        u32       UID_MAX (no socket lookup)
//! 48  pid        i32       NO_PID (100000)
//! 52  rule_uid   u32       0
//! 56  rule_pid   i32       0
//! 60  dir        u8        PF_IN 1 / PF_OUT 2
//! 61  rewritten  u8        0: the packet is shown as it leaves dpf
//! 62  naf        u8        = af
//! 63  pad        u8
//! 64  saddr      [u8; 16]  source address (IPv4 in the first 4 bytes)
//! 80  daddr      [u8; 16]
//! 96  sport      u16
//! 98  dport      u16
//! ```
//!
//! Invariants: [`Record`] is `Copy` and fixed-size (no allocation on the
//! worker); every emitter writes exactly the bytes it documents and never
//! panics on short input.

/// pcap link type of pflog captures (`LINKTYPE_PFLOG`, OpenBSD's DLT_PFLOG).
pub const DLT_PFLOG: u32 = 117;
/// `sizeof(struct pfloghdr)` on OpenBSD.
pub const HDRLEN: usize = 100;
/// Bytes of a logged packet kept, header included: pflogd's default
/// snap length (`DEF_SNAPLEN` in pflogd.h).
pub const SNAPLEN: usize = 160;
/// Bytes of the packet itself (from its IP header) a [`Record`] keeps.
pub const PACKET_SNAP: usize = SNAPLEN - HDRLEN;
/// `uid` of a record without socket lookup (OpenBSD `UID_MAX`).
pub const UID_MAX: u32 = u32::MAX;
/// `pid` of a record without socket lookup (OpenBSD `NO_PID`).
pub const NO_PID: u32 = 100_000;
/// pfloghdr `af` for IPv4 (`AF_INET`).
pub const AF_INET: u8 = 2;
/// pfloghdr `af` for IPv6 (OpenBSD's `AF_INET6`, which tcpdump accepts).
pub const AF_INET6: u8 = 24;

/// A rule's log bits (pf's `PF_LOG*`, `struct pf_rule.log`).
pub mod log_flags {
    /// `log`: the packet that creates a state or is blocked.
    pub const LOG: u8 = 0x01;
    /// `log (all)`: every packet of the state too.
    pub const ALL: u8 = 0x02;
    /// `log (matches)`: the packet on every rule it matches after this one.
    pub const MATCHES: u8 = 0x10;
}

/// pfloghdr `action` values (pf's `PF_PASS`...).
pub mod action {
    /// `PF_PASS`.
    pub const PASS: u8 = 0;
    /// `PF_DROP` (tcpdump: "block").
    pub const DROP: u8 = 1;
    /// `PF_MATCH`.
    pub const MATCH: u8 = 12;
}

/// pfloghdr `reason` values (pf's `PFRES_*`).
pub mod reason {
    /// `PFRES_MATCH`: a rule matched.
    pub const MATCH: u8 = 0;
}

/// pfloghdr `dir` values.
pub mod dir {
    /// `PF_IN`.
    pub const IN: u8 = 1;
    /// `PF_OUT`.
    pub const OUT: u8 = 2;
}

/// The pfloghdr action of a rule action.
pub fn action_of(a: crate::rules::Action) -> u8 {
    match a {
        crate::rules::Action::Pass => action::PASS,
        crate::rules::Action::Block => action::DROP,
        crate::rules::Action::Match => action::MATCH,
    }
}

/// A rule that logs the packet being evaluated (see
/// [`crate::rules::Decision::logged`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoggedRule {
    /// Its number.
    pub rule: u32,
    /// Its action (pfloghdr `action`, [`action`]).
    pub action: u8,
}

/// Most rules one evaluation logs (more are counted as dropped records).
pub const LOG_LIST_MAX: usize = 4;

/// The rules that log one evaluation, in the order they matched: `match`
/// rules with `log`, every rule matching after a `log (matches)` rule, and
/// the deciding rule if it has `log`. Fixed-size (the evaluator does not
/// allocate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogList {
    /// Entries used.
    pub n: u8,
    /// Rules that should have logged but did not fit.
    pub overflow: u8,
    /// The rules (`..n`).
    pub rules: [LoggedRule; LOG_LIST_MAX],
}

impl LogList {
    /// No rule logs.
    pub const EMPTY: LogList = LogList {
        n: 0,
        overflow: 0,
        rules: [LoggedRule { rule: 0, action: 0 }; LOG_LIST_MAX],
    };

    /// Adds rule `rule` with pfloghdr action `action`.
    #[inline]
    pub fn push(&mut self, rule: u32, action: u8) {
        match self.rules.get_mut(self.n as usize) {
            Some(slot) => {
                *slot = LoggedRule { rule, action };
                self.n += 1;
            }
            None => self.overflow = self.overflow.saturating_add(1),
        }
    }

    /// The rules that log.
    pub fn iter(&self) -> impl Iterator<Item = &LoggedRule> {
        self.rules.iter().take(self.n as usize)
    }

    /// Whether no rule logs.
    pub fn is_empty(&self) -> bool {
        self.n == 0 && self.overflow == 0
    }
}

/// One log event a worker hands to the logger: the facts of the pfloghdr
/// and the packet's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// When (the worker's clock, nanoseconds; the logger maps it to wall
    /// time).
    pub ts_ns: u64,
    /// The rule number.
    pub rule: u32,
    /// The packet's whole length (IP header on).
    pub orig_len: u32,
    /// The port (interface index) the rule was evaluated on.
    pub ifindex: u16,
    /// pfloghdr action ([`action`]).
    pub action: u8,
    /// pfloghdr reason ([`reason`]).
    pub reason: u8,
    /// pfloghdr dir ([`dir`]).
    pub dir: u8,
    /// pfloghdr af ([`AF_INET`], [`AF_INET6`]).
    pub af: u8,
    /// Bytes of `data` used.
    pub caplen: u8,
    /// The packet's first bytes, from its IP header.
    pub data: [u8; PACKET_SNAP],
}

const _: () = assert!(PACKET_SNAP <= u8::MAX as usize);

impl Record {
    /// A record for `packet` (from its IP header), keeping its first
    /// [`PACKET_SNAP`] bytes.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn new(
        ts_ns: u64,
        rule: u32,
        ifindex: u16,
        action: u8,
        reason: u8,
        dir: u8,
        af: u8,
        packet: &[u8],
    ) -> Record {
        let caplen = packet.len().min(PACKET_SNAP);
        let mut data = [0u8; PACKET_SNAP];
        data[..caplen].copy_from_slice(&packet[..caplen]);
        Record {
            ts_ns,
            rule,
            orig_len: packet.len() as u32,
            ifindex,
            action,
            reason,
            dir,
            af,
            caplen: caplen as u8,
            data,
        }
    }

    /// The packet bytes kept.
    pub fn packet(&self) -> &[u8] {
        &self.data[..self.caplen as usize]
    }
}

/// pf's `struct pfloghdr` as a value ([`Header::emit`] writes the bytes;
/// [`Header::parse`] reads them back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Address family ([`AF_INET`] / [`AF_INET6`]).
    pub af: u8,
    /// [`action`].
    pub action: u8,
    /// [`reason`].
    pub reason: u8,
    /// Interface name (NUL-padded, at most 15 bytes used).
    pub ifname: [u8; 16],
    /// Anchor name (empty for the main ruleset).
    pub ruleset: [u8; 16],
    /// Rule number.
    pub rulenr: u32,
    /// Rule number inside the anchor, `u32::MAX` for none.
    pub subrulenr: u32,
    /// [`dir`].
    pub dir: u8,
    /// Source address (IPv4 in the first 4 bytes).
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// Source port (0 if none).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// A NUL-padded name field: `name`'s first 15 bytes.
pub fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

impl Header {
    /// The header of `rec` on interface `ifname`, its addresses and ports
    /// read from the packet bytes kept (zero when not there).
    pub fn of_record(rec: &Record, ifname: &str) -> Header {
        let p = rec.packet();
        let (mut saddr, mut daddr, mut sport, mut dport) = ([0u8; 16], [0u8; 16], 0, 0);
        let l4 = |p: &[u8], off: usize, proto: u8| -> (u16, u16) {
            if matches!(proto, 6 | 17) && p.len() >= off + 4 {
                (
                    u16::from_be_bytes([p[off], p[off + 1]]),
                    u16::from_be_bytes([p[off + 2], p[off + 3]]),
                )
            } else {
                (0, 0)
            }
        };
        if rec.af == AF_INET && p.len() >= 20 {
            saddr[..4].copy_from_slice(&p[12..16]);
            daddr[..4].copy_from_slice(&p[16..20]);
            (sport, dport) = l4(p, ((p[0] & 0x0f) as usize) * 4, p[9]);
        } else if rec.af == AF_INET6 && p.len() >= 40 {
            saddr.copy_from_slice(&p[8..24]);
            daddr.copy_from_slice(&p[24..40]);
            (sport, dport) = l4(p, 40, p[6]);
        }
        Header {
            af: rec.af,
            action: rec.action,
            reason: rec.reason,
            ifname: name16(ifname),
            ruleset: [0; 16],
            rulenr: rec.rule,
            subrulenr: u32::MAX,
            dir: rec.dir,
            saddr,
            daddr,
            sport,
            dport,
        }
    }

    /// Writes the [`HDRLEN`] bytes of the header.
    pub fn emit(&self) -> [u8; HDRLEN] {
        let mut b = [0u8; HDRLEN];
        b[0] = HDRLEN as u8;
        b[1] = self.af;
        b[2] = self.action;
        b[3] = self.reason;
        b[4..20].copy_from_slice(&self.ifname);
        b[20..36].copy_from_slice(&self.ruleset);
        b[36..40].copy_from_slice(&self.rulenr.to_be_bytes());
        b[40..44].copy_from_slice(&self.subrulenr.to_be_bytes());
        b[44..48].copy_from_slice(&UID_MAX.to_be_bytes());
        b[48..52].copy_from_slice(&NO_PID.to_be_bytes());
        // rule_uid, rule_pid: 0.
        b[60] = self.dir;
        b[61] = 0; // rewritten
        b[62] = self.af; // naf
        b[64..80].copy_from_slice(&self.saddr);
        b[80..96].copy_from_slice(&self.daddr);
        b[96..98].copy_from_slice(&self.sport.to_be_bytes());
        b[98..100].copy_from_slice(&self.dport.to_be_bytes());
        b
    }

    /// Reads a header written by [`Header::emit`] (or OpenBSD): `None` if
    /// `b` is shorter than [`HDRLEN`] or its length byte is not `HDRLEN`.
    pub fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < HDRLEN || b[0] as usize != HDRLEN {
            return None;
        }
        let arr16 = |o: usize| -> [u8; 16] {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[o..o + 16]);
            a
        };
        let be32 = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        Some(Header {
            af: b[1],
            action: b[2],
            reason: b[3],
            ifname: arr16(4),
            ruleset: arr16(20),
            rulenr: be32(36),
            subrulenr: be32(40),
            dir: b[60],
            saddr: arr16(64),
            daddr: arr16(80),
            sport: u16::from_be_bytes([b[96], b[97]]),
            dport: u16::from_be_bytes([b[98], b[99]]),
        })
    }

    /// The interface name as text.
    pub fn ifname_str(&self) -> String {
        let n = self.ifname.iter().position(|&c| c == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.ifname[..n]).into_owned()
    }
}

/// The 24-byte pcap file header (microsecond timestamps, little-endian)
/// of a pflog file with snap length [`SNAPLEN`].
pub fn pcap_file_header() -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    b[4..6].copy_from_slice(&2u16.to_le_bytes());
    b[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone, sigfigs: 0.
    b[16..20].copy_from_slice(&(SNAPLEN as u32).to_le_bytes());
    b[20..24].copy_from_slice(&DLT_PFLOG.to_le_bytes());
    b
}

/// The 16-byte pcap record header of a pflog record of `rec` taken at
/// `wall_ns` (nanoseconds since the Unix epoch).
pub fn pcap_record_header(rec: &Record, wall_ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    let sec = (wall_ns / 1_000_000_000) as u32;
    let usec = ((wall_ns % 1_000_000_000) / 1000) as u32;
    b[0..4].copy_from_slice(&sec.to_le_bytes());
    b[4..8].copy_from_slice(&usec.to_le_bytes());
    b[8..12].copy_from_slice(&((HDRLEN + rec.caplen as usize) as u32).to_le_bytes());
    b[12..16].copy_from_slice(&((HDRLEN as u32).saturating_add(rec.orig_len)).to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_tcp() -> Vec<u8> {
        let mut p = vec![0u8; 80];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&80u16.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[192, 0, 2, 7]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&22u16.to_be_bytes());
        p
    }

    #[test]
    fn header_layout_matches_openbsd_pfloghdr() {
        let rec = Record::new(
            0,
            2,
            0,
            action::DROP,
            reason::MATCH,
            dir::IN,
            AF_INET,
            &ipv4_tcp(),
        );
        let h = Header::of_record(&rec, "lan0");
        let b = h.emit();
        assert_eq!(b.len(), 100);
        assert_eq!(b[0], 100, "length");
        assert_eq!(b[1], 2, "af");
        assert_eq!(b[2], 1, "action PF_DROP");
        assert_eq!(b[3], 0, "reason PFRES_MATCH");
        assert_eq!(&b[4..9], b"lan0\0");
        assert_eq!(&b[20..36], &[0u8; 16], "main ruleset");
        assert_eq!(&b[36..40], &[0, 0, 0, 2], "rulenr, network order");
        assert_eq!(&b[40..44], &[0xff; 4], "subrulenr none");
        assert_eq!(&b[44..48], &[0xff; 4], "uid UID_MAX");
        assert_eq!(&b[48..52], &100_000u32.to_be_bytes(), "pid NO_PID");
        assert_eq!(&b[52..60], &[0u8; 8], "rule_uid, rule_pid");
        assert_eq!(b[60], 1, "dir PF_IN");
        assert_eq!(b[61], 0, "rewritten");
        assert_eq!(b[62], 2, "naf");
        assert_eq!(&b[64..68], &[10, 0, 0, 1]);
        assert_eq!(&b[80..84], &[192, 0, 2, 7]);
        assert_eq!(&b[96..98], &40000u16.to_be_bytes());
        assert_eq!(&b[98..100], &22u16.to_be_bytes());
        assert_eq!(Header::parse(&b), Some(h));
        assert_eq!(h.ifname_str(), "lan0");
    }

    #[test]
    fn record_keeps_the_snap_length() {
        let p = ipv4_tcp();
        let rec = Record::new(1, 0, 0, 0, 0, dir::OUT, AF_INET, &p);
        assert_eq!(rec.caplen as usize, PACKET_SNAP);
        assert_eq!(rec.orig_len, 80);
        assert_eq!(rec.packet(), &p[..PACKET_SNAP]);
        let short = Record::new(1, 0, 0, 0, 0, dir::OUT, AF_INET, &p[..10]);
        assert_eq!(short.packet(), &p[..10]);
        // A header of a truncated packet leaves the addresses at zero.
        assert_eq!(Header::of_record(&short, "x").saddr, [0; 16]);
        let rh = pcap_record_header(&rec, 1_500_000_123_000);
        assert_eq!(&rh[0..4], &1500u32.to_le_bytes());
        assert_eq!(&rh[4..8], &123u32.to_le_bytes());
        assert_eq!(&rh[8..12], &160u32.to_le_bytes());
        assert_eq!(&rh[12..16], &180u32.to_le_bytes());
    }

    #[test]
    fn pcap_header_says_pflog() {
        let h = pcap_file_header();
        assert_eq!(&h[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&h[16..20], &160u32.to_le_bytes());
        assert_eq!(&h[20..24], &117u32.to_le_bytes());
    }

    #[test]
    fn log_list_overflow_is_counted() {
        let mut l = LogList::EMPTY;
        assert!(l.is_empty());
        for i in 0..6 {
            l.push(i, action::MATCH);
        }
        assert_eq!(l.n as usize, LOG_LIST_MAX);
        assert_eq!(l.overflow, 2);
        assert_eq!(l.iter().map(|r| r.rule).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn parse_refuses_short_or_foreign_headers() {
        assert_eq!(Header::parse(&[100u8; 50]), None);
        let mut b = [0u8; 100];
        b[0] = 61;
        assert_eq!(Header::parse(&b), None);
    }
}
