//! Procedurally generated workloads (`[env.procedural]`): models drawn at run time from a seed,
//! from a family fitted to the measured profiles in `data/profiles`, so the policy trains on
//! many networks rather than four and meets a user's model as one more draw of a family it
//! knows. Each model is a device profile and a worker profile in memory; nothing runs them,
//! the simulator only needs their stage tables.
//!
//! The family, and where each range comes from (the cpu2/h200 profiles, fp32):
//! - image models (4 of 6 bundled) or sequence models (bert-mini); stages 4–24 (measured 4–20);
//! - local fp32 time log-uniform 1–1500 ms (measured 0.2–860 ms), split over the stages by
//!   exponential shares (a few heavy stages, many light ones, as VGG-16 and MobileNetV2 show);
//! - activations: an image model's first output is 0.5–16× its uint8 input (MobileNetV2 10.7×,
//!   ResNet-18 5.3×, VGG-16 85×, OFA 8×; capped so the largest is 2.4 MB..40 MB), falling
//!   log-linearly with noise to the logits (40 B–4 KB); a sequence model keeps
//!   tokens × hidden × 4 bytes up to its pooler;
//! - weights 0.05–600 MB (measured 0.2–553 MB), so some models fit the device only compressed;
//! - the worker is 1.5–40× faster per stage (measured 2.9× for MobileNetV2 to 27× for VGG-16)
//!   plus a fixed 0.02–0.6 ms per stage (digits-cnn's stages are slower there than here);
//! - variants: int8 weights with 0.5–1.3× the fp32 time (today's weight-only int8 is 1.0–1.5×,
//!   int8 compute 0.4–0.6×), 0–1 accuracy point lost; width-pruned 0.75, 0.5 and 0.25 (time ×
//!   r^1–r^2, activations × r, weights × r², 0.3–10, 1–30 and 5–45 points lost, log-uniform:
//!   the digits CNN measured 1.1/7.2/42 points at 0.75/0.5/0.25 of its filters; MobileNetV2 measured
//!   0.86×/0.52× and 2/6.4 points); the worker holds the fp32 and pruned variants, as the
//!   measured h200 profiles do;
//! - the SLO is 0.4–3× the model's own local fp32 time (measured 0.7–2.7×), the accuracy floor
//!   0–8 points below fp32 (measured 0.6–6.8) for 70% of models, 10–50 points for the rest (the
//!   digits CNN's serving floor is 0.5).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rlsched_executor::profile::profiler::{LatencyStats, Profile, StageProfile, VariantProfile};
use serde::{Deserialize, Serialize};

use crate::config::{check_range, WorkloadMix};

/// `[env.procedural]`: how many generated models training adds, their share of the request
/// mix, and the held-out ones the validation probe scores on (another seed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProceduralConfig {
    /// Generated models added to training's request mix (0: none).
    pub models: usize,
    /// Their total weight in the mix, beside the named workloads' weights.
    pub weight: f64,
    /// Seed of the training models.
    pub seed: u64,
    /// Generated models the validation probe adds as a held-out cell (0: none), from
    /// `validation_seed`: never trained on.
    pub validation_models: usize,
    pub validation_seed: u64,
    /// The worker's speed over the device's, per model, drawn log-uniformly from [low, high]
    /// (each bound 0.01..=1000). Below 1 the worker is slower than the device (another phone, a
    /// shared edge box), which a user's imported model can meet on its first day.
    pub worker_speedup: [f64; 2],
    /// Each model's SLO over its own local fp32 latency, log-uniform in [low, high] (each
    /// 0.01..=1000; the SLO is then held to 5 ms..5 s).
    pub slo_over_local: [f64; 2],
    /// The share of models (0..=1) whose every accuracy is unknown (0) and whose floor is 0, as
    /// an imported model's without labelled data: the policy meets that case in training.
    pub unknown_accuracy: f64,
}

impl Default for ProceduralConfig {
    fn default() -> Self {
        Self { models: 0, weight: 1.0, seed: 1, validation_models: 0, validation_seed: 1_000_003, worker_speedup: [1.5, 40.0], slo_over_local: [0.4, 3.0], unknown_accuracy: 0.0 }
    }
}

/// A generated model is a few dozen stages of numbers: bounded so a config cannot exhaust memory.
const MAX_MODELS: usize = 10_000;

/// One generated workload: its place in the mix and its two profiles.
pub struct GeneratedModel {
    pub mix: WorkloadMix,
    pub device: Profile,
    pub worker: Profile,
}

impl ProceduralConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (name, count) in [("models", self.models), ("validation_models", self.validation_models)] {
            if count > MAX_MODELS {
                return Err(format!("env.procedural.{name} must be at most {MAX_MODELS}, got {count}"));
            }
        }
        for (name, [low, high]) in [("worker_speedup", self.worker_speedup), ("slo_over_local", self.slo_over_local)] {
            check_range(&format!("env.procedural.{name}[0]"), low, 0.01, 1000.0)?;
            check_range(&format!("env.procedural.{name}[1]"), high, low, 1000.0)?;
        }
        check_range("env.procedural.unknown_accuracy", self.unknown_accuracy, 0.0, 1.0)?;
        check_range("env.procedural.weight", self.weight, 0.0, 1e6)
    }

    /// The training models (`proc-<i>`), the same for the same seed.
    pub fn training(&self, device: &str, worker: &str) -> Vec<GeneratedModel> {
        generate(self, self.seed, self.models, self.weight, "proc", device, worker)
    }

    /// The held-out validation models (`heldout-<i>`), one share each.
    pub fn validation(&self, device: &str, worker: &str) -> Vec<GeneratedModel> {
        generate(self, self.validation_seed, self.validation_models, self.validation_models as f64, "heldout", device, worker)
    }
}

/// `count` models from `seed`; `config` gives the ranges its draws take.
fn generate(config: &ProceduralConfig, seed: u64, count: usize, weight: f64, prefix: &str, device: &str, worker: &str) -> Vec<GeneratedModel> {
    (0..count)
        .map(|i| {
            // one stream per model, so model i is the same whatever the count
            let stream = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64);
            let mut model = one_model(&format!("{prefix}-{i}"), weight / count.max(1) as f64, config, device, worker, &mut SmallRng::seed_from_u64(stream));
            // a stream of its own, so that the share leaves every model's other draws as they were
            if SmallRng::seed_from_u64(stream ^ 0xacc0_0000_0000_0000).random_bool(config.unknown_accuracy) {
                for variant in model.device.variants.iter_mut().chain(model.worker.variants.iter_mut()) {
                    variant.accuracy = 0.0;
                    variant.accuracy_source = "unknown (env.procedural.unknown_accuracy)".into();
                }
                model.mix.min_accuracy = 0.0;
            }
            model
        })
        .collect()
}

/// A draw spread evenly in log between `low` and `high` (both above zero).
pub(crate) fn log_uniform(rng: &mut impl Rng, low: f64, high: f64) -> f64 {
    (low.ln() + (high.ln() - low.ln()) * rng.random::<f64>()).exp()
}

fn normal(rng: &mut SmallRng) -> f64 {
    StandardNormal.sample(rng)
}

/// The fp32 network's per-stage numbers, before variants and machines.
struct Skeleton {
    input_shape: Vec<usize>,
    input_bytes: u64,
    ms: Vec<f64>,
    /// Relative spread of each stage's time, run to run.
    spread: Vec<f64>,
    output_bytes: Vec<f64>,
    param_bytes: Vec<f64>,
}

fn skeleton(rng: &mut SmallRng) -> Skeleton {
    let image = rng.random_bool(0.7);
    let stages = if image { rng.random_range(6..=24) } else { rng.random_range(4..=10) };
    let total_ms = log_uniform(rng, 1.0, 1500.0);
    let classes: f64 = *[10.0, 100.0, 1000.0].get(rng.random_range(0..3)).unwrap_or(&1000.0);
    let (input_shape, input_bytes, output_bytes, shares) = if image {
        let side = rng.random_range(64..=320usize);
        let input = (3 * side * side) as f64;
        let first = (input * log_uniform(rng, 0.5, 16.0)).min(40e6);
        let last = classes * 4.0;
        let outputs: Vec<f64> = (0..stages)
            .map(|k| {
                if k + 1 == stages {
                    return last;
                }
                let along = k as f64 / (stages - 1) as f64;
                let trend = (first.ln() * (1.0 - along) + (last * 4.0).ln() * along).exp();
                (trend * (0.35 * normal(rng)).exp()).max(last)
            })
            .collect();
        let shares: Vec<f64> = (0..stages).map(|_| -rng.random::<f64>().max(1e-9).ln() + 0.1).collect();
        (vec![1, 3, side, side], input, outputs, shares)
    } else {
        let tokens = rng.random_range(16..=512usize);
        let hidden = *[128.0, 256.0, 512.0, 768.0].get(rng.random_range(0..4)).unwrap_or(&256.0);
        let outputs: Vec<f64> = (0..stages).map(|k| if k + 1 == stages { classes * 4.0 } else { tokens as f64 * hidden * 4.0 }).collect();
        // embedding and pooler are light; the encoder layers share the time alike
        let shares: Vec<f64> = (0..stages)
            .map(|k| if k == 0 || k + 1 == stages { 0.01 } else { 1.0 + 0.1 * normal(rng).abs() })
            .collect();
        (vec![1, tokens], (tokens * 8) as f64, outputs, shares)
    };
    let share_sum: f64 = shares.iter().sum();
    let ms: Vec<f64> = shares.iter().map(|s| total_ms * s / share_sum).collect();
    let spread = (0..stages).map(|_| rng.random_range(0.02..0.2)).collect();
    let total_params = log_uniform(rng, 0.05e6, 600e6);
    let weights: Vec<f64> = (0..stages).map(|_| -rng.random::<f64>().max(1e-9).ln() + 0.05).collect();
    let weight_sum: f64 = weights.iter().sum();
    let param_bytes = weights.iter().map(|w| total_params * w / weight_sum).collect();
    Skeleton { input_shape, input_bytes: input_bytes as u64, ms, spread, output_bytes, param_bytes }
}

/// A variant of the skeleton: time, activation and weight factors and its accuracy.
struct VariantDraw {
    name: String,
    accuracy: f64,
    time: f64,
    activations: f64,
    weights: f64,
    on_worker: bool,
}

fn variants(rng: &mut SmallRng, accuracy: f64) -> Vec<VariantDraw> {
    let mut list = vec![VariantDraw { name: "fp32".into(), accuracy, time: 1.0, activations: 1.0, weights: 1.0, on_worker: true }];
    if rng.random_bool(0.8) {
        let lost = rng.random_range(0.0..0.01);
        list.push(VariantDraw { name: "int8".into(), accuracy: accuracy - lost, time: rng.random_range(0.5..1.3), activations: 1.0, weights: 0.25, on_worker: false });
    }
    // points lost, log-uniform: the measured losses run from 1.9 (ResNet-18 at 0.3) through
    // 6.4 (MobileNetV2 at 0.5) to 42 (the digits CNN at 0.25 of its filters)
    for (ratio, lost) in [(0.75f64, (0.003, 0.1)), (0.5, (0.01, 0.3)), (0.25, (0.05, 0.45))] {
        if rng.random_bool(0.5) {
            let lost = log_uniform(rng, lost.0, lost.1);
            let time = ratio.powf(rng.random_range(1.0..2.0));
            list.push(VariantDraw {
                name: format!("width-{ratio}"),
                accuracy: (accuracy - lost).max(0.0),
                time,
                activations: ratio,
                weights: ratio * ratio,
                on_worker: true,
            });
        }
    }
    list
}

fn stage_table(skeleton: &Skeleton, draw: &VariantDraw, per_stage_ms: impl Fn(usize, f64) -> f64) -> Vec<StageProfile> {
    let last = skeleton.ms.len() - 1;
    (0..skeleton.ms.len())
        .map(|k| {
            let mean = per_stage_ms(k, skeleton.ms[k] * draw.time).clamp(0.0, 3_600_000.0);
            let std = mean * skeleton.spread[k];
            // the logits keep their size; every other activation narrows with the width
            let bytes = if k == last { skeleton.output_bytes[k] } else { skeleton.output_bytes[k] * draw.activations };
            StageProfile {
                name: format!("s{k}"),
                flops: 0,
                output_bytes: bytes.round() as u64,
                param_bytes: (skeleton.param_bytes[k] * draw.weights).round() as u64,
                latency_ms: LatencyStats { mean, std, p50: mean, p95: mean + 1.645 * std },
            }
        })
        .collect()
}

fn profile(name: &str, device: &str, skeleton: &Skeleton, variants: Vec<VariantProfile>) -> Profile {
    Profile {
        workload: name.into(),
        device: device.into(),
        host: "procedural (env/src/procedural.rs)".into(),
        input_shape: skeleton.input_shape.clone(),
        input_bytes: skeleton.input_bytes,
        idle_ms: 0.0,
        variants,
        contention: Vec::new(),
    }
}

fn one_model(name: &str, weight: f64, config: &ProceduralConfig, device: &str, worker: &str, rng: &mut SmallRng) -> GeneratedModel {
    let skeleton = skeleton(rng);
    let accuracy = rng.random_range(0.6..0.95);
    let draws = variants(rng, accuracy);
    let speedup = log_uniform(rng, config.worker_speedup[0], config.worker_speedup[1]);
    let overhead_ms = log_uniform(rng, 0.02, 0.6);
    let source = "procedural draw (env/src/procedural.rs)".to_string();
    let make = |draw: &VariantDraw, stages: Vec<StageProfile>| VariantProfile {
        name: draw.name.clone(),
        accuracy: draw.accuracy,
        accuracy_source: source.clone(),
        param_bytes: stages.iter().map(|s| s.param_bytes).sum(),
        stages,
    };
    let device_variants = draws.iter().map(|d| make(d, stage_table(&skeleton, d, |_, ms| ms))).collect();
    let worker_variants = draws
        .iter()
        .filter(|d| d.on_worker)
        .map(|d| make(d, stage_table(&skeleton, d, |_, ms| ms / speedup + overhead_ms)))
        .collect();
    let local_ms: f64 = skeleton.ms.iter().sum();
    let slo_ms = (local_ms * log_uniform(rng, config.slo_over_local[0], config.slo_over_local[1])).clamp(5.0, 5_000.0);
    // most floors sit just below fp32 as the named workloads' do; some are loose (the digits
    // CNN is served with a floor of 0.5), so that every variant is valid and only the reward's
    // accuracy term keeps the policy from the fastest one
    let below = if rng.random_bool(0.7) { rng.random_range(0.0..0.08) } else { rng.random_range(0.1..0.5) };
    let min_accuracy = (accuracy - below).max(0.0);
    GeneratedModel {
        mix: WorkloadMix { name: name.into(), weight, slo_ms, min_accuracy, onnx: None },
        device: profile(name, device, &skeleton, device_variants),
        worker: profile(name, worker, &skeleton, worker_variants),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_models_are_seeded_valid_and_diverse() {
        let config = ProceduralConfig { models: 64, validation_models: 8, ..Default::default() };
        let a = config.training("cpu2", "h200");
        let b = config.training("cpu2", "h200");
        assert_eq!(a.len(), 64);
        let (mut fast, mut slow, mut big, mut small_slo) = (0, 0, 0, 0);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.device, y.device, "same seed, same model");
            x.device.validate().unwrap();
            x.worker.validate().unwrap();
            let fp32 = x.device.variant("fp32").unwrap();
            let local = fp32.total_latency_ms();
            fast += (local < 20.0) as usize;
            slow += (local > 300.0) as usize;
            big += (fp32.param_bytes > 256_000_000) as usize;
            small_slo += (x.mix.slo_ms < local) as usize;
            // a floor some plan meets, and the same stages on both machines
            assert!(x.mix.min_accuracy <= fp32.accuracy);
            for v in &x.worker.variants {
                let ours = x.device.variant(&v.name).unwrap();
                assert_eq!(ours.stages.len(), v.stages.len());
            }
        }
        assert!(fast > 5 && slow > 5 && big > 0 && small_slo > 5, "{fast} {slow} {big} {small_slo}");
        let held_out = config.validation("cpu2", "h200");
        assert_eq!(held_out.len(), 8);
        assert!(held_out.iter().all(|h| a.iter().all(|t| t.device.variants != h.device.variants)));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let error = ProceduralConfig { models: usize::MAX, ..Default::default() }.validate().unwrap_err();
        assert!(error.contains("env.procedural.models"), "{error}");
        let error = ProceduralConfig { weight: f64::NAN, ..Default::default() }.validate().unwrap_err();
        assert!(error.contains("env.procedural.weight"), "{error}");
        let error = ProceduralConfig { worker_speedup: [2.0, 1.0], ..Default::default() }.validate().unwrap_err();
        assert!(error.contains("env.procedural.worker_speedup[1]"), "{error}");
    }

    /// The unknown-accuracy share zeroes some models' accuracies and floors and leaves every
    /// other draw as it was.
    #[test]
    fn unknown_accuracy_models_differ_only_in_their_accuracies() {
        let known = ProceduralConfig { models: 64, ..Default::default() }.training("cpu2", "h200");
        let mixed = ProceduralConfig { models: 64, unknown_accuracy: 0.5, ..Default::default() }.training("cpu2", "h200");
        let mut unknown = 0;
        for (k, m) in known.iter().zip(&mixed) {
            let zeroed = m.device.variants.iter().all(|v| v.accuracy == 0.0);
            unknown += zeroed as usize;
            assert_eq!(m.mix.slo_ms, k.mix.slo_ms);
            assert_eq!(m.mix.min_accuracy, if zeroed { 0.0 } else { k.mix.min_accuracy });
            for (a, b) in m.device.variants.iter().zip(&k.device.variants) {
                assert_eq!(a.stages, b.stages);
                assert_eq!(a.accuracy, if zeroed { 0.0 } else { b.accuracy });
            }
        }
        assert!((16..=48).contains(&unknown), "{unknown} of 64");
    }

    /// A worker drawn at half the device's speed takes twice the device's time per stage, plus
    /// the drawn per-stage overhead (at most 0.6 ms).
    #[test]
    fn the_worker_speed_follows_its_range() {
        let config = ProceduralConfig { models: 16, worker_speedup: [0.5, 0.5], ..Default::default() };
        for model in config.training("cpu2", "h200") {
            for worker in &model.worker.variants {
                let device = model.device.variant(&worker.name).unwrap();
                for (w, d) in worker.stages.iter().zip(&device.stages) {
                    let extra = w.latency_ms.mean - 2.0 * d.latency_ms.mean;
                    assert!((0.0..=0.6 + 1e-9).contains(&extra), "{}: {} ms against {} ms", model.mix.name, w.latency_ms.mean, d.latency_ms.mean);
                }
            }
        }
    }
}
