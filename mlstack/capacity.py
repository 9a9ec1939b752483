"""Will what we schedule fit on the nodes? What a node offers and what runs on it, and the check.

Pure (no Pulumi SDK). A pool whose nodes cannot hold what lands there does not
fail at `pulumi up` time with a clear message: its pods sit Pending until a
timeout. So the config refuses it up front, naming the machine-size key:

- the system pool holds the serving pods (replicas plus the one extra pod a
  rolling update surges) and the publish step's pod, each with a serving pod's
  requests plus any sidecar the platform injects, next to the cluster's own
  system pods;
- one GPU node holds the training pod, its sidecar and the node's system pods.

What a node offers pods is its *allocatable* resources: capacity minus what
the cloud reserves for the kubelet and the OS. The reservations are the
clouds' documented formulas, and what the clouds' own system pods request
planning estimates from published node listings and the add-ons' own manifests
(each cited, in the cloud's module in ``mlstack/clouds/``, as its ``NodeFacts``).
Here: the shapes (``Resources``, ``Machine``, ``SystemPod``) and the check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIB_PER_GIB = 1024
# The serving Deployment's rollingUpdate.maxSurge (components/workloads.py uses this):
# during a rollout one pod more than the replicas runs.
ROLLOUT_MAX_SURGE = 1
# The publish Job's pod (components/workloads.py): on the system pool, with a serving pod's requests, since it
# loads the model as the server does, while the serving pods of the version before still run. The rollout
# starts only once it has succeeded; it is counted beside the surge pod all the same, a margin of one pod
# that needs no assumption about when a finished pod's requests are released to the scheduler.
PUBLISH_PODS = 1


def system_pool_pods(replicas: int) -> int:
    """The serving-sized pods the system pool holds at once: the replicas, the rollout's surge and the publish pod."""
    return replicas + ROLLOUT_MAX_SURGE + PUBLISH_PODS


@dataclass(frozen=True)
class Resources:
    """CPU in millicores and memory in MiB."""

    cpu_m: int
    memory_mib: int

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_m + other.cpu_m, self.memory_mib + other.memory_mib)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_m - other.cpu_m, self.memory_mib - other.memory_mib)

    def __mul__(self, n: int) -> Resources:
        return Resources(self.cpu_m * n, self.memory_mib * n)

    def fits_in(self, other: Resources) -> bool:
        return self.cpu_m <= other.cpu_m and self.memory_mib <= other.memory_mib

    def how_many_in(self, free: Resources) -> int:
        """How many pods of these requests fit into ``free``."""
        if free.cpu_m < 0 or free.memory_mib < 0:
            return 0
        by_cpu = free.cpu_m // self.cpu_m if self.cpu_m else math.inf
        by_memory = free.memory_mib // self.memory_mib if self.memory_mib else math.inf
        count = min(by_cpu, by_memory)
        return int(count) if count != math.inf else 10**6

    def __str__(self) -> str:
        return f"{self.cpu_m}m CPU and {self.memory_mib} MiB"


def from_quantities(cpu_cores: float, memory_bytes: float) -> Resources:
    """Requests as Kubernetes quantities parse (cores, bytes), rounded up."""
    return Resources(math.ceil(cpu_cores * 1000), math.ceil(memory_bytes / 2**20))


@dataclass(frozen=True)
class Machine:
    vcpus: int
    memory_gib: float
    shared_core: bool = False  # GCP e2-micro/small/medium


# KEDA's chart, which the GKE stack installs (components/keda.py): operator, metrics apiserver and
# admission webhooks, one replica each at 100m/100Mi (kedacore/charts keda/values.yaml v2.20.2,
# ``resources.operator``, ``.metricServer``, ``.webhooks`` requests).
KEDA_CHART_POD = Resources(100, 100)
KEDA_CHART_REPLICAS = 3
KEDA_CHART_PODS = KEDA_CHART_POD * KEDA_CHART_REPLICAS


@dataclass(frozen=True)
class SystemPod:
    """One of the platform's own pods: how many run (per node for a DaemonSet, per cluster otherwise)."""

    pod: str
    replicas: int
    requests: Resources
    source: str


def total_requests(pods: Sequence[SystemPod]) -> Resources:
    """What the pods request together, each row times its replicas."""
    return sum((p.requests * p.replicas for p in pods), Resources(0, 0))


def planning_estimate(pods: Sequence[SystemPod], margin_percent: int) -> Resources:
    """The pods' total requests plus ``margin_percent``, rounded up to 50m CPU and 64 MiB."""
    summed = total_requests(pods)
    cpu = math.ceil(summed.cpu_m * (100 + margin_percent) / 100 / 50) * 50
    memory = math.ceil(summed.memory_mib * (100 + margin_percent) / 100 / 64) * 64
    return Resources(cpu, memory)


# --- the check -------------------------------------------------------------------


@dataclass(frozen=True)
class Pods:
    what: str  # "serving pod", for the message
    each: Resources
    count: int


def pods_that_fit(
    allocatable: Resources, nodes: int, per_node: Resources, per_cluster: Resources, each: Resources
) -> int:
    """How many pods of ``each`` a pool of ``nodes`` holds beside the system pods.

    The cluster-wide system pods are counted on one node (the pool's first),
    which is where they would crowd a small pool most.
    """
    free = allocatable - per_node
    return sum(each.how_many_in(free - per_cluster if i == 0 else free) for i in range(nodes))


def shortfall(
    allocatable: Resources,
    nodes: int,
    per_node: Resources,
    per_cluster: Resources,
    pods: Sequence[Pods],
) -> str | None:
    """Why the pool cannot hold ``pods``; None when it can. One kind of pod at a time."""
    for group in pods:
        fit = pods_that_fit(allocatable, nodes, per_node, per_cluster, group.each)
        if fit < group.count:
            once = f" and {per_cluster} once" if per_cluster != Resources(0, 0) else ""
            return (
                f"{nodes} node(s) of it hold {fit} {group.what}(s) of {group.each} but {group.count} must run: "
                f"a node offers {allocatable} to pods (its allocatable), the platform's own pods take about "
                f"{per_node} on each node{once}, leaving {allocatable - per_node - per_cluster} on the first"
            )
    return None
