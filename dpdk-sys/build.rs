//! Generates bindings to the system DPDK (found with pkg-config) and builds
//! the C shim that exports DPDK's static-inline fast-path functions.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| panic!("pkg-config not runnable ({e}); run scripts/setup"));
    if !out.status.success() {
        panic!(
            "pkg-config {args:?} libdpdk failed: {} — install DPDK 22.11 (scripts/setup)",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let mut cflags = pkg_config(&["--cflags"]);
    cflags.push("-DALLOW_EXPERIMENTAL_API".into());
    cflags.push("-D_GNU_SOURCE".into());

    // The shim, compiled with exactly DPDK's flags (they carry
    // `-include rte_config.h` and `-march`).
    let mut build = cc::Build::new();
    build.file("shim/shim.c").opt_level(3).warnings(false);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("dpf_dpdk_shim");

    // Shared linking against the libraries dpdk-sys binds; PMDs load
    // themselves from DPDK's plugin directory at EAL init.
    for lib in pkg_config(&["--libs"]) {
        if let Some(name) = lib.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={name}");
        } else if let Some(dir) = lib.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        }
    }
    // rte_eth_from_rings lives in the ring PMD, not in a core library.
    println!("cargo:rustc-link-lib=rte_net_ring");
    println!("cargo:rustc-link-lib=rte_bus_vdev");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_eal_.*|rte_lcore_.*|rte_get_.*|rte_socket_id|rte_strerror")
        .allowlist_function("rte_eth_.*|rte_pktmbuf_.*|rte_mempool_.*|rte_ring_.*")
        .allowlist_function("rte_vdev_.*|rte_delay_.*|rte_exit|dpf_.*")
        .allowlist_function("rte_telemetry_register_cmd|rte_tel_data_.*")
        .allowlist_type("rte_eth_.*|rte_mbuf|rte_mempool|rte_ring|rte_ether_addr")
        .allowlist_var("RTE_ETH_.*|RTE_MBUF_.*|RTE_MAX_.*|RTE_PKTMBUF_.*|RTE_RING_.*|RTE_ETHER_.*")
        .allowlist_var("RTE_LCORE_.*|SOCKET_ID_ANY|LCORE_ID_ANY")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_generic_hdr")
        .opaque_type("rte_arp_hdr")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .clang_macro_fallback()
        .generate()
        .expect("bindgen failed on DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");
}
