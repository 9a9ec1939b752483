"""The model server: ONNX Runtime behind a small hand-written ASGI app under uvicorn.

    python -m mlapp.serve        (settings from MLAPP_* variables, see settings.py)

Endpoints (Open Inference Protocol v2 REST, plus /predict for people):

    GET  /v2/health/live                 200 while the process serves (no auth)
    GET  /v2/health/ready                200 once the model is loaded, else 503 (no auth)
    GET  /metrics                        Prometheus (no auth)
    GET  /v2                             server metadata                  (basic auth)
    GET  /v2/models/{name}[/versions/v]  model metadata                   (basic auth)
    GET  /v2/models/{name}[/versions/v]/ready                             (basic auth)
    POST /v2/models/{name}[/versions/v]/infer                             (basic auth)
    POST /predict                        multipart `image` or JSON pixels (basic auth)

No framework: every request walks one short path (route, auth, parse, batch,
answer), which is what makes one worker process fast enough. Concurrent
inference requests are coalesced into one ONNX Runtime call (``Batcher``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import hmac
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import orjson
import prometheus_client as prom

from mlapp import preprocess, store
from mlapp.settings import Settings, SettingsError, from_env, read_labels

log = logging.getLogger("mlapp.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Handler = Callable[[Scope, Receive], Awaitable[tuple[int, bytes, bytes]]]

RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0
JSON = b"application/json"

REQUESTS = prom.Counter("mlapp_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = prom.Histogram(
    "mlapp_request_duration_seconds",
    "Time from request start to the end of the response",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
INFERENCE = prom.Histogram(
    "mlapp_inference_duration_seconds",
    "Time of one ONNX Runtime run (one batch)",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
BATCH = prom.Histogram(
    "mlapp_inference_batch_size",
    "Rows per ONNX Runtime run (concurrent requests are batched)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
MODEL_INFO = prom.Gauge("mlapp_model_info", "1 for the model version this server has loaded", ["name", "version"])
READY = prom.Gauge("mlapp_model_ready", "1 once the model is loaded and the server is ready")


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    session: ort.InferenceSession
    input_name: str
    output_name: str
    height: int
    width: int
    num_classes: int
    labels: list[str]
    metadata: dict[str, Any]
    preprocessing: preprocess.Preprocessing

    def run(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        start = time.perf_counter()
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        INFERENCE.observe(time.perf_counter() - start)
        BATCH.observe(len(batch))
        return np.asarray(out, dtype=np.float32)


class ModelNotThere(Exception):
    """The version directory is not (yet) complete: keep waiting quietly."""


def load_model(settings: Settings, labels: list[str] | None) -> Model:
    directory = store.version_dir(settings.model_dir, settings.model_name, settings.model_version)
    try:
        meta, model_bytes = store.read_published(directory)
    except store.NotPublished as e:
        raise ModelNotThere(str(e)) from e
    options = ort.SessionOptions()
    # One request of this model is microseconds of arithmetic: thread hand-offs
    # inside ORT would cost more than they save, and batching gives the width.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # The very bytes whose checksum was verified, not a second read of the file.
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    pre = preprocess.Preprocessing.from_metadata(meta)
    num_classes = int(meta["num_classes"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    if list(inp.shape[1:]) != [1, pre.height, pre.width]:
        raise ValueError(f"model input shape {inp.shape} disagrees with metadata.json")
    if labels is None:
        labels = [str(i) for i in range(num_classes)]
    elif len(labels) != num_classes:
        raise ValueError(f"MLAPP_LABELS_FILE has {len(labels)} labels but the model has {num_classes} classes")
    model = Model(
        name=settings.model_name,
        version=settings.model_version,
        session=session,
        input_name=inp.name,
        output_name=out.name,
        height=pre.height,
        width=pre.width,
        num_classes=num_classes,
        labels=labels,
        metadata=meta,
        preprocessing=pre,
    )
    model.run(np.zeros((1, 1, pre.height, pre.width), dtype=np.float32))  # warm-up
    return model


class Batcher:
    """Coalesces concurrent requests into one ORT run.

    No timer: while one batch runs in the worker thread (ORT releases the GIL),
    the event loop keeps parsing requests; whatever queued meanwhile is the
    next batch. A lone request therefore waits for nothing.
    """

    def __init__(self, model: Model, max_batch: int) -> None:
        self.model = model
        self.max_batch = max_batch
        self._pending: list[tuple[npt.NDArray[np.float32], asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ort")
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def infer(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        fut: asyncio.Future[npt.NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        self._pending.append((x, fut))
        self._wakeup.set()
        return await fut

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                take, rows = 0, 0
                while take < len(self._pending) and (take == 0 or rows + len(self._pending[take][0]) <= self.max_batch):
                    rows += len(self._pending[take][0])
                    take += 1
                items = self._pending[:take]
                del self._pending[:take]
                batch = items[0][0] if take == 1 else np.concatenate([x for x, _ in items])
                try:
                    out = await loop.run_in_executor(self._executor, self.model.run, batch)
                except Exception as e:
                    for _, fut in items:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                start = 0
                for x, fut in items:
                    if not fut.done():
                        fut.set_result(out[start : start + len(x)])
                    start += len(x)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._executor.shutdown(wait=True)


# --------------------------------------------------------------------------- requests


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def _parse_params(value: str) -> tuple[str, dict[str, str]]:
    head, *rest = value.split(";")
    params: dict[str, str] = {}
    for item in rest:
        key, sep, val = item.strip().partition("=")
        if sep:
            params[key.strip().lower()] = val.strip().strip('"')
    return head.strip().lower(), params


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """Fields of a multipart/form-data body (RFC 7578), name -> raw bytes."""
    _, params = _parse_params(content_type)
    boundary = params.get("boundary")
    if not boundary:
        raise HTTPError(400, "multipart/form-data without a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise HTTPError(400, "malformed multipart body (no closing boundary)")
    fields: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        head_end = chunk.find(b"\r\n\r\n")
        if not chunk.startswith(b"\r\n") or head_end < 0 or not chunk.endswith(b"\r\n"):
            raise HTTPError(400, "malformed multipart body (bad part framing)")
        name = None
        for line in chunk[2:head_end].split(b"\r\n"):
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == "content-disposition":
                name = _parse_params(value)[1].get("name")
        if name is not None:
            fields[name] = chunk[head_end + 4 : -2]
    return fields


class AccessLog:
    """One JSON line per request, in the same shape as the other log lines.

    Written in batches every ``FLUSH_SECONDS`` rather than one write(2) per
    request through ``logging``: that alone cost a third of the throughput.
    """

    FLUSH_SECONDS = 0.05

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._second = -1
        self._stamp = ""
        self._task: asyncio.Task[None] | None = None

    def request(self, method: str, path: str, status: int, elapsed: float) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        entry = {
            "time": f"{self._stamp}.{int((now - second) * 1000):03d}Z",
            "level": "INFO",
            "logger": "mlapp.access",
            "message": "request",
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
        }
        self._lines.append(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))

    def flush(self) -> None:
        if self._lines:
            data, self._lines = b"".join(self._lines), []
            stream = sys.stdout
            stream.flush()
            stream.buffer.write(data)
            stream.buffer.flush()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_SECONDS)
            self.flush()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()


class App:
    """The ASGI application. One instance per process; settings fixed at construction."""

    def __init__(self, settings: Settings, labels: list[str] | None) -> None:
        self.settings = settings
        self.labels = labels
        self.model: Model | None = None
        self.batcher: Batcher | None = None
        self._loader: asyncio.Task[None] | None = None
        self._realm = b'Basic realm="mlapp", charset="UTF-8"'
        self._user = settings.username.encode("utf-8")
        self._password = settings.password.encode("utf-8")
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._histograms: dict[str, Any] = {}
        self._model_prefix = "/v2/models/"
        self.access = AccessLog() if settings.log_level_number <= logging.INFO else None
        self._simple: dict[str, tuple[str, Handler]] = {
            "/v2/health/live": ("GET", self._live),
            "/v2/health/ready": ("GET", self._ready),
            "/metrics": ("GET", self._metrics),
            "/predict": ("POST", self._predict),
            "/v2": ("GET", self._server_metadata),
        }

    # ---- ASGI plumbing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # The socket opens right after this returns; the model loads
                # behind it, so liveness answers while readiness waits.
                self._loader = asyncio.get_running_loop().create_task(self._load_forever())
                if self.access is not None:
                    self.access.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._loader is not None:
                    self._loader.cancel()
                if self.batcher is not None:
                    await self.batcher.close()
                if self.access is not None:
                    await self.access.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _load_forever(self) -> None:
        where = store.version_dir(self.settings.model_dir, self.settings.model_name, self.settings.model_version)
        last_error = ""
        delay = RETRY_SECONDS
        while True:
            try:
                model = await asyncio.to_thread(load_model, self.settings, self.labels)
            except ModelNotThere as e:
                delay = RETRY_SECONDS
                if str(e) != last_error:
                    log.info("waiting for the model at %s: %s", where, e)
                    last_error = str(e)
            except Exception as e:
                # A broken model is retried (a copy may still be landing), but
                # backing off: each try builds a whole ORT session.
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                if str(e) != last_error:
                    log.error("cannot load the model at %s: %s", where, e)
                    last_error = str(e)
            else:
                self.batcher = Batcher(model, self.settings.max_batch)
                self.model = model
                MODEL_INFO.labels(model.name, model.version).set(1)
                READY.set(1)
                log.info(
                    "model %s version %s loaded from %s (held-out accuracy %s); ready",
                    model.name,
                    model.version,
                    where,
                    model.metadata.get("accuracy"),
                )
                return
            await asyncio.sleep(delay)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        route = "other"
        headers: list[tuple[bytes, bytes]] = []
        content_type = JSON
        try:
            route, handler = self._route(method, path)
            status, body, content_type = await handler(scope, receive)
        except HTTPError as e:
            status, body, headers = e.status, _json({"error": e.message}), e.headers
            content_type = JSON
        except Exception:
            log.exception("unexpected error on %s %s", method, path)
            status, body = 500, _json({"error": "internal error"})
            content_type = JSON
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        elapsed = time.perf_counter() - start
        self._observe(route, method, status, elapsed)
        if self.access is not None:
            self.access.request(method, path, status, elapsed)

    def _observe(self, route: str, method: str, status: int, elapsed: float) -> None:
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = REQUESTS.labels(route, method, str(status))
        counter.inc()
        hist = self._histograms.get(route)
        if hist is None:
            hist = self._histograms[route] = LATENCY.labels(route)
        hist.observe(elapsed)

    def _route(self, method: str, path: str) -> tuple[str, Handler]:
        if path.startswith(self._model_prefix):
            parts = path[len(self._model_prefix) :].split("/")
            name, rest = parts[0], parts[1:]
            version = None
            if len(rest) >= 2 and rest[0] == "versions":
                version, rest = rest[1], rest[2:]
            action = rest[0] if len(rest) == 1 else ("" if not rest else None)
            if action is not None and action in ("", "ready", "infer"):
                route = "/v2/models/{name}" + ("/" + action if action else "")
                want = "POST" if action == "infer" else "GET"
                self._check_method(method, want)

                async def model_handler(scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
                    self._authorize(scope)
                    self._check_model(name, version)
                    if action == "infer":
                        return await self._infer(scope, receive)
                    if action == "ready":
                        ready = self.model is not None
                        return (200 if ready else 503), _json({"name": name, "ready": ready}), JSON
                    return 200, _json(self._model_metadata()), JSON

                return route, model_handler
            raise HTTPError(404, f"no such endpoint: {path}")
        if path not in self._simple:
            raise HTTPError(404, f"no such endpoint: {path}")
        want, handler = self._simple[path]
        self._check_method(method, want)
        return path, handler

    @staticmethod
    def _check_method(method: str, want: str) -> None:
        if method != want and not (want == "GET" and method == "HEAD"):
            raise HTTPError(405, f"use {want} here", [(b"allow", want.encode())])

    def _authorize(self, scope: Scope) -> None:
        header = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value
                break
        scheme, _, encoded = header.partition(b" ")
        user = password = b""
        if scheme.lower() == b"basic":
            try:
                user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                user = password = b""
        # Both comparisons always run, each in constant time, so the answer's
        # timing says nothing about which part was wrong or how much matched.
        ok_user = hmac.compare_digest(user, self._user)
        ok_password = hmac.compare_digest(password, self._password)
        if not (ok_user & ok_password):
            raise HTTPError(401, "authentication required", [(b"www-authenticate", self._realm)])

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self.settings.model_name:
            raise HTTPError(404, f"unknown model {name!r}; this server serves {self.settings.model_name!r}")
        if version is not None and version != self.settings.model_version:
            raise HTTPError(
                404,
                f"unknown version {version!r} of model {name!r}; this server "
                f"serves version {self.settings.model_version!r}",
            )

    def _require_model(self) -> Model:
        if self.model is None:
            raise HTTPError(503, "the model is not loaded yet; retry when /v2/health/ready is 200")
        return self.model

    def _batcher(self) -> Batcher:
        if self.batcher is None:
            raise HTTPError(503, "the model is not loaded yet; retry when /v2/health/ready is 200")
        return self.batcher

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.settings.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    raise HTTPError(400, "bad Content-Length") from None
                if declared > limit:
                    raise HTTPError(413, f"request body over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "client went away")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    def _header(scope: Scope, name: bytes) -> str:
        for key, value in scope["headers"]:
            if key == name:
                return bytes(value).decode("latin-1")
        return ""

    # ---- handlers

    async def _live(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        return 200, b'{"live":true}', JSON

    async def _ready(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        if self.model is None:
            return 503, b'{"ready":false}', JSON
        return 200, b'{"ready":true}', JSON

    async def _metrics(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        return 200, prom.generate_latest(), prom.CONTENT_TYPE_LATEST.encode()

    async def _server_metadata(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        self._authorize(scope)
        return 200, _json({"name": "mlapp", "version": "1", "extensions": []}), JSON

    def _model_metadata(self) -> dict[str, Any]:
        model = self._require_model()
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

    def _parse_infer(self, body: bytes, model: Model) -> tuple[npt.NDArray[np.float32], Any]:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise HTTPError(400, f"malformed JSON: {e}") from None
        if not isinstance(request, dict):
            raise HTTPError(400, "the request must be a JSON object with 'inputs'")
        inputs = request.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise HTTPError(400, "'inputs' must be a non-empty list of tensors")
        if len(inputs) != 1:
            raise HTTPError(400, f"this model takes exactly one input, {model.input_name!r}")
        tensor = inputs[0]
        if not isinstance(tensor, dict):
            raise HTTPError(400, "each input must be an object with name, shape, datatype, data")
        for key in ("name", "shape", "datatype", "data"):
            if key not in tensor:
                raise HTTPError(400, f"input is missing {key!r}")
        if tensor["name"] != model.input_name:
            raise HTTPError(400, f"unknown input {tensor['name']!r}; the model's input is {model.input_name!r}")
        if tensor["datatype"] != "FP32":
            raise HTTPError(400, f"input datatype must be FP32, got {tensor['datatype']!r}")
        shape = tensor["shape"]
        want = [1, model.height, model.width]
        if (
            not isinstance(shape, list)
            or len(shape) != 4
            or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or shape[0] < 1
            or shape[1:] != want
        ):
            raise HTTPError(
                400,
                f"input shape must be [N, 1, {model.height}, {model.width}] with N >= 1, got {shape!r}",
            )
        data = tensor["data"]
        if not isinstance(data, list):
            raise HTTPError(400, "input data must be a list of numbers")
        try:
            arr = np.asarray(data, dtype=np.float32)
        except (ValueError, TypeError):
            raise HTTPError(400, "input data must be numbers (flat or nested row-major)") from None
        expected = shape[0] * model.height * model.width
        if arr.size != expected:
            raise HTTPError(400, f"input data holds {arr.size} values but shape {shape} needs {expected}")
        if shape[0] > self.settings.max_batch * 16:
            raise HTTPError(413, f"at most {self.settings.max_batch * 16} rows per request")
        outputs = request.get("outputs")
        if outputs is not None and (
            not isinstance(outputs, list)
            or not all(isinstance(o, dict) and o.get("name") == model.output_name for o in outputs)
        ):
            raise HTTPError(400, f"the only output is {model.output_name!r}")
        return arr.reshape(shape), request.get("id")

    async def _infer(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        model = self._require_model()
        body = await self._read_body(scope, receive)
        x, request_id = self._parse_infer(body, model)
        probs = await self._batcher().infer(x)
        response: dict[str, Any] = {
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
        if isinstance(request_id, str):
            response["id"] = request_id
        return 200, _json(response), JSON

    async def _predict(self, scope: Scope, receive: Receive) -> tuple[int, bytes, bytes]:
        self._authorize(scope)
        model = self._require_model()
        body = await self._read_body(scope, receive)
        content_type = self._header(scope, b"content-type")
        kind, _ = _parse_params(content_type)
        try:
            if kind == "multipart/form-data":
                fields = parse_multipart(body, content_type)
                if "image" not in fields:
                    raise HTTPError(400, "multipart form has no 'image' field")
                x = preprocess.image_bytes_to_input(fields["image"], model.preprocessing)
            elif kind == "application/json":
                try:
                    request = orjson.loads(body)
                except orjson.JSONDecodeError as e:
                    raise HTTPError(400, f"malformed JSON: {e}") from None
                if not isinstance(request, dict) or "pixels" not in request:
                    raise HTTPError(400, "JSON body must be an object with 'pixels'")
                x = preprocess.pixels_to_input(request["pixels"], model.preprocessing)
            else:
                raise HTTPError(
                    415,
                    "send multipart/form-data with an 'image' field, or application/json with 'pixels'",
                )
        except preprocess.InputError as e:
            raise HTTPError(400, str(e)) from None
        probs = (await self._batcher().infer(x))[0]
        cls = int(probs.argmax())
        return (
            200,
            _json(
                {
                    "label": model.labels[cls],
                    "class": cls,
                    "probabilities": probs,
                    "model_name": model.name,
                    "model_version": model.version,
                }
            ),
            JSON,
        )


# --------------------------------------------------------------------------- main


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


def configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stdout)
    formatter = JsonFormatter()
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main() -> int:
    try:
        settings = from_env(os.environ)
        labels = read_labels(settings.labels_file) if settings.labels_file else None
    except SettingsError as e:
        print(f"mlapp.serve: refusing to start: {e}", file=sys.stderr)
        return 1
    configure_logging(settings.log_level_number)

    import uvicorn  # noqa: PLC0415 - keeps `import mlapp.serve` light for tests and tools

    config = uvicorn.Config(
        App(settings, labels),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        access_log=False,  # one JSON line per request comes from App instead
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=25,  # under Kubernetes' default 30 s grace period
        backlog=2048,
    )
    log.info(
        "serving model %s version %s from %s on %s:%d as user %r",
        settings.model_name,
        settings.model_version,
        settings.model_dir,
        settings.host,
        settings.port,
        settings.username,
    )

    class Server(uvicorn.Server):
        # uvicorn re-raises the signal once drained, so the process would die
        # "killed by SIGTERM" (143). A drained shutdown is the success path.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                captured: list[int] = getattr(self, "_captured_signals", [])
                captured[:] = [s for s in captured if s != signal.SIGTERM]

    server = Server(config)
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
