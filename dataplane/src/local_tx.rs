//! Frames of the box's own that must not be lost (pfsync packets: a bulk
//! update is sent once, and a state it misses stays missing on the peer
//! until its connection sends again).
//!
//! A worker's tx queue refuses frames when the link drains more slowly than
//! the box sends (a backup importing slowly behind a memif or virtio link,
//! a busy NIC). Forwarded traffic is dropped and counted then, as a router
//! does; these frames are kept instead ([`HeldTx`]), in order, and offered
//! to the tx queue again on every iteration. So that no worker ever holds
//! more than it has room for, the worker that takes them from the control
//! thread's ring takes only as many as every worker can still keep
//! ([`Credits`]): each frame may end on any worker (its flow's owner), which
//! counts it done when it has left (or was refused by the rules, or waited
//! [`STALE_NS`] on a dead link). The wait travels back through the ring to
//! the control thread's queue, which the bulk sender watches.

use crate::time::Instant;
use crossbeam_utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

/// Frames each worker may hold at most (taken from the control thread's
/// ring and not yet sent, on their way to it or waiting for its tx queue).
pub const HELD_MAX: usize = 256;

/// A held frame that the tx queue has refused for this long (the link is
/// down or the peer is gone) is dropped, with everything held behind it,
/// and counted `tx-full`: the wait must end somewhere. From then on the
/// port is taken for dead: what it refuses is dropped at once (nothing
/// piles up behind a gone peer), until it takes a frame again.
pub const STALE_NS: u64 = 1_000_000_000;

/// Per worker, how many of these frames it has finished (sent, refused by
/// the rules, or dropped stale). Written by that worker only, read by the
/// worker that takes frames from the control thread.
#[derive(Debug)]
pub struct Credits {
    done: Box<[CachePadded<AtomicU64>]>,
}

impl Credits {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> Credits {
        Credits {
            done: (0..workers.max(1))
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Workers counted.
    pub fn workers(&self) -> usize {
        self.done.len()
    }

    /// Publishes worker `w`'s finished count (its own running total).
    #[inline]
    pub fn publish_done(&self, w: usize, total: u64) {
        if let Some(d) = self.done.get(w) {
            d.store(total, Ordering::Release);
        }
    }

    /// Worker `w`'s finished count.
    #[inline]
    pub fn done(&self, w: usize) -> u64 {
        self.done.get(w).map_or(0, |d| d.load(Ordering::Acquire))
    }
}

/// The taking worker's side: how many frames it gave each worker.
#[derive(Debug)]
pub struct Taker {
    given: Box<[u64]>,
}

impl Taker {
    /// For `workers` workers.
    pub fn new(workers: usize) -> Taker {
        Taker {
            given: vec![0; workers.max(1)].into_boxed_slice(),
        }
    }

    /// How many frames may be taken now: as many as the fullest worker can
    /// still hold, at most `want`.
    pub fn room(&self, credits: &Credits, want: usize) -> usize {
        let mut room = want;
        for (w, &given) in self.given.iter().enumerate() {
            let in_flight = given.saturating_sub(credits.done(w));
            room = room.min(HELD_MAX.saturating_sub(in_flight as usize));
        }
        room
    }

    /// A frame was given to worker `w` (kept there or handed to it).
    pub fn gave(&mut self, w: usize) {
        if let Some(g) = self.given.get_mut(w) {
            *g += 1;
        }
    }
}

/// What [`HeldTx::flush`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Frames the tx queue took.
    pub sent: usize,
    /// Frames dropped after waiting [`STALE_NS`].
    pub stale: usize,
    /// Whether the tx queue refused a frame (it is still held).
    pub refused: bool,
    /// Whether this refusal began a wait (the flush before was taken
    /// whole): waits are counted, not the retries within one.
    pub began_wait: bool,
}

/// One worker's held frames, in order: `(frame, port)`. `M` is the mbuf
/// pointer in the worker and anything `Copy` in tests.
pub struct HeldTx<M: Copy> {
    frames: [M; HELD_MAX],
    ports: [u16; HELD_MAX],
    len: usize,
    /// When the tx queue last took one (or the first frame came).
    progress: Instant,
    /// Frames finished, published to [`Credits`].
    done: u64,
    /// The last flush was refused.
    waiting: bool,
    /// A wait ran out ([`STALE_NS`]) and the queue has taken nothing
    /// since: refused frames are dropped at once.
    dead: bool,
}

impl<M: Copy> HeldTx<M> {
    /// Empty; `fill` is any value of `M` (never read).
    pub fn new(fill: M) -> HeldTx<M> {
        HeldTx {
            frames: [fill; HELD_MAX],
            ports: [0; HELD_MAX],
            len: 0,
            progress: Instant(0),
            done: 0,
            waiting: false,
            dead: false,
        }
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frames held, first in line first.
    pub fn held(&self) -> &[M] {
        &self.frames[..self.len]
    }

    /// Frames finished so far (the value for [`Credits::publish_done`]).
    pub fn done(&self) -> u64 {
        self.done
    }

    /// A frame given to this worker that will not be sent (the rules
    /// refused it, or it could not be handed on): finished.
    pub fn finish_unsent(&mut self) {
        self.done += 1;
    }

    /// Holds `m` for `port`, behind what is already held. Returns `m` back
    /// when full (never, while the taker keeps to [`Taker::room`]).
    pub fn push(&mut self, m: M, port: u16, now: Instant) -> Result<(), M> {
        if self.len == HELD_MAX {
            return Err(m);
        }
        if self.len == 0 {
            self.progress = now;
        }
        self.frames[self.len] = m;
        self.ports[self.len] = port;
        self.len += 1;
        Ok(())
    }

    /// Offers the held frames to their tx queues in order, each run of one
    /// port in one call of `send(port, frames) -> taken`, until one refuses
    /// some (those stay, first in line). Frames that waited [`STALE_NS`]
    /// without the queue taking any are given to `drop_frame`.
    pub fn flush(
        &mut self,
        now: Instant,
        mut send: impl FnMut(u16, &mut [M]) -> usize,
        mut drop_frame: impl FnMut(M),
    ) -> Flushed {
        let mut f = Flushed::default();
        while self.len > 0 {
            let port = self.ports[0];
            let run = self.ports[..self.len]
                .iter()
                .take_while(|&&p| p == port)
                .count();
            let taken = send(port, &mut self.frames[..run]).min(run);
            if taken > 0 {
                self.frames.copy_within(taken..self.len, 0);
                self.ports.copy_within(taken..self.len, 0);
                self.len -= taken;
                self.done += taken as u64;
                f.sent += taken;
                self.progress = now;
                self.dead = false;
            }
            if taken < run {
                f.refused = true;
                break;
            }
        }
        f.began_wait = f.refused && !self.waiting && !self.dead;
        self.waiting = f.refused;
        if self.len > 0 && (self.dead || now.0.saturating_sub(self.progress.0) >= STALE_NS) {
            self.dead = true;
            for &m in &self.frames[..self.len] {
                drop_frame(m);
            }
            f.stale = self.len;
            self.done += self.len as u64;
            self.len = 0;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: u64) -> Instant {
        Instant(ms * 1_000_000)
    }

    #[test]
    fn refused_frames_stay_first_in_line_and_leave_in_order() {
        let mut h = HeldTx::new(0u32);
        for i in 0..10 {
            h.push(i, 1, at(0)).unwrap();
        }
        let mut wire = Vec::new();
        // The queue takes 3, then refuses.
        let f = h.flush(
            at(1),
            |_, fs| {
                wire.extend_from_slice(&fs[..3]);
                3
            },
            |_| panic!("nothing is stale"),
        );
        assert_eq!(
            f,
            Flushed {
                sent: 3,
                stale: 0,
                refused: true,
                began_wait: true
            }
        );
        assert_eq!(h.len(), 7);
        h.push(10, 1, at(2)).unwrap();
        let f = h.flush(
            at(3),
            |_, fs| {
                wire.extend_from_slice(fs);
                fs.len()
            },
            |_| panic!("nothing is stale"),
        );
        assert_eq!((f.sent, f.refused, f.began_wait), (8, false, false));
        assert_eq!(wire, (0..=10).collect::<Vec<u32>>());
        assert_eq!(h.done(), 11);
        assert!(h.is_empty());
    }

    #[test]
    fn each_run_of_one_port_goes_to_that_port_and_a_refusal_stops_the_rest() {
        let mut h = HeldTx::new(0u32);
        for (i, port) in [1u16, 1, 2, 2, 2, 1].into_iter().enumerate() {
            h.push(i as u32, port, at(0)).unwrap();
        }
        let mut calls = Vec::new();
        h.flush(
            at(0),
            |port, fs| {
                calls.push((port, fs.to_vec()));
                // Port 2 takes one of its three.
                if port == 2 {
                    1
                } else {
                    fs.len()
                }
            },
            |_| {},
        );
        assert_eq!(calls, vec![(1, vec![0, 1]), (2, vec![2, 3, 4])]);
        assert_eq!(h.len(), 3, "frame 5 waits behind 3 and 4");
    }

    #[test]
    fn a_queue_that_takes_nothing_for_a_second_ends_the_wait() {
        let mut h = HeldTx::new(0u32);
        h.push(7, 0, at(0)).unwrap();
        h.push(8, 0, at(500)).unwrap();
        let mut dropped = Vec::new();
        let f = h.flush(at(999), |_, _| 0, |m| dropped.push(m));
        assert_eq!((f.stale, f.refused, f.began_wait), (0, true, true));
        let f = h.flush(at(999), |_, _| 0, |m| dropped.push(m));
        assert!(f.refused && !f.began_wait, "one wait, counted once");
        let f = h.flush(at(1000), |_, _| 0, |m| dropped.push(m));
        assert_eq!(f.stale, 2);
        assert_eq!(dropped, vec![7, 8]);
        assert_eq!(h.done(), 2, "dropped frames are finished: credit returns");
        // The port is taken for dead: what it refuses now goes at once,
        // so nothing piles up behind a gone peer.
        h.push(9, 0, at(2000)).unwrap();
        let f = h.flush(at(2001), |_, _| 0, |m| dropped.push(m));
        assert_eq!((f.stale, f.began_wait), (1, false));
        assert!(h.is_empty());
        // Until it takes one again; then refusals wait once more.
        h.push(10, 0, at(3000)).unwrap();
        h.push(11, 0, at(3000)).unwrap();
        let f = h.flush(at(3000), |_, _| 1, |_| panic!("alive again"));
        assert_eq!((f.sent, f.refused, f.stale), (1, true, 0));
        let f = h.flush(at(3500), |_, _| 0, |_| panic!("waits, not dead"));
        assert_eq!((f.stale, h.len()), (0, 1));
    }

    #[test]
    fn a_full_holder_gives_the_frame_back() {
        let mut h = HeldTx::new(0u32);
        for i in 0..HELD_MAX as u32 {
            h.push(i, 0, at(0)).unwrap();
        }
        assert_eq!(h.push(999, 0, at(0)), Err(999));
    }

    #[test]
    fn the_taker_takes_only_what_the_fullest_worker_can_hold() {
        let credits = Credits::new(3);
        let mut t = Taker::new(3);
        assert_eq!(t.room(&credits, 32), 32);
        for _ in 0..HELD_MAX - 10 {
            t.gave(2);
        }
        assert_eq!(t.room(&credits, 32), 10);
        credits.publish_done(2, 100);
        assert_eq!(t.room(&credits, 32), 32);
        for _ in 0..100 {
            t.gave(2);
        }
        assert_eq!(t.room(&credits, 32), 10);
    }

    proptest! {
        /// Whatever the tx queue takes each time, every frame pushed is
        /// sent exactly once, in order, and nothing is held beyond
        /// HELD_MAX while the taker keeps to its room.
        #[test]
        fn nothing_is_lost_or_reordered(takes in proptest::collection::vec(0usize..40, 1..200)) {
            let credits = Credits::new(1);
            let mut taker = Taker::new(1);
            let mut h = HeldTx::new(0u32);
            let mut next = 0u32;
            let mut wire = Vec::new();
            for (round, take) in takes.iter().enumerate() {
                let room = taker.room(&credits, 32);
                for _ in 0..room {
                    h.push(next, 0, at(round as u64)).unwrap();
                    taker.gave(0);
                    next += 1;
                }
                h.flush(at(round as u64), |_, fs| {
                    let k = (*take).min(fs.len());
                    wire.extend_from_slice(&fs[..k]);
                    k
                }, |_| panic!("no frame waits a second here"));
                credits.publish_done(0, h.done());
                prop_assert!(h.len() <= HELD_MAX);
            }
            // Drain.
            h.flush(at(10_000), |_, fs| { wire.extend_from_slice(fs); fs.len() }, |_| {});
            prop_assert_eq!(wire, (0..next).collect::<Vec<u32>>());
        }
    }
}
