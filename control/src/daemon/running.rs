//! A running box, in three phases: [`Daemon::start`] builds everything
//! from the configuration (the packet pool and ports, one pipeline per
//! worker with its rings, the control socket, the protocol engines) and
//! launches the workers; [`Daemon::round`] is one bounded round of the
//! control loop (slow-path rings, timers, the bulk collection, source
//! tracking, the control socket, virtual MAC filters), repeated by
//! [`Daemon::control_loop`] until a signal or idleness; [`Daemon::stop`]
//! stops the workers and frees the DPDK resources in order.

use super::engines::Engines;
use super::inject::{InjectQueue, InjectRings, MBUF_DATA_ROOM};
use super::links::{gateways, link_up};
use super::*;
use crate::ctl::handler::RuleSources;
use dataplane::command::CommandClient;
use dataplane::dpdk::LaunchHandle;

/// Everything a running box holds. Fields the loop needs are here; the
/// DPDK resources come last and [`Daemon::stop`] frees them in order
/// (rings may hold mbufs: before their pool).
pub(super) struct Daemon {
    workers: usize,
    handles: Vec<LaunchHandle>,
    stop_workers: Arc<AtomicBool>,
    server: Option<Server>,
    _metrics: Option<crate::metrics::Exporter>,
    engines: Engines,
    clients: Vec<CommandClient>,
    resolve_rx: Vec<Consumer<ResolveRequest>>,
    overloads: crate::srcnodes::Overloads,
    /// With `[log]`: the pflog logger's thread and its stop flag.
    logger: Option<(
        std::thread::JoinHandle<crate::pflog::Logger>,
        Arc<AtomicBool>,
    )>,
    injectq: InjectQueue,
    rule_sources: RuleSources,
    shared: Arc<SharedCounters>,
    rules: Arc<Snapshot<Ruleset>>,
    routing: Arc<Routing>,
    neighbors: Arc<Snapshot<Neighbors>>,
    pcfg: PipelineConfig,
    clock: TscClock,
    hz: u64,
    /// Each worker's state table, sized at start.
    sizes: ShardSizes,
    started: Instant,
    router: bool,
    // The loop's clocks.
    last_rx: u64,
    last_rx_change: Instant,
    next_link_poll: Instant,
    next_stats: Option<Instant>,
    last_round: Instant,
    // DPDK resources, freed by `stop` in this order.
    ports: Vec<Port>,
    slow_rings: [Option<Arc<MbufRing>>; SLOW_CLASSES],
    inject_ring: Option<InjectRings>,
    pool: Mempool,
}

/// What a round asks of the loop.
enum RoundEnd {
    /// Go on; whether the round received or sent anything, and whether it
    /// left work behind (a budget used up: the next round comes at once).
    Continue { busy: bool, more: bool },
    /// Stop (idle for `--exit-when-idle`).
    Stop,
}

/// Each worker's pipeline and the control thread's ends of its rings.
struct Built {
    workers: Vec<Worker>,
    clients: Vec<CommandClient>,
    resolve_rx: Vec<Consumer<ResolveRequest>>,
    sync_exports: Vec<Consumer<dataplane::export::StateRecord>>,
    sync_imports: Vec<dataplane::ring::Producer<dataplane::export::ImportRecord>>,
    overload_rings: Vec<Consumer<dataplane::srcnodes::OverloadEvent>>,
    /// With `[log]`: each worker's pflog ring, drained by the logger.
    pflog_rings: Vec<Consumer<dataplane::pflog::Record>>,
}

impl Daemon {
    /// Builds the box from `config` and starts its workers.
    pub(super) fn start(config: &Config, ruleset: Ruleset, opts: &RunOptions) -> Result<Daemon> {
        let lcores = dpdk::worker_lcores();
        if lcores.is_empty() {
            bail!("EAL has no worker lcore: give at least two lcores (e.g. -l 0,1)");
        }
        let workers = lcores.len();
        let pool = Mempool::new("dpf_pool", config.mbufs, 256, MBUF_DATA_ROOM as u16 + 128)
            .context("creating the packet pool")?;
        let ports = open_ports(config, workers, &pool)?;
        let mut pcfg = pipeline_config(
            config,
            workers,
            opts.creatorid.unwrap_or_else(random_creatorid),
        );
        pcfg.frag_capacity = frag_capacity(ruleset.options.limit_frags, workers, config.mbufs);
        pcfg.placement = placement(config, &ports, workers);
        // Source nodes: one table for every worker, sized at start.
        pcfg.sources = Arc::new(dataplane::srcnodes::SourceTable::new(
            ruleset.options.limit_src_nodes,
        ));
        let sizes = ShardSizes::for_ruleset(&ruleset, workers);
        let rules = Arc::new(Snapshot::new(Arc::new(ruleset)));
        let shared = Arc::new(SharedCounters::new(workers));
        let hz = dpdk::tsc_hz();
        let clock = TscClock::new(hz);
        // Router mode: tables, the slow-path rings (workers -> control),
        // the injection ring (control -> worker 0), resolve requests.
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
        // One slow-path ring per class (CARP; pfsync; ARP and ND; the
        // rest), served in that order with a budget each.
        let mut slow_rings: [Option<Arc<MbufRing>>; SLOW_CLASSES] = Default::default();
        let mut inject_ring = None;
        if router {
            for (class, ring) in slow_rings.iter_mut().enumerate() {
                *ring = Some(Arc::new(
                    MbufRing::new(&format!("dpf_slow{class}"), SLOW_RING)
                        .context("slow-path ring")?,
                ));
            }
            inject_ring = Some(InjectRings {
                urgent: Arc::new(
                    MbufRing::new("dpf_inject", INJECT_RING).context("injection ring")?,
                ),
                sync: Arc::new(
                    MbufRing::new("dpf_inject_sync", INJECT_RING)
                        .context("pfsync injection ring")?,
                ),
            });
        }
        // Without its control socket dpf cannot be operated: fatal, and
        // before any worker runs.
        let server = Some(Server::bind(&config.socket).context("control socket")?);
        // The Prometheus endpoint, a client of the control socket on a
        // thread of its own (stopped when the daemon is dropped).
        let metrics = match config.metrics {
            Some(addr) => {
                let m = crate::metrics::start(addr, config.socket.clone())?;
                crate::log!(Level::Info, "metrics on http://{}/metrics", m.addr);
                Some(m)
            }
            None => None,
        };
        // dpf's commands on DPDK's telemetry socket (dpdk-telemetry.py),
        // also clients of the control socket.
        crate::telemetry::register(config.socket.clone())?;
        let port_ids: Vec<PortId> = ports.iter().map(|p| p.id()).collect();
        let ctx = WorkerContext {
            config,
            pcfg: &pcfg,
            sizes,
            rules: &rules,
            shared: &shared,
            routing: &routing,
            neighbors: &neighbors,
            slow_rings: &slow_rings,
            inject_ring: &inject_ring,
            port_ids: &port_ids,
            drain_ticks: hz / 1_000_000 * config.tx_drain_us as u64,
            clock,
        };
        let mut built = build_workers(&ctx, workers)?;
        if let Some(path) = &opts.preload {
            preload_states(path, &mut built.workers, clock)?;
        }
        // The pflog logger, on a thread of its own, started after the
        // preload (whose records are not traffic: dropped).
        let logger = match &config.log {
            None => None,
            Some(spec) => {
                for r in built.pflog_rings.iter_mut() {
                    while r.pop().is_some() {}
                }
                let wall_ns = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128);
                let offset = wall_ns - clock.instant(dpdk::rdtsc()).0 as i128;
                let file = crate::pflog::PflogFile::open(spec.clone())
                    .with_context(|| format!("pflog file {}", spec.file.display()))?;
                let names = config.ports.iter().map(|p| p.name.clone()).collect();
                let stop = Arc::new(AtomicBool::new(false));
                let h = crate::pflog::Logger::new(
                    std::mem::take(&mut built.pflog_rings),
                    file,
                    names,
                    offset,
                )
                .spawn(Arc::clone(&stop))
                .context("starting the pflog logger")?;
                Some((h, stop))
            }
        };
        let stop_workers = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (worker, &lcore) in built.workers.into_iter().zip(&lcores) {
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
        let now_fn = move || clock.instant(dpdk::rdtsc());
        let carp = (!config.carp.is_empty()).then(|| {
            Carp::new(
                &config.carp,
                config.sysctl,
                Arc::clone(&routing),
                Arc::clone(&routing.vips),
            )
        });
        let sync = build_sync(
            config,
            &routing,
            &rules,
            &pcfg,
            built.sync_exports,
            built.sync_imports,
            now_fn(),
        )?;
        let mut engines = Engines {
            carp,
            sync,
            slowpath,
            bulk: None,
            bulk_demoted: false,
        };
        if let (Some(s), Some(path)) = (engines.sync.as_mut(), opts.sync_trace.as_ref()) {
            s.set_trace(path, now_fn())
                .with_context(|| format!("--sync-trace {}", path.display()))?;
        }
        let mut injectq = InjectQueue::new();
        if let Some(inject) = inject_ring.as_ref() {
            let mut out = Vec::new();
            if let Some(c) = engines.carp.as_mut() {
                for (i, p) in ports.iter().enumerate() {
                    c.set_link(i as u16, link_up(config, i, p), now_fn(), &mut out);
                }
                c.start(now_fn(), &mut out);
            }
            if engines.sync.is_some() {
                // Do not become MASTER without the states (spec §5.6).
                engines.demote_for_bulk(now_fn(), &mut out);
                if let Some(s) = engines.sync.as_mut() {
                    s.request_bulk(now_fn(), &mut out);
                }
            }
            injectq.send(out, &pool, inject);
        }
        let started = Instant::now();
        Ok(Daemon {
            workers,
            handles,
            stop_workers,
            server,
            _metrics: metrics,
            engines,
            clients: built.clients,
            resolve_rx: built.resolve_rx,
            overloads: crate::srcnodes::Overloads::new(built.overload_rings),
            logger,
            injectq,
            rule_sources: RuleSources::of(config),
            shared,
            rules,
            routing,
            neighbors,
            sizes,
            pcfg,
            clock,
            hz,
            started,
            router,
            last_rx: 0,
            last_rx_change: started,
            next_link_poll: started + LINK_POLL,
            next_stats: opts.stats_every.map(|d| started + d),
            last_round: started,
            ports,
            slow_rings,
            inject_ring,
            pool,
        })
    }

    /// The control loop: a round, then a pause, until SIGINT/SIGTERM or
    /// `--exit-when-idle`. The pause is ~1 ms after [`ACTIVE_HOLD`] of
    /// rounds with nothing to do, 100 µs while frames come and go (pfsync
    /// packs what the workers exported each round, so its latency is about
    /// this period), 50 µs while frames wait for the injection ring, and
    /// none — only a yield of the CPU — after a round that used up a
    /// budget (a burst of new states, a flood of pfsync): every round is
    /// bounded, so CARP's timers are still served each round.
    pub(super) fn control_loop(&mut self, config: &Config, opts: &RunOptions, stop: &AtomicBool) {
        let mut more = false;
        let mut last_busy = std::time::Instant::now()
            .checked_sub(ACTIVE_HOLD)
            .unwrap_or_else(std::time::Instant::now);
        loop {
            if more {
                std::thread::yield_now();
            } else if self.injectq.is_empty() {
                let active = last_busy.elapsed() < ACTIVE_HOLD;
                std::thread::sleep(if active { BUSY_TICK } else { IDLE_TICK });
            } else {
                std::thread::sleep(Duration::from_micros(50));
                if let Some(inject) = self.inject_ring.as_ref() {
                    self.injectq.flush(&self.pool, inject);
                }
            }
            if stop.load(Ordering::Relaxed) {
                crate::log!(Level::Notice, "signal received, stopping");
                break;
            }
            match self.round(config, opts) {
                RoundEnd::Continue { busy, more: m } => {
                    if busy {
                        last_busy = std::time::Instant::now();
                    }
                    more = m;
                }
                RoundEnd::Stop => break,
            }
        }
    }

    /// One round of the control loop, every part of it bounded.
    fn round(&mut self, config: &Config, opts: &RunOptions) -> RoundEnd {
        let clock = self.clock;
        let now_fn = move || clock.instant(dpdk::rdtsc());
        if let (Some(at), Some(every)) = (self.next_stats, opts.stats_every) {
            if Instant::now() >= at {
                let mut v =
                    crate::counters_json::totals(&self.shared, self.started.elapsed(), self.hz);
                v["state_table_bytes"] = self.sizes.bytes().into();
                println!("{v}");
                self.next_stats = Some(at + every);
            }
        }
        let mut busy = false;
        let mut more = false;
        // A round that comes this late means the process was stopped or
        // starved (SIGSTOP, a stalled VM): the peer has taken over and our
        // table missed its updates. Step down and resync as at start:
        // demoted until a bulk update ends, then preemption brings
        // mastership back with a table that is whole.
        let stalled = self.last_round.elapsed();
        self.last_round = Instant::now();
        // Shorter (STALL_RESYNC): the peer has not taken over, but its sync
        // port gave up waiting and dropped pfsync packets meant for us:
        // fetch the table again.
        if stalled >= STALL_RESYNC {
            let step_down = stalled >= STALL_STEP_DOWN;
            let what = if step_down {
                "stepping down until the state table is resynced"
            } else {
                "asking the peer for a bulk update"
            };
            crate::log!(
                Level::Warning,
                "control thread stalled for {:.1} s: {what}",
                stalled.as_secs_f64()
            );
            if let Some(inject) = self.inject_ring.as_ref() {
                let mut out = Vec::new();
                self.engines
                    .resync_after_stall(step_down, now_fn(), &mut out);
                self.injectq.send(out, &self.pool, inject);
            }
        }
        if let Some(inject) = self.inject_ring.as_ref() {
            let now = now_fn();
            let mut out = Vec::new();
            let (came, full) =
                self.engines
                    .serve_slow_rings(&self.slow_rings, &mut self.clients, now, &mut out);
            busy |= came;
            more |= full;
            let links = (Instant::now() >= self.next_link_poll).then(|| {
                self.next_link_poll = Instant::now() + LINK_POLL;
                self.ports
                    .iter()
                    .enumerate()
                    .map(|(i, p)| link_up(config, i, p))
                    .collect::<Vec<bool>>()
            });
            let syncdev = config.pfsync.as_ref().map_or(0, |p| p.syncdev as u16);
            if let Some(s) = self.engines.sync.as_mut() {
                s.set_tx_backlog(self.injectq.sync_backlog(inject));
            }
            self.engines.poll(
                now,
                links.as_deref(),
                &self.neighbors.load(),
                syncdev,
                &mut self.resolve_rx,
                &mut out,
            );
            self.engines.pump_bulk(&mut self.clients, &mut out);
            busy |= !out.is_empty() || self.engines.bulk.is_some();
            more |= self
                .engines
                .sync
                .as_ref()
                .is_some_and(|s| s.exports_pending());
            self.injectq.send(out, &self.pool, inject);
            // At most one O(n) rebuild per ~1 ms however many frames
            // changed the table (see the slowpath module doc); a change
            // held back goes out on a later round.
            if let Some(n) = self.engines.slowpath.take_snapshot(now) {
                self.neighbors.publish(Arc::new(n));
            }
        }
        // `overload <table>`: before the control socket, so a table is
        // changed and a flush sent within the round the event came in.
        busy |= self
            .overloads
            .poll(&self.rules.load(), &self.pcfg.sources, &mut self.clients);
        self.serve_control_socket(config, &now_fn);
        if let Some(c) = self.engines.carp.as_mut() {
            // Virtual MACs in or out of the carpdevs' filters.
            let ports = &self.ports;
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
            let rx = self.shared.total().rx;
            if rx != self.last_rx {
                self.last_rx = rx;
                self.last_rx_change = Instant::now();
            } else if self.last_rx_change.elapsed() >= idle {
                crate::log!(Level::Notice, "idle for {} ms, stopping", idle.as_millis());
                return RoundEnd::Stop;
            }
        }
        RoundEnd::Continue { busy, more }
    }

    /// The control socket's share of a round (its own budget; see
    /// [`Server::poll`]).
    fn serve_control_socket(
        &mut self,
        config: &Config,
        now_fn: &dyn Fn() -> dataplane::time::Instant,
    ) {
        let Some(srv) = self.server.as_mut() else {
            return;
        };
        let mut cmd_out = Vec::new();
        let mut control = Control {
            config,
            ports: &self.ports,
            shared: &self.shared,
            rules: &self.rules,
            workers: &mut self.clients,
            now: now_fn,
            started: self.started,
            bad_requests: srv.bad_requests,
            socket: srv.stats(),
            routing: self.router.then_some(&*self.routing),
            slowpath: self.router.then_some(&self.engines.slowpath),
            carp: self.engines.carp.as_mut(),
            sync: self.engines.sync.as_mut(),
            out: &mut cmd_out,
            control_tx: (self.injectq.sent, self.injectq.dropped, self.injectq.len()),
            sources: &mut self.rule_sources,
            creatorid: self.pcfg.creatorid,
            src_nodes: &self.pcfg.sources,
            shard_sizes: self.sizes,
        };
        srv.poll(&mut control);
        if let Some(inject) = self.inject_ring.as_ref() {
            self.injectq.send(cmd_out, &self.pool, inject);
        }
    }

    /// Stops the workers, prints the final statistics, stops the ports and
    /// frees rings before the pool. 1 when a worker failed.
    pub(super) fn stop(mut self, config: &Config, opts: &RunOptions) -> i32 {
        drop(self.server.take());
        self.stop_workers.store(true, Ordering::Relaxed);
        let mut worker_failed = false;
        for (w, h) in self.handles.drain(..).enumerate() {
            let rc = h.join();
            if rc != 0 {
                crate::log!(Level::Err, "worker {w} ended with {rc}");
                worker_failed = true;
            }
        }
        // Workers are done: the logger writes what they left and ends.
        if let Some((h, stop)) = self.logger.take() {
            stop.store(true, Ordering::Release);
            if h.join().is_err() {
                crate::log!(Level::Err, "the pflog logger panicked");
            }
        }
        let elapsed = self.started.elapsed();
        print_stats(
            config,
            &self.ports,
            &self.shared,
            elapsed,
            opts.json_stats,
            self.hz,
        );
        debug_assert_eq!(self.shared.workers(), self.workers);
        let Daemon {
            mut ports,
            slow_rings,
            inject_ring,
            pool,
            ..
        } = self;
        for p in ports.iter_mut() {
            p.stop();
        }
        drop(ports);
        // Rings may hold mbufs: free them before their pool.
        drop(slow_rings);
        drop(inject_ring);
        drop(pool);
        i32::from(worker_failed)
    }
}

/// Entries of the redirection table every RSS port repeats (entry `i`:
/// queue `i % workers`); a device table must be a multiple of it.
const RETA_COMMON: usize = 64;

/// Which worker owns a flow: the NIC's when ports spread packets by
/// symmetric Toeplitz (their redirection tables programmed alike, or
/// `rx_placement = "toeplitz"`), so packets arrive on their owner and
/// only exceptions are handed off; else the keyed software hash.
fn placement(config: &Config, ports: &[Port], workers: usize) -> dataplane::rss::Placement {
    use crate::config::RxPlacement;
    use dataplane::rss::{Placement, RssPlacement};
    if workers <= 1 {
        return Placement::Hash;
    }
    let rss = RssPlacement::default_for(workers as u16, RETA_COMMON);
    let common = rss.reta();
    let mut placed = 0u64;
    let mut names = Vec::new();
    for (i, (spec, port)) in config.ports.iter().zip(ports).enumerate() {
        let ok = match spec.rx_placement {
            RxPlacement::Toeplitz => true,
            RxPlacement::Auto if port.rss() => match port.program_reta(common) {
                Ok(()) => true,
                Err(e) => {
                    crate::log!(
                        Level::Notice,
                        "{}: RSS on, but its queues cannot be placed ({e}): its flows are placed by the workers",
                        spec.name
                    );
                    false
                }
            },
            RxPlacement::Auto => false,
        };
        if ok && i < 64 {
            placed |= 1 << i;
            names.push(spec.name.as_str());
        }
    }
    if placed == 0 {
        return Placement::Hash;
    }
    crate::log!(
        Level::Info,
        "flows owned by the rx queue RSS picks (placed by the device on {})",
        names.join(", ")
    );
    Placement::Rss {
        rss: Arc::new(rss),
        placed,
    }
}

/// What every worker's pipeline is built from.
struct WorkerContext<'a> {
    config: &'a Config,
    pcfg: &'a PipelineConfig,
    sizes: ShardSizes,
    rules: &'a Arc<Snapshot<Ruleset>>,
    shared: &'a Arc<SharedCounters>,
    routing: &'a Arc<Routing>,
    neighbors: &'a Arc<Snapshot<Neighbors>>,
    slow_rings: &'a [Option<Arc<MbufRing>>; SLOW_CLASSES],
    inject_ring: &'a Option<InjectRings>,
    port_ids: &'a [PortId],
    drain_ticks: u64,
    clock: TscClock,
}

/// One pipeline per worker with its state table and rings: handoff and
/// alias meshes between workers, commands, overload events, resolve
/// requests (router mode), pfsync export and import (with `[pfsync]`),
/// pflog records (with `[log]`).
fn build_workers(ctx: &WorkerContext<'_>, workers: usize) -> Result<Built> {
    let config = ctx.config;
    let router = config.mode == Mode::Router;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Handoff rings: one SPSC ring for every ordered pair of workers.
    let (outs, ins) = ring::mesh::<Handoff>(workers, HANDOFF_RING);
    // Alias rings (translated states whose far key hashes to another
    // worker), the same mesh.
    let (alias_outs, alias_ins) = ring::mesh::<dataplane::alias::AliasMsg>(workers, ALIAS_RING);
    let mut alias_ends = alias_outs.into_iter().zip(alias_ins);
    // What each worker finished of the frames that must not be lost.
    let credits = Arc::new(dataplane::local_tx::Credits::new(workers));
    let mut built = Built {
        workers: Vec::with_capacity(workers),
        clients: Vec::with_capacity(workers),
        resolve_rx: Vec::new(),
        sync_exports: Vec::new(),
        sync_imports: Vec::new(),
        overload_rings: Vec::with_capacity(workers),
        pflog_rings: Vec::new(),
    };
    for (w, (handoff_out, handoff_in)) in outs.into_iter().zip(ins).enumerate() {
        let (port, client) = command_channel(COMMAND_REPLY_RING);
        built.clients.push(client);
        let mut shard = ctx.sizes.shard(w)?;
        shard.seed_ids(seed << 24);
        let mut cfg = ctx.pcfg.clone();
        cfg.worker = w;
        let mut pipeline = Pipeline::new(cfg, ctx.rules.load(), shard);
        if let (true, Some((out, inn))) = (workers > 1, alias_ends.next()) {
            pipeline.set_aliases(out, inn, ctx.sizes.states);
        }
        let (op, oc) = ring::channel(OVERLOAD_RING);
        pipeline.set_overload(op);
        built.overload_rings.push(oc);
        if config.log.is_some() {
            let (lp, lc) = ring::channel(crate::pflog::RING);
            pipeline.set_pflog(lp);
            built.pflog_rings.push(lc);
        }
        if router {
            let (p, c) = ring::channel(RESOLVE_RING);
            built.resolve_rx.push(c);
            pipeline.set_router(Arc::clone(ctx.routing), ctx.neighbors.load(), Some(p));
        }
        if let Some(ps) = &config.pfsync {
            let (ep, ec) = ring::channel(SYNC_RING);
            let (ip, ic) = ring::channel(SYNC_RING);
            built.sync_exports.push(ec);
            built.sync_imports.push(ip);
            pipeline.set_sync(ep, ic, ps.maxupd);
            pipeline.set_defer(ps.defer);
        }
        built.workers.push(Worker {
            index: w,
            ports: ctx.port_ids.to_vec(),
            pipeline,
            shared: Arc::clone(ctx.shared),
            slow_path: ctx.slow_rings.clone(),
            rules: Arc::clone(ctx.rules),
            handoff_out,
            handoff_in,
            commands: Some(port),
            neighbors: router.then(|| Arc::clone(ctx.neighbors)),
            inject: if w == 0 {
                ctx.inject_ring.as_ref().map(|r| Arc::clone(&r.urgent))
            } else {
                None
            },
            inject_sync: if w == 0 {
                ctx.inject_ring.as_ref().map(|r| Arc::clone(&r.sync))
            } else {
                None
            },
            credits: ctx.inject_ring.as_ref().map(|_| Arc::clone(&credits)),
            drain_ticks: ctx.drain_ticks,
            clock: ctx.clock,
        });
    }
    Ok(built)
}

/// `--preload`: the capture's packets through the pipelines before the
/// workers start; states stay, counters start from zero.
fn preload_states(path: &std::path::Path, workers: &mut [Worker], clock: TscClock) -> Result<()> {
    let mut pipelines: Vec<&mut Pipeline> = workers.iter_mut().map(|w| &mut w.pipeline).collect();
    let now = preload::Clock::Fixed(clock.instant(dpdk::rdtsc()));
    let n = preload::run(path, &mut pipelines, now, None, None, None, None)
        .with_context(|| format!("preloading {}", path.display()))?;
    for p in pipelines {
        let states = p.shard().len() as u64;
        p.counters = Default::default();
        p.counters.states = states;
    }
    crate::log!(
        Level::Notice,
        "preloaded {n} packets from {}",
        path.display()
    );
    Ok(())
}

/// The pfsync engine for `[pfsync]`, with the workers' export and import
/// rings.
fn build_sync(
    config: &Config,
    routing: &Routing,
    rules: &Snapshot<Ruleset>,
    pcfg: &PipelineConfig,
    exports: Vec<Consumer<dataplane::export::StateRecord>>,
    imports: Vec<dataplane::ring::Producer<dataplane::export::ImportRecord>>,
    now: dataplane::time::Instant,
) -> Result<Option<Sync>> {
    let Some(ps) = &config.pfsync else {
        return Ok(None);
    };
    let dev = ps.syncdev as u16;
    let ip = routing
        .address_on(dev, dataplane::flow::Af::Inet)
        .map_or([0; 4], |a| a.v4_octets());
    let options = &rules.load().options;
    let setup = SyncSetup {
        syncdev: dev,
        syncdev_name: config.ports[ps.syncdev].name.clone(),
        mac: routing.mac(dev).unwrap_or([0; 6]),
        ip,
        syncpeer: ps.syncpeer,
        mtu: config.ports[ps.syncdev].mtu,
        max_frame_len: MBUF_DATA_ROOM,
        state_limit: options.limit_states,
        auth: ps.auth.as_deref().and_then(crate::pfsync::auth::Key::new),
        maxupd: ps.maxupd,
        defer: ps.defer,
        creatorid: pcfg.creatorid,
        ifnames: config.ports.iter().map(|p| p.name.clone()).collect(),
        timeouts: options.timeouts,
        states_total: pcfg.states_total.clone(),
        placement: pcfg.placement.clone(),
    };
    Sync::new(setup, exports, imports, now)
        .map(Some)
        .map_err(|e| anyhow::anyhow!(e))
}
