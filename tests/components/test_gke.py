"""GkeGpuCluster alone under mocks: what it offers the workloads, and what it refuses before creating anything.

The shipped GKE stack, the component with the workloads on it: tests/stacks/test_gke.py.
"""

from __future__ import annotations

import pulumi
import pytest

from components.gke import GkeError, GkeGpuCluster
from tests.args import gke_args
from tests.support import CountingMocks
from tools import harness, mocks_gcp


def test_registry_pushes_with_a_secret_access_token() -> None:
    def program() -> None:
        cluster = GkeGpuCluster("gke", gke_args())
        assert cluster.registry is not None
        assert cluster.registry.password is not None
        pulumi.export("server", cluster.registry.server)
        pulumi.export("username", cluster.registry.username)
        pulumi.export("password", cluster.registry.password)

    result = harness.run(program, {})
    assert result.exports["server"] == "us-central1-docker.pkg.dev/my-ml-project/mlstack"
    assert result.exports["username"] == "oauth2accesstoken"
    assert result.exports["password"] == mocks_gcp.MOCK_ACCESS_TOKEN
    assert "password" in result.secret_exports


def test_every_child_is_parented_to_the_component_and_the_provider_waits_for_the_pools() -> None:
    result = harness.run(lambda: GkeGpuCluster("gke", gke_args()), {})
    component = result.one("mlstack:gke:GkeGpuCluster")
    for registration in result.registrations.values():
        if registration.urn != component.urn:
            assert registration.parent == component.urn, f"{registration.type} {registration.name}"
    provider = result.one("pulumi:providers:kubernetes")
    pools = {p.urn for p in result.of_type("gcp:container/nodePool:NodePool")}
    assert len(pools) == 2
    assert pools <= set(provider.dependencies), provider.dependencies


def test_component_refuses_bad_args_before_creating_anything() -> None:
    mocks = CountingMocks()
    with pytest.raises(GkeError) as raised:
        harness.run(
            lambda: GkeGpuCluster(
                "GKE", gke_args(gpu_count=3, gpu_driver_version="R535", gpu_min_nodes=2, release_channel="BETA")
            ),
            {},
            mocks=mocks,
        )
    message = str(raised.value)
    assert message.startswith("cannot build the GKE cluster (5 problems):\n")
    assert "  - mlstack:gkeGpuCount = 3: nvidia-tesla-t4 attaches to an N1 machine in counts of 1, 2, 4" in message
    assert "  - mlstack:gkeGpuDriverVersion = 'R535': must be one of" in message
    assert "  - mlstack:gpuMaxNodes = 1: must be at least mlstack:gpuMinNodes (2)" in message
    assert "  - mlstack:gkeReleaseChannel = 'BETA': must be one of" in message
    assert "  - GkeGpuCluster name 'GKE': must be 1-10 lower-case letters, digits or '-'" in message
    assert mocks.created == []
