//! `rlsched profile`: measure every stage of a workload's variants and write a JSON profile.

use std::path::PathBuf;

use anyhow::Result;
use rlsched_executor::profile::profiler;
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::DeviceChoice;

use super::write_atomic;

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Workload to profile (see --list).
    #[arg(long, required_unless_present = "list")]
    pub workload: Option<String>,
    /// Variant to profile; repeat for several. Default: every variant.
    #[arg(long = "variant")]
    pub variants: Vec<String>,
    /// Backend: flex (CPU, default), ndarray or wgpu (when compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Timed runs per variant, after one warm-up run (1..=100000).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Idle time before each timed run, ms: 0 measures back to back; a pause measures a device
    /// that idles between requests (on the 2-core VM its first stages then run up to ~40%
    /// slower).
    #[arg(long, default_value_t = 0.0)]
    pub idle_ms: f64,
    /// Output file (JSON). Default: standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// List every workload with its variants and accuracies, and exit.
    #[arg(long)]
    pub list: bool,
}

/// Most timed runs: each run's stage times are all kept until the statistics are computed.
const MAX_RUNS: usize = 100_000;

pub fn run(args: ProfileArgs) -> Result<()> {
    if args.list {
        for workload in Workload::ALL {
            let spec = workload.spec()?;
            println!("{} ({}; input {:?} {})", spec.name, spec.task, spec.input_shape, spec.input_datatype.name());
            for v in &spec.variants {
                println!("  {:<12} accuracy {:.4} ({})", v.name, v.accuracy, v.accuracy_source);
            }
        }
        return Ok(());
    }
    super::check_count("--runs", args.runs, 1, MAX_RUNS)?;
    let name = args.workload.expect("clap requires --workload without --list");
    let workload: Workload = name.parse()?;
    let device: DeviceChoice = args.device.parse()?;
    let idle = std::time::Duration::try_from_secs_f64(args.idle_ms / 1e3)
        .ok()
        .filter(|d| d.as_secs() < 3600)
        .ok_or_else(|| anyhow::anyhow!("--idle-ms must be a number of ms in 0..3600000, got {}", args.idle_ms))?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let result = profiler::profile(workload, &args.variants, device, args.runs, idle, |msg| {
        bar.set_message(msg.to_string())
    });
    bar.finish_and_clear();
    let profile = result?;
    for v in &profile.variants {
        eprintln!(
            "{}/{} on {}: {:.2} ms total over {} stages, accuracy {:.4} ({}), {} param bytes",
            profile.workload,
            v.name,
            profile.device,
            v.total_latency_ms(),
            v.stages.len(),
            v.accuracy,
            v.accuracy_source,
            v.param_bytes
        );
    }
    let json = serde_json::to_string_pretty(&profile)?;
    match args.out {
        Some(path) => write_atomic(&path, json.as_bytes())?,
        None => println!("{json}"),
    }
    Ok(())
}

