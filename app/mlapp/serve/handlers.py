"""The endpoints: each turns a request the router has admitted into an answer.

``Endpoints`` holds what they share (the settings, and the model and its
batcher once loaded) and calls the plain functions of ``protocol``. Routing,
auth and the check of the model named in the path are done before any of
them runs (``routes.Router``); they never check credentials themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

import prometheus_client as prom

from mlapp import contract
from mlapp.plugins import image
from mlapp.serve import protocol
from mlapp.serve.asgi import JSON, NO_HEADERS, Answer, BodyBudget, Receive, Scope, dumps, header, held_body
from mlapp.serve.batching import Batcher
from mlapp.serve.errors import NotFound, NotReady
from mlapp.serve.metrics import Occupancy
from mlapp.serve.model import Model
from mlapp.settings import Settings

# Constant answers are serialised once, not per request.
LIVE: Final = b'{"live":true}'
READY: Final = b'{"ready":true}'
NOT_READY: Final = b'{"ready":false}'
SERVER_METADATA: Final = dumps(protocol.SERVER_METADATA)
METRICS_TYPE: Final = prom.CONTENT_TYPE_LATEST.encode()
# The clients' batches may be larger than one run's; this bounds what one request can queue.
ROWS_PER_MAX_BATCH: Final = 16
_Parsed = TypeVar("_Parsed")
# A body this large is parsed on a worker thread, so the event loop (and the probes) never wait on it.
PARSE_OFF_LOOP_BYTES: Final = 64 * 1024


class Endpoints:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded: tuple[Model, Batcher] | None = None
        self._max_rows = settings.max_batch * ROWS_PER_MAX_BATCH
        self._max_answer_bytes = settings.limits.max_answer_bytes
        # The router has already refused any other name, so the answer is fixed.
        self._model_ready = dumps({"name": settings.model_name, "ready": True})
        self._model_not_ready = dumps({"name": settings.model_name, "ready": False})
        # Why the server can never be ready here (``refuse``); None while it may still be.
        self._refused: str | None = None
        self._not_ready = NOT_READY
        self.bodies = BodyBudget(settings.limits.max_body_bytes_held)
        # Inference requests from the end of their body to their answer, and that count integrated over
        # time (``mlapp_requests_in_flight`` and ``mlapp_requests_in_flight_seconds_total``).
        self.in_flight = Occupancy()
        # Large bodies and pictures are parsed here, never on the event loop; the pool's size bounds
        # the decodes in memory at once (plugins/image.py derives the bound).
        self._parsers = ThreadPoolExecutor(image.MAX_CONCURRENT_DECODES, thread_name_prefix="parse")

    def close(self) -> None:
        self._parsers.shutdown(wait=False, cancel_futures=True)

    def set_model(self, model: Model, batcher: Batcher) -> None:
        """From now on, answer with ``model``, batched by ``batcher``."""
        self._loaded = (model, batcher)

    def refuse(self, reason: str) -> None:
        """From now on the server cannot serve (``model.ProviderUnavailable``): readiness answers 503 with
        ``reason``, and so does every request that needs the model. Liveness is untouched."""
        self._refused = reason
        self._not_ready = dumps({"ready": False, "reason": reason})

    @property
    def batcher(self) -> Batcher | None:
        return None if self._loaded is None else self._loaded[1]

    def waiting(self) -> int:
        """Requests queued for a run (``mlapp_batch_queue_requests``): none before the model is loaded."""
        return 0 if self._loaded is None else self._loaded[1].waiting

    def _require(self) -> tuple[Model, Batcher]:
        if self._loaded is None:
            if self._refused is not None:
                raise NotReady(f"the server cannot serve the model: {self._refused}")
            raise NotReady(f"the model is not loaded yet; retry when {contract.READY_PATH} is 200")
        return self._loaded

    async def live(self, scope: Scope, receive: Receive) -> Answer:
        return 200, LIVE, JSON, NO_HEADERS

    async def ready(self, scope: Scope, receive: Receive) -> Answer:
        if self._loaded is None:
            return 503, self._not_ready, JSON, NO_HEADERS
        return 200, READY, JSON, NO_HEADERS

    async def metrics(self, scope: Scope, receive: Receive) -> Answer:
        return 200, prom.generate_latest(), METRICS_TYPE, NO_HEADERS

    async def server_metadata(self, scope: Scope, receive: Receive) -> Answer:
        return 200, SERVER_METADATA, JSON, NO_HEADERS

    async def model_metadata(self, scope: Scope, receive: Receive) -> Answer:
        model, _ = self._require()
        return 200, dumps(protocol.model_metadata(model)), JSON, NO_HEADERS

    async def model_ready(self, scope: Scope, receive: Receive) -> Answer:
        if self._loaded is None:
            return 503, self._model_not_ready, JSON, NO_HEADERS
        return 200, self._model_ready, JSON, NO_HEADERS

    async def infer(self, scope: Scope, receive: Receive) -> Answer:
        model, batcher = self._require()
        protocol.check_infer_type(header(scope, b"content-type"))
        body, held = await held_body(scope, receive, self.settings.max_body_bytes, self.bodies)
        # In flight once its body has arrived: a client still sending is not yet work for this pod (and a
        # slow sender could otherwise inflate the count an autoscaler reads). Counted down when the handler
        # ends, by answer or exception; ``App`` writes the answer in the same loop turn. A caller who went
        # away is counted until its run ends, since the run still happens.
        self.in_flight.add(1)
        try:
            request = await self._parse(
                body,
                held,
                PARSE_OFF_LOOP_BYTES,
                protocol.parse_infer,
                model,
                self._max_rows,
                header(scope, protocol.BINARY_HEADER),
            )
            results = await batcher.infer(request.job)
            answer, content_type, json_length = protocol.infer_answer(model, results, request, self._max_answer_bytes)
        finally:
            self.in_flight.add(-1)
        if json_length is None:
            return 200, answer, content_type, NO_HEADERS
        return 200, answer, content_type, ((protocol.BINARY_HEADER, str(json_length).encode()),)

    async def predict(self, scope: Scope, receive: Receive) -> Answer:
        """``POST /predict``: the model's plug-in route (an image classifier's picture upload)."""
        model, batcher = self._require()
        plugin = model.plugin
        if plugin is None:
            raise NotFound(
                f"/predict is the route of a model's plug-in, and model {model.name!r} declares none "
                f"(GET /v2/models/{model.name} shows its inputs): call POST /v2/models/{model.name}/infer, "
                "the Open Inference Protocol"
            )
        content_type = header(scope, b"content-type")
        plugin.check_type(content_type)  # 415 before the body is read
        body, held = await held_body(scope, receive, self.settings.max_body_bytes, self.bodies)
        # In flight from here to the answer, whatever the way out (see ``infer``).
        self.in_flight.add(1)
        try:
            # Pictures are always decoded off the loop: a small file can still be a large decode.
            rows = await self._parse(body, held, 0, plugin.parse, content_type)
            results = await batcher.infer(protocol.plugin_job(model, rows, plugin.output))
            answer = plugin.answer(results[0][0], model.labels)
        finally:
            self.in_flight.add(-1)
        answer["model_name"], answer["model_version"] = model.name, model.version
        return 200, dumps(answer), JSON, NO_HEADERS

    async def _parse(
        self, body: bytes, held: int, on_loop_below: int, parse: Callable[..., _Parsed], *args: object
    ) -> _Parsed:
        """``parse(body, *args)``, then the ``held`` bytes of the budget given back: on the event loop for a
        body under ``on_loop_below`` bytes, else on the parsing pool."""
        try:
            if len(body) < on_loop_below:
                return parse(body, *args)
            return await asyncio.get_running_loop().run_in_executor(self._parsers, parse, body, *args)
        finally:
            self.bodies.give(held)
