//! Models: workloads as burn networks cut into stages, the layers they are built from, the
//! activations that pass between stages, imported ONNX models (`onnx`), compressed variants (int8 compute, channel pruning) and int8 intermediates.

pub mod activation;
pub mod int8;
pub mod layers;
pub mod network;
pub mod onnx;
pub mod prune;
pub mod quantize;
pub mod variant;
pub mod workloads;
