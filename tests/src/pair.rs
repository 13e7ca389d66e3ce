//! What the pair tests (`ha`, `nat_ha`, `faults`) share: the FAQ's
//! segments in network namespaces (a LAN bridge and a WAN bridge with a
//! host each, both firewalls on both, optionally the crossover sync link),
//! `dpfctl --json` calls and polling with a deadline.

use crate::dpfctl_bin;
use crate::netns::{must, plain_link, Namespaces};
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
