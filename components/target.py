"""The contract every cluster component fulfils.

``MlWorkloads`` (and the image build) take a ``ClusterTarget`` and never ask
which cloud they are on: everything that differs between AKS, GKE and a local
cluster is expressed here as data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import pulumi
import pulumi_kubernetes as k8s

from mlstack.monitoring import ScrapeBy

GPU_RESOURCE: Final = "nvidia.com/gpu"
# The taint every GPU pool carries, so that only pods that ask for a GPU land there.
GPU_TAINT_KEY: Final = "nvidia.com/gpu"
GPU_TAINT_VALUE: Final = "present"
GPU_TAINT_EFFECT: Final = "NoSchedule"
# The label every node pool of a cloud target carries (its value: "system" or "gpu"),
# which the GPU pods and the device plugin select on. One key for every cloud. (GKE
# pools carried mlstack.dev/pool until 2026-11; the provider changes a node pool's
# labels in place, without recreating it, since terraform-provider-google 4.48.0:
# GoogleCloudPlatform/magic-modules#6941. AKS pools always carried this key.)
POOL_LABEL_KEY: Final = "mlstack.io/pool"
GPU_POOL: Final = "gpu"
SYSTEM_POOL: Final = "system"


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: Literal["Equal", "Exists"]
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
    value: str | None = None


@dataclass(frozen=True)
class GpuScheduling:
    """How a pod lands on the GPU pool and asks for its GPUs."""

    node_selector: Mapping[str, str]
    tolerations: tuple[Toleration, ...]
    gpus_per_node: int  # the most a single pod can request
    max_nodes: int  # the most nodes the pool scales to (gpuMaxNodes): a multi-node Job's pods must fit in them
    gpu_model: str  # e.g. "nvidia-tesla-t4", for labels and messages
    resource_name: str = GPU_RESOURCE
    # The cloud's node sizes with this GPU and the GPUs each carries, named when a pod asks for too many.
    node_sizes: Mapping[str, int] = field(default_factory=dict)
    # Environment a CUDA container needs on this target's GPU nodes (e.g. GKE's
    # driver directory on the loader path); empty where the runtime injects it.
    container_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PodPlacement:
    """Where a pod may run: the GPU pool's node selector and the tolerations of its taints."""

    node_selector: dict[str, str] | None = None
    tolerations: list[k8s.core.v1.TolerationArgs] | None = None


def pod_placement(gpu: GpuScheduling | None) -> PodPlacement:
    """On the GPU pool for a pod that asks for a GPU (or serves one: the device plugin); anywhere without."""
    if gpu is None:
        return PodPlacement()
    return PodPlacement(
        node_selector=dict(gpu.node_selector),
        tolerations=[
            k8s.core.v1.TolerationArgs(key=t.key, operator=t.operator, value=t.value, effect=t.effect)
            for t in gpu.tolerations
        ],
    )


@dataclass(frozen=True)
class Registry:
    """Where images are pushed and pulled; the cluster pulls without pull secrets."""

    server: pulumi.Input[str]
    username: pulumi.Input[str] | None = None
    password: pulumi.Output[str] | None = None  # always a secret Output when set


@dataclass(frozen=True)
class StorageClaim:
    """A PersistentVolumeClaim the workloads create and mount."""

    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"]
    storage_class: str | None  # None: the cluster's default class


@dataclass(frozen=True)
class CsiVolume:
    """An inline CSI volume (e.g. a GCS bucket through the GCS FUSE driver)."""

    driver: str
    volume_attributes: Mapping[str, pulumi.Input[str]]


@dataclass(frozen=True)
class Peer:
    """Pods of another namespace a NetworkPolicy lets in or out: the namespace by name, the pods by labels
    (empty: every pod of that namespace)."""

    namespace: str
    pod_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Destination:
    """Addresses outside the cluster a pod may connect to, on these ports, and why (with its source)."""

    cidr: str
    ports: tuple[int, ...]
    why: str
    protocol: Literal["TCP", "UDP"] = "TCP"
    except_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelStore:
    """How the training Job and the serving pods share the model artifact.

    Exactly one of ``claim`` and ``csi``. The trainer and the servers run as two
    ServiceAccounts the workloads create (the app's ``trainer_service_account``
    and ``server_service_account``), each with its own annotations, so that a
    cloud can give the trainer write access and the servers read access only;
    they get a token only when ``needs_service_account_token`` (a store the app
    itself reaches through workload identity).
    """

    claim: StorageClaim | None = None
    csi: CsiVolume | None = None
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    trainer_account_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    server_account_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    needs_service_account_token: bool = False
    # What the pods themselves must reach for the store: a driver that runs inside the pod (GKE's
    # gcsfuse sidecar) talks to its cloud from the pod's network; a volume the node mounts needs nothing.
    egress: tuple[Destination, ...] = ()

    def __post_init__(self) -> None:
        if (self.claim is None) == (self.csi is None):
            raise ValueError("a ModelStore has exactly one of claim and csi")


@dataclass(frozen=True)
class PrometheusSource:
    """Where KEDA's Prometheus scaler sends the query, and how it authenticates there.

    ``server_address`` has no trailing slash: the scaler appends ``/api/v1/query``
    (pkg/scalers/prometheus_scaler.go, kedacore/keda v2.20.2). ``pod_identity`` is the
    TriggerAuthentication's ``spec.podIdentity`` (None: no authentication, a Prometheus inside the
    cluster). ``series_labels`` are matchers every query adds beyond the namespace (GKE's query API
    answers for the whole project: the cluster's name keeps other clusters' pods out).
    """

    server_address: pulumi.Input[str]
    pod_identity: Mapping[str, pulumi.Input[str]] | None
    series_labels: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Autoscaler:
    """KEDA on this cluster, as the serving Deployment's ScaledObject needs it (mlstack/autoscaling.py)."""

    source: PrometheusSource  # where the query about the servers' load goes, and how KEDA authenticates
    # The KEDA releases this cluster may run, oldest first: every object must satisfy each one's CRDs.
    keda_versions: tuple[str, ...]
    # What must exist before a ScaledObject is applied: KEDA itself (its CRDs and admission webhook) and
    # the grants its operator queries with.
    ready: tuple[pulumi.Resource, ...] = ()


class ClusterTarget(Protocol):
    """What a cluster component (AKS, GKE, local) offers the workloads."""

    @property
    def provider(self) -> k8s.Provider:
        """The Kubernetes provider built from this cluster's kubeconfig."""
        ...

    @property
    def kubeconfig(self) -> pulumi.Output[str]:
        """Always a secret Output."""
        ...

    @property
    def registry(self) -> Registry | None:
        """None: nothing is pushed; images must already be reachable."""
        ...

    @property
    def gpu(self) -> GpuScheduling | None:
        """None: the cluster has no GPU pool and nothing asks for a GPU."""
        ...

    @property
    def model_store(self) -> ModelStore: ...

    @property
    def stack_outputs(self) -> Mapping[str, pulumi.Input[str]]:
        """This cloud's own stack outputs (cluster name, registry, the credentials command), declared once: the
        component registers them (``registered_outputs``) and the stack exports them under the same names."""
        ...

    @property
    def kubernetes_version(self) -> str:
        """The Kubernetes minor the cluster runs ("1.36"): pinned, or the one the cloud gives a new cluster."""
        ...

    @property
    def kube_context(self) -> str | None:
        """The kubeconfig context to name in commands printed for the user; None: its current one."""
        ...

    @property
    def external_load_balancer(self) -> bool:
        """Whether LoadBalancer Services get an external address (kind never gives one)."""
        ...

    @property
    def metrics_scrapers(self) -> tuple[Peer, ...]:
        """The cluster's monitoring: the only pods a NetworkPolicy lets reach the server's and the trainer's
        metrics port."""
        ...

    @property
    def scrape_by(self) -> ScrapeBy:
        """How the cluster's own collector is told what to scrape (mlstack/monitoring.py)."""
        ...

    @property
    def pod_egress(self) -> tuple[Destination, ...]:
        """What every pod of this cluster must reach beyond the cluster's DNS pods (e.g. DNS the node answers)."""
        ...

    @property
    def autoscaler(self) -> Autoscaler:
        """KEDA on this cluster: the servers scale on their requests in flight through it."""
        ...


def registered_outputs(target: ClusterTarget) -> dict[str, pulumi.Input[str]]:
    """What a cluster component registers as its outputs: its stack outputs under their exported names, and the
    kubeconfig (a secret Output, which the stack exports beside the app's outputs rather than among the cloud's)."""
    return {**target.stack_outputs, "kubeconfig": target.kubeconfig}
