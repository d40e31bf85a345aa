//! The serving device's own state, read at every decision without blocking: the load that
//! other work puts on it (runnable tasks of other processes per core, and their CPU
//! utilisation; a background task samples them, since a utilisation sample needs two readings
//! some time apart, so requests read the latest instead of sampling), and its own queues:
//! local work admitted and not yet finished, bytes queued for the uplink. Each request holds a guard for what it added, so a
//! request that ends in any way gives it back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rlsched_env::queues::DeviceQueues;
use rlsched_executor::monitor::ResourceMonitor;

/// Runnable-task counts the load averages over (one per `interval / LOAD_READS`).
const LOAD_READS: usize = 5;

#[derive(Default)]
pub struct DeviceState {
    /// Runnable tasks of other processes per core (smoothed), the contention signal.
    load_bits: AtomicU64,
    /// The CPU share other processes took, 0..1.
    utilization_bits: AtomicU64,
    /// Expected local work ahead, microseconds.
    local_ahead_us: AtomicU64,
    uplink_bytes: AtomicU64,
}

/// What one request added to the device's queues, given back on drop.
#[must_use]
pub struct QueueGuard {
    device: Arc<DeviceState>,
    local_us: u64,
    bytes: u64,
}

impl Drop for QueueGuard {
    fn drop(&mut self) {
        self.device.local_ahead_us.fetch_sub(self.local_us, Ordering::SeqCst);
        self.device.uplink_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl DeviceState {
    /// Runnable tasks of other processes per core: what the contention model slows local
    /// stages by.
    pub fn load(&self) -> f64 {
        f64::from_bits(self.load_bits.load(Ordering::Relaxed))
    }

    /// Other processes' CPU utilisation, 0..1 (observed beside the load; it saturates).
    pub fn utilization(&self) -> f64 {
        f64::from_bits(self.utilization_bits.load(Ordering::Relaxed))
    }

    pub fn queues(&self) -> DeviceQueues {
        DeviceQueues {
            local_ahead_ms: self.local_ahead_us.load(Ordering::SeqCst) as f64 / 1e3,
            uplink_backlog_bytes: self.uplink_bytes.load(Ordering::SeqCst) as f64,
        }
    }

    /// Counts a chosen plan's expected local work and upload until the guard drops.
    pub fn enqueue(self: &Arc<Self>, local_ms: f64, bytes_up: f64) -> QueueGuard {
        let local_us = (local_ms.max(0.0) * 1e3).min(1e12) as u64;
        let bytes = bytes_up.max(0.0).min(1e15) as u64;
        self.local_ahead_us.fetch_add(local_us, Ordering::SeqCst);
        self.uplink_bytes.fetch_add(bytes, Ordering::SeqCst);
        QueueGuard { device: self.clone(), local_us, bytes }
    }

    /// Samples the monitor every `interval` until the task is aborted. The load is the
    /// simulator's device load, runnable tasks of *other* processes per core, and the
    /// utilisation is theirs too: this process's own work (serving's inference) is left out,
    /// or every local plan would make local plans look slower. The runnable count is an
    /// instant's; between samples, every `interval / LOAD_READS`, the load is the mean of the
    /// last `LOAD_READS` counts, so that a moment's blip does not move a decision.
    pub async fn monitor(self: Arc<Self>, interval: Duration) {
        let mut monitor = ResourceMonitor::new();
        let mut ticker = tokio::time::interval(interval / LOAD_READS as u32);
        let mut reads = std::collections::VecDeque::with_capacity(LOAD_READS);
        let (mut tick, mut cores) = (0usize, 1.0);
        loop {
            ticker.tick().await;
            let runnable = if tick % LOAD_READS == 0 {
                let sample = monitor.sample();
                cores = sample.cores.max(1) as f64;
                self.utilization_bits.store(sample.other_utilization.to_bits(), Ordering::Relaxed);
                sample.runnable_per_core
            } else {
                rlsched_executor::monitor::runnable_others().unwrap_or(0.0) / cores
            };
            if reads.len() == LOAD_READS {
                reads.pop_front();
            }
            reads.push_back(runnable);
            let load = reads.iter().sum::<f64>() / reads.len() as f64;
            self.load_bits.store(load.to_bits(), Ordering::Relaxed);
            tick += 1;
        }
    }
}
