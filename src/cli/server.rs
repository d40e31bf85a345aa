//! The long-running commands: `rlsched worker` and `rlsched link`, each on its own runtime until
//! ctrl-c or SIGTERM (the worker then drains).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rlsched_executor::error::Num;
use rlsched_executor::DeviceChoice;

use crate::cli::limits::LimitArgs;

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
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Test aid: make every computation take F times as long (F >= 1), so an experiment can
    /// slow the worker down while its profile still says it is fast.
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub slowdown: f64,
    /// A peer a chain request may forward its remaining stages to, by name (repeatable, at most
    /// 16): requests name the peer, never an address, so the worker only ever connects where
    /// these flags say.
    #[arg(long = "next", value_name = "NAME=URL")]
    pub next: Vec<String>,
    /// Bearer token sent to the `--next` peers.
    #[arg(long)]
    pub next_token: Option<String>,
    /// Longest a forward to a next hop may take before this worker abandons it and finishes the
    /// remaining stages itself, ms (1..=600000).
    #[arg(long, default_value_t = 30_000)]
    pub next_timeout_ms: u64,
}

#[derive(clap::Args, Debug)]
pub struct LinkArgs {
    /// Bandwidth trace to replay (Pensieve `time_s Mbit/s` or Mahimahi packet lines).
    #[arg(long)]
    pub trace: PathBuf,
    /// Trace format; detected from the file when omitted.
    #[arg(long)]
    pub format: Option<String>,
    /// Round-trip time added to the link, in milliseconds (at most 60000).
    #[arg(long, default_value_t = 0.0)]
    pub rtt_ms: f64,
    /// Multiply every rate of the trace by this factor (above 0; the scaled mean must stay at
    /// least 1 kbit/s).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Address to listen on (port 0 picks a free port; printed on start).
    #[arg(long)]
    pub listen: String,
    /// Address to forward connections to.
    #[arg(long)]
    pub upstream: String,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Binds `listen` on a fresh runtime and runs `server` on the listener until it returns.
fn serve<F, Fut>(listen: &str, server: F) -> Result<()>
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        server(listener).await
    })
}

pub fn worker(args: WorkerArgs) -> Result<()> {
    let device: DeviceChoice = args.device.parse()?;
    if !(args.slowdown.is_finite() && (1.0..=1000.0).contains(&args.slowdown)) {
        bail!("--slowdown must be a number in 1..=1000, got {}", Num(args.slowdown));
    }
    use rlsched_executor::kserve::worker::MAX_NEXT_TIMEOUT;
    if args.next_timeout_ms == 0 || args.next_timeout_ms > MAX_NEXT_TIMEOUT.as_millis() as u64 {
        bail!("--next-timeout-ms must be in 1..={}, got {}", MAX_NEXT_TIMEOUT.as_millis(), args.next_timeout_ms);
    }
    let next_timeout = std::time::Duration::from_millis(args.next_timeout_ms);
    let next = args
        .next
        .iter()
        .map(|spec| {
            let (name, url) = spec.split_once('=').with_context(|| format!("--next `{spec}`: expected NAME=URL"))?;
            let client = rlsched_executor::kserve::client::WorkerClient::new(url, args.next_token.clone(), next_timeout)
                .with_context(|| format!("--next `{spec}`"))?;
            Ok((name.to_string(), client))
        })
        .collect::<Result<Vec<_>>>()?;
    let config = rlsched_executor::kserve::worker::WorkerConfig {
        device,
        token: args.token,
        body: args.limits.body(),
        server: args.limits.server(),
        max_memory_bytes: args.limits.max_memory_bytes,
        max_queue: args.limits.max_queue,
        slowdown: args.slowdown,
        next,
        next_timeout,
    };
    config.validate()?;
    serve(&args.listen, |listener| async move {
        let stop = super::signal::stop_signal();
        // one line: whoever started the worker may stop reading after it
        let next: Vec<String> = config.next.iter().map(|(name, client)| format!("; next hop {name} = {}", client.base_url())).collect();
        println!("rlsched worker listening on http://{} (device {device}{})", listener.local_addr()?, next.concat());
        let drained = rlsched_executor::kserve::worker::run(listener, config, stop).await?;
        if drained.cut > 0 {
            eprintln!("rlsched worker: {} connections were still busy at the drain deadline and were cut", drained.cut);
        }
        Ok(())
    })
}

pub fn link(args: LinkArgs) -> Result<()> {
    use rlsched_executor::net::link::MAX_RTT_MS;
    // Checked before anything is read or bound: a zero or NaN scale used to hang the first
    // request, and a huge RTT to panic converting it to a Duration.
    if !(args.scale.is_finite() && args.scale > 0.0) {
        bail!("--scale must be a finite number above 0, got {}", Num(args.scale));
    }
    if !(0.0..=MAX_RTT_MS).contains(&args.rtt_ms) {
        bail!("--rtt-ms must be a number in 0..={MAX_RTT_MS}, got {}", Num(args.rtt_ms));
    }
    let format = args.format.as_deref().map(str::parse).transpose()?;
    let trace = rlsched_executor::net::trace::Trace::load(&args.trace, format)?
        .scaled(args.scale)
        .with_context(|| format!("--scale {}", Num(args.scale)))?;
    let config = rlsched_executor::net::link::LinkConfig {
        trace: std::sync::Arc::new(trace),
        rtt_ms: args.rtt_ms,
        upstream: args.upstream,
    };
    serve(&args.listen, |listener| async move {
        let stop = super::signal::stop_signal();
        println!(
            "rlsched link listening on {} -> {} (trace {}, mean {:.2} Mbit/s, rtt {} ms)",
            listener.local_addr()?,
            config.upstream,
            config.trace.name,
            config.trace.mean_mbps(),
            config.rtt_ms
        );
        rlsched_executor::net::link::run(listener, config, stop).await?;
        println!("rlsched link stopped");
        Ok(())
    })
}
