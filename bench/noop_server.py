"""The floor of the serving benchmark: a no-op application under the very HTTP server mlapp.serve runs.

    PYTHONPATH=app venv/bin/python bench/noop_server.py --port 8080 [--tls-cert C --tls-key K]
    PYTHONPATH=app venv/bin/python bench/noop_server.py --port 8080 --uvicorn   # the same no-op under uvicorn

It reads the body through the same bounded path (``held_body``: Content-Length
checked, the body budget) and answers a constant Open Inference Protocol
answer of the same shape as mlapp's for one digit, on uvloop, with the same
``Limits`` and the same TLS context: everything a request costs before it
reaches auth, parsing, the model and the metrics. What mlapp does on top of
this is what the benchmark's ratio to the floor measures.
"""

from __future__ import annotations

import argparse
import socket
import sys

import orjson
import uvloop

from mlapp.serve.asgi import JSON, BodyBudget, Receive, Scope, Send, held_body
from mlapp.serve.http import HttpServer
from mlapp.serve.server import BACKLOG, tls_context
from mlapp.settings import Limits

# What mlapp answers for one digit, with constant scores (the length is what costs).
ANSWER = orjson.dumps(
    {
        "model_name": "digits",
        "model_version": "bench",
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 10], "data": [0.1] * 10}],
    }
)
HEADERS = [(b"content-type", JSON), (b"content-length", str(len(ANSWER)).encode())]


class Noop:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.budget = BodyBudget(limits.max_body_bytes_held)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        _, held = await held_body(scope, receive, self.limits.max_body_bytes, self.budget)
        self.budget.give(held)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": ANSWER})


async def serve(port: int, cert: str | None, key: str | None) -> None:
    limits = Limits()
    tls = tls_context(cert, key) if cert and key else None
    server = HttpServer(Noop(limits), limits, tls, ("127.0.0.1", port))
    listener = socket.create_server(server.server_address, backlog=BACKLOG)
    listener.setblocking(False)
    await server.accept_forever(listener)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--uvicorn", action="store_true", help="serve the no-op under uvicorn instead (a reference)")
    args = parser.parse_args()
    if args.uvicorn:
        import uvicorn  # noqa: PLC0415 - only this variant needs it

        uvicorn.run(
            Noop(Limits()),
            host="127.0.0.1",
            port=args.port,
            loop="uvloop",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_level="warning",
            ssl_certfile=args.tls_cert,
            ssl_keyfile=args.tls_key,
        )
        return 0
    uvloop.run(serve(args.port, args.tls_cert, args.tls_key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
