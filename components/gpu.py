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
from collections.abc import Iterable
from dataclasses import dataclass


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
