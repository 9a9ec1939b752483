"""A rendered pod's container, run here as a process: the kubelet's part, written once.

The whole-stack tests that run a pod's own command (tests/stacks/test_contract.py, the examples',
the multi-node runs) build its environment and files as Kubernetes would, then change only what
differs on this machine (``Here``): the store and the scratch directory become temporary
directories, every path under them rerooted; the device the CPU; the metrics port a free one.

- ``pod_env``: the container's environment, in order: its ConfigMaps (envFrom), then its env, Secrets
  and the downward API resolved, each ``$(VAR)`` expanded from the variables defined before it;
- ``expand``: the same expansion, as the kubelet applies it to a command and its arguments;
- ``mount_files``: the Secret and ConfigMap volumes it mounts, as files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from mlapp import contract
from tests.app.helpers import free_port
from tests.support import JOB, PUBLISH, TRAIN, container, pod_spec
from tools import harness

# A $(VAR) reference, or the $$ that escapes one
# (https://kubernetes.io/docs/tasks/inject-data-application/define-interdependent-environment-variables/).
_REFERENCE: Final = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
DIGITS: Final = harness.ROOT / "examples" / "digits"
TIMEOUT: Final = 600  # one training run of an example on this machine's CPU, with room to spare


def image_command(context: Path) -> list[str]:
    """What an image built from ``context`` runs when the pod names no command: its Dockerfile's ENTRYPOINT
    and CMD, exec form, as Docker joins them (the last of each counts)."""
    found: dict[str, list[str]] = {}
    for line in (context / "Dockerfile").read_text(encoding="utf-8").splitlines():
        instruction, _, rest = line.strip().partition(" ")
        if instruction.upper() in ("ENTRYPOINT", "CMD"):
            words = json.loads(rest)
            assert isinstance(words, list), f"{context}/Dockerfile: {line!r} is not in exec form"
            found[instruction.upper()] = [str(w) for w in words]
    command = [*found.get("ENTRYPOINT", []), *found.get("CMD", [])]
    assert command, f"{context}/Dockerfile runs nothing: no ENTRYPOINT or CMD"
    return command


def expand(text: str, defined: Mapping[str, str]) -> str:
    """``text`` with each ``$(VAR)`` of ``defined`` replaced; an unknown reference is left as written."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return defined.get(match.group(1), match.group(0))

    return _REFERENCE.sub(one, text)


def objects(result: harness.StackRun) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m["kind"], m["metadata"]["name"]): m for _, m in harness.kubernetes_manifests(result)}


def pod_env(
    result: harness.StackRun, spec: Mapping[str, Any], fields: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment Kubernetes gives the container ``spec``: envFrom ConfigMaps, then env in order.

    ``fields``: what the downward API answers for each field path the pod asks (its labels, annotations);
    a field path not given fails the test.
    """
    found = objects(result)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        env.update(found[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for var in spec.get("env", []):
        source = var.get("valueFrom") or {}
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[var["name"]] = found[("Secret", ref["name"])]["stringData"][ref["key"]]
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            given = fields or {}
            assert path in given, f"{var['name']}: the downward API's {path} is not given"
            env[var["name"]] = given[path]
        else:
            env[var["name"]] = expand(var["value"], env)
    return env


def mount_files(result: harness.StackRun, workload: harness.Registration, root: Path) -> dict[str, Path]:
    """The Secret and ConfigMap volumes the container mounts, written under ``root`` as the files their
    items name. Returns each mount path and where it now lies."""
    found = objects(result)
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    mounted: dict[str, Path] = {}
    for mount in container(workload)["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" in volume:
            data = found[("Secret", volume["secret"]["secretName"])]["stringData"]
            items = volume["secret"].get("items")
        elif "configMap" in volume:
            data = found[("ConfigMap", volume["configMap"]["name"])]["data"]
            items = volume["configMap"].get("items")
        else:
            continue
        where = root / mount["mountPath"].lstrip("/")
        where.mkdir(parents=True)
        for item in items or [{"key": k, "path": k} for k in data]:
            (where / item["path"]).write_text(data[item["key"]], encoding="utf-8")
        mounted[mount["mountPath"]] = where
    return mounted


def rerooted(value: str, mounted: Mapping[str, Path]) -> str:
    """``value`` pointing where ``mounted`` moved the volume it names, if it names one."""
    for mount_path, where in mounted.items():
        if value == mount_path:
            return str(where)
        if value.startswith(mount_path + "/"):
            return str(where / value.removeprefix(mount_path + "/"))
    return value


def process_env(env: Mapping[str, str], pythonpath: Path) -> dict[str, str]:
    """This process's environment, less anything of ours or torchrun's, plus ``env``: the pod's, and the path
    its image puts its code on."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("MLAPP_", "PET_"))}
    return {**inherited, **env, "PYTHONPATH": str(pythonpath), "OMP_NUM_THREADS": "1"}


def argv(command: Sequence[str]) -> list[str]:
    """A pod's command as this machine runs it: the image's ``python`` is this interpreter."""
    return [sys.executable, *command[1:]] if command[0] == "python" else list(command)


def run(command: Sequence[str], env: Mapping[str, str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv(command), env=env, capture_output=True, text=True, timeout=timeout, check=False)


class Here:
    """The pods' two writable places on this machine, the model store and the scratch directory, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.models, self.scratch = root / "models", root / "scratch"
        self.models.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(exist_ok=True)
        self.mounted = {contract.MODEL_MOUNT: self.models, contract.SCRATCH_DIR: self.scratch}

    def trainer_env(self, result: harness.StackRun, fields: Mapping[str, str] | None = None) -> dict[str, str]:
        """The training Job's container environment, as it would run here: rerooted, on the CPU (after checking
        it asks for CUDA exactly when the pod requests a GPU), its metrics on a free port, lingering for no one."""
        trainer = container(result.one(JOB, TRAIN))
        env = pod_env(result, trainer, fields)
        requests_gpu = "nvidia.com/gpu" in trainer["resources"]["limits"]
        assert env[contract.ENV_DEVICE] == ("cuda" if requests_gpu else "cpu"), env[contract.ENV_DEVICE]
        return {name: rerooted(value, self.mounted) for name, value in env.items()} | {
            contract.ENV_DEVICE: "cpu",
            contract.ENV_METRICS_PORT: str(free_port()),
            contract.ENV_METRICS_LINGER_SECONDS: "0",
        }

    def trainer_command(self, result: harness.StackRun, entrypoint: Sequence[str], env: Mapping[str, str]) -> list[str]:
        """What the training container runs: its command (expanded as the kubelet does), else the image's
        ENTRYPOINT (``entrypoint``, which the Job leaves as it is)."""
        trainer = container(result.one(JOB, TRAIN))
        assert "args" not in trainer, "the contract speaks through the environment only"
        command = trainer.get("command")
        return [expand(word, env) for word in command] if command else list(entrypoint)

    def publish_command(self, result: harness.StackRun) -> list[str]:
        return [rerooted(word, self.mounted) for word in container(result.one(JOB, PUBLISH))["command"]]

    def publish(self, result: harness.StackRun) -> subprocess.CompletedProcess[str]:
        """Run the publish Job's exact command, with its container's environment, on this store."""
        publisher = container(result.one(JOB, PUBLISH))
        env = {name: rerooted(value, self.mounted) for name, value in pod_env(result, publisher).items()}
        return run(self.publish_command(result), process_env(env, harness.ROOT / "app"))
