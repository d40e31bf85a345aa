//! Checkpoints: the policy's burn record, Adam's state (so `--resume` carries the moments on),
//! and a JSON sidecar (step, seed, crate version, the resolved config, the network's input sizes
//! and the observation statistics). A checkpoint is written as a whole directory (under a hidden,
//! unique name) and renamed into place, so a crash never leaves a half-written or mixed one;
//! loading checks everything (finite weights, sound statistics) and says what is wrong.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// `rlsched_env::obs::OBSERVATION_VERSION` of the build that trained it (absent: 1).
    #[serde(default = "first_observation")]
    pub observation: u32,
    pub max_plans: usize,
    pub model: ModelConfig,
    /// The running observation statistics the policy was trained with.
    pub normalizer: ObsNormalizer,
    /// The whole resolved training configuration.
    pub config: serde_json::Value,
}

fn first_observation() -> u32 {
    1
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
            observation: rlsched_env::obs::OBSERVATION_VERSION,
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

/// The staging copy of a checkpoint `<name>` is `.<name>.<pid>-<n><STAGING_SUFFIX>` beside it,
/// made fresh for each save (`create_dir` never takes over an existing path), and the copy it
/// retires has the same name with [`RETIRED_SUFFIX`]. Hidden names of their own: a user's
/// `<name>.new` or `<name>.tmp` is never touched.
pub const STAGING_SUFFIX: &str = ".rlsched-new";
pub const RETIRED_SUFFIX: &str = ".rlsched-old";

/// The folder that holds `dir` and `dir`'s own name.
fn parent_and_name(dir: &Path) -> Result<(PathBuf, String), CheckpointError> {
    let name = match dir.file_name() {
        Some(name) if dir.components().next_back().is_some_and(|c| matches!(c, std::path::Component::Normal(_))) => name.to_string_lossy().into_owned(),
        _ => return Err(invalid(dir, "a checkpoint directory needs a final name (not `..`, `.` or a root)")),
    };
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok((parent, name))
}

/// The retired name that belongs to a staging directory.
fn retired_for(staging: &Path) -> PathBuf {
    let name = staging.file_name().unwrap_or_default().to_string_lossy();
    staging.with_file_name(format!("{}{RETIRED_SUFFIX}", name.strip_suffix(STAGING_SUFFIX).unwrap_or(&name)))
}

/// A staging directory this process made; dropped before [`Staging::keep`], it is removed, so a
/// failed save leaves nothing of its own behind.
struct Staging {
    path: PathBuf,
    kept: bool,
}

impl Staging {
    /// A fresh directory in `parent` for the checkpoint `name`.
    fn new(parent: &Path, name: &str) -> Result<Self, CheckpointError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        // a name taken (by a crashed save of a process that had this id) is skipped, never reused
        for _ in 0..1000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!(".{name}.{}-{n}{STAGING_SUFFIX}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(Self { path, kept: false }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(parent, e)),
            }
        }
        Err(invalid(parent, format!("no free staging name for `{name}` after 1000 tries")))
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.kept {
            std::fs::remove_dir_all(&self.path).ok();
        }
    }
}

/// What a save will replace must be a checkpoint or empty: a save retires and then deletes the
/// old `dir`, which must never be someone's folder.
fn check_replaceable(dir: &Path) -> Result<(), CheckpointError> {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Err(invalid(dir, "exists and is not a directory"));
    }
    let empty = std::fs::read_dir(dir).map_err(|e| io(dir, e))?.next().is_none();
    if !empty && !dir.join(SIDECAR_FILE).is_file() {
        return Err(invalid(dir, format!("exists, holds files and is not a checkpoint (no {SIDECAR_FILE}): refusing to replace it")));
    }
    Ok(())
}

/// Checks, before any work, that a checkpoint can be saved as `dir`: its folder exists or can be
/// created and takes a staging directory, and `dir` is a checkpoint, empty or absent.
pub fn check_writable(dir: &Path) -> Result<(), CheckpointError> {
    let (parent, name) = parent_and_name(dir)?;
    check_replaceable(dir)?;
    std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
    Staging::new(&parent, &name).map(drop)
}

/// Writes `policy`, `sidecar` and, when given, the optimizer's state as the checkpoint `dir`.
///
/// The checkpoint changes as one unit: everything is written into a fresh staging directory
/// beside `dir`, which then replaces `dir` by two renames. An interrupted save leaves either the
/// old checkpoint or a complete staged one, which [`load`] puts in place; never a mix. A save
/// removes only what it created: its staging directory when it fails, the checkpoint it
/// replaced when it succeeds.
pub fn save(
    dir: &Path,
    policy: &Policy,
    sidecar: &Sidecar,
    optimizer: Option<OptimizerRecord>,
) -> Result<(), CheckpointError> {
    let (parent, name) = parent_and_name(dir)?;
    check_replaceable(dir)?;
    std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
    let staging = Staging::new(&parent, &name)?;
    if let Some(record) = optimizer {
        let path = staging.path.join(OPTIMIZER_FILE);
        record.save(&path).map_err(|e| invalid(&path, e.to_string()))?;
    }
    let record = staging.path.join(RECORD_FILE);
    policy.clone().save_file(&record).map_err(|e| invalid(&record, e.to_string()))?;
    let side = staging.path.join(SIDECAR_FILE);
    let json = serde_json::to_vec_pretty(sidecar).map_err(|e| invalid(&side, e.to_string()))?;
    std::fs::write(&side, json).map_err(|e| io(&side, e))?;
    sync_dir(&staging.path)?;
    let retired = retired_for(&staging.path);
    let replacing = dir.exists();
    if replacing {
        if std::fs::symlink_metadata(&retired).is_ok() {
            return Err(invalid(&retired, "exists already: not renaming the old checkpoint onto it"));
        }
        std::fs::rename(dir, &retired).map_err(|e| io(dir, e))?;
    }
    if let Err(e) = std::fs::rename(&staging.path, dir) {
        if replacing {
            std::fs::rename(&retired, dir).ok();
        }
        return Err(io(dir, e));
    }
    // renamed into place: the staging path is now the checkpoint, which the guard must not remove
    staging.keep();
    if replacing {
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

/// Finishes a save that stopped between its two renames: `dir` is gone, its retired copy and a
/// staged checkpoint of the same save lie beside it. The staged one is complete (it is renamed
/// only after every file is written), so it becomes `dir` and the retired copy goes, as the
/// save would have done.
fn recover(dir: &Path) -> Result<(), CheckpointError> {
    if dir.exists() {
        return Ok(());
    }
    let Ok((parent, name)) = parent_and_name(dir) else {
        return Ok(());
    };
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return Ok(());
    };
    let prefix = format!(".{name}.");
    let staged = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let file = p.file_name().unwrap_or_default().to_string_lossy();
            file.starts_with(&prefix) && file.ends_with(STAGING_SUFFIX)
        })
        .filter(|p| p.join(SIDECAR_FILE).is_file() && retired_for(p).is_dir())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    if let Some(staged) = staged {
        std::fs::rename(&staged, dir).map_err(|e| io(dir, e))?;
        let retired = retired_for(&staged);
        std::fs::remove_dir_all(&retired).map_err(|e| io(&retired, e))?;
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
    if sidecar.observation != rlsched_env::obs::OBSERVATION_VERSION {
        return Err(invalid(
            &side,
            format!(
                "field observation: trained on observation version {}, this build computes version {} (rlsched_env::obs::OBSERVATION_VERSION); its features would mean other things: train it again with this build",
                sidecar.observation,
                rlsched_env::obs::OBSERVATION_VERSION
            ),
        ));
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
