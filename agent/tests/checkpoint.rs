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

/// Names beside the checkpoint `dir` as a save makes them: `.<name>.<unique><suffix>`.
fn beside(dir: &Path, unique: &str, suffix: &str) -> PathBuf {
    dir.with_file_name(format!(".{}.{unique}{suffix}", dir.file_name().unwrap().to_string_lossy()))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_checkpoint_changes_as_one_unit() {
    let device = Device::flex();
    let parent = temp("ckpt-unit");
    let dir = parent.join("run");
    save(&dir, &policy(&device), 100);
    let staging = beside(&dir, "crashed", checkpoint::STAGING_SUFFIX);
    let retired = beside(&dir, "crashed", checkpoint::RETIRED_SUFFIX);

    // Interrupted while writing the staged copy: the old checkpoint is untouched, and the next
    // save neither trips over the debris nor publishes it.
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join(checkpoint::OPTIMIZER_FILE), b"half").unwrap();
    assert_eq!(checkpoint::load(&dir, &device).unwrap().1.step, 100);
    save(&dir, &policy(&device), 200);
    assert_eq!(checkpoint::load(&dir, &device).unwrap().1.step, 200);
    std::fs::remove_dir_all(&staging).unwrap();
    assert_eq!(names_in(&parent), ["run"], "a save leaves nothing of its own beside the checkpoint");

    // Interrupted between the two renames: the staged copy is complete and is put in place, and
    // the retired one goes, as the save would have done.
    save(&staging, &policy(&device), 300);
    std::fs::rename(&dir, &retired).unwrap();
    assert_eq!(checkpoint::load(&dir, &device).unwrap().1.step, 300);
    assert_eq!(names_in(&parent), ["run"]);

    // Nothing else lies inside the checkpoint: no temporary files.
    assert_eq!(names_in(&dir), [SIDECAR_FILE, checkpoint::RECORD_FILE]);
    std::fs::remove_dir_all(parent).ok();
}

/// A save used to stage into `<dir>.new` and retire into `<dir>.old`, deleting whatever had
/// those names first: a user's `run.new` folder was lost at the first save. A save now touches
/// only names it created itself.
#[test]
fn a_save_leaves_the_users_files_beside_it_alone() {
    let device = Device::flex();
    let parent = temp("ckpt-beside");
    let dir = parent.join("run");
    for name in ["run.new", "run.old", "run.tmp"] {
        std::fs::create_dir_all(parent.join(name)).unwrap();
        std::fs::write(parent.join(name).join("notes.txt"), name).unwrap();
    }
    std::fs::write(parent.join(".run.new"), "hidden, mine").unwrap();
    save(&dir, &policy(&device), 1);
    save(&dir, &policy(&device), 2);
    assert_eq!(checkpoint::load(&dir, &device).unwrap().1.step, 2);
    for name in ["run.new", "run.old", "run.tmp"] {
        assert_eq!(std::fs::read_to_string(parent.join(name).join("notes.txt")).unwrap(), name);
    }
    assert_eq!(std::fs::read_to_string(parent.join(".run.new")).unwrap(), "hidden, mine");
    assert_eq!(names_in(&parent), [".run.new", "run", "run.new", "run.old", "run.tmp"]);

    // a folder of someone's files is not a checkpoint to replace, and a file is not a folder
    let notes = parent.join("run.new");
    let sidecar = Sidecar::new(&policy(&device), 3, 1, &config(), 13, &ModelConfig::default(), serde_json::Value::Null);
    let err = checkpoint::save(&notes, &policy(&device), &sidecar, None).unwrap_err().to_string();
    assert!(err.contains("not a checkpoint"), "{err}");
    assert!(checkpoint::check_writable(&notes).unwrap_err().to_string().contains("not a checkpoint"));
    assert_eq!(std::fs::read_to_string(notes.join("notes.txt")).unwrap(), "run.new");
    let err = checkpoint::check_writable(&parent.join(".run.new")).unwrap_err().to_string();
    assert!(err.contains("not a directory"), "{err}");
    assert!(checkpoint::check_writable(&parent.join("fresh")).is_ok() && !parent.join("fresh").exists());
    std::fs::remove_dir_all(parent).ok();
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
