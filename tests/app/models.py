"""ONNX models nobody on this project trained, built here from their graphs, and their ``Model`` as the server holds it.

The server must serve whatever a team brings; these stand in for what teams bring, each built to
exercise one thing: every datatype, several inputs of several datatypes, named dimensions shared
across inputs, a model that mixes its rows, a scalar output, a string model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from mlapp.serve.model import Model
from mlapp.signature import signature_of

OPSET = 17
# ONNX's element types for the protocol's datatypes (onnx/onnx.proto3, TensorProto.DataType).
ELEMENT_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}
Dims = Sequence[int | str | None]


def tensor(name: str, datatype: str, dims: Dims) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, ELEMENT_TYPES[datatype], list(dims))


def model_bytes(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[np.ndarray[Any, Any]] | dict[str, np.ndarray[Any, Any]] = (),
) -> bytes:
    inits = initializers.items() if isinstance(initializers, dict) else ()
    graph = helper.make_graph(
        list(nodes), "g", list(inputs), list(outputs), [numpy_helper.from_array(v, k) for k, v in inits]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9  # ONNX Runtime 1.31 reads up to IR 11; 9 is what opset 17 came with
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def identity(datatype: str, dims: Dims = ("batch", 3)) -> bytes:
    """``x`` (``datatype``, ``dims``) -> ``y``, the same values: any datatype's round trip."""
    return model_bytes(
        [helper.make_node("Identity", ["x"], ["y"])], [tensor("x", datatype, dims)], [tensor("y", datatype, dims)]
    )


def two_inputs() -> bytes:
    """A tabular-plus-text scorer: FP32 ``features`` [N, 4] and INT64 ``token_ids`` [N, seq] (an embedding
    of 10 tokens, averaged) -> FP32 ``scores`` [N, 3] and INT64 ``best`` [N]."""
    rng = np.random.default_rng(3)
    weights = {
        "W": rng.standard_normal((4, 3)).astype(np.float32),
        "E": rng.standard_normal((10, 3)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["E", "token_ids"], ["embedded"]),
        helper.make_node("ReduceMean", ["embedded"], ["text"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["features", "W"], ["tabular"]),
        helper.make_node("Add", ["tabular", "text"], ["scores"]),
        helper.make_node("ArgMax", ["scores"], ["best"], axis=1, keepdims=0),
    ]
    return model_bytes(
        nodes,
        [tensor("features", "FP32", ["N", 4]), tensor("token_ids", "INT64", ["N", "seq"])],
        [tensor("scores", "FP32", ["N", 3]), tensor("best", "INT64", ["N"])],
        weights,
    )


def masked_mean() -> bytes:
    """Two inputs sharing a named dimension: ``values`` FP64 [N, seq] and ``mask`` BOOL [N, seq] -> the mean of
    the values the mask keeps, FP64 [N]."""
    nodes = [
        helper.make_node("Cast", ["mask"], ["weights"], to=TensorProto.DOUBLE),
        helper.make_node("Mul", ["values", "weights"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "axis"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["weights", "axis"], ["count"], keepdims=0),
        helper.make_node("Div", ["total", "count"], ["mean"]),
    ]
    return model_bytes(
        nodes,
        [tensor("values", "FP64", ["N", "seq"]), tensor("mask", "BOOL", ["N", "seq"])],
        [tensor("mean", "FP64", ["N"])],
        {"axis": np.array([1], dtype=np.int64)},
    )


def mixes_rows() -> bytes:
    """A model whose answer for a row depends on the other rows: ``x`` minus the batch's mean."""
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mu"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["x", "mu"], ["y"]),
    ]
    return model_bytes(nodes, [tensor("x", "FP32", ["N", 2])], [tensor("y", "FP32", ["N", 2])])


def detector() -> bytes:
    """A data-dependent output length, as a detector's: the indices of the positive values of ``x`` [N]."""
    nodes = [
        helper.make_node("Greater", ["x", "zero"], ["positive"]),
        helper.make_node("NonZero", ["positive"], ["where"]),
        helper.make_node("Squeeze", ["where", "axes"], ["found"]),
    ]
    return model_bytes(
        nodes,
        [tensor("x", "FP32", ["N"])],
        [tensor("found", "INT64", [None])],
        {"zero": np.array(0, dtype=np.float32), "axes": np.array([0], dtype=np.int64)},
    )


def session(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def served(
    data: bytes, *, batchable: bool = True, name: str = "m", version: str = "1", labels: list[str] | None = None
) -> Model:
    """The ``Model`` the server would hold for ``data`` published with these declarations (no plug-in)."""
    s = session(data)
    return Model(name, version, s, signature_of(s), {"batchable": batchable}, batchable, None, labels)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
