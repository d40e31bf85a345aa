//! The digits CNN: a small convolutional network trained in this project on scikit-learn's
//! bundled `digits` data (UCI Optical Recognition of Handwritten Digits), exported once to
//! `data/digits/` with a fixed held-out test split. Its accuracies, including those of its int8
//! and magnitude-pruned variants, are measured on that split, not quoted.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::module::{Module, Param, ParamId};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::{card, VariantSpec, WorkloadSpec};
use crate::model::activation::{DataType, WireData};
use crate::model::layers::{Act, ConvBn, Dense, Layer};
use crate::model::network::{Network, Stage};
use crate::model::prune::{index, kept_count, strongest_channels};
use crate::model::variant::{quantize_int8, Variant};
use crate::{Activation, ExecError};

const CONV1: usize = 16;
const CONV2: usize = 32;
const HIDDEN: usize = 64;
/// The variants: name and the fraction of convolution channels a pruned one removes.
const VARIANTS: [(&str, Option<f32>); 5] =
    [("fp32", None), ("int8", None), ("pruned-25", Some(0.25)), ("pruned-50", Some(0.5)), ("pruned-75", Some(0.75))];

/// The project's data folder: `$RLSCHED_DATA`, or `data/` at the repository root.
pub fn data_dir() -> PathBuf {
    std::env::var_os("RLSCHED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../data"))
}

pub fn weights_path() -> PathBuf {
    data_dir().join("digits/digits-cnn.bpk")
}

/// Images scaled to [0, 1] (pixels count 0..16) and their labels.
pub struct DigitsSplit {
    pub pixels: Vec<f32>,
    pub labels: Vec<i64>,
}

impl DigitsSplit {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Reads `data/digits/{train,test}.csv`; errors name the file, line and field.
    pub fn load(name: &str) -> Result<Self, ExecError> {
        let path = data_dir().join(format!("digits/{name}.csv"));
        let text = std::fs::read_to_string(&path).map_err(|e| ExecError::io(&path, e))?;
        let mut split = DigitsSplit {
            pixels: Vec::new(),
            labels: Vec::new(),
        };
        for (number, line) in text.lines().enumerate().skip(1) {
            let bad = |field: usize, message: &str| ExecError::Data {
                path: format!("{}:{}", path.display(), number + 1),
                message: format!("field {field}: {message}"),
            };
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != 65 {
                return Err(bad(fields.len(), "expected 65 comma-separated fields (label, p0..p63)"));
            }
            for (i, field) in fields.iter().enumerate() {
                let value: u8 = field.trim().parse().map_err(|_| bad(i, "not an integer 0..16"))?;
                if i == 0 {
                    if value > 9 {
                        return Err(bad(0, "label outside 0..9"));
                    }
                    split.labels.push(value as i64);
                } else {
                    if value > 16 {
                        return Err(bad(i, "pixel outside 0..16"));
                    }
                    split.pixels.push(value as f32 / 16.0);
                }
            }
        }
        Ok(split)
    }

    fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let mut pixels = Vec::with_capacity(indices.len() * 64);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * 64..(i + 1) * 64]);
        }
        let labels: Vec<i64> = indices.iter().map(|&i| self.labels[i]).collect();
        (
            Tensor::from_data(TensorData::new(pixels, [indices.len(), 1, 8, 8]), device),
            Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        )
    }
}

fn network(conv1: usize, conv2: usize, device: &Device) -> Network {
    let stages = vec![
        Stage::new("conv1", vec![Layer::Conv(ConvBn::new(1, conv1, 3, 1, 1, false, Act::Relu, device))]),
        Stage::new(
            "conv2",
            vec![
                Layer::Conv(ConvBn::new(conv1, conv2, 3, 1, 1, false, Act::Relu, device)),
                Layer::max_pool(2, 2, 0),
            ],
        ),
        Stage::new("fc1", vec![Layer::Dense(Dense::new(conv2 * 16, HIDDEN, Act::Relu, device))]),
        Stage::new("fc2", vec![Layer::Dense(Dense::new(HIDDEN, 10, Act::None, device))]),
    ];
    Network::new("digits-cnn", vec![1, 1, 8, 8], stages)
}

fn logits(network: &Network, images: Tensor<4>) -> Result<Tensor<2>, ExecError> {
    match network.forward(Activation::Image(images))? {
        Activation::Features(logits) => Ok(logits),
        other => Err(ExecError::Backend(format!("digits CNN produced {:?}", other.dims()))),
    }
}

/// Trains the fp32 network with Adam on the training split.
pub fn train(seed: u64, epochs: usize, learning_rate: f64) -> Result<Network, ExecError> {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let data = DigitsSplit::load("train")?;
    let mut model = network(CONV1, CONV2, &device);
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    for _ in 0..epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(64) {
            let (images, labels) = data.batch(chunk, &device);
            let loss = loss_fn.forward(logits(&model, images)?, labels);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(learning_rate, model, grads);
        }
    }
    Ok(model.valid())
}

/// Top-1 accuracy of a network on a split.
pub fn accuracy(network: &Network, split: &DigitsSplit, device: &Device) -> Result<f64, ExecError> {
    let indices: Vec<usize> = (0..split.len()).collect();
    let (images, labels) = split.batch(&indices, device);
    let predicted = logits(network, images)?.argmax(1).reshape([split.len()]);
    let correct = predicted
        .equal(labels)
        .int()
        .sum()
        .into_scalar::<i64>();
    Ok(correct as f64 / split.len() as f64)
}

/// Top-1 accuracy when the activation after stage `cut` crosses the link as int8, as a split
/// with int8 intermediates sends it: each image is its own request, so each gets its own range.
pub fn accuracy_int8_cut(network: &Network, split: &DigitsSplit, cut: usize, device: &Device) -> Result<f64, ExecError> {
    let mut correct = 0usize;
    for i in 0..split.len() {
        let (image, _) = split.batch(&[i], device);
        let head = network.run(0, cut, Activation::Image(image))?.to_wire()?;
        let (quantized, range) = crate::model::quantize::quantize(&head)?;
        let restored = crate::model::quantize::dequantize(&quantized, range)?;
        let tail = network.run_wire(cut, network.stage_count(), &restored, device)?;
        let WireData::F32(logits) = tail.data else {
            return Err(ExecError::Backend("digits CNN produced non-float logits".into()));
        };
        let predicted = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k);
        correct += usize::from(predicted as i64 == split.labels[i]);
    }
    Ok(correct as f64 / split.len() as f64)
}

fn load_fp32(device: &Device) -> Result<Network, ExecError> {
    let path = weights_path();
    if !path.exists() {
        return Err(ExecError::Weights {
            path: path.display().to_string(),
            message: "missing; train it with `cargo run --example train_digits`".into(),
        });
    }
    network(CONV1, CONV2, device)
        .try_load_file(&path)
        .map_err(|e| ExecError::Weights {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}

fn conv_of(network: &Network, stage: usize) -> &ConvBn {
    match &network.stages[stage].layers[0] {
        Layer::Conv(conv) => conv,
        other => unreachable!("digits stage {stage} starts with a convolution, not {other:?}"),
    }
}

fn dense_of(network: &Network, stage: usize) -> &Dense {
    match &network.stages[stage].layers[0] {
        Layer::Dense(dense) => dense,
        other => unreachable!("digits stage {stage} starts with a dense layer, not {other:?}"),
    }
}

fn replace<const D: usize>(param: &mut Param<Tensor<D>>, value: Tensor<D>) {
    *param = Param::initialized(ParamId::new(), value);
}

/// Removes the weakest `fraction` of each convolution's channels (structured magnitude pruning),
/// slicing the following layer's inputs to match. No fine-tuning: the accuracy loss is measured.
pub fn prune(trained: &Network, fraction: f32, device: &Device) -> Network {
    let keep1 = kept_count(CONV1, fraction);
    let keep2 = kept_count(CONV2, fraction);
    let (c1, c2, fc1, fc2) = (conv_of(trained, 0), conv_of(trained, 1), dense_of(trained, 2), dense_of(trained, 3));
    let kept1 = strongest_channels(&c1.conv.weight.val(), keep1);
    let kept2 = strongest_channels(&c2.conv.weight.val(), keep2);
    // fc1 reads the pooled conv2 map flattened as channel × 16 positions.
    let fc1_rows: Vec<usize> = kept2.iter().flat_map(|&c| (0..16).map(move |p| c * 16 + p)).collect();

    let mut pruned = network(keep1, keep2, device);
    {
        let bias = |conv: &ConvBn| conv.conv.bias.as_ref().expect("digits convs have bias").val();
        let w1 = c1.conv.weight.val().select(0, index(&kept1, device));
        let b1 = bias(c1).select(0, index(&kept1, device));
        let w2 = c2.conv.weight.val().select(0, index(&kept2, device)).select(1, index(&kept1, device));
        let b2 = bias(c2).select(0, index(&kept2, device));
        let f1 = fc1.linear.weight.val().select(0, index(&fc1_rows, device));
        let f1b = fc1.linear.bias.as_ref().expect("bias").val();
        let f2 = fc2.linear.weight.val();
        let f2b = fc2.linear.bias.as_ref().expect("bias").val();
        let stages = &mut pruned.stages;
        if let Layer::Conv(c) = &mut stages[0].layers[0] {
            replace(&mut c.conv.weight, w1);
            replace(c.conv.bias.as_mut().expect("bias"), b1);
        }
        if let Layer::Conv(c) = &mut stages[1].layers[0] {
            replace(&mut c.conv.weight, w2);
            replace(c.conv.bias.as_mut().expect("bias"), b2);
        }
        if let Layer::Dense(d) = &mut stages[2].layers[0] {
            replace(&mut d.linear.weight, f1);
            replace(d.linear.bias.as_mut().expect("bias"), f1b);
        }
        if let Layer::Dense(d) = &mut stages[3].layers[0] {
            replace(&mut d.linear.weight, f2);
            replace(d.linear.bias.as_mut().expect("bias"), f2b);
        }
    }
    pruned
}

fn variant_of(name: &str) -> Result<Variant, ExecError> {
    match VARIANTS.iter().find(|(n, _)| *n == name) {
        Some((_, Some(removed))) => Ok(Variant::MagnitudePruned { removed: *removed }),
        Some(("int8", None)) => Ok(Variant::Int8),
        Some(_) => Ok(Variant::Fp32),
        None => Err(ExecError::UnknownVariant {
            workload: "digits-cnn".into(),
            variant: name.into(),
            known: VARIANTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
        }),
    }
}

pub fn build(variant: &str, device: &Device) -> Result<Network, ExecError> {
    let chosen = variant_of(variant)?;
    let fp32 = load_fp32(device)?;
    Ok(match chosen {
        Variant::Int8 => quantize_int8(fp32),
        Variant::MagnitudePruned { removed } => prune(&fp32, removed, device),
        _ => fp32,
    })
}

/// Measured test-split accuracies of every variant, computed once per process.
pub fn spec() -> Result<WorkloadSpec, ExecError> {
    static MEASURED: OnceLock<[f64; VARIANTS.len()]> = OnceLock::new();
    let measured = match MEASURED.get() {
        Some(m) => *m,
        None => {
            let device = Device::flex();
            let test = DigitsSplit::load("test")?;
            let mut m = [0.0; VARIANTS.len()];
            for (slot, (name, _)) in VARIANTS.iter().enumerate() {
                m[slot] = accuracy(&build(name, &device)?, &test, &device)?;
            }
            *MEASURED.get_or_init(|| m)
        }
    };
    let cite = "measured on the held-out 20% of scikit-learn `digits` (UCI Optical Recognition of Handwritten Digits, Alpaydin & Kaynak 1998), data/digits/test.csv";
    let variants: Vec<VariantSpec> = VARIANTS
        .iter()
        .map(|(name, _)| name)
        .zip(measured)
        .map(|(name, acc)| card(name, variant_of(name).expect("known"), acc, "measured", cite))
        .collect();
    Ok(WorkloadSpec {
        name: "digits-cnn".into(),
        task: "digits top-1".into(),
        input_shape: vec![1, 1, 8, 8],
        input_datatype: DataType::Fp32,
        variants,
    })
}
