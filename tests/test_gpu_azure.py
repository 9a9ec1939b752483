"""The Azure GPU catalogue, and its checks as the stack's config meets them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pulumi.runtime import mocks as pulumi_mocks

from components import gpu
from components.config import ConfigError
from tools import harness

RunStack = Callable[..., harness.StackRun]


class _CountingMocks(harness.StackMocks):
    """The default answers, counting every resource the program registers."""

    def __init__(self) -> None:
        default = harness.default_mocks()
        super().__init__(outputs=default.outputs, calls=default.calls)
        self.created: list[str] = []

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.created.append(f"{args.typ}::{args.name}")
        return super().new_resource(args)


def config_problems(run_stack: RunStack, **overrides: Any) -> list[str]:
    """The dev stack's config problems with ``overrides``; asserts that nothing was created."""
    mocks = _CountingMocks()
    with pytest.raises(ConfigError) as caught:
        run_stack("dev", overrides=overrides, mocks=mocks)
    assert mocks.created == [], f"resources were created before the config was refused: {mocks.created}"
    return caught.value.problems


def one_problem(problems: list[str], key: str) -> str:
    found = [p for p in problems if p.startswith(f"mlstack:{key} ")]
    assert len(found) == 1, f"expected one problem for mlstack:{key}, got {problems}"
    return found[0]


# --- the catalogue -------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "model", "gpus"),
    [
        ("Standard_NC4as_T4_v3", "nvidia-tesla-t4", 1),
        ("Standard_NC16as_T4_v3", "nvidia-tesla-t4", 1),
        ("Standard_NC64as_T4_v3", "nvidia-tesla-t4", 4),
        ("Standard_NC24ads_A100_v4", "nvidia-a100-80gb", 1),
        ("Standard_NC96ads_A100_v4", "nvidia-a100-80gb", 4),
        ("Standard_NC40ads_H100_v5", "nvidia-h100-nvl", 1),
        ("Standard_NC80adis_H100_v5", "nvidia-h100-nvl", 2),
        ("Standard_ND96asr_v4", "nvidia-a100-40gb", 8),
        ("Standard_ND96isr_H100_v5", "nvidia-h100-80gb", 8),
    ],
)
def test_catalogue_gives_each_size_its_gpu_and_count(size: str, model: str, gpus: int) -> None:
    entry = gpu.azure_gpu_size(size)
    assert (entry.gpu_model, entry.gpus) == (model, gpus), f"{size}: {entry}"


def test_catalogue_names_are_azure_vm_sizes() -> None:
    for size, entry in gpu.AZURE_GPU_SIZES.items():
        assert gpu.azure_vm_size(size) == size
        assert entry.gpus >= 1, f"{size} carries no GPU"


def test_catalogue_check_passes_a_sound_pool() -> None:
    assert gpu.check_azure_gpu_pool("Standard_NC64as_T4_v3", 4) == []


# --- each rule, as a stack's config meets it ---------------------------------------


def test_non_gpu_size_for_the_gpu_pool_is_refused(run_stack: RunStack) -> None:
    problem = one_problem(config_problems(run_stack, aksGpuVmSize="Standard_D4s_v5"), "aksGpuVmSize")
    assert "'Standard_D4s_v5': is not a GPU VM size" in problem
    for size in gpu.AZURE_GPU_SIZES:
        assert size in problem, f"{size} is not among the choices: {problem}"


def test_gpu_size_typo_is_refused_with_a_suggestion(run_stack: RunStack) -> None:
    problem = one_problem(config_problems(run_stack, aksGpuVmSize="Standard_NC4as_T4_v2"), "aksGpuVmSize")
    assert "did you mean Standard_NC4as_T4_v3?" in problem, problem
    assert "choose one of Standard_NC4as_T4_v3" in problem, problem


def test_more_gpus_per_pod_than_the_size_carries_is_refused(run_stack: RunStack) -> None:
    problem = one_problem(config_problems(run_stack, trainerGpus=2), "trainerGpus")
    assert "mlstack:trainerGpus = 2" in problem
    assert "Standard_NC4as_T4_v3 node carries 1 nvidia-tesla-t4" in problem, problem
    # The way out: the T4 size that carries enough.
    assert "Standard_NC64as_T4_v3" in problem, problem


def test_gpu_min_above_max_is_refused(run_stack: RunStack) -> None:
    problem = one_problem(config_problems(run_stack, gpuMinNodes=3, gpuMaxNodes=1), "gpuMaxNodes")
    assert problem == "mlstack:gpuMaxNodes = 1: must be at least mlstack:gpuMinNodes (3)"


def test_region_typo_is_refused_with_a_suggestion_and_the_choices(run_stack: RunStack) -> None:
    problem = one_problem(config_problems(run_stack, azureLocation="westeurop"), "azureLocation")
    assert "'westeurop': is not an Azure region (did you mean westeurope?)" in problem, problem
    for region in ("eastus2", "swedencentral", "westeurope"):
        assert region in problem, f"{region} is not among the choices: {problem}"


def test_region_in_display_form_is_pointed_at_its_name(run_stack: RunStack) -> None:
    problem = one_problem(config_problems(run_stack, azureLocation="West Europe"), "azureLocation")
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
def test_other_azure_keys_are_checked(run_stack: RunStack, key: str, value: str, expected: str) -> None:
    problem = one_problem(config_problems(run_stack, **{key: value}), key)
    assert f"mlstack:{key} = {value!r}: {expected}" in problem, problem


def test_every_azure_problem_is_reported_at_once(run_stack: RunStack) -> None:
    problems = config_problems(
        run_stack,
        azureLocation="eastu",
        aksGpuVmSize="Standard_D2s_v5",
        gpuMinNodes=2,
        gpuMaxNodes=1,
    )
    assert {p.split(" ", 1)[0] for p in problems} == {
        "mlstack:azureLocation",
        "mlstack:aksGpuVmSize",
        "mlstack:gpuMaxNodes",
    }, problems


def test_azure_keys_are_not_checked_on_another_cloud(run_stack: RunStack) -> None:
    result = run_stack("local", overrides={"azureLocation": "nowhere", "aksGpuVmSize": "Standard_D4s_v5"})
    assert not [r for r in result.registrations.values() if r.type.startswith("azure-native:")]
