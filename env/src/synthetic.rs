//! Synthetic bandwidth traces from a Markov model of rate regimes, generated at run time from a
//! seed, as Pensieve trained on for generalisation: the link dwells in one of a few rate levels
//! (log-spaced between a floor and a ceiling), jumps mostly to nearby levels, and varies around
//! its level second by second, and now and then drops into an outage (a rate near zero for a
//! few seconds to half a minute: a tunnel, a dead cell, a handover that fails). Training on
//! them exposes the policy to regime changes, outages and rates the recorded traces lack: the
//! FCC files have 0.6% of their seconds below 50 kbit/s, real cellular families 4–12%. And
//! periodic outages laid over any trace (`[env.outages]`).

use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rlsched_executor::net::trace::Trace;
use serde::{Deserialize, Serialize};

use crate::config::check_range;
use crate::EnvError;

/// `[env.outages]`: periodic link outages laid over every trace the scenario loads (training
/// and evaluation alike): the rate is zero for `duration_s` at the end of each `period_s`,
/// starting `phase_s` into the trace. `period_s = 0` (the default) adds none.
/// `rlsched eval --set env.outages.period_s=120` evaluates with a 30 s outage every 2 minutes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutageConfig {
    pub period_s: f64,
    pub duration_s: f64,
    pub phase_s: f64,
}

impl Default for OutageConfig {
    fn default() -> Self {
        Self { period_s: 0.0, duration_s: 30.0, phase_s: 0.0 }
    }
}

impl OutageConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_range("env.outages.period_s", self.period_s, 0.0, 86_400.0)?;
        if self.period_s > 0.0 {
            check_range("env.outages.duration_s", self.duration_s, 0.0, 0.9 * self.period_s)?;
            check_range("env.outages.phase_s", self.phase_s, 0.0, self.period_s)?;
        }
        Ok(())
    }


    /// `trace` with the outages laid over it (itself when there are none). The result loops
    /// after a whole number of periods covering the trace once (the recorded trace loops
    /// within it), so every period has its outage.
    pub fn apply(&self, trace: &Trace) -> Result<Trace, EnvError> {
        if self.period_s <= 0.0 || self.duration_s <= 0.0 {
            return Ok(trace.clone());
        }
        let (period, outage, phase) = (self.period_s, self.duration_s, self.phase_s);
        let length = (trace.duration_s / period).ceil().max(1.0) * period;
        // the outage of period k: [phase + k·period − outage, phase + k·period)
        let inside = |t: f64| {
            let into = (t - phase).rem_euclid(period);
            into >= period - outage
        };
        let mut cuts: Vec<f64> = Vec::new();
        let loops = (length / trace.duration_s).ceil() as usize;
        for n in 0..loops {
            cuts.extend(trace.starts.iter().map(|s| s + n as f64 * trace.duration_s));
        }
        let periods = (length / period).ceil() as usize + 1;
        for k in 0..=periods {
            let end = phase + k as f64 * period;
            cuts.extend([end - outage, end].into_iter().map(|t| t.rem_euclid(length)));
        }
        cuts.push(0.0);
        cuts.retain(|t| (0.0..length).contains(t));
        cuts.sort_by(f64::total_cmp);
        cuts.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
        let (mut starts, mut rates_bps) = (Vec::new(), Vec::<f64>::new());
        for &t in &cuts {
            // the rate over a piece is the one at its middle (a piece never straddles a cut)
            let rate = if inside(t + 1e-9) { 0.0 } else { trace.rate_bps_at(t + 1e-9) };
            if rates_bps.last() != Some(&rate) {
                starts.push(t);
                rates_bps.push(rate);
            }
        }
        let shaped = Trace::new(format!("{} (outage {} s every {} s)", trace.name, outage, period), starts, rates_bps, length);
        shaped.validate().map_err(|e| EnvError::Config(format!("env.outages on {}: {e}", trace.name)))?;
        Ok(shaped)
    }
}
/// `[env.synthetic]`: how many Markov traces training adds, and their model.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticConfig {
    /// Traces generated for training (0: none).
    pub traces: usize,
    /// Length of each trace, seconds (it loops, like a recorded one).
    pub duration_s: f64,
    /// Lowest and highest regime level, Mbit/s.
    pub min_mbps: f64,
    pub max_mbps: f64,
    /// Regime levels, log-spaced between the two.
    pub levels: usize,
    /// Mean time the link stays in one regime, seconds.
    pub mean_dwell_s: f64,
    /// Relative standard deviation of the per-second rate around its regime's level.
    pub noise: f64,
    /// Outages: onsets per minute outside an outage (0: none), each lasting a log-uniform draw
    /// between `outage_min_s` and `outage_max_s`, at `outage_mbps`; after one the link comes
    /// back at a regime drawn afresh (the handover that ended it).
    pub outages_per_min: f64,
    pub outage_min_s: f64,
    pub outage_max_s: f64,
    pub outage_mbps: f64,
    /// Seed of the generator: every run with the same config trains on the same traces.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            traces: 0,
            duration_s: 320.0,
            min_mbps: 0.3,
            max_mbps: 60.0,
            levels: 12,
            mean_dwell_s: 8.0,
            noise: 0.15,
            outages_per_min: 0.0,
            outage_min_s: 1.0,
            outage_max_s: 30.0,
            outage_mbps: 0.01,
            seed: 1,
        }
    }
}

/// Each trace holds a segment per second: bounded so a config cannot exhaust memory.
const MAX_TRACES: usize = 1_000;
const MAX_DURATION_S: f64 = 86_400.0;
const MAX_LEVELS: usize = 1_000;

impl SyntheticConfig {
    pub fn validate(&self) -> Result<(), String> {
        let field = |name: &str| format!("env.synthetic.{name}");
        if self.traces > MAX_TRACES {
            return Err(format!("{} must be at most {MAX_TRACES}, got {}", field("traces"), self.traces));
        }
        if !(1..=MAX_LEVELS).contains(&self.levels) {
            return Err(format!("{} must be between 1 and {MAX_LEVELS}, got {}", field("levels"), self.levels));
        }
        check_range(&field("duration_s"), self.duration_s, 1.0, MAX_DURATION_S)?;
        check_range(&field("min_mbps"), self.min_mbps, 0.01, f64::INFINITY)?;
        check_range(&field("max_mbps"), self.max_mbps, self.min_mbps, 1e5)?;
        check_range(&field("mean_dwell_s"), self.mean_dwell_s, 1.0, MAX_DURATION_S)?;
        check_range(&field("noise"), self.noise, 0.0, 1.0)?;
        check_range(&field("outages_per_min"), self.outages_per_min, 0.0, 60.0)?;
        check_range(&field("outage_min_s"), self.outage_min_s, 1.0, MAX_DURATION_S)?;
        check_range(&field("outage_max_s"), self.outage_max_s, self.outage_min_s, MAX_DURATION_S)?;
        check_range(&field("outage_mbps"), self.outage_mbps, 0.0, self.min_mbps)
    }

    /// The configured traces, the same for the same seed.
    pub fn generate(&self) -> Result<Vec<Arc<Trace>>, EnvError> {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        (0..self.traces).map(|i| self.one(i, &mut rng).map(Arc::new)).collect()
    }

    fn level_mbps(&self, level: usize) -> f64 {
        if self.levels <= 1 {
            return self.min_mbps;
        }
        let (low, high) = (self.min_mbps.ln(), self.max_mbps.ln());
        (low + (high - low) * level as f64 / (self.levels - 1) as f64).exp()
    }

    fn one(&self, index: usize, rng: &mut SmallRng) -> Result<Trace, EnvError> {
        let seconds = self.duration_s.ceil() as usize;
        let switch = 1.0 / self.mean_dwell_s;
        let onset = (self.outages_per_min / 60.0).clamp(0.0, 1.0);
        let mut level = rng.random_range(0..self.levels);
        let mut outage_left = 0usize;
        let (mut starts, mut rates) = (Vec::with_capacity(seconds), Vec::with_capacity(seconds));
        for second in 0..seconds {
            if outage_left == 0 && onset > 0.0 && rng.random_bool(onset) {
                outage_left = crate::procedural::log_uniform(rng, self.outage_min_s, self.outage_max_s).round().max(1.0) as usize;
                level = rng.random_range(0..self.levels);
            }
            if outage_left > 0 {
                outage_left -= 1;
                starts.push(second as f64);
                rates.push(self.outage_mbps * 1e6);
                continue;
            }
            if rng.random_bool(switch.clamp(0.0, 1.0)) {
                // mostly a neighbouring regime, sometimes a far one (a handover, a tunnel)
                let jump: f64 = StandardNormal.sample(rng);
                let step = (jump * 2.0).round() as i64;
                let step = if step == 0 { if rng.random_bool(0.5) { 1 } else { -1 } } else { step };
                level = (level as i64 + step).clamp(0, self.levels as i64 - 1) as usize;
            }
            let noise: f64 = StandardNormal.sample(rng);
            let mbps = self.level_mbps(level) * (1.0 + self.noise * noise).max(0.1);
            starts.push(second as f64);
            rates.push(mbps * 1e6);
        }
        let trace = Trace::new(format!("markov-{index}"), starts, rates, seconds as f64);
        trace.validate()?;
        Ok(trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_traces_are_seeded_valid_and_visit_several_regimes() {
        let config = SyntheticConfig { traces: 4, ..SyntheticConfig::default() };
        let a = config.generate().unwrap();
        let b = config.generate().unwrap();
        assert_eq!(a.len(), 4);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.rates_bps, y.rates_bps, "same seed, same trace");
            let low = x.rates_bps.iter().copied().fold(f64::INFINITY, f64::min);
            let high = x.rates_bps.iter().copied().fold(0.0, f64::max);
            // 320 s with 8 s dwells: dozens of switches, so the rate spans well over 2×
            assert!(high / low > 2.0, "{}: {low}..{high}", x.name);
            assert!(low >= 0.1 * config.min_mbps * 1e6 && high <= 2.0 * config.max_mbps * 1e6);
        }
        let other = SyntheticConfig { seed: 2, ..config.clone() }.generate().unwrap();
        assert_ne!(a[0].rates_bps, other[0].rates_bps);
    }

    #[test]
    fn outages_take_the_configured_share_of_time() {
        let config = SyntheticConfig { traces: 8, duration_s: 3_600.0, outages_per_min: 1.0, ..SyntheticConfig::default() };
        let traces = config.generate().unwrap();
        let (mut down, mut total, mut spells) = (0usize, 0usize, Vec::new());
        for trace in &traces {
            let mut run = 0usize;
            for &rate in &trace.rates_bps {
                total += 1;
                if rate <= config.outage_mbps * 1e6 {
                    down += 1;
                    run += 1;
                } else if run > 0 {
                    spells.push(run);
                    run = 0;
                }
            }
        }
        // one onset a minute outside outages, log-uniform 1–30 s (mean ≈ 8.5 s): ≈ 12% down
        let share = down as f64 / total as f64;
        assert!((0.06..0.2).contains(&share), "{share}");
        assert!(spells.iter().all(|&s| (1..=30).contains(&s)), "{spells:?}");
        assert!(spells.iter().any(|&s| s >= 15) && spells.iter().any(|&s| s <= 3), "{spells:?}");
        let none = SyntheticConfig { outages_per_min: 0.0, ..config }.generate().unwrap();
        assert!(none.iter().flat_map(|t| &t.rates_bps).all(|&r| r > 0.02e6));
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (config, field) in [
            (SyntheticConfig { levels: 0, ..Default::default() }, "levels"),
            (SyntheticConfig { max_mbps: 0.1, ..Default::default() }, "max_mbps"),
            (SyntheticConfig { duration_s: f64::NAN, ..Default::default() }, "duration_s"),
            (SyntheticConfig { noise: 2.0, ..Default::default() }, "noise"),
            (SyntheticConfig { traces: usize::MAX, ..Default::default() }, "traces"),
            (SyntheticConfig { outages_per_min: -1.0, ..Default::default() }, "outages_per_min"),
            (SyntheticConfig { outage_max_s: 0.5, ..Default::default() }, "outage_max_s"),
        ] {
            let error = config.validate().unwrap_err();
            assert!(error.contains(&format!("env.synthetic.{field}")), "{error}");
        }
    }
}
