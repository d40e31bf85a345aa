//! The compressed variants against fp32: an int8 head and an fp32 tail compose at every cut
//! (with and without JALAD's int8 intermediate between them), int8 keeps the digits CNN's
//! predictions, and pruned networks are really narrower yet compose like any other.

use burn::tensor::Device;
use rlsched_executor::model::activation::WireData;
use rlsched_executor::model::quantize::{dequantize, quantize};
use rlsched_executor::model::workloads::digits::DigitsSplit;
use rlsched_executor::model::workloads::Workload;
use rlsched_executor::profile::profiler::record_bytes;
use rlsched_executor::{Network, WireTensor};

fn values(t: &WireTensor) -> Vec<f32> {
    match &t.data {
        WireData::F32(v) => v.clone(),
        other => panic!("expected FP32 output, got {:?}", other.datatype()),
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k)
}

/// The int8 network's stages `0..cut`, then the fp32 network's `cut..`, the intermediate
/// crossing the host as f32 or (JALAD) as int8 with its range.
fn split(int8: &Network, fp32: &Network, cut: usize, input: &WireTensor, jalad: bool, device: &Device) -> Vec<f32> {
    let n = fp32.stage_count();
    let head = int8.run_wire(0, cut, input, device).unwrap();
    assert_eq!(head.shape, fp32.boundary_dims[cut], "cut {cut}: the int8 head must hand over the fp32 shape");
    let head = if jalad {
        let (q, range) = quantize(&head).unwrap();
        dequantize(&q, range).unwrap()
    } else {
        head
    };
    values(&fp32.run_wire(cut, n, &head, device).unwrap())
}

/// Digits: every test image is its own request; int8 alone and int8 head + fp32 tail at every
/// cut must pick the fp32 network's class for at least 99% of them.
#[test]
fn digits_int8_head_and_fp32_tail_agree_with_fp32_at_every_cut() {
    let device = Device::flex();
    let (fp32, int8) = (Workload::DigitsCnn.build("fp32", &device).unwrap(), Workload::DigitsCnn.build("int8", &device).unwrap());
    let test = DigitsSplit::load("test").unwrap();
    let n = fp32.stage_count();
    let images: Vec<WireTensor> = (0..test.len())
        .map(|i| WireTensor::new(vec![1, 1, 8, 8], WireData::F32(test.pixels[i * 64..(i + 1) * 64].to_vec())).unwrap())
        .collect();
    let reference: Vec<usize> = images.iter().map(|x| argmax(&values(&fp32.run_wire(0, n, x, &device).unwrap()))).collect();
    let agreement = |predict: &dyn Fn(&WireTensor) -> Vec<f32>| {
        images.iter().zip(&reference).filter(|(x, &r)| argmax(&predict(x)) == r).count() as f64 / images.len() as f64
    };
    let whole = agreement(&|x| values(&int8.run_wire(0, n, x, &device).unwrap()));
    println!("digits-cnn int8: top-1 agreement with fp32 {whole:.4} over {} test images", images.len());
    assert!(whole >= 0.99, "int8 agrees with fp32 on only {whole:.4}");
    for cut in 1..n {
        for jalad in [false, true] {
            let agreed = agreement(&|x| split(&int8, &fp32, cut, x, jalad, &device));
            println!("digits-cnn int8 head / fp32 tail at cut {cut} (int8 intermediate: {jalad}): agreement {agreed:.4}");
            assert!(agreed >= 0.99, "cut {cut}, int8 intermediate {jalad}: agreement {agreed:.4}");
        }
    }
}

/// The random-weight networks: the split's logits stay close to the whole fp32 network's.
#[test]
fn imagenet_int8_head_and_fp32_tail_compose_at_every_cut() {
    let device = Device::flex();
    for workload in [Workload::ResNet18, Workload::MobileNetV2, Workload::OfaNote10] {
        let (fp32, int8) = (workload.build("fp32", &device).unwrap(), workload.build("int8", &device).unwrap());
        let n = fp32.stage_count();
        let input = workload.example_input(11);
        let reference = values(&fp32.run_wire(0, n, &input, &device).unwrap());
        let whole = cosine(&reference, &values(&int8.run_wire(0, n, &input, &device).unwrap()));
        println!("{workload:?} int8: logits cosine with fp32 {whole:.5}");
        assert!(whole > 0.98, "{workload:?} int8: cosine {whole}");
        for cut in 1..n {
            let tail = split(&int8, &fp32, cut, &input, cut % 2 == 0, &device);
            assert!(tail.iter().all(|v| v.is_finite()), "{workload:?} cut {cut}: non-finite logits");
            let similarity = cosine(&reference, &tail);
            assert!(similarity > 0.98, "{workload:?} cut {cut}: cosine {similarity}");
        }
    }
}

/// The workloads too large to split at every cut here: the whole int8 network's logits.
#[test]
fn int8_logits_stay_close_for_vgg16_and_bert_mini() {
    let device = Device::flex();
    for workload in [Workload::Vgg16, Workload::BertMini] {
        let input = workload.example_input(13);
        let run = |variant: &str| {
            let net = workload.build(variant, &device).unwrap();
            values(&net.run_wire(0, net.stage_count(), &input, &device).unwrap())
        };
        let similarity = cosine(&run("fp32"), &run("int8"));
        println!("{workload:?} int8: logits cosine with fp32 {similarity:.5}");
        assert!(similarity > 0.98, "{workload:?}: cosine {similarity}");
    }
}

fn total_flops(network: &Network) -> u64 {
    network.stages.iter().enumerate().map(|(i, s)| s.flops(&network.boundary_dims[i])).sum()
}

/// Every pruned built-in: fewer FLOPs and weights, the same output, every cut composes; where
/// pruning stays inside blocks (ResNet's basic blocks, OFA's expansions, BERT's heads and
/// neurons) the cut shapes are those of fp32.
#[test]
fn pruned_networks_are_narrower_and_compose_at_every_cut() {
    let device = Device::flex();
    let variants = [
        (Workload::ResNet18, "pruned-0.3"),
        (Workload::ResNet18, "pruned-0.5"),
        (Workload::Vgg16, "pruned-0.5"),
        (Workload::Vgg16, "pruned-0.56"),
        (Workload::BertMini, "pruned-0.25"),
        (Workload::BertMini, "pruned-0.5"),
        (Workload::OfaNote10, "pruned-e4"),
        (Workload::OfaNote10, "pruned-e3"),
    ];
    for (workload, variant) in variants {
        let fp32 = workload.build("fp32", &device).unwrap();
        let pruned = workload.build(variant, &device).unwrap();
        let (before, after) = (total_flops(&fp32), total_flops(&pruned));
        println!("{workload:?} {variant}: {:.2} -> {:.2} GFLOPs", before as f64 / 1e9, after as f64 / 1e9);
        assert!(after < before, "{workload:?} {variant}: {after} FLOPs, fp32 {before}");
        assert!(record_bytes(&pruned).unwrap() < record_bytes(&fp32).unwrap(), "{workload:?} {variant}: no fewer weights");
        assert_eq!(pruned.boundary_dims.last(), fp32.boundary_dims.last());
        if workload != Workload::Vgg16 {
            assert_eq!(pruned.boundary_dims, fp32.boundary_dims, "residual widths must be kept");
        }
        let n = pruned.stage_count();
        let input = workload.example_input(4);
        let whole = values(&pruned.run_wire(0, n, &input, &device).unwrap());
        let scale = whole.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let mut head = input.clone();
        for cut in 1..n {
            head = pruned.run_wire(cut - 1, cut, &head, &device).unwrap();
            let tail = values(&pruned.run_wire(cut, n, &head, &device).unwrap());
            let err = whole.iter().zip(&tail).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            assert!(err < 1e-4, "{workload:?} {variant} cut {cut}: relative error {err}");
        }
    }
}

/// BERT's head and neuron pruning drops exactly what contributes nothing: with one head's
/// query, key, value and output weights and a quarter of every feed-forward's neurons zeroed,
/// those are the weakest by L1 and the pruned network (its own attention over three heads)
/// answers what the zeroed full network answers.
#[test]
fn bert_pruning_removes_the_heads_and_neurons_that_contribute_nothing() {
    use burn::module::{Param, ParamId};
    use burn::tensor::Tensor;
    use rlsched_executor::model::layers::Layer;
    use rlsched_executor::model::prune::prune_encoders;
    let device = Device::flex();
    let mut network = Workload::BertMini.build("fp32", &device).unwrap();
    let zero_rows = |w: Tensor<2>, rows: std::ops::Range<usize>| {
        let [r, c] = w.dims();
        let mask: Vec<f32> = (0..r).flat_map(|i| std::iter::repeat_n(if rows.contains(&i) { 0.0 } else { 1.0 }, c)).collect();
        Param::initialized(ParamId::new(), w * Tensor::<1>::from_floats(mask.as_slice(), &device).reshape([r, c]))
    };
    let zero_columns = |w: Tensor<2>, columns: std::ops::Range<usize>| zero_rows(w.transpose(), columns).map(|t| t.transpose());
    let mut encoders = 0;
    for stage in &mut network.stages {
        for layer in &mut stage.layers {
            if let Layer::Encoder(block) = layer {
                let mha = &mut block.layer.mha;
                let head = 0..mha.d_k;
                mha.output.weight = zero_rows(mha.output.weight.val(), head.clone());
                for linear in [&mut mha.query, &mut mha.key, &mut mha.value] {
                    linear.weight = zero_columns(linear.weight.val(), head.clone());
                    // a head whose query, key and value are all zero attends uniformly to zeros
                    linear.bias = linear.bias.take().map(|b| {
                        let n = b.val().dims()[0];
                        Param::initialized(ParamId::new(), zero_rows(b.val().reshape([n, 1]), head.clone()).val().reshape([n]))
                    });
                }
                let pwff = &mut block.layer.pwff;
                let quarter = 0..block.ff / 4;
                pwff.linear_inner.weight = zero_columns(pwff.linear_inner.weight.val(), quarter.clone());
                pwff.linear_outer.weight = zero_rows(pwff.linear_outer.weight.val(), quarter);
                encoders += 1;
            }
        }
    }
    assert_eq!(encoders, 4);
    let n = network.stage_count();
    let input = Workload::BertMini.example_input(11);
    let full = values(&network.run_wire(0, n, &input, &device).unwrap());
    let pruned = prune_encoders(network, 0.25);
    for stage in &pruned.stages {
        if let Layer::Encoder(block) = &stage.layers[0] {
            assert_eq!((block.layer.mha.n_heads, block.ff), (3, 768));
        }
    }
    let answer = values(&pruned.run_wire(0, n, &input, &device).unwrap());
    let scale = full.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let err = full.iter().zip(&answer).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
    assert!(err < 1e-4, "pruned BERT differs from the zeroed full one: relative error {err}");
}
