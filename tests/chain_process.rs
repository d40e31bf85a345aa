//! Three real processes: the device (this test, through `PlanExecutor`) → `rlsched worker
//! --next cloud=URL` → a second `rlsched worker`. The chain answers what local execution does
//! with both hops reported; with the second worker killed, the first finishes the stages and
//! the request is still answered right.

use std::time::Duration;

use rlsched_executor::kserve::chain::Hop;
use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::{DeviceChoice, Workload};

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_edge_cloud_processes_chain_and_fall_back_when_the_cloud_dies() {
    let (mut cloud, cloud_url) = common::serve::spawn_worker("127.0.0.1:0", &[]);
    let next = format!("cloud={cloud_url}");
    let (mut edge, edge_url) = common::serve::spawn_worker("127.0.0.1:0", &["--next", &next, "--next-timeout-ms", "60000"]);
    let client = WorkerClient::new(&edge_url, None, Duration::from_secs(60)).unwrap();
    client.probe().await.unwrap();
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client]).unwrap();
    let workload = Workload::MobileNetV2;
    let input = workload.example_input(21);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let stages = executor.network(workload, "fp32").unwrap().stage_count();
    let plan = Plan::Chain { variant: "fp32".into(), device_end: 2, worker: 0, hops: vec![Hop { peer: "cloud".into(), start: 9 }], int8: false };
    let run = executor.execute(workload, &plan, input.clone(), None).await.unwrap();
    let b = &run.breakdown;
    assert!(b.fallback.is_none(), "{b:?}");
    let ranges: Vec<(&str, usize, usize)> = b.hops.iter().map(|h| (h.node.as_str(), h.start_stage, h.end_stage)).collect();
    assert_eq!(ranges, [("worker 0", 2, 9), ("cloud", 9, stages)]);
    for hop in &b.hops {
        assert!(hop.fallback.is_none() && hop.compute_ms > 0.0 && hop.bytes_up > 0 && hop.bytes_down > 0, "{hop:?}");
    }
    let cloud_hop = &b.hops[1];
    assert!(b.hops[0].forward_ms >= cloud_hop.upload_ms + cloud_hop.queue_ms + cloud_hop.compute_ms + cloud_hop.download_ms, "{b:?}");
    assert_eq!(run.output, local.output, "the chain answers what local execution does");

    cloud.kill().unwrap();
    cloud.wait().unwrap();
    let run = executor.execute(workload, &plan, input, None).await.unwrap();
    let b = &run.breakdown;
    assert!(b.fallback.is_none(), "the edge, not the device, should finish: {b:?}");
    assert_eq!(b.hops.len(), 1, "{b:?}");
    assert_eq!(b.hops[0].end_stage, stages);
    let reason = b.hops[0].fallback.as_deref().expect("the edge says it fell back");
    assert!(reason.contains("next hop `cloud` abandoned"), "{reason}");
    assert_eq!(run.output, local.output, "the fallback answers what local execution does");
    edge.kill().unwrap();
    edge.wait().unwrap();
}

/// `--next` is checked before the worker binds: a URL in place of NAME=URL, a bad name, a bad
/// timeout.
#[test]
fn bad_next_flags_are_refused() {
    for (args, needle) in [
        (vec!["--next", "http://127.0.0.1:1"], "expected NAME=URL"),
        (vec!["--next", "a.b=http://127.0.0.1:1"], "may hold only"),
        (vec!["--next", "a=ftp://x"], "scheme"),
        (vec!["--next-timeout-ms", "0"], "--next-timeout-ms"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rlsched")).args(["worker", "--listen", "127.0.0.1:0"]).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}
