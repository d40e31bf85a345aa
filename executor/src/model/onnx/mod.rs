//! Import of a user's ONNX model: the file is decoded with onnx-ir's ONNX protobuf bindings,
//! checked (size, opset, operators, declared initializer sizes, static input shape), lowered to
//! the operators of [`ops`] with weights taken from its initializers and shapes inferred here,
//! and cut into stages at the boundaries of [`cuts`]. [`OnnxModel::build`] places it on a device
//! as a [`Network`] whose stages are [`OnnxSegment`] layers; [`prune`] derives the narrower
//! graphs of the pruned variants from the same lowered graph.
//!
//! onnx-ir's full pipeline is not used for the lowering: it renames every node and value
//! (`conv2d1_out1`), which loses the names an error must cite and that intermediate tensors are
//! compared by, and it rewrites the graph (Gemm into Linear, fusions) before we see it. Its
//! protobuf layer is what it exports for callers that read models themselves.

pub mod calibration;
pub mod cuts;
pub mod export;
pub mod ops;
pub mod prune;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use onnx_ir::{AttributeProto, Message, ModelProto, NodeProto, TensorProto};
use thiserror::Error;

pub use cuts::Boundary;
pub use ops::{HostTensor, OpKind, OpNode, Operand, Pool2d, ValueId, MAX_RANK};

use crate::model::int8::{QConv, QDense};
use crate::model::layers::{Act, ConvGeometry, Layer};
use crate::model::network::Stage;
use crate::{Activation, Network};

/// The largest file imported (protobuf itself stops at 2 GiB).
pub const MAX_FILE_BYTES: usize = 1 << 30;
/// The most elements all constants together may hold (1 GiB of f32).
pub const MAX_CONST_ELEMENTS: usize = 1 << 28;
/// The most elements one intermediate value may hold at import (batch of one).
pub const MAX_VALUE_ELEMENTS: usize = 1 << 28;
/// The most nodes a graph may have.
pub const MAX_NODES: usize = 100_000;
/// The oldest default-domain opset accepted.
pub const MIN_OPSET: i64 = 9;

/// The operators the importer lowers (ONNX `op_type`s of the default domain).
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv", "BatchNormalization", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Add", "Sub", "Mul", "Div",
    "Sum", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "LRN", "Gemm", "MatMul", "Flatten", "Reshape",
    "Transpose", "Softmax", "Dropout", "Identity", "Constant", "ConstantOfShape", "Unsqueeze", "Squeeze", "Cast",
];

#[derive(Debug, Error)]
pub enum OnnxError {
    #[error("cannot read ONNX file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {bytes} bytes is larger than the {limit}-byte limit for an ONNX model")]
    TooLarge { path: String, bytes: u64, limit: usize },
    #[error("{path}: not a valid ONNX model (truncated or corrupt protobuf): {reason}")]
    Decode { path: String, reason: String },
    #[error("{path}: {reason}")]
    Model { path: String, reason: String },
    #[error("{path}: opset {found} of the default domain is older than {MIN_OPSET}; convert it first: python3 -c \"import onnx; from onnx import version_converter as v; onnx.save(v.convert_version(onnx.load('{path}'), 13), 'converted.onnx')\"")]
    OldOpset { path: String, found: i64 },
    #[error("{path}: unsupported operator(s): {summary} (supported: {supported})")]
    Unsupported { path: String, summary: String, supported: String },
    #[error("{path}: input `{input}` has dynamic dimensions {dims}; give its shape with --input-shape (e.g. --input-shape 1,3,224,224)")]
    DynamicInput { path: String, input: String, dims: String },
    #[error("{path}: initializer `{name}`: {reason}")]
    Initializer { path: String, name: String, reason: String },
    #[error("{path}: node `{node}` ({op}): {reason}")]
    Node { path: String, node: String, op: String, reason: String },
}

/// What the caller may say about a model beyond the file.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The input's full shape, batch first: required where the file leaves dimensions other
    /// than the batch symbolic.
    pub input_shape: Option<Vec<usize>>,
}

/// A value of the lowered graph: its shape for the import batch, and whether its first axis is
/// the batch (so that its shape at run time is this one with the first axis replaced).
#[derive(Clone, Debug)]
pub struct ValueInfo {
    pub name: String,
    pub dims: Vec<usize>,
    pub batched: bool,
}

/// An imported model on the host: lowered graph, constants, stages. Device-free and shareable.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    pub name: String,
    pub path: String,
    /// Content hash of the file (hex), what a device and a worker compare.
    pub hash: String,
    pub file_bytes: usize,
    pub opset: i64,
    pub input_name: String,
    pub output_name: String,
    /// ONNX nodes in the file (constants included): the model's op count.
    pub onnx_nodes: usize,
    pub ops: Vec<OpNode>,
    pub values: Vec<ValueInfo>,
    pub consts: Vec<HostTensor>,
    pub input: ValueId,
    pub output: ValueId,
    /// The batch the file declares (1 where symbolic).
    pub import_batch: usize,
    /// Whether every value keeps the batch on its first axis: if not, only `import_batch` runs.
    pub batch_free: bool,
    /// Stage boundaries in op order: `boundaries[i]` is the input of stage `i`; the first is the
    /// graph input, the last the graph output.
    pub boundaries: Vec<Boundary>,
}

/// A 128-bit content hash (two FNV-1a lanes): enough for a device and a worker to tell two files
/// apart, not a defence against a forger.
pub fn content_hash(bytes: &[u8]) -> String {
    let lane = |offset: u64| {
        bytes.iter().fold(offset, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
    };
    format!("{:016x}{:016x}", lane(0xcbf2_9ce4_8422_2325), lane(0x6c62_272e_07bb_0142))
}

/// Reads and imports a file.
pub fn import_file(name: &str, path: &Path, options: &ImportOptions) -> Result<OnnxModel, OnnxError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|source| OnnxError::Read { path: shown.clone(), source })?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(OnnxError::TooLarge { path: shown, bytes: meta.len(), limit: MAX_FILE_BYTES });
    }
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Read { path: shown.clone(), source })?;
    import_bytes(name, &shown, &bytes, options)
}

/// Imports a model held in memory; `path` names it in errors. Never panics on any bytes.
pub fn import_bytes(name: &str, path: &str, bytes: &[u8], options: &ImportOptions) -> Result<OnnxModel, OnnxError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(OnnxError::TooLarge { path: path.into(), bytes: bytes.len() as u64, limit: MAX_FILE_BYTES });
    }
    let model = ModelProto::parse_from_bytes(bytes)
        .map_err(|e| OnnxError::Decode { path: path.into(), reason: e.to_string() })?;
    let mut importer = Importer::new(path, &model, options)?;
    importer.lower(&model)?;
    let Importer { ops, values, consts, slots, input, import_batch, opset, input_name, .. } = importer;
    let graph = model.graph.as_ref().expect("checked in Importer::new");
    let model_error = |reason: String| OnnxError::Model { path: path.into(), reason };
    if graph.output.len() != 1 {
        return Err(model_error(format!("the graph has {} outputs; rlsched serves models with exactly one", graph.output.len())));
    }
    let output_name = graph.output[0].name.clone();
    let output = match slots.get(&output_name) {
        Some(Slot::Value(id)) => *id,
        Some(Slot::Const(_)) => return Err(model_error(format!("the output `{output_name}` is a constant"))),
        None => return Err(model_error(format!("the output `{output_name}` is produced by no node"))),
    };
    if ops.is_empty() {
        return Err(model_error("the graph has no operator to run".into()));
    }
    let batch_free = values.iter().all(|v| v.batched);
    let boundaries = cuts::boundaries(&ops, &values, input, output);
    Ok(OnnxModel {
        name: name.to_string(),
        path: path.to_string(),
        hash: content_hash(bytes),
        file_bytes: bytes.len(),
        opset,
        input_name,
        output_name,
        onnx_nodes: graph.node.len(),
        ops,
        values,
        consts,
        input,
        output,
        import_batch,
        batch_free,
        boundaries,
    })
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Value(ValueId),
    Const(usize),
}

struct Importer<'a> {
    path: &'a str,
    opset: i64,
    ops: Vec<OpNode>,
    values: Vec<ValueInfo>,
    consts: Vec<HostTensor>,
    const_elements: usize,
    slots: HashMap<String, Slot>,
    input: ValueId,
    input_name: String,
    import_batch: usize,
}

fn attr<'n>(node: &'n NodeProto, name: &str) -> Option<&'n AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("{}#{index}", node.op_type)
    } else {
        node.name.clone()
    }
}

/// numpy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() < rank { 1 } else { s[i + s.len() - rank] };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

fn checked_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

/// Resolves a possibly negative axis against `rank` (`inclusive`: `rank` itself is valid, as
/// for Unsqueeze).
fn axis(value: i64, rank: usize, inclusive: bool) -> Option<usize> {
    let limit = rank as i64 + inclusive as i64;
    let resolved = if value < 0 { value + limit } else { value };
    (0..limit).contains(&resolved).then_some(resolved as usize)
}

impl<'a> Importer<'a> {
    fn new(path: &'a str, model: &ModelProto, options: &ImportOptions) -> Result<Self, OnnxError> {
        let model_error = |reason: String| OnnxError::Model { path: path.into(), reason };
        let graph = model.graph.as_ref().ok_or_else(|| model_error("the file has no graph".into()))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version)
            .ok_or_else(|| model_error("the model imports no opset of the default domain".into()))?;
        if opset < MIN_OPSET {
            return Err(OnnxError::OldOpset { path: path.into(), found: opset });
        }
        if graph.node.len() > MAX_NODES {
            return Err(model_error(format!("{} nodes is more than the {MAX_NODES} accepted", graph.node.len())));
        }
        // every unsupported operator at once, counted, with the first node of each
        let mut unsupported: Vec<(String, usize, String)> = Vec::new();
        for (index, node) in graph.node.iter().enumerate() {
            let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
            if default_domain && SUPPORTED_OPS.contains(&node.op_type.as_str()) {
                continue;
            }
            let op = if default_domain { node.op_type.clone() } else { format!("{}::{}", node.domain, node.op_type) };
            match unsupported.iter_mut().find(|(o, _, _)| *o == op) {
                Some(entry) => entry.1 += 1,
                None => unsupported.push((op, 1, node_label(node, index))),
            }
        }
        if !unsupported.is_empty() {
            let summary = unsupported
                .iter()
                .map(|(op, count, first)| format!("{op} ×{count} (first: node `{first}`)"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(OnnxError::Unsupported { path: path.into(), summary, supported: SUPPORTED_OPS.join(", ") });
        }
        let mut importer = Importer {
            path,
            opset,
            ops: Vec::new(),
            values: Vec::new(),
            consts: Vec::new(),
            const_elements: 0,
            slots: HashMap::new(),
            input: 0,
            input_name: String::new(),
            import_batch: 1,
        };
        for init in &graph.initializer {
            let host = importer.tensor(init, &init.name)?;
            let id = importer.push_const(host, &init.name)?;
            importer.slots.insert(init.name.clone(), Slot::Const(id));
        }
        let runtime: Vec<_> = graph.input.iter().filter(|i| !importer.slots.contains_key(&i.name)).collect();
        if runtime.len() != 1 {
            let names: Vec<_> = runtime.iter().map(|i| i.name.as_str()).collect();
            return Err(model_error(format!(
                "the graph has {} runtime inputs ({}); rlsched imports models with exactly one",
                runtime.len(),
                names.join(", ")
            )));
        }
        let input = runtime[0];
        let tensor_type = input.type_.tensor_type();
        if tensor_type.elem_type != 1 {
            return Err(model_error(format!("input `{}` has element type {}; only FLOAT (1) is supported", input.name, tensor_type.elem_type)));
        }
        let declared: Vec<Option<usize>> = tensor_type
            .shape
            .dim
            .iter()
            .map(|d| (d.has_dim_value() && d.dim_value() > 0).then(|| d.dim_value() as usize))
            .collect();
        let shown = declared
            .iter()
            .zip(&tensor_type.shape.dim)
            .map(|(d, dim)| d.map_or_else(|| if dim.dim_param().is_empty() { "?".to_string() } else { dim.dim_param().to_string() }, |v| v.to_string()))
            .collect::<Vec<_>>()
            .join(", ");
        let dims = match &options.input_shape {
            Some(given) => {
                let fits = given.len() == declared.len()
                    && given.iter().zip(&declared).all(|(g, d)| *g > 0 && d.is_none_or(|d| d == *g));
                if !fits {
                    return Err(model_error(format!("--input-shape {given:?} does not fit input `{}` [{shown}]", input.name)));
                }
                given.clone()
            }
            None => {
                if declared.is_empty() || declared[1..].iter().any(Option::is_none) {
                    return Err(OnnxError::DynamicInput { path: path.into(), input: input.name.clone(), dims: format!("[{shown}]") });
                }
                // a symbolic batch is the norm for exported models; it runs at any batch
                let mut dims: Vec<usize> = declared.iter().map(|d| d.unwrap_or(1)).collect();
                dims[0] = declared[0].unwrap_or(1);
                dims
            }
        };
        if dims.len() > MAX_RANK || checked_count(&dims).is_none_or(|n| n > MAX_VALUE_ELEMENTS) {
            return Err(model_error(format!("input `{}` of shape {dims:?} is too large or of rank above {MAX_RANK}", input.name)));
        }
        importer.import_batch = dims[0];
        importer.input_name = input.name.clone();
        importer.values.push(ValueInfo { name: input.name.clone(), dims, batched: true });
        importer.slots.insert(input.name.clone(), Slot::Value(0));
        Ok(importer)
    }

    fn push_const(&mut self, host: HostTensor, name: &str) -> Result<usize, OnnxError> {
        self.const_elements = self.const_elements.saturating_add(host.values.len());
        if self.const_elements > MAX_CONST_ELEMENTS || host.dims.len() > MAX_RANK {
            return Err(OnnxError::Initializer {
                path: self.path.into(),
                name: name.into(),
                reason: format!("constants exceed {MAX_CONST_ELEMENTS} elements in all, or rank {MAX_RANK}"),
            });
        }
        self.consts.push(host);
        Ok(self.consts.len() - 1)
    }

    /// A TensorProto as f32 on the host, its declared size checked against the bytes it holds
    /// before anything is allocated.
    fn tensor(&self, t: &TensorProto, name: &str) -> Result<HostTensor, OnnxError> {
        let fail = |reason: String| OnnxError::Initializer { path: self.path.into(), name: name.into(), reason };
        if !t.external_data.is_empty() || t.data_location.value() == 1 {
            return Err(fail("external data files are not supported; save the model with its weights inside".into()));
        }
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| fail(format!("negative dimension {d}"))))
            .collect::<Result<_, _>>()?;
        let count = checked_count(&dims).filter(|&n| n <= MAX_CONST_ELEMENTS).ok_or_else(|| {
            fail(format!("declares shape {dims:?}, more than the {MAX_CONST_ELEMENTS} elements accepted"))
        })?;
        let width = match t.data_type {
            1 | 6 => 4,
            7 | 11 => 8,
            other => return Err(fail(format!("element type {other} is not supported (FLOAT, DOUBLE, INT32, INT64 are)"))),
        };
        let values: Vec<f32> = if !t.raw_data.is_empty() {
            if t.raw_data.len() != count * width {
                return Err(fail(format!(
                    "declares shape {dims:?} ({} bytes) but holds {} bytes",
                    count * width,
                    t.raw_data.len()
                )));
            }
            let raw = &t.raw_data;
            match t.data_type {
                1 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                6 => raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
                7 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
                _ => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
            }
        } else {
            let held = match t.data_type {
                1 => t.float_data.len(),
                6 => t.int32_data.len(),
                7 => t.int64_data.len(),
                _ => t.double_data.len(),
            };
            if held != count {
                return Err(fail(format!("declares shape {dims:?} ({count} elements) but holds {held}")));
            }
            match t.data_type {
                1 => t.float_data.clone(),
                6 => t.int32_data.iter().map(|&v| v as f32).collect(),
                7 => t.int64_data.iter().map(|&v| v as f32).collect(),
                _ => t.double_data.iter().map(|&v| v as f32).collect(),
            }
        };
        if values.iter().any(|v| !v.is_finite()) && t.data_type == 1 {
            return Err(fail("holds a non-finite value".into()));
        }
        Ok(HostTensor { dims, values })
    }

    fn lower(&mut self, model: &ModelProto) -> Result<(), OnnxError> {
        let graph = model.graph.as_ref().expect("checked in new");
        for (index, node) in graph.node.iter().enumerate() {
            self.lower_node(node, index)?;
        }
        Ok(())
    }

    fn lower_node(&mut self, node: &NodeProto, index: usize) -> Result<(), OnnxError> {
        let label = node_label(node, index);
        let path = self.path;
        let fail = |reason: String| OnnxError::Node { path: path.into(), node: label.clone(), op: node.op_type.clone(), reason };
        let op = node.op_type.as_str();
        // inputs, empty names being absent optional inputs
        let mut inputs: Vec<Option<Slot>> = Vec::new();
        for name in &node.input {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            let slot = self.slots.get(name).copied().ok_or_else(|| fail(format!("input `{name}` is produced by no earlier node")))?;
            inputs.push(Some(slot));
        }
        let out_name = node.output.first().cloned().ok_or_else(|| fail("the node has no output".into()))?;
        let need = |i: usize| inputs.get(i).copied().flatten().ok_or_else(|| fail(format!("input {i} is missing")));
        let need_const = |i: usize| match need(i)? {
            Slot::Const(c) => Ok(c),
            Slot::Value(_) => Err(fail(format!("input {i} must be a constant (an initializer); a computed one is not supported"))),
        };
        let all_const = inputs.iter().flatten().all(|s| matches!(s, Slot::Const(_)));
        let dims_of = |slot: Slot, this: &Self| match slot {
            Slot::Value(v) => this.values[v].dims.clone(),
            Slot::Const(c) => this.consts[c].dims.clone(),
        };

        // constants and operators folded on constants
        match op {
            "Constant" => {
                let a = node.attribute.first().ok_or_else(|| fail("no value attribute".into()))?;
                let host = match a.name.as_str() {
                    "value" => self.tensor(&a.t, &out_name)?,
                    "value_float" => HostTensor { dims: vec![], values: vec![a.f] },
                    "value_floats" => HostTensor { dims: vec![a.floats.len()], values: a.floats.clone() },
                    "value_int" => HostTensor { dims: vec![], values: vec![a.i as f32] },
                    "value_ints" => HostTensor { dims: vec![a.ints.len()], values: a.ints.iter().map(|&v| v as f32).collect() },
                    other => return Err(fail(format!("value attribute `{other}` is not supported"))),
                };
                return self.bind_const(&out_name, host);
            }
            "ConstantOfShape" => {
                let shape = &self.consts[need_const(0)?];
                let dims: Vec<usize> = shape
                    .values
                    .iter()
                    .map(|&v| (v >= 0.0).then_some(v as usize).ok_or_else(|| fail(format!("negative dimension {v}"))))
                    .collect::<Result<_, _>>()?;
                let count = checked_count(&dims)
                    .filter(|&n| n <= MAX_CONST_ELEMENTS.saturating_sub(self.const_elements))
                    .ok_or_else(|| fail(format!("shape {dims:?} is more than the {MAX_CONST_ELEMENTS} constant elements accepted")))?;
                let fill = match attr(node, "value") {
                    Some(a) => *self.tensor(&a.t, &out_name)?.values.first().unwrap_or(&0.0),
                    None => 0.0,
                };
                return self.bind_const(&out_name, HostTensor { dims, values: vec![fill; count] });
            }
            "Identity" | "Dropout" | "Cast" | "Unsqueeze" | "Squeeze" | "Reshape" | "Flatten" if all_const && need(0).is_ok() => {
                let source = self.consts[need_const(0)?].clone();
                let dims = self.reshaped_dims(node, &inputs, &source.dims, op).map_err(&fail)?;
                return self.bind_const(&out_name, HostTensor { dims, values: source.values });
            }
            _ => {}
        }
        if all_const {
            return Err(fail("all inputs are constants and this operator is not folded at import".into()));
        }
        if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) && !matches!(op, "Dropout" | "BatchNormalization" | "MaxPool") {
            return Err(fail("only the first output is supported".into()));
        }
        let x_slot = need(0)?;
        let x_dims = dims_of(x_slot, self);
        let x_batched = match x_slot {
            Slot::Value(v) => self.values[v].batched,
            Slot::Const(_) => false,
        };
        let operands: Vec<Operand> = inputs
            .iter()
            .flatten()
            .map(|s| match s {
                Slot::Value(v) => Operand::Value(*v),
                Slot::Const(c) => Operand::Const(*c),
            })
            .collect();
        let rank4 = |dims: &[usize]| if dims.len() == 4 { Ok(()) } else { Err(fail(format!("only 2-D (rank-4 NCHW) inputs are supported, got {dims:?}"))) };
        let positive = |values: &[i64], what: &str| -> Result<Vec<usize>, OnnxError> {
            values
                .iter()
                .map(|&v| if v > 0 && v < 1 << 20 { Ok(v as usize) } else { Err(fail(format!("{what} {v} is out of range"))) })
                .collect()
        };
        let pair = |v: Vec<usize>, what: &str| -> Result<[usize; 2], OnnxError> {
            match v.as_slice() {
                [a, b] => Ok([*a, *b]),
                _ => Err(fail(format!("{what} must have two values for a 2-D operator, got {v:?}"))),
            }
        };
        let pads_of = |kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2], dims: &[usize]| -> Result<[(usize, usize); 2], OnnxError> {
            let auto = attr(node, "auto_pad").map(|a| String::from_utf8_lossy(&a.s).to_string()).unwrap_or_else(|| "NOTSET".into());
            match auto.as_str() {
                "NOTSET" | "" => {
                    let pads = attr_ints(node, "pads").unwrap_or_else(|| vec![0; 4]);
                    if pads.len() != 4 || pads.iter().any(|&p| !(0..1 << 20).contains(&p)) {
                        return Err(fail(format!("pads {pads:?} must be four values >= 0")));
                    }
                    Ok([(pads[0] as usize, pads[2] as usize), (pads[1] as usize, pads[3] as usize)])
                }
                "VALID" => Ok([(0, 0), (0, 0)]),
                "SAME_UPPER" | "SAME_LOWER" => {
                    let mut out = [(0, 0); 2];
                    for axis in 0..2 {
                        let input = dims[2 + axis];
                        let wanted = input.div_ceil(stride[axis]);
                        let span = dilation[axis] * (kernel[axis] - 1) + 1;
                        let total = ((wanted - 1) * stride[axis] + span).saturating_sub(input);
                        let small = total / 2;
                        out[axis] = if auto == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                    }
                    Ok(out)
                }
                other => Err(fail(format!("auto_pad `{other}` is not supported"))),
            }
        };

        let mut batched = x_batched;
        let (kind, out_dims, flops, operands) = match op {
            "Conv" => {
                rank4(&x_dims)?;
                let w = need_const(1)?;
                let w_dims = self.consts[w].dims.clone();
                if w_dims.len() != 4 {
                    return Err(fail(format!("weight of shape {w_dims:?} is not rank 4")));
                }
                let groups = attr_i(node, "group", 1);
                let groups = positive(&[groups], "group")?[0];
                let kernel = [w_dims[2], w_dims[3]];
                let stride = pair(positive(&attr_ints(node, "strides").unwrap_or(vec![1, 1]), "stride")?, "strides")?;
                let dilation = pair(positive(&attr_ints(node, "dilations").unwrap_or(vec![1, 1]), "dilation")?, "dilations")?;
                if x_dims[1] != w_dims[1] * groups || w_dims[0] % groups != 0 || kernel.contains(&0) {
                    return Err(fail(format!("input {x_dims:?}, weight {w_dims:?} and group {groups} do not fit")));
                }
                let bias = match inputs.get(2).copied().flatten() {
                    Some(_) => {
                        let b = need_const(2)?;
                        if self.consts[b].values.len() != w_dims[0] {
                            return Err(fail(format!("bias of shape {:?} does not fit {} output channels", self.consts[b].dims, w_dims[0])));
                        }
                        Some(b)
                    }
                    None => None,
                };
                let pads = pads_of(kernel, stride, dilation, &x_dims)?;
                let geometry = Pool2d { kernel, stride, pads, dilation, ceil_mode: false };
                let side = |axis: usize| geometry.output_side(x_dims[2 + axis], axis).ok_or_else(|| fail(format!("kernel larger than the padded input {x_dims:?}")));
                let out = vec![x_dims[0], w_dims[0], side(0)?, side(1)?];
                let flops = 2 * checked_count(&out).unwrap_or(0) as u64 * (w_dims[1] * kernel[0] * kernel[1]) as u64;
                (OpKind::Conv { weight: w, bias, stride, pads, dilation, groups }, out, flops, vec![operands[0].clone()])
            }
            "BatchNormalization" => {
                if x_dims.len() < 2 {
                    return Err(fail(format!("input {x_dims:?} has no channel axis")));
                }
                let channels = x_dims[1];
                let params: Vec<HostTensor> = (1..5).map(|i| need_const(i).map(|c| self.consts[c].clone())).collect::<Result<_, _>>()?;
                if params.iter().any(|p| p.values.len() != channels) {
                    return Err(fail(format!("scale, bias, mean and variance must each hold {channels} values")));
                }
                let epsilon = attr_f(node, "epsilon", 1e-5);
                let mut shape = vec![channels];
                shape.extend(std::iter::repeat_n(1, x_dims.len() - 2));
                let scale: Vec<f32> = (0..channels).map(|c| params[0].values[c] / (params[3].values[c] + epsilon).sqrt()).collect();
                let shift: Vec<f32> = (0..channels).map(|c| params[1].values[c] - params[2].values[c] * scale[c]).collect();
                let scale = self.push_const(HostTensor { dims: shape.clone(), values: scale }, &label)?;
                let shift = self.push_const(HostTensor { dims: shape, values: shift }, &label)?;
                let n = checked_count(&x_dims).unwrap_or(0) as u64;
                (OpKind::Affine { scale, shift }, x_dims.clone(), 2 * n, vec![operands[0].clone()])
            }
            "Relu" | "Sigmoid" | "HardSwish" | "Identity" | "Dropout" | "Clip" | "HardSigmoid" => {
                let kind = match op {
                    "Relu" => OpKind::Relu,
                    "Sigmoid" => OpKind::Sigmoid,
                    "HardSwish" => OpKind::HardSwish,
                    "HardSigmoid" => OpKind::HardSigmoid { alpha: attr_f(node, "alpha", 0.2), beta: attr_f(node, "beta", 0.5) },
                    "Clip" => {
                        let bound = |i: usize, attr_name: &str, default: f32| -> Result<f32, OnnxError> {
                            if self.opset < 11 {
                                return Ok(attr_f(node, attr_name, default));
                            }
                            match inputs.get(i).copied().flatten() {
                                None => Ok(default),
                                Some(_) => Ok(*self.consts[need_const(i)?].values.first().unwrap_or(&default)),
                            }
                        };
                        let (min, max) = (bound(1, "min", f32::MIN)?, bound(2, "max", f32::MAX)?);
                        // clamping with min > max (or NaN) has no meaning, and panics in burn
                        if min.is_nan() || max.is_nan() || min > max {
                            return Err(fail(format!("min {min} and max {max} are not an interval")));
                        }
                        OpKind::Clip { min, max }
                    }
                    _ => OpKind::Identity,
                };
                let n = checked_count(&x_dims).unwrap_or(0) as u64;
                (kind, x_dims.clone(), n, vec![operands[0].clone()])
            }
            "Add" | "Sub" | "Mul" | "Div" | "Sum" => {
                if op != "Sum" && operands.len() != 2 {
                    return Err(fail(format!("{} operands; two expected", operands.len())));
                }
                let mut out = x_dims.clone();
                batched = false;
                for slot in inputs.iter().flatten() {
                    let d = dims_of(*slot, self);
                    out = broadcast(&out, &d).ok_or_else(|| fail(format!("shapes {out:?} and {d:?} do not broadcast")))?;
                    if let Slot::Value(v) = slot {
                        batched |= self.values[*v].batched && self.values[*v].dims.len() == out.len();
                    }
                }
                let kind = match op {
                    "Add" => OpKind::Add,
                    "Sub" => OpKind::Sub,
                    "Mul" => OpKind::Mul,
                    "Div" => OpKind::Div,
                    _ => OpKind::Sum,
                };
                let n = checked_count(&out).unwrap_or(0) as u64 * (operands.len() as u64 - 1).max(1);
                (kind, out, n, operands.clone())
            }
            "Concat" => {
                let a = axis(attr_i(node, "axis", 1), x_dims.len(), false).ok_or_else(|| fail("axis out of range".into()))?;
                let mut out = x_dims.clone();
                for slot in inputs.iter().flatten().skip(1) {
                    let d = dims_of(*slot, self);
                    let fits = d.len() == out.len() && (0..d.len()).all(|i| i == a || d[i] == out[i]);
                    if !fits {
                        return Err(fail(format!("shapes {x_dims:?} and {d:?} do not concatenate on axis {a}")));
                    }
                    out[a] += d[a];
                }
                batched = a != 0 && inputs.iter().flatten().all(|s| matches!(s, Slot::Value(v) if self.values[*v].batched));
                (OpKind::Concat { axis: a }, out, 0, operands.clone())
            }
            "MaxPool" | "AveragePool" => {
                rank4(&x_dims)?;
                if node.output.len() > 1 && !node.output[1].is_empty() {
                    return Err(fail("the indices output is not supported".into()));
                }
                let kernel = pair(positive(&attr_ints(node, "kernel_shape").unwrap_or_default(), "kernel")?, "kernel_shape")?;
                let stride = pair(positive(&attr_ints(node, "strides").unwrap_or(vec![1, 1]), "stride")?, "strides")?;
                let dilation = pair(positive(&attr_ints(node, "dilations").unwrap_or(vec![1, 1]), "dilation")?, "dilations")?;
                if op == "AveragePool" && dilation != [1, 1] {
                    return Err(fail("dilated average pooling is not supported".into()));
                }
                let pads = pads_of(kernel, stride, dilation, &x_dims)?;
                if pads.iter().zip(kernel).any(|(&(b, e), k)| b >= k || e >= k) {
                    return Err(fail(format!("pads {pads:?} must be smaller than the kernel {kernel:?}")));
                }
                let pool = Pool2d { kernel, stride, pads, dilation, ceil_mode: attr_i(node, "ceil_mode", 0) != 0 };
                let side = |axis: usize| pool.output_side(x_dims[2 + axis], axis).ok_or_else(|| fail(format!("kernel larger than the padded input {x_dims:?}")));
                let out = vec![x_dims[0], x_dims[1], side(0)?, side(1)?];
                let flops = checked_count(&out).unwrap_or(0) as u64 * (kernel[0] * kernel[1]) as u64;
                let kind = if op == "MaxPool" {
                    OpKind::MaxPool(pool)
                } else {
                    OpKind::AveragePool { pool, count_include_pad: attr_i(node, "count_include_pad", 0) != 0 }
                };
                (kind, out, flops, vec![operands[0].clone()])
            }
            "GlobalAveragePool" => {
                rank4(&x_dims)?;
                let out = vec![x_dims[0], x_dims[1], 1, 1];
                (OpKind::GlobalAveragePool, out, checked_count(&x_dims).unwrap_or(0) as u64, vec![operands[0].clone()])
            }
            "LRN" => {
                rank4(&x_dims)?;
                let size = positive(&[attr_i(node, "size", 0)], "size")?[0];
                let kind = OpKind::Lrn { size, alpha: attr_f(node, "alpha", 1e-4), beta: attr_f(node, "beta", 0.75), bias: attr_f(node, "bias", 1.0) };
                (kind, x_dims.clone(), checked_count(&x_dims).unwrap_or(0) as u64 * (size as u64 + 3), vec![operands[0].clone()])
            }
            "Gemm" | "MatMul" => {
                let b_slot = need(1)?;
                if let (Slot::Value(_), "MatMul") = (b_slot, op) {
                    let b_dims = dims_of(b_slot, self);
                    if x_dims.len() < 2 || b_dims.len() != x_dims.len() || x_dims[..x_dims.len() - 2] != b_dims[..b_dims.len() - 2] || x_dims[x_dims.len() - 1] != b_dims[b_dims.len() - 2] {
                        return Err(fail(format!("shapes {x_dims:?} and {b_dims:?} do not multiply")));
                    }
                    let mut out = x_dims.clone();
                    let last = out.len() - 1;
                    out[last] = b_dims[b_dims.len() - 1];
                    let flops = 2 * checked_count(&out).unwrap_or(0) as u64 * x_dims[last] as u64;
                    (OpKind::MatMul, out, flops, operands.clone())
                } else {
                    let b = need_const(1)?;
                    let b_host = self.consts[b].clone();
                    let (trans_a, trans_b, alpha, beta) = if op == "Gemm" {
                        (attr_i(node, "transA", 0) != 0, attr_i(node, "transB", 0) != 0, attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0))
                    } else {
                        (false, false, 1.0, 1.0)
                    };
                    if b_host.dims.len() != 2 || (op == "Gemm" && x_dims.len() != 2) || x_dims.is_empty() {
                        return Err(fail(format!("shapes {x_dims:?} and {:?}: Gemm takes 2-D operands, MatMul a 2-D constant", b_host.dims)));
                    }
                    let (k, n) = if trans_b { (b_host.dims[1], b_host.dims[0]) } else { (b_host.dims[0], b_host.dims[1]) };
                    let a_k = if trans_a { x_dims[0] } else { x_dims[x_dims.len() - 1] };
                    if a_k != k {
                        return Err(fail(format!("shapes {x_dims:?} and {:?} do not multiply", b_host.dims)));
                    }
                    let mut weight = vec![0.0; k * n];
                    for row in 0..k {
                        for col in 0..n {
                            let source = if trans_b { col * k + row } else { row * n + col };
                            weight[row * n + col] = alpha * b_host.values[source];
                        }
                    }
                    let weight = self.push_const(HostTensor { dims: vec![k, n], values: weight }, &label)?;
                    let mut out = if trans_a { vec![x_dims[1], n] } else { x_dims.clone() };
                    let last = out.len() - 1;
                    out[last] = n;
                    let bias = match inputs.get(2).copied().flatten() {
                        Some(_) => {
                            let c = self.consts[need_const(2)?].clone();
                            if broadcast(&out, &c.dims).as_deref() != Some(out.as_slice()) {
                                return Err(fail(format!("bias of shape {:?} does not broadcast to {out:?}", c.dims)));
                            }
                            let values = c.values.iter().map(|v| v * beta).collect();
                            Some(self.push_const(HostTensor { dims: c.dims, values }, &label)?)
                        }
                        None => None,
                    };
                    batched = x_batched && !trans_a;
                    let flops = 2 * checked_count(&out).unwrap_or(0) as u64 * k as u64;
                    (OpKind::Gemm { weight, bias, trans_a }, out, flops, vec![operands[0].clone()])
                }
            }
            "Flatten" | "Reshape" | "Unsqueeze" | "Squeeze" | "Cast" => {
                let out = self.reshaped_dims(node, &inputs, &x_dims, op).map_err(&fail)?;
                if checked_count(&out) != checked_count(&x_dims) {
                    return Err(fail(format!("cannot reshape {x_dims:?} to {out:?}")));
                }
                batched = x_batched && !out.is_empty() && out[0] == x_dims[0];
                let kind = match op {
                    "Flatten" => OpKind::Flatten { axis: 1 },
                    "Cast" => OpKind::Identity,
                    _ => OpKind::Reshape,
                };
                (kind, out, 0, vec![operands[0].clone()])
            }
            "Transpose" => {
                let rank = x_dims.len();
                let perm: Vec<usize> = match attr_ints(node, "perm") {
                    Some(p) => p.iter().map(|&a| axis(a, rank, false)).collect::<Option<_>>().ok_or_else(|| fail(format!("perm {p:?} out of range")))?,
                    None => (0..rank).rev().collect(),
                };
                let mut seen = perm.clone();
                seen.sort_unstable();
                if seen != (0..rank).collect::<Vec<_>>() {
                    return Err(fail(format!("perm {perm:?} is not a permutation of {rank} axes")));
                }
                let out: Vec<usize> = perm.iter().map(|&a| x_dims[a]).collect();
                batched = x_batched && perm[0] == 0;
                (OpKind::Transpose { perm }, out, 0, vec![operands[0].clone()])
            }
            "Softmax" => {
                let default = if self.opset < 13 { 1 } else { -1 };
                let a = axis(attr_i(node, "axis", default), x_dims.len(), false).ok_or_else(|| fail("axis out of range".into()))?;
                let coerce_2d = self.opset < 13;
                batched = x_batched && (a > 0 || !coerce_2d);
                let n = checked_count(&x_dims).unwrap_or(0) as u64;
                (OpKind::Softmax { axis: a, coerce_2d }, x_dims.clone(), 3 * n, vec![operands[0].clone()])
            }
            other => return Err(fail(format!("operator {other} cannot be lowered here"))),
        };
        if out_dims.len() > MAX_RANK || out_dims.is_empty() || checked_count(&out_dims).is_none_or(|n| n > MAX_VALUE_ELEMENTS || n == 0) {
            return Err(fail(format!("output of shape {out_dims:?} is empty, too large or of rank above {MAX_RANK}")));
        }
        let output = self.values.len();
        self.values.push(ValueInfo { name: out_name.clone(), dims: out_dims, batched });
        self.slots.insert(out_name, Slot::Value(output));
        self.ops.push(OpNode { name: label, op_type: op.to_string(), kind, inputs: operands, output, flops });
        Ok(())
    }

    fn bind_const(&mut self, name: &str, host: HostTensor) -> Result<(), OnnxError> {
        let id = self.push_const(host, name)?;
        self.slots.insert(name.to_string(), Slot::Const(id));
        Ok(())
    }

    /// The output shape of a shape-only operator (Reshape, Flatten, Unsqueeze, Squeeze, and the
    /// shape-keeping Identity, Dropout, Cast).
    fn reshaped_dims(&self, node: &NodeProto, inputs: &[Option<Slot>], dims: &[usize], op: &str) -> Result<Vec<usize>, String> {
        let const_ints = |i: usize| -> Option<Vec<i64>> {
            match inputs.get(i).copied().flatten() {
                Some(Slot::Const(c)) => Some(self.consts[c].values.iter().map(|&v| v as i64).collect()),
                _ => None,
            }
        };
        let rank = dims.len();
        match op {
            "Flatten" => {
                let a = axis(attr_i(node, "axis", 1), rank, true).ok_or("axis out of range")?;
                Ok(vec![dims[..a].iter().product(), dims[a..].iter().product()])
            }
            "Reshape" => {
                let target = if self.opset < 5 { attr_ints(node, "shape") } else { const_ints(1) }
                    .ok_or("the target shape must be a constant")?;
                let allow_zero = attr_i(node, "allowzero", 0) != 0;
                let mut out = Vec::with_capacity(target.len());
                let mut infer = None;
                for (i, &t) in target.iter().enumerate() {
                    match t {
                        -1 if infer.is_none() => {
                            infer = Some(i);
                            out.push(1);
                        }
                        0 if !allow_zero => out.push(*dims.get(i).ok_or("0 copies a dimension the input lacks")?),
                        t if t > 0 && t < 1 << 40 => out.push(t as usize),
                        t => return Err(format!("target dimension {t} is invalid")),
                    }
                }
                let total: usize = checked_count(dims).ok_or("input too large")?;
                if let Some(i) = infer {
                    let known: usize = checked_count(&out).ok_or("target too large")?;
                    if known == 0 || total % known != 0 {
                        return Err(format!("cannot reshape {dims:?} to {target:?}"));
                    }
                    out[i] = total / known;
                }
                Ok(out)
            }
            "Unsqueeze" | "Squeeze" => {
                let axes = if self.opset < 13 { attr_ints(node, "axes") } else { const_ints(1) };
                if op == "Squeeze" {
                    let axes: Vec<usize> = match axes {
                        Some(a) => a.iter().map(|&v| axis(v, rank, false)).collect::<Option<_>>().ok_or("axis out of range")?,
                        None => (0..rank).filter(|&i| dims[i] == 1).collect(),
                    };
                    if axes.iter().any(|&a| dims[a] != 1) {
                        return Err(format!("cannot squeeze axes {axes:?} of {dims:?}"));
                    }
                    Ok((0..rank).filter(|i| !axes.contains(i)).map(|i| dims[i]).collect())
                } else {
                    let axes = axes.ok_or("axes must be given as constants")?;
                    let new_rank = rank + axes.len();
                    let mut resolved: Vec<usize> = axes.iter().map(|&v| axis(v, new_rank, false)).collect::<Option<_>>().ok_or("axis out of range")?;
                    resolved.sort_unstable();
                    resolved.dedup();
                    if resolved.len() != axes.len() || new_rank > MAX_RANK {
                        return Err(format!("axes {axes:?} repeat or make the rank exceed {MAX_RANK}"));
                    }
                    let mut source = dims.iter();
                    Ok((0..new_rank).map(|i| if resolved.contains(&i) { 1 } else { *source.next().expect("counted") }).collect())
                }
            }
            _ => Ok(dims.to_vec()),
        }
    }
}

impl OnnxModel {
    /// The file's identity and input with an empty graph: what a rewritten graph (a pruned
    /// variant) keeps, without copying the constants it replaces.
    fn header(&self) -> OnnxModel {
        OnnxModel {
            name: self.name.clone(),
            path: self.path.clone(),
            hash: self.hash.clone(),
            file_bytes: self.file_bytes,
            opset: self.opset,
            input_name: self.input_name.clone(),
            output_name: self.output_name.clone(),
            onnx_nodes: self.onnx_nodes,
            ops: Vec::new(),
            values: Vec::new(),
            consts: Vec::new(),
            input: self.input,
            output: self.output,
            import_batch: self.import_batch,
            batch_free: self.batch_free,
            boundaries: Vec::new(),
        }
    }

    pub fn stage_count(&self) -> usize {
        self.boundaries.len() - 1
    }

    /// Input dims of every stage, plus the output at the end, batch of one, as the network's
    /// boundary activations carry them.
    pub fn boundary_dims(&self) -> Vec<Vec<usize>> {
        self.boundaries.iter().map(|b| b.activation_dims(&self.values)).collect()
    }

    /// FLOPs of stage `i`.
    pub fn stage_flops(&self, stage: usize) -> u64 {
        let (start, end) = (self.boundaries[stage].position, self.boundaries[stage + 1].position);
        self.ops[start..end].iter().map(|o| o.flops).sum()
    }

    /// Builds the network on `device`. `quantize_weights`: weights rounded to per-channel int8
    /// (post-training, weights only), the imported model's int8 variant.
    pub fn build(self: &Arc<Self>, quantize_weights: bool, device: &Device) -> Network {
        let used = self.used_consts();
        let consts: Vec<Tensor<MAX_RANK>> = self
            .consts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // constants only the import read (a Gemm's B before transposing, BN's raw
                // statistics, shapes) take no device memory
                if !used[i] {
                    Tensor::zeros([1; MAX_RANK], device)
                } else if quantize_weights && self.is_weight(i) {
                    quantized(c).to_device(device)
                } else {
                    c.to_device(device)
                }
            })
            .collect();
        let int8 = match quantize_weights {
            true => self.ops.iter().map(|op| self.int8_op(op)).collect(),
            false => Vec::new(),
        };
        let program = Arc::new(DeviceProgram { model: self.clone(), consts, int8 });
        let stages = (0..self.stage_count())
            .map(|i| {
                let segment = OnnxSegment { program: program.clone(), stage: i };
                Stage::new(format!("{}-{i}", self.name), vec![Layer::Onnx(segment)])
            })
            .collect();
        let mut network = Network::new(&self.name, self.boundary_dims()[0].clone(), stages);
        if !self.batch_free {
            network.fixed_batch = Some(self.import_batch);
        }
        network
    }

    /// The int8 form of an op, where int8 computes it and pays (`QConv::pays`): a dense
    /// convolution with a square kernel, equal strides and symmetric pads, no dilation, or a
    /// Gemm whose bias is one value per output. From the file's f32 weights: int8 quantizes
    /// them per output channel itself.
    fn int8_op(&self, op: &OpNode) -> Option<Int8Op> {
        match &op.kind {
            OpKind::Conv { weight, bias, stride, pads, dilation, groups } => {
                let w = &self.consts[*weight];
                let &[c_out, c_in, kh, kw] = w.dims.as_slice() else { return None };
                let pad = pads[0].0;
                let regular = *groups == 1 && kh == kw && stride[0] == stride[1] && *dilation == [1, 1] && pads.iter().all(|&(a, b)| a == pad && b == pad);
                if !regular {
                    return None;
                }
                let geometry = ConvGeometry { c_in, c_out, kernel: kh, stride: stride[0], padding: pad, groups: 1 };
                QConv::from_weights(&w.values, bias.map(|b| self.consts[b].values.clone()), geometry, Act::None).map(Int8Op::Conv)
            }
            OpKind::Gemm { weight, bias, trans_a: false } => {
                let w = &self.consts[*weight];
                let &[k, n] = w.dims.as_slice() else { return None };
                let bias = match bias.map(|b| &self.consts[b].values) {
                    Some(values) if values.len() == n => Some(values.clone()),
                    Some(_) => return None,
                    None => None,
                };
                QDense::from_weights(&w.values, bias, k, n, Act::None).map(Int8Op::Dense)
            }
            _ => None,
        }
    }

    /// Which constants an op reads at run time.
    fn used_consts(&self) -> Vec<bool> {
        let mut used = vec![false; self.consts.len()];
        for c in self.ops.iter().flat_map(|op| op.consts_read()) {
            used[c] = true;
        }
        used
    }

    /// Whether constant `i` is a convolution's or a Gemm's weight (what int8 PTQ rounds).
    fn is_weight(&self, i: usize) -> bool {
        self.ops.iter().any(|o| matches!(o.kind, OpKind::Conv { weight, .. } | OpKind::Gemm { weight, .. } if weight == i))
    }
}

/// Symmetric int8 rounding of a weight, one scale per output channel (the first axis of a
/// convolution's weight, the last of a Gemm's `[k, n]`).
fn quantized(weight: &HostTensor) -> HostTensor {
    let mut values = weight.values.clone();
    let (channels, per_channel_is_rows) = if weight.dims.len() == 4 { (weight.dims[0], true) } else { (*weight.dims.last().unwrap_or(&1), false) };
    let len = values.len();
    let index = |c: usize, j: usize| if per_channel_is_rows { c * (len / channels) + j } else { j * channels + c };
    for c in 0..channels {
        let count = len / channels;
        let max = (0..count).map(|j| values[index(c, j)].abs()).fold(0.0f32, f32::max);
        if max == 0.0 {
            continue;
        }
        let scale = max / 127.0;
        for j in 0..count {
            let v = &mut values[index(c, j)];
            *v = (*v / scale).round().clamp(-127.0, 127.0) * scale;
        }
    }
    HostTensor { dims: weight.dims.clone(), values }
}

/// An imported model's constants on one device, shared by all its stages.
#[derive(Debug)]
pub struct DeviceProgram {
    pub model: Arc<OnnxModel>,
    pub consts: Vec<Tensor<MAX_RANK>>,
    /// The int8 variant's int8 form of each op (by position), where it has one; empty in fp32.
    pub int8: Vec<Option<Int8Op>>,
}

/// An op that computes in int8 (`model/int8.rs`): activations quantized per tensor, weights per
/// output channel, integer sums, dequantized with the bias.
#[derive(Debug)]
pub enum Int8Op {
    Conv(QConv),
    Dense(QDense),
}

/// One stage of an imported model: the ops between two boundaries, run as a graph.
#[derive(Module, Debug)]
pub struct OnnxSegment {
    #[module(skip)]
    pub program: Arc<DeviceProgram>,
    #[module(skip)]
    pub stage: usize,
}

impl OnnxSegment {
    /// Bytes of the constants this stage's ops read (FP32; the int8 variant's weights int8).
    pub fn weight_bytes(&self) -> u64 {
        let model = &self.program.model;
        let (start, end) = (model.boundaries[self.stage].position, model.boundaries[self.stage + 1].position);
        let seen: std::collections::BTreeSet<usize> = model.ops[start..end].iter().flat_map(|op| op.consts_read()).collect();
        // the int8 variant stores every convolution's and Gemm's weights as int8
        let int8 = !self.program.int8.is_empty();
        seen.into_iter().map(|c| model.consts[c].values.len() as u64 * if int8 && model.is_weight(c) { 1 } else { 4 }).sum()
    }

    pub fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        let model = &self.program.model;
        let mut dims = model.boundaries[self.stage + 1].activation_dims(&model.values);
        if let (Some(first), Some(&batch)) = (dims.first_mut(), input.first()) {
            *first = batch;
        }
        dims
    }

    pub fn flops(&self, input: &[usize]) -> u64 {
        let batch = input.first().copied().unwrap_or(1) as u64;
        self.program.model.stage_flops(self.stage) * batch / self.program.model.import_batch.max(1) as u64
    }

    /// A value's shape at run time.
    fn runtime_dims(&self, value: ValueId, batch: usize) -> Vec<usize> {
        let info = &self.program.model.values[value];
        let mut dims = info.dims.clone();
        if info.batched {
            dims[0] = batch;
        }
        dims
    }

    pub fn forward(&self, x: Activation) -> Activation {
        let model = &self.program.model;
        let batch = x.dims()[0];
        let start = &model.boundaries[self.stage];
        let end = &model.boundaries[self.stage + 1];
        let mut live: HashMap<ValueId, Tensor<MAX_RANK>> = HashMap::new();
        for (value, tensor) in start.unpack(x, &|v| self.runtime_dims(v, batch)) {
            live.insert(value, tensor);
        }
        let ops = &model.ops[start.position..end.position];
        // the last op of this stage that reads each value, so that it is dropped after
        let mut last_use: HashMap<ValueId, usize> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            for input in &op.inputs {
                if let Operand::Value(v) = input {
                    last_use.insert(*v, i);
                }
            }
        }
        for (i, op) in ops.iter().enumerate() {
            let args: Vec<Tensor<MAX_RANK>> = op
                .inputs
                .iter()
                .map(|input| match input {
                    Operand::Value(v) => live.get(v).cloned().expect("boundary carries every live value"),
                    Operand::Const(c) => self.program.consts[*c].clone(),
                })
                .collect();
            let input_dims: Vec<Vec<usize>> = op
                .inputs
                .iter()
                .map(|input| match input {
                    Operand::Value(v) => self.runtime_dims(*v, batch),
                    Operand::Const(c) => model.consts[*c].dims.clone(),
                })
                .collect();
            let out_dims = self.runtime_dims(op.output, batch);
            let consts = &self.program.consts;
            let weights4 = |c: usize| {
                let d = &model.consts[c].dims;
                consts[c].clone().reshape([d[0], d[1], d[2], d[3]])
            };
            let vector = |c: usize| consts[c].clone().reshape([model.consts[c].values.len()]);
            let y = match self.program.int8.get(start.position + i).and_then(Option::as_ref) {
                Some(Int8Op::Conv(q)) => {
                    let x = args.into_iter().next().expect("a convolution reads its input");
                    ops::from4(q.forward(ops::as4(x, &input_dims[0])))
                }
                Some(Int8Op::Dense(q)) => {
                    let x = args.into_iter().next().expect("a Gemm reads its input");
                    let k = *input_dims[0].last().expect("rank checked at import");
                    let rows = input_dims[0].iter().product::<usize>() / k.max(1);
                    q.forward(x.reshape([rows, k])).reshape(ops::pad_dims(&out_dims))
                }
                None => ops::run_op(op, args, &input_dims, &out_dims, consts, &weights4, &vector),
            };
            for input in &op.inputs {
                if let Operand::Value(v) = input {
                    if last_use.get(v) == Some(&i) && !end.values.contains(v) {
                        live.remove(v);
                    }
                }
            }
            live.insert(op.output, y);
        }
        end.pack(&live, &|v| self.runtime_dims(v, batch))
    }
}
