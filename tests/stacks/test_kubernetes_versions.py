"""Which Kubernetes version each stack runs, and the versions it refuses before anything is created.

Finding (December 2026): the shipped stacks pinned 1.33, which neither AKS nor GKE's REGULAR channel
offers any more for a new cluster, so `pulumi up` failed at the cloud. Now a stack that pins nothing
follows its cloud (the location's or channel's default, asked during preview and up), and a pinned
minor is judged twice before any resource: by the catalogue's dates at program start, and by the
cloud's own answer. The catalogue's dates themselves: tests/pure/test_kubernetes_versions.py.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from components.aks import AksError
from components.gke import GkeError
from mlstack import catalogue, offered
from mlstack.clouds import CLOUDS, azure, azure_api, gcp
from tests.support import STACK_CLOUDS, STACKS, CountingMocks, SharedRun, StackProblems
from tools import harness, mocks_azure

CLUSTER = {"dev": "azure-native:containerservice:ManagedCluster", "gke": "gcp:container/cluster:Cluster"}
AKS_POOL = "azure-native:containerservice:AgentPool"
ENGINE_VERSIONS = "gcp:container/getEngineVersions:getEngineVersions"
NAMESPACE = "kubernetes:core/v1:Namespace"
DAY = date(2026, 12, 7)


@pytest.fixture
def on_day(monkeypatch: pytest.MonkeyPatch) -> date:
    """Runs on the day the catalogue was checked, so these tests do not move with the calendar."""
    monkeypatch.setattr(catalogue, "today", lambda: DAY)
    return DAY


def inputs(registration: harness.Registration) -> dict[str, Any]:
    return dict(harness.plain(registration.inputs))


@pytest.mark.parametrize("stack", STACKS)
def test_a_stack_that_pins_nothing_runs_its_clouds_default_and_says_so(shipped: dict[str, Any], stack: str) -> None:
    run = shipped[stack]
    expected = CLOUDS[STACK_CLOUDS[stack]].default_minor
    assert run.exports["kubernetesVersion"] == expected, stack
    labels = harness.manifest(run.one(NAMESPACE))["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce-version"] == f"v{expected}", stack
    if stack in CLUSTER:  # the cloud picks its default: the cluster asks for no version
        cluster = inputs(run.one(CLUSTER[stack]))
        assert "kubernetesVersion" not in cluster, stack
        assert "minMasterVersion" not in cluster, stack


def test_aks_asks_the_location_with_the_deployers_subscription_and_token(shipped: dict[str, Any]) -> None:
    assert shipped["dev"].aks_version_asks == [(mocks_azure.MOCK_SUBSCRIPTION_ID, "eastus", mocks_azure.MOCK_ARM_TOKEN)]
    assert all(not run.aks_version_asks for stack, run in shipped.items() if stack != "dev")


def test_a_pinned_aks_minor_goes_to_the_cluster_and_its_gpu_pool(shared_run: SharedRun) -> None:
    minor = azure.AKS_DEFAULT_MINOR
    run = shared_run("dev", {"kubernetesVersion": minor})
    assert inputs(run.one(CLUSTER["dev"]))["kubernetesVersion"] == minor
    assert inputs(run.one(AKS_POOL))["orchestratorVersion"] == minor
    assert run.exports["kubernetesVersion"] == minor


def test_a_pinned_gke_minor_is_the_control_planes_minimum(shared_run: SharedRun) -> None:
    minor = gcp.GKE_DEFAULT_MINOR
    run = shared_run("gke", {"kubernetesVersion": minor})
    assert inputs(run.one(CLUSTER["gke"]))["minMasterVersion"] == minor
    assert run.exports["kubernetesVersion"] == minor


@pytest.mark.parametrize(("stack", "cloud"), [("dev", "AKS"), ("gke", "GKE")])
def test_1_33_is_refused_at_program_start_naming_the_key(
    stack: str, cloud: str, on_day: date, stack_problems: StackProblems
) -> None:
    """The shipped stacks' old pin: refused before any resource, with what the cloud offers instead."""
    (problem,) = stack_problems(stack, kubernetesVersion="1.33")
    assert problem.startswith(f"mlstack:kubernetesVersion = '1.33': {cloud} no longer creates clusters on")
    assert f"today ({on_day.isoformat()}" in problem


def test_gke_extended_channel_keeps_1_33(on_day: date, kubeconfig: object) -> None:
    run = harness.run_stack("gke", {"kubernetesVersion": "1.33", "gkeReleaseChannel": "EXTENDED"})
    assert inputs(run.one(CLUSTER["gke"]))["minMasterVersion"] == "1.33"
    assert run.exports["kubernetesVersion"] == "1.33"


def test_a_minor_the_aks_location_does_not_offer_stops_the_run_before_any_resource(kubeconfig: object) -> None:
    """The catalogue may be a step behind the cloud: the location's own list has the last word."""
    answer = offered.OfferedVersions(("1.37", "1.38"), "1.37", "in AKS location eastus")
    mocks = CountingMocks()
    mocks.aks_versions = mocks_azure.AksVersions(answer)
    with pytest.raises(AksError) as caught:
        harness.run_stack("dev", {"kubernetesVersion": azure.AKS_DEFAULT_MINOR}, mocks=mocks)
    assert mocks.created == [], f"created before the refusal: {mocks.created}"
    assert "is not offered for a new cluster in AKS location eastus, which offers 1.37, 1.38" in str(caught.value)


def test_the_aks_locations_default_is_what_an_unpinned_stack_runs(kubeconfig: object) -> None:
    mocks = harness.default_mocks()
    mocks.aks_versions = mocks_azure.AksVersions(offered.OfferedVersions(("1.37", "1.38"), "1.37", "in eastus"))
    run = harness.run_stack("dev", mocks=mocks)
    assert run.exports["kubernetesVersion"] == "1.37"


def test_when_the_aks_list_cannot_be_read_the_catalogue_decides(kubeconfig: object) -> None:
    mocks = harness.default_mocks()
    mocks.aks_versions = mocks_azure.AksVersions(azure_api.ArmError("Resource Manager refused ... (HTTP 403: ...)"))
    run = harness.run_stack("dev", mocks=mocks)
    assert run.exports["kubernetesVersion"] == azure.AKS_DEFAULT_MINOR
    assert len(run.aks_version_asks) == 1


def test_a_minor_the_gke_channel_does_not_offer_stops_the_run_before_any_resource(kubeconfig: object) -> None:
    mocks = CountingMocks()
    mocks.calls[ENGINE_VERSIONS] = lambda _args: {
        "validMasterVersions": ["1.36.4-gke.100", "1.35.8-gke.1036000"],
        "releaseChannelDefaultVersion": {"REGULAR": "1.35.8-gke.1036000"},
        "releaseChannelLatestVersion": {"REGULAR": "1.35.8-gke.1036000"},
    }
    with pytest.raises(GkeError) as caught:
        harness.run_stack("gke", {"kubernetesVersion": "1.36"}, mocks=mocks)
    assert mocks.created == [], f"created before the refusal: {mocks.created}"
    assert "is not offered for a new cluster in GKE's REGULAR channel at us-central1-a, which offers 1.35" in str(
        caught.value
    )


def test_the_gke_channels_default_is_what_an_unpinned_stack_runs(kubeconfig: object) -> None:
    mocks = harness.default_mocks()
    mocks.calls[ENGINE_VERSIONS] = lambda _args: {
        "validMasterVersions": ["1.36.4-gke.100"],
        "releaseChannelDefaultVersion": {"REGULAR": "1.36.4-gke.100"},
        "releaseChannelLatestVersion": {"REGULAR": "1.36.4-gke.100"},
    }
    run = harness.run_stack("gke", mocks=mocks)
    assert run.exports["kubernetesVersion"] == "1.36"
