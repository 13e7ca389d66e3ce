//! Test frames built with dpf's own wire `Repr`s (checksums included), and
//! pcapng input/output with one interface per port, for replay tests.

use dataplane::wire::{
    ethernet, icmp, icmpv6, ipv4, ipv6, tcp, udp, EtherType, EthernetAddress, IpPair,
};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
use pcap_file::DataLink;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// TCP flag bits.
pub use dataplane::flow::tcp_flags as flags;

/// The transport part of a test packet.
#[derive(Clone, Debug)]
pub enum L4 {
    /// A TCP segment.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// Flags.
        flags: u8,
        /// Raw window.
        win: u16,
        /// Window scale option (SYNs).
        wscale: Option<u8>,
        /// Payload bytes.
        payload: Vec<u8>,
    },
    /// A UDP datagram.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// ICMP / ICMPv6 echo request (`true`) or reply.
    Echo {
        /// Request or reply.
        request: bool,
        /// Identifier.
        id: u16,
        /// Sequence number.
        seq: u16,
    },
    /// ICMP "fragmentation needed" / ICMPv6 "packet too big" quoting
    /// `quoted` (an IP packet, of which the first bytes are used).
    TooBig {
        /// MTU to report.
        mtu: u16,
        /// The offending IP packet.
        quoted: Vec<u8>,
    },
}

/// A TCP segment with the usual defaults (window 65535, no options).
pub fn tcp(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> L4 {
    L4::Tcp {
        sport,
        dport,
        seq,
        ack,
        flags,
        win: 65535,
        wscale: None,
        payload: Vec::new(),
    }
}

/// An IP packet (no Ethernet header) from `src` to `dst`.
pub fn ip_packet(src: IpAddr, dst: IpAddr, l4: &L4) -> Vec<u8> {
    ip_packet_ttl(src, dst, 64, l4)
}

/// An IP packet with TTL / hop limit `ttl`.
pub fn ip_packet_ttl(src: IpAddr, dst: IpAddr, ttl: u8, l4: &L4) -> Vec<u8> {
    let ips = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpPair::V4 { src: s, dst: d },
        (IpAddr::V6(s), IpAddr::V6(d)) => IpPair::V6 { src: s, dst: d },
        _ => panic!("mixed address families"),
    };
    let v6 = matches!(ips, IpPair::V6 { .. });
    let (proto, l4_bytes) = match l4 {
        L4::Tcp {
            sport,
            dport,
            seq,
            ack,
            flags,
            win,
            wscale,
            payload,
        } => {
            let r = tcp::Repr {
                src_port: *sport,
                dst_port: *dport,
                seq_number: *seq,
                ack_number: *ack,
                flags: *flags,
                window_len: *win,
                options: tcp::Options {
                    mss: wscale.map(|_| 1460),
                    wscale: *wscale,
                    sack_permitted: false,
                    timestamp: None,
                },
                payload,
            };
            let mut b = vec![0u8; r.buffer_len()];
            r.emit(&mut tcp::Packet::new_unchecked(&mut b[..]), &ips);
            (6u8, b)
        }
        L4::Udp {
            sport,
            dport,
            payload,
        } => {
            let r = udp::Repr {
                src_port: *sport,
                dst_port: *dport,
                payload,
            };
            let mut b = vec![0u8; 8 + payload.len()];
            r.emit(&mut udp::Packet::new_unchecked(&mut b[..]), &ips);
            (17, b)
        }
        L4::Echo { request, id, seq } => {
            let data: &[u8] = b"dpf-test";
            if v6 {
                let r = if *request {
                    icmpv6::Repr::EchoRequest {
                        ident: *id,
                        seq_no: *seq,
                        data,
                    }
                } else {
                    icmpv6::Repr::EchoReply {
                        ident: *id,
                        seq_no: *seq,
                        data,
                    }
                };
                let mut b = vec![0u8; r.buffer_len()];
                r.emit(&mut icmpv6::Packet::new_unchecked(&mut b[..]), &ips);
                (58, b)
            } else {
                let r = if *request {
                    icmp::Repr::EchoRequest {
                        ident: *id,
                        seq_no: *seq,
                        data,
                    }
                } else {
                    icmp::Repr::EchoReply {
                        ident: *id,
                        seq_no: *seq,
                        data,
                    }
                };
                let mut b = vec![0u8; r.buffer_len()];
                r.emit(&mut icmp::Packet::new_unchecked(&mut b[..]));
                (1, b)
            }
        }
        L4::TooBig { mtu, quoted } => {
            if v6 {
                let r = icmpv6::Repr::PacketTooBig {
                    mtu: *mtu as u32,
                    data: quoted,
                };
                let mut b = vec![0u8; r.buffer_len()];
                r.emit(&mut icmpv6::Packet::new_unchecked(&mut b[..]), &ips);
                (58, b)
            } else {
                let q = &quoted[..quoted.len().min(28)];
                let r = icmp::Repr::DstUnreachable {
                    code: 4,
                    next_hop_mtu: *mtu,
                    data: q,
                };
                let mut b = vec![0u8; r.buffer_len()];
                r.emit(&mut icmp::Packet::new_unchecked(&mut b[..]));
                (1, b)
            }
        }
    };
    let mut out;
    match ips {
        IpPair::V4 { src, dst } => {
            out = vec![0u8; 20 + l4_bytes.len()];
            let r = ipv4::Repr {
                src_addr: src,
                dst_addr: dst,
                protocol: proto,
                payload_len: l4_bytes.len(),
                ttl,
                tos: 0,
                ident: 1,
                dont_frag: true,
            };
            r.emit(&mut ipv4::Packet::new_unchecked(&mut out[..]));
            out[20..].copy_from_slice(&l4_bytes);
        }
        IpPair::V6 { src, dst } => {
            out = vec![0u8; 40 + l4_bytes.len()];
            let r = ipv6::Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: proto,
                payload_len: l4_bytes.len(),
                hop_limit: ttl,
                traffic_class: 0,
                flow_label: 0,
            };
            r.emit(&mut ipv6::Packet::new_unchecked(&mut out[..]));
            out[40..].copy_from_slice(&l4_bytes);
        }
    }
    out
}

/// An Ethernet frame carrying `ip_packet(src, dst, l4)`, padded to 60.
pub fn frame(src: IpAddr, dst: IpAddr, l4: &L4) -> Vec<u8> {
    frame_with([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 64, src, dst, l4)
}

/// An Ethernet frame with the given MACs and TTL.
pub fn frame_with(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ttl: u8,
    src: IpAddr,
    dst: IpAddr,
    l4: &L4,
) -> Vec<u8> {
    let ip = ip_packet_ttl(src, dst, ttl, l4);
    let ethertype = if src.is_ipv4() {
        EtherType::IPV4
    } else {
        EtherType::IPV6
    };
    let mut f = vec![0u8; 14 + ip.len()];
    let r = ethernet::Repr {
        src_addr: EthernetAddress(src_mac),
        dst_addr: EthernetAddress(dst_mac),
        vlan_id: None,
        ethertype,
    };
    r.emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    f[14..].copy_from_slice(&ip);
    while f.len() < 60 {
        f.push(0);
    }
    f
}

/// One packet of a replay: the port it arrives on, when, and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// Port index (pcapng interface id).
    pub port: u32,
    /// Capture time (the replay clock).
    pub at: Duration,
    /// The frame.
    pub frame: Vec<u8>,
}

/// Writes arrivals to a pcapng with `ports` interfaces.
pub fn write_pcapng(path: &Path, ports: u32, arrivals: &[Arrival]) {
    let file = std::fs::File::create(path).expect("create pcapng");
    let mut w = PcapNgWriter::new(file).expect("pcapng header");
    for _ in 0..ports {
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 65535,
            options: vec![
                pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfTsResol(9),
            ],
        })
        .expect("interface block");
    }
    for a in arrivals {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: a.port,
            timestamp: a.at,
            original_len: a.frame.len() as u32,
            data: a.frame.clone().into(),
            options: vec![],
        })
        .expect("packet block");
    }
}

/// Reads the packets of a pcapng.
pub fn read_pcapng(path: &Path) -> Vec<Arrival> {
    let file = std::fs::File::open(path).expect("open pcapng");
    let mut r = PcapNgReader::new(file).expect("pcapng header");
    let mut out = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(p) = b.expect("block") {
            out.push(Arrival {
                port: p.interface_id,
                at: p.timestamp,
                frame: p.data.into_owned(),
            });
        }
    }
    out
}

/// A frame arriving on `port` at `ms` milliseconds.
pub fn at(port: u32, ms: u64, frame: Vec<u8>) -> Arrival {
    Arrival {
        port,
        at: Duration::from_millis(ms),
        frame,
    }
}

/// What a `dpf --replay` run gave: the frames that left (port = egress),
/// the counters it printed, and the process output.
pub struct Replayed {
    /// Frames written to the output capture.
    pub out: Vec<Arrival>,
    /// The JSON counters.
    pub stats: serde_json::Value,
    /// The process's output.
    pub output: std::process::Output,
}

/// The two-port router the replay tests run: lan0 10.1.0.1/24 with
/// `host` resolved to `host_mac`, wan0 203.0.113.1/24, the default route
/// via 203.0.113.254 (02:fe:00:00:00:01), rules in `pf.conf`; `extra`
/// (more sections) appended.
pub fn router_config(host: &str, host_mac: &str, extra: &str) -> String {
    format!(
        r#"
[eal]
args = []
[dataplane]
mode = "router"
rules = "pf.conf"
[[port]]
name = "lan0"
device = "net_null0"
addresses = ["10.1.0.1/24"]
[[port]]
name = "wan0"
device = "net_null1"
addresses = ["203.0.113.1/24"]
[[route]]
to = "default"
via = "203.0.113.254"
[[neighbor]]
ip = "203.0.113.254"
mac = "02:fe:00:00:00:01"
[[neighbor]]
ip = "{host}"
mac = "{host_mac}"
{extra}"#
    )
}

/// Runs `arrivals` through the real `dpf --replay` with `config` (a
/// dpf.toml) and, when given, `rules` written beside it as `pf.conf`;
/// `ports` interfaces in the capture, `workers` pipelines.
pub fn replay(
    config: &str,
    rules: Option<&str>,
    ports: u32,
    arrivals: &[Arrival],
    workers: u16,
) -> Replayed {
    replay_args(config, rules, ports, arrivals, workers, &[])
}

/// [`replay`] with more `dpf` arguments (e.g. `--replay-seed`).
pub fn replay_args(
    config: &str,
    rules: Option<&str>,
    ports: u32,
    arrivals: &[Arrival],
    workers: u16,
    extra: &[&str],
) -> Replayed {
    let dir = crate::scratch();
    if let Some(r) = rules {
        std::fs::write(dir.path().join("pf.conf"), r).expect("write pf.conf");
    }
    let cfg = dir.path().join("dpf.toml");
    std::fs::write(&cfg, config).expect("write dpf.toml");
    let input = dir.path().join("in.pcapng");
    let output = dir.path().join("out.pcapng");
    write_pcapng(&input, ports, arrivals);
    let workers = workers.to_string();
    let (cfg, input_s, output_s) = (
        cfg.to_string_lossy().to_string(),
        input.to_string_lossy().to_string(),
        output.to_string_lossy().to_string(),
    );
    let mut args: Vec<&str> = vec![
        "--config",
        &cfg,
        "--replay",
        &input_s,
        "--replay-out",
        &output_s,
        "--replay-workers",
        &workers,
    ];
    args.extend_from_slice(extra);
    let run = crate::run_dpf(&args, Duration::from_secs(120)).expect("run dpf --replay");
    crate::expect_success(&run).expect("dpf --replay succeeds");
    let stats = serde_json::from_slice(&run.stdout).expect("replay prints JSON");
    Replayed {
        out: read_pcapng(&output),
        stats,
        output: run,
    }
}
