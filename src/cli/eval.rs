//! `rlsched eval`: every scheduler (and the learned policy) on the same requests.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::{write_atomic, ConfigArgs};

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

pub fn run(args: EvalArgs) -> Result<()> {
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
                "checkpoint {} expects a state of {} features, this config gives {} (a different env.history, or a checkpoint from an older observation: retrain it)",
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
    print!("{report}");
    if let Some(path) = &args.json {
        write_atomic(path, &serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(())
}

