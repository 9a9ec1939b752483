"""A local cluster's facts (mlstack:cloud local): an existing kind or minikube cluster, on the user's own machine.

Its nodes, its Kubernetes version and its Prometheus are the user's own, so there is little to know: the minor
kind makes today, and the two ways a Prometheus of one's own finds what to scrape.
"""

from __future__ import annotations

from typing import Final

from mlstack.clouds.cloud import Cloud
from mlstack.monitoring import ScrapeBy
from mlstack.problems import Problem

# A local cluster runs whatever its tool made. kind v0.33.0 (2026-09) "defaults to Kubernetes 1.37.0"
# (kubernetes-sigs/kind#4248, "bump default image to kindest/node:v1.37.0", and the v0.33.0 release
# notes as corrected there); tools/localup.py pins no node image, so a cluster `make up` creates runs it.
LOCAL_DEFAULT_MINOR = "1.37"

# What a local stack may choose (mlstack:localMetricsDiscovery): its cluster brings its own Prometheus.
LOCAL_SCRAPE_BY: Final[tuple[ScrapeBy, ...]] = ("prometheus-annotations", "prometheus-operator")


def storage_class(value: str) -> list[Problem]:
    """Any class the cluster has: its one node holds the Job and the servers, so ReadWriteOnce shares the store."""
    return []


CLOUD: Final = Cloud(
    name="local",
    service="a local cluster",
    kubernetes_minors=(),
    default_minor=LOCAL_DEFAULT_MINOR,
    extended_support="",
    scrape_by=LOCAL_SCRAPE_BY,
    gpu_pool=False,
    # kind never gives a LoadBalancer Service an address.
    external_load_balancer=False,
    # None builds for the Docker engine's own platform, the one a local cluster's nodes
    # run on ("kind is a tool for running local Kubernetes clusters using Docker container
    # 'nodes'", kind.sigs.k8s.io): an arm64 laptop needs no setting. The provider's
    # default (no platforms: the builder's own) is cited in components/image.py.
    image_platform=None,
    nodes=None,
    storage_class=storage_class,
)
