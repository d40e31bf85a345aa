//! `rlsched bench decision`: what one scheduling decision costs the device. One request with
//! 16 plans, decided over and over: build its observation from the device's view (as the
//! simulator and `LiveEnv` do), normalise, score every plan, mask, argmax. Beside it the same
//! decision through burn's forward pass, and the floor: the scorer alone on the 16 normalised
//! rows, a hand-written matrix-vector pass.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rlsched_agent::PolicyScheduler;
use rlsched_env::schedulers::Scheduler;
use rlsched_env::{Decision, Env, Obs, ReplayEnv, Scenario};
use rlsched_executor::profile::profiler::percentile;

/// The plan count the benchmark is specified for.
const PLANS: usize = 16;
/// Requests decided (by the policy) before the measured one, so the link estimator has samples
/// and the queues are not empty, as in a running episode.
const WARM_REQUESTS: usize = 20;

/// Times `f` repeatedly for `seconds` (after a short warm-up); per-call µs, sorted.
fn time(seconds: f64, mut f: impl FnMut()) -> Vec<f64> {
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    samples
}

fn line(what: &str, samples: &[f64]) {
    println!(
        "  {what:<62} p50 {:>8.2} µs  p99 {:>8.2} µs  ({} runs)",
        percentile(samples, 0.50),
        percentile(samples, 0.99),
        samples.len()
    );
}

pub fn run(config: &crate::config::TrainConfig, config_dir: &std::path::Path, checkpoint: Option<PathBuf>, seconds: f64) -> Result<()> {
    let checkpoint = checkpoint.unwrap_or_else(|| config_dir.join("checkpoints/default"));
    let device = burn::tensor::Device::flex();
    let (policy, sidecar) = rlsched_agent::checkpoint::load(&checkpoint, &device)
        .with_context(|| format!("loading the policy from {}", checkpoint.display()))?;
    if sidecar.state_dim != rlsched_env::obs::state_dim(&config.env) {
        bail!("checkpoint {} expects {} state features, this config gives {}", checkpoint.display(), sidecar.state_dim, rlsched_env::obs::state_dim(&config.env));
    }

    // No bundled workload has 16 plans at the default split_points, so take the workload with
    // the most plans and offer more split points until it has 16: every plan is a real one
    // (a variant run locally, split at a Pareto cut, or offloaded).
    let mut env = config.env.clone();
    let base = Scenario::load(&env, &env.traces)?;
    let widest = base.workloads.iter().max_by_key(|w| w.candidates.len()).context("no workload")?;
    let mut mix = widest.mix.clone();
    mix.weight = 1.0;
    env.workloads = vec![mix];
    let mut scenario = Scenario::load(&env, &env.traces)?;
    while scenario.max_plans < PLANS && env.split_points < 8 {
        env.split_points += 1;
        scenario = Scenario::load(&env, &env.traces)?;
    }
    let scenario = Arc::new(scenario);
    let model = &scenario.workloads[0];
    let kinds = |k: &str| model.candidates.iter().filter(|c| c.kind() == k).count();
    println!(
        "decision: {} with env.split_points={} (default config: {}): {} plans ({} local, {} split, {} offload), {} from the default config's workloads",
        model.mix.name,
        env.split_points,
        config.env.split_points,
        model.candidates.len(),
        kinds("local"),
        kinds("split"),
        kinds("offload"),
        if base.max_plans == model.candidates.len() { "as many as the widest" } else { "more than any" }
    );

    let mut scheduler = PolicyScheduler { policy, device };
    let mut replay = ReplayEnv::new(scenario.clone());
    replay.compute_oracle = false;
    // the first request after the warm-up whose plans are all valid (the worker is up)
    let mut found = None;
    'episodes: for episode in 0..50 {
        replay.reset_on(episode, 1 + episode as u64)?;
        let mut decided = 0;
        while let Some(decision) = replay.decision() {
            if decided >= WARM_REQUESTS && decision.obs.mask[..decision.obs.n_plans].iter().all(|m| *m) {
                found = Some((episode, decided));
                break 'episodes;
            }
            let action = scheduler.choose(&decision);
            replay.step(action)?;
            decided += 1;
        }
    }
    let Some((episode, index)) = found else { bail!("no request with all {} plans valid in 50 episodes", scenario.max_plans) };
    let valid = replay.observation().mask.iter().filter(|m| **m).count();
    println!(
        "request {index} of episode {episode} on `{}` (×{}), after {index} decisions by the policy; {valid} of its {} plans valid",
        replay.trace().name,
        env.bandwidth_scale,
        replay.observation().n_plans
    );
    let plain = scheduler.policy.plain().map_err(|e| anyhow::anyhow!("plain-f32 scorer: {e}"))?.clone();
    println!(
        "policy {} (scorer {}), host: {}",
        checkpoint.display(),
        plain.mlp().widths().iter().map(|w| w.to_string()).collect::<Vec<_>>().join("→"),
        rlsched_executor::profile::profiler::host_description()
    );

    let base_decision = replay.decision().context("the measured request")?;
    let mut obs = Obs::new(&scenario.config, scenario.max_plans);
    replay.observe_into(&mut obs);
    if &obs != replay.observation() {
        bail!("ReplayEnv::observe_into built a different observation from the simulator's");
    }
    let burn_choice = scheduler.choose_burn(&base_decision);
    let plain_choice = scheduler.choose(&base_decision);
    if burn_choice != plain_choice {
        bail!("the plain-f32 path chose plan {plain_choice}, burn chose {burn_choice}");
    }

    let full = time(seconds, || {
        replay.observe_into(&mut obs);
        let decision = Decision { obs: &obs, ..replay.decision().expect("the measured request") };
        std::hint::black_box(scheduler.choose(&decision));
    });
    line("observation + normalise + score + mask + argmax (plain f32)", &full);
    let burn = time(seconds, || {
        replay.observe_into(&mut obs);
        let decision = Decision { obs: &obs, ..replay.decision().expect("the measured request") };
        std::hint::black_box(scheduler.choose_burn(&decision));
    });
    line("the same through burn flex (PolicyScheduler::choose_burn)", &burn);
    let (state, rows) = plain.normalized(replay.observation())?;
    let mut out = Vec::with_capacity(PLANS);
    let floor = time(seconds, || {
        plain.mlp().forward_shared(std::hint::black_box(&state), std::hint::black_box(&rows), &mut out);
        std::hint::black_box(&out);
    });
    line(&format!("floor: the scorer MLP alone on the {valid} normalised rows"), &floor);
    let observe = time(seconds, || {
        replay.observe_into(&mut obs);
        std::hint::black_box(&obs);
    });
    line("observation alone (ReplayEnv::observe_into)", &observe);
    println!("both paths choose plan {plain_choice} ({:?})", model.candidates[plain_choice].plan);
    Ok(())
}
