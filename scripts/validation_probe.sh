#!/usr/bin/env bash
# Scores checkpoints on validation only, larger than training's own probe (4,000 requests per
# cell, where two seeds of one setting differ by 0.05 in mean regret ratio): the fcc-val files at
# ×1, ×5 and ×20, the held-out Markov-outage family and the held-out generated models (at
# env.bandwidth_scale) with their own SLOs, again with loose ones and once more as a user's import
# at x20 (below); REQUESTS (default
# 20,000) per cell, evaluation seed SEED (default 7, so that it draws other requests than
# training's probe). One line per checkpoint: the mean per-cell regret ratio against each
# cell's best deployable baseline (over the cells that have one), then per cell the policy's margin
# over that baseline, its ratio and both p99s, and whether the cell meets every part of the
# robust-policy bar (interval above zero, or within 0.005 of it at ×20; p99 at most 1.2× the
# best baseline's; ratio at most 0.5 at ×1, 0.8 otherwise; scripts/bar.py). A setting is
# chosen with this, never with the reported sets: the policy's p99 within 1.2× of the best
# baseline's on every cell, then the lowest mean ratio; where no setting keeps every cell's p99
# (the loose cell), no cell's ratio up by more than 0.01 over the setting in force and no p99
# past 1.2× where it was within, then the lowest mean ratio (train.toml, [env.consensus]).
# EVAL_ARGS adds arguments to every eval (e.g. EVAL_ARGS="--set env.consensus.margin=1").
# Usage: [REQUESTS=20000] [SEED=7] [OUT=runs/probe] [EVAL_ARGS=...] scripts/validation_probe.sh CHECKPOINT...
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RLSCHED:-"cargo run --locked --quiet --"}
out=${OUT:-runs/probe}
mkdir -p "$out"
# The held-out models again with SLOs 10-300x their own local latency (training draws 0.4-10x):
# a model whose every plan meets its SLO with room to spare, where accuracy decides (as for
# digits-cnn, whose SLO is 170x its local time; digits-cnn itself is reported, never probed).
loose_slos="[10.0, 300.0]"
# And once more as a model a user imports: every accuracy unknown, a worker exactly as fast as the
# device, SLOs twice the local time, at x20 (where the zoo's imported models lose; the zoo itself
# is reported, never probed).
imported_scale=20
imported=(--set 'env.procedural.worker_speedup=[1.0, 1.0]' --set env.procedural.unknown_accuracy=1.0
  --set 'env.procedural.slo_over_local=[2.0, 2.0]' --set "env.bandwidth_scale=$imported_scale")
[ $# -gt 0 ] || { echo "usage: scripts/validation_probe.sh CHECKPOINT..." >&2; exit 2; }
for ck in "$@"; do
  tag=$(basename "$ck")
  common=(--config train.toml --checkpoint "$ck" --traces data/traces/fcc-val --requests "${REQUESTS:-20000}" --seed "${SEED:-7}" ${EVAL_ARGS:-})
  $bin eval "${common[@]}" --scales 1,5,20 --markov-validation --json "$out/$tag-links.json" > /dev/null
  $bin eval "${common[@]}" --held-out-models --json "$out/$tag-models.json" > /dev/null
  $bin eval "${common[@]}" --held-out-models --set "env.procedural.slo_over_local=$loose_slos" --json "$out/$tag-loose.json" > /dev/null
  $bin eval "${common[@]}" --held-out-models "${imported[@]}" --json "$out/$tag-imported.json" > /dev/null
  python3 - "$out/$tag-links.json" "$out/$tag-models.json" "$out/$tag-loose.json" "$out/$tag-imported.json" "$tag" "$imported_scale" <<'PY'
import json, os, sys
sys.path.insert(0, "scripts")
from bar import meets_bar
links, models, loose, imported = (json.load(open(f)) for f in sys.argv[1:5])
tag, imported_scale = sys.argv[5], float(sys.argv[6])
cells = [(f"{os.path.basename(c['set'])} x{c['scale']:g}", c["scale"], c["report"]) for c in links]
# the held-out models run at the config's env.bandwidth_scale
scale = next((float(l.split("=")[1].split("#")[0]) for l in open("train.toml") if l.startswith("bandwidth_scale")), 1.0)
for name, report, at in [("held-out models", models, scale), ("loose SLOs", loose, scale), (f"imported-like x{imported_scale:g}", imported, imported_scale)]:
    cells.append((name, at, report[0]["report"] if isinstance(report, list) else report))
parts, ratios, meets = [], [], 0
for name, scale, report in cells:
    rows = {s["name"]: s for s in report["schedulers"]}
    policy, best = rows["policy"], rows[report["best_baseline"]]
    ratio, low = policy["regret_ratio"], policy["vs_best_baseline"]["ci95_low"]
    if ratio is not None:
        ratios.append(ratio)
    bar = meets_bar(scale, low, ratio, policy["latency_ms_p99"], best["latency_ms_p99"])
    meets += bar
    parts.append(f"{name} {policy['mean_reward'] - best['mean_reward']:+.3f} [{low:+.3f}] ratio {'n/a' if ratio is None else f'{ratio:.2f}'} "
                 f"p99 {policy['latency_ms_p99']:.0f}/{best['latency_ms_p99']:.0f}{' bar' if bar else ''}")
print(f"{tag}: {meets} of {len(cells)} cells meet the bar, mean ratio {sum(ratios) / len(ratios):.3f} | " + " | ".join(parts))
PY
done
