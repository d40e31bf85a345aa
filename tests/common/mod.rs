//! Helpers shared by the binary's end-to-end tests.

use std::path::PathBuf;

/// A fresh temporary folder holding a copy of the default `train.toml` whose data paths point
/// at the repository, so a run's checkpoints and event files land in the folder, not the repo.
pub fn private_config(name: &str) -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("rlsched-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(format!("{root}/train.toml")).unwrap().replace("\"data/", &format!("\"{root}/data/"));
    std::fs::write(dir.join("train.toml"), text).unwrap();
    dir
}
