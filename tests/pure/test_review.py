"""tools/review.py on two crafted renders: a new URN is a replacement (or a creation and a deletion),
the program's own ignoreChanges and replaceOnChanges count as the engine counts them, and the diff
names each file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tools import render, review

STACK_URN = "urn:pulumi:gke::mlstack::pulumi:pulumi:Stack$mlstack:gke:GkeGpuCluster::gke"
POOL = "gcp:container/nodePool:NodePool"


def _record(type_: str, name: str, parent: str = STACK_URN, **extra: Any) -> dict[str, Any]:
    parent_type = parent.rsplit("::", 1)[0].split("::", 2)[-1]
    return {
        "type": type_,
        "name": name,
        "urn": f"urn:pulumi:gke::mlstack::{parent_type}${type_}::{name}",
        "kind": "resource",
        "parent": parent,
        "provider": "(default)",
        "dependsOn": [],
        **extra,
    }


def _render(where: Path, *records: dict[str, Any]) -> Path:
    resources = where / render.RESOURCES
    resources.mkdir(parents=True)
    for record in records:
        (resources / f"{record['name']}.yaml").write_text(yaml.safe_dump(record), encoding="utf-8")
    return where


def test_a_renamed_resource_is_replaced_unless_aliased(tmp_path: Path) -> None:
    base = _render(tmp_path / "a", _record(POOL, "gke-gpu", inputs={"location": "us-central1-a"}))
    head = _render(tmp_path / "b", _record(POOL, "gke-accelerators", inputs={"location": "us-central1-a"}))
    verdict = review.compare(base, head)
    (replaced,) = verdict.replaced
    assert replaced.message() == (
        f"this change replaces {POOL} gke-gpu (its name changed: gke-gpu -> gke-accelerators; no alias)"
    )
    assert "alias" in replaced.source
    assert verdict.created == verdict.deleted == []


def test_a_resource_moved_under_another_parent_is_replaced(tmp_path: Path) -> None:
    other = "urn:pulumi:gke::mlstack::pulumi:pulumi:Stack$mlstack:gke:GpuPools::pools"
    base = _render(tmp_path / "a", _record(POOL, "gke-gpu"))
    head = _render(tmp_path / "b", _record(POOL, "gke-gpu", parent=other))
    (replaced,) = review.compare(base, head).replaced
    assert replaced.reason.startswith(f"its parent changed: {STACK_URN} -> {other}")


def test_what_is_only_on_one_side_is_created_or_deleted(tmp_path: Path) -> None:
    base = _render(tmp_path / "a", _record(POOL, "gke-gpu"), _record("gcp:storage/bucket:Bucket", "models"))
    head = _render(tmp_path / "b", _record(POOL, "gke-gpu"), _record(POOL, "gke-tpu"))
    verdict = review.compare(base, head)
    assert verdict.replaced == []
    assert [r.name for r in verdict.created] == ["gke-tpu"]
    assert [r.name for r in verdict.deleted] == ["models"]


def test_ignored_inputs_never_replace_and_the_programs_replace_on_changes_does(tmp_path: Path) -> None:
    pool = "azure-native:containerservice:AgentPool"
    options = {"ignoreChanges": ["vmSize"], "replaceOnChanges": ["nodeTaints"]}
    base = _render(tmp_path / "a", _record(pool, "gpu", options=options, inputs={"vmSize": "A", "nodeTaints": ["x"]}))
    head = _render(tmp_path / "b", _record(pool, "gpu", options=options, inputs={"vmSize": "B", "nodeTaints": ["y"]}))
    (replaced,) = review.compare(base, head).replaced
    assert replaced.source == review.PROGRAM_OPTION
    assert replaced.reason == "nodeTaints[0] changed: x -> y"


def test_a_kubernetes_object_is_compared_as_its_manifest(tmp_path: Path) -> None:
    job = "kubernetes:batch/v1:Job"
    for side, image in (("a", "trainer:1"), ("b", "trainer:2")):
        where = _render(tmp_path / side, _record(job, "train", manifest="k8s/job-train.yaml"))
        (where / render.K8S).mkdir()
        manifest = {"kind": "Job", "metadata": {"name": "train"}, "spec": {"template": {"spec": {"image": image}}}}
        (where / render.K8S / "job-train.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    (replaced,) = review.compare(tmp_path / "a", tmp_path / "b").replaced
    assert replaced.message() == (
        f"this change replaces {job} train (spec.template.spec.image changed: trainer:1 -> trainer:2)"
    )


def test_the_diff_names_each_changed_file_summary_first(tmp_path: Path) -> None:
    for side, size in (("a", "n1-standard-4"), ("b", "n1-standard-8")):
        where = _render(tmp_path / side, _record(POOL, "gke-gpu", inputs={"machineType": size}))
        (where / "summary.md").write_text(f"| gke-gpu | {size} |\n", encoding="utf-8")
        (where / "graph.dot").write_text(f"digraph {side}\n", encoding="utf-8")
    diff = "".join(review.unified_diff("gke", tmp_path / "a", tmp_path / "b"))
    assert diff.index("--- a/gke/summary.md") < diff.index("--- a/gke/resources/gke-gpu.yaml")
    assert "-| gke-gpu | n1-standard-4 |\n+| gke-gpu | n1-standard-8 |\n" in diff
    assert "graph.dot" not in diff
    assert review.unified_diff("gke", tmp_path / "a", tmp_path / "a") == []
