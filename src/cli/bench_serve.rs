//! `rlsched bench serve`: what serving costs over running the model directly. The same
//! digits-cnn image runs, in alternating blocks, through `PlanExecutor` directly (local fp32)
//! and through `rlsched serve` over HTTP on loopback (one client, keep-alive, JSON tensors);
//! the difference of their percentiles is what serving adds (HTTP, parsing, the decision,
//! admission). Then concurrent clients give requests per second.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::profile::profiler::percentile;
use rlsched_executor::{DeviceChoice, Workload};

use crate::serve::ServeConfig;

const DIGITS: &str = r#"env.workloads=[{name="digits-cnn",weight=1.0,slo_ms=50.0,min_accuracy=0.5}]"#;

pub fn run(config: &super::ConfigArgs, checkpoint: std::path::PathBuf, requests: usize, clients: usize) -> Result<()> {
    let mut sets = config.sets.clone();
    sets.push(DIGITS.into());
    let explicit = config.config.as_os_str() != "train.toml";
    let train = crate::config::load(&config.config, explicit, &sets)?;
    let serve_config = ServeConfig::new(train.env, checkpoint);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v2/models/digits-cnn/infer", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve::run(listener, serve_config, async move {
            stopped.await.ok();
        }));
        let executor = PlanExecutor::new(DeviceChoice::Flex, Vec::new())?;
        let input = Workload::DigitsCnn.example_input(7);
        let body = serde_json::to_vec(&serde_json::json!({
            "inputs": [{"name": "input", "shape": input.shape, "datatype": input.datatype().name(),
                        "data": rlsched_executor::kserve::protocol::json_values(&input)}],
        }))?;
        let client = reqwest::Client::new();
        let plan = Plan::Local { variant: "fp32".into() };
        let (mut direct, mut served, mut decisions, mut floor) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let ready = url.replace("/v2/models/digits-cnn/infer", "/v2/health/ready");
        // warm-up: networks built, connections open
        for _ in 0..50 {
            executor.execute(Workload::DigitsCnn, &plan, input.clone(), None).await?;
            client.post(&url).body(body.clone()).send().await?.bytes().await?;
        }
        while direct.len() < requests {
            for _ in 0..100 {
                let start = Instant::now();
                executor.execute(Workload::DigitsCnn, &plan, input.clone(), None).await?;
                direct.push(start.elapsed().as_secs_f64() * 1e6);
            }
            for _ in 0..100 {
                let start = Instant::now();
                let response = client.post(&url).body(body.clone()).send().await?;
                if !response.status().is_success() {
                    bail!("serve answered HTTP {}", response.status());
                }
                let reply: serde_json::Value = response.json().await?;
                served.push(start.elapsed().as_secs_f64() * 1e6);
                decisions.push(reply["parameters"]["decision_us"].as_f64().unwrap_or(f64::NAN));
                // the HTTP floor: a round trip that does nothing on the server
                let start = Instant::now();
                client.get(&ready).send().await?.bytes().await?;
                floor.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            let each = requests / clients;
            tasks.push(tokio::spawn(async move {
                for _ in 0..each {
                    client.post(&url).body(body.clone()).send().await?.bytes().await?;
                }
                Ok::<_, reqwest::Error>(each)
            }));
        }
        let mut done = 0;
        for task in tasks {
            done += task.await??;
        }
        let rate = done as f64 / start.elapsed().as_secs_f64();
        stop.send(()).ok();
        server.await??;
        for v in [&mut direct, &mut served, &mut decisions, &mut floor] {
            v.sort_by(f64::total_cmp);
        }
        println!("digits-cnn, local fp32, {} requests each way, one client (µs):", direct.len());
        println!("{:>24} {:>9} {:>9} {:>9}", "", "p50", "p90", "p99");
        for (name, v) in [("direct (PlanExecutor)", &direct), ("through serve (HTTP)", &served), ("decision alone", &decisions), ("empty HTTP round trip", &floor)] {
            println!("{name:>24} {:>9.0} {:>9.0} {:>9.0}", percentile(v, 0.5), percentile(v, 0.9), percentile(v, 0.99));
        }
        println!(
            "serving adds {:.0} µs at p50 and {:.0} µs at p99 (target: at most 200 µs at p99)",
            percentile(&served, 0.5) - percentile(&direct, 0.5),
            percentile(&served, 0.99) - percentile(&direct, 0.99)
        );
        println!("{clients} concurrent clients: {rate:.0} requests/s");
        println!("host: {}", rlsched_executor::profile::profiler::host_description());
        Ok(())
    })
}
