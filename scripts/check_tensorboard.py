"""Reads a run's event files with real TensorBoard and checks every tag the design lists.

    pip install tensorboard
    python3 scripts/check_tensorboard.py runs/<run>

Exits non-zero if a tag is missing or holds a non-finite value. The test
`train_writes_tensorboard_files` runs it.
"""
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TAGS = [
    "charts/episodic_return", "charts/episodic_length", "charts/learning_rate", "charts/SPS",
    "losses/value_loss", "losses/policy_loss", "losses/entropy", "losses/old_approx_kl",
    "losses/approx_kl", "losses/clipfrac", "losses/explained_variance",
    "sched/latency_ms_mean", "sched/latency_ms_p95", "sched/slo_miss_rate", "sched/accuracy",
    "sched/regret", "sched/regret_ratio", "sched/plan_frac/local", "sched/plan_frac/split",
    "sched/plan_frac/offload", "sched/compressed_frac", "sched/margin",
]

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "tensors": 0})
acc.Reload()
scalars = set(acc.Tags()["scalars"])
missing = [t for t in TAGS if t not in scalars]
assert not missing, f"missing tags: {missing}; found {sorted(scalars)}"
for tag in TAGS:
    events = acc.Scalars(tag)
    assert events, tag
    assert all(math.isfinite(e.value) for e in events), f"{tag} has a non-finite value"
    steps = [e.step for e in events]
    assert steps == sorted(steps) and steps[-1] > 1000, f"{tag}: steps {steps} are not environment steps"
texts = acc.Tags()["tensors"]
assert "hyperparameters" in texts, f"no hyperparameters text; tensors: {texts}"
text = acc.Tensors("hyperparameters")[0].tensor_proto.string_val[0].decode()
assert "total_steps" in text, text[:200]
print(f"tensorboard check passed: {len(TAGS)} tags, {len(acc.Scalars('charts/SPS'))} iterations")
