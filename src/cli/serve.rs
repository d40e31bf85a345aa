//! `rlsched serve`: bind, serve with the learned policy until ctrl-c or SIGTERM, drain.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use rlsched_executor::DeviceChoice;

use crate::cli::limits::LimitArgs;
use crate::cli::ConfigArgs;
use rlsched_executor::kserve::client::ClientLimits;
use crate::serve::ServeConfig;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; printed on start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// A worker's base URL (`http://host:port`): an rlsched worker, or for offload plans any
    /// Open Inference Protocol server serving the workload under the same model name.
    /// Repeatable; plans are made for each.
    #[arg(long = "worker")]
    pub workers: Vec<String>,
    /// The policy to serve with.
    #[arg(long, default_value = "checkpoints/default")]
    pub checkpoint: PathBuf,
    /// Require `Authorization: Bearer TOKEN` on infer and /metrics (also sent to the workers).
    #[arg(long)]
    pub token: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Largest reply body read from a worker, in bytes; a longer reply is abandoned and the
    /// request finished locally.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_reply_bytes: usize,
    /// Longest a worker's readiness probe or stats read may take, ms (the worker counts as
    /// down past it).
    #[arg(long, default_value_t = 2_000)]
    pub probe_timeout_ms: u64,
    /// Longest a remote call may take before the request falls back to local, ms.
    #[arg(long, default_value_t = 30_000)]
    pub worker_timeout_ms: u64,
    /// How often each worker is probed for health, RTT and queue, ms.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// Backend for local stages: flex (CPU, default), or ndarray/wgpu when compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Learn while serving (settings in `[online]` of the config): PPO updates swapped in,
    /// predictions corrected by measurements, a guardrail that rolls back.
    #[arg(long)]
    pub online: bool,
    /// Where `--online` writes TensorBoard files and its checkpoints (`<runs-dir>/checkpoint`).
    #[arg(long, default_value = "runs/serve")]
    pub runs_dir: PathBuf,
    /// The chain after the device, `NAME=URL,PEER[,PEER...]`: the worker at URL (an `rlsched
    /// worker --next PEER=...`) and the peer names each node knows the next by, matching the
    /// config's `[[env.nodes]]` after the device. The chain scenario's workloads are then
    /// decided by the policy (zero-shot), or by `--chain-placement dp-static`, at the live
    /// link estimates.
    #[arg(long, value_name = "NAME=URL,PEER...")]
    pub chain: Option<String>,
    /// Who places a `--chain` request: `policy` (the serving checkpoint's plan scorer, reading
    /// each chain plan in the default observation's terms) or `dp-static` (the optimal static
    /// placement per request).
    #[arg(long, default_value = "policy", value_name = "policy|dp-static")]
    pub chain_placement: String,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let train = args.config.load()?;
    match (train.env.nodes.is_empty(), &args.chain) {
        (false, None) => anyhow::bail!("a config with [[env.nodes]] is served with --chain NAME=URL,PEER... (its nodes after the device)"),
        (true, Some(_)) => anyhow::bail!("--chain needs a config with [[env.nodes]] (see configs/chain3.toml)"),
        _ => {}
    }
    let placement: crate::serve::chain::ChainPlacement = args.chain_placement.parse().map_err(anyhow::Error::msg)?;
    let chain = args.chain.as_deref().map(crate::serve::chain::ChainSpec::parse).transpose().map_err(anyhow::Error::msg)?.map(|spec| crate::serve::chain::ChainSpec { placement, ..spec });
    let device: DeviceChoice = args.device.parse()?;
    let mut config = ServeConfig::new(train.env.clone(), args.checkpoint);
    config.workers = args.workers;
    config.token = args.token;
    config.body = args.limits.body();
    config.server = args.limits.server();
    config.max_memory_bytes = args.limits.max_memory_bytes;
    config.max_queue = args.limits.max_queue;
    config.client = ClientLimits { max_reply_bytes: args.max_reply_bytes, probe_timeout: Duration::from_millis(args.probe_timeout_ms) };
    config.worker_timeout = Duration::from_millis(args.worker_timeout_ms);
    config.poll_interval = Duration::from_millis(args.poll_ms);
    config.device = device;
    config.online = args.online.then(|| train.online.clone());
    config.demand = crate::serve::demand::DemandSettings::of(&train.online);
    config.agent = train.agent.clone();
    config.runs_dir = args.runs_dir;
    config.chain = chain;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        // checkpoint, config, workers' URLs and networks first: "listening" means ready
        let workers = config.workers.len();
        let prepared = tokio::task::block_in_place(|| crate::serve::prepare(config))?;
        let listener = tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
        let stop = super::signal::stop_signal();
        println!("rlsched serve listening on http://{} ({workers} workers)", listener.local_addr()?);
        let summary = crate::serve::serve_prepared(listener, prepared, stop).await?;
        if summary.cut > 0 {
            eprintln!("rlsched serve: {} connections were still busy at the drain deadline and were cut", summary.cut);
        }
        println!("rlsched serve stopped after answering {} requests", summary.answered);
        Ok(())
    })
}
