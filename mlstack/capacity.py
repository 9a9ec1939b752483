"""Will what we schedule fit on the nodes? Allocatable resources per machine size, and the check.

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
clouds' documented formulas (cited below). What the clouds' own system pods
request is not documented by either cloud; the figures here are planning
estimates from published node listings and the add-ons' own manifests (cited),
rounded up.
"""

from __future__ import annotations

import math
import re
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


# --- GKE -------------------------------------------------------------------------
#
# cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes, "Memory and CPU
# reservations": CPU 6% of the first core, 1% of the next, 0.5% of the next 2,
# 0.25% above 4; shared-core E2 types a flat 1060m. Memory 255 MiB below 1 GiB,
# else 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the next
# 112, 2% above 128; plus 100 MiB for eviction. GKE applies the tiers at 4000/8000/
# 16000/128000 MiB and to the machine's nominal memory, and the kernel sees less
# than nominal (kubernetes/autoscaler cluster-autoscaler/cloudprovider/gce/
# reserved.go, whose COS estimate is used below); together they match observed
# nodes from GKE 1.29 to 1.36 to within 25 MiB, so a 64 MiB margin is kept.
GKE_EVICTION_MIB = 100
GKE_SAFETY_MIB = 64
_GKE_MEMORY_TIERS = ((4000, 0.25), (8000, 0.20), (16000, 0.10), (128000, 0.06), (math.inf, 0.02))


def _gke_cpu_reserved_m(vcpus: int, shared_core: bool) -> float:
    if shared_core:
        return 1060
    tiers = ((1, 0.06), (1, 0.01), (2, 0.005), (math.inf, 0.0025))
    reserved, left = 0.0, float(vcpus)
    for cores, share in tiers:
        taken = min(left, cores)
        reserved += taken * 1000 * share
        left -= taken
    return reserved


def _gke_memory_reserved_mib(nominal_mib: float) -> float:
    if nominal_mib < MIB_PER_GIB:
        return 255
    reserved, floor = 0.0, 0.0
    for ceiling, share in _GKE_MEMORY_TIERS:
        reserved += max(0.0, min(nominal_mib, ceiling) - floor) * share
        floor = ceiling
    return reserved


def _cos_kernel_mib(nominal_mib: float) -> float:
    """What COS's kernel and firmware keep of the machine's memory (cluster-autoscaler's estimate)."""
    return (
        nominal_mib / 64
        + 16
        + (64 if nominal_mib > 3 * MIB_PER_GIB else 0)
        + (8 if nominal_mib <= 8 * MIB_PER_GIB else 0)
        + min(nominal_mib * 0.00175, 248)
    )


def gke_allocatable(machine: Machine) -> Resources:
    nominal = machine.memory_gib * MIB_PER_GIB
    cpu = machine.vcpus * 1000 - _gke_cpu_reserved_m(machine.vcpus, machine.shared_core)
    memory = nominal - _cos_kernel_mib(nominal) - _gke_memory_reserved_mib(nominal) - GKE_EVICTION_MIB - GKE_SAFETY_MIB
    return Resources(math.floor(cpu), math.floor(memory))


# GKE's own pods, from published `kubectl describe node` listings (GKE 1.29-1.36):
# per node fluentbit-gke 105m/230Mi, gke-metrics-agent ~19m/155Mi, netd 7m/60Mi,
# pdcsi-node 10m/20Mi, kube-proxy 100m, gke-metadata-server (Workload Identity)
# 100m/100Mi; once per cluster on the system pool kube-dns 265m/140Mi per replica
# (two), konnectivity-agent 15m/60Mi, metrics-server ~48m/105Mi, event-exporter
# 3m/100Mi, l7-default-backend 10m/20Mi (e.g. a GKE 1.29.6 e2-small node whose
# system pods alone requested 708m and ~1039 MiB: ahmedamsoliman-1/
# Tenderd-DevOps-Assignement-Infra-3 README "Nodes Details"). Rounded up:
GKE_SYSTEM_PER_NODE = Resources(350, 600)
# KEDA's chart, which the GKE stack installs (components/keda.py): operator, metrics apiserver and
# admission webhooks, one replica each at 100m/100Mi (kedacore/charts keda/values.yaml v2.20.2,
# ``resources.operator``, ``.metricServer``, ``.webhooks`` requests).
KEDA_CHART_PODS = Resources(3 * 100, 3 * 100)
GKE_SYSTEM_PER_CLUSTER = Resources(650, 660) + KEDA_CHART_PODS
# On GPU nodes: nvidia-gpu-device-plugin 150m/80Mi (GKE 1.31.5 listing) and the
# nvidia-driver-installer's 150m while it runs.
GKE_GPU_NODE_EXTRA = Resources(300, 80)
# The Cloud Storage FUSE sidecar GKE injects into every pod that mounts the bucket:
# requests 250m CPU, 256Mi memory (and 5Gi ephemeral storage) by default
# (GoogleCloudPlatform/gcs-fuse-csi-driver deploy/base/webhook/deployment.yaml; the
# gke-gcsfuse/cpu-request ... annotations change them). A native sidecar since GKE
# 1.29, so its requests add to the pod's.
GCS_FUSE_SIDECAR = Resources(250, 256)

# Compute Engine machine types (cloud.google.com/compute/docs/general-purpose-machines,
# .../accelerator-optimized-machines): GB of memory per vCPU by family and class.
_GCP_GIB_PER_VCPU = {
    ("e2", "standard"): 4, ("e2", "highmem"): 8, ("e2", "highcpu"): 1,
    ("n1", "standard"): 3.75, ("n1", "highmem"): 6.5, ("n1", "highcpu"): 0.9,
    ("n2", "standard"): 4, ("n2", "highmem"): 8, ("n2", "highcpu"): 1,
    ("n2d", "standard"): 4, ("n2d", "highmem"): 8, ("n2d", "highcpu"): 1,
    ("c2", "standard"): 4, ("g2", "standard"): 4,
}  # fmt: skip
_GCP_FIXED: dict[str, Machine] = {
    "e2-micro": Machine(2, 1, shared_core=True),
    "e2-small": Machine(2, 2, shared_core=True),
    "e2-medium": Machine(2, 4, shared_core=True),
    "a2-highgpu-1g": Machine(12, 85), "a2-highgpu-2g": Machine(24, 170),
    "a2-highgpu-4g": Machine(48, 340), "a2-highgpu-8g": Machine(96, 680),
    "a2-megagpu-16g": Machine(96, 1360),
    "a2-ultragpu-1g": Machine(12, 170), "a2-ultragpu-2g": Machine(24, 340),
    "a2-ultragpu-4g": Machine(48, 680), "a2-ultragpu-8g": Machine(96, 1360),
    "a3-highgpu-1g": Machine(26, 234), "a3-highgpu-2g": Machine(52, 468),
    "a3-highgpu-4g": Machine(104, 936), "a3-highgpu-8g": Machine(208, 1872),
}  # fmt: skip
_GCP_PREDEFINED = re.compile(r"^([a-z0-9]+)-(standard|highmem|highcpu)-([0-9]+)$")
_GCP_CUSTOM = re.compile(r"^(?:([a-z0-9]+)-)?custom-([0-9]+)-([0-9]+)$")


def gcp_machine(machine_type: str) -> Machine | None:
    """vCPUs and memory of a Compute Engine machine type; None for a type this table does not know."""
    if machine_type in _GCP_FIXED:
        return _GCP_FIXED[machine_type]
    custom = _GCP_CUSTOM.match(machine_type)
    if custom:  # memory given in MB, which Compute Engine counts as MiB
        return Machine(int(custom[2]), int(custom[3]) / MIB_PER_GIB)
    predefined = _GCP_PREDEFINED.match(machine_type)
    if predefined:
        per_vcpu = _GCP_GIB_PER_VCPU.get((predefined[1], predefined[2]))
        if per_vcpu is not None:
            vcpus = int(predefined[3])
            return Machine(vcpus, vcpus * per_vcpu)
    return None


# --- AKS -------------------------------------------------------------------------
#
# learn.microsoft.com/azure/aks/node-resource-reservations: CPU reserved by core
# count (1: 60m, 2: 100m, 4: 140m, 8: 180m, 16: 260m, 32: 420m, 64: 740m); memory
# (Kubernetes 1.29+) the lesser of 20 MB x max pods + 50 MB and 25% of the VM's
# memory, plus 100 Mi for eviction. Max pods: 250 with Azure CNI Overlay, AKS's
# default; the larger figure is the conservative one. The kernel keeps some of the
# VM's memory too: 1/64 is assumed, as on GKE.
_AKS_CPU_RESERVED_M = ((1, 60), (2, 100), (4, 140), (8, 180), (16, 260), (32, 420), (64, 740))
AKS_MAX_PODS = 250
AKS_EVICTION_MIB = 100


def _aks_cpu_reserved_m(vcpus: int) -> int:
    for cores, reserved in _AKS_CPU_RESERVED_M:
        if vcpus <= cores:
            return reserved
    # Above the table: its last step, 320m per doubling, continued.
    return 740 + 320 * math.ceil(math.log2(vcpus / 64))


def aks_allocatable(machine: Machine) -> Resources:
    nominal = machine.memory_gib * MIB_PER_GIB
    reserved = min((20 * AKS_MAX_PODS + 50) * 1e6 / 2**20, nominal * 0.25)
    memory = nominal - nominal / 64 - reserved - AKS_EVICTION_MIB
    return Resources(machine.vcpus * 1000 - _aks_cpu_reserved_m(machine.vcpus), math.floor(memory))


# AKS's own pods on this cluster (components/aks.py: Azure CNI Overlay with the Cilium
# dataplane, managed Prometheus, workload identity, the Azure Disk and Files CSI drivers),
# one row per pod with its requests (init containers counted as the scheduler does: the
# larger of the biggest init container and the sum of the others) and its source.
#
# How sure each figure is:
# - Only cilium's figure comes from a Cilium cluster. Every published `kubectl describe
#   node` listing of AKS found is of a cluster without Cilium (it shows kube-proxy). The
#   add-ons they list (cns, ip-masq-agent, cloud-node-manager, the CSI nodes, coredns,
#   konnectivity, metrics-server, the workload identity webhook) should request the same on
#   Cilium, but that is unverified on a Cilium node.
# - The ama-metrics* figures are the add-on chart's defaults: AKS's resource provider fills
#   in the real values and may override them (no listing of them was found).
# - The listings disagree with each other: a January 2026 AKS 1.32.7 node showed azure-cns
#   0m/0Mi and ip-masq-agent 50m/36Mi where the 2025 ones show the figures below (the
#   larger are kept); metrics-server's requests grow with the cluster (an addon-resizer
#   sets them); AKS may resize coredns and the workload identity webhook by VPA
#   (learn.microsoft.com/azure/aks/optimized-addon-scaling).
# Not counted: kube-proxy ("AKS clusters created with network data plane as Cilium don't
# use kube-proxy", learn.microsoft.com/azure/aks/azure-cni-powered-by-cilium);
# retina/hubble-relay (Advanced Container Networking Services, off here); eraser (image
# cleaner, off); azure-npm (Azure network policy, not ours); ama-logs (Container Insights,
# off).


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


# `kubectl describe node` of an AKS 1.32.7 node, Oct 2025 (RamyMaarouf/CST8915, "Lab_6/
# testTested the kubectl commands.txt"), agreeing with one of AKS 1.30.9, Mar 2025: both
# Azure CNI Overlay without Cilium.
_AKS_LISTING = "AKS 1.32.7 node listing (non-Cilium cluster)"
# Azure/prometheus-collector otelcollector/deploy/addon-chart/azure-monitor-metrics-addon:
# values-template.yaml and templates/ (the addon-token-adapter sidecar 20m/30Mi in each
# ama-metrics pod; the HPA's minimum of 2 ama-metrics replicas in _ama-metrics-helpers.tpl).
_AMA_CHART = "chart default, Azure/prometheus-collector azure-monitor-metrics-addon"
# DaemonSets: on every node, the GPU nodes included.
AKS_NODE_PODS = (
    # The agent's containers request nothing; its init container clean-cilium-state 100m/
    # 100Mi (Azure/azure-container-networking test/integration/manifests/cilium/v1.19/
    # cilium-agent/templates/daemonset.yaml; seen on AKS in Azure/AKS#5244).
    SystemPod("cilium", 1, Resources(100, 100), "ACN Cilium v1.19 manifest; Azure/AKS#5244"),
    SystemPod("azure-cns", 1, Resources(40, 250), _AKS_LISTING),
    # Runs on Cilium clusters too (learn.microsoft.com/azure/aks/container-network-performance-ebpf-host-routing).
    SystemPod("azure-ip-masq-agent", 1, Resources(100, 50), _AKS_LISTING),
    SystemPod("cloud-node-manager", 1, Resources(50, 50), _AKS_LISTING),
    SystemPod("csi-azuredisk-node", 1, Resources(30, 60), _AKS_LISTING),
    SystemPod("csi-azurefile-node", 1, Resources(30, 60), _AKS_LISTING),
    # prometheus-collector 50m/150Mi (DsCPURequestLinux, DsMemoryRequestLinux) + addon-token-adapter.
    SystemPod("ama-metrics-node", 1, Resources(70, 180), _AMA_CHART),
)
# Deployments: once per cluster, on the system pool.
AKS_CLUSTER_PODS = (
    # No requests (ACN Cilium v1.19 cilium-operator/templates/deployment.yaml, replicas: 2; Azure/AKS#5244).
    SystemPod("cilium-operator", 2, Resources(0, 0), "ACN Cilium v1.19 manifest; Azure/AKS#5244"),
    # Also AKS's documented default (learn.microsoft.com/azure/aks/customize-resource-configuration); VPA may
    # resize it, and coredns-autoscaler adds replicas as the cluster grows.
    SystemPod("coredns", 2, Resources(100, 70), f"{_AKS_LISTING}; AKS docs, customize-resource-configuration"),
    SystemPod("coredns-autoscaler", 1, Resources(20, 10), _AKS_LISTING),
    # 156m/138Mi in the 2025 listing, 158m/150Mi in the January 2026 one: the larger.
    SystemPod("metrics-server", 2, Resources(158, 150), _AKS_LISTING),
    SystemPod("konnectivity-agent", 2, Resources(20, 20), _AKS_LISTING),
    SystemPod("konnectivity-agent-autoscaler", 1, Resources(20, 10), _AKS_LISTING),
    # VPA may resize it (learn.microsoft.com/azure/aks/optimized-addon-scaling).
    SystemPod("azure-wi-webhook-controller-manager", 2, Resources(100, 20), _AKS_LISTING),
    # prometheus-collector 150m/500Mi (RsCPURequest, RsMemoryRequest) + addon-token-adapter; the HPA may add replicas.
    SystemPod("ama-metrics", 2, Resources(170, 530), _AMA_CHART),
    SystemPod("ama-metrics-ksm", 1, Resources(5, 50), _AMA_CHART),
    # targetallocator 10m/50Mi + config-reader 1m/10Mi.
    SystemPod("ama-metrics-operator-targets", 1, Resources(11, 60), _AMA_CHART),
    # The KEDA add-on (components/aks.py): keda-operator, keda-operator-metrics-apiserver and
    # keda-admission-webhooks. Microsoft publishes no requests for them; taken as KEDA's own chart
    # defaults, 100m/100Mi each (kedacore/charts keda/values.yaml v2.20.2).
    SystemPod("keda (add-on)", 3, Resources(100, 100), "assumed: KEDA chart defaults, kedacore/charts v2.20.2"),
)
# The constants are the tables' sums (per node 420m/750Mi, per cluster 1452m/2010Mi) plus
# 10%, rounded up to 50m and 64 MiB: per node 500m/832Mi, per cluster 1600m/2240Mi. The 10%
# is the spread the listings show between versions (metrics-server's memory moved 9%) and
# room for a chart default AKS sets higher or a VPA resize; it is a margin, not a measurement.
AKS_SYSTEM_MARGIN_PERCENT = 10


def planning_estimate(pods: Sequence[SystemPod], margin_percent: int) -> Resources:
    """The pods' total requests plus ``margin_percent``, rounded up to 50m CPU and 64 MiB."""
    summed = total_requests(pods)
    cpu = math.ceil(summed.cpu_m * (100 + margin_percent) / 100 / 50) * 50
    memory = math.ceil(summed.memory_mib * (100 + margin_percent) / 100 / 64) * 64
    return Resources(cpu, memory)


AKS_SYSTEM_PER_NODE = planning_estimate(AKS_NODE_PODS, AKS_SYSTEM_MARGIN_PERCENT)
AKS_SYSTEM_PER_CLUSTER = planning_estimate(AKS_CLUSTER_PODS, AKS_SYSTEM_MARGIN_PERCENT)
# Ours on each GPU node: the NVIDIA device plugin (components/aks.py).
AKS_GPU_NODE_EXTRA = Resources(10, 32)

# Azure VM sizes (learn.microsoft.com/azure/virtual-machines/sizes): GiB per vCPU by
# series for the general-purpose and compute families a system pool uses.
_AZURE_VM = re.compile(r"^Standard_([A-Z])([0-9]+)([a-z]*)_v([0-9])$")
_AZURE_GIB_PER_VCPU = {"D": 4, "E": 8, "F": 2}


def azure_machine(vm_size: str) -> Machine | None:
    """vCPUs and memory of a general-purpose Azure VM size; None for a size this table does not know.

    GPU sizes carry their own in the GPU catalogue (mlstack.catalogue.AZURE_GPU_SIZES).
    """
    match = _AZURE_VM.match(vm_size)
    if not match or match[1] not in _AZURE_GIB_PER_VCPU:
        return None
    per_vcpu: float = _AZURE_GIB_PER_VCPU[match[1]]
    if match[1] == "D" and "l" in match[3]:  # Dl: the low-memory D sizes, 2 GiB per vCPU
        per_vcpu = 2
    vcpus = int(match[2])
    return Machine(vcpus, vcpus * per_vcpu)


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
