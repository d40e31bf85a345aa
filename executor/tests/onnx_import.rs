//! ONNX import against onnxruntime (issue 19): the nine light zoo graphs the `onnx` package
//! ships (with seeded random weights) and graphs built with onnx.helper import, and match
//! onnxruntime within 1e-4 relative, whole and at every offered cut (head, then the tail from the
//! head's wire output); bad models get clear errors; arbitrary bytes never panic the parser.
//!
//! The models and reference outputs come from `scripts/onnx_reference.py` (onnx, onnxruntime:
//! installed by `scripts/test.sh`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rlsched_executor::model::activation::WireData;
use rlsched_executor::model::onnx::{import_file, ImportOptions, OnnxModel};
use rlsched_executor::{DeviceChoice, WireTensor};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/onnx_reference.py");
const TOLERANCE: f64 = 1e-4;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn python(args: &[&str]) {
    let out = Command::new("python3")
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("python3 runs (scripts/test.sh installs onnx and onnxruntime)");
    assert!(
        out.status.success(),
        "onnx_reference.py {args:?} failed (pip install onnx onnxruntime):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The test models. The script rewrites the small ones on every run and the zoo ones (1.4 GB of
/// random weights, a minute to write) only where missing: bump the version when their
/// randomisation changes.
fn models() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = target_dir().join("onnx-test-models-v1");
        python(&["prepare", dir.to_str().expect("utf-8 path")]);
        dir
    })
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// max |a - b| / max |b|: the error relative to the tensor's scale (an elementwise ratio
/// explodes where the reference crosses zero).
fn relative_error(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "element counts differ");
    let scale = reference.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64)).max(1e-12);
    let diff = ours.iter().zip(reference).fold(0.0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    diff / scale
}

fn f32s(t: &WireTensor) -> Vec<f32> {
    match &t.data {
        WireData::F32(v) => v.clone(),
        other => panic!("expected FP32, got {:?}", other.datatype()),
    }
}

struct Report {
    model: String,
    ops: usize,
    stages: usize,
    cuts: usize,
    multi_tensor_cuts: usize,
    worst: f64,
    import_s: f64,
}

/// Imports one model, runs it whole and stage by stage, and compares every boundary tensor
/// and the output with onnxruntime.
fn check_model(file: &str) -> Report {
    let path = models().join(file);
    let started = Instant::now();
    let model = Arc::new(import_file(file, &path, &ImportOptions::default()).unwrap_or_else(|e| panic!("{file}: {e}")));
    let import_s = started.elapsed().as_secs_f64();
    let device = DeviceChoice::Flex.device().unwrap();
    let network = model.build(false, &device);
    let n = network.stage_count();
    assert_eq!(n, model.stage_count());

    let input_dims = model.values[model.input].dims.clone();
    let count: usize = input_dims.iter().product();
    let values: Vec<f32> = (0..count).map(|i| ((i * 7919 % 1000) as f32) / 1000.0).collect();
    let input = WireTensor::new(input_dims.clone(), WireData::F32(values.clone())).unwrap();

    // every cut: each stage runs on the previous stage's wire output (head, then tail)
    let mut boundary_outputs = vec![input.clone()];
    for stage in 0..n {
        let next = network.run_wire(stage, stage + 1, boundary_outputs.last().unwrap(), &device).unwrap();
        assert_eq!(next.shape, network.boundary_dims[stage + 1], "{file}: stage {stage} output shape");
        boundary_outputs.push(next);
    }
    let whole = network.run_wire(0, n, &input, &device).unwrap();
    // one cut in the middle as a multi-stage head and tail
    let middle = n / 2;
    let split = if middle > 0 {
        let head = network.run_wire(0, middle, &input, &device).unwrap();
        Some(network.run_wire(middle, n, &head, &device).unwrap())
    } else {
        None
    };

    // the reference: every value crossing a boundary, and the output
    let scratch = target_dir().join(format!("onnx-test-run-{}", file.trim_end_matches(".onnx")));
    std::fs::create_dir_all(&scratch).unwrap();
    let input_path = scratch.join("input.bin");
    std::fs::write(&input_path, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let mut names: Vec<String> = Vec::new();
    for boundary in &model.boundaries[1..] {
        for name in boundary.names(&model.values) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let request = serde_json::json!([{
        "model": path, "input": input_path, "shape": input_dims, "names": names, "out": scratch.join("out"),
    }]);
    let request_path = scratch.join("request.json");
    std::fs::write(&request_path, request.to_string()).unwrap();
    python(&["run", request_path.to_str().unwrap()]);
    let reference = |name: &str| {
        let index = names.iter().position(|n| n == name).unwrap();
        read_f32(&scratch.join("out").join(format!("{index}.bin")))
    };

    let mut worst = 0.0f64;
    for (stage, boundary) in model.boundaries.iter().enumerate().skip(1) {
        let ours = f32s(&boundary_outputs[stage]);
        let mut offset = 0;
        for name in boundary.names(&model.values) {
            let expected = reference(&name);
            let part = &ours[offset..offset + expected.len()];
            offset += expected.len();
            let error = relative_error(part, &expected);
            assert!(error <= TOLERANCE, "{file}: cut {stage}, tensor `{name}`: relative error {error:e}");
            worst = worst.max(error);
        }
        assert_eq!(offset, ours.len(), "{file}: boundary {stage} carries exactly its tensors");
    }
    let expected = reference(&model.output_name);
    for (what, got) in [("whole", Some(whole)), ("middle split", split)] {
        if let Some(got) = got {
            let error = relative_error(&f32s(&got), &expected);
            assert!(error <= TOLERANCE, "{file}: {what} output: relative error {error:e}");
            worst = worst.max(error);
        }
    }
    Report {
        model: file.to_string(),
        ops: model.onnx_nodes,
        stages: n,
        cuts: n - 1,
        multi_tensor_cuts: model.boundaries[1..n].iter().filter(|b| b.values.len() > 1).count(),
        worst,
        import_s,
    }
}

#[test]
fn zoo_and_built_graphs_match_onnxruntime_at_every_cut() {
    let files = [
        "graph-mixed.onnx",
        "graph-opset9.onnx",
        "graph-prunable.onnx",
        "zoo-bvlc_alexnet.onnx",
        "zoo-densenet121.onnx",
        "zoo-inception_v1.onnx",
        "zoo-inception_v2.onnx",
        "zoo-resnet50.onnx",
        "zoo-shufflenet.onnx",
        "zoo-squeezenet.onnx",
        "zoo-vgg19.onnx",
        "zoo-zfnet512.onnx",
    ];
    let mut reports = Vec::new();
    for file in files {
        let report = check_model(file);
        assert!(report.cuts >= 1, "{file}: offers no cut");
        eprintln!(
            "{:<24} ops {:>5}  stages {:>3}  cuts {:>3} ({} multi-tensor)  worst rel err {:.2e}  import {:.2} s",
            report.model, report.ops, report.stages, report.cuts, report.multi_tensor_cuts, report.worst, report.import_s
        );
        reports.push(report);
    }
    // DAG models must offer cuts: Inception and DenseNet are not chains
    for dag in ["zoo-inception_v1.onnx", "zoo-densenet121.onnx"] {
        let report = reports.iter().find(|r| r.model == dag).unwrap();
        assert!(report.cuts >= 5, "{dag}: {} cuts", report.cuts);
    }
}

fn import_error(file: &str, options: &ImportOptions) -> String {
    let path = models().join(file);
    match import_file(file, &path, options) {
        Ok(_) => panic!("{file} imported"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_models_get_clear_errors() {
    let truncated = import_error("bad-truncated.onnx", &ImportOptions::default());
    assert!(truncated.contains("truncated or corrupt"), "{truncated}");
    let unsupported = import_error("bad-unsupported.onnx", &ImportOptions::default());
    assert!(unsupported.contains("Erf ×2") && unsupported.contains("first_erf"), "{unsupported}");
    let dynamic = import_error("bad-dynamic.onnx", &ImportOptions::default());
    assert!(dynamic.contains("--input-shape") && dynamic.contains("[N, 3, H, W]"), "{dynamic}");
    let huge = import_error("bad-huge.onnx", &ImportOptions::default());
    assert!(huge.contains("initializer `w`") && huge.contains("[1024, 1024, 1024]"), "{huge}");

    // the dynamic model imports once its shape is given, and runs
    let options = ImportOptions { input_shape: Some(vec![1, 3, 8, 8]) };
    let model = import_file("dynamic", &models().join("bad-dynamic.onnx"), &options).unwrap();
    assert_eq!(model.values[model.output].dims, vec![1, 4, 8, 8]);
}

#[test]
fn batches_run_through_an_imported_model() {
    let model: Arc<OnnxModel> = Arc::new(import_file("mixed", &models().join("graph-mixed.onnx"), &ImportOptions::default()).unwrap());
    let device = DeviceChoice::Flex.device().unwrap();
    let network = model.build(false, &device);
    let one: Vec<f32> = (0..4 * 20 * 21).map(|i| (i % 17) as f32 / 17.0).collect();
    let two: Vec<f32> = one.iter().chain(one.iter().map(|v| v * 0.5).collect::<Vec<_>>().iter()).copied().collect();
    let single = network.run_wire(0, network.stage_count(), &WireTensor::new(vec![1, 4, 20, 21], WireData::F32(one)).unwrap(), &device).unwrap();
    let pair = network.run_wire(0, network.stage_count(), &WireTensor::new(vec![2, 4, 20, 21], WireData::F32(two)).unwrap(), &device).unwrap();
    assert_eq!(pair.shape, vec![2, 10]);
    let (a, b) = (f32s(&single), f32s(&pair));
    assert!(relative_error(&b[..10], &a) < 1e-5, "the first sample of a batch of two is the single sample");
}

mod parser_props {
    use super::*;
    use proptest::prelude::*;
    use rlsched_executor::model::onnx::import_bytes;

    /// Imports `bytes` and, where that succeeds, builds and runs the model on an input of the
    /// shape it declares, and its pruned form: shapes were checked at import, so neither pruning
    /// nor running must panic.
    fn import_and_run(bytes: &[u8]) {
        if let Ok(model) = import_bytes("mutated", "mutated.onnx", bytes, &ImportOptions::default()) {
            let (pruned, _) = rlsched_executor::model::onnx::prune::prune(&model, 0.5);
            let device = DeviceChoice::Flex.device().unwrap();
            for model in [Arc::new(model), Arc::new(pruned)] {
                let network = model.build(false, &device);
                let dims = network.boundary_dims[0].clone();
                let input = WireTensor::new(dims.clone(), WireData::F32(vec![0.5; dims.iter().product()])).unwrap();
                let _ = network.run_wire(0, network.stage_count(), &input, &device);
            }
        }
    }

    fn mixed_model() -> &'static onnx_ir::ModelProto {
        static MODEL: OnceLock<onnx_ir::ModelProto> = OnceLock::new();
        MODEL.get_or_init(|| {
            use onnx_ir::Message;
            onnx_ir::ModelProto::parse_from_bytes(&std::fs::read(models().join("graph-mixed.onnx")).unwrap()).unwrap()
        })
    }

    /// The graph with prunable convolutions: edits of it reach the pruning of odd graphs.
    fn prunable_model() -> &'static onnx_ir::ModelProto {
        static MODEL: OnceLock<onnx_ir::ModelProto> = OnceLock::new();
        MODEL.get_or_init(|| {
            use onnx_ir::Message;
            onnx_ir::ModelProto::parse_from_bytes(&std::fs::read(models().join("graph-prunable.onnx")).unwrap()).unwrap()
        })
    }

    fn valid_bytes() -> &'static [u8] {
        static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
        BYTES.get_or_init(|| std::fs::read(models().join("graph-opset9.onnx")).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Random byte edits of a valid model: import answers Ok or Err, never panics.
        #[test]
        fn mutated_models_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in proptest::option::weighted(0.25, any::<prop::sample::Index>()),
        ) {
            let mut bytes = valid_bytes().to_vec();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Some(cut) = cut {
                let keep = cut.index(bytes.len() + 1);
                bytes.truncate(keep);
            }
            import_and_run(&bytes);
        }

        /// Structural edits: a node's integer attributes (pads, strides, axes, perm, group,
        /// kernel_shape...), an initializer's dims, or a node's inputs, set to small or odd
        /// values, the model re-encoded: Ok or Err, never a panic, at import, pruning or run
        /// time. `target / 3` picks the graph (the mixed one, the prunable one), `target % 3`
        /// the edit.
        #[test]
        fn edited_attributes_never_panic(
            node in any::<prop::sample::Index>(),
            values in proptest::collection::vec(-3i64..12, 0..6),
            target in 0u8..6,
        ) {
            use onnx_ir::Message;
            let mut model = if target < 3 { mixed_model() } else { prunable_model() }.clone();
            let graph = model.graph.as_mut().unwrap();
            match target % 3 {
                0 => {
                    let n = node.index(graph.node.len());
                    let node = &mut graph.node[n];
                    if let Some(attribute) = node.attribute.first_mut() {
                        attribute.ints = values.clone();
                        attribute.i = values.first().copied().unwrap_or(0);
                    }
                }
                1 => {
                    let i = node.index(graph.initializer.len());
                    graph.initializer[i].dims = values.clone();
                }
                _ => {
                    let n = node.index(graph.node.len());
                    let names: Vec<String> = graph.node.iter().flat_map(|n| n.output.clone()).collect();
                    let inputs = &mut graph.node[n].input;
                    for (slot, v) in inputs.iter_mut().zip(&values) {
                        *slot = names[v.unsigned_abs() as usize % names.len()].clone();
                    }
                }
            }
            import_and_run(&model.write_to_bytes().unwrap());
        }
    }
}
