#!/usr/bin/env bash
# The shipped policy zero-shot on imported ONNX zoo models: each model is profiled on this
# machine (3 runs; its accuracy is unknown, so only latency counts), then evaluated on fcc/test
# at x1, x5 and x20 with 20,000 requests per cell and evaluation seeds 1, 2 and 3. The worker
# replays the same profile (a worker no faster than the device); the SLO is twice the model's
# own fp32 local time and requests arrive on average every four such times, so the device is
# not overloaded by its own model. Nothing here is chosen on these figures.
#
# The zoo graphs are the onnx pip package's light model-zoo networks with seeded random
# weights, which `cargo test --workspace --test onnx_import` writes into the build folder.
#
# EVAL_ARGS adds arguments to every eval (e.g. EVAL_ARGS="--set env.consensus.certain_margin=0").
#
#   scripts/zoo_zero_shot.sh squeezenet resnet50 inception_v1
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
models="$target/onnx-test-models-v1"
out="${OUT:-$target/zoo-zero-shot}"
profiles="$out/profiles"
bin="$target/debug/rlsched"
[ -x "$bin" ] || cargo build --locked --bin rlsched
mkdir -p "$profiles" && cp data/profiles/*.json "$profiles/"
for m in "$@"; do
    onnx="$models/zoo-$m.onnx"
    [ -f "$onnx" ] || { echo "no $onnx: run cargo test --workspace --test onnx_import first" >&2; exit 2; }
    [ -f "$profiles/$m-cpu2.json" ] || "$bin" --model "$m=$onnx" profile --runs 3 --out "$profiles/$m-cpu2.json" > "$out/profile-$m.txt"
    local_ms=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); v=[v for v in d['variants'] if v['name']=='fp32'][0]; print(round(sum(s['latency_ms']['mean'] for s in v['stages'])))" "$profiles/$m-cpu2.json")
    slo=$((2 * local_ms))
    gap=$(python3 -c "import sys; print(4 * int(sys.argv[1]) / 1000)" "$local_ms")
    echo "$m: fp32 local $local_ms ms, SLO $slo ms, mean interarrival $gap s"
    for seed in 1 2 3; do
        "$bin" --model "$m=$onnx" eval --trace-set fcc-test=data/traces/fcc-test --scales 1,5,20 --requests 20000 --seed "$seed" \
            --set "env.profiles_dir=$profiles" --set env.worker_profile=cpu2 --set "env.mean_interarrival_s=$gap" \
            --set "env.workloads=[{name=\"$m\",weight=1.0,slo_ms=$slo.0,min_accuracy=0.0}]" ${EVAL_ARGS:-} > "$out/eval-$m-$seed.txt"
        # one line per cell: the policy against the best deployable baseline
        python3 - "$m" "$seed" "$out/eval-$m-$seed.txt" <<'EOF'
import re, sys
m, seed, path = sys.argv[1:4]
cell = best = None
rows = {}
for line in open(path):
    if line.startswith("== "):
        cell = line.split()[-1]
    found = re.search(r"best deployable baseline: ([a-z, -]+);", line)
    if found:
        best = found.group(1).split(",")[0].strip()
    parts = line.split()
    if parts and parts[0] in ("policy", best):
        rows.setdefault(cell, {})[parts[0]] = parts
    if parts and parts[0] == "policy":
        p, b = rows[cell]["policy"], rows[cell].get(best)
        # name reward ± regret ratio vs [lo,hi] lat p95 p99 ...
        print(f"  {m} seed {seed} {cell} vs {best}: {p[5]} {p[6]} ratio {p[4]}, p99 {p[9]} / {b[9] if b else '?'} ms, local/split/offload {p[12]}{p[13]}{p[14]}")
EOF
    done
done
