//! `MbufRing`: a DPDK `rte_ring` of mbuf pointers, multi-producer
//! single-consumer — the slow-path ring from workers to the control thread.
//! Full means the producer frees the mbuf and counts a drop.

use super::{DpdkError, RawMbuf};
use std::ffi::CString;
use std::ptr::NonNull;

/// A bounded MPSC ring of mbufs. Producers (workers) share it by reference;
/// the single consumer is the thread that calls [`MbufRing::dequeue_burst`]
/// (the control thread): the caller must keep to one consumer.
#[derive(Debug)]
pub struct MbufRing {
    ptr: NonNull<dpdk_sys::rte_ring>,
    capacity: usize,
}

// SAFETY: rte_ring's multi-producer enqueue is thread-safe; the
// single-consumer side is used by one thread by contract (documented).
unsafe impl Send for MbufRing {}
// SAFETY: as above.
unsafe impl Sync for MbufRing {}

impl MbufRing {
    /// Creates a ring that holds `capacity` mbufs (rounded up to a power of
    /// two minus one, DPDK's convention).
    pub fn new(name: &str, capacity: u32) -> Result<MbufRing, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::new("ring name", 22))?;
        let size = (capacity + 1).next_power_of_two();
        // SAFETY: valid C string; flags 0 = multi-producer; the consumer
        // uses the single-consumer dequeue explicitly.
        let p = unsafe {
            dpdk_sys::rte_ring_create(cname.as_ptr(), size, dpdk_sys::rte_socket_id() as i32, 0)
        };
        NonNull::new(p)
            .map(|ptr| MbufRing {
                ptr,
                capacity: size as usize - 1,
            })
            .ok_or_else(|| DpdkError::from_errno(format!("creating ring {name}")))
    }

    /// Enqueues as many of `mbufs` as fit; returns how many were taken
    /// (ownership of those passes to the ring). Callable from any thread.
    #[inline]
    pub fn enqueue_burst(&self, mbufs: &[RawMbuf]) -> usize {
        // SAFETY: the ring is valid; RawMbuf is a transparent pointer so the
        // slice is an array of `void *`; multi-producer enqueue is MT-safe.
        unsafe {
            dpdk_sys::dpf_ring_mp_enqueue_burst(
                self.ptr.as_ptr(),
                mbufs.as_ptr().cast::<*mut std::os::raw::c_void>(),
                mbufs.len() as u32,
                std::ptr::null_mut(),
            ) as usize
        }
    }

    /// Dequeues up to `out.len()` mbufs; the caller owns them. Only one
    /// thread may call this.
    pub fn dequeue_burst(&self, out: &mut [RawMbuf]) -> usize {
        // SAFETY: valid ring; `out` has room for out.len() pointers; single
        // consumer by the documented contract.
        unsafe {
            dpdk_sys::dpf_ring_sc_dequeue_burst(
                self.ptr.as_ptr(),
                out.as_mut_ptr().cast::<*mut std::os::raw::c_void>(),
                out.len() as u32,
                std::ptr::null_mut(),
            ) as usize
        }
    }

    /// Mbufs waiting.
    pub fn len(&self) -> usize {
        // SAFETY: valid ring.
        unsafe { dpdk_sys::dpf_ring_count(self.ptr.as_ptr()) as usize }
    }

    /// Room for this many more mbufs (a snapshot: producers on other
    /// threads may take it).
    #[inline]
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.len())
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for MbufRing {
    fn drop(&mut self) {
        let mut buf = [RawMbuf(std::ptr::null_mut()); 32];
        loop {
            let n = self.dequeue_burst(&mut buf);
            if n == 0 {
                break;
            }
            for m in &buf[..n] {
                // SAFETY: dequeued mbufs are owned by us.
                unsafe { dpdk_sys::dpf_pktmbuf_free(m.0) };
            }
        }
        // SAFETY: the ring is valid and empty; nobody uses it any more.
        unsafe { dpdk_sys::rte_ring_free(self.ptr.as_ptr()) }
    }
}
