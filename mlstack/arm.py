"""Bounded reads from Azure Resource Manager that no pulumi-azure-native function offers.

Pure (no Pulumi SDK): the AKS target calls these during preview and up with the
deployer's own Entra ID token (the provider's ``getClientToken``), before it
creates anything. Each call is bounded in time, tries and answer size, and an
error never carries the token.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from mlstack import catalogue
from mlstack.offered import OfferedVersions, from_aks_answer

ENDPOINT = "https://management.azure.com"
TIMEOUT_SECONDS = 20.0
ATTEMPTS = 3
# The versions of one location are a few KiB (a dozen minors, each with its patches and upgrades).
MAX_ANSWER_BYTES = 1024 * 1024
MAX_DETAIL_BYTES = 512


class ArmError(Exception):
    """Resource Manager did not answer what was asked; the message says why (never the token)."""


def get_json(  # noqa: PLR0913 - the bounds are keyword-only, for the tests to turn
    url: str,
    token: str,
    *,
    timeout: float = TIMEOUT_SECONDS,
    attempts: int = ATTEMPTS,
    backoff: float = 1.0,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> Any:
    """GET ``url`` with a bearer token (none when empty: a public API) and parse its JSON; retried on 429, 5xx
    and network errors only."""
    last = ""
    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    for attempt in range(attempts):
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - https to Azure, or a test's loopback
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - as above
                raw: bytes = response.read(max_bytes + 1)
        except urllib.error.HTTPError as e:
            # An answer that echoes the token must not carry it into our message.
            detail = e.read(MAX_DETAIL_BYTES).decode("utf-8", "replace")
            detail = (detail.replace(token, "[token]") if token else detail).strip()
            last = f"HTTP {e.code}: {detail}"
            retry = e.code == HTTPStatus.TOO_MANY_REQUESTS or e.code >= HTTPStatus.INTERNAL_SERVER_ERROR
            if not retry:
                raise ArmError(f"Resource Manager refused {_shown(url)} ({last})") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            last = str(getattr(e, "reason", e))
        else:
            if len(raw) > max_bytes:
                raise ArmError(f"Resource Manager answered {_shown(url)} with over {max_bytes} bytes")
            try:
                return json.loads(raw)
            except ValueError as e:
                raise ArmError(f"Resource Manager answered {_shown(url)} with something that is not JSON") from e
        if attempt + 1 < attempts:
            time.sleep(backoff * 2**attempt)
    raise ArmError(f"cannot read {_shown(url)} from Resource Manager after {attempts} tries: {last}")


def _shown(url: str) -> str:
    """The URL without its query string, for a message."""
    return url.split("?", 1)[0]


def list_aks_versions(subscription_id: str, location: str, token: str) -> OfferedVersions:
    """Ask Resource Manager which Kubernetes versions AKS offers in ``location`` now."""
    path = (
        f"/subscriptions/{urllib.parse.quote(subscription_id)}/providers/Microsoft.ContainerService/"
        f"locations/{urllib.parse.quote(location)}/kubernetesVersions"
    )
    answer = get_json(f"{ENDPOINT}{path}?api-version={catalogue.AKS_VERSIONS_API}", token)
    try:
        return from_aks_answer(answer, location)
    except ValueError as e:
        raise ArmError(str(e)) from None


# What the program calls. The offline harness (tools/harness.py) puts its own answer here while it
# runs a stack, as it answers the providers' invokes.
aks_versions: Callable[[str, str, str], OfferedVersions] = list_aks_versions
