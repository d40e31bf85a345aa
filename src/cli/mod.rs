//! The command line: one file per subcommand, each with its clap arguments and its `run`. This
//! file holds the command enum, the `--config`/`--set` arguments they share, and dispatch.

mod bench;
mod bench_decision;
mod bench_int8;
mod bench_serve;
mod eval;
mod limits;
mod profile;
mod serve;
mod server;
mod signal;
mod train;
mod validation;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Import an ONNX model as workload NAME (`--model NAME=PATH.onnx`; repeatable): every
    /// command then takes NAME wherever it takes a workload.
    #[arg(long = "model", global = true, value_name = "NAME=PATH")]
    pub models: Vec<String>,
    /// The full input shape of the --model files whose shape is dynamic, batch first
    /// (e.g. `1,3,224,224`).
    #[arg(long, global = true, value_delimiter = ',', value_name = "DIMS")]
    pub input_shape: Vec<usize>,
    /// Labelled data for a --model (`--calibration NAME=DIR`, DIR holding inputs.npy and
    /// labels.npy): its fp32 and int8 accuracies are measured there; without it they are unknown.
    #[arg(long, global = true, value_name = "NAME=DIR")]
    pub calibration: Vec<String>,
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
    let options = rlsched_executor::model::onnx::ImportOptions {
        input_shape: (!cli.input_shape.is_empty()).then(|| cli.input_shape.clone()),
    };
    rlsched_executor::model::workloads::imported::register_args(&cli.models, &options)?;
    for arg in &cli.calibration {
        let (name, dir) = arg.split_once('=').with_context(|| format!("--calibration `{arg}`: expected NAME=DIR"))?;
        let workload: rlsched_executor::Workload = name.parse()?;
        let device = rlsched_executor::DeviceChoice::Flex.device()?;
        let measured = rlsched_executor::model::workloads::imported::calibrate(workload, Path::new(dir), &device)?;
        let pruned: String = rlsched_executor::model::onnx::prune::PRUNE_RATIOS
            .iter()
            .zip(&measured.pruned)
            .filter_map(|(&removed, accuracy)| accuracy.map(|a| format!(", {} {a:.4}", rlsched_executor::model::workloads::imported::pruned_name(removed))))
            .collect();
        eprintln!(
            "{name}: top-1 on {} labelled samples of {dir}: fp32 {:.4}, int8 {:.4}{pruned}",
            measured.samples, measured.fp32, measured.int8
        );
    }
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

/// A size flag inside its bounds, with the error naming the flag and the bounds.
fn check_count(flag: &str, value: usize, low: usize, high: usize) -> Result<()> {
    rlsched_env::config::check_count(flag, value, low, high).map_err(anyhow::Error::msg)
}

/// The folder a file `path` goes into ("." for a bare name).
fn parent_dir(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// A staging file this process created beside its target, under a hidden name of its own
/// (`.<name>.<pid>-<n>.rlsched-tmp`, created with `create_new`, so it never takes over a
/// user's file); dropped before it is renamed into place, it is removed.
struct Staging {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Staging {
    fn beside(target: &Path) -> Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = parent_dir(target);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for _ in 0..1000 {
            let path = dir.join(format!(".{name}.{}-{}.rlsched-tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => return Ok(Self { path, file: Some(file) }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("writing {}: cannot create a file in {}", target.display(), dir.display())),
            }
        }
        anyhow::bail!("writing {}: no free staging name in {}", target.display(), dir.display())
    }

    /// Writes `bytes`, flushes them to disk and renames the file to `target`.
    fn publish(mut self, target: &Path, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut file = self.file.take().expect("an open staging file");
        file.write_all(bytes).and_then(|()| file.sync_all()).with_context(|| format!("writing {}", self.path.display()))?;
        drop(file);
        std::fs::rename(&self.path, target).with_context(|| format!("writing {}", target.display()))?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            std::fs::remove_file(&self.path).ok();
        }
    }
}

/// Checks that [`write_atomic`] can write `path`, so a bad output path fails before the work.
fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!("writing {}: it is a directory", path.display());
    }
    Staging::beside(path).map(drop)
}

/// Writes `bytes` to a staging file beside `path` and renames it, so `path` is never half
/// written.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Staging::beside(path)?.publish(path, bytes)
}

fn config_dir(config: &Path) -> PathBuf {
    config.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

