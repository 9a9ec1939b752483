"""The server's ONNX Runtime on the GPU (mlstack:serverGpu): its CUDA build, paired with the GPUs and drivers of
every target, and the image it is installed in.

mlstack/catalogue.py (SERVER_CUDA) holds the facts with their sources; app/requirements-server-gpu.txt must
install what they describe. The rules are mlstack.clouds.gcp.server_gpu_gke, mlstack.clouds.azure.server_gpu_aks
and mlstack.rules.server_gpu_image_platform.
"""

from __future__ import annotations

import re

import pytest

from mlstack import catalogue, rules
from mlstack.clouds import azure, gcp
from tools import harness

BUILD = catalogue.SERVER_CUDA
GPU_REQUIREMENTS = harness.ROOT / "app" / "requirements-server-gpu.txt"


def pins() -> dict[str, str]:
    """Package -> pinned version, from app/requirements-server-gpu.txt."""
    found = {}
    for raw in GPU_REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            found[name] = version
    return found


# --- the catalogue agrees with the image ------------------------------------------


def test_the_build_is_the_onnxruntime_gpu_the_image_installs() -> None:
    name, version = BUILD.package.split("==")
    assert pins()[name] == version


def test_the_image_installs_the_cuda_and_cudnn_majors_the_build_is_for() -> None:
    """CUDA 13 wheels carry the toolkit's version (nvidia-cuda-runtime 13.x); cuDNN's name carries its CUDA."""
    cuda_major = BUILD.cuda.split(".")[0]
    found = pins()
    for wheel in ("nvidia-cuda-runtime", "nvidia-cuda-nvrtc", "nvidia-nvjitlink"):
        assert found[wheel].split(".")[0] == cuda_major, f"{wheel}=={found[wheel]} is not CUDA {cuda_major}"
    cudnn = f"nvidia-cudnn-cu{cuda_major}"
    assert cudnn in found, f"no {cudnn}: cuDNN for another CUDA would not load"
    assert found[cudnn].split(".")[0] == str(BUILD.cudnn_major)
    assert not any(re.search(r"-cu(?!" + cuda_major + r"$)\d+$", n) for n in found), "a wheel for another CUDA"


def test_the_driver_floor_is_cuda_13s_as_the_trainers_cuda_13_build_has_it() -> None:
    assert BUILD.min_driver_branch == int(BUILD.min_driver.split(".")[0]) == 580
    trainer = catalogue.TRAINER_CUDA_BUILDS[BUILD.cuda]
    assert (trainer.min_driver, trainer.min_driver_branch) == (BUILD.min_driver, BUILD.min_driver_branch)


@pytest.mark.parametrize(
    ("capability", "runs"),
    [((6, 0), False), ((6, 1), False), ((7, 0), False), ((7, 5), True), ((8, 0), True), ((8, 6), True),
     ((8, 9), True), ((9, 0), True), ((10, 0), False), ((12, 0), True), ((12, 1), False)],
)  # fmt: skip
def test_which_capabilities_the_build_runs_on(capability: tuple[int, int], runs: bool) -> None:
    """Turing and later; 9.0 and 12.0 through "a" kernels, which no other capability runs; no Blackwell 10.0."""
    assert catalogue.server_runs_on(BUILD, capability) is runs


# --- GKE -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpu_type", "runs"),
    [("nvidia-tesla-t4", True), ("nvidia-l4", True), ("nvidia-tesla-a100", True), ("nvidia-a100-80gb", True),
     ("nvidia-h100-80gb", True), ("nvidia-tesla-p4", False), ("nvidia-tesla-p100", False),
     ("nvidia-tesla-v100", False)],
)  # fmt: skip
def test_gke_gpus_the_server_runs_on(gpu_type: str, runs: bool) -> None:
    problems = gcp.server_gpu_gke(gpu_type, "LATEST")
    if runs:
        assert problems == []
        return
    (problem,) = problems
    capability = gcp.GCP_ACCELERATORS[gpu_type].compute_capability
    assert (problem.key, problem.value) == ("gkeGpuType", gpu_type)
    assert f"compute capability {capability[0]}.{capability[1]}" in problem.reason
    assert "mlstack:serverGpu" in problem.reason
    assert "serverGpu to false" in problem.reason
    assert "7.5, 8.0, 8.6, 8.9, 9.0, 12.0" in problem.reason


def test_gkes_default_driver_cannot_run_cuda_13_and_the_problem_names_latest() -> None:
    """GKE's DEFAULT installs R535 (gcp.GCP_DRIVER_BRANCH), which CUDA 13 cannot use."""
    (problem,) = gcp.server_gpu_gke("nvidia-tesla-t4", "DEFAULT")
    assert (problem.key, problem.value) == ("gkeGpuDriverVersion", "DEFAULT")
    assert "R535" in problem.reason
    assert BUILD.min_driver in problem.reason
    assert "set gkeGpuDriverVersion to LATEST" in problem.reason
    assert str(problem).startswith("mlstack:gkeGpuDriverVersion = 'DEFAULT': GKE with gkeGpuDriverVersion DEFAULT")


@pytest.mark.parametrize("driver_version", ["LATEST", "INSTALLATION_DISABLED"])
def test_latest_runs_it_and_a_driver_the_user_installs_is_not_judged(driver_version: str) -> None:
    assert gcp.server_gpu_gke("nvidia-l4", driver_version) == []


def test_a_pre_turing_gpu_on_the_default_driver_gets_both_problems() -> None:
    problems = gcp.server_gpu_gke("nvidia-tesla-v100", "DEFAULT")
    assert [p.key for p in problems] == ["gkeGpuType", "gkeGpuDriverVersion"]


def test_unknown_gke_values_are_left_to_the_pool_rule() -> None:
    """gke_gpu_pool refuses an unknown GPU type or driver setting, with the choices; no second message here."""
    assert gcp.server_gpu_gke("nvidia-tesla-k80", "NEWEST") == []
    assert gcp.gke_gpu_pool(
        "nvidia-tesla-k80", "n1-standard-4", 1, driver_version="NEWEST", trainer_gpus=1,
        build=catalogue.TRAINER_CUDA_BUILDS[catalogue.DEFAULT_TRAINER_CUDA],
    )  # fmt: skip


# --- AKS -------------------------------------------------------------------------


@pytest.mark.parametrize("size", sorted(azure.AZURE_GPU_SIZES))
def test_every_aks_size_runs_the_server(size: str) -> None:
    """AKS installs R580 (azure.AKS_DRIVER_BRANCH) and sells T4, A100 and H100: all run CUDA 13."""
    assert azure.server_gpu_aks(size) == []


def test_aks_driver_rule_fires_below_580() -> None:
    (problem,) = rules.server_gpu_driver(570, "aksGpuVmSize", "Standard_NC4as_T4_v3", "AKS", "set serverGpu to false")
    assert "AKS installs an R570 NVIDIA driver" in problem.reason
    assert problem.reason.endswith("needs 580.65.06 or newer; set serverGpu to false")


def test_unknown_and_retired_aks_sizes_are_left_to_the_pool_rule() -> None:
    assert azure.server_gpu_aks("Standard_NC6s_v3") == []
    assert azure.aks_gpu_pool("Standard_NC6s_v3", 1, catalogue.TRAINER_CUDA_BUILDS[catalogue.DEFAULT_TRAINER_CUDA])


# --- the image's platform ----------------------------------------------------------


@pytest.mark.parametrize(("platform", "refused"), [("linux/amd64", False), (None, False), ("linux/arm64", True)])
def test_the_gpu_image_is_x86_64_alone(platform: str | None, refused: bool) -> None:
    problems = rules.server_gpu_image_platform(platform)
    assert bool(problems) is refused
    for problem in problems:
        assert (problem.key, problem.value) == ("imagePlatform", platform)
        assert BUILD.package in problem.reason
        assert catalogue.SERVER_GPU_PLATFORM in problem.reason
    assert catalogue.SERVER_GPU_PLATFORM in catalogue.IMAGE_PLATFORMS
