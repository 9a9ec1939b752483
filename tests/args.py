"""The arguments the pure and the component tests build components from: sound ones, and what each refuses.

Whole stacks get theirs from the stack files instead (tests/conftest.py runs them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from components.aks import AksGpuClusterArgs
from components.gke import GkeGpuClusterArgs
from components.target import (
    GPU_POOL,
    GPU_TAINT_EFFECT,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    POOL_LABEL_KEY,
    Autoscaler,
    Destination,
    GpuScheduling,
    ModelStore,
    Peer,
    PrometheusSource,
    Registry,
    StorageClaim,
    Toleration,
)
from components.workloads import MlWorkloadsArgs
from mlapp.gate import Gate
from mlstack import specs
from mlstack.clouds import azure, gcp, local
from mlstack.monitoring import ScrapeBy

# --- the cloud targets -------------------------------------------------------------------


def gke_args(**changes: Any) -> GkeGpuClusterArgs:
    """A zonal GKE cluster with one Spot T4 per GPU node, from zero to one node; ``changes`` override."""
    values: dict[str, Any] = {
        "project": "my-ml-project",
        "region": "us-central1",
        "location": "us-central1-a",
        "kubernetes_version": gcp.GKE_DEFAULT_MINOR,
        "release_channel": "REGULAR",
        "deletion_protection": False,
        "system_machine_type": "e2-standard-2",
        "system_node_count": 1,
        "gpu_machine_type": "n1-standard-4",
        "gpu_type": "nvidia-tesla-t4",
        "gpu_count": 1,
        "gpu_driver_version": "DEFAULT",
        "gpu_min_nodes": 0,
        "gpu_max_nodes": 1,
        "gpu_spot": True,
        "repository_id": "mlstack",
        "workload_namespace": "mlstack",
        "trainer_service_account": "mlstack-trainer",
        "server_service_account": "mlstack-server",
        **changes,
    }
    return GkeGpuClusterArgs(**values)


# An on-demand A100 pool from zero to two nodes.
AKS_ARGS: Final = AksGpuClusterArgs(
    location="westeurope",
    kubernetes_version=azure.AKS_DEFAULT_MINOR,
    upgrade_channel="stable",
    system_vm_size="Standard_D2s_v5",
    system_node_count=2,
    gpu_vm_size="Standard_NC24ads_A100_v4",
    gpu_min_nodes=0,
    gpu_max_nodes=2,
    gpu_spot=False,
)


# --- the app images ------------------------------------------------------------------------

# Image arguments refused before any build, and what the refusal says.
IMAGE_BAD_ARGUMENTS: Final = [
    ({"registry": None}, "set mlstack:localRegistry"),
    ({"platform": "linux/s390x"}, "mlstack:imagePlatform = 'linux/s390x': must be one of linux/amd64, linux/arm64"),
    ({"repository_prefix": "ML Stack"}, "mlstack:appName = 'ML Stack'"),
    ({"server_revision": "not a tag"}, "must be a valid image tag"),
    ({"trainer_revision": "not:a tag"}, "must be a valid image tag"),
    ({"trainer_context": None, "server_context": None}, "both images are prebuilt: there is nothing to build"),
    ({"torch_index_url": "http://download.pytorch.org/whl/cu126"}, "must be an https:// wheel index"),
]


def write_app(root: Path) -> Path:
    """A minimal app/ build context under ``root``."""
    app = root / "app"
    (app / "mlapp").mkdir(parents=True)
    (app / "Dockerfile").write_text("FROM python:3.11-slim AS server\n", encoding="utf-8")
    (app / "mlapp" / "serve.py").write_text("print('serve')\n", encoding="utf-8")
    return app


def write_trainer(root: Path, name: str = "trainer") -> Path:
    """A minimal trainer build context under ``root``: a Dockerfile and the script it runs."""
    context = root / name
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text('FROM python:3.11-slim\nCOPY train.py /\nCMD ["python", "/train.py"]\n')
    (context / "train.py").write_text("print('train')\n", encoding="utf-8")
    return context


# --- the workloads' arguments, for the pure builders and the component under mocks ------

APP: Final = specs.App(
    namespace="ml", app_name="digits", model_name="digits", model_labels=("zero", "one"), log_level="info"
)
TRAINING: Final = specs.Training(
    epochs=3, batch_size=32, learning_rate=0.01, seed=7, gate=Gate("accuracy", "maximize", 0.9), backoff_limit=2,
    deadline_seconds=1800, timeout="40m", cpu="1", memory="2Gi", gpus=1,
)  # fmt: skip
SERVING: Final = specs.Serving(
    replicas=2, max_replicas=6, scale_on="in-flight", target_in_flight=4.0, target_cpu_utilization=60,
    cpu_request="250m", cpu_limit="1", memory_request="256Mi", memory_limit="512Mi", service_port=443,
    allowed_source_ranges=("203.0.113.0/24",), gpu=False,
)  # fmt: skip
SPOT_TOLERATION: Final = Toleration(
    key="kubernetes.azure.com/scalesetpriority", operator="Equal", value="spot", effect="NoSchedule"
)
GPU: Final = GpuScheduling(
    node_selector={POOL_LABEL_KEY: GPU_POOL},
    tolerations=(
        Toleration(key=GPU_TAINT_KEY, operator="Equal", value=GPU_TAINT_VALUE, effect=GPU_TAINT_EFFECT),
        SPOT_TOLERATION,
    ),
    gpus_per_node=1,
    max_nodes=2,
    gpu_model="nvidia-tesla-t4",
    container_env={"LD_LIBRARY_PATH": "/usr/local/nvidia/lib64"},
)
TRAINER_IMAGE: Final = "registry.example.com/ml/trainer:1.0"
SERVER_IMAGE: Final = "registry.example.com/ml/server:1.0"


# KEDA on a fake cluster: a Prometheus that wants a workload identity, and a series label beyond the namespace.
FAKE_AUTOSCALER: Final = Autoscaler(
    source=PrometheusSource(
        server_address="https://prometheus.example.com",
        pod_identity={"provider": "azure-workload", "identityId": "00000000-0000-0000-0000-00000000cafe"},
        series_labels={"cluster": "fake"},
    ),
    keda_versions=("2.17.3",),
)


@dataclass
class FakeTarget:
    """A ClusterTarget without a cloud: the workloads see only what the contract offers."""

    provider: Any = None  # a k8s.Provider under mocks; the pure builders never read it
    kubeconfig: Any = None
    registry: Registry | None = None
    gpu: GpuScheduling | None = None
    model_store: ModelStore = field(
        default_factory=lambda: ModelStore(claim=StorageClaim(access_mode="ReadWriteMany", storage_class="fast"))
    )
    external_load_balancer: bool = True
    kube_context: str | None = None
    kubernetes_version: str = local.LOCAL_DEFAULT_MINOR
    stack_outputs: Mapping[str, Any] = field(default_factory=dict)
    metrics_scrapers: tuple[Peer, ...] = (Peer("monitoring", {"app.kubernetes.io/name": "prometheus"}),)
    scrape_by: ScrapeBy = "gmp"
    pod_egress: tuple[Destination, ...] = ()
    autoscaler: Autoscaler = field(default_factory=lambda: FAKE_AUTOSCALER)


def workloads_args(target: FakeTarget, **changes: Any) -> MlWorkloadsArgs:
    args = MlWorkloadsArgs(
        target=target, app=APP, training=TRAINING, serving=SERVING, trainer_image=TRAINER_IMAGE,
        server_image=SERVER_IMAGE, basic_auth_username="alice", basic_auth_password=None, model_store_size="5Gi",
        kubernetes_version="1.33",
    )  # fmt: skip
    return dataclasses.replace(args, **changes)
