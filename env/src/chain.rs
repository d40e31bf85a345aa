//! The chain scenario: K sub-models on N nodes (device → edge → cloud). Its topology
//! (`[[env.nodes]]`, `[[env.links]]`), its plans (contiguous stage segments over the nodes in
//! order, which may skip nodes (those relay) and end anywhere, the result coming back along
//! the chain), each node's memory R_i, the simulator (each link replays its own trace, one
//! transfer at a time; one computation at a time per node, behind other clients' queue; one
//! `LinkEstimator` per link fed only by what the device has heard back), and its schedulers:
//! the greedy predictors over the chain's plans (and over its two-node plans alone), the
//! optimal static placement per request from the causal estimates (the DP over contiguous
//! segments with per-node capacities, after Tarnawski et al., NeurIPS'20), and the
//! clairvoyant greedy oracle. With no `[[env.nodes]]` none of this runs: the default
//! device-plus-one-worker scenario is `Scenario`'s, untouched.
//!
//! Deadlines and outages work as in `ReplayEnv`: `[env.outages]` is laid over every link's
//! traces, and a plan's remote path (from when the device's segment is done until the reply is
//! back) has `[env.deadline]`'s deadline, from the plan's own prediction at the harmonic
//! estimates; past it the device abandons the chain, finishes the remaining stages itself and
//! its first link's estimator gets a censored sample, as `PlanExecutor::execute` does with a
//! `Plan::Chain`. The nodes beyond keep the work they were given (nothing tells them), and the
//! fallback's span is not reserved on the device, as `ReplayEnv`'s is not.
//!
//! The policy runs here zero-shot: the default scenario's shared plan scorer reads each chain
//! plan through the default observation's features, the workers taken together ([`observe`]).
//!
//! What this simulator leaves out, against `ReplayEnv`: int8 intermediates (every hop carries
//! FP32), the active probe after the first, and training (no per-node features, so `train`
//! refuses a chain config).

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, StandardNormal};

use rlsched_executor::kserve::chain::Hop;
use rlsched_executor::net::estimator::LinkEstimator;
use rlsched_executor::net::trace::Trace;
use rlsched_executor::plan::Plan;
use rlsched_executor::Workload;

use crate::config::{ConsensusConfig, EnvConfig, LoadConfig, WorkloadMix, MAX_MS};
use crate::obs::{fill_state, plan_row, Obs, Prediction, StateInputs, PLAN_FEATURES};
use crate::queues::DeviceQueues;
use crate::EnvError;

/// Most plans per workload, as in the default scenario's observation.
pub const MAX_CHAIN_PLANS: usize = 32;
/// Bytes of a request's header and of a final reply (JSON and logits), as `candidates`.
const OVERHEAD_BYTES: f64 = 512.0;

pub use crate::config::{validate_topology, ChainLinkConfig, NodeConfig, MAX_LINK_TRACES, MAX_NODES};

/// One variant of a workload as the chain sees it: per-node stage times, sizes, weights.
#[derive(Clone, Debug)]
pub struct ChainVariant {
    pub name: String,
    pub accuracy: f64,
    /// `stage_ms[node][stage]`: (mean, std) ms, the node's time factor applied.
    pub stage_ms: Vec<Vec<(f64, f64)>>,
    /// Bytes that cross a link at each boundary: `boundary_bytes[0]` the input, `[s]` stage
    /// s − 1's FP32 output, a request header added.
    pub boundary_bytes: Vec<f64>,
    /// Bytes of each stage's weights.
    pub stage_weights: Vec<f64>,
    /// Bytes of the reply carrying the final output.
    pub final_bytes: f64,
}

impl ChainVariant {
    pub fn stages(&self) -> usize {
        self.stage_weights.len()
    }

    /// Memory node `node` needs for stages `start..end`: their weights and the largest
    /// activation it holds (its input, or a stage's output); a relay holds its input.
    pub fn segment_memory_bytes(&self, start: usize, end: usize) -> f64 {
        let weights: f64 = self.stage_weights[start..end].iter().sum();
        let activation = (start..=end).map(|b| self.boundary_bytes[b] - if b == 0 { 0.0 } else { OVERHEAD_BYTES }).fold(0.0, f64::max);
        weights + activation
    }
}

/// A chain plan: node i runs stages `bounds[i]..bounds[i + 1]`; `bounds` has one entry more
/// than the nodes it reaches (the last of which computes at least one stage, or it is the
/// device alone), starts at 0 and ends at the model's stage count. Equal bounds are a relay.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChainPlan {
    pub variant: usize,
    pub bounds: Vec<usize>,
}

impl ChainPlan {
    /// The last node it reaches.
    pub fn last_node(&self) -> usize {
        self.bounds.len() - 2
    }

    pub fn segment(&self, node: usize) -> Option<(usize, usize)> {
        (node + 1 < self.bounds.len()).then(|| (self.bounds[node], self.bounds[node + 1]))
    }

    /// The nodes that compute at least one stage.
    pub fn computing_nodes(&self) -> Vec<usize> {
        (0..=self.last_node()).filter(|&i| self.bounds[i] < self.bounds[i + 1]).collect()
    }

    /// Memory it takes on each node, bytes (0 where it does not reach).
    pub fn memory_bytes(&self, variant: &ChainVariant, nodes: usize) -> Vec<f64> {
        (0..nodes)
            .map(|i| match self.segment(i) {
                Some((start, end)) if i == 0 && start == end => 0.0, // offload: the input is the request's
                Some((start, end)) => variant.segment_memory_bytes(start, end),
                None => 0.0,
            })
            .collect()
    }

    /// Whether every node's share fits its R_i.
    pub fn fits(&self, variant: &ChainVariant, capacities_bytes: &[f64]) -> bool {
        self.memory_bytes(variant, capacities_bytes.len()).iter().zip(capacities_bytes).all(|(m, r)| m <= r)
    }

    /// The executor's plan: the device's own stages, then its worker (node 1), then the route
    /// of peer names (`rlsched worker --next`) for nodes 2 onwards.
    pub fn to_plan(&self, variant: &str, names: &[String]) -> Plan {
        if self.last_node() == 0 {
            return Plan::Local { variant: variant.into() };
        }
        Plan::Chain {
            variant: variant.into(),
            device_end: self.bounds[1],
            worker: 0,
            hops: (2..=self.last_node()).map(|i| Hop { peer: names[i].clone(), start: self.bounds[i] }).collect(),
            int8: false,
        }
    }

    pub fn label(&self, variant: &ChainVariant, names: &[String]) -> String {
        let parts: Vec<String> = self
            .computing_nodes()
            .iter()
            .map(|&i| {
                let (s, e) = self.segment(i).expect("a computing node has a segment");
                format!("{}[{s}..{e}]", names[i])
            })
            .collect();
        format!("{} {}", variant.name, parts.join(" "))
    }
}

/// One workload of the chain scenario.
#[derive(Clone, Debug)]
pub struct ChainWorkload {
    pub workload: Workload,
    pub mix: WorkloadMix,
    pub variants: Vec<ChainVariant>,
    /// The candidate plans (at most [`MAX_CHAIN_PLANS`]), all within every R_i.
    pub plans: Vec<ChainPlan>,
    /// How many plans the enumeration found before the capacity mask and the cap.
    pub enumerated: usize,
    /// How many of those every node's R_i admits.
    pub feasible: usize,
}

/// The loaded chain scenario.
pub struct ChainScenario {
    pub config: EnvConfig,
    pub names: Vec<String>,
    pub capacities_bytes: Vec<f64>,
    /// Each link's traces, scaled.
    pub links: Vec<Vec<Arc<Trace>>>,
    pub workloads: Vec<ChainWorkload>,
}

/// Cuts on the Pareto front of (time before the cut on `stage_ms`, bytes at the cut), and the
/// input itself (cut 0): a boundary at a dominated cut runs more upstream and sends more.
fn pareto_cuts(stage_ms: &[(f64, f64)], boundary_bytes: &[f64]) -> Vec<usize> {
    let stages = stage_ms.len();
    let mut prefix = vec![0.0; stages + 1];
    for s in 0..stages {
        prefix[s + 1] = prefix[s] + stage_ms[s].0;
    }
    (0..stages)
        .filter(|&c| !(0..stages).any(|o| o != c && prefix[o] <= prefix[c] && boundary_bytes[o] <= boundary_bytes[c] && (prefix[o] < prefix[c] || boundary_bytes[o] < boundary_bytes[c])))
        .collect()
}

/// Every plan whose boundaries lie on their upstream node's Pareto front, in order: local per
/// variant, then by the last node reached.
pub fn enumerate_plans(variant_index: usize, variant: &ChainVariant, nodes: usize) -> Vec<ChainPlan> {
    let stages = variant.stages();
    let fronts: Vec<Vec<usize>> = (0..nodes).map(|i| pareto_cuts(&variant.stage_ms[i], &variant.boundary_bytes)).collect();
    let mut out = vec![ChainPlan { variant: variant_index, bounds: vec![0, stages] }];
    // bounds[1..=last] chosen non-decreasing; bounds[last] < stages so the last node computes
    fn extend(fronts: &[Vec<usize>], bounds: &mut Vec<usize>, last: usize, stages: usize, variant: usize, out: &mut Vec<ChainPlan>) {
        let node = bounds.len() - 1; // the node whose segment ends at the next bound
        if node == last {
            let mut done = bounds.clone();
            done.push(stages);
            out.push(ChainPlan { variant, bounds: done });
            return;
        }
        let previous = *bounds.last().expect("starts with 0");
        let mut cuts: Vec<usize> = fronts[node].iter().copied().filter(|&c| c >= previous).collect();
        // a relay keeps the boundary where it is
        if !cuts.contains(&previous) {
            cuts.insert(0, previous);
        }
        for cut in cuts {
            bounds.push(cut);
            extend(fronts, bounds, last, stages, variant, out);
            bounds.pop();
        }
    }
    for last in 1..nodes {
        extend(&fronts, &mut vec![0], last, stages, variant_index, &mut out);
    }
    out
}

impl ChainScenario {
    /// Loads the profiles of every node and the traces of every link; `Ok(None)` without
    /// `[[env.nodes]]`.
    pub fn load(config: &EnvConfig) -> Result<Option<Self>, EnvError> {
        if config.nodes.is_empty() {
            return Ok(None);
        }
        config.validate().map_err(EnvError::Config)?;
        let names: Vec<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
        let capacities_bytes: Vec<f64> = config.nodes.iter().map(|n| n.memory_mb * 1e6).collect();
        let links = config
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let traces = crate::scenario::load_scaled_traces(&l.traces, None, l.scale, &format!("env.links[{i}].scale"))?;
                crate::scenario::with_outages(config, &traces)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut workloads = Vec::new();
        for mix in &config.workloads {
            let workload: Workload = mix.name.parse().map_err(|e: rlsched_executor::ExecError| EnvError::Config(format!("env.workloads: {e}")))?;
            let profiles = config
                .nodes
                .iter()
                .map(|n| crate::scenario::load_profile(config, workload, &n.profile).map(|(p, _)| p))
                .collect::<Result<Vec<_>, _>>()?;
            let device = &profiles[0];
            let input_bytes = if device.input_bytes > 0 { device.input_bytes as f64 } else { device.input_shape.iter().product::<usize>() as f64 };
            let mut variants = Vec::new();
            for v in &device.variants {
                let stages = v.stages.len();
                // a variant every node has, cut into the same stages
                let per_node: Option<Vec<Vec<(f64, f64)>>> = profiles
                    .iter()
                    .zip(&config.nodes)
                    .map(|(p, n)| {
                        p.variant(&v.name)
                            .filter(|w| w.stages.len() == stages)
                            .map(|w| w.stages.iter().map(|s| (s.latency_ms.mean * n.time_factor, s.latency_ms.std * n.time_factor)).collect())
                    })
                    .collect();
                let Some(stage_ms) = per_node else { continue };
                let mut boundary_bytes = vec![input_bytes + OVERHEAD_BYTES];
                boundary_bytes.extend(v.stages.iter().map(|s| s.output_bytes as f64 + OVERHEAD_BYTES));
                let has_stage_weights = v.stages.iter().any(|s| s.param_bytes > 0);
                let stage_weights = match has_stage_weights {
                    true => v.stages.iter().map(|s| s.param_bytes as f64).collect(),
                    // old profiles: every stage counted as holding the whole model
                    false => vec![v.param_bytes as f64; stages],
                };
                let final_bytes = v.stages.last().map_or(0, |s| s.output_bytes) as f64 + OVERHEAD_BYTES;
                variants.push(ChainVariant { name: v.name.clone(), accuracy: v.accuracy, stage_ms, boundary_bytes, stage_weights, final_bytes });
            }
            let mut all = Vec::new();
            for (i, v) in variants.iter().enumerate() {
                all.extend(enumerate_plans(i, v, names.len()));
            }
            let enumerated = all.len();
            all.retain(|p| p.fits(&variants[p.variant], &capacities_bytes));
            let feasible = all.len();
            if all.is_empty() {
                return Err(EnvError::Config(format!(
                    "env.workloads: no plan of `{}` fits every node's env.nodes[].memory_mb ({} MB)",
                    mix.name,
                    config.nodes.iter().map(|n| n.memory_mb.to_string()).collect::<Vec<_>>().join(", ")
                )));
            }
            let plans = cap_plans(all, &variants, config, &links);
            workloads.push(ChainWorkload { workload, mix: mix.clone(), variants, plans, enumerated, feasible });
        }
        Ok(Some(Self { config: config.clone(), names, capacities_bytes, links, workloads }))
    }
}

fn mean_estimates(config: &EnvConfig, links: &[Vec<Arc<Trace>>]) -> Estimates {
    Estimates {
        link_mbps: links.iter().map(|t| t.iter().map(|t| t.mean_mbps()).sum::<f64>() / t.len().max(1) as f64).collect(),
        rtt_ms: config.links.iter().map(|l| l.rtt_ms).collect(),
        wait_ms: vec![0.0; config.nodes.len()],
        device_load: 0.0,
    }
}

/// At most [`MAX_CHAIN_PLANS`]: plans that another plan beats on both accuracy and latency at
/// the links' mean rates go first, then the slowest.
fn cap_plans(mut plans: Vec<ChainPlan>, variants: &[ChainVariant], config: &EnvConfig, links: &[Vec<Arc<Trace>>]) -> Vec<ChainPlan> {
    if plans.len() <= MAX_CHAIN_PLANS {
        return plans;
    }
    let estimates = mean_estimates(config, links);
    let scored: Vec<(f64, f64)> = plans.iter().map(|p| (predict_ms(p, &variants[p.variant], config, &estimates), variants[p.variant].accuracy)).collect();
    let dominated = |i: usize| scored.iter().any(|&(l, a)| l <= scored[i].0 && a >= scored[i].1 && (l < scored[i].0 || a > scored[i].1));
    let mut keep: Vec<(usize, bool)> = (0..plans.len()).map(|i| (i, dominated(i))).collect();
    // undominated first, each group fastest first; every variant's local plan stays
    keep.sort_by(|a, b| a.1.cmp(&b.1).then(scored[a.0].0.total_cmp(&scored[b.0].0)));
    let mut chosen: Vec<usize> = plans.iter().enumerate().filter(|(_, p)| p.last_node() == 0).map(|(i, _)| i).collect();
    for (i, _) in keep {
        if chosen.len() >= MAX_CHAIN_PLANS {
            break;
        }
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.truncate(MAX_CHAIN_PLANS);
    chosen.sort_unstable();
    let mut index = 0;
    plans.retain(|_| {
        let kept = chosen.binary_search(&index).is_ok();
        index += 1;
        kept
    });
    plans
}

/// What a scheduler believes at a decision: each link's rate and round trip, each node's wait
/// (the device's own queue; a worker's last reported queue), the device's load.
#[derive(Clone, Debug)]
pub struct Estimates {
    pub link_mbps: Vec<f64>,
    pub rtt_ms: Vec<f64>,
    pub wait_ms: Vec<f64>,
    pub device_load: f64,
}

fn wire_ms(bytes: f64, mbps: f64) -> f64 {
    bytes * 8.0 / (mbps.max(1e-6) * 1e3)
}

/// A plan's predicted latency under `estimates`: each computing node's wait and stages (the
/// device's slowed by its load), each crossed link's bytes and round trip, the reply's way back.
pub fn predict_ms(plan: &ChainPlan, variant: &ChainVariant, config: &EnvConfig, e: &Estimates) -> f64 {
    predict(plan, variant, config, e).total_ms()
}

/// The predicted remote path: everything after the device's own segment (what a deadline is
/// derived from, `[env.deadline]`).
pub fn remote_path_ms(plan: &ChainPlan, variant: &ChainVariant, config: &EnvConfig, e: &Estimates) -> f64 {
    predict(plan, variant, config, e).remote_path_ms()
}

/// The prediction in the default scenario's terms, the workers taken together: the device's
/// wait and stages, every link's transfers and round trips, the workers' waits, their stages.
pub fn predict(plan: &ChainPlan, variant: &ChainVariant, config: &EnvConfig, e: &Estimates) -> Prediction {
    let mut p = Prediction::default();
    for node in 0..=plan.last_node() {
        let (start, end) = plan.segment(node).expect("reached");
        if start < end {
            let compute: f64 = variant.stage_ms[node][start..end].iter().map(|s| s.0).sum();
            match node {
                0 => p.local_ms = e.wait_ms[0] + compute * config.contention.slowdown(e.device_load),
                _ => {
                    p.queue_ms += e.wait_ms[node];
                    p.remote_ms += compute;
                }
            }
        }
        if node < plan.last_node() {
            p.transfer_ms += e.rtt_ms[node] + wire_ms(variant.boundary_bytes[end], e.link_mbps[node]) + wire_ms(variant.final_bytes, e.link_mbps[node]);
        }
    }
    p
}

/// The optimal static placement of `variant` under `estimates` (Tarnawski et al.'s DP over
/// contiguous segments): `best[i][s]`, the least time until stages `0..s` are done with the
/// activation on node i, over every segment `s..e` that fits node j's R_j; nodes between i and
/// j relay. Returns the plan and its predicted ms, or `None` when no placement fits.
pub fn optimal_placement(variant_index: usize, variant: &ChainVariant, config: &EnvConfig, capacities_bytes: &[f64], e: &Estimates) -> Option<(ChainPlan, f64)> {
    let nodes = capacities_bytes.len();
    let stages = variant.stages();
    let compute = |node: usize, start: usize, end: usize| {
        let ms: f64 = variant.stage_ms[node][start..end].iter().map(|s| s.0).sum();
        let slowdown = if node == 0 { config.contention.slowdown(e.device_load) } else { 1.0 };
        e.wait_ms[node] + ms * slowdown
    };
    // crossing links i..j with `bytes` up and the reply down
    let path = |i: usize, j: usize, bytes: f64| (i..j).map(|l| e.rtt_ms[l] + wire_ms(bytes, e.link_mbps[l]) + wire_ms(variant.final_bytes, e.link_mbps[l])).sum::<f64>();
    let mut best = vec![vec![f64::INFINITY; stages + 1]; nodes];
    let mut from: Vec<Vec<Option<(usize, usize)>>> = vec![vec![None; stages + 1]; nodes];
    // the device holds stages 0..e (none: the input is the request's)
    best[0][0] = 0.0;
    for (end, cost) in best[0].iter_mut().enumerate().skip(1) {
        if variant.segment_memory_bytes(0, end) <= capacities_bytes[0] {
            *cost = compute(0, 0, end);
        }
    }
    for start in 0..stages {
        for i in 0..nodes {
            if !best[i][start].is_finite() {
                continue;
            }
            for j in i + 1..nodes {
                // the nodes between relay the activation, and hold it meanwhile
                if (i + 1..j).any(|r| variant.segment_memory_bytes(start, start) > capacities_bytes[r]) {
                    break;
                }
                let arrive = best[i][start] + path(i, j, variant.boundary_bytes[start]);
                for end in start + 1..=stages {
                    if variant.segment_memory_bytes(start, end) > capacities_bytes[j] {
                        continue;
                    }
                    let t = arrive + compute(j, start, end);
                    if t < best[j][end] {
                        best[j][end] = t;
                        from[j][end] = Some((i, start));
                    }
                }
            }
        }
    }
    let (last, ms) = (0..nodes).map(|i| (i, best[i][stages])).filter(|(_, t)| t.is_finite()).min_by(|a, b| a.1.total_cmp(&b.1))?;
    let mut bounds = vec![stages; last + 2];
    let (mut node, mut end) = (last, stages);
    while node > 0 {
        let (previous, start) = from[node][end].expect("a finite cost has a predecessor");
        // the nodes between `previous` and `node` relay: their segments are empty at `start`
        bounds[previous + 1..=node].fill(start);
        node = previous;
        end = start;
    }
    bounds[0] = 0;
    Some((ChainPlan { variant: variant_index, bounds }, ms))
}

/// The DP's choice for one request: each variant at or above `min_accuracy` placed optimally
/// under `e`, the one of best predicted reward at `slo_ms`; (plan, predicted ms). `None` when no
/// variant above the floor has a placement that fits.
pub fn dp_choice(w: &ChainWorkload, config: &EnvConfig, capacities_bytes: &[f64], e: &Estimates, slo_ms: f64, min_accuracy: f64) -> Option<(ChainPlan, f64)> {
    w.variants
        .iter()
        .enumerate()
        .filter(|(_, v)| v.accuracy >= min_accuracy)
        .filter_map(|(i, v)| optimal_placement(i, v, config, capacities_bytes, e))
        .map(|(p, ms)| {
            let v = &w.variants[p.variant];
            let bytes: f64 = (0..p.last_node()).map(|n| v.boundary_bytes[p.bounds[n + 1]]).sum();
            let reward = config.reward.reward(v.accuracy, ms, slo_ms, bytes);
            (p, ms, reward)
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(p, ms, _)| (p, ms))
}

/// Each link's mean rate over its traces, Mbit/s: the prior a live device uses for a link it
/// has not measured yet.
pub fn mean_link_mbps(links: &[Vec<Arc<Trace>>]) -> Vec<f64> {
    links.iter().map(|t| t.iter().map(|t| t.mean_mbps()).sum::<f64>() / t.len().max(1) as f64).collect()
}

/// The chain schedulers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainScheduler {
    /// Best local plan by predicted reward.
    Local,
    /// The greedy predictor over every chain plan, links at their last, harmonic or robust
    /// estimate (neurosurgeon, mpc, robust-mpc extended to chains).
    Greedy(Estimate),
    /// The same over the plans that compute on at most two nodes.
    GreedyTwoNode(Estimate),
    /// The same over today's scenario's plans: the device and the first worker alone.
    GreedyDeviceEdge(Estimate),
    /// The optimal static placement per request at the harmonic estimates, per variant, the
    /// variant of best predicted reward.
    Dp,
    /// Clairvoyant greedy: every candidate and the DP's placement run on the true world, the
    /// best reward taken.
    Oracle,
    /// The same over the candidates that compute on at most two nodes: with `Oracle`, what a
    /// third node could earn at best.
    OracleTwoNode,
    /// The default scenario's shared plan scorer (the trained policy), zero-shot: each chain
    /// plan is shown to it in the default observation's terms ([`observe`]).
    Policy,
}

/// What the device knows at a chain request, for [`observe`]: in the simulator from its world,
/// in `serve --chain` from the live estimates and the device's state.
pub struct ChainView<'a> {
    /// The device's own link (to the first worker).
    pub first_link: &'a LinkEstimator,
    pub now: f64,
    /// Other processes' CPU utilisation, 0..1.
    pub utilization: f64,
    pub queues: DeviceQueues,
    /// Every link and node at the harmonic, the last and the robust estimates (the device's
    /// load in each).
    pub estimates: [&'a Estimates; 3],
}

/// A chain request in the default observation's terms, so the one shared plan scorer reads it:
/// the state from the device's own link and its first worker's report, and each plan's row
/// with the workers taken together (their stages as the remote time, their waits as the queue,
/// every link's transfers and round trips as the transfer), at each estimate.
pub fn observe(scenario: &ChainScenario, workload: usize, slo_ms: f64, min_accuracy: f64, view: &ChainView) -> Obs {
    let config = &scenario.config;
    let w = &scenario.workloads[workload];
    let [harmonic, last, robust] = view.estimates;
    let mut obs = Obs::new(config, MAX_CHAIN_PLANS.max(w.plans.len()));
    fill_state(
        &mut obs.state,
        config,
        &StateInputs {
            link: view.first_link,
            now: view.now,
            rtt_ms: config.links.first().map(|l| l.rtt_ms),
            load: harmonic.device_load,
            utilization: view.utilization,
            device_memory_mb: config.nodes[0].memory_mb,
            // the first worker's reported wait, in its requests
            reported_queue: harmonic.wait_ms.get(1).copied().unwrap_or(0.0) / config.nodes.get(1).map_or(1.0, |n| n.service_ms.max(1e-6)),
            last_report_s: view.first_link.last_transfer_s(),
            worker_up: true,
            slo_ms,
            min_accuracy,
            queues: view.queues,
        },
    );
    obs.n_plans = w.plans.len();
    let log_kb = |bytes: f64| ((bytes / 1e3).ln_1p() / 10.0) as f32;
    for (i, plan) in w.plans.iter().enumerate() {
        let v = &w.variants[plan.variant];
        let remote = plan.last_node() > 0;
        let device_computes = plan.segment(0).is_some_and(|(start, end)| start < end);
        let statics = [
            (!remote) as u8 as f32,
            (remote && device_computes) as u8 as f32,
            (!device_computes) as u8 as f32,
            (v.name != "fp32") as u8 as f32,
            log_kb(if remote { v.boundary_bytes[plan.bounds[1]] } else { 0.0 }),
            log_kb(if remote { v.final_bytes } else { 0.0 }),
        ];
        let reward = |e: &Estimates| config.reward.reward(v.accuracy, predict_ms(plan, v, config, e), slo_ms, plan_bytes(plan, v));
        let row = plan_row(statics, v.accuracy, min_accuracy, &predict(plan, v, config, harmonic), slo_ms, [reward(harmonic), reward(last), reward(robust)]);
        obs.plans[i * PLAN_FEATURES..(i + 1) * PLAN_FEATURES].copy_from_slice(&row);
        obs.mask[i] = v.accuracy >= min_accuracy;
    }
    // a request always has a plan: below the floor every plan stays, as for the baselines
    if !obs.mask.iter().any(|m| *m) {
        obs.mask[..obs.n_plans].fill(true);
    }
    obs
}

/// The valid plan `scores` ranks first (first on ties) among those `[env.consensus]` allows, as
/// `policy::best_allowed` decides on one link.
pub fn best_scored(obs: &Obs, scores: &[f32], veto: &ConsensusConfig) -> usize {
    (0..obs.n_plans)
        .filter(|&i| obs.mask[i] && !crate::obs::vetoed(obs, veto, i))
        .fold(None, |best: Option<(usize, f32)>, i| match best {
            Some((_, b)) if scores.get(i).is_none_or(|&s| s <= b) => best,
            _ => Some((i, scores.get(i).copied().unwrap_or(f32::NEG_INFINITY))),
        })
        .map_or(0, |(i, _)| i)
}

/// Scores an observation's plan rows, masked ones `-inf`: the trained policy's plan scorer.
pub trait PlanScorer {
    fn scores(&self, obs: &Obs, out: &mut Vec<f32>) -> Result<(), String>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Estimate {
    Last,
    Harmonic,
    Robust,
}

impl Estimate {
    /// The link's rate by this estimate, once it has a sample.
    pub fn rate(self, link: &LinkEstimator) -> Option<f64> {
        match self {
            Estimate::Last => link.last_mbps(),
            Estimate::Harmonic => link.harmonic_mbps(),
            Estimate::Robust => link.robust_mbps(),
        }
    }
}

impl ChainScheduler {
    pub const ALL: [ChainScheduler; 13] = [
        ChainScheduler::Local,
        ChainScheduler::GreedyDeviceEdge(Estimate::Last),
        ChainScheduler::GreedyDeviceEdge(Estimate::Harmonic),
        ChainScheduler::GreedyDeviceEdge(Estimate::Robust),
        ChainScheduler::GreedyTwoNode(Estimate::Last),
        ChainScheduler::GreedyTwoNode(Estimate::Harmonic),
        ChainScheduler::GreedyTwoNode(Estimate::Robust),
        ChainScheduler::Greedy(Estimate::Last),
        ChainScheduler::Greedy(Estimate::Harmonic),
        ChainScheduler::Greedy(Estimate::Robust),
        ChainScheduler::Dp,
        ChainScheduler::OracleTwoNode,
        ChainScheduler::Oracle,
    ];

    pub fn name(self) -> String {
        let e = |e: Estimate| match e {
            Estimate::Last => "neurosurgeon",
            Estimate::Harmonic => "mpc",
            Estimate::Robust => "robust-mpc",
        };
        match self {
            ChainScheduler::Local => "local".into(),
            ChainScheduler::Greedy(x) => format!("{}-chain", e(x)),
            ChainScheduler::GreedyTwoNode(x) => format!("{}-2node", e(x)),
            ChainScheduler::GreedyDeviceEdge(x) => format!("{}-device-edge", e(x)),
            ChainScheduler::Dp => "dp-static".into(),
            ChainScheduler::Oracle => "oracle-now".into(),
            ChainScheduler::OracleTwoNode => "oracle-now-2node".into(),
            ChainScheduler::Policy => "policy".into(),
        }
    }

    /// Whether it may choose only plans on at most two computing nodes.
    pub fn two_node(self) -> bool {
        matches!(self, ChainScheduler::GreedyTwoNode(_) | ChainScheduler::GreedyDeviceEdge(_) | ChainScheduler::Local | ChainScheduler::OracleTwoNode)
    }
}

/// A request of a chain episode, fixed at reset.
#[derive(Clone, Debug)]
struct ChainRequest {
    workload: usize,
    time_s: f64,
    device_load: f64,
    /// Other clients' requests queued at each node.
    node_queue: Vec<f64>,
    /// Standard-normal draws per stage per node.
    noise: Vec<Vec<f64>>,
}

impl ChainRequest {
    /// Stages `range` of `v` on `node` as this request's draws make them (never below 5% of
    /// their mean), before any slowdown.
    fn sampled_ms(&self, v: &ChainVariant, node: usize, range: std::ops::Range<usize>) -> f64 {
        range.map(|s| (v.stage_ms[node][s].0 + v.stage_ms[node][s].1 * self.noise[node][s]).max(0.05 * v.stage_ms[node][s].0)).sum()
    }
}

/// A sample the device hears of only when the reply comes back (or, censored, when it gives up
/// waiting for one).
#[derive(Clone, Debug)]
struct Pending {
    visible_s: f64,
    link: usize,
    at_s: f64,
    bytes: usize,
    wire_ms: f64,
    censored: bool,
}

/// The true world of one episode, and what the device knows of it.
#[derive(Clone)]
struct ChainWorld {
    /// Each link's trace and its offset into it.
    traces: Vec<(Arc<Trace>, f64)>,
    link_free_s: Vec<f64>,
    node_free_s: Vec<f64>,
    estimators: Vec<LinkEstimator>,
    pending: Vec<Pending>,
    reported_wait_ms: Vec<f64>,
}

/// What one request cost.
#[derive(Clone, Debug)]
pub struct ChainOutcome {
    pub latency_ms: f64,
    pub reward: f64,
    pub bytes_up: f64,
    /// The remote path passed its deadline and the device finished the request.
    pub fallback: bool,
}

impl ChainWorld {
    /// Runs `plan` for `request` arriving now; commits its use of every node and link.
    fn run(&mut self, scenario: &ChainScenario, request: &ChainRequest, plan: &ChainPlan) -> ChainOutcome {
        let w = &scenario.workloads[request.workload];
        let v = &w.variants[plan.variant];
        let config = &scenario.config;
        // the deadline serving would set: from the plan's own prediction, as the device has it
        let deadline_ms = match plan.last_node() {
            0 => None,
            _ => {
                let e = self.estimates(config, request, Estimate::Harmonic);
                config.deadline.remote_ms(w.mix.slo_ms, remote_path_ms(plan, v, config, &e))
            }
        };
        let mut t = request.time_s;
        let mut bytes_up = 0.0;
        let mut samples = Vec::new();
        // when the device's own segment is done (the remote path's start) and its upload's
        let mut ready_s = t;
        let mut first_upload_s = t;
        for node in 0..=plan.last_node() {
            let (start, end) = plan.segment(node).expect("reached");
            if start < end {
                let queue = match node {
                    0 => 0.0,
                    _ => request.node_queue[node] * config.nodes[node].service_ms / 1e3,
                };
                let begin = t.max(self.node_free_s[node]) + queue;
                let slowdown = if node == 0 { config.contention.slowdown(request.device_load) } else { 1.0 };
                let ms = request.sampled_ms(v, node, start..end);
                t = begin + ms * slowdown / 1e3;
                self.node_free_s[node] = t;
            }
            if node == 0 {
                ready_s = t;
            }
            if node < plan.last_node() {
                let bytes = v.boundary_bytes[end];
                let (trace, offset) = &self.traces[node];
                let begin = t.max(self.link_free_s[node]);
                if node == 0 {
                    first_upload_s = begin;
                }
                let wire_s = trace.transfer_time(offset + begin, bytes).min(MAX_MS / 1e3);
                self.link_free_s[node] = begin + wire_s;
                samples.push((node, begin + wire_s, bytes as usize, wire_s * 1e3));
                bytes_up += bytes;
                t = begin + wire_s + config.links[node].rtt_ms / 2e3;
            }
        }
        // the reply comes back along the chain, link by link
        for node in (0..plan.last_node()).rev() {
            let (trace, offset) = &self.traces[node];
            t += trace.transfer_time(offset + t, v.final_bytes).min(MAX_MS / 1e3) + config.links[node].rtt_ms / 2e3;
        }
        let abandoned_s = deadline_ms.map(|d| ready_s + d / 1e3).filter(|&at| t > at);
        match abandoned_s {
            Some(abandoned) => {
                // No reply, so none of the transfers is heard of; the first link carried at
                // most the upload's bytes in the deadline less a round trip. The device's
                // upload stops there, and the device runs the stages after its segment.
                let device_end = plan.segment(0).map_or(0, |(_, end)| end);
                let wire_ms = deadline_ms.unwrap_or(0.0) - config.links[0].rtt_ms;
                let bytes = v.boundary_bytes[device_end] as usize;
                self.pending.push(Pending { visible_s: abandoned, link: 0, at_s: abandoned, bytes, wire_ms, censored: true });
                self.link_free_s[0] = self.link_free_s[0].min(abandoned.max(first_upload_s));
                let slowdown = config.contention.slowdown(request.device_load);
                let ms = request.sampled_ms(v, 0, device_end..v.stages());
                t = abandoned.max(self.node_free_s[0]) + ms * slowdown / 1e3;
            }
            None => {
                for (link, at_s, bytes, wire_ms) in samples {
                    self.pending.push(Pending { visible_s: t, link, at_s, bytes, wire_ms, censored: false });
                }
                for &node in &plan.computing_nodes() {
                    if node > 0 {
                        self.reported_wait_ms[node] = request.node_queue[node] * config.nodes[node].service_ms;
                    }
                }
            }
        }
        let latency_ms = (t - request.time_s) * 1e3;
        let reward = config.reward.reward(v.accuracy, latency_ms, w.mix.slo_ms, bytes_up);
        ChainOutcome { latency_ms, reward, bytes_up, fallback: abandoned_s.is_some() }
    }

    /// What the policy sees of a chain request ([`observe`]). The device's uplink backlog reads
    /// zero: this simulator does not track its queued bytes.
    fn observation(&mut self, scenario: &ChainScenario, request: &ChainRequest) -> Obs {
        let config = &scenario.config;
        let [harmonic, last, robust] = [Estimate::Harmonic, Estimate::Last, Estimate::Robust].map(|x| self.estimates(config, request, x));
        let w = &scenario.workloads[request.workload];
        let view = ChainView {
            first_link: &self.estimators[0],
            now: request.time_s,
            utilization: request.device_load.min(1.0),
            queues: DeviceQueues { local_ahead_ms: harmonic.wait_ms[0], uplink_backlog_bytes: 0.0 },
            estimates: [&harmonic, &last, &robust],
        };
        observe(scenario, request.workload, w.mix.slo_ms, w.mix.min_accuracy, &view)
    }

    /// Folds in what the device has heard back by `now`, then says what it believes.
    fn estimates(&mut self, config: &EnvConfig, request: &ChainRequest, estimate: Estimate) -> Estimates {
        let now = request.time_s;
        self.pending.sort_by(|a, b| a.visible_s.total_cmp(&b.visible_s));
        let heard = self.pending.partition_point(|p| p.visible_s <= now);
        for p in self.pending.drain(..heard) {
            match p.censored {
                true => self.estimators[p.link].record_censored(p.at_s, p.bytes, p.wire_ms),
                false => self.estimators[p.link].record_transfer(p.at_s, p.bytes, p.wire_ms),
            };
        }
        let link_mbps = self
            .estimators
            .iter()
            .map(|e| estimate.rate(e).unwrap_or(1.0))
            .collect();
        let mut wait_ms = self.reported_wait_ms.clone();
        wait_ms[0] = ((self.node_free_s[0] - now) * 1e3).max(0.0);
        Estimates { link_mbps, rtt_ms: config.links.iter().map(|l| l.rtt_ms).collect(), wait_ms, device_load: request.device_load }
    }
}

/// One scheduler's results over the evaluation's episodes.
#[derive(Clone, Debug)]
pub struct ChainResult {
    pub scheduler: String,
    /// Mean reward per request, per episode.
    pub episode_rewards: Vec<f64>,
    pub latencies_ms: Vec<f64>,
    pub slo_misses: usize,
    /// Requests whose plan computed on 1, 2, 3… nodes (index = count − 1).
    pub node_counts: Vec<usize>,
    /// Requests whose plan reached 1, 2, 3… nodes, relays included (index = count − 1).
    pub reach_counts: Vec<usize>,
    /// Every request's (workload, plan), in order.
    pub chosen: Vec<(usize, ChainPlan)>,
    /// Requests whose plan used each node.
    pub node_use: Vec<usize>,
    /// Chosen plans that exceeded some node's R_i (the capacity check: 0).
    pub over_capacity: usize,
    /// Per workload: (requests, plans that computed on 3 or more nodes).
    pub per_workload: Vec<(usize, usize)>,
    /// Requests whose remote path passed its deadline and were finished on the device.
    pub fallbacks: usize,
    /// The plans chosen, with their counts, most frequent first (at most 12).
    pub top_plans: Vec<(String, usize)>,
}

impl ChainResult {
    pub fn mean(&self) -> f64 {
        self.episode_rewards.iter().sum::<f64>() / self.episode_rewards.len().max(1) as f64
    }
}

/// Episodes, each with its own trace per link (the `episode`-th, cycling) and offset.
pub fn evaluate(scenario: &ChainScenario, episodes: usize, seed: u64) -> Result<Vec<ChainResult>, EnvError> {
    evaluate_with_policy(scenario, episodes, seed, None)
}

/// `evaluate`, with the policy's row after the baselines' when a scorer is given.
pub fn evaluate_with_policy(scenario: &ChainScenario, episodes: usize, seed: u64, policy: Option<&dyn PlanScorer>) -> Result<Vec<ChainResult>, EnvError> {
    let nodes = scenario.names.len();
    let schedulers: Vec<ChainScheduler> = ChainScheduler::ALL.iter().copied().chain(policy.map(|_| ChainScheduler::Policy)).collect();
    let mut results: Vec<ChainResult> = schedulers
        .iter()
        .map(|s| ChainResult {
            scheduler: s.name(),
            episode_rewards: Vec::new(),
            latencies_ms: Vec::new(),
            slo_misses: 0,
            node_counts: vec![0; nodes],
            reach_counts: vec![0; nodes],
            chosen: Vec::new(),
            node_use: vec![0; nodes],
            over_capacity: 0,
            per_workload: vec![(0, 0); scenario.workloads.len()],
            fallbacks: 0,
            top_plans: Vec::new(),
        })
        .collect();
    let mut plan_counts: Vec<std::collections::HashMap<String, usize>> = vec![Default::default(); results.len()];
    for episode in 0..episodes {
        let mut rng = SmallRng::seed_from_u64(seed.wrapping_add(episode as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (requests, world) = reset(scenario, episode, &mut rng)?;
        for (k, &scheduler) in schedulers.iter().enumerate() {
            let mut world = world.clone();
            let mut total = 0.0;
            for request in &requests {
                let plan = match (scheduler, policy) {
                    (ChainScheduler::Policy, Some(policy)) => choose_by_policy(policy, scenario, &mut world, request)?,
                    _ => choose(scheduler, scenario, &mut world, request),
                };
                let w = &scenario.workloads[request.workload];
                let v = &w.variants[plan.variant];
                if !plan.fits(v, &scenario.capacities_bytes) {
                    results[k].over_capacity += 1;
                }
                let outcome = world.run(scenario, request, &plan);
                total += outcome.reward;
                let r = &mut results[k];
                r.latencies_ms.push(outcome.latency_ms);
                r.slo_misses += (outcome.latency_ms > w.mix.slo_ms) as usize;
                r.fallbacks += outcome.fallback as usize;
                let computing = plan.computing_nodes();
                r.node_counts[computing.len() - 1] += 1;
                r.reach_counts[plan.last_node()] += 1;
                r.chosen.push((request.workload, plan.clone()));
                for &n in &computing {
                    r.node_use[n] += 1;
                }
                r.per_workload[request.workload].0 += 1;
                r.per_workload[request.workload].1 += (computing.len() >= 3) as usize;
                *plan_counts[k].entry(format!("{}: {}", w.mix.name, plan.label(v, &scenario.names))).or_default() += 1;
            }
            results[k].episode_rewards.push(total / requests.len().max(1) as f64);
        }
    }
    for (r, counts) in results.iter_mut().zip(plan_counts) {
        let mut top: Vec<(String, usize)> = counts.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(12);
        r.top_plans = top;
    }
    Ok(results)
}

fn reset(scenario: &ChainScenario, episode: usize, rng: &mut SmallRng) -> Result<(Vec<ChainRequest>, ChainWorld), EnvError> {
    let config = &scenario.config;
    let nodes = scenario.names.len();
    let traces: Vec<(Arc<Trace>, f64)> = scenario
        .links
        .iter()
        .map(|t| {
            let trace = t[episode % t.len()].clone();
            let offset = rng.random_range(0.0..trace.duration_s.max(1e-3));
            (trace, offset)
        })
        .collect();
    let gap = Exp::new(1.0 / config.mean_interarrival_s.max(1e-6)).map_err(|e| EnvError::Config(e.to_string()))?;
    let weights: Vec<f64> = scenario.workloads.iter().map(|w| w.mix.weight).collect();
    let total_weight: f64 = weights.iter().sum();
    let mut t = 0.0;
    let mut requests = Vec::with_capacity(config.requests_per_episode);
    // each node's queue and the device's load: two-state processes, as the default scenario's
    let mut busy: Vec<bool> = (0..nodes).map(|_| rng.random_bool(0.5)).collect();
    let mut device_busy = rng.random_bool(0.5);
    for _ in 0..config.requests_per_episode {
        let dt: f64 = gap.sample(rng);
        t += dt;
        let mut pick = rng.random_range(0.0..total_weight.max(1e-12));
        let workload = weights.iter().position(|&w| {
            pick -= w;
            pick < 0.0
        });
        let workload = workload.unwrap_or(weights.len() - 1);
        let load = &config.device_load;
        let flip = |busy: &mut bool, c: &LoadConfig, rng: &mut SmallRng| {
            let mean = if *busy { c.mean_busy_s } else { c.mean_idle_s };
            if rng.random_bool((dt / mean.max(1e-6)).min(1.0)) {
                *busy = !*busy;
            }
            let level = if *busy { c.busy } else { c.idle };
            let noise: f64 = StandardNormal.sample(rng);
            (level * (1.0 + c.jitter * noise)).max(0.0)
        };
        let device_load = flip(&mut device_busy, load, rng);
        let node_queue = (0..nodes)
            .map(|i| match &config.nodes[i].queue {
                Some(q) => flip(&mut busy[i], q, rng),
                None => 0.0,
            })
            .collect();
        let stages = scenario.workloads[workload].variants.first().map_or(0, |v| v.stages());
        let noise = (0..nodes).map(|_| (0..stages).map(|_| StandardNormal.sample(rng)).collect()).collect();
        requests.push(ChainRequest { workload, time_s: t, device_load, node_queue, noise });
    }
    // one probe per link at the start, as the device's first active probe
    let mut estimators: Vec<LinkEstimator> = (0..nodes - 1).map(|_| LinkEstimator::new(config.estimator())).collect();
    for (l, (trace, offset)) in traces.iter().enumerate() {
        let bytes = config.probe.bytes.max(config.min_sample_bytes).max(1);
        let wire = trace.transfer_time(*offset, bytes as f64) * 1e3;
        // given up at its timeout, as `ReplayEnv`'s and serve's probes are
        let timeout_ms = config.probe.timeout_s * 1e3;
        if wire > timeout_ms {
            estimators[l].record_censored(0.0, bytes, timeout_ms);
        } else {
            estimators[l].record_transfer(0.0, bytes, wire.max(config.min_sample_ms));
        }
    }
    let world = ChainWorld {
        traces,
        link_free_s: vec![0.0; nodes - 1],
        node_free_s: vec![0.0; nodes],
        estimators,
        pending: Vec::new(),
        reported_wait_ms: vec![0.0; nodes],
    };
    Ok((requests, world))
}

/// Bytes a plan sends over all its links (what the reward's byte term counts).
fn plan_bytes(plan: &ChainPlan, v: &ChainVariant) -> f64 {
    (0..plan.last_node()).map(|n| v.boundary_bytes[plan.bounds[n + 1]]).sum()
}

fn predicted_reward(plan: &ChainPlan, w: &ChainWorkload, config: &EnvConfig, e: &Estimates) -> f64 {
    let v = &w.variants[plan.variant];
    config.reward.reward(v.accuracy, predict_ms(plan, v, config, e), w.mix.slo_ms, plan_bytes(plan, v))
}

/// The policy's choice: the valid plan its scorer ranks first (first on ties).
fn choose_by_policy(policy: &dyn PlanScorer, scenario: &ChainScenario, world: &mut ChainWorld, request: &ChainRequest) -> Result<ChainPlan, EnvError> {
    let obs = world.observation(scenario, request);
    let mut scores = Vec::with_capacity(obs.n_plans);
    policy.scores(&obs, &mut scores).map_err(|e| EnvError::Config(format!("the policy on the chain: {e}")))?;
    Ok(scenario.workloads[request.workload].plans[best_scored(&obs, &scores, &scenario.config.consensus)].clone())
}

fn choose(scheduler: ChainScheduler, scenario: &ChainScenario, world: &mut ChainWorld, request: &ChainRequest) -> ChainPlan {
    let config = &scenario.config;
    let w = &scenario.workloads[request.workload];
    let floor = |p: &&ChainPlan| w.variants[p.variant].accuracy >= w.mix.min_accuracy;
    let allowed: Vec<&ChainPlan> = {
        let meeting: Vec<&ChainPlan> = w.plans.iter().filter(floor).collect();
        // a request always has a plan: below the floor the most accurate ones stay
        if meeting.is_empty() { w.plans.iter().collect() } else { meeting }
    };
    let best_of = |plans: &[&ChainPlan], e: &Estimates| -> ChainPlan {
        plans
            .iter()
            .max_by(|a, b| predicted_reward(a, w, config, e).total_cmp(&predicted_reward(b, w, config, e)))
            .map(|p| (*p).clone())
            .unwrap_or_else(|| w.plans[0].clone())
    };
    match scheduler {
        ChainScheduler::Local => {
            let e = world.estimates(config, request, Estimate::Harmonic);
            let local: Vec<&ChainPlan> = allowed.iter().copied().filter(|p| p.last_node() == 0).collect();
            if local.is_empty() { best_of(&allowed, &e) } else { best_of(&local, &e) }
        }
        ChainScheduler::Greedy(x) => {
            let e = world.estimates(config, request, x);
            best_of(&allowed, &e)
        }
        // `evaluate_with_policy` decides the policy's requests with its scorer; without one
        // the policy's judgement it starts from is mpc's (its prior feature)
        ChainScheduler::Policy => {
            let e = world.estimates(config, request, Estimate::Harmonic);
            best_of(&allowed, &e)
        }
        ChainScheduler::GreedyTwoNode(x) | ChainScheduler::GreedyDeviceEdge(x) => {
            let e = world.estimates(config, request, x);
            let device_edge = matches!(scheduler, ChainScheduler::GreedyDeviceEdge(_));
            let two: Vec<&ChainPlan> = allowed.iter().copied().filter(|p| p.computing_nodes().len() <= 2 && (!device_edge || p.last_node() <= 1)).collect();
            if two.is_empty() { best_of(&allowed, &e) } else { best_of(&two, &e) }
        }
        ChainScheduler::Dp => {
            let e = world.estimates(config, request, Estimate::Harmonic);
            let placements: Vec<ChainPlan> = w
                .variants
                .iter()
                .enumerate()
                .filter(|(_, v)| v.accuracy >= w.mix.min_accuracy)
                .filter_map(|(i, v)| optimal_placement(i, v, config, &scenario.capacities_bytes, &e).map(|(p, _)| p))
                .collect();
            let refs: Vec<&ChainPlan> = placements.iter().collect();
            if refs.is_empty() { best_of(&allowed, &e) } else { best_of(&refs, &e) }
        }
        ChainScheduler::Oracle | ChainScheduler::OracleTwoNode => {
            // keep the estimators as causal as everyone's: fold in what was heard
            let e = world.estimates(config, request, Estimate::Harmonic);
            let two = scheduler == ChainScheduler::OracleTwoNode;
            let mut options: Vec<ChainPlan> = allowed.iter().filter(|p| !two || p.computing_nodes().len() <= 2).map(|p| (*p).clone()).collect();
            if options.is_empty() {
                options = allowed.iter().map(|p| (*p).clone()).collect();
            }
            options.extend(
                w.variants
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.accuracy >= w.mix.min_accuracy)
                    .filter_map(|(i, v)| optimal_placement(i, v, config, &scenario.capacities_bytes, &e).map(|(p, _)| p))
                    .filter(|p| !two || p.computing_nodes().len() <= 2),
            );
            options
                .into_iter()
                .map(|p| {
                    let reward = world.clone().run(scenario, request, &p).reward;
                    (p, reward)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(p, _)| p)
                .unwrap_or_else(|| w.plans[0].clone())
        }
    }
}

/// A paired bootstrap interval (95%) of the mean per-episode difference `a − b`.
pub fn paired_interval(a: &[f64], b: &[f64], seed: u64) -> (f64, f64, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len().max(1);
    let mean = d.iter().sum::<f64>() / n as f64;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..2000)
        .map(|_| (0..n).map(|_| d[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(|x, y| x.total_cmp(y));
    (mean, means[50], means[1949])
}

/// The evaluation's table and its closing note.
pub fn report(scenario: &ChainScenario, results: &[ChainResult], seed: u64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let nodes = scenario.names.len();
    let _ = writeln!(out, "chain: {} ({} episodes x {} requests)", scenario.names.join(" -> "), results[0].episode_rewards.len(), scenario.config.requests_per_episode);
    let _ = writeln!(out, "  R_i: {} MB", scenario.config.nodes.iter().map(|n| format!("{} {}", n.name, n.memory_mb)).collect::<Vec<_>>().join(", "));
    for w in &scenario.workloads {
        let meets = |p: &&ChainPlan| w.variants[p.variant].accuracy >= w.mix.min_accuracy;
        let by_reach: Vec<String> = (0..nodes).map(|k| w.plans.iter().filter(meets).filter(|p| p.last_node() == k).count().to_string()).collect();
        let _ = writeln!(
            out,
            "  {:<12} plans {:>2} (enumerated {}, within every R_i {}); above the accuracy floor, by the last node reached: {}",
            w.mix.name,
            w.plans.len(),
            w.enumerated,
            w.feasible,
            by_reach.join("/")
        );
    }
    let _ = write!(out, "\n{:<24} {:>8} {:>18} {:>8} {:>8} {:>8} {:>7} {:>6}", "scheduler", "reward", "95% CI (episodes)", "p50 ms", "p95 ms", "p99 ms", "miss %", "fb %");
    for k in 1..=nodes {
        let _ = write!(out, " {:>6}", format!("c{k} %"));
    }
    let _ = write!(out, " {:>6}", format!("r{nodes} %"));
    let _ = writeln!(out, " {:>8}", "over R_i");
    for r in results {
        let mean = r.mean();
        let (_, low, high) = paired_interval(&r.episode_rewards, &vec![0.0; r.episode_rewards.len()], seed);
        let mut lat = r.latencies_ms.clone();
        lat.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
        let n = lat.len().max(1) as f64;
        let _ = write!(
            out,
            "{:<24} {mean:>8.3} [{low:>7.3}, {high:>7.3}] {:>8.0} {:>8.0} {:>8.0} {:>7.1} {:>6.1}",
            r.scheduler,
            q(0.5),
            q(0.95),
            q(0.99),
            100.0 * r.slo_misses as f64 / n,
            100.0 * r.fallbacks as f64 / n
        );
        for c in &r.node_counts {
            let _ = write!(out, " {:>6.1}", 100.0 * *c as f64 / n);
        }
        let _ = write!(out, " {:>6.1}", 100.0 * r.reach_counts[nodes - 1] as f64 / n);
        let _ = writeln!(out, " {:>8}", r.over_capacity);
    }
    // the closing note: the best chain scheduler against the best two-node one, paired
    let causal = |r: &&ChainResult| !r.scheduler.starts_with("oracle");
    let best = |two: bool| {
        results
            .iter()
            .filter(causal)
            .filter(|r| ChainScheduler::ALL.iter().any(|s| s.name() == r.scheduler && s.two_node() == two))
            .max_by(|a, b| a.mean().total_cmp(&b.mean()))
    };
    if let (Some(chain), Some(two)) = (best(false), best(true)) {
        let (d, low, high) = paired_interval(&chain.episode_rewards, &two.episode_rewards, seed);
        let n: usize = chain.node_counts.iter().sum();
        let three: usize = chain.node_counts.iter().skip(2).sum();
        let _ = writeln!(
            out,
            "\nbest chain scheduler {} vs best two-node scheduler {}: {d:+.3} reward per request, 95% paired bootstrap CI over episodes [{low:+.3}, {high:+.3}]; {} plans computed on three or more nodes in {:.1}% of requests",
            chain.scheduler,
            two.scheduler,
            chain.scheduler,
            100.0 * three as f64 / n.max(1) as f64
        );
        let oracle = |name: &str| results.iter().find(|r| r.scheduler == name);
        if let (Some(all), Some(two)) = (oracle("oracle-now"), oracle("oracle-now-2node")) {
            let (d, low, high) = paired_interval(&all.episode_rewards, &two.episode_rewards, seed);
            let n: usize = all.node_counts.iter().sum();
            let three: usize = all.node_counts.iter().skip(2).sum();
            let _ = writeln!(out, "clairvoyant: oracle-now vs oracle-now-2node {d:+.3} [{low:+.3}, {high:+.3}]; the oracle computed on three or more nodes in {:.1}% of requests", 100.0 * three as f64 / n.max(1) as f64);
        }
        for (i, w) in scenario.workloads.iter().enumerate() {
            let (requests, three) = chain.per_workload[i];
            let _ = writeln!(out, "  {:<12} {} of {} requests on three or more nodes", w.mix.name, three, requests);
        }
        if let Some(policy) = results.iter().find(|r| r.scheduler == "policy") {
            let baseline = results.iter().filter(causal).filter(|r| r.scheduler != "policy").max_by(|a, b| a.mean().total_cmp(&b.mean()));
            if let Some(baseline) = baseline {
                let (d, low, high) = paired_interval(&policy.episode_rewards, &baseline.episode_rewards, seed);
                let _ = writeln!(out, "policy (zero-shot: trained on the default scenario) vs the best baseline {}: {d:+.3} [{low:+.3}, {high:+.3}]", baseline.scheduler);
            }
        }
        let _ = writeln!(out, "  {}'s most frequent plans:", chain.scheduler);
        for (label, count) in chain.top_plans.iter().take(8) {
            let _ = writeln!(out, "    {count:>6}  {label}");
        }
    }
    let _ = writeln!(out, "\nfb %: requests whose remote path passed its deadline ([env.deadline]) and were finished on the device; cK %: requests whose plan computed on K nodes; r{nodes} %: plans that reached the last node (relays included); over R_i: chosen plans past some node's memory");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chain's policy choice honours `[env.consensus]` as the single-link one does: plan 1
    /// scores higher, but plan 0 beats it by 2 reward units under all three estimates.
    #[test]
    fn the_chain_choice_keeps_off_plans_the_veto_forbids() {
        use crate::obs::{PLAN_FEATURES, REWARD_FEATURES};
        let mut obs = Obs { state: vec![], plans: vec![0.0; 3 * PLAN_FEATURES], mask: vec![true, true, false], n_plans: 3, max_plans: 3 };
        for (plan, reward) in [(0, 1.0), (1, -1.0), (2, 5.0)] {
            obs.plans[plan * PLAN_FEATURES..][REWARD_FEATURES].fill(reward);
        }
        let scores = [0.0, 1.0, 9.0];
        let off = ConsensusConfig::default();
        let on = ConsensusConfig { margin: 1.0, ..ConsensusConfig::default() };
        assert_eq!(best_scored(&obs, &scores, &off), 1);
        assert_eq!(best_scored(&obs, &scores, &on), 0);
        // a margin wider than the gap leaves the choice to the scores; an invalid plan never beats one
        assert_eq!(best_scored(&obs, &scores, &ConsensusConfig { margin: 2.5, ..ConsensusConfig::default() }), 1);
    }

    fn variant(weights: Vec<f64>, ms: f64, nodes: usize) -> ChainVariant {
        let stages = weights.len();
        ChainVariant {
            name: "fp32".into(),
            accuracy: 0.7,
            stage_ms: vec![vec![(ms, 0.0); stages]; nodes],
            boundary_bytes: (0..=stages).map(|b| 1000.0 * (stages + 1 - b) as f64).collect(),
            stage_weights: weights,
            final_bytes: 600.0,
        }
    }

    #[test]
    fn plans_cover_the_model_in_order_and_map_to_routes() {
        let v = variant(vec![10.0; 5], 1.0, 3);
        let plans = enumerate_plans(0, &v, 3);
        assert!(plans.iter().any(|p| p.last_node() == 2 && p.computing_nodes().len() == 3));
        for p in &plans {
            assert_eq!((p.bounds[0], *p.bounds.last().unwrap()), (0, 5));
            assert!(p.bounds.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
            let names: Vec<String> = ["device", "edge", "cloud"].map(String::from).to_vec();
            if let Plan::Chain { device_end, hops, .. } = p.to_plan("fp32", &names) {
                rlsched_executor::kserve::chain::check_route(&hops, device_end, 5).unwrap();
            }
        }
    }

    #[test]
    fn the_dp_respects_capacities_and_finds_the_split_only_a_chain_allows() {
        let config = EnvConfig { links: vec![ChainLinkConfig { traces: vec![], scale: 1.0, rtt_ms: 1.0 }; 2], ..EnvConfig::default() };
        // a 4-stage model whose last stage alone is heavy: the device holds 0..3, the edge
        // only the last stage, the cloud nothing
        let v = variant(vec![10.0, 10.0, 10.0, 100.0], 5.0, 3);
        let caps = [40.0 + 5000.0, 101.0 + 5000.0, 0.0];
        let e = Estimates { link_mbps: vec![10.0, 10.0], rtt_ms: vec![1.0, 1.0], wait_ms: vec![0.0; 3], device_load: 0.0 };
        let (plan, _) = optimal_placement(0, &v, &config, &caps, &e).expect("the split fits");
        assert!(plan.fits(&v, &caps), "{plan:?}");
        assert_eq!(plan.bounds, vec![0, 3, 4]);
        assert!(optimal_placement(0, &v, &config, &[1.0, 1.0, 1.0], &e).is_none());
    }
}
