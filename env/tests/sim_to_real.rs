//! The sim-to-real check as CI runs it. In a test binary of its own, so that nothing else
//! computes beside it while it measures.

use std::path::PathBuf;

use rlsched_env::sim_to_real::{self, SimToRealConfig};

/// For MobileNetV2 and ResNet-18, local, an int8 split and offload: the simulator's median
/// latency is within 15% of the one measured live on the same request sequence (profiles
/// measured during the check, so the bound holds on a faster or slower machine too).
#[test]
fn simulated_latencies_match_live_within_15_percent() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let report = sim_to_real::run(&SimToRealConfig::bundled(root)).unwrap();
    // the table survives a captured run: its path is in the failure message
    let path = std::env::temp_dir().join("rlsched-sim-to-real.md");
    std::fs::write(&path, format!("{report}\n")).unwrap();
    println!("{report}\n(also written to {})", path.display());
    assert_eq!(report.rows.len(), 6, "two workloads × three plans\n{report}");
    for row in &report.rows {
        assert_eq!(row.live.len(), row.sim.len());
        let error = row.median_error();
        assert!(
            error.abs() <= 0.15,
            "{} {}: simulated median off by {:+.1}%\n{report}\n(table in {})",
            row.workload,
            row.label(),
            error * 100.0,
            path.display()
        );
    }
}
