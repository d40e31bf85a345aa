//! `rlsched worker`: an Open Inference Protocol (KServe V2 REST) server that runs any stage
//! range of any workload. A request's `parameters` may set `start_stage` (where a split's tail
//! begins) and `variant`; responses report the queue length and in-flight count, so that the
//! scheduler sees the worker's load, and `GET /v2/stats` reports the same counters without an
//! inference. Like mini-redis, [`run`] takes a bound listener and a shutdown future, so tests
//! start it on `127.0.0.1:0`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::kserve::protocol::{self, InferRequest, ProtocolError, ResponseOutput, WorkerStats, HEADER_LENGTH};
use crate::model::workloads::Workload;
use crate::{DeviceChoice, ExecError, NetworkCache, WireTensor};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub device: DeviceChoice,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Flex,
            token: None,
            // VGG-16's largest cut (conv1_1's output) is 12.8 MB as f32
            max_body_bytes: 64 << 20,
        }
    }
}

struct WorkerState {
    config: WorkerConfig,
    networks: NetworkCache,
    /// One inference computes at a time; the others wait here, which is the queue we report.
    /// Its permit is owned by the computation, not by the request handler: a client that
    /// disconnects drops the handler, but the blocking computation runs on and must keep the
    /// slot until it really ends.
    compute: Arc<tokio::sync::Semaphore>,
    /// Requests whose body has been read, ever: a count that only grows, so that a test (or an
    /// operator) can wait for "the worker has it" without racing a request that ends quickly.
    received: AtomicUsize,
    queued: Arc<Gauge>,
    in_flight: Arc<Gauge>,
}

/// A count of things in progress, with its highest value. Held through [`GaugeGuard`]s, so
/// that a request future dropped at any await (a client that hangs up) still gives its count
/// back.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

#[must_use]
struct GaugeGuard(Arc<Gauge>);

impl Gauge {
    /// Counts one more; returns the guard and the count before this one.
    fn enter(self: &Arc<Self>) -> (GaugeGuard, usize) {
        let before = self.now.fetch_add(1, Ordering::SeqCst);
        self.peak.fetch_max(before + 1, Ordering::SeqCst);
        (GaugeGuard(self.clone()), before)
    }

    fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An error answered as the protocol asks: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.0)
    }
}

impl From<ExecError> for ApiError {
    fn from(e: ExecError) -> Self {
        let status = match &e {
            ExecError::UnknownWorkload(_) => StatusCode::NOT_FOUND,
            ExecError::Backend(_) | ExecError::Io { .. } | ExecError::Weights { .. } | ExecError::BackendNotCompiled(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.to_string())
    }
}

/// Serves until `shutdown` completes.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ExecError> {
    let device = config.device.device()?;
    let state = Arc::new(WorkerState {
        config,
        networks: NetworkCache::new(device),
        compute: Arc::new(tokio::sync::Semaphore::new(1)),
        received: AtomicUsize::new(0),
        queued: Arc::default(),
        in_flight: Arc::default(),
    });
    let app = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
        .route("/v2/stats", get(stats))
        .route("/v2/models/{model}", get(model_metadata))
        .route("/v2/models/{model}/ready", get(model_ready))
        .route("/v2/models/{model}/infer", post(infer))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ExecError::io("worker listener", e))
}

async fn authorize(
    State(state): State<Arc<WorkerState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(token) = &state.config.token {
        let expected = format!("Bearer {token}");
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into()).into_response();
        }
    }
    next.run(request).await
}

async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "rlsched",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

/// The worker's load, read without queueing behind a computation.
async fn stats(State(state): State<Arc<WorkerState>>) -> Json<WorkerStats> {
    Json(WorkerStats {
        received: state.received.load(Ordering::SeqCst),
        queued: state.queued.now(),
        in_flight: state.in_flight.now(),
        max_in_flight: state.in_flight.peak.load(Ordering::SeqCst),
    })
}

fn workload_of(model: &str) -> Result<Workload, ApiError> {
    model.parse::<Workload>().map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))
}

async fn model_ready(Path(model): Path<String>) -> Result<StatusCode, ApiError> {
    workload_of(&model).map(|_| StatusCode::OK)
}

async fn model_metadata(Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    let workload = workload_of(&model)?;
    let spec = workload.spec()?;
    let variants: Vec<&str> = spec.variants.iter().map(|v| v.name.as_str()).collect();
    let mut input_shape: Vec<i64> = spec.input_shape.iter().map(|&d| d as i64).collect();
    input_shape[0] = -1;
    Ok(Json(json!({
        "name": spec.name,
        "versions": ["1"],
        "platform": "rlsched_burn",
        "inputs": [{"name": "input", "datatype": spec.input_datatype.name(), "shape": input_shape}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, -1]}],
        "parameters": {"variants": variants, "task": spec.task},
    })))
}

/// Most bytes of a refused (oversize) body read and dropped before the refusal is answered, the
/// longest time spent on it, and the longest wait for its next bytes. Closing a connection
/// whose data is unread resets it, and a client still sending then sees a broken pipe instead
/// of the 413; past these bounds it does (and a client that sends nothing waits no longer).
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const DRAIN_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

async fn next_frame(body: &mut Body) -> Option<Result<axum::body::Bytes, ApiError>> {
    let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
    match frame {
        Err(e) => Some(Err(ApiError(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")))),
        // trailers carry no data
        Ok(frame) => Some(Ok(frame.into_data().unwrap_or_default())),
    }
}

/// Reads the body, refusing it as soon as it passes `limit`. A body that breaks off or is
/// malformed (bad chunked encoding) is a 400 of its own, not mistaken for an oversized one.
/// `drain`: read on past the limit before refusing (not for a client that expects
/// `100-continue`: reading would ask it to send what is refused).
async fn read_body(mut body: Body, limit: usize, drain: bool) -> Result<Vec<u8>, ApiError> {
    let mut bytes = Vec::new();
    // a declared length past the limit is refused before a byte of it is kept
    if body.size_hint().lower() <= limit as u64 {
        bytes.reserve(body.size_hint().lower() as usize);
        loop {
            let Some(data) = next_frame(&mut body).await else { return Ok(bytes) };
            let data = data?;
            if data.len() > limit - bytes.len() {
                break;
            }
            bytes.extend_from_slice(&data);
        }
    }
    if drain && body.size_hint().lower() <= DRAIN_BYTES {
        let drain = async {
            let mut drained = 0;
            while drained < DRAIN_BYTES {
                let Ok(Some(Ok(data))) = tokio::time::timeout(DRAIN_PAUSE, next_frame(&mut body)).await else { break };
                drained += data.len() as u64;
            }
        };
        tokio::time::timeout(DRAIN_TIME, drain).await.ok();
    }
    Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds the worker's limit of {limit} bytes")))
}

async fn infer(
    State(state): State<Arc<WorkerState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let workload = workload_of(&model)?;
    let expects_continue = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body = read_body(body, state.config.max_body_bytes, !expects_continue).await?;
    // The clock starts once the whole body is here: reading it is the upload, the client's part.
    let received = Instant::now();
    state.received.fetch_add(1, Ordering::SeqCst);
    let header_length = headers
        .get(HEADER_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| ProtocolError("header `Inference-Header-Content-Length` is not a non-negative integer".into()))
        })
        .transpose()?;
    let (json_part, binary) = protocol::split_body(&body, header_length)?;
    let request: InferRequest = serde_json::from_slice(json_part)
        .map_err(|e| ProtocolError(format!("malformed inference request: {e}")))?;
    let input_name = protocol::single_input(&request)?.name.clone();
    let input = protocol::decode_input(&request, binary)?;
    let start = protocol::usize_parameter(&request, "start_stage")?.unwrap_or(0);
    let variant = protocol::string_parameter(&request, "variant")?.unwrap_or_else(|| "fp32".into());
    let binary_out = protocol::wants_binary_output(&request)?;

    let network = {
        let state = state.clone();
        let variant = variant.clone();
        tokio::task::spawn_blocking(move || state.networks.get(workload, &variant))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| match e {
                ExecError::UnknownVariant { .. } => ApiError(StatusCode::BAD_REQUEST, format!("parameter `variant`: {e}")),
                e => e.into(),
            })?
    };
    // Refuse bad shapes before queueing, so a bad request never holds up good ones.
    let stages = network.stage_count();
    if start >= stages {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("parameter `start_stage` is {start} but `{model}` has stages 0..{stages}"),
        ));
    }
    network
        .check_input(start, &input.shape, input.datatype())
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("input `{input_name}`: {e}")))?;

    let (queue_slot, queue_length) = state.queued.enter();
    let permit = state
        .compute
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    drop(queue_slot);
    let queue_ms = received.elapsed().as_secs_f64() * 1e3;
    let compute_start = Instant::now();
    let result = {
        let device = state.networks.device().clone();
        let network = network.clone();
        let in_flight = state.in_flight.clone();
        tokio::task::spawn_blocking(move || {
            // The permit and the in-flight count live as long as the computation, even when the
            // handler awaiting it is dropped; the count is taken inside the permit, so its peak
            // shows whether two computations ever overlapped.
            let (computing, before) = in_flight.enter();
            let output = network.run_wire(start, stages, &input, &device);
            drop(computing);
            drop(permit);
            (before + 1, output)
        })
        .await
    };
    let (in_flight, result) = result.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let output: WireTensor = result?;
    let compute_ms = compute_start.elapsed().as_secs_f64() * 1e3;

    let mut parameters = Map::new();
    parameters.insert("queue_length".into(), json!(queue_length));
    parameters.insert("in_flight".into(), json!(in_flight));
    parameters.insert("queue_ms".into(), json!(queue_ms));
    parameters.insert("compute_ms".into(), json!(compute_ms));
    parameters.insert("start_stage".into(), json!(start));
    parameters.insert("variant".into(), json!(variant));
    let mut out = ResponseOutput {
        name: "output".into(),
        shape: output.shape.clone(),
        datatype: output.datatype().name().into(),
        parameters: None,
        data: None,
    };
    let raw = if binary_out {
        let raw = output.to_le_bytes();
        let mut p = Map::new();
        p.insert("binary_data_size".into(), json!(raw.len()));
        out.parameters = Some(p);
        Some(raw)
    } else {
        out.data = Some(protocol::json_values(&output));
        None
    };
    let response = protocol::InferResponse {
        model_name: model,
        model_version: Some("1".into()),
        id: request.id,
        parameters,
        outputs: vec![out],
    };
    let mut body = serde_json::to_vec(&response).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let header_len = body.len();
    let mut http = Response::builder().status(StatusCode::OK);
    match raw {
        Some(raw) => {
            body.extend_from_slice(&raw);
            http = http
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(HEADER_LENGTH, HeaderValue::from(header_len));
        }
        None => http = http.header(header::CONTENT_TYPE, "application/json"),
    }
    http.body(Body::from(body))
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
