//! Raw FFI bindings to the system DPDK 22.11: bindgen output over the core
//! libraries (EAL, ethdev, mbuf, mempool, ring, lcore, cycles, ether, vdev,
//! ring PMD) plus `dpf_*` shim functions that export DPDK's static-inline
//! fast-path functions (rx/tx burst, mbuf alloc/free, ring burst ops) and the
//! C thread-locals `rte_lcore_id` / `rte_errno`. Nothing else lives here; the
//! safe layer is `dataplane::dpdk`.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all, clippy::undocumented_unsafe_blocks)]
#![allow(unsafe_op_in_unsafe_fn)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
