//! rlsched-executor owns everything that actually runs a model, in four parts:
//! - `model`: workloads as burn networks cut into stages, their compressed variants, int8
//!   intermediates;
//! - `profile`: the backend a stage runs on and the profiler that measures every stage;
//! - `kserve`: the worker server and its client (Open Inference Protocol, KServe V2 REST);
//! - `net`: bandwidth traces, the link emulator and the link estimator;
//!
//! plus `plan` (running a plan with fallback) and `monitor` (the device's own resources).
//!
//! Nothing here decides *which* plan to run; that is the scheduler's job (`rlsched-env`,
//! `rlsched-agent`). This crate only makes a plan happen and reports what it cost.

pub mod error;
pub mod kserve;
pub mod model;
pub mod monitor;
pub mod net;
pub mod plan;
pub mod profile;

pub use error::ExecError;
pub use model::activation::{Activation, DataType, WireTensor};
pub use model::network::{Network, NetworkCache, Stage};
pub use model::variant::Variant;
pub use model::workloads::{Workload, WorkloadSpec};
pub use profile::device::DeviceChoice;
