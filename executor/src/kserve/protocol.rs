//! The Open Inference Protocol (KServe V2) REST message types, and the binary tensor data
//! extension (`Inference-Header-Content-Length`) that large intermediate tensors need.
//!
//! Parsing is strict and never panics: every malformed field becomes a [`ProtocolError`] that the
//! worker turns into a 400 with `{"error": ...}`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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
    /// Kept as its JSON text until the datatype is known, then decoded straight into a
    /// typed vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
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
    /// Kept as its JSON text until the datatype is known, then decoded straight into a
    /// typed vector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Box<RawValue>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InferResponse {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// KServe's Python server writes `"parameters": null` when it has none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub parameters: Map<String, Value>,
    pub outputs: Vec<ResponseOutput>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(deserializer)?.unwrap_or_default())
}

/// A worker's load, from `GET /v2/stats` (an rlsched extension: the protocol has no such
/// endpoint, and reading it must not wait behind a computation as an inference would).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Inference requests whose body the worker has read, since it started.
    pub received: usize,
    /// Requests waiting for the compute slot.
    pub queued: usize,
    /// Computations running now, abandoned ones included (a computation cannot be cancelled).
    pub in_flight: usize,
    /// The most computations that ever ran at once: 1 while the one-at-a-time rule holds.
    pub max_in_flight: usize,
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

/// An element type that JSON tensor data decodes into.
trait Element: Sized {
    fn from_i64(x: i64) -> Option<Self>;
    fn from_u64(x: u64) -> Option<Self>;
    fn from_f64(x: f64) -> Option<Self>;
    fn from_str(s: &str) -> Option<Self>;
}

impl Element for f32 {
    fn from_i64(x: i64) -> Option<Self> {
        Some(x as f32)
    }
    fn from_u64(x: u64) -> Option<Self> {
        Some(x as f32)
    }
    fn from_f64(x: f64) -> Option<Self> {
        Some(x as f32)
    }
    // "NaN" and "Infinity" (JSON has no literal for them) parse, and reach the finiteness
    // check and its clear message
    fn from_str(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

impl Element for i64 {
    fn from_i64(x: i64) -> Option<Self> {
        Some(x)
    }
    fn from_u64(x: u64) -> Option<Self> {
        i64::try_from(x).ok()
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl Element for u8 {
    fn from_i64(x: i64) -> Option<Self> {
        u8::try_from(x).ok()
    }
    fn from_u64(x: u64) -> Option<Self> {
        u8::try_from(x).ok()
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

/// Flattens nested JSON arrays of numbers straight into a typed vector, so that decoding costs
/// the vector and nothing per element beyond it (a `serde_json::Value` per number cost 150
/// times the body). At most `cap` elements are taken: the shape's count.
struct Flatten<'a, T> {
    out: &'a mut Vec<T>,
    cap: usize,
    datatype: DataType,
}

impl<T> Flatten<'_, T> {
    fn push<E: serde::de::Error>(&mut self, value: Option<T>, shown: impl std::fmt::Display) -> Result<(), E> {
        let value = value.ok_or_else(|| E::custom(format!("tensor data value {shown} is not a valid {}", self.datatype.name())))?;
        if self.out.len() >= self.cap {
            return Err(E::custom(format!("tensor data has more than the {} values its shape holds", self.cap)));
        }
        self.out.push(value);
        Ok(())
    }
}

impl<'de, T: Element> serde::de::DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Element> serde::de::Visitor<'de> for Flatten<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "numbers, or arrays of them")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (out, cap, datatype) = (self.out, self.cap, self.datatype);
        while seq.next_element_seed(Flatten { out: &mut *out, cap, datatype })?.is_some() {}
        Ok(())
    }

    fn visit_i64<E: serde::de::Error>(mut self, x: i64) -> Result<(), E> {
        self.push(T::from_i64(x), x)
    }

    fn visit_u64<E: serde::de::Error>(mut self, x: u64) -> Result<(), E> {
        self.push(T::from_u64(x), x)
    }

    fn visit_f64<E: serde::de::Error>(mut self, x: f64) -> Result<(), E> {
        self.push(T::from_f64(x), x)
    }

    fn visit_str<E: serde::de::Error>(mut self, s: &str) -> Result<(), E> {
        self.push(T::from_str(s), format!("{s:?}"))
    }

    fn visit_bool<E: serde::de::Error>(mut self, b: bool) -> Result<(), E> {
        self.push(None, b)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Err(E::custom("tensor data holds a non-number: null"))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(serde::de::Error::custom("tensor data holds a non-number: an object"))
    }
}

fn flatten<T: Element>(datatype: DataType, raw: &RawValue, cap: usize) -> Result<Vec<T>, ProtocolError> {
    // never reserve more than the text could hold: a shape may promise 2^28 values it lacks
    let mut out = Vec::with_capacity(cap.min(raw.get().len() / 2 + 1));
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    serde::de::DeserializeSeed::deserialize(Flatten { out: &mut out, cap, datatype }, &mut deserializer)
        .map_err(|e| ProtocolError(e.to_string()))?;
    Ok(out)
}

/// Decodes JSON tensor data of `datatype`, at most `cap` values.
fn json_data(datatype: DataType, raw: &RawValue, cap: usize) -> Result<WireData, ProtocolError> {
    Ok(match datatype {
        DataType::Fp32 => WireData::F32(flatten(datatype, raw, cap)?),
        DataType::Int64 => WireData::I64(flatten(datatype, raw, cap)?),
        DataType::Uint8 => WireData::U8(flatten(datatype, raw, cap)?),
    })
}

/// Most dimensions an input may have. Every workload takes rank 2 to 4; a small bound keeps a
/// hostile shape cheap to refuse.
pub const MAX_RANK: usize = 8;

/// Most elements an input may have, whatever its datatype. 2^28 (1 GiB as FP32) is far above
/// what a worker's body limit lets through, and keeps every byte count far from overflow.
pub const MAX_ELEMENTS: usize = 1 << 28;

fn input_error(input: &RequestInput, message: impl std::fmt::Display) -> ProtocolError {
    ProtocolError(format!("input `{}`: {message}", input.name))
}

/// The request's one input; the worker runs single-input networks only.
pub fn single_input(request: &InferRequest) -> Result<&RequestInput, ProtocolError> {
    match request.inputs.as_slice() {
        [one] => Ok(one),
        [] => Err(ProtocolError("request has no inputs".into())),
        many => Err(ProtocolError(format!("expected one input, got {}", many.len()))),
    }
}

/// Checks a shape against [`MAX_RANK`] and [`MAX_ELEMENTS`]; returns its element count.
/// `what` names the tensor in the message (`input `x``, `output `y``).
pub fn check_shape(what: &str, shape: &[usize]) -> Result<usize, ProtocolError> {
    if shape.len() > MAX_RANK {
        return Err(ProtocolError(format!(
            "{what}: `shape` has rank {}, more than the {MAX_RANK} this worker accepts",
            shape.len()
        )));
    }
    match shape.iter().try_fold(1usize, |count, &d| count.checked_mul(d)) {
        Some(count) if count <= MAX_ELEMENTS => Ok(count),
        _ => Err(ProtocolError(format!(
            "{what}: `shape` {shape:?} has more than the {MAX_ELEMENTS} elements this worker accepts"
        ))),
    }
}

/// Decodes the request's single input tensor, from JSON data or from the binary tail; an int8
/// intermediate (a `UINT8` tensor with `int8_scale`/`int8_min`) comes back dequantized to FP32.
/// Every error names the input and the field at fault.
pub fn decode_input(request: &InferRequest, binary: &[u8]) -> Result<WireTensor, ProtocolError> {
    let input = single_input(request)?;
    let tensor = decode_raw_input(input, binary)?;
    let range = Int8Range::from_parameters(input.parameters.as_ref()).map_err(|e| input_error(input, format!("`parameters`: {e}")))?;
    match range {
        Some(range) => quantize::dequantize(&tensor, range).map_err(|e| input_error(input, e)),
        None => Ok(tensor),
    }
}

fn decode_raw_input(input: &RequestInput, binary: &[u8]) -> Result<WireTensor, ProtocolError> {
    let datatype = DataType::parse(&input.datatype).ok_or_else(|| {
        input_error(
            input,
            format!("unsupported `datatype` `{}` (supported: FP32, INT64, UINT8)", input.datatype),
        )
    })?;
    if input.shape.len() > MAX_RANK {
        // checked before the dimensions are copied, so a million-dimension shape costs nothing
        return Err(input_error(input, format!("`shape` has rank {}, more than the {MAX_RANK} this worker accepts", input.shape.len())));
    }
    let shape: Vec<usize> = input
        .shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| input_error(input, format!("`shape` has a negative dimension {d}"))))
        .collect::<Result<_, _>>()?;
    let elements = check_shape(&format!("input `{}`", input.name), &shape)?;
    let binary_size = input.parameters.as_ref().and_then(|p| p.get("binary_data_size"));
    match (binary_size, &input.data) {
        (Some(size), None) => {
            let size = size.as_u64().and_then(|s| usize::try_from(s).ok()).ok_or_else(|| {
                input_error(input, format!("`parameters.binary_data_size` must be a non-negative integer, got {size}"))
            })?;
            // cannot overflow below MAX_ELEMENTS, but a wrong cap must not turn into a panic
            let needed = elements.checked_mul(datatype.element_bytes());
            if needed != Some(size) {
                return Err(input_error(
                    input,
                    format!(
                        "`parameters.binary_data_size` is {size} but shape {shape:?} of {} needs {} bytes",
                        datatype.name(),
                        needed.map_or_else(|| "more than usize::MAX".to_string(), |n| n.to_string())
                    ),
                ));
            }
            if size != binary.len() {
                return Err(input_error(
                    input,
                    format!("`parameters.binary_data_size` is {size} but {} binary bytes follow the header", binary.len()),
                ));
            }
            WireTensor::from_le_bytes(shape, datatype, binary).map_err(|e| input_error(input, format!("binary data: {e}")))
        }
        (Some(_), Some(_)) => Err(input_error(
            input,
            "has both `data` and `parameters.binary_data_size`; send the tensor one way",
        )),
        (None, Some(data)) => {
            if !binary.is_empty() {
                return Err(input_error(
                    input,
                    format!(
                        "{} binary bytes follow the header but the input has no `parameters.binary_data_size`",
                        binary.len()
                    ),
                ));
            }
            let values = json_data(datatype, data, elements).map_err(|e| input_error(input, format!("`data`: {}", e.0)))?;
            WireTensor::new(shape, values).map_err(|e| input_error(input, format!("`data`: {e}")))
        }
        (None, None) => Err(input_error(input, "has neither `data` nor `parameters.binary_data_size`")),
    }
}

/// Reads an optional non-negative integer request parameter.
pub fn usize_parameter(request: &InferRequest, key: &str) -> Result<Option<usize>, ProtocolError> {
    match request.parameters.as_ref().and_then(|p| p.get(key)) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .map(Some)
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

/// Whether the client asked for binary output (request-level or per output). A flag that is
/// not a boolean is an error: ignoring `"true"` would silently answer in the other encoding.
pub fn wants_binary_output(request: &InferRequest) -> Result<bool, ProtocolError> {
    let flag = |p: &Option<Map<String, Value>>, key: &str, owner: &str| match p.as_ref().and_then(|m| m.get(key)) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(ProtocolError(format!("{owner}parameter `{key}` must be a boolean, got {v}"))),
    };
    let mut wanted = flag(&request.parameters, "binary_data_output", "")?;
    for output in request.outputs.iter().flatten() {
        wanted |= flag(&output.parameters, "binary_data", &format!("output `{}`: ", output.name))?;
    }
    Ok(wanted)
}

/// The JSON `data` array of a tensor, as its text.
pub fn json_raw(tensor: &WireTensor) -> Result<Box<RawValue>, ProtocolError> {
    let raw = match &tensor.data {
        WireData::F32(v) => serde_json::value::to_raw_value(v),
        WireData::I64(v) => serde_json::value::to_raw_value(v),
        WireData::U8(v) => serde_json::value::to_raw_value(v),
    };
    raw.map_err(|e| ProtocolError(e.to_string()))
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
    request: InferRequest,
    tensor: &WireTensor,
    input_parameters: Map<String, Value>,
) -> Result<(Vec<u8>, usize), ProtocolError> {
    let (body, header) = encode_request(request, "input", tensor, input_parameters, true, 0)?;
    Ok((body, header.unwrap_or(0)))
}

/// Encodes a request carrying one tensor named `name`, in the binary extension (`binary`) or as
/// JSON `data` (which every Open Inference Protocol server reads; the binary extension is
/// optional): (body, the JSON header's length when binary). `pad` spaces follow the JSON,
/// which any JSON parser skips: the active probe sends the same request with and without them,
/// so that the server's compute cancels out of the difference.
pub fn encode_request(
    mut request: InferRequest,
    name: &str,
    tensor: &WireTensor,
    input_parameters: Map<String, Value>,
    binary: bool,
    pad: usize,
) -> Result<(Vec<u8>, Option<usize>), ProtocolError> {
    let error = |e: serde_json::Error| ProtocolError(e.to_string());
    let mut params = input_parameters;
    let raw = binary.then(|| tensor.to_le_bytes());
    if let Some(raw) = &raw {
        params.insert("binary_data_size".into(), Value::from(raw.len()));
    }
    request.inputs = vec![RequestInput {
        name: name.into(),
        shape: tensor.shape.iter().map(|&d| d as i64).collect(),
        datatype: tensor.datatype().name().into(),
        parameters: (!params.is_empty()).then_some(params),
        data: if binary { None } else { Some(json_raw(tensor)?) },
    }];
    let mut body = serde_json::to_vec(&request).map_err(error)?;
    body.resize(body.len() + pad, b' ');
    let header = body.len();
    match raw {
        Some(raw) => {
            body.extend_from_slice(&raw);
            Ok((body, Some(header)))
        }
        None => Ok((body, None)),
    }
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
    let what = format!("output `{}`", output.name);
    let datatype = DataType::parse(&output.datatype)
        .ok_or_else(|| ProtocolError(format!("{what}: unsupported `datatype` {}", output.datatype)))?;
    // a reply is input too: a broken or hostile worker must not make the client panic
    let count = check_shape(&what, &output.shape)?;
    let tensor = match &output.data {
        Some(data) => WireTensor::new(output.shape.clone(), json_data(datatype, data, count)?),
        None => WireTensor::from_le_bytes(output.shape.clone(), datatype, binary),
    }
    .map_err(|e| ProtocolError(format!("{what}: {e}")))?;
    Ok((response, tensor))
}
