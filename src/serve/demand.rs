//! Online demand estimation: for each plan, a moving average of measured over predicted time,
//! separately for its local stages, its transfers and its remote stages, kept within bounds.
//! The factors correct the plan's predictions in the observation (`Candidate::corrected`), so
//! the policy sees what the plan really costs now, which the profile cannot say (a worker
//! slowed by other load, a device slower than its profile).

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
    factors: HashMap<(usize, usize), Factors>,
}

impl Demand {
    pub fn new(alpha: f64, min: f64, max: f64) -> Self {
        Self { alpha, min, max, factors: HashMap::new() }
    }

    /// Folds one finished request of plan `plan` of model `model` into its factors and returns
    /// them. A request that fell back measured nothing of its remote part, and changes nothing.
    pub fn observe(&mut self, model: usize, plan: usize, candidate: &Candidate, predicted: &Prediction, measured: &Breakdown) -> Option<Factors> {
        if measured.fallback.is_some() {
            return None;
        }
        let ratio = |measured: f64, predicted: f64| (predicted > 1e-6 && measured.is_finite()).then(|| (measured / predicted).clamp(self.min, self.max));
        let local = (candidate.cut > 0).then(|| ratio(measured.local_ms - measured.device_wait_ms, predicted.local_ms)).flatten();
        let uses_worker = candidate.uses_worker();
        let transfer = uses_worker.then(|| ratio(measured.upload_ms + measured.download_ms, predicted.transfer_ms)).flatten();
        let remote = uses_worker.then(|| ratio(measured.remote_compute_ms, predicted.remote_ms)).flatten();
        let factors = self.factors.entry((model, plan)).or_insert([1.0; 3]);
        for (f, r) in factors.iter_mut().zip([local, transfer, remote]) {
            if let Some(r) = r {
                *f = (1.0 - self.alpha) * *f + self.alpha * r;
            }
        }
        Some(*factors)
    }
}
