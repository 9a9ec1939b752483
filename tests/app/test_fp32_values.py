"""Request values to FP32 without numpy: what is refused, and that what is kept equals numpy's conversion.

``tensors`` turns a request's FP32 numbers (JSON or raw bytes) into a flat array('f') and checks them
finite by their sum (no numpy call per request: BENCHMARKS.md). These tests hold that shortcut to what
numpy would have said, at the edges where it could differ: FP32's largest value, the first number
past it, an integer too large for a double, +inf and -inf together (whose sum is NaN), and the most
large values a request may carry (whose sum must not overflow).
"""

from __future__ import annotations

import re
import struct
from array import array
from typing import Any

import numpy as np
import pytest

from mlapp.serve import protocol, tensors
from mlapp.serve.batching import Job, merge
from mlapp.serve.errors import BadRequest
from mlapp.signature import NUMPY, TensorSpec

from .models import model_bytes, served, tensor

FP32_MAX = float(np.finfo(np.float32).max)


def _digits_shaped() -> bytes:
    """A model with the digits example's interface, input FP32 [batch, 1, 8, 8] -> its first 10 values."""
    from onnx import helper

    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"]),
        helper.make_node("Slice", ["flat", "s", "e", "a"], ["probabilities"]),
    ]
    inits = {k: np.array([v], dtype=np.int64) for k, v in {"s": 0, "e": 10, "a": 1}.items()}
    return model_bytes(
        nodes, [tensor("input", "FP32", ["batch", 1, 8, 8])], [tensor("probabilities", "FP32", ["batch", 10])], inits
    )


DIGITS = served(_digits_shaped())
FP32 = TensorSpec("input", "FP32", (None, 4), NUMPY["FP32"])


# The most values one request can carry on the default settings (64 rows a batch, 16 batches a request).
MOST_VALUES = 64 * 16 * 64


def test_numbers_convert_exactly_as_numpy_converts_them() -> None:
    data: list[Any] = [0, 1, -1, 0.1, 1 / 3, 1e-45, -2.5e-38, 16, 3.4e38, -FP32_MAX, FP32_MAX, 2**24 + 1]
    values = tensors.fp32_numbers(data)
    assert values.typecode == "f"
    np.testing.assert_array_equal(np.frombuffer(values, dtype=np.float32), np.asarray(data, dtype=np.float32))


def test_nested_rows_are_flattened_row_major() -> None:
    values = tensors.fp32_numbers([[1, 2, 3], [4.5, 5, 6]])
    assert list(values) == [1, 2, 3, 4.5, 5, 6]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1e39, 0], "outside FP32's range"),
        ([0, -1e39], "outside FP32's range"),
        ([FP32_MAX * (1 + 2**-23)], "outside FP32's range"),  # rounds past the largest FP32
        ([10**400], "numbers FP32 can hold"),  # past a double: OverflowError, not inf
        ([True, 0.5], "found bool"),
        ([None], "found null"),
        (["1"], "found str"),
        ([[1, 2], [3]], "must be numbers"),  # ragged
        ([[1, [2]], [3, [4]]], "found list"),
    ],
)
def test_what_fp32_cannot_hold_is_refused(data: list[Any], message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        tensors.fp32_numbers(data)
    if message != "found bool":
        # The same answer when the JSON text held no true/false and the array module checks the types.
        with pytest.raises(BadRequest, match=re.escape(message)):
            tensors.fp32_numbers(data, bools=False)


@pytest.mark.parametrize(
    "text",
    [
        b'{"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [true'
        + b", 0" * 63
        + b"]}]}",
        # A true elsewhere (a string that holds the word): the types are still read, the bool still refused.
        b'{"id": "true", "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [false'
        + b", 0" * 63
        + b"]}]}",
    ],
)
def test_a_bool_among_the_values_is_refused_wherever_true_or_false_appear(text: bytes) -> None:
    with pytest.raises(BadRequest, match="found bool"):
        protocol.parse_infer(text, DIGITS, 16)


def test_the_largest_values_a_request_may_carry_do_not_overflow_the_check() -> None:
    # MOST_VALUES times FP32's largest value is 2.2e44 as a double: finite, so accepted.
    values = tensors.fp32_numbers([FP32_MAX] * MOST_VALUES)
    assert len(values) == MOST_VALUES


@pytest.mark.parametrize(
    "bad",
    [[float("nan")], [float("inf")], [float("-inf")], [float("inf"), float("-inf")], [1.0, float("nan"), -1.0]],
)
def test_raw_bytes_holding_nan_or_infinity_are_refused(bad: list[float]) -> None:
    raw = struct.pack(f"<{len(bad) + 2}f", 0.5, *bad, 0.25)
    with pytest.raises(BadRequest, match="NaN or infinity"):
        tensors.binary_values(FP32, memoryview(raw), len(bad) + 2)


def test_raw_bytes_are_read_little_endian_as_the_extension_sends_them() -> None:
    want = np.asarray([0.5, -2.0, 3.25e-5, FP32_MAX], dtype="<f4")
    raw = want.tobytes()
    values = tensors.binary_values(FP32, memoryview(raw), len(want))
    np.testing.assert_array_equal(np.frombuffer(values, dtype=np.float32), want.astype(np.float32))


def test_the_rows_reach_the_model_in_its_input_shape() -> None:
    a, b = array("f", range(64)), array("f", range(100, 228))
    jobs = [Job((a,), ((1, 1, 8, 8),), ("probabilities",), ()), Job((b,), ((2, 1, 8, 8),), ("probabilities",), ())]
    feeds, shapes = merge(jobs)
    assert shapes == [(3, 1, 8, 8)]
    (out,) = DIGITS.run(feeds, shapes, ["probabilities"])
    assert out.shape == (3, 10)
    np.testing.assert_array_equal(
        out.ravel(), np.concatenate([np.arange(10), np.arange(100, 110), np.arange(164, 174)])
    )
