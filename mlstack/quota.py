"""Will the cloud let the stack create its nodes? The quotas a stack needs, against the quotas a region has.

Pure (no Pulumi SDK). A pool the quota cannot hold does not fail at `pulumi up` with a clear message:
AKS fails the node pool with QuotaExceeded after minutes, and an autoscaled GPU pool on either cloud
simply never gets its node while the training Job waits. So before it creates anything the target asks
the cloud for the region's quotas (``azure_quotas`` here, ``mlstack.gcp_api.region_quotas`` for GCP),
computes what its pools may use at their largest (``needs_azure``, ``needs_gcp``), and names every quota
that is short (``shortfalls``, ``message``), with where to ask for more.

The judgement is ``free = limit - usage`` against the sum of the needs on one quota. A quota the
region's answer does not list is reported as not judged, never as a shortfall: Azure lists a VM family
only where it is offered, and Compute Engine's regions.get leaves out some families' quotas altogether
(A3 and G2 among them), so an absent name says nothing about the limit. Research notes and the
unverified names are in the comments beside each table.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mlstack import arm, capacity, catalogue

# --- what a cloud answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """One quota of a region: its name as the API spells it, the limit, what is in use, and a readable label."""

    metric: str
    limit: float
    usage: float
    label: str = ""

    @property
    def free(self) -> float:
        return self.limit - self.usage


@dataclass(frozen=True)
class Need:
    """What the stack may use of one quota at its largest, and why (for the message).

    ``instead`` is for GCP's Spot VMs, which count against the preemptible quota (``metric``) only where the
    project has been granted one, and against the standard quota (``instead``) otherwise.
    """

    metric: str
    amount: int
    why: str
    instead: str = ""


@dataclass(frozen=True)
class Needs:
    """The needs of a stack's pools, and what could not be counted (a size whose vCPUs or family are unknown)."""

    needs: tuple[Need, ...]
    uncounted: tuple[str, ...] = ()


@dataclass(frozen=True)
class Shortfall:
    """A quota the needs do not fit in, or (``quota`` None) one the region's answer does not list."""

    metric: str  # the quota judged: a need's metric, or its ``instead``
    needs: tuple[Need, ...]
    quota: Quota | None

    @property
    def amount(self) -> int:
        return sum(need.amount for need in self.needs)

    @property
    def found(self) -> bool:
        return self.quota is not None


def _key(name: str) -> str:
    """A quota name for matching: Azure spells one family "standardNCASv3_T4Family", "StandardNCASv3_T4Family"
    and, as a Resource SKU family, "Standard NCASv3_T4 Family"; GCP's metrics are upper case."""
    return name.replace(" ", "").lower()


def shortfalls(needs: Iterable[Need], quotas: Iterable[Quota]) -> list[Shortfall]:
    """The quotas the needs do not fit in, in the order first needed; needs on one quota are summed.

    A quota the answer lacks comes back with ``quota`` None: not judged, and never a reason to stop.
    """
    by_key = {_key(quota.metric): quota for quota in quotas}
    grouped: dict[str, list[Need]] = {}
    for need in needs:
        if need.amount > 0:
            grouped.setdefault(_judged(need, by_key), []).append(need)
    found: list[Shortfall] = []
    for metric, group in grouped.items():
        quota = by_key.get(_key(metric))
        total = sum(need.amount for need in group)
        if quota is None or total > quota.free:
            found.append(Shortfall(quota.metric if quota else metric, tuple(group), quota))
    return found


def _judged(need: Need, by_key: dict[str, Quota]) -> str:
    """The quota a need counts against: its own, or for a GCP Spot need without preemptible quota, ``instead``."""
    if not need.instead:
        return need.metric
    preemptible = by_key.get(_key(need.metric))
    return need.metric if preemptible is not None and preemptible.limit > 0 else need.instead


# --- Azure ----------------------------------------------------------------------------------------------

# Usage_List, GET /subscriptions/{subscriptionId}/providers/Microsoft.Compute/locations/{location}/usages:
# "Gets, for the specified location, the current compute resource usage information as well as the limits
# for compute resources under the subscription" (Azure/azure-rest-api-specs, specification/compute/
# resource-manager/Microsoft.Compute/ComputeRP/stable/2024-07-01/computeRPCommon.json). Its ListUsagesResult
# is {value: [{unit, currentValue, limit, name: {value, localizedValue}}], nextLink}, "x-ms-pageable":
# {"nextLinkName": "nextLink"}; unchanged in the later stable versions (2024-11-01, 2025-04-01, 2025-11-01).
# 2024-07-01 is the ComputeRP version azure-mgmt-compute 34.0.0 ships (azure.mgmt.compute.v2024_07_01).
AZURE_USAGES_API = "2024-07-01"
# A location lists about a hundred usages, one page in practice; the bounds stop a loop of nextLinks.
MAX_USAGE_PAGES = 10
MAX_USAGE_PAGE_BYTES = 256 * 1024

# The regional quotas, as the answer names them: "Total Regional vCPUs" and "Total Regional Low-priority
# vCPUs" (`az vm list-usage` output in learn.microsoft.com/azure/virtual-machines/quotas and in public
# listings). Standard vCPU quotas "are enforced at two tiers, for each subscription, in each region: the
# total regional vCPU quota [and] the VM-family vCPU quota"; "Spot vCPU quotas apply to spot virtual
# machines (VMs) across all VM families (SKUs)" (MicrosoftDocs/azure-management-docs, articles/quotas/
# spot-quota.md, "Increase spot vCPU family quotas"). So a Spot pool counts against lowPriorityCores alone.
AZURE_REGIONAL_VCPUS = "cores"
AZURE_SPOT_VCPUS = "lowPriorityCores"

# The VM-family vCPU quota (the usage's name.value) of each GPU size in mlstack.catalogue.AZURE_GPU_SIZES.
# A usage's name is its sizes' Resource SKU "family" but for case and spaces (`Get-AzVMUsage` entries are
# matched on `$vmSKU.Family` in public quota checks), so skypilot's table of SKU families is a source
# (skypilot-org/skypilot sky/clouds/service_catalog/data_fetchers/fetch_azure.py, FAMILY_NAME_TO_SKYPILOT_GPU_NAME,
# which strips the spaces the same way ``_key`` does). Matched without regard to case or spaces. Sources:
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
    ``system_vcpus`` overrides the table of general-purpose sizes (mlstack.capacity.azure_machine).
    """
    needs: list[Need] = []
    uncounted: list[str] = []
    machine = capacity.azure_machine(system_vm_size)
    vcpus = system_vcpus if system_vcpus is not None else (machine.vcpus if machine else None)
    surge = aks_surge_nodes(system_nodes)
    if vcpus is None:
        uncounted.append(f"the system pool's vCPUs: the size of {system_vm_size} is not known here")
    else:
        why = f"system pool: {system_nodes} + {surge} upgrade-surge nodes of {system_vm_size}, {vcpus} vCPUs each"
        needs += _azure_standard(system_vm_size, (system_nodes + surge) * vcpus, why, uncounted)
    gpu = catalogue.AZURE_GPU_SIZES.get(gpu_vm_size)
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


def azure_usages(subscription: str, location: str, token: str) -> list[Quota]:
    """The Compute quotas of ``location`` in ``subscription`` (Usage_List), every page of them.

    Each page is one bounded Resource Manager GET (mlstack.arm.get_json). A nextLink is followed only back to
    Resource Manager, so the token goes nowhere else; more than MAX_USAGE_PAGES pages is an error.
    """
    path = (
        f"/subscriptions/{urllib.parse.quote(subscription, safe='')}/providers/Microsoft.Compute/"
        f"locations/{urllib.parse.quote(location, safe='')}/usages"
    )
    url = f"{arm.ENDPOINT}{path}?api-version={AZURE_USAGES_API}"
    quotas: list[Quota] = []
    for _ in range(MAX_USAGE_PAGES):
        answer = arm.get_json(url, token, max_bytes=MAX_USAGE_PAGE_BYTES)
        value = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(value, list):
            raise arm.ArmError(f"Resource Manager answered the usages of {location} without a list of usages")
        quotas += [quota for entry in value if (quota := _usage(entry)) is not None]
        next_link = answer.get("nextLink")
        if not next_link:
            return quotas
        if not isinstance(next_link, str) or not next_link.startswith(f"{arm.ENDPOINT}/"):
            raise arm.ArmError(
                f"Resource Manager answered the usages of {location} with a nextLink outside {arm.ENDPOINT}; "
                "it was not followed"
            )
        url = next_link
    raise arm.ArmError(f"Resource Manager answered the usages of {location} in more than {MAX_USAGE_PAGES} pages")


def _usage(entry: object) -> Quota | None:
    """One Usage; None for one without a name or numeric currentValue and limit."""
    if not isinstance(entry, dict):
        return None
    name = entry.get("name")
    metric = name.get("value") if isinstance(name, dict) else None
    label = name.get("localizedValue") if isinstance(name, dict) else None
    limit, usage = _number(entry.get("limit")), _number(entry.get("currentValue"))
    if not isinstance(metric, str) or not metric or limit is None or usage is None:
        return None
    return Quota(metric, limit, usage, label if isinstance(label, str) else metric)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# What the program calls. The offline harness (tools/harness.py) puts its own answer here while it runs a
# stack, as it answers the providers' invokes.
azure_quotas: Callable[[str, str, str], list[Quota]] = azure_usages


# --- GCP ------------------------------------------------------------------------------------------------

# The regional GPU quota metric of each accelerator in mlstack.catalogue.GCP_ACCELERATORS, as regions.get
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
    family = catalogue.gcp_machine_family(machine_type)
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
    system = capacity.gcp_machine(system_machine_type)
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
    machine = capacity.gcp_machine(gpu_machine_type)
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


# --- the message ----------------------------------------------------------------------------------------

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
_NOT_JUDGED = {
    "azure": "Azure lists a VM family only where it is offered, and `az vm list-skus --location {where}` says where",
    "gcp": "regions.get leaves some out, A3 and G2 machines' among them, which IAM & Admin > Quotas shows",
}


def verdict(needs: Needs, quotas: Iterable[Quota], cloud: str, where: str, account: str) -> tuple[bool, str]:
    """Whether ``needs`` fit ``quotas`` (a quota the answer lacks never stops them), and what to say either way:
    the shortfalls and how to ask for more, or what was not judged (empty when everything was)."""
    found = shortfalls(needs.needs, quotas)
    return not any(s.found for s in found), message(found, cloud, where, account=account, uncounted=needs.uncounted)


def message(
    found: Sequence[Shortfall],
    cloud: str,
    where: str,
    *,
    account: str = "",
    uncounted: Sequence[str] = (),
) -> str:
    """What is short in ``where`` and how to ask for more, then what was not judged; empty when all fits.

    ``account`` is the subscription (Azure) or project (GCP) the commands name.
    """
    if cloud not in _NOT_JUDGED:
        raise ValueError(f"quotas are judged for azure and gcp, not {cloud!r}")
    short = [(s, s.quota) for s in found if s.quota is not None]
    absent = [s for s in found if s.quota is None]
    lines: list[str] = []
    if short:
        lines.append(f"Too little quota in {where} for what this stack may run at its largest:")
        lines += [f"  - {_short_line(s, quota)}" for s, quota in short]
        lines.append(_AZURE_ASK if cloud == "azure" else _GCP_ASK)
        lines += [f"    {_ask(s.metric, quota.usage + s.amount, cloud, where, account)}" for s, quota in short]
    if absent:
        lines.append(
            f"Not judged, as the answer for {where} lists no such quota; {_NOT_JUDGED[cloud].format(where=where)}:"
        )
        lines += [f"  - {_absent_line(s)}" for s in absent]
    if uncounted:
        lines.append(f"Not counted: {'; '.join(uncounted)}.")
    return "\n".join(lines)


def _short_line(s: Shortfall, quota: Quota) -> str:
    name = s.metric if quota.label in ("", s.metric) else f"{s.metric} ({quota.label})"
    return (
        f"{name}: needs {s.amount} ({'; '.join(n.why for n in s.needs)}); limit {_n(quota.limit)}, "
        f"usage {_n(quota.usage)}, free {_n(quota.free)}; a limit of {_n(quota.usage + s.amount)} fits"
    )


def _absent_line(s: Shortfall) -> str:
    asked = {n.metric for n in s.needs if n.metric != s.metric}
    also = f" (nor {', '.join(sorted(asked))})" if asked else ""
    return f"{s.metric}{also}: would need {s.amount} ({'; '.join(n.why for n in s.needs)})"


def _ask(metric: str, limit: float, cloud: str, where: str, account: str) -> str:
    """The command that asks for ``limit`` of ``metric`` in ``where``."""
    if cloud == "gcp":
        return (
            "gcloud beta quotas preferences create --service=compute.googleapis.com "
            f"--project={account or '<project>'} --quota-id={metric.replace('_', '-')}-per-project-region "
            f"--dimensions=region={where} --preferred-value={_n(limit)}"
        )
    if _key(metric) == _key(AZURE_REGIONAL_VCPUS):
        return f"{metric}: the regional total, on the portal's regional page (a family increase raises it too)"
    kind = "lowPriority" if _key(metric) == _key(AZURE_SPOT_VCPUS) else "dedicated"
    return (
        f"az quota create --resource-name {metric} --resource-type {kind} --scope /subscriptions/"
        f"{account or '<subscription>'}/providers/Microsoft.Compute/locations/{where} --limit-object value={_n(limit)}"
    )


def _n(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
