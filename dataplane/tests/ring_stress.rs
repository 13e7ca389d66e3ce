//! Multi-threaded stress tests for `dataplane::ring`: a real producer thread
//! and a real consumer thread, millions of sequence numbers, random burst and
//! batch sizes.
//!
//! * Lossless: the producer retries on full (publishing first, then spinning),
//!   and the consumer checks it receives exactly `0, 1, 2, ...`: nothing
//!   lost, duplicated or reordered.
//! * Dropping: the producer drops on full and counts (as a worker does); the
//!   consumer checks the sequence is strictly increasing, and
//!   `received + dropped == sent` (and the same for the sums of the values,
//!   so a received value is one that was not dropped).
//!
//! The count is scaled down in debug builds (see [`SENT`]); the tests hold a lock so they never run concurrently with each other (two
//! spinning threads each would oversubscribe a small machine). A failing
//! thread raises a flag the other checks while waiting, and waits have a
//! deadline, so a broken ring fails the test instead of hanging it.

#![cfg(not(loom))]

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use dataplane::ring::{channel, Consumer, Producer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Sequence numbers sent per test. Scaled down in debug builds so the file
/// stays well under 10 s on a loaded 2-core machine (about 0.3 s per million
/// items idle, several times that when other builds compete for the cores).
#[cfg(not(debug_assertions))]
const SENT: u64 = 5_000_000;
#[cfg(debug_assertions)]
const SENT: u64 = 2_000_000;

/// Producer bursts are `1..=MAX_BURST` items, published once each.
const MAX_BURST: u64 = 64;
/// Consumer batches are `1..=MAX_BATCH` items.
const MAX_BATCH: usize = 32;

/// Serialises the tests in this file (see the module doc).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serialise() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next test may still run.
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long one test may run before it is declared stuck (a lost publish or
/// a lost slot would otherwise spin forever).
const DEADLINE: Duration = Duration::from_secs(120);

/// Shared by both threads of a test: raised when either panics, so the other
/// stops waiting for a peer that is gone and the test fails instead of hanging.
#[derive(Clone, Default)]
struct Abort(Arc<AtomicBool>);

impl Abort {
    fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that raises the flag if its thread unwinds.
    fn on_panic(&self) -> RaiseOnPanic {
        RaiseOnPanic(self.clone())
    }
}

struct RaiseOnPanic(Abort);

impl Drop for RaiseOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0 .0.store(true, Ordering::Relaxed);
        }
    }
}

/// Busy-waiting for the peer thread.
struct Waiter {
    spins: u32,
    abort: Abort,
    deadline: Instant,
}

impl Waiter {
    fn new(abort: &Abort) -> Waiter {
        Waiter {
            spins: 0,
            abort: abort.clone(),
            deadline: Instant::now() + DEADLINE,
        }
    }

    /// Waits a moment: spins, and every 256th call yields to the OS (so a
    /// descheduled peer on a busy machine gets to run) and checks on the
    /// peer. Returns `false` when the peer has panicked; panics past the
    /// deadline.
    fn wait(&mut self) -> bool {
        self.spins = self.spins.wrapping_add(1);
        if self.spins & 0xff != 0 {
            spin_loop();
            return true;
        }
        thread::yield_now();
        assert!(Instant::now() < self.deadline, "stuck waiting for the peer");
        !self.abort.raised()
    }
}

/// Takes up to a random number of items: a single `pop` one time in eight,
/// otherwise a `pop_batch` of random size. Returns how many were written to
/// the front of `out`.
fn take_some(c: &mut Consumer<u64>, rng: &mut SmallRng, out: &mut [u64; MAX_BATCH]) -> usize {
    if rng.gen_ratio(1, 8) {
        match c.pop() {
            Some(v) => {
                out[0] = v;
                1
            }
            None => 0,
        }
    } else {
        let want = rng.gen_range(1..=MAX_BATCH);
        c.pop_batch(&mut out[..want])
    }
}

/// Sends `0..SENT` in random bursts, retrying on full; returns how many
/// pushes were refused (and retried).
fn produce_lossless(mut p: Producer<u64>, seed: u64, abort: &Abort) -> u64 {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut waiter = Waiter::new(abort);
    let mut refused = 0u64;
    let mut next = 0u64;
    while next < SENT {
        let burst = rng.gen_range(1..=MAX_BURST).min(SENT - next);
        for _ in 0..burst {
            while let Err(item) = p.push(next) {
                assert_eq!(item, next, "a refused push returns its item");
                // The ring may be full of our own unpublished items: make
                // them visible, or the consumer can never make room.
                p.publish();
                refused += 1;
                if !waiter.wait() {
                    return refused;
                }
            }
            next += 1;
        }
        p.publish();
    }
    refused
}

/// Receives until `0..SENT` has arrived, checking each item; returns how many
/// arrived and the consumer end.
fn consume_lossless(mut c: Consumer<u64>, seed: u64, abort: &Abort) -> (u64, Consumer<u64>) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut waiter = Waiter::new(abort);
    let mut out = [u64::MAX; MAX_BATCH];
    let mut expected = 0u64;
    while expected < SENT {
        let n = take_some(&mut c, &mut rng, &mut out);
        if n == 0 {
            if !waiter.wait() {
                break;
            }
            continue;
        }
        for &v in &out[..n] {
            assert_eq!(v, expected, "item lost, duplicated or reordered");
            expected += 1;
        }
    }
    (expected, c)
}

fn run_lossless(capacity: usize, seed: u64) {
    let _serial = serialise();
    let abort = Abort::default();
    let (p, c) = channel::<u64>(capacity);
    let producer = thread::spawn({
        let abort = abort.clone();
        move || {
            let _guard = abort.on_panic();
            produce_lossless(p, seed, &abort)
        }
    });
    let consumer = thread::spawn({
        let abort = abort.clone();
        move || {
            let _guard = abort.on_panic();
            consume_lossless(c, seed ^ 0xc0ffee, &abort)
        }
    });
    let refused = producer.join();
    let consumed = consumer.join();
    let (received, mut c) = consumed.expect("consumer thread");
    let refused = refused.expect("producer thread");
    assert_eq!(received, SENT);
    assert_eq!(c.pop(), None, "nothing beyond what was sent");
    // With bursts larger than the ring the producer must have waited.
    if capacity < MAX_BURST as usize {
        assert!(refused > 0, "a ring of {capacity} never filled up");
    }
}

#[test]
fn lossless_through_a_roomy_ring() {
    run_lossless(1024, 1);
}

#[test]
fn lossless_through_a_tiny_ring() {
    // Smaller than a burst: every large burst fills the ring mid-burst.
    run_lossless(8, 2);
}

#[test]
fn dropping_producer_accounts_for_every_item() {
    // Smaller than the largest burst, so drops are certain: unpublished items
    // occupy slots and the consumer cannot free them mid-burst.
    const CAPACITY: usize = 32;
    let _serial = serialise();
    let abort = Abort::default();
    let (mut p, mut c) = channel::<u64>(CAPACITY);
    let done = Arc::new(AtomicBool::new(false));

    let producer = thread::spawn({
        let (abort, done) = (abort.clone(), Arc::clone(&done));
        move || {
            let _guard = abort.on_panic();
            let mut rng = SmallRng::seed_from_u64(3);
            let (mut dropped, mut dropped_sum) = (0u64, 0u128);
            let mut next = 0u64;
            while next < SENT {
                let burst = rng.gen_range(1..=MAX_BURST).min(SENT - next);
                for _ in 0..burst {
                    if let Err(item) = p.push(next) {
                        assert_eq!(item, next, "a refused push returns its item");
                        dropped += 1;
                        dropped_sum += u128::from(item);
                    }
                    next += 1;
                }
                p.publish();
            }
            // Everything published happens-before the consumer sees `done`.
            done.store(true, Ordering::Release);
            (dropped, dropped_sum)
        }
    });

    let consumer = thread::spawn({
        let abort = abort.clone();
        move || {
            let _guard = abort.on_panic();
            let mut rng = SmallRng::seed_from_u64(4);
            let mut waiter = Waiter::new(&abort);
            let mut out = [u64::MAX; MAX_BATCH];
            let (mut received, mut received_sum) = (0u64, 0u128);
            let mut last: Option<u64> = None;
            loop {
                // Read the flag before popping: if it was set and the ring is
                // then empty, the producer published everything it ever will.
                let finished = done.load(Ordering::Acquire);
                let n = take_some(&mut c, &mut rng, &mut out);
                if n == 0 {
                    if finished || !waiter.wait() {
                        break;
                    }
                    continue;
                }
                for &v in &out[..n] {
                    assert!(v < SENT, "value {v} was never sent");
                    if let Some(prev) = last {
                        assert!(v > prev, "{v} after {prev}: duplicated or reordered");
                    }
                    last = Some(v);
                    received += 1;
                    received_sum += u128::from(v);
                }
            }
            (received, received_sum)
        }
    });

    let produced = producer.join();
    let consumed = consumer.join();
    let (dropped, dropped_sum) = produced.expect("producer thread");
    let (received, received_sum) = consumed.expect("consumer thread");
    assert_eq!(
        received + dropped,
        SENT,
        "received {received}, dropped {dropped}"
    );
    let sent_sum = u128::from(SENT) * u128::from(SENT - 1) / 2;
    assert_eq!(
        received_sum + dropped_sum,
        sent_sum,
        "a dropped item was received"
    );
    assert!(dropped > 0, "a ring of {CAPACITY} never overflowed");
    assert!(received > 0, "nothing got through");
}
