//! `rlsched serve` under hostile and unlucky clients: every edge has a bound, and each bound is
//! tested here.
//! - Slow clients that declare a body and never send it hold no request slot (they used to hold
//!   all 64, and every normal request got a 503).
//! - Shutdown answers every request that arrived, closes keep-alive connections cleanly, and
//!   cuts a half-sent request at the drain deadline, so the `--online` checkpoint is written.
//! - The request memory budget refuses what it cannot hold, with a 503 that says so.
//! - One hung worker does not delay readiness, nor what is learnt of the other workers.
//! - Requests cannot poison online learning (a subnormal SLO), and an accuracy floor no variant
//!   reaches is answered and said.
//! - Sizes and URLs past their bounds are errors, not panics, before anything is served.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::serve::{self as helpers, DIGITS};
use rlsched_executor::kserve::http::BodyLimits;
use rlsched_executor::kserve::server::ServerLimits;
use rlsched_executor::kserve::worker::{self, WorkerConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above anything these tests wait for on a slow, loaded machine: only a hang reaches it.
const HANG: Duration = Duration::from_secs(120);

fn digits_body(parameters: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&helpers::digits_request(parameters)).unwrap()
}

async fn infer(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = client.post(format!("{url}/v2/models/digits-cnn/infer")).body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_hold_no_request_slot() {
    let mut config = helpers::config(helpers::env(&[DIGITS]));
    // the slow clients hold on for the whole test; the slots stay at their default of 64
    config.body = BodyLimits { idle_timeout: Duration::from_secs(3600), total_timeout: Duration::from_secs(3600), ..BodyLimits::default() };
    let server = helpers::start(config).await;
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut stream = TcpStream::connect(address(&server.url)).await.unwrap();
        let head = "POST /v2/models/digits-cnn/infer HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    let client = reqwest::Client::new();
    let mut served = 0;
    for _ in 0..70 {
        let (status, reply) = infer(&client, &server.url, digits_body(json!({}))).await;
        assert_eq!(status, 200, "{reply}");
        served += 1;
    }
    println!("with 64 slow clients holding their connections: {served} of 70 normal requests served");
    drop(slow);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_refuses_what_it_cannot_hold() {
    let mut config = helpers::config(helpers::env(&[DIGITS]));
    config.max_memory_bytes = 1 << 20;
    let server = helpers::start(config).await;
    let client = reqwest::Client::new();
    let (status, reply) = infer(&client, &server.url, digits_body(json!({}))).await;
    assert_eq!(status, 200, "{reply}");
    // 300 KB of JSON needs five times that to decode: more than the whole budget
    let mut big = digits_body(json!({}));
    big.splice(1..1, std::iter::repeat_n(b' ', 300_000));
    let (status, reply) = infer(&client, &server.url, big).await;
    assert_eq!(status, 503, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("--max-memory-bytes"), "{reply}");
    // and gives everything back: a normal request still fits
    let (status, reply) = infer(&client, &server.url, digits_body(json!({}))).await;
    assert_eq!(status, 200, "{reply}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_keep_alive_load_answers_every_request_it_was_sent() {
    let mut config = helpers::config(helpers::env(&[DIGITS]));
    // a client starved of the CPU for this long between two requests is closed on
    config.server = ServerLimits { drain_linger: Duration::from_secs(2), ..ServerLimits::default() };
    let server = helpers::start(config).await;
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let stop_clients = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (client, url, stop) = (client.clone(), url.clone(), stop_clients.clone());
        clients.push(tokio::spawn(async move {
            let (mut answered, mut lost) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match client.post(format!("{url}/v2/models/digits-cnn/infer")).body(digits_body(json!({}))).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        match response.bytes().await {
                            Ok(_) if status == 200 => answered += 1,
                            Ok(body) => lost.push(format!("HTTP {status}: {}", String::from_utf8_lossy(&body))),
                            Err(e) => lost.push(format!("body: {e}")),
                        }
                    }
                    // refused at connect: the server had stopped accepting, nothing was sent
                    Err(e) if e.is_connect() => break,
                    Err(e) => {
                        lost.push(format!("{e:?}"));
                        break;
                    }
                }
            }
            (answered, lost)
        }));
    }
    // load until a few hundred requests have been answered
    loop {
        let text = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        if helpers::sample(&text, "rlsched_responses_total{code=\"200\"}") >= 300.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let summary = tokio::time::timeout(HANG, server.stop()).await.expect("shutdown hung");
    stop_clients.store(true, Ordering::SeqCst);
    let (mut answered, mut lost) = (0, Vec::new());
    for client in clients {
        let (a, l) = client.await.unwrap();
        answered += a;
        lost.extend(l);
    }
    assert!(lost.is_empty(), "requests sent but not answered: {lost:?}");
    assert_eq!(summary.answered, answered, "every request serve answered reached its client, and no other");
    assert_eq!(summary.cut, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_cannot_hold_shutdown_or_the_online_checkpoint() {
    let runs = std::env::temp_dir().join(format!("rlsched-serve-half-{}", std::process::id()));
    std::fs::remove_dir_all(&runs).ok();
    let train = rlsched::config::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("train.toml"), true, &[DIGITS.to_string()]).unwrap();
    let mut config = helpers::config(train.env.clone());
    config.online = Some(train.online.clone());
    config.agent = train.agent.clone();
    config.runs_dir = runs.clone();
    config.body = BodyLimits { idle_timeout: Duration::from_secs(3600), total_timeout: Duration::from_secs(3600), ..BodyLimits::default() };
    config.server = ServerLimits { drain_timeout: Duration::from_millis(500), ..ServerLimits::default() };
    let server = helpers::start(config).await;
    let mut half = TcpStream::connect(address(&server.url)).await.unwrap();
    half.write_all(b"POST /v2/models/digits-cnn/infer HTTP/1.1\r\nhost: test\r\ncontent-length: 5000\r\n\r\n{\"inputs\":").await.unwrap();
    // one whole request on another connection: by then the server has long read the half one
    let (status, reply) = infer(&reqwest::Client::new(), &server.url, digits_body(json!({}))).await;
    assert_eq!(status, 200, "{reply}");
    let summary = tokio::time::timeout(HANG, server.stop()).await.expect("shutdown hung behind a half-sent request");
    assert!(summary.cut <= 1, "{summary:?}");
    let mut rest = Vec::new();
    half.read_to_end(&mut rest).await.ok();
    assert!(!String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"));
    let (policy, _) = rlsched_agent::checkpoint::load(&runs.join("checkpoint"), &burn::tensor::Device::flex()).unwrap();
    assert!(policy.first_non_finite_parameter().is_none());
    std::fs::remove_dir_all(&runs).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hung_worker_delays_neither_readiness_nor_the_others_health() {
    // a hung worker: the kernel accepts its connections, nothing ever answers
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let real = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let real_url = format!("http://{}", real.local_addr().unwrap());
    let (stop_real, real_stopped) = tokio::sync::oneshot::channel::<()>();
    let real_task = tokio::spawn(worker::run(real, WorkerConfig::default(), async {
        real_stopped.await.ok();
    }));
    let mut config = helpers::config(helpers::env(&[DIGITS]));
    config.workers = vec![format!("http://{}", hung.local_addr().unwrap()), real_url];
    // a remote call may take an hour; a probe may not
    config.worker_timeout = Duration::from_secs(3600);
    config.poll_interval = Duration::from_millis(100);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve = tokio::spawn(rlsched::serve::run(listener, config, async {
        stopped.await.ok();
    }));
    let client = reqwest::Client::new();
    let up = |text: &str, worker: usize| helpers::sample(text, &format!("rlsched_worker_up{{worker=\"{worker}\"}}"));
    let deadline = tokio::time::Instant::now() + HANG;
    let metrics = loop {
        if let Ok(response) = client.get(format!("{url}/metrics")).send().await {
            break response.text().await.unwrap();
        }
        assert!(!serve.is_finished(), "serve stopped while starting");
        assert!(tokio::time::Instant::now() < deadline, "serve never became ready behind a hung worker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(up(&metrics, 0), 0.0, "{metrics}");
    assert_eq!(up(&metrics, 1), 1.0, "{metrics}");

    // the real worker dies: noticed though the hung one never answers
    stop_real.send(()).ok();
    real_task.await.unwrap().unwrap();
    loop {
        let text = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        if up(&text, 1) == 0.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the real worker's death was not noticed:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).ok();
    tokio::time::timeout(HANG, serve).await.expect("shutdown hung").unwrap().unwrap();
    drop(hung);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cannot_poison_learning_and_an_unmet_floor_is_said() {
    let server = helpers::start(helpers::config(helpers::env(&[DIGITS]))).await;
    let client = reqwest::Client::new();
    for slo in [json!(5e-324), json!(0.0), json!(1e-4), json!(-1.0), json!(1e300)] {
        let (status, reply) = infer(&client, &server.url, digits_body(json!({"slo_ms": slo}))).await;
        assert_eq!(status, 400, "slo_ms {slo}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains("slo_ms"), "{reply}");
    }
    let (status, reply) = infer(&client, &server.url, digits_body(json!({"slo_ms": 1e-3}))).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["parameters"]["reward"].as_f64().is_some_and(f64::is_finite), "{reply}");

    let (status, reply) = infer(&client, &server.url, digits_body(json!({"min_accuracy": 0.9999}))).await;
    assert_eq!(status, 200, "{reply}");
    let p = &reply["parameters"];
    assert_eq!(p["accuracy_floor_unmet"], true, "{reply}");
    assert!(p["accuracy"].as_f64().unwrap() < 0.9999, "{reply}");
    let (status, reply) = infer(&client, &server.url, digits_body(json!({"min_accuracy": 0.5}))).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["parameters"].get("accuracy_floor_unmet").is_none(), "{reply}");
    server.stop().await;
}

#[test]
fn sizes_and_urls_past_their_bounds_are_errors_before_serving() {
    let refused = |change: &dyn Fn(&mut rlsched::serve::ServeConfig), expected: &str| {
        let mut config = helpers::config(helpers::env(&[DIGITS]));
        change(&mut config);
        match rlsched::serve::prepare(config) {
            Ok(_) => panic!("accepted; expected an error naming {expected}"),
            Err(e) => assert!(e.to_string().contains(expected), "{e} (expected {expected})"),
        }
    };
    refused(&|c| c.max_queue = usize::MAX, "--max-queue");
    refused(&|c| c.max_queue = 0, "--max-queue");
    refused(&|c| c.max_memory_bytes = usize::MAX, "--max-memory-bytes");
    refused(&|c| c.server.max_connections = usize::MAX, "--max-connections");
    refused(&|c| c.body.max_bytes = usize::MAX, "--max-body-bytes");
    refused(&|c| c.worker_timeout = Duration::MAX, "--worker-timeout-ms");
    refused(&|c| c.client.max_reply_bytes = 0, "--max-reply-bytes");
    for url in ["not a url", "ftp://127.0.0.1:21", "http://", "http://127.0.0.1:1/?x=1"] {
        refused(&|c| c.workers = vec![url.to_string()], &format!("worker URL `{url}`"));
    }
}

#[test]
fn serve_says_listening_only_once_it_can_serve() {
    let root = env!("CARGO_MANIFEST_DIR");
    let shipped = format!("{root}/checkpoints/default");
    for (args, expected) in [
        (vec!["--checkpoint", "/nonexistent/checkpoint"], "/nonexistent/checkpoint"),
        (vec!["--checkpoint", &shipped, "--max-queue", "18446744073709551615"], "--max-queue"),
        (vec!["--checkpoint", &shipped, "--worker", "ftp://127.0.0.1:21"], "worker URL"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rlsched"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config", &format!("{root}/train.toml")])
            .args(&args)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{args:?}: {stdout}");
        assert!(!stdout.contains("listening"), "{args:?} said listening: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_worker_drains_on_sigterm() {
    let (mut child, url) = helpers::spawn_worker("127.0.0.1:0", &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ready = runtime.block_on(async { reqwest::get(format!("{url}/v2/health/ready")).await.is_ok_and(|r| r.status().is_success()) });
    assert!(ready, "the worker printed its address but does not answer");
    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "the worker exited with {exit} on SIGTERM");
}

/// The digits CNN's plans, with the index of its offload and of a local plan: what the demand
/// tests feed measurements of.
fn digits_plans() -> (Vec<rlsched_env::candidates::Candidate>, usize, usize) {
    let env = helpers::env(&[DIGITS]);
    let scenario = rlsched_env::Scenario::load(&env, &env.validation_traces).unwrap();
    let candidates = scenario.workloads[0].candidates.clone();
    let offload = candidates.iter().position(|c| c.uses_worker() && c.cut == 0).expect("an offload plan");
    let local = candidates.iter().position(|c| !c.uses_worker()).expect("a local plan");
    (candidates, offload, local)
}

#[test]
fn demand_is_measured_per_input_and_a_shunned_plan_is_tried_again() {
    use rlsched::serve::demand::{Demand, DemandSettings};
    use rlsched_env::obs::Prediction;
    use rlsched_executor::plan::Breakdown;
    let (candidates, offload, local) = digits_plans();
    let candidates = &candidates;
    let predicted = Prediction { local_ms: 1.0, transfer_ms: 2.0, queue_ms: 0.0, remote_ms: 1.0 };
    let settings = DemandSettings { alpha: 0.3, min: 0.01, max: 100.0, decay: 0.01 };
    let mut demand = Demand::new(settings, true);

    // a batch of 32 takes 32 times one input's time: no correction at all
    let batch = Breakdown { upload_ms: 48.0, download_ms: 16.0, remote_compute_ms: 32.0, ..Breakdown::default() };
    demand.observe(0, offload, &candidates[offload], &predicted, &batch, 32);
    let [_, transfer, remote] = demand.factors(0, offload);
    assert!((transfer - 1.0).abs() < 1e-9 && (remote - 1.0).abs() < 1e-9, "a batch moved the factors to {transfer}, {remote}");

    // single requests ten times slower than predicted: the plan is corrected ...
    let slow = Breakdown { upload_ms: 15.0, download_ms: 5.0, remote_compute_ms: 10.0, ..Breakdown::default() };
    for _ in 0..20 {
        demand.observe(0, offload, &candidates[offload], &predicted, &slow, 1);
    }
    let shunned = demand.factors(0, offload)[1];
    assert!(shunned > 5.0, "{shunned}");
    // ... and while only other plans run, its correction fades, so it is tried again
    let quick = Breakdown { local_ms: 1.0, ..Breakdown::default() };
    for _ in 0..100 {
        demand.observe(0, local, &candidates[local], &predicted, &quick, 1);
    }
    let faded = demand.factors(0, offload)[1];
    let expected = 1.0 + (shunned - 1.0) * 0.99f64.powi(100);
    assert!((faded - expected).abs() < 1e-9, "{faded} vs {expected}");
}

/// Without `--online` the worker's time is left as the profile says, and the device's is
/// measured: one plan's local stages running faster than predicted correct every plan of that
/// model (the contention that slowed them less slows the others' alike), and no other model's.
#[test]
fn the_device_s_time_is_corrected_for_every_plan_without_online() {
    use rlsched::serve::demand::{Demand, DemandSettings};
    use rlsched_env::obs::Prediction;
    use rlsched_executor::plan::Breakdown;
    let (candidates, offload, local) = digits_plans();
    let candidates = &candidates;
    let predicted = Prediction { local_ms: 10.0, transfer_ms: 2.0, queue_ms: 0.0, remote_ms: 1.0 };
    let mut demand = Demand::new(DemandSettings::default(), false);

    let slow_worker = Breakdown { upload_ms: 20.0, remote_compute_ms: 10.0, ..Breakdown::default() };
    assert!(!demand.observe(0, offload, &candidates[offload], &predicted, &slow_worker, 1), "a worker's time moved a factor without --online");
    assert_eq!(demand.factors(0, offload), [1.0; 3]);

    // the local plan ran in 5 ms, 2 ms of it waiting for the device: 3 of 10 predicted, which
    // the first measurement says in full
    let quick = Breakdown { local_ms: 5.0, device_wait_ms: 2.0, ..Breakdown::default() };
    assert!(demand.observe(0, local, &candidates[local], &predicted, &quick, 1));
    let [device, transfer, remote] = demand.factors(0, offload);
    assert!((device - 0.3).abs() < 1e-9, "the offload's device factor is {device}, not the local plan's 0.3");
    // later ones are averaged in
    let slower = Breakdown { local_ms: 13.0, device_wait_ms: 2.0, ..Breakdown::default() };
    assert!(demand.observe(0, local, &candidates[local], &predicted, &slower, 1));
    let device = demand.factors(0, local)[0];
    assert!((device - (0.7 * 0.3 + 0.3 * 1.1)).abs() < 1e-9, "{device}");
    assert_eq!((transfer, remote), (1.0, 1.0));
    assert_eq!(demand.factors(1, local), [1.0; 3], "another model's plans moved");

    // a fallback ran the rest of the model here: not the plan's local stages
    let fell_back = Breakdown { local_ms: 50.0, fallback: Some("timeout".into()), ..Breakdown::default() };
    assert!(!demand.observe(0, local, &candidates[local], &predicted, &fell_back, 1));
    assert!((demand.factors(0, offload)[0] - device).abs() < 1e-12);

    // while only offloads run, nothing measures the device: its factor drifts back towards 1
    assert!(demand.observe(0, offload, &candidates[offload], &predicted, &slow_worker, 1));
    let drifted = demand.factors(0, local)[0];
    let decay = DemandSettings::default().decay;
    assert!((drifted - (device + decay * (1.0 - device))).abs() < 1e-12, "{drifted} from {device}");
}

/// Whatever body a client sends, binary or JSON, `serve` answers it with a status and stays up.
#[test]
fn any_infer_body_gets_an_answer() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let server = runtime.block_on(helpers::start(helpers::config(helpers::env(&[DIGITS]))));
    let client = reqwest::Client::new();
    let dims = prop::collection::vec(prop_oneof![-2i64..10, Just(8), Just(1 << 40)], 0..5);
    let value = prop_oneof![any::<f64>().prop_map(|x| json!(x)), (0u64..300).prop_map(|x| json!(x)), Just(json!("NaN")), Just(json!(null)), Just(json!([[1, 2], 3]))];
    let json_body = (dims, prop::sample::select(vec!["FP32", "UINT8", "INT64", "BYTES"]), prop::collection::vec(value, 0..80), any::<bool>()).prop_map(
        |(shape, datatype, data, binary_out)| {
            serde_json::to_vec(&json!({
                "inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}],
                "parameters": {"binary_data_output": binary_out, "slo_ms": 40.0},
            }))
            .unwrap()
        },
    );
    let bodies = prop_oneof![prop::collection::vec(any::<u8>(), 0..4096).prop_map(|b| (b, None)), json_body.prop_map(|b| (b, None)), (prop::collection::vec(any::<u8>(), 0..2048), 0usize..2100).prop_map(|(b, n)| (b, Some(n)))];
    let mut runner = TestRunner::new(Config { cases: 96, ..Config::default() });
    runner
        .run(&bodies, |(body, header)| {
            let status = runtime.block_on(async {
                let mut request = client.post(format!("{}/v2/models/digits-cnn/infer", server.url)).body(body);
                if let Some(n) = header {
                    request = request.header("inference-header-content-length", n);
                }
                request.send().await.map(|r| r.status().as_u16())
            });
            let status = status.map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            prop_assert!([200, 400, 404, 413, 503].contains(&status), "status {}", status);
            Ok(())
        })
        .unwrap();
    let (status, reply) = runtime.block_on(infer(&client, &server.url, digits_body(json!({}))));
    assert_eq!(status, 200, "{reply}");
    runtime.block_on(server.stop());
}
