//! Measurement: the backend a network runs on, the profiler that times every stage, CPU-bound
//! co-runners for measuring contention, and OFA's
//! published latency tables turned into device profiles.

pub mod device;
pub mod latency_table;
pub mod profiler;
pub mod co_runners;
