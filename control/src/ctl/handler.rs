//! Answers control-socket requests from the daemon's live objects: summed
//! worker counters, port statistics, the ruleset snapshot, and the workers'
//! command rings (states and rule counters come from the owning workers,
//! never from reading a shard).

use super::{Request, Response};
use crate::config::Config;
use dataplane::command::{Command, CommandClient, HostFilter, Reply};
use dataplane::counters::{DropReason, SharedCounters};
use dataplane::dpdk::Port;
use dataplane::flow::{Addr, Af};
use dataplane::rules::{RuleCounters, Ruleset};
use dataplane::snapshot::Snapshot;
use dataplane::state::State;
use dataplane::time::Instant;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a request may wait for every worker's answer.
const WORKER_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What the control thread answers from.
pub struct Control<'a> {
    /// The configuration.
    pub config: &'a Config,
    /// The ports, in interface order.
    pub ports: &'a [Port],
    /// Worker counters.
    pub shared: &'a SharedCounters,
    /// The ruleset snapshot workers use.
    pub rules: &'a Snapshot<Ruleset>,
    /// One command client per worker.
    pub workers: &'a mut [CommandClient],
    /// The current time on the workers' clock.
    pub now: &'a dyn Fn() -> Instant,
    /// When dpf started.
    pub started: std::time::Instant,
    /// Bad control requests so far.
    pub bad_requests: u64,
    /// Router mode: interfaces and routes.
    pub routing: Option<&'a dataplane::route::Routing>,
    /// Router mode: the slow path (neighbours, counters).
    pub slowpath: Option<&'a crate::slowpath::SlowPath>,
    /// CARP, if configured.
    pub carp: Option<&'a mut crate::carpd::Carp>,
    /// pfsync, if configured.
    pub sync: Option<&'a mut crate::syncd::Sync>,
    /// Frames commands produce (advertisements of a bow-out...).
    pub out: &'a mut Vec<crate::slowpath::Out>,
    /// Frames the control thread sent, dropped (its queue full) and still
    /// waiting for the injection ring.
    pub control_tx: (u64, u64, usize),
}

impl Control<'_> {
    /// Answers one request.
    pub fn handle(&mut self, req: Request) -> Response {
        let r = match req {
            Request::ShowInfo => Ok(self.info()),
            Request::ShowInterfaces => Ok(self.interfaces()),
            Request::ShowRules => self.rules(),
            Request::ShowStates { host } => self.states(host.as_deref()),
            Request::LoadRules { text, file } => self.load_rules(&text, &file),
            Request::KillStates { host, peer } => self.kill(&host, peer.as_deref()),
            Request::FlushStates => self.flush_states(),
            Request::ShowRoutes => Ok(self.routes()),
            Request::ShowNeighbors => Ok(self.neighbors()),
            Request::ShowCarp { name } => self.carp_show(name.as_deref()),
            Request::CarpSet { name, words } => self.carp_set(&name, &words),
            Request::Group { group, carpdemote } => self.group(&group, carpdemote),
            Request::Sysctl { arg } => self.sysctl(arg.as_deref()),
            Request::ShowPfsync => match self.sync.as_deref() {
                Some(s) => {
                    let mut v = s.show((self.now)());
                    let t = self.shared.total();
                    v["exports"] = json!({
                        "export_dropped": t.export_dropped,
                        "export_resent": t.export_resent,
                        "export_lost": t.export_lost,
                        "stale_answered": t.sync_stale,
                        "imported": t.imported,
                        "deferred": t.deferred,
                        "defer_acked": t.defer_acked,
                        "defer_timeout": t.defer_timeout,
                        "defer_full": t.defer_full,
                    });
                    Ok(v)
                }
                None => Err("pfsync is not configured".into()),
            },
        };
        match r {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        }
    }

    fn info(&self) -> Value {
        let t = self.shared.total();
        let drops: serde_json::Map<String, Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), t.drops[*r as usize].into()))
            .collect();
        let rules = self.rules.load();
        json!({
            "uptime_s": self.started.elapsed().as_secs(),
            "workers": self.shared.workers(),
            "states": t.states,
            "states_limit": rules.options.limit_states,
            "states_created": t.states_created,
            "states_removed": t.states_removed,
            "rx": t.rx, "rx_bytes": t.rx_bytes, "tx": t.tx,
            "forwarded": t.forwarded, "state_hits": t.state_hits,
            "handed_off": t.handed_off, "slow_path": t.slow_path, "local_out": t.local_out, "neighbor_held": t.neighbor_held,
            "dropped": t.total_drops(), "drops": drops,
            "burst_latency": crate::daemon::burst_latency_json(&t, dataplane::dpdk::tsc_hz()),
            "control_bad_requests": self.bad_requests,
            "control_tx": {
                "sent": self.control_tx.0,
                "dropped": self.control_tx.1,
                "pending": self.control_tx.2,
            },
            "slow_path_stats": self.slowpath.map(|s| serde_json::to_value(s.stats).unwrap_or_default()),
        })
    }

    fn carp_mut(&mut self) -> Result<&mut crate::carpd::Carp, String> {
        self.carp
            .as_deref_mut()
            .ok_or_else(|| "no carp interfaces are configured".to_string())
    }

    fn carp_show(&mut self, name: Option<&str>) -> Result<Value, String> {
        self.carp_mut()?.show(name)
    }

    fn carp_set(&mut self, name: &str, words: &[String]) -> Result<Value, String> {
        let now = (self.now)();
        let out = &mut *self.out;
        let carp = self
            .carp
            .as_deref_mut()
            .ok_or_else(|| "no carp interfaces are configured".to_string())?;
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["advskew", v] => {
                let v: i64 = v
                    .parse()
                    .map_err(|_| format!("advskew '{v}' is not a number"))?;
                carp.set_advskew(name, v, now, out)?;
            }
            ["up"] => carp.set_admin(name, true, now, out)?,
            ["down"] => carp.set_admin(name, false, now, out)?,
            ["state", s] => carp.force_state(name, s, now, out)?,
            _ => {
                return Err(format!(
                    "{name}: expected advskew N, up, down or state init|backup|master; got '{}'",
                    w.join(" ")
                ))
            }
        }
        carp.show(Some(name))
    }

    fn group(&mut self, group: &str, carpdemote: Option<i32>) -> Result<Value, String> {
        let now = (self.now)();
        let out = &mut *self.out;
        let carp = self
            .carp
            .as_deref_mut()
            .ok_or_else(|| "no carp interfaces are configured".to_string())?;
        if let Some(d) = carpdemote {
            carp.carpdemote(group, d, now, out)?;
        }
        carp.group(group)
    }

    fn sysctl(&mut self, arg: Option<&str>) -> Result<Value, String> {
        let carp = self.carp_mut()?;
        if let Some(a) = arg {
            if let Some((name, value)) = a.split_once('=') {
                let v: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name}: '{value}' is not a number"))?;
                carp.sysctl.set(name.trim(), v)?;
                crate::log!(crate::log::Level::Notice, "sysctl {}={v}", name.trim());
            }
        }
        let s = carp.sysctl;
        let all = [
            ("net.inet.carp.allow", s.allow as u8),
            ("net.inet.carp.preempt", s.preempt as u8),
            ("net.inet.carp.log", s.log),
        ];
        let wanted = arg.map(|a| a.split('=').next().unwrap_or(a).trim());
        if let Some(w) = wanted {
            if !all.iter().any(|(n, _)| *n == w) {
                return Err(format!("unknown sysctl '{w}'"));
            }
        }
        Ok(Value::Object(
            all.iter()
                .filter(|(n, _)| wanted.is_none_or(|w| w == *n))
                .map(|(n, v)| (n.to_string(), Value::from(*v)))
                .collect(),
        ))
    }

    fn routes(&self) -> Value {
        let Some(r) = self.routing else {
            return Value::Array(Vec::new());
        };
        let names: Vec<&str> = self.config.ports.iter().map(|p| p.name.as_str()).collect();
        Value::Array(
            r.routes()
                .iter()
                .map(|rt| {
                    json!({
                        "destination": format!("{}/{}", rt.prefix.addr.to_ip(rt.prefix.af), rt.prefix.len),
                        "gateway": rt.via.map(|v| v.to_ip(rt.prefix.af).to_string()),
                        "interface": names.get(rt.port as usize).copied().unwrap_or("?"),
                    })
                })
                .collect(),
        )
    }

    fn neighbors(&self) -> Value {
        let Some(sp) = self.slowpath else {
            return Value::Array(Vec::new());
        };
        let names: Vec<&str> = self.config.ports.iter().map(|p| p.name.as_str()).collect();
        Value::Array(
            sp.entries()
                .into_iter()
                .map(|r| {
                    let (af, a, mac, port, state) = (r.af, r.addr, r.mac, r.port, r.state);
                    json!({
                        "address": a.to_ip(af).to_string(),
                        "mac": mac.map(|m| dataplane::wire::EthernetAddress(m).to_string()),
                        "interface": names.get(port as usize).copied().unwrap_or("?"),
                        "state": state,
                    })
                })
                .collect(),
        )
    }

    fn interfaces(&self) -> Value {
        let list: Vec<Value> = self
            .config
            .ports
            .iter()
            .zip(self.ports)
            .enumerate()
            .map(|(i, (spec, port))| {
                let mac = port.mac();
                json!({
                    "name": spec.name,
                    "index": i,
                    "driver": port.driver(),
                    "mac": dataplane::wire::EthernetAddress(mac).to_string(),
                    "link": port.link(),
                    "addresses": spec.addresses.iter().map(|(ip, len)| format!("{ip}/{len}")).collect::<Vec<_>>(),
                    "stats": port.stats(),
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Sends `cmd` to every worker and collects replies until each has
    /// sent its terminating reply.
    fn ask_all(&mut self, cmd: Command, on_reply: impl FnMut(Reply)) -> Result<(), String> {
        ask_workers(self.workers, cmd, on_reply)
    }

    fn rules(&mut self) -> Result<Value, String> {
        let rules = self.rules.load();
        let mut sum = vec![RuleCounters::default(); rules.len()];
        self.ask_all(Command::RuleCounters, |r| {
            if let Reply::Rule(i, c) = r {
                if let Some(s) = sum.get_mut(i as usize) {
                    s.evaluations += c.evaluations;
                    s.packets += c.packets;
                    s.bytes += c.bytes;
                    s.states_created += c.states_created;
                }
            }
        })?;
        let list: Vec<Value> = (0..rules.len())
            .map(|i| {
                let c = sum[i];
                json!({
                    "number": i, "rule": rules.rule_text(i),
                    "evaluations": c.evaluations, "packets": c.packets,
                    "bytes": c.bytes, "states_created": c.states_created,
                })
            })
            .collect();
        Ok(Value::Array(list))
    }

    fn states(&mut self, host: Option<&str>) -> Result<Value, String> {
        let filter = match host {
            Some(h) => Some(HostFilter {
                host: parse_host(h)?,
                peer: None,
            }),
            None => None,
        };
        let now = (self.now)();
        let rules = self.rules.load();
        let timeouts = rules.options.timeouts;
        let names: Vec<&str> = self.config.ports.iter().map(|p| p.name.as_str()).collect();
        let mut out = Vec::new();
        self.ask_all(Command::ListStates, |r| {
            if let Reply::State(st) = r {
                if filter.is_none_or(|f| f.matches(st.key())) {
                    out.push(state_json(&st, now, &timeouts, &names));
                }
            }
        })?;
        Ok(Value::Array(out))
    }

    fn kill(&mut self, host: &str, peer: Option<&str>) -> Result<Value, String> {
        let filter = HostFilter {
            host: parse_host(host)?,
            peer: peer.map(parse_host).transpose()?,
        };
        self.run_kill(Command::KillStates(filter))
    }

    /// `-F states`: every worker empties its shard; the pfsync peer is
    /// told with a CLR of this box's creator id (pf's behaviour), so it
    /// drops the states this box created (one message, however many).
    fn flush_states(&mut self) -> Result<Value, String> {
        let r = self.run_kill(Command::FlushStates)?;
        if let Some(s) = self.sync.as_deref_mut() {
            s.send_clear(self.out);
        }
        Ok(r)
    }

    fn run_kill(&mut self, cmd: Command) -> Result<Value, String> {
        let mut killed = 0u64;
        self.ask_all(cmd, |r| {
            if let Reply::Killed(n) = r {
                killed += n;
            }
        })?;
        Ok(json!({ "killed": killed }))
    }

    fn load_rules(&mut self, text: &str, file: &str) -> Result<Value, String> {
        let ruleset = crate::rule_env::RuleNames::of(self.config)
            .with_env(|env| Ruleset::compile_all(text, file, env))
            .map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
        let old_limit = self.rules.load().options.limit_states;
        let mut notes = Vec::new();
        if ruleset.options.limit_states != old_limit {
            notes.push(format!(
                "set limit states {} takes effect at the next start (state tables are sized at start; now {old_limit})",
                ruleset.options.limit_states
            ));
        }
        let rules = ruleset.len();
        let epoch = self.rules.publish(Arc::new(ruleset));
        crate::log!(
            crate::log::Level::Notice,
            "loaded {rules} rules from {file} (ruleset epoch {epoch})"
        );
        Ok(json!({ "rules": rules, "epoch": epoch, "notes": notes }))
    }
}

/// Sends `cmd` to every worker's command ring and hands each reply to
/// `on_reply` until every worker has sent its terminating reply
/// (`ListDone` or `Killed`), or fails after [`WORKER_REPLY_TIMEOUT`].
pub fn ask_workers(
    workers: &mut [CommandClient],
    cmd: Command,
    mut on_reply: impl FnMut(Reply),
) -> Result<(), String> {
    for (w, c) in workers.iter_mut().enumerate() {
        if c.commands.push(cmd).is_err() {
            return Err(format!("worker {w} is busy; try again"));
        }
        c.commands.publish();
    }
    let deadline = std::time::Instant::now() + WORKER_REPLY_TIMEOUT;
    let mut done = vec![false; workers.len()];
    while done.iter().any(|d| !d) {
        if std::time::Instant::now() > deadline {
            return Err("workers did not answer in time".into());
        }
        let mut idle = true;
        for (w, c) in workers.iter_mut().enumerate() {
            while let Some(r) = c.replies.pop() {
                idle = false;
                if matches!(r, Reply::ListDone | Reply::Killed(_)) {
                    done[w] = true;
                }
                on_reply(r);
            }
        }
        if idle {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    Ok(())
}

/// Parses an IPv4 or IPv6 host address.
pub fn parse_host(s: &str) -> Result<(Af, Addr), String> {
    s.parse::<std::net::IpAddr>()
        .map(Addr::from_ip)
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmp6".into(),
        n => n.to_string(),
    }
}

fn peer_state_name(proto: u8, s: u8) -> &'static str {
    const TCP: [&str; 11] = [
        "CLOSED",
        "LISTEN",
        "SYN_SENT",
        "SYN_RCVD",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "FIN_WAIT_1",
        "CLOSING",
        "LAST_ACK",
        "FIN_WAIT_2",
        "TIME_WAIT",
    ];
    const OTHER: [&str; 3] = ["NO_TRAFFIC", "SINGLE", "MULTIPLE"];
    if proto == 6 {
        TCP.get(s as usize).copied().unwrap_or("?")
    } else {
        OTHER.get(s as usize).copied().unwrap_or("?")
    }
}

/// A peer's TCP window tracking (pfctl -vv's `[seqlo + win]`): what a
/// pfsync update carries besides the state names.
fn peer_window_json(p: &dataplane::state::Peer) -> Value {
    let (seqlo, seqhi, max_win, wscale) = (p.seqlo, p.seqhi, p.max_win, p.wscale);
    json!({ "seqlo": seqlo, "seqhi": seqhi, "max_win": max_win, "wscale": wscale & 0x0f })
}

fn state_json(
    st: &State,
    now: Instant,
    timeouts: &dataplane::timeouts::Timeouts,
    ifnames: &[&str],
) -> Value {
    let key = st.key();
    let af = key.family();
    let (src, sport) = st.src_endpoint();
    let (dst, dport) = st.dst_endpoint();
    let (src_state, dst_state) = (st.src.state, st.dst.state);
    json!({
        "id": format!("{:016x}", st.id()),
        "creatorid": format!("{:08x}", st.creatorid()),
        "proto": proto_name(key.proto),
        "af": if af == Af::Inet { "inet" } else { "inet6" },
        "if": ifnames.get(st.ifindex.0 as usize).copied().unwrap_or("all"),
        "direction": match st.direction { dataplane::flow::Direction::In => "in", dataplane::flow::Direction::Out => "out" },
        "src": src.to_ip(af).to_string(), "sport": sport,
        "dst": dst.to_ip(af).to_string(), "dport": dport,
        "src_state": peer_state_name(key.proto, src_state),
        "dst_state": peer_state_name(key.proto, dst_state),
        "src_window": peer_window_json(&st.src),
        "dst_window": peer_window_json(&st.dst),
        "timeout": st.timeout.name(),
        "age_s": st.age_s(now),
        "expires_in_s": st.expire_in_s(now, timeouts),
        "packets": [st.packets(0), st.packets(1)],
        "bytes": [st.bytes(0), st.bytes(1)],
        "rule": if st.rule == dataplane::state::NO_RULE { Value::Null } else { st.rule.into() },
    })
}
