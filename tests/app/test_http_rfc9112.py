"""What RFC 9112 (HTTP/1.1) asks of a server's framing, checked on the server's own HTTP layer.

The tests speak raw bytes to a real server process (the session's plain-HTTP one).
"""

from __future__ import annotations

import base64
import json
import socket

import pytest

from mlapp import contract

from .helpers import MODEL_NAME, PASSWORD, USER, Server

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
