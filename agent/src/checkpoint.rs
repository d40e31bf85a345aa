//! Checkpoints: the policy's burn record, Adam's state (so `--resume` carries the moments on),
//! and a JSON sidecar (step, seed, crate version, the resolved config, the network's input sizes
//! and the observation statistics). Every file is written to a temporary name and renamed, so a
//! crash never leaves a half-written checkpoint; loading checks everything and says what is
//! wrong.

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

fn tmp(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `policy`, `sidecar` and, when given, the optimizer's state into `dir` (created if
/// needed).
pub fn save(
    dir: &Path,
    policy: &Policy,
    sidecar: &Sidecar,
    optimizer: Option<OptimizerRecord>,
) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    if let Some(record) = optimizer {
        let path = dir.join(OPTIMIZER_FILE);
        let path_tmp = tmp(&path);
        record.save(&path_tmp).map_err(|e| invalid(&path_tmp, e.to_string()))?;
        std::fs::rename(&path_tmp, &path).map_err(|e| io(&path, e))?;
    }
    let record = dir.join(RECORD_FILE);
    let record_tmp = tmp(&record);
    policy
        .clone()
        .save_file(&record_tmp)
        .map_err(|e| invalid(&record_tmp, e.to_string()))?;
    std::fs::rename(&record_tmp, &record).map_err(|e| io(&record, e))?;
    let side = dir.join(SIDECAR_FILE);
    let side_tmp = tmp(&side);
    let json = serde_json::to_vec_pretty(sidecar).map_err(|e| invalid(&side, e.to_string()))?;
    std::fs::write(&side_tmp, json).map_err(|e| io(&side_tmp, e))?;
    std::fs::rename(&side_tmp, &side).map_err(|e| io(&side, e))?;
    Ok(())
}

/// Loads a checkpoint onto `device`.
pub fn load(dir: &Path, device: &Device) -> Result<(Policy, Sidecar), CheckpointError> {
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
    let mut policy = Policy::new(&sidecar.model, sidecar.state_dim, device)
        .try_load_file(&record)
        .map_err(|e| invalid(&record, e.to_string()))?;
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
