//! What serving knows about each worker: whether it answers (a plan that uses a dead worker is
//! masked until it answers again), the queue it last reported and when. A background task
//! probes every worker (the probe's round trip is also the link's RTT sample), reads its
//! `GET /v2/stats`, and measures an idle link with the active probe; replies and fallbacks
//! update the same record between probes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rlsched_env::config::ProbeConfig;
use rlsched_executor::plan::PlanExecutor;

use crate::serve::metrics::{Metrics, WorkerLabels};

#[derive(Default)]
struct WorkerRecord {
    up: AtomicBool,
    /// (queue length, when it was reported on the executor's clock)
    report: Mutex<(f64, Option<f64>)>,
}

pub struct WorkerBoard {
    workers: Vec<WorkerRecord>,
}

impl WorkerBoard {
    pub fn new(count: usize) -> Self {
        Self { workers: (0..count).map(|_| WorkerRecord::default()).collect() }
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn up(&self, worker: usize) -> bool {
        self.workers.get(worker).is_some_and(|w| w.up.load(Ordering::SeqCst))
    }

    /// The queue length the worker last reported, and when.
    pub fn report(&self, worker: usize) -> (f64, Option<f64>) {
        self.workers.get(worker).map_or((0.0, None), |w| *w.report.lock().expect("report lock"))
    }

    pub fn set_up(&self, worker: usize, up: bool, metrics: &Metrics) {
        if let Some(w) = self.workers.get(worker) {
            w.up.store(up, Ordering::SeqCst);
            metrics.worker_up.get_or_create(&WorkerLabels { worker: worker.to_string() }).set(up as i64);
        }
    }

    pub fn set_report(&self, worker: usize, queue: f64, at_s: f64) {
        if let Some(w) = self.workers.get(worker) {
            *w.report.lock().expect("report lock") = (queue, Some(at_s));
        }
    }
}

/// Probes every worker once, all at once, before serving starts: which workers answer and
/// what they have queued. Each probe is bounded by `--probe-timeout-ms`.
pub async fn poll_once(board: &Arc<WorkerBoard>, executor: &Arc<PlanExecutor>, metrics: &Arc<Metrics>) {
    let mut probes = tokio::task::JoinSet::new();
    for worker in 0..board.len() {
        let (board, executor, metrics) = (board.clone(), executor.clone(), metrics.clone());
        probes.spawn(async move { poll_worker(worker, &board, &executor, &metrics, None).await });
    }
    while probes.join_next().await.is_some() {}
}

/// One worker's probe: it is up while it answers readiness, and its stats give the queue. With
/// `probe`, a link that carried no transfer for `probe.interval_s` gets the active probe
/// (`probe.bytes` up), as in the simulator, so the policy is not left without a bandwidth
/// estimate because it chose not to send anything.
async fn poll_worker(worker: usize, board: &WorkerBoard, executor: &PlanExecutor, metrics: &Metrics, probe: Option<&ProbeConfig>) {
    let up = executor.probe(worker).await.is_ok();
    // marked before the slower reads below, so a death (or a return) is seen within one probe
    board.set_up(worker, up, metrics);
    if !up {
        return;
    }
    if let Ok(stats) = executor.workers()[worker].stats().await {
        board.set_report(worker, stats.queued as f64, executor.now_s());
    }
    let Some(probe) = probe else { return };
    let last = executor.link_estimate(worker).last_transfer_s();
    if probe.bytes > 0 && last.is_none_or(|t| executor.now_s() - t >= probe.interval_s) {
        // a server that is not an rlsched worker may not serve the probe's payload
        executor.probe_upload(worker, probe.bytes).await.ok();
    }
}

/// Polls every worker every `interval`, each on its own loop, so that one hung worker delays
/// only its own probes, until the task is aborted.
pub async fn poll(board: Arc<WorkerBoard>, executor: Arc<PlanExecutor>, metrics: Arc<Metrics>, interval: Duration, probe: ProbeConfig) {
    let mut loops = tokio::task::JoinSet::new();
    for worker in 0..board.len() {
        let (board, executor, metrics, probe) = (board.clone(), executor.clone(), metrics.clone(), probe.clone());
        loops.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                poll_worker(worker, &board, &executor, &metrics, Some(&probe)).await;
            }
        });
    }
    // the loops end when this task is aborted and the set is dropped with it
    while loops.join_next().await.is_some() {}
}
