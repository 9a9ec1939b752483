"""The ACR token exchange, against a real HTTP server on loopback: fields, the audiences' order, answers, bounds."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import pytest

from mlstack.clouds import azure_acr_token
from tests.support import loopback_http

Answer = Callable[[BaseHTTPRequestHandler, dict[str, str]], None]

ACR = azure_acr_token.AudienceToken(azure_acr_token.ACR_AUDIENCE, "acr-token-xyz")
ARM = azure_acr_token.AudienceToken(azure_acr_token.ARM_AUDIENCE, "arm-token-xyz")
ACR_NOT_OBTAINED = azure_acr_token.AudienceToken(
    azure_acr_token.ACR_AUDIENCE, "", unavailable="AADSTS500011: resource principal not found"
)
# The Docker registry error format; the body ACR sends for a refused token is not documented.
UNAUTHORIZED = b'{"errors": [{"code": "UNAUTHORIZED", "message": "token validation failed"}]}'


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

    with loopback_http(Handler) as port:
        yield f"127.0.0.1:{port}", seen


def reply(status: int, body: bytes) -> Answer:
    def answer(handler: BaseHTTPRequestHandler, _form: dict[str, str]) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def arm_audience_disabled(handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
    """A registry whose azureADAuthenticationAsArmPolicy is disabled: only the ACR-audience token is taken."""
    if form["access_token"] == ACR.token:
        reply(200, b'{"refresh_token": "acr-refresh-1"}')(handler, form)
    else:
        reply(401, UNAUTHORIZED)(handler, form)


def exchange(
    host: str,
    tokens: Sequence[azure_acr_token.AudienceToken] = (ACR, ARM),
    *,
    timeout: float = 5.0,
    attempts: int = azure_acr_token.ATTEMPTS,
) -> str:
    return azure_acr_token.refresh_token(
        host, "tenant-1", tokens, scheme="http", backoff=0.01, timeout=timeout, attempts=attempts
    )


def offered(seen: list[dict[str, str]]) -> list[str]:
    return [form["access_token"] for form in seen]


def test_sends_the_documented_fields_with_the_acr_audience_token_first() -> None:
    with registry([reply(200, b'{"refresh_token": "acr-refresh-1"}')]) as (host, seen):
        assert exchange(host) == "acr-refresh-1"
    assert seen == [{"grant_type": "access_token", "service": host, "tenant": "tenant-1",
                     "access_token": ACR.token}]  # fmt: skip


def test_a_registry_with_arm_audience_tokens_disabled_takes_the_acr_audience_one() -> None:
    """Bug: the program offered only an ARM-audience token, which a registry under the built-in
    policy "Container registries should have ARM audience token authentication disabled" refuses."""
    with registry([arm_audience_disabled]) as (host, seen):
        assert exchange(host) == "acr-refresh-1"
    assert offered(seen) == [ACR.token]
    with registry([arm_audience_disabled]) as (host, seen), pytest.raises(azure_acr_token.AcrTokenError):
        exchange(host, [ARM])
    assert offered(seen) == [ARM.token], "the ARM-audience token alone is refused there"


def test_a_refused_acr_audience_token_falls_back_to_the_arm_audience_one() -> None:
    answers = [reply(403, UNAUTHORIZED), reply(200, b'{"refresh_token": "arm-refresh"}')]
    with registry(answers) as (host, seen):
        assert exchange(host) == "arm-refresh"
    assert offered(seen) == [ACR.token, ARM.token], "a refusal is not retried with the same token"


def test_an_acr_audience_token_not_obtained_falls_back_to_the_arm_audience_one() -> None:
    with registry([reply(200, b'{"refresh_token": "arm-refresh"}')]) as (host, seen):
        assert exchange(host, [ACR_NOT_OBTAINED, ARM]) == "arm-refresh"
    assert offered(seen) == [ARM.token]


def test_both_refused_names_each_audience_and_answer_and_the_policy_without_a_token() -> None:
    # A registry that echoes the token it refused must not put it in our message either.
    echo = b'{"errors": [{"code": "DENIED", "message": "not for arm-token-xyz"}]}'
    refusals = [reply(401, UNAUTHORIZED), reply(401, echo)]
    with registry(refusals) as (host, seen), pytest.raises(azure_acr_token.AcrTokenError) as caught:
        exchange(host)
    assert offered(seen) == [ACR.token, ARM.token]
    message = str(caught.value)
    assert (
        f"ACR-audience token ({azure_acr_token.ACR_AUDIENCE}): HTTP 401: UNAUTHORIZED: token validation failed"
        in message
    )
    assert f"ARM-audience token ({azure_acr_token.ARM_AUDIENCE}): HTTP 401: DENIED: not for [token]" in message
    assert "azureADAuthenticationAsArmPolicy is disabled" in message
    assert "42781ec6-6127-4c30-bdfa-fb423a0047d3" in message
    assert "785596ed-054f-41bc-aaec-7f3d0ba05725" in message
    assert "Owner, Contributor or AcrPush" in message
    assert "mlstack:acrAdminUser" in message
    assert ACR.token not in message
    assert ARM.token not in message


def test_a_token_not_obtained_is_named_with_its_reason() -> None:
    with registry([reply(401, b"")]) as (host, _), pytest.raises(azure_acr_token.AcrTokenError) as caught:
        exchange(host, [ACR_NOT_OBTAINED, ARM])
    message = str(caught.value)
    assert f"ACR-audience token ({azure_acr_token.ACR_AUDIENCE}): not obtained (AADSTS500011" in message
    assert f"ARM-audience token ({azure_acr_token.ARM_AUDIENCE}): HTTP 401: no detail" in message
    assert ARM.token not in message


def test_the_registry_answer_in_an_error_is_bounded() -> None:
    long_text = b"x" * (10 * azure_acr_token.MAX_DETAIL_CHARS)
    with registry([reply(401, long_text)]) as (host, _), pytest.raises(azure_acr_token.AcrTokenError) as caught:
        exchange(host)
    assert "x" * azure_acr_token.MAX_DETAIL_CHARS not in str(caught.value)
    assert "x" * (azure_acr_token.MAX_DETAIL_CHARS - 1) + "…" in str(caught.value)


def test_a_server_error_is_retried_a_bounded_number_of_times_and_not_with_the_next_token() -> None:
    with registry([reply(503, b"busy"), reply(200, b'{"refresh_token": "after-retry"}')]) as (host, seen):
        assert exchange(host) == "after-retry"
    assert offered(seen) == [ACR.token, ACR.token]
    gives_up = pytest.raises(azure_acr_token.AcrTokenError, match="after 3 tries: HTTP 503: busy")
    with registry([reply(503, b"busy")]) as (host, seen), gives_up:
        exchange(host)
    assert offered(seen) == [ACR.token] * azure_acr_token.ATTEMPTS, "an unreachable registry is not asked again"


def test_an_oversized_answer_is_refused() -> None:
    big = b'{"refresh_token": "' + b"x" * azure_acr_token.MAX_ANSWER_BYTES + b'"}'
    with (
        registry([reply(200, big)]) as (host, _),
        pytest.raises(azure_acr_token.AcrTokenError, match="over 65536 bytes"),
    ):
        exchange(host)


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"access_token": "x"}', b'{"refresh_token": ""}'])
def test_an_answer_without_a_refresh_token_is_refused(body: bytes) -> None:
    refused = pytest.raises(azure_acr_token.AcrTokenError, match="without a refresh_token")
    with registry([reply(200, body)]) as (host, seen), refused:
        exchange(host)
    assert len(seen) == 1, "a registry that took the token but answered badly is not offered the next"


def test_a_registry_that_never_answers_is_given_up_on_in_bounded_time() -> None:
    def hang(_handler: BaseHTTPRequestHandler, _form: dict[str, str]) -> None:
        time.sleep(3)

    with registry([hang]) as (host, seen):
        started = time.monotonic()
        with pytest.raises(azure_acr_token.AcrTokenError, match="after 2 tries"):
            exchange(host, timeout=0.3, attempts=2)
        assert time.monotonic() - started < 2.5
    assert len(seen) == 2


def test_a_token_is_not_in_its_repr() -> None:
    assert ACR.token not in repr(ACR)
    assert azure_acr_token.ACR_AUDIENCE in repr(ACR)


def test_no_token_at_all_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        azure_acr_token.refresh_token("registry.invalid", "tenant-1", [])


def test_the_program_calls_the_real_exchange_outside_the_harness() -> None:
    """The harness swaps in its answer only while it runs a stack; the program's path is the real one."""
    assert azure_acr_token.exchange is azure_acr_token.refresh_token
