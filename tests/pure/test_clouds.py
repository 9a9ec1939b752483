"""Each cloud's facts in its own module, every cloud providing what generic code asks of one, and no generic code
that asks which cloud it is on.

A new cloud is its module in mlstack/clouds/ (its facts and its own rules, ending with its ``CLOUD``), its
component and its wiring: these tests hold the first part. The import rules between the clouds' modules and the
generic ones are tests/pure/test_layers.py's.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from datetime import date
from pathlib import Path

import pytest
import yaml

from mlstack import capacity, catalogue, monitoring
from mlstack.clouds import CLOUDS, Cloud
from tools import harness

ROOT = Path(__file__).resolve().parents[2]
# A cloud named in an identifier: the cloud, its Kubernetes service, its registry or its store.
CLOUD_WORDS = frozenset({"azure", "aks", "acr", "gcp", "gke", "gcs"})
# Generic modules that name a cloud in an identifier, each for a reason that is not a question about the cloud:
EXCEPTIONS: dict[str, set[str]] = {
    # The collectors' own object kinds (Azure Monitor managed Prometheus reads azmonitoring.coreos.com
    # PodMonitors), chosen by ScrapeBy, the collector, never by the cloud (a cloud says its collector:
    # Cloud.scrape_by).
    "mlstack/monitoring.py": {"AZURE_API_VERSION", "AZURE_KIND", "AZURE_LABEL_LIMITS"},
    # The dated price list: every cloud's rows in one table, so that one read date (PRICES_READ) and one
    # freshness window date them all; each cloud's estimate reads its own rows by name.
    "mlstack/prices.py": {
        "GCP_MACHINE_HOURLY", "GCP_N1_GPU_HOURLY", "GCS_STANDARD_GB_MONTH", "GKE_CLUSTER_FEE_HOURLY",
        "GKE_FREE_TIER_MONTHLY_CREDIT", "GCP_FORWARDING_RULE_HOURLY", "GCP_FORWARDING_RULE_EXTRA_HOURLY",
        "AZURE_VM_HOURLY", "AZURE_FILES_STANDARD_LRS_GB_MONTH", "AKS_FREE_TIER_HOURLY",
    },
}  # fmt: skip


def generic_modules() -> list[Path]:
    """mlstack's modules that are no cloud's: everything outside mlstack/clouds/."""
    return sorted(p for p in (ROOT / "mlstack").glob("*.py"))


def _words(identifier: str) -> set[str]:
    """The words of a snake_case, UPPER_CASE or CamelCase identifier, lower-cased."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", identifier)
    return {word.lower() for word in spaced.split("_") if word}


def _identifiers(tree: ast.AST) -> set[str]:
    """Every name a module defines, assigns, reads, imports or takes as an argument or attribute."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            found.add(node.arg)
        elif isinstance(node, ast.alias):
            found.update((node.asname or node.name).split("."))
    return found


# --- generic code does not ask which cloud it is on -------------------------------------------------------


@pytest.mark.parametrize("path", generic_modules(), ids=lambda p: p.name)
def test_a_generic_module_names_no_cloud(path: Path) -> None:
    """No identifier of a generic module names a cloud (its facts and rules are the cloud's module's), and no
    string in it is a cloud's mlstack:cloud value (``cloud == "gcp"``, ``{"azure": ...}``): it is handed a
    ``Cloud`` and reads what it needs of it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    allowed = EXCEPTIONS.get(path.relative_to(ROOT).as_posix(), set())
    named = sorted(i for i in _identifiers(tree) - allowed if _words(i) & CLOUD_WORDS)
    assert named == [], f"{path.name} names a cloud: {named}; move it to that cloud's module in mlstack/clouds/"
    values = sorted(
        {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)} & set(CLOUDS)
    )
    assert values == [], f"{path.name} compares or keys by a cloud's name {values}: read the cloud's Cloud instead"


def test_every_exception_is_still_there() -> None:
    """An exception the code no longer needs is removed, not kept in case."""
    for name, allowed in EXCEPTIONS.items():
        identifiers = _identifiers(ast.parse((ROOT / name).read_text(encoding="utf-8")))
        assert allowed <= identifiers, f"{name}: {sorted(allowed - identifiers)} are gone; drop them from EXCEPTIONS"


# --- every cloud provides what generic code asks of one ---------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_each_cloud_is_its_own_module_and_registered_by_its_config_value(name: str) -> None:
    module = importlib.import_module(f"mlstack.clouds.{name}")
    assert module.CLOUD is CLOUDS[name], f"mlstack/clouds/{name}.py's CLOUD is not the one registered as {name}"
    assert CLOUDS[name].name == name


def test_the_registered_clouds_are_the_ones_the_stacks_may_name() -> None:
    """The config takes mlstack:cloud from the registry (stack/config.py), and Pulumi.yaml says which they are."""
    described = harness.project_declarations()["mlstack:cloud"]["description"]
    assert all(re.search(rf"\b{name}\b", described) for name in CLOUDS), described
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        settings = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("config") or {}
        assert settings.get("mlstack:cloud", "local") in CLOUDS, path.name


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_each_cloud_provides_every_field(name: str) -> None:
    """Every field of ``Cloud`` holds a value of its kind, and the values agree with each other."""
    cloud = CLOUDS[name]
    for field in dataclasses.fields(Cloud):
        assert hasattr(cloud, field.name), field.name
    assert cloud.service, name
    assert re.fullmatch(r"[0-9]+\.[0-9]+", cloud.default_minor), cloud.default_minor
    assert cloud.scrape_by, f"{name}: no collector says how its cluster is scraped"
    assert set(cloud.scrape_by) <= set(monitoring.SCRAPE_BY), cloud.scrape_by
    assert isinstance(cloud.storage_class("some-class"), list)
    if cloud.kubernetes_minors:  # dated minors: the default is one of them, and the extended support is said
        assert cloud.default_minor in {m.minor for m in cloud.kubernetes_minors}, name
        until = cloud.kubernetes_minors[0].extended_until
        assert cloud.default_minor in cloud.offered_minors(cloud.kubernetes_minors[0].new_clusters_until)
        note = cloud.extended_support.format(minor="1.30", until=until.isoformat())
        assert "1.30" in note, f"{name}: extended_support names no {{minor}}"
        assert until.isoformat() in note, f"{name}: extended_support names no {{until}}"
    else:
        assert cloud.extended_support == "", name
        assert cloud.offered_minors(date(2026, 1, 1)) == []


@pytest.mark.parametrize("name", [n for n, c in sorted(CLOUDS.items()) if c.gpu_pool])
def test_a_cloud_with_a_gpu_pool_says_what_its_nodes_hold(name: str) -> None:
    """Its pools' sizes are judged (mlstack.rules.node_capacity): the keys exist, the sizes are listed where it
    says, and a size it knows offers pods less than the machine has."""
    cloud = CLOUDS[name]
    nodes = cloud.nodes
    assert nodes is not None, f"{name} trains on a GPU pool but gives the capacity check nothing to judge it by"
    # Every GPU machine in the catalogues is x86-64, and the images are built for it.
    assert cloud.image_platform == catalogue.CLOUD_IMAGE_PLATFORM
    declared = harness.project_declarations()
    assert f"mlstack:{nodes.system_key}" in declared
    assert f"mlstack:{nodes.gpu_key}" in declared
    assert (ROOT / nodes.sizes_listed_in).is_file(), nodes.sizes_listed_in
    for key in (nodes.system_key, nodes.gpu_key):
        size = declared[f"mlstack:{key}"]["default"]
        machine = (nodes.system_machine if key == nodes.system_key else nodes.gpu_machine)(size)
        assert machine is not None, f"{name}: the default {key} {size} is not a size it knows"
        offered = nodes.allocatable(machine)
        assert 0 < offered.cpu_m < machine.vcpus * 1000, (key, offered)
        assert 0 < offered.memory_mib < machine.memory_gib * capacity.MIB_PER_GIB, (key, offered)


@pytest.mark.parametrize("name", [n for n, c in sorted(CLOUDS.items()) if not c.gpu_pool])
def test_a_cloud_without_a_gpu_pool_judges_no_nodes(name: str) -> None:
    """Its nodes are the user's own (a local cluster): nothing to judge them by, and nothing refused."""
    assert CLOUDS[name].nodes is None
    assert CLOUDS[name].storage_class("standard") == []
