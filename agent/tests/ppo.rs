//! GAE against hand-computed values, and a short PPO run on the bundled scenario that beats
//! the untrained policy.

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::Device;
use rlsched_agent::policy::{Policy, PolicyScheduler};
use rlsched_agent::ppo::{gae, train, EpisodeEnd};
use rlsched_agent::{ModelConfig, PpoConfig};
use rlsched_env::eval::evaluate;
use rlsched_env::schedulers::Scheduler;
use rlsched_env::{EnvConfig, Scenario};

#[test]
fn gae_matches_hand_computation() {
    // one env, three steps, the second ends an episode
    let rewards = [1.0, 2.0, 3.0];
    let values = [0.5, 1.0, 1.5];
    let dones = [false, true, false];
    let (gamma, lambda) = (0.9, 0.8);
    let (adv, ret) = gae(&rewards, &values, &dones, &[2.0], 1, gamma, lambda, EpisodeEnd::Termination);
    let d2 = 3.0 + 0.9 * 2.0 - 1.5; // 3.3
    let d1 = 2.0 - 1.0; // episode ended: no bootstrap
    let d0 = 1.0 + 0.9 * 1.0 - 0.5; // 1.4
    let a1 = d1;
    let a0 = d0 + gamma * lambda * a1;
    for (got, want) in adv.iter().zip([a0, a1, d2]) {
        assert!((got - want).abs() < 1e-12, "{adv:?}");
    }
    assert!((ret[0] - (a0 + 0.5)).abs() < 1e-12);
    // two envs interleaved step-major give the same per-env answers
    let (adv2, _) = gae(&[1.0, 1.0, 2.0, 2.0, 3.0, 3.0], &[0.5, 0.5, 1.0, 1.0, 1.5, 1.5], &[false, false, true, true, false, false], &[2.0, 2.0], 2, gamma, lambda, EpisodeEnd::Termination);
    assert!((adv2[0] - a0).abs() < 1e-12 && (adv2[1] - a0).abs() < 1e-12 && (adv2[4] - d2).abs() < 1e-12);
    // truncated: the step that ends the episode bootstraps from its own value, and still
    // nothing flows across the boundary
    let (adv3, _) = gae(&rewards, &values, &dones, &[2.0], 1, gamma, lambda, EpisodeEnd::Truncation);
    let t1 = 2.0 + 0.9 * 1.0 - 1.0;
    let t0 = d0 + gamma * lambda * t1;
    for (got, want) in adv3.iter().zip([t0, t1, d2]) {
        assert!((got - want).abs() < 1e-12, "{adv3:?}");
    }
}

fn scenario() -> Arc<Scenario> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = EnvConfig::in_repo(&root);
    Arc::new(Scenario::load(&config, &config.traces).unwrap())
}

fn mean_reward(scheduler: Box<dyn Scheduler>, validation: Arc<Scenario>) -> f64 {
    let mut list = vec![scheduler];
    evaluate(validation, &mut list, 10, 99, "fcc-val").unwrap().schedulers[0].mean_reward
}

#[test]
fn short_training_beats_the_untrained_policy() {
    let train_scenario = scenario();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let validation = Arc::new(Scenario::load(&train_scenario.config, &[root.join("data/traces/fcc-val")]).unwrap());
    let model = ModelConfig::default();
    let config = PpoConfig { total_steps: 40_960, ..PpoConfig::default() };
    let device = Device::flex();
    device.seed(5);
    let untrained = Policy::new(&model, rlsched_env::obs::state_dim(&train_scenario.config), &device);
    let before = mean_reward(Box::new(PolicyScheduler { policy: untrained, device: device.clone() }), validation.clone());
    let mut last_step = 0;
    let trained = train(train_scenario, &model, &config, None, |stats, _, _| {
        assert!(stats.global_step > last_step);
        last_step = stats.global_step;
        assert!(stats.policy_loss.is_finite() && stats.value_loss.is_finite() && stats.entropy >= 0.0);
    })
    .unwrap();
    assert_eq!(last_step, 40_960);
    let after = mean_reward(Box::new(PolicyScheduler { policy: trained.policy, device }), validation);
    assert!(after > before + 0.05, "trained {after:.3} vs untrained {before:.3}");
}

#[test]
fn checkpoint_round_trip_gives_identical_actions() {
    use rlsched_agent::checkpoint::{self, Sidecar};
    use rlsched_env::ReplayEnv;

    let scenario = scenario();
    let device = Device::flex();
    device.seed(11);
    let mut policy = Policy::new(&ModelConfig::default(), rlsched_env::obs::state_dim(&scenario.config), &device);
    // non-trivial observation statistics, which must survive the round trip
    let mut env = ReplayEnv::new(scenario.clone());
    env.reset_on(0, 42).unwrap();
    for _ in 0..50 {
        policy.normalizer.update(&[env.observation()]);
        let valid = env.observation().mask.iter().position(|&m| m).unwrap();
        env.step_in_place(valid).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("rlsched-ckpt-{}", std::process::id()));
    let sidecar = Sidecar::new(&policy, 123, 11, &scenario.config, scenario.max_plans, &ModelConfig::default(), serde_json::json!({"note": "test"}));
    checkpoint::save(&dir, &policy, &sidecar, None).unwrap();
    let (loaded, read) = checkpoint::load(&dir, &device).unwrap();
    assert_eq!(read, sidecar);
    assert_eq!(loaded.normalizer, policy.normalizer);
    let mut a = PolicyScheduler { policy, device: device.clone() };
    let mut b = PolicyScheduler { policy: loaded, device: device.clone() };
    let mut compared = 0;
    for seed in 0..3 {
        env.reset_on(seed, seed as u64).unwrap();
        while env.current().is_some() {
            let d = env.decision().unwrap();
            let (x, y) = (a.choose(&d), b.choose(&d));
            assert_eq!(x, y);
            env.step_in_place(x).unwrap();
            compared += 1;
        }
    }
    assert!(compared > 100);
    // a corrupt sidecar and a missing record are clear errors
    std::fs::write(dir.join(checkpoint::SIDECAR_FILE), "{ not json").unwrap();
    let err = checkpoint::load(&dir, &device).unwrap_err().to_string();
    assert!(err.contains("checkpoint.json") && err.contains("line 1"), "{err}");
    let err = checkpoint::load(&dir.join("missing"), &device).unwrap_err().to_string();
    assert!(err.contains("no such checkpoint"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn resume_continues_the_step_count() {
    use rlsched_agent::checkpoint::{self, Sidecar};
    let scenario = scenario();
    let model = ModelConfig::default();
    let first = PpoConfig { total_steps: 4096, ..PpoConfig::default() };
    let trained = train(scenario.clone(), &model, &first, None, |_, _, _| {}).unwrap();
    let dir = std::env::temp_dir().join(format!("rlsched-resume-{}", std::process::id()));
    let sidecar = Sidecar::new(&trained.policy, 4096, 1, &scenario.config, scenario.max_plans, &model, serde_json::Value::Null);
    checkpoint::save(&dir, &trained.policy, &sidecar, Some(trained.optimizer)).unwrap();
    let more = PpoConfig { total_steps: 8192, ..PpoConfig::default() };
    let mut steps = Vec::new();
    let mut losses = Vec::new();
    let resumed = train(scenario.clone(), &model, &more, Some(&dir), |s, _, _| {
        steps.push(s.global_step);
        losses.push(s.policy_loss);
    })
    .unwrap();
    assert_eq!(steps, vec![6144, 8192], "the step count continues from the checkpoint");
    assert!(losses.iter().all(|l| l.is_finite()));
    // it trained: the resumed policy is not the loaded one
    let device = Device::flex();
    let (loaded, _) = checkpoint::load(&dir, &device).unwrap();
    let mut env = rlsched_env::ReplayEnv::new(scenario.clone());
    env.reset_on(0, 3).unwrap();
    let resumed = resumed.policy;
    let a: Vec<f32> = loaded.forward(&loaded.batch(&[env.observation()], &device)).0.into_data().try_to_vec().unwrap();
    let b: Vec<f32> = resumed.forward(&resumed.batch(&[env.observation()], &device)).0.into_data().try_to_vec().unwrap();
    assert_ne!(a, b);
    // the observation statistics carried on and kept counting
    assert!(resumed.normalizer.state.count > loaded.normalizer.state.count);
    assert!(checkpoint::load_optimizer(&dir).unwrap().is_some(), "Adam's state was saved");
    // resuming a finished run is a clear error
    let err = train(scenario, &model, &first, Some(&dir), |_, _, _| {}).err().unwrap().to_string();
    assert!(err.contains("already at step 4096"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
