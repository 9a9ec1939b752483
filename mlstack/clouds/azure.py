"""Azure's facts and rules (mlstack:cloud azure): AKS, its GPU VM sizes and the driver it installs, its regions and
Arm sizes, the Kubernetes minors it offers, what its nodes offer pods, its KEDA add-on, its quotas, what it costs,
and the rules that judge an AKS stack's keys against them.

Pure data (and the parsers and rules over it), each fact with its source on the line above; what every cloud
provides generic code is ``CLOUD`` at the end (mlstack/clouds/cloud.py). Resource Manager's own answers (the
versions a location offers, its quotas) are read by ``mlstack.clouds.azure_api``, the live retail prices by
``mlstack.clouds.azure_prices``, the registry's push token by ``mlstack.clouds.azure_acr_token``.
"""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal
from typing import Final

from mlstack import catalogue, cost, prices, rules
from mlstack.capacity import (
    KEDA_CHART_POD,
    KEDA_CHART_REPLICAS,
    MIB_PER_GIB,
    Machine,
    Resources,
    SystemPod,
    planning_estimate,
)
from mlstack.catalogue import GpuSize, KubernetesMinor, TrainerCuda, suggestion
from mlstack.clouds.cloud import Cloud, NodeFacts
from mlstack.monitoring import ScrapeBy
from mlstack.problems import Problem
from mlstack.quota import Increase, Need, Needs, figure, metric_key

# --- GPU VM sizes, the driver AKS installs, the choices it accepts, regions -------------------------

# GPU VM sizes AKS can run a GPU node pool on, with the GPU each carries and
# how many (Azure's size documentation for each series). Only sizes with whole
# GPUs: the fractional NVadsA10 v5 sizes need NVIDIA's GRID driver, which the
# device plugin does not schedule.
AZURE_GPU_SIZES: dict[str, GpuSize] = {
    # NCasT4_v3: NVIDIA T4 (16 GB), the cheapest GPU for a small model.
    # learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/ncast4v3-series
    "Standard_NC4as_T4_v3": GpuSize("nvidia-tesla-t4", 1, (7, 5), 4, 28),
    "Standard_NC8as_T4_v3": GpuSize("nvidia-tesla-t4", 1, (7, 5), 8, 56),
    "Standard_NC16as_T4_v3": GpuSize("nvidia-tesla-t4", 1, (7, 5), 16, 110),
    "Standard_NC64as_T4_v3": GpuSize("nvidia-tesla-t4", 4, (7, 5), 64, 440),
    # NC A100 v4: NVIDIA A100 80 GB PCIe (.../gpu-accelerated/nca100v4-series).
    "Standard_NC24ads_A100_v4": GpuSize("nvidia-a100-80gb", 1, (8, 0), 24, 220),
    "Standard_NC48ads_A100_v4": GpuSize("nvidia-a100-80gb", 2, (8, 0), 48, 440),
    "Standard_NC96ads_A100_v4": GpuSize("nvidia-a100-80gb", 4, (8, 0), 96, 880),
    # NCads H100 v5: NVIDIA H100 NVL (94 GB) (.../gpu-accelerated/ncadsh100v5-series).
    "Standard_NC40ads_H100_v5": GpuSize("nvidia-h100-nvl", 1, (9, 0), 40, 320),
    "Standard_NC80adis_H100_v5": GpuSize("nvidia-h100-nvl", 2, (9, 0), 80, 640),
    # ND A100 v4: eight NVIDIA A100 40 GB SXM with InfiniBand (.../gpu-accelerated/ndasra100v4-series).
    "Standard_ND96asr_v4": GpuSize("nvidia-a100-40gb", 8, (8, 0), 96, 900),
    # ND H100 v5: eight NVIDIA H100 80 GB SXM with InfiniBand (.../gpu-accelerated/ndh100v5-series).
    "Standard_ND96isr_H100_v5": GpuSize("nvidia-h100-80gb", 8, (9, 0), 96, 1900),
}
# Sizes Azure has retired: a pool of them cannot be created. NCv3 (V100) was retired
# on 2025-09-30 (learn.microsoft.com/azure/virtual-machines/ncv3-retirement), and
# Standard_NC24rs_v3 already on 2025-03-31 (Azure/AKS#4949).
AZURE_RETIRED_GPU_SIZES: dict[str, str] = {
    "Standard_NC6s_v3": "2025-09-30",
    "Standard_NC12s_v3": "2025-09-30",
    "Standard_NC24s_v3": "2025-09-30",
    "Standard_NC24rs_v3": "2025-03-31",
}
# The driver AKS installs (gpuProfile.driver Install) follows the node image: R550
# until mid-2025, R570 from image 20250806 (Azure/AKS#5207), R580 since AgentBaker
# #7230 (2025-10-23), now the R580 LTS line for T4, A100 and H100 (Azure/AgentBaker
# parts/common/components.json, "aks-gpu-cuda-lts" 580.159.04). A new cluster gets
# the current node image, so R580. The driver follows the VM size, not the Kubernetes version
# (pkg/agent/baker.go, GetGPUDriverType), so every minor AKS offers gets it; AgentBaker says the R580 LTS
# line "is supported through Aug 2028", when this must be looked at again.
AKS_DRIVER_BRANCH = 580
AKS_DRIVER_BRANCH_UNTIL = date(2028, 8, 31)


# AKS auto-upgrade channels (ManagedClusterAutoUpgradeProfile.upgradeChannel).
AKS_UPGRADE_CHANNELS = ("none", "patch", "stable", "rapid", "node-image")
ACR_SKUS = ("Basic", "Standard", "Premium")

# Azure public-cloud region names, as `az account list-locations --query "[].name"`
# prints them (physical regions only; the logical "global"/"us" groupings cannot
# host a cluster).
AZURE_LOCATIONS: tuple[str, ...] = (
    "australiacentral", "australiacentral2", "australiaeast", "australiasoutheast",
    "austriaeast", "belgiumcentral", "brazilsouth", "brazilsoutheast",
    "canadacentral", "canadaeast", "centralindia", "centralus", "chilecentral",
    "eastasia", "eastus", "eastus2", "francecentral", "francesouth",
    "germanynorth", "germanywestcentral", "indonesiacentral", "israelcentral",
    "italynorth", "japaneast", "japanwest", "koreacentral", "koreasouth",
    "malaysiawest", "mexicocentral", "newzealandnorth", "northcentralus",
    "northeurope", "norwayeast", "norwaywest", "polandcentral", "qatarcentral",
    "southafricanorth", "southafricawest", "southcentralus", "southeastasia",
    "southindia", "spaincentral", "swedencentral", "swedensouth",
    "switzerlandnorth", "switzerlandwest", "uaecentral", "uaenorth", "uksouth",
    "ukwest", "westcentralus", "westeurope", "westindia", "westus", "westus2",
    "westus3",
)  # fmt: skip

# The family letters of an Azure VM size ("Standard_NC4as_T4_v3" -> "NC"). The GPU-accelerated families are
# the N series: NC, ND, NG and NV (learn.microsoft.com/azure/virtual-machines/sizes/overview, "GPU accelerated").
_AZURE_SERIES = re.compile(r"^Standard_([A-Z]+)[0-9]")
# Azure VM size names: "Standard_" then letters, digits and underscores.
_AZURE_VM_SIZE = re.compile(r"^Standard_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*$")


def azure_location(value: str) -> str:
    """An Azure region name such as westeurope; raises ValueError listing the choices."""
    if value in AZURE_LOCATIONS:
        return value
    raise ValueError(
        f"is not an Azure region{suggestion(value.replace(' ', ''), AZURE_LOCATIONS)}; "
        f"choose one of {', '.join(AZURE_LOCATIONS)}"
    )


def azure_vm_size(value: str) -> str:
    """The shape of an Azure VM size name (the system pool may use any size)."""
    if not _AZURE_VM_SIZE.match(value):
        raise ValueError("must be an Azure VM size name such as Standard_D4s_v5")
    return value


def azure_sizes_with(gpu_model: str) -> dict[str, int]:
    """The catalogue's VM sizes carrying ``gpu_model``, with the GPUs each carries."""
    return {name: size.gpus for name, size in AZURE_GPU_SIZES.items() if size.gpu_model == gpu_model}


def _azure_family(vm_size: str) -> str | None:
    series = _AZURE_SERIES.match(vm_size)
    return series[1] if series else None


def azure_gpu_size(value: str) -> GpuSize:
    """The catalogue entry of a GPU VM size; raises ValueError naming the valid sizes."""
    if value in AZURE_GPU_SIZES:
        return AZURE_GPU_SIZES[value]
    choices = ", ".join(AZURE_GPU_SIZES)
    if value in AZURE_RETIRED_GPU_SIZES:
        raise ValueError(
            f"was retired by Azure on {AZURE_RETIRED_GPU_SIZES[value]} and can no longer be created; "
            f"choose one of {choices}"
        )
    series = _AZURE_SERIES.match(value)
    if series and not series[1].startswith("N"):
        # Suggesting the nearest GPU size by spelling would offer an 8-GPU machine for a D4s_v5.
        raise ValueError(
            f"has no GPU: the {series[1]} series is not one of Azure's GPU families (NC, ND, NG, NV); "
            f"the GPU pool needs one of {choices}"
        )
    if series and series[1] == "NV":
        raise ValueError(
            "is an NV size, whose GPUs (whole or fractional) run NVIDIA's GRID driver, which the NVIDIA device "
            f"plugin the pool runs does not schedule; choose one of {choices}"
        )
    # Only sizes of the same family are suggested: a spelling slip, not another machine.
    family = series[1] if series else None
    hint = suggestion(value, [name for name in AZURE_GPU_SIZES if family in (None, _azure_family(name))])
    if hint:
        raise ValueError(f"is not a GPU VM size in the catalogue{hint}; choose one of {choices}")
    raise ValueError(f"is not a GPU VM size: the GPU pool needs one of {choices}")


# --- Arm sizes ---------------------------------------------------------------------------------------------

# Azure names Arm sizes with the feature letter p: "If the CPU is ARM based (Microsoft Cobalt or Ampere
# Altra), it's listed as p"; "There can be any number of extra features in a size name ... (Dplds_v6-series)"
# (MicrosoftDocs/azure-compute-docs articles/virtual-machines/sizes/overview.md, commit 0277390, ms.date
# 2025-09-16; vm-naming-conventions.md: "p = ARM Cpu", "[Family] + [Sub-family*] + [# of vCPUs] +
# [Constrained vCPUs*] + [Additive Features] + [Accelerator Type*] + [Version]").
AZURE_ARM_FEATURE = "p"
# The Arm series that page lists: Bpsv2; Dpsv5/Dpdsv5, Dplsv5/Dpldsv5, Dpsv6/Dplsv6, Dpdsv6/Dpldsv6;
# Epsv5/Epdsv5, Epsv6/Epdsv6. AKS's Arm64 page names Dpsv5, Dplsv5 and Epsv5 (azure-aks-docs
# articles/aks/use-arm64-vms.md, commit 0eb107b, ms.date 2025-02-25; example Standard_D2pds_v5).
AZURE_ARM_SERIES: tuple[str, ...] = (
    "Bpsv2", "Dpsv5", "Dpdsv5", "Dplsv5", "Dpldsv5", "Dpsv6", "Dpdsv6", "Dplsv6", "Dpldsv6",
    "Epsv5", "Epdsv5", "Epsv6", "Epdsv6",
)  # fmt: skip
# Arm sizes the p rule misses: the Grace-based GPU sizes carry no p ("Processor | 128 vCPUs | Nvidia Grace
# CPU", azure-compute-docs sizes/gpu-accelerated/includes/nd-gb200-v6-series-specs.md and
# nd-gb300-v6-series-specs.md; names from nd-gb200-v6-series.md and nd-gb300-v6-series.md, ms.date 2026-08-12).
AZURE_ARM_SIZES_WITHOUT_P: frozenset[str] = frozenset(
    {"Standard_ND128isr_NDR_GB200_v6", "Standard_ND128isr_GB300_v6", "Standard_ND128isrG5_GB300_v6"}
)

# AKS puts no taint on Arm64 nodes: its Arm64 page (use-arm64-vms.md, as above) names none, and
# "AKS doesn't taint the arm64 nodepools with kubernetes.io/arch=arm64:NoSchedule, so any pod will get
# scheduled, including those without an arm64 image" (kubernetes/test-infra#36203, 2026-01-11; likewise
# jenkins-infra/kubernetes-management#4046, 2023-06-06). An amd64-only Pod needs its own
# kubernetes.io/arch node selector there, or the pool its own taint.
AKS_TAINTS_ARM_NODES = False

# Standard_ + family (upper case, e.g. D, DC, ND) + vCPUs + optional constrained "-N" + feature letters.
_AZURE_SIZE_FEATURES = re.compile(r"^Standard_[A-Z]+[0-9]+(?:-[0-9]+)?(?P<features>[a-z]*)")


def azure_is_arm(vm_size: str) -> bool:
    """Whether an Azure VM size has Arm CPUs: the feature letter p, or a Grace size in AZURE_ARM_SIZES_WITHOUT_P."""
    if vm_size in AZURE_ARM_SIZES_WITHOUT_P:
        return True
    m = _AZURE_SIZE_FEATURES.match(vm_size)
    return m is not None and AZURE_ARM_FEATURE in m["features"]


# --- Kubernetes versions AKS offers for a new cluster --------------------------------------------------

# AKS. MicrosoftDocs/azure-aks-docs articles/aks/supported-kubernetes-versions.md (last changed
# 2026-08-05, commit f988e7e; the calendar rows 2026-06-16, ce67cba), published at
# https://learn.microsoft.com/azure/aks/supported-kubernetes-versions: "End of life" is the end of
# community support, and "Unless an explicit date is provided, the End of Life (EOL) date is the last
# day of the specified month". After it comes platform support, during which "the creation of new
# clusters isn't possible"; only long-term support still creates them ("you can create a new AKS
# cluster using an LTS version after its community support period ends if you enable LTS",
# articles/aks/long-term-support.md, which needs "moving your cluster to the Premium tier and
# explicitly selecting the LTS support plan"; LTS end dates from its table). 1.32's end is the
# changelog's "reaches the end of standard support on April 30, 2026" (Azure/AKS CHANGELOG.md), a
# month after the calendar's "Mar 2026". 1.37: "GA Oct 2026" as planned in the calendar; the
# location's list says whether it is out where the cluster is made.
AKS_KUBERNETES_MINORS: tuple[KubernetesMinor, ...] = (
    KubernetesMinor("1.32", date(2026, 4, 30), date(2027, 3, 31)),
    KubernetesMinor("1.33", date(2026, 7, 31), date(2027, 7, 31)),
    KubernetesMinor("1.34", date(2026, 11, 30), date(2027, 11, 30)),
    KubernetesMinor("1.35", date(2027, 3, 31), date(2028, 3, 31)),
    KubernetesMinor("1.36", date(2027, 6, 30), date(2028, 6, 30)),
    KubernetesMinor("1.37", date(2027, 10, 31), date(2028, 10, 31)),
)
# What a new AKS cluster gets when no version is given, offline: "the cluster defaults to the N-1 minor
# version and latest patch" (supported-kubernetes-versions.md), N being 1.37 from October 2026.
# During preview and up the location's own list says (isDefault).
AKS_DEFAULT_MINOR = "1.36"
# Where AKS lists what a location offers now: ManagedClusters_ListKubernetesVersions
# (Azure/azure-rest-api-specs, specification/containerservice/.../stable/2025-10-01/managedClusters.json),
# a GET that pulumi-azure-native has no function for (its generated invokes are POST list* calls:
# pulumi/pulumi-azure-native#222, #3513), so mlstack.clouds.azure_api calls it.
AKS_VERSIONS_API = "2025-10-01"

# --- the KEDA add-on ---------------------------------------------------------------------------------------

# AKS installs its own KEDA with the add-on, its version chosen by the cluster's minor: "Your
# cluster Kubernetes version determines which KEDA version is installed on your AKS cluster"
# (MicrosoftDocs/azure-aks-docs articles/aks/keda-about.md), table "AKS components breaking
# changes by version" in articles/aks/supported-kubernetes-versions.md (2026-08-05): 1.35 runs
# keda 2.17.3-7, 1.36 runs 2.19.0-6. 1.37 has no row yet: taken as 2.19, the newest the table
# names. Read 2026-12-07; the add-on runs in kube-system as keda-operator
# (articles/aks/keda-workload-identity.md).
AKS_KEDA_VERSIONS: Final[dict[str, str]] = {"1.35": "2.17.3", "1.36": "2.19.0", "1.37": "2.19.0"}
AKS_KEDA_NAMESPACE: Final = "kube-system"


def aks_keda_versions(offered_minors: tuple[str, ...]) -> tuple[str, ...]:
    """The KEDA releases an AKS cluster on one of ``offered_minors`` may run, oldest first.

    A cluster that follows the cloud moves minors under the stack; its ScaledObject must suit every KEDA
    the add-on may bring. A minor the table lacks is judged as its newest row.
    """
    newest = AKS_KEDA_VERSIONS[max(AKS_KEDA_VERSIONS, key=_version_key)]
    found = {AKS_KEDA_VERSIONS.get(minor, newest) for minor in offered_minors}
    return tuple(sorted(found, key=_version_key))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# --- what a node offers pods, and what AKS runs beside them ---------------------------------------------
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
    # defaults (capacity.KEDA_CHART_POD, kedacore/charts keda/values.yaml v2.20.2).
    SystemPod(
        "keda (add-on)", KEDA_CHART_REPLICAS, KEDA_CHART_POD, "assumed: KEDA chart defaults, kedacore/charts v2.20.2"
    ),
)
# The constants are the tables' sums (per node 420m/750Mi, per cluster 1452m/2010Mi) plus
# 10%, rounded up to 50m and 64 MiB: per node 500m/832Mi, per cluster 1600m/2240Mi. The 10%
# is the spread the listings show between versions (metrics-server's memory moved 9%) and
# room for a chart default AKS sets higher or a VPA resize; it is a margin, not a measurement.
AKS_SYSTEM_MARGIN_PERCENT = 10
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

    GPU sizes carry their own in the GPU catalogue (AZURE_GPU_SIZES: aks_gpu_machine).
    """
    match = _AZURE_VM.match(vm_size)
    if not match or match[1] not in _AZURE_GIB_PER_VCPU:
        return None
    per_vcpu: float = _AZURE_GIB_PER_VCPU[match[1]]
    if match[1] == "D" and "l" in match[3]:  # Dl: the low-memory D sizes, 2 GiB per vCPU
        per_vcpu = 2
    vcpus = int(match[2])
    return Machine(vcpus, vcpus * per_vcpu)


def aks_gpu_machine(vm_size: str) -> Machine | None:
    """vCPUs and memory of a GPU VM size in the catalogue (AZURE_GPU_SIZES); None for any other."""
    entry = AZURE_GPU_SIZES.get(vm_size)
    return Machine(entry.vcpus, entry.memory_gib) if entry else None


# What the capacity check (mlstack.rules.node_capacity) needs of AKS: the system pool's general-purpose sizes, the
# GPU pool's catalogue sizes. The pods mount the Azure Files share through the node's CSI driver: no sidecar.
AKS_NODES: Final = NodeFacts(
    system_key="aksSystemVmSize",
    gpu_key="aksGpuVmSize",
    system_machine=azure_machine,
    gpu_machine=aks_gpu_machine,
    sizes_listed_in="mlstack/clouds/azure.py",
    allocatable=aks_allocatable,
    system_per_node=AKS_SYSTEM_PER_NODE,
    system_per_cluster=AKS_SYSTEM_PER_CLUSTER,
    gpu_node_extra=AKS_GPU_NODE_EXTRA,
    store_sidecar=None,
)


# --- metrics ------------------------------------------------------------------------------------------------

# Azure Monitor managed Prometheus reads PodMonitor objects of its own group (mlstack/monitoring.py): the cluster
# component says so, and the config judges the trainer's deadline by it before the component exists.
AKS_SCRAPE_BY: Final[ScrapeBy] = "azure-monitor"


# --- quotas ------------------------------------------------------------------------------------------------

# The regional quotas, as the answer names them: "Total Regional vCPUs" and "Total Regional Low-priority
# vCPUs" (`az vm list-usage` output in learn.microsoft.com/azure/virtual-machines/quotas and in public
# listings). Standard vCPU quotas "are enforced at two tiers, for each subscription, in each region: the
# total regional vCPU quota [and] the VM-family vCPU quota"; "Spot vCPU quotas apply to spot virtual
# machines (VMs) across all VM families (SKUs)" (MicrosoftDocs/azure-management-docs, articles/quotas/
# spot-quota.md, "Increase spot vCPU family quotas"). So a Spot pool counts against lowPriorityCores alone.
AZURE_REGIONAL_VCPUS = "cores"
AZURE_SPOT_VCPUS = "lowPriorityCores"

# The VM-family vCPU quota (the usage's name.value) of each GPU size in AZURE_GPU_SIZES.
# A usage's name is its sizes' Resource SKU "family" but for case and spaces (`Get-AzVMUsage` entries are
# matched on `$vmSKU.Family` in public quota checks), so skypilot's table of SKU families is a source
# (skypilot-org/skypilot sky/clouds/service_catalog/data_fetchers/fetch_azure.py, FAMILY_NAME_TO_SKYPILOT_GPU_NAME,
# which strips the spaces the same way ``mlstack.quota.metric_key`` does). Matched without regard to case or spaces.
# Sources:
# - standardNCASv3_T4Family: the QuotaExceeded message "exceeding approved standardNCASv3_T4Family Cores
#   quota" and `az vm list-usage --query "[?name.value=='standardNCASv3_T4Family']"` in public scripts;
#   localized "Standard NCASv3_T4 Family vCPUs" in `az vm list-usage -o table` output. Verified.
# - StandardNCADSA100v4Family: "exceeding approved standardNCADSA100v4Family Cores quota" (a public
#   troubleshooting note) and skypilot; localized "Standard NCADS_A100_v4 Family vCPUs". Verified.
# - StandardNCadsH100v5Family (NC40ads and NC80adis): skypilot, `az vm list-skus` output placing
#   Standard_NC80adis_H100_v5 in it, and public `az vm list-usage` queries; localized "Standard NCadsH100v5
#   Family vCPUs". Not seen in a QuotaExceeded message.
# - standardNDASv4_A100Family (ND96asr_v4): skypilot (StandardNDASv4_A100Family) and the SKU family
#   "Standard NDASv4_A100 Family"; localized "Standard NDASv4_A100 Family vCPUs" in `az vm list-usage`
#   output. Not seen in a QuotaExceeded message.
# - standardNDSH100v5Family (ND96isr_H100_v5): skypilot and public `az vm list-usage` queries; localized
#   "Standard NDSH100v5 Family vCPUs". Not seen in a QuotaExceeded message.
# The localized names are also dstack's list of the Azure quotas to request (dstackai/dstack
# docs/docs/guides/protips.md, "Service quotas").
_AZURE_GPU_FAMILY_SIZES: dict[str, tuple[str, ...]] = {
    "standardNCASv3_T4Family": (
        "Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3", "Standard_NC16as_T4_v3", "Standard_NC64as_T4_v3",
    ),
    "StandardNCADSA100v4Family": ("Standard_NC24ads_A100_v4", "Standard_NC48ads_A100_v4", "Standard_NC96ads_A100_v4"),
    "StandardNCadsH100v5Family": ("Standard_NC40ads_H100_v5", "Standard_NC80adis_H100_v5"),
    "standardNDASv4_A100Family": ("Standard_ND96asr_v4",),
    "standardNDSH100v5Family": ("Standard_ND96isr_H100_v5",),
}  # fmt: skip
AZURE_GPU_FAMILIES: dict[str, str] = {
    size: family for family, sizes in _AZURE_GPU_FAMILY_SIZES.items() for size in sizes
}
# The general-purpose families of v2 to v5 follow one spelling: "standard" + the series letter + the
# feature letters upper-cased + "v<n>Family". Seen in answers and QuotaExceeded messages: standardDSv5Family
# (Standard_D4s_v5), standardDASv5Family (Azure/karpenter-provider-azure#192), standardDDSv5Family,
# standardEDSv5Family, standardFSv2Family (the Quotas_Request_PutForCompute example of learn.microsoft.com/rest/
# api/reserved-vm-instances/quota/create-or-update), standardDSv3Family, standardDv3Family, standardESv3Family,
# standardDv4Family, standardDDv4Family (a usages answer in Azure/azure-rest-api-specs#25455). From v6 the
# spelling changes (standardEav6Family for Standard_E2as_v6 in `az vm list-skus` output): those are not guessed.
_AZURE_GENERAL_SIZE = re.compile(r"^Standard_(?P<series>[DEF])[0-9]+(?:-[0-9]+)?(?P<features>[a-z]*)_v(?P<v>[2-5])$")

# AKS's default max surge: "If not specified, the default is 10%. ... For percentages, fractional nodes are
# rounded up" (AgentPoolUpgradeSettings.maxSurge, pulumi-azure-native containerservice; Azure/AKS release
# 2023-10-01 made 10% the default, Azure/terraform-azurerm-aks#554). One extra node up to ten nodes.
AKS_MAX_SURGE_PERCENT = 10


def azure_family(vm_size: str) -> str | None:
    """The VM-family vCPU quota a size counts against, or None where this module does not know its name."""
    if vm_size in AZURE_GPU_FAMILIES:
        return AZURE_GPU_FAMILIES[vm_size]
    general = _AZURE_GENERAL_SIZE.match(vm_size)
    if general is None:
        return None
    return f"standard{general['series']}{general['features'].upper()}v{general['v']}Family"


def aks_surge_nodes(nodes: int) -> int:
    """The nodes AKS adds to a pool of ``nodes`` while it upgrades it, at the default max surge."""
    return math.ceil(nodes * AKS_MAX_SURGE_PERCENT / 100)


def needs_azure(  # noqa: PLR0913 - the two pools as the stack's config gives them, keyword-only
    *,
    system_vm_size: str,
    system_nodes: int,
    gpu_vm_size: str,
    gpu_max_nodes: int,
    gpu_spot: bool,
    system_vcpus: int | None = None,
) -> Needs:
    """The vCPU quotas an AKS stack's two pools may use at their largest.

    The system pool: its nodes plus the surge node an upgrade adds, on its VM family and the regional total.
    The GPU pool: its maximum node count, on ``lowPriorityCores`` when Spot, else on its family and the
    regional total. The GPU pool's own upgrade surge is left out: it matters only when an upgrade meets the
    pool at its maximum, and a pool that scales from zero mostly has no node to upgrade.
    ``system_vcpus`` overrides the table of general-purpose sizes (azure_machine).
    """
    needs: list[Need] = []
    uncounted: list[str] = []
    machine = azure_machine(system_vm_size)
    vcpus = system_vcpus if system_vcpus is not None else (machine.vcpus if machine else None)
    surge = aks_surge_nodes(system_nodes)
    if vcpus is None:
        uncounted.append(f"the system pool's vCPUs: the size of {system_vm_size} is not known here")
    else:
        why = f"system pool: {system_nodes} + {surge} upgrade-surge nodes of {system_vm_size}, {vcpus} vCPUs each"
        needs += _azure_standard(system_vm_size, (system_nodes + surge) * vcpus, why, uncounted)
    gpu = AZURE_GPU_SIZES.get(gpu_vm_size)
    if gpu is None:
        uncounted.append(f"the GPU pool's vCPUs: {gpu_vm_size} is not in the GPU catalogue")
    elif gpu_spot:
        why = f"GPU pool: up to {gpu_max_nodes} Spot nodes of {gpu_vm_size}, {gpu.vcpus} vCPUs each"
        needs.append(Need(AZURE_SPOT_VCPUS, gpu_max_nodes * gpu.vcpus, why))
    else:
        why = f"GPU pool: up to {gpu_max_nodes} nodes of {gpu_vm_size}, {gpu.vcpus} vCPUs each"
        needs += _azure_standard(gpu_vm_size, gpu_max_nodes * gpu.vcpus, why, uncounted)
    return Needs(tuple(needs), tuple(uncounted))


def _azure_standard(vm_size: str, amount: int, why: str, uncounted: list[str]) -> list[Need]:
    """A regular-priority need: on the size's VM family (where its name is known) and the regional total."""
    family = azure_family(vm_size)
    if family is None:
        uncounted.append(f"the VM-family quota of {vm_size}: its quota name is not known here")
        return [Need(AZURE_REGIONAL_VCPUS, amount, why)]
    return [Need(family, amount, why), Need(AZURE_REGIONAL_VCPUS, amount, why)]


# Azure: the portal's Quotas page, Compute, select the quota, "New Quota Request" (MicrosoftDocs/
# azure-management-docs articles/quotas/per-vm-quota-requests.md, and spot-quota.md for Spot vCPUs); or the
# quota CLI extension, `az quota create --resource-name standardBasv2Family --resource-type dedicated --scope
# /subscriptions/<id>/providers/Microsoft.Compute/locations/<region> --limit-object value=10` (az quota
# reference; public runbooks use lowPriority as the resource type of lowPriorityCores). An approved family
# increase "will automatically increase the regional vCPU quota" (per-vm-quota-requests.md), so the
# regional total is asked for through its own page, learn.microsoft.com/azure/quotas/regional-quota-requests.
_AZURE_ASK = (
    "Ask for more on the Azure portal's Quotas page (Quotas > Compute, select the quota, New Quota Request; "
    "learn.microsoft.com/azure/quotas/per-vm-quota-requests, and /spot-quota for Spot vCPUs, "
    "/regional-quota-requests for the regional total), or with the quota CLI extension:"
)
_AZURE_NOT_LISTED = (
    "Azure lists a VM family only where it is offered, and `az vm list-skus --location {where}` says where"
)


def _quota_command(metric: str, limit: float, where: str, account: str) -> str:
    """The command (or the page) that asks for ``limit`` of ``metric`` in location ``where`` of subscription
    ``account``."""
    if metric_key(metric) == metric_key(AZURE_REGIONAL_VCPUS):
        return f"{metric}: the regional total, on the portal's regional page (a family increase raises it too)"
    kind = "lowPriority" if metric_key(metric) == metric_key(AZURE_SPOT_VCPUS) else "dedicated"
    return (
        f"az quota create --resource-name {metric} --resource-type {kind} --scope /subscriptions/"
        f"{account or '<subscription>'}/providers/Microsoft.Compute/locations/{where} "
        f"--limit-object value={figure(limit)}"
    )


# How an AKS stack asks for more quota (mlstack.quota.message).
AKS_QUOTA_INCREASE: Final = Increase(how=_AZURE_ASK, not_listed=_AZURE_NOT_LISTED, command=_quota_command)


# --- what it costs -------------------------------------------------------------------------------------------


def estimate_aks(  # noqa: PLR0913 - the pools and the store as the stack's config gives them, keyword-only
    *,
    location: str,
    system_vm_size: str,
    system_nodes: int,
    gpu_vm_size: str,
    gpu_min_nodes: int,
    gpu_max_nodes: int,
    gpu_spot: bool,
    store_size_gib: Decimal,
    machine_price: cost.MachinePrice | None = None,
) -> cost.Estimate:
    """An AKS stack: its pools' nodes, the (free) control plane, the load balancer, registry and file share."""
    look = machine_price or (lambda region, machine, spot: prices.hourly(prices.AZURE_VM_HOURLY, region, machine, spot))
    gpu_node = look(location, gpu_vm_size, gpu_spot)
    kind = "Spot " if gpu_spot else ""
    share = cost.storage_hourly(prices.AZURE_FILES_STANDARD_LRS_GB_MONTH.get(location), store_size_gib)
    floor = [
        cost.Item(
            f"system pool: {system_nodes} x {system_vm_size}",
            cost.times(system_nodes, look(location, system_vm_size, False)),
            essential=True,
        ),
        cost.Item("AKS control plane (Free tier)", prices.AKS_FREE_TIER_HOURLY),
        cost.Item("Standard Load Balancer", None),
        cost.Item("Container Registry (Basic)", None),
        cost.Item(f"model store ({store_size_gib} GiB, Azure Files standard LRS)", share),
    ]
    kept, more = cost.gpu_pool_items(f"{kind}{gpu_vm_size}", gpu_min_nodes, gpu_max_nodes, gpu_node)
    floor += kept
    ceiling = [more]
    notes = ["Azure Monitor's metrics ingestion and network egress are not counted"]
    if gpu_spot:
        notes.append("Spot prices move with the market; the table's are those of its read date")
    return cost.Estimate(tuple(floor), tuple(ceiling), gpu_node, notes=tuple(notes))


# --- the rules that judge an AKS stack's keys -----------------------------------------------------------


def spot_max_price(price: Decimal | float) -> list[Problem]:
    """An hourly price in US dollars above zero, or -1 for "up to the on-demand price"."""
    number = Decimal(str(price))
    if number.is_finite() and (number == -1 or number > 0):
        return []
    return [
        Problem("aksSpotMaxPrice", price, "must be -1 (up to the on-demand price) or a price above zero, such as 0.25")
    ]


def spot_max_price_market(price: float, location: str, vm_size: str, *, spot: bool) -> list[Problem]:
    """A Spot max price below what the size costs as Spot gets no node: Azure "won't deploy the VM" when the
    current price is above the max (learn.microsoft.com/azure/virtual-machines/spot-vms, "Pricing"), so the pool
    stays at zero and the Job waits out its deadline. Judged against mlstack.prices' Spot price of its read
    date, where the table has one; Spot prices move, so a price within 10% of it is let through."""
    market = prices.hourly(prices.AZURE_VM_HOURLY, location, vm_size, spot=True)
    if not spot or price <= 0 or market is None or Decimal(str(price)) >= market * Decimal("0.9"):
        return []
    return [
        Problem(
            "aksSpotMaxPrice",
            price,
            f"is below the Spot price of {vm_size} in {location}, ${market}/h (mlstack.prices, read "
            f"{prices.PRICES_READ.isoformat()}): Azure would never give the pool a node; raise it, or set -1 to pay up "
            "to the on-demand price",
        )
    ]


def aks_gpu_pool(gpu_vm_size: str, trainer_gpus: int, build: TrainerCuda) -> list[Problem]:
    """An AKS GPU pool of a catalogue size whose GPU and driver run the trainer's build, and that fits it."""
    try:
        size = azure_gpu_size(gpu_vm_size)
    except ValueError as e:
        return [Problem("aksGpuVmSize", gpu_vm_size, str(e))]
    return [
        *rules.trainer_gpus_per_node(trainer_gpus, size.gpus, size.gpu_model, azure_sizes_with(size.gpu_model)),
        *rules.trainer_gpu(build, size.gpu_model, size.compute_capability, "aksGpuVmSize", gpu_vm_size),
        *rules.trainer_driver(build, AKS_DRIVER_BRANCH, "aksGpuVmSize", gpu_vm_size, "AKS"),
    ]


def server_gpu_aks(gpu_vm_size: str) -> list[Problem]:
    """An AKS GPU pool the server can run on: its size's GPU has kernels in the server's build, and the driver
    AKS installs is new enough for it. A size not in the catalogue is aks_gpu_pool's to refuse."""
    try:
        size = azure_gpu_size(gpu_vm_size)
    except ValueError:
        return []
    return [
        *rules.server_gpu_model(size.gpu_model, size.compute_capability, "aksGpuVmSize", gpu_vm_size),
        *rules.server_gpu_driver(AKS_DRIVER_BRANCH, "aksGpuVmSize", gpu_vm_size, "AKS", "set serverGpu to false"),
    ]


def arm_system_pool(vm_size: str) -> list[Problem]:
    """The system pool runs the serving and publish pods from the x86-64 images (catalogue.CLOUD_IMAGE_PLATFORM)."""
    if not azure_is_arm(vm_size):
        return []
    return [
        Problem(
            "aksSystemVmSize",
            vm_size,
            "is an Arm (p) size: AKS does not taint Arm nodes, so the servers, built for "
            f"{catalogue.CLOUD_IMAGE_PLATFORM}, would be scheduled there and fail with 'exec format error'; "
            "choose an x86-64 size such as Standard_D4s_v5",
        )
    ]


# The storage classes AKS ships (learn.microsoft.com/azure/aks/concepts-storage, "Storage classes"): the
# Azure Disk ones give ReadWriteOnce only ("Azure Disks can be used to create a Kubernetes DataDisk resource.
# ... mounted as ReadWriteOnce"), so the Job on a GPU node and the servers on the system pool could not share
# the model store; Azure Files and Blob (NFS, BlobFuse) give ReadWriteMany.
AKS_READ_WRITE_ONCE_CLASSES: Final = ("default", "managed", "managed-csi", "managed-premium", "managed-csi-premium")


def storage_class(value: str) -> list[Problem]:
    """A storage class that can give the model store ReadWriteMany, which the Job and the servers share."""
    if value not in AKS_READ_WRITE_ONCE_CLASSES:
        return []
    return [
        Problem(
            "storageClass",
            value,
            "is an Azure Disk class, which mounts ReadWriteOnce: the training Job on a GPU node and the servers "
            "on the system pool must share the model store (ReadWriteMany); use azurefile-csi (the default when "
            "empty), azurefile-csi-premium or azureblob-nfs-premium",
        )
    ]


# --- what generic code asks of Azure -------------------------------------------------------------------------

CLOUD: Final = Cloud(
    name="azure",
    service="AKS",
    kubernetes_minors=AKS_KUBERNETES_MINORS,
    default_minor=AKS_DEFAULT_MINOR,
    extended_support=(
        "AKS still offers {minor} under long-term support until {until}, which needs the Premium tier and the "
        "AKSLongTermSupport plan; mlstack sets neither"
    ),
    scrape_by=(AKS_SCRAPE_BY,),
    gpu_pool=True,
    external_load_balancer=True,
    image_platform=catalogue.CLOUD_IMAGE_PLATFORM,
    nodes=AKS_NODES,
    storage_class=storage_class,
)
