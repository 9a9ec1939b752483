"""The Open Inference Protocol v2 bodies the server reads and writes, for any model.

Plain functions from bytes to a ``Job`` and from outputs to an answer, so a test can feed them
anything without a server. A request is checked against the model's signature before any of it
reaches ONNX Runtime: every input the model takes, once, by name, of its datatype, of a shape that
fits (fixed dimensions equal, named dynamic dimensions equal across inputs, the batch dimension
within bounds), with exactly as many values (or bytes) as the shape needs. Each refusal raises an
``errors`` type carrying the message the caller sees, naming the input, what was sent and what the
model takes.

Protocol: https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from mlapp.serve.asgi import JSON, dumps
from mlapp.serve.batching import Job
from mlapp.serve.errors import BadRequest, TooLarge, UnsupportedMediaType
from mlapp.serve.model import Ask, InputSlot, Model
from mlapp.serve.multipart import parse_params
from mlapp.serve.tensors import Flat, binary_data, binary_size, binary_values, json_data, json_values, wire_bytes

# The binary tensor data extension (Triton's docs/protocol/extension_binary_data.md, which KServe's
# model server implements too): the request's first Inference-Header-Content-Length bytes are the JSON
# inference header, and the raw tensors follow, each input with parameters.binary_data_size, in the
# order of the request's inputs; an output is sent raw after the JSON answer when asked (its
# parameters.binary_data, or the request's binary_data_output), the answer then carrying its own
# Inference-Header-Content-Length. "This extension is identified by the name binary_tensor_data" in
# the server metadata's extensions.
BINARY_EXTENSION: Final = "binary_tensor_data"
BINARY_HEADER: Final = b"inference-header-content-length"
OCTET_STREAM: Final = b"application/octet-stream"
BINARY_HINT: Final = (
    "; raw tensors after a JSON header (the binary_tensor_data extension) need the header "
    "Inference-Header-Content-Length saying where the JSON ends"
)
MAX_LENGTH_DIGITS: Final = 19  # a byte count past any body this server accepts, before int() parses it
SERVER_METADATA: Final = {"name": "mlapp", "version": "2", "extensions": [BINARY_EXTENSION]}
PLATFORM: Final = "onnxruntime_onnx"
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
# What /infer reads as its JSON body. No Content-Type at all is read as JSON too:
# tritonclient's HTTP client sends none (tritonclient/http/_client.py posts the
# body with only Inference-Header-Content-Length), and its asyncio client's
# aiohttp labels any bytes body application/octet-stream
# (https://docs.aiohttp.org/en/stable/client_reference.html, ClientSession.request: data).
INFER_TYPES: Final = ("application/json", "application/octet-stream")

_INT_ONLY: Final = frozenset((int,))
_NO_BYTES: Final = memoryview(b"")
# The parameters each part of a request may carry (the binary tensor data extension's).
_REQUEST_PARAMETERS: Final = frozenset({"binary_data_output"})
_INPUT_PARAMETERS: Final = frozenset({"binary_data_size"})
_OUTPUT_PARAMETERS: Final = frozenset({"binary_data"})


class InferRequest(NamedTuple):
    """A v2 inference request as the server runs it: the job, the caller's id, how to answer."""

    job: Job
    request_id: Any
    asks: tuple[Ask, ...]


def check_infer_type(content_type: str) -> None:
    if not content_type or content_type == INFER_TYPES[0]:
        return  # the common cases, without parsing
    kind, _ = parse_params(content_type)
    if kind and kind not in INFER_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {kind!r} is not read here: send the inference request as {INFER_TYPES[0]}"
        )


def _loads(body: bytes, hint: str = "") -> Any:
    """``body`` as JSON, or 400. With a ``hint`` (what the caller may have meant), a body that is not
    even text is said to be so, and the hint follows."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        what = "the body is not JSON text" if hint and not _is_utf8(body) else str(e)
        raise BadRequest(f"malformed JSON: {what}{hint}") from e


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def model_metadata(model: Model) -> dict[str, Any]:
    """``GET /v2/models/<name>``: the model's inputs and outputs exactly as the model states them (-1 for a
    dynamic dimension), and what its publisher recorded."""
    meta = model.metadata
    producer = meta.get("producer") if isinstance(meta.get("producer"), dict) else {}
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [spec.as_dict() for spec in model.signature.inputs],
        "outputs": [spec.as_dict() for spec in model.signature.outputs],
        "parameters": {
            "batchable": model.batchable,
            "plugin": model.plugin.describe() if model.plugin is not None else None,
            "labels": model.labels,
            "metrics": meta.get("metrics"),
            "gate": meta.get("gate"),
            "created_at": meta.get("created_at"),
            **(producer or {}),
        },
    }


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


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{what} must be true or false, got {value!r}")
    return value


def job_key(model: Model, shapes: tuple[tuple[int, ...], ...], outputs: tuple[str, ...]) -> Any:
    """What jobs must share to share a run (``batching.Job.key``): the outputs asked and, where an input's
    dimensions after the first are not all fixed, every input's; None when the model runs jobs alone."""
    if not model.batchable:
        return None
    if model.fixed_tails:
        return outputs
    return (outputs, tuple(shape[1:] for shape in shapes))


def parse_infer(body: bytes, model: Model, max_rows: int, header_value: str = "") -> InferRequest:
    """A v2 inference request: all JSON, or (``header_value``: its Inference-Header-Content-Length) a JSON
    header followed by binary tensors."""
    header_length = json_header_length(header_value, len(body)) if header_value else None
    if header_length is None:
        head, binary = body, _NO_BYTES
    else:
        head, binary = body[:header_length], memoryview(body)[header_length:]
    request = _loads(head, BINARY_HINT if header_length is None else "")
    if not isinstance(request, dict):
        raise BadRequest("the request must be a JSON object with 'inputs'")
    parameters = request.get("parameters")
    if parameters is not None:
        parameters = _refuse_unsupported(parameters, "request", _REQUEST_PARAMETERS)
    # JSON's true and false are these bytes wherever they occur; without them no value is a bool.
    bools = b"true" in head or b"false" in head
    feeds, shapes = _inputs(request.get("inputs"), model, max_rows, binary, bools)
    binary_output = parameters.get("binary_data_output") if parameters else None
    outputs, asks = _outputs(request.get("outputs"), binary_output, model)
    return InferRequest(Job(feeds, shapes, outputs, job_key(model, shapes, outputs)), request.get("id"), asks)


def _inputs(
    inputs: Any, model: Model, max_rows: int, binary: memoryview, bools: bool
) -> tuple[tuple[Flat, ...], tuple[tuple[int, ...], ...]]:
    """Every input's values, flat, and its shape, in the model's order; each checked against the signature."""
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    slots = model.inputs
    if len(inputs) == 1 and len(slots) == 1:  # the common case, without the bookkeeping of several
        values, shape, used = _tensor(inputs[0], model, binary, 0, bools)
        if used != len(binary):
            raise BadRequest(_unused(len(binary), used))
        if model.shared_dims:
            _check_shared_dims(model, [shape])
        if model.batchable and not 0 < shape[0] <= max_rows:
            _check_rows(shape[0], max_rows)
        return (values,), (shape,)
    feeds: list[Flat | None] = [None] * len(slots)
    shapes: list[tuple[int, ...]] = [()] * len(slots)
    offset = 0
    for tensor in inputs:
        values, shape, used = _tensor(tensor, model, binary, offset, bools)
        index = model.inputs[tensor["name"]].index
        if feeds[index] is not None:
            raise BadRequest(f"input {tensor['name']!r} is given twice")
        feeds[index], shapes[index] = values, shape
        offset += used
    missing = [spec.name for spec, values in zip(model.signature.inputs, feeds, strict=True) if values is None]
    if missing:
        takes = ", ".join(spec.describe() for spec in model.signature.inputs)
        raise BadRequest(f"missing input(s) {', '.join(map(repr, missing))}: the model takes {takes}")
    if offset != len(binary):
        raise BadRequest(_unused(len(binary), offset))
    _check_shared_dims(model, shapes)
    if model.batchable:
        rows = {shape[0] for shape in shapes}
        if len(rows) > 1:
            raise BadRequest(f"the inputs' first dimensions differ ({sorted(rows)}): it is the batch, one size for all")
        _check_rows(shapes[0][0], max_rows)
    return tuple(f for f in feeds if f is not None), tuple(shapes)


def _unused(sent: int, used: int) -> str:
    if used == 0:
        return f"{sent} bytes follow the JSON header but no input declares parameters.binary_data_size"
    return f"{sent} bytes follow the JSON header but the inputs declare {used} (parameters.binary_data_size)"


def _check_rows(rows: int, max_rows: int) -> None:
    if rows < 1:
        raise BadRequest("the batch dimension (the first) must be at least 1")
    if rows > max_rows:
        raise TooLarge(f"at most {max_rows} rows per request")


def _check_shared_dims(model: Model, shapes: list[tuple[int, ...]]) -> None:
    """Dynamic dimensions the graph names alike hold one size across the inputs (a sequence length, say)."""
    seen: dict[str, tuple[int, str]] = {}
    for spec, shape in zip(model.signature.inputs, shapes, strict=True):
        for dim, size in zip(spec.dims, shape, strict=True):
            if isinstance(dim, str):
                first = seen.setdefault(dim, (size, spec.name))
                if first[0] != size and first[1] == spec.name:  # one input, [n, n]
                    raise BadRequest(
                        f"input {spec.name!r} has {first[0]} and {size} for the model's dimension {dim!r}: "
                        "the model takes one size there"
                    )
                if first[0] != size:
                    raise BadRequest(
                        f"input {spec.name!r} has {size} for the model's dimension {dim!r}, but input {first[1]!r} "
                        f"has {first[0]}: the model takes one size there"
                    )


def _tensor(
    tensor: Any, model: Model, binary: memoryview, offset: int, bools: bool
) -> tuple[Flat, tuple[int, ...], int]:
    """One input tensor's values, shape and the raw bytes it used, checked against its place in the signature."""
    if not isinstance(tensor, dict):
        raise BadRequest("each input must be an object with name, shape, datatype and data")
    name = tensor.get("name")
    slot = model.inputs.get(name) if isinstance(name, str) else None
    if slot is None:
        takes = ", ".join(spec.describe() for spec in model.signature.inputs)
        raise BadRequest(f"unknown input {name!r}; the model takes {takes}")
    spec = slot.spec
    if "shape" not in tensor or "datatype" not in tensor:
        raise BadRequest(f"input {name!r} is missing {'shape' if 'shape' not in tensor else 'datatype'!r}")
    if tensor["datatype"] != spec.datatype:
        raise BadRequest(f"input {name!r} is sent as {tensor['datatype']!r}, but the model takes {spec.describe()}")
    shape = _shape(tensor["shape"], slot)
    count = math.prod(shape)
    # A request's own parameters are looked at in full (and named in a message) only when they are not
    # exactly what the extension allows: the message's f-string alone costs what the common check does.
    parameters = tensor.get("parameters")
    if parameters is not None and (type(parameters) is not dict or not parameters.keys() <= _INPUT_PARAMETERS):
        parameters = _refuse_unsupported(parameters, f"input {name!r}", _INPUT_PARAMETERS)
    if parameters and "binary_data_size" in parameters:
        raw = _raw(tensor, slot, parameters["binary_data_size"], binary[offset:], count)
        try:
            return binary_values(spec, raw, count), shape, len(raw)
        except BadRequest as e:
            raise BadRequest(f"input {name!r}: {e}") from None
    if "data" not in tensor:
        raise BadRequest(f"input {name!r} is missing 'data' (or parameters.binary_data_size for raw bytes)")
    data = tensor["data"]
    if not isinstance(data, list):
        raise BadRequest(f"input {name!r}: data must be a list of values")
    try:
        values = json_values(spec, data, bools)
    except BadRequest as e:
        raise BadRequest(f"input {name!r}: {e}") from None
    if len(values) != count:
        raise BadRequest(f"input {name!r} holds {len(values)} values but its shape {list(shape)} needs {count}")
    return values, shape, 0


def _shape(shape: Any, slot: InputSlot) -> tuple[int, ...]:
    """``shape`` if it fits the input: whole numbers (not bools, not 8.0), at least 0, its rank, its fixed sizes."""
    tail = slot.tail
    # Fixed dimensions after the first: one list comparison proves the rank and those sizes, and
    # shape[0] exists. The int check comes before the comparison with 0 (and refuses True, an int).
    if tail is not None:
        if (
            isinstance(shape, list)
            and shape[1:] == tail
            and len(shape) == len(tail) + 1
            and set(map(type, shape)) <= _INT_ONLY
            and shape[0] >= 0
            and (slot.first is None or shape[0] == slot.first)
        ):
            return tuple(shape)
    elif (
        isinstance(shape, list)
        and len(shape) == slot.spec.rank
        and set(map(type, shape)) <= _INT_ONLY
        and all(s >= 0 and (not isinstance(d, int) or s == d) for s, d in zip(shape, slot.spec.dims, strict=True))
    ):
        return tuple(shape)
    raise BadRequest(
        f"input {slot.spec.name!r} has shape {shape!r}, which does not fit the model's {slot.spec.describe()}: "
        f"{slot.spec.rank} whole numbers, each fixed one as given (-1 means any size)"
    )


def _raw(tensor: dict[str, Any], slot: InputSlot, declared: Any, rest: memoryview, count: int) -> memoryview:
    """An input's raw bytes from ``rest`` (what follows the JSON header and the inputs before it): its declared
    size must be what its shape needs, and there."""
    name = slot.spec.name
    if "data" in tensor:
        raise BadRequest(f"input {name!r} has parameters.binary_data_size, so it carries no 'data'")
    if not isinstance(declared, int) or isinstance(declared, bool) or declared < 0:
        raise BadRequest(f"input {name!r}: parameters.binary_data_size must be a byte count, got {declared!r}")
    needed = binary_size(slot.spec, count)
    if needed is not None and declared != needed:
        size = slot.spec.dtype.itemsize
        raise BadRequest(
            f"input {name!r}: binary_data_size is {declared} bytes but its shape needs {needed} "
            f"({slot.spec.datatype}, {size} byte{'s' if size > 1 else ''} each)"
        )
    if declared > len(rest):
        raise BadRequest(
            f"input {name!r}: binary_data_size declares {declared} bytes but {len(rest)} follow for it after the "
            "JSON header"
        )
    return rest[:declared]


def _outputs(outputs: Any, binary_data_output: Any, model: Model) -> tuple[tuple[str, ...], tuple[Ask, ...]]:
    """The outputs to compute (in the signature's order) and to answer (in the request's, raw or JSON)."""
    default = False if binary_data_output is None else _flag(binary_data_output, "binary_data_output")
    if outputs is None:
        return model.all_outputs, model.every_output[default]
    if not isinstance(outputs, list) or not outputs:
        raise BadRequest("'outputs' must be a non-empty list of objects naming an output")
    asked: dict[str, bool] = {}
    for output in outputs:
        name = output.get("name") if isinstance(output, dict) else None
        if not isinstance(name, str) or name not in model.outputs:
            gives = ", ".join(spec.describe() for spec in model.signature.outputs)
            raise BadRequest(f"unknown output {name!r}; the model gives {gives}")
        if name in asked:
            raise BadRequest(f"output {name!r} is asked for twice")
        parameters = _refuse_unsupported(output.get("parameters"), f"output {name!r}", _OUTPUT_PARAMETERS)
        binary = default
        if "binary_data" in parameters:
            binary = _flag(parameters["binary_data"], f"output {name!r} parameter binary_data")
        asked[name] = binary
    names = tuple(name for name in model.all_outputs if name in asked)
    return names, tuple(
        Ask(name, names.index(name), binary, model.outputs[name].datatype) for name, binary in asked.items()
    )


def infer_answer(
    model: Model, results: list[npt.NDArray[Any]], request: InferRequest, max_bytes: int
) -> tuple[bytes, bytes, int | None]:
    """The answer's body, its content type, and (some output raw) the length of its JSON header.

    TooLarge when the outputs asked would make an answer over ``max_bytes``: a model's outputs can
    be far larger than its inputs, and the server holds the answer whole."""
    size = 0
    entries: list[dict[str, Any]] = []
    raws: list[bytes] = []
    for ask in request.asks:
        values = results[ask.position]
        datatype = ask.datatype
        size += wire_bytes(values, datatype, ask.binary)
        if size > max_bytes:  # before a raw copy is made, or the JSON text
            raise TooLarge(
                f"the answer would hold about {size} bytes of outputs or more, over the server's limit of "
                f"{max_bytes}: send fewer rows, ask for fewer outputs ('outputs'), or ask for them raw "
                "(parameters.binary_data, several times smaller than JSON numbers)"
            )
        entry: dict[str, Any] = {"name": ask.name, "datatype": datatype, "shape": list(values.shape)}
        if ask.binary:
            raw = binary_data(values, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            raws.append(raw)
        else:
            entry["data"] = json_data(values, datatype)
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": entries}
    # The protocol's id is a string; anything else the caller sent is not echoed.
    if isinstance(request.request_id, str):
        answer["id"] = request.request_id
    head = dumps(answer)
    if not raws:
        return head, JSON, None
    return head + b"".join(raws), OCTET_STREAM, len(head)


def plugin_job(model: Model, rows: npt.NDArray[np.float32], output: str) -> Job:
    """A plug-in's rows (of the model's one FP32 input) as a job asking for one output: its values in an
    array('f'), as every FP32 job's, so that it shares a run with the protocol's requests."""
    feed = array("f")
    feed.frombytes(np.ascontiguousarray(rows, dtype=np.float32).tobytes())
    shapes = (tuple(int(d) for d in rows.shape),)
    outputs = (output,)
    return Job((feed,), shapes, outputs, job_key(model, shapes, outputs))
