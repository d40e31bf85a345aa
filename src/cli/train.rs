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

pub fn run(args: TrainArgs) -> Result<()> {
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
    let dir = base.join("checkpoints").join(&args.run_name);
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
    if let Some(e) = save_error {
        return Err(e.into());
    }
    rlsched_agent::checkpoint::save(&dir, &policy, &sidecar(&policy, last_step), Some(trained.optimizer))?;
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
    print!("{report}");
    Ok(())
}

