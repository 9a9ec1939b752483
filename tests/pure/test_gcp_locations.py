"""mlstack.clouds.gcp_locations: Compute Engine's regions, zones and GPUs per zone, N1's limits with GPUs, the machines
not sold on demand, and which machine types and VM sizes are Arm."""

from __future__ import annotations

import re

import pytest

from mlstack.clouds import azure, gcp
from mlstack.clouds import gcp_locations as loc

ALL_ZONES = [zone for zones in loc.GCP_ZONES.values() for zone in zones]


def test_every_zone_belongs_to_its_region_by_name() -> None:
    for region, zones in loc.GCP_ZONES.items():
        assert re.fullmatch(r"[a-z]+-[a-z]+[0-9]+", region), region
        assert len(zones) >= 3, f"{region} has {zones}"  # "Regions have three or more zones"
        for zone in zones:
            assert re.fullmatch(rf"{re.escape(region)}-[a-z]", zone), f"{zone} is not a zone of {region}"
            assert loc.gcp_region_of(zone) == region
    assert len(ALL_ZONES) == len(set(ALL_ZONES))


def test_the_regions_are_the_43_that_gcloud_lists() -> None:
    assert len(loc.GCP_ZONES) == 43
    assert {"us-central1", "europe-west4", "asia-southeast3", "northamerica-south1", "europe-north2"} <= set(
        loc.GCP_ZONES
    )


@pytest.mark.parametrize(
    ("region", "zones"),
    [
        ("us-central1", ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f")),
        ("us-east1", ("us-east1-b", "us-east1-c", "us-east1-d")),
        ("europe-west1", ("europe-west1-b", "europe-west1-c", "europe-west1-d")),
        ("us-west1", ("us-west1-a", "us-west1-b", "us-west1-c")),
    ],
)
def test_known_regions_have_their_documented_zones(region: str, zones: tuple[str, ...]) -> None:
    assert loc.gcp_zones(region) == zones


def test_unknown_regions_and_zones_are_unknown_not_empty() -> None:
    assert loc.gcp_zones("mars-central1") is None
    assert loc.gcp_region_of("us-central1-d") is None  # no such zone in the table
    assert loc.gcp_region_of("not-a-zone") is None
    assert loc.gcp_zone_gpus("us-central1-d") is None
    assert loc.gcp_zone_gpus("mars-central1-a") is None
    assert loc.gcp_gpu_zones("nvidia-tesla-k80") is None
    assert loc.gcp_gpu_zones("nvidia-tesla-t4", "mars-central1") is None


def test_ai_zones_belong_to_their_region_and_parent_zone_but_have_no_gpu_answer() -> None:
    for zone in loc.GCP_KNOWN_AI_ZONES:
        region = loc.gcp_region_of(zone)
        assert region is not None
        assert zone.startswith(f"{region}-ai")
        assert loc.gcp_parent_zone(zone) in loc.GCP_ZONES[region]
        assert loc.gcp_zone_gpus(zone) is None  # not in the zone data: unknown
    assert loc.gcp_parent_zone("us-west4-ai2b") == "us-west4-b"  # the docs' own example
    assert loc.gcp_parent_zone("us-central1-a") is None


def test_every_standard_zone_has_a_gpu_answer_and_every_gpu_zone_is_a_listed_zone() -> None:
    assert set(loc.GCP_ZONE_GPUS) == set(ALL_ZONES)
    for gpu, zones in loc.GCP_GPU_ZONES.items():
        assert gpu in loc.GCP_GPU_TYPES
        assert zones, f"{gpu} is in no zone"
        assert list(zones) == sorted(set(zones)), f"{gpu}: zones not sorted or repeated"
        for zone in zones:
            assert zone in loc.GCP_ZONE_GPUS, f"{gpu}: {zone} is not a zone in GCP_ZONES"
            assert gpu in loc.GCP_ZONE_GPUS[zone]


def test_every_catalogue_gpu_type_is_located() -> None:
    assert set(gcp.GCP_ACCELERATORS) == set(loc.GCP_GPU_TYPES) == set(loc.GCP_GPU_ZONES)


def test_the_zone_data_agrees_with_gclouds_regions_but_for_one_newer_h100_region() -> None:
    differences = {}
    for gpu, zones in loc.GCP_GPU_ZONES.items():
        regions = {loc.gcp_region_of(z) for z in zones}
        diff = regions ^ set(loc.GCP_GPU_REGIONS_GCLOUD[gpu])
        if diff:
            differences[gpu] = diff
    # gcloud (2026-08-10) lists H100 in australia-southeast2, the older zone data does not.
    assert differences == {"nvidia-h100-80gb": {"australia-southeast2"}}


@pytest.mark.parametrize(
    ("zone", "has", "lacks"),
    [
        (
            "us-central1-a",
            {"nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-l4", "nvidia-tesla-a100", "nvidia-a100-80gb",
             "nvidia-h100-80gb", "nvidia-tesla-p4"},
            {"nvidia-tesla-p100"},
        ),
        ("europe-west4-a", {"nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-a100-80gb"}, {"nvidia-h100-80gb"}),
        ("europe-west1-b", {"nvidia-tesla-t4", "nvidia-tesla-p100", "nvidia-l4"}, {"nvidia-tesla-v100"}),
        ("us-east1-c", {"nvidia-tesla-p100", "nvidia-tesla-v100"}, {"nvidia-tesla-a100"}),
    ],
)  # fmt: skip
def test_known_gpu_zones(zone: str, has: set[str], lacks: set[str]) -> None:
    gpus = loc.gcp_zone_gpus(zone)
    assert gpus is not None
    assert has <= gpus, has - gpus
    assert not (lacks & gpus), lacks & gpus


def test_a_zone_without_these_gpus_answers_empty() -> None:
    assert loc.gcp_zone_gpus("africa-south1-a") == frozenset()
    assert loc.gcp_zone_gpus("northamerica-south1-b") == frozenset()
    assert loc.gcp_gpu_zones("nvidia-tesla-v100", "europe-west1") == ()


def test_gpu_zones_by_region() -> None:
    assert loc.gcp_gpu_zones("nvidia-a100-80gb", "us-central1") == ("us-central1-a", "us-central1-c")
    assert loc.gcp_gpu_zones("nvidia-tesla-v100", "asia-east1") == ("asia-east1-c",)


def test_zones_of_the_a3_high_machines() -> None:
    h100 = set(loc.GCP_GPU_ZONES["nvidia-h100-80gb"])
    eight = set(loc.GCP_MACHINE_ZONES["a3-highgpu-8g"])
    assert eight <= h100
    # A3 Edge only: the accelerator is there, an a3-highgpu machine is not.
    assert {"asia-northeast3-a", "europe-west2-b", "northamerica-northeast2-c"} <= h100 - eight
    for small in ("a3-highgpu-1g", "a3-highgpu-2g", "a3-highgpu-4g"):
        assert set(loc.GCP_MACHINE_ZONES[small]) == eight | {"europe-west8-c"}
    for machine, zones in loc.GCP_MACHINE_ZONES.items():
        assert all(z in loc.GCP_ZONE_GPUS for z in zones), machine
        assert loc.gcp_machine_zones(machine) == zones
    assert loc.gcp_machine_zones("a2-highgpu-1g") is None


@pytest.mark.parametrize(
    ("gpu", "count", "zone", "vcpus", "memory_gb"),
    [
        ("nvidia-tesla-t4", 1, None, 48, 312),
        ("nvidia-tesla-t4", 2, None, 48, 312),
        ("nvidia-tesla-t4", 4, None, 96, 624),
        ("nvidia-tesla-t4-vws", 1, None, 48, 312),
        ("nvidia-tesla-p4", 1, None, 24, 156),
        ("nvidia-tesla-p4", 4, None, 96, 624),
        ("nvidia-tesla-v100", 1, None, 12, 78),
        ("nvidia-tesla-v100", 2, None, 24, 156),
        ("nvidia-tesla-v100", 4, None, 48, 312),
        ("nvidia-tesla-v100", 8, None, 96, 624),
        ("nvidia-tesla-p100", 1, None, 16, 104),
        ("nvidia-tesla-p100", 2, "us-east1-c", 32, 208),
        ("nvidia-tesla-p100", 4, "us-central1-c", 96, 624),
        ("nvidia-tesla-p100", 4, "europe-west1-b", 64, 208),
        ("nvidia-tesla-p100", 4, None, 64, 208),  # the lower limit, which holds in every P100 zone
    ],
)
def test_n1_limits_per_gpu_count(gpu: str, count: int, zone: str | None, vcpus: int, memory_gb: int) -> None:
    assert loc.n1_max_vcpus(gpu, count, zone) == vcpus
    assert loc.n1_max_memory_gb(gpu, count, zone) == memory_gb


def test_n1_limits_unknown_pairings_are_none() -> None:
    assert loc.n1_max_vcpus("nvidia-tesla-t4", 8) is None
    assert loc.n1_max_vcpus("nvidia-tesla-t4", 3) is None
    assert loc.n1_max_vcpus("nvidia-l4", 1) is None  # G2, not N1
    assert loc.n1_max_memory_gb("nvidia-tesla-k80", 1) is None


def test_every_catalogue_n1_count_has_a_limit() -> None:
    for gpu, accelerator in gcp.GCP_ACCELERATORS.items():
        for count in accelerator.attachable_counts:
            assert loc.n1_max_vcpus(gpu, count) is not None, (gpu, count)


def test_more_gpus_never_allow_fewer_vcpus() -> None:
    for (gpu, count), limit in loc.N1_GPU_LIMITS.items():
        for (other, more), bigger in loc.N1_GPU_LIMITS.items():
            if other == gpu and more > count:
                assert bigger.max_vcpus >= limit.max_vcpus, (gpu, count, more)
                assert bigger.max_memory_gb >= limit.max_memory_gb, (gpu, count, more)


def test_a3_high_below_eight_gpus_is_spot_or_flex_start_only() -> None:
    assert set(loc.SPOT_OR_FLEX_ONLY) == {"a3-highgpu-1g", "a3-highgpu-2g", "a3-highgpu-4g"}
    assert "Spot VMs or Flex-start VMs" in loc.SPOT_OR_FLEX_ONLY["a3-highgpu-1g"]
    assert loc.gcp_on_demand_note("a3-highgpu-8g") is None
    assert loc.gcp_on_demand_note("a2-highgpu-1g") is None
    assert loc.gcp_on_demand_note("g2-standard-4") is None
    assert "reserve capacity" in (loc.gcp_on_demand_note("a4-highgpu-8g") or "")
    # Each is a machine type the catalogue offers for nvidia-h100-80gb.
    assert set(loc.SPOT_OR_FLEX_ONLY) <= set(gcp.GCP_ACCELERATORS["nvidia-h100-80gb"].fixed_counts)


@pytest.mark.parametrize(
    ("machine", "arm"),
    [
        ("t2a-standard-4", True),
        ("c4a-standard-8", True),
        ("c4a-highmem-16-lssd", True),
        ("n4a-standard-2", True),
        ("a4x-highgpu-4g", True),
        ("a4x-maxgpu-4g-metal", True),
        ("n1-standard-4", False),
        ("c4-standard-4", False),
        ("c4d-standard-4", False),
        ("n4-standard-2", False),
        ("t2d-standard-1", False),
        ("a3-highgpu-8g", False),
        ("g2-standard-8", False),
        ("e2-medium", False),
    ],
)
def test_gcp_arm_machine_types(machine: str, arm: bool) -> None:
    assert loc.gcp_is_arm(machine) is arm


def test_no_catalogue_gcp_gpu_machine_is_arm() -> None:
    for accelerator in gcp.GCP_ACCELERATORS.values():
        assert not loc.gcp_is_arm(f"{accelerator.family}-standard-4")
        for machine in accelerator.fixed_counts:
            assert not loc.gcp_is_arm(machine), machine


def test_the_gke_arm_taint() -> None:
    assert loc.GKE_ARM_TAINT == "kubernetes.io/arch=arm64:NoSchedule"
    assert azure.AKS_TAINTS_ARM_NODES is False


@pytest.mark.parametrize(
    ("size", "arm"),
    [
        ("Standard_D4ps_v5", True),
        ("Standard_D2pds_v5", True),
        ("Standard_D2pls_v5", True),
        ("Standard_D2plds_v5", True),
        ("Standard_E4ps_v5", True),
        ("Standard_D4ps_v6", True),
        ("Standard_E2pds_v6", True),
        ("Standard_B2pts_v2", True),
        ("Standard_B16pls_v2", True),
        ("Standard_ND128isr_NDR_GB200_v6", True),
        ("Standard_ND128isr_GB300_v6", True),
        ("Standard_D4s_v5", False),
        ("Standard_D4as_v5", False),
        ("Standard_DC8ads_v5", False),
        ("Standard_M8-2ms_v2", False),
        ("Standard_NP10s", False),  # NP: an FPGA family, not the p feature
        ("Standard_NC4as_T4_v3", False),
        ("Standard_ND96isr_H100_v5", False),
        ("not-a-size", False),
    ],
)
def test_azure_arm_sizes(size: str, arm: bool) -> None:
    assert azure.azure_is_arm(size) is arm


def test_no_catalogue_azure_gpu_size_is_arm() -> None:
    for size in (*azure.AZURE_GPU_SIZES, *azure.AZURE_RETIRED_GPU_SIZES):
        assert not azure.azure_is_arm(size), size


def test_the_azure_arm_series_all_carry_the_p_feature() -> None:
    for series in azure.AZURE_ARM_SERIES:
        family, features = re.fullmatch(r"([A-Z]+)([a-z]+)v[0-9]+", series).groups()  # type: ignore[union-attr]
        assert azure.azure_is_arm(f"Standard_{family}4{features}_v{series[-1]}"), series


def test_a_pool_is_in_its_clusters_zone_or_in_every_zone_of_its_region() -> None:
    assert loc.pool_zone_count("us-central1", "us-central1-a") == 1
    assert loc.pool_zone_count("us-central1", None) == len(loc.GCP_ZONES["us-central1"]) == 4
    assert loc.pool_zone_count("xx-nowhere1", None) == 3
