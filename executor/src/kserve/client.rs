//! A KServe V2 client for rlsched workers (or any Open Inference Protocol server, for a full
//! offload). Tensors travel in the binary extension; the reply carries the worker's own timing
//! and queue, and the client's measured transfer times.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::kserve::protocol::{self, InferRequest, WorkerStats, HEADER_LENGTH};
use crate::model::quantize::Int8Range;
use crate::{ExecError, WireTensor};

#[derive(Clone, Debug)]
pub struct WorkerClient {
    base_url: String,
    token: Option<String>,
    http: reqwest::Client,
    limits: ClientLimits,
}

/// What a client takes from a server it does not trust.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientLimits {
    /// Largest reply body read; a longer one is abandoned and the call fails (the plan falls
    /// back to local). A declared length past it is refused before a byte is read.
    pub max_reply_bytes: usize,
    /// Longest a readiness probe or a stats read may take: one hung worker must not hold up
    /// what serving learns of the others.
    pub probe_timeout: Duration,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self { max_reply_bytes: 64 << 20, probe_timeout: Duration::from_secs(2) }
    }
}

/// What one remote call returned and cost.
#[derive(Clone, Debug)]
pub struct RemoteReply {
    pub output: WireTensor,
    pub queue_length: usize,
    pub in_flight: usize,
    pub queue_ms: f64,
    pub compute_ms: f64,
    /// From sending the request until the response headers arrived, less the worker's own time:
    /// the upload plus one round trip.
    pub upload_ms: f64,
    /// Reading the response body after its headers.
    pub download_ms: f64,
    pub bytes_up: usize,
    pub bytes_down: usize,
}

fn remote(message: impl std::fmt::Display) -> ExecError {
    ExecError::Remote(message.to_string())
}

impl WorkerClient {
    /// `base_url` like `http://127.0.0.1:8000`. `timeout` bounds a whole request.
    pub fn new(base_url: &str, token: Option<String>, timeout: Duration) -> Result<Self, ExecError> {
        check_base_url(base_url)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(remote)?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            http,
            limits: ClientLimits::default(),
        })
    }

    pub fn with_limits(self, limits: ClientLimits) -> Self {
        Self { limits, ..self }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Round-trip time of a readiness check, in milliseconds; an error if the worker is not ready.
    pub async fn probe(&self) -> Result<f64, ExecError> {
        let start = Instant::now();
        let response = self
            .authorized(self.http.get(format!("{}/v2/health/ready", self.base_url)))
            .timeout(self.limits.probe_timeout)
            .send()
            .await
            .map_err(remote)?;
        if !response.status().is_success() {
            return Err(remote(format!("worker not ready: HTTP {}", response.status())));
        }
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    /// The worker's load counters (`GET /v2/stats`).
    pub async fn stats(&self) -> Result<WorkerStats, ExecError> {
        let response = self
            .authorized(self.http.get(format!("{}/v2/stats", self.base_url)))
            .timeout(self.limits.probe_timeout)
            .send()
            .await
            .map_err(remote)?;
        if !response.status().is_success() {
            return Err(remote(format!("worker stats: HTTP {}", response.status())));
        }
        // a few counters: anything long is not an answer
        let body = read_limited(response, 64 << 10).await?;
        serde_json::from_slice(&body).map_err(remote)
    }

    /// Runs stages `start_stage..` of `workload`/`variant` on the worker. `int8`: `input` is a
    /// quantized intermediate with this range.
    pub async fn infer(
        &self,
        workload: &str,
        variant: &str,
        start_stage: usize,
        input: &WireTensor,
        int8: Option<Int8Range>,
    ) -> Result<RemoteReply, ExecError> {
        let mut parameters = Map::new();
        parameters.insert("start_stage".into(), Value::from(start_stage));
        parameters.insert("variant".into(), Value::from(variant));
        parameters.insert("binary_data_output".into(), Value::from(true));
        let request = InferRequest {
            parameters: Some(parameters),
            ..Default::default()
        };
        let (body, header_length) = protocol::encode_binary_request(request, input, int8.map(|r| r.parameters()).unwrap_or_default()).map_err(remote)?;
        let bytes_up = body.len();
        let start = Instant::now();
        let response = self
            .authorized(self.http.post(format!("{}/v2/models/{workload}/infer", self.base_url)))
            .header(HEADER_LENGTH, header_length)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(remote)?;
        let headers_at = Instant::now();
        let status = response.status();
        let reply_header_length = response
            .headers()
            .get(HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = read_limited(response, self.limits.max_reply_bytes).await?;
        let done = Instant::now();
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(remote(format!("worker answered HTTP {status}: {message}")));
        }
        let (reply, output) = protocol::decode_response(&body, reply_header_length).map_err(remote)?;
        let number = |key: &str| reply.parameters.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        let server_ms = number("queue_ms") + number("compute_ms");
        let to_headers_ms = (headers_at - start).as_secs_f64() * 1e3;
        Ok(RemoteReply {
            output,
            queue_length: number("queue_length") as usize,
            in_flight: number("in_flight") as usize,
            queue_ms: number("queue_ms"),
            compute_ms: number("compute_ms"),
            upload_ms: (to_headers_ms - server_ms).max(0.0),
            download_ms: (done - headers_at).as_secs_f64() * 1e3,
            bytes_up,
            bytes_down: body.len(),
        })
    }
}

/// A worker URL must be `http` or `https` with a host: anything else would fail on every
/// request, far from the flag that named it.
fn check_base_url(base_url: &str) -> Result<(), ExecError> {
    let invalid = |why: &str| ExecError::Invalid { name: format!("worker URL `{base_url}`"), message: why.to_string() };
    let url = reqwest::Url::parse(base_url).map_err(|e| invalid(&format!("is not a URL ({e}); expected http://host:port")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(&format!("has scheme `{}`; only http and https are supported", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment; give the base URL, e.g. http://host:port"));
    }
    Ok(())
}

/// Reads a reply body of at most `limit` bytes; a longer one is abandoned, not read on.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, ExecError> {
    let too_long = || remote(format!("reply body exceeds the client's limit of {limit} bytes (--max-reply-bytes)"));
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_long());
    }
    let mut body = Vec::with_capacity(response.content_length().map_or(0, |n| n as usize));
    while let Some(chunk) = response.chunk().await.map_err(remote)? {
        if chunk.len() > limit - body.len() {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
