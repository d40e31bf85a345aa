//! Checkpoints: the policy's burn record, Adam's state (so `--resume` carries the moments on),
//! and a JSON sidecar (step, seed, crate version, the resolved config, the network's input sizes
//! and the observation statistics). A checkpoint is written as a whole directory and renamed into
//! place, so a crash never leaves a half-written or mixed one; loading checks everything (finite
//! weights, sound statistics) and says what is wrong.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::OptimizerRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::normalize::ObsNormalizer;
use crate::policy::Policy;
use crate::ModelConfig;

pub const RECORD_FILE: &str = "policy.bpk";
pub const SIDECAR_FILE: &str = "checkpoint.json";
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {message}")]
    Invalid { path: String, message: String },
    // the I/O error is in the message, not a `source`, so chained reports print it once
    #[error("checkpoint {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Sidecar {
    /// Environment steps the policy was trained for.
    pub step: usize,
    pub seed: u64,
    pub crate_version: String,
    pub state_dim: usize,
    pub max_plans: usize,
    pub model: ModelConfig,
    /// The running observation statistics the policy was trained with.
    pub normalizer: ObsNormalizer,
    /// The whole resolved training configuration.
    pub config: serde_json::Value,
}

impl Sidecar {
    /// The sidecar for `policy`, trained to `step` under `env` with `config` (the whole resolved
    /// training configuration, recorded as it was).
    pub fn new(
        policy: &Policy,
        step: usize,
        seed: u64,
        env: &rlsched_env::EnvConfig,
        max_plans: usize,
        model: &ModelConfig,
        config: serde_json::Value,
    ) -> Self {
        Self {
            step,
            seed,
            crate_version: env!("CARGO_PKG_VERSION").into(),
            state_dim: rlsched_env::obs::state_dim(env),
            max_plans,
            model: model.clone(),
            normalizer: policy.normalizer.clone(),
            config,
        }
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn io(path: &Path, source: std::io::Error) -> CheckpointError {
    CheckpointError::Io {
        path: path.display().to_string(),
        error: source,
    }
}

/// `dir` with a suffix on its last component: the staging and retired copies of a checkpoint.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

const STAGING: &str = ".new";
const RETIRED: &str = ".old";

/// Writes `policy`, `sidecar` and, when given, the optimizer's state as the checkpoint `dir`.
///
/// The checkpoint changes as one unit: everything is written into a staging directory beside
/// `dir`, which then replaces `dir` by two renames. An interrupted save leaves either the old
/// checkpoint or a complete staged one, which [`load`] puts in place; never a mix.
pub fn save(
    dir: &Path,
    policy: &Policy,
    sidecar: &Sidecar,
    optimizer: Option<OptimizerRecord>,
) -> Result<(), CheckpointError> {
    let staging = sibling(dir, STAGING);
    let retired = sibling(dir, RETIRED);
    for stale in [&staging, &retired] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| io(stale, e))?;
        }
    }
    std::fs::create_dir_all(&staging).map_err(|e| io(&staging, e))?;
    if let Some(record) = optimizer {
        let path = staging.join(OPTIMIZER_FILE);
        record.save(&path).map_err(|e| invalid(&path, e.to_string()))?;
    }
    let record = staging.join(RECORD_FILE);
    policy.clone().save_file(&record).map_err(|e| invalid(&record, e.to_string()))?;
    let side = staging.join(SIDECAR_FILE);
    let json = serde_json::to_vec_pretty(sidecar).map_err(|e| invalid(&side, e.to_string()))?;
    std::fs::write(&side, json).map_err(|e| io(&side, e))?;
    sync_dir(&staging)?;
    if dir.exists() {
        std::fs::rename(dir, &retired).map_err(|e| io(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| io(dir, e))?;
    if retired.exists() {
        std::fs::remove_dir_all(&retired).map_err(|e| io(&retired, e))?;
    }
    Ok(())
}

/// Flushes every file of `dir` to disk, so a rename never publishes data still in the cache.
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// Finishes a save that stopped between its two renames: the staged checkpoint is complete
/// (it is renamed only after every file is written), so it becomes `dir`.
fn recover(dir: &Path) -> Result<(), CheckpointError> {
    let staging = sibling(dir, STAGING);
    if !dir.exists() && staging.join(SIDECAR_FILE).is_file() && sibling(dir, RETIRED).is_dir() {
        std::fs::rename(&staging, dir).map_err(|e| io(dir, e))?;
    }
    Ok(())
}

/// Loads a checkpoint onto `device`.
pub fn load(dir: &Path, device: &Device) -> Result<(Policy, Sidecar), CheckpointError> {
    recover(dir)?;
    let side = dir.join(SIDECAR_FILE);
    if !dir.is_dir() {
        return Err(invalid(dir, "no such checkpoint directory"));
    }
    let text = std::fs::read_to_string(&side).map_err(|e| io(&side, e))?;
    let sidecar: Sidecar = serde_json::from_str(&text)
        .map_err(|e| invalid(&side, format!("line {} column {}: {e}", e.line(), e.column())))?;
    let record = dir.join(RECORD_FILE);
    if !record.is_file() {
        return Err(invalid(&record, "missing policy record"));
    }
    let norm = &sidecar.normalizer;
    if norm.state.mean.len() != sidecar.state_dim || norm.state.var.len() != sidecar.state_dim {
        return Err(invalid(&side, format!("normalizer has {} state features, state_dim is {}", norm.state.mean.len(), sidecar.state_dim)));
    }
    if norm.plan.mean.len() != rlsched_env::obs::PLAN_FEATURES || norm.plan.var.len() != rlsched_env::obs::PLAN_FEATURES {
        return Err(invalid(&side, format!("normalizer has {} plan features, expected {}", norm.plan.mean.len(), rlsched_env::obs::PLAN_FEATURES)));
    }
    if let Some(problem) = norm.problem() {
        return Err(invalid(&side, problem));
    }
    let mut policy = Policy::new(&sidecar.model, sidecar.state_dim, device)
        .try_load_file(&record)
        .map_err(|e| invalid(&record, e.to_string()))?;
    if let Some(name) = policy.first_non_finite_parameter() {
        return Err(invalid(&record, format!("parameter {name} holds a non-finite value")));
    }
    policy.normalizer = sidecar.normalizer.clone();
    Ok((policy, sidecar))
}

/// The optimizer state saved beside a policy, if the checkpoint has one (checkpoints written
/// outside training do not).
pub fn load_optimizer(dir: &Path) -> Result<Option<OptimizerRecord>, CheckpointError> {
    let path = dir.join(OPTIMIZER_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    OptimizerRecord::load(&path).map(Some).map_err(|e| invalid(&path, e.to_string()))
}
