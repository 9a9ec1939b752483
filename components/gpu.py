"""GPU catalogue: which GPU attaches to which machine, per cloud.

Pure data and checks, no Pulumi: ``components.config`` runs them with every
other config check, so an impossible GPU pool fails at program start, before
any resource exists, with the key, the bad value and the valid choices.
"""

from __future__ import annotations

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
