//! The digits CNN's round trip (issue 19): the trained built-in is exported to ONNX, imported
//! as a user's model would be, and its accuracy measured on the held-out split given as .npy
//! calibration data matches the built-in's measured figure within 0.5 points; its pruned
//! variants (L1 filter pruning without fine-tuning) are measured the same way.

use rlsched_executor::model::onnx::calibration::{npy_bytes, Npy};
use rlsched_executor::model::onnx::export::export;
use rlsched_executor::model::workloads::digits::DigitsSplit;
use rlsched_executor::model::workloads::imported;
use rlsched_executor::{DeviceChoice, Workload};

#[test]
fn exported_digits_cnn_keeps_its_accuracy_through_onnx() {
    let device = DeviceChoice::Flex.device().unwrap();
    let trained = Workload::DigitsCnn.build("fp32", &device).unwrap();
    let dir = std::env::temp_dir().join(format!("rlsched-onnx-digits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("digits.onnx");
    std::fs::write(&path, export(&trained).unwrap()).unwrap();

    let test = DigitsSplit::load("test").unwrap();
    std::fs::write(dir.join("inputs.npy"), npy_bytes(&Npy::F32(vec![test.len(), 1, 8, 8], test.pixels.clone()))).unwrap();
    std::fs::write(dir.join("labels.npy"), npy_bytes(&Npy::I64(vec![test.len()], test.labels.clone()))).unwrap();

    let workload = imported::register("digits-onnx", &path, &Default::default()).unwrap();
    let before = workload.spec().unwrap();
    assert!(before.variants.iter().all(|v| v.accuracy_source == "unknown"), "no labelled data yet: unknown");
    let measured = imported::calibrate(workload, &dir, &device).unwrap();
    let builtin = Workload::DigitsCnn.spec().unwrap();
    let reference = builtin.variant("fp32").unwrap().accuracy;
    eprintln!(
        "digits CNN: built-in fp32 {reference:.4}; through ONNX fp32 {:.4}, int8 {:.4} on {} samples",
        measured.fp32, measured.int8, measured.samples
    );
    assert_eq!(measured.samples, test.len());
    assert!((measured.fp32 - reference).abs() <= 0.005, "fp32 through ONNX {} against {reference}", measured.fp32);
    assert!((measured.int8 - reference).abs() <= 0.02, "int8 {} against {reference}", measured.int8);
    let after = workload.spec().unwrap();
    assert_eq!(after.variant("fp32").unwrap().accuracy_source, "measured");
    assert_eq!(after.variant("fp32").unwrap().accuracy, measured.fp32);

    // the first convolution reaches the second through BN, ReLU and pooling: both pruned
    // variants exist, unknown before the data and measured after it
    for name in ["pruned-0.25", "pruned-0.5"] {
        let unknown = before.variant(name).unwrap();
        assert_eq!((unknown.accuracy, unknown.accuracy_source.as_str()), (0.0, "unknown"));
        let known = after.variant(name).unwrap();
        assert_eq!(known.accuracy_source, "measured");
        assert!(known.citation.contains("without fine-tuning"), "{}", known.citation);
    }
    let [Some(quarter), Some(half)] = measured.pruned else { panic!("pruned variants measured: {:?}", measured.pruned) };
    eprintln!("digits CNN through ONNX, L1-pruned without fine-tuning: pruned-0.25 {quarter:.4}, pruned-0.5 {half:.4}");
    assert_eq!(after.variant("pruned-0.25").unwrap().accuracy, quarter);
    assert_eq!(after.variant("pruned-0.5").unwrap().accuracy, half);
    assert!(quarter >= 0.5, "pruned-0.25 {quarter}: a quarter of one layer's filters should not ruin the model");
    assert!(half > 0.1 && half <= measured.fp32 + 0.02, "pruned-0.5 {half}: above chance, not above fp32 {}", measured.fp32);
    std::fs::remove_dir_all(&dir).ok();
}
