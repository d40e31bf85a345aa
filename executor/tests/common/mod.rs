//! The worker as the executor's tests start it, and a raw JSON POST.

use std::net::SocketAddr;
use std::time::Duration;

use rlsched_executor::kserve::client::WorkerClient;
use rlsched_executor::kserve::worker::{self, WorkerConfig};
use tokio::sync::oneshot;

/// A worker on 127.0.0.1:0, stopped when dropped.
pub struct TestWorker {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

pub async fn start_worker(config: WorkerConfig) -> TestWorker {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        worker::run(listener, config, async {
            stopped.await.ok();
        })
        .await
        .unwrap();
    });
    TestWorker { addr, stop: Some(stop) }
}

pub fn client(addr: SocketAddr) -> WorkerClient {
    WorkerClient::new(&format!("http://{addr}"), None, Duration::from_secs(60)).unwrap()
}

pub async fn post(addr: SocketAddr, model: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v2/models/{model}/infer"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let json = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}
