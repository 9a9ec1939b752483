"""What the workloads are asked to run: the app, its training and its serving, as typed values.

The config loader builds them from the stack's keys and ``MlWorkloads`` takes
them as they are, so neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mlapp.gate import Gate
from mlstack.autoscaling import ScaleOn

# The trainer built when mlstack:trainerContext is empty: the digits example, relative to the project.
DIGITS_CONTEXT: Final = "examples/digits"


@dataclass(frozen=True)
class App:
    namespace: str
    app_name: str
    model_name: str
    # Class i's name on line i of the labels file, replacing the model's own published labels when
    # serving; empty: the model's own are used.
    model_labels: tuple[str, ...]
    log_level: str

    # One ServiceAccount per role, so that a cloud target can grant each only what it needs: the
    # trainer writes the model store, the internet-facing server only reads it.
    @property
    def trainer_service_account(self) -> str:
        """The ServiceAccount the training Job runs as; a cloud target grants it write access to the store."""
        return f"{self.app_name}-trainer"

    @property
    def server_service_account(self) -> str:
        """The ServiceAccount the serving pods run as; a cloud target grants it read access to the store only."""
        return f"{self.app_name}-server"


@dataclass(frozen=True)
class Training:
    """What the training Job runs and how the publish step judges it (docs/trainer-contract.md)."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    gate: Gate  # the publisher judges the trainer's metrics.json with it; the trainer is told it too
    backoff_limit: int
    deadline_seconds: int
    timeout: str  # a Pulumi custom timeout, e.g. "75m"
    cpu: str
    memory: str
    gpus: int  # per pod
    nodes: int = 1  # pods of an Indexed Job, one torchrun node each; 1: the single-pod Job
    # The trainer container's command; empty: the image's ENTRYPOINT/CMD. Part of the model version.
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Serving:
    replicas: int
    max_replicas: int
    # What the replicas scale on (mlstack:serverScaleOn): their requests in flight through KEDA's Prometheus
    # trigger, or their CPU (KEDA's CPU trigger) where no metrics pipeline answers (mlstack/autoscaling.py).
    scale_on: ScaleOn
    target_in_flight: float  # requests in flight per replica the in-flight trigger aims at
    target_cpu_utilization: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    service_port: int
    allowed_source_ranges: tuple[str, ...]
    # Whether the servers run on the GPU pool, one GPU each, with ONNX Runtime's CUDA execution provider
    # (mlstack:serverGpu); they refuse to serve without one rather than fall back to the CPU.
    gpu: bool
