//! Device profiles from Once-for-All latency lookup tables: OFA measured every MobileNetV3 block
//! shape on a Samsung Note10 and published the means and standard deviations as YAML
//! (`key:` then indented `count:`, `mean:`, `std:`, milliseconds). This module reads such a table
//! and turns the stages of `ofa-note10` into the table's keys, so the phone's stage latencies are
//! the phone's measurements. Errors name the file, line and field.

use std::collections::HashMap;
use std::path::Path;

use crate::model::layers::{Act, Layer};
use crate::model::network::Network;
use crate::profile::profiler::{record_bytes, LatencyStats, Profile, StageProfile, VariantProfile};
use crate::model::workloads::Workload;
use crate::model::variant::Variant;
use crate::ExecError;

/// One measured entry: mean and standard deviation in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry {
    pub mean: f64,
    pub std: f64,
}

/// Parses a lookup table.
pub fn parse(path: &Path) -> Result<HashMap<String, Entry>, ExecError> {
    let text = std::fs::read_to_string(path).map_err(|e| ExecError::io(path, e))?;
    let mut table = HashMap::new();
    let mut current: Option<(String, Option<f64>, Option<f64>, usize)> = None;
    let bad = |line: usize, message: String| ExecError::Data { path: format!("{}:{line}", path.display()), message };
    let mut finish = |entry: Option<(String, Option<f64>, Option<f64>, usize)>| -> Result<(), ExecError> {
        if let Some((key, mean, std, line)) = entry {
            match (mean, std) {
                (Some(mean), Some(std)) => {
                    table.insert(key, Entry { mean, std });
                }
                _ => return Err(bad(line, format!("entry `{key}` lacks its mean or std"))),
            }
        }
        Ok(())
    };
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if !raw.starts_with(' ') {
            let key = raw.trim_end().strip_suffix(':').ok_or_else(|| bad(number, format!("expected `key:`, got `{raw}`")))?;
            finish(current.take())?;
            current = Some((key.to_string(), None, None, number));
            continue;
        }
        let entry = current.as_mut().ok_or_else(|| bad(number, "a field before any key".into()))?;
        let (field, value) = raw.trim().split_once(':').ok_or_else(|| bad(number, format!("expected `field: value`, got `{}`", raw.trim())))?;
        let value = value.trim();
        let number_value = || {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| bad(number, format!("field {field}: `{value}` is not a non-negative number")))
        };
        match field {
            "mean" => entry.1 = Some(number_value()?),
            "std" => entry.2 = Some(number_value()?),
            "count" => {
                number_value()?;
            }
            other => return Err(bad(number, format!("unknown field `{other}`"))),
        }
    }
    finish(current)?;
    Ok(table)
}

/// `HxWxC` of an NCHW shape, as the tables write it.
fn hwc(dims: &[usize]) -> String {
    format!("{}x{}x{}", dims[2], dims[3], dims[1])
}

/// The table keys whose latencies make up each stage of `network` (an OFA MobileNetV3
/// sub-network: a stem conv, inverted residual blocks, a 1×1 expand conv and a classifier).
pub fn stage_keys(network: &Network) -> Result<Vec<Vec<String>>, ExecError> {
    let mut keys = Vec::new();
    for (i, stage) in network.stages.iter().enumerate() {
        let (input, output) = (&network.boundary_dims[i], &network.boundary_dims[i + 1]);
        let stage_keys = match stage.layers.as_slice() {
            [Layer::Conv(_)] if i == 0 => vec![format!("Conv-input:{}-output:{}", hwc(input), hwc(output))],
            [Layer::Conv(_)] => vec![format!("Conv_1-input:{}-output:{}", hwc(input), hwc(output))],
            [Layer::InvertedResidual(block)] => {
                let s = block.shape();
                vec![format!(
                    "expanded_conv-input:{}-output:{}-expand:{}-kernel:{}-stride:{}-idskip:{}-se:{}-hs:{}",
                    hwc(input),
                    hwc(output),
                    s.mid,
                    s.kernel,
                    s.stride,
                    u8::from(block.residual),
                    u8::from(s.se),
                    u8::from(s.act == Act::HSwish)
                )]
            }
            [Layer::GlobalAvgPool(_), Layer::Dense(mix), Layer::Dense(logits)] => {
                let c = input[1];
                vec![
                    format!("AvgPool2D-input:{}-output:1x1x{c}", hwc(input)),
                    format!("Conv_2-input:1x1x{c}-output:1x1x{}", mix.d_out),
                    format!("Logits-input:1x1x{}-output:{}", mix.d_out, logits.d_out),
                ]
            }
            _ => return Err(ExecError::Data { path: stage.name.clone(), message: "stage has no latency-table equivalent".into() }),
        };
        keys.push(stage_keys);
    }
    Ok(keys)
}

/// The profile of `ofa-note10` on the device a table measured: fp32 and the pruned variants
/// (OFA's expansions of 3 and 4 are what the table measured); int8 has no entry there. p50 and
/// p95 are not in the tables; they are taken from a normal fit (mean, mean + 1.645·std).
pub fn profile(table_path: &Path, device_name: &str) -> Result<Profile, ExecError> {
    let table = parse(table_path)?;
    let workload = Workload::OfaNote10;
    let spec = workload.spec()?;
    let mut variants = Vec::new();
    for card in spec.variants.iter().filter(|v| v.variant != Variant::Int8) {
        let network = workload.build(&card.name, &burn::tensor::Device::flex())?;
        let mut stages = Vec::new();
        for (i, keys) in stage_keys(&network)?.into_iter().enumerate() {
            let (mut mean, mut var) = (0.0, 0.0);
            for key in keys {
                let entry = table.get(&key).ok_or_else(|| ExecError::Data {
                    path: table_path.display().to_string(),
                    message: format!("no entry `{key}` (variant {}, stage {})", card.name, network.stages[i].name),
                })?;
                mean += entry.mean;
                var += entry.std * entry.std;
            }
            let std = var.sqrt();
            stages.push(StageProfile {
                name: network.stages[i].name.clone(),
                flops: network.stages[i].flops(&network.boundary_dims[i]),
                output_bytes: network.output_bytes(i) as u64,
                param_bytes: record_bytes(&network.stages[i])?,
                latency_ms: LatencyStats { mean, std, p50: mean, p95: mean + 1.645 * std },
            });
        }
        variants.push(VariantProfile {
            name: card.name.clone(),
            accuracy: card.accuracy,
            accuracy_source: card.accuracy_source.clone(),
            param_bytes: record_bytes(&network)?,
            stages,
        });
    }
    Ok(Profile {
        workload: workload.name().into(),
        device: device_name.into(),
        host: format!("{device_name} CPU, Once-for-All latency lookup table {} (Apache-2.0; Cai et al., ICLR 2020)", table_path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()),
        input_shape: spec.input_shape.clone(),
        input_bytes: spec.input_shape.iter().product::<usize>() as u64,
        idle_ms: 0.0,
        variants,
        contention: Vec::new(),
    })
}
