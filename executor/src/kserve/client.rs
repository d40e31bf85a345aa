//! A KServe V2 client for rlsched workers and for any other Open Inference Protocol server.
//! What a server takes is read from its metadata (`GET /v2`): tensors travel in the binary
//! extension where the server lists `binary_tensor_data` (and as JSON `data` elsewhere, or
//! after a server refused binary with a 4xx), and stage ranges, variants and int8
//! intermediates go only to rlsched workers (`rlsched_stages`); any other server runs whole
//! models. The reply carries the worker's own timing and queue where it reports them, and the
//! client's measured transfer times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::kserve::chain::{self, Hop, HopReport};
use crate::kserve::protocol::{self, InferRequest, WorkerStats, HEADER_LENGTH};
use crate::model::quantize::Int8Range;
use crate::{ExecError, WireTensor};

/// The extension an rlsched worker lists: `start_stage`, `variant` and int8 intermediates in
/// infer, its own queue and timing in every reply, and `GET /v2/stats`.
pub const RLSCHED_EXTENSION: &str = "rlsched_stages";
/// The protocol's name for the binary tensor data extension.
pub const BINARY_EXTENSION: &str = "binary_tensor_data";

/// What a server says of itself in `GET /v2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// Its `name`, at most 128 characters of it (for messages).
    pub name: String,
    /// It lists `binary_tensor_data`.
    pub binary: bool,
    /// It lists `rlsched_stages`: an rlsched worker.
    pub stages: bool,
}

/// What the client has learnt of its server; shared by its clones.
#[derive(Debug, Default)]
struct Learnt {
    info: Option<ServerInfo>,
    /// The server answered a binary request with a 4xx that JSON then got through.
    binary_refused: bool,
    /// A binary request got through: a later 4xx is about something else.
    binary_worked: bool,
    /// The first input's name from each model's metadata (only workload names are asked).
    input_names: HashMap<String, String>,
    /// Imported models whose content hash the server's metadata was seen to match.
    verified_models: std::collections::HashSet<String>,
}

#[derive(Clone, Debug)]
pub struct WorkerClient {
    base_url: String,
    token: Option<String>,
    http: reqwest::Client,
    limits: ClientLimits,
    learnt: Arc<Mutex<Learnt>>,
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
    /// The queue the worker reported (rlsched workers do; other servers do not).
    pub queue_length: Option<usize>,
    pub in_flight: usize,
    pub queue_ms: f64,
    pub compute_ms: f64,
    /// Whether the worker reported its own queue and compute time (`queue_ms`, `compute_ms`).
    /// Without them `upload_ms` holds the server's time too: the executor splits it.
    pub server_timed: bool,
    /// From sending the request until the response headers arrived, less the worker's own time:
    /// the upload plus one round trip.
    pub upload_ms: f64,
    /// Reading the response body after its headers.
    pub download_ms: f64,
    pub bytes_up: usize,
    pub bytes_down: usize,
    /// The worker's time after its own stages: the rest of the chain it forwarded to (or its
    /// fallback), 0 when it ran to the end itself.
    pub forward_ms: f64,
    /// Where the worker's own computation ended, when it says (an rlsched worker does): the
    /// model's end unless it forwarded the rest.
    pub end_stage: Option<usize>,
    /// Why the worker abandoned its next hop and finished the stages itself.
    pub fallback: Option<String>,
    /// What every hop after this worker cost, in route order.
    pub hops: Vec<HopReport>,
}

impl RemoteReply {
    /// This reply as one hop's report (`node` the name the caller knows the server by): the
    /// caller's transfers, the server's queue, compute and forwarding, and where it stopped.
    pub fn hop_report(&self, node: String, start_stage: usize, end_stage: usize) -> HopReport {
        HopReport {
            node,
            start_stage,
            end_stage,
            upload_ms: self.upload_ms,
            queue_ms: self.queue_ms,
            compute_ms: self.compute_ms,
            forward_ms: self.forward_ms,
            download_ms: self.download_ms,
            bytes_up: self.bytes_up,
            bytes_down: self.bytes_down,
            queue_length: self.queue_length,
            fallback: self.fallback.clone(),
        }
    }
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
            learnt: Arc::default(),
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
        let response = self.get("/v2/health/ready").await?;
        if !response.status().is_success() {
            return Err(remote(format!("worker not ready: HTTP {}", response.status())));
        }
        Ok(start.elapsed().as_secs_f64() * 1e3)
    }

    /// The worker's load counters (`GET /v2/stats`).
    pub async fn stats(&self) -> Result<WorkerStats, ExecError> {
        // a few counters: anything long is not an answer
        let body = self.get_small("/v2/stats", 64 << 10).await?;
        serde_json::from_slice(&body).map_err(remote)
    }

    fn learnt(&self) -> std::sync::MutexGuard<'_, Learnt> {
        self.learnt.lock().expect("client state lock")
    }

    /// What `GET /v2` said, once [`discover`](Self::discover) has read it.
    pub fn info(&self) -> Option<ServerInfo> {
        self.learnt().info.clone()
    }

    /// Reads the server's metadata (`GET /v2`): its name and the extensions it lists. What was
    /// learnt of an earlier server at this address (a refused encoding, input names) is
    /// forgotten: a restarted server may be another.
    pub async fn discover(&self) -> Result<ServerInfo, ExecError> {
        let body = self.get_small("/v2", 64 << 10).await?;
        let metadata: Value = serde_json::from_slice(&body).map_err(|e| remote(format!("server metadata (GET /v2) is not JSON: {e}")))?;
        let extensions = metadata.get("extensions").and_then(Value::as_array);
        let lists = |name: &str| extensions.is_some_and(|e| e.iter().any(|x| x.as_str() == Some(name)));
        let name: String = metadata.get("name").and_then(Value::as_str).unwrap_or("").chars().take(128).collect();
        let info = ServerInfo { name, binary: lists(BINARY_EXTENSION), stages: lists(RLSCHED_EXTENSION) };
        *self.learnt() = Learnt { info: Some(info.clone()), ..Default::default() };
        Ok(info)
    }

    /// Whether the server has `model` ready (`GET /v2/models/{model}/ready`): a 4xx is a no,
    /// anything else that is not a success an error.
    pub async fn model_ready(&self, model: &str) -> Result<bool, ExecError> {
        let response = self.get(&format!("/v2/models/{model}/ready")).await?;
        let status = response.status();
        match () {
            _ if status.is_success() => Ok(true),
            _ if status.is_client_error() => Ok(false),
            _ => Err(remote(format!("model `{model}` readiness: HTTP {status}"))),
        }
    }

    /// An authorised GET of `path` on the worker within the probe timeout.
    async fn get(&self, path: &str) -> Result<reqwest::Response, ExecError> {
        self.authorized(self.http.get(format!("{}{path}", self.base_url)))
            .timeout(self.limits.probe_timeout)
            .send()
            .await
            .map_err(remote)
    }

    /// A GET of at most `limit` bytes within the probe timeout; a non-success is an error.
    async fn get_small(&self, path: &str, limit: usize) -> Result<Vec<u8>, ExecError> {
        let response = self.get(path).await?;
        if !response.status().is_success() {
            return Err(remote(format!("GET {path}: HTTP {}", response.status())));
        }
        read_limited(response, limit).await
    }

    /// For an imported model: that the server's file is this process's (its metadata's
    /// `content_hash`), asked once per model and server. A built-in passes unasked.
    async fn check_same_model(&self, workload: &str) -> Result<(), ExecError> {
        let Some(ours) = workload.parse::<crate::Workload>().ok().and_then(crate::Workload::onnx) else {
            return Ok(());
        };
        if self.learnt().verified_models.contains(workload) {
            return Ok(());
        }
        let body = self.get_small(&format!("/v2/models/{workload}"), 1 << 20).await?;
        let theirs = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|m| m.get("parameters")?.get("content_hash")?.as_str().map(|h| h.chars().take(64).collect::<String>()))
            .unwrap_or_else(|| "none (its metadata gives no content_hash)".into());
        if theirs != ours.hash {
            return Err(ExecError::ModelMismatch {
                model: workload.to_string(),
                device: ours.hash.clone(),
                worker: theirs,
                worker_url: self.base_url.clone(),
            });
        }
        self.learnt().verified_models.insert(workload.to_string());
        Ok(())
    }

    /// The name `model`'s metadata gives its first input: other servers check it (Triton does),
    /// and rlsched workers call theirs `input`. A model whose metadata does not say (KServe's
    /// Python models list none unless they declare them) gets `input` too.
    async fn input_name(&self, model: &str, stages: bool) -> String {
        if stages {
            return "input".into();
        }
        if let Some(name) = self.learnt().input_names.get(model) {
            return name.clone();
        }
        let name = match self.get_small(&format!("/v2/models/{model}"), 1 << 20).await {
            Ok(body) => serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|m| m.get("inputs")?.get(0)?.get("name")?.as_str().map(str::to_string))
                .filter(|n| !n.is_empty() && n.len() <= 256),
            Err(_) => None,
        };
        let name = name.unwrap_or_else(|| "input".into());
        let mut learnt = self.learnt();
        // only workload names reach here, so the map stays as small as the catalogue
        learnt.input_names.insert(model.to_string(), name.clone());
        name
    }

    /// Runs stages `start_stage..` of `workload`/`variant` on the worker. `int8`: `input` is a
    /// quantized intermediate with this range. A server that is not an rlsched worker runs
    /// whole models only: a stage range, another variant than `fp32` or an int8 intermediate
    /// is refused here, before anything is sent.
    pub async fn infer(
        &self,
        workload: &str,
        variant: &str,
        start_stage: usize,
        input: &WireTensor,
        int8: Option<Int8Range>,
    ) -> Result<RemoteReply, ExecError> {
        self.infer_padded(workload, variant, start_stage, input, int8, 0).await
    }

    /// [`infer`](Self::infer) of stages `start_stage..` where the worker runs only up to the
    /// first hop's start and forwards the rest along `route` (peer names the worker knows).
    pub async fn infer_route(
        &self,
        workload: &str,
        variant: &str,
        start_stage: usize,
        input: &WireTensor,
        int8: Option<Int8Range>,
        route: &[Hop],
    ) -> Result<RemoteReply, ExecError> {
        self.infer_with(workload, variant, start_stage, input, int8, 0, route).await
    }

    /// [`infer`](Self::infer) with `pad` spaces after the request's JSON (the active probe's
    /// extra bytes, which no server computes on).
    pub async fn infer_padded(
        &self,
        workload: &str,
        variant: &str,
        start_stage: usize,
        input: &WireTensor,
        int8: Option<Int8Range>,
        pad: usize,
    ) -> Result<RemoteReply, ExecError> {
        self.infer_with(workload, variant, start_stage, input, int8, pad, &[]).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn infer_with(
        &self,
        workload: &str,
        variant: &str,
        start_stage: usize,
        input: &WireTensor,
        int8: Option<Int8Range>,
        pad: usize,
        route: &[Hop],
    ) -> Result<RemoteReply, ExecError> {
        let (info, binary_refused, binary_worked) = {
            let learnt = self.learnt();
            (learnt.info.clone(), learnt.binary_refused, learnt.binary_worked)
        };
        // not yet discovered: an rlsched worker, as every caller that never asks assumes
        let stages = info.as_ref().is_none_or(|i| i.stages);
        if !stages && (start_stage > 0 || int8.is_some() || variant != "fp32" || !route.is_empty()) {
            let name = info.as_ref().map_or("", |i| i.name.as_str());
            return Err(remote(format!(
                "{} (`{name}`) is not an rlsched worker: it runs whole models, not stage {start_stage}.. of variant `{variant}`{}",
                self.base_url,
                if int8.is_some() { " from an int8 intermediate" } else { "" }
            )));
        }
        let binary = info.as_ref().is_none_or(|i| i.binary) && !binary_refused;
        self.check_same_model(workload).await?;
        let name = self.input_name(workload, stages).await;
        let attempt = self.send_infer(workload, &name, stages, binary, start_stage, variant, input, int8, pad, route).await;
        match attempt {
            // A refusal of the body (400 unparseable, 415 media type, 422 invalid) to binary
            // tensors from a server whose binary never worked: try JSON, which every server
            // reads, and keep to it if that gets through. Other 4xx (a missing token, an
            // unknown model) are not about the encoding.
            Err(Refused::Status(status, _)) if binary && !binary_worked && matches!(status.as_u16(), 400 | 415 | 422) => {
                let reply = self.send_infer(workload, &name, stages, false, start_stage, variant, input, int8, pad, route).await.map_err(ExecError::from)?;
                self.learnt().binary_refused = true;
                Ok(reply)
            }
            Ok(reply) => {
                if binary {
                    self.learnt().binary_worked = true;
                }
                Ok(reply)
            }
            Err(e) => Err(e.into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_infer(
        &self,
        workload: &str,
        input_name: &str,
        stages: bool,
        binary: bool,
        start_stage: usize,
        variant: &str,
        input: &WireTensor,
        int8: Option<Int8Range>,
        pad: usize,
        route: &[Hop],
    ) -> Result<RemoteReply, Refused> {
        let mut parameters = Map::new();
        // only an rlsched worker knows these; to another server they would mean nothing
        if stages {
            parameters.insert("start_stage".into(), Value::from(start_stage));
            parameters.insert("variant".into(), Value::from(variant));
            if !route.is_empty() {
                parameters.insert("next_hops".into(), Value::from(chain::encode_route(route)));
            }
        }
        if binary {
            parameters.insert("binary_data_output".into(), Value::from(true));
        }
        let request = InferRequest {
            parameters: (!parameters.is_empty()).then_some(parameters),
            ..Default::default()
        };
        let input_parameters = int8.map(|r| r.parameters()).unwrap_or_default();
        let (body, header_length) = protocol::encode_request(request, input_name, input, input_parameters, binary, pad).map_err(|e| Refused::Other(remote(e)))?;
        let bytes_up = body.len();
        let start = Instant::now();
        let mut request = self.authorized(self.http.post(format!("{}/v2/models/{workload}/infer", self.base_url)));
        request = match header_length {
            Some(n) => request.header(HEADER_LENGTH, n).header(reqwest::header::CONTENT_TYPE, "application/octet-stream"),
            None => request.header(reqwest::header::CONTENT_TYPE, "application/json"),
        };
        let response = request.body(body).send().await.map_err(|e| Refused::Other(remote(e)))?;
        let headers_at = Instant::now();
        let status = response.status();
        let reply_header_length = response
            .headers()
            .get(HEADER_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body = read_limited(response, self.limits.max_reply_bytes).await.map_err(Refused::Other)?;
        let done = Instant::now();
        if !status.is_success() {
            // FastAPI (KServe) says `detail`, rlsched and Triton `error`
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").or_else(|| v.get("detail")).map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_string)))
                .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned());
            let message: String = message.chars().take(1024).collect();
            return Err(Refused::Status(status, format!("worker answered HTTP {status}: {message}")));
        }
        let (reply, output) = protocol::decode_response(&body, reply_header_length).map_err(|e| Refused::Other(remote(e)))?;
        let number = |key: &str| reply.parameters.get(key).and_then(Value::as_f64).filter(|x| x.is_finite() && *x >= 0.0);
        let (queue_ms, compute_ms) = (number("queue_ms"), number("compute_ms"));
        let server_timed = queue_ms.is_some() && compute_ms.is_some();
        let forward_ms = number("forward_ms").unwrap_or(0.0);
        let server_ms = queue_ms.unwrap_or(0.0) + compute_ms.unwrap_or(0.0) + forward_ms;
        let hops = match reply.parameters.get("hops") {
            None => Vec::new(),
            Some(Value::String(text)) => chain::parse_hops_report(text).map_err(|e| Refused::Other(remote(e)))?,
            Some(_) => return Err(Refused::Other(remote("response parameter `hops` is not a string"))),
        };
        let fallback = reply.parameters.get("fallback").and_then(Value::as_str).map(|m| m.chars().take(1024).collect());
        let to_headers_ms = (headers_at - start).as_secs_f64() * 1e3;
        Ok(RemoteReply {
            output,
            queue_length: number("queue_length").map(|q| q.min(usize::MAX as f64) as usize),
            in_flight: number("in_flight").map_or(0, |n| n.min(usize::MAX as f64) as usize),
            queue_ms: queue_ms.unwrap_or(0.0),
            compute_ms: compute_ms.unwrap_or(0.0),
            server_timed,
            upload_ms: (to_headers_ms - server_ms).max(0.0),
            download_ms: (done - headers_at).as_secs_f64() * 1e3,
            bytes_up,
            bytes_down: body.len(),
            forward_ms,
            end_stage: number("end_stage").map(|e| e.min(usize::MAX as f64) as usize),
            fallback,
            hops,
        })
    }
}

/// Why one infer attempt failed: an answer with this status (which may be about the encoding),
/// or anything else.
enum Refused {
    Status(reqwest::StatusCode, String),
    Other(ExecError),
}

impl From<Refused> for ExecError {
    fn from(refused: Refused) -> Self {
        match refused {
            Refused::Status(_, message) => remote(message),
            Refused::Other(e) => e,
        }
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
