//! Latency breakdown of split and offload plans through the link emulator, at two bandwidths.
//! Starts a worker and a `link` (constant-rate trace, 20 ms RTT) on 127.0.0.1 and runs
//! local, offload and a few splits of VGG-16 and MobileNetV2, printing a table.
//!
//!     cargo run -p rlsched-executor --example link_breakdown [MBPS...]

use std::sync::Arc;
use std::time::Duration;

use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::net::link::{self, LinkConfig};
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::net::trace::Trace;
use rlsched_executor::kserve::worker::{self, WorkerConfig};
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::DeviceChoice;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rates: Vec<f64> = std::env::args().skip(1).map(|a| a.parse()).collect::<Result<_, _>>()?;
    let rates = if rates.is_empty() { vec![8.0, 80.0] } else { rates };
    let worker_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let worker_addr = worker_listener.local_addr()?;
    tokio::spawn(worker::run(worker_listener, WorkerConfig::default(), std::future::pending()));
    println!("| workload | Mbit/s | plan | local ms | upload ms | remote queue+compute ms | download ms | total ms | bytes up | bytes down |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for mbps in rates {
        let link_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let link_addr = link_listener.local_addr()?;
        let config = LinkConfig {
            trace: Arc::new(Trace::constant(mbps, 60.0)),
            rtt_ms: 20.0,
            upstream: worker_addr.to_string(),
        };
        tokio::spawn(link::run(link_listener, config, std::future::pending()));
        let client = WorkerClient::new(&format!("http://{link_addr}"), None, Duration::from_secs(120))?;
        let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client])?;
        for (workload, cuts) in [(Workload::Vgg16, vec![4, 10, 13]), (Workload::MobileNetV2, vec![4, 14, 19])] {
            // images travel in their natural encoding, uint8 pixels, as a camera gives them
            let input = workload.example_input(1);
            let mut plans = vec![Plan::Local { variant: "fp32".into() }, Plan::Offload { variant: "fp32".into(), worker: 0 }];
            plans.extend(cuts.into_iter().map(|cut| Plan::Split { variant: "fp32".into(), cut, worker: 0, int8: false }));
            // warm both sides (weights, allocations) before measuring
            for plan in &plans {
                executor.execute(workload, plan, input.clone(), None).await?;
            }
            for plan in &plans {
                let b = executor.execute(workload, plan, input.clone(), None).await?.breakdown;
                let name = match plan {
                    Plan::Split { cut, .. } => format!("split@{cut}"),
                    other => other.kind().to_string(),
                };
                println!(
                    "| {} | {mbps} | {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
                    workload.name(),
                    b.local_ms,
                    b.upload_ms,
                    b.remote_queue_ms + b.remote_compute_ms,
                    b.download_ms,
                    b.total_ms,
                    b.bytes_up,
                    b.bytes_down
                );
            }
        }
    }
    Ok(())
}
