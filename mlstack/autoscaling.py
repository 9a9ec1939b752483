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
proves who it is (``PrometheusSource``, which each cluster component fills in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import pulumi

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


# The HPA's documented defaults for now (kubernetes.io, "Horizontal Pod Autoscaling", "Default Behavior").
BEHAVIOR: Final = Behavior(
    scale_up=Rules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15))),
    scale_down=Rules(300, (Policy("Percent", 100, 15),)),
)
# Requests in flight per replica the HPA aims at (mlstack:serverTargetInFlight's default).
DEFAULT_TARGET_IN_FLIGHT: Final = 4.0


def query_window_seconds(scrape_seconds: int) -> int:
    """The range of the ``rate`` in the query: four scrapes, and never under a minute (a ``rate`` needs two
    samples in its range, and one missed scrape must not empty it)."""
    return max(60, 4 * scrape_seconds)


# --- end of what bench/scaling.py tunes -----------------------------------------------------------


@dataclass(frozen=True)
class PrometheusSource:
    """Where KEDA's Prometheus scaler sends the query, and how it authenticates there.

    ``server_address`` has no trailing slash: the scaler appends ``/api/v1/query``
    (pkg/scalers/prometheus_scaler.go, kedacore/keda v2.20.2). ``pod_identity`` is the
    TriggerAuthentication's ``spec.podIdentity`` (None: no authentication, a Prometheus inside the
    cluster). ``series_labels`` are matchers every query adds beyond the namespace (GKE's query API
    answers for the whole project: the cluster's name keeps other clusters' pods out).
    """

    server_address: pulumi.Input[str]
    pod_identity: Mapping[str, pulumi.Input[str]] | None
    series_labels: Mapping[str, str] = field(default_factory=dict)
    # Whether this KEDA's ScaledObject schema knows the HPA ``tolerance`` (KEDA 2.17, AKS 1.35's add-on, does not).
    supports_tolerance: bool = False


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
