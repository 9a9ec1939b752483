"""Why CUDA is (not) usable in this process, said in one line. No torch import here.

The training Job asks for a GPU exactly when its target has one, and then the
trainer must not quietly train on the CPU of an expensive GPU node: it finds
the cause and fails. The causes, in the order they are checked:

1. This torch build has no CUDA at all (a CPU wheel in a GPU image).
2. No NVIDIA driver is reachable: ``libcuda.so.1`` is not on the loader path.
   GKE mounts the driver at ``/usr/local/nvidia`` and does not set the loader
   path: containers must add ``/usr/local/nvidia/lib64`` to LD_LIBRARY_PATH
   (cloud.google.com/kubernetes-engine/docs/how-to/gpus, "Run GPUs in GKE
   Standard node pools", CUDA libraries); the Job sets it on that target.
3. The driver is older than the CUDA the build needs. A CUDA 12.x build runs
   on any driver of the 12.x family, 525.60.13 or newer, through minor-version
   compatibility; a CUDA 13.x build needs a 580 or newer driver
   (docs.nvidia.com/deploy/cuda-compatibility, "Minor Version Compatibility";
   CUDA Toolkit release notes, table 3).
4. The driver sees no GPU (the pod did not get one, or it is unhealthy).
5. The GPU's compute capability has no kernels in this build (e.g. a Volta
   V100, 7.0, under a build for 7.5 and newer): torch would start and then
   fail with "no kernel image is available for execution on the device".
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from dataclasses import dataclass

# The trainer's --device: the Job sets MLAPP_DEVICE to cuda when its pod requests a GPU, else cpu;
# auto, for a run by hand, takes CUDA when it works.
DEVICES = ("auto", "cuda", "cpu")
CUDA_SUCCESS = 0
CUDA_ERROR_NO_DEVICE = 100
CUDA_ERROR_INSUFFICIENT_DRIVER = 35
# The loader name of NVIDIA's driver API library; the driver ships it, CUDA wheels never do.
LIBCUDA = "libcuda.so.1"


@dataclass(frozen=True)
class DriverProbe:
    """What the driver says of itself, read through libcuda's C API."""

    loaded: bool  # libcuda.so.1 could be loaded
    load_error: str = ""
    init_status: int | None = None  # cuInit(0)
    driver_cuda: tuple[int, int] | None = None  # cuDriverGetVersion: the newest CUDA it runs
    device_count: int = 0


@dataclass(frozen=True)
class TorchBuild:
    """What the installed torch was built for."""

    version: str
    cuda: str | None  # torch.version.cuda, None for a CPU build
    arch_list: tuple[str, ...]  # torch.cuda.get_arch_list(), e.g. ("sm_75", "sm_80")


def probe_driver(library: str = LIBCUDA) -> DriverProbe:
    """Load the driver API and ask it for its version and GPUs; never raises."""
    try:
        lib = ctypes.CDLL(library)
    except OSError as e:
        return DriverProbe(loaded=False, load_error=str(e))
    status = int(lib.cuInit(0))
    version = ctypes.c_int(0)
    driver_cuda = None
    if int(lib.cuDriverGetVersion(ctypes.byref(version))) == CUDA_SUCCESS and version.value > 0:
        driver_cuda = (version.value // 1000, (version.value % 1000) // 10)
    count = ctypes.c_int(0)
    if status == CUDA_SUCCESS and int(lib.cuDeviceGetCount(ctypes.byref(count))) != CUDA_SUCCESS:
        count = ctypes.c_int(0)
    return DriverProbe(loaded=True, init_status=status, driver_cuda=driver_cuda, device_count=count.value)


def _major_minor(version: str) -> tuple[int, int]:
    major, _, rest = version.partition(".")
    return int(major), int(rest.partition(".")[0] or 0)


def _sm(capability: tuple[int, int]) -> str:
    return f"sm_{capability[0]}{capability[1]}"


def runnable_capability(capability: tuple[int, int], arch_list: Sequence[str]) -> bool:
    """Whether a build with ``arch_list`` has kernels for a GPU of ``capability``.

    Exact SASS for the capability, or the same major with a lower minor (SASS
    runs on later minors of its major), or PTX (``compute_XY``) of an older or
    equal capability, which the driver compiles.
    """
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit() or len(digits) < 2:
            continue
        major, minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and major == capability[0] and minor <= capability[1]:
            return True
        if kind == "compute" and (major, minor) <= capability:
            return True
    return False


def unusable_reason(  # noqa: PLR0911 - one return per cause, in the order the docstring gives
    build: TorchBuild,
    driver: DriverProbe,
    capabilities: Sequence[tuple[int, int]],
    ld_library_path: str | None = None,
) -> str | None:
    """Why CUDA cannot train here, or None when it can. ``capabilities``: one per visible GPU."""
    if build.cuda is None:
        return f"this torch build ({build.version}) has no CUDA support: the image carries a CPU-only torch"
    if not driver.loaded:
        path = ld_library_path if ld_library_path is not None else os.environ.get("LD_LIBRARY_PATH", "")
        return (
            f"no NVIDIA driver: {LIBCUDA} cannot be loaded ({driver.load_error}); LD_LIBRARY_PATH={path!r}. "
            "The node has no driver installed, or it is mounted where the loader does not look "
            "(GKE mounts it at /usr/local/nvidia/lib64)"
        )
    needed = _major_minor(build.cuda)
    floor = "580" if needed[0] >= 13 else "525.60.13"
    if driver.init_status == CUDA_ERROR_INSUFFICIENT_DRIVER or (
        driver.driver_cuda is not None and driver.driver_cuda[0] < needed[0]
    ):
        supports = "{}.{}".format(*driver.driver_cuda) if driver.driver_cuda else "an older CUDA"
        return (
            f"the NVIDIA driver is too old: it supports CUDA {supports}, this torch build needs CUDA "
            f"{build.cuda}, i.e. a driver {floor} or newer"
        )
    if driver.init_status == CUDA_ERROR_NO_DEVICE or (driver.init_status == CUDA_SUCCESS and not capabilities):
        return "the NVIDIA driver sees no GPU: the pod got none (check its nvidia.com/gpu limit) or it is unhealthy"
    if driver.init_status not in (None, CUDA_SUCCESS):
        return f"the NVIDIA driver failed to initialise (cuInit error {driver.init_status})"
    for capability in capabilities:
        if not runnable_capability(capability, build.arch_list):
            return (
                f"the GPU is too old for this build: compute capability {capability[0]}.{capability[1]} "
                f"({_sm(capability)}) has no kernels in torch {build.version} (built for "
                f"{', '.join(build.arch_list) or 'no architecture'})"
            )
    return None
