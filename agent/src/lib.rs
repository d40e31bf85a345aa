//! rlsched-agent will own the burn policy/value network, PPO, the online learner, checkpoints
//! and metric sinks (issue 5). Nothing is built here yet.
