"""The ACR token exchange, against a real HTTP server on loopback: fields, answers, and every bound."""

from __future__ import annotations

import functools
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mlstack import acr_token

Answer = Callable[[BaseHTTPRequestHandler, dict[str, str]], None]


@contextmanager
def registry(answers: list[Answer]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A loopback "registry" answering /oauth2/exchange with ``answers`` in turn; yields host:port and requests."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert self.path == "/oauth2/exchange", self.path
            assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
            length = int(self.headers["Content-Length"])
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            seen.append(form)
            answers[min(len(seen), len(answers)) - 1](self, form)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # A short poll: shutdown() waits for the loop to notice it, half a second by default.
    thread = threading.Thread(target=functools.partial(server.serve_forever, poll_interval=0.01), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def reply(status: int, body: bytes) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, _form: dict[str, str]) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def exchange(host: str, *, timeout: float = 5.0, attempts: int = acr_token.ATTEMPTS) -> str:
    return acr_token.refresh_token(
        host, "tenant-1", "arm-token-xyz", scheme="http", backoff=0.01, timeout=timeout, attempts=attempts
    )


def test_sends_the_documented_fields_and_returns_the_refresh_token() -> None:
    with registry([reply(200, b'{"refresh_token": "acr-refresh-1"}')]) as (host, seen):
        assert exchange(host) == "acr-refresh-1"
    assert seen == [{"grant_type": "access_token", "service": host, "tenant": "tenant-1",
                     "access_token": "arm-token-xyz"}]  # fmt: skip


def test_a_refusal_is_not_retried_and_says_what_to_do_without_the_token() -> None:
    refusal = reply(401, b'{"errors": [{"code": "UNAUTHORIZED"}]}')
    with registry([refusal]) as (host, seen), pytest.raises(acr_token.AcrTokenError) as caught:
        exchange(host)
    assert len(seen) == 1
    message = str(caught.value)
    assert "HTTP 401" in message
    assert "AcrPush" in message
    assert "mlstack:acrAdminUser" in message
    assert "arm-token-xyz" not in message


def test_a_server_error_is_retried_a_bounded_number_of_times() -> None:
    with registry([reply(503, b"busy"), reply(200, b'{"refresh_token": "after-retry"}')]) as (host, seen):
        assert exchange(host) == "after-retry"
    assert len(seen) == 2
    gives_up = pytest.raises(acr_token.AcrTokenError, match="after 3 tries: HTTP 503: busy")
    with registry([reply(503, b"busy")]) as (host, seen), gives_up:
        exchange(host)
    assert len(seen) == acr_token.ATTEMPTS


def test_an_oversized_answer_is_refused() -> None:
    big = b'{"refresh_token": "' + b"x" * acr_token.MAX_ANSWER_BYTES + b'"}'
    with registry([reply(200, big)]) as (host, _), pytest.raises(acr_token.AcrTokenError, match="over 65536 bytes"):
        exchange(host)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"access_token": "x"}', b'{"refresh_token": ""}'])
def test_an_answer_without_a_refresh_token_is_refused(body: bytes) -> None:
    refused = pytest.raises(acr_token.AcrTokenError, match="without a refresh_token")
    with registry([reply(200, body)]) as (host, _), refused:
        exchange(host)


def test_a_registry_that_never_answers_is_given_up_on_in_bounded_time() -> None:
    def hang(_handler: BaseHTTPRequestHandler, _form: dict[str, str]) -> None:
        time.sleep(3)

    with registry([hang]) as (host, seen):
        started = time.monotonic()
        with pytest.raises(acr_token.AcrTokenError, match="after 2 tries"):
            exchange(host, timeout=0.3, attempts=2)
        assert time.monotonic() - started < 2.5
    assert len(seen) == 2


def test_the_program_calls_the_real_exchange_outside_the_harness() -> None:
    """The harness swaps in its answer only while it runs a stack; the program's path is the real one."""
    assert acr_token.exchange is acr_token.refresh_token
