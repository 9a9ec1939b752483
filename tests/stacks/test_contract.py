"""The infra side of the contract: what each shipped stack's workloads hand the pods is what the app accepts.

The trainer's own argument parser reads the Job's args, and the server's own
settings reader reads the serving pod's environment (ConfigMap plus Secret), for
every shipped stack. A renamed flag or variable on either side fails here. The
app side (its Dockerfile and code against mlapp.contract): tests/app/test_app_contract.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlapp import contract, train
from mlapp import settings as app_settings
from tests.support import DEPLOYMENT, JOB, SECRET, STACKS, SharedRun, container, pod_spec
from tools import harness


def _objects(result: harness.StackRun) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for _, m in harness.kubernetes_manifests(result)}


def _pod_env(result: harness.StackRun, spec: dict[str, Any]) -> dict[str, str]:
    """The environment Kubernetes would give the container ``spec``: envFrom ConfigMaps, then env."""
    objects = _objects(result)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        env.update(objects[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for var in spec.get("env", []):
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        env[var["name"]] = objects[("Secret", ref["name"])]["stringData"][ref["key"]] if ref else var["value"]
    return env


def _mount_files(result: harness.StackRun, workload: harness.Registration, root: Path) -> dict[str, Path]:
    """The kubelet's part: each Secret and ConfigMap volume the container mounts, written under ``root``
    as the files its items name. Returns each mount path and where it now lies."""
    objects = _objects(result)
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    mounted: dict[str, Path] = {}
    for mount in container(workload)["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" in volume:
            data = objects[("Secret", volume["secret"]["secretName"])]["stringData"]
            items = volume["secret"].get("items")
        elif "configMap" in volume:
            data = objects[("ConfigMap", volume["configMap"]["name"])]["data"]
            items = volume["configMap"].get("items")
        else:
            continue
        where = root / mount["mountPath"].lstrip("/")
        where.mkdir(parents=True)
        for item in items or [{"key": k, "path": k} for k in data]:
            (where / item["path"]).write_text(data[item["key"]], encoding="utf-8")
        mounted[mount["mountPath"]] = where
    return mounted


def _rerooted(env: dict[str, str], mounted: dict[str, Path]) -> dict[str, str]:
    """``env`` with every path into a mounted volume pointing where ``_mount_files`` wrote it."""
    moved = dict(env)
    for name, value in env.items():
        for mount_path, where in mounted.items():
            if value.startswith(mount_path + "/"):
                moved[name] = str(where / value.removeprefix(mount_path + "/"))
    return moved


@pytest.mark.parametrize("stack", STACKS)
def test_the_trainer_accepts_the_jobs_arguments(shipped: dict[str, harness.StackRun], stack: str) -> None:
    result = shipped[stack]
    args = train.build_parser().parse_args(container(result.one(JOB))["args"])
    assert args.version == result.exports["modelVersion"]
    assert str(args.model_dir) == contract.MODEL_MOUNT
    assert args.min_accuracy == 0.95


@pytest.mark.parametrize("stack", STACKS)
def test_the_server_accepts_the_pods_environment(shared_run: SharedRun, stack: str, tmp_path: Path) -> None:
    result = shared_run(stack, secrets={"basicAuthPassword": "a-long-enough-password"})
    deployment = result.one(DEPLOYMENT)
    server = container(deployment)
    mounted = _mount_files(result, deployment, tmp_path)
    settings = app_settings.from_env(_rerooted(_pod_env(result, server), mounted))
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert settings.port == ports[contract.PORT_NAME]
    assert settings.metrics_port == ports[contract.METRICS_PORT_NAME]
    # TLS from the files the pod mounts from the kubernetes.io/tls Secret, never plain HTTP.
    assert not settings.plain_http
    assert settings.tls_cert_file is not None
    assert settings.tls_key_file is not None
    tls_secret = harness.manifest(result.one(SECRET, "-tls"))["stringData"]
    assert settings.tls_cert_file.read_text(encoding="utf-8") == tls_secret["tls.crt"]
    assert settings.tls_key_file.read_text(encoding="utf-8") == tls_secret["tls.key"]
    assert settings.model_version == result.exports["modelVersion"]
    assert settings.model_name == "mnist"
    assert (settings.username, settings.password) == ("mlstack", "a-long-enough-password")
    mounts = {m["mountPath"] for m in server["volumeMounts"]}
    assert str(settings.model_dir) in mounts
    assert settings.labels_file is not None
    assert settings.labels_file.parent in mounted.values(), "the labels file is not in a mounted volume"
    assert app_settings.read_labels(settings.labels_file) == [str(i) for i in range(10)]


def test_each_shipped_stacks_training_passes_its_own_gate(shipped: dict[str, harness.StackRun], tmp_path: Path) -> None:
    """The Job's exact arguments, run for real on the CPU: a stack that cannot pass its gate fails `pulumi up`."""
    distinct: dict[tuple[str, ...], str] = {}
    for stack in STACKS:
        trainer = container(shipped[stack].one(JOB))
        args: list[str] = list(trainer["args"])  # a copy: the shared run is never changed
        # The store and the device are what differ from the pod: a temporary directory
        # here, and the CPU, since this machine has no GPU (test_cuda covers --device cuda).
        args[args.index("--model-dir") + 1] = str(tmp_path / stack)
        device = args.index("--device") + 1
        requests_gpu = "nvidia.com/gpu" in trainer["resources"]["limits"]
        assert args[device] == ("cuda" if requests_gpu else "cpu"), f"{stack}: --device {args[device]}"
        args[device] = "cpu"
        distinct.setdefault(tuple(args), stack)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLAPP_")}
    env.update(PYTHONPATH=str(harness.ROOT / "app"), OMP_NUM_THREADS="1")
    for command, stack in distinct.items():
        done = subprocess.run(
            [sys.executable, "-m", "mlapp.train", *command], env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{stack}: the training Job would fail (exit {done.returncode}):\n{done.stderr}"
