"""A model's signature as the Open Inference Protocol states it, read from the model itself.

ONNX Runtime reports each graph input and output with its name, its ONNX type (``tensor(float)``,
``seq(map(int64,tensor(float)))``...) and its shape, each dimension an int (fixed), a str (a
named dynamic dimension) or None (an unnamed one)
(https://onnxruntime.ai/docs/api/python/api_summary.html#onnxruntime.NodeArg). The protocol's
datatypes (https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md,
"Tensor Data Types") map one to one onto ONNX's tensor element types, BYTES onto ONNX strings;
a dynamic dimension is -1 on the wire. A model with any other input or output type (a sequence,
a map, bfloat16, float8) cannot be served over the protocol and is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

# ONNX type string (as ONNX Runtime's NodeArg.type spells it) -> the protocol's datatype.
DATATYPES: Final = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
# The protocol's datatype -> the numpy dtype ONNX Runtime takes and gives for it, little-endian as the
# binary tensor extension sends them. ONNX Runtime's string tensors are numpy object arrays of str.
NUMPY: Final[Mapping[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

# A dimension: fixed (int), or dynamic, named (str) or not (None).
Dim = int | str | None


class SignatureError(ValueError):
    """A model whose inputs or outputs cannot be served over the protocol; the message names them."""


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str  # one of NUMPY's keys
    dims: tuple[Dim, ...]
    dtype: np.dtype[Any] = field(compare=False)

    @property
    def shape(self) -> list[int]:
        """The shape as the protocol reports it: -1 for a dynamic dimension."""
        return [d if isinstance(d, int) else -1 for d in self.dims]

    @property
    def rank(self) -> int:
        return len(self.dims)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}

    def describe(self) -> str:
        """``name`` (DATATYPE [d0, d1...]) for messages, dynamic dimensions by name where they have one."""
        dims = ", ".join(str(d) if isinstance(d, int) else (d or "-1") for d in self.dims)
        return f"{self.name!r} ({self.datatype} [{dims}])"


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"inputs": [t.as_dict() for t in self.inputs], "outputs": [t.as_dict() for t in self.outputs]}

    def input(self, name: str) -> TensorSpec | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((t for t in self.outputs if t.name == name), None)


def _dim(value: object) -> Dim:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        return value
    return None  # unnamed, or a value ONNX Runtime reports for a dimension it does not know


def tensor_spec(name: str, onnx_type: str, shape: Sequence[object] | None, role: str) -> TensorSpec:
    datatype = DATATYPES.get(onnx_type)
    if datatype is None:
        supported = ", ".join(sorted(set(DATATYPES.values())))
        hint = ""
        if onnx_type.startswith(("seq(", "map(")):
            hint = (
                "; a scikit-learn classifier converted with skl2onnx gives a list of dictionaries unless "
                "converted with options={id(model): {'zipmap': False}}"
            )
        raise SignatureError(
            f"{role} {name!r} is {onnx_type}, which the Open Inference Protocol has no datatype for; "
            f"every input and output must be a tensor of {supported}{hint}"
        )
    if shape is None:  # ONNX Runtime gives None for a tensor of unknown rank
        raise SignatureError(f"{role} {name!r} has no known rank: export the model with its shapes")
    return TensorSpec(name, datatype, tuple(_dim(d) for d in shape), NUMPY[datatype])


def signature_of(session: Any) -> Signature:
    """The signature of an ``onnxruntime.InferenceSession``; SignatureError naming any tensor it cannot serve."""
    inputs = tuple(tensor_spec(a.name, a.type, a.shape, "input") for a in session.get_inputs())
    outputs = tuple(tensor_spec(a.name, a.type, a.shape, "output") for a in session.get_outputs())
    if not outputs:
        raise SignatureError("the model has no outputs")
    return Signature(inputs, outputs)


def batch_problem(signature: Signature) -> str | None:
    """Why the model's callers cannot share one run, judged from the graph; None when they can.

    Batchable means every input and output has a first dimension that is the batch: dynamic (a
    fixed one cannot grow with the callers), and the same dimension throughout where the graph
    names it (a differently named leading dimension is another axis). An unnamed one is taken on
    trust here and checked by running the model when it is published (``mlapp.publish``).
    """
    if not signature.inputs:
        return "it has no inputs to batch"
    names: set[str] = set()
    for role, specs in (("input", signature.inputs), ("output", signature.outputs)):
        for spec in specs:
            if not spec.dims:
                return f"{role} {spec.describe()} is a scalar: it has no batch dimension"
            first = spec.dims[0]
            if isinstance(first, int):
                return f"{role} {spec.describe()} has a fixed first dimension ({first}): it cannot hold several callers"
            if isinstance(first, str):
                names.add(first)
    if len(names) > 1:
        return f"the first dimensions are named differently ({', '.join(sorted(names))}): they are not one batch axis"
    return None


def example_shape(spec: TensorSpec, rows: int = 1, named: Mapping[str, int] | None = None) -> tuple[int, ...]:
    """A concrete shape for ``spec``: ``rows`` for the first dimension when it is dynamic, a named
    dimension's value from ``named``, and 1 for any other dynamic one."""
    named = named or {}
    shape = []
    for index, d in enumerate(spec.dims):
        if isinstance(d, int):
            shape.append(d)
        elif index == 0:
            shape.append(rows)
        else:
            shape.append(named.get(d, 1) if isinstance(d, str) else 1)
    return tuple(shape)


def zeros(spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """An input of zeros (empty strings for BYTES, false for BOOL) shaped ``shape``."""
    if spec.datatype == "BYTES":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=spec.dtype)
