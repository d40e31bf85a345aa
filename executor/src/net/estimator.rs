//! The one link estimator, used alike by the simulator, `LiveEnv` and serving, so a policy
//! trained offline sees the same features live.
//!
//! A goodput sample is the bytes of one transfer over the time they were on the wire: the
//! measured transfer time less the round trip it contains. Dividing by a time that includes the
//! RTT would cap every small transfer's sample (1.5 KB over 20 ms reads as 0.6 Mbit/s whatever
//! the link), and a scheduler that trusts such samples is crippled. Transfers smaller than
//! `min_sample_bytes`, or (once there is an estimate) expected to spend less than
//! `min_sample_ms` on the wire, make no sample: their wire time is lost in the RTT's jitter. The RTT itself is measured (a probe's round trip); the
//! estimate is the smallest of the recent ones, since queueing and scheduling only ever add to
//! a round trip.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How the estimator keeps its history.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EstimatorConfig {
    /// Goodput samples kept (Pensieve's k).
    pub history: usize,
    /// Transfers smaller than this make no goodput sample.
    pub min_sample_bytes: usize,
    /// Transfers shorter than this on the wire make no goodput sample.
    pub min_sample_ms: f64,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        Self { history: 5, min_sample_bytes: 4096, min_sample_ms: 40.0 }
    }
}

/// One measured transfer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct GoodputSample {
    /// When the transfer finished, seconds on the estimator's clock.
    pub at_s: f64,
    pub bytes: usize,
    /// Time on the wire, RTT excluded.
    pub wire_ms: f64,
    pub mbps: f64,
    /// A bound, not a measurement: `bytes` did not get through in `wire_ms`.
    pub censored: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct LinkEstimator {
    config: EstimatorConfig,
    samples: VecDeque<GoodputSample>,
    /// Relative error of the harmonic-mean prediction made before each recent sample
    /// (RobustMPC's measure of how far the predictor can be trusted).
    errors: VecDeque<f64>,
    /// Recent round trips, newest last.
    rtts: VecDeque<f64>,
    last_transfer_s: Option<f64>,
    transfers: u64,
}

impl Default for LinkEstimator {
    fn default() -> Self {
        Self::new(EstimatorConfig::default())
    }
}

impl LinkEstimator {
    pub fn new(config: EstimatorConfig) -> Self {
        Self {
            config,
            samples: VecDeque::with_capacity(config.history),
            errors: VecDeque::with_capacity(config.history),
            rtts: VecDeque::with_capacity(config.history),
            last_transfer_s: None,
            transfers: 0,
        }
    }

    pub fn config(&self) -> EstimatorConfig {
        self.config
    }

    /// Records a transfer of `bytes` that finished at `at_s` and spent `wire_ms` on the wire
    /// (its measured time less the round trip). Returns whether it made a goodput sample.
    pub fn record_transfer(&mut self, at_s: f64, bytes: usize, wire_ms: f64) -> bool {
        self.last_transfer_s = Some(self.last_transfer_s.map_or(at_s, |t| t.max(at_s)));
        self.transfers += 1;
        // Whether the transfer is long enough is judged by the current estimate, not by its own
        // measured time, which would admit exactly the short ones that jitter lengthened. A short
        // transfer still beats knowing nothing: the first sample may be short.
        let expected_ms = self.harmonic_mbps().map_or(f64::INFINITY, |mbps| bytes as f64 * 8.0 / (mbps * 1e3));
        let long_enough = expected_ms >= self.config.min_sample_ms;
        // Too small to measure the rate, a transfer still shows a floor under it: its bytes got
        // through within its whole time, round trip included. A bound below that floor is over.
        // Kept, it held the estimate near 0.1 Mbit/s after a 4 s outage at 30 s until 44 s, while
        // splits of a few KB went through in 86 ms (fcc-test x20, held-out models, seed 3,
        // episode 52).
        if wire_ms.is_finite() && bytes > 0 {
            let whole_ms = wire_ms.max(0.0) + self.rtt_ms().unwrap_or(0.0);
            if whole_ms > 0.0 {
                self.end_bounds_below(bytes as f64 * 8.0 / (whole_ms * 1e3));
            }
        }
        if bytes < self.config.min_sample_bytes.max(1) || !(wire_ms.is_finite() && wire_ms > 0.0 && long_enough) {
            return false;
        }
        let mbps = bytes as f64 * 8.0 / (wire_ms * 1e3);
        if let Some(predicted) = self.harmonic_mbps() {
            push_bounded(&mut self.errors, (predicted - mbps).abs() / mbps, self.config.history);
        }
        // A censored sample said the link carried at most its rate then; a transfer that got
        // through faster since says that has ended. Kept, the bound would sit in the harmonic
        // mean as a measurement: after a 4 s outage one at 0.01 Mbit/s held the estimate near
        // zero for 18 s of a recovered 10-17 Mbit/s link, until five samples had pushed it out.
        self.end_bounds_below(mbps);
        let sample = GoodputSample { at_s, bytes, wire_ms, mbps, censored: false };
        push_bounded(&mut self.samples, sample, self.config.history);
        true
    }

    /// Drops the censored samples (bounds) below `mbps`: a transfer got through at least that
    /// fast since, so the condition they bounded has ended.
    fn end_bounds_below(&mut self, mbps: f64) {
        self.samples.retain(|s| !(s.censored && s.mbps < mbps));
    }

    /// Records a censored transfer: `bytes` did not get through in `wire_ms` (a remote path
    /// abandoned at its deadline), so the link now carries at most that rate. Samples that say
    /// it is faster are contradicted by it and dropped: kept, they would send the next request
    /// into the same stalled link, and the abandoned transfer never yields a true sample.
    /// Returns whether it made a sample.
    pub fn record_censored(&mut self, at_s: f64, bytes: usize, wire_ms: f64) -> bool {
        if bytes < self.config.min_sample_bytes.max(1) || !(wire_ms.is_finite() && wire_ms > 0.0) {
            return false;
        }
        let mbps = bytes as f64 * 8.0 / (wire_ms * 1e3);
        self.last_transfer_s = Some(self.last_transfer_s.map_or(at_s, |t| t.max(at_s)));
        self.transfers += 1;
        self.samples.retain(|s| s.mbps <= mbps);
        push_bounded(&mut self.samples, GoodputSample { at_s, bytes, wire_ms, mbps, censored: true }, self.config.history);
        true
    }

    /// Records a measured round trip (a probe's, or a request's timing with no payload).
    pub fn record_rtt(&mut self, rtt_ms: f64) {
        if rtt_ms.is_finite() && rtt_ms >= 0.0 {
            push_bounded(&mut self.rtts, rtt_ms, self.config.history.max(1));
        }
    }

    /// The wire time of a transfer measured as `elapsed_ms` that contains `round_trips` RTTs,
    /// using the current RTT estimate (none yet: no wire time).
    pub fn wire_ms(&self, elapsed_ms: f64, round_trips: f64) -> Option<f64> {
        self.rtt_ms().map(|rtt| elapsed_ms - round_trips * rtt).filter(|ms| *ms > 0.0)
    }

    /// Recent samples, oldest first.
    pub fn samples(&self) -> impl DoubleEndedIterator<Item = &GoodputSample> + ExactSizeIterator {
        self.samples.iter()
    }

    /// The smallest recent round trip.
    pub fn rtt_ms(&self) -> Option<f64> {
        self.rtts.iter().copied().reduce(f64::min)
    }

    /// When the last transfer of any size finished.
    pub fn last_transfer_s(&self) -> Option<f64> {
        self.last_transfer_s
    }

    /// Whether the active probe is due at `now_s`: no transfer for `interval_s`, or the estimate
    /// rests on a bound (a censored sample) or on nothing, and no measurement came for
    /// `interval_s`. Transfers too small to measure the rate keep a healthy link's probe away,
    /// but cannot end an outage's bound, so they must not hold off the probe that would.
    pub fn probe_due(&self, now_s: f64, interval_s: f64) -> bool {
        let stale = |t: Option<f64>| t.is_none_or(|t| now_s - t >= interval_s);
        let unmeasured = self.samples.is_empty() || self.samples.iter().any(|s| s.censored);
        let newest_sample = self.samples.iter().map(|s| s.at_s).reduce(f64::max);
        stale(self.last_transfer_s) || (unmeasured && stale(newest_sample))
    }

    /// Transfers recorded, sampled or not.
    pub fn transfers(&self) -> u64 {
        self.transfers
    }

    /// The newest sample's goodput (Neurosurgeon's estimate).
    pub fn last_mbps(&self) -> Option<f64> {
        self.samples.back().map(|s| s.mbps)
    }

    /// Harmonic mean of the recent samples, robust to one fast outlier (FESTIVE, MPC).
    pub fn harmonic_mbps(&self) -> Option<f64> {
        if self.samples.is_empty() {
            return None;
        }
        let inverse: f64 = self.samples.iter().map(|s| 1.0 / s.mbps.max(1e-9)).sum();
        Some(self.samples.len() as f64 / inverse)
    }

    /// The largest relative error of the recent harmonic-mean predictions (0 before any).
    pub fn max_relative_error(&self) -> f64 {
        self.errors.iter().copied().fold(0.0, f64::max)
    }

    /// RobustMPC's estimate: the harmonic mean divided by one plus the largest recent relative
    /// prediction error.
    pub fn robust_mbps(&self) -> Option<f64> {
        self.harmonic_mbps().map(|h| h / (1.0 + self.max_relative_error()))
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, capacity: usize) {
    if capacity == 0 {
        return;
    }
    while queue.len() >= capacity {
        queue.pop_front();
    }
    queue.push_back(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transfer abandoned at its deadline bounds the rate from above: the faster samples it
    /// contradicts go, slower ones stay.
    #[test]
    fn a_censored_transfer_drops_the_samples_it_contradicts() {
        let mut link = LinkEstimator::new(EstimatorConfig { history: 5, min_sample_bytes: 4096, min_sample_ms: 0.0 });
        // 1 MB in 400 ms and 4 s: 20 and 2 Mbit/s
        assert!(link.record_transfer(1.0, 1_000_000, 400.0));
        assert!(link.record_transfer(2.0, 1_000_000, 4_000.0));
        // 150 KB not through in 260 ms: at most 4.6 Mbit/s
        assert!(link.record_censored(3.0, 150_000, 260.0));
        let rates: Vec<f64> = link.samples().map(|s| s.mbps).collect();
        assert_eq!(rates.len(), 2, "{rates:?}");
        assert!((rates[0] - 2.0).abs() < 1e-9 && (rates[1] - 150_000.0 * 8.0 / 260e3).abs() < 1e-9, "{rates:?}");
        assert_eq!(link.last_transfer_s(), Some(3.0));
        assert!(!link.record_censored(4.0, 100, 260.0), "too small to say anything");
    }

    /// A bound that a faster completed transfer contradicts goes (the condition it bounded has
    /// ended); one the transfer does not contradict stays, and so do slower measurements.
    #[test]
    fn a_faster_transfer_drops_the_censored_samples_it_contradicts() {
        let mut link = LinkEstimator::new(EstimatorConfig { history: 5, min_sample_bytes: 4096, min_sample_ms: 0.0 });
        // 1 MB in 4 s: 2 Mbit/s; then 64 KB not through in 1.96 s (an outage): at most 0.27,
        // which drops the 2 Mbit/s sample
        assert!(link.record_transfer(1.0, 1_000_000, 4_000.0));
        assert!(link.record_censored(5.0, 65_536, 1_960.0));
        assert!(link.harmonic_mbps().unwrap() < 0.3, "the bound holds until contradicted");
        // 1 MB in 800 ms after the outage: 10 Mbit/s
        assert!(link.record_transfer(40.0, 1_000_000, 800.0));
        let samples: Vec<(f64, bool)> = link.samples().map(|s| (s.mbps, s.censored)).collect();
        assert_eq!(samples, vec![(10.0, false)], "the contradicted bound stayed");
        // a bound that a slower transfer does not contradict stays
        assert!(link.record_censored(41.0, 65_536, 1_960.0));
        assert!(link.record_transfer(42.0, 10_000, 400.0));
        assert!(link.samples().any(|s| s.censored), "a 0.2 Mbit/s transfer dropped a 0.27 Mbit/s bound");
    }

    /// A transfer too small to measure the rate still got its bytes through in its whole time:
    /// a bound below that floor is over, even though the transfer makes no sample itself.
    #[test]
    fn a_small_transfer_ends_a_bound_below_its_floor() {
        let mut link = LinkEstimator::default();
        link.record_rtt(40.0);
        // 64 KB not through in 1.96 s: at most 0.27 Mbit/s
        assert!(link.record_censored(5.0, 65_536, 1_960.0));
        // 3 KB in 46 ms of wire time plus the 40 ms round trip: a floor of 0.28 Mbit/s, too
        // small (under min_sample_bytes) to be a sample of its own
        assert!(!link.record_transfer(12.0, 3_000, 46.0));
        assert!(link.samples().next().is_none(), "the contradicted bound stayed");
        // a floor under the bound leaves it
        assert!(link.record_censored(20.0, 65_536, 1_960.0));
        assert!(!link.record_transfer(21.0, 3_000, 200.0), "3 KB in 240 ms: a 0.1 Mbit/s floor");
        assert!(link.samples().all(|s| s.censored) && link.samples().count() == 1);
    }

    /// Small transfers keep a measured link's probe away, but not the probe that would end a
    /// bound: the estimate resting on a censored sample, it is due once no sample came for the
    /// interval, however many small transfers went through.
    #[test]
    fn the_probe_is_due_while_a_bound_stands_despite_small_transfers() {
        let mut link = LinkEstimator::default();
        assert!(link.probe_due(0.0, 5.0), "nothing measured yet");
        assert!(link.record_transfer(1.0, 1_000_000, 800.0));
        // a small transfer every second: a measured link needs no probe
        for t in 2..10 {
            link.record_transfer(t as f64, 1_000, 1.0);
            assert!(!link.probe_due(t as f64 + 0.5, 5.0), "probed a measured link at {t} s");
        }
        assert!(link.probe_due(15.0, 5.0), "no transfer for 5 s");
        // an outage's bound, then small transfers too slow to end it
        assert!(link.record_censored(20.0, 65_536, 1_960.0));
        for t in 21..30 {
            link.record_transfer(t as f64, 1_000, 100.0);
        }
        assert!(link.samples().any(|s| s.censored));
        assert!(!link.probe_due(24.0, 5.0), "within the interval of the bound itself");
        assert!(link.probe_due(29.5, 5.0), "the small transfers held off the probe that would end the bound");
    }

    #[test]
    fn small_transfers_make_no_sample_and_the_rtt_is_left_out() {
        let mut link = LinkEstimator::default();
        assert_eq!(link.wire_ms(100.0, 1.0), None, "no RTT measured yet");
        link.record_rtt(40.0);
        // 1 MB in 1 s of wire time plus a 40 ms round trip
        let wire = link.wire_ms(1040.0, 1.0).unwrap();
        assert!(link.record_transfer(1.0, 1_000_000, wire));
        assert!((link.last_mbps().unwrap() - 8.0).abs() < 1e-9);
        assert!(!link.record_transfer(2.0, 1500, 1.5), "below min_sample_bytes");
        // 8 KB at 8 Mbit/s is 8 ms on the wire: too short to measure, whatever it took
        assert!(!link.record_transfer(3.0, 8000, 30.0), "below min_sample_ms, with an estimate already");
        assert_eq!(link.samples().len(), 1);
        assert_eq!(link.last_transfer_s(), Some(3.0));
        // the round trip is the smallest recent one: delays only ever add to it
        link.record_rtt(55.0);
        assert_eq!(link.rtt_ms(), Some(40.0));
    }

    #[test]
    fn robust_estimate_discounts_by_the_worst_recent_error() {
        let mut link = LinkEstimator::new(EstimatorConfig { history: 3, min_sample_bytes: 1, min_sample_ms: 0.0 });
        for (i, mbps) in [10.0, 10.0, 5.0].into_iter().enumerate() {
            link.record_transfer(i as f64, 1_000_000, 8.0 / mbps * 1e3);
        }
        let harmonic = 3.0 / (1.0 / 10.0 + 1.0 / 10.0 + 1.0 / 5.0);
        assert!((link.harmonic_mbps().unwrap() - harmonic).abs() < 1e-9);
        // the prediction before the 5 Mbit/s sample was 10: an error of 100%
        assert!((link.robust_mbps().unwrap() - harmonic / 2.0).abs() < 1e-9);
    }
}
