"""`make up` / `make down` / `make smoke` for the local stack (tools/localup.py), against fake tools.

The fakes (fake_tools.py) stand in for docker, kind, kubectl and the Pulumi CLI on
a PATH that holds nothing else; they record every call and share one small
world, so these tests read the command sequence of a first and a second run,
what a logged-in user keeps, what each missing tool says, and what `down`
deletes. The smoke call is real: TLS against the stack's CA, basic auth, the
model's metadata, a request of zeros built from it, and the plug-in's /predict.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components import workloads
from tests.support import loopback_http
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
        Path(self.env["FAKE_HTTP_LOG"]).unlink(missing_ok=True)

    def requests(self) -> list[list[str]]:
        """What the served model was asked, readiness polls left out."""
        path = Path(self.env["FAKE_HTTP_LOG"])
        if not path.exists():
            return []
        asked = map(json.loads, path.read_text(encoding="utf-8").splitlines())
        return [r for r in asked if r[1] != "/v2/health/ready"]

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
        "FAKE_HTTP_LOG": str(tmp_path / "requests.jsonl"),
        "FAKE_TLS_CERT": str(tls.cert),
        "FAKE_TLS_KEY": str(tls.key),
        "FAKE_TLS_CA": str(tls.ca),
    }
    return Machine(tmp_path, bin_dir, env)


# The fake model answers a class that is not the sample's: smoke reports it, and judges nothing.
INFER_REPORT = "[make up] model digits version v-test answered a request of zeros: probabilities FP32 [1, 10]\n"
PREDICT_REPORT = "[make up] its image-classifier plug-in answered the sample picture: label 'three', score 0.910\n"
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
    assert INFER_REPORT in first.stdout
    assert PREDICT_REPORT in first.stdout
    assert machine.requests() == [
        ["GET", "/v2/models/digits"], ["POST", "/v2/models/digits/infer"], ["POST", "/predict"],
    ]  # fmt: skip
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
    assert INFER_REPORT in second.stdout


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


def test_smoke_of_a_model_without_a_plug_in_calls_only_the_protocol(machine: Machine) -> None:
    machine.set(no_plugin=True)  # the fake's /predict then answers 404, as the server does
    assert machine.run("up").returncode == 0
    machine.clear_log()
    result = machine.run("smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    assert INFER_REPORT in result.stdout
    assert "plug-in" not in result.stdout
    assert machine.requests() == [["GET", "/v2/models/digits"], ["POST", "/v2/models/digits/infer"]]


def test_smoke_fails_naming_what_the_server_said_when_inference_is_refused(machine: Machine) -> None:
    assert machine.run("up").returncode == 0
    machine.set(infer_fails=True)
    machine.clear_log()
    result = machine.run("smoke")
    assert result.returncode == 1
    assert f"POST /v2/models/digits/infer answered 400: {fake_tools.INFER_REFUSAL}" in result.stderr
    assert ["POST", "/predict"] not in machine.requests()


def test_smoke_on_a_stack_deployed_before_it_exported_the_model_name_says_to_run_up(machine: Machine) -> None:
    assert machine.run("up").returncode == 0
    machine.set(outputs_without=["modelName"])
    result = machine.run("smoke")
    assert result.returncode == 1
    assert "the local stack has no output modelName: run `make up`" in result.stderr


def test_a_failing_stack_output_is_reported_without_what_it_printed(machine: Machine) -> None:
    machine.set(output_fails=True)
    result = machine.run("smoke")
    assert result.returncode == 2
    assert "`pulumi stack output --json --show-secrets --stack local` failed (exit 255)" in result.stderr
    assert fake_tools.PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize("tool", ["pulumi", "kubectl"])
def test_smoke_without_a_tool_it_runs_names_it_instead_of_a_traceback(machine: Machine, tool: str) -> None:
    """Bug: `make smoke` without the Pulumi CLI printed a Python traceback (FileNotFoundError)."""
    (machine.bin / tool).unlink()
    result = machine.run("smoke")
    assert result.returncode == 2
    get = next(t.get for t in localup.TOOLS if t.name == tool)
    assert (
        result.stderr == f"[make smoke] missing: {tool} is not on PATH, install it from {get}. Nothing was created.\n"
    )
    assert machine.calls() == []


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


def test_the_request_of_zeros_follows_every_input_of_the_signature() -> None:
    signature = localup.Signature(
        "mixed",
        (
            localup.Tensor("flags", "BOOL", (-1, 2)),
            localup.Tensor("text", "BYTES", (-1,)),
            localup.Tensor("ids", "INT64", (-1, 3, -1)),
            localup.Tensor("scale", "FP16", ()),
        ),
        (localup.Tensor("out", "FP32", (-1, 1)),),
        None,
    )
    assert localup.zeros_request(signature) == {
        "inputs": [
            {"name": "flags", "datatype": "BOOL", "shape": [1, 2], "data": [False, False]},
            {"name": "text", "datatype": "BYTES", "shape": [1], "data": [""]},
            {"name": "ids", "datatype": "INT64", "shape": [1, 3, 1], "data": [0, 0, 0]},
            {"name": "scale", "datatype": "FP16", "shape": [], "data": [0]},
        ]
    }


def test_a_request_of_zeros_past_the_bound_is_not_built() -> None:
    side = 1 << 10
    signature = localup.Signature(
        "big", (localup.Tensor("a", "FP32", (-1, side)), localup.Tensor("b", "FP32", (side, side))), (), None
    )
    with pytest.raises(localup.NotServed, match=rf"input b FP32 \[{side}, {side}\] takes {side * side} values"):
        localup.zeros_request(signature)


def test_the_signature_is_read_from_the_metadata_and_refused_when_it_is_not_one() -> None:
    metadata = fake_tools.metadata(plugin=True)
    assert localup.read_signature(metadata, "GET /v2/models/digits") == localup.Signature(
        "digits",
        (localup.Tensor("input", "FP32", (-1, 1, 8, 8)),),
        (localup.Tensor("probabilities", "FP32", (-1, 10)),),
        "image-classifier",
    )
    assert localup.read_signature(fake_tools.metadata(plugin=False), "GET").plugin is None
    bad_shape = metadata | {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-2, True]}]}
    with pytest.raises(localup.NotServed, match=r"GET /v2/models/digits answered inputs .*, not a tensor"):
        localup.read_signature(bad_shape, "GET /v2/models/digits")
    unknown_type = metadata | {"outputs": [{"name": "p", "datatype": "FLOAT", "shape": [1]}]}
    with pytest.raises(localup.NotServed, match=r"answered outputs .*FLOAT.*, not a tensor: .* datatype of the"):
        localup.read_signature(unknown_type, "GET")
    with pytest.raises(localup.NotServed, match="answered list, not the model's metadata"):
        localup.read_signature([], "GET")


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ({"name": "probabilities", "datatype": "FP32", "shape": [1, 10]}, None),
        ({"name": "probabilities", "datatype": "FP32", "shape": [7, 10]}, None),  # an open dimension is any size
        ({"name": "scores", "datatype": "FP32", "shape": [1, 10]}, "no output 'probabilities' .*'scores'"),
        (
            {"name": "probabilities", "datatype": "FP64", "shape": [1, 10]},
            "output 'probabilities' as 'FP64': the signature says FP32",
        ),
        (
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 9]},
            r"output 'probabilities' in shape \[1, 9\]: the signature says \[-1, 10\] \(-1 open\)",
        ),
        (
            {"name": "probabilities", "datatype": "FP32", "shape": [10]},
            r"output 'probabilities' in shape \[10\]: the signature says",
        ),
        (
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
            r"output 'probabilities' in shape \[-1, 10\]",
        ),  # an answer's dimension is a size
    ],
)
def test_the_answer_must_carry_every_output_as_the_signature_states_it(
    output: dict[str, Any], message: str | None
) -> None:
    signature = localup.read_signature(fake_tools.metadata(plugin=False), "GET")
    answer = {"model_name": "digits", "outputs": [output | {"data": [0.1] * 10}]}
    if message is None:
        assert localup.answered_outputs(signature, answer, "POST") == (
            localup.Tensor("probabilities", "FP32", tuple(output["shape"])),
        )
        return
    with pytest.raises(localup.NotServed, match=f"POST answered {message}"):
        localup.answered_outputs(signature, answer, "POST")


# What the answering server below sends on each path: a status and a body.
ANSWERS: dict[str, tuple[int, bytes]] = {
    "/long": (200, b"[" + b"0," * 100 + b"0]"),
    "/long-error": (400, b"x" * 10_000),
    "/not-json": (200, b"<html>hello</html>"),
}


@pytest.fixture
def answering() -> Iterator[localup.Server]:
    """A plain-HTTP server answering ANSWERS, and the smoke call's client of it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = ANSWERS[self.path]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with loopback_http(Handler) as port:
        yield localup.Server(f"http://127.0.0.1:{port}", ssl.create_default_context(), "Basic x")


def test_every_answer_is_read_within_its_bound(answering: localup.Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localup, "MAX_ANSWER_BYTES", 100)
    with pytest.raises(localup.NotServed, match="GET /long answered more than 100 bytes"):
        answering.call("GET /long")
    with pytest.raises(localup.NotServed, match=r"GET /long-error answered 400: x+$") as refused:
        answering.call("GET /long-error")
    assert str(refused.value).count("x") == localup.MAX_QUOTED_BYTES
    with pytest.raises(localup.NotServed, match=r"GET /not-json did not answer with JSON \(.*\): <html>hello</html>"):
        answering.call("GET /not-json")


def test_the_servers_own_message_is_quoted() -> None:
    assert localup.server_message(b'{"error": "input \'x\': expected FP32"}') == "input 'x': expected FP32"
    assert localup.server_message(b"<html>Bad Gateway</html>\n") == "<html>Bad Gateway</html>"
    assert localup.server_message(b"") == "(no message)"


# What the Makefile itself runs before any target's recipe (its $(shell ...) lines and the recipes' shell).
MAKE_NEEDS = ("make", "bash", "sh", "cat", "sha256sum", "cut", "python3")


@pytest.mark.parametrize(
    "goal", [["preview"], ["preview", "STACK=dev"], ["up", "STACK=dev"], ["destroy", "STACK=gke"], ["stack"],
             ["down"], ["down", "STACK=dev"]],
    ids=" ".join,
)  # fmt: skip
def test_without_the_pulumi_cli_a_target_that_needs_it_stops_before_making_the_virtualenv(
    tmp_path: Path, goal: list[str]
) -> None:
    """Bug: `make preview` installed the runtime (~800 MB into a new virtualenv), then said the CLI was missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in MAKE_NEEDS:
        found = shutil.which(tool)
        assert found, f"{tool} is not on this machine's PATH"
        (bin_dir / tool).symlink_to(found)
    venv = tmp_path / "venv"
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    result = subprocess.run(
        ["make", "--no-print-directory", *goal, f"VENV={venv}"], cwd=ROOT, env=env, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    get = next(t.get for t in localup.TOOLS if t.name == "pulumi")
    assert (
        result.stderr.splitlines()[0]
        == f"make: the Pulumi CLI (pulumi) is not on PATH; install it from {get}, then run make again"
    )
    assert "-m venv" not in result.stdout
    assert not venv.exists(), "the virtualenv was made before the missing CLI was named"
