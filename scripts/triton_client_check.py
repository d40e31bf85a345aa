"""An independent KServe V2 client (NVIDIA's tritonclient[http]) against an rlsched worker.

    pip install "tritonclient[http]"
    python3 scripts/triton_client_check.py 127.0.0.1:8000

Checks readiness and metadata, classifies the held-out digits through `infer` (binary tensors
both ways), runs a split tail with `start_stage`, and sends BERT token ids as INT64.
Exits non-zero on any mismatch. The test `worker_speaks_to_tritonclient` runs it.
"""
import sys

import numpy as np
import tritonclient.http as httpclient

import digits_test_set

url = sys.argv[1]
client = httpclient.InferenceServerClient(url=url)
assert client.is_server_live(), "server not live"
assert client.is_server_ready(), "server not ready"
meta = client.get_model_metadata("digits-cnn")
assert meta["inputs"][0]["shape"] == [-1, 1, 8, 8], meta

labels, pixels = digits_test_set.load(100)

inp = httpclient.InferInput("input", list(pixels.shape), "FP32")
inp.set_data_from_numpy(pixels, binary_data=True)
out = httpclient.InferRequestedOutput("output", binary_data=True)
result = client.infer("digits-cnn", inputs=[inp], outputs=[out])
logits = result.as_numpy("output")
assert logits.shape == (100, 10), logits.shape
accuracy = float((logits.argmax(1) == labels).mean())
print(f"digits-cnn via tritonclient: accuracy {accuracy:.3f} on 100 held-out images")
assert accuracy > 0.9, accuracy

# JSON tensors both ways, and the worker's load report
inp_json = httpclient.InferInput("input", [1, 1, 8, 8], "FP32")
inp_json.set_data_from_numpy(pixels[:1], binary_data=False)
result_json = client.infer("digits-cnn", inputs=[inp_json],
                           outputs=[httpclient.InferRequestedOutput("output", binary_data=False)])
assert np.allclose(result_json.as_numpy("output"), logits[:1], atol=1e-4)
params = result_json.get_response()["parameters"]
assert "queue_length" in params and "in_flight" in params, params

# a split tail: stages 1.. of the digits CNN take conv1's output [N, 16, 8, 8]
hidden = np.maximum(np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32), 0)
tail = httpclient.InferInput("input", [1, 16, 8, 8], "FP32")
tail.set_data_from_numpy(hidden)
split = client.infer("digits-cnn", inputs=[tail], parameters={"start_stage": 1})
assert split.as_numpy("output").shape == (1, 10)

tokens = np.random.default_rng(1).integers(0, 30522, size=(1, 128), dtype=np.int64)
tok = httpclient.InferInput("input", [1, 128], "INT64")
tok.set_data_from_numpy(tokens)
bert = client.infer("bert-mini", inputs=[tok])
assert bert.as_numpy("output").shape == (1, 2)

try:
    bad = httpclient.InferInput("input", [1, 1, 4, 4], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 1, 4, 4), dtype=np.float32))
    client.infer("digits-cnn", inputs=[bad])
    raise SystemExit("a wrong shape was accepted")
except httpclient.InferenceServerException as e:
    assert "[N, 1, 8, 8]" in str(e), str(e)
print("tritonclient checks passed")
