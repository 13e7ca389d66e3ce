//! `bench rss-gen`: a generator that behaves like a multi-queue NIC in
//! front of the device under test. It sends UDP conversations over two
//! links (LAN and WAN) of N queue pairs each, putting every frame on the
//! queue the symmetric Toeplitz hash and the redirection table pick for
//! it ([`dataplane::rss::RssPlacement`], the table dpf assumes for
//! `rx_placement = "toeplitz"`: 64 entries, entry i → queue i % N), and
//! counts what comes back on any queue. The links are memif or
//! vhost-user ([`rig::Transport`]); the DUT owns the sockets, the
//! generator connects to them.
//!
//! A round: every flow's request LAN → WAN, then every reply WAN → LAN
//! (so the DUT creates the states on the requests and matches them on the
//! replies). The generator runs a number of rounds, or rounds back to
//! back for a number of seconds (the rig sweep's timed mode); either way
//! it is paced by transmit: a burst the link refuses is retried (up to
//! 200 ms, then counted as refused) while the generator keeps receiving.
//! It prints one JSON line: frames sent (taken by the links) and refused,
//! received, sent per queue, and how long the sending took.
//!
//! [`rig`] is the pure part: devargs of both ends and CPU placement.

pub mod rig;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use dataplane::dpdk::{Burst, Eal, Mempool, Port, PortConfig, PortId, QueueId};
use dataplane::rss::RssPlacement;
use rig::{RigMemory, Transport};

/// Arguments of `bench rss-gen`.
#[derive(Debug, Clone, clap::Args)]
pub struct RssGenArgs {
    /// How the links reach the DUT: memif (the DUT is the server) or vhost
    /// (the DUT has net_vhost ports; the generator is virtio_user).
    #[arg(long, value_enum, default_value_t = Transport::Memif)]
    pub transport: Transport,
    /// Socket of the LAN link (created by the DUT).
    #[arg(long)]
    pub lan_socket: PathBuf,
    /// Socket of the WAN link (created by the DUT).
    #[arg(long)]
    pub wan_socket: PathBuf,
    /// Queue pairs per link (the DUT's workers).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub queues: u16,
    /// UDP conversations (each has its own client address).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub flows: u32,
    /// Rounds (a request and a reply per flow each) [default: 10].
    #[arg(long, conflicts_with = "seconds", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Send rounds back to back for this many seconds instead of a number
    /// of rounds.
    #[arg(long, value_parser = positive_seconds)]
    pub seconds: Option<f64>,
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

/// A number of seconds greater than zero (and not absurd).
fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!("{s}: seconds must be > 0 and at most 86400"))
    }
}

const BURST: usize = 32;

/// When the sending ends.
#[derive(Clone, Copy, Debug)]
enum Until {
    /// After this many rounds.
    Rounds(u32),
    /// At this instant (checked between bursts).
    Deadline(Instant),
}

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

/// What the sending counted.
#[derive(Debug, Default)]
struct Counts {
    /// Frames the links took.
    sent: u64,
    /// Frames given up on after 200 ms of refusals.
    refused: u64,
    /// Frames received back.
    received: u64,
    /// Frames taken per queue.
    per_queue: Vec<u64>,
}

/// Sends `frames[q]` on queue q of `ports[side]`, a burst at a time,
/// receiving on both ports meanwhile. Returns false when `deadline` passed
/// before everything was sent.
fn send(
    ports: &mut [Port],
    side: usize,
    frames: &[Vec<Vec<u8>>],
    pool: &Mempool,
    deadline: Option<Instant>,
    counts: &mut Counts,
) -> anyhow::Result<bool> {
    let queues = frames.len() as u16;
    for (q, mine) in frames.iter().enumerate() {
        for chunk in mine.chunks(BURST) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let mut b = Burst::<BURST>::new();
            if !b.alloc(pool, chunk.len()) {
                bail!("the generator's pool is empty");
            }
            for (i, f) in chunk.iter().enumerate() {
                let d = b.append(i, f.len() as u16).context("mbuf room")?;
                d.copy_from_slice(f);
            }
            let give_up = Instant::now() + Duration::from_millis(200);
            let mut taken = 0;
            loop {
                taken += b.tx(&mut ports[side], QueueId(q as u16));
                counts.received += poll(ports, queues);
                if b.is_empty() || Instant::now() >= give_up {
                    break;
                }
            }
            counts.sent += taken as u64;
            counts.per_queue[q] += taken as u64;
            counts.refused += b.len() as u64;
            b.clear();
        }
    }
    Ok(true)
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
    let devices: Vec<String> = [&args.lan_socket, &args.wan_socket]
        .iter()
        .enumerate()
        .map(|(i, s)| args.transport.generator_device(i, s, args.queues))
        .collect();
    let memory = RigMemory::for_queues(args.queues);
    let eal_args = crate::live::engine::generator_eal_args(
        "bench-rss-gen",
        u64::from(memory.eal_mb),
        &args.file_prefix,
        args.cpu,
        &devices,
    );
    let _eal = Eal::init(&eal_args).context("starting EAL")?;
    let pool = Mempool::new("rss_gen", memory.mbufs, 256, 2048).context("creating the pool")?;
    let conf = PortConfig {
        rx_queues: args.queues,
        tx_queues: args.queues,
        rx_desc: 1024,
        tx_desc: 1024,
        promiscuous: true,
    };
    let mut ports = Vec::new();
    for dev in &devices {
        let id: PortId =
            Port::find(Transport::device_name(dev)).with_context(|| format!("port {dev}"))?;
        let mut port = Port::configure(id, &conf, &pool).with_context(|| format!("port {dev}"))?;
        port.start().with_context(|| format!("port {dev}"))?;
        ports.push(port);
    }
    let deadline = Instant::now() + Duration::from_secs(args.link_timeout_s);
    let mut next_retry = Instant::now() + Duration::from_secs(2);
    while !ports.iter().all(|p| p.link().up) {
        if Instant::now() >= deadline {
            bail!(
                "links not up after {} s (is the DUT listening on {} and {}?)",
                args.link_timeout_s,
                args.lan_socket.display(),
                args.wan_socket.display()
            );
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
    // frames[side][queue]: side 0 the requests (LAN), 1 the replies (WAN).
    let queues = usize::from(args.queues);
    let mut frames = [vec![Vec::new(); queues], vec![Vec::new(); queues]];
    for i in 0..args.flows {
        let client = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let server = [198, 19, (i >> 8) as u8 & 0x3f, 1 + (i % 250) as u8];
        let sport = 1024 + (i % 60000) as u16;
        let req = udp_frame(lan_mac, wan_mac, client, sport, server, 53)?;
        let rep = udp_frame(wan_mac, lan_mac, server, 53, client, sport)?;
        frames[0][usize::from(rss.queue_of_frame(&req))].push(req);
        frames[1][usize::from(rss.queue_of_frame(&rep))].push(rep);
    }
    let started = Instant::now();
    let until = match (args.rounds, args.seconds) {
        (_, Some(s)) => Until::Deadline(started + Duration::from_secs_f64(s)),
        (Some(n), None) => Until::Rounds(n),
        (None, None) => Until::Rounds(10),
    };
    let stop_at = match until {
        Until::Deadline(d) => Some(d),
        Until::Rounds(_) => None,
    };
    let mut counts = Counts {
        per_queue: vec![0; queues],
        ..Counts::default()
    };
    let mut rounds = 0u32;
    loop {
        if let Until::Rounds(n) = until {
            if rounds == n {
                break;
            }
        }
        if !send(&mut ports, 0, &frames[0], &pool, stop_at, &mut counts)?
            || !send(&mut ports, 1, &frames[1], &pool, stop_at, &mut counts)?
        {
            break;
        }
        rounds += 1;
    }
    let took = started.elapsed();
    // Drain what is still on its way.
    let drain_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain_until && counts.received < counts.sent {
        counts.received += poll(&mut ports, args.queues);
    }
    println!(
        "{}",
        serde_json::json!({
            "transport": args.transport.name(),
            "sent": counts.sent, "refused": counts.refused, "received": counts.received,
            "per_queue": counts.per_queue, "rounds": rounds, "seconds": took.as_secs_f64(),
            "sent_mpps": counts.sent as f64 / took.as_secs_f64().max(1e-9) / 1e6,
        })
    );
    // The DUT closes its end first (see the live generator's note on
    // memif disconnects; a virtio_user link goes down the same way when
    // the vhost side exits); wait for it.
    let hold_until = Instant::now() + Duration::from_secs(args.link_timeout_s);
    while ports.iter().any(|p| p.link().up) && Instant::now() < hold_until {
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
