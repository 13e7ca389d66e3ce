//! What the control thread knows about the ports and next hops: link
//! state for CARP (the af_packet PMD's report corrected by the kernel
//! interface's carrier) and the gateways the slow path keeps resolved.

use crate::config::Config;
use dataplane::dpdk::Port;
use dataplane::flow::Addr;
use dataplane::route::ResolveRequest;

/// The routes' gateways, which the slow path keeps resolved.
pub(super) fn gateways(config: &Config) -> Vec<ResolveRequest> {
    let mut v: Vec<ResolveRequest> = Vec::new();
    for r in &config.routes {
        let Some(via) = r.via else { continue };
        let (af, addr) = Addr::from_ip(via);
        let req = ResolveRequest {
            af,
            addr,
            port: r.port as u16,
        };
        if !v.contains(&req) {
            v.push(req);
        }
    }
    v
}

/// Whether port `i` has link. DPDK's af_packet PMD reports its link up
/// from start to stop whatever the kernel interface does, so for
/// `net_af_packet` ports the kernel interface's carrier and operstate
/// decide (a carpdev whose cable is pulled goes INIT and demotes, as the
/// FAQ describes); other PMDs report the real link.
pub(super) fn link_up(config: &Config, i: usize, port: &Port) -> bool {
    let pmd_up = port.link().up;
    let Some(iface) = config.ports.get(i).and_then(|p| af_packet_iface(&p.device)) else {
        return pmd_up;
    };
    let read = |what: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{iface}/{what}"))
            .map(|s| s.trim().to_string())
            .ok()
    };
    let carrier = read("carrier").is_some_and(|c| c == "1");
    let oper = read("operstate").is_some_and(|o| o == "up" || o == "unknown");
    pmd_up && carrier && oper
}

/// The kernel interface behind a `net_af_packet` device (`iface=NAME`).
fn af_packet_iface(device: &crate::config::Device) -> Option<String> {
    let crate::config::Device::Vdev(args) = device else {
        return None;
    };
    let mut parts = args.split(',');
    if !parts.next()?.starts_with("net_af_packet") {
        return None;
    }
    parts
        .find_map(|kv| kv.strip_prefix("iface="))
        .filter(|n| !n.is_empty() && !n.contains('/') && !n.contains(".."))
        .map(str::to_string)
}
