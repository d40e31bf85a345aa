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

/// A `--set` value. TOML integers are i64, so a larger literal (a u64 seed, or a size far past
/// its bound) cannot go into the table: it is written into the config after the table is read,
/// so that it stays an integer and the bound check names its field.
enum SetValue {
    Toml(toml::Value),
    Large(u64),
}

/// Parses `value` as a TOML value (number, bool, array, quoted string), or else as a bare string.
fn parse_value(key: &str, value: &str) -> Result<SetValue> {
    let digits: String = value.strip_prefix('+').unwrap_or(value).chars().filter(|&c| c != '_').collect();
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<i64>().is_err() {
        return match digits.parse::<u64>() {
            Ok(n) => Ok(SetValue::Large(n)),
            Err(_) => bail!("--set {key}={value}: the integer is larger than any field takes (at most {})", u64::MAX),
        };
    }
    Ok(SetValue::Toml(
        format!("x = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("x"))
            .unwrap_or_else(|| toml::Value::String(value.to_string())),
    ))
}

/// Applies one `KEY=VALUE` to `root` and returns the key's parts; a value too large for TOML
/// is returned too, and a placeholder integer holds its place in the table.
fn apply_set(root: &mut toml::Table, assignment: &str) -> Result<(Vec<String>, Option<u64>)> {
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
    let (value, large) = match parse_value(key.trim(), value.trim())? {
        SetValue::Toml(value) => (value, None),
        SetValue::Large(n) => (toml::Value::Integer(i64::MAX), Some(n)),
    };
    table.insert(last.to_string(), value);
    Ok((parts.iter().map(|p| p.to_string()).collect(), large))
}

/// Writes the integers too large for TOML into `config` (through JSON, whose numbers hold a u64).
fn apply_large(config: TrainConfig, large: &[(Vec<String>, u64)]) -> Result<TrainConfig, String> {
    let mut json = serde_json::to_value(&config).map_err(|e| e.to_string())?;
    for (parts, n) in large {
        let mut at = &mut json;
        for part in parts {
            at = at.get_mut(part.as_str()).ok_or_else(|| format!("--set {}: no such field", parts.join(".")))?;
        }
        *at = serde_json::Value::from(*n);
    }
    // a NaN set elsewhere is null in JSON: then the placeholder config's own check reports it
    serde_json::from_value(json).map_err(|e| match config.env.validate().and(config.agent.validate()).and(config.online.validate()) {
        Err(problem) => problem,
        Ok(()) => e.to_string(),
    })
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
        let mut large = Vec::new();
        for set in sets {
            let (key, value) = apply_set(&mut table, set)?;
            // the last --set of a key wins, as in the table
            large.retain(|(earlier, _): &(Vec<String>, u64)| !earlier.starts_with(&key));
            large.extend(value.map(|n| (key, n)));
        }
        let config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("{} after --set {}: {}", path.display(), sets.join(" --set "), e.message())
        })?;
        if large.is_empty() {
            config
        } else {
            apply_large(config, &large).map_err(|e| anyhow::anyhow!("{} after --set {}: {e}", path.display(), sets.join(" --set ")))?
        }
    };
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    config.env.traces.iter_mut().for_each(resolve);
    config.env.validation_traces.iter_mut().for_each(resolve);
    resolve(&mut config.env.profiles_dir);
    config.env.links.iter_mut().for_each(|link| link.traces.iter_mut().for_each(resolve));
    for workload in &mut config.env.workloads {
        if let Some(onnx) = workload.onnx.as_mut() {
            resolve(onnx);
            rlsched_executor::model::workloads::imported::register(&workload.name, onnx, &Default::default())
                .map_err(|e| anyhow::anyhow!("{}: [[env.workloads]] `{}`: {e}", path.display(), workload.name))?;
        }
    }
    let overrides = if sets.is_empty() { String::new() } else { format!(" after --set {}", sets.join(" --set ")) };
    config.env.validate().map_err(|e| anyhow::anyhow!("{}{overrides}: {e}", path.display()))?;
    config.agent.validate().map_err(|e| anyhow::anyhow!("{}{overrides}: {e}", path.display()))?;
    config.online.validate().map_err(|e| anyhow::anyhow!("{}{overrides}: {e}", path.display()))?;
    Ok(config)
}
