//! The decision path: the observation of one request, built by the shared live code
//! (`rlsched_env::live::observe`, the same features the simulator trains on) from the monitor's
//! load, each worker's link estimate, reported queue and health, and the device's own queues;
//! then the same `PolicyScheduler` as in the simulator picks a plan.
//!
//! A worker that is not an rlsched worker (its `GET /v2` does not list `rlsched_stages`) takes
//! full offloads of the reference variant only; its other plans are masked.
//!
//! With several workers every remote plan exists once per worker. Each worker's plans are
//! observed with that worker's link, queue and health (a dead worker's plans are masked); the
//! state vector is the first live worker's.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rlsched_agent::policy::PolicyScheduler;
use rlsched_env::candidates::Candidate;
use rlsched_env::live::{observe, LiveReading};
use rlsched_env::measurements::Measurements;
use rlsched_env::obs::{predict, Obs, Prediction, PLAN_FEATURES, REWARD_FEATURES};
use rlsched_env::queues::DeviceQueues;
use rlsched_env::scenario::WorkloadModel;
use rlsched_env::{Decision, EnvConfig};
use rlsched_executor::plan::{PlanExecutor, Plan};
use rlsched_executor::Workload;

use crate::serve::device::DeviceState;
use crate::serve::workers::WorkerBoard;

/// A workload as serving schedules it.
pub struct ServedModel {
    pub workload: Workload,
    /// Index in the scenario's mix.
    pub index: usize,
    /// The candidates from the profiles, remote ones once per worker.
    pub base: Arc<WorkloadModel>,
    /// `base` with demand estimation's corrections applied (`demand`: the device's time always,
    /// the worker's with `--online`).
    pub current: RwLock<Arc<WorkloadModel>>,
}

pub fn copy_model(model: &WorkloadModel, candidates: Vec<Candidate>) -> WorkloadModel {
    WorkloadModel { mix: model.mix.clone(), device: model.device.clone(), worker: model.worker.clone(), candidates }
}

/// The plan's worker, if it uses one.
pub fn plan_worker(plan: &Plan) -> Option<usize> {
    match plan {
        Plan::Local { .. } => None,
        Plan::Split { worker, .. } | Plan::Offload { worker, .. } | Plan::Chain { worker, .. } => Some(*worker),
    }
}

/// Whether any Open Inference Protocol server can run `plan`'s remote part: the whole model in
/// its reference variant, which is what a server that knows no stages or variants serves.
pub fn runs_whole(plan: &Plan) -> bool {
    matches!(plan, Plan::Offload { variant, .. } if variant == "fp32")
}

fn with_worker(plan: &Plan, w: usize) -> Plan {
    match plan.clone() {
        Plan::Split { variant, cut, int8, .. } => Plan::Split { variant, cut, worker: w, int8 },
        Plan::Offload { variant, .. } => Plan::Offload { variant, worker: w },
        Plan::Chain { variant, device_end, hops, int8, .. } => Plan::Chain { variant, device_end, worker: w, hops, int8 },
        local => local,
    }
}

impl ServedModel {
    /// `model`'s plans for `workers` workers (with none, remote plans stay, always masked).
    pub fn new(workload: Workload, index: usize, model: &WorkloadModel, workers: usize) -> Self {
        let mut candidates = Vec::new();
        for c in &model.candidates {
            if !c.uses_worker() {
                candidates.push(c.clone());
                continue;
            }
            for w in 0..workers.max(1) {
                let mut c = c.clone();
                c.plan = with_worker(&c.plan, w);
                candidates.push(c);
            }
        }
        let base = Arc::new(copy_model(model, candidates));
        Self { workload, index, current: RwLock::new(base.clone()), base }
    }

    pub fn current(&self) -> Arc<WorkloadModel> {
        self.current.read().expect("model lock").clone()
    }
}

/// A request's own objective, from its `parameters`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Objective {
    pub slo_ms: Option<f64>,
    pub min_accuracy: Option<f64>,
}

/// The chosen plan and what learning and reporting need of the decision.
pub struct Choice {
    pub model: Arc<WorkloadModel>,
    pub index: usize,
    pub obs: Obs,
    /// The chosen plan's prediction from its profile (no correction, no queues): what demand
    /// estimation compares the measurement with.
    pub predicted: Prediction,
    /// Runnable tasks of other processes per core at the decision (the contention signal).
    pub load: f64,
    pub queues: DeviceQueues,
    /// The policy's log-probability of the choice and its value estimate (online only).
    pub logprob: f64,
    pub value: f64,
    pub decision_us: f64,
    /// What the decision read, reported with the response so that a surprising choice can be
    /// traced to its inputs (serve keeps no log of its own).
    pub inputs: DecisionInputs,
}

/// The inputs behind one choice: the link estimates of the chosen plan's worker (the primary
/// worker's for a local plan), Mbit/s, none before a sample; the chosen plan's predicted reward
/// under each of them, as the estimates' veto compares them; and how many valid plans the veto
/// kept the policy off.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DecisionInputs {
    pub link_mbps: LinkReading,
    pub predicted_rewards: LinkReading<f32>,
    pub vetoed_plans: usize,
}

/// One value per bandwidth estimate, in the order the plan features hold them.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct LinkReading<T = Option<f64>> {
    pub harmonic: T,
    pub last: T,
    pub robust: T,
}

/// Everything a decision reads; shared by every request.
pub struct Decider {
    pub config: EnvConfig,
    /// The serving policy; online learning swaps a new one in under this lock.
    pub policy: Arc<Mutex<PolicyScheduler>>,
    pub executor: Arc<PlanExecutor>,
    pub board: Arc<WorkerBoard>,
    pub device: Arc<DeviceState>,
    /// Chance of sampling the plan from the policy rather than taking its best (online only).
    pub explore: f64,
    pub online: bool,
    /// Plans in the largest served model: every observation is padded to it, so that online
    /// learning can batch requests of different workloads.
    pub max_plans: usize,
}

impl Decider {
    pub fn decide(&self, served: &ServedModel, objective: Objective) -> Choice {
        let started = Instant::now();
        let mut model = served.current();
        if objective.slo_ms.is_some() || objective.min_accuracy.is_some() {
            let mut own = copy_model(&model, model.candidates.clone());
            own.mix.slo_ms = objective.slo_ms.unwrap_or(own.mix.slo_ms);
            own.mix.min_accuracy = objective.min_accuracy.unwrap_or(own.mix.min_accuracy);
            model = Arc::new(own);
        }
        let (load, utilization) = (self.device.load(), self.device.utilization());
        let queues = self.device.queues();
        let now = self.executor.now_s();
        let workers = self.board.len();
        // one snapshot per worker: the observation, the prediction and the report all read it,
        // whatever a concurrent request records meanwhile
        let measurements: Vec<Measurements> = (0..workers.max(1))
            .map(|w| {
                let (queue, at) = self.board.report(w);
                Measurements::observed(self.executor.link_estimate(w), queue, at)
            })
            .collect();
        let primary = (0..workers).find(|&w| self.board.up(w)).unwrap_or(0);
        let max_plans = self.max_plans;
        let reading = |w: usize| LiveReading { workload: served.index, load, utilization, worker_up: self.board.up(w), now };
        let primary_measurements = &measurements[primary];
        let mut obs = Obs::new(&self.config, max_plans);
        observe(&mut obs, &self.config, &model, reading(primary), primary_measurements, queues);
        for w in (0..workers).filter(|&w| w != primary) {
            let mut other = Obs::new(&self.config, max_plans);
            observe(&mut other, &self.config, &model, reading(w), &measurements[w], queues);
            for (i, c) in model.candidates.iter().enumerate() {
                if plan_worker(&c.plan) == Some(w) {
                    let row = i * PLAN_FEATURES..(i + 1) * PLAN_FEATURES;
                    obs.plans[row.clone()].copy_from_slice(&other.plans[row]);
                    obs.mask[i] = other.mask[i];
                }
            }
        }
        // Another server than rlsched's runs the model it serves, whole: its split plans and
        // other variants are masked (so is every remote plan of a worker not yet identified).
        for (i, c) in model.candidates.iter().enumerate() {
            if let Some(w) = plan_worker(&c.plan) {
                let rlsched = self.executor.workers().get(w).and_then(|client| client.info()).is_some_and(|info| info.stages);
                if !rlsched && !runs_whole(&c.plan) {
                    obs.mask[i] = false;
                }
            }
        }
        obs.keep_one_plan(&self.config, &model);
        let decision = Decision {
            model: &model,
            obs: &obs,
            observed_load: load,
            measurements: primary_measurements,
            queues,
            config: &self.config,
            hindsight: None,
        };
        let (index, vetoed_plans, logprob, value) = {
            let mut scheduler = self.policy.lock().expect("policy lock");
            if self.online {
                choose_online(&scheduler, &decision, self.explore)
            } else {
                let (index, vetoes) = scheduler.choose_counting_vetoes(&decision);
                (index, vetoes, 0.0, 0.0)
            }
        };
        let candidate = &model.candidates[index];
        let link = &plan_worker(&candidate.plan).and_then(|w| measurements.get(w)).unwrap_or(primary_measurements).link;
        let (mbps, rtt_ms) = (link.harmonic_mbps(), link.rtt_ms());
        let (queue, _) = plan_worker(&candidate.plan).map_or((0.0, None), |w| self.board.report(w));
        let base = &served.base.candidates[index];
        let predicted = predict(base, load, mbps, rtt_ms, queue, DeviceQueues::default(), &self.config);
        let row = &obs.plans[index * PLAN_FEATURES..(index + 1) * PLAN_FEATURES];
        let rewards = &row[REWARD_FEATURES];
        let inputs = DecisionInputs {
            link_mbps: LinkReading { harmonic: link.harmonic_mbps(), last: link.last_mbps(), robust: link.robust_mbps() },
            predicted_rewards: LinkReading { harmonic: rewards[0], last: rewards[1], robust: rewards[2] },
            vetoed_plans,
        };
        Choice {
            model: model.clone(),
            index,
            obs,
            predicted,
            load,
            queues,
            logprob,
            value,
            decision_us: started.elapsed().as_secs_f64() * 1e6,
            inputs,
        }
    }
}

/// The policy's best plan (as `PolicyScheduler` picks it), or with probability `explore` a plan
/// drawn from its softmax; with the number of valid plans the veto kept the policy off, and the
/// log-probability of the choice and the value estimate that PPO needs.
fn choose_online(scheduler: &PolicyScheduler, decision: &Decision, explore: f64) -> (usize, usize, f64, f64) {
    use burn::tensor::activation::log_softmax;
    use rand::Rng;
    let batch = scheduler.policy.batch(&[decision.obs], &scheduler.device);
    let (logits, value) = scheduler.policy.forward(&batch);
    let logp: Vec<f32> = log_softmax(logits, 1).into_data().try_to_vec().unwrap_or_default();
    let value = value.into_data().try_to_vec::<f32>().ok().and_then(|v| v.first().copied()).unwrap_or(0.0) as f64;
    let (mut index, vetoes) = rlsched_agent::policy::best_allowed_counting_vetoes(decision, &logp);
    let mut rng = rand::rng();
    if rng.random::<f64>() < explore {
        let mut u: f64 = rng.random();
        for (i, &lp) in logp.iter().enumerate() {
            let p = (lp as f64).exp();
            if decision.obs.mask.get(i).copied().unwrap_or(false) && u < p {
                index = i;
                break;
            }
            u -= p;
        }
    }
    (index, vetoes, logp.get(index).map_or(0.0, |&l| l as f64), value)
}
