//! The `rlsched` binary end to end: subcommands, the profiler's JSON, and clear errors.

use std::process::Command;

mod common;

fn rlsched() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rlsched"))
}

#[test]
fn help_lists_every_subcommand() {
    let out = rlsched().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["train", "eval", "profile", "worker", "link", "serve", "bench"] {
        assert!(text.contains(sub), "--help lacks `{sub}`:\n{text}");
    }
}

#[test]
fn serve_refuses_a_missing_checkpoint_and_an_empty_queue() {
    let out = rlsched().args(["serve", "--listen", "127.0.0.1:0", "--checkpoint", "no/such/checkpoint"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/checkpoint") && err.contains("no such checkpoint directory"), "{err}");
    let out = rlsched().args(["serve", "--listen", "127.0.0.1:0", "--max-queue", "0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-queue must be in 1..="));
}

#[test]
fn backend_not_compiled_is_a_clear_error() {
    if cfg!(feature = "wgpu") {
        return;
    }
    let out = rlsched()
        .args(["profile", "--workload", "digits-cnn", "--device", "wgpu", "--runs", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features wgpu"), "{err}");
    let out = rlsched().args(["profile", "--workload", "digits-cnn", "--device", "tpu"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown device `tpu`"));
}

#[test]
fn profile_vgg16_writes_valid_json() {
    let dir = std::env::temp_dir().join(format!("rlsched-profile-{}", std::process::id()));
    let path = dir.join("vgg16.json");
    let out = rlsched()
        .args(["profile", "--workload", "vgg16", "--runs", "3", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let profile: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(profile["workload"], "vgg16");
    assert_eq!(profile["device"], "flex");
    assert_eq!(profile["input_shape"], serde_json::json!([1, 3, 224, 224]));
    let variants = profile["variants"].as_array().unwrap();
    // every variant the catalogue has (fp32, int8, the pruned ones), in its order
    let spec = rlsched_executor::Workload::Vgg16.spec().unwrap();
    let names: Vec<&str> = variants.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, spec.variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>());
    for variant in variants {
        assert!(variant["accuracy"].as_f64().unwrap() > 0.5);
        let source = variant["accuracy_source"].as_str().unwrap();
        assert!(source.starts_with("model-card") || source == "published-pruning", "{source}");
        assert!(variant["param_bytes"].as_u64().unwrap() > 0);
        let stages = variant["stages"].as_array().unwrap();
        assert_eq!(stages.len(), 16);
        for stage in stages {
            assert!(stage["output_bytes"].as_u64().unwrap() > 0, "{stage}");
            assert!(stage["flops"].as_u64().unwrap() > 0, "{stage}");
            let latency = &stage["latency_ms"];
            for key in ["mean", "std", "p50", "p95"] {
                assert!(latency[key].as_f64().unwrap() >= 0.0, "{stage}");
            }
            assert!(latency["mean"].as_f64().unwrap() > 0.0, "{stage}");
        }
    }
    // weight-only int8 stores its weights in a quarter of the bytes
    let bytes: Vec<u64> = variants.iter().map(|v| v["param_bytes"].as_u64().unwrap()).collect();
    assert!(bytes[1] * 3 < bytes[0], "{bytes:?}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn profile_list_names_every_workload() {
    let out = rlsched().args(["profile", "--list"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for w in ["mobilenetv2", "resnet18", "vgg16", "bert-mini", "digits-cnn", "ofa-note10", "pruned-0.5", "measured"] {
        assert!(text.contains(w), "{text}");
    }
}

/// An interrupted training run keeps its progress: `train` checkpoints every few iterations, and
/// what is on disk when the run is stopped (SIGTERM) is a whole, loadable checkpoint.
#[test]
fn interrupted_training_leaves_a_loadable_checkpoint() {
    let dir = common::private_config("interrupt");
    let total = 100_000_000usize;
    let mut child = Command::new(env!("CARGO_BIN_EXE_rlsched"))
        .args(["train", "--run-name", "i", "--checkpoint-every", "1", "--eval-every", "1000"])
        .arg("--total-steps")
        .arg(total.to_string())
        .arg("--config")
        .arg(dir.join("train.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // wait for the first periodic checkpoint, then interrupt
    let sidecar = dir.join("checkpoints/i/checkpoint.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !sidecar.is_file() {
        assert!(child.try_wait().unwrap().is_none(), "training exited before its first checkpoint");
        assert!(std::time::Instant::now() < deadline, "no checkpoint written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SIGTERM, not SIGINT: a shell that starts a job in the background (nohup, `&` without job
    // control) makes it ignore SIGINT, and the child inherits that, so a SIGINT would never end
    // the run. Waiting is bounded either way.
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let stop_deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > stop_deadline {
            child.kill().ok();
            panic!("training did not stop within 120 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (policy, read) = rlsched_agent::checkpoint::load(&dir.join("checkpoints/i"), &burn::tensor::Device::flex()).unwrap();
    assert!(read.step > 0 && read.step < total, "step {}", read.step);
    assert!(policy.first_non_finite_parameter().is_none());
    std::fs::remove_dir_all(dir).ok();
}

/// `--scale 0`, `-1` or `nan` used to be accepted, then spin at 100% CPU on the first request
/// (ignoring ctrl-c); `1e-300` overflowed transfer times and `--rtt-ms 1e300` panicked. Each
/// is refused by name before the link binds or reads anything, so the command exits at once.
#[test]
fn link_refuses_scales_and_rtts_it_cannot_serve() {
    let root = env!("CARGO_MANIFEST_DIR");
    let trace = format!("{root}/data/traces/fcc-test/trace_797466_http---www.amazon_part1.log");
    for (flag, needle) in [
        ("--scale=0", "--scale"),
        ("--scale=-1", "--scale"),
        ("--scale=nan", "--scale"),
        ("--scale=1e-300", "--scale"),
        ("--rtt-ms=1e300", "--rtt-ms"),
    ] {
        let out = rlsched()
            .args(["link", "--trace", &trace, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9", flag])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} was accepted");
        assert!(err.contains(needle) && !err.contains("panicked"), "{flag}: {err}");
    }
}

/// `eval --set env.bandwidth_scale=1e-200` used to loop forever in the first transfer; the
/// config check refuses it, naming the field, before any trace is read.
#[test]
fn eval_refuses_a_bandwidth_scale_that_would_hang() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = rlsched()
        .args(["eval", "--config", &format!("{root}/train.toml"), "--set", "env.bandwidth_scale=1e-200"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(err.contains("env.bandwidth_scale") && err.contains("1e-200"), "{err}");
}

/// Sizes that used to panic or abort: `num_envs × num_steps` overflowed computing the batch
/// ("attempt to multiply with overflow"), `bench env --envs 18446744073709551615` failed with
/// "capacity overflow". Each is now refused naming the field or flag and its bound.
#[test]
fn sizes_that_overflow_are_refused_by_name() {
    let root = env!("CARGO_MANIFEST_DIR");
    let config = format!("{root}/train.toml");
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["train", "--config", &config, "--set", "agent.ppo.num_envs=4294967296", "--set", "agent.ppo.num_steps=4294967296"],
            &["agent.ppo.num_envs", "1..=1024", "4294967296"],
        ),
        (&["bench", "env", "--config", &config, "--envs", "18446744073709551615"], &["--envs", "1..=1024", "18446744073709551615"]),
        (&["profile", "--workload", "digits-cnn", "--runs", "18446744073709551615"], &["--runs", "18446744073709551615"]),
    ];
    for (args, needles) in cases {
        let out = rlsched().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!err.contains("panicked") && needles.iter().all(|n| err.contains(n)), "{args:?}: {err}");
    }
}

/// `--set` of an integer past i64 (TOML's integers) used to become a string, and the error said
/// "invalid type: string". It is an integer now: a u64 seed is taken as it is, and a size past
/// its bound gets the bound error with the number given.
#[test]
fn set_takes_integers_past_i64() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("train.toml");
    let load = |sets: &[&str]| rlsched::config::load(&path, true, &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let config = load(&["agent.ppo.seed=18446744073709551615", "env.synthetic.seed=9223372036854775808"]).unwrap();
    assert_eq!(config.agent.ppo.seed, u64::MAX);
    assert_eq!(config.env.synthetic.seed, 1 << 63);
    // the last --set of a key wins, large or not
    assert_eq!(load(&["agent.ppo.seed=18446744073709551615", "agent.ppo.seed=5"]).unwrap().agent.ppo.seed, 5);
    assert_eq!(load(&["agent.ppo.seed=5", "agent.ppo.seed=18446744073709551615"]).unwrap().agent.ppo.seed, u64::MAX);
    for (set, field) in [
        ("agent.ppo.num_envs=18446744073709551615", "agent.ppo.num_envs"),
        ("agent.model.hidden=1_000_000_000", "agent.model.hidden"),
        ("env.split_points=18446744073709551615", "env.split_points"),
        ("online.checkpoint_every=18446744073709551615", "online.checkpoint_every"),
    ] {
        let err = format!("{:#}", load(&[set]).unwrap_err());
        let value = set.split_once('=').unwrap().1.replace('_', "");
        assert!(err.contains(field) && err.contains(&format!("got {value}")) && !err.contains("string"), "{set}: {err}");
    }
    let err = format!("{:#}", load(&["agent.ppo.seed=99999999999999999999999"]).unwrap_err());
    assert!(err.contains("agent.ppo.seed") && err.contains("larger than"), "{err}");
}

/// `rlsched link` stopped only on ctrl-c; SIGTERM (what `kill`, systemd and container runtimes
/// send) killed it. It now stops the same orderly way, and exits 0.
#[test]
fn link_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let root = env!("CARGO_MANIFEST_DIR");
    let trace = format!("{root}/data/traces/fcc-test/trace_797466_http---www.amazon_part1.log");
    let mut child = rlsched()
        .args(["link", "--trace", &trace, "--listen", "127.0.0.1:0", "--upstream", "127.0.0.1:9"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening"), "{first}");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM: {exit}");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(rest.iter().any(|l| l.contains("rlsched link stopped")), "{rest:?}");
}
