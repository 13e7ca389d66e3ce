//! What the pair tests (`ha`, `nat_ha`, `synproxy_ha`, `faults`) share:
//! the FAQ's segments in network namespaces (a LAN bridge and a WAN bridge
//! with a host each, both firewalls on both, optionally the crossover sync
//! link), the firewalls' dpf.toml, `dpfctl --json` calls and polling with a
//! deadline.

use crate::netns::{must, plain_link, Namespaces};
use crate::{dpfctl_bin, eal_args};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The segments of the FAQ pair: namespaces `lan`, `wan`, `fw1`, `fw2`
/// (in that order). Each firewall has `l0` on the LAN bridge and `w0` on
/// the WAN bridge (and `s0`, the crossover cable to the other, with
/// `sync_link`); the LAN host is 10.1.0.50/24 with its default route via
/// the carp1 VIP 10.1.0.254, the WAN host 10.2.0.50/24, with its default
/// route via 10.2.0.254 when `wan_default_route` (a NAT test gives the WAN
/// host no route to the LAN).
pub fn faq_segments(prefix: &str, sync_link: bool, wan_default_route: bool) -> Namespaces {
    let guard = Namespaces::new(prefix, &["lan", "wan", "fw1", "fw2"]);
    let ns: Vec<String> = guard.names().to_vec();
    let (lan, wan) = (&ns[0], &ns[1]);
    for (side, dev) in [(lan, "l0"), (wan, "w0")] {
        must(&format!("ip -n {side} link add br0 type bridge"));
        for (i, fw_ns) in ns[2..].iter().enumerate() {
            let p = format!("p{}{dev}", i + 1);
            must(&format!(
                "ip link add {p} netns {side} type veth peer name {dev} netns {fw_ns}"
            ));
            must(&format!("ip -n {side} link set {p} master br0"));
            plain_link(side, &p);
            plain_link(fw_ns, dev);
        }
        // The hosts live on the bridges: real checksums on the wire.
        plain_link(side, "br0");
    }
    if sync_link {
        must(&format!(
            "ip link add s0 netns {} type veth peer name s0 netns {}",
            ns[2], ns[3]
        ));
        plain_link(&ns[2], "s0");
        plain_link(&ns[3], "s0");
    }
    must(&format!("ip -n {lan} addr add 10.1.0.50/24 dev br0"));
    must(&format!("ip -n {lan} route add default via 10.1.0.254"));
    must(&format!("ip -n {wan} addr add 10.2.0.50/24 dev br0"));
    if wan_default_route {
        must(&format!("ip -n {wan} route add default via 10.2.0.254"));
    }
    guard
}

/// The dpf.toml of firewall `fw` (1 or 2) of the FAQ pair on
/// [`faq_segments`] without the sync link: router mode, lan0 / wan0 on
/// `l0` / `w0` with 10.1.0.`fw` and 10.2.0.`fw`, carp1 (10.1.0.254) and
/// carp2 (`wan_vip`) at `advskew` with preemption, pfsync on lan0 with
/// `pfsync_extra` (more `[pfsync]` lines), the control socket `sock`;
/// `eal_tag` names its EAL file prefix.
pub fn faq_fw_config(
    fw: usize,
    advskew: u8,
    wan_vip: &str,
    pfsync_extra: &str,
    eal_tag: &str,
    sock: &Path,
) -> String {
    format!(
        r#"[eal]
args = {eal}
[dataplane]
mode = "router"
rules = "pf.conf"
[[port]]
name = "lan0"
device = "net_af_packet0,iface=l0"
addresses = ["10.1.0.{fw}/24"]
[[port]]
name = "wan0"
device = "net_af_packet1,iface=w0"
addresses = ["10.2.0.{fw}/24"]
[[carp]]
name = "carp1"
vhid = 1
pass = "lanpass"
carpdev = "lan0"
advskew = {advskew}
addresses = ["10.1.0.254/24"]
[[carp]]
name = "carp2"
vhid = 2
pass = "wanpass"
carpdev = "wan0"
advskew = {advskew}
addresses = ["{wan_vip}/24"]
[sysctl]
net.inet.carp.preempt = 1
[pfsync]
syncdev = "lan0"
{pfsync_extra}[control]
socket = "{sock}"
"#,
        eal = eal_args(&format!("{eal_tag}{fw}"), 256, "0@0,1@1"),
        sock = sock.display(),
    )
}

/// `dpfctl --json ARGS` against `sock`, which must succeed.
pub fn dpfctl_json(sock: &Path, args: &[&str]) -> Value {
    let out = Command::new(dpfctl_bin())
        .arg("--socket")
        .arg(sock)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dpfctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls `f` every 50 ms until it holds; fails the test after `within`.
/// Returns how long it took.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "{what} not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}
