//! The catalogue of workloads: each is a burn network cut into stages, with its compressed
//! variants and their accuracies. The large architectures use seeded random weights (latency
//! does not depend on the values) and take their accuracies from published model cards; the
//! digits CNN is trained here and its accuracy is measured on a held-out split.

mod bert_mini;
pub mod digits;
mod mobilenetv2;
pub mod ofa_note10;
mod resnet18;
mod vgg16;

use std::str::FromStr;

use burn::tensor::Device;
use serde::Serialize;

use crate::model::activation::DataType;
use crate::model::variant::{quantize_int8, Variant};
use crate::{ExecError, Network};

/// Seed for the random weights of the large architectures. Fixed, so that a device and a worker
/// build identical networks.
pub const WEIGHT_SEED: u64 = 20_261_127;

/// Rounds a channel count to a multiple of 8, never losing more than 10%, as the MobileNet
/// reference implementations do.
pub(crate) fn make_divisible(value: f32) -> usize {
    let rounded = ((value + 4.0) as usize / 8 * 8).max(8);
    if (rounded as f32) < 0.9 * value {
        rounded + 8
    } else {
        rounded
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    MobileNetV2,
    ResNet18,
    Vgg16,
    BertMini,
    DigitsCnn,
    OfaNote10,
}

#[derive(Clone, Debug, Serialize)]
pub struct VariantSpec {
    pub name: String,
    pub variant: Variant,
    /// Top-1 accuracy (fraction) on the workload's task.
    pub accuracy: f64,
    /// `model-card` (published figure), `model-card-fp32` (the fp32 card figure, reused for
    /// weight-only int8 where no card exists), or `measured`.
    pub accuracy_source: String,
    pub citation: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkloadSpec {
    pub name: String,
    pub task: String,
    pub input_shape: Vec<usize>,
    /// What the device holds and sends: UINT8 pixels for images (stage 0 also accepts FP32
    /// already scaled to [0, 1]), INT64 token ids, FP32 otherwise.
    pub input_datatype: DataType,
    pub variants: Vec<VariantSpec>,
}

impl WorkloadSpec {
    pub fn variant(&self, name: &str) -> Result<&VariantSpec, ExecError> {
        self.variants
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| ExecError::UnknownVariant {
                workload: self.name.clone(),
                variant: name.to_string(),
                known: self
                    .variants
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// An image workload (UINT8 frames in) with an fp32 variant from its model card and a
/// weight-only int8 variant, which no card measures: it carries the fp32 figure, marked as such.
fn fp32_and_int8(task: &'static str, input_shape: Vec<usize>, accuracy: f64, cite: &str) -> (&'static str, Vec<usize>, DataType, Vec<VariantSpec>) {
    let variants = vec![
        card("fp32", Variant::Fp32, accuracy, "model-card", cite),
        card("int8", Variant::Int8, accuracy, "model-card-fp32", cite),
    ];
    (task, input_shape, DataType::Uint8, variants)
}

fn card(name: &str, variant: Variant, accuracy: f64, source: &str, citation: &str) -> VariantSpec {
    VariantSpec {
        name: name.to_string(),
        variant,
        accuracy,
        accuracy_source: source.to_string(),
        citation: citation.to_string(),
    }
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::MobileNetV2,
        Workload::ResNet18,
        Workload::Vgg16,
        Workload::BertMini,
        Workload::DigitsCnn,
        Workload::OfaNote10,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::MobileNetV2 => "mobilenetv2",
            Workload::ResNet18 => "resnet18",
            Workload::Vgg16 => "vgg16",
            Workload::BertMini => "bert-mini",
            Workload::DigitsCnn => "digits-cnn",
            Workload::OfaNote10 => "ofa-note10",
        }
    }

    /// The workload's variants and input. The digits CNN's accuracies are measured, which needs
    /// its bundled weights and data (see [`digits`]).
    pub fn spec(self) -> Result<WorkloadSpec, ExecError> {
        const IMAGENET: &str = "ImageNet-1k top-1";
        let (task, input_shape, input_datatype, variants) = match self {
            Workload::MobileNetV2 => {
                let cite = "TF-slim MobileNet model card (tensorflow/models research/slim/nets/mobilenet), Sandler et al., CVPR 2018";
                (
                    IMAGENET,
                    vec![1, 3, 224, 224],
                    DataType::Uint8,
                    vec![
                        card("fp32", Variant::Fp32, 0.718, "model-card", cite),
                        card("int8", Variant::Int8, 0.718, "model-card-fp32", cite),
                        card("pruned-0.75", Variant::Width { multiplier: 0.75 }, 0.698, "model-card", cite),
                        card("pruned-0.5", Variant::Width { multiplier: 0.5 }, 0.654, "model-card", cite),
                    ],
                )
            }
            Workload::ResNet18 => fp32_and_int8(
                IMAGENET,
                vec![1, 3, 224, 224],
                0.69758,
                "torchvision ResNet18_Weights.IMAGENET1K_V1 model card; He et al., CVPR 2016",
            ),
            Workload::Vgg16 => fp32_and_int8(
                IMAGENET,
                vec![1, 3, 224, 224],
                0.71592,
                "torchvision VGG16_Weights.IMAGENET1K_V1 model card; Simonyan & Zisserman, ICLR 2015",
            ),
            Workload::BertMini => {
                let cite = "google-research/bert README (BERT-Mini, L=4 H=256, GLUE SST-2 test); Turc et al., arXiv:1908.08962";
                (
                    "SST-2 accuracy",
                    vec![1, bert_mini::SEQUENCE],
                    DataType::Int64,
                    vec![
                        card("fp32", Variant::Fp32, 0.859, "model-card", cite),
                        card("int8", Variant::Int8, 0.859, "model-card-fp32", cite),
                    ],
                )
            }
            Workload::DigitsCnn => {
                return digits::spec();
            }
            Workload::OfaNote10 => {
                let cite = "mit-han-lab/once-for-all tutorial/ofa.ipynb: the Note10 <= 25 ms search result, evaluated on the ImageNet validation set (top1=76.9); Cai et al., ICLR 2020";
                let side = ofa_note10::RESOLUTION;
                (
                    IMAGENET,
                    vec![1, 3, side, side],
                    DataType::Uint8,
                    vec![
                        card("fp32", Variant::Fp32, 0.769, "published-evaluation", cite),
                        card("int8", Variant::Int8, 0.769, "published-evaluation-fp32", cite),
                    ],
                )
            }
        };
        Ok(WorkloadSpec {
            name: self.name().to_string(),
            task: task.to_string(),
            input_shape,
            input_datatype,
            variants,
        })
    }

    /// Builds the network of one variant on `device`.
    pub fn build(self, variant: &str, device: &Device) -> Result<Network, ExecError> {
        if self == Workload::DigitsCnn {
            return digits::build(variant, device);
        }
        let spec = self.spec()?;
        let chosen = spec.variant(variant)?.variant;
        let width = match chosen {
            Variant::Width { multiplier } => multiplier,
            _ => 1.0,
        };
        let network = match self {
            Workload::MobileNetV2 => mobilenetv2::build(width, device),
            Workload::ResNet18 => resnet18::build(device),
            Workload::Vgg16 => vgg16::build(device),
            Workload::BertMini => bert_mini::build(device),
            Workload::OfaNote10 => ofa_note10::build(device),
            Workload::DigitsCnn => unreachable!("handled above"),
        }
        .with_seeded_weights(WEIGHT_SEED);
        Ok(match chosen {
            Variant::Int8 => quantize_int8(network),
            _ => network,
        })
    }

    /// Side of the square RGB input of an image workload.
    fn image_side(self) -> usize {
        match self {
            Workload::OfaNote10 => ofa_note10::RESOLUTION,
            _ => 224,
        }
    }

    /// A deterministic example input for this workload (batch of one), in the datatype of
    /// [`WorkloadSpec::input_datatype`].
    pub fn example_input(self, seed: u64) -> crate::WireTensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let data = match self {
            Workload::BertMini => crate::model::activation::WireData::I64(
                (0..bert_mini::SEQUENCE)
                    .map(|_| rng.random_range(0..bert_mini::VOCAB as i64))
                    .collect(),
            ),
            Workload::DigitsCnn => crate::model::activation::WireData::F32(
                (0..64).map(|_| rng.random_range(0.0..1.0)).collect(),
            ),
            // a camera frame: what a device has and sends (a quarter of the bytes of FP32)
            _ => crate::model::activation::WireData::U8(
                (0..self.image_side().pow(2) * 3).map(|_| rng.random()).collect(),
            ),
        };
        let shape = match self {
            Workload::BertMini => vec![1, bert_mini::SEQUENCE],
            Workload::DigitsCnn => vec![1, 1, 8, 8],
            _ => vec![1, 3, self.image_side(), self.image_side()],
        };
        crate::WireTensor::new(shape, data).expect("example input fills its shape")
    }
}

impl FromStr for Workload {
    type Err = ExecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| ExecError::UnknownWorkload(s.to_string()))
    }
}
