//! `rlsched serve`: an Open Inference Protocol (KServe V2 REST) front end that schedules every
//! request with the learned policy and runs it locally, split with a worker, or offloaded.
//! Like the worker, [`run`] takes a bound listener and a shutdown future, so tests start it on
//! `127.0.0.1:0`; shutting down stops accepting, then drains the requests in flight within a
//! deadline (`rlsched_executor::kserve::server`).
//!
//! - `decide`: the observation (shared live code) and the policy's choice;
//! - `device`: the device's load and its own queues;
//! - `workers`: each worker's health and reported queue;
//! - `routes`: the HTTP routes, admission and the response's plan and breakdown;
//! - `metrics`: Prometheus metrics;
//! - `online` (`--online`): transitions, PPO updates swapped in, guardrail, checkpoints;
//! - `demand`: measured-over-predicted corrections of the plans' predictions (the device's
//!   always, the worker's with `--online`).

pub mod chain;
pub mod decide;
pub mod demand;
pub mod device;
pub mod metrics;
pub mod online;
pub mod routes;
pub mod workers;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use rlsched_agent::checkpoint::{self, CheckpointError};
use rlsched_agent::online::OnlineLearner;
use rlsched_agent::policy::PolicyScheduler;
use rlsched_env::{EnvConfig, EnvError, Scenario};
use rlsched_executor::kserve::budget::MemoryBudget;
use rlsched_executor::kserve::client::{ClientLimits, WorkerClient};
use rlsched_executor::kserve::http::{self, ApiError, BodyLimits};
use rlsched_executor::kserve::server::{self, ServerLimits};
use rlsched_executor::kserve::worker::{self, DEFAULT_MEMORY_BYTES};
use rlsched_executor::plan::PlanExecutor;
use rlsched_executor::{DeviceChoice, ExecError, Workload};

use crate::serve::decide::{Choice, Decider, ServedModel};
use crate::serve::device::DeviceState;
use crate::serve::metrics::Metrics;
use crate::serve::workers::WorkerBoard;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Env(#[from] EnvError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Config(String),
}

#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The scenario: the workloads served (`[env.workloads]`: name, SLO, accuracy floor), their
    /// profiles, the reward and the estimator's settings.
    pub env: EnvConfig,
    pub checkpoint: PathBuf,
    /// Base URLs of the workers (`http://host:port`), in plan order.
    pub workers: Vec<String>,
    /// When set, infer and `/metrics` need `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Size and time bounds on a request body.
    pub body: BodyLimits,
    /// Connections, slow heads, idle keep-alive, shutdown's drain.
    pub server: ServerLimits,
    /// Memory all requests' bodies and their decoding may hold at once (503 past it).
    pub max_memory_bytes: usize,
    /// What is taken from a worker: reply size, probe time.
    pub client: ClientLimits,
    /// Requests admitted at once (running or waiting), counted once their body has arrived;
    /// past it, 503.
    pub max_queue: usize,
    /// Longest a remote call may take before it falls back to local.
    pub worker_timeout: Duration,
    /// How often every worker is probed (health, RTT, queue).
    pub poll_interval: Duration,
    pub device: DeviceChoice,
    /// `--online`: learn from the requests served (`[online]`), with PPO's losses from
    /// `agent.ppo`; TensorBoard files and checkpoints go to `runs_dir`.
    pub online: Option<rlsched_agent::OnlineConfig>,
    /// Demand estimation's settings (`[online]`'s `demand_*`), used with and without `--online`.
    pub demand: demand::DemandSettings,
    pub agent: rlsched_agent::AgentConfig,
    pub runs_dir: PathBuf,
    /// `--chain`: the chain after the device (needs `[[env.nodes]]`), its workloads decided by
    /// the policy or the optimal static placement (`serve::chain`).
    pub chain: Option<chain::ChainSpec>,
}

impl ServeConfig {
    /// Checks every bound; the error names the flag.
    pub fn validate(&self) -> Result<(), ServeError> {
        self.body.validate().map_err(ServeError::Config)?;
        self.server.validate().map_err(ServeError::Config)?;
        worker::check_admission(self.max_queue, self.max_memory_bytes).map_err(ServeError::Config)?;
        server::check_timeouts(&[
            ("--worker-timeout-ms", self.worker_timeout),
            ("--poll-ms", self.poll_interval),
            ("--probe-timeout-ms", self.client.probe_timeout),
        ])
        .map_err(ServeError::Config)?;
        if !(1..=http::MAX_BODY_BYTES).contains(&self.client.max_reply_bytes) {
            return Err(ServeError::Config(format!(
                "--max-reply-bytes must be in 1..={}, got {}",
                http::MAX_BODY_BYTES,
                self.client.max_reply_bytes
            )));
        }
        Ok(())
    }

    pub fn new(env: EnvConfig, checkpoint: PathBuf) -> Self {
        Self {
            env,
            checkpoint,
            workers: Vec::new(),
            token: None,
            body: BodyLimits::default(),
            server: ServerLimits::default(),
            max_memory_bytes: DEFAULT_MEMORY_BYTES,
            client: ClientLimits::default(),
            max_queue: 64,
            worker_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            device: DeviceChoice::Flex,
            online: None,
            demand: Default::default(),
            agent: Default::default(),
            runs_dir: PathBuf::from("runs/serve"),
            chain: None,
        }
    }
}

/// What one serving run did.
#[derive(Clone, Debug, Default)]
pub struct ServeSummary {
    /// Infer requests answered, with any status.
    pub answered: u64,
    /// Connections still busy at the drain deadline, and cut.
    pub cut: usize,
}

pub struct ServeState {
    pub decider: Decider,
    pub models: Vec<ServedModel>,
    pub metrics: Arc<Metrics>,
    pub admission: Arc<tokio::sync::Semaphore>,
    pub max_queue: usize,
    pub body: BodyLimits,
    pub budget: MemoryBudget,
    pub online: Option<Arc<online::Online>>,
    /// Measured over predicted time: the device's always, the worker's with `--online`.
    pub demand: Mutex<demand::Demand>,
    pub chain: chain::Chain,
}

impl ServeState {
    /// Folds a finished request into demand estimation and, when a factor moved, rebuilds its
    /// model's corrected plans, which the next decision reads.
    pub fn correct_demand(&self, served: &ServedModel, choice: &Choice, measured: &rlsched_executor::plan::Breakdown, batch: usize) {
        let mut demand = self.demand.lock().expect("demand lock");
        let candidate = &served.base.candidates[choice.index];
        if !demand.observe(served.index, choice.index, candidate, &choice.predicted, measured, batch) {
            return;
        }
        let candidates = (served.base.candidates.iter().enumerate())
            .map(|(plan, c)| {
                let [local, transfer, remote] = demand.factors(served.index, plan);
                c.corrected(local, remote, transfer)
            })
            .collect();
        let mut current = served.current.write().expect("model lock");
        *current = Arc::new(decide::copy_model(&current, candidates));
    }
}

/// Builds the serving state: the scenario's workloads (plans per worker), the policy, the
/// executor and its workers.
pub fn state(config: &ServeConfig) -> Result<ServeState, ServeError> {
    config.validate()?;
    let mut scenario = Scenario::load(&config.env, &config.env.validation_traces)?;
    let device = burn::tensor::Device::flex();
    let (policy, sidecar) = checkpoint::load(&config.checkpoint, &device)?;
    let state_dim = rlsched_env::obs::state_dim(&config.env);
    if sidecar.state_dim != state_dim {
        return Err(ServeError::Config(format!(
            "{} has a state of {} features, but this config's observation has {state_dim} (env.history must match the training run's)",
            config.checkpoint.display(),
            sidecar.state_dim
        )));
    }
    let mut clients = config
        .workers
        .iter()
        .map(|url| Ok(WorkerClient::new(url, config.token.clone(), config.worker_timeout)?.with_limits(config.client)))
        .collect::<Result<Vec<_>, ServeError>>()?;
    // the chain's first worker comes after the policy's workers, which keep their indices
    let chain = match &config.chain {
        None => None,
        Some(spec) => {
            let serving = chain::ChainServing::new(spec, &config.env, clients.len())?;
            clients.push(WorkerClient::new(&spec.url, config.token.clone(), config.worker_timeout)?.with_limits(config.client));
            Some(Arc::new(serving))
        }
    };
    let executor = Arc::new(PlanExecutor::new(config.device, clients)?.with_estimator(config.env.estimator()));
    let workloads = std::mem::take(&mut scenario.workloads);
    let models = workloads
        .iter()
        .enumerate()
        .map(|(i, model)| {
            let workload: Workload = model.mix.name.parse()?;
            Ok(ServedModel::new(workload, i, model, config.workers.len()))
        })
        .collect::<Result<Vec<_>, ExecError>>()?;
    // Every variant a plan may run is built now, not on a request's time (VGG-16 takes seconds).
    for model in &models {
        for candidate in &model.base.candidates {
            executor.network(model.workload, candidate.plan.variant())?;
        }
    }
    if let Some(chain) = &chain {
        for w in &chain.scenario.workloads {
            for v in &w.variants {
                executor.network(w.workload, &v.name)?;
            }
        }
    }
    let metrics = Arc::new(Metrics::new());
    let board = Arc::new(WorkerBoard::new(config.workers.len()));
    let max_plans = models.iter().map(|m| m.base.candidates.len()).max().unwrap_or(1);
    let slot = Arc::new(Mutex::new(PolicyScheduler { policy, device }));
    let online = match &config.online {
        None => None,
        Some(settings) => {
            settings.validate().map_err(ServeError::Config)?;
            let autodiff = burn::tensor::Device::flex().autodiff();
            let (training_copy, _) = checkpoint::load(&config.checkpoint, &autodiff)?;
            let optimizer = checkpoint::load_optimizer(&config.checkpoint)?;
            let learner = OnlineLearner::new(training_copy, autodiff, optimizer, &config.agent.ppo, settings, sidecar.seed);
            let plan = online::CheckpointPlan { dir: config.runs_dir.join("checkpoint"), loaded: sidecar, env: config.env.clone(), max_plans };
            Some(online::Online::start(settings.clone(), learner, slot.clone(), metrics.clone(), plan, &config.runs_dir)?)
        }
    };
    Ok(ServeState {
        decider: Decider {
            config: config.env.clone(),
            policy: slot,
            executor,
            board,
            device: Arc::new(DeviceState::default()),
            explore: config.online.as_ref().map_or(0.0, |o| o.explore),
            online: config.online.is_some(),
            max_plans,
        },
        models,
        metrics,
        admission: Arc::new(tokio::sync::Semaphore::new(config.max_queue)),
        max_queue: config.max_queue,
        body: config.body,
        budget: MemoryBudget::new(config.max_memory_bytes),
        online,
        demand: Mutex::new(demand::Demand::new(config.demand, config.online.is_some())),
        chain,
    })
}

/// The router over a built state.
pub fn router(state: Arc<ServeState>, token: Option<&str>) -> Router {
    let token: http::Token = token.map(Arc::from);
    let infer = Router::new()
        .route("/v2/models/{model}/infer", post(routes::infer))
        .route_layer(axum::middleware::from_fn_with_state(token.clone(), http::require_token))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), routes::count_responses));
    let admin = Router::new()
        .route("/metrics", get(routes::metrics))
        .route_layer(axum::middleware::from_fn_with_state(token, http::require_token));
    Router::new()
        .route("/v2", get(routes::server_metadata))
        .route("/v2/health/live", get(|| async { axum::http::StatusCode::OK }))
        .route("/v2/health/ready", get(|| async { axum::http::StatusCode::OK }))
        .route("/v2/models/{model}", get(routes::model_metadata))
        .route("/v2/models/{model}/ready", get(routes::model_ready))
        .merge(infer)
        .merge(admin)
        .fallback(|| async { ApiError::new(axum::http::StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

/// A built state, ready to serve: what `run` needs, made before anything is printed or
/// bound, so that a bad checkpoint, config or worker URL fails at once.
pub struct Prepared {
    state: Arc<ServeState>,
    config: ServeConfig,
}

/// Builds everything serving needs (profiles, policy, networks, workers' clients).
pub fn prepare(config: ServeConfig) -> Result<Prepared, ServeError> {
    Ok(Prepared { state: Arc::new(state(&config)?), config })
}

/// Serves until `shutdown` completes, then drains: every request that has arrived is answered,
/// idle connections close, and what is still busy at `--drain-timeout-ms` is cut.
pub async fn run(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ServeSummary, ServeError> {
    serve_prepared(listener, prepare(config)?, shutdown).await
}

pub async fn serve_prepared(
    listener: tokio::net::TcpListener,
    prepared: Prepared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ServeSummary, ServeError> {
    let Prepared { state, config } = prepared;
    // The first probe before the first request: plans need to know which workers answer.
    let probe = config.env.probe.clone();
    workers::poll_once(&state.decider.board, &state.decider.executor, &state.metrics).await;
    let background = [
        tokio::spawn(workers::poll(
            state.decider.board.clone(),
            state.decider.executor.clone(),
            state.metrics.clone(),
            config.poll_interval,
            probe,
        )),
        tokio::spawn(state.decider.device.clone().monitor(Duration::from_millis(250))),
    ];
    let app = router(state.clone(), config.token.as_deref());
    let served = server::serve(listener, app, config.server, shutdown).await;
    background.iter().for_each(|task| task.abort());
    let drained = served.map_err(|e| ExecError::io("serve listener", e))?;
    // Every request has drained (or was cut at the deadline): the final checkpoint holds what
    // they taught.
    if let Some(online) = state.online.clone() {
        tokio::task::spawn_blocking(move || online.finish())
            .await
            .map_err(|e| ServeError::Config(e.to_string()))?
            .map_err(|e| ServeError::Config(format!("final online checkpoint: {e}")))?;
    }
    let answered = state.metrics.encode().ok().map_or(0, |text| count_responses(&text));
    Ok(ServeSummary { answered, cut: drained.cut })
}

/// Sum of the `rlsched_responses_total` samples in a Prometheus text exposition.
pub fn count_responses(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("rlsched_responses_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
