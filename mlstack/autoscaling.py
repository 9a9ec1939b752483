"""How the serving Deployment scales: KEDA on the requests a replica holds in flight, or the CPU HPA.

Pure builders; ``components/workloads.py`` turns them into objects, ``bench/scaling.py`` simulates
exactly what they render, and the config reads the defaults from here.

KEDA (https://keda.sh/docs/2.20/) creates and owns a HorizontalPodAutoscaler for each
``ScaledObject``. Its Prometheus trigger hands the HPA one number, the answer to a PromQL query,
as an External metric of type ``AverageValue`` (the default ``metricType``:
pkg/scalers/scaler.go ``GetMetricTargetType``, kedacore/keda v2.20.2), so the HPA's controller
computes ``desired = ceil(total / threshold)`` once ``total / (threshold * replicas)`` leaves
its tolerance (kubernetes/kubernetes pkg/controller/podautoscaler/replica_calculator.go,
``GetExternalPerPodMetricReplicas``). The query is the fleet's total of requests in flight,
averaged exactly over a window: the server's ``mlapp_requests_in_flight_seconds_total`` is
the in-flight count integrated over time, so its ``rate`` is the mean in flight
(https://prometheus.io/docs/prometheus/latest/querying/functions/#rate).

One engine everywhere; what differs between targets is only where the query goes and how KEDA
proves who it is (``components.target.PrometheusSource``, which each cluster component fills in).
Values that may be Pulumi outputs (an endpoint, a client id) pass through these builders as ``object``:
this layer imports no SDK.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

ScaleOn = Literal["in-flight", "cpu"]
SCALE_ON: Final[tuple[ScaleOn, ...]] = ("in-flight", "cpu")

KEDA_API_VERSION: Final = "keda.sh/v1alpha1"
SCALED_OBJECT_KIND: Final = "ScaledObject"
TRIGGER_AUTHENTICATION_KIND: Final = "TriggerAuthentication"
# The metric the query integrates: app/mlapp/serve/metrics.py exports it.
IN_FLIGHT_SECONDS: Final = "mlapp_requests_in_flight_seconds_total"

# --- tuned by bench/scaling.py: the simulation reads these and nothing else decides them --------


@dataclass(frozen=True)
class Policy:
    """One HPA scaling policy: at most ``value`` pods (or percent of the current ones) per period."""

    kind: Literal["Pods", "Percent"]
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    """One direction of an HPA's ``behavior``."""

    stabilization_window_seconds: int
    policies: tuple[Policy, ...]
    select_policy: Literal["Max", "Min"] = "Max"


@dataclass(frozen=True)
class Behavior:
    scale_up: Rules
    scale_down: Rules


# How fast the HPA may move, chosen on bench/scaling.py's simulation of a measured replica (BENCHMARKS.md,
# "Autoscaling on requests in flight"). What the HPA reads trails the fleet: the query averages the last W
# seconds, its newest sample is up to a scrape old, and a pod it adds serves only once it has started.
# Up, no window (the signal is already a mean; a window only delays) and at most 4 pods or 20 % a minute,
# whichever is more. A minute is a pod's start, a scrape and a sync: the pods added begin to show before more
# are added. While an overload's queue is inside W the mean reads far past the target (a full pod holds
# 512 in flight), whatever the load needs, so this pace is what bounds the overshoot.
# Down, the HPA's 300 s window and at most 10 % a minute (one pod a minute under ten): in flight falls
# faster than the rate (the curve is convex), so one reading from above asks for too few; stepping down a
# little at a time stops inside the 0.1 tolerance before the lagging mean can show an undershoot.
BEHAVIOR: Final = Behavior(
    scale_up=Rules(0, (Policy("Pods", 4, 60), Policy("Percent", 20, 60))),
    scale_down=Rules(300, (Policy("Percent", 10, 60),)),
)
# Requests in flight per replica the HPA aims at (mlstack:serverTargetInFlight's default). A count, so it
# reads alike for any model: a replica serving one request at a time holds the fraction of time it is busy
# plus its queue (Little's law). At 0.5 it is busy about 40 % of the time: latency has not started to climb,
# in flight grows about in proportion to the rate (so ceil(total / target) is near right from one reading,
# and a pod more or less moves the ratio less than the tolerance), and a load that doubles while new pods
# start still fits. The digits model's p99 starts to climb at 0.76 in flight; 0.5 is two thirds of it. That
# knee is this model's: find yours as bench/scaling.py finds it (one replica at rising open-loop rates, the
# in flight where p99 reaches twice its light-load value) and set about two thirds of it; a model that
# batches or serves several requests at once reaches its knee higher.
DEFAULT_TARGET_IN_FLIGHT: Final = 0.5


def query_window_seconds(scrape_seconds: int) -> int:
    """The range of the ``rate`` in the query: four scrapes, and never under a minute (a ``rate`` needs two
    samples in its range, and one missed scrape must not empty it)."""
    return max(60, 4 * scrape_seconds)


# --- end of what bench/scaling.py tunes -----------------------------------------------------------


def in_flight_query(namespace: str, series_labels: Mapping[str, str], window_seconds: int) -> str:
    """The fleet's mean requests in flight over the window: one number, as the scaler requires."""
    matchers = ",".join(f'{k}="{v}"' for k, v in sorted({"namespace": namespace, **series_labels}.items()))
    return f"sum(rate({IN_FLIGHT_SECONDS}{{{matchers}}}[{window_seconds}s]))"


def behavior_spec(behavior: Behavior) -> dict[str, Any]:
    """The HPA ``behavior`` KEDA passes through (``advanced.horizontalPodAutoscalerConfig.behavior``)."""

    def rules(r: Rules) -> dict[str, Any]:
        return {
            "stabilizationWindowSeconds": r.stabilization_window_seconds,
            "selectPolicy": r.select_policy,
            "policies": [{"type": p.kind, "value": p.value, "periodSeconds": p.period_seconds} for p in r.policies],
        }

    return {"scaleUp": rules(behavior.scale_up), "scaleDown": rules(behavior.scale_down)}


# An HPA KEDA made for a ScaledObject is named keda-hpa-<name> unless told otherwise
# (controllers/keda/hpa.go getHPAName, kedacore/keda v2.20.2). The stack names it as the CPU
# HorizontalPodAutoscaler of earlier versions of this stack was named, and asks KEDA to adopt one
# it finds under that name: otherwise KEDA's admission webhook refuses the ScaledObject while that
# HPA still targets the Deployment ("the workload ... is already managed by the hpa ...",
# apis/keda/v1alpha1/scaledobject_webhook.go), and `pulumi up` creates new resources before it
# deletes old ones. When Pulumi then deletes the HPA it created, KEDA makes it again: its
# ScaledObject controller watches the HPAs it owns (``Owns(&autoscalingv2.HorizontalPodAutoscaler{})``
# in controllers/keda/scaledobject_controller.go) and recreates a missing one on reconcile. Both
# since KEDA 2.17 (``ScaledObjectTransferHpaOwnershipAnnotation``), the oldest this stack meets
# (AKS 1.35's add-on).
TRANSFER_HPA_OWNERSHIP: Final = "scaledobject.keda.sh/transfer-hpa-ownership"


def in_flight_trigger(query: object, server_address: object, target: float) -> dict[str, Any]:
    """KEDA's Prometheus trigger on the fleet's requests in flight, ``target`` per replica (AverageValue).

    Fields from keda-docs content/docs/2.20/scalers/prometheus.md: ``threshold`` is the value per
    replica; ``ignoreNullValues: "false"`` makes an empty answer (no series yet, or a query that
    matches nothing after a relabelling change) an error the ScaledObject reports, instead of a
    silent 0 that would scale the Deployment down to its floor (pkg/scalers/prometheus_scaler.go,
    v2.20.2: an empty result with ignoreNullValues true returns 0). ``metricName`` is left out: it
    is deprecated and gone from the 2.20 parameters. No ``authModes``: "No other auth (via
    `authModes`) can be provided with Azure Pod/Workload Identity Auth", and the same for GCP.
    """
    return {
        "type": "prometheus",
        "metadata": {
            "serverAddress": server_address,
            "query": query,
            "threshold": _decimal(target),
            "ignoreNullValues": "false",
        },
    }


def cpu_trigger(target_utilization: int) -> dict[str, Any]:
    """KEDA's CPU trigger: the HPA's own Resource metric, through the same ScaledObject, for a cluster
    whose metrics pipeline KEDA cannot query (pkg/scalers/cpu_memory_scaler.go: ``value``, and the
    trigger's ``metricType`` Utilization)."""
    return {"type": "cpu", "metricType": "Utilization", "metadata": {"value": str(target_utilization)}}


def _decimal(value: float) -> str:
    """A threshold as KEDA parses it (strconv.ParseFloat): no exponent, no trailing zeros."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def scaled_object_spec(  # noqa: PLR0913 - one object's fields, each named by the caller
    deployment: object,
    *,
    hpa_name: str,
    replicas: int,
    max_replicas: int,
    trigger: Mapping[str, Any],
    authentication: str | None,
    behavior: Behavior = BEHAVIOR,
) -> dict[str, Any]:
    """A ScaledObject's ``spec`` (keda-docs content/docs/2.20/reference/scaledobject-spec.md).

    ``minReplicaCount`` is mlstack:replicas, never 0: with a floor of one or more the scaler is
    always active and ``cooldownPeriod`` and ``activationThreshold`` do nothing ("If the minimum
    replicas is >= 1, the scaler is always active", concepts/scaling-deployments.md), and a replica
    stays up to answer the first request without a cold start. ``pollingInterval`` is KEDA's
    default (30 s); from 1 to N replicas the HPA asks every 15 s, and KEDA queries at each ask
    unless ``useCachedMetrics`` is set, which it is not: a 15 s old answer is already the lag
    bench/scaling.py simulates.
    """
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
        "minReplicaCount": replicas,
        "maxReplicaCount": max_replicas,
        "advanced": {"horizontalPodAutoscalerConfig": {"name": hpa_name, "behavior": behavior_spec(behavior)}},
        "triggers": [{**trigger, "authenticationRef": {"name": authentication}} if authentication else dict(trigger)],
    }
    return spec


def trigger_authentication_spec(pod_identity: Mapping[str, object]) -> dict[str, Any]:
    """A TriggerAuthentication's ``spec``: KEDA's operator proves who it is with the cluster's workload
    identity (keda-docs content/docs/2.20/authentication-providers/azure-ad-workload-identity.md and
    gcp-workload-identity.md)."""
    return {"podIdentity": dict(pod_identity)}


# --- KEDA releases ------------------------------------------------------------------------------

# KEDA's Helm chart, which the GKE and local stacks install (kedacore/charts, keda/Chart.yaml at
# tag v2.20.2, 2026-07-31: "version: 2.20.2", "appVersion: 2.20.2"). The CRDs ship inside the chart
# (keda/templates/crds/, ``crds.install: true``) and are vendored from the same release in
# deploy/crds/keda-2.20.2/ for validation. KEDA 2.20 is tested on Kubernetes 1.33-1.35
# (keda-docs content/docs/2.20/operate/cluster.md, "| v2.20 | v1.33 - v1.35 |").
KEDA_CHART: Final = "keda"
KEDA_CHART_REPOSITORY: Final = "https://kedacore.github.io/charts"
KEDA_CHART_VERSION: Final = "2.20.2"
# The chart's namespace and its operator's ServiceAccount (keda/values.yaml v2.20.2,
# ``serviceAccount.operator.name: keda-operator``): the identity a cloud grants the query to.
KEDA_NAMESPACE: Final = "keda"
KEDA_OPERATOR_ACCOUNT: Final = "keda-operator"
# AKS brings its own KEDA with its add-on instead, at the release its minor chooses: mlstack.clouds.azure
# (AKS_KEDA_VERSIONS).
