"""`make up` / `make down` / `make smoke` for the local stack (tools/localup.py), against fake tools.

The fakes (fake_tools.py) stand in for docker, kind, kubectl and the Pulumi CLI on
a PATH that holds nothing else; they record every call and share one small
world, so these tests read the command sequence of a first and a second run,
what a logged-in user keeps, what each missing tool says, and what `down`
deletes. The smoke call is real: TLS against the stack's CA, basic auth, JSON.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components import workloads
from tools import localup
from tools.devcert import make_certificates

from ..app.helpers import free_port
from . import fake_tools

ROOT = Path(__file__).resolve().parents[2]
HOSTING = str(ROOT / "deploy" / "kind" / "registry-hosting.yaml")


@dataclass
class Machine:
    """A machine with only the fake tools: its PATH, its shared world, the calls they saw."""

    tmp: Path
    bin: Path
    env: dict[str, str]

    @property
    def home(self) -> Path:
        return Path(self.env["MLSTACK_LOCAL_DIR"])

    def world(self) -> dict[str, Any]:
        path = Path(self.env["FAKE_STATE"])
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def set(self, **values: Any) -> None:
        state = self.world() | values
        Path(self.env["FAKE_STATE"]).write_text(json.dumps(state), encoding="utf-8")

    def calls(self) -> list[list[str]]:
        path = Path(self.env["FAKE_LOG"])
        if not path.exists():
            return []
        return [[e["tool"], *e["argv"]] for e in map(json.loads, path.read_text(encoding="utf-8").splitlines())]

    def entries(self) -> list[dict[str, Any]]:
        path = Path(self.env["FAKE_LOG"])
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def clear_log(self) -> None:
        Path(self.env["FAKE_LOG"]).unlink(missing_ok=True)

    def run(self, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tools.localup", command],
            env=self.env | env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def machine(tmp_path: Path, tls: Any) -> Machine:
    bin_dir = tmp_path / "bin"
    fake_tools.install(bin_dir)
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path / "home"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MLSTACK_LOCAL_DIR": str(tmp_path / "dot-mlstack"),
        "MLSTACK_FORWARD_PORT": str(free_port()),
        "MLSTACK_REGISTRY_PORT": str(free_port()),
        "MLSTACK_READY_TIMEOUT_S": "20",
        "FAKE_STATE": str(tmp_path / "world.json"),
        "FAKE_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_TLS_CERT": str(tls.cert),
        "FAKE_TLS_KEY": str(tls.key),
        "FAKE_TLS_CA": str(tls.ca),
    }
    return Machine(tmp_path, bin_dir, env)


CREATES = (("docker", "run"), ("docker", "start"), ("kind", "create"), ("pulumi", "login"), ("docker", "network"))


def creating(calls: list[list[str]]) -> list[list[str]]:
    """The calls that make or change something."""
    return [
        c for c in calls
        if tuple(c[:2]) in CREATES or c[:3] == ["pulumi", "stack", "select"] or (c[0] == "kubectl" and "apply" in c)
        or c[:2] == ["pulumi", "up"]
    ]  # fmt: skip


def test_a_fresh_machine_gets_cluster_registry_state_and_passphrase_once(machine: Machine) -> None:
    first = machine.run("up")
    assert first.returncode == 0, first.stdout + first.stderr
    port = machine.env["MLSTACK_REGISTRY_PORT"]
    state_url = (machine.home / "state").as_uri()
    assert machine.calls() == [
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        ["kind", "version"],
        ["docker", "inspect", "-f", "{{.State.Running}}", "mlstack-registry"],
        ["pulumi", "whoami", "--non-interactive", "--verbose"],
        ["pulumi", "login", state_url],
        ["pulumi", "stack", "select", "--create", "local"],
        ["pulumi", "config", "get", "kubeContext", "--stack", "local"],
        ["kubectl", "config", "get-contexts", "-o", "name"],
        ["docker", "inspect", "-f", "{{.State.Running}}", "mlstack-registry"],
        ["docker", "inspect", "mlstack-registry"],
        ["docker", "run", "-d", "--restart=always", "-p", f"127.0.0.1:{port}:5000", "--network", "bridge",
         "--name", "mlstack-registry", "registry:3"],
        ["kind", "create", "cluster", "--config", str(ROOT / "deploy" / "kind" / "cluster.yaml")],
        ["kind", "get", "nodes", "--name", "mlstack"],
        ["docker", "exec", "mlstack-control-plane", "mkdir", "-p", "/etc/containerd/certs.d/localhost:5001"],
        ["docker", "exec", "-i", "mlstack-control-plane", "cp", "/dev/stdin",
         "/etc/containerd/certs.d/localhost:5001/hosts.toml"],
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks.kind}}", "mlstack-registry"],
        ["docker", "network", "connect", "kind", "mlstack-registry"],
        ["kubectl", "--context", "kind-mlstack", "apply", "-f", HOSTING],
        ["pulumi", "up", "--yes", "--stack", "local"],
        ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", "local"],
        ["kubectl", "--context", "kind-mlstack", "-n", "mlstack", "port-forward", "service/mlstack",
         f"{machine.env['MLSTACK_FORWARD_PORT']}:443"],
    ]  # fmt: skip
    assert "prediction for the sample zero: class 0, label '0', probability 0.910" in first.stdout
    hosts = next(e for e in machine.entries() if e.get("stdin") is not None)["stdin"]
    assert hosts == (ROOT / "deploy" / "kind" / "registry-hosts.toml").read_text(encoding="utf-8")

    passphrase = machine.home / "passphrase"
    assert passphrase.stat().st_mode & 0o777 == 0o600
    secret = passphrase.read_text(encoding="utf-8").strip()
    assert len(secret) >= 32
    assert f"made a passphrase for the local stack's secrets in {passphrase}" in first.stdout
    up = next(e for e in machine.entries() if e["argv"][0] == "up")
    assert up["passphrase_file"] == str(passphrase)
    assert secret not in first.stdout + first.stderr + Path(machine.env["FAKE_LOG"]).read_text(encoding="utf-8")
    assert fake_tools.PASSWORD not in first.stdout + first.stderr
    assert json.loads((machine.home / "created.json").read_text(encoding="utf-8")) == {
        "cluster": "mlstack", "context": "kind-mlstack", "registry": "mlstack-registry",
    }  # fmt: skip

    machine.clear_log()
    second = machine.run("up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert creating(machine.calls()) == [
        ["pulumi", "stack", "select", "--create", "local"],
        [
            "kubectl",
            "--context",
            "kind-mlstack",
            "apply",
            "-f",
            HOSTING,
        ],
        ["pulumi", "up", "--yes", "--stack", "local"],
    ]  # nothing new: the select and the apply are idempotent, and the update finds the stack as it is
    assert "reusing the kind cluster mlstack and the registry mlstack-registry make up created" in second.stdout
    assert f"using the passphrase in {passphrase}" in second.stdout
    assert passphrase.read_text(encoding="utf-8").strip() == secret
    assert "prediction for the sample zero: class 0" in second.stdout


def test_a_logged_in_user_keeps_their_backend_and_their_passphrase(machine: Machine) -> None:
    machine.set(logged_in="https://api.pulumi.com")
    result = machine.run("up", PULUMI_CONFIG_PASSPHRASE="their-own")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [c for c in machine.calls() if c[:2] == ["pulumi", "login"]]
    assert "Pulumi: logged in (https://api.pulumi.com); left as it is" in result.stdout
    assert "using the passphrase you set" in result.stdout
    assert not (machine.home / "passphrase").exists()
    assert not (machine.home / "state").exists()


@pytest.mark.parametrize("tool", fake_tools.TOOLS)
def test_each_missing_tool_is_named_with_where_to_get_it_before_anything_is_made(machine: Machine, tool: str) -> None:
    (machine.bin / tool).unlink()
    result = machine.run("up")
    assert result.returncode == 2
    get = next(t.get for t in localup.TOOLS if t.name == tool)
    assert f"{tool} is not on PATH, install it from {get}" in result.stderr
    assert "Nothing was created." in result.stderr
    assert machine.calls() == []
    assert not machine.home.exists()


def test_docker_not_running_says_so_before_anything_is_made(machine: Machine) -> None:
    machine.set(docker_down=True)
    result = machine.run("up")
    assert result.returncode == 2
    assert "Docker is installed but its engine does not answer (Cannot connect to the Docker daemon" in result.stderr
    assert "start Docker Desktop, or the docker service" in result.stderr
    assert creating(machine.calls()) == []


def test_a_kind_too_old_for_network_policies_is_refused(machine: Machine) -> None:
    machine.set(kind_version="v0.23.0")
    result = machine.run("up")
    assert result.returncode == 2
    assert "kind v0.23.0 is too old: the stack's NetworkPolicies need kind v0.24.0 or newer" in result.stderr
    assert creating(machine.calls()) == []


@pytest.mark.parametrize("which", ["MLSTACK_FORWARD_PORT", "MLSTACK_REGISTRY_PORT"])
def test_a_port_in_use_is_named_before_anything_is_made(machine: Machine, which: str) -> None:
    port = int(machine.env[which])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = machine.run("up")
    assert result.returncode == 2
    assert f"in use: 127.0.0.1:{port} (" in result.stderr
    assert creating(machine.calls()) == []


def test_a_context_it_did_not_create_is_used_as_it_is_and_never_deleted(machine: Machine) -> None:
    machine.set(contexts=["kind-mlstack"], clusters=["mlstack"])  # made by hand, or by kind's own script
    up = machine.run("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "using your context kind-mlstack as it is" in up.stdout
    calls = machine.calls()
    assert not [c for c in calls if c[:2] in (["kind", "create"], ["docker", "run"], ["docker", "exec"])]
    assert not [c for c in calls if c[0] == "kubectl" and "apply" in c]
    down = machine.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [c for c in machine.calls() if c[:2] in (["kind", "delete"], ["docker", "rm"])]
    assert machine.world()["clusters"] == ["mlstack"]
    assert "left alone: kind-mlstack, mlstack-registry (not created by make up)" in down.stdout


def test_another_missing_context_is_not_created(machine: Machine) -> None:
    machine.set(kube_context="minikube")
    result = machine.run("up")
    assert result.returncode == 2
    assert "context 'minikube' (mlstack:kubeContext) does not exist, and make up only creates kind-mlstack" in (
        result.stderr
    )
    assert not [c for c in machine.calls() if c[:2] in (["kind", "create"], ["docker", "run"])]


def test_down_destroys_the_stack_then_deletes_only_what_up_created(machine: Machine) -> None:
    machine.set(containers={"their-registry": {"running": True, "networks": ["kind"]}}, clusters=["theirs"])
    assert machine.run("up").returncode == 0
    machine.clear_log()
    down = machine.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    calls = machine.calls()
    destroy = calls.index(["pulumi", "destroy", "--yes", "--stack", "local"])
    assert calls[destroy + 1 :] == [
        ["kind", "delete", "cluster", "--name", "mlstack"],
        ["docker", "rm", "-f", "mlstack-registry"],
    ]
    world = machine.world()
    assert world["clusters"] == ["theirs"]
    assert list(world["containers"]) == ["their-registry"]
    assert json.loads((machine.home / "created.json").read_text(encoding="utf-8")) == {}
    assert (machine.home / "passphrase").exists()  # the stack's secrets stay readable


def test_smoke_on_a_stack_that_is_not_serving_fails_clearly(machine: Machine) -> None:
    assert machine.run("up").returncode == 0
    machine.set(not_ready=True)
    result = machine.run("smoke", MLSTACK_READY_TIMEOUT_S="3")
    assert result.returncode == 1
    assert (
        "the model is not served after 3 s: the port-forward exited (1): "
        "error: unable to forward port because pod is not running. Current status=Pending"
    ) in result.stderr
    assert "kubectl --context kind-mlstack -n mlstack get pods,jobs" in result.stderr


def test_smoke_fails_when_the_model_answers_wrongly(machine: Machine) -> None:
    assert machine.run("up").returncode == 0
    machine.set(wrong_class=True)
    result = machine.run("smoke")
    assert result.returncode == 1
    assert "the served model calls the sample zero a 3" in result.stderr


def test_a_failing_stack_output_is_reported_without_what_it_printed(machine: Machine) -> None:
    machine.set(output_fails=True)
    result = machine.run("smoke")
    assert result.returncode == 2
    assert "`pulumi stack output --json --show-secrets --stack local` failed (exit 255)" in result.stderr
    assert fake_tools.PASSWORD not in result.stdout + result.stderr


def test_smoke_before_up_says_to_run_up(machine: Machine) -> None:
    result = machine.run("smoke")
    assert result.returncode == 1
    assert "run `make up` first" in result.stderr


def test_the_makefile_runs_it_for_the_local_stack_and_pulumi_for_the_clouds() -> None:
    def dry(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
        return subprocess.run(
            ["make", "-n", "--no-print-directory", *args], cwd=ROOT, env=env, capture_output=True, text=True,
            check=True, timeout=60,
        ).stdout  # fmt: skip

    local = dry("up")
    assert local.index("-m tools.localup preflight") < local.index("make runtime") < local.index("-m tools.localup up")
    assert "-m tools.localup down" in dry("down")
    assert "-m tools.localup smoke" in dry("smoke")
    assert "pulumi up --stack dev" in dry("up", "STACK=dev")


def test_the_files_agree_with_the_stack_and_the_program() -> None:
    cluster = yaml.safe_load((ROOT / "deploy" / "kind" / "cluster.yaml").read_text(encoding="utf-8"))
    assert cluster["name"] == localup.CLUSTER
    assert cluster["kind"] == "Cluster"
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    hosts = (ROOT / "deploy" / "kind" / "registry-hosts.toml").read_text(encoding="utf-8")
    assert re.search(rf'^\[host\."http://{localup.REGISTRY}:5000"\]$', hosts, re.MULTILINE)
    hosting = yaml.safe_load((ROOT / "deploy" / "kind" / "registry-hosting.yaml").read_text(encoding="utf-8"))
    kubernetes_validate.validate(hosting, "1.33", strict=True)
    assert yaml.safe_load(hosting["data"]["localRegistryHosting.v1"])["host"] == f"localhost:{localup.REGISTRY_PORT}"
    stack = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text(encoding="utf-8"))["config"]
    assert stack["mlstack:kubeContext"] == localup.CONTEXT
    assert stack["mlstack:localRegistry"] == f"localhost:{localup.REGISTRY_PORT}"
    assert localup.REGISTRY_HOSTS_DIR.endswith(stack["mlstack:localRegistry"])
    assert localup.FORWARD_PORT == workloads.LOCAL_PORT
    assert "/.mlstack/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


def test_kind_versions_are_read_from_kinds_own_output() -> None:
    assert localup.kind_version("kind v0.29.0 go1.24.2 linux/amd64") == (0, 29, 0)
    assert localup.kind_version("kind v0.24.0-alpha+abc go1.22 darwin/arm64") == (0, 24, 0)
    with pytest.raises(localup.Problem, match="cannot read kind's version"):
        localup.kind_version("kind (devel)")
