"""Where GCP's machines are, and which are Arm: Compute Engine's regions and zones, the GPU types
each zone offers, N1's vCPU and memory limits per attached GPU count, the GCP machine types that cannot
be had on demand, and the Arm machine families of GCP with what GKE does to Arm nodes (Azure's Arm sizes:
mlstack.clouds.azure).

Pure data (and the small lookups over it), each table with its source on the line above, as in
mlstack.clouds.gcp. A lookup answers None for what its table does not know ("unknown"), never an empty
answer: an empty answer means the source was read and lists nothing there. Research notes, with the
discrepancies between the sources: /work/research/gcp-locations.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- Compute Engine regions and zones ----------------------------------------------------------------

# The "Available regions and zones" table of https://docs.cloud.google.com/compute/docs/regions-zones,
# read 2026-12 from a public Markdown export of the Compute Engine docs (the copy is undated; its machine
# columns already list A4X Max, G4 and N4A). Standard zones only: the table lists no AI zones. The 43
# regions are exactly those `gcloud compute regions list` printed for Cyclenerd/google-cloud-pricing-
# cost-calculator tools/regions.csv (last changed 2026-01-09, commit 4707d14; still so at dac3128,
# 2026-08-20, the file being re-read by a daily job). Region -> the letters of its zones.
_ZONE_LETTERS: dict[str, str] = {
    "africa-south1": "abc",
    "asia-east1": "abc",
    "asia-east2": "abc",
    "asia-northeast1": "abc",
    "asia-northeast2": "abc",
    "asia-northeast3": "abc",
    "asia-south1": "abc",
    "asia-south2": "abc",
    "asia-southeast1": "abc",
    "asia-southeast2": "abc",
    "asia-southeast3": "abc",
    "australia-southeast1": "abc",
    "australia-southeast2": "abc",
    "europe-central2": "abc",
    "europe-north1": "abc",
    "europe-north2": "abc",
    "europe-southwest1": "abc",
    "europe-west1": "bcd",
    "europe-west2": "abc",
    "europe-west3": "abc",
    "europe-west4": "abc",
    "europe-west6": "abc",
    "europe-west8": "abc",
    "europe-west9": "abc",
    "europe-west10": "abc",
    "europe-west12": "abc",
    "me-central1": "abc",
    "me-central2": "abc",
    "me-west1": "abc",
    "northamerica-northeast1": "abc",
    "northamerica-northeast2": "abc",
    "northamerica-south1": "abc",
    "southamerica-east1": "abc",
    "southamerica-west1": "abc",
    "us-central1": "abcf",
    "us-east1": "bcd",
    "us-east4": "abc",
    "us-east5": "abc",
    "us-south1": "abc",
    "us-west1": "abc",
    "us-west2": "abc",
    "us-west3": "abc",
    "us-west4": "abc",
}

# Every Compute Engine region -> its standard zones, e.g. "us-central1" -> ("us-central1-a", ..., "us-central1-f").
GCP_ZONES: dict[str, tuple[str, ...]] = {
    region: tuple(f"{region}-{letter}" for letter in letters) for region, letters in _ZONE_LETTERS.items()
}

# AI zones, "specialized zones used for ... AI and ML training and inference workloads"; "the fully
# qualified name for AI zone ai2b in region us-west4 is us-west4-ai2b. This AI zone shares its
# deployment rollout wave with the standard us-west4-b zone" (docs.cloud.google.com/compute/docs/
# regions-zones, "AI zone"; .../regions-zones/ai-zones, "Parent zone"). They are only visible to a
# project once "AI zone visibility" is enabled. No complete list was found: these are the ones the
# sources name (the AI zones page: us-central1-ai1a, us-south1-ai1b; "TPU regions and zones",
# docs.cloud.google.com/tpu/docs/regions-zones: both, for v6e and TPU7x).
GCP_AI_ZONE = re.compile(r"^(?P<region>[a-z]+-[a-z]+[0-9]+)-ai[0-9]+(?P<letter>[a-z])$")
GCP_KNOWN_AI_ZONES: tuple[str, ...] = ("us-central1-ai1a", "us-south1-ai1b")


def gcp_zones(region: str) -> tuple[str, ...] | None:
    """The standard zones of ``region``; None for a region the table does not list."""
    return GCP_ZONES.get(region)


def pool_zone_count(region: str, zone: str | None) -> int:
    """How many zones a GKE node pool's nodes are in: its cluster's zone, or for a regional cluster (``zone``
    None) every zone of the region (Pulumi.yaml, gcpZone), three where the table does not know the region."""
    return 1 if zone is not None else len(GCP_ZONES.get(region) or ("a", "b", "c"))


def gcp_region_of(zone: str) -> str | None:
    """The region of a standard zone in the table, or of an AI zone in a listed region; else None."""
    region, _, _ = zone.rpartition("-")
    if zone in GCP_ZONES.get(region, ()):
        return region
    ai = GCP_AI_ZONE.match(zone)
    if ai and ai["region"] in GCP_ZONES:
        return ai["region"]
    return None


def gcp_parent_zone(ai_zone: str) -> str | None:
    """The standard zone an AI zone shares its rollout with (same region, same letter); None if not an AI zone."""
    ai = GCP_AI_ZONE.match(ai_zone)
    if not ai:
        return None
    parent = f"{ai['region']}-{ai['letter']}"
    return parent if parent in GCP_ZONES.get(ai["region"], ()) else None


# --- GPU types per zone ----------------------------------------------------------------------------------

# The accelerator names mlstack uses (mlstack.clouds.gcp.GCP_ACCELERATORS).
GCP_GPU_TYPES: tuple[str, ...] = (
    "nvidia-tesla-t4",
    "nvidia-tesla-v100",
    "nvidia-tesla-p100",
    "nvidia-tesla-p4",
    "nvidia-l4",
    "nvidia-tesla-a100",
    "nvidia-a100-80gb",
    "nvidia-h100-80gb",
)

# Which zones offer each GPU type. The "GPU regions and zones availability" page
# (cloud.google.com/compute/docs/gpus/gpu-regions-zones) could not be read: its table is not in any
# stored copy found (the Regions and zones table above only says G2/A2/A3 or "GPUs" per zone). So this is
# the Compute Engine API's own answer, acceleratorTypes.list for every zone, as SkyPilot's catalog job
# stores it: skypilot-org/skypilot-catalog catalogs/v8/gcp/vms.csv at commit 006059e (the stored copy,
# undated; the job runs every 7 hours, .github/workflows/update-gcp-catalog.yml, with fetch_gcp.py
# --all-regions; rows whose GPU has no price in the region are dropped). Names there: T4, V100, P100, P4,
# L4, A100, A100-80GB, H100 (nvidia-h100-80gb; H100-MEGA is A3 Mega's nvidia-h100-mega-80gb, not here).
# Checked region by region against `gcloud compute accelerator-types list` (Cyclenerd/google-cloud-
# pricing-cost-calculator tools/acceleratortyperegion.csv, 2026-08-10, commit 1c13e28): every region
# matches, except that gcloud also lists nvidia-h100-80gb in australia-southeast2, which the zone data
# (older) has not. The zones here are the API's, so a region's list may differ slightly from the docs
# page (the Regions and zones table has no G2 in us-west1-c, the API lists nvidia-l4 there).
GCP_GPU_ZONES: dict[str, tuple[str, ...]] = {
    "nvidia-tesla-t4": (
        "asia-east1-a", "asia-east1-c", "asia-east2-a", "asia-east2-c", "asia-northeast1-a",
        "asia-northeast1-c", "asia-northeast3-b", "asia-northeast3-c", "asia-south1-a", "asia-south1-b",
        "asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c", "asia-southeast2-a",
        "asia-southeast2-b", "australia-southeast1-a", "australia-southeast1-c", "europe-central2-b",
        "europe-central2-c", "europe-west1-b", "europe-west1-c", "europe-west1-d", "europe-west2-a",
        "europe-west2-b", "europe-west3-b", "europe-west4-a", "europe-west4-b", "europe-west4-c",
        "me-west1-b", "me-west1-c", "northamerica-northeast1-c", "southamerica-east1-a",
        "southamerica-east1-b", "southamerica-east1-c", "us-central1-a", "us-central1-b", "us-central1-c",
        "us-central1-f", "us-east1-b", "us-east1-c", "us-east1-d", "us-east4-a", "us-east4-b",
        "us-east4-c", "us-west1-a", "us-west1-b", "us-west2-b", "us-west2-c", "us-west3-b", "us-west4-a",
        "us-west4-b",
    ),
    "nvidia-tesla-v100": (
        "asia-east1-c", "europe-west4-a", "europe-west4-b", "europe-west4-c", "us-central1-a",
        "us-central1-b", "us-central1-c", "us-central1-f", "us-east1-b", "us-east1-c", "us-west1-a",
        "us-west1-b",
    ),
    "nvidia-tesla-p100": (
        "asia-east1-a", "asia-east1-c", "australia-southeast1-b", "europe-west1-b", "europe-west1-d",
        "europe-west4-a", "us-central1-c", "us-central1-f", "us-east1-b", "us-east1-c", "us-west1-a",
        "us-west1-b",
    ),
    "nvidia-tesla-p4": (
        "asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c", "australia-southeast1-a",
        "australia-southeast1-b", "europe-west4-b", "europe-west4-c", "northamerica-northeast1-a",
        "northamerica-northeast1-b", "northamerica-northeast1-c", "us-central1-a", "us-central1-c",
        "us-east4-a", "us-east4-b", "us-east4-c", "us-west2-b", "us-west2-c",
    ),
    "nvidia-l4": (
        "asia-east1-a", "asia-east1-b", "asia-east1-c", "asia-northeast1-a", "asia-northeast1-b",
        "asia-northeast1-c", "asia-northeast3-a", "asia-northeast3-b", "asia-south1-a", "asia-south1-b",
        "asia-south1-c", "asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c", "europe-west1-b",
        "europe-west1-c", "europe-west2-a", "europe-west2-b", "europe-west3-a", "europe-west3-b",
        "europe-west4-a", "europe-west4-b", "europe-west4-c", "europe-west6-b", "europe-west6-c",
        "me-central2-a", "me-central2-c", "northamerica-northeast1-b", "northamerica-northeast1-c",
        "northamerica-northeast2-a", "northamerica-northeast2-b", "us-central1-a", "us-central1-b",
        "us-central1-c", "us-east1-b", "us-east1-c", "us-east1-d", "us-east4-a", "us-east4-c",
        "us-west1-a", "us-west1-b", "us-west1-c", "us-west4-a", "us-west4-c",
    ),
    "nvidia-tesla-a100": (
        "asia-northeast1-a", "asia-northeast1-c", "asia-northeast3-a", "asia-northeast3-b",
        "asia-southeast1-a", "asia-southeast1-b", "asia-southeast1-c", "europe-west4-a", "europe-west4-b",
        "me-west1-a", "me-west1-c", "us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f",
        "us-east1-b", "us-west1-b", "us-west3-b", "us-west4-b",
    ),
    "nvidia-a100-80gb": (
        "asia-southeast1-c", "europe-west4-a", "us-central1-a", "us-central1-c", "us-east4-c",
        "us-east5-a", "us-east5-b",
    ),
    # A3 High and A3 Edge both carry nvidia-h100-80gb ("A3 Edge ... ( nvidia-h100-80gb )", GPU machine
    # types): a zone here may have only a3-edgegpu-8g. For the a3-highgpu machines see GCP_MACHINE_ZONES.
    "nvidia-h100-80gb": (
        "asia-east1-c", "asia-northeast1-b", "asia-northeast3-a", "asia-northeast3-c", "asia-south1-c",
        "asia-south2-b", "asia-southeast1-b", "asia-southeast1-c", "australia-southeast1-c",
        "europe-north1-c", "europe-west1-b", "europe-west1-c", "europe-west2-b", "europe-west3-a",
        "europe-west3-c", "europe-west4-b", "europe-west4-c", "europe-west9-c", "northamerica-northeast2-c",
        "us-central1-a", "us-central1-b", "us-central1-c", "us-east4-a", "us-east4-b", "us-east4-c",
        "us-east5-a", "us-west1-a", "us-west1-b", "us-west4-a",
    ),
}  # fmt: skip

# The regions `gcloud compute accelerator-types list` gives each GPU type (Cyclenerd/google-cloud-
# pricing-cost-calculator tools/acceleratortyperegion.csv, 2026-08-10, commit 1c13e28): the newer,
# region-level check on GCP_GPU_ZONES.
GCP_GPU_REGIONS_GCLOUD: dict[str, tuple[str, ...]] = {
    "nvidia-tesla-t4": (
        "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast3", "asia-south1", "asia-southeast1",
        "asia-southeast2", "australia-southeast1", "europe-central2", "europe-west1", "europe-west2",
        "europe-west3", "europe-west4", "me-west1", "northamerica-northeast1", "southamerica-east1",
        "us-central1", "us-east1", "us-east4", "us-west1", "us-west2", "us-west3", "us-west4",
    ),
    "nvidia-tesla-v100": ("asia-east1", "europe-west4", "us-central1", "us-east1", "us-west1"),
    "nvidia-tesla-p100": (
        "asia-east1", "australia-southeast1", "europe-west1", "europe-west4", "us-central1", "us-east1",
        "us-west1",
    ),
    "nvidia-tesla-p4": (
        "asia-southeast1", "australia-southeast1", "europe-west4", "northamerica-northeast1", "us-central1",
        "us-east4", "us-west2",
    ),
    "nvidia-l4": (
        "asia-east1", "asia-northeast1", "asia-northeast3", "asia-south1", "asia-southeast1", "europe-west1",
        "europe-west2", "europe-west3", "europe-west4", "europe-west6", "me-central2",
        "northamerica-northeast1", "northamerica-northeast2", "us-central1", "us-east1", "us-east4",
        "us-west1", "us-west4",
    ),
    "nvidia-tesla-a100": (
        "asia-northeast1", "asia-northeast3", "asia-southeast1", "europe-west4", "me-west1", "us-central1",
        "us-east1", "us-west1", "us-west3", "us-west4",
    ),
    "nvidia-a100-80gb": ("asia-southeast1", "europe-west4", "us-central1", "us-east4", "us-east5"),
    "nvidia-h100-80gb": (
        "asia-east1", "asia-northeast1", "asia-northeast3", "asia-south1", "asia-south2", "asia-southeast1",
        "australia-southeast1", "australia-southeast2", "europe-north1", "europe-west1", "europe-west2",
        "europe-west3", "europe-west4", "europe-west9", "northamerica-northeast2", "us-central1", "us-east4",
        "us-east5", "us-west1", "us-west4",
    ),
}  # fmt: skip

# Every standard zone -> the GPU types of GCP_GPU_TYPES it offers (empty: the API lists none of them there).
GCP_ZONE_GPUS: dict[str, frozenset[str]] = {
    zone: frozenset(gpu for gpu, gpu_zones in GCP_GPU_ZONES.items() if zone in gpu_zones)
    for region_zones in GCP_ZONES.values()
    for zone in region_zones
}

# Where the A3 High machine types are (machineTypes.list per zone, same SkyPilot catalog file and commit
# as GCP_GPU_ZONES). A zone with nvidia-h100-80gb but none of these (asia-northeast3-a/c, europe-west2-b,
# europe-west3-a, northamerica-northeast2-c) has only A3 Edge. europe-west8-c lists a3-highgpu-1g/2g/4g
# but no nvidia-h100-80gb accelerator row and no a3-highgpu-8g (nor does gcloud list the accelerator in
# europe-west8): kept as the API answered.
_A3_HIGH_ZONES: tuple[str, ...] = (
    "asia-east1-c", "asia-northeast1-b", "asia-south1-c", "asia-south2-b", "asia-southeast1-b",
    "asia-southeast1-c", "australia-southeast1-c", "europe-north1-c", "europe-west1-b", "europe-west1-c",
    "europe-west3-c", "europe-west4-b", "europe-west4-c", "europe-west9-c", "us-central1-a",
    "us-central1-b", "us-central1-c", "us-east4-a", "us-east4-b", "us-east4-c", "us-east5-a",
    "us-west1-a", "us-west1-b", "us-west4-a",
)  # fmt: skip
GCP_MACHINE_ZONES: dict[str, tuple[str, ...]] = {
    "a3-highgpu-1g": tuple(sorted((*_A3_HIGH_ZONES, "europe-west8-c"))),
    "a3-highgpu-2g": tuple(sorted((*_A3_HIGH_ZONES, "europe-west8-c"))),
    "a3-highgpu-4g": tuple(sorted((*_A3_HIGH_ZONES, "europe-west8-c"))),
    "a3-highgpu-8g": _A3_HIGH_ZONES,
}


def gcp_zone_gpus(zone: str) -> frozenset[str] | None:
    """The GPU types ``zone`` offers (of GCP_GPU_TYPES); None for a zone not in the table ("unknown")."""
    return GCP_ZONE_GPUS.get(zone)


def gcp_gpu_zones(gpu_type: str, region: str | None = None) -> tuple[str, ...] | None:
    """The zones offering ``gpu_type``, in ``region`` if given; None for a GPU type or region the tables lack."""
    zones = GCP_GPU_ZONES.get(gpu_type)
    if zones is None or (region is not None and region not in GCP_ZONES):
        return None
    return zones if region is None else tuple(z for z in zones if z in GCP_ZONES[region])


def gcp_machine_zones(machine_type: str) -> tuple[str, ...] | None:
    """The zones of a machine type in GCP_MACHINE_ZONES; None for any other ("unknown")."""
    return GCP_MACHINE_ZONES.get(machine_type)


# --- N1 with GPUs: the vCPUs and memory an N1 machine may have per attached GPU count ---------------------


@dataclass(frozen=True)
class N1GpuLimit:
    """The most vCPUs and memory an N1 machine may have with this many GPUs of one type attached."""

    max_vcpus: int
    max_memory_gb: int


# "N1 machine series" of https://docs.cloud.google.com/compute/docs/gpus ("GPU machine types", last updated
# 2026-04-14, read from a stored copy): "N1 instances with fewer GPUs limit the maximum number of vCPUs"; the
# tables give "vCPU count" 1 to N and "Instance memory (GB)" 1 to M per "GPU count". A -vws accelerator
# (nvidia-tesla-t4-vws, ...) has the same rows as its GPU. No 8-GPU row exists for T4, P4 or P100.
N1_GPU_LIMITS: dict[tuple[str, int], N1GpuLimit] = {
    ("nvidia-tesla-t4", 1): N1GpuLimit(48, 312),
    ("nvidia-tesla-t4", 2): N1GpuLimit(48, 312),
    ("nvidia-tesla-t4", 4): N1GpuLimit(96, 624),
    ("nvidia-tesla-p4", 1): N1GpuLimit(24, 156),
    ("nvidia-tesla-p4", 2): N1GpuLimit(48, 312),
    ("nvidia-tesla-p4", 4): N1GpuLimit(96, 624),
    ("nvidia-tesla-v100", 1): N1GpuLimit(12, 78),
    ("nvidia-tesla-v100", 2): N1GpuLimit(24, 156),
    ("nvidia-tesla-v100", 4): N1GpuLimit(48, 312),
    ("nvidia-tesla-v100", 8): N1GpuLimit(96, 624),
    ("nvidia-tesla-p100", 1): N1GpuLimit(16, 104),
    ("nvidia-tesla-p100", 2): N1GpuLimit(32, 208),
    # 4 P100s: "All other P100 zones" 1 to 96 vCPUs, 1 to 624 GB ...
    ("nvidia-tesla-p100", 4): N1GpuLimit(96, 624),
}
# ... but in "us-east1-c , europe-west1-d , europe-west1-b": 1 to 64 vCPUs, 1 to 208 GB (same page).
N1_P100_4_LIMITED_ZONES: tuple[str, ...] = ("us-east1-c", "europe-west1-d", "europe-west1-b")
N1_P100_4_LIMITED = N1GpuLimit(64, 208)
_VWS = {
    "nvidia-tesla-t4-vws": "nvidia-tesla-t4",
    "nvidia-tesla-p4-vws": "nvidia-tesla-p4",
    "nvidia-tesla-p100-vws": "nvidia-tesla-p100",
}


def n1_gpu_limit(gpu_type: str, count: int, zone: str | None = None) -> N1GpuLimit | None:
    """N1's limits with ``count`` GPUs of ``gpu_type``; None for a pairing the tables do not list.

    Four P100s allow less in three zones: without a zone the answer is the lower limit, which holds in every one.
    """
    gpu = _VWS.get(gpu_type, gpu_type)
    limit = N1_GPU_LIMITS.get((gpu, count))
    p100_limited = zone is None or zone in N1_P100_4_LIMITED_ZONES
    if limit is not None and (gpu, count) == ("nvidia-tesla-p100", 4) and p100_limited:
        return N1_P100_4_LIMITED
    return limit


def n1_max_vcpus(gpu_type: str, count: int, zone: str | None = None) -> int | None:
    """The most vCPUs an N1 machine may have with ``count`` GPUs of ``gpu_type``; None if not listed."""
    limit = n1_gpu_limit(gpu_type, count, zone)
    return None if limit is None else limit.max_vcpus


def n1_max_memory_gb(gpu_type: str, count: int, zone: str | None = None) -> int | None:
    """The most memory (GB) an N1 machine may have with ``count`` GPUs of ``gpu_type``; None if not listed."""
    limit = n1_gpu_limit(gpu_type, count, zone)
    return None if limit is None else limit.max_memory_gb


# "To use an N1 machine type in any of the supported me-west1 zones, you must attach at least one NVIDIA T4
# GPU to the VM" (regions-zones table footnote "GPU required", as GCP_ZONES).
GCP_N1_NEEDS_T4_REGIONS: tuple[str, ...] = ("me-west1",)

# --- Machines that cannot be had on demand ------------------------------------------------------------------

# Machine types sold only as Spot or flex-start: "When provisioning a3-highgpu-1g , a3-highgpu-2g , or
# a3-highgpu-4g machine types, you must create instances by using Spot VMs or Flex-start VMs"
# (docs.cloud.google.com/compute/docs/gpus, "A3 High", last updated 2026-04-14). a3-highgpu-8g has no such
# note, and neither have A2 (Standard or Ultra) nor G2 on that page.
_A3_HIGH_NOTE = (
    "When provisioning a3-highgpu-1g, a3-highgpu-2g, or a3-highgpu-4g machine types, "
    "you must create instances by using Spot VMs or Flex-start VMs."
)
SPOT_OR_FLEX_ONLY: dict[str, str] = {
    "a3-highgpu-1g": _A3_HIGH_NOTE,
    "a3-highgpu-2g": _A3_HIGH_NOTE,
    "a3-highgpu-4g": _A3_HIGH_NOTE,
}

# Machine types that need capacity held for them (same page): A3 Ultra and A4 "you must reserve capacity to
# create instances or clusters, use Spot VMs, use Flex-start VMs, or create a resize request in a MIG";
# A4X and A4X Max "you must reserve capacity to create instances and clusters".
_A3U_A4_NOTE = (
    "you must reserve capacity to create instances or clusters, use Spot VMs, use Flex-start VMs, "
    "or create a resize request in a MIG."
)
_A4X_NOTE = "you must reserve capacity to create instances and clusters."
GCP_CAPACITY_REQUIRED: dict[str, str] = {
    "a3-ultragpu-8g": _A3U_A4_NOTE,
    "a4-highgpu-8g": _A3U_A4_NOTE,
    "a4x-highgpu-4g": _A4X_NOTE,
    "a4x-maxgpu-4g-metal": _A4X_NOTE,
}


def gcp_on_demand_note(machine_type: str) -> str | None:
    """The source's note when ``machine_type`` cannot be created as a plain on-demand VM; None when none is known."""
    return SPOT_OR_FLEX_ONLY.get(machine_type) or GCP_CAPACITY_REQUIRED.get(machine_type)


# --- Arm machines -------------------------------------------------------------------------------------------

# GCP's Arm machine series (family = the machine type's first segment). GKE: "in GKE Standard clusters using
# the C4A, N4A (Preview) or Tau T2A machine series" (docs.cloud.google.com/kubernetes-engine/docs/concepts/
# arm-on-gke, read in its pt-BR copy); Autopilot's arm64 nodes are C4A from 1.31.3-gke.1056000, T2A before
# (.../how-to/autopilot-arm-workloads). Compute Engine: A4X and A4X Max have "two sockets with NVIDIA Grace
# CPUs with Arm Neoverse V2 cores" (docs.cloud.google.com/compute/docs/gpus, 2026-04-14); the zones table's
# CPU column names "Ampere Altra Arm" (T2A zones), "Google Axion" and "NVIDIA Grace".
GCP_ARM_FAMILIES: dict[str, str] = {
    "t2a": "Tau T2A (Ampere Altra)",
    "c4a": "C4A",
    "n4a": "N4A (Preview in GKE)",
    "a4x": "A4X and A4X Max (NVIDIA Grace, with GB200/GB300 GPUs)",
}

# "By default, GKE schedules workloads only to x86-based nodes ... by placing a taint
# (kubernetes.io/arch=arm64:NoSchedule) on all Arm nodes"; a Pod with the kubernetes.io/arch: arm64 node
# selector or affinity gets the matching toleration added by GKE; "You can optionally remove this default
# taint" (docs.cloud.google.com/kubernetes-engine/docs/how-to/prepare-arm-workloads-for-deployment). The
# node pool's TaintConfig.ArchitectureTaintBehavior: UNSPECIFIED "defaults to ARM", NONE "Disables default
# architecture taints" (container v1 API reference, last updated 2026-05-18).
GKE_ARM_TAINT_KEY = "kubernetes.io/arch"
GKE_ARM_TAINT_VALUE = "arm64"
GKE_ARM_TAINT_EFFECT = "NoSchedule"
GKE_ARM_TAINT = f"{GKE_ARM_TAINT_KEY}={GKE_ARM_TAINT_VALUE}:{GKE_ARM_TAINT_EFFECT}"


def gcp_is_arm(machine_type: str) -> bool:
    """Whether a Compute Engine machine type has Arm CPUs (its family is in GCP_ARM_FAMILIES)."""
    return machine_type.split("-", 1)[0] in GCP_ARM_FAMILIES
