//! EAL lifetime: initialised exactly once per process from an argument list,
//! cleaned up when the [`Eal`] guard drops.

use super::DpdkError;
use std::ffi::CString;
use std::os::raw::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

static EAL_INITIALISED: AtomicBool = AtomicBool::new(false);

/// Proof that EAL is running. Dropping it calls `rte_eal_cleanup`; drop it
/// only after every port, ring and mempool is gone.
#[derive(Debug)]
pub struct Eal {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl Eal {
    /// Initialises EAL with `args` (argv\[0\] included). Fails if EAL was
    /// already initialised in this process or DPDK refuses the arguments.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if EAL_INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError {
                op: "rte_eal_init".into(),
                code: libc_ealready(),
                msg: "EAL is already initialised in this process".into(),
            });
        }
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_ref()))
            .collect::<Result<_, _>>()
            .map_err(|_| DpdkError {
                op: "rte_eal_init".into(),
                code: 22,
                msg: "an EAL argument contains a NUL byte".into(),
            })?;
        // EAL may permute argv; it keeps pointers into it for the process
        // lifetime, so the strings are leaked deliberately (start-up only).
        let mut argv: Vec<*mut c_char> = owned.into_iter().map(CString::into_raw).collect();
        let argc = argv.len() as i32;
        // SAFETY: argv holds argc valid NUL-terminated strings that live for
        // the rest of the process (leaked above); EAL is not yet initialised.
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        std::mem::forget(argv);
        if rc < 0 {
            return Err(DpdkError::from_errno("rte_eal_init"));
        }
        Ok(Eal {
            _not_send: core::marker::PhantomData,
        })
    }
}

const fn libc_ealready() -> i32 {
    114
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: valid after init; returns a pointer to EAL's static buffer.
        let dir = unsafe { std::ffi::CStr::from_ptr(dpdk_sys::rte_eal_get_runtime_dir()) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: EAL was initialised by `init`; the guard is dropped once,
        // after the owner has stopped using DPDK objects.
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
        // EAL leaves its runtime directory behind, and telemetry unlinks its
        // socket only in a process destructor. Remove the telemetry sockets
        // and then the directory if it is empty, so a stopped dpf leaves no
        // stale files (remove_dir refuses a non-empty directory).
        if !dir.is_empty() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.file_name()
                        .to_string_lossy()
                        .starts_with("dpdk_telemetry")
                    {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}
