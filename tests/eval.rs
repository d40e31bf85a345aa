//! `rlsched eval` end to end on the bundled FCC test traces: every scheduler appears with the
//! documented schema, the oracle has zero regret, nobody beats it, plan fractions sum to one.

use std::process::Command;

mod common;

#[test]
fn eval_on_fcc_test_writes_the_schema() {
    let root = env!("CARGO_MANIFEST_DIR");
    let json = std::env::temp_dir().join(format!("rlsched-eval-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_rlsched"))
        .args(["eval", "--config", &format!("{root}/train.toml"), "--requests", "1000", "--traces"])
        .arg(format!("{root}/data/traces/fcc-test"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["requests"].as_u64().unwrap() >= 1000);
    assert!(report["traces"].as_str().unwrap().contains("fcc-test"));
    let schedulers = report["schedulers"].as_array().unwrap();
    let names: Vec<&str> = schedulers.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for expected in ["local", "offload", "best-static", "neurosurgeon", "mpc", "robust-mpc", "random", "oracle-now", "oracle"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let best = report["best_baseline"].as_str().unwrap();
    assert!(names.contains(&best) && best != "oracle" && best != "oracle-now");
    for s in schedulers {
        let name = s["name"].as_str().unwrap();
        let regret = s["regret"].as_f64().unwrap();
        if name == "oracle" {
            assert!(regret.abs() < 1e-9, "oracle regret {regret}");
            assert_eq!(s["deployable"], false);
        }
        // with contention the clairvoyant greedy oracle is a reference, not a bound: regret is
        // measured from it and may be negative
        let oracle = report["oracle_mean_reward"].as_f64().unwrap();
        assert!((regret - (oracle - s["mean_reward"].as_f64().unwrap())).abs() < 1e-9, "{name}");
        let diff = &s["vs_best_baseline"];
        let (mean, low, high) = (diff["mean"].as_f64().unwrap(), diff["ci95_low"].as_f64().unwrap(), diff["ci95_high"].as_f64().unwrap());
        assert!(low <= mean + 1e-12 && mean <= high + 1e-12, "{name}: {diff}");
        assert!(s["bytes_up_per_request"].as_f64().is_some_and(|b| b.is_finite() && b >= 0.0), "{name}");
        assert!(s["device_utilization"].as_f64().is_some_and(|u| (0.0..=1.0).contains(&u)), "{name}");
        let frac = &s["plan_frac"];
        let sum: f64 = ["local", "split", "offload"].iter().map(|k| frac[k].as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{name}: plan fractions sum to {sum}");
        for key in ["mean_reward", "latency_ms_mean", "latency_ms_p95", "latency_ms_p99", "slo_miss_rate", "accuracy", "compressed_frac"] {
            assert!(s[key].as_f64().is_some_and(f64::is_finite), "{name}.{key} = {}", s[key]);
        }
        assert!(s["latency_ms_p99"].as_f64().unwrap() >= s["latency_ms_p95"].as_f64().unwrap());
    }
    let best_entry = schedulers.iter().find(|s| s["name"] == best).unwrap();
    assert!((best_entry["regret_ratio"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert_eq!(best_entry["vs_best_baseline"]["mean"].as_f64(), Some(0.0), "the best baseline against itself");
    // the uploads are counted: offloading everything sends far more than running locally
    let up = |n: &str| schedulers.iter().find(|s| s["name"] == n).unwrap()["bytes_up_per_request"].as_f64().unwrap();
    assert!(up("offload") > 10.0 * up("local"), "offload {} local {}", up("offload"), up("local"));
    std::fs::remove_file(json).ok();
}

#[test]
fn unknown_config_key_is_named() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(env!("CARGO_BIN_EXE_rlsched"))
        .args(["eval", "--config", &format!("{root}/train.toml"), "--set", "env.bandwith_scale=5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bandwith_scale"), "{err}");
}

#[test]
fn broken_config_names_file_line_and_field() {
    let path = std::env::temp_dir().join(format!("rlsched-bad-{}.toml", std::process::id()));
    std::fs::write(&path, "[env]\nrtt_ms = 40.0\nbandwidth_scale = \"fast\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rlsched")).arg("eval").arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(path.to_str().unwrap()) && err.contains("line 3") && err.contains("bandwidth_scale"), "{err}");
    std::fs::remove_file(path).ok();
}

#[test]
fn train_writes_tensorboard_files_and_a_checkpoint() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = common::private_config("train");
    let out = Command::new(env!("CARGO_BIN_EXE_rlsched"))
        .args(["train", "--run-name", "t", "--total-steps", "8192", "--eval-every", "2", "--eval-requests", "400", "--config"])
        .arg(dir.join("train.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("policy") && stdout.contains("oracle"), "{stdout}");
    assert!(dir.join("checkpoints/t/policy.bpk").is_file() && dir.join("checkpoints/t/checkpoint.json").is_file());
    let check = Command::new("python3")
        .arg(format!("{root}/scripts/check_tensorboard.py"))
        .arg(dir.join("runs/t"))
        .output()
        .expect("python3 runs (CI installs tensorboard)");
    assert!(
        check.status.success(),
        "TensorBoard check failed (pip install tensorboard):\n{}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Values the simulator or PPO cannot work with are refused up front, naming the key, and
/// never reach a panic (a zero-width network or zero environments used to).
#[test]
fn out_of_range_values_are_refused_by_name() {
    let root = env!("CARGO_MANIFEST_DIR");
    for (set, key) in [
        ("agent.ppo.num_envs=0", "agent.ppo.num_envs"),
        ("agent.model.hidden=0", "agent.model.hidden"),
        ("agent.model.obs_clip=-1", "agent.model.obs_clip"),
        ("agent.ppo.gamma=2", "agent.ppo.gamma"),
        ("env.requests_per_episode=0", "env.requests_per_episode"),
        ("env.device_load.busy=100", "env.device_load.busy"),
        ("env.contention.per_task=-1", "env.contention.per_task"),
        ("env.deadline.slo_factor=-1", "env.deadline.slo_factor"),
        ("env.consensus={margin=0.0,in_training=true}", "env.consensus.in_training"),
        ("env.outages.period_s=20", "env.outages.duration_s"),
        ("env.rtt_ms=-3", "env.rtt_ms"),
        ("env.workloads=[{name=\"vgg16\",weight=1.0,slo_ms=-5.0,min_accuracy=0.0}]", "env.workloads[0].slo_ms"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_rlsched"))
            .args(["train", "--config", &format!("{root}/train.toml"), "--run-name", "never-written", "--set", set])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(err.contains(key) && !err.contains("panicked"), "{set}: {err}");
    }
    assert!(!std::path::Path::new(root).join("checkpoints/never-written").exists());
    for args in [&["eval", "--requests", "0"][..], &["bench", "env", "--seconds", "0"], &["eval", "--trace-format", "weird"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_rlsched")).args(args).current_dir(root).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(args[args.len() - 2]) && !err.contains("panicked"), "{args:?}: {err}");
    }
}
