//! Safe wrappers over `dpdk-sys`: EAL lifetime, mempools, mbufs, bursts
//! of mbufs, ports, `rte_ring`s of mbufs, and launching Rust closures on
//! EAL lcores.
//!
//! Every `unsafe` block in this module tree carries a `// SAFETY:` line. C
//! return codes go through [`check`], which reads `rte_errno` when DPDK
//! reports failure through it.

mod burst;
mod eal;
mod lcore;
pub mod mbuf;
mod mempool;
mod port;
mod rte_ring;

pub use burst::Burst;
pub use eal::Eal;
pub use lcore::{launch, worker_lcores, LaunchHandle};
pub use mbuf::{Mbuf, RawMbuf};
pub use mempool::Mempool;
pub use port::{LinkStatus, Port, PortConfig, PortId, PortStats, QueueId};
pub use rte_ring::MbufRing;

use std::ffi::CStr;

/// A failed DPDK call: which operation, DPDK's error code and its text.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {msg} (error {code})")]
pub struct DpdkError {
    /// The operation that failed, in words.
    pub op: String,
    /// The (positive) errno value.
    pub code: i32,
    /// `rte_strerror(code)`.
    pub msg: String,
}

impl DpdkError {
    /// An error for `op` with errno `code` (sign ignored).
    pub fn new(op: impl Into<String>, code: i32) -> DpdkError {
        let code = code.abs();
        // SAFETY: rte_strerror returns a pointer to a static or thread-local
        // NUL-terminated string valid until the next call on this thread; we
        // copy it out immediately.
        let msg = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(code)) }
            .to_string_lossy()
            .into_owned();
        DpdkError {
            op: op.into(),
            code,
            msg,
        }
    }

    /// An error for `op` from the current `rte_errno`.
    pub fn from_errno(op: impl Into<String>) -> DpdkError {
        DpdkError::new(op, errno())
    }
}

/// The calling thread's `rte_errno`.
pub fn errno() -> i32 {
    // SAFETY: the shim reads a thread-local int; no preconditions.
    unsafe { dpdk_sys::dpf_errno() }
}

/// Maps a DPDK return code (negative errno on failure) to a `Result`.
pub fn check(op: &str, rc: i32) -> Result<i32, DpdkError> {
    if rc < 0 {
        Err(DpdkError::new(op, rc))
    } else {
        Ok(rc)
    }
}

/// Reads the TSC.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no preconditions.
    unsafe { dpdk_sys::dpf_rdtsc() }
}

/// TSC ticks per second, as EAL measured them.
pub fn tsc_hz() -> u64 {
    // SAFETY: valid after EAL init (callers hold an `Eal`); returns a u64.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}
