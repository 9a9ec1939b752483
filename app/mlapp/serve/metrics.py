"""The Prometheus metrics the server exports, and the per-request counting behind them.

Their names and labels are what dashboards and alerts query: renaming one is a
change to the server's interface, not a refactor.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import Any, Final, cast

import prometheus_client as prom
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

# How prometheus_client writes a bucket's bound ("0.0005", "1.0"), so the series are the ones its
# own Histogram exported; the function is untyped upstream.
_bound_label = cast(Callable[[float], str], floatToGoString)

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Counts:
    """A counter family whose values are plain ints, kept by the event loop and read at scrape time.

    prometheus_client's ``Counter.inc`` and ``Histogram.observe`` take a
    ``threading.Lock`` per value they change, and ``observe`` walks the buckets
    in Python: 1.5 us a request for these two families in a tight loop, 3-4 us
    on the busy server (BENCHMARKS.md). Every request is counted on the event loop's
    thread, so no lock is needed; Prometheus reads the same series through
    ``collect`` (a custom collector, https://prometheus.github.io/client_python/collector/custom/).
    Unlike prometheus_client's own counters these export no ``_created`` series,
    which the text format leaves optional and nothing here queries.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: tuple[str, ...], registry: Any = prom.REGISTRY
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.values: dict[tuple[str, ...], int] = {}
        if registry is not None:
            registry.register(self)

    def inc(self, labels: tuple[str, ...]) -> None:
        self.values[labels] = self.values.get(labels, 0) + 1

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        yield family


class Series:
    """One histogram series: a count per bucket (the last one past every bound) and the sum.

    A bucket is "le", as Prometheus defines it: a value equal to a bound counts in that
    bound's bucket (``bisect_left``)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class Histograms:
    """A histogram family, one ``Series`` per label values, counted as plain ints (see ``Counts``).

    ``observe`` is called by one thread at a time: the event loop's for requests;
    for inference, whichever thread runs the batch, and batches never overlap
    (``batching.Batcher``).
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        labelnames: tuple[str, ...] = (),
        registry: Any = prom.REGISTRY,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.bounds = buckets
        self._labels = [_bound_label(b) for b in buckets] + ["+Inf"]
        self.series: dict[tuple[str, ...], Series] = {}
        if registry is not None:
            registry.register(self)

    def child(self, labels: tuple[str, ...] = ()) -> Series:
        """The series of ``labels``, made on first use."""
        found = self.series.get(labels)
        if found is None:
            found = self.series[labels] = Series(self.bounds)
        return found

    def observe(self, value: float, labels: tuple[str, ...] = ()) -> None:
        self.child(labels).observe(value)

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, series in list(self.series.items()):
            cumulative = list(accumulate(series.counts))
            family.add_metric(labels, list(zip(self._labels, cumulative, strict=True)), series.total)
        yield family


def _none() -> int:
    return 0


class Level:
    """A gauge of one series whose value is read at scrape time from ``read``: the owner's own count.

    The owner (``handlers.Endpoints``, ``batching.Batcher``) keeps a plain int on the event loop's
    thread; ``App`` points ``read`` at it. The scrape is answered on the same thread
    (``Endpoints.metrics``), so it sees the count between two requests' steps, never halfway
    through one, and nothing is paid per request beyond the int. ``read`` answers 0 until an
    owner is wired, and is replaced, not added to, when another ``App`` is made in the process.
    """

    def __init__(self, name: str, documentation: str, registry: Any = prom.REGISTRY) -> None:
        self.name = name
        self.documentation = documentation
        self.read: Callable[[], int] = _none
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, value=self.read())


class Occupancy:
    """A count of things in progress (requests in flight) and its integral over time, in count-seconds.

    ``set`` is called at every change of the count, on the owner's one thread: it adds the count
    held since the last change times the time it was held, so between changes the integral grows
    at exactly the count's rate. ``integral`` adds the time since the last change, so a scrape sees
    the integral up to now without anything being paid per second. The count is never negative and
    ``clock`` never goes back (``time.monotonic``), so the integral never decreases.
    """

    __slots__ = ("_accumulated", "_clock", "_level", "_since")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._level = 0
        self._since = clock()
        self._accumulated = 0.0

    @property
    def level(self) -> int:
        return self._level

    def add(self, change: int) -> None:
        """One more in progress (``1``) or one fewer (``-1``)."""
        self.set(self._level + change)

    def set(self, level: int) -> None:
        now = self._clock()
        self._accumulated += self._level * (now - self._since)
        self._since = now
        self._level = level

    def integral(self) -> float:
        """Count-seconds from the start until now."""
        return self._accumulated + self._level * (self._clock() - self._since)


def _nothing() -> float:
    return 0.0


class Total:
    """A counter of one series whose value is read at scrape time from ``read``, as ``Level`` reads a gauge."""

    def __init__(self, name: str, documentation: str, registry: Any = prom.REGISTRY) -> None:
        self.name = name
        self.documentation = documentation
        self.read: Callable[[], float] = _nothing
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


REQUESTS = Counts("mlapp_requests_total", "HTTP requests answered", ("route", "method", "status"))
LATENCY = Histograms(
    "mlapp_request_duration_seconds",
    "Time from request start to the end of the response",
    LATENCY_BUCKETS,
    ("route",),
)
INFERENCE = Histograms(
    "mlapp_inference_duration_seconds",
    "Time of one ONNX Runtime run (one batch)",
    (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
BATCH = Histograms(
    "mlapp_inference_batch_size",
    "Rows per ONNX Runtime run (concurrent requests are batched)",
    (1, 2, 4, 8, 16, 32, 64, 128, 256),
)
# What an autoscaler scales on (KEDA's Prometheus scaler, AverageValue per replica): the requests this
# pod is working on, whatever their rows or their model. BATCH_QUEUE is the part of them not yet running.
IN_FLIGHT = Level(
    "mlapp_requests_in_flight",
    "Inference requests whose body has arrived and whose answer has not been written yet",
)
# IN_FLIGHT integrated over time. A gauge scraped every 15 s is one instant of a count that changes
# thousands of times a second; a counter's ``rate()`` is its per-second increase over the range
# (https://prometheus.io/docs/prometheus/latest/querying/functions/#rate), so
# rate(mlapp_requests_in_flight_seconds_total[1m]) is exactly the mean in flight over that minute.
IN_FLIGHT_SECONDS = Total(
    "mlapp_requests_in_flight_seconds_total",
    "Inference requests in flight integrated over time (request-seconds); its rate() is the mean in flight",
)
BATCH_QUEUE = Level(
    "mlapp_batch_queue_requests",
    "Inference requests waiting for an ONNX Runtime run, not yet running",
)
MODEL_INFO = prom.Gauge("mlapp_model_info", "1 for the model version this server has loaded", ["name", "version"])
EXECUTION_PROVIDER = prom.Gauge(
    "mlapp_execution_provider_info",
    "1 for the ONNX Runtime execution provider the loaded model runs on (first of its session's providers)",
    ["provider"],
)
READY = prom.Gauge("mlapp_model_ready", "1 once the model is loaded and the server is ready")


class RequestMetrics:
    """Counts and times answered requests by route label, method and status."""

    def __init__(self) -> None:
        # Each label set's series is looked up once, then reused.
        self._counted: dict[tuple[str, str, int], tuple[str, str, str]] = {}
        self._timed: dict[str, Series] = {}

    def observe(self, route: str, method: str, status: int, elapsed: float) -> None:
        key = (route, method, status)
        labels = self._counted.get(key)
        if labels is None:
            labels = self._counted[key] = (route, method, str(status))
        REQUESTS.inc(labels)
        series = self._timed.get(route)
        if series is None:
            series = self._timed[route] = LATENCY.child((route,))
        series.observe(elapsed)
