//! Measurement: the backend a network runs on, the profiler that times every stage, and OFA's
//! published latency tables turned into device profiles.

pub mod device;
pub mod latency_table;
pub mod profiler;
