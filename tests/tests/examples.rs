//! The deployment kit in `examples/faq-pair/` loads: both boxes'
//! configurations and the shared pf.conf pass `dpf -n` (the rules path is
//! pointed at the repository's copy; everything else is as shipped).

use std::path::PathBuf;
use std::time::Duration;

fn kit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("examples")
        .join("faq-pair")
}

#[test]
fn the_faq_pair_configurations_load() {
    let dir = dpf_tests::scratch();
    let rules = kit().join("pf.conf");
    for fw in ["fw1", "fw2"] {
        let text = std::fs::read_to_string(kit().join(format!("{fw}.toml"))).unwrap();
        assert!(
            text.contains("rules = \"/etc/dpf/pf.conf\""),
            "{fw}: rules path"
        );
        let cfg = dir.path().join(format!("{fw}.toml"));
        std::fs::write(
            &cfg,
            text.replace("/etc/dpf/pf.conf", rules.to_str().unwrap()),
        )
        .unwrap();
        let out = dpf_tests::run_dpf(
            &["--config", cfg.to_str().unwrap(), "-n"],
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(
            out.status.success(),
            "{fw}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let unit = std::fs::read_to_string(kit().join("dpf.service")).unwrap();
    for line in [
        "ExecStart=",
        "RuntimeDirectory=dpf",
        "RuntimeDirectoryMode=0700",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(line), "dpf.service: {line}");
    }
}

#[test]
fn manual_pages_and_completions_come_from_the_binaries() {
    for (bin, path) in [
        ("dpf", dpf_tests::dpf_bin()),
        ("dpfctl", dpf_tests::dpfctl_bin()),
    ] {
        let man = std::process::Command::new(&path)
            .arg("--man")
            .output()
            .unwrap();
        assert!(man.status.success(), "{bin} --man");
        let text = String::from_utf8_lossy(&man.stdout);
        assert!(text.contains(&format!(".TH {bin} 8")), "{bin}(8): {text}");
        let comp = std::process::Command::new(&path)
            .args(["--completions", "bash"])
            .output()
            .unwrap();
        assert!(comp.status.success(), "{bin} --completions bash");
        assert!(String::from_utf8_lossy(&comp.stdout).contains(&format!("_{bin}()")));
    }
    // dpf.toml(5), from the configuration schema.
    let man5 = std::process::Command::new(dpf_tests::dpf_bin())
        .arg("--man-config")
        .output()
        .unwrap();
    assert!(man5.status.success());
    let text = String::from_utf8_lossy(&man5.stdout);
    assert!(text.starts_with(".TH DPF.TOML 5"), "{text}");
    for key in ["syncpeer", "advskew", "neighbor_limit", "listen"] {
        assert!(
            text.contains(&format!(".B {key}\n")),
            "dpf.toml(5) lacks {key}"
        );
    }
    // dpfctl's help names every view, carp and pfsync included.
    let help = std::process::Command::new(dpf_tests::dpfctl_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for view in [
        "info", "states", "rules", "labels", "carp", "pfsync", "Tables", "all",
    ] {
        assert!(
            help.contains(&format!("- {view}:")),
            "--help lists -s {view}"
        );
    }
}
