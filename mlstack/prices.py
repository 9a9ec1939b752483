"""What the stacks' machines cost by the hour, and the few fixed charges around them, as the clouds list them.

Pure data (and the lookups over it), each table with its source on the line above, as in mlstack.catalogue. USD,
list prices, no discounts or taxes. A lookup answers None for what its table does not hold, never an estimate:
a region or size missing here is unpriced, not free.

On-demand prices of these machines barely move: Cyclenerd's weekly GCP files show no change for any of them from
2025-04-03 to 2026-07-30, and the Azure radar's history (July-August 2026) none for the sizes here. Spot prices move
every few weeks on both clouds ("Spot prices are variable and can change up to once every day",
cloud.google.com/spot-vms/pricing): a Spot figure is the price in the source's week, for comparing, not for billing.
Hence FRESHNESS_DAYS, a year, bounds the on-demand figures; tests/pure/test_prices.py fails once the oldest snapshot
is older than that. Research notes and the scripts that built the tables: /work/research/prices.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal


@dataclass(frozen=True)
class Price:
    """One machine's price per hour: on demand, and as Spot (None where the source lists no Spot price)."""

    on_demand: Decimal
    spot: Decimal | None


def _p(on_demand: str, spot: str | None) -> Price:
    return Price(Decimal(on_demand), None if spot is None else Decimal(spot))


# When each table's source snapshot was taken (each was read here on 2026-12-07). The oldest one dates the lot.
SNAPSHOTS: dict[str, date] = {
    "GCP_MACHINE_HOURLY": date(2026, 7, 30),
    "GCS_STANDARD_GB_MONTH": date(2026, 7, 30),
    "GCP_N1_GPU_HOURLY": date(2026, 1, 29),  # the earlier bound of its dating, see the table
    "AZURE_VM_HOURLY": date(2026, 8, 22),
    "AZURE_FILES_STANDARD_LRS_GB_MONTH": date(2026, 8, 22),
}
PRICES_READ: date = min(SNAPSHOTS.values())
# A year: the on-demand figures did not change in the 16 months of GCP history read (see above). At 180 days the N1
# GPU table would have been stale since 2026-07-28.
FRESHNESS_DAYS = 365


def fresh_until() -> date:
    """The last day the tables count as current; after it they must be read again from their sources."""
    return PRICES_READ + timedelta(days=FRESHNESS_DAYS)


# --- GCP ---------------------------------------------------------------------------------------------------------

# Compute Engine, per hour: Cyclenerd/google-cloud-pricing-cost-calculator pricing.yml at fd66b26 (commit 2026-07-30,
# "generated: Thu Jul 30 06:13:17 2026"). The file sums each machine type's Cloud Billing SKUs (build/pricing.pl):
# vCPU and memory, and for A2, A3 and G2 the GPUs they come with ("a100: 1" under a2-highgpu-1g), a2-ultragpu and
# a3-highgpu also their bundled local SSD ("Cost for the GPUs, vCPU, memory, _and_ local SSD", build/gcp.yml). So an
# A2, A3 or G2 row is the whole node and an N1 row the VM alone, its GPUs billed apart (GCP_N1_GPU_HOURLY). SkyPilot's
# catalog splits the same sum: a2-highgpu-1g in us-central1 is 0.73948 for the VM plus 2.93391 for its A100.
# Rows only where mlstack.clouds.gcp_locations offers the machine's GPU in the region (A3 High: its machine zones;
# a2-megagpu-16g: where SkyPilot's machineTypes rows list it, asia-southeast1, europe-west4, us-central1). Spot is
# that week's: the 2026-08-20 file (dac3128, over the mirror's size limit) has a2-highgpu-1g us-central1 at 2.12081.
GCP_MACHINE_HOURLY: dict[tuple[str, str], Price] = {
    ("asia-east1", "a3-highgpu-1g"): _p("12.7948475088219", "5.99978860273973"),
    ("asia-east1", "a3-highgpu-2g"): _p("25.5896950176438", "11.9995772054795"),
    ("asia-east1", "a3-highgpu-4g"): _p("51.1793900352877", "23.9991544109589"),
    ("asia-east1", "a3-highgpu-8g"): _p("102.358780070575", "47.9983088219178"),
    ("asia-east1", "e2-standard-2"): _p("0.07759188", "0.040552"),
    ("asia-east1", "e2-standard-4"): _p("0.15518376", "0.081104"),
    ("asia-east1", "e2-standard-8"): _p("0.31036752", "0.162208"),
    ("asia-east1", "g2-standard-4"): _p("0.818441088", "0.386852"),
    ("asia-east1", "g2-standard-8"): _p("0.988411576", "0.467204"),
    ("asia-east1", "g2-standard-12"): _p("1.158382064", "0.547556"),
    ("asia-east1", "g2-standard-16"): _p("1.328352552", "0.627908"),
    ("asia-east1", "g2-standard-24"): _p("2.316764128", "1.095112"),
    ("asia-east1", "g2-standard-32"): _p("2.008234504", "0.949316"),
    ("asia-east1", "g2-standard-48"): _p("4.633528256", "2.190224"),
    ("asia-east1", "g2-standard-96"): _p("9.267056512", "4.380448"),
    ("asia-east1", "n1-standard-4"): _p("0.219998", "0.04304"),
    ("asia-east1", "n1-standard-8"): _p("0.439996", "0.08608"),
    ("asia-east1", "n1-standard-16"): _p("0.879992", "0.17216"),
    ("europe-west1", "a3-highgpu-1g"): _p("12.1712308248219", "4.75827460273973"),
    ("europe-west1", "a3-highgpu-2g"): _p("24.3424616496438", "9.51654920547945"),
    ("europe-west1", "a3-highgpu-4g"): _p("48.6849232992877", "19.0330984109589"),
    ("europe-west1", "a3-highgpu-8g"): _p("97.3698465985753", "38.0661968219178"),
    ("europe-west1", "e2-standard-2"): _p("0.07371546", "0.035704"),
    ("europe-west1", "e2-standard-4"): _p("0.14743092", "0.071408"),
    ("europe-west1", "e2-standard-8"): _p("0.29486184", "0.142816"),
    ("europe-west1", "g2-standard-4"): _p("0.778293004", "0.357456"),
    ("europe-west1", "g2-standard-8"): _p("0.939925708", "0.431712"),
    ("europe-west1", "g2-standard-12"): _p("1.101558412", "0.505968"),
    ("europe-west1", "g2-standard-16"): _p("1.263191116", "0.580224"),
    ("europe-west1", "g2-standard-24"): _p("2.203116824", "1.011936"),
    ("europe-west1", "g2-standard-32"): _p("1.909721932", "0.877248"),
    ("europe-west1", "g2-standard-48"): _p("4.406233648", "2.023872"),
    ("europe-west1", "g2-standard-96"): _p("8.812467296", "4.047744"),
    ("europe-west1", "n1-standard-4"): _p("0.209007", "0.08716"),
    ("europe-west1", "n1-standard-8"): _p("0.418014", "0.17432"),
    ("europe-west1", "n1-standard-16"): _p("0.836028", "0.34864"),
    ("europe-west4", "a2-highgpu-1g"): _p("3.747972", "1.692835"),
    ("europe-west4", "a2-highgpu-2g"): _p("7.495944", "3.38567"),
    ("europe-west4", "a2-highgpu-4g"): _p("14.991888", "6.77134"),
    ("europe-west4", "a2-highgpu-8g"): _p("29.983776", "13.54268"),
    ("europe-west4", "a2-megagpu-16g"): _p("56.62656", "25.57624"),
    ("europe-west4", "a2-ultragpu-1g"): _p("5.58091847945206", "2.94520671232877"),
    ("europe-west4", "a2-ultragpu-2g"): _p("11.1618369589041", "5.89041342465753"),
    ("europe-west4", "a2-ultragpu-4g"): _p("22.3236739178082", "11.7808268493151"),
    ("europe-west4", "a2-ultragpu-8g"): _p("44.6473478356164", "23.5616536986301"),
    ("europe-west4", "a3-highgpu-1g"): _p("14.0675598969041", "5.51484742465753"),
    ("europe-west4", "a3-highgpu-2g"): _p("28.1351197938082", "11.0296948493151"),
    ("europe-west4", "a3-highgpu-4g"): _p("56.2702395876164", "22.0593896986301"),
    ("europe-west4", "a3-highgpu-8g"): _p("112.540479175233", "44.1187793972603"),
    ("europe-west4", "e2-standard-2"): _p("0.07377204", "0.035264"),
    ("europe-west4", "e2-standard-4"): _p("0.14754408", "0.070528"),
    ("europe-west4", "e2-standard-8"): _p("0.29508816", "0.141056"),
    ("europe-west4", "g2-standard-4"): _p("0.742916046", "0.38986"),
    ("europe-west4", "g2-standard-8"): _p("0.897201806", "0.47082"),
    ("europe-west4", "g2-standard-12"): _p("1.051487566", "0.55178"),
    ("europe-west4", "g2-standard-16"): _p("1.205773326", "0.63274"),
    ("europe-west4", "g2-standard-24"): _p("2.102975132", "1.10356"),
    ("europe-west4", "g2-standard-32"): _p("1.822916366", "0.95658"),
    ("europe-west4", "g2-standard-48"): _p("4.205950264", "2.20712"),
    ("europe-west4", "g2-standard-96"): _p("8.411900528", "4.41424"),
    ("europe-west4", "n1-standard-4"): _p("0.209168", "0.12153"),
    ("europe-west4", "n1-standard-8"): _p("0.418336", "0.24306"),
    ("europe-west4", "n1-standard-16"): _p("0.836672", "0.48612"),
    ("us-central1", "a2-highgpu-1g"): _p("3.673385", "1.92802"),
    ("us-central1", "a2-highgpu-2g"): _p("7.34677", "3.85604"),
    ("us-central1", "a2-highgpu-4g"): _p("14.69354", "7.71208"),
    ("us-central1", "a2-highgpu-8g"): _p("29.38708", "15.42416"),
    ("us-central1", "a2-megagpu-16g"): _p("55.739504", "29.25568"),
    ("us-central1", "a2-ultragpu-1g"): _p("5.06879789041096", "2.75954630136986"),
    ("us-central1", "a2-ultragpu-2g"): _p("10.1375957808219", "5.51909260273973"),
    ("us-central1", "a2-ultragpu-4g"): _p("20.2751915616438", "11.0381852054795"),
    ("us-central1", "a2-ultragpu-8g"): _p("40.5503831232877", "22.0763704109589"),
    ("us-central1", "a3-highgpu-1g"): _p("11.0612499878219", "6.32619260273973"),
    ("us-central1", "a3-highgpu-2g"): _p("22.1224999756438", "12.6523852054795"),
    ("us-central1", "a3-highgpu-4g"): _p("44.2449999512877", "25.3047704109589"),
    ("us-central1", "a3-highgpu-8g"): _p("88.4899999025753", "50.6095408219178"),
    ("us-central1", "e2-standard-2"): _p("0.06701142", "0.040212"),
    ("us-central1", "e2-standard-4"): _p("0.13402284", "0.080424"),
    ("us-central1", "e2-standard-8"): _p("0.26804568", "0.160848"),
    ("us-central1", "g2-standard-4"): _p("0.706832255", "0.397336"),
    ("us-central1", "g2-standard-8"): _p("0.853624271", "0.479872"),
    ("us-central1", "g2-standard-12"): _p("1.000416287", "0.562408"),
    ("us-central1", "g2-standard-16"): _p("1.147208303", "0.644944"),
    ("us-central1", "g2-standard-24"): _p("2.000832574", "1.124816"),
    ("us-central1", "g2-standard-32"): _p("1.734376367", "0.975088"),
    ("us-central1", "g2-standard-48"): _p("4.001665148", "2.249632"),
    ("us-central1", "g2-standard-96"): _p("8.003330296", "4.499264"),
    ("us-central1", "n1-standard-4"): _p("0.189999", "0.06701"),
    ("us-central1", "n1-standard-8"): _p("0.379998", "0.13402"),
    ("us-central1", "n1-standard-16"): _p("0.759996", "0.26804"),
    ("us-east1", "a2-highgpu-1g"): _p("3.673385", "1.92802"),
    ("us-east1", "a2-highgpu-2g"): _p("7.34677", "3.85604"),
    ("us-east1", "a2-highgpu-4g"): _p("14.69354", "7.71208"),
    ("us-east1", "a2-highgpu-8g"): _p("29.38708", "15.42416"),
    ("us-east1", "e2-standard-2"): _p("0.06701142", "0.040212"),
    ("us-east1", "e2-standard-4"): _p("0.13402284", "0.080424"),
    ("us-east1", "e2-standard-8"): _p("0.26804568", "0.160848"),
    ("us-east1", "g2-standard-4"): _p("0.706832255", "0.397336"),
    ("us-east1", "g2-standard-8"): _p("0.853624271", "0.479872"),
    ("us-east1", "g2-standard-12"): _p("1.000416287", "0.562408"),
    ("us-east1", "g2-standard-16"): _p("1.147208303", "0.644944"),
    ("us-east1", "g2-standard-24"): _p("2.000832574", "1.124816"),
    ("us-east1", "g2-standard-32"): _p("1.734376367", "0.975088"),
    ("us-east1", "g2-standard-48"): _p("4.001665148", "2.249632"),
    ("us-east1", "g2-standard-96"): _p("8.003330296", "4.499264"),
    ("us-east1", "n1-standard-4"): _p("0.189999", "0.06701"),
    ("us-east1", "n1-standard-8"): _p("0.379998", "0.13402"),
    ("us-east1", "n1-standard-16"): _p("0.759996", "0.26804"),
    ("us-east4", "a2-ultragpu-1g"): _p("5.70773247945206", "2.36725328767123"),
    ("us-east4", "a2-ultragpu-2g"): _p("11.4154649589041", "4.73450657534247"),
    ("us-east4", "a2-ultragpu-4g"): _p("22.8309299178082", "9.46901315068493"),
    ("us-east4", "a2-ultragpu-8g"): _p("45.6618598356164", "18.9380263013699"),
    ("us-east4", "a3-highgpu-1g"): _p("11.0694695189041", "4.54010457534247"),
    ("us-east4", "a3-highgpu-2g"): _p("22.1389390378082", "9.08020915068493"),
    ("us-east4", "a3-highgpu-4g"): _p("44.2778780756164", "18.1604183013699"),
    ("us-east4", "a3-highgpu-8g"): _p("88.5557561512329", "36.3208366027397"),
    ("us-east4", "e2-standard-2"): _p("0.07547082", "0.04138"),
    ("us-east4", "e2-standard-4"): _p("0.15094164", "0.08276"),
    ("us-east4", "e2-standard-8"): _p("0.30188328", "0.16552"),
    ("us-east4", "g2-standard-4"): _p("0.704517808", "0.310596"),
    ("us-east4", "g2-standard-8"): _p("0.850829156", "0.375092"),
    ("us-east4", "g2-standard-12"): _p("0.997140504", "0.439588"),
    ("us-east4", "g2-standard-16"): _p("1.143451852", "0.504084"),
    ("us-east4", "g2-standard-24"): _p("1.994281008", "0.879176"),
    ("us-east4", "g2-standard-32"): _p("1.728697244", "0.762068"),
    ("us-east4", "g2-standard-48"): _p("3.988562016", "1.758352"),
    ("us-east4", "g2-standard-96"): _p("7.977124032", "3.516704"),
    ("us-east4", "n1-standard-4"): _p("0.213985", "0.054755"),
    ("us-east4", "n1-standard-8"): _p("0.42797", "0.10951"),
    ("us-east4", "n1-standard-16"): _p("0.85594", "0.21902"),
    ("us-west1", "a2-highgpu-1g"): _p("3.673385", "1.92802"),
    ("us-west1", "a2-highgpu-2g"): _p("7.34677", "3.85604"),
    ("us-west1", "a2-highgpu-4g"): _p("14.69354", "7.71208"),
    ("us-west1", "a2-highgpu-8g"): _p("29.38708", "15.42416"),
    ("us-west1", "a3-highgpu-1g"): _p("11.0612499878219", "6.32619260273973"),
    ("us-west1", "a3-highgpu-2g"): _p("22.1224999756438", "12.6523852054795"),
    ("us-west1", "a3-highgpu-4g"): _p("44.2449999512877", "25.3047704109589"),
    ("us-west1", "a3-highgpu-8g"): _p("88.4899999025753", "50.6095408219178"),
    ("us-west1", "e2-standard-2"): _p("0.06701142", "0.040212"),
    ("us-west1", "e2-standard-4"): _p("0.13402284", "0.080424"),
    ("us-west1", "e2-standard-8"): _p("0.26804568", "0.160848"),
    ("us-west1", "g2-standard-4"): _p("0.706832255", "0.397336"),
    ("us-west1", "g2-standard-8"): _p("0.853624271", "0.479872"),
    ("us-west1", "g2-standard-12"): _p("1.000416287", "0.562408"),
    ("us-west1", "g2-standard-16"): _p("1.147208303", "0.644944"),
    ("us-west1", "g2-standard-24"): _p("2.000832574", "1.124816"),
    ("us-west1", "g2-standard-32"): _p("1.734376367", "0.975088"),
    ("us-west1", "g2-standard-48"): _p("4.001665148", "2.249632"),
    ("us-west1", "g2-standard-96"): _p("8.003330296", "4.499264"),
    ("us-west1", "n1-standard-4"): _p("0.189999", "0.06701"),
    ("us-west1", "n1-standard-8"): _p("0.379998", "0.13402"),
    ("us-west1", "n1-standard-16"): _p("0.759996", "0.26804"),
}

# GPUs attached to N1, per GPU-hour (an n1-standard-4 with one T4 costs its GCP_MACHINE_HOURLY row plus one T4 row):
# skypilot-org/skypilot-catalog catalogs/v8/gcp/vms.csv at 006059e, the count-1 accelerator rows (its 2- and 4-GPU
# rows are exact multiples). The stored copy is undated and the repository (1.7 GB) cannot be fetched to date it; its
# us-central1 Spot for a2-highgpu-1g (VM 0.36975 + A100 1.4341 = 1.80385) equals Cyclenerd's weekly files from
# 2026-02-05 to 2026-06-04 and no other week (2026-01-29: 1.659445; 2026-06-11: 1.83635), so it was made between
# 2026-01-29 and 2026-06-11, and is dated by the earlier bound.
GCP_N1_GPU_HOURLY: dict[tuple[str, str], Price] = {
    ("asia-east1", "nvidia-tesla-p100"): _p("1.6", "0.144"),
    ("asia-east1", "nvidia-tesla-t4"): _p("0.35", "0.1383"),
    ("asia-east1", "nvidia-tesla-v100"): _p("2.48", "0.6356"),
    ("europe-west1", "nvidia-tesla-p100"): _p("1.6", "0.2816"),
    ("europe-west1", "nvidia-tesla-t4"): _p("0.35", "0.14"),
    ("europe-west4", "nvidia-tesla-p100"): _p("1.533", "0.2341"),
    ("europe-west4", "nvidia-tesla-p4"): _p("0.63", "0.132"),
    ("europe-west4", "nvidia-tesla-t4"): _p("0.3675", "0.175"),
    ("europe-west4", "nvidia-tesla-v100"): _p("2.604", "1.0443"),
    ("us-central1", "nvidia-tesla-p100"): _p("1.46", "0.7034"),
    ("us-central1", "nvidia-tesla-p4"): _p("0.6", "0.2236"),
    ("us-central1", "nvidia-tesla-t4"): _p("0.35", "0.175"),
    ("us-central1", "nvidia-tesla-v100"): _p("2.48", "1.0885"),
    ("us-east1", "nvidia-tesla-p100"): _p("1.46", "0.7034"),
    ("us-east1", "nvidia-tesla-t4"): _p("0.35", "0.175"),
    ("us-east1", "nvidia-tesla-v100"): _p("2.48", "1.0885"),
    ("us-east4", "nvidia-tesla-p4"): _p("0.6", "0.1734"),
    ("us-east4", "nvidia-tesla-t4"): _p("0.37", "0.1644"),
    ("us-west1", "nvidia-tesla-p100"): _p("1.46", "0.7034"),
    ("us-west1", "nvidia-tesla-t4"): _p("0.35", "0.175"),
    ("us-west1", "nvidia-tesla-v100"): _p("2.48", "1.0885"),
}

# Cloud Storage, Standard class in a region, per GB-month: the same pricing.yml (storage.bucket.standard).
GCS_STANDARD_GB_MONTH: dict[str, Decimal] = {
    "asia-east1": Decimal("0.02"),
    "europe-west1": Decimal("0.02"),
    "europe-west4": Decimal("0.02"),
    "us-central1": Decimal("0.02"),
    "us-east1": Decimal("0.02"),
    "us-east4": Decimal("0.023"),
    "us-west1": Decimal("0.02"),
}

# GKE cluster management fee, per cluster-hour, and its free tier: "A flat cluster management fee of $0.10 per
# cluster per hour (charged in 1 second increments) applies to all GKE clusters"; "The GKE free tier provides $74.40
# in monthly credits per billing account, which is equivalent to one free Autopilot or zonal Standard cluster per
# month. Free tier credits are only applied to zonal and Autopilot clusters" (cloud.google.com/kubernetes-engine/
# pricing, stored copy, undated, read 2026-12-07). A regional cluster pays the fee from its first hour.
GKE_CLUSTER_FEE_HOURLY = Decimal("0.10")
GKE_FREE_TIER_MONTHLY_CREDIT = Decimal("74.40")

# Forwarding rules (a LoadBalancer Service's frontend), per hour: "First 5 forwarding rules $0.025 Per Hour; Per
# additional forwarding rule $0.01 Per Hour" (cloud.google.com/load-balancing/pricing, stored copy, undated, read
# 2026-12-07). Data processed by the load balancer is billed on top and not priced here.
GCP_FORWARDING_RULE_HOURLY = Decimal("0.025")
GCP_FORWARDING_RULE_EXTRA_HOURLY = Decimal("0.01")

# Artifact Registry storage, per GB-month: "Up to 0.5 GB Free; Over 0.5 GB $0.10", the same in regional and
# multi-regional repositories, the free 0.5 GB per billing account (cloud.google.com/artifact-registry/pricing,
# stored copies, undated, read 2026-12-07).
ARTIFACT_REGISTRY_GB_MONTH = Decimal("0.10")
ARTIFACT_REGISTRY_FREE_GB = Decimal("0.5")

# --- Azure -------------------------------------------------------------------------------------------------------

# Azure VMs (Linux), per hour: the Azure Retail Prices API's records (serviceName 'Virtual Machines', priceType
# 'Consumption') as andy-diericks/azure-pricing-radar stores them, data/latest/vm-*.json at cf741f2 (commit
# 2026-08-22; last-checked.json "2026-08-22T20:59:40Z"). Spot: the "<size> Spot" meter; Low Priority meters and
# Windows products left out. The radar keeps the meter's skuName, not armSkuName: ND96asr_v4's is "ND96asr_A100_v4"
# (a second meter, "ND96asrA100v4_NU", has the same prices). It tracks five regions only; no dated source was found
# for eastus, eastus2, westus2, southcentralus, uksouth or any other region (UNKNOWN), so they answer None.
AZURE_VM_HOURLY: dict[tuple[str, str], Price] = {
    ("belgiumcentral", "Standard_D2s_v5"): _p("0.115", "0.021252"),
    ("belgiumcentral", "Standard_D4s_v5"): _p("0.23", "0.042504"),
    ("belgiumcentral", "Standard_D8s_v5"): _p("0.46", "0.085008"),
    ("francecentral", "Standard_D2s_v5"): _p("0.112", "0.020698"),
    ("francecentral", "Standard_D4s_v5"): _p("0.224", "0.041395"),
    ("francecentral", "Standard_D8s_v5"): _p("0.448", "0.08279"),
    ("francecentral", "Standard_NC16as_T4_v3"): _p("1.407", "0.40803"),
    ("francecentral", "Standard_NC24ads_A100_v4"): _p("4.591", "0.848417"),
    ("francecentral", "Standard_NC48ads_A100_v4"): _p("9.183", "1.697018"),
    ("francecentral", "Standard_NC4as_T4_v3"): _p("0.615", "0.17835"),
    ("francecentral", "Standard_NC64as_T4_v3"): _p("5.077", "1.47233"),
    ("francecentral", "Standard_NC8as_T4_v3"): _p("0.878", "0.25462"),
    ("francecentral", "Standard_NC96ads_A100_v4"): _p("18.365", "3.393852"),
    ("northeurope", "Standard_D2s_v5"): _p("0.107", "0.034197"),
    ("northeurope", "Standard_D4s_v5"): _p("0.214", "0.068394"),
    ("northeurope", "Standard_D8s_v5"): _p("0.428", "0.136789"),
    ("northeurope", "Standard_NC16as_T4_v3"): _p("1.342", "0.44796"),
    ("northeurope", "Standard_NC24ads_A100_v4"): _p("4.408", "0.814598"),
    ("northeurope", "Standard_NC40ads_H100_v5"): _p("8.376", "1.547885"),
    ("northeurope", "Standard_NC48ads_A100_v4"): _p("8.815", "1.629012"),
    ("northeurope", "Standard_NC4as_T4_v3"): _p("0.587", "0.195941"),
    ("northeurope", "Standard_NC64as_T4_v3"): _p("4.853", "1.619931"),
    ("northeurope", "Standard_NC80adis_H100_v5"): _p("16.752", "3.09577"),
    ("northeurope", "Standard_NC8as_T4_v3"): _p("0.838", "0.279724"),
    ("northeurope", "Standard_NC96ads_A100_v4"): _p("17.63", "3.258024"),
    ("swedencentral", "Standard_D2s_v5"): _p("0.102", "0.01885"),
    ("swedencentral", "Standard_D4s_v5"): _p("0.204", "0.037699"),
    ("swedencentral", "Standard_D8s_v5"): _p("0.408", "0.075398"),
    ("swedencentral", "Standard_NC16as_T4_v3"): _p("1.276", "0.37004"),
    ("swedencentral", "Standard_NC24ads_A100_v4"): _p("4.775", "1.464492"),
    ("swedencentral", "Standard_NC40ads_H100_v5"): _p("9.074", "2.675923"),
    ("swedencentral", "Standard_NC48ads_A100_v4"): _p("9.55", "2.928985"),
    ("swedencentral", "Standard_NC4as_T4_v3"): _p("0.558", "0.16182"),
    ("swedencentral", "Standard_NC64as_T4_v3"): _p("4.603", "1.33487"),
    ("swedencentral", "Standard_NC80adis_H100_v5"): _p("18.148", "5.351845"),
    ("swedencentral", "Standard_NC8as_T4_v3"): _p("0.796", "0.23084"),
    ("swedencentral", "Standard_NC96ads_A100_v4"): _p("19.1", "5.85797"),
    ("swedencentral", "Standard_ND96isr_H100_v5"): _p("127.816", "23.620397"),
    ("westeurope", "Standard_D2s_v5"): _p("0.115", "0.021252"),
    ("westeurope", "Standard_D4s_v5"): _p("0.23", "0.042504"),
    ("westeurope", "Standard_D8s_v5"): _p("0.46", "0.085008"),
    ("westeurope", "Standard_NC16as_T4_v3"): _p("1.505", "1.045524"),
    ("westeurope", "Standard_NC24ads_A100_v4"): _p("4.775", "1.097295"),
    ("westeurope", "Standard_NC40ads_H100_v5"): _p("9.08", "5.23008"),
    ("westeurope", "Standard_NC48ads_A100_v4"): _p("9.55", "2.19459"),
    ("westeurope", "Standard_NC4as_T4_v3"): _p("0.658", "0.457113"),
    ("westeurope", "Standard_NC64as_T4_v3"): _p("5.44", "3.779168"),
    ("westeurope", "Standard_NC80adis_H100_v5"): _p("18.16", "10.46016"),
    ("westeurope", "Standard_NC8as_T4_v3"): _p("0.94", "0.653018"),
    ("westeurope", "Standard_NC96ads_A100_v4"): _p("19.1", "4.38918"),
    ("westeurope", "Standard_ND96asr_v4"): _p("35.357", "7.77854"),
    ("westeurope", "Standard_ND96isr_H100_v5"): _p("127.816", "23.620397"),
}

# Azure Files, standard (transaction optimized) LRS, per GB-month: the radar's storage-*.json, product "Files v2",
# sku "Standard LRS", meter "LRS Data Stored" (the older "Files" product lists the same). AKS's azurefile-csi class
# "Uses Azure Standard storage to create an Azure file share" (MicrosoftDocs/azure-aks-docs concepts-storage.md).
AZURE_FILES_STANDARD_LRS_GB_MONTH: dict[str, Decimal] = {
    "belgiumcentral": Decimal("0.0577"),
    "francecentral": Decimal("0.075"),
    "northeurope": Decimal("0.06"),
    "swedencentral": Decimal("0.06"),
    "westeurope": Decimal("0.06"),
}

# AKS cluster management on the Free tier (the default): "The cluster management is free, but charged for VM,
# storage, and networking usage" (learn.microsoft.com, ManagedClusterSkuTier, Azure SDK reference, read 2026-12-07).
AKS_FREE_TIER_HOURLY = Decimal(0)

# Asked for and not found in a source that could be read and dated: these stay unpriced rather than guessed.
UNKNOWN: tuple[str, ...] = (
    "Azure VMs outside belgiumcentral, francecentral, northeurope, swedencentral and westeurope (eastus among them)",
    "AKS Standard tier, per cluster-hour",
    "Azure Standard Load Balancer, per hour and per rule",
    "ACR Basic registry, per day",
)

# --- Lookups -----------------------------------------------------------------------------------------------------


def price(table: Mapping[tuple[str, str], Price], region: str, machine: str) -> Price | None:
    """``table``'s Price of ``machine`` (a GCP machine type in GCP_MACHINE_HOURLY, an Azure VM size in
    AZURE_VM_HOURLY) in ``region``; None if not held."""
    return table.get((region, machine))


def hourly(table: Mapping[tuple[str, str], Price], region: str, machine: str, spot: bool = False) -> Decimal | None:
    """USD per hour of one node of ``machine`` in ``region``, on demand or as Spot; None when the table has no figure.

    On GCP an N1 price is the VM without its GPUs (add gpu_hourly per GPU); A2, A3 and G2 include theirs.
    """
    found = price(table, region, machine)
    if found is None:
        return None
    return found.spot if spot else found.on_demand


def gpu_hourly(region: str, gpu_type: str, spot: bool = False) -> Decimal | None:
    """USD per hour of one GPU attached to an N1 machine on GCP; None for a pairing not held.

    Only N1 bills its GPUs apart; Azure sizes and GCP's A2, A3 and G2 machines include them (hourly).
    """
    found = GCP_N1_GPU_HOURLY.get((region, gpu_type))
    if found is None:
        return None
    return found.spot if spot else found.on_demand
