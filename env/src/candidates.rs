//! Candidate plans for a workload, derived from its profiles: every local variant, splits at
//! the cut points worth making (Pareto-optimal in device time and transfer size, and smaller
//! than the input), and offload. Each carries what a scheduler
//! may know before running it (sizes, profile means, accuracy) and what it will cost given the
//! true state of the world (`outcome`).

use rlsched_executor::plan::{Breakdown, Plan};
use rlsched_executor::profile::profiler::{Profile, VariantProfile};
use rlsched_executor::net::trace::Trace;

use crate::config::{Contention, DEFAULT_PER_TASK};
use crate::queues::Queues;
use crate::request::{LoadPath, RequestWorld};

/// Bytes of a response that carries a final output (JSON header and logits).
const RESPONSE_OVERHEAD_BYTES: f64 = 512.0;
/// Bytes of a request's header on the wire.
const REQUEST_OVERHEAD_BYTES: f64 = 512.0;

#[derive(Clone, Debug)]
pub struct Candidate {
    pub plan: Plan,
    /// Stages run on the device: `0` is offload, all stages is local.
    pub cut: usize,
    pub stages: usize,
    pub accuracy: f64,
    pub compressed: bool,
    pub bytes_up: f64,
    pub bytes_down: f64,
    /// Device memory the plan needs: the weights of the stages it runs locally and its largest
    /// activation.
    pub memory_bytes: f64,
    /// Per-stage (mean, std) latency on the device and on the worker, ms.
    pub device_stages: Vec<(f64, f64)>,
    pub worker_stages: Vec<(f64, f64)>,
    /// Profile-mean milliseconds of the local part and of the remote part (cached: the
    /// observation predicts every plan at every step).
    local_mean: f64,
    remote_mean: f64,
    /// How other processes slow its local stages (`[env.contention]`): carried by the plan so
    /// that every prediction of its local time, in the simulator and in serving, uses the
    /// scenario's one contention model.
    pub(crate) contention: Contention,
    /// The observation's features that never change for this plan: kind one-hot (local,
    /// split, offload), compressed, log-scaled bytes up and down. Cached, because the
    /// observation shows every plan at every step.
    pub(crate) static_features: [f32; 6],
}

impl Candidate {
    pub fn kind(&self) -> &'static str {
        self.plan.kind()
    }

    pub fn uses_worker(&self) -> bool {
        self.cut < self.stages
    }

    pub fn local_mean_ms(&self) -> f64 {
        self.local_mean
    }

    /// The local stages' profile-mean time on a device where `load` runnable tasks of other
    /// processes share each core (processor sharing, `[env.contention]`).
    pub fn expected_local_ms(&self, load: f64) -> f64 {
        self.local_mean * self.slowdown(load)
    }

    /// How much longer local compute takes at `load` runnable other tasks per core.
    pub fn slowdown(&self, load: f64) -> f64 {
        self.contention.slowdown(load)
    }

    /// This plan under another contention model (the scenario's `[env.contention]`).
    pub fn with_contention(mut self, contention: Contention) -> Candidate {
        self.contention = contention;
        self
    }

    pub fn remote_mean_ms(&self) -> f64 {
        self.remote_mean
    }

    /// This plan as the device now believes it performs: its predicted local and remote times
    /// and its transfer's bytes multiplied by the factors (measured over predicted, from
    /// serving). The observation's static features keep the profile's sizes.
    pub fn corrected(&self, local: f64, remote: f64, transfer: f64) -> Candidate {
        let mut c = self.clone();
        c.local_mean *= local;
        c.remote_mean *= remote;
        c.bytes_up *= transfer;
        c.bytes_down *= transfer;
        c
    }
}

fn stage_stats(v: &VariantProfile) -> Vec<(f64, f64)> {
    v.stages.iter().map(|s| (s.latency_ms.mean, s.latency_ms.std)).collect()
}

/// Cuts worth splitting at, earliest first: a cut is kept when no other cut both runs less on
/// the device and sends fewer bytes (Neurosurgeon's search, pruned to its Pareto front), and
/// when it sends less than the input (otherwise offload beats it on both counts). The first
/// `split_points` of those move the most compute off the device.
fn split_cuts(stage_bytes: &[f64], stage_ms: &[f64], input_bytes: f64, split_points: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut prefix_ms = 0.0;
    let points: Vec<(usize, f64, f64)> = (1..stage_bytes.len())
        .map(|cut| {
            prefix_ms += stage_ms[cut - 1];
            (cut, prefix_ms, stage_bytes[cut - 1])
        })
        .collect();
    for &(cut, ms, bytes) in &points {
        let dominated = points.iter().any(|&(c, m, b)| c != cut && m <= ms && b <= bytes && (m < ms || b < bytes));
        if !dominated && bytes < input_bytes {
            cuts.push(cut);
        }
    }
    cuts.truncate(split_points);
    cuts
}

/// Enumerates the candidates; a variant the worker profile lacks gets no remote plans.
/// `int8`: split intermediates travel as int8 rather than f32.
pub fn candidates(device: &Profile, worker: &Profile, split_points: usize, int8: bool) -> Vec<Candidate> {
    let mut out = Vec::new();
    let input_bytes = if device.input_bytes > 0 {
        device.input_bytes as f64
    } else {
        device.input_shape.iter().product::<usize>() as f64
    };
    for variant in &device.variants {
        let stages = variant.stages.len();
        let device_stages = stage_stats(variant);
        let worker_variant = worker.variant(&variant.name).filter(|w| w.stages.len() == stages);
        let worker_stages = worker_variant.map(stage_stats).unwrap_or_else(|| device_stages.clone());
        let final_bytes = variant.stages.last().map_or(0, |s| s.output_bytes) as f64 + RESPONSE_OVERHEAD_BYTES;
        let max_activation = |cut: usize| {
            variant.stages[..cut].iter().map(|s| s.output_bytes).max().unwrap_or(0) as f64
        };
        // Profiles from before per-stage weights were recorded: count the whole model.
        let has_stage_weights = variant.stages.iter().any(|s| s.param_bytes > 0);
        let weights = |cut: usize| match has_stage_weights {
            true => variant.stages[..cut].iter().map(|s| s.param_bytes).sum::<u64>() as f64,
            false => variant.param_bytes as f64,
        };
        // f32 intermediates, or one byte per element plus the range in the request header
        let wire_bytes = |s: &rlsched_executor::profile::profiler::StageProfile| match int8 {
            true => (s.output_bytes / 4) as f64,
            false => s.output_bytes as f64,
        };
        let compressed = variant.name != "fp32";
        let base = |plan: Plan, cut: usize, bytes_up: f64, bytes_down: f64| Candidate {
            // first: it reads `plan` before the field below moves it
            static_features: [
                matches!(plan, Plan::Local { .. }) as u8 as f32,
                matches!(plan, Plan::Split { .. }) as u8 as f32,
                matches!(plan, Plan::Offload { .. }) as u8 as f32,
                compressed as u8 as f32,
                ((bytes_up / 1e3).ln_1p() / 10.0) as f32,
                ((bytes_down / 1e3).ln_1p() / 10.0) as f32,
            ],
            plan,
            cut,
            stages,
            accuracy: variant.accuracy,
            compressed,
            bytes_up,
            bytes_down,
            memory_bytes: if cut == 0 { 0.0 } else { weights(cut) + max_activation(cut) },
            device_stages: device_stages.clone(),
            worker_stages: worker_stages.clone(),
            local_mean: device_stages[..cut].iter().map(|s| s.0).sum(),
            remote_mean: worker_stages[cut..].iter().map(|s| s.0).sum(),
            contention: Contention::linear(DEFAULT_PER_TASK),
        };
        out.push(base(Plan::Local { variant: variant.name.clone() }, stages, 0.0, 0.0));
        if worker_variant.is_none() {
            continue;
        }
        let stage_bytes: Vec<f64> = variant.stages.iter().map(wire_bytes).collect();
        let stage_ms: Vec<f64> = device_stages.iter().map(|s| s.0).collect();
        for cut in split_cuts(&stage_bytes, &stage_ms, input_bytes, split_points) {
            let bytes = stage_bytes[cut - 1] + REQUEST_OVERHEAD_BYTES;
            out.push(base(
                Plan::Split { variant: variant.name.clone(), cut, worker: 0, int8 },
                cut,
                bytes,
                final_bytes,
            ));
        }
        out.push(base(
            Plan::Offload { variant: variant.name.clone(), worker: 0 },
            0,
            input_bytes + REQUEST_OVERHEAD_BYTES,
            final_bytes,
        ));
    }
    out
}

/// Drops every plan another plan beats outright whatever the state: one that uses the worker
/// if it does, fits in `memory_bytes` of device memory, and takes no more local time (the same
/// contention model scales both), no more remote time, no more bytes either way and no less
/// accuracy, and is better in one of them. No scheduler should pick the loser, but a learned
/// one can: the shipped policy ran digits-cnn's int8 variant (0.23 ms, accuracy 0.983)
/// locally for 47% of requests beside fp32 (0.195 ms, 0.986), and lost 0.005 reward per
/// request to every baseline. A plan over the memory limit is kept: it is masked anyway.
pub fn drop_dominated(candidates: Vec<Candidate>, memory_bytes: f64) -> Vec<Candidate> {
    let beats = |a: &Candidate, b: &Candidate| {
        let costs = [(a.local_mean, b.local_mean), (a.remote_mean, b.remote_mean), (a.bytes_up, b.bytes_up), (a.bytes_down, b.bytes_down), (b.accuracy, a.accuracy)];
        a.uses_worker() == b.uses_worker()
            && a.memory_bytes <= memory_bytes
            && b.memory_bytes <= memory_bytes
            && costs.iter().all(|(x, y)| x <= y)
            && costs.iter().any(|(x, y)| x < y)
    };
    let keep: Vec<bool> = candidates.iter().map(|b| !candidates.iter().any(|a| beats(a, b))).collect();
    candidates.into_iter().zip(keep).filter_map(|(c, keep)| keep.then_some(c)).collect()
}

fn sampled(stats: &(f64, f64), z: f64) -> f64 {
    (stats.0 + stats.1 * z).max(0.25 * stats.0)
}

/// When a plan keeps each of the device's queues busy, to update them once it is chosen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// The device's span for the local stages (none for offload).
    pub local_s: Option<(f64, f64)>,
    /// When the local stages finish (the arrival time for offload): the remote path starts.
    pub local_done_s: f64,
    /// The spans of the uplink the upload would hold (`Queues::reserve_upload` cuts them at
    /// `abandoned_s`).
    pub upload_spans: Vec<(f64, f64)>,
    /// The upload's first and last moment on the link, for plans that completed it.
    pub upload_s: Option<(f64, f64)>,
    /// When the worker finishes this request, if the request reached it.
    pub worker_done_s: Option<f64>,
    /// When the input reached the worker (the upload's end and half a round trip).
    pub at_worker_s: f64,
    /// The device's span for the remaining stages, when the deadline passed and the request
    /// was finished locally.
    pub fallback_s: Option<(f64, f64)>,
    /// When the remote path was abandoned (its deadline), if it was.
    pub abandoned_s: Option<f64>,
    /// When the answer is ready: the reply is back (the device then has the transfer's sample
    /// and the worker's report), or the fallback finished.
    pub reply_s: f64,
}

/// The true conditions an episode runs in: its trace, the device's load over time, the RTT and
/// the worker's time per queued request of others.
#[derive(Clone, Copy)]
pub struct Conditions<'a> {
    pub trace: &'a Trace,
    pub load: &'a LoadPath,
    pub rtt_ms: f64,
    pub service_ms: f64,
}

impl Conditions<'_> {
    /// Seconds that stages `range` take when they start at `start`: the profile draws slowed by
    /// the load at that moment (a queue wait moves compute into another load).
    fn compute_s(&self, candidate: &Candidate, world: &RequestWorld, range: std::ops::Range<usize>, start: f64) -> f64 {
        let slowdown = candidate.slowdown(self.load.at(start, world.device_load));
        // a stage without a draw (a staged request with fewer) takes its mean
        range.map(|i| sampled(&candidate.device_stages[i], world.device_noise.get(i).copied().unwrap_or(0.0)) * slowdown).sum::<f64>() / 1e3
    }
}

/// The plan's latency under the true trace, load, queue and compute draws, behind the device's
/// own queues (`queues`): the same record the executor measures for a real run, and when each
/// queue is busy. `deadline_ms`: how long the remote path may take from when its input is
/// ready (`[env.deadline]`); past it the request is finished on the device, as
/// `PlanExecutor::execute` does.
pub fn outcome(
    candidate: &Candidate,
    world: &RequestWorld,
    conditions: &Conditions,
    queues: &Queues,
    deadline_ms: Option<f64>,
) -> (Breakdown, Timeline) {
    let arrival = world.time_s;
    let (local_s, local_done) = if candidate.cut > 0 {
        let span = queues.device_slot(arrival, |start| conditions.compute_s(candidate, world, 0..candidate.cut, start));
        (Some(span), span.1)
    } else {
        (None, arrival)
    };
    let device_wait_ms = local_s.map_or(0.0, |s| (s.0 - arrival) * 1e3);
    let local_ms = (local_done - arrival) * 1e3;
    if !candidate.uses_worker() {
        let breakdown = Breakdown { local_ms, device_wait_ms, total_ms: local_ms, ..Default::default() };
        return (breakdown, Timeline { local_s, local_done_s: local_done, reply_s: local_done, ..Default::default() });
    }
    let trace = conditions.trace;
    let half_rtt_s = conditions.rtt_ms / 2e3;
    let spans = queues.uplink_spans(trace, local_done, candidate.bytes_up);
    let (upload_start, upload_end) = (spans.first().map_or(local_done, |s| s.0), spans.last().map_or(local_done, |s| s.1));
    let at_worker = upload_end + half_rtt_s;
    let remote_start = (at_worker + world.worker_queue * conditions.service_ms / 1e3).max(queues.worker_free_for(at_worker));
    let remote_compute_ms: f64 = candidate.worker_stages[candidate.cut..]
        .iter()
        .zip(&world.worker_noise[candidate.cut..])
        .map(|(s, &z)| sampled(s, z))
        .sum();
    let worker_done = remote_start + remote_compute_ms / 1e3;
    let reply = worker_done + half_rtt_s + trace.transfer_time(worker_done + half_rtt_s, candidate.bytes_down);
    let deadline = deadline_ms.map(|ms| local_done + ms / 1e3).filter(|&d| d < reply);
    if let Some(deadline) = deadline {
        // Abandoned: the link is given back at the deadline; a worker that has the input
        // computes it anyway; the remaining stages run here, after the head already computed.
        let fallback = queues.device_slot(deadline, |start| conditions.compute_s(candidate, world, candidate.cut..candidate.stages, start));
        let breakdown = Breakdown {
            local_ms: local_ms + (fallback.1 - deadline) * 1e3,
            device_wait_ms,
            total_ms: (fallback.1 - arrival) * 1e3,
            bytes_up: candidate.bytes_up as usize,
            fallback: Some(format!("the remote path passed its deadline of {:.0} ms", deadline_ms.unwrap_or(0.0))),
            ..Default::default()
        };
        let timeline = Timeline {
            local_s,
            local_done_s: local_done,
            upload_spans: spans,
            upload_s: None,
            worker_done_s: (at_worker <= deadline).then_some(worker_done),
            at_worker_s: at_worker,
            fallback_s: Some(fallback),
            abandoned_s: Some(deadline),
            reply_s: fallback.1,
        };
        return (breakdown, timeline);
    }
    let breakdown = Breakdown {
        local_ms,
        device_wait_ms,
        upload_ms: (at_worker - local_done) * 1e3,
        remote_queue_ms: (remote_start - at_worker) * 1e3,
        remote_compute_ms,
        download_ms: (reply - worker_done) * 1e3,
        total_ms: (reply - arrival) * 1e3,
        bytes_up: candidate.bytes_up as usize,
        bytes_down: candidate.bytes_down as usize,
        worker_queue_length: Some(world.worker_queue as usize),
        fallback: None,
        hops: Vec::new(),
    };
    let timeline = Timeline {
        local_s,
        local_done_s: local_done,
        upload_spans: spans,
        upload_s: Some((upload_start, upload_end)),
        worker_done_s: Some(worker_done),
        at_worker_s: at_worker,
        fallback_s: None,
        abandoned_s: None,
        reply_s: reply,
    };
    (breakdown, timeline)
}
