//! `rlsched worker`: an Open Inference Protocol (KServe V2 REST) server that runs any stage
//! range of any workload. A request's `parameters` may set `start_stage` (where a split's tail
//! begins) and `variant`; responses report the queue length and in-flight count, so that the
//! scheduler sees the worker's load. Like mini-redis, [`run`] takes a bound listener and a
//! shutdown future, so tests start it on `127.0.0.1:0`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::kserve::protocol::{self, InferRequest, ProtocolError, ResponseOutput, HEADER_LENGTH};
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
    compute: tokio::sync::Mutex<()>,
    queued: AtomicUsize,
    in_flight: AtomicUsize,
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
        compute: tokio::sync::Mutex::new(()),
        queued: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(|| async { StatusCode::OK }))
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

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the worker's limit of {limit} bytes"),
        )
    })
}

async fn infer(
    State(state): State<Arc<WorkerState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let workload = workload_of(&model)?;
    let body = read_body(body, state.config.max_body_bytes).await?;
    // The clock starts once the whole body is here: reading it is the upload, the client's part.
    let received = Instant::now();
    let header_length = headers
        .get(HEADER_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| ProtocolError("Inference-Header-Content-Length is not an integer".into()))
        })
        .transpose()?;
    let (json_part, binary) = protocol::split_body(&body, header_length)?;
    let request: InferRequest = serde_json::from_slice(json_part)
        .map_err(|e| ProtocolError(format!("malformed inference request: {e}")))?;
    let input = protocol::decode_input(&request, binary)?;
    let start = protocol::usize_parameter(&request, "start_stage")?.unwrap_or(0);
    let variant = protocol::string_parameter(&request, "variant")?.unwrap_or_else(|| "fp32".into());
    let binary_out = protocol::wants_binary_output(&request);

    let network = {
        let state = state.clone();
        let variant = variant.clone();
        tokio::task::spawn_blocking(move || state.networks.get(workload, &variant))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    };
    // Refuse bad shapes before queueing, so a bad request never holds up good ones.
    if start >= network.stage_count() {
        return Err(ExecError::BadStageRange {
            start,
            end: network.stage_count(),
            stages: network.stage_count(),
        }
        .into());
    }
    network.check_input(start, &input.shape, input.datatype())?;

    let queue_length = state.queued.fetch_add(1, Ordering::SeqCst);
    let permit = state.compute.lock().await;
    state.queued.fetch_sub(1, Ordering::SeqCst);
    let queue_ms = received.elapsed().as_secs_f64() * 1e3;
    let in_flight = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let compute_start = Instant::now();
    let result = {
        let device = state.networks.device().clone();
        let network = network.clone();
        tokio::task::spawn_blocking(move || {
            let end = network.stage_count();
            network.run_wire(start, end, &input, &device)
        })
        .await
    };
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    drop(permit);
    let output: WireTensor = result.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
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
