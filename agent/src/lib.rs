//! rlsched-agent owns learning: the burn policy/value network that scores candidate plans, and
//! PPO over the simulator. It depends on the environment's observation types, never on the
//! executor, and writes checkpoints and TensorBoard files. `update` is the PPO minibatch update that
//! offline training (`ppo`) and online learning while serving (`online`) share.

pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod inference;
pub mod metrics;
pub mod normalize;
pub mod online;
pub mod policy;
pub mod ppo;
pub mod update;

pub use config::{AgentConfig, ModelConfig, PpoConfig};
pub use online::OnlineConfig;
pub use policy::{Policy, PolicyScheduler};
