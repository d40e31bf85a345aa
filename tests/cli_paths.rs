//! Where the binary writes: run names that are one folder, outputs checked before the work, and
//! staging files that never meet the user's.

use std::path::Path;
use std::process::{Command, Output};

mod common;

fn rlsched() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rlsched"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The shortest `train`: one iteration, one evaluated episode.
fn train(config_dir: &Path, run_name: &str) -> Output {
    rlsched()
        .args(["train", "--total-steps", "1", "--eval-requests", "1", "--run-name", run_name, "--config"])
        .arg(config_dir.join("train.toml"))
        .output()
        .unwrap()
}

/// The shortest `eval`: one scheduler, one episode.
fn eval_json(json: &Path) -> Output {
    let root = env!("CARGO_MANIFEST_DIR");
    rlsched()
        .args(["eval", "--config", &format!("{root}/train.toml"), "--schedulers", "local", "--requests", "1", "--json"])
        .arg(json)
        .output()
        .unwrap()
}

/// `train --run-name ""` used to exit 0 after replacing the whole `checkpoints/` folder (the
/// run's checkpoint was `checkpoints/` itself); `..`, `.` or a path made the TensorBoard folder
/// and the checkpoint one folder, or put the checkpoint elsewhere. Each is refused, by its rule,
/// before anything is trained, and the other checkpoints stay.
#[test]
fn train_refuses_run_names_that_are_not_one_folder() {
    let dir = common::private_config("run-names");
    let other = dir.join("checkpoints/other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("checkpoint.json"), "{}").unwrap();
    let absolute = dir.join("elsewhere").display().to_string();
    for (name, rule) in [
        ("", "empty"),
        ("..", "`..`"),
        (".", "`.`"),
        ("a/../..", "`..`"),
        ("a/b", "path separator"),
        ("a\\b", "path separator"),
        (absolute.as_str(), "absolute"),
    ] {
        let out = train(&dir, name);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "--run-name {name:?} was accepted: {}", text(&out.stdout));
        assert!(err.contains("--run-name") && err.contains(rule), "{name:?}: {err}");
        assert!(!text(&out.stdout).contains("trained"), "{name:?} trained first");
    }
    assert_eq!(std::fs::read_to_string(other.join("checkpoint.json")).unwrap(), "{}");
    assert!(!dir.join("elsewhere").exists() && !dir.join("runs").exists());
    std::fs::remove_dir_all(dir).ok();
}

/// A checkpoint folder that cannot be written used to fail only after training; now `train`
/// stops before the first step, naming the folder.
#[test]
fn train_fails_at_once_when_the_checkpoint_cannot_be_written() {
    let dir = common::private_config("ckpt-unwritable");
    // a file where the checkpoints folder should be: no folder can be made inside it, even as root
    std::fs::write(dir.join("checkpoints"), "not a folder").unwrap();
    let out = train(&dir, "run");
    let err = text(&out.stderr);
    assert!(!out.status.success(), "trained into a file: {}", text(&out.stdout));
    assert!(err.contains("checkpoints"), "{err}");
    assert!(!text(&out.stdout).contains("trained"), "it trained before failing: {}", text(&out.stdout));
    assert!(!dir.join("runs").exists(), "TensorBoard files were written");
    // a folder that holds someone's files is not a checkpoint to replace
    std::fs::remove_file(dir.join("checkpoints")).unwrap();
    std::fs::create_dir_all(dir.join("checkpoints/notes")).unwrap();
    std::fs::write(dir.join("checkpoints/notes/todo.txt"), "mine").unwrap();
    let out = train(&dir, "notes");
    assert!(!out.status.success() && text(&out.stderr).contains("not a checkpoint"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("checkpoints/notes/todo.txt")).unwrap(), "mine");
    std::fs::remove_dir_all(dir).ok();
}

/// `eval --json PATH` to a path that cannot be written used to evaluate first (minutes, with
/// the default request count) and fail at the end; now it fails before evaluating.
#[test]
fn eval_json_to_a_bad_path_fails_before_evaluating() {
    let dir = std::env::temp_dir().join(format!("rlsched-json-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    for (path, needle) in [(file.join("out.json"), "a-file"), (dir.clone(), "is a directory")] {
        let out = eval_json(&path);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{}: accepted", path.display());
        assert!(err.contains(needle), "{}: {err}", path.display());
        assert!(text(&out.stdout).is_empty(), "{}: it evaluated first:\n{}", path.display(), text(&out.stdout));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    std::fs::remove_dir_all(dir).ok();
}

/// The JSON used to be staged as `<path>.tmp` (for `out.json`, `out.tmp`): a user's file of
/// that name was overwritten and then renamed away. The staging file now has a hidden, unique
/// name of its own, and only the output appears beside the user's files.
#[test]
fn eval_json_leaves_the_users_tmp_file_alone() {
    let dir = std::env::temp_dir().join(format!("rlsched-json-tmp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("out.tmp"), "mine").unwrap();
    let out = eval_json(&dir.join("out.json"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.join("out.tmp")).unwrap(), "mine");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("out.json")).unwrap()).unwrap();
    assert!(report["schedulers"].as_array().is_some_and(|s| !s.is_empty()), "{report}");
    let mut left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["out.json", "out.tmp"]);
    std::fs::remove_dir_all(dir).ok();
}
