"""KEDA's objects as mlstack/autoscaling.py builds them, held to each vendored KEDA release's CRD."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mlstack import autoscaling, catalogue
from mlstack.clouds import azure
from tools import crds, harness

KEDA_RELEASES = ("keda-2.17.3", "keda-2.19.0", "keda-2.20.2")


def scaled_object(trigger: dict[str, Any], authentication: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": autoscaling.KEDA_API_VERSION,
        "kind": autoscaling.SCALED_OBJECT_KIND,
        "metadata": {"name": "digits-server", "namespace": "ml"},
        "spec": autoscaling.scaled_object_spec(
            "digits-server",
            hpa_name="digits-server",
            replicas=2,
            max_replicas=6,
            trigger=trigger,
            authentication=authentication,
        ),
    }


def test_every_keda_release_a_cluster_may_run_is_vendored() -> None:
    releases = crds.schemas()[(autoscaling.KEDA_API_VERSION, autoscaling.SCALED_OBJECT_KIND)]
    assert set(releases) == set(KEDA_RELEASES)
    assert f"keda-{autoscaling.KEDA_CHART_VERSION}" in releases
    for version in azure.AKS_KEDA_VERSIONS.values():
        assert f"keda-{version}" in releases, version


def test_the_in_flight_scaler_is_valid_for_every_keda_release() -> None:
    query = autoscaling.in_flight_query("ml", {"cluster": "c1"}, 120)
    obj = scaled_object(autoscaling.in_flight_trigger(query, "https://p.example.com", 4.0), "auth")
    assert crds.validate(obj) == []
    auth = {
        "apiVersion": autoscaling.KEDA_API_VERSION,
        "kind": autoscaling.TRIGGER_AUTHENTICATION_KIND,
        "metadata": {"name": "auth", "namespace": "ml"},
        "spec": autoscaling.trigger_authentication_spec({"provider": "azure-workload", "identityId": "abc"}),
    }
    assert crds.validate(auth) == []


def test_the_cpu_scaler_is_valid_for_every_keda_release() -> None:
    assert crds.validate(scaled_object(autoscaling.cpu_trigger(70))) == []


def test_a_field_keda_2_17_lacks_is_refused_by_its_crd_alone() -> None:
    # AKS 1.35's add-on runs KEDA 2.17, whose CRD has no HPA tolerance (graduated to beta in Kubernetes 1.34).
    obj = scaled_object(autoscaling.cpu_trigger(70))
    obj["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["tolerance"] = "0.05"
    problems = crds.validate(obj)
    assert problems, "the 2.17 CRD knows no tolerance"
    assert all("keda-2.17.3" in p for p in problems), problems


def test_the_behavior_sets_no_tolerance() -> None:
    behavior = autoscaling.behavior_spec(autoscaling.BEHAVIOR)
    assert "tolerance" not in behavior["scaleUp"]
    assert "tolerance" not in behavior["scaleDown"]


def test_the_query_is_one_sum_over_the_namespace_and_the_target_s_labels() -> None:
    query = autoscaling.in_flight_query("ml", {"location": "europe-west4", "cluster": "c1"}, 120)
    assert query == (
        'sum(rate(mlapp_requests_in_flight_seconds_total{cluster="c1",location="europe-west4",namespace="ml"}[120s]))'
    )


@pytest.mark.parametrize("scrape", [15, 30, 60])
def test_the_rate_spans_at_least_four_scrapes_and_a_minute(scrape: int) -> None:
    window = autoscaling.query_window_seconds(scrape)
    assert window >= 4 * scrape
    assert window >= 60


@pytest.mark.parametrize(("value", "text"), [(4.0, "4"), (0.5, "0.5"), (1.25, "1.25"), (1e-06, "0.000001")])
def test_thresholds_are_plain_decimals(value: float, text: str) -> None:
    trigger = autoscaling.in_flight_trigger("q", "https://p", value)
    assert trigger["metadata"]["threshold"] == text
    assert "e" not in text.lower()


def test_an_empty_answer_is_an_error_not_a_zero() -> None:
    # A zero would scale the servers to their floor whenever the query matched nothing.
    assert autoscaling.in_flight_trigger("q", "https://p", 1.0)["metadata"]["ignoreNullValues"] == "false"


def test_the_default_target_is_the_one_pulumi_yaml_declares() -> None:
    declared = harness.project_declarations()["mlstack:serverTargetInFlight"]["default"]
    assert Decimal(str(declared)) == Decimal(str(autoscaling.DEFAULT_TARGET_IN_FLIGHT))


def test_an_aks_cluster_s_keda_releases_follow_its_minors() -> None:
    assert azure.aks_keda_versions(("1.35", "1.36")) == ("2.17.3", "2.19.0")
    assert azure.aks_keda_versions(("1.36",)) == ("2.19.0",)
    # A minor the table has no row for is taken as its newest.
    assert azure.aks_keda_versions(("1.38",)) == ("2.19.0",)


def test_every_minor_aks_offers_today_has_a_keda_row() -> None:
    """Dated: AKS adds a minor, its add-on's KEDA must be looked up and its CRD vendored."""
    offered = azure.CLOUD.offered_minors(catalogue.today())
    missing = [m for m in offered if m not in azure.AKS_KEDA_VERSIONS]
    assert missing == [], (
        f"AKS offers {missing} with no KEDA release in AKS_KEDA_VERSIONS: read the 'AKS managed add-ons' column "
        "of supported-kubernetes-versions.md and vendor that release's CRDs in deploy/crds/"
    )
