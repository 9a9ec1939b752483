"""The trainer's torch build (a CUDA one paired with the GPUs and drivers of every target, or the
CPU-only one for a target without a GPU), in one place.

mlstack/catalogue.py holds the pairing; the default trainer's image (examples/digits/Dockerfile) and
the catalogue's GPUs and drivers must honour it. Sources are cited in catalogue.py
beside each fact. How the stacks' config meets it: tests/stacks/test_trainer_cuda.py.
"""

from __future__ import annotations

import re

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from components.image import TORCH_INDEX_ARG
from mlstack import catalogue, rules
from mlstack.clouds import azure, gcp
from tools import harness

DOCKERFILE = (harness.ROOT / "examples" / "digits" / "Dockerfile").read_text(encoding="utf-8")
REQUIREMENTS = harness.ROOT / "examples" / "digits" / "requirements.txt"
CU126, CU130 = catalogue.TRAINER_CUDA_BUILDS["12.6"], catalogue.TRAINER_CUDA_BUILDS["13.0"]
DEFAULT = catalogue.TRAINER_CUDA_BUILDS[catalogue.DEFAULT_TRAINER_CUDA]


# --- the image agrees with the catalogue ----------------------------------------


def test_the_dockerfile_default_index_is_the_default_build() -> None:
    match = re.search(rf"^ARG {TORCH_INDEX_ARG}=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert match, f"examples/digits/Dockerfile declares no ARG {TORCH_INDEX_ARG} with a default"
    assert match.group(1) == DEFAULT.index_url


def test_the_dockerfile_installs_torch_from_that_index_at_the_pinned_version() -> None:
    """Bug: torch==2.13.0 from PyPI is the CUDA 13 build, which GKE's DEFAULT R535 driver cannot run."""
    install = re.search(r"--index-url \"\$" + TORCH_INDEX_ARG + r"\"\s*\\\s*\"\$\(grep -E '\^torch==' ", DOCKERFILE)
    assert install, "the image must install torch from $TORCH_INDEX_URL at requirements.txt's pin"
    pins = REQUIREMENTS.read_text(encoding="utf-8")
    assert re.search(r"^torch==\d+\.\d+\.\d+$", pins, re.MULTILINE), "torch must be pinned without a local label"


@pytest.mark.parametrize("cuda", sorted(catalogue.TRAINER_CUDA_BUILDS))
def test_each_build_is_pytorchs_own_index_for_its_cuda(cuda: str) -> None:
    build = catalogue.TRAINER_CUDA_BUILDS[cuda]
    assert build.index_url == "https://download.pytorch.org/whl/cu" + cuda.replace(".", "")
    assert build.min_driver_branch == int(build.min_driver.split(".")[0])


def test_the_cpu_build_is_pytorchs_cpu_index_and_a_choice_beside_the_cuda_ones() -> None:
    assert catalogue.TRAINER_CPU.index_url == "https://download.pytorch.org/whl/cpu"
    assert list(catalogue.TRAINER_BUILDS) == ["12.6", "13.0", "cpu"]
    assert catalogue.TRAINER_BUILDS["cpu"] is catalogue.TRAINER_CPU


@pytest.mark.parametrize("name", sorted(catalogue.TRAINER_BUILDS))
def test_each_builds_torch_meets_the_requirements_pin(name: str) -> None:
    """The image installs torch from the build's index, then requirements.txt from PyPI: that second
    install must keep the first torch, whose version carries the index's local label (2.13.0+cpu)."""
    pins = REQUIREMENTS.read_text(encoding="utf-8")
    match = re.search(r"^torch==(\S+)$", pins, re.MULTILINE)
    assert match, "requirements.txt pins no torch"
    label = catalogue.TRAINER_BUILDS[name].index_url.rsplit("/", 1)[1]  # PyTorch names its indexes by label
    installed = Version(f"{match.group(1)}+{label}")
    assert installed in SpecifierSet(f"=={match.group(1)}"), f"{installed} does not meet torch=={match.group(1)}"


@pytest.mark.parametrize(("gpu", "build"), [(True, "12.6"), (False, "cpu")])
def test_a_target_without_its_own_setting_gets_cuda_with_a_gpu_and_cpu_without(gpu: bool, build: str) -> None:
    assert catalogue.default_trainer_build(gpu) is catalogue.TRAINER_BUILDS[build]
    assert rules.trainer_build("", gpu) == []


@pytest.mark.parametrize(
    ("value", "gpu", "refused"),
    [("12.6", True, False), ("13.0", True, False), ("cpu", True, True),
     ("12.6", False, True), ("13.0", False, True), ("cpu", False, False),
     ("11.8", True, True), ("11.8", False, True), ("CPU", False, True)],
)  # fmt: skip
def test_which_builds_fit_a_target_with_and_without_a_gpu(value: str, gpu: bool, refused: bool) -> None:
    problems = rules.trainer_build(value, gpu)
    assert bool(problems) == refused, problems
    assert all(p.key == "trainerCuda" and p.value == value for p in problems)


# --- GPUs and drivers the builds run on -------------------------------------------


@pytest.mark.parametrize(
    ("capability", "cu126", "cu130"),
    [((5, 0), True, False), ((6, 0), True, False), ((6, 1), True, False), ((7, 0), True, False),
     ((7, 5), True, True), ((8, 0), True, True), ((8, 9), True, True), ((9, 0), True, True),
     ((10, 0), False, True), ((12, 0), False, True)],
)  # fmt: skip
def test_which_capabilities_each_build_runs(capability: tuple[int, int], cu126: bool, cu130: bool) -> None:
    assert (catalogue.runs_on(CU126, capability), catalogue.runs_on(CU130, capability)) == (cu126, cu130)


def test_every_gpu_in_the_catalogue_runs_the_default_build() -> None:
    for name, accelerator in gcp.GCP_ACCELERATORS.items():
        assert catalogue.runs_on(DEFAULT, accelerator.compute_capability), name
    for size, entry in azure.AZURE_GPU_SIZES.items():
        assert catalogue.runs_on(DEFAULT, entry.compute_capability), size


def test_the_drivers_of_the_shipped_gpu_stacks_run_the_default_build() -> None:
    """The drivers the shipped GPU stacks get: GKE's for Pulumi.gke.yaml's setting, AKS's own."""
    declared = harness.project_declarations()["mlstack:gkeGpuDriverVersion"]["default"]
    gke = yaml.safe_load((harness.ROOT / "Pulumi.gke.yaml").read_text(encoding="utf-8"))["config"]
    setting = gke.get("mlstack:gkeGpuDriverVersion", declared)
    assert (gcp.GCP_DRIVER_BRANCH[setting] or 0) >= DEFAULT.min_driver_branch, setting
    assert (gcp.GCP_DRIVER_BRANCH["DEFAULT"] or 0) >= DEFAULT.min_driver_branch
    assert DEFAULT.min_driver_branch <= azure.AKS_DRIVER_BRANCH


def test_gpu_capabilities_are_recorded_for_every_gpu() -> None:
    expected = {"nvidia-tesla-t4": (7, 5), "nvidia-tesla-v100": (7, 0), "nvidia-tesla-p100": (6, 0),
                "nvidia-tesla-p4": (6, 1), "nvidia-l4": (8, 9), "nvidia-tesla-a100": (8, 0),
                "nvidia-a100-80gb": (8, 0), "nvidia-h100-80gb": (9, 0)}  # fmt: skip
    assert {n: a.compute_capability for n, a in gcp.GCP_ACCELERATORS.items()} == expected
    by_model = {e.gpu_model: e.compute_capability for e in azure.AZURE_GPU_SIZES.values()}
    assert by_model == {"nvidia-tesla-t4": (7, 5), "nvidia-a100-80gb": (8, 0), "nvidia-h100-nvl": (9, 0),
                        "nvidia-a100-40gb": (8, 0), "nvidia-h100-80gb": (9, 0)}  # fmt: skip


@pytest.mark.parametrize("size", sorted(azure.AZURE_RETIRED_GPU_SIZES))
def test_retired_azure_sizes_are_not_in_the_catalogue(size: str) -> None:
    assert size not in azure.AZURE_GPU_SIZES
