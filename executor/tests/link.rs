//! The link emulator delivers what the trace allows: throughput through `link::run` matches a
//! constant trace, each segment of a step trace, and a real Mahimahi cellular trace within 10%.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rlsched_executor::net::link::{self, LinkConfig};
use rlsched_executor::net::trace::{Trace, TraceFormat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn shared_data() -> PathBuf {
    std::env::var_os("RLSCHED_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// Sends `bytes` through a link replaying `trace`; returns (seconds since the link started,
/// cumulative bytes) at every read on the far side.
async fn replay(trace: Trace, rtt_ms: f64, bytes: usize) -> Vec<(f64, usize)> {
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let epoch = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = LinkConfig { trace: Arc::new(trace), rtt_ms, upstream: sink_addr.to_string() };
    tokio::spawn(link::run(front, config, async {
        stopped.await.ok();
    }));
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = sink.accept().await.unwrap();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0;
        let mut samples = Vec::new();
        loop {
            let n = socket.read(&mut buffer).await.unwrap();
            if n == 0 {
                return samples;
            }
            total += n;
            samples.push((epoch.elapsed().as_secs_f64(), total));
        }
    });
    let mut client = TcpStream::connect(front_addr).await.unwrap();
    client.write_all(&vec![7u8; bytes]).await.unwrap();
    client.shutdown().await.unwrap();
    let samples = tokio::time::timeout(Duration::from_secs(30), receiver).await.unwrap().unwrap();
    stop.send(()).ok();
    assert_eq!(samples.last().unwrap().1, bytes, "every byte arrives");
    samples
}

/// Mbit/s delivered between `t0` and `t1` (seconds since the link started).
fn delivered_mbps(samples: &[(f64, usize)], t0: f64, t1: f64) -> f64 {
    let at = |t: f64| samples.iter().take_while(|(time, _)| *time <= t).last().map_or(0, |s| s.1);
    (at(t1) - at(t0)) as f64 * 8.0 / (t1 - t0) / 1e6
}

fn within(measured: f64, expected: f64, tolerance: f64) -> bool {
    (measured - expected).abs() <= tolerance * expected
}

fn write_trace(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("rlsched-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_trace_throughput_matches() {
    let path = write_trace("constant.log", "0\t8.0\n1\t8.0\n2\t8.0\n3\t8.0\n");
    let trace = Trace::load(&path, None).unwrap();
    assert!(within(trace.mean_mbps(), 8.0, 1e-9));
    let samples = replay(trace, 20.0, 2_000_000).await;
    let measured = delivered_mbps(&samples, 0.2, 1.8);
    assert!(within(measured, 8.0, 0.10), "constant 8 Mbit/s trace delivered {measured:.2}");
    // the whole transfer takes 2 s of transmission plus half the RTT
    let last = samples.last().unwrap().0;
    assert!(within(last, 2.0 + 0.01, 0.10), "last byte at {last:.3} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_trace_each_segment_matches() {
    // 16 Mbit/s for 1.5 s, then 4 Mbit/s for 1.5 s
    let path = write_trace("step.log", "0\t16\n1.5\t4\n");
    let trace = Trace::load(&path, Some(TraceFormat::Pensieve)).unwrap();
    assert!(within(trace.duration_s, 3.0, 1e-9));
    let bytes = (16e6 * 1.5 / 8.0 + 4e6 * 1.4 / 8.0) as usize;
    let samples = replay(trace, 0.0, bytes).await;
    let high = delivered_mbps(&samples, 0.2, 1.4);
    let low = delivered_mbps(&samples, 1.7, 2.8);
    assert!(within(high, 16.0, 0.10), "high segment delivered {high:.2} Mbit/s");
    assert!(within(low, 4.0, 0.10), "low segment delivered {low:.2} Mbit/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mahimahi_trace_is_read_and_replayed() {
    let path = shared_data().join("traces/mahimahi/TMobile-LTE-short.up");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let lines: Vec<u64> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    let trace = Trace::load(&path, None).unwrap();
    // throughput = lines × 12 kbit / duration, as the data set's README defines it
    let expected = lines.len() as f64 * 12_000.0 / (*lines.last().unwrap() as f64 / 1e3) / 1e6;
    assert!(within(trace.mean_mbps(), expected, 0.01), "{} vs {expected}", trace.mean_mbps());
    // saturate the link for ~2.5 s and compare what arrived with the trace's integral
    let bytes = (trace.bits_between(0.0, 2.5) / 8.0) as usize;
    let samples = replay(trace.clone(), 0.0, bytes).await;
    let measured = delivered_mbps(&samples, 0.3, 2.3);
    let promised = trace.bits_between(0.3, 2.3) / 2.0 / 1e6;
    assert!(within(measured, promised, 0.10), "delivered {measured:.2} Mbit/s, trace gives {promised:.2}");
}

#[test]
fn malformed_traces_name_file_and_line() {
    let path = write_trace("bad.log", "0\t1.0\n1\tfast\n");
    let err = Trace::load(&path, None).unwrap_err().to_string();
    assert!(err.contains("bad.log:2") && err.contains("Mbit/s"), "{err}");
    let path = write_trace("bad.up", "10\n20\nxx\n");
    let err = Trace::load(&path, Some(TraceFormat::Mahimahi)).unwrap_err().to_string();
    assert!(err.contains("bad.up:3"), "{err}");
    let path = write_trace("zero.log", "0\t0\n1\t0\n");
    assert!(Trace::load(&path, None).unwrap_err().to_string().contains("no capacity"));
}

#[test]
fn transfer_time_integrates_over_a_step() {
    let trace = Trace::parse_pensieve("0\t8\n1\t2\n", "step").unwrap(); // 8 Mbit/s then 2, 2 s loop
    // 0.5 MB from t=0.5: 0.5 s carries 4 Mbit = 0.5 MB exactly
    assert!((trace.transfer_time(0.5, 500_000.0) - 0.5).abs() < 1e-9);
    // 0.75 MB from t=0.5: 0.5 MB by t=1, then 2 Mbit at 2 Mbit/s = 1 s
    assert!((trace.transfer_time(0.5, 750_000.0) - 1.5).abs() < 1e-9);
    // crossing the loop: from t=1.5, 0.25 MB at 2 Mbit/s to t=2 (0.125 MB), then 8 Mbit/s
    let t = trace.transfer_time(1.5, 250_000.0);
    assert!((t - (0.5 + 1.0 / 8.0)).abs() < 1e-9, "{t}");
    // many loops: 10 loops carry 10 × 10 Mbit
    assert!((trace.transfer_time(0.0, 12_500_000.0) - 20.0).abs() < 1e-6);
}

/// Mahimahi timestamps far in the future used to size a bin vector by their value: 80 GB for
/// `99999999999`, a "capacity overflow" panic for `u64::MAX`, 12 s and gigabytes for
/// `2000000000`. Now they are refused by line, and memory follows the file's length.
#[test]
fn mahimahi_timestamps_past_a_day_are_refused() {
    for (name, line) in [("far.up", "99999999999"), ("max.up", "18446744073709551615"), ("slow.up", "2000000000")] {
        let path = write_trace(name, &format!("0\n5\n{line}\n"));
        let err = Trace::load(&path, Some(TraceFormat::Mahimahi)).unwrap_err().to_string();
        assert!(err.contains(&format!("{name}:3")) && err.contains("24 h"), "{err}");
    }
    // the last millisecond of a day is accepted: two busy bins and one silent segment (7200
    // packets at the start keep the day's mean at the 1 kbit/s floor)
    let text = format!("{}86400000\n", "0\n".repeat(7200));
    let trace = Trace::parse_mahimahi(&text, "day.up").unwrap();
    assert_eq!(trace.duration_s, 86_400.0);
    assert!(trace.starts.len() <= 3, "{} segments for two lines", trace.starts.len());
}

/// `0 1` then `1e20 1` made the simulator's load process loop forever (adding a request gap to
/// 1e20 changes nothing); a lone line has no duration. Each gets an error naming file, line and
/// field.
#[test]
fn pensieve_times_and_rates_are_bounded() {
    for (name, text, line, needle) in [
        ("far.log", "0 1\n1e20 1\n", 2, "time_s"),
        ("day.log", "0 1\n86401 1\n", 2, "24 h"),
        ("single.log", "0 1\n", 1, "no duration"),
        ("same.log", "5 1\n5 2\n", 2, "no duration"),
        ("nan.log", "0 1\nNaN 1\n", 2, "time_s"),
        ("negative.log", "0 1\n1 -2\n", 2, "Mbit/s"),
        ("infinite.log", "0 1\n1 inf\n", 2, "Mbit/s"),
        ("tiny.log", "0 1e-300\n1 1e-300\n", 2, "1 kbit/s"),
        ("backwards.log", "0 1\n2 1\n1 1\n", 3, "backwards"),
    ] {
        let path = write_trace(name, text);
        let err = Trace::load(&path, Some(TraceFormat::Pensieve)).unwrap_err().to_string();
        assert!(err.contains(&format!("{name}:{line}")) && err.contains(needle), "{name}: {err}");
    }
}

/// `--scale 0`, `-1` or `nan` used to be accepted and then hang the first transfer; `1e-300`
/// gave a trace whose transfer times overflowed. `scaled` now refuses them.
#[test]
fn scaled_refuses_what_would_hang_or_overflow() {
    let trace = Trace::parse_pensieve("0\t8\n1\t2\n", "step").unwrap();
    for factor in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = trace.scaled(factor).unwrap_err().to_string();
        assert!(err.contains("scale factor"), "{factor}: {err}");
    }
    let err = trace.scaled(1e-300).unwrap_err().to_string();
    assert!(err.contains("1 kbit/s") && err.contains("scaled by 1e-300"), "{err}");
    assert!(trace.scaled(1e300).unwrap_err().to_string().contains("bit/s"));
    let doubled = trace.scaled(2.0).unwrap();
    assert!((doubled.mean_mbps() - 2.0 * trace.mean_mbps()).abs() < 1e-9);
}

/// Outages are legitimate, so the walk over segments must cross them; huge sizes and start
/// times must neither loop nor overflow. Each call returns a finite, plausible time.
#[test]
fn transfer_time_is_finite_through_outages_and_extremes() {
    // 1 kbit/s mean: 10 s of outage, then 10 s at 2 kbit/s (the lowest mean a trace may have)
    let trace = Trace::parse_pensieve("0 0\n10 0.002\n", "outage").unwrap();
    assert!((trace.mean_mbps() - 1e-3).abs() < 1e-12);
    // 125 bytes (1 kbit) from the start: 10 s of outage, then 0.5 s
    assert!((trace.transfer_time(0.0, 125.0) - 10.5).abs() < 1e-9);
    for (start, bytes) in [(0.0, 1e300), (1e300, 1e6), (f64::MAX, f64::MAX), (-5.0, 1.0), (f64::NAN, 1.0)] {
        let t = trace.transfer_time(start, bytes);
        assert!(t.is_finite() && t >= 0.0, "transfer_time({start}, {bytes}) = {t}");
        // never faster than the fastest segment, never slower than the mean rate plus a loop
        // (in bytes: 250 B/s at the fastest, 125 B/s on average; `bytes * 8` may overflow)
        assert!(t >= bytes / 250.0 * (1.0 - 1e-9) && t <= bytes / 125.0 + 2.0 * trace.duration_s, "{start}, {bytes}: {t:e}");
    }
    // a trace built in code without capacity never finishes, rather than spinning
    let dead = Trace::new("dead".into(), vec![0.0], vec![0.0], 1.0);
    assert_eq!(dead.transfer_time(0.0, 1.0), f64::INFINITY);
    assert!(dead.validate().unwrap_err().to_string().contains("no capacity"));
    assert!(trace.bits_between(1e300, 1e300 + 1e290).is_finite());
}

/// A link whose RTT no `Duration` can hold (1e300 ms used to panic), or whose trace has no
/// capacity (used to spin while holding the link's lock), is refused before it serves. The
/// shutdown is already complete, so were the check missing, `run` would return `Ok`.
#[tokio::test]
async fn link_refuses_a_config_it_cannot_serve() {
    let cases = [
        (Trace::constant(8.0, 1.0), 1e300, "rtt_ms"),
        (Trace::constant(8.0, 1.0), f64::NAN, "rtt_ms"),
        (Trace::constant(0.0, 1.0), 0.0, "no capacity"),
        (Trace::constant(8.0, 0.0), 0.0, "duration"),
    ];
    for (trace, rtt_ms, needle) in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = LinkConfig { trace: Arc::new(trace), rtt_ms, upstream: "127.0.0.1:9".into() };
        let err = link::run(listener, config, std::future::ready(())).await.unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

/// A connection whose receiver goes away used to keep the capacity it had booked when its bytes
/// were read: a client sent a large request to an upstream that read its first packet and
/// closed (as a server refusing an oversize body does), and the link had booked all of it at
/// read time, so the next connection's first byte waited for megabytes that were never sent
/// (96 s at 0.5 Mbit/s). Now capacity is booked as bytes go out and given back when the
/// receiver is gone: the next connection's echo needs its own few bytes, far less than the
/// dead request's 32 s at the trace's rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_connection_does_not_hold_the_link() {
    const MBPS: f64 = 1.0;
    const REQUEST: usize = 4_000_000;
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let (refused, refused_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        // the first connection: read one packet of the request, then close without reading on
        let (mut first, _) = upstream.accept().await.unwrap();
        let mut header = vec![0u8; 1500];
        first.read_exact(&mut header).await.unwrap();
        drop(first);
        refused.send(()).ok();
        // the second: echo
        let (mut second, _) = upstream.accept().await.unwrap();
        let mut buffer = [0u8; 64];
        let n = second.read(&mut buffer).await.unwrap();
        second.write_all(&buffer[..n]).await.unwrap();
    });
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = LinkConfig { trace: Arc::new(Trace::constant(MBPS, 10.0)), rtt_ms: 0.0, upstream: upstream_addr.to_string() };
    tokio::spawn(link::run(front, config, async {
        stopped.await.ok();
    }));

    // the large request; the client never reads and closes when its write ends (or fails,
    // once the link gives up on the connection)
    let mut client = TcpStream::connect(front_addr).await.unwrap();
    let _ = client.write_all(&vec![1u8; REQUEST]).await;
    drop(client);
    refused_rx.await.unwrap();

    let dead_request_s = REQUEST as f64 * 8.0 / (MBPS * 1e6);
    let bound = Duration::from_secs_f64(dead_request_s / 4.0);
    let mut next = TcpStream::connect(front_addr).await.unwrap();
    next.write_all(b"ping").await.unwrap();
    let mut echo = [0u8; 4];
    let started = Instant::now();
    tokio::time::timeout(bound, next.read_exact(&mut echo))
        .await
        .unwrap_or_else(|_| panic!("the next connection's echo took over {bound:?}: the closed connection's {dead_request_s} s are still booked"))
        .unwrap();
    assert_eq!(&echo, b"ping");
    assert!(started.elapsed() < bound);
    stop.send(()).ok();
}
