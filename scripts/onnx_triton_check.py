"""tritonclient against an rlsched worker serving an imported ONNX model, checked with onnxruntime.

    python3 scripts/onnx_triton_check.py HOST:PORT NAME MODEL.onnx

Reads the model's metadata (it must carry the file's content hash), sends a seeded input
through `infer` with binary tensors, runs the same file in onnxruntime and requires the outputs
to agree within 1e-4 relative (max |a - b| / max |b|). The test `worker_serves_an_imported_model`
runs it.
"""
import sys

import numpy as np
import onnxruntime as ort
import tritonclient.http as httpclient

url, name, path = sys.argv[1:4]
client = httpclient.InferenceServerClient(url=url)
assert client.is_model_ready(name), f"{name} not ready"
meta = client.get_model_metadata(name)
assert meta["parameters"]["content_hash"], meta
shape = [1] + meta["inputs"][0]["shape"][1:]

x = np.random.default_rng(7).uniform(0, 1, shape).astype(np.float32)
inp = httpclient.InferInput("input", shape, "FP32")
inp.set_data_from_numpy(x, binary_data=True)
result = client.infer(name, inputs=[inp], outputs=[httpclient.InferRequestedOutput("output", binary_data=True)])
ours = result.as_numpy("output")

session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
reference = session.run(None, {session.get_inputs()[0].name: x})[0]
ours = ours.reshape(reference.shape)
error = float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-12))
print(f"{name} via tritonclient against onnxruntime: relative error {error:.2e}")
assert error <= 1e-4, error
print("onnx tritonclient checks passed")
