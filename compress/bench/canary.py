"""The fixed reference model ("canary") every measurement campaign re-times to control drift.

A small, deterministic conv net (seeded weights, about 0.43 GFLOPs at 192x192: 1-3 ms on two CPU
core) written as ONNX with ``onnx.helper``, so every runtime that reads ONNX (ONNX Runtime,
OpenVINO, TensorRT via a parser) times the *same* model. Its sha256 is stable for a given
``CANARY_VERSION``; results record it.
"""

from __future__ import annotations

from pathlib import Path

from compress.core.runs import atomic_path

CANARY_VERSION = 1
CANARY_NAME = f"compress-canary-v{CANARY_VERSION}.onnx"
CANARY_SHAPE = (1, 3, 192, 192)


def build_canary_model():  # -> onnx.ModelProto
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(20261122)
    inits, nodes = [], []
    chans = [3, 24, 48, 96]
    x = "input"
    for i, (cin, cout) in enumerate(zip(chans[:-1], chans[1:])):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        b = np.zeros(cout, np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"w{i}", f"b{i}"],
                [f"c{i}"],
                pads=[1, 1, 1, 1],
                strides=[1 if i == 0 else 2] * 2,
                kernel_shape=[3, 3],
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x = f"r{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1))
    wf = (rng.standard_normal((10, chans[-1])) * 0.1).astype(np.float32)
    inits += [numpy_helper.from_array(wf, "wf"), numpy_helper.from_array(np.zeros(10, np.float32), "bf")]
    nodes.append(helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1))
    graph = helper.make_graph(
        nodes,
        "compress_canary",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(CANARY_SHAPE))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [CANARY_SHAPE[0], 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="compress")
    model.ir_version = 8
    model.metadata_props.add(key="compress.canary_version", value=str(CANARY_VERSION))
    onnx.checker.check_model(model)
    return model


def canary_onnx(directory: str | Path) -> Path:
    """Write (once) and return the canary ONNX file in ``directory``."""
    import onnx

    path = Path(directory) / CANARY_NAME
    if not path.is_file():
        with atomic_path(path) as tmp:
            onnx.save(build_canary_model(), str(tmp))
    return path
