#![allow(dead_code)]
//! Helpers shared by the binary's end-to-end tests.

use std::path::PathBuf;

/// A fresh temporary folder holding a copy of the default `train.toml` whose data paths point
/// at the repository, so a run's checkpoints and event files land in the folder, not the repo.
pub fn private_config(name: &str) -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("rlsched-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(format!("{root}/train.toml")).unwrap().replace("\"data/", &format!("\"{root}/data/"));
    std::fs::write(dir.join("train.toml"), text).unwrap();
    dir
}

pub mod curves;

/// Things the serving tests share: a scenario config, an in-process `serve`, a worker process.
#[allow(dead_code)]
pub mod serve {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    use rlsched::serve::{ServeConfig, ServeSummary};

    /// The repository's train.toml with `sets` applied (`--set` syntax), e.g. the workloads to serve.
    pub fn env(sets: &[&str]) -> rlsched_env::EnvConfig {
        let root = env!("CARGO_MANIFEST_DIR");
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        rlsched::config::load(&Path::new(root).join("train.toml"), true, &sets).unwrap().env
    }

    /// Serving digits-cnn alone (the tiny workload: tests stay fast on a slow machine).
    pub const DIGITS: &str = r#"env.workloads=[{name="digits-cnn",weight=1.0,slo_ms=50.0,min_accuracy=0.5}]"#;

    pub fn config(env: rlsched_env::EnvConfig) -> ServeConfig {
        ServeConfig::new(env, Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/default"))
    }

    pub struct Running {
        pub url: String,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<ServeSummary, rlsched::serve::ServeError>>,
    }

    impl Running {
        /// Stops accepting, drains, and returns the summary.
        pub async fn stop(mut self) -> ServeSummary {
            self.stop.take().unwrap().send(()).ok();
            self.task.await.unwrap().unwrap()
        }
    }

    /// Starts `serve` on 127.0.0.1 port 0 and waits until it answers.
    pub async fn start(config: ServeConfig) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rlsched::serve::run(listener, config, async move {
            stopped.await.ok();
        }));
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if client.get(format!("{url}/v2/health/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(!task.is_finished(), "serve stopped while starting");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Running { url, stop: Some(stop), task }
    }

    /// One digits-cnn image as a JSON infer request, with extra request `parameters`.
    pub fn digits_request(parameters: serde_json::Value) -> serde_json::Value {
        let pixels: Vec<f32> = (0..64).map(|i| (i % 17) as f32 / 16.0).collect();
        serde_json::json!({
            "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": pixels}],
            "parameters": parameters,
        })
    }

    /// The value of one Prometheus sample (`name{labels}` exactly as the text has it), 0 if absent.
    /// A Prometheus sample of serve's `/metrics` (summed over its labels).
    pub async fn metric(client: &reqwest::Client, url: &str, name: &str) -> f64 {
        let text = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        sample(&text, name)
    }

    /// Waits on an event (polled every 20 ms), failing after two minutes.
    pub async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !done().await {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .sum()
    }

    /// A child process killed when dropped, so a failing test leaves no worker or link behind.
    pub struct Killed(pub Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }

    /// Starts `rlsched link` replaying `trace` in front of `upstream` (`host:port`): the child,
    /// its URL, and when its trace's clock started.
    pub fn spawn_link(trace: &Path, upstream: &str) -> (Child, String, std::time::Instant) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rlsched"))
            .args(["link", "--trace", trace.to_str().unwrap(), "--listen", "127.0.0.1:0", "--upstream", upstream])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        // the trace's clock starts when the link starts, just before it prints
        let started = std::time::Instant::now();
        let address = line.split_whitespace().nth(4).unwrap_or_else(|| panic!("no address in {line:?}")).to_string();
        (child, format!("http://{address}"), started)
    }

    /// Starts `rlsched worker` on `listen` and returns it with the URL it printed.
    pub fn spawn_worker(listen: &str, extra: &[&str]) -> (Child, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rlsched"))
            .args(["worker", "--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        (child, url)
    }
}

/// Driving a served workload with a seeded request stream, for the experiments.
pub mod stream {
    use rlsched_executor::Workload;
    use serde_json::{json, Value};

    use crate::common::curves::Point;

    /// The `index`-th request of the seeded stream for `workload`, as a JSON infer body.
    pub fn request(workload: Workload, index: usize) -> Vec<u8> {
        let input = workload.example_input(1000 + index as u64);
        serde_json::to_vec(&json!({
            "inputs": [{"name": "input", "shape": input.shape, "datatype": input.datatype().name(),
                        "data": rlsched_executor::kserve::protocol::json_values(&input)}],
        }))
        .unwrap()
    }

    /// Sends request `index` and returns what serving reported of it.
    pub async fn send(client: &reqwest::Client, url: &str, workload: Workload, index: usize, run: &str) -> Point {
        let response = client
            .post(format!("{url}/v2/models/{}/infer", workload.name()))
            .header("content-type", "application/json")
            .body(request(workload, index))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let p: Value = response.json::<Value>().await.unwrap()["parameters"].clone();
        assert!(p["decision_inputs"]["predicted_rewards"].is_object(), "no decision inputs in {p}");
        Point {
            run: run.into(),
            index,
            plan: format!("{}/{}", p["strategy"].as_str().unwrap(), p["variant"].as_str().unwrap()),
            latency_ms: p["total_ms"].as_f64().unwrap(),
            reward: p["reward"].as_f64().unwrap(),
            inputs: p["decision_inputs"].to_string(),
        }
    }
}
