//! What the device has measured so far: its throughput history, the RTT, the worker's reports.
//! The simulator delays each measurement until it completes, so no future leaks in.

use std::collections::VecDeque;

/// What the device has measured so far: the link estimator's history and the worker's reports.
#[derive(Clone, Debug, Default)]
pub struct Measurements {
    /// Recent throughputs, Mbit/s, newest last.
    pub throughput_mbps: VecDeque<f64>,
    pub last_transfer_s: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub reported_queue: f64,
    pub last_report_s: Option<f64>,
    /// Measurements still in flight: (completion time, Mbit/s, queue report). They become
    /// visible only once the decision time passes their completion, so nothing from the
    /// trace's future reaches the observation.
    pub(crate) pending: Vec<(f64, Option<f64>, Option<f64>)>,
}

impl Measurements {
    /// Measurements taken outside the simulator (LiveEnv), already complete.
    pub fn observed(
        throughput_mbps: impl IntoIterator<Item = f64>,
        last_transfer_s: Option<f64>,
        rtt_ms: Option<f64>,
        reported_queue: f64,
        last_report_s: Option<f64>,
    ) -> Self {
        Self {
            throughput_mbps: throughput_mbps.into_iter().collect(),
            last_transfer_s,
            rtt_ms,
            reported_queue,
            last_report_s,
            pending: Vec::new(),
        }
    }

    pub fn last_mbps(&self) -> Option<f64> {
        self.throughput_mbps.back().copied()
    }

    pub fn harmonic_mbps(&self) -> Option<f64> {
        if self.throughput_mbps.is_empty() {
            return None;
        }
        let inverse: f64 = self.throughput_mbps.iter().map(|m| 1.0 / m.max(1e-6)).sum();
        Some(self.throughput_mbps.len() as f64 / inverse)
    }

    pub(crate) fn record(&mut self, at_s: f64, mbps: Option<f64>, queue: Option<f64>) {
        self.pending.push((at_s, mbps, queue));
    }

    /// Makes the measurements completed by `now` visible, oldest first.
    pub(crate) fn catch_up(&mut self, now: f64, k: usize) {
        if self.pending.iter().all(|p| p.0 > now) {
            return;
        }
        self.pending.sort_by(|a, b| a.0.total_cmp(&b.0));
        let ready = self.pending.partition_point(|p| p.0 <= now);
        for (at, mbps, queue) in self.pending.drain(..ready) {
            if let Some(mbps) = mbps {
                if self.throughput_mbps.len() == k {
                    self.throughput_mbps.pop_front();
                }
                self.throughput_mbps.push_back(mbps);
                self.last_transfer_s = Some(at);
            }
            if let Some(q) = queue {
                self.reported_queue = q;
                self.last_report_s = Some(at);
            }
        }
    }
}

