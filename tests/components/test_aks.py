"""AksGpuCluster alone under mocks: how the images push to its registry, and what it refuses.

The shipped dev stack, the component with the workloads on it: tests/stacks/test_aks.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks

from components import aks
from mlstack import acr_token
from tests.args import AKS_ARGS
from tests.support import CountingMocks
from tools import harness, mocks_azure

REGISTRY = "azure-native:containerregistry:Registry"


def _component_program(
    args: aks.AksGpuClusterArgs, exports: Callable[[aks.AksGpuCluster], Mapping[str, Any]]
) -> Callable[[], None]:
    def program() -> None:
        cluster = aks.AksGpuCluster("unit", args)
        for key, value in exports(cluster).items():
            pulumi.export(key, value)

    return program


def test_first_push_uses_a_refresh_token_the_program_obtained() -> None:
    """Bug: with the admin user off, the push relied on the user's `az acr login` to a registry
    that did not exist a minute earlier, so a new user's first `pulumi up` failed at the push."""
    calls: list[str] = []
    mocks = harness.default_mocks()

    def recording(answer: harness.CallFn) -> harness.CallFn:
        def call(args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
            calls.append(args.token)
            return answer(args)

        return call

    mocks.calls = {token: recording(answer) for token, answer in mocks.calls.items()}
    result = harness.run(
        _component_program(
            AKS_ARGS,
            lambda c: {
                "username": c.registry.username if c.registry else None,
                "password": c.registry.password if c.registry else None,
                "server": c.registry.server if c.registry else None,
            },
        ),
        {},
        mocks=mocks,
    )
    assert result.exports["username"] == acr_token.USERNAME
    assert result.exports["password"] == mocks_azure.MOCK_ACR_REFRESH_TOKEN
    assert "password" in result.secret_exports
    # The exchange went to this registry, with the deployer's tenant and ARM token.
    assert result.acr_exchanges == [(result.exports["server"], mocks_azure.MOCK_TENANT_ID, mocks_azure.MOCK_ARM_TOKEN)]
    assert "azure-native:authorization:getClientToken" in calls
    assert "azure-native:containerregistry:listRegistryCredentials" not in calls


def test_registry_admin_password_is_a_secret() -> None:
    args = dataclasses.replace(AKS_ARGS, acr_admin_user=True)

    def exports(c: aks.AksGpuCluster) -> Mapping[str, Any]:
        assert c.registry is not None
        assert c.registry.password is not None
        return {"registryUsername": c.registry.username, "registryPassword": c.registry.password}

    result = harness.run(_component_program(args, exports), {})
    assert result.exports["registryPassword"] == mocks_azure.MOCK_ACR_ADMIN_PASSWORD
    assert "registryPassword" in result.secret_exports, "the registry password leaves as plain text"
    assert harness.plain(result.one(REGISTRY).inputs)["adminUserEnabled"] is True
    assert result.acr_exchanges == [], "no token exchange when the admin user pushes"


def test_bad_arguments_are_refused_before_any_resource() -> None:
    bad = dataclasses.replace(AKS_ARGS, gpu_vm_size="Standard_D4s_v5", gpu_max_nodes=0)
    mocks = CountingMocks()
    with pytest.raises(aks.AksError) as caught:
        harness.run(_component_program(bad, lambda c: {}), {}, mocks=mocks)
    message = str(caught.value)
    assert message.startswith("invalid AKS target (2 problems):\n")
    assert "  - mlstack:aksGpuVmSize = 'Standard_D4s_v5': is not a GPU VM size" in message
    assert "  - mlstack:gpuMaxNodes = 0: must be between 1 and 100" in message
    assert mocks.created == []
