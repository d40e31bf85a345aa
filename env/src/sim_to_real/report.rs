//! The check's result: per plan, the live and simulated breakdowns of the same requests, their
//! percentiles and the median error, and the table that shows them.

use std::fmt;

use rlsched_executor::plan::{Breakdown, Plan};
use rlsched_executor::profile::profiler::percentile;

/// One plan of one workload, live and simulated, request by request in the same order.
#[derive(Clone, Debug)]
pub struct PlanComparison {
    pub workload: String,
    pub plan: Plan,
    pub live: Vec<Breakdown>,
    pub sim: Vec<Breakdown>,
}

fn quantile(runs: &[Breakdown], q: f64, part: impl Fn(&Breakdown) -> f64) -> f64 {
    let mut values: Vec<f64> = runs.iter().map(part).collect();
    values.sort_by(f64::total_cmp);
    percentile(&values, q)
}

/// The parts of a request's latency both sides measure alike: local compute; the network
/// (upload, download and one round trip, HTTP and tensor coding included); the worker's
/// queue and compute.
fn local(b: &Breakdown) -> f64 {
    b.local_ms
}
fn network(b: &Breakdown) -> f64 {
    b.total_ms - b.local_ms - b.remote_queue_ms - b.remote_compute_ms
}
fn remote(b: &Breakdown) -> f64 {
    b.remote_queue_ms + b.remote_compute_ms
}
fn total(b: &Breakdown) -> f64 {
    b.total_ms
}

impl PlanComparison {
    pub fn label(&self) -> String {
        match &self.plan {
            Plan::Split { cut, int8, .. } => format!("split@{cut}{}", if *int8 { " int8" } else { "" }),
            other => other.kind().to_string(),
        }
    }

    pub fn live_ms(&self, q: f64) -> f64 {
        quantile(&self.live, q, total)
    }

    pub fn sim_ms(&self, q: f64) -> f64 {
        quantile(&self.sim, q, total)
    }

    /// (simulated − live) / live, of the median latency.
    pub fn median_error(&self) -> f64 {
        self.sim_ms(0.5) / self.live_ms(0.5) - 1.0
    }
}

#[derive(Clone, Debug)]
pub struct SimToReal {
    pub rows: Vec<PlanComparison>,
    pub trace: String,
    pub mean_mbps: f64,
    pub rtt_ms: f64,
    pub profiles: String,
    /// Per workload, the fp32 totals (sum of stage means, ms) of the device and worker profiles.
    pub profile_ms: Vec<(String, f64, f64)>,
    /// CPU-bound co-runners beside the live requests, and the mean load the monitor read
    /// (runnable other tasks per core).
    pub co_runners: usize,
    pub mean_load: f64,
    pub seconds: f64,
}

impl fmt::Display for SimToReal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sim-to-real: trace {} ({:.1} Mbit/s mean), RTT {} ms, profiles {}", self.trace, self.mean_mbps, self.rtt_ms, self.profiles)?;
        writeln!(f, "{} CPU-bound co-runners beside the live requests; mean load read {:.2} runnable other tasks per core", self.co_runners, self.mean_load)?;
        writeln!(f, "requests run one at a time (the live executor does not serialise concurrent local work, and the worker shares this machine's cores); ms; medians of local / network / worker")?;
        for (workload, device, worker) in &self.profile_ms {
            writeln!(f, "{workload} fp32 profiles: device {device:.1} ms, worker {worker:.1} ms")?;
        }
        writeln!(f, "| workload | plan | n | bytes up | live p50 | live p95 | sim p50 | sim p95 | p50 error | live parts | sim parts |")?;
        writeln!(f, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")?;
        for row in &self.rows {
            let parts = |runs: &[Breakdown]| {
                let [l, n, r] = [local, network, remote].map(|part| quantile(runs, 0.5, part));
                format!("{l:.0} / {n:.0} / {r:.0}")
            };
            writeln!(
                f,
                "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1}% | {} | {} |",
                row.workload,
                row.label(),
                row.live.len(),
                row.live.first().map_or(0, |b| b.bytes_up),
                row.live_ms(0.5),
                row.live_ms(0.95),
                row.sim_ms(0.5),
                row.sim_ms(0.95),
                row.median_error() * 100.0,
                parts(&row.live),
                parts(&row.sim),
            )?;
        }
        write!(f, "took {:.0} s", self.seconds)
    }
}
