//! Running Rust closures on EAL worker lcores: a trampoline over
//! `rte_eal_remote_launch` that catches panics (in builds that unwind).

use super::DpdkError;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

/// The worker lcores EAL was given (every enabled lcore but the main one),
/// in order.
pub fn worker_lcores() -> Vec<u32> {
    let mut out = Vec::new();
    // SAFETY: iteration over EAL's lcore table after init.
    let mut l = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
    while l < dpdk_sys::RTE_MAX_LCORE {
        out.push(l);
        // SAFETY: as above.
        l = unsafe { dpdk_sys::rte_get_next_lcore(l, 1, 0) };
    }
    out
}

/// A closure running on an lcore; [`LaunchHandle::join`] waits for it.
#[derive(Debug)]
#[must_use = "join the lcore before tearing DPDK down"]
pub struct LaunchHandle {
    lcore: u32,
    joined: bool,
}

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` came from Box::into_raw(Box<Job>) in `launch` and is
    // consumed exactly once here.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    catch_unwind(AssertUnwindSafe(move || (*job)())).unwrap_or(-1)
}

/// Runs `f` on worker lcore `lcore`. Its return value (or -1 if it
/// panicked) is what [`LaunchHandle::join`] returns.
pub fn launch<F>(lcore: u32, f: F) -> Result<LaunchHandle, DpdkError>
where
    F: FnOnce() -> i32 + Send + 'static,
{
    let job: Box<Job> = Box::new(Box::new(f));
    let arg = Box::into_raw(job).cast::<c_void>();
    // SAFETY: trampoline has the lcore_function_t signature; `arg` stays
    // valid until the trampoline consumes it.
    let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
    if rc < 0 {
        // SAFETY: the launch failed, so the trampoline never took `arg`.
        drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
        return Err(DpdkError::new(format!("launching on lcore {lcore}"), rc));
    }
    Ok(LaunchHandle {
        lcore,
        joined: false,
    })
}

impl LaunchHandle {
    /// Waits for the closure to return; gives its return code.
    pub fn join(mut self) -> i32 {
        self.joined = true;
        // SAFETY: the lcore was launched by us and is waited for once.
        unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) }
    }

    /// The lcore it runs on.
    pub fn lcore(&self) -> u32 {
        self.lcore
    }
}

impl Drop for LaunchHandle {
    fn drop(&mut self) {
        if !self.joined {
            // SAFETY: as join; never leave an lcore running past its handle.
            unsafe {
                dpdk_sys::rte_eal_wait_lcore(self.lcore);
            }
        }
    }
}
