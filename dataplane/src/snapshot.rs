//! Immutable configuration snapshots swapped atomically (RCU style).
//!
//! The control thread publishes a new `Arc<T>` with [`Snapshot::publish`];
//! workers check [`Snapshot::epoch`] once per burst (one relaxed load) and
//! take the new value only when the epoch moved, so the common case costs
//! nothing and no worker ever blocks. Old values are freed when the last
//! worker drops its `Arc`.

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A value that workers read and the control thread replaces.
#[derive(Debug)]
pub struct Snapshot<T> {
    epoch: AtomicU64,
    value: ArcSwap<T>,
}

impl<T> Snapshot<T> {
    /// A snapshot holding `value` at epoch 0.
    pub fn new(value: Arc<T>) -> Snapshot<T> {
        Snapshot {
            epoch: AtomicU64::new(0),
            value: ArcSwap::new(value),
        }
    }

    /// Replaces the value; returns the new epoch.
    pub fn publish(&self, value: Arc<T>) -> u64 {
        self.value.store(value);
        self.epoch.fetch_add(1, Ordering::Release) + 1
    }

    /// The current epoch (changes on every publish).
    #[inline(always)]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The current value.
    pub fn load(&self) -> Arc<T> {
        self.value.load_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_moves_the_epoch_and_the_value() {
        let s = Snapshot::new(Arc::new(1));
        assert_eq!(s.epoch(), 0);
        assert_eq!(*s.load(), 1);
        assert_eq!(s.publish(Arc::new(2)), 1);
        assert_eq!(s.epoch(), 1);
        assert_eq!(*s.load(), 2);
    }
}
