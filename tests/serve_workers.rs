//! `rlsched serve` with a real worker process: killed in the middle of a run, requests keep
//! succeeding (falling back to local), the worker's plans are masked until it answers again,
//! and used again once it does. And NVIDIA's tritonclient reads the plan from `serve`.

mod common;

use std::time::Duration;

use common::serve::{self as helpers, DIGITS};
use serde_json::{json, Value};

async fn infer(client: &reqwest::Client, url: &str) -> Value {
    let response = client
        .post(format!("{url}/v2/models/digits-cnn/infer"))
        .json(&helpers::digits_request(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json::<Value>().await.unwrap()["parameters"].clone()
}

use helpers::{metric, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_masked_then_used_again() {
    let (mut worker, worker_url) = helpers::spawn_worker("127.0.0.1:0", &[]);
    // No digits plan fits in this device's memory, so every plan that can run uses the
    // worker; with the worker masked only the local fallback plan remains.
    let mut config = helpers::config(helpers::env(&[DIGITS, "env.device_memory_mb=0.001"]));
    config.workers = vec![worker_url.clone()];
    config.poll_interval = Duration::from_millis(100);
    let server = helpers::start(config).await;
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let up = r#"rlsched_worker_up{worker="0"}"#;
    wait_for("the worker to be up", async || metric(&client, &url, up).await == 1.0).await;
    for _ in 0..5 {
        let plan = infer(&client, &url).await;
        assert_ne!(plan["strategy"], "local", "{plan}");
        assert_eq!(plan["worker"], 0);
    }

    worker.kill().unwrap();
    worker.wait().unwrap();
    // Until the next probe the worker may still look up: such a request falls back.
    let mut local = 0;
    for _ in 0..20 {
        let plan = infer(&client, &url).await;
        assert!(plan["strategy"] == "local" || plan.get("fallback").is_some(), "a remote plan ran on a dead worker: {plan}");
        local += usize::from(plan["strategy"] == "local");
    }
    assert!(local > 0, "the dead worker's plans were never masked");
    assert_eq!(metric(&client, &url, up).await, 0.0);

    let port = worker_url.rsplit(':').next().unwrap();
    let (mut worker, _) = helpers::spawn_worker(&format!("127.0.0.1:{port}"), &[]);
    wait_for("the worker to be up again", async || metric(&client, &url, up).await == 1.0).await;
    let plan = infer(&client, &url).await;
    assert_ne!(plan["strategy"], "local", "the worker's plans stay masked after it returned: {plan}");
    assert!(plan.get("fallback").is_none(), "{plan}");
    server.stop().await;
    worker.kill().ok();
    worker.wait().ok();
}

#[test]
fn serve_speaks_to_tritonclient() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut serve = Command::new(env!("CARGO_BIN_EXE_rlsched"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/train.toml")])
        .args(["--checkpoint", concat!(env!("CARGO_MANIFEST_DIR"), "/checkpoints/default"), "--set", DIGITS])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/triton_serve_check.py");
    let out = Command::new("python3").arg(script).arg(url.trim_start_matches("http://")).output().expect("python3 runs");
    serve.kill().ok();
    serve.wait().ok();
    assert!(
        out.status.success(),
        "tritonclient check failed (pip install \"tritonclient[http]\"):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("tritonclient serve checks passed"));
}

/// The active probe into a dead link (a worker behind `rlsched link` at 0.01 Mbit/s) is given up
/// at its timeout and leaves a censored sample, as the simulator's probe does: the estimate says
/// the link carries at most the probe's bytes in the timeout less a round trip, where before it
/// waited for the client's request timeout and learnt nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_into_a_dead_link_leaves_a_censored_sample_at_its_timeout() {
    use rlsched_executor::kserve::client::WorkerClient;
    use rlsched_executor::plan::PlanExecutor;
    let dir = std::env::temp_dir().join(format!("rlsched-dead-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("dead.txt");
    std::fs::write(&trace, "0 0.01\n3600 0.01\n").unwrap();
    let (worker, worker_url) = helpers::spawn_worker("127.0.0.1:0", &[]);
    let _worker = helpers::Killed(worker);
    let (link, link_url, _) = helpers::spawn_link(&trace, worker_url.trim_start_matches("http://"));
    let _link = helpers::Killed(link);
    let client = WorkerClient::new(&link_url, None, Duration::from_secs(60)).unwrap();
    let executor = PlanExecutor::new(rlsched_executor::DeviceChoice::Flex, vec![client]).unwrap();
    // the RTT sample the censored sample is corrected by (the readiness probe carries no payload)
    executor.probe(0).await.unwrap();
    let (bytes, timeout) = (65536, Duration::from_millis(500));
    let error = executor.probe_upload(0, bytes, timeout).await.expect_err("64 KiB through a 0.01 Mbit/s link within 500 ms");
    assert!(error.to_string().contains("censored"), "{error}");
    let link = executor.link_estimate(0);
    let sample = *link.samples().last().expect("a censored sample");
    let bound_ms = 500.0 - link.rtt_ms().unwrap();
    // the pad and the input it rode with: a bound on no fewer bytes than were on the way
    assert!((bytes..bytes + 4096).contains(&sample.bytes), "{} bytes", sample.bytes);
    assert!((sample.wire_ms - bound_ms).abs() < 1e-6, "wire time {} ms, not {bound_ms}", sample.wire_ms);
    assert_eq!(link.harmonic_mbps(), Some(sample.mbps), "the estimate is not the censored sample's");
    std::fs::remove_dir_all(&dir).ok();
}
