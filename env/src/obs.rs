//! The observation: a state vector and a padded `[max_plans × PLAN_FEATURES]` matrix with a
//! mask. Everything in it is something a real device knows at decision time: its own measured
//! throughputs (never the trace ahead), the monitor's load readings (runnable other tasks per
//! core, and other processes' CPU utilisation), the worker's last report,
//! its own queues (local work ahead, uplink backlog), the request's SLO and accuracy floor, and
//! each plan's profile-based predictions.

use serde::Serialize;

use crate::config::EnvConfig;
use crate::candidates::Candidate;
use crate::measurements::Measurements;
use crate::queues::DeviceQueues;
use crate::request::Request;
use crate::scenario::WorkloadModel;
use rlsched_executor::net::estimator::LinkEstimator;

/// What the features mean, recorded in every checkpoint: a policy reads only the observation
/// it was trained on. 2: the SLO as ln(SLO / 1 s) (1 had SLO / 1 s, which put a 3 s SLO ten
/// standard deviations out: the shipped policy then offloaded an imported DenseNet-121 that a
/// split ran 2.1 s faster, at 2 Mbit/s with the whole model too big for the device).
/// An unknown accuracy (0: an imported model without labelled data) is a missing value, NaN,
/// which the policy's normaliser reads as the training mean: on the accuracy scale 0 lies nine
/// standard deviations below anything trained on, and sent half of such a DenseNet-121's
/// requests to offload where a split ran 2.1 s faster.
pub const OBSERVATION_VERSION: u32 = 2;

/// Features per remembered goodput sample: its rate, its age and its size.
pub const PER_SAMPLE: usize = 3;
/// Features of the state that do not depend on `history`.
pub const STATE_EXTRA: usize = 14;
pub const PLAN_FEATURES: usize = 17;
/// The plan feature holding the predicted reward under the harmonic-mean bandwidth estimate
/// (what `mpc` maximises): the policy's greedy prior reads it.
pub const MPC_REWARD_FEATURE: usize = 14;
/// The plan features holding the predicted reward under the harmonic, the last and the robust
/// estimate, in that order (`plan_row`): the estimates' veto reads all three.
pub const REWARD_FEATURES: std::ops::Range<usize> = MPC_REWARD_FEATURE..MPC_REWARD_FEATURE + 3;
const _: () = assert!(REWARD_FEATURES.end <= PLAN_FEATURES);
/// The plan feature holding its predicted latency at the harmonic estimate, in SLOs: where the
/// veto's certain margin applies (`certain_within_slos`).
pub const LATENCY_SLOS_FEATURE: usize = 12;
/// The plan features holding whether it is a whole offload (nothing runs on the device) and its
/// predicted local time in SLOs (the local work queued ahead included, for a plan that runs on
/// the device): the veto's device burden (`queue_charge`) reads both.
pub const OFFLOAD_FEATURE: usize = 2;
/// The plan feature holding whether it runs whole on the device (the tail's veto reads it).
pub const LOCAL_FEATURE: usize = 0;
pub const LOCAL_SLOS_FEATURE: usize = 6;
/// Where, among the state's features that do not depend on `history` (the last `STATE_EXTRA`),
/// the local work queued ahead lies, in the request's SLOs (`fill_state`).
pub const LOCAL_AHEAD_EXTRA: usize = 12;
const _: () = assert!(LOCAL_AHEAD_EXTRA < STATE_EXTRA);

/// Whether `[env.consensus]` keeps the policy off plan `plan` of `obs`: another valid plan beats
/// it by more than the margin under each of the three predicted rewards (`REWARD_FEATURES`),
/// each less the plan's queue charge (`device_burden_slos`).
pub fn vetoed(obs: &Obs, veto: &crate::config::ConsensusConfig, plan: usize) -> bool {
    // a state without the layout (none that `fill_state` writes) reads as an empty queue
    let ahead_slos = obs.state.len().checked_sub(STATE_EXTRA).and_then(|start| obs.state.get(start + LOCAL_AHEAD_EXTRA)).copied().unwrap_or(0.0);
    let estimates = |i: usize| {
        let row = &obs.plans[i * PLAN_FEATURES..(i + 1) * PLAN_FEATURES];
        let rewards = std::array::from_fn::<f32, 3, _>(|k| row[REWARD_FEATURES.start + k]);
        crate::config::PlanEstimates {
            rewards,
            latency_slos: row[LATENCY_SLOS_FEATURE],
            device_burden_slos: device_burden_slos(row, ahead_slos),
            local: row[LOCAL_FEATURE] > 0.0,
        }
    };
    let valid = |i: usize| obs.mask.get(i).copied().unwrap_or(false);
    veto.vetoes(plan, obs.n_plans, valid, estimates)
}

/// A plan's device burden: the device time it takes itself (its local time less the work queued
/// ahead, which it waits for but does not add), in SLOs, times one plus that queued work.
fn device_burden_slos(row: &[f32], ahead_slos: f32) -> f32 {
    let waits = if row[OFFLOAD_FEATURE] > 0.0 { 0.0 } else { ahead_slos };
    (row[LOCAL_SLOS_FEATURE] - waits).max(0.0) * (1.0 + ahead_slos)
}

#[derive(Clone, Debug, Serialize)]
pub struct Obs {
    pub state: Vec<f32>,
    /// Row-major `[max_plans × PLAN_FEATURES]`; rows past `n_plans` are zero.
    pub plans: Vec<f32>,
    pub mask: Vec<bool>,
    pub n_plans: usize,
    pub max_plans: usize,
}

/// Equal when every feature has the same bits: a missing value (NaN) equals itself, so two
/// observations of the same state compare equal (the causality tests compare them).
impl PartialEq for Obs {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        same(&self.state, &other.state)
            && same(&self.plans, &other.plans)
            && self.mask == other.mask
            && self.n_plans == other.n_plans
            && self.max_plans == other.max_plans
    }
}

pub fn state_dim(config: &EnvConfig) -> usize {
    config.history * PER_SAMPLE + STATE_EXTRA
}

/// Causal predictions a scheduler can make for one plan.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Prediction {
    pub local_ms: f64,
    pub transfer_ms: f64,
    pub queue_ms: f64,
    pub remote_ms: f64,
}

impl Prediction {
    pub fn total_ms(&self) -> f64 {
        self.local_ms + self.transfer_ms + self.queue_ms + self.remote_ms
    }

    /// The remote path's part: transfers, the worker's queue and its stages (what its deadline
    /// is derived from, `[env.deadline]`).
    pub fn remote_path_ms(&self) -> f64 {
        self.transfer_ms + self.queue_ms + self.remote_ms
    }
}

/// Predicts a plan's latency from the profile means, a device load, a bandwidth, the worker's
/// queue and the device's own queues: local work waits for the work queued ahead of it, and an
/// upload for the uplink's backlog (which drains while the local stages run).
pub fn predict(
    candidate: &Candidate,
    load: f64,
    mbps: Option<f64>,
    rtt_ms: Option<f64>,
    queue: f64,
    device: DeviceQueues,
    config: &EnvConfig,
) -> Prediction {
    let device_wait = if candidate.cut > 0 { device.local_ahead_ms } else { 0.0 };
    let local_ms = device_wait + candidate.expected_local_ms(load);
    if !candidate.uses_worker() {
        return Prediction { local_ms, ..Default::default() };
    }
    // Without any measurement yet, assume the trace family's typical rate is unknown: 1 Mbit/s.
    let ms_per_byte = 8.0 / (mbps.unwrap_or(1.0).max(1e-3) * 1e3);
    let uplink_wait = (device.uplink_backlog_bytes * ms_per_byte - local_ms).max(0.0);
    // the measured round trip once there is one: the configured one is only a first guess
    let transfer_ms = rtt_ms.unwrap_or(config.rtt_ms) + uplink_wait + (candidate.bytes_up + candidate.bytes_down) * ms_per_byte;
    Prediction {
        local_ms,
        transfer_ms,
        queue_ms: queue * config.worker_service_ms,
        remote_ms: candidate.remote_mean_ms(),
    }
}

/// What the state vector reads, whichever scenario fills it (the default one, or a chain's,
/// whose device sees its first link and first worker the same way).
pub(crate) struct StateInputs<'a> {
    pub link: &'a LinkEstimator,
    pub now: f64,
    pub rtt_ms: Option<f64>,
    /// The contention signal (runnable other tasks per core) and the utilisation beside it.
    pub load: f64,
    pub utilization: f64,
    pub device_memory_mb: f64,
    pub reported_queue: f64,
    pub last_report_s: Option<f64>,
    pub worker_up: bool,
    pub slo_ms: f64,
    pub min_accuracy: f64,
    pub queues: DeviceQueues,
}

/// Fills the state vector (`state_dim(config)` long).
pub(crate) fn fill_state(state: &mut [f32], config: &EnvConfig, s: &StateInputs) {
    let k = config.history;
    let since = |t: Option<f64>| t.map_or(10.0, |t| (s.now - t).clamp(0.0, 10.0)) as f32;
    state.fill(0.0);
    // newest first: rate, age (a stale sample says less about the link now), size (a large
    // transfer's rate is the better measurement)
    for (i, sample) in s.link.samples().rev().take(k).enumerate() {
        state[i] = (sample.mbps / 10.0) as f32;
        state[k + i] = since(Some(sample.at_s)) / 10.0;
        state[2 * k + i] = ((sample.bytes as f64 / 1e3).ln_1p() / 10.0) as f32;
    }
    let extra = [
        // RobustMPC's measure of how far the estimate can be trusted
        s.link.max_relative_error().min(10.0) as f32,
        s.link.samples().len() as f32 / k.max(1) as f32,
        since(s.link.last_transfer_s()) / 10.0,
        s.rtt_ms.unwrap_or(0.0) as f32 / 100.0,
        (s.load / 2.0).min(10.0) as f32,
        s.utilization as f32,
        (s.device_memory_mb / 1000.0) as f32,
        s.reported_queue as f32 / 10.0,
        since(s.last_report_s) / 10.0,
        if s.worker_up { 1.0 } else { 0.0 },
        // in log: SLOs run from milliseconds to seconds, and a scale that is linear in them
        // makes a long one an outlier the scorer never saw
        (s.slo_ms.max(1e-3) / 1000.0).ln() as f32,
        s.min_accuracy as f32,
        (s.queues.local_ahead_ms / s.slo_ms).min(10.0) as f32,
        ((s.queues.uplink_backlog_bytes / 1e3).ln_1p() / 10.0) as f32,
    ];
    state[PER_SAMPLE * k..PER_SAMPLE * k + STATE_EXTRA].copy_from_slice(&extra);
}

/// One plan's row: its static features (kind one-hot, compressed, log bytes up and down), its
/// accuracy (unknown, 0, is a missing value), its prediction at the harmonic estimate in SLOs,
/// and its predicted reward under the harmonic, the last and the robust estimate: what the
/// greedy baselines maximise, so the scorer starts from their judgement and learns where to
/// depart.
pub(crate) fn plan_row(
    static_features: [f32; 6],
    accuracy: f64,
    min_accuracy: f64,
    p: &Prediction,
    slo_ms: f64,
    [harmonic, last, robust]: [f64; 3],
) -> [f32; PLAN_FEATURES] {
    let in_slos = |ms: f64| (ms / slo_ms).min(10.0) as f32;
    let clamp = |r: f64| r.clamp(-50.0, 50.0) as f32;
    let total = p.total_ms();
    let [local, split, offload, compressed, up, down] = static_features;
    [
        local,
        split,
        offload,
        compressed,
        if accuracy > 0.0 { accuracy as f32 } else { f32::NAN },
        (accuracy - min_accuracy) as f32,
        in_slos(p.local_ms),
        in_slos(p.remote_ms),
        up,
        down,
        in_slos(p.transfer_ms),
        in_slos(p.queue_ms),
        in_slos(total),
        (total > slo_ms) as u8 as f32,
        clamp(harmonic),
        clamp(last),
        clamp(robust),
    ]
}

impl Obs {
    pub fn new(config: &EnvConfig, max_plans: usize) -> Self {
        Self {
            state: vec![0.0; state_dim(config)],
            plans: vec![0.0; max_plans * PLAN_FEATURES],
            mask: vec![false; max_plans],
            n_plans: 0,
            max_plans,
        }
    }

    pub(crate) fn fill(
        &mut self,
        config: &EnvConfig,
        model: &WorkloadModel,
        request: &Request,
        seen: &Measurements,
        queues: DeviceQueues,
        now: f64,
    ) {
        let slo = model.mix.slo_ms;
        let link = &seen.link;
        fill_state(
            &mut self.state,
            config,
            &StateInputs {
                link,
                now,
                rtt_ms: link.rtt_ms(),
                load: request.observed_load,
                utilization: request.observed_utilization,
                device_memory_mb: config.device_memory_mb,
                reported_queue: seen.reported_queue,
                last_report_s: seen.last_report_s,
                worker_up: request.world.worker_up,
                slo_ms: slo,
                min_accuracy: model.mix.min_accuracy,
                queues,
            },
        );

        self.plans.fill(0.0);
        self.mask.fill(false);
        self.n_plans = model.candidates.len();
        let mbps = link.harmonic_mbps();
        let (last, robust) = (link.last_mbps(), link.robust_mbps());
        let memory = config.device_memory_mb * 1e6;
        for (i, c) in model.candidates.iter().enumerate() {
            let predict_at = |mbps: Option<f64>| predict(c, request.observed_load, mbps, link.rtt_ms(), seen.reported_queue, queues, config);
            let reward_of = |p: Prediction| config.reward.reward(c.accuracy, p.total_ms(), slo, c.bytes_up);
            let p = predict_at(mbps);
            let rewards = [reward_of(p), reward_of(predict_at(last)), reward_of(predict_at(robust))];
            let row = plan_row(c.static_features, c.accuracy, model.mix.min_accuracy, &p, slo, rewards);
            self.plans[i * PLAN_FEATURES..(i + 1) * PLAN_FEATURES].copy_from_slice(&row);
            self.mask[i] = c.accuracy >= model.mix.min_accuracy
                && c.memory_bytes <= memory
                && (!c.uses_worker() || request.world.worker_up);
        }
        if config.shield.slo_factor > 0.0 {
            if let Some(robust) = robust {
                let ms_per_byte = 8.0 / (robust.max(1e-3) * 1e3);
                let blocked = |c: &Candidate| {
                    c.uses_worker() && config.shield.blocks((queues.uplink_backlog_bytes + c.bytes_up) * ms_per_byte, slo)
                };
                // only when something else stays valid: a request must be served
                let candidates = &model.candidates;
                if candidates.iter().enumerate().any(|(i, c)| self.mask[i] && !blocked(c)) {
                    for (i, c) in candidates.iter().enumerate() {
                        self.mask[i] &= !blocked(c);
                    }
                }
            }
        }
        self.keep_one_plan(config, model);
    }

    /// A request must be served: if no plan is valid, the most accurate local plan that fits
    /// in memory (or, failing that, the most accurate local plan) becomes valid. Whoever masks
    /// more plans after [`fill`](Self::fill) (serving masks what a worker cannot run) calls it again.
    pub fn keep_one_plan(&mut self, config: &EnvConfig, model: &WorkloadModel) {
        if self.mask.iter().any(|m| *m) {
            return;
        }
        let memory = config.device_memory_mb * 1e6;
        let local = |fits: bool| {
            model
                .candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.uses_worker() && (!fits || c.memory_bytes <= memory))
                .max_by(|a, b| a.1.accuracy.total_cmp(&b.1.accuracy))
                .map(|(i, _)| i)
        };
        if let Some(i) = local(true).or_else(|| local(false)) {
            self.mask[i] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_predicted_rewards_sit_where_their_constants_say() {
        let p = Prediction { local_ms: 10.0, transfer_ms: 0.0, queue_ms: 0.0, remote_ms: 0.0 };
        let row = plan_row([1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.7, 0.5, &p, 100.0, [1.25, -2.5, -7.75]);
        assert_eq!(&row[REWARD_FEATURES], &[1.25, -2.5, -7.75]);
        assert_eq!(row[LATENCY_SLOS_FEATURE], 0.1, "10 ms of a 100 ms SLO");
        assert_eq!(row[MPC_REWARD_FEATURE], 1.25, "the greedy prior reads the harmonic estimate's");
        assert_eq!(row[LOCAL_SLOS_FEATURE], 0.1, "10 ms of local time");
        let offload = plan_row([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], 0.7, 0.5, &p, 100.0, [0.0; 3]);
        assert_eq!((row[OFFLOAD_FEATURE], offload[OFFLOAD_FEATURE]), (0.0, 1.0));
    }

    /// The state's local work ahead sits where the veto reads it, and a plan's burden is its
    /// own device time (not the wait ahead) times one plus that wait.
    #[test]
    fn the_device_burden_reads_the_plan_s_own_device_time_and_the_queue() {
        let config = EnvConfig::default();
        let mut state = vec![0.0; state_dim(&config)];
        let link = LinkEstimator::new(Default::default());
        let queues = DeviceQueues { local_ahead_ms: 50.0, uplink_backlog_bytes: 0.0 };
        let inputs = StateInputs {
            link: &link,
            now: 0.0,
            rtt_ms: None,
            load: 0.0,
            utilization: 0.0,
            device_memory_mb: 256.0,
            reported_queue: 0.0,
            last_report_s: None,
            worker_up: true,
            slo_ms: 100.0,
            min_accuracy: 0.5,
            queues,
        };
        fill_state(&mut state, &config, &inputs);
        let ahead = state[state.len() - STATE_EXTRA + LOCAL_AHEAD_EXTRA];
        assert_eq!(ahead, 0.5, "50 ms queued of a 100 ms SLO");
        // a local plan of 30 ms predicted behind that queue: 0.8 SLOs, 0.3 of them its own
        let local = plan_row([1.0, 0.0, 0.0, 0.0, 0.0, 0.0], 0.7, 0.5, &Prediction { local_ms: 80.0, ..Default::default() }, 100.0, [0.0; 3]);
        assert!((device_burden_slos(&local, ahead) - 0.3 * 1.5).abs() < 1e-6);
        let offload = plan_row([0.0, 0.0, 1.0, 0.0, 0.0, 0.0], 0.7, 0.5, &Prediction { transfer_ms: 80.0, ..Default::default() }, 100.0, [0.0; 3]);
        assert_eq!(device_burden_slos(&offload, ahead), 0.0, "an offload holds the uplink, not the device");
    }

    /// Two local plans (the estimates agree on each) 0.05 apart, and an offload whose rewards
    /// under the three estimates lie 2 apart: the certain margin vetoes the worse local plan,
    /// and the offload that the certain local plan beats under every estimate.
    #[test]
    fn the_veto_needs_less_margin_where_the_estimates_agree() {
        let rewards = [[3.95f32; 3], [4.0; 3], [3.0, 2.0, 1.0]];
        let estimates = |i: usize| crate::config::PlanEstimates { rewards: rewards[i], latency_slos: [0.05, 0.3, 0.5][i], ..Default::default() };
        let vetoes = |veto: &crate::config::ConsensusConfig, plan: usize| veto.vetoes(plan, 3, |_| true, estimates);
        let margin_alone = crate::config::ConsensusConfig { margin: 1.0, ..Default::default() };
        let certain = crate::config::ConsensusConfig { certain_margin: 0.02, ..margin_alone.clone() };
        assert!(!vetoes(&margin_alone, 0), "0.05 is inside a margin of 1");
        assert!(vetoes(&certain, 0), "every estimate puts plan 1 0.05 ahead, past the certain margin");
        assert!(!vetoes(&certain, 1), "nothing beats the best local plan");
        // plan 2 trails plan 1 by 1, 2 and 3: the full margin keeps it, but plan 1 is certain
        // (its estimates agree), so plan 2's own spread buys it nothing
        assert!(!vetoes(&margin_alone, 2), "plan 2 is within 1 of plan 1 under the harmonic estimate");
        assert!(vetoes(&certain, 2), "plan 1 beats plan 2 by at least 1 under every estimate, past 0.02");
        // a better plan the estimates disagree on keeps its own spread in the threshold: it
        // beats plan 0 by 0.9, 0.5 and 0.1, which is not past 0.02 + 0.8 under every estimate
        let uncertain_better = [[1.0f32; 3], [1.9, 1.5, 1.1]];
        let uncertain_estimates = |i: usize| crate::config::PlanEstimates { rewards: uncertain_better[i], latency_slos: 0.1, ..Default::default() };
        assert!(!certain.vetoes(0, 2, |_| true, uncertain_estimates), "plan 1's spread (0.8) lifts the threshold to 0.82");
        // plan 0 finishes in 0.05 SLOs and plan 1, which beats it, in 0.3: a limit of 0.2 SLOs
        // leaves the pair to the full margin, 0.5 SLOs lets the certain margin act again
        let near = |within: f64| crate::config::ConsensusConfig { certain_within_slos: within, ..certain.clone() };
        assert!(!vetoes(&near(0.2), 0), "plan 1 takes 0.3 SLOs, past the limit");
        assert!(vetoes(&near(0.5), 0), "plan 1 finishes within 0.5 SLOs");
        // the limit reads only the plan that beats the vetoed one: a slow plan that a fast one
        // beats is vetoed whatever its own latency
        let slow = [[3.0f32; 3], [3.1; 3]];
        let slow_estimates = |i: usize| crate::config::PlanEstimates { rewards: slow[i], latency_slos: [2.0, 0.1][i], ..Default::default() };
        assert!(near(0.5).vetoes(0, 2, |_| true, slow_estimates), "plan 1 (0.1 SLOs) beats plan 0 by 0.1 under every estimate");
        assert!(!near(0.05).vetoes(0, 2, |_| true, slow_estimates), "plan 1 takes 0.1 SLOs, past a limit of 0.05");
    }

    /// An offload that the harmonic estimate puts past the tail is vetoed while a local plan is
    /// predicted within it, scores at least as well and is not vetoed itself; never otherwise.
    #[test]
    fn the_tail_veto_needs_a_local_plan_within_the_tail() {
        let plan = |reward: f32, latency_slos: f32, local: bool| crate::config::PlanEstimates { rewards: [reward, 3.0, 3.0], latency_slos, local, ..Default::default() };
        let tail = crate::config::ConsensusConfig { tail_slos: 2.0, ..Default::default() };
        let vetoes = |veto: &crate::config::ConsensusConfig, plans: &[crate::config::PlanEstimates], i: usize| veto.vetoes(i, plans.len(), |_| true, |k| plans[k]);
        // a slow offload, a local plan within two SLOs
        let plans = [plan(0.2, 4.0, false), plan(1.9, 1.5, true)];
        assert!(vetoes(&tail, &plans, 0), "the offload runs past the tail where the local plan does not");
        assert!(!vetoes(&tail, &plans, 1), "a local plan is never past the tail");
        assert!(!vetoes(&crate::config::ConsensusConfig::default(), &plans, 0), "off");
        assert!(!vetoes(&crate::config::ConsensusConfig { tail_slos: 5.0, ..Default::default() }, &plans, 0), "within a tail of 5");
        // no local plan within the tail, or one the estimate scores lower: nothing to fall back on
        assert!(!vetoes(&tail, &[plan(0.2, 4.0, false), plan(1.9, 2.5, true)], 0), "the local plan is past the tail too");
        assert!(!vetoes(&tail, &[plan(0.2, 4.0, false), plan(0.1, 1.5, false)], 0), "the fast plan uses the worker too");
        assert!(!vetoes(&tail, &[plan(0.2, 4.0, false), plan(0.1, 1.5, true)], 0), "the local plan scores lower");
        // the local plan the veto falls back on is itself vetoed by the margin: the offload stays
        let plans = [plan(0.2, 4.0, false), plan(0.5, 1.5, true), plan(2.0, 0.1, false)];
        let both = crate::config::ConsensusConfig { margin: 1.0, ..tail.clone() };
        let outscored = [[0.2f32, 0.2, 0.2], [0.5, 0.5, 0.5], [2.0, 2.0, 2.0]];
        let estimates = |k: usize| crate::config::PlanEstimates { rewards: outscored[k], ..plans[k] };
        assert!(both.vetoes(1, 3, |_| true, estimates), "plan 2 beats the local plan by 1.5 everywhere");
        assert!(both.vetoes(0, 3, |_| true, estimates), "by the margin too");
        let spared = [[0.2f32, 2.9, 2.9], [0.5, 0.5, 0.5], [2.0, 2.0, 2.0]];
        let estimates = |k: usize| crate::config::PlanEstimates { rewards: spared[k], ..plans[k] };
        assert!(!both.vetoes(0, 3, |_| true, estimates), "its fallback vetoed, the offload is not past the tail's veto");
    }

    /// An offload that a local plan beats by 0.5 under every estimate is vetoed, unless the
    /// local plan's device burden, charged, eats that lead.
    #[test]
    fn the_queue_charge_prices_the_device_a_plan_holds() {
        let plans = [
            crate::config::PlanEstimates { rewards: [1.0; 3], latency_slos: 1.0, device_burden_slos: 0.0, local: false },
            crate::config::PlanEstimates { rewards: [1.5; 3], latency_slos: 0.9, device_burden_slos: 2.0, local: true },
        ];
        let veto = |charge: f64| crate::config::ConsensusConfig { margin: 0.25, queue_charge: charge, ..Default::default() };
        assert!(veto(0.0).vetoes(0, 2, |_| true, |i| plans[i]), "0.5 ahead, past 0.25");
        assert!(veto(0.1).vetoes(0, 2, |_| true, |i| plans[i]), "0.3 ahead after a charge of 0.2");
        assert!(!veto(0.2).vetoes(0, 2, |_| true, |i| plans[i]), "0.1 ahead after a charge of 0.4");
        assert!(!veto(0.2).vetoes(1, 2, |_| true, |i| plans[i]), "the charged local plan is not vetoed either");
    }
}
