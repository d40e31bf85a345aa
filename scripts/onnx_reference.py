"""ONNX models and onnxruntime reference outputs for rlsched's import tests (issue 19).

  prepare OUTDIR   writes test models into OUTDIR:
                   zoo-NAME.onnx  the nine "light" zoo graphs the onnx package ships, each
                                  constant weight (ConstantOfShape) replaced by a seeded random
                                  initializer of the same shape (constant weights make every
                                  output the same, whatever the input);
                   graph-*.onnx   small graphs built here with onnx.helper (graph-prunable:
                                  the channel-pruning cases, prunable and not);
                   bad-*.onnx     models that must be refused with a clear error.
  run REQUEST      REQUEST is JSON [{"model", "input", "shape", "names", "out"}]: runs each model
                   on the raw little-endian f32 `input` of `shape` in onnxruntime and writes every
                   tensor of `names` (graph values, intermediate ones included) to
                   `out/<index>.bin` as raw f32.
"""
import glob
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 20261127
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def consumers(graph):
    found = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            found.setdefault(name, []).append((node, index))
    return found


def random_weight(graph, name, shape, rng, uses, depth=0):
    """A value of `shape` that keeps activations well scaled where `name` is used."""
    node, index = uses.get(name, [(None, 0)])[0]
    op = node.op_type if node is not None else ""
    if op in ("Unsqueeze", "Reshape", "Identity") and depth < 3:
        return random_weight(graph, node.output[0], shape, rng, uses, depth + 1)
    if op in ("Conv", "Gemm", "MatMul") and index == 1 and len(shape) >= 2:
        if op == "Gemm":
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            fan_in = shape[1] if trans_b else shape[0]
        elif op == "MatMul":
            fan_in = shape[0]
        else:
            fan_in = int(np.prod(shape[1:]))
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    if op == "BatchNormalization":
        return rng.uniform(0.5, 1.5, shape) if index in (1, 4) else rng.uniform(-0.1, 0.1, shape)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape)
    return rng.uniform(-0.1, 0.1, shape)


def randomize(model, seed):
    """The zoo graph with each ConstantOfShape weight a seeded random initializer."""
    graph = model.graph
    rng = np.random.default_rng(seed)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    uses = consumers(graph)
    kept, new_inits = [], []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = [int(d) for d in inits[node.input[0]]]
            value = random_weight(graph, node.output[0], shape, rng, uses).astype(np.float32)
            new_inits.append(numpy_helper.from_array(value, node.output[0]))
        else:
            kept.append(node)
    produced = {o for n in kept for o in n.output} | {i.name for i in new_inits}
    used = {i for n in kept for i in n.input}
    old = [i for i in graph.initializer if i.name in used and i.name not in produced]
    # graph inputs that were initializers (IR 3 listed them) go with them
    inputs = [i for i in graph.input if i.name not in produced and i.name not in inits]
    new_graph = helper.make_graph(kept, graph.name, inputs, list(graph.output), old + new_inits)
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import))
    # IR 4 on lets initializers stand outside the graph inputs
    out.ir_version = max(model.ir_version, 7)
    onnx.checker.check_model(out)
    return out


def f32(name, *dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def init(name, array):
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def graph_mixed(rng):
    """Opset 14: grouped, dilated, strided convolution with asymmetric pads and bias; BN kept
    unfolded; Clip (ReLU6) by inputs; HardSwish; depthwise conv without bias; squeeze-excite
    (GlobalAveragePool, Sigmoid, broadcast Mul); residual Add; HardSigmoid; MaxPool in ceil
    mode; AveragePool without padding counted; LRN; Concat; Flatten; Gemm with transB; MatMul;
    Softmax on the last axis."""
    c = 8
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], group=2, dilations=[2, 2], strides=[2, 1], pads=[1, 0, 2, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"], epsilon=1e-3),
        helper.make_node("Clip", ["n1", "lo", "hi"], ["r1"]),
        helper.make_node("HardSwish", ["r1"], ["h1"]),
        helper.make_node("Conv", ["h1", "w2"], ["d1"], group=c, pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["d1"], ["g1"]),
        helper.make_node("Sigmoid", ["g1"], ["s1"]),
        helper.make_node("Mul", ["d1", "s1"], ["e1"]),
        helper.make_node("Add", ["e1", "h1"], ["a1"]),
        helper.make_node("HardSigmoid", ["a1"], ["hs"], alpha=0.3, beta=0.4),
        helper.make_node("Mul", ["hs", "chan"], ["m1"]),
        helper.make_node("MaxPool", ["m1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("AveragePool", ["m1"], ["p2"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("LRN", ["p2"], ["l2"], size=3, alpha=1e-2, beta=0.75, bias=1.0),
        helper.make_node("Concat", ["p1", "l2"], ["cat"], axis=1),
        helper.make_node("Flatten", ["cat"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["fc"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["fc"], ["fr"]),
        helper.make_node("MatMul", ["fr", "mm"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    flat = 2 * c * 5 * 9
    inits = [
        init("w1", rng.normal(0, 0.3, (c, 2, 3, 3))), init("b1", rng.uniform(-0.1, 0.1, c)),
        init("bn_s", rng.uniform(0.5, 1.5, c)), init("bn_b", rng.uniform(-0.1, 0.1, c)),
        init("bn_m", rng.uniform(-0.1, 0.1, c)), init("bn_v", rng.uniform(0.5, 1.5, c)),
        init("lo", 0.0), init("hi", 6.0),
        init("w2", rng.normal(0, 0.4, (c, 1, 3, 3))), init("chan", rng.uniform(0.5, 1.5, (c, 1, 1))),
        init("fc_w", rng.normal(0, 0.1, (32, flat))), init("fc_b", rng.uniform(-0.1, 0.1, 32)),
        init("mm", rng.normal(0, 0.3, (32, 10))),
    ]
    graph = helper.make_graph(nodes, "mixed", [f32("x", 1, 4, 20, 21)], [f32("y", 1, 10)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def graph_opset9(rng):
    """Opset 9: BN, Clip by attributes, channel shuffle (rank-5 Reshape and Transpose), Sum of
    three, Dropout, Identity, Reshape with 0 and -1, Softmax coercing to 2-D on axis 1."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["n1"]),
        helper.make_node("Clip", ["n1"], ["r1"], min=0.0, max=6.0),
        helper.make_node("Reshape", ["r1", "shape5"], ["g5"]),
        helper.make_node("Transpose", ["g5"], ["t5"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t5", "shape4"], ["sh"]),
        helper.make_node("Conv", ["sh", "w2"], ["c2"], group=2),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Sum", ["r2", "sh", "r1"], ["sum"]),
        helper.make_node("Dropout", ["sum"], ["dr"], ratio=0.5),
        helper.make_node("Identity", ["dr"], ["id"]),
        helper.make_node("Reshape", ["id", "flat"], ["fl"]),
        helper.make_node("Gemm", ["fl", "fc", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    inits = [
        init("w1", rng.normal(0, 0.4, (8, 3, 3, 3))), init("b1", rng.uniform(-0.1, 0.1, 8)),
        init("s", rng.uniform(0.5, 1.5, 8)), init("b", rng.uniform(-0.1, 0.1, 8)),
        init("m", rng.uniform(-0.1, 0.1, 8)), init("v", rng.uniform(0.5, 1.5, 8)),
        numpy_helper.from_array(np.array([0, 2, 4, 6, 6], dtype=np.int64), "shape5"),
        numpy_helper.from_array(np.array([0, 8, 6, 6], dtype=np.int64), "shape4"),
        init("w2", rng.normal(0, 0.4, (8, 4, 1, 1))),
        numpy_helper.from_array(np.array([0, -1], dtype=np.int64), "flat"),
        init("fc", rng.normal(0, 0.1, (288, 5))), init("fc_b", rng.uniform(-0.1, 0.1, (1, 5))),
    ]
    graph = helper.make_graph(nodes, "opset9", [f32("x", 1, 3, 6, 6)], [f32("y", 1, 5)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])


def graph_prunable(rng):
    """Opset 14, for channel pruning: c1 reaches c2 through BN, Relu, MaxPool, a per-channel Mul,
    a scalar Add and HardSwish (prunable); c2's output is also a residual operand (not); c3
    reaches c4 through Clip (prunable); c4 feeds the residual Add (not); c5 reaches c6 through
    Sigmoid after a global pool (prunable); c6 feeds Flatten (not)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="c1"),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Mul", ["p1", "chan"], ["m1"]),
        helper.make_node("Add", ["m1", "shift"], ["a1"]),
        helper.make_node("HardSwish", ["a1"], ["h1"]),
        helper.make_node("Conv", ["h1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="c2"),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], pads=[1, 1, 1, 1], name="c3"),
        helper.make_node("Clip", ["c3", "lo", "hi"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"], name="c4"),
        helper.make_node("Add", ["c4", "r2"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["g"]),
        helper.make_node("Conv", ["g", "w5", "b5"], ["c5"], name="c5"),
        helper.make_node("Sigmoid", ["c5"], ["sg"]),
        helper.make_node("Conv", ["sg", "w6"], ["c6"], name="c6"),
        helper.make_node("Flatten", ["c6"], ["y"]),
    ]
    inits = [
        init("w1", rng.normal(0, 0.4, (8, 3, 3, 3))), init("b1", rng.uniform(-0.1, 0.1, 8)),
        init("bn_s", rng.uniform(0.5, 1.5, 8)), init("bn_b", rng.uniform(-0.1, 0.1, 8)),
        init("bn_m", rng.uniform(-0.1, 0.1, 8)), init("bn_v", rng.uniform(0.5, 1.5, 8)),
        init("chan", rng.uniform(0.5, 1.5, (8, 1, 1))), init("shift", 0.1),
        init("w2", rng.normal(0, 0.2, (12, 8, 3, 3))),
        init("w3", rng.normal(0, 0.2, (6, 12, 3, 3))), init("lo", 0.0), init("hi", 6.0),
        init("w4", rng.normal(0, 0.4, (12, 6, 1, 1))),
        init("w5", rng.normal(0, 0.4, (16, 12, 1, 1))), init("b5", rng.uniform(-0.1, 0.1, 16)),
        init("w6", rng.normal(0, 0.4, (10, 16, 1, 1))),
    ]
    graph = helper.make_graph(nodes, "prunable", [f32("x", 1, 3, 12, 12)], [f32("y", 1, 10)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def bad_models(out, good):
    rng = np.random.default_rng(SEED)
    data = good.SerializeToString()
    with open(os.path.join(out, "bad-truncated.onnx"), "wb") as f:
        f.write(data[: len(data) // 2])
    nodes = [
        helper.make_node("Erf", ["x"], ["e1"], name="first_erf"),
        helper.make_node("Erf", ["e1"], ["e2"]),
        helper.make_node("Relu", ["e2"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "unsupported", [f32("x", 1, 4)], [f32("y", 1, 4)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), os.path.join(out, "bad-unsupported.onnx"))
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    dynamic = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph(nodes, "dynamic", [dynamic], [f32("y", 1, 4, 8, 8)], [init("w", rng.normal(0, 1, (4, 3, 3, 3)))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), os.path.join(out, "bad-dynamic.onnx"))
    huge = TensorProto()
    huge.name = "w"
    huge.data_type = TensorProto.FLOAT
    huge.dims.extend([1024, 1024, 1024])  # 4 GiB of f32 declared, none held
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "huge", [f32("x", 1, 1024)], [f32("y", 1, 1024)], [huge])
    with open(os.path.join(out, "bad-huge.onnx"), "wb") as f:
        f.write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())


def prepare(out):
    os.makedirs(out, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(LIGHT, "light_*.onnx"))):
        name = os.path.basename(path)[len("light_"):-len(".onnx")]
        if os.path.exists(os.path.join(out, f"zoo-{name}.onnx")):
            continue
        onnx.save(randomize(onnx.load(path), SEED), os.path.join(out, f"zoo-{name}.onnx"))
    rng = np.random.default_rng(SEED)
    mixed = graph_mixed(rng)
    onnx.checker.check_model(mixed)
    onnx.save(mixed, os.path.join(out, "graph-mixed.onnx"))
    opset9 = graph_opset9(rng)
    onnx.checker.check_model(opset9)
    onnx.save(opset9, os.path.join(out, "graph-opset9.onnx"))
    prunable = graph_prunable(rng)
    onnx.checker.check_model(prunable)
    onnx.save(prunable, os.path.join(out, "graph-prunable.onnx"))
    bad_models(out, mixed)
    print("prepared", len(os.listdir(out)), "models")


def run(request_path):
    import onnxruntime as ort

    with open(request_path) as f:
        request = json.load(f)
    for entry in request:
        model = onnx.load(entry["model"])
        present = {o.name for o in model.graph.output}
        for name in entry["names"]:
            if name not in present:
                model.graph.output.append(helper.make_empty_tensor_value_info(name))
                present.add(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        x = np.fromfile(entry["input"], dtype="<f4").reshape(entry["shape"])
        input_name = session.get_inputs()[0].name
        results = session.run(entry["names"], {input_name: x})
        os.makedirs(entry["out"], exist_ok=True)
        for index, value in enumerate(results):
            np.asarray(value, dtype="<f4").tofile(os.path.join(entry["out"], f"{index}.bin"))
    print("onnxruntime ran", len(request), "models")


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:
        prepare(sys.argv[2])
    elif sys.argv[1:2] == ["run"]:
        run(sys.argv[2])
    else:
        sys.exit(__doc__)
