"""The trainer's torch build as the stacks' config meets it: the image built with it (CUDA on a GPU pool,
CPU-only on a local cluster), builds that do not fit the target and GPUs and drivers refused.

The pairing itself (catalogue, Dockerfile): tests/pure/test_trainer_cuda.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.image import TORCH_INDEX_ARG
from mlapp import contract
from mlstack import catalogue
from mlstack.clouds import azure
from tests.support import IMAGE, JOB, STACKS, TRAIN, SharedRun, StackProblems, container
from tools import harness

CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def trainer_index(result: harness.StackRun) -> str:
    """The wheel index the stack's trainer image installs torch from."""
    build_args: dict[str, str] = result.one(IMAGE, "-trainer").inputs["buildArgs"]
    assert set(build_args) == {TORCH_INDEX_ARG}, build_args
    return build_args[TORCH_INDEX_ARG]


@pytest.mark.parametrize(
    ("stack", "overrides", "build"),
    [("dev", {}, "12.6"), ("gke", {}, "12.6"), ("local", {}, "cpu"),
     ("gke", {"trainerCuda": "13.0", "gkeGpuDriverVersion": "LATEST"}, "13.0"),
     ("dev", {"trainerCuda": "12.6"}, "12.6"), ("local", {"trainerCuda": "cpu"}, "cpu")],
)  # fmt: skip
def test_the_stack_builds_the_trainer_with_its_torch_build(
    shared_run: SharedRun, stack: str, overrides: dict[str, Any], build: str
) -> None:
    """Unset, mlstack:trainerCuda is the target's: CUDA 12.6 on a GPU pool, the CPU-only build on kind."""
    result = shared_run(stack, overrides=overrides)  # no overrides: the shipped stack
    assert trainer_index(result) == catalogue.TRAINER_BUILDS[build].index_url, f"{stack} {overrides}"
    assert not result.one(IMAGE, "-server").inputs.get("buildArgs"), "the server image has no torch"


def test_the_local_trainer_is_pytorchs_cpu_build(shipped: dict[str, harness.StackRun]) -> None:
    """Finding: the local stack built the CUDA 12.6 trainer (gigabytes) to train on a CPU-only kind node."""
    assert trainer_index(shipped["local"]) == CPU_INDEX


@pytest.mark.parametrize("stack", STACKS)
def test_the_trainer_carries_cuda_exactly_when_its_job_asks_for_a_gpu(
    shipped: dict[str, harness.StackRun], stack: str
) -> None:
    """A CPU-only torch told MLAPP_DEVICE=cuda exits 1; a CUDA torch told cpu is dead weight."""
    result = shipped[stack]
    env = {var["name"]: var.get("value") for var in container(result.one(JOB, TRAIN))["env"]}
    device = env[contract.ENV_DEVICE]
    index = trainer_index(result)
    assert (device == "cuda") == (index != CPU_INDEX), f"{stack}: {contract.ENV_DEVICE}={device}, torch from {index}"


@pytest.mark.parametrize("stack", ["dev", "gke"])
def test_a_gpu_target_refuses_the_cpu_build(stack_problems: StackProblems, stack: str) -> None:
    """Refused alone: the GPU pool is still judged (against the default CUDA build), and passes."""
    (problem,) = stack_problems(stack, trainerCuda="cpu")
    assert problem.startswith("mlstack:trainerCuda = 'cpu': is the CPU-only torch build")
    assert "trains on its GPU pool, where the trainer exits 1 without CUDA" in problem
    assert "set it to 12.6 or 13.0, or leave it empty for 12.6" in problem


@pytest.mark.parametrize("cuda", sorted(catalogue.TRAINER_CUDA_BUILDS))
def test_a_local_stack_refuses_a_cuda_build(stack_problems: StackProblems, cuda: str) -> None:
    (problem,) = stack_problems("local", trainerCuda=cuda)
    assert problem.startswith(f"mlstack:trainerCuda = '{cuda}': is a CUDA build, but a local cluster has no GPU")
    assert "leave it empty (or set cpu) for the CPU-only build" in problem


@pytest.mark.parametrize("stack", STACKS)
def test_an_unknown_build_is_refused_with_the_choices(stack_problems: StackProblems, stack: str) -> None:
    (problem,) = [p for p in stack_problems(stack, trainerCuda="11.8") if p.startswith("mlstack:trainerCuda ")]
    assert problem == "mlstack:trainerCuda = '11.8': must be one of 12.6, 13.0, cpu, or empty for the target's own"


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
    """GKE's DEFAULT driver on COS 125 (1.34, 1.35) is R535 (CUDA 12.2); a CUDA 13 build needs 580+."""
    problems = stack_problems("gke", trainerCuda="13.0")
    (problem,) = [p for p in problems if p.startswith("mlstack:gkeGpuDriverVersion ")]
    assert "R535" in problem
    assert "needs 580.65.06 or newer" in problem


@pytest.mark.parametrize(("size", "date"), sorted(azure.AZURE_RETIRED_GPU_SIZES.items()))
def test_retired_azure_sizes_are_refused_with_their_date(stack_problems: StackProblems, size: str, date: str) -> None:
    problems = stack_problems("dev", aksGpuVmSize=size)
    (problem,) = [p for p in problems if p.startswith("mlstack:aksGpuVmSize ")]
    assert f"retired by Azure on {date}" in problem
    assert "Standard_NC4as_T4_v3" in problem  # the sizes that remain
