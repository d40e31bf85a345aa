//! Subcommand definitions and dispatch.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::module::Module;
use rlsched_agent::metrics::MetricsSink;
use clap::{Parser, Subcommand};
use rlsched_executor::profiler;
use rlsched_executor::workloads::Workload;
use rlsched_executor::DeviceChoice;

#[derive(Parser, Debug)]
#[command(name = "rlsched", version, about = "Reinforcement-learning scheduler for deep-learning inference")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the scheduling policy with PPO on replayed traces, then evaluate it.
    Train(TrainArgs),
    /// Compare schedulers (and the learned policy) on the same requests.
    Eval(EvalArgs),
    /// Measure every stage of a workload's variants on a backend and write a JSON profile.
    Profile(ProfileArgs),
    /// Serve workloads over the Open Inference Protocol (KServe V2 REST) for split and offload.
    Worker(WorkerArgs),
    /// Shape a TCP connection to a bandwidth trace (user-space link emulator).
    Link(LinkArgs),
    /// Serve inference requests, scheduling each one with the learned policy.
    Serve(Unbuilt),
    /// Benchmarks: `rlsched bench env` measures simulator throughput.
    Bench(BenchArgs),
}

/// Arguments of a subcommand that this build does not provide yet.
#[derive(clap::Args, Debug)]
pub struct Unbuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

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
    /// Timed runs per variant, after one warm-up run.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Output file (JSON). Default: standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// List every workload with its variants and accuracies, and exit.
    #[arg(long)]
    pub list: bool,
}

/// `--config` and `--set`, shared by every subcommand that reads train.toml.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// Configuration file (`[env]`, `[agent.model]`, `[agent.ppo]`).
    #[arg(long, default_value = "train.toml")]
    pub config: PathBuf,
    /// Override a config field, e.g. `--set env.bandwidth_scale=20`. Repeatable.
    #[arg(long = "set")]
    pub sets: Vec<String>,
}

impl ConfigArgs {
    /// Loads the file; a missing default `train.toml` means the built-in defaults.
    fn load(&self) -> Result<crate::config::TrainConfig> {
        let explicit = self.config.as_os_str() != "train.toml";
        crate::config::load(&self.config, explicit, &self.sets)
    }

    fn dir(&self) -> PathBuf {
        config_dir(&self.config)
    }
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub total_steps: Option<usize>,
    /// The checkpoint goes to `checkpoints/<run-name>/` and TensorBoard files to
    /// `runs/<run-name>/`, beside the config file.
    #[arg(long, default_value = "latest")]
    pub run_name: String,
    /// Continue training from this checkpoint; the step count carries on to --total-steps.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Evaluate the policy on the validation traces every this many iterations (sched/* tags).
    #[arg(long, default_value_t = 8)]
    pub eval_every: usize,
    /// Requests in the final evaluation on the validation traces.
    #[arg(long, default_value_t = 4000)]
    pub eval_requests: usize,
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Policy checkpoint to evaluate beside the baselines (default: `checkpoints/default`
    /// beside the config file, when it exists).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Trace files or directories to evaluate on (default: the config's validation traces).
    #[arg(long = "traces")]
    pub traces: Vec<PathBuf>,
    /// Trace format (pensieve or mahimahi); detected per file when omitted.
    #[arg(long)]
    pub trace_format: Option<String>,
    /// Schedulers to run, comma-separated (default: every baseline and both oracles).
    #[arg(long, value_delimiter = ',')]
    pub schedulers: Vec<String>,
    /// Requests to evaluate (rounded up to whole episodes).
    #[arg(long, default_value_t = 4000)]
    pub requests: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also write the results as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to measure: `env` (VecEnv steps per second on one core).
    pub target: String,
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Environments stepped together.
    #[arg(long, default_value_t = 64)]
    pub envs: usize,
    /// Seconds to measure for.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Address to listen on. Port 0 picks a free port; the address is printed on start.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Backend: flex (CPU, default) or wgpu (when compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Require `Authorization: Bearer TOKEN` on every request.
    #[arg(long)]
    pub token: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
}

#[derive(clap::Args, Debug)]
pub struct LinkArgs {
    /// Bandwidth trace to replay (Pensieve `time_s Mbit/s` or Mahimahi packet lines).
    #[arg(long)]
    pub trace: PathBuf,
    /// Trace format; detected from the file when omitted.
    #[arg(long)]
    pub format: Option<String>,
    /// Round-trip time added to the link, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub rtt_ms: f64,
    /// Multiply every rate of the trace by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Address to listen on (port 0 picks a free port; printed on start).
    #[arg(long)]
    pub listen: String,
    /// Address to forward connections to.
    #[arg(long)]
    pub upstream: String,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Profile(args) => profile(args),
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
        Command::Worker(args) => worker(args),
        Command::Link(args) => link(args),
        Command::Serve(_) => unbuilt("serve"),
        Command::Bench(args) => bench(args),
    }
}

fn unbuilt(name: &str) -> Result<()> {
    bail!("`rlsched {name}` is not implemented yet in this build")
}

fn profile(args: ProfileArgs) -> Result<()> {
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
    let name = args.workload.expect("clap requires --workload without --list");
    let workload: Workload = name.parse()?;
    let device: DeviceChoice = args.device.parse()?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let result = profiler::profile(workload, &args.variants, device, args.runs, |msg| {
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

fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    if args.eval_requests == 0 {
        bail!("--eval-requests must be at least 1");
    }
    use rlsched_env::schedulers;
    let mut config = args.config.load()?;
    if let Some(seed) = args.seed {
        config.agent.ppo.seed = seed;
    }
    if let Some(steps) = args.total_steps {
        config.agent.ppo.total_steps = steps;
    }
    let train_scenario = std::sync::Arc::new(rlsched_env::Scenario::load_training(&config.env)?);
    let validation = std::sync::Arc::new(rlsched_env::Scenario::load(&config.env, &config.env.validation_traces)?);
    let ppo = config.agent.ppo.clone();
    let base = args.config.dir();
    let mut sink = rlsched_agent::metrics::TensorBoardSink::new(&base.join("runs").join(&args.run_name))
        .context("creating the TensorBoard run directory")?;
    let resolved = toml::to_string_pretty(&config).context("serialising the config")?;
    sink.text("hyperparameters", &format!("```toml\n{resolved}\n```"), 0);

    // The baselines on the validation requests, once: the policy's regret ratio is measured
    // against the best of them, and training reports when the policy first beats them all.
    let probe_episodes = 10;
    let mut fit_env = rlsched_env::ReplayEnv::new(std::sync::Arc::new(rlsched_env::Scenario::load(&config.env, &config.env.traces)?));
    let mut baselines = schedulers::BASELINES
        .iter()
        .map(|n| schedulers::by_name(n, &mut fit_env, ppo.seed))
        .collect::<Result<Vec<_>, _>>()?;
    let reference = rlsched_env::eval::evaluate(validation.clone(), &mut baselines, probe_episodes, 7, "validation")?;
    let best = reference.schedulers.iter().find(|r| r.name == reference.best_baseline).expect("best baseline present");
    let (best_reward, best_regret) = (best.mean_reward, best.regret);
    let best_deployable: Vec<f64> = reference.schedulers.iter().filter(|r| r.deployable).map(|r| r.mean_reward).collect();

    let bar = indicatif::ProgressBar::new(ppo.num_iterations() as u64 * ppo.batch_size() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {per_sec} {msg}")
            .expect("valid template"),
    );
    let started = std::time::Instant::now();
    let mut first_beat: Option<(usize, f64)> = None;
    let (mut first_step, mut last_step) = (None, 0);
    let mut last_regret = f64::NAN;
    let mut eval_error = None;
    let iterations = ppo.num_iterations();
    let trained = rlsched_agent::ppo::train(train_scenario.clone(), &config.agent.model, &ppo, args.resume.as_deref(), |stats, policy| {
        rlsched_agent::metrics::log_iteration(&mut sink, stats);
        first_step.get_or_insert(stats.global_step - ppo.batch_size());
        last_step = stats.global_step;
        if stats.iteration % args.eval_every.max(1) == 0 || stats.iteration == iterations {
            let mut list: Vec<Box<dyn rlsched_env::schedulers::Scheduler>> =
                vec![Box::new(rlsched_agent::PolicyScheduler { policy: policy.valid(), device: burn::tensor::Device::flex() })];
            match rlsched_env::eval::evaluate(validation.clone(), &mut list, probe_episodes, 7, "validation") {
                Ok(report) => {
                    let mut result = report.schedulers[0].clone();
                    result.regret_ratio = if best_regret > 1e-12 { result.regret / best_regret } else { f64::NAN };
                    rlsched_agent::metrics::log_schedule(&mut sink, "sched", &result, stats.global_step);
                    last_regret = result.regret;
                    if first_beat.is_none() && best_deployable.iter().all(|&b| result.mean_reward > b) {
                        first_beat = Some((stats.global_step, started.elapsed().as_secs_f64()));
                    }
                }
                Err(e) => eval_error = Some(e),
            }
            sink.flush();
        }
        bar.set_position(stats.global_step as u64);
        bar.set_message(format!(
            "mean reward {:.3}, validation regret {:.3} (best baseline {:.3} at reward {:.3})",
            stats.mean_reward, last_regret, best_regret, best_reward
        ));
    })?;
    let policy = trained.policy;
    bar.finish_and_clear();
    sink.flush();
    if let Some(e) = eval_error {
        return Err(e.into());
    }
    let seconds = started.elapsed().as_secs_f64();
    let steps = last_step - first_step.unwrap_or(0);
    println!("trained {steps} steps, to step {last_step}, in {seconds:.1} s ({:.0} steps/s)", steps as f64 / seconds);
    match first_beat {
        Some((step, at)) => println!("the policy first beat every deployable baseline on the validation probe at step {step}, {at:.1} s"),
        None => println!("the policy did not beat every deployable baseline on the validation probe"),
    }
    println!("TensorBoard: {}", base.join("runs").join(&args.run_name).display());
    let dir = args.config.dir().join("checkpoints").join(&args.run_name);
    let sidecar = rlsched_agent::checkpoint::Sidecar {
        step: last_step,
        seed: ppo.seed,
        crate_version: env!("CARGO_PKG_VERSION").into(),
        state_dim: rlsched_env::obs::state_dim(&config.env),
        max_plans: train_scenario.max_plans,
        model: config.agent.model.clone(),
        normalizer: policy.normalizer.clone(),
        config: serde_json::to_value(&config)?,
    };
    rlsched_agent::checkpoint::save(&dir, &policy, &sidecar, Some(trained.optimizer))?;
    println!("checkpoint written to {}", dir.display());
    // best-static is fitted as `eval` fits it: on the training traces at the evaluated scale
    let mut list = schedulers::BASELINES
        .iter()
        .map(|n| schedulers::by_name(n, &mut fit_env, ppo.seed))
        .collect::<Result<Vec<_>, _>>()?;
    list.push(Box::new(rlsched_agent::PolicyScheduler { policy, device: burn::tensor::Device::flex() }));
    let label = config.env.validation_traces.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
    let episodes = args.eval_requests.div_ceil(config.env.requests_per_episode.max(1));
    let report = rlsched_env::eval::evaluate(validation, &mut list, episodes, 1, &label)?;
    print_report(&report);
    Ok(())
}

fn config_dir(config: &std::path::Path) -> PathBuf {
    config.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

fn eval(args: EvalArgs) -> Result<()> {
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    use rlsched_env::schedulers;
    let config = args.config.load()?;
    let default_checkpoint = args.config.dir().join("checkpoints/default");
    let checkpoint = match &args.checkpoint {
        Some(dir) => Some(dir.clone()),
        None => default_checkpoint.is_dir().then_some(default_checkpoint),
    };
    let format = args.trace_format.as_deref().map(str::parse).transpose()?;
    let traces = if args.traces.is_empty() { config.env.validation_traces.clone() } else { args.traces.clone() };
    let label = traces.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
    let scenario = std::sync::Arc::new(rlsched_env::Scenario::load_with(&config.env, &traces, format)?);
    let train = std::sync::Arc::new(rlsched_env::Scenario::load(&config.env, &config.env.traces)?);
    let mut train_env = rlsched_env::ReplayEnv::new(train);
    let names: Vec<String> = if args.schedulers.is_empty() {
        schedulers::BASELINES.iter().map(|s| s.to_string()).collect()
    } else {
        args.schedulers.clone()
    };
    let mut list = names
        .iter()
        .filter(|n| n.as_str() != "policy")
        .map(|n| schedulers::by_name(n, &mut train_env, args.seed))
        .collect::<Result<Vec<_>, _>>()?;
    let wants_policy = args.schedulers.is_empty() || args.schedulers.iter().any(|n| n == "policy");
    if let (true, Some(dir)) = (wants_policy, &checkpoint) {
        let device = burn::tensor::Device::flex();
        let (policy, sidecar) = rlsched_agent::checkpoint::load(dir, &device)?;
        if sidecar.state_dim != rlsched_env::obs::state_dim(&config.env) {
            bail!(
                "checkpoint {} expects a state of {} features, this config gives {} (env.history differs)",
                dir.display(),
                sidecar.state_dim,
                rlsched_env::obs::state_dim(&config.env)
            );
        }
        list.push(Box::new(rlsched_agent::PolicyScheduler { policy, device }));
    } else if wants_policy && !args.schedulers.is_empty() {
        bail!("scheduler `policy` needs a checkpoint: pass --checkpoint DIR or train one");
    }
    let per_episode = config.env.requests_per_episode.max(1);
    let episodes = args.requests.div_ceil(per_episode);
    let report = rlsched_env::eval::evaluate(scenario, &mut list, episodes, args.seed, &label)?;
    print_report(&report);
    if let Some(path) = &args.json {
        write_atomic(path, &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

pub fn print_report(report: &rlsched_env::eval::EvalReport) {
    println!(
        "{} requests on {} (best deployable baseline: {}; oracle mean reward {:.3})",
        report.requests, report.traces, report.best_baseline, report.oracle_mean_reward
    );
    println!(
        "{:<13} {:>15} {:>7} {:>6} {:>8} {:>8} {:>8} {:>6} {:>6} {:>17} {:>6}",
        "scheduler", "reward (±95%)", "regret", "ratio", "lat ms", "p95", "p99", "miss", "acc", "local/split/offl", "compr"
    );
    for r in &report.schedulers {
        println!(
            "{:<13} {:>8.3} ±{:<5.3} {:>7.3} {:>6.2} {:>8.1} {:>8.1} {:>8.1} {:>6.3} {:>6.3} {:>5.2}/{:>5.2}/{:>5.2} {:>6.2}",
            r.name,
            r.mean_reward,
            r.mean_reward_ci95,
            r.regret,
            r.regret_ratio,
            r.latency_ms_mean,
            r.latency_ms_p95,
            r.latency_ms_p99,
            r.slo_miss_rate,
            r.accuracy,
            r.plan_frac.local,
            r.plan_frac.split,
            r.plan_frac.offload,
            r.compressed_frac
        );
    }
}

fn bench(args: BenchArgs) -> Result<()> {
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number of seconds, got {}", args.seconds);
    }
    if args.target != "env" {
        bail!("unknown benchmark `{}` (available: env)", args.target);
    }
    let config = args.config.load()?;
    let scenario = std::sync::Arc::new(rlsched_env::Scenario::load(&config.env, &config.env.traces)?);
    let mut vec = rlsched_env::VecEnv::new(scenario.clone(), args.envs.max(1), 1)?;
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
    println!("host: {}", rlsched_executor::profiler::host_description());
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Binds `listen` on a fresh runtime and runs `server` on the listener until it returns.
fn serve<F, Fut>(listen: &str, server: F) -> Result<()>
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        server(listener).await
    })
}

async fn ctrl_c() {
    tokio::signal::ctrl_c().await.ok();
}

fn worker(args: WorkerArgs) -> Result<()> {
    let device: DeviceChoice = args.device.parse()?;
    let config = rlsched_executor::worker::WorkerConfig {
        device,
        token: args.token,
        max_body_bytes: args.max_body_bytes,
    };
    serve(&args.listen, |listener| async move {
        println!("rlsched worker listening on http://{} (device {device})", listener.local_addr()?);
        Ok(rlsched_executor::worker::run(listener, config, ctrl_c()).await?)
    })
}

fn link(args: LinkArgs) -> Result<()> {
    let format = args.format.as_deref().map(str::parse).transpose()?;
    let trace = rlsched_executor::trace::Trace::load(&args.trace, format)?.scaled(args.scale);
    if !(args.rtt_ms >= 0.0 && args.rtt_ms.is_finite()) {
        bail!("--rtt-ms must be a non-negative number, got {}", args.rtt_ms);
    }
    let config = rlsched_executor::link::LinkConfig {
        trace: std::sync::Arc::new(trace),
        rtt_ms: args.rtt_ms,
        upstream: args.upstream,
    };
    serve(&args.listen, |listener| async move {
        println!(
            "rlsched link listening on {} -> {} (trace {}, mean {:.2} Mbit/s, rtt {} ms)",
            listener.local_addr()?,
            config.upstream,
            config.trace.name,
            config.trace.mean_mbps(),
            config.rtt_ms
        );
        Ok(rlsched_executor::link::run(listener, config, ctrl_c()).await?)
    })
}
