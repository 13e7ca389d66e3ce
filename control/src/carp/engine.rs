//! The CARP shell on the control thread: owns one [`Vhost`] per carp
//! interface, feeds it received advertisements (IPv4 and IPv6, validated in
//! spec §2.5's order), timers, the carpdevs' link state and operator
//! commands with `now`, and executes the actions it returns — IPv4 and IPv6
//! advertisement frames, the virtual-MAC ownership flags the workers read,
//! changes of the carpdev's MAC filter, gratuitous ARP and unsolicited
//! neighbour advertisements, carpdev demotion on link loss (§4.12), log
//! lines at `net.inet.carp.log` levels. Sans-I/O like the slow path: frames
//! to send are returned, MAC filter changes are handed to a closure the
//! caller supplies, and link state is an input ([`Carp::set_link`]).

use crate::carp::auth::{hmac_lladdr, new_cookie};
use crate::carp::fsm::ConfigChange;
use crate::carp::validate::{Candidate, RxContext, RxIf};
use crate::carp::wire::{
    eui64_link_local, parse_frame, virtual_mac, AdvertFrameV4, AdvertFrameV6, Repr,
    ADVERT_V4_FRAME_LEN, ADVERT_V6_FRAME_LEN, CARP_GROUP_MAC_V4, CARP_GROUP_MAC_V6, CARP_GROUP_V4,
    CARP_GROUP_V6,
};
use crate::carp::{
    validate, Action, AuthContext, AuthInput, CarpStats, Counter, Demotion, Env, Event, Key, State,
    Vhost, VhostConfig, LOG_ERR, LOG_WARNING,
};
use crate::config::{CarpSpec, CarpStateSpec, CarpSysctl};
use crate::log::Level;
use crate::slowpath::Out;
use dataplane::flow::Af;
use dataplane::route::{Routing, VipTable};
use dataplane::time::Instant;
use dataplane::wire::build;
use dataplane::wire::EthernetAddress;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// One carp interface (one VHID).
struct CarpIf {
    spec: CarpSpec,
    vhost: Vhost,
    auth: AuthContext,
    cookie: u64,
    admin_up: bool,
    own_demote: u32,
    transitions: u64,
    /// Its IPv4 addresses.
    v4: Vec<Ipv4Addr>,
    /// Its IPv6 addresses: the configured ones, then the automatic
    /// link-local one of the virtual MAC when there are any (§3.2).
    v6: Vec<Ipv6Addr>,
    /// It holds a +1 "carpdev" demotion for a carpdev without link (§4.8).
    link_demoted: bool,
    /// Its virtual MAC is in the carpdev's MAC filter.
    vmac_filtered: bool,
}

impl CarpIf {
    fn is_v6_configured(&self) -> bool {
        self.spec.addresses.iter().any(|(a, _)| a.is_ipv6())
    }
}

/// A change of a port's MAC filter: the virtual MAC of a VHID added when
/// it becomes MASTER, removed when it leaves MASTER (`rte_eth_dev_mac_addr_add`
/// / `_remove`, a control-path call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterOp {
    /// Port (carpdev) index.
    pub port: u16,
    /// The virtual MAC.
    pub mac: [u8; 6],
    /// Add (true) or remove (false).
    pub add: bool,
}

/// Outcomes of [`FilterOp`]s (`dpfctl -s carp`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FilterStats {
    /// Virtual MACs added to a port's filter.
    pub added: u64,
    /// Virtual MACs removed from a port's filter.
    pub removed: u64,
    /// Adds or removes the port refused (logged; never fatal — ports run
    /// promiscuous, so frames to the virtual MAC still arrive).
    pub failed: u64,
}

/// Every carp interface of the box and what they share.
pub struct Carp {
    ifs: Vec<CarpIf>,
    routing: Arc<Routing>,
    vips: Arc<VipTable>,
    demotion: Demotion,
    /// `net.inet.carp.*`.
    pub sysctl: CarpSysctl,
    /// carpstats (spec §5.3).
    pub stats: CarpStats,
    ip_id: u16,
    /// Link of each port as last polled (`None`: not polled yet).
    links: Vec<Option<bool>>,
    /// MAC filter changes not yet applied.
    filter_ops: Vec<FilterOp>,
    /// A filter failure was logged for this port already.
    filter_warned: Vec<bool>,
    /// MAC filter outcomes.
    pub filter: FilterStats,
}

impl Carp {
    /// Builds the carp interfaces of `specs`; `vips` is the table the
    /// workers and the slow path read ownership from.
    pub fn new(
        specs: &[CarpSpec],
        sysctl: CarpSysctl,
        routing: Arc<Routing>,
        vips: Arc<VipTable>,
    ) -> Carp {
        let mut rng = rand::thread_rng();
        let mut demotion = Demotion::new();
        let ifs = specs
            .iter()
            .map(|s| {
                let v4: Vec<Ipv4Addr> = s
                    .addresses
                    .iter()
                    .filter_map(|(a, _)| match a {
                        IpAddr::V4(v) => Some(*v),
                        IpAddr::V6(_) => None,
                    })
                    .collect();
                let mut v6: Vec<Ipv6Addr> = s
                    .addresses
                    .iter()
                    .filter_map(|(a, _)| match a {
                        IpAddr::V6(v) => Some(*v),
                        IpAddr::V4(_) => None,
                    })
                    .collect();
                let has_v6 = !v6.is_empty();
                // The automatic link-local address: scoped, so only in the
                // ORIG digest (§3.2); it also gets an unsolicited NA (§4.10).
                if let Some(ll) = s.link_local() {
                    v6.push(ll);
                }
                let parent_mac = routing.mac(s.carpdev as u16).unwrap_or([0; 6]);
                let lladdr = hmac_lladdr(true, s.vhid, virtual_mac(s.vhid), parent_mac);
                let auth = AuthContext::new(
                    &Key::from_passphrase(s.pass.as_bytes()),
                    &AuthInput {
                        vhid: s.vhid,
                        lladdr,
                        v4: &v4,
                        v6: &v6,
                    },
                );
                for g in &s.groups {
                    demotion.add_group(g);
                }
                let mut cfg = VhostConfig::new(s.vhid, s.advbase, s.advskew);
                cfg.has_v4 = !v4.is_empty();
                cfg.has_v6 = has_v6;
                CarpIf {
                    spec: s.clone(),
                    vhost: Vhost::new(cfg),
                    auth,
                    cookie: new_cookie(&mut rng),
                    admin_up: true,
                    own_demote: 0,
                    transitions: 0,
                    v4,
                    v6,
                    link_demoted: false,
                    vmac_filtered: false,
                }
            })
            .collect();
        let ports = routing.interfaces.len();
        Carp {
            ifs,
            routing,
            vips,
            demotion,
            sysctl,
            stats: CarpStats::new(),
            ip_id: rand::random(),
            links: vec![None; ports],
            filter_ops: Vec::new(),
            filter_warned: vec![false; ports],
            filter: FilterStats::default(),
        }
    }

    /// The number of carp interfaces.
    pub fn len(&self) -> usize {
        self.ifs.len()
    }

    /// No carp interfaces.
    pub fn is_empty(&self) -> bool {
        self.ifs.is_empty()
    }

    fn env(&self, i: usize) -> Env {
        let c = &self.ifs[i];
        Env {
            preempt: self.sysctl.preempt,
            demote: self
                .demotion
                .advertised(c.spec.groups.iter().map(String::as_str), c.own_demote),
        }
    }

    fn step(&mut self, i: usize, event: Event, now: Instant, out: &mut Vec<Out>) {
        let env = self.env(i);
        let actions = self.ifs[i].vhost.step(event, now, &env);
        for a in actions.iter() {
            self.execute(i, *a, out);
        }
    }

    /// Brings every carp interface up (admin up, forced states), with the
    /// carpdev's link up unless [`Carp::set_link`] reported it down.
    pub fn start(&mut self, now: Instant, out: &mut Vec<Out>) {
        for i in 0..self.ifs.len() {
            let port = self.ifs[i].spec.carpdev;
            if self.links.get(port).copied().flatten() != Some(false) {
                self.step(i, Event::LinkUp, now, out);
            }
            self.step(i, Event::AdminUp, now, out);
            match self.ifs[i].spec.state {
                Some(CarpStateSpec::Backup) => {
                    self.step(i, Event::ForceState(State::Backup), now, out)
                }
                Some(CarpStateSpec::Master) => {
                    self.step(i, Event::ForceState(State::Master), now, out)
                }
                _ => {}
            }
        }
    }

    /// The link state of `port` as polled (the control thread polls every
    /// port about every 100 ms). A change is delivered to every VHID on that
    /// carpdev (§4.12): link down → INIT (no bow-out) and each of its carp
    /// interfaces demotes its groups by 1 ("carpdev", §4.8); link up →
    /// setrun → BACKUP, demotion undone. Unchanged states do nothing.
    pub fn set_link(&mut self, port: u16, up: bool, now: Instant, out: &mut Vec<Out>) {
        let Some(slot) = self.links.get_mut(port as usize) else {
            return;
        };
        if *slot == Some(up) {
            return;
        }
        *slot = Some(up);
        if LOG_WARNING <= self.sysctl.log {
            let name = self
                .routing
                .interfaces
                .get(port as usize)
                .map_or("?", |i| i.name.as_str());
            crate::log!(
                Level::Warning,
                "carp: carpdev {name} link {}",
                if up { "up" } else { "down" }
            );
        }
        for i in 0..self.ifs.len() {
            if self.ifs[i].spec.carpdev != port as usize {
                continue;
            }
            if up {
                self.step(i, Event::LinkUp, now, out);
                if std::mem::take(&mut self.ifs[i].link_demoted) {
                    self.demote_adjust(i, -1, "carpdev", now, out);
                }
            } else {
                self.step(i, Event::LinkDown, now, out);
                if !std::mem::replace(&mut self.ifs[i].link_demoted, true) {
                    self.demote_adjust(i, 1, "carpdev", now, out);
                }
            }
        }
    }

    /// `carp_group_demote_adj` for carp interface `i` (§4.8): its own
    /// counter and every group it is in move by `adj`; every carp
    /// interface sharing one of those groups re-evaluates (a MASTER
    /// advertises at once when a group went 0 → 1).
    fn demote_adjust(
        &mut self,
        i: usize,
        adj: i32,
        reason: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let log = self.sysctl.log;
        let c = &mut self.ifs[i];
        let name = c.spec.name.clone();
        let advertise_now = self.demotion.adjust(
            c.spec.groups.iter().map(String::as_str),
            Some(&mut c.own_demote),
            adj,
            |g, n| {
                if LOG_ERR <= log {
                    crate::log!(
                        Level::Err,
                        "carp: {name} demoted group {g} by {adj} to {n} ({reason})"
                    );
                }
            },
        );
        let groups = self.ifs[i].spec.groups.clone();
        for j in 0..self.ifs.len() {
            if self.ifs[j].spec.groups.iter().any(|g| groups.contains(g)) {
                self.step(j, Event::DemoteChanged { advertise_now }, now, out);
            }
        }
    }

    /// Hands every pending MAC filter change to `apply` (the caller's
    /// `Port::add_mac` / `remove_mac`), counting the outcomes; a failure is
    /// logged (once per port at WARNING) and never fatal.
    pub fn apply_filter_ops(&mut self, mut apply: impl FnMut(&FilterOp) -> Result<(), String>) {
        for op in std::mem::take(&mut self.filter_ops) {
            match apply(&op) {
                Ok(()) => {
                    if op.add {
                        self.filter.added += 1;
                    } else {
                        self.filter.removed += 1;
                    }
                    if let Some(c) = self.ifs.iter_mut().find(|c| {
                        c.spec.carpdev == op.port as usize && virtual_mac(c.spec.vhid) == op.mac
                    }) {
                        c.vmac_filtered = op.add;
                    }
                }
                Err(e) => {
                    self.filter.failed += 1;
                    let first = self
                        .filter_warned
                        .get_mut(op.port as usize)
                        .is_some_and(|w| !std::mem::replace(w, true));
                    let level = if first { Level::Warning } else { Level::Debug };
                    crate::log!(
                        level,
                        "carp: {} {} the MAC filter of port {}: {e}",
                        if op.add { "adding" } else { "removing" },
                        EthernetAddress(op.mac),
                        op.port
                    );
                }
            }
        }
    }

    /// The MAC filter changes not yet applied (for tests and diagnostics).
    pub fn pending_filter_ops(&self) -> &[FilterOp] {
        &self.filter_ops
    }

    /// Wants the virtual MAC of carp interface `i` in (or out of) its
    /// carpdev's filter; opposite changes not yet applied cancel out.
    fn want_filter(&mut self, i: usize, owner: bool) {
        let port = self.ifs[i].spec.carpdev as u16;
        let mac = virtual_mac(self.ifs[i].spec.vhid);
        self.filter_ops
            .retain(|op| !(op.port == port && op.mac == mac));
        if self.ifs[i].vmac_filtered != owner {
            self.filter_ops.push(FilterOp {
                port,
                mac,
                add: owner,
            });
        }
    }

    /// Runs due timers.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<Out>) {
        for i in 0..self.ifs.len() {
            if self.ifs[i].vhost.poll_at().is_some_and(|t| t <= now) {
                self.step(i, Event::Timer, now, out);
            }
        }
    }

    /// The earliest timer.
    pub fn poll_at(&self) -> Option<Instant> {
        self.ifs.iter().filter_map(|c| c.vhost.poll_at()).min()
    }

    /// Handles a CARP datagram (IP protocol 112) received on `port`.
    pub fn handle(&mut self, frame: &[u8], port: u16, now: Instant, out: &mut Vec<Out>) {
        let Ok(parsed) = parse_frame(frame) else {
            self.stats.inc(Counter::BadLen);
            return;
        };
        let ctx = RxContext {
            allow: self.sysctl.allow,
            rx_if: RxIf::Carp,
            parent_simplex: true,
        };
        let on_port: Vec<usize> = (0..self.ifs.len())
            .filter(|&i| self.ifs[i].spec.carpdev == port as usize)
            .collect();
        let link_up = self.links.get(port as usize).copied().flatten() != Some(false);
        let candidates = on_port.iter().map(|&i| {
            let c = &self.ifs[i];
            Candidate {
                vhid: c.spec.vhid,
                running: c.admin_up && link_up,
                peer_multicast: c.spec.carppeer.is_none(),
                auth: &c.auth,
                cookie: c.cookie,
            }
        });
        match validate(&parsed, &ctx, candidates, &mut self.stats) {
            Ok(valid) => {
                if let Some(&i) = on_port.get(valid.index) {
                    self.step(i, Event::Advert(valid.advert), now, out);
                }
            }
            Err(drop) => {
                if let Some(level) = drop.log_level() {
                    if level <= self.sysctl.log {
                        crate::log!(Level::Notice, "carp: {drop}");
                    }
                }
            }
        }
    }

    fn execute(&mut self, i: usize, action: Action, out: &mut Vec<Out>) {
        let port = self.ifs[i].spec.carpdev as u16;
        match action {
            Action::SendAdvert {
                vhid,
                advbase,
                advskew,
                demote,
            } => {
                let c = &self.ifs[i];
                let md = c.auth.generate(&c.cookie.to_be_bytes());
                let carp = Repr::advertisement(vhid, advbase, advskew, demote, c.cookie, md);
                // One advertisement per address family the carp interface
                // has, each with the same HMAC over both families (§2.3).
                if let Some(&first_v4) = c.v4.first() {
                    // Source: the parent's first IPv4 address, else one of
                    // the carp interface (§2.2).
                    let src = self
                        .routing
                        .address_on(port, Af::Inet)
                        .map_or(first_v4, |a| Ipv4Addr::from(a.v4_octets()));
                    let (dst, dst_mac) = match c.spec.carppeer {
                        Some(p) => (p, [0xff; 6]),
                        None => (CARP_GROUP_V4, CARP_GROUP_MAC_V4),
                    };
                    self.ip_id = self.ip_id.wrapping_add(1);
                    let frame = AdvertFrameV4 {
                        src_mac: virtual_mac(vhid),
                        dst_mac,
                        src,
                        dst,
                        ip_id: self.ip_id,
                        carp,
                    };
                    let mut buf = vec![0u8; ADVERT_V4_FRAME_LEN];
                    if frame.emit(&mut buf).is_ok() {
                        self.stats.inc(Counter::OPackets);
                        out.push((port, buf));
                    } else {
                        self.stats.inc(Counter::ONoMem);
                    }
                }
                if c.is_v6_configured() {
                    let frame = AdvertFrameV6 {
                        src_mac: virtual_mac(vhid),
                        dst_mac: CARP_GROUP_MAC_V6,
                        src: self.link_local_of(port),
                        dst: CARP_GROUP_V6,
                        carp,
                    };
                    let mut buf = vec![0u8; ADVERT_V6_FRAME_LEN];
                    if frame.emit(&mut buf).is_ok() {
                        self.stats.inc(Counter::OPackets6);
                        out.push((port, buf));
                    } else {
                        self.stats.inc(Counter::ONoMem);
                    }
                }
            }
            Action::SetVmacOwner { vhid, owner } => {
                self.vips.set_master(port, vhid, owner);
                self.want_filter(i, owner);
            }
            Action::SendGratuitousArp { vhid } => {
                for (a, _) in &self.ifs[i].spec.addresses {
                    if let IpAddr::V4(v4) = a {
                        let r =
                            build::gratuitous_arp(None, EthernetAddress(virtual_mac(vhid)), *v4);
                        let mut buf = vec![0u8; r.buffer_len()];
                        if let Ok(n) = r.emit(&mut buf) {
                            buf.truncate(n);
                            buf.resize(buf.len().max(60), 0);
                            out.push((port, buf));
                        }
                    }
                }
            }
            Action::SendUnsolicitedNa { vhid } => {
                // Every IPv6 address, the link-local one included, to
                // all nodes with Override and Router (we forward), from
                // the virtual MAC (§4.10).
                for a in &self.ifs[i].v6 {
                    let r = build::unsolicited_neighbor_advert(
                        None,
                        EthernetAddress(virtual_mac(vhid)),
                        *a,
                        true,
                    );
                    let mut buf = vec![0u8; r.buffer_len()];
                    if let Ok(n) = r.emit(&mut buf) {
                        buf.truncate(n);
                        out.push((port, buf));
                    }
                }
            }
            Action::Log(t) => {
                self.ifs[i].transitions += 1;
                if t.level <= self.sysctl.log {
                    crate::log!(
                        Level::Crit,
                        "carp: {} vhid {}: {} -> {} ({:?})",
                        self.ifs[i].spec.name,
                        t.vhid,
                        t.old,
                        t.new,
                        t.cause
                    );
                }
            }
            Action::Count(c) => self.stats.inc(c),
        }
    }

    /// The IPv6 source of advertisements on `port` (§2.3): its configured
    /// link-local address, else the EUI-64 one of its MAC.
    fn link_local_of(&self, port: u16) -> Ipv6Addr {
        let configured = self.routing.interfaces.get(port as usize).and_then(|i| {
            i.addrs.iter().find_map(|a| {
                let b = a.addr.0;
                (a.prefix.af == Af::Inet6 && b[0] == 0xfe && b[1] & 0xc0 == 0x80)
                    .then(|| Ipv6Addr::from(b))
            })
        });
        configured.unwrap_or_else(|| eui64_link_local(self.routing.mac(port).unwrap_or([0; 6])))
    }

    fn find(&self, name: &str) -> Result<usize, String> {
        self.ifs
            .iter()
            .position(|c| c.spec.name == name)
            .ok_or_else(|| format!("{name}: no such carp interface"))
    }

    /// `dpfctl carpN advskew N`.
    pub fn set_advskew(
        &mut self,
        name: &str,
        advskew: i64,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<(), String> {
        let i = self.find(name)?;
        if !(0..=254).contains(&advskew) {
            return Err(format!("advskew {advskew} out of range (0-254)"));
        }
        let mut cfg = *self.ifs[i].vhost.config();
        cfg.advskew = advskew as u8;
        self.ifs[i].spec.advskew = advskew as u8;
        let state = self.ifs[i].vhost.state();
        // A timing change keeps the state and re-arms the timers with the
        // new values (§4.13); a carpdev without link stays INIT.
        self.step(
            i,
            Event::ConfigChanged(ConfigChange::Timing {
                advbase_s: cfg.advbase_s,
                advskew: cfg.advskew,
            }),
            now,
            out,
        );
        let env = self.env(i);
        if state == State::Master {
            let vhid = self.ifs[i].spec.vhid;
            self.execute(
                i,
                Action::SendAdvert {
                    vhid,
                    advbase: cfg.advbase_s,
                    advskew: cfg.advskew,
                    demote: env.demote,
                },
                out,
            );
        }
        Ok(())
    }

    /// `dpfctl carpN up|down`.
    pub fn set_admin(
        &mut self,
        name: &str,
        up: bool,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<(), String> {
        let i = self.find(name)?;
        self.ifs[i].admin_up = up;
        self.step(
            i,
            if up { Event::AdminUp } else { Event::AdminDown },
            now,
            out,
        );
        Ok(())
    }

    /// `dpfctl carpN state backup|master|init`.
    pub fn force_state(
        &mut self,
        name: &str,
        state: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<(), String> {
        let i = self.find(name)?;
        let s = match state {
            "backup" => State::Backup,
            "master" => State::Master,
            "init" => State::Init,
            other => return Err(format!("state '{other}': init, backup or master")),
        };
        self.step(i, Event::ForceState(s), now, out);
        Ok(())
    }

    /// Whether any carp interface is MASTER.
    pub fn any_master(&self) -> bool {
        self.ifs.iter().any(|c| c.vhost.state() == State::Master)
    }

    /// Every carp interface that is MASTER becomes BACKUP at once (a box
    /// that finds it was stopped: its peer has taken over or is about to).
    pub fn step_down(&mut self, now: Instant, out: &mut Vec<Out>) {
        for i in 0..self.ifs.len() {
            if self.ifs[i].vhost.state() == State::Master {
                self.step(i, Event::ForceState(State::Backup), now, out);
            }
        }
    }

    /// `dpfctl -g group carpdemote N` / `-carpdemote N`.
    pub fn carpdemote(
        &mut self,
        group: &str,
        delta: i32,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<u32, String> {
        let advertise_now = self
            .demotion
            .carpdemote(group, delta)
            .map_err(|e| e.to_string())?;
        crate::log!(
            Level::Err,
            "carp: group {group} demoted by {delta} to {}",
            self.demotion.group(group)
        );
        for i in 0..self.ifs.len() {
            if self.ifs[i].spec.groups.iter().any(|g| g == group) {
                self.step(i, Event::DemoteChanged { advertise_now }, now, out);
            }
        }
        Ok(self.demotion.group(group))
    }

    /// A group's demotion counter.
    pub fn group(&self, group: &str) -> Result<Value, String> {
        let members: Vec<&str> = self
            .ifs
            .iter()
            .filter(|c| c.spec.groups.iter().any(|g| g == group))
            .map(|c| c.spec.name.as_str())
            .collect();
        if members.is_empty() && !self.demotion.iter().any(|(g, _)| g == group) {
            return Err(format!("{group}: no such interface group"));
        }
        Ok(json!({ "group": group, "carpdemote": self.demotion.group(group), "members": members }))
    }

    /// State of one carp interface, or all.
    pub fn show(&self, name: Option<&str>) -> Result<Value, String> {
        let pick: Vec<usize> = match name {
            Some(n) => vec![self.find(n)?],
            None => (0..self.ifs.len()).collect(),
        };
        let names = |p: usize| {
            self.routing
                .interfaces
                .get(p)
                .map_or("?".to_string(), |i| i.name.clone())
        };
        let list: Vec<Value> = pick
            .into_iter()
            .map(|i| {
                let c = &self.ifs[i];
                let env = self.env(i);
                let link = match self.links.get(c.spec.carpdev).copied().flatten() {
                    Some(true) => "up",
                    Some(false) => "down",
                    None => "unknown",
                };
                json!({
                    "name": c.spec.name,
                    "state": c.vhost.state().as_str(),
                    "carpdev": names(c.spec.carpdev),
                    "vhid": c.spec.vhid,
                    "advbase": c.spec.advbase,
                    "advskew": c.spec.advskew,
                    "demote": env.demote,
                    "groups": c.spec.groups,
                    "up": c.admin_up,
                    "link": link,
                    "running": c.admin_up && link != "down",
                    "carppeer": c.spec.carppeer.map(|p| p.to_string()),
                    "lladdr": EthernetAddress(virtual_mac(c.spec.vhid)).to_string(),
                    "addresses": c.spec.addresses.iter().map(|(a, l)| format!("{a}/{l}")).collect::<Vec<_>>(),
                    "transitions": c.transitions,
                })
            })
            .collect();
        Ok(json!({
            "interfaces": list,
            "sysctl": { "net.inet.carp.allow": self.sysctl.allow as u8, "net.inet.carp.preempt": self.sysctl.preempt as u8, "net.inet.carp.log": self.sysctl.log },
            "stats": self.stats.iter().map(|(n, v)| (n.to_string(), Value::from(v))).collect::<serde_json::Map<_, _>>(),
            "vmac_filter": self.filter,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carp::wire::{Packet, IPPROTO_CARP};
    use dataplane::flow::Addr;
    use dataplane::route::{IfAddr, Interface, Prefix, Vip};
    use dataplane::time::Duration;

    const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
    const DMZ_MAC: [u8; 6] = [0x02, 0, 0, 0, 2, 1];

    fn spec(name: &str, vhid: u8, carpdev: usize, addresses: &[&str]) -> CarpSpec {
        CarpSpec {
            name: name.into(),
            vhid,
            pass: "lanpasswd".into(),
            carpdev,
            advbase: 1,
            advskew: 0,
            state: None,
            groups: vec!["carp".into()],
            carppeer: None,
            addresses: addresses
                .iter()
                .map(|a| {
                    let (ip, len) = a.split_once('/').unwrap();
                    (ip.parse().unwrap(), len.parse().unwrap())
                })
                .collect(),
        }
    }

    fn carp(specs: &[CarpSpec]) -> Carp {
        let ifa = |ip: &str, len: u8| {
            let (af, addr) = Addr::from_ip(ip.parse().unwrap());
            IfAddr {
                addr,
                prefix: Prefix::new(af, addr, len),
            }
        };
        let vips: Vec<Vip> = specs
            .iter()
            .flat_map(|s| {
                s.all_addresses().map(|ip| {
                    let (af, addr) = Addr::from_ip(ip);
                    Vip {
                        af,
                        addr,
                        port: s.carpdev as u16,
                        vhid: s.vhid,
                    }
                })
            })
            .collect();
        let vips = Arc::new(VipTable::new(vips, 2));
        let routing = Arc::new(
            Routing::new(
                vec![
                    Interface {
                        name: "lan0".into(),
                        mac: LAN_MAC,
                        mtu: 1500,
                        addrs: vec![ifa("10.1.0.1", 24), ifa("2001:db8:1::1", 64)],
                    },
                    Interface {
                        name: "dmz0".into(),
                        mac: DMZ_MAC,
                        mtu: 1500,
                        addrs: vec![ifa("10.2.0.1", 24)],
                    },
                ],
                vec![],
            )
            .with_vips(Arc::clone(&vips)),
        );
        Carp::new(specs, CarpSysctl::default(), routing, vips)
    }

    /// Starts `c` at 0 s and runs it past the master-down interval: alone
    /// on the wire, every carp interface becomes MASTER.
    fn become_master(c: &mut Carp) -> Vec<Out> {
        let mut out = Vec::new();
        c.start(Instant::from_secs(0), &mut out);
        assert!(out.is_empty(), "BACKUP sends nothing");
        c.poll(Instant::from_secs(4), &mut out);
        out
    }

    fn state(c: &Carp, name: &str) -> Value {
        c.show(Some(name)).unwrap()["interfaces"][0].clone()
    }

    fn ethertype(f: &[u8]) -> u16 {
        u16::from_be_bytes([f[12], f[13]])
    }

    #[test]
    fn a_dual_stack_vhid_advertises_over_ipv4_and_ipv6_with_one_hmac() {
        let s = spec("carp1", 1, 0, &["10.1.0.254/24", "2001:db8:1::fe/64"]);
        let mut c = carp(std::slice::from_ref(&s));
        let out = become_master(&mut c);
        assert_eq!(state(&c, "carp1")["state"], "MASTER");
        let adverts: Vec<&Vec<u8>> = out
            .iter()
            .filter(|(_, f)| parse_frame(f).is_ok())
            .map(|(_, f)| f)
            .collect();
        assert_eq!(adverts.len(), 2, "one advertisement per family (§2.3)");
        let v4 = adverts.iter().find(|f| ethertype(f) == 0x0800).unwrap();
        let v6 = adverts.iter().find(|f| ethertype(f) == 0x86dd).unwrap();
        assert_eq!(v4.len(), ADVERT_V4_FRAME_LEN);
        assert_eq!(v6.len(), ADVERT_V6_FRAME_LEN);
        // §2.3 / §2.4: Ethernet and IPv6 header of the IPv6 advertisement.
        assert_eq!(&v6[0..6], &CARP_GROUP_MAC_V6);
        assert_eq!(&v6[6..12], &virtual_mac(1));
        assert_eq!(v6[14] >> 4, 6);
        assert_eq!(u16::from_be_bytes([v6[18], v6[19]]), 36, "payload length");
        assert_eq!(v6[20], IPPROTO_CARP);
        assert_eq!(v6[21], 255, "hop limit");
        let src = Ipv6Addr::from(<[u8; 16]>::try_from(&v6[22..38]).unwrap());
        assert_eq!(
            src,
            eui64_link_local(LAN_MAC),
            "from the carpdev's EUI-64 link-local address"
        );
        assert_eq!(&v6[38..54], &CARP_GROUP_V6.octets());
        // The CARP checksum covers exactly the 36 header bytes, with no
        // IPv6 pseudo-header (§2.1).
        let hdr = Packet::new_checked(&v6[54..]).unwrap();
        assert!(hdr.verify_checksum());
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&v6[22..54]);
        pseudo.extend_from_slice(&[0, 0, 0, 36, 0, 0, 0, IPPROTO_CARP]);
        pseudo.extend_from_slice(&v6[54..]);
        assert_ne!(
            dataplane::wire::checksum::data(&pseudo),
            0xffff,
            "a pseudo-header sum must not verify"
        );
        // Both carry the same header and an HMAC over both families
        // (sorted IPv4 then IPv6, link-local excluded when sending, §3).
        assert_eq!(&v4[34..], &v6[54..]);
        let peer = AuthContext::new(
            &Key::from_passphrase(b"lanpasswd"),
            &AuthInput {
                vhid: 1,
                lladdr: None,
                v4: &["10.1.0.254".parse().unwrap()],
                v6: &["2001:db8:1::fe".parse().unwrap()],
            },
        );
        assert!(peer.verify(&hdr.counter_bytes(), &hdr.md()));
        assert_eq!(c.stats.get(Counter::OPackets), 1);
        assert_eq!(c.stats.get(Counter::OPackets6), 1);
        // Unsolicited NAs for the VIP and the automatic link-local address,
        // from the virtual MAC to all nodes (§4.10).
        let nas: Vec<&Vec<u8>> = out
            .iter()
            .map(|(_, f)| f)
            .filter(|f| ethertype(f) == 0x86dd && f[20] == 58)
            .collect();
        assert_eq!(nas.len(), 2);
        for na in &nas {
            assert_eq!(&na[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
            assert_eq!(&na[6..12], &virtual_mac(1));
            assert_eq!(na[54], 136, "neighbour advertisement");
            assert_eq!(na[58] & 0xe0, 0xa0, "Router and Override, not Solicited");
        }
        let targets: Vec<Ipv6Addr> = nas
            .iter()
            .map(|f| Ipv6Addr::from(<[u8; 16]>::try_from(&f[62..78]).unwrap()))
            .collect();
        assert!(targets.contains(&"2001:db8:1::fe".parse().unwrap()));
        assert!(targets.contains(&eui64_link_local(virtual_mac(1))));
    }

    #[test]
    fn an_ipv6_only_vhid_sends_ipv6_advertisements_only_and_accepts_them() {
        let s = spec("carp1", 7, 0, &["2001:db8:1::fe/64"]);
        let mut a = carp(std::slice::from_ref(&s));
        let out = become_master(&mut a);
        let adverts: Vec<&Vec<u8>> = out
            .iter()
            .filter(|(_, f)| parse_frame(f).is_ok())
            .map(|(_, f)| f)
            .collect();
        assert_eq!(adverts.len(), 1);
        assert_eq!(ethertype(adverts[0]), 0x86dd);
        assert!(
            !out.iter().any(|(_, f)| ethertype(f) == 0x0806),
            "no gratuitous ARP without IPv4 addresses"
        );
        // A peer with the same configuration hears it: counted as IPv6,
        // and a better master keeps it BACKUP past its own master-down.
        let mut s_b = s.clone();
        s_b.advskew = 100;
        let mut b = carp(&[s_b]);
        let mut sink = Vec::new();
        b.start(Instant::from_secs(0), &mut sink);
        b.handle(adverts[0], 0, Instant::from_secs(3), &mut sink);
        assert_eq!(b.stats.get(Counter::IPackets6), 1);
        assert_eq!(b.stats.get(Counter::IPackets), 0);
        b.poll(Instant::from_secs(4), &mut sink);
        assert_eq!(state(&b, "carp1")["state"], "BACKUP");
        // Hop limit 254 is counted as badttl (§2.5).
        let mut bad = adverts[0].clone();
        bad[21] = 254;
        b.handle(&bad, 0, Instant::from_secs(4), &mut sink);
        assert_eq!(b.stats.get(Counter::BadTtl), 1);
    }

    #[test]
    fn carpdev_link_loss_goes_init_and_demotes_the_carp_group() {
        let specs = [
            spec("carp1", 1, 0, &["10.1.0.254/24"]),
            spec("carp2", 2, 1, &["10.2.0.254/24"]),
        ];
        let mut c = carp(&specs);
        let mut out = Vec::new();
        c.set_link(0, true, Instant::from_secs(0), &mut out);
        c.set_link(1, true, Instant::from_secs(0), &mut out);
        become_master(&mut c);
        assert_eq!(state(&c, "carp1")["link"], "up");
        // lan0 loses link: carp1 INIT without a bow-out, group carp +1 and
        // carp2 (also in group carp) advertises the demotion at once.
        out.clear();
        c.set_link(0, false, Instant::from_secs(5), &mut out);
        let st = state(&c, "carp1");
        assert_eq!(st["state"], "INIT");
        assert_eq!(st["link"], "down");
        assert_eq!(st["running"], false);
        assert_eq!(c.group("carp").unwrap()["carpdemote"], 1);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, 1, "carp2 advertises on dmz0");
        let hdr = Packet::new_checked(&out[0].1[34..]).unwrap();
        assert_eq!(hdr.demote(), 1);
        assert!(!c.vips.is_master(0, 1), "the virtual MAC is released");
        // Polling the same state again changes nothing.
        out.clear();
        c.set_link(0, false, Instant::from_secs(6), &mut out);
        assert!(out.is_empty());
        assert_eq!(c.group("carp").unwrap()["carpdemote"], 1);
        // No timers while suppressed.
        c.poll(Instant::from_secs(60), &mut out);
        assert_eq!(state(&c, "carp1")["state"], "INIT");
        // Link back: BACKUP, demotion undone, MASTER after 3 x I alone.
        c.set_link(0, true, Instant::from_secs(60), &mut out);
        assert_eq!(state(&c, "carp1")["state"], "BACKUP");
        assert_eq!(c.group("carp").unwrap()["carpdemote"], 0);
        c.poll(Instant::from_secs(63) + Duration::from_millis(1), &mut out);
        assert_eq!(state(&c, "carp1")["state"], "MASTER");
    }

    #[test]
    fn a_carpdev_down_at_start_keeps_the_vhid_in_init() {
        let mut c = carp(&[spec("carp1", 1, 0, &["10.1.0.254/24"])]);
        let mut out = Vec::new();
        c.set_link(0, false, Instant::from_secs(0), &mut out);
        c.start(Instant::from_secs(0), &mut out);
        c.poll(Instant::from_secs(10), &mut out);
        assert_eq!(state(&c, "carp1")["state"], "INIT");
        assert_eq!(c.group("carp").unwrap()["carpdemote"], 1);
        assert!(out.is_empty());
    }

    #[test]
    fn the_virtual_mac_enters_and_leaves_the_port_filter_with_mastership() {
        let mut c = carp(&[spec("carp1", 3, 0, &["10.1.0.254/24"])]);
        become_master(&mut c);
        assert_eq!(
            c.pending_filter_ops(),
            &[FilterOp {
                port: 0,
                mac: virtual_mac(3),
                add: true
            }]
        );
        let mut applied = Vec::new();
        c.apply_filter_ops(|op| {
            applied.push(*op);
            Ok(())
        });
        assert_eq!(applied.len(), 1);
        assert_eq!(c.filter.added, 1);
        // Leaving MASTER removes it.
        let mut out = Vec::new();
        c.force_state("carp1", "backup", Instant::from_secs(5), &mut out)
            .unwrap();
        assert_eq!(
            c.pending_filter_ops(),
            &[FilterOp {
                port: 0,
                mac: virtual_mac(3),
                add: false
            }]
        );
        // A port that refuses: counted, not fatal.
        c.apply_filter_ops(|_| Err("Operation not supported".into()));
        assert_eq!(c.filter.failed, 1);
        // The remove failed, so the MAC is still in: MASTER again adds nothing.
        c.force_state("carp1", "master", Instant::from_secs(6), &mut out)
            .unwrap();
        assert!(c.pending_filter_ops().is_empty());
        c.force_state("carp1", "backup", Instant::from_secs(7), &mut out)
            .unwrap();
        c.apply_filter_ops(|_| Ok(()));
        assert_eq!(c.filter.removed, 1);
        // A refused add leaves nothing to remove.
        c.force_state("carp1", "master", Instant::from_secs(8), &mut out)
            .unwrap();
        c.apply_filter_ops(|_| Err("Operation not supported".into()));
        assert_eq!(c.filter.failed, 2);
        c.force_state("carp1", "backup", Instant::from_secs(9), &mut out)
            .unwrap();
        assert!(c.pending_filter_ops().is_empty());
        // Opposite changes not yet applied cancel out.
        c.force_state("carp1", "master", Instant::from_secs(10), &mut out)
            .unwrap();
        assert_eq!(c.pending_filter_ops().len(), 1);
        c.force_state("carp1", "backup", Instant::from_secs(11), &mut out)
            .unwrap();
        assert!(c.pending_filter_ops().is_empty());
    }

    #[test]
    fn advskew_changes_keep_the_state_and_never_revive_a_linkless_vhid() {
        let mut c = carp(&[spec("carp1", 1, 0, &["10.1.0.254/24"])]);
        become_master(&mut c);
        let mut out = Vec::new();
        c.set_advskew("carp1", 100, Instant::from_secs(5), &mut out)
            .unwrap();
        assert_eq!(state(&c, "carp1")["state"], "MASTER");
        assert_eq!(out.len(), 1, "one advertisement with the new advskew");
        assert_eq!(Packet::new_checked(&out[0].1[34..]).unwrap().advskew(), 100);
        c.set_link(0, false, Instant::from_secs(6), &mut out);
        c.set_advskew("carp1", 50, Instant::from_secs(7), &mut out)
            .unwrap();
        c.poll(Instant::from_secs(30), &mut out);
        assert_eq!(state(&c, "carp1")["state"], "INIT");
        assert!(c
            .set_advskew("carp1", 255, Instant::from_secs(8), &mut out)
            .is_err());
    }
}
