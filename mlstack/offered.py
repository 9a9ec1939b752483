"""What a cloud says it offers a new cluster now, read from its own answer during preview and up.

Pure: each cloud's target fetches its answer (AKS: Resource Manager's list of versions, read by
``mlstack.clouds.azure_api``; GKE: the engine's serverConfig, read by ``mlstack.clouds.gcp``) into one
shape, ``OfferedVersions``, that ``rules`` judges a pinned version against. Offline, the cloud's catalogue
dates stand in for it (``from_catalogue``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from mlstack import catalogue

if TYPE_CHECKING:  # the clouds' modules import this one: a cloud is handed in, never imported
    from mlstack.clouds.cloud import Cloud


@dataclass(frozen=True)
class OfferedVersions:
    """The minors a new cluster may be created on, and the one it gets when none is asked for."""

    minors: tuple[str, ...]  # oldest first
    default: str | None
    where: str  # for messages: "in AKS location eastus"


def minor_of(version: str) -> str:
    """ "1.35.8-gke.1036000" or "1.35.3" -> "1.35"."""
    return ".".join(version.split(".")[:2])


def sorted_minors(minors: Iterable[str]) -> tuple[str, ...]:
    """Each minor once, oldest first."""
    return tuple(sorted(set(minors), key=catalogue.minor_key))


def from_catalogue(cloud: Cloud, on: date, *, extended: bool, where: str) -> OfferedVersions:
    """What the catalogue says ``cloud`` offers on day ``on``: the offline stand-in for the cloud's answer."""
    return OfferedVersions(tuple(cloud.offered_minors(on, extended)), cloud.default_minor, where)
