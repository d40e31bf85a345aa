//! Chains of real workers on 127.0.0.1:0 (device → edge → cloud, and one hop more): every chain
//! answers what local execution does, each hop's breakdown comes back and adds up, a next hop
//! that is gone, hangs or lies is abandoned and the hop before it finishes the stages, and a
//! request can only name the peers a worker was given, never an address.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use rlsched_executor::kserve::chain::{Hop, HopReport};
use rlsched_executor::kserve::worker::WorkerConfig;
use rlsched_executor::model::activation::WireData;
use rlsched_executor::plan::{Breakdown, Plan, PlanExecutor};
use rlsched_executor::{DeviceChoice, WireTensor, Workload};
use serde_json::json;

mod common;
use common::{client, post as post_json, start_worker, TestWorker};

fn assert_close(a: &WireTensor, b: &WireTensor, context: &str) {
    assert_eq!(a.shape, b.shape, "{context}");
    let (WireData::F32(x), WireData::F32(y)) = (&a.data, &b.data) else {
        panic!("{context}: expected FP32 outputs");
    };
    let scale = x.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let err = x.iter().zip(y).fold(0.0f32, |m, (p, q)| m.max((p - q).abs())) / scale;
    assert!(err < 1e-4, "{context}: relative error {err}");
}

/// A worker whose next hops are `next` (name, address).
async fn worker_with_next(next: &[(&str, &TestWorker)], timeout: Duration) -> TestWorker {
    let next = next.iter().map(|(name, w)| (name.to_string(), client(w.addr))).collect();
    start_worker(WorkerConfig { next, next_timeout: timeout, ..WorkerConfig::default() }).await
}

fn chain(device_end: usize, hops: &[(&str, usize)]) -> Plan {
    Plan::Chain {
        variant: "fp32".into(),
        device_end,
        worker: 0,
        hops: hops.iter().map(|(peer, start)| Hop { peer: peer.to_string(), start: *start }).collect(),
        int8: false,
    }
}

/// Every hop's times are finite and not negative, its stages are where the route put them, and
/// each hop waited downstream at least as long as the next hop's whole part took.
fn assert_consistent(b: &Breakdown, ranges: &[(usize, usize)], plan: &Plan) {
    assert!(b.fallback.is_none(), "{plan:?} fell back on the device: {:?}", b.fallback);
    let got: Vec<(usize, usize)> = b.hops.iter().map(|h| (h.start_stage, h.end_stage)).collect();
    assert_eq!(got, ranges, "{plan:?}: {b:?}");
    for hop in &b.hops {
        assert!(hop.fallback.is_none(), "{plan:?}: {hop:?}");
        let relay = hop.start_stage == hop.end_stage;
        assert_eq!(hop.compute_ms > 0.0, !relay, "{plan:?}: {hop:?}");
        assert!(hop.bytes_up > 0 && hop.bytes_down > 0, "{plan:?}: {hop:?}");
        assert_eq!(hop.queue_length, Some(0), "{plan:?}: {hop:?}");
    }
    for pair in b.hops.windows(2) {
        let next = &pair[1];
        let downstream = next.upload_ms + next.queue_ms + next.compute_ms + next.forward_ms + next.download_ms;
        assert!(pair[0].forward_ms + 1e-6 >= downstream, "{plan:?}: {} waited {} ms for a hop that took {downstream} ms", pair[0].node, pair[0].forward_ms);
    }
    assert_eq!(b.hops.last().unwrap().forward_ms, 0.0, "{plan:?}: the last hop forwards nothing");
    let first = &b.hops[0];
    assert_eq!((b.upload_ms, b.download_ms, b.remote_queue_ms), (first.upload_ms, first.download_ms, first.queue_ms));
    assert_eq!(b.remote_compute_ms, first.compute_ms + first.forward_ms);
    assert!(b.total_ms >= b.local_ms + first.forward_ms, "{plan:?}: {b:?}");
}

/// Every three-node chain of digits-cnn (device 0..d, edge d..h, cloud h..; h = d makes the
/// edge a relay), each answering as local execution does with both hops reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_three_node_chain_matches_local_and_reports_both_hops() {
    let cloud = start_worker(WorkerConfig::default()).await;
    let edge = worker_with_next(&[("cloud", &cloud)], Duration::from_secs(60)).await;
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(edge.addr)]).unwrap();
    let workload = Workload::DigitsCnn;
    let input = workload.example_input(3);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let stages = executor.network(workload, "fp32").unwrap().stage_count();
    let mut chains = 0;
    for device_end in 0..stages - 1 {
        for cloud_start in device_end..stages {
            let plan = chain(device_end, &[("cloud", cloud_start)]);
            let run = executor.execute(workload, &plan, input.clone(), None).await.unwrap();
            assert_consistent(&run.breakdown, &[(device_end, cloud_start), (cloud_start, stages)], &plan);
            assert_eq!(run.breakdown.hops[1].node, "cloud");
            assert_eq!(run.breakdown.local_ms > 0.0, device_end > 0, "{plan:?}");
            assert_close(&local.output, &run.output, &format!("{plan:?}"));
            chains += 1;
        }
    }
    assert_eq!(chains, stages * (stages + 1) / 2 - 1);
}

/// Four nodes: the edge forwards to the cloud, which forwards to a third worker; MobileNetV2
/// with an int8 intermediate off the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_node_chain_reports_every_hop() {
    let far = start_worker(WorkerConfig::default()).await;
    let cloud = worker_with_next(&[("far", &far)], Duration::from_secs(60)).await;
    let edge = worker_with_next(&[("cloud", &cloud)], Duration::from_secs(60)).await;
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(edge.addr)]).unwrap();
    let workload = Workload::MobileNetV2;
    let input = workload.example_input(8);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let stages = executor.network(workload, "fp32").unwrap().stage_count();
    let plan = chain(3, &[("cloud", 7), ("far", 12)]);
    let run = executor.execute(workload, &plan, input.clone(), None).await.unwrap();
    assert_consistent(&run.breakdown, &[(3, 7), (7, 12), (12, stages)], &plan);
    let nodes: Vec<&str> = run.breakdown.hops.iter().map(|h| h.node.as_str()).collect();
    assert_eq!(nodes, ["worker 0", "cloud", "far"]);
    assert_close(&local.output, &run.output, "four nodes");
    let Plan::Chain { variant, device_end, worker, hops, .. } = plan else { unreachable!() };
    let int8 = Plan::Chain { variant, device_end, worker, hops, int8: true };
    let run = executor.execute(workload, &int8, input, None).await.unwrap();
    let WireData::F32(answer) = &run.output.data else { panic!("f32 logits") };
    let WireData::F32(reference) = &local.output.data else { panic!("f32 logits") };
    let dot: f32 = reference.iter().zip(answer).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(dot / (norm(reference) * norm(answer)) > 0.99, "int8 chain drifted");
    assert_eq!(run.breakdown.hops.len(), 3, "{:?}", run.breakdown);
}

/// The fallback the edge took: its one hop report says why, and that it ran to the end.
fn edge_fell_back(b: &Breakdown, stages: usize) -> String {
    assert!(b.fallback.is_none(), "the device fell back, not the edge: {:?}", b.fallback);
    let [edge]: &[HopReport; 1] = b.hops.as_slice().try_into().unwrap_or_else(|_| panic!("one hop expected: {b:?}"));
    assert_eq!(edge.end_stage, stages, "{edge:?}");
    edge.fallback.clone().expect("the edge says it fell back")
}

/// A stopped cloud: the edge finishes the stages and the answer is still right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_second_hop_falls_back_to_the_edge() {
    let cloud = start_worker(WorkerConfig::default()).await;
    let cloud_addr = cloud.addr;
    let edge = worker_with_next(&[("cloud", &cloud)], Duration::from_secs(60)).await;
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(edge.addr)]).unwrap();
    let workload = Workload::DigitsCnn;
    let input = workload.example_input(5);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let stages = executor.network(workload, "fp32").unwrap().stage_count();
    drop(cloud);
    // wait for the event (the port refuses), not for a time
    let probe = client(cloud_addr);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while probe.probe().await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "the cloud worker never stopped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let run = executor.execute(workload, &chain(1, &[("cloud", 2)]), input, None).await.unwrap();
    let reason = edge_fell_back(&run.breakdown, stages);
    assert!(reason.contains("next hop `cloud` abandoned"), "{reason}");
    assert_close(&local.output, &run.output, "fallback on the edge");
}

/// An address that accepts connections and never answers: the edge gives up at its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_second_hop_is_abandoned_at_the_timeout() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_addr = hung.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    let next = vec![("cloud".to_string(), client(hung_addr))];
    let edge = start_worker(WorkerConfig { next, next_timeout: Duration::from_millis(300), ..WorkerConfig::default() }).await;
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(edge.addr)]).unwrap();
    let workload = Workload::DigitsCnn;
    let input = workload.example_input(6);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let stages = executor.network(workload, "fp32").unwrap().stage_count();
    let run = executor.execute(workload, &chain(0, &[("cloud", 2)]), input, None).await.unwrap();
    let reason = edge_fell_back(&run.breakdown, stages);
    assert!(reason.contains("no answer within 300 ms"), "{reason}");
    assert!(run.breakdown.hops[0].forward_ms >= 300.0, "{:?}", run.breakdown.hops[0]);
    assert!(accepted.load(Ordering::SeqCst) >= 1, "the edge never tried the hung hop");
    assert_close(&local.output, &run.output, "fallback after a hang");
}

/// A next hop answering a tensor the model does not give, or impossible hop reports.
async fn lying_worker(body: serde_json::Value) -> String {
    let body = serde_json::to_vec(&body).unwrap();
    let app = Router::new().route("/v2/health/ready", get(|| async { StatusCode::OK })).route(
        "/v2/models/{model}/infer",
        post(move || {
            let body = body.clone();
            async move { Response::builder().status(StatusCode::OK).header(header::CONTENT_TYPE, "application/json").body(axum::body::Body::from(body)).unwrap() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_second_hop_is_not_believed() {
    let workload = Workload::DigitsCnn;
    let logits = json!(vec![0.0; 10]);
    let output = |shape: serde_json::Value, data: serde_json::Value| json!([{"name": "output", "shape": shape, "datatype": "FP32", "data": data}]);
    let cases = [
        (json!({"model_name": "digits-cnn", "outputs": output(json!([1, 3]), json!([0.0, 0.0, 0.0]))}), "shape [1, 3]"),
        (
            json!({"model_name": "digits-cnn", "parameters": {"hops": "[{\"node\":\"x\",\"start_stage\":3,\"end_stage\":4,\"upload_ms\":-5,\"queue_ms\":0,\"compute_ms\":0,\"forward_ms\":0,\"download_ms\":0,\"bytes_up\":0,\"bytes_down\":0,\"queue_length\":null,\"fallback\":null}]"}, "outputs": output(json!([1, 10]), logits.clone())}),
            "impossible record",
        ),
        (json!({"model_name": "digits-cnn", "parameters": {"end_stage": 1}, "outputs": output(json!([1, 10]), logits)}), "impossible route"),
    ];
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![]).unwrap();
    let input = workload.example_input(7);
    let local = executor.execute(workload, &Plan::Local { variant: "fp32".into() }, input.clone(), None).await.unwrap();
    let stages = executor.network(workload, "fp32").unwrap().stage_count();
    for (body, needle) in cases {
        let url = lying_worker(body).await;
        let next = vec![("cloud".to_string(), rlsched_executor::kserve::client::WorkerClient::new(&url, None, Duration::from_secs(60)).unwrap())];
        let edge = start_worker(WorkerConfig { next, ..WorkerConfig::default() }).await;
        let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client(edge.addr)]).unwrap();
        let run = executor.execute(workload, &chain(1, &[("cloud", 2)]), input.clone(), None).await.unwrap();
        let reason = edge_fell_back(&run.breakdown, stages);
        assert!(reason.contains(needle), "{needle}: {reason}");
        assert_close(&local.output, &run.output, needle);
    }
}

/// A route names peers the worker was given, never an address: anything else is a 400 and
/// the worker contacts nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_name_given_peers_never_addresses() {
    let cloud = start_worker(WorkerConfig::default()).await;
    let edge = worker_with_next(&[("cloud", &cloud)], Duration::from_secs(60)).await;
    let alone = start_worker(WorkerConfig::default()).await;
    let body = |route: &str| {
        serde_json::to_vec(&json!({
            "parameters": {"next_hops": route},
            "inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": vec![0.0; 64]}]
        }))
        .unwrap()
    };
    let cloud_url = format!("http://{}", cloud.addr);
    for (worker, route, needle) in [
        (&edge, format!("{cloud_url}@2"), "may hold only"),
        (&edge, format!("{}@2", cloud.addr), "may hold only"),
        (&edge, "elsewhere@2".to_string(), "no next hop named `elsewhere` (it has: cloud)"),
        (&alone, "cloud@2".to_string(), "no next hop named `cloud` (it has: none)"),
        (&edge, "cloud@1,far@0".to_string(), "at stage 1 or later"),
    ] {
        let (status, reply) = post_json(worker.addr, "digits-cnn", body(&route)).await;
        assert_eq!(status, 400, "{route}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains(needle), "{route}: {reply}");
    }
    let stats = client(cloud.addr).stats().await.unwrap();
    assert_eq!(stats.received, 0, "a refused route reached the cloud: {stats:?}");
    let (status, reply) = post_json(edge.addr, "digits-cnn", body("cloud@2")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(client(cloud.addr).stats().await.unwrap().received, 1);
    let hops: Vec<HopReport> = serde_json::from_str(reply["parameters"]["hops"].as_str().unwrap()).unwrap();
    assert_eq!(hops.len(), 1);
    assert_eq!((hops[0].node.as_str(), hops[0].start_stage), ("cloud", 2));
}

/// Bad `--next` tables are refused when the worker starts.
#[test]
fn bad_next_tables_are_refused() {
    let any = || rlsched_executor::kserve::client::WorkerClient::new("http://127.0.0.1:1", None, Duration::from_secs(1)).unwrap();
    for (next, timeout, needle) in [
        (vec![("a b".to_string(), any())], Duration::from_secs(1), "may hold only"),
        (vec![("a".to_string(), any()), ("a".to_string(), any())], Duration::from_secs(1), "twice"),
        (vec![("a".to_string(), any())], Duration::ZERO, "--next-timeout-ms"),
    ] {
        let config = WorkerConfig { next, next_timeout: timeout, ..WorkerConfig::default() };
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
}
