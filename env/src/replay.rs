//! `ReplayEnv`: the trace-driven simulator. An episode is a stream of requests over one real
//! bandwidth trace (random start offset); each request's world (arrival time, device load,
//! worker queue, compute draws) is fixed at `reset`, so every scheduler faces the same
//! requests. The device runs one request's local stages at a time and its uplink one transfer
//! at a time (`queues`), so a choice delays later requests. The observation holds only what the
//! device has measured before the decision.

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, StandardNormal};

use rlsched_executor::plan::Breakdown;

use crate::candidates::{outcome, Conditions, Timeline};
use crate::config::{LoadConfig, MAX_RUNNABLE_PER_CORE};
use crate::decision::{Decision, Hindsight};
use crate::measurements::{Measurements, Reading};
use crate::obs::{predict, Obs};
use crate::queues::{DeviceQueues, Queues};
use crate::request::{LoadPath, Request, RequestWorld};
use crate::scenario::Scenario;
use crate::{Env, EnvError, Info, Step};

/// Toggles a load process may make between two requests. The bundled config toggles a few
/// times at most; dwells far shorter than the gaps would toggle millions of times to no effect
/// on the distribution, and at large times `until + dwell` can round back to `until` and never
/// advance. The bound is what ends the loop in every case.
const MAX_TOGGLES_PER_REQUEST: usize = 1_000;

/// Samples a two-state load process at the given times; with `path`, also records each
/// change of state between them (time, level without jitter), for the load's path over time.
fn load_process(config: &LoadConfig, times: &[f64], rng: &mut SmallRng, mut path: Option<&mut Vec<(f64, f64)>>) -> Vec<f64> {
    let p_busy = config.mean_busy_s / (config.mean_busy_s + config.mean_idle_s).max(1e-9);
    // random_bool panics outside 0..=1; a validated config is always inside
    let p_busy = if p_busy.is_finite() { p_busy.clamp(0.0, 1.0) } else { 0.5 };
    let mut busy = rng.random_bool(p_busy);
    let dwell = |busy: bool, rng: &mut SmallRng| {
        let mean = if busy { config.mean_busy_s } else { config.mean_idle_s };
        Exp::new(1.0 / mean.max(1e-6)).expect("positive rate").sample(rng)
    };
    let mut until = times.first().copied().unwrap_or(0.0) + dwell(busy, rng);
    times
        .iter()
        .map(|&t| {
            let mut toggles = 0;
            while t >= until {
                if toggles == MAX_TOGGLES_PER_REQUEST {
                    // So many dwells have passed that the state is as good as a fresh draw from
                    // the stationary split; the dwell is memoryless, so it restarts here.
                    busy = rng.random_bool(p_busy);
                    until = t + dwell(busy, rng);
                    break;
                }
                busy = !busy;
                if let Some(path) = path.as_deref_mut() {
                    path.push((until, if busy { config.busy } else { config.idle }));
                }
                until += dwell(busy, rng);
                toggles += 1;
            }
            let level = if busy { config.busy } else { config.idle };
            let noise: f64 = StandardNormal.sample(rng);
            (level * (1.0 + config.jitter * noise)).max(0.0)
        })
        .collect()
}

/// The span over which `oracle-now` knows the true current bandwidth, seconds.
const NOW_WINDOW_S: f64 = 1.0;

/// Requests the clairvoyant reference plans over: each valid plan for this request, followed by
/// the clairvoyant greedy choice for the next ones. With contention a choice delays later
/// requests, which a one-request look cannot see; this many covers the device's queue at the
/// default arrival rate several times over.
pub const ORACLE_LOOKAHEAD: usize = 8;

/// Seeds the episode's RTT draw apart from the episode's other draws.
const RTT_STREAM: u64 = 0x7277_7473;

#[derive(Clone)]
pub struct ReplayEnv {
    scenario: Arc<Scenario>,
    pub trace_index: usize,
    pub requests: Vec<Request>,
    pub cursor: usize,
    pub measurements: Measurements,
    /// The device's queues as they truly are, and as the device knows them at this decision.
    pub queues: Queues,
    known: DeviceQueues,
    /// The device's true load over the episode (compute runs at the load of its start).
    load: Arc<LoadPath>,
    /// Whether `info.oracle_reward` is computed (costs one evaluation per plan).
    pub compute_oracle: bool,
    obs: Obs,
    /// This episode's round trip to the worker, ms: `env.rtt_ms`, or in training a draw from
    /// `env.training_rtt_ms`.
    rtt_ms: f64,
}

impl ReplayEnv {
    pub fn new(scenario: Arc<Scenario>) -> Self {
        let obs = Obs::new(&scenario.config, scenario.max_plans);
        let scenario_rtt = scenario.config.rtt_ms;
        Self {
            scenario,
            trace_index: 0,
            requests: Vec::new(),
            cursor: 0,
            measurements: Measurements::default(),
            queues: Queues::default(),
            known: DeviceQueues::default(),
            load: Arc::default(),
            compute_oracle: true,
            obs,
            rtt_ms: scenario_rtt,
        }
    }

    pub fn scenario(&self) -> &Arc<Scenario> {
        &self.scenario
    }

    /// Resets onto a given trace (evaluation walks the traces in order).
    pub fn reset_on(&mut self, trace_index: usize, seed: u64) -> Result<(Obs, Info), EnvError> {
        let scenario = self.scenario.clone();
        let config = &scenario.config;
        let mut rng = SmallRng::seed_from_u64(seed);
        // from a stream of its own, so that a constant RTT leaves every other draw as it was
        self.rtt_ms = scenario.episode_rtt_ms(&mut SmallRng::seed_from_u64(seed ^ RTT_STREAM));
        let trace = &scenario.traces[trace_index % scenario.traces.len()];
        self.trace_index = trace_index % scenario.traces.len();
        // A loaded trace lasts 1 ms to 24 h; one built in code might not, and an empty range
        // would panic.
        if !(trace.duration_s > 0.0 && trace.duration_s.is_finite()) {
            return Err(EnvError::Config(format!("trace `{}` has no duration ({} s)", trace.name, trace.duration_s)));
        }
        let start = rng.random_range(0.0..trace.duration_s);
        let gap = Exp::new(1.0 / config.mean_interarrival_s.max(1e-6)).map_err(|e| EnvError::Config(e.to_string()))?;
        let mut times = Vec::with_capacity(config.requests_per_episode);
        let mut t = start;
        for _ in 0..config.requests_per_episode {
            times.push(t);
            t += gap.sample(&mut rng);
        }
        let mut toggles = Vec::new();
        let loads = load_process(&config.device_load, &times, &mut rng, Some(&mut toggles));
        let queues = load_process(&config.worker_queue, &times, &mut rng, None);
        let max_stages = scenario.workloads.iter().flat_map(|w| w.candidates.iter().map(|c| c.stages)).max().unwrap_or(0);
        let requests = times
            .iter()
            .enumerate()
            .map(|(i, &time_s)| {
                let workload = scenario.pick_workload(&mut rng);
                let device_load = loads[i].min(MAX_RUNNABLE_PER_CORE);
                let noise: f64 = StandardNormal.sample(&mut rng);
                let utilization_noise: f64 = StandardNormal.sample(&mut rng);
                let mut draws = || (0..max_stages).map(|_| StandardNormal.sample(&mut rng)).collect::<Vec<f64>>();
                let device_noise = draws();
                let worker_noise = draws();
                Request {
                    workload,
                    observed_load: (device_load + config.contention.reading_noise * noise).max(0.0),
                    // CPU-bound others take the whole CPU from r = 1 per core on
                    observed_utilization: (device_load.min(1.0) + 0.03 * utilization_noise).clamp(0.0, 1.0),
                    world: RequestWorld {
                        time_s,
                        device_load,
                        worker_queue: queues[i].round(),
                        worker_up: !rng.random_bool(config.worker_down_probability.clamp(0.0, 1.0)),
                        device_noise,
                        worker_noise,
                    },
                }
            })
            .collect::<Vec<Request>>();
        let mut path: Vec<(f64, f64)> = requests.iter().map(|r| (r.world.time_s, r.world.device_load)).collect();
        path.extend(toggles);
        let result = self.restart(requests);
        self.load = Arc::new(LoadPath::new(path));
        Ok(result)
    }

    /// Starts the episode over with these requests (sorted by arrival) on the current trace:
    /// idle queues, nothing measured yet. Tests use it to stage exact situations.
    pub fn restart(&mut self, mut requests: Vec<Request>) -> (Obs, Info) {
        requests.sort_by(|a, b| a.world.time_s.total_cmp(&b.world.time_s));
        self.requests = requests;
        self.cursor = 0;
        self.rtt_ms = self.scenario.config.rtt_ms;
        self.measurements = Measurements::new(self.scenario.config.estimator());
        self.queues = Queues::default();
        self.load = Arc::new(LoadPath::of_requests(&self.requests));
        let probe_bytes = self.prepare_observation();
        (self.obs.clone(), Info { probe_bytes, ..Info::default() })
    }

    pub fn current(&self) -> Option<&Request> {
        self.requests.get(self.cursor)
    }

    pub fn observation(&self) -> &Obs {
        &self.obs
    }

    /// Builds the current request's observation into `obs` again from the device's view (its
    /// measurements and queues as they stand), changing nothing: the work a deployed scheduler
    /// does per decision, for `rlsched bench decision`. `obs` must come from `Obs::new` with
    /// this scenario's plan count.
    pub fn observe_into(&self, obs: &mut Obs) {
        let Some(request) = self.current() else { return };
        let model = &self.scenario.workloads[request.workload];
        obs.fill(&self.scenario.config, model, request, &self.measurements, self.known, request.world.time_s);
    }

    pub fn trace(&self) -> &rlsched_executor::net::trace::Trace {
        &self.scenario.traces[self.trace_index]
    }

    /// Catches the measurements up to the current request's arrival, runs the active probe if
    /// the link has not been measured for a while, then fills the observation. The probe takes
    /// its turn on the uplink like any transfer, and its result serves later decisions; its cost
    /// is the bytes it sends and the time it holds the uplink.
    fn prepare_observation(&mut self) -> usize {
        let Some(request) = self.requests.get(self.cursor) else { return 0 };
        let config = &self.scenario.config;
        let now = request.world.time_s;
        self.measurements.catch_up(now);
        let stale = self.measurements.link.probe_due(now, config.probe.interval_s);
        let mut probe_bytes = 0;
        if stale && !self.measurements.in_flight() && config.probe.bytes > 0 {
            let trace = &self.scenario.traces[self.trace_index];
            let spans = self.queues.uplink_spans(trace, now, config.probe.bytes as f64);
            let (start, end) = (spans.first().map_or(now, |s| s.0), spans.last().map_or(now, |s| s.1));
            // the probe's echo comes back half a round trip after it arrived
            let done = end + self.rtt_ms / 1e3;
            // abandoned at its timeout, as `serve`'s probe is: the uplink is free again then
            let given_up = Some(now + config.probe.timeout_s).filter(|&at| done > at);
            self.queues.reserve_upload(config.probe.bytes as f64, spans, given_up);
            match given_up {
                Some(at) => {
                    // the link carried fewer than its bytes in the time it was on it less a round trip
                    let wire_ms = (at - start) * 1e3 - self.rtt_ms;
                    if wire_ms > 0.0 {
                        self.measurements.record(at, Reading::Censored { bytes: config.probe.bytes, wire_ms });
                    }
                }
                None => {
                    self.measurements.record(done, Reading::Transfer { bytes: config.probe.bytes, wire_ms: (end - start) * 1e3 });
                    self.measurements.record(done, Reading::Rtt(self.rtt_ms));
                }
            }
            probe_bytes = config.probe.bytes;
        }
        self.known = self.queues.known(now, &self.scenario.traces[self.trace_index]);
        let model = &self.scenario.workloads[request.workload];
        self.obs.fill(config, model, request, &self.measurements, self.known, now);
        probe_bytes
    }

    /// What a scheduler may read for the current request (and, for the bounds, the truth).
    pub fn decision(&self) -> Option<Decision<'_>> {
        let request = self.current()?;
        Some(Decision {
            model: &self.scenario.workloads[request.workload],
            obs: &self.obs,
            observed_load: request.observed_load,
            measurements: &self.measurements,
            queues: self.known,
            config: &self.scenario.config,
            hindsight: Some(self),
        })
    }

    /// The true outcome of candidate `index` for the current request, behind the queues the
    /// earlier choices left, with its reward.
    pub fn evaluate(&self, index: usize) -> Option<(Breakdown, Timeline, f64)> {
        let request = self.current()?;
        let model = &self.scenario.workloads[request.workload];
        let candidate = model.candidates.get(index)?;
        let config = &self.scenario.config;
        let conditions = Conditions { trace: self.trace(), load: &self.load, rtt_ms: self.rtt_ms, service_ms: config.worker_service_ms };
        let deadline_ms = if candidate.uses_worker() {
            // the plan's own prediction, as serving has it (no queues of its own)
            let mbps = self.measurements.link.harmonic_mbps();
            let p = predict(candidate, request.observed_load, mbps, self.measurements.link.rtt_ms(), self.measurements.reported_queue, DeviceQueues::default(), config);
            config.deadline.remote_ms(model.mix.slo_ms, p.remote_path_ms())
        } else {
            None
        };
        let (out, timeline) = outcome(candidate, &request.world, &conditions, &self.queues, deadline_ms);
        let reward = config.reward.reward(candidate.accuracy, out.total_ms, model.mix.slo_ms, candidate.bytes_up);
        Some((out, timeline, reward))
    }

    /// The clairvoyant greedy choice: the valid plan with the best true reward for the current
    /// request, given the queues left by the choices made so far. A choice that is best now can
    /// delay later requests, which is why the reference (`lookahead_oracle`) looks further.
    pub fn oracle(&self) -> Option<(usize, f64)> {
        (0..self.obs.n_plans)
            .filter(|&i| self.obs.mask[i])
            .filter_map(|i| self.evaluate(i).map(|(_, _, r)| (i, r)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The clairvoyant reference's choice: the valid plan whose true reward, plus the true
    /// rewards of the clairvoyant greedy choices for the next `horizon − 1` requests behind
    /// the queues it leaves, is the highest (a rollout of the greedy oracle).
    pub fn lookahead_oracle(&self, horizon: usize) -> Option<usize> {
        let valid: Vec<usize> = (0..self.obs.n_plans).filter(|&i| self.obs.mask[i]).collect();
        if horizon <= 1 {
            return self.oracle().map(|o| o.0);
        }
        if valid.len() <= 1 {
            return valid.first().copied();
        }
        valid
            .into_iter()
            .filter_map(|i| self.rollout_reward(i, horizon).map(|total| (i, total)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|best| best.0)
    }

    /// The true reward of plan `first` for the current request plus those of the clairvoyant
    /// greedy choices for the next `horizon − 1` requests (fewer where the episode ends), on a
    /// copy of this episode.
    pub fn rollout_reward(&self, first: usize, horizon: usize) -> Option<f64> {
        let mut sim = self.clone();
        sim.compute_oracle = false;
        let (mut total, mut done) = sim.step_in_place(first).ok()?;
        for _ in 1..horizon {
            if done {
                break;
            }
            let (next, _) = sim.oracle()?;
            let (reward, finished) = sim.step_in_place(next).ok()?;
            total += reward;
            done = finished;
        }
        Some(total)
    }
}

impl Hindsight for ReplayEnv {
    fn now_mbps(&self) -> f64 {
        // the true mean over the last second: a packet trace's (Mahimahi) rate at one instant
        // is a burst or nothing, not a bandwidth
        self.current().map_or(0.0, |r| self.trace().bits_between(r.world.time_s - NOW_WINDOW_S, r.world.time_s) / NOW_WINDOW_S / 1e6)
    }

    fn world(&self) -> Option<&RequestWorld> {
        self.current().map(|r| &r.world)
    }

    fn best(&self) -> Option<usize> {
        self.lookahead_oracle(ORACLE_LOOKAHEAD)
    }
}

impl Env for ReplayEnv {
    fn reset(&mut self, seed: u64) -> Result<(Obs, Info), EnvError> {
        let index = SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15).random_range(0..self.scenario.traces.len());
        self.reset_on(index, seed)
    }

    fn step(&mut self, action: usize) -> Result<Step, EnvError> {
        let oracle_reward = if self.compute_oracle && self.current().is_some() {
            self.oracle().map(|o| o.1)
        } else {
            None
        };
        let (out, reward, workload) = self.apply(action)?;
        let model = &self.scenario.workloads[workload];
        let candidate = &model.candidates[action];
        let info = Info {
            workload: model.mix.name.clone(),
            plan: Some(candidate.plan.clone()),
            candidate: action,
            outcome: out,
            accuracy: candidate.accuracy,
            compressed: candidate.compressed,
            slo_ms: model.mix.slo_ms,
            oracle_reward,
            probe_bytes: 0,
        };
        let terminated = self.cursor >= self.requests.len();
        let probe_bytes = if terminated { 0 } else { self.prepare_observation() };
        Ok(Step {
            obs: self.obs.clone(),
            reward,
            terminated,
            truncated: false,
            info: Info { probe_bytes, ..info },
        })
    }
}

impl ReplayEnv {
    /// Runs candidate `action` for the current request: validates it, computes its true outcome,
    /// occupies the queues it uses, records what the device will measure, and moves on.
    fn apply(&mut self, action: usize) -> Result<(Breakdown, f64, usize), EnvError> {
        let request = self.current().ok_or(EnvError::NotRunning)?;
        if action >= self.obs.n_plans || !self.obs.mask[action] {
            return Err(EnvError::InvalidAction {
                action,
                valid: self.obs.mask[..self.obs.n_plans].iter().filter(|m| **m).count(),
                total: self.obs.n_plans,
            });
        }
        let (out, timeline, reward) = self.evaluate(action).ok_or(EnvError::NotRunning)?;
        let reward = reward - self.scenario.tail_penalty(out.total_ms, self.scenario.workloads[request.workload].mix.slo_ms);
        let (now, observed_load, workload) = (request.world.time_s, request.observed_load, request.workload);
        let worker_queue = request.world.worker_queue;
        let candidate = &self.scenario.workloads[workload].candidates[action];
        if let Some(span) = timeline.local_s {
            self.queues.reserve_device(span);
            let expected_ms = candidate.expected_local_ms(observed_load);
            self.queues.device_expected_free_at = self.queues.device_expected_free_at.max(now) + expected_ms / 1e3;
        }
        // A fallback's span is not reserved: requests decided before its deadline come first
        // on the real device (they take it in arrival order), and reserving it now would make
        // them wait for an abandonment that only the future trace knows (the counterfactual
        // test catches that). It waits for the work queued when its request was decided.
        if let Some(done) = timeline.worker_done_s {
            self.queues.record_worker(timeline.at_worker_s, done);
        }
        let upload = timeline.upload_s;
        if candidate.uses_worker() {
            self.queues.reserve_upload(candidate.bytes_up, timeline.upload_spans, timeline.abandoned_s);
        }
        if let Some((start, end)) = upload {
            // the device learns the upload's goodput and the worker's queue with the reply
            let bytes = candidate.bytes_up as usize;
            self.measurements.record(timeline.reply_s, Reading::Transfer { bytes, wire_ms: (end - start) * 1e3 });
            self.measurements.record(timeline.reply_s, Reading::Queue(worker_queue));
        }
        if let Some(abandoned) = timeline.abandoned_s {
            // as `PlanExecutor::execute` records it: the bytes did not get through by the
            // deadline, so the link carries at most that many in the deadline less a round trip
            let wire_ms = (abandoned - timeline.local_done_s) * 1e3 - self.rtt_ms;
            if wire_ms > 0.0 {
                self.measurements.record(abandoned, Reading::Censored { bytes: candidate.bytes_up as usize, wire_ms });
            }
        }
        self.cursor += 1;
        Ok((out, reward, workload))
    }

    /// `step` without building the returned observation and info: for throughput.
    pub fn step_in_place(&mut self, action: usize) -> Result<(f64, bool), EnvError> {
        let (_, reward, _) = self.apply(action)?;
        let done = self.cursor >= self.requests.len();
        if !done {
            self.prepare_observation();
        }
        Ok((reward, done))
    }
}

/// N environments stepped together; a finished episode restarts with the next seed.
pub struct VecEnv {
    pub envs: Vec<ReplayEnv>,
    next_seed: u64,
}

impl VecEnv {
    pub fn new(scenario: Arc<Scenario>, n: usize, seed: u64) -> Result<Self, EnvError> {
        let mut envs: Vec<ReplayEnv> = (0..n).map(|_| ReplayEnv::new(scenario.clone())).collect();
        for (i, env) in envs.iter_mut().enumerate() {
            env.compute_oracle = false;
            env.reset(seed.wrapping_add(i as u64))?;
        }
        Ok(Self { envs, next_seed: seed.wrapping_add(n as u64) })
    }

    /// Steps every environment with its action; returns (reward, done) per environment.
    /// Observations stay inside the environments (`envs[i].observation()`), so stepping
    /// allocates nothing.
    pub fn step(&mut self, actions: &[usize], out: &mut Vec<(f64, bool)>) -> Result<(), EnvError> {
        out.clear();
        for (env, &action) in self.envs.iter_mut().zip(actions) {
            let step = env.step_in_place(action)?;
            if step.1 {
                env.reset(self.next_seed)?;
                self.next_seed = self.next_seed.wrapping_add(1);
            }
            out.push(step);
        }
        Ok(())
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    /// At 1e20 s a millisecond dwell rounds away (`until + dwell == until`), which used to loop
    /// forever; the toggle bound ends each request's loop whatever the arithmetic does.
    #[test]
    fn load_process_finishes_where_dwells_round_away() {
        let config = LoadConfig { idle: 0.1, busy: 0.7, mean_idle_s: 1e-3, mean_busy_s: 1e-3, jitter: 0.0 };
        let times = [1e20, 1e20, 2e20];
        let levels = load_process(&config, &times, &mut SmallRng::seed_from_u64(1), None);
        assert_eq!(levels.len(), times.len());
        assert!(levels.iter().all(|&l| l == 0.1 || l == 0.7), "{levels:?}");
    }
}
