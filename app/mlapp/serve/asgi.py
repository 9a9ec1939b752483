"""The ASGI types the server speaks, and what every handler needs from a request: a header, a bounded body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson

from mlapp.serve.errors import BadRequest, Busy, Header, TooLarge, UnsupportedMediaType

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# What a handler returns: status, body, content type, and any headers of its own.
Answer = tuple[int, bytes, bytes, tuple[Header, ...]]
NO_HEADERS: Final[tuple[Header, ...]] = ()

JSON: Final = b"application/json"


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def header(scope: Scope, name: bytes) -> str:
    """The first value of header ``name`` (lower-case, as ASGI gives them), or ""."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


class BodyBudget:
    """The body bytes every request of the process holds at once, bounded: past it, 503 and retry.

    Only requests that were admitted (credentials checked) read a body, so a
    stranger cannot fill it.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.total:
            raise Busy(
                f"the server is holding {self.total} bytes of request bodies already; retry shortly",
                [(b"retry-after", b"1")],
            )
        self.held += size

    def give(self, size: int) -> None:
        self.held -= size


async def held_body(scope: Scope, receive: Receive, limit: int, budget: BodyBudget) -> tuple[bytes, int]:
    """The whole body, and the bytes of ``budget`` it holds: the caller gives them back when done with it.

    413 as soon as the body is known to exceed ``limit``; 503 if ``budget`` cannot hold it; 415 for a
    compressed body (``Content-Encoding``), which this server does not inflate: RFC 9110 section 15.5.16
    gives 415 to "a content coding ... not supported". tritonclient sends gzip or deflate when its caller
    asks (``request_compression_algorithm``); its ``response_compression_algorithm`` only asks, and an
    uncompressed answer is what the client then reads (tritonclient/http/_infer_result.py).
    """
    declared = -1
    for key, value in scope["headers"]:
        if key == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            coding = bytes(value).decode("latin-1")
            raise UnsupportedMediaType(f"Content-Encoding {coding!r} is not supported: send the body uncompressed")
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError as e:
                raise BadRequest("bad Content-Length") from e
            if declared > limit:
                raise TooLarge(f"request body over the limit of {limit} bytes")
    held = 0
    chunks: list[bytes] = []
    try:
        if declared > 0:
            budget.take(declared)
            held = declared
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("client went away")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            # A chunked body declares no length: counted, and held, as it arrives.
            if size > limit:
                raise TooLarge(f"request body over the limit of {limit} bytes")
            if size > held:
                budget.take(size - held)
                held = size
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
    except BaseException:
        budget.give(held)
        raise
    return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), held
