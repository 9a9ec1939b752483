"""mlstack.prices: hourly prices per cloud, region and machine, GCP's N1 GPUs, and how old the tables may grow.

The freshness test runs with today's date: it fails once the oldest source snapshot is older than FRESHNESS_DAYS,
which means reading the sources again (/work/research/prices.md says how), not moving a date.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from mlstack import catalogue, prices
from mlstack.clouds import azure, gcp, gcp_locations

GCP_FIXED_GPU_MACHINES = sorted({m for a in gcp.GCP_ACCELERATORS.values() for m in a.fixed_counts})
GCP_N1_GPUS = sorted(g for g, a in gcp.GCP_ACCELERATORS.items() if a.family == "n1")
PRICED_TABLES = {
    "AZURE_VM_HOURLY": prices.AZURE_VM_HOURLY,
    "GCP_MACHINE_HOURLY": prices.GCP_MACHINE_HOURLY,
    "GCP_N1_GPU_HOURLY": prices.GCP_N1_GPU_HOURLY,
}


# --- the tables keep up: run with today's date -----------------------------------------------------------------


def test_the_prices_are_not_older_than_the_window() -> None:
    today = catalogue.today()
    assert today <= prices.fresh_until(), (
        f"the oldest price snapshot is of {prices.PRICES_READ}, more than {prices.FRESHNESS_DAYS} days before "
        f"{today}: read the sources again ({prices.SNAPSHOTS})"
    )


def test_the_read_date_is_the_oldest_snapshot_and_none_is_in_the_future() -> None:
    read = prices.PRICES_READ
    assert read == min(prices.SNAPSHOTS.values())
    assert prices.fresh_until() == read + timedelta(days=prices.FRESHNESS_DAYS)
    for table, taken in prices.SNAPSHOTS.items():
        assert hasattr(prices, table), f"SNAPSHOTS names {table}, which mlstack.prices does not define"
        assert taken <= catalogue.today(), f"{table}: snapshot dated {taken}, after today"


# --- coverage: every machine the catalogue offers has a price somewhere ----------------------------------------


@pytest.mark.parametrize("size", [*azure.AZURE_GPU_SIZES, "Standard_D2s_v5", "Standard_D4s_v5", "Standard_D8s_v5"])
def test_every_azure_size_the_stacks_use_has_an_on_demand_price_in_some_region(size: str) -> None:
    regions = [r for (r, s) in prices.AZURE_VM_HOURLY if s == size]
    assert regions, f"{size} has no price in any region"
    assert all(prices.hourly(prices.AZURE_VM_HOURLY, r, size) is not None for r in regions)


@pytest.mark.parametrize("machine", [*GCP_FIXED_GPU_MACHINES, "e2-standard-4", "n1-standard-4"])
def test_every_gcp_machine_the_catalogue_offers_has_an_on_demand_price_in_some_region(machine: str) -> None:
    regions = [r for (r, m) in prices.GCP_MACHINE_HOURLY if m == machine]
    assert regions, f"{machine} has no price in any region"


@pytest.mark.parametrize("gpu", GCP_N1_GPUS)
def test_every_gpu_n1_takes_has_a_per_gpu_price_in_some_region(gpu: str) -> None:
    assert [r for (r, g) in prices.GCP_N1_GPU_HOURLY if g == gpu], f"{gpu} has no price in any region"


# --- the tables hold together ------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(PRICED_TABLES))
def test_spot_is_cheaper_than_on_demand_and_every_price_is_positive(table: str) -> None:
    for key, p in PRICED_TABLES[table].items():
        assert p.on_demand > 0, f"{table}{key}: {p}"
        if p.spot is not None:
            assert 0 < p.spot < p.on_demand, f"{table}{key}: Spot {p.spot} is not below on demand {p.on_demand}"


def test_rows_name_real_regions_and_the_machines_the_catalogue_knows() -> None:
    for region, size in prices.AZURE_VM_HOURLY:
        assert region in azure.AZURE_LOCATIONS, region
        assert azure.azure_vm_size(size) == size
    for region in {r for r, _ in prices.GCP_MACHINE_HOURLY}:
        assert gcp_locations.gcp_zones(region), region
    for region, gpu in prices.GCP_N1_GPU_HOURLY:
        assert gcp.GCP_ACCELERATORS[gpu].family == "n1", f"{gpu} is not attached to N1"
        assert gcp_locations.gcp_gpu_zones(gpu, region), f"{gpu} priced in {region}, where it is not offered"
    assert set(prices.GCS_STANDARD_GB_MONTH) <= set(gcp_locations.GCP_ZONES)
    assert set(prices.AZURE_FILES_STANDARD_LRS_GB_MONTH) <= set(azure.AZURE_LOCATIONS)


def test_a_gpu_machine_is_priced_only_where_its_gpu_is_offered() -> None:
    for region, machine in prices.GCP_MACHINE_HOURLY:
        gpus = [g for g, a in gcp.GCP_ACCELERATORS.items() if machine in a.fixed_counts]
        if gpus:
            assert gcp_locations.gcp_gpu_zones(gpus[0], region), f"{machine} priced in {region} without {gpus[0]}"


def test_a_machine_with_more_gpus_of_one_kind_costs_more() -> None:
    """A2/A3/G2 prices include their GPUs, so within a GPU type the count orders the price (g2-standard-32, one L4,
    is cheaper than g2-standard-24, two)."""
    for accelerator in gcp.GCP_ACCELERATORS.values():
        for region in gcp_locations.GCP_ZONES:
            priced = [
                (count, prices.hourly(prices.GCP_MACHINE_HOURLY, region, machine))
                for machine, count in accelerator.fixed_counts.items()
                if prices.hourly(prices.GCP_MACHINE_HOURLY, region, machine) is not None
            ]
            for (fewer, cheaper), (more, dearer) in zip(sorted(priced), sorted(priced)[1:], strict=False):
                if fewer < more:
                    assert cheaper is not None
                    assert dearer is not None
                    assert cheaper < dearer, f"{region}: {fewer} x {accelerator.gpu_type} at {cheaper} >= {dearer}"


# --- spot-checks against the source rows -------------------------------------------------------------------------


def test_gcp_rows_match_cyclenerd_pricing_yml() -> None:
    # pricing.yml (fd66b26): "a2-highgpu-1g: a100: 1 cost: us-central1: hour: 3.673385 hour_spot: 1.92802";
    # "e2-standard-4 ... us-central1: hour: 0.13402284"; "n1-standard-4 ... europe-west4: hour: 0.209168".
    assert prices.price(prices.GCP_MACHINE_HOURLY, "us-central1", "a2-highgpu-1g") == prices.Price(
        Decimal("3.673385"), Decimal("1.92802")
    )
    assert prices.hourly(prices.GCP_MACHINE_HOURLY, "us-central1", "e2-standard-4") == Decimal("0.13402284")
    assert prices.hourly(prices.GCP_MACHINE_HOURLY, "europe-west4", "n1-standard-4") == Decimal("0.209168")
    # storage: bucket: standard: cost: us-east4: month: 0.023
    assert prices.GCS_STANDARD_GB_MONTH["us-east4"] == Decimal("0.023")


def test_an_a2_price_is_skypilots_vm_plus_its_a100() -> None:
    # SkyPilot vms.csv (006059e): "a2-highgpu-1g,12.0,85.0,,,,us-central1,us-central1-a,0.73948,0.36975" and
    # ",,,A100,1,{...},us-central1,us-central1-a,2.93391,1.4341": the VM and its GPU, which Cyclenerd sums.
    assert Decimal("0.73948") + Decimal("2.93391") == Decimal("3.67339")
    on_demand = prices.hourly(prices.GCP_MACHINE_HOURLY, "us-central1", "a2-highgpu-1g")
    assert on_demand is not None
    assert abs(on_demand - Decimal("3.67339")) < Decimal("0.00001")


def test_n1_gpu_rows_match_skypilot_vms_csv() -> None:
    # ",,,T4,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 16384}}]},us-central1,us-central1-a,0.35,0.175"
    assert prices.gpu_hourly("us-central1", "nvidia-tesla-t4") == Decimal("0.35")
    assert prices.gpu_hourly("us-central1", "nvidia-tesla-t4", spot=True) == Decimal("0.175")
    # ",,,V100,1,{'Gpus': [{'MemoryInfo': {'SizeInMiB': 16384}}]},europe-west4,europe-west4-a,2.604,1.0443"
    assert prices.gpu_hourly("europe-west4", "nvidia-tesla-v100") == Decimal("2.604")


def test_azure_rows_match_the_retail_prices_records() -> None:
    # vm-eu-west.json: skuName "NC4as T4 v3", productName "Virtual Machines NCasT4 v3 Series", retailPrice 0.658;
    # skuName "NC4as T4 v3 Spot", same product, retailPrice 0.457113.
    assert prices.price(prices.AZURE_VM_HOURLY, "westeurope", "Standard_NC4as_T4_v3") == prices.Price(
        Decimal("0.658"), Decimal("0.457113")
    )
    # vm-swedencentral.json: "Standard_D4s_v5" / "Virtual Machines Dsv5 Series" 0.204; "... Spot" 0.037699.
    assert prices.hourly(prices.AZURE_VM_HOURLY, "swedencentral", "Standard_D4s_v5") == Decimal("0.204")
    assert prices.hourly(prices.AZURE_VM_HOURLY, "swedencentral", "Standard_D4s_v5", spot=True) == Decimal("0.037699")
    # vm-eu-west.json: "ND96asr_A100_v4" / "Virtual Machines NDasr A100 v4 Series" 35.357.
    assert prices.hourly(prices.AZURE_VM_HOURLY, "westeurope", "Standard_ND96asr_v4") == Decimal("35.357")
    # storage-eu-west.json: "Files v2" / "Standard LRS" / "LRS Data Stored" 0.06 per 1 GB/Month.
    assert prices.AZURE_FILES_STANDARD_LRS_GB_MONTH["westeurope"] == Decimal("0.06")


def test_the_fixed_charges_are_the_pricing_pages_figures() -> None:
    gke_fee, gke_credit = prices.GKE_CLUSTER_FEE_HOURLY, prices.GKE_FREE_TIER_MONTHLY_CREDIT
    assert gke_fee == Decimal("0.10")
    # $74.40 a month is one cluster's fee over a 31-day month: "one free Autopilot or zonal Standard cluster".
    assert gke_credit == gke_fee * 24 * 31
    rule, extra_rule = prices.GCP_FORWARDING_RULE_HOURLY, prices.GCP_FORWARDING_RULE_EXTRA_HOURLY
    assert (rule, extra_rule) == (Decimal("0.025"), Decimal("0.01"))
    registry = (prices.ARTIFACT_REGISTRY_GB_MONTH, prices.ARTIFACT_REGISTRY_FREE_GB)
    assert registry == (Decimal("0.10"), Decimal("0.5"))
    aks_free = prices.AKS_FREE_TIER_HOURLY
    assert aks_free == 0


# --- unknown is None, never a guess ------------------------------------------------------------------------------


def test_what_the_tables_do_not_hold_is_none() -> None:
    assert prices.hourly(prices.GCP_MACHINE_HOURLY, "mars-central1", "e2-standard-4") is None
    assert prices.hourly(prices.GCP_MACHINE_HOURLY, "us-central1", "e2-standard-3") is None
    assert prices.price(prices.AZURE_VM_HOURLY, "westeurope", "Standard_NC6s_v3") is None  # retired, never priced here
    assert prices.gpu_hourly("us-central1", "nvidia-l4") is None  # G2 includes its L4: see hourly
    assert prices.gpu_hourly("asia-east1", "nvidia-tesla-p4") is None  # no P4 in asia-east1


def test_the_gaps_the_sources_left_are_none_and_listed() -> None:
    """eastus is the stack's default Azure region, yet no dated source priced it: the gap shows, it is not filled."""
    assert prices.hourly(prices.AZURE_VM_HOURLY, "eastus", "Standard_NC4as_T4_v3") is None
    assert prices.hourly(prices.AZURE_VM_HOURLY, "uksouth", "Standard_D4s_v5") is None
    assert any("eastus" in item for item in prices.UNKNOWN)
    # A machine not offered where its GPU is missing has no row, though the SKU prices exist (a2-highgpu-1g in
    # asia-east1: Cyclenerd lists 3.790142, gcloud lists no A100 there).
    assert prices.hourly(prices.GCP_MACHINE_HOURLY, "asia-east1", "a2-highgpu-1g") is None
