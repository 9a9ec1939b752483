"""One bounded JSON GET for every cloud API the program reads outside its providers.

Pure (no Pulumi SDK). Every cloud's APIs (mlstack/clouds/: Resource Manager, Azure's retail prices, Google's
APIs) are read through ``get_json``: bounded in time per try, in tries (retried on 429,
5xx and network errors only, with exponential back-off), and in answer size; a message never carries the
token (an answer that echoes it has it blanked out) nor the URL's query string.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

MAX_DETAIL_CHARS = 512


def blanked(text: str, *tokens: str) -> str:
    """``text`` on one line, every token in it blanked out before it is cut to MAX_DETAIL_CHARS."""
    for token in tokens:
        if token:
            text = text.replace(token, "[token]")
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def plain_detail(raw: bytes, token: str) -> str:
    """A refusal's body as text, bounded and with the token blanked out."""
    return blanked(raw.decode("utf-8", "replace"), token)


def shown(url: str) -> str:
    """The URL without its query string, for a message."""
    return url.split("?", 1)[0]


@dataclass(frozen=True)
class Service:
    """Who answers, for messages, the error to raise, and how to read a refusal's body."""

    name: str  # "Resource Manager", "Google"
    error: type[Exception]
    detail: Callable[[bytes, str], str] = plain_detail


def get_json(  # noqa: PLR0913 - the bounds are keyword-only, for the callers' tests to turn
    url: str,
    token: str,
    service: Service,
    *,
    timeout: float,
    attempts: int,
    backoff: float,
    max_bytes: int,
) -> Any:
    """GET ``url`` with a bearer token (none when empty: a public API) and parse its JSON, or raise service.error."""
    last = ""
    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    for attempt in range(attempts):
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - https to a cloud API, or a test's loopback
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above
                raw: bytes = response.read(max_bytes + 1)
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}: {service.detail(e.read(MAX_DETAIL_CHARS * 4), token) or 'no detail'}"
            retry = e.code == HTTPStatus.TOO_MANY_REQUESTS or e.code >= HTTPStatus.INTERNAL_SERVER_ERROR
            if not retry:
                raise service.error(f"{service.name} refused {shown(url)} ({last})") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            last = blanked(str(getattr(e, "reason", e)), token)
        else:
            if len(raw) > max_bytes:
                raise service.error(f"{service.name} answered {shown(url)} with over {max_bytes} bytes")
            try:
                return json.loads(raw)
            except ValueError as e:
                raise service.error(f"{service.name} answered {shown(url)} with something that is not JSON") from e
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise service.error(f"cannot read {shown(url)} from {service.name} after {attempts} tries: {last}")
