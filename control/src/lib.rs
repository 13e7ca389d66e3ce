//! dpf's control plane: configuration, CARP, pfsync, the slow path and the
//! control socket. The binaries `dpf` and `dpfctl` live in `src/bin`.

pub mod capture;
pub mod carp;
pub mod config;
pub mod config_doc;
pub mod counters_json;
pub mod ctl;
pub mod daemon;
pub mod log;
pub mod metrics;
pub mod pflog;
pub mod pfsync;
pub mod preload;
pub mod rule_env;
pub mod slowpath;
pub mod srcnodes;
pub mod telemetry;
