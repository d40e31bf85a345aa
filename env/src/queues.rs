//! The device's own queues. One device runs one request's local stages at a time; the uplink
//! carries every transfer that has bytes ready, the probe included, as `rlsched link` does (its
//! packets go out as soon as they are ready and the link is free); the worker runs our
//! requests one at a time behind other clients' load. Without these, every request would be an
//! independent decision and a greedy one-step predictor nearly optimal; with them a choice
//! delays later requests.
//!
//! The simulator settles a request's outcome when it is decided, so what it reserves is never
//! moved by a later decision. Both resources therefore backfill: a later request uses the time
//! the earlier ones leave idle. The uplink is work-conserving like the emulator's (a transfer
//! ready now uses the idle capacity now, though an earlier split's upload is due later; it
//! goes around that upload rather than interleaving packets with it). The device runs a stage
//! range without preemption, so a later request's local stages take the first idle span they
//! fit in.

/// What the device knows of its own queues at decision time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DeviceQueues {
    /// Local work queued ahead of a new request, ms (profile means at the observed load).
    pub local_ahead_ms: f64,
    /// Bytes queued on the uplink that have not left yet.
    pub uplink_backlog_bytes: f64,
}

/// One upload: its size, the spans of the uplink it holds, in order, and when it leaves the
/// device's queue (sent, or abandoned at its deadline).
#[derive(Clone, Debug)]
struct Upload {
    bytes: f64,
    spans: Vec<(f64, f64)>,
    done_s: f64,
}

/// The true state of the queues in the simulator.
#[derive(Clone, Debug, Default)]
pub struct Queues {
    /// The spans the device computes in (true compute times), sorted and disjoint.
    device: Vec<(f64, f64)>,
    /// When the device expects to finish it: profile means at the load it observed.
    pub device_expected_free_at: f64,
    /// Queued and running uploads, in the order they were decided.
    uploads: Vec<Upload>,
    /// Our requests at the worker: (arrival, done), in the order they were decided.
    worker: Vec<(f64, f64)>,
}

/// Spans idle between the busy `spans` (sorted, disjoint) from `from` on, the last one open.
fn idle_spans(spans: &[(f64, f64)], from: f64) -> impl Iterator<Item = (f64, f64)> + '_ {
    let mut start = from;
    let mut busy = spans.iter().filter(move |s| s.1 > from);
    std::iter::from_fn(move || loop {
        match busy.next() {
            Some(&(s, e)) => {
                let gap = (start, s);
                start = start.max(e);
                if gap.1 > gap.0 {
                    return Some(gap);
                }
            }
            None if start.is_finite() => {
                let open = (start, f64::INFINITY);
                start = f64::INFINITY;
                return Some(open);
            }
            None => return None,
        }
    })
}

impl Queues {
    /// What the device knows at `now`: the local work it expects ahead, and the bytes it has
    /// not sent yet (each upload's size less what the link carried for it so far: nothing of
    /// the trace after `now` enters).
    pub fn known(&mut self, now: f64, trace: &rlsched_executor::net::trace::Trace) -> DeviceQueues {
        // An upload counts until it is done, whatever its future: one that will be abandoned
        // before it gets the link still counts in full until its deadline, as for the device.
        self.uploads.retain(|u| u.done_s > now);
        self.device.retain(|s| s.1 > now);
        let backlog = self
            .uploads
            .iter()
            .map(|u| {
                let sent: f64 = u.spans.iter().filter(|s| s.0 < now).map(|&(s, e)| trace.bits_between(s, e.min(now)) / 8.0).sum();
                (u.bytes - sent).max(0.0)
            })
            .sum();
        DeviceQueues {
            local_ahead_ms: (self.device_expected_free_at - now).max(0.0) * 1e3,
            uplink_backlog_bytes: backlog,
        }
    }

    /// Where local compute ready at `ready` runs: the first idle span of the device where it
    /// fits whole, its duration (s) depending on when it starts (the load then). (start, end).
    pub fn device_slot(&self, ready: f64, duration_s: impl Fn(f64) -> f64) -> (f64, f64) {
        for (idle_start, idle_end) in idle_spans(&self.device, ready) {
            let start = idle_start.max(ready);
            let end = start + duration_s(start);
            if end <= idle_end {
                return (start, end);
            }
        }
        // the last idle span is open: unreachable, but a span is always an answer
        let start = self.device.last().map_or(ready, |s| s.1.max(ready));
        (start, start + duration_s(start))
    }

    /// Holds the device over `span`, found by `device_slot`.
    pub fn reserve_device(&mut self, span: (f64, f64)) {
        let at = self.device.partition_point(|s| s.0 < span.0);
        self.device.insert(at, span);
    }

    /// The spans of the uplink a transfer of `bytes` ready at `ready` uses: its idle capacity
    /// from `ready` on, in order, until the bytes are carried (uploads decided earlier keep
    /// theirs).
    pub fn uplink_spans(&self, trace: &rlsched_executor::net::trace::Trace, ready: f64, bytes: f64) -> Vec<(f64, f64)> {
        let mut busy: Vec<(f64, f64)> = self.uploads.iter().flat_map(|u| u.spans.iter().copied()).filter(|s| s.1 > ready).collect();
        busy.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut left = bytes.max(0.0);
        let mut spans = Vec::new();
        for (start, end) in idle_spans(&busy, ready) {
            let start = start.max(ready);
            let capacity = if end.is_finite() { trace.bits_between(start, end) / 8.0 } else { f64::INFINITY };
            if capacity >= left {
                spans.push((start, start + trace.transfer_time(start, left)));
                return spans;
            }
            if capacity > 0.0 {
                spans.push((start, end));
                left -= capacity;
            }
        }
        spans
    }

    /// Queues an upload of `bytes` over `spans` (from `uplink_spans`), or, when it is
    /// abandoned at `abandoned_s`, over the spans before then.
    /// When the worker is free for a request of ours arriving at `arrive_s`: after those that
    /// reached it first (it serves in arrival order). A request decided earlier but still
    /// uploading does not hold up one that arrives before it: its completion depends on the
    /// trace after the later one's decision, and the counterfactual test catches that leak.
    pub fn worker_free_for(&self, arrive_s: f64) -> f64 {
        self.worker.iter().filter(|w| w.0 <= arrive_s).fold(f64::NEG_INFINITY, |m, w| m.max(w.1))
    }

    /// A request of ours that reached the worker at `arrive_s` and finishes there at `done_s`.
    pub fn record_worker(&mut self, arrive_s: f64, done_s: f64) {
        self.worker.push((arrive_s, done_s));
    }

    pub fn reserve_upload(&mut self, bytes: f64, spans: Vec<(f64, f64)>, abandoned_s: Option<f64>) {
        let (spans, done_s) = match abandoned_s {
            Some(at) => (cut_spans(&spans, at), at),
            None => {
                let done = spans.last().map_or(f64::NEG_INFINITY, |s| s.1);
                (spans, done)
            }
        };
        self.uploads.push(Upload { bytes, spans, done_s });
    }
}

/// `spans` cut off at `at`: what an upload abandoned then held of the link.
fn cut_spans(spans: &[(f64, f64)], at: f64) -> Vec<(f64, f64)> {
    spans.iter().filter(|s| s.0 < at).map(|&(s, e)| (s, e.min(at))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlsched_executor::net::trace::Trace;

    /// An upload decided first but ready later leaves the link idle until then: a transfer
    /// ready now uses that capacity, and then goes around the reserved one.
    #[test]
    fn a_later_upload_backfills_the_idle_link() {
        // 8 Mbit/s: 1 MB per second
        let trace = Trace::constant(8.0, 1000.0);
        let mut queues = Queues::default();
        let early = queues.uplink_spans(&trace, 2.0, 1e6);
        assert_eq!(early.len(), 1);
        assert!((early[0].0 - 2.0).abs() < 1e-9 && (early[0].1 - 3.0).abs() < 1e-9, "{early:?}");
        queues.reserve_upload(1e6, early, None);
        // ready at 0.5, 2 MB: 1.5 MB before the reserved second, the rest after it
        let late = queues.uplink_spans(&trace, 0.5, 2e6);
        assert_eq!(late.len(), 2, "{late:?}");
        assert!((late[0].0 - 0.5).abs() < 1e-9 && (late[0].1 - 2.0).abs() < 1e-9, "{late:?}");
        assert!((late[1].0 - 3.0).abs() < 1e-9 && (late[1].1 - 3.5).abs() < 1e-9, "{late:?}");
        queues.reserve_upload(2e6, late, None);
        // the device knows what it has not sent: at 1.0, all of the first and 1.5 of 2 MB left
        let known = queues.known(1.0, &trace);
        assert!((known.uplink_backlog_bytes - 2.5e6).abs() < 1.0, "{known:?}");
    }

    /// Device work that cannot fit before a reserved span goes after it; work that fits, fits.
    #[test]
    fn device_work_fits_in_the_first_idle_span() {
        let mut queues = Queues::default();
        queues.reserve_device((1.0, 2.0));
        assert_eq!(queues.device_slot(0.0, |_| 0.5), (0.0, 0.5));
        assert_eq!(queues.device_slot(0.0, |_| 1.5), (2.0, 3.5));
        // the duration depends on the start: slower after 1.5
        assert_eq!(queues.device_slot(0.5, |s| if s < 1.5 { 0.25 } else { 1.0 }), (0.5, 0.75));
        assert_eq!(queues.device_slot(0.875, |s| if s < 1.5 { 0.25 } else { 1.0 }), (2.0, 3.0));
    }
}
