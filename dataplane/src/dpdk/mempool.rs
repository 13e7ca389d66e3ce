//! Packet-buffer pools (`rte_pktmbuf_pool_create`).

use super::DpdkError;
use std::ffi::CString;
use std::ptr::NonNull;

/// A pool of mbufs. Thread-safe in DPDK (per-lcore caches); freed on drop,
/// which must happen after every port using it is closed.
#[derive(Debug)]
pub struct Mempool {
    ptr: NonNull<dpdk_sys::rte_mempool>,
}

// SAFETY: DPDK mempools are designed for concurrent use from many lcores
// (lock-free ring plus per-lcore caches).
unsafe impl Send for Mempool {}
// SAFETY: as above; shared references only allocate/free through DPDK.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `count` mbufs with `data_room` bytes each.
    pub fn new(name: &str, count: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::new("mempool name", 22))?;
        let data_room = data_room.max(dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16);
        // SAFETY: cname is a valid C string; the call has no other
        // preconditions beyond an initialised EAL, which callers hold.
        let ptr = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                count,
                cache,
                0,
                data_room,
                dpdk_sys::rte_socket_id() as i32,
            )
        };
        NonNull::new(ptr).map(|ptr| Mempool { ptr }).ok_or_else(|| {
            DpdkError::from_errno(format!("creating mempool {name} of {count} mbufs"))
        })
    }

    /// The raw pointer, for DPDK calls.
    pub fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.ptr.as_ptr()
    }

    /// Mbufs currently free in the pool.
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid for the life of self.
        unsafe { dpdk_sys::dpf_mempool_avail_count(self.ptr.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: the pool is valid and no longer used by ports (callers
        // close ports first).
        unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) }
    }
}
