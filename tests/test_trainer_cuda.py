"""The trainer's CUDA build, paired with the GPUs and drivers of every target, in one place.

components/gpu.py holds the pairing; the image, the config and the catalogue
must all honour it. Sources are cited in gpu.py beside each fact.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from components import gpu
from components.image import TORCH_INDEX_ARG
from tools import harness

RunStack = Callable[..., harness.StackRun]
Problems = Callable[..., list[str]]
DOCKERFILE = (harness.ROOT / "app" / "Dockerfile").read_text(encoding="utf-8")
CU126, CU130 = gpu.TRAINER_CUDA_BUILDS["12.6"], gpu.TRAINER_CUDA_BUILDS["13.0"]


# --- the image agrees with the catalogue ----------------------------------------


def test_the_dockerfile_default_index_is_the_default_build() -> None:
    match = re.search(rf"^ARG {TORCH_INDEX_ARG}=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, f"app/Dockerfile declares no ARG {TORCH_INDEX_ARG} with a default"
    assert match.group(1) == gpu.TRAINER_CUDA_BUILDS[gpu.DEFAULT_TRAINER_CUDA].index_url


def test_the_dockerfile_installs_torch_from_that_index_at_the_pinned_version() -> None:
    """Bug: torch==2.13.0 from PyPI is the CUDA 13 build, which GKE's DEFAULT R535 driver cannot run."""
    install = re.search(r"--index-url \"\$" + TORCH_INDEX_ARG + r"\"\s*\\\s*\"\$\(grep -E '\^torch==' ", DOCKERFILE)
    assert install, "the trainer stage must install torch from $TORCH_INDEX_URL at requirements-trainer.txt's pin"
    pins = (harness.ROOT / "app" / "requirements-trainer.txt").read_text(encoding="utf-8")
    assert re.search(r"^torch==\d+\.\d+\.\d+$", pins, re.MULTILINE), "torch must be pinned without a local label"


@pytest.mark.parametrize("cuda", sorted(gpu.TRAINER_CUDA_BUILDS))
def test_each_build_is_pytorchs_own_index_for_its_cuda(cuda: str) -> None:
    build = gpu.TRAINER_CUDA_BUILDS[cuda]
    assert build.index_url == "https://download.pytorch.org/whl/cu" + cuda.replace(".", "")
    assert build.min_driver_branch == int(build.min_driver.split(".")[0])


@pytest.mark.parametrize(("stack", "cuda"), [("dev", "12.6"), ("gke", "12.6"), ("gke", "13.0")])
def test_the_stack_builds_the_trainer_with_the_configured_index(run_stack: RunStack, stack: str, cuda: str) -> None:
    overrides = {"trainerCuda": cuda} | ({"gkeGpuDriverVersion": "LATEST"} if cuda == "13.0" else {})
    result = run_stack(stack, overrides=overrides)
    trainer = result.one("docker-build:index:Image", "-trainer")
    server = result.one("docker-build:index:Image", "-server")
    assert trainer.inputs["buildArgs"] == {TORCH_INDEX_ARG: gpu.TRAINER_CUDA_BUILDS[cuda].index_url}
    assert not server.inputs.get("buildArgs"), "the server image has no torch"


# --- GPUs the build cannot run -------------------------------------------------


@pytest.mark.parametrize(
    ("capability", "cu126", "cu130"),
    [((5, 0), True, False), ((6, 0), True, False), ((6, 1), True, False), ((7, 0), True, False),
     ((7, 5), True, True), ((8, 0), True, True), ((8, 9), True, True), ((9, 0), True, True),
     ((10, 0), False, True), ((12, 0), False, True)],
)  # fmt: skip
def test_which_capabilities_each_build_runs(capability: tuple[int, int], cu126: bool, cu130: bool) -> None:
    assert (gpu.runs_on(CU126, capability), gpu.runs_on(CU130, capability)) == (cu126, cu130)


def test_every_gpu_in_the_catalogue_runs_the_default_build() -> None:
    default = gpu.TRAINER_CUDA_BUILDS[gpu.DEFAULT_TRAINER_CUDA]
    for name, accelerator in gpu.GCP_ACCELERATORS.items():
        assert gpu.runs_on(default, accelerator.compute_capability), name
    for size, entry in gpu.AZURE_GPU_SIZES.items():
        assert gpu.runs_on(default, entry.compute_capability), size


@pytest.mark.parametrize(
    ("gpu_type", "machine"), [("nvidia-tesla-v100", "n1-standard-8"), ("nvidia-tesla-p100", "n1-standard-4"),
                              ("nvidia-tesla-p4", "n1-standard-4")],
)  # fmt: skip
def test_gke_refuses_a_gpu_the_cuda_13_build_cannot_run(stack_problems: Problems, gpu_type: str, machine: str) -> None:
    problems = stack_problems("gke", trainerCuda="13.0", gkeGpuDriverVersion="LATEST",
                              gkeGpuType=gpu_type, gkeGpuMachineType=machine)  # fmt: skip
    (problem,) = [p for p in problems if p.startswith("mlstack:gkeGpuType ")]
    assert f"'{gpu_type}'" in problem
    assert "not supported by the trainer's CUDA 13.0 build (mlstack:trainerCuda)" in problem
    assert "set mlstack:trainerCuda to 12.6" in problem


def test_the_cuda_12_build_runs_a_v100(run_stack: RunStack) -> None:
    run_stack("gke", overrides={"gkeGpuType": "nvidia-tesla-v100", "gkeGpuMachineType": "n1-standard-8"})


# --- drivers -------------------------------------------------------------------


def test_gke_default_driver_is_too_old_for_cuda_13(stack_problems: Problems) -> None:
    """GKE 1.33's DEFAULT driver is R535 (CUDA 12.2); a CUDA 13 build needs 580+."""
    problems = stack_problems("gke", trainerCuda="13.0")
    (problem,) = [p for p in problems if p.startswith("mlstack:gkeGpuDriverVersion ")]
    assert "R535" in problem
    assert "needs 580.65.06 or newer" in problem


def test_every_shipped_gpu_stack_pairs_its_driver_with_the_default_build(run_stack: RunStack) -> None:
    default = gpu.TRAINER_CUDA_BUILDS[gpu.DEFAULT_TRAINER_CUDA]
    assert (gpu.GCP_DRIVER_BRANCH["DEFAULT"] or 0) >= default.min_driver_branch
    assert default.min_driver_branch <= gpu.AKS_DRIVER_BRANCH
    for stack in ("dev", "gke"):
        run_stack(stack)  # no config problem


# --- Azure sizes that no longer exist -------------------------------------------


@pytest.mark.parametrize(("size", "date"), sorted(gpu.AZURE_RETIRED_GPU_SIZES.items()))
def test_retired_azure_sizes_are_refused_with_their_date(stack_problems: Problems, size: str, date: str) -> None:
    problems = stack_problems("dev", aksGpuVmSize=size)
    (problem,) = [p for p in problems if p.startswith("mlstack:aksGpuVmSize ")]
    assert f"retired by Azure on {date}" in problem
    assert "Standard_NC4as_T4_v3" in problem  # the sizes that remain
    assert size not in gpu.AZURE_GPU_SIZES


def test_gpu_capabilities_are_recorded_for_every_gpu() -> None:
    expected = {"nvidia-tesla-t4": (7, 5), "nvidia-tesla-v100": (7, 0), "nvidia-tesla-p100": (6, 0),
                "nvidia-tesla-p4": (6, 1), "nvidia-l4": (8, 9), "nvidia-tesla-a100": (8, 0),
                "nvidia-a100-80gb": (8, 0), "nvidia-h100-80gb": (9, 0)}  # fmt: skip
    assert {n: a.compute_capability for n, a in gpu.GCP_ACCELERATORS.items()} == expected
    by_model = {e.gpu_model: e.compute_capability for e in gpu.AZURE_GPU_SIZES.values()}
    assert by_model == {"nvidia-tesla-t4": (7, 5), "nvidia-a100-80gb": (8, 0), "nvidia-h100-nvl": (9, 0),
                        "nvidia-a100-40gb": (8, 0), "nvidia-h100-80gb": (9, 0)}  # fmt: skip
