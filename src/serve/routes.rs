//! The HTTP routes of `rlsched serve`: the Open Inference Protocol's health, readiness,
//! metadata and infer (JSON or binary tensors), and `GET /metrics`. Infer reads its body within
//! the body limits and the memory budget, then is admitted into a bounded set of slots; when
//! they are all taken the answer is a 503 that says so, never a silent drop.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rlsched_env::config::MAX_MS;

/// The smallest SLO a request may ask for, as the config's bound: a smaller one (5e-324 was
/// accepted) turns the reward infinite and poisons online learning.
pub const MIN_SLO_MS: f64 = 1e-3;
use rlsched_executor::kserve::http::{self, ApiError};
use rlsched_executor::kserve::protocol::{self, InferRequest};
use rlsched_executor::plan::Execution;
use serde_json::{json, Map, Value};

use crate::serve::decide::{plan_worker, Objective, ServedModel};
use crate::serve::metrics::{CodeLabels, PlanLabels, StrategyLabels};
use crate::serve::ServeState;

pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "rlsched-serve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

fn served<'a>(state: &'a ServeState, model: &str) -> Result<&'a ServedModel, ApiError> {
    state.models.iter().find(|m| m.workload.name() == model).ok_or_else(|| {
        let names: Vec<&str> = state.models.iter().map(|m| m.workload.name()).collect();
        ApiError::new(StatusCode::NOT_FOUND, format!("model `{model}` is not served here; served models: {}", names.join(", ")))
    })
}

pub async fn model_ready(State(state): State<Arc<ServeState>>, Path(model): Path<String>) -> Result<StatusCode, ApiError> {
    served(&state, &model).map(|_| StatusCode::OK)
}

pub async fn model_metadata(State(state): State<Arc<ServeState>>, Path(model): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(http::model_metadata(served(&state, &model)?.workload)?))
}

pub async fn metrics(State(state): State<Arc<ServeState>>) -> Result<Response, ApiError> {
    let text = state.metrics.encode().map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

/// Counts every answer to an infer request by its status, refusals included.
pub async fn count_responses(State(state): State<Arc<ServeState>>, request: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(request).await;
    state.metrics.responses.get_or_create(&CodeLabels { code: response.status().as_u16() }).inc();
    response
}

/// An optional number parameter that `valid` accepts (`expected` says what it must be).
fn number_parameter(request: &InferRequest, key: &str, valid: impl Fn(f64) -> bool, expected: &str) -> Result<Option<f64>, ApiError> {
    match request.parameters.as_ref().and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if valid(x) => Ok(Some(x)),
            _ => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("parameter `{key}` must be {expected}, got {v}"))),
        },
    }
}

/// Keeps the in-flight gauge up while a request is admitted.
struct InFlight(Arc<ServeState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

pub async fn infer(
    State(state): State<Arc<ServeState>>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let served = served(&state, &model)?;
    // The body is read before a request slot is taken: a client that declares a body and
    // sends it slowly (or never) holds a connection and the bytes it sent, never a slot.
    let (parsed, _reservation) = http::read_infer(body, &headers, &state.body, &state.budget, "server").await?;
    let _slot = state.admission.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("server busy: all {} request slots are taken (--max-queue); retry later", state.max_queue),
        )
    })?;
    state.metrics.in_flight.inc();
    let _in_flight = InFlight(state.clone());
    let http::ParsedInfer { request, input, input_name } = parsed;
    let objective = Objective {
        slo_ms: number_parameter(&request, "slo_ms", |x| (MIN_SLO_MS..=MAX_MS).contains(&x), &format!("a number of milliseconds in {MIN_SLO_MS}..={MAX_MS}"))?,
        min_accuracy: number_parameter(&request, "min_accuracy", |x| (0.0..=1.0).contains(&x), "a fraction in 0..=1")?,
    };
    let binary = protocol::wants_binary_output(&request)?;
    // A bad input costs no decision and no device time.
    // built when serving started, so this is a cache lookup
    let network = state.decider.executor.network(served.workload, served.base.candidates[0].plan.variant())?;
    network
        .check_input(0, &input.shape, input.datatype())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("input `{input_name}`: {e}")))?;

    if let Some(chain) = &state.chain {
        if let Some(index) = chain.workload(served.workload) {
            let (parameters, run) = chain.serve(&state.decider.executor, &state.decider.policy, &state.decider.device, index, input, objective.slo_ms, objective.min_accuracy).await?;
            let labels = PlanLabels { workload: model.clone(), strategy: "chain".into(), variant: parameters["variant"].as_str().unwrap_or("").into() };
            state.metrics.requests.get_or_create(&labels).inc();
            return http::infer_response(model, request.id, parameters, &run.output, binary);
        }
    }
    let choice = state.decider.decide(served, objective);
    state.metrics.decision.observe(choice.decision_us / 1e6);
    let candidate = &choice.model.candidates[choice.index];
    let expected_local = if candidate.cut > 0 { candidate.expected_local_ms(choice.load) } else { 0.0 };
    let queued = state.decider.device.enqueue(expected_local, if candidate.uses_worker() { candidate.bytes_up } else { 0.0 });
    let batch = input.shape.first().copied().unwrap_or(1);
    let deadline = state.decider.config.deadline.remote(choice.model.mix.slo_ms, choice.predicted.remote_path_ms());
    let run: Execution = state.decider.executor.execute(served.workload, &candidate.plan, input, deadline).await?;
    drop(queued);
    let b = &run.breakdown;
    let worker = plan_worker(&candidate.plan);
    if let Some(w) = worker {
        if b.fallback.is_some() {
            state.metrics.fallbacks.inc();
            state.decider.board.set_up(w, false, &state.metrics);
        } else if let Some(queue) = b.worker_queue_length {
            state.decider.board.set_report(w, queue as f64, state.decider.executor.now_s());
        }
    }
    let slo_ms = choice.model.mix.slo_ms;
    let config = &state.decider.config;
    let reward = config.reward.reward(candidate.accuracy, b.total_ms, slo_ms, b.bytes_up as f64);
    let labels = PlanLabels {
        workload: model.clone(),
        strategy: candidate.kind().into(),
        variant: candidate.plan.variant().into(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state.metrics.latency.get_or_create(&StrategyLabels { strategy: candidate.kind().into() }).observe(b.total_ms / 1e3);
    if b.total_ms > slo_ms {
        state.metrics.slo_misses.inc();
    }
    state.correct_demand(served, &choice, b, batch);
    if let Some(online) = &state.online {
        online.record(&choice, reward);
    }

    let mut parameters = Map::new();
    parameters.insert("strategy".into(), json!(candidate.kind()));
    parameters.insert("variant".into(), json!(candidate.plan.variant()));
    parameters.insert("cut".into(), json!(candidate.cut));
    parameters.insert("worker".into(), json!(worker));
    parameters.insert("int8".into(), json!(matches!(candidate.plan, rlsched_executor::plan::Plan::Split { int8: true, .. })));
    parameters.insert("decision_us".into(), json!(choice.decision_us));
    parameters.insert("decision_inputs".into(), json!(choice.inputs));
    parameters.insert("device_wait_ms".into(), json!(b.device_wait_ms));
    insert_breakdown(&mut parameters, b, slo_ms, candidate.accuracy);
    let floor = choice.model.mix.min_accuracy;
    if candidate.accuracy < floor {
        // no variant reaches the floor: the most accurate one that runs answered, and the
        // client is told rather than left to believe the floor held
        parameters.insert("accuracy_floor_unmet".into(), json!(true));
        parameters.insert("min_accuracy".into(), json!(floor));
    }
    parameters.insert("reward".into(), json!(reward));
    if let Some(reason) = &b.fallback {
        parameters.insert("fallback".into(), json!(reason));
    }
    http::infer_response(model, request.id, parameters, &run.output, binary)
}

/// Where a served request's time went, its objective and the accuracy it was served at, as the
/// response's parameters (the plain and the chain paths alike).
pub(crate) fn insert_breakdown(parameters: &mut Map<String, serde_json::Value>, b: &rlsched_executor::plan::Breakdown, slo_ms: f64, accuracy: f64) {
    parameters.insert("local_ms".into(), json!(b.local_ms));
    parameters.insert("upload_ms".into(), json!(b.upload_ms));
    parameters.insert("queue_ms".into(), json!(b.remote_queue_ms));
    parameters.insert("remote_ms".into(), json!(b.remote_compute_ms));
    parameters.insert("download_ms".into(), json!(b.download_ms));
    parameters.insert("total_ms".into(), json!(b.total_ms));
    parameters.insert("slo_ms".into(), json!(slo_ms));
    parameters.insert("accuracy".into(), json!(accuracy));
}
