"""The ASGI application: its lifespan, the model loading behind the open socket, and the one request path.

Every request walks the same short path: match a route, admit it (auth, model
name), run its handler, answer, count it. Any exception on that path is turned
into an answer here, by ``errors.STATUS``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from typing import Final

from mlapp import store
from mlapp.serve import errors, routes
from mlapp.serve.asgi import JSON, Receive, Scope, Send, dumps
from mlapp.serve.auth import BasicAuth, FailedLogins
from mlapp.serve.batching import Batcher
from mlapp.serve.handlers import Endpoints
from mlapp.serve.logs import AccessLog
from mlapp.serve.metrics import (
    BATCH_QUEUE,
    EXECUTION_PROVIDER,
    IN_FLIGHT,
    IN_FLIGHT_SECONDS,
    MODEL_INFO,
    READY,
    RequestMetrics,
)
from mlapp.serve.model import (
    ModelDamaged,
    ModelNotThere,
    ProviderUnavailable,
    load_model,
    prepare_execution_provider,
)
from mlapp.settings import Settings

# The logger's name is part of every line's shape (its "logger" field).
log = logging.getLogger("mlapp.serve")

RETRY_SECONDS: Final = 0.5
MAX_RETRY_SECONDS: Final = 10.0
INTERNAL_ERROR: Final = dumps({"error": errors.INTERNAL_MESSAGE})


# Container allocations between two young-generation collections (CPython's default is 700).
# A request allocates a few dozen containers (its parsed JSON, scope, messages) that reference
# counting frees on its own; at the default a collection would run every ~20 requests (the gain of
# the higher threshold: BENCHMARKS.md, "Serving").
GC_YOUNG_THRESHOLD: Final = 20_000


def settle_heap() -> None:
    """Once the model is loaded: keep what exists now out of every later garbage collection.

    ``gc.freeze()`` moves every object the collector tracks (the ONNX Runtime session's Python
    side, numpy, prometheus_client's registry, the imported modules) to a permanent generation
    that collections no longer traverse, so a full collection under load walks the requests'
    objects only, not the whole heap: https://docs.python.org/3.11/library/gc.html#gc.freeze .
    Cyclic garbage is still collected, just less often (``GC_YOUNG_THRESHOLD``).
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


class App:
    """The ASGI application of the public port; ``internal`` is the internal port's. One per process."""

    def __init__(self, settings: Settings, labels: list[str] | None) -> None:
        self.settings = settings
        self.labels = labels
        self.endpoints = Endpoints(settings)
        self.routes = routes.table(self.endpoints)
        self.router = routes.Router(
            self.routes,
            BasicAuth(settings.username, settings.password, FailedLogins(burst=settings.failed_login_burst)),
            settings.model_name,
            settings.model_version,
        )
        self.internal_router = routes.Router(
            routes.internal_table(self.endpoints),
            self.router.auth,
            settings.model_name,
            settings.model_version,
        )
        self.metrics = RequestMetrics()
        # The load gauges read this app's counts at scrape time (the last App made in a process wins).
        endpoints = self.endpoints
        IN_FLIGHT.read = lambda: endpoints.in_flight.level
        IN_FLIGHT_SECONDS.read = endpoints.in_flight.integral
        BATCH_QUEUE.read = endpoints.waiting
        self.access = AccessLog() if settings.log_level_number <= logging.INFO else None
        self._loader: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(self.router, scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def internal(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The internal port: /metrics and the health endpoints, nothing else."""
        if scope["type"] == "http":
            await self._http(self.internal_router, scope, receive, send)

    async def startup(self) -> None:
        """Start loading the model behind the open socket: liveness answers while readiness waits.

        The execution provider is prepared first, on this thread and before the access log starts, as
        ``prepare_execution_provider`` captures stdout for a moment; a provider that cannot run here leaves
        the server up and never ready, and no model is loaded.
        """
        try:
            prepare_execution_provider(self.settings.execution_provider)
        except ProviderUnavailable as e:
            self._cannot_serve(e)
        else:
            self._loader = asyncio.get_running_loop().create_task(self._load_forever())
        if self.access is not None:
            self.access.start()

    async def shutdown(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
        if self.endpoints.batcher is not None:
            await self.endpoints.batcher.close()
        self.endpoints.close()
        if self.access is not None:
            await self.access.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # For any ASGI server; ``server.serve`` calls startup and shutdown itself.
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _cannot_serve(self, error: ProviderUnavailable) -> None:
        """Once: log why, and answer readiness and the model's routes 503 with it from now on."""
        log.error("cannot serve: %s; alive, and never ready", error)
        self.endpoints.refuse(str(error))

    async def _load_forever(self) -> None:
        where = store.version_dir(self.settings.model_dir, self.settings.model_name, self.settings.model_version)
        last_error = ""
        delay = RETRY_SECONDS
        while True:
            try:
                model = await asyncio.to_thread(load_model, self.settings, self.labels)
            except ProviderUnavailable as e:
                self._cannot_serve(e)
                return
            except ModelDamaged as e:
                # Not a version still arriving (the trainer writes metadata.json
                # last): its model file was truncated or changed after publishing,
                # or copied in by hand. Each try reads and hashes the whole file.
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                if str(e) != last_error:
                    log.warning("refusing to load the model at %s: %s", where, e)
                    last_error = str(e)
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
                self.endpoints.set_model(model, Batcher(model, self.settings.max_batch))
                settle_heap()
                MODEL_INFO.labels(model.name, model.version).set(1)
                EXECUTION_PROVIDER.labels(model.session.get_providers()[0]).set(1)
                READY.set(1)
                log.info(
                    "model %s version %s loaded from %s (inputs %s; outputs %s; %s; gate %s); ready",
                    model.name,
                    model.version,
                    where,
                    ", ".join(spec.describe() for spec in model.signature.inputs),
                    ", ".join(spec.describe() for spec in model.signature.outputs),
                    "batched across callers" if model.batchable else "one request per run",
                    model.metadata.get("gate"),
                )
                return
            await asyncio.sleep(delay)

    async def _http(self, router: routes.Router, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        # Requests that match no route share one label, so no caller can grow the metrics.
        label = "other"
        headers: Sequence[errors.Header] = ()
        try:
            found = router.match(method, path)
            route = found[0]
            label = route.path
            router.admit(found, scope)
            status, body, content_type, headers = await route.handler(scope, receive)
        except Exception as e:
            content_type = JSON
            mapped = errors.status_of(e)
            if mapped is None:
                log.exception("unexpected error on %s %s", method, path)
                status, body = errors.INTERNAL_STATUS, INTERNAL_ERROR
            else:
                status, body, headers = mapped, dumps({"error": str(e)}), errors.headers_of(e)
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
        self.metrics.observe(label, method, status, elapsed)
        if self.access is not None:
            self.access.request(method, path, status, elapsed)
