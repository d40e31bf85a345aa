//! `episode::record_episode` replays evaluation's episode exactly (same requests, same rewards
//! as `evaluate` gives that scheduler), every scheduler sees the same requests, and
//! `bandwidth_series` reads the trace's true rate.

use std::path::PathBuf;
use std::sync::Arc;

use rlsched_env::episode::{bandwidth_series, record_episode};
use rlsched_env::eval::evaluate;
use rlsched_env::schedulers::{LocalBest, Oracle, Scheduler};
use rlsched_env::{EnvConfig, Scenario};
use rlsched_executor::net::trace::Trace;

fn scenario() -> Arc<Scenario> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = EnvConfig { requests_per_episode: 80, ..EnvConfig::in_repo(&root) };
    Arc::new(Scenario::load(&config, &config.validation_traces).unwrap())
}

#[test]
fn a_recorded_episode_is_evaluations_episode() {
    let scenario = scenario();
    let seed = 5;
    let mut list: Vec<Box<dyn Scheduler>> = vec![Box::new(Oracle), Box::new(LocalBest)];
    let report = evaluate(scenario.clone(), &mut list, 3, seed, "fcc-val").unwrap();
    let mut records = Vec::new();
    for (scheduler, result) in list.iter_mut().zip(&report.schedulers) {
        // episode 2: the third of evaluation's episodes
        let record = record_episode(scenario.clone(), scheduler.as_mut(), 2, seed).unwrap();
        let sizes = &result.episode_sizes;
        assert_eq!(record.steps.len(), sizes[2]);
        let start = sizes[0] + sizes[1];
        for (step, reward) in record.steps.iter().zip(&result.rewards[start..]) {
            assert_eq!(step.reward, *reward, "{}: the recorded episode differs from evaluation's", record.scheduler);
        }
        assert_eq!(record.trace, scenario.traces[2 % scenario.traces.len()].name);
        records.push(record);
    }
    let (oracle, local) = (&records[0], &records[1]);
    assert_eq!(oracle.scheduler, "oracle");
    // the same requests for both, different choices and queues
    let arrivals = |r: &rlsched_env::episode::EpisodeRecord| r.steps.iter().map(|s| (s.time_s, s.workload.clone())).collect::<Vec<_>>();
    assert_eq!(arrivals(oracle), arrivals(local));
    assert!(local.steps.iter().all(|s| s.kind == "local"));
    assert!(oracle.steps.iter().any(|s| s.kind == "offload"), "the oracle offloads some requests");
    // always-local piles work onto the device; its queue at some decision exceeds the oracle's worst
    let worst = |r: &rlsched_env::episode::EpisodeRecord| r.steps.iter().map(|s| s.device_ahead_ms).fold(0.0, f64::max);
    assert!(worst(local) > worst(oracle), "local {} oracle {}", worst(local), worst(oracle));
    assert!(oracle.steps.iter().all(|s| s.latency_ms > 0.0 && s.slo_ms > 0.0));
}

#[test]
fn bandwidth_series_reads_the_true_rate() {
    let trace = Trace::constant(8.0, 100.0);
    let series = bandwidth_series(&trace, 10.0, 20.0, 1.0);
    assert_eq!(series.len(), 10);
    assert_eq!(series[0].0, 10.0);
    assert!(series.iter().all(|&(_, mbps)| (mbps - 8.0).abs() < 1e-9), "{series:?}");
    assert!(bandwidth_series(&trace, 20.0, 10.0, 1.0).is_empty());
    assert!(bandwidth_series(&trace, 0.0, 10.0, 0.0).is_empty());
    assert!(bandwidth_series(&trace, 0.0, f64::NAN, 1.0).is_empty());
}
