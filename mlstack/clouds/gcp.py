"""GCP's facts and rules (mlstack:cloud gcp): GKE, the GPU machines of Compute Engine and the drivers GKE installs,
the Kubernetes minors it offers, what its nodes offer pods, its quotas, what it costs, and the rules that judge a
GKE stack's keys against them.

Pure data (and the parsers and rules over it), each fact with its source on the line above; what every cloud
provides generic code is ``CLOUD`` at the end (mlstack/clouds/cloud.py). Where Compute Engine's machines and GPUs
are, zone by zone, is ``mlstack.clouds.gcp_locations``; its quotas are read by ``mlstack.clouds.gcp_api``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Final

from mlstack import capacity, catalogue, cost, prices, rules
from mlstack.capacity import MIB_PER_GIB, Machine, Resources
from mlstack.catalogue import KubernetesMinor, TrainerCuda
from mlstack.clouds import gcp_locations
from mlstack.clouds.cloud import Cloud, NodeFacts, Sidecar
from mlstack.monitoring import ScrapeBy
from mlstack.offered import OfferedVersions, minor_of, sorted_minors
from mlstack.problems import Problem
from mlstack.quota import Increase, Need, Needs, figure

# --- GPU machines, the drivers GKE installs, release channels ---------------------------------------
#
# Sources: Compute Engine "GPU machine types" (cloud.google.com/compute/docs/gpus).
# N1 machines take a GPU attached in a chosen count; the accelerator-optimized
# families (G2, A2, A3) come with a fixed GPU model and count per machine type.


@dataclass(frozen=True)
class GcpAccelerator:
    """One GPU type and the machines it runs on."""

    gpu_type: str  # the accelerator name GKE takes, e.g. "nvidia-tesla-t4"
    family: str  # the machine family, the machine type's first segment, e.g. "n1"
    # developer.nvidia.com/cuda-gpus: T4 7.5, V100 7.0, P100 6.0, P4 6.1, L4 8.9, A100 8.0, H100 9.0.
    compute_capability: tuple[int, int]
    # N1: the counts that may be attached to any N1 machine type.
    attachable_counts: tuple[int, ...] = ()
    # Accelerator-optimized: machine type -> the GPUs it comes with.
    fixed_counts: Mapping[str, int] = field(default_factory=dict)

    def counts_for(self, machine_type: str) -> tuple[int, ...]:
        """The GPU counts valid on ``machine_type`` (of this accelerator's family)."""
        if self.fixed_counts:
            fixed = self.fixed_counts.get(machine_type)
            return (fixed,) if fixed is not None else ()
        return self.attachable_counts


def _g2(count_by_vcpus: Mapping[int, int]) -> dict[str, int]:
    return {f"g2-standard-{vcpus}": count for vcpus, count in count_by_vcpus.items()}


GCP_ACCELERATORS: dict[str, GcpAccelerator] = {
    a.gpu_type: a
    for a in (
        GcpAccelerator("nvidia-tesla-t4", "n1", (7, 5), attachable_counts=(1, 2, 4)),
        GcpAccelerator("nvidia-tesla-v100", "n1", (7, 0), attachable_counts=(1, 2, 4, 8)),
        GcpAccelerator("nvidia-tesla-p100", "n1", (6, 0), attachable_counts=(1, 2, 4)),
        GcpAccelerator("nvidia-tesla-p4", "n1", (6, 1), attachable_counts=(1, 2, 4)),
        GcpAccelerator(
            "nvidia-l4",
            "g2",
            (8, 9),
            fixed_counts=_g2({4: 1, 8: 1, 12: 1, 16: 1, 24: 2, 32: 1, 48: 4, 96: 8}),
        ),
        GcpAccelerator(
            "nvidia-tesla-a100",  # A100 40GB: A2 Standard
            "a2",
            (8, 0),
            fixed_counts={
                "a2-highgpu-1g": 1,
                "a2-highgpu-2g": 2,
                "a2-highgpu-4g": 4,
                "a2-highgpu-8g": 8,
                "a2-megagpu-16g": 16,
            },
        ),
        GcpAccelerator(
            "nvidia-a100-80gb",  # A100 80GB: A2 Ultra
            "a2",
            (8, 0),
            fixed_counts={
                "a2-ultragpu-1g": 1,
                "a2-ultragpu-2g": 2,
                "a2-ultragpu-4g": 4,
                "a2-ultragpu-8g": 8,
            },
        ),
        GcpAccelerator(
            "nvidia-h100-80gb",  # H100 80GB: A3 High
            "a3",
            (9, 0),
            fixed_counts={
                "a3-highgpu-1g": 1,
                "a3-highgpu-2g": 2,
                "a3-highgpu-4g": 4,
                "a3-highgpu-8g": 8,
            },
        ),
    )
}

# GKE release channels (container.v1 ReleaseChannel.Channel, without UNSPECIFIED).
GKE_RELEASE_CHANNELS = ("RAPID", "REGULAR", "STABLE", "EXTENDED")

# How GKE installs the NVIDIA driver on a GPU pool (gpu_driver_installation_config).
GCP_GPU_DRIVER_VERSIONS = ("DEFAULT", "LATEST", "INSTALLATION_DISABLED")
# The driver branch each setting gets on GKE's COS nodes. GKE documents the table per version in "Manually
# install NVIDIA GPU drivers" / "About GPUs", and each setting follows the node image's COS milestone: 1.34.3
# and 1.35 run cos-125-19216 (GKE release notes, "COS version of default patch version"), whose release
# notes of 2025-10-27 add "support for NVIDIA driver v535.274.02 and v570.195.03". Public reports of GKE
# installing them: DEFAULT 535.274.02 and LATEST above 580.65 (rapidsai/deployment#656, #659, 2026-02).
# DEFAULT is taken as R535, the lower bound: a CUDA build it cannot run is refused rather than left to fail.
# INSTALLATION_DISABLED: whatever the user installs, so nothing is judged.
GCP_DRIVER_BRANCH: dict[str, int | None] = {"DEFAULT": 535, "LATEST": 580, "INSTALLATION_DISABLED": None}
# The GKE minors (their COS milestone, 125) the table above was checked for: 1.36 runs cos-129 and needs
# its own look before GKE_DEFAULT_MINOR moves there (tests/pure/test_kubernetes_versions.py holds them together).
GCP_DRIVER_TABLE_MINORS = ("1.34", "1.35")

# Any N1 predefined or custom machine type: n1-standard-4, n1-highmem-8, n1-custom-4-15360.
GCP_N1_MACHINE = re.compile(r"^n1-(?:standard|highmem|highcpu)-[0-9]+$|^n1-custom-[0-9]+-[0-9]+$")


def gcp_machine_family(machine_type: str) -> str:
    """The family of a Compute Engine machine type: its first segment ("n1", "g2", …)."""
    return machine_type.split("-", 1)[0]


# --- Kubernetes versions GKE offers for a new cluster --------------------------------------------------

# GKE. https://cloud.google.com/kubernetes-engine/docs/release-schedule ("The dates in the table are
# best-effort predictions"), as endoflife.date copies it (endoflife-date/endoflife.date
# products/google-kubernetes-engine.md, a70eca3, 2026-08-22: "releaseDate = availability date of the
# Regular release channel ... eol = End of standard support"). After the end of standard support a
# minor is offered only in the EXTENDED channel: "GKE provides up to a total of 24 months of support
# for a minor version after the version has been made available for new cluster creation in the
# Regular channel ... around 14 months of standard support and approximately an additional 10 months
# of extended support available with the Extended channel"
# (https://cloud.google.com/kubernetes-engine/versioning); the extended dates are that rule applied
# to the Regular dates (1.33: 2025-06-03, 1.34: 2025-09-30, 1.35: 2026-02-11, 1.36: 2026-06-09), which
# the release notes' "Extended 1.31 to 1.36" (August 2026) agrees with. 1.37 was in RAPID only by
# August 2026 and has no published date yet: the engine's own answer decides it during preview and up.
GKE_KUBERNETES_MINORS: tuple[KubernetesMinor, ...] = (
    KubernetesMinor("1.32", date(2026, 4, 11), date(2027, 2, 11)),
    KubernetesMinor("1.33", date(2026, 8, 3), date(2027, 6, 3)),
    KubernetesMinor("1.34", date(2026, 10, 1), date(2027, 9, 30)),
    KubernetesMinor("1.35", date(2027, 4, 11), date(2028, 2, 11)),
    KubernetesMinor("1.36", date(2027, 8, 9), date(2028, 6, 9)),
)
# A new cluster's version when none is given, offline: each channel's default as GKE last announced it,
# "Version 1.35.8-gke.1036000 is now the default version for cluster creation in the Regular channel"
# (GKE Regular channel release notes, 2026-09-17); 1.35 is offered by every channel until 2027-04-11.
# During preview and up the engine's serverConfig says (release_channel_default_version).
GKE_DEFAULT_MINOR = "1.35"
# The channel that keeps a minor past its standard support (container.v1 ReleaseChannel.Channel).
GKE_EXTENDED_CHANNEL = "EXTENDED"


@dataclass(frozen=True)
class GkeServerConfig:
    """What pulumi-gcp's getEngineVersions passes on of the engine's serverConfig."""

    valid_master_versions: Sequence[str]
    channel_defaults: Mapping[str, str]  # release_channel_default_version
    channel_latest: Mapping[str, str]  # release_channel_latest_version


def from_gke_server_config(config: GkeServerConfig, channel: str, location: str, on: date) -> OfferedVersions:
    """The minors GKE's serverConfig offers a new cluster in ``channel``, and the channel's default.

    pulumi-gcp's getEngineVersions reads projects.locations.getServerConfig but passes on only the
    channel-less ``validMasterVersions`` and each channel's default and latest version, not the
    channel's own list (hashicorp/terraform-provider-google, google/services/container/
    data_source_google_container_engine_versions.go). So a channel offers the valid minors up to its
    latest; EXTENDED, which keeps minors past their standard support, every minor up to its latest
    that the catalogue lists under extended support on day ``on``.
    """
    latest = config.channel_latest.get(channel)
    ceiling = catalogue.minor_key(minor_of(latest)) if latest else None
    minors = {minor_of(v) for v in config.valid_master_versions}
    if channel == GKE_EXTENDED_CHANNEL:
        minors |= set(CLOUD.offered_minors(on, extended=True))
    offered = [m for m in minors if ceiling is None or catalogue.minor_key(m) <= ceiling]
    default = config.channel_defaults.get(channel)
    return OfferedVersions(
        sorted_minors(offered), minor_of(default) if default else None, f"in GKE's {channel} channel at {location}"
    )


# --- what a node offers pods, and what GKE runs beside them ---------------------------------------------
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
# KEDA's chart, which the GKE stack installs beside them, once: capacity.KEDA_CHART_PODS.
GKE_SYSTEM_PER_CLUSTER = Resources(650, 660) + capacity.KEDA_CHART_PODS
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


# What the capacity check (mlstack.rules.node_capacity) needs of GKE: both pools are Compute Engine machine types.
GKE_NODES: Final = NodeFacts(
    system_key="gkeSystemMachineType",
    gpu_key="gkeGpuMachineType",
    system_machine=gcp_machine,
    gpu_machine=gcp_machine,
    sizes_listed_in="mlstack/clouds/gcp.py",
    allocatable=gke_allocatable,
    system_per_node=GKE_SYSTEM_PER_NODE,
    system_per_cluster=GKE_SYSTEM_PER_CLUSTER,
    gpu_node_extra=GKE_GPU_NODE_EXTRA,
    # Both the servers and the trainer mount the bucket, so both get the sidecar.
    store_sidecar=Sidecar("the GCS FUSE sidecar", GCS_FUSE_SIDECAR),
)


# --- metrics ------------------------------------------------------------------------------------------------

# Google Cloud Managed Service for Prometheus reads PodMonitoring objects (mlstack/monitoring.py): the cluster
# component says so, and the config judges the trainer's deadline by it before the component exists.
GKE_SCRAPE_BY: Final[ScrapeBy] = "gmp"


# --- quotas ------------------------------------------------------------------------------------------------

# The regional GPU quota metric of each accelerator in GCP_ACCELERATORS, as regions.get
# names it. The names are the Quota.Metric enum's (google.cloud.compute.v1.Quota.Metric; the committed-use
# twins COMMITTED_NVIDIA_T4_GPUS ... COMMITTED_NVIDIA_H100_GPUS are listed there too), and appear in public
# `gcloud compute regions describe` output (T4, P100, V100, P4, L4, A100, A100_80GB). Spot VMs count against
# the PREEMPTIBLE_ twin (PREEMPTIBLE_NVIDIA_T4_GPUS ...: the same output; Google's DWS Flex guide lists
# PREEMPTIBLE_NVIDIA_H100_GPUS for a3-highgpu-*). H100's metrics are reported absent from regions.get
# ("does not list A3-family metrics at all", a practitioner's GCP field guide): then they are not judged here.
GCP_GPU_METRICS: dict[str, str] = {
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
    "nvidia-tesla-p100": "NVIDIA_P100_GPUS",
    "nvidia-tesla-p4": "NVIDIA_P4_GPUS",
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
}
GCP_PREEMPTIBLE_PREFIX = "PREEMPTIBLE_"
# Spot VMs: "To prevent Spot VMs from consuming your quotas for standard VMs' CPUs, GPUs, and disks, consider
# requesting preemptible quota for Spot VMs" (cloud.google.com/compute/docs/instances/create-use-spot), and
# "if your project does not have preemptible quota, you can still use the regular quota to launch preemptible
# resources" (cloud.google.com/compute/quotas, "Preemptible quotas"). So a Spot need counts against the
# PREEMPTIBLE_ quota where its limit is above zero, else against the standard one (Need.instead).
GCP_REGIONAL_CPUS = "CPUS"
# The vCPU quota of a machine family. CPUS counts E2 and N1 (and the shared-core f1/g1); the other families
# have their own, "<FAMILY>_CPUS": A2_CPUS, C2_CPUS, C2D_CPUS, C3_CPUS, N2_CPUS, N2D_CPUS, M1_CPUS, M2_CPUS are
# in the Quota.Metric enum; G2_CPUS and A3_CPUS are not (googleapis.deno.dev compute:v1 Quota lists the enum),
# though public quota listings and requests use them.
# E2_CPUS is in the enum too, yet E2 VMs are reported against CPUS. Which family counts where is taken from
# public quota checkers and `gcloud compute regions describe` output, not from Google's own page (the "CPU
# quota" section of cloud.google.com/compute/resource-usage could not be read): unverified.
GCP_CPUS_FAMILIES = frozenset({"e2", "n1", "f1", "g1"})
# GKE's surge upgrade: "All new GKE node pools are automatically configured to use surge upgrades with the
# settings maxSurge=1 and maxUnavailable=0" (cloud.google.com/kubernetes-engine/docs/concepts/
# node-pool-upgrade-strategies); a multi-zonal pool is upgraded one zone at a time, so one node at once.
GKE_MAX_SURGE = 1


def gcp_cpu_metric(machine_type: str) -> str:
    """The regional vCPU quota a machine type counts against: CPUS, or its family's own."""
    family = gcp_machine_family(machine_type)
    return GCP_REGIONAL_CPUS if family in GCP_CPUS_FAMILIES else f"{family.upper()}_CPUS"


def needs_gcp(  # noqa: PLR0913 - the two pools as the stack's config gives them, keyword-only
    *,
    system_machine_type: str,
    system_nodes: int,
    system_zones: int,
    gpu_machine_type: str,
    gpu_type: str,
    gpu_count: int,
    gpu_max_nodes: int,
    gpu_spot: bool,
) -> Needs:
    """The regional quotas a GKE stack's two pools may use at their largest.

    The system pool: ``system_nodes`` in each of its ``system_zones`` (a node pool's node_count is per zone)
    plus the surge node, on its family's vCPU quota. The GPU pool: ``gpu_max_nodes`` nodes in all (its
    autoscaler's total_max_node_count) of ``gpu_count`` GPUs and the machine's vCPUs; on Spot, the GPUs and
    the CPUS-counted vCPUs go to the PREEMPTIBLE_ quotas where the project has them. The project-wide
    GPUS_ALL_REGIONS is not in a region's answer and is not judged.
    """
    needs: list[Need] = []
    uncounted: list[str] = []
    system = gcp_machine(system_machine_type)
    nodes = system_nodes * system_zones + GKE_MAX_SURGE
    if system is None:
        uncounted.append(f"the system pool's vCPUs: the size of {system_machine_type} is not known here")
    else:
        why = (
            f"system pool: {system_nodes} nodes in each of {system_zones} zones + {GKE_MAX_SURGE} upgrade-surge "
            f"node of {system_machine_type}, {system.vcpus} vCPUs each"
        )
        needs.append(Need(gcp_cpu_metric(system_machine_type), nodes * system.vcpus, why))
    kind = "Spot nodes" if gpu_spot else "nodes"
    metric = GCP_GPU_METRICS.get(gpu_type)
    if metric is None:
        uncounted.append(f"the GPU pool's GPUs: {gpu_type} has no known quota metric")
    else:
        why = f"GPU pool: up to {gpu_max_nodes} {kind} with {gpu_count} {gpu_type} each"
        needs.append(_gcp_need(metric, gpu_max_nodes * gpu_count, why, spot=gpu_spot))
    machine = gcp_machine(gpu_machine_type)
    if machine is None:
        uncounted.append(f"the GPU pool's vCPUs: the size of {gpu_machine_type} is not known here")
    else:
        cpu_metric = gcp_cpu_metric(gpu_machine_type)
        why = f"GPU pool: up to {gpu_max_nodes} {kind} of {gpu_machine_type}, {machine.vcpus} vCPUs each"
        spot = gpu_spot and cpu_metric == GCP_REGIONAL_CPUS  # no preemptible twin is known for family quotas
        needs.append(_gcp_need(cpu_metric, gpu_max_nodes * machine.vcpus, why, spot=spot))
    return Needs(tuple(needs), tuple(uncounted))


def _gcp_need(metric: str, amount: int, why: str, *, spot: bool) -> Need:
    return Need(f"{GCP_PREEMPTIBLE_PREFIX}{metric}", amount, why, instead=metric) if spot else Need(metric, amount, why)


# GCP: the console's IAM & Admin > Quotas page, or Cloud Quotas' `gcloud beta quotas preferences create
# --service=... --quota-id=... --preferred-value=... --dimensions=region=...` (cloud.google.com/sdk/gcloud/
# reference/beta/quotas/preferences/create). A regional Compute Engine quota's id is its metric with hyphens
# and "-per-project-region": CPUS-per-project-region (pulumi-gcp cloudquota.SQuotaPreference example),
# NVIDIA-H100-GPUS-per-project-region and PREEMPTIBLE-NVIDIA-H100-GPUS-per-project-region in public reports.
_GCP_ASK = (
    "Ask for more in the Google Cloud console, IAM & Admin > Quotas (https://console.cloud.google.com/iam-admin/"
    "quotas, filtered on the metric and region), or with Cloud Quotas (`gcloud beta quotas info list "
    "--service=compute.googleapis.com` lists the quota ids where one below is refused):"
)
_GCP_NOT_LISTED = "regions.get leaves some out, A3 and G2 machines' among them, which IAM & Admin > Quotas shows"


def _quota_command(metric: str, limit: float, where: str, account: str) -> str:
    """The command that asks for ``limit`` of ``metric`` in region ``where`` of project ``account``."""
    return (
        "gcloud beta quotas preferences create --service=compute.googleapis.com "
        f"--project={account or '<project>'} --quota-id={metric.replace('_', '-')}-per-project-region "
        f"--dimensions=region={where} --preferred-value={figure(limit)}"
    )


# How a GKE stack asks for more quota (mlstack.quota.message).
GKE_QUOTA_INCREASE: Final = Increase(how=_GCP_ASK, not_listed=_GCP_NOT_LISTED, command=_quota_command)


# --- what it costs -------------------------------------------------------------------------------------------


def estimate_gke(  # noqa: PLR0913 - the pools and the store as the stack's config gives them, keyword-only
    *,
    region: str,
    zonal: bool,
    zones: int,
    system_machine_type: str,
    system_nodes: int,
    gpu_machine_type: str,
    gpu_type: str,
    gpu_count: int,
    gpu_min_nodes: int,
    gpu_max_nodes: int,
    gpu_spot: bool,
    store_size_gib: Decimal,
) -> cost.Estimate:
    """A GKE stack: its pools' nodes, the cluster fee, the load balancer's forwarding rule and the model bucket."""

    def node(machine: str, spot: bool) -> Decimal | None:
        vm = prices.hourly(prices.GCP_MACHINE_HOURLY, region, machine, spot)
        if vm is None or not machine.startswith("n1-"):
            return vm
        gpu = prices.gpu_hourly(region, gpu_type, spot)  # N1 bills its GPUs apart
        return None if gpu is None else vm + gpu * gpu_count

    system_count = system_nodes * (1 if zonal else zones)
    gpu_node = node(gpu_machine_type, gpu_spot)
    kind = "Spot " if gpu_spot else ""
    system = cost.times(system_count, prices.hourly(prices.GCP_MACHINE_HOURLY, region, system_machine_type))
    bucket = cost.storage_hourly(prices.GCS_STANDARD_GB_MONTH.get(region), store_size_gib)
    floor = [
        cost.Item(f"system pool: {system_count} x {system_machine_type}", system, essential=True),
        cost.Item("GKE cluster management fee", prices.GKE_CLUSTER_FEE_HOURLY),
        cost.Item("load balancer forwarding rule", prices.GCP_FORWARDING_RULE_HOURLY),
        cost.Item(f"model bucket ({store_size_gib} GiB, Standard)", bucket),
    ]
    kept, more = cost.gpu_pool_items(f"{kind}{gpu_machine_type}", gpu_min_nodes, gpu_max_nodes, gpu_node)
    floor += kept
    ceiling = [more]
    notes = ["the images' storage in Artifact Registry and network egress are not counted"]
    if zonal:
        notes.append(
            f"GKE's free tier credit (${prices.GKE_FREE_TIER_MONTHLY_CREDIT} a month per billing account) covers one "
            "zonal cluster's fee; it is counted here as paid"
        )
    return cost.Estimate(tuple(floor), tuple(ceiling), gpu_node, notes=tuple(notes))


# --- the rules that judge a GKE stack's keys ------------------------------------------------------------

# Artifact Registry repository ids: a lower-case letter, then letters, digits and hyphens.
_ARTIFACT_REPOSITORY_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


def artifact_repository_id(app_name: str) -> list[Problem]:
    """GKE: the app's name is its Artifact Registry repository's id."""
    if _ARTIFACT_REPOSITORY_ID.match(app_name):
        return []
    return [
        Problem(
            "appName",
            app_name,
            "names the Artifact Registry repository, so it must start with a letter and hold only "
            "lower-case letters, digits and hyphens",
        )
    ]


def gcp_region(region: str) -> list[Problem]:
    """A Compute Engine region (gcp_locations.GCP_ZONES), with the nearest one suggested."""
    if region in gcp_locations.GCP_ZONES:
        return []
    close = difflib.get_close_matches(region, list(gcp_locations.GCP_ZONES), n=1, cutoff=0.8)
    hint = f"did you mean {close[0]}? " if close else ""
    return [
        Problem(
            "gcpRegion",
            region,
            f"is not a Compute Engine region ({hint}the regions are listed at "
            "https://cloud.google.com/compute/docs/regions-zones)",
        )
    ]


def gke_gpu_where(gpu_type: str, machine_type: str, region: str, zone: str | None) -> list[Problem]:
    """The GPU (and, for A3 High, the machine) is offered where the pool's nodes will be.

    A node pool in a zone without the accelerator fails at creation after the cluster is up
    (GKE: "the accelerator type is not available in the zone"); the tables say where each is.
    """
    where = gcp_locations.gcp_gpu_zones(gpu_type, region)
    if where is None:  # a GPU type or region the tables do not know: nothing to judge
        return []
    key, value = ("gcpZone", zone) if zone else ("gcpRegion", region)
    if zone is not None:
        offered = gcp_locations.gcp_zone_gpus(gcp_locations.gcp_parent_zone(zone) or zone)
        if offered is not None and gpu_type not in offered:
            alternatives = (
                f"the zones of {region} that do: {rules.listed(where)}" if where else f"no zone of {region} does"
            )
            return [Problem(key, value, f"does not offer {gpu_type} (gkeGpuType); {alternatives}")]
    elif not where:
        return [Problem(key, value, f"offers {gpu_type} (gkeGpuType) in none of its zones; choose another region")]
    machine_zones = gcp_locations.gcp_machine_zones(machine_type)
    if machine_zones is not None and zone is not None and zone not in machine_zones:
        in_region = [z for z in machine_zones if gcp_locations.gcp_region_of(z) == region]
        return [
            Problem(
                key,
                value,
                f"does not offer {machine_type} (gkeGpuMachineType); "
                + (
                    f"the zones of {region} that do: {rules.listed(in_region)}"
                    if in_region
                    else f"no zone of {region} does"
                ),
            )
        ]
    return []


def gke_gpu_machine_limits(gpu_type: str, machine_type: str, gpu_count: int, zone: str | None) -> list[Problem]:
    """An N1 machine holds at most so many vCPUs for its attached GPUs (gcp_locations.N1_GPU_LIMITS)."""
    if gcp_machine_family(machine_type) != "n1":
        return []
    machine = gcp_machine(machine_type)
    most = gcp_locations.n1_max_vcpus(gpu_type, gpu_count, zone)
    if machine is None or most is None or machine.vcpus <= most:
        return []
    return [
        Problem(
            "gkeGpuMachineType",
            machine_type,
            f"has {machine.vcpus} vCPUs, but an N1 machine with {gpu_count} {gpu_type} may have at most {most} "
            "(https://cloud.google.com/compute/docs/gpus, N1 with GPUs); choose a smaller machine or attach more GPUs",
        )
    ]


def gke_on_demand(machine_type: str, spot: bool) -> list[Problem]:
    """Machines Compute Engine sells only as Spot or flex-start VMs cannot make an on-demand pool."""
    note = gcp_locations.gcp_on_demand_note(machine_type)
    if spot or note is None:
        return []
    return [
        Problem(
            "gpuSpot",
            False,
            f"is false, but {machine_type} (gkeGpuMachineType) is not sold as a plain on-demand VM: {note}; "
            "set gpuSpot to true, or choose another machine",
        )
    ]


def gcp_zone(zone: str | None, region: str) -> list[Problem]:
    """A zonal cluster's zone lies in the region: one of its zones (gcp_locations.GCP_ZONES; an AI zone of it
    counts) where the table knows the region, else a zone-shaped name of it; None is a regional cluster."""
    if zone is None:
        return []
    zones = gcp_locations.gcp_zones(region)
    if zones is not None:
        if gcp_locations.gcp_region_of(zone) == region:
            return []
        return [
            Problem(
                "gcpZone",
                zone,
                f"must be a zone of mlstack:gcpRegion ({region}), one of {rules.listed(zones)}; "
                "empty means a regional cluster",
            )
        ]
    if re.fullmatch(rf"{re.escape(region)}-[a-z]", zone):
        return []
    return [
        Problem(
            "gcpZone",
            zone,
            f"must be a zone of mlstack:gcpRegion ({region}), such as {region}-a; empty means a regional cluster",
        )
    ]


def gcp_gpu_pool(gpu_type: str, machine_type: str, gpu_count: int) -> list[Problem]:
    """Every problem with a GKE GPU pool of ``gpu_count`` ``gpu_type`` on ``machine_type``.

    Empty when the combination exists on Compute Engine. Checks stop at the
    first key that is wrong, since the later ones are judged against it.
    """
    accelerator = GCP_ACCELERATORS.get(gpu_type)
    if accelerator is None:
        return [Problem("gkeGpuType", gpu_type, f"unknown GPU type; one of {rules.listed(GCP_ACCELERATORS)}")]

    family = gcp_machine_family(machine_type)
    if family != accelerator.family:
        valid = (
            "an N1 machine type such as n1-standard-4"
            if accelerator.family == "n1"
            else f"one of {rules.listed(accelerator.fixed_counts)}"
        )
        return [
            Problem(
                "gkeGpuMachineType",
                machine_type,
                f"{gpu_type} runs on {accelerator.family.upper()} machines only: {valid}",
            )
        ]
    if accelerator.fixed_counts and machine_type not in accelerator.fixed_counts:
        return [
            Problem(
                "gkeGpuMachineType",
                machine_type,
                f"not a {accelerator.family.upper()} machine type with {gpu_type}; "
                f"one of {rules.listed(accelerator.fixed_counts)}",
            )
        ]
    if accelerator.family == "n1" and not GCP_N1_MACHINE.match(machine_type):
        return [
            Problem(
                "gkeGpuMachineType",
                machine_type,
                "not an N1 machine type; use n1-standard-N, n1-highmem-N, n1-highcpu-N or n1-custom-CPUS-MB",
            )
        ]

    counts = accelerator.counts_for(machine_type)
    if gpu_count not in counts:
        if accelerator.fixed_counts:
            reason = f"{machine_type} comes with exactly {counts[0]} {gpu_type}; set it to {counts[0]}"
        else:
            reason = f"{gpu_type} attaches to an N1 machine in counts of {rules.listed(counts)}"
        return [Problem("gkeGpuCount", gpu_count, reason)]
    return []


def gke_gpu_pool(  # noqa: PLR0913 - the pool's three keys, and what it must run (keyword-only)
    gpu_type: str, machine_type: str, gpu_count: int, *, driver_version: str, trainer_gpus: int, build: TrainerCuda
) -> list[Problem]:
    """A GKE GPU pool that exists, whose GPU and driver run the trainer's build, and that fits the trainer."""
    problems = rules.one_of("gkeGpuDriverVersion", driver_version, GCP_GPU_DRIVER_VERSIONS)
    problems += gcp_gpu_pool(gpu_type, machine_type, gpu_count)
    accelerator = GCP_ACCELERATORS.get(gpu_type)
    if accelerator is not None:
        problems += rules.trainer_gpu(build, gpu_type, accelerator.compute_capability, "gkeGpuType", gpu_type)
    if driver_version in GCP_DRIVER_BRANCH:
        where = f"GKE with gkeGpuDriverVersion {driver_version}"
        branch = GCP_DRIVER_BRANCH[driver_version]
        problems += rules.trainer_driver(build, branch, "gkeGpuDriverVersion", driver_version, where)
    problems += rules.trainer_gpus_per_node(trainer_gpus, gpu_count, gpu_type)
    return problems


def server_gpu_gke(gpu_type: str, driver_version: str) -> list[Problem]:
    """A GKE GPU pool the server can run on: its GPU has kernels in the server's build, and gkeGpuDriverVersion
    installs a driver new enough for it. An unknown GPU type or setting is gke_gpu_pool's to refuse."""
    problems: list[Problem] = []
    accelerator = GCP_ACCELERATORS.get(gpu_type)
    if accelerator is not None:
        problems += rules.server_gpu_model(gpu_type, accelerator.compute_capability, "gkeGpuType", gpu_type)
    if driver_version in GCP_DRIVER_BRANCH:
        minimum = catalogue.SERVER_CUDA.min_driver_branch
        enough = [v for v, b in GCP_DRIVER_BRANCH.items() if b is not None and b >= minimum]
        fix = f"set gkeGpuDriverVersion to {' or '.join(enough)}, or serverGpu to false"
        where = f"GKE with gkeGpuDriverVersion {driver_version}"
        branch = GCP_DRIVER_BRANCH[driver_version]
        problems += rules.server_gpu_driver(branch, "gkeGpuDriverVersion", driver_version, where, fix)
    return problems


def arm_system_pool(machine: str) -> list[Problem]:
    """The system pool runs the serving and publish pods from the x86-64 images (catalogue.CLOUD_IMAGE_PLATFORM)."""
    if not gcp_locations.gcp_is_arm(machine):
        return []
    return [
        Problem(
            "gkeSystemMachineType",
            machine,
            f"is an Arm machine: GKE taints its nodes {gcp_locations.GKE_ARM_TAINT}, so the servers, built "
            f"for {catalogue.CLOUD_IMAGE_PLATFORM}, would never be scheduled there; choose an x86-64 machine "
            "such as e2-standard-4",
        )
    ]


def storage_class(value: str) -> list[Problem]:
    """Any class is refused: GKE's model store is a bucket the GCS FUSE CSI driver mounts, not a claim."""
    return [
        Problem(
            "storageClass",
            value,
            "has no effect on GKE, whose model store is a Cloud Storage bucket mounted by the GCS FUSE CSI "
            "driver, not a claim; leave it empty",
        )
    ]


# --- what generic code asks of GCP ---------------------------------------------------------------------------

CLOUD: Final = Cloud(
    name="gcp",
    service="GKE",
    kubernetes_minors=GKE_KUBERNETES_MINORS,
    default_minor=GKE_DEFAULT_MINOR,
    extended_support=(
        "GKE's EXTENDED channel still offers {minor} until {until} (gkeReleaseChannel EXTENDED, at an extra "
        "management fee)"
    ),
    scrape_by=(GKE_SCRAPE_BY,),
    gpu_pool=True,
    external_load_balancer=True,
    image_platform=catalogue.CLOUD_IMAGE_PLATFORM,
    nodes=GKE_NODES,
    storage_class=storage_class,
)
