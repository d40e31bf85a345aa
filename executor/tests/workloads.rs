//! Every workload's stages compose back into the whole model at every cut point, through the
//! same host round trip a split takes; compressed variants stay close to fp32; bad input is
//! refused with a clear error.

use burn::tensor::Device;
use rlsched_executor::model::activation::WireData;
use rlsched_executor::model::workloads::digits::{accuracy, DigitsSplit};
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::{ExecError, WireTensor};

fn values(t: &WireTensor) -> Vec<f32> {
    match &t.data {
        WireData::F32(v) => v.clone(),
        other => panic!("expected FP32 output, got {:?}", other.datatype()),
    }
}

/// Largest absolute difference, relative to the reference's largest magnitude.
fn relative_error(reference: &[f32], other: &[f32]) -> f32 {
    assert_eq!(reference.len(), other.len());
    let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    reference
        .iter()
        .zip(other)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn check_every_cut(workload: Workload) {
    let device = Device::flex();
    let network = workload.build("fp32", &device).unwrap();
    let n = network.stage_count();
    let input = workload.example_input(3);
    let whole = values(&network.run_wire(0, n, &input, &device).unwrap());
    assert!(whole.iter().all(|v| v.is_finite()));
    assert!(whole.iter().any(|v| *v != 0.0), "{workload:?} output is all zeros");
    let mut head = input.clone();
    for cut in 1..n {
        // the head runs one more stage and crosses the host boundary, as a split does
        head = network.run_wire(cut - 1, cut, &head, &device).unwrap();
        assert_eq!(head.shape, network.boundary_dims[cut], "{workload:?} cut {cut}");
        let tail = values(&network.run_wire(cut, n, &head, &device).unwrap());
        let err = relative_error(&whole, &tail);
        assert!(err < 1e-4, "{workload:?} cut {cut}: relative error {err}");
    }
}

#[test]
fn mobilenetv2_every_cut_matches_whole() {
    check_every_cut(Workload::MobileNetV2);
}

#[test]
fn resnet18_every_cut_matches_whole() {
    check_every_cut(Workload::ResNet18);
}

#[test]
fn vgg16_every_cut_matches_whole() {
    check_every_cut(Workload::Vgg16);
}

#[test]
fn bert_mini_every_cut_matches_whole() {
    check_every_cut(Workload::BertMini);
}

#[test]
fn digits_cnn_every_cut_matches_whole() {
    check_every_cut(Workload::DigitsCnn);
}

#[test]
fn ofa_note10_every_cut_matches_whole() {
    check_every_cut(Workload::OfaNote10);
}

#[test]
fn narrower_mobilenets_run_and_are_smaller() {
    let device = Device::flex();
    let input = Workload::MobileNetV2.example_input(5);
    let mut sizes = Vec::new();
    for variant in ["fp32", "pruned-0.75", "pruned-0.5"] {
        let network = Workload::MobileNetV2.build(variant, &device).unwrap();
        let out = network.run_wire(0, network.stage_count(), &input, &device).unwrap();
        assert_eq!(out.shape, vec![1, 1000]);
        // the activation after the stem shrinks with the width multiplier
        sizes.push(network.output_bytes(0));
    }
    assert!(sizes[0] > sizes[1] && sizes[1] > sizes[2], "{sizes:?}");
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn int8_outputs_stay_close_to_fp32() {
    let device = Device::flex();
    for workload in [Workload::ResNet18, Workload::BertMini, Workload::MobileNetV2] {
        let input = workload.example_input(9);
        let run = |variant: &str| {
            let net = workload.build(variant, &device).unwrap();
            values(&net.run_wire(0, net.stage_count(), &input, &device).unwrap())
        };
        let similarity = cosine(&run("fp32"), &run("int8"));
        assert!(similarity > 0.98, "{workload:?}: int8/fp32 cosine similarity {similarity}");
    }
}

/// JALAD's int8 intermediates, measured where accuracy can be measured: the trained digits CNN
/// on its held-out split, at every cut. The ImageNet workloads run seeded weights, so for them
/// the test bounds how far the output moves instead.
#[test]
fn int8_intermediates_cost_little_accuracy() {
    use rlsched_executor::model::quantize::{dequantize, quantize};
    use rlsched_executor::model::workloads::digits::accuracy_int8_cut;
    let device = Device::flex();
    let test = DigitsSplit::load("test").unwrap();
    let network = Workload::DigitsCnn.build("fp32", &device).unwrap();
    let fp32 = accuracy(&network, &test, &device).unwrap();
    for cut in 1..network.stage_count() {
        let int8 = accuracy_int8_cut(&network, &test, cut, &device).unwrap();
        println!("digits-cnn int8 intermediate after stage {cut}: accuracy {int8:.4} (fp32 {fp32:.4})");
        assert!(fp32 - int8 <= 0.01, "cut {cut}: int8 intermediates lose {:.4}", fp32 - int8);
    }
    for workload in [Workload::MobileNetV2, Workload::BertMini] {
        let net = workload.build("fp32", &device).unwrap();
        let input = workload.example_input(3);
        let reference = values(&net.run_wire(0, net.stage_count(), &input, &device).unwrap());
        for cut in 1..net.stage_count() {
            let head = net.run_wire(0, cut, &input, &device).unwrap();
            let (q, range) = quantize(&head).unwrap();
            let tail = net.run_wire(cut, net.stage_count(), &dequantize(&q, range).unwrap(), &device).unwrap();
            let similarity = cosine(&reference, &values(&tail));
            assert!(similarity > 0.99, "{workload:?} cut {cut}: cosine {similarity}");
        }
    }
}

#[test]
fn digits_variants_keep_their_measured_accuracy() {
    let device = Device::flex();
    let test = DigitsSplit::load("test").unwrap();
    let spec = Workload::DigitsCnn.spec().unwrap();
    let fp32 = accuracy(&Workload::DigitsCnn.build("fp32", &device).unwrap(), &test, &device).unwrap();
    assert!(fp32 > 0.95, "trained digits CNN reaches only {fp32}");
    let compressed: Vec<&str> = spec.variants.iter().map(|v| v.name.as_str()).filter(|n| *n != "fp32").collect();
    assert!(compressed.iter().filter(|n| n.starts_with("pruned-")).count() >= 2, "{compressed:?}: two pruning ratios or more");
    for variant in compressed {
        let measured = accuracy(&Workload::DigitsCnn.build(variant, &device).unwrap(), &test, &device).unwrap();
        let declared = spec.variant(variant).unwrap().accuracy;
        assert_eq!(measured, declared, "{variant}: spec must report the measured figure");
        assert!(measured <= fp32 + 0.01, "{variant} beats fp32 by more than noise");
    }
    let int8 = spec.variant("int8").unwrap().accuracy;
    assert!(fp32 - int8 < 0.02, "int8 loses {} points", fp32 - int8);
}

#[test]
fn wrong_shape_names_the_expected_shape() {
    let device = Device::flex();
    let network = Workload::ResNet18.build("fp32", &device).unwrap();
    let bad = WireTensor::new(vec![1, 3, 32, 32], WireData::F32(vec![0.5; 3 * 32 * 32])).unwrap();
    let err = network.run_wire(0, network.stage_count(), &bad, &device).unwrap_err();
    assert!(matches!(err, ExecError::WrongShape { .. }));
    let message = err.to_string();
    assert!(message.contains("[N, 3, 224, 224]"), "{message}");
    // a split's tail expects the cut's shape, not the input's
    let at_cut = network.run_wire(3, network.stage_count(), &bad, &device).unwrap_err().to_string();
    assert!(at_cut.contains("[N, 64, 56, 56]"), "{at_cut}");
}

#[test]
fn bad_values_and_types_are_refused() {
    let device = Device::flex();
    let mut pixels = vec![0.1f32; 64];
    pixels[10] = f32::NAN;
    let err = WireTensor::new(vec![1, 1, 8, 8], WireData::F32(pixels)).unwrap_err();
    assert!(matches!(err, ExecError::NonFinite(10)), "{err}");
    let err = WireTensor::new(vec![1, 1, 8, 8], WireData::F32(vec![0.0; 63])).unwrap_err();
    assert!(err.to_string().contains("needs 64"), "{err}");

    let bert = Workload::BertMini.build("fp32", &device).unwrap();
    let floats = WireTensor::new(vec![1, 128], WireData::F32(vec![1.0; 128])).unwrap();
    let err = bert.run_wire(0, 6, &floats, &device).unwrap_err();
    assert!(err.to_string().contains("expected INT64"), "{err}");
    let out_of_vocab = WireTensor::new(vec![1, 128], WireData::I64(vec![40_000; 128])).unwrap();
    let err = bert.run_wire(0, 6, &out_of_vocab, &device).unwrap_err();
    assert!(matches!(err, ExecError::TokenOutOfRange { .. }), "{err}");
    let err = bert.run_wire(2, 99, &out_of_vocab, &device).unwrap_err();
    assert!(matches!(err, ExecError::BadStageRange { .. }), "{err}");
}

#[test]
fn unknown_names_are_errors() {
    assert!("alexnet".parse::<Workload>().is_err());
    let err = Workload::Vgg16.build("fp16", &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("fp32, int8"), "{err}");
}
