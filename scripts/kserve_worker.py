"""KServe's own Python ModelServer (pip `kserve`) serving one model, as the worker of an
`rlsched serve` that knows nothing of it but the Open Inference Protocol.

    pip install kserve
    python3 scripts/kserve_worker.py MODEL CLASSES [SERVICE_MS]

Serves MODEL on 127.0.0.1, on a port the system picks, over REST only (no gRPC), and prints
`listening on http://127.0.0.1:PORT` once the port is bound. KServe answers in JSON tensors
and does not list the binary tensor extension, reports no queue or compute time, and has no
`/v2/stats`: what rlsched must cope with in any server that is not its own.

The model is not a network: it answers FP32 [batch, CLASSES] in which row b holds, in column 0,
how many infer requests this server has answered (this one included) and, in column 1, the mean
of input row b's values; the rest are zeros. A client can so tell this server's answers from
any network's and check that they were computed on what it sent. It takes SERVICE_MS (default
0) to answer, as a network would: a client that must tell the server's share of a reply from the
link's needs a share larger than its link estimate's error, which a busy machine makes several
milliseconds. `tests/serve_kserve.rs` runs it.
"""
import socket
import sys
import time

import numpy as np

# kserve.model_server parses the command line when imported; it must not see ours
ARGS, sys.argv = sys.argv[1:], sys.argv[:1]

import kserve  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402
from kserve.protocol.rest import server as rest_server  # noqa: E402
import kserve.model_server as model_server  # noqa: E402


class Counting(kserve.Model):
    def __init__(self, name: str, classes: int, service_ms: int):
        super().__init__(name)
        self.classes = classes
        self.service_s = service_ms / 1e3
        self.answered = 0
        self.ready = True

    def predict(self, payload: InferRequest, headers=None) -> InferResponse:
        if len(payload.inputs) != 1:
            raise kserve.errors.InvalidInput(f"expected one input, got {len(payload.inputs)}")
        x = payload.inputs[0].as_numpy()
        if x.ndim < 1 or x.shape[0] < 1 or x.size == 0:
            raise kserve.errors.InvalidInput(f"input of shape {list(x.shape)} has no rows")
        time.sleep(self.service_s)
        self.answered += 1
        batch = x.shape[0]
        out = np.zeros((batch, self.classes), dtype=np.float32)
        out[:, 0] = self.answered
        out[:, 1] = x.reshape(batch, -1).astype(np.float64).mean(axis=1)
        output = InferOutput(name="output", shape=list(out.shape), datatype="FP32")
        output.set_data_from_numpy(out, binary_data=False)
        return InferResponse(response_id=payload.id or str(self.answered), model_name=self.name, infer_outputs=[output])


class LoopbackRESTServer(rest_server.RESTServer):
    """KServe's REST server on a socket bound here: 127.0.0.1 rather than every interface, and
    a port the system picks, printed once bound (KServe itself binds 0.0.0.0 on a fixed port)."""

    async def start(self):
        self.create_application()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        await self._server.serve(sockets=[sock])


def main():
    usage = "usage: kserve_worker.py MODEL CLASSES [SERVICE_MS] (CLASSES in 2..=100000, SERVICE_MS in 0..=10000)"
    if len(ARGS) not in (2, 3) or not all(a.isdigit() for a in ARGS[1:]):
        sys.exit(usage)
    classes, service_ms = int(ARGS[1]), int(ARGS[2]) if len(ARGS) == 3 else 0
    if not 2 <= classes <= 100_000 or service_ms > 10_000:
        sys.exit(usage)
    model_server.RESTServer = LoopbackRESTServer
    kserve.ModelServer(enable_grpc=False, workers=1).start([Counting(ARGS[0], classes, service_ms)])


if __name__ == "__main__":
    main()
