"""LocalCluster: an existing kind or minikube cluster, reached through a kubeconfig context."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import keda
from components.target import (
    Autoscaler,
    Destination,
    GpuScheduling,
    ModelStore,
    Peer,
    PrometheusSource,
    Registry,
    StorageClaim,
    registered_outputs,
)
from mlstack import autoscaling, rules, validate
from mlstack.clouds import local
from mlstack.monitoring import ScrapeBy
from mlstack.problems import format_problems


class KubeconfigError(pulumi.RunError):
    """The kubeconfig or the context asked for cannot be used."""


class LocalError(pulumi.RunError):
    """The local target cannot be built with these arguments."""


def default_kubeconfig_paths() -> tuple[str, ...]:
    """The files kubectl reads: $KUBECONFIG (a path list), else ~/.kube/config."""
    env = os.environ.get("KUBECONFIG", "")
    paths = [p for p in env.split(os.pathsep) if p]
    return tuple(paths) if paths else (str(Path.home() / ".kube" / "config"),)


def minify_kubeconfig(documents: Sequence[str], context: str | None, sources: str = "") -> tuple[str, str]:
    """Merge kubeconfig files the way kubectl does and keep one context.

    Returns the chosen context's name and a kubeconfig holding only it, its
    cluster and its user, so the stack's state never carries credentials of
    the user's other clusters. ``context`` None means the current context.
    """
    merged: dict[str, dict[str, Any]] = {"contexts": {}, "clusters": {}, "users": {}}
    current: str | None = None
    for text in documents:
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise KubeconfigError(f"kubeconfig {sources} is not a YAML mapping")
        current = current or data.get("current-context") or None
        for section, entries in merged.items():
            for entry in data.get(section) or []:
                # kubectl: the first file that defines a name wins.
                entries.setdefault(entry.get("name"), entry)
    name = context or current
    if not name:
        raise KubeconfigError(
            f"kubeconfig {sources} has no current context; set one with "
            "`kubectl config use-context NAME` or `pulumi config set kubeContext NAME`"
        )
    if name not in merged["contexts"]:
        available = ", ".join(sorted(n for n in merged["contexts"] if n)) or "none"
        raise KubeconfigError(
            f"mlstack:kubeContext = {name!r}: no such context in kubeconfig {sources}; available: {available}"
        )
    ctx = merged["contexts"][name]
    details = ctx.get("context") or {}
    cluster = merged["clusters"].get(str(details.get("cluster")))
    user = merged["users"].get(str(details.get("user")))
    if cluster is None:
        raise KubeconfigError(f"context {name!r} names cluster {details.get('cluster')!r}, which is not defined")
    minified = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "contexts": [ctx],
        "clusters": [cluster],
        "users": [user] if user is not None else [],
    }
    return name, yaml.safe_dump(minified, sort_keys=False)


def prometheus_url(scrape_by: ScrapeBy, namespace: str) -> str:
    """Where the local cluster's Prometheus answers queries, inside the cluster.

    ``prometheus-annotations``: the community chart as `make monitoring` installs it (release
    ``prometheus``): Service ``prometheus-server``, port 80 to the server's 9090
    (prometheus-community/helm-charts charts/prometheus, 27.19.0: _helpers.tpl ``prometheus.server.fullname``,
    values.yaml ``server.service.servicePort: 80``). ``prometheus-operator``: the Service the operator
    makes for every Prometheus it runs, ``prometheus-operated`` on port 9090 (prometheus-operator
    pkg/prometheus: ``governingServiceName``, the ``web`` port).
    """
    if scrape_by == "prometheus-operator":
        return f"http://prometheus-operated.{namespace}.svc:9090"
    return f"http://prometheus-server.{namespace}.svc:80"


@dataclass(frozen=True)
class LocalClusterArgs:
    kubeconfig_paths: tuple[str, ...]
    # Where the cluster's Prometheus runs (mlstack:localMetricsNamespace): its pods alone may reach the
    # server's and the trainer's metrics ports.
    metrics_namespace: str
    # How that Prometheus finds what to scrape (mlstack:localMetricsDiscovery): annotations, or the
    # Prometheus Operator's ServiceMonitor and PodMonitor.
    scrape_by: ScrapeBy
    context: str | None = None  # None: the kubeconfig's current context
    registry: str | None = None  # e.g. "localhost:5001", kind's local registry
    # The minor the cluster runs (mlstack:kubernetesVersion); None: what kind makes today.
    kubernetes_version: str | None = None


class LocalCluster(pulumi.ComponentResource):
    """A ClusterTarget for kind or minikube: no cloud, no GPU, no external IP."""

    def __init__(self, name: str, args: LocalClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        documents = []
        for path in args.kubeconfig_paths:
            try:
                documents.append(Path(path).read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except OSError as e:
                raise KubeconfigError(f"cannot read kubeconfig {path}: {e.strerror}") from e
        sources = os.pathsep.join(args.kubeconfig_paths)
        if not documents:
            raise KubeconfigError(
                f"no kubeconfig found at {sources}; create a cluster first "
                "(`kind create cluster` or `minikube start`) or point KUBECONFIG at one"
            )
        context, minified = minify_kubeconfig(documents, args.context, sources)
        problems = [
            *rules.parsed("localMetricsNamespace", args.metrics_namespace, validate.dns1123_label),
            *rules.one_of("localMetricsDiscovery", args.scrape_by, local.LOCAL_SCRAPE_BY),
        ]
        if problems:
            raise LocalError(format_problems("cannot build the local target", problems))

        super().__init__("mlstack:local:LocalCluster", name, None, opts)

        self.kube_context: str | None = context
        self.kubernetes_version = args.kubernetes_version or local.LOCAL_DEFAULT_MINOR
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(minified)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            context=context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.registry: Registry | None = Registry(server=args.registry) if args.registry else None
        self.gpu: GpuScheduling | None = None
        # One node: ReadWriteOnce lets the Job and the serving pods share the volume.
        self.model_store = ModelStore(claim=StorageClaim(access_mode="ReadWriteOnce", storage_class=None))
        self.external_load_balancer = local.CLOUD.external_load_balancer
        self.metrics_scrapers: tuple[Peer, ...] = (Peer(args.metrics_namespace),)
        # A Prometheus of the user's own (docs/monitoring.md says how to run one with a single command).
        self.scrape_by: ScrapeBy = args.scrape_by
        # NetworkPolicies are enforced only by a network plugin that implements them: kind's kindnetd does
        # since kind v0.24.0 ("Out-of-the-box support for network policy via
        # sigs.k8s.io/kube-network-policies", release notes); minikube's default does not ("--cni calico",
        # minikube handbook, network_policy.md). The README says how to check.
        self.pod_egress: tuple[Destination, ...] = ()
        # Nothing a kind or minikube user needs beyond the workloads' own outputs.
        self.stack_outputs: dict[str, pulumi.Input[str]] = {}
        # KEDA from its chart, querying that Prometheus inside the cluster: no identity to prove.
        self.autoscaler = Autoscaler(
            source=PrometheusSource(
                server_address=prometheus_url(args.scrape_by, args.metrics_namespace), pod_identity=None
            ),
            keda_versions=(autoscaling.KEDA_CHART_VERSION,),
            ready=(keda.release(name, self.provider, self, {}),),
        )

        self.register_outputs(registered_outputs(self))
