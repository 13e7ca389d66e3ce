//! Ruleset tests: parsing of every construct, every error with its
//! position, canonical text, evaluation semantics, and property tests
//! against a naive reference evaluator.

use super::*;
use crate::flow::{proto, tcp_flags, Direction, IcmpInfo, L4Info, PacketInfo, TcpInfo};
use crate::timeouts::TimeoutClass;

const IFS: &[(&str, IfIndex)] = &[
    ("lan0", IfIndex(0)),
    ("wan0", IfIndex(1)),
    ("dmz0", IfIndex(2)),
    ("lo0", IfIndex(3)),
];
const LAN: IfIndex = IfIndex(0);
const WAN: IfIndex = IfIndex(1);
const DMZ: IfIndex = IfIndex(2);

fn ip(s: &str) -> (Af, Addr) {
    Addr::from_ip(s.parse().unwrap())
}

fn self_addrs() -> Vec<(Af, Addr)> {
    vec![ip("10.1.2.3"), ip("2001:db8::1")]
}

/// The names of the test box: lan0 holds 10.1.2.3/24 and 2001:db8::1/64
/// (the `self` addresses), carp1 the VIP 10.1.2.254 on lan0, and the
/// groups `carp` and `internal` hold carp1.
fn names() -> Vec<NamedInterface> {
    let lan = vec![
        (Af::Inet, ip("10.1.2.3").1, 24),
        (Af::Inet6, ip("2001:db8::1").1, 64),
    ];
    let vip = vec![(Af::Inet, ip("10.1.2.254").1, 24)];
    let named = |name: &str, ports: u32, addrs: &Vec<(Af, Addr, u8)>| NamedInterface {
        name: name.into(),
        ports,
        addrs: addrs.clone(),
    };
    vec![
        named("lan0", 1 << LAN.0, &lan),
        named(
            "wan0",
            1 << WAN.0,
            &vec![
                (Af::Inet, ip("192.0.2.1").1, 24),
                (Af::Inet, ip("192.0.2.2").1, 24),
            ],
        ),
        named("carp1", 1 << LAN.0, &vip),
        named("carp", 1 << LAN.0, &vip),
        named("internal", 1 << LAN.0, &vip),
    ]
}

fn compile_with(src: &str, selfs: &[(Af, Addr)]) -> Result<Ruleset, RuleError> {
    let names = names();
    let env = RuleEnv {
        interfaces: IFS,
        self_addrs: selfs,
        names: &names,
    };
    Ruleset::compile(src, "pf.conf", &env)
}

fn rs(src: &str) -> Ruleset {
    match compile_with(src, &self_addrs()) {
        Ok(r) => r,
        Err(e) => panic!("compile failed: {e}\n{src}"),
    }
}

fn err(src: &str) -> RuleError {
    match compile_with(src, &self_addrs()) {
        Ok(r) => panic!("expected an error, compiled {} rules:\n{src}", r.len()),
        Err(e) => e,
    }
}

/// Asserts the error's position and that its message contains `msg`.
fn assert_err(src: &str, line: u32, col: u32, msg: &str) {
    let e = err(src);
    assert_eq!(
        (e.line, e.col),
        (line, col),
        "position of {e:?} for:\n{src}"
    );
    assert!(e.msg.contains(msg), "message {:?} lacks {msg:?}", e.msg);
    assert_eq!(e.file, "pf.conf");
    assert_eq!(e.to_string(), format!("pf.conf:{line}:{col}: {}", e.msg));
}

fn texts(r: &Ruleset) -> Vec<&str> {
    (0..r.len()).map(|i| r.rule_text(i)).collect()
}

fn pkt(p: u8, src: &str, sport: u16, dst: &str, dport: u16) -> PacketInfo {
    let (af, s) = ip(src);
    let (_, d) = ip(dst);
    PacketInfo {
        af,
        proto: p,
        src: s,
        dst: d,
        sport,
        dport,
        ip_len: 60,
        ttl: 64,
        ifindex: LAN,
        dir: Direction::In,
        l4: match p {
            proto::TCP => L4Info::Tcp(TcpInfo {
                flags: tcp_flags::SYN,
                ..Default::default()
            }),
            proto::UDP => L4Info::Udp,
            _ => L4Info::Other,
        },
    }
}

fn syn(src: &str, sport: u16, dst: &str, dport: u16) -> PacketInfo {
    pkt(proto::TCP, src, sport, dst, dport)
}

fn tcp_with(flags: u8, src: &str, dst: &str, dport: u16) -> PacketInfo {
    let mut p = syn(src, 40000, dst, dport);
    p.l4 = L4Info::Tcp(TcpInfo {
        flags,
        ..Default::default()
    });
    p
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> PacketInfo {
    pkt(proto::UDP, src, sport, dst, dport)
}

fn icmp(src: &str, dst: &str, ty: u8, code: u8) -> PacketInfo {
    let (af, _) = ip(src);
    let pr = if af == Af::Inet {
        proto::ICMP
    } else {
        proto::ICMPV6
    };
    let mut p = pkt(pr, src, 7, dst, 7);
    p.l4 = L4Info::Icmp(IcmpInfo {
        icmp_type: ty,
        code,
        id: 7,
        ..Default::default()
    });
    p
}

fn on(mut p: PacketInfo, i: IfIndex, d: Direction) -> PacketInfo {
    p.ifindex = i;
    p.dir = d;
    p
}

fn eval(r: &Ruleset, p: &PacketInfo) -> Decision {
    let mut c = vec![RuleCounters::default(); r.len()];
    r.evaluate(p, &mut c)
}

/// The deciding rule's index, or None for the default pass.
fn decider(r: &Ruleset, p: &PacketInfo) -> Option<u32> {
    eval(r, p).rule
}

fn passes(r: &Ruleset, p: &PacketInfo) -> bool {
    eval(r, p).action == Action::Pass
}

// ---------------------------------------------------------------- parsing

#[test]
fn empty_and_comment_only_files() {
    let r = rs("");
    assert_eq!(r.len(), 0);
    assert!(r.is_empty());
    let r = rs("# nothing\n\n   # more\n");
    assert_eq!(r.len(), 0);
    assert_eq!(r.options, RuleOptions::default());
    assert_eq!(r.options.limit_states, 100_000);
}

#[test]
fn macros_expand_everywhere() {
    let r = rs(r#"
lan = "lan0"
wan = wan0
web = "10.1.2.3"
ports = "{ 22 80 }"
ifs = "{" $lan $wan "}"
pass in on $lan proto tcp from any to $web port $ports
pass out on $ifs
block on { $lan, dmz0 } from { $web 192.0.2.1 }
"#);
    assert_eq!(
        texts(&r),
        vec![
            "pass in on lan0 inet proto tcp from any to 10.1.2.3 port = ssh flags S/SA",
            "pass in on lan0 inet proto tcp from any to 10.1.2.3 port = www flags S/SA",
            "pass out on lan0 all flags S/SA",
            "pass out on wan0 all flags S/SA",
            "block drop on lan0 inet from 10.1.2.3 to any",
            "block drop on lan0 inet from 192.0.2.1 to any",
            "block drop on dmz0 inet from 10.1.2.3 to any",
            "block drop on dmz0 inet from 192.0.2.1 to any",
        ]
    );
}

#[test]
fn macro_errors_point_at_the_reference() {
    assert_err("pass on $nope", 1, 9, "macro 'nope' is not defined");
    // An error inside macro text is reported at the `$` that brought it.
    assert_err(
        "x = \"bogus0\"\n\npass on  $x",
        3,
        10,
        "unknown interface bogus0",
    );
    assert_err("pass = \"x\"", 1, 1, "reserved word");
    assert_err("a = $a\n", 1, 5, "macro 'a' is not defined");
    assert_err("x =\n", 1, 4, "has no value");
}

#[test]
fn comments_and_continuations() {
    let r = rs("pass in \\\n  on lan0 \\\n  proto udp # trailing comment\n# pass out\n");
    assert_eq!(texts(&r), vec!["pass in on lan0 proto udp all"]);
    // Newlines inside lists are fine.
    let r = rs("pass proto tcp to port {\n  22,\n  80\n}\n");
    assert_eq!(r.len(), 2);
}

#[test]
fn lists_expand_to_the_cross_product_in_pfctl_order() {
    let r = rs("pass in on { lan0 wan0 } proto { tcp, udp } from { 10.0.0.1 10.0.0.2 } to any port { 53 80 }");
    assert_eq!(r.len(), 2 * 2 * 2 * 2);
    let t = texts(&r);
    assert_eq!(
        t[0],
        "pass in on lan0 inet proto tcp from 10.0.0.1 to any port = domain flags S/SA"
    );
    assert_eq!(
        t[1],
        "pass in on lan0 inet proto tcp from 10.0.0.1 to any port = www flags S/SA"
    );
    assert_eq!(
        t[2],
        "pass in on lan0 inet proto tcp from 10.0.0.2 to any port = domain flags S/SA"
    );
    assert_eq!(
        t[4],
        "pass in on lan0 inet proto udp from 10.0.0.1 to any port = domain"
    );
    assert_eq!(
        t[8],
        "pass in on wan0 inet proto tcp from 10.0.0.1 to any port = domain flags S/SA"
    );
    assert_eq!(
        t[15],
        "pass in on wan0 inet proto udp from 10.0.0.2 to any port = www"
    );
}

#[test]
fn mixed_families_drop_mismatching_combinations() {
    let r = rs("pass from { 10.0.0.1, 2001:db8::5 } to { 192.0.2.0/24 2001:db8::/32 }");
    assert_eq!(
        texts(&r),
        vec![
            "pass inet from 10.0.0.1 to 192.0.2.0/24 flags S/SA",
            "pass inet6 from 2001:db8::5 to 2001:db8::/32 flags S/SA",
        ]
    );
    let r = rs("pass inet6 from { 10.0.0.1, 2001:db8::5 }");
    assert_eq!(
        texts(&r),
        vec!["pass inet6 from 2001:db8::5 to any flags S/SA"]
    );
    assert_err(
        "\n pass inet6 from 10.0.0.1",
        2,
        2,
        "rule expands to no valid combination",
    );
    assert_err(
        "pass from 10.0.0.1 to 2001:db8::1",
        1,
        1,
        "no valid combination",
    );
}

#[test]
fn every_rule_keyword_in_canonical_text() {
    let cases: &[(&str, &str)] = &[
        ("pass", "pass all flags S/SA"),
        ("pass all", "pass all flags S/SA"),
        ("block", "block drop all"),
        ("block drop in all", "block drop in all"),
        (
            "block return out quick on wan0",
            "block return out quick on wan0 all",
        ),
        (
            "block return-rst proto tcp",
            "block return-rst proto tcp all",
        ),
        ("block return-icmp", "block return-icmp all"),
        (
            "pass quick on ! wan0 allow-opts",
            "pass quick on ! wan0 all flags S/SA allow-opts",
        ),
        ("pass on !wan0 inet6", "pass on ! wan0 inet6 all flags S/SA"),
        ("pass proto 47", "pass proto gre all"),
        ("pass proto 253", "pass proto 253 all"),
        (
            "pass proto icmp6 to 2001:db8::1",
            "pass inet6 proto ipv6-icmp from any to 2001:db8::1",
        ),
        (
            "pass from 10.1.2.3/16",
            "pass inet from 10.1.0.0/16 to any flags S/SA",
        ),
        (
            "pass to ! 192.0.2.1",
            "pass inet from any to ! 192.0.2.1 flags S/SA",
        ),
        ("pass from 0.0.0.0/0", "pass inet all flags S/SA"),
        (
            "pass from ! 0.0.0.0/0",
            "pass inet from ! 0.0.0.0/0 to any flags S/SA",
        ),
        ("pass proto tcp flags any", "pass proto tcp all flags any"),
        ("pass proto tcp flags /SA", "pass proto tcp all flags /SA"),
        (
            "pass proto tcp flags SA/SAFR",
            "pass proto tcp all flags SA/FSRA",
        ),
        ("pass proto tcp no state", "pass proto tcp all no state"),
        ("pass proto udp keep state", "pass proto udp all"),
        (
            "pass proto tcp keep state (max 10, sloppy)",
            "pass proto tcp all flags S/SA keep state (max 10, sloppy, adaptive.start 6, adaptive.end 12)",
        ),
        (
            "pass keep state (no-sync, udp.first 5, tcp.first 7)",
            "pass all flags S/SA keep state (no-sync, tcp.first 7, udp.first 5)",
        ),
        ("pass keep state (max 0)", "pass all flags S/SA"),
        ("block no state", "block drop all"),
        (
            "pass inet proto icmp icmp-type echoreq",
            "pass inet proto icmp all icmp-type echoreq",
        ),
        (
            "pass inet proto icmp icmp-type 3 code 3",
            "pass inet proto icmp all icmp-type unreach code port-unr",
        ),
        (
            "pass inet proto icmp icmp-type 99 code 7",
            "pass inet proto icmp all icmp-type 99 code 7",
        ),
        (
            "pass inet6 proto icmp6 icmp6-type echoreq",
            "pass inet6 proto ipv6-icmp all icmp6-type echoreq",
        ),
        (
            "pass inet6 proto icmp6 icmp6-type unreach code port-unr",
            "pass inet6 proto ipv6-icmp all icmp6-type unreach code port-unr",
        ),
        (
            "pass proto tcp from port 1024:65535 to port https",
            "pass proto tcp from any port 1024:65535 to any port = https flags S/SA",
        ),
        (
            "pass proto udp label \"dns \\\"in\\\"\"",
            "pass proto udp all label \"dns \\\"in\\\"\"",
        ),
        ("pass from self", "pass from self to any flags S/SA"),
        ("pass to lan0", "pass from any to lan0 flags S/SA"),
        ("pass to (lan0)", "pass from any to lan0 flags S/SA"),
        (
            "pass from lan0:network",
            "pass from lan0:network to any flags S/SA",
        ),
        (
            "pass on lan0 allow-opts",
            "pass on lan0 all flags S/SA allow-opts",
        ),
        ("table <t> { 10/8 }", ""),
    ];
    for (src, want) in cases {
        if src.starts_with("table") {
            // `10/8` is not an address pfctl accepts either.
            continue;
        }
        let r = rs(src);
        assert_eq!(r.rule_text(0), *want, "for {src}");
    }
    assert_eq!(rs("pass from self").len(), 1);
    assert_eq!(rs("pass").rule_text(5), "");
}

#[test]
fn port_operators_parse_all_forms() {
    let r = rs("pass proto tcp to port { = 1, != 2, < 3, <= 4, > 5, >= 6, 7:8, 9 >< 10, 11 <> 12, 13, ssh, http }");
    let want = [
        // Port names of OpenBSD's /etc/services, as pfctl prints them.
        "port = tcpmux",
        "port != 2",
        "port < 3",
        "port <= 4",
        "port > 5",
        "port >= 6",
        "port 7:8",
        "port 9 >< 10",
        "port 11 <> 12",
        "port = daytime",
        "port = ssh",
        "port = www",
    ];
    assert_eq!(r.len(), want.len());
    for (i, w) in want.iter().enumerate() {
        assert!(r.rule_text(i).contains(w), "{} lacks {w}", r.rule_text(i));
    }
    assert_eq!(
        rs("pass proto tcp to port ftp:ssh").rule_text(0),
        "pass proto tcp from any to any port 21:22 flags S/SA"
    );
}

#[test]
fn tables_parse_with_negation_self_and_forward_use() {
    let r = rs(r#"
pass from <late>
table <late> persist const { 10.0.0.0/8, !10.1.0.0/16
    2001:db8::/32 self }
table <empty> persist
"#);
    assert_eq!(texts(&r), vec!["pass from <late> to any flags S/SA"]);
    assert_eq!(
        r.tables(),
        vec![("late".to_string(), 5), ("empty".to_string(), 0)]
    );
    assert_err(
        "table <a> { 1.2.3.4 }\ntable <a> { 1.2.3.5 }",
        2,
        7,
        "table <a> is already defined",
    );
    assert_err("pass to <nope>", 1, 9, "table <nope> is not defined");
    assert_err(
        "table <a> { 10.0.0.0/8\n  !10.0.0.0/8 }",
        2,
        3,
        "conflicting entries for 10.0.0.0/8",
    );
    assert_err("table <a> { any }", 1, 13, "must be an address");
    assert_err("table <a> { <b> }", 1, 13, "must be an address");
    assert_err(
        "table <a> file \"/nonexistent/dpf-x\"",
        1,
        16,
        "cannot read table file /nonexistent/dpf-x",
    );
    assert_err("table <a> file \"/dev/null\"", 1, 16, "not a regular file");
    assert_err(
        "table <a> persist bogus",
        1,
        19,
        "persist, const, '{' or file",
    );
    assert_err(
        "table <a> counters { 1.2.3.4 }",
        1,
        11,
        "table counters are not supported",
    );
    assert_err(
        "table <abcdefghijabcdefghijabcdefghijxx> { }",
        1,
        8,
        "too long",
    );
    // Duplicates are merged.
    assert_eq!(
        rs("table <a> { 1.2.3.4 1.2.3.4/32 }").tables(),
        vec![("a".to_string(), 1)]
    );
}

/// A scratch file for a test (removed on drop).
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> TempFile {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "dpf-rules-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&p, text).unwrap();
        TempFile(p)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn table_files_load_with_comments_negation_and_lists() {
    let a = TempFile::new(
        "a",
        "# clients\n10.0.0.0/8\n\n  !10.1.0.0/16   # not the lab\n2001:db8::/32 192.0.2.1\n",
    );
    let b = TempFile::new("b", "198.51.100.0/24\n10.0.0.0/8\n");
    let src = format!(
        "table <t> persist {{ 203.0.113.5 }} file \"{}\" file \"{}\" const\npass in from <t>\n",
        a.path(),
        b.path()
    );
    let r = rs(&src);
    assert_eq!(r.tables(), vec![("t".to_string(), 6)]);
    let set = r.table_set();
    let (_, t) = set.find("t").unwrap();
    let f = t.flags();
    assert!(f.persist && f.constant && f.referenced && f.defined_with_addrs);
    let bits = |s: &str| u128::from_be_bytes(Addr::from_ip(s.parse().unwrap()).1 .0);
    assert!(t.matches(Af::Inet, bits("10.9.9.9")));
    assert!(!t.matches(Af::Inet, bits("10.1.2.3")));
    assert!(t.matches(Af::Inet, bits("203.0.113.5")));
    assert!(t.matches(Af::Inet6, bits("2001:db8::77")));
    // Without addresses the table is kept as it is at a reload.
    let r = rs("table <bare> persist\ntable <empty> persist {}\n");
    let set = r.table_set();
    assert!(!set.find("bare").unwrap().1.flags().defined_with_addrs);
    assert!(set.find("empty").unwrap().1.flags().defined_with_addrs);
}

#[test]
fn table_file_errors_name_the_file_line_and_column() {
    let f = TempFile::new("bad", "10.0.0.1\n# fine\n\n   10.0.0.256\n");
    let e = err(&format!("table <t> file \"{}\"\n", f.path()));
    assert_eq!((e.file.as_str(), e.line, e.col), (f.path().as_str(), 4, 4));
    assert!(e.msg.contains("10.0.0.256"), "{}", e.msg);
    assert_eq!(e.to_string(), format!("{}:4:4: {}", f.path(), e.msg));
    let f = TempFile::new("conflict", "10.0.0.0/8\n!10.0.0.0/8\n");
    let e = err(&format!("table <t> file \"{}\"\n", f.path()));
    assert_eq!((e.line, e.col), (2, 1));
    assert!(
        e.msg.contains("conflicting entries for 10.0.0.0/8"),
        "{}",
        e.msg
    );
    // A relative path is taken from the ruleset file's directory.
    let dir = std::env::temp_dir();
    let name = f.0.file_name().unwrap().to_str().unwrap().to_string();
    let env = RuleEnv {
        interfaces: IFS,
        self_addrs: &[],
        names: &[],
    };
    let conf = dir.join("pf.conf").display().to_string();
    let e = Ruleset::compile(&format!("table <t> file \"{name}\"\n"), &conf, &env).unwrap_err();
    assert_eq!(e.file, f.path(), "{e}");
}

#[test]
fn set_options() {
    let r = rs(r#"
set limit states 5000
set timeout tcp.established 3600
set timeout { udp.first 10, icmp.first 5 other.single 7 }
set skip on lo0
set skip on { dmz0, lo0 }
set block-policy return
block
"#);
    assert_eq!(r.options.limit_states, 5000);
    assert_eq!(r.options.timeouts.secs(TimeoutClass::TcpEstablished), 3600);
    assert_eq!(r.options.timeouts.secs(TimeoutClass::UdpFirst), 10);
    assert_eq!(r.options.timeouts.secs(TimeoutClass::IcmpFirst), 5);
    assert_eq!(r.options.timeouts.secs(TimeoutClass::OtherSingle), 7);
    assert_eq!(r.options.timeouts.secs(TimeoutClass::TcpFirst), 120);
    assert_eq!(r.options.skip_mask, 1 << 3 | 1 << DMZ.0);
    assert!(r.is_skipped(IfIndex(3)) && r.is_skipped(DMZ) && !r.is_skipped(LAN));
    assert_eq!(r.options.block_policy, BlockPolicy::Return);
    assert_eq!(r.rule_text(0), "block return all");
    assert_eq!(rs("set limit { states 7 }").options.limit_states, 7);
    assert_eq!(
        rs("set block-policy drop\nblock").rule_text(0),
        "block drop all"
    );
}

#[test]
fn set_reassemble_limit_frags_and_timeout_frag() {
    let d = rs("pass").options;
    assert!(d.reassemble && !d.reassemble_no_df);
    assert_eq!((d.limit_frags, d.frag_timeout_s), (65_536, 60));
    let o = rs("set reassemble no").options;
    assert!(!o.reassemble);
    let o = rs("set reassemble yes no-df").options;
    assert!(o.reassemble && o.reassemble_no_df);
    let o = rs("set limit { states 10, frags 20 }\nset timeout { tcp.first 9, frag 30 }").options;
    assert_eq!(
        (o.limit_states, o.limit_frags, o.frag_timeout_s),
        (10, 20, 30)
    );
    assert_eq!(o.timeouts.secs(TimeoutClass::TcpFirst), 9);
    assert_eq!(rs("set limit frags 0").options.limit_frags, 0);
}

#[test]
fn set_errors() {
    assert_err(
        "set timeout tcp.bogus 5",
        1,
        13,
        "unknown timeout tcp.bogus",
    );
    assert_err("set timeout interval 5", 1, 13, "not supported");
    assert_err("set timeout tcp.first x", 1, 23, "not a number");
    assert_err(
        "set limit tables 5",
        1,
        11,
        "only 'states', 'src-nodes' and 'frags'",
    );
    assert_err("set reassemble maybe", 1, 16, "unknown reassemble value");
    assert_err("set reassemble", 1, 15, "expected 'yes' or 'no'");
    assert_err("set reassemble yes no-dff", 1, 20, "expected end of line");
    assert_err("set timeout frag x", 1, 18, "not a number");
    assert_err("set limit states 99999999999", 1, 18, "out of range");
    // pf skips names that do not exist (`set skip on lo`).
    assert_eq!(rs("set skip on { lo eth7 }").options.skip_mask, 0);
    assert_err("set skip lo0", 1, 10, "expected 'on'");
    assert_err("set block-policy maybe", 1, 18, "unknown block-policy");
    assert_err(
        "set optimization aggressive",
        1,
        5,
        "set optimization is not supported",
    );
    assert_err("set limit states 5 6", 1, 20, "expected end of line");
}

#[test]
fn rule_errors_carry_line_and_column() {
    assert_err("pass in on eth9", 1, 12, "unknown interface eth9");
    assert_err(
        "pass on { lan0\n   bogus1 }",
        2,
        4,
        "unknown interface bogus1",
    );
    assert_err("pass proto frob", 1, 12, "unknown protocol frob");
    assert_err("pass proto 256", 1, 12, "protocol 256 outside range");
    assert_err("pass proto 0", 1, 12, "proto 0 cannot be used");
    assert_err("pass proto tcp flags X/SA", 1, 22, "bad flags X");
    assert_err("pass proto tcp flags SA/S", 1, 16, "flags always false");
    assert_err("pass proto tcp flags S", 1, 23, "expected '/'");
    assert_err(
        "pass proto udp flags S/SA",
        1,
        16,
        "flags only apply to tcp",
    );
    assert_err(
        "pass proto tcp flags any flags any",
        1,
        26,
        "flags cannot be redefined",
    );
    assert_err(
        "pass proto icmp to port 80",
        1,
        25,
        "port only applies to tcp/udp",
    );
    assert_err(
        "pass proto { tcp icmp } to port 80",
        1,
        33,
        "port only applies to tcp/udp",
    );
    assert_err("pass to port 80", 1, 14, "port only applies to tcp/udp");
    assert_err(
        "pass proto tcp to port 70000",
        1,
        24,
        "illegal port value 70000",
    );
    assert_err(
        "pass proto tcp to port gopherx",
        1,
        24,
        "unknown port gopherx",
    );
    assert_err("pass proto tcp to port = 1:2", 1, 24, "':' cannot be used");
    assert_err(
        "pass proto tcp to port 1:2 >< 5",
        1,
        24,
        "':' cannot be used",
    );
    assert_err(
        "pass inet proto tcp icmp-type echoreq",
        1,
        31,
        "icmp-type requires proto icmp",
    );
    assert_err(
        "pass inet6 proto icmp6 icmp-type echoreq",
        1,
        34,
        "icmp-type requires proto icmp",
    );
    assert_err(
        "pass inet proto icmp icmp6-type echoreq",
        1,
        33,
        "icmp6-type requires proto icmp6",
    );
    assert_err(
        "pass proto icmp icmp-type echoreq",
        1,
        27,
        "must indicate address family",
    );
    assert_err(
        "pass inet proto icmp icmp-type bogus",
        1,
        32,
        "unknown icmp-type bogus",
    );
    assert_err(
        "pass inet proto icmp icmp-type 300",
        1,
        32,
        "illegal icmp-type 300",
    );
    assert_err(
        "pass inet proto icmp icmp-type unreach code nope",
        1,
        45,
        "unknown icmp-code nope",
    );
    assert_err(
        "pass inet6 proto icmp",
        1,
        18,
        "proto icmp doesn't match address family inet6",
    );
    assert_err(
        "pass inet proto icmp6",
        1,
        17,
        "proto icmp6 doesn't match address family inet",
    );
    assert_err(
        "block return-rst proto udp",
        1,
        1,
        "return-rst can only be applied to TCP rules",
    );
    assert_err(
        "block keep state",
        1,
        7,
        "keep state on block rules doesn't make sense",
    );
    assert_err(
        "pass modulate state (sloppy)",
        1,
        6,
        "sloppy state matching cannot be used with synproxy state or modulate state",
    );
    assert_err(
        "pass synproxy state (sloppy)",
        1,
        6,
        "sloppy state matching cannot be used with synproxy state or modulate state",
    );
    assert_err(
        "pass keep state (max 1, max 2)",
        1,
        25,
        "'max' multiple definitions",
    );
    assert_err(
        "pass keep state (sloppy sloppy)",
        1,
        25,
        "expected ',' or ')'",
    );
    assert_err("pass keep state (if-bound)", 1, 18, "not supported");
    assert_err("pass keep state (tcp.frob 1)", 1, 18, "unknown timeout");
    assert_err(
        "pass keep state no state",
        1,
        17,
        "state cannot be redefined",
    );
    assert_err(
        "pass from 10.0.0.0/33",
        1,
        20,
        "prefix length 33 invalid for an IPv4 address",
    );
    assert_err("pass from 2001:db8::/129", 1, 22, "invalid for an IPv6");
    assert_err(
        "pass from www.example.com",
        1,
        11,
        "unknown host 'www.example.com'",
    );
    assert_err("pass from ! any", 1, 13, "'any' cannot be negated");
    assert_err("pass from (lan0", 1, 11, "unbalanced");
    assert_err("pass from no-route", 1, 11, "not supported");
    assert_err("pass from { }", 1, 13, "empty list");
    assert_err("pass quick in", 1, 12, "unexpected 'in'");
    assert_err(
        "pass in on",
        1,
        11,
        "unexpected end of line, expected an interface name",
    );
    assert_err("pass from 10.0.0.1 frob", 1, 20, "unexpected 'frob'");
    assert_err(
        "pass log (user)",
        1,
        11,
        "log (user) is not supported by dpf",
    );
    assert_err(
        "pass in log (to pflog1) all",
        1,
        17,
        "log to pflog1 is not supported",
    );
    assert_err(
        "pass in log (frob) all",
        1,
        14,
        "expected all, matches, to pflog0",
    );
    assert_err("pass in all log", 1, 13, "log goes after the direction");
    assert_err(
        "anchor \"a\" in log",
        1,
        1,
        "log cannot be specified on anchors",
    );
    assert_err(
        "pass in all allow-opts allow-opts",
        1,
        24,
        "allow-opts cannot be redefined",
    );
    assert_err(
        "nat on wan0 to any -> 1.2.3.4",
        1,
        1,
        "'nat' is not supported by dpf",
    );
    assert_err("  frob", 1, 3, "unknown statement 'frob'");
    assert_err("pass on { lan0\n\n", 1, 9, "unbalanced");
    assert_err("pass \"on", 1, 6, "unterminated quoted string");
    assert_err("{ pass }", 1, 1, "expected a statement");
}

#[test]
fn self_without_addresses_matches_nothing() {
    // A bridge has no address: `self` is the empty set (pf resolves it at
    // run time to the box's addresses, which may be none).
    let r = compile_with("block in all\npass in to self no state", &[]).unwrap();
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.3", 22)), Some(0));
    let r = compile_with("block in to ! self", &[]).unwrap();
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.3", 22)), Some(0));
    let r = compile_with("table <s> { self }\npass to <s>", &[]).unwrap();
    assert_eq!(r.tables(), vec![("s".to_string(), 0)]);
}

#[test]
fn canonical_text_parses_back_to_the_same_rules() {
    let src = r#"
table <t> { 10.0.0.0/8 !10.1.0.0/16 }
set block-policy return
block
block return-rst in quick on ! lan0 proto tcp from <t> port 1024:2048 to ! <t> port 22 >< 25
block return-icmp out on wan0 inet6 proto udp from 2001:db8::/48 port != 53 to fe80::1 port 1 <> 9
pass in on lan0 proto { tcp udp } from self to { 10.0.0.0/8, 192.0.2.7 } port { > 1023, <= 80 }
pass inet proto icmp icmp-type { echoreq, unreach code needfrag } keep state (sloppy, max 3)
pass inet6 proto icmp6 icmp6-type neighbrsol no state
pass proto tcp flags /SAFR keep state (tcp.established 60, no-sync) label "x"
"#;
    let r = rs(src);
    for i in 0..r.len() {
        let text = r.rule_text(i);
        let again = rs(&format!("table <t> {{ 10.0.0.0/8 !10.1.0.0/16 }}\n{text}"));
        assert_eq!(again.len(), 1, "{text}");
        assert_eq!(again.rule_text(0), text);
        let (mut a, mut b) = (r.rules[i].clone(), again.rules[0].clone());
        a.skip = [0; compile::SKIP_COUNT];
        b.skip = [0; compile::SKIP_COUNT];
        assert_eq!(
            r.state_timeouts(Some(i as u32)),
            again.state_timeouts(Some(0))
        );
        a.timeouts = None;
        b.timeouts = None;
        assert_eq!(a, b, "{text}");
    }
}

// ------------------------------------------------------------- evaluation

#[test]
fn no_match_is_pass_without_state() {
    let r = rs("");
    let d = eval(&r, &syn("10.0.0.1", 1, "10.0.0.2", 80));
    assert_eq!(d, Decision::DEFAULT_PASS);
    assert!(!d.keep_state);
    let r = rs("block in on wan0");
    let d = eval(&r, &syn("10.0.0.1", 1, "10.0.0.2", 80));
    assert_eq!(d.rule, None);
    assert_eq!(d.action, Action::Pass);
}

#[test]
fn last_match_wins_and_quick_stops() {
    let r = rs("block all\npass proto tcp\nblock proto tcp to port 23");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)), Some(1));
    assert!(passes(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)));
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "2.2.2.2", 23)), Some(2));
    assert!(!passes(&r, &syn("1.1.1.1", 1, "2.2.2.2", 23)));
    assert_eq!(decider(&r, &udp("1.1.1.1", 1, "2.2.2.2", 23)), Some(0));

    let r = rs("block quick proto tcp to port 23\npass all\nblock quick all\npass all");
    let d = eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 23));
    assert_eq!((d.rule, d.action, d.quick), (Some(0), Action::Block, true));
    let d = eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80));
    assert_eq!((d.rule, d.action, d.quick), (Some(2), Action::Block, true));
}

#[test]
fn pass_implies_flags_s_sa_and_keep_state() {
    let r = rs("block all\npass proto tcp to port 80");
    let d = eval(&r, &syn("1.1.1.1", 1000, "2.2.2.2", 80));
    assert_eq!((d.action, d.keep_state), (Action::Pass, true));
    // Without state, a mid-connection ACK does not match `flags S/SA`.
    for flags in [
        tcp_flags::ACK,
        tcp_flags::SYN | tcp_flags::ACK,
        tcp_flags::FIN,
        0,
    ] {
        let d = eval(&r, &tcp_with(flags, "1.1.1.1", "2.2.2.2", 80));
        assert_eq!(
            (d.rule, d.action),
            (Some(0), Action::Block),
            "flags {flags:#x}"
        );
    }
    // S/SA ignores the other bits.
    let d = eval(
        &r,
        &tcp_with(
            tcp_flags::SYN | tcp_flags::ECE | tcp_flags::CWR,
            "1.1.1.1",
            "2.2.2.2",
            80,
        ),
    );
    assert_eq!(d.rule, Some(1));

    let r = rs("block all\npass proto tcp flags any");
    let d = eval(&r, &tcp_with(tcp_flags::ACK, "1.1.1.1", "2.2.2.2", 80));
    assert_eq!((d.rule, d.keep_state), (Some(1), true));

    let r = rs("block all\npass proto tcp no state");
    let d = eval(&r, &tcp_with(tcp_flags::ACK, "1.1.1.1", "2.2.2.2", 80));
    assert_eq!(
        (d.rule, d.action, d.keep_state),
        (Some(1), Action::Pass, false)
    );

    let r = rs("block all\npass proto tcp flags A/A no state");
    assert_eq!(
        decider(
            &r,
            &tcp_with(tcp_flags::ACK | tcp_flags::PSH, "1.1.1.1", "2.2.2.2", 1)
        ),
        Some(1)
    );
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "2.2.2.2", 1)), Some(0));

    // Flags do not constrain UDP; pass keeps state for it too.
    let r = rs("block all\npass");
    let d = eval(&r, &udp("1.1.1.1", 1, "2.2.2.2", 53));
    assert_eq!((d.rule, d.keep_state), (Some(1), true));
    // Block rules have no implied flags.
    let r = rs("pass all no state\nblock proto tcp");
    assert_eq!(
        decider(&r, &tcp_with(tcp_flags::ACK, "1.1.1.1", "2.2.2.2", 80)),
        Some(1)
    );
}

#[test]
fn interfaces_and_negation() {
    let r = rs("block all\npass on lan0 no state\npass on ! dmz0 proto udp no state");
    let p = syn("1.1.1.1", 1, "2.2.2.2", 80);
    assert_eq!(decider(&r, &on(p, LAN, Direction::In)), Some(1));
    assert_eq!(decider(&r, &on(p, WAN, Direction::In)), Some(0));
    let u = udp("1.1.1.1", 1, "2.2.2.2", 80);
    assert_eq!(decider(&r, &on(u, WAN, Direction::Out)), Some(2));
    assert_eq!(decider(&r, &on(u, DMZ, Direction::Out)), Some(0));
    assert_eq!(decider(&r, &on(u, LAN, Direction::Out)), Some(2));
    let r = rs("block on { lan0 !wan0 }");
    assert_eq!(r.len(), 2);
    assert_eq!(decider(&r, &on(u, WAN, Direction::In)), None);
    assert_eq!(decider(&r, &on(u, DMZ, Direction::In)), Some(1));
}

#[test]
fn directions() {
    let r = rs("block in all\npass out all no state");
    let p = syn("1.1.1.1", 1, "2.2.2.2", 80);
    assert_eq!(decider(&r, &on(p, LAN, Direction::In)), Some(0));
    assert_eq!(decider(&r, &on(p, LAN, Direction::Out)), Some(1));
    let r = rs("block all");
    assert_eq!(decider(&r, &on(p, LAN, Direction::In)), Some(0));
    assert_eq!(decider(&r, &on(p, WAN, Direction::Out)), Some(0));
}

#[test]
fn address_families() {
    let r = rs("block inet\npass inet6 no state");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)), Some(0));
    assert_eq!(
        decider(&r, &syn("2001:db8::1", 1, "2001:db8::2", 80)),
        Some(1)
    );
    let r = rs("block from 10.0.0.0/8\nblock from 2001:db8::/32");
    assert_eq!(decider(&r, &syn("10.9.9.9", 1, "2.2.2.2", 80)), Some(0));
    assert_eq!(decider(&r, &syn("11.0.0.0", 1, "2.2.2.2", 80)), None);
    assert_eq!(
        decider(&r, &syn("2001:db8:ffff::1", 1, "2001:db9::1", 80)),
        Some(1)
    );
    assert_eq!(decider(&r, &syn("2001:db9::1", 1, "2001:db8::1", 80)), None);
}

#[test]
fn addresses_networks_and_negation() {
    let r = rs("block to ! 192.0.2.0/24");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "192.0.2.9", 80)), None);
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "192.0.3.9", 80)), Some(0));
    // The rule is inet, so IPv6 is not even considered.
    assert_eq!(decider(&r, &syn("2001:db8::1", 1, "2001:db8::2", 80)), None);
    let r = rs("block from 10.1.2.3 to 10.1.2.4");
    assert_eq!(decider(&r, &syn("10.1.2.3", 1, "10.1.2.4", 80)), Some(0));
    assert_eq!(decider(&r, &syn("10.1.2.4", 1, "10.1.2.3", 80)), None);
}

#[test]
fn tables_longest_prefix_with_negation() {
    let r = rs(r#"
table <nets> { 10.0.0.0/8, !10.1.0.0/16, 10.1.2.0/24, !10.1.2.3, 2001:db8::/32, !2001:db8:1::/48 }
block from <nets>
block to ! <nets>
"#);
    let to_in = "10.0.0.1";
    assert_eq!(decider(&r, &syn("10.200.0.1", 1, to_in, 80)), Some(0));
    assert_eq!(decider(&r, &syn("10.1.9.9", 1, to_in, 80)), None);
    assert_eq!(decider(&r, &syn("10.1.2.200", 1, to_in, 80)), Some(0));
    assert_eq!(decider(&r, &syn("10.1.2.3", 1, to_in, 80)), None);
    assert_eq!(decider(&r, &syn("11.0.0.1", 1, to_in, 80)), None);
    assert_eq!(decider(&r, &syn("11.0.0.1", 1, "11.0.0.2", 80)), Some(1));
    assert_eq!(
        decider(&r, &syn("2001:db8::9", 1, "2001:db8::8", 80)),
        Some(0)
    );
    assert_eq!(
        decider(&r, &syn("2001:db8:1::9", 1, "2001:db8::8", 80)),
        None
    );
    assert_eq!(
        decider(&r, &syn("2001:db8:1::9", 1, "2001:db8:1::8", 80)),
        Some(1)
    );
}

#[test]
fn self_matches_the_box() {
    let r = rs("block in all\npass in to self no state");
    assert_eq!(r.len(), 2, "self is one set, not one rule per address");
    assert_eq!(texts(&r)[1], "pass in from any to self no state");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.3", 22)), Some(1));
    assert_eq!(
        decider(&r, &syn("2001:db8::9", 1, "2001:db8::1", 22)),
        Some(1)
    );
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.4", 22)), Some(0));
    // `! self` is "none of the box's addresses" (pf's dynamic `self`).
    let r = rs("block in to ! self");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.3", 22)), None);
    assert_eq!(decider(&r, &syn("2001:db8::9", 1, "2001:db8::1", 22)), None);
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.4", 22)), Some(0));
    // A table of self is the way to say "none of these".
    let two = [ip("10.1.2.3"), ip("10.1.2.4")];
    let r = compile_with("table <me> { self }\nblock in to ! <me>", &two).unwrap();
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.3", 22)), None);
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.4", 22)), None);
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.5", 22)), Some(0));
    let r = compile_with("block in to ! self", &two).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.3", 22)), None);
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.5", 22)), Some(0));
}

#[test]
fn port_operators_match_all_ten_forms() {
    // (operator text, ports that match, ports that do not)
    let cases: &[(&str, &[u16], &[u16])] = &[
        ("= 80", &[80], &[79, 81]),
        ("80", &[80], &[0, 443]),
        ("http", &[80], &[81]),
        ("!= 80", &[0, 79, 81, 65535], &[80]),
        ("< 80", &[0, 79], &[80, 81]),
        ("<= 80", &[0, 80], &[81]),
        ("> 80", &[81, 65535], &[80, 0]),
        (">= 80", &[80, 81], &[79]),
        ("80:90", &[80, 85, 90], &[79, 91]),
        ("80 >< 90", &[81, 89], &[80, 90, 79, 91]),
        ("80 <> 90", &[0, 79, 91, 65535], &[80, 85, 90]),
    ];
    for (op, yes, no) in cases {
        let to = rs(&format!("block proto {{ tcp udp }} to port {op}"));
        let from = rs(&format!("block proto tcp from port {op}"));
        for p in *yes {
            assert_eq!(
                decider(&to, &syn("1.1.1.1", 5, "2.2.2.2", *p)),
                Some(0),
                "to port {op} {p}"
            );
            assert_eq!(
                decider(&to, &udp("1.1.1.1", 5, "2.2.2.2", *p)),
                Some(1),
                "udp to port {op} {p}"
            );
            assert_eq!(
                decider(&from, &syn("1.1.1.1", *p, "2.2.2.2", 5)),
                Some(0),
                "from port {op} {p}"
            );
        }
        for p in *no {
            assert_eq!(
                decider(&to, &syn("1.1.1.1", 5, "2.2.2.2", *p)),
                None,
                "to port {op} {p}"
            );
            assert_eq!(
                decider(&to, &udp("1.1.1.1", 5, "2.2.2.2", *p)),
                None,
                "udp to port {op} {p}"
            );
            assert_eq!(
                decider(&from, &syn("1.1.1.1", *p, "2.2.2.2", 5)),
                None,
                "from port {op} {p}"
            );
        }
    }
}

#[test]
fn icmp_types_codes_and_replies() {
    let r = rs(r#"
block all
pass inet proto icmp icmp-type echoreq
pass inet proto icmp icmp-type unreach code needfrag
pass inet6 proto icmp6 icmp6-type { echoreq neighbrsol neighbradv }
"#);
    assert_eq!(r.len(), 6);
    let d = eval(&r, &icmp("1.1.1.1", "2.2.2.2", 8, 0));
    assert_eq!((d.rule, d.keep_state), (Some(1), true));
    assert_eq!(decider(&r, &icmp("1.1.1.1", "2.2.2.2", 3, 4)), Some(2));
    // The error message passes but creates no state (pf's state_icmp).
    assert!(!eval(&r, &icmp("1.1.1.1", "2.2.2.2", 3, 4)).keep_state);
    assert_eq!(decider(&r, &icmp("1.1.1.1", "2.2.2.2", 3, 3)), Some(0));
    assert_eq!(decider(&r, &icmp("1.1.1.1", "2.2.2.2", 0, 0)), Some(0));
    assert_eq!(
        decider(&r, &icmp("2001:db8::1", "2001:db8::2", 128, 0)),
        Some(3)
    );
    assert_eq!(
        decider(&r, &icmp("2001:db8::1", "2001:db8::2", 135, 0)),
        Some(4)
    );
    let d = eval(&r, &icmp("2001:db8::1", "2001:db8::2", 136, 0));
    assert_eq!((d.rule, d.keep_state), (Some(5), false));
    assert_eq!(
        decider(&r, &icmp("2001:db8::1", "2001:db8::2", 129, 0)),
        Some(0)
    );
    // ICMP type rules never match other protocols.
    assert_eq!(decider(&r, &udp("1.1.1.1", 8, "2.2.2.2", 8)), Some(0));

    // A stateful rule does not match an ICMP reply, a stateless or sloppy one does.
    let r = rs("block all\npass inet proto icmp");
    assert_eq!(decider(&r, &icmp("1.1.1.1", "2.2.2.2", 0, 0)), Some(0));
    assert_eq!(decider(&r, &icmp("1.1.1.1", "2.2.2.2", 8, 0)), Some(1));
    assert_eq!(decider(&r, &icmp("1.1.1.1", "2.2.2.2", 11, 0)), Some(1));
    let r = rs("block all\npass inet proto icmp no state");
    assert_eq!(decider(&r, &icmp("1.1.1.1", "2.2.2.2", 0, 0)), Some(1));
    let r = rs("block all\npass inet proto icmp keep state (sloppy)");
    let d = eval(&r, &icmp("1.1.1.1", "2.2.2.2", 0, 0));
    assert_eq!((d.rule, d.sloppy), (Some(1), true));
    let r = rs("block all\npass inet6 proto icmp6");
    assert_eq!(
        decider(&r, &icmp("2001:db8::1", "2001:db8::2", 129, 0)),
        Some(0)
    );
    assert_eq!(
        decider(&r, &icmp("2001:db8::1", "2001:db8::2", 128, 0)),
        Some(1)
    );
}

#[test]
fn block_return_modes() {
    let r = rs("block return all");
    let d = eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80));
    assert_eq!((d.action, d.return_mode), (Action::Block, ReturnMode::Rst));
    // pf answers a RST with ICMP, not with another RST.
    let d = eval(&r, &tcp_with(tcp_flags::RST, "1.1.1.1", "2.2.2.2", 80));
    assert_eq!(d.return_mode, ReturnMode::IcmpUnreachable(3));
    assert_eq!(
        eval(&r, &udp("1.1.1.1", 1, "2.2.2.2", 53)).return_mode,
        ReturnMode::IcmpUnreachable(3)
    );
    assert_eq!(
        eval(&r, &icmp("1.1.1.1", "2.2.2.2", 8, 0)).return_mode,
        ReturnMode::IcmpUnreachable(3)
    );
    assert_eq!(
        eval(&r, &icmp("1.1.1.1", "2.2.2.2", 3, 1)).return_mode,
        ReturnMode::None
    );
    assert_eq!(
        eval(&r, &icmp("2001:db8::1", "2001:db8::2", 128, 0)).return_mode,
        ReturnMode::IcmpUnreachable(4)
    );
    assert_eq!(
        eval(&r, &icmp("2001:db8::1", "2001:db8::2", 1, 0)).return_mode,
        ReturnMode::None
    );
    assert_eq!(
        eval(&r, &icmp("2001:db8::1", "2001:db8::2", 137, 0)).return_mode,
        ReturnMode::None
    );
    assert_eq!(
        eval(&r, &pkt(47, "1.1.1.1", 0, "2.2.2.2", 0)).return_mode,
        ReturnMode::IcmpUnreachable(3)
    );

    let r = rs("block all");
    assert_eq!(
        eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::None
    );
    let r = rs("set block-policy return\nblock all");
    assert_eq!(
        eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::Rst
    );
    assert_eq!(
        eval(&r, &udp("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::IcmpUnreachable(3)
    );
    let r = rs("set block-policy return\nblock drop all");
    assert_eq!(
        eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::None
    );
    let r = rs("block return-rst proto tcp");
    assert_eq!(
        eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::Rst
    );
    assert_eq!(
        eval(&r, &tcp_with(tcp_flags::RST, "1.1.1.1", "2.2.2.2", 80)).return_mode,
        ReturnMode::None
    );
    let r = rs("block return-icmp");
    assert_eq!(
        eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::IcmpUnreachable(3)
    );
    let r = rs("pass");
    assert_eq!(
        eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::None
    );
}

#[test]
fn decision_carries_rule_options() {
    let r = rs("set timeout udp.first 30\npass quick proto udp keep state (max 5, no-sync, udp.first 9, udp.multiple 8) allow-opts");
    let d = eval(&r, &udp("1.1.1.1", 1, "2.2.2.2", 53));
    assert_eq!(
        d,
        Decision {
            action: Action::Pass,
            rule: Some(0),
            keep_state: true,
            sloppy: false,
            modulate: false,
            synproxy: false,
            no_sync: true,
            max_states: Some(5),
            allow_opts: true,
            quick: true,
            return_mode: ReturnMode::None,
            nat: None,
            rdr: None,
            rdr_port_base: 0,
            tag: 0,
            route: None,
            scrub_flags: 0,
            scrub: crate::state::Scrub::NONE,
            log: 0,
            logged: crate::pflog::LogList::EMPTY,
        }
    );
    let t = r.state_timeouts(d.rule);
    assert_eq!(t.secs(TimeoutClass::UdpFirst), 9);
    assert_eq!(t.secs(TimeoutClass::UdpMultiple), 8);
    assert_eq!(t.secs(TimeoutClass::TcpFirst), 120);
    assert_eq!(r.state_timeouts(None).secs(TimeoutClass::UdpFirst), 30);
    assert_eq!(r.state_timeouts(Some(99)).secs(TimeoutClass::UdpFirst), 30);
}

#[test]
fn counters_count_evaluations_packets_and_bytes() {
    let r = rs("block all\npass proto tcp\npass proto udp");
    let mut c = vec![RuleCounters::default(); r.len()];
    let mut p = syn("1.1.1.1", 1, "2.2.2.2", 80);
    p.ip_len = 1500;
    r.evaluate(&p, &mut c);
    r.evaluate(&p, &mut c);
    assert_eq!(
        c[0],
        RuleCounters {
            evaluations: 2,
            packets: 0,
            bytes: 0,
            states_created: 0,
            ..Default::default()
        }
    );
    assert_eq!(
        c[1],
        RuleCounters {
            evaluations: 2,
            packets: 2,
            bytes: 3000,
            states_created: 0,
            ..Default::default()
        }
    );
    assert_eq!(c[2].evaluations, 2);
    assert_eq!(c[2].packets, 0);
    // A short counter slice is tolerated.
    let mut short = vec![RuleCounters::default(); 1];
    assert_eq!(r.evaluate(&p, &mut short).rule, Some(1));
    assert_eq!(short[0].evaluations, 1);
    assert_eq!(r.evaluate(&p, &mut []).rule, Some(1));
}

#[test]
fn skip_steps_jump_over_rules_that_cannot_match() {
    let mut src = String::from("block all\n");
    for i in 0..100 {
        src.push_str(&format!(
            "pass in on wan0 proto tcp to 192.0.2.{i} port 80\n"
        ));
    }
    src.push_str("pass in on lan0 proto udp no state\n");
    let r = rs(&src);
    // Skip steps are the linear walk's (102 rules would otherwise go
    // through the candidate index, which examines fewer).
    let tables = r.table_set();
    let linear = |p: &PacketInfo, c: &mut [RuleCounters]| r.evaluate_linear(p, &tables, 0, c);
    let mut c = vec![RuleCounters::default(); r.len()];
    let d = linear(
        &on(udp("1.1.1.1", 1, "2.2.2.2", 53), LAN, Direction::In),
        &mut c,
    );
    assert_eq!(d.rule, Some(101));
    let examined: u64 = c.iter().map(|c| c.evaluations).sum();
    assert_eq!(
        examined, 3,
        "block, first wan0 rule (skips the run), last rule"
    );
    assert_eq!(c[1].evaluations, 1);
    assert_eq!(c[2].evaluations, 0);

    // Same interface, different destinations: the destination skip step
    // cannot jump (each rule differs), but the proto step can.
    let mut c = vec![RuleCounters::default(); r.len()];
    let d = linear(
        &on(udp("1.1.1.1", 1, "2.2.2.2", 53), WAN, Direction::In),
        &mut c,
    );
    assert_eq!(d.rule, Some(0));
    assert_eq!(c.iter().map(|c| c.evaluations).sum::<u64>(), 3);
    let mut c = vec![RuleCounters::default(); r.len()];
    let d = linear(
        &on(syn("1.1.1.1", 1, "192.0.2.77", 80), WAN, Direction::In),
        &mut c,
    );
    assert_eq!(d.rule, Some(78));
    assert!(d.keep_state);
    assert!(c[78].evaluations == 1 && c[78].packets == 1);
}

#[test]
fn skip_step_values_follow_pf() {
    let r = rs("pass in on lan0 proto tcp\npass in on lan0 proto udp\npass out on wan0 proto udp\npass out");
    let skips: Vec<[u32; compile::SKIP_COUNT]> = r.rules.iter().map(|r| r.skip).collect();
    // ifp: lan0 lan0 wan0 any
    assert_eq!(
        skips
            .iter()
            .map(|s| s[compile::SKIP_IFP])
            .collect::<Vec<_>>(),
        vec![2, 2, 3, 4]
    );
    // dir: in in out out
    assert_eq!(
        skips
            .iter()
            .map(|s| s[compile::SKIP_DIR])
            .collect::<Vec<_>>(),
        vec![2, 2, 4, 4]
    );
    // proto: tcp udp udp any
    assert_eq!(
        skips
            .iter()
            .map(|s| s[compile::SKIP_PROTO])
            .collect::<Vec<_>>(),
        vec![1, 3, 3, 4]
    );
    // addresses all any
    assert_eq!(
        skips
            .iter()
            .map(|s| s[compile::SKIP_SRC_ADDR])
            .collect::<Vec<_>>(),
        vec![4, 4, 4, 4]
    );
}

#[test]
fn faq_style_ruleset() {
    let r = rs(r#"
# macros
ext_if = "wan0"
int_if = "lan0"
tcp_services = "{ ssh, smtp, domain, www, https }"
icmp_types = "{ echoreq, unreach }"
table <martians> { 0.0.0.0/8 10.0.0.0/8 127.0.0.0/8 169.254.0.0/16 \
    172.16.0.0/12 192.168.0.0/16 224.0.0.0/3 }
set block-policy return
set skip on lo0
block all
block in quick on $ext_if from <martians>
pass out quick inet keep state
pass in on $int_if
pass in on $ext_if inet proto tcp to self port $tcp_services
pass in inet proto icmp icmp-type $icmp_types
"#);
    assert_eq!(r.len(), 1 + 1 + 1 + 1 + 5 + 2);
    let ext = |p: PacketInfo| on(p, WAN, Direction::In);
    // Martians are dropped quickly, with a RST for TCP.
    let d = eval(&r, &ext(syn("10.9.9.9", 1, "10.1.2.3", 22)));
    assert_eq!(
        (d.rule, d.quick, d.return_mode),
        (Some(1), true, ReturnMode::Rst)
    );
    // SSH to the box from outside passes and keeps state.
    let d = eval(&r, &ext(syn("198.51.100.7", 40000, "10.1.2.3", 22)));
    assert_eq!((d.action, d.keep_state), (Action::Pass, true));
    assert_eq!(
        r.rule_text(d.rule.unwrap() as usize),
        "pass in on wan0 inet proto tcp from any to self port = ssh flags S/SA"
    );
    // Telnet does not.
    let d = eval(&r, &ext(syn("198.51.100.7", 40000, "10.1.2.3", 23)));
    assert_eq!((d.rule, d.action), (Some(0), Action::Block));
    // Outbound passes quickly.
    let d = eval(
        &r,
        &on(
            udp("10.1.2.3", 5353, "198.51.100.1", 53),
            WAN,
            Direction::Out,
        ),
    );
    assert_eq!((d.rule, d.quick), (Some(2), true));
    // Pings pass from anywhere.
    assert!(passes(&r, &ext(icmp("198.51.100.7", "10.1.2.3", 8, 0))));
    assert!(r.is_skipped(IfIndex(3)));
}

// ---------------------------------------------------------- property tests

mod prop {
    use super::*;
    use proptest::prelude::*;

    const TABLES: &str =
        "table <t1> { 10.0.0.0/8, !10.1.0.0/16, 10.1.2.0/24, 2001:db8::/32, !2001:db8::1 }\n\
                          table <t2> { 192.0.2.0/24 10.1.2.3 }\n";

    fn pick<T: Clone + std::fmt::Debug + 'static>(v: &'static [T]) -> impl Strategy<Value = T> {
        proptest::sample::select(v)
    }

    /// Family-neutral addresses, IPv4 ones and IPv6 ones.
    const ADDRS_ANY: &[&str] = &[
        "any",
        "any",
        "any",
        "any",
        "<t1>",
        "! <t1>",
        "<t2>",
        "! <t2>",
        "self",
        "{ <t2> <t1> }",
    ];
    const ADDRS_V4: &[&str] = &[
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.3",
        "! 10.1.2.3",
        "192.0.2.0/24",
        "! 192.0.2.0/24",
        "{ 10.1.2.3, 192.0.2.1 }",
        "{ <t2> 10.1.2.4 }",
        "0.0.0.0/0",
        "! 0.0.0.0/0",
    ];
    const ADDRS_V6: &[&str] = &[
        "2001:db8::/32",
        "2001:db8::1",
        "! 2001:db8::/48",
        "{ <t2> 2001:db8::5 }",
        "! ::/0",
    ];
    const PORTS: &[&str] = &[
        " port 80",
        " port = 22",
        " port != 53",
        " port < 1024",
        " port <= 443",
        " port > 1024",
        " port >= 8080",
        " port 1000:2000",
        " port 22 >< 443",
        " port 53 <> 8080",
        " port http",
        " port { 22 80 }",
        " port { != 22, != 80 }",
    ];
    const IFACES: &[&str] = &[
        "",
        "",
        "",
        "",
        " on lan0",
        " on ! wan0",
        " on { lan0 wan0 }",
        " on dmz0",
        " on ! lan0",
    ];
    const DIRS: &[&str] = &["", "", " in", " out"];
    const ACTIONS: &[&str] = &[
        "pass",
        "block",
        "block return",
        "block drop",
        "block return-icmp",
        "block return-rst",
    ];
    const FLAGS: &[&str] = &[
        "",
        " flags any",
        " flags S/SA",
        " flags /SA",
        " flags A/A",
        " flags S/S",
    ];
    const STATES: &[&str] = &[
        "",
        " no state",
        " keep state",
        " keep state (sloppy)",
        " keep state (max 4)",
    ];
    const ICMP4: &[&str] = &[
        "",
        " icmp-type echoreq",
        " icmp-type echorep",
        " icmp-type unreach code port-unr",
        " icmp-type { timex unreach }",
    ];
    const ICMP6: &[&str] = &[
        "",
        " icmp6-type echoreq",
        " icmp6-type neighbradv",
        " icmp6-type { echorep 1 }",
    ];

    /// Builds one rule that pfctl would accept from random choices.
    #[allow(clippy::too_many_arguments)]
    fn build_rule(
        action: usize,
        dir: usize,
        allow_opts: bool,
        quick: bool,
        ifc: usize,
        class: u8,
        af_pick: u8,
        addrs: [(u8, usize); 2],
        ports: [Option<usize>; 2],
        flags: usize,
        state: usize,
        icmp_t: usize,
    ) -> String {
        let mut action = ACTIONS[action];
        // (proto text, forced af, tcp-capable, has ports, icmp af)
        let (pr, forced, tcp_ok, ported, icmp_af) = match class % 8 {
            0 => ("", None, true, false, None),
            1 => (" proto tcp", None, true, true, None),
            2 => (" proto udp", None, false, true, None),
            3 => (" proto { tcp udp }", None, true, true, None),
            4 => (" proto icmp", Some(Af::Inet), false, false, Some(Af::Inet)),
            5 => (
                " proto icmp6",
                Some(Af::Inet6),
                false,
                false,
                Some(Af::Inet6),
            ),
            6 => (" proto 47", None, false, false, None),
            _ => (" proto tcp", None, true, true, None),
        };
        if action == "block return-rst" && pr != " proto tcp" {
            action = "block return";
        }
        let af = forced.or(match af_pick % 3 {
            0 => None,
            1 => Some(Af::Inet),
            _ => Some(Af::Inet6),
        });
        // The family the addresses are drawn from.
        let addr_af = af.unwrap_or(if af_pick & 1 == 0 {
            Af::Inet
        } else {
            Af::Inet6
        });
        let addr = |(kind, i): (u8, usize)| -> &'static str {
            if kind % 2 == 0 {
                ADDRS_ANY[i % ADDRS_ANY.len()]
            } else if addr_af == Af::Inet {
                ADDRS_V4[i % ADDRS_V4.len()]
            } else {
                ADDRS_V6[i % ADDRS_V6.len()]
            }
        };
        let port = |p: Option<usize>| {
            if ported {
                p.map_or("", |i| PORTS[i % PORTS.len()])
            } else {
                ""
            }
        };
        let af_text = match af {
            None => "",
            Some(Af::Inet) => " inet",
            Some(Af::Inet6) => " inet6",
        };
        let flags = if tcp_ok { FLAGS[flags] } else { "" };
        let state = if action == "pass" {
            STATES[state]
        } else if state == 1 {
            " no state"
        } else {
            ""
        };
        let icmp = match icmp_af {
            Some(Af::Inet) => ICMP4[icmp_t % ICMP4.len()],
            Some(Af::Inet6) => ICMP6[icmp_t % ICMP6.len()],
            None => "",
        };
        format!(
            "{action}{}{}{}{af_text}{pr} from {}{} to {}{}{flags}{icmp}{state}{}",
            DIRS[dir],
            if quick { " quick" } else { "" },
            IFACES[ifc],
            addr(addrs[0]),
            port(ports[0]),
            addr(addrs[1]),
            port(ports[1]),
            if allow_opts && action == "pass" {
                " allow-opts"
            } else {
                ""
            },
        )
    }

    prop_compose! {
        fn rule_text()(
            action in 0..ACTIONS.len(), dir in 0..DIRS.len(), allow_opts in any::<bool>(), quick in proptest::bool::weighted(0.2),
            ifc in 0..IFACES.len(), class in any::<u8>(), af_pick in any::<u8>(),
            a0 in (any::<u8>(), any::<usize>()), a1 in (any::<u8>(), any::<usize>()),
            p0 in proptest::option::of(any::<usize>()), p1 in proptest::option::of(any::<usize>()),
            flags in 0..FLAGS.len(), state in 0..STATES.len(), icmp_t in any::<usize>(),
        ) -> String {
            build_rule(action, dir, allow_opts, quick, ifc, class, af_pick, [a0, a1], [p0, p1], flags, state, icmp_t)
        }
    }

    /// Random rules; the rare ones that do not compile alone (a `self`
    /// of the other family...) are dropped.
    fn ruleset() -> impl Strategy<Value = Ruleset> {
        proptest::collection::vec(rule_text(), 0..40).prop_map(|rules| {
            let mut src = String::from(TABLES);
            for line in rules {
                if compile_with(&format!("{TABLES}{line}\n"), &self_addrs()).is_ok() {
                    src.push_str(&line);
                    src.push('\n');
                }
            }
            rs(&src)
        })
    }

    const V4: &[&str] = &[
        "10.0.0.5",
        "10.1.9.9",
        "10.1.2.3",
        "10.1.2.4",
        "192.0.2.1",
        "192.0.2.200",
        "8.8.8.8",
    ];
    const V6: &[&str] = &[
        "2001:db8::1",
        "2001:db8::5",
        "2001:db8:0:1::9",
        "fe80::1",
        "2001:dead::1",
    ];
    const PKT_PORTS: &[u16] = &[0, 22, 53, 80, 443, 1000, 1024, 1500, 2000, 8080, 65535];

    prop_compose! {
        fn packet()(
            v6 in any::<bool>(), s in 0usize..7, d in 0usize..7,
            kind in 0u8..4, sport in pick(PKT_PORTS), dport in pick(PKT_PORTS),
            flags in prop_oneof![Just(tcp_flags::SYN), Just(tcp_flags::ACK), any::<u8>()], ity in pick(&[0u8, 3, 8, 11, 128, 129, 136, 1][..]), code in 0u8..5,
            ifx in 0u16..4, out in any::<bool>(), len in 20u16..1500,
        ) -> PacketInfo {
            let (src, dst) = if v6 { (V6[s % V6.len()], V6[d % V6.len()]) } else { (V4[s], V4[d]) };
            let mut p = match kind {
                0 => tcp_with(flags, src, dst, dport),
                1 => udp(src, sport, dst, dport),
                2 => icmp(src, dst, ity, code),
                _ => pkt(47, src, 0, dst, 0),
            };
            if kind == 0 {
                p.sport = sport;
            }
            p.ifindex = IfIndex(ifx);
            p.dir = if out { Direction::Out } else { Direction::In };
            p.ip_len = len;
            p
        }
    }

    // ---- the naive reference evaluator: no skip steps, no prefix groups.

    fn bits_in_prefix(a: u128, net: u128, len: u8) -> bool {
        (0..len as u32).all(|i| (a >> (127 - i)) & 1 == (net >> (127 - i)) & 1)
    }

    fn ref_table(t: &table::Table, af: Af, a: u128) -> bool {
        let mut best: Option<(u8, bool)> = None;
        for e in t.entries() {
            let (eaf, net, len, neg) = (&e.addr.af, &e.addr.net, &e.addr.len, &e.addr.negated);
            if *eaf == af
                && bits_in_prefix(a, *net, *len)
                && match best {
                    None => true,
                    Some((l, _)) => *len > l,
                }
            {
                best = Some((*len, *neg));
            }
        }
        best.is_some_and(|(_, neg)| !neg)
    }

    fn ref_addr(rs: &Ruleset, m: &compile::AddrMatch, af: Af, a: &Addr) -> bool {
        let a = u128::from_be_bytes(a.0);
        let hit = match m.kind {
            compile::AddrKind::Any => true,
            compile::AddrKind::Net {
                af: naf, net, len, ..
            } => naf == af && bits_in_prefix(a, net, len),
            compile::AddrKind::Table(i) => rs
                .table_set()
                .get(i as usize)
                .is_some_and(|t| ref_table(t, af, a)),
            compile::AddrKind::Range { af: raf, lo, hi } => raf == af && (lo..=hi).contains(&a),
        };
        hit ^ m.neg
    }

    fn ref_port(m: &compile::PortMatch, p: u16) -> bool {
        let (p, a, b) = (p as i64, m.a as i64, m.b as i64);
        match m.op {
            None => true,
            Some(parser::PortOp::Eq) => p == a,
            Some(parser::PortOp::Ne) => p != a,
            Some(parser::PortOp::Lt) => p < a,
            Some(parser::PortOp::Le) => p <= a,
            Some(parser::PortOp::Gt) => p > a,
            Some(parser::PortOp::Ge) => p >= a,
            Some(parser::PortOp::Range) => (a..=b).contains(&p),
            Some(parser::PortOp::Inside) => a < p && p < b,
            Some(parser::PortOp::Outside) => !(a..=b).contains(&p),
        }
    }

    fn ref_matches(rs: &Ruleset, r: &compile::Rule, p: &PacketInfo) -> bool {
        if let Some((ports, not)) = r.ifp {
            if (ports & (1 << p.ifindex.0) != 0) == not {
                return false;
            }
        }
        if r.dir.is_some() && r.dir != Some(p.dir) {
            return false;
        }
        if r.af.is_some() && r.af != Some(p.af) {
            return false;
        }
        if r.proto != 0 && r.proto != p.proto {
            return false;
        }
        if !ref_addr(rs, &r.src, p.af, &p.src) || !ref_addr(rs, &r.dst, p.af, &p.dst) {
            return false;
        }
        match p.l4 {
            L4Info::Tcp(t) => {
                if t.flags & r.flagset != r.flags {
                    return false;
                }
                ref_port(&r.src_port, p.sport) && ref_port(&r.dst_port, p.dport)
            }
            L4Info::Udp => ref_port(&r.src_port, p.sport) && ref_port(&r.dst_port, p.dport),
            L4Info::Icmp(i) => {
                if r.icmp_type.is_some_and(|t| t != i.icmp_type)
                    || r.icmp_code.is_some_and(|c| c != i.code)
                {
                    return false;
                }
                let reply = match p.af {
                    Af::Inet => [0u8, 14, 16, 18, 34, 36, 9].contains(&i.icmp_type),
                    Af::Inet6 => [129u8, 140, 200].contains(&i.icmp_type),
                };
                !(r.keep_state && !r.sloppy && reply)
            }
            L4Info::Other => true,
        }
    }

    fn reference(rs: &Ruleset, p: &PacketInfo) -> Option<usize> {
        let mut last = None;
        for (i, r) in rs.rules.iter().enumerate() {
            if ref_matches(rs, r, p) {
                last = Some(i);
                if r.quick {
                    break;
                }
            }
        }
        last
    }

    #[test]
    fn generators_produce_rules_that_match() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut rules, mut hits, mut lines) = (0usize, 0usize, 0usize);
        for _ in 0..50 {
            let texts = proptest::collection::vec(rule_text(), 10)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            lines += texts.len();
            let r = rs(&format!(
                "{TABLES}{}",
                texts
                    .iter()
                    .filter(|l| compile_with(&format!("{TABLES}{l}"), &self_addrs()).is_ok())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
            rules += r.len();
            for _ in 0..20 {
                let p = packet().new_tree(&mut runner).unwrap().current();
                hits += eval(&r, &p).rule.is_some() as usize;
            }
        }
        // Most generated lines are valid, and a good share of packets match.
        assert!(rules >= lines, "{rules} rules from {lines} lines");
        assert!(hits > 150, "only {hits}/1000 packets matched a rule");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn evaluation_equals_the_reference(rs in ruleset(), pkts in proptest::collection::vec(packet(), 1..20)) {
            let mut c = vec![RuleCounters::default(); rs.len()];
            let mut want_pkts = vec![0u64; rs.len()];
            let mut want_bytes = vec![0u64; rs.len()];
            let mut examined_max = 0u64;
            for p in &pkts {
                let d = rs.evaluate(p, &mut c);
                let want = reference(&rs, p);
                prop_assert_eq!(d.rule.map(|r| r as usize), want, "packet {:?}", p);
                match want {
                    None => prop_assert_eq!(d, Decision::DEFAULT_PASS),
                    Some(i) => {
                        let r = &rs.rules[i];
                        want_pkts[i] += 1;
                        want_bytes[i] += p.ip_len as u64;
                        prop_assert_eq!(d.action, r.action);
                        prop_assert_eq!(d.quick, r.quick);
                        prop_assert_eq!(d.allow_opts, r.allow_opts);
                        prop_assert_eq!(d.max_states, r.max_states);
                        if d.action == Action::Block {
                            prop_assert!(!d.keep_state);
                        } else {
                            prop_assert_eq!(d.return_mode, ReturnMode::None);
                        }
                    }
                }
                examined_max += rs.len() as u64;
            }
            for i in 0..rs.len() {
                prop_assert_eq!(c[i].packets, want_pkts[i]);
                prop_assert_eq!(c[i].bytes, want_bytes[i]);
                prop_assert!(c[i].evaluations <= pkts.len() as u64);
            }
            prop_assert!(c.iter().map(|c| c.evaluations).sum::<u64>() <= examined_max);
        }

        #[test]
        fn canonical_text_round_trips(rs in ruleset()) {
            for i in 0..rs.len() {
                let text = rs.rule_text(i);
                let again = compile_with(&format!("{TABLES}{text}"), &self_addrs());
                prop_assert!(again.is_ok(), "{} does not parse: {:?}", text, again.err());
                let again = again.unwrap();
                prop_assert_eq!(again.len(), 1);
                prop_assert_eq!(again.rule_text(0), text);
                let (mut a, mut b) = (rs.rules[i].clone(), again.rules[0].clone());
                a.skip = [0; compile::SKIP_COUNT];
                b.skip = [0; compile::SKIP_COUNT];
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn skip_steps_point_forward_to_a_differing_rule(rs in ruleset()) {
            let n = rs.len();
            for (i, r) in rs.rules.iter().enumerate() {
                for f in 0..compile::SKIP_COUNT {
                    let s = r.skip[f] as usize;
                    prop_assert!(s > i && s <= n);
                    for j in i + 1..s {
                        prop_assert!(compile::same_field(r, &rs.rules[j], f));
                    }
                    if s < n {
                        prop_assert!(!compile::same_field(r, &rs.rules[s], f));
                    }
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = compile_with(&s, &self_addrs());
        }

        #[test]
        fn token_soup_never_panics(words in proptest::collection::vec(pick(&[
            "pass", "block", "in", "out", "on", "lan0", "!", "{", "}", "(", ")", ",", "<t1>", "<", ">",
            "from", "to", "port", "=", "80", ":", "><", "<>", "proto", "tcp", "icmp", "flags", "S/SA",
            "/", "keep", "state", "no", "max", "sloppy", "self", "any", "all", "\n", "$m", "m = \"{\"",
            "set", "timeout", "table", "10.0.0.0/8", "2001:db8::/32", "icmp-type", "code", "\\\n", "#",
            "\"", "quick", "log", "inet", "inet6", "return", "skip", "limit", "states", "label",
        ][..]), 0..40)) {
            let src = words.join(" ");
            let _ = compile_with(&format!("{TABLES}{src}"), &self_addrs());
        }
    }
}

#[test]
fn interface_names_and_groups_stand_for_their_addresses() {
    // The FAQ's `pass in on fxp0 proto tcp to carp0 port 22`, with dpf's
    // names.
    let r = rs("block in all\npass in on wan0 proto tcp to carp1 port 22");
    let ssh = |dst: &str| on(syn("198.51.100.7", 40000, dst, 22), WAN, Direction::In);
    assert_eq!(decider(&r, &ssh("10.1.2.254")), Some(1), "the VIP");
    assert_eq!(decider(&r, &ssh("10.1.2.3")), Some(0), "not the box's own");
    assert_eq!(
        r.rule_text(1),
        "pass in on wan0 proto tcp from any to carp1 port = ssh flags S/SA"
    );
    // lan0 = its addresses; lan0:network = its networks; (lan0) = lan0.
    let r = rs("block in all\npass in to lan0 no state");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.3", 22)), Some(1));
    assert_eq!(
        decider(&r, &syn("2001:db8::9", 1, "2001:db8::1", 22)),
        Some(1)
    );
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.4", 22)), Some(0));
    let r = rs("block in all\npass in from lan0:network no state");
    assert_eq!(decider(&r, &syn("10.1.2.77", 1, "8.8.8.8", 53)), Some(1));
    assert_eq!(
        decider(&r, &syn("2001:db8::77", 1, "2001:db8:9::1", 53)),
        Some(1)
    );
    assert_eq!(decider(&r, &syn("10.1.3.77", 1, "8.8.8.8", 53)), Some(0));
    let r = rs("block in all\npass in to lan0:broadcast no state");
    assert_eq!(decider(&r, &syn("10.1.2.77", 1, "10.1.2.255", 53)), Some(1));
    assert_eq!(decider(&r, &syn("10.1.2.77", 1, "10.1.2.3", 53)), Some(0));
    let r = rs("block in all\npass in to (lan0) no state");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.3", 22)), Some(1));
    // `wan0:0` is its first address of each family, not its aliases.
    let r = rs("block in all\npass in to wan0:0 no state");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "192.0.2.1", 22)), Some(1));
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "192.0.2.2", 22)), Some(0));
    let r = rs("block in all\npass in to wan0 no state");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "192.0.2.2", 22)), Some(1));
    // `! lan0` is one negated set.
    let r = rs("block in to ! lan0");
    assert_eq!(r.len(), 1);
    assert_eq!(decider(&r, &syn("2001:db8::9", 1, "2001:db8::1", 22)), None);
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.9", 22)), Some(0));
    // Groups: `on carp` is the carpdevs, `to internal` the group's VIPs.
    let r = rs("block in all\npass in on carp to internal no state");
    assert_eq!(
        decider(
            &r,
            &on(syn("1.1.1.1", 1, "10.1.2.254", 22), LAN, Direction::In)
        ),
        Some(1)
    );
    assert_eq!(
        decider(
            &r,
            &on(syn("1.1.1.1", 1, "10.1.2.254", 22), WAN, Direction::In)
        ),
        Some(0)
    );
    // Tables take interface names too.
    let r = rs("table <mine> { lan0 carp1 }\nblock in all\npass in to <mine> no state");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "10.1.2.254", 22)), Some(1));
    assert_eq!(r.tables(), vec![("mine".to_string(), 3)]);
    assert_err(
        "pass to nosuch0",
        1,
        9,
        "unknown interface or group 'nosuch0'",
    );
    assert_err("pass to lan0:peer", 1, 9, "':peer' is not supported");
    assert_err("pass to lan0:bogus", 1, 9, "unknown interface modifier");
    assert_err("pass on nosuch0", 1, 9, "unknown interface nosuch0");
}

#[test]
fn set_skip_on_names_one_interface_or_group() {
    let r = rs("set skip on { lo, lan0 }\nblock all");
    assert!(r.is_skipped(LAN) && !r.is_skipped(WAN));
    let r = rs("set skip on carp\nblock all");
    assert!(
        r.is_skipped(LAN) && !r.is_skipped(WAN),
        "a group skips its members"
    );
}

#[test]
fn every_error_of_a_file_is_reported() {
    let names = names();
    let env = RuleEnv {
        interfaces: IFS,
        self_addrs: &[],
        names: &names,
    };
    let src = "pass in frob\nblock all\npass log (user) all\npass to <nope>\npass on nosuch0\n";
    let errs = match Ruleset::compile_all(src, "pf.conf", &env) {
        Ok(_) => panic!("compiled"),
        Err(e) => e,
    };
    let at: Vec<(u32, u32)> = errs.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(at, vec![(1, 9), (3, 11), (4, 9), (5, 9)], "{errs:?}");
    // compile() is the first of them.
    assert_eq!(Ruleset::compile(src, "pf.conf", &env).unwrap_err(), errs[0]);
}

#[test]
fn rule_max_is_counted_across_reservations_and_releases() {
    let r = rs("pass proto udp keep state (max 2)\npass proto tcp");
    assert!(r.reserve_rule_state(0));
    assert!(r.reserve_rule_state(0));
    assert!(!r.reserve_rule_state(0), "the third state is refused");
    assert_eq!(r.rule_states(0), 2);
    r.release_rule_state(0);
    assert!(r.reserve_rule_state(0));
    // Rules without max count nothing and never refuse.
    for _ in 0..10 {
        assert!(r.reserve_rule_state(1));
    }
    assert_eq!(r.rule_states(1), 0);
    // A clone shares the counts (every worker holds the same ruleset).
    let c = r.clone();
    assert!(!c.reserve_rule_state(0));
    // Tags name the rule only in the ruleset that made them.
    let tag = r.state_rule_tag(0);
    assert_eq!(r.rule_of_tag(tag), Some(0));
    let other = rs("pass proto udp keep state (max 2)");
    assert_eq!(other.rule_of_tag(tag), None);
    assert_eq!(r.rule_of_tag(u32::MAX), None);
}

#[test]
fn allow_opts_is_carried_by_the_decision() {
    let r = rs("pass in proto tcp allow-opts\npass out proto tcp");
    assert!(
        eval(
            &r,
            &on(syn("1.1.1.1", 1, "2.2.2.2", 22), LAN, Direction::In)
        )
        .allow_opts
    );
    assert!(
        !eval(
            &r,
            &on(syn("1.1.1.1", 1, "2.2.2.2", 22), LAN, Direction::Out)
        )
        .allow_opts
    );
    // pf's default rule allows no options.
    assert!(!eval(&rs(""), &syn("1.1.1.1", 1, "2.2.2.2", 22)).allow_opts);
    assert_err("block allow-opts", 1, 7, "allow-opts on block rules");
}

/// Files for `include` / `load anchor` tests, by path.
struct MapFiles(Vec<(&'static str, &'static str)>);

impl SourceFiles for MapFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        self.0
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| "No such file or directory".to_string())
    }
}

fn compile_files(
    src: &str,
    file: &str,
    files: &MapFiles,
    anchors: &[AnchorSource],
) -> Result<Ruleset, Vec<RuleError>> {
    let names = names();
    let selfs = self_addrs();
    let env = RuleEnv {
        interfaces: IFS,
        self_addrs: &selfs,
        names: &names,
    };
    Ruleset::compile_with(src, file, &env, files, anchors)
}

#[test]
fn abbreviated_networks_read_as_pfctl() {
    let r = rs("block from 10/8 to 192.168/16\npass from 0/0 to 172.16.5/24");
    assert_eq!(
        texts(&r),
        vec![
            "block drop inet from 10.0.0.0/8 to 192.168.0.0/16",
            "pass inet from any to 172.16.5.0/24 flags S/SA",
        ]
    );
    assert!(!passes(&r, &syn("10.9.9.9", 1, "192.168.200.1", 80)));
    assert!(passes(&r, &syn("10.9.9.9", 1, "192.169.0.1", 80)));
    // Without a length an abbreviation is no address (pfctl: host()).
    assert_err("pass from 10 to any", 1, 11, "unknown host '10'");
    assert_err("pass from 10.1.2.3.4/8 to any", 1, 11, "unknown host");
    assert_err("pass from 300/8 to any", 1, 11, "unknown host");
    // In tables too.
    let r = rs("table <t> { 10/8 !10.1/16 }\nblock from <t>");
    assert!(!passes(&r, &syn("10.2.0.1", 1, "2.2.2.2", 80)));
    assert!(passes(&r, &syn("10.1.0.1", 1, "2.2.2.2", 80)));
}

#[test]
fn address_ranges_match_inclusively() {
    let r = rs("block from 10.0.0.5 - 10.0.0.9 to any\nblock from ! 2001:db8::10 - 2001:db8::20");
    assert_eq!(
        texts(&r),
        vec![
            "block drop inet from 10.0.0.5 - 10.0.0.9 to any",
            "block drop inet6 from ! 2001:db8::10 - 2001:db8::20 to any",
        ]
    );
    for (a, blocked) in [
        ("10.0.0.4", false),
        ("10.0.0.5", true),
        ("10.0.0.7", true),
        ("10.0.0.9", true),
        ("10.0.0.10", false),
    ] {
        assert_eq!(!passes(&r, &syn(a, 1, "2.2.2.2", 80)), blocked, "{a}");
    }
    // The negated v6 range: inside passes, outside is blocked.
    assert!(passes(&r, &syn("2001:db8::15", 1, "2001:db8::1", 80)));
    assert!(!passes(&r, &syn("2001:db8::21", 1, "2001:db8::1", 80)));
    // Canonical text parses back.
    let again = rs(&texts(&r).join("\n"));
    assert_eq!(texts(&again), texts(&r));
    assert_err("pass from 10.0.0.9 - 10.0.0.5", 1, 11, "above the last");
    assert_err(
        "pass from 10.0.0.1 - 2001:db8::1",
        1,
        22,
        "invalid address range",
    );
    assert_err(
        "pass from 10.0.0.1 - 10.0.0.5/24",
        1,
        30,
        "without prefix length",
    );
    assert_err(
        "table <t> { 10.0.0.1 - 10.0.0.5 }",
        1,
        13,
        "not permitted inside tables",
    );
}

#[test]
fn port_names_of_etc_services() {
    let r = rs("pass proto udp to port { syslog echo }\npass proto tcp to port { mysql echo }");
    assert_eq!(
        texts(&r),
        vec![
            "pass proto udp from any to any port = syslog",
            "pass proto udp from any to any port = echo",
            "pass proto tcp from any to any port = mysql flags S/SA",
            "pass proto tcp from any to any port = echo flags S/SA",
        ]
    );
    assert_eq!(decider(&r, &udp("1.1.1.1", 1, "2.2.2.2", 514)), Some(0));
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "2.2.2.2", 3306)), Some(2));
    // 514/tcp is `shell` in /etc/services: pfctl prints that name.
    assert_eq!(
        rs("pass proto tcp to port 514").rule_text(0),
        "pass proto tcp from any to any port = shell flags S/SA"
    );
    assert_err(
        "pass proto tcp to port nosuch",
        1,
        24,
        "unknown port nosuch",
    );
}

#[test]
fn options_anywhere_and_block_policy_in_file_order() {
    // `set` after rules: limits and timeouts hold for the whole ruleset,
    // also for rules above them (keep state timeouts are filled in after
    // the whole file is read).
    let r =
        rs("pass proto tcp keep state (tcp.first 7)\nset limit states 42\nset timeout udp.first 9");
    assert_eq!(r.options.limit_states, 42);
    assert_eq!(r.options.timeouts.secs(TimeoutClass::UdpFirst), 9);
    assert_eq!(r.state_timeouts(Some(0)).secs(TimeoutClass::UdpFirst), 9);
    assert_eq!(r.state_timeouts(Some(0)).secs(TimeoutClass::TcpFirst), 7);
    // `set block-policy` applies to the block rules after it, as pfctl's
    // parser reads it for each rule as it goes (parse.y `blockspec`).
    let r = rs("block proto udp\nset block-policy return\nblock proto tcp");
    assert_eq!(r.options.block_policy, BlockPolicy::Return);
    assert_eq!(
        texts(&r),
        vec!["block drop proto udp all", "block return proto tcp all"]
    );
    assert_eq!(
        eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::Rst
    );
    let r = rs("block proto udp\nset block-policy return");
    assert_eq!(
        eval(&r, &udp("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::None
    );
}

#[test]
fn numeric_labels_are_syntax_errors() {
    assert_err("pass label 5", 1, 12, "syntax error");
    assert_err("pass label -5", 1, 12, "syntax error");
    assert_err("n = 7\npass label $n", 2, 12, "syntax error");
    assert_eq!(rs("pass label \"5\"").rule_label(0), Some("5"));
    assert_eq!(rs("pass label web5").rule_label(0), Some("web5"));
    assert_err("pass label a label b", 1, 14, "label cannot be redefined");
    let long = "x".repeat(64);
    assert_err(&format!("pass label \"{long}\""), 1, 12, "too long");
}

#[test]
fn label_macros_expand_per_rule() {
    let r = rs("pass in on { lan0 wan0 } proto tcp from 10/8 to any port { 22 80 } label \"$if:$proto:$srcaddr:$dstaddr:$srcport:$dstport:$nr\"");
    let labels: Vec<&str> = (0..r.len()).map(|i| r.rule_label(i).unwrap()).collect();
    assert_eq!(
        labels,
        vec![
            "lan0:tcp:10.0.0.0/8:any:any:22:0",
            "lan0:tcp:10.0.0.0/8:any:any:80:1",
            "wan0:tcp:10.0.0.0/8:any:any:22:2",
            "wan0:tcp:10.0.0.0/8:any:any:80:3",
        ]
    );
    assert_eq!(r.labels().len(), 4);
    // One label over several expanded rules is one label.
    let r = rs("pass proto tcp to port { 22 80 } label web\npass label web\npass label other");
    assert_eq!(r.labels(), &["web".to_string(), "other".to_string()]);
    assert_eq!(r.rule_label_id(0), r.rule_label_id(2));
    assert_eq!(
        rs("pass all label \"$if $proto\"").rule_label(0),
        Some("any ip")
    );
}

#[test]
fn return_icmp_codes() {
    let r = rs("block return-icmp (host-unr) proto udp\nblock return-icmp6 (10) proto udp\nblock return-icmp (net-prohib, admin-unr) proto tcp");
    assert_eq!(
        texts(&r),
        vec![
            "block return-icmp(host-unr, port-unr) proto udp all",
            "block return-icmp(port-unr, 10) proto udp all",
            "block return-icmp(net-prohib, admin-unr) proto tcp all",
        ]
    );
    let again = rs(&texts(&r).join("\n"));
    assert_eq!(texts(&again), texts(&r));
    // Last match: the v6 rule decides UDP; its v4 code is the default.
    assert_eq!(
        eval(&r, &udp("1.1.1.1", 1, "2.2.2.2", 53)).return_mode,
        ReturnMode::IcmpUnreachable(3)
    );
    assert_eq!(
        eval(&r, &udp("2001:db8::5", 1, "2001:db8::1", 53)).return_mode,
        ReturnMode::IcmpUnreachable(10)
    );
    assert_eq!(
        eval(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)).return_mode,
        ReturnMode::IcmpUnreachable(9)
    );
    assert_eq!(
        eval(&r, &syn("2001:db8::5", 1, "2001:db8::1", 80)).return_mode,
        ReturnMode::IcmpUnreachable(1)
    );
    let r = rs("block return-icmp (host-unr) inet proto udp");
    assert_eq!(
        r.rule_text(0),
        "block return-icmp(host-unr) inet proto udp all"
    );
    assert_eq!(
        eval(&r, &udp("1.1.1.1", 1, "2.2.2.2", 53)).return_mode,
        ReturnMode::IcmpUnreachable(1)
    );
    assert_err(
        "block return-icmp (bogus)",
        1,
        20,
        "unknown icmp code bogus",
    );
    assert_err("block return-icmp (256)", 1, 20, "invalid icmp code 256");
    assert_err("block return-rst (ttl 5)", 1, 7, "not supported");
}

#[test]
fn include_reads_relative_to_the_including_file() {
    let files = MapFiles(vec![
        (
            "/etc/pf/lan.conf",
            "lan = \"lan0\"\ninclude \"sub/rules.conf\"\n",
        ),
        (
            "/etc/pf/sub/rules.conf",
            "pass in on $lan proto tcp to port ssh\n",
        ),
        ("/etc/pf/bad.conf", "pass\npass in on eth9\n"),
        ("/etc/pf/loop.conf", "include \"loop.conf\"\n"),
    ]);
    let r = compile_files(
        "block all\ninclude \"lan.conf\"\npass out on $lan\n",
        "/etc/pf/pf.conf",
        &files,
        &[],
    )
    .unwrap();
    assert_eq!(
        texts(&r),
        vec![
            "block drop all",
            "pass in on lan0 proto tcp from any to any port = ssh flags S/SA",
            "pass out on lan0 all flags S/SA",
        ]
    );
    // An error names the included file and its line.
    let e = compile_files("include \"bad.conf\"\n", "/etc/pf/pf.conf", &files, &[]).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        "/etc/pf/bad.conf:2:12: unknown interface eth9"
    );
    let e = compile_files("include \"nope.conf\"\n", "/etc/pf/pf.conf", &files, &[]).unwrap_err();
    assert!(
        e[0].to_string()
            .starts_with("/etc/pf/pf.conf:1:9: failed to include file /etc/pf/nope.conf"),
        "{}",
        e[0]
    );
    let e = compile_files("include \"loop.conf\"\n", "/etc/pf/pf.conf", &files, &[]).unwrap_err();
    assert!(e[0].msg.contains("include loop"), "{}", e[0]);
    assert_eq!(e[0].file, "/etc/pf/loop.conf");
}

#[test]
fn antispoof_expands_as_pfctl() {
    let r = rs("antispoof quick for lan0 inet label spoof");
    assert_eq!(
        texts(&r),
        vec![
            "block drop in quick on ! lan0 inet from lan0:network to any label \"spoof\"",
            "block drop in quick inet from lan0 to any label \"spoof\"",
        ]
    );
    // lan0 is 10.1.2.3/24: its network arriving elsewhere is spoofed...
    assert!(!passes(
        &r,
        &on(syn("10.1.2.77", 1, "8.8.8.8", 80), WAN, Direction::In)
    ));
    // ...not when it arrives on lan0,
    assert!(passes(
        &r,
        &on(syn("10.1.2.77", 1, "8.8.8.8", 80), LAN, Direction::In)
    ));
    // and the box's own address arriving on any port is.
    assert!(!passes(
        &r,
        &on(syn("10.1.2.3", 1, "8.8.8.8", 80), LAN, Direction::In)
    ));
    // Other networks and outbound packets are not its business.
    assert!(passes(
        &r,
        &on(syn("192.0.2.9", 1, "8.8.8.8", 80), WAN, Direction::In)
    ));
    assert!(passes(
        &r,
        &on(syn("10.1.2.77", 1, "8.8.8.8", 80), WAN, Direction::Out)
    ));
    // Block policy return does not apply (pfctl makes `block drop`).
    let r = rs("set block-policy return\nantispoof for { lan0 wan0 }");
    assert_eq!(r.len(), 4);
    assert!(texts(&r).iter().all(|t| t.starts_with("block drop in")));
    assert_err("antispoof for eth9", 1, 15, "unknown interface eth9");
    assert_err(
        "antispoof log (user) for lan0",
        1,
        16,
        "log (user) is not supported",
    );
    let r = rs("antispoof log quick for lan0");
    assert!(texts(&r)
        .iter()
        .all(|t| t.starts_with("block drop in log quick")));
}

// ---------------------------------------------------------------- log

#[test]
fn log_options_parse_and_render_as_pfctl() {
    let r = rs("pass in log quick all\n\
                block out log (all) all\n\
                match log (matches) all\n\
                pass log (all, matches, to pflog0) all\n\
                pass log ( all matches ) all\n\
                pass all");
    assert_eq!(
        texts(&r),
        vec![
            "pass in log quick all flags S/SA",
            "block drop out log (all) all",
            "match log (matches) all",
            "pass log (all, matches) all flags S/SA",
            "pass log (all, matches) all flags S/SA",
            "pass all flags S/SA",
        ]
    );
}

fn logged(d: &Decision) -> Vec<(u32, u8)> {
    d.logged.iter().map(|l| (l.rule, l.action)).collect()
}

#[test]
fn log_marks_the_deciding_rule_and_logging_match_rules() {
    use crate::pflog::{action, log_flags};
    let r = rs("block log all\n\
                match log proto tcp\n\
                pass in proto tcp to port 22\n\
                pass in log (all) proto tcp to port 80");
    let p = on(syn("10.0.0.1", 1000, "10.0.0.2", 22), LAN, Direction::In);
    let d = eval(&r, &p);
    assert_eq!(d.rule, Some(2));
    // The match rule logs; the deciding pass rule has no log.
    assert_eq!(logged(&d), vec![(1, action::MATCH)]);
    assert_eq!(d.log, log_flags::LOG);
    let d = eval(
        &r,
        &on(syn("10.0.0.1", 1000, "10.0.0.2", 80), LAN, Direction::In),
    );
    assert_eq!(logged(&d), vec![(1, action::MATCH), (3, action::PASS)]);
    assert_eq!(d.log & log_flags::ALL, log_flags::ALL);
    let d = eval(
        &r,
        &on(udp("10.0.0.1", 1000, "10.0.0.2", 53), LAN, Direction::In),
    );
    assert_eq!(d.action, Action::Block);
    assert_eq!(logged(&d), vec![(0, action::DROP)]);
    // No log anywhere: nothing.
    let r = rs("block all\npass in proto tcp");
    assert!(eval(&r, &p).logged.is_empty());
}

#[test]
fn log_matches_logs_every_later_matching_rule_once() {
    use crate::pflog::action;
    let r = rs("match log (matches) proto tcp\n\
                block all\n\
                match proto tcp tag t\n\
                pass log proto tcp");
    let p = on(syn("10.0.0.1", 1000, "10.0.0.2", 22), LAN, Direction::In);
    let d = eval(&r, &p);
    assert_eq!(d.rule, Some(3));
    assert_eq!(
        logged(&d),
        vec![
            (0, action::MATCH),
            (1, action::DROP),
            (2, action::MATCH),
            (3, action::PASS)
        ],
        "the deciding rule logs once though it has log and follows log (matches)"
    );
}

#[test]
fn inline_anchor_evaluated_where_it_sits_when_its_conditions_match() {
    let src = "block all\nanchor \"web\" in on lan0 proto tcp {\n  pass proto tcp to port 80\n  block proto tcp to port 81\n}\npass proto tcp to port 81\n";
    let r = rs(src);
    assert_eq!(
        texts(&r),
        vec![
            "block drop all",
            "anchor \"web\" in on lan0 proto tcp all",
            "pass proto tcp from any to any port = www flags S/SA",
            "block drop proto tcp from any to any port = 81",
            "pass proto tcp from any to any port = 81 flags S/SA",
        ]
    );
    assert_eq!(r.rule_anchor(2), Some("web"));
    assert_eq!(r.rule_anchor(4), None);
    let lan = |dport| {
        on(
            syn("10.1.2.9", 1000, "192.0.2.9", dport),
            LAN,
            Direction::In,
        )
    };
    let wan = |dport| {
        on(
            syn("192.0.2.9", 1000, "10.1.2.9", dport),
            WAN,
            Direction::In,
        )
    };
    // Inside the anchor's conditions: its rules take part.
    assert_eq!(decider(&r, &lan(80)), Some(2));
    // Its conditions do not match: its rules are not looked at.
    assert_eq!(decider(&r, &wan(80)), Some(0));
    assert_eq!(
        decider(
            &r,
            &on(udp("10.1.2.9", 1, "192.0.2.9", 80), LAN, Direction::In)
        ),
        Some(0)
    );
    // Last match goes on after the anchor.
    assert_eq!(decider(&r, &lan(81)), Some(4));
    // The anchor rule's evaluations are counted; its rules' too.
    let mut c = vec![RuleCounters::default(); r.len()];
    r.evaluate(&wan(80), &mut c);
    assert_eq!((c[1].evaluations, c[2].evaluations), (1, 0));
    r.evaluate(&lan(80), &mut c);
    assert_eq!(
        (c[1].evaluations, c[2].evaluations, c[2].packets),
        (2, 1, 1)
    );
}

#[test]
fn quick_inside_an_anchor_ends_everything_and_quick_anchors_stop_on_a_match() {
    let r = rs("anchor \"a\" {\n  pass quick proto tcp\n}\nblock all\n");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)), Some(1));
    assert_eq!(decider(&r, &udp("1.1.1.1", 1, "2.2.2.2", 80)), Some(2));
    let r = rs("block all\nanchor \"b\" quick {\n  pass proto tcp\n}\nblock proto tcp\n");
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)), Some(2));
    // Nothing inside matched: the quick anchor does not stop.
    assert_eq!(decider(&r, &udp("1.1.1.1", 1, "2.2.2.2", 80)), Some(0));
    // Nested anchors, unnamed inline anchors.
    let r = rs("anchor {\n  anchor \"in\" on lan0 {\n    pass quick proto tcp to port 22\n  }\n  block proto tcp to port 22\n}\npass proto tcp to port 23\n");
    assert_eq!(r.len(), 5);
    let lan = on(syn("10.1.2.9", 1, "192.0.2.9", 22), LAN, Direction::In);
    let wan = on(syn("10.1.2.9", 1, "192.0.2.9", 22), WAN, Direction::In);
    assert_eq!(decider(&r, &lan), Some(2));
    assert_eq!(decider(&r, &wan), Some(3));
}

#[test]
fn anchor_skip_steps_stay_in_their_ruleset() {
    // Rule 0's skip on proto must not land inside the anchor.
    let r = rs("pass proto udp\nanchor \"x\" proto udp {\n  pass proto tcp\n}\npass proto tcp\n");
    assert_eq!(r.rules[0].skip[compile::SKIP_PROTO], 3);
    assert_eq!(r.rules[2].skip[compile::SKIP_PROTO], 3);
    assert_eq!(decider(&r, &syn("1.1.1.1", 1, "2.2.2.2", 80)), Some(3));
}

#[test]
fn named_anchors_load_and_replace_at_run_time() {
    let files = MapFiles(vec![
        ("/etc/pf/ssh.conf", "pass in proto tcp to port 22\n"),
        ("/etc/pf/bad.conf", "pass to port 99\n"),
    ]);
    let main = "block all\nanchor \"ssh\" on lan0\nload anchor \"ssh\" from \"ssh.conf\"\n";
    let r = compile_files(main, "/etc/pf/pf.conf", &files, &[]).unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r.rule_text(1), "anchor \"ssh\" on lan0 all");
    let ssh = on(syn("10.1.2.9", 1, "192.0.2.9", 22), LAN, Direction::In);
    assert_eq!(decider(&r, &ssh), Some(2));
    // dpfctl -a ssh -f: the anchor's rules are replaced.
    let a = AnchorSource {
        name: "ssh".into(),
        text: "block in proto tcp to port 22\npass in proto tcp to port 2222\n".into(),
        file: "new.conf".into(),
    };
    let r = compile_files(main, "/etc/pf/pf.conf", &files, &[a]).unwrap();
    assert_eq!(r.len(), 4);
    assert!(!passes(&r, &ssh));
    // An error in an anchor's file names that file.
    let a = AnchorSource {
        name: "ssh".into(),
        text: "pass on eth9\n".into(),
        file: "new.conf".into(),
    };
    let e = compile_files(main, "/etc/pf/pf.conf", &files, &[a]).unwrap_err();
    assert_eq!(e[0].to_string(), "new.conf:1:9: unknown interface eth9");
    // An anchor without rules matches nothing; an empty one is fine.
    let r = rs("anchor \"none\"\npass");
    assert_eq!(r.len(), 2);
    assert_err("anchor", 1, 1, "must specify a name");
    assert_err("anchor \"_x\" all", 1, 8, "reserved");
    assert_err(
        "anchor \"a\" keep state",
        1,
        1,
        "cannot specify state handling on anchors",
    );
    assert_err(
        "anchor \"a\" {\n  set limit states 5\n}",
        2,
        3,
        "not allowed inside an anchor",
    );
    assert_err("anchor \"a\" {\n  pass\n", 1, 12, "not closed");
    let e = compile_files(
        "anchor \"a\"\nload anchor \"a\" from \"a.conf\"\n",
        "/etc/pf/pf.conf",
        &MapFiles(vec![("/etc/pf/a.conf", "anchor \"a\"\n")]),
        &[],
    )
    .unwrap_err();
    assert!(e[0].msg.contains("calls itself"), "{}", e[0]);
}

#[test]
fn source_tracking_options_parse_with_pfctls_semantics() {
    let r = rs("table <bruteforce> persist
block quick from <bruteforce>
pass in on wan0 proto tcp to port 22 keep state (max-src-conn 10, max-src-conn-rate 5/30, overload <bruteforce> flush global)
pass in proto tcp to port 80 keep state (max-src-states 3)
pass in proto tcp to port 25 keep state (source-track rule, max-src-states 2, max-src-nodes 7, src.track 5)
pass in proto tcp to port 26 keep state (max-src-conn-rate 1/2, overload <bruteforce> flush)
set timeout src.track 12
set limit src-nodes 500
");
    assert_eq!(r.options.src_track_s, 12);
    assert_eq!(r.options.limit_src_nodes, 500);
    assert!(r.has_src_tracking());
    assert!(r.src_track(0).is_none());
    let ssh = r.src_track(1).unwrap();
    assert!(!ssh.global, "max-src-conn tracks per rule");
    assert_eq!((ssh.max_src_conn, ssh.max_src_conn_rate), (10, (5, 30)));
    assert_eq!(
        ssh.overload,
        Some(Overload {
            table: "bruteforce".into(),
            flush: OverloadFlush::Global
        })
    );
    // pfctl: the node outlives its last state by the rate's interval.
    assert_eq!(ssh.timeout_s, Some(30));
    assert_eq!(r.src_track_timeout(1), 30);
    // pfctl: max-src-states alone tracks globally.
    let web = r.src_track(2).unwrap();
    assert!(web.global);
    assert_eq!(web.max_src_states, 3);
    assert_eq!(r.src_track_timeout(2), 12, "set timeout src.track");
    let smtp = r.src_track(3).unwrap();
    assert!(!smtp.global);
    assert_eq!((smtp.max_src_states, smtp.max_src_nodes), (2, 7));
    assert_eq!(smtp.timeout_s, Some(5));
    assert_eq!(
        r.src_track(4).unwrap().overload.as_ref().unwrap().flush,
        OverloadFlush::Rule
    );
    // pfctl's order; the text parses back to the same options.
    assert_eq!(
        r.rule_text(1),
        "pass in on wan0 proto tcp from any to any port = ssh flags S/SA keep state \
         (source-track rule, max-src-conn 10, max-src-conn-rate 5/30, \
         overload <bruteforce> flush global, src.track 30)"
    );
    assert_eq!(
        r.rule_text(2),
        "pass in proto tcp from any to any port = www flags S/SA keep state \
         (source-track global, max-src-states 3)"
    );
    let again = rs(&format!(
        "table <bruteforce> persist\n{}\n{}\n{}",
        r.rule_text(1),
        r.rule_text(2),
        r.rule_text(3)
    ));
    assert_eq!(again.src_track(0), r.src_track(1));
    assert_eq!(again.src_track(1), r.src_track(2));
    assert_eq!(again.src_track(2), r.src_track(3));
}

#[test]
fn source_tracking_errors_name_the_option() {
    assert_err(
        "pass keep state (max-src-conn 1, max-src-conn 2)",
        1,
        34,
        "'max-src-conn' multiple definitions",
    );
    assert_err(
        "pass keep state (max-src-conn-rate 0/10)",
        1,
        36,
        "values must be > 0",
    );
    assert_err(
        "pass keep state (max-src-conn-rate 5000000/10)",
        1,
        36,
        "maximum rate must be < 4294967",
    );
    assert_err(
        "pass keep state (max-src-conn-rate 5)",
        1,
        37,
        "'/' in max-src-conn-rate",
    );
    assert_err(
        "pass keep state (source-track global, max-src-nodes 3)",
        1,
        18,
        "'max-src-nodes' is incompatible with 'source-track global'",
    );
    assert_err(
        "pass keep state (max-src-conn 3, overload <nope>)",
        1,
        44,
        "table <nope> is not defined",
    );
    assert_err(
        "table <t> persist\npass keep state (max-src-states 3, overload <t>)",
        2,
        46,
        "overload needs max-src-conn or max-src-conn-rate",
    );
    assert_err(
        "table <t> const { 10.0.0.1 }\npass keep state (max-src-conn 3, overload <t>)",
        2,
        44,
        "is const",
    );
    assert_err(
        "pass keep state (sloppy, src.track 5)",
        1,
        26,
        "src.track needs source tracking",
    );
    assert_err("pass no state (max-src-states 3)", 1, 15, "unexpected '('");
    assert_err("set limit src-node 5", 1, 11, "not supported");
}
