#!/usr/bin/env bash
# Zero-shot, then a short fine-tune, on a model the shipped policy never trained on: the policy
# (CHECKPOINT) is evaluated on requests for MODEL alone; then `train --resume` continues it for
# STEPS more steps with MODEL added to the default request mix (WEIGHT of it), the checkpoint
# chosen on the validation probe as always; then the fine-tuned policy is evaluated the same
# way. Prints both tables' policy rows against the best baseline, and the fine-tune's wall time.
# Usage: [MODEL=digits-cnn] [SLO_MS=50] [MIN_ACCURACY=0.5] [STEPS=65536] [SCALES=1,5,20]
#        [CHECKPOINT=checkpoints/default] [OUT=runs/finetune] scripts/finetune.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RLSCHED:-"cargo run --locked --quiet --"}
out=${OUT:-runs/finetune}
ck=${CHECKPOINT:-checkpoints/default}
model=${MODEL:-digits-cnn}
steps=${STEPS:-65536}
mkdir -p "$out"
target="{name=\"$model\",weight=1.0,slo_ms=${SLO_MS:-50.0},min_accuracy=${MIN_ACCURACY:-0.5}}"
mix="env.workloads=[{name=\"mobilenetv2\",weight=0.35,slo_ms=150.0,min_accuracy=0.65},{name=\"resnet18\",weight=0.25,slo_ms=300.0,min_accuracy=0.69},{name=\"vgg16\",weight=0.15,slo_ms=600.0,min_accuracy=0.71},{name=\"bert-mini\",weight=0.25,slo_ms=120.0,min_accuracy=0.85},{name=\"$model\",weight=${WEIGHT:-0.25},slo_ms=${SLO_MS:-50.0},min_accuracy=${MIN_ACCURACY:-0.5}}]"
evaluate() {
  $bin eval --config train.toml --checkpoint "$1" --trace-set fcc-test=data/traces/fcc-test --scales "${SCALES:-1,5,20}" \
    --requests "${REQUESTS:-20000}" --set "env.workloads=[$target]" --json "$out/$2.json" > "$out/$2.txt"
}
evaluate "$ck" zero-shot
start=$(python3 -c "import json;print(json.load(open('$ck/checkpoint.json'))['step'])")
rm -rf "checkpoints/finetune-$model"
began=$(date +%s.%N)
$bin train --config train.toml --resume "$ck" --total-steps $((start + steps)) --run-name "finetune-$model" \
  --set "$mix" > "$out/train.log"
ended=$(date +%s.%N)
evaluate "checkpoints/finetune-$model" fine-tuned
python3 - "$out" "$began" "$ended" <<'PY'
import json, sys
out, began, ended = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
# no ratio where the best baseline has no regret (every baseline already at the oracle)
ratio = lambda row: "n/a" if row["regret_ratio"] is None else f"{row['regret_ratio']:.2f}"
print(f"fine-tune: {ended - began:.1f} s of wall time (training, its validation checks and its final table)")
print()
print("| policy | scale | best baseline | policy − best, 95% | regret ratio | compressed share | p99 policy / best, ms |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name in ["zero-shot", "fine-tuned"]:
    for cell in json.load(open(f"{out}/{name}.json")):
        report = cell["report"]
        rows = {r["name"]: r for r in report["schedulers"]}
        p, b = rows["policy"], rows[report["best_baseline"]]
        d = p["vs_best_baseline"]
        print(f"| {name} | ×{cell['scale']:g} | {b['name']} | {d['mean']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}] | "
              f"{ratio(p)} | {p['compressed_frac']:.2f} | {p['latency_ms_p99']:.0f} / {b['latency_ms_p99']:.0f} |")
PY
