//! Bad requests get a 4xx whose message names the field, and the worker keeps serving:
//! overflowing shapes, malformed fields, broken bodies, clients that hang up mid-request, and
//! hostile replies on the client side.

use std::net::SocketAddr;
use std::time::Duration;

use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::kserve::http::BodyLimits;
use rlsched_executor::kserve::protocol::{self, InferRequest, WorkerStats};
use rlsched_executor::kserve::worker::WorkerConfig;
use rlsched_executor::model::activation::WireData;
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::WireTensor;

mod common;
use common::{client, post, start_worker};

fn digits_request(shape: serde_json::Value, data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": data}]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_and_the_worker_keeps_serving() {
    let server = start_worker(WorkerConfig { body: BodyLimits { max_bytes: 1 << 20, ..Default::default() }, ..Default::default() }).await;
    let ok = digits_request(serde_json::json!([1, 1, 8, 8]), serde_json::json!(vec![0.25; 64]));
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("malformed", "digits-cnn", b"{\"inputs\": [".to_vec(), 400, "malformed inference request"),
        ("wrong shape", "digits-cnn", digits_request(serde_json::json!([1, 1, 4, 16]), serde_json::json!(vec![0.25; 64])), 400, "[N, 1, 8, 8]"),
        ("short data", "digits-cnn", digits_request(serde_json::json!([1, 1, 8, 8]), serde_json::json!(vec![0.25; 10])), 400, "needs 64"),
        // JSON has no NaN literal; clients send it as a string or as binary
        ("nan", "digits-cnn", digits_request(serde_json::json!([1, 1, 8, 8]), serde_json::json!([vec!["NaN"; 64]])), 400, "non-finite"),
        ("oversize", "digits-cnn", vec![b' '; 2 << 20], 413, "exceeds the worker's limit"),
        ("unknown model", "alexnet", ok.clone(), 404, "unknown workload"),
    ];
    for (name, model, body, status, needle) in cases {
        let (got, json) = post(server.addr, model, body).await;
        assert_eq!(got, status, "{name}: {json}");
        let message = json["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{name}: {message:?}");
        // and the next good request still works
        let (good, reply) = post(server.addr, "digits-cnn", ok.clone()).await;
        assert_eq!(good, 200, "after {name}: {reply}");
        assert_eq!(reply["outputs"][0]["shape"], serde_json::json!([1, 10]));
    }
    // a NaN inside binary tensor data is refused too
    let mut values = vec![0.5f32; 64];
    values[7] = f32::NAN;
    let tensor = WireTensor { shape: vec![1, 1, 8, 8], data: WireData::F32(values) };
    let (body, header) = rlsched_executor::kserve::protocol::encode_binary_request(Default::default(), &tensor, Default::default()).unwrap();
    let response = reqwest::Client::new()
        .post(format!("http://{}/v2/models/digits-cnn/infer", server.addr))
        .header("inference-header-content-length", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let json: serde_json::Value = response.json().await.unwrap();
    assert!(json["error"].as_str().unwrap().contains("non-finite"), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_metadata_endpoints() {
    let server = start_worker(WorkerConfig { token: Some("s3cret".into()), ..Default::default() }).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", server.addr);
    assert_eq!(http.get(url("/v2/health/ready")).send().await.unwrap().status().as_u16(), 401);
    let ready = http.get(url("/v2/health/ready")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let meta: serde_json::Value = http
        .get(url("/v2/models/bert-mini"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["inputs"][0]["datatype"], "INT64");
    assert_eq!(meta["inputs"][0]["shape"], serde_json::json!([-1, 128]));
    let with_token = WorkerClient::new(&url(""), Some("s3cret".into()), Duration::from_secs(30)).unwrap();
    assert!(with_token.probe().await.unwrap() >= 0.0);
    let without = client(server.addr);
    assert!(without.probe().await.is_err());
}

/// Posts `body` with an optional `Inference-Header-Content-Length` value (sent verbatim, so that
/// malformed ones can be tried).
async fn post_with_header(addr: SocketAddr, model: &str, body: Vec<u8>, header_length: Option<&str>) -> (u16, serde_json::Value) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/v2/models/{model}/infer"))
        .body(body);
    if let Some(value) = header_length {
        request = request.header("inference-header-content-length", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

/// A binary request: JSON header for one input `x` with these fields, then `tail`.
fn binary_request(shape: serde_json::Value, datatype: &str, binary_data_size: serde_json::Value, tail: &[u8]) -> (Vec<u8>, String) {
    let mut body = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "x", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": binary_data_size}}]
    }))
    .unwrap();
    let header = body.len().to_string();
    body.extend_from_slice(tail);
    (body, header)
}

async fn assert_still_serves(addr: SocketAddr, after: &str) {
    let ok = digits_request(serde_json::json!([1, 1, 8, 8]), serde_json::json!(vec![0.25; 64]));
    let (status, reply) = post(addr, "digits-cnn", ok).await;
    assert_eq!(status, 200, "after {after}: {reply}");
    assert_eq!(reply["outputs"][0]["shape"], serde_json::json!([1, 10]), "after {after}");
}

/// Shapes whose element or byte count overflows `usize` (once a panic that dropped the
/// connection), and ranks or sizes beyond the worker's limits, get a 400 naming input `x` and
/// its `shape`; the worker keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_and_oversized_shapes_are_refused() {
    let server = start_worker(WorkerConfig::default()).await;
    let huge = |bits: u32| serde_json::json!(1u64 << bits);
    let cases: Vec<(&str, serde_json::Value, &str, serde_json::Value, Vec<u8>)> = vec![
        ("INT64 [1, 2^61], 0 bytes", serde_json::json!([1, huge(61)]), "INT64", serde_json::json!(0), vec![]),
        ("FP32 [1, 2^62], 0 bytes", serde_json::json!([1, huge(62)]), "FP32", serde_json::json!(0), vec![]),
        ("product past 2^64", serde_json::json!([huge(40), huge(40), 0]), "FP32", serde_json::json!(0), vec![]),
        ("over the element cap", serde_json::json!([1, huge(29)]), "UINT8", serde_json::json!(8), vec![0; 8]),
        ("rank 9", serde_json::json!([1, 1, 1, 1, 1, 1, 1, 1, 1]), "FP32", serde_json::json!(4), vec![0; 4]),
    ];
    for (name, shape, datatype, size, tail) in cases {
        let (body, header) = binary_request(shape, datatype, size, &tail);
        let (status, reply) = post_with_header(server.addr, "digits-cnn", body, Some(&header)).await;
        assert_eq!(status, 400, "{name}: {reply}");
        let message = reply["error"].as_str().unwrap_or_default();
        assert!(message.contains("input `x`") && message.contains("`shape`"), "{name}: {message:?}");
        assert_still_serves(server.addr, name).await;
    }
    // the JSON path: a huge shape with a little data
    let body = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "x", "shape": [huge(62), 4], "datatype": "FP32", "data": [1.0, 2.0]}]
    }))
    .unwrap();
    let (status, reply) = post(server.addr, "digits-cnn", body).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("`shape`"), "{reply}");
    assert_still_serves(server.addr, "a huge JSON shape").await;
}

/// Every other malformed field found by probing: each gets a 4xx whose message names the
/// field, and the next good request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_fields_are_refused_by_name() {
    let server = start_worker(WorkerConfig { body: BodyLimits { max_bytes: 1 << 20, ..Default::default() }, ..Default::default() }).await;
    let json = |input: serde_json::Value, parameters: serde_json::Value| {
        serde_json::to_vec(&serde_json::json!({"parameters": parameters, "inputs": [input]})).unwrap()
    };
    let digits = |data: serde_json::Value| serde_json::json!({"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": data});
    let fill = |v: serde_json::Value| serde_json::json!(vec![v; 64]);
    let mut nan = vec![serde_json::json!(0.5); 64];
    nan[9] = serde_json::json!("NaN");
    let none = serde_json::json!({});
    let (both, both_header) = {
        let mut body = serde_json::to_vec(&serde_json::json!({"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32",
            "data": vec![0.5; 64], "parameters": {"binary_data_size": 256}}]})).unwrap();
        let header = body.len().to_string();
        body.extend_from_slice(&[0; 256]);
        (body, header)
    };
    let (trailing, trailing_header) = {
        let mut body = json(digits(fill(0.5.into())), none.clone());
        let header = body.len().to_string();
        body.extend_from_slice(&[0; 16]);
        (body, header)
    };
    let good = json(digits(fill(0.5.into())), none.clone());
    let good_len = good.len();
    // (name, body, Inference-Header-Content-Length, status, what the message must contain)
    type Case = (&'static str, Vec<u8>, Option<String>, u16, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        ("NaN in JSON data", json(digits(serde_json::json!(nan)), none.clone()), None, 400, vec!["input `x`", "`data`", "non-finite", "index 9"]),
        ("Infinity in JSON data", json(digits(fill("Infinity".into())), none.clone()), None, 400, vec!["input `x`", "non-finite"]),
        ("1e39 overflows f32", json(digits(fill(1e39.into())), none.clone()), None, 400, vec!["input `x`", "non-finite"]),
        ("a bool as data", json(digits(fill(true.into())), none.clone()), None, 400, vec!["input `x`", "`data`", "FP32"]),
        ("an object as data", json(digits(fill(serde_json::json!({"a": 1}))), none.clone()), None, 400, vec!["input `x`", "`data`"]),
        ("unknown datatype", json(serde_json::json!({"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP64", "data": vec![0.5; 64]}), none.clone()), None, 400, vec!["input `x`", "`datatype`", "FP64"]),
        ("wrong datatype for the stage", json(serde_json::json!({"name": "x", "shape": [1, 1, 8, 8], "datatype": "INT64", "data": vec![1; 64]}), none.clone()), None, 400, vec!["input `x`", "datatype", "expected FP32"]),
        ("INT64 data that is fractional", json(serde_json::json!({"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}), none.clone()), None, 400, vec!["input `x`", "`data`", "INT64"]),
        ("negative dimension", json(serde_json::json!({"name": "x", "shape": [1, -1, 8, 8], "datatype": "FP32", "data": vec![0.5; 64]}), none.clone()), None, 400, vec!["input `x`", "`shape`", "negative"]),
        ("fractional dimension", json(serde_json::json!({"name": "x", "shape": [1, 1.5, 8, 8], "datatype": "FP32", "data": vec![0.5; 64]}), none.clone()), None, 400, vec!["malformed inference request"]),
        ("start_stage out of range", json(digits(fill(0.5.into())), serde_json::json!({"start_stage": 99})), None, 400, vec!["`start_stage`", "99"]),
        ("start_stage beyond u64", json(digits(fill(0.5.into())), serde_json::json!({"start_stage": 1e30})), None, 400, vec!["`start_stage`"]),
        ("start_stage negative", json(digits(fill(0.5.into())), serde_json::json!({"start_stage": -1})), None, 400, vec!["`start_stage`", "non-negative integer"]),
        ("start_stage fractional", json(digits(fill(0.5.into())), serde_json::json!({"start_stage": 1.5})), None, 400, vec!["`start_stage`"]),
        ("start_stage a string", json(digits(fill(0.5.into())), serde_json::json!({"start_stage": "1"})), None, 400, vec!["`start_stage`"]),
        ("unknown variant", json(digits(fill(0.5.into())), serde_json::json!({"variant": "int4"})), None, 400, vec!["`variant`", "int4"]),
        ("binary_data_output not a boolean", json(digits(fill(0.5.into())), serde_json::json!({"binary_data_output": "true"})), None, 400, vec!["`binary_data_output`", "boolean"]),
        ("variant not a string", json(digits(fill(0.5.into())), serde_json::json!({"variant": 8})), None, 400, vec!["`variant`", "string"]),
        ("header not a number", good.clone(), Some("twelve".into()), 400, vec!["Inference-Header-Content-Length"]),
        ("header negative", good.clone(), Some("-5".into()), 400, vec!["Inference-Header-Content-Length"]),
        ("header past the body", good.clone(), Some((good_len + 1).to_string()), 400, vec!["Inference-Header-Content-Length", "only"]),
        ("header beyond u64", good.clone(), Some("99999999999999999999999".into()), 400, vec!["Inference-Header-Content-Length"]),
        ("both data and binary", both, Some(both_header), 400, vec!["input `x`", "both `data`"]),
        ("binary bytes nobody claims", trailing, Some(trailing_header), 400, vec!["input `x`", "16 binary bytes"]),
        ("oversize", vec![b' '; 2 << 20], None, 413, vec!["exceeds the worker's limit"]),
    ];
    for (name, body, header, status, needles) in cases {
        let (got, reply) = post_with_header(server.addr, "digits-cnn", body, header.as_deref()).await;
        assert_eq!(got, status, "{name}: {reply}");
        let message = reply["error"].as_str().unwrap_or_default();
        for needle in needles {
            assert!(message.contains(needle), "{name}: {message:?} lacks {needle:?}");
        }
        assert_still_serves(server.addr, name).await;
    }
    for (name, size) in [("a string", serde_json::json!("256")), ("negative", serde_json::json!(-256)), ("fractional", serde_json::json!(2.5))] {
        let (body, header) = binary_request(serde_json::json!([1, 1, 8, 8]), "FP32", size, &[0; 256]);
        let (status, reply) = post_with_header(server.addr, "digits-cnn", body, Some(&header)).await;
        assert_eq!(status, 400, "binary_data_size {name}: {reply}");
        assert!(reply["error"].as_str().unwrap().contains("`parameters.binary_data_size`"), "{reply}");
        assert_still_serves(server.addr, name).await;
    }
}

/// Waits until the worker's counters satisfy `done`, polling its stats endpoint. The deadline
/// is only there so that a leak fails the test instead of hanging it.
async fn wait_for_stats(client: &WorkerClient, what: &str, done: impl Fn(&WorkerStats) -> bool) -> WorkerStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = client.stats().await.unwrap();
        if done(&stats) {
            return stats;
        }
        assert!(std::time::Instant::now() < deadline, "never saw {what}; last stats {stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Clients that hang up mid-request (the request queued or computing) once left the queue and
/// in-flight counts raised for good, and released the compute slot while their computation ran
/// on, so that the next request computed beside it. Now the counts return to zero, the next
/// request reports an empty queue and itself alone in flight, and no two computations ever
/// overlapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_release_counters_and_keep_compute_exclusive() {
    use tokio::io::AsyncWriteExt;
    let server = start_worker(WorkerConfig::default()).await;
    let client = client(server.addr);
    let workload = Workload::ResNet18;
    let input = workload.example_input(8);
    // builds the network first, so that the abandoned requests go straight to the compute queue
    let warm = client.infer("resnet18", "fp32", 0, &input, None).await.unwrap();
    let mut parameters = serde_json::Map::new();
    parameters.insert("start_stage".into(), 0.into());
    let request = InferRequest { parameters: Some(parameters), ..Default::default() };
    let (body, header) = protocol::encode_binary_request(request, &input, Default::default()).unwrap();
    let mut raw = format!(
        "POST /v2/models/resnet18/infer HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\ninference-header-content-length: {header}\r\n\r\n",
        server.addr,
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(&body);
    let abandoned = 5;
    let mut sockets = Vec::new();
    for _ in 0..abandoned {
        let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        socket.write_all(&raw).await.unwrap();
        sockets.push(socket);
    }
    wait_for_stats(&client, "the abandoned requests arrive", |s| s.received == 1 + abandoned).await;
    drop(sockets);
    // the worker sees the hang-ups: nothing stays queued (a computation may still be running)
    wait_for_stats(&client, "an empty queue", |s| s.queued == 0).await;
    let reply = client.infer("resnet18", "fp32", 0, &input, None).await.unwrap();
    assert_eq!(reply.queue_length, Some(0));
    assert_eq!(reply.in_flight, 1);
    assert_eq!(reply.output, warm.output);
    let after = wait_for_stats(&client, "an idle worker", |s| s.in_flight == 0).await;
    assert_eq!(after.queued, 0, "{after:?}");
    assert_eq!(after.max_in_flight, 1, "two computations overlapped: {after:?}");
    assert_eq!(after.received, abandoned + 2, "{after:?}");
}

/// A worker whose reply claims a shape whose size overflows (or a rank far past any tensor)
/// gets the client an error, not a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_reply_shapes_are_errors_on_the_client() {
    use axum::routing::post as route_post;
    let replies: Vec<(&str, Vec<u8>, Option<usize>)> = {
        let json = |shape: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({"model_name": "m", "outputs": [{"name": "output", "shape": shape, "datatype": "FP32", "data": []}]})).unwrap()
        };
        let binary = {
            let header = serde_json::to_vec(&serde_json::json!({"model_name": "m", "outputs": [{"name": "output", "shape": [1u64 << 31, 1u64 << 31, 8], "datatype": "INT64",
                "parameters": {"binary_data_size": 0}}]})).unwrap();
            let length = header.len();
            (header, Some(length))
        };
        vec![
            ("json [1, 2^62]", json(serde_json::json!([1, 1u64 << 62])), None),
            ("json [2^40, 2^40, 0]", json(serde_json::json!([1u64 << 40, 1u64 << 40, 0])), None),
            ("json rank 64", json(serde_json::json!(vec![1; 64])), None),
            ("binary [2^31, 2^31, 8]", binary.0, binary.1),
        ]
    };
    for (name, body, header_length) in replies {
        let app = axum::Router::new().route(
            "/v2/models/{model}/infer",
            route_post(move || {
                let body = body.clone();
                async move {
                    let mut response = axum::response::Response::new(axum::body::Body::from(body));
                    if let Some(n) = header_length {
                        response.headers_mut().insert("inference-header-content-length", n.into());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let result = client(addr).infer("digits-cnn", "fp32", 0, &Workload::DigitsCnn.example_input(1), None).await;
        server.abort();
        let err = result.expect_err(name).to_string();
        assert!(err.contains("output `output`") && err.contains("shape"), "{name}: {err}");
    }
}

/// Sends raw bytes on a fresh connection and reads the whole answer (the requests say
/// `connection: close`).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// A body declared larger than the limit is refused before it is sent (413, not a wait for
/// bytes that never come), and a malformed chunked body is a 400 of its own, not a 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_bodies_are_refused_as_what_they_are() {
    let server = start_worker(WorkerConfig { body: BodyLimits { max_bytes: 1 << 20, ..Default::default() }, ..Default::default() }).await;
    let declared = raw_exchange(
        server.addr,
        b"POST /v2/models/digits-cnn/infer HTTP/1.1\r\nhost: w\r\nconnection: close\r\ncontent-length: 2097152\r\n\r\n",
    )
    .await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    assert!(declared.contains("exceeds the worker's limit"), "{declared}");
    let chunked = raw_exchange(
        server.addr,
        b"POST /v2/models/digits-cnn/infer HTTP/1.1\r\nhost: w\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"in\r\nzz\r\n",
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 400"), "{chunked}");
    assert!(chunked.contains("could not read the request body"), "{chunked}");
    assert_still_serves(server.addr, "broken bodies").await;
}
