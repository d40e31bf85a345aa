//! The serving device's own state, read at every decision without blocking: the CPU load that
//! other work puts on it (a background task samples sysinfo; a sample needs two readings some
//! time apart, so requests read the latest instead of sampling), and its own queues: local work admitted and not yet
//! finished, bytes queued for the uplink. Each request holds a guard for what it added, so a
//! request that ends in any way gives it back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rlsched_env::queues::DeviceQueues;
use rlsched_executor::monitor::ResourceMonitor;

#[derive(Default)]
pub struct DeviceState {
    load_bits: AtomicU64,
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
    pub fn load(&self) -> f64 {
        f64::from_bits(self.load_bits.load(Ordering::Relaxed))
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
    /// simulator's device load, the CPU share *other* work takes: this process's own share
    /// (serving's inference) is left out, or every local plan would make local plans look
    /// slower.
    pub async fn monitor(self: Arc<Self>, interval: Duration) {
        let mut monitor = ResourceMonitor::new();
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let load = monitor.sample().other_utilization;
            self.load_bits.store(load.to_bits(), Ordering::Relaxed);
        }
    }
}
