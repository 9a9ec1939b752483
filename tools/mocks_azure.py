"""Mock answers for the AKS target: what Azure computes and the program reads.

Registered in ``tools.harness.default_mocks``. The mocks see wire (camelCase)
names; ids follow Azure's resource-id shape so that a test can tell which
resource a scope or principal came from.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import yaml
from pulumi.runtime import mocks as pulumi_mocks

from mlstack import catalogue
from mlstack.clouds import azure, azure_acr_token, azure_api
from mlstack.offered import OfferedVersions, from_catalogue
from mlstack.prices import Price
from mlstack.quota import Quota

MOCK_SUBSCRIPTION_ID = "00000000-0000-0000-0000-000000000001"
MOCK_TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
MOCK_KUBELET_OBJECT_ID = "11111111-2222-3333-4444-555555555555"
MOCK_REGISTRY_SUFFIX = "a1b2c3d4"
MOCK_ACR_ADMIN_PASSWORD = "mock-acr-admin-password-0123456789"  # noqa: S105 - a test fixture
MOCK_CLUSTER_SERVER = "https://mock-aks.hcp.eastus.azmk8s.io:443"
MOCK_ARM_TOKEN = "mock-arm-access-token"  # noqa: S105 - a test fixture
MOCK_ACR_AUDIENCE_TOKEN = "mock-acr-audience-access-token"  # noqa: S105 - a test fixture
MOCK_ACR_REFRESH_TOKEN = "mock-acr-refresh-token-0123456789"  # noqa: S105 - a test fixture
MOCK_OIDC_ISSUER = (
    "https://eastus.oic.prod-aks.azure.com/00000000-0000-0000-0000-0000000000aa/11111111-0000-0000-0000-000000000000/"
)
MOCK_KEDA_CLIENT_ID = "77777777-0000-0000-0000-000000000ed4"
MOCK_KEDA_PRINCIPAL_ID = "77777777-1111-0000-0000-000000000ed4"


class AcrExchange:
    """Stands in for mlstack.clouds.azure_acr_token.exchange: answers, and records who asked with what.

    Like a registry whose azureADAuthenticationAsArmPolicy is either setting, it takes the
    first token obtained; a token that is not the one getClientToken gave for its audience
    fails the run, as a token mixed up between audiences would.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, tuple[azure_acr_token.AudienceToken, ...]]] = []

    def __call__(self, login_server: str, tenant: str, tokens: Sequence[azure_acr_token.AudienceToken]) -> str:
        self.calls.append((login_server, tenant, tuple(tokens)))
        if tenant != MOCK_TENANT_ID:
            raise AssertionError(f"token exchange with tenant {tenant!r}, not the deployer's")
        obtained = [offered for offered in tokens if offered.token]
        for offered in obtained:
            if offered.token != CLIENT_TOKENS.get(offered.audience):
                raise AssertionError(f"token exchange offered an unexpected token for audience {offered.audience}")
        if not obtained:
            raise azure_acr_token.AcrTokenError(f"the registry {login_server} was offered no token")
        return MOCK_ACR_REFRESH_TOKEN


class AksVersions:
    """Stands in for mlstack.clouds.azure_api.list_aks_versions: the catalogue's answer for today (offline, the
    catalogue decides); records the (subscription, location, token) of each ask."""

    def __init__(self, answer: OfferedVersions | Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.answer = answer  # None: the catalogue's; an exception: raised, as a failed call would

    def __call__(self, subscription_id: str, location: str, token: str) -> OfferedVersions:
        self.calls.append((subscription_id, location, token))
        if isinstance(self.answer, Exception):
            raise self.answer
        if self.answer is not None:
            return self.answer
        return from_catalogue(azure.CLOUD, catalogue.today(), extended=False, where=f"in AKS location {location}")


class AzureQuotas:
    """Stands in for mlstack.clouds.azure_api.azure_usages: by default an offline run, which checks nothing and says so;
    given recorded quotas (or an exception), answers with them. Records the (subscription, location, token) asked."""

    def __init__(self, answer: list[Quota] | Exception | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.answer = answer

    def __call__(self, subscription_id: str, location: str, token: str) -> list[Quota]:
        self.calls.append((subscription_id, location, token))
        if self.answer is None:
            raise azure_api.ArmError("an offline run: no subscription to ask")
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class AzurePrices:
    """Stands in for mlstack.clouds.azure_prices.retail_price: offline, no live price (the table decides); given
    prices by (region, size), answers with them. Records the (region, size) asked."""

    def __init__(self, answer: dict[tuple[str, str], Price] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.answer = answer or {}

    def __call__(self, region: str, vm_size: str) -> Price | None:
        self.calls.append((region, vm_size))
        return self.answer.get((region, vm_size))


def _physical_name(args: pulumi_mocks.MockResourceArgs, explicit_input: str) -> str:
    """The name Azure would give: the explicit one, else the logical name (auto-naming)."""
    return str(args.inputs.get(explicit_input) or args.name)


def _resource_group_name(args: pulumi_mocks.MockResourceArgs) -> str:
    return str(args.inputs.get("resourceGroupName") or "mock-rg")


def arm_id(resource_group: str, provider: str, name: str) -> str:
    """The Azure resource id the mocks give a resource in ``resource_group``."""
    return f"/subscriptions/{MOCK_SUBSCRIPTION_ID}/resourceGroups/{resource_group}/providers/{provider}/{name}"


def _arm_id(args: pulumi_mocks.MockResourceArgs, provider: str, name: str) -> str:
    return arm_id(_resource_group_name(args), provider, name)


def _resource_group(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    name = _physical_name(args, "resourceGroupName")
    return {"name": name, "id": f"/subscriptions/{MOCK_SUBSCRIPTION_ID}/resourceGroups/{name}"}


def _managed_cluster(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    name = _physical_name(args, "resourceName")
    return {
        "name": name,
        "id": _arm_id(args, "Microsoft.ContainerService/managedClusters", name),
        "fqdn": "mock-aks.hcp.eastus.azmk8s.io",
        "oidcIssuerProfile": {"enabled": True, "issuerURL": MOCK_OIDC_ISSUER},
        "identityProfile": {
            "kubeletidentity": {
                "objectId": MOCK_KUBELET_OBJECT_ID,
                "clientId": "66666666-7777-8888-9999-000000000000",
                "resourceId": _arm_id(args, "Microsoft.ManagedIdentity/userAssignedIdentities", f"{name}-agentpool"),
            }
        },
    }


def _agent_pool(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    return {"name": _physical_name(args, "agentPoolName")}


def _registry(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    name = _physical_name(args, "registryName")
    return {
        "name": name,
        "id": _arm_id(args, "Microsoft.ContainerRegistry/registries", name),
        "loginServer": f"{name}.azurecr.io",
    }


def mock_user_kubeconfig(cluster: str = "mock-aks") -> str:
    """A kubeconfig shaped like the one AKS returns for a cluster user."""
    user = f"clusterUser_{cluster}"
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": cluster,
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
            "clusters": [{"name": cluster, "cluster": {"server": MOCK_CLUSTER_SERVER}}],
            "users": [{"name": user, "user": {"token": "mock-aks-user-token"}}],
        }
    )


def _user_credentials(args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
    cluster = str(args.args.get("resourceName") or "mock-aks")
    encoded = base64.b64encode(mock_user_kubeconfig(cluster).encode()).decode()
    return {"kubeconfigs": [{"name": "clusterUser", "value": encoded}]}


def _registry_credentials(args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
    return {
        "username": str(args.args.get("registryName") or "mockregistry"),
        "passwords": [
            {"name": "password", "value": MOCK_ACR_ADMIN_PASSWORD},
            {"name": "password2", "value": MOCK_ACR_ADMIN_PASSWORD + "-2"},
        ],
    }


def _client_config(_args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
    return {
        "clientId": "99999999-0000-0000-0000-000000000000",
        "objectId": "88888888-0000-0000-0000-000000000000",
        "subscriptionId": MOCK_SUBSCRIPTION_ID,
        "tenantId": MOCK_TENANT_ID,
    }


def _monitor_workspace(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    name = _physical_name(args, "azureMonitorWorkspaceName")
    return {
        "name": name,
        "id": _arm_id(args, "Microsoft.Monitor/accounts", name),
        # The shape Azure gives (the KEDA scaler's serverAddress): no trailing slash.
        "metrics": {
            "internalId": f"mac_{MOCK_SUBSCRIPTION_ID}",
            "prometheusQueryEndpoint": f"https://{name}-abcd.eastus.prometheus.monitor.azure.com",
        },
    }


def _user_assigned_identity(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
    name = _physical_name(args, "resourceName")
    return {
        "name": name,
        "id": _arm_id(args, "Microsoft.ManagedIdentity/userAssignedIdentities", name),
        "clientId": MOCK_KEDA_CLIENT_ID,
        "principalId": MOCK_KEDA_PRINCIPAL_ID,
        "tenantId": MOCK_TENANT_ID,
    }


def _named_arm_resource(provider: str, name_input: str) -> Any:
    """Answers for a resource auto-named from its logical name unless ``name_input`` names it."""

    def answer(args: pulumi_mocks.MockResourceArgs) -> dict[str, Any]:
        name = _physical_name(args, name_input)
        return {"name": name, "id": _arm_id(args, provider, name)}

    return answer


OUTPUTS: dict[str, Any] = {
    "azure-native:monitor:AzureMonitorWorkspace": _monitor_workspace,
    "azure-native:managedidentity:UserAssignedIdentity": _user_assigned_identity,
    "azure-native:monitor:DataCollectionEndpoint": _named_arm_resource(
        "Microsoft.Insights/dataCollectionEndpoints", "dataCollectionEndpointName"
    ),
    "azure-native:monitor:DataCollectionRule": _named_arm_resource(
        "Microsoft.Insights/dataCollectionRules", "dataCollectionRuleName"
    ),
    "azure-native:resources:ResourceGroup": _resource_group,
    "azure-native:containerservice:ManagedCluster": _managed_cluster,
    "azure-native:containerservice:AgentPool": _agent_pool,
    "azure-native:containerregistry:Registry": _registry,
    # The registry name's random suffix (pulumi-random computes it).
    "random:index/randomString:RandomString": lambda _a: {"result": MOCK_REGISTRY_SUFFIX},
}


# getClientToken's token per audience: without an endpoint, Resource Manager's.
CLIENT_TOKENS = {azure_acr_token.ARM_AUDIENCE: MOCK_ARM_TOKEN, azure_acr_token.ACR_AUDIENCE: MOCK_ACR_AUDIENCE_TOKEN}


def _client_token(args: pulumi_mocks.MockCallArgs) -> dict[str, Any]:
    endpoint = args.args.get("endpoint") or azure_acr_token.ARM_AUDIENCE
    if endpoint not in CLIENT_TOKENS:
        raise AssertionError(f"getClientToken for endpoint {endpoint!r}, which no token here is for")
    return {"token": CLIENT_TOKENS[endpoint]}


CALLS: dict[str, Any] = {
    "azure-native:authorization:getClientToken": _client_token,
    "azure-native:containerservice:listManagedClusterUserCredentials": _user_credentials,
    "azure-native:containerregistry:listRegistryCredentials": _registry_credentials,
    "azure-native:authorization:getClientConfig": _client_config,
}
