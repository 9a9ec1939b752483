"""How each cluster's own collector finds the app's metrics: pure builders of the scrape objects.

No monitoring stack of our own runs anywhere; each target's collector is told what to scrape in
its own way (``ClusterTarget.scrape_by``, from its cloud's ``Cloud.scrape_by``):

- ``gmp``: Google Cloud Managed Service for Prometheus on GKE reads ``PodMonitoring`` objects
  (monitoring.googleapis.com/v1) in the pods' namespace; its collectors scrape the selected pods'
  named port (GoogleCloudPlatform/prometheus-engine, charts/operator/crds, v0.17.2).
- ``azure-monitor``: Azure Monitor managed Prometheus on AKS reads ``PodMonitor`` objects of its
  own group, azmonitoring.coreos.com/v1 ("The only change required to the existing OSS CRs ... for
  being picked up by the Managed Prometheus is the API group",
  https://learn.microsoft.com/azure/azure-monitor/containers/prometheus-metrics-scrape-crd), and
  asks for the label limits its pipeline accepts (Azure/prometheus-collector,
  otelcollector/customresources/pod-monitor-template.yaml: "These ensure that the metrics don't get
  dropped").
- ``prometheus-annotations``: a Prometheus that discovers by annotation (the community chart's
  ``kubernetes-service-endpoints`` and ``kubernetes-pods`` jobs, prometheus-community/helm-charts,
  charts/prometheus/values.yaml) scrapes the annotated metrics Service and the annotated trainer pod.
- ``prometheus-operator``: a Prometheus Operator (kube-prometheus-stack, say) on a local cluster that
  has its CRDs reads a ``ServiceMonitor`` for the servers' metrics Service and a ``PodMonitor`` for
  the trainer, which has no Service (monitoring.coreos.com/v1, prometheus-operator v0.93.0).

Each object is validated strictly against the CRD vendored in deploy/crds/ (tools/crds.py). The app's
port and path come in as an ``Endpoint`` (the workloads build it from ``mlapp.contract``): the config
loader reads this module before anything has put ``app/`` on the import path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

ScrapeBy = Literal["gmp", "azure-monitor", "prometheus-annotations", "prometheus-operator"]
SCRAPE_BY: Final[tuple[ScrapeBy, ...]] = ("gmp", "azure-monitor", "prometheus-annotations", "prometheus-operator")
# Which of these a cluster's collector takes is its cloud's (``mlstack.clouds.cloud.Cloud.scrape_by``): the cloud's
# own, or for a local stack the one it names (mlstack:localMetricsDiscovery).

GMP_API_VERSION: Final = "monitoring.googleapis.com/v1"
GMP_KIND: Final = "PodMonitoring"
AZURE_API_VERSION: Final = "azmonitoring.coreos.com/v1"
AZURE_KIND: Final = "PodMonitor"
# Azure/prometheus-collector, otelcollector/customresources/pod-monitor-template.yaml.
AZURE_LABEL_LIMITS: Final = {"labelLimit": 63, "labelNameLengthLimit": 511, "labelValueLengthLimit": 1023}
OPERATOR_API_VERSION: Final = "monitoring.coreos.com/v1"
OPERATOR_POD_KIND: Final = "PodMonitor"
OPERATOR_SERVICE_KIND: Final = "ServiceMonitor"

# The servers are scraped every 30 s; the trainer every 15 s, a run being minutes long.
SERVER_SCRAPE_SECONDS: Final = 30
TRAINER_SCRAPE_SECONDS: Final = 15
# A Prometheus that discovers by annotation scrapes at its own global interval: the community
# chart's default is 1m (charts/prometheus/values.yaml, server.global.scrape_interval).
ANNOTATION_SCRAPE_SECONDS: Final = 60

# The annotations the community chart's discovery jobs read (see the module docstring).
PROMETHEUS_SCRAPE: Final = "prometheus.io/scrape"
PROMETHEUS_PORT: Final = "prometheus.io/port"
PROMETHEUS_PATH: Final = "prometheus.io/path"
PROMETHEUS_SCHEME: Final = "prometheus.io/scheme"


@dataclass(frozen=True)
class Endpoint:
    """Where the app serves its metrics in a pod: the port, the name the pod gives it, the path (plain HTTP)."""

    port: int
    port_name: str
    path: str


def scrape_annotations(endpoint: Endpoint) -> dict[str, str]:
    """Where a Prometheus that discovers by annotation scrapes a Service or pod: the metrics port, plain HTTP."""
    return {
        PROMETHEUS_SCRAPE: "true",
        PROMETHEUS_PORT: str(endpoint.port),
        PROMETHEUS_PATH: endpoint.path,
        PROMETHEUS_SCHEME: "http",
    }


def server_scrape_seconds(scrape_by: ScrapeBy) -> int:
    """How often the servers' metrics are scraped: ours where we tell the collector, its own where it finds
    them by annotation."""
    return ANNOTATION_SCRAPE_SECONDS if scrape_by == "prometheus-annotations" else SERVER_SCRAPE_SECONDS


def trainer_linger_seconds(scrape_by: ScrapeBy) -> int:
    """How long the trainer keeps serving its metrics after the verdict: two of the collector's intervals.

    Collectors scrape running pods only (examples/digits/digits/progress.py says where that is written), so the
    verdict must be up through at least one more scrape after it is set.
    """
    interval = ANNOTATION_SCRAPE_SECONDS if scrape_by == "prometheus-annotations" else TRAINER_SCRAPE_SECONDS
    return 2 * interval


@dataclass(frozen=True)
class ScrapeObject:
    """A custom object telling the cluster's collector to scrape one role's pods."""

    api_version: str
    kind: str
    spec: dict[str, Any]


def scrape_object(
    scrape_by: ScrapeBy, pod_labels: Mapping[str, str], endpoint: Endpoint, interval_seconds: int
) -> ScrapeObject | None:
    """The object that has the collector scrape the pods with ``pod_labels`` on their named metrics port;
    None where annotations do it (``prometheus-annotations``)."""
    selector = {"matchLabels": dict(pod_labels)}
    scrape = {"port": endpoint.port_name, "path": endpoint.path, "scheme": "http", "interval": f"{interval_seconds}s"}
    if scrape_by == "gmp":
        return ScrapeObject(
            GMP_API_VERSION,
            GMP_KIND,
            {"selector": selector, "endpoints": [scrape]},
        )
    if scrape_by == "azure-monitor":
        return ScrapeObject(
            AZURE_API_VERSION,
            AZURE_KIND,
            {**AZURE_LABEL_LIMITS, "selector": selector, "podMetricsEndpoints": [scrape]},
        )
    if scrape_by == "prometheus-operator":
        return ScrapeObject(
            OPERATOR_API_VERSION, OPERATOR_POD_KIND, {"selector": selector, "podMetricsEndpoints": [scrape]}
        )
    return None


def service_scrape_object(
    scrape_by: ScrapeBy, service_labels: Mapping[str, str], endpoint: Endpoint, interval_seconds: int
) -> ScrapeObject | None:
    """The object that has the collector scrape the endpoints of the Service with ``service_labels`` on its
    named metrics port; None where the collector scrapes pods instead (``scrape_object``)."""
    if scrape_by != "prometheus-operator":
        return None
    scrape = {"port": endpoint.port_name, "path": endpoint.path, "scheme": "http", "interval": f"{interval_seconds}s"}
    spec = {"selector": {"matchLabels": dict(service_labels)}, "endpoints": [scrape]}
    return ScrapeObject(OPERATOR_API_VERSION, OPERATOR_SERVICE_KIND, spec)
