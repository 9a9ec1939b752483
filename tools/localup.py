"""One command from a fresh clone to a served model answering on kind: what `make up`, `make smoke` and `make down` run.

    python -m tools.localup preflight   check the tools and ports; create nothing
    python -m tools.localup up          preflight, then what is missing (kind cluster, local registry,
                                        state, passphrase), `pulumi up` of the local stack, and the smoke call
    python -m tools.localup smoke       call the served model through the port-forward: its signature, one
                                        request of zeros, and /predict when it has the image-classifier plug-in
    python -m tools.localup down        `pulumi destroy`, then delete the cluster and registry `up` created

It needs only Docker, kind, kubectl and the Pulumi CLI on the machine, and it
touches only what it creates: a context it did not create is used as it is,
never wired or deleted; a Pulumi login the user has is left alone. What it
created is written to ``.mlstack/created.json`` as soon as it exists, so `down`
deletes exactly that, even after an `up` that failed half-way.

Everything it keeps lives in the gitignored ``.mlstack/`` (``MLSTACK_LOCAL_DIR``):
the state when no backend was logged in (``state/``), the stack's passphrase
when none was set (``passphrase``), the record of what it created. Standard
library only: it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeGuard

REPO: Final = Path(__file__).resolve().parents[1]
KIND_DIR: Final = REPO / "deploy" / "kind"
STACK: Final = "local"
# deploy/kind/cluster.yaml's name; kind names its context kind-<name> (kind's quick start,
# "Interacting With Your Cluster"). Pulumi.local.yaml's mlstack:kubeContext names that context.
CLUSTER: Final = "mlstack"
CONTEXT: Final = f"kind-{CLUSTER}"
# kind's local-registry guide (https://kind.sigs.k8s.io/docs/user/local-registry/, its
# kind-with-registry.sh): a registry:3 container published on 127.0.0.1:5001, joined to the
# "kind" Docker network, and aliased for the nodes' containerd by a hosts.toml. Our own
# container name, so a registry someone else runs is never touched.
REGISTRY: Final = "mlstack-registry"
REGISTRY_IMAGE: Final = "registry:3"
REGISTRY_PORT: Final = 5001  # Pulumi.local.yaml mlstack:localRegistry is localhost:<this>
REGISTRY_HOSTS_DIR: Final = f"/etc/containerd/certs.d/localhost:{REGISTRY_PORT}"
KIND_NETWORK: Final = "kind"
# components/workloads.py LOCAL_PORT: where the stack's portForward output listens.
FORWARD_PORT: Final = 8443
# kindnetd enforces NetworkPolicy from kind v0.24.0 ("Out-of-the-box support for network
# policy", the v0.24.0 release notes); the stack isolates every pod with NetworkPolicies.
MIN_KIND: Final = (0, 24, 0)
READY_TIMEOUT_S: Final = 180.0
REQUEST_TIMEOUT_S: Final = 10.0


@dataclass(frozen=True)
class Tool:
    name: str
    get: str  # where to get it


TOOLS: Final = (
    Tool("docker", "https://docs.docker.com/get-started/get-docker/"),
    Tool("kind", "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"),
    Tool("kubectl", "https://kubernetes.io/docs/tasks/tools/"),
    Tool("pulumi", "https://www.pulumi.com/docs/iac/download-install/"),
)

# The smoke call's bounds. Its request is zeros in the model's own shapes, so a model with large fixed
# inputs could ask for more than is worth sending: past this many values in all it stops and says so
# (1 Mi values is about 2 MiB of JSON, a quarter of the server's default body limit, MAX_BODY_BYTES in
# app/mlapp/settings.py). An answer is read no further than MAX_ANSWER_BYTES, and refused if longer;
# of an error, the first MAX_QUOTED_BYTES are read and quoted.
MAX_ZEROS: Final = 1 << 20
MAX_ANSWER_BYTES: Final = 8 << 20
MAX_QUOTED_BYTES: Final = 4096
# The Open Inference Protocol's tensor datatypes (kserve/open-inference-protocol, "Tensor Data Types"),
# and the zero the smoke request sends of those that are not numbers (0 for the rest).
DATATYPES: Final = frozenset({
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
})  # fmt: skip
ZEROS: Final[Mapping[str, bool | str]] = {"BOOL": False, "BYTES": ""}
# The plug-in whose `POST /predict` takes a picture (docs/trainer-contract.md, serving.json).
IMAGE_CLASSIFIER: Final = "image-classifier"
# A grey 8x8 picture (scikit-learn's digits.images[0], 0-16 scaled to the 0-255 grey levels /predict
# reads): any image classifier takes it, since its plug-in resizes a picture to the model's input.
# What a model calls it is not judged here; the publish step's gate answers for the model's quality.
SAMPLE_PICTURE: Final = [
    [0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
    [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
    [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0],
]  # fmt: skip


class Problem(Exception):
    """Something the user must fix; the message says what and how. Exit status 2."""


class NotServed(Exception):
    """The stack is up but the model does not answer (yet). Exit status 1."""


@dataclass
class Local:
    """Where this machine's local-stack files live, and the environment every command runs with."""

    home: Path
    env: dict[str, str]
    forward_port: int = FORWARD_PORT
    registry_port: int = REGISTRY_PORT
    ready_timeout: float = READY_TIMEOUT_S

    @property
    def created_file(self) -> Path:
        return self.home / "created.json"

    def created(self) -> dict[str, str]:
        try:
            data = json.loads(self.created_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict):
            raise Problem(f"{self.created_file} is not a JSON object; delete it only if nothing it names exists")
        return {str(k): str(v) for k, v in data.items()}

    def remember(self, what: str, name: str) -> None:
        """Record that ``up`` created ``name`` (a cluster, context or registry), the moment it exists."""
        self._record(self.created() | {what: name})

    def forget(self, *what: str) -> None:
        self._record({k: v for k, v in self.created().items() if k not in what})

    def _record(self, record: Mapping[str, str]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.created_file.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def say(message: str) -> None:
    print(f"[make up] {message}", flush=True)


def run(  # noqa: PLR0913 - keyword-only switches of the one way tools are called
    local: Local,
    cmd: Sequence[str],
    *,
    stdin: str | None = None,
    check: bool = True,
    capture: bool = True,
    show: bool = True,
    secret_output: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``cmd`` with the local environment, shown first unless ``show`` is off; its output captured unless
    ``capture`` is off.

    No command line carries a secret (the passphrase travels as a file name), so every one may be shown.
    With ``secret_output`` a failure quotes only the command's stderr, never what it printed on stdout.
    """
    if show:
        print(f"+ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    result = subprocess.run(  # noqa: S603 - the tools' fixed names and arguments, no shell
        list(cmd),
        input=stdin,
        text=True,
        capture_output=capture,
        env=local.env,
        cwd=REPO,
        check=False,
    )
    if check and result.returncode != 0:
        detail = (result.stderr if secret_output else result.stderr or result.stdout or "").strip().splitlines()
        raise Problem(f"`{shlex.join(cmd)}` failed (exit {result.returncode})" + (f": {detail[-1]}" if detail else ""))
    return result


# --- preflight ---------------------------------------------------------------------------


def kind_version(text: str) -> tuple[int, int, int]:
    """(0, 29, 0) from `kind version`'s "kind v0.29.0 go1.24.2 linux/amd64"."""
    match = re.search(r"\bv(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise Problem(f"cannot read kind's version from {text.strip()!r}")
    return int(match[1]), int(match[2]), int(match[3])


def port_free(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``. SO_REUSEADDR as the listeners themselves bind (Go's
    net.Listen, which kubectl and docker's proxy use, sets it: golang/go src/net/sockopt_linux.go,
    setDefaultListenerSockopts, "Allow reuse of recently-used addresses"), so the TIME_WAIT left by the
    last smoke call does not count as in use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def preflight(local: Local, tools: Sequence[Tool] = TOOLS, *, ports: bool = True) -> None:
    """Every tool there and Docker running, kind new enough, the ports free: checked before anything is made."""
    missing = [t for t in tools if shutil.which(t.name, path=local.env.get("PATH")) is None]
    if missing:
        raise Problem(
            "missing: "
            + "; ".join(f"{t.name} is not on PATH, install it from {t.get}" for t in missing)
            + ". Nothing was created."
        )
    names = {t.name for t in tools}
    if "docker" in names:
        info = run(local, ["docker", "info", "--format", "{{.ServerVersion}}"], check=False)
        if info.returncode != 0:
            why = (info.stderr or info.stdout).strip().splitlines()
            raise Problem(
                "Docker is installed but its engine does not answer"
                + (f" ({why[-1]})" if why else "")
                + ": start Docker Desktop, or the docker service (`sudo systemctl start docker`). Nothing was created."
            )
    if "kind" in names:
        version = kind_version(run(local, ["kind", "version"]).stdout)
        if version < MIN_KIND:
            raise Problem(
                f"kind v{'.'.join(map(str, version))} is too old: the stack's NetworkPolicies need kind "
                f"v{'.'.join(map(str, MIN_KIND))} or newer ({TOOLS[1].get}). Nothing was created."
            )
    if ports:
        busy = [p for p in needed_ports(local) if not port_free(p)]
        if busy:
            raise Problem(
                "in use: "
                + ", ".join(f"127.0.0.1:{p} ({port_use(local, p)})" for p in busy)
                + ". Free it (a `kubectl port-forward` left running? another registry?) and run again. "
                "Nothing was created."
            )


def port_use(local: Local, port: int) -> str:
    if port == local.registry_port:
        return f"the local registry {REGISTRY} publishes it"
    return "the port-forward to the served model listens there"


def needed_ports(local: Local) -> list[int]:
    """The forward port always; the registry's only when ``up`` will start the registry."""
    ports = [local.forward_port]
    if not registry_running(local, quiet=True):
        ports.append(local.registry_port)
    return ports


def registry_running(local: Local, *, quiet: bool = False) -> bool:
    result = run(local, ["docker", "inspect", "-f", "{{.State.Running}}", REGISTRY], check=False, show=not quiet)
    return result.returncode == 0 and result.stdout.strip() == "true"


# --- state and secrets -------------------------------------------------------------------


def backend(local: Local) -> None:
    """Leave a logged-in user's backend alone; with none, keep the state in ``.mlstack/state``.

    `pulumi whoami` fails when no backend is logged in, and with --non-interactive it fails
    rather than prompting (https://www.pulumi.com/docs/iac/cli/commands/pulumi_whoami/;
    "PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions",
    pulumi/pulumi#13293). `pulumi login file://<dir>` is the local-filesystem backend
    (https://www.pulumi.com/docs/iac/concepts/state-and-backends/#local-filesystem).
    """
    who = run(local, ["pulumi", "whoami", "--non-interactive", "--verbose"], check=False)
    if who.returncode == 0:
        backend_url = re.search(r"Backend URL:\s*(\S+)", who.stdout)
        say(f"Pulumi: logged in ({backend_url[1] if backend_url else who.stdout.strip()}); left as it is")
        return
    state = local.home / "state"
    state.mkdir(parents=True, exist_ok=True)
    run(local, ["pulumi", "login", state.as_uri()])
    say(f"Pulumi: no backend was logged in; the state is kept in {state} (gitignored)")


def passphrase(local: Local, *, create: bool = True) -> None:
    """With no passphrase set, make one in ``.mlstack/passphrase`` and use it through PULUMI_CONFIG_PASSPHRASE_FILE.

    The passphrase secrets provider reads PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE
    (https://www.pulumi.com/docs/iac/concepts/secrets/#passphrase). It is never printed.
    """
    if local.env.get("PULUMI_CONFIG_PASSPHRASE") is not None or local.env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        say("Pulumi: using the passphrase you set")
        return
    path = local.home / "passphrase"
    if not path.exists() and not create:
        return
    if not path.exists():
        local.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        say(f"Pulumi: made a passphrase for the local stack's secrets in {path} (gitignored, mode 600); keep it")
    else:
        say(f"Pulumi: using the passphrase in {path}")
    local.env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(path)


def kube_context(local: Local) -> str:
    """The context the local stack deploys to (mlstack:kubeContext)."""
    got = run(local, ["pulumi", "config", "get", "kubeContext", "--stack", STACK], check=False)
    context = got.stdout.strip() if got.returncode == 0 else ""
    if not context:
        raise Problem(
            f"mlstack:kubeContext is not set for the {STACK} stack: `make up` deploys to the context it names "
            f"(Pulumi.local.yaml sets {CONTEXT}, the cluster it creates)"
        )
    return context


# --- cluster and registry ----------------------------------------------------------------


def cluster(local: Local, context: str) -> None:
    """The stack's context: reused when it exists, created with the registry when it is kind-mlstack and missing."""
    contexts = run(local, ["kubectl", "config", "get-contexts", "-o", "name"]).stdout.split()
    ours = local.created().get("context") == context
    if context in contexts and not ours:
        say(f"using your context {context} as it is: make up did not create it, so it changes nothing there")
        return
    if context not in contexts and context != CONTEXT:
        raise Problem(
            f"context {context!r} (mlstack:kubeContext) does not exist, and make up only creates {CONTEXT}: "
            f"create that cluster yourself, or `pulumi config rm kubeContext --stack {STACK}` "
            f"and set it to {CONTEXT}"
        )
    registry(local)
    if context in contexts:
        say(f"reusing the kind cluster {CLUSTER} and the registry {REGISTRY} make up created")
    else:
        run(local, ["kind", "create", "cluster", "--config", str(KIND_DIR / "cluster.yaml")], capture=False)
        local.remember("cluster", CLUSTER)
        local.remember("context", CONTEXT)
    wire_registry(local)


def registry(local: Local) -> None:
    if registry_running(local):
        return
    exists = run(local, ["docker", "inspect", REGISTRY], check=False).returncode == 0
    if exists:
        run(local, ["docker", "start", REGISTRY])
        return
    run(local, [
        "docker", "run", "-d", "--restart=always", "-p", f"127.0.0.1:{local.registry_port}:5000",
        "--network", "bridge", "--name", REGISTRY, REGISTRY_IMAGE,
    ])  # fmt: skip
    local.remember("registry", REGISTRY)


def wire_registry(local: Local) -> None:
    """kind's guide, steps 3-5: each node's containerd pulls localhost:5001 from the registry container,
    which joins the kind network; KEP-1755's ConfigMap says where the registry is."""
    hosts = (KIND_DIR / "registry-hosts.toml").read_text(encoding="utf-8")
    for node in run(local, ["kind", "get", "nodes", "--name", CLUSTER]).stdout.split():
        run(local, ["docker", "exec", node, "mkdir", "-p", REGISTRY_HOSTS_DIR])
        run(local, ["docker", "exec", "-i", node, "cp", "/dev/stdin", f"{REGISTRY_HOSTS_DIR}/hosts.toml"], stdin=hosts)
    networks = run(
        local, ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks." + KIND_NETWORK + "}}", REGISTRY]
    )
    if networks.stdout.strip() == "null":
        run(local, ["docker", "network", "connect", KIND_NETWORK, REGISTRY])
    run(local, ["kubectl", "--context", CONTEXT, "apply", "-f", str(KIND_DIR / "registry-hosting.yaml")])


# --- the smoke call ----------------------------------------------------------------------


def stack_outputs(local: Local) -> dict[str, Any]:
    """The stack's outputs, secrets included: held in memory for the call, never printed."""
    got = run(local, ["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", STACK], secret_output=True)
    try:
        outputs = json.loads(got.stdout)
    except json.JSONDecodeError as e:
        raise Problem(f"`pulumi stack output --json` did not print JSON: {e}") from e
    required = ("url", "portForward", "basicAuthUsername", "basicAuthPassword", "modelName")
    missing = [k for k in required if k not in outputs]
    if missing:
        raise NotServed(
            f"the {STACK} stack has no output {', '.join(missing)}: run `make up` first "
            "(or again, where the stack was deployed before it had them)"
        )
    return dict(outputs)


@dataclass(frozen=True)
class Tensor:
    """An input or output as the model's metadata states it, or as an answer carries it."""

    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 where the model leaves a dimension open

    def describe(self) -> str:
        return f"{self.name} {self.datatype} [{', '.join(map(str, self.shape))}]"


@dataclass(frozen=True)
class Signature:
    """What `GET /v2/models/<name>` says of the model: what the smoke call sends, and what it expects back."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    plugin: str | None  # parameters.plugin.name: the model's plug-in, if it declares one


@dataclass(frozen=True)
class Prediction:
    """The image-classifier plug-in's answer to the sample picture."""

    label: str
    score: float


@dataclass(frozen=True)
class Answered:
    """What the served model answered the smoke call."""

    model: str
    version: str
    outputs: tuple[Tensor, ...]  # its answer to the request of zeros
    prediction: Prediction | None  # None: the model has no image-classifier plug-in, so /predict was not called


def smoke(local: Local) -> Answered:
    """Through the stack's own port-forward: the model's signature, one request of zeros it describes, and a
    sample picture when the model has the image-classifier plug-in. What it answered, or NotServed saying why.

    It judges only that the server keeps the protocol and the model's own signature, never what a model
    answers: the tool serves whatever model the stack was given."""
    outputs = stack_outputs(local)
    url = str(outputs["url"]).rstrip("/")
    forward = shlex.split(str(outputs["portForward"]))
    if not forward or forward[0] != "kubectl" or "port-forward" not in forward:
        raise Problem(f"the portForward output is not a kubectl port-forward: {outputs['portForward']!r}")
    context = ssl.create_default_context()
    if "caCertificate" in outputs:
        context.load_verify_locations(cadata=str(outputs["caCertificate"]))
    credentials = f"{outputs['basicAuthUsername']}:{outputs['basicAuthPassword']}".encode()
    server = Server(url, context, "Basic " + base64.b64encode(credentials).decode("ascii"))
    model = f"/v2/models/{urllib.parse.quote(str(outputs['modelName']), safe='')}"
    local.home.mkdir(parents=True, exist_ok=True)
    log_path = local.home / "port-forward.log"
    say(f"calling {url}{model} through `{shlex.join(forward)}`")
    with PortForward(forward, local, log_path) as tunnel:
        wait_ready(url, context, tunnel, local.ready_timeout, str(outputs.get("namespace", CLUSTER)))
        signature = read_signature(server.call(f"GET {model}"), f"GET {model}")
        answer = server.call(f"POST {model}/infer", zeros_request(signature))
        answered = answered_outputs(signature, answer, f"POST {model}/infer")
        prediction = predict(server) if signature.plugin == IMAGE_CLASSIFIER else None
    # The protocol makes an answer's model_version optional.
    version = str(answer.get("model_version") or "(not given)")
    return Answered(str(answer.get("model_name") or signature.name), version, answered, prediction)


@dataclass(frozen=True)
class Server:
    """The served model's address, the stack's CA and its credentials: every call the smoke call makes."""

    url: str
    context: ssl.SSLContext
    auth: str

    def call(self, what: str, body: Any = None) -> Any:
        """``what`` ("GET /v2/models/digits"; POST sends ``body`` as JSON): its JSON answer, read within
        MAX_ANSWER_BYTES, or NotServed quoting the server's own message."""
        method, path = what.split(" ", 1)
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Authorization": self.auth, "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers=headers)  # noqa: S310 - the stack's own https URL
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S, context=self.context) as response:  # noqa: S310
                status, text = response.status, response.read(MAX_ANSWER_BYTES + 1)
        except urllib.error.HTTPError as e:
            raise NotServed(f"{what} answered {e.code}: {server_message(e.read(MAX_QUOTED_BYTES))}") from e
        except (urllib.error.URLError, OSError) as e:
            raise NotServed(f"{what} did not answer: {getattr(e, 'reason', e)}") from e
        if status != 200:  # noqa: PLR2004
            raise NotServed(f"{what} answered {status}, not 200: {server_message(text[:MAX_QUOTED_BYTES])}")
        if len(text) > MAX_ANSWER_BYTES:
            raise NotServed(f"{what} answered more than {MAX_ANSWER_BYTES} bytes")
        try:
            return json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise NotServed(f"{what} did not answer with JSON ({e}): {server_message(text[:MAX_QUOTED_BYTES])}") from e


def server_message(body: bytes) -> str:
    """What the server said: the protocol's ``{"error": ...}`` message, else the text itself."""
    text = body.decode("utf-8", "replace").strip()
    try:
        error = json.loads(text).get("error")
    except (json.JSONDecodeError, AttributeError):
        error = None
    return (error if isinstance(error, str) else text) or "(no message)"


def read_signature(metadata: Any, what: str) -> Signature:
    """The model's name, inputs, outputs and plug-in from its metadata; NotServed naming what is amiss."""
    if not isinstance(metadata, dict):
        raise NotServed(f"{what} answered {type(metadata).__name__}, not the model's metadata (a JSON object)")
    inputs, outputs = (tensors(metadata.get(key), f"{what} answered {key}") for key in ("inputs", "outputs"))
    parameters = metadata.get("parameters")
    plugin = parameters.get("plugin") if isinstance(parameters, dict) else None
    plugin_name = plugin.get("name") if isinstance(plugin, dict) else None
    return Signature(str(metadata.get("name")), inputs, outputs, plugin_name if isinstance(plugin_name, str) else None)


def tensors(entries: Any, what: str) -> tuple[Tensor, ...]:
    """The tensors of a metadata's ``inputs`` or ``outputs``; NotServed quoting the first that is not one."""
    if not isinstance(entries, list):
        raise NotServed(f"{what} {entries!r:.200}, not a list of tensors")
    found = []
    for entry in entries:
        fields = entry if isinstance(entry, dict) else {}
        name, datatype, shape = fields.get("name"), fields.get("datatype"), fields.get("shape")
        if not isinstance(name, str) or datatype not in DATATYPES or not is_shape(shape, open_dims=True):
            raise NotServed(
                f"{what} {entry!r:.200}, not a tensor: a name, a datatype of the protocol "
                f"({', '.join(sorted(DATATYPES))}) and a shape (a list of dimensions, -1 where open)"
            )
        found.append(Tensor(name, datatype, tuple(shape)))
    return tuple(found)


def is_shape(value: object, *, open_dims: bool) -> TypeGuard[list[int]]:
    """A list of dimensions: whole numbers, at least 0, or -1 (open) where ``open_dims``."""
    least = -1 if open_dims else 0
    return isinstance(value, list) and all(type(d) is int and d >= least for d in value)


def zeros_request(signature: Signature) -> dict[str, Any]:
    """One inference request of zeros (false for BOOL, "" for BYTES) for every input, in its shape with
    each open dimension 1; NotServed when that would be more than MAX_ZEROS values."""
    inputs = []
    total = 0
    for tensor in signature.inputs:
        shape = [1 if d == -1 else d for d in tensor.shape]
        count = 1
        for d in shape:
            count *= d
        total += count
        if total > MAX_ZEROS:
            raise NotServed(
                f"the model's input {tensor.describe()} takes {count} values with each open dimension 1: more "
                f"than the smoke call sends ({MAX_ZEROS} in all). Call the model yourself (`pulumi stack output curl`)"
            )
        zero = ZEROS.get(tensor.datatype, 0)
        inputs.append({"name": tensor.name, "datatype": tensor.datatype, "shape": shape, "data": [zero] * count})
    return {"inputs": inputs}


def answered_outputs(signature: Signature, answer: Any, what: str) -> tuple[Tensor, ...]:
    """Every output of ``signature`` as ``answer`` carries it: its datatype the signature's, its shape of the
    signature's rank with the signature's fixed dimensions. NotServed naming the first that is not."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, list):
        raise NotServed(f"{what} answered without 'outputs': {json.dumps(answer)[:MAX_QUOTED_BYTES]}")
    by_name = {o.get("name"): o for o in outputs if isinstance(o, dict)}
    found = []
    for expected in signature.outputs:
        got = by_name.get(expected.name)
        if got is None:
            names = ", ".join(repr(n) for n in by_name) or "none"
            raise NotServed(f"{what} answered no output {expected.name!r} of the signature's (it answered {names})")
        datatype, shape = got.get("datatype"), got.get("shape")
        if datatype != expected.datatype:
            raise NotServed(
                f"{what} answered output {expected.name!r} as {datatype!r:.40}: the signature says {expected.datatype}"
            )
        if (
            not is_shape(shape, open_dims=False)
            or len(shape) != len(expected.shape)
            or any(e not in (-1, d) for e, d in zip(expected.shape, shape, strict=True))
        ):
            raise NotServed(
                f"{what} answered output {expected.name!r} in shape {shape!r:.200}: the signature says "
                f"[{', '.join(map(str, expected.shape))}] (-1 open)"
            )
        found.append(Tensor(expected.name, datatype, tuple(shape)))
    return tuple(found)


def predict(server: Server) -> Prediction:
    """The image-classifier plug-in's answer to the sample picture: its label and that class's score."""
    what = "POST /predict"
    answer = server.call(what, {"pixels": [[v * 16 for v in row] for row in SAMPLE_PICTURE]})
    fields = answer if isinstance(answer, dict) else {}
    label, cls, scores = fields.get("label"), fields.get("class"), fields.get("probabilities")
    score = scores[cls] if type(cls) is int and isinstance(scores, list) and 0 <= cls < len(scores) else None
    if not isinstance(label, str) or not isinstance(score, int | float) or isinstance(score, bool):
        raise NotServed(
            f"{what} answered without a label and its class's score: {json.dumps(answer)[:MAX_QUOTED_BYTES]}"
        )
    return Prediction(label, float(score))


def report(answered: Answered) -> None:
    outputs = "; ".join(t.describe() for t in answered.outputs)
    say(f"model {answered.model} version {answered.version} answered a request of zeros: {outputs}")
    if answered.prediction is not None:
        p = answered.prediction
        say(f"its {IMAGE_CLASSIFIER} plug-in answered the sample picture: label {p.label!r}, score {p.score:.3f}")


class PortForward:
    """The stack's `kubectl port-forward`, started again whenever it exits: it exits while no pod is ready."""

    def __init__(self, cmd: list[str], local: Local, log_path: Path) -> None:
        self.cmd = cmd
        self.local = local
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PortForward:
        self._log = self.log_path.open("ab")
        self.start()
        return self

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - the stack's own portForward output, checked to be kubectl
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=self.local.env, cwd=REPO
        )

    def last_words(self) -> str:
        """The port-forward's last line of output (kubectl says there why it stopped)."""
        self._log.flush()
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return lines[-1] if lines else f"no output; see {self.log_path}"

    def exited(self) -> int | None:
        """The exit status if it has exited, else None."""
        return None if self.proc is None else self.proc.poll()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_ready(url: str, context: ssl.SSLContext, tunnel: PortForward, timeout: float, namespace: str) -> None:
    """Until /v2/health/ready answers 200 through ``tunnel``; NotServed saying why not.

    The reason given is the server's own answer if one came through, else why the port-forward
    died (kubectl's last line: no ready pod yet, say), else the connection error: a refused
    connection only says the tunnel was not up, which its exit explains better.
    """
    deadline = time.monotonic() + timeout
    answered: str | None = None
    died: str | None = None
    refused = "no answer yet"
    while time.monotonic() < deadline:
        status = tunnel.exited()
        if status is not None:
            died = f"the port-forward exited ({status}): {tunnel.last_words()}"
            time.sleep(1)
            tunnel.start()
            continue
        try:
            with urllib.request.urlopen(  # noqa: S310 - the stack's own https URL
                f"{url}/v2/health/ready", timeout=REQUEST_TIMEOUT_S, context=context
            ) as response:
                if response.status == 200:  # noqa: PLR2004
                    return
        except urllib.error.HTTPError as e:
            answered = f"/v2/health/ready answered {e.code}"
        except (urllib.error.URLError, OSError) as e:
            refused = f"{url} did not answer: {getattr(e, 'reason', e)}"
        time.sleep(0.5)
    raise NotServed(
        f"the model is not served after {timeout:.0f} s: {answered or died or refused}. Look at "
        f"`kubectl --context {forward_context(tunnel.cmd)} -n {namespace} get pods,jobs`, then run `make smoke` again"
    )


def forward_context(forward: Sequence[str]) -> str:
    return next((forward[i + 1] for i, a in enumerate(forward[:-1]) if a == "--context"), CONTEXT)


# --- commands ----------------------------------------------------------------------------


def up(local: Local) -> None:
    preflight(local)
    backend(local)
    passphrase(local)
    run(local, ["pulumi", "stack", "select", "--create", STACK])
    cluster(local, kube_context(local))
    run(local, ["pulumi", "up", "--yes", "--stack", STACK], capture=False)
    report(smoke(local))


def down(local: Local) -> None:
    preflight(local, [t for t in TOOLS if t.name != "kubectl"], ports=False)
    backend(local)
    passphrase(local, create=False)
    created = local.created()
    if run(local, ["pulumi", "stack", "select", STACK], check=False).returncode == 0:
        run(local, ["pulumi", "destroy", "--yes", "--stack", STACK], capture=False)
    else:
        say(f"no {STACK} stack: nothing to destroy")
    if "cluster" in created:
        run(local, ["kind", "delete", "cluster", "--name", created["cluster"]], capture=False)
        local.forget("cluster", "context")
    if "registry" in created:
        run(local, ["docker", "rm", "-f", created["registry"]])
        local.forget("registry")
    kept = [n for n in (CONTEXT, REGISTRY) if n not in created.values()]
    say(
        "deleted what make up created"
        + (f" ({', '.join(sorted(set(created.values())))})" if created else " (nothing)")
        + (f"; left alone: {', '.join(kept)} (not created by make up)" if kept else "")
    )


def check(local: Local) -> None:
    """`make smoke`: the smoke call alone, on a stack that is up. It runs the Pulumi CLI and kubectl, so a
    missing one is named with where to get it, rather than failing as a Python traceback."""
    preflight(local, [t for t in TOOLS if t.name in ("pulumi", "kubectl")], ports=False)
    report(smoke(local))


def local_from_env(environ: Mapping[str, str]) -> Local:
    """The files' folder, the two local ports and the smoke call's patience; the tests point them elsewhere."""
    home = Path(environ.get("MLSTACK_LOCAL_DIR") or REPO / ".mlstack")
    local = Local(
        home,
        dict(environ),
        int(environ.get("MLSTACK_FORWARD_PORT") or FORWARD_PORT),
        int(environ.get("MLSTACK_REGISTRY_PORT") or REGISTRY_PORT),
        float(environ.get("MLSTACK_READY_TIMEOUT_S") or READY_TIMEOUT_S),
    )
    local.env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return local


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands: dict[str, Callable[[Local], None]] = {"preflight": preflight, "up": up, "down": down, "smoke": check}
    if len(args) != 1 or args[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    local = local_from_env(os.environ)
    try:
        commands[args[0]](local)
    except Problem as e:
        print(f"[make {args[0]}] {e}", file=sys.stderr)
        return 2
    except NotServed as e:
        print(f"[make {args[0]}] {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
