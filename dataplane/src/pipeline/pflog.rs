//! The worker's side of pflog: log events decided while a packet is
//! filtered are noted as [`Intents`] (fixed-size, no allocation), and once
//! the packet's verdict is known each becomes a [`Record`] with the
//! packet's first bytes, pushed into this worker's ring to the logger. A
//! full ring drops the record and counts `pflog_dropped`; nothing waits.
//!
//! Without a ring ([`Pipeline::set_pflog`] not called) nothing is noted:
//! the cost is one branch per decision.

use super::{Lookahead, Pipeline};
use crate::counters::Verdict;
use crate::flow::{Af, Direction, PacketInfo};
use crate::pflog::{action, dir, reason, Record, AF_INET, AF_INET6};
use crate::ring::Producer;
use crate::rules::Decision;
use crate::wire::{Classified, WireError};

/// Most log events one packet gives (both passes' rules and its state).
const MAX_INTENTS: usize = 8;

/// One log event of the packet being processed.
#[derive(Clone, Copy, Debug, Default)]
struct Intent {
    rule: u32,
    ifindex: u16,
    action: u8,
    dir: u8,
}

/// The log events of the packet being processed.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Intents {
    n: u8,
    /// Events that did not fit (or that the rules could not carry).
    lost: u8,
    af: u8,
    items: [Intent; MAX_INTENTS],
}

impl Intents {
    /// Notes a packet `pkt` passed by a `log (all)` state made by rule
    /// tag `rule_tag` (pf_test: `r->log & PF_LOG_ALL` of the state's
    /// rule).
    #[inline]
    pub(super) fn note_state(&mut self, rule_tag: u32, pkt: &PacketInfo) {
        self.af = af_of(pkt.af);
        self.push(Intent {
            rule: crate::rules::rule_nr_of_tag(rule_tag).unwrap_or(u32::MAX),
            ifindex: pkt.ifindex.0,
            action: action::PASS,
            dir: dir_of(pkt.dir),
        });
    }

    fn push(&mut self, i: Intent) {
        match self.items.get_mut(self.n as usize) {
            Some(slot) => {
                *slot = i;
                self.n += 1;
            }
            None => self.lost = self.lost.saturating_add(1),
        }
    }
}

fn dir_of(d: Direction) -> u8 {
    match d {
        Direction::In => dir::IN,
        Direction::Out => dir::OUT,
    }
}

fn af_of(af: Af) -> u8 {
    match af {
        Af::Inet => AF_INET,
        Af::Inet6 => AF_INET6,
    }
}

/// Where the IP header of an Ethernet frame starts (after one VLAN tag
/// at most), `None` for a frame too short.
fn l3_offset(frame: &[u8]) -> Option<usize> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    Some(if et == 0x8100 || et == 0x88a8 { 18 } else { 14 })
}

impl Pipeline {
    /// Hands this worker's log records to the logger through `ring`
    /// (turns pflog on for this worker).
    pub fn set_pflog(&mut self, ring: Producer<Record>) {
        self.pflog = Some(ring);
    }

    /// Notes the log events of a rule decision for `pkt` (evaluated on
    /// `pkt.ifindex` in `pkt.dir`).
    #[inline]
    pub(super) fn note_log_decision(&mut self, d: &Decision, pkt: &PacketInfo) {
        if self.pflog.is_none() || d.logged.is_empty() {
            return;
        }
        self.log_intents.af = af_of(pkt.af);
        self.log_intents.lost = self.log_intents.lost.saturating_add(d.logged.overflow);
        for l in d.logged.iter() {
            self.log_intents.push(Intent {
                rule: l.rule,
                ifindex: pkt.ifindex.0,
                action: l.action,
                dir: dir_of(pkt.dir),
            });
        }
    }

    /// [`Pipeline::decide_unlogged`], then the packet's log events go to
    /// the logger with the frame as it leaves the decision.
    #[inline]
    pub(super) fn decide(
        &mut self,
        frame: &mut [u8],
        in_port: u16,
        now: crate::time::Instant,
        owned: bool,
        classified: Result<Classified, WireError>,
        ahead: Option<&Lookahead>,
    ) -> Verdict {
        if self.pflog.is_none() {
            return self.decide_unlogged(frame, in_port, now, owned, classified, ahead);
        }
        self.clear_log();
        let v = self.decide_unlogged(frame, in_port, now, owned, classified, ahead);
        self.flush_log(frame, now);
        v
    }

    /// Forgets the log events noted so far (a new packet).
    #[inline]
    pub(super) fn clear_log(&mut self) {
        self.log_intents.n = 0;
        self.log_intents.lost = 0;
    }

    /// Sends the noted log events of the packet in `frame` (as it is now)
    /// to the logger.
    #[inline]
    pub(super) fn flush_log(&mut self, frame: &[u8], now: crate::time::Instant) {
        let it = self.log_intents;
        if it.n == 0 && it.lost == 0 {
            return;
        }
        self.clear_log();
        self.counters.pflog_dropped += it.lost as u64;
        let Some(ring) = self.pflog.as_mut() else {
            return;
        };
        let packet = match l3_offset(frame) {
            Some(o) if o <= frame.len() => &frame[o..],
            _ => &[][..],
        };
        for i in &it.items[..it.n as usize] {
            let rec = Record::new(
                now.0,
                i.rule,
                i.ifindex,
                i.action,
                reason::MATCH,
                i.dir,
                it.af,
                packet,
            );
            if ring.push(rec).is_ok() {
                self.counters.pflog_logged += 1;
            } else {
                self.counters.pflog_dropped += 1;
            }
        }
        ring.publish();
    }
}

#[cfg(test)]
mod tests {
    use crate::counters::Verdict;
    use crate::flow::IfIndex;
    use crate::pflog::{action, dir, Record, PACKET_SNAP};
    use crate::pipeline::{Pipeline, PipelineConfig};
    use crate::ring::channel;
    use crate::rules::{RuleEnv, Ruleset};
    use crate::state::Shard;
    use crate::time::Instant;
    use crate::wire::checksum;
    use std::sync::Arc;

    /// An Ethernet frame holding an IPv4 UDP datagram from 10.0.0.1:`sport`
    /// to 10.0.0.2:53 with 200 bytes of payload (more than a record keeps).
    fn udp4(sport: u16) -> Vec<u8> {
        let payload = 200;
        let mut f = vec![0u8; 14 + 20 + 8 + payload];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + 8 + payload) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
        let c = checksum::finish(checksum::data(ip));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
        f
    }

    fn pipeline(rules: &str) -> Pipeline {
        let env = RuleEnv {
            interfaces: &[("lan0", IfIndex(0)), ("wan0", IfIndex(1))],
            self_addrs: &[],
            names: &[],
        };
        let rules = Arc::new(Ruleset::compile(rules, "pflog.conf", &env).unwrap());
        let mut cfg = PipelineConfig::default();
        cfg.pair(0, 1);
        Pipeline::new(cfg, rules, Shard::new(1024, 0).unwrap())
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_never_waits() {
        let mut p = pipeline("block log all\n");
        let (ring, mut logger) = channel::<Record>(4);
        p.set_pflog(ring);
        // Nobody drains the ring: 4 records fit, the other 6 are dropped
        // and counted, and every packet is still decided (no waiting).
        for i in 0..10u16 {
            let mut f = udp4(1000 + i);
            let v = p.process(&mut f, 0, Instant::from_secs(1));
            assert!(!matches!(v, Verdict::Forward(_)), "{v:?}");
        }
        assert_eq!(p.counters.pflog_logged, 4);
        assert_eq!(p.counters.pflog_dropped, 6);
        // The records kept are the first four, truncated to the snap
        // length, each with its rule, action, direction and interface.
        let recs: Vec<Record> = std::iter::from_fn(|| logger.pop()).collect();
        assert_eq!(recs.len(), 4);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(
                (r.rule, r.action, r.dir, r.ifindex),
                (0, action::DROP, dir::IN, 0)
            );
            assert_eq!(r.orig_len, 228);
            assert_eq!(r.caplen as usize, PACKET_SNAP);
            assert_eq!(r.packet().len(), PACKET_SNAP);
            assert_eq!(r.packet()[20..22], (1000 + i as u16).to_be_bytes());
        }
        // Drained: the ring takes records again.
        let mut f = udp4(2000);
        p.process(&mut f, 0, Instant::from_secs(2));
        assert_eq!(p.counters.pflog_logged, 5);
        assert_eq!(p.counters.pflog_dropped, 6);
    }

    #[test]
    fn without_a_ring_or_a_log_rule_nothing_is_recorded() {
        let mut p = pipeline("block all\n");
        let (ring, mut logger) = channel::<Record>(4);
        p.set_pflog(ring);
        let mut f = udp4(1000);
        p.process(&mut f, 0, Instant::from_secs(1));
        assert!(logger.pop().is_none());
        assert_eq!((p.counters.pflog_logged, p.counters.pflog_dropped), (0, 0));
        let mut p = pipeline("block log all\n");
        p.process(&mut f, 0, Instant::from_secs(1));
        assert_eq!((p.counters.pflog_logged, p.counters.pflog_dropped), (0, 0));
    }
}
