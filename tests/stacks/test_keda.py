"""KEDA on every shipped stack: what each cloud installs or enables, who may query what, and the order.

The ScaledObject itself: tests/components/test_workloads.py; its builders: tests/pure/test_autoscaling.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from components import aks, gke
from components.local import prometheus_url
from mlstack import autoscaling
from tests.support import SharedRun, StackProblems
from tools import harness, mocks_azure

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
TRIGGER_AUTHENTICATION = "kubernetes:keda.sh/v1alpha1:TriggerAuthentication"
RELEASE = "kubernetes:helm.sh/v3:Release"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"


def trigger(run: harness.StackRun) -> dict[str, Any]:
    (found,) = harness.manifest(run.one(SCALED_OBJECT))["spec"]["triggers"]
    return dict(found)


@pytest.mark.parametrize("stack", ["local", "dev", "gke"])
def test_every_stack_scales_its_servers_on_requests_in_flight_through_keda(
    shipped: dict[str, harness.StackRun], stack: str
) -> None:
    run = shipped[stack]
    assert not run.of_type(HPA), f"{stack}: an HPA of the stack's own would fight KEDA's"
    found = trigger(run)
    assert found["type"] == "prometheus"
    assert found["metadata"]["query"].startswith(f"sum(rate({autoscaling.IN_FLIGHT_SECONDS}{{")
    assert not found["metadata"]["serverAddress"].endswith("/"), "KEDA appends /api/v1/query"
    deployment = harness.manifest(run.one("kubernetes:apps/v1:Deployment"))
    spec = harness.manifest(run.one(SCALED_OBJECT))["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    # pulumi up leaves the replica count to the autoscaler after creation.
    assert "spec.replicas" in run.one("kubernetes:apps/v1:Deployment").ignore_changes


def test_aks_enables_the_keda_add_on_with_workload_identity(shared_run: SharedRun) -> None:
    dev = shared_run("dev")
    cluster = dev.one("azure-native:containerservice:ManagedCluster").inputs
    assert cluster["workloadAutoScalerProfile"] == {"keda": {"enabled": True}}
    assert cluster["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert cluster["oidcIssuerProfile"] == {"enabled": True}
    # No chart on AKS: one external metrics server per cluster, and the add-on is it.
    assert not dev.of_type(RELEASE)


def test_aks_keda_queries_the_stack_s_workspace_as_an_identity_that_may_only_read_it(shared_run: SharedRun) -> None:
    dev = shared_run("dev")
    identity = dev.one("azure-native:managedidentity:UserAssignedIdentity", "-keda")
    federation = dev.one("azure-native:managedidentity:FederatedIdentityCredential", "-keda-operator").inputs
    assert federation["subject"] == "system:serviceaccount:kube-system:keda-operator"
    assert federation["audiences"] == ["api://AzureADTokenExchange"]
    assert federation["issuer"] == mocks_azure.MOCK_OIDC_ISSUER
    assert federation["resourceName"] == identity.outputs["name"]
    reader = dev.one("azure-native:authorization:RoleAssignment", "-keda-metrics-reader").inputs
    workspace = dev.one("azure-native:monitor:AzureMonitorWorkspace")
    assert reader["roleDefinitionId"].endswith(f"/roleDefinitions/{aks.MONITORING_DATA_READER_ROLE_ID}")
    scope = mocks_azure.arm_id(reader["scope"].split("/")[4], "Microsoft.Monitor/accounts", workspace.outputs["name"])
    assert reader["scope"] == scope, "the workspace only, not the group or subscription"
    assert reader["principalId"] == mocks_azure.MOCK_KEDA_PRINCIPAL_ID
    assert reader["principalType"] == "ServicePrincipal"
    found = trigger(dev)
    assert found["metadata"]["serverAddress"] == workspace.outputs["metrics"]["prometheusQueryEndpoint"]
    auth = harness.manifest(dev.one(TRIGGER_AUTHENTICATION))
    assert auth["spec"] == {
        "podIdentity": {"provider": "azure-workload", "identityId": mocks_azure.MOCK_KEDA_CLIENT_ID}
    }
    assert found["authenticationRef"] == {"name": auth["metadata"]["name"]}
    patch = dev.one("kubernetes:core/v1:ServiceAccountPatch").inputs["metadata"]
    assert (patch["namespace"], patch["name"]) == ("kube-system", "keda-operator")
    assert patch["annotations"] == {aks.WORKLOAD_IDENTITY_CLIENT_ID: mocks_azure.MOCK_KEDA_CLIENT_ID}


def test_aks_scaler_waits_for_the_federation_the_grant_and_the_annotation(shared_run: SharedRun) -> None:
    dev = shared_run("dev")
    needed = {
        dev.one("azure-native:managedidentity:FederatedIdentityCredential").urn,
        dev.one("azure-native:authorization:RoleAssignment", "-keda-metrics-reader").urn,
        dev.one("kubernetes:core/v1:ServiceAccountPatch").urn,
    }
    for type_ in (SCALED_OBJECT, TRIGGER_AUTHENTICATION):
        assert needed <= set(dev.one(type_).dependencies), type_


def test_gke_installs_keda_s_chart_acting_as_a_service_account_that_may_only_read_metrics(
    shared_run: SharedRun,
) -> None:
    run = shared_run("gke")
    account = run.one("gcp:serviceaccount/account:Account", "-keda")
    email = account.outputs["email"]
    viewer = run.one("gcp:projects/iAMMember:IAMMember", "-keda-monitoring-viewer").inputs
    assert (viewer["role"], viewer["member"]) == ("roles/monitoring.viewer", f"serviceAccount:{email}")
    impersonation = run.one("gcp:serviceaccount/iAMMember:IAMMember", "-keda-workload-identity")
    assert impersonation.inputs["role"] == "roles/iam.workloadIdentityUser"
    assert impersonation.inputs["member"] == "serviceAccount:my-ml-project.svc.id.goog[keda/keda-operator]"
    assert impersonation.inputs["serviceAccountId"] == account.outputs["name"]
    # The pool PROJECT.svc.id.goog exists once the cluster does.
    assert run.one("gcp:container/cluster:Cluster").urn in impersonation.dependencies

    release = run.one(RELEASE)
    assert {k: release.inputs[k] for k in ("chart", "version", "namespace")} == {
        "chart": "keda",
        "version": autoscaling.KEDA_CHART_VERSION,
        "namespace": "keda",
    }
    assert release.inputs["repositoryOpts"] == {"repo": autoscaling.KEDA_CHART_REPOSITORY}
    assert release.inputs["values"] == {"podIdentity": {"gcp": {"enabled": True, "gcpIAMServiceAccount": email}}}
    assert {account.urn, impersonation.urn} <= set(release.dependencies)

    found = trigger(run)
    assert found["metadata"]["serverAddress"] == gke.query_api("my-ml-project")
    cluster_name = run.one("gcp:container/cluster:Cluster").outputs["name"]
    # The query API answers for the whole project: this cluster's series only.
    assert f'cluster="{cluster_name}"' in found["metadata"]["query"]
    auth = harness.manifest(run.one(TRIGGER_AUTHENTICATION))
    assert auth["spec"] == {"podIdentity": {"provider": "gcp"}}
    for type_ in (SCALED_OBJECT, TRIGGER_AUTHENTICATION):
        assert release.urn in run.one(type_).dependencies, type_


def test_local_installs_keda_s_chart_and_queries_the_cluster_s_prometheus(shared_run: SharedRun) -> None:
    run = shared_run("local")
    release = run.one(RELEASE)
    assert release.inputs["version"] == autoscaling.KEDA_CHART_VERSION
    assert "values" not in release.inputs or release.inputs["values"] == {}
    found = trigger(run)
    assert found["metadata"]["serverAddress"] == "http://prometheus-server.monitoring.svc:80"
    assert "authenticationRef" not in found
    assert not run.of_type(TRIGGER_AUTHENTICATION)
    assert release.urn in run.one(SCALED_OBJECT).dependencies


def test_a_local_prometheus_operator_is_queried_at_the_service_the_operator_makes() -> None:
    assert prometheus_url("prometheus-operator", "obs") == "http://prometheus-operated.obs.svc:9090"
    assert prometheus_url("prometheus-annotations", "monitoring") == "http://prometheus-server.monitoring.svc:80"


@pytest.mark.parametrize("stack", ["local", "dev", "gke"])
def test_cpu_scaling_needs_no_metrics_pipeline(shared_run: SharedRun, stack: str) -> None:
    run = shared_run(stack, {"serverScaleOn": "cpu"})
    assert trigger(run)["type"] == "cpu"
    assert not run.of_type(TRIGGER_AUTHENTICATION)


def test_a_scale_key_that_is_not_one_of_the_two_is_refused(stack_problems: StackProblems) -> None:
    (problem,) = stack_problems("local", serverScaleOn="requests")
    for word in ("mlstack:serverScaleOn", "in-flight", "cpu"):
        assert word in problem, problem
    (problem,) = stack_problems("local", serverTargetInFlight="0")
    for word in ("mlstack:serverTargetInFlight", "above 0"):
        assert word in problem, problem
