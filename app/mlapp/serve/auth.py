"""HTTP basic auth against the one configured user, compared in constant time, with failed logins throttled.

The throttle counts failed logins per client address (an IPv6 client per /64,
the block one subscriber usually holds): each address has a bucket of
``burst`` failures that refills at ``per_second``. An address whose bucket is
empty is answered 429 with Retry-After, before its credentials are checked, so
guessing from it runs at ``per_second`` at most. Nothing is counted per user:
a stranger who fails logins from elsewhere never locks the real user out. A
request without credentials (a client's first try, before the 401 challenge)
is not a failed login. The table of addresses is bounded (``max_clients``, the
least recently failed dropped first), so no caller can grow it.

The address is the TCP peer's. Behind a cloud load balancer that is the real
client's only where the Service keeps it (``externalTrafficPolicy: Local``,
which components/workloads.py sets): https://kubernetes.io/docs/tasks/access-application-cluster/create-external-load-balancer/#preserving-the-client-source-ip
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

from mlapp.serve.errors import TooManyRequests, Unauthorized
from mlapp.settings import FAILED_LOGIN_BURST

REALM: Final = b'Basic realm="mlapp", charset="UTF-8"'
FAILED_LOGINS_PER_SECOND: Final = 1.0
MAX_THROTTLED_CLIENTS: Final = 10_000


def client_key(host: str | None) -> str:
    """The address failures are counted under: the IPv4 address, or the IPv6 /64."""
    if not host or ":" not in host:
        return host or ""
    try:
        return str(ipaddress.ip_network(f"{host}/64", strict=False))
    except ValueError:
        return host


class FailedLogins:
    """A token bucket of failed logins per client address, in a bounded table."""

    def __init__(
        self,
        burst: int = FAILED_LOGIN_BURST,
        per_second: float = FAILED_LOGINS_PER_SECOND,
        max_clients: int = MAX_THROTTLED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_clients = max_clients
        self._clock = clock
        # address -> (tokens left, when counted); least recently failed first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return float(self.burst)
        tokens, then = entry
        return min(float(self.burst), tokens + (now - then) * self.per_second)

    def retry_after(self, key: str) -> float:
        """0 if ``key`` may try to log in now, else the seconds until it may."""
        if key not in self._buckets:
            return 0.0
        tokens = self._tokens(key, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.per_second

    def failed(self, key: str) -> None:
        now = self._clock()
        tokens = self._tokens(key, now) - 1
        self._buckets[key] = (max(tokens, 0.0), now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)


class BasicAuth:
    def __init__(self, username: str, password: str, throttle: FailedLogins | None = None) -> None:
        self._user = username.encode("utf-8")
        self._password = password.encode("utf-8")
        # The header as clients write it (RFC 7617 section 2: "Basic", one space, the base64 of
        # user-id ":" password); one constant-time comparison with it admits them without decoding.
        self._canonical = b"Basic " + base64.b64encode(self._user + b":" + self._password)
        self.throttle = throttle if throttle is not None else FailedLogins()

    def check(self, headers: Iterable[tuple[bytes, bytes]], client: str | None = None) -> None:
        """Return if ``headers`` carry this user's credentials; raise Unauthorized or TooManyRequests otherwise."""
        header = b""
        for key, value in headers:
            if key == b"authorization":
                header = value
                break
        if not header:
            raise Unauthorized("authentication required", [(b"www-authenticate", REALM)])
        address = client_key(client)
        wait = self.throttle.retry_after(address)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"too many failed logins from this address; retry in {seconds} s",
                [(b"retry-after", str(seconds).encode())],
            )
        if hmac.compare_digest(header, self._canonical):
            return  # the common case; any other spelling ("basic", more spaces) is decoded below
        scheme, _, encoded = header.partition(b" ")
        user = password = b""
        if scheme.lower() == b"basic":
            try:
                user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                user = password = b""
        # Both comparisons always run, each in constant time, so the answer's
        # timing says nothing about which part was wrong or how much matched.
        ok_user = hmac.compare_digest(user, self._user)
        ok_password = hmac.compare_digest(password, self._password)
        if not (ok_user & ok_password):
            self.throttle.failed(address)
            raise Unauthorized("authentication required", [(b"www-authenticate", REALM)])
