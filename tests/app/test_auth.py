"""The failed-login throttle on its own: per address, refilled with time, and a table no caller can grow."""

from __future__ import annotations

import base64

import pytest

from mlapp.serve.auth import BasicAuth, FailedLogins, client_key
from mlapp.serve.errors import TooManyRequests, Unauthorized


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def basic(user: str, password: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Basic " + base64.b64encode(f"{user}:{password}".encode()))]


def test_a_guesser_is_slowed_to_the_refill_rate_and_nobody_else_is() -> None:
    clock = Clock()
    auth = BasicAuth("u", "right", FailedLogins(burst=3, per_second=0.5, clock=clock))
    for _ in range(3):
        with pytest.raises(Unauthorized):
            auth.check(basic("u", "guess"), "203.0.113.7")
    with pytest.raises(TooManyRequests) as refused:
        auth.check(basic("u", "right"), "203.0.113.7")  # not checked while throttled
    assert refused.value.headers == [(b"retry-after", b"2")]
    auth.check(basic("u", "right"), "198.51.100.1")  # another address: untouched
    clock.now += 2  # one failure's worth refilled at 0.5/s
    with pytest.raises(Unauthorized):
        auth.check(basic("u", "guess"), "203.0.113.7")
    with pytest.raises(TooManyRequests):
        auth.check(basic("u", "guess"), "203.0.113.7")
    clock.now += 60
    auth.check(basic("u", "right"), "203.0.113.7")  # the burst is back: the user is never locked out for good


def test_no_credentials_is_a_challenge_not_a_failure() -> None:
    throttle = FailedLogins(burst=1)
    auth = BasicAuth("u", "right", throttle)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            auth.check([], "203.0.113.7")
    assert len(throttle) == 0


def test_the_table_of_addresses_is_bounded_least_recently_failed_first() -> None:
    throttle = FailedLogins(burst=5, max_clients=100)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) == 100
    assert throttle.retry_after("10.0.0.0") == 0  # dropped, the oldest
    throttle.failed("10.0.39.15")  # the newest is still counted
    assert len(throttle) == 100


def test_an_ipv6_client_is_counted_per_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key(None) == ""


@pytest.mark.parametrize(
    ("header", "admitted"),
    [
        (b"Basic " + base64.b64encode(b"u:right"), True),  # as clients write it: one comparison, no decoding
        (b"basic " + base64.b64encode(b"u:right"), True),  # the scheme is case-insensitive (RFC 7617 section 2)
        (b"BASIC  " + base64.b64encode(b"u:right") + b" ", True),
        (b"Basic " + base64.b64encode(b"u:right") + b"x", False),  # the canonical header and more
        (b"Basic " + base64.b64encode(b"u:righ"), False),
        (b"Basic " + base64.b64encode(b"U:right"), False),
        (b"Bearer " + base64.b64encode(b"u:right"), False),
    ],
)
def test_credentials_are_admitted_in_any_spelling_and_nothing_else_is(header: bytes, admitted: bool) -> None:
    auth = BasicAuth("u", "right")
    if admitted:
        auth.check([(b"authorization", header)], "203.0.113.7")
    else:
        with pytest.raises(Unauthorized):
            auth.check([(b"authorization", header)], "203.0.113.7")
