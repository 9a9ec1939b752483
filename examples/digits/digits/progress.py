"""The trainer's progress, as Prometheus metrics and as one structured log line per epoch.

While the Job runs, the trainer serves its own ``/metrics`` (plain HTTP on ``MLAPP_METRICS_PORT``,
the port the Job names ``metrics``), which the cluster's collector scrapes like the servers'. The
metric names are the trainer's interface to dashboards (deploy/grafana/mlstack.json), as the
server's are (app/mlapp/serve/metrics.py).

Collectors scrape running pods only (GKE's PodMonitoring drops Succeeded and Failed pods with
``filterRunning``, its default; the Prometheus community chart's ``kubernetes-pods`` job drops the
Succeeded, Failed and Completed phases), so after the verdict the trainer keeps serving for
``MLAPP_METRICS_LINGER_SECONDS``: long enough for one more scrape to record it.

The verdict is the gate's the Job hands the trainer (``MLAPP_GATE_METRIC``, ``..._DIRECTION``,
``..._THRESHOLD``), judged on the metrics the trainer writes to ``metrics.json``: the same gate the
publisher applies afterwards. Without a gate there is no verdict.

Several ranks: each process reports its own epoch, step and loss, labelled with its ``rank``
(``RANK``, which torchrun sets; 0 alone); only rank 0 reports the verdict against the gate, and
only the first process of a pod (``LOCAL_RANK`` 0) serves ``/metrics``, as the pod has one metrics
port.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import math
import os
import signal
import socketserver
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import prometheus_client as prom

from digits import contract
from digits.contract import Gate, env_int
from digits.launch import Rank

log = logging.getLogger("digits.progress")

# The trainer's own registry: its /metrics shows its progress and nothing of the process.
REGISTRY = prom.CollectorRegistry(auto_describe=True)
_RUN = ["model", "version"]
EPOCH = prom.Gauge("mlapp_train_epoch", "Epochs this rank has completed", [*_RUN, "rank"], registry=REGISTRY)
EPOCHS = prom.Gauge("mlapp_train_epochs", "Epochs this run trains", _RUN, registry=REGISTRY)
STEP = prom.Gauge("mlapp_train_step", "Optimizer steps this rank has taken", [*_RUN, "rank"], registry=REGISTRY)
LOSS = prom.Gauge(
    "mlapp_train_loss", "Mean training loss over this rank's last epoch", [*_RUN, "rank"], registry=REGISTRY
)
ACCURACY = prom.Gauge(
    "mlapp_train_heldout_accuracy",
    "Held-out accuracy after the last completed epoch",
    [*_RUN, "rank"],
    registry=REGISTRY,
)
MIN_ACCURACY = prom.Gauge(
    "mlapp_train_min_accuracy",
    "The gate's threshold when the gate is on held-out accuracy (accuracy>=threshold); absent otherwise",
    _RUN,
    registry=REGISTRY,
)
GATE = prom.Gauge(
    "mlapp_train_gate_passed",
    "1 when the final metrics met the gate, 0 when they did not; absent before the verdict, and without a gate",
    _RUN,
    registry=REGISTRY,
)

# The metric metrics.json gives the held-out accuracy under, which mlapp_train_min_accuracy shows the gate of.
ACCURACY_METRIC = "accuracy"
ENV_LINGER = contract.ENV_METRICS_LINGER_SECONDS
MAX_LINGER_SECONDS = 600


class Reporter:
    """One training run's progress: the gauges of its labels, and the per-epoch log line."""

    def __init__(self, model: str, version: str, epochs: int, gate: Gate | None, rank: int = 0) -> None:
        self.model, self.version, self.rank = model, version, rank
        run = {"model": model, "version": version}
        # The per-epoch series appear with the first epoch: a 0 before it would read as a measurement.
        self._ranked = {**run, "rank": str(rank)}
        self.gate = gate
        EPOCHS.labels(**run).set(epochs)
        if gate is not None and gate.metric == ACCURACY_METRIC and gate.direction == "maximize":
            MIN_ACCURACY.labels(**run).set(gate.threshold)
        self._run = run  # the verdict's child is made only with the verdict: absent until then

    def epoch_done(self, epoch: int, step: int, loss: float, accuracy: float | None) -> None:
        """Epoch ``epoch`` (1-based) has ended at ``step`` with this mean loss and held-out accuracy
        (None on a rank that does not evaluate: in a group, rank 0 alone does, fit.py)."""
        EPOCH.labels(**self._ranked).set(epoch)
        STEP.labels(**self._ranked).set(step)
        LOSS.labels(**self._ranked).set(loss)
        if accuracy is not None:
            ACCURACY.labels(**self._ranked).set(accuracy)
        log.info("%s", self._line("epoch", epoch=epoch, step=step, loss=loss, heldout_accuracy=accuracy))

    def verdict(self, metrics: Mapping[str, float]) -> bool | None:
        """The gate's answer on the final metrics, recorded by rank 0 alone; None without a gate, or
        when the gate's metric is not one of them (the publisher judges it then)."""
        gate, passed = self.gate, judge(self.gate, metrics)
        if gate is not None and passed is not None and self.rank == 0:
            GATE.labels(**self._run).set(1 if passed else 0)
            fields = {"metric": gate.metric, "value": metrics[gate.metric], "direction": gate.direction}
            log.info("%s", self._line("gate", **fields, threshold=gate.threshold, passed=passed))
        return passed

    def _line(self, event: str, **fields: object) -> str:
        """One JSON object per line, its keys in a fixed order: what a log pipeline parses."""
        head = {"event": event, "model": self.model, "version": self.version, "rank": self.rank}
        return json.dumps({**head, **{k: _finite(v) for k, v in fields.items()}}, separators=(",", ":"))


def _finite(value: object) -> object:
    # JSON has no NaN: a diverged loss is written as null, never as a token parsers refuse.
    return None if isinstance(value, float) and not math.isfinite(value) else value


_current: Reporter | None = None
_lock = threading.Lock()


def epoch_done(epoch: int, step: int, loss: float, accuracy: float | None) -> None:
    """Report an epoch to the run's reporter; nothing when no run is reporting (a test calling fit)."""
    if _current is not None:
        _current.epoch_done(epoch, step, loss, accuracy)


def judge(gate: Gate | None, metrics: Mapping[str, float]) -> bool | None:
    """Whether ``metrics`` pass ``gate``; None without a gate or when its metric is not among them."""
    if gate is None or gate.metric not in metrics:
        return None
    return gate.passes(metrics[gate.metric])


def verdict(metrics: Mapping[str, float], gate: Gate | None) -> bool | None:
    """The gate's answer (``judge``), recorded by the run's reporter when there is one."""
    if _current is not None:
        return _current.verdict(metrics)
    return judge(gate, metrics)


# The trainer's /metrics is reachable from the network (the collector's pods, by NetworkPolicy), so
# it is bounded like every listener of the app: connections served at once (more are closed as they
# arrive), and the time any read or write of one may stall. The request line (64 KiB) and the headers
# (100, 64 KiB each) are bounded by http.server itself (BaseHTTPRequestHandler.parse_request and
# http.client.parse_headers: 414 and 431). prometheus_client's start_http_server bounds none of these.
MAX_SCRAPERS = 4
SCRAPE_TIMEOUT_SECONDS = 5.0


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    """GET /metrics: the trainer's registry in Prometheus's text format; anything else 404."""

    timeout = SCRAPE_TIMEOUT_SECONDS  # StreamRequestHandler.setup: the socket's timeout

    def do_GET(self) -> None:
        if self.path.partition("?")[0] != contract.METRICS_PATH:
            self.send_error(404)
            return
        body = prom.generate_latest(REGISTRY)
        self.send_response(200)
        self.send_header("Content-Type", prom.CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every 15 s is not worth a log line


class _MetricsServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        self._slots = threading.BoundedSemaphore(MAX_SCRAPERS)
        super().__init__(address, _MetricsHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # MAX_SCRAPERS already served: closed, not queued
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # ThreadingMixIn's own, with the slot given back before the socket closes: a client that
        # sees the connection end can connect again at once.
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._slots.release()
            self.shutdown_request(request)


def serve(port: int, host: str = "0.0.0.0") -> http.server.HTTPServer:  # noqa: S104 - the pod's own port; a NetworkPolicy admits the collector only
    """Serve ``REGISTRY`` at ``/metrics`` on ``port`` from a daemon thread; returns the server (shutdown() stops it)."""
    server = _MetricsServer((host, port))
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def _linger(seconds: int) -> None:
    """Wait ``seconds``, or until SIGTERM: a pod deleted meanwhile exits with the run's own code at once,
    not killed by the signal (the Job's podFailurePolicy reads that code)."""
    ended = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: ended.set()) if in_main else None
    try:
        ended.wait(seconds)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def reporting(
    model: str, version: str, epochs: int, gate: Gate | None, env: Mapping[str, str] | None = None
) -> Iterator[Reporter]:
    """Report this run's progress for the duration; with ``MLAPP_METRICS_PORT`` set, serve it too.

    On leaving, a served ``/metrics`` stays up ``MLAPP_METRICS_LINGER_SECONDS`` (default 0) so that
    the collector's next scrape sees the last values and the verdict.
    """
    global _current  # noqa: PLW0603 - one run per process: the training loop reports without being handed it
    env = os.environ if env is None else env
    ranks = Rank.from_env(env)
    port = env_int(env, contract.ENV_METRICS_PORT, 0, 0, 65535)
    linger = env_int(env, ENV_LINGER, 0, 0, MAX_LINGER_SECONDS)
    reporter = Reporter(model, version, epochs, gate, ranks.rank)
    server = serve(port) if port and ranks.local_rank == 0 else None
    if server is not None:
        log.info("training metrics on port %d at %s", server.server_port, contract.METRICS_PATH)
    with _lock:
        _current = reporter
    try:
        yield reporter
    finally:
        with _lock:
            _current = None
        if server is not None:
            if linger:
                log.info("keeping the metrics up %ds for a last scrape", linger)
                _linger(linger)
            server.shutdown()
            server.server_close()
