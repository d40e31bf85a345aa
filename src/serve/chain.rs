//! `rlsched serve --chain NAME=URL,PEER...`: chain plans (device → edge → cloud) served for the
//! workloads of the config's chain scenario (`[[env.nodes]]`). The first node after the device
//! is the worker at URL; each later one is the peer name the node before it was given with
//! `rlsched worker --next`. Chain requests are decided by the serving policy, zero-shot (each
//! chain plan shown to its shared plan scorer in the default observation's terms,
//! `env::chain::observe`), or with `--chain-placement dp-static` by the optimal static placement
//! (`env::chain::dp_choice`), both at the live estimates:
//! the device's link from the executor's own transfers, each later link from the hop reports
//! the replies bring (its prior until then: the mean of its configured traces), each worker's
//! wait from the queue time its last hop report gave, and the device's own wait and load from
//! serving's device state, as every other request's decision reads them.

use std::sync::{Arc, Mutex};

use rlsched_agent::policy::PolicyScheduler;
use rlsched_env::chain::{self, ChainScenario, ChainView, Estimate, Estimates};
use rlsched_env::EnvConfig;
use rlsched_executor::kserve::chain::check_peer_name;
use rlsched_executor::kserve::http::ApiError;
use rlsched_executor::net::estimator::LinkEstimator;
use rlsched_executor::plan::{Execution, Plan, PlanExecutor};
use rlsched_executor::{WireTensor, Workload};
use serde_json::{json, Map, Value};

use crate::serve::device::DeviceState;
use crate::serve::ServeError;

/// `--chain NAME=URL,PEER[,PEER...]`, and `--chain-placement`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainSpec {
    pub name: String,
    pub url: String,
    pub peers: Vec<String>,
    pub placement: ChainPlacement,
}

/// Who places a chain request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChainPlacement {
    /// The serving policy, zero-shot (it was trained on the default scenario).
    #[default]
    Policy,
    /// The optimal static placement per request (the DP over contiguous segments).
    DpStatic,
}

impl ChainPlacement {
    pub fn name(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::DpStatic => "dp-static",
        }
    }
}

impl std::str::FromStr for ChainPlacement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "policy" => Ok(Self::Policy),
            "dp-static" => Ok(Self::DpStatic),
            other => Err(format!("--chain-placement `{other}`: expected policy or dp-static")),
        }
    }
}

impl ChainSpec {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut parts = spec.split(',');
        let first = parts.next().unwrap_or("");
        let (name, url) = first.split_once('=').ok_or_else(|| format!("--chain `{spec}`: expected NAME=URL,PEER[,PEER...]"))?;
        check_peer_name(name).map_err(|e| format!("--chain: {e}"))?;
        let peers: Vec<String> = parts.map(str::to_string).collect();
        for peer in &peers {
            check_peer_name(peer).map_err(|e| format!("--chain: {e}"))?;
        }
        Ok(Self { name: name.into(), url: url.into(), peers, placement: ChainPlacement::default() })
    }
}

/// The chain being served: its scenario, the executor's index of its first worker, and the
/// estimate of every link after the device's.
pub struct ChainServing {
    pub scenario: ChainScenario,
    pub worker: usize,
    links: Mutex<Vec<LinkEstimator>>,
    prior_mbps: Vec<f64>,
    placement: ChainPlacement,
    /// Each node's queue wait as its last hop report gave it (the device's is read live).
    reported_wait_ms: Mutex<Vec<f64>>,
}

impl ChainServing {
    /// Checks the spec against `[[env.nodes]]` (the same names, in order) and loads the chain.
    pub fn new(spec: &ChainSpec, env: &EnvConfig, worker: usize) -> Result<Self, ServeError> {
        let names: Vec<&str> = env.nodes.iter().skip(1).map(|n| n.name.as_str()).collect();
        let given: Vec<&str> = std::iter::once(spec.name.as_str()).chain(spec.peers.iter().map(String::as_str)).collect();
        if names != given {
            return Err(ServeError::Config(format!("--chain names {} after the device, but [[env.nodes]] names {}", given.join(", "), names.join(", "))));
        }
        let scenario = ChainScenario::load(env)?.ok_or_else(|| ServeError::Config("--chain needs [[env.nodes]] in the config".into()))?;
        let links = (1..scenario.links.len()).map(|_| LinkEstimator::new(env.estimator())).collect();
        let prior_mbps = chain::mean_link_mbps(&scenario.links);
        let reported_wait_ms = Mutex::new(vec![0.0; scenario.names.len()]);
        Ok(Self { scenario, worker, links: Mutex::new(links), prior_mbps, placement: spec.placement, reported_wait_ms })
    }

    /// The chain workload serving `workload`, if the chain scenario has it.
    pub fn workload(&self, workload: Workload) -> Option<usize> {
        self.scenario.workloads.iter().position(|w| w.workload == workload)
    }

    /// Decides, runs and reports one request: the response's parameters and the execution.
    #[allow(clippy::too_many_arguments)]
    pub async fn serve(
        &self,
        executor: &PlanExecutor,
        policy: &Mutex<PolicyScheduler>,
        device: &Arc<DeviceState>,
        index: usize,
        input: WireTensor,
        slo_ms: Option<f64>,
        min_accuracy: Option<f64>,
    ) -> Result<(Map<String, Value>, Execution), ApiError> {
        let w = &self.scenario.workloads[index];
        let config = &self.scenario.config;
        let slo_ms = slo_ms.unwrap_or(w.mix.slo_ms);
        let floor = min_accuracy.unwrap_or(w.mix.min_accuracy);
        let first = executor.link_estimate(self.worker);
        let queues = device.queues();
        let estimates = |kind: Estimate| {
            let mut link_mbps = vec![kind.rate(&first).unwrap_or(self.prior_mbps[0])];
            link_mbps.extend(self.links.lock().expect("chain links").iter().zip(&self.prior_mbps[1..]).map(|(l, prior)| kind.rate(l).unwrap_or(*prior)));
            let mut wait_ms = self.reported_wait_ms.lock().expect("chain waits").clone();
            wait_ms[0] = queues.local_ahead_ms;
            Estimates { link_mbps, rtt_ms: config.links.iter().map(|l| l.rtt_ms).collect(), wait_ms, device_load: device.load() }
        };
        let e = estimates(Estimate::Harmonic);
        let plan = match self.placement {
            ChainPlacement::Policy => {
                let (last, robust) = (estimates(Estimate::Last), estimates(Estimate::Robust));
                let view = ChainView {
                    first_link: &first,
                    now: executor.now_s(),
                    utilization: device.utilization(),
                    queues,
                    estimates: [&e, &last, &robust],
                };
                let obs = chain::observe(&self.scenario, index, slo_ms, floor, &view);
                let mut scores = Vec::with_capacity(obs.n_plans);
                {
                    let scheduler = policy.lock().expect("policy lock");
                    let scorer = scheduler.policy.plain().map_err(ApiError::internal)?;
                    scorer.scores(&obs, &mut scores).map_err(ApiError::internal)?;
                }
                w.plans[chain::best_scored(&obs, &scores, &config.consensus)].clone()
            }
            ChainPlacement::DpStatic => {
                chain::dp_choice(w, config, &self.scenario.capacities_bytes, &e, slo_ms, floor)
                    // no variant at the floor fits: the most accurate that does
                    .or_else(|| chain::dp_choice(w, config, &self.scenario.capacities_bytes, &e, slo_ms, 0.0))
                    .ok_or_else(|| ApiError::internal(format!("no placement of `{}` fits the chain's memory", w.mix.name)))?
                    .0
            }
        };
        let variant = &w.variants[plan.variant];
        let predicted = chain::predict(&plan, variant, config, &e);
        let mut executable = plan.to_plan(&variant.name, &self.scenario.names);
        if let Plan::Chain { worker, .. } = &mut executable {
            *worker = self.worker;
        }
        // the deadline covers the remote path alone, as a split's does: the device's own
        // segment runs before it starts
        let deadline = config.deadline.remote(slo_ms, predicted.remote_path_ms());
        let (device_start, device_end) = plan.segment(0).unwrap_or((0, 0));
        let device_ms: f64 = variant.stage_ms[0][device_start..device_end].iter().map(|s| s.0).sum::<f64>() * config.contention.slowdown(e.device_load);
        let upload_bytes = if plan.last_node() > 0 { variant.boundary_bytes[device_end] } else { 0.0 };
        let queued = device.enqueue(device_ms, upload_bytes);
        let run = executor.execute(w.workload, &executable, input, deadline).await?;
        drop(queued);
        let b = &run.breakdown;
        // each later hop's upload is a sample of the link into it
        let now = executor.now_s();
        {
            let mut links = self.links.lock().expect("chain links");
            for (k, hop) in b.hops.iter().enumerate().skip(1) {
                if let Some(link) = links.get_mut(k - 1) {
                    let wire_ms = hop.upload_ms - config.links[k].rtt_ms;
                    link.record_transfer(now, hop.bytes_up, if wire_ms > 0.0 { wire_ms } else { f64::NAN });
                }
            }
            // hop k is node k + 1; a report's queue time is that node's wait now
            let mut waits = self.reported_wait_ms.lock().expect("chain waits");
            for (k, hop) in b.hops.iter().enumerate() {
                if let Some(wait) = waits.get_mut(k + 1) {
                    if hop.queue_ms.is_finite() {
                        *wait = hop.queue_ms.clamp(0.0, rlsched_env::config::MAX_MS);
                    }
                }
            }
        }
        let reward = config.reward.reward(variant.accuracy, b.total_ms, slo_ms, b.bytes_up as f64);
        let mut parameters = Map::new();
        parameters.insert("strategy".into(), json!(executable.kind()));
        parameters.insert("placement".into(), json!(self.placement.name()));
        parameters.insert("variant".into(), json!(variant.name));
        parameters.insert("plan".into(), json!(plan.label(variant, &self.scenario.names)));
        parameters.insert("bounds".into(), json!(plan.bounds));
        parameters.insert("predicted_ms".into(), json!(predicted.total_ms()));
        super::routes::insert_breakdown(&mut parameters, b, slo_ms, variant.accuracy);
        parameters.insert("reward".into(), json!(reward));
        parameters.insert("hops".into(), json!(serde_json::to_string(&b.hops).map_err(ApiError::internal)?));
        if let Some(reason) = &b.fallback {
            parameters.insert("fallback".into(), json!(reason));
        }
        Ok((parameters, run))
    }
}

/// The shared handle routes hold.
pub type Chain = Option<Arc<ChainServing>>;
