//! The `rlsched worker` binary as a separate process: a worker killed in the middle of a request
//! still leaves the request answered (by local fallback), and NVIDIA's tritonclient, an
//! independent KServe V2 client, works against it.

use std::process::{Child, Command};
use std::time::Duration;

use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::DeviceChoice;

mod common;

/// Starts `rlsched worker` on port 0 and returns it with the address it printed.
fn spawn_worker() -> (Child, String) {
    common::serve::spawn_worker("127.0.0.1:0", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_worker_mid_request_still_answers() {
    let (mut child, url) = spawn_worker();
    let client = WorkerClient::new(&url, None, Duration::from_secs(60)).unwrap();
    client.probe().await.unwrap();
    let watcher = client.clone();
    let executor = std::sync::Arc::new(PlanExecutor::new(DeviceChoice::Flex, vec![client]).unwrap());
    let input = Workload::Vgg16.example_input(4);
    let local = executor
        .execute(Workload::Vgg16, &Plan::Local { variant: "fp32".into() }, input.clone(), None)
        .await
        .unwrap();
    let remote = {
        let executor = executor.clone();
        let input = input.clone();
        tokio::spawn(async move {
            executor
                .execute(Workload::Vgg16, &Plan::Split { variant: "fp32".into(), cut: 4, worker: 0, int8: false }, input, None)
                .await
        })
    };
    // Killed as soon as the worker has read the request: it then still has VGG-16 to build
    // and the tail to compute. `received` only grows, so a poll cannot miss it.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = watcher.stats().await.unwrap();
        if stats.received >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the worker never received the request: {stats:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run = remote.await.unwrap().unwrap();
    let reason = run.breakdown.fallback.clone().expect("the request fell back");
    assert!(reason.contains("remote execution failed"), "{reason}");
    assert_eq!(run.output, local.output, "fallback computes the same answer");
}

#[test]
fn worker_speaks_to_tritonclient() {
    let (mut child, url) = spawn_worker();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/triton_client_check.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(url.trim_start_matches("http://"))
        .output()
        .expect("python3 runs (CI installs tritonclient[http])");
    child.kill().ok();
    child.wait().ok();
    assert!(
        out.status.success(),
        "tritonclient check failed (pip install \"tritonclient[http]\"):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("tritonclient checks passed"));
}
