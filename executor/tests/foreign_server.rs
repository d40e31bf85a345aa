//! A server that is not an rlsched worker, at the edges KServe's own server does not show
//! (`tests/serve_kserve.rs` runs that one): one that lists the binary tensor extension yet
//! refuses binary bodies, and one that reports no timing, whose replies the executor splits
//! into the link's share and the server's, and whose link the padded probe measures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::model::activation::WireData;
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::{DeviceChoice, WireTensor, Workload};
use serde_json::{json, Value};

#[derive(Default)]
struct Seen {
    binary: AtomicUsize,
    json: AtomicUsize,
}

/// A digits-cnn server that lists `binary_tensor_data` but answers a binary body with 415,
/// JSON after `compute` (and no timing of its own).
async fn server(seen: Arc<Seen>, compute: Duration) -> String {
    let app = Router::new()
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
        .route("/v2", get(|| async { Json(json!({"name": "elsewhere", "extensions": ["binary_tensor_data"]})) }))
        .route("/v2/models/digits-cnn/ready", get(|| async { StatusCode::OK }))
        .route(
            "/v2/models/{model}/infer",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    if headers.contains_key("inference-header-content-length") {
                        seen.binary.fetch_add(1, Ordering::SeqCst);
                        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(json!({"error": "binary tensors are not taken here"})));
                    }
                    seen.json.fetch_add(1, Ordering::SeqCst);
                    let request: Value = serde_json::from_slice(&body).unwrap();
                    let batch = request["inputs"][0]["shape"][0].as_u64().unwrap();
                    tokio::time::sleep(compute).await;
                    let data = vec![0.5f32; batch as usize * 10];
                    (StatusCode::OK, Json(json!({"model_name": "digits-cnn", "outputs": [{"name": "output", "shape": [batch, 10], "datatype": "FP32", "data": data}]})))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

fn image() -> WireTensor {
    WireTensor::new(vec![1, 1, 8, 8], WireData::F32((0..64).map(|i| (i % 9) as f32 / 8.0).collect())).unwrap()
}

#[tokio::test]
async fn binary_refused_with_a_4xx_is_sent_as_json_from_then_on() {
    let seen = Arc::new(Seen::default());
    let url = server(seen.clone(), Duration::ZERO).await;
    let client = WorkerClient::new(&url, None, Duration::from_secs(30)).unwrap();
    let info = client.discover().await.unwrap();
    assert!(info.binary && !info.stages, "{info:?}");
    for _ in 0..3 {
        let reply = client.infer("digits-cnn", "fp32", 0, &image(), None).await.unwrap();
        assert_eq!(reply.output.shape, vec![1, 10]);
        assert!(!reply.server_timed);
    }
    assert_eq!(seen.binary.load(Ordering::SeqCst), 1, "binary was tried again after the server refused it");
    assert_eq!(seen.json.load(Ordering::SeqCst), 3);
    // whole models only: a stage range is refused before anything is sent
    let error = client.infer("digits-cnn", "fp32", 1, &image(), None).await.unwrap_err().to_string();
    assert!(error.contains("not an rlsched worker"), "{error}");
    assert_eq!(seen.json.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_server_without_timing_has_its_time_split_from_the_link_and_its_link_probed() {
    let seen = Arc::new(Seen::default());
    let url = server(seen.clone(), Duration::from_millis(60)).await;
    let client = WorkerClient::new(&url, None, Duration::from_secs(30)).unwrap();
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client]).unwrap();
    executor.discover(0).await.unwrap();
    executor.probe(0).await.unwrap();
    // a timeout no loaded machine reaches: a probe given up would leave a censored sample
    executor.probe_upload(0, 256 << 10, Duration::from_secs(30)).await.unwrap();
    // padded, plain, padded: the server's 60 ms cancel out of the pad's time
    assert_eq!(seen.json.load(Ordering::SeqCst), 3);
    let link = executor.link_estimate(0);
    let sample = link.samples().last().copied().expect("the probe made a goodput sample");
    assert_eq!(sample.bytes, 256 << 10);
    assert!(sample.wire_ms < 50.0, "the server's compute was counted as the link's: {sample:?}");

    let plan = Plan::Offload { variant: "fp32".into(), worker: 0 };
    let run = executor.execute(Workload::DigitsCnn, &plan, image(), None).await.unwrap();
    let b = &run.breakdown;
    assert!(b.fallback.is_none(), "{b:?}");
    assert!(b.remote_compute_ms >= 55.0, "the server's 60 ms are not its own: {b:?}");
    assert!(b.upload_ms < 50.0, "the server's time was counted as the upload: {b:?}");
    assert_eq!(b.worker_queue_length, None);

    // a split is not something this server can run: it falls back, saying why
    let split = Plan::Split { variant: "fp32".into(), cut: 1, worker: 0, int8: false };
    let run = executor.execute(Workload::DigitsCnn, &split, image(), None).await.unwrap();
    assert!(run.breakdown.fallback.as_deref().is_some_and(|f| f.contains("not an rlsched worker")), "{:?}", run.breakdown);
}
