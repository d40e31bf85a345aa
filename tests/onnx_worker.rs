//! An imported ONNX model served by a real `rlsched worker --model NAME=PATH` process: NVIDIA's
//! tritonclient gets onnxruntime's output from it; a split plan of DenseNet-121 (a DAG whose
//! offered cuts include ones several tensors cross) runs its head here and its tail on the
//! worker and answers what onnxruntime does; a worker whose file under the same name differs is
//! refused by its content hash.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::model::activation::WireData;
use rlsched_executor::model::workloads::imported;
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::DeviceChoice;

mod common;

fn models() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("onnx-test-models-v1");
    python(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/onnx_reference.py"), &["prepare", dir.to_str().unwrap()]);
    dir
}

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3").arg(script).args(args).output().expect("python3 runs (scripts/test.sh installs onnx, onnxruntime, tritonclient)");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// onnxruntime's output for `input` (FP32 `shape`) through `model`, run in `scratch`.
fn onnxruntime_output(scratch: &Path, model: &Path, input: &[f32], shape: &[usize], output_name: &str) -> Vec<f32> {
    std::fs::create_dir_all(scratch).unwrap();
    std::fs::write(scratch.join("input.bin"), input.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let request = serde_json::json!([{
        "model": model, "input": scratch.join("input.bin"), "shape": shape, "names": [output_name], "out": scratch.join("out"),
    }]);
    std::fs::write(scratch.join("request.json"), request.to_string()).unwrap();
    python(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/onnx_reference.py"), &["run", scratch.join("request.json").to_str().unwrap()]);
    let bytes = std::fs::read(scratch.join("out/0.bin")).unwrap();
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn relative_error(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64)).max(1e-12);
    ours.iter().zip(reference).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs())) / scale
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_serves_an_imported_model() {
    let dir = models();
    let densenet = dir.join("zoo-densenet121.onnx");
    let model_arg = format!("densenet={}", densenet.display());
    let (mut child, url) = common::serve::spawn_worker("127.0.0.1:0", &["--model", &model_arg]);

    // an independent client, against an independent runtime
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/onnx_triton_check.py");
    let out = python(script, &[url.trim_start_matches("http://"), "densenet", densenet.to_str().unwrap()]);
    assert!(out.contains("onnx tritonclient checks passed"), "{out}");

    // a split at a cut that several tensors cross: head here, tail on the worker
    let workload = imported::register("densenet", &densenet, &Default::default()).unwrap();
    let model = workload.onnx().unwrap();
    let cut = (1..model.stage_count()).find(|&k| model.boundaries[k].values.len() > 1).expect("DenseNet offers a several-tensor cut");
    let client = WorkerClient::new(&url, None, Duration::from_secs(120)).unwrap();
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client]).unwrap();
    let input = workload.example_input(3);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let split = executor
        .execute(workload, &Plan::Split { variant: "fp32".into(), cut, worker: 0, int8: false }, input.clone(), None)
        .await
        .unwrap();
    assert!(split.breakdown.fallback.is_none(), "the split ran on the worker: {:?}", split.breakdown.fallback);
    let (WireData::F32(ours), WireData::F32(here)) = (&split.output.data, &local.output.data) else { panic!("FP32 outputs") };
    assert!(relative_error(ours, here) <= 1e-5, "split and local agree");

    // and onnxruntime agrees with the split's answer
    let WireData::F32(x) = &input.data else { panic!("FP32 input") };
    let reference = onnxruntime_output(&dir.join("worker-split"), &densenet, x, &input.shape, &model.output_name);
    let error = relative_error(ours, &reference);
    assert!(error <= 1e-4, "split output against onnxruntime: relative error {error:e}");

    // the pruned variant split the same way: the worker derives the same narrower graph from
    // its copy of the file, so its tail takes this head's narrower tensors
    let pruned = Plan::Local { variant: "pruned-0.5".into() };
    let pruned_local = executor.execute(workload, &pruned, input.clone(), None).await.unwrap();
    let pruned_stages = workload.build("pruned-0.5", &DeviceChoice::Flex.device().unwrap()).unwrap().stage_count();
    let pruned_split = executor
        .execute(workload, &Plan::Split { variant: "pruned-0.5".into(), cut: pruned_stages / 2, worker: 0, int8: false }, input.clone(), None)
        .await
        .unwrap();
    assert!(pruned_split.breakdown.fallback.is_none(), "the pruned split ran on the worker: {:?}", pruned_split.breakdown.fallback);
    let (WireData::F32(pruned_ours), WireData::F32(pruned_here)) = (&pruned_split.output.data, &pruned_local.output.data) else { panic!("FP32 outputs") };
    assert!(relative_error(pruned_ours, pruned_here) <= 1e-5, "pruned split and local agree");

    child.kill().ok();
    child.wait().ok();

    // the same name meaning another file on the worker: refused, and the request answered here
    let other = format!("densenet={}", dir.join("graph-mixed.onnx").display());
    let (mut child, url) = common::serve::spawn_worker("127.0.0.1:0", &["--model", &other]);
    let client = WorkerClient::new(&url, None, Duration::from_secs(60)).unwrap();
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client]).unwrap();
    let run = executor
        .execute(workload, &Plan::Split { variant: "fp32".into(), cut, worker: 0, int8: false }, input, None)
        .await
        .unwrap();
    child.kill().ok();
    child.wait().ok();
    let reason = run.breakdown.fallback.expect("a worker with another file is not used");
    assert!(reason.contains("differs between device and worker") && reason.contains(&model.hash), "{reason}");
}

/// `rlsched serve` with an imported DenseNet-121 (`onnx = "path"` in `[[env.workloads]]`) and a
/// real worker holding the same file, behind `rlsched link` at a constant 2 Mbit/s, with f32
/// intermediates (int8 ones differ from onnxruntime by design). The device holds 10 MB, enough
/// for the heads of the offered cuts (4.9 and 9.3 MB with their activations) and not the whole
/// model (35 MB), so the plans are the splits and offload; offload sends the 602 KB input, the
/// cut after stage 7 a 225 KB tensor, so at 2 Mbit/s offload is about 1.5 s slower than that
/// split. The shield at 0.6 SLOs (1.8 s of upload) masks offload and the other split once serving
/// has a link estimate: the shipped policy, zero-shot on a model whose accuracies are unknown,
/// offloads most of such requests in the simulator (README, "Zero-shot"), and this test is of the
/// split's path through serve, whose answer (head here, the DAG's tail on the worker) is
/// onnxruntime's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_splits_an_imported_dag_model_across_a_real_worker() {
    use rlsched_executor::profile::profiler;
    let dir = models();
    let densenet = dir.join("zoo-densenet121.onnx");
    let model_arg = format!("densenet={}", densenet.display());
    let (worker, worker_url) = common::serve::spawn_worker("127.0.0.1:0", &["--model", &model_arg]);
    let _worker = common::serve::Killed(worker);
    let trace = dir.join("serve-link-2mbps.txt");
    std::fs::write(&trace, "0 2\n3600 2\n").unwrap();
    let (link, link_url, _) = common::serve::spawn_link(&trace, worker_url.trim_start_matches("http://"));
    let _link = common::serve::Killed(link);

    let mix = format!(r#"env.workloads=[{{name="densenet",weight=1.0,slo_ms=3000.0,min_accuracy=0.0,onnx="{}"}}]"#, densenet.display());
    let mut env = common::serve::env(&[&mix, "env.device_memory_mb=10", "env.int8_intermediates=false", "env.shield.slo_factor=0.6", "env.probe.bytes=0"]);
    // the profiles serve reads: the committed ones plus DenseNet's, measured here (one run)
    let profiles = dir.join("serve-profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    for entry in std::fs::read_dir(&env.profiles_dir).unwrap() {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "json") {
            std::fs::copy(entry.path(), profiles.join(entry.file_name())).unwrap();
        }
    }
    let workload: rlsched_executor::Workload = "densenet".parse().unwrap();
    // fp32 only: the answer is then onnxruntime's (int8 weights would differ by design)
    let profile = profiler::profile(workload, &["fp32".into()], DeviceChoice::Flex, 1, Duration::ZERO, |_| {}).unwrap();
    let json = serde_json::to_string(&profile).unwrap();
    for suffix in [&env.device_profile, &env.worker_profile] {
        std::fs::write(profiles.join(format!("densenet-{suffix}.json")), &json).unwrap();
    }
    env.profiles_dir = profiles;
    let mut config = common::serve::config(env);
    config.workers = vec![link_url];
    config.poll_interval = Duration::from_millis(100);
    let server = common::serve::start(config).await;
    let client = reqwest::Client::new();
    let up = r#"rlsched_worker_up{worker="0"}"#;
    common::serve::wait_for("the worker to be up", async || common::serve::metric(&client, &server.url, up).await == 1.0).await;

    let model = workload.onnx().unwrap();
    // every answer is onnxruntime's, whatever plan ran it
    let infer = async |seed: u64| -> String {
        let input = workload.example_input(seed);
        let WireData::F32(x) = &input.data else { panic!("FP32 input") };
        let body = serde_json::json!({"inputs": [{"name": "input", "shape": input.shape, "datatype": "FP32", "data": x}]});
        let reply: serde_json::Value = client.post(format!("{}/v2/models/densenet/infer", server.url)).json(&body).send().await.unwrap().json().await.unwrap();
        let parameters = reply["parameters"].clone();
        assert_ne!(parameters["strategy"], "local", "the whole model does not fit the device: {parameters}");
        assert_eq!(parameters["variant"], "fp32", "{parameters}");
        assert!(parameters.get("fallback").is_none_or(|f| f.is_null()), "ran on the worker: {parameters}");
        let ours: Vec<f32> = reply["outputs"][0]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let reference = onnxruntime_output(&dir.join("serve-run"), &densenet, x, &input.shape, &model.output_name);
        let error = relative_error(&ours, &reference);
        eprintln!("serve: {} at cut {}, relative error {error:.2e} against onnxruntime: {parameters}", parameters["strategy"], parameters["cut"]);
        assert!(error <= 1e-4, "serve's answer ({parameters}) against onnxruntime: relative error {error:e}");
        parameters["strategy"].as_str().unwrap_or_default().to_string()
    };
    // Requests until one's upload has given serving its link estimate, which the shield masks
    // on (the active probe is off: its 64 KB transfer once read the link fast enough that
    // offload passed the shield).
    let estimate = r#"rlsched_link_mbps{worker="0"}"#;
    let mut seed = 5;
    while common::serve::metric(&client, &server.url, estimate).await <= 0.0 {
        assert!(seed < 10, "no link estimate after {} requests", seed - 5);
        infer(seed).await;
        seed += 1;
    }
    let strategies = [infer(seed).await, infer(seed + 1).await];
    assert!(strategies.iter().all(|s| s == "split"), "with a link estimate, the shield leaves the split after stage 7 alone: {strategies:?}");
    server.stop().await;
}

/// `--model` errors from the command line: a model the importer refuses, a built-in's name, a
/// malformed argument; each names what is wrong and the command fails before doing anything.
#[test]
fn bad_model_arguments_fail_with_clear_errors() {
    let dir = models();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rlsched")).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let unsupported = format!("m={}", dir.join("bad-unsupported.onnx").display());
    let text = run(&["profile", "--model", &unsupported]);
    assert!(text.contains("Erf ×2") && text.contains("first_erf"), "{text}");
    let builtin = format!("resnet18={}", dir.join("graph-mixed.onnx").display());
    let text = run(&["profile", "--model", &builtin]);
    assert!(text.contains("built-in"), "{text}");
    let text = run(&["profile", "--model", "no-equals-sign"]);
    assert!(text.contains("NAME=PATH"), "{text}");
    let dynamic = format!("d={}", dir.join("bad-dynamic.onnx").display());
    let text = run(&["profile", "--model", &dynamic]);
    assert!(text.contains("--input-shape"), "{text}");
}
