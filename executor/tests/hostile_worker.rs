//! A worker's reply is input like any other. A worker that lies about the output (wrong shape,
//! wrong datatype, a tensor far larger than the model gives), sends a reply past the client's
//! size limit, or sends garbage makes the plan fall back to local, and the answer is the
//! local one: never the worker's bad tensor, never a panic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use proptest::prelude::*;
use rlsched_executor::kserve::client::{ClientLimits, WorkerClient};
use rlsched_executor::model::activation::WireData;
use rlsched_executor::plan::{Plan, PlanExecutor};
use rlsched_executor::{DeviceChoice, NetworkCache, WireTensor, Workload};
use serde_json::json;

/// What the fake worker answers to every infer: status, headers, body.
#[derive(Clone)]
struct Reply {
    header_length: Option<usize>,
    body: Vec<u8>,
    chunked: bool,
}

async fn fake_worker(reply: Arc<Mutex<Reply>>) -> String {
    let app = Router::new().route("/v2/health/ready", get(|| async { StatusCode::OK })).route(
        "/v2/models/{model}/infer",
        post(move || {
            let reply = reply.lock().unwrap().clone();
            async move {
                let mut response = Response::builder().status(StatusCode::OK).header(header::CONTENT_TYPE, "application/octet-stream");
                if let Some(n) = reply.header_length {
                    response = response.header("inference-header-content-length", n);
                }
                let body = if reply.chunked {
                    // a stream has no declared length: the client must stop reading by itself
                    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = reply.body.chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
                    Body::from_stream(futures_util::stream::iter(chunks))
                } else {
                    Body::from(reply.body)
                };
                response.body(body).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    url
}

fn json_reply(shape: &[usize], datatype: &str, data: serde_json::Value) -> Reply {
    let body = serde_json::to_vec(&json!({
        "model_name": "digits-cnn",
        "outputs": [{"name": "output", "shape": shape, "datatype": datatype, "data": data}],
    }))
    .unwrap();
    Reply { header_length: None, body, chunked: false }
}

fn digits_image() -> WireTensor {
    WireTensor::new(vec![1, 1, 8, 8], WireData::F32((0..64).map(|i| (i % 9) as f32 / 8.0).collect())).unwrap()
}

async fn offload_through(url: &str, limits: ClientLimits) -> rlsched_executor::plan::Execution {
    let client = WorkerClient::new(url, None, Duration::from_secs(60)).unwrap().with_limits(limits);
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client]).unwrap();
    executor.execute(Workload::DigitsCnn, &Plan::Offload { variant: "fp32".into(), worker: 0 }, digits_image(), None).await.unwrap()
}

fn local_answer() -> WireTensor {
    let cache = NetworkCache::new(DeviceChoice::Flex.device().unwrap());
    let network = cache.get(Workload::DigitsCnn, "fp32").unwrap();
    network.run_wire(0, network.stage_count(), &digits_image(), cache.device()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_workers_make_the_plan_fall_back_to_the_local_answer() {
    let local = local_answer();
    assert_eq!(local.shape, vec![1, 10]);
    let reply = Arc::new(Mutex::new(json_reply(&[1, 10], "FP32", json!(vec![0.0; 10]))));
    let url = fake_worker(reply.clone()).await;

    // the honest reply is taken as it is: the fake worker's zeros, no fallback
    let honest = offload_through(&url, ClientLimits::default()).await;
    assert!(honest.breakdown.fallback.is_none(), "{:?}", honest.breakdown.fallback);
    assert_eq!(honest.output.data, WireData::F32(vec![0.0; 10]));

    let big = 4096 * 4096;
    let lies = [
        ("wrong shape", json_reply(&[1, 3], "FP32", json!([0.0, 1.0, 2.0]))),
        ("wrong datatype", json_reply(&[1, 10], "INT64", json!(vec![7; 10]))),
        ("a 4096x4096 tensor", {
            let mut body = serde_json::to_vec(&json!({
                "model_name": "digits-cnn",
                "outputs": [{"name": "output", "shape": [4096, 4096], "datatype": "FP32", "parameters": {"binary_data_size": big * 4}}],
            }))
            .unwrap();
            let header = body.len();
            body.resize(header + big * 4, 0);
            Reply { header_length: Some(header), body, chunked: false }
        }),
        ("garbage", Reply { header_length: None, body: b"\x00\xffnot json at all".to_vec(), chunked: false }),
    ];
    for (what, lie) in lies {
        *reply.lock().unwrap() = lie;
        let run = offload_through(&url, ClientLimits::default()).await;
        let reason = run.breakdown.fallback.clone().unwrap_or_else(|| panic!("{what}: the reply was passed on"));
        assert_eq!(run.output, local, "{what}: the answer is the local one ({reason})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_past_the_size_limit_is_abandoned() {
    let local = local_answer();
    let limits = ClientLimits { max_reply_bytes: 1 << 20, ..ClientLimits::default() };
    let mut big = json_reply(&[1, 10], "FP32", json!(vec![0.0; 10]));
    // valid JSON padded with whitespace to 2 MiB: only its size is wrong
    big.body.resize(2 << 20, b' ');
    for chunked in [false, true] {
        let reply = Arc::new(Mutex::new(Reply { chunked, ..big.clone() }));
        let url = fake_worker(reply).await;
        let run = offload_through(&url, limits).await;
        let reason = run.breakdown.fallback.clone().expect("an oversize reply is not read whole");
        assert!(reason.contains("limit of 1048576 bytes"), "chunked {chunked}: {reason}");
        assert_eq!(run.output, local);
    }
}

#[test]
fn concurrent_first_requests_build_a_network_once() {
    let cache = Arc::new(NetworkCache::new(DeviceChoice::Flex.device().unwrap()));
    let start = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (cache, start) = (cache.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                cache.get(Workload::ResNet18, "fp32").unwrap()
            })
        })
        .collect();
    let networks: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(cache.builds(), 1, "eight concurrent first requests built resnet18 {} times", cache.builds());
    assert!(networks.iter().all(|n| Arc::ptr_eq(n, &networks[0])));
    // an unknown variant builds nothing that stays: requests cannot grow the cache
    assert!(cache.get(Workload::ResNet18, "no-such-variant").is_err());
    assert_eq!(cache.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever a worker sends back, the plan runs to an answer of the model's own shape.
    #[test]
    fn any_reply_gives_an_answer_of_the_right_shape(
        body in prop::collection::vec(any::<u8>(), 0..2048),
        header in prop::option::of(0usize..2100),
        shape in prop::collection::vec(0usize..64, 0..4),
        datatype in prop::sample::select(vec!["FP32", "INT64", "UINT8", "BOOL", ""]),
        json_values in prop::collection::vec(-1e3f64..1e3, 0..64),
        as_json in any::<bool>(),
    ) {
        let reply = if as_json {
            json_reply(&shape, datatype, json!(json_values))
        } else {
            Reply { header_length: header, body, chunked: false }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let run = runtime.block_on(async {
            let url = fake_worker(Arc::new(Mutex::new(reply))).await;
            offload_through(&url, ClientLimits::default()).await
        });
        prop_assert_eq!(&run.output.shape, &vec![1, 10]);
        prop_assert_eq!(run.output.datatype(), rlsched_executor::DataType::Fp32);
    }
}
