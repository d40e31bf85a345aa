"""NVIDIA's tritonclient[http] against `rlsched serve`: reads the plan from the response.

    pip install "tritonclient[http]"
    python3 scripts/triton_serve_check.py 127.0.0.1:8080

Classifies held-out digits through `serve` (binary tensors), sends a request-level `slo_ms`,
and reads the chosen plan (strategy, variant, cut, worker) and the measured breakdown from the
response parameters. Exits non-zero on any mismatch. The test `serve_speaks_to_tritonclient`
runs it.
"""
import sys

import numpy as np
import tritonclient.http as httpclient

import digits_test_set

client = httpclient.InferenceServerClient(url=sys.argv[1])
assert client.is_server_live() and client.is_server_ready(), "server not ready"
assert client.is_model_ready("digits-cnn"), "digits-cnn not ready"
assert client.get_model_metadata("digits-cnn")["inputs"][0]["shape"] == [-1, 1, 8, 8]

labels, pixels = digits_test_set.load(50)

inp = httpclient.InferInput("input", list(pixels.shape), "FP32")
inp.set_data_from_numpy(pixels, binary_data=True)
result = client.infer("digits-cnn", inputs=[inp], outputs=[httpclient.InferRequestedOutput("output", binary_data=True)],
                      parameters={"slo_ms": 75.0, "min_accuracy": 0.5})
accuracy = float((result.as_numpy("output").argmax(1) == labels).mean())
params = result.get_response()["parameters"]
print(f"plan {params['strategy']} variant {params['variant']} cut {params['cut']} worker {params['worker']}; "
      f"decision {params['decision_us']:.0f} us, total {params['total_ms']:.2f} ms; accuracy {accuracy:.3f}")
assert params["strategy"] in ("local", "split", "offload"), params
assert params["slo_ms"] == 75.0, params
for key in ("variant", "cut", "worker", "decision_us", "local_ms", "upload_ms", "queue_ms", "remote_ms", "download_ms"):
    assert key in params, (key, params)
assert accuracy > 0.8, accuracy

try:
    client.infer("digits-cnn", inputs=[inp], parameters={"slo_ms": -5.0})
    raise SystemExit("a negative slo_ms was accepted")
except httpclient.InferenceServerException as e:
    assert "slo_ms" in str(e), str(e)
print("tritonclient serve checks passed")
