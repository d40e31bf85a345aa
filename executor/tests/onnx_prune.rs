//! The compressed variants of imported ONNX models (issue 18). int8 computes in int8 where it
//! pays and stays close to fp32 at every cut. Channel pruning: the pruned variants of zoo graphs are
//! narrower (FLOPs, weights, cut bytes), compute what the original computes with the removed
//! channels' contributions zeroed, and split exactly at every offered cut; the detector leaves
//! residual and concat inputs alone; removing nothing changes nothing; the catalogue offers the
//! variants only where something is prunable.
//!
//! The models come from `scripts/onnx_reference.py` (onnx, onnxruntime: installed by
//! `scripts/test.sh`), as in `onnx_import.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rlsched_executor::model::activation::WireData;
use rlsched_executor::model::layers::Layer;
use rlsched_executor::model::onnx::prune::{prunable_convs, prune, PrunedConv};
use rlsched_executor::model::onnx::{import_file, ImportOptions, OnnxModel, OpKind};
use rlsched_executor::model::workloads::imported;
use rlsched_executor::{DeviceChoice, Network, Variant, WireTensor, Workload};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/onnx_reference.py");

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The test models, written by the script (the zoo ones only where missing).
fn models() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("onnx-test-models-v1");
        let out = Command::new("python3")
            .arg(SCRIPT)
            .args(["prepare", dir.to_str().expect("utf-8 path")])
            .output()
            .expect("python3 runs (scripts/test.sh installs onnx and onnxruntime)");
        assert!(out.status.success(), "onnx_reference.py prepare failed:\n{}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

fn load(file: &str) -> Arc<OnnxModel> {
    Arc::new(import_file(file, &models().join(file), &ImportOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}")))
}

fn input_of(model: &OnnxModel) -> WireTensor {
    let dims = model.values[model.input].dims.clone();
    let count: usize = dims.iter().product();
    WireTensor::new(dims, WireData::F32((0..count).map(|i| ((i * 7919 % 1000) as f32) / 1000.0).collect())).unwrap()
}

fn f32s(t: &WireTensor) -> Vec<f32> {
    match &t.data {
        WireData::F32(v) => v.clone(),
        other => panic!("expected FP32, got {:?}", other.datatype()),
    }
}

/// max |a - b| / max |b|.
fn relative_error(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "element counts differ");
    let scale = reference.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64)).max(1e-12);
    let diff = ours.iter().zip(reference).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / scale
}

fn whole(network: &Network, input: &WireTensor) -> Vec<f32> {
    let device = DeviceChoice::Flex.device().unwrap();
    f32s(&network.run_wire(0, network.stage_count(), input, &device).unwrap())
}

fn flops(model: &OnnxModel) -> u64 {
    model.ops.iter().map(|o| o.flops).sum()
}

/// Bytes of the weights the network's stages read (what the profiler reports for ONNX stages).
fn param_bytes(network: &Network) -> u64 {
    network
        .stages
        .iter()
        .flat_map(|s| &s.layers)
        .map(|layer| match layer {
            Layer::Onnx(segment) => segment.weight_bytes(),
            _ => 0,
        })
        .sum()
}

fn op_index(model: &OnnxModel, name: &str) -> usize {
    model.ops.iter().position(|o| o.name == name).unwrap_or_else(|| panic!("{}: no op `{name}`", model.name))
}

/// The names of the convolutions the detector would prune.
fn prunable_names(model: &OnnxModel) -> Vec<String> {
    prunable_convs(model).iter().map(|p| model.ops[p.producer].name.clone()).collect()
}

/// The original model with the input channels a pruned variant removed zeroed in every
/// consumer convolution: those channels then contribute nothing, which is what removing them
/// (with the filters and per-channel terms that made them) must compute.
fn masked(model: &OnnxModel, plan: &[PrunedConv]) -> OnnxModel {
    let mut masked = model.clone();
    for p in plan {
        let OpKind::Conv { weight, .. } = masked.ops[p.conv.consumer].kind else { panic!("consumer is a Conv") };
        let w = &mut masked.consts[weight];
        let (outputs, channels, window) = (w.dims[0], w.dims[1], w.dims[2] * w.dims[3]);
        assert_eq!(channels, p.conv.channels);
        for o in 0..outputs {
            for c in (0..channels).filter(|c| !p.kept.contains(c)) {
                let start = (o * channels + c) * window;
                w.values[start..start + window].fill(0.0);
            }
        }
    }
    masked
}

#[test]
fn pruned_zoo_models_are_narrower_and_split_exactly() {
    let device = DeviceChoice::Flex.device().unwrap();
    for (file, flops_bound, chain) in [
        ("graph-prunable.onnx", 0.9, true),
        ("zoo-vgg19.onnx", 0.7, true),
        ("zoo-resnet50.onnx", 0.9, false),
        ("zoo-densenet121.onnx", 0.95, false),
    ] {
        let started = Instant::now();
        let model = load(file);
        let input = input_of(&model);
        let (quarter, _) = prune(&model, 0.25);
        let (narrow, plan) = prune(&model, 0.5);
        assert!(!plan.is_empty(), "{file}: something is prunable");
        for p in &plan {
            let half = ((p.conv.channels as f32 * 0.5).round() as usize).clamp(1, p.conv.channels);
            assert_eq!(p.kept.len(), half, "{file}: half of {} kept", p.conv.channels);
            assert!(p.kept.windows(2).all(|w| w[0] < w[1]) && p.kept.iter().all(|&c| c < p.conv.channels));
        }
        let narrow = Arc::new(narrow);

        // FLOPs, per stage and whole, and weights follow the narrower graph
        let (f_fp32, f_quarter, f_half) = (flops(&model), flops(&quarter), flops(&narrow));
        assert!(f_half < f_quarter && f_quarter < f_fp32, "{file}: FLOPs {f_fp32} -> {f_quarter} -> {f_half}");
        assert!((f_half as f64) <= flops_bound * f_fp32 as f64, "{file}: pruned-0.5 FLOPs {f_half} against {f_fp32}");
        assert_eq!((0..narrow.stage_count()).map(|s| narrow.stage_flops(s)).sum::<u64>(), f_half);
        let fp32_network = model.build(false, &device);
        let network = narrow.build(false, &device);
        let (b_fp32, b_half) = (param_bytes(&fp32_network), param_bytes(&network));
        assert!(b_half < b_fp32, "{file}: param bytes {b_fp32} -> {b_half}");

        // what it computes: the original with the removed channels' contributions zeroed, and
        // not the original itself (so that check is not vacuous). Compared at the output and at
        // the last cut both graphs offer with the same tensors (an unpruned width: a softmax
        // output of random weights may be saturated to the same one-hot either way)
        let common = (1..narrow.stage_count()).rev().find_map(|k| {
            let at = &narrow.boundaries[k];
            model.boundaries.iter().position(|b| b.values == at.values && b.bytes == at.bytes).map(|j| (k, j))
        });
        let masked_network = Arc::new(masked(&model, &plan)).build(false, &device);
        let head = |network: &Network, stage: usize| f32s(&network.run_wire(0, stage, &input, &device).unwrap());
        let fp32_out = whole(&fp32_network, &input);
        let fp32_cut = common.map(|(_, j)| head(&fp32_network, j));
        drop(fp32_network);
        let pruned_out = whole(&network, &input);
        let pruned_cut = common.map(|(k, _)| head(&network, k));
        let masked_out = whole(&masked_network, &input);
        let masked_cut = common.map(|(_, j)| head(&masked_network, j));
        drop(masked_network);
        let at_cut = |a: &Option<Vec<f32>>, b: &Option<Vec<f32>>| match (a, b) {
            (Some(a), Some(b)) => relative_error(a, b),
            _ => 0.0,
        };
        let masked_error = relative_error(&pruned_out, &masked_out).max(at_cut(&pruned_cut, &masked_cut));
        assert!(masked_error <= 1e-4, "{file}: pruned against masked: {masked_error:e}");
        let change = relative_error(&pruned_out, &fp32_out).max(at_cut(&pruned_cut, &fp32_cut));
        assert!(change > 1e-3, "{file}: pruning changed the output (and cut {common:?}) by only {change:e}");

        // every offered cut: the head's wire output has the cut's narrower shape and bytes, and
        // the tail from it gives the whole pruned model's output
        let n = network.stage_count();
        assert!(n >= 2, "{file}: the pruned model offers a cut");
        let mut worst = 0.0f64;
        let mut narrower_cuts = 0;
        for k in 1..n {
            let head = network.run_wire(0, k, &input, &device).unwrap();
            assert_eq!(head.shape, network.boundary_dims[k], "{file}: cut {k} shape");
            let boundary = &narrow.boundaries[k];
            assert_eq!(boundary.bytes, head.shape[1..].iter().product::<usize>() * 4, "{file}: cut {k} bytes");
            let original_bytes: usize = boundary.values.iter().map(|&v| model.values[v].dims.iter().product::<usize>() * 4).sum();
            narrower_cuts += usize::from(boundary.bytes < original_bytes);
            let tail = network.run_wire(k, n, &head, &device).unwrap();
            let error = relative_error(&f32s(&tail), &pruned_out);
            assert!(error <= 1e-5, "{file}: cut {k}: head + tail against whole: {error:e}");
            worst = worst.max(error);
        }
        // in a chain every cut inside a pruned pair is narrower; ResNet's and DenseNet's cuts
        // fall where residual sums and concats meet, which keep their widths
        if chain {
            assert!(narrower_cuts > 0, "{file}: some cut carries narrowed tensors");
        }
        eprintln!(
            "{file:<22} prunable convs {:>3}  FLOPs {:.3}G -> pruned-0.25 {:.3}G ({:.2}x) -> pruned-0.5 {:.3}G ({:.2}x)  params {:.1} -> {:.1} MB  stages {} -> {}  ({narrower_cuts} narrower cuts)  masked err {masked_error:.1e}  worst cut err {worst:.1e}  change vs fp32 {change:.2}  {:.1} s",
            plan.len(),
            f_fp32 as f64 / 1e9,
            f_quarter as f64 / 1e9,
            f_quarter as f64 / f_fp32 as f64,
            f_half as f64 / 1e9,
            f_half as f64 / f_fp32 as f64,
            b_fp32 as f64 / 1e6,
            b_half as f64 / 1e6,
            model.stage_count(),
            n,
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn detector_leaves_residual_and_concat_inputs_alone() {
    // the built graph: c2 is also a residual operand, c4 feeds the sum, c6 a Flatten
    let built = load("graph-prunable.onnx");
    assert_eq!(prunable_names(&built), ["c1", "c3", "c5"]);
    let c1 = prunable_convs(&built).into_iter().find(|p| p.producer == op_index(&built, "c1")).unwrap();
    assert_eq!(c1.consumer, op_index(&built, "c2"));
    assert_eq!(c1.between.len(), 6, "BN, Relu, MaxPool, Mul, Add, HardSwish");

    // DenseNet: a dense layer's 1x1 convolution reaches its 3x3 through BN, Mul, Add, Relu;
    // the 3x3's output goes into the concat and keeps its width
    let densenet = load("zoo-densenet121.onnx");
    let names = prunable_names(&densenet);
    assert!(names.contains(&"n14".to_string()), "{names:?}");
    assert!(!names.contains(&"n21".to_string()), "n21 feeds Concat n22: {names:?}");
    assert!(!names.contains(&"n0".to_string()), "the stem's pool feeds a dense layer and the concat");
    let concat_inputs = densenet.ops.iter().filter(|o| matches!(o.kind, OpKind::Concat { .. })).count();
    assert_eq!(names.len(), 58, "one 1x1 per dense layer ({concat_inputs} concats)");

    // ResNet-50: a bottleneck's first two convolutions are prunable, its third and the
    // projection feed the residual Add, the stem's pool output has two readers
    let resnet = load("zoo-resnet50.onnx");
    let names = prunable_names(&resnet);
    for inner in ["n4", "n7"] {
        assert!(names.contains(&inner.to_string()), "{inner}: {names:?}");
    }
    for kept in ["n0", "n10", "n12"] {
        assert!(!names.contains(&kept.to_string()), "{kept} must keep its width: {names:?}");
    }
    assert_eq!(names.len(), 32, "two per bottleneck, 16 bottlenecks");

    // AlexNet: LRN mixes channels, and conv3's consumer is grouped; the built test graphs have
    // only grouped, depthwise or reshaped convolutions
    for file in ["zoo-bvlc_alexnet.onnx", "graph-mixed.onnx", "graph-opset9.onnx"] {
        let model = load(file);
        assert!(prunable_names(&model).is_empty(), "{file}: {:?}", prunable_names(&model));
        let (same, plan) = prune(&model, 0.5);
        assert!(plan.is_empty());
        assert_eq!(flops(&same), flops(&model));
    }
}

#[test]
fn removing_nothing_keeps_every_channel_and_the_output() {
    let device = DeviceChoice::Flex.device().unwrap();
    for file in ["graph-prunable.onnx", "zoo-resnet50.onnx"] {
        let model = load(file);
        let (same, plan) = prune(&model, 0.0);
        assert!(!plan.is_empty());
        for p in &plan {
            assert_eq!(p.kept, (0..p.conv.channels).collect::<Vec<_>>(), "{file}: every channel kept");
        }
        assert_eq!(same.boundaries, model.boundaries, "{file}: the same cuts");
        assert_eq!(flops(&same), flops(&model));
        let input = input_of(&model);
        let ours = whole(&Arc::new(same).build(false, &device), &input);
        let reference = whole(&model.build(false, &device), &input);
        assert!(ours == reference, "{file}: removing nothing must compute the same bits");

        // the same file prunes the same way every time (what keeps a device and a worker alike)
        let (a, plan_a) = prune(&model, 0.5);
        let (b, plan_b) = prune(&model, 0.5);
        assert_eq!(plan_a, plan_b);
        assert!(a.consts.iter().zip(&b.consts).all(|(x, y)| x.dims == y.dims && x.values == y.values));
        // and keeps the strongest filters: every removed filter is no stronger than any kept one
        for p in &plan_a {
            let OpKind::Conv { weight, .. } = model.ops[p.conv.producer].kind else { unreachable!() };
            let w = &model.consts[weight];
            let per = w.values.len() / w.dims[0];
            let norm = |f: usize| w.values[f * per..(f + 1) * per].iter().map(|v| v.abs() as f64).sum::<f64>();
            let weakest_kept = p.kept.iter().map(|&f| norm(f)).fold(f64::INFINITY, f64::min);
            let strongest_removed = (0..p.conv.channels).filter(|f| !p.kept.contains(f)).map(norm).fold(0.0, f64::max);
            assert!(strongest_removed <= weakest_kept, "{file}: {strongest_removed} removed, {weakest_kept} kept");
        }
    }
}

#[test]
fn the_catalogue_offers_pruned_variants_only_where_something_is_prunable() {
    let device = DeviceChoice::Flex.device().unwrap();
    let prunable = imported::register("prunable-graph", &models().join("graph-prunable.onnx"), &Default::default()).unwrap();
    let spec = prunable.spec().unwrap();
    let names: Vec<&str> = spec.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["fp32", "int8", "pruned-0.25", "pruned-0.5"]);
    let half = spec.variant("pruned-0.5").unwrap();
    assert_eq!(half.variant, Variant::MagnitudePruned { removed: 0.5 });
    assert_eq!((half.accuracy, half.accuracy_source.as_str()), (0.0, "unknown"));
    assert!(half.citation.contains("no labelled data") && half.citation.contains("without fine-tuning"), "{}", half.citation);

    // built through the catalogue, as a worker, serve or profile builds it
    let fp32 = prunable.build("fp32", &device).unwrap();
    let network = prunable.build("pruned-0.5", &device).unwrap();
    let (narrow, _) = prune(&prunable.onnx().unwrap(), 0.5);
    assert_eq!(network.boundary_dims, narrow.boundary_dims());
    assert!(param_bytes(&network) < param_bytes(&fp32));
    let input = input_of(&narrow);
    assert_eq!(whole(&network, &input), whole(&Arc::new(narrow).build(false, &device), &input));

    let alexnet = imported::register("alexnet-graph", &models().join("zoo-bvlc_alexnet.onnx"), &Default::default()).unwrap();
    let spec = alexnet.spec().unwrap();
    assert!(spec.variants.iter().all(|v| !v.name.starts_with("pruned")), "{:?}", spec.variants);
    let refused = alexnet.build("pruned-0.5", &device).unwrap_err().to_string();
    assert!(refused.contains("fp32, int8"), "{refused}");
    let Workload::Imported(id) = alexnet else { unreachable!() };
    let refused = imported::build(id, Variant::MagnitudePruned { removed: 0.5 }, &device).unwrap_err().to_string();
    assert!(refused.contains("no prunable convolution"), "{refused}");
}


/// The int8 variant computes in int8 (`Int8Op`) where the op allows it (dense square-kernel
/// convolutions with symmetric pads, Gemm; AlexNet's grouped convolutions stay f32), stays close
/// to fp32 whole and with an int8 head before an fp32 tail at every cut, and stores its weights
/// in about a quarter of the bytes.
#[test]
fn int8_computes_in_int8_where_it_can_and_stays_close_to_fp32() {
    use rlsched_executor::model::onnx::Int8Op;
    let device = DeviceChoice::Flex.device().unwrap();
    for file in ["zoo-resnet50.onnx", "zoo-bvlc_alexnet.onnx"] {
        let model = load(file);
        let (fp32, int8) = (model.build(false, &device), model.build(true, &device));
        let Layer::Onnx(segment) = &int8.stages[0].layers[0] else { panic!("{file}: an imported stage") };
        let ops = &segment.program.int8;
        assert_eq!(ops.len(), model.ops.len());
        let (convs, denses) = (ops.iter().filter(|o| matches!(o, Some(Int8Op::Conv(_)))).count(), ops.iter().filter(|o| matches!(o, Some(Int8Op::Dense(_)))).count());
        for (op, q) in model.ops.iter().zip(ops) {
            if let OpKind::Conv { groups, .. } = op.kind {
                assert!(groups == 1 || q.is_none(), "{file} {}: a grouped convolution has no int8 form", op.name);
            }
        }
        let grouped = model.ops.iter().filter(|o| matches!(o.kind, OpKind::Conv { groups, .. } if groups > 1)).count();
        println!("{file}: {convs} convolutions and {denses} Gemms in int8, {grouped} grouped convolutions in f32");
        assert!(convs > 0, "{file}: no convolution computes in int8");
        assert!(param_bytes(&int8) * 3 < param_bytes(&fp32), "{file}: int8 weights take {} bytes, fp32 {}", param_bytes(&int8), param_bytes(&fp32));
        let input = input_of(&model);
        let reference = whole(&fp32, &input);
        let cosine = |a: &[f32]| {
            let dot: f64 = a.iter().zip(&reference).map(|(x, y)| *x as f64 * *y as f64).sum();
            let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            dot / (norm(a) * norm(&reference)).max(1e-30)
        };
        let whole_int8 = cosine(&whole(&int8, &input));
        println!("{file}: int8 logits cosine with fp32 {whole_int8:.5}");
        assert!(whole_int8 > 0.99, "{file}: cosine {whole_int8}");
        let n = int8.stage_count();
        for cut in 1..n {
            let head = int8.run_wire(0, cut, &input, &device).unwrap();
            let tail = f32s(&fp32.run_wire(cut, n, &head, &device).unwrap());
            let c = cosine(&tail);
            assert!(c > 0.99, "{file}: int8 head and fp32 tail at cut {cut}: cosine {c}");
        }
    }
}
