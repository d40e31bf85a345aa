//! Plan execution: run a request locally, split at a cut with a worker, or offload it whole,
//! and report what each part cost. A worker that is unreachable, times out or fails in the
//! middle of a request does not lose the request: execution falls back to local (reusing the
//! stages already computed) and the breakdown says so. Nor does one that is only slow: a remote
//! path that outlives its deadline is abandoned and finished locally the same way, which
//! bounds the tail when a link stalls (an outage would otherwise hold the request until the
//! link returns).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::kserve::client::{RemoteReply, WorkerClient};
use crate::net::estimator::{EstimatorConfig, LinkEstimator};
use crate::model::quantize;
use crate::model::workloads::Workload;
use crate::{DeviceChoice, ExecError, Network, NetworkCache, WireTensor};

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plan {
    Local { variant: String },
    /// Stages `0..cut` here, `cut..` on `worker`.
    /// `int8`: the intermediate crosses the link quantized to 8 bits (JALAD), 4× fewer bytes.
    Split {
        variant: String,
        cut: usize,
        worker: usize,
        #[serde(default)]
        int8: bool,
    },
    Offload { variant: String, worker: usize },
}

impl Plan {
    pub fn variant(&self) -> &str {
        match self {
            Plan::Local { variant } | Plan::Split { variant, .. } | Plan::Offload { variant, .. } => variant,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Plan::Local { .. } => "local",
            Plan::Split { .. } => "split",
            Plan::Offload { .. } => "offload",
        }
    }
}

/// Measured cost of one execution, in milliseconds and bytes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Breakdown {
    /// From arrival until the local stages finished, waiting for the device included.
    pub local_ms: f64,
    /// The part of `local_ms` spent waiting for the device's earlier requests.
    #[serde(default)]
    pub device_wait_ms: f64,
    /// From the local stages' end until the input reached the worker: waiting for the uplink,
    /// the transfer and half a round trip.
    pub upload_ms: f64,
    pub remote_queue_ms: f64,
    pub remote_compute_ms: f64,
    pub download_ms: f64,
    pub total_ms: f64,
    pub bytes_up: usize,
    pub bytes_down: usize,
    /// The worker's queue length as it reported it, when a worker answered.
    pub worker_queue_length: Option<usize>,
    /// Why the remote part was abandoned and run locally instead.
    pub fallback: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Execution {
    pub output: WireTensor,
    pub breakdown: Breakdown,
}

/// Runs plans against local networks and a set of workers.
pub struct PlanExecutor {
    networks: NetworkCache,
    /// The device computes one request's stages at a time, as the simulator assumes: concurrent
    /// requests (in `serve`) wait here, and that wait is their `device_wait_ms`. The permit is
    /// owned by the computation, so a dropped request cannot free the device early.
    device: Arc<tokio::sync::Semaphore>,
    workers: Vec<WorkerClient>,
    /// The link to each worker, estimated from this executor's own transfers and probes.
    links: Mutex<Vec<LinkEstimator>>,
    /// The estimators' clock.
    started: Instant,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

impl PlanExecutor {
    pub fn new(device: DeviceChoice, workers: Vec<WorkerClient>) -> Result<Self, ExecError> {
        let links = workers.iter().map(|_| LinkEstimator::default()).collect();
        Ok(Self {
            networks: NetworkCache::new(device.device()?),
            device: Arc::new(tokio::sync::Semaphore::new(1)),
            workers,
            links: Mutex::new(links),
            started: Instant::now(),
        })
    }

    /// Keeps `config`'s history and sample floor in every worker's link estimate (the
    /// simulator's, so live features match the trained ones).
    pub fn with_estimator(self, config: EstimatorConfig) -> Self {
        let links = self.workers.iter().map(|_| LinkEstimator::new(config)).collect();
        Self { links: Mutex::new(links), ..self }
    }

    /// Seconds since this executor started: the clock of its link estimates.
    pub fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Checks that `worker` is ready; its round trip becomes an RTT sample.
    pub async fn probe(&self, worker: usize) -> Result<f64, ExecError> {
        let client = self.worker(worker)?;
        let rtt_ms = client.probe().await?;
        self.links.lock().expect("link lock")[worker].record_rtt(rtt_ms);
        Ok(rtt_ms)
    }

    fn worker(&self, worker: usize) -> Result<&WorkerClient, ExecError> {
        self.workers
            .get(worker)
            .ok_or_else(|| ExecError::Remote(format!("no worker {worker} (have {})", self.workers.len())))
    }

    pub fn workers(&self) -> &[WorkerClient] {
        &self.workers
    }

    /// The link estimate to each worker, as the recent splits and offloads measured it.
    pub fn link_estimates(&self) -> Vec<LinkEstimator> {
        self.links.lock().expect("link lock").clone()
    }

    /// The link estimate to one worker (the default estimate for a worker that does not exist).
    pub fn link_estimate(&self, worker: usize) -> LinkEstimator {
        self.links.lock().expect("link lock").get(worker).cloned().unwrap_or_default()
    }

    pub fn network(&self, workload: Workload, variant: &str) -> Result<Arc<Network>, ExecError> {
        self.networks.get(workload, variant)
    }

    /// Runs stages `start..end` on the device once it is free: (output, ms waited for it).
    async fn run_stages(&self, network: Arc<Network>, start: usize, end: Option<usize>, input: WireTensor) -> Result<(WireTensor, f64), ExecError> {
        let waiting = Instant::now();
        let permit = self.device.clone().acquire_owned().await.map_err(|e| ExecError::Backend(e.to_string()))?;
        let wait_ms = ms(waiting);
        let device = self.networks.device().clone();
        let output = tokio::task::spawn_blocking(move || {
            let end = end.unwrap_or(network.stage_count());
            let output = network.run_wire(start, end, &input, &device);
            drop(permit);
            output
        })
        .await
        .map_err(|e| ExecError::Backend(e.to_string()))??;
        Ok((output, wait_ms))
    }

    #[allow(clippy::too_many_arguments)]
    async fn remote(&self, worker: usize, workload: Workload, variant: &str, start: usize, input: &WireTensor, int8: bool) -> Result<RemoteReply, ExecError> {
        let client = self.worker(worker)?;
        let reply = match int8 {
            true => {
                let (quantized, range) = quantize::quantize(input)?;
                client.infer(workload.name(), variant, start, &quantized, Some(range)).await?
            }
            false => client.infer(workload.name(), variant, start, input, None).await?,
        };
        let now = self.now_s();
        let mut links = self.links.lock().expect("link lock");
        let link = &mut links[worker];
        // the client's upload time runs until the reply's headers arrive: one full round trip
        let wire_ms = link.wire_ms(reply.upload_ms, 1.0).unwrap_or(f64::NAN);
        link.record_transfer(now, reply.bytes_up, wire_ms);
        Ok(reply)
    }

    /// The active probe, as the simulator's: uploads about `bytes` to `worker` and records the
    /// transfer as a goodput sample. The payload is a batch of digits-cnn images, which any
    /// rlsched worker serves and computes in a moment.
    pub async fn probe_upload(&self, worker: usize, bytes: usize) -> Result<(), ExecError> {
        let images = (bytes / 256).max(1);
        let input = WireTensor::new(vec![images, 1, 8, 8], crate::model::activation::WireData::F32(vec![0.0; images * 64]))?;
        self.remote(worker, Workload::DigitsCnn, "fp32", 0, &input, false).await.map(|_| ())
    }

    /// Executes `plan` on `input`. Input errors (wrong shape, unknown variant) are returned;
    /// remote failures are not errors but fallbacks. `deadline`: how long the remote path may
    /// take from when its input is ready (the head computed, for a split); past it the request
    /// is abandoned on the worker and finished here (the caller derives it from the SLO and
    /// the plan's prediction: rlsched-env's `DeadlineConfig`).
    pub async fn execute(&self, workload: Workload, plan: &Plan, input: WireTensor, deadline: Option<std::time::Duration>) -> Result<Execution, ExecError> {
        let started = Instant::now();
        // building can take seconds (VGG-16); a cached network is returned at once
        let network = self.network(workload, plan.variant())?;
        network.check_input(0, &input.shape, input.datatype())?;
        let mut breakdown = Breakdown::default();
        let (start_remote, worker, remote_input, int8) = match plan {
            Plan::Local { .. } => {
                let (output, wait_ms) = self.run_stages(network, 0, None, input).await?;
                breakdown.device_wait_ms = wait_ms;
                breakdown.local_ms = ms(started);
                breakdown.total_ms = breakdown.local_ms;
                return Ok(Execution { output, breakdown });
            }
            Plan::Split { cut, worker, int8, .. } => {
                if *cut == 0 || *cut >= network.stage_count() {
                    return Err(ExecError::BadStageRange { start: *cut, end: network.stage_count(), stages: network.stage_count() });
                }
                let head_start = Instant::now();
                let (head, wait_ms) = self.run_stages(network.clone(), 0, Some(*cut), input).await?;
                breakdown.device_wait_ms = wait_ms;
                breakdown.local_ms = ms(head_start);
                (*cut, *worker, head, *int8)
            }
            Plan::Offload { worker, .. } => (0, *worker, input, false),
        };
        let remote = self.remote(worker, workload, plan.variant(), start_remote, &remote_input, int8);
        let result = match deadline {
            // dropping the request's future closes its connection: the worker is abandoned
            Some(deadline) => tokio::time::timeout(deadline, remote).await.unwrap_or_else(|_| {
                // an int8 intermediate crosses as one byte per element
                let bytes = if int8 { remote_input.byte_len() / 4 } else { remote_input.byte_len() };
                let deadline_ms = deadline.as_secs_f64() * 1e3;
                breakdown.bytes_up = bytes;
                // A censored sample: the input did not get through in the deadline, so the link
                // carries at most its bytes in that time (less the round trip). An estimate
                // that kept its last good samples would send the next request into the same
                // stalled link; the simulator records the same.
                let now = self.now_s();
                let mut links = self.links.lock().expect("link lock");
                if let Some(link) = links.get_mut(worker) {
                    let wire_ms = link.wire_ms(deadline_ms, 1.0).unwrap_or(f64::NAN);
                    link.record_censored(now, bytes, wire_ms);
                }
                Err(ExecError::Remote(format!("the remote path passed its deadline of {deadline_ms:.0} ms")))
            }),
            None => remote.await,
        };
        match result.and_then(|reply| checked_reply(&network, remote_input.shape[0], reply)) {
            Ok(reply) => {
                breakdown.upload_ms = reply.upload_ms;
                breakdown.remote_queue_ms = reply.queue_ms;
                breakdown.remote_compute_ms = reply.compute_ms;
                breakdown.download_ms = reply.download_ms;
                breakdown.bytes_up = reply.bytes_up;
                breakdown.bytes_down = reply.bytes_down;
                breakdown.worker_queue_length = Some(reply.queue_length);
                breakdown.total_ms = ms(started);
                Ok(Execution { output: reply.output, breakdown })
            }
            Err(error) => {
                let fallback_start = Instant::now();
                let (output, _) = self.run_stages(network, start_remote, None, remote_input).await?;
                breakdown.local_ms += ms(fallback_start);
                breakdown.fallback = Some(error.to_string());
                breakdown.total_ms = ms(started);
                Ok(Execution { output, breakdown })
            }
        }
    }
}

/// A worker's reply is input like any other: an output of the wrong shape or datatype is a
/// failed remote call (and the plan falls back), never an answer passed on to the client.
fn checked_reply(network: &Network, batch: usize, reply: RemoteReply) -> Result<RemoteReply, ExecError> {
    let expected = network.output_shape(batch);
    let datatype = reply.output.datatype();
    if reply.output.shape != expected || datatype != crate::DataType::Fp32 {
        return Err(ExecError::Remote(format!(
            "worker replied with a {} tensor of shape {:?}, but `{}` gives FP32 {expected:?}",
            datatype.name(),
            reply.output.shape,
            network.workload
        )));
    }
    Ok(reply)
}
