//! loom models of the ring's two handoffs (data over `tail`, slots back over
//! `head`). loom runs each closure under every interleaving (up to the
//! preemption bound) and every outcome the C++11 memory model allows for the
//! chosen orderings; its `UnsafeCell` fails the model when a slot read and a
//! slot write are not ordered by happens-before. The command is in the parent
//! module doc.

use super::{channel, Consumer};
use loom::thread;

/// Runs `f` under loom, with a preemption bound of 3 unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise (keeps the run under two minutes).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Pops until `count` items have arrived, yielding to the producer while the
/// ring is empty.
fn pop_exactly(c: &mut Consumer<u32>, count: usize) -> Vec<u32> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match c.pop() {
            Some(v) => got.push(v),
            None => thread::yield_now(),
        }
    }
    got
}

/// A burst pushed and published with one store is seen whole or not at all,
/// in order, while the consumer runs concurrently.
#[test]
fn loom_ring_batch_publish_against_concurrent_consumer() {
    model(|| {
        let (mut p, mut c) = channel::<u32>(4);
        let producer = thread::spawn(move || {
            for i in 0..3 {
                assert_eq!(p.push(i), Ok(()));
            }
            p.publish();
        });
        let mut out = [u32::MAX; 4];
        let n = c.pop_batch(&mut out);
        assert!(n == 0 || n == 3, "saw part of a published burst: {n}");
        let mut got = out[..n].to_vec();
        got.extend(pop_exactly(&mut c, 3 - n));
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(c.pop(), None);
        producer.join().unwrap();
    });
}

/// Two publishes: a batch pop sees a prefix made of whole bursts.
#[test]
fn loom_ring_pop_batch_sees_whole_bursts() {
    model(|| {
        let (mut p, mut c) = channel::<u32>(4);
        let producer = thread::spawn(move || {
            assert_eq!(p.push(0), Ok(()));
            assert_eq!(p.push(1), Ok(()));
            p.publish();
            assert_eq!(p.push(2), Ok(()));
            p.publish();
        });
        let mut out = [u32::MAX; 4];
        let n = c.pop_batch(&mut out);
        assert!(matches!(n, 0 | 2 | 3), "batch of {n} splits a burst");
        assert_eq!(&out[..n], &[0, 1, 2][..n]);
        producer.join().unwrap();
    });
}

/// A capacity-2 ring wraps around twice with producer and consumer running
/// concurrently: every slot is reused, so each reuse must be ordered after
/// the consumer's read of the previous item (write-after-read).
#[test]
fn loom_ring_wraps_around_with_capacity_two() {
    const COUNT: u32 = 5;
    model(|| {
        let (mut p, mut c) = channel::<u32>(2);
        let producer = thread::spawn(move || {
            for i in 0..COUNT {
                while p.push(i).is_err() {
                    thread::yield_now();
                }
                p.publish();
            }
        });
        let mut got = Vec::new();
        let mut out = [u32::MAX; 2];
        while got.len() < COUNT as usize {
            let n = c.pop_batch(&mut out);
            if n == 0 {
                thread::yield_now();
            }
            got.extend_from_slice(&out[..n]);
        }
        assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
        producer.join().unwrap();
    });
}

/// A full ring refuses (and hands back) the item; once the consumer frees a
/// slot, the producer's reload of `head` sees it and the item goes through,
/// into the slot the consumer just read.
#[test]
fn loom_ring_full_refusal_then_progress() {
    model(|| {
        let (mut p, mut c) = channel::<u32>(2);
        assert_eq!(p.push(0), Ok(()));
        assert_eq!(p.push(1), Ok(()));
        p.publish();
        // No consumer yet: the refusal is certain.
        assert_eq!(p.push(2), Err(2));
        let consumer = thread::spawn(move || pop_exactly(&mut c, 3));
        loop {
            match p.push(2) {
                Ok(()) => break,
                Err(item) => {
                    assert_eq!(item, 2);
                    thread::yield_now();
                }
            }
        }
        p.publish();
        assert_eq!(consumer.join().unwrap(), [0, 1, 2]);
    });
}
