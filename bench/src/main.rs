//! `bench`: traffic generator and throughput harness (being written).
fn main() {}
