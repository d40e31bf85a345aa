//! The catalogue of workloads: each is a burn network cut into stages, with its compressed
//! variants and their accuracies. The large architectures use seeded random weights (latency
//! does not depend on the values) and take their accuracies from published model cards; the
//! digits CNN is trained here and its accuracy is measured on a held-out split.

mod bert_mini;
pub mod digits;
pub mod imported;
mod mobilenetv2;
pub mod ofa_note10;
mod resnet18;
mod vgg16;

use std::str::FromStr;

use burn::tensor::Device;
use serde::Serialize;

use crate::model::activation::DataType;
use crate::model::prune;
use crate::model::variant::{quantize_int8, Variant};
use crate::{ExecError, Network};

/// Seed for the random weights of the large architectures. Fixed, so that a device and a worker
/// build identical networks.
pub const WEIGHT_SEED: u64 = 20_261_127;

/// torchvision's ImageNet top-1 of ResNet-18 and VGG-16 (the model cards cited in `spec`).
const RESNET18_TOP1: f64 = 0.69758;
const VGG16_TOP1: f64 = 0.71592;
/// FPGM's top-1 loss for ResNet-18 at 30% pruned filters (cited in `spec`).
const FPGM_RESNET18_30_DROP: f64 = 0.0187;

/// DCP's ResNet-18 with half of each basic block's inner channels pruned (cited in `spec`):
/// top-1 error 30.36 -> 32.65.
const DCP_RESNET18_50_DROP: f64 = 0.0229;
/// OFA's sub-network with its expansions capped at 4 and at 3: no published figure measures
/// these, so the nearest published cuts of MobileNetV2's expanded channels stand in (cited in
/// `spec`): AMC at 70% of the FLOPs, 71.8 -> 70.854, and DCP at 1.81× fewer FLOPs, top-1 error
/// 29.89 -> 35.78.
/// No figure for pruning BERT-mini's heads and neurons could be checked against its source, so
/// the pruned variants' accuracy is unknown: measured for speed, never chosen against a floor.
const BERT_PRUNED_UNKNOWN: &str = "no checked published figure: DynaBERT (Hou et al., NeurIPS 2020) prunes heads and feed-forward neurons the same way (its width multiplier) but its SST-2 table could not be read from its source here; accuracy unknown (0), so the variant is never chosen against an accuracy floor";
const OFA_EXPAND_DROP: [f64; 2] = [0.71800 - 0.70854, 0.0589];

/// VGG-16's convolutions in order; `pruned-0.5` prunes the first ten (ThiNet-Conv: all but
/// the conv5 group), `pruned-0.56` the first twelve (conv5_3 feeds fc6 whole), which takes
/// the convolutions' FLOPs down 4.9×, the 5× of the IncReg result cited in `spec`.
const VGG16_CONVS: [&str; 13] = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
    "conv5_1", "conv5_2", "conv5_3",
];

/// The VGG-16 convolutions a pruned variant thins, by its fraction.
fn vgg16_prunable(removed: f32) -> &'static [&'static str] {
    if removed > 0.5 {
        &VGG16_CONVS[..12]
    } else {
        &VGG16_CONVS[..10]
    }
}

/// ThiNet's VGG-16 with half of conv1_1..conv4_3's filters (cited in `spec`): 71.50 -> 69.80.
const THINET_VGG16_DROP: f64 = 0.0170;

/// IncReg's VGG-16 at 5× fewer convolution FLOPs: top-1 70.62 → 67.62 (cited in `spec`).
const INCREG_VGG16_5X_DROP: f64 = 0.0300;

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
    /// A model imported from an ONNX file (`imported`): registered at run time by name.
    Imported(imported::ImportedId),
}

#[derive(Clone, Debug, Serialize)]
pub struct VariantSpec {
    pub name: String,
    pub variant: Variant,
    /// Top-1 accuracy (fraction) on the workload's task.
    pub accuracy: f64,
    /// `model-card` (published figure), `model-card-int8` (a card of the int8 model),
    /// `model-card-int8-delta` (a card's int8 loss applied to this fp32 figure),
    /// `model-card-fp32` (the fp32 card figure, carried by int8 where no card measures it), `published-pruning` (a channel-pruning paper's
    /// measured loss applied to the card's fp32 figure; the citation says which), or `measured`.
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

/// An image workload (UINT8 frames in) with an fp32 variant from its model card and an int8
/// variant carrying the fp32 figure, marked as such, until a card of the int8 model replaces it.
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
            Workload::Imported(id) => imported::get(id).name,
        }
    }

    /// The built-ins and every model imported so far.
    pub fn catalogue() -> Vec<Workload> {
        let mut all = Workload::ALL.to_vec();
        all.extend(imported::all());
        all
    }

    /// The imported model behind this entry, if it is one.
    pub fn onnx(self) -> Option<std::sync::Arc<crate::model::onnx::OnnxModel>> {
        match self {
            Workload::Imported(id) => Some(imported::get(id).model.clone()),
            _ => None,
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
                        // torchvision's int8 MobileNetV2 (QNNPACK, quantization-aware trained)
                        // loses 71.878 -> 71.658 against its fp32 card; that loss, applied here
                        card("int8", Variant::Int8, 0.718 - (0.71878 - 0.71658), "model-card-int8-delta", "torchvision MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1 model card: top-1 71.658 against 71.878 for MobileNet_V2_Weights.IMAGENET1K_V1 (-0.22 points), applied to the TF-slim card's 71.8"),
                        card("pruned-0.75", Variant::Width { multiplier: 0.75 }, 0.698, "model-card", cite),
                        card("pruned-0.5", Variant::Width { multiplier: 0.5 }, 0.654, "model-card", cite),
                    ],
                )
            }
            Workload::ResNet18 => {
                let (task, shape, datatype, mut variants) = fp32_and_int8(
                    IMAGENET,
                    vec![1, 3, 224, 224],
                    RESNET18_TOP1,
                    "torchvision ResNet18_Weights.IMAGENET1K_V1 model card; He et al., CVPR 2016",
                );
                variants[1] = card(
                    "int8",
                    Variant::Int8,
                    0.69494,
                    "model-card-int8",
                    "torchvision ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1 model card (post-training static int8 of IMAGENET1K_V1, FBGEMM): ImageNet top-1 69.494",
                );
                variants.push(card(
                    "pruned-0.3",
                    Variant::MagnitudePruned { removed: 0.3 },
                    RESNET18_TOP1 - FPGM_RESNET18_30_DROP,
                    "published-pruning",
                    "FPGM (He et al., CVPR 2019), github.com/he-y/filter-pruning-geometric-median pdf/FPGM_updated.pdf Table 2: ResNet-18, FPGM-mix 30% from the pre-trained model, fine-tuned, ImageNet top-1 70.28 -> 68.41 (-1.87 points, FLOPs -41.8%); the drop applied to the card's fp32 figure. FPGM prunes every convolution but the shortcuts; here 30% of each basic block's inner channels go (residual widths kept), by L1 norm (Li et al., ICLR 2017). DCP prunes that same structure at 30% for -0.43 points (paper Table 5); the larger FPGM loss is kept",
                ));
                variants.push(card(
                    "pruned-0.5",
                    Variant::MagnitudePruned { removed: 0.5 },
                    RESNET18_TOP1 - DCP_RESNET18_50_DROP,
                    "published-pruning",
                    "DCP (Zhuang et al., NeurIPS 2018), github.com/SCUT-AILab/DCP paper Table 5: ResNet-18 with 50% of the channels inside each basic block pruned (the same structure as here), fine-tuned, ImageNet top-1/top-5 error 30.36/11.02 -> 32.65/12.40 (-2.29 top-1 points, FLOPs 1.81e9 -> 9.76e8); the drop applied to the card's fp32 figure. Here the channels go by L1 norm (Li et al., ICLR 2017), not DCP's discrimination-aware selection, and without fine-tuning (random weights)",
                ));
                (task, shape, datatype, variants)
            }
            Workload::Vgg16 => {
                let (task, shape, datatype, mut variants) = fp32_and_int8(
                    IMAGENET,
                    vec![1, 3, 224, 224],
                    VGG16_TOP1,
                    "torchvision VGG16_Weights.IMAGENET1K_V1 model card; Simonyan & Zisserman, ICLR 2015",
                );
                variants.push(card(
                    "pruned-0.5",
                    Variant::MagnitudePruned { removed: 0.5 },
                    VGG16_TOP1 - THINET_VGG16_DROP,
                    "published-pruning",
                    "ThiNet (Luo et al., ICCV 2017), github.com/Roll920/ThiNet_Code README 'Results': VGG-16 with half the filters of conv1_1..conv4_3 pruned and fine-tuned (ThiNet_ICCV), ImageNet top-1 71.50 -> 69.80 (-1.70 points, FLOPs 30.94G -> 9.58G); the drop applied to the card's fp32 figure. Same configuration here, filters ranked by L1 norm",
                ));
                variants.push(card(
                    "pruned-0.56",
                    Variant::MagnitudePruned { removed: 0.56 },
                    VGG16_TOP1 - INCREG_VGG16_5X_DROP,
                    "published-pruning",
                    "IncReg (Wang et al., IJCNN 2019), github.com/MingSun-Tse/Caffe_IncReg README, 'Pruned models': VGG-16 at a 5x reduction of convolution FLOPs, fine-tuned, ImageNet top-1 70.62 -> 67.62 (-3.00 points); the drop applied to the card's fp32 figure. Here 56% of the filters of conv1_1..conv5_2 by L1 norm (4.9x fewer convolution FLOPs; IncReg's per-layer widths differ)",
                ));
                (task, shape, datatype, variants)
            }
            Workload::BertMini => {
                let cite = "google-research/bert README (BERT-Mini, L=4 H=256, GLUE SST-2 test); Turc et al., arXiv:1908.08962";
                (
                    "SST-2 accuracy",
                    vec![1, bert_mini::SEQUENCE],
                    DataType::Int64,
                    vec![
                        card("fp32", Variant::Fp32, 0.859, "model-card", cite),
                        card("int8", Variant::Int8, 0.859, "model-card-fp32", cite),
                        card("pruned-0.25", Variant::MagnitudePruned { removed: 0.25 }, 0.0, "unknown", BERT_PRUNED_UNKNOWN),
                        card("pruned-0.5", Variant::MagnitudePruned { removed: 0.5 }, 0.0, "unknown", BERT_PRUNED_UNKNOWN),
                    ],
                )
            }
            Workload::DigitsCnn => {
                return digits::spec();
            }
            Workload::Imported(id) => {
                let entry = imported::get(id);
                let model = &entry.model;
                let variants = imported::variants(&entry);
                let mut input_shape = model.values[model.input].dims.clone();
                input_shape[0] = 1;
                ("imported ONNX model", input_shape, DataType::Fp32, variants)
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
                        card("pruned-e4", Variant::ExpandCapped { max_expand: 4.0 }, 0.769 - OFA_EXPAND_DROP[0], "published-pruning", "AMC (He et al., ECCV 2018), github.com/mit-han-lab/amc-models README: MobileNetV2 at 70% of its FLOPs, its expanded channels cut by 25-31% (models/mobilenet_v2.py), fine-tuned, ImageNet top-1 70.854 against the TF-slim card's 71.8 (-0.95 points; AMC's own width-0.75 figure, 69.8, equals the card's); applied to OFA's 76.9. No figure measures OFA's own sub-network at expansion <= 4: here the blocks of expansion 6 keep 4x their input channels, by OFA's importance (L1 norm of the projection weights that read a channel)"),
                        card("pruned-e3", Variant::ExpandCapped { max_expand: 3.0 }, 0.769 - OFA_EXPAND_DROP[1], "published-pruning", "DCP (Zhuang et al., NeurIPS 2018), github.com/SCUT-AILab/DCP supplementary Table S3: MobileNetV2 with 1.81x fewer FLOPs, fine-tuned, ImageNet top-1 error 29.89 -> 35.78 (-5.89 points); applied to OFA's 76.9. No figure measures OFA's own sub-network at expansion 3: here every block keeps 3x its input channels, by OFA's importance (L1 norm of the projection weights that read a channel); DCP's larger FLOPs cut makes the loss conservative"),
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
        if let Workload::Imported(id) = self {
            let chosen = self.spec()?.variant(variant)?.variant;
            return imported::build(id, chosen, device);
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
            Workload::DigitsCnn | Workload::Imported(_) => unreachable!("handled above"),
        }
        .with_seeded_weights(WEIGHT_SEED);
        Ok(match (chosen, self) {
            (Variant::Int8, _) => quantize_int8(network),
            (Variant::MagnitudePruned { removed }, Workload::ResNet18) => prune::prune_basic_blocks(network, removed),
            (Variant::MagnitudePruned { removed }, Workload::Vgg16) => prune::prune_conv_chain(network, vgg16_prunable(removed), removed),
            (Variant::MagnitudePruned { removed }, Workload::BertMini) => prune::prune_encoders(network, removed),
            (Variant::ExpandCapped { max_expand }, _) => prune::prune_expansions(network, max_expand),
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
        if let Some(model) = self.onnx() {
            let mut shape = model.values[model.input].dims.clone();
            if model.batch_free {
                shape[0] = 1;
            }
            let count = shape.iter().product();
            let data = crate::model::activation::WireData::F32((0..count).map(|_| rng.random_range(0.0..1.0)).collect());
            return crate::WireTensor::new(shape, data).expect("example input fills its shape");
        }
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
            .or_else(|| imported::find(s))
            .ok_or_else(|| ExecError::UnknownWorkload(s.to_string()))
    }
}
