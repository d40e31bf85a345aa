//! `rlsched eval`: every scheduler (and the learned policy) on the same requests, on one trace
//! set at one bandwidth scale, or on a grid of named sets × scales (`--trace-set`, `--scales`);
//! `--plot DIR` draws the figures (`crate::plot`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rlsched_env::eval::EvalReport;
use rlsched_env::schedulers::{self, Scheduler};
use rlsched_env::{EnvConfig, Scenario};
use serde::Serialize;

use super::{check_writable, write_atomic, ConfigArgs};

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
    /// A named trace set, `NAME=PATH[,PATH...]`; repeat it to evaluate several sets (instead
    /// of `--traces`).
    #[arg(long = "trace-set", value_name = "NAME=PATHS")]
    pub trace_sets: Vec<String>,
    /// Bandwidth scales to evaluate each set at, comma-separated (default: the config's
    /// `env.bandwidth_scale`).
    #[arg(long, value_delimiter = ',')]
    pub scales: Vec<f64>,
    /// Also evaluate on validation's held-out link family: the Markov traces with outages of
    /// `[env.validation_synthetic]` (generated from their seed, replayed unscaled), as the set
    /// `markov-outages`.
    #[arg(long)]
    pub markov_validation: bool,
    /// Replace the request mix by validation's held-out generated models
    /// (`[env.procedural] validation_models`, never trained on).
    #[arg(long)]
    pub held_out_models: bool,
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
    /// Also write the results as JSON (one cell: its report; several: a list of
    /// `{set, scale, report}`).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the figures into this directory, each as SVG and PNG: a latency CDF per cell,
    /// regret-ratio bars over every cell, the policy's and the references' reward margin over
    /// the best baseline per cell, and the first cell's timeline of one episode.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Schedulers on the timeline, comma-separated (default: the cell's best baseline, the
    /// policy and the oracle, those that were evaluated).
    #[arg(long, value_delimiter = ',')]
    pub timeline_schedulers: Vec<String>,
    /// The episode the timeline replays (evaluation's episode of that number).
    #[arg(long, default_value_t = 0)]
    pub timeline_episode: usize,
}

/// One trace set at one scale, evaluated.
#[derive(Serialize)]
struct Cell {
    set: String,
    scale: f64,
    report: EvalReport,
}

/// `NAME=PATH[,PATH]` → (name, paths).
fn parse_trace_set(spec: &str) -> Result<(String, Vec<PathBuf>)> {
    let Some((name, paths)) = spec.split_once('=') else {
        bail!("--trace-set `{spec}`: expected NAME=PATH[,PATH...]");
    };
    let paths: Vec<PathBuf> = paths.split(',').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
    if name.is_empty() || paths.is_empty() {
        bail!("--trace-set `{spec}`: both the name and at least one path are needed");
    }
    Ok((name.to_string(), paths))
}

pub fn run(args: EvalArgs) -> Result<()> {
    super::check_count("--requests", args.requests, 1, super::train::MAX_EVAL_REQUESTS)?;
    if !args.traces.is_empty() && !args.trace_sets.is_empty() {
        bail!("give either --traces or --trace-set, not both");
    }
    let config = args.config.load()?;
    if !config.env.nodes.is_empty() {
        return chain(&args, &config.env);
    }
    let default_checkpoint = args.config.dir().join("checkpoints/default");
    let checkpoint = match &args.checkpoint {
        Some(dir) => Some(dir.clone()),
        None => default_checkpoint.is_dir().then_some(default_checkpoint),
    };
    let format = args.trace_format.as_deref().map(str::parse).transpose()?;
    let mut sets: Vec<(String, Vec<PathBuf>)> = if args.markov_validation && args.traces.is_empty() && args.trace_sets.is_empty() {
        Vec::new()
    } else if args.trace_sets.is_empty() {
        let traces = if args.traces.is_empty() { config.env.validation_traces.clone() } else { args.traces.clone() };
        vec![(traces.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","), traces)]
    } else {
        args.trace_sets.iter().map(|s| parse_trace_set(s)).collect::<Result<_>>()?
    };
    if args.markov_validation {
        if config.env.validation_synthetic.traces == 0 {
            bail!("--markov-validation: env.validation_synthetic.traces is 0 in the config");
        }
        sets.push((MARKOV_SET.to_string(), Vec::new()));
    }
    if args.held_out_models && config.env.procedural.validation_models == 0 {
        bail!("--held-out-models: env.procedural.validation_models is 0 in the config");
    }
    let scales = if args.scales.is_empty() { vec![config.env.bandwidth_scale] } else { args.scales.clone() };
    // an unwritable output fails now, not after minutes of evaluation
    if let Some(path) = &args.json {
        check_writable(path)?;
    }
    if let Some(dir) = &args.plot {
        crate::plot::prepare_dir(dir)?;
    }
    let names: Vec<String> = if args.schedulers.is_empty() {
        schedulers::BASELINES.iter().map(|s| s.to_string()).collect()
    } else {
        args.schedulers.clone()
    };
    let wants_policy = args.schedulers.is_empty() || args.schedulers.iter().any(|n| n == "policy");
    let policy = match (wants_policy, &checkpoint) {
        (true, Some(dir)) => Some(load_policy(dir, &config.env)?),
        (true, None) if !args.schedulers.is_empty() => {
            bail!("scheduler `policy` needs a checkpoint: pass --checkpoint DIR or train one")
        }
        _ => None,
    };

    let mut cells = Vec::new();
    let mut first_cell_schedulers = None;
    for (set, traces) in &sets {
        // the Markov traces are generated across the whole range of rates: one cell, unscaled
        let set_scales = if set == MARKOV_SET && traces.is_empty() { vec![1.0] } else { scales.clone() };
        for &scale in &set_scales {
            let mut env = config.env.clone();
            env.bandwidth_scale = scale;
            let mut scenario = if set == MARKOV_SET && traces.is_empty() {
                Scenario::load(&env, &env.validation_traces)?.with_held_out_traces()?
            } else {
                Scenario::load_with(&env, traces, format).with_context(|| format!("trace set `{set}` at ×{scale}"))?
            };
            let mut train = Scenario::load(&env, &env.traces)?;
            if args.held_out_models {
                scenario = scenario.with_held_out_models()?;
                train = train.with_held_out_models()?;
            }
            let (scenario, train) = (Arc::new(scenario), Arc::new(train));
            let mut train_env = rlsched_env::ReplayEnv::new(train);
            let mut list = names
                .iter()
                .filter(|n| n.as_str() != "policy")
                .map(|n| schedulers::by_name(n, &mut train_env, args.seed))
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(policy) = &policy {
                let device = burn::tensor::Device::flex();
                list.push(Box::new(rlsched_agent::PolicyScheduler { policy: policy.clone(), device }));
            }
            let episodes = args.requests.div_ceil(env.requests_per_episode.max(1));
            let report = rlsched_env::eval::evaluate(scenario.clone(), &mut list, episodes, args.seed, set)?;
            if sets.len() * scales.len() > 1 {
                println!("== {set} ×{scale}");
            }
            print!("{report}");
            if first_cell_schedulers.is_none() {
                first_cell_schedulers = Some((scenario, list));
            }
            cells.push(Cell { set: set.clone(), scale, report });
        }
    }
    if let Some(path) = &args.json {
        let bytes = match cells.as_slice() {
            [one] => serde_json::to_vec_pretty(&one.report)?,
            all => serde_json::to_vec_pretty(all)?,
        };
        write_atomic(path, &bytes)?;
    }
    if let (Some(dir), Some((scenario, mut list))) = (&args.plot, first_cell_schedulers) {
        for path in plot(dir, &cells, scenario, &mut list, &args)? {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn load_policy(dir: &Path, env: &EnvConfig) -> Result<rlsched_agent::Policy> {
    let device = burn::tensor::Device::flex();
    let (policy, sidecar) = rlsched_agent::checkpoint::load(dir, &device)?;
    if sidecar.state_dim != rlsched_env::obs::state_dim(env) {
        bail!(
            "checkpoint {} expects a state of {} features, this config gives {} (a different env.history, or a checkpoint from an older observation: retrain it)",
            dir.display(),
            sidecar.state_dim,
            rlsched_env::obs::state_dim(env)
        );
    }
    Ok(policy)
}

/// The set `--markov-validation` adds.
const MARKOV_SET: &str = "markov-outages";

fn cell_label(cell: &Cell) -> String {
    format!("{} ×{}", cell.set, cell.scale)
}

/// A file-name-safe form of a label.
fn slug(label: &str) -> String {
    label.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect()
}

/// Every figure of `--plot`; the timeline replays one episode of the first cell.
fn plot(
    dir: &Path,
    cells: &[Cell],
    scenario: Arc<Scenario>,
    list: &mut [Box<dyn Scheduler>],
    args: &EvalArgs,
) -> Result<Vec<PathBuf>> {
    use crate::plot::{latency_cdf, margin_bars, regret_bars, timeline, BarCell, LatencySeries, MarginCell, Timeline};
    let mut written = Vec::new();
    for cell in cells {
        let series: Vec<LatencySeries> = cell
            .report
            .schedulers
            .iter()
            .map(|s| LatencySeries { name: s.name.clone(), latencies_ms: s.latencies_ms.clone() })
            .collect();
        let label = cell_label(cell);
        let name = format!("latency-cdf-{}-x{}", slug(&cell.set), cell.scale);
        written.extend(latency_cdf(dir, &name, &format!("Latency CDF — {label}, {} requests", cell.report.requests), &series)?);
    }
    let bars: Vec<BarCell> = cells
        .iter()
        .map(|c| BarCell {
            label: cell_label(c),
            // the oracle's ratio is 0 by definition
            ratios: c.report.schedulers.iter().filter(|s| s.name != "oracle").map(|s| (s.name.clone(), s.regret_ratio)).collect(),
        })
        .collect();
    written.extend(regret_bars(dir, "regret-ratio", "Regret ratio against the best deployable baseline (lower is better)", &bars)?);
    // the policy and the references: the baselines' own margins are the table's business
    let margins: Vec<MarginCell> = cells
        .iter()
        .map(|c| MarginCell {
            label: cell_label(c),
            margins: c
                .report
                .schedulers
                .iter()
                .filter(|s| s.name == "policy" || !s.deployable)
                .map(|s| (s.name.clone(), (s.vs_best_baseline.mean, s.vs_best_baseline.ci95_low, s.vs_best_baseline.ci95_high)))
                .collect(),
        })
        .collect();
    if margins.iter().any(|m| !m.margins.is_empty()) {
        let title = "Reward margin over the best deployable baseline, paired, 95% interval over episodes";
        written.extend(margin_bars(dir, "margin", title, &margins)?);
    }

    let first = &cells[0];
    let wanted: Vec<String> = if args.timeline_schedulers.is_empty() {
        [first.report.best_baseline.as_str(), "policy", "oracle"].iter().map(|s| s.to_string()).collect()
    } else {
        args.timeline_schedulers.clone()
    };
    let mut episodes = Vec::new();
    for name in &wanted {
        let Some(scheduler) = list.iter_mut().find(|s| &s.name() == name) else {
            if args.timeline_schedulers.is_empty() {
                continue;
            }
            bail!("--timeline-schedulers: `{name}` was not evaluated (evaluated: {})", list.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "));
        };
        episodes.push(rlsched_env::episode::record_episode(scenario.clone(), scheduler.as_mut(), args.timeline_episode, args.seed)?);
    }
    let Some((trace, trace_index)) = episodes.first().map(|e| (e.trace.clone(), e.trace_index)) else {
        bail!("no scheduler to draw on the timeline");
    };
    let steps = &episodes[0].steps;
    let (start, end) = (steps.first().map_or(0.0, |s| s.time_s), steps.last().map_or(0.0, |s| s.time_s));
    let bandwidth = rlsched_env::episode::bandwidth_series(&scenario.traces[trace_index], start, end + 1.0, 1.0);
    let title = format!("One episode ({}, ×{}, episode {}, seed {})", trace, first.scale, args.timeline_episode, args.seed);
    written.extend(timeline(dir, "timeline", &Timeline { title, bandwidth, episodes: &episodes })?);
    // the figure's every step, for reading what a scheduler saw where it went wrong
    let json = dir.join("timeline.json");
    write_atomic(&json, &serde_json::to_vec_pretty(&episodes)?)?;
    written.push(json);
    Ok(written)
}

/// The chain scenario (`[[env.nodes]]`): its baselines on its own links' traces, the table and
/// the closing note (plan mix, the gain over two-node plans), and the checkpoint's policy
/// zero-shot beside them (it was trained on the default scenario; each chain plan is shown to
/// it in that observation's terms, the workers taken together).
fn chain(args: &EvalArgs, config: &rlsched_env::EnvConfig) -> Result<()> {
    use rlsched_env::chain;
    if !args.traces.is_empty() || !args.trace_sets.is_empty() || !args.scales.is_empty() || args.markov_validation || args.held_out_models || !args.schedulers.is_empty() {
        bail!("the chain scenario ([[env.nodes]]) takes its traces and scales from [[env.links]]: --traces, --trace-set, --scales, --markov-validation, --held-out-models and --schedulers do not apply");
    }
    let scenario = chain::ChainScenario::load(config)?.expect("nodes are set");
    let episodes = args.requests.div_ceil(config.requests_per_episode).max(1);
    // the scenario files live in configs/, the shipped policy at the project's top
    let defaults = [args.config.dir().join("checkpoints/default"), PathBuf::from("checkpoints/default")];
    let checkpoint = args.checkpoint.clone().or_else(|| defaults.into_iter().find(|d| d.is_dir()));
    let policy = checkpoint.map(|dir| load_policy(&dir, config)).transpose()?;
    let scorer = match &policy {
        Some(policy) => Some(policy.plain().map_err(|e| anyhow::anyhow!("the checkpoint's scorer: {e}"))?),
        None => None,
    };
    let results = chain::evaluate_with_policy(&scenario, episodes, args.seed, scorer.map(|s| s as &dyn chain::PlanScorer))?;
    print!("{}", chain::report(&scenario, &results, args.seed));
    Ok(())
}
