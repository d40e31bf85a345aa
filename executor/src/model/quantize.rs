//! int8 intermediates, as JALAD sends them: a split's activation is quantized to 8 bits with
//! one min–max range per tensor before it crosses the link (4× fewer bytes than f32) and is
//! dequantized by the worker. The range travels as two parameters of the KServe V2 input
//! (`int8_scale`, `int8_min`), so the tensor itself stays a plain `UINT8` tensor.

use serde_json::{Map, Value};

use crate::model::activation::WireData;
use crate::{ExecError, WireTensor};

pub const SCALE_PARAMETER: &str = "int8_scale";
pub const MIN_PARAMETER: &str = "int8_min";

/// The affine map `x ≈ min + scale · q` of one quantized tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Range {
    pub scale: f32,
    pub min: f32,
}

impl Int8Range {
    /// The input parameters that announce this range to a worker.
    pub fn parameters(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert(SCALE_PARAMETER.into(), Value::from(self.scale as f64));
        map.insert(MIN_PARAMETER.into(), Value::from(self.min as f64));
        map
    }

    /// Reads a range from an input's parameters: `None` when absent, an error when malformed.
    pub fn from_parameters(parameters: Option<&Map<String, Value>>) -> Result<Option<Self>, String> {
        let Some(p) = parameters else { return Ok(None) };
        let read = |key: &str| p.get(key).map(|v| v.as_f64().filter(|x| x.is_finite()).ok_or(format!("{key} must be a finite number")));
        match (read(SCALE_PARAMETER), read(MIN_PARAMETER)) {
            (None, None) => Ok(None),
            (Some(scale), Some(min)) => {
                let scale = scale? as f32;
                if scale < 0.0 {
                    return Err(format!("{SCALE_PARAMETER} must not be negative"));
                }
                Ok(Some(Self { scale, min: min? as f32 }))
            }
            _ => Err(format!("{SCALE_PARAMETER} and {MIN_PARAMETER} go together")),
        }
    }
}

/// Quantizes an f32 tensor to uint8 over its own min–max range.
pub fn quantize(tensor: &WireTensor) -> Result<(WireTensor, Int8Range), ExecError> {
    let WireData::F32(values) = &tensor.data else {
        return Err(ExecError::Int8(format!("int8 transfer needs an FP32 tensor, got {}", tensor.datatype().name())));
    };
    let (min, max) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    if !min.is_finite() || !max.is_finite() {
        return Err(ExecError::Int8("cannot quantize an empty or non-finite tensor".into()));
    }
    let scale = (max - min) / 255.0;
    let bytes = values
        .iter()
        .map(|&x| if scale > 0.0 { ((x - min) / scale).round().clamp(0.0, 255.0) as u8 } else { 0 })
        .collect();
    Ok((WireTensor::new(tensor.shape.clone(), WireData::U8(bytes))?, Int8Range { scale, min }))
}

/// Restores the f32 tensor a worker computes on.
pub fn dequantize(tensor: &WireTensor, range: Int8Range) -> Result<WireTensor, ExecError> {
    let WireData::U8(bytes) = &tensor.data else {
        return Err(ExecError::Int8(format!("int8 parameters need a UINT8 tensor, got {}", tensor.datatype().name())));
    };
    let values = bytes.iter().map(|&q| range.min + range.scale * q as f32).collect();
    WireTensor::new(tensor.shape.clone(), WireData::F32(values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let values: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.37).sin() * 3.0 + 1.0).collect();
        let tensor = WireTensor::new(vec![10, 100], WireData::F32(values.clone())).unwrap();
        let (q, range) = quantize(&tensor).unwrap();
        assert_eq!(q.byte_len(), 1000);
        let back = dequantize(&q, range).unwrap();
        let WireData::F32(restored) = back.data else { panic!("f32 expected") };
        for (a, b) in values.iter().zip(&restored) {
            assert!((a - b).abs() <= range.scale / 2.0 + 1e-5, "{a} vs {b}");
        }
        let constant = WireTensor::new(vec![3], WireData::F32(vec![2.5; 3])).unwrap();
        let (q, range) = quantize(&constant).unwrap();
        assert_eq!(dequantize(&q, range).unwrap().data, WireData::F32(vec![2.5; 3]));
        let params = range.parameters();
        assert_eq!(Int8Range::from_parameters(Some(&params)).unwrap(), Some(range));
        let mut half = params.clone();
        half.remove(MIN_PARAMETER);
        assert!(Int8Range::from_parameters(Some(&half)).is_err());
    }
}
