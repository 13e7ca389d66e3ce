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
use crate::wire::{Classified, WireError};
use crate::flow::{Af, Direction, PacketInfo};
use crate::pflog::{action, dir, reason, Record, AF_INET, AF_INET6};
use crate::ring::Producer;
use crate::rules::Decision;

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
