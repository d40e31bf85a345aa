//! Online demand estimation: for each plan, a moving average of measured over predicted time,
//! separately for its local stages, its transfers and its remote stages, kept within bounds.
//! The factors correct the plan's predictions in the observation (`Candidate::corrected`), so
//! the policy sees what the plan really costs now, which the profile cannot say (a worker
//! slowed by other load, a device slower than its profile). A server that is not an rlsched
//! worker reports neither its queue nor its compute: its remote time is the measured reply less
//! the link's share (`PlanExecutor`), queueing included, and it is corrected here the same way.

use std::collections::HashMap;

use rlsched_env::candidates::Candidate;
use rlsched_env::obs::Prediction;
use rlsched_executor::plan::Breakdown;

/// Correction factors of one plan: local, transfer, remote.
pub type Factors = [f64; 3];

pub struct Demand {
    alpha: f64,
    min: f64,
    max: f64,
    decay: f64,
    factors: HashMap<(usize, usize), Factors>,
}

impl Demand {
    pub fn new(alpha: f64, min: f64, max: f64, decay: f64) -> Self {
        Self { alpha, min, max, decay, factors: HashMap::new() }
    }

    /// The factors of plan `plan` of model `model` (1 until it is measured).
    pub fn factors(&self, model: usize, plan: usize) -> Factors {
        self.factors.get(&(model, plan)).copied().unwrap_or([1.0; 3])
    }

    /// Folds one finished request of `batch` inputs, run with plan `plan` of model `model`,
    /// into its factors, and pulls the model's other plans back towards 1 by `decay`; returns
    /// every plan whose factors changed. Predictions are for one input, so the measurement is
    /// taken per input: a burst of large batches must not make a plan look slow to the
    /// single requests after it. A request that fell back measured nothing of its remote
    /// part, and changes nothing.
    pub fn observe(
        &mut self,
        model: usize,
        plan: usize,
        candidate: &Candidate,
        predicted: &Prediction,
        measured: &Breakdown,
        batch: usize,
    ) -> Vec<(usize, Factors)> {
        if measured.fallback.is_some() {
            return Vec::new();
        }
        let per_input = batch.max(1) as f64;
        let ratio = |measured: f64, predicted: f64| {
            (predicted > 1e-6 && measured.is_finite()).then(|| (measured / per_input / predicted).clamp(self.min, self.max))
        };
        let local = (candidate.cut > 0).then(|| ratio(measured.local_ms - measured.device_wait_ms, predicted.local_ms)).flatten();
        let uses_worker = candidate.uses_worker();
        let transfer = uses_worker.then(|| ratio(measured.upload_ms + measured.download_ms, predicted.transfer_ms)).flatten();
        let remote = uses_worker.then(|| ratio(measured.remote_compute_ms, predicted.remote_ms)).flatten();
        let mut changed = Vec::new();
        for (&(m, p), factors) in self.factors.iter_mut() {
            if m == model && p != plan && self.decay > 0.0 {
                factors.iter_mut().for_each(|f| *f += self.decay * (1.0 - *f));
                changed.push((p, *factors));
            }
        }
        let factors = self.factors.entry((model, plan)).or_insert([1.0; 3]);
        for (f, r) in factors.iter_mut().zip([local, transfer, remote]) {
            if let Some(r) = r {
                *f = (1.0 - self.alpha) * *f + self.alpha * r;
            }
        }
        changed.push((plan, *factors));
        changed
    }
}
