//! rlsched-agent owns learning: the burn policy/value network that scores candidate plans, and
//! PPO over the simulator. It depends on the environment's observation types, never on the
//! executor, and writes checkpoints and TensorBoard files. (The online learner is still to come.)

pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod inference;
pub mod metrics;
pub mod normalize;
pub mod policy;
pub mod ppo;

pub use config::{AgentConfig, ModelConfig, PpoConfig};
pub use policy::{Policy, PolicyScheduler};
