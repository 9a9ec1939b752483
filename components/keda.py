"""KEDA from its Helm chart, for the targets whose cloud does not run it (GKE, a local cluster).

AKS runs its own (the managed add-on, components/aks.py); a cluster has room for one: "Only one
external metric server is allowed in the Kubernetes cluster" (articles/aks/keda-about.md), since
KEDA serves the cluster's one ``v1beta1.external.metrics.k8s.io`` APIService (kedacore/charts
keda/templates/metrics-server/apiservice.yaml, v2.20.2).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from mlstack import autoscaling

# `pulumi up` waits for the chart's Deployments to be ready (the Release's default); pulling three
# images onto a new node takes a minute or two, so the provider's own five minutes leave room.
RELEASE_TIMEOUT_SECONDS = 600


def release(
    name: str,
    provider: k8s.Provider,
    parent: pulumi.Resource,
    values: Mapping[str, Any],
    depends_on: Sequence[pulumi.Resource] = (),
) -> k8s.helm.v3.Release:
    """KEDA's chart at its pinned version in its own namespace (mlstack/autoscaling.py says which).

    The chart installs the CRDs with the operator (``crds.install: true``, keda/values.yaml), so a
    ScaledObject must wait for this Release: ``Autoscaler.ready`` carries it to the workloads.
    """
    return k8s.helm.v3.Release(
        f"{name}-keda",
        name="keda",
        chart=autoscaling.KEDA_CHART,
        version=autoscaling.KEDA_CHART_VERSION,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=autoscaling.KEDA_CHART_REPOSITORY),
        namespace=autoscaling.KEDA_NAMESPACE,
        create_namespace=True,
        timeout=RELEASE_TIMEOUT_SECONDS,
        values=dict(values),
        opts=pulumi.ResourceOptions(parent=parent, provider=provider, depends_on=list(depends_on)),
    )
