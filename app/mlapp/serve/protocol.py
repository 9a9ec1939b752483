"""The bodies the server reads and writes: Open Inference Protocol v2 tensors, and /predict's picture or pixels.

Plain functions from bytes to arrays and from arrays to answers, so a test can
feed them anything without a server. Each refusal raises an ``errors`` type
carrying the message the caller sees.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from mlapp import preprocess
from mlapp.serve.errors import BadRequest, TooLarge, UnsupportedMediaType
from mlapp.serve.model import Model
from mlapp.serve.multipart import parse_multipart, parse_params

SERVER_METADATA: Final = {"name": "mlapp", "version": "1", "extensions": []}
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


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"malformed JSON: {e}") from e


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


def parse_infer(body: bytes, model: Model, max_rows: int) -> tuple[npt.NDArray[np.float32], Any]:
    """The input rows of a v2 inference request, and its ``id`` (any JSON value, or None)."""
    request = _loads(body)
    if not isinstance(request, dict):
        raise BadRequest("the request must be a JSON object with 'inputs'")
    x = _input_rows(_input_tensor(request, model), model, max_rows)
    outputs = request.get("outputs")
    if outputs is not None and (
        not isinstance(outputs, list)
        or not all(isinstance(o, dict) and o.get("name") == model.output_name for o in outputs)
    ):
        raise BadRequest(f"the only output is {model.output_name!r}")
    return x, request.get("id")


def _input_tensor(request: dict[str, Any], model: Model) -> dict[str, Any]:
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    if len(inputs) != 1:
        raise BadRequest(f"this model takes exactly one input, {model.input_name!r}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise BadRequest("each input must be an object with name, shape, datatype, data")
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise BadRequest(f"input is missing {key!r}")
    if tensor["name"] != model.input_name:
        raise BadRequest(f"unknown input {tensor['name']!r}; the model's input is {model.input_name!r}")
    if tensor["datatype"] != "FP32":
        raise BadRequest(f"input datatype must be FP32, got {tensor['datatype']!r}")
    return tensor


def _input_rows(tensor: dict[str, Any], model: Model, max_rows: int) -> npt.NDArray[np.float32]:
    shape = tensor["shape"]
    # shape[1:] is compared first: equal, it proves the length, so shape[0] exists.
    # The int check comes before the comparison with 1 (and refuses True, which equals 1).
    if (
        not isinstance(shape, list)
        or shape[1:] != [1, model.height, model.width]
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[0] < 1
    ):
        raise BadRequest(f"input shape must be [N, 1, {model.height}, {model.width}] with N >= 1, got {shape!r}")
    data = tensor["data"]
    if not isinstance(data, list):
        raise BadRequest("input data must be a list of numbers")
    arr = fp32_numbers(data)
    expected = shape[0] * model.height * model.width
    if arr.size != expected:
        raise BadRequest(f"input data holds {arr.size} values but shape {shape} needs {expected}")
    if shape[0] > max_rows:
        raise TooLarge(f"at most {max_rows} rows per request")
    return arr.reshape(shape)


_NUMBER_TYPES: Final = frozenset((int, float))


def fp32_numbers(data: list[Any]) -> npt.NDArray[np.float32]:
    """``data`` (flat or nested row-major) as FP32, if every value is a finite JSON number FP32 can hold.

    Refused: strings ("nan", "inf", "1"), null, true/false, and numbers past
    FP32's range (1e39 would become inf). numpy would convert every one of those
    (a string parsed, null to nan, true to 1.0), so the element types are read
    first: straight from a flat list, or from an object array (which converts
    nothing) for nested rows.
    """
    if data and isinstance(data[0], list):
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
    try:
        with np.errstate(over="ignore"):  # past FP32's range becomes inf, refused below
            arr = np.asarray(data, dtype=np.float32)
    except (OverflowError, ValueError) as e:  # an int past float's range; ragged nesting
        raise BadRequest(f"input data must be numbers FP32 can hold, in equal rows: {e}") from e
    if not np.isfinite(arr).all():
        raise BadRequest(f"input data holds a number outside FP32's range (+-{FP32_MAX:.7g})")
    return arr


def infer_answer(model: Model, probs: npt.NDArray[np.float32], request_id: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "model_name": model.name,
        "model_version": model.version,
        "outputs": [
            {
                "name": model.output_name,
                "datatype": "FP32",
                "shape": [len(probs), model.num_classes],
                "data": probs.ravel(),
            }
        ],
    }
    # The protocol's id is a string; anything else the caller sent is not echoed.
    if isinstance(request_id, str):
        answer["id"] = request_id
    return answer


def parse_predict(body: bytes, content_type: str, pre: preprocess.Preprocessing) -> npt.NDArray[np.float32]:
    """The one input row of a /predict body: a multipart ``image`` field, or JSON ``pixels``."""
    if check_predict_type(content_type) == "multipart/form-data":
        fields = parse_multipart(body, content_type)
        if "image" not in fields:
            raise BadRequest("multipart form has no 'image' field")
        return preprocess.image_bytes_to_input(fields["image"], pre)
    request = _loads(body)
    if not isinstance(request, dict) or "pixels" not in request:
        raise BadRequest("JSON body must be an object with 'pixels'")
    return preprocess.pixels_to_input(request["pixels"], pre)


def predict_answer(model: Model, probs: npt.NDArray[np.float32]) -> dict[str, Any]:
    cls = int(probs.argmax())
    return {
        "label": model.labels[cls],
        "class": cls,
        "probabilities": probs,
        "model_name": model.name,
        "model_version": model.version,
    }
