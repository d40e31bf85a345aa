//! Everything a simulated episode is drawn from: the request mix with each workload's device and
//! worker profiles, and the bandwidth traces.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rlsched_executor::profile::profiler::Profile;
use rlsched_executor::net::trace::{Trace, TraceFormat};

use crate::config::{EnvConfig, WorkloadMix};
use crate::candidates::{candidates, Candidate};
use crate::EnvError;

pub struct WorkloadModel {
    pub mix: WorkloadMix,
    pub device: Profile,
    pub worker: Profile,
    /// Candidate plans, in a fixed order (the index is a plan's identity for this workload).
    pub candidates: Vec<Candidate>,
}

pub struct Scenario {
    pub config: EnvConfig,
    pub workloads: Vec<WorkloadModel>,
    pub traces: Vec<Arc<Trace>>,
    /// Largest candidate count over the workloads (the padded plan dimension).
    pub max_plans: usize,
}

fn is_trace_file(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    !(name.starts_with("license") || name.starts_with("readme") || name.starts_with('.') || name.ends_with(".md"))
}

/// Loads every trace under the given files or directories (sorted, format detected), scaled.
pub fn load_traces(paths: &[PathBuf], format: Option<TraceFormat>, scale: f64) -> Result<Vec<Arc<Trace>>, EnvError> {
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
        .map(|f| Ok(Arc::new(Trace::load(f, format)?.scaled(scale))))
        .collect()
}

impl Scenario {
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

    /// The training scenario: the training traces at every `training_bandwidth_scales` entry.
    pub fn load_training(config: &EnvConfig) -> Result<Self, EnvError> {
        let mut scenario = Self::load(config, &config.traces)?;
        if !config.training_bandwidth_scales.is_empty() {
            let mut traces = Vec::new();
            for &scale in &config.training_bandwidth_scales {
                traces.extend(load_traces(&config.traces, None, scale)?);
            }
            scenario.traces = traces;
        }
        Ok(scenario)
    }

    /// Builds the scenario for `traces` (training or validation), trace format detected.
    pub fn load(config: &EnvConfig, traces: &[PathBuf]) -> Result<Self, EnvError> {
        Self::load_with(config, traces, None)
    }

    pub fn load_with(config: &EnvConfig, traces: &[PathBuf], format: Option<TraceFormat>) -> Result<Self, EnvError> {
        config.validate().map_err(EnvError::Config)?;
        let mut workloads = Vec::new();
        for mix in &config.workloads {
            let load = |suffix: &str| {
                Profile::load(&config.profiles_dir.join(format!("{}-{suffix}.json", mix.name)))
            };
            let device = load(&config.device_profile)?;
            let worker = load(&config.worker_profile)?;
            let candidates = candidates(&device, &worker, config.split_points, config.int8_intermediates);
            workloads.push(WorkloadModel { mix: mix.clone(), device, worker, candidates });
        }
        let max_plans = workloads.iter().map(|w| w.candidates.len()).max().unwrap_or(0);
        Ok(Self {
            config: config.clone(),
            workloads,
            traces: load_traces(traces, format, config.bandwidth_scale)?,
            max_plans,
        })
    }
}
