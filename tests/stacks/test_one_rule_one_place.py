"""One rule, one place, one wording: the config loader and a component's own check say the same thing.

``stack.config.load`` (run through the harness, as `pulumi up` runs it) and the
check each component applies to its Args call the same rule in mlstack/rules.py,
so a bad value reads the same whether the stack's config or a caller of the
component supplied it. Each case sets one bad value both ways and compares the
printed lines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from components import aks, gke, image, workloads
from components.image import AppImageArgs
from components.target import GpuScheduling, Registry
from mlstack.problems import Problem, format_problem
from tests.args import AKS_ARGS, TRAINING, FakeTarget, gke_args, workloads_args
from tests.support import CountingMocks, StackProblems
from tools import harness


def config_line(problems: list[str], key: str) -> str:
    """The one line config.load printed for ``key``."""
    (line,) = [p for p in problems if p.startswith(f"mlstack:{key} ")]
    return line


def check_line(problems: list[Problem], key: str) -> str:
    """The one line a component's check printed for ``key``."""
    (line,) = [format_problem(p) for p in problems if p.key == key]
    return line


def refusal(build: Callable[[], object], error: type[Exception]) -> list[str]:
    """The lines of the error a component raises under mocks, having created nothing."""
    mocks = CountingMocks()
    with pytest.raises(error) as caught:
        harness.run(build, {}, mocks=mocks)
    assert mocks.created == [], f"created before refusing: {mocks.created}"
    return [line.removeprefix("  - ") for line in str(caught.value).splitlines()[1:]]


# --- GKE --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "changes", "key"),
    [
        ({"gpuMinNodes": 3, "gpuMaxNodes": 1}, {"gpu_min_nodes": 3, "gpu_max_nodes": 1}, "gpuMaxNodes"),
        ({"gkeGpuType": "nvidia-tesla-k80"}, {"gpu_type": "nvidia-tesla-k80"}, "gkeGpuType"),
        ({"gkeReleaseChannel": "NIGHTLY"}, {"release_channel": "NIGHTLY"}, "gkeReleaseChannel"),
        ({"gkeGpuDriverVersion": "R535"}, {"gpu_driver_version": "R535"}, "gkeGpuDriverVersion"),
        ({"gkeGpuCount": 3}, {"gpu_count": 3}, "gkeGpuCount"),
        ({"gcpZone": "europe-west4-a"}, {"location": "europe-west4-a"}, "gcpZone"),
        ({"systemNodeCount": 0}, {"system_node_count": 0}, "systemNodeCount"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else v,
)
def test_gke_config_and_gke_cluster_say_the_same(
    stack_problems: StackProblems, overrides: dict[str, Any], changes: dict[str, Any], key: str
) -> None:
    from_config = config_line(stack_problems("gke", **overrides), key)
    args = gke_args(**changes)
    assert check_line(gke.check_args(args), key) == from_config
    assert from_config in refusal(lambda: gke.GkeGpuCluster("gke", args), gke.GkeError)


# --- AKS --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "changes", "key"),
    [
        ({"gpuMinNodes": 3, "gpuMaxNodes": 1}, {"gpu_min_nodes": 3, "gpu_max_nodes": 1}, "gpuMaxNodes"),
        ({"aksGpuVmSize": "Standard_E8s_v5"}, {"gpu_vm_size": "Standard_E8s_v5"}, "aksGpuVmSize"),
        ({"aksGpuVmSize": "Standard_NC6s_v3"}, {"gpu_vm_size": "Standard_NC6s_v3"}, "aksGpuVmSize"),
        ({"aksUpgradeChannel": "weekly"}, {"upgrade_channel": "weekly"}, "aksUpgradeChannel"),
        ({"azureLocation": "westeurop"}, {"location": "westeurop"}, "azureLocation"),
        ({"acrSku": "basic"}, {"acr_sku": "basic"}, "acrSku"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else v,
)
def test_aks_config_and_aks_cluster_say_the_same(
    stack_problems: StackProblems, overrides: dict[str, Any], changes: dict[str, Any], key: str
) -> None:
    from_config = config_line(stack_problems("dev", **overrides), key)
    args = dataclasses.replace(AKS_ARGS, **changes)
    assert check_line(aks.check_args(args), key) == from_config
    assert from_config in refusal(lambda: aks.AksGpuCluster("unit", args), aks.AksError)


def test_a_spot_price_reads_the_same_reason_from_config_and_aks_cluster(stack_problems: StackProblems) -> None:
    """The config shows the text the stack file holds ('0'), the component the number it was given (0.0)."""
    from_config = config_line(stack_problems("dev", aksSpotMaxPrice="0"), "aksSpotMaxPrice")
    from_check = check_line(aks.check_args(dataclasses.replace(AKS_ARGS, spot_max_price=0.0)), "aksSpotMaxPrice")
    assert from_config.removeprefix("mlstack:aksSpotMaxPrice = '0'") == from_check.removeprefix(
        "mlstack:aksSpotMaxPrice = 0.0"
    )


# --- the workloads: more GPUs than a node carries ------------------------------------------


def workloads_line(gpu: GpuScheduling, gpus: int) -> str:
    with pytest.raises(workloads.WorkloadsError) as caught:
        workloads.check(workloads_args(FakeTarget(gpu=gpu), training=replace(TRAINING, gpus=gpus)))
    (line,) = str(caught.value).splitlines()[1:]
    return line.removeprefix("  - ")


def test_trainer_gpus_above_a_gke_nodes_read_the_same_from_config_and_workloads(stack_problems: StackProblems) -> None:
    from_config = config_line(stack_problems("gke", trainerGpus=2), "trainerGpus")
    assert workloads_line(gke.gpu_scheduling("nvidia-tesla-t4", 1, 1), 2) == from_config


def test_trainer_gpus_above_an_aks_nodes_read_the_same_from_config_and_workloads(
    stack_problems: StackProblems,
) -> None:
    from_config = config_line(stack_problems("dev", trainerGpus=2), "trainerGpus")
    from_workloads = workloads_line(aks.gpu_scheduling(replace(AKS_ARGS, gpu_vm_size="Standard_NC4as_T4_v3")), 2)
    assert from_workloads == from_config


def test_a_gpu_pool_too_small_for_the_training_pods_reads_the_same_from_config_and_workloads(
    stack_problems: StackProblems,
) -> None:
    from_config = config_line(stack_problems("gke", trainNodes=3, gpuMaxNodes=2), "trainNodes")
    with pytest.raises(workloads.WorkloadsError) as caught:
        workloads.check(
            workloads_args(
                FakeTarget(gpu=gke.gpu_scheduling("nvidia-tesla-t4", 1, 2)), training=replace(TRAINING, nodes=3)
            )
        )
    (line,) = str(caught.value).splitlines()[1:]
    assert line.removeprefix("  - ") == from_config


# --- the images ------------------------------------------------------------------------------


def test_an_unknown_image_platform_reads_the_same_from_config_and_the_image_build(
    stack_problems: StackProblems,
) -> None:
    from_config = config_line(stack_problems("local", imagePlatform="linux/s390x"), "imagePlatform")
    with pytest.raises(image.ImageError) as caught:
        image.check(
            AppImageArgs(registry=Registry(server="localhost:5001"), repository_prefix="m", platform="linux/s390x")
        )
    assert f"  - {from_config}" in str(caught.value).splitlines()


def test_an_app_name_gke_cannot_use_is_refused_by_the_config(stack_problems: StackProblems) -> None:
    from_component = check_line(gke.check_args(gke_args(repository_id="1abc")), "appName")
    # Among the config's: "1abc" also names the app's Services, which must start with a letter too.
    assert from_component in stack_problems("gke", appName="1abc")


# --- the gate: the config and the publisher ---------------------------------------------------------


def test_a_gate_metric_is_refused_in_the_publishers_own_words(
    stack_problems: StackProblems, capsys: pytest.CaptureFixture[str]
) -> None:
    """The config judges the gate with mlapp.gate, as the publish step will: a metric name it refuses is
    refused at `pulumi preview` in the words the publisher would fail the Job with."""
    from mlapp import publish

    line = config_line(stack_problems("local", gateMetric="9lives", gateThreshold="1"), "gateMetric")
    reason = line.removeprefix("mlstack:gateMetric = '9lives': ")
    assert reason.startswith("metric name '9lives' must be"), line
    argv = ["--run", "/r", "--model-dir", "/m", "--model-name", "n", "--version", "v", "--gate", "9lives>=1"]
    with pytest.raises(SystemExit):
        publish.build_parser().parse_args(argv)
    assert reason in capsys.readouterr().err
