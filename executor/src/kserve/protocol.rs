//! The Open Inference Protocol (KServe V2) REST message types, and the binary tensor data
//! extension (`Inference-Header-Content-Length`) that large intermediate tensors need.
//!
//! Parsing is strict and never panics: every malformed field becomes a [`ProtocolError`] that the
//! worker turns into a 400 with `{"error": ...}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::activation::{DataType, WireData};
use crate::model::quantize::{self, Int8Range};
use crate::{ExecError, WireTensor};

pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl From<ExecError> for ProtocolError {
    fn from(e: ExecError) -> Self {
        ProtocolError(e.to_string())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InferRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<RequestInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResponseOutput {
    pub name: String,
    pub shape: Vec<usize>,
    pub datatype: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InferResponse {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub outputs: Vec<ResponseOutput>,
}

/// Splits a body into its JSON header and the binary tail.
pub fn split_body(body: &[u8], header_length: Option<usize>) -> Result<(&[u8], &[u8]), ProtocolError> {
    match header_length {
        None => Ok((body, &[])),
        Some(n) if n <= body.len() => Ok(body.split_at(n)),
        Some(n) => Err(ProtocolError(format!(
            "Inference-Header-Content-Length is {n} but the body has only {} bytes",
            body.len()
        ))),
    }
}

fn flatten_json(value: &Value, out: &mut Vec<Value>) -> Result<(), ProtocolError> {
    match value {
        Value::Array(items) => {
            for item in items {
                flatten_json(item, out)?;
            }
            Ok(())
        }
        // strings are kept so that "NaN" and "Infinity" (JSON has no literal for them) reach the
        // finiteness check and get its clear message
        Value::Number(_) | Value::Bool(_) | Value::String(_) => {
            out.push(value.clone());
            Ok(())
        }
        other => Err(ProtocolError(format!("tensor data holds a non-number: {other}"))),
    }
}

fn json_data(datatype: DataType, value: &Value) -> Result<WireData, ProtocolError> {
    let mut flat = Vec::new();
    flatten_json(value, &mut flat)?;
    let bad = |v: &Value| ProtocolError(format!("tensor data value {v} is not a valid {}", datatype.name()));
    Ok(match datatype {
        DataType::Fp32 => WireData::F32(
            flat.iter()
                .map(|v| match v {
                    Value::String(s) => s.parse::<f32>().map_err(|_| bad(v)),
                    _ => v.as_f64().map(|x| x as f32).ok_or_else(|| bad(v)),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Int64 => WireData::I64(
            flat.iter()
                .map(|v| v.as_i64().ok_or_else(|| bad(v)))
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => WireData::U8(
            flat.iter()
                .map(|v| v.as_u64().and_then(|x| u8::try_from(x).ok()).ok_or_else(|| bad(v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Decodes the request's single input tensor, from JSON data or from the binary tail; an int8
/// intermediate (a `UINT8` tensor with `int8_scale`/`int8_min`) comes back dequantized to FP32.
pub fn decode_input(request: &InferRequest, binary: &[u8]) -> Result<WireTensor, ProtocolError> {
    let tensor = decode_raw_input(request, binary)?;
    let range = Int8Range::from_parameters(request.inputs[0].parameters.as_ref()).map_err(ProtocolError)?;
    match range {
        Some(range) => Ok(quantize::dequantize(&tensor, range)?),
        None => Ok(tensor),
    }
}

fn decode_raw_input(request: &InferRequest, binary: &[u8]) -> Result<WireTensor, ProtocolError> {
    let input = match request.inputs.as_slice() {
        [one] => one,
        [] => return Err(ProtocolError("request has no inputs".into())),
        many => return Err(ProtocolError(format!("expected one input, got {}", many.len()))),
    };
    let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
        ProtocolError(format!(
            "input `{}` has unsupported datatype `{}` (supported: FP32, INT64, UINT8)",
            input.name, input.datatype
        ))
    })?;
    let shape: Vec<usize> = input
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| ProtocolError(format!("negative dimension {d} in shape"))))
        .collect::<Result<_, _>>()?;
    let elements = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| ProtocolError("shape is too large".into()))?;
    let binary_size = input
        .parameters
        .as_ref()
        .and_then(|p| p.get("binary_data_size"))
        .map(|v| v.as_u64().ok_or_else(|| ProtocolError("binary_data_size must be an integer".into())));
    match (binary_size, &input.data) {
        (Some(size), _) => {
            let size = size? as usize;
            if size != binary.len() {
                return Err(ProtocolError(format!(
                    "binary_data_size is {size} but {} binary bytes follow the header",
                    binary.len()
                )));
            }
            if size != elements * datatype.element_bytes() {
                return Err(ProtocolError(format!(
                    "shape {shape:?} of {} needs {} bytes, binary_data_size is {size}",
                    datatype.name(),
                    elements * datatype.element_bytes()
                )));
            }
            Ok(WireTensor::from_le_bytes(shape, datatype, binary)?)
        }
        (None, Some(data)) => Ok(WireTensor::new(shape, json_data(datatype, data)?)?),
        (None, None) => Err(ProtocolError(format!("input `{}` has neither data nor binary_data_size", input.name))),
    }
}

/// Reads an optional non-negative integer request parameter.
pub fn usize_parameter(request: &InferRequest, key: &str) -> Result<Option<usize>, ProtocolError> {
    match request.parameters.as_ref().and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|x| Some(x as usize))
            .ok_or_else(|| ProtocolError(format!("parameter `{key}` must be a non-negative integer, got {v}"))),
    }
}

pub fn string_parameter(request: &InferRequest, key: &str) -> Result<Option<String>, ProtocolError> {
    match request.parameters.as_ref().and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(ProtocolError(format!("parameter `{key}` must be a string, got {v}"))),
    }
}

/// Whether the client asked for binary output (request-level or per output).
pub fn wants_binary_output(request: &InferRequest) -> bool {
    let flag = |p: &Option<Map<String, Value>>, key: &str| {
        p.as_ref().and_then(|m| m.get(key)).and_then(Value::as_bool).unwrap_or(false)
    };
    flag(&request.parameters, "binary_data_output")
        || request
            .outputs
            .iter()
            .flatten()
            .any(|o| flag(&o.parameters, "binary_data"))
}

/// The JSON `data` array of a tensor.
pub fn json_values(tensor: &WireTensor) -> Value {
    match &tensor.data {
        WireData::F32(v) => Value::from(v.clone()),
        WireData::I64(v) => Value::from(v.clone()),
        WireData::U8(v) => Value::from(v.clone()),
    }
}

/// Encodes a request carrying one tensor in the binary extension: (body, header length).
/// `input_parameters` are added to the input's own (an int8 range, for one).
pub fn encode_binary_request(
    mut request: InferRequest,
    tensor: &WireTensor,
    input_parameters: Map<String, Value>,
) -> Result<(Vec<u8>, usize), ProtocolError> {
    let raw = tensor.to_le_bytes();
    let mut params = input_parameters;
    params.insert("binary_data_size".into(), Value::from(raw.len()));
    request.inputs = vec![RequestInput {
        name: "input".into(),
        shape: tensor.shape.iter().map(|&d| d as i64).collect(),
        datatype: tensor.datatype().name().into(),
        parameters: Some(params),
        data: None,
    }];
    let mut body = serde_json::to_vec(&request).map_err(|e| ProtocolError(e.to_string()))?;
    let header = body.len();
    body.extend_from_slice(&raw);
    Ok((body, header))
}

/// Decodes a response's first output, JSON or binary.
pub fn decode_response(body: &[u8], header_length: Option<usize>) -> Result<(InferResponse, WireTensor), ProtocolError> {
    let (json, binary) = split_body(body, header_length)?;
    let response: InferResponse =
        serde_json::from_slice(json).map_err(|e| ProtocolError(format!("malformed response: {e}")))?;
    let output = response
        .outputs
        .first()
        .ok_or_else(|| ProtocolError("response has no outputs".into()))?;
    let datatype = DataType::parse(&output.datatype)
        .ok_or_else(|| ProtocolError(format!("unsupported output datatype {}", output.datatype)))?;
    let tensor = match &output.data {
        Some(data) => WireTensor::new(output.shape.clone(), json_data(datatype, data)?)?,
        None => WireTensor::from_le_bytes(output.shape.clone(), datatype, binary)?,
    };
    Ok((response, tensor))
}
