//! The environment's configuration: the `[env]` section of `train.toml`. Every field has a
//! default and a doc comment; unknown fields are errors so that a typo never passes silently.

use std::path::PathBuf;

use rlsched_executor::error::Num;
use rlsched_executor::kserve::chain::{check_peer_name, MAX_HOPS};
use serde::{Deserialize, Serialize};

/// `[env.reward]`: r = w_acc·accuracy − w_lat·latency/slo − w_miss·[latency > slo]
/// − w_bytes·MB sent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RewardConfig {
    /// Weight of the variant's accuracy (fraction 0..1).
    pub w_acc: f64,
    /// Weight of latency, measured in SLOs.
    pub w_lat: f64,
    /// Penalty for missing the SLO.
    pub w_miss: f64,
    /// Cost of each megabyte a request sends (for metered links; 0 by default).
    pub w_bytes: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self { w_acc: 4.0, w_lat: 0.5, w_miss: 1.0, w_bytes: 0.0 }
    }
}

impl RewardConfig {
    pub fn reward(&self, accuracy: f64, latency_ms: f64, slo_ms: f64, bytes_up: f64) -> f64 {
        let miss = if latency_ms > slo_ms { 1.0 } else { 0.0 };
        self.w_acc * accuracy - self.w_lat * latency_ms / slo_ms - self.w_miss * miss - self.w_bytes * bytes_up / 1e6
    }
}

/// One workload in the request mix.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadMix {
    /// Workload name (`mobilenetv2`, `resnet18`, `vgg16`, `bert-mini`, `digits-cnn`).
    pub name: String,
    /// Relative share of requests.
    pub weight: f64,
    /// Latency objective, milliseconds.
    pub slo_ms: f64,
    /// Lowest acceptable accuracy (fraction); plans below it are masked.
    pub min_accuracy: f64,
    /// An ONNX file this workload is imported from (relative paths from the config's folder);
    /// `name` then names it everywhere, as `--model NAME=PATH` would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<std::path::PathBuf>,
}

/// A two-state (idle/busy) load process with exponential dwell times.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    /// Load level while idle (device: runnable tasks of other processes per core; worker:
    /// queue length).
    pub idle: f64,
    /// Load level while busy.
    pub busy: f64,
    /// Mean seconds spent idle before turning busy.
    pub mean_idle_s: f64,
    /// Mean seconds spent busy before turning idle.
    pub mean_busy_s: f64,
    /// Relative noise on the level, per request.
    pub jitter: f64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self { idle: 0.1, busy: 1.5, mean_idle_s: 20.0, mean_busy_s: 10.0, jitter: 0.1 }
    }
}

/// `[env.contention]`: how other work slows the device's local stages, as a function of `r`,
/// the runnable tasks of other processes per core (`ResourceMonitor`'s `runnable_per_core`).
/// CPU utilisation cannot serve here: it saturates at 100%, so two co-runners and four read
/// alike. Either measured points (`curve`) or, without them, processor sharing linearised:
/// a stage that takes `t` alone takes `t · (1 + per_task · r)`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ContentionConfig {
    /// Slowdown added per runnable other task per core, where no `curve` is given. Pure
    /// processor sharing with as many inference threads as cores would give 1 (1, 2 and 4
    /// co-runners on 2 cores: 1.5×, 2×, 3×).
    pub per_task: f64,
    /// Measured `[r, slowdown]` points (`rlsched profile --co-runners 0,1,2,4` prints them),
    /// r increasing from 0 where the slowdown is 1; between points the slowdown is linear, past
    /// the last it keeps the last segment's slope. At most `MAX_CURVE_POINTS`. Empty: `per_task`.
    pub curve: Vec<[f64; 2]>,
    /// Standard deviation of the simulated monitor's reading of the runnable tasks per core
    /// (the live reading is an instantaneous count, so it jitters).
    pub reading_noise: f64,
}

impl Default for ContentionConfig {
    fn default() -> Self {
        Self { per_task: DEFAULT_PER_TASK, curve: Vec::new(), reading_noise: 0.05 }
    }
}

/// The fitted slowdown per runnable other task per core (train.toml documents the fit).
pub const DEFAULT_PER_TASK: f64 = 1.25;
pub use rlsched_executor::profile::profiler::{MAX_CURVE_POINTS, MAX_RUNNABLE_PER_CORE};

impl ContentionConfig {
    /// How much longer local compute takes with `runnable_per_core` other tasks on each core.
    pub fn slowdown(&self, runnable_per_core: f64) -> f64 {
        self.model().slowdown(runnable_per_core)
    }

    /// The model as a plan carries it (`Copy`: every candidate holds one).
    pub fn model(&self) -> Contention {
        Contention::from_points(self.per_task, &self.curve)
    }

    fn validate(&self) -> Result<(), String> {
        check_range("env.contention.per_task", self.per_task, 0.0, 100.0)?;
        rlsched_executor::profile::profiler::check_curve("env.contention.curve", &self.curve)
    }

    /// The model for a workload whose device profile is `device`: its own measured curve
    /// where it has one, else this section's.
    pub fn model_for(&self, device: &rlsched_executor::profile::profiler::Profile) -> Contention {
        match device.contention.is_empty() {
            true => self.model(),
            false => Contention::from_points(self.per_task, &device.contention),
        }
    }
}

/// The contention model a plan carries: measured points or the linear fallback.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contention {
    per_task: f64,
    points: [(f64, f64); MAX_CURVE_POINTS],
    /// Points in use; fewer than two: `1 + per_task · r`.
    len: usize,
}

impl Contention {
    pub fn linear(per_task: f64) -> Self {
        Self { per_task, points: [(0.0, 1.0); MAX_CURVE_POINTS], len: 0 }
    }

    /// Checked points (`check_curve`); fewer than two, or more than fit: the linear model.
    pub fn from_points(per_task: f64, curve: &[[f64; 2]]) -> Self {
        let mut model = Self::linear(per_task);
        if (2..=MAX_CURVE_POINTS).contains(&curve.len()) {
            model.len = curve.len();
            for (slot, [r, s]) in model.points.iter_mut().zip(curve) {
                *slot = (*r, *s);
            }
        }
        model
    }

    /// The slowdown at `runnable_per_core` (clamped to `0..=MAX_RUNNABLE_PER_CORE`; a NaN
    /// reading counts as an idle device).
    pub fn slowdown(&self, runnable_per_core: f64) -> f64 {
        if self.len < 2 {
            return contention_slowdown(self.per_task, runnable_per_core);
        }
        let r = reading(runnable_per_core);
        let points = &self.points[..self.len];
        // the segment r falls in, or the last one past the last point
        let i = points.windows(2).position(|w| r <= w[1].0).unwrap_or(self.len - 2);
        let ((r0, s0), (r1, s1)) = (points[i], points[i + 1]);
        (s0 + (s1 - s0) * (r - r0) / (r1 - r0)).max(1.0)
    }
}

/// `1 + per_task · r`, with `r` clamped to `0..=MAX_RUNNABLE_PER_CORE` (a NaN reading counts as
/// an idle device).
pub fn contention_slowdown(per_task: f64, runnable_per_core: f64) -> f64 {
    1.0 + per_task.max(0.0) * reading(runnable_per_core)
}

/// A reading of runnable others per core as the models take it: clamped to
/// `0..=MAX_RUNNABLE_PER_CORE`, a NaN counting as an idle device.
fn reading(runnable_per_core: f64) -> f64 {
    if runnable_per_core.is_nan() { 0.0 } else { runnable_per_core.clamp(0.0, MAX_RUNNABLE_PER_CORE) }
}

/// `[env.deadline]`: every remote path has a deadline; past it the request is abandoned on the
/// worker and finished on the device (the remaining stages, after any head already computed).
/// The remote path starts when its input is ready to send and may last
/// `max(slo_factor · slo, prediction_factor · predicted remote ms)`, where the prediction is the
/// plan's own (upload and download at the harmonic-mean estimate, RTT, the worker's reported
/// queue, its profile): a request that was expected to be slow is not abandoned for it, one
/// stuck in an outage is. `slo_factor = 0` turns deadlines off.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlineConfig {
    pub slo_factor: f64,
    pub prediction_factor: f64,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        Self { slo_factor: 1.0, prediction_factor: 2.0 }
    }
}

impl DeadlineConfig {
    /// The remote path's deadline, ms from when its input is ready; `None` when off.
    pub fn remote_ms(&self, slo_ms: f64, predicted_remote_ms: f64) -> Option<f64> {
        if self.slo_factor <= 0.0 {
            return None;
        }
        let predicted = if predicted_remote_ms.is_finite() { predicted_remote_ms.max(0.0) } else { 0.0 };
        Some((self.slo_factor * slo_ms).max(self.prediction_factor * predicted).min(MAX_MS))
    }

    /// `remote_ms` as a duration (what `PlanExecutor::execute` takes).
    pub fn remote(&self, slo_ms: f64, predicted_remote_ms: f64) -> Option<std::time::Duration> {
        std::time::Duration::try_from_secs_f64(self.remote_ms(slo_ms, predicted_remote_ms)? / 1e3).ok()
    }
}

/// `[env.consensus]`: the bandwidth estimates' veto over the policy. Each plan's reward is
/// predicted under three estimates (harmonic mean, last sample, RobustMPC's discounted
/// harmonic mean: plan features 14–16); a plan that some other valid plan beats by more than
/// `margin` reward units under all three is one the policy may not take, and it takes its
/// best-scored plan among the rest. Its departures from the estimators are where it wins and
/// where its tail comes from; the veto keeps the small ones. A decision-time rule of the
/// policy alone (eval, the training probe and serve apply it; training's sampled rollouts only
/// with `in_training`): a baseline that maximises one of the three estimates is never vetoed.
/// `0` turns it off.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusConfig {
    pub margin: f64,
    /// Training samples only among the plans the veto allows (vetoed plans are masked like
    /// invalid ones), so the scorer learns to rank what it will be allowed to choose, instead
    /// of spending its capacity on departures the veto then takes away.
    pub in_training: bool,
    /// Where the estimates agree about the plan that beats the policy's (a local plan, a fast
    /// link), the margin it must clear shrinks towards this: the threshold for the policy's
    /// plan p against a better plan q is min(margin, certain_margin + spread(q)), spread being
    /// how far a plan's three predicted rewards lie apart. A gap every estimate agrees on, such
    /// as an accuracy point between two local variants, is then no bet on the link. p's own
    /// spread does not count: where q is certain, p's disagreement among the estimates is p's
    /// risk, not a reason to trust it (counting it, as a first form did, let the policy offload
    /// past a local plan that every estimate put ahead). 0: the margin alone.
    pub certain_margin: f64,
    /// The certain margin applies only where the plan that beats the policy's is predicted (at
    /// the harmonic estimate) to finish within this many SLOs. The policy's departures from the
    /// estimates win on what the plan they pass over would cost the requests behind it in the
    /// device's and the uplink's queues, which no estimate sees. A plan that takes a small part
    /// of its SLO costs them little, so passing over it for a worse one is no bet worth
    /// allowing. 0: no limit.
    pub certain_within_slos: f64,
    /// Each plan's predicted rewards, as the veto compares them, lose this much per unit of
    /// device burden: the device time the plan itself takes, in SLOs, times one plus the local
    /// work already queued (in SLOs). A plan that holds the device delays every request that
    /// queues behind it, which no per-request estimate charges, and the busier the device, the
    /// more requests that is. The policy's departures that win are mostly those; the charge
    /// lets the veto keep them. 0: none.
    pub queue_charge: f64,
    /// The tail's veto: a plan that uses a worker and that the harmonic estimate puts past this
    /// many SLOs is one the policy may not take while a local plan is predicted (behind the work
    /// queued on the device) within that many, scores at least as well under that estimate, and
    /// is not itself vetoed. The policy's slowest requests were offloads the harmonic estimate
    /// called hopeless, bets on a link it expected to recover: on the validation files and the
    /// Markov-outage family, VGG16 offloads at under 1 Mbit/s, 5.5× as many as the best
    /// baseline's, each worth 0.2 reward where the local int8 plan earned 1.9. Never past the
    /// 10 SLOs the observation clamps latency at. 0: off.
    pub tail_slos: f64,
}

impl ConsensusConfig {
    /// Whether `plan` is vetoed: another valid plan's three predicted rewards each exceed its
    /// own by more than the margin, or the tail's veto (`tail_slos`) applies. `estimates(i)`
    /// gives plan i's three rewards, its predicted latency in SLOs and whether it is local;
    /// `valid(i)` its mask.
    pub fn vetoes(&self, plan: usize, plans: usize, valid: impl Fn(usize) -> bool, estimates: impl Fn(usize) -> PlanEstimates) -> bool {
        self.outscored(plan, plans, &valid, &estimates) || self.past_tail(plan, plans, &valid, &estimates)
    }

    /// The tail's veto. The local plan it falls back on is not itself vetoed, and local plans
    /// are never past the tail, so the veto can never leave the policy without a plan.
    fn past_tail(&self, plan: usize, plans: usize, valid: &impl Fn(usize) -> bool, estimates: &impl Fn(usize) -> PlanEstimates) -> bool {
        if self.tail_slos <= 0.0 {
            return false;
        }
        let tail = self.tail_slos as f32;
        let own = estimates(plan);
        if own.local || own.latency_slos <= tail {
            return false;
        }
        (0..plans).filter(|&other| other != plan && valid(other)).any(|other| {
            let theirs = estimates(other);
            theirs.local && theirs.latency_slos <= tail && theirs.rewards[0] >= own.rewards[0] && !self.outscored(other, plans, valid, estimates)
        })
    }

    /// Whether another valid plan beats `plan` by more than the margin under every estimate.
    fn outscored(&self, plan: usize, plans: usize, valid: &impl Fn(usize) -> bool, estimates: &impl Fn(usize) -> PlanEstimates) -> bool {
        if self.margin <= 0.0 {
            return false;
        }
        let spread = |r: &[f32; 3]| r.iter().fold(f32::MIN, |a, b| a.max(*b)) - r.iter().fold(f32::MAX, |a, b| a.min(*b));
        let charge = self.queue_charge as f32;
        // the charge moves a plan's three rewards alike, so it leaves every spread as it is
        let estimates = |i: usize| {
            let e = estimates(i);
            PlanEstimates { rewards: e.rewards.map(|r| r - charge * e.device_burden_slos), ..e }
        };
        let own = estimates(plan);
        let margin = self.margin as f32;
        let within = |e: &PlanEstimates| self.certain_within_slos <= 0.0 || f64::from(e.latency_slos) <= self.certain_within_slos;
        let threshold = |theirs: &PlanEstimates| {
            if self.certain_margin > 0.0 && within(theirs) {
                margin.min(self.certain_margin as f32 + spread(&theirs.rewards))
            } else {
                margin
            }
        };
        (0..plans).filter(|&other| other != plan && valid(other)).map(estimates).any(|theirs| {
            let threshold = threshold(&theirs);
            theirs.rewards.iter().zip(&own.rewards).all(|(r, o)| *r > o + threshold)
        })
    }
}

/// What the veto reads of one plan: its predicted reward under the harmonic, the last and the
/// robust bandwidth estimate, its predicted latency (harmonic estimate) in SLOs, and its device
/// burden (`queue_charge`: its own device time in SLOs, times one plus the local work queued
/// ahead in SLOs), and whether it is local (the tail's veto).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PlanEstimates {
    pub rewards: [f32; 3],
    pub latency_slos: f32,
    pub device_burden_slos: f32,
    /// Whether the plan runs whole on the device.
    pub local: bool,
}

/// `[env.shield]`: a remote plan whose upload alone, at the robust (RobustMPC) bandwidth
/// estimate and behind the uplink's backlog, would take more than `slo_factor` × the SLO is
/// masked, unless no other plan is valid: no scheduler can offload into a link it has good
/// reason to think is dead or crawling. `slo_factor = 0` turns it off.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShieldConfig {
    pub slo_factor: f64,
}

impl Default for ShieldConfig {
    fn default() -> Self {
        Self { slo_factor: 0.0 }
    }
}

impl ShieldConfig {
    /// Whether `upload_ms` (backlog and the plan's own bytes at the robust estimate) is past
    /// the shield.
    pub fn blocks(&self, upload_ms: f64, slo_ms: f64) -> bool {
        self.slo_factor > 0.0 && upload_ms > self.slo_factor * slo_ms
    }
}

/// `[env.training_tail]`: training-only reward shaping against the tail. A request that took
/// more than `beyond_slos` SLOs loses `weight` more per SLO past that, in training only (the
/// reward every table reports is `[env.reward]`'s): the linear latency term prices a 20 s
/// request only 40× a 0.5 s one, and the p99 is where a policy that wins on the mean can lose.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    pub weight: f64,
    pub beyond_slos: f64,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self { weight: 0.0, beyond_slos: 3.0 }
    }
}

impl TailConfig {
    pub fn penalty(&self, latency_ms: f64, slo_ms: f64) -> f64 {
        if self.weight <= 0.0 || slo_ms <= 0.0 {
            return 0.0;
        }
        self.weight * (latency_ms / slo_ms - self.beyond_slos).clamp(0.0, 1e3)
    }
}

/// `[env.probe]`: the link estimator's active probe.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Probe size in bytes.
    pub bytes: usize,
    /// Send a probe before a request when no transfer happened for this long.
    pub interval_s: f64,
    /// A probe not answered within this long from its start is abandoned: the uplink is free
    /// again, and the estimator records a censored sample (the link carried fewer than `bytes`
    /// in that time less a round trip), as for a remote path abandoned at its deadline. The
    /// simulator and `serve` apply the same rule; without it a probe sent into an outage held
    /// the simulated uplink for all of it, and `serve`'s waited for the client's request
    /// timeout and then recorded nothing.
    pub timeout_s: f64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self { bytes: 64 * 1024, interval_s: 5.0, timeout_s: 2.0 }
    }
}

/// `[env]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnvConfig {
    /// Training traces: directories or files, Pensieve or Mahimahi format (detected).
    pub traces: Vec<PathBuf>,
    /// Validation traces, disjoint from training.
    pub validation_traces: Vec<PathBuf>,
    /// Multiply every trace rate by this (the FCC traces are 1–3 Mbit/s).
    pub bandwidth_scale: f64,
    /// Training only: replay the training traces at each of these scales (empty: only at
    /// `bandwidth_scale`), so that the policy meets slow and fast links alike.
    pub training_bandwidth_scales: Vec<f64>,
    /// Training only: when above zero, replay each training trace at this many scales drawn
    /// log-uniformly between the smallest and the largest `training_bandwidth_scales` (seeded,
    /// so every run draws the same), instead of at exactly those scales: the policy meets a
    /// continuum of link speeds, not three.
    pub training_scale_draws: usize,
    /// Training only: synthetic Markov traces added to the training traces.
    pub synthetic: crate::synthetic::SyntheticConfig,
    /// Episodes (of `requests_per_episode`) per cell of training's validation probe.
    pub validation_episodes: usize,
    /// Validation only: Markov traces (with outages) from another seed, scored by the
    /// validation probe as a held-out link family.
    pub validation_synthetic: crate::synthetic::SyntheticConfig,
    /// Generated models added to training's request mix, and held-out ones for validation.
    pub procedural: crate::procedural::ProceduralConfig,
    /// Round-trip time to the worker, milliseconds.
    pub rtt_ms: f64,
    /// Training only: `[low, high]` ms, each episode's RTT drawn log-uniformly between them
    /// (empty: `rtt_ms` throughout), so the policy meets LAN and cellular round trips alike.
    pub training_rtt_ms: Vec<f64>,
    /// Folder of stage profiles (`<workload>-<device>.json`).
    pub profiles_dir: PathBuf,
    /// Profile suffix of the device that receives requests (e.g. `cpu2`).
    pub device_profile: String,
    /// Profile suffix of the edge worker.
    pub worker_profile: String,
    /// Memory the device can give one model (weights plus largest activation), MB.
    pub device_memory_mb: f64,
    /// The request mix.
    pub workloads: Vec<WorkloadMix>,
    /// Requests per episode.
    pub requests_per_episode: usize,
    /// Mean gap between requests, seconds (Poisson arrivals).
    pub mean_interarrival_s: f64,
    /// Split plans per variant: the earliest cut points on the latency/transfer Pareto front.
    pub split_points: usize,
    /// Send split intermediates as int8 (JALAD: one min–max range per tensor, 4× fewer bytes
    /// than f32) rather than f32.
    pub int8_intermediates: bool,
    /// Observed past throughput samples (Pensieve's k).
    pub history: usize,
    /// Transfers smaller than this, or expected (at the current estimate) to spend less than
    /// `min_sample_ms` on the wire, make no goodput sample (their wire time is lost in the
    /// RTT's jitter).
    pub min_sample_bytes: usize,
    pub min_sample_ms: f64,
    /// Device load: runnable tasks of other processes per core (the contention signal; their
    /// CPU utilisation, min(1, level), is observed beside it).
    pub device_load: LoadConfig,
    pub contention: ContentionConfig,
    pub deadline: DeadlineConfig,
    pub shield: ShieldConfig,
    pub consensus: ConsensusConfig,
    pub training_tail: TailConfig,
    pub outages: crate::synthetic::OutageConfig,
    /// Other clients' requests queued at the worker.
    pub worker_queue: LoadConfig,
    /// Worker milliseconds per queued request ahead of ours.
    pub worker_service_ms: f64,
    /// Probability that the worker is down for a request (plans using it are masked).
    pub worker_down_probability: f64,
    pub probe: ProbeConfig,
    pub reward: RewardConfig,
    /// `[[env.nodes]]`: the chain scenario's nodes, the device first (`env::chain`). Empty (the
    /// default): today's device and one worker, untouched.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeConfig>,
    /// `[[env.links]]`: the link after each node but the last, in chain order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<ChainLinkConfig>,
}

impl Default for EnvConfig {
    fn default() -> Self {
        let data = PathBuf::from("data");
        Self {
            traces: vec![data.join("traces/fcc-train")],
            validation_traces: vec![data.join("traces/fcc-val")],
            bandwidth_scale: 5.0,
            training_bandwidth_scales: Vec::new(),
            training_scale_draws: 0,
            synthetic: Default::default(),
            validation_episodes: 10,
            validation_synthetic: Default::default(),
            procedural: Default::default(),
            rtt_ms: 40.0,
            training_rtt_ms: Vec::new(),
            profiles_dir: data.join("profiles"),
            device_profile: "cpu2".into(),
            worker_profile: "h200".into(),
            device_memory_mb: 256.0,
            workloads: vec![
                WorkloadMix { name: "mobilenetv2".into(), weight: 0.35, slo_ms: 150.0, min_accuracy: 0.65, onnx: None },
                WorkloadMix { name: "resnet18".into(), weight: 0.25, slo_ms: 300.0, min_accuracy: 0.69, onnx: None },
                WorkloadMix { name: "vgg16".into(), weight: 0.15, slo_ms: 600.0, min_accuracy: 0.71, onnx: None },
                WorkloadMix { name: "bert-mini".into(), weight: 0.25, slo_ms: 120.0, min_accuracy: 0.85, onnx: None },
            ],
            requests_per_episode: 200,
            mean_interarrival_s: 0.5,
            split_points: 2,
            int8_intermediates: true,
            history: 5,
            min_sample_bytes: 4096,
            min_sample_ms: 40.0,
            device_load: LoadConfig::default(),
            contention: ContentionConfig::default(),
            deadline: DeadlineConfig::default(),
            shield: ShieldConfig::default(),
            consensus: ConsensusConfig::default(),
            training_tail: TailConfig::default(),
            outages: Default::default(),
            worker_queue: LoadConfig { idle: 0.5, busy: 6.0, mean_idle_s: 30.0, mean_busy_s: 10.0, jitter: 0.2 },
            worker_service_ms: 15.0,
            worker_down_probability: 0.02,
            probe: ProbeConfig::default(),
            reward: RewardConfig::default(),
            nodes: Vec::new(),
            links: Vec::new(),
        }
    }
}

/// Checks that `value` (the field `name`) is finite and inside `low..=high`.
pub fn check_range(name: &str, value: f64, low: f64, high: f64) -> Result<(), String> {
    if value.is_finite() && value >= low && value <= high {
        Ok(())
    } else if high == f64::INFINITY {
        Err(format!("{name} must be a number ≥ {}, got {}", Num(low), Num(value)))
    } else {
        Err(format!("{name} must be a number in {}..={}, got {}", Num(low), Num(high), Num(value)))
    }
}

/// Checks that the count or size `value` (the field `name`) is inside `low..=high`: every size
/// has an upper bound, so that no setting can overflow an allocation or a product of sizes.
pub fn check_count(name: &str, value: usize, low: usize, high: usize) -> Result<(), String> {
    if (low..=high).contains(&value) {
        Ok(())
    } else {
        Err(format!("{name} must be an integer in {low}..={high}, got {value}"))
    }
}

/// Checks that `value` (the field `name`) is finite and above zero.
pub fn check_positive(name: &str, value: f64) -> Result<(), String> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a positive number, got {}", Num(value)))
    }
}

/// Bandwidth scales allowed, both ways from the traces as recorded: beyond them a link is
/// slower than a modem or faster than a data-centre fabric. Each scaled trace must also keep a
/// mean of 1 kbit/s ([`rlsched_executor::net::trace::MIN_MEAN_BPS`]).
pub const BANDWIDTH_SCALE_RANGE: (f64, f64) = (1e-3, 1e4);
/// Longest round trip, ms (the link emulator's bound too).
pub const MAX_RTT_MS: f64 = rlsched_executor::net::link::MAX_RTT_MS;
/// Longest time any millisecond field may hold: an hour.
pub const MAX_MS: f64 = 3_600_000.0;
/// Mean dwell times of a load process, seconds: shorter ones toggle thousands of times between
/// two requests, longer ones never toggle in an episode.
pub const DWELL_RANGE_S: (f64, f64) = (1e-3, 1e6);
/// Mean gap between requests, seconds.
pub const INTERARRIVAL_RANGE_S: (f64, f64) = (1e-3, 3_600.0);
/// Most requests in one episode: the episode's requests are drawn up front.
pub const MAX_REQUESTS_PER_EPISODE: usize = 1_000_000;
/// Most throughput samples remembered (the state vector grows with it).
pub const MAX_HISTORY: usize = 1_000;
/// Each draw holds a scaled copy of every training trace in memory.
pub const MAX_SCALE_DRAWS: usize = 64;
/// Largest probe, bytes.
pub const MAX_PROBE_BYTES: usize = 64 << 20;
/// Largest weight (mix share or reward weight): the sums stay finite.
pub const MAX_WEIGHT: f64 = 1e6;
/// Most split plans per variant: every bundled workload has fewer cuts on its Pareto front.
pub const MAX_SPLIT_POINTS: usize = 64;
/// Largest `min_sample_bytes` (1 GiB): a larger floor means no transfer ever makes a sample.
pub const MAX_SAMPLE_BYTES: usize = 1 << 30;
/// Largest device memory, MB (10 TB): beyond any device.
pub const MAX_DEVICE_MEMORY_MB: f64 = 1e7;

impl LoadConfig {
    /// `max_level`: the highest meaningful level (a CPU share stays below 1).
    pub(crate) fn validate(&self, name: &str, max_level: f64) -> Result<(), String> {
        check_range(&format!("{name}.idle"), self.idle, 0.0, max_level)?;
        check_range(&format!("{name}.busy"), self.busy, 0.0, max_level)?;
        let (low, high) = DWELL_RANGE_S;
        check_range(&format!("{name}.mean_idle_s"), self.mean_idle_s, low, high)?;
        check_range(&format!("{name}.mean_busy_s"), self.mean_busy_s, low, high)?;
        check_range(&format!("{name}.jitter"), self.jitter, 0.0, 10.0)
    }
}

impl EnvConfig {
    /// The default scenario with its data (training and validation traces, profiles) read from
    /// the repository at `root`, wherever the program runs.
    pub fn in_repo(root: &std::path::Path) -> Self {
        let defaults = Self::default();
        Self {
            traces: defaults.traces.iter().map(|p| root.join(p)).collect(),
            validation_traces: defaults.validation_traces.iter().map(|p| root.join(p)).collect(),
            profiles_dir: root.join(&defaults.profiles_dir),
            ..defaults
        }
    }

    /// The link estimator this configuration's device keeps.
    pub fn estimator(&self) -> rlsched_executor::net::estimator::EstimatorConfig {
        rlsched_executor::net::estimator::EstimatorConfig {
            history: self.history,
            min_sample_bytes: self.min_sample_bytes,
            min_sample_ms: self.min_sample_ms,
        }
    }

    /// Every value the simulator cannot work with, named by its `env.` key. The bounds keep
    /// every time, transfer and reward finite and every loop short.
    pub fn validate(&self) -> Result<(), String> {
        let (low, high) = BANDWIDTH_SCALE_RANGE;
        check_range("env.bandwidth_scale", self.bandwidth_scale, low, high)?;
        for (i, &scale) in self.training_bandwidth_scales.iter().enumerate() {
            check_range(&format!("env.training_bandwidth_scales[{i}]"), scale, low, high)?;
        }
        check_count("env.training_scale_draws", self.training_scale_draws, 0, MAX_SCALE_DRAWS)?;
        self.synthetic.validate()?;
        self.validation_synthetic.validate().map_err(|e| e.replace("env.synthetic.", "env.validation_synthetic."))?;
        self.procedural.validate()?;
        if self.training_scale_draws > 0 && self.training_bandwidth_scales.is_empty() {
            return Err("env.training_scale_draws needs env.training_bandwidth_scales to give the range".into());
        }
        check_range("env.rtt_ms", self.rtt_ms, 0.0, MAX_RTT_MS)?;
        match self.training_rtt_ms[..] {
            [] => {}
            [low, high] => {
                check_range("env.training_rtt_ms[0]", low, 0.01, MAX_RTT_MS)?;
                check_range("env.training_rtt_ms[1]", high, low, MAX_RTT_MS)?;
            }
            _ => return Err(format!("env.training_rtt_ms must be [] or [low, high], got {} values", self.training_rtt_ms.len())),
        }
        check_positive("env.device_memory_mb", self.device_memory_mb)?;
        check_range("env.device_memory_mb", self.device_memory_mb, 0.0, MAX_DEVICE_MEMORY_MB)?;
        if self.workloads.is_empty() {
            return Err("env.workloads is empty".into());
        }
        for (i, w) in self.workloads.iter().enumerate() {
            check_range(&format!("env.workloads[{i}].weight"), w.weight, 0.0, MAX_WEIGHT)?;
            check_range(&format!("env.workloads[{i}].slo_ms"), w.slo_ms, 1e-3, MAX_MS)?;
            check_range(&format!("env.workloads[{i}].min_accuracy"), w.min_accuracy, 0.0, 1.0)?;
        }
        if self.workloads.iter().map(|w| w.weight).sum::<f64>() <= 0.0 {
            return Err("env.workloads: the weights sum to zero".into());
        }
        check_count("env.requests_per_episode", self.requests_per_episode, 1, MAX_REQUESTS_PER_EPISODE)?;
        check_count("env.validation_episodes", self.validation_episodes, 1, 10_000)?;
        let (low, high) = INTERARRIVAL_RANGE_S;
        check_range("env.mean_interarrival_s", self.mean_interarrival_s, low, high)?;
        check_count("env.history", self.history, 0, MAX_HISTORY)?;
        check_count("env.split_points", self.split_points, 0, MAX_SPLIT_POINTS)?;
        check_count("env.min_sample_bytes", self.min_sample_bytes, 0, MAX_SAMPLE_BYTES)?;
        self.device_load.validate("env.device_load", MAX_RUNNABLE_PER_CORE)?;
        self.contention.validate()?;
        check_range("env.contention.reading_noise", self.contention.reading_noise, 0.0, 10.0)?;
        check_range("env.deadline.slo_factor", self.deadline.slo_factor, 0.0, 1e3)?;
        check_range("env.deadline.prediction_factor", self.deadline.prediction_factor, 0.0, 1e3)?;
        check_range("env.shield.slo_factor", self.shield.slo_factor, 0.0, 1e3)?;
        check_range("env.consensus.margin", self.consensus.margin, 0.0, 100.0)?;
        check_range("env.consensus.certain_margin", self.consensus.certain_margin, 0.0, self.consensus.margin)
            .map_err(|e| format!("{e} (it may not exceed env.consensus.margin)"))?;
        check_range("env.consensus.certain_within_slos", self.consensus.certain_within_slos, 0.0, 10.0)?;
        check_range("env.consensus.queue_charge", self.consensus.queue_charge, 0.0, 10.0)?;
        // the observation clamps a plan's latency at 10 SLOs: a tail past it would never act
        check_range("env.consensus.tail_slos", self.consensus.tail_slos, 0.0, 9.99)?;
        if self.consensus.in_training && self.consensus.margin == 0.0 {
            return Err("env.consensus.in_training masks what the veto forbids, and margin = 0 turns the veto off: set a margin".into());
        }
        check_range("env.training_tail.weight", self.training_tail.weight, 0.0, 1e3)?;
        check_range("env.training_tail.beyond_slos", self.training_tail.beyond_slos, 0.0, 1e3)?;
        self.outages.validate()?;
        self.worker_queue.validate("env.worker_queue", 1e4)?;
        check_range("env.worker_service_ms", self.worker_service_ms, 0.0, MAX_MS)?;
        check_range("env.worker_down_probability", self.worker_down_probability, 0.0, 1.0)?;
        check_count("env.probe.bytes", self.probe.bytes, 0, MAX_PROBE_BYTES)?;
        check_range("env.probe.interval_s", self.probe.interval_s, 1e-3, MAX_MS / 1e3)?;
        check_range("env.probe.timeout_s", self.probe.timeout_s, 1e-3, MAX_MS / 1e3)?;
        // a probe whose timeout a round trip fills says nothing when it is given up, and would be
        // sent again at every request
        let longest_rtt_ms = self.training_rtt_ms.iter().copied().fold(self.rtt_ms, f64::max);
        if self.probe.timeout_s * 1e3 <= longest_rtt_ms {
            return Err(format!("env.probe.timeout_s ({} s) must exceed the longest round trip ({longest_rtt_ms} ms, env.rtt_ms / env.training_rtt_ms)", self.probe.timeout_s));
        }
        check_range("env.min_sample_ms", self.min_sample_ms, 0.0, MAX_MS)?;
        let r = &self.reward;
        for (name, w) in [("w_acc", r.w_acc), ("w_lat", r.w_lat), ("w_miss", r.w_miss), ("w_bytes", r.w_bytes)] {
            check_range(&format!("env.reward.{name}"), w, 0.0, MAX_WEIGHT)?;
        }
        validate_topology(&self.nodes, &self.links)
    }
}

/// Most nodes in a chain: the device and the most hops a route may name after its worker.
pub const MAX_NODES: usize = MAX_HOPS + 2;
/// Most trace paths per link.
pub const MAX_LINK_TRACES: usize = 64;

/// `[[env.nodes]]`: one node of the chain scenario (`env::chain`), the device first.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name: the peer name the node before it knows it by (`--next NAME=URL`).
    pub name: String,
    /// Profile suffix: its stage times are `<workload>-<profile>.json` in `env.profiles_dir`.
    pub profile: String,
    /// Its stage times are the profile's times this many times (1: as measured), 0.01..=100.
    #[serde(default = "one")]
    pub time_factor: f64,
    /// R_i: memory it gives one model, MB, for the weights of the stages it holds plus its
    /// largest activation.
    pub memory_mb: f64,
    /// Other clients' requests queued at it (workers only; the device has its own load,
    /// `env.device_load`). Absent: none.
    #[serde(default)]
    pub queue: Option<LoadConfig>,
    /// Its milliseconds per queued request ahead of ours.
    #[serde(default)]
    pub service_ms: f64,
}

fn one() -> f64 {
    1.0
}

/// `[[env.links]]`: the link after node i, toward node i + 1.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChainLinkConfig {
    /// Trace files or directories it replays (format detected); an episode takes the
    /// `episode`-th file, at a random offset of its own.
    pub traces: Vec<PathBuf>,
    /// Multiply every rate by this.
    pub scale: f64,
    /// Its round trip, ms.
    pub rtt_ms: f64,
}

/// Checks the chain's shape and every bound; the error names the `env.` key.
pub fn validate_topology(nodes: &[NodeConfig], links: &[ChainLinkConfig]) -> Result<(), String> {
    if nodes.is_empty() && links.is_empty() {
        return Ok(());
    }
    if !(2..=MAX_NODES).contains(&nodes.len()) {
        return Err(format!("env.nodes: a chain has 2 to {MAX_NODES} nodes, got {}", nodes.len()));
    }
    if links.len() + 1 != nodes.len() {
        return Err(format!("env.links: {} nodes need {} links (one after each node but the last), got {}", nodes.len(), nodes.len() - 1, links.len()));
    }
    for (i, node) in nodes.iter().enumerate() {
        let key = |field: &str| format!("env.nodes[{i}].{field}");
        check_peer_name(&node.name).map_err(|e| format!("{}: {e}", key("name")))?;
        if nodes[..i].iter().any(|n| n.name == node.name) {
            return Err(format!("{}: `{}` names two nodes", key("name"), node.name));
        }
        if node.profile.is_empty() || node.profile.len() > 64 || node.profile.contains(['/', '\\']) {
            return Err(format!("{}: a profile suffix of 1 to 64 characters without a path separator, got `{}`", key("profile"), node.profile));
        }
        check_range(&key("time_factor"), node.time_factor, 0.01, 100.0)?;
        check_range(&key("memory_mb"), node.memory_mb, 1.0, MAX_DEVICE_MEMORY_MB)?;
        check_range(&key("service_ms"), node.service_ms, 0.0, MAX_MS)?;
        if let Some(queue) = &node.queue {
            if i == 0 {
                return Err(format!("{}: the device's load is env.device_load", key("queue")));
            }
            queue.validate(&key("queue"), 1e4)?;
        }
    }
    for (i, link) in links.iter().enumerate() {
        let key = |field: &str| format!("env.links[{i}].{field}");
        if !(1..=MAX_LINK_TRACES).contains(&link.traces.len()) {
            return Err(format!("{}: 1 to {MAX_LINK_TRACES} paths, got {}", key("traces"), link.traces.len()));
        }
        let (low, high) = BANDWIDTH_SCALE_RANGE;
        check_range(&key("scale"), link.scale, low, high)?;
        check_range(&key("rtt_ms"), link.rtt_ms, 0.0, MAX_RTT_MS)?;
    }
    Ok(())
}

