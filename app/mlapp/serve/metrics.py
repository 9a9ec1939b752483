"""The Prometheus metrics the server exports, and the per-request counting behind them.

Their names and labels are what dashboards and alerts query: renaming one is a
change to the server's interface, not a refactor.
"""

from __future__ import annotations

import prometheus_client as prom

REQUESTS = prom.Counter("mlapp_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = prom.Histogram(
    "mlapp_request_duration_seconds",
    "Time from request start to the end of the response",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
INFERENCE = prom.Histogram(
    "mlapp_inference_duration_seconds",
    "Time of one ONNX Runtime run (one batch)",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
BATCH = prom.Histogram(
    "mlapp_inference_batch_size",
    "Rows per ONNX Runtime run (concurrent requests are batched)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
MODEL_INFO = prom.Gauge("mlapp_model_info", "1 for the model version this server has loaded", ["name", "version"])
READY = prom.Gauge("mlapp_model_ready", "1 once the model is loaded and the server is ready")


class RequestMetrics:
    """Counts and times answered requests by route label, method and status."""

    def __init__(self) -> None:
        # ``labels()`` hashes and locks on every call; the children are
        # looked up once per label set instead of once per request.
        self._counters: dict[tuple[str, str, int], prom.Counter] = {}
        self._histograms: dict[str, prom.Histogram] = {}

    def observe(self, route: str, method: str, status: int, elapsed: float) -> None:
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = REQUESTS.labels(route, method, str(status))
        counter.inc()
        hist = self._histograms.get(route)
        if hist is None:
            hist = self._histograms[route] = LATENCY.labels(route)
        hist.observe(elapsed)
