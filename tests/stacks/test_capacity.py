"""The config refuses node sizes that cannot hold their pods, as the shipped stacks meet the rule.

What a node of each size holds: tests/pure/test_capacity.py; the rule itself: tests/pure/test_rules.py.
"""

from __future__ import annotations

from tests.support import STACKS, SharedRun, StackProblems
from tools import harness


def test_gke_default_system_machine_holds_the_serving_pods(
    shared_run: SharedRun, stack_problems: StackProblems
) -> None:
    """Bug: Pulumi.yaml's default, e2-standard-2, could not hold 3 serving pods with their sidecars."""
    (problem,) = stack_problems("gke", gkeSystemMachineType="e2-standard-2")
    assert problem.startswith("mlstack:gkeSystemMachineType = 'e2-standard-2': too small")
    # Two replicas, the rollout's surge and the publish pod, each a serving pod's requests plus its sidecar.
    assert "hold 1 serving-sized pod(s) of 500m CPU and 512 MiB but 4 must run" in problem
    declared = harness.project_declarations()["mlstack:gkeSystemMachineType"]["default"]
    shared_run("gke", overrides={"gkeSystemMachineType": declared})  # the default itself passes


def test_the_gcs_fuse_sidecar_counts(shared_run: SharedRun, stack_problems: StackProblems) -> None:
    """Two 250m servers fit an e2-standard-2 beside GKE's pods; with their 250m sidecars they do not."""
    problems = stack_problems("gke", gkeSystemMachineType="e2-standard-2", replicas=1)
    assert any("plus the GCS FUSE sidecar" in p for p in problems), problems
    # Three pods of 100m (plus 250m each for the sidecar) do not fit beside GKE's own pods and KEDA's; on
    # a second node they do.
    (problem,) = stack_problems("gke", gkeSystemMachineType="e2-standard-2", replicas=1, serverCpuRequest="100m")
    assert "hold 1 serving-sized pod(s) of 350m CPU and 512 MiB but 3 must run" in problem
    overrides = {"gkeSystemMachineType": "e2-standard-2", "replicas": 1, "serverCpuRequest": "100m"}
    shared_run("gke", overrides={**overrides, "systemNodeCount": 2})


def test_more_system_nodes_make_room(shared_run: SharedRun) -> None:
    shared_run("gke", overrides={"gkeSystemMachineType": "e2-standard-2", "systemNodeCount": 3})


def test_a_training_pod_larger_than_a_gpu_node_is_refused(stack_problems: StackProblems) -> None:
    (problem,) = stack_problems("gke", trainerMemory="14Gi")
    assert problem.startswith("mlstack:gkeGpuMachineType = 'n1-standard-4': too small")
    assert "mlstack:trainerMemory 14Gi" in problem
    (problem,) = stack_problems("dev", trainerCpu="4")
    assert problem.startswith("mlstack:aksGpuVmSize = 'Standard_NC4as_T4_v3': too small")


def test_aks_small_system_pool_is_refused(stack_problems: StackProblems) -> None:
    (problem,) = stack_problems("dev", aksSystemVmSize="Standard_D2s_v5", replicas=4)
    assert problem.startswith("mlstack:aksSystemVmSize = 'Standard_D2s_v5': too small")
    assert "mlstack:replicas (4)" in problem


def test_a_size_the_catalogue_does_not_know_is_not_judged(shared_run: SharedRun) -> None:
    """Warned about, not refused: the capacity of an unknown size is not guessed."""
    result = shared_run("dev", overrides={"aksSystemVmSize": "Standard_B2s"})
    assert (
        harness.plain(result.one("azure-native:containerservice:ManagedCluster").inputs)["agentPoolProfiles"][0][
            "vmSize"
        ]
        == "Standard_B2s"
    )


def test_every_shipped_stack_fits(shipped: dict[str, harness.StackRun]) -> None:
    assert set(shipped) == set(STACKS)  # each ran without a config problem
