"""GPU catalogue: which machine / VM sizes carry which GPU, per cloud.

Pure data and pure checks, used by ``components.config`` so that an
impossible GPU pool (a size without a GPU, more GPUs per pod than a node
carries, a region or size typo) fails at program start, before anything is
created, with the key, the bad value and the valid choices in the message.

Each cloud has its own section; module-level names carry the cloud's prefix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# --- GCP ---
#
# Sources: Compute Engine "GPU machine types" (cloud.google.com/compute/docs/gpus).
# N1 machines take a GPU attached in a chosen count; the accelerator-optimized
# families (G2, A2, A3) come with a fixed GPU model and count per machine type.


@dataclass(frozen=True)
class GcpAccelerator:
    """One GPU type and the machines it runs on."""

    gpu_type: str  # the accelerator name GKE takes, e.g. "nvidia-tesla-t4"
    family: str  # the machine family, the machine type's first segment, e.g. "n1"
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
        GcpAccelerator("nvidia-tesla-t4", "n1", attachable_counts=(1, 2, 4)),
        GcpAccelerator("nvidia-tesla-v100", "n1", attachable_counts=(1, 2, 4, 8)),
        GcpAccelerator("nvidia-tesla-p100", "n1", attachable_counts=(1, 2, 4)),
        GcpAccelerator("nvidia-tesla-p4", "n1", attachable_counts=(1, 2, 4)),
        GcpAccelerator(
            "nvidia-l4",
            "g2",
            fixed_counts=_g2({4: 1, 8: 1, 12: 1, 16: 1, 24: 2, 32: 1, 48: 4, 96: 8}),
        ),
        GcpAccelerator(
            "nvidia-tesla-a100",  # A100 40GB: A2 Standard
            "a2",
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
            fixed_counts={
                "a3-highgpu-1g": 1,
                "a3-highgpu-2g": 2,
                "a3-highgpu-4g": 4,
                "a3-highgpu-8g": 8,
            },
        ),
    )
}

# How GKE installs the NVIDIA driver on a GPU pool (gpu_driver_installation_config).
GCP_GPU_DRIVER_VERSIONS = ("DEFAULT", "LATEST", "INSTALLATION_DISABLED")

# Any N1 predefined or custom machine type: n1-standard-4, n1-highmem-8, n1-custom-4-15360.
_GCP_N1_MACHINE = re.compile(r"^n1-(?:standard|highmem|highcpu)-[0-9]+$|^n1-custom-[0-9]+-[0-9]+$")


@dataclass(frozen=True)
class GcpGpuProblem:
    """One reason a GPU pool cannot exist; ``key`` is the config key (without namespace)."""

    key: str
    value: object
    reason: str


def gcp_machine_family(machine_type: str) -> str:
    """The family of a Compute Engine machine type: its first segment ("n1", "g2", …)."""
    return machine_type.split("-", 1)[0]


def _choices(values: Iterable[object]) -> str:
    return ", ".join(str(v) for v in values)


def check_gcp_gpu_pool(
    gpu_type: str,
    machine_type: str,
    gpu_count: int,
    *,
    type_key: str = "gkeGpuType",
    machine_key: str = "gkeGpuMachineType",
    count_key: str = "gkeGpuCount",
) -> list[GcpGpuProblem]:
    """Every problem with a GKE GPU pool of ``gpu_count`` ``gpu_type`` on ``machine_type``.

    Empty when the combination exists on Compute Engine. Checks stop at the
    first key that is wrong, since the later ones are judged against it.
    """
    accelerator = GCP_ACCELERATORS.get(gpu_type)
    if accelerator is None:
        return [
            GcpGpuProblem(
                type_key, gpu_type, f"unknown GPU type; one of {_choices(GCP_ACCELERATORS)}"
            )
        ]

    family = gcp_machine_family(machine_type)
    if family != accelerator.family:
        valid = (
            "an N1 machine type such as n1-standard-4"
            if accelerator.family == "n1"
            else f"one of {_choices(accelerator.fixed_counts)}"
        )
        return [
            GcpGpuProblem(
                machine_key,
                machine_type,
                f"{gpu_type} runs on {accelerator.family.upper()} machines only: {valid}",
            )
        ]
    if accelerator.fixed_counts and machine_type not in accelerator.fixed_counts:
        return [
            GcpGpuProblem(
                machine_key,
                machine_type,
                f"not a {accelerator.family.upper()} machine type with {gpu_type}; "
                f"one of {_choices(accelerator.fixed_counts)}",
            )
        ]
    if accelerator.family == "n1" and not _GCP_N1_MACHINE.match(machine_type):
        return [
            GcpGpuProblem(
                machine_key,
                machine_type,
                "not an N1 machine type; use n1-standard-N, n1-highmem-N, n1-highcpu-N "
                "or n1-custom-CPUS-MB",
            )
        ]

    counts = accelerator.counts_for(machine_type)
    if gpu_count not in counts:
        if accelerator.fixed_counts:
            reason = (
                f"{machine_type} comes with exactly {counts[0]} {gpu_type}; set it to {counts[0]}"
            )
        else:
            reason = f"{gpu_type} attaches to an N1 machine in counts of {_choices(counts)}"
        return [GcpGpuProblem(count_key, gpu_count, reason)]
    return []


@dataclass(frozen=True)
class GpuSize:
    """A VM / machine size with GPUs: which GPU, and how many per node."""

    gpu_model: str  # a label-safe name, e.g. "nvidia-tesla-t4"
    gpus: int


def _suggestion(value: str, choices: Iterable[str]) -> str:
    """A " (did you mean X?)" hint for a close, case-insensitive match; else empty."""
    by_lower = {c.lower(): c for c in choices}
    if value.lower() in by_lower:
        return f" (did you mean {by_lower[value.lower()]}?)"
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.75)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


# --- Azure ---------------------------------------------------------------------

# GPU VM sizes AKS can run a GPU node pool on, with the GPU each carries and
# how many (Azure's size documentation for each series). Only sizes with whole
# GPUs: the fractional NVadsA10 v5 sizes need NVIDIA's GRID driver, which the
# device plugin does not schedule.
AZURE_GPU_SIZES: dict[str, GpuSize] = {
    # NCasT4_v3: NVIDIA T4 (16 GB), the cheapest GPU for a small model.
    "Standard_NC4as_T4_v3": GpuSize("nvidia-tesla-t4", 1),
    "Standard_NC8as_T4_v3": GpuSize("nvidia-tesla-t4", 1),
    "Standard_NC16as_T4_v3": GpuSize("nvidia-tesla-t4", 1),
    "Standard_NC64as_T4_v3": GpuSize("nvidia-tesla-t4", 4),
    # NC A100 v4: NVIDIA A100 80 GB PCIe.
    "Standard_NC24ads_A100_v4": GpuSize("nvidia-a100-80gb", 1),
    "Standard_NC48ads_A100_v4": GpuSize("nvidia-a100-80gb", 2),
    "Standard_NC96ads_A100_v4": GpuSize("nvidia-a100-80gb", 4),
    # NCads H100 v5: NVIDIA H100 NVL (94 GB).
    "Standard_NC40ads_H100_v5": GpuSize("nvidia-h100-nvl", 1),
    "Standard_NC80adis_H100_v5": GpuSize("nvidia-h100-nvl", 2),
    # ND A100 v4: eight NVIDIA A100 40 GB SXM with InfiniBand.
    "Standard_ND96asr_v4": GpuSize("nvidia-a100-40gb", 8),
    # ND H100 v5: eight NVIDIA H100 80 GB SXM with InfiniBand.
    "Standard_ND96isr_H100_v5": GpuSize("nvidia-h100-80gb", 8),
    # NCv3: NVIDIA V100 (16 GB), an older generation with limited regional capacity.
    "Standard_NC6s_v3": GpuSize("nvidia-tesla-v100", 1),
    "Standard_NC12s_v3": GpuSize("nvidia-tesla-v100", 2),
    "Standard_NC24s_v3": GpuSize("nvidia-tesla-v100", 4),
    "Standard_NC24rs_v3": GpuSize("nvidia-tesla-v100", 4),
}

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

# Azure VM size names: "Standard_" then letters, digits and underscores.
_AZURE_VM_SIZE = re.compile(r"^Standard_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*$")


def azure_location(value: str) -> str:
    """An Azure region name such as westeurope; raises ValueError listing the choices."""
    if value in AZURE_LOCATIONS:
        return value
    raise ValueError(
        f"is not an Azure region{_suggestion(value.replace(' ', ''), AZURE_LOCATIONS)}; "
        f"choose one of {', '.join(AZURE_LOCATIONS)}"
    )


def azure_vm_size(value: str) -> str:
    """The shape of an Azure VM size name (the system pool may use any size)."""
    if not _AZURE_VM_SIZE.match(value):
        raise ValueError("must be an Azure VM size name such as Standard_D4s_v5")
    return value


def azure_gpu_size(value: str) -> GpuSize:
    """The catalogue entry of a GPU VM size; raises ValueError naming the valid sizes."""
    if value in AZURE_GPU_SIZES:
        return AZURE_GPU_SIZES[value]
    choices = ", ".join(AZURE_GPU_SIZES)
    hint = _suggestion(value, AZURE_GPU_SIZES)
    if hint:
        raise ValueError(f"is not a GPU VM size in the catalogue{hint}; choose one of {choices}")
    raise ValueError(f"is not a GPU VM size: the GPU pool needs one of {choices}")


def check_azure_gpu_pool(gpu_vm_size: str, gpus_per_pod: int) -> list[tuple[str, object, str]]:
    """Problems of an AKS GPU pool as (config key, bad value, reason); empty when sound.

    ``gpu_vm_size`` must be a catalogue size; a training pod cannot ask for
    more GPUs than one node of that size carries (a pod never spans nodes).
    """
    try:
        size = azure_gpu_size(gpu_vm_size)
    except ValueError as e:
        return [("aksGpuVmSize", gpu_vm_size, str(e))]
    if gpus_per_pod > size.gpus:
        bigger = [
            n
            for n, s in sorted(AZURE_GPU_SIZES.items(), key=lambda item: item[1].gpus)
            if s.gpu_model == size.gpu_model and s.gpus >= gpus_per_pod
        ]
        alternative = f"; sizes with that many: {', '.join(bigger)}" if bigger else ""
        return [
            (
                "trainerGpus",
                gpus_per_pod,
                f"a {gpu_vm_size} node carries {size.gpus} {size.gpu_model} GPU(s), so a pod can "
                f"request at most {size.gpus}{alternative}",
            )
        ]
    return []
