"""Fake `docker`, `kind`, `kubectl` and `pulumi` for tests/project/test_localup.py.

``install(bin_dir, ...)`` writes one executable per tool into ``bin_dir``; each
runs ``main(tool, argv)`` below. Every call is appended to the JSON-lines log
``FAKE_LOG`` (the tool, its arguments, whether a passphrase reached it), and the
world the tools share (containers, clusters, contexts, the Pulumi login, the
stack) lives in the JSON file ``FAKE_STATE``, so a second `make up` sees what
the first one made. ``kubectl port-forward`` serves the model over HTTPS with
the test certificate, the way the stack's Service would answer: readiness, a
digits-like model's metadata and inference (Open Inference Protocol v2), and its
image-classifier plug-in's ``/predict``. It logs each request it is sent to
``FAKE_HTTP_LOG``. Switches in the world: ``no_plugin`` (a model without a
plug-in, whose ``/predict`` answers 404), ``infer_fails`` (inference answers 400),
``not_ready``, and ``outputs_without`` (outputs a stack deployed earlier lacked).
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

TOOLS = ("docker", "kind", "kubectl", "pulumi")
USER, PASSWORD = "mlstack", "generated-Pa55word"
MODEL, VERSION = "digits", "v-test"
# What the served model's metadata says of it: the digits CNN's signature (docs/trainer-contract.md).
INPUT = {"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}
OUTPUT = {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}
PLUGIN = {"name": "image-classifier", "input": "input", "output": "probabilities", "height": 8, "width": 8,
          "foreground": "light", "mean": 0.0, "std": 1.0, "scores": "probabilities"}  # fmt: skip
INFER_REFUSAL = "input 'input': the fake server refuses every inference request"


def install(bin_dir: Path, tools: tuple[str, ...] = TOOLS) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parent
    for tool in tools:
        script = bin_dir / tool
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(here)!r})\n"
            "from fake_tools import main\n"
            f"sys.exit(main({tool!r}, sys.argv[1:]))\n",
            encoding="utf-8",
        )
        script.chmod(0o755)


def load() -> dict[str, Any]:
    path = Path(os.environ["FAKE_STATE"])
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def save(state: dict[str, Any]) -> None:
    Path(os.environ["FAKE_STATE"]).write_text(json.dumps(state, indent=2), encoding="utf-8")


def log(tool: str, argv: list[str], stdin: str | None = None) -> None:
    entry = {
        "tool": tool,
        "argv": argv,
        "passphrase_file": os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"),
        "passphrase": "PULUMI_CONFIG_PASSPHRASE" in os.environ,
    }
    if stdin is not None:
        entry["stdin"] = stdin
    with Path(os.environ["FAKE_LOG"]).open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def fail(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def main(tool: str, argv: list[str]) -> int:
    stdin = sys.stdin.read() if tool == "docker" and argv[:2] == ["exec", "-i"] else None
    log(tool, argv, stdin)
    state = load()
    handler = {"docker": docker, "kind": kind, "kubectl": kubectl, "pulumi": pulumi}[tool]
    code = handler(state, argv)
    save(state)
    return code


def docker(state: dict[str, Any], argv: list[str]) -> int:  # noqa: PLR0911, PLR0912 - one branch per subcommand
    containers: dict[str, Any] = state.setdefault("containers", {})
    if argv[0] == "info":
        if state.get("docker_down"):
            return fail(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
            )
        print("27.3.1")
        return 0
    if argv[0] == "inspect":
        name = argv[-1]
        if name not in containers:
            return fail(f"Error: No such object: {name}")
        if "{{.State.Running}}" in argv:
            print("true" if containers[name]["running"] else "false")
        elif any("Networks.kind" in a for a in argv):
            print("{}" if "kind" in containers[name]["networks"] else "null")
        return 0
    if argv[0] == "run":
        name = argv[argv.index("--name") + 1]
        if name in containers:
            return fail(
                f'docker: Error response from daemon: Conflict. The container name "/{name}" is already in use.'
            )
        containers[name] = {"running": True, "networks": ["bridge"], "image": argv[-1]}
        print("f00dfeed")
        return 0
    if argv[0] == "start":
        containers[argv[1]]["running"] = True
        return 0
    if argv[0] == "network" and argv[1] == "connect":
        containers[argv[3]]["networks"].append(argv[2])
        return 0
    if argv[0] == "exec":
        node = argv[2] if argv[1] == "-i" else argv[1]
        if node not in [f"{c}-control-plane" for c in state.get("clusters", [])]:
            return fail(f"Error response from daemon: No such container: {node}")
        return 0
    if argv[:2] == ["rm", "-f"]:
        containers.pop(argv[2], None)
        return 0
    return fail(f"fake docker: unexpected {argv}")


def kind(state: dict[str, Any], argv: list[str]) -> int:
    clusters: list[str] = state.setdefault("clusters", [])
    contexts: list[str] = state.setdefault("contexts", [])
    if argv == ["version"]:
        print(f"kind {state.get('kind_version', 'v0.29.0')} go1.24.2 linux/amd64")
        return 0
    if argv[:2] == ["create", "cluster"]:
        config = Path(argv[argv.index("--config") + 1]).read_text(encoding="utf-8")
        match = re.search(r"^name: (\S+)$", config, re.MULTILINE)
        assert match, "the kind config names its cluster"
        if match[1] in clusters:
            return fail(
                f'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "{match[1]}"'
            )
        clusters.append(match[1])
        contexts.append(f"kind-{match[1]}")
        return 0
    if argv[:2] == ["get", "nodes"]:
        name = argv[argv.index("--name") + 1]
        if name in clusters:
            print(f"{name}-control-plane")
        return 0
    if argv[:2] == ["delete", "cluster"]:
        name = argv[argv.index("--name") + 1]
        if name in clusters:
            clusters.remove(name)
            contexts.remove(f"kind-{name}")
        return 0
    return fail(f"fake kind: unexpected {argv}")


def kubectl(state: dict[str, Any], argv: list[str]) -> int:
    if argv[:2] == ["config", "get-contexts"]:
        print("\n".join(state.get("contexts", [])))
        return 0
    if "apply" in argv:
        return 0
    if "port-forward" in argv:
        if state.get("not_ready"):
            return fail("error: unable to forward port because pod is not running. Current status=Pending")
        local_port = int(argv[-1].split(":")[0])
        serve(local_port, plugin=not state.get("no_plugin"), infer_fails=bool(state.get("infer_fails")))
        return 0
    return fail(f"fake kubectl: unexpected {argv}")


def metadata(plugin: bool) -> dict[str, Any]:
    """``GET /v2/models/digits``, as the server answers it."""
    return {
        "name": MODEL, "versions": [VERSION], "platform": "onnxruntime_onnx", "inputs": [INPUT], "outputs": [OUTPUT],
        "parameters": {"batchable": True, "plugin": PLUGIN if plugin else None, "labels": None},
    }  # fmt: skip


def infer(body: Any) -> tuple[int, dict[str, Any]]:
    """``POST /v2/models/digits/infer``: the request must be one the signature asks for; 400 naming why not."""
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or [i.get("name") if isinstance(i, dict) else i for i in inputs] != ["input"]:
        return 400, {"error": f"the request must send exactly the input {INPUT['name']!r}, got {inputs!r:.200}"}
    (sent,) = inputs
    shape = sent.get("shape")
    fits = isinstance(shape, list) and len(shape) == len(INPUT["shape"])
    if sent.get("datatype") != INPUT["datatype"] or not fits or shape[1:] != INPUT["shape"][1:]:
        return 400, {"error": f"input 'input' must be FP32 [-1, 1, 8, 8], got {sent.get('datatype')} {shape}"}
    rows = shape[0]
    if sent.get("data") != [0] * (rows * 64):
        return 400, {"error": "the fake server expects the smoke call's zeros"}
    values = [0.1] * (rows * 10)  # what a model answers to a blank picture: no class preferred
    return 200, {
        "model_name": MODEL, "model_version": VERSION,
        "outputs": [{"name": OUTPUT["name"], "datatype": "FP32", "shape": [rows, 10], "data": values}],
    }  # fmt: skip


def predict(body: Any, plugin: bool) -> tuple[int, dict[str, Any]]:
    """``POST /predict``: the image-classifier plug-in's answer, or the server's 404 for a model without one."""
    if not plugin:
        return 404, {"error": f"/predict is the route of a model's plug-in, and model {MODEL!r} declares none"}
    pixels = body.get("pixels") if isinstance(body, dict) else None
    if not isinstance(pixels, list) or not pixels or not all(isinstance(row, list) for row in pixels):
        return 400, {"error": "JSON body must be an object with 'pixels'"}
    probabilities = [0.01] * 10
    probabilities[3] = 0.91  # not the sample's digit: smoke reports what the model says, and judges nothing
    return 200, {"label": "three", "class": 3, "probabilities": probabilities,
                 "model_name": MODEL, "model_version": VERSION}  # fmt: skip


def serve(port: int, *, plugin: bool, infer_fails: bool) -> None:
    """The served model's endpoints the smoke call uses, over HTTPS, until killed."""
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    model_path = f"/v2/models/{MODEL}"

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _allowed(self) -> bool:
            with Path(os.environ["FAKE_HTTP_LOG"]).open("a", encoding="utf-8") as f:
                f.write(json.dumps([self.command, self.path]) + "\n")
            if self.path == "/v2/health/ready":
                return True
            if self.headers.get("Authorization") != expected:
                self._answer(401, {"error": "authentication required"})
                return False
            return True

        def do_GET(self) -> None:
            if not self._allowed():
                return
            if self.path == "/v2/health/ready":
                self._answer(200, {"ready": True})
            elif self.path == model_path:
                self._answer(200, metadata(plugin))
            else:
                self._answer(404, {"error": f"no such endpoint: {self.path}"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self._allowed():
                return
            if self.path == f"{model_path}/infer":
                self._answer(*((400, {"error": INFER_REFUSAL}) if infer_fails else infer(body)))
            elif self.path == "/predict":
                self._answer(*predict(body, plugin))
            else:
                self._answer(404, {"error": f"no such endpoint: {self.path}"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.environ["FAKE_TLS_CERT"], os.environ["FAKE_TLS_KEY"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"Forwarding from 127.0.0.1:{port} -> 8443", flush=True)
    server.serve_forever()


def pulumi(state: dict[str, Any], argv: list[str]) -> int:  # noqa: PLR0911, PLR0912 - one branch per subcommand
    stacks: list[str] = state.setdefault("stacks", [])
    if argv[0] == "whoami":
        if not state.get("logged_in"):
            return fail("error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions", 255)
        print(f"User: tester\nOrganizations: tester\nBackend URL: {state['logged_in']}")
        return 0
    if argv[0] == "login":
        state["logged_in"] = argv[1]
        print(f"Logged in to laptop as tester ({argv[1]})")
        return 0
    if argv[:2] == ["stack", "select"]:
        if argv[2] == "--create":
            if argv[3] not in stacks:
                stacks.append(argv[3])
            return 0
        return 0 if argv[2] in stacks else fail(f"error: no stack named '{argv[2]}' found", 255)
    if argv[:2] == ["config", "get"]:
        context = state.get("kube_context", "kind-mlstack")
        if not context:
            return fail("error: configuration key 'mlstack:kubeContext' not found for stack 'local'", 255)
        print(context)
        return 0
    if argv[0] == "up":
        if not (os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE") or "PULUMI_CONFIG_PASSPHRASE" in os.environ):
            return fail(
                "error: passphrase must be set with PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE", 255
            )
        state["deployed"] = True
        print("Resources:\n    + 42 created")
        return 0
    if argv[:2] == ["stack", "output"]:
        if state.get("output_fails"):  # a CLI that printed the secrets, then failed
            print(json.dumps({"basicAuthPassword": PASSWORD}))
            return 255
        if not state.get("deployed"):
            print("{}")
            return 0
        port = os.environ["MLSTACK_FORWARD_PORT"]
        outputs = {
            "url": f"https://localhost:{port}",
            "portForward": f"kubectl --context kind-mlstack -n mlstack port-forward service/mlstack {port}:443",
            "namespace": "mlstack",
            "modelName": MODEL,
            "modelVersion": VERSION,
            "basicAuthUsername": USER,
            "basicAuthPassword": PASSWORD,
            "caCertificate": Path(os.environ["FAKE_TLS_CA"]).read_text(encoding="utf-8"),
        }
        print(json.dumps({k: v for k, v in outputs.items() if k not in state.get("outputs_without", [])}))
        return 0
    if argv[0] == "destroy":
        state["deployed"] = False
        return 0
    return fail(f"fake pulumi: unexpected {argv}")
