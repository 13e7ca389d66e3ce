//! `dpf --replay`: the configured pipelines and slow path over a capture,
//! without DPDK, in exact packet order (the golden tests' mode).

use super::*;

/// How `--replay` runs.
#[derive(Clone, Copy, Debug)]
pub struct ReplayOptions {
    /// Pipelines (workers).
    pub workers: usize,
    /// pfsync creator id of the states.
    pub creatorid: u32,
    /// Keys the flow hash from this seed (a reproducible run).
    pub seed: Option<u64>,
    /// Packets reach the workers as a NIC with symmetric RSS spreads them
    /// (the worker of the queue their Toeplitz hash picks, every port
    /// placed), and flows are owned by that placement; else packets of
    /// port `p` reach worker `p % workers` and flows are owned by hash.
    pub rss: bool,
}

/// `dpf --replay`: runs `input` through the pipelines built from the
/// configuration, without DPDK, writing forwarded packets to `output`, and
/// prints the counters as JSON. Packet timestamps are the clock.
pub fn replay(
    config: &Config,
    ruleset: Ruleset,
    input: &std::path::Path,
    output: &std::path::Path,
    opts: &ReplayOptions,
) -> Result<()> {
    let (workers, creatorid) = (opts.workers, opts.creatorid);
    match opts.seed {
        Some(seed) => {
            // splitmix64 over the seed: one word per secret word.
            let mut x = seed;
            let mut words = [0u64; HASH_SECRET_WORDS];
            for w in &mut words {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                *w = z ^ (z >> 31);
            }
            set_hash_secret(words);
        }
        None => seed_flow_hash()?,
    }
    let workers = workers.max(1);
    let sizes = ShardSizes::for_ruleset(&ruleset, workers);
    let mut cfg = pipeline_config(config, workers, creatorid);
    cfg.sources = Arc::new(dataplane::srcnodes::SourceTable::new(
        ruleset.options.limit_src_nodes,
    ));
    cfg.frag_capacity = frag_capacity(ruleset.options.limit_frags, workers, config.mbufs);
    if opts.rss && workers > 1 {
        cfg.placement = dataplane::rss::Placement::Rss {
            rss: Arc::new(dataplane::rss::RssPlacement::default_for(
                workers as u16,
                64,
            )),
            placed: u64::MAX,
        };
    }
    let rules = Arc::new(ruleset);
    let mut overload_rings = Vec::new();
    let mut pflog_rings = Vec::new();
    // Replay has no ports: interfaces without a configured mac get
    // 02:00:00:00:00:<index+1>.
    let macs: Vec<[u8; 6]> = (0..config.ports.len())
        .map(|i| [2, 0, 0, 0, 0, i as u8 + 1])
        .collect();
    let (routing, statics) = build_routing(config, &macs);
    let routing = Arc::new(routing);
    let neighbors = Arc::new(Neighbors::new(statics.iter().copied()));
    let mut slowpath =
        SlowPath::new(Arc::clone(&routing), &statics).with_neighbor_limit(config.neighbor_limit);
    let mut resolve = Vec::new();
    let mut pipelines = Vec::new();
    let (alias_outs, alias_ins) = ring::mesh::<dataplane::alias::AliasMsg>(workers, 4096);
    let mut alias_ends = alias_outs.into_iter().zip(alias_ins);
    for w in 0..workers {
        let shard = sizes.shard(w)?;
        let mut c = cfg.clone();
        c.worker = w;
        let mut p = Pipeline::new(c, Arc::clone(&rules), shard);
        if let (true, Some((out, inn))) = (workers > 1, alias_ends.next()) {
            p.set_aliases(out, inn, sizes.states);
        }
        let (op, oc) = ring::channel(OVERLOAD_RING);
        p.set_overload(op);
        overload_rings.push(oc);
        if config.log.is_some() {
            let (lp, lc) = ring::channel(crate::pflog::RING);
            p.set_pflog(lp);
            pflog_rings.push(lc);
        }
        if config.mode == Mode::Router {
            let (tx, rx) = ring::channel(RESOLVE_RING);
            resolve.push(rx);
            p.set_router(Arc::clone(&routing), Arc::clone(&neighbors), Some(tx));
        }
        pipelines.push(p);
    }
    // pflog: written after each packet; the capture's timestamps are the
    // records' times.
    let mut logger = match &config.log {
        None => None,
        Some(spec) => Some(crate::pflog::Logger::new(
            pflog_rings,
            crate::pflog::PflogFile::open(spec.clone())
                .with_context(|| format!("pflog file {}", spec.file.display()))?,
            config.ports.iter().map(|p| p.name.clone()).collect(),
            0,
        )),
    };
    let mut writer = preload::writer(output, config.ports.len())?;
    let mut refs: Vec<&mut Pipeline> = pipelines.iter_mut().collect();
    let hook = (config.mode == Mode::Router).then_some(preload::SlowPathHook {
        slowpath: &mut slowpath,
        resolve: &mut resolve,
    });
    preload::run(
        input,
        &mut refs,
        preload::Clock::Timestamps,
        Some(&mut writer),
        hook,
        Some((&mut overload_rings[..], &*rules)),
        logger.as_mut(),
    )
    .with_context(|| format!("replaying {}", input.display()))?;
    drop(writer);
    let shared = SharedCounters::new(workers);
    for (w, p) in pipelines.iter().enumerate() {
        shared.publish(w, &p.counters);
    }
    let mut v = crate::counters_json::totals(&shared, Duration::ZERO, 0);
    let states: Vec<serde_json::Value> =
        pipelines
            .iter()
            .flat_map(|p| {
                p.shard().iter().map(|(_, st)| {
            let k = st.key();
            serde_json::json!({
                "id": format!("{:016x}", st.id()),
                "creatorid": format!("{:08x}", st.creatorid()),
                "worker": st.id_shard(),
                "proto": k.proto,
                "src": format!("{:?}", st.src_endpoint().0), "sport": st.src_endpoint().1,
                "dst": format!("{:?}", st.dst_endpoint().0), "dport": st.dst_endpoint().1,
                "src_state": st.src.state, "dst_state": st.dst.state,
                "timeout": st.timeout.name(),
            })
        }).collect::<Vec<_>>()
            })
            .collect();
    v["states"] = states.len().into();
    v["state_list"] = states.into();
    let sources: Vec<serde_json::Value> = cfg
        .sources
        .nodes()
        .iter()
        .map(|n| {
            serde_json::json!({
                "address": n.key.addr.to_ip(n.key.af).to_string(),
                "states": n.states,
                "connections": n.conn,
            })
        })
        .collect();
    v["source_nodes"] = sources.into();
    if let Some(l) = &logger {
        v["pflog_written"] = l.written.into();
    }
    if config.mode == Mode::Router {
        v["slow_path_stats"] = serde_json::to_value(slowpath.stats).unwrap_or_default();
    }
    println!("{v}");
    Ok(())
}
