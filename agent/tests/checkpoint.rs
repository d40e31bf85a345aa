//! Checkpoints that cannot be trusted are refused by name, a save changes the checkpoint as one
//! unit, and a diverging run stops with an error that says so.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use rlsched_agent::checkpoint::{self, Sidecar, SIDECAR_FILE};
use rlsched_agent::policy::Policy;
use rlsched_agent::ppo::{train, TrainError};
use rlsched_agent::{ModelConfig, PpoConfig};
use rlsched_env::{EnvConfig, Scenario};

fn config() -> EnvConfig {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    EnvConfig::in_repo(&root)
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlsched-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn policy(device: &Device) -> Policy {
    Policy::new(&ModelConfig::default(), rlsched_env::obs::state_dim(&config()), device)
}

fn save(dir: &Path, policy: &Policy, step: usize) {
    let sidecar = Sidecar::new(policy, step, 1, &config(), 13, &ModelConfig::default(), serde_json::Value::Null);
    checkpoint::save(dir, policy, &sidecar, None).unwrap();
}

/// Rewrites one field of the sidecar's JSON.
fn edit_sidecar(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(SIDECAR_FILE);
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(path, serde_json::to_vec(&json).unwrap()).unwrap();
}

#[test]
fn unsound_statistics_are_refused_by_name() {
    let device = Device::flex();
    let dir = temp("ckpt-stats");
    let cases: [(&str, fn(&mut serde_json::Value)); 4] = [
        ("normalizer.clip", |j| j["normalizer"]["clip"] = (-1.0).into()),
        ("normalizer.clip", |j| j["normalizer"]["clip"] = 0.0.into()),
        ("normalizer.state: var[0]", |j| j["normalizer"]["state"]["var"][0] = (-1.0).into()),
        ("normalizer.plan: count", |j| j["normalizer"]["plan"]["count"] = 0.0.into()),
    ];
    for (field, edit) in cases {
        save(&dir, &policy(&device), 1);
        edit_sidecar(&dir, edit);
        let err = match checkpoint::load(&dir, &device) {
            Ok(_) => panic!("a checkpoint with a bad {field} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(field) && err.contains(SIDECAR_FILE), "{field}: {err}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn non_finite_weights_are_refused_by_name() {
    let device = Device::flex();
    let dir = temp("ckpt-nan");
    let mut bad = policy(&device);
    let shape = bad.value.hidden2.weight.val().dims();
    bad.value.hidden2.weight = Param::from_tensor(Tensor::<2>::full(shape, f32::NAN, &device));
    save(&dir, &bad, 1);
    let err = checkpoint::load(&dir, &device).err().expect("NaN weights loaded").to_string();
    assert!(err.contains("value.hidden2.weight") && err.contains("non-finite"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_checkpoint_changes_as_one_unit() {
    let device = Device::flex();
    let dir = temp("ckpt-unit");
    save(&dir, &policy(&device), 100);
    let staging = dir.with_file_name(format!("{}.new", dir.file_name().unwrap().to_string_lossy()));
    let retired = dir.with_file_name(format!("{}.old", dir.file_name().unwrap().to_string_lossy()));

    // Interrupted while writing the staged copy: the old checkpoint is untouched, and the next
    // save clears the debris.
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join(checkpoint::OPTIMIZER_FILE), b"half").unwrap();
    assert_eq!(checkpoint::load(&dir, &device).unwrap().1.step, 100);
    save(&dir, &policy(&device), 200);
    assert!(!staging.exists() && !retired.exists());
    assert_eq!(checkpoint::load(&dir, &device).unwrap().1.step, 200);

    // Interrupted between the two renames: the staged copy is complete and is put in place.
    save(&staging, &policy(&device), 300);
    std::fs::rename(&dir, &retired).unwrap();
    assert_eq!(checkpoint::load(&dir, &device).unwrap().1.step, 300);

    // Nothing else lies beside the checkpoint: no temporary files.
    let left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|f| !f.ends_with(".tmp")), "{left:?}");
    for d in [&dir, &staging, &retired] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn a_diverging_run_says_so() {
    let scenario = std::sync::Arc::new(Scenario::load(&config(), &config().traces).unwrap());
    let ppo = PpoConfig { total_steps: 16_384, learning_rate: 1e10, anneal_lr: false, ..PpoConfig::default() };
    let result = train(scenario, &ModelConfig::default(), &ppo, None, |_, _, _| {});
    match result {
        Err(e @ TrainError::Diverged { .. }) => assert!(e.to_string().contains("learning_rate"), "{e}"),
        Err(e) => panic!("expected a divergence error, got: {e}"),
        Ok(_) => panic!("a learning rate of 1e10 trained without diverging"),
    }
}
