//! The sim-to-real check: one seeded request sequence run twice, live (burn inference here,
//! real HTTP to an in-process `rlsched worker`, through the in-process link emulator replaying
//! a bundled trace with an RTT) and simulated (`ReplayEnv` staged with the same arrival times
//! and workloads, the same trace and RTT), compared plan by plan. A policy trained in the
//! simulator is only as good as this match.
//!
//! Requests run one at a time, each arriving an idle gap after the previous reply: the live
//! executor does not serialise concurrent local work (the simulator does), and here the worker
//! shares the device's cores, which its profile does not model. Both are fine as long as no two
//! requests overlap, and the comparison is then of the model of one request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::kserve::worker::{self, WorkerConfig};
use rlsched_executor::net::link::{self, LinkConfig};
use rlsched_executor::plan::{Breakdown, Plan, PlanExecutor};
use rlsched_executor::monitor::runnable_others;
use rlsched_executor::profile::co_runners::CoRunners;
use rlsched_executor::profile::profiler::{self, Profile};
use rlsched_executor::{Activation, DeviceChoice, ExecError, Network, Workload};

use crate::candidates::candidates;
use crate::config::WorkloadMix;
use crate::request::{Request, RequestWorld};
use crate::{Env, EnvConfig, EnvError, ReplayEnv, Scenario};

mod report;

/// Instants the load is read at before each live request (1 ms apart).
const LOAD_READS: usize = 5;
pub use report::{PlanComparison, SimToReal};

/// Where the simulator's stage latencies come from.
#[derive(Clone, Debug, PartialEq)]
pub enum ProfileSource {
    /// `<workload>-<suffix>.json` under `data/profiles` (e.g. `cpu2`), for the device and the
    /// worker alike: tests the committed profiles too, so it only holds on the machine (and
    /// build) they were measured with.
    Committed(String),
    /// Profile fp32 here, during the check: after each live request, one pass over every stage
    /// of its workload after an idle gap (the device's profile: its requests arrive after idle
    /// spells too) and one straight after (the worker's: its requests come off the network,
    /// whose packets keep the CPU awake). Device and worker are both this machine, so the check
    /// tests the simulator's model whatever the machine's speed, and a machine whose speed
    /// drifts (a shared VM) moves both sides alike.
    Measured,
}

#[derive(Clone, Debug)]
pub struct SimToRealConfig {
    /// The repository root: profiles and traces are read from its `data/`.
    pub root: PathBuf,
    pub workloads: Vec<Workload>,
    /// Measured requests per plan and workload (after one warm-up each).
    pub requests_per_plan: usize,
    /// A Pensieve or Mahimahi trace, relative to `root`, and its rate multiplier.
    pub trace: PathBuf,
    pub bandwidth_scale: f64,
    pub rtt_ms: f64,
    /// Idle time between a reply and the next arrival (and before each measured device pass),
    /// drawn uniformly from this range (s): requests land at different points of the trace, and
    /// find the device idle, as sporadic requests do.
    pub idle_gap_s: (f64, f64),
    pub seed: u64,
    pub profiles: ProfileSource,
    /// The loaded mode: this many CPU-bound processes run beside every live request (and the
    /// worker's profile passes, since the worker shares these cores), and pause while the
    /// device's passes are measured. The simulator then sees the co-runners' load and slows
    /// local stages by its contention model, so the check tests that model. Other work on the
    /// machine is not ours to stop: it slows the interleaved passes and the requests alike.
    /// Measured profiles only.
    pub co_runners: usize,
}

impl SimToRealConfig {
    /// MobileNetV2 and ResNet-18 over an FCC validation trace ×5 (4.7–11.8 Mbit/s, so uploads
    /// take tens to hundreds of ms) with a 40 ms RTT, profiles measured during the check.
    pub fn bundled(root: PathBuf) -> Self {
        Self {
            root,
            workloads: vec![Workload::MobileNetV2, Workload::ResNet18],
            requests_per_plan: 15,
            trace: PathBuf::from("data/traces/fcc-val/trace_942092_http---www.facebook.com"),
            bandwidth_scale: 5.0,
            rtt_ms: 40.0,
            idle_gap_s: (0.1, 0.3),
            seed: 7,
            profiles: ProfileSource::Measured,
            co_runners: 0,
        }
    }
}

/// One request of the sequence: its workload, its plan (an index into the compared plans), the
/// idle gap before it, and the seed of its input.
struct Planned {
    workload: usize,
    plan: usize,
    gap_s: f64,
    input_seed: u64,
}

/// What the live run measured: each request's arrival on the link's trace clock (s), the
/// monitor's load then (runnable other tasks per core) and its breakdown, and the stage-time
/// passes that followed each request.
struct LiveRun {
    requests: Vec<(f64, f64, Breakdown)>,
    /// The device's fp32 network of each workload.
    networks: Vec<Arc<Network>>,
    passes: Vec<Passes>,
}

/// One pass over a request's workload's stages as the device (after an idle gap) and one as
/// the worker (straight after), ms per stage.
struct Passes {
    workload: usize,
    device: Vec<f64>,
    worker: Vec<f64>,
}

/// Runs the check. Errors: unreadable profiles or trace, a worker or link that cannot start,
/// or a live request that fell back to local (its latency would compare nothing).
pub fn run(config: &SimToRealConfig) -> Result<SimToReal, EnvError> {
    let started = Instant::now();
    let (low, high) = config.idle_gap_s;
    if !(low >= 0.0 && high >= low && high < 3600.0) {
        return Err(EnvError::Config(format!("idle_gap_s must be 0 ≤ low ≤ high < 3600 s, got {:?}", config.idle_gap_s)));
    }
    if config.requests_per_plan == 0 {
        return Err(EnvError::Config("requests_per_plan must be at least 1".into()));
    }
    if config.co_runners > 0 && config.profiles != ProfileSource::Measured {
        return Err(EnvError::Config("the loaded mode measures its profiles: co_runners needs ProfileSource::Measured".into()));
    }
    let profiles_dir = profiles_dir(config)?;
    let mut scenario = scenario_of(config, &profiles_dir)?;
    let plans = chosen_plans(&scenario)?;
    let mut rng = SmallRng::seed_from_u64(config.seed);
    let mut sequence: Vec<Planned> = (0..plans.len())
        .flat_map(|plan| std::iter::repeat_n(plan, config.requests_per_plan))
        .map(|plan| Planned { workload: plans[plan].0, plan, gap_s: 0.0, input_seed: 0 })
        .collect();
    // interleaved, so that drift (the trace, the machine) does not fall on one plan
    sequence.shuffle(&mut rng);
    for planned in &mut sequence {
        planned.gap_s = rng.random_range(low..=high);
        planned.input_seed = rng.random();
    }
    let measure = config.profiles == ProfileSource::Measured;
    let live = run_live(config, &scenario, &plans, &sequence, measure)?;
    if measure {
        remodel(&mut scenario, &live, Duration::from_secs_f64((low + high) / 2.0))?;
    }
    if profiles_dir != config.root.join("data/profiles") {
        // the folder only held this check's plans; a failed removal loses nothing
        std::fs::remove_dir_all(&profiles_dir).ok();
    }
    let profiles = match &config.profiles {
        ProfileSource::Committed(suffix) => format!("{suffix} (committed), device and worker"),
        ProfileSource::Measured => format!(
            "measured during the check ({} passes of each: device after an idle gap, worker straight after; each request simulated with the pass after it)",
            live.passes.len()
        ),
    };
    let scenario = Arc::new(scenario);
    let sim = run_sim(&scenario, &plans, &sequence, &live, config.co_runners, &mut rng)?;
    let rows = plans
        .iter()
        .enumerate()
        .map(|(index, (w, plan))| {
            let pick = |runs: &mut dyn Iterator<Item = &Breakdown>| {
                sequence.iter().zip(runs).filter(|(p, _)| p.plan == index).map(|(_, b)| b.clone()).collect()
            };
            PlanComparison {
                workload: scenario.workloads[*w].mix.name.clone(),
                plan: plan.clone(),
                live: pick(&mut live.requests.iter().map(|r| &r.2)),
                sim: pick(&mut sim.iter()),
            }
        })
        .collect();
    let total = |p: &Profile| p.variant("fp32").map_or(f64::NAN, |v| v.total_latency_ms());
    let profile_ms = scenario.workloads.iter().map(|m| (m.mix.name.clone(), total(&m.device), total(&m.worker))).collect();
    Ok(SimToReal {
        rows,
        profile_ms,
        trace: format!("{} ×{}", config.trace.display(), config.bandwidth_scale),
        mean_mbps: scenario.traces[0].mean_mbps(),
        rtt_ms: config.rtt_ms,
        profiles,
        co_runners: config.co_runners,
        mean_load: live.requests.iter().map(|r| r.1).sum::<f64>() / live.requests.len().max(1) as f64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Where the scenario's profiles are read: the committed ones, or, when a workload has none
/// (an imported model) and the profiles are to be measured anyway, a folder beside them that
/// adds one measured here first (three fp32 passes). It only gives the plans: the check then
/// simulates from the passes timed beside the live requests, as for every workload.
fn profiles_dir(config: &SimToRealConfig) -> Result<PathBuf, EnvError> {
    let committed = config.root.join("data/profiles");
    let file = |dir: &Path, w: &Workload| dir.join(format!("{}-cpu2.json", w.name()));
    let missing = |w: &Workload| !file(&committed, w).is_file();
    if config.profiles != ProfileSource::Measured || !config.workloads.iter().any(missing) {
        return Ok(committed);
    }
    let dir = std::env::temp_dir().join(format!("rlsched-sim2real-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| ExecError::io(&dir, e))?;
    for workload in &config.workloads {
        let target = file(&dir, workload);
        match missing(workload) {
            false => std::fs::copy(file(&committed, workload), &target).map(drop),
            true => {
                let profile = profiler::profile(*workload, &["fp32".into()], DeviceChoice::Flex, 3, Duration::ZERO, |_| {})?;
                let json = serde_json::to_string(&profile).map_err(|e| EnvError::Config(format!("{}: {e}", target.display())))?;
                std::fs::write(&target, json)
            }
        }
        .map_err(|e| ExecError::io(&target, e))?;
    }
    Ok(dir)
}

/// The scenario of the check: every plan valid, the probe off (the live side sends none), the
/// committed profiles (`cpu2` when they are to be measured: they give the plans).
fn scenario_of(config: &SimToRealConfig, profiles_dir: &Path) -> Result<Scenario, EnvError> {
    let suffix = match &config.profiles {
        ProfileSource::Committed(suffix) => suffix.clone(),
        ProfileSource::Measured => "cpu2".to_string(),
    };
    let mut env = EnvConfig {
        profiles_dir: profiles_dir.to_path_buf(),
        device_profile: suffix.clone(),
        worker_profile: suffix,
        bandwidth_scale: config.bandwidth_scale,
        rtt_ms: config.rtt_ms,
        device_memory_mb: 1e6,
        worker_down_probability: 0.0,
        workloads: config
            .workloads
            .iter()
            .map(|w| WorkloadMix { name: w.name().into(), weight: 1.0, slo_ms: 1e3, min_accuracy: 0.0, onnx: None })
            .collect(),
        ..EnvConfig::default()
    };
    env.probe.bytes = 0;
    // the check compares the model of a request, not the deadline's cut (the live side has none)
    env.deadline.slo_factor = 0.0;
    Scenario::load(&env, &[config.root.join(&config.trace)])
}

/// Replaces each workload's profiles with the passes measured live (fp32 only); the plans stay
/// the same, since a split's cuts depend on sizes alone (stage times only order them). The
/// simulation reproduces each request's own pass; these profiles give the table its totals and
/// the draws their scale.
fn remodel(scenario: &mut Scenario, live: &LiveRun, idle: Duration) -> Result<(), EnvError> {
    let (split_points, int8) = (scenario.config.split_points, scenario.config.int8_intermediates);
    for (w, model) in scenario.workloads.iter_mut().enumerate() {
        let workload: Workload = model.mix.name.parse()?;
        let spec = workload.spec()?;
        let measured = |passes: &[Vec<f64>], idle: Duration| {
            let variant = profiler::variant_profile(&live.networks[w], spec.variant("fp32")?, passes)?;
            Profile::measured(workload, DeviceChoice::Flex, idle, vec![variant])
        };
        let (device_passes, worker_passes): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
            live.passes.iter().filter(|p| p.workload == w).map(|p| (p.device.clone(), p.worker.clone())).unzip();
        // the committed profile's measured contention curve is the model under test
        let curve = std::mem::take(&mut model.device.contention);
        model.device = Profile { contention: curve, ..measured(&device_passes, idle)? };
        model.worker = measured(&worker_passes, Duration::ZERO)?;
        let contention = scenario.config.contention.model_for(&model.device);
        model.candidates = candidates(&model.device, &model.worker, split_points, int8).into_iter().map(|c| c.with_contention(contention)).collect();
    }
    scenario.max_plans = scenario.workloads.iter().map(|w| w.candidates.len()).max().unwrap_or(0);
    Ok(())
}

/// Per workload, the plans compared: fp32 local, its first int8 split, fp32 offload.
fn chosen_plans(scenario: &Scenario) -> Result<Vec<(usize, Plan)>, EnvError> {
    let mut plans = Vec::new();
    for (w, model) in scenario.workloads.iter().enumerate() {
        let find = |wanted: &dyn Fn(&Plan) -> bool, what: &str| {
            model
                .candidates
                .iter()
                .find(|c| c.plan.variant() == "fp32" && wanted(&c.plan))
                .map(|c| (w, c.plan.clone()))
                .ok_or_else(|| EnvError::Config(format!("{}: no fp32 {what} candidate", model.mix.name)))
        };
        plans.push(find(&|p| matches!(p, Plan::Local { .. }), "local")?);
        plans.push(find(&|p| matches!(p, Plan::Split { int8: true, .. }), "int8 split")?);
        plans.push(find(&|p| matches!(p, Plan::Offload { .. }), "offload")?);
    }
    Ok(plans)
}

/// Runs the sequence for real. `measure`: after each request, time its workload's stages
/// once after an idle gap and once straight after.
fn run_live(
    config: &SimToRealConfig,
    scenario: &Scenario,
    plans: &[(usize, Plan)],
    sequence: &[Planned],
    measure: bool,
) -> Result<LiveRun, EnvError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| EnvError::Config(format!("starting the async runtime: {e}")))?;
    let bind = || runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).map_err(|e| ExecError::io("127.0.0.1:0", e));
    let worker_listener = bind()?;
    let worker_addr = worker_listener.local_addr().map_err(|e| ExecError::io("worker listener", e))?;
    let link_listener = bind()?;
    let link_addr = link_listener.local_addr().map_err(|e| ExecError::io("link listener", e))?;
    // both serve until the runtime is dropped, when this function returns
    runtime.spawn(worker::run(worker_listener, WorkerConfig::default(), std::future::pending()));
    let link_config = LinkConfig { trace: scenario.traces[0].clone(), rtt_ms: config.rtt_ms, upstream: worker_addr.to_string() };
    // the link's trace starts when it starts: arrivals are measured from here (the task is
    // polled within a fraction of a millisecond; the trace's segments last seconds)
    let trace_start = Instant::now();
    runtime.spawn(link::run(link_listener, link_config, std::future::pending()));
    let client = WorkerClient::new(&format!("http://{link_addr}"), None, Duration::from_secs(60))?;
    let executor = PlanExecutor::new(DeviceChoice::Flex, vec![client])?;
    let device = DeviceChoice::Flex.device()?;
    let workloads = scenario
        .workloads
        .iter()
        .map(|m| m.mix.name.parse::<Workload>().map_err(EnvError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let execute = |planned: &Planned| -> Result<Breakdown, EnvError> {
        let (workload, plan) = (workloads[planned.workload], &plans[planned.plan].1);
        let input = workload.example_input(planned.input_seed);
        let run = runtime.block_on(executor.execute(workload, plan, input, None))?;
        match run.breakdown.fallback {
            Some(why) => Err(EnvError::Config(format!("{} {plan:?} fell back to local: {why}", workload.name()))),
            None => Ok(run.breakdown),
        }
    };
    // warm-up: builds each network on both sides and opens the connection, which real
    // devices do once, not per request, and the simulator does not model
    for (plan, (workload, _)) in plans.iter().enumerate() {
        execute(&Planned { workload: *workload, plan, gap_s: 0.0, input_seed: 0 })?;
    }
    // started after the warm-up (building networks is not what is compared), killed when this
    // function returns, on an error too
    let mut co_runners = CoRunners::start(config.co_runners)?;
    let mut live = LiveRun {
        requests: Vec::new(),
        networks: workloads.iter().map(|&w| executor.network(w, "fp32")).collect::<Result<_, _>>()?,
        passes: Vec::new(),
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    for planned in sequence {
        std::thread::sleep(Duration::from_secs_f64(planned.gap_s));
        let arrival = trace_start.elapsed().as_secs_f64();
        // as serving reads it: the mean of a few instants' counts
        let read_load = || {
            (0..LOAD_READS)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(1));
                    runnable_others().unwrap_or(0.0)
                })
                .sum::<f64>()
                / LOAD_READS as f64
                / cores
        };
        // Other work on this machine (builds beside the check) slows the interleaved passes and
        // the requests alike, and so cancels; what the simulator is given is the co-runners'
        // load, which the passes do not have. The monitor's reading is reported beside it.
        let load = read_load();
        live.requests.push((arrival, load, execute(planned)?));
        if measure {
            let (w, gap) = (planned.workload, Duration::from_secs_f64(planned.gap_s));
            let first = Activation::from_wire(&workloads[w].example_input(planned.input_seed), &device)?;
            // the device alone: its profile is what the contention model scales
            co_runners.pause(true)?;
            let device_pass = profiler::time_stages(&live.networks[w], &first, &device, gap)?;
            co_runners.pause(false)?;
            let worker = profiler::time_stages(&live.networks[w], &first, &device, Duration::ZERO)?;
            live.passes.push(Passes { workload: w, device: device_pass, worker });
        }
    }
    Ok(live)
}

/// The same sequence simulated: the live arrivals, the same workloads and plans, idle device
/// and worker. Each request's compute is the pass measured right after it where there is one
/// (its stage times given to the simulator as its noise draws), so that what is compared is the
/// simulator's composition of a request (queues, link, round trip, sizes); a machine whose speed
/// moves between requests (another build beside the check: its load comes in bursts of seconds)
/// then moves both sides alike. Committed profiles: drawn from the profiles.
fn run_sim(
    scenario: &Arc<Scenario>,
    plans: &[(usize, Plan)],
    sequence: &[Planned],
    live: &LiveRun,
    co_runners: usize,
    rng: &mut SmallRng,
) -> Result<Vec<Breakdown>, EnvError> {
    let passes = (live.passes.len() == sequence.len()).then_some(&live.passes);
    let live = &live.requests;
    let index = |planned: &Planned| {
        let (w, plan) = &plans[planned.plan];
        scenario.workloads[*w]
            .candidates
            .iter()
            .position(|c| &c.plan == plan)
            .ok_or_else(|| EnvError::Config(format!("{plan:?} is not a plan of the measured profiles")))
    };
    let mut requests = Vec::with_capacity(sequence.len());
    let load = co_runners as f64 / std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let load = &load;
    // the draw that makes the simulator's stage time the measured one
    let exact = |measured: &[f64], stats: &[(f64, f64)]| -> Vec<f64> {
        measured.iter().zip(stats).map(|(&ms, &(mean, std))| if std > 0.0 { (ms - mean) / std } else { 0.0 }).collect()
    };
    for (k, (planned, (arrival, _, _))) in sequence.iter().zip(live).enumerate() {
        let candidate = &scenario.workloads[planned.workload].candidates[index(planned)?];
        let (device_noise, worker_noise) = match passes {
            Some(passes) => (exact(&passes[k].device, &candidate.device_stages), exact(&passes[k].worker, &candidate.worker_stages)),
            None => {
                let mut draws = || (0..candidate.stages).map(|_| rng.sample(StandardNormal)).collect::<Vec<f64>>();
                (draws(), draws())
            }
        };
        let world = RequestWorld { time_s: *arrival, device_load: *load, worker_queue: 0.0, worker_up: true, device_noise, worker_noise };
        requests.push(Request { workload: planned.workload, observed_load: *load, observed_utilization: load.min(1.0), world });
    }
    let mut env = ReplayEnv::new(scenario.clone());
    env.compute_oracle = false;
    env.restart(requests);
    // restart keeps the order: the live arrivals increase
    sequence.iter().map(|planned| Ok(env.step(index(planned)?)?.info.outcome)).collect()
}
