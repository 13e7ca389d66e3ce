//! The control thread's side of source tracking: `overload <table>`
//! events from the workers become table entries (published to the workers
//! like a `dpfctl -T add`) and, with `flush`, kills of the source's states
//! on every worker.
//!
//! Delay: a worker publishes its event with the packet that overloads;
//! the control loop takes it on its next round (at most ~1 ms later, its
//! idle tick) and publishes the table at once; the workers take the new
//! table at their next burst. The offender's next connection within that
//! millisecond still passes the `block` rule (its handshake counts against
//! the same limits and is refused its state there). In replay the table
//! changes before the next packet.

use dataplane::command::{Command, CommandClient, StateFilter};
use dataplane::pipeline::Pipeline;
use dataplane::ring::Consumer;
use dataplane::rules::table::{TableAddr, TableChange};
use dataplane::rules::{OverloadFlush, Ruleset};
use dataplane::srcnodes::{LimitCounter, OverloadEvent, SourceTable};
use std::collections::VecDeque;

/// Kills waiting for room on a worker's command ring, at most (beyond, a
/// flush is dropped and logged: the source is in the table anyway).
const PENDING_FLUSHES_MAX: usize = 4096;

/// Adds the event's source to its overload table; true if it was not
/// there. Errors (the table is gone after a reload, const) are logged.
pub fn add_to_table(rules: &Ruleset, ev: &OverloadEvent, now_s: u64) -> bool {
    let set = rules.table_set();
    let Some((i, t)) = set.find(ev.table()) else {
        crate::log!(
            crate::log::Level::Warning,
            "overload: table <{}> does not exist: {} not added",
            ev.table(),
            ev.addr.to_ip(ev.af)
        );
        return false;
    };
    let host = TableAddr::new(ev.af, u128::from_be_bytes(ev.addr.0), 128, false);
    let change = TableChange::Add(vec![host]);
    match t.apply(&change, now_s) {
        Ok((nt, counts)) => {
            if counts.added == 0 {
                return false;
            }
            if let Err(e) = rules.publish_tables(set.with_table(i, nt)) {
                crate::log!(crate::log::Level::Err, "overload: {e}");
                return false;
            }
            crate::log!(
                crate::log::Level::Notice,
                "overload: {} added to table <{}>",
                ev.addr.to_ip(ev.af),
                ev.table()
            );
            true
        }
        Err(e) => {
            crate::log!(crate::log::Level::Warning, "overload: {e}");
            false
        }
    }
}

/// The states an event's `flush` kills, if any.
pub fn flush_filter(ev: &OverloadEvent) -> Option<StateFilter> {
    let rule = match ev.flush {
        OverloadFlush::None => return None,
        OverloadFlush::Rule => Some(ev.rule),
        OverloadFlush::Global => None,
    };
    Some(StateFilter::Source {
        af: ev.af,
        addr: ev.addr,
        rule,
    })
}

/// The daemon's overload handling: the workers' event rings and the
/// kills waiting for room on their command rings.
pub struct Overloads {
    rings: Vec<Consumer<OverloadEvent>>,
    pending: VecDeque<StateFilter>,
}

impl Overloads {
    /// Over the workers' event rings.
    pub fn new(rings: Vec<Consumer<OverloadEvent>>) -> Overloads {
        Overloads {
            rings,
            pending: VecDeque::new(),
        }
    }

    /// One round: tables first (so the next connection is blocked as
    /// soon as possible), then the kills; drops the answers of earlier
    /// kills. Returns whether anything happened.
    pub fn poll(
        &mut self,
        rules: &Ruleset,
        sources: &SourceTable,
        workers: &mut [CommandClient],
    ) -> bool {
        let mut busy = false;
        let now_s = crate::ctl::handler::unix_now();
        for ring in &mut self.rings {
            while let Some(ev) = ring.pop() {
                busy = true;
                add_to_table(rules, &ev, now_s);
                if let Some(f) = flush_filter(&ev) {
                    sources.count(LimitCounter::OverloadFlush);
                    if self.pending.len() < PENDING_FLUSHES_MAX {
                        self.pending.push_back(f);
                    } else {
                        crate::log!(
                            crate::log::Level::Warning,
                            "overload: too many flushes pending: states of {} not flushed",
                            ev.addr.to_ip(ev.af)
                        );
                    }
                }
            }
        }
        'pending: while let Some(f) = self.pending.front().copied() {
            // Sent to every worker or, when one ring is full, retried
            // whole next round (a kill twice is harmless).
            if workers.iter_mut().any(|c| !c.has_room()) {
                break 'pending;
            }
            for c in workers.iter_mut() {
                let _ = c.send_orphan(Command::KillMatching(f));
            }
            self.pending.pop_front();
            busy = true;
        }
        for c in workers.iter_mut() {
            c.reap();
        }
        busy
    }
}

/// Replay's control thread: the same over the pipelines directly (tables
/// and kills take effect before the next packet).
pub fn poll_replay(
    rings: &mut [Consumer<OverloadEvent>],
    rules: &Ruleset,
    pipelines: &mut [&mut Pipeline],
) {
    for ring in rings.iter_mut() {
        while let Some(ev) = ring.pop() {
            add_to_table(rules, &ev, 0);
            if let Some(f) = flush_filter(&ev) {
                for p in pipelines.iter_mut() {
                    let mut cursor = Some(0);
                    while let Some(c) = cursor {
                        cursor = p
                            .kill_states(
                                c,
                                dataplane::command::SLOTS_PER_POLL,
                                |st| f.matches(st, &[]),
                                true,
                            )
                            .0;
                    }
                }
            }
        }
    }
}
