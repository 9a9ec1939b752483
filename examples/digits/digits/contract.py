"""What the trainer contract gives this trainer and asks of it, in the contract's own names.

docs/trainer-contract.md is the agreement (the platform's ``app/mlapp/contract.py`` holds the same
names for its side). This trainer keeps its own copy of the few it uses, as any trainer brought to
mlstack would: it imports nothing of the platform's. tests/examples holds the two copies together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# --- what the training Job gives (docs/trainer-contract.md, "Environment") -------------------

ENV_OUTPUT_DIR: Final = "MLAPP_OUTPUT_DIR"
ENV_CHECKPOINT_DIR: Final = "MLAPP_CHECKPOINT_DIR"
ENV_MODEL_RECORD: Final = "MLAPP_MODEL_RECORD"
ENV_MODEL_NAME: Final = "MLAPP_MODEL_NAME"
ENV_MODEL_VERSION: Final = "MLAPP_MODEL_VERSION"
ENV_DEVICE: Final = "MLAPP_DEVICE"
ENV_EPOCHS: Final = "MLAPP_EPOCHS"
ENV_BATCH_SIZE: Final = "MLAPP_BATCH_SIZE"
ENV_LEARNING_RATE: Final = "MLAPP_LEARNING_RATE"
ENV_SEED: Final = "MLAPP_SEED"
ENV_GATE_METRIC: Final = "MLAPP_GATE_METRIC"
ENV_GATE_DIRECTION: Final = "MLAPP_GATE_DIRECTION"
ENV_GATE_THRESHOLD: Final = "MLAPP_GATE_THRESHOLD"
ENV_METRICS_PORT: Final = "MLAPP_METRICS_PORT"
ENV_METRICS_LINGER_SECONDS: Final = "MLAPP_METRICS_LINGER_SECONDS"
ENV_TRAINER_IMAGE: Final = "MLAPP_TRAINER_IMAGE"
# torchrun's own variable for --nnodes, which the Job sets for trainNodes > 1 ("Several nodes"):
# `python -m digits` then starts torchrun around the trainer (digits.__main__).
ENV_TORCHRUN_NNODES: Final = "PET_NNODES"

# The devices the Job names: "cuda" when the pod was given GPUs, "cpu" when it was not.
JOB_DEVICES: Final = ("cuda", "cpu")
GATE_DIRECTIONS: Final = ("maximize", "minimize")
# Where a scraper finds the metrics the trainer serves on MLAPP_METRICS_PORT.
METRICS_PATH: Final = "/metrics"

# --- what the trainer writes into MLAPP_OUTPUT_DIR ("Outputs") --------------------------------

MODEL_FILE: Final = "model.onnx"
METRICS_FILE: Final = "metrics.json"
LABELS_FILE: Final = "labels.txt"
SERVING_FILE: Final = "serving.json"

# --- how it ends ("Exit codes") -----------------------------------------------------------

EXIT_OK: Final = 0  # outputs written (or the version was already published)
EXIT_ERROR: Final = 1  # anything else: the pod is retried
# The trainer judged the model under the gate itself: the Job fails at once instead of retrying a
# deterministic run.
EXIT_GATE: Final = 2
# A rank of a multi-node run that stopped because another rank failed, was stopped or could not be
# reached: the fault is counted on the pod that had it, never again on every pod of the group.
EXIT_PEER: Final = 3


def env_int(env: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    """Variable ``key`` as an integer in [lo, hi]; ``default`` when unset or empty."""
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{key} must be an integer from {lo} to {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ValueError(f"{key} must be an integer from {lo} to {hi}, got {value}")
    return value


_GATE: Final = re.compile(r"\s*(?P<metric>[^<>=\s]+)\s*(?P<op>>=|<=)\s*(?P<threshold>\S+)\s*")
_DIRECTIONS: Final = {">=": "maximize", "<=": "minimize"}


@dataclass(frozen=True)
class Gate:
    """The platform's gate on ``metrics.json``: the metric, ``maximize`` (at least the threshold) or
    ``minimize`` (at most), and the threshold. The trainer may judge itself by it and exit 2."""

    metric: str
    direction: str
    threshold: float

    def __post_init__(self) -> None:
        if self.direction not in GATE_DIRECTIONS:
            raise ValueError(
                f"the gate's direction must be one of {', '.join(GATE_DIRECTIONS)}, got {self.direction!r}"
            )
        if not math.isfinite(self.threshold):
            raise ValueError(f"the gate's threshold must be a finite number, got {self.threshold!r}")

    @classmethod
    def parse(cls, text: str) -> Gate:
        """``accuracy>=0.9`` (maximize) or ``loss<=0.3`` (minimize), as the publisher's --gate reads it."""
        match = _GATE.fullmatch(text)
        if match is None:
            raise ValueError(f"the gate must read METRIC>=THRESHOLD or METRIC<=THRESHOLD, got {text!r}")
        return cls(match["metric"], _DIRECTIONS[match["op"]], _number(match["threshold"], "the gate's threshold"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Gate | None:
        """The gate the Job hands its trainer; None when it hands none."""
        metric = env.get(ENV_GATE_METRIC, "").strip()
        if not metric:
            return None
        direction = env.get(ENV_GATE_DIRECTION, "").strip()
        if direction not in GATE_DIRECTIONS:
            raise ValueError(f"{ENV_GATE_DIRECTION} must be one of {', '.join(GATE_DIRECTIONS)}, got {direction!r}")
        return cls(metric, direction, _number(env.get(ENV_GATE_THRESHOLD, ""), ENV_GATE_THRESHOLD))

    def __str__(self) -> str:
        return f"{self.metric}{'>=' if self.direction == 'maximize' else '<='}{self.threshold:g}"

    def passes(self, value: float) -> bool:
        return value >= self.threshold if self.direction == "maximize" else value <= self.threshold


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {text!r}")
    return value
