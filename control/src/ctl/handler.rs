//! Answers control-socket requests from the daemon's live objects: summed
//! worker counters, port statistics, the ruleset snapshot, and the workers'
//! command rings (states and rule counters come from the owning workers,
//! never from reading a shard).
//!
//! Requests the workers answer are [`Job`]s: the command goes to every
//! worker at once, and each control-loop round takes a bounded number of
//! replies off their rings ([`Service::pump`]); a worker itself scans at
//! most `SLOTS_PER_POLL` slots per round and pauses when its reply ring is
//! full. So neither a big state table nor a slow client holds up the
//! control loop or a worker.

use super::server::{Service, Start, Step};
use super::{
    Info, InterfaceEntry, Killed, LabelEntry, LimitEntry, Loaded, NeighborEntry, PeerWindow,
    Request, Response, RouteEntry, RuleEntry, SocketStats, SourceEntry, SourcesKilled, StateEntry,
    TableAddrEntry, TableChanged, TableInfo, TableOp, TableTestResult, TableTested, TablesFlushed,
};
use crate::config::Config;
use dataplane::command::{
    Command, CommandClient, HostFilter, LabelName, Reply, StateFilter, Ticket,
};
use dataplane::counters::{DropReason, SharedCounters};
use dataplane::dpdk::Port;
use dataplane::flow::{Addr, Af};
use dataplane::rules::table::{
    check_table_name, parse_table_addr, Table, TableAddr, TableChange, TableFlags,
};
use dataplane::rules::{AnchorSource, FsFiles, RuleCounters, Ruleset};
use dataplane::snapshot::Snapshot;
use dataplane::state::State;
use dataplane::time::Instant;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a request may wait for the workers without any reply.
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
    /// The control socket's connection counters.
    pub socket: SocketStats,
    /// Router mode: interfaces and routes.
    pub routing: Option<&'a dataplane::route::Routing>,
    /// Router mode: the slow path (neighbours, counters).
    pub slowpath: Option<&'a crate::slowpath::SlowPath>,
    /// CARP, if configured.
    pub carp: Option<&'a mut crate::carp::engine::Carp>,
    /// pfsync, if configured.
    pub sync: Option<&'a mut crate::pfsync::engine::Sync>,
    /// Frames commands produce (advertisements of a bow-out...).
    pub out: &'a mut Vec<crate::slowpath::Out>,
    /// Frames the control thread sent, dropped (its queue full) and still
    /// waiting for the injection ring.
    pub control_tx: (u64, u64, usize),
    /// The texts the ruleset was compiled from (a run-time anchor change
    /// recompiles the whole ruleset).
    pub sources: &'a mut RuleSources,
    /// This box's pfsync creator id (`-k id` without one).
    pub creatorid: u32,
    /// The source nodes (`-s Sources`, `-K`).
    pub src_nodes: &'a dataplane::srcnodes::SourceTable,
    /// Each worker's state table, sized at start.
    pub shard_sizes: crate::daemon::ShardSizes,
}

/// What the ruleset in use was compiled from: the main file's text and the
/// anchors loaded at run time, so that `dpfctl -a name -f file` can
/// recompile and swap the whole ruleset (states stay, as on a reload).
#[derive(Clone, Debug, Default)]
pub struct RuleSources {
    /// The main ruleset: text, file name, directory of relative includes.
    /// `None` after `-F rules` (or when it could not be read again).
    pub main: Option<(String, String, Option<std::path::PathBuf>)>,
    /// Anchors loaded with `dpfctl -a`, by name.
    pub anchors: std::collections::BTreeMap<String, AnchorSource>,
}

impl RuleSources {
    /// The sources of the configuration's ruleset (read again from its
    /// file: the daemon compiled it from there at start).
    pub fn of(config: &Config) -> RuleSources {
        let main = match &config.rules {
            None => Some((String::new(), "(none)".to_string(), None)),
            Some(path) => std::fs::read_to_string(path)
                .ok()
                .map(|t| (t, path.display().to_string(), None)),
        };
        RuleSources {
            main,
            anchors: Default::default(),
        }
    }
}

/// A request the workers answer, in progress.
#[derive(Debug)]
pub struct Job {
    kind: JobKind,
    /// Per worker: the ticket of our command, and whether its terminating
    /// reply came.
    tickets: Vec<(Ticket, bool)>,
    /// Since when no reply came (the timeout runs while this is set).
    waiting_since: Option<std::time::Instant>,
    /// The command could not be sent to every worker: drain, then fail.
    failed: Option<String>,
}

#[derive(Debug)]
enum JobKind {
    States {
        filter: Option<HostFilter>,
    },
    Rules {
        sum: Vec<RuleCounters>,
        /// Once every worker answered: the next rule to send.
        emit_next: Option<usize>,
        /// Answer per label (`show-labels`) instead of per rule.
        labels: bool,
    },
    /// `-z`: every worker zeroed its counters.
    Zero,
    Kill {
        killed: u64,
        flush: bool,
    },
    /// `-K` / `-F Sources`: `nodes` marked to go, states detached so far.
    KillSources {
        nodes: u64,
        detached: u64,
    },
    /// A listing the control thread made itself, sent in chunks.
    Items(std::vec::IntoIter<Value>),
    /// A table's entries, read from the table as it was when asked (a
    /// change meanwhile publishes a new table; this one stays whole).
    Table {
        table: Arc<Table>,
        next: usize,
    },
}

impl Service for Control<'_> {
    type Job = Job;

    fn start(&mut self, req: Request) -> Start<Job> {
        let (cmd, kind) = match req {
            Request::ShowStates { host } => {
                let filter = match host.as_deref().map(parse_host).transpose() {
                    Ok(f) => f.map(|host| HostFilter { host, peer: None }),
                    Err(e) => return Start::Answer(Response::err(e)),
                };
                (Command::ListStates, JobKind::States { filter })
            }
            Request::ShowRules | Request::ShowLabels => (
                Command::RuleCounters,
                JobKind::Rules {
                    sum: vec![RuleCounters::default(); self.rules.load().len()],
                    emit_next: None,
                    labels: req == Request::ShowLabels,
                },
            ),
            Request::ZeroCounters => (Command::ZeroRuleCounters, JobKind::Zero),
            Request::KillStateId { id, creatorid } => {
                let filter = match parse_state_id(&id, creatorid.as_deref(), self.creatorid) {
                    Ok(f) => f,
                    Err(e) => return Start::Answer(Response::err(e)),
                };
                (
                    Command::KillMatching(filter),
                    JobKind::Kill {
                        killed: 0,
                        flush: false,
                    },
                )
            }
            Request::KillLabel { label } => {
                let Some(l) = LabelName::new(&label) else {
                    return Start::Answer(Response::err(format!(
                        "label '{label}' is longer than pf's 63 characters"
                    )));
                };
                (
                    Command::KillMatching(StateFilter::Label(l)),
                    JobKind::Kill {
                        killed: 0,
                        flush: false,
                    },
                )
            }
            Request::KillStates { host, peer } => {
                let filter = match (
                    parse_host(&host),
                    peer.as_deref().map(parse_host).transpose(),
                ) {
                    (Ok(host), Ok(peer)) => HostFilter { host, peer },
                    (Err(e), _) | (_, Err(e)) => return Start::Answer(Response::err(e)),
                };
                (
                    Command::KillStates(filter),
                    JobKind::Kill {
                        killed: 0,
                        flush: false,
                    },
                )
            }
            Request::KillSources { host } => {
                let host = match host.as_deref().map(parse_host).transpose() {
                    Ok(h) => h,
                    Err(e) => return Start::Answer(Response::err(e)),
                };
                // The nodes go as soon as the workers have detached their
                // states (pf's DIOCKILLSRCNODES).
                let nodes = self
                    .src_nodes
                    .expire_now(|k| host.is_none_or(|(af, a)| k.af == af && k.addr == a));
                (
                    Command::DetachSources(host),
                    JobKind::KillSources { nodes, detached: 0 },
                )
            }
            Request::FlushStates => (
                Command::FlushStates,
                JobKind::Kill {
                    killed: 0,
                    flush: true,
                },
            ),
            Request::ShowNeighbors => {
                return Start::Stream(Job {
                    kind: JobKind::Items(self.neighbors().into_iter()),
                    tickets: Vec::new(),
                    waiting_since: None,
                    failed: None,
                })
            }
            Request::TableShow { table } => {
                let set = self.rules.load().table_set();
                let Some((_, t)) = set.find(&table) else {
                    return Start::Answer(Response::err(format!("table <{table}> does not exist")));
                };
                return Start::Stream(Job {
                    kind: JobKind::Table {
                        table: Arc::clone(t),
                        next: 0,
                    },
                    tickets: Vec::new(),
                    waiting_since: None,
                    failed: None,
                });
            }
            other => return Start::Answer(self.handle(other)),
        };
        let mut failed = None;
        let mut tickets = Vec::with_capacity(self.workers.len());
        for (w, c) in self.workers.iter_mut().enumerate() {
            match c.send(cmd) {
                Ok(t) => tickets.push((t, false)),
                Err(_) => {
                    failed.get_or_insert(format!("worker {w} is busy; try again"));
                }
            }
        }
        Start::Stream(Job {
            kind,
            tickets,
            waiting_since: None,
            failed,
        })
    }

    fn pump(&mut self, job: &mut Job, max_items: usize) -> Step {
        let now = (self.now)();
        let rules = self.rules.load();
        let timeouts = rules.options.timeouts;
        // Expiry as the workers see it: scaled by the box's adaptive factor.
        let scale = timeouts.scale(self.shared.total().states);
        let names: Vec<&str> = self.config.ports.iter().map(|p| p.name.as_str()).collect();
        if let JobKind::Rules {
            sum,
            emit_next: Some(_),
            labels: true,
        } = &job.kind
        {
            return Step::Answer(Response::ok_typed(&label_entries(&rules, sum)));
        }
        if let JobKind::Rules {
            sum,
            emit_next: Some(next),
            ..
        } = &mut job.kind
        {
            let end = (*next + max_items).min(sum.len());
            let items = (*next..end)
                .map(|i| {
                    let c = sum[i];
                    to_value(&RuleEntry {
                        number: i as u64,
                        rule: rules.rule_text(i).to_string(),
                        evaluations: c.evaluations,
                        packets: c.packets,
                        bytes: c.bytes,
                        states_created: c.states_created,
                        packets_out: c.packets_out,
                        bytes_out: c.bytes_out,
                        states_cur: c.states_cur,
                        label: rules.rule_label(i).map(str::to_string),
                        anchor: rules.rule_anchor(i).map(str::to_string),
                    })
                })
                .collect();
            *next = end;
            return if end >= sum.len() {
                Step::Done(items)
            } else {
                Step::Items(items)
            };
        }
        if let JobKind::Table { table, next } = &mut job.kind {
            let end = (*next + max_items).min(table.len());
            let items = table.entries()[*next..end]
                .iter()
                .map(|e| {
                    to_value(&TableAddrEntry {
                        address: e.addr.to_string(),
                        cleared: e.tzero,
                    })
                })
                .collect();
            *next = end;
            return if end >= table.len() {
                Step::Done(items)
            } else {
                Step::Items(items)
            };
        }
        if let JobKind::Items(rest) = &mut job.kind {
            let items: Vec<Value> = rest.take(max_items).collect();
            return if rest.len() == 0 {
                Step::Done(items)
            } else {
                Step::Items(items)
            };
        }
        let mut items = Vec::new();
        // At most `max_items` items serialised; a filtered listing may pop
        // more replies per item: at most 4 × `max_items` of those.
        let r = job.take_replies(self.workers, 4 * max_items, max_items, |kind, reply| {
            match (kind, reply) {
                (JobKind::States { filter }, Reply::State(st, tr))
                    if filter.is_none_or(|f| {
                        f.matches(st.key()) || (tr.is_some() && f.matches(&tr.key))
                    }) =>
                {
                    items.push(to_value(&state_entry(
                        &st, &tr, now, &timeouts, scale, &names,
                    )));
                    return true;
                }
                (JobKind::Rules { sum, .. }, Reply::Rule(i, c)) => {
                    if let Some(s) = sum.get_mut(i as usize) {
                        s.evaluations += c.evaluations;
                        s.packets += c.packets;
                        s.bytes += c.bytes;
                        s.states_created += c.states_created;
                        s.packets_out += c.packets_out;
                        s.bytes_out += c.bytes_out;
                        s.states_cur += c.states_cur;
                    }
                }
                (JobKind::Kill { killed, .. }, Reply::Killed(n)) => *killed += n,
                (JobKind::KillSources { detached, .. }, Reply::Killed(n)) => *detached += n,
                _ => {}
            }
            false
        });
        match r {
            Err(e) => Step::Answer(Response::err(e)),
            // Nothing came: the workers are still scanning.
            Ok(false) if job.waiting_since.is_some() => Step::Wait,
            // Replies came (perhaps none matching a filter): go on.
            Ok(false) => Step::Items(items),
            Ok(true) => match &mut job.kind {
                JobKind::States { .. } => Step::Done(items),
                JobKind::Rules { emit_next, .. } => {
                    *emit_next = Some(0);
                    Step::Items(items)
                }
                JobKind::Items(_) | JobKind::Table { .. } => Step::Done(items),
                JobKind::Zero => Step::Answer(Response::ok_typed(&Killed { killed: 0 })),
                JobKind::KillSources { nodes, detached } => {
                    // The nodes' last states are detached: they go now.
                    let rules = self.rules.load();
                    let now_s = dataplane::state::entry::secs_of_instant(now);
                    self.src_nodes
                        .sweep(0, self.src_nodes.slots(), now_s, |owner| {
                            if let Some(nr) = rules.rule_of_tag(owner) {
                                rules.release_src_node(nr);
                            }
                        });
                    Step::Answer(Response::ok_typed(&SourcesKilled {
                        killed: *nodes,
                        detached: *detached,
                    }))
                }
                JobKind::Kill { killed, flush } => {
                    if *flush {
                        // pf's behaviour: the pfsync peer gets one CLR of
                        // this box's creator id, however many states.
                        if let Some(s) = self.sync.as_deref_mut() {
                            s.send_clear(self.out);
                        }
                    }
                    Step::Answer(Response::ok_typed(&Killed { killed: *killed }))
                }
            },
        }
    }

    fn drain(&mut self, job: &mut Job, max_items: usize) -> bool {
        // A dropped client's kill still happened; its count is lost with it.
        !matches!(
            job.take_replies(self.workers, max_items, max_items, |_, _| false),
            Ok(false)
        )
    }
}

impl Job {
    /// Takes at most `max_replies` replies of this job off the workers'
    /// rings, stopping once `on_reply` made `max_items` items (it returns
    /// whether it did). Only this job's replies: another reader's (a pfsync
    /// bulk update's) are left to it. Ok(true) once every worker has
    /// answered; on an error the job's remaining replies are abandoned
    /// (dropped as they come), so no later reader waits behind them.
    fn take_replies(
        &mut self,
        workers: &mut [CommandClient],
        max_replies: usize,
        max_items: usize,
        on_reply: impl FnMut(&mut JobKind, Reply) -> bool,
    ) -> Result<bool, String> {
        let r = self.take_own_replies(workers, max_replies, max_items, on_reply);
        if r.is_err() {
            for (c, (ticket, done)) in workers.iter_mut().zip(self.tickets.iter_mut()) {
                if !*done {
                    c.abandon(*ticket);
                    *done = true;
                }
            }
        }
        r
    }

    fn take_own_replies(
        &mut self,
        workers: &mut [CommandClient],
        max_replies: usize,
        max_items: usize,
        mut on_reply: impl FnMut(&mut JobKind, Reply) -> bool,
    ) -> Result<bool, String> {
        let mut taken = 0;
        let mut produced = 0;
        for (c, (ticket, done)) in workers.iter_mut().zip(self.tickets.iter_mut()) {
            while !*done && taken < max_replies && produced < max_items {
                let Some(reply) = c.recv_for(*ticket) else {
                    break;
                };
                taken += 1;
                *done = reply.is_terminator();
                produced += usize::from(on_reply(&mut self.kind, reply));
            }
        }
        let all_done = self.tickets.iter().all(|(_, d)| *d);
        if all_done {
            return match self.failed.take() {
                Some(e) => Err(e),
                None => Ok(true),
            };
        }
        if taken > 0 {
            self.waiting_since = None;
        } else {
            let since = *self
                .waiting_since
                .get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > WORKER_REPLY_TIMEOUT {
                return Err("workers did not answer in time".into());
            }
        }
        Ok(false)
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

impl Control<'_> {
    /// Answers a request that needs no worker at once.
    pub fn handle(&mut self, req: Request) -> Response {
        let r = match req {
            Request::ShowInfo => Ok(to_value(&self.info())),
            Request::ShowInterfaces => Ok(self.interfaces()),
            Request::LoadRules {
                text,
                file,
                dir,
                anchor,
            } => match anchor {
                None => self.load_rules(&text, &file, dir.map(Into::into)),
                Some(a) => self.load_anchor(&a, Some((text, file))),
            },
            Request::FlushRules { anchor: None } => self.flush_rules(),
            Request::FlushRules { anchor: Some(a) } => self.load_anchor(&a, None),
            Request::ShowTimeouts => {
                let o = &self.rules.load().options;
                let t = o.timeouts;
                let (start, end) = t.adaptive();
                let mut list: Vec<LimitEntry> = dataplane::timeouts::TimeoutClass::ALL
                    .iter()
                    .map(|c| LimitEntry {
                        name: c.name().to_string(),
                        value: t.secs(*c).into(),
                    })
                    .collect();
                list.push(LimitEntry {
                    name: "frag".into(),
                    value: o.frag_timeout_s.into(),
                });
                list.push(LimitEntry {
                    name: "src.track".into(),
                    value: o.src_track_s.into(),
                });
                // pfctl -st lists them after the state timeouts, in states.
                list.push(LimitEntry {
                    name: "adaptive.start".into(),
                    value: start.into(),
                });
                list.push(LimitEntry {
                    name: "adaptive.end".into(),
                    value: end.into(),
                });
                Ok(to_value(&list))
            }
            Request::ShowMemory => {
                let o = &self.rules.load().options;
                Ok(to_value(&vec![
                    LimitEntry {
                        name: "states".into(),
                        value: o.limit_states.into(),
                    },
                    LimitEntry {
                        name: "src-nodes".into(),
                        value: o.limit_src_nodes.into(),
                    },
                    LimitEntry {
                        name: "frags".into(),
                        value: o.limit_frags.into(),
                    },
                ]))
            }
            Request::ShowRoutes => Ok(self.routes()),
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
            Request::ShowTables => Ok(self.show_tables()),
            Request::ShowSources => Ok(self.show_sources()),
            Request::FlushTables => self.flush_tables(),
            Request::TableTest { table, addresses } => self.table_test(&table, &addresses),
            Request::TableChange {
                table,
                op,
                addresses,
            } => self.table_change(&table, &op, &addresses),
            Request::ShowStates { .. }
            | Request::ShowRules
            | Request::ShowLabels
            | Request::ZeroCounters
            | Request::KillStates { .. }
            | Request::KillStateId { .. }
            | Request::KillLabel { .. }
            | Request::FlushStates
            | Request::KillSources { .. }
            | Request::ShowNeighbors
            | Request::TableShow { .. } => {
                Err("internal: a streamed request answered at once".into())
            }
        };
        match r {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        }
    }

    fn info(&self) -> Info {
        let t = self.shared.total();
        let rules = self.rules.load();
        Info {
            uptime_s: self.started.elapsed().as_secs(),
            workers: self.shared.workers() as u64,
            states: t.states,
            states_limit: rules.options.limit_states as u64,
            side_records: (self.shard_sizes.records * self.shard_sizes.workers) as u64,
            side_records_used: t.side_records_used,
            state_table_bytes: self.shard_sizes.bytes(),
            states_created: t.states_created,
            states_removed: t.states_removed,
            rx: t.rx,
            rx_bytes: t.rx_bytes,
            tx: t.tx,
            forwarded: t.forwarded,
            state_hits: t.state_hits,
            handed_off: t.handed_off,
            slow_path: t.slow_path,
            local_out: t.local_out,
            neighbor_held: t.neighbor_held,
            local_tx_waits: t.local_tx_waits,
            sync_rx_paused: t.sync_rx_paused,
            dropped: t.total_drops(),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.name().to_string(), t.drops[*r as usize]))
                .collect(),
            burst_latency: crate::counters_json::burst_latency(&t, dataplane::dpdk::tsc_hz()),
            control_bad_requests: self.bad_requests,
            control_socket: self.socket,
            control_tx: super::ControlTx {
                sent: self.control_tx.0,
                dropped: self.control_tx.1,
                pending: self.control_tx.2 as u64,
            },
            slow_path_stats: self
                .slowpath
                .map(|s| serde_json::to_value(s.stats).unwrap_or_default())
                .unwrap_or(Value::Null),
            log: super::LogStats {
                dropped: crate::log::dropped(),
                write_errors: crate::log::write_errors(),
            },
            pflog: super::PflogStats {
                logged: t.pflog_logged,
                dropped: t.pflog_dropped,
            },
        }
    }

    fn carp_mut(&mut self) -> Result<&mut crate::carp::engine::Carp, String> {
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
        let list: Vec<RouteEntry> = r
            .routes()
            .iter()
            .map(|rt| RouteEntry {
                destination: format!("{}/{}", rt.prefix.addr.to_ip(rt.prefix.af), rt.prefix.len),
                gateway: rt.via.map(|v| v.to_ip(rt.prefix.af).to_string()),
                interface: names
                    .get(rt.port as usize)
                    .copied()
                    .unwrap_or("?")
                    .to_string(),
            })
            .collect();
        to_value(&list)
    }

    /// Every neighbour entry (up to `neighbor_limit`, which may be a
    /// million): streamed like a state listing.
    fn neighbors(&self) -> Vec<Value> {
        let Some(sp) = self.slowpath else {
            return Vec::new();
        };
        let names: Vec<&str> = self.config.ports.iter().map(|p| p.name.as_str()).collect();
        sp.entries()
            .into_iter()
            .map(|r| {
                let (af, a, mac, port, state) = (r.af, r.addr, r.mac, r.port, r.state);
                to_value(&NeighborEntry {
                    address: a.to_ip(af).to_string(),
                    mac: mac.map(|m| dataplane::wire::EthernetAddress(m).to_string()),
                    interface: names.get(port as usize).copied().unwrap_or("?").to_string(),
                    state: state.to_string(),
                })
            })
            .collect()
    }

    fn interfaces(&self) -> Value {
        let list: Vec<InterfaceEntry> = self
            .config
            .ports
            .iter()
            .zip(self.ports)
            .enumerate()
            .map(|(i, (spec, port))| {
                let link = port.link();
                let stats = serde_json::to_value(port.stats())
                    .and_then(serde_json::from_value)
                    .unwrap_or_default();
                InterfaceEntry {
                    name: spec.name.clone(),
                    index: i as u64,
                    driver: port.driver().to_string(),
                    mac: dataplane::wire::EthernetAddress(port.mac()).to_string(),
                    link: super::Link {
                        up: link.up,
                        speed_mbps: link.speed_mbps,
                    },
                    addresses: spec
                        .addresses
                        .iter()
                        .map(|(ip, len)| format!("{ip}/{len}"))
                        .collect(),
                    stats,
                }
            })
            .collect();
        to_value(&list)
    }

    /// `-F rules`: no rule left, options kept (pf's flush).
    fn flush_rules(&mut self) -> Result<Value, String> {
        let ruleset = self.rules.load().without_rules();
        self.sources.main = None;
        let epoch = self.rules.publish(Arc::new(ruleset));
        crate::log!(
            crate::log::Level::Notice,
            "rules flushed (ruleset epoch {epoch})"
        );
        Ok(to_value(&Loaded {
            rules: 0,
            epoch,
            notes: Vec::new(),
        }))
    }

    /// `-a name -f file` (`Some`) or `-a name -F rules` (`None`): the
    /// anchor's rules change and the whole ruleset is compiled again and
    /// swapped, as a reload (states stay).
    fn load_anchor(&mut self, name: &str, text: Option<(String, String)>) -> Result<Value, String> {
        if name.is_empty() || name.starts_with('_') {
            return Err(format!(
                "anchor name '{name}': names beginning with '_' are reserved"
            ));
        }
        let (text, file) = text.unwrap_or_default();
        let source = AnchorSource {
            name: name.to_string(),
            text,
            file,
        };
        let Some((main, main_file, dir)) = self.sources.main.clone() else {
            // No main ruleset (flushed): no anchor rule can call it yet.
            self.sources.anchors.insert(name.to_string(), source);
            return Ok(to_value(&Loaded {
                rules: self.rules.load().len() as u64,
                epoch: 0,
                notes: vec![
                    "no main ruleset is loaded: the anchor is kept for the next one".into(),
                ],
            }));
        };
        let mut anchors = self.sources.anchors.clone();
        anchors.insert(name.to_string(), source);
        let list: Vec<AnchorSource> = anchors.values().cloned().collect();
        let ruleset = self.compile(&main, &main_file, dir.clone(), &list)?;
        self.sources.anchors = anchors;
        self.publish(ruleset, &format!("anchor {name}"))
    }

    fn compile(
        &self,
        text: &str,
        file: &str,
        dir: Option<std::path::PathBuf>,
        anchors: &[AnchorSource],
    ) -> Result<Ruleset, String> {
        let files = FsFiles { base: dir };
        crate::rule_env::RuleNames::of(self.config)
            .with_env(|env| Ruleset::compile_with(text, file, env, &files, anchors))
            .map_err(|errors| {
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
    }

    fn load_rules(
        &mut self,
        text: &str,
        file: &str,
        dir: Option<std::path::PathBuf>,
    ) -> Result<Value, String> {
        let anchors: Vec<AnchorSource> = self.sources.anchors.values().cloned().collect();
        let ruleset = self.compile(text, file, dir.clone(), &anchors)?;
        self.sources.main = Some((text.to_string(), file.to_string(), dir));
        self.publish(ruleset, file)
    }

    fn publish(&mut self, ruleset: Ruleset, file: &str) -> Result<Value, String> {
        check_mode(self.config, &ruleset)?;
        let old_limit = self.rules.load().options.limit_states;
        let mut notes = Vec::new();
        if ruleset.options.limit_states != old_limit {
            notes.push(format!(
                "set limit states {} takes effect at the next start (state tables are sized at start; now {old_limit})",
                ruleset.options.limit_states
            ));
        }
        notes.extend(self.shard_sizes.reload_note(&ruleset));
        let old_frags = self.rules.load().options.limit_frags;
        if ruleset.options.limit_frags > old_frags {
            notes.push(format!(
                "set limit frags {} above {old_frags} takes effect at the next start (reassembly tables are sized at start; a lower limit holds at once)",
                ruleset.options.limit_frags
            ));
        }
        // pf's reload: tables defined without addresses keep their
        // entries, persist tables the new file does not define stay.
        ruleset.adopt_tables(Some(&self.rules.load()), unix_now());
        let rules = ruleset.len();
        let epoch = self.rules.publish(Arc::new(ruleset));
        crate::log!(
            crate::log::Level::Notice,
            "loaded {rules} rules from {file} (ruleset epoch {epoch})"
        );
        Ok(to_value(&Loaded {
            rules: rules as u64,
            epoch,
            notes,
        }))
    }
}

/// What a ruleset asks that the configuration cannot do: `route-to` /
/// `reply-to` on a bridge (it forwards to the paired port, there is no
/// next hop to choose), `log` without a `[log]` file.
pub fn check_mode(config: &crate::config::Config, ruleset: &Ruleset) -> Result<(), String> {
    if config.mode != crate::config::Mode::Router && ruleset.has_routes() {
        return Err(
            "route-to / reply-to need router mode ([dataplane] mode = \"router\"); a bridge forwards to the paired port"
                .into(),
        );
    }
    if config.log.is_none() && ruleset.logs() {
        return Err(
            "log rules need a pflog file: [log] file = \"/var/log/dpf/pflog\" in dpf.toml".into(),
        );
    }
    Ok(())
}

impl Control<'_> {
    /// `-s Sources`: read from the shared table (no worker is asked).
    fn show_sources(&self) -> Value {
        let now_s = dataplane::state::entry::secs_of_instant((self.now)());
        let rules = self.rules.load();
        let mut list: Vec<SourceEntry> = self
            .src_nodes
            .nodes()
            .into_iter()
            .map(|n| SourceEntry {
                address: n.key.addr.to_ip(n.key.af).to_string(),
                af: match n.key.af {
                    Af::Inet => "inet".into(),
                    Af::Inet6 => "inet6".into(),
                },
                states: n.states,
                connections: n.conn,
                rate: n.rate_count,
                rate_seconds: n.rate_secs,
                age: u64::from(now_s.saturating_sub(n.creation_s)),
                expires_in: (n.states == 0).then(|| u64::from(n.expire_s.saturating_sub(now_s))),
                rule: (n.key.scope != dataplane::srcnodes::GLOBAL_SCOPE)
                    .then(|| rules.rule_of_tag(n.key.scope))
                    .flatten(),
            })
            .collect();
        list.sort_by(|a, b| (a.af.as_str(), &a.address).cmp(&(b.af.as_str(), &b.address)));
        to_value(&list)
    }

    fn show_tables(&self) -> Value {
        let set = self.rules.load().table_set();
        let list: Vec<TableInfo> = set
            .iter()
            .map(|t| TableInfo {
                name: t.name().to_string(),
                flags: t.flags().letters(),
                addresses: t.len() as u64,
                cleared: t.cleared(),
            })
            .collect();
        to_value(&list)
    }

    fn flush_tables(&mut self) -> Result<Value, String> {
        let rules = self.rules.load();
        let (set, deleted) = rules.table_set().flushed();
        rules.publish_tables(set).map_err(|e| e.to_string())?;
        crate::log!(
            crate::log::Level::Notice,
            "tables flushed: {deleted} deleted"
        );
        Ok(to_value(&TablesFlushed { deleted }))
    }

    fn table_test(&self, name: &str, addresses: &[String]) -> Result<Value, String> {
        let set = self.rules.load().table_set();
        let (_, t) = set
            .find(name)
            .ok_or_else(|| format!("table <{name}> does not exist"))?;
        let mut out = TableTested::default();
        for a in addresses {
            let addr = parse_table_addr(a)?;
            if !addr.is_host() || addr.negated {
                return Err(format!("{a}: -T test takes addresses, not networks"));
            }
            let leaf = t.lookup(addr.af, addr.net);
            let entry = (!leaf.is_none()).then(|| {
                TableAddr::new(addr.af, addr.net, leaf.prefix_len(), leaf.negated()).to_string()
            });
            out.given += 1;
            out.matched += u64::from(leaf.matches());
            out.results.push(TableTestResult {
                address: a.clone(),
                matched: leaf.matches(),
                entry,
            });
        }
        Ok(to_value(&out))
    }

    /// A `-T` change: built here on the control thread, published to the
    /// workers as a whole new table (they take it between bursts).
    fn table_change(
        &mut self,
        name: &str,
        op: &TableOp,
        addresses: &[String],
    ) -> Result<Value, String> {
        check_table_name(name).map_err(|e| e.to_string())?;
        let takes_addresses = matches!(op, TableOp::Add | TableOp::Delete | TableOp::Replace);
        if !takes_addresses && !addresses.is_empty() {
            return Err("this -T command takes no addresses".into());
        }
        let addrs = addresses
            .iter()
            .map(|a| parse_table_addr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let change = match op {
            TableOp::Add => TableChange::Add(addrs.clone()),
            TableOp::Delete => TableChange::Delete(addrs.clone()),
            TableOp::Replace => TableChange::Replace(addrs.clone()),
            TableOp::Flush => TableChange::Flush,
            TableOp::Expire { seconds } => TableChange::Expire { secs: *seconds },
            TableOp::Zero => TableChange::Zero,
        };
        let now = unix_now();
        let rules = self.rules.load();
        let set = rules.table_set();
        let (new_set, counts, created) = match set.find(name) {
            Some((i, t)) => {
                let (nt, c) = t.apply(&change, now).map_err(|e| e.to_string())?;
                (set.with_table(i, nt), c, false)
            }
            // pfctl creates the table (persist) for add and replace.
            None if matches!(op, TableOp::Add | TableOp::Replace) => {
                let flags = TableFlags {
                    persist: true,
                    ..TableFlags::default()
                };
                let t = Table::new(name.to_string(), flags, &addrs, now);
                let counts = dataplane::rules::table::ChangeCounts {
                    given: t.len() as u64,
                    added: t.len() as u64,
                    ..Default::default()
                };
                (set.with_new_table(t), counts, true)
            }
            None => return Err(format!("table <{name}> does not exist")),
        };
        rules.publish_tables(new_set).map_err(|e| e.to_string())?;
        crate::log!(
            crate::log::Level::Info,
            "table <{name}>: {op:?}: {} added, {} deleted, {} changed{}",
            counts.added,
            counts.deleted,
            counts.changed,
            if created { " (created)" } else { "" }
        );
        Ok(to_value(&TableChanged {
            table: name.to_string(),
            created,
            given: counts.given,
            added: counts.added,
            deleted: counts.deleted,
            changed: counts.changed,
            conflicts: counts.conflicts,
        }))
    }
}

/// Unix seconds now (table entries' times, as pf's `time_second`).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `-s labels`: the rules' counters summed per label (pf's per-rule
/// lines summed over the rules one label expanded to).
fn label_entries(rules: &Ruleset, sum: &[RuleCounters]) -> Vec<LabelEntry> {
    let mut out: Vec<LabelEntry> = rules
        .labels()
        .iter()
        .map(|l| LabelEntry {
            label: l.clone(),
            ..Default::default()
        })
        .collect();
    for (i, c) in sum.iter().enumerate() {
        let Some(e) = rules.rule_label_id(i).and_then(|l| out.get_mut(l as usize)) else {
            continue;
        };
        e.evaluations += c.evaluations;
        e.packets += c.packets;
        e.bytes += c.bytes;
        e.packets_out += c.packets_out;
        e.bytes_out += c.bytes_out;
        e.packets_in += c.packets - c.packets_out;
        e.bytes_in += c.bytes - c.bytes_out;
        e.states += c.states_created;
    }
    out
}

/// `ID[/CREATORID]` of `-k id` (pfctl's form), hex; the creator id is this
/// box's when not given.
fn parse_state_id(id: &str, creatorid: Option<&str>, own: u32) -> Result<StateFilter, String> {
    let (id, inline) = match id.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (id, None),
    };
    let id = u64::from_str_radix(id, 16).map_err(|_| format!("'{id}' is not a state id (hex)"))?;
    let creatorid = match inline.or(creatorid) {
        None => own,
        Some(c) => {
            u32::from_str_radix(c, 16).map_err(|_| format!("'{c}' is not a creator id (hex)"))?
        }
    };
    Ok(StateFilter::Id { id, creatorid })
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
fn peer_window(p: &dataplane::state::Peer) -> PeerWindow {
    let (seqlo, seqhi, max_win, wscale) = (p.seqlo, p.seqhi, p.max_win, p.wscale);
    PeerWindow {
        seqlo,
        seqhi,
        max_win,
        wscale: wscale & 0x0f,
    }
}

fn state_entry(
    st: &State,
    tr: &dataplane::state::Translation,
    now: Instant,
    timeouts: &dataplane::timeouts::Timeouts,
    scale: dataplane::timeouts::TimeoutScale,
    ifnames: &[&str],
) -> StateEntry {
    let key = st.key();
    let af = key.family();
    let (src, sport) = st.src_endpoint();
    let (dst, dport) = st.dst_endpoint();
    let (src_state, dst_state) = (st.src.state, st.dst.state);
    StateEntry {
        id: format!("{:016x}", st.id()),
        creatorid: format!("{:08x}", st.creatorid()),
        proto: proto_name(key.proto),
        af: if af == Af::Inet { "inet" } else { "inet6" }.to_string(),
        interface: ifnames
            .get(st.ifindex.0 as usize)
            .copied()
            .unwrap_or("all")
            .to_string(),
        direction: match st.direction {
            dataplane::flow::Direction::In => "in",
            dataplane::flow::Direction::Out => "out",
        }
        .to_string(),
        src: src.to_ip(af).to_string(),
        sport,
        dst: dst.to_ip(af).to_string(),
        dport,
        src_state: peer_state_name(key.proto, src_state).to_string(),
        dst_state: peer_state_name(key.proto, dst_state).to_string(),
        src_window: peer_window(&st.src),
        dst_window: peer_window(&st.dst),
        timeout: st.timeout.name().to_string(),
        age_s: st.age_s(now).into(),
        expires_in_s: st.expire_in_s_scaled(now, timeouts, scale).into(),
        packets: [st.packets(0), st.packets(1)],
        bytes: [st.bytes(0), st.bytes(1)],
        rule: (st.rule != dataplane::state::NO_RULE).then_some(st.rule),
        route: match tr.route.kind {
            dataplane::state::route_kind::NONE => None,
            kind => {
                let word = if kind == dataplane::state::route_kind::REPLY_TO {
                    "reply-to"
                } else {
                    "route-to"
                };
                let port = ifnames
                    .get(tr.route.port as usize)
                    .map(|n| format!(" on {n}"))
                    .unwrap_or_default();
                Some(format!("{word} {}{port}", tr.route.addr.to_ip(af)))
            }
        },
        nat: tr.is_some().then(|| {
            let ((s, sp), (d, dp)) = (tr.src_endpoint(), tr.dst_endpoint());
            crate::ctl::NatEndpoints {
                src: s.to_ip(af).to_string(),
                sport: sp,
                dst: d.to_ip(af).to_string(),
                dport: dp,
            }
        }),
    }
}
