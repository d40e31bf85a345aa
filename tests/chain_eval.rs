//! The three-node chain scenario (configs/chain3.toml) in the simulator: no plan any scheduler
//! chooses ever needs more memory on a node than its R_i (recomputed here from the profile
//! files, not through the simulator's own accounting), VGG-16 fp32 fits only split across
//! nodes, and the topology's config is checked field by field.

use std::path::{Path, PathBuf};

use rlsched_env::chain::{self, ChainScenario};

fn chain_config(sets: &[String]) -> rlsched_env::EnvConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/chain3.toml");
    rlsched::config::load(&path, true, sets).unwrap().env
}

/// A stage profile as the file holds it: weights and output sizes per stage.
struct Sizes {
    input_bytes: f64,
    params: Vec<f64>,
    outputs: Vec<f64>,
}

fn sizes(profiles: &Path, workload: &str, variant: &str) -> Sizes {
    let text = std::fs::read_to_string(profiles.join(format!("{workload}-cpu2.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let v = json["variants"].as_array().unwrap().iter().find(|v| v["name"] == variant).unwrap();
    let stages = v["stages"].as_array().unwrap();
    Sizes {
        input_bytes: json["input_bytes"].as_f64().unwrap(),
        params: stages.iter().map(|s| s["param_bytes"].as_f64().unwrap()).collect(),
        outputs: stages.iter().map(|s| s["output_bytes"].as_f64().unwrap()).collect(),
    }
}

/// Bytes a node holding stages `start..end` needs: their weights and the largest tensor among
/// its input and their outputs (a relay, `start == end`, its input; the device's empty
/// segment nothing).
fn needed(s: &Sizes, node: usize, start: usize, end: usize) -> f64 {
    if node == 0 && start == end {
        return 0.0;
    }
    let input = if start == 0 { s.input_bytes } else { s.outputs[start - 1] };
    let weights: f64 = s.params[start..end].iter().sum();
    weights + s.outputs[start..end].iter().copied().fold(input, f64::max)
}

#[test]
fn no_chosen_plan_ever_exceeds_any_nodes_memory() {
    let config = chain_config(&["env.requests_per_episode=100".into()]);
    let profiles = config.profiles_dir.clone();
    let scenario = ChainScenario::load(&config).unwrap().expect("a chain");
    let results = chain::evaluate(&scenario, 4, 7).unwrap();
    let mut checked = 0;
    let mut vgg_fp32 = 0;
    for result in &results {
        assert_eq!(result.chosen.len(), 400, "{}", result.scheduler);
        for (workload, plan) in &result.chosen {
            let w = &scenario.workloads[*workload];
            let variant = &w.variants[plan.variant].name;
            let s = sizes(&profiles, &w.mix.name, variant);
            for (node, cfg) in config.nodes.iter().enumerate() {
                if let Some((start, end)) = plan.segment(node) {
                    let need = needed(&s, node, start, end);
                    assert!(need <= cfg.memory_mb * 1e6, "{}: {} {variant} {plan:?} needs {need} B on {}, R_i {} MB", result.scheduler, w.mix.name, cfg.name, cfg.memory_mb);
                }
            }
            vgg_fp32 += (w.mix.name == "vgg16" && variant == "fp32") as usize;
            checked += 1;
        }
    }
    assert_eq!(checked, 400 * results.len());
    assert!(vgg_fp32 > 0, "no scheduler ran VGG-16 fp32: the capacity check never met the model it binds");
}

#[test]
fn vgg16_fp32_fits_only_split_across_nodes() {
    let config = chain_config(&[]);
    let scenario = ChainScenario::load(&config).unwrap().unwrap();
    let vgg = scenario.workloads.iter().find(|w| w.mix.name == "vgg16").unwrap();
    let fp32 = vgg.variants.iter().position(|v| v.name == "fp32").unwrap();
    let caps = &scenario.capacities_bytes;
    let v = &vgg.variants[fp32];
    let stages = v.stages();
    let whole = |node: usize| {
        let mut bounds = vec![0; node + 1];
        bounds.push(stages);
        chain::ChainPlan { variant: fp32, bounds }
    };
    assert!(!whole(0).fits(v, caps), "VGG-16 fp32 fits the device alone");
    assert!(!whole(1).fits(v, caps), "VGG-16 fp32 fits the edge alone");
    // without the cloud: only a split between the device and the edge
    let two = &caps[..2];
    let e = chain::Estimates { link_mbps: vec![20.0], rtt_ms: vec![5.0], wait_ms: vec![0.0; 2], device_load: 0.0 };
    let (plan, _) = chain::optimal_placement(fp32, v, &config, two, &e).expect("the split fits");
    assert_eq!(plan.computing_nodes(), [0, 1], "{plan:?}");
    assert!(plan.fits(v, two));
    let candidates: Vec<_> = vgg.plans.iter().filter(|p| p.variant == fp32).collect();
    assert!(candidates.iter().all(|p| p.fits(v, caps) && p.last_node() > 0), "{candidates:?}");
    assert!(candidates.iter().any(|p| p.computing_nodes() == [0, 1]), "no device+edge split among {candidates:?}");
    // and the plan maps onto a route of named peers the executor takes
    let names = scenario.names.clone();
    for p in &vgg.plans {
        if let rlsched_executor::plan::Plan::Chain { device_end, hops, .. } = p.to_plan("fp32", &names) {
            rlsched_executor::kserve::chain::check_route(&hops, device_end, stages).unwrap();
        }
    }
}

#[test]
fn a_workload_no_placement_fits_is_an_error_naming_it() {
    let mut config = chain_config(&[]);
    config.workloads.retain(|w| w.name == "vgg16");
    for node in &mut config.nodes {
        node.memory_mb = 20.0;
    }
    let error = ChainScenario::load(&config).err().expect("nothing fits 20 MB").to_string();
    assert!(error.contains("no plan of `vgg16` fits"), "{error}");
}

#[test]
fn the_default_scenario_has_no_chain() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("train.toml");
    let config = rlsched::config::load(&path, true, &[]).unwrap().env;
    assert!(config.nodes.is_empty() && config.links.is_empty());
    assert!(ChainScenario::load(&config).unwrap().is_none());
}

#[test]
fn bad_topologies_are_refused_naming_the_field() {
    let dir = std::env::temp_dir().join(format!("rlsched-chain-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/chain3.toml")).unwrap().replace("\"../data/", &format!("\"{}/data/", env!("CARGO_MANIFEST_DIR")));
    for (edit, needle) in [
        (base.replace("time_factor = 1.0", "time_factor = 1.0\nspeed = 2"), "unknown field `speed`"),
        (base.replace("memory_mb = 512.0", "memory_mb = 0.0"), "env.nodes[1].memory_mb"),
        (base.replace("name = \"edge\"", "name = \"cloud\""), "names two nodes"),
        (base.replace("scale = 5.0", "scale = -1.0"), "env.links[1].scale"),
        (base.replace("rtt_ms = 40.0", "rtt_ms = 1e9"), "env.links[1].rtt_ms"),
        (format!("{base}\n[[env.links]]\ntraces = [\"x\"]\nscale = 1.0\nrtt_ms = 1.0\n"), "need 2 links"),
    ] {
        let path: PathBuf = dir.join("chain.toml");
        std::fs::write(&path, edit).unwrap();
        let error = format!("{:#}", rlsched::config::load(&path, true, &[]).expect_err("refused"));
        assert!(error.contains(needle), "{needle}: {error}");
    }
}

/// `[env.outages]` reaches the chain's links and `[env.deadline]` bounds a remote path stuck in
/// one: with 30 s outages every 2 minutes and no deadline, a scheduler that uses the chain
/// waits out outages (no fallback ever); with the deadline, its requests past it are finished
/// on the device and its p99 falls to under half of what it was. (The worst request may still
/// wait long: a VGG-16 fp32 request has no local plan, and a remote path predicted slow gets a
/// deadline of twice its prediction.)
#[test]
fn deadlines_bound_a_chain_stuck_in_an_outage() {
    let run = |slo_factor: &str| {
        let config = chain_config(&[
            "env.requests_per_episode=200".into(),
            "env.outages.period_s=120".into(),
            format!("env.deadline.slo_factor={slo_factor}"),
        ]);
        let scenario = ChainScenario::load(&config).unwrap().expect("a chain");
        chain::evaluate(&scenario, 4, 11).unwrap()
    };
    let (without, with) = (run("0"), run("1"));
    let worst = |r: &chain::ChainResult| r.latencies_ms.iter().copied().fold(0.0, f64::max);
    let p99 = |r: &chain::ChainResult| {
        let mut sorted = r.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[(sorted.len() - 1) * 99 / 100]
    };
    for r in &without {
        assert_eq!(r.fallbacks, 0, "{}: a fallback without deadlines", r.scheduler);
    }
    let chained = |results: &[chain::ChainResult]| results.iter().find(|r| r.scheduler == "mpc-chain").cloned().expect("mpc-chain");
    let (before, after) = (chained(&without), chained(&with));
    let remote = before.chosen.iter().filter(|(_, p)| p.last_node() > 0).count();
    assert!(remote > 0, "mpc-chain never used the chain: the outage test tests nothing");
    assert!(worst(&before) > 10_000.0, "no request of mpc-chain waited out an outage without deadlines: {:.0} ms at worst", worst(&before));
    assert!(after.fallbacks > 0, "with deadlines no request of mpc-chain fell back");
    assert!(p99(&after) < p99(&before) / 2.0, "the deadline did not bound the tail: p99 {:.0} ms, {:.0} without", p99(&after), p99(&before));
}

/// The shipped policy runs on the chain with no retraining: every plan it picks fits every
/// node's R_i and meets its request's floor, and reading the chain's plans through the default
/// observation's features it earns more than running locally (features that meant nothing
/// would send requests where mpc-device-edge sends them, far below local).
#[test]
fn the_shipped_policy_runs_on_the_chain_zero_shot() {
    let config = chain_config(&["env.requests_per_episode=100".into()]);
    let scenario = ChainScenario::load(&config).unwrap().expect("a chain");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/default");
    let (policy, _) = rlsched_agent::checkpoint::load(&dir, &burn::tensor::Device::flex()).expect("the shipped checkpoint");
    let scorer = policy.plain().expect("its scorer");
    let results = chain::evaluate_with_policy(&scenario, 6, 5, Some(scorer as &dyn chain::PlanScorer)).unwrap();
    let by_name = |name: &str| results.iter().find(|r| r.scheduler == name).unwrap_or_else(|| panic!("no {name} row"));
    let policy = by_name("policy");
    assert_eq!(policy.chosen.len(), 600);
    assert_eq!(policy.over_capacity, 0);
    for (workload, plan) in &policy.chosen {
        let w = &scenario.workloads[*workload];
        assert!(w.variants[plan.variant].accuracy >= w.mix.min_accuracy, "{} {plan:?} below its floor", w.mix.name);
    }
    let local = by_name("local");
    assert!(policy.mean() > local.mean(), "the policy {:.3} against local {:.3}", policy.mean(), local.mean());
}
