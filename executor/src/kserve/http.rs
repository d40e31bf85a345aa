//! The HTTP side of the Open Inference Protocol that every rlsched server shares (the worker
//! and `rlsched serve`): errors answered as `{"error": ...}`, the bearer-token check, the body
//! limits (size, stall and trickle; a declared length past the size refused before a byte is
//! kept), reading an infer request (JSON or binary tensors) within the memory budget, and
//! encoding its response.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::kserve::budget::{self, MemoryBudget, Reservation};
use crate::kserve::protocol::{self, InferRequest, InferResponse, ProtocolError, ResponseOutput, HEADER_LENGTH};
use crate::{ExecError, WireTensor};

/// An error answered as the protocol asks: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(status, message.into())
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

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

/// Middleware state for [`require_token`]: the token every request must carry, if any.
pub type Token = Option<Arc<str>>;

/// Refuses a request without `Authorization: Bearer <token>` when a token is set.
pub async fn require_token(State(token): State<Token>, request: Request, next: axum::middleware::Next) -> Response {
    if let Some(token) = &token {
        let expected = format!("Bearer {token}");
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            return ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into()).into_response();
        }
    }
    next.run(request).await
}

/// Most bytes of a refused body read and dropped before the refusal is answered, the longest
/// time spent on it, and the longest wait for its next bytes. Closing a connection whose data
/// is unread resets it, and a client still sending then sees a broken pipe instead of the
/// answer; past these bounds it does (and a client that sends nothing waits no longer).
const DRAIN_BYTES: u64 = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);
const DRAIN_PAUSE: Duration = Duration::from_millis(100);

/// How much of a request body a server takes, and how slowly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BodyLimits {
    /// Largest body accepted (413 past it).
    pub max_bytes: usize,
    /// Longest wait for the body's next bytes (408 past it): a client that declares a body and
    /// stops sending gives its connection back.
    pub idle_timeout: Duration,
    /// Longest a whole body may take to arrive (408 past it), however it trickles.
    pub total_timeout: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            // VGG-16's largest cut (conv1_1's output) is 12.8 MB as f32
            max_bytes: 64 << 20,
            idle_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(120),
        }
    }
}

/// Largest `--max-body-bytes`: 4 GiB, past which no tensor here could be meant.
pub const MAX_BODY_BYTES: usize = 1 << 32;

impl BodyLimits {
    /// Checks every bound; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_BODY_BYTES).contains(&self.max_bytes) {
            return Err(format!("--max-body-bytes must be in 1..={MAX_BODY_BYTES}, got {}", self.max_bytes));
        }
        crate::kserve::server::check_timeouts(&[("--body-idle-timeout-ms", self.idle_timeout), ("--body-timeout-ms", self.total_timeout)])
    }
}

async fn next_frame(body: &mut Body) -> Option<Result<axum::body::Bytes, ApiError>> {
    let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
    match frame {
        Err(e) => Some(Err(ApiError(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")))),
        // trailers carry no data
        Ok(frame) => Some(Ok(frame.into_data().unwrap_or_default())),
    }
}

/// Reads and drops what is left of a refused body, within the drain bounds, so that the client
/// reads the refusal rather than a reset. A client that expects `100-continue` is not drained:
/// reading would ask it to send what is refused.
async fn drain(mut body: Body, headers: &HeaderMap) {
    let expects_continue = headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue || body.size_hint().lower() > DRAIN_BYTES {
        return;
    }
    let drain = async {
        let mut drained = 0;
        while drained < DRAIN_BYTES {
            let Ok(Some(Ok(data))) = tokio::time::timeout(DRAIN_PAUSE, next_frame(&mut body)).await else { break };
            drained += data.len() as u64;
        }
    };
    tokio::time::timeout(DRAIN_TIME, drain).await.ok();
}

fn budget_exhausted(server: &str, budget: &MemoryBudget, wanted: usize) -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "server busy: this request needs {wanted} bytes of the {server}'s request memory budget ({} bytes, --max-memory-bytes), and only {} are free; retry later",
            budget.bytes(),
            budget.available()
        ),
    )
}

enum Refusal {
    TooLarge,
    Budget(usize),
}

/// Reads the body within `limits`, reserving its bytes from `budget` as they arrive. A body
/// that breaks off or is malformed (bad chunked encoding) is a 400 of its own; one past the
/// size limit a 413, one that stalls or trickles past the time limits a 408, one the budget
/// cannot hold a 503.
pub async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    limits: &BodyLimits,
    budget: &MemoryBudget,
    server: &str,
) -> Result<(Vec<u8>, Reservation), ApiError> {
    let limit = limits.max_bytes;
    let mut reservation = budget.empty();
    let declared = body.size_hint().lower();
    let refusal = 'read: {
        // a declared length past the limit is refused before a byte of it is kept
        if declared > limit as u64 {
            break 'read Refusal::TooLarge;
        }
        if !reservation.grow_to(declared as usize) {
            break 'read Refusal::Budget(declared as usize);
        }
        let mut bytes = Vec::with_capacity(declared as usize);
        let deadline = tokio::time::Instant::now() + limits.total_timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, tokio::time::timeout(limits.idle_timeout, next_frame(&mut body))).await;
            let data = match next {
                Err(_) => {
                    return Err(ApiError(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("request body took longer than the {server}'s {} ms (--body-timeout-ms)", limits.total_timeout.as_millis()),
                    ))
                }
                Ok(Err(_)) => {
                    return Err(ApiError(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "request body stalled: no bytes for {} ms (the {server}'s --body-idle-timeout-ms)",
                            limits.idle_timeout.as_millis()
                        ),
                    ))
                }
                Ok(Ok(None)) => return Ok((bytes, reservation)),
                Ok(Ok(Some(data))) => data?,
            };
            if data.len() > limit - bytes.len() {
                break 'read Refusal::TooLarge;
            }
            if !reservation.grow_to(bytes.len() + data.len()) {
                break 'read Refusal::Budget(bytes.len() + data.len());
            }
            bytes.extend_from_slice(&data);
        }
    };
    drop(reservation);
    drain(body, headers).await;
    Err(match refusal {
        Refusal::TooLarge => ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds the {server}'s limit of {limit} bytes")),
        Refusal::Budget(wanted) => budget_exhausted(server, budget, wanted),
    })
}

/// Reads an infer request within `limits` and `budget` and decodes it, after reserving what
/// decoding may take; the reservation is held until the caller drops it.
pub async fn read_infer(
    body: Body,
    headers: &HeaderMap,
    limits: &BodyLimits,
    budget: &MemoryBudget,
    server: &str,
) -> Result<(ParsedInfer, Reservation), ApiError> {
    let (body, mut reservation) = read_body(body, headers, limits, budget, server).await?;
    let wanted = body.len().saturating_add(budget::decode_reservation(body.len()));
    if !reservation.grow_to(wanted) {
        return Err(budget_exhausted(server, budget, wanted));
    }
    let parsed = parse_infer(headers, &body)?;
    Ok((parsed, reservation))
}

/// A decoded infer request: the message, its one input tensor and that input's name.
pub struct ParsedInfer {
    pub request: InferRequest,
    pub input: WireTensor,
    pub input_name: String,
}

/// Parses a whole infer body (JSON, or JSON header plus binary tensors).
pub fn parse_infer(headers: &HeaderMap, body: &[u8]) -> Result<ParsedInfer, ApiError> {
    let header_length = headers
        .get(HEADER_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| ProtocolError("header `Inference-Header-Content-Length` is not a non-negative integer".into()))
        })
        .transpose()?;
    let (json_part, binary) = protocol::split_body(body, header_length)?;
    let request: InferRequest = serde_json::from_slice(json_part)
        .map_err(|e| ProtocolError(format!("malformed inference request: {e}")))?;
    let input_name = protocol::single_input(&request)?.name.clone();
    let input = protocol::decode_input(&request, binary)?;
    Ok(ParsedInfer { request, input, input_name })
}

/// The infer response for `output`, in the binary extension when `binary` is set.
pub fn infer_response(
    model: String,
    id: Option<String>,
    parameters: Map<String, Value>,
    output: &WireTensor,
    binary: bool,
) -> Result<Response, ApiError> {
    let mut out = ResponseOutput {
        name: "output".into(),
        shape: output.shape.clone(),
        datatype: output.datatype().name().into(),
        parameters: None,
        data: None,
    };
    let raw = if binary {
        let raw = output.to_le_bytes();
        let mut p = Map::new();
        p.insert("binary_data_size".into(), json!(raw.len()));
        out.parameters = Some(p);
        Some(raw)
    } else {
        out.data = Some(protocol::json_raw(output)?);
        None
    };
    let response = InferResponse { model_name: model, model_version: Some("1".into()), id, parameters, outputs: vec![out] };
    let mut body = serde_json::to_vec(&response).map_err(ApiError::internal)?;
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
    http.body(Body::from(body)).map_err(ApiError::internal)
}

/// A workload's model metadata, as the protocol's `GET /v2/models/{model}` reports it.
pub fn model_metadata(workload: crate::Workload) -> Result<Value, ApiError> {
    let spec = workload.spec()?;
    let variants: Vec<&str> = spec.variants.iter().map(|v| v.name.as_str()).collect();
    let mut input_shape: Vec<i64> = spec.input_shape.iter().map(|&d| d as i64).collect();
    input_shape[0] = -1;
    let mut parameters = json!({"variants": variants, "task": spec.task});
    // which file an imported name means: a device compares it with its own before sending
    if let Some(model) = workload.onnx() {
        parameters["content_hash"] = json!(model.hash);
    }
    Ok(json!({
        "name": spec.name,
        "versions": ["1"],
        "platform": "rlsched_burn",
        "inputs": [{"name": "input", "datatype": spec.input_datatype.name(), "shape": input_shape}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, -1]}],
        "parameters": parameters,
    }))
}

/// The workload a route's `{model}` names, or a 404.
pub fn workload_of(model: &str) -> Result<crate::Workload, ApiError> {
    model.parse::<crate::Workload>().map_err(|e| ApiError(StatusCode::NOT_FOUND, e.to_string()))
}
