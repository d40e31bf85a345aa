#!/usr/bin/env bash
# Profiles every workload on a GPU through burn-wgpu (Vulkan) and writes
# data/profiles/<workload>-<gpu>.json. Needs a `--features wgpu` build of rlsched and the
# Vulkan loader (Debian's libvulkan1); NVIDIA's driver provides the Vulkan ICD.
#   usage: scripts/gpu_profiles.sh RLSCHED_BINARY OUT_DIR [RUNS]
set -uo pipefail
bin=$1; out=$2; runs=${3:-10}
mkdir -p "$out"
export RLSCHED_DATA="${RLSCHED_DATA:-$(cd "$(dirname "$0")/.." && pwd)/data}"
# Headless machines: NVIDIA's GLX library refuses to create a Vulkan instance without a display
# ("Could not get 'vkCreateInstance'"), its EGL library works, so register that one.
lib=$(ldconfig -p | awk '/libEGL_nvidia.so.0/ {print $NF; exit}')
[ -z "$lib" ] && lib=$(find / -xdev -name 'libEGL_nvidia.so.0' 2>/dev/null | head -1)
if [ -n "$lib" ]; then
  mkdir -p /tmp/icd
  printf '{"file_format_version":"1.0.1","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" > /tmp/icd/nvidia_egl_icd.json
  export VK_ICD_FILENAMES=/tmp/icd/nvidia_egl_icd.json
  echo "registered Vulkan ICD $lib"
fi
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z ' 'a-z-' | sed 's/nvidia-//; s/[^a-z0-9-]//g')
gpu=${gpu:-gpu}
# One process per variant, so that a variant the backend cannot run costs only itself.
declare -A variants=(
  [digits-cnn]="fp32 int8 pruned-50" [bert-mini]="fp32 int8" [mobilenetv2]="fp32 int8 pruned-0.75 pruned-0.5"
  [resnet18]="fp32 int8" [vgg16]="fp32 int8" [ofa-note10]="fp32 int8"
)
parts=$(mktemp -d)
for w in digits-cnn bert-mini mobilenetv2 resnet18 vgg16 ofa-note10; do
  for v in ${variants[$w]}; do
    timeout 300 "$bin" profile --workload "$w" --variant "$v" --device wgpu --runs "$runs" --out "$parts/$w-$v.json" 2>&1 | tail -n 5
  done
  python3 - "$out/$w-$gpu.json" "$parts"/$w-*.json <<'PY'
import json, sys
parts = [json.load(open(p)) for p in sys.argv[2:]]
if parts:
    merged = parts[0]
    merged["variants"] = [v for p in parts for v in p["variants"]]
    merged["host"] += "; GPU: " + sys.argv[1].rsplit("-", 1)[-1][:-5].upper() + " through burn-wgpu (Vulkan)"
    json.dump(merged, open(sys.argv[1], "w"), indent=2)
    print("wrote", sys.argv[1], [v["name"] for v in merged["variants"]])
PY
done
