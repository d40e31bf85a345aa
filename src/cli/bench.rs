//! `rlsched bench`: throughput benchmarks, the decision's cost (`bench_decision.rs`), and the
//! sim-to-real check's table.

use anyhow::{bail, Result};

use super::ConfigArgs;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to measure: `env` (VecEnv steps per second on one core), `decision` (p50/p99 of
    /// one 16-plan scheduling decision by the policy), `sim2real` (live vs simulated latency per
    /// plan; data read beside the config file; about a minute), or `serve` (what `rlsched serve`
    /// adds over direct local execution of digits-cnn, and requests per second), or `int8`
    /// (an int8 convolution and dense layer against fp32 at the workloads' shapes, alternating).
    pub target: String,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Environments stepped together.
    #[arg(long, default_value_t = 64)]
    pub envs: usize,
    /// decision, serve: the policy checkpoint (default: `checkpoints/default` beside the
    /// config).
    #[arg(long)]
    pub checkpoint: Option<std::path::PathBuf>,
    /// Seconds to measure for (decision: for each of its four measurements).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// sim2real: measured requests per plan and workload (default: the CI check's, 15).
    #[arg(long)]
    pub requests: Option<usize>,
    /// sim2real: the workloads compared, comma-separated (default: the CI check's,
    /// mobilenetv2,resnet18); an imported `--model` name too, whose plans then come from a
    /// profile measured first.
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<String>,
    /// sim2real: `measured` (profiled here during the check) or a committed profile suffix
    /// (`cpu2`: then it also checks those profiles against this machine).
    #[arg(long, default_value = "measured")]
    pub profiles: String,
    /// sim2real: the loaded mode, once per count (e.g. `0,1,2,4`): that many CPU-bound
    /// processes run beside the live requests, and the simulator models them by the monitor's
    /// reading and its contention model; each count's worst median error must be within 20%.
    #[arg(long, value_delimiter = ',')]
    pub co_runners: Vec<usize>,
    /// serve: requests measured each way (direct and through serve).
    #[arg(long, default_value_t = 2000)]
    pub serve_requests: usize,
    /// serve: concurrent clients for the requests-per-second figure.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
}

fn sim2real(args: &BenchArgs) -> Result<()> {
    use rlsched_env::sim_to_real::{self, ProfileSource, SimToRealConfig};
    let mut config = SimToRealConfig::bundled(args.config.dir());
    if let Some(requests) = args.requests {
        config.requests_per_plan = requests;
    }
    if !args.workloads.is_empty() {
        config.workloads = args.workloads.iter().map(|w| w.parse()).collect::<Result<_, _>>()?;
    }
    if args.profiles != "measured" {
        config.profiles = ProfileSource::Committed(args.profiles.clone());
    }
    if args.co_runners.is_empty() {
        println!("{}", sim_to_real::run(&config)?);
        println!("host: {}", rlsched_executor::profile::profiler::host_description());
        return Ok(());
    }
    /// The loaded mode's bound on each plan's median error.
    const LOADED_BOUND: f64 = 0.20;
    let mut summary = Vec::new();
    for &n in &args.co_runners {
        config.co_runners = n;
        let report = sim_to_real::run(&config)?;
        println!("{report}\n");
        let worst = report.rows.iter().map(|r| r.median_error()).fold(0.0f64, |w, e| if e.abs() > w.abs() { e } else { w });
        let plans: Vec<String> = report.rows.iter().map(|r| format!("{} {} {:+.1}%", r.workload, r.label(), r.median_error() * 100.0)).collect();
        summary.push(format!("| {n} | {:.2} | {} | {:+.1}% | {} |", report.mean_load, plans.join("; "), worst * 100.0, if worst.abs() <= LOADED_BOUND { "yes" } else { "no" }));
    }
    println!("| co-runners | load read (runnable others per core) | p50 error per plan | worst | within 20% |");
    println!("| --- | --- | --- | --- | --- |");
    summary.iter().for_each(|line| println!("{line}"));
    println!("host: {}", rlsched_executor::profile::profiler::host_description());
    if summary.iter().any(|l| l.ends_with("| no |")) {
        bail!("a loaded sim-to-real run is off by more than {:.0}%", LOADED_BOUND * 100.0);
    }
    Ok(())
}

/// Bounds of the size flags: the benchmarks hold every environment, every measured latency and
/// every client at once, and none of them needs more to give a stable figure.
const MAX_SECONDS: f64 = 3600.0;
const MAX_SIM2REAL_REQUESTS: usize = 10_000;
const MAX_SERVE_REQUESTS: usize = 1_000_000;
const MAX_CLIENTS: usize = 1024;

pub fn run(args: BenchArgs) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds <= MAX_SECONDS) {
        bail!("--seconds must be a number of seconds above 0 and at most {MAX_SECONDS}, got {}", args.seconds);
    }
    super::check_count("--envs", args.envs, 1, rlsched_agent::config::MAX_NUM_ENVS)?;
    if let Some(requests) = args.requests {
        super::check_count("--requests", requests, 1, MAX_SIM2REAL_REQUESTS)?;
    }
    super::check_count("--serve-requests", args.serve_requests, 100, MAX_SERVE_REQUESTS)?;
    super::check_count("--clients", args.clients, 1, MAX_CLIENTS)?;
    match args.target.as_str() {
        "env" => {}
        "sim2real" => return sim2real(&args),
        "decision" => return super::bench_decision::run(&args.config.load()?, &args.config.dir(), args.checkpoint.clone(), args.seconds),
        "serve" => {
            let checkpoint = args.checkpoint.clone().unwrap_or_else(|| args.config.dir().join("checkpoints/default"));
            return super::bench_serve::run(&args.config, checkpoint, args.serve_requests, args.clients);
        }
        "int8" => return super::bench_int8::run(args.seconds),
        other => bail!("unknown benchmark `{other}` (available: env, decision, sim2real, serve, int8)"),
    }
    let config = args.config.load()?;
    let scenario = std::sync::Arc::new(rlsched_env::Scenario::load(&config.env, &config.env.traces)?);
    let mut vec = rlsched_env::VecEnv::new(scenario.clone(), args.envs, 1)?;
    let mut actions = vec![0usize; vec.envs.len()];
    let mut results = Vec::with_capacity(vec.envs.len());
    let (mut steps, mut plans) = (0u64, 0u64);
    let start = std::time::Instant::now();
    while start.elapsed().as_secs_f64() < args.seconds {
        for _ in 0..100 {
            for (action, env) in actions.iter_mut().zip(&vec.envs) {
                let obs = env.observation();
                // the first valid plan: the cheapest possible policy, so the figure is the env's
                *action = obs.mask.iter().position(|m| *m).expect("one valid plan");
                plans += obs.n_plans as u64;
            }
            vec.step(&actions, &mut results)?;
            steps += actions.len() as u64;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "env: {:.0} steps/s on one thread ({} envs, {} steps in {:.2} s, {:.1} plans per request on average, up to {})",
        steps as f64 / seconds,
        vec.envs.len(),
        steps,
        seconds,
        plans as f64 / steps as f64,
        scenario.max_plans
    );
    println!("host: {}", rlsched_executor::profile::profiler::host_description());
    Ok(())
}

