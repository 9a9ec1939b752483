"""What every cloud shares: the trainer's torch builds and the server's CUDA build against the GPUs and drivers they
run on, the NVIDIA runtime's paths, the images' platforms, a GPU size's shape, and the shape and dates of a
Kubernetes minor.

Pure data (and the parsers that look a value up in it), each fact with its
source on the line above. The rules that judge a configuration against these
facts are ``mlstack.rules``. Each cloud's own facts (its GPU machines, drivers,
regions, Kubernetes minors) are its module in ``mlstack/clouds/``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
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


def _sass_runs_on(architectures: Iterable[tuple[int, int]], capability: tuple[int, int]) -> bool:
    """Whether SASS for one of ``architectures`` runs on a GPU of ``capability``: SASS for X.Y runs on X.Z
    for Z >= Y and never across majors (CUDA C Programming Guide, "Binary Compatibility")."""
    return any(major == capability[0] and minor <= capability[1] for major, minor in architectures)


def runs_on(build: TrainerCuda, capability: tuple[int, int]) -> bool:
    """Whether ``build`` has kernels for a GPU of ``capability`` (the builds carry no PTX)."""
    return _sass_runs_on(build.architectures, capability)


# --- the server's ONNX Runtime on the GPU (mlstack:serverGpu) ---------------------------
#
# The server's GPU image installs onnxruntime-gpu and the NVIDIA wheels it loads (app/requirements-server-gpu.txt,
# app/Dockerfile's SERVER_REQUIREMENTS). Its CUDA build pairs with the GPUs and NVIDIA drivers of the GPU pool
# here, as the trainer's builds do above; the rules are mlstack.clouds.gcp.server_gpu_gke and
# mlstack.clouds.azure.server_gpu_aks.


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
    return capability in build.exact_architectures or _sass_runs_on(build.architectures, capability)


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


@dataclass(frozen=True)
class GpuSize:
    """A VM / machine size with GPUs: which GPU, how many per node, and the node's size."""

    gpu_model: str  # a label-safe name, e.g. "nvidia-tesla-t4"
    gpus: int
    compute_capability: tuple[int, int]
    vcpus: int
    memory_gib: float


def suggestion(value: str, choices: Iterable[str]) -> str:
    """A " (did you mean X?)" hint for a close, case-insensitive match; else empty."""
    by_lower = {c.lower(): c for c in choices}
    if value.lower() in by_lower:
        return f" (did you mean {by_lower[value.lower()]}?)"
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=1, cutoff=0.75)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


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


def today() -> date:
    """The day of the run, in UTC: the clouds' dates (their ``KubernetesMinor``s) say what they offer on it."""
    return datetime.now(UTC).date()


def offered_until(entry: KubernetesMinor, extended: bool) -> date:
    """The last day a new cluster may be created on ``entry``, with or without extended support."""
    return entry.extended_until if extended else entry.new_clusters_until
