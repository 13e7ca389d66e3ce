//! The `dpf.toml` model and its validation. Every error names the file, the
//! line and column, and the key or value at fault; dpf refuses to start on
//! any of them.
//!
//! ```toml
//! [eal]
//! args = ["--no-huge", "-m", "256", "--no-shconf", "--file-prefix", "dpf0", "-l", "0,1"]
//!
//! [dataplane]
//! mode = "wire"            # ports cross-connected in [wire] pairs
//! rules = "pf.conf"        # optional; relative to this file
//!
//! [[port]]
//! name = "lan0"
//! device = "net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap"   # vdev devargs or a PCI address
//!
//! [wire]
//! pairs = [["lan0", "wan0"]]
//!
//! [log]                    # optional: where `log` rules write (pflog)
//! file = "/var/log/dpf/pflog"   # relative to this file if not absolute
//! size = 10000000          # rotate past this many bytes (default: never)
//! keep = 3                 # rotated files kept: pflog.0 (newest) .. pflog.2
//! ```

use serde::Deserialize;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// A configuration error, already formatted as `file:line:col: message`.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}")]
pub struct ConfigError {
    /// The configuration file.
    pub file: String,
    /// 1-based line (0 when the error is about the whole file).
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub msg: String,
}

/// Most ports dpf drives (the pipeline's fixed tables).
pub const MAX_PORTS: usize = dataplane::pipeline::MAX_PORTS;

/// How ports are joined.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ports cross-connected in pairs, like a pf bridge.
    Wire,
    /// Ports are interfaces with addresses; packets are routed.
    Router,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    eal: RawEal,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default, rename = "port")]
    ports: Vec<RawPort>,
    #[serde(default)]
    wire: RawWire,
    #[serde(default)]
    control: RawControl,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
    #[serde(default, rename = "neighbor")]
    neighbors: Vec<RawNeighbor>,
    #[serde(default)]
    carp: Vec<RawCarp>,
    #[serde(default)]
    sysctl: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pfsync: Option<RawPfsync>,
    #[serde(default)]
    log: Option<RawLog>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

/// `[log]`: the pflog file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    file: Spanned<String>,
    #[serde(default)]
    size: Option<Spanned<i64>>,
    #[serde(default)]
    keep: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPfsync {
    syncdev: Spanned<String>,
    #[serde(default)]
    syncpeer: Option<Spanned<String>>,
    #[serde(default)]
    maxupd: Option<Spanned<i64>>,
    #[serde(default)]
    defer: Option<Spanned<bool>>,
    #[serde(default)]
    auth: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCarp {
    name: Spanned<String>,
    vhid: Spanned<i64>,
    #[serde(default)]
    pass: Option<String>,
    carpdev: Spanned<String>,
    #[serde(default)]
    advbase: Option<Spanned<i64>>,
    #[serde(default)]
    advskew: Option<Spanned<i64>>,
    #[serde(default)]
    state: Option<Spanned<String>>,
    #[serde(default)]
    group: Vec<String>,
    #[serde(default)]
    carppeer: Option<Spanned<String>>,
    addresses: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    to: Spanned<String>,
    #[serde(default)]
    via: Option<Spanned<String>>,
    #[serde(default)]
    dev: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    ip: Spanned<String>,
    mac: Spanned<String>,
    #[serde(default)]
    dev: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEal {
    args: Spanned<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    #[serde(default = "default_mode")]
    mode: Mode,
    #[serde(default = "default_mbufs")]
    mbufs: Spanned<u32>,
    #[serde(default = "default_desc")]
    rx_desc: Spanned<u16>,
    #[serde(default = "default_desc")]
    tx_desc: Spanned<u16>,
    #[serde(default = "default_drain")]
    tx_drain_us: Spanned<u32>,
    #[serde(default = "default_neighbor_limit")]
    neighbor_limit: Spanned<u32>,
    #[serde(default)]
    rules: Option<Spanned<String>>,
    #[serde(default)]
    pass_ethertypes: Option<Vec<Spanned<String>>>,
}

impl Default for RawDataplane {
    fn default() -> Self {
        RawDataplane {
            mode: default_mode(),
            mbufs: default_mbufs(),
            rx_desc: default_desc(),
            tx_desc: default_desc(),
            tx_drain_us: default_drain(),
            neighbor_limit: default_neighbor_limit(),
            rules: None,
            pass_ethertypes: None,
        }
    }
}

fn default_mode() -> Mode {
    Mode::Wire
}
fn default_mbufs() -> Spanned<u32> {
    Spanned::new(0..0, 16383)
}
fn default_desc() -> Spanned<u16> {
    Spanned::new(0..0, 1024)
}
fn default_neighbor_limit() -> Spanned<u32> {
    Spanned::new(0..0, crate::slowpath::DEFAULT_NEIGHBOR_LIMIT as u32)
}
fn default_drain() -> Spanned<u32> {
    Spanned::new(0..0, 100)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: Spanned<String>,
    device: Spanned<String>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    #[serde(default)]
    mac: Option<Spanned<String>>,
    #[serde(default)]
    mtu: Option<Spanned<u16>>,
    #[serde(default)]
    rx_placement: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWire {
    #[serde(default)]
    pairs: Vec<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<String>,
}

/// Where a port's device comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Device {
    /// A virtual device created from devargs (`net_pcap0,rx_pcap=...`).
    Vdev(String),
    /// A PCI device by address (`0000:03:00.0`), probed by EAL.
    Pci(String),
}

/// One port: an interface name and its device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PortSpec {
    /// Interface name (`lan0`), used by rules and dpfctl.
    pub name: String,
    /// The device.
    pub device: Device,
    /// Addresses with prefix length (router mode).
    pub addresses: Vec<(IpAddr, u8)>,
    /// MAC to use instead of the port's own.
    pub mac: Option<[u8; 6]>,
    /// Link MTU.
    pub mtu: u16,
    /// How packets are spread over the port's rx queues.
    pub rx_placement: RxPlacement,
}

/// How a port's packets reach the workers (`rx_placement`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum RxPlacement {
    /// The device's RSS when it has it (dpf programs its redirection
    /// table): packets arrive on their flow's owner; else the workers
    /// place flows in software.
    #[default]
    Auto,
    /// The device is fed already spread over its queues by symmetric
    /// Toeplitz and a 64-entry table (entry i: queue i % queues), as by a
    /// vhost-user or memif peer that balances like a NIC.
    Toeplitz,
}

/// A static route.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RouteSpec {
    /// Destination network.
    pub to: (IpAddr, u8),
    /// Next hop (`None`: on-link through `port`).
    pub via: Option<IpAddr>,
    /// Egress port index.
    pub port: usize,
}

/// Initial state forced on a carp interface (`ifconfig carpN state ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CarpStateSpec {
    /// `state init`: no effect (as on OpenBSD).
    Init,
    /// `state backup`.
    Backup,
    /// `state master`.
    Master,
}

/// One carp interface with one VHID (ifconfig's words).
#[derive(Clone, Debug, serde::Serialize)]
pub struct CarpSpec {
    /// Interface name (`carp1`).
    pub name: String,
    /// VHID, 1..=255.
    pub vhid: u8,
    /// Passphrase (`pass`), empty if none.
    #[serde(skip)]
    pub pass: String,
    /// Parent port index (`carpdev`).
    pub carpdev: usize,
    /// advbase, seconds 0..=254 (0: sub-second).
    pub advbase: u8,
    /// advskew, 0..=254.
    pub advskew: u8,
    /// Forced initial state.
    pub state: Option<CarpStateSpec>,
    /// Interface groups (always includes `carp`).
    pub groups: Vec<String>,
    /// Unicast peer instead of 224.0.0.18.
    pub carppeer: Option<std::net::Ipv4Addr>,
    /// Virtual addresses.
    pub addresses: Vec<(IpAddr, u8)>,
}

impl CarpSpec {
    /// The automatic link-local address OpenBSD gives a carp interface
    /// with IPv6 addresses: the EUI-64 one of its virtual MAC (carp spec
    /// §3.2). `None` without IPv6 addresses.
    pub fn link_local(&self) -> Option<std::net::Ipv6Addr> {
        let ll = crate::carp::wire::eui64_link_local(crate::carp::wire::virtual_mac(self.vhid));
        let has_v6 = self.addresses.iter().any(|(a, _)| a.is_ipv6());
        let configured = self.addresses.iter().any(|(a, _)| *a == IpAddr::V6(ll));
        (has_v6 && !configured).then_some(ll)
    }

    /// Every address of the carp interface: the configured ones, then the
    /// automatic link-local one ([`CarpSpec::link_local`]).
    pub fn all_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addresses
            .iter()
            .map(|(a, _)| *a)
            .chain(self.link_local().map(IpAddr::V6))
    }
}

/// `[pfsync]`: ifconfig pfsync0's words.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PfsyncSpec {
    /// Port index of the sync interface.
    pub syncdev: usize,
    /// Unicast peer instead of 224.0.0.240.
    pub syncpeer: Option<std::net::Ipv4Addr>,
    /// Updates per state are sent at most every `maxupd` packets (0-255,
    /// default 128).
    pub maxupd: u8,
    /// Hold the first packet of a new state until the peer acknowledges
    /// the state (or 20 ms pass).
    pub defer: bool,
    /// dpf-only HMAC-SHA-256 authentication key (`pfsync::auth`); never
    /// shown.
    #[serde(skip)]
    pub auth: Option<Vec<u8>>,
}

/// `net.inet.carp.*`.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct CarpSysctl {
    /// `net.inet.carp.allow` (default 1).
    pub allow: bool,
    /// `net.inet.carp.preempt` (default 0).
    pub preempt: bool,
    /// `net.inet.carp.log` (default 2).
    pub log: u8,
}

impl Default for CarpSysctl {
    fn default() -> Self {
        CarpSysctl {
            allow: true,
            preempt: false,
            log: 2,
        }
    }
}

impl CarpSysctl {
    /// Applies `name=value` (OpenBSD names); returns an error naming the
    /// problem.
    pub fn set(&mut self, name: &str, value: i64) -> Result<(), String> {
        match name {
            "net.inet.carp.allow" | "net.inet.carp.preempt" => {
                if !(0..=1).contains(&value) {
                    return Err(format!("{name}: value must be 0 or 1"));
                }
                if name.ends_with("allow") {
                    self.allow = value == 1;
                } else {
                    self.preempt = value == 1;
                }
            }
            "net.inet.carp.log" => {
                if !(0..=7).contains(&value) {
                    return Err(format!("{name}: value must be 0..=7"));
                }
                self.log = value as u8;
            }
            other => return Err(format!("unknown sysctl '{other}'")),
        }
        Ok(())
    }
}

/// A static neighbour.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NeighborSpec {
    /// Its address.
    pub ip: IpAddr,
    /// Its MAC.
    pub mac: [u8; 6],
    /// The port it is on.
    pub port: usize,
}

/// A validated configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// EAL arguments (without argv\[0\]).
    pub eal_args: Vec<String>,
    /// Forwarding mode.
    pub mode: Mode,
    /// Mbufs in the packet pool.
    pub mbufs: u32,
    /// Rx descriptors per queue.
    pub rx_desc: u16,
    /// Tx descriptors per queue.
    pub tx_desc: u16,
    /// Tx drain interval in microseconds.
    pub tx_drain_us: u32,
    /// Most dynamic neighbour entries (router mode; static ones do not
    /// count).
    pub neighbor_limit: usize,
    /// Ports in order; a port's index is its `IfIndex`.
    pub ports: Vec<PortSpec>,
    /// Wire-mode pairs, as port indexes.
    pub wire_pairs: Vec<(usize, usize)>,
    /// The pf.conf-subset ruleset file, resolved against the config's
    /// directory.
    pub rules: Option<PathBuf>,
    /// Control socket path.
    pub socket: PathBuf,
    /// Static routes (router mode).
    pub routes: Vec<RouteSpec>,
    /// Static neighbours (router mode).
    pub neighbors: Vec<NeighborSpec>,
    /// Carp interfaces.
    pub carp: Vec<CarpSpec>,
    /// `net.inet.carp.*`.
    pub sysctl: CarpSysctl,
    /// pfsync, if configured.
    pub pfsync: Option<PfsyncSpec>,
    /// `[metrics] listen`: where the Prometheus endpoint listens (off when
    /// absent).
    pub metrics: Option<std::net::SocketAddr>,
    /// Wire mode: the non-IP EtherTypes the bridge forwards (ARP by
    /// default; a value below 0x0600 stands for every 802.3/LLC frame).
    pub pass_ethertypes: Vec<u16>,
    /// `[log]`: the pflog file of `log` rules (`None`: they are not
    /// written anywhere, and a ruleset with `log` is refused).
    pub log: Option<crate::pflog::LogSpec>,
}

/// Default control socket path.
pub const DEFAULT_SOCKET: &str = "/run/dpf/dpf.sock";

struct Ctx<'a> {
    file: String,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        let (line, col) = line_col(self.text, span.start);
        ConfigError {
            file: self.file.clone(),
            line,
            col,
            msg: msg.into(),
        }
    }
}

/// 1-based line and column of byte offset `at` in `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
    (line, col)
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            msg: format!("cannot read configuration: {e}"),
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text that came from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let ctx = Ctx {
            file: path.display().to_string(),
            text,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            ctx.err(span, e.message().trim().to_string())
        })?;

        let mut ports: Vec<PortSpec> = Vec::new();
        for p in &raw.ports {
            let name = p.name.get_ref();
            if !valid_ifname(name) {
                return Err(ctx.err(
                    p.name.span(),
                    format!("port name '{name}': use 1-15 letters, digits, '_' or '-', starting with a letter"),
                ));
            }
            if ports.iter().any(|q| &q.name == name) {
                return Err(ctx.err(p.name.span(), format!("duplicate port name '{name}'")));
            }
            let device = parse_device(p.device.get_ref())
                .map_err(|m| ctx.err(p.device.span(), format!("device of port '{name}': {m}")))?;
            if ports
                .iter()
                .any(|q| device_name(&q.device) == device_name(&device))
            {
                return Err(ctx.err(
                    p.device.span(),
                    format!("device '{}' is used by two ports", device_name(&device)),
                ));
            }
            let mut addresses = Vec::new();
            for a in &p.addresses {
                let cidr = parse_cidr(a.get_ref(), true)
                    .map_err(|m| ctx.err(a.span(), format!("address of port '{name}': {m}")))?;
                addresses.push((a.span(), cidr));
            }
            let mac = match &p.mac {
                Some(m) => Some(
                    parse_mac(m.get_ref())
                        .map_err(|e| ctx.err(m.span(), format!("mac of port '{name}': {e}")))?,
                ),
                None => None,
            };
            let mtu = match &p.mtu {
                Some(m) if !(576..=9000).contains(m.get_ref()) => {
                    return Err(ctx.err(m.span(), "mtu must be in 576..=9000"));
                }
                Some(m) => *m.get_ref(),
                None => 1500,
            };
            let rx_placement = match p.rx_placement.as_ref() {
                None => RxPlacement::Auto,
                Some(v) => match v.get_ref().as_str() {
                    "auto" => RxPlacement::Auto,
                    "toeplitz" => RxPlacement::Toeplitz,
                    other => {
                        return Err(ctx.err(
                            v.span(),
                            format!("rx_placement '{other}' of port '{name}': expected \"auto\" or \"toeplitz\""),
                        ))
                    }
                },
            };
            for (span, (ip, _)) in &addresses {
                let dup = ports
                    .iter()
                    .any(|q| q.addresses.iter().any(|(a, _)| a == ip))
                    || addresses.iter().filter(|(_, (a, _))| a == ip).count() > 1;
                if dup {
                    return Err(ctx.err(span.clone(), format!("duplicate address {ip}")));
                }
            }
            ports.push(PortSpec {
                name: name.clone(),
                device,
                addresses: addresses.into_iter().map(|(_, c)| c).collect(),
                mac,
                mtu,
                rx_placement,
            });
        }
        if ports.is_empty() {
            return Err(ctx.err(0..0, "no [[port]] is configured"));
        }
        if ports.len() > MAX_PORTS {
            return Err(ctx.err(
                raw.ports[MAX_PORTS].name.span(),
                format!("at most {MAX_PORTS} ports are supported"),
            ));
        }

        let index_of = |n: &Spanned<String>| -> Result<usize, ConfigError> {
            ports
                .iter()
                .position(|p| &p.name == n.get_ref())
                .ok_or_else(|| ctx.err(n.span(), format!("unknown interface '{}'", n.get_ref())))
        };
        let mut wire_pairs = Vec::new();
        let mut paired = vec![false; ports.len()];
        for pair in &raw.wire.pairs {
            let names = pair.get_ref();
            if names.len() != 2 {
                return Err(ctx.err(pair.span(), "a wire pair names exactly two ports"));
            }
            let a = index_of(&names[0])?;
            let b = index_of(&names[1])?;
            if a == b {
                return Err(ctx.err(pair.span(), "a port cannot be paired with itself"));
            }
            for (i, n) in [(a, &names[0]), (b, &names[1])] {
                if paired[i] {
                    return Err(ctx.err(
                        n.span(),
                        format!("port '{}' is already in a wire pair", n.get_ref()),
                    ));
                }
                paired[i] = true;
            }
            wire_pairs.push((a, b));
        }
        if raw.dataplane.mode == Mode::Wire && wire_pairs.is_empty() {
            return Err(ctx.err(0..0, "mode \"wire\" needs [wire] pairs = [[\"a\", \"b\"]]"));
        }
        if raw.dataplane.mode == Mode::Router {
            if let Some(p) = raw.wire.pairs.first() {
                return Err(ctx.err(
                    p.span(),
                    "[wire] pairs are for mode \"wire\"; this is mode \"router\"",
                ));
            }
        } else if let Some(r) = raw.routes.first() {
            return Err(ctx.err(r.to.span(), "[[route]] needs mode = \"router\""));
        }
        let on_link = |ip: &IpAddr| -> Option<usize> {
            ports.iter().position(|p| {
                p.addresses
                    .iter()
                    .any(|(a, len)| same_family(a, ip) && in_prefix(ip, a, *len))
            })
        };
        let mut routes = Vec::new();
        for r in &raw.routes {
            let dev = r.dev.as_ref().map(&index_of).transpose()?;
            let via = match &r.via {
                Some(v) => Some(v.get_ref().parse::<IpAddr>().map_err(|_| {
                    ctx.err(
                        v.span(),
                        format!("via '{}' is not an IP address", v.get_ref()),
                    )
                })?),
                None => None,
            };
            let to = if r.to.get_ref() == "default" {
                match via {
                    Some(IpAddr::V6(_)) => ("::".parse().unwrap_or(IpAddr::V6(0.into())), 0),
                    _ => (IpAddr::V4(0.into()), 0),
                }
            } else {
                parse_cidr(r.to.get_ref(), false).map_err(|m| ctx.err(r.to.span(), m))?
            };
            let port = match (via, dev) {
                (Some(v), dev) => {
                    if !same_family(&v, &to.0) {
                        return Err(ctx.err(
                            r.to.span(),
                            format!(
                                "route to {}/{} via {v}: address families differ",
                                to.0, to.1
                            ),
                        ));
                    }
                    let Some(p) = on_link(&v) else {
                        return Err(ctx.err(
                            r.via.as_ref().map_or(r.to.span(), |s| s.span()),
                            format!("next hop {v} is not on any interface's subnet"),
                        ));
                    };
                    if dev.is_some_and(|d| d != p) {
                        return Err(ctx.err(
                            r.to.span(),
                            format!("next hop {v} is not on the subnet of dev"),
                        ));
                    }
                    p
                }
                (None, Some(d)) => d,
                (None, None) => {
                    return Err(ctx.err(
                        r.to.span(),
                        "a route needs via = \"<next hop>\" or dev = \"<interface>\"",
                    ));
                }
            };
            routes.push(RouteSpec { to, via, port });
        }
        let mut neighbors = Vec::new();
        for n in &raw.neighbors {
            let ip: IpAddr = n.ip.get_ref().parse().map_err(|_| {
                ctx.err(
                    n.ip.span(),
                    format!("'{}' is not an IP address", n.ip.get_ref()),
                )
            })?;
            let mac = parse_mac(n.mac.get_ref()).map_err(|e| ctx.err(n.mac.span(), e))?;
            let port = match &n.dev {
                Some(d) => index_of(d)?,
                None => on_link(&ip).ok_or_else(|| {
                    ctx.err(
                        n.ip.span(),
                        format!("neighbor {ip} is not on any interface's subnet"),
                    )
                })?,
            };
            neighbors.push(NeighborSpec { ip, mac, port });
        }

        let mbufs = *raw.dataplane.mbufs.get_ref();
        if !(1023..=16_777_215).contains(&mbufs) {
            return Err(ctx.err(
                raw.dataplane.mbufs.span(),
                "mbufs must be in 1023..=16777215",
            ));
        }
        for d in [&raw.dataplane.rx_desc, &raw.dataplane.tx_desc] {
            if !(64..=8192).contains(d.get_ref()) {
                return Err(ctx.err(d.span(), "descriptors must be in 64..=8192"));
            }
        }
        let drain = *raw.dataplane.tx_drain_us.get_ref();
        if !(1..=100_000).contains(&drain) {
            return Err(ctx.err(
                raw.dataplane.tx_drain_us.span(),
                "tx_drain_us must be in 1..=100000",
            ));
        }
        let neighbor_limit = *raw.dataplane.neighbor_limit.get_ref();
        if !(16..=1_048_576).contains(&neighbor_limit) {
            return Err(ctx.err(
                raw.dataplane.neighbor_limit.span(),
                "neighbor_limit must be in 16..=1048576",
            ));
        }
        let eal_args = raw.eal.args.get_ref().clone();
        if eal_args.iter().any(|a| a.contains('\0')) {
            return Err(ctx.err(raw.eal.args.span(), "EAL arguments cannot contain NUL"));
        }
        for a in &eal_args {
            if a == "--vdev" || a.starts_with("--vdev=") {
                return Err(ctx.err(
                    raw.eal.args.span(),
                    "give devices as [[port]] device = \"...\", not as EAL --vdev",
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let rules = raw.dataplane.rules.as_ref().map(|r| base.join(r.get_ref()));
        if let (Some(r), Some(spanned)) = (&rules, &raw.dataplane.rules) {
            if !r.is_file() {
                return Err(ctx.err(
                    spanned.span(),
                    format!("rules file '{}' does not exist", r.display()),
                ));
            }
        }
        let mut carp: Vec<CarpSpec> = Vec::new();
        for c in &raw.carp {
            let name = c.name.get_ref();
            if !valid_ifname(name)
                || ports.iter().any(|p| &p.name == name)
                || carp.iter().any(|x| &x.name == name)
            {
                return Err(ctx.err(
                    c.name.span(),
                    format!("carp interface name '{name}' is invalid or already used"),
                ));
            }
            if raw.dataplane.mode != Mode::Router {
                return Err(ctx.err(c.name.span(), "carp interfaces need mode = \"router\""));
            }
            let range =
                |v: &Spanned<i64>, what: &str, lo: i64, hi: i64| -> Result<u8, ConfigError> {
                    let x = *v.get_ref();
                    if (lo..=hi).contains(&x) {
                        Ok(x as u8)
                    } else {
                        Err(ctx.err(v.span(), format!("{what} {x} out of range ({lo}-{hi})")))
                    }
                };
            let vhid = range(&c.vhid, "vhid", 1, 255)?;
            let advbase = c
                .advbase
                .as_ref()
                .map(|v| range(v, "advbase", 0, 254))
                .transpose()?
                .unwrap_or(1);
            let advskew = c
                .advskew
                .as_ref()
                .map(|v| range(v, "advskew", 0, 254))
                .transpose()?
                .unwrap_or(0);
            let carpdev = index_of(&c.carpdev)?;
            if carp.iter().any(|x| x.carpdev == carpdev && x.vhid == vhid) {
                return Err(ctx.err(
                    c.vhid.span(),
                    format!("vhid {vhid} is already used on {}", c.carpdev.get_ref()),
                ));
            }
            let state = match &c.state {
                None => None,
                Some(s) => Some(match s.get_ref().as_str() {
                    "init" => CarpStateSpec::Init,
                    "backup" => CarpStateSpec::Backup,
                    "master" => CarpStateSpec::Master,
                    other => {
                        return Err(
                            ctx.err(s.span(), format!("state '{other}': init, backup or master"))
                        )
                    }
                }),
            };
            let carppeer = match &c.carppeer {
                None => None,
                Some(p) => Some(p.get_ref().parse::<std::net::Ipv4Addr>().map_err(|_| {
                    ctx.err(
                        p.span(),
                        format!("carppeer '{}' is not an IPv4 address", p.get_ref()),
                    )
                })?),
            };
            let mut addresses = Vec::new();
            for a in &c.addresses {
                let cidr = parse_cidr(a.get_ref(), true)
                    .map_err(|m| ctx.err(a.span(), format!("address of {name}: {m}")))?;
                let dup = ports
                    .iter()
                    .any(|q| q.addresses.iter().any(|(x, _)| *x == cidr.0))
                    || carp
                        .iter()
                        .any(|q| q.addresses.iter().any(|(x, _)| *x == cidr.0));
                if dup {
                    return Err(ctx.err(a.span(), format!("duplicate address {}", cidr.0)));
                }
                addresses.push(cidr);
            }
            if addresses.is_empty() {
                return Err(ctx.err(c.name.span(), format!("{name} has no addresses")));
            }
            let mut groups = vec!["carp".to_string()];
            for g in &c.group {
                if !groups.contains(g) {
                    groups.push(g.clone());
                }
            }
            carp.push(CarpSpec {
                name: name.clone(),
                vhid,
                pass: c.pass.clone().unwrap_or_default(),
                carpdev,
                advbase,
                advskew,
                state,
                groups,
                carppeer,
                addresses,
            });
        }
        let mut sysctl = CarpSysctl::default();
        if let Some(t) = &raw.sysctl {
            let mut flat = Vec::new();
            flatten("", &toml::Value::Table(t.get_ref().clone()), &mut flat);
            for (k, v) in flat {
                let n = v.as_integer().ok_or_else(|| {
                    ctx.err(t.span(), format!("sysctl {k}: value must be an integer"))
                })?;
                sysctl.set(&k, n).map_err(|m| ctx.err(t.span(), m))?;
            }
        }
        let pfsync = match &raw.pfsync {
            None => None,
            Some(p) => {
                if raw.dataplane.mode != Mode::Router {
                    return Err(ctx.err(p.syncdev.span(), "pfsync needs mode = \"router\""));
                }
                let syncdev = index_of(&p.syncdev)?;
                if !ports[syncdev].addresses.iter().any(|(a, _)| a.is_ipv4()) {
                    return Err(ctx.err(
                        p.syncdev.span(),
                        format!("syncdev {} has no IPv4 address", p.syncdev.get_ref()),
                    ));
                }
                let maxupd = match &p.maxupd {
                    Some(m) if !(0..=255).contains(m.get_ref()) => {
                        return Err(ctx.err(m.span(), "maxupd must be 0-255"));
                    }
                    Some(m) => *m.get_ref() as u8,
                    None => 128,
                };
                let syncpeer = match &p.syncpeer {
                    None => None,
                    Some(sp) => Some(sp.get_ref().parse::<std::net::Ipv4Addr>().map_err(|_| {
                        ctx.err(
                            sp.span(),
                            format!("syncpeer '{}' is not an IPv4 address", sp.get_ref()),
                        )
                    })?),
                };
                if let Some(sp) = &p.syncpeer {
                    if syncpeer == Some(std::net::Ipv4Addr::BROADCAST) {
                        return Err(ctx.err(sp.span(), "syncpeer may not be the broadcast address"));
                    }
                }
                let auth = match &p.auth {
                    None => None,
                    Some(a) => {
                        let k = a.get_ref();
                        if k.chars().any(char::is_control) {
                            return Err(ctx.err(a.span(), "auth: control characters in the key"));
                        }
                        if crate::pfsync::auth::Key::new(k.as_bytes()).is_none() {
                            return Err(ctx.err(
                                a.span(),
                                format!(
                                    "auth: the key must be {} to {} bytes",
                                    crate::pfsync::auth::MIN_KEY_LEN,
                                    crate::pfsync::auth::MAX_KEY_LEN
                                ),
                            ));
                        }
                        Some(k.as_bytes().to_vec())
                    }
                };
                Some(PfsyncSpec {
                    syncdev,
                    syncpeer,
                    maxupd,
                    defer: p.defer.as_ref().is_some_and(|d| *d.get_ref()),
                    auth,
                })
            }
        };
        let pass_ethertypes = match &raw.dataplane.pass_ethertypes {
            None => vec![0x0806],
            Some(list) => {
                let mut v = Vec::new();
                for t in list {
                    let e = parse_ethertype(t.get_ref())
                        .map_err(|m| ctx.err(t.span(), format!("pass_ethertypes: {m}")))?;
                    if !v.contains(&e) {
                        v.push(e);
                    }
                }
                if v.len() > dataplane::pipeline::EtherTypeSet::MAX {
                    return Err(ctx.err(
                        list[0].span(),
                        format!(
                            "pass_ethertypes: at most {} EtherTypes",
                            dataplane::pipeline::EtherTypeSet::MAX
                        ),
                    ));
                }
                if raw.dataplane.mode == Mode::Router {
                    return Err(ctx.err(
                        list[0].span(),
                        "pass_ethertypes is for wire mode (a router forwards only IP)",
                    ));
                }
                v
            }
        };
        let log = match &raw.log {
            None => None,
            Some(l) => {
                if l.file.get_ref().is_empty() {
                    return Err(ctx.err(l.file.span(), "log: file must not be empty"));
                }
                let size_bytes = match &l.size {
                    None => None,
                    Some(s) if *s.get_ref() >= 4096 => Some(*s.get_ref() as u64),
                    Some(s) => {
                        return Err(ctx.err(s.span(), "log: size is in bytes, at least 4096"))
                    }
                };
                let keep = match &l.keep {
                    None => 3,
                    Some(k) if (0..=1000).contains(k.get_ref()) => *k.get_ref() as u32,
                    Some(k) => return Err(ctx.err(k.span(), "log: keep must be 0 to 1000")),
                };
                Some(crate::pflog::LogSpec {
                    file: base.join(l.file.get_ref()),
                    size_bytes,
                    keep,
                })
            }
        };
        let metrics =
            match &raw.metrics {
                None => None,
                Some(m) => Some(m.listen.get_ref().parse::<std::net::SocketAddr>().map_err(
                    |_| {
                        ctx.err(
                            m.listen.span(),
                            format!(
                        "metrics listen '{}' is not an address:port (e.g. \"127.0.0.1:9100\")",
                        m.listen.get_ref()
                    ),
                        )
                    },
                )?),
            };
        Ok(Config {
            log,
            metrics,
            pass_ethertypes,
            path: path.to_path_buf(),
            eal_args,
            mode: raw.dataplane.mode,
            mbufs,
            rx_desc: *raw.dataplane.rx_desc.get_ref(),
            tx_desc: *raw.dataplane.tx_desc.get_ref(),
            tx_drain_us: drain,
            neighbor_limit: neighbor_limit as usize,
            ports,
            wire_pairs,
            rules,
            socket: raw
                .control
                .socket
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            routes,
            neighbors,
            carp,
            sysctl,
            pfsync,
        })
    }

    /// Whether any port is a PCI device (otherwise EAL gets `--no-pci`).
    pub fn has_pci(&self) -> bool {
        self.ports
            .iter()
            .any(|p| matches!(p.device, Device::Pci(_)))
    }
}

/// Parses `ip/len` (or a bare address as a host prefix when `host_ok`);
/// for interface addresses the host part is kept.
fn parse_cidr(s: &str, interface: bool) -> Result<(IpAddr, u8), String> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not an address/prefix"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("'{s}': prefix length must be 0..={max}"))?,
        None if interface => {
            return Err(format!(
                "'{s}' needs a prefix length (e.g. {ip}/{})",
                if max == 32 { 24 } else { 64 }
            ))
        }
        None => max,
    };
    if interface && (ip.is_multicast() || ip.is_unspecified()) {
        return Err(format!("'{s}' cannot be an interface address"));
    }
    Ok((ip, len))
}

/// `a.b.c = 1` and `"a.b.c" = 1` both become ("a.b.c", 1).
fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn same_family(a: &IpAddr, b: &IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Whether `ip` is inside `net/len`.
pub fn in_prefix(ip: &IpAddr, net: &IpAddr, len: u8) -> bool {
    let bits = |a: &IpAddr| -> u128 {
        match a {
            IpAddr::V4(v) => u32::from(*v) as u128,
            IpAddr::V6(v) => u128::from(*v),
        }
    };
    let width = if ip.is_ipv4() { 32 } else { 128 };
    if len == 0 {
        return same_family(ip, net);
    }
    let shift = width - len as u32;
    same_family(ip, net) && (bits(ip) >> shift) == (bits(net) >> shift)
}

/// An EtherType by name (`arp`, `llc`, `lldp`, `ipx`...) or number
/// (`0x88cc`). IPv4, IPv6 and VLAN tags are refused: the bridge filters or
/// walks those, it never passes them blind.
pub fn parse_ethertype(s: &str) -> Result<u16, String> {
    let v = match s.to_ascii_lowercase().as_str() {
        "arp" => 0x0806,
        "rarp" => 0x8035,
        "llc" | "802.3" => 0x0000,
        "lldp" => 0x88cc,
        "ipx" => 0x8137,
        "mpls" => 0x8847,
        "mpls-multicast" => 0x8848,
        "pppoe-discovery" => 0x8863,
        "pppoe" => 0x8864,
        "eapol" => 0x888e,
        "macsec" => 0x88e5,
        "ptp" => 0x88f7,
        "lacp" | "slow" => 0x8809,
        other => {
            let n = other
                .strip_prefix("0x")
                .and_then(|h| u16::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("unknown EtherType '{s}' (a name such as arp, llc, lldp, or a hex number like 0x88cc)"))?;
            if n < 0x0600 {
                return Err(format!(
                    "0x{n:04x} is an 802.3 length, not an EtherType (use \"llc\")"
                ));
            }
            n
        }
    };
    match v {
        0x0800 | 0x86dd => Err(format!("'{s}' is IP, which the rules filter")),
        0x8100 | 0x88a8 | 0x9100 => Err(format!(
            "'{s}' is a VLAN tag, which dpf walks to filter what is inside"
        )),
        v => Ok(v),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("'{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    let mut mac = [0u8; 6];
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| format!("'{s}' is not a MAC address"))?;
    }
    Ok(mac)
}

fn valid_ifname(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && n.len() <= 15
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Known DPDK virtual-device drivers dpf is tested with.
const VDEV_DRIVERS: &[&str] = &[
    "net_pcap",
    "net_ring",
    "net_memif",
    "net_vhost",
    "virtio_user",
    "net_af_packet",
    "net_null",
    "net_tap",
    "net_af_xdp",
];

fn device_name(d: &Device) -> &str {
    match d {
        Device::Vdev(s) => s.split(',').next().unwrap_or(s),
        Device::Pci(s) => s,
    }
}

fn parse_device(s: &str) -> Result<Device, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty device".into());
    }
    if is_pci_address(s) {
        return Ok(Device::Pci(s.to_string()));
    }
    let (name, args) = s.split_once(',').unwrap_or((s, ""));
    let driver = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if !VDEV_DRIVERS.contains(&driver) {
        return Err(format!(
            "'{name}' is neither a PCI address (0000:03:00.0) nor a virtual device of a known driver ({})",
            VDEV_DRIVERS.join(", ")
        ));
    }
    if driver == name {
        return Err(format!(
            "virtual device '{name}' needs an instance number (e.g. {name}0)"
        ));
    }
    for kv in args.split(',').filter(|a| !a.is_empty()) {
        let Some((k, _)) = kv.split_once('=') else {
            return Err(format!("device argument '{kv}' is not key=value"));
        };
        if k.is_empty() {
            return Err(format!("device argument '{kv}' has an empty key"));
        }
    }
    Ok(Device::Vdev(s.to_string()))
}

fn is_pci_address(s: &str) -> bool {
    // dddd:bb:dd.f or bb:dd.f
    let parts: Vec<&str> = s.split([':', '.']).collect();
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    match parts.as_slice() {
        [d, b, dev, f] => hex(d, 4) && hex(b, 2) && hex(dev, 2) && hex(f, 1),
        [b, dev, f] => hex(b, 2) && hex(dev, 2) && hex(f, 1),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[eal]
args = ["--no-huge", "-m", "128"]

[[port]]
name = "lan0"
device = "net_ring0"

[[port]]
name = "wan0"
device = "net_pcap0,rx_pcap=/tmp/in.pcap,tx_pcap=/tmp/out.pcap"

[wire]
pairs = [["lan0", "wan0"]]
"#;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("dpf.toml"))
    }

    #[test]
    fn good_config_parses() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.wire_pairs, vec![(0, 1)]);
        assert_eq!(c.mbufs, 16383);
        assert!(!c.has_pci());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let t = GOOD.replace("name = \"lan0\"", "name = \"lan0\"\nspeed = 10");
        let e = parse(&t).unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(e.msg.contains("unknown field `speed`"), "{e}");
        assert!(e.to_string().starts_with("dpf.toml:7:"), "{e}");
    }

    #[test]
    fn bad_devargs_are_refused_with_line() {
        let t = GOOD.replace("net_ring0", "net_bogus0,x=1");
        let e = parse(&t).unwrap_err();
        assert_eq!(e.line, 7);
        assert!(e.msg.contains("net_bogus0"), "{e}");
        let t = GOOD.replace("net_ring0", "net_ring0,novalue");
        assert!(parse(&t).unwrap_err().msg.contains("not key=value"));
        let t = GOOD.replace("net_ring0", "net_ring");
        assert!(parse(&t).unwrap_err().msg.contains("instance number"));
    }

    #[test]
    fn pairs_must_name_known_distinct_ports() {
        let t = GOOD.replace("[\"lan0\", \"wan0\"]", "[\"lan0\", \"dmz0\"]");
        let e = parse(&t).unwrap_err();
        assert!(e.msg.contains("unknown interface 'dmz0'"), "{e}");
        assert_eq!(e.line, 14);
        let t = GOOD.replace("[\"lan0\", \"wan0\"]", "[\"lan0\", \"lan0\"]");
        assert!(parse(&t).is_err());
    }

    #[test]
    fn duplicate_port_names_and_devices_refused() {
        let t = GOOD.replace("name = \"wan0\"", "name = \"lan0\"");
        assert!(parse(&t).unwrap_err().msg.contains("duplicate port name"));
        let t = GOOD.replace(
            "net_pcap0,rx_pcap=/tmp/in.pcap,tx_pcap=/tmp/out.pcap",
            "net_ring0",
        );
        assert!(parse(&t).unwrap_err().msg.contains("used by two ports"));
    }

    #[test]
    fn pci_addresses_are_recognised() {
        assert!(is_pci_address("0000:03:00.0"));
        assert!(is_pci_address("03:00.1"));
        assert!(!is_pci_address("net_ring0"));
        assert_eq!(
            parse_device("0000:03:00.0"),
            Ok(Device::Pci("0000:03:00.0".into()))
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("[eal]\nargs = [\"a\"\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
    }

    const ROUTER: &str = r#"
[eal]
args = []
[dataplane]
mode = "router"
[[port]]
name = "lan0"
device = "net_ring0"
addresses = ["10.1.0.1/24", "2001:db8:1::1/64"]
[[port]]
name = "wan0"
device = "net_ring1"
addresses = ["10.2.0.1/24"]
mac = "02:00:00:00:00:aa"
[[route]]
to = "default"
via = "10.2.0.254"
[[route]]
to = "172.16.0.0/12"
via = "10.1.0.254"
[[neighbor]]
ip = "10.2.0.254"
mac = "02:00:00:00:00:fe"
"#;

    #[test]
    fn pfsync_auth_is_optional_checked_and_never_shown() {
        let base = format!("{ROUTER}[pfsync]\nsyncdev = \"wan0\"\nsyncpeer = \"10.2.0.2\"\n");
        let c = parse(&base).expect("valid");
        assert_eq!(c.pfsync.as_ref().and_then(|p| p.auth.clone()), None);
        let t = format!("{base}auth = \"correct horse battery staple\"\n");
        let c = parse(&t).expect("valid");
        let p = c.pfsync.as_ref().unwrap();
        assert_eq!(
            p.auth.as_deref(),
            Some(&b"correct horse battery staple"[..])
        );
        let shown = serde_json::to_string(p).unwrap();
        assert!(!shown.contains("horse"), "{shown}");
        let lines = base.lines().count() + 1;
        let e = parse(&format!("{base}auth = \"short\"\n")).unwrap_err();
        assert!(e.msg.contains("16 to 1024 bytes"), "{e}");
        assert_eq!(e.line, lines, "{e}");
        let e = parse(&format!("{base}auth = \"sixteen bytes\\nand more\"\n")).unwrap_err();
        assert!(e.msg.contains("control characters"), "{e}");
        let e = parse(&format!("{base}auth = 12345678901234567\n")).unwrap_err();
        assert_eq!(e.line, lines, "{e}");
        let t = base.replace("\"10.2.0.2\"", "\"255.255.255.255\"");
        let e = parse(&t).unwrap_err();
        assert!(e.msg.contains("broadcast"), "{e}");
    }

    #[test]
    fn router_config_parses_routes_and_neighbors() {
        let c = parse(ROUTER).expect("valid");
        assert_eq!(c.mode, Mode::Router);
        assert_eq!(c.ports[0].addresses.len(), 2);
        assert_eq!(c.ports[1].mac, Some([2, 0, 0, 0, 0, 0xaa]));
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[0].port, 1);
        assert_eq!(c.routes[1].port, 0);
        assert_eq!(c.neighbors[0].port, 1);
    }

    #[test]
    fn neighbor_limit_defaults_and_is_range_checked() {
        assert_eq!(
            parse(ROUTER).expect("valid").neighbor_limit,
            crate::slowpath::DEFAULT_NEIGHBOR_LIMIT
        );
        let set = ROUTER.replace(
            "mode = \"router\"",
            "mode = \"router\"\nneighbor_limit = 64",
        );
        assert_eq!(parse(&set).expect("valid").neighbor_limit, 64);
        for bad in ["8", "2000000", "-1"] {
            let t = ROUTER.replace(
                "mode = \"router\"",
                &format!("mode = \"router\"\nneighbor_limit = {bad}"),
            );
            let e = parse(&t).unwrap_err();
            assert_eq!((e.line, e.col), (6, 18), "{bad}: {e}");
            if bad != "-1" {
                assert!(
                    e.msg.contains("neighbor_limit must be in 16..=1048576"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn router_config_errors_name_line_and_reason() {
        let off = ROUTER.replace("via = \"10.2.0.254\"", "via = \"192.0.2.1\"");
        let e = parse(&off).unwrap_err();
        assert!(e.msg.contains("192.0.2.1 is not on any interface"), "{e}");
        assert_eq!(e.line, 17, "{e}");
        let dup = ROUTER.replace(
            "addresses = [\"10.2.0.1/24\"]",
            "addresses = [\"10.1.0.1/24\"]",
        );
        let e = parse(&dup).unwrap_err();
        assert!(e.msg.contains("duplicate address 10.1.0.1"), "{e}");
        assert_eq!(e.line, 13);
        let unknown = ROUTER.replace("via = \"10.1.0.254\"", "dev = \"dmz0\"");
        let e = parse(&unknown).unwrap_err();
        assert!(e.msg.contains("unknown interface 'dmz0'"), "{e}");
        let nolen = ROUTER.replace("10.2.0.1/24", "10.2.0.1");
        assert!(parse(&nolen).unwrap_err().msg.contains("prefix length"));
        let badmac = ROUTER.replace("02:00:00:00:00:fe", "02:00:00:00:fe");
        assert!(parse(&badmac).unwrap_err().msg.contains("MAC"));
    }

    #[test]
    fn carp_entries_use_ifconfig_words_and_ranges() {
        let carp = format!(
            "{ROUTER}\n[[carp]]\nname = \"carp1\"\nvhid = 1\npass = \"secret\"\ncarpdev = \"lan0\"\nadvskew = 100\ngroup = [\"internal\"]\naddresses = [\"10.1.0.254/24\"]\n[sysctl]\nnet.inet.carp.preempt = 1\n\"net.inet.carp.log\" = 5\n"
        );
        let c = parse(&carp).expect("valid");
        assert_eq!(c.carp[0].vhid, 1);
        assert_eq!(c.carp[0].advbase, 1);
        assert_eq!(c.carp[0].advskew, 100);
        assert_eq!(c.carp[0].groups, vec!["carp", "internal"]);
        assert!(c.sysctl.preempt);
        assert_eq!(c.sysctl.log, 5);
        let e = parse(&carp.replace("advskew = 100", "advskew = 255")).unwrap_err();
        assert!(e.msg.contains("advskew 255 out of range (0-254)"), "{e}");
        let e = parse(&carp.replace("vhid = 1", "vhid = 0")).unwrap_err();
        assert!(e.msg.contains("vhid 0 out of range (1-255)"), "{e}");
        let twice = format!(
            "{carp}\n[[carp]]\nname = \"carp2\"\nvhid = 1\ncarpdev = \"lan0\"\naddresses = [\"10.1.0.253/24\"]\n"
        );
        let e = parse(&twice).unwrap_err();
        assert!(e.msg.contains("vhid 1 is already used on lan0"), "{e}");
        let e = parse(&carp.replace("net.inet.carp.preempt = 1", "net.inet.carp.preempt = 2"))
            .unwrap_err();
        assert!(e.msg.contains("0 or 1"), "{e}");
    }

    #[test]
    fn carp_addresses_may_be_ipv4_and_ipv6() {
        let carp = format!(
            "{ROUTER}\n[[carp]]\nname = \"carp1\"\nvhid = 1\ncarpdev = \"lan0\"\naddresses = [\"10.1.0.254/24\", \"2001:db8:1::fe/64\"]\n"
        );
        let c = parse(&carp).expect("both families");
        assert_eq!(
            c.carp[0].addresses,
            vec![
                ("10.1.0.254".parse().unwrap(), 24),
                ("2001:db8:1::fe".parse().unwrap(), 64)
            ]
        );
        let v6only = carp.replace("\"10.1.0.254/24\", ", "");
        let c = parse(&v6only).expect("IPv6 only");
        assert_eq!(c.carp[0].addresses.len(), 1);
        assert!(c.carp[0].addresses[0].0.is_ipv6());
        let twice = format!(
            "{v6only}\n[[carp]]\nname = \"carp2\"\nvhid = 2\ncarpdev = \"lan0\"\naddresses = [\"2001:db8:1::fe/64\"]\n"
        );
        let e = parse(&twice).unwrap_err();
        assert!(e.msg.contains("duplicate address 2001:db8:1::fe"), "{e}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
