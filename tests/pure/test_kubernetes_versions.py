"""The Kubernetes versions each cloud offers a new cluster: the catalogue's dated table, the rule that
refuses a minor past its date, and the readers of the clouds' own answers.

The first tests run with today's date: when a date in the catalogue has passed, or is about to, they
fail in CI, before a user's `pulumi up` does.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import kubernetes_validate
import pytest
import yaml

from mlstack import catalogue, offered, rules
from mlstack.catalogue import KubernetesMinor
from mlstack.clouds import CLOUDS, azure, azure_api, gcp, local
from tools.harness import ROOT

# The clouds whose catalogue dates the minors a new cluster may get (a local cluster runs what it was made with).
DATED = tuple(name for name, cloud in CLOUDS.items() if cloud.kubernetes_minors)
# How long before a date the table must have moved on: a month to update it, well before users meet it.
MARGIN = timedelta(days=30)
# Every cloud offers at least this many minors for a new cluster at any time: AKS "supports three GA
# minor versions" (supported-kubernetes-versions.md); GKE's REGULAR channel has offered two to four
# ("Regular 1.34 to 1.36", release notes, August 2026). Fewer offered today means newer ones are missing.
MIN_OFFERED = 2
DAY = date(2026, 12, 7)  # the day the tables were last checked, for tests of the rules themselves


# --- the tables keep up: run with today's date -----------------------------------------


@pytest.mark.parametrize("cloud", DATED)
def test_the_default_minor_is_offered_today_and_for_a_month_more(cloud: str) -> None:
    """What a stack that pins nothing is checked and enforced as of offline must be one the cloud still gives."""
    minor = CLOUDS[cloud].default_minor
    entry = next(m for m in CLOUDS[cloud].kubernetes_minors if m.minor == minor)
    assert catalogue.today() + MARGIN <= entry.new_clusters_until, (
        f"{cloud}: the catalogue's default minor {minor} stops being offered on {entry.new_clusters_until}: "
        "move the default (AKS_DEFAULT_MINOR / GKE_DEFAULT_MINOR) to a newer minor the cloud offers, with its source"
    )


@pytest.mark.parametrize("cloud", DATED)
def test_the_catalogue_lists_enough_minors_still_offered_today(cloud: str) -> None:
    offered_today = CLOUDS[cloud].offered_minors(catalogue.today() + MARGIN)
    assert len(offered_today) >= MIN_OFFERED, (
        f"{cloud}: only {offered_today} offered by the catalogue a month from now: add the cloud's newer "
        "minors with their dates and sources (the cloud's module in mlstack/clouds/, Kubernetes versions)"
    )


@pytest.mark.parametrize("cloud", DATED)
def test_every_minor_offered_today_has_a_strict_schema(cloud: str) -> None:
    """The objects are validated against the version the stack runs: kubernetes-validate must know it."""
    known = set(kubernetes_validate.utils.all_versions())
    for minor in [*CLOUDS[cloud].offered_minors(catalogue.today()), local.LOCAL_DEFAULT_MINOR]:
        assert f"{minor}.0" in known, f"kubernetes-validate has no schema for {minor}: update requirements-dev.txt"


def test_no_shipped_stack_pins_a_version_that_ends_within_a_month() -> None:
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        settings = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
        pinned = settings.get("mlstack:kubernetesVersion")
        cloud = settings.get("mlstack:cloud", "local")
        if not pinned or cloud == "local":
            continue
        extended = settings.get("mlstack:gkeReleaseChannel") == gcp.GKE_EXTENDED_CHANNEL
        on = catalogue.today() + MARGIN
        assert rules.kubernetes_version(CLOUDS[cloud], str(pinned), on, extended=extended) == [], path.name


def test_the_driver_tables_were_checked_for_the_versions_the_stacks_run() -> None:
    """The trainer's CUDA build is judged against the driver each cloud installs, which moves with the node
    image: a default minor past what the GKE table was checked for, or the AKS line's end, fails here."""
    assert gcp.GKE_DEFAULT_MINOR in gcp.GCP_DRIVER_TABLE_MINORS, (
        f"GKE's default minor {gcp.GKE_DEFAULT_MINOR} runs a COS milestone the driver table "
        "(GCP_DRIVER_BRANCH) was not checked for: check DEFAULT and LATEST there, then extend GCP_DRIVER_TABLE_MINORS"
    )
    assert catalogue.today() + MARGIN <= azure.AKS_DRIVER_BRANCH_UNTIL, (
        "AKS's R580 driver line reaches its end: check which driver AKS installs now (Azure/AgentBaker "
        "parts/common/components.json) and update AKS_DRIVER_BRANCH"
    )


@pytest.mark.parametrize("cloud", DATED)
def test_each_table_is_ordered_and_its_dates_are_consistent(cloud: str) -> None:
    minors = CLOUDS[cloud].kubernetes_minors
    keys = [catalogue.minor_key(m.minor) for m in minors]
    assert keys == sorted(set(keys)), f"{cloud}: minors out of order or repeated"
    for older, newer in itertools.pairwise(minors):
        assert older.new_clusters_until <= newer.new_clusters_until, (cloud, older.minor, newer.minor)
    for m in minors:
        assert m.new_clusters_until < m.extended_until, (cloud, m.minor)


# --- the rule: refuses a minor past its date, by the catalogue ---------------------------


def reasons(cloud: str, value: str, on: date = DAY, *, extended: bool = False) -> list[str]:
    return [str(p) for p in rules.kubernetes_version(CLOUDS[cloud], value, on, extended=extended)]


def test_aks_1_33_is_refused_naming_the_key_the_date_and_what_is_offered() -> None:
    """The finding: the shipped AKS stack pinned 1.33, whose community support ended in July 2026."""
    (reason,) = reasons("azure", "1.33")
    assert reason.startswith("mlstack:kubernetesVersion = '1.33': AKS no longer creates clusters on Kubernetes 1.33")
    assert "ended on 2026-07-31" in reason
    assert "AKS offers 1.35, 1.36, 1.37 for a new cluster today (2026-12-07" in reason
    assert "leave kubernetesVersion empty" in reason
    assert "long-term support until 2027-07-31" in reason
    assert "Premium tier" in reason


def test_gke_1_33_is_refused_on_regular_and_pointed_at_the_extended_channel() -> None:
    """The finding: REGULAR with 1.33, whose standard support ended 2026-08-03."""
    (reason,) = reasons("gcp", "1.33")
    assert "ended on 2026-08-03" in reason
    assert "GKE offers 1.35, 1.36" in reason
    assert "EXTENDED channel still offers 1.33 until 2027-06-03" in reason
    assert reasons("gcp", "1.33", extended=True) == [], "the EXTENDED channel keeps 1.33 until mid-2027"


@pytest.mark.parametrize(
    ("cloud", "minor", "last_day"),
    [("azure", "1.35", date(2027, 3, 31)), ("gcp", "1.35", date(2027, 4, 11)), ("azure", "1.37", date(2027, 10, 31))],
)
def test_a_minor_is_offered_through_its_last_day_and_refused_the_day_after(
    cloud: str, minor: str, last_day: date
) -> None:
    assert reasons(cloud, minor, last_day) == []
    assert reasons(cloud, minor, last_day + timedelta(days=1)) != []


def test_past_extended_support_nothing_is_suggested_but_newer_minors() -> None:
    (reason,) = reasons("gcp", "1.30", extended=True)
    assert "before any date this catalogue lists" in reason
    assert "EXTENDED channel still offers" not in reason


@pytest.mark.parametrize("cloud", DATED)
def test_a_minor_newer_than_the_catalogue_is_left_to_the_clouds_own_list(cloud: str) -> None:
    newest = max(catalogue.minor_key(m.minor) for m in CLOUDS[cloud].kubernetes_minors)
    assert reasons(cloud, f"1.{newest[1] + 1}") == []


def test_empty_follows_the_cloud_and_a_local_cluster_is_not_judged() -> None:
    assert reasons("azure", "") == reasons("gcp", "") == reasons("local", "1.25") == []


def test_the_clouds_own_answer_judges_a_pinned_minor() -> None:
    (problem,) = rules.kubernetes_version_offered("1.35", ("1.37", "1.36"), "in AKS location eastus")
    assert str(problem) == (
        "mlstack:kubernetesVersion = '1.35': is not offered for a new cluster in AKS location eastus, which offers "
        "1.36, 1.37 (asked just now); set one of them, or leave kubernetesVersion empty to take the cloud's default"
    )
    assert rules.kubernetes_version_offered("1.36", ("1.36", "1.37"), "x") == []
    assert rules.kubernetes_version_offered("", (), "x") == []


# --- reading the clouds' answers --------------------------------------------------------


def aks_answer(*entries: dict[str, object]) -> dict[str, object]:
    return {"values": list(entries)}


def test_aks_answer_offers_ga_community_minors_and_names_the_default() -> None:
    """Shape: azure-rest-api-specs .../stable/2025-10-01/examples/KubernetesVersions_List.json."""
    answer = aks_answer(
        {"version": "1.34", "capabilities": {"supportPlan": ["AKSLongTermSupport"]}},  # LTS only
        {"version": "1.35", "capabilities": {"supportPlan": ["KubernetesOfficial", "AKSLongTermSupport"]}},
        {"version": "1.36", "isDefault": True, "capabilities": {"supportPlan": ["KubernetesOfficial"]}},
        {"version": "1.37", "capabilities": {"supportPlan": ["KubernetesOfficial"]}},
        {"version": "1.38", "isPreview": True, "capabilities": {"supportPlan": ["KubernetesOfficial"]}},
        {"version": 1.39},  # not a string: skipped, not trusted
    )
    found = azure_api.from_aks_answer(answer, "eastus")
    assert found == offered.OfferedVersions(("1.35", "1.36", "1.37"), "1.36", "in AKS location eastus")


@pytest.mark.parametrize("answer", [{}, {"value": []}, [], "x", {"values": "1.36"}])
def test_an_aks_answer_of_another_shape_is_an_error_not_an_empty_offer(answer: object) -> None:
    with pytest.raises(ValueError, match="without a list of values"):
        azure_api.from_aks_answer(answer, "eastus")


def test_gke_serverconfig_offers_valid_minors_up_to_the_channels_latest() -> None:
    config = gcp.GkeServerConfig(
        valid_master_versions=["1.37.1-gke.100", "1.36.4-gke.200", "1.35.8-gke.1036000"],
        channel_defaults={"REGULAR": "1.35.8-gke.1036000", "RAPID": "1.36.4-gke.200", "EXTENDED": "1.35.8-gke.1"},
        channel_latest={"REGULAR": "1.36.4-gke.200", "RAPID": "1.37.1-gke.100", "EXTENDED": "1.36.4-gke.200"},
    )
    regular = gcp.from_gke_server_config(config, "REGULAR", "us-central1-a", DAY)
    assert regular == offered.OfferedVersions(("1.35", "1.36"), "1.35", "in GKE's REGULAR channel at us-central1-a")
    assert gcp.from_gke_server_config(config, "RAPID", "us-central1-a", DAY).minors == ("1.35", "1.36", "1.37")
    # EXTENDED keeps minors past standard support, which validMasterVersions no longer lists.
    extended = gcp.from_gke_server_config(config, "EXTENDED", "us-central1-a", DAY).minors
    assert extended == ("1.32", "1.33", "1.34", "1.35", "1.36")


def test_the_catalogue_stands_in_for_the_answer_offline() -> None:
    found = offered.from_catalogue(azure.CLOUD, DAY, extended=False, where="in AKS location eastus")
    assert found.minors == ("1.35", "1.36", "1.37")
    assert found.default == azure.AKS_DEFAULT_MINOR


def test_minor_key_orders_numerically() -> None:
    assert sorted(["1.9", "1.10", "1.37"], key=catalogue.minor_key) == ["1.9", "1.10", "1.37"]
    assert offered.minor_of("1.35.8-gke.1036000") == "1.35"


def test_offered_until_is_the_standard_or_the_extended_end() -> None:
    minor = KubernetesMinor("1.36", date(2027, 6, 30), date(2028, 6, 30))
    assert catalogue.offered_until(minor, extended=False) == date(2027, 6, 30)
    assert catalogue.offered_until(minor, extended=True) == date(2028, 6, 30)
