#!/usr/bin/env bash
# Generalisation to an unseen workload: trains the default config without `resnet18` in the
# request mix (the plans it would score never appear in training), then evaluates that policy and
# the policy trained with it (`checkpoints/default`, or CHECKPOINT) on resnet18 requests alone,
# on each reported test set at bandwidth ×1, ×5 and ×20. Prints, per cell, each policy's regret
# ratio against the best deployable baseline (regret against the lookahead oracle) and its reward
# margin over that baseline with the 95% interval.
# Usage: [STEPS=…] [SEED=1] [CHECKPOINT=checkpoints/default] [OUT=runs/generalisation] scripts/generalisation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RLSCHED:-"cargo run --locked --quiet --"}
out=${OUT:-runs/generalisation}
seed=${SEED:-1}
with=${CHECKPOINT:-checkpoints/default}
without=checkpoints/without-resnet18-$seed
mkdir -p "$out"
# the default mix (train.toml) less resnet18, and resnet18 alone with its SLO and accuracy floor
train_mix='env.workloads=[{name="mobilenetv2",weight=0.35,slo_ms=150.0,min_accuracy=0.65},{name="vgg16",weight=0.15,slo_ms=600.0,min_accuracy=0.71},{name="bert-mini",weight=0.25,slo_ms=120.0,min_accuracy=0.85}]'
eval_mix='env.workloads=[{name="resnet18",weight=1.0,slo_ms=300.0,min_accuracy=0.69}]'
if [ ! -f "$without/checkpoint.json" ]; then
  steps=${STEPS:-$(python3 -c "import json;print(json.load(open('$with/checkpoint.json'))['step'])")}
  $bin train --config train.toml --seed "$seed" --total-steps "$steps" --run-name "without-resnet18-$seed" \
    --set "$train_mix" > "$out/train.log"
fi
for set in fcc-test norway-hsdpa mahimahi; do
  dir=data/traces/$set
  [ "$set" = mahimahi ] && dir=${RLSCHED_SHARED_DATA:-../shared/data}/traces/mahimahi
  for scale in 1 5 20; do
    for who in with without; do
      ck=$with; [ $who = without ] && ck=$without
      $bin eval --config train.toml --checkpoint "$ck" --traces "$dir" --requests "${REQUESTS:-4000}" \
        --set env.bandwidth_scale=$scale --set "$eval_mix" --json "$out/$set-x$scale-$who.json" > /dev/null
    done
  done
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("resnet18 requests only; regret ratio against the best deployable baseline, and reward margin over it (95% interval over episodes):")
print()
print("| traces | scale | best baseline | trained with resnet18: ratio | margin | trained without: ratio | margin |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for name in ["fcc-test", "norway-hsdpa", "mahimahi"]:
    for scale in [1, 5, 20]:
        cells = []
        for who in ["with", "without"]:
            report = json.load(open(f"{out}/{name}-x{scale}-{who}.json"))
            rows = {r["name"]: r for r in report["schedulers"]}
            p, best = rows["policy"], rows[report["best_baseline"]]
            ratio = p["regret"] / best["regret"] if best["regret"] > 1e-12 else float("nan")
            d = p["vs_best_baseline"]
            cells += [f"{ratio:.2f}", f"{d['mean']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}]"]
        print(f"| {name} | ×{scale} | {report['best_baseline']} | " + " | ".join(cells) + " |")
PY
