"""mlstack.capacity: what a node of each machine size can hold, against the clouds' formulas and observed nodes.

Sources for every figure are in mlstack/capacity.py. How the config refuses
pools that cannot hold their pods: tests/stacks/test_capacity.py.
"""

from __future__ import annotations

import pytest

from mlstack import capacity
from mlstack.capacity import Machine, Resources


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
