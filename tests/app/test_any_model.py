"""Models nobody on this project wrote, published with ``mlapp.publish`` and served: any datatype, several
inputs, named dimensions, batching or not, plug-in or none.

The models are the synthetic ones of ``models.py``, standing in for what teams bring. Every answer is
compared with a direct ONNX Runtime run of the same graph on the same values; every refusal's message
is read for the input it names, what was sent and what the model takes. Most of the protocol is
exercised in-process (``protocol.parse_infer`` -> ``Model.run`` -> ``protocol.infer_answer``, as the
handler chains them, with NVIDIA's tritonclient building the requests and reading the answers); the
rest against real ``python -m mlapp.serve`` processes on loopback, one per model, started once for the
module.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from onnx import helper
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.http.auth import BasicAuth

from mlapp.publish import publish
from mlapp.serve import protocol
from mlapp.serve.batching import Batcher
from mlapp.serve.errors import HTTPError, status_of
from mlapp.serve.model import Model, ModelFailed
from mlapp.signature import NUMPY

from . import models
from .helpers import PASSWORD, USER, Server

AUTH = (USER, PASSWORD)
VERSION = "1"
HEADER = "Inference-Header-Content-Length"
DATATYPES = tuple(models.ELEMENT_TYPES)
# The server's defaults (settings.py, handlers.py): 64 rows a run, 16 runs' worth a request.
MAX_ROWS = 64 * 16
MAX_ANSWER_BYTES = 64 << 20
# The masked-mean server's answer limit, low enough for a few hundred rows of JSON to pass it.
SMALL_ANSWER_BYTES = 4096
# Concurrent callers of a burst, and bursts per test: enough that a batchable model's runs are shared.
CALLERS = 16
ROUNDS = 4

# Six values of each datatype, shaped [2, 3], with the edges of each range.
SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True, False, False],
    "UINT8": [0, 255, 1, 128, 7, 200],
    "UINT16": [0, 65535, 1, 300, 40000, 9],
    "UINT32": [0, 2**32 - 1, 1, 70000, 3, 2**31],
    "UINT64": [0, 2**64 - 1, 2**63, 1, 5, 2**40],
    "INT8": [-128, 127, 0, -1, 1, 64],
    "INT16": [-32768, 32767, 0, -1, 1, 1000],
    "INT32": [-(2**31), 2**31 - 1, 0, -1, 1, 123456],
    "INT64": [-(2**63), 2**63 - 1, 0, -1, 1, 2**40],
    "FP16": [65504.0, -65504.0, 0.5, -6e-08, 1 / 3, -0.0],
    "FP32": [3.4028235e38, -1.4e-45, 0.1, -0.0, 1 / 3, 1e-38],
    "FP64": [1.7976931348623157e308, -5e-324, 0.1, -0.0, 1 / 3, 2.0**-1022],
    "BYTES": ["", "plain", "héllo wörld", "日本語", "emoji \U0001f600", "tab\tand\nnewline"],
}


def sample(datatype: str) -> npt.NDArray[Any]:
    return np.array(SAMPLES[datatype], dtype=NUMPY[datatype]).reshape(2, 3)


def every_datatype() -> bytes:
    """One identity per datatype, side by side: ``in_<type>`` -> ``out_<type>``, each [batch, 3]."""
    nodes = [helper.make_node("Identity", [f"in_{t.lower()}"], [f"out_{t.lower()}"]) for t in DATATYPES]
    return models.model_bytes(
        nodes,
        [models.tensor(f"in_{t.lower()}", t, ("batch", 3)) for t in DATATYPES],
        [models.tensor(f"out_{t.lower()}", t, ("batch", 3)) for t in DATATYPES],
    )


# Each model by the name it is published and served under, and whether it may be declared batchable.
PUBLISHED: dict[str, tuple[Callable[[], bytes], bool]] = {
    "two-inputs": (models.two_inputs, True),
    "masked-mean": (models.masked_mean, True),
    "detector": (models.detector, False),
    "mixes-rows": (models.mixes_rows, False),
    "every-datatype": (every_datatype, True),
}
# Besides those, run in-process only: an identity per datatype (named for it, batchable), and a BYTES
# identity whose second dimension is free, not batchable (so no bound on its first either).
ANY_LENGTH = "bytes-any-length"


@pytest.fixture(scope="module")
def graphs() -> dict[str, bytes]:
    built = {name: make() for name, (make, _) in PUBLISHED.items()}
    identities = {t: models.identity(t) for t in DATATYPES}
    return {**built, **identities, ANY_LENGTH: models.identity("BYTES", ("n", None))}


@pytest.fixture(scope="module")
def in_process(graphs: dict[str, bytes]) -> dict[str, Model]:
    """Each model as the server holds it, declared batchable where it may be."""
    batchable = {name: ok for name, (_, ok) in PUBLISHED.items()} | {ANY_LENGTH: False}
    return {name: models.served(data, batchable=batchable.get(name, True)) for name, data in graphs.items()}


@pytest.fixture(scope="module")
def direct(graphs: dict[str, bytes]) -> dict[str, ort.InferenceSession]:
    """Each model in an ONNX Runtime session of its own, no server between: what every answer must equal."""
    return {name: models.session(data) for name, data in graphs.items()}


@pytest.fixture(scope="module")
def store(graphs: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store with every model of ``PUBLISHED`` as version 1, published as a team would publish it."""
    root = tmp_path_factory.mktemp("store")
    files = tmp_path_factory.mktemp("onnx")
    for name, (_, batchable) in PUBLISHED.items():
        publish(models.write(files / f"{name}.onnx", graphs[name]), root, name, VERSION, batchable=batchable)
    return root


def serve(
    tmp_path_factory: pytest.TempPathFactory, root: Path, name: str, answer_bytes: int = MAX_ANSWER_BYTES
) -> Iterator[Server]:
    """Version 1 of model ``name`` served from ``root``, ready, until the module's tests are done."""
    srv = Server(
        tmp_path_factory.mktemp(name),
        root,
        MLAPP_MODEL_NAME=name,
        MLAPP_MODEL_VERSION=VERSION,
        MLAPP_MAX_ANSWER_BYTES=str(answer_bytes),
    )
    try:
        srv.wait_for("/v2/health/ready")
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def two_inputs_server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tmp_path_factory, store, "two-inputs")


@pytest.fixture(scope="module")
def masked_mean_server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Its answers are limited to ``SMALL_ANSWER_BYTES``."""
    yield from serve(tmp_path_factory, store, "masked-mean", answer_bytes=SMALL_ANSWER_BYTES)


@pytest.fixture(scope="module")
def detector_server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tmp_path_factory, store, "detector")


@pytest.fixture(scope="module")
def every_datatype_server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve(tmp_path_factory, store, "every-datatype")


def client(server: Server) -> Any:
    c = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    c.register_plugin(BasicAuth(USER, PASSWORD))
    return c


def infer_url(server: Server, name: str) -> str:
    return f"{server.url}/v2/models/{name}/infer"


def parse(model: Model, body: tuple[bytes, str]) -> protocol.InferRequest:
    """``body`` (its bytes and Inference-Header-Content-Length) read as the server reads it, on its defaults."""
    return protocol.parse_infer(body[0], model, MAX_ROWS, body[1])


def handle(model: Model, body: tuple[bytes, str]) -> Any:
    """What the server does with an inference body, in-process: parse, run, answer; tritonclient reads the answer."""
    request = parse(model, body)
    results = model.run(request.job.feeds, request.job.shapes, request.job.outputs)
    answer, _, json_length = protocol.infer_answer(model, results, request, MAX_ANSWER_BYTES)
    return triton.InferenceServerClient.parse_response_body(answer, header_length=json_length)


def post(server: Server, name: str, body: tuple[bytes, str]) -> httpx.Response:
    content, header = body
    return httpx.post(infer_url(server, name), auth=AUTH, content=content, headers={HEADER: header} if header else {})


def request_body(inputs: Sequence[Any], outputs: Sequence[Any] | None = None) -> tuple[bytes, str]:
    """tritonclient's body for ``inputs`` and ``outputs``, and its Inference-Header-Content-Length ("" for none)."""
    body, json_size = triton.InferenceServerClient.generate_request_body(list(inputs), outputs=outputs)
    return body, "" if json_size is None else str(json_size)


def infer_input(name: str, datatype: str, values: npt.NDArray[Any], binary: bool) -> Any:
    return triton.InferInput(name, list(values.shape), datatype).set_data_from_numpy(values, binary_data=binary)


def same(got: npt.NDArray[Any], expected: npt.NDArray[Any], what: str) -> None:
    """Equal shape, dtype and values, to the bit (an identity must not round, nor lose a -0.0)."""
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, ONNX Runtime's {expected.shape}"
    if expected.dtype == object:  # BYTES: ONNX Runtime gives str, tritonclient raw answers bytes
        texts = [v.decode("utf-8") if isinstance(v, bytes) else v for v in got.ravel().tolist()]
        assert texts == expected.ravel().tolist(), what
        return
    assert got.dtype == expected.dtype, f"{what}: {got.dtype}, ONNX Runtime's {expected.dtype}"
    assert got.tobytes() == expected.tobytes(), f"{what}: {got.ravel()} != ONNX Runtime's {expected.ravel()}"


@dataclass(frozen=True)
class Run:
    """One call of ``session.run``: the outputs asked for, and each input's shape."""

    outputs: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]


def spy_on(monkeypatch: pytest.MonkeyPatch, model: Model) -> list[Run]:
    """Every ONNX Runtime run of ``model`` from now to the test's end, recorded before it runs."""
    runs: list[Run] = []
    real = model.session.run

    def run(output_names: Sequence[str] | None, feeds: dict[str, npt.NDArray[Any]], *args: Any) -> Any:
        runs.append(Run(tuple(output_names or ()), {k: tuple(v.shape) for k, v in feeds.items()}))
        return real(output_names, feeds, *args)

    monkeypatch.setattr(model.session, "run", run)
    return runs


def batch_runs(server: Server) -> tuple[float, float]:
    """The server's ``mlapp_inference_batch_size`` histogram: how many runs it observed, and their rows in all."""
    text = httpx.get(server.metrics_url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "mlapp_inference_batch_size":
            samples = {s.name: s.value for s in family.samples}
            return samples.get(f"{family.name}_count", 0.0), samples.get(f"{family.name}_sum", 0.0)
    raise AssertionError(f"no mlapp_inference_batch_size in {server.metrics_url}/metrics")


def burst(server: Server, name: str, rounds: Sequence[Sequence[tuple[bytes, str]]]) -> list[list[httpx.Response]]:
    """Each round's bodies posted all at once, one connection each (httpx's asyncio client), round after round."""

    async def send() -> list[list[httpx.Response]]:
        width = max(len(r) for r in rounds)
        limits = httpx.Limits(max_connections=width, max_keepalive_connections=width)
        async with httpx.AsyncClient(auth=AUTH, timeout=30, limits=limits) as c:
            answers = []
            for bodies in rounds:
                posts = [
                    c.post(infer_url(server, name), content=body, headers={HEADER: header} if header else {})
                    for body, header in bodies
                ]
                answers.append(list(await asyncio.gather(*posts)))
            return answers

    return asyncio.run(send())


def read_answer(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    length = response.headers.get(HEADER)
    return triton.InferenceServerClient.parse_response_body(
        response.content, header_length=int(length) if length else None
    )


# ---------------------------------------------------------------- the two-input scorer's callers


# One caller's rows for two-inputs: its features and its token ids.
Scorer = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


def scorer_rows(seed: int, rows: int, seq: int) -> Scorer:
    """One caller's rows for two-inputs: its own features and token ids, different from every other seed's."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 4)).astype(np.float32), rng.integers(0, 10, (rows, seq), dtype=np.int64)


def scorer_body(features: npt.NDArray[np.float32], tokens: npt.NDArray[np.int64], binary: bool) -> tuple[bytes, str]:
    inputs = [infer_input("features", "FP32", features, binary), infer_input("token_ids", "INT64", tokens, binary)]
    return request_body(inputs, [triton.InferRequestedOutput(n, binary_data=binary) for n in ("scores", "best")])


def scorer_bodies(callers: Sequence[Scorer]) -> list[tuple[bytes, str]]:
    """The callers' bodies: every other one raw both ways (the binary extension), the rest JSON."""
    return [scorer_body(features, tokens, binary=i % 2 == 1) for i, (features, tokens) in enumerate(callers)]


def check_scores(
    result: Any, session: ort.InferenceSession, features: npt.NDArray[Any], tokens: npt.NDArray[Any], who: str
) -> None:
    """``result`` holds exactly these rows' scores and best class, as ONNX Runtime gives them for these rows alone."""
    scores, best = session.run(["scores", "best"], {"features": features, "token_ids": tokens})
    got = result.as_numpy("scores")
    assert got.shape == scores.shape, f"{who}: {got.shape} rows of scores for its {scores.shape}"
    # A row run among others may take another kernel path: equal up to rounding.
    np.testing.assert_allclose(got, scores, rtol=1e-6, atol=1e-6, err_msg=who)
    np.testing.assert_array_equal(result.as_numpy("best"), best, err_msg=who)


# ---------------------------------------------------------------- every datatype


@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_round_trips_through_an_identity_in_json_and_binary(
    in_process: dict[str, Model],
    direct: dict[str, ort.InferenceSession],
    datatype: str,
    *,
    binary_in: bool,
    binary_out: bool,
) -> None:
    x = sample(datatype)
    body = request_body(
        [infer_input("x", datatype, x, binary_in)], [triton.InferRequestedOutput("y", binary_data=binary_out)]
    )
    assert bool(body[1]) is binary_in, "tritonclient sends a JSON header length with raw inputs only"
    result = handle(in_process[datatype], body)
    output = result.get_output("y")
    assert (output["datatype"], output["shape"]) == (datatype, [2, 3])
    assert ("data" in output) is not binary_out, output
    same(result.as_numpy("y"), direct[datatype].run(None, {"x": x})[0], datatype)


def test_tritonclient_round_trips_every_datatype_through_a_served_model(
    every_datatype_server: Server, direct: dict[str, ort.InferenceSession]
) -> None:
    """All thirteen datatypes in one request to a real server: all raw, all JSON, then each the other way from
    its neighbour (a raw input beside a JSON one, a raw output beside a JSON one)."""
    feeds = {f"in_{t.lower()}": sample(t) for t in DATATYPES}
    expected = direct["every-datatype"].run(None, feeds)
    modes: dict[str, Callable[[int], tuple[bool, bool]]] = {
        "binary": lambda i: (True, True),
        "json": lambda i: (False, False),
        "mixed": lambda i: (i % 2 == 0, i % 2 == 1),
    }
    with client(every_datatype_server) as c:
        for mode, binary in modes.items():
            inputs = [
                infer_input(f"in_{t.lower()}", t, feeds[f"in_{t.lower()}"], binary(i)[0])
                for i, t in enumerate(DATATYPES)
            ]
            outputs = [
                triton.InferRequestedOutput(f"out_{t.lower()}", binary_data=binary(i)[1])
                for i, t in enumerate(DATATYPES)
            ]
            result = c.infer("every-datatype", inputs, outputs=outputs)
            for i, t in enumerate(DATATYPES):
                name = f"out_{t.lower()}"
                assert ("data" in result.get_output(name)) is not binary(i)[1], f"{mode} {name}"
                same(result.as_numpy(name), expected[i], f"{mode} {name}")


# ---------------------------------------------------------------- the signature, as the server reports it


# Each model's inputs and outputs as GET /v2/models/<name> must report them: -1 for every dynamic
# dimension, named in the graph (N, seq) or not (the detector's data-dependent length).
SIGNATURES: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], bool]] = {
    "two-inputs": (
        [{"name": "features", "datatype": "FP32", "shape": [-1, 4]},
         {"name": "token_ids", "datatype": "INT64", "shape": [-1, -1]}],
        [{"name": "scores", "datatype": "FP32", "shape": [-1, 3]},
         {"name": "best", "datatype": "INT64", "shape": [-1]}],
        True,
    ),
    "masked-mean": (
        [{"name": "values", "datatype": "FP64", "shape": [-1, -1]},
         {"name": "mask", "datatype": "BOOL", "shape": [-1, -1]}],
        [{"name": "mean", "datatype": "FP64", "shape": [-1]}],
        True,
    ),
    "detector": (
        [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        [{"name": "found", "datatype": "INT64", "shape": [-1]}],
        False,
    ),
}  # fmt: skip


def test_model_metadata_reports_each_signature_exactly(
    two_inputs_server: Server, masked_mean_server: Server, detector_server: Server
) -> None:
    servers = {"two-inputs": two_inputs_server, "masked-mean": masked_mean_server, "detector": detector_server}
    for name, (inputs, outputs, batchable) in SIGNATURES.items():
        server = servers[name]
        response = httpx.get(f"{server.url}/v2/models/{name}", auth=AUTH)
        assert response.status_code == 200, response.text
        meta = response.json()
        assert (meta["name"], meta["versions"], meta["platform"]) == (name, [VERSION], "onnxruntime_onnx")
        assert (meta["inputs"], meta["outputs"]) == (inputs, outputs), name
        assert meta["parameters"]["batchable"] is batchable, name
        assert meta["parameters"]["plugin"] is None, name
        with client(server) as c:
            read = c.get_model_metadata(name, VERSION)
        assert (read["inputs"], read["outputs"]) == (inputs, outputs), f"{name}, as tritonclient reads it"


# ---------------------------------------------------------------- refusals


def as_json(*inputs: dict[str, Any], **extra: Any) -> tuple[bytes, str]:
    return json.dumps({"inputs": list(inputs), **extra}).encode(), ""


def as_raw(*inputs: tuple[dict[str, Any], bytes], extra: bytes = b"") -> tuple[bytes, str]:
    """Each input's raw bytes after the JSON header, declared by its parameters.binary_data_size, then ``extra``."""
    head = json.dumps({"inputs": [{**t, "parameters": {"binary_data_size": len(raw)}} for t, raw in inputs]})
    return head.encode() + b"".join(raw for _, raw in inputs) + extra, str(len(head))


def tensor(name: str, datatype: str, shape: list[int], data: list[Any] | None = None) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, **({} if data is None else {"data": data})}


def strings(*items: bytes) -> bytes:
    """BYTES elements as the binary extension carries them: each a 4-byte little-endian length, then its bytes."""
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


FEATURES = tensor("features", "FP32", [1, 4], [0.5, -1, 2, 0.25])
TOKENS = tensor("token_ids", "INT64", [1, 3], [1, 2, 9])
RAW_FEATURES = (tensor("features", "FP32", [1, 4]), np.ones(4, "<f4").tobytes())
RAW_TOKENS = (tensor("token_ids", "INT64", [1, 3]), np.ones(3, "<i8").tobytes())
SCORER_TAKES = "'features' (FP32 [N, 4]), 'token_ids' (INT64 [N, seq])"
SCORER_GIVES = "'scores' (FP32 [N, 3]), 'best' (INT64 [N])"


@dataclass(frozen=True)
class Refusal:
    id: str
    model: str  # a key of ``in_process``; the served ones are also posted to their server
    body: tuple[bytes, str]  # the body and its Inference-Header-Content-Length
    says: tuple[str, ...]  # what the message must hold: the input, what was sent, what the model takes


REFUSALS = [
    Refusal("unknown input", "two-inputs", as_json(tensor("feature", "FP32", [1, 4], [1, 2, 3, 4]), TOKENS),
            ("unknown input 'feature'", f"the model takes {SCORER_TAKES}")),
    Refusal("missing input", "two-inputs", as_json(FEATURES),
            ("missing input(s) 'token_ids'", f"the model takes {SCORER_TAKES}")),
    Refusal("input given twice", "two-inputs", as_json(FEATURES, TOKENS, FEATURES),
            ("input 'features' is given twice",)),
    Refusal("wrong datatype", "two-inputs", as_json({**FEATURES, "datatype": "FP64"}, TOKENS),
            ("input 'features' is sent as 'FP64'", "the model takes 'features' (FP32 [N, 4])")),
    Refusal("wrong rank", "two-inputs", as_json({**FEATURES, "shape": [1, 4, 1]}, TOKENS),
            ("input 'features' has shape [1, 4, 1]", "the model's 'features' (FP32 [N, 4])")),
    Refusal("fixed dimension different", "two-inputs",
            as_json(tensor("features", "FP32", [1, 5], [1, 2, 3, 4, 5]), TOKENS),
            ("input 'features' has shape [1, 5]", "the model's 'features' (FP32 [N, 4])")),
    Refusal("named dimension different across inputs", "masked-mean",
            as_json(tensor("values", "FP64", [1, 3], [1, 2, 3]), tensor("mask", "BOOL", [1, 2], [True, False])),
            ("input 'mask' has 2 for the model's dimension 'seq'", "input 'values' has 3")),
    Refusal("value count not the shape's", "two-inputs", as_json({**FEATURES, "data": [1, 2, 3]}, TOKENS),
            ("input 'features' holds 3 values", "its shape [1, 4] needs 4")),
    Refusal("binary byte count not the shape's", "two-inputs",
            as_raw((RAW_FEATURES[0], RAW_FEATURES[1][:12]), RAW_TOKENS),
            ("input 'features'", "binary_data_size is 12 bytes", "its shape needs 16 (FP32, 4 bytes each)")),
    Refusal("bytes left after the declared inputs", "two-inputs", as_raw(RAW_FEATURES, RAW_TOKENS, extra=b"\0" * 8),
            ("48 bytes follow the JSON header", "the inputs declare 40")),
    Refusal("INT8 300", "INT8", as_json(tensor("x", "INT8", [1, 3], [1, 300, 2])),
            ("input 'x'", "INT8 data must be integers from -128 to 127", "got 300")),
    Refusal("UINT8 -1", "UINT8", as_json(tensor("x", "UINT8", [1, 3], [1, -1, 2])),
            ("input 'x'", "UINT8 data must be integers from 0 to 255", "got -1")),
    Refusal("UINT64 -1", "UINT64", as_json(tensor("x", "UINT64", [1, 3], [0, 2**64 - 1, -1])),
            ("input 'x'", "UINT64 data must be integers from 0 to 18446744073709551615", "got -1")),
    Refusal("FP16 1e5", "FP16", as_json(tensor("x", "FP16", [1, 3], [1.5, 1e5, 0])),
            ("input 'x'", "FP16's range (+-65504)", "100000")),
    Refusal("a float for INT64", "two-inputs", as_json(FEATURES, {**TOKENS, "data": [1, 2.5, 9]}),
            ("input 'token_ids'", "INT64 data must be integers only", "found float")),
    Refusal("true for FP32", "two-inputs", as_json({**FEATURES, "data": [True, 0, 0, 0]}, TOKENS),
            ("input 'features'", "numbers only (FP32)", "found bool")),
    Refusal("1 for BOOL", "BOOL", as_json(tensor("x", "BOOL", [1, 3], [True, 1, False])),
            ("input 'x'", "BOOL data must be true or false only", "found int")),
    Refusal("a number for BYTES", "BYTES", as_json(tensor("x", "BYTES", [1, 3], ["a", 2.5, "c"])),
            ("input 'x'", "BYTES data must be strings only", "found float")),
    Refusal("raw BOOL byte 2", "BOOL", as_raw((tensor("x", "BOOL", [1, 3]), bytes([1, 2, 0]))),
            ("input 'x'", "BOOL data must be bytes 0 or 1, got 2")),
    Refusal("raw BYTES not UTF-8", "BYTES", as_raw((tensor("x", "BYTES", [1, 3]), strings(b"a", b"\xff\xfe", b"c"))),
            ("input 'x'", "BYTES element 1 is not UTF-8", "0xff")),
    Refusal("raw BYTES length past the data", "BYTES",
            as_raw((tensor("x", "BYTES", [1, 3]), strings(b"a", b"b") + struct.pack("<I", 100) + b"xyz")),
            ("input 'x'", "BYTES element 2 declares 100 bytes, but 3 remain")),
    # Finding: the shape's element count sized an object array before any byte was read, so five bytes
    # declaring 2**40 elements asked numpy for 8 TiB (a 500), and 10**8 of them held 800 MB for seconds.
    Refusal("raw BYTES shape past what the bytes can hold", ANY_LENGTH,
            as_raw((tensor("x", "BYTES", [1, 2**40]), strings(b"a"))),
            ("input 'x'", "BYTES data of 5 bytes cannot hold the 1099511627776 elements its shape declares")),
    Refusal("unknown output", "two-inputs", as_json(FEATURES, TOKENS, outputs=[{"name": "worst"}]),
            ("unknown output 'worst'", f"the model gives {SCORER_GIVES}")),
    Refusal("output asked twice", "two-inputs", as_json(FEATURES, TOKENS, outputs=[{"name": "best"}, {"name": "best"}]),
            ("output 'best' is asked for twice",)),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS, ids=[r.id for r in REFUSALS])
def test_a_refused_request_says_what_is_wrong_and_never_reaches_onnx_runtime(
    in_process: dict[str, Model], monkeypatch: pytest.MonkeyPatch, case: Refusal
) -> None:
    model = in_process[case.model]
    runs = spy_on(monkeypatch, model)
    with pytest.raises(HTTPError) as refused:
        handle(model, case.body)
    assert status_of(refused.value) == 400, refused.value
    message = str(refused.value)
    for part in case.says:
        assert part in message, f"{case.id}: {message!r} does not say {part!r}"
    assert runs == [], f"{case.id}: the refused request reached ONNX Runtime"


def test_the_server_answers_each_refusal_400_with_its_message_and_runs_nothing(
    two_inputs_server: Server, masked_mean_server: Server
) -> None:
    servers = {"two-inputs": two_inputs_server, "masked-mean": masked_mean_server}
    before = {name: batch_runs(server) for name, server in servers.items()}
    cases = [case for case in REFUSALS if case.model in servers]
    assert len(cases) > len(REFUSALS) // 2
    for case in cases:
        response = post(servers[case.model], case.model, case.body)
        assert response.status_code == 400, f"{case.id}: {response.status_code} {response.text}"
        message = response.json()["error"]
        for part in case.says:
            assert part in message, f"{case.id}: {message!r} does not say {part!r}"
    assert {name: batch_runs(server) for name, server in servers.items()} == before, "a refused request was run"


# ---------------------------------------------------------------- the outputs asked for


def test_only_the_outputs_asked_for_are_computed_and_answered_in_the_order_asked(
    in_process: dict[str, Model], direct: dict[str, ort.InferenceSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = in_process["two-inputs"]
    runs = spy_on(monkeypatch, model)
    features, tokens = scorer_rows(1, rows=3, seq=4)
    inputs = [infer_input("features", "FP32", features, True), infer_input("token_ids", "INT64", tokens, False)]
    asked: list[tuple[list[str], tuple[str, ...]]] = [
        (["best"], ("best",)),
        (["best", "scores"], ("scores", "best")),  # computed in the signature's order, answered in the caller's
        ([], ("scores", "best")),  # none named: every output
    ]
    scores, best = direct["two-inputs"].run(["scores", "best"], {"features": features, "token_ids": tokens})
    for names, computed in asked:
        outputs = [triton.InferRequestedOutput(n, binary_data=n == "best") for n in names] or None
        result = handle(model, request_body(inputs, outputs))
        assert runs.pop().outputs == computed, names
        answered = [o["name"] for o in result.get_response()["outputs"]]
        assert answered == (names or ["scores", "best"]), names
        np.testing.assert_array_equal(result.as_numpy("best"), best)
        if "scores" in answered:
            np.testing.assert_array_equal(result.as_numpy("scores"), scores)
    assert runs == []


def test_a_served_model_answers_only_the_outputs_asked_raw_or_json_each(
    two_inputs_server: Server, direct: dict[str, ort.InferenceSession]
) -> None:
    features, tokens = scorer_rows(2, rows=4, seq=2)
    scores, best = direct["two-inputs"].run(["scores", "best"], {"features": features, "token_ids": tokens})
    inputs = [infer_input("features", "FP32", features, False), infer_input("token_ids", "INT64", tokens, True)]
    with client(two_inputs_server) as c:
        only_best = c.infer("two-inputs", inputs, outputs=[triton.InferRequestedOutput("best", binary_data=False)])
        mixed = c.infer(
            "two-inputs",
            inputs,
            outputs=[
                triton.InferRequestedOutput("best", binary_data=True),
                triton.InferRequestedOutput("scores", binary_data=False),
            ],
        )
    assert [o["name"] for o in only_best.get_response()["outputs"]] == ["best"]
    np.testing.assert_array_equal(only_best.as_numpy("best"), best)
    entries = mixed.get_response()["outputs"]
    assert [o["name"] for o in entries] == ["best", "scores"], "the answer keeps the order asked"
    assert entries[0]["parameters"] == {"binary_data_size": best.nbytes}
    assert "data" in entries[1]
    assert "parameters" not in entries[1]
    np.testing.assert_array_equal(mixed.as_numpy("best"), best)
    np.testing.assert_array_equal(mixed.as_numpy("scores"), scores)


# ---------------------------------------------------------------- batching across callers


def test_concurrent_callers_of_a_batchable_model_share_runs_and_each_gets_its_own_rows(
    two_inputs_server: Server, direct: dict[str, ort.InferenceSession]
) -> None:
    """``CALLERS`` at once, of 1 to 5 rows each, half of them raw: their runs are shared (fewer runs than
    requests, every row run once), and every answer is ONNX Runtime's for that caller's rows alone."""
    callers = [[scorer_rows(100 * r + i, rows=1 + i % 5, seq=3) for i in range(CALLERS)] for r in range(ROUNDS)]
    count, total = batch_runs(two_inputs_server)
    rounds = burst(two_inputs_server, "two-inputs", [scorer_bodies(round_) for round_ in callers])
    for r, (round_, answers) in enumerate(zip(callers, rounds, strict=True)):
        for i, ((features, tokens), response) in enumerate(zip(round_, answers, strict=True)):
            check_scores(read_answer(response), direct["two-inputs"], features, tokens, f"round {r} caller {i}")
    runs, rows = batch_runs(two_inputs_server)
    requests = CALLERS * ROUNDS
    assert rows - total == sum(len(f) for round_ in callers for f, _ in round_), "every row ran once"
    assert runs - count < requests, f"{requests} concurrent requests took {runs - count} runs: none was shared"


def test_concurrent_callers_of_a_model_that_is_not_batchable_each_get_a_run_of_their_own(
    detector_server: Server, direct: dict[str, ort.InferenceSession]
) -> None:
    """The detector's output length depends on its values: it is published without the declaration, so under
    the same load every run holds exactly one request, and each answer is its own."""
    rng = np.random.default_rng(5)
    callers = [[rng.standard_normal(1 + i % 5).astype(np.float32) for i in range(CALLERS)] for _ in range(ROUNDS)]
    count, total = batch_runs(detector_server)

    def body(x: npt.NDArray[np.float32], binary: bool) -> tuple[bytes, str]:
        return request_body([infer_input("x", "FP32", x, binary)], [triton.InferRequestedOutput("found", binary)])

    rounds = burst(detector_server, "detector", [[body(x, i % 2 == 0) for i, x in enumerate(r)] for r in callers])
    for round_, answers in zip(callers, rounds, strict=True):
        for x, response in zip(round_, answers, strict=True):
            same(read_answer(response).as_numpy("found"), direct["detector"].run(None, {"x": x})[0], f"x={x}")
    runs, rows = batch_runs(detector_server)
    assert runs - count == CALLERS * ROUNDS, "a run held more than one request"
    assert rows - total == sum(len(x) for round_ in callers for x in round_)


def test_callers_of_different_sequence_lengths_at_once_each_get_their_own_answer(
    two_inputs_server: Server, direct: dict[str, ort.InferenceSession]
) -> None:
    """Only jobs of one ``seq`` can share a run: mixed in flight, each still gets its own answer."""
    callers = [scorer_rows(200 + i, rows=1 + i % 5, seq=1 + i % 3) for i in range(CALLERS)]
    (answers,) = burst(two_inputs_server, "two-inputs", [scorer_bodies(callers)])
    for i, ((features, tokens), response) in enumerate(zip(callers, answers, strict=True)):
        check_scores(
            read_answer(response), direct["two-inputs"], features, tokens, f"caller {i}, seq {tokens.shape[1]}"
        )


# ---------------------------------------------------------------- a model that fails on a caller's input


def test_a_shared_run_that_fails_is_run_again_job_by_job_so_only_the_caller_at_fault_fails(
    in_process: dict[str, Model], direct: dict[str, ort.InferenceSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process, through the Batcher: four jobs of seq 2 queued in one loop turn share a run, which fails on
    caller 2's token 99 (past the 10-token embedding); each is run again alone. The two jobs of seq 3 behind
    them share a run of their own."""
    model = in_process["two-inputs"]
    callers = [scorer_rows(300 + i, rows=1 + i % 3, seq=2 + i // 4) for i in range(6)]
    callers[2][1][0, 1] = 99
    jobs = [parse(model, body).job for body in scorer_bodies(callers)]
    runs = spy_on(monkeypatch, model)

    async def run_all() -> list[Any]:
        batcher = Batcher(model, max_batch=64)
        try:
            return await asyncio.gather(*(batcher.infer(job) for job in jobs), return_exceptions=True)
        finally:
            await batcher.close()

    answers = asyncio.run(run_all())
    rows = [len(f) for f, _ in callers]
    assert [run.shapes["features"][0] for run in runs] == [sum(rows[:4]), *rows[:4], sum(rows[4:])]
    assert [run.shapes["token_ids"][1] for run in runs] == [2, 2, 2, 2, 2, 3], "jobs of another seq shared a run"
    for i, ((features, tokens), answer) in enumerate(zip(callers, answers, strict=True)):
        if i == 2:
            assert isinstance(answer, ModelFailed), answer
            assert "the model could not run on this input" in str(answer)
            assert "idx=99" in str(answer), answer
            continue
        assert not isinstance(answer, BaseException), f"caller {i}: {answer}"
        scores, best = direct["two-inputs"].run(["scores", "best"], {"features": features, "token_ids": tokens})
        np.testing.assert_allclose(answer[0], scores, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(answer[1], best)


def test_a_caller_whose_input_the_model_cannot_run_gets_400_naming_onnx_runtimes_complaint_alone(
    two_inputs_server: Server, direct: dict[str, ort.InferenceSession]
) -> None:
    callers = [[scorer_rows(400 + 20 * r + i, rows=1 + i % 4, seq=2) for i in range(CALLERS)] for r in range(ROUNDS)]
    for round_ in callers:
        round_[5][1][0, 0] = 99
    rounds = burst(two_inputs_server, "two-inputs", [scorer_bodies(round_) for round_ in callers])
    for r, (round_, answers) in enumerate(zip(callers, rounds, strict=True)):
        for i, ((features, tokens), response) in enumerate(zip(round_, answers, strict=True)):
            if i == 5:
                assert response.status_code == 400, response.text
                message = response.json()["error"]
                assert "the model could not run on this input" in message
                assert "Gather" in message
                assert "idx=99" in message
                continue
            check_scores(read_answer(response), direct["two-inputs"], features, tokens, f"round {r} caller {i}")


# ---------------------------------------------------------------- plug-ins, limits, and what keeps a server not ready


def test_predict_on_a_model_without_a_plug_in_is_404_pointing_at_the_protocol(two_inputs_server: Server) -> None:
    response = httpx.post(two_inputs_server.url + "/predict", auth=AUTH, json={"pixels": [[0.0]]})
    assert response.status_code == 404
    message = response.json()["error"]
    assert "model 'two-inputs' declares none" in message
    assert "POST /v2/models/two-inputs/infer" in message


def mean_body(values: npt.NDArray[np.float64], mask: npt.NDArray[np.bool_], binary_out: bool) -> tuple[bytes, str]:
    inputs = [infer_input("values", "FP64", values, True), infer_input("mask", "BOOL", mask, True)]
    return request_body(inputs, [triton.InferRequestedOutput("mean", binary_data=binary_out)])


def test_an_answer_over_the_servers_limit_is_413_naming_it_and_the_way_out(
    masked_mean_server: Server, direct: dict[str, ort.InferenceSession]
) -> None:
    """200 rows of one FP64 output in JSON are over ``SMALL_ANSWER_BYTES``; the same rows in two requests, or
    answered raw, are under it."""
    rng = np.random.default_rng(6)
    values = rng.standard_normal((200, 3))
    mask = np.ones((200, 3), dtype=np.bool_)
    mask[:, 0] = rng.integers(0, 2, 200).astype(np.bool_)
    expected = direct["masked-mean"].run(None, {"values": values, "mask": mask})[0]
    over = post(masked_mean_server, "masked-mean", mean_body(values, mask, binary_out=False))
    assert over.status_code == 413, over.text
    message = over.json()["error"]
    assert f"over the server's limit of {SMALL_ANSWER_BYTES}" in message
    assert "send fewer rows" in message
    assert "'outputs'" in message
    halves = []
    for rows in (slice(0, 100), slice(100, 200)):
        half = post(masked_mean_server, "masked-mean", mean_body(values[rows], mask[rows], binary_out=False))
        halves.append(read_answer(half).as_numpy("mean"))
    same(np.concatenate(halves), expected, "the same rows in two requests")
    raw = post(masked_mean_server, "masked-mean", mean_body(values, mask, binary_out=True))
    same(read_answer(raw).as_numpy("mean"), expected, "the same request, answered raw")


# (the model published, what is written into a copy of its metadata, what the log must say)
MISDECLARED = [
    ("two-inputs", {"plugin": {"name": "image-classifier", "input": "features", "output": "scores"}},
     ("the model's plug-in does not fit", "image-classifier", "the model takes 2 inputs")),
    # Finding: the server checked a batchable declaration against the graph only, which the detector's
    # unnamed output dimension passes; a shared run then split its indices across callers wrongly.
    ("detector", {"batchable": True}, ("declared batchable", "output 'found'", "row(s)")),
    ("mixes-rows", {"batchable": True}, ("declared batchable", "output 'y'", "changes when another row is run")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "edit", "says"), MISDECLARED, ids=["plug-in", "batchable-detector", "batchable-mixes-rows"]
)
def test_metadata_the_model_does_not_fit_keeps_the_server_not_ready_saying_why(
    store: Path, tmp_path: Path, name: str, edit: dict[str, Any], says: tuple[str, ...]
) -> None:
    """A version's metadata.json edited by hand (the model file and its checksum untouched): the server loads
    the model, refuses what the metadata declares, and stays not ready with a log line saying why."""
    root = tmp_path / "store"
    version = root / name / VERSION
    shutil.copytree(store / name / VERSION, version)
    metadata = version / "metadata.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text(encoding="utf-8")), **edit}), encoding="utf-8")
    server = Server(tmp_path, root, MLAPP_MODEL_NAME=name, MLAPP_MODEL_VERSION=VERSION)
    try:
        server.wait_for_log("cannot load the model")
        line = next(line for line in server.log.splitlines() if "cannot load the model" in line)
        for part in says:
            assert part in line, f"{line!r} does not say {part!r}"
        server.wait_for("/v2/health/ready", status=503)
        refused = httpx.post(infer_url(server, name), auth=AUTH, json={"inputs": []})
        assert refused.status_code == 503, refused.text
        assert "not loaded yet" in refused.json()["error"]
    finally:
        server.stop()


def test_one_input_using_a_named_dimension_twice_must_give_it_one_size() -> None:
    """A square input, [n, n]: the single-input path checks the repeated name as the several-input path does."""
    model = models.served(models.identity("FP32", ("n", "n")), batchable=False)
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [0.0] * 6}]})
    with pytest.raises(
        HTTPError, match="input 'x' has 2 and 3 for the model's dimension 'n': the model takes one size there"
    ):
        protocol.parse_infer(body.encode(), model, 16)
    square = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [0.0] * 4}]})
    assert protocol.parse_infer(square.encode(), model, 16).job.shapes == ((2, 2),)


def test_a_bytes_answer_is_bounded_by_its_utf8_bytes_not_its_characters() -> None:
    """Four-byte characters, each escaped at most six characters a byte in JSON: the bound counts bytes."""
    from mlapp.serve.tensors import wire_bytes

    values = np.array(["\U0001f600" * 10, "\x01"], dtype=object)
    assert wire_bytes(values, "BYTES", True) == 40 + 1 + 2 * 4
    assert wire_bytes(values, "BYTES", False) >= len(json.dumps(values.tolist()))
