"""The GitHub workflows: valid against GitHub's schema, clean under zizmor, and saying what docs/review.md says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import STACKS
from tools import harness

ROOT = harness.ROOT
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _tool(name: str) -> str:
    """The tool installed beside this Python (the venv of requirements-dev.txt), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -r requirements-dev.txt")
    return found


def _load(path: Path) -> dict[Any, Any]:
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(workflow, dict)
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(workflow: dict[Any, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "preview.yml"}


def test_workflows_pass_githubs_schema() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_zizmor() -> None:
    result = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_triggers_permissions_and_pins(path: Path) -> None:
    workflow = _load(path)
    assert set(workflow["on"]) == {"pull_request", "push"}, "pull requests and pushes, never pull_request_target"
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"] in ({}, {"contents": "read"}), "least privilege by default"
    for job_id, step in _steps(workflow):
        if "uses" in step:
            assert PINNED.match(step["uses"]), f"{job_id}: {step['uses']} is not pinned by commit SHA"
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, f"{job_id}: checkout keeps the token"


def test_ci_tests_and_renders_every_stack() -> None:
    workflow = _load(ROOT / ".github" / "workflows" / "ci.yml")
    runs = [step.get("run", "") for _, step in _steps(workflow)]
    assert "make test" in runs
    render = workflow["jobs"]["render"]
    assert tuple(render["strategy"]["matrix"]["stack"]) == STACKS
    assert any("make render" in step.get("run", "") for step in render["steps"])
    (upload,) = [s for s in render["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "render/${{ matrix.stack }}"


def test_previews_run_only_with_credentials_and_post_on_the_pull_request() -> None:
    workflow = _load(ROOT / ".github" / "workflows" / "preview.yml")
    (sdk,) = re.findall(r"(?m)^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(encoding="utf-8"))
    jobs = workflow["jobs"]
    gate = jobs["credentials"]
    (check,) = gate["steps"]
    assert check["env"] == {
        "HAS_AZURE": "${{ secrets.AZURE_CLIENT_ID != '' }}",
        "HAS_GCP": "${{ secrets.GCP_WORKLOAD_IDENTITY_PROVIDER != '' }}",
    }
    for job_id, stack, cloud in (("preview-dev", "dev", "azure"), ("preview-gke", "gke", "gcp")):
        job = jobs[job_id]
        assert job["needs"] == "credentials"
        assert job["if"] == f"needs.credentials.outputs.{cloud} == 'true'", f"{job_id} runs without credentials"
        assert job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
        (pulumi,) = [s for s in job["steps"] if s.get("uses", "").startswith("pulumi/actions@")]
        assert pulumi["with"]["command"] == "preview"
        assert pulumi["with"]["stack-name"] == stack
        assert pulumi["with"]["policyPacks"] == "policy"
        assert pulumi["with"]["comment-on-pr"] == "${{ github.event_name == 'pull_request' }}"
        assert str(pulumi["with"]["pulumi-version"]) == sdk, f"{job_id}: a CLI of another release than the SDK"
