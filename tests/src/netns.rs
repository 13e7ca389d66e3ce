//! Network namespaces for the lab, pair and HA tests: shell helpers and a
//! guard that deletes the namespaces it made (and with them their links)
//! when the test ends, also when it fails. Traffic stays inside them.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs `cmd` with `sh -c`.
pub fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("sh")
}

/// Runs `cmd` and fails the test with its stderr if it fails.
pub fn must(cmd: &str) {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `cmd` inside namespace `ns`.
pub fn in_ns(ns: &str, cmd: &str) -> Output {
    sh(&format!("ip netns exec {ns} {cmd}"))
}

/// Turns off checksum and segmentation offloads on `dev` in `ns` (DPDK's
/// af_packet sees exactly what the kernel puts on the veth), disables IPv6
/// autoconfiguration noise on it, and brings it up.
pub fn plain_link(ns: &str, dev: &str) {
    must(&format!(
        "ip netns exec {ns} ethtool -K {dev} tx off rx off tso off gso off gro off"
    ));
    must(&format!(
        "ip netns exec {ns} sysctl -qw net.ipv6.conf.{dev}.disable_ipv6=1"
    ));
    must(&format!("ip -n {ns} link set {dev} up"));
}

/// Namespaces named `<prefix><role><unique>`, deleted on drop.
pub struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// Creates one namespace per role, with `lo` up.
    pub fn new(prefix: &str, roles: &[&str]) -> Namespaces {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Namespaces {
            names: roles.iter().map(|r| format!("{prefix}{r}{id}")).collect(),
        };
        for n in &ns.names {
            must(&format!("ip netns add {n}"));
            must(&format!("ip -n {n} link set lo up"));
        }
        ns
    }

    /// The name of the `i`th role.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// All names, in role order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}
