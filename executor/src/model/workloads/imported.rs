//! Imported ONNX models as catalogue entries. `--model NAME=PATH.onnx` (or `onnx = "path"` in a
//! config's `[[env.workloads]]`) registers a file once per process; from then on
//! `Workload::Imported` names it wherever a built-in workload goes (it stays `Copy`, so the many
//! places that pass workloads by value need no change). The registry is bounded and only grows:
//! a name keeps its file for the life of the process, and registering it again with another file
//! is an error.
//!
//! Variants: fp32, int8 (weights rounded per output channel), and where the graph has a
//! prunable convolution (`model::onnx::prune`) `pruned-0.25` and `pruned-0.5`, built from the
//! file each time they are asked for, so a device and a worker derive the same narrower graph.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use burn::tensor::Device;

use super::{card, VariantSpec};
use crate::model::onnx::prune::{prunable_convs, prune, PRUNE_RATIOS};
use crate::model::onnx::{import_file, ImportOptions, OnnxModel};
use crate::model::variant::Variant;
use crate::{ExecError, Network};

/// The most models one process imports.
pub const MAX_IMPORTED: usize = 32;

/// An index into the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImportedId(pub(crate) u16);

/// Top-1 accuracies measured on labelled data (`--calibration DIR`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeasuredAccuracy {
    pub fp32: f64,
    pub int8: f64,
    /// Top-1 of `pruned-R` for each R of [`PRUNE_RATIOS`], where the model has such variants.
    pub pruned: [Option<f64>; PRUNE_RATIOS.len()],
    pub samples: usize,
}

#[derive(Debug)]
pub struct Imported {
    pub name: &'static str,
    pub model: Arc<OnnxModel>,
    pub accuracy: Option<MeasuredAccuracy>,
    /// How many convolutions the pruned variants narrow: none, and the model has no pruned
    /// variants.
    pub prunable: usize,
}

/// Why an imported model has no pruned variants, for `profile --list`.
pub const NO_PRUNABLE: &str = "no pruned variants: no prunable convolution (each convolution's output reaches a residual sum, a concat, a channel-mixing op such as LRN, a reshape or dense layer, a grouped convolution, the graph output, or more than one reader)";

/// A pruned variant's name (`pruned-0.25`).
pub fn pruned_name(removed: f32) -> String {
    format!("pruned-{removed}")
}

const PRUNING: &str = "L1 filter pruning without fine-tuning (Li et al., ICLR 2017)";

static REGISTRY: RwLock<Vec<Arc<Imported>>> = RwLock::new(Vec::new());

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Splits `NAME=PATH` as `--model` takes it.
pub fn parse_model_arg(arg: &str) -> Result<(String, PathBuf), ExecError> {
    let (name, path) = arg
        .split_once('=')
        .ok_or_else(|| ExecError::Import(format!("--model `{arg}`: expected NAME=PATH.onnx")))?;
    if !valid_name(name) {
        return Err(ExecError::Import(format!("--model `{arg}`: a name is 1-64 of A-Z a-z 0-9 . _ -")));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

/// Imports `path` as `name` (once: the same name and file again returns the same entry).
pub fn register(name: &str, path: &Path, options: &ImportOptions) -> Result<super::Workload, ExecError> {
    if !valid_name(name) {
        return Err(ExecError::Import(format!("model name `{name}`: a name is 1-64 of A-Z a-z 0-9 . _ -")));
    }
    if super::Workload::ALL.iter().any(|w| w.name() == name) {
        return Err(ExecError::Import(format!("model name `{name}` is a built-in workload's")));
    }
    let model = import_file(name, path, options)?;
    let mut registry = REGISTRY.write().expect("model registry lock");
    if let Some(index) = registry.iter().position(|m| m.name == name) {
        if registry[index].model.hash == model.hash {
            return Ok(super::Workload::Imported(ImportedId(index as u16)));
        }
        return Err(ExecError::Import(format!(
            "model `{name}` is already {} (hash {}); {} differs (hash {})",
            registry[index].model.path,
            registry[index].model.hash,
            path.display(),
            model.hash
        )));
    }
    if registry.len() >= MAX_IMPORTED {
        return Err(ExecError::Import(format!("at most {MAX_IMPORTED} models are imported in one process")));
    }
    // leaked once per name, bounded by MAX_IMPORTED: names are &'static like the built-ins'
    let name: &'static str = Box::leak(name.to_string().into_boxed_str());
    let prunable = prunable_convs(&model).len();
    registry.push(Arc::new(Imported { name, model: Arc::new(model), accuracy: None, prunable }));
    Ok(super::Workload::Imported(ImportedId((registry.len() - 1) as u16)))
}

/// Registers every `NAME=PATH` of a repeated `--model`.
pub fn register_args(args: &[String], options: &ImportOptions) -> Result<Vec<super::Workload>, ExecError> {
    args.iter()
        .map(|arg| {
            let (name, path) = parse_model_arg(arg)?;
            register(&name, &path, options)
        })
        .collect()
}

/// Records measured accuracies for an entry.
pub fn set_accuracy(id: ImportedId, accuracy: MeasuredAccuracy) {
    let mut registry = REGISTRY.write().expect("model registry lock");
    let entry = &mut registry[id.0 as usize];
    *entry = Arc::new(Imported { name: entry.name, model: entry.model.clone(), accuracy: Some(accuracy), prunable: entry.prunable });
}

pub fn get(id: ImportedId) -> Arc<Imported> {
    REGISTRY.read().expect("model registry lock")[id.0 as usize].clone()
}

pub fn find(name: &str) -> Option<super::Workload> {
    let registry = REGISTRY.read().expect("model registry lock");
    registry.iter().position(|m| m.name == name).map(|i| super::Workload::Imported(ImportedId(i as u16)))
}

/// Every imported entry, in registration order.
pub fn all() -> Vec<super::Workload> {
    let count = REGISTRY.read().expect("model registry lock").len();
    (0..count).map(|i| super::Workload::Imported(ImportedId(i as u16))).collect()
}

/// Measures an imported entry's fp32 and int8 top-1 on `dir` (see
/// [`crate::model::onnx::calibration`]) and records it: its variants then carry measured
/// accuracies instead of unknown ones.
pub fn calibrate(workload: super::Workload, dir: &Path, device: &burn::tensor::Device) -> Result<MeasuredAccuracy, ExecError> {
    let super::Workload::Imported(id) = workload else {
        return Err(ExecError::Import(format!("--calibration: `{}` is a built-in workload, not an imported one", workload.name())));
    };
    let model = get(id).model.clone();
    let calibration = crate::model::onnx::calibration::Calibration::load(dir, &model.values[model.input].dims)?;
    let fp32 = calibration.accuracy(&model.build(false, device), device)?;
    let int8 = calibration.accuracy(&model.build(true, device), device)?;
    let mut pruned = [None; PRUNE_RATIOS.len()];
    if get(id).prunable > 0 {
        for (slot, &removed) in pruned.iter_mut().zip(&PRUNE_RATIOS) {
            let network = build(id, Variant::MagnitudePruned { removed }, device)?;
            *slot = Some(calibration.accuracy(&network, device)?);
        }
    }
    let measured = MeasuredAccuracy { fp32, int8, pruned, samples: calibration.labels.len() };
    set_accuracy(id, measured);
    Ok(measured)
}

/// The variants of an imported entry, accuracies measured where `--calibration` gave data.
pub(super) fn variants(entry: &Imported) -> Vec<VariantSpec> {
    let model = &entry.model;
    let mut variants = vec![("fp32".to_string(), Variant::Fp32, ""), ("int8".to_string(), Variant::Int8, ", int8 compute")];
    if entry.prunable > 0 {
        for removed in PRUNE_RATIOS {
            variants.push((pruned_name(removed), Variant::MagnitudePruned { removed }, ""));
        }
    }
    variants
        .into_iter()
        .enumerate()
        .map(|(i, (name, variant, note))| {
            let pruning = match variant {
                Variant::MagnitudePruned { removed } => format!(
                    "; {PRUNING}: {:.0}% of the filters of {} prunable convolution(s) removed",
                    removed * 100.0,
                    entry.prunable
                ),
                _ => String::new(),
            };
            let measured = entry.accuracy.and_then(|m| match i {
                0 => Some((m.fp32, m.samples)),
                1 => Some((m.int8, m.samples)),
                _ => m.pruned.get(i - 2).copied().flatten().map(|a| (a, m.samples)),
            });
            match measured {
                Some((accuracy, samples)) => {
                    card(&name, variant, accuracy, "measured", &format!("top-1 on {samples} labelled samples of --calibration{note}{pruning}"))
                }
                // never reaches a floor: a variant of unknown accuracy is not chosen against one
                None => card(
                    &name,
                    variant,
                    0.0,
                    "unknown",
                    &format!("imported from {} (hash {}); no labelled data was given (--calibration DIR){pruning}", model.path, model.hash),
                ),
            }
        })
        .collect()
}

/// Builds one variant of an imported entry on `device`. A pruned variant is derived from the
/// file's weights on every call (deterministically), so nothing but the file has to match
/// between a device and a worker.
pub fn build(id: ImportedId, variant: Variant, device: &Device) -> Result<Network, ExecError> {
    let entry = get(id);
    match variant {
        Variant::Fp32 => Ok(entry.model.build(false, device)),
        Variant::Int8 => Ok(entry.model.build(true, device)),
        Variant::MagnitudePruned { removed } if entry.prunable > 0 && (0.0..1.0).contains(&removed) => {
            let (narrow, _) = prune(&entry.model, removed);
            Ok(Arc::new(narrow).build(false, device))
        }
        Variant::MagnitudePruned { .. } if entry.prunable == 0 => Err(ExecError::Import(format!("model `{}`: {NO_PRUNABLE}", entry.name))),
        other => Err(ExecError::Import(format!("model `{}` has no {other:?} variant", entry.name))),
    }
}
