//! Name tables the pf.conf subset understands: protocols (OpenBSD's
//! `/etc/protocols` names), services (OpenBSD's `/etc/services`, TCP then
//! UDP as pfctl looks them up), ICMP and ICMPv6 types and codes (pfctl's names),
//! and TCP flag letters.
//!
//! Invariant: for every table, the first entry with a given number is the
//! canonical name printed by [`super::Ruleset::rule_text`], and every printed
//! name parses back to the same number.

use crate::flow::Af;

/// Protocols by name; the first name of a number is the canonical one
/// (`getprotobynumber` on OpenBSD).
const PROTOCOLS: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("tcp", 6),
    ("egp", 8),
    ("udp", 17),
    ("ipv6", 41),
    ("rsvp", 46),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("icmp6", 58),
    ("etherip", 97),
    ("ospf", 89),
    ("pim", 103),
    ("ipcomp", 108),
    ("carp", 112),
    ("vrrp", 112),
    ("sctp", 132),
    ("pfsync", 240),
];

/// The protocol number of `name`.
pub(crate) fn proto_by_name(name: &str) -> Option<u8> {
    PROTOCOLS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// The canonical name of protocol `proto`, if it has one.
pub(crate) fn proto_name(proto: u8) -> Option<&'static str> {
    PROTOCOLS.iter().find(|(_, p)| *p == proto).map(|(n, _)| *n)
}

/// Which transport protocols a service entry is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum On {
    Tcp,
    Udp,
    Both,
}

/// OpenBSD's `/etc/services`, embedded (pfctl resolves port names with
/// `getservbyname(name, "tcp")`, then `"udp"`; dpf reads no file at run
/// time). Each line of the file is one entry per name: the official name
/// first, then its aliases, so the first entry of a (port, protocol) is the
/// name `getservbyport` returns and `pfctl -sr` prints.
#[rustfmt::skip]
const SERVICES: &[(&str, u16, On)] = &[
    ("tcpmux", 1, On::Tcp),
    ("echo", 7, On::Both),
    ("discard", 9, On::Both), ("sink", 9, On::Both), ("null", 9, On::Both),
    ("systat", 11, On::Tcp), ("users", 11, On::Tcp),
    ("daytime", 13, On::Both),
    ("netstat", 15, On::Tcp),
    ("qotd", 17, On::Tcp), ("quote", 17, On::Tcp),
    ("msp", 18, On::Both),
    ("chargen", 19, On::Both), ("ttytst", 19, On::Both), ("source", 19, On::Both),
    ("ftp-data", 20, On::Tcp),
    ("ftp", 21, On::Tcp),
    ("ssh", 22, On::Both),
    ("telnet", 23, On::Tcp),
    ("smtp", 25, On::Tcp), ("mail", 25, On::Tcp),
    ("time", 37, On::Both), ("timserver", 37, On::Both),
    ("rlp", 39, On::Udp), ("resource", 39, On::Udp),
    ("nameserver", 42, On::Tcp), ("name", 42, On::Tcp),
    ("whois", 43, On::Tcp), ("nicname", 43, On::Tcp),
    ("domain", 53, On::Both),
    ("mtp", 57, On::Tcp),
    ("bootps", 67, On::Both),
    ("bootpc", 68, On::Both),
    ("tftp", 69, On::Udp),
    ("gopher", 70, On::Both),
    ("rje", 77, On::Tcp), ("netrjs", 77, On::Tcp),
    ("finger", 79, On::Tcp),
    ("www", 80, On::Both), ("http", 80, On::Tcp),
    ("link", 87, On::Tcp), ("ttylink", 87, On::Tcp),
    ("kerberos", 88, On::Both), ("kerberos-sec", 88, On::Both),
    ("supdup", 95, On::Tcp),
    ("hostnames", 101, On::Tcp), ("hostname", 101, On::Tcp),
    ("iso-tsap", 102, On::Tcp), ("tsap", 102, On::Tcp),
    ("x400", 103, On::Tcp),
    ("x400-snd", 104, On::Tcp),
    ("csnet-ns", 105, On::Both), ("cso-ns", 105, On::Both),
    ("rtelnet", 107, On::Both),
    ("pop2", 109, On::Both), ("postoffice", 109, On::Tcp),
    ("pop3", 110, On::Both),
    ("sunrpc", 111, On::Both), ("portmap", 111, On::Both), ("rpcbind", 111, On::Both),
    ("auth", 113, On::Tcp), ("authentication", 113, On::Tcp), ("tap", 113, On::Tcp), ("ident", 113, On::Tcp),
    ("sftp", 115, On::Tcp),
    ("uucp-path", 117, On::Tcp),
    ("nntp", 119, On::Tcp), ("readnews", 119, On::Tcp), ("untp", 119, On::Tcp),
    ("ntp", 123, On::Both),
    ("pwdgen", 129, On::Both),
    ("epmap", 135, On::Both),
    ("netbios-ns", 137, On::Both),
    ("netbios-dgm", 138, On::Both),
    ("netbios-ssn", 139, On::Both),
    ("imap", 143, On::Both), ("imap2", 143, On::Both),
    ("bftp", 152, On::Tcp),
    ("snmp", 161, On::Udp),
    ("snmp-trap", 162, On::Udp), ("snmptrap", 162, On::Udp),
    ("cmip-man", 163, On::Both),
    ("cmip-agent", 164, On::Both),
    ("xdmcp", 177, On::Both),
    ("nextstep", 178, On::Both), ("NeXTStep", 178, On::Both), ("NextStep", 178, On::Both),
    ("bgp", 179, On::Both),
    ("prospero", 191, On::Both),
    ("irc", 194, On::Both),
    ("smux", 199, On::Both),
    ("at-rtmp", 201, On::Both),
    ("at-nbp", 202, On::Both),
    ("at-echo", 204, On::Both),
    ("at-zis", 206, On::Both),
    ("z3950", 210, On::Both), ("wais", 210, On::Both),
    ("ipx", 213, On::Both),
    ("imap3", 220, On::Both),
    ("ulistserv", 372, On::Both),
    ("ldap", 389, On::Both),
    ("svrloc", 427, On::Both),
    ("nnsp", 433, On::Tcp), ("usenet", 433, On::Tcp),
    ("https", 443, On::Both),
    ("kpasswd", 464, On::Both),
    ("photuris", 468, On::Both),
    ("isakmp", 500, On::Udp),
    ("exec", 512, On::Tcp),
    ("biff", 512, On::Udp), ("comsat", 512, On::Udp),
    ("login", 513, On::Tcp),
    ("who", 513, On::Udp), ("whod", 513, On::Udp),
    ("shell", 514, On::Tcp), ("cmd", 514, On::Tcp),
    ("syslog", 514, On::Udp),
    ("printer", 515, On::Tcp), ("spooler", 515, On::Tcp),
    ("talk", 517, On::Udp),
    ("ntalk", 518, On::Udp),
    ("route", 520, On::Udp), ("router", 520, On::Udp), ("routed", 520, On::Udp),
    ("efs", 521, On::Tcp),
    ("timed", 525, On::Udp), ("timeserver", 525, On::Udp),
    ("tempo", 526, On::Tcp), ("newdate", 526, On::Tcp),
    ("courier", 530, On::Tcp), ("rpc", 530, On::Tcp),
    ("conference", 531, On::Tcp), ("chat", 531, On::Tcp),
    ("netnews", 532, On::Tcp),
    ("netwall", 533, On::Udp),
    ("uucp", 540, On::Tcp), ("uucpd", 540, On::Tcp),
    ("klogin", 543, On::Tcp),
    ("kshell", 544, On::Tcp), ("krcmd", 544, On::Tcp),
    ("ekshell", 545, On::Tcp),
    ("remotefs", 556, On::Tcp), ("rfs_server", 556, On::Tcp), ("rfs", 556, On::Tcp),
    ("submission", 587, On::Both), ("msa", 587, On::Both),
    ("ldaps", 636, On::Both),
    ("silc", 706, On::Both),
    ("kerberos-adm", 749, On::Both),
    ("kerberos-iv", 750, On::Both), ("kdc", 750, On::Both),
    ("kerberos_master", 751, On::Both), ("kerberos-master", 751, On::Both),
    ("krb_prop", 754, On::Tcp), ("hprop", 754, On::Tcp),
    ("krbupdate", 760, On::Tcp), ("kreg", 760, On::Tcp),
    ("domain-s", 853, On::Both),
    ("supfilesrv", 871, On::Tcp),
    ("rsync", 873, On::Tcp),
    ("cddb", 888, On::Tcp),
    ("imaps", 993, On::Both),
    ("pop3s", 995, On::Both), ("spop3", 995, On::Both),
    ("socks", 1080, On::Tcp),
    ("kpop", 1109, On::Tcp),
    ("supfiledbg", 1127, On::Tcp),
    ("openvpn", 1194, On::Both),
    ("ms-sql-s", 1433, On::Both),
    ("ms-sql-m", 1434, On::Both),
    ("ingreslock", 1524, On::Both),
    ("prospero-np", 1525, On::Both),
    ("datametrics", 1645, On::Udp),
    ("sa-msg-port", 1646, On::Udp),
    ("l2tp", 1701, On::Udp),
    ("pptp", 1723, On::Both),
    ("radius", 1812, On::Udp),
    ("radacct", 1813, On::Udp),
    ("nfsd", 2049, On::Both), ("nfs", 2049, On::Both),
    ("eklogin", 2105, On::Tcp),
    ("ekshell2", 2106, On::Tcp),
    ("rkinit", 2108, On::Tcp),
    ("kf", 2110, On::Tcp),
    ("kx", 2111, On::Tcp),
    ("kip", 2112, On::Tcp),
    ("kauth", 2120, On::Tcp),
    ("iprop", 2121, On::Tcp),
    ("cvspserver", 2401, On::Tcp),
    ("webster", 2627, On::Both),
    ("iscsi", 3260, On::Tcp),
    ("mysql", 3306, On::Tcp),
    ("ms-wbt-server", 3389, On::Tcp),
    ("svn", 3690, On::Both),
    ("sieve", 4190, On::Tcp),
    ("krb524", 4444, On::Both),
    ("ipsec-nat-t", 4500, On::Udp),
    ("rfe", 5002, On::Both),
    ("sip", 5060, On::Both),
    ("sip-tls", 5061, On::Both),
    ("xmpp-client", 5222, On::Tcp), ("jabber-client", 5222, On::Tcp),
    ("xmpp-server", 5269, On::Tcp), ("jabber-server", 5269, On::Tcp),
    ("mdns", 5353, On::Udp),
    ("postgresql", 5432, On::Tcp),
    ("canna", 5680, On::Tcp),
    ("x11", 6000, On::Tcp),
    ("ircd", 6667, On::Tcp),
    ("afs3-fileserver", 7000, On::Udp),
    ("afs3-callback", 7001, On::Udp),
    ("afs3-prserver", 7002, On::Udp),
    ("afs3-vlserver", 7003, On::Udp),
    ("afs3-kaserver", 7004, On::Udp),
    ("afs3-volser", 7005, On::Udp),
    ("afs3-errors", 7006, On::Udp),
    ("afs3-bos", 7007, On::Udp),
    ("afs3-update", 7008, On::Udp),
    ("afs3-rmtsys", 7009, On::Udp),
    ("icb", 7326, On::Tcp),
    ("git", 9418, On::Tcp),
    ("hunt", 26740, On::Udp),
];

fn on_proto(on: On, udp: bool) -> bool {
    matches!(
        (on, udp),
        (On::Both, _) | (On::Tcp, false) | (On::Udp, true)
    )
}

/// The port of service `name`: its TCP port, else its UDP port (pfctl's
/// `getservice`).
pub(crate) fn service_by_name(name: &str) -> Option<u16> {
    let find = |udp: bool| {
        SERVICES
            .iter()
            .find(|(n, _, on)| *n == name && on_proto(*on, udp))
            .map(|(_, p, _)| *p)
    };
    find(false).or_else(|| find(true))
}

/// The name `pfctl -sr` prints for `port` in a rule of protocol `proto`
/// (`getservbyport(port, "tcp"|"udp")`), if the port has one.
pub(crate) fn service_name(port: u16, proto: u8) -> Option<&'static str> {
    let udp = proto == crate::flow::proto::UDP;
    SERVICES
        .iter()
        .find(|(_, p, on)| *p == port && on_proto(*on, udp))
        .map(|(n, _, _)| *n)
        // Printed names must parse back to the same port.
        .filter(|n| service_by_name(n) == Some(port))
}

/// ICMP types (pfctl's `icmp_type` table).
const ICMP_TYPES: &[(&str, u8)] = &[
    ("echoreq", 8),
    ("echorep", 0),
    ("unreach", 3),
    ("squench", 4),
    ("redir", 5),
    ("althost", 6),
    ("routeradv", 9),
    ("routersol", 10),
    ("timex", 11),
    ("paramprob", 12),
    ("timereq", 13),
    ("timerep", 14),
    ("inforeq", 15),
    ("inforep", 16),
    ("maskreq", 17),
    ("maskrep", 18),
    ("trace", 30),
    ("dataconv", 31),
    ("mobredir", 32),
    ("ipv6-where", 33),
    ("ipv6-here", 34),
    ("mobregreq", 35),
    ("mobregrep", 36),
    ("skip", 39),
    ("photuris", 40),
];

/// ICMPv6 types (pfctl's `icmp6_type` table).
const ICMP6_TYPES: &[(&str, u8)] = &[
    ("unreach", 1),
    ("toobig", 2),
    ("timex", 3),
    ("paramprob", 4),
    ("echoreq", 128),
    ("echorep", 129),
    ("groupqry", 130),
    ("listqry", 130),
    ("grouprep", 131),
    ("listenrep", 131),
    ("groupterm", 132),
    ("listendone", 132),
    ("routersol", 133),
    ("routeradv", 134),
    ("neighbrsol", 135),
    ("neighbradv", 136),
    ("redir", 137),
    ("routrrenum", 138),
    ("wrureq", 139),
    ("wrurep", 140),
    ("fqdnreq", 139),
    ("fqdnrep", 140),
    ("niqry", 139),
    ("nirep", 140),
    ("listenrepv2", 143),
    ("mtraceresp", 200),
    ("mtrace", 201),
];

/// ICMP codes: (type, name, code) (pfctl's `icmp_code` table).
const ICMP_CODES: &[(u8, &str, u8)] = &[
    (3, "net-unr", 0),
    (3, "host-unr", 1),
    (3, "proto-unr", 2),
    (3, "port-unr", 3),
    (3, "needfrag", 4),
    (3, "srcfail", 5),
    (3, "net-unk", 6),
    (3, "host-unk", 7),
    (3, "isolate", 8),
    (3, "net-prohib", 9),
    (3, "host-prohib", 10),
    (3, "net-tos", 11),
    (3, "host-tos", 12),
    (3, "filter-prohib", 13),
    (3, "host-preced", 14),
    (3, "cutoff-preced", 15),
    (5, "redir-net", 0),
    (5, "redir-host", 1),
    (5, "redir-tos-net", 2),
    (5, "redir-tos-host", 3),
    (9, "normal-adv", 0),
    (9, "common-adv", 16),
    (11, "transit", 0),
    (11, "reassemb", 1),
    (12, "badhead", 0),
    (12, "optmiss", 1),
    (12, "badlen", 2),
    (40, "unknown-ind", 1),
    (40, "auth-fail", 2),
    (40, "decrypt-fail", 3),
];

/// ICMPv6 codes: (type, name, code).
const ICMP6_CODES: &[(u8, &str, u8)] = &[
    (1, "noroute-unr", 0),
    (1, "admin-unr", 1),
    (1, "beyond-unr", 2),
    (1, "addr-unr", 3),
    (1, "port-unr", 4),
    (3, "transit", 0),
    (3, "reassemb", 1),
    (4, "badhead", 0),
    (4, "nxthdr", 1),
    (137, "redironlink", 0),
    (137, "redirrouter", 1),
];

fn types_of(af: Af) -> &'static [(&'static str, u8)] {
    match af {
        Af::Inet => ICMP_TYPES,
        Af::Inet6 => ICMP6_TYPES,
    }
}

fn codes_of(af: Af) -> &'static [(u8, &'static str, u8)] {
    match af {
        Af::Inet => ICMP_CODES,
        Af::Inet6 => ICMP6_CODES,
    }
}

/// The ICMP (`Af::Inet`) or ICMPv6 (`Af::Inet6`) type named `name`.
pub(crate) fn icmp_type_by_name(af: Af, name: &str) -> Option<u8> {
    types_of(af)
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
}

/// The canonical name of ICMP type `ty` in family `af`.
pub(crate) fn icmp_type_name(af: Af, ty: u8) -> Option<&'static str> {
    types_of(af).iter().find(|(_, t)| *t == ty).map(|(n, _)| *n)
}

/// The code named `name` of ICMP type `ty` in family `af`.
pub(crate) fn icmp_code_by_name(af: Af, ty: u8, name: &str) -> Option<u8> {
    codes_of(af)
        .iter()
        .find(|(t, n, _)| *t == ty && *n == name)
        .map(|(_, _, c)| *c)
}

/// The canonical name of code `code` of ICMP type `ty` in family `af`.
pub(crate) fn icmp_code_name(af: Af, ty: u8, code: u8) -> Option<&'static str> {
    codes_of(af)
        .iter()
        .find(|(t, _, c)| *t == ty && *c == code)
        .map(|(_, n, _)| *n)
}

/// TCP flag letters in bit order (pfctl's `tcpflags`): F S R P A U E W.
pub(crate) const TCP_FLAG_LETTERS: &[u8; 8] = b"FSRPAUEW";

/// pfctl's TOS names (`map_tos`): DiffServ code points (RFC 2474, RFC
/// 2597, RFC 3246) and IP precedence / RFC 1349 names, as TOS byte values.
const TOS_NAMES: &[(&str, u8)] = &[
    ("af11", 0x28),
    ("af12", 0x30),
    ("af13", 0x38),
    ("af21", 0x48),
    ("af22", 0x50),
    ("af23", 0x58),
    ("af31", 0x68),
    ("af32", 0x70),
    ("af33", 0x78),
    ("af41", 0x88),
    ("af42", 0x90),
    ("af43", 0x98),
    ("critical", 0xa0),
    ("cs0", 0x00),
    ("cs1", 0x20),
    ("cs2", 0x40),
    ("cs3", 0x60),
    ("cs4", 0x80),
    ("cs5", 0xa0),
    ("cs6", 0xc0),
    ("cs7", 0xe0),
    ("ef", 0xb8),
    ("inetcontrol", 0xc0),
    ("lowdelay", 0x10),
    ("netcontrol", 0xe0),
    ("reliability", 0x04),
    ("throughput", 0x08),
];

/// The TOS byte pfctl gives the name `name`.
pub(crate) fn tos_by_name(name: &str) -> Option<u8> {
    TOS_NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Parses flag letters (`"SA"`); `None` on an unknown letter.
pub(crate) fn parse_tcp_flags(s: &str) -> Option<u8> {
    let mut f = 0u8;
    for ch in s.bytes() {
        let bit = TCP_FLAG_LETTERS.iter().position(|l| *l == ch)?;
        f |= 1 << bit;
    }
    Some(f)
}

/// Formats flag bits as letters, in pfctl's order.
pub(crate) fn format_tcp_flags(f: u8, out: &mut String) {
    for (bit, letter) in TCP_FLAG_LETTERS.iter().enumerate() {
        if f & (1 << bit) != 0 {
            out.push(*letter as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::tcp_flags;

    #[test]
    fn canonical_names_round_trip() {
        for (_, p) in PROTOCOLS {
            let name = proto_name(*p).unwrap();
            assert_eq!(proto_by_name(name), Some(*p));
        }
        for (name, p, _) in SERVICES {
            for proto in [crate::flow::proto::TCP, crate::flow::proto::UDP] {
                if let Some(n) = service_name(*p, proto) {
                    assert_eq!(service_by_name(n), Some(*p), "{n} for {name}");
                }
            }
        }
        for af in [Af::Inet, Af::Inet6] {
            for (_, t) in types_of(af) {
                let n = icmp_type_name(af, *t).unwrap();
                assert_eq!(icmp_type_by_name(af, n), Some(*t));
            }
            for (t, _, c) in codes_of(af) {
                let n = icmp_code_name(af, *t, *c).unwrap();
                assert_eq!(icmp_code_by_name(af, *t, n), Some(*c));
            }
        }
    }

    #[test]
    fn well_known_values() {
        use crate::flow::proto::{TCP, UDP};
        assert_eq!(service_by_name("http"), Some(80));
        assert_eq!(service_name(80, TCP), Some("www"));
        assert_eq!(service_by_name("domain"), Some(53));
        // Names the short table lacked, and UDP-only names.
        assert_eq!(service_by_name("echo"), Some(7));
        assert_eq!(service_by_name("mysql"), Some(3306));
        assert_eq!(service_by_name("syslog"), Some(514));
        assert_eq!(service_name(514, UDP), Some("syslog"));
        assert_eq!(service_name(514, TCP), Some("shell"));
        assert_eq!(service_by_name("ipsec-nat-t"), Some(4500));
        assert_eq!(service_by_name("nosuchservice"), None);
        assert_eq!(proto_by_name("icmp6"), Some(58));
        assert_eq!(proto_name(58), Some("ipv6-icmp"));
        assert_eq!(icmp_type_by_name(Af::Inet, "echoreq"), Some(8));
        assert_eq!(icmp_type_by_name(Af::Inet6, "echoreq"), Some(128));
        assert_eq!(icmp_code_by_name(Af::Inet, 3, "port-unr"), Some(3));
        assert_eq!(icmp_code_by_name(Af::Inet6, 1, "port-unr"), Some(4));
    }

    #[test]
    fn flag_letters_match_header_bits() {
        assert_eq!(parse_tcp_flags("S"), Some(tcp_flags::SYN));
        assert_eq!(parse_tcp_flags("SA"), Some(tcp_flags::SYN | tcp_flags::ACK));
        assert_eq!(parse_tcp_flags("FSRPAUEW"), Some(0xff));
        assert_eq!(parse_tcp_flags("X"), None);
        let mut s = String::new();
        format_tcp_flags(tcp_flags::SYN | tcp_flags::ACK, &mut s);
        assert_eq!(s, "SA");
    }
}
