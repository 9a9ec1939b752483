"""Reads from Azure Resource Manager (AKS's list of Kubernetes versions), against a real HTTP server on
loopback: the request, the answer, and every bound (time, tries, size), with the token never in a message."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest

from mlstack.clouds import azure, azure_api
from tests.support import loopback_http

TOKEN = "arm-token-secret-xyz"
Answer = Callable[[BaseHTTPRequestHandler], None]
VERSIONS = {
    "values": [
        {"version": "1.35", "capabilities": {"supportPlan": ["KubernetesOfficial", "AKSLongTermSupport"]}},
        {"version": "1.36", "isDefault": True, "capabilities": {"supportPlan": ["KubernetesOfficial"]}},
    ]
}


@contextmanager
def resource_manager(answers: list[Answer]) -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """A loopback "Resource Manager" answering GETs with ``answers`` in turn; yields its URL and the requests."""
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, dict(self.headers)))
            answers[min(len(seen), len(answers)) - 1](self)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with loopback_http(Handler) as port:
        yield f"http://127.0.0.1:{port}", seen


def reply(status: int, body: bytes) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def stall(seconds: float) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        # The client has given up waiting, which is what a stalled answer is for: its late write may find
        # the socket closed, and socketserver would print that after the test has passed.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            reply(200, b"{}")(handler)

    return answer


OK = reply(200, json.dumps(VERSIONS).encode())


def test_the_versions_of_a_location_are_asked_with_the_token_and_read(monkeypatch: pytest.MonkeyPatch) -> None:
    with resource_manager([OK]) as (url, seen):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        found = azure_api.list_aks_versions("sub-1", "eastus", TOKEN)
    assert found.minors == ("1.35", "1.36")
    assert found.default == "1.36"
    ((path, headers),) = seen
    assert path == (
        "/subscriptions/sub-1/providers/Microsoft.ContainerService/locations/eastus/kubernetesVersions"
        f"?api-version={azure.AKS_VERSIONS_API}"
    )
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_throttling_and_server_errors_are_retried_then_answered() -> None:
    with resource_manager([reply(429, b"slow down"), reply(503, b"busy"), OK]) as (url, seen):
        assert azure_api.get_json(url + "/x", TOKEN, backoff=0.0) == VERSIONS
    assert len(seen) == 3


def test_a_refusal_is_not_retried_and_its_message_has_no_token() -> None:
    body = f'{{"error": {{"code": "AuthorizationFailed", "message": "no access for {TOKEN}"}}}}'.encode()
    with resource_manager([reply(403, body)]) as (url, seen), pytest.raises(azure_api.ArmError) as caught:
        azure_api.get_json(url + "/x?api-version=1", TOKEN, backoff=0.0)
    assert len(seen) == 1
    message = str(caught.value)
    assert "HTTP 403" in message
    assert "AuthorizationFailed" in message
    assert "api-version" not in message, "the query string is left out of messages"
    assert TOKEN not in message


def test_the_answer_size_is_bounded() -> None:
    big = b"[" + b"0," * 600 + b"0]"
    with resource_manager([reply(200, big)]) as (url, _), pytest.raises(azure_api.ArmError, match="over 1000 bytes"):
        azure_api.get_json(url, TOKEN, max_bytes=1000)


def test_each_try_is_bounded_in_time_and_the_tries_in_number() -> None:
    with resource_manager([stall(2.0)]) as (url, seen), pytest.raises(azure_api.ArmError) as caught:
        azure_api.get_json(url, TOKEN, timeout=0.2, attempts=2, backoff=0.0)
    assert "after 2 tries: timed out" in str(caught.value)
    assert len(seen) == 2


def test_an_answer_that_is_not_json_or_not_a_version_list_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with resource_manager([reply(200, b"<html>")]) as (url, _), pytest.raises(azure_api.ArmError, match="not JSON"):
        azure_api.get_json(url, TOKEN)
    with resource_manager([reply(200, b'{"value": []}')]) as (url, _):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        with pytest.raises(azure_api.ArmError, match="without a list of values"):
            azure_api.list_aks_versions("sub-1", "eastus", TOKEN)
