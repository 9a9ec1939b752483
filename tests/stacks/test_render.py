"""tools/render.py: a stack rendered offline for review, its secrets redacted, every object named and valid,
every resource of every provider written with its inputs, and a summary of the cloud read from them.

The shipped stacks are rendered from the session's shared runs; the objects those
runs hold are validated against the schema once, in tests/stacks/test_stacks.py,
and here the render's own verdict (no problem) and the files' equality with the
redacted objects stand for the files' validity.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pulumi_gcp as gcp
import pulumi_kubernetes as k8s
import pytest
import yaml

from mlstack.clouds import azure
from tests.support import DEPLOYMENT, STACKS, SharedRun
from tools import harness, render, summary

PASSWORD = "a-configured-render-password"


@pytest.fixture(scope="module")
def rendered(
    shipped: dict[str, harness.StackRun], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, harness.StackRun]]:
    """Every shipped stack rendered once, from its shared run, beside that run to compare with."""
    out = tmp_path_factory.mktemp("render")
    for stack in STACKS:
        assert render.write_render(stack, shipped[stack], out) == [], f"{stack}: the render found invalid objects"
    return {stack: (out / stack, shipped[stack]) for stack in STACKS}


def _files(where: Path) -> Iterator[Path]:
    return (p for p in sorted(where.rglob("*")) if p.is_file())


def _differs_only_in_strings(plain: Any, redacted: Any) -> bool:
    """Redaction keeps every key, list and non-string value; it replaces strings with strings only."""
    if isinstance(plain, dict):
        return (
            isinstance(redacted, dict)
            and plain.keys() == redacted.keys()
            and all(_differs_only_in_strings(plain[k], redacted[k]) for k in plain)
        )
    if isinstance(plain, list):
        return (
            isinstance(redacted, list)
            and len(plain) == len(redacted)
            and all(_differs_only_in_strings(a, b) for a, b in zip(plain, redacted, strict=True))
        )
    if isinstance(plain, str):
        return isinstance(redacted, str)
    return bool(plain == redacted)


@pytest.mark.parametrize("stack", STACKS)
def test_render_writes_one_file_per_kubernetes_object_as_applied_but_redacted(
    rendered: dict[str, tuple[Path, harness.StackRun]], stack: str
) -> None:
    where, run = rendered[stack]
    objects = run.kubernetes_objects()
    written = {path.name: yaml.safe_load(path.read_text(encoding="utf-8")) for path in (where / "k8s").iterdir()}
    assert len(written) == len(objects) >= 10
    for registration, applied in harness.kubernetes_manifests(run):
        name = render.manifest_filename(applied)
        redacted = harness.manifest(registration, redact=True)
        assert written[name] == redacted, f"{stack}: {name} is not the redacted {registration.name}"
        assert list(written[name])[:3] == ["apiVersion", "kind", "metadata"], name
        assert _differs_only_in_strings(applied, redacted), f"{stack}: redacting {registration.name} changed its shape"
    assert {"Namespace", "Secret", "ConfigMap", "Job", "Deployment", "Service"} <= {o["kind"] for o in written.values()}
    assert "namespace-mlstack.yaml" in written
    assert "deployment-mlstack-mlstack-server.yaml" in written


@pytest.mark.parametrize("stack", STACKS)
def test_graphs_name_every_resource_its_parent_and_dependencies(
    rendered: dict[str, tuple[Path, harness.StackRun]], stack: str
) -> None:
    where, run = rendered[stack]
    markdown = (where / "graph.md").read_text(encoding="utf-8")
    dot = (where / "graph.dot").read_text(encoding="utf-8")
    assert dot.startswith(f'digraph "{stack}" {{')
    assert dot.rstrip().endswith("}")
    for registration in run.registrations.values():
        parent = run.registrations.get(registration.parent)
        row = f"| `{registration.name}` | `{registration.type}` | `{parent.name if parent else '(stack)'}` |"
        assert row in markdown, f"{stack}: no row for {registration.name}"
        assert f'"{registration.urn}" [label="{registration.name}\\n{registration.type}"' in dot
        if parent:
            assert f'"{parent.urn}" -> "{registration.urn}";' in dot
        for dependency in registration.dependencies:
            assert f'"{registration.urn}" -> "{dependency}" [style=dashed];' in dot
    deployment = run.one(DEPLOYMENT)
    assert any(d.endswith("::mlstack-publish") for d in deployment.dependencies)  # the graph is not empty
    # The order the render shows: train, then publish, then serve.
    deployment_row = "| `mlstack-server` | `kubernetes:apps/v1:Deployment`"
    assert "`mlstack-publish`" in next(line for line in markdown.splitlines() if line.startswith(deployment_row))
    publish_row = "| `mlstack-publish` | `kubernetes:batch/v1:Job`"
    assert "`mlstack-train`" in next(line for line in markdown.splitlines() if line.startswith(publish_row))


@pytest.mark.parametrize("stack", STACKS)
def test_resources_hold_every_resource_of_every_provider_as_the_engine_sees_it(
    rendered: dict[str, tuple[Path, harness.StackRun]], stack: str
) -> None:
    where, run = rendered[stack]
    files = render.record_filenames(run)
    assert {p.name for p in (where / render.RESOURCES).iterdir()} == set(files.values())
    assert len(files) == len(run.registrations)
    for urn, registration in run.registrations.items():
        record = yaml.safe_load((where / render.RESOURCES / files[urn]).read_text(encoding="utf-8"))
        assert (record["type"], record["name"], record["urn"], record["parent"]) == (
            registration.type, registration.name, urn, registration.parent,
        ), files[urn]  # fmt: skip
        assert record["dependsOn"] == sorted(registration.dependencies), files[urn]
        assert record["provider"] == (registration.provider_urn or "(default)"), files[urn]
        assert record.get("options", {}).get("ignoreChanges", []) == sorted(registration.ignore_changes)
        if registration.is_kubernetes_object:
            manifest = yaml.safe_load((where / record["manifest"]).read_text(encoding="utf-8"))
            assert manifest == harness.manifest(registration, redact=True), files[urn]
            assert "inputs" not in record
        elif registration.custom:
            assert record["inputs"] == harness.plain(registration.inputs, redact=True), files[urn]
        else:
            assert record["kind"] == "component"
            assert "inputs" not in record


CLOUD_TYPES = {
    "local": set(),
    "dev": {summary.AKS_CLUSTER, summary.AKS_POOL, summary.ACR, "azure-native:resources:ResourceGroup"},
    "gke": {summary.GKE_CLUSTER, summary.GKE_POOL, summary.BUCKET, summary.ARTIFACT_REGISTRY},
}


@pytest.mark.parametrize("stack", STACKS)
def test_the_cloud_is_in_the_render(rendered: dict[str, tuple[Path, harness.StackRun]], stack: str) -> None:
    """The render used to hold the Kubernetes objects only: no cluster, pool, registry or bucket."""
    where, _ = rendered[stack]
    types = {yaml.safe_load(p.read_text(encoding="utf-8"))["type"] for p in (where / render.RESOURCES).iterdir()}
    assert CLOUD_TYPES[stack] <= types
    assert {"tls:index/privateKey:PrivateKey", "docker-build:index:Image", summary.K8S_PROVIDER} <= types


def _row(markdown: str, first_cell: str) -> str:
    (row,) = [line for line in markdown.splitlines() if line.startswith(f"| {first_cell} |")]
    return row


def test_the_gke_summary_shows_pools_gpus_zone_datapath_registry_and_bucket(
    rendered: dict[str, tuple[Path, harness.StackRun]],
) -> None:
    where, run = rendered["gke"]
    text = (where / "summary.md").read_text(encoding="utf-8")
    pool = run.one(summary.GKE_POOL, "-gpu")
    inputs = harness.plain(pool.inputs)
    config, scaling = inputs["nodeConfig"], inputs["autoscaling"]
    (accelerator,) = config["guestAccelerators"]
    assert (
        f"| {inputs['cluster']} | {config['machineType']} | {accelerator['count']} x {accelerator['type']} | "
        f"{scaling['totalMinNodeCount']}-{scaling['totalMaxNodeCount']} (autoscaled) | yes | {inputs['location']} |"
    ) in _row(text, pool.outputs["name"])
    cluster = run.one(summary.GKE_CLUSTER)
    row = _row(text, cluster.outputs["name"])
    location = harness.plain(cluster.inputs)["location"]
    assert f"| GKE | {location} (zonal) |" in row
    assert "datapath ADVANCED_DATAPATH" in row
    repository = harness.plain(run.one(summary.ARTIFACT_REGISTRY).inputs)
    assert f"{repository['location']}-docker.pkg.dev/{repository['project']}/{repository['repositoryId']}" in text
    assert f"| GCS bucket | {harness.plain(run.one(summary.BUCKET).inputs)['name']} |" in text
    assert f"Kubernetes {run.kubernetes_version} (the stack's `kubernetesVersion` output)" in text


def test_the_aks_summary_shows_both_pools_their_gpus_spot_location_registry_and_store(
    rendered: dict[str, tuple[Path, harness.StackRun]],
) -> None:
    where, run = rendered["dev"]
    text = (where / "summary.md").read_text(encoding="utf-8")
    gpu = harness.plain(run.one(summary.AKS_POOL).inputs)
    size = azure.AZURE_GPU_SIZES[gpu["vmSize"]]
    assert (
        f"| {gpu['vmSize']} | {size.gpus} x {size.gpu_model} | {gpu['minCount']}-{gpu['maxCount']} (autoscaled) | "
        "yes (max price on-demand) |"
    ) in _row(text, f"{gpu['agentPoolName']} (User)")
    cluster = harness.plain(run.one(summary.AKS_CLUSTER).inputs)
    (system,) = cluster["agentPoolProfiles"]
    assert f"| {system['vmSize']} | none | {system['count']} (fixed) | no |" in _row(text, f"{system['name']} (System)")
    assert f"| AKS | {cluster['location']} |" in text
    assert f"| ACR | {run.one(summary.ACR).outputs['loginServer']} | {cluster['location']} |" in text
    assert "| PersistentVolumeClaim | mlstack/mlstack-models | storage class azurefile-csi |" in text


def test_the_local_summary_shows_the_context_and_where_images_are_pushed(
    rendered: dict[str, tuple[Path, harness.StackRun]],
) -> None:
    where, run = rendered["local"]
    text = (where / "summary.md").read_text(encoding="utf-8")
    context = harness.plain(run.one(summary.K8S_PROVIDER).inputs)["context"]
    assert f"kubeconfig context {context}" in text
    assert "| pushed to | localhost:5001 |" in text
    assert "The cluster's own nodes." in text


def test_the_summary_reads_the_resources_not_the_config() -> None:
    """A pool no stack configures is summarised from what the program registered."""

    def program() -> None:
        gcp.container.NodePool(
            "h100",
            cluster="training",
            location="europe-west4-b",
            node_config={
                "machine_type": "a3-highgpu-8g", "spot": True,
                "guest_accelerators": [{"type": "nvidia-h100-80gb", "count": 8}],
            },
            autoscaling={"min_node_count": 0, "max_node_count": 2},
        )  # fmt: skip

    text = summary.summary_markdown("test", harness.run(program, {}))
    assert (
        "| training | a3-highgpu-8g | 8 x nvidia-h100-80gb | 0-2 (autoscaled) per zone | yes | europe-west4-b |" in text
    )


@pytest.mark.parametrize("stack", STACKS)
def test_no_secret_value_is_written(rendered: dict[str, tuple[Path, harness.StackRun]], stack: str) -> None:
    where, _ = rendered[stack]
    for path in _files(where):
        text = path.read_text(encoding="utf-8")
        for value in (harness.MOCK_GENERATED_PASSWORD, harness.FAKE_KUBECONFIG_TOKEN):
            assert value not in text, f"{path.name} holds a secret value"
    secrets = {
        obj["type"]: obj
        for obj in (yaml.safe_load(p.read_text(encoding="utf-8")) for p in (where / "k8s").glob("secret-*.yaml"))
    }
    assert secrets["kubernetes.io/basic-auth"]["stringData"] == {
        "username": harness.REDACTED, "password": harness.REDACTED,
    }  # fmt: skip
    assert secrets["kubernetes.io/tls"]["stringData"]["tls.key"] == harness.REDACTED
    for path in _files(where):
        assert "PRIVATE KEY" not in path.read_text(encoding="utf-8"), f"{path.name} holds a private key"


def test_renders_are_identical_run_to_run(rendered: dict[str, tuple[Path, harness.StackRun]], tmp_path: Path) -> None:
    """So that a reviewer can diff the render of the base branch with the pull request's: the CLI's render,
    from a fresh process, is the render of the session's run byte for byte. (The engine hands maps over in
    no stable order, and before the render sorted their keys two renders of one commit differed.)"""
    where, _ = rendered["dev"]
    done = subprocess.run(
        [sys.executable, "-m", "tools.render", "--stack", "dev", "--out", str(tmp_path)],
        cwd=harness.ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    again = tmp_path / "dev"
    first = {p.relative_to(where): p.read_text(encoding="utf-8") for p in _files(where)}
    second = {p.relative_to(again): p.read_text(encoding="utf-8") for p in _files(again)}
    assert first == second


def test_a_configured_password_is_not_written_either(shared_run: SharedRun, tmp_path: Path) -> None:
    run = shared_run("local", secrets={"basicAuthPassword": PASSWORD})
    assert render.write_render("local", run, tmp_path) == []
    written = [p.read_text(encoding="utf-8") for p in _files(tmp_path)]
    assert written
    assert not [t for t in written if PASSWORD in t]


def test_bad_config_exits_non_zero_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = render.main(["--stack", "local", "--out", str(tmp_path), "--set", "replicas=0"])
    assert code == render.EXIT_PROGRAM_ERROR
    err = capsys.readouterr().err
    assert "render: stack local: the program failed: invalid stack configuration" in err
    assert "mlstack:replicas = 0" in err
    assert render.main(["--stack", "prod", "--out", str(tmp_path)]) == render.EXIT_PROGRAM_ERROR
    assert "Pulumi.prod.yaml does not exist" in capsys.readouterr().err


def test_an_object_the_target_version_rejects_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit 1 when the schema of the stack's version rejects an object, naming it; the render is still written.
    (Config refuses a version too old for the stack's objects before anything renders, so the schema's
    verdict is stood in for here.)"""
    schema = harness.validate_manifest

    def rejects_deployments(obj: Mapping[str, Any], version: str) -> list[str]:
        if obj.get("kind") == "Deployment":
            return [f"Deployment {obj['metadata']['name']}: spec.template: not valid in {version}"]
        return schema(obj, version)

    monkeypatch.setattr(harness, "validate_manifest", rejects_deployments)
    code = render.main(["--stack", "local", "--out", str(tmp_path)])
    assert code == render.EXIT_INVALID
    err = capsys.readouterr().err
    assert "1 invalid Kubernetes object(s)" in err
    assert "mlstack-server: Deployment mlstack-server: spec.template: not valid in" in err
    assert (tmp_path / "local" / "graph.md").exists(), "the render is written for inspection"
    assert (tmp_path / "local" / "summary.md").exists()


def test_an_invalid_object_is_reported_by_name(tmp_path: Path) -> None:
    def program() -> None:
        # A number where the schema wants a string: the SDK and the mocks accept it, the schema does not.
        k8s.core.v1.ConfigMap("typo", metadata={"name": "web"}, data={"replicas": 3})

    run = harness.run(program, {})
    run.kubernetes_version = "1.33"
    (problem,) = render.write_render("test", run, tmp_path)
    assert problem.startswith("typo: ConfigMap web:")
    assert "data.replicas" in problem


def test_render_leaves_no_kubeconfig_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    assert render.main(["--stack", "local", "--out", str(tmp_path)]) == 0
    assert "KUBECONFIG" not in os.environ
