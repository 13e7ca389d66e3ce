//! `Burst`: up to `N` owned mbufs in a stack array, filled by a bulk
//! allocation or an rx burst and emptied by a tx burst, for programs that
//! move whole bursts through a port (the benchmark generator). dpf's worker
//! keeps its own l3fwd-shaped arrays.
//!
//! Invariants: the first `len` pointers are valid mbufs this burst owns
//! (nothing else frees them); dropping the burst or [`Burst::clear`] frees
//! them; rx and tx take the port by `&mut`, so one thread at a time polls
//! its queues, and check the queue index against the port's configuration.

use super::{Mempool, Port, QueueId};

/// Up to `N` owned mbufs.
pub struct Burst<const N: usize> {
    len: usize,
    mbufs: [*mut dpdk_sys::rte_mbuf; N],
}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> std::fmt::Debug for Burst<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst").field("len", &self.len).finish()
    }
}

impl<const N: usize> Burst<N> {
    /// An empty burst.
    pub const fn new() -> Self {
        Burst {
            len: 0,
            mbufs: [std::ptr::null_mut(); N],
        }
    }

    /// Mbufs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `n` empty mbufs from `pool`: all of them, or none (`false`)
    /// when the pool cannot supply them or the burst has no room.
    pub fn alloc(&mut self, pool: &Mempool, n: usize) -> bool {
        if n == 0 {
            return true;
        }
        if n > N - self.len {
            return false;
        }
        let slots = &mut self.mbufs[self.len..self.len + n];
        // SAFETY: `slots` has room for n pointers; the pool is valid for the
        // life of `pool`; on success DPDK fills all n with mbufs we now own.
        let rc = unsafe {
            dpdk_sys::dpf_pktmbuf_alloc_bulk(pool.as_ptr(), slots.as_mut_ptr(), n as u32)
        };
        if rc != 0 {
            return false;
        }
        self.len += n;
        true
    }

    /// Receives into the room left from rx queue `queue` of a started
    /// `port`; returns how many arrived (0 for a queue the port does not
    /// have, or a stopped port).
    pub fn rx(&mut self, port: &mut Port, queue: QueueId) -> usize {
        if queue.0 >= port.queues().0 || !port.is_started() || self.len == N {
            return 0;
        }
        let room = &mut self.mbufs[self.len..];
        // SAFETY: the port is started with this rx queue (checked above) and
        // `&mut Port` makes this thread its only poller; `room` has space
        // for room.len() pointers, which rx_burst fills with mbufs it gives us.
        let n = unsafe {
            dpdk_sys::dpf_eth_rx_burst(
                port.id().0,
                queue.0,
                room.as_mut_ptr(),
                room.len().min(u16::MAX as usize) as u16,
            )
        } as usize;
        self.len += n;
        n
    }

    /// Transmits the held mbufs on tx queue `queue` of a started `port`;
    /// returns how many the driver took. Those it refused stay in the burst
    /// (moved to the front), to retry or [`Burst::clear`].
    pub fn tx(&mut self, port: &mut Port, queue: QueueId) -> usize {
        if self.len == 0 || queue.0 >= port.queues().1 || !port.is_started() {
            return 0;
        }
        // SAFETY: the port is started with this tx queue, polled by this
        // thread only (`&mut Port`); the first len pointers are mbufs we own,
        // and tx_burst takes ownership of the ones it accepts (a prefix).
        let sent = unsafe {
            dpdk_sys::dpf_eth_tx_burst(
                port.id().0,
                queue.0,
                self.mbufs.as_mut_ptr(),
                self.len.min(u16::MAX as usize) as u16,
            )
        } as usize;
        self.mbufs.copy_within(sent..self.len, 0);
        self.len -= sent;
        sent
    }

    /// The data of mbuf `i`.
    pub fn data(&self, i: usize) -> Option<&[u8]> {
        if i >= self.len {
            return None;
        }
        // SAFETY: mbuf i is valid and owned by this burst; the shared borrow
        // of self prevents mutation meanwhile.
        Some(unsafe { super::mbuf::raw_data(self.mbufs[i]) })
    }

    /// The data of mbuf `i`, writable.
    pub fn data_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        if i >= self.len {
            return None;
        }
        // SAFETY: mbuf i is valid and exclusively ours through &mut self.
        Some(unsafe { super::mbuf::raw_data_mut(self.mbufs[i]) })
    }

    /// Appends `len` bytes to mbuf `i` and returns them (`None` if `i` is
    /// not held or its buffer has no room).
    pub fn append(&mut self, i: usize, len: u16) -> Option<&mut [u8]> {
        if i >= self.len {
            return None;
        }
        // SAFETY: mbuf i is valid and exclusively ours through &mut self.
        let p = unsafe { dpdk_sys::dpf_pktmbuf_append(self.mbufs[i], len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: DPDK returned `len` writable bytes inside mbuf i's buffer.
        Some(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len as usize) })
    }

    /// Frees every held mbuf.
    pub fn clear(&mut self) {
        for &m in &self.mbufs[..self.len] {
            // SAFETY: each is an mbuf we own; freed exactly once, then
            // forgotten by resetting len.
            unsafe { dpdk_sys::dpf_pktmbuf_free(m) };
        }
        self.len = 0;
    }
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        self.clear();
    }
}
