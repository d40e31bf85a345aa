//! Honest conditions: goodput samples leave the RTT out, so a constant link reads at its rate
//! whatever the transfer size; with a good estimate the greedy baseline is close to the causal
//! reference; and requests contend for the device and the uplink.

use std::path::PathBuf;
use std::sync::Arc;

use rlsched_env::eval::evaluate;
use rlsched_env::schedulers::{self, Scheduler};
use rlsched_env::{Env, EnvConfig, ReplayEnv, Scenario};
use rlsched_executor::net::trace::Trace;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config() -> EnvConfig {
    let root = repo();
    EnvConfig { bandwidth_scale: 1.0, rtt_ms: 40.0, ..EnvConfig::in_repo(&root) }
}

/// A scenario whose only trace is a constant `mbps` for ten minutes.
fn constant(config: &EnvConfig, mbps: f64) -> Arc<Scenario> {
    let text: String = (0..600).map(|t| format!("{t}\t{mbps}\n")).collect();
    let mut scenario = Scenario::load(config, &config.validation_traces).unwrap();
    scenario.traces = vec![Arc::new(Trace::parse_pensieve(&text, "constant").unwrap())];
    Arc::new(scenario)
}

#[test]
fn a_constant_link_reads_at_its_rate_for_every_transfer_size() {
    let mut config = config();
    config.probe.bytes = 0;
    for mbps in [1.0, 8.0, 50.0] {
        let scenario = constant(&config, mbps);
        let mut env = ReplayEnv::new(scenario.clone());
        let mut checked = 0;
        for model in &scenario.workloads {
            for (plan, candidate) in model.candidates.iter().enumerate().filter(|(_, c)| c.uses_worker()) {
                if (candidate.bytes_up as usize) < config.min_sample_bytes {
                    continue;
                }
                // an episode of this workload's plan only, far apart so nothing queues
                env.reset_on(0, plan as u64).unwrap();
                let mut requests = env.requests.clone();
                for (i, request) in requests.iter_mut().enumerate() {
                    request.workload = scenario.workloads.iter().position(|w| w.mix.name == model.mix.name).unwrap();
                    request.world.worker_up = true;
                    request.world.time_s = 20.0 * i as f64;
                }
                env.restart(requests);
                for _ in 0..3 {
                    env.step(plan).unwrap();
                }
                let estimate = env.measurements.link.last_mbps().expect("a sample");
                assert!((estimate / mbps - 1.0).abs() < 0.05, "{} {:?} at {mbps} Mbit/s: {estimate}", model.mix.name, candidate.plan);
                checked += 1;
            }
        }
        assert!(checked >= 8, "only {checked} plans checked");
    }
}

#[test]
fn neurosurgeon_is_near_oracle_now_on_a_constant_link() {
    let config = config();
    let scenario = constant(&config, 8.0);
    let mut list: Vec<Box<dyn Scheduler>> = vec![Box::new(schedulers::Predictive { estimate: schedulers::Estimate::Last }), Box::new(schedulers::OracleNow)];
    let report = evaluate(scenario, &mut list, 10, 1, "constant 8 Mbit/s").unwrap();
    let (neurosurgeon, oracle_now) = (&report.schedulers[0], &report.schedulers[1]);
    assert!(
        (neurosurgeon.regret - oracle_now.regret).abs() < 0.02,
        "neurosurgeon regret {} vs oracle-now {}",
        neurosurgeon.regret,
        oracle_now.regret
    );
}

#[test]
fn requests_contend_for_the_device_and_the_uplink() {
    let mut config = config();
    config.probe.bytes = 0;
    config.worker_down_probability = 0.0;
    let scenario = constant(&config, 8.0);
    let mut env = ReplayEnv::new(scenario.clone());
    let resnet = scenario.workloads.iter().position(|w| w.mix.name == "resnet18").unwrap();
    let candidates = &scenario.workloads[resnet].candidates;
    let local = candidates.iter().position(|c| c.kind() == "local" && c.plan.variant() == "fp32").unwrap();
    let offload = candidates.iter().position(|c| c.kind() == "offload").unwrap();
    for (plan, check) in [(local, "device"), (offload, "uplink")] {
        env.reset_on(0, 5).unwrap();
        // two requests arrive together on an idle device
        let mut requests = env.requests.clone();
        let arrival = requests[0].world.time_s;
        for request in requests.iter_mut().take(2) {
            request.workload = resnet;
            request.world.time_s = arrival;
            request.world.worker_up = true;
        }
        env.restart(requests);
        let first = env.step(plan).unwrap().info.outcome;
        let second = env.step(plan).unwrap().info.outcome;
        match check {
            "device" => {
                assert_eq!(first.device_wait_ms, 0.0);
                let first_compute = first.local_ms - first.device_wait_ms;
                assert!((second.device_wait_ms - first_compute).abs() < 1e-6, "{first:?} / {second:?}");
                assert!(second.local_ms > first_compute + (second.local_ms - second.device_wait_ms) - 1e-6);
            }
            _ => {
                // the input is 150 KB at 8 Mbit/s: 150 ms on the wire; the second waits for it
                let wire_ms = first.bytes_up as f64 * 8.0 / 8e3;
                assert!((first.upload_ms - (wire_ms + 20.0)).abs() < 1.0, "{first:?}");
                assert!((second.upload_ms - (2.0 * wire_ms + 20.0)).abs() < 1.0, "{second:?}");
            }
        }
    }
}

/// A probe sent into an outage is abandoned at `[env.probe] timeout_s`, as `serve`'s is: the
/// estimator then holds a censored sample (the link carried fewer than the probe's bytes in the
/// timeout less a round trip) instead of waiting, with the uplink held, until the outage ends.
#[test]
fn a_probe_into_an_outage_is_abandoned_at_its_timeout_as_a_censored_sample() {
    let mut config = config();
    config.probe.timeout_s = 2.0;
    // 60 s of 0.01 Mbit/s, then 10 Mbit/s
    let text: String = (0..600).map(|t| format!("{t}\t{}\n", if t < 60 { 0.01 } else { 10.0 })).collect();
    let mut scenario = Scenario::load(&config, &config.validation_traces).unwrap();
    scenario.traces = vec![Arc::new(Trace::parse_pensieve(&text, "outage").unwrap())];
    let scenario = Arc::new(scenario);
    let mut env = ReplayEnv::new(scenario.clone());
    env.reset_on(0, 1).unwrap();
    let local = scenario.workloads[0].candidates.iter().position(|c| !c.uses_worker()).unwrap();
    let mut requests = env.requests.clone();
    for (request, at) in requests.iter_mut().zip([0.0, 2.5, 3.0]) {
        request.workload = 0;
        request.world.time_s = at;
    }
    requests.truncate(3);
    env.restart(requests);
    assert_eq!(env.measurements.link.samples().len(), 0, "a sample before the probe was answered");
    env.step(local).unwrap();
    // at 2.5 s the probe sent at 0 s has been given up on
    let sample = *env.measurements.link.samples().last().expect("the abandoned probe's censored sample");
    let bytes = config.probe.bytes as f64;
    let bound_mbps = bytes * 8.0 / ((config.probe.timeout_s * 1e3 - config.rtt_ms) * 1e3);
    assert!((sample.at_s - config.probe.timeout_s).abs() < 1e-9, "recorded at {} s", sample.at_s);
    assert!((sample.mbps / bound_mbps - 1.0).abs() < 1e-6, "{} Mbit/s, not the bound {bound_mbps}", sample.mbps);
    assert!(sample.mbps < 0.3, "an outage read as {} Mbit/s", sample.mbps);
}
