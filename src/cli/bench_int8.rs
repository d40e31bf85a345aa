//! `rlsched bench int8`: one int8 convolution and one int8 dense layer against fp32, at the
//! shapes the workloads run them (ResNet-18's layer1 3×3 convolution, VGG-16's conv3_2, its
//! fc6 and ResNet-18's classifier). The two forms alternate run by run in one process, so a
//! machine shared with others slows both alike; the figures are medians, with the load read
//! before and after.

use anyhow::Result;
use burn::tensor::{Device, Tensor};
use rlsched_executor::model::layers::{Act, ConvBn, Dense, Layer};
use rlsched_executor::model::network::{Network, Stage};
use rlsched_executor::model::variant::quantize_int8;
use rlsched_executor::Activation;

/// One layer at one shape.
struct Case {
    name: &'static str,
    input: Vec<usize>,
    layer: fn(&Device) -> Layer,
}

fn cases() -> Vec<Case> {
    vec![
        Case { name: "resnet18 layer1.0.conv1 (64→64, 3×3, 56², BN+ReLU)", input: vec![1, 64, 56, 56], layer: |d| Layer::Conv(ConvBn::new(64, 64, 3, 1, 1, true, Act::Relu, d)) },
        Case { name: "vgg16 conv3_2 (256→256, 3×3, 56², ReLU)", input: vec![1, 256, 56, 56], layer: |d| Layer::Conv(ConvBn::new(256, 256, 3, 1, 1, false, Act::Relu, d)) },
        Case { name: "vgg16 fc6 (25088→4096, ReLU)", input: vec![1, 512, 7, 7], layer: |d| Layer::Dense(Dense::new(512 * 7 * 7, 4096, Act::Relu, d)) },
        Case { name: "resnet18 fc (512→1000)", input: vec![1, 512], layer: |d| Layer::Dense(Dense::new(512, 1000, Act::None, d)) },
    ]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_else(|_| "unknown".into())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(network: &Network, x: &Activation, device: &Device) -> Result<f64> {
    let start = std::time::Instant::now();
    network.run(0, 1, x.clone())?.to_wire()?;
    device.sync().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

pub fn run(seconds: f64) -> Result<()> {
    let device = Device::flex();
    println!("int8 against fp32, alternating runs, {seconds} s per layer; load (1/5/15 min) before: {}", load());
    println!("| layer | fp32 p50 ms | int8 p50 ms | speed-up | runs each | output cosine |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for case in cases() {
        let fp32 = Network::new("bench", case.input.clone(), vec![Stage::new("layer", vec![(case.layer)(&device)])]).with_seeded_weights(7);
        let int8 = quantize_int8(fp32.clone());
        let count: usize = case.input.iter().product();
        let values: Vec<f32> = (0..count).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
        let x = match case.input.len() {
            4 => Activation::Image(Tensor::<4>::from_data(burn::tensor::TensorData::new(values, case.input.clone()), &device)),
            _ => Activation::Features(Tensor::<2>::from_data(burn::tensor::TensorData::new(values, case.input.clone()), &device)),
        };
        let out = |n: &Network| -> Result<Vec<f32>> {
            match n.run(0, 1, x.clone())?.to_wire()?.data {
                rlsched_executor::model::activation::WireData::F32(v) => Ok(v),
                _ => anyhow::bail!("float output expected"),
            }
        };
        let (a, b) = (out(&fp32)?, out(&int8)?);
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let cosine = dot / (norm(&a) * norm(&b)).max(f64::MIN_POSITIVE);
        let (mut t32, mut t8) = (Vec::new(), Vec::new());
        let start = std::time::Instant::now();
        while start.elapsed().as_secs_f64() < seconds || t32.len() < 3 {
            t32.push(time(&fp32, &x, &device)?);
            t8.push(time(&int8, &x, &device)?);
        }
        let (m32, m8) = (median(t32.clone()), median(t8));
        println!("| {} | {m32:.2} | {m8:.2} | {:.2}× | {} | {cosine:.5} |", case.name, m32 / m8, t32.len());
    }
    println!("load after: {}", load());
    println!("host: {}", rlsched_executor::profile::profiler::host_description());
    Ok(())
}
