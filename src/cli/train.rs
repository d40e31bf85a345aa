//! `rlsched train`: PPO on the training traces, validation checks along the way, a checkpoint,
//! and the comparison table on the validation traces.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::module::Module;
use rlsched_agent::metrics::MetricsSink;

use super::ConfigArgs;

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
    /// Save the checkpoint every this many iterations (and at the end), so an interrupted run
    /// keeps its progress and `--resume` can continue it. 0: only at the end.
    #[arg(long, default_value_t = 8)]
    pub checkpoint_every: usize,
    /// Requests in the final evaluation on the validation traces.
    #[arg(long, default_value_t = 4000)]
    pub eval_requests: usize,
}

/// Most requests in a final evaluation (or `eval`): every latency of every scheduler is kept.
pub const MAX_EVAL_REQUESTS: usize = 1_000_000;

/// A run name is one plain folder name: it is joined under `checkpoints/` and `runs/`, and
/// anything else would make those two one folder, or put the checkpoint (which replaces its
/// folder on every save) over another folder.
fn check_run_name(name: &str) -> Result<()> {
    let rule = if name.is_empty() {
        Some("it is empty")
    } else if std::path::Path::new(name).is_absolute() || name.starts_with('/') || name.starts_with('\\') {
        Some("it must not be an absolute path")
    } else if name == "." || name.contains("..") {
        Some("it must not be `.` or contain `..`")
    } else if name.contains('/') || name.contains('\\') || name.contains(std::path::MAIN_SEPARATOR) {
        Some("it must not contain a path separator (`/` or `\\`)")
    } else if name.chars().any(char::is_control) {
        Some("it must not contain control characters")
    } else {
        None
    };
    match rule {
        Some(rule) => bail!("--run-name {name:?}: {rule}; a run name is one folder name, such as `latest`"),
        None => Ok(()),
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    check_run_name(&args.run_name)?;
    super::check_count("--eval-requests", args.eval_requests, 1, MAX_EVAL_REQUESTS)?;
    use rlsched_env::schedulers;
    let mut config = args.config.load()?;
    if !config.env.nodes.is_empty() {
        anyhow::bail!("the chain scenario ([[env.nodes]]) has no policy yet: `rlsched eval` runs its baselines");
    }
    if let Some(seed) = args.seed {
        config.agent.ppo.seed = seed;
    }
    if let Some(steps) = args.total_steps {
        super::check_count("--total-steps", steps, 1, rlsched_agent::config::MAX_TOTAL_STEPS)?;
        config.agent.ppo.total_steps = steps;
    }
    let base = args.config.dir();
    let dir = base.join("checkpoints").join(&args.run_name);
    // an unwritable checkpoint folder fails now, not after the training it would have kept
    rlsched_agent::checkpoint::check_writable(&dir)?;
    let train_scenario = std::sync::Arc::new(rlsched_env::Scenario::load_training(&config.env)?);
    let validation = std::sync::Arc::new(rlsched_env::Scenario::load(&config.env, &config.env.validation_traces)?);
    let ppo = config.agent.ppo.clone();
    let mut sink = rlsched_agent::metrics::TensorBoardSink::new(&base.join("runs").join(&args.run_name))
        .context("creating the TensorBoard run directory")?;
    let resolved = toml::to_string_pretty(&config).context("serialising the config")?;
    sink.text("hyperparameters", &format!("```toml\n{resolved}\n```"), 0);

    // The baselines on the validation requests at every training scale, once: the policy's
    // regret ratio is measured against the best of them, and the checkpoint is chosen there.
    let probe = super::validation::ValidationProbe::new(&config.env, ppo.seed)?;
    let probe_cells: Vec<String> = probe.cells.iter().map(|c| format!("{} {} {:.3}", c.name, c.best_name, c.best_reward)).collect();

    let bar = indicatif::ProgressBar::new(ppo.num_iterations() as u64 * ppo.batch_size() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps, {per_sec} {msg}")
            .expect("valid template"),
    );
    let started = std::time::Instant::now();
    let mut quality = TimeToQuality::default();
    let (mut first_step, mut last_step) = (None, 0);
    let (mut last_ratio, mut last_margin) = (f64::NAN, f64::NAN);
    let mut selected: Option<Selected> = None;
    let mut eval_error = None;
    let iterations = ppo.num_iterations();
    let config_json = serde_json::to_value(&config)?;
    let sidecar = |policy: &rlsched_agent::Policy, step: usize| {
        rlsched_agent::checkpoint::Sidecar::new(policy, step, ppo.seed, &config.env, train_scenario.max_plans, &config.agent.model, config_json.clone())
    };
    let mut save_error = None;
    let trained = rlsched_agent::ppo::train(train_scenario.clone(), &config.agent.model, &ppo, args.resume.as_deref(), |stats, policy, optimizer| {
        rlsched_agent::metrics::log_iteration(&mut sink, stats);
        if args.checkpoint_every > 0 && stats.iteration % args.checkpoint_every == 0 && stats.iteration != iterations {
            let policy = policy.valid();
            if let Err(e) = rlsched_agent::checkpoint::save(&dir, &policy, &sidecar(&policy, stats.global_step), Some(optimizer())) {
                save_error.get_or_insert(e);
            }
        }
        first_step.get_or_insert(stats.global_step - ppo.batch_size());
        last_step = stats.global_step;
        if stats.iteration % args.eval_every.max(1) == 0 || stats.iteration == iterations {
            let scheduler = rlsched_agent::PolicyScheduler { policy: policy.valid(), device: burn::tensor::Device::flex() };
            match probe.check(Box::new(scheduler)) {
                Ok(result) => {
                    let step = stats.global_step;
                    // sched/* (DESIGN.md's tags): the cell at the config's scale, with the
                    // regret ratio over every scale; each scale's own under sched/x<scale>/
                    for (cell, r) in probe.cells.iter().zip(&result.cells) {
                        rlsched_agent::metrics::log_schedule(&mut sink, &format!("sched/{}", cell.name), r, step);
                    }
                    let main = probe.cells.iter().position(|c| c.scale == config.env.bandwidth_scale).unwrap_or(0);
                    let overall = rlsched_env::eval::SchedulerResult { regret_ratio: result.regret_ratio, ..result.cells[main].clone() };
                    rlsched_agent::metrics::log_schedule(&mut sink, "sched", &overall, step);
                    sink.scalar("sched/margin", result.margin, step);
                    sink.scalar("sched/score", result.score, step);
                    quality.record(&result, step, started.elapsed().as_secs_f64());
                    (last_ratio, last_margin) = (result.regret_ratio, result.margin);
                    if selected.as_ref().is_none_or(|s| result.score < s.score || s.score.is_nan()) {
                        let summary = probe.summary(&result);
                        selected = Some(Selected { policy: policy.valid(), step, margin: result.margin, ratio: result.regret_ratio, score: result.score, summary });
                    }
                }
                Err(e) => eval_error = Some(e),
            }
            sink.flush();
        }
        bar.set_position(stats.global_step as u64);
        bar.set_message(format!("mean reward {:.3}, validation regret ratio {last_ratio:.2}, margin {last_margin:+.3}", stats.mean_reward));
    })?;
    bar.finish_and_clear();
    sink.flush();
    if let Some(e) = eval_error {
        return Err(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    let steps = last_step - first_step.unwrap_or(0);
    println!("trained {steps} steps, to step {last_step}, in {seconds:.1} s ({:.0} steps/s)", steps as f64 / seconds);
    println!("validation probe (best baseline per scale): {}", probe_cells.join(", "));
    print!("{quality}");
    println!("TensorBoard: {}", base.join("runs").join(&args.run_name).display());
    if let Some(e) = save_error {
        return Err(e.into());
    }
    // The policy with the best validation margin is the checkpoint; Adam's state belongs to the
    // last policy, so it is kept only when that is the one chosen.
    let final_policy = trained.policy;
    if let Some(s) = &selected {
        print!("validation probe, the selected policy (step {}):\n{}", s.step, s.summary);
    }
    let (policy, step, optimizer) = match selected {
        Some(s) if s.step != last_step => {
            println!(
                "selected the policy of step {} (validation mean per-cell regret ratio {:.2}, margin {:+.3}, overall regret ratio {:.2}); the last one's Adam state is not kept",
                s.step, s.score, s.margin, s.ratio
            );
            (s.policy, s.step, None)
        }
        _ => (final_policy, last_step, Some(trained.optimizer)),
    };
    rlsched_agent::checkpoint::save(&dir, &policy, &sidecar(&policy, step), optimizer)?;
    println!("checkpoint written to {}", dir.display());
    // best-static is fitted as `eval` fits it: on the training traces at the evaluated scale
    let mut fit_env = rlsched_env::ReplayEnv::new(std::sync::Arc::new(rlsched_env::Scenario::load(&config.env, &config.env.traces)?));
    let mut list = schedulers::BASELINES
        .iter()
        .map(|n| schedulers::by_name(n, &mut fit_env, ppo.seed))
        .collect::<Result<Vec<_>, _>>()?;
    list.push(Box::new(rlsched_agent::PolicyScheduler { policy, device: burn::tensor::Device::flex() }));
    let label = config.env.validation_traces.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
    let episodes = args.eval_requests.div_ceil(config.env.requests_per_episode.max(1));
    let report = rlsched_env::eval::evaluate(validation, &mut list, episodes, 1, &label)?;
    print!("{report}");
    Ok(())
}


/// The best policy on the validation probe so far.
struct Selected {
    policy: rlsched_agent::Policy,
    step: usize,
    margin: f64,
    score: f64,
    ratio: f64,
    /// The probe's cells for this policy.
    summary: String,
}

/// When the policy first reached each level of quality on the validation probe.
#[derive(Default)]
struct TimeToQuality {
    beat_all: Option<(usize, f64)>,
    ratio_below_1: Option<(usize, f64)>,
    ratio_below_half: Option<(usize, f64)>,
}

impl TimeToQuality {
    fn record(&mut self, result: &super::validation::ProbeResult, step: usize, seconds: f64) {
        if result.beats_all {
            self.beat_all.get_or_insert((step, seconds));
        }
        if result.regret_ratio < 1.0 {
            self.ratio_below_1.get_or_insert((step, seconds));
        }
        if result.regret_ratio < 0.5 {
            self.ratio_below_half.get_or_insert((step, seconds));
        }
    }
}

impl std::fmt::Display for TimeToQuality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |what: &str, when: Option<(usize, f64)>| match when {
            Some((step, seconds)) => format!("{what} at step {step}, {seconds:.1} s"),
            None => format!("{what}: not reached"),
        };
        writeln!(f, "validation probe: {}", at("regret ratio first below 1.0", self.ratio_below_1))?;
        writeln!(f, "validation probe: {}", at("regret ratio first below 0.5", self.ratio_below_half))?;
        writeln!(f, "validation probe: {}", at("first beat every deployable baseline at every scale", self.beat_all))
    }
}
