#!/usr/bin/env bash
# Trains the default config with several seeds and evaluates every policy on the reported test
# sets (fcc/test, norway-hsdpa, Mahimahi) at bandwidth ×1, ×5 and ×20; prints two tables, each
# with a 95% interval across seeds (Student t):
#  - the regret ratio against each deployable baseline: the policy's regret over the
#    baseline's, regret measured against the clairvoyant lookahead oracle (lower is better; 0.5
#    means the policy closes half of the baseline's gap to the oracle);
#  - the policy's reward minus the best deployable baseline's, paired request by request.
# Usage: [NAME=seed] [TRAIN_ARGS=...] [OUT=runs/seeds] scripts/seeds.sh [SEEDS...]   (default 1 2 3; seed N trains into checkpoints/seed-N
# unless it is there already). REQUESTS (default 4000) sets the requests per evaluation.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=("$@")
[ $# -eq 0 ] && seeds=(1 2 3)
bin=${RLSCHED:-"cargo run --locked --quiet --"}
out=${OUT:-runs/seeds}
name=${NAME:-seed}   # checkpoints/<name>-<seed>
train_args=${TRAIN_ARGS:-}   # e.g. "--total-steps 65536"
mkdir -p "$out"
for seed in "${seeds[@]}"; do
  [ -f "checkpoints/$name-$seed/checkpoint.json" ] || $bin train --config train.toml --seed "$seed" --run-name "$name-$seed" $train_args > "$out/train-$seed.log"
  for set in ${SETS:-fcc-test norway-hsdpa mahimahi}; do
    dir=data/traces/$set
    [ "$set" = mahimahi ] && dir=${RLSCHED_SHARED_DATA:-../shared/data}/traces/mahimahi
    for scale in 1 5 20; do
      $bin eval --config train.toml --checkpoint "checkpoints/$name-$seed" --traces "$dir" \
        --requests "${REQUESTS:-4000}" --set env.bandwidth_scale=$scale --json "$out/$set-x$scale-seed$seed.json" > /dev/null
    done
  done
done
SETS="${SETS:-fcc-test norway-hsdpa mahimahi}" python3 - "$out" "${seeds[@]}" <<'PY'
import json, math, os, sys
out, seeds = sys.argv[1], sys.argv[2:]
sets = os.environ["SETS"].split()
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
def interval(xs):
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return m, T95.get(len(xs) - 1, 1.96) * sd / math.sqrt(len(xs))
def load(name, scale, s):
    report = json.load(open(f"{out}/{name}-x{scale}-seed{s}.json"))
    return report, {r["name"]: r for r in report["schedulers"]}
BASES = ["neurosurgeon", "mpc", "robust-mpc", "best-static"]
print(f"Regret ratio (policy regret / baseline regret; regret against the lookahead oracle), mean ± 95% over seeds {' '.join(seeds)}:")
print()
print("| traces | scale | " + " | ".join(BASES) + " | best baseline |")
print("| --- | --- | " + " | ".join("---" for _ in BASES) + " | --- |")
for name in sets:
    for scale in [1, 5, 20]:
        cells, best_ratios = [], []
        for b in BASES + ["best"]:
            ratios = []
            for s in seeds:
                report, rows = load(name, scale, s)
                base = rows[report["best_baseline"] if b == "best" else b]
                ratios.append(rows["policy"]["regret"] / base["regret"] if base["regret"] > 1e-12 else float("nan"))
            m, h = interval(ratios)
            cells.append("n/a" if not math.isfinite(m) else f"{m:.2f} ± {h:.2f}" if math.isfinite(h) else f"{m:.2f}")
        print(f"| {name} | ×{scale} | " + " | ".join(cells) + " |")
print()
print("Policy reward − best deployable baseline's (paired per request):")
print()
print("| traces | scale | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± 95% across seeds |")
print("| --- | --- | " + " | ".join("---" for _ in seeds) + " | --- |")
for name in sets:
    for scale in [1, 5, 20]:
        gaps = []
        for s in seeds:
            _, rows = load(name, scale, s)
            gaps.append(rows["policy"]["vs_best_baseline"]["mean"])
        gm, gh = interval(gaps)
        print(f"| {name} | ×{scale} | " + " | ".join(f"{g:+.3f}" for g in gaps) + f" | {gm:+.3f} ± {gh:.3f} |")
PY
