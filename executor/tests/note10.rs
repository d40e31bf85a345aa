//! The Samsung Note10 as a second device: OFA's measured latency table, read for the
//! `ofa-note10` sub-network. The 192² table is bundled under data/profiles/ofa-note10 (Apache-2.0).

use std::path::PathBuf;

use rlsched_executor::profile::latency_table::{parse, profile, stage_keys};
use rlsched_executor::Workload;

fn table(resolution: usize) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../data/profiles/ofa-note10/{resolution}_lookup_table.yaml"))
}

/// Every stage maps onto measured entries, and their sum is the 24.73 ms that OFA's tutorial
/// reports for this sub-network on the Note10: the network built here is the one it searched.
#[test]
fn note10_profile_matches_the_published_latency() {
    let profile = profile(&table(192), "note10").unwrap();
    let variant = &profile.variants[0];
    let total = variant.total_latency_ms();
    assert!((total - 24.73).abs() < 0.01, "Note10 latency {total} ms");
    assert_eq!(variant.stages.len(), 18);
    assert!(variant.stages.iter().all(|s| s.latency_ms.mean > 0.0 && s.latency_ms.std >= 0.0 && s.output_bytes > 0));
    assert_eq!(profile.input_bytes, 3 * 192 * 192);
    // the committed profile is this one
    let committed = rlsched_executor::profile::profiler::Profile::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/profiles/ofa-note10-note10.json"),
    )
    .unwrap();
    assert_eq!(committed, profile);
}

#[test]
fn every_stage_has_table_keys_and_the_network_runs() {
    let device = burn::tensor::Device::flex();
    let network = Workload::OfaNote10.build("fp32", &device).unwrap();
    let keys = stage_keys(&network).unwrap();
    let entries = parse(&table(192)).unwrap();
    for key in keys.iter().flatten() {
        assert!(entries.contains_key(key), "missing {key}");
    }
    let out = network.run_wire(0, network.stage_count(), &Workload::OfaNote10.example_input(1), &device).unwrap();
    assert_eq!(out.shape, vec![1, 1000]);
}

#[test]
fn a_broken_table_names_file_line_and_field() {
    let path = std::env::temp_dir().join(format!("rlsched-lut-{}.yaml", std::process::id()));
    std::fs::write(&path, "Conv-input:1x1x3-output:1x1x3:\n  count: 3\n  mean: fast\n  std: 0.1\n").unwrap();
    let err = parse(&path).unwrap_err().to_string();
    assert!(err.contains(&format!("{}:3", path.display())) && err.contains("mean"), "{err}");
    std::fs::write(&path, "Conv-input:1x1x3-output:1x1x3:\n  count: 3\n  std: 0.1\n").unwrap();
    let err = parse(&path).unwrap_err().to_string();
    assert!(err.contains(":1") && err.contains("mean or std"), "{err}");
    std::fs::remove_file(path).ok();
}
