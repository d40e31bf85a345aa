//! The simulator on the bundled profiles and real traces: real trace sets parse, episodes are
//! deterministic for a seed, the oracle bounds every scheduler on every request, and the
//! observation never sees the trace's future.

use std::path::PathBuf;
use std::sync::Arc;

use rlsched_env::scenario::{load_traces, Scenario};
use rlsched_env::schedulers::{self, Scheduler};
use rlsched_env::{Env, EnvConfig, ReplayEnv};
use rlsched_executor::net::trace::Trace;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shared_data() -> PathBuf {
    std::env::var_os("RLSCHED_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/data"))
}

fn config() -> EnvConfig {
    EnvConfig { requests_per_episode: 60, ..EnvConfig::in_repo(&repo()) }
}

fn scenario() -> Arc<Scenario> {
    let config = config();
    Arc::new(Scenario::load(&config, &config.validation_traces).unwrap())
}

#[test]
fn real_trace_sets_parse() {
    let fcc = load_traces(&[repo().join("data/traces/fcc-test")], None, 1.0).unwrap();
    let norway = load_traces(&[repo().join("data/traces/norway-hsdpa")], None, 1.0).unwrap();
    assert_eq!(fcc.len(), 88);
    assert_eq!(norway.len(), 80);
    let mean = |ts: &[Arc<Trace>]| ts.iter().map(|t| t.mean_mbps()).sum::<f64>() / ts.len() as f64;
    // the data set's README gives means of 1.4 and 1.5 Mbit/s
    assert!((mean(&fcc) - 1.4).abs() < 0.3, "fcc mean {}", mean(&fcc));
    assert!((mean(&norway) - 1.5).abs() < 0.4, "norway mean {}", mean(&norway));
    let mahimahi = load_traces(&[shared_data().join("traces/mahimahi/TMobile-UMTS-driving.down")], None, 1.0).unwrap();
    assert!(mahimahi[0].mean_mbps() > 0.1 && mahimahi[0].duration_s > 100.0);
}

fn run_episode(env: &mut ReplayEnv, scheduler: &mut dyn Scheduler, seed: u64) -> Vec<(f64, f64, Vec<f32>)> {
    env.reset_on(seed as usize, seed).unwrap();
    let mut out = Vec::new();
    while env.current().is_some() {
        let state = env.observation().state.clone();
        let action = scheduler.choose(&env.decision().unwrap());
        let step = env.step(action).unwrap();
        out.push((step.reward, step.info.oracle_reward.unwrap(), state));
    }
    out
}

#[test]
fn episodes_are_deterministic_for_a_seed() {
    let scenario = scenario();
    let mut a = ReplayEnv::new(scenario.clone());
    let mut b = ReplayEnv::new(scenario);
    let first = run_episode(&mut a, &mut schedulers::RandomScheduler::new(5), 42);
    let second = run_episode(&mut b, &mut schedulers::RandomScheduler::new(5), 42);
    assert_eq!(first, second);
    let other = run_episode(&mut a, &mut schedulers::RandomScheduler::new(5), 43);
    assert_ne!(first, other, "another seed gives another episode");
}

#[test]
fn oracle_bounds_every_scheduler_on_every_request() {
    let scenario = scenario();
    let mut train = ReplayEnv::new(scenario.clone());
    let mut env = ReplayEnv::new(scenario);
    for name in schedulers::BASELINES {
        let mut scheduler = schedulers::by_name(name, &mut train, 3).unwrap();
        for seed in 0..8 {
            for (i, (reward, oracle, _)) in run_episode(&mut env, scheduler.as_mut(), seed).iter().enumerate() {
                assert!(oracle + 1e-9 >= *reward, "{name}, episode {seed}, request {i}: {reward} > oracle {oracle}");
            }
        }
    }
}

/// The lookahead reference never does worse over its horizon than the greedy choice it
/// improves on (the greedy choice's rollout is one of those it compares), reduces to the greedy
/// oracle at a horizon of one, and over whole slow-link episodes, where queues build, earns more
/// than the greedy oracle.
#[test]
fn lookahead_oracle_improves_on_the_greedy_one() {
    use rlsched_env::replay::ORACLE_LOOKAHEAD;
    let config = EnvConfig { bandwidth_scale: 1.0, ..config() };
    let scenario = Arc::new(Scenario::load(&config, &config.validation_traces).unwrap());
    let mut env = ReplayEnv::new(scenario);
    let (mut differed, mut greedy_total, mut lookahead_total) = (0, 0.0, 0.0);
    for seed in 0..4 {
        env.reset_on(seed as usize, seed).unwrap();
        while env.current().is_some() {
            let greedy = env.oracle().unwrap().0;
            assert_eq!(env.lookahead_oracle(1), Some(greedy));
            let chosen = env.lookahead_oracle(ORACLE_LOOKAHEAD).unwrap();
            let ahead = env.rollout_reward(chosen, ORACLE_LOOKAHEAD).unwrap();
            let behind = env.rollout_reward(greedy, ORACLE_LOOKAHEAD).unwrap();
            assert!(ahead + 1e-9 >= behind, "lookahead {ahead} < greedy {behind}");
            differed += (chosen != greedy) as usize;
            greedy_total += env.step(greedy).unwrap().reward;
        }
        env.reset_on(seed as usize, seed).unwrap();
        while env.current().is_some() {
            let chosen = env.lookahead_oracle(ORACLE_LOOKAHEAD).unwrap();
            lookahead_total += env.step(chosen).unwrap().reward;
        }
    }
    assert!(differed > 0, "at ×1 the lookahead departs from the greedy choice somewhere");
    assert!(lookahead_total > greedy_total, "lookahead {lookahead_total} vs greedy {greedy_total}");
}

#[test]
fn observation_never_sees_the_future() {
    // identical for the first 300 s, then the second trace collapses
    let same: String = (0..300).map(|t| format!("{t}\t{}\n", 2.0 + (t % 7) as f64)).collect();
    let good: String = (300..600).map(|t| format!("{t}\t9.0\n")).collect();
    let bad: String = (300..600).map(|t| format!("{t}\t0.2\n")).collect();
    let build = |tail: &str| {
        let trace = Trace::parse_pensieve(&format!("{same}{tail}"), "synthetic").unwrap();
        let mut s = Scenario::load(&config(), &[repo().join("data/traces/fcc-test")]).unwrap();
        s.traces = vec![Arc::new(trace)];
        Arc::new(s)
    };
    let (mut a, mut b) = (ReplayEnv::new(build(&good)), ReplayEnv::new(build(&bad)));
    let mut compared = 0;
    let mut with_history = 0;
    for seed in 0..40 {
        a.reset_on(0, seed).unwrap();
        b.reset_on(0, seed).unwrap();
        while let (Some(ra), Some(_)) = (a.current(), b.current()) {
            if ra.world.time_s >= 299.0 {
                break;
            }
            assert_eq!(a.observation(), b.observation(), "seed {seed}: observation differs before the traces do");
            compared += 1;
            with_history += (a.measurements.link.samples().len() > 0) as usize;
            // offloading measures the link, so later observations carry measurements
            let action = schedulers::OffloadAll.choose(&a.decision().unwrap());
            a.step(action).unwrap();
            b.step(action).unwrap();
        }
    }
    assert!(compared > 100 && with_history > 50, "compared {compared}, with history {with_history}");
}

#[test]
fn invalid_actions_are_errors() {
    let mut env = ReplayEnv::new(scenario());
    env.reset(1).unwrap();
    let n = env.observation().n_plans;
    assert!(env.step(n + 3).is_err());
    if let Some(masked) = env.observation().mask[..n].iter().position(|m| !m) {
        assert!(env.step(masked).is_err());
    }
}

/// The Samsung Note10 (OFA's measured latency table) as the device: its profile drives the
/// simulator like any measured one, and the oracle still bounds every scheduler.
#[test]
fn the_note10_works_as_a_second_device() {
    let mut config = config();
    config.device_profile = "note10".into();
    config.worker_profile = "cpu2".into();
    config.workloads = vec![rlsched_env::config::WorkloadMix { name: "ofa-note10".into(), weight: 1.0, slo_ms: 100.0, min_accuracy: 0.0, onnx: None }];
    let scenario = Arc::new(Scenario::load(&config, &config.validation_traces).unwrap());
    let model = &scenario.workloads[0];
    assert_eq!(model.device.device, "note10");
    let local = model.candidates.iter().find(|c| !c.uses_worker()).unwrap();
    assert!((local.local_mean_ms() - 24.73).abs() < 0.01, "{}", local.local_mean_ms());
    assert!(model.candidates.iter().any(|c| c.kind() == "split") && model.candidates.iter().any(|c| c.kind() == "offload"));
    let mut train = ReplayEnv::new(scenario.clone());
    let mut env = ReplayEnv::new(scenario);
    for name in schedulers::BASELINES {
        let mut scheduler = schedulers::by_name(name, &mut train, 3).unwrap();
        for (i, (reward, oracle, _)) in run_episode(&mut env, scheduler.as_mut(), 1).iter().enumerate() {
            assert!(oracle + 1e-9 >= *reward, "{name}, request {i}: {reward} > oracle {oracle}");
        }
    }
}

/// A scratch profiles folder holding copies of the bundled ones, for tests that break one.
fn scratch_profiles(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rlsched-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(repo().join("data/profiles")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    dir
}

fn edit_json(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

/// Profiles that parse but do not describe the workload they are loaded for: each used to be
/// simulated silently (or, with no variants, to panic in a scheduler); now the error names the
/// file(s) and what is wrong.
#[test]
fn profiles_must_match_their_workload_and_each_other() {
    let mut config = config();
    config.workloads = vec![rlsched_env::config::WorkloadMix { name: "resnet18".into(), weight: 1.0, slo_ms: 300.0, min_accuracy: 0.0, onnx: None }];
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, &str, Edit, &[&str]); 4] = [
        ("another-network", "resnet18-cpu2.json", |p| p["workload"] = "vgg16".into(), &["resnet18-cpu2.json", "vgg16"]),
        ("unknown-variant", "resnet18-cpu2.json", |p| p["variants"][1]["name"] = "fp16".into(), &["variants[1].name", "fp16"]),
        ("no-variants", "resnet18-cpu2.json", |p| p["variants"] = serde_json::json!([]), &["resnet18-cpu2.json", "variants"]),
        (
            "stages-differ",
            "resnet18-h200.json",
            |p| {
                p["variants"][0]["stages"].as_array_mut().unwrap().pop();
            },
            &["resnet18-cpu2.json", "resnet18-h200.json", "stages"],
        ),
    ];
    for (name, file, edit, needles) in cases {
        config.profiles_dir = scratch_profiles(name);
        edit_json(&config.profiles_dir.join(file), edit);
        let err = match Scenario::load(&config, &config.validation_traces) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(needles.iter().all(|n| err.contains(n)), "{name}: {err}");
        std::fs::remove_dir_all(&config.profiles_dir).ok();
    }
}

/// `env.bandwidth_scale=1e-200` used to hang the first transfer; a scale inside the range
/// that still leaves a trace below 1 kbit/s is refused naming the field and the trace.
#[test]
fn bandwidth_scales_that_starve_a_trace_are_refused_by_name() {
    let mut config = config();
    config.bandwidth_scale = 1e-200;
    let err = Scenario::load(&config, &config.validation_traces).err().unwrap().to_string();
    assert!(err.contains("env.bandwidth_scale") && err.contains("1e-200"), "{err}");
    config.bandwidth_scale = 1e-3;
    let err = Scenario::load(&config, &config.validation_traces).err().unwrap().to_string();
    assert!(err.contains("env.bandwidth_scale") && err.contains("fcc-val") && err.contains("1 kbit/s"), "{err}");
    config.bandwidth_scale = 5.0;
    config.training_bandwidth_scales = vec![1.0, 1e-3];
    let err = Scenario::load_training(&config).err().unwrap().to_string();
    assert!(err.contains("env.training_bandwidth_scales[1]") && err.contains("1 kbit/s"), "{err}");
}

/// Values that used to hang the simulator, overflow an allocation or turn rewards infinite, and
/// sizes past their bounds, are refused by their `env.` key.
#[test]
fn config_values_that_hang_or_overflow_are_named() {
    type Edit = fn(&mut EnvConfig);
    let cases: [(Edit, &str); 15] = [
        (|c| c.bandwidth_scale = f64::NAN, "env.bandwidth_scale"),
        (|c| c.training_bandwidth_scales = vec![5.0, 0.0], "env.training_bandwidth_scales[1]"),
        (|c| c.rtt_ms = 1e300, "env.rtt_ms"),
        (|c| c.requests_per_episode = usize::MAX, "env.requests_per_episode"),
        (|c| c.history = usize::MAX, "env.history"),
        (|c| c.mean_interarrival_s = 1e300, "env.mean_interarrival_s"),
        (|c| c.device_load.mean_busy_s = 1e-300, "env.device_load.mean_busy_s"),
        (|c| c.worker_queue.busy = 1e300, "env.worker_queue.busy"),
        (|c| c.worker_queue.jitter = 1e300, "env.worker_queue.jitter"),
        (|c| c.workloads[0].weight = f64::MAX, "env.workloads[0].weight"),
        (|c| c.workloads[1].slo_ms = 1e-300, "env.workloads[1].slo_ms"),
        (|c| c.reward.w_lat = 1e308, "env.reward.w_lat"),
        // sizes without an upper bound used to be taken as they were
        (|c| c.split_points = usize::MAX, "env.split_points"),
        (|c| c.min_sample_bytes = usize::MAX, "env.min_sample_bytes"),
        (|c| c.device_memory_mb = 1e300, "env.device_memory_mb"),
    ];
    for (edit, key) in cases {
        let mut config = config();
        edit(&mut config);
        let err = config.validate().unwrap_err();
        assert!(err.contains(key), "{key}: {err}");
    }
    assert_eq!(config().validate(), Ok(()));
}

/// The trace that used to hang `eval` (times past float precision) is refused while loading.
#[test]
fn a_trace_past_float_precision_is_refused_by_line() {
    let path = std::env::temp_dir().join(format!("rlsched-far-{}.log", std::process::id()));
    std::fs::write(&path, "0 1\n1e20 1\n").unwrap();
    let err = load_traces(std::slice::from_ref(&path), None, 1.0).err().unwrap().to_string();
    assert!(err.contains(&format!("{}:2", path.display())) && err.contains("time_s"), "{err}");
    std::fs::remove_file(path).ok();
}
