"""The route table and the dispatcher, called in-process as ASGI and over HTTP on the shared server.

The auth tests iterate over the table itself: a route added to it is covered
without a line here, and is refused without credentials unless it says
``public=True``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import orjson
import pytest

from mlapp import contract
from mlapp.serve import asgi, errors, protocol, routes
from mlapp.serve.app import App
from mlapp.serve.asgi import Message, Receive, Scope
from mlapp.serve.auth import REALM, BasicAuth
from mlapp.serve.handlers import Endpoints
from mlapp.settings import Settings

from .helpers import MODEL_NAME, PASSWORD, USER, VERSION, Server

AUTH = (USER, PASSWORD)
# No model is ever loaded in-process: these tests stop before any handler needs one.
SETTINGS = Settings(model_name=MODEL_NAME, model_dir=Path("/nonexistent"), model_version=VERSION,
                    username=USER, password=PASSWORD)  # fmt: skip
TABLE = routes.table(Endpoints(SETTINGS))
PROTECTED = [r for r in TABLE if not r.public]


def basic(user: str, password: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))]


def concrete(route: routes.Route) -> str:
    """A path that reaches ``route``: its template filled with the served model."""
    return route.path.format(name=MODEL_NAME)


def other_method(route: routes.Route) -> str:
    return "POST" if route.method == "GET" else "GET"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


def call(app: App, method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Answer:
    """One request through the ASGI app, no server or socket."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def run() -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
        await app(scope, receive, send)
        return sent

    start, body = asyncio.run(run())
    return Answer(start["status"], dict(start["headers"]), body["body"])


@pytest.fixture
def app() -> App:
    return App(SETTINGS, None)


# ---------------------------------------------------------------- the table


def test_only_the_probes_are_public() -> None:
    """Making a route public is a decision this test makes visible, never a default."""
    assert {r.path for r in TABLE if r.public} == {contract.LIVE_PATH, contract.READY_PATH}


def test_metrics_are_served_on_the_internal_port_only() -> None:
    internal = routes.internal_table(Endpoints(SETTINGS))
    assert {r.path for r in internal} == {contract.LIVE_PATH, contract.READY_PATH, contract.METRICS_PATH}
    assert contract.METRICS_PATH not in {r.path for r in TABLE}


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: f"{r.method} {r.path}")
def test_every_protected_route_refuses_a_caller_without_credentials(app: App, route: routes.Route) -> None:
    for headers in ([], basic(USER, "wrong")):
        answer = call(app, route.method, concrete(route), headers)
        assert answer.status == 401, f"{route.method} {route.path} answered {answer.status}"
        assert answer.headers[b"www-authenticate"] == REALM
        assert answer.json() == {"error": "authentication required"}


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: f"{r.method} {r.path}")
def test_every_protected_route_refuses_without_credentials_over_http(server: Server, route: routes.Route) -> None:
    """The same, on the real process with the model loaded."""
    response = httpx.request(route.method, server.url + concrete(route), json={})
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "authentication required"}


@pytest.mark.parametrize("route", [r for r in TABLE if r.public], ids=lambda r: r.path)
def test_public_routes_answer_without_credentials(server: Server, route: routes.Route) -> None:
    assert httpx.request(route.method, server.url + concrete(route)).status_code == 200


@pytest.mark.parametrize("route", TABLE, ids=lambda r: f"{r.method} {r.path}")
def test_a_wrong_method_is_405_naming_the_right_one_before_auth(app: App, route: routes.Route) -> None:
    for method in (other_method(route), "PUT", "DELETE"):
        answer = call(app, method, concrete(route))
        assert answer.status == 405, f"{method} {route.path}"
        assert answer.headers[b"allow"] == route.method.encode()
        assert answer.json() == {"error": f"use {route.method} here"}


def test_head_is_answered_where_get_is(server: Server) -> None:
    for route in TABLE:
        if route.method == "GET":
            response = httpx.head(server.url + concrete(route), auth=AUTH)
            assert response.status_code == 200, route.path


@pytest.mark.parametrize(
    "path",
    ["/nope", "//", "/v2/", "/v2/models", "/v2/health", "/predict/", "/metrics/", "/v2/models/digits/explain",
     "/v2/models/digits/infer/", "/v2/models/digits/versions", "/v2/models/digits//infer",
     "/v2/models/digits/versions/t1/versions/t1", "/v2/models/digits/ready\n"],
)  # fmt: skip
def test_unknown_paths_are_404_with_or_without_credentials(app: App, path: str) -> None:
    for headers in ([], basic(USER, PASSWORD)):
        answer = call(app, "GET", path, headers)
        assert (answer.status, answer.json()) == (404, {"error": f"no such endpoint: {path}"})


def test_the_servers_address_answers_an_index_of_the_model_and_its_routes(app: App) -> None:
    """Bug: a person who opened the server's address (GET /) got a bare 404. Behind credentials like every
    route but the probes, since the index names the model: without them it is 401, with the challenge."""
    refused = call(app, "GET", "/")
    assert (refused.status, refused.headers[b"www-authenticate"]) == (401, REALM)
    assert MODEL_NAME.encode() not in refused.body
    answer = call(app, "GET", "/", basic(USER, PASSWORD))
    assert answer.status == 200
    assert answer.headers[b"content-type"] == b"application/json"
    index = answer.json()
    assert isinstance(index, dict)
    assert index["model"] == {"name": MODEL_NAME, "version": VERSION}
    assert index["docs"] == routes.PROTOCOL_DOCS
    listed = [(r["method"], r["path"], r["credentials"]) for r in index["routes"]]
    assert listed == [(r.method, concrete(r), not r.public) for r in TABLE if r.path != "/"]
    assert all(r["answers"] for r in index["routes"]), "each route says what it answers"
    assert len(answer.body) < 2048, "bounded: the table's size, whatever the request"


def test_the_index_over_http_names_the_model_it_serves(server: Server) -> None:
    response = httpx.get(server.url + "/", auth=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == {"name": MODEL_NAME, "version": VERSION}
    assert f"/v2/models/{MODEL_NAME}/infer" in [r["path"] for r in response.json()["routes"]]


@pytest.mark.parametrize(
    ("path", "extension"),
    [
        ("/v2/repository/index", "model_repository"),
        ("/v2/repository/models/digits/load", "model_repository"),
        ("/v2/models/digits/config", "model_configuration"),
        ("/v2/models/digits/versions/t1/config", "model_configuration"),
        ("/v2/models/digits/stats", "statistics"),
        ("/v2/models/digits/trace/setting", "trace"),
        ("/v2/trace/setting", "trace"),
        ("/v2/logging", "logging"),
        ("/v2/systemsharedmemory/status", "system_shared_memory"),
        ("/v2/cudasharedmemory/region/x/register", "cuda_shared_memory"),
    ],
)
def test_a_triton_extension_path_is_404_naming_the_extension(app: App, path: str, extension: str) -> None:
    for method in ("GET", "POST"):
        answer = call(app, method, path, basic(USER, PASSWORD))
        assert answer.status == 404
        assert answer.json() == {
            "error": f"no such endpoint: {path} belongs to Triton's {extension} extension, which this server does not "
            "implement; GET /v2 lists the extensions it does"
        }
        assert extension not in protocol.SERVER_METADATA["extensions"]


def test_statistics_for_every_model_is_named_too_after_the_credentials(app: App) -> None:
    assert call(app, "GET", "/v2/models/stats").status == 401  # the model check waits for credentials
    answer = call(app, "GET", "/v2/models/stats", basic(USER, PASSWORD))
    assert answer.status == 404
    message = str(orjson.loads(answer.body)["error"])
    assert message.startswith(f"unknown model 'stats'; this server serves {MODEL_NAME!r} (")
    assert "Triton's statistics extension" in message


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP"])
def test_a_compressed_body_is_415_naming_the_coding_before_it_is_read(coding: str) -> None:
    budget = asgi.BodyBudget(1024)

    async def receive() -> Message:
        raise AssertionError("the body was read")

    scope: Scope = {"headers": [(b"content-encoding", coding.encode()), (b"content-length", b"10")]}
    with pytest.raises(errors.UnsupportedMediaType, match=f"Content-Encoding '{coding}' is not supported"):
        asyncio.run(asgi.held_body(scope, receive, 100, budget))
    assert budget.held == 0


@pytest.mark.parametrize("coding", ["identity", "Identity", ""])
def test_an_identity_coding_is_read_as_it_is(coding: str) -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"x" * 10, "more_body": False}

    scope: Scope = {"headers": [(b"content-encoding", coding.encode()), (b"content-length", b"10")]}
    assert asyncio.run(asgi.held_body(scope, receive, 100, asgi.BodyBudget(1024))) == (b"x" * 10, 10)


@pytest.mark.parametrize(
    ("path", "label", "name", "version"),
    [
        ("/v2/models/digits", "/v2/models/{name}", "digits", None),
        ("/v2/models/digits/", "/v2/models/{name}", "digits", None),
        ("/v2/models/digits/ready", "/v2/models/{name}/ready", "digits", None),
        ("/v2/models/digits/versions/t1", "/v2/models/{name}", "digits", "t1"),
        ("/v2/models/digits/versions/t1/infer", "/v2/models/{name}/infer", "digits", "t1"),
        # Empty segments reach the model check, which refuses them by name.
        ("/v2/models/", "/v2/models/{name}", "", None),
        ("/v2/models/digits/versions/", "/v2/models/{name}", "digits", ""),
        # "versions/<v>" is read first, as the hand-written split before the pattern did.
        ("/v2/models/digits/versions/ready", "/v2/models/{name}", "digits", "ready"),
        (contract.LIVE_PATH, contract.LIVE_PATH, None, None),
    ],
)
def test_model_paths_match_their_route_and_carry_name_and_version(
    path: str, label: str, name: str | None, version: str | None
) -> None:
    router = routes.Router(TABLE, BasicAuth(USER, PASSWORD), MODEL_NAME, VERSION)
    method = "POST" if path.endswith("/infer") else "GET"
    route, found_name, found_version = router.match(method, path)
    assert (route.path, found_name, found_version) == (label, name, version)


def test_the_router_remembers_the_served_models_paths_only_so_no_caller_can_grow_it() -> None:
    router = routes.Router(TABLE, BasicAuth(USER, PASSWORD), MODEL_NAME, VERSION)
    known = len(router._exact)  # the exact paths, plus what match() has remembered
    actions = ["", "/", "/ready", "/infer", "/predict", "/x"]
    for i in range(5000):
        for version in ("", f"/versions/v{i}", f"/versions/{VERSION}"):
            for action in actions:
                for name in (f"m{i}", MODEL_NAME):
                    with contextlib.suppress(errors.NotFound, errors.MethodNotAllowed):
                        router.match("GET", f"/v2/models/{name}{version}{action}")
    remembered = len(router._exact) - known
    assert 0 < remembered <= 2 * len(actions), f"the router remembered {remembered} paths"
    assert router.match("POST", f"/v2/models/{MODEL_NAME}/infer")[1:] == (MODEL_NAME, None)


@pytest.mark.parametrize(
    "path",
    ["/v2/models/{name}/infer/{version}", "/v2/models/{name}//x", "/v2/things/{id}", "/v2/models/{name}x"],
)
def test_the_router_refuses_a_table_it_could_not_serve(path: str) -> None:
    async def handler(scope: Scope, receive: Receive) -> asgi.Answer:
        return 200, b"", b"", ()

    with pytest.raises(ValueError, match="path"):
        routes.Router([routes.Route("GET", path, handler)], BasicAuth(USER, PASSWORD), MODEL_NAME, VERSION)


def test_the_router_refuses_two_routes_for_one_path() -> None:
    twice = [*TABLE, TABLE[0]]
    with pytest.raises(ValueError, match="two routes"):
        routes.Router(twice, BasicAuth(USER, PASSWORD), MODEL_NAME, VERSION)


# ---------------------------------------------------------------- errors to statuses


def test_every_http_error_type_has_a_status() -> None:
    unmapped = [cls.__name__ for cls in errors.HTTPError.__subclasses__() if cls not in errors.STATUS]
    assert not unmapped, f"error types with no status in errors.STATUS: {unmapped}"


def _failing_router(error: Exception) -> routes.Router:
    async def fail(scope: Scope, receive: Receive) -> asgi.Answer:
        raise error

    return routes.Router([routes.Route("GET", "/fail", fail, public=True)], BasicAuth(USER, PASSWORD), "m", "1")


@pytest.mark.parametrize(("error_type", "status"), errors.STATUS.items(), ids=lambda v: getattr(v, "__name__", v))
def test_each_mapped_error_answers_its_status_and_message(
    app: App, monkeypatch: pytest.MonkeyPatch, error_type: type[Exception], status: int
) -> None:
    monkeypatch.setattr(app, "router", _failing_router(error_type("what the caller did wrong")))
    answer = call(app, "GET", "/fail")
    assert answer.status == status
    assert answer.headers[b"content-type"] == b"application/json"
    assert answer.json() == {"error": "what the caller did wrong"}


def test_a_subclass_answers_its_mapped_base_status(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    class ImageTooWide(errors.TooLarge):
        pass

    monkeypatch.setattr(app, "router", _failing_router(ImageTooWide("too wide")))
    assert call(app, "GET", "/fail").status == 413


def test_an_unmapped_error_is_500_logged_and_never_shown(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(app, "router", _failing_router(KeyError("/models/digits/t1/secret-path")))
    with caplog.at_level(logging.ERROR, logger="mlapp.serve"):
        answer = call(app, "GET", "/fail")
    assert (answer.status, answer.json()) == (500, {"error": "internal error"})
    assert "secret-path" not in answer.body.decode()
    assert any(r.name == "mlapp.serve" and r.exc_info and "GET /fail" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- off the event loop


def test_pictures_are_decoded_on_a_worker_thread_never_the_event_loop() -> None:
    """A decode of the largest picture allowed takes long enough to stall probes if it ran on the loop."""
    threads: list[int] = []

    class Plugin:
        output = "probabilities"

        def check_type(self, content_type: str) -> None:
            pass

        def parse(self, body: bytes, content_type: str) -> np.ndarray:
            threads.append(threading.get_ident())
            return np.zeros((1, 1, 8, 8), dtype=np.float32)

        def answer(self, scores: np.ndarray, labels: object) -> dict[str, object]:
            return {"class": 0}

    class Model:
        plugin = Plugin()
        labels: ClassVar[list[str]] = [str(i) for i in range(10)]
        name, version = MODEL_NAME, VERSION
        batchable, fixed_tails = True, True

    class Batcher:
        async def infer(self, job: object) -> list[np.ndarray]:
            return [np.full((1, 10), 0.1, dtype=np.float32)]

    endpoints = Endpoints(SETTINGS)
    endpoints.set_model(Model(), Batcher())  # type: ignore[arg-type]

    async def run() -> tuple[int, int]:
        async def receive() -> Message:
            return {"type": "http.request", "body": b"\x89PNG", "more_body": False}

        scope = {"type": "http", "headers": [(b"content-type", b"multipart/form-data; boundary=x")]}
        status, _, _, _ = await endpoints.predict(scope, receive)
        return status, threading.get_ident()

    status, loop_thread = asyncio.run(run())
    endpoints.close()
    assert status == 200
    assert threads
    assert threads[0] != loop_thread
