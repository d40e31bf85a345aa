//! `LiveEnv`: the same interface as `ReplayEnv`, but each step executes the chosen plan for
//! real — burn inference on this machine, HTTP to an `rlsched worker` (through `rlsched link`
//! when the experiment needs a controlled network). Latencies are measured, not modelled, and
//! the state comes from the real monitor and the executor's link estimate. There is no
//! hindsight oracle here.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rlsched_executor::monitor::ResourceMonitor;
use rlsched_executor::plan::PlanExecutor;
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::WireTensor;

use crate::decision::Decision;
use crate::obs::{predict, Obs};
use crate::queues::DeviceQueues;
use crate::measurements::Measurements;
use crate::request::{Request, RequestWorld};
use crate::config::EnvConfig;
use crate::scenario::{Scenario, WorkloadModel};
use crate::{Env, EnvError, Info, Step};

/// What the real system shows when a request arrives.
#[derive(Clone, Copy, Debug)]
pub struct LiveReading {
    /// Index of the request's workload in the scenario.
    pub workload: usize,
    /// The monitor's contention signal: runnable tasks of other processes per core.
    pub load: f64,
    /// The CPU share other processes took, 0..1 (`ResourceSample::other_utilization`).
    pub utilization: f64,
    /// Whether the worker answered its last probe.
    pub worker_up: bool,
    /// The executor's clock, seconds.
    pub now: f64,
}

/// Fills `obs` for a live request: the one way a real device (`LiveEnv`, `rlsched serve`)
/// turns its readings, measurements and queues into the observation the simulator trains on.
pub fn observe(obs: &mut Obs, config: &EnvConfig, model: &WorkloadModel, reading: LiveReading, measurements: &Measurements, queues: DeviceQueues) {
    let request = Request {
        workload: reading.workload,
        observed_load: reading.load,
        observed_utilization: reading.utilization,
        world: RequestWorld {
            time_s: reading.now,
            device_load: reading.load,
            worker_queue: measurements.reported_queue,
            worker_up: reading.worker_up,
            device_noise: Vec::new(),
            worker_noise: Vec::new(),
        },
    };
    obs.fill(config, model, &request, measurements, queues, reading.now);
}

pub struct LiveEnv {
    scenario: Arc<Scenario>,
    executor: Arc<PlanExecutor>,
    runtime: tokio::runtime::Runtime,
    monitor: ResourceMonitor,
    rng: SmallRng,
    measurements: Measurements,
    request: Option<(Request, WireTensor)>,
    remaining: usize,
    reported_queue: (f64, Option<f64>),
    obs: Obs,
}

impl LiveEnv {
    /// `scenario` gives the request mix, the plans (from the profiles) and the reward; the
    /// executor runs them, with its worker 0 as the plans' worker. Build the executor
    /// `with_estimator(scenario.config.estimator())` so its link features match the simulator's.
    pub fn new(scenario: Arc<Scenario>, executor: Arc<PlanExecutor>) -> Result<Self, EnvError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| EnvError::Config(format!("starting the async runtime: {e}")))?;
        let obs = Obs::new(&scenario.config, scenario.max_plans);
        Ok(Self {
            scenario,
            executor,
            runtime,
            monitor: ResourceMonitor::new(),
            rng: SmallRng::seed_from_u64(0),
            measurements: Measurements::default(),
            request: None,
            remaining: 0,
            reported_queue: (0.0, None),
            obs,
        })
    }

    pub fn observation(&self) -> &Obs {
        &self.obs
    }

    /// The executor's clock, so link samples and reports share one time axis.
    fn now(&self) -> f64 {
        self.executor.now_s()
    }

    /// Draws the next request and observes the real system for it.
    fn next_request(&mut self) -> Result<(), EnvError> {
        let scenario = self.scenario.clone();
        let workload = scenario.pick_workload(&mut self.rng);
        let model = &scenario.workloads[workload];
        let input = model.mix.name.parse::<Workload>()?.example_input(self.rng.random());
        // the readiness probe's round trip is also the RTT sample
        let worker_up = !self.executor.workers().is_empty() && self.runtime.block_on(self.executor.probe(0)).is_ok();
        let sample = self.monitor.sample();
        let now = self.now();
        let request = Request {
            workload,
            observed_load: sample.runnable_per_core,
            observed_utilization: sample.other_utilization,
            world: RequestWorld {
                time_s: now,
                device_load: sample.runnable_per_core,
                worker_queue: self.reported_queue.0,
                worker_up,
                device_noise: Vec::new(),
                worker_noise: Vec::new(),
            },
        };
        let link = self.executor.link_estimates().into_iter().next().unwrap_or_default();
        self.measurements = Measurements::observed(link, self.reported_queue.0, self.reported_queue.1);
        // one request runs at a time here, so nothing is queued ahead of it
        let reading = LiveReading { workload, load: sample.runnable_per_core, utilization: sample.other_utilization, worker_up, now };
        observe(&mut self.obs, &scenario.config, model, reading, &self.measurements, DeviceQueues::default());
        self.request = Some((request, input));
        Ok(())
    }

    /// What a scheduler may read for the current request (no hindsight: this is real).
    pub fn decision(&self) -> Option<Decision<'_>> {
        let (request, _) = self.request.as_ref()?;
        Some(Decision {
            model: &self.scenario.workloads[request.workload],
            obs: &self.obs,
            observed_load: request.observed_load,
            measurements: &self.measurements,
            queues: DeviceQueues::default(),
            config: &self.scenario.config,
            hindsight: None,
        })
    }
}

impl Env for LiveEnv {
    fn reset(&mut self, seed: u64) -> Result<(Obs, Info), EnvError> {
        self.rng = SmallRng::seed_from_u64(seed);
        self.remaining = self.scenario.config.requests_per_episode;
        self.next_request()?;
        Ok((self.obs.clone(), Info::default()))
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        let (request, input) = self.request.take().ok_or(EnvError::NotRunning)?;
        if action >= self.obs.n_plans || !self.obs.mask[action] {
            let valid = self.obs.mask.iter().filter(|m| **m).count();
            self.request = Some((request, input));
            return Err(EnvError::InvalidAction { action, valid, total: self.obs.n_plans });
        }
        let scenario = self.scenario.clone();
        let model = &scenario.workloads[request.workload];
        let candidate = &model.candidates[action];
        let workload: Workload = model.mix.name.parse()?;
        // the remote path's deadline from the plan's prediction, as the simulator derives it
        let config = &scenario.config;
        let mbps = self.measurements.link.harmonic_mbps();
        let predicted = predict(candidate, request.observed_load, mbps, self.measurements.link.rtt_ms(), self.measurements.reported_queue, DeviceQueues::default(), config);
        let deadline = config.deadline.remote(model.mix.slo_ms, predicted.remote_path_ms());
        let run = self.runtime.block_on(self.executor.execute(workload, &candidate.plan, input, deadline))?;
        let b = &run.breakdown;
        if let Some(queue) = b.worker_queue_length {
            self.reported_queue = (queue as f64, Some(self.now()));
        }
        let outcome = b.clone();
        let reward = scenario.config.reward.reward(candidate.accuracy, b.total_ms, model.mix.slo_ms, b.bytes_up as f64);
        self.remaining = self.remaining.saturating_sub(1);
        let terminated = self.remaining == 0;
        if !terminated {
            self.next_request()?;
        }
        Ok(Step {
            obs: self.obs.clone(),
            reward,
            terminated,
            truncated: false,
            info: Info {
                workload: model.mix.name.clone(),
                plan: Some(candidate.plan.clone()),
                candidate: action,
                outcome,
                accuracy: candidate.accuracy,
                compressed: candidate.compressed,
                slo_ms: model.mix.slo_ms,
                oracle_reward: None,
                probe_bytes: 0,
            },
        })
    }
}
