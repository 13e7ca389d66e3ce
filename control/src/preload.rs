//! Running a capture through the pipelines in exact packet order.
//!
//! Captures are read by [`crate::capture`]: pcapng with each interface's
//! timestamp resolution, or plain pcap (every packet on port 0).
//!
//! - `dpf --preload FILE.pcapng`: before the workers start, every packet is
//!   processed as if received on the port whose index is its pcapng
//!   interface id; forwarded packets are discarded (nothing is sent), the
//!   states they create stay. The benchmark harness sets up connections
//!   this way before the measured loop.
//! - `dpf --replay IN.pcapng --replay-out OUT.pcapng`: the same without
//!   DPDK at all, then exit: each forwarded packet is written to OUT with
//!   the egress port as its interface id, and the packet timestamps are the
//!   clock (so state expiry can be tested without waiting). Golden tests
//!   compare OUT with what pf semantics require.
//!
//! A packet is received by worker `port % workers` (a stand-in for RSS that
//! sends the two directions of a flow to different workers) and handed to
//! the owning worker exactly as on the fast path. Fragments are kept by
//! reassembly entry as a worker keeps their mbufs, and a completed
//! datagram is decided (and handed to its flow's owner) as a worker does.

use crate::slowpath::SlowPath;
use anyhow::{bail, Context, Result};
use dataplane::counters::Verdict;
use dataplane::pipeline::{Arrival, Pipeline};
use dataplane::ring::Consumer;
use dataplane::route::ResolveRequest;
use dataplane::time::Instant;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use std::path::Path;
use std::time::Duration;

/// Where time comes from while replaying.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    /// One fixed instant for every packet (preload).
    Fixed(Instant),
    /// Each packet's capture timestamp.
    Timestamps,
}

/// Processes every packet of `path` through `pipelines`; forwarded packets
/// go to `out` when given, pflog records to `pflog` when given. Returns the number of packets read.
pub fn run(
    path: &Path,
    pipelines: &mut [&mut Pipeline],
    clock: Clock,
    mut out: Option<&mut PcapNgWriter<std::fs::File>>,
    mut slow: Option<SlowPathHook<'_>>,
    mut overload: Option<(
        &mut [Consumer<dataplane::srcnodes::OverloadEvent>],
        &dataplane::rules::Ruleset,
    )>,
    mut pflog: Option<&mut crate::pflog::Logger>,
) -> Result<u64> {
    if pipelines.is_empty() {
        bail!("no workers");
    }
    let workers = pipelines.len();
    let mut reader = crate::capture::CaptureReader::open(path)?;
    let mut count = 0u64;
    // Packets waiting for their next hop's MAC: (worker, slot) -> frame,
    // as a worker keeps the mbufs.
    let mut awaiting: std::collections::HashMap<(usize, u16), Vec<u8>> =
        std::collections::HashMap::new();
    // Fragments under reassembly: (worker, entry) -> frame.
    let mut fragments: Fragments = std::collections::HashMap::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let (port, ts, data) = (packet.interface, packet.timestamp, packet.data);
        count += 1;
        let Ok(port) = u16::try_from(port) else {
            bail!("packet {count}: interface id {port} is not a port");
        };
        let now = match clock {
            Clock::Fixed(t) => t,
            Clock::Timestamps => Instant(ts.as_nanos() as u64),
        };
        // The control thread publishes on its own clock, between frames
        // too: a neighbour snapshot the slow path held back (at most one a
        // millisecond) is out before a frame that arrives after its time.
        if let Some(hook) = slow.as_mut() {
            if let Some(n) = hook.slowpath.take_snapshot(now) {
                publish(pipelines, n);
            }
        }
        let mut frame = data;
        // Cross-worker alias messages are applied between frames, as the
        // workers poll them between bursts.
        for p in pipelines.iter_mut() {
            p.poll_aliases();
        }
        // The worker the packet reaches: the queue a NIC's RSS picks for
        // it on a placed port, else by port.
        let receiver = match pipelines[0].placement() {
            dataplane::rss::Placement::Rss { rss, placed }
                if port < 64 && placed & (1 << port) != 0 =>
            {
                usize::from(rss.queue_of_frame(&frame)) % workers
            }
            _ => port as usize % workers,
        };
        let mut decider = receiver;
        let mut verdict = pipelines[receiver].process(&mut frame, port, now);
        if let Verdict::Handoff(owner) = verdict {
            let Some(p) = pipelines.get_mut(owner as usize) else {
                bail!("packet {count}: owner {owner} out of range");
            };
            decider = owner as usize;
            verdict = p.process_owned(&mut frame, port, now);
        }
        // The far key of a translated state another worker holds: sent on
        // once more, to that worker.
        if let Verdict::Handoff(owner) = verdict {
            let Some(p) = pipelines.get_mut(owner as usize) else {
                bail!("packet {count}: owner {owner} out of range");
            };
            decider = owner as usize;
            verdict = p.process_redirected(&mut frame, port, now);
        }
        // A `block return` answer goes out instead of the packet.
        if let Verdict::Reply(port) = verdict {
            frame = pipelines[decider].reply(0).to_vec();
            verdict = Verdict::Forward(port);
        }
        // Router mode: the slow path answers (ARP, ND, ICMP) and resolves
        // next hops, as the control thread does.
        if let Some(hook) = slow.as_mut() {
            let mut sent = Vec::new();
            if matches!(verdict, Verdict::SlowPath(_)) {
                hook.slowpath.handle(&frame, port, now, &mut sent);
            }
            for p in pipelines.iter_mut() {
                p.publish_requests();
            }
            for rx in hook.resolve.iter_mut() {
                while let Some(req) = rx.pop() {
                    hook.slowpath.resolve(req, now, &mut sent);
                }
            }
            hook.slowpath.poll(now, &mut sent);
            if let Some(n) = hook.slowpath.take_snapshot(now) {
                publish(pipelines, n);
            }
            // The box's own frames pass the `out` rules first, as the
            // worker that sends them filters them.
            for (port, mut f) in sent {
                let mut v = pipelines[0].process_local_out(&mut f, port, now);
                if let Verdict::Handoff(owner) = v {
                    if let Some(p) = pipelines.get_mut(owner as usize) {
                        v = p.process_local_out_owned(&mut f, port, now);
                    }
                }
                if let (Verdict::Forward(egress), Some(w)) = (v, out.as_deref_mut()) {
                    write(w, egress, ts, f)?;
                }
            }
        }
        if let Verdict::AwaitNeighbor(slot) = verdict {
            awaiting.insert((decider, slot), std::mem::take(&mut frame));
        }
        if let Verdict::Reassembly(entry) = verdict {
            fragments.insert((decider, entry), std::mem::take(&mut frame));
        }
        // Held packets whose next hop is now resolved go out (before this
        // one, as a worker sends them when the snapshot arrives); those
        // that waited too long are dropped.
        for (w, p) in pipelines.iter_mut().enumerate() {
            let mut go = Vec::new();
            p.release_awaiting(now, |slot, port, mac| go.push((slot, port, mac)));
            for (slot, port, mac) in go {
                let Some(mut f) = awaiting.remove(&(w, slot)) else {
                    continue;
                };
                if let (Some(mac), Some(w)) = (mac, out.as_deref_mut()) {
                    if let Some(dst) = f.get_mut(0..6) {
                        dst.copy_from_slice(&mac);
                    }
                    write(w, port, ts, f)?;
                }
            }
        }
        // The expiry sweep a worker runs between bursts.
        for p in pipelines.iter_mut() {
            p.expire(now, 64);
        }
        // `overload <table>`: the control thread's work, done before the
        // next packet.
        if let Some((rings, rules)) = overload.as_mut() {
            crate::srcnodes::poll_replay(rings, rules, pipelines);
        }
        drain_fragments(pipelines, &mut fragments, now, ts, out.as_deref_mut())?;
        // pflog: the logger thread's work, done after each packet.
        if let Some(l) = pflog.as_deref_mut() {
            l.drain().context("writing the pflog file")?;
        }
        if let (Verdict::Forward(egress), Some(w)) = (verdict, out.as_deref_mut()) {
            write(w, egress, ts, frame)?;
        }
    }
    Ok(count)
}

type Fragments = std::collections::HashMap<(usize, u32), Vec<u8>>;

/// What a worker does after a burst: frees the fragments the reassembly
/// tables dropped and decides the datagrams they completed (handing them
/// to their flow's owner as the worker does), writing what is forwarded.
fn drain_fragments(
    pipelines: &mut [&mut Pipeline],
    fragments: &mut Fragments,
    now: Instant,
    ts: Duration,
    mut out: Option<&mut PcapNgWriter<std::fs::File>>,
) -> Result<()> {
    let mut entries = [0u32; dataplane::frag::FRAGS_PER_DATAGRAM];
    for w in 0..pipelines.len() {
        pipelines[w].release_fragments(|e| {
            fragments.remove(&(w, e));
        });
        while let Some(ready) = pipelines[w].next_reassembled(&mut entries) {
            let mut frames: Vec<Vec<u8>> = entries[..ready.fragments]
                .iter()
                .filter_map(|e| fragments.remove(&(w, *e)))
                .collect();
            if frames.len() != ready.fragments {
                bail!("worker {w}: a reassembled datagram without its fragments");
            }
            let (mut decider, mut arrival) = (w, Arrival::Reassembled);
            loop {
                let mut refs: Vec<&mut [u8]> = frames.iter_mut().map(|f| &mut f[..]).collect();
                let v =
                    pipelines[decider].process_reassembled(&mut refs, ready.in_port, now, arrival);
                match v {
                    Verdict::Handoff(owner)
                        if arrival != Arrival::Redirected && (owner as usize) < pipelines.len() =>
                    {
                        decider = owner as usize;
                        arrival = match arrival {
                            Arrival::Reassembled => Arrival::Owned,
                            _ => Arrival::Redirected,
                        };
                        continue;
                    }
                    Verdict::Forward(port) => {
                        if let Some(w) = out.as_deref_mut() {
                            for f in frames.drain(..) {
                                write(w, port, ts, f)?;
                            }
                        }
                    }
                    Verdict::Reply(port) => {
                        if let Some(w) = out.as_deref_mut() {
                            write(w, port, ts, pipelines[decider].reply(0).to_vec())?;
                        }
                    }
                    _ => {}
                }
                break;
            }
        }
    }
    Ok(())
}

/// Gives every pipeline the neighbour snapshot `n`.
fn publish(pipelines: &mut [&mut Pipeline], n: dataplane::route::Neighbors) {
    let n = std::sync::Arc::new(n);
    for p in pipelines.iter_mut() {
        p.set_neighbors(std::sync::Arc::clone(&n));
    }
}

/// The control thread's part in a router-mode replay.
pub struct SlowPathHook<'a> {
    /// The slow path.
    pub slowpath: &'a mut SlowPath,
    /// The workers' resolve-request rings.
    pub resolve: &'a mut [Consumer<ResolveRequest>],
}

fn write(
    w: &mut PcapNgWriter<std::fs::File>,
    port: u16,
    ts: Duration,
    frame: Vec<u8>,
) -> Result<()> {
    let block = EnhancedPacketBlock {
        interface_id: port as u32,
        timestamp: ts,
        original_len: frame.len() as u32,
        data: frame.into(),
        options: vec![],
    };
    w.write_pcapng_block(block).context("writing the output")?;
    Ok(())
}

/// A pcapng writer with one Ethernet interface per port.
pub fn writer(path: &Path, ports: usize) -> Result<PcapNgWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = PcapNgWriter::new(file).context("writing the pcapng header")?;
    for _ in 0..ports {
        // Timestamps in nanoseconds, said so (the pcapng default is µs).
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 65535,
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        })
        .context("writing an interface block")?;
    }
    Ok(w)
}
