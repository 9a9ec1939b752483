"""Checkov on every shipped stack's rendered manifests: no finding that is not explained on its object.

Checkov runs from its own virtualenv, .venv-checkov (requirements-checkov.txt says why its own), which
`make unit` (and so `make test` and CI) creates and names in MLSTACK_CHECKOV. Run without that variable
(plain `pytest` on a laptop), these tests are skipped, saying so; with it set, a missing binary fails.

A finding we accept is said on the object, next to where the code builds it, as a Checkov skip annotation
with its reason (mlstack/checkov.py), so the reason travels with the manifest to whoever scans it.
Each stack is rendered and scanned once for the module (2 to 5 s a stack on 2 cores, checkov 3.3.30).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import aks, workloads
from mlstack import checkov
from tests.support import STACKS
from tools import harness, render

CHECKOV_ENV = "MLSTACK_CHECKOV"
REQUIREMENTS = harness.ROOT / "requirements-checkov.txt"
# Far above a stack's few seconds: a hung scan fails the test instead of CI's whole budget.
SCAN_TIMEOUT_SECONDS = 300
# The kinds that run containers: Checkov must have checked each of their objects.
WORKLOAD_KINDS = ("Deployment", "Job", "DaemonSet")
# What Checkov writes for a skip annotation without "=<reason>" (checkov/kubernetes/kubernetes_utils.py).
NO_REASON = "No comment provided"

Report = dict[str, Any]


def checkov_binary() -> Path:
    configured = os.environ.get(CHECKOV_ENV)
    if not configured:
        pytest.skip(f"{CHECKOV_ENV} is unset: `make unit` creates .venv-checkov and sets it")
    path = harness.ROOT / configured
    if not path.is_file():
        pytest.fail(f"{CHECKOV_ENV}={configured}: no such file; `make unit` creates it from {REQUIREMENTS.name}")
    return path


def pinned_version() -> str:
    (version,) = re.findall(r"(?m)^checkov==(\S+)$", REQUIREMENTS.read_text(encoding="utf-8"))
    return str(version)


def scan(binary: Path, manifests: Path) -> Report:
    """Checkov's JSON report on one folder of manifests. Not --quiet: it leaves the skipped checks out.
    --skip-download: nothing is fetched from Checkov's platform (CI reaches none)."""
    done = subprocess.run(
        [str(binary), "--directory", str(manifests), "--framework", "kubernetes", "--output", "json",
         "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=SCAN_TIMEOUT_SECONDS, check=False, cwd=manifests.parent,
    )  # fmt: skip
    # 0: nothing failed; 1: findings, which the tests below name; anything else: Checkov itself failed.
    assert done.returncode in (0, 1), f"checkov exited {done.returncode} on {manifests}:\n{done.stderr[-4000:]}"
    report = json.loads(done.stdout)
    assert isinstance(report, dict), f"checkov reported {type(report).__name__}, not one framework's report"
    return report


@pytest.fixture(scope="module")
def scanned(
    shipped: dict[str, harness.StackRun], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, Report]]:
    """Every shipped stack rendered as `make render` writes it, and Checkov's report on its manifests."""
    binary = checkov_binary()
    out = tmp_path_factory.mktemp("checkov")
    scans = {}
    for stack in STACKS:
        assert render.write_render(stack, shipped[stack], out) == [], f"{stack}: the render found invalid objects"
        manifests = out / stack / "k8s"
        scans[stack] = (manifests, scan(binary, manifests))
    return scans


def _records(report: Report, outcome: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = report["results"][outcome]
    return records


def _file(record: dict[str, Any]) -> str:
    return Path(record["file_abs_path"]).name


@pytest.mark.parametrize("stack", STACKS)
def test_checkov_finds_nothing_that_is_not_explained(scanned: dict[str, tuple[Path, Report]], stack: str) -> None:
    _, report = scanned[stack]
    failed = [
        f"{r['check_id']} ({r['check_name']}) on {r['resource']} in {_file(r)}"
        for r in _records(report, "failed_checks")
    ]
    assert failed == [], (
        f"{stack}: fix each, or say why on the object where the code builds it (mlstack/checkov.py):\n  "
        + "\n  ".join(failed)
    )


@pytest.mark.parametrize("stack", STACKS)
def test_checkov_read_every_manifest_and_checked_every_workload(
    scanned: dict[str, tuple[Path, Report]], stack: str
) -> None:
    manifests, report = scanned[stack]
    summary = report["summary"]
    assert summary["checkov_version"] == pinned_version(), f"{CHECKOV_ENV} is not the pinned Checkov"
    assert summary["parsing_errors"] == 0, report["results"]["parsing_errors"]
    assert summary["passed"] > 100, f"{stack}: Checkov checked almost nothing: {summary}"
    outcomes = ("passed_checks", "failed_checks", "skipped_checks")
    checked = {_file(r) for outcome in outcomes for r in _records(report, outcome)}
    workloads = {
        path.name
        for path in manifests.iterdir()
        if yaml.safe_load(path.read_text(encoding="utf-8"))["kind"] in WORKLOAD_KINDS
    }
    assert len(workloads) >= 3, f"{stack}: {sorted(workloads)}"
    assert workloads <= checked, f"{stack}: Checkov never checked {sorted(workloads - checked)}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_skip_is_the_codes_and_carries_its_reason(scanned: dict[str, tuple[Path, Report]], stack: str) -> None:
    manifests, report = scanned[stack]
    annotated = set()
    for path in manifests.iterdir():
        annotations = (yaml.safe_load(path.read_text(encoding="utf-8"))["metadata"].get("annotations")) or {}
        for key, value in annotations.items():
            if checkov.SKIP_PREFIX in key:
                check, sep, reason = value.partition("=")
                assert sep, f"{stack}: {path.name} {key} skips {check} without a reason"
                assert reason.strip(), f"{stack}: {path.name} {key} skips {check} with an empty reason"
                annotated.add((path.name, check))
    skipped = {
        (_file(r), r["check_id"]): r["check_result"].get("suppress_comment", "")
        for r in _records(report, "skipped_checks")
    }
    for (name, check), reason in skipped.items():
        assert reason.strip(), f"{stack}: {check} skipped on {name} with an empty reason"
        assert reason != NO_REASON, f"{stack}: {check} skipped on {name} without a reason"
    # A skip Checkov did not apply (a check that does not exist, or not for that kind) explains nothing.
    assert annotated == set(skipped), f"{stack}: annotated {sorted(annotated)}, Checkov skipped {sorted(skipped)}"


def test_the_trainer_and_the_device_plugin_carry_their_skips_with_a_reason() -> None:
    # The two objects whose findings are explained, not fixed: the trainer's missing CPU limit, and the
    # NVIDIA device plugin (root, no probe, no CPU limit). Each reason also has its source in the code.
    assert set(workloads.TRAINER_CHECKOV_SKIPS) == {"CKV_K8S_11"}
    assert set(aks.DEVICE_PLUGIN_CHECKOV_SKIPS) == {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_11", "CKV_K8S_23", "CKV_K8S_40"}
    annotations = aks.device_plugin_meta().annotations
    assert checkov.skip_annotations(aks.DEVICE_PLUGIN_CHECKOV_SKIPS).items() <= annotations.items()


@pytest.mark.parametrize(
    ("reasons", "message"),
    [
        ({"CKV_K8S_11": ""}, "needs its reason"),
        ({"CKV_K8S_11": "  "}, "needs its reason"),
        ({"CKV_K8S_11": "a=b"}, "cannot hold '='"),
        ({"CKV_K8S_XX": "why"}, "is not a Checkov Kubernetes check id"),
        ({"BC_K8S_10": "why"}, "is not a Checkov Kubernetes check id"),
    ],
)
def test_a_skip_without_a_reason_checkov_can_read_is_refused(reasons: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checkov.skip_annotations(reasons)


def test_skips_are_numbered_in_order() -> None:
    assert checkov.skip_annotations({"CKV_K8S_8": "a", "CKV2_K8S_1": "b"}) == {
        "checkov.io/skip1": "CKV_K8S_8=a",
        "checkov.io/skip2": "CKV2_K8S_1=b",
    }
