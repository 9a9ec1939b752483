"""Bounded reads from Azure Resource Manager that no pulumi-azure-native function offers.

Pure (no Pulumi SDK): the AKS target calls these during preview and up with the
deployer's own Entra ID token (the provider's ``getClientToken``), before it
creates anything. Each call is bounded in time, tries and answer size, and an
error never carries the token.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import Any

from mlstack import catalogue, web
from mlstack.offered import OfferedVersions, from_aks_answer

ENDPOINT = "https://management.azure.com"
TIMEOUT_SECONDS = 20.0
ATTEMPTS = 3
# The versions of one location are a few KiB (a dozen minors, each with its patches and upgrades).
MAX_ANSWER_BYTES = 1024 * 1024


class ArmError(Exception):
    """Resource Manager did not answer what was asked; the message says why (never the token)."""


RESOURCE_MANAGER = web.Service("Resource Manager", ArmError)


def get_json(  # noqa: PLR0913 - the bounds are keyword-only, for the tests to turn
    url: str,
    token: str,
    *,
    timeout: float = TIMEOUT_SECONDS,
    attempts: int = ATTEMPTS,
    backoff: float = 1.0,
    max_bytes: int = MAX_ANSWER_BYTES,
) -> Any:
    """GET ``url`` with a bearer token (none when empty: a public API) and parse its JSON, bounded (mlstack.web);
    retried on 429, 5xx and network errors only; ArmError otherwise."""
    return web.get_json(
        url, token, RESOURCE_MANAGER, timeout=timeout, attempts=attempts, backoff=backoff, max_bytes=max_bytes
    )


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
