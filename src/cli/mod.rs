//! The command line: one file per subcommand, each with its clap arguments and its `run`. This
//! file holds the command enum, the `--config`/`--set` arguments they share, and dispatch.

mod bench;
mod bench_decision;
mod bench_serve;
mod eval;
mod limits;
mod profile;
mod serve;
mod server;
mod train;
mod validation;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

pub use bench::BenchArgs;
pub use eval::EvalArgs;
pub use profile::ProfileArgs;
pub use serve::ServeArgs;
pub use server::{LinkArgs, WorkerArgs};
pub use train::TrainArgs;

#[derive(Parser, Debug)]
#[command(name = "rlsched", version, about = "Reinforcement-learning scheduler for deep-learning inference")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the scheduling policy with PPO on replayed traces, then evaluate it.
    Train(TrainArgs),
    /// Compare schedulers (and the learned policy) on the same requests.
    Eval(EvalArgs),
    /// Measure every stage of a workload's variants on a backend and write a JSON profile.
    Profile(ProfileArgs),
    /// Serve workloads over the Open Inference Protocol (KServe V2 REST) for split and offload.
    Worker(WorkerArgs),
    /// Shape a TCP connection to a bandwidth trace (user-space link emulator).
    Link(LinkArgs),
    /// Serve inference requests (KServe V2 REST), scheduling each one with the learned policy.
    Serve(ServeArgs),
    /// Benchmarks: `rlsched bench env` measures simulator throughput, `rlsched bench decision`
    /// the cost of one scheduling decision, `rlsched bench serve` what serving adds over local
    /// execution, `rlsched bench sim2real` compares simulated with live latencies.
    Bench(BenchArgs),
}

/// `--config` and `--set`, shared by every subcommand that reads train.toml.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// Configuration file (`[env]`, `[agent.model]`, `[agent.ppo]`).
    #[arg(long, default_value = "train.toml")]
    pub config: PathBuf,
    /// Override a config field, e.g. `--set env.bandwidth_scale=20`. Repeatable.
    #[arg(long = "set")]
    pub sets: Vec<String>,
}

impl ConfigArgs {
    /// Loads the file; a missing default `train.toml` means the built-in defaults.
    pub fn load(&self) -> Result<crate::config::TrainConfig> {
        let explicit = self.config.as_os_str() != "train.toml";
        crate::config::load(&self.config, explicit, &self.sets)
    }

    pub fn dir(&self) -> PathBuf {
        config_dir(&self.config)
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Profile(args) => profile::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Worker(args) => server::worker(args),
        Command::Link(args) => server::link(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it, so `path` is never half
/// written.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn config_dir(config: &Path) -> PathBuf {
    config.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

