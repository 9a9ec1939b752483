"""Quotas: Azure's usages read page by page from a loopback Resource Manager (bounded, the token kept there),
what each stack's pools need, and the judgement and message against the recorded answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from mlstack import quota
from mlstack.clouds import azure, azure_api, gcp, gcp_api
from tests.pure.test_azure_api import Answer, reply, resource_manager

TOKEN = "arm-token-secret-xyz"
FIXTURES = Path(__file__).parents[1] / "fixtures" / "quota"
USAGES = json.loads((FIXTURES / "azure-usages-eastus.json").read_text())
USAGES_PATH = "/subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus/usages"


def dev(
    *,
    system_vm_size: str = "Standard_D4s_v5",
    gpu_vm_size: str = "Standard_NC4as_T4_v3",
    gpu_max_nodes: int = 1,
    gpu_spot: bool = True,
    system_vcpus: int | None = None,
) -> quota.Needs:
    """The AKS pools of the shipped dev stack (Pulumi.dev.yaml), with what a test changes."""
    return azure.needs_azure(
        system_vm_size=system_vm_size, system_nodes=1, gpu_vm_size=gpu_vm_size, gpu_max_nodes=gpu_max_nodes,
        gpu_spot=gpu_spot, system_vcpus=system_vcpus,
    )  # fmt: skip


def gke(
    *,
    system_nodes: int = 1,
    system_zones: int = 1,
    gpu_machine_type: str = "n1-standard-4",
    gpu_type: str = "nvidia-tesla-t4",
    gpu_count: int = 1,
    gpu_max_nodes: int = 1,
    gpu_spot: bool = True,
) -> quota.Needs:
    """The GKE pools of the shipped gke stack (Pulumi.gke.yaml, a zonal cluster), with what a test changes."""
    return gcp.needs_gcp(
        system_machine_type="e2-standard-4", system_nodes=system_nodes, system_zones=system_zones,
        gpu_machine_type=gpu_machine_type, gpu_type=gpu_type, gpu_count=gpu_count, gpu_max_nodes=gpu_max_nodes,
        gpu_spot=gpu_spot,
    )  # fmt: skip


def page(body: dict[str, object], next_query: str | None = None) -> Answer:
    """An answer of ``body``, with a nextLink back to the same server (and path) where ``next_query`` is given."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        document = dict(body)
        if next_query is not None:
            document["nextLink"] = f"http://{handler.headers['Host']}{USAGES_PATH}?{next_query}"
        reply(200, json.dumps(document).encode())(handler)

    return answer


@pytest.fixture
def eastus(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[quota.Quota]]:
    """The recorded eastus usages, read through the real reader from a loopback Resource Manager."""
    with resource_manager([page(USAGES)]) as (url, _):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        yield azure_api.azure_usages("sub-1", "eastus", TOKEN)


@pytest.fixture
def us_central1(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[quota.Quota]]:
    """The recorded us-central1 quotas, read through the real reader from a loopback Compute Engine."""
    with resource_manager([reply(200, (FIXTURES / "gcp-region-us-central1.json").read_bytes())]) as (url, _):
        monkeypatch.setattr(gcp_api, "ENDPOINT", url)
        yield gcp_api.compute_region_quotas("mlstack-example", "us-central1", "ya29.token")


def judged(found: list[quota.Shortfall]) -> dict[str, int]:
    """Shortfalls whose quota the answer has, as metric -> the summed need."""
    return {s.metric: s.amount for s in found if s.found}


# --- reading Azure's usages ---------------------------------------------------------------------------


def test_usages_are_read_over_every_page_with_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    first, rest = USAGES["value"][:6], USAGES["value"][6:]
    answers = [page({"value": first}, "api-version=2024-07-01&%24skiptoken=2"), page({"value": rest})]
    with resource_manager(answers) as (url, seen):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        quotas = azure_api.azure_usages("sub-1", "eastus", TOKEN)
    assert [path for path, _ in seen] == [
        f"{USAGES_PATH}?api-version={azure_api.AZURE_USAGES_API}",
        f"{USAGES_PATH}?api-version=2024-07-01&%24skiptoken=2",
    ]
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for _, headers in seen)
    assert [q.metric for q in quotas] == [entry["name"]["value"] for entry in USAGES["value"]]
    t4 = next(q for q in quotas if q.metric == "standardNCASv3_T4Family")
    assert (t4.limit, t4.usage, t4.label) == (8.0, 0.0, "Standard NCASv3_T4 Family vCPUs")


def test_the_program_calls_the_hook_which_is_the_real_reader_by_default() -> None:
    assert azure_api.azure_quotas is azure_api.azure_usages


def test_a_next_link_outside_resource_manager_is_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The token goes to Resource Manager only: a nextLink elsewhere would carry it to another host."""
    elsewhere = reply(200, json.dumps({"value": [], "nextLink": "https://attacker.example/usages"}).encode())
    with resource_manager([elsewhere]) as (url, seen):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        with pytest.raises(azure_api.ArmError, match="nextLink outside") as caught:
            azure_api.azure_usages("sub-1", "eastus", TOKEN)
    assert len(seen) == 1
    assert TOKEN not in str(caught.value)


def test_the_pages_are_bounded_in_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(azure_api, "MAX_USAGE_PAGES", 3)
    with resource_manager([page({"value": []}, "api-version=2024-07-01&%24skiptoken=again")]) as (url, seen):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        with pytest.raises(azure_api.ArmError, match="more than 3 pages"):
            azure_api.azure_usages("sub-1", "eastus", TOKEN)
    assert len(seen) == 3


def test_a_page_is_bounded_in_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(azure_api, "MAX_USAGE_PAGE_BYTES", 1000)
    with resource_manager([page(USAGES)]) as (url, _):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        with pytest.raises(azure_api.ArmError, match="over 1000 bytes"):
            azure_api.azure_usages("sub-1", "eastus", TOKEN)


def test_a_refused_read_names_neither_the_token_nor_the_query(monkeypatch: pytest.MonkeyPatch) -> None:
    body = json.dumps({"error": {"code": "AuthorizationFailed", "message": f"no read for {TOKEN}"}}).encode()
    with resource_manager([reply(403, body)]) as (url, seen):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        with pytest.raises(azure_api.ArmError) as caught:
            azure_api.azure_usages("sub-1", "eastus", TOKEN)
    assert len(seen) == 1
    assert "AuthorizationFailed" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert "api-version" not in str(caught.value)


def test_an_answer_without_a_list_of_usages_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with resource_manager([reply(200, b'{"values": []}')]) as (url, _):
        monkeypatch.setattr(azure_api, "ENDPOINT", url)
        with pytest.raises(azure_api.ArmError, match="without a list of usages"):
            azure_api.azure_usages("sub-1", "eastus", TOKEN)


# --- what the pools need ------------------------------------------------------------------------------


def test_every_catalogue_gpu_size_has_its_family_quota_and_every_accelerator_its_metric() -> None:
    assert set(azure.AZURE_GPU_SIZES) <= set(azure.AZURE_GPU_FAMILIES), "a new GPU size needs its quota name"
    assert set(gcp.GCP_ACCELERATORS) <= set(gcp.GCP_GPU_METRICS), "a new accelerator needs its metric"


@pytest.mark.parametrize(
    ("vm_size", "family"),
    [
        ("Standard_D4s_v5", "standardDSv5Family"),
        ("Standard_D8ds_v5", "standardDDSv5Family"),
        ("Standard_D4as_v5", "standardDASv5Family"),
        ("Standard_E4-2s_v5", "standardESv5Family"),
        ("Standard_F4s_v2", "standardFSv2Family"),
        ("Standard_NC4as_T4_v3", "standardNCASv3_T4Family"),
        ("Standard_ND96isr_H100_v5", "standardNDSH100v5Family"),
        ("Standard_E2as_v6", None),  # v6 families are spelt differently (standardEav6Family): not guessed
        ("Standard_B2s", None),
    ],
)
def test_the_family_quota_of_a_size(vm_size: str, family: str | None) -> None:
    assert azure.azure_family(vm_size) == family


@pytest.mark.parametrize(("nodes", "surge"), [(0, 0), (1, 1), (10, 1), (11, 2), (25, 3)])
def test_aks_surges_ten_percent_of_a_pool_rounded_up(nodes: int, surge: int) -> None:
    assert azure.aks_surge_nodes(nodes) == surge


def test_a_spot_gpu_pool_counts_against_the_spot_quota_alone_and_the_system_pool_with_its_surge() -> None:
    needs = dev(gpu_max_nodes=3)
    assert {(n.metric, n.amount) for n in needs.needs} == {
        ("standardDSv5Family", 8),  # (1 node + 1 surge) x 4 vCPUs
        ("cores", 8),
        ("lowPriorityCores", 12),  # 3 Spot nodes x 4 vCPUs: neither the T4 family nor the regional total
    }
    assert needs.uncounted == ()


def test_an_on_demand_gpu_pool_counts_against_its_family_and_the_regional_total() -> None:
    needs = dev(gpu_spot=False, gpu_vm_size="Standard_NC24ads_A100_v4")
    assert ("StandardNCADSA100v4Family", 24) in {(n.metric, n.amount) for n in needs.needs}
    assert sum(n.amount for n in needs.needs if n.metric == "cores") == 8 + 24
    assert not any(n.metric == "lowPriorityCores" for n in needs.needs)


def test_a_system_size_of_unknown_vcpus_is_said_to_be_uncounted_not_left_out_silently() -> None:
    needs = dev(system_vm_size="Standard_B2s")
    assert [n.metric for n in needs.needs] == ["lowPriorityCores"]
    assert any("Standard_B2s" in line for line in needs.uncounted)
    given = dev(system_vm_size="Standard_B2s", system_vcpus=2)
    assert ("cores", 4) in {(n.metric, n.amount) for n in given.needs}
    assert any("VM-family quota of Standard_B2s" in line for line in given.uncounted)


def test_a_regional_gke_system_pool_counts_its_nodes_in_every_zone_plus_one_surge() -> None:
    needs = gke(system_nodes=2, system_zones=3, gpu_spot=False)
    assert {(n.metric, n.amount, n.instead) for n in needs.needs} == {
        ("CPUS", (2 * 3 + 1) * 4, ""),  # e2-standard-4
        ("NVIDIA_T4_GPUS", 1, ""),
        ("CPUS", 4, ""),  # n1-standard-4
    }


def test_gke_spot_needs_name_the_preemptible_quota_and_the_standard_one_instead() -> None:
    needs = gke(gpu_type="nvidia-l4", gpu_machine_type="g2-standard-24", gpu_count=2)
    assert ("PREEMPTIBLE_NVIDIA_L4_GPUS", 2, "NVIDIA_L4_GPUS") in {(n.metric, n.amount, n.instead) for n in needs.needs}
    # G2 has its own vCPU quota, with no preemptible twin known.
    assert ("G2_CPUS", 24, "") in {(n.metric, n.amount, n.instead) for n in needs.needs}


@pytest.mark.parametrize(
    ("machine_type", "metric"),
    [("e2-standard-4", "CPUS"), ("n1-highmem-8", "CPUS"), ("n2-standard-4", "N2_CPUS"), ("a2-highgpu-1g", "A2_CPUS")],
)
def test_the_vcpu_quota_of_a_machine_family(machine_type: str, metric: str) -> None:
    assert gcp.gcp_cpu_metric(machine_type) == metric


# --- the judgement and the message --------------------------------------------------------------------


def test_the_dev_stack_fits_the_recorded_eastus(eastus: list[quota.Quota]) -> None:
    needs = dev()
    assert quota.shortfalls(needs.needs, eastus) == []
    assert quota.message([], azure.AKS_QUOTA_INCREASE, "eastus") == ""


def test_too_little_quota_names_each_metric_with_the_summed_need_the_limit_and_the_usage(
    eastus: list[quota.Quota],
) -> None:
    needs = dev(gpu_spot=False, gpu_max_nodes=3)
    found = quota.shortfalls(needs.needs, eastus)
    # T4 family: 3 x 4 = 12 > 8 free; regional: 8 (system) + 12 (GPU) = 20 > 20 - 4 in use.
    assert judged(found) == {"standardNCASv3_T4Family": 12, "cores": 20}
    text = quota.message(found, azure.AKS_QUOTA_INCREASE, "eastus", account="sub-1")
    assert "standardNCASv3_T4Family (Standard NCASv3_T4 Family vCPUs): needs 12" in text
    assert "limit 8, usage 0, free 8; a limit of 12 fits" in text
    assert "cores (Total Regional vCPUs): needs 20" in text
    assert "limit 20, usage 4, free 16; a limit of 24 fits" in text
    assert "GPU pool: up to 3 nodes of Standard_NC4as_T4_v3, 4 vCPUs each" in text
    assert "learn.microsoft.com/azure/quotas/per-vm-quota-requests" in text
    assert (
        "az quota create --resource-name standardNCASv3_T4Family --resource-type dedicated "
        "--scope /subscriptions/sub-1/providers/Microsoft.Compute/locations/eastus --limit-object value=12"
    ) in text


def test_spot_that_does_not_fit_asks_for_low_priority_cores(eastus: list[quota.Quota]) -> None:
    found = quota.shortfalls(dev(gpu_max_nodes=4).needs, eastus)
    assert judged(found) == {"lowPriorityCores": 16}
    assert "--resource-name lowPriorityCores --resource-type lowPriority" in quota.message(
        found, azure.AKS_QUOTA_INCREASE, "eastus"
    )


def test_a_family_the_answer_lacks_is_not_judged_and_the_message_says_so(eastus: list[quota.Quota]) -> None:
    needs = [quota.Need("standardNVADSA10v5Family", 6, "a pool of one Standard_NV6ads_A10_v5")]
    found = quota.shortfalls(needs, eastus)
    assert [(s.metric, s.found) for s in found] == [("standardNVADSA10v5Family", False)]
    text = quota.message(found, azure.AKS_QUOTA_INCREASE, "eastus")
    assert text.startswith("Not judged")
    assert "standardNVADSA10v5Family: would need 6" in text
    assert "az vm list-skus --location eastus" in text


def test_names_match_whatever_their_case_and_spaces() -> None:
    quotas = [quota.Quota("StandardNCADSA100v4Family", 24, 0)]
    needs = [quota.Need("Standard NCADSA100v4 family", 24, "x")]
    assert quota.shortfalls(needs, quotas) == []


def test_the_gke_stack_fits_the_recorded_us_central1(us_central1: list[quota.Quota]) -> None:
    # Spot T4: PREEMPTIBLE_NVIDIA_T4_GPUS is 0 there, so the GPU counts against NVIDIA_T4_GPUS (1 free) and
    # the n1 vCPUs against CPUS, beside the system pool's: (1 + 1) x 4 + 4 = 12 of 24.
    needs = gke()
    assert quota.shortfalls(needs.needs, us_central1) == []


def test_without_preemptible_quota_spot_is_judged_against_the_standard_quota(us_central1: list[quota.Quota]) -> None:
    needs = gke(gpu_max_nodes=2)
    found = quota.shortfalls(needs.needs, us_central1)
    assert judged(found) == {"NVIDIA_T4_GPUS": 2}
    text = quota.message(found, gcp.GKE_QUOTA_INCREASE, "us-central1", account="mlstack-example")
    assert "NVIDIA_T4_GPUS: needs 2 (GPU pool: up to 2 Spot nodes with 1 nvidia-tesla-t4 each)" in text
    assert "limit 1, usage 0, free 1; a limit of 2 fits" in text
    assert "https://console.cloud.google.com/iam-admin/quotas" in text
    assert (
        "gcloud beta quotas preferences create --service=compute.googleapis.com --project=mlstack-example "
        "--quota-id=NVIDIA-T4-GPUS-per-project-region --dimensions=region=us-central1 --preferred-value=2"
    ) in text


def test_with_preemptible_quota_spot_is_judged_against_it_and_an_absent_quota_is_not_judged(
    us_central1: list[quota.Quota],
) -> None:
    needs = gke(gpu_type="nvidia-l4", gpu_machine_type="g2-standard-8", gpu_max_nodes=5)
    found = quota.shortfalls(needs.needs, us_central1)
    # 5 L4s against PREEMPTIBLE_NVIDIA_L4_GPUS (4), not NVIDIA_L4_GPUS (0); G2_CPUS is not in the answer.
    assert [(s.metric, s.amount, s.found) for s in found] == [
        ("PREEMPTIBLE_NVIDIA_L4_GPUS", 5, True),
        ("G2_CPUS", 40, False),
    ]
    text = quota.message(found, gcp.GKE_QUOTA_INCREASE, "us-central1")
    assert "PREEMPTIBLE_NVIDIA_L4_GPUS: needs 5" in text
    assert "Not judged, as the answer for us-central1 lists no such quota; regions.get leaves some out" in text
    assert "G2_CPUS: would need 40" in text


def test_an_absent_preemptible_and_standard_quota_are_both_named(us_central1: list[quota.Quota]) -> None:
    needs = gke(gpu_type="nvidia-h100-80gb", gpu_machine_type="a3-highgpu-1g")
    found = [s for s in quota.shortfalls(needs.needs, us_central1) if not s.found]
    assert "NVIDIA_H100_GPUS (nor PREEMPTIBLE_NVIDIA_H100_GPUS): would need 1" in quota.message(
        found, gcp.GKE_QUOTA_INCREASE, "us-central1"
    )


def test_the_message_lists_what_was_not_counted() -> None:
    assert quota.message([], azure.AKS_QUOTA_INCREASE, "eastus", uncounted=["the system pool's vCPUs"]) == (
        "Not counted: the system pool's vCPUs."
    )
