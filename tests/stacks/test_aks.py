"""The shipped AKS dev stack: the cluster, its GPU pool, registry access and what runs on it.

AksGpuCluster alone: tests/components/test_aks.py; its builders: tests/pure/test_aks.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from components.target import GPU_POOL, GPU_RESOURCE, GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, POOL_LABEL_KEY
from mlstack.clouds import azure_acr_token
from tests.support import (
    DAEMONSET,
    DEPLOYMENT,
    IMAGE,
    JOB,
    K8S_PROVIDER,
    PVC,
    SERVICE,
    TRAIN,
    SharedRun,
    pod_spec,
    tolerates_gpu_taint,
)
from tools import harness, mocks_azure

CLUSTER = "azure-native:containerservice:ManagedCluster"
POOL = "azure-native:containerservice:AgentPool"
REGISTRY = "azure-native:containerregistry:Registry"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
COMPONENT = "mlstack:aks:AksGpuCluster"
GPU_TAINT = f"{GPU_TAINT_KEY}={GPU_TAINT_VALUE}:{GPU_TAINT_EFFECT}"
SPOT_TAINT = "kubernetes.azure.com/scalesetpriority=spot:NoSchedule"


def inputs(registration: harness.Registration) -> dict[str, Any]:
    return dict(harness.plain(registration.inputs))


def tolerates_pool(tolerations: list[dict[str, Any]], taints: list[str]) -> list[str]:
    """The pool's taints a pod does not tolerate: the GPU taint by the policy pack's rule, any other
    (AKS's Spot taint) by the exact Equal toleration the targets write for it."""
    missing = []
    for taint in taints:
        if taint == GPU_TAINT:
            tolerated = tolerates_gpu_taint(tolerations)
        else:
            key_value, effect = taint.rsplit(":", 1)
            key, value = key_value.split("=", 1)
            tolerated = {"key": key, "operator": "Equal", "value": value, "effect": effect} in tolerations
        if not tolerated:
            missing.append(taint)
    return missing


@pytest.fixture
def dev(shipped: dict[str, harness.StackRun]) -> harness.StackRun:
    """The shipped AKS dev stack (Spot GPU pool from zero)."""
    return shipped["dev"]


@pytest.fixture
def on_demand(shared_run: SharedRun) -> harness.StackRun:
    """The dev stack on regular (non-Spot) capacity, with a pool of 1 to 3 nodes."""
    return shared_run("dev", overrides={"gpuSpot": False, "gpuMinNodes": 1, "gpuMaxNodes": 3})


# --- the GPU pool ----------------------------------------------------------------


def test_spot_gpu_pool_carries_taints_label_bounds_and_spot_settings(dev: harness.StackRun) -> None:
    pool = dev.one(POOL)
    spec = inputs(pool)
    assert spec["nodeTaints"] == [GPU_TAINT, SPOT_TAINT], f"{pool.name}: taints {spec['nodeTaints']}"
    assert spec["nodeLabels"] == {POOL_LABEL_KEY: GPU_POOL}, pool.name
    assert (spec["enableAutoScaling"], spec["minCount"], spec["maxCount"]) == (True, 0, 1), pool.name
    assert spec["scaleSetPriority"] == "Spot", pool.name
    assert spec["scaleSetEvictionPolicy"] == "Delete", pool.name
    assert spec["spotMaxPrice"] == -1, pool.name
    assert (spec["mode"], spec["vmSize"]) == ("User", "Standard_NC4as_T4_v3"), pool.name
    assert spec["gpuProfile"] == {"driver": "Install"}, f"{pool.name}: AKS must install the driver"
    # The autoscaler owns the node count; without this every update would reset it.
    assert "count" in pool.ignore_changes, pool.name


def test_on_demand_gpu_pool_has_no_spot_settings_or_spot_taint(on_demand: harness.StackRun) -> None:
    pool = on_demand.one(POOL)
    spec = inputs(pool)
    assert spec["nodeTaints"] == [GPU_TAINT], f"{pool.name}: taints {spec['nodeTaints']}"
    assert spec["scaleSetPriority"] == "Regular", pool.name
    assert "scaleSetEvictionPolicy" not in spec, pool.name
    assert "spotMaxPrice" not in spec, pool.name
    assert (spec["minCount"], spec["maxCount"], spec["count"]) == (1, 3, 1), pool.name


def test_gpu_pool_belongs_to_this_cluster(dev: harness.StackRun) -> None:
    pool, cluster = dev.one(POOL), dev.one(CLUSTER)
    assert inputs(pool)["resourceName"] == cluster.outputs["name"], pool.name
    assert inputs(pool)["resourceGroupName"] == inputs(cluster)["resourceGroupName"], pool.name
    # The shipped stack pins no version: AKS gives both its default (tests/stacks/test_kubernetes_versions.py).
    assert "orchestratorVersion" not in inputs(pool), pool.name
    assert "kubernetesVersion" not in inputs(cluster), cluster.name


def test_cluster_holds_only_the_system_pool_inline(dev: harness.StackRun) -> None:
    cluster = dev.one(CLUSTER)
    profiles = inputs(cluster)["agentPoolProfiles"]
    assert len(profiles) == 1, f"{cluster.name}: inline pools {[p['name'] for p in profiles]}"
    system = profiles[0]
    assert system["mode"] == "System", cluster.name
    assert system["name"] != inputs(dev.one(POOL))["agentPoolName"], "the GPU pool is also inline"
    assert "nodeTaints" not in system, cluster.name
    assert "gpuProfile" not in system, cluster.name
    assert (system["vmSize"], system["count"]) == ("Standard_D4s_v5", 1), cluster.name


def test_cluster_identity_rbac_workload_identity_and_upgrades(dev: harness.StackRun) -> None:
    cluster = dev.one(CLUSTER)
    spec = inputs(cluster)
    assert spec["identity"] == {"type": "SystemAssigned"}, cluster.name
    assert spec["enableRBAC"] is True, cluster.name
    assert spec["oidcIssuerProfile"] == {"enabled": True}, cluster.name
    assert spec["securityProfile"] == {"workloadIdentity": {"enabled": True}}, cluster.name
    assert spec["autoUpgradeProfile"] == {"upgradeChannel": "patch"}, cluster.name
    assert spec["location"] == "eastus", cluster.name


def test_the_cluster_enforces_network_policies_with_cilium(dev: harness.StackRun) -> None:
    """Finding: no network-policy engine, so the workloads' NetworkPolicies would be stored and ignored."""
    profile = harness.plain(dev.one(CLUSTER).inputs)["networkProfile"]
    expected = {"networkPlugin": "azure", "networkPluginMode": "overlay", "networkDataplane": "cilium"}
    assert {key: profile[key] for key in expected} == expected
    # Cilium policy needs the Cilium dataplane (the API's NetworkPolicy enum says so).
    assert profile["networkPolicy"] == "cilium"


# --- the device plugin -------------------------------------------------------------


@pytest.mark.parametrize("stack_fixture", ["dev", "on_demand"])
def test_device_plugin_lands_only_on_the_gpu_pool_and_tolerates_its_taints(
    stack_fixture: str, request: pytest.FixtureRequest
) -> None:
    result: harness.StackRun = request.getfixturevalue(stack_fixture)
    plugin, pool = result.one(DAEMONSET), inputs(result.one(POOL))
    spec = pod_spec(plugin)
    assert spec["nodeSelector"] == pool["nodeLabels"], f"{plugin.name}: {spec['nodeSelector']}"
    assert tolerates_pool(spec["tolerations"], pool["nodeTaints"]) == [], plugin.name
    assert spec["priorityClassName"] == "system-node-critical", plugin.name
    assert inputs(plugin)["metadata"]["namespace"] == "kube-system", plugin.name
    image = spec["containers"][0]["image"]
    assert image.startswith("nvcr.io/nvidia/k8s-device-plugin:v"), f"{plugin.name}: unpinned {image}"


# --- the registry ------------------------------------------------------------------


def test_kubelet_identity_gets_acr_pull_on_the_registry(dev: harness.StackRun) -> None:
    assignment, cluster, registry = dev.one(ROLE_ASSIGNMENT, "-acr-pull"), dev.one(CLUSTER), dev.one(REGISTRY)
    spec = inputs(assignment)
    assert spec["roleDefinitionId"] == (
        f"/subscriptions/{mocks_azure.MOCK_SUBSCRIPTION_ID}/providers/Microsoft.Authorization"
        "/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d"
    ), f"{assignment.name}: not AcrPull"
    kubelet = cluster.outputs["identityProfile"]["kubeletidentity"]["objectId"]
    assert spec["principalId"] == kubelet, f"{assignment.name}: not the kubelet identity"
    registry_id = mocks_azure.arm_id(
        inputs(registry)["resourceGroupName"],
        "Microsoft.ContainerRegistry/registries",
        inputs(registry)["registryName"],
    )
    assert spec["scope"] == registry_id, f"{assignment.name}: not the registry's scope"
    assert spec["principalType"] == "ServicePrincipal", assignment.name


def test_registry_admin_user_is_off_and_its_name_is_valid(dev: harness.StackRun) -> None:
    registry = dev.one(REGISTRY)
    spec = inputs(registry)
    assert spec["adminUserEnabled"] is False, registry.name
    assert spec["sku"] == {"name": "Basic"}, registry.name
    name = spec["registryName"]
    assert re.fullmatch(r"[a-z0-9]{5,50}", name), f"{registry.name}: {name!r}"
    assert dev.exports["registryLoginServer"] == registry.outputs["loginServer"]


def test_the_images_push_with_the_exchanged_token_as_a_secret(dev: harness.StackRun) -> None:
    registry = dev.one(REGISTRY)
    for image in dev.of_type(IMAGE):
        registries = image.inputs["registries"]
        # The SDK marks the whole list secret once a field of it is.
        secret = harness.is_secret_value(registries) or harness.is_secret_value(registries[0]["password"])
        assert secret, f"{image.urn}: the token is not a secret"
        (login,) = harness.plain(registries)
        assert login["address"] == registry.outputs["loginServer"], image.urn
        assert login["username"] == azure_acr_token.USERNAME, image.urn
        assert login["password"] == mocks_azure.MOCK_ACR_REFRESH_TOKEN, image.urn
    # Both access tokens, the ACR-audience one first (a registry may refuse ARM-audience tokens).
    (exchanged,) = dev.acr_exchanges
    login_server, tenant, tokens = exchanged
    assert (login_server, tenant) == (registry.outputs["loginServer"], mocks_azure.MOCK_TENANT_ID)
    assert [(t.audience, t.token) for t in tokens] == [
        (azure_acr_token.ACR_AUDIENCE, mocks_azure.MOCK_ACR_AUDIENCE_TOKEN),
        (azure_acr_token.ARM_AUDIENCE, mocks_azure.MOCK_ARM_TOKEN),
    ]


def test_nothing_runs_in_the_cluster_before_acr_pull_and_the_gpu_pool_exist(dev: harness.StackRun) -> None:
    """Bug: the Kubernetes provider waited for the cluster only; the Job could pull before AcrPull existed."""
    provider = dev.one(K8S_PROVIDER)
    needed = {dev.one(ROLE_ASSIGNMENT, "-acr-pull").urn, dev.one(POOL).urn}
    assert needed <= set(provider.dependencies), provider.dependencies
    job = dev.one(JOB, TRAIN)
    assert job.provider_urn == provider.urn, job.urn


# --- the Kubernetes side ------------------------------------------------------------


def test_every_kubernetes_object_uses_the_provider_built_from_this_cluster(
    dev: harness.StackRun,
) -> None:
    provider = dev.one(K8S_PROVIDER)
    assert dev.by_urn(provider.parent).type == COMPONENT, "the provider is not the AKS component's child"
    kubeconfig = provider.inputs["kubeconfig"]
    assert harness.is_secret_value(kubeconfig), "the provider's kubeconfig is not secret"
    server = yaml.safe_load(kubeconfig["value"])["clusters"][0]["cluster"]["server"]
    assert server == mocks_azure.MOCK_CLUSTER_SERVER, "the kubeconfig is not the cluster's user credential"
    objects = dev.kubernetes_objects()
    assert {o.type for o in objects} >= {DAEMONSET, JOB, DEPLOYMENT}
    for obj in objects:
        assert obj.provider_urn == provider.urn, f"{obj.type} {obj.name} uses {obj.provider_urn}"


def test_training_job_selects_the_gpu_pool_tolerates_it_and_requests_a_gpu(
    dev: harness.StackRun,
) -> None:
    job, pool = dev.one(JOB, TRAIN), inputs(dev.one(POOL))
    spec = pod_spec(job)
    assert spec["nodeSelector"] == pool["nodeLabels"], f"{job.name}: {spec.get('nodeSelector')}"
    assert tolerates_pool(spec["tolerations"], pool["nodeTaints"]) == [], job.name
    limits = spec["containers"][0]["resources"]["limits"]
    assert limits.get(GPU_RESOURCE) == "1", f"{job.name}: limits {limits}"


def test_serving_pods_stay_off_the_gpu_pool(dev: harness.StackRun) -> None:
    deployment = dev.one(DEPLOYMENT)
    spec = pod_spec(deployment)
    assert not spec.get("tolerations"), f"{deployment.name} tolerates the GPU pool's taints"
    assert tolerates_pool(spec.get("tolerations") or [], inputs(dev.one(POOL))["nodeTaints"]) == [GPU_TAINT, SPOT_TAINT]


def test_model_store_is_azure_files_read_write_many(dev: harness.StackRun) -> None:
    claim = dev.one(PVC)
    spec = inputs(claim)["spec"]
    assert spec["storageClassName"] == "azurefile-csi", claim.name
    assert spec["accessModes"] == ["ReadWriteMany"], claim.name


def test_service_waits_for_an_azure_load_balancer(dev: harness.StackRun) -> None:
    service = dev.one(SERVICE, "-service")
    annotations = inputs(service)["metadata"].get("annotations") or {}
    assert "pulumi.com/skipAwait" not in annotations, f"{service.name}: AKS assigns an external IP"
    assert inputs(service)["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24"], service.name


# --- outputs -------------------------------------------------------------------------


def test_exports_name_the_cluster_and_keep_the_kubeconfig_secret(dev: harness.StackRun) -> None:
    cluster, group = dev.one(CLUSTER), dev.one("azure-native:resources:ResourceGroup")
    assert "kubeconfig" in dev.secret_exports, "the kubeconfig export is not secret"
    decoded = yaml.safe_load(dev.exports["kubeconfig"])
    assert decoded["clusters"][0]["cluster"]["server"] == mocks_azure.MOCK_CLUSTER_SERVER
    # The mocks name the context after the cluster the credentials were listed for.
    assert decoded["current-context"] == cluster.outputs["name"], "credentials of another cluster"
    assert dev.exports["clusterName"] == cluster.outputs["name"]
    assert dev.exports["resourceGroup"] == group.outputs["name"]
    assert dev.exports["getCredentials"] == (
        f"az aks get-credentials --resource-group {group.outputs['name']} --name {cluster.outputs['name']}"
    )


def test_every_azure_resource_is_a_child_of_the_component(dev: harness.StackRun) -> None:
    component = dev.one(COMPONENT)
    for registration in dev.registrations.values():
        if registration.type.startswith(("azure-native:", "random:index/randomString")):
            assert registration.parent == component.urn, f"{registration.type} {registration.name}"
