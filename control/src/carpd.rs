//! The CARP shell on the control thread: owns one [`Vhost`] per carp
//! interface, feeds it received advertisements (validated in spec §2.5's
//! order), timers and operator commands with `now`, and executes the
//! actions it returns — advertisement frames, the virtual-MAC ownership
//! flags the workers read, gratuitous ARP, log lines at `net.inet.carp.log`
//! levels. Sans-I/O like the slow path: frames to send are returned.

use crate::carp::auth::{hmac_lladdr, new_cookie};
use crate::carp::validate::{Candidate, RxContext, RxIf};
use crate::carp::wire::{
    parse_frame, virtual_mac, AdvertFrameV4, Repr, ADVERT_V4_FRAME_LEN, CARP_GROUP_MAC_V4,
    CARP_GROUP_V4,
};
use crate::carp::{
    validate, Action, AuthContext, AuthInput, CarpStats, Demotion, Env, Event, Key, State, Vhost,
    VhostConfig,
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
use std::net::{IpAddr, Ipv4Addr};
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
                let parent_mac = routing.mac(s.carpdev as u16).unwrap_or([0; 6]);
                let lladdr = hmac_lladdr(true, s.vhid, virtual_mac(s.vhid), parent_mac);
                let auth = AuthContext::new(
                    &Key::from_passphrase(s.pass.as_bytes()),
                    &AuthInput {
                        vhid: s.vhid,
                        lladdr,
                        v4: &v4,
                        v6: &[],
                    },
                );
                for g in &s.groups {
                    demotion.add_group(g);
                }
                let mut cfg = VhostConfig::new(s.vhid, s.advbase, s.advskew);
                cfg.has_v4 = !v4.is_empty();
                cfg.has_v6 = false;
                CarpIf {
                    spec: s.clone(),
                    vhost: Vhost::new(cfg),
                    auth,
                    cookie: new_cookie(&mut rng),
                    admin_up: true,
                    own_demote: 0,
                    transitions: 0,
                }
            })
            .collect();
        Carp {
            ifs,
            routing,
            vips,
            demotion,
            sysctl,
            stats: CarpStats::new(),
            ip_id: rand::random(),
        }
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

    /// Brings every carp interface up (link up, admin up, forced states).
    pub fn start(&mut self, now: Instant, out: &mut Vec<Out>) {
        for i in 0..self.ifs.len() {
            self.step(i, Event::LinkUp, now, out);
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
            self.stats.inc(crate::carp::Counter::BadLen);
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
        let candidates = on_port.iter().map(|&i| {
            let c = &self.ifs[i];
            Candidate {
                vhid: c.spec.vhid,
                running: c.admin_up,
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
                let Some(src) = self.routing.address_on(port, Af::Inet) else {
                    self.stats.inc(crate::carp::Counter::ONoMem);
                    return;
                };
                let md = c.auth.generate(&c.cookie.to_be_bytes());
                self.ip_id = self.ip_id.wrapping_add(1);
                let (dst, dst_mac) = match c.spec.carppeer {
                    Some(p) => (p, [0xff; 6]),
                    None => (CARP_GROUP_V4, CARP_GROUP_MAC_V4),
                };
                let frame = AdvertFrameV4 {
                    src_mac: virtual_mac(vhid),
                    dst_mac,
                    src: Ipv4Addr::from(src.v4_octets()),
                    dst,
                    ip_id: self.ip_id,
                    carp: Repr::advertisement(vhid, advbase, advskew, demote, c.cookie, md),
                };
                let mut buf = vec![0u8; ADVERT_V4_FRAME_LEN];
                if frame.emit(&mut buf).is_ok() {
                    self.stats.inc(crate::carp::Counter::OPackets);
                    out.push((port, buf));
                } else {
                    self.stats.inc(crate::carp::Counter::ONoMem);
                }
            }
            Action::SetVmacOwner { vhid, owner } => self.vips.set_master(port, vhid, owner),
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
            Action::SendUnsolicitedNa { .. } => {}
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
        // A timing change keeps the state; re-run with the new values.
        let mut v = Vhost::new(cfg);
        let env = self.env(i);
        v.step(Event::LinkUp, now, &env);
        if self.ifs[i].admin_up {
            v.step(Event::AdminUp, now, &env);
            if state == State::Master {
                v.step(Event::ForceState(State::Master), now, &env);
            }
        }
        self.ifs[i].vhost = v;
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
        }))
    }
}
