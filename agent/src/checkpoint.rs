//! Checkpoints: the policy's burn record plus a JSON sidecar (step, seed, crate version, the
//! resolved config, the network's input sizes). Both files are written to a temporary name and
//! renamed, so a crash never leaves a half-written checkpoint; loading checks everything and
//! says what is wrong.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::policy::Policy;
use crate::ModelConfig;

pub const RECORD_FILE: &str = "policy.bpk";
pub const SIDECAR_FILE: &str = "checkpoint.json";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("checkpoint {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
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
        source,
    }
}

fn tmp(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `policy` and `sidecar` into `dir` (created if needed).
pub fn save(dir: &Path, policy: &Policy, sidecar: &Sidecar) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
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
    let policy = Policy::new(&sidecar.model, sidecar.state_dim, device)
        .try_load_file(&record)
        .map_err(|e| invalid(&record, e.to_string()))?;
    Ok((policy, sidecar))
}
