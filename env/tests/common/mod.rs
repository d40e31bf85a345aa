//! Helpers shared by the live tests.

use std::net::SocketAddr;
use std::path::PathBuf;

use rlsched_env::config::WorkloadMix;
use rlsched_env::EnvConfig;
use rlsched_executor::kserve::worker::{self, WorkerConfig};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts a worker on 127.0.0.1:0 on `runtime`; returns its address.
pub fn start_worker(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    runtime.spawn(worker::run(listener, WorkerConfig::default(), std::future::pending()));
    addr
}

/// The default scenario with MobileNetV2 alone: it has local, int8 split and offload plans.
pub fn mobilenet_config() -> EnvConfig {
    let mut config = EnvConfig::default();
    config.profiles_dir = repo().join("data/profiles");
    config.workloads = vec![WorkloadMix { name: "mobilenetv2".into(), weight: 1.0, slo_ms: 150.0, min_accuracy: 0.0, onnx: None }];
    config
}
