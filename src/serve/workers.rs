//! What serving knows about each worker: whether it answers (a plan that uses a dead worker is
//! masked until it answers again), what kind of server it is, the queue it last reported and
//! when. A background task probes every worker (the probe's round trip is also the link's RTT
//! sample), reads its metadata when it comes up (`GET /v2`: an rlsched worker, or another Open
//! Inference Protocol server that runs whole models only), an rlsched worker's
//! `GET /v2/stats`, and measures the link with the active probe; replies and fallbacks update
//! the same record between probes.

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
    /// When the active probe last ran, on the executor's clock.
    probed_s: Mutex<Option<f64>>,
    /// The last probe error printed, so a server that keeps failing it is named once.
    probe_error: Mutex<Option<String>>,
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

    fn probed_s(&self, worker: usize) -> Option<f64> {
        self.workers.get(worker).and_then(|w| *w.probed_s.lock().expect("probe lock"))
    }

    fn set_probed(&self, worker: usize, at_s: f64) {
        if let Some(w) = self.workers.get(worker) {
            *w.probed_s.lock().expect("probe lock") = Some(at_s);
        }
    }

    /// Prints a probe's error on stderr when it differs from the last one printed: a server
    /// that cannot be probed is named once, not every interval.
    fn note_probe_error(&self, worker: usize, error: &str) {
        if let Some(w) = self.workers.get(worker) {
            let mut last = w.probe_error.lock().expect("probe error lock");
            if last.as_deref() != Some(error) {
                eprintln!("worker {worker}: link probe failed: {error}");
                *last = Some(error.to_string());
            }
        }
    }

    fn clear_probe_error(&self, worker: usize) {
        if let Some(w) = self.workers.get(worker) {
            *w.probe_error.lock().expect("probe error lock") = None;
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

/// One worker's probe: it is up while it answers readiness. When it comes up its metadata says
/// what it is; an rlsched worker's stats give the queue (another server has none: its queue
/// and compute show in its measured replies, which online demand estimation folds in). With
/// `probe`, the active probe (`probe.bytes` up), as in the simulator, so the policy is not left
/// without a bandwidth estimate because it chose not to send anything: on an rlsched worker's
/// link when it carried no transfer for `probe.interval_s` (its replies make samples), on any
/// other server's every `probe.interval_s` (its replies make none).
async fn poll_worker(worker: usize, board: &WorkerBoard, executor: &PlanExecutor, metrics: &Metrics, probe: Option<&ProbeConfig>) {
    let was_up = board.up(worker);
    let up = executor.probe(worker).await.is_ok();
    // marked before the slower reads below, so a death (or a return) is seen within one probe
    board.set_up(worker, up, metrics);
    if !up {
        return;
    }
    let client = &executor.workers()[worker];
    if !was_up || client.info().is_none() {
        // a server that came back may be another one at the same address
        if let Err(e) = executor.discover(worker).await {
            board.note_probe_error(worker, &format!("metadata (GET /v2): {e}"));
        }
    }
    let rlsched = client.info().is_some_and(|i| i.stages);
    if rlsched {
        if let Ok(stats) = client.stats().await {
            board.set_report(worker, stats.queued as f64, executor.now_s());
        }
    }
    let Some(probe) = probe else { return };
    let now = executor.now_s();
    let due = if rlsched {
        executor.link_estimate(worker).probe_due(now, probe.interval_s)
    } else {
        board.probed_s(worker).is_none_or(|t| now - t >= probe.interval_s)
    };
    if probe.bytes > 0 && due {
        board.set_probed(worker, now);
        match executor.probe_upload(worker, probe.bytes, Duration::from_secs_f64(probe.timeout_s)).await {
            Ok(()) => board.clear_probe_error(worker),
            Err(e) => {
                metrics.probe_errors.get_or_create(&WorkerLabels { worker: worker.to_string() }).inc();
                board.note_probe_error(worker, &e.to_string());
            }
        }
    }
    if let Some(mbps) = executor.link_estimate(worker).harmonic_mbps() {
        metrics.link_mbps.get_or_create(&WorkerLabels { worker: worker.to_string() }).set(mbps);
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
