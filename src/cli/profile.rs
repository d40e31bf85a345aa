//! `rlsched profile`: measure every stage of a workload's variants and write a JSON profile.

use std::path::PathBuf;

use anyhow::Result;
use rlsched_executor::profile::profiler;
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::DeviceChoice;

use super::write_atomic;

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Workload to profile (see --list). Default: the one model given with --model.
    #[arg(long)]
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
    /// Measure under contention instead: for each count (e.g. `0,1,2,4`), start that many
    /// CPU-bound processes, profile, stop them; print measured time, the monitor's readings,
    /// the old utilisation model, the processor-sharing model and its least-squares fit.
    #[arg(long, value_delimiter = ',')]
    pub co_runners: Vec<usize>,
    /// With `--co-runners`: writes the measured curve into this profile's `contention` (the
    /// file's latencies are kept; the simulator then slows this workload by its own curve).
    #[arg(long)]
    pub curve_into: Option<PathBuf>,
}

/// How long the monitor reads the loaded device before each co-run (utilisation needs a
/// window; the runnable count is averaged over the same one).
const READING_WINDOW: std::time::Duration = std::time::Duration::from_millis(600);

/// One co-run: co-runners, measured total ms, the monitor's readings with them running and
/// this process idle (others' utilisation, runnable others per core).
#[derive(serde::Serialize)]
struct CoRun {
    co_runners: usize,
    total_ms: f64,
    other_utilization: f64,
    runnable_per_core: f64,
}

/// Reads the device for `READING_WINDOW`: (others' utilisation, mean runnable others per core).
fn read_load() -> (f64, f64) {
    let mut monitor = rlsched_executor::monitor::ResourceMonitor::new();
    let (mut sum, mut reads) = (0.0, 0);
    let start = std::time::Instant::now();
    while start.elapsed() < READING_WINDOW {
        std::thread::sleep(std::time::Duration::from_millis(20));
        sum += rlsched_executor::monitor::runnable_others().unwrap_or(0.0);
        reads += 1;
    }
    let sample = monitor.sample();
    (sample.other_utilization, sum / reads.max(1) as f64 / sample.cores.max(1) as f64)
}

fn co_runs(args: &ProfileArgs, workload: Workload, device: DeviceChoice, idle: std::time::Duration) -> Result<()> {
    use rlsched_env::config::{contention_slowdown, DEFAULT_PER_TASK};
    use rlsched_executor::profile::co_runners::{CoRunners, MAX_CO_RUNNERS};
    let variants = if args.variants.is_empty() { vec!["fp32".to_string()] } else { args.variants.clone() };
    let mut runs = Vec::new();
    for &n in &args.co_runners {
        if n > MAX_CO_RUNNERS {
            anyhow::bail!("--co-runners: at most {MAX_CO_RUNNERS}, got {n}");
        }
        eprintln!("{}: {n} co-runners ...", workload.name());
        // killed when this scope ends, on an error as well
        let runners = CoRunners::start(n)?;
        let (other_utilization, runnable_per_core) = read_load();
        let profile = profiler::profile(workload, &variants, device, args.runs, idle, |_| {})?;
        drop(runners);
        let total_ms = profile.variants.iter().map(|v| v.total_latency_ms()).sum();
        runs.push(CoRun { co_runners: n, total_ms, other_utilization, runnable_per_core });
    }
    let Some(alone) = runs.iter().find(|r| r.co_runners == 0).map(|r| r.total_ms) else {
        anyhow::bail!("--co-runners needs 0 among the counts: slowdowns are relative to the device alone");
    };
    // least squares through (0, 1): slowdown − 1 = k · runnable per core
    let (xy, xx) = runs.iter().fold((0.0, 0.0), |(xy, xx), r| (xy + r.runnable_per_core * (r.total_ms / alone - 1.0), xx + r.runnable_per_core.powi(2)));
    let fitted = if xx > 0.0 { xy / xx } else { 0.0 };
    println!("{} {} on {}, {} runs per count:", workload.name(), variants.join("+"), device.name(), args.runs);
    println!("| co-runners | runnable others per core | others' utilisation | measured ms | slowdown | old model 1/(1-u) | processor sharing (k = {DEFAULT_PER_TASK}) | fitted (k = {fitted:.2}) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &runs {
        let old = 1.0 / (1.0 - r.other_utilization.clamp(0.0, 0.95));
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.2}× | {:.2}× ({:.0} ms) | {:.2}× ({:.0} ms) | {:.2}× ({:.0} ms) |",
            r.co_runners,
            r.runnable_per_core,
            r.other_utilization,
            r.total_ms,
            r.total_ms / alone,
            old,
            old * alone,
            contention_slowdown(DEFAULT_PER_TASK, r.runnable_per_core),
            contention_slowdown(DEFAULT_PER_TASK, r.runnable_per_core) * alone,
            contention_slowdown(fitted, r.runnable_per_core),
            contention_slowdown(fitted, r.runnable_per_core) * alone,
        );
    }
    println!("fitted slowdown per runnable other task per core: {fitted:.3} (env.contention.per_task)");
    // the measured points themselves, as `[env.contention] curve` and a profile's `contention`
    // take them (r as read, two decimals)
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let mut curve: Vec<[f64; 2]> = runs.iter().map(|r| if r.co_runners == 0 { [0.0, 1.0] } else { [round(r.runnable_per_core), round((r.total_ms / alone).max(1.0))] }).collect();
    curve.sort_by(|a, b| a[0].total_cmp(&b[0]));
    // a noisy run may measure less slowdown at more co-runners; the curve must not fall
    for i in 1..curve.len() {
        curve[i][1] = curve[i][1].max(curve[i - 1][1]);
    }
    let shown: Vec<String> = curve.iter().map(|[r, s]| format!("[{r:.2}, {s:.2}]")).collect();
    println!("measured curve: curve = [{}] (env.contention.curve)", shown.join(", "));
    if let Some(path) = &args.curve_into {
        let mut profile = profiler::Profile::load(path)?;
        if profile.workload != workload.name() {
            anyhow::bail!("--curve-into {}: that is the profile of `{}`, not `{}`", path.display(), profile.workload, workload.name());
        }
        profiler::check_curve("contention", &curve).map_err(anyhow::Error::msg)?;
        profile.contention = curve;
        write_atomic(path, (serde_json::to_string_pretty(&profile)? + "\n").as_bytes())?;
        println!("wrote the curve into {}", path.display());
    }
    if let Some(path) = &args.out {
        write_atomic(path, serde_json::to_string_pretty(&serde_json::json!({ "workload": workload.name(), "runs": runs, "fitted_per_task": fitted }))?.as_bytes())?;
    }
    Ok(())
}

/// The stages and offered cut points of an imported model, with bytes and FLOPs.
fn print_cuts(model: &rlsched_executor::model::onnx::OnnxModel) {
    eprintln!(
        "{}: {} (hash {}), opset {}, {} ONNX nodes lowered to {} ops, input `{}` {:?}",
        model.name, model.path, model.hash, model.opset, model.onnx_nodes, model.ops.len(), model.input_name, model.values[model.input].dims
    );
    eprintln!("{:>5}  {:>9}  {:>12}  {:>12}  crossing tensors", "stage", "ops", "MFLOPs", "out bytes");
    for stage in 0..model.stage_count() {
        let (start, end) = (&model.boundaries[stage], &model.boundaries[stage + 1]);
        let names = end.names(&model.values);
        eprintln!(
            "{stage:>5}  {:>4}..{:<4}  {:>12.1}  {:>12}  {}",
            start.position,
            end.position,
            model.stage_flops(stage) as f64 / 1e6,
            end.bytes,
            if stage + 1 == model.stage_count() { format!("output {}", names.join(", ")) } else { format!("cut {}: {}", stage + 1, names.join(" + ")) }
        );
    }
}

/// Most timed runs: each run's stage times are all kept until the statistics are computed.
const MAX_RUNS: usize = 100_000;

pub fn run(args: ProfileArgs) -> Result<()> {
    if args.list {
        for workload in Workload::catalogue() {
            let spec = workload.spec()?;
            println!("{} ({}; input {:?} {})", spec.name, spec.task, spec.input_shape, spec.input_datatype.name());
            for v in &spec.variants {
                println!("  {:<12} accuracy {:.4} ({})", v.name, v.accuracy, v.accuracy_source);
                println!("               source: {}", v.citation);
            }
            if let Workload::Imported(id) = workload {
                if rlsched_executor::model::workloads::imported::get(id).prunable == 0 {
                    println!("  {}", rlsched_executor::model::workloads::imported::NO_PRUNABLE);
                }
            }
        }
        return Ok(());
    }
    super::check_count("--runs", args.runs, 1, MAX_RUNS)?;
    let workload: Workload = match (&args.workload, rlsched_executor::model::workloads::imported::all().as_slice()) {
        (Some(name), _) => name.parse()?,
        (None, [only]) => *only,
        (None, _) => anyhow::bail!("give --workload NAME (or exactly one --model NAME=PATH.onnx)"),
    };
    if let Some(model) = workload.onnx() {
        print_cuts(&model);
    }
    let device: DeviceChoice = args.device.parse()?;
    let idle = std::time::Duration::try_from_secs_f64(args.idle_ms / 1e3)
        .ok()
        .filter(|d| d.as_secs() < 3600)
        .ok_or_else(|| anyhow::anyhow!("--idle-ms must be a number of ms in 0..3600000, got {}", args.idle_ms))?;
    if !args.co_runners.is_empty() {
        return co_runs(&args, workload, device, idle);
    }
    if args.curve_into.is_some() {
        anyhow::bail!("--curve-into writes what --co-runners measures: give --co-runners 0,1,2,4 as well");
    }
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

