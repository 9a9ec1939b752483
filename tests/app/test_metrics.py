"""The server's lock-free counters export exactly the series prometheus_client's own types would.

``mlapp.serve.metrics`` counts in plain ints and hands Prometheus the families at scrape time,
with no lock per value. Dashboards and alerts query these names, labels and buckets, so each family is fed
the same observations as a prometheus_client ``Counter`` or ``Histogram`` in a registry of its
own, values on a bucket's bound and past the last one included, and the scrapes must agree.
"""

from __future__ import annotations

import prometheus_client as prom
from prometheus_client.parser import text_string_to_metric_families

from mlapp.serve.metrics import LATENCY_BUCKETS, Counts, Histograms

OBSERVED = [0.0, 0.0001, 0.0005, 0.00050001, 0.001, 0.0031, 0.25, 5.0, 5.0001, 7.5, 120.0]


def samples(registry: prom.CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
    text = prom.generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")  # prometheus_client's own extra series; ours has none
    }


def test_a_histogram_exports_what_prometheus_clients_histogram_exports() -> None:
    ours, theirs = prom.CollectorRegistry(), prom.CollectorRegistry()
    mine = Histograms("t_seconds", "help", LATENCY_BUCKETS, ("route",), registry=ours)
    reference = prom.Histogram("t_seconds", "help", ["route"], buckets=LATENCY_BUCKETS, registry=theirs)
    for i, value in enumerate(OBSERVED):
        route = "/a" if i % 3 else "/b"
        mine.observe(value, (route,))
        reference.labels(route).observe(value)
    assert samples(ours) == samples(theirs)


def test_an_unlabelled_histogram_with_integer_bounds_too() -> None:
    ours, theirs = prom.CollectorRegistry(), prom.CollectorRegistry()
    bounds = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    mine = Histograms("rows", "help", bounds, registry=ours)
    reference = prom.Histogram("rows", "help", buckets=bounds, registry=theirs)
    for rows in (1, 2, 3, 7, 8, 9, 64, 65, 256, 257, 1024):
        mine.observe(rows)
        reference.observe(rows)
    assert samples(ours) == samples(theirs)


def test_counts_export_what_prometheus_clients_counter_exports() -> None:
    ours, theirs = prom.CollectorRegistry(), prom.CollectorRegistry()
    mine = Counts("t_requests_total", "help", ("route", "status"), registry=ours)
    reference = prom.Counter("t_requests_total", "help", ["route", "status"], registry=theirs)
    for route, status in [("/a", "200"), ("/a", "200"), ("/b", "404"), ("/a", "500")]:
        mine.inc((route, status))
        reference.labels(route, status).inc()
    assert samples(ours) == samples(theirs)
    assert [f.name for f in mine.describe()] == [f.name for f in reference.describe()]
