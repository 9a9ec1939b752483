"""Capacity: allocatable per machine size, and the config refusing pools that cannot hold their pods.

Sources for every figure are in components/capacity.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from components import capacity
from components.capacity import Machine, Resources
from tools import harness

RunStack = Callable[..., harness.StackRun]
Problems = Callable[..., list[str]]


# --- allocatable, against the clouds' formulas and observed nodes ------------------


@pytest.mark.parametrize(
    ("machine", "cpu_m"),
    [("e2-small", 940), ("e2-medium", 940), ("e2-standard-2", 1930), ("e2-standard-4", 3920),
     ("n1-standard-8", 7910), ("n1-standard-16", 15890), ("n1-standard-32", 31850)],
)  # fmt: skip
def test_gke_cpu_allocatable_matches_observed_nodes(machine: str, cpu_m: int) -> None:
    shape = capacity.gcp_machine(machine)
    assert shape is not None, machine
    assert capacity.gke_allocatable(shape).cpu_m == cpu_m


@pytest.mark.parametrize(
    ("machine", "observed_mib"),
    # Allocatable memory of real GKE nodes (published listings; research notes in capacity.py).
    [("n1-standard-2", 5615), ("n1-standard-8", 26509), ("n2-highmem-2", 13286), ("e2-small", 1365),
     ("n2-standard-4", 13273), ("n1-standard-64", 229835)],
)  # fmt: skip
def test_gke_memory_allocatable_never_promises_more_than_observed(machine: str, observed_mib: int) -> None:
    shape = capacity.gcp_machine(machine)
    assert shape is not None, machine
    predicted = capacity.gke_allocatable(shape).memory_mib
    assert predicted <= observed_mib, f"{machine}: predicted {predicted} MiB, a real node offers {observed_mib}"
    assert observed_mib - predicted < 400, f"{machine}: predicted {predicted} MiB is needlessly low"


@pytest.mark.parametrize(("vcpus", "reserved"), [(1, 60), (2, 100), (4, 140), (8, 180), (16, 260), (64, 740)])
def test_aks_cpu_reservation_follows_the_documented_table(vcpus: int, reserved: int) -> None:
    assert capacity.aks_allocatable(Machine(vcpus, vcpus * 4)).cpu_m == vcpus * 1000 - reserved


def test_aks_memory_reservation_is_capped_at_a_quarter() -> None:
    # 16 GiB: 20 MB x 250 pods + 50 MB = 4816 MiB is above 25% (4096 MiB), so 25% applies.
    assert capacity.aks_allocatable(Machine(4, 16)).memory_mib == 16384 - 256 - 4096 - 100


@pytest.mark.parametrize(
    ("name", "shape"),
    [("e2-standard-4", Machine(4, 16)), ("n1-highmem-8", Machine(8, 52)), ("n1-custom-4-15360", Machine(4, 15)),
     ("g2-standard-8", Machine(8, 32)), ("a3-highgpu-1g", Machine(26, 234)), ("e2-medium", Machine(2, 4, True))],
)  # fmt: skip
def test_gcp_machine_shapes(name: str, shape: Machine) -> None:
    assert capacity.gcp_machine(name) == shape


def test_unknown_shapes_are_not_guessed() -> None:
    assert capacity.gcp_machine("m3-ultramem-32") is None
    assert capacity.azure_machine("Standard_B2s") is None
    assert capacity.azure_machine("Standard_D4s_v5") == Machine(4, 16)
    assert capacity.azure_machine("Standard_D8lds_v5") == Machine(8, 16)


def test_pods_that_fit_counts_system_pods_once_per_cluster() -> None:
    node = Resources(2000, 8000)
    each = Resources(500, 100)
    assert capacity.pods_that_fit(node, 1, Resources(0, 0), Resources(0, 0), each) == 4
    assert capacity.pods_that_fit(node, 2, Resources(500, 0), Resources(1000, 0), each) == 1 + 3


# --- the config refuses what cannot fit ---------------------------------------------


def test_gke_default_system_machine_holds_the_serving_pods(run_stack: RunStack, stack_problems: Problems) -> None:
    """Bug: Pulumi.yaml's default, e2-standard-2, could not hold 3 serving pods with their sidecars."""
    problems = stack_problems("gke", gkeSystemMachineType="e2-standard-2")
    (problem,) = problems
    assert problem.startswith("mlstack:gkeSystemMachineType = 'e2-standard-2': too small")
    assert "hold 1 serving pod(s) of 500m CPU and 512 MiB but 3 must run" in problem
    declared = harness.project_declarations()["mlstack:gkeSystemMachineType"]["default"]
    run_stack("gke", overrides={"gkeSystemMachineType": declared})  # the default itself passes


def test_the_gcs_fuse_sidecar_counts(run_stack: RunStack, stack_problems: Problems) -> None:
    """Two 250m servers fit an e2-standard-2 beside GKE's pods; with their 250m sidecars they do not."""
    problems = stack_problems("gke", gkeSystemMachineType="e2-standard-2", replicas=1)
    assert any("plus the GCS FUSE sidecar" in p for p in problems), problems
    run_stack("gke", overrides={"gkeSystemMachineType": "e2-standard-2", "replicas": 1,
                                "serverCpuRequest": "100m"})  # fmt: skip


def test_more_system_nodes_make_room(run_stack: RunStack) -> None:
    run_stack("gke", overrides={"gkeSystemMachineType": "e2-standard-2", "systemNodeCount": 3})


def test_a_training_pod_larger_than_a_gpu_node_is_refused(stack_problems: Problems) -> None:
    problems = stack_problems("gke", trainerMemory="14Gi")
    (problem,) = problems
    assert problem.startswith("mlstack:gkeGpuMachineType = 'n1-standard-4': too small")
    assert "mlstack:trainerMemory 14Gi" in problem
    (problem,) = stack_problems("dev", trainerCpu="4")
    assert problem.startswith("mlstack:aksGpuVmSize = 'Standard_NC4as_T4_v3': too small")


def test_aks_small_system_pool_is_refused(stack_problems: Problems) -> None:
    (problem,) = stack_problems("dev", aksSystemVmSize="Standard_D2s_v5", replicas=4)
    assert problem.startswith("mlstack:aksSystemVmSize = 'Standard_D2s_v5': too small")
    assert "mlstack:replicas (4)" in problem


def test_every_shipped_stack_fits(run_stack: RunStack) -> None:
    for stack in ("dev", "gke", "local"):
        run_stack(stack)
