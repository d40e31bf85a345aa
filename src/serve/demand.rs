//! Demand estimation: moving averages of measured over predicted time, kept within bounds, that
//! correct the plans' predictions in the observation (`Candidate::corrected`), so the policy sees
//! what a plan really costs now, which the profile cannot say.
//!
//! - **The device's time, always** (the chain path, `--chain`, aside). One factor per model for
//!   its local stages, whichever plan ran them, drifting back towards 1 while only offloads run: contention slows every stage of the device alike, and the contention curve
//!   (measured on another machine, or another day) can be wrong by twice. Per plan, the local
//!   plan's correction would wait for the local plan to run, and while serving offloads it does
//!   not: after a bandwidth drop under load, the local plan then looked twice as slow as it ran,
//!   and the policy went on splitting at 1.3 s beside a local plan of 0.46 s. Serving measures
//!   every local stage it runs, as it measures every transfer for the link estimate.
//! - **The worker's time, with `--online`.** Per plan, its transfers and its remote stages: a
//!   worker slowed by other load, or one slower than its profile. While only other plans run, a
//!   plan's factors decay back towards 1, so a plan shunned once is tried again. A server that
//!   is not an rlsched worker reports neither its queue nor its compute: its remote time is the
//!   measured reply less the link's share (`PlanExecutor`), queueing included, and it is
//!   corrected here the same way.

use std::collections::HashMap;

use rlsched_env::candidates::Candidate;
use rlsched_env::obs::Prediction;
use rlsched_executor::plan::Breakdown;

/// Correction factors of one plan: local, transfer, remote.
pub type Factors = [f64; 3];

/// The estimator's settings (`[online]`'s `demand_*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DemandSettings {
    /// Weight of the newest ratio in each moving average.
    pub alpha: f64,
    /// Bounds on every ratio.
    pub min: f64,
    pub max: f64,
    /// How far, per request of another plan, a plan's worker factors move back towards 1.
    pub decay: f64,
}

impl DemandSettings {
    pub fn of(online: &rlsched_agent::OnlineConfig) -> Self {
        Self { alpha: online.demand_alpha, min: online.demand_min, max: online.demand_max, decay: online.demand_decay }
    }
}

impl Default for DemandSettings {
    fn default() -> Self {
        Self::of(&rlsched_agent::OnlineConfig::default())
    }
}

pub struct Demand {
    settings: DemandSettings,
    /// Whether the worker's factors are learnt (`--online`).
    learn_worker: bool,
    /// Per model, its local stages' factor.
    device: HashMap<usize, f64>,
    /// Per (model, plan), its transfer and remote factors.
    worker: HashMap<(usize, usize), [f64; 2]>,
}

impl Demand {
    pub fn new(settings: DemandSettings, learn_worker: bool) -> Self {
        Self { settings, learn_worker, device: HashMap::new(), worker: HashMap::new() }
    }

    /// The factors of plan `plan` of model `model` (1 until measured).
    pub fn factors(&self, model: usize, plan: usize) -> Factors {
        let [transfer, remote] = self.worker.get(&(model, plan)).copied().unwrap_or([1.0; 2]);
        [self.device.get(&model).copied().unwrap_or(1.0), transfer, remote]
    }

    /// Folds one finished request of `batch` inputs, run with plan `plan` of model `model`,
    /// into the factors, and pulls the model's other plans' worker factors back towards 1 by
    /// `decay`; returns whether any factor of the model changed (then every plan's corrected
    /// candidate is rebuilt from `factors`). Predictions are for one input, so the measurement
    /// is taken per input: a burst of large batches must not make a plan look slow to the single
    /// requests after it. A request that fell back measured nothing of its remote part, and ran
    /// more than its plan's local stages here: it changes nothing.
    pub fn observe(&mut self, model: usize, plan: usize, candidate: &Candidate, predicted: &Prediction, measured: &Breakdown, batch: usize) -> bool {
        if measured.fallback.is_some() {
            // the stages it ran here after giving up are not the plan's local stages
            return false;
        }
        let DemandSettings { alpha, min, max, decay } = self.settings;
        let per_input = batch.max(1) as f64;
        let ratio = |measured: f64, predicted: f64| (predicted > 1e-6 && measured.is_finite()).then(|| (measured / per_input / predicted).clamp(min, max));
        let mut changed = false;
        // the local stages' time as the device ran them: waiting for the device is the queue's
        if let Some(r) = (candidate.cut > 0).then(|| ratio(measured.local_ms - measured.device_wait_ms, predicted.local_ms)).flatten() {
            // seeded by its first measurement, as TCP seeds its smoothed RTT: the profile's
            // prediction is what is being corrected, so it is no prior worth averaging with
            self.device.entry(model).and_modify(|f| *f = blend(*f, r, alpha)).or_insert(r);
            changed = true;
        }
        // while only offloads run nothing measures the device: its factor drifts back towards
        // the profile's 1, as a shunned plan's worker factors do, so one slow first run (a cold
        // cache) cannot keep the local plans shunned for good
        if candidate.cut == 0 && decay > 0.0 {
            if let Some(factor) = self.device.get_mut(&model) {
                *factor = blend(*factor, 1.0, decay);
                changed = true;
            }
        }
        if !self.learn_worker {
            return changed;
        }
        if decay > 0.0 {
            for (_, factors) in self.worker.iter_mut().filter(|((m, p), _)| *m == model && *p != plan) {
                factors.iter_mut().for_each(|f| *f = blend(*f, 1.0, decay));
                changed = true;
            }
        }
        if !candidate.uses_worker() {
            return changed;
        }
        let transfer = ratio(measured.upload_ms + measured.download_ms, predicted.transfer_ms);
        let remote = ratio(measured.remote_compute_ms, predicted.remote_ms);
        let factors = self.worker.entry((model, plan)).or_insert([1.0; 2]);
        for (f, r) in factors.iter_mut().zip([transfer, remote]) {
            if let Some(r) = r {
                *f = blend(*f, r, alpha);
                changed = true;
            }
        }
        changed
    }
}

/// `factor` moved the fraction `weight` of the way to `towards`: a moving average's step, and a
/// factor's decay back towards 1.
fn blend(factor: f64, towards: f64, weight: f64) -> f64 {
    (1.0 - weight) * factor + weight * towards
}
