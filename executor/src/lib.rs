//! rlsched-executor owns everything that actually runs a model: workloads as burn networks cut
//! into stages, their compressed variants, the backends they run on, the profiler that measures
//! them, and (for split and offload) the worker server, its client, the link emulator, the
//! resource monitor and plan execution with fallback.
//!
//! Nothing here decides *which* plan to run; that is the scheduler's job (`rlsched-env`,
//! `rlsched-agent`). This crate only makes a plan happen and reports what it cost.

pub mod activation;
pub mod client;
pub mod device;
pub mod error;
pub mod latency_table;
pub mod layers;
pub mod link;
pub mod monitor;
pub mod network;
pub mod plan;
pub mod profiler;
pub mod protocol;
pub mod quantize;
pub mod trace;
pub mod variant;
pub mod workloads;
pub mod worker;

pub use activation::{Activation, DataType, WireTensor};
pub use device::DeviceChoice;
pub use error::ExecError;
pub use network::{Network, NetworkCache, Stage};
pub use variant::Variant;
pub use workloads::{Workload, WorkloadSpec};
