//! Metric sinks: where training statistics go. `TensorBoardSink` writes real TensorBoard event
//! files (through tensorboard-rs) under `runs/<run>/`; `MemorySink` keeps them for tests. The
//! x-axis is always environment steps.

use std::path::Path;

use protobuf::RepeatedField;
use tensorboard_proto::summary::{Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Value};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::{TensorShapeProto, TensorShapeProto_Dim};
use tensorboard_proto::types::DataType;
use tensorboard_rs::summary::scalar;
use tensorboard_rs::summary_writer::FileWriter;

pub trait MetricsSink {
    fn scalar(&mut self, tag: &str, value: f64, step: usize);
    fn text(&mut self, tag: &str, text: &str, step: usize);
    fn flush(&mut self) {}
}

/// Keeps every value, for tests.
#[derive(Default, Debug)]
pub struct MemorySink {
    pub scalars: Vec<(String, f64, usize)>,
    pub texts: Vec<(String, String, usize)>,
}

impl MetricsSink for MemorySink {
    fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        self.scalars.push((tag.to_string(), value, step));
    }
    fn text(&mut self, tag: &str, text: &str, step: usize) {
        self.texts.push((tag.to_string(), text.to_string(), step));
    }
}

pub struct TensorBoardSink {
    writer: FileWriter,
}

impl TensorBoardSink {
    pub fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self { writer: FileWriter::new(dir) })
    }
}

/// A text summary as TensorBoard's text plugin stores it: a scalar DT_STRING tensor with the
/// plugin's metadata. (tensorboard-rs's own `add_text` is `unimplemented!()`.)
fn text_summary(tag: &str, text: &str) -> Summary {
    let mut plugin = SummaryMetadata_PluginData::new();
    plugin.set_plugin_name("text".into());
    let mut metadata = SummaryMetadata::new();
    metadata.set_plugin_data(plugin);
    let mut dim = TensorShapeProto_Dim::new();
    dim.set_size(1);
    let mut shape = TensorShapeProto::new();
    shape.set_dim(RepeatedField::from_vec(vec![dim]));
    let mut tensor = TensorProto::new();
    tensor.set_dtype(DataType::DT_STRING);
    tensor.set_tensor_shape(shape);
    tensor.set_string_val(RepeatedField::from_vec(vec![text.as_bytes().to_vec()]));
    let mut value = Summary_Value::new();
    value.set_tag(tag.into());
    value.set_metadata(metadata);
    value.set_tensor(tensor);
    let mut summary = Summary::new();
    summary.set_value(RepeatedField::from_vec(vec![value]));
    summary
}

impl MetricsSink for TensorBoardSink {
    fn scalar(&mut self, tag: &str, value: f64, step: usize) {
        self.writer.add_summary(scalar(tag, value as f32), step);
    }
    fn text(&mut self, tag: &str, text: &str, step: usize) {
        self.writer.add_summary(text_summary(tag, text), step);
    }
    fn flush(&mut self) {
        self.writer.flush();
    }
}

/// CleanRL's tags for one PPO iteration.
pub fn log_iteration(sink: &mut dyn MetricsSink, s: &crate::ppo::IterationStats) {
    let step = s.global_step;
    if let Some(r) = s.episodic_return {
        sink.scalar("charts/episodic_return", r, step);
    }
    if let Some(l) = s.episodic_length {
        sink.scalar("charts/episodic_length", l, step);
    }
    sink.scalar("charts/learning_rate", s.learning_rate, step);
    sink.scalar("charts/SPS", s.sps, step);
    sink.scalar("losses/value_loss", s.value_loss, step);
    sink.scalar("losses/policy_loss", s.policy_loss, step);
    sink.scalar("losses/entropy", s.entropy, step);
    sink.scalar("losses/old_approx_kl", s.old_approx_kl, step);
    sink.scalar("losses/approx_kl", s.approx_kl, step);
    sink.scalar("losses/clipfrac", s.clipfrac, step);
    sink.scalar("losses/explained_variance", s.explained_variance, step);
}

/// The scheduler tags (`<prefix>/latency_ms_mean`, …) for one evaluation of the policy.
pub fn log_schedule(sink: &mut dyn MetricsSink, prefix: &str, r: &rlsched_env::eval::SchedulerResult, step: usize) {
    let tag = |name: &str| format!("{prefix}/{name}");
    sink.scalar(&tag("latency_ms_mean"), r.latency_ms_mean, step);
    sink.scalar(&tag("latency_ms_p95"), r.latency_ms_p95, step);
    sink.scalar(&tag("slo_miss_rate"), r.slo_miss_rate, step);
    sink.scalar(&tag("accuracy"), r.accuracy, step);
    sink.scalar(&tag("regret"), r.regret, step);
    sink.scalar(&tag("regret_ratio"), r.regret_ratio, step);
    sink.scalar(&tag("plan_frac/local"), r.plan_frac.local, step);
    sink.scalar(&tag("plan_frac/split"), r.plan_frac.split, step);
    sink.scalar(&tag("plan_frac/offload"), r.plan_frac.offload, step);
    sink.scalar(&tag("compressed_frac"), r.compressed_frac, step);
}
