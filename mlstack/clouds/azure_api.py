"""Bounded reads from Azure Resource Manager that no pulumi-azure-native function offers: the Kubernetes
versions AKS offers in a location, and a location's Compute quotas.

Pure (no Pulumi SDK): the AKS target calls these during preview and up with the
deployer's own Entra ID token (the provider's ``getClientToken``), before it
creates anything. Each call is bounded in time, tries and answer size, and an
error never carries the token.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from mlstack import web
from mlstack.clouds.azure import AKS_VERSIONS_API
from mlstack.offered import OfferedVersions, minor_of, sorted_minors
from mlstack.quota import Quota

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


# The plan a minor is offered under without long-term support (KubernetesSupportPlan in the
# ManagedClusters API: KubernetesOfficial | AKSLongTermSupport).
COMMUNITY_SUPPORT_PLAN = "KubernetesOfficial"


def from_aks_answer(answer: Any, location: str) -> OfferedVersions:
    """The minors ``ManagedClusters_ListKubernetesVersions`` offers without LTS, and its default.

    The answer is ``{"values": [{"version": "1.36", "isDefault": true, "isPreview": false,
    "capabilities": {"supportPlan": ["KubernetesOfficial", "AKSLongTermSupport"]}, ...}]}``
    (Azure/azure-rest-api-specs, .../stable/2025-10-01/examples/KubernetesVersions_List.json: the key
    is ``values``, and the list is not paged). A preview minor is not offered; one whose plans lack
    KubernetesOfficial is offered only under long-term support, which mlstack does not configure.
    Raises ValueError for an answer of another shape.
    """
    values = answer.get("values") if isinstance(answer, Mapping) else None
    if not isinstance(values, list):
        raise ValueError(f"AKS answered the Kubernetes versions of {location} without a list of values")
    minors, default = [], None
    for entry in values:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("version"), str):
            continue
        plans = (entry.get("capabilities") or {}).get("supportPlan") or [COMMUNITY_SUPPORT_PLAN]
        if entry.get("isPreview") or COMMUNITY_SUPPORT_PLAN not in plans:
            continue
        minors.append(minor_of(entry["version"]))
        if entry.get("isDefault"):
            default = minor_of(entry["version"])
    return OfferedVersions(sorted_minors(minors), default, f"in AKS location {location}")


def list_aks_versions(subscription_id: str, location: str, token: str) -> OfferedVersions:
    """Ask Resource Manager which Kubernetes versions AKS offers in ``location`` now."""
    path = (
        f"/subscriptions/{urllib.parse.quote(subscription_id)}/providers/Microsoft.ContainerService/"
        f"locations/{urllib.parse.quote(location)}/kubernetesVersions"
    )
    answer = get_json(f"{ENDPOINT}{path}?api-version={AKS_VERSIONS_API}", token)
    try:
        return from_aks_answer(answer, location)
    except ValueError as e:
        raise ArmError(str(e)) from None


# What the program calls. The offline harness (tools/harness.py) puts its own answer here while it
# runs a stack, as it answers the providers' invokes.
aks_versions: Callable[[str, str, str], OfferedVersions] = list_aks_versions


# --- a location's Compute quotas -----------------------------------------------------------------------------

# Usage_List, GET /subscriptions/{subscriptionId}/providers/Microsoft.Compute/locations/{location}/usages:
# "Gets, for the specified location, the current compute resource usage information as well as the limits
# for compute resources under the subscription" (Azure/azure-rest-api-specs, specification/compute/
# resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/computeRPCommon.json). Its ListUsagesResult
# is {value: [{unit, currentValue, limit, name: {value, localizedValue}}], nextLink}, "x-ms-pageable":
# {"nextLinkName": "nextLink"}; unchanged in the later stable versions (2024-11-01, 2025-04-01, 2025-11-01).
# 2024-07-01 is the ComputeRP version azure-mgmt-compute 34.0.0 ships (azure.mgmt.compute.v2024_07_01).
AZURE_USAGES_API = "2024-07-01"
# A location lists about a hundred usages, one page in practice; the bounds stop a loop of nextLinks.
MAX_USAGE_PAGES = 10
MAX_USAGE_PAGE_BYTES = 256 * 1024


def azure_usages(subscription: str, location: str, token: str) -> list[Quota]:
    """The Compute quotas of ``location`` in ``subscription`` (Usage_List), every page of them.

    Each page is one bounded Resource Manager GET (get_json). A nextLink is followed only back to
    Resource Manager, so the token goes nowhere else; more than MAX_USAGE_PAGES pages is an error.
    """
    path = (
        f"/subscriptions/{urllib.parse.quote(subscription, safe='')}/providers/Microsoft.Compute/"
        f"locations/{urllib.parse.quote(location, safe='')}/usages"
    )
    url = f"{ENDPOINT}{path}?api-version={AZURE_USAGES_API}"
    quotas: list[Quota] = []
    for _ in range(MAX_USAGE_PAGES):
        answer = get_json(url, token, max_bytes=MAX_USAGE_PAGE_BYTES)
        value = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(value, list):
            raise ArmError(f"Resource Manager answered the usages of {location} without a list of usages")
        quotas += [quota for entry in value if (quota := _usage(entry)) is not None]
        next_link = answer.get("nextLink")
        if not next_link:
            return quotas
        if not isinstance(next_link, str) or not next_link.startswith(f"{ENDPOINT}/"):
            raise ArmError(
                f"Resource Manager answered the usages of {location} with a nextLink outside {ENDPOINT}; "
                "it was not followed"
            )
        url = next_link
    raise ArmError(f"Resource Manager answered the usages of {location} in more than {MAX_USAGE_PAGES} pages")


def _usage(entry: object) -> Quota | None:
    """One Usage; None for one without a name or numeric currentValue and limit."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("name")
    metric = name.get("value") if isinstance(name, dict) else None
    label = name.get("localizedValue") if isinstance(name, dict) else None
    limit, usage = _number(entry.get("limit")), _number(entry.get("currentValue"))
    if not isinstance(metric, str) or not metric or limit is None or usage is None:
        return None
    return Quota(metric, limit, usage, label if isinstance(label, str) else metric)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# What the program calls. The offline harness (tools/harness.py) puts its own answer here while it runs a
# stack, as it answers the providers' invokes.
azure_quotas: Callable[[str, str, str], list[Quota]] = azure_usages
