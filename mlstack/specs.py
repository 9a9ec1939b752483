"""What the workloads are asked to run: the app, its training and its serving, as typed values.

The config loader builds them from the stack's keys and ``MlWorkloads`` takes
them as they are, so neither depends on the other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class App:
    namespace: str
    app_name: str
    model_name: str
    model_labels: tuple[str, ...]  # class i's name on line i of the labels file
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
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    min_accuracy: float
    backoff_limit: int
    deadline_seconds: int
    timeout: str  # a Pulumi custom timeout, e.g. "75m"
    cpu: str
    memory: str
    gpus: int  # per pod
    nodes: int = 1  # pods of an Indexed Job, one torchrun node each; 1: the single-pod Job


@dataclass(frozen=True)
class Serving:
    replicas: int
    max_replicas: int
    target_cpu_utilization: int
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    service_port: int
    allowed_source_ranges: tuple[str, ...]
