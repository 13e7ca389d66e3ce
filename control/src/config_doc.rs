//! The configuration file's reference: every section and key of
//! `dpf.toml` with its type, default and meaning, rendered as the
//! dpf.toml(5) manual page (`dpf --man-config`). A test holds it to the
//! schema: each section lists exactly the keys the parser in
//! [`crate::config`] accepts.

/// One key of a section.
pub struct Key {
    /// The key.
    pub name: &'static str,
    /// Its TOML type and allowed values.
    pub kind: &'static str,
    /// Its default, or `required`.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// One section (`[name]` or, for `array`, `[[name]]`).
pub struct Section {
    /// The table's name.
    pub name: &'static str,
    /// An array of tables (`[[port]]`).
    pub array: bool,
    /// What it configures.
    pub doc: &'static str,
    /// Its keys.
    pub keys: &'static [Key],
}

const fn key(
    name: &'static str,
    kind: &'static str,
    default: &'static str,
    doc: &'static str,
) -> Key {
    Key {
        name,
        kind,
        default,
        doc,
    }
}

/// Every section, in the order the manual lists them.
pub const SECTIONS: &[Section] = &[
    Section {
        name: "eal",
        array: false,
        doc: "DPDK's Environment Abstraction Layer. Required.",
        keys: &[key(
            "args",
            "array of strings",
            "required",
            "EAL arguments (-l/--lcores, --file-prefix, -m, --no-huge, --vdev, ...). Workers are the lcores after the main one. PCI ports of [[port]] are added as -a; --no-pci is added when there are none.",
        )],
    },
    Section {
        name: "dataplane",
        array: false,
        doc: "The packet path.",
        keys: &[
            key("mode", "\"wire\" | \"router\"", "\"wire\"", "wire: ports cross-connected in [wire] pairs, like a pf bridge; router: ports are interfaces with addresses, packets are routed."),
            key("rules", "string (path)", "none", "The pf.conf ruleset, relative to this file. Without it every packet passes and no state is kept."),
            key("mbufs", "integer", "16383", "Packet buffers in the pool: cover every port's rx and tx rings per worker, plus held and reassembly frames."),
            key("rx_desc", "integer", "1024", "Receive descriptors per queue."),
            key("tx_desc", "integer", "1024", "Transmit descriptors per queue."),
            key("tx_drain_us", "integer", "100", "Microseconds a partial transmit burst may wait before it is sent."),
            key("neighbor_limit", "integer 16..=1048576", "4096", "Router mode: dynamic ARP/ND entries at most (static ones do not count)."),
            key("pass_ethertypes", "array of strings", "[\"arp\"]", "Non-IP EtherTypes passed (names such as arp, llc, lldp, or hex such as 0x88cc); other non-IP frames are dropped."),
        ],
    },
    Section {
        name: "port",
        array: true,
        doc: "One per port, in DPDK port order.",
        keys: &[
            key("name", "string", "required", "The interface name pf.conf uses (lan0, wan0, ...)."),
            key("device", "string", "required", "A PCI address bound to vfio-pci (0000:03:00.0) or a DPDK vdev with its arguments (net_pcap0,rx_pcap=in.pcap; net_memif, net_vhost, virtio_user, net_af_packet, net_null, net_ring)."),
            key("addresses", "array of CIDR strings", "[]", "Router mode: the interface's IPv4/IPv6 addresses."),
            key("mac", "string", "the port's own", "The MAC address to use."),
            key("mtu", "integer 576..=9000", "1500", "The MTU to set."),
            key("rx_placement", "\"auto\" | \"toeplitz\"", "\"auto\"", "auto: the device's RSS when it has one (symmetric Toeplitz; dpf programs the redirection table), so packets arrive on the worker owning their flow, else flows are placed in software; toeplitz: the device is fed already spread by symmetric Toeplitz over a 64-entry table (entry i: queue i % queues), as by a vhost-user or memif peer balancing like a NIC."),
        ],
    },
    Section {
        name: "wire",
        array: false,
        doc: "Wire mode's cross-connections.",
        keys: &[key("pairs", "array of [port, port]", "[]", "Port pairs: what enters one leaves the other.")],
    },
    Section {
        name: "control",
        array: false,
        doc: "The control socket dpfctl speaks to.",
        keys: &[key("socket", "string (path)", "\"/run/dpf/dpf.sock\"", "Unix socket, created mode 0600 in a 0700 directory; a socket another dpf listens on is refused at start.")],
    },
    Section {
        name: "route",
        array: true,
        doc: "Router mode: static routes.",
        keys: &[
            key("to", "string", "required", "\"default\", \"::/0\" or a CIDR."),
            key("via", "string", "none", "The next hop's address (on a connected subnet)."),
            key("dev", "string", "none", "An interface, for an on-link route."),
        ],
    },
    Section {
        name: "neighbor",
        array: true,
        doc: "Router mode: static ARP/ND entries (never replaced).",
        keys: &[
            key("ip", "string", "required", "The neighbour's address."),
            key("mac", "string", "required", "Its MAC address."),
            key("dev", "string", "the port whose subnet holds ip", "The interface."),
        ],
    },
    Section {
        name: "carp",
        array: true,
        doc: "CARP interfaces, with ifconfig(8)'s carp parameters.",
        keys: &[
            key("name", "string", "required", "The carp interface (carp1): dpfctl carp1 ..., pf.conf's carp1."),
            key("vhid", "integer 1-255", "required", "Virtual host id, unique per carpdev; the virtual MAC is 00:00:5e:00:01:<vhid>."),
            key("pass", "string", "none", "The shared password of the HMAC-SHA1 over advertisements."),
            key("carpdev", "string", "required", "The port the VHID lives on."),
            key("advbase", "integer 0-254", "1", "Seconds between advertisements (plus advskew/256)."),
            key("advskew", "integer 0-254", "0", "Skew in 1/256 s; the backup box uses a higher one."),
            key("state", "\"init\" | \"backup\" | \"master\"", "none", "ifconfig carp1 state: the state to start in."),
            key("group", "array of strings", "[]", "Interface groups for carpdemote (every carp interface is also in \"carp\")."),
            key("carppeer", "string", "none", "Unicast advertisements to this address instead of 224.0.0.18 / ff02::12."),
            key("addresses", "array of CIDR strings", "required", "The shared (virtual) addresses, IPv4 and/or IPv6."),
        ],
    },
    Section {
        name: "sysctl",
        array: false,
        doc: "net.inet.carp sysctls, as sysctl(8) names them (quote the dotted key or nest tables).",
        keys: &[
            key("net.inet.carp.allow", "0 | 1", "1", "Accept CARP advertisements."),
            key("net.inet.carp.preempt", "0 | 1", "0", "Take mastership when this box advertises better, and move a whole group on demotion."),
            key("net.inet.carp.log", "integer 0-7", "2", "Syslog priority up to which CARP messages are logged."),
        ],
    },
    Section {
        name: "pfsync",
        array: false,
        doc: "State synchronisation with the peer (OpenBSD's pfsync v6 protocol).",
        keys: &[
            key("syncdev", "string", "required", "The sync port (dedicated; needs an IPv4 address). pfsync is accepted only there."),
            key("syncpeer", "string", "224.0.0.240", "Unicast to the peer and accept only its address; without it multicast, and any host on the segment can write states."),
            key("maxupd", "integer 0-255", "128", "An update every maxupd packets of a state (and on every TCP state change)."),
            key("defer", "boolean", "false", "Hold a new state's first packet until the peer has the state (or 20 ms)."),
            key("auth", "string", "none", "dpf only: HMAC-SHA-256 key (16 to 1024 bytes) authenticating every pfsync packet between dpf boxes, with replay protection."),
        ],
    },
    Section {
        name: "log",
        array: false,
        doc: "pflog: where records of rules with the log option go, a pcap file with link type DLT_PFLOG (117) as OpenBSD's /var/log/pflog (tcpdump -n -e -r FILE, dpfctl -L). Rules that log are refused without this section.",
        keys: &[
            key("file", "string", "required", "The pflog file (relative to this file's directory); appended to when it is a pflog capture, refused when it is another file."),
            key("size", "integer >= 4096", "none (never rotated)", "Rotate when the next record would take the file past this many bytes: FILE becomes FILE.0, FILE.i becomes FILE.(i+1)."),
            key("keep", "integer 0-1000", "3", "Rotated files kept (FILE.0 newest); 0 drops the full file."),
        ],
    },
    Section {
        name: "metrics",
        array: false,
        doc: "The Prometheus endpoint (off without this section).",
        keys: &[key("listen", "string (addr:port)", "required", "Where GET /metrics is served (OpenMetrics text).")],
    },
];

/// Escapes roff's special characters in `s`.
fn roff(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// dpf.toml(5) as roff.
pub fn man_page() -> String {
    let mut out = String::new();
    out.push_str(".TH DPF.TOML 5 \"\" \"dpf ");
    out.push_str(env!("CARGO_PKG_VERSION"));
    out.push_str("\" \"File Formats\"\n");
    out.push_str(".SH NAME\ndpf.toml \\- dpf configuration file\n");
    out.push_str(".SH SYNOPSIS\n/etc/dpf/dpf.toml\n");
    out.push_str(".SH DESCRIPTION\n");
    out.push_str(&roff(
        "The configuration of dpf(8), in TOML. Unknown sections and keys are refused with file:line:col, as are values out of range; dpf \\-n \\-c FILE checks a file. The ruleset is pf.conf(5)'s language, in the file named by [dataplane] rules.",
    ));
    out.push('\n');
    for s in SECTIONS {
        let head = if s.array {
            format!("[[{}]]", s.name)
        } else {
            format!("[{}]", s.name)
        };
        out.push_str(&format!(".SS {}\n{}\n", roff(&head), roff(s.doc)));
        for k in s.keys {
            out.push_str(&format!(
                ".TP\n.B {}\n{} (default: {}).\n{}\n",
                roff(k.name),
                roff(k.kind),
                roff(k.default),
                roff(k.doc)
            ));
        }
    }
    out.push_str(".SH SEE ALSO\ndpf(8), dpfctl(8), pf.conf(5), carp(4), pfsync(4)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys serde accepts in `section`: its "unknown field" error
    /// lists them.
    fn accepted(section: &str, array: bool) -> Vec<String> {
        let text = match section {
            "" => "zz_unknown = 1\n[eal]\nargs = []\n".to_string(),
            "eal" => "[eal]\nargs = []\nzz_unknown = 1\n".to_string(),
            _ if array => format!("[eal]\nargs = []\n[[{section}]]\nzz_unknown = 1\n"),
            _ => format!("[eal]\nargs = []\n[{section}]\nzz_unknown = 1\n"),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dpf.toml");
        std::fs::write(&path, text).unwrap();
        let err = crate::config::Config::load(&path).unwrap_err().to_string();
        let list = err
            .split("expected ")
            .nth(1)
            .unwrap_or_else(|| panic!("[{section}]: {err}"));
        list.split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, k)| k.to_string())
            .collect()
    }

    #[test]
    fn every_section_documents_exactly_the_keys_the_parser_accepts() {
        for s in SECTIONS.iter().filter(|s| s.name != "sysctl") {
            let mut want = accepted(s.name, s.array);
            want.sort();
            let mut have: Vec<String> = s.keys.iter().map(|k| k.name.to_string()).collect();
            have.sort();
            assert_eq!(have, want, "[{}]", s.name);
        }
        // The top level: every section is documented.
        let mut want = accepted("", false);
        let mut have: Vec<String> = SECTIONS.iter().map(|s| s.name.to_string()).collect();
        want.sort();
        have.sort();
        assert_eq!(have, want);
    }

    #[test]
    fn the_sysctls_documented_are_the_ones_accepted() {
        for k in SECTIONS.iter().find(|s| s.name == "sysctl").unwrap().keys {
            let text = format!("[eal]\nargs = []\n[sysctl]\n\"{}\" = 1\n", k.name);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("dpf.toml");
            std::fs::write(&path, text).unwrap();
            if let Err(e) = crate::config::Config::load(&path) {
                assert!(!e.to_string().contains("unknown sysctl"), "{}: {e}", k.name);
            }
        }
    }

    #[test]
    fn the_manual_page_is_roff_with_every_key() {
        let page = man_page();
        assert!(page.starts_with(".TH DPF.TOML 5"));
        for s in SECTIONS {
            for k in s.keys {
                assert!(
                    page.contains(&format!(".B {}\n", roff(k.name))),
                    "{}",
                    k.name
                );
            }
        }
        assert!(!page.lines().any(|l| l.starts_with('.') && l.len() == 1));
    }
}
