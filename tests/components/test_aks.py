"""AksGpuCluster alone under mocks: how the images push to its registry, and what it refuses.

The shipped dev stack, the component with the workloads on it: tests/stacks/test_aks.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as pulumi_mocks

from components import aks
from mlstack.clouds import azure_acr_token
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


GET_CLIENT_TOKEN = "azure-native:authorization:getClientToken"
OFFERED = (
    azure_acr_token.AudienceToken(azure_acr_token.ACR_AUDIENCE, mocks_azure.MOCK_ACR_AUDIENCE_TOKEN),
    azure_acr_token.AudienceToken(azure_acr_token.ARM_AUDIENCE, mocks_azure.MOCK_ARM_TOKEN),
)


def _push_login(c: aks.AksGpuCluster) -> Mapping[str, Any]:
    assert c.registry is not None
    return {"username": c.registry.username, "password": c.registry.password, "server": c.registry.server}


def test_first_push_uses_a_refresh_token_the_program_obtained() -> None:
    """Bug: with the admin user off, the push relied on the user's `az acr login` to a registry
    that did not exist a minute earlier, so a new user's first `pulumi up` failed at the push."""
    calls: list[tuple[str, Any]] = []
    mocks = harness.default_mocks()

    def recording(answer: harness.CallFn) -> harness.CallFn:
        def call(args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
            calls.append((args.token, args.args.get("endpoint")))
            return answer(args)

        return call

    mocks.calls = {token: recording(answer) for token, answer in mocks.calls.items()}
    result = harness.run(_component_program(AKS_ARGS, _push_login), {}, mocks=mocks)
    assert result.exports["username"] == azure_acr_token.USERNAME
    assert result.exports["password"] == mocks_azure.MOCK_ACR_REFRESH_TOKEN
    assert "password" in result.secret_exports
    # The exchange went to this registry, with the deployer's tenant and both tokens, ACR audience first.
    assert result.acr_exchanges == [(result.exports["server"], mocks_azure.MOCK_TENANT_ID, OFFERED)]
    assert "azure-native:containerregistry:listRegistryCredentials" not in {token for token, _ in calls}


def test_the_push_asks_for_an_acr_audience_token_and_no_access_token_reaches_the_state() -> None:
    """Bug: only an ARM-audience token was asked for, which a registry refuses once Azure Policy
    disables its azureADAuthenticationAsArmPolicy ("Container registries should have ARM audience
    token authentication disabled")."""
    endpoints: list[Any] = []
    mocks = harness.default_mocks()
    answer = mocks.calls[GET_CLIENT_TOKEN]

    def client_token(args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
        endpoints.append(args.args.get("endpoint"))
        return answer(args)

    mocks.calls[GET_CLIENT_TOKEN] = client_token
    result = harness.run(_component_program(AKS_ARGS, _push_login), {}, mocks=mocks)
    # No trailing slash: the provider appends "/.default" to make the scope.
    assert "https://containerregistry.azure.net" in endpoints, endpoints
    assert None in endpoints, "no ARM-audience token (the provider's default endpoint) to fall back to"
    assert "password" in result.secret_exports, "the refresh token leaves as plain text"
    # The access tokens go to the exchange only: no resource input or output and no export holds one.
    everything = [*(r.inputs for r in result.registrations.values()),
                  *(r.outputs for r in result.registrations.values()), result.exports]  # fmt: skip
    for token in (mocks_azure.MOCK_ACR_AUDIENCE_TOKEN, mocks_azure.MOCK_ARM_TOKEN):
        assert token not in json.dumps(everything, default=str), "an access token reached the state"


class _AcrAudienceUnavailable(harness.StackMocks):
    """A cloud where the provider cannot get an ACR-audience token: getClientToken fails for it."""

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == GET_CLIENT_TOKEN and args.args.get("endpoint") == azure_acr_token.ACR_AUDIENCE:
            return {}, [("endpoint", "AADSTS500011: resource principal not found")]
        return super().call(args)


def test_an_acr_audience_token_the_provider_cannot_get_falls_back_to_the_arm_audience_one() -> None:
    defaults = harness.default_mocks()
    mocks = _AcrAudienceUnavailable(outputs=defaults.outputs, calls=defaults.calls)
    result = harness.run(_component_program(AKS_ARGS, _push_login), {}, mocks=mocks)
    assert result.exports["password"] == mocks_azure.MOCK_ACR_REFRESH_TOKEN
    ((server, tenant, (acr, arm)),) = result.acr_exchanges
    assert (server, tenant, arm) == (result.exports["server"], mocks_azure.MOCK_TENANT_ID, OFFERED[1])
    assert (acr.audience, acr.token) == (azure_acr_token.ACR_AUDIENCE, ""), acr
    assert "AADSTS500011" in acr.unavailable, "the exchange's error would not say why the ACR token is missing"


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
    assert "  - mlstack:aksGpuVmSize = 'Standard_D4s_v5': has no GPU" in message
    assert "  - mlstack:gpuMaxNodes = 0: must be between 1 and 100" in message
    assert mocks.created == []
