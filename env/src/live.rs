//! `LiveEnv`: the same interface as `ReplayEnv`, but each step executes the chosen plan for
//! real — burn inference on this machine, HTTP to an `rlsched worker` (through `rlsched link`
//! when the experiment needs a controlled network). Latencies are measured, not modelled, and
//! the state comes from the real monitor and the executor's link estimate. There is no
//! hindsight oracle here.

use std::sync::Arc;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rlsched_executor::monitor::ResourceMonitor;
use rlsched_executor::plan::PlanExecutor;
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::WireTensor;

use crate::obs::Obs;
use crate::measurements::Measurements;
use crate::request::{Request, RequestWorld};
use crate::scenario::Scenario;
use crate::{Env, EnvError, Info, Step};

pub struct LiveEnv {
    scenario: Arc<Scenario>,
    executor: Arc<PlanExecutor>,
    runtime: tokio::runtime::Runtime,
    monitor: ResourceMonitor,
    rng: SmallRng,
    started: Instant,
    request: Option<(Request, WireTensor)>,
    remaining: usize,
    reported_queue: (f64, Option<f64>),
    obs: Obs,
}

impl LiveEnv {
    /// `scenario` gives the request mix, the plans (from the profiles) and the reward; the
    /// executor runs them, with its worker 0 as the plans' worker.
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
            started: Instant::now(),
            request: None,
            remaining: 0,
            reported_queue: (0.0, None),
            obs,
        })
    }

    pub fn observation(&self) -> &Obs {
        &self.obs
    }

    fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Draws the next request and observes the real system for it.
    fn next_request(&mut self) -> Result<(), EnvError> {
        let scenario = self.scenario.clone();
        let workload = scenario.pick_workload(&mut self.rng);
        let model = &scenario.workloads[workload];
        let input = model.mix.name.parse::<Workload>()?.example_input(self.rng.random());
        let worker_up = match self.executor.workers().first() {
            Some(worker) => self.runtime.block_on(worker.probe()).is_ok(),
            None => false,
        };
        let sample = self.monitor.sample();
        let now = self.now();
        let request = Request {
            workload,
            observed_load: sample.cpu_utilization,
            world: RequestWorld {
                time_s: now,
                device_load: sample.cpu_utilization,
                worker_queue: self.reported_queue.0,
                worker_up,
                device_noise: Vec::new(),
                worker_noise: Vec::new(),
            },
        };
        let link = self.executor.link_estimates().into_iter().next();
        let measurements = Measurements::observed(
            link.iter().flat_map(|l| l.recent.iter().map(|s| s.mbps)),
            link.as_ref().filter(|l| l.transfers > 0).map(|_| now),
            link.as_ref().and_then(|l| l.rtt_ms),
            self.reported_queue.0,
            self.reported_queue.1,
        );
        self.obs.fill(&scenario.config, model, &request, &measurements, now);
        self.request = Some((request, input));
        Ok(())
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
        let run = self.runtime.block_on(self.executor.execute(workload, &candidate.plan, input))?;
        let b = &run.breakdown;
        if let Some(queue) = b.worker_queue_length {
            self.reported_queue = (queue as f64, Some(self.now()));
        }
        let outcome = b.clone();
        let reward = scenario.config.reward.reward(candidate.accuracy, b.total_ms, model.mix.slo_ms);
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
