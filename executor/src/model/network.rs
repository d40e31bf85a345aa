//! A workload's network as an ordered list of stages. A cut point lies between two stages, and
//! any contiguous range of stages runs on its own: this is what makes split execution possible.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::activation::{DataType, WireData, WireTensor};
use crate::model::layers::Layer;
use crate::{Activation, ExecError};

/// A contiguous group of layers that always runs on one device.
#[derive(Module, Debug)]
pub struct Stage {
    pub layers: Vec<Layer>,
    #[module(skip)]
    pub name: String,
}

impl Stage {
    pub fn new(name: impl Into<String>, layers: Vec<Layer>) -> Self {
        Self {
            layers,
            name: name.into(),
        }
    }

    pub fn forward(&self, mut x: Activation) -> Activation {
        for layer in &self.layers {
            x = layer.forward(x);
        }
        x
    }

    pub fn flops(&self, input: &[usize]) -> u64 {
        let mut dims = input.to_vec();
        let mut total = 0;
        for layer in &self.layers {
            total += layer.flops(&dims);
            dims = layer.output_dims(&dims);
        }
        total
    }

    pub fn output_dims(&self, input: &[usize]) -> Vec<usize> {
        self.layers
            .iter()
            .fold(input.to_vec(), |dims, layer| layer.output_dims(&dims))
    }
}

#[derive(Module, Debug)]
pub struct Network {
    pub stages: Vec<Stage>,
    #[module(skip)]
    pub workload: String,
    /// Input shape of every stage for a batch of one, plus the final output shape at the end.
    #[module(skip)]
    pub boundary_dims: Vec<Vec<usize>>,
    /// The only batch size the network runs, where one of its values does not keep the batch
    /// on its first axis (an imported graph that reshapes it away); `None`: any batch.
    #[module(skip)]
    pub fixed_batch: Option<usize>,
}

impl Network {
    pub fn new(workload: &str, input_dims: Vec<usize>, stages: Vec<Stage>) -> Self {
        let mut boundary_dims = vec![input_dims];
        for stage in &stages {
            let next = stage.output_dims(boundary_dims.last().expect("starts non-empty"));
            boundary_dims.push(next);
        }
        Self {
            stages,
            workload: workload.to_string(),
            boundary_dims,
            fixed_batch: None,
        }
    }

    /// The shape of the network's output for a batch of `batch` (its datatype is FP32): what
    /// a worker's reply must have.
    pub fn output_shape(&self, batch: usize) -> Vec<usize> {
        let mut shape = self.boundary_dims.last().cloned().unwrap_or_default();
        if let Some(first) = shape.first_mut() {
            *first = batch;
        }
        shape
    }

    pub fn stage_count(&self) -> usize {
        self.stages.len()
    }

    /// The datatype a stage expects on the wire. Images may also arrive as UINT8.
    pub fn input_datatype(&self, stage: usize) -> DataType {
        let first = self.stages.get(stage).and_then(|s| s.layers.first());
        if first.is_some_and(Layer::takes_tokens) {
            DataType::Int64
        } else {
            DataType::Fp32
        }
    }

    /// Human-readable expected input at a stage, batch dimension free.
    pub fn expected_input(&self, stage: usize) -> String {
        let dims = &self.boundary_dims[stage];
        let rest: Vec<String> = dims[1..].iter().map(|d| d.to_string()).collect();
        format!("[N, {}] {}", rest.join(", "), self.input_datatype(stage).name())
    }

    fn check_range(&self, start: usize, end: usize) -> Result<(), ExecError> {
        if start >= end || end > self.stages.len() {
            return Err(ExecError::BadStageRange {
                start,
                end,
                stages: self.stages.len(),
            });
        }
        Ok(())
    }

    /// Checks that `dims` and `datatype` fit stage `start`'s input (any batch size).
    pub fn check_input(&self, start: usize, dims: &[usize], datatype: DataType) -> Result<(), ExecError> {
        let expected = &self.boundary_dims[start];
        let dims_ok = dims.len() == expected.len()
            && dims[0] > 0
            && dims[1..] == expected[1..]
            && self.fixed_batch.is_none_or(|batch| dims[0] == batch);
        if !dims_ok {
            return Err(ExecError::WrongShape {
                workload: self.workload.clone(),
                stage: start,
                expected: self.expected_input(start),
                got: dims.to_vec(),
            });
        }
        let wanted = self.input_datatype(start);
        let image_as_u8 = wanted == DataType::Fp32 && datatype == DataType::Uint8 && dims.len() == 4;
        if datatype != wanted && !image_as_u8 {
            return Err(ExecError::WrongDataType {
                workload: self.workload.clone(),
                stage: start,
                expected: wanted.name().to_string(),
                got: datatype.name().to_string(),
            });
        }
        Ok(())
    }

    /// Runs stages `start..end` on a value already on the device.
    pub fn run(&self, start: usize, end: usize, x: Activation) -> Result<Activation, ExecError> {
        self.check_range(start, end)?;
        self.check_input(start, &x.dims(), x.datatype())?;
        Ok(self.stages[start..end]
            .iter()
            .fold(x, |x, stage| stage.forward(x)))
    }

    /// Runs stages `start..end` on a host tensor: the path every untrusted input takes.
    pub fn run_wire(
        &self,
        start: usize,
        end: usize,
        input: &WireTensor,
        device: &Device,
    ) -> Result<WireTensor, ExecError> {
        self.check_range(start, end)?;
        self.check_input(start, &input.shape, input.datatype())?;
        if let (WireData::I64(ids), Some(Layer::Embed(embed))) =
            (&input.data, self.stages[start].layers.first())
        {
            if let Some((index, &id)) = ids
                .iter()
                .enumerate()
                .find(|(_, &id)| id < 0 || id as usize >= embed.vocab)
            {
                return Err(ExecError::TokenOutOfRange {
                    id,
                    index,
                    vocab: embed.vocab,
                });
            }
        }
        let x = Activation::from_wire(input, device)?;
        self.run(start, end, x)?.to_wire()
    }

    /// Runs the whole network.
    pub fn forward(&self, x: Activation) -> Result<Activation, ExecError> {
        self.run(0, self.stages.len(), x)
    }

    /// Bytes of the output of each stage (batch of one, as FP32 or INT64 on the wire).
    pub fn output_bytes(&self, stage: usize) -> usize {
        self.boundary_dims[stage + 1].iter().product::<usize>() * 4
    }

    /// Replaces burn's lazy random initialisation with weights drawn from `seed` and each
    /// parameter's path. The weights then do not depend on the order in which stages first run,
    /// so a worker that only runs the tail of a network holds the same weights as the device.
    pub fn with_seeded_weights(self, seed: u64) -> Self {
        self.map(&mut SeededInit { seed, path: Vec::new() })
    }
}

struct SeededInit {
    seed: u64,
    path: Vec<String>,
}

fn fnv1a(seed: u64, text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl ModuleMapper for SeededInit {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let shape = param.lazy_shape();
        let dims: Vec<usize> = shape.dims::<D>().to_vec();
        let count: usize = dims.iter().product();
        let values: Vec<f32> = if D >= 2 {
            // He-uniform keeps activations from vanishing through deep ReLU stacks, so random
            // networks produce well-scaled (and finite) outputs at every cut.
            let is_embedding = path.ends_with("tokens") || path.ends_with("positions");
            let fan_in = if is_embedding {
                1
            } else if D == 2 {
                dims[0] // burn's Linear stores [d_input, d_output]
            } else {
                dims[1..].iter().product()
            };
            let bound: f32 = if is_embedding { 0.05 } else { (6.0 / fan_in as f32).sqrt() };
            let mut rng = SmallRng::seed_from_u64(fnv1a(self.seed, &path));
            (0..count).map(|_| rng.random_range(-bound..bound)).collect()
        } else if path.ends_with("bias") || path.contains(".bias") || path.is_empty() {
            vec![0.0; count]
        } else {
            return param;
        };
        let device = param.lazy_device();
        Param::initialized(
            param.id,
            Tensor::from_data(TensorData::new(values, dims), &device),
        )
    }
}

/// Built networks by (workload, variant), shared by everything that runs them on one device.
pub struct NetworkCache {
    device: Device,
    networks: Mutex<HashMap<(crate::Workload, String), Arc<Mutex<Option<Arc<Network>>>>>>,
    builds: std::sync::atomic::AtomicUsize,
}

impl NetworkCache {
    pub fn new(device: Device) -> Self {
        Self { device, networks: Mutex::new(HashMap::new()), builds: Default::default() }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The network of one variant, built on first use, once: concurrent first requests for
    /// it wait for the one build (eight parallel builds of VGG-16 took 4.1 GB, one 589 MB).
    /// Each variant has its own lock, so other models need not wait for it.
    pub fn get(&self, workload: crate::Workload, variant: &str) -> Result<Arc<Network>, ExecError> {
        let key = (workload, variant.to_string());
        let slot = self.networks.lock().expect("network cache lock").entry(key.clone()).or_default().clone();
        let mut built = slot.lock().expect("network slot lock");
        if let Some(network) = built.as_ref() {
            return Ok(network.clone());
        }
        self.builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match workload.build(variant, &self.device) {
            Ok(network) => Ok(built.insert(Arc::new(network)).clone()),
            Err(e) => {
                // an unknown variant leaves nothing behind: requests cannot grow the cache
                drop(built);
                let mut networks = self.networks.lock().expect("network cache lock");
                if networks.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot) && s.lock().map(|n| n.is_none()).unwrap_or(false)) {
                    networks.remove(&key);
                }
                Err(e)
            }
        }
    }

    /// Builds started since the cache was made, failed ones included.
    pub fn builds(&self) -> usize {
        self.builds.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many networks are built or being built.
    pub fn len(&self) -> usize {
        self.networks.lock().expect("network cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
