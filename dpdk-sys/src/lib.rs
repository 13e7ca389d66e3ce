//! Raw bindings to DPDK (placeholder: being written).
