#!/usr/bin/env bash
# The README's evaluation tables: every scheduler and the shipped policy on the reported test
# sets (fcc/test and norway-hsdpa, bundled; the Mahimahi cellular traces, GPL, read in place
# from ../shared) at bandwidth ×1, ×5 and ×20. Nothing here is tuned on: settings are chosen on
# the validation files (data/traces/fcc-val).
# Usage: [REQUESTS=4000] [CHECKPOINT=checkpoints/default] [OUT=runs/tables] scripts/tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${RLSCHED:-"cargo run --locked --quiet --"}
out=${OUT:-runs/tables}
shared=${RLSCHED_SHARED_DATA:-../shared/data}
mkdir -p "$out"
declare -A sets=([fcc-test]=data/traces/fcc-test [norway-hsdpa]=data/traces/norway-hsdpa [mahimahi]="$shared/traces/mahimahi")
for name in fcc-test norway-hsdpa mahimahi; do
  for scale in 1 5 20; do
    $bin eval --config train.toml --checkpoint "${CHECKPOINT:-checkpoints/default}" --traces "${sets[$name]}" \
      --requests "${REQUESTS:-4000}" --set env.bandwidth_scale=$scale --json "$out/$name-x$scale.json" > "$out/$name-x$scale.txt"
  done
done
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
print("| traces | scale | best baseline (reward) | policy reward | regret ratio | policy − best, 95% (episodes) | oracle-now − best | oracle − best | device busy: local / oracle / policy |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name in ["fcc-test", "norway-hsdpa", "mahimahi"]:
    for scale in [1, 5, 20]:
        report = json.load(open(f"{out}/{name}-x{scale}.json"))
        rows = {r["name"]: r for r in report["schedulers"]}
        best = rows[report["best_baseline"]]
        p = rows["policy"]
        d = p["vs_best_baseline"]
        gap = lambda n: rows[n]["mean_reward"] - best["mean_reward"]
        util = " / ".join(f"{rows[n]['device_utilization']:.2f}" for n in ["local", "oracle", "policy"])
        print(f"| {name} | ×{scale} | {best['name']} ({best['mean_reward']:.3f}) | {p['mean_reward']:.3f} | {p['regret_ratio']:.2f} | "
              f"{d['mean']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}] | {gap('oracle-now'):+.3f} | {gap('oracle'):+.3f} | {util} |")
# every scheduler on one cell: the default scenario (fcc/test at x5)
report = json.load(open(f"{out}/fcc-test-x5.json"))
print()
print("| scheduler | mean reward (±95%) | regret | − best baseline, 95% | latency mean / p95 / p99 ms | SLO miss | accuracy | local / split / offload | compressed | KB up | device busy |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for s in report["schedulers"]:
    d, f = s["vs_best_baseline"], s["plan_frac"]
    print(f"| {s['name']} | {s['mean_reward']:.3f} ± {s['mean_reward_ci95']:.3f} | {s['regret']:.3f} | {d['mean']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}] | "
          f"{s['latency_ms_mean']:.0f} / {s['latency_ms_p95']:.0f} / {s['latency_ms_p99']:.0f} | {s['slo_miss_rate']:.3f} | {s['accuracy']:.3f} | "
          f"{f['local']:.3f} / {f['split']:.3f} / {f['offload']:.3f} | {s['compressed_frac']:.2f} | {s['bytes_up_per_request'] / 1e3:.1f} | {s['device_utilization']:.2f} |")
PY
