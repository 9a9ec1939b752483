"""GPU quota read before anything is created: a stack its subscription or project cannot hold is refused.

The real readers (mlstack.clouds.azure_api.azure_usages, mlstack.clouds.gcp_api.compute_region_quotas) run against a
loopback server answering the recorded answers in tests/fixtures/quota/ (shaped from the APIs' documentation; its
README cites them), so the whole path, from the HTTP answer to the refusal, is exercised. Offline, with no
cloud to ask, nothing is checked and nothing fails (every other stack test runs so).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components.aks import AksError
from components.gke import GkeError
from mlstack import quota
from mlstack.clouds import azure_api, gcp_api
from tests.pure.test_azure_api import reply, resource_manager
from tests.support import CountingMocks
from tools import harness, mocks_azure, mocks_gcp

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "quota"
Recorded = tuple[list[quota.Quota], list[quota.Quota]]


@pytest.fixture(scope="module")
def recorded() -> tuple[list[quota.Quota], list[quota.Quota]]:
    """The recorded answers as the real readers read them over HTTP: (Azure usages, GCP region quotas)."""
    azure = (FIXTURES / "azure-usages-eastus.json").read_bytes()
    gcp = (FIXTURES / "gcp-region-us-central1.json").read_bytes()
    with pytest.MonkeyPatch.context() as patch, resource_manager([reply(200, azure), reply(200, gcp)]) as (url, _):
        patch.setattr(azure_api, "ENDPOINT", url)
        patch.setattr(gcp_api, "ENDPOINT", url)
        return azure_api.azure_usages("sub", "eastus", "token-xyz"), gcp_api.compute_region_quotas(
            "p", "us-central1", "t"
        )


def with_answers(
    azure: list[quota.Quota] | Exception | None = None, gcp: list[quota.Quota] | Exception | None = None
) -> CountingMocks:
    mocks = CountingMocks()
    mocks.azure_quotas = mocks_azure.AzureQuotas(azure)
    mocks.gcp_quotas = mocks_gcp.GcpQuotas(gcp)
    return mocks


def test_the_shipped_aks_stack_fits_the_recorded_subscription(kubeconfig: object, recorded: Recorded) -> None:
    mocks = with_answers(azure=recorded[0])
    harness.run_stack("dev", mocks=mocks)
    assert mocks.azure_quotas.calls == [(mocks_azure.MOCK_SUBSCRIPTION_ID, "eastus", mocks_azure.MOCK_ARM_TOKEN)]


def test_an_aks_stack_beyond_its_spot_quota_is_refused_before_any_resource(
    kubeconfig: object, recorded: Recorded
) -> None:
    mocks = with_answers(azure=recorded[0])
    with pytest.raises(AksError) as caught:
        harness.run_stack("dev", {"gpuMaxNodes": 40}, mocks=mocks)
    assert mocks.created == [], f"created before the refusal: {mocks.created}"
    message = str(caught.value)
    assert "Too little quota in eastus" in message
    assert "lowPriorityCores" in message, message
    assert "up to 40 Spot nodes of Standard_NC4as_T4_v3, 4 vCPUs each" in message
    assert "az quota create" in message


def test_an_on_demand_aks_gpu_pool_counts_on_its_family(kubeconfig: object, recorded: Recorded) -> None:
    mocks = with_answers(azure=recorded[0])
    with pytest.raises(AksError) as caught:
        harness.run_stack("dev", {"gpuSpot": False, "gpuMaxNodes": 40}, mocks=mocks)
    assert "standardNCASv3_T4Family" in str(caught.value)


def test_the_shipped_gke_stack_fits_the_recorded_project(kubeconfig: object, recorded: Recorded) -> None:
    mocks = with_answers(gcp=recorded[1])
    harness.run_stack("gke", mocks=mocks)
    assert mocks.gcp_quotas.calls == [("my-ml-project", "us-central1", mocks_gcp.MOCK_ACCESS_TOKEN)]


def test_a_gke_stack_beyond_its_gpu_quota_is_refused_before_any_resource(
    kubeconfig: object, recorded: Recorded
) -> None:
    mocks = with_answers(gcp=recorded[1])
    with pytest.raises(GkeError) as caught:
        harness.run_stack("gke", {"gpuMaxNodes": 4, "gpuSpot": False}, mocks=mocks)
    assert mocks.created == [], f"created before the refusal: {mocks.created}"
    message = str(caught.value)
    assert "NVIDIA_T4_GPUS" in message
    assert "gcloud beta quotas" in message


@pytest.mark.parametrize("stack", ["dev", "gke"])
def test_an_unreadable_answer_never_stops_the_run(kubeconfig: object, stack: str) -> None:
    mocks = with_answers(
        azure=azure_api.ArmError("HTTP 403: AuthorizationFailed"), gcp=gcp_api.GoogleApiError("HTTP 403")
    )
    run = harness.run_stack(stack, {"gpuMaxNodes": 40}, mocks=mocks)
    assert run.exports["namespace"] == "mlstack"


@pytest.mark.parametrize("stack", ["dev", "gke"])
def test_quota_check_false_asks_nothing(kubeconfig: object, recorded: Recorded, stack: str) -> None:
    mocks = with_answers(azure=recorded[0], gcp=recorded[1])
    harness.run_stack(stack, {"quotaCheck": False, "gpuMaxNodes": 40}, mocks=mocks)
    assert mocks.azure_quotas.calls == mocks.gcp_quotas.calls == []


def test_the_recorded_answers_hold_the_quotas_the_stacks_are_judged_on(recorded: Recorded) -> None:
    azure, gcp = recorded
    assert {q.metric for q in azure} >= {"cores", "lowPriorityCores", "standardNCASv3_T4Family", "standardDSv5Family"}
    assert {q.metric for q in gcp} >= {"CPUS", "NVIDIA_T4_GPUS", "PREEMPTIBLE_NVIDIA_T4_GPUS"}
