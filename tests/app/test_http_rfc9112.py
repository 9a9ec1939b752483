"""What RFC 9112 (HTTP/1.1) asks of a server's framing, checked on the server's own HTTP layer.

The first tests speak raw bytes to a real server process (the session's plain-HTTP one); the
trailer tests drive ``mlapp.serve.http.Connection`` in process with a recording transport, so that
what the application sees (its body, its header fields) and where a refusal comes, to the byte,
are seen exactly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Iterable, Iterator

import pytest

from mlapp import contract
from mlapp.serve.asgi import Receive, Scope, Send
from mlapp.serve.http import MAX_TRAILER_BYTES, Connection, HttpServer
from mlapp.settings import Limits

from .helpers import MODEL_NAME, PASSWORD, USER, Server
from .test_http_writes import Recording

TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
LIVE = contract.LIVE_PATH.encode()
INFER_BODY = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0] * 64}]}
).encode()


def exchange(srv: Server, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data`` on a new connection, then read until the server closes it (or ``timeout``)."""
    out = b""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as conn:
        conn.sendall(data)
        try:
            while chunk := conn.recv(65536):
                out += chunk
        except TimeoutError:
            pass
    return out


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def head_of(response: bytes) -> list[bytes]:
    """The header lines of the first answer in ``response``, lowercased."""
    return response.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")[1:]


# --- Host (RFC 9112 section 3.2) ---------------------------------------------------------


def test_an_http11_request_without_host_is_400_and_closed(server: Server) -> None:
    """Section 3.2: a server MUST answer 400 to an HTTP/1.1 request that lacks a Host header field."""
    response = exchange(server, b"GET " + LIVE + b" HTTP/1.1\r\n\r\n")
    assert status_of(response) == 400, response
    assert b"connection: close" in head_of(response)
    assert b"Host" in response.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_a_request_with_two_host_fields_is_400(server: Server, version: bytes) -> None:
    """Section 3.2: 400 for any request with more than one Host field line, whatever its version."""
    response = exchange(server, b"GET " + LIVE + b" HTTP/" + version + b"\r\nHost: a\r\nHost: b\r\n\r\n")
    assert status_of(response) == 400, response


def test_an_http10_request_without_host_is_answered(server: Server) -> None:
    """Host is HTTP/1.1's requirement: an HTTP/1.0 client may leave it out."""
    response = exchange(server, b"GET " + LIVE + b" HTTP/1.0\r\n\r\n")
    assert status_of(response) == 200, response


# --- transfer codings (RFC 9112 section 6.1) ---------------------------------------------


def _chunked_infer(coding: bytes) -> bytes:
    return (
        b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Basic %s\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: %s\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
    ) % (MODEL_NAME.encode(), TOKEN.encode(), coding, len(INFER_BODY), INFER_BODY)


def test_a_transfer_coding_the_server_does_not_implement_is_501(server: Server) -> None:
    """Section 6.1: a coding the server does not understand SHOULD get 501. The body below is plain JSON,
    chunked: a server that dropped the gzip and read it as chunked answered 200 to a body it misread."""
    response = exchange(server, _chunked_infer(b"gzip, chunked"))
    assert status_of(response) == 501, response
    assert b"gzip" in response.partition(b"\r\n\r\n")[2]
    assert b"connection: close" in head_of(response)


def test_an_http10_request_with_transfer_encoding_is_400_and_closed(server: Server) -> None:
    """Section 6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as if its framing were faulty,
    and the connection closed. The request that follows it is not answered: a server that read the first
    as chunked (llhttp does) answered both, and a proxy that framed it by HTTP/1.0's rules saw one request."""
    first = _chunked_infer(b"chunked").replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
    response = exchange(server, first + b"GET " + LIVE + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(response) == 400, response
    assert b"Transfer-Encoding" in response.partition(b"\r\n\r\n")[2]
    assert b"connection: close" in head_of(response)
    assert response.count(b"HTTP/1.1 ") == 1, response


def test_chunked_alone_is_read(server: Server) -> None:
    response = exchange(server, _chunked_infer(b"chunked").replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n"))
    assert status_of(response) == 200, response
    assert b'"probabilities"' in response


# --- persistence (RFC 9112 section 9.3, appendix C.2.2) ---------------------------------------


def test_an_http10_keep_alive_answer_says_keep_alive_and_the_connection_stays(server: Server) -> None:
    """An HTTP/1.0 client keeps a connection only when the answer carries ``Connection: keep-alive``
    (appendix C.2.2); without it, it waits for a close that the server, keeping the connection, never
    makes until its keep-alive timeout."""
    request = b"GET " + LIVE + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request)
        first = conn.recv(65536)
        assert status_of(first) == 200, first
        assert b"connection: keep-alive" in head_of(first), first
        conn.sendall(request.replace(b"keep-alive", b"close"))
        second = b""
        while chunk := conn.recv(65536):
            second += chunk
    assert status_of(second) == 200, second
    assert b"connection: close" in head_of(second)
    assert b"connection: keep-alive" not in head_of(second)


def test_an_http10_request_without_keep_alive_is_answered_and_closed(server: Server) -> None:
    response = exchange(server, b"GET " + LIVE + b" HTTP/1.0\r\n\r\n")
    assert status_of(response) == 200, response
    assert response.count(b"HTTP/1.1 ") == 1
    assert b"connection: close" in head_of(response)


# --- trailer fields (RFC 9112 section 7.1.2), in process -------------------------------------


class Reading:
    """An application that reads a whole body, then answers 200 with it; it records each request's
    header fields and body."""

    def __init__(self) -> None:
        self.seen: list[tuple[list[tuple[bytes, bytes]], bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.seen.append((list(scope["headers"]), body))
        length = b"%d" % len(body)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]})
        await send({"type": "http.response.body", "body": body})


def feed(reads: Iterable[bytes]) -> tuple[Reading, list[tuple[str, int, bytes]], int]:
    """One connection given ``reads`` one ``data_received`` each, the loop let run between them, until the
    connection closes; the application, the transport's calls, and how many bytes were given."""
    app = Reading()
    log: list[tuple[str, int, bytes]] = []
    given = 0

    async def scenario() -> None:
        nonlocal given
        server = HttpServer(app, Limits(), None, ("127.0.0.1", 8080))
        conn = Connection(server)
        conn.connection_made(Recording(log, 0))  # type: ignore[arg-type]
        for data in reads:
            if conn.closed:
                break
            conn.data_received(data)
            given += len(data)
            for _ in range(3):
                await asyncio.sleep(0)
        for _ in range(5):
            await asyncio.sleep(0)
        if not conn.closed:
            conn.abort()

    asyncio.run(scenario())
    return app, log, given


def written(log: list[tuple[str, int, bytes]]) -> bytes:
    return b"".join(data for kind, _, data in log if kind == "write")


CHUNKED_HEAD = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_a_trailer_field_is_read_past_and_not_merged_into_the_header_fields() -> None:
    """RFC 9110 section 6.5.1: a recipient MUST NOT merge a trailer field into the header section
    unless its definition says so; none that this server knows does."""
    app, log, _ = feed([CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nAuthorization: x\r\n\r\n"])
    assert len(app.seen) == 1, log
    headers, body = app.seen[0]
    assert body == b"hello"
    assert [name for name, _ in headers] == [b"host", b"transfer-encoding"]
    assert written(log).startswith(b"HTTP/1.1 200 ")


def test_a_trailer_field_that_never_ends_is_431_within_its_allowance() -> None:
    """httptools holds an unfinished trailer field whole (``MAX_TRAILER_BYTES`` says where): reads of one
    value that never ends are refused once they pass the allowance, not fed on."""
    read = 1024

    def reads() -> Iterator[bytes]:
        yield CHUNKED_HEAD + b"5\r\nhello\r\n"
        yield b"0\r\nX-Trailer: "
        for _ in range(64 * MAX_TRAILER_BYTES // read):  # the value, sixty-four times the allowance
            yield b"v" * read

    app, log, given = feed(reads())
    assert app.seen == [], "the request was answered as if its trailers had ended"
    answer = written(log)
    assert status_of(answer) == 431, answer
    assert log[-1][0] == "close", log[-1]
    after_body = given - len(CHUNKED_HEAD + b"5\r\nhello\r\n")
    assert MAX_TRAILER_BYTES < after_body <= MAX_TRAILER_BYTES + read, f"refused after {after_body} bytes"


def test_a_request_after_a_chunked_one_in_the_same_read_is_not_counted_as_its_trailer() -> None:
    """The piece that ends a chunked body may carry the next request's head, whose body has not come yet:
    those bytes are the next request's, not trailer fields of the first."""
    padded = (
        b"POST /y HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"p" * (2 * MAX_TRAILER_BYTES) + b"\r\nContent-Length: 2\r\n\r\n"
    )
    app, log, _ = feed([CHUNKED_HEAD + b"5\r\nhello\r\n", b"0\r\n\r\n" + padded, b"ok"])
    assert [body for _, body in app.seen] == [b"hello", b"ok"], written(log)
    assert written(log).count(b"HTTP/1.1 200 ") == 2
