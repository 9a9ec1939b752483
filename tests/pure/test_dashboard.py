"""The Grafana dashboard (deploy/grafana/mlstack.json) queries only metrics the app really exports.

The names come from the app's own prometheus_client objects (the server's, app/mlapp/serve/metrics.py,
and the digits example trainer's, examples/digits/digits/progress.py), never from a list typed here;
every PromQL expression in the dashboard is read for the metric names it selects.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import prometheus_client as prom
import pytest

from digits import progress
from mlapp.serve import metrics as server_metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "mlstack.json"
# The series names each kind of metric exposes beside its family name (prometheus_client's text format).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def app_metrics() -> Iterator[prom.metrics.MetricWrapperBase | server_metrics.Counts | server_metrics.Histograms]:
    """Every metric object the server's and the trainer's metric modules define: prometheus_client's, and
    the server's own lock-free families."""
    for module in (server_metrics, progress):
        for value in vars(module).values():
            if isinstance(value, prom.metrics.MetricWrapperBase | server_metrics.Counts | server_metrics.Histograms):
                yield value


def exported_series() -> set[str]:
    """Every series name the app can expose, read from its metric objects."""
    names: set[str] = set()
    for metric in app_metrics():
        for family in metric.describe():
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


# --- reading PromQL -----------------------------------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")
_GRAFANA_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords,
    label names (in matchers and grouping clauses), durations, numbers or Grafana variables."""
    if "__name__" in expr:
        raise ValueError(f"selects a metric by __name__, which this reader does not follow: {expr}")
    text = _STRING.sub(" ", expr)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group().lower() in _KEYWORDS:
            continue  # a function or aggregation, or a keyword
        names.add(match.group())
    return names


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, expression) for every query of every panel, rows' nested panels included."""
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def test_every_query_names_only_metrics_the_app_exports(dashboard: dict[str, Any]) -> None:
    exported = exported_series()
    unknown = [
        f"{title}: {name}" for title, expr in expressions(dashboard) for name in sorted(metric_names(expr) - exported)
    ]
    assert unknown == [], "the dashboard queries metrics the app does not export:\n" + "\n".join(unknown)


def test_every_query_names_a_metric(dashboard: dict[str, Any]) -> None:
    for title, expr in expressions(dashboard):
        assert metric_names(expr), f"{title}: no metric in {expr}"


def test_the_dashboard_shows_what_the_issue_asks_for(dashboard: dict[str, Any]) -> None:
    """Request and error rates, latency quantiles, batch size, version served, replicas, accuracy against the gate."""
    used = {name for _, expr in expressions(dashboard) for name in metric_names(expr)}
    families: dict[prom.metrics.MetricWrapperBase | server_metrics.Counts | server_metrics.Histograms, str] = {
        server_metrics.REQUESTS: "_total",
        server_metrics.LATENCY: "_bucket",
        server_metrics.BATCH: "_bucket",
        server_metrics.MODEL_INFO: "",
        server_metrics.READY: "",
        progress.ACCURACY: "",
        progress.MIN_ACCURACY: "",
        progress.GATE: "",
    }
    for metric, suffix in families.items():
        (family,) = metric.describe()
        assert family.name + suffix in used, f"no panel shows {family.name}"
    queries = [expr for _, expr in expressions(dashboard)]
    assert any('status=~"5.."' in q for q in queries), "no error rate"
    assert {q for q in ("0.5", "0.99") if any(f"histogram_quantile({q}," in e for e in queries)} == {"0.5", "0.99"}


def test_every_query_uses_the_dashboards_datasource_and_namespace(dashboard: dict[str, Any]) -> None:
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace"}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            for selector in re.findall(r"\b(mlapp_\w+)(\{[^}]*\})?", target["expr"]):
                assert 'namespace=~"$namespace"' in selector[1], f"{panel['title']}: {selector[0]} unfiltered"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (route) (rate(mlapp_requests_total{route!~"/v2/health/.*"}[$__rate_interval]))',
            {"mlapp_requests_total"},
        ),
        (
            "histogram_quantile(0.99, sum without (instance) (rate(a_bucket[5m] offset 1h))) / ignoring(le) b",
            {"a_bucket", "b"},
        ),
        ("max by (version) (last_over_time(x{a='b'}[7d])) > bool 0.5 and on (version) y", {"x", "y"}),
        ("clamp_min(sum(rate(c:d_total[1m])), 1e-9) * 100", {"c:d_total"}),
        ('label_replace(up, "a", "$1", "b", "(.*)")', {"up"}),
    ],
)
def test_the_reader_finds_exactly_the_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_typo_in_a_query_is_caught(dashboard: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(dashboard).replace("mlapp_requests_total", "mlapp_request_total"))
    exported = exported_series()
    assert any(metric_names(expr) - exported for _, expr in expressions(broken))
