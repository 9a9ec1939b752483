"""The trainer's CUDA build as the stacks' config meets it: the image built with it, GPUs and drivers refused.

The pairing itself (catalogue, Dockerfile): tests/pure/test_trainer_cuda.py.
"""

from __future__ import annotations

import pytest

from components.image import TORCH_INDEX_ARG
from mlstack import catalogue
from tests.support import IMAGE, SharedRun, StackProblems


@pytest.mark.parametrize(("stack", "cuda"), [("dev", "12.6"), ("gke", "12.6"), ("gke", "13.0")])
def test_the_stack_builds_the_trainer_with_the_configured_index(shared_run: SharedRun, stack: str, cuda: str) -> None:
    if cuda == catalogue.DEFAULT_TRAINER_CUDA:
        result = shared_run(stack)  # the shipped stack builds the default
    else:
        result = shared_run(stack, overrides={"trainerCuda": cuda, "gkeGpuDriverVersion": "LATEST"})
    trainer = result.one(IMAGE, "-trainer")
    server = result.one(IMAGE, "-server")
    assert trainer.inputs["buildArgs"] == {TORCH_INDEX_ARG: catalogue.TRAINER_CUDA_BUILDS[cuda].index_url}
    assert not server.inputs.get("buildArgs"), "the server image has no torch"


@pytest.mark.parametrize(
    ("gpu_type", "machine"), [("nvidia-tesla-v100", "n1-standard-8"), ("nvidia-tesla-p100", "n1-standard-4"),
                              ("nvidia-tesla-p4", "n1-standard-4")],
)  # fmt: skip
def test_gke_refuses_a_gpu_the_cuda_13_build_cannot_run(
    stack_problems: StackProblems, gpu_type: str, machine: str
) -> None:
    problems = stack_problems("gke", trainerCuda="13.0", gkeGpuDriverVersion="LATEST",
                              gkeGpuType=gpu_type, gkeGpuMachineType=machine)  # fmt: skip
    (problem,) = [p for p in problems if p.startswith("mlstack:gkeGpuType ")]
    assert f"'{gpu_type}'" in problem
    assert "not supported by the trainer's CUDA 13.0 build (mlstack:trainerCuda)" in problem
    assert "set mlstack:trainerCuda to 12.6" in problem


def test_the_cuda_12_build_runs_a_v100(shared_run: SharedRun) -> None:
    shared_run("gke", overrides={"gkeGpuType": "nvidia-tesla-v100", "gkeGpuMachineType": "n1-standard-8"})


def test_gke_default_driver_is_too_old_for_cuda_13(stack_problems: StackProblems) -> None:
    """GKE 1.33's DEFAULT driver is R535 (CUDA 12.2); a CUDA 13 build needs 580+."""
    problems = stack_problems("gke", trainerCuda="13.0")
    (problem,) = [p for p in problems if p.startswith("mlstack:gkeGpuDriverVersion ")]
    assert "R535" in problem
    assert "needs 580.65.06 or newer" in problem


@pytest.mark.parametrize(("size", "date"), sorted(catalogue.AZURE_RETIRED_GPU_SIZES.items()))
def test_retired_azure_sizes_are_refused_with_their_date(stack_problems: StackProblems, size: str, date: str) -> None:
    problems = stack_problems("dev", aksGpuVmSize=size)
    (problem,) = [p for p in problems if p.startswith("mlstack:aksGpuVmSize ")]
    assert f"retired by Azure on {date}" in problem
    assert "Standard_NC4as_T4_v3" in problem  # the sizes that remain
