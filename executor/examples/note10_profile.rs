//! Writes the Note10 device profile of `ofa-note10` from OFA's latency lookup table.
//! Usage: `cargo run -p rlsched-executor --example note10_profile -- ../shared/data/profiles/ofa-note10/192_lookup_table.yaml data/profiles/ofa-note10-note10.json`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [table, out] = args.as_slice() else {
        return Err("usage: note10_profile TABLE.yaml OUT.json".into());
    };
    let profile = rlsched_executor::profile::latency_table::profile(std::path::Path::new(table), "note10")?;
    println!("{}: {} stages, {:.2} ms", out, profile.variants[0].stages.len(), profile.variants[0].total_latency_ms());
    std::fs::write(out, serde_json::to_string_pretty(&profile)? + "\n")?;
    Ok(())
}
