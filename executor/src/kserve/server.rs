//! The HTTP/1.1 connection loop every rlsched server runs (the worker and `rlsched serve`), with
//! each edge bounded: how many connections are open, how long a request head (or an idle
//! keep-alive connection) may take, and how long shutdown may drain.
//!
//! axum's own `serve` bounds none of these, and its graceful shutdown waits forever for a
//! client that holds a half-sent request. Here, shutdown stops accepting, answers every request
//! that has arrived (with `Connection: close`, so clients stop reusing the connection), closes a
//! connection once it has been idle for [`ServerLimits::drain_linger`], and cuts whatever is left
//! at [`ServerLimits::drain_timeout`]. Like mini-redis's `server::run`, [`serve`] takes a bound
//! listener and a shutdown future.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The connection-level bounds of a server. Each has a flag on `rlsched worker` and
/// `rlsched serve`; the README's limits table lists them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ServerLimits {
    /// Connections open at once; one past it is answered 503 and closed.
    pub max_connections: usize,
    /// Longest wait for a whole request head, and for the next request on an idle keep-alive
    /// connection: past it the connection is closed (slow heads, idle clients).
    pub header_timeout: Duration,
    /// Longest shutdown waits for requests in progress before it cuts their connections.
    pub drain_timeout: Duration,
    /// While draining, a connection idle this long is closed. A client on a busy keep-alive
    /// connection sends its next request well within it and gets it answered.
    pub drain_linger: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            drain_linger: Duration::from_secs(1),
        }
    }
}

/// Upper bounds on the limits themselves, so that a typo cannot ask for the impossible.
pub const MAX_CONNECTIONS: usize = 1 << 20;
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

impl ServerLimits {
    /// Checks every bound; the error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(format!("--max-connections must be in 1..={MAX_CONNECTIONS}, got {}", self.max_connections));
        }
        check_timeouts(&[
            ("--header-timeout-ms", self.header_timeout),
            ("--drain-timeout-ms", self.drain_timeout),
            ("--drain-linger-ms", self.drain_linger),
        ])
    }
}

/// Checks that every `(flag, value)` lies in 1 ms..=[`MAX_TIMEOUT`]; the error names the flag.
/// One rule for every timeout flag of the worker and `serve`.
pub fn check_timeouts(timeouts: &[(&str, Duration)]) -> Result<(), String> {
    for &(flag, value) in timeouts {
        if value.is_zero() || value > MAX_TIMEOUT {
            return Err(format!("{flag} must be in 1..={} ms, got {}", MAX_TIMEOUT.as_millis(), value.as_millis()));
        }
    }
    Ok(())
}

/// How a shutdown went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Connections still busy at the drain deadline, and cut.
    pub cut: usize,
}

/// Requests in progress on one connection, and when the last one ended.
struct Activity {
    in_progress: AtomicUsize,
    last_end: Mutex<Instant>,
}

struct InProgress(Arc<Activity>);

impl Activity {
    fn start(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        InProgress(self.clone())
    }

    /// How long the connection has been idle; `None` while a request is in progress.
    fn idle_for(&self) -> Option<Duration> {
        (self.in_progress.load(Ordering::SeqCst) == 0).then(|| self.last_end.lock().expect("activity lock").elapsed())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.last_end.lock().expect("activity lock") = Instant::now();
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module header).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<Drained> {
    let draining = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(limits.max_connections.clamp(1, MAX_CONNECTIONS)));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        connections.spawn(connection(stream, app.clone(), limits, stopped.clone(), draining.clone(), slot));
                    }
                    Err(_) => {
                        connections.spawn(refuse(stream, limits.max_connections));
                    }
                },
                // Out of file descriptors and the like: the listener is fine, so wait a moment
                // rather than spin on the same error.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    draining.store(true, Ordering::SeqCst);
    stop.send_replace(true);
    let deadline = tokio::time::sleep(limits.drain_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                let cut = connections.len();
                connections.shutdown().await;
                return Ok(Drained { cut });
            }
            next = connections.join_next() => if next.is_none() {
                return Ok(Drained { cut: 0 });
            },
        }
    }
}

/// One connection past `--max-connections`: a 503 that says why, then close.
async fn refuse(mut stream: TcpStream, max_connections: usize) {
    let body = format!("{{\"error\":\"server busy: all {max_connections} connections are open (--max-connections); retry later\"}}");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(response.as_bytes()).await.ok();
        stream.shutdown().await.ok();
    };
    tokio::time::timeout(Duration::from_secs(1), write).await.ok();
}

async fn connection(
    stream: TcpStream,
    app: Router,
    limits: ServerLimits,
    mut stopped: watch::Receiver<bool>,
    draining: Arc<AtomicBool>,
    _slot: OwnedSemaphorePermit,
) {
    stream.set_nodelay(true).ok();
    let activity = Arc::new(Activity { in_progress: AtomicUsize::new(0), last_end: Mutex::new(Instant::now()) });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            let working = activity.start();
            let draining = draining.clone();
            async move {
                let mut response = match app.oneshot(request.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if draining.load(Ordering::SeqCst) {
                    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                drop(working);
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped.wait_for(|stop| *stop) => {}
    }
    // Draining: keep answering while requests come, close once the connection has rested.
    loop {
        let wait = match activity.idle_for() {
            Some(idle) if idle >= limits.drain_linger => break,
            Some(idle) => limits.drain_linger - idle,
            None => limits.drain_linger,
        };
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    conn.as_mut().graceful_shutdown();
    conn.await.ok();
}
