//! `train.toml`: read, apply `--set KEY=VALUE` overrides, and check every field. Errors name the
//! file, the line and the field; an unknown key is an error that names it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rlsched_env::EnvConfig;
use serde::{Deserialize, Serialize};

/// The whole file. Each section is a config struct owned by its crate.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub env: EnvConfig,
    pub agent: rlsched_agent::AgentConfig,
    /// `[online]`: learning while serving (`rlsched serve --online`).
    pub online: rlsched_agent::OnlineConfig,
}

/// Parses `value` as a TOML value (number, bool, array, quoted string), or else as a bare string.
fn parse_value(value: &str) -> toml::Value {
    format!("x = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("x"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

fn apply_set(root: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, value) = assignment
        .split_once('=')
        .with_context(|| format!("--set `{assignment}`: expected KEY=VALUE"))?;
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, parents) = parts.split_last().expect("split yields one part");
    let mut table = root;
    for part in parents {
        table = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .with_context(|| format!("--set {key}: `{part}` is not a section"))?;
    }
    table.insert(last.to_string(), parse_value(value.trim()));
    Ok(())
}

/// Loads the config file (if it exists or was named explicitly) and applies the overrides.
/// Relative paths in `[env]` are taken relative to the file's folder.
pub fn load(path: &Path, explicit: bool, sets: &[String]) -> Result<TrainConfig> {
    let (text, base) = if path.exists() {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        (text, path.parent().map(Path::to_path_buf).unwrap_or_default())
    } else if explicit {
        bail!("config file {} does not exist", path.display());
    } else {
        (String::new(), PathBuf::from("."))
    };
    let mut config: TrainConfig = if sets.is_empty() {
        // straight from the text, so errors carry the file's line and column
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {e}", path.display()))?;
        for set in sets {
            apply_set(&mut table, set)?;
        }
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("{} after --set {}: {}", path.display(), sets.join(" --set "), e.message())
        })?
    };
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    config.env.traces.iter_mut().for_each(resolve);
    config.env.validation_traces.iter_mut().for_each(resolve);
    resolve(&mut config.env.profiles_dir);
    let overrides = if sets.is_empty() { String::new() } else { format!(" after --set {}", sets.join(" --set ")) };
    config.env.validate().map_err(|e| anyhow::anyhow!("{}{overrides}: {e}", path.display()))?;
    config.agent.validate().map_err(|e| anyhow::anyhow!("{}{overrides}: {e}", path.display()))?;
    config.online.validate().map_err(|e| anyhow::anyhow!("{}{overrides}: {e}", path.display()))?;
    Ok(config)
}
