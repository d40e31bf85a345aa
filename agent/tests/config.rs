//! `[agent]` and `[online]` bound every size: a value that would overflow a product of sizes or
//! exhaust memory is refused naming its key and its bound, never a panic or an abort.

use rlsched_agent::{AgentConfig, OnlineConfig};

/// `num_envs = num_steps = 2^32` used to overflow computing the batch ("attempt to multiply with
/// overflow" at the first `batch_size()`), and `hidden` or `num_envs` of 10^9 to abort on a
/// 416 GB allocation: `validate` accepted every size above zero.
#[test]
fn every_agent_size_has_a_bound_named_in_its_error() {
    type Edit = fn(&mut AgentConfig);
    let cases: [(Edit, &str, &str); 9] = [
        (|c| c.model.hidden = 1_000_000_000, "agent.model.hidden", "1..=4096"),
        (|c| c.ppo.total_steps = usize::MAX, "agent.ppo.total_steps", "..="),
        (|c| c.ppo.num_envs = 1_000_000_000, "agent.ppo.num_envs", "1..=1024"),
        (|c| c.ppo.num_steps = usize::MAX, "agent.ppo.num_steps", "..="),
        (|c| (c.ppo.num_envs, c.ppo.num_steps) = (1024, 131_072), "agent.ppo.num_envs × agent.ppo.num_steps", "at most 262144"),
        (|c| c.ppo.num_minibatches = 4096, "agent.ppo.num_minibatches", "1..=2048"),
        (|c| c.ppo.update_epochs = usize::MAX, "agent.ppo.update_epochs", "..="),
        (|c| c.ppo.num_envs = 0, "agent.ppo.num_envs", "1..="),
        (|c| c.model.hidden = 0, "agent.model.hidden", "1..="),
    ];
    for (edit, key, bound) in cases {
        let mut config = AgentConfig::default();
        edit(&mut config);
        let err = config.validate().unwrap_err();
        assert!(err.contains(key) && err.contains(bound), "{key}: {err}");
    }
    // the product that used to overflow: refused by the first bound it breaks, and
    // `batch_size` itself saturates rather than panics
    let mut config = AgentConfig::default();
    (config.ppo.num_envs, config.ppo.num_steps) = (1 << 32, 1 << 32);
    assert!(config.validate().unwrap_err().contains("agent.ppo.num_envs"));
    assert_eq!(config.ppo.batch_size(), usize::MAX);
    assert_eq!(AgentConfig::default().validate(), Ok(()));
}

#[test]
fn every_online_size_has_a_bound_named_in_its_error() {
    type Edit = fn(&mut OnlineConfig);
    let cases: [(Edit, &str); 4] = [
        (|c| c.checkpoint_every = usize::MAX, "online.checkpoint_every"),
        (|c| c.max_pending = usize::MAX, "online.max_pending"),
        (|c| c.update_every = usize::MAX, "online.update_every"),
        (|c| c.reward_window = usize::MAX, "online.reward_window"),
    ];
    for (edit, key) in cases {
        let mut config = OnlineConfig::default();
        edit(&mut config);
        let err = config.validate().unwrap_err();
        assert!(err.contains(key) && err.contains("..="), "{key}: {err}");
    }
    assert_eq!(OnlineConfig::default().validate(), Ok(()));
}
