//! The value that flows between stages, and its wire form.
//!
//! Between stages a network carries tensors of different ranks (image maps, token ids, sequence
//! states, feature vectors). [`Activation`] holds whichever one a cut produces; [`WireTensor`]
//! is the same value on the host, ready to cross a process or network boundary, and it is where
//! untrusted input is checked (length, finiteness) before any backend sees it.

use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::ExecError;

/// Element type on the wire, named as the Open Inference Protocol names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "INT64")]
    Int64,
    /// Images in their natural encoding; scaled to [0, 1] when they enter a network.
    #[serde(rename = "UINT8")]
    Uint8,
}

impl DataType {
    pub fn name(self) -> &'static str {
        match self {
            DataType::Fp32 => "FP32",
            DataType::Int64 => "INT64",
            DataType::Uint8 => "UINT8",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FP32" => Some(DataType::Fp32),
            "INT64" => Some(DataType::Int64),
            "UINT8" => Some(DataType::Uint8),
            _ => None,
        }
    }

    pub fn element_bytes(self) -> usize {
        match self {
            DataType::Fp32 => 4,
            DataType::Int64 => 8,
            DataType::Uint8 => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum WireData {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

impl WireData {
    pub fn len(&self) -> usize {
        match self {
            WireData::F32(v) => v.len(),
            WireData::I64(v) => v.len(),
            WireData::U8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn datatype(&self) -> DataType {
        match self {
            WireData::F32(_) => DataType::Fp32,
            WireData::I64(_) => DataType::Int64,
            WireData::U8(_) => DataType::Uint8,
        }
    }
}

/// The number of elements of `shape`. Checked, because shapes come from requests and remote
/// replies: `[1, 2^62]` must be an error, not an overflow panic.
pub fn element_count(shape: &[usize]) -> Result<usize, ExecError> {
    shape
        .iter()
        .try_fold(1usize, |count, &d| count.checked_mul(d))
        .ok_or_else(|| ExecError::ShapeOverflow { shape: shape.to_vec() })
}

/// A tensor on the host: shape plus row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct WireTensor {
    pub shape: Vec<usize>,
    pub data: WireData,
}

impl WireTensor {
    /// Builds a tensor after checking that the data fills the shape and holds only finite
    /// values, so that a malformed request is refused before it reaches a backend.
    pub fn new(shape: Vec<usize>, data: WireData) -> Result<Self, ExecError> {
        let expected = element_count(&shape)?;
        if expected != data.len() {
            return Err(ExecError::DataLength {
                shape,
                expected,
                got: data.len(),
            });
        }
        if let WireData::F32(values) = &data {
            if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                return Err(ExecError::NonFinite(index));
            }
        }
        Ok(Self { shape, data })
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    pub fn byte_len(&self) -> usize {
        self.data.len() * self.datatype().element_bytes()
    }

    /// Little-endian raw bytes, as the binary tensor extension carries them.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match &self.data {
            WireData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            WireData::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            WireData::U8(v) => v.clone(),
        }
    }

    pub fn from_le_bytes(shape: Vec<usize>, datatype: DataType, bytes: &[u8]) -> Result<Self, ExecError> {
        let width = datatype.element_bytes();
        // checked before decoding, so that a short or ragged tail costs no allocation
        let expected = element_count(&shape)?;
        if expected.checked_mul(width) != Some(bytes.len()) {
            return Err(ExecError::DataLength {
                shape,
                expected,
                got: bytes.len() / width,
            });
        }
        let data = match datatype {
            DataType::Fp32 => WireData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DataType::Int64 => WireData::I64(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                    .collect(),
            ),
            DataType::Uint8 => WireData::U8(bytes.to_vec()),
        };
        Self::new(shape, data)
    }
}

/// A value between two stages, living on a burn device.
#[derive(Clone, Debug)]
pub enum Activation {
    /// `[batch, features]`
    Features(Tensor<2>),
    /// `[batch, sequence, hidden]`
    Sequence(Tensor<3>),
    /// `[batch, channels, height, width]`
    Image(Tensor<4>),
    /// `[batch, sequence]` token ids
    Tokens(Tensor<2, Int>),
}

impl Activation {
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Activation::Features(t) => t.dims().to_vec(),
            Activation::Sequence(t) => t.dims().to_vec(),
            Activation::Image(t) => t.dims().to_vec(),
            Activation::Tokens(t) => t.dims().to_vec(),
        }
    }

    pub fn datatype(&self) -> DataType {
        match self {
            Activation::Tokens(_) => DataType::Int64,
            _ => DataType::Fp32,
        }
    }

    /// Bytes this value takes on the wire in its own datatype.
    pub fn byte_len(&self) -> usize {
        self.dims().iter().product::<usize>() * self.datatype().element_bytes()
    }

    /// Moves the value to the host. This also waits for the backend to finish computing it.
    pub fn to_wire(&self) -> Result<WireTensor, ExecError> {
        let shape = self.dims();
        let data = match self {
            Activation::Features(t) => f32_vec(t.to_data())?,
            Activation::Sequence(t) => f32_vec(t.to_data())?,
            Activation::Image(t) => f32_vec(t.to_data())?,
            Activation::Tokens(t) => WireData::I64(
                t.to_data()
                    .convert::<i64>()
                    .try_to_vec::<i64>()
                    .map_err(|e| ExecError::Backend(format!("{e:?}")))?,
            ),
        };
        Ok(WireTensor { shape, data })
    }

    /// Places a host tensor on `device`, picking the variant from its rank and datatype.
    /// UINT8 images are scaled to [0, 1].
    pub fn from_wire(wire: &WireTensor, device: &Device) -> Result<Self, ExecError> {
        let shape = wire.shape.clone();
        let rank_error = || ExecError::WrongShape {
            workload: "input".into(),
            stage: 0,
            expected: "a rank-2, rank-3 or rank-4 tensor".into(),
            got: shape.clone(),
        };
        match &wire.data {
            WireData::F32(values) => {
                let data = TensorData::new(values.clone(), shape.clone());
                match shape.len() {
                    2 => Ok(Activation::Features(Tensor::from_data(data, device))),
                    3 => Ok(Activation::Sequence(Tensor::from_data(data, device))),
                    4 => Ok(Activation::Image(Tensor::from_data(data, device))),
                    _ => Err(rank_error()),
                }
            }
            WireData::U8(values) => {
                if shape.len() != 4 {
                    return Err(rank_error());
                }
                let scaled: Vec<f32> = values.iter().map(|&v| v as f32 / 255.0).collect();
                Ok(Activation::Image(Tensor::from_data(
                    TensorData::new(scaled, shape.clone()),
                    device,
                )))
            }
            WireData::I64(values) => {
                if shape.len() != 2 {
                    return Err(rank_error());
                }
                Ok(Activation::Tokens(Tensor::from_data(
                    TensorData::new(values.clone(), shape.clone()),
                    device,
                )))
            }
        }
    }
}

fn f32_vec(data: TensorData) -> Result<WireData, ExecError> {
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .map(WireData::F32)
        .map_err(|e| ExecError::Backend(format!("{e:?}")))
}
