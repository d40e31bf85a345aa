//! What a device can know about itself and its link at decision time: CPU utilisation, free
//! memory and load (read from the real system through sysinfo), and an estimate of the network
//! built from the transfers it actually made.

use std::collections::VecDeque;

use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct ResourceSample {
    /// Mean CPU utilisation over all cores since the previous sample, 0..1.
    pub cpu_utilization: f64,
    pub free_memory_bytes: u64,
    pub total_memory_bytes: u64,
    pub load_average_1m: f64,
    pub cores: usize,
}

pub struct ResourceMonitor {
    system: sysinfo::System,
}

impl Default for ResourceMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl ResourceMonitor {
    pub fn new() -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_cpu_usage();
        system.refresh_memory();
        Self { system }
    }

    /// Reads the system. CPU utilisation is averaged since the previous call (sysinfo needs two
    /// readings at least `sysinfo::MINIMUM_CPU_UPDATE_INTERVAL` apart for a meaningful figure).
    pub fn sample(&mut self) -> ResourceSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        ResourceSample {
            cpu_utilization: (self.system.global_cpu_usage() as f64 / 100.0).clamp(0.0, 1.0),
            free_memory_bytes: self.system.available_memory(),
            total_memory_bytes: self.system.total_memory(),
            load_average_1m: sysinfo::System::load_average().one,
            cores: self.system.cpus().len(),
        }
    }
}

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

    pub fn record_rtt(&mut self, millis: f64) {
        if millis.is_finite() && millis >= 0.0 {
            self.rtt_ms = Some(Self::ewma(self.rtt_ms, millis, self.alpha));
        }
    }

    /// Harmonic mean of the recent throughputs (robust to one fast outlier), as RobustMPC uses.
    pub fn harmonic_mean_mbps(&self) -> Option<f64> {
        if self.recent.is_empty() {
            return None;
        }
        let inverse: f64 = self.recent.iter().map(|s| 1.0 / s.mbps).sum();
        Some(self.recent.len() as f64 / inverse)
    }
}

impl Default for LinkEstimator {
    fn default() -> Self {
        Self::new(0.3, 8)
    }
}
