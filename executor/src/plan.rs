//! Plan execution: run a request locally, split at a cut with a worker, or offload it whole,
//! and report what each part cost. A worker that is unreachable, times out or fails in the
//! middle of a request does not lose the request: execution falls back to local (reusing the
//! stages already computed) and the breakdown says so. Nor does one that is only slow: a remote
//! path that outlives its deadline is abandoned and finished locally the same way, which
//! bounds the tail when a link stalls (an outage would otherwise hold the request until the
//! link returns).
//!
//! A chain (device → edge → cloud) goes to the device's worker with a route of named peers
//! (`kserve::chain`): each worker runs its segment and forwards the rest, a worker whose next
//! hop fails finishes the stages itself, and the reply lists every hop's cost.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::kserve::chain::{self, Hop, HopReport};
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
    /// Stages `0..device_end` here (none when it is 0), then `device_end..` on `worker`, which
    /// runs up to the first hop's start and forwards the rest along `hops` (each a peer name
    /// the hop before it was given with `--next`); the last hop runs to the model's end and
    /// the result comes back along the chain. `int8`: the device's intermediate crosses
    /// quantized (the workers forward FP32).
    Chain {
        variant: String,
        device_end: usize,
        worker: usize,
        hops: Vec<Hop>,
        #[serde(default)]
        int8: bool,
    },
}

impl Plan {
    pub fn variant(&self) -> &str {
        match self {
            Plan::Local { variant } | Plan::Split { variant, .. } | Plan::Offload { variant, .. } | Plan::Chain { variant, .. } => variant,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Plan::Local { .. } => "local",
            Plan::Split { .. } => "split",
            Plan::Offload { .. } => "offload",
            Plan::Chain { .. } => "chain",
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
    /// A chain's hops in route order, the device's worker first (its upload and download as
    /// the device measured them, each later hop's as the hop before it did); empty for the
    /// other plans. A chain's `remote_compute_ms` is its first worker's compute and everything
    /// that worker waited for downstream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<HopReport>,
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
    /// Each worker's probe model, once found.
    probe_models: Mutex<Vec<Option<Workload>>>,
}

/// Below this a padded and an unpadded request cannot be told apart by their times (the
/// server's own variation is larger): a pad that crossed faster is taken to have taken this long.
pub const PROBE_RESOLUTION_MS: f64 = 1.0;

/// A tensor of `like`'s shape and datatype, all zeros: the probe's input, valid for its model
/// and as short as JSON can write it.
fn zeros_like(like: &WireTensor) -> Result<WireTensor, ExecError> {
    use crate::model::activation::WireData;
    let n: usize = like.shape.iter().product();
    let data = match &like.data {
        WireData::F32(_) => WireData::F32(vec![0.0; n]),
        WireData::I64(_) => WireData::I64(vec![0; n]),
        WireData::U8(_) => WireData::U8(vec![0; n]),
    };
    WireTensor::new(like.shape.clone(), data)
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
            probe_models: Mutex::new(vec![None; workers.len()]),
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
    async fn remote(&self, worker: usize, workload: Workload, variant: &str, start: usize, input: &WireTensor, int8: bool, route: &[Hop]) -> Result<RemoteReply, ExecError> {
        let client = self.worker(worker)?;
        let reply = match int8 {
            true => {
                let (quantized, range) = quantize::quantize(input)?;
                client.infer_route(workload.name(), variant, start, &quantized, Some(range), route).await?
            }
            false => client.infer_route(workload.name(), variant, start, input, None, route).await?,
        };
        Ok(self.record_reply(worker, reply))
    }

    /// Folds a reply's upload into the worker's link estimate. A worker that reports its own
    /// time gives the upload as the time to the reply less that, and so a goodput sample. One
    /// that does not (any server but rlsched's) leaves the upload and its compute in one span:
    /// the link's share is then what the estimate says (the round trip and the bytes at the
    /// estimated rate, or the round trip alone before there is one), the rest is the server's
    /// queue and compute, and the transfer makes no sample; the active probe measures such a
    /// link instead ([`probe_upload`](Self::probe_upload)).
    fn record_reply(&self, worker: usize, mut reply: RemoteReply) -> RemoteReply {
        let now = self.now_s();
        let mut links = self.links.lock().expect("link lock");
        let Some(link) = links.get_mut(worker) else { return reply };
        if reply.server_timed {
            // the client's upload time runs until the reply's headers arrive: one full round trip
            let wire_ms = link.wire_ms(reply.upload_ms, 1.0).unwrap_or(f64::NAN);
            link.record_transfer(now, reply.bytes_up, wire_ms);
        } else {
            let rtt = link.rtt_ms().unwrap_or(0.0);
            let wire = link.harmonic_mbps().map_or(0.0, |mbps| reply.bytes_up as f64 * 8.0 / (mbps.max(1e-9) * 1e3));
            let upload_ms = (rtt + wire).min(reply.upload_ms);
            reply.compute_ms = reply.upload_ms - upload_ms;
            reply.upload_ms = upload_ms;
            link.record_transfer(now, reply.bytes_up, f64::NAN);
        }
        reply
    }

    /// The model the active probe infers on `worker`: the one with the smallest input among
    /// rlsched's workloads that the server has ready (asked once per server, at most one
    /// readiness check per workload; a server that has none of them cannot be probed).
    async fn probe_model(&self, worker: usize) -> Result<Workload, ExecError> {
        if let Some(model) = self.probe_models.lock().expect("probe model lock").get(worker).copied().flatten() {
            return Ok(model);
        }
        let client = self.worker(worker)?;
        let mut models = Workload::ALL;
        models.sort_by_key(|w| w.example_input(0).byte_len());
        for model in models {
            if client.model_ready(model.name()).await? {
                if let Some(slot) = self.probe_models.lock().expect("probe model lock").get_mut(worker) {
                    *slot = Some(model);
                }
                return Ok(model);
            }
        }
        let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        Err(ExecError::Remote(format!("{} has none of {} ready: no model to probe the link with", client.base_url(), names.join(", "))))
    }

    /// Reads `worker`'s metadata (which encodings and extensions it takes), forgetting what was
    /// learnt of the server that was there before.
    pub async fn discover(&self, worker: usize) -> Result<crate::kserve::client::ServerInfo, ExecError> {
        let info = self.worker(worker)?.discover().await?;
        if let Some(slot) = self.probe_models.lock().expect("probe model lock").get_mut(worker) {
            *slot = None;
        }
        Ok(info)
    }

    /// The active probe, as the simulator's: about `bytes` up to `worker`, recorded as a
    /// goodput sample. It is an infer of a model the server has ready, with that model's own
    /// input (zeros, one of it) followed by `bytes` spaces of JSON whitespace, which any server
    /// parses past and none computes on. A worker that reports its time gives the sample from
    /// that one request. Any other server's time is not known, so the unpadded request is sent
    /// between two padded ones, and the pad's wire time is the padded requests' mean time less
    /// the unpadded one's: the server's compute cancels, and the mean of the two cancels a
    /// drift. A difference below [`PROBE_RESOLUTION_MS`] is taken as that: the sample then
    /// bounds the rate from below, which is all a link that fast needs to say.
    ///
    /// A padded request not answered within `timeout` is abandoned, and recorded as a censored
    /// sample (the link carried fewer than `bytes` in `timeout` less a round trip), as the
    /// simulator's probe is (`[env.probe] timeout_s`): a probe into an outage says so, rather
    /// than nothing after the client's request timeout.
    pub async fn probe_upload(&self, worker: usize, bytes: usize, timeout: std::time::Duration) -> Result<(), ExecError> {
        let client = self.worker(worker)?;
        let model = self.probe_model(worker).await?;
        let input = zeros_like(&model.example_input(0))?;
        // What a padded request sends, at most: the input in the longer of its two encodings,
        // and the pad (the request's few parameters aside). A censored sample must not claim
        // fewer bytes than were on the way, or it would bound the link below what it showed.
        let body_bytes = |pad: usize| {
            let encoded = |binary: bool| crate::kserve::protocol::encode_request(Default::default(), "input", &input, Default::default(), binary, pad).map_or(0, |(body, _)| body.len());
            encoded(false).max(encoded(true)).max(pad)
        };
        // The timeout covers the whole request, the server's own time included, as a remote
        // path's deadline does; the probe's model is the smallest the server has ready.
        let send = async |pad: usize| match tokio::time::timeout(timeout, client.infer_padded(model.name(), "fp32", 0, &input, None, pad)).await {
            Ok(reply) => reply,
            Err(_) => {
                let now = self.now_s();
                let timeout_ms = timeout.as_secs_f64() * 1e3;
                let recorded = pad > 0
                    && self.links.lock().expect("link lock").get_mut(worker).is_some_and(|link| {
                        // no RTT yet, or one past the timeout: nothing can be said
                        let wire_ms = link.wire_ms(timeout_ms, 1.0).unwrap_or(f64::NAN);
                        link.record_censored(now, body_bytes(pad), wire_ms)
                    });
                let what = if recorded { "recorded as a censored sample" } else { "no sample recorded" };
                Err(ExecError::Remote(format!("{}: the probe's request ({pad} bytes of pad) was not answered within {} ms: {what}", client.base_url(), timeout.as_millis())))
            }
        };
        let first = send(bytes).await?;
        if first.server_timed {
            self.record_reply(worker, first);
            return Ok(());
        }
        let total = |r: &RemoteReply| r.upload_ms + r.download_ms;
        let plain = send(0).await?;
        let second = send(bytes).await?;
        let wire_ms = ((total(&first) + total(&second)) / 2.0 - total(&plain)).max(PROBE_RESOLUTION_MS);
        let now = self.now_s();
        if let Some(link) = self.links.lock().expect("link lock").get_mut(worker) {
            link.record_transfer(now, bytes, wire_ms);
        }
        Ok(())
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
        let stages = network.stage_count();
        let (start_remote, worker, remote_input, int8, route) = match plan {
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
                (*cut, *worker, head, *int8, None)
            }
            Plan::Offload { worker, .. } => (0, *worker, input, false, None),
            Plan::Chain { device_end, worker, hops, int8, .. } => {
                chain::check_route(hops, *device_end, stages).map_err(|message| ExecError::Invalid { name: "chain plan".into(), message })?;
                if *device_end >= stages {
                    return Err(ExecError::BadStageRange { start: *device_end, end: stages, stages });
                }
                let head = match *device_end {
                    0 => input,
                    end => {
                        let head_start = Instant::now();
                        let (head, wait_ms) = self.run_stages(network.clone(), 0, Some(end), input).await?;
                        breakdown.device_wait_ms = wait_ms;
                        breakdown.local_ms = ms(head_start);
                        head
                    }
                };
                (*device_end, *worker, head, *int8 && *device_end > 0, Some(hops.as_slice()))
            }
        };
        let remote = self.remote(worker, workload, plan.variant(), start_remote, &remote_input, int8, route.unwrap_or(&[]));
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
                if route.is_some() {
                    breakdown.hops.push(reply.hop_report(format!("worker {worker}"), start_remote, reply.end_stage.unwrap_or(stages)));
                    breakdown.hops.extend(reply.hops);
                }
                breakdown.upload_ms = reply.upload_ms;
                breakdown.remote_queue_ms = reply.queue_ms;
                breakdown.remote_compute_ms = reply.compute_ms + reply.forward_ms;
                breakdown.download_ms = reply.download_ms;
                breakdown.bytes_up = reply.bytes_up;
                breakdown.bytes_down = reply.bytes_down;
                breakdown.worker_queue_length = reply.queue_length;
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
