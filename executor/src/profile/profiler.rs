//! The profiler: runs every stage of every requested variant for real on one backend and
//! records per-stage latency statistics, FLOPs and output sizes. Its JSON is the simulator's
//! ground truth for compute time and transfer size.

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::model::workloads::{VariantSpec, Workload};
use crate::{Activation, DeviceChoice, ExecError, Network};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LatencyStats {
    pub mean: f64,
    pub std: f64,
    pub p50: f64,
    pub p95: f64,
}

impl LatencyStats {
    /// Summarises samples in milliseconds. Percentiles use the nearest rank.
    pub fn from_samples(samples: &[f64]) -> Self {
        assert!(!samples.is_empty(), "at least one run is required");
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / n;
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            mean,
            std: var.sqrt(),
            p50: percentile(&sorted, 0.5),
            p95: percentile(&sorted, 0.95),
        }
    }
}

/// The nearest-rank percentile `q` (0..1) of sorted samples; NaN when there are none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StageProfile {
    pub name: String,
    pub flops: u64,
    pub output_bytes: u64,
    /// Bytes of this stage's weights (a split's device keeps only its prefix's).
    #[serde(default)]
    pub param_bytes: u64,
    pub latency_ms: LatencyStats,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VariantProfile {
    pub name: String,
    pub accuracy: f64,
    pub accuracy_source: String,
    pub param_bytes: u64,
    pub stages: Vec<StageProfile>,
}

impl VariantProfile {
    pub fn total_latency_ms(&self) -> f64 {
        self.stages.iter().map(|s| s.latency_ms.mean).sum()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub workload: String,
    pub device: String,
    pub host: String,
    pub input_shape: Vec<usize>,
    /// Bytes of the workload's input in its natural encoding (uint8 images, int64 tokens).
    #[serde(default)]
    pub input_bytes: u64,
    /// Idle time before each timed run, ms: 0 measures back to back (a busy device); a pause
    /// measures a device that idles between requests, whose first stages then run slower.
    #[serde(default)]
    pub idle_ms: f64,
    pub variants: Vec<VariantProfile>,
    /// How other processes slow this workload here: measured `[r, slowdown]` points (r:
    /// runnable tasks of other processes per core), written by `rlsched profile --co-runners
    /// 0,1,2,4 --curve-into`. Networks parallelise differently (MobileNetV2's small layers
    /// lose less to one co-runner and more to two than VGG-16's), so the curve is the
    /// workload's own; empty: the scenario's `[env.contention]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contention: Vec<[f64; 2]>,
}

/// Most points a contention curve holds: one per co-runner count measured.
pub const MAX_CURVE_POINTS: usize = 8;
/// Most runnable other tasks per core a curve point, a load level or a reading may hold: past
/// it a device is stalled, not slow.
pub const MAX_RUNNABLE_PER_CORE: f64 = 64.0;

/// A contention curve's rules, for a profile's `contention` and `[env.contention] curve`
/// alike: none, or 2 to `MAX_CURVE_POINTS` points from `[0, 1]` (a device alone runs at its
/// profile's speed), r increasing, the slowdown finite and never falling. Errors name `field`.
pub fn check_curve(field: &str, curve: &[[f64; 2]]) -> Result<(), String> {
    if curve.len() == 1 || curve.len() > MAX_CURVE_POINTS {
        return Err(format!("{field}: 2 to {MAX_CURVE_POINTS} points, or none, got {}", curve.len()));
    }
    for (i, &[r, s]) in curve.iter().enumerate() {
        let at = format!("{field}[{i}]");
        if !(r.is_finite() && (0.0..=MAX_RUNNABLE_PER_CORE).contains(&r) && s.is_finite() && (1.0..=1000.0).contains(&s)) {
            return Err(format!("{at}: r must be in 0..={MAX_RUNNABLE_PER_CORE} and the slowdown in 1..=1000, got [{r}, {s}]"));
        }
        if i == 0 && (r != 0.0 || s != 1.0) {
            return Err(format!("{at}: the first point is [0, 1] (a device alone runs at its profile's speed), got [{r}, {s}]"));
        }
        if let Some(&[r0, s0]) = i.checked_sub(1).map(|j| &curve[j]) {
            if r <= r0 || s < s0 {
                return Err(format!("{at}: r must increase and the slowdown must not fall, got [{r}, {s}] after [{r0}, {s0}]"));
            }
        }
    }
    Ok(())
}

/// Longest stage latency a profile may record, ms: an hour per stage is no inference workload,
/// and the bound keeps every sum of stages and every reward finite.
pub const MAX_LATENCY_MS: f64 = 3_600_000.0;
/// Largest byte count a profile may record (1 TiB): with at most [`MAX_STAGES`] stages, sums
/// of sizes never overflow.
pub const MAX_PROFILE_BYTES: u64 = 1 << 40;
/// Most stages a variant may have.
pub const MAX_STAGES: usize = 4096;

fn invalid(name: String, message: String) -> ExecError {
    ExecError::Invalid { name, message }
}

impl LatencyStats {
    fn validate(&self, at: &str) -> Result<(), ExecError> {
        for (key, value) in [("mean", self.mean), ("std", self.std), ("p50", self.p50), ("p95", self.p95)] {
            if !(0.0..=MAX_LATENCY_MS).contains(&value) {
                return Err(invalid(
                    format!("{at}.{key}"),
                    format!("must be a number of ms in 0..={MAX_LATENCY_MS} (an hour), got {}", crate::error::Num(value)),
                ));
            }
        }
        Ok(())
    }
}

fn check_bytes(name: String, value: u64) -> Result<(), ExecError> {
    if value > MAX_PROFILE_BYTES {
        return Err(invalid(name, format!("must be at most {MAX_PROFILE_BYTES} bytes (1 TiB), got {value}")));
    }
    Ok(())
}

impl Profile {
    /// Reads a profile file, naming the file and the place of any error: a JSON error by line
    /// and column, a value out of range by its field path.
    pub fn load(path: &std::path::Path) -> Result<Self, ExecError> {
        let text = std::fs::read_to_string(path).map_err(|e| ExecError::io(path, e))?;
        let profile: Self = serde_json::from_str(&text).map_err(|e| ExecError::Data {
            path: format!("{}:{}", path.display(), e.line()),
            message: format!("column {}: {e}", e.column()),
        })?;
        profile.validate().map_err(|e| ExecError::Data {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Ok(profile)
    }

    /// Everything the simulator relies on: at least one variant, each with stages; latencies
    /// finite, non-negative and at most an hour; sizes at most 1 TiB; accuracies in 0..=1; an
    /// input shape of positive dimensions whose product fits a `usize`. The error names the
    /// field, e.g. `variants[1].stages[3].latency_ms.std`.
    pub fn validate(&self) -> Result<(), ExecError> {
        if self.input_shape.is_empty() {
            return Err(invalid("input_shape".into(), "must not be empty".into()));
        }
        let mut elements = 1usize;
        for (i, &dim) in self.input_shape.iter().enumerate() {
            if dim == 0 {
                return Err(invalid(format!("input_shape[{i}]"), "must be at least 1".into()));
            }
            elements = elements
                .checked_mul(dim)
                .ok_or_else(|| invalid("input_shape".into(), format!("{:?} has more elements than a usize holds", self.input_shape)))?;
        }
        check_bytes("input_bytes".into(), self.input_bytes)?;
        check_curve("contention", &self.contention).map_err(|e| invalid("contention".into(), e))?;
        if self.variants.is_empty() {
            return Err(invalid("variants".into(), "must not be empty".into()));
        }
        for (v, variant) in self.variants.iter().enumerate() {
            let at = format!("variants[{v}]");
            if variant.name.is_empty() {
                return Err(invalid(format!("{at}.name"), "must not be empty".into()));
            }
            if self.variants[..v].iter().any(|other| other.name == variant.name) {
                return Err(invalid(format!("{at}.name"), format!("`{}` appears twice", variant.name)));
            }
            if !(0.0..=1.0).contains(&variant.accuracy) {
                return Err(invalid(format!("{at}.accuracy"), format!("must be a fraction in 0..=1, got {}", crate::error::Num(variant.accuracy))));
            }
            check_bytes(format!("{at}.param_bytes"), variant.param_bytes)?;
            if variant.stages.is_empty() || variant.stages.len() > MAX_STAGES {
                return Err(invalid(
                    format!("{at}.stages"),
                    format!("must hold 1..={MAX_STAGES} stages, got {}", variant.stages.len()),
                ));
            }
            for (s, stage) in variant.stages.iter().enumerate() {
                let at = format!("{at}.stages[{s}]");
                check_bytes(format!("{at}.output_bytes"), stage.output_bytes)?;
                check_bytes(format!("{at}.param_bytes"), stage.param_bytes)?;
                stage.latency_ms.validate(&format!("{at}.latency_ms"))?;
            }
        }
        Ok(())
    }

    pub fn variant(&self, name: &str) -> Option<&VariantProfile> {
        self.variants.iter().find(|v| v.name == name)
    }
}

/// A short description of the machine: host name, CPU model and core count.
pub fn host_description() -> String {
    let mut system = sysinfo::System::new();
    system.refresh_cpu_all();
    let brand = system
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_string())
        .unwrap_or_default();
    format!(
        "{} ({}, {} logical cores)",
        sysinfo::System::host_name().unwrap_or_else(|| "unknown".into()),
        if brand.is_empty() { "unknown CPU" } else { &brand },
        system.cpus().len()
    )
}

/// Bytes of an imported model's weights that a stage reads: they live outside the module
/// record (shared by the model's stages), so `record_bytes` does not see them.
fn onnx_weight_bytes(stage: &crate::Stage) -> u64 {
    stage
        .layers
        .iter()
        .map(|layer| match layer {
            crate::model::layers::Layer::Onnx(segment) => segment.weight_bytes(),
            _ => 0,
        })
        .sum()
}

/// Bytes of a module's weights as burn stores them (quantized weights stay quantized).
pub fn record_bytes<M: Module>(module: &M) -> Result<u64, ExecError> {
    Ok(module.clone().into_record().into_bytes().map_err(|e| ExecError::Backend(e.to_string()))?.len() as u64)
}

fn elapsed_ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

/// One timed pass over every stage of `network` from `first`, after `idle` of doing nothing:
/// milliseconds per stage. After an idle spell the first stages run slower (caches and clocks
/// gone cold): a device whose requests arrive now and then sees that, not the back-to-back time.
pub fn time_stages(network: &Network, first: &Activation, device: &Device, idle: Duration) -> Result<Vec<f64>, ExecError> {
    std::thread::sleep(idle);
    let mut x = first.clone();
    let mut times = Vec::with_capacity(network.stage_count());
    for stage in 0..network.stage_count() {
        let start = Instant::now();
        x = network.run(stage, stage + 1, x)?;
        // a lazy backend would otherwise charge this stage's work to the next one
        device.sync().map_err(|e| ExecError::Backend(format!("{e:?}")))?;
        times.push(elapsed_ms(start));
    }
    Ok(times)
}

/// The profile of one variant of `network` from its passes (`time_stages` results, one per run).
pub fn variant_profile(network: &Network, variant: &VariantSpec, passes: &[Vec<f64>]) -> Result<VariantProfile, ExecError> {
    let stages = network.stage_count();
    if passes.is_empty() || passes.iter().any(|p| p.len() != stages) {
        return Err(invalid("passes".into(), format!("need at least one pass of {stages} stage times")));
    }
    let stage_profiles = network
        .stages
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let samples: Vec<f64> = passes.iter().map(|p| p[i]).collect();
            Ok(StageProfile {
                name: stage.name.clone(),
                flops: stage.flops(&network.boundary_dims[i]),
                output_bytes: network.output_bytes(i) as u64,
                param_bytes: record_bytes(stage)? + onnx_weight_bytes(stage),
                latency_ms: LatencyStats::from_samples(&samples),
            })
        })
        .collect::<Result<_, ExecError>>()?;
    Ok(VariantProfile {
        name: variant.name.clone(),
        accuracy: variant.accuracy,
        accuracy_source: variant.accuracy_source.clone(),
        param_bytes: record_bytes(network)? + network.stages.iter().map(onnx_weight_bytes).sum::<u64>(),
        stages: stage_profiles,
    })
}

impl Profile {
    /// A profile of `workload` on this host from measured variants.
    pub fn measured(workload: Workload, device: DeviceChoice, idle: Duration, variants: Vec<VariantProfile>) -> Result<Self, ExecError> {
        let spec = workload.spec()?;
        let input = workload.example_input(1);
        let natural_bytes = match input.datatype() {
            crate::DataType::Int64 => input.byte_len(),
            // images travel as uint8 pixels
            // an imported model's input is FP32 as its file declares it
            _ if workload.onnx().is_some() => input.byte_len(),
            _ => input.shape.iter().product::<usize>(),
        } as u64;
        Ok(Profile {
            workload: workload.name().to_string(),
            device: device.name().to_string(),
            host: host_description(),
            input_shape: spec.input_shape,
            input_bytes: natural_bytes,
            idle_ms: idle.as_secs_f64() * 1e3,
            variants,
            contention: Vec::new(),
        })
    }
}

/// Profiles the given variants (all of them when empty) of a workload, each timed run after
/// `idle` of doing nothing (zero: back to back); the variants alternate run by run.
pub fn profile(
    workload: Workload,
    variants: &[String],
    device_choice: DeviceChoice,
    runs: usize,
    idle: Duration,
    mut progress: impl FnMut(&str),
) -> Result<Profile, ExecError> {
    let runs = runs.max(1);
    let device: Device = device_choice.device()?;
    let spec = workload.spec()?;
    let names: Vec<String> = if variants.is_empty() {
        spec.variants.iter().map(|v| v.name.clone()).collect()
    } else {
        variants.to_vec()
    };
    let input = workload.example_input(1);
    let first = Activation::from_wire(&input, &device)?;
    let mut built = Vec::with_capacity(names.len());
    for name in &names {
        let variant = spec.variant(name)?;
        progress(&format!("{}/{}: building", workload.name(), name));
        let network = workload.build(name, &device)?;
        // Warm-up: the first pass pays for weight materialisation, allocation and (on GPUs)
        // kernel compilation.
        network.forward(first.clone())?.to_wire()?;
        built.push((variant, network, Vec::with_capacity(runs)));
    }
    // Variants take turns run by run: on a machine shared with other work the load drifts
    // over minutes, and alternating spreads that drift over every variant alike instead of
    // charging it to whichever ran last.
    for run in 0..runs {
        progress(&format!("{}: run {}/{}", workload.name(), run + 1, runs));
        for (_, network, passes) in &mut built {
            passes.push(time_stages(network, &first, &device, idle)?);
        }
    }
    let profiles = built
        .iter()
        .map(|(variant, network, passes)| variant_profile(network, variant, passes))
        .collect::<Result<Vec<_>, _>>()?;
    Profile::measured(workload, device_choice, idle, profiles)
}
