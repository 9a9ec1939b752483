"""The clouds' facts: GPU machines and VM sizes, drivers, regions, the choices a cloud accepts,
and the trainer's CUDA builds.

Pure data (and the parsers that look a value up in it), each fact with its
source on the line above. The rules that judge a configuration against these
facts are ``mlstack.rules``. Each cloud has its own section; module-level
names carry the cloud's prefix.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

# --- the trainer's torch build: CUDA or CPU-only --------------------------------------
#
# The pairing of the trainer's torch build with the GPUs and NVIDIA drivers it
# runs on lives here, and only here: the image build takes its index URL from
# it (every trainer build gets its index as the TORCH_INDEX_URL build argument), the
# config checks the GPU and the driver against it, and a test holds the digits
# example's Dockerfile and requirements (examples/digits/) to it. A target without
# a GPU gets the CPU-only build (TRAINER_CPU), which carries no CUDA at all.


@dataclass(frozen=True)
class TrainerCuda:
    """One CUDA build of the trainer's torch (the torch version is examples/digits/requirements.txt's)."""

    cuda: str  # the config value, mlstack:trainerCuda
    index_url: str  # PyTorch's wheel index for this build
    # Compute capabilities the wheels carry kernels (SASS) for, no PTX.
    architectures: tuple[tuple[int, int], ...]
    min_driver: str  # the oldest NVIDIA driver that runs it
    min_driver_branch: int


TRAINER_CUDA_BUILDS: dict[str, TrainerCuda] = {
    b.cuda: b
    for b in (
        # torch 2.13's CUDA variants are cu126, cu130 and cu132 (pytorch/pytorch RELEASE.md,
        # "Release Compatibility Matrix", row added by PR #187075); PyPI's own torch==2.13.0
        # is cu130. Architectures: torch/cuda/__init__.py of the 2.13.0 wheel, and
        # `torch.cuda.get_arch_list()`. A CUDA 12.x build runs on any driver 525.60.13 or
        # newer and a 13.x one needs 580 or newer: "Minor Version Compatibility",
        # docs.nvidia.com/deploy/cuda-compatibility/. CUDA 13 has no Maxwell, Pascal or
        # Volta kernels: "Starting from CUDA 13.0: ... no longer supported. The minimum
        # required architecture is Turing" (docs.nvidia.com/cuda/cufft, "Deprecated").
        TrainerCuda(
            "12.6",
            "https://download.pytorch.org/whl/cu126",
            ((5, 0), (6, 0), (7, 0), (7, 5), (8, 0), (8, 6), (9, 0)),
            "525.60.13",
            525,
        ),
        TrainerCuda(
            "13.0",
            "https://download.pytorch.org/whl/cu130",
            ((7, 5), (8, 0), (8, 6), (9, 0), (10, 0), (12, 0)),
            "580.65.06",
            580,
        ),
    )
}
# 12.6 runs on every driver the shipped stacks get (GKE's DEFAULT on 1.35, COS 125, is R535)
# and on every GPU in the catalogue, V100 and Pascal included.
DEFAULT_TRAINER_CUDA = "12.6"


@dataclass(frozen=True)
class TrainerCpu:
    """The CPU-only build of the trainer's torch: no CUDA libraries, for a target without a GPU."""

    name: str  # the config value, mlstack:trainerCuda
    index_url: str  # PyTorch's wheel index for this build


# PyTorch's CPU-only wheel index (pytorch.org/get-started/locally, "Compute Platform: CPU").
# torch 2.13.0 is there as 2.13.0+cpu for Linux aarch64 and x86_64, so an arm64 kind node
# gets it too: download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_aarch64.whl
# in NixOS/nixpkgs pkgs/development/python-modules/torch/bin/binary-hashes.nix; the x86_64
# one (191.8 MB) is the torch the dev venv installs (`pip show torch`: 2.13.0+cpu). Its
# Requires-Dist names no nvidia-* wheel and no triton: about 0.7 GB installed, against about
# 5.6 GB for the CUDA 12.6 build with the wheels it pins (measured from the wheels).
TRAINER_CPU = TrainerCpu("cpu", "https://download.pytorch.org/whl/cpu")

# A build of the trainer's torch: one of TRAINER_CUDA_BUILDS, or TRAINER_CPU.
TrainerBuild = TrainerCuda | TrainerCpu
# Every value of mlstack:trainerCuda, and the build it names.
TRAINER_BUILDS: dict[str, TrainerBuild] = {**TRAINER_CUDA_BUILDS, TRAINER_CPU.name: TRAINER_CPU}


def default_trainer_build(gpu: bool) -> TrainerBuild:
    """The build a target gets when mlstack:trainerCuda is empty: CUDA where it trains on a GPU, else CPU-only."""
    return TRAINER_CUDA_BUILDS[DEFAULT_TRAINER_CUDA] if gpu else TRAINER_CPU


def runs_on(build: TrainerCuda, capability: tuple[int, int]) -> bool:
    """Whether ``build`` has kernels for a GPU of ``capability``.

    SASS for X.Y runs on X.Z for Z >= Y and never across majors (CUDA C
    Programming Guide, "Binary Compatibility"); the builds carry no PTX.
    """
    return any(major == capability[0] and minor <= capability[1] for major, minor in build.architectures)


# --- the server's ONNX Runtime on the GPU (mlstack:serverGpu) ---------------------------
#
# The server's GPU image installs onnxruntime-gpu and the NVIDIA wheels it loads (app/requirements-server-gpu.txt,
# app/Dockerfile's SERVER_REQUIREMENTS). Its CUDA build pairs with the GPUs and NVIDIA drivers of the GPU pool
# here, as the trainer's builds do above; the rules are mlstack.rules.server_gpu_gke and server_gpu_aks.


@dataclass(frozen=True)
class ServerCuda:
    """The CUDA build of the server's ONNX Runtime: what a GPU node must offer to run it."""

    package: str  # the pin in app/requirements-server-gpu.txt
    cuda: str  # the CUDA it is built for
    cudnn_major: int
    # Compute capabilities it carries kernels (SASS) for, no PTX: X.Y runs on X.Z for Z >= Y (as ``runs_on``).
    architectures: tuple[tuple[int, int], ...]
    # Compute capabilities it carries architecture-specific ("a") kernels for: X.Y runs on X.Y alone.
    exact_architectures: tuple[tuple[int, int], ...]
    min_driver: str  # the oldest NVIDIA driver that runs it
    min_driver_branch: int


# onnxruntime-gpu 1.31.1 (PyPI, onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl, sha256 e26c475f...):
# - CUDA 13.0 and cuDNN 9: onnxruntime/capi/build_and_package_info.py says cuda_version = '13.0'; its Requires-Dist
#   asks nvidia-cuda-runtime~=13.0 (extra "cuda") and nvidia-cudnn-cu13~=9.0 (extra "cudnn").
# - Kernels: the .nv_fatbin section of onnxruntime/capi/libonnxruntime_providers_cuda.so holds zstd-compressed
#   cubins for sm_75, sm_80, sm_86, sm_89, sm_90a and sm_120a, and no PTX (read entry by entry: kind, arch, and the
#   target each cubin names). An "a" target holds "architecture-accelerated features that are supported on the
#   specified architecture only" and does "not follow the onion layer model" (PTX ISA, "Target ISA notes":
#   docs.nvidia.com/cuda/parallel-thread-execution/): sm_90a runs on 9.0 only, sm_120a on 12.0 only, and a
#   Blackwell B200 (10.0) has no kernel at all. CUDA 13 itself needs Turing (7.5) or newer (see
#   TRAINER_CUDA_BUILDS), so the wheel's floor and CUDA's agree.
# - Driver: CUDA 13.x needs an NVIDIA driver >= 580 ("Minor Version Compatibility", Table 1:
#   docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html); 580.65.06 is the one CUDA 13.0
#   shipped with, as the trainer's CUDA 13.0 build records.
# The wheel carries no aarch64 build: pip finds no onnxruntime-gpu==1.31.1 for manylinux_2_28_aarch64.
SERVER_CUDA = ServerCuda(
    package="onnxruntime-gpu==1.31.1",
    cuda="13.0",
    cudnn_major=9,
    architectures=((7, 5), (8, 0), (8, 6), (8, 9)),
    exact_architectures=((9, 0), (12, 0)),
    min_driver="580.65.06",
    min_driver_branch=580,
)
# The platform the server's GPU image can be built for (the wheel above is x86-64 only).
SERVER_GPU_PLATFORM = "linux/amd64"


def server_runs_on(build: ServerCuda, capability: tuple[int, int]) -> bool:
    """Whether the server's ``build`` has kernels for a GPU of ``capability`` (CUDA C Programming Guide,
    "Binary Compatibility": SASS for X.Y runs on X.Z for Z >= Y; an "a" target only on X.Y)."""
    return capability in build.exact_architectures or any(
        major == capability[0] and minor <= capability[1] for major, minor in build.architectures
    )


# Where NVIDIA's container runtime writes inside a GPU container as it starts it (the nvidia runtime is
# containerd's default on AKS's GPU nodes; Azure/AgentBaker containerd templates). Its createContainer hooks
# (jit-cdi mode, NVIDIA/nvidia-container-toolkit internal/discover/hooks.go): update-ldcache writes
# /etc/ld.so.cache, /etc/ld.so.conf and /etc/ld.so.conf.d (internal/ldconfig/ldconfig.go);
# create-symlinks links the driver's libraries in the library directories; update-application-profile
# (toolkit 1.20.0) writes /etc/nvidia, and failed every container that had it mounted read-only
# (NVIDIA/nvidia-container-toolkit#2026, fixed by #2028). The driver's files are bind-mounted into
# /usr/bin and the library directories. On the container's own root this works even when it is
# read-only (the hooks run before runc remounts it: components/aks.py, device_plugin_security); a
# read-only volume at one of these paths breaks it, so a GPU container mounts none there.
NVIDIA_HOOK_PATHS: tuple[str, ...] = ("/etc", "/usr/bin", "/usr/lib", "/usr/lib64", "/lib", "/lib64")

# What the built images run on: amd64 for every cloud GPU pool, arm64 for a
# kind cluster on an arm64 machine (Apple silicon).
IMAGE_PLATFORMS = ("linux/amd64", "linux/arm64")
# Every GPU machine in this catalogue (GCP N1/G2/A2/A3, Azure NC/ND) is x86-64, so a cloud
# target's images default to amd64 wherever they are built. A local cluster's nodes run on
# the Docker engine that builds the images, so a local target defaults to its native platform.
CLOUD_IMAGE_PLATFORM = "linux/amd64"

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


@dataclass(frozen=True)
class GpuSize:
    """A VM / machine size with GPUs: which GPU, how many per node, and the node's size."""

    gpu_model: str  # a label-safe name, e.g. "nvidia-tesla-t4"
    gpus: int
    compute_capability: tuple[int, int]
    vcpus: int
    memory_gib: float


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
        f"is not an Azure region{_suggestion(value.replace(' ', ''), AZURE_LOCATIONS)}; "
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
    hint = _suggestion(value, [name for name in AZURE_GPU_SIZES if family in (None, _azure_family(name))])
    if hint:
        raise ValueError(f"is not a GPU VM size in the catalogue{hint}; choose one of {choices}")
    raise ValueError(f"is not a GPU VM size: the GPU pool needs one of {choices}")


# --- Kubernetes versions each cloud offers for a new cluster ---------------------------
#
# A pinned minor turns, a year later, into a `pulumi up` the cloud refuses. So each cloud's minors
# carry the dates they stop being offered, the config refuses one past its date on the day of the
# run, and tests/pure/test_kubernetes_versions.py fails in CI before a listed date catches a user.
# During preview and up the cloud itself is asked (components/aks.py, components/gke.py); these
# tables are the answer offline and the judge at program start.


@dataclass(frozen=True)
class KubernetesMinor:
    """One minor version on one cloud: until when a new cluster may be created on it."""

    minor: str  # "1.35"
    # The last day a new cluster may be created on it with standard (community) support.
    new_clusters_until: date
    # The last day of paid extended support, under which a new cluster may still be created: GKE's
    # EXTENDED channel, AKS's long-term support (Premium tier and the AKSLongTermSupport plan).
    extended_until: date


def minor_key(minor: str) -> tuple[int, int]:
    """ "1.35" -> (1, 35), for ordering minors."""
    major, _, rest = minor.partition(".")
    return int(major), int(rest.split(".", 1)[0])


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
# pulumi/pulumi-azure-native#222, #3513), so mlstack.arm calls it.
AKS_VERSIONS_API = "2025-10-01"

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

# A local cluster runs whatever its tool made. kind v0.33.0 (2026-09) "defaults to Kubernetes 1.37.0"
# (kubernetes-sigs/kind#4248, "bump default image to kindest/node:v1.37.0", and the v0.33.0 release
# notes as corrected there); tools/localup.py pins no node image, so a cluster `make up` creates runs it.
LOCAL_DEFAULT_MINOR = "1.37"


def today() -> date:
    """The day of the run, in UTC: the dates above say what the clouds offer on it."""
    return datetime.now(UTC).date()


def kubernetes_minors(cloud: str) -> tuple[KubernetesMinor, ...]:
    """The cloud's minors, oldest first; empty for a local cluster (which offers whatever it runs)."""
    return {"azure": AKS_KUBERNETES_MINORS, "gcp": GKE_KUBERNETES_MINORS}.get(cloud, ())


def offered_until(entry: KubernetesMinor, extended: bool) -> date:
    """The last day a new cluster may be created on ``entry``, with or without extended support."""
    return entry.extended_until if extended else entry.new_clusters_until


def offered_minors(cloud: str, on: date, extended: bool = False) -> list[str]:
    """The minors of ``cloud`` a new cluster may still be created on, on day ``on``, oldest first."""
    return [m.minor for m in kubernetes_minors(cloud) if on <= offered_until(m, extended)]


def default_minor(cloud: str) -> str:
    """The minor a new cluster gets when the stack pins none, as this catalogue knows it (offline)."""
    return {"azure": AKS_DEFAULT_MINOR, "gcp": GKE_DEFAULT_MINOR}.get(cloud, LOCAL_DEFAULT_MINOR)
