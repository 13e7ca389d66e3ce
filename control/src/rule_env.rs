//! What pf.conf's names mean on this box: the interface names, addresses,
//! CARP interfaces and interface groups the rule compiler resolves
//! (`on lan0`, `to self`, `to carp1`, `from lan0:network`, `on carp`,
//! `on egress`), built from the configuration in one place for the daemon
//! at start and for `dpfctl -f`.
//!
//! Meanings, as close to pf as a box without kernel interfaces gets:
//! - a port name is that port; as an address, its addresses;
//! - a CARP interface (`[[carp]] name`) in `on` is its carpdev (the
//!   frames it sends and the frames to its virtual MAC cross that port);
//!   as an address, its virtual addresses;
//! - the group `carp` holds every CARP interface, each `group` of a
//!   `[[carp]]` entry its members, and `egress` the ports that hold a
//!   default route (pf's `egress` group);
//! - `self` is every port address and every CARP address (none in wire
//!   mode, where the bridge has no address).
//!
//! Interface addresses are fixed by the configuration, so `(lan0)` is
//! `lan0`.

use crate::config::Config;
use dataplane::flow::{Addr, Af, IfIndex};
use dataplane::rules::{NamedInterface, RuleEnv};

/// The owned data behind a [`RuleEnv`].
#[derive(Clone, Debug, Default)]
pub struct RuleNames {
    interfaces: Vec<(String, IfIndex)>,
    self_addrs: Vec<(Af, Addr)>,
    names: Vec<NamedInterface>,
}

impl RuleNames {
    /// The names of `config`.
    pub fn of(config: &Config) -> RuleNames {
        let interfaces: Vec<(String, IfIndex)> = config
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), IfIndex(i as u16)))
            .collect();
        let addrs_of = |list: &[(std::net::IpAddr, u8)]| -> Vec<(Af, Addr, u8)> {
            list.iter()
                .map(|(ip, len)| {
                    let (af, a) = Addr::from_ip(*ip);
                    (af, a, *len)
                })
                .collect()
        };
        let mut names: Vec<NamedInterface> = Vec::new();
        let mut add = |name: &str, ports: u32, addrs: Vec<(Af, Addr, u8)>| match names
            .iter_mut()
            .find(|n| n.name == name)
        {
            Some(n) => {
                n.ports |= ports;
                for a in addrs {
                    if !n.addrs.contains(&a) {
                        n.addrs.push(a);
                    }
                }
            }
            None => names.push(NamedInterface {
                name: name.to_string(),
                ports,
                addrs,
            }),
        };
        for (i, p) in config.ports.iter().enumerate() {
            add(&p.name, 1 << i, addrs_of(&p.addresses));
        }
        for c in &config.carp {
            let ports = 1u32 << c.carpdev;
            let vips = addrs_of(&c.addresses);
            add(&c.name, ports, vips.clone());
            add("carp", ports, vips.clone());
            for g in &c.groups {
                add(g, ports, vips.clone());
            }
        }
        for r in &config.routes {
            if r.to.1 == 0 {
                let addrs = config
                    .ports
                    .get(r.port)
                    .map(|p| addrs_of(&p.addresses))
                    .unwrap_or_default();
                add("egress", 1 << r.port, addrs);
            }
        }
        let mut self_addrs: Vec<(Af, Addr)> = Vec::new();
        let all = config
            .ports
            .iter()
            .flat_map(|p| p.addresses.iter())
            .chain(config.carp.iter().flat_map(|c| c.addresses.iter()));
        for (ip, _) in all {
            let a = Addr::from_ip(*ip);
            if !self_addrs.contains(&a) {
                self_addrs.push(a);
            }
        }
        RuleNames {
            interfaces,
            self_addrs,
            names,
        }
    }

    /// Calls `f` with the compiler's view of these names.
    pub fn with_env<R>(&self, f: impl FnOnce(&RuleEnv<'_>) -> R) -> R {
        let interfaces: Vec<(&str, IfIndex)> = self
            .interfaces
            .iter()
            .map(|(n, i)| (n.as_str(), *i))
            .collect();
        f(&RuleEnv {
            interfaces: &interfaces,
            self_addrs: &self.self_addrs,
            names: &self.names,
        })
    }
}
