//! Observation normalisation with running statistics, as Gymnasium's `NormalizeObservation`
//! (which CleanRL wraps around its environments): each feature is shifted by its running mean,
//! scaled by its running standard deviation and clipped. The state vector and the plan features
//! keep separate statistics; plan statistics count valid plans only, so padding never dilutes
//! them. The statistics are updated while training, frozen afterwards, and saved in the
//! checkpoint's sidecar so a loaded policy sees observations exactly as it was trained on them.

use rlsched_env::obs::{Obs, PLAN_FEATURES};
use serde::{Deserialize, Serialize};

/// Keeps the variance floor away from zero for features that never change.
const EPSILON: f64 = 1e-8;

/// A feature whose training variance stayed below this never changed in training (the
/// device's memory, say, which training holds at 256 MB: variance 2e-10). Its weights only
/// ever saw one value (the threshold is above what the running statistics' pseudo-count
/// leaves, 1e-4 · (1 + mean²) / count), so it is held at that value (normalised 0) rather than scaled by an
/// ε-wide deviation into ±clip: serving with another memory size would otherwise feed the
/// policy a value 10 standard deviations from anything it learned on.
const CONSTANT_VARIANCE: f64 = 1e-6;

/// One feature, normalised: shifted by its mean, divided by its scale and clipped. A missing
/// value (NaN: an unknown accuracy) and a feature held constant in training (no scale) read 0,
/// the training mean.
pub(crate) fn standardize(x: f32, mean: f64, scale: Option<f64>, clip: f32) -> f32 {
    match scale {
        Some(scale) if !x.is_nan() => (((x as f64 - mean) / scale) as f32).clamp(-clip, clip),
        _ => 0.0,
    }
}

/// Per-feature running mean and variance (Chan et al.'s parallel update, as Gymnasium's
/// `RunningMeanStd`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunningStats {
    pub count: f64,
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

impl RunningStats {
    pub fn new(features: usize) -> Self {
        // Gymnasium starts from a pseudo-count of 1e-4 around (0, 1), so the first batch dominates.
        Self { count: 1e-4, mean: vec![0.0; features], var: vec![1.0; features] }
    }

    /// Merges a batch of rows (each `mean.len()` wide).
    pub fn update<'a>(&mut self, rows: impl Iterator<Item = &'a [f32]>) {
        let d = self.mean.len();
        let (mut sum, mut sq, mut n) = (vec![0.0f64; d], vec![0.0f64; d], 0.0f64);
        // a missing value (NaN) counts as the current mean: it moves nothing
        let rows: Vec<Vec<f64>> = rows.map(|row| row.iter().zip(&self.mean).map(|(&x, &m)| if x.is_nan() { m } else { x as f64 }).collect()).collect();
        for row in &rows {
            for (s, &x) in sum.iter_mut().zip(row.iter()) {
                *s += x;
            }
            n += 1.0;
        }
        if n == 0.0 {
            return;
        }
        let batch_mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        for row in &rows {
            for ((q, &x), m) in sq.iter_mut().zip(row.iter()).zip(&batch_mean) {
                *q += (x - m).powi(2);
            }
        }
        let total = self.count + n;
        for i in 0..d {
            let delta = batch_mean[i] - self.mean[i];
            let m2 = self.var[i] * self.count + sq[i] + delta * delta * self.count * n / total;
            self.mean[i] += delta * n / total;
            self.var[i] = m2 / total;
        }
        self.count = total;
    }

    /// Why these statistics cannot normalise anything, if they cannot: a count that is not
    /// positive, a non-finite mean, a negative or non-finite variance.
    pub fn problem(&self) -> Option<String> {
        if !(self.count.is_finite() && self.count > 0.0) {
            return Some(format!("count must be positive and finite, got {}", self.count));
        }
        if let Some(i) = self.mean.iter().position(|m| !m.is_finite()) {
            return Some(format!("mean[{i}] is {}", self.mean[i]));
        }
        if let Some(i) = self.var.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Some(format!("var[{i}] must be finite and ≥ 0, got {}", self.var[i]));
        }
        None
    }

    /// Each feature's divisor: its standard deviation, or none for a feature held constant.
    pub(crate) fn scales(&self) -> Vec<Option<f64>> {
        self.var.iter().map(|&v| self.scale(v)).collect()
    }

    fn scale(&self, var: f64) -> Option<f64> {
        (var >= CONSTANT_VARIANCE || self.count <= 1.0).then(|| (var + EPSILON).sqrt())
    }

    // per row of every rollout: no scales vector is built here
    fn normalize(&self, row: &[f32], clip: f32, out: &mut Vec<f32>) {
        out.extend(row.iter().zip(&self.mean).zip(&self.var).map(|((&x, &m), &v)| standardize(x, m, self.scale(v), clip)));
    }
}

/// The statistics of both parts of an observation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ObsNormalizer {
    pub state: RunningStats,
    pub plan: RunningStats,
    /// Normalised features are clipped to ±clip.
    pub clip: f32,
}

impl ObsNormalizer {
    pub fn new(state_dim: usize, clip: f32) -> Self {
        Self { state: RunningStats::new(state_dim), plan: RunningStats::new(PLAN_FEATURES), clip }
    }

    /// Why a loaded normaliser is unusable, naming the field: `clip` must be positive and
    /// finite, and both statistics must be sound.
    pub fn problem(&self) -> Option<String> {
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Some(format!("normalizer.clip must be positive and finite, got {}", self.clip));
        }
        let named = |part: &str, stats: &RunningStats| stats.problem().map(|p| format!("normalizer.{part}: {p}"));
        named("state", &self.state).or_else(|| named("plan", &self.plan))
    }

    pub fn update(&mut self, observations: &[&Obs]) {
        self.state.update(observations.iter().map(|o| o.state.as_slice()));
        self.plan.update(observations.iter().flat_map(|o| valid_rows(o)));
    }

    /// Appends `obs`, normalised, to flat buffers; padded plan rows stay zero.
    pub fn append(&self, obs: &Obs, state: &mut Vec<f32>, plans: &mut Vec<f32>, mask: &mut Vec<bool>) {
        self.state.normalize(&obs.state, self.clip, state);
        for (row, &valid) in obs.plans.chunks(PLAN_FEATURES).zip(&obs.mask) {
            if valid {
                self.plan.normalize(row, self.clip, plans);
            } else {
                plans.extend(std::iter::repeat_n(0.0, PLAN_FEATURES));
            }
        }
        mask.extend_from_slice(&obs.mask);
    }
}

fn valid_rows(obs: &Obs) -> impl Iterator<Item = &[f32]> {
    obs.plans.chunks(PLAN_FEATURES).zip(&obs.mask).filter(|(_, &v)| v).map(|(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_updates_match_the_whole_sample() {
        let rows: Vec<[f32; 2]> = (0..100).map(|i| [i as f32, (i * i % 17) as f32 - 3.0]).collect();
        let mut stats = RunningStats::new(2);
        for chunk in rows.chunks(7) {
            stats.update(chunk.iter().map(|r| r.as_slice()));
        }
        for f in 0..2 {
            let xs: Vec<f64> = rows.iter().map(|r| r[f] as f64).collect();
            let mean = xs.iter().sum::<f64>() / 100.0;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 100.0;
            assert!((stats.mean[f] - mean).abs() < 1e-3, "{} vs {mean}", stats.mean[f]);
            assert!((stats.var[f] - var).abs() / var < 1e-3, "{} vs {var}", stats.var[f]);
        }
        let mut out = Vec::new();
        stats.normalize(&[1e9, stats.mean[1] as f32], 10.0, &mut out);
        assert_eq!(out[0], 10.0, "clipped");
        assert!(out[1].abs() < 1e-4);
    }

    /// A feature that never changed in training is held at its training value, whatever it
    /// reads now; one that varied a little is still scaled.
    #[test]
    fn a_feature_constant_in_training_is_held() {
        let rows: Vec<[f32; 2]> = (0..10_000).map(|i| [0.256, 0.25 + (i % 2) as f32 * 0.01]).collect();
        let mut stats = RunningStats::new(2);
        stats.update(rows.iter().map(|r| r.as_slice()));
        let mut out = Vec::new();
        stats.normalize(&[0.01, 0.27], 10.0, &mut out);
        assert_eq!(out[0], 0.0, "{:?}", stats.var);
        assert!((out[1] - 3.0).abs() < 1e-2, "{out:?}");
    }

    /// A missing value reads as the training mean, and does not move the statistics.
    #[test]
    fn a_missing_value_reads_as_the_mean() {
        let mut stats = RunningStats::new(1);
        stats.update([[1.0f32], [3.0]].iter().map(|r| r.as_slice()));
        let before = stats.clone();
        stats.update([[f32::NAN]].iter().map(|r| r.as_slice()));
        assert!((stats.mean[0] - before.mean[0]).abs() < 1e-9, "{stats:?}");
        let mut out = Vec::new();
        stats.normalize(&[f32::NAN, 3.0], 10.0, &mut out);
        assert_eq!(out[0], 0.0);
    }
}
