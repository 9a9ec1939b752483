"""The Azure keys as the dev (AKS) stack's config meets them: each refused before anything is created.

The catalogue and the rules alone: tests/pure/test_catalogue.py, tests/pure/test_rules.py.
"""

from __future__ import annotations

import pytest

from mlstack.clouds import azure
from tests.support import SharedRun, StackProblems


def one_problem(problems: list[str], key: str) -> str:
    found = [p for p in problems if p.startswith(f"mlstack:{key} ")]
    assert len(found) == 1, f"expected one problem for mlstack:{key}, got {problems}"
    return found[0]


def test_non_gpu_size_for_the_gpu_pool_is_refused(stack_problems: StackProblems) -> None:
    problem = one_problem(stack_problems("dev", aksGpuVmSize="Standard_D4s_v5"), "aksGpuVmSize")
    assert "'Standard_D4s_v5': has no GPU" in problem
    for size in azure.AZURE_GPU_SIZES:
        assert size in problem, f"{size} is not among the choices: {problem}"


def test_gpu_size_typo_is_refused_with_a_suggestion(stack_problems: StackProblems) -> None:
    problem = one_problem(stack_problems("dev", aksGpuVmSize="Standard_NC4as_T4_v2"), "aksGpuVmSize")
    assert "did you mean Standard_NC4as_T4_v3?" in problem, problem
    assert "choose one of Standard_NC4as_T4_v3" in problem, problem


def test_more_gpus_per_pod_than_the_size_carries_is_refused(stack_problems: StackProblems) -> None:
    problem = one_problem(stack_problems("dev", trainerGpus=2), "trainerGpus")
    assert problem.startswith(
        "mlstack:trainerGpus = 2: a node of the GPU pool carries 1 nvidia-tesla-t4 GPU(s) and a pod cannot span nodes"
    ), problem
    # The way out: the T4 size that carries enough.
    assert problem.endswith("sizes with that many: Standard_NC64as_T4_v3"), problem


def test_gpu_min_above_max_is_refused(stack_problems: StackProblems) -> None:
    problem = one_problem(stack_problems("dev", gpuMinNodes=3, gpuMaxNodes=1), "gpuMaxNodes")
    assert problem == "mlstack:gpuMaxNodes = 1: must be at least mlstack:gpuMinNodes (3)"


def test_region_typo_is_refused_with_a_suggestion_and_the_choices(stack_problems: StackProblems) -> None:
    problem = one_problem(stack_problems("dev", azureLocation="westeurop"), "azureLocation")
    assert "'westeurop': is not an Azure region (did you mean westeurope?)" in problem, problem
    for region in ("eastus2", "swedencentral", "westeurope"):
        assert region in problem, f"{region} is not among the choices: {problem}"


def test_region_in_display_form_is_pointed_at_its_name(stack_problems: StackProblems) -> None:
    problem = one_problem(stack_problems("dev", azureLocation="West Europe"), "azureLocation")
    assert "did you mean westeurope?" in problem, problem


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("aksUpgradeChannel", "weekly", "must be one of none, patch, stable, rapid, node-image"),
        ("acrSku", "basic", "must be one of Basic, Standard, Premium"),
        ("aksSpotMaxPrice", "0", "must be -1 (up to the on-demand price) or a price above zero"),
        ("aksSpotMaxPrice", "cheap", "must be -1 or a price in US dollars per hour"),
        ("aksSystemVmSize", "D4s_v5", "must be an Azure VM size name such as Standard_D4s_v5"),
    ],
)
def test_other_azure_keys_are_checked(stack_problems: StackProblems, key: str, value: str, expected: str) -> None:
    problem = one_problem(stack_problems("dev", **{key: value}), key)
    assert f"mlstack:{key} = {value!r}: {expected}" in problem, problem


def test_every_azure_problem_is_reported_at_once(stack_problems: StackProblems) -> None:
    problems = stack_problems(
        "dev", azureLocation="eastu", aksGpuVmSize="Standard_D2s_v5", gpuMinNodes=2, gpuMaxNodes=1
    )
    assert {p.split(" ", 1)[0] for p in problems} == {
        "mlstack:azureLocation",
        "mlstack:aksGpuVmSize",
        "mlstack:gpuMaxNodes",
    }, problems


def test_azure_keys_are_not_checked_on_another_cloud(shared_run: SharedRun) -> None:
    result = shared_run("local", overrides={"azureLocation": "nowhere", "aksGpuVmSize": "Standard_D4s_v5"})
    assert not [r for r in result.registrations.values() if r.type.startswith("azure-native:")]
