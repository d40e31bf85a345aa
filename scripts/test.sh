#!/usr/bin/env bash
# The whole test suite, on a fresh machine that has only Rust and Python 3.
#
# Four tests drive real Python tools: onnx and onnxruntime (the ONNX models the import tests
# read, and an independent runtime their outputs are checked against), NVIDIA's tritonclient (an independent KServe V2 client
# against our worker), KServe's own ModelServer (a server that is not rlsched's, as serve's
# worker) and TensorBoard (reading the event files training writes). They are installed once
# into a folder beside the build (not into the system's Python) and found through PYTHONPATH;
# later runs reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-target}"
pydeps="$(mkdir -p "$target" && cd "$target" && pwd)/python-deps"
export PYTHONPATH="$pydeps${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c 'import tritonclient.http, tensorboard, kserve, onnx, onnxruntime' 2>/dev/null; then
    echo "installing tritonclient[http], tensorboard, kserve, onnx and onnxruntime into $pydeps" >&2
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
        --upgrade --target "$pydeps" "tritonclient[http]" tensorboard kserve onnx onnxruntime
fi

# The property tests draw the same cases on every run, so a rare case cannot turn one CI run red
# and the next green; set PROPTEST_RNG_SEED=random (or another number) to explore further.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261127}"
[ "$PROPTEST_RNG_SEED" = random ] && unset PROPTEST_RNG_SEED

exec cargo test --locked --workspace "$@"
