//! What the device has measured so far: the shared link estimator (goodput samples, RTT) and
//! the worker's last report. The simulator delays each measurement until the moment a real
//! device would have it (a transfer's sample when its reply arrives), so no future leaks in.

use rlsched_executor::net::estimator::{EstimatorConfig, LinkEstimator};

/// One measurement on its way to the device.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reading {
    /// A transfer of `bytes` that spent `wire_ms` on the wire.
    Transfer { bytes: usize, wire_ms: f64 },
    /// A transfer of `bytes` abandoned after `wire_ms` on the wire (its deadline).
    Censored { bytes: usize, wire_ms: f64 },
    Rtt(f64),
    /// The worker's queue length, as it reports it with a reply.
    Queue(f64),
}

#[derive(Clone, Debug, Default)]
pub struct Measurements {
    pub link: LinkEstimator,
    pub reported_queue: f64,
    pub last_report_s: Option<f64>,
    /// Readings still in flight, with the time they complete.
    pending: Vec<(f64, Reading)>,
}

impl Measurements {
    pub fn new(config: EstimatorConfig) -> Self {
        Self { link: LinkEstimator::new(config), ..Self::default() }
    }

    /// Measurements taken outside the simulator (live), already complete.
    pub fn observed(link: LinkEstimator, reported_queue: f64, last_report_s: Option<f64>) -> Self {
        Self { link, reported_queue, last_report_s, pending: Vec::new() }
    }

    pub(crate) fn record(&mut self, at_s: f64, reading: Reading) {
        self.pending.push((at_s, reading));
    }

    /// Whether a measurement (a probe, a reply) is still on its way.
    pub(crate) fn in_flight(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Makes the measurements completed by `now` visible, oldest first.
    pub(crate) fn catch_up(&mut self, now: f64) {
        if self.pending.iter().all(|p| p.0 > now) {
            return;
        }
        self.pending.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ready = self.pending.partition_point(|p| p.0 <= now);
        for (at, reading) in self.pending.drain(..ready) {
            match reading {
                Reading::Transfer { bytes, wire_ms } => {
                    self.link.record_transfer(at, bytes, wire_ms);
                }
                Reading::Censored { bytes, wire_ms } => {
                    self.link.record_censored(at, bytes, wire_ms);
                }
                Reading::Rtt(ms) => self.link.record_rtt(ms),
                Reading::Queue(q) => {
                    self.reported_queue = q;
                    self.last_report_s = Some(at);
                }
            }
        }
    }
}
