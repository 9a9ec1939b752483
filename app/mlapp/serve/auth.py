"""HTTP basic auth against the one configured user, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Iterable
from typing import Final

from mlapp.serve.errors import Unauthorized

REALM: Final = b'Basic realm="mlapp", charset="UTF-8"'


class BasicAuth:
    def __init__(self, username: str, password: str) -> None:
        self._user = username.encode("utf-8")
        self._password = password.encode("utf-8")

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Return if ``headers`` carry this user's credentials; raise Unauthorized otherwise."""
        header = b""
        for key, value in headers:
            if key == b"authorization":
                header = value
                break
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
            raise Unauthorized("authentication required", [(b"www-authenticate", REALM)])
