//! The per-VHID CARP state machine, sans-I/O (`spec/carp.md` §4).
//!
//! A [`Vhost`] is one virtual host (VHID) of a carp interface. The control
//! thread feeds it [`Event`]s with the current time and an [`Env`] (the
//! sysctl `preempt` and the advertised demotion count), and executes the
//! returned [`Actions`] (send an advertisement, take or release the virtual
//! MAC, gratuitous ARP / unsolicited NA, log, count). It calls
//! `step(Event::Timer, ..)` when [`Vhost::poll_at`] is reached.
//!
//! Invariants:
//! * deadlines are data: `advertise_at` is `Some` only in MASTER,
//!   `master_down_{v4,v6}_at` only in BACKUP, none in INIT;
//! * interval arithmetic is integer microseconds (§4.2), converted to
//!   [`Instant`] nanoseconds only when a deadline is stored;
//! * every state change goes through `change_state`, which emits the
//!   [`Action::Log`] (vhid, cause, old, new), the virtual-MAC ownership
//!   change, the `preempt` statistic and the timer exit actions;
//! * interface-level operations (`state master`, `down`, link loss) are
//!   delivered by the caller to every VHID of the carp interface.

use std::net::IpAddr;

use dataplane::time::{Duration, Instant};

use super::stats::Counter;
use super::{LOG_CRIT, LOG_WARNING};

/// The state of a VHID (§4.1), with the numeric values userland sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Not running.
    Init = 0,
    /// Listening for the master.
    Backup = 1,
    /// Owns the virtual addresses, advertises.
    Master = 2,
}

impl State {
    /// The upper-case name carp(4) prints.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        }
    }
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address family; BACKUP keeps one master-down timer per family (§4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Balancing mode of the carp interface (§2.6), `carpr_balancing` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Balancing {
    /// One VHID, plain failover.
    #[default]
    None = 0,
    /// `ip`.
    Ip = 1,
    /// `ip-stealth`.
    IpStealth = 2,
    /// `ip-unicast`.
    IpUnicast = 3,
}

/// Advertisement interval `I` in µs (§4.2): `advbase s + advskew/256 s`,
/// 3 906 µs when both are zero.
pub const fn advert_interval_us(advbase_s: u8, advskew: u8) -> u64 {
    let us = advbase_s as u64 * 1_000_000 + advskew as u64 * 1_000_000 / 256;
    if us == 0 {
        1_000_000 / 256
    } else {
        us
    }
}

/// Master-down interval in µs: `3 × I`, skew included (§4.2, current OpenBSD).
pub const fn master_down_us(advbase_s: u8, advskew: u8) -> u64 {
    3 * advert_interval_us(advbase_s, advskew)
}

/// Configuration of one VHID (plus the interface facts it depends on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhostConfig {
    /// VHID, 1..=255 (0 never runs, §4.3).
    pub vhid: u8,
    /// advbase of the carp interface, seconds (0..=255).
    pub advbase_s: u8,
    /// advskew of this VHID (0..=254).
    pub advskew: u8,
    /// This is the lowest VHID of its carp interface (§1).
    pub leader: bool,
    /// Balancing mode of the carp interface.
    pub balancing: Balancing,
    /// The carp interface has at least one IPv4 address.
    pub has_v4: bool,
    /// The carp interface has at least one IPv6 address.
    pub has_v6: bool,
}

impl VhostConfig {
    /// A single-VHID interface (leader, balancing none) with IPv4 addresses.
    pub const fn new(vhid: u8, advbase_s: u8, advskew: u8) -> VhostConfig {
        VhostConfig {
            vhid,
            advbase_s,
            advskew,
            leader: true,
            balancing: Balancing::None,
            has_v4: true,
            has_v6: false,
        }
    }
}

/// A received advertisement that passed every check of §2.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    /// Sender's advbase (255 in a bow-out).
    pub advbase: u8,
    /// Sender's advskew (255 in a bow-out).
    pub advskew: u8,
    /// Sender's demotion count.
    pub demote: u8,
    /// IP source (its family selects the master-down timer).
    pub src: IpAddr,
    /// Sender's cookie.
    pub counter: u64,
}

impl Advert {
    /// Address family the advertisement arrived with.
    pub fn family(&self) -> Family {
        match self.src {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Configuration changes and their effect (§4.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    /// advbase/advskew changed: state kept, timers re-armed.
    Timing {
        /// New advbase.
        advbase_s: u8,
        /// New advskew.
        advskew: u8,
    },
    /// The key changed (HMAC re-prepared by the caller): state kept,
    /// timers re-armed.
    Key,
    /// An address was added; the families present now. Resets to INIT,
    /// then BACKUP (a MASTER drops to BACKUP).
    AddressAdded {
        /// Any IPv4 address now.
        has_v4: bool,
        /// Any IPv6 address now.
        has_v6: bool,
    },
    /// An address was removed; the families present now. Removing the last
    /// one stops the VHID (INIT); otherwise the state is kept.
    AddressRemoved {
        /// Any IPv4 address now.
        has_v4: bool,
        /// Any IPv6 address now.
        has_v6: bool,
    },
    /// The VHID list, balancing mode or effective lladdr changed: INIT then
    /// BACKUP, with the new leader flag and balancing mode.
    Reset {
        /// This VHID is now the leader.
        leader: bool,
        /// New balancing mode.
        balancing: Balancing,
    },
}

/// An input of [`Vhost::step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// [`Vhost::poll_at`] was reached (spurious calls are harmless).
    Timer,
    /// A validated advertisement for this VHID (§4.5).
    Advert(Advert),
    /// The parent (carpdev) is up with link (§4.12).
    LinkUp,
    /// The parent lost link or was set down (§4.12). No bow-out.
    LinkDown,
    /// `ifconfig carpN up`.
    AdminUp,
    /// `ifconfig carpN down`: bow-out if MASTER, then INIT (§4.9).
    AdminDown,
    /// `ifconfig carpN state init|backup|master` (§4.4). `Init` is ignored,
    /// as in OpenBSD.
    ForceState(State),
    /// A configuration change (§4.13).
    ConfigChanged(ConfigChange),
    /// The advertised demotion count changed (`Env::demote` already holds
    /// the new total). `advertise_now` is what [`super::Demotion`] returned:
    /// a MASTER then advertises at once (§4.8).
    DemoteChanged {
        /// Send an advertisement now if MASTER.
        advertise_now: bool,
    },
}

/// The environment a step is evaluated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Env {
    /// `net.inet.carp.preempt` (§4.7).
    pub preempt: bool,
    /// Our advertised demotion count (§4.8): sum of the group counters of
    /// the carp interface, capped at 255.
    pub demote: u8,
}

/// Why a state changed; carried in [`Action::Log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A master-down timer expired (§4.4).
    MasterDown,
    /// BACKUP preempted a less frequent master (§4.5 rule 1).
    Preempt,
    /// BACKUP took over from a more demoted master (§4.5 rule 2).
    DemotedMaster,
    /// BACKUP took over from a master that would time out anyway, e.g. a
    /// bow-out (§4.5 rule 3).
    SlowMaster,
    /// MASTER heard a master at least as good (§4.5, §4.6).
    BetterMaster,
    /// Run conditions satisfied (setrun from INIT, §4.3).
    Setrun,
    /// Administratively set down (§4.9).
    AdminDown,
    /// Parent link down (§4.12).
    LinkDown,
    /// `state backup|master` (§4.4).
    Forced,
    /// Configuration change (§4.13).
    ConfigChanged,
}

/// A state transition to log (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Syslog priority: [`LOG_CRIT`] between BACKUP and MASTER,
    /// [`LOG_WARNING`] from/to INIT.
    pub level: u8,
    /// The VHID.
    pub vhid: u8,
    /// Why.
    pub cause: Cause,
    /// Previous state.
    pub old: State,
    /// New state.
    pub new: State,
}

/// An output of [`Vhost::step`], executed by the caller in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement (IPv4 and/or IPv6 per the interface's
    /// addresses) with these values; 255/255 is a bow-out (§4.9).
    SendAdvert {
        /// VHID.
        vhid: u8,
        /// advbase to put in the header.
        advbase: u8,
        /// advskew to put in the header.
        advskew: u8,
        /// demote to put in the header.
        demote: u8,
    },
    /// Accept (true) or drop (false) frames for this VHID's virtual MAC.
    SetVmacOwner {
        /// VHID.
        vhid: u8,
        /// Owner now.
        owner: bool,
    },
    /// Gratuitous ARP for every IPv4 address of the carp interface (§4.10).
    SendGratuitousArp {
        /// VHID.
        vhid: u8,
    },
    /// Unsolicited NA for every IPv6 address of the carp interface (§4.10).
    SendUnsolicitedNa {
        /// VHID.
        vhid: u8,
    },
    /// Log a state transition.
    Log(Transition),
    /// Increment a statistic (§5.3).
    Count(Counter),
}

/// Maximum number of actions one step produces (becoming MASTER: log,
/// count, vMAC, advert, ARP, NA; bow-out: advert, log, vMAC).
pub const MAX_ACTIONS: usize = 8;

/// A small fixed-capacity list of actions (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions {
    buf: [Action; MAX_ACTIONS],
    len: usize,
}

impl Default for Actions {
    fn default() -> Self {
        Self::new()
    }
}

impl Actions {
    /// Empty.
    pub const fn new() -> Actions {
        Actions {
            buf: [Action::Count(Counter::Preempt); MAX_ACTIONS],
            len: 0,
        }
    }

    fn push(&mut self, action: Action) {
        debug_assert!(self.len < MAX_ACTIONS, "Actions capacity exceeded");
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = action;
            self.len += 1;
        }
    }

    /// The actions, in execution order.
    pub fn as_slice(&self) -> &[Action] {
        &self.buf[..self.len]
    }

    /// Iterates in execution order.
    pub fn iter(&self) -> core::slice::Iter<'_, Action> {
        self.as_slice().iter()
    }

    /// Number of actions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No action.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<'a> IntoIterator for &'a Actions {
    type Item = &'a Action;
    type IntoIter = core::slice::Iter<'a, Action>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

fn due(deadline: Option<Instant>, now: Instant) -> bool {
    matches!(deadline, Some(t) if t <= now)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Advertisements before the delayed gratuitous ARP (§4.10).
const DELAYED_GARP_ADVERTS: u8 = 2;
/// advbase/advskew of a bow-out advertisement (§4.9).
const BOW_OUT: u8 = 255;

/// One VHID's state machine. Starts in INIT with the carp interface
/// administratively down and the parent link down: deliver
/// [`Event::LinkUp`] and [`Event::AdminUp`] to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vhost {
    config: VhostConfig,
    state: State,
    admin_up: bool,
    /// Parent link down or parent down (§4.3 "suppressed").
    suppressed: bool,
    advertise_at: Option<Instant>,
    master_down_v4_at: Option<Instant>,
    master_down_v6_at: Option<Instant>,
    /// Periodic adverts left before the delayed gratuitous ARP; 0 = none.
    delayed_garp: u8,
}

impl Vhost {
    /// A stopped VHID.
    pub fn new(config: VhostConfig) -> Vhost {
        Vhost {
            config,
            state: State::Init,
            admin_up: false,
            suppressed: true,
            advertise_at: None,
            master_down_v4_at: None,
            master_down_v6_at: None,
            delayed_garp: 0,
        }
    }

    /// Current configuration.
    pub fn config(&self) -> &VhostConfig {
        &self.config
    }
    /// VHID.
    pub fn vhid(&self) -> u8 {
        self.config.vhid
    }
    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }
    /// Run conditions of §4.3: admin up, not suppressed, VHID > 0, and at
    /// least one address. (The carp interface's UP+RUNNING for §2.5 step 6.)
    pub fn is_running(&self) -> bool {
        self.admin_up
            && !self.suppressed
            && self.config.vhid > 0
            && (self.config.has_v4 || self.config.has_v6)
    }
    /// Next advertisement (MASTER only).
    pub fn advertise_at(&self) -> Option<Instant> {
        self.advertise_at
    }
    /// Master-down deadline of a family (BACKUP only).
    pub fn master_down_at(&self, family: Family) -> Option<Instant> {
        match family {
            Family::V4 => self.master_down_v4_at,
            Family::V6 => self.master_down_v6_at,
        }
    }
    /// Advertisement interval in µs for the current configuration.
    pub fn interval_us(&self) -> u64 {
        advert_interval_us(self.config.advbase_s, self.config.advskew)
    }
    /// When [`Event::Timer`] must be delivered next.
    pub fn poll_at(&self) -> Option<Instant> {
        earliest(
            self.advertise_at,
            earliest(self.master_down_v4_at, self.master_down_v6_at),
        )
    }

    /// Processes one event at `now`.
    pub fn step(&mut self, event: Event, now: Instant, env: &Env) -> Actions {
        let mut out = Actions::new();
        match event {
            Event::Timer => self.on_timer(now, env, &mut out),
            Event::Advert(advert) => self.on_advert(&advert, now, env, &mut out),
            Event::LinkUp => {
                // §4.12: parent back: INIT → setrun → BACKUP.
                if self.suppressed {
                    self.suppressed = false;
                    self.change_state(State::Init, Cause::Setrun, &mut out);
                    self.setrun(None, now, &mut out);
                }
            }
            Event::LinkDown => {
                // §4.12: no bow-out; everything stops.
                self.suppressed = true;
                self.change_state(State::Init, Cause::LinkDown, &mut out);
            }
            Event::AdminUp => {
                self.admin_up = true;
                if self.state == State::Init {
                    self.setrun(None, now, &mut out);
                }
            }
            Event::AdminDown => {
                self.admin_up = false;
                if self.state == State::Master {
                    // §4.9: one last "infinite" advertisement, no re-arm.
                    out.push(Action::SendAdvert {
                        vhid: self.config.vhid,
                        advbase: BOW_OUT,
                        advskew: BOW_OUT,
                        demote: env.demote,
                    });
                }
                self.change_state(State::Init, Cause::AdminDown, &mut out);
            }
            Event::ForceState(target) => self.on_force(target, now, env, &mut out),
            Event::ConfigChanged(change) => self.on_config(change, now, &mut out),
            Event::DemoteChanged { advertise_now } => {
                // §4.8: a MASTER advertises at once so peers see the demotion.
                if advertise_now && self.state == State::Master {
                    self.send_advert(now, env, &mut out);
                }
            }
        }
        out
    }

    fn on_timer(&mut self, now: Instant, env: &Env, out: &mut Actions) {
        match self.state {
            State::Master if due(self.advertise_at, now) => self.send_advert(now, env, out),
            State::Backup
                if due(self.master_down_v4_at, now) || due(self.master_down_v6_at, now) =>
            {
                self.master_down(Cause::MasterDown, now, env, out)
            }
            _ => {}
        }
    }

    /// §4.5: election on a valid advertisement.
    fn on_advert(&mut self, advert: &Advert, now: Instant, env: &Env, out: &mut Actions) {
        let local = (self.config.advbase_s, self.config.advskew);
        let remote = (advert.advbase, advert.advskew);
        let (dl, dr) = (env.demote, advert.demote);
        match self.state {
            State::Init => {}
            State::Master => {
                // Step down iff (Dr, R) <= (Dl, L): the other is less demoted,
                // or equally demoted and at least as frequent (ties, §4.6).
                if (dr, remote) <= (dl, local) {
                    self.change_state(State::Backup, Cause::BetterMaster, out);
                    self.setrun(None, now, out);
                }
            }
            State::Backup => {
                if env.preempt && local < remote && dr >= dl {
                    // Rule 1 (§4.7): we are strictly more frequent, not more demoted.
                    self.master_down(Cause::Preempt, now, env, out);
                } else if dr > dl {
                    // Rule 2: the master is more demoted, preempt or not.
                    self.master_down(Cause::DemotedMaster, now, env, out);
                } else if self.config.advbase_s != 0
                    && (3 * u16::from(local.0), u16::from(local.1))
                        < (u16::from(remote.0), u16::from(remote.1))
                {
                    // Rule 3: it would time out anyway (e.g. a 255/255 bow-out).
                    self.master_down(Cause::SlowMaster, now, env, out);
                } else {
                    // Rule 4: restart this family's master-down timer.
                    self.setrun(Some(advert.family()), now, out);
                }
            }
        }
    }

    fn on_force(&mut self, target: State, now: Instant, env: &Env, out: &mut Actions) {
        match target {
            // Only BACKUP can become MASTER (§4.10).
            State::Master => self.master_down(Cause::Forced, now, env, out),
            State::Backup if self.state != State::Backup && self.is_running() => {
                self.change_state(State::Backup, Cause::Forced, out);
                self.setrun(None, now, out);
            }
            // `state init` is accepted by ifconfig and ignored by the kernel.
            State::Backup | State::Init => {}
        }
    }

    fn on_config(&mut self, change: ConfigChange, now: Instant, out: &mut Actions) {
        match change {
            ConfigChange::Timing { advbase_s, advskew } => {
                self.config.advbase_s = advbase_s;
                self.config.advskew = advskew;
                self.setrun(None, now, out);
            }
            ConfigChange::Key => self.setrun(None, now, out),
            ConfigChange::AddressAdded { has_v4, has_v6 } => {
                self.config.has_v4 = has_v4;
                self.config.has_v6 = has_v6;
                self.change_state(State::Init, Cause::ConfigChanged, out);
                self.setrun(None, now, out);
            }
            ConfigChange::AddressRemoved { has_v4, has_v6 } => {
                self.config.has_v4 = has_v4;
                self.config.has_v6 = has_v6;
                if !has_v4 && !has_v6 {
                    self.change_state(State::Init, Cause::ConfigChanged, out);
                } else {
                    if !has_v4 {
                        self.master_down_v4_at = None;
                    }
                    if !has_v6 {
                        self.master_down_v6_at = None;
                    }
                }
            }
            ConfigChange::Reset { leader, balancing } => {
                self.config.leader = leader;
                self.config.balancing = balancing;
                self.change_state(State::Init, Cause::ConfigChanged, out);
                self.setrun(None, now, out);
            }
        }
    }

    /// §4.3 setrun: (re)arm timers for the current state; INIT moves to
    /// BACKUP when the run conditions hold.
    fn setrun(&mut self, family: Option<Family>, now: Instant, out: &mut Actions) {
        if !self.is_running() {
            return;
        }
        match self.state {
            State::Init => {
                self.change_state(State::Backup, Cause::Setrun, out);
                self.setrun(None, now, out);
            }
            State::Backup => {
                self.advertise_at = None;
                let at = now
                    + Duration::from_micros(master_down_us(
                        self.config.advbase_s,
                        self.config.advskew,
                    ));
                match family {
                    Some(Family::V4) => self.master_down_v4_at = Some(at),
                    Some(Family::V6) => self.master_down_v6_at = Some(at),
                    None => {
                        if self.config.has_v4 {
                            self.master_down_v4_at = Some(at);
                        }
                        if self.config.has_v6 {
                            self.master_down_v6_at = Some(at);
                        }
                    }
                }
            }
            State::Master => {
                self.advertise_at = Some(now + Duration::from_micros(self.interval_us()));
            }
        }
    }

    /// Sends a regular advertisement and re-arms the advertisement timer
    /// (§4.2); runs the delayed gratuitous ARP count-down (§4.10).
    fn send_advert(&mut self, now: Instant, env: &Env, out: &mut Actions) {
        out.push(Action::SendAdvert {
            vhid: self.config.vhid,
            advbase: self.config.advbase_s,
            advskew: self.config.advskew,
            demote: env.demote,
        });
        if self.delayed_garp > 0 {
            self.delayed_garp -= 1;
            if self.delayed_garp == 0 && self.config.has_v4 {
                out.push(Action::SendGratuitousArp {
                    vhid: self.config.vhid,
                });
            }
        }
        self.advertise_at = Some(now + Duration::from_micros(self.interval_us()));
    }

    /// §4.10 the master-down procedure; only from BACKUP.
    fn master_down(&mut self, cause: Cause, now: Instant, env: &Env, out: &mut Actions) {
        if self.state != State::Backup {
            return;
        }
        self.change_state(State::Master, cause, out);
        self.send_advert(now, env, out);
        if self.config.balancing == Balancing::None && self.config.leader {
            if self.config.has_v4 {
                out.push(Action::SendGratuitousArp {
                    vhid: self.config.vhid,
                });
                self.delayed_garp = DELAYED_GARP_ADVERTS;
            }
            if self.config.has_v6 {
                out.push(Action::SendUnsolicitedNa {
                    vhid: self.config.vhid,
                });
            }
        }
        self.setrun(None, now, out);
    }

    /// The one place a state changes: log, statistics, vMAC ownership and
    /// the exit actions on timers.
    fn change_state(&mut self, new: State, cause: Cause, out: &mut Actions) {
        let old = self.state;
        if old == new {
            return;
        }
        let level = if old == State::Init || new == State::Init {
            LOG_WARNING
        } else {
            LOG_CRIT
        };
        out.push(Action::Log(Transition {
            level,
            vhid: self.config.vhid,
            cause,
            old,
            new,
        }));
        if old == State::Backup && new == State::Master {
            // §4.4: counts every BACKUP → MASTER transition.
            out.push(Action::Count(Counter::Preempt));
        }
        if new == State::Master {
            out.push(Action::SetVmacOwner {
                vhid: self.config.vhid,
                owner: true,
            });
        } else if old == State::Master {
            out.push(Action::SetVmacOwner {
                vhid: self.config.vhid,
                owner: false,
            });
        }
        match old {
            State::Master => {
                self.advertise_at = None;
                self.delayed_garp = 0;
            }
            State::Backup => {
                self.master_down_v4_at = None;
                self.master_down_v6_at = None;
            }
            State::Init => {}
        }
        self.state = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEC: u64 = 1_000_000_000;

    fn t(ns: u64) -> Instant {
        Instant::from_nanos(ns)
    }
    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }
    fn env() -> Env {
        Env {
            preempt: false,
            demote: 0,
        }
    }
    fn preempt() -> Env {
        Env {
            preempt: true,
            demote: 0,
        }
    }
    fn advert(advbase: u8, advskew: u8, demote: u8) -> Advert {
        Advert {
            advbase,
            advskew,
            demote,
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            counter: 7,
        }
    }

    /// A started VHID in BACKUP at `now`.
    fn backup(cfg: VhostConfig, now: Instant) -> Vhost {
        let mut v = Vhost::new(cfg);
        assert!(v.step(Event::LinkUp, now, &env()).is_empty());
        v.step(Event::AdminUp, now, &env());
        assert_eq!(v.state(), State::Backup);
        v
    }

    /// A VHID that became MASTER by timeout; returns it and the time.
    fn master(cfg: VhostConfig) -> (Vhost, Instant) {
        let mut v = backup(cfg, t(0));
        let at = v.poll_at().unwrap();
        v.step(Event::Timer, at, &env());
        assert_eq!(v.state(), State::Master);
        (v, at)
    }

    fn logs(a: &Actions) -> Vec<(State, State, Cause, u8)> {
        a.iter()
            .filter_map(|x| match x {
                Action::Log(tr) => Some((tr.old, tr.new, tr.cause, tr.level)),
                _ => None,
            })
            .collect()
    }

    fn adverts(a: &Actions) -> Vec<(u8, u8, u8)> {
        a.iter()
            .filter_map(|x| match *x {
                Action::SendAdvert {
                    advbase,
                    advskew,
                    demote,
                    ..
                } => Some((advbase, advskew, demote)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn intervals_in_microseconds() {
        assert_eq!(advert_interval_us(1, 0), 1_000_000);
        assert_eq!(advert_interval_us(1, 100), 1_390_625);
        assert_eq!(advert_interval_us(1, 128), 1_500_000);
        assert_eq!(advert_interval_us(0, 0), 3_906);
        assert_eq!(advert_interval_us(0, 1), 3_906);
        assert_eq!(advert_interval_us(0, 128), 500_000);
        assert_eq!(advert_interval_us(255, 255), 255_996_093);
        // Three times the whole interval, skew included.
        assert_eq!(master_down_us(1, 100), 4_171_875);
        assert_eq!(master_down_us(0, 0), 11_718);
    }

    #[test]
    fn init_to_backup_needs_link_admin_and_addresses() {
        let now = t(5 * SEC);
        let mut v = Vhost::new(VhostConfig::new(1, 1, 100));
        assert_eq!(v.state(), State::Init);
        assert_eq!(v.poll_at(), None);
        // Admin up but parent link still down: stays INIT.
        assert!(v.step(Event::AdminUp, now, &env()).is_empty());
        assert_eq!(v.state(), State::Init);
        let a = v.step(Event::LinkUp, now, &env());
        assert_eq!(
            logs(&a),
            vec![(State::Init, State::Backup, Cause::Setrun, LOG_WARNING)]
        );
        assert_eq!(a.len(), 1, "no advert, no vMAC change: {a:?}");
        assert_eq!(v.master_down_at(Family::V4), Some(now + us(4_171_875)));
        assert_eq!(v.master_down_at(Family::V6), None);
        assert_eq!(v.poll_at(), Some(now + us(4_171_875)));
        assert_eq!(v.advertise_at(), None);

        // No address: never runs.
        let mut cfg = VhostConfig::new(2, 1, 0);
        cfg.has_v4 = false;
        let mut v = Vhost::new(cfg);
        v.step(Event::LinkUp, now, &env());
        v.step(Event::AdminUp, now, &env());
        assert_eq!(v.state(), State::Init);
        assert!(!v.is_running());
        // VHID 0 never runs either.
        let mut v = Vhost::new(VhostConfig::new(0, 1, 0));
        v.step(Event::LinkUp, now, &env());
        v.step(Event::AdminUp, now, &env());
        assert_eq!(v.state(), State::Init);
    }

    #[test]
    fn backup_to_master_on_master_down_timeout() {
        let mut cfg = VhostConfig::new(1, 1, 0);
        cfg.has_v6 = true;
        let mut v = backup(cfg, t(0));
        let at = v.poll_at().unwrap();
        assert_eq!(at, t(3 * SEC));
        assert!(v.step(Event::Timer, at - Duration(1), &env()).is_empty());
        assert_eq!(v.state(), State::Backup);
        let a = v.step(Event::Timer, at, &env());
        assert_eq!(
            a.as_slice(),
            &[
                Action::Log(Transition {
                    level: LOG_CRIT,
                    vhid: 1,
                    cause: Cause::MasterDown,
                    old: State::Backup,
                    new: State::Master
                }),
                Action::Count(Counter::Preempt),
                Action::SetVmacOwner {
                    vhid: 1,
                    owner: true
                },
                Action::SendAdvert {
                    vhid: 1,
                    advbase: 1,
                    advskew: 0,
                    demote: 0
                },
                Action::SendGratuitousArp { vhid: 1 },
                Action::SendUnsolicitedNa { vhid: 1 },
            ]
        );
        assert_eq!(v.advertise_at(), Some(at + us(1_000_000)));
        assert_eq!(v.master_down_at(Family::V4), None);
        assert_eq!(v.master_down_at(Family::V6), None);
        assert_eq!(v.poll_at(), v.advertise_at());
    }

    #[test]
    fn master_advertises_every_interval_and_repeats_garp_on_second_advert() {
        let (mut v, t0) = master(VhostConfig::new(3, 1, 100));
        let i = us(1_390_625);
        let mut now = t0;
        let mut garps = Vec::new();
        for n in 1..=4 {
            now = now + i;
            assert_eq!(v.poll_at(), Some(now));
            let a = v.step(Event::Timer, now, &env());
            assert_eq!(adverts(&a), vec![(1, 100, 0)]);
            if a.iter()
                .any(|x| matches!(x, Action::SendGratuitousArp { .. }))
            {
                garps.push(n);
            }
        }
        assert_eq!(
            garps,
            vec![2],
            "delayed gratuitous ARP with the 2nd periodic advert"
        );
        // Spurious timer before the deadline: nothing.
        assert!(v.step(Event::Timer, now + us(10), &env()).is_empty());
    }

    #[test]
    fn balancing_or_non_leader_sends_no_garp() {
        let mut cfg = VhostConfig::new(2, 1, 0);
        cfg.leader = false;
        cfg.balancing = Balancing::Ip;
        let (_, _) = master(cfg);
        let mut v = backup(cfg, t(0));
        let a = v.step(Event::Timer, v.poll_at().unwrap(), &env());
        assert!(!a.iter().any(|x| matches!(
            x,
            Action::SendGratuitousArp { .. } | Action::SendUnsolicitedNa { .. }
        )));
        assert_eq!(adverts(&a).len(), 1);
    }

    #[test]
    fn master_steps_down_on_better_advert_and_ignores_worse() {
        let (mut v, t0) = master(VhostConfig::new(1, 1, 100));
        let now = t0 + us(100);
        // Worse (less frequent) master: stay, no counter-advertisement.
        assert!(v
            .step(Event::Advert(advert(1, 200, 0)), now, &env())
            .is_empty());
        assert!(v
            .step(Event::Advert(advert(2, 0, 0)), now, &env())
            .is_empty());
        assert_eq!(v.state(), State::Master);
        // Better one: BACKUP, vMAC released, master-down armed.
        let a = v.step(Event::Advert(advert(1, 50, 0)), now, &env());
        assert_eq!(
            logs(&a),
            vec![(State::Master, State::Backup, Cause::BetterMaster, LOG_CRIT)]
        );
        assert!(a.as_slice().contains(&Action::SetVmacOwner {
            vhid: 1,
            owner: false
        }));
        assert!(adverts(&a).is_empty());
        assert_eq!(v.state(), State::Backup);
        assert_eq!(v.advertise_at(), None);
        assert_eq!(v.master_down_at(Family::V4), Some(now + us(4_171_875)));
    }

    #[test]
    fn ties_master_steps_down_backup_waits() {
        let (mut m, t0) = master(VhostConfig::new(1, 1, 100));
        let a = m.step(Event::Advert(advert(1, 100, 0)), t0, &env());
        assert_eq!(m.state(), State::Backup, "{a:?}");

        let mut b = backup(VhostConfig::new(1, 1, 100), t(0));
        let now = t(2 * SEC);
        let a = b.step(Event::Advert(advert(1, 100, 0)), now, &preempt());
        assert!(a.is_empty());
        assert_eq!(b.state(), State::Backup);
        // The timer restarted from the advertisement.
        assert_eq!(b.poll_at(), Some(now + us(4_171_875)));
    }

    #[test]
    fn preempt_off_keeps_better_backup_waiting() {
        let mut v = backup(VhostConfig::new(1, 1, 0), t(0));
        let now = t(SEC);
        let a = v.step(Event::Advert(advert(1, 100, 0)), now, &env());
        assert!(a.is_empty());
        assert_eq!(v.state(), State::Backup);
        assert_eq!(v.poll_at(), Some(now + us(3_000_000)));
    }

    #[test]
    fn preempt_on_takes_over_from_less_frequent_master() {
        let mut v = backup(VhostConfig::new(1, 1, 0), t(0));
        let a = v.step(Event::Advert(advert(1, 100, 0)), t(SEC), &preempt());
        assert_eq!(
            logs(&a),
            vec![(State::Backup, State::Master, Cause::Preempt, LOG_CRIT)]
        );
        assert_eq!(adverts(&a), vec![(1, 0, 0)]);
        assert_eq!(v.state(), State::Master);

        // Preempt on, but we are more demoted than the master: no takeover.
        let mut v = backup(VhostConfig::new(1, 1, 0), t(0));
        let env = Env {
            preempt: true,
            demote: 5,
        };
        assert!(v
            .step(Event::Advert(advert(1, 100, 4)), t(SEC), &env)
            .is_empty());
        assert_eq!(v.state(), State::Backup);
        // Equally demoted: takeover.
        assert!(!v
            .step(Event::Advert(advert(1, 100, 5)), t(SEC), &env)
            .is_empty());
        assert_eq!(v.state(), State::Master);
    }

    #[test]
    fn demoted_master_is_taken_over_regardless_of_preempt() {
        let mut v = backup(VhostConfig::new(1, 1, 200), t(0));
        // A more frequent master, but more demoted than us.
        let a = v.step(Event::Advert(advert(1, 0, 1)), t(SEC), &env());
        assert_eq!(
            logs(&a),
            vec![(State::Backup, State::Master, Cause::DemotedMaster, LOG_CRIT)]
        );
    }

    #[test]
    fn demotion_changes_advertised_value_and_election() {
        let (mut v, t0) = master(VhostConfig::new(1, 1, 0));
        let demoted = Env {
            preempt: false,
            demote: 50,
        };
        // Demote increased: advertise at once with the new value, re-arm.
        let now = t0 + us(200_000);
        let a = v.step(
            Event::DemoteChanged {
                advertise_now: true,
            },
            now,
            &demoted,
        );
        assert_eq!(adverts(&a), vec![(1, 0, 50)]);
        assert_eq!(v.advertise_at(), Some(now + us(1_000_000)));
        // A decrease (advertise_now false) waits for the next periodic advert.
        assert!(v
            .step(
                Event::DemoteChanged {
                    advertise_now: false
                },
                now,
                &env()
            )
            .is_empty());
        // Periodic adverts carry Env::demote.
        let a = v.step(Event::Timer, now + us(1_000_000), &demoted);
        assert_eq!(adverts(&a), vec![(1, 0, 50)]);
        // The peer with worse timing but no demotion wins against us.
        let a = v.step(Event::Advert(advert(1, 100, 0)), now, &demoted);
        assert_eq!(v.state(), State::Backup, "{a:?}");
        // Not more demoted than us: a BACKUP never preempts it.
        let a = v.step(
            Event::Advert(advert(1, 100, 0)),
            now,
            &Env {
                preempt: true,
                demote: 50,
            },
        );
        assert!(a.is_empty());
        // A BACKUP ignores DemoteChanged.
        assert!(v
            .step(
                Event::DemoteChanged {
                    advertise_now: true
                },
                now,
                &demoted
            )
            .is_empty());
    }

    #[test]
    fn bow_out_then_init_and_slow_master_rule() {
        let (mut m, t0) = master(VhostConfig::new(1, 1, 0));
        let a = m.step(
            Event::AdminDown,
            t0,
            &Env {
                preempt: false,
                demote: 3,
            },
        );
        assert_eq!(
            a.as_slice(),
            &[
                Action::SendAdvert {
                    vhid: 1,
                    advbase: 255,
                    advskew: 255,
                    demote: 3
                },
                Action::Log(Transition {
                    level: LOG_WARNING,
                    vhid: 1,
                    cause: Cause::AdminDown,
                    old: State::Master,
                    new: State::Init
                }),
                Action::SetVmacOwner {
                    vhid: 1,
                    owner: false
                },
            ]
        );
        assert_eq!(m.poll_at(), None);
        // A BACKUP with a normal advbase takes over at once (rule 3)...
        let mut b = backup(VhostConfig::new(1, 1, 100), t(0));
        let a = b.step(Event::Advert(advert(255, 255, 0)), t(SEC), &env());
        assert_eq!(
            logs(&a),
            vec![(State::Backup, State::Master, Cause::SlowMaster, LOG_CRIT)]
        );
        // ... one with advbase >= 86 waits for its timer; advbase 0 never uses rule 3.
        for advbase in [86, 0] {
            let mut b = backup(VhostConfig::new(1, advbase, 0), t(0));
            assert!(b
                .step(Event::Advert(advert(255, 255, 0)), t(SEC), &env())
                .is_empty());
            assert_eq!(b.state(), State::Backup);
        }
        // AdminDown from BACKUP: INIT without a packet; AdminUp: BACKUP again.
        let mut b = backup(VhostConfig::new(1, 1, 0), t(0));
        let a = b.step(Event::AdminDown, t(SEC), &env());
        assert!(adverts(&a).is_empty());
        assert_eq!(b.state(), State::Init);
        assert!(b
            .step(Event::Advert(advert(1, 0, 0)), t(SEC), &env())
            .is_empty());
        b.step(Event::AdminUp, t(2 * SEC), &env());
        assert_eq!(b.state(), State::Backup);
        assert_eq!(b.poll_at(), Some(t(5 * SEC)));
    }

    #[test]
    fn forced_states() {
        let mut v = backup(VhostConfig::new(1, 1, 100), t(0));
        let a = v.step(Event::ForceState(State::Master), t(SEC), &env());
        assert_eq!(
            logs(&a),
            vec![(State::Backup, State::Master, Cause::Forced, LOG_CRIT)]
        );
        assert_eq!(adverts(&a), vec![(1, 100, 0)]);
        assert!(v
            .step(Event::ForceState(State::Master), t(SEC), &env())
            .is_empty());
        // `state init` is ignored.
        assert!(v
            .step(Event::ForceState(State::Init), t(SEC), &env())
            .is_empty());
        assert_eq!(v.state(), State::Master);
        let a = v.step(Event::ForceState(State::Backup), t(2 * SEC), &env());
        assert_eq!(
            logs(&a),
            vec![(State::Master, State::Backup, Cause::Forced, LOG_CRIT)]
        );
        assert_eq!(v.poll_at(), Some(t(2 * SEC) + us(4_171_875)));
        // From INIT (not running) neither backup nor master is possible.
        let mut v = Vhost::new(VhostConfig::new(1, 1, 0));
        assert!(v
            .step(Event::ForceState(State::Master), t(0), &env())
            .is_empty());
        assert!(v
            .step(Event::ForceState(State::Backup), t(0), &env())
            .is_empty());
        assert_eq!(v.state(), State::Init);
    }

    #[test]
    fn link_loss_and_recovery() {
        let (mut v, t0) = master(VhostConfig::new(1, 1, 0));
        let a = v.step(Event::LinkDown, t0, &env());
        assert_eq!(
            logs(&a),
            vec![(State::Master, State::Init, Cause::LinkDown, LOG_WARNING)]
        );
        assert!(adverts(&a).is_empty(), "no bow-out on link loss");
        assert!(a.as_slice().contains(&Action::SetVmacOwner {
            vhid: 1,
            owner: false
        }));
        assert_eq!(v.poll_at(), None);
        assert!(!v.is_running());
        // Adverts and admin-up are ignored while suppressed.
        assert!(v
            .step(Event::Advert(advert(1, 0, 0)), t0, &env())
            .is_empty());
        assert!(v.step(Event::AdminUp, t0, &env()).is_empty());
        // Repeated LinkDown is harmless.
        assert!(v.step(Event::LinkDown, t0, &env()).is_empty());
        let back = t0 + us(7);
        let a = v.step(Event::LinkUp, back, &env());
        assert_eq!(
            logs(&a),
            vec![(State::Init, State::Backup, Cause::Setrun, LOG_WARNING)]
        );
        assert_eq!(v.poll_at(), Some(back + us(3_000_000)));
        // A duplicate LinkUp does not restart the timer.
        assert!(v.step(Event::LinkUp, back + us(5), &env()).is_empty());
        assert_eq!(v.poll_at(), Some(back + us(3_000_000)));
    }

    #[test]
    fn advbase_zero_sub_second() {
        // advbase 0, advskew 0: I = 3 906 µs, master-down 11 718 µs.
        let mut v = backup(VhostConfig::new(9, 0, 0), t(0));
        assert_eq!(v.poll_at(), Some(t(0) + us(11_718)));
        v.step(Event::Timer, t(0) + us(11_718), &env());
        assert_eq!(v.state(), State::Master);
        assert_eq!(v.poll_at(), Some(t(0) + us(11_718 + 3_906)));
        // advbase 0, advskew 128: I = 0.5 s.
        let (v, t0) = master(VhostConfig::new(9, 0, 128));
        assert_eq!(t0, t(0) + us(1_500_000));
        assert_eq!(v.poll_at(), Some(t0 + us(500_000)));
        // Election on (0, 10) vs (0, 20).
        let mut b = backup(VhostConfig::new(9, 0, 10), t(0));
        assert!(b
            .step(Event::Advert(advert(0, 20, 0)), t(1), &env())
            .is_empty());
        assert!(!b
            .step(Event::Advert(advert(0, 20, 0)), t(1), &preempt())
            .is_empty());
        assert_eq!(b.state(), State::Master);
        assert!(b
            .step(Event::Advert(advert(0, 20, 0)), t(2), &env())
            .is_empty());
        b.step(Event::Advert(advert(0, 5, 0)), t(3), &env());
        assert_eq!(b.state(), State::Backup);
        assert_eq!(b.poll_at(), Some(t(3) + us(3 * 39_062)));
    }

    #[test]
    fn master_down_timers_per_family() {
        let mut cfg = VhostConfig::new(4, 1, 0);
        cfg.has_v6 = true;
        let mut v = backup(cfg, t(0));
        assert_eq!(v.master_down_at(Family::V4), Some(t(3 * SEC)));
        assert_eq!(v.master_down_at(Family::V6), Some(t(3 * SEC)));
        // Only IPv4 adverts arrive: the IPv4 timer keeps moving, IPv6 expires.
        v.step(Event::Advert(advert(1, 100, 0)), t(SEC), &env());
        v.step(Event::Advert(advert(1, 100, 0)), t(2 * SEC), &env());
        assert_eq!(v.master_down_at(Family::V4), Some(t(5 * SEC)));
        assert_eq!(v.master_down_at(Family::V6), Some(t(3 * SEC)));
        let mut a6 = advert(1, 100, 0);
        a6.src = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(a6.family(), Family::V6);
        assert_eq!(v.poll_at(), Some(t(3 * SEC)));
        let a = v.step(Event::Timer, t(3 * SEC), &env());
        assert_eq!(
            logs(&a),
            vec![(State::Backup, State::Master, Cause::MasterDown, LOG_CRIT)]
        );
        // With IPv6 adverts too, no takeover.
        let mut v = backup(cfg, t(0));
        v.step(Event::Advert(advert(1, 100, 0)), t(2 * SEC), &env());
        v.step(Event::Advert(a6), t(2 * SEC), &env());
        assert_eq!(v.poll_at(), Some(t(5 * SEC)));
        assert!(v.step(Event::Timer, t(3 * SEC), &env()).is_empty());
    }

    #[test]
    fn config_changes() {
        // Adding an address drops a MASTER to BACKUP through INIT.
        let (mut v, t0) = master(VhostConfig::new(1, 1, 0));
        let a = v.step(
            Event::ConfigChanged(ConfigChange::AddressAdded {
                has_v4: true,
                has_v6: true,
            }),
            t0,
            &env(),
        );
        assert_eq!(
            logs(&a),
            vec![
                (
                    State::Master,
                    State::Init,
                    Cause::ConfigChanged,
                    LOG_WARNING
                ),
                (State::Init, State::Backup, Cause::Setrun, LOG_WARNING)
            ]
        );
        assert_eq!(v.master_down_at(Family::V6), Some(t0 + us(3_000_000)));
        // Timing change on a MASTER: state kept, re-armed with the new I.
        let (mut v, t0) = master(VhostConfig::new(1, 1, 0));
        let now = t0 + us(10);
        let a = v.step(
            Event::ConfigChanged(ConfigChange::Timing {
                advbase_s: 2,
                advskew: 64,
            }),
            now,
            &env(),
        );
        assert!(a.is_empty());
        assert_eq!(v.state(), State::Master);
        assert_eq!(v.advertise_at(), Some(now + us(2_250_000)));
        let a = v.step(Event::Timer, now + us(2_250_000), &env());
        assert_eq!(adverts(&a), vec![(2, 64, 0)]);
        // Key change: state kept, timers re-armed.
        assert!(v
            .step(Event::ConfigChanged(ConfigChange::Key), now, &env())
            .is_empty());
        assert_eq!(v.state(), State::Master);
        // Removing the last address stops the VHID.
        let a = v.step(
            Event::ConfigChanged(ConfigChange::AddressRemoved {
                has_v4: false,
                has_v6: false,
            }),
            now,
            &env(),
        );
        assert_eq!(
            logs(&a),
            vec![(
                State::Master,
                State::Init,
                Cause::ConfigChanged,
                LOG_WARNING
            )]
        );
        assert_eq!(v.poll_at(), None);
        // Reset (VHID list / lladdr / balancing): INIT → BACKUP.
        let (mut v, t0) = master(VhostConfig::new(1, 1, 0));
        v.step(
            Event::ConfigChanged(ConfigChange::Reset {
                leader: false,
                balancing: Balancing::Ip,
            }),
            t0,
            &env(),
        );
        assert_eq!(v.state(), State::Backup);
        assert!(!v.config().leader);
        // Removing one family of a BACKUP cancels only that timer.
        let mut cfg = VhostConfig::new(1, 1, 0);
        cfg.has_v6 = true;
        let mut v = backup(cfg, t(0));
        v.step(
            Event::ConfigChanged(ConfigChange::AddressRemoved {
                has_v4: true,
                has_v6: false,
            }),
            t(1),
            &env(),
        );
        assert_eq!(v.state(), State::Backup);
        assert_eq!(v.master_down_at(Family::V6), None);
        assert_eq!(v.master_down_at(Family::V4), Some(t(3 * SEC)));
    }

    /// A zero-latency LAN of nodes; every SendAdvert is delivered to every
    /// other connected node running the same VHID.
    struct Lan {
        nodes: Vec<Node>,
        now: Instant,
    }

    struct Node {
        vhosts: Vec<Vhost>,
        env: Env,
        ip: Ipv4Addr,
        connected: bool,
    }

    impl Lan {
        fn new(nodes: Vec<(Vec<VhostConfig>, Env)>) -> Lan {
            let nodes = nodes
                .into_iter()
                .enumerate()
                .map(|(i, (cfgs, env))| Node {
                    vhosts: cfgs.into_iter().map(Vhost::new).collect(),
                    env,
                    ip: Ipv4Addr::new(10, 0, 0, 1 + i as u8),
                    connected: true,
                })
                .collect();
            Lan { nodes, now: t(0) }
        }

        fn event(&mut self, node: usize, vh: usize, ev: Event) {
            let mut queue = vec![(node, vh, ev)];
            while let Some((n, v, ev)) = queue.pop() {
                let env = self.nodes[n].env;
                let actions = self.nodes[n].vhosts[v].step(ev, self.now, &env);
                for a in &actions {
                    if let Action::SendAdvert {
                        vhid,
                        advbase,
                        advskew,
                        demote,
                    } = *a
                    {
                        if !self.nodes[n].connected {
                            continue;
                        }
                        let src = IpAddr::V4(self.nodes[n].ip);
                        for (m, other) in self.nodes.iter().enumerate() {
                            if m == n || !other.connected {
                                continue;
                            }
                            for (w, vhost) in other.vhosts.iter().enumerate() {
                                if vhost.vhid() == vhid {
                                    let adv = Advert {
                                        advbase,
                                        advskew,
                                        demote,
                                        src,
                                        counter: 0,
                                    };
                                    queue.push((m, w, Event::Advert(adv)));
                                }
                            }
                        }
                    }
                }
            }
        }

        fn start(&mut self) {
            for n in 0..self.nodes.len() {
                for v in 0..self.nodes[n].vhosts.len() {
                    self.event(n, v, Event::LinkUp);
                    self.event(n, v, Event::AdminUp);
                }
            }
        }

        /// Runs timers until `until`, in deadline order.
        fn run_until(&mut self, until: Instant) {
            loop {
                let next = self
                    .nodes
                    .iter()
                    .enumerate()
                    .flat_map(|(n, node)| {
                        node.vhosts
                            .iter()
                            .enumerate()
                            .filter_map(move |(v, vh)| vh.poll_at().map(|at| (at, n, v)))
                    })
                    .min();
                match next {
                    Some((at, n, v)) if at <= until => {
                        self.now = at;
                        self.event(n, v, Event::Timer);
                    }
                    _ => break,
                }
            }
            self.now = until;
        }

        fn states(&self, vh: usize) -> Vec<State> {
            self.nodes.iter().map(|n| n.vhosts[vh].state()).collect()
        }
    }

    #[test]
    fn pair_elects_lower_skew_with_preempt_and_fails_over() {
        let mut lan = Lan::new(vec![
            (vec![VhostConfig::new(1, 1, 0)], preempt()),
            (vec![VhostConfig::new(1, 1, 128)], preempt()),
        ]);
        lan.start();
        lan.run_until(t(10 * SEC));
        assert_eq!(lan.states(0), vec![State::Master, State::Backup]);
        // fw1 loses its parent link: fw2 takes over after 3 × 1.5 s.
        lan.event(0, 0, Event::LinkDown);
        lan.nodes[0].connected = false;
        let down_at = lan.now;
        lan.run_until(down_at + us(4_499_999));
        assert_eq!(lan.states(0), vec![State::Init, State::Backup]);
        lan.run_until(down_at + us(4_500_000));
        assert_eq!(lan.states(0), vec![State::Init, State::Master]);
        // fw1 comes back and preempts as soon as it hears fw2.
        lan.nodes[0].connected = true;
        lan.event(0, 0, Event::LinkUp);
        lan.run_until(lan.now + us(2_000_000));
        assert_eq!(lan.states(0), vec![State::Master, State::Backup]);
    }

    #[test]
    fn pair_without_preempt_keeps_current_master() {
        let mut lan = Lan::new(vec![
            (vec![VhostConfig::new(1, 1, 0)], env()),
            (vec![VhostConfig::new(1, 1, 128)], env()),
        ]);
        // Only fw2 starts: it becomes MASTER.
        lan.event(1, 0, Event::LinkUp);
        lan.event(1, 0, Event::AdminUp);
        lan.run_until(t(5 * SEC));
        lan.event(0, 0, Event::LinkUp);
        lan.event(0, 0, Event::AdminUp);
        lan.run_until(t(60 * SEC));
        assert_eq!(lan.states(0), vec![State::Backup, State::Master]);
        // Demoting fw2 moves mastership back (rule 2, no preempt needed).
        lan.nodes[1].env.demote = 1;
        lan.event(
            1,
            0,
            Event::DemoteChanged {
                advertise_now: true,
            },
        );
        assert_eq!(lan.states(0), vec![State::Master, State::Backup]);
    }

    #[test]
    fn bow_out_makes_peer_take_over_at_once() {
        let mut lan = Lan::new(vec![
            (vec![VhostConfig::new(1, 1, 0)], env()),
            (vec![VhostConfig::new(1, 1, 100)], env()),
        ]);
        lan.start();
        lan.run_until(t(10 * SEC));
        assert_eq!(lan.states(0), vec![State::Master, State::Backup]);
        lan.event(0, 0, Event::AdminDown);
        assert_eq!(lan.states(0), vec![State::Init, State::Master]);
    }

    #[test]
    fn several_vhids_are_independent() {
        let mut lan = Lan::new(vec![
            (
                vec![VhostConfig::new(1, 1, 0), VhostConfig::new(2, 1, 100)],
                preempt(),
            ),
            (
                vec![VhostConfig::new(1, 1, 100), VhostConfig::new(2, 0, 200)],
                preempt(),
            ),
        ]);
        lan.start();
        lan.run_until(t(20 * SEC));
        assert_eq!(lan.states(0), vec![State::Master, State::Backup]);
        assert_eq!(lan.states(1), vec![State::Backup, State::Master]);
        // Taking vhid 2 down on node 1 affects vhid 2 only.
        lan.event(1, 1, Event::AdminDown);
        assert_eq!(lan.states(0), vec![State::Master, State::Backup]);
        assert_eq!(lan.states(1), vec![State::Master, State::Init]);
    }

    #[test]
    fn equal_masters_both_step_down_then_time_out() {
        let mut a = backup(VhostConfig::new(1, 1, 0), t(0));
        let mut b = backup(VhostConfig::new(1, 1, 0), t(0));
        a.step(Event::Timer, t(3 * SEC), &env());
        b.step(Event::Timer, t(3 * SEC), &env());
        a.step(Event::Advert(advert(1, 0, 0)), t(3 * SEC), &env());
        b.step(Event::Advert(advert(1, 0, 0)), t(3 * SEC), &env());
        assert_eq!((a.state(), b.state()), (State::Backup, State::Backup));
        assert_eq!(a.poll_at(), Some(t(6 * SEC)));
        assert_eq!(b.poll_at(), Some(t(6 * SEC)));
    }
}
