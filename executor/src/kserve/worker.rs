//! `rlsched worker`: an Open Inference Protocol (KServe V2 REST) server that runs any stage
//! range of any workload. A request's `parameters` may set `start_stage` (where a split's tail
//! begins) and `variant`; responses report the queue length and in-flight count, so that the
//! scheduler sees the worker's load, and `GET /v2/stats` reports the same counters without an
//! inference. Given named next hops (`--next NAME=URL`), a request's `next_hops` route makes it
//! run only its own segment and forward the rest to one of them (`kserve::chain`); a next hop
//! that fails, hangs past `--next-timeout-ms` or answers a tensor the model does not give is
//! abandoned, and this worker finishes the remaining stages itself. Like mini-redis, [`run`] takes a bound listener and a shutdown future, so tests
//! start it on `127.0.0.1:0`.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::kserve::budget::{MemoryBudget, MAX_BUDGET_BYTES};
use crate::kserve::chain::{self, Hop, HopReport};
use crate::kserve::client::WorkerClient;
pub use crate::kserve::http::ApiError;
use crate::kserve::http::{self, workload_of, BodyLimits};
use crate::kserve::server::{self, Drained, ServerLimits};
use crate::kserve::protocol::{self, WorkerStats};
use crate::{DeviceChoice, ExecError, Network, NetworkCache, WireTensor};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub device: DeviceChoice,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Size and time bounds on a request body.
    pub body: BodyLimits,
    /// Connections, slow heads, idle keep-alive, shutdown's drain.
    pub server: ServerLimits,
    /// Memory all requests' bodies and their decoding may hold at once (503 past it).
    pub max_memory_bytes: usize,
    /// Inferences admitted at once, computing or waiting for the compute slot (503 past it),
    /// counted once a body has arrived, so a slow client holds no place.
    pub max_queue: usize,
    /// A test aid: every computation takes this many times as long as it does (the worker
    /// holds the compute slot for the extra time), so experiments can slow a worker down that
    /// its profile still says is fast. 1 in normal use.
    pub slowdown: f64,
    /// The peers a request's route may forward to, by name (`--next NAME=URL`): the only
    /// places this worker ever sends a request.
    pub next: Vec<(String, WorkerClient)>,
    /// Longest a forward to a next hop may take before this worker abandons it and finishes
    /// the stages itself.
    pub next_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Flex,
            token: None,
            body: BodyLimits::default(),
            server: ServerLimits::default(),
            max_memory_bytes: DEFAULT_MEMORY_BYTES,
            max_queue: 64,
            slowdown: 1.0,
            next: Vec::new(),
            next_timeout: DEFAULT_NEXT_TIMEOUT,
        }
    }
}

/// Request memory a server may hold at once unless told otherwise: 1 GiB.
pub const DEFAULT_MEMORY_BYTES: usize = 1 << 30;

/// How long a next hop may take unless told otherwise.
pub const DEFAULT_NEXT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `--next-timeout-ms`.
pub const MAX_NEXT_TIMEOUT: Duration = Duration::from_secs(600);
/// Most `--next` peers.
pub const MAX_NEXT_PEERS: usize = 16;

/// Largest `--max-queue`.
pub const MAX_QUEUE: usize = 1 << 16;

/// Checks the admission bounds both servers share; the error names the flag.
pub fn check_admission(max_queue: usize, max_memory_bytes: usize) -> Result<(), String> {
    if !(1..=MAX_QUEUE).contains(&max_queue) {
        return Err(format!("--max-queue must be in 1..={MAX_QUEUE}, got {max_queue}"));
    }
    if !(1 << 20..=MAX_BUDGET_BYTES).contains(&max_memory_bytes) {
        return Err(format!("--max-memory-bytes must be in {}..={MAX_BUDGET_BYTES}, got {max_memory_bytes}", 1 << 20));
    }
    Ok(())
}

impl WorkerConfig {
    /// Checks every bound; the error names the flag.
    pub fn validate(&self) -> Result<(), ExecError> {
        let invalid = |message: String| ExecError::Invalid { name: "worker".into(), message };
        self.body.validate().map_err(invalid)?;
        self.server.validate().map_err(invalid)?;
        if self.next.len() > MAX_NEXT_PEERS {
            return Err(invalid(format!("--next names {} peers, more than {MAX_NEXT_PEERS}", self.next.len())));
        }
        for (i, (name, _)) in self.next.iter().enumerate() {
            chain::check_peer_name(name).map_err(|m| invalid(format!("--next: {m}")))?;
            if self.next[..i].iter().any(|(other, _)| other == name) {
                return Err(invalid(format!("--next names peer `{name}` twice")));
            }
        }
        if self.next_timeout.is_zero() || self.next_timeout > MAX_NEXT_TIMEOUT {
            return Err(invalid(format!("--next-timeout-ms must be in 1..={}, got {}", MAX_NEXT_TIMEOUT.as_millis(), self.next_timeout.as_millis())));
        }
        check_admission(self.max_queue, self.max_memory_bytes).map_err(invalid)
    }
}

struct WorkerState {
    config: WorkerConfig,
    budget: MemoryBudget,
    /// Inferences admitted (computing or queued for the compute slot): `max_queue` places.
    admission: Arc<tokio::sync::Semaphore>,
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

/// Serves until `shutdown` completes, then drains within `config.server`'s bounds.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: WorkerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Drained, ExecError> {
    config.validate()?;
    let device = config.device.device()?;
    let token: http::Token = config.token.as_deref().map(Arc::from);
    let limits = config.server;
    let state = Arc::new(WorkerState {
        budget: MemoryBudget::new(config.max_memory_bytes),
        admission: Arc::new(tokio::sync::Semaphore::new(config.max_queue)),
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
        .layer(axum::middleware::from_fn_with_state(token, http::require_token))
        .with_state(state);
    server::serve(listener, app, limits, shutdown).await.map_err(|e| ExecError::io("worker listener", e))
}

/// `rlsched_stages` tells a client that stage ranges, variants and int8 intermediates work here
/// and that replies carry the worker's own timing: what no other server takes.
async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "rlsched",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": [crate::kserve::client::BINARY_EXTENSION, crate::kserve::client::RLSCHED_EXTENSION],
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

async fn model_ready(Path(model): Path<String>) -> Result<StatusCode, ApiError> {
    workload_of(&model).map(|_| StatusCode::OK)
}

async fn model_metadata(Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(http::model_metadata(workload_of(&model)?)?))
}

async fn infer(
    State(state): State<Arc<WorkerState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let workload = workload_of(&model)?;
    let (parsed, _reservation) = http::read_infer(body, &headers, &state.config.body, &state.budget, "worker").await?;
    // The clock starts once the whole body is here: reading it is the upload, the client's part.
    let received = Instant::now();
    state.received.fetch_add(1, Ordering::SeqCst);
    let _admitted = state.admission.clone().try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("worker busy: all {} queue places are taken (--max-queue); retry later", state.config.max_queue),
        )
    })?;
    let http::ParsedInfer { request, input, input_name } = parsed;
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
    let route = match protocol::string_parameter(&request, "next_hops")? {
        None => Vec::new(),
        Some(text) => chain::parse_route(&text, start, stages)?,
    };
    // a name this worker was not given is refused: a request never chooses where we connect
    if let Some(hop) = route.first() {
        if !state.config.next.iter().any(|(name, _)| *name == hop.peer) {
            let known: Vec<&str> = state.config.next.iter().map(|(name, _)| name.as_str()).collect();
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("parameter `next_hops`: this worker has no next hop named `{}` (it has: {})", hop.peer, if known.is_empty() { "none".to_string() } else { known.join(", ") }),
            ));
        }
    }

    let end = route.first().map_or(stages, |hop| hop.start);
    let computed = match end > start {
        true => compute(&state, network.clone(), start, end, input, received).await?,
        // a relay: nothing to compute here, the input goes on as it came
        false => Computed { output: input, queue_length: state.queued.now(), in_flight: 0, queue_ms: 0.0, compute_ms: 0.0 },
    };
    let (output, forward) = match route.split_first() {
        None => (computed.output, None),
        Some((hop, rest)) => {
            let forward_start = Instant::now();
            let (output, reports, fallback) = forward(&state, &network, &model, &variant, hop, rest, computed.output).await?;
            (output, Some((forward_start.elapsed().as_secs_f64() * 1e3, reports, fallback)))
        }
    };
    let (queue_length, in_flight, queue_ms, compute_ms) = (computed.queue_length, computed.in_flight, computed.queue_ms, computed.compute_ms);

    let mut parameters = Map::new();
    parameters.insert("queue_length".into(), json!(queue_length));
    parameters.insert("in_flight".into(), json!(in_flight));
    parameters.insert("queue_ms".into(), json!(queue_ms));
    parameters.insert("compute_ms".into(), json!(compute_ms));
    parameters.insert("start_stage".into(), json!(start));
    parameters.insert("variant".into(), json!(variant));
    if let Some((forward_ms, reports, fallback)) = forward {
        parameters.insert("end_stage".into(), json!(if fallback.is_some() { stages } else { end }));
        parameters.insert("forward_ms".into(), json!(forward_ms));
        parameters.insert("hops".into(), json!(serde_json::to_string(&reports).map_err(ApiError::internal)?));
        if let Some(fallback) = fallback {
            parameters.insert("fallback".into(), json!(fallback));
        }
    }
    http::infer_response(model, request.id, parameters, &output, binary_out)
}

/// One computation on the worker's compute slot, as it reports it.
struct Computed {
    output: WireTensor,
    /// The queue ahead when it arrived.
    queue_length: usize,
    /// Computations at once, this one included (1, unless the slot is broken).
    in_flight: usize,
    /// From `since` until the slot was ours.
    queue_ms: f64,
    compute_ms: f64,
}

/// Runs stages `start..end` of `network` once the compute slot is free.
async fn compute(state: &Arc<WorkerState>, network: Arc<Network>, start: usize, end: usize, input: WireTensor, since: Instant) -> Result<Computed, ApiError> {
    let (queue_slot, queue_length) = state.queued.enter();
    let permit = state
        .compute
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    drop(queue_slot);
    let queue_ms = since.elapsed().as_secs_f64() * 1e3;
    let compute_start = Instant::now();
    let result = {
        let device = state.networks.device().clone();
        let in_flight = state.in_flight.clone();
        let slowdown = state.config.slowdown;
        tokio::task::spawn_blocking(move || {
            // The permit and the in-flight count live as long as the computation, even when the
            // handler awaiting it is dropped; the count is taken inside the permit, so its peak
            // shows whether two computations ever overlapped.
            let (computing, before) = in_flight.enter();
            let started = Instant::now();
            let output = network.run_wire(start, end, &input, &device);
            if slowdown > 1.0 {
                std::thread::sleep(started.elapsed().mul_f64(slowdown - 1.0));
            }
            drop(computing);
            drop(permit);
            (before + 1, output)
        })
        .await
    };
    let (in_flight, result) = result.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let output: WireTensor = result?;
    let compute_ms = compute_start.elapsed().as_secs_f64() * 1e3;
    Ok(Computed { output, queue_length, in_flight, queue_ms, compute_ms })
}

/// Sends stages `hop.start..` to `hop.peer` with the rest of the route, within the next-hop
/// timeout: (output, the report of every hop from there on, why it fell back). A peer that
/// fails, hangs, or answers what the model does not give is abandoned, and the remaining stages
/// run here; the request is still answered.
#[allow(clippy::too_many_arguments)]
async fn forward(
    state: &Arc<WorkerState>,
    network: &Arc<Network>,
    model: &str,
    variant: &str,
    hop: &Hop,
    rest: &[Hop],
    intermediate: WireTensor,
) -> Result<(WireTensor, Vec<HopReport>, Option<String>), ApiError> {
    let client = state.config.next.iter().find(|(name, _)| *name == hop.peer).map(|(_, client)| client);
    let timeout = state.config.next_timeout;
    let attempt = async {
        let client = client.ok_or_else(|| ExecError::Remote(format!("no next hop named `{}`", hop.peer)))?;
        let reply = tokio::time::timeout(timeout, client.infer_route(model, variant, hop.start, &intermediate, None, rest))
            .await
            .map_err(|_| ExecError::Remote(format!("next hop `{}` gave no answer within {} ms (--next-timeout-ms)", hop.peer, timeout.as_millis())))??;
        let expected = network.output_shape(intermediate.shape[0]);
        if reply.output.shape != expected || reply.output.datatype() != crate::DataType::Fp32 {
            return Err(ExecError::Remote(format!(
                "next hop `{}` answered a {} tensor of shape {:?}, but `{model}` gives FP32 {expected:?}",
                hop.peer,
                reply.output.datatype().name(),
                reply.output.shape
            )));
        }
        let end_stage = reply.end_stage.unwrap_or(network.stage_count());
        if end_stage < hop.start || end_stage > network.stage_count() || reply.hops.len() > rest.len() {
            return Err(ExecError::Remote(format!("next hop `{}` reports an impossible route (end stage {end_stage}, {} hops)", hop.peer, reply.hops.len())));
        }
        let mut reports = vec![reply.hop_report(hop.peer.clone(), hop.start, end_stage)];
        reports.extend(reply.hops);
        Ok::<_, ExecError>((reply.output, reports))
    };
    match attempt.await {
        Ok((output, reports)) => Ok((output, reports, None)),
        Err(error) => {
            let computed = compute(state, network.clone(), hop.start, network.stage_count(), intermediate, Instant::now()).await?;
            Ok((computed.output, Vec::new(), Some(format!("next hop `{}` abandoned: {error}", hop.peer))))
        }
    }
}
