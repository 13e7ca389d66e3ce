//! The per-packet decision: a frame in, a [`Verdict`] out. Pure Rust over
//! byte slices (no DPDK type), owned by one worker, so it is unit-tested and
//! benchmarked without EAL.
//!
//! A packet starts as `Drop(Unclassified)` and only an explicit decision
//! forwards it (fail closed).

use crate::counters::{DropReason, Verdict, WorkerCounters};
use crate::time::Instant;

/// Most ports dpf drives.
pub const MAX_PORTS: usize = 16;

/// Marks a port without an egress in wire mode.
pub const NO_EGRESS: u16 = u16::MAX;

/// What a worker's pipeline needs to know about the box.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Wire mode: the port each port's traffic leaves on (`NO_EGRESS` if
    /// unpaired).
    pub wire_peer: [u16; MAX_PORTS],
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            wire_peer: [NO_EGRESS; MAX_PORTS],
        }
    }
}

impl PipelineConfig {
    /// Cross-connects ports `a` and `b` (wire mode).
    pub fn pair(&mut self, a: u16, b: u16) {
        if let Some(x) = self.wire_peer.get_mut(a as usize) {
            *x = b;
        }
        if let Some(x) = self.wire_peer.get_mut(b as usize) {
            *x = a;
        }
    }
}

/// One worker's pipeline: configuration plus its single-writer counters.
#[derive(Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    /// This worker's counters.
    pub counters: WorkerCounters,
}

impl Pipeline {
    /// A pipeline for one worker.
    pub fn new(config: PipelineConfig) -> Pipeline {
        Pipeline {
            config,
            counters: WorkerCounters::default(),
        }
    }

    /// Decides the fate of one frame received on `in_port`. The frame may be
    /// rewritten in place (routing rewrites MACs and TTL).
    #[inline]
    pub fn process(&mut self, frame: &mut [u8], in_port: u16, _now: Instant) -> Verdict {
        let mut verdict = Verdict::Drop(DropReason::Unclassified);
        if frame.len() < 14 {
            verdict = Verdict::Drop(DropReason::BadHeader);
        } else if let Some(&peer) = self.config.wire_peer.get(in_port as usize) {
            if peer != NO_EGRESS {
                verdict = Verdict::Forward(peer);
            } else {
                verdict = Verdict::Drop(DropReason::NoEgress);
            }
        }
        match verdict {
            Verdict::Forward(_) => self.counters.forwarded += 1,
            Verdict::Drop(r) => self.counters.drop(r),
            Verdict::SlowPath => self.counters.slow_path += 1,
            Verdict::Handoff(_) => self.counters.handed_off += 1,
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_mode_forwards_to_the_peer_and_drops_unpaired() {
        let mut cfg = PipelineConfig::default();
        cfg.pair(0, 1);
        let mut p = Pipeline::new(cfg);
        let mut frame = [0u8; 60];
        assert_eq!(p.process(&mut frame, 0, Instant(0)), Verdict::Forward(1));
        assert_eq!(p.process(&mut frame, 1, Instant(0)), Verdict::Forward(0));
        assert_eq!(
            p.process(&mut frame, 2, Instant(0)),
            Verdict::Drop(DropReason::NoEgress)
        );
        assert_eq!(
            p.process(&mut frame[..10], 0, Instant(0)),
            Verdict::Drop(DropReason::BadHeader)
        );
        assert_eq!(p.counters.forwarded, 2);
        assert_eq!(p.counters.total_drops(), 2);
    }
}
