//! The generator process (`bench live-gen`): one EAL lcore that transmits
//! stamped UDP frames on port A at a paced rate and receives them back on
//! port B, accounting every trial's sequence numbers and latencies. `bench
//! live` and `bench rfc2544` start it as a child next to the device under
//! test and read its JSON lines ([`Event`]) from stdout.
//!
//! A trial: reset the accounting; for `duration` transmit bursts as the
//! token bucket allows (sequence numbers 0, 1, ... in transmission order,
//! one TSC stamp per burst taken just before the frames are written), and
//! poll port B after every transmit; then keep receiving for up to `drain`
//! or until every packet is back. A frame the driver refuses keeps its
//! sequence number and so counts as lost: the DUT's receive ring was full,
//! which a NIC would count as a miss. Latency is the receive TSC minus the
//! stamp (same machine, same TSC), recorded in an `hdrhistogram`.
//!
//! The loop allocates nothing per packet: mbufs come from the pool in
//! bulk, frames from prebuilt [`Template`]s, and the accounting is fixed
//! size.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context};
use dataplane::dpdk::{self, Burst, Eal, Mempool, Port, PortConfig, PortId, QueueId};
use dataplane::histogram::{cycles_to_ns, LatencySummary};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::pace::TokenBucket;
use super::payload::{Stamp, Template};
use super::search::Search;
use super::seq::{SeqCounts, SeqTracker};

/// How often a port whose link is down is restarted while waiting.
const LINK_RETRY: Duration = Duration::from_secs(2);

/// Packets per transmit and receive burst.
pub const BURST: usize = 32;

/// A trial is generator-limited when it offered less than this share of
/// its target rate (the bucket starts empty and the last partial burst is
/// not sent, so a paced trial offers a little under its target).
pub const GENERATOR_LIMITED_SHARE: f64 = 0.97;

/// Arguments of `bench live-gen` (started by `bench live` / `bench
/// rfc2544`, not meant to be typed).
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// Devargs of the transmitting port (A).
    #[arg(long)]
    pub tx: String,
    /// Devargs of the receiving port (B); the same as --tx for one port.
    #[arg(long)]
    pub rx: String,
    /// EAL --file-prefix.
    #[arg(long)]
    pub file_prefix: String,
    /// CPU of the generator's lcore.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// EAL memory, MiB.
    #[arg(long, default_value_t = 256)]
    pub memory_mb: u64,
    /// Flows (source address/port pairs), sent round robin.
    #[arg(long, default_value_t = 1000)]
    pub flows: u64,
    /// Frame size with FCS.
    #[arg(long, default_value_t = 64)]
    pub frame_size: usize,
    /// Warm-up rate (the warm-up sends every flow at least once and
    /// creates the states).
    #[arg(long, default_value_t = 100_000)]
    pub warmup_pps: u64,
    /// Receive this long after a trial's last transmit, at most.
    #[arg(long, default_value_t = 300)]
    pub drain_ms: u64,
    /// Seconds to wait for both links.
    #[arg(long, default_value_t = 20)]
    pub link_timeout_s: u64,
    /// Seconds per trial.
    #[arg(long, default_value_t = 1.0)]
    pub trial_s: f64,
    /// One trial at this rate (pps) instead of a search.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Search: lowest rate, pps.
    #[arg(long, default_value_t = 10_000)]
    pub min_pps: u64,
    /// Search: highest rate, pps (tried first).
    #[arg(long, default_value_t = 4_000_000)]
    pub max_pps: u64,
    /// Search: stop when the bracket is narrower than this share.
    #[arg(long, default_value_t = 0.02)]
    pub resolution: f64,
    /// Search: at most this many trials.
    #[arg(long, default_value_t = 16)]
    pub max_trials: usize,
    /// A trial passes with at most this share of its packets lost (RFC
    /// 2544: 0).
    #[arg(long, default_value_t = 0.0)]
    pub loss_tolerance: f64,
}

/// What one trial measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// Trial number (0: the warm-up).
    pub trial: u16,
    /// Target rate, pps.
    pub rate_pps: u64,
    /// Transmit time, s.
    pub duration_s: f64,
    /// Packets given a sequence number (transmitted or refused).
    pub sent: u64,
    /// Of those, refused by the transmit queue (the DUT's ring was full).
    pub tx_refused: u64,
    /// Bursts not sent because the pool was empty.
    pub alloc_failures: u64,
    /// Rate actually offered, pps: sent / duration.
    pub offered_pps: f64,
    /// Sequence accounting at the receiver.
    pub seq: SeqCounts,
    /// Sent but never received.
    pub lost: u64,
    /// Lost share of sent.
    pub loss_ratio: f64,
    /// Frames of an earlier trial received during this one.
    pub stale: u64,
    /// Frames without a stamp received.
    pub foreign: u64,
    /// One-way latency of this trial's received packets.
    pub latency: LatencySummary,
    /// Nothing was lost (RFC 2544's pass criterion), or no more than the
    /// tolerance.
    pub passed: bool,
    /// The generator offered less than 97% of the target rate.
    pub generator_limited: bool,
}

/// A line the generator prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// Both links are up.
    Ready {
        /// TSC rate.
        tsc_hz: u64,
        /// Port A's MAC.
        tx_mac: String,
        /// Port B's MAC.
        rx_mac: String,
    },
    /// The warm-up trial.
    Warmup(TrialResult),
    /// A measured trial.
    Trial(TrialResult),
    /// The end: the highest loss-free rate of a search (the fixed rate's
    /// verdict for one trial).
    Done {
        /// Highest rate with zero loss, pps.
        best_pps: Option<u64>,
        /// Trials run (warm-up excluded).
        trials: usize,
    },
}

fn emit(event: &Event) {
    if let Ok(line) = serde_json::to_string(event) {
        let mut out = std::io::stdout().lock();
        // The harness reads the lines; a closed stdout means it is gone.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// A latency histogram from 1 cycle to 2^40 cycles (minutes at any TSC
/// rate), 3 significant digits; fixed range, so recording never
/// allocates.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1 << 40, 3).expect("valid histogram bounds")
}

/// The headline figures of `h` (cycles) in nanoseconds.
fn latency_summary(h: &Histogram<u64>, to_ns: impl Fn(u64) -> f64) -> LatencySummary {
    let count = h.len();
    let q = |q: f64| (count > 0).then(|| to_ns(h.value_at_quantile(q)));
    LatencySummary {
        count,
        p50_ns: q(0.5),
        p99_ns: q(0.99),
        p999_ns: q(0.999),
        max_ns: (count > 0).then(|| to_ns(h.max())),
    }
}

/// The receive side's accounting, reset per trial.
struct Receiver {
    tracker: SeqTracker,
    /// One-way latency in TSC cycles (hdrhistogram, 3 significant
    /// digits, allocated once per trial, outside the receive loop).
    latency: Histogram<u64>,
    stale: u64,
    foreign: u64,
}

/// The generator: ports, pool, EAL (dropped in that order: fields drop in
/// declaration order) and the frames.
struct Generator {
    ports: Vec<Port>,
    pool: Mempool,
    _eal: Eal,
    tx: usize,
    rx: usize,
    templates: Vec<Template>,
    hz: u64,
    rcv: Receiver,
}

/// The EAL arguments of a traffic generator process (`bench live-gen`,
/// `bench rss-gen`): no hugepages (`memory_mb` of anonymous memory), no
/// shared config or PCI, its own `file_prefix`, its one lcore on `cpu`,
/// and `devices` as virtual devices.
pub fn generator_eal_args(
    name: &str,
    memory_mb: u64,
    file_prefix: &str,
    cpu: usize,
    devices: &[String],
) -> Vec<String> {
    let mut eal_args = vec![
        name.to_string(),
        "--no-huge".into(),
        "-m".into(),
        memory_mb.to_string(),
        "--no-shconf".into(),
        "--no-pci".into(),
        "--file-prefix".into(),
        file_prefix.to_string(),
        "--lcores".into(),
        format!("0@{cpu}"),
        "--log-level".into(),
        "*:error".into(),
    ];
    for d in devices {
        eal_args.extend(["--vdev".to_string(), d.clone()]);
    }
    eal_args
}

/// `bench live-gen`.
pub fn run(args: &AgentArgs) -> anyhow::Result<()> {
    // EAL puts its control threads (interrupts: the memif socket) on the
    // process's CPUs that no lcore uses. Restricted to the generator's CPU
    // first, they stay beside it instead of on the DUT's busy-polled CPU,
    // where closing a memif port waited for them for up to a minute.
    if !core_affinity::set_for_current(core_affinity::CoreId { id: args.cpu }) {
        bail!("cannot bind the generator to CPU {}", args.cpu);
    }
    let mut devices = vec![args.tx.clone()];
    if args.rx != args.tx {
        devices.push(args.rx.clone());
    }
    let eal_args = generator_eal_args(
        "bench-live-gen",
        args.memory_mb,
        &args.file_prefix,
        args.cpu,
        &devices,
    );
    let eal = Eal::init(&eal_args).context("starting EAL")?;
    let pool = Mempool::new("live_gen", 16_383, 256, 2048).context("creating the pool")?;
    let conf = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 1024,
        tx_desc: 1024,
        promiscuous: true,
    };
    let dev_name = |d: &str| d.split(',').next().unwrap_or(d).to_string();
    let mut ports = Vec::new();
    for dev in [&args.tx, &args.rx] {
        if ports.len() == 1 && args.rx == args.tx {
            break;
        }
        let id: PortId = Port::find(&dev_name(dev)).with_context(|| format!("port {dev}"))?;
        let mut port = Port::configure(id, &conf, &pool).with_context(|| format!("port {dev}"))?;
        port.start().with_context(|| format!("port {dev}"))?;
        ports.push(port);
    }
    let rx = ports.len() - 1;
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(args.link_timeout_s);
    let mut next_retry = started + LINK_RETRY;
    while !ports.iter().all(|p| p.link().up) {
        let now = std::time::Instant::now();
        if now >= deadline {
            bail!(
                "links not up after {} s (is the device under test running?)",
                args.link_timeout_s
            );
        }
        // A memif client connects when its port starts, once: a server
        // that was not ready yet (its socket exists before its port is
        // started) refuses it, so restart the ports that are still down.
        if now >= next_retry {
            for p in ports.iter_mut().filter(|p| !p.link().up) {
                p.stop();
                p.start().context("restarting a port whose link is down")?;
            }
            next_retry = now + LINK_RETRY;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let hz = dpdk::tsc_hz();
    let src_mac = ports[0].mac();
    let dst_mac = ports[rx].mac();
    let templates = (0..args.flows.max(1))
        .map(|i| Template::new(i, args.frame_size, src_mac, dst_mac))
        .collect::<Result<Vec<_>, _>>()?;
    let mac = |m: [u8; 6]| dataplane::wire::EthernetAddress(m).to_string();
    emit(&Event::Ready {
        tsc_hz: hz,
        tx_mac: mac(src_mac),
        rx_mac: mac(dst_mac),
    });
    let mut gen = Generator {
        ports,
        pool,
        _eal: eal,
        tx: 0,
        rx,
        templates,
        hz,
        rcv: Receiver {
            tracker: SeqTracker::new(),
            latency: latency_histogram(),
            stale: 0,
            foreign: 0,
        },
    };
    let drain = Duration::from_millis(args.drain_ms);
    // Warm-up: every flow at least once, at least half a second.
    let warmup_s = (args.flows as f64 / args.warmup_pps.max(1) as f64 + 0.5).max(0.5);
    let warm = gen.trial(0, args.warmup_pps, warmup_s, drain, 0.0);
    emit(&Event::Warmup(warm));
    let mut trial = 0u16;
    let best = match args.rate {
        Some(rate) => {
            trial += 1;
            let r = gen.trial(trial, rate, args.trial_s, drain, args.loss_tolerance);
            let passed = r.passed;
            emit(&Event::Trial(r));
            passed.then_some(rate)
        }
        None => {
            let mut search =
                Search::new(args.min_pps, args.max_pps, args.resolution, args.max_trials);
            while let Some(rate) = search.next_rate() {
                trial = trial.wrapping_add(1).max(1);
                let r = gen.trial(trial, rate, args.trial_s, drain, args.loss_tolerance);
                search.record(rate, r.passed);
                emit(&Event::Trial(r));
            }
            debug_assert_eq!(search.trials(), trial as usize);
            search.result()
        }
    };
    emit(&Event::Done {
        best_pps: best,
        trials: trial as usize,
    });
    gen.hold_ports_until_peer_closes(Duration::from_secs(args.link_timeout_s.max(10)));
    Ok(())
}

impl Generator {
    /// Keeps the ports open, without polling them, until the device under
    /// test has closed its end of every link (or `timeout` passes). The
    /// harness stops the DUT after `Done`: a memif PMD whose peer
    /// disconnects unmaps the shared rings from its interrupt thread while
    /// a busy worker may still be inside an rx/tx burst on them (DPDK 22.11),
    /// so the side that disconnects first must be the side that is busy, and
    /// the idle generator must be the one that sees the disconnect.
    fn hold_ports_until_peer_closes(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.ports.iter().any(|p| p.link().up) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Receives one burst on every port; stamped frames of `trial` are
    /// accounted against `sent`.
    fn poll_rx(&mut self, trial: u16, sent: u64, burst: &mut Burst<BURST>) {
        for p in 0..self.ports.len() {
            let n = burst.rx(&mut self.ports[p], QueueId(0));
            if n == 0 {
                continue;
            }
            let now = dpdk::rdtsc();
            for i in 0..n {
                let stamp = burst.data(i).and_then(Stamp::read);
                match stamp {
                    Some(s) if s.trial == trial && p == self.rx => {
                        self.rcv.tracker.record(s.seq, sent);
                        self.rcv
                            .latency
                            .saturating_record(now.saturating_sub(s.tsc));
                    }
                    Some(_) => self.rcv.stale += 1,
                    None => self.rcv.foreign += 1,
                }
            }
            burst.clear();
        }
    }

    /// Runs one trial at `rate_pps` for `duration_s`, then drains.
    fn trial(
        &mut self,
        trial: u16,
        rate_pps: u64,
        duration_s: f64,
        drain: Duration,
        loss_tolerance: f64,
    ) -> TrialResult {
        self.rcv.tracker.reset();
        self.rcv.latency.reset();
        self.rcv.stale = 0;
        self.rcv.foreign = 0;
        let hz = self.hz;
        let duration_ticks = (duration_s.max(0.0) * hz as f64) as u64;
        let drain_ticks = (drain.as_secs_f64() * hz as f64) as u64;
        let mut txb: Burst<BURST> = Burst::new();
        let mut rxb: Burst<BURST> = Burst::new();
        let flows = self.templates.len();
        let (mut sent, mut refused, mut alloc_failures) = (0u64, 0u64, 0u64);
        let start = dpdk::rdtsc();
        let end = start + duration_ticks;
        let mut bucket = TokenBucket::new(rate_pps, hz, BURST as u64, start);
        let mut next_flow = 0usize;
        loop {
            let now = dpdk::rdtsc();
            if now >= end {
                break;
            }
            let n = bucket.take(now, BURST as u64) as usize;
            if n > 0 {
                if !txb.alloc(&self.pool, n) {
                    alloc_failures += 1;
                } else {
                    let tsc = dpdk::rdtsc();
                    for i in 0..n {
                        let t = &self.templates[next_flow];
                        next_flow = if next_flow + 1 == flows {
                            0
                        } else {
                            next_flow + 1
                        };
                        let stamp = Stamp {
                            trial,
                            seq: sent,
                            tsc,
                        };
                        sent += 1;
                        let len = t.len() as u16;
                        // A failed append (no room) leaves an empty frame:
                        // it is still sent, and lost.
                        if let Some(buf) = txb.append(i, len) {
                            t.stamp(&stamp, buf);
                        }
                    }
                    txb.tx(&mut self.ports[self.tx], QueueId(0));
                    refused += txb.len() as u64;
                    txb.clear();
                }
            }
            self.poll_rx(trial, sent, &mut rxb);
        }
        let tx_end = dpdk::rdtsc();
        while dpdk::rdtsc() < tx_end + drain_ticks && self.rcv.tracker.counts().unique < sent {
            self.poll_rx(trial, sent, &mut rxb);
        }
        let elapsed_s = (tx_end - start) as f64 / hz.max(1) as f64;
        let seq = self.rcv.tracker.counts();
        let lost = seq.lost(sent);
        let offered_pps = if elapsed_s > 0.0 {
            sent as f64 / elapsed_s
        } else {
            0.0
        };
        TrialResult {
            trial,
            rate_pps,
            duration_s: elapsed_s,
            sent,
            tx_refused: refused,
            alloc_failures,
            offered_pps,
            seq,
            lost,
            loss_ratio: if sent > 0 {
                lost as f64 / sent as f64
            } else {
                0.0
            },
            stale: self.rcv.stale,
            foreign: self.rcv.foreign,
            latency: match cycles_to_ns(hz) {
                Some(f) => latency_summary(&self.rcv.latency, f),
                None => LatencySummary::default(),
            },
            passed: sent > 0 && (lost == 0 || (lost as f64) <= sent as f64 * loss_tolerance),
            generator_limited: offered_pps < rate_pps as f64 * GENERATOR_LIMITED_SHARE,
        }
    }
}
