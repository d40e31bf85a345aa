//! `rlsched link`: a user-space link emulator in the way Mahimahi works. It is a TCP proxy that
//! delays each direction's bytes so that they leave no faster than the trace allows at each
//! instant, plus half the RTT of propagation each way. Connections share the link's capacity.
//! The trace starts when the link starts and loops.
//!
//! A connection takes the shared capacity only for bytes it puts on the wire toward a receiver
//! that accepts them: it books a packet at most [`HORIZON_S`] ahead of now, books nothing while
//! its receiver is not taking bytes, and gives back what it booked but never sent when its
//! receiver goes away. Each direction of a connection holds a bounded buffer; past it the sender
//! feels back-pressure, as behind a real link's queue.

use std::collections::VecDeque;
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
/// A read is delivered in packets of this size, as a real link delivers them: the first bytes
/// of a reply (its HTTP headers) arrive when their packet does, not when the whole read does.
const PACKET: usize = 1500;
/// Packets a direction of a connection reads ahead of the wire (96 KB), the most it buffers
/// for a receiver that does not read.
pub const BUFFER_PACKETS: usize = 64;
/// How far ahead of now a connection books the link, s: a few of tokio's 1 ms timer ticks, so
/// the link stays busy between wake-ups, and the most capacity a connection can hold that it
/// has not used yet.
pub const HORIZON_S: f64 = 0.005;
/// A write to a receiver that takes longer than this (s) waited for the receiver to read.
const WRITE_WAIT_S: f64 = 0.001;
/// Bytes a direction of a connection may have on the wire (booked, not yet delivered), as a TCP
/// window bounds them: memory stays bounded however large the bandwidth-delay product.
pub const MAX_IN_FLIGHT: usize = 1 << 20;
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

/// What one direction of one connection has booked: its bookings end at `until`, and the last
/// unbroken run of them (no other connection's in between) starts at `run_start`.
#[derive(Default)]
struct Booking {
    until: f64,
    run_start: f64,
}

struct Link {
    config: LinkConfig,
    epoch: Instant,
    up: Direction,
    down: Direction,
}

impl Link {
    fn now_s(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// The instant `seconds` after the link started (the start itself for a negative time).
    fn at(&self, seconds: f64) -> Instant {
        Duration::try_from_secs_f64(seconds.max(0.0))
            .ok()
            .and_then(|at| self.epoch.checked_add(at))
            .unwrap_or_else(|| self.epoch + FAR_FUTURE)
    }

    /// Books a packet of `bytes` on `direction` from when the link is free, but not before
    /// `ready` (s): when the packet reached the link and could go, which the wire, woken late by
    /// a busy machine, may book after the fact, as a link that reads and books at once would
    /// have. Returns when the packet is delivered at the far end.
    fn book(&self, direction: &Direction, booking: &mut Booking, bytes: usize, ready: f64) -> Instant {
        let finish = {
            // The guarded value is a plain f64, consistent even if a holder panicked.
            let mut free_at = direction.free_at.lock().unwrap_or_else(PoisonError::into_inner);
            let start = free_at.max(ready);
            let finish = start + self.config.trace.transfer_time(start, bytes as f64);
            *free_at = finish;
            if start != booking.until {
                booking.run_start = start;
            }
            booking.until = finish;
            finish
        };
        self.at(finish + self.config.rtt_ms / 2e3)
    }

    /// Gives back what `booking` holds from now on, when no other connection booked after it
    /// (the link's capacity is one "free at" time, so only the last booking can shrink).
    fn release(&self, direction: &Direction, booking: &Booking) {
        let now = self.now_s();
        let mut free_at = direction.free_at.lock().unwrap_or_else(PoisonError::into_inner);
        if *free_at == booking.until && booking.until > now {
            *free_at = booking.run_start.max(now);
        }
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

/// Moves bytes one way: a reader fills a bounded buffer of packets; the wire books each packet
/// when it goes out and writes it to `to` when the trace and the propagation delay deliver it.
/// Propagation delay overlaps with transmission, as on a real link.
async fn pump(
    link: Arc<Link>,
    upward: bool,
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<()> {
    let (sender, mut packets) = mpsc::channel::<(f64, Vec<u8>)>(BUFFER_PACKETS);
    let reader_link = link.clone();
    let reader = tokio::spawn(async move {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let read_at = reader_link.now_s();
            for packet in buffer[..n].chunks(PACKET) {
                if sender.send((read_at, packet.to_vec())).await.is_err() {
                    return Ok(());
                }
            }
        }
    });
    let direction = if upward { &link.up } else { &link.down };
    let mut booking = Booking::default();
    let sent = wire(&link, direction, &mut booking, &mut packets, &mut to).await;
    // a receiver that went away leaves capacity booked for bytes it will never get
    link.release(direction, &booking);
    if let Err(error) = sent {
        reader.abort();
        return Err(error);
    }
    to.shutdown().await.ok();
    reader.await.map_err(std::io::Error::other)?
}

/// The wire of one direction of a connection, until the reader is done and every packet is
/// delivered, or until writing to `to` fails.
async fn wire(
    link: &Link,
    direction: &Direction,
    booking: &mut Booking,
    packets: &mut mpsc::Receiver<(f64, Vec<u8>)>,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<()> {
    let mut in_flight: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut in_flight_bytes = 0;
    let mut source_open = true;
    // When the receiver last made the wire wait: packets that waited for it go from then on,
    // not from when they were read.
    let mut resumed_at = 0.0f64;
    loop {
        while in_flight.front().is_some_and(|(at, _)| *at <= Instant::now()) {
            let (_, bytes) = in_flight.pop_front().expect("a front packet");
            in_flight_bytes -= bytes.len();
            // While this write waits for a receiver that is not reading, nothing more is
            // booked: such a receiver costs the link nothing.
            let before = link.now_s();
            to.write_all(&bytes).await?;
            let after = link.now_s();
            if after - before > WRITE_WAIT_S {
                resumed_at = after;
            }
        }
        if !source_open && in_flight.is_empty() {
            return Ok(());
        }
        let room = source_open && in_flight_bytes < MAX_IN_FLIGHT;
        let book_from = link.at(booking.until - HORIZON_S);
        let may_book = room && book_from <= Instant::now();
        let next_delivery = in_flight.front().map(|(at, _)| *at);
        tokio::select! {
            packet = packets.recv(), if may_book => match packet {
                None => source_open = false,
                Some(packet) => {
                    let mut next = Some(packet);
                    while let Some((read_at, packet)) = next.take() {
                        let deliver_at = link.book(direction, booking, packet.len(), read_at.max(resumed_at));
                        in_flight_bytes += packet.len();
                        in_flight.push_back((deliver_at, packet));
                        if booking.until < link.now_s() + HORIZON_S && in_flight_bytes < MAX_IN_FLIGHT {
                            next = packets.try_recv().ok();
                        }
                    }
                }
            },
            _ = tokio::time::sleep_until(next_delivery.unwrap_or(book_from)), if next_delivery.is_some() => {}
            _ = tokio::time::sleep_until(book_from), if room && !may_book => {}
        }
    }
}
