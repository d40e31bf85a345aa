//! One episode step by step: what a scheduler saw and chose for each request, and what
//! happened. Evaluation (`eval.rs`) aggregates over many episodes; this record keeps one
//! episode whole, for a timeline (bandwidth, the device's queues, each plan chosen). Episode
//! `i` with seed `s` is the same episode that `evaluate` runs as its `i`-th with seed `s`, so
//! every scheduler's record of it replays identical requests.

use std::sync::Arc;

use rlsched_executor::net::trace::Trace;
use serde::Serialize;

use crate::replay::ReplayEnv;
use crate::scenario::Scenario;
use crate::schedulers::Scheduler;
use crate::{Env, EnvError};

/// One request of an episode: the device's view when the scheduler chose, the choice, and its
/// true outcome.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StepRecord {
    /// Arrival on the trace's clock, seconds.
    pub time_s: f64,
    pub workload: String,
    /// Index of the chosen candidate among the workload's plans.
    pub candidate: usize,
    /// `local`, `split` or `offload`.
    pub kind: String,
    pub variant: String,
    pub compressed: bool,
    /// Local work queued ahead of this request, as the device knew it, ms.
    pub device_ahead_ms: f64,
    /// Bytes waiting on the uplink, as the device knew it.
    pub uplink_backlog_bytes: f64,
    /// The link estimate the observation used (harmonic mean of recent goodput samples).
    pub estimated_mbps: Option<f64>,
    /// The goodput samples behind that estimate, oldest first: (Mbit/s, censored).
    pub link_samples: Vec<(f64, bool)>,
    pub latency_ms: f64,
    pub slo_ms: f64,
    pub reward: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EpisodeRecord {
    pub scheduler: String,
    /// The trace's name and its index in the scenario's traces.
    pub trace: String,
    pub trace_index: usize,
    pub steps: Vec<StepRecord>,
}

/// Runs `scheduler` over episode `episode` (trace `episode mod traces`, seed `seed + episode`,
/// as `eval::evaluate` does) and records every step.
pub fn record_episode(
    scenario: Arc<Scenario>,
    scheduler: &mut dyn Scheduler,
    episode: usize,
    seed: u64,
) -> Result<EpisodeRecord, EnvError> {
    let mut env = ReplayEnv::new(scenario);
    env.compute_oracle = false;
    env.reset_on(episode, seed.wrapping_add(episode as u64))?;
    let (trace, trace_index) = (env.trace().name.clone(), env.trace_index);
    let mut steps = Vec::new();
    while let Some(decision) = env.decision() {
        let action = scheduler.choose(&decision);
        let (device_ahead_ms, uplink_backlog_bytes) = (decision.queues.local_ahead_ms, decision.queues.uplink_backlog_bytes);
        let estimated_mbps = decision.measurements.link.harmonic_mbps();
        let link_samples = decision.measurements.link.samples().map(|s| (s.mbps, s.censored)).collect();
        let time_s = env.current().map_or(0.0, |r| r.world.time_s);
        let step = env.step(action)?;
        let info = step.info;
        let plan = info.plan.as_ref();
        steps.push(StepRecord {
            time_s,
            workload: info.workload,
            candidate: info.candidate,
            kind: plan.map_or("offload", |p| p.kind()).to_string(),
            variant: plan.map_or_else(String::new, |p| p.variant().to_string()),
            compressed: info.compressed,
            device_ahead_ms,
            uplink_backlog_bytes,
            estimated_mbps,
            link_samples,
            latency_ms: info.outcome.total_ms,
            slo_ms: info.slo_ms,
            reward: step.reward,
        });
    }
    Ok(EpisodeRecord { scheduler: scheduler.name(), trace, trace_index, steps })
}

/// The trace's true rate from `start_s` to `end_s`, as the mean over consecutive windows of
/// `window_s` (a packet trace's instantaneous rate is a burst or nothing): (window start,
/// Mbit/s) pairs. Empty when the span or the window is not a positive finite number.
pub fn bandwidth_series(trace: &Trace, start_s: f64, end_s: f64, window_s: f64) -> Vec<(f64, f64)> {
    if !(window_s > 0.0 && window_s.is_finite() && start_s.is_finite() && end_s.is_finite() && end_s > start_s) {
        return Vec::new();
    }
    let windows = ((end_s - start_s) / window_s).ceil().min(1e6) as usize;
    (0..windows)
        .map(|i| {
            let t = start_s + i as f64 * window_s;
            (t, trace.bits_between(t, t + window_s) / window_s / 1e6)
        })
        .collect()
}
