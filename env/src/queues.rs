//! The device's own queues. One device runs one request's local stages at a time, and one
//! uplink carries one transfer at a time (the probe included), first in first out; the worker
//! runs our requests one at a time behind other clients' load. Without these, every request
//! would be an independent decision and a greedy one-step predictor nearly optimal; with them a
//! choice delays later requests.

use std::collections::VecDeque;

/// What the device knows of its own queues at decision time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DeviceQueues {
    /// Local work queued ahead of a new request, ms (profile means at the observed load).
    pub local_ahead_ms: f64,
    /// Bytes queued on the uplink that have not left yet.
    pub uplink_backlog_bytes: f64,
}

/// The true state of the queues in the simulator.
#[derive(Clone, Debug, Default)]
pub struct Queues {
    /// When the device finishes the local work already queued (true compute times).
    pub device_free_at: f64,
    /// When the device expects to finish it: profile means at the load it observed.
    pub device_expected_free_at: f64,
    /// When the uplink finishes the transfers already queued.
    pub uplink_free_at: f64,
    /// When the worker finishes our requests already sent.
    pub worker_free_at: f64,
    /// Queued and running uploads: (start, end, bytes), oldest first.
    uploads: VecDeque<(f64, f64, f64)>,
}

impl Queues {
    /// What the device knows at `now`.
    pub fn known(&mut self, now: f64) -> DeviceQueues {
        while self.uploads.front().is_some_and(|u| u.1 <= now) {
            self.uploads.pop_front();
        }
        let backlog = self
            .uploads
            .iter()
            .map(|&(start, end, bytes)| if start >= now { bytes } else { bytes * (end - now) / (end - start).max(1e-12) })
            .sum();
        DeviceQueues {
            local_ahead_ms: (self.device_expected_free_at - now).max(0.0) * 1e3,
            uplink_backlog_bytes: backlog,
        }
    }

    /// Queues an upload of `bytes` from `start` to `end`.
    pub fn upload(&mut self, start: f64, end: f64, bytes: f64) {
        self.uploads.push_back((start, end, bytes));
        self.uplink_free_at = self.uplink_free_at.max(end);
    }
}
