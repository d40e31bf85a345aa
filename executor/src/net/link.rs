//! `rlsched link`: a user-space link emulator in the way Mahimahi works. It is a TCP proxy that
//! delays each direction's bytes so that they leave no faster than the trace allows at each
//! instant, plus half the RTT of propagation each way. Connections share the link's capacity.
//! The trace starts when the link starts and loops.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::net::trace::Trace;
use crate::ExecError;

/// Bytes read per step: small enough that shaping is smooth at cellular rates.
const CHUNK: usize = 16 * 1024;
/// Packets a direction may hold in flight before the sender feels back-pressure.
const QUEUE_CHUNKS: usize = 4096;
/// A read is delivered in packets of this size, as a real link delivers them: the first bytes
/// of a reply (its HTTP headers) arrive when their packet does, not when the whole read does.
const PACKET: usize = 1500;
/// Largest round-trip time a link accepts, ms: a minute is beyond any real path, and the bound
/// keeps every delivery time representable.
pub const MAX_RTT_MS: f64 = 60_000.0;
/// Where a delivery time that no `Duration` can hold lands: later than any run lasts (tokio
/// uses the same horizon for "never").
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

#[derive(Clone, Debug)]
pub struct LinkConfig {
    pub trace: Arc<Trace>,
    pub rtt_ms: f64,
    pub upstream: String,
}

impl LinkConfig {
    /// The trace and the RTT are usable: every delivery time is then finite.
    pub fn validate(&self) -> Result<(), ExecError> {
        if !(0.0..=MAX_RTT_MS).contains(&self.rtt_ms) {
            return Err(ExecError::Invalid {
                name: "rtt_ms".into(),
                message: format!("must be a number in 0..={MAX_RTT_MS} ms, got {}", crate::error::Num(self.rtt_ms)),
            });
        }
        self.trace.validate()
    }
}

/// One direction of the link: when it is next free, in seconds since the link started.
#[derive(Default)]
struct Direction {
    free_at: Mutex<f64>,
}

struct Link {
    config: LinkConfig,
    epoch: Instant,
    up: Direction,
    down: Direction,
}

impl Link {
    /// When a chunk of `bytes` entering the link now is delivered at the far end.
    fn schedule(&self, direction: &Direction, bytes: usize) -> Instant {
        let now = self.epoch.elapsed().as_secs_f64();
        let finish = {
            // The guarded value is a plain f64, consistent even if a holder panicked.
            let mut free_at = direction.free_at.lock().unwrap_or_else(PoisonError::into_inner);
            let start = free_at.max(now);
            let finish = start + self.config.trace.transfer_time(start, bytes as f64);
            *free_at = finish;
            finish
        };
        Duration::try_from_secs_f64(finish + self.config.rtt_ms / 2e3)
            .ok()
            .and_then(|at| self.epoch.checked_add(at))
            .unwrap_or_else(|| self.epoch + FAR_FUTURE)
    }
}

/// Serves until `shutdown` completes, proxying every connection to `config.upstream`. A config
/// that fails [`LinkConfig::validate`] is refused before anything is accepted.
pub async fn run(
    listener: TcpListener,
    config: LinkConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ExecError> {
    config.validate()?;
    let link = Arc::new(Link {
        config,
        epoch: Instant::now(),
        up: Direction::default(),
        down: Direction::default(),
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (client, _) = accepted.map_err(|e| ExecError::io("link listener", e))?;
                let link = link.clone();
                tokio::spawn(async move {
                    if let Err(error) = proxy(link, client).await {
                        tracing::debug!("link connection ended: {error}");
                    }
                });
            }
        }
    }
}

async fn proxy(link: Arc<Link>, client: TcpStream) -> std::io::Result<()> {
    let upstream = TcpStream::connect(&link.config.upstream).await?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let up = pump(link.clone(), true, client_read, upstream_write);
    let down = pump(link, false, upstream_read, client_write);
    let _ = tokio::join!(up, down);
    Ok(())
}

/// Moves bytes one way: a reader stamps each chunk with its delivery time; a writer releases
/// it then. Propagation delay overlaps with transmission, as on a real link.
async fn pump(
    link: Arc<Link>,
    upward: bool,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<()> {
    let (sender, mut receiver) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let reader_link = link.clone();
    let reader = tokio::spawn(async move {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let direction = if upward { &reader_link.up } else { &reader_link.down };
            for packet in buffer[..n].chunks(PACKET) {
                let deliver_at = reader_link.schedule(direction, packet.len());
                if sender.send((deliver_at, packet.to_vec())).await.is_err() {
                    return Ok(());
                }
            }
        }
    });
    while let Some((deliver_at, bytes)) = receiver.recv().await {
        tokio::time::sleep_until(deliver_at).await;
        to.write_all(&bytes).await?;
    }
    to.shutdown().await.ok();
    reader.await.map_err(std::io::Error::other)?
}
