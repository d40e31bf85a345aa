//! Everything a simulated episode is drawn from: the request mix with each workload's device and
//! worker profiles, and the bandwidth traces.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rlsched_executor::profile::profiler::Profile;
use rlsched_executor::net::trace::{Trace, TraceFormat};
use rlsched_executor::error::Num;
use rlsched_executor::Workload;

use crate::config::{EnvConfig, WorkloadMix};
use crate::procedural::GeneratedModel;
use crate::candidates::{candidates, drop_dominated, Candidate};
use crate::EnvError;

pub struct WorkloadModel {
    pub mix: WorkloadMix,
    pub device: Profile,
    pub worker: Profile,
    /// Candidate plans, in a fixed order (the index is a plan's identity for this workload).
    pub candidates: Vec<Candidate>,
}

impl WorkloadModel {
    /// The workload with its candidate plans under its contention model (the device profile's
    /// measured curve, or the scenario's); `origin`
    /// names where its profiles came from in an error.
    pub fn new(config: &EnvConfig, mix: WorkloadMix, device: Profile, worker: Profile, origin: &Path) -> Result<Self, EnvError> {
        let candidates: Vec<Candidate> = candidates(&device, &worker, config.split_points, config.int8_intermediates)
            .into_iter()
            .map(|c| c.with_contention(config.contention.model_for(&device)))
            .collect();
        let candidates = drop_dominated(candidates, config.device_memory_mb * 1e6);
        // Validated profiles give every variant a local plan; the schedulers rely on one.
        if candidates.is_empty() {
            return Err(EnvError::Config(format!("{}: no candidate plans", origin.display())));
        }
        Ok(Self { mix, device, worker, candidates })
    }

    fn generated(config: &EnvConfig, model: GeneratedModel) -> Result<Self, EnvError> {
        let origin = PathBuf::from(format!("env.procedural ({})", model.mix.name));
        Self::new(config, model.mix, model.device, model.worker, &origin)
    }
}

pub struct Scenario {
    pub config: EnvConfig,
    pub workloads: Vec<WorkloadModel>,
    pub traces: Vec<Arc<Trace>>,
    /// Largest candidate count over the workloads (the padded plan dimension).
    pub max_plans: usize,
    /// Built by `load_training`: the config's training-only settings (`training_rtt_ms`,
    /// `[env.training_tail]`) apply to its episodes, and to no evaluation's.
    pub training: bool,
}

/// Seeds the log-uniform training scales: every run draws the same ones.
const SCALE_DRAW_SEED: u64 = 0x5ca1e;

fn is_trace_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    !(name.starts_with("license") || name.starts_with("readme") || name.starts_with('.') || name.ends_with(".md"))
}

/// Loads every trace under the given files or directories (sorted, format detected), scaled.
pub fn load_traces(paths: &[PathBuf], format: Option<TraceFormat>, scale: f64) -> Result<Vec<Arc<Trace>>, EnvError> {
    load_scaled_traces(paths, format, scale, "scale")
}

/// `load_traces`, with a scale that comes from the config field `field`: a scale the traces
/// cannot take (a mean rate below the floor, say) is an error that names the field.
pub(crate) fn load_scaled_traces(
    paths: &[PathBuf],
    format: Option<TraceFormat>,
    scale: f64,
    field: &str,
) -> Result<Vec<Arc<Trace>>, EnvError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| rlsched_executor::ExecError::io(path, e))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_trace_file(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    if files.is_empty() {
        return Err(EnvError::Config(format!("no trace files under {paths:?}")));
    }
    files
        .iter()
        .map(|f| {
            let trace = Trace::load(f, format)?;
            let scaled = trace
                .scaled(scale)
                .map_err(|e| EnvError::Config(format!("{field} = {} does not suit {}: {e}", Num(scale), f.display())))?;
            Ok(Arc::new(scaled))
        })
        .collect()
}

/// The profile `<workload>-<suffix>.json` of `workload`, checked against the workload's
/// definition: a profile of another network, or of a variant the workload lacks, would be
/// simulated as if it were this one.
pub(crate) fn load_profile(config: &EnvConfig, workload: Workload, suffix: &str) -> Result<(Profile, PathBuf), EnvError> {
    let path = config.profiles_dir.join(format!("{}-{suffix}.json", workload.name()));
    let mut profile = Profile::load(&path)?;
    if profile.workload != workload.name() {
        return Err(EnvError::Config(format!(
            "{}: field workload is `{}`, but the file was loaded as the profile of `{}`",
            path.display(),
            profile.workload,
            workload.name()
        )));
    }
    let spec = workload.spec()?;
    for (i, variant) in profile.variants.iter_mut().enumerate() {
        match spec.variant(&variant.name) {
            // the catalogue is where accuracies and their sources are kept up to date; a
            // profile's copy is what it was when the latencies were measured
            Ok(card) => (variant.accuracy, variant.accuracy_source) = (card.accuracy, card.accuracy_source.clone()),
            Err(e) => return Err(EnvError::Config(format!("{}: field variants[{i}].name: {e}", path.display()))),
        }
    }
    Ok((profile, path))
}

/// A variant that both profiles hold must be cut into the same stages, or a split would run
/// the device's prefix and then a worker suffix of another network.
fn check_stages_match(device: &Profile, device_path: &Path, worker: &Profile, worker_path: &Path) -> Result<(), EnvError> {
    for variant in &device.variants {
        let Some(remote) = worker.variant(&variant.name) else { continue };
        let names = |v: &rlsched_executor::profile::profiler::VariantProfile| {
            v.stages.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
        };
        let (ours, theirs) = (names(variant), names(remote));
        if ours != theirs {
            let (device_file, worker_file) = (device_path.display(), worker_path.display());
            let detail = match ours.iter().zip(&theirs).position(|(a, b)| a != b) {
                Some(k) => format!("stage {k} is `{}` in {device_file} but `{}` in {worker_file}", ours[k], theirs[k]),
                None => format!("{} stages in {device_file} but {} in {worker_file}", ours.len(), theirs.len()),
            };
            return Err(EnvError::Config(format!(
                "variant `{}`: {detail}; a split needs the same stages on both sides",
                variant.name
            )));
        }
    }
    Ok(())
}

/// The traces with `[env.outages]` laid over them.
pub(crate) fn with_outages(config: &EnvConfig, traces: &[Arc<Trace>]) -> Result<Vec<Arc<Trace>>, EnvError> {
    if config.outages.period_s <= 0.0 {
        return Ok(traces.to_vec());
    }
    traces.iter().map(|t| config.outages.apply(t).map(Arc::new)).collect()
}

impl Scenario {
    /// What training's shaping takes from a request's reward (0 outside training).
    pub fn tail_penalty(&self, latency_ms: f64, slo_ms: f64) -> f64 {
        if self.training { self.config.training_tail.penalty(latency_ms, slo_ms) } else { 0.0 }
    }

    /// An episode's round trip, ms: in training a draw from `training_rtt_ms` when it is set.
    pub fn episode_rtt_ms(&self, rng: &mut impl rand::Rng) -> f64 {
        match self.config.training_rtt_ms[..] {
            [low, high] if self.training && high > low => crate::procedural::log_uniform(rng, low, high),
            _ => self.config.rtt_ms,
        }
    }

    /// Draws a workload index in proportion to the mix weights.
    pub fn pick_workload(&self, rng: &mut impl rand::Rng) -> usize {
        let total: f64 = self.workloads.iter().map(|w| w.mix.weight.max(0.0)).sum();
        let mut pick = rng.random_range(0.0..total.max(1e-9));
        self.workloads
            .iter()
            .position(|w| {
                pick -= w.mix.weight.max(0.0);
                pick < 0.0
            })
            .unwrap_or(0)
    }

    /// The training scenario: the training traces at every `training_bandwidth_scales` entry (or
    /// at log-uniform draws between them), plus any synthetic Markov traces.
    pub fn load_training(config: &EnvConfig) -> Result<Self, EnvError> {
        let mut scenario = Self::load(config, &config.traces)?;
        if config.training_scale_draws > 0 {
            use rand::{Rng, SeedableRng};
            let scales = &config.training_bandwidth_scales;
            let low = scales.iter().copied().fold(f64::INFINITY, f64::min).ln();
            let high = scales.iter().copied().fold(f64::NEG_INFINITY, f64::max).ln();
            let mut rng = rand::rngs::SmallRng::seed_from_u64(SCALE_DRAW_SEED);
            let mut traces = Vec::new();
            for trace in load_scaled_traces(&config.traces, None, 1.0, "env.traces")? {
                for _ in 0..config.training_scale_draws {
                    let scale = (low + (high - low) * rng.random::<f64>()).exp();
                    let scaled = trace.scaled(scale).map_err(|e| {
                        EnvError::Config(format!("env.training_scale_draws: scale {} does not suit {}: {e}", Num(scale), trace.name))
                    })?;
                    traces.push(Arc::new(scaled));
                }
            }
            scenario.traces = traces;
        } else if !config.training_bandwidth_scales.is_empty() {
            let mut traces = Vec::new();
            for (i, &scale) in config.training_bandwidth_scales.iter().enumerate() {
                let field = format!("env.training_bandwidth_scales[{i}]");
                traces.extend(load_scaled_traces(&config.traces, None, scale, &field)?);
            }
            scenario.traces = traces;
        }
        // Markov traces are generated across the whole range of rates already: not scaled.
        scenario.traces.extend(config.synthetic.generate()?);
        // laying outages over a trace twice lays the same ones
        scenario.traces = with_outages(config, &scenario.traces)?;
        scenario.training = true;
        let generated = config.procedural.training(&config.device_profile, &config.worker_profile);
        scenario.add_models(generated)?;
        Ok(scenario)
    }

    /// Adds generated models to the request mix.
    pub fn add_models(&mut self, models: Vec<GeneratedModel>) -> Result<(), EnvError> {
        for model in models {
            self.workloads.push(WorkloadModel::generated(&self.config, model)?);
        }
        self.max_plans = self.workloads.iter().map(|w| w.candidates.len()).max().unwrap_or(0);
        Ok(())
    }

    /// This scenario with its request mix replaced by validation's held-out generated models
    /// (`[env.procedural] validation_models`, never trained on).
    pub fn with_held_out_models(mut self) -> Result<Self, EnvError> {
        let config = &self.config;
        let models = config.procedural.validation(&config.device_profile, &config.worker_profile);
        if models.is_empty() {
            return Err(EnvError::Config("env.procedural.validation_models is 0: no held-out models to score on".into()));
        }
        self.workloads.clear();
        self.add_models(models)?;
        Ok(self)
    }

    /// This scenario replaying validation's held-out link family instead of its own traces: the
    /// Markov traces of `[env.validation_synthetic]` (generated across the whole range of rates:
    /// unscaled).
    pub fn with_held_out_traces(mut self) -> Result<Self, EnvError> {
        let traces = self.config.validation_synthetic.generate()?;
        if traces.is_empty() {
            return Err(EnvError::Config("env.validation_synthetic.traces is 0: no held-out traces to replay".into()));
        }
        self.traces = with_outages(&self.config, &traces)?;
        Ok(self)
    }

    /// Builds the scenario for `traces` (training or validation), trace format detected.
    pub fn load(config: &EnvConfig, traces: &[PathBuf]) -> Result<Self, EnvError> {
        Self::load_with(config, traces, None)
    }

    pub fn load_with(config: &EnvConfig, traces: &[PathBuf], format: Option<TraceFormat>) -> Result<Self, EnvError> {
        config.validate().map_err(EnvError::Config)?;
        let mut workloads = Vec::new();
        for (i, mix) in config.workloads.iter().enumerate() {
            let workload: Workload = mix
                .name
                .parse()
                .map_err(|e| EnvError::Config(format!("env.workloads[{i}].name: {e}")))?;
            let (device, device_path) = load_profile(config, workload, &config.device_profile)?;
            let (worker, worker_path) = load_profile(config, workload, &config.worker_profile)?;
            check_stages_match(&device, &device_path, &worker, &worker_path)?;
            workloads.push(WorkloadModel::new(config, mix.clone(), device, worker, &device_path)?);
        }
        let max_plans = workloads.iter().map(|w| w.candidates.len()).max().unwrap_or(0);
        Ok(Self {
            config: config.clone(),
            workloads,
            traces: with_outages(config, &load_scaled_traces(traces, format, config.bandwidth_scale, "env.bandwidth_scale")?)?,
            max_plans,
            training: false,
        })
    }
}
