//! LiveEnv executes plans for real against a worker on 127.0.0.1:0. MobileNetV2, because its
//! int8 intermediates are smaller than its input, so it has split plans (the digits CNN's input
//! is 64 bytes, smaller than any cut).

use std::sync::Arc;
use std::time::Duration;

use rlsched_env::{Env, LiveEnv, Scenario};
use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::plan::PlanExecutor;
use rlsched_executor::DeviceChoice;

mod common;

#[test]
fn live_env_steps_against_a_real_worker() {
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let addr = common::start_worker(&server);
    let mut config = common::mobilenet_config();
    config.requests_per_episode = 12;
    // What is checked is that every plan kind runs for real. With the deadline on, a machine
    // that another build slows past MobileNetV2's 150 ms SLO would rightly cut the remote path
    // and finish locally (the fallback `executor/tests/remote.rs` checks), leaving no remote
    // compute to see: a test of the machine's speed, not of LiveEnv.
    config.deadline.slo_factor = 0.0;
    let scenario = Arc::new(Scenario::load(&config, &[common::repo().join("data/traces/fcc-val")]).unwrap());
    let client = WorkerClient::new(&format!("http://{addr}"), None, Duration::from_secs(30)).unwrap();
    let executor = Arc::new(PlanExecutor::new(DeviceChoice::Flex, vec![client]).unwrap());
    let mut env = LiveEnv::new(scenario.clone(), executor).unwrap();
    let (obs, _) = env.reset(7).unwrap();
    assert!(obs.n_plans >= 3);
    let mut kinds = std::collections::BTreeSet::new();
    for step_index in 0..12 {
        let obs = env.observation().clone();
        let valid: Vec<usize> = (0..obs.n_plans).filter(|&i| obs.mask[i]).collect();
        let action = valid[step_index % valid.len()];
        let step = env.step(action).unwrap();
        let out = step.info.outcome;
        assert!(step.reward.is_finite());
        assert!(out.total_ms > 0.0, "{out:?}");
        let plan = step.info.plan.as_ref().unwrap();
        if let rlsched_executor::plan::Plan::Split { int8, .. } = plan {
            assert!(int8, "the default sends int8 intermediates");
        }
        let kind = plan.kind();
        if kind != "local" {
            assert!(out.remote_compute_ms > 0.0 && out.upload_ms >= 0.0, "{kind}: {out:?}");
        }
        kinds.insert(kind);
        assert_eq!(step.terminated, step_index == 11);
    }
    assert_eq!(kinds.len(), 3, "ran local, split and offload: {kinds:?}");
}
