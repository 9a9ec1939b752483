"""The quality gate: a metric, a direction and a threshold, judged on a trainer's metrics.

A gate is written ``accuracy>=0.95`` (maximize: the metric must be at least the threshold) or
``rmse<=0.3`` (minimize: at most). The publisher judges a run's ``metrics.json`` with it before
anything is published (docs/trainer-contract.md); the training Job hands it to the trainer as
``MLAPP_GATE_METRIC``, ``MLAPP_GATE_DIRECTION`` and ``MLAPP_GATE_THRESHOLD``. Pure: no third-party
import.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mlapp import contract, store

# A metric's name: what Prometheus and most trackers accept, and never an operator.
METRIC_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]{0,127}")
_OPERATORS: Final = {">=": "maximize", "<=": "minimize"}
_GATE: Final = re.compile(r"\s*(?P<metric>[^<>=\s]+)\s*(?P<op>>=|<=)\s*(?P<threshold>\S+)\s*")
# A metrics file is small: a few numbers. Bounded, since it comes from the team's trainer.
MAX_METRICS_BYTES: Final = 1 << 20
MAX_METRICS: Final = 1000


class GateError(ValueError):
    """A gate that cannot be judged: badly written, or a metric missing from the run's metrics."""


class MetricsError(ValueError):
    """A metrics file that breaks the contract: not a JSON object of metric names and numbers."""


def check_metric_name(name: str) -> str:
    if not METRIC_NAME.fullmatch(name):
        raise GateError(
            f"metric name {name!r} must be 1-128 characters of letters, digits and _ . : / -, "
            "starting with a letter or _"
        )
    return name


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GateError(f"gate threshold {text!r} is not a number") from None
    if not math.isfinite(value):
        raise GateError(f"gate threshold {text!r} must be a finite number")
    return value


@dataclass(frozen=True)
class Gate:
    metric: str
    direction: str  # one of contract.GATE_DIRECTIONS
    threshold: float

    def __post_init__(self) -> None:
        check_metric_name(self.metric)
        if self.direction not in contract.GATE_DIRECTIONS:
            raise GateError(f"gate direction {self.direction!r} must be one of {', '.join(contract.GATE_DIRECTIONS)}")
        if not math.isfinite(self.threshold):
            raise GateError(f"gate threshold {self.threshold!r} must be a finite number")

    @classmethod
    def parse(cls, text: str) -> Gate:
        """``accuracy>=0.95`` or ``rmse<=0.3``."""
        match = _GATE.fullmatch(text)
        if match is None:
            raise GateError(f"gate {text!r} must read METRIC>=THRESHOLD (maximize) or METRIC<=THRESHOLD (minimize)")
        return cls(match["metric"], _OPERATORS[match["op"]], _threshold(match["threshold"]))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Gate | None:
        """The gate a training Job hands its trainer; None when it hands none."""
        metric = env.get(contract.ENV_GATE_METRIC, "")
        if not metric:
            return None
        direction = env.get(contract.ENV_GATE_DIRECTION, "")
        return cls(metric, direction, _threshold(env.get(contract.ENV_GATE_THRESHOLD, "")))

    @property
    def operator(self) -> str:
        return ">=" if self.direction == "maximize" else "<="

    def __str__(self) -> str:
        return f"{self.metric}{self.operator}{self.threshold:g}"

    def value(self, metrics: Mapping[str, float]) -> float:
        """The gate's metric in ``metrics``; GateError naming what is there when it is missing."""
        if self.metric not in metrics:
            there = ", ".join(sorted(metrics)[:20]) or "none"
            raise GateError(f"the gate's metric {self.metric!r} is not among the run's metrics (it reported: {there})")
        return metrics[self.metric]

    def passes(self, metrics: Mapping[str, float]) -> bool:
        value = self.value(metrics)
        return value >= self.threshold if self.direction == "maximize" else value <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "threshold": self.threshold}


def check_metrics(data: object, where: str) -> dict[str, float]:
    """``data`` as metrics (name -> finite number), or MetricsError naming what is wrong."""
    if not isinstance(data, dict):
        raise MetricsError(f"{where} must hold a JSON object of metric names and numbers, not {type(data).__name__}")
    if len(data) > MAX_METRICS:
        raise MetricsError(f"{where} holds {len(data)} metrics; at most {MAX_METRICS}")
    metrics: dict[str, float] = {}
    for name, value in data.items():
        try:
            check_metric_name(name)
        except GateError as e:
            raise MetricsError(f"{where}: {e}") from None
        # bool is an int to Python, never a metric; NaN and infinity pass no gate honestly.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise MetricsError(f"{where}: metric {name!r} must be a finite number, got {value!r}")
        metrics[name] = float(value)
    return metrics


def read_metrics(path: Path) -> dict[str, float]:
    """A metrics file (``metrics.json``); MetricsError when it is missing, too large or not metrics."""
    try:
        raw = store.read_at_most(path, MAX_METRICS_BYTES)
    except FileNotFoundError:
        raise MetricsError(f"{path} does not exist") from None
    except store.FileTooLarge as e:
        raise MetricsError(f"{e}; a metrics file holds a few numbers") from None
    except OSError as e:
        raise MetricsError(f"cannot read {path}: {e}") from e
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # RecursionError: nested past the parser's depth
        raise MetricsError(f"{path} is not JSON text: {e}") from None
    return check_metrics(data, str(path))
