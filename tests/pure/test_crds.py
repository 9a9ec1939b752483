"""The strict check of custom objects against their vendored CRDs (tools/crds.py), and what is vendored."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from mlstack import monitoring
from tools import crds

LABELS = {"app.kubernetes.io/name": "mlstack", "app.kubernetes.io/component": "server"}


def _object(scrape_by: monitoring.ScrapeBy) -> dict[str, Any]:
    scrape = monitoring.scrape_object(scrape_by, LABELS, monitoring.Endpoint(9090, "metrics", "/metrics"), 30)
    assert scrape is not None
    return {
        "apiVersion": scrape.api_version,
        "kind": scrape.kind,
        "metadata": {"name": "mlstack-server", "namespace": "mlstack", "labels": {"a": "b"}},
        "spec": scrape.spec,
    }


@pytest.mark.parametrize("scrape_by", ["gmp", "azure-monitor", "prometheus-operator"])
def test_the_builders_objects_are_valid(scrape_by: monitoring.ScrapeBy) -> None:
    assert crds.validate(_object(scrape_by)) == []


ENDPOINTS = {"gmp": "endpoints", "azure-monitor": "podMetricsEndpoints", "prometheus-operator": "podMetricsEndpoints"}


@pytest.mark.parametrize("scrape_by", ["gmp", "azure-monitor", "prometheus-operator"])
def test_an_undeclared_field_is_refused_at_any_depth_not_pruned(scrape_by: monitoring.ScrapeBy) -> None:
    """The API server would drop these silently (structural pruning); the check names each."""
    obj = _object(scrape_by)
    typo = copy.deepcopy(obj)
    typo["spec"][ENDPOINTS[scrape_by]][0]["intervall"] = "30s"
    typo["spec"]["selectr"] = {}
    typo["metadata"]["lables"] = {}
    problems = crds.validate(typo)
    assert len(problems) == 3, problems
    assert any("intervall" in p and p.split(": ")[1].startswith(f"spec.{ENDPOINTS[scrape_by]}.0") for p in problems)
    assert any("selectr" in p for p in problems)
    assert any("lables" in p for p in problems)


@pytest.mark.parametrize("scrape_by", ["gmp", "azure-monitor", "prometheus-operator"])
def test_a_wrong_type_a_missing_field_and_a_bad_name_are_refused(scrape_by: monitoring.ScrapeBy) -> None:
    obj = _object(scrape_by)
    obj["spec"][ENDPOINTS[scrape_by]][0]["interval"] = 30
    del obj["spec"]["selector"]
    obj["metadata"]["name"] = "Not_A_Name"
    problems = crds.validate(obj)
    assert any("interval" in p and "is not of type 'string'" in p for p in problems), problems
    assert any("'selector' is a required property" in p for p in problems), problems
    assert any("metadata.name" in p for p in problems), problems


def test_a_gmp_endpoint_needs_its_port_and_interval() -> None:
    obj = _object("gmp")
    del obj["spec"]["endpoints"][0]["port"]
    assert any("'port' is a required property" in p for p in crds.validate(obj))


def test_a_service_monitor_is_valid_and_a_typo_in_it_is_refused() -> None:
    endpoint = monitoring.Endpoint(9090, "metrics", "/metrics")
    scrape = monitoring.service_scrape_object("prometheus-operator", LABELS, endpoint, 30)
    assert scrape is not None
    obj: dict[str, Any] = {"apiVersion": scrape.api_version, "kind": scrape.kind,
                           "metadata": {"name": "s", "namespace": "n"}, "spec": scrape.spec}  # fmt: skip
    assert crds.validate(obj) == []
    obj["spec"]["endpoints"][0]["targetport"] = "metrics"
    assert any("targetport" in p for p in crds.validate(obj))
    assert monitoring.service_scrape_object("gmp", LABELS, endpoint, 30) is None


def test_a_kind_without_a_vendored_crd_is_not_custom_and_is_named_if_asked() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "namespace": "y"}}
    assert not crds.is_custom(service)
    other = {"apiVersion": "monitoring.coreos.com/v1", "kind": "Probe", "metadata": {}}
    assert not crds.is_custom(other)
    assert "no CRD for monitoring.coreos.com/v1 Probe" in crds.validate(other)[0]


def test_an_object_that_preserves_unknown_fields_stays_open() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
              "properties": {"b": {"type": "string"}}}}}  # fmt: skip
    closed = crds.strict(schema)
    assert closed["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]["a"]


def test_every_vendored_crd_is_named_in_the_readme_with_its_source_and_version() -> None:
    readme = (crds.CRD_DIR / "README.md").read_text(encoding="utf-8")
    files = sorted(crds.CRD_DIR.glob("*.yaml"))
    assert [f.name for f in files] == [
        "azmonitoring.coreos.com_podmonitors.yaml",
        "monitoring.coreos.com_podmonitors.yaml",
        "monitoring.coreos.com_servicemonitors.yaml",
        "monitoring.googleapis.com_podmonitorings.yaml",
    ]
    for path in files:
        row = next(line for line in readme.splitlines() if f"`{path.name}`" in line)
        assert "https://github.com/" in row, row
        assert "commit" in row, row
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert crd["kind"] == "CustomResourceDefinition"
        groups = {
            v.split("/")[0]
            for v in (monitoring.GMP_API_VERSION, monitoring.AZURE_API_VERSION, monitoring.OPERATOR_API_VERSION)
        }
        assert crd["spec"]["group"] in groups
