"""mlstack.capacity: what a node of each machine size can hold, against the clouds' formulas and observed nodes.

Sources for every figure are beside it, in its cloud's module (mlstack/clouds/). How the config refuses
pools that cannot hold their pods: tests/stacks/test_capacity.py.
"""

from __future__ import annotations

import pytest

from mlstack import capacity
from mlstack.capacity import Machine, Resources
from mlstack.clouds import azure, gcp


@pytest.mark.parametrize(
    ("machine", "cpu_m"),
    [("e2-small", 940), ("e2-medium", 940), ("e2-standard-2", 1930), ("e2-standard-4", 3920),
     ("n1-standard-8", 7910), ("n1-standard-16", 15890), ("n1-standard-32", 31850)],
)  # fmt: skip
def test_gke_cpu_allocatable_matches_observed_nodes(machine: str, cpu_m: int) -> None:
    shape = gcp.gcp_machine(machine)
    assert shape is not None, machine
    assert gcp.gke_allocatable(shape).cpu_m == cpu_m


@pytest.mark.parametrize(
    ("machine", "observed_mib"),
    # Allocatable memory of real GKE nodes (published listings; research notes in mlstack/clouds/gcp.py).
    [("n1-standard-2", 5615), ("n1-standard-8", 26509), ("n2-highmem-2", 13286), ("e2-small", 1365),
     ("n2-standard-4", 13273), ("n1-standard-64", 229835)],
)  # fmt: skip
def test_gke_memory_allocatable_never_promises_more_than_observed(machine: str, observed_mib: int) -> None:
    shape = gcp.gcp_machine(machine)
    assert shape is not None, machine
    predicted = gcp.gke_allocatable(shape).memory_mib
    assert predicted <= observed_mib, f"{machine}: predicted {predicted} MiB, a real node offers {observed_mib}"
    assert observed_mib - predicted < 400, f"{machine}: predicted {predicted} MiB is needlessly low"


@pytest.mark.parametrize(("vcpus", "reserved"), [(1, 60), (2, 100), (4, 140), (8, 180), (16, 260), (64, 740)])
def test_aks_cpu_reservation_follows_the_documented_table(vcpus: int, reserved: int) -> None:
    assert azure.aks_allocatable(Machine(vcpus, vcpus * 4)).cpu_m == vcpus * 1000 - reserved


def test_aks_memory_reservation_is_capped_at_a_quarter() -> None:
    # 16 GiB: 20 MB x 250 pods + 50 MB = 4816 MiB is above 25% (4096 MiB), so 25% applies.
    assert azure.aks_allocatable(Machine(4, 16)).memory_mib == 16384 - 256 - 4096 - 100


@pytest.mark.parametrize(
    ("name", "shape"),
    [("e2-standard-4", Machine(4, 16)), ("n1-highmem-8", Machine(8, 52)), ("n1-custom-4-15360", Machine(4, 15)),
     ("g2-standard-8", Machine(8, 32)), ("a3-highgpu-1g", Machine(26, 234)), ("e2-medium", Machine(2, 4, True))],
)  # fmt: skip
def test_gcp_machine_shapes(name: str, shape: Machine) -> None:
    assert gcp.gcp_machine(name) == shape


def test_unknown_shapes_are_not_guessed() -> None:
    assert gcp.gcp_machine("m3-ultramem-32") is None
    assert azure.azure_machine("Standard_B2s") is None
    assert azure.azure_machine("Standard_D4s_v5") == Machine(4, 16)
    assert azure.azure_machine("Standard_D8lds_v5") == Machine(8, 16)


def test_pods_that_fit_counts_system_pods_once_per_cluster() -> None:
    node = Resources(2000, 8000)
    each = Resources(500, 100)
    assert capacity.pods_that_fit(node, 1, Resources(0, 0), Resources(0, 0), each) == 4
    assert capacity.pods_that_fit(node, 2, Resources(500, 0), Resources(1000, 0), each) == 1 + 3


def test_aks_per_node_estimate_is_the_cilium_nodes_daemonsets() -> None:
    """The cluster runs the Cilium dataplane, which replaces kube-proxy; managed Prometheus adds a pod per node."""
    per_node = {pod.pod: pod for pod in azure.AKS_NODE_PODS}
    assert "kube-proxy" not in per_node
    assert set(per_node) == {
        "cilium", "azure-cns", "azure-ip-masq-agent", "cloud-node-manager",
        "csi-azuredisk-node", "csi-azurefile-node", "ama-metrics-node",
    }  # fmt: skip
    assert all(pod.replicas == 1 for pod in azure.AKS_NODE_PODS), "a DaemonSet runs one pod per node"
    # cilium's pod requests what its init container does; ama-metrics-node its collector plus token adapter.
    assert per_node["cilium"].requests == Resources(100, 100)
    assert per_node["ama-metrics-node"].requests == Resources(50 + 20, 150 + 30)
    assert capacity.total_requests(azure.AKS_NODE_PODS) == Resources(420, 750)


def test_aks_per_cluster_estimate_counts_managed_prometheus() -> None:
    per_cluster = {pod.pod: pod for pod in azure.AKS_CLUSTER_PODS}
    assert per_cluster["ama-metrics"].replicas == 2, "the chart's HPA keeps at least two"
    assert {"ama-metrics-ksm", "ama-metrics-operator-targets", "azure-wi-webhook-controller-manager"} <= set(
        per_cluster
    )
    assert "keda (add-on)" in per_cluster, "the KEDA add-on the stack enables"
    assert capacity.total_requests(azure.AKS_CLUSTER_PODS) == Resources(1452, 2010)


@pytest.mark.parametrize(
    ("pods", "estimate", "stated"),
    [(azure.AKS_NODE_PODS, azure.AKS_SYSTEM_PER_NODE, Resources(500, 832)),
     (azure.AKS_CLUSTER_PODS, azure.AKS_SYSTEM_PER_CLUSTER, Resources(1600, 2240))],
)  # fmt: skip
def test_aks_system_estimates_are_the_tables_with_the_stated_margin(
    pods: tuple[capacity.SystemPod, ...], estimate: Resources, stated: Resources
) -> None:
    """Each constant is its table's sum plus 10%, rounded up to the next 50m and 64 MiB (no further)."""
    assert estimate == stated, "the figures mlstack/clouds/azure.py's comment states"
    with_margin = capacity.total_requests(pods) * (100 + azure.AKS_SYSTEM_MARGIN_PERCENT)
    for value, step, needed in (
        (estimate.cpu_m, 50, with_margin.cpu_m),
        (estimate.memory_mib, 64, with_margin.memory_mib),
    ):
        assert value % step == 0
        assert (value - step) * 100 < needed <= value * 100, f"{value} is not the sum plus the margin, rounded up"
    assert all(pod.source for pod in pods), "every figure names where it comes from"
