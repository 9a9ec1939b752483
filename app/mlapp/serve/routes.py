"""The route table, and the router that enforces it.

Each ``Route`` says its method, its path, its handler and whether it is public.
Auth is the default: the router checks credentials before any handler runs on a
route not marked ``public=True``, so a new route is protected unless its author
says otherwise. Exact paths cost one dict lookup; the Open Inference Protocol's
model paths, ``/v2/models/<name>[/versions/<v>][/<action>]``, one precompiled
pattern and a dict lookup on the action.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final

from mlapp import contract
from mlapp.serve import protocol
from mlapp.serve.asgi import JSON, NO_HEADERS, Answer, Receive, Scope, dumps
from mlapp.serve.auth import BasicAuth
from mlapp.serve.errors import MethodNotAllowed, NotFound
from mlapp.serve.handlers import Endpoints

Handler = Callable[[Scope, Receive], Awaitable[Answer]]

# The one templated prefix. A route's path is also its metrics label, so all
# requests for a model share a label whatever name or version they carry.
MODEL_PATH: Final = "/v2/models/{name}"
# Segments may be empty and a trailing slash is allowed, as with the split this
# replaced: "/v2/models/digits/" is the metadata, "/v2/models/digits/versions/"
# names version "". fullmatch, since "$" would also match before a final "\n".
_MODEL_PATTERN: Final = re.compile(r"/v2/models/([^/]*)(?:/versions/([^/]*))?(?:/([^/]*))?")

# Paths of Triton's protocol extensions this server does not implement, and the extension's name as
# Triton's server metadata lists it (triton-inference-server/server docs/protocol/extension_*.md), so a
# client that calls one, as tritonclient's get_model_config or get_model_repository_index do, is told
# what is missing rather than only "no such endpoint". Only looked at once a path has no route.
TRITON_PATHS: Final = (
    ("/v2/repository", "model_repository"),
    ("/v2/systemsharedmemory", "system_shared_memory"),
    ("/v2/cudasharedmemory", "cuda_shared_memory"),
    ("/v2/trace", "trace"),
    ("/v2/logging", "logging"),
    ("/v2/models/stats", "statistics"),
)
TRITON_MODEL_ACTIONS: Final = {"config": "model_configuration", "stats": "statistics", "trace": "trace"}
_TRITON_MODEL_PATH: Final = re.compile(r"/v2/models/[^/]*(?:/versions/[^/]*)?/([^/]*)(?:/.*)?", re.DOTALL)


def not_served(path: str) -> str:
    """The 404 message for ``path``, naming the Triton extension it belongs to when it is one."""
    extension = next((e for p, e in TRITON_PATHS if path == p or path.startswith(p + "/")), None)
    if extension is None and (m := _TRITON_MODEL_PATH.fullmatch(path)):
        extension = TRITON_MODEL_ACTIONS.get(m.group(1))
    if extension is None:
        return f"no such endpoint: {path}"
    return (
        f"no such endpoint: {path} belongs to Triton's {extension} extension, which this server does not "
        "implement; GET /v2 lists the extensions it does"
    )


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # a GET route answers HEAD too
    path: str  # exact, or MODEL_PATH followed by at most one "/<action>"
    handler: Handler
    public: bool = False
    about: str = ""  # what it answers, in a few words: GET / lists it


# The route, and the model name and version a model path names (None on exact paths).
# A plain tuple: building a NamedTuple costs a Python-level call on every request.
Match = tuple[Route, str | None, str | None]


def table(endpoints: Endpoints) -> tuple[Route, ...]:
    """Every route the public port (``contract.PORT``) answers."""
    e = endpoints
    served = (
        # The kubelet's probes carry no credentials; the protocol's clients ask them too.
        Route("GET", contract.LIVE_PATH, e.live, public=True, about="liveness: 200 while the process runs"),
        Route("GET", contract.READY_PATH, e.ready, public=True, about="readiness: 200 once the model is loaded"),
        Route("GET", "/v2", e.server_metadata, about="the server's metadata and protocol extensions"),
        Route("GET", MODEL_PATH, e.model_metadata, about="the model's signature: inputs, outputs, labels, plug-in"),
        Route("GET", MODEL_PATH + "/ready", e.model_ready, about="whether the model is ready"),
        Route("POST", MODEL_PATH + "/infer", e.infer, about="inference (Open Inference Protocol)"),
        Route("POST", "/predict", e.predict, about="the model's plug-in, if it declares one (a picture to classify)"),
    )
    settings = e.settings
    return (Route("GET", "/", index(served, settings.model_name, settings.model_version)), *served)


# The REST protocol the routes keep; GET / points a person who opened the server's address at it.
PROTOCOL_DOCS: Final = (
    "https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md"
)


def index(routes: Iterable[Route], model_name: str, model_version: str) -> Handler:
    """``GET /``: what a person who opened the server's address needs: the model it serves, every route with
    its path for that model, what it answers and whether it takes credentials, and the protocol's document.

    Behind credentials like every route but the probes, since it names the model (``Router.admit``); a
    browser then asks for them. Built once, so it costs a request nothing, and its size is the table's.
    """
    body = dumps(
        {
            "server": protocol.SERVER_METADATA["name"],
            "model": {"name": model_name, "version": model_version},
            "protocol": "Open Inference Protocol (KServe v2), REST",
            "docs": PROTOCOL_DOCS,
            "routes": [
                {
                    "method": r.method,
                    "path": r.path.replace("{name}", model_name),
                    "credentials": not r.public,
                    "answers": r.about,
                }
                for r in routes
            ],
        }
    )

    async def answer(scope: Scope, receive: Receive) -> Answer:
        return 200, body, JSON, NO_HEADERS

    return answer


def internal_table(endpoints: Endpoints) -> tuple[Route, ...]:
    """The internal port (``contract.METRICS_PORT``): what scrapers and the kubelet ask, and nothing else."""
    e = endpoints
    return (
        Route("GET", contract.LIVE_PATH, e.live, public=True),
        Route("GET", contract.READY_PATH, e.ready, public=True),
        Route("GET", contract.METRICS_PATH, e.metrics, public=True),
    )


class Router:
    def __init__(self, routes: Iterable[Route], auth: BasicAuth, model_name: str, model_version: str) -> None:
        self.auth = auth
        self._model_name = model_name
        self._model_version = model_version
        # Exact paths map to a ready Match: nothing is built per request.
        self._exact: dict[str, Match] = {}
        self._actions: dict[str, Route] = {}
        for route in routes:
            if route.path.startswith(MODEL_PATH):
                action = route.path[len(MODEL_PATH) :]
                if action and (action[0] != "/" or "/" in action[1:] or "{" in action):
                    raise ValueError(f"{route.path}: a model path takes at most one '/<action>' after {MODEL_PATH}")
                if action[1:] in self._actions:
                    raise ValueError(f"{route.path}: two routes for one path")
                self._actions[action[1:]] = route
            elif "{" in route.path:
                raise ValueError(f"{route.path}: only {MODEL_PATH} paths take parameters")
            elif route.path in self._exact:
                raise ValueError(f"{route.path}: two routes for one path")
            else:
                self._exact[route.path] = (route, None, None)

    def match(self, method: str, path: str) -> Match:
        """The route for ``path``; NotFound, or MethodNotAllowed naming the method it takes."""
        found = self._exact.get(path)
        if found is None:
            m = _MODEL_PATTERN.fullmatch(path)
            route = None if m is None else self._actions.get(m.group(3) or "")
            if route is None or m is None:
                raise NotFound(not_served(path))
            found = (route, m.group(1), m.group(2))
            if found[1] == self._model_name and found[2] in (None, self._model_version):
                # The served model's paths (at most two per action: with and without its version)
                # are matched once, not per request; any other name is matched, and refused, each time.
                self._exact[path] = found
        want = found[0].method
        if method != want and not (want == "GET" and method == "HEAD"):
            raise MethodNotAllowed(f"use {want} here", [(b"allow", want.encode())])
        return found

    def admit(self, found: Match, scope: Scope) -> None:
        """Refuse the request unless its route is public or it carries the credentials, then check the model.

        Credentials first: a caller without them learns nothing about which
        models or versions exist.
        """
        route, name, version = found
        if not route.public:
            client = scope.get("client")
            self.auth.check(scope["headers"], client[0] if client else None)
        if name is not None:
            self._check_model(name, version)

    def _check_model(self, name: str, version: str | None) -> None:
        if name != self._model_name:
            # GET /v2/models/stats (tritonclient's get_inference_statistics() for every model) has the
            # shape of a model's metadata path.
            hint = f" ({not_served('/v2/models/stats')})" if name == "stats" and version is None else ""
            raise NotFound(f"unknown model {name!r}; this server serves {self._model_name!r}{hint}")
        if version is not None and version != self._model_version:
            raise NotFound(
                f"unknown version {version!r} of model {name!r}; this server serves version {self._model_version!r}"
            )
