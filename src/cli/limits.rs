//! The flags that bound a server's edges, shared by `rlsched worker` and `rlsched serve` (the
//! README's limits table lists them with their defaults).

use std::time::Duration;

use rlsched_executor::kserve::http::BodyLimits;
use rlsched_executor::kserve::server::ServerLimits;
use rlsched_executor::kserve::worker::DEFAULT_MEMORY_BYTES;

#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Largest request body accepted, in bytes (413 past it).
    #[arg(long, default_value_t = 64 << 20)]
    pub max_body_bytes: usize,
    /// Longest wait for a request body's next bytes, ms (408 past it).
    #[arg(long, default_value_t = 10_000)]
    pub body_idle_timeout_ms: u64,
    /// Longest a whole request body may take to arrive, ms (408 past it).
    #[arg(long, default_value_t = 120_000)]
    pub body_timeout_ms: u64,
    /// Memory all request bodies and their decoding may hold at once, in bytes (503 past it).
    #[arg(long, default_value_t = DEFAULT_MEMORY_BYTES)]
    pub max_memory_bytes: usize,
    /// Requests admitted at once, running or waiting, counted once their body has arrived
    /// (503 past it).
    #[arg(long, default_value_t = 64)]
    pub max_queue: usize,
    /// Connections open at once (one more is answered 503 and closed).
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Longest wait for a whole request head, or for the next request on an idle keep-alive
    /// connection, ms (the connection closes).
    #[arg(long, default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// On SIGTERM or ctrl-c: longest wait for requests in progress, ms; then they are cut.
    #[arg(long, default_value_t = 30_000)]
    pub drain_timeout_ms: u64,
}

impl LimitArgs {
    pub fn body(&self) -> BodyLimits {
        BodyLimits {
            max_bytes: self.max_body_bytes,
            idle_timeout: Duration::from_millis(self.body_idle_timeout_ms),
            total_timeout: Duration::from_millis(self.body_timeout_ms),
        }
    }

    pub fn server(&self) -> ServerLimits {
        ServerLimits {
            max_connections: self.max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            ..ServerLimits::default()
        }
    }
}
