//! The Prometheus metrics `GET /metrics` reports, through `prometheus-client` (the Prometheus
//! project's own Rust client): requests by plan, responses by status, latency histograms, SLO
//! misses, fallbacks, decision time, workers' health, link estimates and failed probes, online
//! updates and rollbacks.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlanLabels {
    pub workload: String,
    pub strategy: String,
    pub variant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StrategyLabels {
    pub strategy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    pub worker: String,
}

pub struct Metrics {
    registry: Registry,
    /// Requests served, by the plan that served them.
    pub requests: Family<PlanLabels, Counter>,
    /// Every answer to an infer request, by HTTP status (503 for a full queue).
    pub responses: Family<CodeLabels, Counter>,
    pub latency: Family<StrategyLabels, Histogram>,
    pub slo_misses: Counter,
    /// Plans whose remote part failed and ran locally instead.
    pub fallbacks: Counter,
    pub decision: Histogram,
    pub in_flight: Gauge,
    /// 1 while the worker answers its probes, 0 while its plans are masked.
    pub worker_up: Family<WorkerLabels, Gauge>,
    /// The link estimate to each worker (harmonic mean of its goodput samples), once there is one.
    pub link_mbps: Family<WorkerLabels, Gauge<f64, AtomicU64>>,
    /// Active probes of the link that failed (the server named on stderr).
    pub probe_errors: Family<WorkerLabels, Counter>,
    pub online_updates: Counter,
    pub online_rollbacks: Counter,
    /// Transitions the learner had no room for while an update ran (its buffer is bounded).
    pub online_dropped: Counter,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. about 16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("rlsched");
        let requests = Family::<PlanLabels, Counter>::default();
        let responses = Family::<CodeLabels, Counter>::default();
        let latency = Family::<StrategyLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let slo_misses = Counter::default();
        let fallbacks = Counter::default();
        // 1 µs .. about 0.5 s
        let decision = Histogram::new(exponential_buckets(1e-6, 2.0, 20));
        let in_flight = Gauge::default();
        let worker_up = Family::<WorkerLabels, Gauge>::default();
        let link_mbps = Family::<WorkerLabels, Gauge<f64, AtomicU64>>::default();
        let probe_errors = Family::<WorkerLabels, Counter>::default();
        let (online_updates, online_rollbacks, online_dropped) = (Counter::default(), Counter::default(), Counter::default());
        registry.register("requests", "Requests served, by plan", requests.clone());
        registry.register("responses", "Answers to infer requests, by HTTP status", responses.clone());
        registry.register("latency_seconds", "Measured end-to-end latency, by strategy", latency.clone());
        registry.register("slo_misses", "Requests that took longer than their SLO", slo_misses.clone());
        registry.register("fallbacks", "Remote parts that failed and ran locally", fallbacks.clone());
        registry.register("decision_seconds", "Time to observe and choose a plan", decision.clone());
        registry.register("in_flight", "Infer requests admitted and not yet answered", in_flight.clone());
        registry.register("worker_up", "Whether the worker answers (its plans are masked at 0)", worker_up.clone());
        registry.register("link_mbps", "The link estimate to the worker, Mbit/s", link_mbps.clone());
        registry.register("probe_errors", "Active link probes that failed", probe_errors.clone());
        registry.register("online_updates", "Online PPO updates swapped in", online_updates.clone());
        registry.register("online_rollbacks", "Online policies rolled back by the guardrail", online_rollbacks.clone());
        registry.register("online_dropped", "Transitions dropped because the learner's buffer was full", online_dropped.clone());
        Self {
            registry,
            requests,
            responses,
            latency,
            slo_misses,
            fallbacks,
            decision,
            in_flight,
            worker_up,
            link_mbps,
            probe_errors,
            online_updates,
            online_rollbacks,
            online_dropped,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
