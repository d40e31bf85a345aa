//! Accuracy of an imported model on the user's labelled data (`--calibration NAME=DIR`):
//! `DIR/inputs.npy` (float32, `[N, ...]` the model's input shape) and `DIR/labels.npy` (integer
//! class ids, `[N]`). Top-1 is the argmax of the output's last axis. Without such data an
//! imported model's accuracy stays unknown.

use std::path::Path;

use burn::tensor::Device;

use crate::model::activation::WireData;
use crate::{ExecError, Network, WireTensor};

/// Largest .npy file read.
pub const MAX_NPY_BYTES: u64 = 1 << 30;
/// Samples run at once.
const BATCH: usize = 64;

/// An .npy array: shape and values (f32 or i64 as f64-free plain vectors).
#[derive(Debug, PartialEq)]
pub enum Npy {
    F32(Vec<usize>, Vec<f32>),
    I64(Vec<usize>, Vec<i64>),
}

fn bad(path: &Path, message: impl Into<String>) -> ExecError {
    ExecError::Data { path: path.display().to_string(), message: message.into() }
}

/// Reads a C-ordered little-endian .npy file of `<f4`, `<i8` or `<i4`.
pub fn read_npy(path: &Path) -> Result<Npy, ExecError> {
    let size = std::fs::metadata(path).map_err(|e| ExecError::io(path, e))?.len();
    if size > MAX_NPY_BYTES {
        return Err(bad(path, format!("{size} bytes is more than the {MAX_NPY_BYTES} read")));
    }
    let bytes = std::fs::read(path).map_err(|e| ExecError::io(path, e))?;
    parse_npy(&bytes).map_err(|m| bad(path, m))
}

pub fn parse_npy(bytes: &[u8]) -> Result<Npy, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not an .npy file (no \\x93NUMPY magic)".into());
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header = bytes.get(start..start.saturating_add(header_len)).ok_or("truncated header")?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text")?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[at..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr").and_then(|d| d.strip_prefix('\'')).and_then(|d| d.split('\'').next()).ok_or("no descr")?;
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err("Fortran-ordered arrays are not read; save with np.ascontiguousarray".into());
    }
    let shape_text = field("shape").and_then(|s| s.strip_prefix('(')).and_then(|s| s.split(')').next()).ok_or("no shape")?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad dimension `{s}`")))
        .collect::<Result<_, _>>()?;
    let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("shape overflows")?;
    let data = &bytes[start + header_len..];
    let width = match descr {
        "<f4" | "<i4" => 4,
        "<i8" => 8,
        other => return Err(format!("dtype {other} is not read (float32, int32 or int64 are)")),
    };
    if count.checked_mul(width) != Some(data.len()) {
        return Err(format!("shape {shape:?} needs {} bytes of data, the file holds {}", count.saturating_mul(width), data.len()));
    }
    Ok(match descr {
        "<f4" => Npy::F32(shape, data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        "<i4" => Npy::I64(shape, data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
        _ => Npy::I64(shape, data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()),
    })
}

/// Writes a float32 or int64 .npy file (version 1).
pub fn npy_bytes(array: &Npy) -> Vec<u8> {
    let (descr, shape, data): (&str, &Vec<usize>, Vec<u8>) = match array {
        Npy::F32(shape, v) => ("<f4", shape, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Npy::I64(shape, v) => ("<i8", shape, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// Labelled samples for a model whose input, batch of one, is `sample_dims`.
pub struct Calibration {
    pub sample_dims: Vec<usize>,
    pub inputs: Vec<f32>,
    pub labels: Vec<i64>,
}

impl Calibration {
    pub fn load(dir: &Path, sample_dims: &[usize]) -> Result<Self, ExecError> {
        let inputs_path = dir.join("inputs.npy");
        let labels_path = dir.join("labels.npy");
        let Npy::F32(shape, inputs) = read_npy(&inputs_path)? else {
            return Err(bad(&inputs_path, "inputs must be float32"));
        };
        let Npy::I64(label_shape, labels) = read_npy(&labels_path)? else {
            return Err(bad(&labels_path, "labels must be integers"));
        };
        if shape.is_empty() || shape[1..] != sample_dims[1..] {
            return Err(bad(&inputs_path, format!("shape {shape:?} does not fit the model's input [N, {:?}]", &sample_dims[1..])));
        }
        if label_shape != [shape[0]] {
            return Err(bad(&labels_path, format!("shape {label_shape:?}: one label per input ({}) expected", shape[0])));
        }
        Ok(Self { sample_dims: sample_dims.to_vec(), inputs, labels })
    }

    /// Top-1 accuracy of `network` (which must run at any batch, or at batch one).
    pub fn accuracy(&self, network: &Network, device: &Device) -> Result<f64, ExecError> {
        let per: usize = self.sample_dims[1..].iter().product();
        let batch = if network.fixed_batch.is_some() { 1 } else { BATCH };
        let mut correct = 0usize;
        for (chunk, labels) in self.inputs.chunks(per * batch).zip(self.labels.chunks(batch)) {
            let mut shape = self.sample_dims.clone();
            shape[0] = labels.len();
            let input = WireTensor::new(shape, WireData::F32(chunk.to_vec()))?;
            let output = network.run_wire(0, network.stage_count(), &input, device)?;
            let WireData::F32(values) = output.data else {
                return Err(ExecError::Backend("the model's output is not FP32".into()));
            };
            let classes = values.len() / labels.len().max(1);
            for (row, &label) in values.chunks(classes.max(1)).zip(labels) {
                let predicted = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k);
                correct += usize::from(predicted as i64 == label);
            }
        }
        Ok(correct as f64 / self.labels.len().max(1) as f64)
    }
}
