"""One tensor's values on the wire and in memory, for every datatype of the Open Inference Protocol.

JSON carries a tensor's values as a flat (or nested, row-major) list: numbers for the numeric
types, true/false for BOOL, strings for BYTES. The binary tensor data extension carries them raw,
little-endian, row-major: fixed-size elements as numpy's ``<`` dtypes, BOOL as one byte each (0 or
1), BYTES as each element's length in 4 little-endian bytes followed by its bytes
(triton-inference-server/server docs/protocol/extension_binary_data.md, "the tensor data... in
row-major order"; "BYTES... each element is preceded by a 4-byte length").

Decoding is strict, since everything decoded reaches ONNX Runtime: a value of the wrong kind (a
string or null among numbers, a float for an integer type, true among numbers) or out of the
datatype's range is refused, never converted. No NaN or infinity reaches a floating-point input:
JSON has no spelling for them, and raw ones are refused too, so both encodings take the same values.

FP32, the common case, stays in the array module from the JSON list to the batch: one C loop per
request, no numpy call (a numpy call costs about a microsecond of dispatch however few values it
touches: BENCHMARKS.md). Every other datatype becomes a numpy array at once.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from mlapp.serve.errors import BadRequest
from mlapp.signature import NUMPY, TensorSpec

# A request's values of one input, flat: an array('f') for FP32, else a 1-D numpy array.
# (array is generic to type checkers only: subscripting it at run time needs Python 3.12.)
if TYPE_CHECKING:
    Flat: TypeAlias = array[float] | npt.NDArray[Any]
    FloatArray: TypeAlias = array[float]
else:
    Flat = array | np.ndarray
    FloatArray = array

FP16_MAX: Final = float(np.finfo(np.float16).max)
FP32_MAX: Final = float(np.finfo(np.float32).max)
_NUMBER_TYPES: Final = frozenset((int, float))
_INT_TYPES: Final = frozenset((int,))
_BYTES_LENGTH: Final = struct.Struct("<I")


def _kind_names(kinds: set[type], allowed: frozenset[type]) -> str:
    return ", ".join(
        sorted("null" if k is type(None) else "list" if k is list else "object" if k is dict else k.__name__
               for k in kinds - allowed)
    )  # fmt: skip


def _elements(data: list[Any]) -> Sequence[Any]:
    """The values of a flat or nested (row-major, equal rows) list, flat, converting none of them."""
    if not data or not isinstance(data[0], list):
        return data
    try:
        flat: list[Any] = np.asarray(data, dtype=object).ravel().tolist()
    except ValueError as e:  # ragged nesting
        raise BadRequest("data must be flat, or nested row-major with equal rows") from e
    return flat


def finite_fp32(values: FloatArray) -> bool:
    """Whether every value is finite: their sum is, exactly then.

    An inf or a NaN anywhere makes the sum inf or NaN (inf + -inf is NaN); finite FP32 values,
    each under 3.5e38, summed as doubles (up to 1.8e308) cannot overflow for any count a request
    can hold. ``sum`` over an array('f') is one C loop with no numpy dispatch: 0.7 us for 64
    values, against 1.7 us for ``np.isfinite(a).all()`` alone, and several times that on the busy
    loop.
    """
    return math.isfinite(sum(values))


def fp32_numbers(data: list[Any], bools: bool = True) -> FloatArray:
    """``data`` (flat or nested row-major) as FP32 values, flat, if every value is a finite JSON number FP32
    can hold.

    Refused: strings ("nan", "inf", "1"), null, true/false, and numbers past FP32's range (1e39
    would become inf). numpy would convert every one of those (a string parsed, null to nan, true
    to 1.0), so the element types are read first: straight from a flat list, or from an object
    array (which converts nothing) for nested rows. ``bools`` False says the JSON text held no true
    or false: then the array module's own conversion is the type check (it refuses a string,
    null, a list or an object with TypeError, and takes only numbers and bools), and the types are
    read only to name what it refused.
    """
    nested = bool(data) and isinstance(data[0], list)
    if not nested and not bools:
        try:
            return _fp32_checked(data)
        except TypeError:
            pass  # a non-number: named below
    elements = _elements(data)
    kinds = set(map(type, elements))
    if not kinds <= _NUMBER_TYPES:
        raise BadRequest(f"data must be numbers only (FP32); found {_kind_names(kinds, _NUMBER_TYPES)}")
    return _fp32_checked(list(elements))


def _fp32_checked(numbers: Sequence[Any]) -> FloatArray:
    """``numbers`` as FP32, refusing any past FP32's range; TypeError for an element that is not a number.

    Through the array module: it converts as C does, past FP32's range to inf with no warning
    (CPython Modules/arraymodule.c f_setitem parses with the "f" format, Python/getargs.c:
    ``*p = (float) dval``, no range check); ``finite_fp32`` then refuses those.
    """
    try:
        values = array("f", numbers)
    except OverflowError as e:  # an int past float's range
        raise BadRequest(f"data must be numbers FP32 can hold: {e}") from e
    if not finite_fp32(values):
        bad = next(n for n, v in zip(numbers, values, strict=True) if not math.isfinite(v))
        raise BadRequest(f"data holds a number outside FP32's range (+-{FP32_MAX:.7g}): {bad!r}")
    return values


def json_values(spec: TensorSpec, data: list[Any], bools: bool) -> Flat:
    """The values of a JSON ``data`` list for an input of ``spec``'s datatype, flat; BadRequest naming
    what is wrong with them."""
    datatype = spec.datatype
    if datatype == "FP32":
        return fp32_numbers(data, bools)
    elements = _elements(data)
    kinds = set(map(type, elements))
    if datatype == "BOOL":
        if not kinds <= {bool}:
            raise BadRequest(f"BOOL data must be true or false only; found {_kind_names(kinds, frozenset({bool}))}")
        return np.array(elements, dtype=np.bool_)
    if datatype == "BYTES":
        if not kinds <= {str}:
            raise BadRequest(f"BYTES data must be strings only; found {_kind_names(kinds, frozenset({str}))}")
        out = np.empty(len(elements), dtype=object)
        out[:] = elements
        return out
    if datatype.startswith(("INT", "UINT")):
        return _json_integers(spec, elements, kinds)
    return _json_floats(spec, elements, kinds)


def _json_integers(spec: TensorSpec, elements: Sequence[Any], kinds: set[type]) -> npt.NDArray[Any]:
    # bool is an int to Python; its type is bool, so true/false are refused here.
    if not kinds <= _INT_TYPES:
        raise BadRequest(f"{spec.datatype} data must be integers only; found {_kind_names(kinds, _INT_TYPES)}")
    try:
        return np.array(elements, dtype=spec.dtype)
    except OverflowError:  # numpy 2 refuses a Python int out of the dtype's range
        info = np.iinfo(spec.dtype)
        bad = next((v for v in elements if not info.min <= v <= info.max), None)
        raise BadRequest(f"{spec.datatype} data must be integers from {info.min} to {info.max}, got {bad}") from None


def _json_floats(spec: TensorSpec, elements: Sequence[Any], kinds: set[type]) -> npt.NDArray[Any]:
    datatype = spec.datatype
    if not kinds <= _NUMBER_TYPES:
        raise BadRequest(f"{datatype} data must be numbers only; found {_kind_names(kinds, _NUMBER_TYPES)}")
    try:
        wide = np.array(elements, dtype=np.float64)
    except OverflowError as e:  # an int past float's range
        raise BadRequest(f"{datatype} data must be numbers {datatype} can hold: {e}") from None
    if not np.isfinite(wide).all():
        raise BadRequest(f"{datatype} data holds a number outside its range")
    if datatype == "FP16":
        if wide.size and np.abs(wide).max() > FP16_MAX:
            bad = wide[np.abs(wide) > FP16_MAX][0]
            raise BadRequest(f"FP16 data holds a number outside FP16's range (+-{FP16_MAX:g}): {bad:g}")
        return wide.astype(np.float16)
    return wide


def binary_size(spec: TensorSpec, count: int) -> int | None:
    """The bytes ``count`` values of ``spec``'s datatype take on the wire; None for BYTES (each element
    says its own length)."""
    if spec.datatype == "BYTES":
        return None
    return count * spec.dtype.itemsize


def binary_values(spec: TensorSpec, raw: memoryview, count: int) -> Flat:
    """``count`` values of ``spec``'s datatype from their raw bytes (exactly their size), flat."""
    datatype = spec.datatype
    if datatype == "FP32":
        # The 4-byte IEEE 754 values in this machine's byte order. frombytes, not the constructor: given a
        # memoryview, array() iterates it byte by byte (only bytes and bytearray go to frombytes:
        # https://docs.python.org/3.11/library/array.html#array.array).
        values = array("f")
        values.frombytes(raw)
        if sys.byteorder != "little":
            values.byteswap()  # the wire is little-endian
        if not finite_fp32(values):
            raise BadRequest("data holds NaN or infinity")
        return values
    if datatype == "BYTES":
        return _bytes_elements(raw, count)
    values_np = np.frombuffer(raw, dtype=spec.dtype)
    if datatype == "BOOL":
        if values_np.size and (high := int(values_np.view(np.uint8).max())) > 1:
            raise BadRequest(f"BOOL data must be bytes 0 or 1, got {high}")
    elif datatype.startswith("FP") and not np.isfinite(values_np).all():
        raise BadRequest("data holds NaN or infinity")
    return values_np


def _bytes_elements(raw: memoryview, count: int) -> npt.NDArray[Any]:
    """BYTES elements from the binary extension: each a 4-byte little-endian length, then that many bytes
    of UTF-8 (ONNX strings are UTF-8: onnx/onnx.proto3, TensorProto ``string_data``)."""
    # Each element takes its 4-byte length at least: a shape that declares more elements than the bytes can
    # hold is refused before an array of that many is made (a few bytes must not allocate gigabytes).
    if count > len(raw) // _BYTES_LENGTH.size:
        raise BadRequest(
            f"BYTES data of {len(raw)} bytes cannot hold the {count} elements its shape declares "
            f"(each is a {_BYTES_LENGTH.size}-byte length, then its bytes)"
        )
    out = np.empty(count, dtype=object)
    pos = 0
    for index in range(count):
        if pos + 4 > len(raw):
            raise BadRequest(f"BYTES data ends inside element {index}'s length ({count} elements declared)")
        (length,) = _BYTES_LENGTH.unpack_from(raw, pos)
        pos += 4
        if pos + length > len(raw):
            raise BadRequest(f"BYTES element {index} declares {length} bytes, but {len(raw) - pos} remain of its data")
        try:
            # As str: ONNX Runtime's binding takes a string tensor's elements as str, and a bytes element
            # would reach the model as its repr, "b'x'" (seen with onnxruntime 1.31.1; tests/app/
            # test_any_model.py round-trips BYTES through a model in JSON and raw).
            out[index] = bytes(raw[pos : pos + length]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadRequest(f"BYTES element {index} is not UTF-8 text, which ONNX strings must be: {e}") from None
        pos += length
    if pos != len(raw):
        raise BadRequest(f"BYTES data holds {len(raw) - pos} bytes past its {count} elements")
    return out


def json_data(values: npt.NDArray[Any], datatype: str) -> Any:
    """An output's values as the JSON answer carries them: flat, row-major."""
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.ravel().tolist()]
    # orjson serializes C-contiguous numpy arrays of every numeric dtype and bool (OPT_SERIALIZE_NUMPY);
    # ravel() gives one, a view where the rows already are (a slice of rows of ONNX Runtime's output).
    return values.ravel()


def binary_data(values: npt.NDArray[Any], datatype: str) -> bytes:
    """An output's values raw, as the binary tensor data extension sends them."""
    if datatype == "BYTES":  # an object array's own bytes are pointers: each element is encoded
        parts: list[bytes] = []
        for v in values.ravel().tolist():
            encoded = v if isinstance(v, bytes) else str(v).encode("utf-8")
            parts += (_BYTES_LENGTH.pack(len(encoded)), encoded)
        return b"".join(parts)
    wire = NUMPY[datatype]
    # ONNX Runtime's output is C-contiguous in the machine's byte order, and a slice of its rows too:
    # sent as it is when that is the wire's little-endian dtype, converted only where it is not.
    return values.tobytes() if values.dtype == wire else np.ascontiguousarray(values, dtype=wire).tobytes()


def wire_bytes(values: npt.NDArray[Any], datatype: str, binary: bool) -> int:
    """About the bytes an output takes in the answer: exact raw, and a generous bound for JSON text."""
    if datatype == "BYTES":
        # UTF-8 bytes, not characters; raw, each after its 4-byte length; in JSON, each byte at most
        # 6 characters escaped ("\u001f") between quotes and a comma.
        sizes = [len(v if isinstance(v, bytes) else str(v).encode("utf-8")) for v in values.ravel().tolist()]
        return sum(sizes) + 4 * len(sizes) if binary else 6 * sum(sizes) + 3 * len(sizes)
    if binary:
        return int(values.nbytes)
    # The longest JSON number a value of these types prints as ("-1.2345679e-38,", "-9223372036854775808,").
    return int(values.size) * (6 if datatype == "BOOL" else 25)
