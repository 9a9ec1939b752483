"""What a cloud says it offers a new cluster now, read from its own answer during preview and up.

Pure: the AKS and GKE targets fetch the answer (Resource Manager's list of versions, the GKE
engine's serverConfig) and these functions read it into one shape that ``rules`` judges a pinned
version against. Offline, the catalogue's dates stand in for it (``from_catalogue``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from mlstack import catalogue

# The plan a minor is offered under without long-term support (KubernetesSupportPlan in the
# ManagedClusters API: KubernetesOfficial | AKSLongTermSupport).
COMMUNITY_SUPPORT_PLAN = "KubernetesOfficial"


@dataclass(frozen=True)
class OfferedVersions:
    """The minors a new cluster may be created on, and the one it gets when none is asked for."""

    minors: tuple[str, ...]  # oldest first
    default: str | None
    where: str  # for messages: "in AKS location eastus"


def minor_of(version: str) -> str:
    """ "1.35.8-gke.1036000" or "1.35.3" -> "1.35"."""
    return ".".join(version.split(".")[:2])


def _sorted(minors: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(minors), key=catalogue.minor_key))


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
    return OfferedVersions(_sorted(minors), default, f"in AKS location {location}")


@dataclass(frozen=True)
class GkeServerConfig:
    """What pulumi-gcp's getEngineVersions passes on of the engine's serverConfig."""

    valid_master_versions: Sequence[str]
    channel_defaults: Mapping[str, str]  # release_channel_default_version
    channel_latest: Mapping[str, str]  # release_channel_latest_version


def from_gke_server_config(config: GkeServerConfig, channel: str, location: str, on: date) -> OfferedVersions:
    """The minors GKE's serverConfig offers a new cluster in ``channel``, and the channel's default.

    pulumi-gcp's getEngineVersions reads projects.locations.getServerConfig but passes on only the
    channel-less ``validMasterVersions`` and each channel's default and latest version, not the
    channel's own list (hashicorp/terraform-provider-google, google/services/container/
    data_source_google_container_engine_versions.go). So a channel offers the valid minors up to its
    latest; EXTENDED, which keeps minors past their standard support, every minor up to its latest
    that the catalogue lists under extended support on day ``on``.
    """
    latest = config.channel_latest.get(channel)
    ceiling = catalogue.minor_key(minor_of(latest)) if latest else None
    minors = {minor_of(v) for v in config.valid_master_versions}
    if channel == catalogue.GKE_EXTENDED_CHANNEL:
        minors |= set(catalogue.offered_minors("gcp", on, extended=True))
    offered = [m for m in minors if ceiling is None or catalogue.minor_key(m) <= ceiling]
    default = config.channel_defaults.get(channel)
    return OfferedVersions(
        _sorted(offered), minor_of(default) if default else None, f"in GKE's {channel} channel at {location}"
    )


def from_catalogue(cloud: str, on: date, *, extended: bool, where: str) -> OfferedVersions:
    """What the catalogue says ``cloud`` offers on day ``on``: the offline stand-in for the cloud's answer."""
    return OfferedVersions(tuple(catalogue.offered_minors(cloud, on, extended)), catalogue.default_minor(cloud), where)
