//! The link estimate a device builds from the transfers it actually made: an EWMA of
//! throughput, the last `k` samples and the RTT.

use std::collections::VecDeque;

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct TransferSample {
    pub bytes: usize,
    pub millis: f64,
    pub mbps: f64,
}

/// Throughput and RTT of the link to a worker: an exponentially weighted moving average plus
/// the last `k` samples (as Pensieve's state keeps them).
#[derive(Clone, Debug, Serialize)]
pub struct LinkEstimator {
    pub alpha: f64,
    pub k: usize,
    pub throughput_mbps: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub recent: VecDeque<TransferSample>,
    pub transfers: u64,
}

impl LinkEstimator {
    pub fn new(alpha: f64, k: usize) -> Self {
        Self {
            alpha,
            k,
            throughput_mbps: None,
            rtt_ms: None,
            recent: VecDeque::with_capacity(k),
            transfers: 0,
        }
    }

    fn ewma(old: Option<f64>, sample: f64, alpha: f64) -> f64 {
        old.map_or(sample, |o| alpha * sample + (1.0 - alpha) * o)
    }

    /// Records one measured transfer (bytes moved in `millis`, round trip included).
    pub fn record_transfer(&mut self, bytes: usize, millis: f64) {
        if bytes == 0 || !(millis > 0.0) {
            return;
        }
        let mbps = bytes as f64 * 8.0 / (millis * 1e3);
        self.throughput_mbps = Some(Self::ewma(self.throughput_mbps, mbps, self.alpha));
        if self.recent.len() == self.k {
            self.recent.pop_front();
        }
        self.recent.push_back(TransferSample { bytes, millis, mbps });
        self.transfers += 1;
    }
}

impl Default for LinkEstimator {
    fn default() -> Self {
        Self::new(0.3, 8)
    }
}
