//! Subcommand definitions and dispatch.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rlsched_executor::profiler;
use rlsched_executor::workloads::Workload;
use rlsched_executor::DeviceChoice;

#[derive(Parser, Debug)]
#[command(name = "rlsched", version, about = "Reinforcement-learning scheduler for deep-learning inference")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the scheduling policy with PPO on replayed traces.
    Train(Unbuilt),
    /// Compare schedulers (and the learned policy) on the same requests.
    Eval(Unbuilt),
    /// Measure every stage of a workload's variants on a backend and write a JSON profile.
    Profile(ProfileArgs),
    /// Serve workloads over the Open Inference Protocol (KServe V2 REST) for split and offload.
    Worker(WorkerArgs),
    /// Shape a TCP connection to a bandwidth trace (user-space link emulator).
    Link(LinkArgs),
    /// Serve inference requests, scheduling each one with the learned policy.
    Serve(Unbuilt),
    /// Benchmarks (environment throughput, policy latency).
    Bench(Unbuilt),
}

/// Arguments of a subcommand that this build does not provide yet.
#[derive(clap::Args, Debug)]
pub struct Unbuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Workload to profile (see --list).
    #[arg(long, required_unless_present = "list")]
    pub workload: Option<String>,
    /// Variant to profile; repeat for several. Default: every variant.
    #[arg(long = "variant")]
    pub variants: Vec<String>,
    /// Backend: flex (CPU, default), ndarray or wgpu (when compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Timed runs per variant, after one warm-up run.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Output file (JSON). Default: standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// List every workload with its variants and accuracies, and exit.
    #[arg(long)]
    pub list: bool,
}

#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// Address to listen on. Port 0 picks a free port; the address is printed on start.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: String,
    /// Backend: flex (CPU, default) or wgpu (when compiled in).
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Require `Authorization: Bearer TOKEN` on every request.
    #[arg(long)]
    pub token: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
}

#[derive(clap::Args, Debug)]
pub struct LinkArgs {
    /// Bandwidth trace to replay (Pensieve `time_s Mbit/s` or Mahimahi packet lines).
    #[arg(long)]
    pub trace: PathBuf,
    /// Trace format; detected from the file when omitted.
    #[arg(long)]
    pub format: Option<String>,
    /// Round-trip time added to the link, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    pub rtt_ms: f64,
    /// Multiply every rate of the trace by this factor.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Address to listen on (port 0 picks a free port; printed on start).
    #[arg(long)]
    pub listen: String,
    /// Address to forward connections to.
    #[arg(long)]
    pub upstream: String,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Profile(args) => profile(args),
        Command::Train(_) => unbuilt("train"),
        Command::Eval(_) => unbuilt("eval"),
        Command::Worker(args) => worker(args),
        Command::Link(args) => link(args),
        Command::Serve(_) => unbuilt("serve"),
        Command::Bench(_) => unbuilt("bench"),
    }
}

fn unbuilt(name: &str) -> Result<()> {
    bail!("`rlsched {name}` is not implemented yet in this build")
}

fn profile(args: ProfileArgs) -> Result<()> {
    if args.list {
        for workload in Workload::ALL {
            let spec = workload.spec()?;
            println!("{} ({}; input {:?} {})", spec.name, spec.task, spec.input_shape, spec.input_datatype.name());
            for v in &spec.variants {
                println!("  {:<12} accuracy {:.4} ({})", v.name, v.accuracy, v.accuracy_source);
            }
        }
        return Ok(());
    }
    let name = args.workload.expect("clap requires --workload without --list");
    let workload: Workload = name.parse()?;
    let device: DeviceChoice = args.device.parse()?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let result = profiler::profile(workload, &args.variants, device, args.runs, |msg| {
        bar.set_message(msg.to_string())
    });
    bar.finish_and_clear();
    let profile = result?;
    for v in &profile.variants {
        eprintln!(
            "{}/{} on {}: {:.2} ms total over {} stages, accuracy {:.4} ({}), {} param bytes",
            profile.workload,
            v.name,
            profile.device,
            v.total_latency_ms(),
            v.stages.len(),
            v.accuracy,
            v.accuracy_source,
            v.param_bytes
        );
    }
    let json = serde_json::to_string_pretty(&profile)?;
    match args.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        }
        None => println!("{json}"),
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn ctrl_c() {
    tokio::signal::ctrl_c().await.ok();
}

fn worker(args: WorkerArgs) -> Result<()> {
    let device: DeviceChoice = args.device.parse()?;
    let config = rlsched_executor::worker::WorkerConfig {
        device,
        token: args.token,
        max_body_bytes: args.max_body_bytes,
    };
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("rlsched worker listening on http://{} (device {device})", listener.local_addr()?);
        rlsched_executor::worker::run(listener, config, ctrl_c()).await?;
        Ok(())
    })
}

fn link(args: LinkArgs) -> Result<()> {
    let format = args.format.as_deref().map(str::parse).transpose()?;
    let trace = rlsched_executor::trace::Trace::load(&args.trace, format)?.scaled(args.scale);
    if !(args.rtt_ms >= 0.0 && args.rtt_ms.is_finite()) {
        bail!("--rtt-ms must be a non-negative number, got {}", args.rtt_ms);
    }
    let config = rlsched_executor::link::LinkConfig {
        trace: std::sync::Arc::new(trace),
        rtt_ms: args.rtt_ms,
        upstream: args.upstream,
    };
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!(
            "rlsched link listening on {} -> {} (trace {}, mean {:.2} Mbit/s, rtt {} ms)",
            listener.local_addr()?,
            config.upstream,
            config.trace.name,
            config.trace.mean_mbps(),
            config.rtt_ms
        );
        rlsched_executor::link::run(listener, config, ctrl_c()).await?;
        Ok(())
    })
}
