"""tools/replacements.py: the table of input changes a provider answers with a replacement, each rule
naming a real input of its SDK and its source, and the matching of two input trees against it."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest

from tools import replacements

CLUSTER = "gcp:container/cluster:Cluster"
NODE_POOL = "gcp:container/nodePool:NodePool"
AGENT_POOL = "azure-native:containerservice:AgentPool"
MANAGED_CLUSTER = "azure-native:containerservice:ManagedCluster"
SDKS = {"gcp": "pulumi_gcp", "azure-native": "pulumi_azure_native", "random": "pulumi_random", "tls": "pulumi_tls"}


def _snake(name: str) -> str:
    """The SDK's Python name of a wire name: ``nodePublicIPTags`` -> ``node_public_ip_tags``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _args_class(type_: str) -> tuple[Any, type]:
    package, module, kind = type_.split(":")
    top = module.split("/")[0]
    sdk = importlib.import_module(SDKS[package] + ("" if top == "index" else f".{top}"))
    return sdk, getattr(sdk, f"{kind}Args")


def _declares(sdk: Any, args: type, keys: tuple[str, ...]) -> bool:
    """Whether the Args class declares the path, following each nested Args type its property names."""
    current: type | None = args
    for key in keys:
        if current is None:
            return True  # a map or a list of plain values: the rest of the path is data
        prop = getattr(current, _snake(key), None)
        if not isinstance(prop, property) or prop.fget is None:
            return False
        nested = re.findall(r"'(\w+Args)'", str(prop.fget.__annotations__.get("return", "")))
        current = getattr(importlib.import_module(f"{sdk.__name__}._inputs"), nested[0]) if nested else None
    return True


CLOUD_RULES = [
    (type_, rule) for type_, rules in replacements.REPLACE_ON_CHANGE.items() for rule in rules
    if not type_.startswith("kubernetes:")
]  # fmt: skip


@pytest.mark.parametrize(("type_", "rule"), CLOUD_RULES, ids=[f"{t}:{r.path}" for t, r in CLOUD_RULES])
def test_every_rule_names_an_input_its_sdk_declares(type_: str, rule: replacements.Rule) -> None:
    """A misspelt path (``guestAccelerator`` for pulumi-gcp's ``guestAccelerators``) would never trip."""
    sdk, args = _args_class(type_)
    assert _declares(sdk, args, rule.keys), f"{type_}: {args.__name__} has no input {rule.path}"


def test_every_rule_cites_the_provider_source_it_was_read_from() -> None:
    for type_, rules in replacements.REPLACE_ON_CHANGE.items():
        for rule in rules:
            assert re.search(r"\w+/[\w-]+ \S+\.go", rule.source), (
                f"{type_} {rule.path}: no source file in {rule.source!r}"
            )
    assert replacements.rules_for("kubernetes:core/v1:Namespace") == replacements.KUBERNETES_ANY


def test_enabling_dataplane_v2_replaces_the_gke_cluster() -> None:
    """The change the render used to hide: GKE's datapath is fixed at creation."""
    before = {"location": "us-central1-a", "releaseChannel": {"channel": "REGULAR"}}
    after = {**before, "datapathProvider": "ADVANCED_DATAPATH"}
    (found,) = replacements.forced(CLUSTER, before, after)
    assert found.rule.path == "datapathProvider"
    assert "resource_container_cluster.go" in found.rule.source
    assert found.describe() == "datapathProvider changed: (unset) -> ADVANCED_DATAPATH"


def test_a_release_channel_or_workload_pool_change_updates_the_cluster_in_place() -> None:
    before = {"releaseChannel": {"channel": "REGULAR"}, "workloadIdentityConfig": {"workloadPool": "a.svc.id.goog"}}
    after = {"releaseChannel": {"channel": "STABLE"}, "workloadIdentityConfig": {"workloadPool": "b.svc.id.goog"}}
    assert replacements.forced(CLUSTER, before, after) == []


def _pool(gpu: str, machine: str = "n1-standard-4", high: int = 1, spot: bool = True) -> dict[str, Any]:
    return {
        "autoscaling": {"totalMinNodeCount": 0, "totalMaxNodeCount": high},
        "nodeConfig": {
            "machineType": machine,
            "spot": spot,
            "guestAccelerators": [
                {"count": 1, "type": gpu, "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"}}
            ],
            "taints": [{"effect": "NO_SCHEDULE", "key": "nvidia.com/gpu", "value": "present"}],
        },
    }


def test_another_gpu_type_replaces_the_node_pool_through_its_list_of_accelerators() -> None:
    (found,) = replacements.forced(NODE_POOL, _pool("nvidia-tesla-t4"), _pool("nvidia-l4", "g2-standard-4", 3))
    assert found.rule.path == "nodeConfig.guestAccelerators"
    assert found.describe() == "nodeConfig.guestAccelerators[0].type changed: nvidia-tesla-t4 -> nvidia-l4"


def test_machine_type_node_bounds_and_taints_update_a_node_pool_in_place() -> None:
    """terraform-provider-google has updated machine_type in place since v5.10.0 (GKE re-creates the
    nodes); bounds and taints were always updates."""
    before = _pool("nvidia-tesla-t4")
    after = _pool("nvidia-tesla-t4", "n1-standard-8", 3)
    after["nodeConfig"]["taints"] = []
    assert replacements.forced(NODE_POOL, before, after) == []


def test_spot_replaces_a_gke_pool_but_azure_has_only_the_rules_its_provider_lists() -> None:
    (spot,) = replacements.forced(NODE_POOL, _pool("nvidia-tesla-t4"), _pool("nvidia-tesla-t4", spot=False))
    assert spot.rule.path == "nodeConfig.spot"
    aks = {"vmSize": "Standard_NC4as_T4_v3", "scaleSetPriority": "Spot", "maxCount": 1}
    (size,) = replacements.forced(AGENT_POOL, aks, {**aks, "vmSize": "Standard_NC8as_T4_v3"})
    assert size.rule.path == "vmSize"
    assert "replacement.go" in size.rule.source
    assert replacements.forced(AGENT_POOL, aks, {**aks, "maxCount": 3}) == []


def test_only_the_network_profile_fields_aks_cannot_change_replace_the_cluster() -> None:
    before = {"networkProfile": {"networkDataplane": "azure", "loadBalancerSku": "standard"}}
    dataplane = {"networkProfile": {"networkDataplane": "cilium", "loadBalancerSku": "standard"}}
    sku = {"networkProfile": {"networkDataplane": "azure", "loadBalancerSku": "basic"}}
    assert [f.rule.path for f in replacements.forced(MANAGED_CLUSTER, before, dataplane)] == [
        "networkProfile.networkDataplane"
    ]
    assert replacements.forced(MANAGED_CLUSTER, before, sku) == []


def test_kubernetes_replaces_a_renamed_object_and_a_job_with_a_new_template_only() -> None:
    job = {"metadata": {"name": "train"}, "spec": {"template": {"spec": {"containers": [{"image": "a"}]}}}}
    new_image = {"metadata": {"name": "train"}, "spec": {"template": {"spec": {"containers": [{"image": "b"}]}}}}
    (found,) = replacements.forced("kubernetes:batch/v1:Job", job, new_image)
    assert found.rule.path == "spec.template"
    assert replacements.forced("kubernetes:apps/v1:Deployment", job, new_image) == []
    (renamed,) = replacements.forced("kubernetes:apps/v1:Deployment", job, {**job, "metadata": {"name": "serve"}})
    assert renamed.rule.path == "metadata.name"


def test_changes_walk_maps_and_equal_length_lists_leaf_by_leaf() -> None:
    found = list(replacements.changes({"a": [1, {"b": 2}], "c": [1]}, {"a": [1, {"b": 3}], "c": [1, 2], "d": 0}))
    assert [(c.where, c.old, c.new) for c in found] == [
        ("a[1].b", 2, 3),
        ("c", [1], [1, 2]),
        ("d", replacements.UNSET, 0),
    ]


def test_long_values_are_shown_from_where_they_differ() -> None:
    old = "registry.example/mlstack-server:" + "a" * 12 + "@sha256:" + "0" * 64
    new = "registry.example/mlstack-server:" + "b" * 12 + "@sha256:" + "1" * 64
    shown = replacements.show_change(replacements.Change(("image",), old, new), limit=40)
    before, after = shown.split(" -> ")
    assert "aaaa" in before
    assert "bbbb" in after
    assert before.startswith("…")
    assert len(before) <= 42
