//! The executor's error type. Every failure reachable from user input is one of these, never a
//! panic, so that a server can answer it with a 4xx and keep serving.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExecError {
    #[error(transparent)]
    Onnx(#[from] crate::model::onnx::OnnxError),
    #[error("{0}")]
    Import(String),
    #[error("model `{model}` differs between device and worker: the device's file has hash {device}, {worker_url}'s has {worker}; give both the same .onnx file")]
    ModelMismatch { model: String, device: String, worker: String, worker_url: String },
    #[error("unknown workload `{0}` (known: mobilenetv2, resnet18, vgg16, bert-mini, digits-cnn, ofa-note10, and models given with --model NAME=PATH.onnx)")]
    UnknownWorkload(String),
    #[error("workload `{workload}` has no variant `{variant}` (it has: {known})")]
    UnknownVariant {
        workload: String,
        variant: String,
        known: String,
    },
    #[error("backend `{0}` is not compiled into this build; rebuild with `--features {0}`")]
    BackendNotCompiled(String),
    #[error("unknown device `{0}` (expected flex, ndarray or wgpu)")]
    UnknownDevice(String),
    #[error("wrong input shape for `{workload}` at stage {stage}: expected {expected}, got {got:?}")]
    WrongShape {
        workload: String,
        stage: usize,
        expected: String,
        got: Vec<usize>,
    },
    #[error("wrong datatype for `{workload}` at stage {stage}: expected {expected}, got {got}")]
    WrongDataType {
        workload: String,
        stage: usize,
        expected: String,
        got: String,
    },
    #[error("stage range {start}..{end} is invalid for a network of {stages} stages")]
    BadStageRange {
        start: usize,
        end: usize,
        stages: usize,
    },
    #[error("tensor has {got} values but its shape {shape:?} needs {expected}")]
    DataLength {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
    #[error("tensor shape {shape:?} has more elements than this machine can count")]
    ShapeOverflow { shape: Vec<usize> },
    #[error("tensor holds a non-finite value (NaN or infinity) at index {0}")]
    NonFinite(usize),
    #[error("token id {id} at index {index} is outside the vocabulary 0..{vocab}")]
    TokenOutOfRange { id: i64, index: usize, vocab: usize },
    #[error("{path}: {message}")]
    Data { path: String, message: String },
    /// A value given by name (a flag, a setting, a field of a file) outside its range.
    #[error("{name} {message}")]
    Invalid { name: String, message: String },
    #[error("model weights {path}: {message}")]
    Weights { path: String, message: String },
    #[error("backend failure: {0}")]
    Backend(String),
    #[error("int8 transfer: {0}")]
    Int8(String),
    #[error("remote execution failed: {0}")]
    Remote(String),
    // The I/O error is part of the message, not a `source`: chained reports (`{:#}`) would
    // print it twice.
    #[error("I/O error on {path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl ExecError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        ExecError::Io {
            path: path.as_ref().display().to_string(),
            error: source,
        }
    }
}

/// Shows a number the way a person wrote it: plain when it reads well (`0.5`, `40`), in
/// exponent form at the extremes, where `{}` would print hundreds of digits (`1e-300`).
#[derive(Clone, Copy, Debug)]
pub struct Num(pub f64);

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let magnitude = self.0.abs();
        if magnitude == 0.0 || !magnitude.is_finite() || (1e-4..1e9).contains(&magnitude) {
            write!(f, "{}", self.0)
        } else {
            write!(f, "{:e}", self.0)
        }
    }
}
