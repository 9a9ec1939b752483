"""Fake `docker`, `kind`, `kubectl` and `pulumi` for tests/project/test_localup.py.

``install(bin_dir, ...)`` writes one executable per tool into ``bin_dir``; each
runs ``main(tool, argv)`` below. Every call is appended to the JSON-lines log
``FAKE_LOG`` (the tool, its arguments, whether a passphrase reached it), and the
world the tools share (containers, clusters, contexts, the Pulumi login, the
stack) lives in the JSON file ``FAKE_STATE``, so a second `make up` sees what
the first one made. ``kubectl port-forward`` serves the model's two endpoints
over HTTPS with the test certificate, the way the stack's Service would answer.
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
        serve(local_port, wrong=bool(state.get("wrong_class")))
        return 0
    return fail(f"fake kubectl: unexpected {argv}")


def serve(port: int, wrong: bool) -> None:
    """The served model's two endpoints the smoke call uses, over HTTPS, until killed."""
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer(200 if self.path == "/v2/health/ready" else 404, {"ready": True})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/predict" or self.headers.get("Authorization") != expected:
                self._answer(401, {"error": "authentication required"})
                return
            assert len(body["pixels"]) == 8, body
            cls = 3 if wrong else 0
            probabilities = [0.01] * 10
            probabilities[cls] = 0.91
            self._answer(
                200,
                {"label": str(cls), "class": cls, "probabilities": probabilities,
                 "model_name": "digits", "model_version": "v-test"},
            )  # fmt: skip

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
        print(json.dumps({
            "url": f"https://localhost:{port}",
            "portForward": f"kubectl --context kind-mlstack -n mlstack port-forward service/mlstack {port}:443",
            "namespace": "mlstack",
            "basicAuthUsername": USER,
            "basicAuthPassword": PASSWORD,
            "caCertificate": Path(os.environ["FAKE_TLS_CA"]).read_text(encoding="utf-8"),
        }))  # fmt: skip
        return 0
    if argv[0] == "destroy":
        state["deployed"] = False
        return 0
    return fail(f"fake pulumi: unexpected {argv}")
