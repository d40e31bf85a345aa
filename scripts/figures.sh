#!/usr/bin/env bash
# The README's figures, regenerated from the shipped policy and the bundled data into
# docs/figures/ (SVG and PNG each): regret-ratio bars and the policy's reward margin over the
# best baseline on fcc/test, norway-hsdpa and, when ../shared/data/traces/mahimahi is present,
# Mahimahi, at bandwidth ×1, ×5 and ×20; the latency
# CDF of the default scenario's cell (fcc/test ×5); and one episode's timeline (fcc/test ×1,
# evaluation's first episode). Fixed seed, so the same checkpoint gives the same figures.
# Usage: [REQUESTS=4000] [CHECKPOINT=checkpoints/default] [OUT=docs/figures] scripts/figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RLSCHED:-"cargo run --locked --quiet --"}
shared=${RLSCHED_SHARED_DATA:-../shared/data}
out=${OUT:-docs/figures}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sets=(--trace-set fcc-test=data/traces/fcc-test --trace-set norway-hsdpa=data/traces/norway-hsdpa)
if [ -d "$shared/traces/mahimahi" ]; then
  sets+=(--trace-set "mahimahi=$shared/traces/mahimahi")
else
  echo "note: $shared/traces/mahimahi not found; the figures leave Mahimahi out" >&2
fi
$bin eval --config train.toml --checkpoint "${CHECKPOINT:-checkpoints/default}" "${sets[@]}" --scales 1,5,20 \
  --requests "${REQUESTS:-4000}" --seed 1 --plot "$work" --json "$work/cells.json" > "$work/eval.txt"
mkdir -p "$out"
for figure in regret-ratio margin timeline latency-cdf-fcc-test-x5; do
  cp "$work/$figure.svg" "$work/$figure.png" "$out/"
  echo "wrote $out/$figure.svg and .png"
done
