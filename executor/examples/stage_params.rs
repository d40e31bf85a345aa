//! Fills each stage's `param_bytes` into profiles written before the profiler recorded it, so
//! GPU profiles measured on a lent machine need not be measured again: weight sizes do not
//! depend on the device. Usage: `cargo run -p rlsched-executor --example stage_params -- data/profiles/*.json`

use burn::tensor::Device;
use rlsched_executor::profile::profiler::{record_bytes, Profile};
use rlsched_executor::Workload;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex();
    for path in std::env::args().skip(1) {
        let path = std::path::PathBuf::from(path);
        let mut profile = Profile::load(&path)?;
        let workload: Workload = profile.workload.parse()?;
        for variant in &mut profile.variants {
            let network = workload.build(&variant.name, &device)?;
            for (stage, measured) in network.stages.iter().zip(&mut variant.stages) {
                measured.param_bytes = record_bytes(stage)?;
            }
            let total: u64 = variant.stages.iter().map(|s| s.param_bytes).sum();
            println!("{} {}: {} stages, {total} B of weights", path.display(), variant.name, variant.stages.len());
        }
        std::fs::write(&path, serde_json::to_string_pretty(&profile)? + "\n")?;
    }
    Ok(())
}
