"""What every cloud target provides the generic code: one typed place, ``Cloud``, and one instance of it per cloud.

Each cloud module (``mlstack/clouds/<cloud>.py``) ends with its ``CLOUD``, and the registry
(``mlstack.clouds.CLOUDS``) holds them by their mlstack:cloud value. Generic code is handed a ``Cloud`` (or
its ``NodeFacts``) and reads what it needs from it, never the cloud's name: the Kubernetes minors a new
cluster may get, the collector that scrapes it, whether it has a GPU pool and a public load balancer, what its
nodes offer pods. A cloud's own keys and rules (its GPU pool, its regions, its quotas) are its module's, called
by the config's reader for that cloud and by the cloud's component.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from mlstack.capacity import Machine, Resources
from mlstack.catalogue import KubernetesMinor, offered_until
from mlstack.monitoring import ScrapeBy
from mlstack.problems import Problem


@dataclass(frozen=True)
class Sidecar:
    """A container the cloud injects into every pod that mounts the model store: its requests add to the pod's."""

    name: str  # as messages name it, e.g. "the GCS FUSE sidecar"
    requests: Resources


@dataclass(frozen=True)
class NodeFacts:
    """What the capacity check (``mlstack.rules.node_capacity``) needs of a cloud's node pools.

    What a node offers pods is its allocatable resources: capacity minus what the cloud reserves for the
    kubelet and the OS. Beside ours, the cloud runs its own pods on every node and once per cluster on the
    system pool, and each GPU node runs what drives its GPUs.
    """

    system_key: str  # the config key naming the system pool's machine size, e.g. "aksSystemVmSize"
    gpu_key: str  # the config key naming the GPU pool's machine size
    system_machine: Callable[[str], Machine | None]  # a system pool's size: vCPUs and memory; None: not known here
    gpu_machine: Callable[[str], Machine | None]  # a GPU pool's size: vCPUs and memory; None: not known here
    sizes_listed_in: str  # where the sizes it knows are listed, for messages: "mlstack/clouds/gcp.py"
    allocatable: Callable[[Machine], Resources]  # what a node of the machine offers pods
    system_per_node: Resources  # the cloud's own pods on every node
    system_per_cluster: Resources  # the cloud's own pods once per cluster, on the system pool
    gpu_node_extra: Resources  # beside them on each GPU node
    store_sidecar: Sidecar | None  # None: the cloud injects nothing into the pods that mount the model store


@dataclass(frozen=True)
class Cloud:
    """One cluster target's facts, as generic code asks for them."""

    name: str  # the mlstack:cloud value
    service: str  # how messages name its clusters, e.g. "AKS"
    # The minors a new cluster may be created on, oldest first, each with its dates; empty where the cluster
    # runs whatever its own tool made (a local one).
    kubernetes_minors: tuple[KubernetesMinor, ...]
    # The minor a new cluster gets when the stack pins none, as this catalogue knows it (offline).
    default_minor: str
    # How a minor past its standard support is still offered, with {minor} and {until}; "" where it is not.
    extended_support: str
    # How the cluster's collector is told what to scrape: the cloud's own (one), or the ones a stack chooses
    # from (a local cluster's Prometheus, mlstack:localMetricsDiscovery).
    scrape_by: tuple[ScrapeBy, ...]
    gpu_pool: bool  # trains (and may serve) on a GPU pool of its own
    external_load_balancer: bool  # a LoadBalancer Service gets a public address
    # The platform built images target when mlstack:imagePlatform is empty; None: the builder's own.
    image_platform: str | None
    # What its nodes offer and run, for the capacity check; None: the nodes are the user's own, and not judged.
    nodes: NodeFacts | None
    # The rule a storage class (mlstack:storageClass) for the model store must pass on this cloud.
    storage_class: Callable[[str], list[Problem]]

    def offered_minors(self, on: date, extended: bool = False) -> list[str]:
        """The minors a new cluster may still be created on, on day ``on``, oldest first."""
        return [m.minor for m in self.kubernetes_minors if on <= offered_until(m, extended)]
