//! Name tables the pf.conf subset understands: protocols (OpenBSD's
//! `/etc/protocols` names), services (the `/etc/services` names that are the
//! same for TCP and UDP), ICMP and ICMPv6 types and codes (pfctl's names),
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

/// Services whose TCP and UDP names agree in OpenBSD's `/etc/services`;
/// the first name of a port is canonical (`www` for 80, as pfctl prints).
const SERVICES: &[(&str, u16)] = &[
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("www", 80),
    ("http", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("sunrpc", 111),
    ("auth", 113),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("snmptrap", 162),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("isakmp", 500),
    ("submission", 587),
    ("ldaps", 636),
    ("imaps", 993),
    ("pop3s", 995),
    ("openvpn", 1194),
    ("radius", 1812),
    ("radacct", 1813),
    ("nfsd", 2049),
    ("ipsec-nat-t", 4500),
];

/// The port of service `name`.
pub(crate) fn service_by_name(name: &str) -> Option<u16> {
    SERVICES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// The canonical service name of `port`, if any.
pub(crate) fn service_name(port: u16) -> Option<&'static str> {
    SERVICES.iter().find(|(_, p)| *p == port).map(|(n, _)| *n)
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
        for (_, p) in SERVICES {
            assert_eq!(service_by_name(service_name(*p).unwrap()), Some(*p));
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
        assert_eq!(service_by_name("http"), Some(80));
        assert_eq!(service_name(80), Some("www"));
        assert_eq!(service_by_name("domain"), Some(53));
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
