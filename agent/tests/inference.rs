//! The plain-f32 decision path against burn's forward pass: the same scores (to 1e-5
//! relative) and the same choice on real observations of the simulator, for the shipped
//! policy, an untrained one, and one of another hidden width.

use std::path::PathBuf;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::Device;
use rlsched_agent::inference::{InferenceError, PlainMlp, PlainScorer};
use rlsched_agent::policy::{Policy, PolicyScheduler};
use rlsched_agent::ModelConfig;
use rlsched_env::schedulers::Scheduler;
use rlsched_env::{Env, EnvConfig, Obs, ReplayEnv, Scenario};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The validation traces under the default config, with more split points than the default
/// so requests of up to 16 plans occur.
fn scenario(split_points: usize) -> Arc<Scenario> {
    let root = root();
    let config = EnvConfig { split_points, ..EnvConfig::in_repo(&root) };
    Arc::new(Scenario::load(&config, &config.validation_traces).unwrap())
}

/// Real observations: several episodes, each request decided by the scheduler itself, so the
/// queues and measurements are the ones the policy's own choices produce.
fn observations(scenario: Arc<Scenario>, scheduler: &mut PolicyScheduler, episodes: usize) -> Vec<Obs> {
    let mut env = ReplayEnv::new(scenario);
    env.compute_oracle = false;
    let mut all = Vec::new();
    for episode in 0..episodes {
        env.reset_on(episode, 7 + episode as u64).unwrap();
        while let Some(decision) = env.decision() {
            all.push(decision.obs.clone());
            let action = scheduler.choose(&decision);
            env.step(action).unwrap();
        }
    }
    all
}

/// 1e-5 relative; for scores below 1 in size, 1e-5 absolute (the two paths sum in different
/// orders, and a relative bound means nothing near zero).
fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1.0)
}

/// Two choices agree, or are a near-tie: the scores differ in the last bits between the paths,
/// so an untrained scorer's plans that tie to within `close` may fall either way.
fn assert_same_choice(plain: Option<usize>, burn: Option<usize>, burn_scores: &[f32]) {
    if let (Some(p), Some(b)) = (plain, burn) {
        assert!(p == b || close(burn_scores[p], burn_scores[b]), "plain chose {p}, burn {b}: {burn_scores:?}");
    } else {
        assert_eq!(plain, burn);
    }
}

/// Scores and choices agree on every observation; returns how many observations were checked
/// and the largest plan count seen.
fn assert_same(policy: Policy, scenario: Arc<Scenario>, episodes: usize) -> (usize, usize) {
    let device = Device::flex();
    let mut scheduler = PolicyScheduler { policy, device };
    let observations = observations(scenario.clone(), &mut scheduler, episodes);
    let plain = scheduler.policy.plain().expect("the scorer reads").clone();
    let mut env = ReplayEnv::new(scenario);
    env.compute_oracle = false;
    let (mut scores, mut checked, mut widest) = (Vec::new(), 0, 0);
    for obs in &observations {
        plain.scores(obs, &mut scores).unwrap();
        let burn = scheduler.burn_scores(obs);
        assert_eq!(scores.len(), obs.n_plans);
        for (i, (&p, &b)) in scores.iter().zip(&burn).enumerate() {
            if obs.mask[i] {
                assert!(close(p, b), "plan {i}: plain {p} burn {b}");
            } else {
                assert_eq!(p, f32::NEG_INFINITY);
            }
        }
        let best = |s: &[f32]| (0..obs.n_plans).filter(|&i| obs.mask[i]).fold(None, |b: Option<usize>, i| match b {
            Some(j) if s[j] >= s[i] => Some(j),
            _ => Some(i),
        });
        assert_same_choice(best(&scores), best(&burn), &burn);
        checked += 1;
        widest = widest.max(obs.n_plans);
    }
    // the choice through the Scheduler trait (plain) equals burn's on a fresh episode
    env.reset_on(99, 99).unwrap();
    while let Some(decision) = env.decision() {
        let choice = scheduler.choose(&decision);
        // choose_burn's own steps, so burn's forward pass runs once for both the choice and the tie check
        let burn = scheduler.burn_scores(decision.obs);
        assert_same_choice(Some(choice), Some(rlsched_agent::policy::best_allowed(&decision, &burn)), &burn);
        env.step(choice).unwrap();
    }
    (checked, widest)
}

#[test]
fn shipped_policy_scores_and_chooses_as_burn_does() {
    let device = Device::flex();
    let (policy, _) = rlsched_agent::checkpoint::load(&root().join("checkpoints/default"), &device).unwrap();
    let (checked, widest) = assert_same(policy, scenario(3), 4);
    assert!(checked >= 400, "{checked}");
    assert_eq!(widest, 16, "the 16-plan requests are among those checked");
}

#[test]
fn untrained_policies_of_other_widths_match_too() {
    let state_dim = rlsched_env::obs::state_dim(&EnvConfig::default());
    for hidden in [24, 64, 96] {
        let model = ModelConfig { hidden, ..ModelConfig::default() };
        let policy = Policy::new(&model, state_dim, &Device::flex());
        let plain = PlainScorer::new(&policy.scorer, &policy.normalizer).unwrap();
        assert_eq!(plain.mlp().widths(), vec![state_dim + rlsched_env::obs::PLAN_FEATURES, hidden, hidden, 1]);
        let (checked, _) = assert_same(policy, scenario(2), 1);
        assert!(checked > 0);
    }
}

#[test]
fn the_greedy_prior_scores_alike_on_both_paths_and_leads_to_mpcs_choice() {
    let state_dim = rlsched_env::obs::state_dim(&EnvConfig::default());
    for relative in [false, true] {
        let policy = Policy::new(&ModelConfig { greedy_prior: 100.0, greedy_prior_relative: relative, ..ModelConfig::default() }, state_dim, &Device::flex());
        let (checked, _) = assert_same(policy, scenario(2), 1);
        assert!(checked > 0);
    }
    // an untrained scorer's outputs are small: a heavy prior makes the choice the plan with the
    // highest (normalised, clipped) mpc reward, up to the scorer's small differences
    let policy = Policy::new(&ModelConfig { greedy_prior: 100.0, ..ModelConfig::default() }, state_dim, &Device::flex());
    let mut scheduler = PolicyScheduler { policy, device: Device::flex() };
    let mut env = ReplayEnv::new(scenario(2));
    env.compute_oracle = false;
    env.reset_on(5, 5).unwrap();
    let (mut decided, mut departed) = (0, 0);
    while let Some(decision) = env.decision() {
        let obs = decision.obs;
        let feature = |i: usize| obs.plans[i * rlsched_env::obs::PLAN_FEATURES + rlsched_env::obs::MPC_REWARD_FEATURE].clamp(-10.0, 10.0);
        let best = (0..obs.n_plans).filter(|&i| obs.mask[i]).map(feature).fold(f32::MIN, f32::max);
        let choice = scheduler.choose(&decision);
        assert!(obs.mask[choice]);
        if feature(choice) < best - 0.05 {
            departed += 1;
        }
        decided += 1;
        env.step(choice).unwrap();
    }
    assert!(decided > 50 && departed == 0, "{departed} of {decided} choices departed from the prior's");
}

#[test]
fn mismatched_inputs_are_errors() {
    let config = EnvConfig::default();
    let state_dim = rlsched_env::obs::state_dim(&config);
    let policy = Policy::new(&ModelConfig::default(), state_dim, &Device::flex());
    // the value network reads [state ⊕ pooled plan] too, but the normaliser of a policy with a
    // longer history does not fit this scorer
    let other = rlsched_agent::normalize::ObsNormalizer::new(state_dim + 3, 10.0);
    assert!(matches!(PlainScorer::new(&policy.scorer, &other), Err(InferenceError::InputWidth { .. })));
    let plain = PlainScorer::new(&policy.scorer, &policy.normalizer).unwrap();
    let short = Obs::new(&EnvConfig { history: config.history + 1, ..config }, 4);
    assert!(matches!(plain.scores(&short, &mut Vec::new()), Err(InferenceError::StateWidth { .. })));
    // a module with no Linear layer, and one with parameters outside any Linear
    assert!(matches!(PlainMlp::from_module(&burn::nn::Relu::new()), Err(InferenceError::NoLayers)));
    let norm = burn::nn::LayerNormConfig::new(4).init(&Device::flex());
    assert!(matches!(PlainMlp::from_module(&norm), Err(InferenceError::Layer { .. })));
}


#[test]
fn a_clone_reads_its_own_weights_again() {
    let state_dim = rlsched_env::obs::state_dim(&EnvConfig::default());
    let policy = Policy::new(&ModelConfig::default(), state_dim, &Device::flex());
    assert_eq!(format!("{:?}", policy.inference), "InferenceCache(empty)");
    policy.plain().expect("a Linear/tanh scorer passes the probe check");
    assert_eq!(format!("{:?}", policy.inference), "InferenceCache(built)");
    // a clone (as `valid()` makes for validation during training) may carry other weights
    // later, so it must not inherit the copy
    assert_eq!(format!("{:?}", policy.clone().inference), "InferenceCache(empty)");
    assert_eq!(format!("{:?}", policy.valid().inference), "InferenceCache(empty)");
}

/// `[env.consensus]`: with a margin, the shipped policy never takes a plan that another valid
/// plan beats by more than the margin under all three estimates, on both decision paths; the
/// veto changes some of its choices, and with the margin at 0 (off) none.
#[test]
fn the_consensus_veto_keeps_the_policy_off_plans_every_estimate_rejects() {
    use rlsched_env::obs::{PLAN_FEATURES, REWARD_FEATURES};
    let device = Device::flex();
    let (policy, _) = rlsched_agent::checkpoint::load(&root().join("checkpoints/default"), &device).unwrap();
    let mut scheduler = PolicyScheduler { policy, device };
    let margin = 1.0_f32;
    let run = |scheduler: &mut PolicyScheduler, veto: f64| {
        let root = root();
        let mut config = EnvConfig::in_repo(&root);
        config.consensus.margin = veto;
        let scenario = Arc::new(Scenario::load(&config, &config.validation_traces).unwrap());
        let mut env = ReplayEnv::new(scenario);
        env.compute_oracle = false;
        let mut choices = Vec::new();
        for episode in 0..6 {
            env.reset_on(episode, 11 + episode as u64).unwrap();
            while let Some(decision) = env.decision() {
                let obs = decision.obs;
                let rewards = |i: usize| &obs.plans[i * PLAN_FEATURES..(i + 1) * PLAN_FEATURES][REWARD_FEATURES];
                let choice = scheduler.choose(&decision);
                assert_eq!(choice, scheduler.choose_burn(&decision), "both paths apply the veto alike");
                assert!(obs.mask[choice]);
                let beats = |j: usize, k: usize| obs.mask[j] && rewards(j).iter().zip(rewards(k)).all(|(r, c)| *r > c + margin);
                let beaten_by_any = |k: usize| (0..obs.n_plans).any(|j| j != k && beats(j, k));
                let beaten = beaten_by_any(choice);
                choices.push((choice, beaten));
                // training's rollouts (`in_training`) mask exactly the plans the veto forbids
                let mut allowed = obs.mask.clone();
                rlsched_agent::policy::mask_vetoed(obs, &decision.config.consensus, &mut allowed);
                for k in 0..obs.n_plans {
                    assert_eq!(allowed[k], obs.mask[k] && (veto == 0.0 || !beaten_by_any(k)), "plan {k}");
                }
                assert!(allowed[choice], "the decision takes a plan the rollouts may sample");
                // the same step for both runs: the unvetoed choice drives neither
                env.step(decision.best_valid(|i, _| rewards(i)[0] as f64)).unwrap();
            }
        }
        choices
    };
    let vetoed = run(&mut scheduler, margin as f64);
    let free = run(&mut scheduler, 0.0);
    assert!(vetoed.iter().all(|&(_, beaten)| !beaten), "a vetoed plan was chosen");
    assert!(free.iter().any(|&(_, beaten)| beaten), "off, the policy takes some plan every estimate rejects");
    let changed = vetoed.iter().zip(&free).filter(|(a, b)| a.0 != b.0).count();
    assert!(changed > 0 && changed < vetoed.len(), "{changed} of {} choices changed", vetoed.len());
}
