//! The worker's edges are bounded: a body that stalls is answered 408 and gives its connection
//! back, a head that never ends is closed, connections past `max_connections` get a 503,
//! inferences past `max_queue` get a 503 instead of waiting without end, and shutdown drains
//! within its deadline even while a client holds a half-sent request.

use std::net::SocketAddr;
use std::time::Duration;

use rlsched_executor::kserve::http::BodyLimits;
use rlsched_executor::kserve::server::{Drained, ServerLimits};
use rlsched_executor::kserve::worker::{self, WorkerConfig};
use rlsched_executor::model::activation::WireData;
use rlsched_executor::{ExecError, WireTensor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[allow(dead_code)]
mod common;

/// Far above anything these tests wait for on a slow, loaded machine: only a hang reaches it.
const HANG: Duration = Duration::from_secs(120);

struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<Drained, ExecError>>,
}

async fn start(config: WorkerConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(worker::run(listener, config, async {
        stopped.await.ok();
    }));
    Running { addr, stop, task }
}

impl Running {
    async fn shut_down(self) -> Drained {
        self.stop.send(()).ok();
        tokio::time::timeout(HANG, self.task).await.expect("shutdown hung").unwrap().unwrap()
    }
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    tokio::time::timeout(HANG, stream.read_to_end(&mut reply)).await.expect("the server never closed the connection").ok();
    String::from_utf8_lossy(&reply).into_owned()
}

/// A head that declares a body of `length` bytes, and none of it.
fn head_without_body(length: usize) -> String {
    format!("POST /v2/models/digits-cnn/infer HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n")
}

fn digits() -> WireTensor {
    WireTensor::new(vec![1, 1, 8, 8], WireData::F32(vec![0.5; 64])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_408_and_a_stalled_head_is_closed() {
    let body = BodyLimits { idle_timeout: Duration::from_millis(300), ..BodyLimits::default() };
    let server = ServerLimits { header_timeout: Duration::from_millis(300), ..ServerLimits::default() };
    let worker = start(WorkerConfig { body, server, ..WorkerConfig::default() }).await;

    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut stream = TcpStream::connect(worker.addr).await.unwrap();
        stream.write_all(head_without_body(1000).as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    for stream in &mut stalled {
        let reply = read_to_close(stream).await;
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(reply.contains("--body-idle-timeout-ms"), "{reply}");
    }

    let mut slow_head = TcpStream::connect(worker.addr).await.unwrap();
    slow_head.write_all(b"POST /v2/models/digits-cnn/infer HTTP/1.1\r\nhost: test\r\n").await.unwrap();
    let reply = read_to_close(&mut slow_head).await;
    assert!(!reply.starts_with("HTTP/1.1 200"), "a head that never ended was served: {reply}");

    // the worker still serves
    let reply = common::client(worker.addr).infer("digits-cnn", "fp32", 0, &digits(), None).await.unwrap();
    assert_eq!(reply.output.shape, vec![1, 10]);
    assert_eq!(worker.shut_down().await, Drained { cut: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_limit_gets_a_503() {
    let server = ServerLimits { max_connections: 2, ..ServerLimits::default() };
    let worker = start(WorkerConfig { server, ..WorkerConfig::default() }).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(worker.addr).await.unwrap();
        // a whole request answered: the connection is surely accepted and counted
        stream.write_all(b"GET /v2/health/ready HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 256];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(stream);
    }
    let mut third = TcpStream::connect(worker.addr).await.unwrap();
    let reply = read_to_close(&mut third).await;
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
    assert!(reply.contains("--max-connections"), "{reply}");
    drop(open);
    assert_eq!(worker.shut_down().await, Drained { cut: 0 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_past_max_queue_gets_a_503_not_a_wait() {
    // each computation takes 100 times its time (seconds for mobilenetv2), so the first is
    // surely still running when the second arrives
    let worker = start(WorkerConfig { max_queue: 1, slowdown: 100.0, ..WorkerConfig::default() }).await;
    let client = common::client(worker.addr);
    let first = {
        let client = client.clone();
        tokio::spawn(async move { client.infer("mobilenetv2", "fp32", 0, &image(), None).await })
    };
    let deadline = tokio::time::Instant::now() + HANG;
    while client.stats().await.unwrap().in_flight == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the first inference never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = client.infer("digits-cnn", "fp32", 0, &digits(), None).await.unwrap_err().to_string();
    assert!(refused.contains("503") && refused.contains("--max-queue"), "{refused}");
    first.abort();
    worker.stop.send(()).ok();
}

fn image() -> WireTensor {
    WireTensor::new(vec![1, 3, 224, 224], WireData::U8(vec![128; 3 * 224 * 224])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_cuts_a_half_sent_request_at_the_deadline() {
    // an idle keep-alive connection does not hold shutdown up, however long the deadline
    let server = ServerLimits { drain_timeout: Duration::from_secs(3600), ..ServerLimits::default() };
    let worker = start(WorkerConfig { server, ..WorkerConfig::default() }).await;
    let mut idle = TcpStream::connect(worker.addr).await.unwrap();
    idle.write_all(b"GET /v2/health/ready HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(worker.shut_down().await, Drained { cut: 0 });
    assert_eq!(read_to_close(&mut idle).await, "", "the idle connection was closed");

    // a client that declared a body and sends none is cut at the drain deadline
    let body = BodyLimits { idle_timeout: Duration::from_secs(3600), total_timeout: Duration::from_secs(3600), ..BodyLimits::default() };
    // (a linger longer than the deadline: whether or not its head was parsed yet, the
    // connection is still open when the deadline comes)
    let server = ServerLimits { drain_timeout: Duration::from_millis(500), drain_linger: Duration::from_secs(3600), ..ServerLimits::default() };
    let worker = start(WorkerConfig { body, server, ..WorkerConfig::default() }).await;
    let mut half = TcpStream::connect(worker.addr).await.unwrap();
    // a whole request first: the connection is surely accepted before shutdown comes
    half.write_all(b"GET /v2/health/ready HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    let n = half.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    half.write_all(head_without_body(1000).as_bytes()).await.unwrap();
    half.write_all(b"{\"inputs\":").await.unwrap();
    assert_eq!(worker.shut_down().await, Drained { cut: 1 });
    assert!(!read_to_close(&mut half).await.starts_with("HTTP/1.1 200"));
}
