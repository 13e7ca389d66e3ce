//! The `dpf` process: EAL and ports from the configuration, one worker per
//! EAL worker lcore, the control loop on the main lcore, and a clean stop on
//! SIGINT/SIGTERM (workers stop, ports stop and close, stats are printed,
//! EAL is cleaned up). This module holds what the phases share (the
//! configuration's pipeline, routing and port setup); the phases of a run
//! are in `running` (setup, control rounds, stop), the control plane's
//! engines in `engines`, the injection queue in `inject`, link state in
//! `links`, and `--replay` in `replay`.

use crate::carp::engine::Carp;
use crate::config::{Config, Device, Mode};
use crate::ctl::handler::Control;
use crate::ctl::server::Server;
use crate::log::Level;
use crate::pfsync::engine::{Sync, SyncSetup};
use crate::preload;
use crate::slowpath::SlowPath;
use anyhow::{bail, Context, Result};
use dataplane::command::command_channel;
use dataplane::counters::{DropReason, SharedCounters, SLOW_CLASSES};
use dataplane::dpdk::MbufRing;
use dataplane::dpdk::{self, Eal, Mempool, Port, PortConfig, PortId};
use dataplane::flow::{set_hash_secret, Addr, HASH_SECRET_WORDS};
use dataplane::pipeline::{Pipeline, PipelineConfig};
use dataplane::ring::{self, Consumer};
use dataplane::route::{
    IfAddr, Interface, Neighbor, NeighborEntry, Neighbors, Prefix, ResolveRequest, Route, Routing,
    Vip, VipTable,
};
use dataplane::rules::{RuleError, Ruleset};
use dataplane::snapshot::Snapshot;
use dataplane::state::Shard;
use dataplane::worker::{Handoff, TscClock, Worker};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod engines;
mod inject;
mod links;
mod replay;
mod running;

pub use replay::{replay, ReplayOptions};

/// Options of one run that are not in the configuration file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Exit once no packet has been received for this long (pcap batch mode).
    pub exit_when_idle: Option<Duration>,
    /// Print the final statistics as JSON instead of text.
    pub json_stats: bool,
    /// Print a JSON line of counter totals this often (for the bench harness).
    pub stats_every: Option<Duration>,
    /// Process this pcapng before the workers start (packet interface id =
    /// port index); builds states for benchmarks and tests.
    pub preload: Option<std::path::PathBuf>,
    /// pfsync creator id of this box (random when not set).
    pub creatorid: Option<u32>,
    /// Write a line per pfsync state message sent or received here (for
    /// the sync benchmark; see [`crate::pfsync::engine`]).
    pub sync_trace: Option<std::path::PathBuf>,
}

/// Handoff ring capacity between two workers (packets).
const HANDOFF_RING: usize = 1024;

/// pfsync export / import ring per worker (records).
const SYNC_RING: usize = 16384;

/// Alias message ring between two workers (translated states).
const ALIAS_RING: usize = 4096;

/// Slow-path ring (workers -> control), mbufs.
const SLOW_RING: u32 = 4095;
/// Injection ring (control -> worker 0), mbufs.
const INJECT_RING: u32 = 1023;
/// Resolve requests per worker.
const RESOLVE_RING: usize = 256;
/// `overload <table>` events per worker not yet taken by the control
/// thread (a full ring loses the event, counted; the state is refused).
const OVERLOAD_RING: usize = 1024;

/// Frames the control thread takes from each slow-path ring per round
/// ([`Punt::class`] order: CARP, pfsync, ARP and ND, the rest). A round
/// is bounded, so CARP's timers are served every round whatever arrives.
const SLOW_BUDGETS: [usize; SLOW_CLASSES] = [1024, 1024, 512, 256];

/// The control loop's pause when the last round had nothing to do.
const IDLE_TICK: Duration = Duration::from_millis(1);
/// The pause after a round that received or sent frames (pfsync batches
/// go out and come in sooner under load), and for [`ACTIVE_HOLD`] after it.
const BUSY_TICK: Duration = Duration::from_micros(100);
/// How long the loop keeps the [`BUSY_TICK`] pause after a busy round: a
/// stream of new states leaves rounds with nothing to do between its
/// packets, and falling back to [`IDLE_TICK`] there would add up to 1 ms
/// to the next packet's latency on each box.
const ACTIVE_HOLD: Duration = Duration::from_millis(20);

/// The control thread's nice value. CARP's deadlines, pfsync and the slow
/// path run on it; where its core is shared (with busy-polling workers on a
/// small box, or with other processes) they must not wait a scheduler slice
/// behind them. The workers, created before it is raised, keep 0.
pub const CONTROL_NICE: i32 = -10;

/// Raises the calling (control) thread to [`CONTROL_NICE`]; on Linux a
/// nice value is the thread's own. Without the privilege (CAP_SYS_NICE)
/// dpf runs on at 0 and says so.
fn raise_control_priority() {
    // SAFETY: gettid has no preconditions; setpriority changes only the
    // scheduling priority of this thread.
    let r = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS as _,
            libc::gettid() as libc::id_t,
            CONTROL_NICE,
        )
    };
    if r != 0 {
        crate::log!(
            Level::Warning,
            "control thread priority not raised to nice {CONTROL_NICE}: {}; CARP and pfsync may wait behind other work on its core",
            std::io::Error::last_os_error()
        );
    }
}

/// A control round this late (the process was stopped or starved) makes a
/// pfsync box step down and resync its table before it is MASTER again.
const STALL_STEP_DOWN: Duration = Duration::from_secs(3);

/// A control round this late (but under [`STALL_STEP_DOWN`]) makes a
/// pfsync box ask for a bulk update: the peer's sync port stops waiting
/// for a receiver after [`dataplane::local_tx::STALE_NS`] and drops what
/// it sends until the receiver reads again.
const STALL_RESYNC: Duration = Duration::from_nanos(dataplane::local_tx::STALE_NS);

/// How often the control thread polls the ports' link state for CARP.
const LINK_POLL: Duration = Duration::from_millis(100);

/// Reply ring capacity of a worker's command port (states per poll).
const COMMAND_REPLY_RING: usize = 8192;

/// Keys the flow hash with words from the OS RNG (`getrandom`), so
/// colliding 5-tuples cannot be computed offline. Called at start, before
/// any shard exists and before the workers run; a box that cannot get
/// randomness does not start (fail closed).
fn seed_flow_hash() -> Result<()> {
    use rand::RngCore;
    let mut bytes = [0u8; 8 * HASH_SECRET_WORDS];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("reading the flow hash key from the OS RNG")?;
    let mut words = [0u64; HASH_SECRET_WORDS];
    for (w, b) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut le = [0u8; 8];
        le.copy_from_slice(b);
        *w = u64::from_le_bytes(le);
    }
    set_hash_secret(words);
    Ok(())
}

fn random_creatorid() -> u32 {
    loop {
        let id: u32 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// Compiles the configuration's ruleset (an empty ruleset passes
/// everything without state, as pf does with no rules); every error of
/// the file, in order.
pub fn load_ruleset(config: &Config) -> Result<Ruleset, Vec<RuleError>> {
    let names = crate::rule_env::RuleNames::of(config);
    let ruleset = names.with_env(|env| match &config.rules {
        None => Ruleset::compile_all("", "(none)", env),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                vec![RuleError {
                    file: path.display().to_string(),
                    line: 0,
                    col: 0,
                    msg: format!("cannot read rules: {e}"),
                }]
            })?;
            Ruleset::compile_all(&text, &path.display().to_string(), env)
        }
    })?;
    if let Err(msg) = crate::ctl::handler::check_mode(config, &ruleset) {
        return Err(vec![RuleError {
            file: config
                .rules
                .as_ref()
                .map_or("(none)".to_string(), |p| p.display().to_string()),
            line: 0,
            col: 0,
            msg,
        }]);
    }
    // Table entries are stamped now (for `-T expire`).
    ruleset.adopt_tables(None, crate::ctl::handler::unix_now());
    Ok(ruleset)
}

/// The size of each worker's state table, fixed at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSizes {
    /// States per worker ([`shard_capacity`]).
    pub states: usize,
    /// Side records per worker: states that may translate, route or scrub.
    pub records: usize,
    /// Workers.
    pub workers: usize,
}

impl ShardSizes {
    /// A ruleset that can make side records ([`Ruleset::makes_side_records`])
    /// gets one per state, as any state may need one; another gets
    /// [`dataplane::state::table::SPARE_RECORDS`] of them (pfsync imports from a peer
    /// that translates, a reload that adds a few such rules). A reload
    /// cannot grow them: the tables are sized once, at start.
    pub fn for_ruleset(ruleset: &Ruleset, workers: usize) -> ShardSizes {
        let states = shard_capacity(ruleset.options.limit_states, workers);
        let records =
            dataplane::state::table::side_records_for(ruleset.makes_side_records(), states);
        ShardSizes {
            states,
            records,
            workers: workers.max(1),
        }
    }

    /// One worker's state table.
    pub fn shard(&self, worker: usize) -> Result<Shard> {
        Shard::with_records(self.states, self.records, worker as u8)
            .map_err(|e| anyhow::anyhow!("state table of worker {worker}: {e}"))
    }

    /// Bytes of every worker's state table.
    pub fn bytes(&self) -> u64 {
        (Shard::memory_bytes_for(self.states, self.records) * self.workers) as u64
    }

    /// What a reload of `ruleset` should be told: its rules make side
    /// records that the tables sized at start hold only a few of.
    pub fn reload_note(&self, ruleset: &Ruleset) -> Option<String> {
        (ruleset.makes_side_records() && self.records < self.states).then(|| {
            format!(
                "the ruleset translates, routes or scrubs, but the state tables were sized at start for a ruleset that did not: {} of each worker's {} states may translate, route or scrub until the next start (more are dropped as side-records-full)",
                self.records, self.states
            )
        })
    }
}

/// States per worker shard for `set limit states` over `workers`: flows
/// spread evenly by hash, plus 1/4 slack, and never more than the limit
/// itself (the limit holds for the whole box, counted across workers; a
/// small limit lets one shard hold all of it).
fn shard_capacity(limit_states: u32, workers: usize) -> usize {
    let limit = (limit_states as usize).max(1);
    let even = limit.div_ceil(workers.max(1));
    (even + even / 4).max(1024).min(limit)
}

/// Fragments each worker's reassembly table can hold: `set limit frags`
/// over the workers (fragments spread evenly by the keyed hash), and at
/// most a quarter of the packet buffers (each held fragment is one: the
/// rx rings must keep theirs), at least one datagram's worth.
pub(crate) fn frag_capacity(limit_frags: u32, workers: usize, mbufs: u32) -> usize {
    let workers = workers.max(1);
    let by_limit = (limit_frags as usize).div_ceil(workers);
    let by_pool = mbufs as usize / 4 / workers;
    by_limit
        .min(by_pool)
        .max(dataplane::frag::FRAGS_PER_DATAGRAM)
}

/// The pipeline configuration shared by every worker (each sets its own
/// index): worker count, creatorid and the wire-mode pairs.
fn pipeline_config(config: &Config, workers: usize, creatorid: u32) -> PipelineConfig {
    let mut cfg = PipelineConfig {
        workers,
        creatorid,
        ..PipelineConfig::default()
    };
    let mut types = dataplane::pipeline::EtherTypeSet::none();
    for &t in &config.pass_ethertypes {
        // The configuration holds at most EtherTypeSet::MAX of them.
        let _ = types.insert(t);
    }
    cfg.pass_ethertypes = types;
    cfg.syncdev = config.pfsync.as_ref().map(|p| p.syncdev as u16);
    for &(a, b) in &config.wire_pairs {
        cfg.pair(a as u16, b as u16);
    }
    cfg
}

/// Router-mode tables from the configuration; `macs` are the ports' MACs
/// (a port's configured `mac` wins).
pub fn build_routing(config: &Config, macs: &[[u8; 6]]) -> (Routing, Vec<NeighborEntry>) {
    let interfaces = config
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| Interface {
            name: p.name.clone(),
            mac: p.mac.unwrap_or(macs.get(i).copied().unwrap_or([0; 6])),
            mtu: p.mtu,
            addrs: p
                .addresses
                .iter()
                .map(|(ip, len)| {
                    let (af, addr) = Addr::from_ip(*ip);
                    IfAddr {
                        addr,
                        prefix: Prefix::new(af, addr, *len),
                    }
                })
                .collect(),
        })
        .collect();
    let routes = config
        .routes
        .iter()
        .map(|r| {
            let (af, net) = Addr::from_ip(r.to.0);
            Route {
                prefix: Prefix::new(af, net, r.to.1),
                port: r.port as u16,
                via: r.via.map(|v| Addr::from_ip(v).1),
            }
        })
        .collect();
    let statics = config
        .neighbors
        .iter()
        .map(|n| {
            (
                Addr::from_ip(n.ip),
                Neighbor {
                    mac: n.mac,
                    port: n.port as u16,
                },
            )
        })
        .collect();
    let vips = config
        .carp
        .iter()
        .flat_map(|c| {
            c.all_addresses().map(move |ip| {
                let (af, addr) = Addr::from_ip(ip);
                Vip {
                    af,
                    addr,
                    port: c.carpdev as u16,
                    vhid: c.vhid,
                }
            })
        })
        .collect();
    let vips = Arc::new(VipTable::new(vips, config.ports.len()));
    (Routing::new(interfaces, routes).with_vips(vips), statics)
}

/// Runs dpf until a signal (or idleness) stops it. Returns the exit code.
pub fn run(config: Config, ruleset: Ruleset, opts: RunOptions) -> Result<i32> {
    // Before the shards, `--preload` and the workers.
    seed_flow_hash()?;
    let stop_signal = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop_signal))
            .context("installing signal handlers")?;
    }

    let mut eal_args = vec!["dpf".to_string()];
    eal_args.extend(config.eal_args.iter().cloned());
    if !config.has_pci() && !eal_args.iter().any(|a| a == "--no-pci") {
        eal_args.push("--no-pci".into());
    }
    for p in &config.ports {
        if let Device::Pci(addr) = &p.device {
            eal_args.push("-a".into());
            eal_args.push(addr.clone());
        }
    }
    let eal = Eal::init(&eal_args).context("starting DPDK EAL")?;
    let result = run_with_eal(&config, ruleset, &opts, &stop_signal);
    drop(eal);
    result
}

/// Configures and starts every port of the configuration (one rx and one
/// tx queue per worker), in configuration order = DPDK port id order.
fn open_ports(config: &Config, workers: usize, pool: &Mempool) -> Result<Vec<Port>> {
    let mut ports: Vec<Port> = Vec::new();
    for spec in &config.ports {
        let id = match &spec.device {
            Device::Vdev(devargs) => Port::create_vdev(devargs),
            Device::Pci(addr) => Port::find(addr),
        }
        .with_context(|| format!("port {}", spec.name))?;
        let (max_rx, max_tx) =
            Port::max_queues(id).with_context(|| format!("port {}", spec.name))?;
        if (max_rx as usize) < workers || (max_tx as usize) < workers {
            bail!(
                "port {}: {workers} workers need {workers} rx and tx queues, the device has {max_rx} rx / {max_tx} tx (net_pcap: one rx_pcap/tx_pcap argument per queue)",
                spec.name
            );
        }
        // Exactly one rx and one tx queue per worker: queue counts must match
        // across a memif/vhost link, so the control thread transmits through
        // an injection ring that worker 0 drains instead of a queue of its own.
        let conf = PortConfig {
            rx_queues: workers as u16,
            tx_queues: workers as u16,
            rx_desc: config.rx_desc,
            tx_desc: config.tx_desc,
            promiscuous: true,
        };
        let port =
            Port::configure(id, &conf, pool).with_context(|| format!("port {}", spec.name))?;
        ports.push(port);
    }
    let port_ids: Vec<PortId> = ports.iter().map(|p| p.id()).collect();
    // The pipeline speaks in interface indexes; DPDK port ids are assigned
    // in creation order, which equals configuration order here.
    for (i, id) in port_ids.iter().enumerate() {
        if id.0 as usize != i {
            bail!(
                "port {} got DPDK port id {} (expected {i}); remove other DPDK devices",
                config.ports[i].name,
                id.0
            );
        }
    }
    for (port, spec) in ports.iter_mut().zip(&config.ports) {
        port.start()
            .with_context(|| format!("port {}", spec.name))?;
        let mac = port.mac();
        crate::log!(
            Level::Info,
            "port {} up: {} driver {} mac {}",
            spec.name,
            port.id().0,
            port.driver(),
            dataplane::wire::EthernetAddress(mac)
        );
    }

    Ok(ports)
}

/// Builds the box, runs the control loop, stops (see [`running`]).
fn run_with_eal(
    config: &Config,
    ruleset: Ruleset,
    opts: &RunOptions,
    stop_signal: &AtomicBool,
) -> Result<i32> {
    let mut daemon = running::Daemon::start(config, ruleset, opts)?;
    // After the workers and helper threads exist: they keep nice 0.
    raise_control_priority();
    daemon.control_loop(config, opts, stop_signal);
    Ok(daemon.stop(config, opts))
}

fn print_stats(
    config: &Config,
    ports: &[Port],
    shared: &SharedCounters,
    elapsed: Duration,
    json: bool,
    hz: u64,
) {
    let total = shared.total();
    if json {
        let ports_json: Vec<_> = ports
            .iter()
            .zip(&config.ports)
            .map(|(p, s)| serde_json::json!({ "name": s.name, "stats": p.stats() }))
            .collect();
        let mut v = crate::counters_json::totals(shared, elapsed, hz);
        v["ports"] = ports_json.into();
        v["final"] = true.into();
        println!("{v}");
        return;
    }
    println!(
        "dpf: ran {:.3} s; rx {} tx {} forwarded {} dropped {}",
        elapsed.as_secs_f64(),
        total.rx,
        total.tx,
        total.forwarded,
        total.total_drops()
    );
    for (p, s) in ports.iter().zip(&config.ports) {
        let st = p.stats();
        println!(
            "  {:<8} ipackets {:>12} opackets {:>12} imissed {:>8} ierrors {:>6} oerrors {:>6}",
            s.name, st.ipackets, st.opackets, st.imissed, st.ierrors, st.oerrors
        );
    }
    for r in DropReason::ALL {
        let n = total.drops[*r as usize];
        if n > 0 {
            println!("  drop {:<22} {n:>12}", r.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::flow::IfIndex;
    use dataplane::rules::RuleEnv;

    fn compiled(text: &str) -> Ruleset {
        let ifs = [("lan0", IfIndex(0)), ("wan0", IfIndex(1))];
        let env = RuleEnv {
            interfaces: &ifs,
            self_addrs: &[],
            names: &[],
        };
        Ruleset::compile(text, "t.conf", &env).unwrap()
    }

    #[test]
    fn tables_get_a_side_record_per_state_only_for_rules_that_need_them() {
        let limit = "set limit states 160000\n";
        for (rules, needs) in [
            ("pass all\n", false),
            ("block all\npass in on lan0 proto tcp keep state\n", false),
            ("match in all scrub (no-df random-id)\npass all\n", false),
            ("pass out on wan0 nat-to 192.0.2.1\n", true),
            ("match out on wan0 nat-to 192.0.2.1\npass all\n", true),
            (
                "pass in on wan0 proto tcp to port 80 rdr-to 10.0.0.5\n",
                true,
            ),
            ("pass out on wan0 from 10.0.0.9 binat-to 192.0.2.9\n", true),
            ("pass in on lan0 route-to (wan0 192.0.2.254)\n", true),
            ("pass in on lan0 reply-to (lan0 10.0.0.254)\n", true),
            ("match in all scrub (max-mss 1400)\npass all\n", true),
            ("match in all scrub (min-ttl 10)\npass all\n", true),
            ("match in all set tos lowdelay\npass all\n", true),
            (
                "anchor \"inner\" {\n pass out on wan0 nat-to 192.0.2.1\n}\npass all\n",
                true,
            ),
            // Filled at run time (relayd, ftp-proxy), or by `dpfctl -f`.
            ("anchor \"relayd/*\"\npass all\n", true),
            ("", true),
        ] {
            let r = compiled(&format!("{limit}{rules}"));
            let sizes = ShardSizes::for_ruleset(&r, 2);
            // 80 000 per worker, plus a quarter.
            assert_eq!(sizes.states, 100_000, "{rules}");
            let want = if needs {
                100_000
            } else {
                100_000usize.div_ceil(32)
            };
            assert_eq!(sizes.records, want, "{rules}");
            assert_eq!(
                sizes.bytes(),
                2 * Shard::memory_bytes_for(100_000, want) as u64
            );
            let per_state = sizes.bytes() / 200_000;
            assert!(
                per_state <= if needs { 231 } else { 156 },
                "{rules}: {per_state}"
            );
        }
    }

    #[test]
    fn a_reload_that_needs_more_side_records_than_the_tables_have_is_told() {
        let plain = ShardSizes::for_ruleset(&compiled("pass all\n"), 1);
        let nat = compiled("pass out on wan0 nat-to 192.0.2.1\n");
        let note = plain.reload_note(&nat).expect("a note");
        assert!(note.contains("side-records-full"), "{note}");
        assert!(note.contains("next start"), "{note}");
        assert_eq!(plain.reload_note(&compiled("block all\n")), None);
        let sized = ShardSizes::for_ruleset(&nat, 1);
        assert_eq!(sized.reload_note(&nat), None);
    }
}
