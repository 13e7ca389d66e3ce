//! What `bench gen` writes, as pure functions of the arguments: the flow
//! address space, the setup phases, and the `k`-th packet of every file.
//!
//! Every packet is a function of `(config, file, index)` alone, so files
//! stream to disk in any size without holding packets in memory, tests can
//! look at any single packet, and the same arguments give the same bytes.
//! Randomness (ISNs, server addresses, address/port offsets) comes from
//! [`mix`], a stateless SplitMix64 hash of `(seed, slot, salt)`: portable
//! across platforms and crate versions, unlike `rand`'s `SmallRng`.
//!
//! Flow slots: slot `i` owns the client with host number
//! `h = 1 + (i + host_offset) mod 65534` in the inside prefix (198.18.0.0/16
//! or 2001:2:0:1::/64) and port
//! `p = 1024 + (i / 65534 + port_offset) mod 64512`, a bijection for
//! `i < 65534 * 64512`, so distinct slots are distinct 5-tuples whatever the
//! server. Established flows use slots `0..N`; the new SYNs of `mixed` use
//! slots from `N` on, so they never collide with an established flow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use dataplane::flow::tcp_flags;

use crate::frames::{
    Fill, FrameRepr, IpPair, L4Repr, MacAddr, TcpOptions, TcpRepr, UdpRepr, FCS_LEN,
    MAX_CAPTURED_LEN, MIN_CAPTURED_LEN,
};

/// Ethernet address of every inside (client, port 0 side) host.
pub const INSIDE_MAC: MacAddr = [0x02, 0, 0, 0, 0, 0x01];
/// Ethernet address of every outside (server, port 1 side) host.
pub const OUTSIDE_MAC: MacAddr = [0x02, 0, 0, 0, 0, 0x02];

/// Inside (client) prefix, IPv4: RFC 2544 appendix C benchmark range, lower half.
pub const INSIDE_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 16);
/// Outside (server) prefix, IPv4: upper half of 198.18.0.0/15.
pub const OUTSIDE_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 19, 0, 0), 16);
/// Inside prefix, IPv6: a /64 of RFC 5180's 2001:2::/48.
pub const INSIDE_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, 0), 64);
/// Outside prefix, IPv6.
pub const OUTSIDE_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 2, 0, 2, 0, 0, 0, 0), 64);

/// Host numbers used in each prefix: 1..=65534 (no all-zeros or all-ones
/// host in the IPv4 /16).
pub const HOSTS: u32 = 65534;
/// First client port.
pub const CLIENT_PORT_MIN: u16 = 1024;
/// Client ports 1024..=65535.
pub const CLIENT_PORTS: u32 = 65536 - CLIENT_PORT_MIN as u32;
/// Distinct client (address, port) pairs: the most flow slots.
pub const MAX_SLOTS: u64 = HOSTS as u64 * CLIENT_PORTS as u64;

/// Server port of the TCP profiles.
pub const TCP_SERVER_PORT: u16 = 80;
/// Server port of the UDP profiles (discard).
pub const UDP_SERVER_PORT: u16 = 9;
/// Destination port of the packets `mixed` expects the rules to block.
pub const BLOCKED_PORT: u16 = 23;

/// Window field of every TCP segment: unscaled on SYNs, and with the shift
/// of 7 both handshake sides offer ([`TcpOptions::HANDSHAKE`]) an 8 MiB
/// window afterwards.
pub const TCP_WINDOW: u16 = 65535;

/// The IMIX frame sizes (with FCS) and how many of each in one cycle.
pub const IMIX_SIZES: [(usize, u32); 3] = [(64, 7), (570, 4), (1518, 1)];
/// One IMIX cycle of 12 frame sizes, 7:4:1, the large frame in the middle
/// and the medium ones spread out.
pub const IMIX_CYCLE: [usize; 12] = [64, 570, 64, 570, 64, 64, 1518, 64, 570, 64, 570, 64];

/// Smallest `--frame-size`.
pub const MIN_FRAME_SIZE: usize = MIN_CAPTURED_LEN + FCS_LEN;
/// Largest `--frame-size` (standard Ethernet; TCP payload then matches MSS
/// 1460 over IPv4).
pub const MAX_FRAME_SIZE: usize = MAX_CAPTURED_LEN + FCS_LEN;

/// Traffic profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Established TCP: handshakes in setup, in-window ACK/data both ways.
    EstTcp,
    /// Only SYNs, each opening a new connection.
    NewConn,
    /// UDP flows both ways.
    Udp,
    /// UDP flows with 64/570/1518-byte frames 7:4:1.
    Imix,
    /// Established TCP, new SYNs and blocked packets, 8:1:1.
    Mixed,
}

impl Profile {
    /// The name the CLI and the file names use.
    pub fn name(self) -> &'static str {
        match self {
            Profile::EstTcp => "est-tcp",
            Profile::NewConn => "new-conn",
            Profile::Udp => "udp",
            Profile::Imix => "imix",
            Profile::Mixed => "mixed",
        }
    }
}

/// A dpf port in wire mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Port {
    /// Port 0, the LAN ("inside") side: client-to-server packets arrive here.
    Lan = 0,
    /// Port 1, the WAN ("outside") side: server-to-client packets arrive here.
    Wan = 1,
}

impl Port {
    /// Both ports, in index order.
    pub const ALL: [Port; 2] = [Port::Lan, Port::Wan];

    /// The port index (0 or 1).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Arguments of one generation, validated by [`Plan::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenConfig {
    /// Profile.
    pub profile: Profile,
    /// Number of flows (connections); see each profile for its meaning.
    pub flows: u64,
    /// Ethernet frame size with FCS (captured length + 4); ignored by imix.
    pub frame_size: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// IPv6 (2001:2::/48) instead of IPv4 (198.18.0.0/15).
    pub ipv6: bool,
}

/// Why arguments cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `--flows 0`.
    #[error("--flows must be at least 1")]
    NoFlows,
    /// More flow slots than distinct client (address, port) pairs.
    #[error("{profile} with {flows} flows needs {slots} client address/port pairs, more than the {max} available")]
    TooManyFlows {
        /// Profile name.
        profile: &'static str,
        /// Requested flows.
        flows: u64,
        /// Slots needed.
        slots: u64,
        /// Slots available.
        max: u64,
    },
    /// `--frame-size` outside 64..=1518.
    #[error("--frame-size {0} is outside {MIN_FRAME_SIZE}..={MAX_FRAME_SIZE}")]
    FrameSize(usize),
}

/// A step of the setup sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetupStep {
    /// Client SYN (MSS 1460, wscale 7, SACK permitted), port 0.
    Syn,
    /// Server SYN-ACK with the same options, port 1.
    SynAck,
    /// Client ACK completing the handshake, port 0.
    Ack,
    /// First client-to-server datagram of a UDP flow, port 0.
    UdpOpen,
}

impl SetupStep {
    /// The port its packets arrive on.
    pub fn port(self) -> Port {
        match self {
            SetupStep::SynAck => Port::Wan,
            SetupStep::Syn | SetupStep::Ack | SetupStep::UdpOpen => Port::Lan,
        }
    }
}

/// One run of the setup sequence: `packets` packets of one step, one per
/// flow in flow order, all arriving on `step.port()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupPhase {
    /// The step.
    pub step: SetupStep,
    /// Packets in the run.
    pub packets: u64,
}

/// SplitMix64's finaliser.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stateless 64-bit hash of `(seed, slot, salt)`: the generator's only
/// source of randomness.
pub fn mix(seed: u64, slot: u64, salt: u64) -> u64 {
    splitmix64(splitmix64(seed ^ salt.wrapping_mul(0xa076_1d64_78bd_642f)) ^ slot)
}

/// Salts of [`mix`], one per independent choice.
mod salt {
    pub const HOST_OFFSET: u64 = 1;
    pub const PORT_OFFSET: u64 = 2;
    pub const SERVER_HOST: u64 = 3;
    pub const CLIENT_ISN: u64 = 4;
    pub const SERVER_ISN: u64 = 5;
    pub const BLOCKED_SOURCE: u64 = 6;
    pub const BLOCKED_PORT: u64 = 7;
    pub const BLOCKED_ISN: u64 = 8;
}

/// The two endpoints and initial sequence numbers of one flow slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// Inside client address.
    pub client: IpAddr,
    /// Client port.
    pub client_port: u16,
    /// Outside server address.
    pub server: IpAddr,
    /// Server port.
    pub server_port: u16,
    /// Client's initial sequence number.
    pub client_isn: u32,
    /// Server's initial sequence number.
    pub server_isn: u32,
}

/// The validated configuration and its derived constants; the `k`-th
/// packet of every file.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    cfg: GenConfig,
    host_offset: u32,
    port_offset: u32,
}

impl Plan {
    /// Validates `cfg`.
    pub fn new(cfg: GenConfig) -> Result<Plan, ConfigError> {
        if cfg.flows == 0 {
            return Err(ConfigError::NoFlows);
        }
        if !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&cfg.frame_size) {
            return Err(ConfigError::FrameSize(cfg.frame_size));
        }
        let plan = Plan {
            cfg,
            host_offset: (mix(cfg.seed, 0, salt::HOST_OFFSET) % u64::from(HOSTS)) as u32,
            port_offset: (mix(cfg.seed, 0, salt::PORT_OFFSET) % u64::from(CLIENT_PORTS)) as u32,
        };
        let slots = plan.slots();
        if slots > MAX_SLOTS {
            return Err(ConfigError::TooManyFlows {
                profile: cfg.profile.name(),
                flows: cfg.flows,
                slots,
                max: MAX_SLOTS,
            });
        }
        Ok(plan)
    }

    /// The configuration.
    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// Flow slots used: `N`, plus one per new SYN in `mixed`.
    pub fn slots(&self) -> u64 {
        match self.cfg.profile {
            Profile::Mixed => self.cfg.flows + self.mixed_groups(),
            _ => self.cfg.flows,
        }
    }

    /// `mixed` steady files are groups of 4 established segments + 1 other
    /// packet per port: `ceil(N / 4)` groups, so 8:1:1 is exact over both
    /// files for any `N` (established segments wrap around the flows).
    fn mixed_groups(&self) -> u64 {
        self.cfg.flows.div_ceil(4)
    }

    /// Captured length of a steady frame (`--frame-size` minus FCS).
    fn captured_len(&self) -> usize {
        self.cfg.frame_size - FCS_LEN
    }

    /// Address `number` (1..=65534) of the inside or outside prefix.
    fn address(&self, inside: bool, number: u32) -> IpAddr {
        if self.cfg.ipv6 {
            let prefix = if inside { INSIDE_V6.0 } else { OUTSIDE_V6.0 };
            IpAddr::V6(Ipv6Addr::from(u128::from(prefix) | u128::from(number)))
        } else {
            let prefix = if inside { INSIDE_V4.0 } else { OUTSIDE_V4.0 };
            IpAddr::V4(Ipv4Addr::from(u32::from(prefix) | number))
        }
    }

    /// The flow of slot `slot` (< [`MAX_SLOTS`]).
    pub fn flow(&self, slot: u64, server_port: u16) -> Flow {
        let hosts = u64::from(HOSTS);
        let host = 1 + (slot + u64::from(self.host_offset)) % hosts;
        let port = (slot / hosts + u64::from(self.port_offset)) % u64::from(CLIENT_PORTS);
        let server_host = 1 + mix(self.cfg.seed, slot, salt::SERVER_HOST) % hosts;
        Flow {
            // Both below 65535 by construction.
            client: self.address(true, host as u32),
            client_port: CLIENT_PORT_MIN + port as u16,
            server: self.address(false, server_host as u32),
            server_port,
            client_isn: mix(self.cfg.seed, slot, salt::CLIENT_ISN) as u32,
            server_isn: mix(self.cfg.seed, slot, salt::SERVER_ISN) as u32,
        }
    }

    fn ip_pair(src: IpAddr, dst: IpAddr) -> IpPair {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => IpPair::V4 { src, dst },
            (IpAddr::V6(src), IpAddr::V6(dst)) => IpPair::V6 { src, dst },
            // Plan::address gives every address the configured family.
            (IpAddr::V4(src), IpAddr::V6(dst)) => IpPair::V6 {
                src: src.to_ipv6_mapped(),
                dst,
            },
            (IpAddr::V6(src), IpAddr::V4(dst)) => IpPair::V6 {
                src,
                dst: dst.to_ipv6_mapped(),
            },
        }
    }

    /// A TCP segment of `flow`, from the client if `from_client`.
    fn tcp(&self, flow: &Flow, from_client: bool, tcp: TcpRepr) -> FrameRepr {
        let (src, dst, src_mac, dst_mac) = if from_client {
            (flow.client, flow.server, INSIDE_MAC, OUTSIDE_MAC)
        } else {
            (flow.server, flow.client, OUTSIDE_MAC, INSIDE_MAC)
        };
        FrameRepr::new(src_mac, dst_mac, Self::ip_pair(src, dst), L4Repr::Tcp(tcp))
    }

    /// A UDP datagram of `flow`, from the client if `from_client`.
    fn udp(&self, flow: &Flow, from_client: bool) -> FrameRepr {
        let (src, dst, src_port, dst_port, src_mac, dst_mac) = if from_client {
            (
                flow.client,
                flow.server,
                flow.client_port,
                flow.server_port,
                INSIDE_MAC,
                OUTSIDE_MAC,
            )
        } else {
            (
                flow.server,
                flow.client,
                flow.server_port,
                flow.client_port,
                OUTSIDE_MAC,
                INSIDE_MAC,
            )
        };
        FrameRepr::new(
            src_mac,
            dst_mac,
            Self::ip_pair(src, dst),
            L4Repr::Udp(UdpRepr { src_port, dst_port }),
        )
    }

    /// Handshake segment `step` of `flow`.
    fn handshake(&self, flow: &Flow, step: SetupStep) -> FrameRepr {
        let (from_client, seq, ack, flags, options) = match step {
            SetupStep::SynAck => (
                false,
                flow.server_isn,
                flow.client_isn.wrapping_add(1),
                tcp_flags::SYN | tcp_flags::ACK,
                TcpOptions::HANDSHAKE,
            ),
            SetupStep::Ack => (
                true,
                flow.client_isn.wrapping_add(1),
                flow.server_isn.wrapping_add(1),
                tcp_flags::ACK,
                TcpOptions::default(),
            ),
            SetupStep::Syn | SetupStep::UdpOpen => (
                true,
                flow.client_isn,
                0,
                tcp_flags::SYN,
                TcpOptions::HANDSHAKE,
            ),
        };
        let (src_port, dst_port) = if from_client {
            (flow.client_port, flow.server_port)
        } else {
            (flow.server_port, flow.client_port)
        };
        self.tcp(
            flow,
            from_client,
            TcpRepr {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window: TCP_WINDOW,
                options,
            },
        )
    }

    /// The steady segment of an established `flow` in one direction: seq =
    /// own ISN + 1 and ack = peer ISN + 1 on every repetition, payload
    /// filling the frame (PSH set when there is payload).
    pub fn established_segment(&self, flow: &Flow, from_client: bool) -> FrameRepr {
        let (src_port, dst_port, seq, ack) = if from_client {
            (
                flow.client_port,
                flow.server_port,
                flow.client_isn,
                flow.server_isn,
            )
        } else {
            (
                flow.server_port,
                flow.client_port,
                flow.server_isn,
                flow.client_isn,
            )
        };
        let mut frame = self
            .tcp(
                flow,
                from_client,
                TcpRepr {
                    src_port,
                    dst_port,
                    seq: seq.wrapping_add(1),
                    ack: ack.wrapping_add(1),
                    flags: tcp_flags::ACK,
                    window: TCP_WINDOW,
                    options: TcpOptions::default(),
                },
            )
            .fill_to(self.captured_len(), Fill::Payload);
        if frame.payload_len > 0 {
            if let L4Repr::Tcp(tcp) = &mut frame.l4 {
                tcp.flags |= tcp_flags::PSH;
            }
        }
        frame
    }

    /// A SYN opening a new connection in slot `slot`: MSS option only, so
    /// it fits a 64-byte IPv4 frame; larger frames get an Ethernet trailer
    /// (a SYN carries no payload).
    pub fn new_syn(&self, slot: u64) -> FrameRepr {
        let flow = self.flow(slot, TCP_SERVER_PORT);
        self.tcp(
            &flow,
            true,
            TcpRepr {
                src_port: flow.client_port,
                dst_port: flow.server_port,
                seq: flow.client_isn,
                ack: 0,
                flags: tcp_flags::SYN,
                window: TCP_WINDOW,
                options: TcpOptions::MSS_ONLY,
            },
        )
        .fill_to(self.captured_len(), Fill::Trailer)
    }

    /// The `index`-th packet `mixed` expects to be blocked: a SYN from an
    /// outside address to an inside host's telnet port, arriving on port 1.
    pub fn blocked_syn(&self, index: u64) -> FrameRepr {
        let hosts = u64::from(HOSTS);
        let inside = self.flow(index % self.cfg.flows, TCP_SERVER_PORT).client;
        let outside = self.address(
            false,
            (1 + mix(self.cfg.seed, index, salt::BLOCKED_SOURCE) % hosts) as u32,
        );
        let src_port = CLIENT_PORT_MIN
            + (mix(self.cfg.seed, index, salt::BLOCKED_PORT) % u64::from(CLIENT_PORTS)) as u16;
        FrameRepr::new(
            OUTSIDE_MAC,
            INSIDE_MAC,
            Self::ip_pair(outside, inside),
            L4Repr::Tcp(TcpRepr {
                src_port,
                dst_port: BLOCKED_PORT,
                seq: mix(self.cfg.seed, index, salt::BLOCKED_ISN) as u32,
                ack: 0,
                flags: tcp_flags::SYN,
                window: TCP_WINDOW,
                options: TcpOptions::MSS_ONLY,
            }),
        )
        .fill_to(self.captured_len(), Fill::Trailer)
    }

    /// The setup sequence as runs of one step each. Phases rather than
    /// per-flow interleaving: all SYNs (port 0), then all SYN-ACKs (port 1),
    /// then all ACKs (port 0), so each run can be fed to one port in turn.
    pub fn setup_phases(&self) -> Vec<SetupPhase> {
        let n = self.cfg.flows;
        let phase = |step| SetupPhase { step, packets: n };
        match self.cfg.profile {
            Profile::EstTcp | Profile::Mixed => vec![
                phase(SetupStep::Syn),
                phase(SetupStep::SynAck),
                phase(SetupStep::Ack),
            ],
            Profile::Udp | Profile::Imix => vec![phase(SetupStep::UdpOpen)],
            Profile::NewConn => Vec::new(),
        }
    }

    /// Setup packet of `step` for flow `flow_index`: natural size (at least
    /// 60 bytes), whatever `--frame-size`; setup traffic is not measured.
    pub fn setup_frame(&self, step: SetupStep, flow_index: u64) -> FrameRepr {
        match step {
            SetupStep::UdpOpen => {
                let flow = self.flow(flow_index, UDP_SERVER_PORT);
                self.udp(&flow, true)
                    .fill_to(MIN_CAPTURED_LEN, Fill::Payload)
            }
            _ => self.handshake(&self.flow(flow_index, TCP_SERVER_PORT), step),
        }
    }

    /// Packets in the steady file of `port`.
    pub fn steady_packets(&self, port: Port) -> u64 {
        let n = self.cfg.flows;
        match (self.cfg.profile, port) {
            (Profile::EstTcp | Profile::Udp, _) => n,
            (Profile::NewConn, Port::Lan) => n,
            (Profile::NewConn, Port::Wan) => 0,
            (Profile::Imix, _) => n.div_ceil(IMIX_CYCLE.len() as u64) * IMIX_CYCLE.len() as u64,
            (Profile::Mixed, _) => self.mixed_groups() * 5,
        }
    }

    /// Captured length of the `k`-th imix frame of a file.
    pub fn imix_captured_len(&self, k: u64) -> usize {
        IMIX_CYCLE[(k % IMIX_CYCLE.len() as u64) as usize] - FCS_LEN
    }

    /// The `k`-th packet (`k < steady_packets(port)`) of the steady file of
    /// `port`. Port 0 carries client-to-server packets, port 1
    /// server-to-client ones.
    pub fn steady_frame(&self, port: Port, k: u64) -> FrameRepr {
        let n = self.cfg.flows;
        let from_client = port == Port::Lan;
        match self.cfg.profile {
            Profile::EstTcp => {
                self.established_segment(&self.flow(k, TCP_SERVER_PORT), from_client)
            }
            Profile::NewConn => self.new_syn(k),
            Profile::Udp => self
                .udp(&self.flow(k, UDP_SERVER_PORT), from_client)
                .fill_to(self.captured_len(), Fill::Payload),
            Profile::Imix => self
                .udp(&self.flow(k % n, UDP_SERVER_PORT), from_client)
                .fill_to(self.imix_captured_len(k), Fill::Payload),
            Profile::Mixed => {
                let (group, position) = (k / 5, k % 5);
                match (position, port) {
                    (0..=3, _) => self.established_segment(
                        &self.flow((group * 4 + position) % n, TCP_SERVER_PORT),
                        from_client,
                    ),
                    (_, Port::Lan) => self.new_syn(n + group),
                    (_, Port::Wan) => self.blocked_syn(group),
                }
            }
        }
    }

    /// pf.conf lines (dpf's subset) that pass what this profile expects to
    /// pass and block the rest; port 0 is `lan`, port 1 is `wan`. Both an
    /// `in on lan` and an `out on wan` rule are given so the set also holds
    /// where a forwarded packet is filtered on both interfaces, as in pf.
    pub fn rules(&self) -> Vec<String> {
        let (af, inside, outside) = if self.cfg.ipv6 {
            (
                "inet6",
                format!("{}/{}", INSIDE_V6.0, INSIDE_V6.1),
                format!("{}/{}", OUTSIDE_V6.0, OUTSIDE_V6.1),
            )
        } else {
            (
                "inet",
                format!("{}/{}", INSIDE_V4.0, INSIDE_V4.1),
                format!("{}/{}", OUTSIDE_V4.0, OUTSIDE_V4.1),
            )
        };
        let mut rules = vec!["block all".to_string()];
        let pass = |proto: &str, port: u16, extra: &str| {
            ["in on lan", "out on wan"].map(|on| {
                format!("pass {on} {af} proto {proto} from {inside} to {outside} port {port}{extra} keep state")
            })
        };
        match self.cfg.profile {
            Profile::EstTcp | Profile::NewConn => {
                rules.extend(pass("tcp", TCP_SERVER_PORT, " flags S/SA"));
            }
            Profile::Udp | Profile::Imix => rules.extend(pass("udp", UDP_SERVER_PORT, "")),
            Profile::Mixed => {
                rules.extend(pass("tcp", TCP_SERVER_PORT, " flags S/SA"));
                rules.push(format!(
                    "block in quick on wan {af} proto tcp from {outside} to {inside} port {BLOCKED_PORT}"
                ));
            }
        }
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::decode::decode;
    use dataplane::flow::{proto, Addr, FlowKey};
    use std::collections::HashSet;

    fn plan(profile: Profile, flows: u64, frame_size: usize, ipv6: bool) -> Plan {
        Plan::new(GenConfig {
            profile,
            flows,
            frame_size,
            seed: 42,
            ipv6,
        })
        .unwrap()
    }

    fn emit(frame: &FrameRepr) -> Vec<u8> {
        let mut buf = vec![0u8; frame.buffer_len()];
        frame.emit(&mut buf).unwrap();
        buf
    }

    fn tcp_of(frame: &FrameRepr) -> TcpRepr {
        match frame.l4 {
            L4Repr::Tcp(tcp) => tcp,
            L4Repr::Udp(_) => panic!("not TCP: {frame:?}"),
        }
    }

    fn key_of(bytes: &[u8]) -> FlowKey {
        let d = decode(bytes).unwrap();
        let (af, src, dst) = match d.ip {
            IpPair::V4 { src, dst } => (
                dataplane::flow::Af::Inet,
                Addr::v4(src.octets()),
                Addr::v4(dst.octets()),
            ),
            IpPair::V6 { src, dst } => (
                dataplane::flow::Af::Inet6,
                Addr::v6(src.octets()),
                Addr::v6(dst.octets()),
            ),
        };
        let (p, sport, dport) = match d.l4 {
            L4Repr::Tcp(t) => (proto::TCP, t.src_port, t.dst_port),
            L4Repr::Udp(u) => (proto::UDP, u.src_port, u.dst_port),
        };
        FlowKey::from_packet(af, p, src, sport, dst, dport).0
    }

    #[test]
    fn rejects_bad_arguments() {
        let cfg = GenConfig {
            profile: Profile::EstTcp,
            flows: 0,
            frame_size: 64,
            seed: 1,
            ipv6: false,
        };
        assert_eq!(Plan::new(cfg).unwrap_err(), ConfigError::NoFlows);
        let too_small = GenConfig {
            flows: 1,
            frame_size: 63,
            ..cfg
        };
        assert_eq!(
            Plan::new(too_small).unwrap_err(),
            ConfigError::FrameSize(63)
        );
        let too_big = GenConfig {
            flows: 1,
            frame_size: 1519,
            ..cfg
        };
        assert_eq!(
            Plan::new(too_big).unwrap_err(),
            ConfigError::FrameSize(1519)
        );
        let too_many = GenConfig {
            flows: MAX_SLOTS,
            profile: Profile::Mixed,
            ..cfg
        };
        assert!(matches!(
            Plan::new(too_many),
            Err(ConfigError::TooManyFlows { .. })
        ));
        assert!(Plan::new(GenConfig {
            flows: MAX_SLOTS,
            ..cfg
        })
        .is_ok());
    }

    #[test]
    fn slots_are_distinct_client_endpoints_in_range() {
        let p = plan(Profile::EstTcp, 1, 64, false);
        let mut seen = HashSet::new();
        // Around the wrap of the host counter, and across port steps.
        for slot in (0..70_000).chain(MAX_SLOTS - 70_000..MAX_SLOTS) {
            let f = p.flow(slot, 80);
            let IpAddr::V4(c) = f.client else { panic!() };
            let IpAddr::V4(s) = f.server else { panic!() };
            assert_eq!(&c.octets()[..2], &[198, 18]);
            assert_eq!(&s.octets()[..2], &[198, 19]);
            assert!(!matches!(c.octets()[2..], [0, 0] | [255, 255]), "{c}");
            assert!(!matches!(s.octets()[2..], [0, 0] | [255, 255]), "{s}");
            assert!(f.client_port >= CLIENT_PORT_MIN);
            assert!(seen.insert((c, f.client_port)), "slot {slot} repeats");
        }
    }

    #[test]
    fn handshake_fields() {
        for ipv6 in [false, true] {
            let p = plan(Profile::EstTcp, 100, 64, ipv6);
            let flow = p.flow(7, TCP_SERVER_PORT);
            let syn = tcp_of(&p.setup_frame(SetupStep::Syn, 7));
            let syn_ack = tcp_of(&p.setup_frame(SetupStep::SynAck, 7));
            let ack = tcp_of(&p.setup_frame(SetupStep::Ack, 7));
            assert_eq!(syn.flags, tcp_flags::SYN);
            assert_eq!(syn_ack.flags, tcp_flags::SYN | tcp_flags::ACK);
            assert_eq!(ack.flags, tcp_flags::ACK);
            for s in [syn, syn_ack] {
                assert_eq!(s.options.mss, Some(1460));
                assert_eq!(s.options.wscale, Some(7));
                assert!(s.options.sack_permitted);
            }
            assert_eq!(ack.options, TcpOptions::default());
            assert_eq!(syn.seq, flow.client_isn);
            assert_eq!(syn_ack.seq, flow.server_isn);
            assert_eq!(syn_ack.ack, flow.client_isn.wrapping_add(1));
            assert_eq!(
                (ack.seq, ack.ack),
                (syn_ack.ack, syn_ack.seq.wrapping_add(1))
            );
            assert_eq!(
                (syn.src_port, syn.dst_port),
                (syn_ack.dst_port, syn_ack.src_port)
            );
            // Each handshake frame decodes with the options on the wire.
            for step in [SetupStep::Syn, SetupStep::SynAck, SetupStep::Ack] {
                let frame = p.setup_frame(step, 7);
                let d = decode(&emit(&frame)).unwrap();
                assert_eq!(d.l4, frame.l4);
                assert!(d.ip_checksum_ok && d.l4_checksum_ok);
                let expected_mac = if step == SetupStep::SynAck {
                    OUTSIDE_MAC
                } else {
                    INSIDE_MAC
                };
                assert_eq!(d.src_mac, expected_mac);
            }
        }
    }

    #[test]
    fn established_segments_continue_the_handshake() {
        let p = plan(Profile::EstTcp, 100, 64, false);
        let ack = tcp_of(&p.setup_frame(SetupStep::Ack, 3));
        let client = tcp_of(&p.steady_frame(Port::Lan, 3));
        let server = tcp_of(&p.steady_frame(Port::Wan, 3));
        assert_eq!((client.seq, client.ack), (ack.seq, ack.ack));
        assert_eq!((server.seq, server.ack), (ack.ack, ack.seq));
        assert_eq!(
            (server.src_port, server.dst_port),
            (client.dst_port, client.src_port)
        );
        // 60 captured bytes: 54 of headers + 6 of payload, PSH set.
        let frame = p.steady_frame(Port::Lan, 3);
        assert_eq!((frame.buffer_len(), frame.payload_len), (60, 6));
        assert_eq!(client.flags, tcp_flags::ACK | tcp_flags::PSH);
        // IPv6 headers alone exceed 60 bytes: a pure ACK.
        let v6 = plan(Profile::EstTcp, 100, 64, true).steady_frame(Port::Lan, 3);
        assert_eq!((v6.buffer_len(), v6.payload_len), (74, 0));
        assert_eq!(tcp_of(&v6).flags, tcp_flags::ACK);
        // 1518-byte frames over IPv4 carry exactly one MSS.
        let big = plan(Profile::EstTcp, 100, 1518, false).steady_frame(Port::Wan, 3);
        assert_eq!((big.buffer_len(), big.payload_len), (1514, 1460));
    }

    #[test]
    fn new_syns_are_distinct_and_minimal() {
        for ipv6 in [false, true] {
            let n = 20_000;
            let p = plan(Profile::NewConn, n, 64, ipv6);
            assert_eq!(p.steady_packets(Port::Lan), n);
            assert_eq!(p.steady_packets(Port::Wan), 0);
            assert!(p.setup_phases().is_empty());
            let mut keys = HashSet::new();
            for k in 0..n {
                let frame = p.steady_frame(Port::Lan, k);
                assert_eq!(tcp_of(&frame).flags, tcp_flags::SYN);
                assert_eq!(frame.buffer_len(), if ipv6 { 78 } else { 60 });
                assert!(
                    keys.insert(key_of(&emit(&frame))),
                    "SYN {k} repeats a 5-tuple"
                );
            }
        }
        // A large frame size pads with a trailer, not a SYN payload.
        let big = plan(Profile::NewConn, 10, 1518, false).steady_frame(Port::Lan, 0);
        assert_eq!((big.buffer_len(), big.payload_len), (1514, 0));
    }

    #[test]
    fn imix_ratio_is_exact() {
        for n in [1, 11, 12, 13, 1000] {
            let p = plan(Profile::Imix, n, 64, false);
            for port in Port::ALL {
                let packets = p.steady_packets(port);
                assert_eq!(packets % 12, 0);
                assert!(packets >= n && packets < n + 12);
                let mut counts = std::collections::BTreeMap::new();
                for k in 0..packets {
                    let len = p.steady_frame(port, k).buffer_len() + FCS_LEN;
                    *counts.entry(len).or_insert(0u64) += 1;
                }
                let cycles = packets / 12;
                let expected: std::collections::BTreeMap<usize, u64> = IMIX_SIZES
                    .iter()
                    .map(|&(size, share)| (size, u64::from(share) * cycles))
                    .collect();
                assert_eq!(counts, expected, "n = {n}");
            }
        }
        assert_eq!(IMIX_CYCLE.iter().filter(|s| **s == 64).count(), 7);
        assert_eq!(IMIX_CYCLE.iter().filter(|s| **s == 570).count(), 4);
        assert_eq!(IMIX_CYCLE.iter().filter(|s| **s == 1518).count(), 1);
    }

    #[test]
    fn mixed_ratio_and_kinds() {
        for n in [4, 5, 1000] {
            let p = plan(Profile::Mixed, n, 64, false);
            let (mut est, mut syn, mut blocked) = (0u64, 0u64, 0u64);
            let mut est_keys = HashSet::new();
            let mut syn_keys = HashSet::new();
            for port in Port::ALL {
                for k in 0..p.steady_packets(port) {
                    let frame = p.steady_frame(port, k);
                    let tcp = tcp_of(&frame);
                    let key = key_of(&emit(&frame));
                    if tcp.flags & tcp_flags::ACK != 0 {
                        est += 1;
                        est_keys.insert(key);
                    } else if tcp.dst_port == BLOCKED_PORT {
                        assert_eq!(port, Port::Wan);
                        assert_eq!(frame.src_mac, OUTSIDE_MAC);
                        blocked += 1;
                    } else {
                        assert_eq!(port, Port::Lan);
                        assert_eq!(tcp.flags, tcp_flags::SYN);
                        assert!(syn_keys.insert(key));
                        syn += 1;
                    }
                }
            }
            assert_eq!((est, syn, blocked), (8 * syn, syn, syn), "n = {n}");
            assert_eq!(est_keys.len() as u64, n, "every flow is exercised");
            assert!(
                est_keys.is_disjoint(&syn_keys),
                "new SYNs reuse an established flow"
            );
        }
    }

    #[test]
    fn udp_both_directions() {
        let p = plan(Profile::Udp, 50, 128, true);
        assert_eq!(
            p.setup_phases(),
            vec![SetupPhase {
                step: SetupStep::UdpOpen,
                packets: 50
            }]
        );
        let open = decode(&emit(&p.setup_frame(SetupStep::UdpOpen, 9))).unwrap();
        let out = decode(&emit(&p.steady_frame(Port::Lan, 9))).unwrap();
        let back = decode(&emit(&p.steady_frame(Port::Wan, 9))).unwrap();
        assert_eq!(open.l4, out.l4);
        let (L4Repr::Udp(o), L4Repr::Udp(b)) = (out.l4, back.l4) else {
            panic!()
        };
        assert_eq!((o.src_port, o.dst_port), (b.dst_port, b.src_port));
        assert_eq!(o.dst_port, UDP_SERVER_PORT);
        assert_eq!(emit(&p.steady_frame(Port::Wan, 9)).len(), 124);
        assert!(out.l4_checksum_ok && back.l4_checksum_ok);
        assert!(matches!(out.ip, IpPair::V6 { .. }));
    }

    #[test]
    fn seeds_change_the_traffic() {
        let a = plan(Profile::EstTcp, 10, 64, false);
        let b = Plan::new(GenConfig {
            seed: 43,
            ..*a.config()
        })
        .unwrap();
        assert_ne!(a.flow(0, 80), b.flow(0, 80));
        assert_eq!(
            a.flow(0, 80),
            plan(Profile::EstTcp, 10, 64, false).flow(0, 80)
        );
    }

    #[test]
    fn rules_name_the_ranges() {
        let v4 = plan(Profile::Mixed, 4, 64, false).rules();
        assert_eq!(v4[0], "block all");
        assert!(v4.contains(&"pass in on lan inet proto tcp from 198.18.0.0/16 to 198.19.0.0/16 port 80 flags S/SA keep state".to_string()));
        assert!(v4
            .iter()
            .any(|r| r.starts_with("block in quick on wan") && r.ends_with("port 23")));
        let v6 = plan(Profile::Udp, 4, 64, true).rules();
        assert!(v6.contains(&"pass in on lan inet6 proto udp from 2001:2:0:1::/64 to 2001:2:0:2::/64 port 9 keep state".to_string()));
    }
}
