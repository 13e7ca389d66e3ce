//! `bench rss-gen`: a generator that behaves like a multi-queue NIC in
//! front of the device under test. It sends UDP conversations over two
//! links (LAN and WAN) of N queue pairs each, putting every frame on the
//! queue the symmetric Toeplitz hash and the redirection table pick for
//! it ([`dataplane::rss::RssPlacement`], the table dpf assumes for
//! `rx_placement = "toeplitz"`: 64 entries, entry i → queue i % N), and
//! counts what comes back on any queue. The links are memif (`--lan` /
//! `--wan` devargs of memif clients; the DUT is the server).
//!
//! A round: every flow's request LAN → WAN, then every reply WAN → LAN
//! (so the DUT creates the states on the requests and matches them on the
//! replies). It prints one JSON line: frames sent and received, sent per
//! queue, and how long the rounds took.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dataplane::dpdk::{Burst, Eal, Mempool, Port, PortConfig, PortId, QueueId};
use dataplane::rss::RssPlacement;

/// Arguments of `bench rss-gen`.
#[derive(Debug, Clone, clap::Args)]
pub struct RssGenArgs {
    /// Devargs of the LAN link (a memif client).
    #[arg(long)]
    pub lan: String,
    /// Devargs of the WAN link (a memif client).
    #[arg(long)]
    pub wan: String,
    /// Queue pairs per link (the DUT's workers).
    #[arg(long, default_value_t = 2)]
    pub queues: u16,
    /// UDP conversations.
    #[arg(long, default_value_t = 1000)]
    pub flows: u32,
    /// Rounds (a request and a reply per flow each).
    #[arg(long, default_value_t = 10)]
    pub rounds: u32,
    /// EAL --file-prefix.
    #[arg(long)]
    pub file_prefix: String,
    /// CPU of the generator's lcore.
    #[arg(long, default_value_t = 0)]
    pub cpu: usize,
    /// Give up when the links are not up after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub link_timeout_s: u64,
}

const BURST: usize = 32;

/// A 60-byte UDP frame from `src` to `dst` (the harness's frame builder,
/// checksums included).
fn udp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
) -> anyhow::Result<Vec<u8>> {
    use crate::frames::{Fill, FrameRepr, IpPair, L4Repr, UdpRepr};
    let ip = IpPair::V4 {
        src: src.into(),
        dst: dst.into(),
    };
    let udp = L4Repr::Udp(UdpRepr {
        src_port: sport,
        dst_port: dport,
    });
    let repr = FrameRepr::new(src_mac, dst_mac, ip, udp).fill_to(60, Fill::Payload);
    let mut buf = vec![0u8; repr.buffer_len()];
    let n = repr.emit(&mut buf).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    buf.truncate(n);
    Ok(buf)
}

/// Sends `frames` (each with its queue) on `port`, a burst per queue at a
/// time, receiving on both ports meanwhile; returns frames refused.
fn send(
    ports: &mut [Port],
    side: usize,
    frames: &[(u16, Vec<u8>)],
    queues: u16,
    pool: &Mempool,
    received: &mut u64,
) -> anyhow::Result<u64> {
    let mut refused = 0;
    for q in 0..queues {
        let mine: Vec<&Vec<u8>> = frames
            .iter()
            .filter(|(fq, _)| *fq == q)
            .map(|(_, f)| f)
            .collect();
        for chunk in mine.chunks(BURST) {
            let mut b = Burst::<BURST>::new();
            if !b.alloc(pool, chunk.len()) {
                bail!("the generator's pool is empty");
            }
            for (i, f) in chunk.iter().enumerate() {
                let d = b.append(i, f.len() as u16).context("mbuf room")?;
                d.copy_from_slice(f);
            }
            let deadline = Instant::now() + Duration::from_millis(200);
            while !b.is_empty() && Instant::now() < deadline {
                b.tx(&mut ports[side], QueueId(q));
                *received += poll(ports, queues);
            }
            refused += b.len() as u64;
            b.clear();
        }
    }
    Ok(refused)
}

/// One receive burst per queue of every port; frames received.
fn poll(ports: &mut [Port], queues: u16) -> u64 {
    let mut n = 0;
    let mut b = Burst::<BURST>::new();
    for p in ports.iter_mut() {
        for q in 0..queues {
            n += b.rx(p, QueueId(q)) as u64;
            b.clear();
        }
    }
    n
}

/// `bench rss-gen`.
pub fn run(args: &RssGenArgs) -> anyhow::Result<()> {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: args.cpu }) {
        bail!("cannot bind the generator to CPU {}", args.cpu);
    }
    let eal_args = vec![
        "bench-rss-gen".to_string(),
        "--no-huge".into(),
        "-m".into(),
        "256".into(),
        "--no-shconf".into(),
        "--no-pci".into(),
        "--file-prefix".into(),
        args.file_prefix.clone(),
        "--lcores".into(),
        format!("0@{}", args.cpu),
        "--log-level".into(),
        "*:error".into(),
        "--vdev".into(),
        args.lan.clone(),
        "--vdev".into(),
        args.wan.clone(),
    ];
    let _eal = Eal::init(&eal_args).context("starting EAL")?;
    let pool = Mempool::new("rss_gen", 8191, 256, 2048).context("creating the pool")?;
    let conf = PortConfig {
        rx_queues: args.queues,
        tx_queues: args.queues,
        rx_desc: 1024,
        tx_desc: 1024,
        promiscuous: true,
    };
    let dev_name = |d: &str| d.split(',').next().unwrap_or(d).to_string();
    let mut ports = Vec::new();
    for dev in [&args.lan, &args.wan] {
        let id: PortId = Port::find(&dev_name(dev)).with_context(|| format!("port {dev}"))?;
        let mut port = Port::configure(id, &conf, &pool).with_context(|| format!("port {dev}"))?;
        port.start().with_context(|| format!("port {dev}"))?;
        ports.push(port);
    }
    let deadline = Instant::now() + Duration::from_secs(args.link_timeout_s);
    let mut next_retry = Instant::now() + Duration::from_secs(2);
    while !ports.iter().all(|p| p.link().up) {
        if Instant::now() >= deadline {
            bail!("links not up after {} s", args.link_timeout_s);
        }
        if Instant::now() >= next_retry {
            for p in ports.iter_mut().filter(|p| !p.link().up) {
                p.stop();
                p.start().context("restarting a port")?;
            }
            next_retry = Instant::now() + Duration::from_secs(2);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let rss = RssPlacement::default_for(args.queues, 64);
    let (lan_mac, wan_mac) = (ports[0].mac(), ports[1].mac());
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    let mut per_queue = vec![0u64; usize::from(args.queues)];
    for i in 0..args.flows {
        let client = [10, 0, (i >> 8) as u8, i as u8];
        let server = [198, 19, (i >> 8) as u8 & 0x3f, 1 + (i % 250) as u8];
        let sport = 1024 + (i % 60000) as u16;
        let req = udp_frame(lan_mac, wan_mac, client, sport, server, 53)?;
        let rep = udp_frame(wan_mac, lan_mac, server, 53, client, sport)?;
        let (qa, qb) = (rss.queue_of_frame(&req), rss.queue_of_frame(&rep));
        requests.push((qa, req));
        replies.push((qb, rep));
    }
    let started = Instant::now();
    let (mut sent, mut refused, mut received) = (0u64, 0u64, 0u64);
    for _ in 0..args.rounds {
        refused += send(&mut ports, 0, &requests, args.queues, &pool, &mut received)?;
        refused += send(&mut ports, 1, &replies, args.queues, &pool, &mut received)?;
        sent += 2 * u64::from(args.flows);
        for (q, _) in requests.iter().chain(&replies) {
            per_queue[usize::from(*q)] += 1;
        }
    }
    // Drain what is still on its way.
    let drain_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_until && received + refused < sent {
        received += poll(&mut ports, args.queues);
    }
    let took = started.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "sent": sent, "refused": refused, "received": received,
            "per_queue": per_queue, "seconds": took.as_secs_f64(),
        })
    );
    // The DUT closes its end first (see the live generator's note on
    // memif disconnects); wait for it.
    let hold_until = Instant::now() + Duration::from_secs(args.link_timeout_s);
    while ports.iter().any(|p| p.link().up) && Instant::now() < hold_until {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
