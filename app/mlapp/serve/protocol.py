"""The bodies the server reads and writes: Open Inference Protocol v2 tensors, and /predict's picture or pixels.

Plain functions from bytes to arrays and from arrays to answers, so a test can
feed them anything without a server. Each refusal raises an ``errors`` type
carrying the message the caller sees.
"""

from __future__ import annotations

import math
import sys
from array import array
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from mlapp import preprocess
from mlapp.serve.asgi import JSON, dumps
from mlapp.serve.batching import Flat
from mlapp.serve.errors import BadRequest, TooLarge, UnsupportedMediaType
from mlapp.serve.model import Model
from mlapp.serve.multipart import parse_multipart, parse_params

# The binary tensor data extension (Triton's docs/protocol/extension_binary_data.md, which KServe's
# model server implements too): the request's first Inference-Header-Content-Length bytes are the JSON
# inference header, and the raw tensors follow, each input with parameters.binary_data_size; an output is
# sent raw after the JSON answer when asked (its parameters.binary_data, or the request's
# binary_data_output), the answer then carrying its own Inference-Header-Content-Length. "This extension
# is identified by the name binary_tensor_data" in the server metadata's extensions.
BINARY_EXTENSION: Final = "binary_tensor_data"
BINARY_HEADER: Final = b"inference-header-content-length"
OCTET_STREAM: Final = b"application/octet-stream"
BINARY_HINT: Final = (
    "; raw tensors after a JSON header (the binary_tensor_data extension) need the header "
    "Inference-Header-Content-Length saying where the JSON ends"
)
MAX_LENGTH_DIGITS: Final = 19  # a byte count past any body this server accepts, before int() parses it
SERVER_METADATA: Final = {"name": "mlapp", "version": "1", "extensions": [BINARY_EXTENSION]}
# Tensors travel little-endian, row-major (the extension: "the tensor data ... in row-major order" and
# FP32 as its IEEE 754 4 bytes, as numpy's '<f4').
FP32_WIRE: Final = np.dtype("<f4")
# Parameters that belong to extensions this server does not implement, so that a request using one is
# refused naming it rather than half-served (Triton's extension names: docs/protocol/).
UNSUPPORTED_PARAMETERS: Final = {
    "shared_memory_region": "system_shared_memory / cuda_shared_memory",
    "shared_memory_byte_size": "system_shared_memory / cuda_shared_memory",
    "shared_memory_offset": "system_shared_memory / cuda_shared_memory",
    "classification": "classification",
    "sequence_id": "sequence",
    "sequence_start": "sequence",
    "sequence_end": "sequence",
    "priority": "schedule_policy",
    "timeout": "schedule_policy",
}
# The largest finite FP32 value; a number past it would become inf in the tensor.
FP32_MAX: Final = float(np.finfo(np.float32).max)
# What /infer reads as its JSON body. No Content-Type at all is read as JSON too:
# tritonclient's HTTP client sends none (tritonclient/http/_client.py posts the
# body with only Inference-Header-Content-Length), and its asyncio client's
# aiohttp labels any bytes body application/octet-stream
# (https://docs.aiohttp.org/en/stable/client_reference.html, ClientSession.request: data).
INFER_TYPES: Final = ("application/json", "application/octet-stream")
PREDICT_TYPES: Final = ("multipart/form-data", "application/json")


def check_infer_type(content_type: str) -> None:
    if not content_type or content_type == INFER_TYPES[0]:
        return  # the common cases, without parsing
    kind, _ = parse_params(content_type)
    if kind and kind not in INFER_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {kind!r} is not read here: send the inference request as {INFER_TYPES[0]}"
        )


def check_predict_type(content_type: str) -> str:
    """The media type of a /predict body, if it is one /predict reads; 415 otherwise."""
    kind, _ = parse_params(content_type) if content_type else ("", {})
    if kind not in PREDICT_TYPES:
        raise UnsupportedMediaType(
            "send multipart/form-data with an 'image' field, or application/json with 'pixels'"
            + (f" (got Content-Type {kind!r})" if kind else " (no Content-Type was sent)")
        )
    return kind


def _loads(body: bytes, hint: str = "") -> Any:
    """``body`` as JSON, or 400. With a ``hint`` (what the caller may have meant), a body that is not
    even text is said to be so, and the hint follows."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        what = "the body is not JSON text" if hint and not _is_utf8(body) else str(e)
        raise BadRequest(f"malformed JSON: {what}{hint}") from e


def model_metadata(model: Model) -> dict[str, Any]:
    meta = model.metadata
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {
                "name": model.input_name,
                "datatype": "FP32",
                "shape": [-1, 1, model.height, model.width],
            }
        ],
        "outputs": [{"name": model.output_name, "datatype": "FP32", "shape": [-1, model.num_classes]}],
        "parameters": {
            "accuracy": meta.get("accuracy"),
            "dataset": meta.get("dataset"),
            "trainer_image": meta.get("trainer_image"),
            "created_at": meta.get("created_at"),
            "labels": model.labels,
            "preprocessing": meta["input"]["preprocessing"],
        },
    }


class InferRequest(NamedTuple):
    """A v2 inference request as the server runs it: the input rows, the caller's id, how to answer.

    A NamedTuple, not a frozen dataclass, whose ``__init__`` sets each field through
    ``object.__setattr__``: one is built per request (issue 16)."""

    rows: Flat  # shape[0] rows of the model's input, flat (batching.Flat)
    request_id: Any
    binary_output: bool


def json_header_length(value: str, body_size: int) -> int | None:
    """The Inference-Header-Content-Length of a request (None: the body is all JSON), checked against the body."""
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > MAX_LENGTH_DIGITS:
        raise BadRequest(f"Inference-Header-Content-Length must be a byte count, got {value[:40]!r}")
    length = int(value)
    if not 0 < length <= body_size:
        raise BadRequest(
            f"Inference-Header-Content-Length {length} does not fit the body of {body_size} bytes: "
            "it counts the JSON header at the body's start"
        )
    return length


# The parameters each part of a request may carry (the binary tensor data extension's).
_REQUEST_PARAMETERS: Final = frozenset({"binary_data_output"})
_INPUT_PARAMETERS: Final = frozenset({"binary_data_size"})
_OUTPUT_PARAMETERS: Final = frozenset({"binary_data"})


def _refuse_unsupported(parameters: Any, where: str, known: frozenset[str]) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise BadRequest(f"{where} parameters must be an object")
    for key in parameters:
        if key in known:
            continue
        if key in UNSUPPORTED_PARAMETERS:
            raise BadRequest(
                f"{where} parameter {key!r} belongs to the {UNSUPPORTED_PARAMETERS[key]} extension, which this "
                f"server does not support (GET /v2 lists the extensions it does: {BINARY_EXTENSION})"
            )
        raise BadRequest(f"{where} parameter {key!r} is not understood here; known: {', '.join(sorted(known))}")
    return parameters


def parse_infer(body: bytes, model: Model, max_rows: int, header_value: str = "") -> InferRequest:
    """A v2 inference request: all JSON, or (``header_value``: its Inference-Header-Content-Length) a JSON
    header followed by binary tensors."""
    header_length = json_header_length(header_value, len(body))
    head, binary = (body, b"") if header_length is None else (body[:header_length], body[header_length:])
    request = _loads(head, BINARY_HINT if header_length is None else "")
    if not isinstance(request, dict):
        raise BadRequest("the request must be a JSON object with 'inputs'")
    parameters = _refuse_unsupported(request.get("parameters"), "request", _REQUEST_PARAMETERS)
    # JSON's true and false are these bytes wherever they occur; without them no value is a bool.
    bools = b"true" in head or b"false" in head
    rows = _input_rows(_input_tensor(request, model), model, max_rows, binary, bools)
    binary_output = _binary_output(request.get("outputs"), parameters.get("binary_data_output"), model)
    return InferRequest(rows, request.get("id"), binary_output)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{what} must be true or false, got {value!r}")
    return value


def _binary_output(outputs: Any, binary_data_output: Any, model: Model) -> bool:
    """Whether the answer carries the output raw: its own binary_data, else the request's binary_data_output."""
    default = False if binary_data_output is None else _flag(binary_data_output, "binary_data_output")
    if outputs is None:
        return default
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and o.get("name") == model.output_name for o in outputs
    ):
        raise BadRequest(f"the only output is {model.output_name!r}")
    binary = default
    for output in outputs:
        parameters = _refuse_unsupported(output.get("parameters"), "output", _OUTPUT_PARAMETERS)
        if "binary_data" in parameters:
            binary = _flag(parameters["binary_data"], "output parameter binary_data")
    return binary


def _input_tensor(request: dict[str, Any], model: Model) -> dict[str, Any]:
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    if len(inputs) != 1:
        raise BadRequest(f"this model takes exactly one input, {model.input_name!r}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise BadRequest("each input must be an object with name, shape, datatype, data")
    for key in ("name", "shape", "datatype"):
        if key not in tensor:
            raise BadRequest(f"input is missing {key!r}")
    if tensor["name"] != model.input_name:
        raise BadRequest(f"unknown input {tensor['name']!r}; the model's input is {model.input_name!r}")
    if tensor["datatype"] != "FP32":
        raise BadRequest(f"input datatype must be FP32, got {tensor['datatype']!r}")
    return tensor


def _input_rows(tensor: dict[str, Any], model: Model, max_rows: int, binary: bytes = b"", bools: bool = True) -> Flat:
    shape = tensor["shape"]
    # shape[1:] is compared first: equal, it proves the length, so shape[0] exists.
    # The int check comes before the comparison with 1 (and refuses True, which equals 1).
    if (
        not isinstance(shape, list)
        or shape[1:] != [1, model.height, model.width]
        or not set(map(type, shape)) <= _INT_ONLY  # exactly int: not bool, not 8.0
        or shape[0] < 1
    ):
        raise BadRequest(f"input shape must be [N, 1, {model.height}, {model.width}] with N >= 1, got {shape!r}")
    if shape[0] > max_rows:
        raise TooLarge(f"at most {max_rows} rows per request")
    expected = shape[0] * model.height * model.width
    parameters = _refuse_unsupported(tensor.get("parameters"), "input", _INPUT_PARAMETERS)
    if "binary_data_size" in parameters:
        return _binary_rows(tensor, parameters["binary_data_size"], binary, expected)
    if binary:
        raise BadRequest(
            f"{len(binary)} bytes follow the JSON header but no input declares parameters.binary_data_size"
        )
    if "data" not in tensor:
        raise BadRequest("input is missing 'data' (or parameters.binary_data_size for raw bytes)")
    data = tensor["data"]
    if not isinstance(data, list):
        raise BadRequest("input data must be a list of numbers")
    values = fp32_numbers(data, bools)
    if len(values) != expected:
        raise BadRequest(f"input data holds {len(values)} values but shape {shape} needs {expected}")
    return values


def _binary_rows(tensor: dict[str, Any], declared: Any, binary: bytes, values: int) -> Flat:
    """An input sent raw: its declared size must be what its shape needs and exactly what followed the header."""
    if "data" in tensor:
        raise BadRequest("an input with parameters.binary_data_size carries no 'data'")
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < 0:
        raise BadRequest(f"parameters.binary_data_size must be a byte count, got {declared!r}")
    needed = values * FP32_WIRE.itemsize
    if declared != needed:
        raise BadRequest(f"binary_data_size is {declared} bytes but the shape needs {needed} (FP32, 4 bytes each)")
    if len(binary) != declared:
        raise BadRequest(f"binary_data_size declares {declared} bytes but {len(binary)} follow the JSON header")
    arr = array("f", binary)  # the 4-byte IEEE 754 values in this machine's byte order
    if sys.byteorder != "little":
        arr.byteswap()  # the wire is little-endian
    if not _finite(arr):
        raise BadRequest("input data holds NaN or infinity")
    return arr


def _finite(values: Flat) -> bool:
    """Whether every value is finite: their sum is, exactly then.

    An inf or a NaN anywhere makes the sum inf or NaN (inf + -inf is NaN); finite
    FP32 values, each under 3.5e38, summed as doubles (up to 1.8e308) cannot
    overflow for any count a request can hold. ``sum`` over an array('f') is one
    C loop with no numpy dispatch (0.7 us for 64 values, where ``np.isfinite(a).all()``
    took 1.7 us alone and several times that on the busy loop, issue 16).
    """
    return math.isfinite(sum(values))


_NUMBER_TYPES: Final = frozenset((int, float))
_INT_ONLY: Final = frozenset((int,))


def fp32_numbers(data: list[Any], bools: bool = True) -> Flat:
    """``data`` (flat or nested row-major) as FP32 values, flat, if every value is a finite JSON number FP32
    can hold.

    Refused: strings ("nan", "inf", "1"), null, true/false, and numbers past
    FP32's range (1e39 would become inf). numpy would convert every one of those
    (a string parsed, null to nan, true to 1.0), so the element types are read
    first: straight from a flat list, or from an object array (which converts
    nothing) for nested rows. ``bools`` False says the JSON text held no true or
    false: then the array module's own conversion is the type check (it refuses
    a string, null, a list or an object with TypeError, and takes only numbers
    and bools), and the types are read only to name what it refused.
    """
    nested = bool(data) and isinstance(data[0], list)
    if not nested and not bools:
        try:
            return _fp32_checked(data)
        except TypeError:
            pass  # a non-number: named below
    if nested:
        try:
            elements: Any = np.asarray(data, dtype=object).ravel()
        except ValueError as e:  # ragged nesting
            raise BadRequest("input data must be numbers, flat or nested row-major with equal rows") from e
    else:
        elements = data
    kinds = set(map(type, elements))
    if not kinds <= _NUMBER_TYPES:
        names = sorted(
            "null" if k is type(None) else "list" if k is list else k.__name__ for k in kinds - _NUMBER_TYPES
        )
        raise BadRequest(f"input data must be numbers only (FP32); found {', '.join(names)}")
    return _fp32_checked(elements.tolist() if nested else data)


def _fp32_checked(numbers: list[Any]) -> Flat:
    """``numbers`` as FP32, refusing any past FP32's range; TypeError for an element that is not a number.

    Through the array module: it converts as C does, past FP32's range to inf with no warning
    (CPython Modules/arraymodule.c f_setitem parses with the "f" format, Python/getargs.c:
    ``*p = (float) dval``, no range check); ``_finite`` then refuses those.
    """
    try:
        values = array("f", numbers)
    except OverflowError as e:  # an int past float's range
        raise BadRequest(f"input data must be numbers FP32 can hold, in equal rows: {e}") from e
    if not _finite(values):
        raise BadRequest(f"input data holds a number outside FP32's range (+-{FP32_MAX:.7g})")
    return values


def infer_answer(
    model: Model, probs: npt.NDArray[np.float32], request: InferRequest
) -> tuple[bytes, bytes, int | None]:
    """The answer's body, its content type, and (binary output) the length of its JSON header."""
    output: dict[str, Any] = {
        "name": model.output_name,
        "datatype": "FP32",
        "shape": [len(probs), model.num_classes],
    }
    raw = b""
    if request.binary_output:
        raw = np.ascontiguousarray(probs, dtype=FP32_WIRE).tobytes()
        output["parameters"] = {"binary_data_size": len(raw)}
    else:
        output["data"] = probs.ravel()
    answer: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": [output]}
    # The protocol's id is a string; anything else the caller sent is not echoed.
    if isinstance(request.request_id, str):
        answer["id"] = request.request_id
    head = dumps(answer)
    if not request.binary_output:
        return head, JSON, None
    return head + raw, OCTET_STREAM, len(head)


def parse_predict(body: bytes, content_type: str, pre: preprocess.Preprocessing) -> Flat:
    """The one input row of a /predict body (a multipart ``image`` field, or JSON ``pixels``), flat."""
    if check_predict_type(content_type) == "multipart/form-data":
        fields = parse_multipart(body, content_type)
        if "image" not in fields:
            raise BadRequest("multipart form has no 'image' field")
        x = preprocess.image_bytes_to_input(fields["image"], pre)
    else:
        request = _loads(body)
        if not isinstance(request, dict) or "pixels" not in request:
            raise BadRequest("JSON body must be an object with 'pixels'")
        x = preprocess.pixels_to_input(request["pixels"], pre)
    return array("f", np.ascontiguousarray(x, dtype=np.float32).tobytes())


def predict_answer(model: Model, probs: npt.NDArray[np.float32]) -> dict[str, Any]:
    cls = int(probs.argmax())
    return {
        "label": model.labels[cls],
        "class": cls,
        "probabilities": probs,
        "model_name": model.name,
        "model_version": model.version,
    }
