//! The `dpf` process: EAL and ports from the configuration, one worker per
//! EAL worker lcore, the control loop on the main lcore, and a clean stop on
//! SIGINT/SIGTERM (workers stop, ports stop and close, stats are printed,
//! EAL is cleaned up).

use crate::carp::engine::Carp;
use crate::config::{Config, Device, Mode};
use crate::ctl::handler::Control;
use crate::ctl::server::Server;
use crate::log::Level;
use crate::pfsync::engine::{Sync, SyncSetup, BULK_DEMOTE};
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

use engines::Engines;

use inject::{InjectQueue, MBUF_DATA_ROOM};
use links::{gateways, link_up};
pub use replay::replay;

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
/// ([`Punt::class`] order: CARP and pfsync, ARP and ND, the rest). A round
/// is bounded, so CARP's timers are served every round whatever arrives.
const SLOW_BUDGETS: [usize; SLOW_CLASSES] = [1024, 512, 256];

/// The control loop's pause when the last round had nothing to do.
const IDLE_TICK: Duration = Duration::from_millis(1);
/// The pause after a round that received or sent frames (pfsync batches
/// go out and come in sooner under load).
const BUSY_TICK: Duration = Duration::from_micros(100);

/// A control round this late (the process was stopped or starved) makes a
/// pfsync box step down and resync its table before it is MASTER again.
const STALL_STEP_DOWN: Duration = Duration::from_secs(3);

/// How often the control thread polls the ports' link state for CARP.
const LINK_POLL: Duration = Duration::from_millis(100);

/// Every state of every worker, through their command rings (for a pfsync
/// bulk update); `None` when a worker did not answer in full (logged): a
/// bulk update must never end (BUS end) on a partial table, the peer asks
/// again (every 2 s, 12 times).
fn list_states(
    clients: &mut [dataplane::command::CommandClient],
) -> Option<Vec<(dataplane::state::State, dataplane::state::Translation)>> {
    use dataplane::command::{Command, Reply};
    let mut states = Vec::new();
    let r = crate::ctl::handler::ask_workers(clients, Command::ListStates, |r| {
        if let Reply::State(st, tr) = r {
            states.push((st, tr));
        }
    });
    match r {
        Ok(()) => Some(states),
        Err(e) => {
            crate::log!(
                Level::Warning,
                "pfsync bulk update not sent ({} states collected): {e}",
                states.len()
            );
            None
        }
    }
}

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

fn run_with_eal(
    config: &Config,
    ruleset: Ruleset,
    opts: &RunOptions,
    stop_signal: &AtomicBool,
) -> Result<i32> {
    let lcores = dpdk::worker_lcores();
    if lcores.is_empty() {
        bail!("EAL has no worker lcore: give at least two lcores (e.g. -l 0,1)");
    }
    let workers = lcores.len();
    let pool = Mempool::new("dpf_pool", config.mbufs, 256, MBUF_DATA_ROOM as u16 + 128)
        .context("creating the packet pool")?;

    let mut ports = open_ports(config, workers, &pool)?;
    let port_ids: Vec<PortId> = ports.iter().map(|p| p.id()).collect();

    let mut pcfg = pipeline_config(
        config,
        workers,
        opts.creatorid.unwrap_or_else(random_creatorid),
    );
    pcfg.frag_capacity = frag_capacity(ruleset.options.limit_frags, workers, config.mbufs);
    // Source nodes: one table for every worker, sized at start.
    pcfg.sources = Arc::new(dataplane::srcnodes::SourceTable::new(
        ruleset.options.limit_src_nodes,
    ));
    let mut overload_rings = Vec::with_capacity(workers);
    let mut pflog_rings = Vec::with_capacity(workers);
    let per_shard = shard_capacity(ruleset.options.limit_states, workers);
    let rules = Arc::new(Snapshot::new(Arc::new(ruleset)));
    let mut rule_sources = crate::ctl::handler::RuleSources::of(config);
    let shared = Arc::new(SharedCounters::new(workers));
    // Memory of every worker's state table, allocated once at start.
    let state_table_bytes = (Shard::memory_bytes_for(per_shard) * workers) as u64;
    let stop_workers = Arc::new(AtomicBool::new(false));
    let hz = dpdk::tsc_hz();
    let drain_ticks = hz / 1_000_000 * config.tx_drain_us as u64;
    let clock = TscClock::new(hz);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Handoff rings: one SPSC ring for every ordered pair of workers.
    let (outs, ins) = ring::mesh::<Handoff>(workers, HANDOFF_RING);
    // Alias rings (translated states whose far key hashes to another
    // worker), the same mesh.
    let (alias_outs, alias_ins) = ring::mesh::<dataplane::alias::AliasMsg>(workers, ALIAS_RING);
    let mut alias_ends = alias_outs.into_iter().zip(alias_ins);
    // Router mode: tables, the slow-path ring (workers -> control), the
    // injection ring (control -> worker 0) and resolve-request rings.
    let router = config.mode == Mode::Router;
    let macs: Vec<[u8; 6]> = ports.iter().map(|p| p.mac()).collect();
    let (routing, statics) = build_routing(config, &macs);
    let routing = Arc::new(routing);
    let neighbors = Arc::new(Snapshot::new(Arc::new(Neighbors::new(
        statics.iter().copied(),
    ))));
    let slowpath = SlowPath::new(Arc::clone(&routing), &statics)
        .with_neighbor_limit(config.neighbor_limit)
        .with_gateways(gateways(config));
    let carp = (!config.carp.is_empty()).then(|| {
        Carp::new(
            &config.carp,
            config.sysctl,
            Arc::clone(&routing),
            Arc::clone(&routing.vips),
        )
    });
    // One slow-path ring per class (CARP and pfsync; ARP and ND; the
    // rest), served in that order with a budget each.
    let mut slow_rings: [Option<Arc<MbufRing>>; SLOW_CLASSES] = [None, None, None];
    if router {
        for (class, ring) in slow_rings.iter_mut().enumerate() {
            *ring = Some(Arc::new(
                MbufRing::new(&format!("dpf_slow{class}"), SLOW_RING).context("slow-path ring")?,
            ));
        }
    }
    let inject_ring = if router {
        Some(Arc::new(
            MbufRing::new("dpf_inject", INJECT_RING).context("injection ring")?,
        ))
    } else {
        None
    };
    let mut resolve_rx: Vec<Consumer<ResolveRequest>> = Vec::new();
    let mut sync_exports = Vec::new();
    let mut sync_imports = Vec::new();
    let mut built = Vec::new();
    let mut clients = Vec::new();
    // Without its control socket dpf cannot be operated: fatal, and before
    // any worker runs.
    let mut server: Option<Server> = Some(Server::bind(&config.socket).context("control socket")?);
    for (w, (handoff_out, handoff_in)) in outs.into_iter().zip(ins).enumerate() {
        let (port, client) = command_channel(COMMAND_REPLY_RING);
        clients.push(client);
        let mut shard = Shard::new(per_shard, w as u8)
            .map_err(|e| anyhow::anyhow!("state table of worker {w}: {e}"))?;
        shard.seed_ids(seed << 24);
        let mut cfg = pcfg.clone();
        cfg.worker = w;
        let mut pipeline = Pipeline::new(cfg, rules.load(), shard);
        if let (true, Some((out, inn))) = (workers > 1, alias_ends.next()) {
            pipeline.set_aliases(out, inn, per_shard);
        }
        let (op, oc) = ring::channel(OVERLOAD_RING);
        pipeline.set_overload(op);
        overload_rings.push(oc);
        if config.log.is_some() {
            let (lp, lc) = ring::channel(crate::pflog::RING);
            pipeline.set_pflog(lp);
            pflog_rings.push(lc);
        }
        if router {
            let (p, c) = ring::channel(RESOLVE_RING);
            resolve_rx.push(c);
            pipeline.set_router(Arc::clone(&routing), neighbors.load(), Some(p));
        }
        if let Some(ps) = &config.pfsync {
            let (ep, ec) = ring::channel(SYNC_RING);
            let (ip, ic) = ring::channel(SYNC_RING);
            sync_exports.push(ec);
            sync_imports.push(ip);
            pipeline.set_sync(ep, ic, ps.maxupd);
            pipeline.set_defer(ps.defer);
        }
        built.push(Worker {
            index: w,
            ports: port_ids.clone(),
            pipeline,
            shared: Arc::clone(&shared),
            slow_path: slow_rings.clone(),
            rules: Arc::clone(&rules),
            handoff_out,
            handoff_in,
            commands: Some(port),
            neighbors: router.then(|| Arc::clone(&neighbors)),
            inject: if w == 0 { inject_ring.clone() } else { None },
            drain_ticks,
            clock,
        });
    }
    if let Some(path) = &opts.preload {
        let mut pipelines: Vec<&mut Pipeline> = built.iter_mut().map(|w| &mut w.pipeline).collect();
        let now = preload::Clock::Fixed(clock.instant(dpdk::rdtsc()));
        let n = preload::run(path, &mut pipelines, now, None, None, None, None)
            .with_context(|| format!("preloading {}", path.display()))?;
        for p in pipelines {
            // Preloading is not traffic: counters start from zero, states stay.
            let states = p.shard().len() as u64;
            p.counters = Default::default();
            p.counters.states = states;
        }
        crate::log!(
            Level::Notice,
            "preloaded {n} packets from {}",
            path.display()
        );
    }
    // The pflog logger, on a thread of its own, started after the preload
    // (whose records are not traffic: dropped).
    let stop_logger = Arc::new(AtomicBool::new(false));
    let logger = match &config.log {
        None => None,
        Some(spec) => {
            for r in pflog_rings.iter_mut() {
                while r.pop().is_some() {}
            }
            let wall_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i128);
            let offset = wall_ns - clock.instant(dpdk::rdtsc()).0 as i128;
            let file = crate::pflog::PflogFile::open(spec.clone())
                .with_context(|| format!("pflog file {}", spec.file.display()))?;
            let names = config.ports.iter().map(|p| p.name.clone()).collect();
            Some(
                crate::pflog::Logger::new(std::mem::take(&mut pflog_rings), file, names, offset)
                    .spawn(Arc::clone(&stop_logger))
                    .context("starting the pflog logger")?,
            )
        }
    };
    let mut handles = Vec::new();
    for (worker, &lcore) in built.into_iter().zip(&lcores) {
        let w = worker.index;
        let stop = Arc::clone(&stop_workers);
        let h = dpdk::launch(lcore, move || worker.run(&stop))
            .with_context(|| format!("starting worker {w}"))?;
        handles.push(h);
    }
    crate::log!(
        Level::Notice,
        "dpf running: {workers} worker(s), {} port(s), mode {:?}",
        ports.len(),
        config.mode
    );

    // The control loop: sleeps ~1 ms between rounds.
    let started = Instant::now();
    let now_fn = move || clock.instant(dpdk::rdtsc());
    let sync = match &config.pfsync {
        None => None,
        Some(ps) => {
            let dev = ps.syncdev as u16;
            let ip = routing
                .address_on(dev, dataplane::flow::Af::Inet)
                .map_or([0; 4], |a| a.v4_octets());
            let setup = SyncSetup {
                syncdev: dev,
                syncdev_name: config.ports[ps.syncdev].name.clone(),
                mac: routing.mac(dev).unwrap_or([0; 6]),
                ip,
                syncpeer: ps.syncpeer,
                mtu: config.ports[ps.syncdev].mtu,
                max_frame_len: MBUF_DATA_ROOM,
                state_limit: rules.load().options.limit_states,
                auth: ps.auth.as_deref().and_then(crate::pfsync::auth::Key::new),
                maxupd: ps.maxupd,
                defer: ps.defer,
                creatorid: pcfg.creatorid,
                ifnames: config.ports.iter().map(|p| p.name.clone()).collect(),
                timeouts: rules.load().options.timeouts,
                states_total: pcfg.states_total.clone(),
            };
            Some(
                Sync::new(
                    setup,
                    std::mem::take(&mut sync_exports),
                    std::mem::take(&mut sync_imports),
                    now_fn(),
                )
                .map_err(|e| anyhow::anyhow!(e))?,
            )
        }
    };
    let mut engines = Engines {
        carp,
        sync,
        slowpath,
    };
    if let (Some(s), Some(path)) = (engines.sync.as_mut(), opts.sync_trace.as_ref()) {
        s.set_trace(path, now_fn())
            .with_context(|| format!("--sync-trace {}", path.display()))?;
    }
    let mut overloads = crate::srcnodes::Overloads::new(overload_rings);
    let mut injectq = InjectQueue::new();
    if let Some(inject) = inject_ring.as_ref() {
        let mut out = Vec::new();
        if let Some(c) = engines.carp.as_mut() {
            for (i, p) in ports.iter().enumerate() {
                c.set_link(i as u16, link_up(config, i, p), now_fn(), &mut out);
            }
            c.start(now_fn(), &mut out);
        }
        if let Some(s) = engines.sync.as_mut() {
            // Do not become MASTER without the states (spec §5.6).
            if let Some(c) = engines.carp.as_mut() {
                let _ = c.carpdemote("carp", BULK_DEMOTE, now_fn(), &mut out);
            }
            s.request_bulk(now_fn(), &mut out);
        }
        injectq.send(out, &pool, inject);
    }
    let mut last_rx = 0u64;
    let mut last_rx_change = Instant::now();
    let mut next_link_poll = Instant::now() + LINK_POLL;
    let mut next_stats = opts.stats_every.map(|d| started + d);
    // Whether the last round received or sent anything: a busy control
    // thread (pfsync traffic, a burst of ARP) comes back sooner.
    let mut busy = false;
    let mut last_round = Instant::now();
    loop {
        // Frames waiting for the injection ring: come back as soon as
        // worker 0 can have drained some.
        if injectq.is_empty() {
            std::thread::sleep(if busy { BUSY_TICK } else { IDLE_TICK });
        } else {
            std::thread::sleep(Duration::from_micros(50));
            if let Some(inject) = inject_ring.as_ref() {
                injectq.flush(&pool, inject);
            }
        }
        if let (Some(at), Some(every)) = (next_stats, opts.stats_every) {
            if Instant::now() >= at {
                let mut v = crate::counters_json::totals(&shared, started.elapsed(), hz);
                v["state_table_bytes"] = state_table_bytes.into();
                println!("{v}");
                next_stats = Some(at + every);
            }
        }
        if stop_signal.load(Ordering::Relaxed) {
            crate::log!(Level::Notice, "signal received, stopping");
            break;
        }
        busy = false;
        // A round that comes this late means the process was stopped or
        // starved (SIGSTOP, a stalled VM): the peer has taken over and our
        // table missed its updates. Step down and resync as at start:
        // demoted until a bulk update ends, then preemption brings
        // mastership back with a table that is whole.
        let stalled = last_round.elapsed();
        last_round = Instant::now();
        if stalled >= STALL_STEP_DOWN {
            crate::log!(
                Level::Warning,
                "control thread stalled for {:.1} s: stepping down until the state table is resynced",
                stalled.as_secs_f64()
            );
            if let Some(inject) = inject_ring.as_ref() {
                let mut out = Vec::new();
                engines.step_down_after_stall(now_fn(), &mut out);
                injectq.send(out, &pool, inject);
            }
        }
        if let Some(inject) = inject_ring.as_ref() {
            let now = now_fn();
            let mut out = Vec::new();
            busy |= engines.serve_slow_rings(&slow_rings, &mut clients, now, &mut out);
            let links = (Instant::now() >= next_link_poll).then(|| {
                next_link_poll = Instant::now() + LINK_POLL;
                ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| link_up(config, i, p))
                    .collect::<Vec<bool>>()
            });
            let syncdev = config.pfsync.as_ref().map_or(0, |p| p.syncdev as u16);
            engines.poll(
                now,
                links.as_deref(),
                &neighbors.load(),
                syncdev,
                &mut resolve_rx,
                &mut out,
            );
            busy |= !out.is_empty();
            injectq.send(out, &pool, inject);
            // At most one O(n) rebuild per ~1 ms however many frames
            // changed the table (see the slowpath module doc); a change
            // held back goes out on a later round.
            if let Some(n) = engines.slowpath.take_snapshot(now) {
                neighbors.publish(Arc::new(n));
            }
        }
        // `overload <table>`: before the control socket, so a table is
        // changed and a flush sent within the round the event came in.
        busy |= overloads.poll(&rules.load(), &pcfg.sources, &mut clients);
        if let Some(srv) = server.as_mut() {
            let mut cmd_out = Vec::new();
            let mut control = Control {
                config,
                ports: &ports,
                shared: &shared,
                rules: &rules,
                workers: &mut clients,
                now: &now_fn,
                started,
                bad_requests: srv.bad_requests,
                socket: srv.stats(),
                routing: router.then_some(&*routing),
                slowpath: router.then_some(&engines.slowpath),
                carp: engines.carp.as_mut(),
                sync: engines.sync.as_mut(),
                out: &mut cmd_out,
                control_tx: (injectq.sent, injectq.dropped, injectq.len()),
                sources: &mut rule_sources,
                creatorid: pcfg.creatorid,
                src_nodes: &pcfg.sources,
            };
            srv.poll(&mut control);
            if let Some(inject) = inject_ring.as_ref() {
                injectq.send(cmd_out, &pool, inject);
            }
        }
        if let Some(c) = engines.carp.as_mut() {
            // Virtual MACs in or out of the carpdevs' filters.
            c.apply_filter_ops(|op| {
                let port = ports.get(op.port as usize).ok_or("no such port")?;
                let r = if op.add {
                    port.add_mac(op.mac)
                } else {
                    port.remove_mac(op.mac)
                };
                r.map_err(|e| e.to_string())
            });
        }
        if let Some(idle) = opts.exit_when_idle {
            let rx = shared.total().rx;
            if rx != last_rx {
                last_rx = rx;
                last_rx_change = Instant::now();
            } else if last_rx_change.elapsed() >= idle {
                crate::log!(Level::Notice, "idle for {} ms, stopping", idle.as_millis());
                break;
            }
        }
    }
    drop(server);
    stop_workers.store(true, Ordering::Relaxed);
    let mut worker_failed = false;
    for (w, h) in handles.into_iter().enumerate() {
        let rc = h.join();
        if rc != 0 {
            crate::log!(Level::Err, "worker {w} ended with {rc}");
            worker_failed = true;
        }
    }
    // Workers are done: the logger writes what they left and ends.
    stop_logger.store(true, Ordering::Release);
    if let Some(h) = logger {
        if h.join().is_err() {
            crate::log!(Level::Err, "the pflog logger panicked");
        }
    }
    let elapsed = started.elapsed();
    print_stats(config, &ports, &shared, elapsed, opts.json_stats, hz);
    for p in ports.iter_mut() {
        p.stop();
    }
    drop(ports);
    // Rings may hold mbufs: free them before their pool.
    drop(slow_rings);
    drop(inject_ring);
    drop(pool);
    Ok(if worker_failed { 1 } else { 0 })
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
