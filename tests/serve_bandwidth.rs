//! Adaptation to a bandwidth shift: a worker behind `rlsched link`, replaying a trace that
//! switches from 20 to 0.5 Mbit/s. `serve` offloads resnet18 before the switch, on the link
//! estimate its transfers and the active probe give; after it, the plan mix leaves the worker within a bounded number of requests, and over the last
//! window its mean latency is within 15% of the best fixed plan for the new regime, measured in
//! the same run (every plan run directly, interleaved with the served requests). Assertions are
//! on events and on comparisons within the run, not on wall-clock thresholds.

mod common;

use std::time::Duration;

use common::curves::{self, Point};
use common::serve as helpers;
use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::plan::PlanExecutor;
use rlsched_executor::{DeviceChoice, Workload};

/// fp32 only (the floor is above int8's 0.6949): int8 that computes in int8 runs ResNet-18
/// locally in about 85 ms, which beats offload even at 20 Mbit/s, so with it allowed a drop
/// would show nothing. fp32 locally takes about 200 ms, offload at 20 Mbit/s about 110 ms.
const RESNET: &str = r#"env.workloads=[{name="resnet18",weight=1.0,slo_ms=300.0,min_accuracy=0.697}]"#;
/// Seconds of 20 Mbit/s from the link's start, then 0.5 Mbit/s.
const SWITCH_S: f64 = 15.0;
/// Requests after the switch by which the plan mix must have left the worker.
const LEAVE_WITHIN: usize = 5;
/// The last window, in served requests (each interleaved with one run of every local plan).
const WINDOW: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_bandwidth_drop_serving_leaves_the_worker_and_matches_the_best_fixed_plan() {
    let dir = std::env::temp_dir().join(format!("rlsched-bandwidth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trace = dir.join("shift.txt");
    std::fs::write(&trace, format!("0 20\n{SWITCH_S} 20\n{SWITCH_S} 0.5\n3600 0.5\n")).unwrap();
    let (worker, worker_url) = helpers::spawn_worker("127.0.0.1:0", &[]);
    let _worker = helpers::Killed(worker);
    let (link, link_url, link_started) = helpers::spawn_link(&trace, worker_url.trim_start_matches("http://"));
    let _link = helpers::Killed(link);

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Deadlines off: this measures adaptation through the link estimate. With them on (as
    // train.toml ships), an offload into the slowed link is abandoned at its deadline and leaves
    // only a censored sample, and the shipped policy went on retrying the worker now and then
    // (at 1, 3 and 6 requests after the drop in one run, up to 19 in another): a known product
    // issue, recorded in the issues, that this test does not hide by loosening its bound.
    let overrides = [RESNET.to_string(), "env.deadline.slo_factor=0".to_string()];
    let train = rlsched::config::load(&root.join("train.toml"), true, &overrides).unwrap();
    let scenario = rlsched_env::Scenario::load(&train.env, &train.env.validation_traces).unwrap();
    let model = &scenario.workloads[0];
    let mut config = helpers::config(train.env.clone());
    config.workers = vec![link_url.clone()];
    config.poll_interval = Duration::from_millis(200);
    let server = helpers::start(config).await;
    let client = reqwest::Client::new();
    let url = server.url.clone();
    let send = |i: usize| {
        let (client, url) = (client.clone(), url.clone());
        async move { common::stream::send(&client, &url, Workload::ResNet18, i, "serve").await }
    };
    let uses_worker = |p: &Point| !p.plan.starts_with("local");

    let mut before = Vec::new();
    while link_started.elapsed().as_secs_f64() < SWITCH_S {
        before.push(send(before.len()).await);
    }
    assert!(before.len() >= 5, "too few requests before the switch to judge: {before:?}");
    assert!(
        before.iter().filter(|p| uses_worker(p)).count() * 2 > before.len(),
        "at 20 Mbit/s serving did not rely on the worker, so a drop shows nothing: {before:?}"
    );
    let mut after = Vec::new();
    for _ in 0..LEAVE_WITHIN + 10 {
        after.push(send(before.len() + after.len()).await);
    }
    for p in &after {
        println!("after the switch: {} {:.0} ms {}", p.plan, p.latency_ms, p.inputs);
    }
    let last_remote = after.iter().rposition(|p| uses_worker(p));
    assert!(
        last_remote.is_none_or(|i| i < LEAVE_WITHIN),
        "serving still used the worker {} requests after the switch: {after:?}",
        last_remote.unwrap() + 1
    );

    // The best fixed plan for the new regime, measured now: every plan run directly (the
    // local ones interleaved with the served window, the remote ones twice: at 0.5 Mbit/s
    // each takes seconds).
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![WorkerClient::new(&link_url, None, Duration::from_secs(60)).unwrap()]).unwrap();
    let input = Workload::ResNet18.example_input(1);
    let mut fixed: Vec<Vec<f64>> = vec![Vec::new(); model.candidates.len()];
    let run_fixed = async |c: usize, latencies: &mut Vec<f64>| {
        let run = executor.execute(Workload::ResNet18, &model.candidates[c].plan, input.clone(), None).await.unwrap();
        assert!(run.breakdown.fallback.is_none(), "{:?}", run.breakdown.fallback);
        latencies.push(run.breakdown.total_ms);
    };
    let allowed = |c: usize| model.candidates[c].accuracy >= model.mix.min_accuracy;
    for (c, candidate) in model.candidates.iter().enumerate().filter(|&(c, candidate)| candidate.uses_worker() && allowed(c)) {
        for _ in 0..2 {
            run_fixed(c, &mut fixed[c]).await;
        }
        println!("fixed {:?}: {:?}", candidate.plan, fixed[c]);
    }
    let mut window = Vec::new();
    for _ in 0..WINDOW {
        window.push(send(before.len() + after.len() + window.len()).await);
        for c in (0..model.candidates.len()).filter(|&c| !model.candidates[c].uses_worker() && allowed(c)) {
            run_fixed(c, &mut fixed[c]).await;
        }
    }
    server.stop().await;

    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let reward = |c: usize, ms: f64| {
        let candidate = &model.candidates[c];
        train.env.reward.reward(candidate.accuracy, ms, model.mix.slo_ms, candidate.bytes_up)
    };
    let (best, best_ms) = (0..fixed.len())
        .filter(|&c| !fixed[c].is_empty() && allowed(c))
        .map(|c| (c, mean(&fixed[c])))
        .max_by(|a, b| reward(a.0, a.1).total_cmp(&reward(b.0, b.1)))
        .unwrap();
    let served_ms = mean(&window.iter().map(|p| p.latency_ms).collect::<Vec<_>>());

    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("experiments");
    std::fs::create_dir_all(&out).unwrap();
    let all: Vec<Point> = before.iter().chain(&after).chain(&window).cloned().collect();
    curves::write_csv(&out.join("bandwidth.csv"), &all);
    curves::write_svg(&out.join("bandwidth.svg"), &format!("resnet18, link 20 -> 0.5 Mbit/s after request {}", before.len()), &all);
    println!(
        "curves in {}: {} requests before the switch ({} used the worker), worker left after {} requests; last {WINDOW}: {served_ms:.1} ms, best fixed plan {:?}: {best_ms:.1} ms",
        out.display(),
        before.len(),
        before.iter().filter(|p| uses_worker(p)).count(),
        last_remote.map_or(0, |i| i + 1),
        model.candidates[best].plan
    );
    assert!(served_ms <= 1.15 * best_ms, "last window {served_ms:.1} ms, best fixed plan {best_ms:.1} ms: more than 15% apart");
    std::fs::remove_dir_all(&dir).ok();
}
