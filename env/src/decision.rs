//! The decision context: everything a scheduler may read for one request, the same in the
//! simulator, in `LiveEnv` and in serving. Deployable schedulers read the observation, the
//! device's measurements, its own queues and the monitor's load; the bounds (`oracle-now`,
//! `oracle`) also read `hindsight`, which only the simulator provides.

use crate::candidates::Candidate;
use crate::config::EnvConfig;
use crate::measurements::Measurements;
use crate::obs::{predict, Obs};
use crate::queues::DeviceQueues;
use crate::request::RequestWorld;
use crate::scenario::WorkloadModel;

/// The truth behind a simulated request, for reference schedulers only.
pub trait Hindsight {
    /// The trace's true rate over the second before the request's arrival, Mbit/s.
    fn now_mbps(&self) -> f64;
    /// The request's true world (load, worker queue, compute draws).
    fn world(&self) -> Option<&RequestWorld>;
    /// The clairvoyant reference's choice: the valid plan with the best true reward over this
    /// request and the next few, given the current queues.
    fn best(&self) -> Option<usize>;
}

pub struct Decision<'a> {
    pub model: &'a WorkloadModel,
    pub obs: &'a Obs,
    /// The device load as the monitor reads it.
    pub observed_load: f64,
    pub measurements: &'a Measurements,
    pub queues: DeviceQueues,
    pub config: &'a EnvConfig,
    pub hindsight: Option<&'a dyn Hindsight>,
}

impl Decision<'_> {
    pub fn candidates(&self) -> &[Candidate] {
        &self.model.candidates
    }

    pub fn slo_ms(&self) -> f64 {
        self.model.mix.slo_ms
    }

    /// The valid candidate with the best predicted reward at this device load, bandwidth and
    /// worker queue, behind the device's own queues.
    pub fn best_predicted(&self, load: f64, mbps: Option<f64>, worker_queue: f64) -> usize {
        self.best_valid(|_, c| {
            let p = predict(c, load, mbps, self.measurements.link.rtt_ms(), worker_queue, self.queues, self.config);
            self.config.reward.reward(c.accuracy, p.total_ms(), self.slo_ms(), c.bytes_up)
        })
    }

    /// The valid candidate with the highest score (first on ties). The mask always keeps one.
    pub fn best_valid(&self, mut score: impl FnMut(usize, &Candidate) -> f64) -> usize {
        let mut best: Option<(usize, f64)> = None;
        for (i, c) in self.candidates().iter().enumerate() {
            if !self.obs.mask.get(i).copied().unwrap_or(false) {
                continue;
            }
            let s = score(i, c);
            if best.is_none_or(|(_, b)| s > b) {
                best = Some((i, s));
            }
        }
        // the observation never masks every plan; if it did, the first plan is still a plan
        best.map_or(0, |b| b.0)
    }
}
