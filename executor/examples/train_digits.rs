//! Trains the digits CNN on data/digits/train.csv and writes data/digits/digits-cnn.bpk.
//! Run once (the weights are committed): `cargo run -p rlsched-executor --example train_digits`.

use burn::module::Module;
use burn::tensor::Device;
use rlsched_executor::model::workloads::digits::{accuracy, train, weights_path, DigitsSplit};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    let network = train(7, 40, 1e-3)?;
    let test = DigitsSplit::load("test")?;
    let acc = accuracy(&network, &test, &Device::flex())?;
    println!("trained in {:.1?}; test accuracy {:.4} on {} images", started.elapsed(), acc, test.len());
    network.save_file(weights_path())?;
    println!("wrote {}", weights_path().display());
    Ok(())
}
